/* Dispatch by path to the route handlers. */
#include <string.h>

#include "api/api.h"
#include "api/reply.h"
#include "api/routes.h"

static bool is_get(struct corral_http_request *req)
{
    return strcmp(corral_http_method(req), "GET") == 0 ||
           strcmp(corral_http_method(req), "HEAD") == 0;
}

void corral_api_route(struct corral_node *n, struct corral_http_request *req)
{
    const char *path = corral_http_path(req);
    if (strncmp(path, "/v1/kv", 6) == 0 && (path[6] == '\0' || path[6] == '/')) {
        api_kv(n, req, path + 6);
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
