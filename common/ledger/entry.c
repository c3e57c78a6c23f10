/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Custody entries: the fixed set of event types, RFC 3339 times with
 * milliseconds, and the canonical bytes of an entry (an RFC 8785 object,
 * docs/ledger.md "Entry bytes"). Decoding is strict: the bytes must be
 * exactly the canonical encoding of the entry they describe, so one entry
 * has one byte form and therefore one leaf hash.
 */
#include <stdio.h>
#include <string.h>

#include "dems/err.h"
#include "dems/ledger.h"
#include "dems/str.h"

#include "ledger_int.h"

#define ENTRY_VERSION 1

static const char *const type_names[DEMS_LEDGER_TYPE_COUNT] = {
    [DEMS_LEDGER_INGESTED] = "INGESTED",
    [DEMS_LEDGER_VIEWED] = "VIEWED",
    [DEMS_LEDGER_DOWNLOADED] = "DOWNLOADED",
    [DEMS_LEDGER_PREVIEW_MADE] = "PREVIEW_MADE",
    [DEMS_LEDGER_SHARED] = "SHARED",
    [DEMS_LEDGER_UNSHARED] = "UNSHARED",
    [DEMS_LEDGER_EXPORTED] = "EXPORTED",
    [DEMS_LEDGER_FACE_INDEXED] = "FACE_INDEXED",
    [DEMS_LEDGER_FACE_SEARCH] = "FACE_SEARCH",
    [DEMS_LEDGER_HOLD_PLACED] = "HOLD_PLACED",
    [DEMS_LEDGER_DISPOSED] = "DISPOSED",
    [DEMS_LEDGER_ACCESS_DENIED] = "ACCESS_DENIED",
    [DEMS_LEDGER_KEY_ROTATED] = "KEY_ROTATED",
    [DEMS_LEDGER_DEVICE_ENROLLED] = "DEVICE_ENROLLED",
    [DEMS_LEDGER_DEVICE_REVOKED] = "DEVICE_REVOKED",
    [DEMS_LEDGER_LOCKOUT_LIFTED] = "LOCKOUT_LIFTED",
    [DEMS_LEDGER_ACCESS_DENIED_SUMMARY] = "ACCESS_DENIED_SUMMARY",
    [DEMS_LEDGER_DEVICE_ASSIGNED] = "DEVICE_ASSIGNED",
    [DEMS_LEDGER_CASE_CREATED] = "CASE_CREATED",
    [DEMS_LEDGER_CASE_UPDATED] = "CASE_UPDATED",
    [DEMS_LEDGER_EXHIBIT_ADDED] = "EXHIBIT_ADDED",
    [DEMS_LEDGER_EXHIBIT_UPDATED] = "EXHIBIT_UPDATED",
    [DEMS_LEDGER_EXHIBIT_REMOVED] = "EXHIBIT_REMOVED",
    [DEMS_LEDGER_MEMBER_ADDED] = "MEMBER_ADDED",
    [DEMS_LEDGER_MEMBER_REMOVED] = "MEMBER_REMOVED",
    [DEMS_LEDGER_SHARE_REVOKED] = "SHARE_REVOKED",
    [DEMS_LEDGER_BUNDLE_MADE] = "BUNDLE_MADE",
    [DEMS_LEDGER_DISCLOSED] = "DISCLOSED",
    [DEMS_LEDGER_DISCLOSURE_REVOKED] = "DISCLOSURE_REVOKED",
    [DEMS_LEDGER_DISCLOSURE_OPENED] = "DISCLOSURE_OPENED",
    [DEMS_LEDGER_DISCLOSURE_VIEWED] = "DISCLOSURE_VIEWED",
    [DEMS_LEDGER_SUBMISSION_REQUESTED] = "SUBMISSION_REQUESTED",
    [DEMS_LEDGER_SUBMISSION_LINK_REVOKED] = "SUBMISSION_LINK_REVOKED",
    [DEMS_LEDGER_SUBMITTED] = "SUBMITTED",
    [DEMS_LEDGER_SUBMISSION_ACCEPTED] = "SUBMISSION_ACCEPTED",
    [DEMS_LEDGER_SUBMISSION_REJECTED] = "SUBMISSION_REJECTED",
    [DEMS_LEDGER_USER_UPDATED] = "USER_UPDATED",
    [DEMS_LEDGER_FACE_INDEXING_CHANGED] = "FACE_INDEXING_CHANGED",
    [DEMS_LEDGER_FACE_GALLERY_CREATED] = "FACE_GALLERY_CREATED",
    [DEMS_LEDGER_FACE_GALLERY_ACCESS] = "FACE_GALLERY_ACCESS",
    [DEMS_LEDGER_FACE_ENROLLED] = "FACE_ENROLLED",
    [DEMS_LEDGER_FACE_SUBJECT_REMOVED] = "FACE_SUBJECT_REMOVED",
    [DEMS_LEDGER_FACE_GALLERY_IMPORTED] = "FACE_GALLERY_IMPORTED",
    [DEMS_LEDGER_RETENTION_POLICY_CREATED] = "RETENTION_POLICY_CREATED",
    [DEMS_LEDGER_RETENTION_SET] = "RETENTION_SET",
    [DEMS_LEDGER_HOLD_RELEASED] = "HOLD_RELEASED",
    [DEMS_LEDGER_DISPOSAL_APPROVED] = "DISPOSAL_APPROVED",
    [DEMS_LEDGER_DISPOSAL_RECOVERED] = "DISPOSAL_RECOVERED",
    [DEMS_LEDGER_DEVICE_UPDATED] = "DEVICE_UPDATED",
    [DEMS_LEDGER_SETTING_CHANGED] = "SETTING_CHANGED",
    [DEMS_LEDGER_USER_CREATED] = "USER_CREATED",
    [DEMS_LEDGER_TIMESTAMPED] = "TIMESTAMPED",
};

static const char *const actor_names[] = {
    [DEMS_LEDGER_ACTOR_USER] = "user",
    [DEMS_LEDGER_ACTOR_DEVICE] = "device",
    [DEMS_LEDGER_ACTOR_SYSTEM] = "system",
    [DEMS_LEDGER_ACTOR_LINK] = "link",
};

const char *dems_ledger_type_name(enum dems_ledger_type type)
{
    if ((unsigned)type >= DEMS_LEDGER_TYPE_COUNT)
        return NULL;
    return type_names[type];
}

int dems_ledger_type_parse(const char *name, size_t len, enum dems_ledger_type *ret_type)
{
    for (unsigned i = 0; i < DEMS_LEDGER_TYPE_COUNT; i++) {
        if (strlen(type_names[i]) == len && memcmp(type_names[i], name, len) == 0) {
            *ret_type = (enum dems_ledger_type)i;
            return 0;
        }
    }
    return DEMS_EINVAL;
}

/* Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The civil date of days since 1970-01-01 (civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* 9999-12-31T23:59:59.999Z */
#define TIME_MAX_MS INT64_C(253402300799999)

int dems_ledger_time_format(int64_t time_ms, char out[static 25])
{
    if (time_ms < 0 || time_ms > TIME_MAX_MS)
        return DEMS_EINVAL;
    int64_t days = time_ms / 86400000, rem = time_ms % 86400000, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31)
        return DEMS_EINVAL; /* cannot happen in range; tells the compiler the widths */
    snprintf(out, 25, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", (int)y, m, d, (int)(rem / 3600000),
             (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000));
    return 0;
}

static int digits(const char *s, size_t n, uint64_t max, uint64_t *ret)
{
    return dems_parse_u64(s, n, max, ret);
}

int dems_ledger_time_parse(const char *s, size_t len, int64_t *ret_time_ms)
{
    uint64_t y, mo, d, h, mi, sec, ms;

    /* YYYY-MM-DDTHH:MM:SS.mmmZ, nothing else (RFC 3339 profile). */
    if (len != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.' || s[23] != 'Z')
        return DEMS_EINVAL;
    if (digits(s, 4, 9999, &y) < 0 || digits(s + 5, 2, 12, &mo) < 0 ||
        digits(s + 8, 2, 31, &d) < 0 || digits(s + 11, 2, 23, &h) < 0 ||
        digits(s + 14, 2, 59, &mi) < 0 || digits(s + 17, 2, 59, &sec) < 0 ||
        digits(s + 20, 3, 999, &ms) < 0)
        return DEMS_EINVAL;
    if (y < 1970 || mo < 1 || d < 1)
        return DEMS_EINVAL;
    int64_t days = days_from_civil((int64_t)y, (unsigned)mo, (unsigned)d);
    int64_t y2;
    unsigned m2, d2;
    civil_from_days(days, &y2, &m2, &d2);
    if (m2 != mo || d2 != d) /* 31 April, 29 February of a common year */
        return DEMS_EINVAL;
    *ret_time_ms =
        ((days * 24 + (int64_t)h) * 60 + (int64_t)mi) * 60000 + (int64_t)sec * 1000 + (int64_t)ms;
    return 0;
}

/* An id: 1..DEMS_LEDGER_MAX_ID bytes of UTF-8 without control characters. */
static bool id_valid(const char *s, size_t len)
{
    if (len == 0 || len > DEMS_LEDGER_MAX_ID || !dems_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((uint8_t)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static int set(json_t *obj, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(obj, key, v) == 0 ? 0 : DEMS_ENOMEM;
}

static int set_hex(json_t *obj, const char *key, const uint8_t h[static 32])
{
    char hex[65];
    dems_hex_encode(h, 32, hex);
    return set(obj, key, json_stringn(hex, 64));
}

static int entry_json(const struct dems_ledger_entry *e, json_t *o)
{
    char t[25];
    int r;

    if (dems_ledger_time_format(e->time_ms, t) < 0 || dems_ledger_type_name(e->type) == NULL ||
        (unsigned)e->actor_kind >= DEMS_LEDGER_ACTOR_COUNT || e->actor_id == NULL ||
        !id_valid(e->actor_id, strlen(e->actor_id)) ||
        (e->case_id != NULL && !id_valid(e->case_id, strlen(e->case_id))) ||
        e->seq > (uint64_t)DEMS_JCS_MAX_INT ||
        (e->has_size && e->size > (uint64_t)DEMS_JCS_MAX_INT) ||
        (e->payload != NULL && !json_is_object(e->payload)))
        return DEMS_EINVAL;
    json_t *actor = json_object();
    if ((r = set(o, "actor", actor)) < 0 ||
        (r = set(actor, "kind", json_string(actor_names[e->actor_kind]))) < 0 ||
        (r = set(actor, "id", json_string(e->actor_id))) < 0 ||
        (r = set(o, "v", json_integer(ENTRY_VERSION))) < 0 ||
        (r = set(o, "seq", json_integer((json_int_t)e->seq))) < 0 ||
        (r = set(o, "time", json_string(t))) < 0 ||
        (r = set(o, "type", json_string(dems_ledger_type_name(e->type)))) < 0)
        return r;
    /* The payload is borrowed: take a reference for the temporary object. */
    json_t *payload =
        e->payload != NULL ? json_incref((json_t *)(uintptr_t)e->payload) : json_object();
    if ((r = set(o, "payload", payload)) < 0)
        return r;
    if (e->has_artefact && (r = set_hex(o, "artefact", e->artefact)) < 0)
        return r;
    if (e->has_sha256 && (r = set_hex(o, "sha256", e->sha256)) < 0)
        return r;
    if (e->case_id != NULL && (r = set(o, "case", json_string(e->case_id))) < 0)
        return r;
    if (e->has_size && (r = set(o, "size", json_integer((json_int_t)e->size))) < 0)
        return r;
    return 0;
}

int dems_ledger_entry_encode(const struct dems_ledger_entry *e, struct dems_buf *out)
{
    size_t mark = out->len;
    json_t *o = json_object();
    int r;

    if (o == NULL)
        return DEMS_ENOMEM;
    r = entry_json(e, o);
    if (r == 0 && e->payload != NULL) {
        struct dems_buf pb;
        dems_buf_init(&pb, DEMS_LEDGER_MAX_PAYLOAD);
        r = dems_jcs_encode(e->payload, &pb);
        if (r == DEMS_ETOOBIG)
            r = DEMS_EINVAL;
        dems_buf_done(&pb);
    }
    if (r == 0)
        r = dems_jcs_encode(o, out);
    if (r == 0 && out->len - mark > DEMS_LEDGER_MAX_ENTRY)
        r = DEMS_EINVAL;
    if (r < 0)
        out->len = mark;
    json_decref(o);
    return r;
}

/* A 64-hex-digit lower-case SHA-256 member. */
static int get_hex(const json_t *v, uint8_t out[static 32])
{
    if (!json_is_string(v) || json_string_length(v) != 64)
        return DEMS_EINVAL;
    return dems_hex_decode(json_string_value(v), 64, out, 32);
}

static int get_u64(const json_t *v, uint64_t *ret)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return DEMS_EINVAL;
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

static int entry_fields(json_t *root, struct dems_ledger_entry *e)
{
    json_t *v, *actor = json_object_get(root, "actor");
    const char *key;
    json_t *val;
    size_t known = 0;
    uint64_t ver;

    json_object_foreach(root, key, val)
    {
        static const char *const allowed[] = {"actor",  "artefact", "case", "payload", "seq",
                                              "sha256", "size",     "time", "type",    "v"};
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
            known += strcmp(key, allowed[i]) == 0;
    }
    if (known != json_object_size(root) || get_u64(json_object_get(root, "v"), &ver) < 0 ||
        ver != ENTRY_VERSION || get_u64(json_object_get(root, "seq"), &e->seq) < 0)
        return DEMS_EINVAL;
    v = json_object_get(root, "time");
    if (!json_is_string(v) ||
        dems_ledger_time_parse(json_string_value(v), json_string_length(v), &e->time_ms) < 0)
        return DEMS_EINVAL;
    v = json_object_get(root, "type");
    if (!json_is_string(v) ||
        dems_ledger_type_parse(json_string_value(v), json_string_length(v), &e->type) < 0)
        return DEMS_EINVAL;
    if (!json_is_object(actor) || json_object_size(actor) != 2)
        return DEMS_EINVAL;
    v = json_object_get(actor, "kind");
    e->actor_kind = DEMS_LEDGER_ACTOR_COUNT;
    for (unsigned i = 0; json_is_string(v) && i < DEMS_LEDGER_ACTOR_COUNT; i++)
        if (strcmp(json_string_value(v), actor_names[i]) == 0)
            e->actor_kind = (enum dems_ledger_actor)i;
    e->actor_id = json_string_value(json_object_get(actor, "id"));
    if (e->actor_kind >= DEMS_LEDGER_ACTOR_COUNT || e->actor_id == NULL)
        return DEMS_EINVAL;
    e->payload = json_object_get(root, "payload");
    if (!json_is_object(e->payload))
        return DEMS_EINVAL;
    if ((e->has_artefact = (v = json_object_get(root, "artefact")) != NULL) &&
        get_hex(v, e->artefact) < 0)
        return DEMS_EINVAL;
    if ((e->has_sha256 = (v = json_object_get(root, "sha256")) != NULL) &&
        get_hex(v, e->sha256) < 0)
        return DEMS_EINVAL;
    if ((e->has_size = (v = json_object_get(root, "size")) != NULL) && get_u64(v, &e->size) < 0)
        return DEMS_EINVAL;
    v = json_object_get(root, "case");
    if (v != NULL && !json_is_string(v))
        return DEMS_EINVAL;
    e->case_id = json_string_value(v);
    return 0;
}

int dems_ledger_entry_decode(const uint8_t *bytes, size_t len, json_t **ret_root,
                             struct dems_ledger_entry *ret_entry)
{
    struct dems_ledger_entry e = {.seq = 0};
    struct dems_buf again;
    json_t *root = NULL;
    int r;

    if (len > DEMS_LEDGER_MAX_ENTRY || dems_jcs_parse((const char *)bytes, len, &root) < 0)
        return DEMS_EINVAL;
    r = json_is_object(root) ? entry_fields(root, &e) : DEMS_EINVAL;
    /* Canonical means: encoding what we read gives back the same bytes. */
    dems_buf_init(&again, DEMS_LEDGER_MAX_ENTRY);
    if (r == 0)
        r = dems_ledger_entry_encode(&e, &again);
    if (r == 0 && (again.len != len || memcmp(again.data, bytes, len) != 0))
        r = DEMS_EINVAL;
    dems_buf_done(&again);
    if (r < 0) {
        json_decref(root);
        return r == DEMS_ENOMEM ? r : DEMS_EINVAL;
    }
    *ret_root = root;
    *ret_entry = e;
    return 0;
}
