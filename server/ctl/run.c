/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shape most demsctl commands have: one session, one request (or one
 * list read to its end), one answer printed.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

int ctl_one(const char *method, const char *path, json_t *body, const struct ctl_col *cols,
            const char *done)
{
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK) {
        json_decref(body);
        return r;
    }
    json_t *answer = NULL;
    r = ctl_call(&h, method, path, body, &answer);
    json_decref(body);
    if (r == CTL_OK) {
        if (answer != NULL && (cols != NULL || ctl_global.json))
            ctl_print_object(answer, cols);
        else if (ctl_global.json)
            ctl_print_json(json_object());
        if (done != NULL && !ctl_global.json)
            printf("%s\n", done);
    }
    json_decref(answer);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

int ctl_one_list(const char *path, const char *key, const char *limit, const struct ctl_col *cols)
{
    int64_t max = 0;
    if (limit != NULL && !ctl_int_arg("--limit", limit, 1, INT64_C(1) << 40, &max))
        return CTL_USAGE;
    struct ctl_config cfg;
    struct ctl_token tok;
    struct ctl_http h;
    int r = ctl_session(&cfg, &tok, &h);
    if (r != CTL_OK)
        return r;
    json_t *all = NULL;
    r = ctl_list(&h, path, key, (uint64_t)max, &all);
    if (r == CTL_OK)
        ctl_print_list(all, key, cols);
    json_decref(all);
    ctl_session_done(&cfg, &tok, &h);
    return r;
}

bool ctl_id_arg(const char *what, const char *s, int64_t *ret)
{
    return ctl_int_arg(what, s, 1, INT64_C(1) << 53, ret);
}

bool ctl_evidence_arg(const char *s, char out[static 65])
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len && len == 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            len = 0;
    if (len != 64) {
        ctl_usage_error("'%s' is not an evidence id (64 hex digits, its SHA-256)", s);
        return false;
    }
    for (size_t i = 0; i < 64; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[64] = '\0';
    return true;
}
