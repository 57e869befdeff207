/* JSON replies and error answers shared by every route. See reply.h. */
#include "api/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"

void api_json(struct corral_http_request *req, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        corral_http_respond(req, 500, "application/json", oom, sizeof(oom) - 1, NULL, NULL, NULL,
                            NULL);
        return;
    }
    size_t len = strlen(text);
    const char *ra = status == 503 ? "Retry-After" : NULL;
    corral_http_respond(req, status, "application/json", text, len, ra, ra ? "1" : NULL, NULL,
                        NULL);
    free(text);
}

void api_error(struct corral_http_request *req, unsigned status, const char *code,
               const char *message, const char *leader_http, json_t *extra)
{
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (err != NULL && leader_http != NULL) {
        char url[300];
        snprintf(url, sizeof(url), "http://%s", leader_http);
        json_object_set_new(err, "leader", json_string(url));
    }
    json_t *body = json_pack("{s:o*}", "error", err);
    if (body != NULL && extra != NULL)
        json_object_update(body, extra);
    json_decref(extra);
    api_json(req, status, body);
}

void api_not_leader(struct corral_node *n, struct corral_http_request *req)
{
    struct corral_node_info info;
    corral_node_info(n, &info);
    if (info.leader_http == NULL) {
        api_error(req, 503, "no_leader", "no leader is known; retry shortly", NULL, NULL);
        return;
    }
    char path[3 * 1024], query[2048], location[6 * 1024];
    if (corral_http_escape(corral_http_path(req), path, sizeof(path)) != 0 ||
        corral_http_query(req, query, sizeof(query)) != 0) {
        api_error(req, 413, "too_large", "the request path is too long to redirect", NULL, NULL);
        return;
    }
    snprintf(location, sizeof(location), "http://%s%s%s%s", info.leader_http, path,
             query[0] ? "?" : "", query);
    char base[300];
    snprintf(base, sizeof(base), "http://%s", info.leader_http);
    json_t *err = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "not_leader", "message",
                            "this node is not the leader", "leader", base);
    char *text = err ? json_dumps(err, JSON_COMPACT) : NULL;
    json_decref(err);
    const char *body = text ? text : "";
    corral_http_respond(req, 307, "application/json", body, strlen(body), "Location", location,
                        NULL, NULL);
    free(text);
}

void api_node_error(struct corral_node *n, struct corral_http_request *req, int err)
{
    switch (err) {
    case CORRAL_ENOTLEADER:
        api_error(req, 503, "no_leader", "no leader is known; retry shortly", NULL, NULL);
        break;
    case CORRAL_ELOST:
        api_error(req, 503, "no_leader",
                  "leadership changed before the write committed; it was not applied", NULL,
                  NULL);
        break;
    case CORRAL_ETIMEDOUT:
        api_error(req, 503, "timeout",
                  "no outcome within the request timeout; a write may or may not be applied",
                  NULL, NULL);
        break;
    case CORRAL_EBUSY:
    case CORRAL_EFULL:
        api_error(req, 503, "busy", "too many requests in flight; retry shortly", NULL, NULL);
        break;
    case CORRAL_ESHUTDOWN:
        api_error(req, 503, "shutting_down", "the node is shutting down", NULL, NULL);
        break;
    case CORRAL_ETOOBIG:
        api_error(req, 413, "too_large", "the request is over a size limit", NULL, NULL);
        break;
    default:
        api_error(req, 500, "internal", corral_strerror(err), NULL, NULL);
        break;
    }
    (void)n;
}
