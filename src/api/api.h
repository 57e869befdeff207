/* The HTTP API as the rest of the program sees it: one router for
 * corral_node_run. The routes and their shared replies are internal to
 * src/api (routes.h, reply.h). */
#ifndef CORRAL_API_API_H
#define CORRAL_API_API_H

#include "runtime/http.h"
#include "runtime/node.h"

/* The router given to corral_node_run. */
void corral_api_route(struct corral_node *n, struct corral_http_request *req);

/* Fills the hooks for corral_node_run: the router, and the blocking
 * queries and the events log of the members, resources and events
 * routes, with a context of their own. 0 or CORRAL_ENOMEM. */
int corral_api_hooks(struct corral_node_hooks *hooks);
/* Frees the context of corral_api_hooks (after corral_node_run). */
void corral_api_hooks_free(struct corral_node_hooks *hooks);

#endif
