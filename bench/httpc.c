/* httpc: the HTTP/1.1 client the load generators share. See httpc.h. */
#include "httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *httpc_prog = "httpc";

void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", httpc_prog, what);
    exit(1);
}

bool arg_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
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

void hist_add(struct hist *h, uint64_t us)
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

double hist_quantile_ms(const struct hist *h, double q)
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

double hist_mean_ms(const struct hist *h)
{
    return h->count ? (double)h->sum_us / (double)h->count / 1000.0 : 0.0;
}

/* ---- HTTP/1.1 response parsing: just enough for status, length, chunked ---- */

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
int http_parse(const char *buf, size_t len, struct http_resp *r)
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
void http_body(const char *buf, const struct http_resp *r, char *out, size_t cap)
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

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

const char *json_value(const char *body, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\"", key);
    /* "role":"leader" holds "leader" too: only an occurrence followed by ':' is the key */
    for (const char *p = strstr(body, pat); p != NULL; p = strstr(p, pat)) {
        p = skip_ws(p + strlen(pat));
        if (*p == ':')
            return skip_ws(p + 1);
    }
    return NULL;
}

/* Copies a string or number token; false for null, objects and overlong values. */
bool json_token(const char *p, char *out, size_t cap)
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

bool json_u64(const char *p, uint64_t *out)
{
    char tok[24];
    if (!json_token(p, tok, sizeof(tok)) || tok[0] < '0' || tok[0] > '9')
        return false;
    *out = strtoull(tok, NULL, 10);
    return true;
}

/* ---- endpoints ---- */

/* Parses "http://host:port[/...]" or "host:port" into an endpoint. */
int endpoint_parse(const char *url, struct endpoint *ep)
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

int http_simple(const struct endpoint *ep, const char *method, const char *path, const char *body,
                char *out, size_t cap, uint32_t timeout_ms)
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

/* ---- one non-blocking keep-alive connection ---- */

int hconn_init(struct hconn *c, int epfd, uint32_t tag, const struct endpoint *ep, size_t wcap)
{
    *c = (struct hconn){.fd = -1, .epfd = epfd, .tag = tag, .ep = *ep, .wcap = wcap, .rcap = 4096};
    c->wbuf = malloc(wcap);
    c->rbuf = malloc(c->rcap);
    return c->wbuf != NULL && c->rbuf != NULL ? 0 : -1;
}

void hconn_free(struct hconn *c)
{
    hconn_close(c);
    free(c->wbuf);
    free(c->rbuf);
    c->wbuf = c->rbuf = NULL;
}

static void hconn_watch(struct hconn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u32 = c->tag};
    int op = c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(c->epfd, op, c->fd, &ev) != 0)
        die("epoll_ctl");
    c->events = events;
}

void hconn_close(struct hconn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also drops it from the epoll set */
    c->fd = -1;
    c->events = 0;
    c->rlen = 0;
    c->state = CONN_IDLE;
}

static int hconn_open(struct hconn *c)
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
    hconn_watch(c, EPOLLOUT);
    return 0;
}

/* Writes what it can; switches to reading once the request is out. */
static int hconn_write(struct hconn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            c->state = CONN_WRITING;
            hconn_watch(c, EPOLLOUT);
            return 0;
        }
        if (n <= 0)
            return -1;
        c->woff += (size_t)n;
    }
    c->state = CONN_READING;
    hconn_watch(c, EPOLLIN);
    return 0;
}

int hconn_send(struct hconn *c, const char **why)
{
    c->woff = 0;
    c->rlen = 0;
    if (c->fd < 0) {
        *why = "connect";
        return hconn_open(c);
    }
    *why = "send";
    return hconn_write(c);
}

static enum hconn_event hconn_read(struct hconn *c, struct http_resp *r, const char **why)
{
    for (;;) {
        if (c->rlen == c->rcap) {
            if (c->rcap >= RBUF_BYTES_MAX) {
                *why = "response too large";
                return HCONN_FAILED;
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
            return HCONN_MORE;
        if (n == 0) {
            errno = 0;
            *why = "closed by the server before a whole response";
            return HCONN_FAILED;
        }
        if (n < 0) {
            *why = "recv";
            return HCONN_FAILED;
        }
        c->rlen += (size_t)n;
        int rc = http_parse(c->rbuf, c->rlen, r);
        if (rc < 0) {
            *why = "malformed response";
            return HCONN_FAILED;
        }
        if (rc == 1)
            return HCONN_RESPONSE;
    }
}

enum hconn_event hconn_event(struct hconn *c, uint32_t events, struct http_resp *r,
                             const char **why)
{
    if (c->fd < 0)
        return HCONN_MORE; /* closed earlier in the same batch of events */
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
            (events & (EPOLLERR | EPOLLHUP)) != 0) {
            *why = "connect failed";
            return HCONN_FAILED;
        }
        *why = "send";
        return hconn_write(c) == 0 ? HCONN_MORE : HCONN_FAILED;
    }
    if (c->state == CONN_WRITING) {
        *why = "send";
        return hconn_write(c) == 0 ? HCONN_MORE : HCONN_FAILED;
    }
    if (c->state == CONN_READING)
        return hconn_read(c, r, why);
    /* idle keep-alive connection: the server closed it or sent junk */
    hconn_close(c);
    return HCONN_IDLE_CLOSED;
}

bool hconn_finish(struct hconn *c, const struct http_resp *r)
{
    if (c->rlen != r->msg_len || r->close) {
        hconn_close(c); /* the server sent more than asked, or is closing */
        return false;
    }
    c->rlen = 0;
    c->state = CONN_IDLE;
    return true;
}

void hconn_warn(const struct hconn *c, const char *why, uint32_t *left)
{
    if (*left == 0)
        return;
    (*left)--;
    fprintf(stderr, "%s: %s: %s (errno %d: %s)\n", httpc_prog, c->ep.host, why, errno,
            strerror(errno));
}
