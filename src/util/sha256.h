/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), small and
 * dependency-free, for the cluster token's handshake proofs and nothing
 * performance-critical. */
#ifndef CORRAL_UTIL_SHA256_H
#define CORRAL_UTIL_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORRAL_SHA256_BYTES 32

struct corral_sha256 {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    uint8_t buf[64];
    size_t fill;
};

void corral_sha256_init(struct corral_sha256 *s);
void corral_sha256_update(struct corral_sha256 *s, const void *data, size_t len);
void corral_sha256_final(struct corral_sha256 *s, uint8_t out[CORRAL_SHA256_BYTES]);
void corral_sha256(const void *data, size_t len, uint8_t out[CORRAL_SHA256_BYTES]);

/* HMAC-SHA256 of the concatenation of n parts (parts[i], lens[i]). */
void corral_hmac_sha256(const void *key, size_t key_len, const void *const *parts,
                        const size_t *lens, size_t n, uint8_t out[CORRAL_SHA256_BYTES]);

/* Compares len bytes in time independent of their contents. */
bool corral_ct_equal(const void *a, const void *b, size_t len);

#endif
