/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/config: defaults, ranges, file, environment. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dems/config.h"
#include "dems/err.h"

static void test_defaults(void **state)
{
    (void)state;
    struct dems_config c;
    assert_int_equal(dems_config_init(&c), 0);
    assert_string_equal(c.listen, "127.0.0.1:8443");
    assert_true(c.auto_migrate);
    assert_true(c.db_pool_size == 4);
    char err[256];
    /* data_dir is required. */
    assert_int_equal(dems_config_check(&c, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "data_dir"));
    dems_config_done(&c);
}

static void test_set_and_ranges(void **state)
{
    (void)state;
    struct dems_config c;
    char err[256];
    dems_config_init(&c);
    assert_int_equal(dems_config_set(&c, "threads", "3", err, sizeof(err)), 0);
    assert_true(c.threads == 3);
    assert_int_equal(dems_config_set(&c, "threads", "257", err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "threads"));
    assert_true(c.threads == 3);
    assert_int_equal(dems_config_set(&c, "db_pool_size", "0", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "auto_migrate", "no", err, sizeof(err)), 0);
    assert_false(c.auto_migrate);
    assert_int_equal(dems_config_set(&c, "auto_migrate", "perhaps", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "listen", "[::1]:9", err, sizeof(err)), 0);
    assert_int_equal(dems_config_set(&c, "listen", "host:99999", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "log_level", "loud", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "bogus", "1", err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "unknown key"));
    dems_config_done(&c);
}

static void test_job_keys(void **state)
{
    (void)state;
    struct dems_config c;
    char err[256];
    dems_config_init(&c);
    assert_true(c.workers == 1 && c.worker_slots == 1);
    assert_true(c.job_max_attempts == 5 && c.job_lease == 300 && c.job_poll_interval == 5);
    assert_true(c.job_backoff_base == 10 && c.job_backoff_max == 3600);
    assert_int_equal(dems_config_set(&c, "workers", "0", err, sizeof(err)), 0);
    assert_true(c.workers == 0);
    assert_int_equal(dems_config_set(&c, "workers", "65", err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "workers"));
    assert_int_equal(dems_config_set(&c, "worker_slots", "0", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "job_max_attempts", "0", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "job_lease", "2", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "job_poll_interval", "0", err, sizeof(err)), DEMS_EINVAL);
    /* The longest backoff cannot be shorter than the first. */
    assert_int_equal(dems_config_set(&c, "data_dir", "/x", err, sizeof(err)), 0);
    assert_int_equal(dems_config_set(&c, "job_backoff_base", "60", err, sizeof(err)), 0);
    assert_int_equal(dems_config_set(&c, "job_backoff_max", "30", err, sizeof(err)), 0);
    assert_int_equal(dems_config_check(&c, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "job_backoff_max"));
    assert_int_equal(dems_config_set(&c, "job_backoff_max", "60", err, sizeof(err)), 0);
    assert_int_equal(dems_config_check(&c, err, sizeof(err)), 0);
    dems_config_done(&c);
}

static void test_hostport(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(dems_config_split_hostport("127.0.0.1:8443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8443);
    assert_int_equal(dems_config_split_hostport("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(dems_config_split_hostport(":80", host, sizeof(host), &port), DEMS_EINVAL);
    assert_int_equal(dems_config_split_hostport("x", host, sizeof(host), &port), DEMS_EINVAL);
    assert_int_equal(dems_config_split_hostport("x:", host, sizeof(host), &port), DEMS_EINVAL);
}

static void test_file_and_env(void **state)
{
    (void)state;
    char path[] = "/tmp/dems-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# a comment\n\n  data_dir = /srv/dems  \nlisten=\"0.0.0.0:443\"\n"
                        "threads = 2\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    struct dems_config c;
    char err[256];
    dems_config_init(&c);
    assert_int_equal(dems_config_load_file(&c, path, err, sizeof(err)), 0);
    assert_string_equal(c.data_dir, "/srv/dems");
    assert_string_equal(c.listen, "0.0.0.0:443");
    char e1[] = "PATH=/bin", e2[] = "DEMS_THREADS=5", e3[] = "DEMS_DATA_DIR=/x";
    char *env[] = {e1, e2, e3, NULL};
    assert_int_equal(dems_config_load_env(&c, env, err, sizeof(err)), 0);
    assert_true(c.threads == 5);
    assert_string_equal(c.data_dir, "/x");
    char b1[] = "DEMS_IDLE_TIMEOUT=forever";
    char *badenv[] = {b1, NULL};
    assert_int_equal(dems_config_load_env(&c, badenv, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "idle_timeout"));

    fd = open(path, O_WRONLY | O_TRUNC);
    const char bad[] = "threads = 2\nthis line has no equals\n";
    assert_int_equal(write(fd, bad, sizeof(bad) - 1), (ssize_t)(sizeof(bad) - 1));
    close(fd);
    assert_int_equal(dems_config_load_file(&c, path, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, ":2:"));
    unlink(path);
    assert_true(dems_config_load_file(&c, "/nonexistent/dems.conf", err, sizeof(err)) < 0);
    dems_config_done(&c);
}

static void test_tsa_keys(void **state)
{
    (void)state;
    struct dems_config c;
    char err[256];
    char urls[DEMS_CONFIG_TSA_MAX][DEMS_CONFIG_TSA_URL_MAX + 1];
    dems_config_init(&c);
    assert_true(c.tsa_interval == 600 && c.tsa_timeout == 30);
    assert_int_equal(dems_config_tsa_urls(&c, urls, err, sizeof(err)), 0); /* off */
    assert_int_equal(dems_config_set(&c, "data_dir", "/x", err, sizeof(err)), 0);
    assert_int_equal(dems_config_set(&c, "tsa_urls", " https://a.example/tsa,http://b:8080 ,, ",
                                     err, sizeof(err)),
                     0);
    assert_int_equal(dems_config_tsa_urls(&c, urls, err, sizeof(err)), 2);
    assert_string_equal(urls[0], "https://a.example/tsa");
    assert_string_equal(urls[1], "http://b:8080");
    /* A TSA needs a trust store. */
    assert_int_equal(dems_config_check(&c, err, sizeof(err)), DEMS_EINVAL);
    assert_non_null(strstr(err, "tsa_ca_file"));
    assert_int_equal(dems_config_set(&c, "tsa_ca_file", "/etc/tsa.pem", err, sizeof(err)), 0);
    assert_int_equal(dems_config_check(&c, err, sizeof(err)), 0);
    /* Only http(s) URLs with something after the scheme, at most eight. */
    static const char *const bad[] = {"ftp://a", "https://", "a.example", "http://a\x7f",
                                      "http://1 http://2 http://3 http://4 http://5 http://6 "
                                      "http://7 http://8 http://9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(dems_config_set(&c, "tsa_urls", bad[i], err, sizeof(err)), 0);
        assert_int_equal(dems_config_check(&c, err, sizeof(err)), DEMS_EINVAL);
        assert_non_null(strstr(err, "tsa_urls"));
    }
    assert_int_equal(dems_config_set(&c, "tsa_interval", "0", err, sizeof(err)), DEMS_EINVAL);
    assert_int_equal(dems_config_set(&c, "tsa_timeout", "601", err, sizeof(err)), DEMS_EINVAL);
    dems_config_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_set_and_ranges),
        cmocka_unit_test(test_job_keys),     cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_file_and_env), cmocka_unit_test(test_tsa_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
