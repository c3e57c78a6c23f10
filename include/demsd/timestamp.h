/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RFC 3161 timestamps of signed checkpoints (docs/ledger.md, "Timestamps"):
 * a thread of its own asks each configured Time-Stamping Authority, every
 * tsa_interval seconds while the log grows, for a token over the newest
 * checkpoint, checks it (dems/tsa.h) and stores it with a TIMESTAMPED
 * entry. It never holds a lock the appender or a loop waits for, so a TSA
 * that hangs or lies slows nothing else.
 */
#ifndef DEMSD_TIMESTAMP_H
#define DEMSD_TIMESTAMP_H

#include <stddef.h>

struct dems_server;

/*
 * Starts the thread when tsa_urls is set (otherwise does nothing and
 * returns 0): reads tsa_ca_file, then asks at once and every tsa_interval
 * seconds. After dems_ledger_start. Blocking: start-up only. Returns 0, or
 * a negative DEMS_E* with one line in err.
 */
int dems_timestamps_start(struct dems_server *srv, const char *conninfo, char *err, size_t errlen);

/*
 * Stops the thread: a request in flight is cut within about a second, and
 * an entry being appended is waited for. Before dems_ledger_stop. Does
 * nothing when it was never started.
 */
void dems_timestamps_stop(void);

#endif
