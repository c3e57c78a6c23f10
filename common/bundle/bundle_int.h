/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared inside common/bundle: member names, the ZIP writer over libarchive,
 * decoded custody entries and the printable report. Never included from
 * outside the module.
 */
#ifndef DEMS_BUNDLE_INT_H
#define DEMS_BUNDLE_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "dems/buf.h"
#include "dems/bundle.h"
#include "dems/ledger.h"

/* Member names of the metadata, in the order they are written. */
#define BUNDLE_MANIFEST   "manifest.json"
#define BUNDLE_CHECKPOINT "checkpoint.txt"
#define BUNDLE_KEYS       "keys.jsonl"
#define BUNDLE_CUSTODY    "custody.jsonl"
#define BUNDLE_PROOFS     "proofs/"
#define BUNDLE_HTML       "index.html"
#define BUNDLE_FILES      "exhibits/"
#define BUNDLE_IO_CHUNK   (64 * 1024)

/* A custody entry decoded for the manifest and the report. */
struct bundle_decoded {
    json_t *root; /* owns the strings of e */
    struct dems_ledger_entry e;
};

/* Text length of a signed note (up to and including the text's last newline); 0 if none. */
size_t bundle_note_text_len(const char *note, size_t len);

/*
 * Appends the printable report (index.html) for manifest (as written) and
 * the decoded custody entries to out. Returns 0, DEMS_ETOOBIG or DEMS_ENOMEM.
 */
int bundle_html(const json_t *manifest, const struct bundle_decoded *entries, size_t n,
                const char *vkey, struct dems_buf *out);

#endif
