/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every cap on untrusted input in one list (curl's DYN_* idea). A growing
 * buffer names its cap here; nothing reads the network without one.
 */
#ifndef DEMS_LIMITS_H
#define DEMS_LIMITS_H

/* Request line plus all header lines, in bytes (431 beyond). */
#define DEMS_MAX_HEADER_BYTES (32 * 1024)
/* Number of header fields in one request (431 beyond). */
#define DEMS_MAX_HEADERS 100
/* A JSON request body held in memory (413 beyond). */
#define DEMS_MAX_JSON_BODY (64 * 1024)
/* Bytes a connection may buffer from the socket before it stops reading. */
#define DEMS_MAX_CONN_INPUT (256 * 1024)
/* Bytes of response a connection may queue before a streaming writer waits. */
#define DEMS_MAX_CONN_OUTPUT (512 * 1024)
/* Parameters in one query string (400 beyond). */
#define DEMS_MAX_QUERY_PARAMS 32
/* Path parameters one route pattern may capture. */
#define DEMS_MAX_PATH_PARAMS 8
/* Length of a username. */
#define DEMS_MAX_USERNAME 64
/* Length of a password (Argon2id input). */
#define DEMS_MAX_PASSWORD 1024
/* Queries waiting for a free database connection, per event loop. */
#define DEMS_MAX_DB_QUEUE 4096
/* The default cap on open client connections, whatever the fd limit allows. */
#define DEMS_MAX_CONNECTIONS_DEFAULT 10000
/* A configuration file. */
#define DEMS_MAX_CONFIG_BYTES (256 * 1024)

#endif
