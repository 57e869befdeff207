/* The cluster token (issue 13): read from a file by the server, `corral
 * agent` and every client command. The file holds one token, or two lines
 * during a rotation (docs/operations.md "Security"): the first is the one
 * this process proves and sends, and every line is accepted from others. */
#ifndef CORRAL_UTIL_TOKEN_H
#define CORRAL_UTIL_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORRAL_TOKEN_MIN 16
#define CORRAL_TOKEN_MAX 256
#define CORRAL_TOKENS_MAX 2

struct corral_tokens {
    uint32_t n; /* 0: no token, an open cluster */
    size_t len[CORRAL_TOKENS_MAX];
    char tok[CORRAL_TOKENS_MAX][CORRAL_TOKEN_MAX + 1];
};

/* Reads path: each nonempty line, trimmed of spaces, tabs and CR, is a
 * token of CORRAL_TOKEN_MIN..CORRAL_TOKEN_MAX bytes, at most
 * CORRAL_TOKENS_MAX lines. On an error returns -1 with a message in err.
 * *loose (may be NULL) is set when group or other may read the file. */
int corral_tokens_load(const char *path, struct corral_tokens *out, bool *loose, char *err,
                       size_t errlen);

/* Whether the len bytes at s equal one of the tokens, in time independent
 * of where they differ (the lengths are not secret). */
bool corral_tokens_match(const struct corral_tokens *t, const char *s, size_t len);

#endif
