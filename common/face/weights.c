/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TF.js weight manifests: reads <model>-weights_manifest.json (jansson) and
 * the .bin it names, checks both files against pinned SHA-256 values, and
 * dequantises every tensor to float32 (face-models.md 0.1). Tensors lie back
 * to back in manifest order; uint8-quantised ones take one byte per element
 * and decode as (float)((double)q * scale + min).
 */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dems/err.h"

#include "face_int.h"

#define INSTALL_HINT   "install them with deploy/install.d/face-models"
#define MAX_MODEL_FILE ((size_t)16 * 1024 * 1024)

/* Pinned SHA-256 of @vladmandic/face-api 1.7.15's model files; keep in step
 * with deploy/install.d/face-models. */
static const struct {
    const char *file;
    const char *sha256;
} pinned[] = {
    {"ssd_mobilenetv1_model-weights_manifest.json",
     "888f744dffbc84f5f060d1f8427d9742341943a2dfaaf9205d10029b7e7a2955"},
    {"ssd_mobilenetv1_model.bin",
     "2835640602d53718aa6ae9a42896327eaa21beefed056c218d32ca7d79e1e2f8"},
    {"tiny_face_detector_model-weights_manifest.json",
     "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5"},
    {"tiny_face_detector_model.bin",
     "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871"},
    {"face_landmark_68_model-weights_manifest.json",
     "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9"},
    {"face_landmark_68_model.bin",
     "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b"},
    {"face_recognition_model-weights_manifest.json",
     "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"},
    {"face_recognition_model.bin",
     "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"},
};

bool wt_pinned_sha256(const char *file, const char **ret_hex)
{
    for (size_t i = 0; i < sizeof(pinned) / sizeof(pinned[0]); i++) {
        if (strcmp(pinned[i].file, file) == 0) {
            *ret_hex = pinned[i].sha256;
            return true;
        }
    }
    return false;
}

bool dems_face_model_file(size_t i, const char **ret_file, const char **ret_sha256)
{
    if (i >= sizeof(pinned) / sizeof(pinned[0]))
        return false;
    *ret_file = pinned[i].file;
    *ret_sha256 = pinned[i].sha256;
    return true;
}

int wt_missing(const char *model, const char *name, char *err, size_t errlen)
{
    if (err != NULL)
        snprintf(err, errlen, "face model %s: tensor %s missing or of the wrong shape (%s)", model,
                 name, INSTALL_HINT);
    return DEMS_EINVAL;
}

/* Reads a whole model file (capped) and checks its pinned hash. */
static int read_checked(const char *dir, const char *file, uint8_t **ret, size_t *ret_len,
                        char *err, size_t errlen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path)) {
        snprintf(err, errlen, "face model path too long: %s", dir);
        return DEMS_ETOOBIG;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "face model file %s: %s (%s)", path, strerror(errno), INSTALL_HINT);
        return errno == ENOENT ? DEMS_ENOTFOUND : DEMS_EIO;
    }
    uint8_t *data = malloc(MAX_MODEL_FILE);
    if (data == NULL) {
        fclose(f);
        return DEMS_ENOMEM;
    }
    size_t len = fread(data, 1, MAX_MODEL_FILE, f);
    bool bad = ferror(f) != 0 || len == MAX_MODEL_FILE;
    fclose(f);
    const char *want = NULL;
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    if (bad || !wt_pinned_sha256(file, &want) ||
        EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        free(data);
        snprintf(err, errlen, "face model file %s could not be read (%s)", path, INSTALL_HINT);
        return DEMS_EIO;
    }
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (strcmp(hex, want) != 0) {
        free(data);
        snprintf(err, errlen,
                 "face model file %s has SHA-256 %s, expected %s: altered or wrong "
                 "version (%s)",
                 path, hex, want, INSTALL_HINT);
        return DEMS_ECRYPTO;
    }
    *ret = data;
    *ret_len = len;
    return 0;
}

/* Number of elements of a manifest entry's shape, or 0 when unusable. */
static size_t shape_count(json_t *shape)
{
    size_t count = 1, i;
    json_t *d;
    if (!json_is_array(shape))
        return 0;
    json_array_foreach(shape, i, d)
    {
        json_int_t v = json_integer_value(d);
        if (!json_is_integer(d) || v < 1 || v > (1 << 24) || count > (1u << 26) / (size_t)v)
            return 0;
        count *= (size_t)v;
    }
    return count;
}

/* Decodes one entry at bin[*off], advancing *off. */
static int decode_entry(json_t *w, const uint8_t *bin, size_t len, size_t *off, float *out,
                        size_t count)
{
    json_t *q = json_object_get(w, "quantization");
    const char *dtype = json_string_value(json_object_get(w, "dtype"));
    if (dtype == NULL)
        return DEMS_EINVAL;
    if (q != NULL) {
        const char *qt = json_string_value(json_object_get(q, "dtype"));
        double scale = json_number_value(json_object_get(q, "scale"));
        double min = json_number_value(json_object_get(q, "min"));
        if (qt == NULL || strcmp(qt, "uint8") != 0 || count > len - *off)
            return DEMS_EINVAL;
        for (size_t i = 0; i < count; i++) {
            double v = (double)bin[*off + i] * scale + min;
            out[i] =
                strcmp(dtype, "int32") == 0 ? (float)(long)(v + (v < 0 ? -0.5 : 0.5)) : (float)v;
        }
        *off += count;
        return 0;
    }
    if ((strcmp(dtype, "float32") != 0 && strcmp(dtype, "int32") != 0) || count > (len - *off) / 4)
        return DEMS_EINVAL;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = bin + *off + 4 * i;
        uint32_t u =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (strcmp(dtype, "int32") == 0) {
            out[i] = (float)(int32_t)u;
        } else {
            memcpy(&out[i], &u, 4);
        }
    }
    *off += 4 * count;
    return 0;
}

static int parse_manifest(struct wt_file *wf, json_t *root, const uint8_t *bin, size_t len)
{
    json_t *group = json_array_get(root, 0);
    json_t *ws = json_object_get(group, "weights");
    if (json_array_size(root) != 1 || !json_is_array(ws) || json_array_size(ws) > 4096)
        return DEMS_EINVAL;
    size_t total = 0, i;
    json_t *w;
    json_array_foreach(ws, i, w)
    {
        size_t c = shape_count(json_object_get(w, "shape"));
        if (c == 0 || !json_is_string(json_object_get(w, "name")))
            return DEMS_EINVAL;
        total += c;
    }
    if (total > len) /* every element takes at least one byte */
        return DEMS_EINVAL;
    wf->arena = malloc((total > 0 ? total : 1) * sizeof(float));
    wf->e = calloc(json_array_size(ws) + 1, sizeof(*wf->e));
    if (wf->arena == NULL || wf->e == NULL)
        return DEMS_ENOMEM;
    size_t off = 0, at = 0;
    json_array_foreach(ws, i, w)
    {
        struct wt_entry *e = &wf->e[wf->n];
        e->count = shape_count(json_object_get(w, "shape"));
        e->data = wf->arena + at;
        e->name = strdup(json_string_value(json_object_get(w, "name")));
        if (e->name == NULL)
            return DEMS_ENOMEM;
        wf->n++;
        int r = decode_entry(w, bin, len, &off, e->data, e->count);
        if (r < 0)
            return r;
        at += e->count;
    }
    return off == len ? 0 : DEMS_EINVAL;
}

int wt_load(struct wt_file *wf, const char *dir, const char *model, char *err, size_t errlen)
{
    char mname[256], bname[256];
    uint8_t *mdata = NULL, *bin = NULL;
    size_t mlen = 0, blen = 0;
    *wf = (struct wt_file){0};
    snprintf(mname, sizeof(mname), "%s-weights_manifest.json", model);
    snprintf(bname, sizeof(bname), "%s.bin", model);
    int r = read_checked(dir, mname, &mdata, &mlen, err, errlen);
    if (r == 0)
        r = read_checked(dir, bname, &bin, &blen, err, errlen);
    if (r < 0)
        goto out;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)mdata, mlen, 0, &jerr);
    r = root == NULL ? DEMS_EINVAL : parse_manifest(wf, root, bin, blen);
    json_decref(root);
    if (r < 0)
        snprintf(err, errlen, "face model %s: malformed manifest or weights (%s)", model,
                 INSTALL_HINT);
out:
    free(mdata);
    free(bin);
    if (r < 0)
        wt_done(wf);
    return r;
}

void wt_done(struct wt_file *wf)
{
    for (size_t i = 0; wf->e != NULL && i < wf->n; i++)
        free(wf->e[i].name);
    free(wf->e);
    free(wf->arena);
    *wf = (struct wt_file){0};
}

const float *wt_get(const struct wt_file *wf, const char *name, size_t count)
{
    for (size_t i = 0; i < wf->n; i++) {
        if (strcmp(wf->e[i].name, name) == 0)
            return wf->e[i].count == count ? wf->e[i].data : NULL;
    }
    return NULL;
}
