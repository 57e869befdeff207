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
