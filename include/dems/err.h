/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One table of error codes for all of dems. Functions that can fail for more
 * than one reason return 0 or a negative DEMS_E* value; each value maps to a
 * stable machine-readable code (used in JSON error bodies) and an HTTP status.
 */
#ifndef DEMS_ERR_H
#define DEMS_ERR_H

enum {
    DEMS_OK = 0,
    DEMS_ENOMEM = -1,      /* out of memory */
    DEMS_EINVAL = -2,      /* malformed input */
    DEMS_ETOOBIG = -3,     /* a size limit was exceeded */
    DEMS_EIO = -4,         /* file or socket I/O failed */
    DEMS_ENOTFOUND = -5,   /* no such object */
    DEMS_EAGAIN = -6,      /* not now; try again (never an end state) */
    DEMS_EAUTH = -7,       /* missing or wrong credentials */
    DEMS_EFORBIDDEN = -8,  /* authenticated but not allowed */
    DEMS_ECONFLICT = -9,   /* object exists / state conflict */
    DEMS_EDB = -10,        /* database unreachable or failed */
    DEMS_ETHROTTLED = -11, /* too many attempts */
    DEMS_EUNAVAIL = -12,   /* shutting down or overloaded */
    DEMS_EINTERNAL = -13,  /* a bug or an unexpected library failure */
    DEMS_ECRYPTO = -14,    /* a signature or MAC did not verify */
    DEMS_ETOTP = -15,      /* a TOTP code is required or wrong */
    DEMS_ENOSPC = -16,     /* the data volume is full */
    DEMS_E_LAST = -16,
};

/* Stable snake_case code for err (e.g. "invalid_request"); never NULL. */
const char *dems_err_code(int err);

/* Human-readable text for err; never NULL. */
const char *dems_strerror(int err);

/* The HTTP status that err maps to (e.g. 400 for DEMS_EINVAL). */
int dems_err_http_status(int err);

#endif
