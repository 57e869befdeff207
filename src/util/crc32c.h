/* CRC32C (Castagnoli), the checksum of every frame, record and entry. */
#ifndef CORRAL_UTIL_CRC32C_H
#define CORRAL_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes of data. */
uint32_t corral_crc32c(uint32_t crc, const void *data, size_t len);

#endif
