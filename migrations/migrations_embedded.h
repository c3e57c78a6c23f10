/* SPDX-License-Identifier: Apache-2.0 */
/* The migrations compiled into demsd, generated from migrations/NNNN_name.sql. */
#ifndef DEMS_MIGRATIONS_EMBEDDED_H
#define DEMS_MIGRATIONS_EMBEDDED_H

struct dems_migration {
    int version;
    const char *name;
    const char *sha256;
    const char *sql;
};

extern const struct dems_migration dems_migrations[];
extern const unsigned long dems_nmigrations;

#endif
