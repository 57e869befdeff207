/* See curl_load.h. */
#include "cli/curl_load.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static struct corral_curl api;
static int loaded;

/* dlsym gives a data pointer; copying its bytes is the portable way to
 * make a function pointer of it. */
static int sym(void *lib, const char *name, void *fp, size_t size, char *err, size_t errlen)
{
    void *p = dlsym(lib, name);
    if (p == NULL) {
        snprintf(err, errlen, "libcurl has no %s", name);
        return -1;
    }
    memcpy(fp, &p, size);
    return 0;
}

#define SYM(field, name) sym(lib, name, &api.field, sizeof(api.field), err, errlen)

const struct corral_curl *corral_curl_load(char *err, size_t errlen)
{
    if (loaded)
        return &api;
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(err, errlen, "cannot load libcurl (install libcurl4): %s", dlerror());
        return NULL;
    }
    if (SYM(global_init, "curl_global_init") || SYM(easy_init, "curl_easy_init") ||
        SYM(easy_cleanup, "curl_easy_cleanup") || SYM(easy_reset, "curl_easy_reset") ||
        SYM(easy_setopt, "curl_easy_setopt") || SYM(easy_perform, "curl_easy_perform") ||
        SYM(easy_getinfo, "curl_easy_getinfo") || SYM(easy_strerror, "curl_easy_strerror") ||
        SYM(slist_append, "curl_slist_append") || SYM(slist_free_all, "curl_slist_free_all")) {
        dlclose(lib);
        return NULL;
    }
    loaded = 1;
    return &api;
}
