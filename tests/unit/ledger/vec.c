/* SPDX-License-Identifier: Apache-2.0 */
/* Vector-file helpers for the ledger unit tests (see vec.h). */
#include "vec.h"

/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/str.h"

const char *vec_dir = "tests/vectors";

json_t *vec_load(const char *rel)
{
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof(path), "%s/%s", vec_dir, rel);
    json_t *j = json_load_file(path, 0, &err);
    if (j == NULL) {
        /* Some probes hold 2^64 - 1, beyond jansson's integers: numbers as reals. */
        j = json_load_file(path, JSON_DECODE_INT_AS_REAL, &err);
        if (j == NULL)
            fail_msg("cannot load %s: %s", path, err.text);
        json_object_set_new(j, "_path", json_string(path));
    }
    return j;
}

uint64_t vec_u64(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return (uint64_t)json_integer_value(v);
    /* Read the digits from the file text itself, exactly. */
    const char *path = json_string_value(json_object_get(obj, "_path"));
    char pat[64], text[65536];
    assert_non_null(path);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(text, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t len = strspn(p, "0123456789");
    uint64_t out = 0;
    assert_int_equal(dems_parse_u64(p, len, UINT64_MAX, &out), 0);
    return out;
}

void vec_hex(const char *hex, uint8_t *out, size_t n)
{
    assert_int_equal(dems_hex_decode(hex, strlen(hex), out, n), 0);
}

size_t vec_b64(const char *b64, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (sodium_base642bin(out, cap, b64, strlen(b64), NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return (size_t)-1;
    return n;
}
