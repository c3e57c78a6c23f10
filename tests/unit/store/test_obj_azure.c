/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for server/store/obj_azure.c: the SharedKey string to sign and
 * signature. The first case has the shape of the Blob service example in
 * "Authorize with Shared Key" (learn.microsoft.com/rest/api/storageservices/
 * authorize-with-shared-key); the signatures were computed independently
 * with the OpenSSL command line under the emulator's published account key
 * (devstoreaccount1), e.g.
 *
 *   HEX=$(printf %s "$KEY" | base64 -d | xxd -p -c 200)
 *   printf 'GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:...' |
 *       openssl dgst -sha256 -mac HMAC -macopt hexkey:$HEX -binary | base64
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <string.h>

#include "dems/err.h"

#include "../../../server/store/obj_int.h"

static const char dev_key_b64[] =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

static size_t dev_key(uint8_t key[static 128])
{
    int n = obj_b64_decode(dev_key_b64, key, 128);
    assert_int_equal(n, 64);
    return (size_t)n;
}

/* Get Container Metadata, as in the documentation's example. */
static void test_container_metadata(void **state)
{
    (void)state;
    const char *const headers[] = {"x-ms-version: 2009-09-19",
                                   "x-ms-date: Sun, 11 Oct 2009 21:49:13 GMT"};
    const struct obj_azure_param q[] = {
        {"restype", "container"}, {"comp", "metadata"}, {"timeout", "20"}};
    const struct obj_azure_signing g = {
        .method = "GET",
        .headers = headers,
        .nheaders = 2,
        .account = "myaccount",
        .path = "/myaccount/mycontainer",
        .query = q,
        .nquery = 3,
    };
    char sts[1024], auth[256];
    static const char want[] = "GET\n\n\n\n\n\n\n\n\n\n\n\n"
                               "x-ms-date:Sun, 11 Oct 2009 21:49:13 GMT\n"
                               "x-ms-version:2009-09-19\n"
                               "/myaccount/myaccount/mycontainer\n"
                               "comp:metadata\nrestype:container\ntimeout:20";
    assert_int_equal(obj_azure_string_to_sign(&g, sts, sizeof sts), (int)strlen(want));
    assert_string_equal(sts, want);

    uint8_t key[128];
    size_t keylen = dev_key(key);
    assert_int_equal(obj_azure_authorization(&g, key, keylen, auth, sizeof auth), 0);
    assert_string_equal(auth, "SharedKey myaccount:Su5rvibNeMxB7A4I87rOtEgCDtdICsL8v5H+yJs0W+M=");
}

/*
 * Put Block: a body (its length signed), Content-Type, headers given in any
 * order and case with stray spaces, a non-x-ms header left out, query
 * names sorted and values raw (the block id's '=' not escaped).
 */
static void test_put_block(void **state)
{
    (void)state;
    const char *const headers[] = {
        "x-ms-version: 2021-10-04", "Content-Type: application/octet-stream",
        "X-MS-Blob-Type:   BlockBlob ", "Expect:", "x-ms-date: Mon, 07 Dec 2026 10:00:00 GMT"};
    const struct obj_azure_param q[] = {{"comp", "block"}, {"blockid", "ZGVtcy1ibGstMDAwMDAwMDE="}};
    const struct obj_azure_signing g = {
        .method = "PUT",
        .content_length = 11,
        .headers = headers,
        .nheaders = 5,
        .account = "devstoreaccount1",
        .path = "/devstoreaccount1/dems/blobs/ab/a%20b",
        .query = q,
        .nquery = 2,
    };
    char sts[1024], auth[256];
    static const char want[] = "PUT\n\n\n11\n\napplication/octet-stream\n\n\n\n\n\n\n"
                               "x-ms-blob-type:BlockBlob\n"
                               "x-ms-date:Mon, 07 Dec 2026 10:00:00 GMT\n"
                               "x-ms-version:2021-10-04\n"
                               "/devstoreaccount1/devstoreaccount1/dems/blobs/ab/a%20b\n"
                               "blockid:ZGVtcy1ibGstMDAwMDAwMDE=\ncomp:block";
    assert_int_equal(obj_azure_string_to_sign(&g, sts, sizeof sts), (int)strlen(want));
    assert_string_equal(sts, want);

    uint8_t key[128];
    size_t keylen = dev_key(key);
    assert_int_equal(obj_azure_authorization(&g, key, keylen, auth, sizeof auth), 0);
    assert_string_equal(auth,
                        "SharedKey devstoreaccount1:dhFgEUK+dQ3FMqdxcASUUjZN9es7Lt7xiMsd4cyfERY=");
}

/* A zero-length body is signed as an empty Content-Length; a short buffer is refused. */
static void test_zero_length_and_limits(void **state)
{
    (void)state;
    const char *const headers[] = {"x-ms-date: Mon, 07 Dec 2026 10:00:00 GMT"};
    const struct obj_azure_param q[] = {{"restype", "container"}};
    const struct obj_azure_signing g = {
        .method = "PUT",
        .content_length = 0,
        .headers = headers,
        .nheaders = 1,
        .account = "acct",
        .path = "/dems",
        .query = q,
        .nquery = 1,
    };
    char sts[256];
    static const char want[] = "PUT\n\n\n\n\n\n\n\n\n\n\n\n"
                               "x-ms-date:Mon, 07 Dec 2026 10:00:00 GMT\n"
                               "/acct/dems\nrestype:container";
    assert_int_equal(obj_azure_string_to_sign(&g, sts, sizeof sts), (int)strlen(want));
    assert_string_equal(sts, want);
    assert_int_equal(obj_azure_string_to_sign(&g, sts, strlen(want)), DEMS_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_container_metadata),
        cmocka_unit_test(test_put_block),
        cmocka_unit_test(test_zero_length_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
