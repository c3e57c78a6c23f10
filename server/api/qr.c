/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/qr {"text"}: the QR code of a short text (an otpauth:// URI for
 * TOTP enrolment, a disclosure or portal link to hand over in person) as a
 * matrix the staff page draws itself: {"size": N, "rows": ["0110...", ...]}
 * with "1" a dark module, plus the quiet zone the reader should leave (4).
 * Encoded by libqrencode (8-bit mode, error correction M, the smallest
 * version that fits). A POST, not a GET with the text in the URL: the text
 * may be a secret (a TOTP seed) and URLs end up in logs and histories.
 * The page draws the matrix as SVG elements, so no image or markup from the
 * server is ever parsed, and the strict CSP needs no data: or blob: URLs.
 */
#include <qrencode.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"
#include "dems/str.h"

#include "api_int.h"

#define MAX_TEXT 1024

void api_qr(struct dems_req *req)
{
    const char *text;
    if (!api_get_str(req, "text", MAX_TEXT, true, &text))
        return;
    if (!dems_utf8_valid(text, strlen(text))) {
        dems_resp_error(req, 400, "invalid_field", "field \"text\" is not valid UTF-8");
        return;
    }
    QRcode *qr = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_M);
    if (qr == NULL) {
        dems_resp_error(req, 400, "invalid_field", "field \"text\" cannot be put in a QR code");
        return;
    }
    size_t w = (size_t)qr->width;
    json_t *rows = json_array();
    char *line = malloc(w + 1);
    for (size_t y = 0; rows != NULL && line != NULL && y < w; y++) {
        for (size_t x = 0; x < w; x++)
            line[x] = (qr->data[y * w + x] & 1) ? '1' : '0'; /* bit 0: dark */
        line[w] = '\0';
        if (json_array_append_new(rows, json_string(line)) < 0) {
            json_decref(rows);
            rows = NULL;
        }
    }
    free(line);
    int version = qr->version;
    QRcode_free(qr);
    if (rows == NULL || json_array_size(rows) != w) {
        json_decref(rows);
        dems_resp_err(req, DEMS_ENOMEM);
        return;
    }
    dems_resp_json(req, 200,
                   json_pack("{s:I,s:i,s:s,s:i,s:o}", "size", (json_int_t)w, "version", version,
                             "ecc", "M", "quiet_zone", 4, "rows", rows));
}
