/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the ledger module: the log role's background client
 * (witness_client.c), started and stopped by witness.c.
 */
#ifndef DEMSD_WITNESS_INT_H
#define DEMSD_WITNESS_INT_H

#include <stddef.h>

struct dems_server;
struct witness_client;

/*
 * Parses the witnesses and witness_quorum settings and, when witnesses are
 * configured, starts the thread that submits this log's checkpoints to them
 * (*ret is NULL when none are). Returns 0, DEMS_EINVAL (bad setting, err
 * says which) or DEMS_ENOMEM.
 */
int witness_client_start(struct dems_server *srv, const char *conninfo, struct witness_client **ret,
                         char *err, size_t errlen);

/* Stops the thread (an exchange under way ends at its timeout) and frees c; NULL is a no-op. */
void witness_client_stop(struct witness_client *c);

/* Wakes the thread: a new checkpoint was signed. Any thread; NULL is a no-op. */
void witness_client_kick(struct witness_client *c);

#endif
