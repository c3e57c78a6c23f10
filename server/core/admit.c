/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection admission: a cap on open client connections in total and per
 * client address, shared by every loop. Each accepted socket takes a slot
 * before anything is allocated for it (no TLS state, no buffers) and gives
 * it back when its connection closes; a socket over a cap is closed at once.
 *
 * Addresses are counted in a small hash table of the addresses that have
 * connections open (so it never holds more entries than there are
 * connections), keyed with SipHash under a random key so a client cannot
 * pick addresses that collide. An IPv6 client is counted by its /64: one
 * host is routinely given a whole /64, and counting single addresses would
 * give it 2^64 caps. IPv4-mapped IPv6 addresses count as their IPv4 address.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dems/err.h"
#include "demsd/core.h"

struct entry {
    struct entry *next;
    struct dems_admit_key key;
    size_t count;
};

struct dems_admission {
    pthread_mutex_t mu;
    size_t total, max_total, max_per_address;
    struct entry **buckets;
    size_t nbuckets; /* a power of two */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
};

static bool is_v4_mapped(const struct in6_addr *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a->s6_addr, prefix, sizeof(prefix)) == 0;
}

void dems_admit_key_from(const struct sockaddr *sa, struct dems_admit_key *ret_key)
{
    struct dems_admit_key k = {{0}};
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        k.addr[10] = k.addr[11] = 0xff;
        memcpy(k.addr + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(k.addr, in6->sin6_addr.s6_addr, is_v4_mapped(&in6->sin6_addr) ? 16 : 8);
    }
    *ret_key = k;
}

int dems_admit_init(struct dems_server *srv, size_t max_total, size_t max_per_address)
{
    struct dems_admission *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return DEMS_ENOMEM;
    /* About one bucket per two connections, between 64 and 65536. */
    a->nbuckets = 64;
    while (a->nbuckets < 65536 && a->nbuckets * 2 < max_total)
        a->nbuckets *= 2;
    a->buckets = calloc(a->nbuckets, sizeof(*a->buckets));
    if (a->buckets == NULL) {
        free(a);
        return DEMS_ENOMEM;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->max_total = max_total;
    a->max_per_address = max_per_address;
    randombytes_buf(a->hash_key, sizeof(a->hash_key));
    srv->admission = a;
    return 0;
}

void dems_admit_done(struct dems_server *srv)
{
    struct dems_admission *a = srv->admission;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nbuckets; i++) {
        while (a->buckets[i] != NULL) {
            struct entry *e = a->buckets[i];
            a->buckets[i] = e->next;
            free(e);
        }
    }
    free(a->buckets);
    pthread_mutex_destroy(&a->mu);
    free(a);
    srv->admission = NULL;
}

static struct entry **slot(struct dems_admission *a, const struct dems_admit_key *k)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, k->addr, sizeof(k->addr), a->hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    struct entry **pp = &a->buckets[v & (a->nbuckets - 1)];
    while (*pp != NULL && memcmp((*pp)->key.addr, k->addr, sizeof(k->addr)) != 0)
        pp = &(*pp)->next;
    return pp;
}

enum dems_admit dems_admit_take(struct dems_server *srv, const struct dems_admit_key *key)
{
    struct dems_admission *a = srv->admission;
    enum dems_admit r = DEMS_ADMIT_OK;
    pthread_mutex_lock(&a->mu);
    if (a->total >= a->max_total) {
        r = DEMS_ADMIT_FULL;
    } else if (a->max_per_address > 0) {
        struct entry **pp = slot(a, key);
        if (*pp == NULL) {
            *pp = calloc(1, sizeof(**pp));
            if (*pp != NULL)
                (*pp)->key = *key;
        }
        if (*pp == NULL)
            r = DEMS_ADMIT_FULL; /* out of memory: refuse rather than not count */
        else if ((*pp)->count >= a->max_per_address)
            r = DEMS_ADMIT_ADDRESS_FULL;
        else
            (*pp)->count++;
    }
    if (r == DEMS_ADMIT_OK)
        a->total++;
    pthread_mutex_unlock(&a->mu);
    return r;
}

void dems_admit_release(struct dems_server *srv, const struct dems_admit_key *key)
{
    struct dems_admission *a = srv->admission;
    pthread_mutex_lock(&a->mu);
    a->total--;
    if (a->max_per_address > 0) {
        struct entry **pp = slot(a, key);
        struct entry *e = *pp;
        if (e != NULL && --e->count == 0) {
            *pp = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&a->mu);
}

size_t dems_admit_total(struct dems_server *srv)
{
    struct dems_admission *a = srv->admission;
    pthread_mutex_lock(&a->mu);
    size_t n = a->total;
    pthread_mutex_unlock(&a->mu);
    return n;
}
