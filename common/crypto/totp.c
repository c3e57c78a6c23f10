/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 6238 time-based one-time passwords (HMAC-SHA1, 30-second steps,
 * 6 digits), the parameters every authenticator app uses by default.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "dems/crypto.h"
#include "dems/err.h"

uint32_t dems_totp_code(const uint8_t *secret, size_t secret_len, uint64_t step)
{
    uint8_t msg[8];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(step & 0xff);
        step >>= 8;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha1(), secret, (int)secret_len, msg, sizeof(msg), mac, &maclen);
    /* RFC 4226 section 5.3: dynamic truncation. */
    unsigned off = mac[maclen - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    return bin % 1000000u;
}

int dems_totp_verify(const uint8_t *secret, size_t secret_len, const char *code, uint64_t now,
                     uint64_t *ret_step)
{
    if (code == NULL || strlen(code) != 6)
        return DEMS_ETOTP;
    for (int i = 0; i < 6; i++) {
        if (code[i] < '0' || code[i] > '9')
            return DEMS_ETOTP;
    }
    uint64_t step = now / 30;
    int found = DEMS_ETOTP;
    uint64_t found_step = 0;
    /* Check every candidate (no early exit) so timing does not reveal
     * which step matched. */
    for (uint64_t s = step - 1; s <= step + 1; s++) {
        char want[7];
        snprintf(want, sizeof(want), "%06u", dems_totp_code(secret, secret_len, s));
        if (sodium_memcmp(want, code, 6) == 0 && found != 0) {
            found = 0;
            found_step = s;
        }
    }
    if (found == 0)
        *ret_step = found_step;
    return found;
}
