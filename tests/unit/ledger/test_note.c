/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for keys, entry signatures, C2SP signed notes and checkpoints
 * (common/ledger/note.c): RFC 8032 TEST 1, the C2SP signed-note example,
 * round trips, tampering, foreign signatures, and strict parsing.
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

#include "vec.h"

/*
 * RFC 8032 section 7.1 TEST 1: the vector file holds the public key, the
 * (empty) message and the signature; the SECRET KEY line of the RFC is
 * transcribed here.
 */
static void test_rfc8032_test1(void **state)
{
    (void)state;
    json_t *v = vec_load("rfc8032-ed25519-test1.json");
    uint8_t seed[32], pk[32], want_pk[32], sig[64], sk[64], mine[64];
    vec_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, 32);
    vec_hex(json_string_value(json_object_get(v, "public_key_hex")), want_pk, 32);
    vec_hex(json_string_value(json_object_get(v, "signature_hex")), sig, 64);
    assert_string_equal(json_string_value(json_object_get(v, "message_hex")), "");

    struct dems_ledger_key *k = NULL;
    assert_int_equal(dems_ledger_key_new("rfc8032", seed, &k), 0);
    dems_ledger_key_public(k, pk);
    assert_memory_equal(pk, want_pk, 32);
    uint8_t back[32];
    dems_ledger_key_seed(k, back);
    assert_memory_equal(back, seed, 32);
    /* The primitive every signature here goes through. */
    assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"", 0, pk), 0);
    crypto_sign_seed_keypair(pk, sk, seed);
    crypto_sign_detached(mine, NULL, (const uint8_t *)"", 0, sk);
    assert_memory_equal(mine, sig, 64);
    sig[10] ^= 1;
    assert_int_not_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"", 0, pk), 0);
    sodium_memzero(sk, sizeof(sk));
    dems_ledger_key_free(k);
    json_decref(v);
}

static void test_c2sp_example(void **state)
{
    (void)state;
    json_t *v = vec_load("c2sp-signed-note-example.json");
    const char *vkey = json_string_value(json_object_get(v, "vkey"));
    const char *note = json_string_value(json_object_get(v, "note"));
    struct dems_note_verifier ver;
    size_t text_len = 0;

    assert_true(json_is_true(json_object_get(v, "want_valid")));
    assert_int_equal(dems_note_verifier_parse(vkey, strlen(vkey), &ver), 0);
    assert_string_equal(ver.name, "example.com/foo");
    assert_memory_equal(ver.keyhash, "\x53\x0d\x90\x3a", 4);
    assert_int_equal(dems_note_open(note, strlen(note), &ver, &text_len), 0);
    assert_int_equal(text_len, strlen("This is an example message.\n"));
    assert_memory_equal(note, "This is an example message.\n", text_len);

    /* One changed byte of text, or of the signature, and it fails. */
    char bad[512];
    snprintf(bad, sizeof(bad), "%s", note);
    bad[5] = 'I';
    assert_int_equal(dems_note_open(bad, strlen(bad), &ver, &text_len), DEMS_ECRYPTO);
    snprintf(bad, sizeof(bad), "%s", note);
    char *sigp = strstr(bad, "Uw2Q");
    sigp[10] = sigp[10] == 'A' ? 'B' : 'A';
    assert_int_equal(dems_note_open(bad, strlen(bad), &ver, &text_len), DEMS_ECRYPTO);

    /* A verifier key whose hash does not match its name and key is refused. */
    snprintf(bad, sizeof(bad), "%s", vkey);
    bad[0] = 'E';
    assert_int_equal(dems_note_verifier_parse(bad, strlen(bad), &ver), DEMS_EINVAL);
    assert_int_equal(dems_note_verifier_parse("a+b", 3, &ver), DEMS_EINVAL);
    json_decref(v);
}

static void test_note_roundtrip_and_foreign_sigs(void **state)
{
    (void)state;
    struct dems_ledger_key *a = NULL, *b = NULL;
    struct dems_note_verifier va, vb, vparsed;
    char vkey[DEMS_NOTE_VKEY_MAX];
    struct dems_buf n;
    size_t tl = 0;
    const char *text = "dems.example/ledger\nhello\n";

    assert_int_equal(dems_ledger_key_new("dems.example/ledger", NULL, &a), 0);
    assert_int_equal(dems_ledger_key_new("other.example/witness", NULL, &b), 0);
    assert_int_equal(dems_ledger_key_new("has space", NULL, &b), DEMS_EINVAL);
    assert_int_equal(dems_ledger_key_new("has+plus", NULL, &b), DEMS_EINVAL);
    assert_int_equal(dems_ledger_key_new("", NULL, &b), DEMS_EINVAL);
    assert_int_equal(dems_ledger_key_new("nbsp\xc2\xa0x", NULL, &b), DEMS_EINVAL);
    dems_note_verifier_of(a, &va);
    dems_ledger_key_vkey(a, vkey);
    assert_int_equal(dems_note_verifier_parse(vkey, strlen(vkey), &vparsed), 0);
    assert_memory_equal(&vparsed, &va, sizeof(va));

    dems_buf_init(&n, 4096);
    assert_int_equal(dems_note_sign(a, text, strlen(text), &n), 0);
    assert_int_equal(dems_note_open((const char *)n.data, n.len, &va, &tl), 0);
    assert_int_equal(tl, strlen(text));
    /* A second signature by another key is ignored by va and is what vb needs. */
    assert_int_equal(dems_ledger_key_new("other.example/witness", NULL, &b), 0);
    dems_note_verifier_of(b, &vb);
    assert_int_equal(dems_note_open((const char *)n.data, n.len, &vb, &tl), DEMS_ECRYPTO);
    struct dems_buf both;
    dems_buf_init(&both, 4096);
    assert_int_equal(dems_note_sign(b, text, strlen(text), &both), 0);
    /* Append a's signature line to b's note. */
    const char *aline = (const char *)memmem(n.data, n.len, "\n\n", 2) + 2;
    assert_int_equal(dems_buf_append(&both, aline, n.len - (size_t)(aline - (const char *)n.data)),
                     0);
    assert_int_equal(dems_note_open((const char *)both.data, both.len, &va, &tl), 0);
    assert_int_equal(dems_note_open((const char *)both.data, both.len, &vb, &tl), 0);
    /* Same name and hash but a signature that fails: rejected, not skipped. */
    /* (Flip a base64 character well inside the signature: the last one before
     * the padding carries unused bits, and changing those makes a
     * non-canonical encoding that is rejected as malformed instead.) */
    both.data[both.len - 20] = both.data[both.len - 20] == 'A' ? 'B' : 'A';
    assert_int_equal(dems_note_open((const char *)both.data, both.len, &va, &tl), DEMS_ECRYPTO);

    /* Text rules. */
    dems_buf_reset(&n);
    assert_int_equal(dems_note_sign(a, "no newline", 10, &n), DEMS_EINVAL);
    assert_int_equal(dems_note_sign(a, "tab\there\n", 10, &n), DEMS_EINVAL);
    assert_int_equal(dems_note_sign(a, "", 0, &n), DEMS_EINVAL);
    assert_int_equal(n.len, 0);
    assert_int_equal(dems_note_open("x\n", 2, &va, &tl), DEMS_EINVAL);
    assert_int_equal(dems_note_open("x\n\n", 3, &va, &tl), DEMS_EINVAL);
    assert_int_equal(dems_note_open("x\n\nnot a sig\n", 13, &va, &tl), DEMS_EINVAL);
    dems_buf_done(&n);
    dems_buf_done(&both);
    dems_ledger_key_free(a);
    dems_ledger_key_free(b);
}

static void test_entry_signatures(void **state)
{
    (void)state;
    struct dems_ledger_key *k = NULL;
    uint8_t pk[32], leaf[32], sig[64];
    assert_int_equal(dems_ledger_key_new("log", NULL, &k), 0);
    dems_ledger_key_public(k, pk);
    dems_merkle_leaf_hash((const uint8_t *)"entry", 5, leaf);
    dems_ledger_entry_sign(k, leaf, sig);
    assert_int_equal(dems_ledger_entry_verify(pk, leaf, sig), 0);
    /* Domain separation: it is not a plain signature of the leaf hash. */
    assert_int_not_equal(crypto_sign_verify_detached(sig, leaf, 32, pk), 0);
    sig[63] ^= 0x01;
    assert_int_equal(dems_ledger_entry_verify(pk, leaf, sig), DEMS_ECRYPTO);
    sig[63] ^= 0x01;
    leaf[0] ^= 0x80;
    assert_int_equal(dems_ledger_entry_verify(pk, leaf, sig), DEMS_ECRYPTO);
    dems_ledger_key_free(k);
}

static void test_checkpoints(void **state)
{
    (void)state;
    struct dems_ledger_key *k = NULL;
    struct dems_note_verifier v;
    struct dems_checkpoint c = {.origin = "dems.example/ledger", .size = 1234567}, got;
    struct dems_buf n;

    for (int i = 0; i < 32; i++)
        c.root[i] = (uint8_t)i;
    assert_int_equal(dems_ledger_key_new("dems.example/ledger", NULL, &k), 0);
    dems_note_verifier_of(k, &v);
    dems_buf_init(&n, 4096);
    assert_int_equal(dems_checkpoint_format(&c, &n), 0);
    const char *body =
        "dems.example/ledger\n1234567\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    assert_int_equal(n.len, strlen(body));
    assert_memory_equal(n.data, body, n.len);
    dems_buf_reset(&n);
    assert_int_equal(dems_checkpoint_sign(k, &c, &n), 0);
    assert_int_equal(dems_checkpoint_open((const char *)n.data, n.len, &v, NULL, &got), 0);
    assert_string_equal(got.origin, c.origin);
    assert_true(got.size == c.size);
    assert_memory_equal(got.root, c.root, 32);
    assert_int_equal(
        dems_checkpoint_open((const char *)n.data, n.len, &v, "dems.example/ledger", &got), 0);
    assert_int_equal(dems_checkpoint_open((const char *)n.data, n.len, &v, "evil", &got),
                     DEMS_EINVAL);
    /* The signature covers the size. */
    n.data[strlen("dems.example/ledger\n")] = '2';
    assert_int_equal(dems_checkpoint_open((const char *)n.data, n.len, &v, NULL, &got),
                     DEMS_ECRYPTO);

    /* Parsing: extension lines allowed; everything else strict. */
    assert_int_equal(dems_checkpoint_parse(body, strlen(body), &got), 0);
    const char *ext = "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\next two\n";
    assert_int_equal(dems_checkpoint_parse(ext, strlen(ext), &got), 0);
    assert_true(got.size == 1);
    static const char *const bad[] = {
        "o\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "o\n1\n",
        /* Base64 must be canonical: padding present, unused bits zero, no white space. */
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYX GBkaGxwdHh8=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd-h8=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=AAAA\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dems_checkpoint_parse(bad[i], strlen(bad[i]), &got), DEMS_EINVAL);
    struct dems_checkpoint empty = {.origin = "", .size = 0};
    assert_int_equal(dems_checkpoint_format(&empty, &n), DEMS_EINVAL);
    dems_buf_done(&n);
    dems_ledger_key_free(k);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        vec_dir = argv[1];
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8032_test1),
        cmocka_unit_test(test_c2sp_example),
        cmocka_unit_test(test_note_roundtrip_and_foreign_sigs),
        cmocka_unit_test(test_entry_signatures),
        cmocka_unit_test(test_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
