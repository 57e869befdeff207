/* An HTTP/1.1 server: libmicrohttpd driven from the libuv loop, on the
 * loop thread. MHD runs in its epoll mode without threads of its own; its
 * epoll descriptor is watched by a uv_poll and its timeouts by a uv_timer.
 *
 * A request reaches the handler once, complete (headers and body). The
 * handler answers with corral_http_respond, either before returning or
 * later (a write waiting for its Raft commit): a request not answered
 * when the handler returns is suspended in MHD, and resumed when the
 * answer comes. Every request must be answered exactly once: the owner
 * answers any still waiting before it calls corral_http_stop (the node,
 * stopping, fails them with CORRAL_ESHUTDOWN).
 *
 * Limits enforced here, each answered in the error shape of
 * corral_http_error_json: body size (413, checked against Content-Length
 * before reading), open connections (503 busy past max_connections, but
 * /health and /health/ready are still answered; past max_connections +
 * CORRAL_HTTP_CAP_EXTRA a new connection is closed as soon as it is
 * accepted), idle connections (closed after idle_timeout_s). A request
 * whose framing is ambiguous (two different Content-Length headers, both
 * Content-Length and Transfer-Encoding, a Transfer-Encoding other than
 * "chunked") is answered 400 bad_request and its connection closed. A
 * request target over CORRAL_HTTP_TARGET_BYTES_MAX is answered 414, header
 * lines over CORRAL_HTTP_HEADER_BYTES_MAX 431, both too_large with the
 * connection closed.
 *
 * Errors libmicrohttpd detects while parsing (a request line and headers
 * over its memory pool, which holds both limits above: 414, 431; a
 * malformed header line, Content-Length or chunk: 400; an HTTP version
 * other than 1.0/1.1: 505) it answers itself, before any callback of
 * ours, with its own fixed HTML body: 0.9.75 has no way to replace it
 * (docs/api.md lists them). */
#ifndef CORRAL_RUNTIME_HTTP_H
#define CORRAL_RUNTIME_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

/* Connections past max_connections still accepted (and answered 503
 * busy, or a health check) before new ones are closed at once. */
#define CORRAL_HTTP_CAP_EXTRA 64u

/* The raw request target (path and query) and the header lines (each
 * name, value, ": " and CRLF) past which a request is refused in our
 * error shape: the sizes common servers take (nginx and Apache an 8 KiB
 * request line, Node.js 16 KiB of headers). */
#define CORRAL_HTTP_TARGET_BYTES_MAX (8u << 10)
#define CORRAL_HTTP_HEADER_BYTES_MAX (16u << 10)

struct corral_http_limits {
    size_t max_body_bytes;    /* default 256 KiB + 1 KiB */
    uint32_t max_connections; /* default 1024 */
    uint32_t idle_timeout_s;  /* default 60 */
};
void corral_http_limits_default(struct corral_http_limits *l);

/* TLS for the server (MHD_USE_TLS): the PEM texts themselves, not file
 * names. cert_pem NULL: plain HTTP. ca_pem set: every client must present
 * a certificate that this CA signed; each connection's certificate is
 * checked (gnutls_certificate_verify_peers2) before its first request is
 * handled, and a client without one, or with one that does not verify, is
 * answered 401 unauthenticated (every path, /health included) and its
 * connection closed. */
struct corral_http_tls {
    const char *cert_pem; /* the server's certificate (chain), PEM */
    const char *key_pem;  /* its private key, PEM, unencrypted */
    const char *ca_pem;   /* NULL: client certificates are not asked for */
};

/* Whether t's PEM texts load (the key matches the certificate, the CA
 * holds at least one certificate): 0, or CORRAL_EINVAL with why in err.
 * For checking a configuration before anything starts. */
int corral_http_tls_check(const struct corral_http_tls *t, char *err, size_t errlen);

struct corral_http_request; /* opaque, owned by the server */

/* The handler: once per complete request. */
typedef void (*corral_http_handler)(void *ud, struct corral_http_request *req);

struct corral_http;

/* Listens on host:port (numeric IPv4 or IPv6), over TLS when tls is not
 * NULL and tls->cert_pem is set. CORRAL_EIO with a message in err when the
 * address cannot be bound (or TLS cannot be set up). */
int corral_http_start(uv_loop_t *loop, const char *host, uint16_t port,
                      const struct corral_http_limits *limits, const struct corral_http_tls *tls,
                      corral_http_handler handler, void *ud, struct corral_http **out, char *err,
                      size_t errlen);

/* Stops listening and closes every connection. Every request must have
 * been answered. Frees h. */
void corral_http_stop(struct corral_http *h);

/* Sends the answers given since libmicrohttpd last ran, now rather than
 * at the loop's next turn (the node calls it after each driver run, so
 * the answers leave before the next batch's fsync). */
void corral_http_flush(struct corral_http *h);

/* Request accessors; strings are valid until the request is answered.
 * The path and query strings hold no NUL byte, so strlen is their length:
 * a request whose path or query has one (raw, or decoded from %00) is
 * answered 400 bad_request here and never reaches the handler. */
const char *corral_http_method(const struct corral_http_request *req);
const char *corral_http_path(const struct corral_http_request *req); /* percent-decoded */
/* The raw path held "%2F": a '/' in the decoded path may be one the client
 * escaped (a name with a slash, not a path separator). */
bool corral_http_path_encoded_slash(const struct corral_http_request *req);
/* A query argument (percent-decoded), or NULL when absent. A present
 * argument without a value ("?stale") gives "". */
const char *corral_http_arg(const struct corral_http_request *req, const char *name);
/* Every query argument is one of allowed (NULL-terminated) and none is
 * given twice; else false, with the offending name (printable ASCII, '?'
 * for other bytes, cut at 64) and why in msg. */
bool corral_http_args_only(const struct corral_http_request *req, const char *const *allowed,
                           char *msg, size_t cap);
/* The query string re-encoded ("a=1&b=2", "" when none), for redirects. */
int corral_http_query(const struct corral_http_request *req, char *buf, size_t cap);
/* Percent-encodes in for a URL path (keeps unreserved bytes and '/').
 * CORRAL_ETOOBIG when it does not fit in cap bytes. */
int corral_http_escape(const char *in, char *out, size_t cap);
/* A request header (case-insensitive name), or NULL when absent. */
const char *corral_http_header(const struct corral_http_request *req, const char *name);
const uint8_t *corral_http_body(const struct corral_http_request *req, size_t *len);
/* true when the body exceeded max_body_bytes (the body is then empty). */
int corral_http_body_too_large(const struct corral_http_request *req);

/* Answers req: status, content type, body (copied), and up to two extra
 * headers (name/value pairs, NULL when unused). The request must not be
 * used after this call. */
void corral_http_respond(struct corral_http_request *req, unsigned status, const char *ctype,
                         const char *body, size_t len, const char *h1, const char *v1,
                         const char *h2, const char *v2);

/* The one shape of every error body, for the errors this server answers
 * itself and for the API's (src/api builds on it):
 * {"error":{"code":C,"message":M}}, with "leader":U inside the error when
 * leader_url (U, "http://host:port" or "https://host:port") is not NULL.
 * The caller may add top-level members. NULL when out of memory. */
json_t *corral_http_error_json(const char *code, const char *message, const char *leader_url);

/* Counters for /metrics: responses by status code. */
struct corral_http_stats {
    uint64_t open_connections;
    uint64_t responses_by_class[6]; /* [2] = 2xx ... [5] = 5xx */
    uint32_t n_codes;
    struct {
        unsigned code;
        uint64_t count;
    } codes[32];
};
void corral_http_stats(const struct corral_http *h, struct corral_http_stats *s);

#endif
