/* See base64.h. */
#include "util/base64.h"

#include <assert.h>
#include <stdbool.h>

#include "corral.h"

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t corral_base64_encoded_len(size_t n)
{
    assert(n <= SIZE_MAX / 4 * 3 - 2);
    return (n + 2) / 3 * 4;
}

size_t corral_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) { /* one or two bytes left: two or three characters, then '=' */
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    assert(o == corral_base64_encoded_len(n));
    return o;
}

size_t corral_base64_decoded_max(size_t n)
{
    return n / 4 * 3;
}

/* The 6-bit value of c, or -1 for a character outside the alphabet. */
static int sextet(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int corral_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len)
{
    if (n % 4 != 0)
        return CORRAL_EINVAL;
    size_t pad = n > 0 && in[n - 1] == '=' ? (in[n - 2] == '=' ? 2 : 1) : 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        size_t chars = last ? 4 - pad : 4; /* the group's non-pad characters */
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int s = j < chars ? sextet(in[i + j]) : 0;
            if (s < 0)
                return CORRAL_EINVAL;
            v = v << 6 | (uint32_t)s;
        }
        /* A padded group's unused low bits must be zero (RFC 4648 3.5). */
        if ((chars == 2 && (v & 0xffff) != 0) || (chars == 3 && (v & 0xff) != 0))
            return CORRAL_EINVAL;
        out[o++] = (uint8_t)(v >> 16);
        if (chars > 2)
            out[o++] = (uint8_t)(v >> 8);
        if (chars > 3)
            out[o++] = (uint8_t)v;
    }
    *out_len = o;
    return 0;
}
