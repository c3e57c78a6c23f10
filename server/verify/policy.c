/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A witness policy from the command line: --witness VKEY (repeatable) and
 * --quorum N, for every subcommand that checks a checkpoint (checkpoint,
 * ledger, bundle, monitor; docs/ledger.md section 7).
 */
#include <string.h>

#include "dems/str.h"

#include "verify_int.h"

const struct dems_witness_policy verify_bad_policy;

int verify_policy_take(int argc, char **argv, struct verify_policy *pol)
{
    int out = 0;
    pol->n = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--witness") == 0) {
            if (i + 1 == argc) {
                verify_usage("--witness needs a value");
                return -1;
            }
            v = argv[++i];
        } else if (strncmp(argv[i], "--witness=", 10) == 0) {
            v = argv[i] + 10;
        } else {
            argv[out++] = argv[i];
            continue;
        }
        if (pol->n == DEMS_COSIG_MAX_POLICY) {
            verify_usage("--witness: at most %d keys", DEMS_COSIG_MAX_POLICY);
            return -1;
        }
        pol->vkeys[pol->n++] = v;
    }
    return out;
}

const struct dems_witness_policy *verify_policy_get(struct verify_policy *pol, const char *q)
{
    if (pol->n == 0 && q == NULL)
        return NULL;
    if (pol->n == 0) {
        verify_usage("--quorum needs the witnesses' keys (--witness VKEY, repeatable)");
        return &verify_bad_policy;
    }
    for (size_t i = 0; i < pol->n; i++) {
        if (dems_cosig_verifier_parse(pol->vkeys[i], strlen(pol->vkeys[i]), &pol->keys[i]) < 0) {
            verify_usage("--witness: '%s' is not a witness's cosignature verifier key "
                         "(name+hash+base64 of type 0x04)",
                         pol->vkeys[i]);
            return &verify_bad_policy;
        }
    }
    uint64_t quorum = 1;
    if (q != NULL && dems_parse_u64(q, strlen(q), UINT64_MAX, &quorum) < 0) {
        verify_usage("--quorum: '%s' is not a decimal number", q);
        return &verify_bad_policy;
    }
    if (quorum == 0 || quorum > pol->n) {
        verify_usage("--quorum: give 1 to the number of --witness keys (%zu)", pol->n);
        return &verify_bad_policy;
    }
    pol->p = (struct dems_witness_policy){.keys = pol->keys, .nkeys = pol->n, .quorum = quorum};
    return &pol->p;
}
