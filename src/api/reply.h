/* The answers every route shares: JSON bodies built with jansson, and
 * errors in the one shape of docs/api.md. Route files and the router
 * include this; it includes none of them. */
#ifndef CORRAL_API_REPLY_H
#define CORRAL_API_REPLY_H

#include <jansson.h>

#include "runtime/http.h"
#include "runtime/node.h"

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

#endif
