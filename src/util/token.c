/* The token file of token.h. */
#include "util/token.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/sha256.h"

int corral_tokens_load(const char *path, struct corral_tokens *out, bool *loose, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "token file %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "token file %s: not a regular file", path);
        fclose(f);
        return -1;
    }
    if (loose != NULL)
        *loose = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
    char line[CORRAL_TOKEN_MAX * 2 + 2];
    int rv = 0, lineno = 0;
    while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "token file %s:%d: line too long (at most %d bytes)", path,
                     lineno, CORRAL_TOKEN_MAX);
            rv = -1;
            break;
        }
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        len = strlen(s);
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
                           s[len - 1] == '\t'))
            len--;
        if (len == 0)
            continue;
        if (len < CORRAL_TOKEN_MIN || len > CORRAL_TOKEN_MAX) {
            snprintf(err, errlen, "token file %s:%d: a token is %d to %d bytes, this one is %zu",
                     path, lineno, CORRAL_TOKEN_MIN, CORRAL_TOKEN_MAX, len);
            rv = -1;
        } else if (out->n == CORRAL_TOKENS_MAX) {
            snprintf(err, errlen,
                     "token file %s:%d: at most %d tokens (the current one and the next)", path,
                     lineno, CORRAL_TOKENS_MAX);
            rv = -1;
        } else {
            memcpy(out->tok[out->n], s, len);
            out->tok[out->n][len] = '\0';
            out->len[out->n++] = len;
        }
    }
    if (rv == 0 && ferror(f)) {
        snprintf(err, errlen, "token file %s: cannot read: %s", path, strerror(errno));
        rv = -1;
    }
    fclose(f);
    memset(line, 0, sizeof(line));
    if (rv == 0 && out->n == 0) {
        snprintf(err, errlen, "token file %s: empty (a token is at least %d bytes)", path,
                 CORRAL_TOKEN_MIN);
        rv = -1;
    }
    if (rv != 0)
        memset(out, 0, sizeof(*out));
    return rv;
}

bool corral_tokens_match(const struct corral_tokens *t, const char *s, size_t len)
{
    bool ok = false;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->len[i] == len && corral_ct_equal(t->tok[i], s, len))
            ok = true;
    return ok;
}
