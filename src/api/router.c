/* Dispatch by path to the route handlers. */
#include <string.h>
#include <strings.h>

#include "api/api.h"

#include <stdlib.h>

#include "api/own.h"
#include "api/reply.h"
#include "api/routes.h"
#include "corral.h"

static bool is_get(struct corral_http_request *req)
{
    return strcmp(corral_http_method(req), "GET") == 0 ||
           strcmp(corral_http_method(req), "HEAD") == 0;
}

/* The rule of issue 13, by method and never by route, so a new route is
 * covered: with a cluster token every request but a GET or HEAD needs
 * "Authorization: Bearer <token>"; with auth_reads GETs too, except the
 * load balancers' /health and /health/ready. Answers 401 and returns
 * false when the request lacks it. */
static bool authorized(struct corral_node *n, struct corral_http_request *req, const char *path)
{
    const struct corral_node_config *c = corral_node_config(n);
    if (c->tokens.n == 0)
        return true;
    if (is_get(req)) {
        if (strcmp(path, "/health") == 0 || strcmp(path, "/health/ready") == 0)
            return true;
        if (!c->auth_reads)
            return true;
    }
    const char *h = corral_http_header(req, "Authorization");
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *tok = h + 7;
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len > 0 && tok[len - 1] == ' ')
            len--;
        if (corral_tokens_match(&c->tokens, tok, len))
            return true;
    }
    api_unauthorized(req);
    return false;
}

void corral_api_route(struct corral_node *n, struct corral_http_request *req)
{
    const char *path = corral_http_path(req);
    if (!authorized(n, req, path))
        return;
    if (strncmp(path, "/v1/kv", 6) == 0 && (path[6] == '\0' || path[6] == '/')) {
        api_kv(n, req, path + 6);
        return;
    }
    if (strncmp(path, "/v1/members", 11) == 0 && (path[11] == '\0' || path[11] == '/')) {
        api_members(n, req, path + 11);
        return;
    }
    if (strncmp(path, "/v1/resources", 13) == 0 && (path[13] == '\0' || path[13] == '/')) {
        api_resources(n, req, path + 13);
        return;
    }
    if (strncmp(path, "/v1/coordinators", 16) == 0 && (path[16] == '\0' || path[16] == '/')) {
        api_coordinators(n, req, path + 16);
        return;
    }
    if (strcmp(path, "/v1/events") == 0) {
        api_events(n, req);
        return;
    }
    if (strcmp(path, "/v1/leader/transfer") == 0) {
        api_leader_transfer(n, req);
        return;
    }
    static const struct {
        const char *path;
        void (*fn)(struct corral_node *, struct corral_http_request *);
    } routes[] = {
        {"/health", api_health},
        {"/health/ready", api_ready},
        {"/v1/status", api_status},
        {"/metrics", api_metrics},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        if (!is_get(req))
            api_error(req, API_ERR_GET_ONLY);
        else
            routes[i].fn(n, req);
        return;
    }
    api_error(req, API_ERR_NO_ROUTE);
}

int corral_api_hooks(struct corral_node_hooks *hooks)
{
    struct api_ctx *x = calloc(1, sizeof(*x));
    if (x == NULL || (x->loads = json_object()) == NULL) {
        free(x);
        return CORRAL_ENOMEM;
    }
    *hooks = (struct corral_node_hooks){.route = corral_api_route,
                                        .applied = api_events_applied,
                                        .batch_done = api_own_batch_done,
                                        .sweep = api_own_sweep,
                                        .stopping = api_own_stopping,
                                        .ud = x};
    return 0;
}

void corral_api_hooks_free(struct corral_node_hooks *hooks)
{
    struct api_ctx *x = hooks->ud;
    if (x == NULL)
        return;
    json_decref(x->loads);
    free(x->events);
    free(x);
    hooks->ud = NULL;
}
