/* JSON replies and error answers shared by every route. See reply.h. */
#include "api/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"

/* The one place an answer's status, code and message are chosen, so a
 * code always comes with the status docs/api.md gives it. */
static const struct {
    unsigned status;
    const char *code;
    const char *message;
} errors[API_ERR_COUNT] = {
    [API_ERR_NO_ROUTE] = {404, "not_found", "no such route"},
    [API_ERR_NO_KEY] = {404, "not_found", "no such key"},
    [API_ERR_GET_ONLY] = {405, "method_not_allowed", "only GET is allowed here"},
    [API_ERR_LIST_GET_ONLY] = {405, "method_not_allowed", "the listing is GET only"},
    [API_ERR_KEY_METHOD] = {405, "method_not_allowed", "use GET, PUT or DELETE"},
    [API_ERR_BAD_LIMIT] = {400, "bad_request", "limit must be an integer from 1 to 1000"},
    [API_ERR_BAD_CAS] = {400, "bad_request", "cas must be an unsigned integer version"},
    [API_ERR_KEY_UTF8] = {400, "bad_request", "the key must be UTF-8 text"},
    [API_ERR_KEY_TOO_LARGE] = {413, "too_large", "the key is over 512 bytes"},
    [API_ERR_VALUE_TOO_LARGE] = {413, "too_large", "the value is over 256 KiB"},
    [API_ERR_PATH_TOO_LARGE] = {413, "too_large", "the request path is too long to redirect"},
    [API_ERR_TOO_LARGE] = {413, "too_large", "the request is over a size limit"},
    [API_ERR_CAS_FAILED] = {409, "cas_failed", "the key's version does not match cas"},
    [API_ERR_STORE_FULL] = {507, "store_full", "the store holds its maximum number of keys"},
    [API_ERR_NOT_LEADER] = {307, "not_leader", "this node is not the leader"},
    [API_ERR_NOT_READY] = {503, "not_ready", "the node is not ready"},
    [API_ERR_NO_LEADER] = {503, "no_leader", "no leader is known; retry shortly"},
    [API_ERR_LOST] = {503, "no_leader",
                      "leadership changed before the write committed; it was not applied"},
    [API_ERR_TIMEOUT] = {503, "timeout",
                         "no outcome within the request timeout; a write may or may not be "
                         "applied"},
    [API_ERR_BUSY] = {503, "busy", "too many requests in flight; retry shortly"},
    [API_ERR_SHUTTING_DOWN] = {503, "shutting_down", "the node is shutting down"},
    [API_ERR_OOM] = {500, "internal", "out of memory"},
    [API_ERR_APPLY] = {500, "internal", "the command did not decode on apply"},
    [API_ERR_INTERNAL] = {500, "internal", "internal error"},
    [API_ERR_BAD_REQUEST] = {400, "bad_request", "the request is malformed"},
    [API_ERR_BAD_NAME] = {400, "bad_request", "a name is 1-64 characters of [a-z0-9._-]"},
    [API_ERR_BAD_WAIT] = {400, "bad_request",
                          "wait must be a duration such as 30s or 500ms, at most 300s"},
    [API_ERR_BAD_INDEX] = {400, "bad_request", "index must be an unsigned integer"},
    [API_ERR_NO_MEMBER] = {404, "not_found", "no such member"},
    [API_ERR_NO_RESOURCE] = {404, "not_found", "no such resource"},
    [API_ERR_NO_COORDINATOR] = {404, "not_found", "no such coordinator"},
    [API_ERR_METHOD] = {405, "method_not_allowed", "method not allowed here"},
    [API_ERR_CONFLICT] = {409, "conflict", "the change conflicts with the cluster state"},
    [API_ERR_FULL] = {507, "full", "a cluster state limit would be passed"},
    [API_ERR_UNAUTHORIZED] = {401, "unauthorized",
                              "missing or wrong token: send Authorization: Bearer <cluster token>"},
    [API_ERR_TRANSFER_REFUSED] = {409, "transfer_refused",
                                  "leadership cannot be handed to that node now"},
};

/* The error body of e; message NULL takes the table's. */
static json_t *error_json(enum api_err e, const char *message, const char *leader_url)
{
    return corral_http_error_json(errors[e].code, message ? message : errors[e].message,
                                  leader_url);
}

/* Serializes body (stolen) compactly; NULL when there is none or no memory. */
static char *dump(json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

static void send_text(struct corral_http_request *req, unsigned status, const char *text,
                      const char *header, const char *value)
{
    corral_http_respond(req, status, "application/json", text ? text : "", text ? strlen(text) : 0,
                        header, value, NULL, NULL);
}

void api_json(struct corral_http_request *req, unsigned status, json_t *body)
{
    char *text = dump(body);
    if (text == NULL) { /* a body that did not build: its own small error usually does */
        status = errors[API_ERR_OOM].status;
        text = dump(error_json(API_ERR_OOM, NULL, NULL));
    }
    const char *ra = status == 503 ? "Retry-After" : NULL;
    send_text(req, status, text, ra, ra ? "1" : NULL);
    free(text);
}

const char *api_leader_url(const struct corral_node_info *info, char *buf, size_t cap)
{
    if (info->leader_http == NULL)
        return NULL;
    snprintf(buf, cap, "%s://%s", info->tls ? "https" : "http", info->leader_http);
    return buf;
}

void api_error_ex(struct corral_http_request *req, enum api_err e, const char *message,
                  const char *leader_url, json_t *extra)
{
    json_t *body = error_json(e, message, leader_url);
    if (body != NULL && extra != NULL)
        json_object_update(body, extra);
    json_decref(extra);
    api_json(req, errors[e].status, body);
}

void api_unauthorized(struct corral_http_request *req)
{
    char *text = dump(error_json(API_ERR_UNAUTHORIZED, NULL, NULL));
    send_text(req, errors[API_ERR_UNAUTHORIZED].status, text, "WWW-Authenticate", "Bearer");
    free(text);
}

void api_error(struct corral_http_request *req, enum api_err e)
{
    api_error_ex(req, e, NULL, NULL, NULL);
}

bool api_args_only(struct corral_http_request *req, const char *const *allowed)
{
    char msg[160];
    if (corral_http_args_only(req, allowed, msg, sizeof(msg)))
        return true;
    api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
    return false;
}

bool api_flag_arg(struct corral_http_request *req, const char *name, bool *on)
{
    const char *v = corral_http_arg(req, name);
    *on = v != NULL;
    if (v == NULL || v[0] == '\0' || strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        return true;
    char msg[120];
    snprintf(msg, sizeof(msg), "query parameter \"%s\" takes no value, 1 or true", name);
    api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
    return false;
}

void api_not_leader(struct corral_node *n, struct corral_http_request *req)
{
    struct corral_node_info info;
    corral_node_info(n, &info);
    if (info.leader_http == NULL) {
        api_error(req, API_ERR_NO_LEADER);
        return;
    }
    /* A leader not heard from for an election timeout may be frozen: a
     * client sent there would hang for its whole timeout (docs/api.md). */
    if (info.leader_stale) {
        api_error_ex(req, API_ERR_NO_LEADER,
                     "no contact with the leader for over an election timeout; retry shortly", NULL,
                     NULL);
        return;
    }
    char path[3 * 1024], query[2048], location[6 * 1024];
    if (corral_http_escape(corral_http_path(req), path, sizeof(path)) != 0 ||
        corral_http_query(req, query, sizeof(query)) != 0) {
        api_error(req, API_ERR_PATH_TOO_LARGE);
        return;
    }
    char base[300];
    api_leader_url(&info, base, sizeof(base));
    snprintf(location, sizeof(location), "%s%s%s%s", base, path, query[0] ? "?" : "", query);
    /* Out of memory the body is empty: Location alone still redirects. */
    char *text = dump(error_json(API_ERR_NOT_LEADER, NULL, base));
    send_text(req, errors[API_ERR_NOT_LEADER].status, text, "Location", location);
    free(text);
}

/* The answer to a node error code. */
static enum api_err node_err(int err)
{
    switch (err) {
    case CORRAL_ENOTLEADER:
        return API_ERR_NO_LEADER;
    case CORRAL_ELOST:
        return API_ERR_LOST;
    case CORRAL_ETIMEDOUT:
        return API_ERR_TIMEOUT;
    case CORRAL_EBUSY:
    case CORRAL_EFULL: /* the core's proposal queue: the same to a client */
        return API_ERR_BUSY;
    case CORRAL_ESHUTDOWN:
        return API_ERR_SHUTTING_DOWN;
    case CORRAL_ETOOBIG:
        return API_ERR_TOO_LARGE;
    default:
        return API_ERR_INTERNAL;
    }
}

void api_node_error(struct corral_http_request *req, int err)
{
    enum api_err e = node_err(err);
    /* Anything unexpected says which error it was. */
    api_error_ex(req, e, e == API_ERR_INTERNAL ? corral_strerror(err) : NULL, NULL, NULL);
}
