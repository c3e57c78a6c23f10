/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Receipts of public submissions (docs/api.md, "Receipts"): a JSON document
 * holding each file's name, size and SHA-256, the INGESTED entry that
 * recorded it and the submission's SUBMITTED entry, each entry's canonical
 * bytes with an RFC 9162 inclusion proof, and the signed checkpoint the
 * proofs lead to. Verification is offline and pure (no I/O).
 */
#ifndef DEMS_RECEIPT_H
#define DEMS_RECEIPT_H

#include <stddef.h>
#include <stdint.h>

#include "dems/ledger.h"

/* The receipt's "dems_receipt" format number. */
#define DEMS_RECEIPT_FORMAT 1
/* Largest receipt a verifier reads. */
#define DEMS_RECEIPT_MAX_BYTES (64u * 1024 * 1024)

struct dems_receipt_opts {
    /* The log's note verifier key, pinned; NULL trusts the receipt's own "vkey". */
    const char *vkey;
    /* Optionally, a checkpoint fetched later (GET /v1/ledger/checkpoint) and
     * the consistency proof from the receipt's tree to it (the JSON of GET
     * /v1/ledger/proof/consistency?old=<receipt size>&new=<its size>): the
     * receipt's entries are then shown to be in that later log too. */
    const char *later_note;
    size_t later_len;
    const char *consistency;
    size_t consistency_len;
};

struct dems_receipt_report {
    char code[32]; /* "" when valid, else a stable name ("proof_invalid", ...) */
    char detail[512];
    char reference[32];
    uint64_t files;
    uint64_t bytes;
    struct dems_checkpoint checkpoint;
    struct dems_checkpoint later; /* size 0 when none was given */
};

/*
 * Verifies a receipt's text: its checkpoint's signature (by opts->vkey, or
 * by the receipt's own key), every entry's inclusion proof against it, that
 * each file's entry is an INGESTED entry of its SHA-256 and size naming an
 * upload, and that the SUBMITTED entry names the receipt's reference and
 * number of files; with a later checkpoint, its signature (by the same key)
 * and the consistency proof. Returns 0 when valid, DEMS_ECRYPTO when not
 * (report says why), DEMS_EINVAL for a text that is not a receipt, DEMS_ENOMEM.
 */
int dems_receipt_verify(const char *text, size_t len, const struct dems_receipt_opts *opts,
                        struct dems_receipt_report *report);

#endif
