/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for canonical JSON and custody entries (common/ledger/jcs.c,
 * entry.c): RFC 8785 member order by UTF-16 code units, string escapes,
 * integers only, duplicate names, depth, exact entry bytes, strict decoding
 * and RFC 3339 times.
 */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h" /* white-box: the verifier's fast entry check */

/* Parses text strictly and returns its canonical form (static buffer). */
static const char *canon(const char *text)
{
    static char out[4096];
    json_t *j = NULL;
    struct dems_buf b;
    if (dems_jcs_parse(text, strlen(text), &j) < 0)
        return NULL;
    dems_buf_init(&b, sizeof(out) - 1);
    int r = dems_jcs_encode(j, &b);
    json_decref(j);
    if (r < 0) {
        dems_buf_done(&b);
        return NULL;
    }
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    dems_buf_done(&b);
    return out;
}

/* RFC 8785 section 3.2.3's sorting example (names only; values are ours). */
static void test_jcs_member_order(void **state)
{
    (void)state;
    const char *in = "{\"\\u20ac\":1,\"\\r\":2,\"\\ufb33\":3,\"1\":4,\"\\ud83d\\ude00\":5,"
                     "\"\\u0080\":6,\"\\u00f6\":7}";
    /* \r, "1", U+0080, U+00F6, U+20AC, U+1F600 (surrogates D83D..), U+FB33. */
    const char *want = "{\"\\r\":2,\"1\":4,\"\xc2\x80\":6,\"\xc3\xb6\":7,\"\xe2\x82\xac\":1,"
                       "\"\xf0\x9f\x98\x80\":5,\"\xef\xac\xb3\":3}";
    assert_string_equal(canon(in), want);
    assert_string_equal(canon("{\"b\":[1,{\"d\":1,\"c\":2}],\"a\":{},\"aa\":[],\"\":null}"),
                        "{\"\":null,\"a\":{},\"aa\":[],\"b\":[1,{\"c\":2,\"d\":1}]}");
    assert_string_equal(canon(" { \"b\" : [ 1 , 2 ] ,\n\"a\" : true } "),
                        "{\"a\":true,\"b\":[1,2]}");
}

static void test_jcs_escapes(void **state)
{
    (void)state;
    /* Only '"', '\\' and C0 controls are escaped; '/', DEL and U+2028 are not. */
    assert_string_equal(canon("\"\\u0001\\b\\t\\n\\f\\r\\\"\\\\\\/\\u007f\\u2028\\u00e9\\u001F\""),
                        "\"\\u0001\\b\\t\\n\\f\\r\\\"\\\\/\x7f\xe2\x80\xa8\xc3\xa9\\u001f\"");
    assert_string_equal(canon("\"\\ud83d\\ude00\""), "\"\xf0\x9f\x98\x80\"");
    /* A NUL inside a string is escaped when a caller builds such a value. */
    json_t *s = json_stringn("a\0b", 3);
    struct dems_buf b;
    dems_buf_init(&b, 100);
    assert_int_equal(dems_jcs_encode(s, &b), 0);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "\"a\\u0000b\"", 10);
    dems_buf_done(&b);
    json_decref(s);
}

static void test_jcs_numbers_and_rejects(void **state)
{
    (void)state;
    assert_string_equal(canon("[0,-0,1,-1,9007199254740991,-9007199254740991]"),
                        "[0,0,1,-1,9007199254740991,-9007199254740991]");
    assert_null(canon("9007199254740992"));
    assert_null(canon("1.0"));
    assert_null(canon("1e3"));
    assert_null(canon("[1, 2.5]"));
    assert_null(canon("{\"a\":1,\"a\":2}"));
    assert_null(canon("{\"a\":1} x"));
    assert_null(canon("\"\\u0000\""));
    assert_null(canon("{\"a\":1,}"));
    assert_null(canon("\"\\ud800\""));

    /* A real built in C is rejected too, and out keeps its length. */
    struct dems_buf b;
    dems_buf_init(&b, 100);
    assert_int_equal(dems_buf_append(&b, "xy", 2), 0);
    json_t *j = json_pack("{s:i,s:[i,f]}", "a", 1, "b", 2, 0.5);
    assert_int_equal(dems_jcs_encode(j, &b), DEMS_EINVAL);
    assert_int_equal(b.len, 2);
    json_decref(j);
    /* The cap is honoured. */
    j = json_pack("{s:s}", "k",
                  "0123456789012345678901234567890123456789012345678901234567890"
                  "1234567890123456789012345678901234567890");
    assert_int_equal(dems_jcs_encode(j, &b), DEMS_ETOOBIG);
    assert_int_equal(b.len, 2);
    json_decref(j);
    dems_buf_done(&b);

    /* Depth: 16 levels are fine, 17 are not. */
    char deep[64];
    memset(deep, '[', 17);
    memset(deep + 17, ']', 17);
    deep[34] = '\0';
    assert_null(canon(deep));
    deep[33] = '\0';
    assert_string_equal(canon(deep + 1), deep + 1);
}

static void test_time(void **state)
{
    (void)state;
    char t[25];
    int64_t ms = 0;
    assert_int_equal(dems_ledger_time_format(0, t), 0);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    assert_int_equal(dems_ledger_time_format(1764023456789, t), 0);
    assert_string_equal(t, "2025-11-24T22:30:56.789Z");
    assert_int_equal(dems_ledger_time_parse(t, 24, &ms), 0);
    assert_true(ms == 1764023456789);
    assert_int_equal(dems_ledger_time_parse("2024-02-29T23:59:59.999Z", 24, &ms), 0);
    assert_int_equal(dems_ledger_time_format(ms, t), 0);
    assert_string_equal(t, "2024-02-29T23:59:59.999Z");
    assert_int_equal(dems_ledger_time_parse("2023-02-29T00:00:00.000Z", 24, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_parse("2023-04-31T00:00:00.000Z", 24, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_parse("2023-01-01T24:00:00.000Z", 24, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_parse("2023-01-01 00:00:00.000Z", 24, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_parse("2023-01-01T00:00:00.000+", 24, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_parse("2023-01-01T00:00:00Z", 20, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_parse("1969-12-31T23:59:59.999Z", 24, &ms), DEMS_EINVAL);
    assert_int_equal(dems_ledger_time_format(-1, t), DEMS_EINVAL);
}

/* The documented example entry (docs/ledger.md) and its exact bytes. */
static const char example_bytes[] =
    "{\"actor\":{\"id\":\"device:dock-17\",\"kind\":\"device\"},"
    "\"artefact\":\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
    "\"case\":\"2025-000123\",\"payload\":{\"filename\":\"cam1 \\\"front\\\".mp4\","
    "\"officer\":\"u-42\"},\"seq\":7,"
    "\"sha256\":\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
    "\"size\":1048576,\"time\":\"2025-11-24T22:30:56.789Z\",\"type\":\"INGESTED\",\"v\":1}";

static void example_entry(struct dems_ledger_entry *e, json_t **payload)
{
    *payload = json_pack("{s:s,s:s}", "officer", "u-42", "filename", "cam1 \"front\".mp4");
    *e = (struct dems_ledger_entry){
        .seq = 7,
        .time_ms = 1764023456789,
        .type = DEMS_LEDGER_INGESTED,
        .actor_kind = DEMS_LEDGER_ACTOR_DEVICE,
        .actor_id = "device:dock-17",
        .has_artefact = true,
        .case_id = "2025-000123",
        .has_sha256 = true,
        .has_size = true,
        .size = 1048576,
        .payload = *payload,
    };
    dems_hex_decode("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", 64,
                    e->artefact, 32);
    memcpy(e->sha256, e->artefact, 32);
}

static void test_entry_encode_exact(void **state)
{
    (void)state;
    struct dems_ledger_entry e;
    json_t *payload;
    struct dems_buf b;
    example_entry(&e, &payload);
    dems_buf_init(&b, DEMS_LEDGER_MAX_ENTRY);
    assert_int_equal(dems_ledger_entry_encode(&e, &b), 0);
    assert_int_equal(b.len, strlen(example_bytes));
    assert_memory_equal(b.data, example_bytes, b.len);
    /* Its leaf hash, as docs/ledger.md shows it (computed independently with Python's hashlib). */
    uint8_t leaf[32];
    char hex[65];
    dems_merkle_leaf_hash(b.data, b.len, leaf);
    dems_hex_encode(leaf, 32, hex);
    assert_string_equal(hex, "0290e068704d5a4cd23634b846781b55fd4bf371180e627c4a3bd47126769500");

    /* Round trip. */
    json_t *root = NULL;
    struct dems_ledger_entry d;
    assert_int_equal(dems_ledger_entry_decode(b.data, b.len, &root, &d), 0);
    assert_true(d.seq == 7 && d.time_ms == 1764023456789 && d.type == DEMS_LEDGER_INGESTED);
    assert_int_equal(d.actor_kind, DEMS_LEDGER_ACTOR_DEVICE);
    assert_string_equal(d.actor_id, "device:dock-17");
    assert_string_equal(d.case_id, "2025-000123");
    assert_true(d.has_artefact && d.has_sha256 && d.has_size && d.size == 1048576);
    assert_memory_equal(d.artefact, e.artefact, 32);
    assert_true(json_equal(d.payload, payload));
    json_decref(root);

    /* Minimal entry: no optional fields, empty payload. */
    struct dems_ledger_entry m = {.seq = 0,
                                  .time_ms = 0,
                                  .type = DEMS_LEDGER_KEY_ROTATED,
                                  .actor_kind = DEMS_LEDGER_ACTOR_SYSTEM,
                                  .actor_id = "demsd"};
    dems_buf_reset(&b);
    assert_int_equal(dems_ledger_entry_encode(&m, &b), 0);
    const char *want = "{\"actor\":{\"id\":\"demsd\",\"kind\":\"system\"},\"payload\":{},\"seq\":0,"
                       "\"time\":\"1970-01-01T00:00:00.000Z\",\"type\":\"KEY_ROTATED\",\"v\":1}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);

    /* Bad fields are refused and leave the buffer as it was. */
    size_t len = b.len;
    m.actor_id = "";
    assert_int_equal(dems_ledger_entry_encode(&m, &b), DEMS_EINVAL);
    m.actor_id = "a\nb";
    assert_int_equal(dems_ledger_entry_encode(&m, &b), DEMS_EINVAL);
    m.actor_id = "x";
    m.type = DEMS_LEDGER_TYPE_COUNT;
    assert_int_equal(dems_ledger_entry_encode(&m, &b), DEMS_EINVAL);
    m.type = DEMS_LEDGER_VIEWED;
    m.seq = (uint64_t)DEMS_JCS_MAX_INT + 1;
    assert_int_equal(dems_ledger_entry_encode(&m, &b), DEMS_EINVAL);
    m.seq = 1;
    json_t *arr = json_array();
    m.payload = arr;
    assert_int_equal(dems_ledger_entry_encode(&m, &b), DEMS_EINVAL);
    json_t *fl = json_pack("{s:f}", "x", 1.5);
    m.payload = fl;
    assert_int_equal(dems_ledger_entry_encode(&m, &b), DEMS_EINVAL);
    assert_int_equal(b.len, len);
    json_decref(arr);
    json_decref(fl);
    json_decref(payload);
    dems_buf_done(&b);
}

static int decode_text(const char *s)
{
    json_t *root = NULL;
    struct dems_ledger_entry e;
    int r = dems_ledger_entry_decode((const uint8_t *)s, strlen(s), &root, &e);
    if (r == 0)
        json_decref(root);
    return r;
}

/* Replaces the first occurrence of from with to in example_bytes. */
static const char *mutate(const char *from, const char *to)
{
    static char out[1024];
    const char *p = strstr(example_bytes, from);
    assert_non_null(p);
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - example_bytes), example_bytes, to,
             p + strlen(from));
    return out;
}

static void test_entry_decode_strict(void **state)
{
    (void)state;
    assert_int_equal(decode_text(example_bytes), 0);
    /* Anything but the canonical bytes is refused. */
    assert_int_equal(decode_text(mutate("\"seq\":7", "\"seq\": 7")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"seq\":7", "\"seq\":7.0")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"seq\":7", "\"seq\":-7")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("9f86d0", "9F86D0")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"v\":1", "\"v\":2")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"v\":1", "\"v\":1,\"zz\":0")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"type\":\"INGESTED\"", "\"type\":\"EATEN\"")),
                     DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"kind\":\"device\"", "\"kind\":\"robot\"")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate(".789Z", ".789+00:00")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"officer\":\"u-42\"", "\"officer\":\"u-42\",\"a\":1")),
                     DEMS_EINVAL); /* payload members out of order */
    assert_int_equal(decode_text(mutate("\"case\":\"2025-000123\",", "")), 0);
    assert_int_equal(decode_text(mutate("\"case\":\"2025-000123\",", "\"case\":5,")), DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"payload\":{", "\"payload\":{\"a\":[1.5],")),
                     DEMS_EINVAL);
    assert_int_equal(decode_text(mutate("\"seq\":7,", "")), DEMS_EINVAL);
    assert_int_equal(decode_text("[]"), DEMS_EINVAL);
    assert_int_equal(decode_text(""), DEMS_EINVAL);

    enum dems_ledger_type t;
    assert_int_equal(dems_ledger_type_parse("DEVICE_REVOKED", 14, &t), 0);
    assert_int_equal(t, DEMS_LEDGER_DEVICE_REVOKED);
    assert_int_equal(dems_ledger_type_parse("DEVICE_REVOKE", 13, &t), DEMS_EINVAL);
    for (unsigned i = 0; i < DEMS_LEDGER_TYPE_COUNT; i++)
        assert_non_null(dems_ledger_type_name((enum dems_ledger_type)i));
    assert_null(dems_ledger_type_name(DEMS_LEDGER_TYPE_COUNT));
}

/*
 * The fast check used by whole-log verification must never accept what the
 * full decoder refuses, nor read another seq. Checked over entries with
 * awkward payloads and every single-byte mutation of them.
 */
static void test_fast_check_agrees(void **state)
{
    (void)state;
    static const char *const payloads[] = {
        "{}",
        "{\"a\":[1,-2,true,false,null,\"x\"],\"b\":{\"c\":{\"d\":[]}}}",
        "{\"esc\":\"q\\\"b\\\\n\\n\\t\\u0001/\",\"\\u00e9t\\u00e9\":1}",
        "{\"emoji\":\"\\ud83d\\ude00\",\"\\ufb33\":2,\"\\ud83d\\ude00\":3}",
        "{\"big\":9007199254740991,\"neg\":-9007199254740991,\"zero\":0}",
    };
    int fast_hits = 0;
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        json_t *payload = NULL;
        assert_int_equal(dems_jcs_parse(payloads[i], strlen(payloads[i]), &payload), 0);
        struct dems_ledger_entry e = {.seq = 1000 + i,
                                      .time_ms = 1764023456789,
                                      .type = DEMS_LEDGER_SHARED,
                                      .actor_kind = DEMS_LEDGER_ACTOR_USER,
                                      .actor_id = i == 3 ? "u\"q" : "u-1",
                                      .case_id = i % 3 ? NULL : "C",
                                      .has_size = i % 2,
                                      .size = 77,
                                      .has_sha256 = i % 2 == 0,
                                      .payload = payload};
        struct dems_buf b;
        dems_buf_init(&b, DEMS_LEDGER_MAX_ENTRY);
        assert_int_equal(dems_ledger_entry_encode(&e, &b), 0);
        uint8_t m[DEMS_LEDGER_MAX_ENTRY + 1];
        static const char subst[] = "\"\\{}[],:0123-9aetuvz \x7f\xc3";
        for (size_t pos = 0; pos <= b.len; pos++) {
            for (size_t k = 0; k <= sizeof(subst); k++) {
                size_t len = b.len;
                memcpy(m, b.data, b.len);
                if (pos == b.len && k > 0)
                    break;
                if (pos == b.len) {
                    /* unchanged */
                } else if (k < sizeof(subst) - 1) {
                    m[pos] = (uint8_t)subst[k];
                } else if (k == sizeof(subst) - 1) {
                    memmove(m + pos, m + pos + 1, b.len - pos - 1); /* delete */
                    len--;
                } else {
                    memmove(m + pos + 1, m + pos, b.len - pos); /* duplicate */
                    len++;
                }
                uint64_t seq = 0;
                if (!ledger_entry_fast_check(m, len, &seq))
                    continue;
                fast_hits++;
                json_t *root = NULL;
                struct dems_ledger_entry d;
                if (dems_ledger_entry_decode(m, len, &root, &d) != 0)
                    fail_msg("fast check accepted what decode refuses: %.*s", (int)len, m);
                assert_true(d.seq == seq);
                json_decref(root);
            }
        }
        /* Plain entries take the fast path. */
        uint64_t seq = 0;
        if (i == 0 || i == 1 || i == 4)
            assert_true(ledger_entry_fast_check(b.data, b.len, &seq) && seq == 1000 + i);
        dems_buf_done(&b);
        json_decref(payload);
    }
    assert_true(fast_hits > 10);
}

/* Canonical size of payload (whole object). */
static size_t canon_len(const json_t *payload)
{
    struct dems_buf b;
    dems_buf_init(&b, 1 << 20);
    assert_int_equal(dems_jcs_encode(payload, &b), 0);
    size_t n = b.len;
    dems_buf_done(&b);
    return n;
}

/* Canonical size of one string member's value, quotes excluded. */
static size_t value_len(const json_t *payload, const char *key)
{
    json_t *v = json_object_get(payload, key);
    assert_non_null(v);
    return canon_len(v) - 2;
}

/*
 * Untrusted text is bounded on its canonical form, cut at a character
 * boundary, marked when cut, and carries the original's length and SHA-256
 * whenever it was cut or altered (issue 19.1).
 */
static void test_payload_set_text(void **state)
{
    (void)state;
    json_t *p = json_object();
    /* Short and clean: as is, no marks. */
    assert_int_equal(dems_ledger_payload_set_text(p, "path", "/v1/x", 5, 64), 0);
    assert_string_equal(json_string_value(json_object_get(p, "path")), "/v1/x");
    assert_int_equal(json_object_size(p), 1);
    /* Exactly max fits; max + 1 is cut and marked. */
    char big[5000];
    memset(big, 'a', sizeof(big));
    assert_int_equal(dems_ledger_payload_set_text(p, "fit", big, 64, 64), 0);
    assert_int_equal(json_object_size(p), 2);
    assert_int_equal(dems_ledger_payload_set_text(p, "long", big, sizeof(big), 1024), 0);
    assert_int_equal(value_len(p, "long"), 1024);
    assert_true(json_is_true(json_object_get(p, "long_truncated")));
    assert_int_equal(json_integer_value(json_object_get(p, "long_length")), sizeof(big));
    uint8_t h[32];
    char hex[65];
    ledger_sha256_2(big, sizeof(big), NULL, 0, h);
    dems_hex_encode(h, 32, hex);
    assert_string_equal(json_string_value(json_object_get(p, "long_sha256")), hex);
    json_decref(p);

    /* Escapes count: 1000 control characters cost 6 bytes each. */
    p = json_object();
    char ctl[1000];
    memset(ctl, 0x01, sizeof(ctl));
    assert_int_equal(dems_ledger_payload_set_text(p, "c", ctl, sizeof(ctl), 600), 0);
    assert_int_equal(value_len(p, "c"), 600);
    assert_int_equal(json_string_length(json_object_get(p, "c")), 100);
    /* A quote costs two: 601 budget holds 300 of them, not 301. */
    char quotes[400];
    memset(quotes, '"', sizeof(quotes));
    assert_int_equal(dems_ledger_payload_set_text(p, "q", quotes, sizeof(quotes), 601), 0);
    assert_int_equal(json_string_length(json_object_get(p, "q")), 300);
    json_decref(p);

    /* Never split a character: a 3-byte one that does not fit is dropped whole. */
    p = json_object();
    assert_int_equal(dems_ledger_payload_set_text(p, "u", "ab\xe2\x82\xac", 5, 4), 0);
    assert_string_equal(json_string_value(json_object_get(p, "u")), "ab");
    assert_true(json_is_true(json_object_get(p, "u_truncated")));
    /* Bytes that are not UTF-8, and NUL, become U+FFFD: altered, not truncated. */
    assert_int_equal(dems_ledger_payload_set_text(p, "b", "caf\xe9\0x", 6, 64), 0);
    assert_string_equal(json_string_value(json_object_get(p, "b")), "caf\xef\xbf\xbd\xef\xbf\xbdx");
    assert_null(json_object_get(p, "b_truncated"));
    assert_int_equal(json_integer_value(json_object_get(p, "b_length")), 6);
    assert_non_null(json_object_get(p, "b_sha256"));
    /* Bad arguments. */
    assert_int_equal(dems_ledger_payload_set_text(p, "k", "x", 1, DEMS_LEDGER_MAX_PAYLOAD + 1),
                     DEMS_EINVAL);
    char key[DEMS_LEDGER_MAX_KEY + 2];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    assert_int_equal(dems_ledger_payload_set_text(p, key, "x", 1, 8), DEMS_EINVAL);
    json_decref(p);

    /*
     * The documented worst case: whatever the input, three bounded members
     * fit an entry's payload, and the entry encodes and checks.
     */
    p = json_object();
    char worst[8000];
    for (size_t i = 0; i < sizeof(worst); i++)
        worst[i] = (char)(i % 3 == 0 ? 0x01 : i % 3 == 1 ? 0xff : '"');
    assert_int_equal(dems_ledger_payload_set_text(p, "method", worst, sizeof(worst), 32), 0);
    assert_int_equal(dems_ledger_payload_set_text(p, "path", worst, sizeof(worst), 1024), 0);
    assert_int_equal(dems_ledger_payload_set_text(p, "reason", worst, sizeof(worst), 256), 0);
    assert_true(canon_len(p) <= 1024 + 32 + 256 + 3 * 140 + 3 * 3 * 6 + 20);
    struct dems_ledger_entry e = {.seq = (uint64_t)DEMS_JCS_MAX_INT,
                                  .time_ms = 1764023456789,
                                  .type = DEMS_LEDGER_ACCESS_DENIED,
                                  .actor_kind = DEMS_LEDGER_ACTOR_USER,
                                  .actor_id = "officer",
                                  .payload = p};
    struct dems_buf b;
    dems_buf_init(&b, DEMS_LEDGER_MAX_ENTRY);
    assert_int_equal(dems_ledger_entry_encode(&e, &b), 0);
    assert_int_equal(dems_ledger_entry_check(b.data, b.len), 0);
    dems_buf_done(&b);
    json_decref(p);
}

/*
 * dems_ledger_entry_check refuses what a verifier refuses, including an
 * entry that encodes but cannot be decoded (a NUL inside a payload string),
 * so the server never signs such bytes; and the new types verify.
 */
static void test_entry_check(void **state)
{
    (void)state;
    json_t *p = json_pack("{s:s%}", "x", "a\0b", (size_t)3);
    struct dems_ledger_entry e = {.seq = 5,
                                  .time_ms = 1764023456789,
                                  .type = DEMS_LEDGER_ACCESS_DENIED_SUMMARY,
                                  .actor_kind = DEMS_LEDGER_ACTOR_SYSTEM,
                                  .actor_id = "refusals",
                                  .payload = p};
    struct dems_buf b;
    dems_buf_init(&b, DEMS_LEDGER_MAX_ENTRY);
    assert_int_equal(dems_ledger_entry_encode(&e, &b), 0);
    assert_int_equal(dems_ledger_entry_check(b.data, b.len), DEMS_EINVAL);
    json_decref(p);
    p = json_pack("{s:s,s:s,s:I}", "principal", "user:lenny", "address", "127.0.0.1", "count",
                  (json_int_t)12);
    e.payload = p;
    for (int t = DEMS_LEDGER_LOCKOUT_LIFTED; t <= DEMS_LEDGER_ACCESS_DENIED_SUMMARY; t++) {
        e.type = (enum dems_ledger_type)t;
        dems_buf_reset(&b);
        assert_int_equal(dems_ledger_entry_encode(&e, &b), 0);
        assert_int_equal(dems_ledger_entry_check(b.data, b.len), 0);
        uint64_t seq = 0;
        assert_true(ledger_entry_fast_check(b.data, b.len, &seq) && seq == 5);
    }
    assert_int_equal(dems_ledger_entry_check((const uint8_t *)"{}", 2), DEMS_EINVAL);
    dems_buf_done(&b);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jcs_member_order),
        cmocka_unit_test(test_jcs_escapes),
        cmocka_unit_test(test_jcs_numbers_and_rejects),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_entry_encode_exact),
        cmocka_unit_test(test_entry_decode_strict),
        cmocka_unit_test(test_fast_check_agrees),
        cmocka_unit_test(test_payload_set_text),
        cmocka_unit_test(test_entry_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
