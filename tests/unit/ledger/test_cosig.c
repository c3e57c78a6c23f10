/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for witness cosignatures (common/ledger/cosig.c, C2SP
 * tlog-cosignature cosignature/v1): the signed message and blob layout
 * rebuilt here by hand, round trips, tampering, other keys, verifier keys of
 * type 0x04, and witness-policy counting (distinct keys, bad lines).
 */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"

static const char body[] = "example.com/behind-the-sofa\n20852163\n"
                           "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

static struct dems_ledger_key *key(const char *name, uint8_t fill)
{
    uint8_t seed[32];
    memset(seed, fill, sizeof(seed));
    struct dems_ledger_key *k = NULL;
    assert_int_equal(dems_ledger_key_new(name, seed, &k), 0);
    return k;
}

/* The line's blob, decoded (76 bytes). */
static void line_blob(const char *line, size_t len, uint8_t blob[static 76])
{
    const char *sp = memchr(line + 4, ' ', len - 4);
    assert_non_null(sp);
    size_t got = 0;
    assert_int_equal(sodium_base642bin(blob, 76, sp + 1, len - (size_t)(sp + 1 - line), NULL, &got,
                                       NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(got, 76);
}

static void test_layout_by_hand(void **state)
{
    (void)state;
    struct dems_ledger_key *k = key("witness.example/w1", 7);
    struct dems_buf out;
    dems_buf_init(&out, 4096);
    assert_int_equal(dems_cosig_sign(k, body, strlen(body), 1679315147, &out), 0);
    const char *line = (const char *)out.data;
    assert_memory_equal(line, "\xe2\x80\x94 witness.example/w1 ", 23);
    assert_int_equal(line[out.len - 1], '\n');
    uint8_t blob[76], pk[32], h[32];
    line_blob(line, out.len - 1, blob);
    /* Key hash: SHA-256(name || 0x0A || 0x04 || pk)[0:4]. */
    dems_ledger_key_public(k, pk);
    uint8_t kh_in[18 + 2 + 32];
    memcpy(kh_in, "witness.example/w1\n\x04", 20);
    memcpy(kh_in + 20, pk, 32);
    crypto_hash_sha256(h, kh_in, sizeof(kh_in));
    assert_memory_equal(blob, h, 4);
    /* Timestamp: 8 bytes big-endian. */
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | blob[4 + i];
    assert_int_equal(ts, 1679315147);
    /* Signature over "cosignature/v1\ntime <ts>\n" || body. */
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "cosignature/v1\ntime 1679315147\n%s", body);
    assert_int_equal(crypto_sign_verify_detached(blob + 12, (const uint8_t *)msg, (size_t)n, pk),
                     0);
    dems_buf_done(&out);
    dems_ledger_key_free(k);
}

static void test_check_and_tamper(void **state)
{
    (void)state;
    struct dems_ledger_key *k = key("w1", 1), *other = key("w2", 2), *same_name = key("w1", 3);
    struct dems_note_verifier v, vo, vs;
    dems_cosig_verifier_of(k, &v);
    dems_cosig_verifier_of(other, &vo);
    dems_cosig_verifier_of(same_name, &vs);
    struct dems_buf out;
    dems_buf_init(&out, 4096);
    assert_int_equal(dems_cosig_sign(k, body, strlen(body), 42, &out), 0);
    size_t len = out.len - 1;
    char *line = (char *)out.data;
    uint64_t ts = 0;
    assert_int_equal(dems_cosig_check_line(line, len, body, strlen(body), &v, &ts), 1);
    assert_int_equal(ts, 42);
    /* Another witness's key, or another key under the same name: not v's line. */
    assert_int_equal(dems_cosig_check_line(line, len, body, strlen(body), &vo, NULL), 0);
    assert_int_equal(dems_cosig_check_line(line, len, body, strlen(body), &vs, NULL), 0);
    /* Another body. */
    char changed[sizeof(body)];
    memcpy(changed, body, sizeof(body));
    changed[30] = '4';
    assert_int_equal(dems_cosig_check_line(line, len, changed, strlen(changed), &v, NULL),
                     DEMS_ECRYPTO);
    /* A signed-note (0x01) signature by the same key is no cosignature. */
    struct dems_buf note;
    dems_buf_init(&note, 4096);
    assert_int_equal(dems_note_sign(k, body, strlen(body), &note), 0);
    assert_int_equal(dems_buf_append(&note, "", 1), 0); /* a C string for strstr */
    const char *sig = strstr((const char *)note.data, "\n\n") + 2;
    assert_int_equal(dems_cosig_check_line(sig, strlen(sig) - 1, body, strlen(body), &v, NULL), 0);
    /* Malformed lines. */
    assert_int_equal(dems_cosig_check_line("- w1 AAAA", 9, body, strlen(body), &v, NULL),
                     DEMS_EINVAL);
    assert_int_equal(dems_cosig_check_line(line, 10, body, strlen(body), &v, NULL), DEMS_EINVAL);
    /* A flipped timestamp bit no longer verifies. */
    uint8_t blob[76];
    line_blob(line, len, blob);
    blob[11] ^= 1;
    char b64[sodium_base64_ENCODED_LEN(76, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof(b64), blob, 76, sodium_base64_VARIANT_ORIGINAL);
    char forged[256];
    int n = snprintf(forged, sizeof(forged), "\xe2\x80\x94 w1 %s", b64);
    assert_int_equal(dems_cosig_check_line(forged, (size_t)n, body, strlen(body), &v, NULL),
                     DEMS_ECRYPTO);
    /* Bad text or timestamp are refused when signing. */
    assert_int_equal(dems_cosig_sign(k, "no newline", 10, 1, &out), DEMS_EINVAL);
    assert_int_equal(dems_cosig_sign(k, body, strlen(body), (uint64_t)INT64_MAX + 1, &out),
                     DEMS_EINVAL);
    dems_buf_done(&note);
    dems_buf_done(&out);
    dems_ledger_key_free(k);
    dems_ledger_key_free(other);
    dems_ledger_key_free(same_name);
}

static void test_vkeys(void **state)
{
    (void)state;
    struct dems_ledger_key *k = key("witness.example/w1", 9);
    struct dems_note_verifier v, back;
    char vkey[DEMS_NOTE_VKEY_MAX], again[DEMS_NOTE_VKEY_MAX], note_vkey[DEMS_NOTE_VKEY_MAX];
    dems_cosig_verifier_of(k, &v);
    dems_cosig_verifier_format(&v, vkey);
    assert_int_equal(dems_cosig_verifier_parse(vkey, strlen(vkey), &back), 0);
    dems_cosig_verifier_format(&back, again);
    assert_string_equal(vkey, again);
    assert_memory_equal(back.pk, v.pk, 32);
    /* A log's key (type 0x01) is not a witness key, and the other way round. */
    dems_ledger_key_vkey(k, note_vkey);
    assert_int_equal(dems_cosig_verifier_parse(note_vkey, strlen(note_vkey), &back), DEMS_EINVAL);
    assert_int_equal(dems_note_verifier_parse(vkey, strlen(vkey), &back), DEMS_EINVAL);
    /* A wrong key hash. */
    char *plus = strchr(vkey, '+');
    plus[1] = plus[1] == '0' ? '1' : '0';
    assert_int_equal(dems_cosig_verifier_parse(vkey, strlen(vkey), &back), DEMS_EINVAL);
    dems_ledger_key_free(k);
}

static void test_policy_count(void **state)
{
    (void)state;
    struct dems_ledger_key *log = key("example.com/behind-the-sofa", 5);
    struct dems_ledger_key *w[3] = {key("w1", 1), key("w2", 2), key("w3", 3)};
    struct dems_buf note;
    dems_buf_init(&note, 8192);
    assert_int_equal(dems_note_sign(log, body, strlen(body), &note), 0);
    assert_int_equal(dems_cosig_sign(w[0], body, strlen(body), 100, &note), 0);
    assert_int_equal(dems_cosig_sign(w[1], body, strlen(body), 101, &note), 0);
    struct dems_note_verifier vs[4];
    for (int i = 0; i < 3; i++)
        dems_cosig_verifier_of(w[i], &vs[i]);
    vs[3] = vs[0]; /* listed twice */
    const char *n = (const char *)note.data;
    size_t count = 99;
    assert_int_equal(dems_cosig_count(n, note.len, vs, 4, &count), 0);
    assert_int_equal(count, 2);
    struct dems_witness_policy p = {.keys = vs, .nkeys = 4, .quorum = 2};
    assert_int_equal(dems_witness_policy_check(&p, n, note.len, &count), 0);
    p.quorum = 3;
    assert_int_equal(dems_witness_policy_check(&p, n, note.len, &count), DEMS_ECRYPTO);
    assert_int_equal(count, 2);
    /* The log's note still opens with its own key. */
    struct dems_note_verifier lv;
    size_t text_len = 0;
    dems_note_verifier_of(log, &lv);
    assert_int_equal(dems_note_open(n, note.len, &lv, &text_len), 0);
    assert_int_equal(text_len, strlen(body));
    assert_int_equal(dems_cosig_count("no blank line\n", 14, vs, 3, &count), DEMS_EINVAL);
    dems_buf_done(&note);
    dems_ledger_key_free(log);
    for (int i = 0; i < 3; i++)
        dems_ledger_key_free(w[i]);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_by_hand),
        cmocka_unit_test(test_check_and_tamper),
        cmocka_unit_test(test_vkeys),
        cmocka_unit_test(test_policy_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
