/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a Time-Stamping Authority answers (server/ledger/timestamp.c), hostile
 * bytes from the network, through dems_tsa_response_check; and the same
 * bytes as a stored token, as dems-verify reads one (dems_tsa_token_check).
 * The seeds (corpus/tsa) are `openssl ts -reply` answers to a request over
 * FUZZ_IMPRINT with FUZZ_NONCE, by a TSA whose CA is FUZZ_CA: one granted
 * (genTime with milliseconds), one rejected (badAlg), its token, and
 * garbage; the granted one passes every check while FUZZ_CA is valid
 * (until 2126).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dems/tsa.h"

static const char FUZZ_CA[] = "-----BEGIN CERTIFICATE-----\n"
                              "MIIBfDCCASKgAwIBAgIUf3jcnAEmmmcIUDMUvjjx7QVglsswCgYIKoZIzj0EAwIw\n"
                              "GzEZMBcGA1UEAwwQZGVtcyBmdXp6IFRTQSBDQTAgFw0yNjEyMDcwNDIyNTRaGA8y\n"
                              "MTI2MTExMzA0MjI1NFowGzEZMBcGA1UEAwwQZGVtcyBmdXp6IFRTQSBDQTBZMBMG\n"
                              "ByqGSM49AgEGCCqGSM49AwEHA0IABDpdSCxcWqqV0u6jJx387L7eILB4TFDz8+Gq\n"
                              "Er91RxQBDSXBYtVeQ3Xt3qWfODvEWXnrAE+0CuZvzC/ZIYQIRV2jQjBAMA8GA1Ud\n"
                              "EwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBS4hW04miOuxOqC\n"
                              "JGmcp5aFajHRQTAKBggqhkjOPQQDAgNIADBFAiEAhD5lueVdm8zQNhGuc6PLjQIb\n"
                              "9e3ACQeXU0p1+0H9UeACIGOnlOlRHkp57YLEyWETJc6XgSRVG182eO/QqQ7Ir626\n"
                              "-----END CERTIFICATE-----\n";

static const uint8_t FUZZ_IMPRINT[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                         11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                         22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t FUZZ_NONCE[DEMS_TSA_NONCE_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8};

/* The trust store, loaded once from FUZZ_CA through a temporary file. */
static struct dems_tsa_trust *trust(void)
{
    static struct dems_tsa_trust *t;
    if (t != NULL)
        return t;
    char path[] = "/tmp/dems-fuzz-tsa-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    FILE *f = fdopen(fd, "w");
    if (f == NULL || fputs(FUZZ_CA, f) < 0 || fclose(f) != 0)
        abort();
    char err[512];
    t = dems_tsa_trust_load(path, err, sizeof(err));
    unlink(path);
    if (t == NULL)
        abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dems_tsa_trust *t = trust();
    struct dems_tsa_info info;
    char why[400];
    uint8_t *token = NULL;
    size_t len = 0;
    if (dems_tsa_response_check(data, size, FUZZ_IMPRINT, FUZZ_NONCE, t, &token, &len, &info, why,
                                sizeof(why)) == 0) {
        /* A token that verified verifies again as stored. */
        if (dems_tsa_token_check(token, len, FUZZ_IMPRINT, t, &info, why, sizeof(why)) != 0)
            abort();
        free(token);
    }
    (void)dems_tsa_token_check(data, size, FUZZ_IMPRINT, t, &info, why, sizeof(why));
    return 0;
}
