/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the ledger unit tests: reading vector files from
 * tests/vectors (the directory is argv[1], set by meson), hex and base64.
 */
#ifndef DEMS_TEST_LEDGER_VEC_H
#define DEMS_TEST_LEDGER_VEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The vectors directory (set from argv[1] by main). */
extern const char *vec_dir;

/* Loads vec_dir/rel as JSON; fails the test when it cannot. Owned. */
json_t *vec_load(const char *rel);

/* An unsigned integer member of obj (exact even beyond 2^63, read from the file). */
uint64_t vec_u64(json_t *obj, const char *key);

/* Decodes hex text into out (exactly n bytes) or fails the test. */
void vec_hex(const char *hex, uint8_t *out, size_t n);

/* Decodes standard base64 into out (room for cap); returns the length, or (size_t)-1. */
size_t vec_b64(const char *b64, uint8_t *out, size_t cap);

#endif
