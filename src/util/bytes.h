/* Little-endian integers at any address, the byte order of everything
 * corral writes (codec frames, kv commands and snapshots, WAL, transport).
 * Byte shifts, so the host's byte order and alignment never matter. */
#ifndef CORRAL_UTIL_BYTES_H
#define CORRAL_UTIL_BYTES_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/* The n low bytes of v (n at most 8) at p, least significant first. For
 * the codecs whose field widths come from a table or a parameter. */
static inline void corral_put_le(uint8_t *p, uint64_t v, size_t n)
{
    assert(n <= 8);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The n bytes at p (n at most 8) as an unsigned little-endian number. */
static inline uint64_t corral_get_le(const uint8_t *p, size_t n)
{
    assert(n <= 8);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline void corral_put_le16(uint8_t *p, uint16_t v)
{
    corral_put_le(p, v, 2);
}

static inline void corral_put_le32(uint8_t *p, uint32_t v)
{
    corral_put_le(p, v, 4);
}

static inline void corral_put_le64(uint8_t *p, uint64_t v)
{
    corral_put_le(p, v, 8);
}

static inline uint16_t corral_get_le16(const uint8_t *p)
{
    return (uint16_t)corral_get_le(p, 2);
}

static inline uint32_t corral_get_le32(const uint8_t *p)
{
    return (uint32_t)corral_get_le(p, 4);
}

static inline uint64_t corral_get_le64(const uint8_t *p)
{
    return corral_get_le(p, 8);
}

#endif
