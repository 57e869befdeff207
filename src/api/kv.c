/* /v1/kv: the config store. See docs/api.md. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/reply.h"
#include "api/routes.h"
#include "corral.h"
#include "util/base64.h"
#include "util/parse.h"
#include "util/utf8.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

/* {"key","value","version"}, with "value_base64" (RFC 4648, padded) in
 * place of "value" when the value is not UTF-8 (docs/api.md). NULL when
 * out of memory. */
static json_t *item_json(const struct corral_kv_item *it)
{
    json_t *value;
    const char *name = "value";
    if (corral_utf8_valid(it->value, it->value_len)) {
        value = json_stringn(it->value_len ? (const char *)it->value : "", it->value_len);
    } else {
        name = "value_base64";
        char *b64 = malloc(corral_base64_encoded_len(it->value_len) + 1);
        size_t n = b64 != NULL ? corral_base64_encode(it->value, it->value_len, b64) : 0;
        value = b64 != NULL ? json_stringn(b64, n) : NULL;
        free(b64);
    }
    return json_pack("{s:s%, s:o, s:I}", "key", (const char *)it->key, (size_t)it->key_len, name,
                     value, "version", (json_int_t)it->version);
}

/* ---- reads ---- */

/* ?raw=1: the value's exact bytes, its version in a header. */
static void serve_raw(struct corral_http_request *req, const struct corral_kv_item *it)
{
    char version[24];
    snprintf(version, sizeof(version), "%" PRIu64, it->version);
    corral_http_respond(req, 200, "application/octet-stream",
                        it->value_len ? (const char *)it->value : "", it->value_len,
                        "X-Corral-Version", version, NULL, NULL);
}

static void serve_get(struct corral_node *n, struct corral_http_request *req, bool raw)
{
    const char *key = corral_http_path(req) + strlen("/v1/kv/");
    struct corral_kv_item it;
    if (!corral_kv_get(corral_node_kv(n), (const uint8_t *)key, (uint32_t)strlen(key), &it)) {
        api_error(req, API_ERR_NO_KEY);
        return;
    }
    if (raw) {
        serve_raw(req, &it);
        return;
    }
    json_t *body = item_json(&it);
    if (body == NULL)
        api_error(req, API_ERR_OOM);
    else
        api_json(req, 200, body);
}

static void serve_list(struct corral_node *n, struct corral_http_request *req)
{
    const char *prefix = corral_http_arg(req, "prefix");
    const char *after = corral_http_arg(req, "after");
    const char *lim = corral_http_arg(req, "limit");
    uint64_t limit = LIST_LIMIT_DEFAULT;
    if (lim != NULL && (!corral_parse_u64(lim, &limit) || limit == 0 || limit > LIST_LIMIT_MAX)) {
        api_error(req, API_ERR_BAD_LIMIT);
        return;
    }
    struct corral_kv_item *items = calloc(limit, sizeof(*items));
    if (items == NULL) {
        api_error(req, API_ERR_OOM);
        return;
    }
    bool more = false;
    prefix = prefix ? prefix : "";
    after = after ? after : "";
    uint32_t k = corral_kv_list(corral_node_kv(n), (const uint8_t *)prefix,
                                (uint32_t)strlen(prefix), (const uint8_t *)after,
                                (uint32_t)strlen(after), items, (uint32_t)limit, &more);
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < k; i++) {
        if (json_array_append_new(arr, item_json(&items[i])) != 0) {
            json_decref(arr); /* an item that did not build: no memory */
            arr = NULL;
        }
    }
    free(items);
    if (arr == NULL)
        api_error(req, API_ERR_OOM);
    else
        api_json(req, 200, json_pack("{s:o, s:b}", "items", arr, "more", more));
}

struct read_ctx {
    struct corral_node *node;
    struct corral_http_request *req;
    bool list;
    bool raw; /* a key's GET only */
};

static void serve(struct corral_node *n, struct corral_http_request *req, bool list, bool raw)
{
    if (list)
        serve_list(n, req);
    else
        serve_get(n, req, raw);
}

static void on_read(void *ctx, int err)
{
    struct read_ctx *rc = ctx;
    if (err != 0)
        api_node_error(rc->req, err);
    else
        serve(rc->node, rc->req, rc->list, rc->raw);
    free(rc);
}

static void kv_read(struct corral_node *n, struct corral_http_request *req, bool list)
{
    bool stale = false, raw = false;
    /* The listing does not know raw, and ignores it as any other. */
    if (!api_flag_arg(req, "stale", &stale) || (!list && !api_flag_arg(req, "raw", &raw)))
        return;
    if (stale) { /* local state, no quorum needed */
        serve(n, req, list, raw);
        return;
    }
    struct read_ctx *rc = malloc(sizeof(*rc));
    if (rc == NULL) {
        api_error(req, API_ERR_OOM);
        return;
    }
    *rc = (struct read_ctx){n, req, list, raw};
    int rv = corral_node_read(n, on_read, rc);
    if (rv != 0) {
        free(rc);
        api_node_error(req, rv);
    }
}

/* ---- writes ---- */

struct write_ctx {
    struct corral_node *node;
    struct corral_http_request *req;
    bool del;
};

static void on_write(void *ctx, int err, const struct corral_state_result *sres)
{
    const struct corral_kv_result *res = err == 0 ? &sres->kv : NULL;
    struct write_ctx *wc = ctx;
    struct corral_http_request *req = wc->req;
    const char *key = corral_http_path(req) + strlen("/v1/kv/");
    if (err != 0) {
        api_node_error(req, err);
    } else if (sres->status != CORRAL_STATE_KV_DONE) {
        api_error(req, API_ERR_APPLY);
    } else if (res->status == CORRAL_KV_OK && wc->del) {
        api_json(req, 200,
                 json_pack("{s:s, s:b, s:I}", "key", key, "deleted", 1, "version",
                           (json_int_t)res->version));
    } else if (res->status == CORRAL_KV_OK) {
        api_json(req, 200,
                 json_pack("{s:s, s:I}", "key", key, "version", (json_int_t)res->version));
    } else if (res->status == CORRAL_KV_NOT_FOUND) {
        api_error(req, API_ERR_NO_KEY);
    } else if (res->status == CORRAL_KV_CAS_FAILED) {
        api_error_ex(req, API_ERR_CAS_FAILED, NULL, NULL,
                     json_pack("{s:I}", "version", (json_int_t)res->version));
    } else if (res->status == CORRAL_KV_FULL) {
        api_error(req, API_ERR_STORE_FULL);
    } else {
        api_error(req, API_ERR_APPLY);
    }
    free(wc);
}

/* Fills cmd from the request, or answers the request and returns false. */
static bool write_cmd(struct corral_http_request *req, bool del, struct corral_kv_cmd *cmd)
{
    const char *key = corral_http_path(req) + strlen("/v1/kv/");
    const char *cas = corral_http_arg(req, "cas");
    size_t body_len = 0;
    const uint8_t *body = corral_http_body(req, &body_len);
    *cmd = (struct corral_kv_cmd){.op = del ? CORRAL_KV_DEL : CORRAL_KV_PUT,
                                  .key = (const uint8_t *)key,
                                  .key_len = (uint32_t)strlen(key)};
    if (cas != NULL && !corral_parse_u64(cas, &cmd->cas)) {
        api_error(req, API_ERR_BAD_CAS);
        return false;
    }
    cmd->has_cas = cas != NULL;
    if (corral_http_body_too_large(req) || body_len > CORRAL_KV_VALUE_BYTES_MAX) {
        api_error(req, API_ERR_VALUE_TOO_LARGE);
        return false;
    }
    if (!del) {
        cmd->value = body;
        cmd->value_len = (uint32_t)body_len;
    }
    return true;
}

static void kv_write(struct corral_node *n, struct corral_http_request *req, bool del)
{
    static const char *const args[] = {"cas", NULL};
    struct corral_kv_cmd cmd;
    if (!api_args_only(req, args) || !write_cmd(req, del, &cmd))
        return;
    struct write_ctx *wc = malloc(sizeof(*wc));
    if (wc == NULL) {
        api_error(req, API_ERR_OOM);
        return;
    }
    *wc = (struct write_ctx){n, req, del};
    int rv = corral_node_write(n, &cmd, on_write, wc);
    if (rv == 0)
        return;
    free(wc);
    if (rv == CORRAL_ENOTLEADER)
        api_not_leader(n, req);
    else
        api_node_error(req, rv);
}

void api_kv(struct corral_node *n, struct corral_http_request *req, const char *path)
{
    const char *method = corral_http_method(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (path[0] == '\0' || strcmp(path, "/") == 0) {
        if (get)
            kv_read(n, req, true);
        else
            api_error(req, API_ERR_LIST_GET_ONLY);
        return;
    }
    const char *key = path + 1;
    size_t key_len = strlen(key);
    if (key_len > CORRAL_KV_KEY_BYTES_MAX) {
        api_error(req, API_ERR_KEY_TOO_LARGE);
        return;
    }
    json_t *utf8 = json_stringn(key, key_len);
    if (utf8 == NULL) {
        api_error(req, API_ERR_KEY_UTF8);
        return;
    }
    json_decref(utf8);
    if (get)
        kv_read(n, req, false);
    else if (strcmp(method, "PUT") == 0)
        kv_write(n, req, false);
    else if (strcmp(method, "DELETE") == 0)
        kv_write(n, req, true);
    else
        api_error(req, API_ERR_KEY_METHOD);
}
