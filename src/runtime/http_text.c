/* The HTTP server's text helpers that need no connection: the error body
 * and percent-encoding (http.h). Apart from http.c so that the API's fuzz
 * target (tests/fuzz/fuzz_http.c) links them with a fake request. */
#include <stdbool.h>
#include <string.h>

#include "corral.h"
#include "runtime/http.h"

json_t *corral_http_error_json(const char *code, const char *message, const char *leader_url)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (err != NULL && leader_url != NULL)
        json_object_set_new(err, "leader", json_string(leader_url));
    return json_pack("{s:o*}", "error", err);
}

int corral_http_escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cap == 0)
        return CORRAL_ETOOBIG;
    size_t len = 0;
    out[0] = '\0';
    for (const char *s = in; s != NULL && *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == '~' || c == '/';
        char enc[3] = {(char)c, 0, 0};
        size_t n = 1;
        if (!plain) {
            enc[0] = '%';
            enc[1] = hex[c >> 4];
            enc[2] = hex[c & 15];
            n = 3;
        }
        if (len + n >= cap) {
            out[len] = '\0';
            return CORRAL_ETOOBIG;
        }
        memcpy(out + len, enc, n);
        len += n;
    }
    out[len] = '\0';
    return 0;
}
