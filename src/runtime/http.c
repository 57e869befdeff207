/* libmicrohttpd inside the libuv loop. See http.h. */
#include "runtime/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "corral.h"
#include "runtime/trace.h"
#include "util/mem.h"

/* libmicrohttpd's memory pool of a connection holds the request line and
 * header lines as read, its index of the headers, and then our answer's
 * status line and headers (the body is read into what is left). A
 * request that does not fit gets MHD's own HTML 414 or 431, so the pool
 * holds one just over both of our limits with room to spare. Measured
 * with 0.9.75: 8 KiB + 1 of target with 16 KiB + 1 of headers in 100
 * lines reach request_new, in 136 lines they do not (MHD indexes each
 * header in the pool too, about 56 bytes); 16 KiB + 1 of headers alone
 * reach it in 200 lines, and any 8 KiB + 1 target alone. MHD zeroes
 * the whole pool for every request (MHD_pool_reset), and above 32 KiB
 * maps it per connection: 32 KiB, its default, and no more. (A 16 KiB
 * pool, before these limits, halved that zeroing, measured then at about
 * 5% of a leader's CPU under load; an idle connection now holds 16 KiB
 * more once it has served a request.) */
#define HTTP_POOL_BYTES (32u << 10)
_Static_assert(HTTP_POOL_BYTES >=
                   CORRAL_HTTP_TARGET_BYTES_MAX + CORRAL_HTTP_HEADER_BYTES_MAX + (4u << 10),
               "the pool holds a request at both limits, its index and the answer");
_Static_assert(CORRAL_HTTP_TARGET_BYTES_MAX == 8192 && CORRAL_HTTP_HEADER_BYTES_MAX == 16384,
               "the 414 and 431 messages name them");

struct corral_http {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int closing;
    struct corral_http_limits limits;
    corral_http_handler handler;
    void *ud;
    uint64_t open_connections;
    struct corral_http_stats stats;
    bool tls;
    bool verify_clients; /* TLS with a CA: every connection's certificate is checked */
    uint64_t requests;   /* requests seen: the last one's sequence number (trace.h) */
    bool resumed;        /* a connection was resumed since MHD last ran */
};

struct corral_http_request {
    struct corral_http *http;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    bool encoded_slash;
    uint8_t *body;
    size_t body_len, body_cap;
    bool too_large;
    bool dispatched;
    bool suspended;
    struct MHD_Response *response; /* set by respond, queued by the access handler */
    unsigned status;
    uint64_t seq; /* trace.h */
};

/* Per connection (MHD's socket context): whether the request being parsed
 * decoded a NUL byte anywhere in its path or query. MHD hands the path and
 * query values on as C strings, so a "%00" would silently cut them short
 * ("/v1/kv/acct%00x" read as "/v1/kv/acct"), and so would a raw NUL byte
 * in the request line, which MHD takes too; such a request is refused. */
struct http_conn {
    bool nul;
    bool encoded_slash;  /* the raw path (before '?') holds %2F */
    size_t uri_bytes;    /* the raw request target's length */
    const char *uri_end; /* one past the raw URI's first NUL byte */
    int client_cert;     /* verify_clients: 0 not checked yet, 1 verified, -1 refused */
    char cert_why[160];  /* why it was refused */
};

static struct http_conn *conn_state(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

/* Open connections past which new ones are closed at once; between
 * max_connections and this they are answered 503 busy (health excepted). */
static uint64_t hard_cap(const struct corral_http_limits *l)
{
    return (uint64_t)l->max_connections + CORRAL_HTTP_CAP_EXTRA;
}

void corral_http_limits_default(struct corral_http_limits *l)
{
    l->max_body_bytes = (256u << 10) + 1024;
    l->max_connections = 1024;
    l->idle_timeout_s = 60;
}

static void count_status(struct corral_http *h, unsigned status)
{
    if (status / 100 < 6)
        h->stats.responses_by_class[status / 100]++;
    for (uint32_t i = 0; i < h->stats.n_codes; i++) {
        if (h->stats.codes[i].code == status) {
            h->stats.codes[i].count++;
            return;
        }
    }
    if (h->stats.n_codes < 32) {
        h->stats.codes[h->stats.n_codes].code = status;
        h->stats.codes[h->stats.n_codes].count = 1;
        h->stats.n_codes++;
    }
}

static void on_timer(uv_timer_t *t);

void corral_http_respond(struct corral_http_request *req, unsigned status, const char *ctype,
                         const char *body, size_t len, const char *h1, const char *v1,
                         const char *h2, const char *v2)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (resp != NULL) {
        if (ctype != NULL)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        if (h1 != NULL)
            MHD_add_response_header(resp, h1, v1);
        if (h2 != NULL)
            MHD_add_response_header(resp, h2, v2);
    }
    req->response = resp; /* NULL: the access handler fails the connection */
    req->status = status;
    count_status(req->http, status);
    CORRAL_TRACE(CORRAL_TRACE_HTTP_QUEUED, req->seq, status);
    if (req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
        /* MHD picks resumed connections up in its next run; an external
         * loop must ask for that run itself (corral_http_flush does it
         * sooner). */
        req->http->resumed = true;
        if (!req->http->closing)
            uv_timer_start(&req->http->timer, on_timer, 0, 0);
    }
}

static void respond_error(struct corral_http_request *req, unsigned status, const char *code,
                          const char *message, bool close)
{
    json_t *err = corral_http_error_json(code, message, NULL);
    char *body = err ? json_dumps(err, JSON_COMPACT) : NULL;
    json_decref(err);
    /* Out of memory the body is empty; the status and headers still say it. */
    corral_http_respond(req, status, "application/json", body ? body : "", body ? strlen(body) : 0,
                        close ? MHD_HTTP_HEADER_CONNECTION : NULL, close ? "close" : NULL,
                        status == 503 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL,
                        status == 503 ? "1" : NULL);
    free(body);
}

/* Request framing: at most one Content-Length (repeats with the same
 * value are one), at most one Transfer-Encoding and only "chunked", and
 * never both. MHD 0.9.75 picks one framing silently (the first
 * Content-Length, or chunked over Content-Length): a proxy in front that
 * picked the other would see a second, smuggled request in the body.
 * The same pass adds up the header lines' bytes. */
struct framing {
    unsigned n_cl, n_te;
    bool cl_differ, te_other;
    const char *cl;
    size_t header_bytes;
};

static enum MHD_Result framing_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct framing *f = cls;
    if (key == NULL)
        return MHD_YES;
    value = value != NULL ? value : "";
    f->header_bytes += strlen(key) + 2 + strlen(value) + 2; /* "key: value\r\n" */
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->n_cl++ > 0 && strcmp(f->cl, value) != 0)
            f->cl_differ = true;
        if (f->cl == NULL)
            f->cl = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->n_te++;
        if (strcasecmp(value, "chunked") != 0)
            f->te_other = true;
    }
    return MHD_YES;
}

/* The message of a framing refusal, NULL when the framing is sound;
 * *too_large when the header lines are over CORRAL_HTTP_HEADER_BYTES_MAX
 * (then NULL: that is answered first). */
static const char *framing_error(struct MHD_Connection *conn, bool *too_large)
{
    struct framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, framing_iter, &f);
    *too_large = f.header_bytes > CORRAL_HTTP_HEADER_BYTES_MAX;
    if (*too_large)
        return NULL;
    if (f.cl_differ)
        return "two different Content-Length headers";
    if (f.n_cl > 0 && f.n_te > 0)
        return "both Content-Length and Transfer-Encoding";
    if (f.n_te > 1 || f.te_other)
        return "Transfer-Encoding other than a single \"chunked\"";
    return NULL;
}

/* The connection's client certificate against the CA (verify_clients):
 * checked once per connection, the verdict kept. Returns true when it
 * verified; else why in c->cert_why. */
static bool client_verified(struct MHD_Connection *conn, struct http_conn *c)
{
    if (c->client_cert != 0)
        return c->client_cert > 0;
    c->client_cert = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t session = ci != NULL ? (gnutls_session_t)ci->tls_session : NULL;
    if (session == NULL) {
        snprintf(c->cert_why, sizeof(c->cert_why), "no TLS session");
        return false;
    }
    unsigned n_certs = 0;
    if (gnutls_certificate_get_peers(session, &n_certs) == NULL || n_certs == 0) {
        snprintf(c->cert_why, sizeof(c->cert_why),
                 "a client certificate is required (signed by the server's --tls-ca)");
        return false;
    }
    unsigned status = 0;
    int rv = gnutls_certificate_verify_peers2(session, &status);
    if (rv < 0) {
        snprintf(c->cert_why, sizeof(c->cert_why), "the client certificate did not verify: %s",
                 gnutls_strerror(rv));
        return false;
    }
    if (status != 0) {
        gnutls_datum_t out = {0};
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
            snprintf(c->cert_why, sizeof(c->cert_why), "the client certificate did not verify: %s",
                     (const char *)out.data);
            gnutls_free(out.data);
        } else {
            snprintf(c->cert_why, sizeof(c->cert_why), "the client certificate did not verify");
        }
        return false;
    }
    c->client_cert = 1;
    return true;
}

/* Answered whatever the connection count: a load balancer's probe must
 * not read a full server as a dead one. */
static bool is_health(const char *path)
{
    return strcmp(path, "/health") == 0 || strcmp(path, "/health/ready") == 0;
}

/* The first call of a request: headers only. Limits are checked here so a
 * too-large body is refused before it is read. */
static struct corral_http_request *request_new(struct corral_http *h, struct MHD_Connection *conn,
                                               const char *url, const char *method,
                                               const char *version)
{
    struct corral_http_request *req = corral_calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->http = h;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->seq = ++h->requests;
    CORRAL_TRACE(CORRAL_TRACE_HTTP_PARSE, req->seq, 0);
    /* MHD has decoded the path and every query argument by now (the
     * unescape callback below saw each). */
    struct http_conn *c = conn_state(conn);
    if (c == NULL) { /* its state did not allocate: a NUL would go unseen */
        respond_error(req, 500, "internal", "out of memory", true);
        return req;
    }
    /* MHD splits the request line in place: the raw URI ends with the
     * NUL that replaced the space before the version. An earlier NUL is
     * one the client sent (should MHD ever lay the line out otherwise,
     * this refuses every request rather than letting a NUL through).
     * Checked first: "/health%00x" must not pass as "/health" below. */
    req->encoded_slash = c->encoded_slash;
    if (c->nul || version != c->uri_end) {
        respond_error(req, 400, "bad_request", "the path or query holds a NUL byte (%00)", true);
        return req;
    }
    if (h->verify_clients && !client_verified(conn, c)) {
        respond_error(req, 401, "unauthenticated", c->cert_why, true);
        return req;
    }
    if (c->uri_bytes > CORRAL_HTTP_TARGET_BYTES_MAX) {
        respond_error(req, 414, "too_large", "the request target (path and query) is over 8 KiB",
                      true);
        return req;
    }
    bool headers_too_large = false;
    const char *bad_framing = framing_error(conn, &headers_too_large);
    if (headers_too_large) {
        respond_error(req, 431, "too_large", "the request headers are over 16 KiB in all", true);
        return req;
    }
    if (bad_framing != NULL) {
        respond_error(req, 400, "bad_request", bad_framing, true);
        return req;
    }
    if (h->open_connections > h->limits.max_connections && !is_health(url)) {
        respond_error(req, 503, "busy", "too many open connections", true);
        return req;
    }
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > h->limits.max_body_bytes) {
        req->too_large = true;
        respond_error(req, 413, "too_large", "request body over the limit", true);
    }
    return req;
}

static void body_append(struct corral_http_request *req, const char *data, size_t len)
{
    size_t max = req->http->limits.max_body_bytes;
    if (req->too_large || req->body_len + len > max) {
        req->too_large = true;
        corral_free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        return;
    }
    if (req->body_len + len > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + len)
            cap *= 2;
        uint8_t *nb = corral_realloc(req->body, cap);
        if (nb == NULL) {
            req->too_large = true; /* answered as 413: we cannot hold it */
            return;
        }
        req->body = nb;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
}

static enum MHD_Result queue_response(struct corral_http_request *req)
{
    if (req->response == NULL)
        return MHD_NO;
    enum MHD_Result rv = MHD_queue_response(req->conn, req->status, req->response);
    MHD_destroy_response(req->response);
    req->response = NULL;
    return rv;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct corral_http *h = cls;
    struct corral_http_request *req = *con_cls;
    if (req == NULL) {
        req = request_new(h, conn, url, method, version);
        if (req == NULL)
            return MHD_NO;
        *con_cls = req;
        return req->status != 0 ? queue_response(req) : MHD_YES;
    }
    if (*upload_data_size > 0) {
        body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->dispatched || req->status != 0) {
        if (req->response == NULL && req->status == 0)
            return MHD_YES; /* spurious call while waiting */
        return queue_response(req);
    }
    req->dispatched = true;
    CORRAL_TRACE(CORRAL_TRACE_HTTP_DISPATCH, req->seq, 0);
    corral_trace_request = req->seq;
    h->handler(h->ud, req);
    corral_trace_request = 0;
    if (req->status != 0)
        return queue_response(req);
    req->suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct corral_http_request *req = *con_cls;
    if (req == NULL)
        return;
    CORRAL_TRACE(CORRAL_TRACE_HTTP_WRITTEN, req->seq, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (req->response != NULL)
        MHD_destroy_response(req->response);
    corral_free(req->body);
    corral_free(req);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    struct corral_http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        h->open_connections++;
        *socket_context = corral_calloc(1, sizeof(struct http_conn)); /* NULL: see request_new */
        return;
    }
    if (h->open_connections > 0)
        h->open_connections--;
    corral_free(*socket_context);
    *socket_context = NULL;
}

/* Connections past the hard cap are closed as soon as they are accepted
 * (MHD closes the socket when this says no). MHD's own limit is set above
 * the cap and never reached: at it, MHD stops accepting, and further
 * connections would wait unanswered in the kernel's backlog. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    struct corral_http *h = cls;
    return h->open_connections < hard_cap(&h->limits) ? MHD_YES : MHD_NO;
}

/* Called once per request, with the raw URI, before MHD decodes the path
 * and the query: a new request starts with no NUL seen, and the raw URI's
 * first NUL is noted for request_new. The result is the request's initial
 * *con_cls; NULL lets on_access make the request. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    struct http_conn *c = conn_state(conn);
    if (c != NULL) {
        c->nul = false;
        c->uri_bytes = strlen(uri);
        c->uri_end = uri + c->uri_bytes + 1;
        c->encoded_slash = false;
        for (const char *q = uri; *q != '\0' && *q != '?'; q++)
            if (q[0] == '%' && q[1] == '2' && (q[2] == 'F' || q[2] == 'f'))
                c->encoded_slash = true;
    }
    return NULL;
}

/* MHD's own decoding (%HH), for the path and each query name and value,
 * noting a decoded NUL byte: the result's length is known only here. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    size_t len = MHD_http_unescape(s);
    struct http_conn *c = conn_state(conn);
    if (c != NULL && memchr(s, '\0', len) != NULL)
        c->nul = true;
    return len;
}

static void rearm_timer(struct corral_http *h);

static void run_mhd(struct corral_http *h)
{
    if (h->closing)
        return;
    bool resumed = h->resumed;
    h->resumed = false;
    MHD_run(h->mhd);
    /* A resumed connection takes its answer in one run (the access
     * handler queues it after the run's writes) and writes it in the
     * next: both now, not the second after whatever the loop does next
     * (a batch's fsync). */
    if (resumed)
        MHD_run(h->mhd);
    rearm_timer(h);
}

void corral_http_flush(struct corral_http *h)
{
    if (h != NULL && h->resumed)
        run_mhd(h);
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void rearm_timer(struct corral_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static int parse_listen(const char *host, uint16_t port, struct sockaddr_storage *ss, bool *v6)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *v6 = true;
        return 0;
    }
    return CORRAL_EINVAL;
}

static struct MHD_Daemon *start_mhd(struct corral_http *h, const char *host, uint16_t port,
                                    const struct corral_http_tls *tls)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    if (parse_listen(host, port, &ss, &v6) != 0)
        return NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | (v6 ? MHD_USE_IPv6 : 0u);
    /* TLS: the key and certificate (and the CA client certificates are
     * checked against) in memory; options MHD takes only with
     * MHD_USE_TLS, so an array that is empty for plain HTTP. MHD copies
     * nothing: the texts must outlive the daemon (the node's config). */
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    size_t k = 0;
    if (h->tls) {
        flags |= MHD_USE_TLS;
        tls_opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)tls->key_pem};
        tls_opts[k++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)tls->cert_pem};
        if (tls->ca_pem != NULL)
            tls_opts[k++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)tls->ca_pem};
        tls_opts[k] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    /* MHD counts a connection until its cleanup, a little after its
     * close notification: its limit leaves room for those. */
    uint64_t mhd_limit = hard_cap(&h->limits) + 256;
    return MHD_start_daemon(
        flags, port, on_accept, h, on_access, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)mhd_limit, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)h->limits.idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)HTTP_POOL_BYTES, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
}

/* Why MHD could not listen: it does not report errno, so bind a socket of
 * our own to the same address (with SO_REUSEADDR and, for IPv6, V6ONLY,
 * as MHD does) and see what the kernel says. 0 if that bind succeeds. */
static int bind_errno(const char *host, uint16_t port)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    if (parse_listen(host, port, &ss, &v6) != 0)
        return EINVAL;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return errno;
    int one = 1, e = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (v6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0)
        e = errno;
    close(fd);
    return e;
}

static void listen_error(const char *host, uint16_t port, char *err, size_t errlen)
{
    int e = bind_errno(host, port);
    const char *why = e == EADDRINUSE      ? "address in use (another process listens there)"
                      : e == EACCES        ? "permission denied (ports below 1024 need privileges)"
                      : e == EADDRNOTAVAIL ? "not an address of this host"
                      : e != 0             ? strerror(e)
                                           : "the HTTP server failed to start";
    bool v6 = strchr(host, ':') != NULL;
    snprintf(err, errlen, "cannot listen for HTTP on %s%s%s:%u: %s", v6 ? "[" : "", host,
             v6 ? "]" : "", port, why);
}

int corral_http_tls_check(const struct corral_http_tls *t, char *err, size_t errlen)
{
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        snprintf(err, errlen, "out of memory");
        return CORRAL_EINVAL;
    }
    int bad = 0;
    gnutls_datum_t cert = {(unsigned char *)(uintptr_t)t->cert_pem, (unsigned)strlen(t->cert_pem)};
    gnutls_datum_t key = {(unsigned char *)(uintptr_t)t->key_pem, (unsigned)strlen(t->key_pem)};
    int rv = gnutls_certificate_set_x509_key_mem(cred, &cert, &key, GNUTLS_X509_FMT_PEM);
    if (rv < 0) {
        snprintf(err, errlen, "the certificate and key do not load as a PEM pair: %s",
                 gnutls_strerror(rv));
        bad = 1;
    }
    if (!bad && t->ca_pem != NULL) {
        gnutls_datum_t ca = {(unsigned char *)(uintptr_t)t->ca_pem, (unsigned)strlen(t->ca_pem)};
        rv = gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM);
        if (rv <= 0) {
            snprintf(err, errlen, "the CA holds no PEM certificate%s%s", rv < 0 ? ": " : "",
                     rv < 0 ? gnutls_strerror(rv) : "");
            bad = 1;
        }
    }
    gnutls_certificate_free_credentials(cred);
    return bad ? CORRAL_EINVAL : 0;
}

int corral_http_start(uv_loop_t *loop, const char *host, uint16_t port,
                      const struct corral_http_limits *limits, const struct corral_http_tls *tls,
                      corral_http_handler handler, void *ud, struct corral_http **out, char *err,
                      size_t errlen)
{
    struct corral_http *h = corral_calloc(1, sizeof(*h));
    if (h == NULL)
        return CORRAL_ENOMEM;
    h->loop = loop;
    h->limits = *limits;
    h->handler = handler;
    h->ud = ud;
    h->tls = tls != NULL && tls->cert_pem != NULL;
    h->verify_clients = h->tls && tls->ca_pem != NULL;
    if (h->tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS");
        corral_free(h);
        return CORRAL_EIO;
    }
    h->mhd = start_mhd(h, host, port, tls);
    if (h->mhd == NULL) {
        listen_error(host, port, err, errlen);
        if (h->tls) {
            size_t len = strlen(err);
            snprintf(err + len, errlen - len, " (or TLS did not set up)");
        }
        corral_free(h);
        return CORRAL_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_poll_init(loop, &h->poll, info->epoll_fd);
    h->poll.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    rearm_timer(h);
    *out = h;
    return 0;
}

static void on_handle_closed(uv_handle_t *hd)
{
    struct corral_http *h = hd->data;
    if (++h->closing == 3)
        corral_free(h);
}

void corral_http_stop(struct corral_http *h)
{
    MHD_run(h->mhd); /* let resumed connections take their answers */
    h->closing = 1;
    uv_poll_stop(&h->poll);
    uv_close((uv_handle_t *)&h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
}

const char *corral_http_method(const struct corral_http_request *req)
{
    return req->method;
}

const char *corral_http_path(const struct corral_http_request *req)
{
    return req->path;
}

bool corral_http_path_encoded_slash(const struct corral_http_request *req)
{
    return req->encoded_slash;
}

const char *corral_http_header(const struct corral_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *corral_http_arg(const struct corral_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct query_buf {
    char *buf;
    size_t cap, len;
    bool overflow;
};

static void qb_put_char(struct query_buf *q, char c)
{
    if (q->len + 1 >= q->cap) {
        q->overflow = true;
        return;
    }
    q->buf[q->len++] = c;
    q->buf[q->len] = '\0';
}

static void qb_put_escaped(struct query_buf *q, const char *s)
{
    /* corral_http_escape keeps room for the NUL, as qb_put_char does. */
    if (!q->overflow && corral_http_escape(s, q->buf + q->len, q->cap - q->len) != 0)
        q->overflow = true;
    if (!q->overflow)
        q->len += strlen(q->buf + q->len);
}

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    struct query_buf *q = cls;
    if (q->len > 0)
        qb_put_char(q, '&');
    qb_put_escaped(q, key);
    if (value != NULL) {
        qb_put_char(q, '=');
        qb_put_escaped(q, value);
    }
    return MHD_YES;
}

int corral_http_query(const struct corral_http_request *req, char *buf, size_t cap)
{
    struct query_buf q = {.buf = buf, .cap = cap};
    if (cap == 0)
        return CORRAL_ETOOBIG;
    buf[0] = '\0';
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_iter, &q);
    return q.overflow ? CORRAL_ETOOBIG : 0;
}

const uint8_t *corral_http_body(const struct corral_http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body;
}

int corral_http_body_too_large(const struct corral_http_request *req)
{
    return req->too_large;
}

void corral_http_stats(const struct corral_http *h, struct corral_http_stats *s)
{
    *s = h->stats;
    s->open_connections = h->open_connections;
}

struct args_check {
    const char *const *allowed;
    const char *seen[16];
    unsigned n_seen;
    const char *bad, *why;
};

static enum MHD_Result args_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    (void)value;
    struct args_check *a = cls;
    key = key != NULL ? key : "";
    bool known = false;
    for (const char *const *p = a->allowed; *p != NULL && !known; p++)
        known = strcmp(*p, key) == 0;
    if (!known) {
        a->bad = key;
        a->why = "unknown query parameter";
        return MHD_NO;
    }
    for (unsigned i = 0; i < a->n_seen; i++) {
        if (strcmp(a->seen[i], key) == 0) {
            a->bad = key;
            a->why = "repeated query parameter";
            return MHD_NO;
        }
    }
    if (a->n_seen < sizeof(a->seen) / sizeof(a->seen[0]))
        a->seen[a->n_seen++] = key;
    return MHD_YES;
}

bool corral_http_args_only(const struct corral_http_request *req, const char *const *allowed,
                           char *msg, size_t cap)
{
    struct args_check a = {.allowed = allowed};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, args_iter, &a);
    if (a.bad == NULL)
        return true;
    char name[65];
    size_t i = 0;
    for (; a.bad[i] != '\0' && i < sizeof(name) - 1; i++)
        name[i] = a.bad[i] >= ' ' && a.bad[i] <= '~' ? a.bad[i] : '?';
    name[i] = '\0';
    snprintf(msg, cap, "%s \"%s\"%s", a.why, name, a.bad[i] != '\0' ? " (cut)" : "");
    return false;
}
