/* A small HTTP client for the corral API (docs/api.md), on libcurl: one
 * request at a time against a list of endpoints, with manual following of
 * 307 not_leader redirects (the body is sent again to the leader), and
 * retries until the request's deadline (timeout_ms) when the request was
 * surely not served: a connection that could not be made (to an endpoint
 * or where a 307 pointed) moves on to the next endpoint, a 503 no_leader
 * or busy waits (Retry-After, capped) and tries the next one. A write
 * whose answer was lost after it was sent is never repeated: its outcome
 * is unknown. Where a redirect led is remembered and asked first next
 * time, so that a client making many writes (`corral agent`'s heartbeats)
 * goes to the leader directly rather than through a follower each time.
 *
 * Not thread-safe: one client per thread. Used by the corral command. */
#ifndef CORRAL_CLI_CLIENT_H
#define CORRAL_CLI_CLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/token.h"

/* Endpoints in one --endpoints list; more is surely a mistake. */
#define CORRAL_CLIENT_ENDPOINTS_MAX 64
/* 307 hops per request. One is normal; leadership may move once while a
 * request is in flight; more means a redirect loop. */
#define CORRAL_CLIENT_REDIRECTS_MAX 3
/* A response body: a list page of 1000 values of 256 KiB, JSON-escaped,
 * fits under this. */
#define CORRAL_CLIENT_BODY_BYTES_MAX (512u << 20)
/* A URL we build (endpoint + path + query); keys are at most 512 bytes,
 * three times that once percent-encoded. */
#define CORRAL_CLIENT_URL_BYTES_MAX 8192
/* Connecting to one endpoint gives up after this (or what is left of the
 * request's deadline, when shorter), so that a dead host does not hold up
 * failover. */
#define CORRAL_CLIENT_CONNECT_TIMEOUT_MS 2000L
/* Waits between tries of a request that was not served: from the first,
 * doubling to the second. A Retry-After is honoured up to the second. */
#define CORRAL_CLIENT_BACKOFF_MIN_MS 50L
#define CORRAL_CLIENT_BACKOFF_MAX_MS 1000L
/* "scheme://host:port" of a remembered leader; a longer one is not kept. */
#define CORRAL_CLIENT_BASE_BYTES_MAX 1100

struct corral_curl;

/* TLS for https:// endpoints: the CA file the server's certificate is
 * verified against (NULL: the system's store), and a client certificate
 * and key (PEM files) for a server that asks for one (NULL: none).
 * https_default: an endpoint given without a scheme is https://, not
 * http:// (a coordinator of a TLS cluster calling the others). */
struct corral_client_tls {
    const char *cacert;
    const char *cert;
    const char *key;
    bool https_default;
};

struct corral_client {
    char *endpoints[CORRAL_CLIENT_ENDPOINTS_MAX]; /* "http://host:port", no trailing '/' */
    size_t n_endpoints;
    size_t current; /* the endpoint that answered last; tried first */
    /* The base URL ("http://h:p") the last followed 307 led to and that
     * answered there: tried before the endpoints while it answers; "" when
     * none. */
    char leader[CORRAL_CLIENT_BASE_BYTES_MAX];
    /* A request's deadline: every try, redirect and wait of one
     * corral_client_request fits in it. */
    long timeout_ms;
    long long deadline_ms;        /* of the request in progress (monotonic ms) */
    void *curl;                   /* CURL *, reused across requests (keeps connections) */
    const struct corral_curl *cu; /* libcurl, loaded on first use (curl_load.h) */
    /* When set by the caller, a request gives up (CORRAL_ESHUTDOWN) once
     * *cancel is nonzero: a signal handler sets it to end a blocking query.
     * libcurl looks at it about once a second while it waits. */
    volatile sig_atomic_t *cancel;
    struct corral_client_tls tls; /* from corral_client_set_tls; the caller may change it */
    char err[512];                /* why the last request failed, when it returned nonzero */
    /* "Authorization: Bearer <token>", sent on every request and every
     * redirect hop; "" when no token file was given. */
    char auth_header[CORRAL_TOKEN_MAX + 32];
};

/* One HTTP answer. Owned by the caller once filled; free with
 * corral_client_response_free. */
struct corral_client_response {
    long status; /* HTTP status of the last hop */
    char *body;  /* NUL-terminated (the body may hold NULs: use body_len) */
    size_t body_len;
    json_t *json;        /* the parsed body, NULL when it is not JSON */
    const char *code;    /* error.code of an error body, else NULL; points into json */
    const char *message; /* error.message, else NULL; points into json */
    long retry_after_s;  /* the Retry-After header, -1 when absent */
    int tries;           /* how many times the request was sent */
    char url[CORRAL_CLIENT_URL_BYTES_MAX]; /* the URL that answered */
};

/* Parses a comma-separated endpoint list ("http://h:p" or "h:p") into c,
 * and sets up libcurl. Returns 0, or CORRAL_EINVAL (bad list) or
 * CORRAL_ENOMEM, with a message in c->err. On error c needs no close. */
int corral_client_init(struct corral_client *c, const char *endpoints, long timeout_ms);
void corral_client_close(struct corral_client *c);
/* Reads the cluster token from path (util/token.h; its first line) and
 * sends it as a bearer token from now on. Returns 0, or CORRAL_EINVAL
 * with a message in c->err. */
int corral_client_set_token_file(struct corral_client *c, const char *path);
/* The token file a command uses: flag when given, else
 * $CORRAL_TOKEN_FILE when set and not empty, else NULL (none). */
const char *corral_client_token_file(const char *flag);

/* The TLS files every client initialized after this call uses (the
 * strings are not copied: they must outlive those clients). Process-wide,
 * so that the clients of `corral agent`'s threads share them; call it
 * before any thread starts. */
void corral_client_set_tls(const struct corral_client_tls *tls);

/* Sends method (GET, PUT, POST, DELETE) to path (starting with '/', already
 * escaped) with query (escaped, without '?', may be NULL) and body (may be
 * NULL), trying the remembered leader and then each endpoint in turn, and
 * following up to CORRAL_CLIENT_REDIRECTS_MAX 307s per try. Until
 * c->timeout_ms has passed since the call, it tries again (the next
 * endpoint; after each round of failed connections, or a 503, a wait
 * from CORRAL_CLIENT_BACKOFF_MIN_MS doubling to _MAX_MS, or the
 * Retry-After capped at _MAX_MS) when:
 *   - no connection could be made (to an endpoint or to a 307's target);
 *   - the answer is 503 no_leader or busy (the request was not served);
 *   - a GET only: the answer is 503 shutting_down or timeout, or the
 *     exchange broke after it was sent.
 * A 503 whose Retry-After reaches past the deadline is returned at once.
 * Returns 0 when some server answered (any status, in *resp, the last
 * answer when retries ran out), or CORRAL_EIO (no endpoint answered by the
 * deadline, or a write's exchange broke after it was sent: c->err then
 * says its outcome is unknown), CORRAL_ENOMEM, or CORRAL_ESHUTDOWN
 * (c->cancel was set), with a message in c->err and *resp empty. */
int corral_client_request(struct corral_client *c, const char *method, const char *path,
                          const char *query, const char *body, size_t body_len,
                          struct corral_client_response *resp);
/* The same with a JSON body (NULL: none), sent compact as
 * application/json; CORRAL_ENOMEM when it cannot be encoded. */
int corral_client_request_json(struct corral_client *c, const char *method, const char *path,
                               const char *query, const json_t *body,
                               struct corral_client_response *resp);
void corral_client_response_free(struct corral_client_response *resp);

/* The node that answered last could not serve the request (503 no_leader,
 * say): forgets the remembered leader and makes the next endpoint the
 * first one tried. */
void corral_client_next_endpoint(struct corral_client *c);

/* Percent-encodes s (len bytes) for a URL: every byte except unreserved
 * characters, and '/' when keep_slash. Returns a malloc'd string, or NULL
 * when out of memory or the result would exceed out_max bytes. */
char *corral_client_escape(const char *s, size_t len, int keep_slash, size_t out_max);

#endif
