/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index file. Layout (all integers little-endian):
 *
 *   0      header, HEADER_BYTES long: magic "DEMSVEC\0", format version,
 *          parameters, slot count, entry point, quantiser step, a table of
 *          sections {kind, offset, size, CRC-32C}, and a CRC-32C of the header
 *   ...    the sections, each starting on a page boundary so that a mapped
 *          file can be used in place: quantiser offsets, float vectors,
 *          codes, level-0 links, levels, flags, labels, upper-level links.
 *
 * Loading checks the magic, the version, the header checksum, that every
 * section lies inside the file and has exactly the size the parameters imply,
 * every section checksum, and then the graph itself (link counts, ids in
 * range, levels consistent) so that a damaged file can never send a search
 * out of bounds.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dems/err.h"

#include "vector_int.h"

#define MAGIC          "DEMSVEC"
#define FORMAT_VERSION 1u
#define HEADER_BYTES   4096u
#define PAGE           4096u
#define NSECT          8u
#define SECT_TABLE     128u /* offset of the section table in the header */
#define SECT_ENTRY     24u  /* kind u32, crc u32, offset u64, size u64 */
#define HEADER_CRC_AT  (SECT_TABLE + NSECT * SECT_ENTRY)

enum { S_QLO, S_F32, S_CODES, S_LINKS0, S_LEVELS, S_FLAGS, S_LABELS, S_UPPER };

/* --- little-endian fields ----------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* --- saving ------------------------------------------------------------- */

struct sect {
    const void *data; /* NULL for S_UPPER, which is gathered per slot */
    uint64_t off, size;
    uint32_t crc;
};

static int write_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return DEMS_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static uint64_t upper_size(const struct dems_vector_index *ix, uint32_t s)
{
    return (uint64_t)ix->levels[s] * (1 + ix->p.m) * sizeof(uint32_t);
}

/* Writes the upper-level link blocks of every slot in order, and their CRC. */
static int write_upper(const struct dems_vector_index *ix, int fd, uint32_t *ret_crc)
{
    uint32_t crc = 0;
    for (size_t s = 0; s < ix->n; s++) {
        size_t bytes = (size_t)upper_size(ix, (uint32_t)s);
        if (bytes == 0)
            continue;
        crc = vec_crc32c(crc, ix->upper[s], bytes);
        int r = write_all(fd, ix->upper[s], bytes);
        if (r < 0)
            return r;
    }
    *ret_crc = crc;
    return 0;
}

static void plan_sections(const struct dems_vector_index *ix, struct sect *sc)
{
    uint64_t n = ix->n, dim = ix->p.dim;
    memset(sc, 0, NSECT * sizeof(*sc));
    sc[S_QLO] = (struct sect){ix->qlo, 0, ix->qlo ? dim * 4 : 0, 0};
    sc[S_F32] = (struct sect){ix->f32, 0, ix->f32 ? n * dim * 4 : 0, 0};
    sc[S_CODES] = (struct sect){ix->codes, 0, ix->codes ? n * dim : 0, 0};
    sc[S_LINKS0] = (struct sect){ix->links0, 0, n * (1 + (uint64_t)ix->m0) * 4, 0};
    sc[S_LEVELS] = (struct sect){ix->levels, 0, n, 0};
    sc[S_FLAGS] = (struct sect){ix->flags, 0, n, 0};
    sc[S_LABELS] = (struct sect){ix->labels, 0, n * 8, 0};
    uint64_t up = 0;
    for (size_t s = 0; s < ix->n; s++)
        up += upper_size(ix, (uint32_t)s);
    sc[S_UPPER] = (struct sect){NULL, 0, up, 0};
    uint64_t off = HEADER_BYTES;
    for (unsigned i = 0; i < NSECT; i++) {
        sc[i].off = off;
        off += (sc[i].size + PAGE - 1) / PAGE * PAGE;
    }
}

static void fill_header(const struct dems_vector_index *ix, const struct sect *sc, uint8_t *h)
{
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, HEADER_BYTES);
    put32(h + 16, ix->p.dim);
    put32(h + 20, (uint32_t)ix->p.metric);
    put32(h + 24, (uint32_t)ix->p.storage);
    put32(h + 28, ix->p.m);
    put32(h + 32, ix->p.ef_construction);
    put32(h + 36, ix->f32 != NULL);
    put64(h + 40, ix->p.seed);
    put64(h + 48, ix->n);
    put64(h + 56, ix->live);
    put64(h + 64, ix->ep);
    uint32_t step;
    memcpy(&step, &ix->qstep, 4);
    put32(h + 72, step);
    put32(h + 76, ix->trained);
    for (unsigned i = 0; i < NSECT; i++) {
        uint8_t *e = h + SECT_TABLE + i * SECT_ENTRY;
        put32(e, i);
        put32(e + 4, sc[i].crc);
        put64(e + 8, sc[i].off);
        put64(e + 16, sc[i].size);
    }
    put32(h + HEADER_CRC_AT, vec_crc32c(0, h, HEADER_BYTES)); /* with the field still zero */
}

static int write_sections(const struct dems_vector_index *ix, int fd, struct sect *sc)
{
    static const uint8_t zeros[PAGE];
    uint8_t *h = calloc(1, HEADER_BYTES);
    if (h == NULL)
        return DEMS_ENOMEM;
    int r = write_all(fd, h, HEADER_BYTES); /* placeholder; rewritten last */
    for (unsigned i = 0; i < NSECT && r == 0; i++) {
        if (i == S_UPPER) {
            r = write_upper(ix, fd, &sc[i].crc);
        } else {
            sc[i].crc = vec_crc32c(0, sc[i].data, (size_t)sc[i].size);
            r = write_all(fd, sc[i].data, (size_t)sc[i].size);
        }
        size_t pad = (size_t)((PAGE - sc[i].size % PAGE) % PAGE);
        if (r == 0)
            r = write_all(fd, zeros, pad);
    }
    if (r == 0) {
        fill_header(ix, sc, h);
        if (pwrite(fd, h, HEADER_BYTES, 0) != (ssize_t)HEADER_BYTES)
            r = DEMS_EIO;
    }
    free(h);
    return r;
}

int dems_vector_save(struct dems_vector_index *ix, const char *path)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (tmp == NULL)
        return DEMS_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    /* Exclusive: no insert may move the arrays or change links mid-write. */
    pthread_rwlock_wrlock(&ix->grow_lock);
    int r = DEMS_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        struct sect sc[NSECT];
        plan_sections(ix, sc);
        r = write_sections(ix, fd, sc);
        if (r == 0 && fsync(fd) != 0)
            r = DEMS_EIO;
        if (close(fd) != 0 && r == 0)
            r = DEMS_EIO;
        if (r == 0 && rename(tmp, path) != 0)
            r = DEMS_EIO;
        if (r < 0)
            unlink(tmp);
    }
    pthread_rwlock_unlock(&ix->grow_lock);
    free(tmp);
    return r;
}

/* --- loading ------------------------------------------------------------ */

struct loaded {
    struct dems_vector_params p;
    uint64_t n, live, ep;
    float qstep;
    bool has_f32, trained;
    struct sect sc[NSECT];
};

#define FAIL(code, text)                                                                           \
    do {                                                                                           \
        *why = (text);                                                                             \
        return (code);                                                                             \
    } while (0)

/* Where a section's page padding ends (the next section starts). */
static uint64_t padded_end(const struct sect *s)
{
    return s->off + (s->size + PAGE - 1) / PAGE * PAGE;
}

/* CRC of the whole header page with its checksum field read as zero. */
static uint32_t header_crc(const uint8_t *h)
{
    uint8_t copy[HEADER_BYTES];
    memcpy(copy, h, HEADER_BYTES);
    memset(copy + HEADER_CRC_AT, 0, 4);
    return vec_crc32c(0, copy, HEADER_BYTES);
}

/* Checks the header and fills l; the file is file_size bytes long. */
static int parse_header(const uint8_t *h, uint64_t file_size, struct loaded *l, const char **why)
{
    if (memcmp(h, MAGIC, 8) != 0)
        FAIL(DEMS_EINVAL, "not a dems vector index file (bad magic)");
    if (get32(h + 8) != FORMAT_VERSION)
        FAIL(DEMS_EINVAL, "unsupported vector index format version");
    if (get32(h + 12) != HEADER_BYTES || get32(h + HEADER_CRC_AT) != header_crc(h))
        FAIL(DEMS_EINVAL, "vector index header checksum mismatch (file corrupted)");
    dems_vector_params_init(&l->p, get32(h + 16));
    l->p.metric = (enum dems_vector_metric)get32(h + 20);
    l->p.storage = (enum dems_vector_storage)get32(h + 24);
    l->p.m = get32(h + 28);
    l->p.ef_construction = get32(h + 32);
    l->has_f32 = get32(h + 36) != 0;
    l->p.keep_f32 = l->has_f32;
    l->p.seed = get64(h + 40);
    l->n = get64(h + 48);
    l->live = get64(h + 56);
    l->ep = get64(h + 64);
    uint32_t step = get32(h + 72);
    memcpy(&l->qstep, &step, 4);
    l->trained = get32(h + 76) != 0;
    if (l->n > DEMS_VECTOR_MAX_COUNT || l->live > l->n)
        FAIL(DEMS_EINVAL, "vector index header has impossible counts");
    if (l->p.storage == DEMS_VECTOR_F32 && !l->has_f32)
        FAIL(DEMS_EINVAL, "vector index header has inconsistent storage");
    if (!(l->qstep > 0) || !isfinite(l->qstep))
        FAIL(DEMS_EINVAL, "vector index header has a bad quantiser step");
    for (unsigned i = 0; i < NSECT; i++) {
        const uint8_t *e = h + SECT_TABLE + i * SECT_ENTRY;
        l->sc[i].crc = get32(e + 4);
        l->sc[i].off = get64(e + 8);
        l->sc[i].size = get64(e + 16);
        if (get32(e) != i || l->sc[i].off % PAGE != 0 || l->sc[i].off < HEADER_BYTES)
            FAIL(DEMS_EINVAL, "vector index section table is malformed");
        if (l->sc[i].off > file_size || l->sc[i].size > file_size - l->sc[i].off)
            FAIL(DEMS_EINVAL, "vector index file is truncated");
        uint64_t prev_end = i == 0 ? HEADER_BYTES : padded_end(&l->sc[i - 1]);
        if (l->sc[i].off != prev_end)
            FAIL(DEMS_EINVAL, "vector index section table is malformed");
    }
    if (padded_end(&l->sc[NSECT - 1]) > file_size)
        FAIL(DEMS_EINVAL, "vector index file is truncated");
    if (padded_end(&l->sc[NSECT - 1]) != file_size)
        FAIL(DEMS_EINVAL, "vector index file has trailing bytes");
    return 0;
}

/* Checks each fixed section's size against what the parameters imply. */
static int check_sizes(struct loaded *l, const char **why)
{
    if (!vec_params_ok(&l->p))
        FAIL(DEMS_EINVAL, "vector index header has invalid parameters");
    uint64_t n = l->n, dim = l->p.dim, m0 = 2 * (uint64_t)l->p.m;
    bool sq8 = l->p.storage == DEMS_VECTOR_SQ8;
    uint64_t want[NSECT - 1] = {
        sq8 ? dim * 4 : 0,
        l->has_f32 ? n * dim * 4 : 0,
        sq8 ? n * dim : 0,
        n * (1 + m0) * 4,
        n,
        n,
        n * 8,
    };
    for (unsigned i = 0; i < NSECT - 1; i++) {
        if (l->sc[i].size != want[i])
            FAIL(DEMS_EINVAL, "vector index section sizes do not match its parameters");
    }
    return 0;
}

static int check_crcs(const uint8_t *base, const struct loaded *l, const char **why)
{
    for (unsigned i = 0; i < NSECT; i++) {
        if (vec_crc32c(0, base + l->sc[i].off, (size_t)l->sc[i].size) != l->sc[i].crc)
            FAIL(DEMS_EINVAL, "vector index section checksum mismatch (file corrupted)");
        for (uint64_t b = l->sc[i].off + l->sc[i].size; b < padded_end(&l->sc[i]); b++) {
            if (base[b] != 0)
                FAIL(DEMS_EINVAL, "vector index section padding is not zero (file corrupted)");
        }
    }
    return 0;
}

/* Checks one link list: count within maxm, ids in range with level >= lvl. */
static bool links_ok(const struct dems_vector_index *ix, const uint32_t *ln, uint32_t maxm,
                     unsigned lvl)
{
    if (ln[0] > maxm)
        return false;
    for (uint32_t j = 0; j < ln[0]; j++) {
        if (ln[1 + j] >= ix->n || ix->levels[ln[1 + j]] < lvl)
            return false;
    }
    return true;
}

/* Points the index at the sections in base and checks the graph. */
static int attach(struct dems_vector_index *ix, uint8_t *base, const struct loaded *l,
                  const char **why)
{
    size_t n = (size_t)l->n, live = 0, dim = l->p.dim;
    ix->f32 = l->has_f32 ? (float *)(void *)(base + l->sc[S_F32].off) : NULL;
    ix->codes = l->p.storage == DEMS_VECTOR_SQ8 ? base + l->sc[S_CODES].off : NULL;
    ix->links0 = (uint32_t *)(void *)(base + l->sc[S_LINKS0].off);
    ix->levels = base + l->sc[S_LEVELS].off;
    ix->flags = base + l->sc[S_FLAGS].off;
    ix->labels = (uint64_t *)(void *)(base + l->sc[S_LABELS].off);
    ix->n = ix->cap = n;
    ix->live = (size_t)l->live;
    ix->ep = l->ep;
    ix->qstep = l->qstep;
    ix->trained = l->trained;
    if (ix->qlo != NULL) {
        memcpy(ix->qlo, base + l->sc[S_QLO].off, dim * sizeof(float));
        for (size_t d = 0; d < dim; d++) {
            if (!isfinite(ix->qlo[d]))
                FAIL(DEMS_EINVAL, "vector index quantiser is corrupt");
        }
    }
    ix->upper = calloc(n ? n : 1, sizeof(uint32_t *));
    if (ix->upper == NULL)
        FAIL(DEMS_ENOMEM, "out of memory");
    uint8_t *up = base + l->sc[S_UPPER].off, *up_end = up + l->sc[S_UPPER].size;
    for (size_t s = 0; s < n; s++) {
        if (ix->levels[s] > MAX_LEVEL || ix->flags[s] > (VF_READY | VF_DELETED))
            FAIL(DEMS_EINVAL, "vector index has a corrupt level or flag");
        live += ix->flags[s] == VF_READY;
        ix->dead += (ix->flags[s] & VF_DELETED) != 0;
        size_t bytes = (size_t)upper_size(ix, (uint32_t)s);
        if (bytes > (size_t)(up_end - up))
            FAIL(DEMS_EINVAL, "vector index upper links are truncated");
        ix->upper[s] = bytes ? (uint32_t *)(void *)up : NULL;
        up += bytes;
    }
    if (up != up_end || live != ix->live)
        FAIL(DEMS_EINVAL, "vector index upper links or counts are inconsistent");
    if (ix->ep != EP_NONE &&
        ((uint32_t)ix->ep >= n || ix->levels[(uint32_t)ix->ep] != (ix->ep >> 32)))
        FAIL(DEMS_EINVAL, "vector index entry point is corrupt");
    for (size_t s = 0; s < n; s++) {
        if (!links_ok(ix, vec_links(ix, (uint32_t)s, 0), ix->m0, 0))
            FAIL(DEMS_EINVAL, "vector index graph links are corrupt");
        for (unsigned lv = 1; lv <= ix->levels[s]; lv++) {
            if (!links_ok(ix, vec_links(ix, (uint32_t)s, lv), ix->p.m, lv))
                FAIL(DEMS_EINVAL, "vector index graph links are corrupt");
        }
    }
    if (vec_map_rebuild(ix) < 0)
        FAIL(DEMS_ENOMEM, "out of memory");
    return 0;
}

/* Reads or maps the whole file into *ret_base. */
static int open_file(const char *path, unsigned flags, uint8_t **ret_base, size_t *ret_len,
                     bool *ret_heap, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL(DEMS_EIO, "cannot open the vector index file");
    struct stat st;
    int r = 0;
    uint8_t *base = NULL;
    size_t len = 0;
    if (fstat(fd, &st) != 0) {
        r = DEMS_EIO;
        *why = "cannot stat the vector index file";
    } else if ((uint64_t)st.st_size < HEADER_BYTES) {
        r = DEMS_EINVAL;
        *why = "vector index file is truncated (shorter than its header)";
    } else if (flags & DEMS_VECTOR_LOAD_MMAP) {
        len = (size_t)st.st_size;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            r = DEMS_EIO;
            *why = "cannot map the vector index file";
        }
        base = m == MAP_FAILED ? NULL : m;
    } else {
        len = (size_t)st.st_size;
        base = vec_big_alloc(len);
        size_t got = 0;
        while (base != NULL && got < len) {
            ssize_t g = pread(fd, base + got, len - got, (off_t)got);
            if (g < 0 && errno == EINTR)
                continue;
            if (g <= 0)
                break;
            got += (size_t)g;
        }
        if (base == NULL || got < len) {
            r = base == NULL ? DEMS_ENOMEM : DEMS_EIO;
            *why = base == NULL ? "out of memory" : "cannot read the vector index file";
            free(base);
        }
        *ret_heap = true;
    }
    close(fd);
    if (r == 0) {
        *ret_base = base;
        *ret_len = len;
    }
    return r;
}

int dems_vector_load(const char *path, unsigned flags, struct dems_vector_index **ret_index,
                     const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    uint8_t *base = NULL;
    size_t len = 0;
    bool heap = false;
    int r = open_file(path, flags, &base, &len, &heap, why);
    if (r < 0)
        return r;
    struct loaded l;
    struct dems_vector_index *ix = NULL;
    r = parse_header(base, len, &l, why);
    if (r == 0)
        r = check_sizes(&l, why);
    if (r == 0)
        r = check_crcs(base, &l, why);
    if (r == 0 && (ix = vec_alloc(&l.p)) == NULL) {
        r = DEMS_ENOMEM;
        *why = "out of memory";
    }
    if (r == 0) {
        ix->map = base;
        ix->map_len = len;
        ix->map_is_heap = heap;
        r = attach(ix, base, &l, why);
        if (r == 0) {
            *ret_index = ix;
            return 0;
        }
        dems_vector_free(ix); /* releases base too */
        return r;
    }
    if (heap)
        free(base);
    else
        munmap(base, len);
    return r;
}
