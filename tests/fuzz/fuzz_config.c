/* libFuzzer entry point for the server's INI config file reader
 * (src/cli/server_config.c, inih with a line-counting reader): the input
 * is the file's text, read through fmemopen by server_config_read, the
 * function `corral server run --config` calls on the opened file.
 * Checks: no crash; a refusal says "fuzz.ini:LINE: why" with LINE a line
 * of the input, and for an unknown key that line holds the key; an
 * accepted file sets only NUL-terminated, nonempty values that fit their
 * fields; reading the same text twice gives the same answer and message.
 * Build and run: tests/fuzz/README.md. */
#include "fuzz_require.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/server_config.h"

#define FILE_NAME "fuzz.ini"

static struct server_opts opts[2];

static bool read_text(const uint8_t *data, size_t size, struct server_opts *o)
{
    memset(o, 0, sizeof(*o));
    /* An exact-size copy: fmemopen reads from it in place, so ASan sees
     * any read past the text. */
    char *buf = malloc(size > 0 ? size : 1);
    FUZZ_REQUIRE(buf != NULL);
    memcpy(buf, data, size);
    FILE *f = fmemopen(buf, size, "r"); /* size 0 is fine since glibc 2.22 */
    FUZZ_REQUIRE(f != NULL);
    bool ok = server_config_read(o, f, FILE_NAME);
    fclose(f);
    free(buf);
    return ok;
}

/* The line'th line (1-based) of the text, as a pointer and length. */
static bool nth_line(const uint8_t *data, size_t size, long line, const uint8_t **p, size_t *n)
{
    size_t off = 0;
    for (long l = 1; l < line; l++) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        if (nl == NULL)
            return false;
        off = (size_t)(nl - data) + 1;
    }
    const uint8_t *nl = memchr(data + off, '\n', size - off);
    *p = data + off;
    *n = nl != NULL ? (size_t)(nl - *p) : size - off;
    return true;
}

static void check_refusal(const uint8_t *data, size_t size, const struct server_opts *o)
{
    const char *e = o->err;
    FUZZ_REQUIRE(memchr(e, '\0', sizeof(o->err)) != NULL);
    FUZZ_REQUIRE(strncmp(e, FILE_NAME ":", strlen(FILE_NAME ":")) == 0);
    char *end;
    long line = strtol(e + strlen(FILE_NAME ":"), &end, 10);
    FUZZ_REQUIRE(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
    const uint8_t *p;
    size_t n;
    FUZZ_REQUIRE(line >= 1 && nth_line(data, size, line, &p, &n));
    /* "unknown key 'K'": K is on that line (inih trims it, so it is a
     * substring). A key with a quote in it is not worth telling apart. */
    const char *k = strstr(end, ": unknown key '");
    if (k == NULL)
        return;
    k += strlen(": unknown key '");
    size_t klen = strlen(k);
    if (klen < 2 || k[klen - 1] != '\'')
        return;
    klen--;
    bool found = false;
    for (size_t i = 0; i + klen <= n && !found; i++)
        found = memcmp(p + i, k, klen) == 0;
    FUZZ_REQUIRE(found);
}

static void check_values(const struct server_opts *o)
{
    for (size_t i = 0; i < SERVER_N_OPTS; i++) {
        const struct opt_def *d = &server_opt_defs[i];
        const char *v = (const char *)o + d->offset;
        FUZZ_REQUIRE(memchr(v, '\0', d->size) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool ok = read_text(data, size, &opts[0]);
    if (ok)
        check_values(&opts[0]);
    else
        check_refusal(data, size, &opts[0]);
    FUZZ_REQUIRE(read_text(data, size, &opts[1]) == ok);
    FUZZ_REQUIRE(memcmp(&opts[0], &opts[1], sizeof(opts[0])) == 0);
    return 0;
}
