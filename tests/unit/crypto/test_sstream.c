/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for common/crypto/sstream.c: the OpenSSL secretstream must give
 * libsodium's bytes exactly, read libsodium's chunks, and refuse what is not
 * authentic, across lengths (both paths: see sstream.c), tags, rekeying and
 * the counter's wrap.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"
#include "dems/sstream.h"

typedef crypto_secretstream_xchacha20poly1305_state sst;
#define ABYTES    crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL
#define TAG_REKEY crypto_secretstream_xchacha20poly1305_TAG_REKEY
#define TAG_PUSH  crypto_secretstream_xchacha20poly1305_TAG_PUSH

static const size_t lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 1000, 4096, 65535, 65536, 200000};

struct pair {
    sst push_ours, push_lib, pull_ours, pull_lib;
};

static void pair_new(struct pair *p)
{
    uint8_t key[32], head[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    crypto_secretstream_xchacha20poly1305_keygen(key);
    crypto_secretstream_xchacha20poly1305_init_push(&p->push_lib, head, key);
    p->push_ours = p->push_lib;
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&p->pull_lib, head, key), 0);
    p->pull_ours = p->pull_lib;
}

/* One chunk both ways: the same ciphertext, each side reads the other's. */
static void one_chunk(struct dems_sstream *x, struct pair *p, const uint8_t *m, size_t mlen,
                      uint8_t tag)
{
    uint8_t *a = malloc(mlen + ABYTES), *b = malloc(mlen + ABYTES), *back = malloc(mlen + 1);
    unsigned long long blen = 0, plen = 0;
    size_t got = 0;
    uint8_t t = 0xee, lt = 0xee;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(back);
    assert_int_equal(dems_sstream_push(x, &p->push_ours, a, m, mlen, tag), 0);
    crypto_secretstream_xchacha20poly1305_push(&p->push_lib, b, &blen, m, mlen, NULL, 0, tag);
    assert_int_equal(blen, mlen + ABYTES);
    assert_memory_equal(a, b, mlen + ABYTES);
    assert_memory_equal(&p->push_ours, &p->push_lib, sizeof(sst));
    /* ours reads libsodium's; libsodium reads ours */
    assert_int_equal(dems_sstream_pull(x, &p->pull_ours, back, &got, &t, b, mlen + ABYTES), 0);
    assert_int_equal(got, mlen);
    assert_int_equal(t, tag);
    if (mlen > 0)
        assert_memory_equal(back, m, mlen);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&p->pull_lib, back, &plen, &lt, a,
                                                                mlen + ABYTES, NULL, 0),
                     0);
    assert_int_equal(plen, mlen);
    assert_int_equal(lt, tag);
    assert_memory_equal(&p->pull_ours, &p->pull_lib, sizeof(sst));
    free(a);
    free(b);
    free(back);
}

static uint8_t *random_bytes(size_t n)
{
    uint8_t *m = malloc(n);
    assert_non_null(m);
    randombytes_buf(m, n);
    return m;
}

static void test_same_bytes_as_libsodium(void **state)
{
    (void)state;
    struct dems_sstream x;
    struct pair p;
    uint8_t *m = random_bytes(200000);
    assert_int_equal(dems_sstream_init(&x), 0);
    pair_new(&p);
    for (size_t round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
            one_chunk(&x, &p, m, lens[i], 0);
    one_chunk(&x, &p, m, 100, TAG_PUSH);
    one_chunk(&x, &p, m, 100, TAG_REKEY); /* the state is rekeyed after it */
    one_chunk(&x, &p, m, 100, 0);
    one_chunk(&x, &p, m, 65536, TAG_FINAL);
    dems_sstream_done(&x);
    free(m);
}

static void test_counter_wrap_rekeys(void **state)
{
    (void)state;
    struct dems_sstream x;
    struct pair p;
    uint8_t *m = random_bytes(1000);
    assert_int_equal(dems_sstream_init(&x), 0);
    pair_new(&p);
    /* the 32-bit chunk counter about to wrap, on all four states alike */
    memset(p.push_ours.nonce, 0xff, 4);
    memset(p.push_lib.nonce, 0xff, 4);
    memset(p.pull_ours.nonce, 0xff, 4);
    memset(p.pull_lib.nonce, 0xff, 4);
    uint8_t k[32];
    memcpy(k, p.push_ours.k, 32);
    one_chunk(&x, &p, m, 1000, 0);
    assert_memory_not_equal(k, p.push_ours.k, 32); /* rekeyed */
    one_chunk(&x, &p, m, 1000, 0);
    dems_sstream_done(&x);
    free(m);
}

/* mlen 5000 takes OpenSSL's path, 4999 libsodium's (see sstream.c). */
static void refuses_altered(size_t mlen)
{
    struct dems_sstream x;
    struct pair p;
    uint8_t *m = random_bytes(mlen), *c = malloc(mlen + ABYTES), *out = malloc(mlen);
    size_t got = 0;
    uint8_t tag = 0;
    assert_non_null(c);
    assert_non_null(out);
    assert_int_equal(dems_sstream_init(&x), 0);
    pair_new(&p);
    assert_int_equal(dems_sstream_push(&x, &p.push_ours, c, m, mlen, 0), 0);
    /* a flipped bit in the tag byte, the ciphertext or the MAC */
    const size_t at[] = {0, 1, mlen / 2, mlen, mlen + 1, mlen + ABYTES - 1};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        sst before = p.pull_ours;
        c[at[i]] ^= 0x01;
        assert_int_equal(dems_sstream_pull(&x, &p.pull_ours, out, &got, &tag, c, mlen + ABYTES),
                         DEMS_ECRYPTO);
        assert_memory_equal(&before, &p.pull_ours, sizeof(sst)); /* state unchanged */
        for (size_t j = 0; j < mlen; j++)
            assert_int_equal(out[j], 0); /* nothing unauthenticated handed out */
        c[at[i]] ^= 0x01;
    }
    /* truncated, too short for a chunk, and another stream's key */
    assert_int_equal(dems_sstream_pull(&x, &p.pull_ours, out, &got, &tag, c, mlen + ABYTES - 1),
                     DEMS_ECRYPTO);
    assert_int_equal(dems_sstream_pull(&x, &p.pull_ours, out, &got, &tag, c, ABYTES - 1),
                     DEMS_ECRYPTO);
    struct pair other;
    pair_new(&other);
    assert_int_equal(dems_sstream_pull(&x, &other.pull_ours, out, &got, &tag, c, mlen + ABYTES),
                     DEMS_ECRYPTO);
    /* intact: accepted */
    assert_int_equal(dems_sstream_pull(&x, &p.pull_ours, out, &got, &tag, c, mlen + ABYTES), 0);
    assert_memory_equal(out, m, mlen);
    /* replayed: the state moved on, so the same chunk no longer authenticates */
    assert_int_equal(dems_sstream_pull(&x, &p.pull_ours, out, &got, &tag, c, mlen + ABYTES),
                     DEMS_ECRYPTO);
    dems_sstream_done(&x);
    free(m);
    free(c);
    free(out);
}

static void test_refuses_altered_chunks(void **state)
{
    (void)state;
    refuses_altered(5000);
    refuses_altered(4999);
}

int main(void)
{
    if (dems_crypto_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_libsodium),
        cmocka_unit_test(test_counter_wrap_rekeys),
        cmocka_unit_test(test_refuses_altered_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
