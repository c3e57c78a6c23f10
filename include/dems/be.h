/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Big-endian integers in byte buffers, for formats of our own that must not
 * depend on the machine's byte order (a saved SHA-256 state, a sealed
 * upload state).
 */
#ifndef DEMS_BE_H
#define DEMS_BE_H

#include <stdint.h>

static inline void dems_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t dems_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void dems_put_be64(uint8_t *p, uint64_t v)
{
    dems_put_be32(p, (uint32_t)(v >> 32));
    dems_put_be32(p + 4, (uint32_t)v);
}

static inline uint64_t dems_get_be64(const uint8_t *p)
{
    return (uint64_t)dems_get_be32(p) << 32 | dems_get_be32(p + 4);
}

#endif
