/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 3161 time-stamp tokens over ledger checkpoints (docs/ledger.md §13):
 * the request demsd sends a Time-Stamping Authority, and the checks of its
 * answer and of a stored token, over OpenSSL's TS API. Pure: no sockets,
 * no database, no logging; demsd (server/ledger/timestamp.c) and
 * dems-verify share it. The message imprint is always SHA-256.
 */
#ifndef DEMS_TSA_H
#define DEMS_TSA_H

#include <stddef.h>
#include <stdint.h>

/* Largest TimeStampResp (and so token) accepted, in bytes. */
#define DEMS_TSA_MAX_RESPONSE (64 * 1024)
/* Bytes of the random nonce each request carries. */
#define DEMS_TSA_NONCE_BYTES 8

/* The trust store a token's signer must chain to (opaque). */
struct dems_tsa_trust;

/* What a verified token says. */
struct dems_tsa_info {
    int64_t gen_time_ms; /* genTime, milliseconds since the epoch (finer digits dropped) */
    char gen_time[25];   /* the same as RFC 3339 "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    char serial[67];     /* serialNumber, lower-case hex (at most 32 bytes; longer is refused) */
    char policy[80];     /* the TSA's policy OID, dotted */
    uint8_t token_sha256[32];
};

/*
 * Loads the PEM certificates of ca_file (at least one) as the trust store.
 * Returns owned (free with dems_tsa_trust_free) or NULL with one line in
 * err.
 */
struct dems_tsa_trust *dems_tsa_trust_load(const char *ca_file, char *err, size_t errlen);
void dems_tsa_trust_free(struct dems_tsa_trust *t);

/*
 * Makes a DER TimeStampReq (version 1, SHA-256 imprint, a fresh random
 * nonce written to ret_nonce, certReq true so the TSA sends its
 * certificate). *ret_der is owned: free with free(). Returns 0,
 * DEMS_ENOMEM or DEMS_EINTERNAL.
 */
int dems_tsa_request(const uint8_t imprint[static 32],
                     uint8_t ret_nonce[static DEMS_TSA_NONCE_BYTES], uint8_t **ret_der,
                     size_t *ret_len);

/*
 * Checks a DER TimeStampResp against the request: well formed (nothing
 * after it), status granted, token version 1, imprint equal to imprint,
 * nonce equal to nonce, signature valid, the signer's certificate chaining
 * to trust with the timestamping extended key usage (critical, the only
 * one: RFC 3161 section 2.3). On success *ret_token is the token's DER
 * (the CMS SignedData, what `openssl ts -verify -token_in` reads; owned:
 * free with free()) and ret_info what it says. Otherwise returns
 * DEMS_EINVAL (not a TimeStampResp, or too big) or DEMS_ECRYPTO (refused),
 * with one line in why.
 */
int dems_tsa_response_check(const uint8_t *resp, size_t len, const uint8_t imprint[static 32],
                            const uint8_t nonce[static DEMS_TSA_NONCE_BYTES],
                            const struct dems_tsa_trust *trust, uint8_t **ret_token,
                            size_t *ret_token_len, struct dems_tsa_info *ret_info, char *why,
                            size_t whylen);

/*
 * Checks a stored token (DER TimeStampToken) as above, without a nonce.
 * Returns 0 (ret_info filled), DEMS_EINVAL or DEMS_ECRYPTO with why.
 */
int dems_tsa_token_check(const uint8_t *token, size_t len, const uint8_t imprint[static 32],
                         const struct dems_tsa_trust *trust, struct dems_tsa_info *ret_info,
                         char *why, size_t whylen);

#endif
