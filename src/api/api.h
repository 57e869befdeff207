/* The HTTP routes: one file per resource family (health.c: /health and
 * /metrics and /v1/status; kv.c: /v1/kv), dispatched by router.c. Every
 * body is JSON built with jansson; every error has the one shape of
 * docs/api.md. */
#ifndef CORRAL_API_API_H
#define CORRAL_API_API_H

#include <jansson.h>

#include "runtime/http.h"
#include "runtime/node.h"

/* The router given to corral_node_run. */
void corral_api_route(struct corral_node *n, struct corral_http_request *req);

/* Answers with body (a reference is stolen) serialized compactly. */
void api_json(struct corral_http_request *req, unsigned status, json_t *body);
/* Answers {"error": {"code", "message"[, "leader"]}}; 503s carry
 * Retry-After: 1. extra (stolen, may be NULL) is merged into the top
 * level (e.g. the current version of a failed compare-and-swap). */
void api_error(struct corral_http_request *req, unsigned status, const char *code,
               const char *message, const char *leader_http, json_t *extra);
/* 503 no_leader, or 307 to the leader with the same path and query. */
void api_not_leader(struct corral_node *n, struct corral_http_request *req);
/* Maps a node error code to its answer (503 busy, timeout, ...). */
void api_node_error(struct corral_node *n, struct corral_http_request *req, int err);

void api_health(struct corral_node *n, struct corral_http_request *req);
void api_ready(struct corral_node *n, struct corral_http_request *req);
void api_status(struct corral_node *n, struct corral_http_request *req);
void api_metrics(struct corral_node *n, struct corral_http_request *req);
/* path is what follows "/v1/kv" ("" or "/..."). */
void api_kv(struct corral_node *n, struct corral_http_request *req, const char *path);

#endif
