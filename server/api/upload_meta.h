/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tus Upload-Metadata for dems: decoding (comma-separated "key base64"
 * pairs) and validation of the keys dems accepts, with error messages that
 * name the field. Pure functions (no I/O), unit-tested directly.
 */
#ifndef DEMS_UPLOAD_META_H
#define DEMS_UPLOAD_META_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/str.h"

/* An upload id: 32 lower-case hex digits. */
bool upload_id_ok(struct dems_str id);

/*
 * Parses and validates Upload-Metadata. Accepted keys: filename, filetype
 * (or content_type), officer_id, device_serial, recording_start,
 * recording_end (RFC 3339), sha256 (64 hex digits, the client's declared
 * hash of the whole file). now is the current Unix time (for plausibility of
 * recording times). Returns a new JSON object (owned) and writes the declared
 * hash to declared_sha256 (empty when absent), or NULL with err naming the
 * field.
 */
json_t *upload_meta_parse(struct dems_str header, int64_t now, char declared_sha256[static 65],
                          char *err, size_t errlen);

/* Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)"; false when malformed. */
bool upload_parse_rfc3339(const char *s, size_t len, int64_t *ret_unix);

#endif
