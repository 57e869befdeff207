/* The route handlers, one file per resource family (health.c: /health
 * and /v1/status; metrics.c: /metrics; kv.c: /v1/kv; leader.c:
 * /v1/leader/transfer), dispatched by router.c. */
#ifndef CORRAL_API_ROUTES_H
#define CORRAL_API_ROUTES_H

#include "runtime/http.h"
#include "runtime/node.h"

void api_health(struct corral_node *n, struct corral_http_request *req);
void api_ready(struct corral_node *n, struct corral_http_request *req);
void api_status(struct corral_node *n, struct corral_http_request *req);
void api_metrics(struct corral_node *n, struct corral_http_request *req);
/* path is what follows "/v1/kv" ("" or "/..."). */
void api_kv(struct corral_node *n, struct corral_http_request *req, const char *path);
/* POST /v1/leader/transfer (leader.c). */
void api_leader_transfer(struct corral_node *n, struct corral_http_request *req);

#endif
