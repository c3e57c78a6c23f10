/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of upload staging shared by the registry and local files
 * (staging.c) and staging in an object store (staging_remote.c). Nothing
 * outside server/store includes it.
 */
#ifndef DEMSD_STAGING_INT_H
#define DEMSD_STAGING_INT_H

#include <pthread.h>

#include "demsd/store.h"

typedef crypto_secretstream_xchacha20poly1305_state stream_state;

extern pthread_mutex_t staging_mu; /* guards the registry */
extern const uint8_t *staging_master;

/* Registry operations: call with staging_mu held. */
struct dems_staged *staging_find(const char *id);
void staging_insert(struct dems_staged *s);
void staging_unlink(struct dems_staged *s);

/* A new unregistered state (no file, no buffers); freed with staging_free. */
struct dems_staged *staging_new(const char *id, uint64_t length);
void staging_free(struct dems_staged *s);

/* Closes s's file and keeps only what a parked state needs. */
void staging_park(struct dems_staged *s);

/* Writes a fresh blob head at the start of fd and sets up the push state. */
int staging_write_head(int fd, stream_state *st);

void staging_path_of(const char *id, char *out, size_t len);

/* Deletes every file in the staging directory (remote mode, at start). */
void staging_clear_dir(void);

/* Remote mode (staging_remote.c): the store, or NULL for local staging. */
extern struct dems_objstore *staging_store;

/* Remote: chunks per part for an upload of length bytes. */
uint32_t staging_part_chunks(uint64_t length);

/* Remote: called after each chunk is pushed (the snapshot at a part's end). */
void staging_after_push(struct dems_staged *s);

#endif
