/* httpc: the small HTTP/1.1 client the load generators share
 * (corral-loadgen, corral-memberload): a log-linear latency histogram,
 * response parsing (status, Content-Length, chunked, Connection, Location),
 * tiny lookups in small trusted JSON bodies, endpoints, one blocking
 * request for set-up steps, and one non-blocking keep-alive connection
 * driven from an epoll loop (one request in flight at a time).
 *
 * Bench code only: it trusts the servers it talks to (corral, etcd) and
 * bounds every buffer. */
#ifndef CORRAL_BENCH_HTTPC_H
#define CORRAL_BENCH_HTTPC_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOST_BYTES_MAX 64              /* "255.255.255.255:65535" and a host name */
#define RBUF_BYTES_MAX (1u << 20)      /* a response larger than this is an error */
#define RECONNECT_DELAY_NS 50000000ull /* 50 ms: no busy loop on a dead endpoint */
#define HIST_SUB_BITS 6                /* 64 sub-buckets: under 1.6% error */
#define HIST_BUCKETS (64 * 64)         /* covers every uint64_t value */

/* The program's name for messages (each main sets it). */
extern const char *httpc_prog;

uint64_t now_ns(void);
/* Prints "<httpc_prog>: what" and exits 1. */
_Noreturn void die(const char *what);
/* s as a number in [lo, hi]; false when it is not one. */
bool arg_num(const char *s, double lo, double hi, double *out);

/* ---- histogram: log-linear buckets in microseconds ---- */

struct hist {
    uint64_t count;
    uint64_t max_us, sum_us;
    uint64_t bucket[HIST_BUCKETS];
};

void hist_add(struct hist *h, uint64_t us);
/* The q quantile in ms (nearest rank, the bucket's upper edge, at most max). */
double hist_quantile_ms(const struct hist *h, double q);
double hist_mean_ms(const struct hist *h);

/* ---- HTTP/1.1 responses ---- */

struct http_resp {
    int status;
    size_t head_len; /* through the blank line */
    size_t msg_len;  /* the whole response */
    bool chunked, close;
    size_t content_length;
    char location[256];
};

/* 1 when buf holds a whole response, 0 when more bytes are needed, -1
 * when it is malformed. */
int http_parse(const char *buf, size_t len, struct http_resp *r);
/* Copies the (de-chunked) body of a parsed response into out, NUL-terminated. */
void http_body(const char *buf, const struct http_resp *r, char *out, size_t cap);

/* ---- tiny JSON lookups: the value after "key": in a small, trusted body ---- */

/* The first byte of the value of the first "key": at or after body, or NULL. */
const char *json_value(const char *body, const char *key);
/* Copies a string or number token; false for null, objects and overlong values. */
bool json_token(const char *p, char *out, size_t cap);
/* The unsigned number at p (a json_value result); false when there is none. */
bool json_u64(const char *p, uint64_t *out);

/* ---- endpoints ---- */

struct endpoint {
    struct sockaddr_in addr;
    char host[HOST_BYTES_MAX]; /* "ip:port", for the Host header */
};

/* Parses "http://host:port[/...]" or "host:port" (up to a ',' or '/'). */
int endpoint_parse(const char *url, struct endpoint *ep);
/* One blocking request with a timeout, for set-up steps only. Returns the
 * status, or -1 on any failure; the body goes to out. */
int http_simple(const struct endpoint *ep, const char *method, const char *path, const char *body,
                char *out, size_t cap, uint32_t timeout_ms);

/* ---- one non-blocking keep-alive connection ---- */

enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_WRITING, CONN_READING };

struct hconn {
    int fd, epfd;
    uint32_t tag; /* epoll data.u32: the owner's index of this connection */
    enum conn_state state;
    uint32_t events;    /* epoll interest currently registered */
    struct endpoint ep; /* where it goes; a redirect may move it */
    char *wbuf;         /* the request: wbuf[0..wlen), wcap bytes */
    size_t wlen, woff, wcap;
    char *rbuf;
    size_t rlen, rcap;
};

enum hconn_event {
    HCONN_MORE = 0,    /* nothing complete yet */
    HCONN_RESPONSE,    /* a whole response is in rbuf (r is filled) */
    HCONN_FAILED,      /* connect, send or receive failed (why says which); still open */
    HCONN_IDLE_CLOSED, /* an idle connection was closed by the server (or sent junk): closed */
};

/* Allocates the buffers; fd -1 (closed). -1 when out of memory. */
int hconn_init(struct hconn *c, int epfd, uint32_t tag, const struct endpoint *ep, size_t wcap);
void hconn_free(struct hconn *c);
/* Closes the socket (it leaves the epoll set) and forgets any partial response. */
void hconn_close(struct hconn *c);
/* Sends the request in wbuf[0..wlen), connecting first when closed.
 * -1 on failure (*why set; errno as the call left it). */
int hconn_send(struct hconn *c, const char **why);
/* Handles an epoll event on c. */
enum hconn_event hconn_event(struct hconn *c, uint32_t events, struct http_resp *r,
                             const char **why);
/* After HCONN_RESPONSE: keeps the connection for the next request, or
 * closes it when the server closes or sent more than the response. True
 * when it stays open. */
bool hconn_finish(struct hconn *c, const struct http_resp *r);
/* Under --verbose: prints a failure with errno while *left > 0. */
void hconn_warn(const struct hconn *c, const char *why, uint32_t *left);

#endif
