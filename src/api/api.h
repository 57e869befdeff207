/* The HTTP API as the rest of the program sees it: one router for
 * corral_node_run. The routes and their shared replies are internal to
 * src/api (routes.h, reply.h). */
#ifndef CORRAL_API_API_H
#define CORRAL_API_API_H

#include "runtime/http.h"
#include "runtime/node.h"

/* The router given to corral_node_run. */
void corral_api_route(struct corral_node *n, struct corral_http_request *req);

#endif
