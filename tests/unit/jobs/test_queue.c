/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for server/jobs/queue.c's pure parts: backoff, the kinds literal. */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
/* clang-format on */

#include <stdint.h>
#include <string.h>

#include "dems/config.h"
#include "dems/err.h"
#include "demsd/jobs.h"

/* The registry the queue reads (the real one lives in server/jobs/kinds.c). */
static enum dems_job_result noop(const struct dems_job *job, struct dems_job_ctx *ctx, char *err,
                                 size_t errlen)
{
    (void)job;
    (void)ctx;
    (void)err;
    (void)errlen;
    return DEMS_JOB_OK;
}

const struct dems_job_kind dems_job_kinds[] = {{"verify-blob", noop, NULL},
                                               {"preview", noop, NULL}};
const size_t dems_job_nkinds = 2;

int dems_job_check(const char *kind, const json_t *payload, char *err, size_t errlen)
{
    (void)payload;
    (void)err;
    (void)errlen;
    return strcmp(kind, "verify-blob") == 0 ? 0 : DEMS_ENOTFOUND;
}

static void test_backoff(void **state)
{
    (void)state;
    assert_true(dems_jobs_backoff(10, 3600, 1) == 10);
    assert_true(dems_jobs_backoff(10, 3600, 2) == 20);
    assert_true(dems_jobs_backoff(10, 3600, 3) == 40);
    assert_true(dems_jobs_backoff(10, 3600, 9) == 2560);
    assert_true(dems_jobs_backoff(10, 3600, 10) == 3600); /* capped */
    assert_true(dems_jobs_backoff(10, 3600, 1000) == 3600);
    assert_true(dems_jobs_backoff(1, 2, 1) == 1);
    assert_true(dems_jobs_backoff(1, 2, 2) == 2);
    assert_true(dems_jobs_backoff(1, 2, 3) == 2);
    /* Attempt 0 or below (never claimed) waits the base. */
    assert_true(dems_jobs_backoff(5, 100, 0) == 5);
    /* No overflow at the extremes. */
    assert_true(dems_jobs_backoff(UINT64_MAX / 2 + 1, UINT64_MAX, 3) == UINT64_MAX);
    assert_true(dems_jobs_backoff(86400, 604800, 2147483647) == 604800);
}

static void test_opts(void **state)
{
    (void)state;
    struct dems_config c;
    assert_int_equal(dems_config_init(&c), 0);
    c.job_lease = 30;
    c.job_max_attempts = 7;
    struct dems_jobs_opts o;
    dems_jobs_opts_init(&o, &c);
    assert_string_equal(o.kinds, "{verify-blob,preview}");
    assert_true(o.lease == 30 && o.max_attempts == 7);
    assert_true(o.backoff_base == c.job_backoff_base && o.backoff_max == c.job_backoff_max);
    dems_config_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
