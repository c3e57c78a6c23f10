/* SPDX-License-Identifier: Apache-2.0 */
/*
 * demsd as a witness for other logs (C2SP tlog-witness; docs/ledger.md,
 * "Witnesses"): the configured logs (witness_logs: verifier keys, each
 * key's name being the log's origin) and this server's own cosignature key
 * (witness_name), made on first start and kept in witness_keys with its seed
 * sealed under the master key, like the log's signing key. The protocol
 * itself (POST /add-checkpoint) is server/api/witness.c; the log role
 * (submitting our own checkpoints to witnesses) is witness_client.c.
 * Everything here is set up at start and read-only afterwards, so the
 * loops read it without locks.
 */
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "dems/str.h"
#include "demsd/core.h"
#include "demsd/ledger.h"

#include "witness_int.h"

#define SEALED_LEN (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 32)

struct dems_witness {
    struct dems_ledger_key *key; /* NULL when the witness role is off */
    struct dems_note_verifier cosigner;
    size_t nlogs;
    struct dems_note_verifier logs[DEMS_WITNESS_MAX_LOGS];
    struct witness_client *client; /* the log role's thread, or NULL */
};

/* Splits s at white space (or commas when commas is true) into words. */
static size_t next_word(const char *s, size_t *pos, bool commas, const char **ret_word)
{
    size_t i = *pos;
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || (commas && s[i] == ','))
        i++;
    size_t start = i;
    while (s[i] != '\0' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && !(commas && s[i] == ','))
        i++;
    *pos = i;
    *ret_word = s + start;
    return i - start;
}

static int parse_logs(struct dems_witness *w, const char *list, char *err, size_t errlen)
{
    size_t pos = 0;
    const char *word;
    size_t n;
    while ((n = next_word(list, &pos, true, &word)) > 0) {
        if (w->nlogs == DEMS_WITNESS_MAX_LOGS) {
            snprintf(err, errlen, "config: witness_logs: at most %d logs", DEMS_WITNESS_MAX_LOGS);
            return DEMS_EINVAL;
        }
        if (dems_note_verifier_parse(word, n, &w->logs[w->nlogs]) < 0) {
            snprintf(err, errlen,
                     "config: witness_logs: \"%.*s\" is not a log's verifier key "
                     "(name+hex key hash+base64 key, as GET /v1/ledger/key gives)",
                     (int)(n > 200 ? 200 : n), word);
            return DEMS_EINVAL;
        }
        w->nlogs++;
    }
    return 0;
}

/* Opens a sealed seed into a key named name. */
static int open_key(const char *name, const char *sealed_hex, const uint8_t master[static 32],
                    struct dems_ledger_key **ret_k, char *err, size_t errlen)
{
    uint8_t sealed[SEALED_LEN], seed[32];
    if (dems_hex_decode(sealed_hex, strlen(sealed_hex), sealed, sizeof(sealed)) < 0 ||
        crypto_secretbox_open_easy(seed, sealed + crypto_secretbox_NONCEBYTES,
                                   sizeof(sealed) - crypto_secretbox_NONCEBYTES, sealed,
                                   master) != 0) {
        snprintf(err, errlen,
                 "witness: the cosignature key does not open with this master key "
                 "(wrong or replaced master key file?)");
        return DEMS_ECRYPTO;
    }
    int r = dems_ledger_key_new(name, seed, ret_k);
    sodium_memzero(seed, sizeof(seed));
    return r;
}

/* Makes a key named name and stores it sealed (first start). */
static int create_key(PGconn *db, const char *name, const uint8_t master[static 32], char *err,
                      size_t errlen)
{
    struct dems_ledger_key *k = NULL;
    if (dems_ledger_key_new(name, NULL, &k) < 0) {
        snprintf(err, errlen, "config: witness_name: \"%.200s\" is not a valid key name", name);
        return DEMS_EINVAL;
    }
    uint8_t seed[32], pk[32], sealed[SEALED_LEN];
    dems_ledger_key_seed(k, seed);
    dems_ledger_key_public(k, pk);
    dems_ledger_key_free(k);
    randombytes_buf(sealed, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(sealed + crypto_secretbox_NONCEBYTES, seed, 32, sealed, master);
    sodium_memzero(seed, sizeof(seed));
    char shex[2 * SEALED_LEN + 1], pkhex[65];
    dems_hex_encode(sealed, sizeof(sealed), shex);
    dems_hex_encode(pk, 32, pkhex);
    const char *p[] = {name, pkhex, shex};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO witness_keys (name, public_key, sealed_seed)"
                                 " VALUES ($1, decode($2, 'hex'), decode($3, 'hex'))"
                                 " ON CONFLICT (name) DO NOTHING",
                                 3, NULL, p, NULL, NULL, 0);
    int r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : DEMS_EDB;
    if (r < 0)
        snprintf(err, errlen, "witness: cannot store the cosignature key: %.300s",
                 PQresultErrorMessage(res));
    PQclear(res);
    return r;
}

/* Loads (or on first start makes) the cosignature key named name. */
static int load_key(PGconn *db, struct dems_witness *w, const char *name,
                    const uint8_t master[static 32], char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *p[] = {name};
        PGresult *res = PQexecParams(
            db, "SELECT encode(sealed_seed, 'hex') AS sealed FROM witness_keys WHERE name = $1", 1,
            NULL, p, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "witness: %.300s", PQresultErrorMessage(res));
            PQclear(res);
            return DEMS_EDB;
        }
        if (PQntuples(res) == 1) {
            int r = open_key(name, PQgetvalue(res, 0, PQfnumber(res, "sealed")), master, &w->key,
                             err, errlen);
            PQclear(res);
            if (r == 0)
                dems_cosig_verifier_of(w->key, &w->cosigner);
            return r;
        }
        PQclear(res);
        int r = create_key(db, name, master, err, errlen);
        if (r < 0)
            return r;
    }
    snprintf(err, errlen, "witness: the cosignature key was not stored");
    return DEMS_EDB;
}

int dems_witness_start(struct dems_server *srv, const char *conninfo,
                       const uint8_t master_key[static 32], char *err, size_t errlen)
{
    const struct dems_config *cfg = srv->cfg;
    struct dems_witness *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return DEMS_ENOMEM;
    }
    int r = parse_logs(w, cfg->witness_logs, err, errlen);
    if (r == 0 && w->nlogs > 0 && cfg->witness_name[0] == '\0') {
        snprintf(err, errlen, "config: witness_logs needs witness_name (this witness's key name)");
        r = DEMS_EINVAL;
    }
    if (r == 0 && cfg->witness_name[0] != '\0') {
        PGconn *db = PQconnectdb(conninfo);
        if (PQstatus(db) != CONNECTION_OK) {
            snprintf(err, errlen, "witness: %.300s", PQerrorMessage(db));
            r = DEMS_EDB;
        } else {
            r = load_key(db, w, cfg->witness_name, master_key, err, errlen);
        }
        PQfinish(db);
    }
    if (r == 0)
        r = witness_client_start(srv, conninfo, &w->client, err, errlen);
    if (r < 0) {
        dems_ledger_key_free(w->key);
        free(w);
        return r;
    }
    srv->witness = w;
    return 0;
}

void dems_witness_stop(struct dems_server *srv)
{
    struct dems_witness *w = srv->witness;
    if (w == NULL)
        return;
    witness_client_stop(w->client);
    dems_ledger_key_free(w->key);
    free(w);
    srv->witness = NULL;
}

bool dems_witness_vkey(const struct dems_server *srv, char out[static DEMS_NOTE_VKEY_MAX])
{
    const struct dems_witness *w = srv->witness;
    if (w == NULL || w->key == NULL)
        return false;
    dems_cosig_verifier_format(&w->cosigner, out);
    return true;
}

int dems_witness_open(const struct dems_server *srv, const char *note, size_t len,
                      struct dems_checkpoint *ret_c, size_t *ret_text_len)
{
    const struct dems_witness *w = srv->witness;
    size_t text_len = 0;
    struct dems_checkpoint c;
    bool known = false;
    /* The origin first: an unknown log is 404 whatever its signatures. */
    const char *nl = memchr(note, '\n', len);
    if (nl == NULL)
        return DEMS_EINVAL;
    size_t olen = (size_t)(nl - note);
    int r = DEMS_ECRYPTO;
    for (size_t i = 0; w != NULL && w->key != NULL && i < w->nlogs; i++) {
        if (strlen(w->logs[i].name) != olen || memcmp(w->logs[i].name, note, olen) != 0)
            continue;
        known = true;
        r = dems_note_open(note, len, &w->logs[i], &text_len);
        if (r == DEMS_EINVAL)
            return r;
        if (r == 0)
            break;
    }
    if (!known)
        return DEMS_ENOTFOUND;
    if (r < 0)
        return r;
    if (dems_checkpoint_parse(note, text_len, &c) < 0)
        return DEMS_EINVAL;
    *ret_c = c;
    *ret_text_len = text_len;
    return 0;
}

int dems_witness_cosign(const struct dems_server *srv, const char *text, size_t len,
                        uint64_t timestamp, struct dems_buf *out)
{
    const struct dems_witness *w = srv->witness;
    if (w == NULL || w->key == NULL)
        return DEMS_EUNAVAIL;
    return dems_cosig_sign(w->key, text, len, timestamp, out);
}

void dems_witness_kick(struct dems_server *srv)
{
    if (srv != NULL && srv->witness != NULL)
        witness_client_kick(srv->witness->client);
}
