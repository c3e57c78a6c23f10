/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the object-store client's pure parts (server/store/
 * obj_util.c, obj_s3.c's signer, objstore.c's settings): AWS's own
 * published Signature Version 4 example, the XML scanner, times, escaping,
 * and the configuration refusals. The stores themselves are exercised by
 * tests/integration/test_objstore.py against Azurite and s3rver.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"

#include "../../../server/store/obj_int.h"

/*
 * "GET Object" from the Amazon S3 API reference, "Signature Calculations
 * for the Authorization Header: Transferring Payload in a Single Chunk
 * (AWS Signature Version 4)", example 1: the first 10 bytes of
 * examplebucket/test.txt with the documentation's example credentials.
 * AWS gives the resulting signature
 * f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41.
 */
static void test_sigv4_aws_example(void **state)
{
    (void)state;
    const char *secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    struct obj_s3_signing g = {
        .method = "GET",
        .canonical_uri = "/test.txt",
        .canonical_query = "",
        .canonical_headers =
            "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:"
            "20130524T000000Z\n",
        .signed_headers = "host;range;x-amz-content-sha256;x-amz-date",
        .payload_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .amz_date = "20130524T000000Z",
        .region = "us-east-1",
        .service = "s3",
        .access_key = "AKIAIOSFODNN7EXAMPLE",
        .secret = (const uint8_t *)secret,
        .secretlen = strlen(secret),
    };
    char out[512];
    assert_int_equal(obj_s3_authorization(&g, out, sizeof(out)), 0);
    assert_string_equal(
        out, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
             "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
             "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    /* One byte of the secret changed: another signature. */
    const char *other = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    g.secret = (const uint8_t *)other;
    assert_int_equal(obj_s3_authorization(&g, out, sizeof(out)), 0);
    assert_null(strstr(out, "f0e8bdb87c96"));
    /* Too small an output buffer is refused, not truncated. */
    assert_int_equal(obj_s3_authorization(&g, out, 40), DEMS_ETOOBIG);
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(obj_escape("blobs/ab/c d+é~", true, out, sizeof(out)), 24);
    assert_string_equal(out, "blobs/ab/c%20d%2B%C3%A9~");
    assert_int_equal(obj_escape("a/b=c&d", false, out, sizeof(out)), 13);
    assert_string_equal(out, "a%2Fb%3Dc%26d");
    assert_int_equal(obj_escape("abcdef", false, out, 6), DEMS_ETOOBIG);
    assert_int_equal(obj_escape("abcde", false, out, 6), 5);
}

static void test_xml(void **state)
{
    (void)state;
    const char *x = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>"
                    "<Contents><Key>a&amp;b&lt;c</Key><Size>12</Size></Contents>"
                    "<Contents><Key>second</Key><Size>7</Size></Contents>"
                    "<KeyCount/><NextContinuationToken>tok</NextContinuationToken>"
                    "</ListBucketResult>";
    const char *end = x + strlen(x);
    const char *v;
    size_t vl;
    char buf[32];
    const char *p = obj_xml_find(x, end, "Contents", &v, &vl);
    assert_non_null(p);
    const char *f;
    size_t fl;
    assert_non_null(obj_xml_find(v, v + vl, "Key", &f, &fl));
    assert_int_equal(obj_xml_text(f, fl, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "a&b<c");
    p = obj_xml_find(p, end, "Contents", &v, &vl);
    assert_non_null(p);
    assert_non_null(obj_xml_find(v, v + vl, "Key", &f, &fl));
    assert_int_equal(obj_xml_text(f, fl, buf, sizeof(buf)), 6);
    assert_string_equal(buf, "second");
    assert_null(obj_xml_find(p, end, "Contents", &v, &vl));
    /* <KeyCount/> is empty; <Key> does not match <KeyCount>. */
    assert_non_null(obj_xml_find(x, end, "KeyCount", &v, &vl));
    assert_int_equal(vl, 0);
    assert_non_null(obj_xml_find(x, end, "NextContinuationToken", &v, &vl));
    assert_int_equal(vl, 3);
    /* An unclosed element is not found; text too long for the buffer is refused. */
    const char *bad = "<Code>NoSuchKey";
    assert_null(obj_xml_find(bad, bad + strlen(bad), "Code", &v, &vl));
    assert_int_equal(obj_xml_text("abcdef", 6, buf, 4), DEMS_ETOOBIG);
}

static void test_time(void **state)
{
    (void)state;
    assert_int_equal(obj_parse_time("2013-05-24T00:00:00.000Z", 24), 1369353600);
    assert_int_equal(obj_parse_time("2013-05-24T00:00:00Z", 20), 1369353600);
    assert_int_equal(obj_parse_time("Fri, 24 May 2013 00:00:00 GMT", 29), 1369353600);
    assert_int_equal(obj_parse_time("Fri, 24 Mey 2013 00:00:00 GMT", 29), -1);
    assert_int_equal(obj_parse_time("2013-13-24T00:00:00Z", 20), -1);
    assert_int_equal(obj_parse_time("yesterday", 9), -1);
}

static void test_base64(void **state)
{
    (void)state;
    char enc[16];
    uint8_t dec[8];
    assert_int_equal(obj_b64_encode((const uint8_t *)"dems", 4, enc, sizeof(enc)), 8);
    assert_string_equal(enc, "ZGVtcw==");
    assert_int_equal(obj_b64_decode("ZGVtcw==", dec, sizeof(dec)), 4);
    assert_memory_equal(dec, "dems", 4);
    assert_int_equal(obj_b64_decode("Z!Vtcw==", dec, sizeof(dec)), DEMS_EINVAL);
    assert_int_equal(obj_b64_encode((const uint8_t *)"dems", 4, enc, 8), DEMS_ETOOBIG);
}

static void test_list_pages(void **state)
{
    (void)state;
    struct obj_entries l = {0};
    char next[64];
    const char *s3 = "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"x\"><IsTruncated>true"
                     "</IsTruncated><Contents><Key>blobs/ab/c</Key><LastModified>2013-05-24T00:00:"
                     "00.000Z</LastModified><Size>42</Size></Contents><NextContinuationToken>t2"
                     "</NextContinuationToken></ListBucketResult>";
    assert_int_equal(obj_s3_list_page(s3, strlen(s3), &l, next, sizeof(next)), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.e[0].key, "blobs/ab/c");
    assert_int_equal(l.e[0].size, 42);
    assert_int_equal(l.e[0].mtime, 1369353600);
    assert_string_equal(next, "t2");
    /* Truncated without a token, or not a listing at all: refused, not an empty last page. */
    const char *notok = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
    assert_int_equal(obj_s3_list_page(notok, strlen(notok), &l, next, sizeof(next)), DEMS_EIO);
    const char *html = "<html><body>Gateway</body></html>";
    assert_int_equal(obj_s3_list_page(html, strlen(html), &l, next, sizeof(next)), DEMS_EIO);
    assert_int_equal(obj_azure_list_page(html, strlen(html), &l, next, sizeof(next)), DEMS_EIO);
    const char *az = "<EnumerationResults ContainerName=\"dems\"><Blobs><Blob><Name>blobs/cd/e"
                     "</Name><Properties><Last-Modified>Fri, 24 May 2013 00:00:00 GMT"
                     "</Last-Modified><Content-Length>7</Content-Length></Properties></Blob>"
                     "</Blobs><NextMarker/></EnumerationResults>";
    assert_int_equal(obj_azure_list_page(az, strlen(az), &l, next, sizeof(next)), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.e[1].key, "blobs/cd/e");
    assert_int_equal(l.e[1].size, 7);
    assert_string_equal(next, "");
    obj_entries_free(&l);
}

static int new_store(const char *pairs[][2], size_t n, char *err, size_t errlen)
{
    struct dems_config cfg;
    assert_int_equal(dems_config_init(&cfg), 0);
    char e2[256];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dems_config_set(&cfg, pairs[i][0], pairs[i][1], e2, sizeof(e2)), 0);
    struct dems_objstore *s = NULL;
    int r = dems_objstore_new(&cfg, &s, err, errlen);
    if (r == 0) {
        assert_string_equal(dems_objstore_where(s), "s3 https://s3.example:8443/evidence");
        assert_int_equal(dems_objstore_part_min(s), 5u << 20);
    }
    dems_objstore_free(s);
    dems_config_done(&cfg);
    return r;
}

static void test_settings(void **state)
{
    (void)state;
    char err[256];
    const char *good[][2] = {{"store", "s3"},
                             {"store_endpoint", "https://s3.example:8443/"},
                             {"store_container", "evidence"},
                             {"store_access_key", "AK"},
                             {"store_key", "SK"}};
    assert_int_equal(new_store(good, 5, err, sizeof(err)), 0);
    /* A default port is not part of the Host that libcurl sends (and signs). */
    const char *port443[][2] = {{"store", "s3"},
                                {"store_endpoint", "https://s3.example:443"},
                                {"store_container", "evidence"},
                                {"store_access_key", "AK"},
                                {"store_key", "SK"}};
    struct dems_config cfg;
    struct dems_objstore *os;
    assert_int_equal(dems_config_init(&cfg), 0);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(dems_config_set(&cfg, port443[i][0], port443[i][1], err, sizeof(err)), 0);
    assert_int_equal(dems_objstore_new(&cfg, &os, err, sizeof(err)), 0);
    assert_string_equal(dems_objstore_where(os), "s3 https://s3.example/evidence");
    dems_objstore_free(os);
    dems_config_done(&cfg);
    const char *no_secret[][2] = {
        {"store", "s3"}, {"store_endpoint", "https://s3.example"}, {"store_access_key", "AK"}};
    assert_int_equal(new_store(no_secret, 3, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "store_key"));
    const char *ftp[][2] = {{"store", "s3"},
                            {"store_endpoint", "ftp://s3.example"},
                            {"store_access_key", "AK"},
                            {"store_key", "SK"}};
    assert_int_equal(new_store(ftp, 4, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "store_endpoint"));
    const char *userinfo[][2] = {{"store", "s3"},
                                 {"store_endpoint", "https://u:p@s3.example"},
                                 {"store_access_key", "AK"},
                                 {"store_key", "SK"}};
    assert_int_equal(new_store(userinfo, 4, err, sizeof(err)), DEMS_EINVAL);
    const char *badname[][2] = {{"store", "s3"},
                                {"store_endpoint", "https://s3.example"},
                                {"store_container", "a/b"},
                                {"store_access_key", "AK"},
                                {"store_key", "SK"}};
    assert_int_equal(new_store(badname, 5, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "store_container"));
    const char *missing_file[][2] = {{"store", "s3"},
                                     {"store_endpoint", "https://s3.example"},
                                     {"store_access_key", "AK"},
                                     {"store_key", "@/nonexistent/secret"}};
    assert_int_equal(new_store(missing_file, 4, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "/nonexistent/secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_aws_example),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_xml),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_list_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
