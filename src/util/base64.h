/* Standard base64 with padding (RFC 4648 section 4): how the API gives a
 * value that is not UTF-8 in JSON ("value_base64"), and how the CLI reads
 * it back. */
#ifndef CORRAL_UTIL_BASE64_H
#define CORRAL_UTIL_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters the encoding of n bytes takes, padding included, without a
 * terminating NUL. n must be at most SIZE_MAX / 4 * 3 - 2. */
size_t corral_base64_encoded_len(size_t n);

/* Writes the encoding of in[0..n) and a NUL to out, which holds
 * corral_base64_encoded_len(n) + 1 bytes; returns the encoded length. */
size_t corral_base64_encode(const uint8_t *in, size_t n, char *out);

/* Bytes that decoding n characters may give at most (n / 4 * 3). */
size_t corral_base64_decoded_max(size_t n);

/* Decodes in[0..n) into out (corral_base64_decoded_max(n) bytes) and sets
 * *out_len. Strict, so one value has one encoding: n is a multiple of 4,
 * only A-Z a-z 0-9 + / and up to two '=' at the very end, and the bits a
 * padded group leaves unused are zero. CORRAL_EINVAL otherwise (out is
 * then partly written). */
int corral_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);

#endif
