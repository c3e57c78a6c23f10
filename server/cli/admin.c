/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `demsd migrate` and `demsd admin create-user`: command-line tools that
 * reach the database directly. They work whether or not a demsd is serving
 * the same data directory (they use its embedded cluster if so).
 */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/limits.h"
#include "demsd/auth.h"
#include "demsd/blobs.h"
#include "demsd/cli.h"
#include "demsd/db.h"
#include "demsd/ledger.h"
#include "demsd/setup.h"

static const struct option common_opts[] = {
    {"data", required_argument, NULL, 'd'},
    {"config", required_argument, NULL, 'c'},
    {"set", required_argument, NULL, 's'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option user_opts[] = {
    {"data", required_argument, NULL, 'd'},     {"config", required_argument, NULL, 'c'},
    {"set", required_argument, NULL, 's'},      {"help", no_argument, NULL, 'h'},
    {"role", required_argument, NULL, 'r'},     {"username", required_argument, NULL, 'u'},
    {"password", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0},
};

static void migrate_usage(FILE *f)
{
    fprintf(f, "Usage: demsd migrate --data DIR [--config FILE] [--set KEY=VALUE]\n"
               "\n"
               "Applies pending schema migrations (each in one transaction, as the owner\n"
               "role). Running it again when the schema is current changes nothing.\n"
               "\n"
               "Options:\n"
               "  --data DIR        data directory (embedded database lives there)\n"
               "  --config FILE     configuration file\n"
               "  --set KEY=VALUE   set a configuration key (repeatable)\n"
               "  --help            show this help\n");
}

int dems_cli_migrate(int argc, char **argv)
{
    char *flags[16];
    size_t nflags = 0;
    const char *config_file = NULL;
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, common_opts, "migrate")) != -1) {
        if (opt == 'h') {
            migrate_usage(stdout);
            return 0;
        }
        if (dems_cli_common_opt(opt, optarg, flags, &nflags, &config_file) < 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "demsd migrate: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    struct dems_setup s = {0};
    int rc = dems_setup_config(&s, config_file, flags, nflags);
    if (rc != 0)
        return rc;
    rc = dems_setup_database(&s, true);
    char err[1024];
    PGconn *db = rc == 0 ? dems_db_connect_sync(s.owner_conninfo, err, sizeof(err)) : NULL;
    if (rc == 0 && db == NULL) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (db != NULL) {
        char *before = dems_migrate_status(db);
        if (dems_migrate_run(db, DEMS_DB_APP_ROLE, err, sizeof(err)) < 0) {
            fprintf(stderr, "demsd: %s\n", err);
            rc = 1;
        } else if (before == NULL) {
            printf("schema is current (%zu migrations); nothing to do\n", dems_migrate_count());
        } else {
            printf("schema migrated (was: %s; now %zu migrations)\n", before, dems_migrate_count());
        }
        free(before);
        PQfinish(db);
    }
    dems_setup_done(&s);
    return rc;
}

static void admin_usage(FILE *f)
{
    fprintf(f, "Usage: demsd admin create-user --data DIR --role ROLE --username NAME "
               "[--password PW]\n"
               "\n"
               "Creates a staff account. ROLE is admin, officer or prosecutor. Without\n"
               "--password the password is read from standard input (one line).\n"
               "\n"
               "Options:\n"
               "  --data DIR        data directory\n"
               "  --config FILE     configuration file\n"
               "  --set KEY=VALUE   set a configuration key (repeatable)\n"
               "  --role ROLE       admin, officer or prosecutor\n"
               "  --username NAME   1-64 characters of A-Z a-z 0-9 . _ @ -\n"
               "  --password PW     at least 8 characters (prefer standard input)\n"
               "  --help            show this help\n");
}

/* Reads one line from standard input without echo when it is a terminal. */
static int read_password(char *buf, size_t len)
{
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *got = fgets(buf, (int)len, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (got == NULL)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int create_user(int argc, char **argv)
{
    char *flags[16];
    size_t nflags = 0;
    const char *config_file = NULL, *role = NULL, *username = NULL, *password = NULL;
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, user_opts, "admin create-user")) != -1) {
        if (opt == 'h') {
            admin_usage(stdout);
            return 0;
        } else if (opt == 'r') {
            role = optarg;
        } else if (opt == 'u') {
            username = optarg;
        } else if (opt == 'p') {
            password = optarg;
        } else if (dems_cli_common_opt(opt, optarg, flags, &nflags, &config_file) < 0) {
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "demsd admin create-user: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (role == NULL || username == NULL) {
        fprintf(stderr, "demsd admin create-user: --role and --username are required\n");
        return 2;
    }
    char pwbuf[DEMS_MAX_PASSWORD + 2];
    if (password == NULL) {
        if (read_password(pwbuf, sizeof(pwbuf)) < 0) {
            fprintf(stderr, "demsd admin create-user: no password on standard input\n");
            return 2;
        }
        password = pwbuf;
    }
    struct dems_setup s = {0};
    int rc = dems_setup_config(&s, config_file, flags, nflags);
    if (rc != 0)
        return rc;
    if (dems_crypto_init() < 0)
        rc = 1;
    if (rc == 0)
        rc = dems_setup_database(&s, true);
    char err[1024];
    PGconn *db = NULL;
    if (rc == 0) {
        /* The schema must exist before the first user can. */
        db = dems_db_connect_sync(s.owner_conninfo, err, sizeof(err));
        if (db == NULL || dems_migrate_run(db, DEMS_DB_APP_ROLE, err, sizeof(err)) < 0) {
            fprintf(stderr, "demsd: %s\n", err);
            rc = 1;
        }
        PQfinish(db);
        db = NULL;
    }
    if (rc == 0) {
        db = dems_db_connect_sync(s.app_conninfo, err, sizeof(err));
        if (db == NULL ||
            dems_auth_create_user_sync(db, username, role, password, err, sizeof(err)) < 0) {
            fprintf(stderr, "demsd admin create-user: %s\n", err);
            rc = 1;
        } else {
            printf("created %s %s\n", role, username);
        }
        PQfinish(db);
    }
    sodium_memzero(pwbuf, sizeof(pwbuf));
    dems_setup_done(&s);
    return rc;
}

static const char *blob_problem(int r)
{
    switch (r) {
    case DEMS_ENOTFOUND:
        return "missing from the blob store";
    case DEMS_ECRYPTO:
        return "altered: decryption or SHA-256 check failed";
    default:
        return "unreadable";
    }
}

/*
 * Prints one line per orphan: a file in the blob store that no artefact,
 * derivative or upload being recorded names (the store is listed before
 * the database is read; files changed within the last hour are left out, as
 * a preview job stores its outputs a moment before recording them).
 * Returns how many, or -1.
 */
static long print_orphans(PGconn *db, const char *data_dir)
{
    char **names = NULL;
    size_t n = 0;
    if (dems_blob_list(data_dir, (int64_t)time(NULL) - 3600, &names, &n) < 0)
        return -1;
    PGresult *res = PQexec(db, "SELECT id FROM artefacts UNION ALL SELECT blob FROM derivatives"
                               " UNION ALL SELECT sha256 FROM uploads"
                               " WHERE state = 'complete' AND evidence_id IS NULL");
    int nref = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    char **ref = nref >= 0 ? calloc((size_t)nref + 1, sizeof(*ref)) : NULL;
    long r = -1;
    if (ref != NULL) {
        for (int i = 0; i < nref; i++)
            ref[i] = PQgetvalue(res, i, 0);
        n = dems_blob_orphans(names, n, ref, (size_t)nref);
        for (size_t i = 0; i < n; i++)
            printf("ORPHAN %s: in the blob store, but no evidence, derivative or upload names it\n",
                   names[i]);
        r = (long)n;
    }
    free(ref);
    PQclear(res);
    dems_blob_list_free(names, n);
    return r;
}

/* Checks every artefact's blob; one line per bad one or orphan, a summary, exit 1 if any. */
static int verify_blobs(int argc, char **argv)
{
    char *flags[16];
    size_t nflags = 0;
    const char *config_file = NULL;
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, common_opts, "admin verify-blobs")) != -1) {
        if (opt == 'h') {
            printf("Usage: demsd admin verify-blobs --data DIR [--config FILE] [--set KEY=VALUE]\n"
                   "\n"
                   "Re-reads every stored evidence blob: authenticated decryption and the\n"
                   "SHA-256 of the plaintext against its id, then lists orphans: files in the\n"
                   "blob store that no evidence, derivative or upload names. Prints one line\n"
                   "per blob that is missing, altered or orphaned and exits 1 if there is any.\n"
                   "\n"
                   "Options:\n"
                   "  --data DIR        data directory\n"
                   "  --config FILE     configuration file\n"
                   "  --set KEY=VALUE   set a configuration key (repeatable)\n"
                   "  --help            show this help\n");
            return 0;
        }
        if (dems_cli_common_opt(opt, optarg, flags, &nflags, &config_file) < 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "demsd admin verify-blobs: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    struct dems_setup s = {0};
    int rc = dems_setup_config(&s, config_file, flags, nflags);
    if (rc != 0)
        return rc;
    if (dems_crypto_init() < 0)
        rc = 1;
    if (rc == 0)
        rc = dems_setup_database(&s, true);
    char err[1024], path[4200];
    uint8_t *master = sodium_malloc(32);
    if (s.cfg.master_key_file[0] != '\0')
        snprintf(path, sizeof(path), "%s", s.cfg.master_key_file);
    else
        snprintf(path, sizeof(path), "%s/keys/master.key", s.cfg.data_dir);
    if (rc == 0 && (master == NULL || dems_master_key_load(path, master, err, sizeof(err)) < 0)) {
        fprintf(stderr, "demsd admin verify-blobs: %s\n", master == NULL ? "out of memory" : err);
        rc = 1;
    }
    if (rc == 0)
        rc = dems_setup_blob_store(&s.cfg, "demsd admin verify-blobs");
    PGconn *db = rc == 0 ? dems_db_connect_sync(s.app_conninfo, err, sizeof(err)) : NULL;
    if (rc == 0 && db == NULL) {
        fprintf(stderr, "demsd: %s\n", err);
        rc = 1;
    }
    if (db != NULL) {
        PGresult *res =
            PQexec(db, "SELECT id FROM artefacts WHERE disposed_at IS NULL ORDER BY id");
        int n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
        int bad = 0;
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(res, i, 0);
            int r = dems_blob_verify(s.cfg.data_dir, master, id);
            if (r < 0) {
                printf("BAD %s: %s\n", id, blob_problem(r));
                bad++;
            }
        }
        PQclear(res);
        long orphans = n < 0 ? 0 : print_orphans(db, s.cfg.data_dir);
        PQfinish(db);
        if (n < 0 || orphans < 0) {
            fprintf(stderr, "demsd admin verify-blobs: cannot list %s\n",
                    n < 0 ? "artefacts" : "the blob store");
            rc = 1;
        } else {
            printf("%d blobs checked, %d bad, %ld orphans\n", n, bad, orphans);
            rc = bad > 0 || orphans > 0 ? 1 : 0;
        }
    }
    if (master != NULL)
        sodium_free(master);
    dems_setup_blob_store_done();
    dems_setup_done(&s);
    return rc;
}

/* Decrypts one blob file with the master key to stdout (a backup's, or for an inquiry). */
static int decrypt_blob(int argc, char **argv)
{
    char *flags[16];
    size_t nflags = 0;
    const char *config_file = NULL;
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'}, {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},  {"file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    const char *file = NULL;
    int opt;
    optind = 1;
    while ((opt = dems_cli_getopt(argc, argv, opts, "admin decrypt-blob")) != -1) {
        if (opt == 'h') {
            printf("Usage: demsd admin decrypt-blob --data DIR --file PATH [--config FILE]\n"
                   "\n"
                   "Decrypts one blob file (the store's format: a key wrapped by the master\n"
                   "key, then authenticated chunks) to standard output, e.g. a file from a\n"
                   "backup of the blob store. One line and exit 1 when it cannot: a file that\n"
                   "is not a blob, another master key, or a blob crypto-erased by disposal.\n"
                   "\n"
                   "Options:\n"
                   "  --data DIR        data directory (for its master key)\n"
                   "  --file PATH       the blob file\n"
                   "  --config FILE     configuration file\n"
                   "  --set KEY=VALUE   set a configuration key (repeatable)\n"
                   "  --help            show this help\n");
            return 0;
        }
        if (opt == 'f') {
            file = optarg;
            continue;
        }
        if (dems_cli_common_opt(opt, optarg, flags, &nflags, &config_file) < 0)
            return 2;
    }
    if (optind < argc || file == NULL) {
        fprintf(stderr, "demsd admin decrypt-blob: %s%s\n",
                file == NULL ? "--file PATH is required" : "unexpected argument ",
                file == NULL ? "" : argv[optind]);
        return 2;
    }
    struct dems_setup s = {0};
    int rc = dems_setup_config(&s, config_file, flags, nflags);
    if (rc != 0)
        return rc;
    char err[1024] = "cannot initialise libsodium", path[4200];
    uint8_t *master = dems_crypto_init() == 0 ? sodium_malloc(32) : NULL;
    if (s.cfg.master_key_file[0] != '\0')
        snprintf(path, sizeof(path), "%s", s.cfg.master_key_file);
    else
        snprintf(path, sizeof(path), "%s/keys/master.key", s.cfg.data_dir);
    if (master != NULL && access(path, R_OK) != 0) /* never make a new key here */
        snprintf(err, sizeof(err), "no master key at %.900s: %s", path, strerror(errno));
    if (master == NULL || access(path, R_OK) != 0 ||
        dems_master_key_load(path, master, err, sizeof(err)) < 0) {
        fprintf(stderr, "demsd admin decrypt-blob: %s\n", master == NULL ? "out of memory" : err);
        rc = 1;
    }
    struct dems_blob *b = NULL;
    uint8_t *chunk = malloc(DEMS_BLOB_CHUNK);
    int r = rc != 0 ? 0 : chunk == NULL ? DEMS_ENOMEM : dems_blob_open_file(file, master, &b);
    long n = 0;
    while (rc == 0 && r == 0 && (n = dems_blob_read(b, chunk)) > 0)
        if (fwrite(chunk, 1, (size_t)n, stdout) != (size_t)n)
            r = DEMS_EIO;
    if (rc == 0 && r == 0 && n < 0)
        r = (int)n;
    if (rc == 0 && r < 0) {
        fprintf(stderr, "demsd admin decrypt-blob: cannot decrypt %s: %s\n", file,
                r == DEMS_ECRYPTO ? "not a blob of this master key (or crypto-erased, or altered)"
                                  : dems_strerror(r));
        rc = 1;
    }
    if (b != NULL)
        dems_blob_close(b);
    free(chunk);
    if (master != NULL)
        sodium_free(master);
    dems_setup_done(&s);
    return rc;
}

int dems_cli_admin(int argc, char **argv)
{
    bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                              strcmp(argv[1], "help") == 0);
    if (argc < 2 || help) {
        fprintf(help ? stdout : stderr,
                "Usage: demsd admin COMMAND [options]\n\nCommands:\n"
                "  create-user   create a staff account\n"
                "  verify-blobs  re-check every stored evidence blob against its SHA-256\n"
                "  decrypt-blob  decrypt one blob file with the master key to stdout\n"
                "\nRun `demsd admin COMMAND --help` for a command's options.\n");
        return help ? 0 : 2;
    }
    if (strcmp(argv[1], "create-user") == 0)
        return create_user(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify-blobs") == 0)
        return verify_blobs(argc - 1, argv + 1);
    if (strcmp(argv[1], "decrypt-blob") == 0)
        return decrypt_blob(argc - 1, argv + 1);
    fprintf(stderr, "demsd admin: unknown command %s (try demsd admin --help)\n", argv[1]);
    return 2;
}
