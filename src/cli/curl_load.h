/* libcurl, loaded when a client command first needs it (dlopen) rather
 * than linked: `corral server run` is the same binary, and linking libcurl
 * would map it and what it depends on (OpenSSL, Kerberos, LDAP, SSH, ...)
 * into every coordinator, about 3 MB of resident memory the server never
 * uses. The headers still come from libcurl4-openssl-dev; the library from
 * its runtime package (libcurl4), which that package depends on. */
#ifndef CORRAL_CLI_CURL_LOAD_H
#define CORRAL_CLI_CURL_LOAD_H

#include <stddef.h>

#include <curl/curl.h>

struct corral_curl {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *h);
    void (*easy_reset)(CURL *h);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *h);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    const char *(*easy_strerror)(CURLcode rc);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
};

/* The loaded library (loaded once, kept for the life of the process), or
 * NULL with the reason in err. */
const struct corral_curl *corral_curl_load(char *err, size_t errlen);

#endif
