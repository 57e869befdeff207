/* The answers every route shares: JSON bodies built with jansson, and
 * errors in the one shape of docs/api.md. Route files and the router
 * include this; it includes none of them. */
#ifndef CORRAL_API_REPLY_H
#define CORRAL_API_REPLY_H

#include <stdbool.h>

#include <jansson.h>

#include "runtime/http.h"
#include "runtime/node.h"

/* Every error the API answers. reply.c's table gives each its HTTP
 * status, code (docs/api.md lists them) and message. */
enum api_err {
    API_ERR_NO_ROUTE,
    API_ERR_NO_KEY,
    API_ERR_GET_ONLY,
    API_ERR_LIST_GET_ONLY,
    API_ERR_KEY_METHOD,
    API_ERR_BAD_LIMIT,
    API_ERR_BAD_CAS,
    API_ERR_KEY_UTF8,
    API_ERR_KEY_TOO_LARGE,
    API_ERR_VALUE_TOO_LARGE,
    API_ERR_PATH_TOO_LARGE,
    API_ERR_TOO_LARGE,
    API_ERR_CAS_FAILED,
    API_ERR_STORE_FULL,
    API_ERR_NOT_LEADER,
    API_ERR_NOT_READY,
    API_ERR_NO_LEADER,
    API_ERR_LOST,
    API_ERR_TIMEOUT,
    API_ERR_BUSY,
    API_ERR_SHUTTING_DOWN,
    API_ERR_OOM,
    API_ERR_APPLY,
    API_ERR_INTERNAL,
    API_ERR_BAD_REQUEST, /* 400 with the caller's message */
    API_ERR_BAD_NAME,
    API_ERR_BAD_WAIT,
    API_ERR_BAD_INDEX,
    API_ERR_NO_MEMBER,
    API_ERR_NO_RESOURCE,
    API_ERR_NO_COORDINATOR,
    API_ERR_METHOD, /* 405 with the caller's message */
    API_ERR_CONFLICT,
    API_ERR_FULL,
    API_ERR_UNAUTHORIZED,     /* 401; answer with api_unauthorized */
    API_ERR_TRANSFER_REFUSED, /* 409 with the caller's message and "reason" */
    API_ERR_COUNT
};

/* Answers with body (a reference is stolen) serialized compactly; 503s
 * carry Retry-After: 1. */
void api_json(struct corral_http_request *req, unsigned status, json_t *body);
/* Answers e: {"error": {"code", "message"}} with the table's status. */
void api_error(struct corral_http_request *req, enum api_err e);
/* api_error with more: message replaces the table's (NULL keeps it),
 * leader_url adds "leader", and extra's members (stolen, may be NULL)
 * are merged into the top level (e.g. the current version of a failed
 * compare-and-swap). */
void api_error_ex(struct corral_http_request *req, enum api_err e, const char *message,
                  const char *leader_url, json_t *extra);
/* "http://L" or "https://L" (the node serves TLS) for the leader's HTTP
 * address L in buf, or NULL when info names none. */
const char *api_leader_url(const struct corral_node_info *info, char *buf, size_t cap);
/* For mutating requests: every query argument is one of allowed
 * (NULL-terminated; { NULL } for none) and none is repeated; else false,
 * answered 400 bad_request naming it. */
bool api_args_only(struct corral_http_request *req, const char *const *allowed);
/* A flag argument: absent (false), or "", "1" or "true" (true); any other
 * value is false, answered 400 bad_request naming the flag. */
bool api_flag_arg(struct corral_http_request *req, const char *name, bool *on);
/* 503 no_leader, or 307 to the leader with the same path and query. */
void api_not_leader(struct corral_node *n, struct corral_http_request *req);
/* 401 unauthorized with WWW-Authenticate: Bearer. */
void api_unauthorized(struct corral_http_request *req);
/* Answers a node error code (CORRAL_ETIMEDOUT, CORRAL_EBUSY, ...). */
void api_node_error(struct corral_http_request *req, int err);

#endif
