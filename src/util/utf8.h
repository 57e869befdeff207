/* UTF-8 validity as jansson checks it (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF): which values the API can give as a
 * JSON string, and which bytes the CLI must escape. */
#ifndef CORRAL_UTIL_UTF8_H
#define CORRAL_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The length (1-4) of the valid UTF-8 sequence that starts p[0..n), or 0
 * when none does (n == 0, a stray or invalid byte, a cut sequence). */
size_t corral_utf8_seq(const uint8_t *p, size_t n);

/* Whether all of p[0..n) is valid UTF-8 (NUL bytes included). */
bool corral_utf8_valid(const uint8_t *p, size_t n);

#endif
