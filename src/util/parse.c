/* See parse.h. */
#include "util/parse.h"

#include <stddef.h>

bool corral_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool corral_parse_hostport_safe(const char *s)
{
    size_t n = 0;
    bool colon = false;
    for (; s[n] != '\0'; n++) {
        if (n >= 260 || s[n] <= ' ' || s[n] > '~')
            return false;
        colon |= s[n] == ':';
    }
    return n > 0 && colon;
}
