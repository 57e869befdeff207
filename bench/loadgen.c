/* corral-loadgen: one HTTP/1.1 load generator for corral and etcd, so the
 * cluster benchmark drives both systems through the same client code. It
 * keeps N keep-alive connections busy (one request in flight each) from a
 * single epoll loop, records per-request latency in a log-linear histogram
 * and prints one JSON line.
 *
 *   corral-loadgen --target corral|etcd --op put|get --urls URL[,URL...]
 *       [--leader-only] [--clients 64] [--value-bytes 100] [--keys 10000]
 *       [--duration-s 10] [--warmup-s 2] [--requests N] [--prefill]
 *       [--timeout-ms 5000] [--leader-wait-s 10] [--seed 1] [--verbose]
 *
 * --verbose prints the first 20 connection failures with their errno. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Limits, each with its reason. */
#define CLIENTS_MAX 4096          /* one fd each; well under a default ulimit of 1024 x 4 */
#define ENDPOINTS_MAX 16          /* a benchmark cluster has 3 */
#define VALUE_BYTES_MAX 65536     /* both systems take larger, the benchmark never needs it */
#define KEY_BYTES_MAX 32          /* "k%010u" */
#define HOST_BYTES_MAX 64         /* "255.255.255.255:65535" and a host name */
#define RBUF_BYTES_MAX (1u << 20) /* a response larger than this is an error */
#define REQ_BYTES_MAX (VALUE_BYTES_MAX * 2 + 1024) /* base64 of key and value plus the head */
#define RECONNECT_DELAY_NS 50000000ull             /* 50 ms: no busy loop on a dead endpoint */
#define PREFILL_TIMEOUT_NS 120000000000ull         /* 120 s: prefill is bounded too */
#define HIST_SUB_BITS 6                            /* 64 sub-buckets: under 1.6% error */
#define HIST_BUCKETS (64 * 64)                     /* covers every uint64_t value */

_Static_assert(REQ_BYTES_MAX <= RBUF_BYTES_MAX, "request fits the buffer size bound");

enum target { TARGET_CORRAL, TARGET_ETCD };
enum op { OP_PUT, OP_GET };
enum phase { PHASE_PREFILL, PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN };
enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_WRITING, CONN_READING };

struct endpoint {
    struct sockaddr_in addr;
    char host[HOST_BYTES_MAX]; /* "ip:port", for the Host header */
};

struct conn {
    int fd;
    enum conn_state state;
    uint32_t events;    /* epoll interest currently registered */
    struct endpoint ep; /* where this connection goes; a 307 moves it */
    char *wbuf;
    size_t wlen, woff;
    char *rbuf;
    size_t rlen, rcap;
    uint64_t start_ns, deadline_ns, retry_at_ns;
    uint32_t key;
    enum phase phase; /* the phase the request in flight was issued in */
    int redirects;
};

struct hist {
    uint64_t count;
    uint64_t max_us, sum_us;
    uint64_t bucket[HIST_BUCKETS];
};

struct opts {
    enum target target;
    enum op op;
    const char *urls;
    bool leader_only, prefill, verbose;
    uint32_t clients, value_bytes, keys;
    double duration_s, warmup_s, leader_wait_s;
    uint64_t requests; /* 0: bounded by time only */
    uint32_t timeout_ms;
    uint64_t seed;
};

struct run {
    struct opts o;
    struct endpoint eps[ENDPOINTS_MAX];
    uint32_t n_eps;
    struct conn *conns;
    int epfd;
    char *value; /* o.value_bytes printable bytes */
    enum phase phase;
    uint64_t rng;
    uint32_t verbose_left; /* failures still to print under --verbose */
    uint32_t prefill_next, prefill_done;
    uint64_t measure_issued;
    uint64_t ok, err_status, err_conn, err_timeout, redirects, prefill_errors;
    uint64_t warmup_end_ns, measure_start_ns, loop_end_ns, measure_end_ns, last_done_ns,
        hard_end_ns;
    struct hist h;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "corral-loadgen: %s\n", what);
    exit(1);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fast, good enough to pick keys */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

/* ---- histogram: log-linear buckets in microseconds ---- */

static uint32_t hist_index(uint64_t v)
{
    if (v < (1u << (HIST_SUB_BITS + 1)))
        return (uint32_t)v;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t shift = msb - HIST_SUB_BITS;
    return shift * (1u << HIST_SUB_BITS) + (uint32_t)(v >> shift);
}

/* The largest value that falls into bucket i. */
static uint64_t hist_upper(uint32_t i)
{
    uint32_t sub = 1u << HIST_SUB_BITS;
    if (i < 2 * sub)
        return i;
    uint32_t shift = i / sub - 1;
    uint64_t mant = i % sub + sub;
    return ((mant + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t us)
{
    uint32_t i = hist_index(us);
    if (i >= HIST_BUCKETS)
        i = HIST_BUCKETS - 1;
    h->bucket[i]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

static double hist_quantile_ms(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return (double)(v < h->max_us ? v : h->max_us) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ---- HTTP/1.1 response parsing: just enough for status, length, chunked ---- */

struct http_resp {
    int status;
    size_t head_len; /* through the blank line */
    size_t msg_len;  /* the whole response */
    bool chunked, close;
    size_t content_length;
    char location[256];
};

static const char *find_bytes(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    const char *v = line + n + 1;
    while (v < line + len && (*v == ' ' || *v == '\t'))
        v++;
    *value = v;
    return true;
}

/* Finds the end of a chunked body starting at p; 0 when incomplete, -1 when malformed. */
static int chunked_end(const char *buf, size_t len, size_t p, size_t *end)
{
    for (;;) {
        const char *eol = find_bytes(buf + p, len - p, "\r\n");
        if (eol == NULL)
            return len - p > 32 ? -1 : 0;
        char *stop = NULL;
        unsigned long size = strtoul(buf + p, &stop, 16);
        if (stop == buf + p || size > RBUF_BYTES_MAX)
            return -1;
        p = (size_t)(eol - buf) + 2;
        if (size == 0) {
            /* trailers, then the blank line */
            for (;;) {
                eol = find_bytes(buf + p, len - p, "\r\n");
                if (eol == NULL)
                    return 0;
                size_t line = (size_t)(eol - buf) - p;
                p += line + 2;
                if (line == 0) {
                    *end = p;
                    return 1;
                }
            }
        }
        if (len - p < size + 2)
            return 0;
        p += size + 2;
    }
}

/* Returns 1 when buf holds a whole response, 0 when more bytes are needed,
 * -1 when it is malformed. */
static int http_parse(const char *buf, size_t len, struct http_resp *r)
{
    memset(r, 0, sizeof(*r));
    const char *blank = find_bytes(buf, len, "\r\n\r\n");
    if (blank == NULL)
        return len >= 16384 ? -1 : 0;
    r->head_len = (size_t)(blank - buf) + 4;
    if (r->head_len < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    r->status = atoi(buf + 9);
    if (r->status < 100 || r->status > 599)
        return -1;
    bool has_length = false;
    const char *line = find_bytes(buf, r->head_len, "\r\n") + 2;
    while (line < blank) {
        const char *eol = find_bytes(line, (size_t)(blank + 2 - line), "\r\n");
        size_t n = (size_t)(eol - line);
        const char *v;
        if (header_is(line, n, "Content-Length", &v)) {
            r->content_length = (size_t)strtoull(v, NULL, 10);
            has_length = true;
        } else if (header_is(line, n, "Transfer-Encoding", &v)) {
            r->chunked = find_bytes(v, (size_t)(eol - v), "chunked") != NULL;
        } else if (header_is(line, n, "Connection", &v)) {
            r->close = strncasecmp(v, "close", 5) == 0;
        } else if (header_is(line, n, "Location", &v)) {
            size_t vn = (size_t)(eol - v);
            if (vn >= sizeof(r->location))
                return -1;
            memcpy(r->location, v, vn);
            r->location[vn] = '\0';
        }
        line = eol + 2;
    }
    if (r->chunked)
        return chunked_end(buf, len, r->head_len, &r->msg_len);
    if (!has_length) {
        if (r->status == 204 || r->status == 304 || r->status < 200) {
            r->msg_len = r->head_len;
            return 1;
        }
        return -1; /* body delimited by close: neither server does it */
    }
    if (r->content_length > RBUF_BYTES_MAX)
        return -1;
    if (len - r->head_len < r->content_length)
        return 0;
    r->msg_len = r->head_len + r->content_length;
    return 1;
}

/* Copies the (de-chunked) body of a parsed response into out, NUL-terminated. */
static void http_body(const char *buf, const struct http_resp *r, char *out, size_t cap)
{
    size_t n = 0;
    if (!r->chunked) {
        n = r->content_length < cap - 1 ? r->content_length : cap - 1;
        memcpy(out, buf + r->head_len, n);
    } else {
        size_t p = r->head_len;
        for (;;) {
            const char *eol = find_bytes(buf + p, r->msg_len - p, "\r\n");
            size_t size = (size_t)strtoul(buf + p, NULL, 16);
            if (eol == NULL || size == 0)
                break;
            p = (size_t)(eol - buf) + 2;
            size_t take = size < cap - 1 - n ? size : cap - 1 - n;
            memcpy(out + n, buf + p, take);
            n += take;
            p += size + 2;
        }
    }
    out[n] = '\0';
}

/* ---- tiny JSON lookups: the value after "key": in a small, trusted body ---- */

static const char *json_value(const char *body, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *p = strstr(body, pat);
    if (p == NULL)
        return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Copies a string or number token; false for null, objects and overlong values. */
static bool json_token(const char *p, char *out, size_t cap)
{
    if (p == NULL)
        return false;
    const char *end;
    if (*p == '"') {
        p++;
        end = strchr(p, '"');
    } else {
        end = p;
        while ((*end >= '0' && *end <= '9') || *end == '-')
            end++;
    }
    if (end == NULL || end == p || (size_t)(end - p) >= cap)
        return false;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return true;
}

/* ---- endpoints and URLs ---- */

/* Parses "http://host:port[/...]" or "host:port" into an endpoint. */
static int endpoint_parse(const char *url, struct endpoint *ep)
{
    if (strncmp(url, "http://", 7) == 0)
        url += 7;
    size_t n = strcspn(url, "/,");
    if (n == 0 || n >= sizeof(ep->host))
        return -1;
    char host[HOST_BYTES_MAX];
    memcpy(host, url, n);
    host[n] = '\0';
    char *colon = strrchr(host, ':');
    if (colon == NULL)
        return -1;
    *colon = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL)
        return -1;
    memset(ep, 0, sizeof(*ep));
    memcpy(&ep->addr, ai->ai_addr, sizeof(ep->addr));
    freeaddrinfo(ai);
    memcpy(ep->host, url, n);
    ep->host[n] = '\0';
    return 0;
}

/* One blocking request with a timeout, for leader discovery only. Returns
 * the status, or -1 on any failure; the body goes to out. */
static int http_simple(const struct endpoint *ep, const char *method, const char *path,
                       const char *body, char *out, size_t cap, uint32_t timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    static char buf[65536];
    int status = -1;
    if (connect(fd, (const struct sockaddr *)&ep->addr, sizeof(ep->addr)) != 0)
        goto out;
    int n = snprintf(buf, sizeof(buf),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     method, path, ep->host, strlen(body), body);
    if (n < 0 || (size_t)n >= sizeof(buf) || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
        goto out;
    size_t len = 0;
    struct http_resp r;
    int rc = 0;
    while (rc == 0 && len < sizeof(buf)) {
        ssize_t got = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (got <= 0)
            goto out;
        len += (size_t)got;
        rc = http_parse(buf, len, &r);
    }
    if (rc != 1)
        goto out;
    http_body(buf, &r, out, cap);
    status = r.status;
out:
    close(fd);
    return status;
}

/* Asks one node who leads; writes the leader's endpoint on success. */
static bool leader_ask(const struct run *rn, const struct endpoint *ep, struct endpoint *leader)
{
    static char body[65536];
    char tok[HOST_BYTES_MAX];
    if (rn->o.target == TARGET_CORRAL) {
        if (http_simple(ep, "GET", "/v1/status", "", body, sizeof(body), 1000) != 200)
            return false;
        const char *l = json_value(body, "leader");
        if (l == NULL || *l != '{')
            return false;
        return json_token(json_value(l, "http"), tok, sizeof(tok)) &&
               endpoint_parse(tok, leader) == 0;
    }
    char id[32];
    if (http_simple(ep, "POST", "/v3/maintenance/status", "{}", body, sizeof(body), 1000) != 200)
        return false;
    if (!json_token(json_value(body, "member_id"), id, sizeof(id)) ||
        !json_token(json_value(body, "leader"), tok, sizeof(tok)))
        return false;
    if (strcmp(id, tok) != 0)
        return false; /* etcd names the leader by member id only: ask the others */
    *leader = *ep;
    return true;
}

static void leader_find(struct run *rn)
{
    uint64_t end = now_ns() + (uint64_t)(rn->o.leader_wait_s * 1e9);
    while (now_ns() < end) {
        for (uint32_t i = 0; i < rn->n_eps; i++) {
            struct endpoint leader;
            if (leader_ask(rn, &rn->eps[i], &leader)) {
                rn->eps[0] = leader;
                rn->n_eps = 1;
                return;
            }
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
        nanosleep(&ts, NULL);
    }
    die("no leader found within --leader-wait-s");
}

/* ---- requests ---- */

static size_t base64(const char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(uint8_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint32_t)(uint8_t)in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    return o;
}

static void request_build(struct run *rn, struct conn *c, bool put)
{
    char key[KEY_BYTES_MAX];
    int kn = snprintf(key, sizeof(key), "k%010" PRIu32, c->key);
    size_t vn = rn->o.value_bytes;
    char *w = c->wbuf;
    int n;
    if (rn->o.target == TARGET_CORRAL) {
        if (put) {
            n = snprintf(w, REQ_BYTES_MAX,
                         "PUT /v1/kv/%s HTTP/1.1\r\nHost: %s\r\n"
                         "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                         key, c->ep.host, vn);
            memcpy(w + n, rn->value, vn);
            c->wlen = (size_t)n + vn;
        } else {
            n = snprintf(w, REQ_BYTES_MAX, "GET /v1/kv/%s HTTP/1.1\r\nHost: %s\r\n\r\n", key,
                         c->ep.host);
            c->wlen = (size_t)n;
        }
    } else {
        static char json[REQ_BYTES_MAX];
        size_t j = 0;
        memcpy(json, "{\"key\":\"", 8);
        j = 8 + base64(key, (size_t)kn, json + 8);
        if (put) {
            memcpy(json + j, "\",\"value\":\"", 11);
            j += 11;
            j += base64(rn->value, vn, json + j);
        }
        memcpy(json + j, "\"}", 2);
        j += 2;
        n = snprintf(w, REQ_BYTES_MAX,
                     "POST /v3/kv/%s HTTP/1.1\r\nHost: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     put ? "put" : "range", c->ep.host, j);
        memcpy(w + n, json, j);
        c->wlen = (size_t)n + j;
    }
    c->woff = 0;
}

/* ---- connections ---- */

static void conn_watch(struct run *rn, struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - rn->conns)};
    int op = c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(rn->epfd, op, c->fd, &ev) != 0)
        die("epoll_ctl");
    c->events = events;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also drops it from the epoll set */
    c->fd = -1;
    c->events = 0;
    c->rlen = 0;
    c->state = CONN_IDLE;
}

/* Drops the request in flight after a failure and reconnects later. */
static void conn_fail(struct run *rn, struct conn *c, uint64_t *counter, const char *why)
{
    if (rn->o.verbose && rn->verbose_left > 0) {
        rn->verbose_left--;
        fprintf(stderr, "corral-loadgen: %s: %s (errno %d: %s)\n", c->ep.host, why, errno,
                strerror(errno));
    }
    if (c->phase == PHASE_PREFILL) {
        rn->prefill_errors++;
        rn->prefill_done++;
    } else if (c->phase == PHASE_MEASURE)
        (*counter)++;
    conn_close(c);
    c->retry_at_ns = now_ns() + RECONNECT_DELAY_NS;
}

static int conn_open(struct run *rn, struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fcntl(c->fd, F_SETFL, O_NONBLOCK) != 0)
        return -1;
    int rc = connect(c->fd, (const struct sockaddr *)&c->ep.addr, sizeof(c->ep.addr));
    if (rc != 0 && errno != EINPROGRESS)
        return -1;
    c->state = CONN_CONNECTING;
    conn_watch(rn, c, EPOLLOUT);
    return 0;
}

/* Writes what it can; switches to reading once the request is out. */
static int conn_write(struct run *rn, struct conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            c->state = CONN_WRITING;
            conn_watch(rn, c, EPOLLOUT);
            return 0;
        }
        if (n <= 0)
            return -1;
        c->woff += (size_t)n;
    }
    c->state = CONN_READING;
    conn_watch(rn, c, EPOLLIN);
    return 0;
}

/* Which key the next request uses, or false when nothing more is to be issued. */
static bool next_key(struct run *rn, uint32_t *key)
{
    if (rn->phase == PHASE_PREFILL) {
        if (rn->prefill_next >= rn->o.keys)
            return false;
        *key = rn->prefill_next++;
        return true;
    }
    if (rn->phase == PHASE_DRAIN)
        return false;
    if (rn->phase == PHASE_MEASURE) {
        if (rn->o.requests != 0 && rn->measure_issued >= rn->o.requests)
            return false;
        rn->measure_issued++;
    }
    *key = (uint32_t)(rng_next(&rn->rng) % rn->o.keys);
    return true;
}

/* Issues the next request on an idle or just-finished connection. */
static void conn_next(struct run *rn, struct conn *c)
{
    if (!next_key(rn, &c->key)) {
        c->retry_at_ns = UINT64_MAX; /* parked until the phase changes */
        if (c->fd >= 0)
            c->state = CONN_IDLE;
        return;
    }
    c->phase = rn->phase;
    c->redirects = 0;
    request_build(rn, c, rn->o.op == OP_PUT || rn->phase == PHASE_PREFILL);
    c->start_ns = now_ns();
    c->deadline_ns = c->start_ns + (uint64_t)rn->o.timeout_ms * 1000000ull;
    if (c->fd < 0) {
        if (conn_open(rn, c) != 0)
            conn_fail(rn, c, &rn->err_conn, "connect");
        return;
    }
    if (conn_write(rn, c) != 0)
        conn_fail(rn, c, &rn->err_conn, "send");
}

/* Follows a 307 once: same request, to the node named in Location. */
static bool conn_redirect(struct run *rn, struct conn *c, const struct http_resp *r)
{
    struct endpoint ep;
    if (rn->o.target != TARGET_CORRAL || c->redirects > 0 || r->location[0] == '\0' ||
        endpoint_parse(r->location, &ep) != 0)
        return false;
    rn->redirects++;
    conn_close(c);
    c->ep = ep; /* later requests on this connection go there too */
    c->redirects++;
    request_build(rn, c, rn->o.op == OP_PUT || c->phase == PHASE_PREFILL);
    if (conn_open(rn, c) != 0)
        conn_fail(rn, c, &rn->err_conn, "connect");
    return true;
}

static void conn_done(struct run *rn, struct conn *c, const struct http_resp *r)
{
    uint64_t t = now_ns();
    bool ok = r->status >= 200 && r->status < 300;
    if (c->phase == PHASE_PREFILL) {
        rn->prefill_done++;
        if (!ok)
            rn->prefill_errors++;
    } else if (c->phase == PHASE_MEASURE) {
        if (ok) {
            rn->ok++;
            hist_add(&rn->h, (t - c->start_ns) / 1000);
        } else {
            rn->err_status++;
        }
        rn->last_done_ns = t;
    }
    size_t rest = c->rlen - r->msg_len;
    if (rest != 0 || r->close) {
        conn_close(c); /* the server sent more than asked, or is closing */
        c->retry_at_ns = t;
        return;
    }
    c->rlen = 0;
    conn_next(rn, c);
}

static void conn_read(struct run *rn, struct conn *c)
{
    for (;;) {
        if (c->rlen == c->rcap) {
            if (c->rcap >= RBUF_BYTES_MAX) {
                conn_fail(rn, c, &rn->err_conn, "response too large");
                return;
            }
            size_t cap = c->rcap * 2;
            char *p = realloc(c->rbuf, cap);
            if (p == NULL)
                die("out of memory");
            c->rbuf = p;
            c->rcap = cap;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n == 0) {
            errno = 0;
            conn_fail(rn, c, &rn->err_conn, "closed by the server before a whole response");
            return;
        }
        if (n < 0) {
            conn_fail(rn, c, &rn->err_conn, "recv");
            return;
        }
        c->rlen += (size_t)n;
        struct http_resp r;
        int rc = http_parse(c->rbuf, c->rlen, &r);
        if (rc < 0) {
            conn_fail(rn, c, &rn->err_conn, "malformed response");
            return;
        }
        if (rc == 1) {
            if (r.status == 307 && conn_redirect(rn, c, &r))
                return;
            conn_done(rn, c, &r);
            return;
        }
    }
}

static void conn_event(struct run *rn, struct conn *c, uint32_t events)
{
    if (c->fd < 0)
        return;
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
            (events & (EPOLLERR | EPOLLHUP)) != 0) {
            conn_fail(rn, c, &rn->err_conn, "connect failed");
            return;
        }
        if (conn_write(rn, c) != 0)
            conn_fail(rn, c, &rn->err_conn, "send");
        return;
    }
    if (c->state == CONN_WRITING) {
        if (conn_write(rn, c) != 0)
            conn_fail(rn, c, &rn->err_conn, "send");
        return;
    }
    if (c->state == CONN_READING) {
        conn_read(rn, c);
        return;
    }
    /* idle keep-alive connection: the server closed it or sent junk */
    conn_close(c);
    c->retry_at_ns = now_ns();
}

/* ---- the run ---- */

static bool in_flight(const struct conn *c)
{
    return c->state != CONN_IDLE;
}

/* Advances the phase; returns false when the run is over. */
static bool phase_step(struct run *rn, uint64_t t)
{
    enum phase before = rn->phase;
    if (rn->phase == PHASE_PREFILL && rn->prefill_done >= rn->o.keys) {
        rn->phase = PHASE_WARMUP;
        rn->warmup_end_ns = t + (uint64_t)(rn->o.warmup_s * 1e9);
    }
    if (rn->phase == PHASE_PREFILL && t >= rn->hard_end_ns)
        die("prefill did not finish within 120 s");
    if (rn->phase == PHASE_WARMUP && t >= rn->warmup_end_ns) {
        rn->phase = PHASE_MEASURE;
        rn->measure_start_ns = t;
        rn->measure_end_ns = t + (uint64_t)(rn->o.duration_s * 1e9);
        rn->last_done_ns = t;
        rn->hard_end_ns = rn->measure_end_ns + (uint64_t)rn->o.timeout_ms * 1000000ull;
    }
    if (rn->phase == PHASE_MEASURE &&
        (t >= rn->measure_end_ns || (rn->o.requests != 0 && rn->measure_issued >= rn->o.requests)))
        rn->phase = PHASE_DRAIN;
    if (rn->phase != before) /* wake every parked connection */
        for (uint32_t i = 0; i < rn->o.clients; i++)
            if (rn->conns[i].retry_at_ns == UINT64_MAX)
                rn->conns[i].retry_at_ns = t;
    if (rn->phase != PHASE_DRAIN)
        return true;
    if (t >= rn->hard_end_ns)
        return false;
    for (uint32_t i = 0; i < rn->o.clients; i++)
        if (in_flight(&rn->conns[i]) && rn->conns[i].phase == PHASE_MEASURE)
            return true;
    return false;
}

static void run_loop(struct run *rn)
{
    static struct epoll_event evs[CLIENTS_MAX];
    uint64_t start = now_ns();
    rn->hard_end_ns = start + PREFILL_TIMEOUT_NS;
    rn->phase = rn->o.prefill ? PHASE_PREFILL : PHASE_WARMUP;
    rn->warmup_end_ns = start + (uint64_t)(rn->o.warmup_s * 1e9);
    for (;;) {
        uint64_t t = now_ns();
        if (!phase_step(rn, t))
            break;
        for (uint32_t i = 0; i < rn->o.clients; i++) {
            struct conn *c = &rn->conns[i];
            if (in_flight(c) && t >= c->deadline_ns)
                conn_fail(rn, c, &rn->err_timeout, "timeout");
            else if (!in_flight(c) && t >= c->retry_at_ns)
                conn_next(rn, c);
        }
        int n = epoll_wait(rn->epfd, evs, (int)rn->o.clients, 10);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++)
            conn_event(rn, &rn->conns[evs[i].data.u32], evs[i].events);
    }
    rn->loop_end_ns = now_ns();
}

static void report(const struct run *rn)
{
    /* the measured window: to the last completion, or to the end when none came */
    uint64_t end = rn->last_done_ns > rn->measure_start_ns ? rn->last_done_ns : rn->loop_end_ns;
    uint64_t span = end > rn->measure_start_ns ? end - rn->measure_start_ns : 1;
    double secs = (double)span / 1e9;
    const struct hist *h = &rn->h;
    printf("{\"target\":\"%s\",\"op\":\"%s\",\"clients\":%" PRIu32 ",\"endpoints\":%" PRIu32
           ",\"leader_only\":%s,\"value_bytes\":%" PRIu32 ",\"keys\":%" PRIu32
           ",\"seconds\":%.3f,\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"errors_status\":%" PRIu64
           ",\"errors_conn\":%" PRIu64 ",\"errors_timeout\":%" PRIu64 ",\"redirects\":%" PRIu64
           ",\"prefill_errors\":%" PRIu64 ",\"ops_per_s\":%.1f"
           ",\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           rn->o.target == TARGET_CORRAL ? "corral" : "etcd", rn->o.op == OP_PUT ? "put" : "get",
           rn->o.clients, rn->n_eps, rn->o.leader_only ? "true" : "false", rn->o.value_bytes,
           rn->o.keys, secs, rn->ok, rn->err_status + rn->err_conn + rn->err_timeout,
           rn->err_status, rn->err_conn, rn->err_timeout, rn->redirects, rn->prefill_errors,
           (double)rn->ok / secs, h->count ? (double)h->sum_us / (double)h->count / 1000.0 : 0.0,
           hist_quantile_ms(h, 0.50), hist_quantile_ms(h, 0.90), hist_quantile_ms(h, 0.99),
           (double)h->max_us / 1000.0);
}

static void usage(void)
{
    fprintf(stderr, "usage: corral-loadgen --target corral|etcd --op put|get --urls URL[,URL...]\n"
                    "  [--leader-only] [--clients 64] [--value-bytes 100] [--keys 10000]\n"
                    "  [--duration-s 10] [--warmup-s 2] [--requests N] [--prefill]\n"
                    "  [--timeout-ms 5000] [--leader-wait-s 10] [--seed 1] [--verbose]\n");
    exit(2);
}

static double arg_num(const char *s, double lo, double hi)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi))
        usage();
    return v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.clients = 64,
                       .value_bytes = 100,
                       .keys = 10000,
                       .duration_s = 10,
                       .warmup_s = 2,
                       .leader_wait_s = 10,
                       .timeout_ms = 5000,
                       .seed = 1};
    bool have_target = false, have_op = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--leader-only") == 0) {
            o->leader_only = true;
            continue;
        }
        if (strcmp(a, "--prefill") == 0) {
            o->prefill = true;
            continue;
        }
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--target") == 0 && (strcmp(v, "corral") == 0 || strcmp(v, "etcd") == 0)) {
            o->target = v[0] == 'c' ? TARGET_CORRAL : TARGET_ETCD;
            have_target = true;
        } else if (strcmp(a, "--op") == 0 && (strcmp(v, "put") == 0 || strcmp(v, "get") == 0)) {
            o->op = v[0] == 'p' ? OP_PUT : OP_GET;
            have_op = true;
        } else if (strcmp(a, "--urls") == 0)
            o->urls = v;
        else if (strcmp(a, "--clients") == 0)
            o->clients = (uint32_t)arg_num(v, 1, CLIENTS_MAX);
        else if (strcmp(a, "--value-bytes") == 0)
            o->value_bytes = (uint32_t)arg_num(v, 1, VALUE_BYTES_MAX);
        else if (strcmp(a, "--keys") == 0)
            o->keys = (uint32_t)arg_num(v, 1, 1e9);
        else if (strcmp(a, "--duration-s") == 0)
            o->duration_s = arg_num(v, 0.1, 86400);
        else if (strcmp(a, "--warmup-s") == 0)
            o->warmup_s = arg_num(v, 0, 3600);
        else if (strcmp(a, "--requests") == 0)
            o->requests = (uint64_t)arg_num(v, 1, 1e12);
        else if (strcmp(a, "--timeout-ms") == 0)
            o->timeout_ms = (uint32_t)arg_num(v, 1, 600000);
        else if (strcmp(a, "--leader-wait-s") == 0)
            o->leader_wait_s = arg_num(v, 0, 600);
        else if (strcmp(a, "--seed") == 0)
            o->seed = (uint64_t)arg_num(v, 1, 1e18);
        else
            usage();
    }
    if (!have_target || !have_op || o->urls == NULL)
        usage();
}

int main(int argc, char **argv)
{
    static struct run rn;
    parse_args(argc, argv, &rn.o);
    signal(SIGPIPE, SIG_IGN);
    for (const char *u = rn.o.urls; *u != '\0';) {
        if (rn.n_eps == ENDPOINTS_MAX)
            die("too many --urls");
        if (endpoint_parse(u, &rn.eps[rn.n_eps++]) != 0)
            die("bad --urls entry (want http://HOST:PORT)");
        u += strcspn(u, ",");
        if (*u == ',')
            u++;
    }
    if (rn.o.leader_only)
        leader_find(&rn);
    rn.verbose_left = 20;
    rn.rng = rn.o.seed * 0x9E3779B97F4A7C15ull | 1;
    rn.value = malloc(rn.o.value_bytes);
    rn.conns = calloc(rn.o.clients, sizeof(*rn.conns));
    rn.epfd = epoll_create1(0);
    if (rn.value == NULL || rn.conns == NULL || rn.epfd < 0)
        die("out of memory or epoll");
    for (uint32_t i = 0; i < rn.o.value_bytes; i++)
        rn.value[i] = (char)('a' + rng_next(&rn.rng) % 26);
    for (uint32_t i = 0; i < rn.o.clients; i++) {
        struct conn *c = &rn.conns[i];
        c->fd = -1;
        c->ep = rn.eps[i % rn.n_eps]; /* spread over the endpoints */
        c->wbuf = malloc(REQ_BYTES_MAX);
        c->rcap = 4096;
        c->rbuf = malloc(c->rcap);
        if (c->wbuf == NULL || c->rbuf == NULL)
            die("out of memory");
    }
    run_loop(&rn);
    report(&rn);
    for (uint32_t i = 0; i < rn.o.clients; i++) {
        conn_close(&rn.conns[i]);
        free(rn.conns[i].wbuf);
        free(rn.conns[i].rbuf);
    }
    close(rn.epfd);
    free(rn.conns);
    free(rn.value);
    return rn.ok > 0 ? 0 : 1;
}
