/* corral-loadgen: one HTTP/1.1 load generator for corral and etcd, so the
 * cluster benchmark drives both systems through the same client code. It
 * keeps N keep-alive connections busy (one request in flight each) from a
 * single epoll loop, records per-request latency in a log-linear histogram
 * and prints one JSON line.
 *
 *   corral-loadgen --target corral|etcd --op put|get|health --urls URL[,URL...]
 *       [--leader-only] [--clients 64] [--value-bytes 100] [--keys 10000]
 *       [--duration-s 10] [--warmup-s 2] [--requests N] [--prefill]
 *       [--timeout-ms 5000] [--leader-wait-s 10] [--seed 1] [--verbose]
 *
 * --verbose prints the first 20 connection failures with their errno. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "httpc.h"

/* Limits, each with its reason. */
#define CLIENTS_MAX 4096      /* one fd each; well under a default ulimit of 1024 x 4 */
#define ENDPOINTS_MAX 16      /* a benchmark cluster has 3 */
#define VALUE_BYTES_MAX 65536 /* both systems take larger, the benchmark never needs it */
#define KEY_BYTES_MAX 32      /* "k%010u" */
#define REQ_BYTES_MAX (VALUE_BYTES_MAX * 2 + 1024) /* base64 of key and value plus the head */
#define PREFILL_TIMEOUT_NS 120000000000ull         /* 120 s: prefill is bounded too */

_Static_assert(REQ_BYTES_MAX <= RBUF_BYTES_MAX, "request fits the buffer size bound");

enum target { TARGET_CORRAL, TARGET_ETCD };
enum op { OP_PUT, OP_GET, OP_HEALTH }; /* health: GET /health, the HTTP floor */
enum phase { PHASE_PREFILL, PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN };

struct conn {
    struct hconn io; /* io.ep: where this connection goes; a 307 moves it */
    uint64_t start_ns, deadline_ns, retry_at_ns;
    uint32_t key;
    enum phase phase; /* the phase the request in flight was issued in */
    int redirects;
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

static void request_build(struct run *rn, struct conn *c, enum op op)
{
    char key[KEY_BYTES_MAX];
    int kn = snprintf(key, sizeof(key), "k%010" PRIu32, c->key);
    size_t vn = rn->o.value_bytes;
    char *w = c->io.wbuf;
    bool put = op == OP_PUT;
    int n;
    if (op == OP_HEALTH) { /* the same path on both systems */
        n = snprintf(w, REQ_BYTES_MAX, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", c->io.ep.host);
        c->io.wlen = (size_t)n;
    } else if (rn->o.target == TARGET_CORRAL) {
        if (put) {
            n = snprintf(w, REQ_BYTES_MAX,
                         "PUT /v1/kv/%s HTTP/1.1\r\nHost: %s\r\n"
                         "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                         key, c->io.ep.host, vn);
            memcpy(w + n, rn->value, vn);
            c->io.wlen = (size_t)n + vn;
        } else {
            n = snprintf(w, REQ_BYTES_MAX, "GET /v1/kv/%s HTTP/1.1\r\nHost: %s\r\n\r\n", key,
                         c->io.ep.host);
            c->io.wlen = (size_t)n;
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
                     put ? "put" : "range", c->io.ep.host, j);
        memcpy(w + n, json, j);
        c->io.wlen = (size_t)n + j;
    }
}

/* ---- connections ---- */

/* Drops the request in flight after a failure and reconnects later. */
static void conn_fail(struct run *rn, struct conn *c, uint64_t *counter, const char *why)
{
    if (rn->o.verbose)
        hconn_warn(&c->io, why, &rn->verbose_left);
    if (c->phase == PHASE_PREFILL) {
        rn->prefill_errors++;
        rn->prefill_done++;
    } else if (c->phase == PHASE_MEASURE)
        (*counter)++;
    hconn_close(&c->io);
    c->retry_at_ns = now_ns() + RECONNECT_DELAY_NS;
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
        return;
    }
    c->phase = rn->phase;
    c->redirects = 0;
    request_build(rn, c, rn->phase == PHASE_PREFILL ? OP_PUT : rn->o.op);
    c->start_ns = now_ns();
    c->deadline_ns = c->start_ns + (uint64_t)rn->o.timeout_ms * 1000000ull;
    const char *why;
    if (hconn_send(&c->io, &why) != 0)
        conn_fail(rn, c, &rn->err_conn, why);
}

/* Follows a 307 once: same request, to the node named in Location. */
static bool conn_redirect(struct run *rn, struct conn *c, const struct http_resp *r)
{
    struct endpoint ep;
    if (rn->o.target != TARGET_CORRAL || c->redirects > 0 || r->location[0] == '\0' ||
        endpoint_parse(r->location, &ep) != 0)
        return false;
    rn->redirects++;
    hconn_close(&c->io);
    c->io.ep = ep; /* later requests on this connection go there too */
    c->redirects++;
    request_build(rn, c, c->phase == PHASE_PREFILL ? OP_PUT : rn->o.op);
    const char *why;
    if (hconn_send(&c->io, &why) != 0)
        conn_fail(rn, c, &rn->err_conn, why);
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
    if (!hconn_finish(&c->io, r)) {
        c->retry_at_ns = t;
        return;
    }
    conn_next(rn, c);
}

static void conn_event(struct run *rn, struct conn *c, uint32_t events)
{
    struct http_resp r;
    const char *why = NULL;
    switch (hconn_event(&c->io, events, &r, &why)) {
    case HCONN_MORE:
        return;
    case HCONN_FAILED:
        conn_fail(rn, c, &rn->err_conn, why);
        return;
    case HCONN_IDLE_CLOSED:
        c->retry_at_ns = now_ns();
        return;
    case HCONN_RESPONSE:
        if (r.status == 307 && conn_redirect(rn, c, &r))
            return;
        conn_done(rn, c, &r);
        return;
    }
}

/* ---- the run ---- */

static bool in_flight(const struct conn *c)
{
    return c->io.state != CONN_IDLE;
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
           rn->o.target == TARGET_CORRAL ? "corral" : "etcd",
           rn->o.op == OP_PUT   ? "put"
           : rn->o.op == OP_GET ? "get"
                                : "health",
           rn->o.clients, rn->n_eps, rn->o.leader_only ? "true" : "false", rn->o.value_bytes,
           rn->o.keys, secs, rn->ok, rn->err_status + rn->err_conn + rn->err_timeout,
           rn->err_status, rn->err_conn, rn->err_timeout, rn->redirects, rn->prefill_errors,
           (double)rn->ok / secs, hist_mean_ms(h), hist_quantile_ms(h, 0.50),
           hist_quantile_ms(h, 0.90), hist_quantile_ms(h, 0.99), (double)h->max_us / 1000.0);
}

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: corral-loadgen --target corral|etcd --op put|get|health --urls URL[,URL...]\n"
            "  [--leader-only] [--clients 64] [--value-bytes 100] [--keys 10000]\n"
            "  [--duration-s 10] [--warmup-s 2] [--requests N] [--prefill]\n"
            "  [--timeout-ms 5000] [--leader-wait-s 10] [--seed 1] [--verbose]\n");
    exit(2);
}

static double num(const char *s, double lo, double hi)
{
    double v;
    if (!arg_num(s, lo, hi, &v))
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
        } else if (strcmp(a, "--op") == 0 &&
                   (strcmp(v, "put") == 0 || strcmp(v, "get") == 0 || strcmp(v, "health") == 0)) {
            o->op = v[0] == 'p' ? OP_PUT : v[0] == 'g' ? OP_GET : OP_HEALTH;
            have_op = true;
        } else if (strcmp(a, "--urls") == 0)
            o->urls = v;
        else if (strcmp(a, "--clients") == 0)
            o->clients = (uint32_t)num(v, 1, CLIENTS_MAX);
        else if (strcmp(a, "--value-bytes") == 0)
            o->value_bytes = (uint32_t)num(v, 1, VALUE_BYTES_MAX);
        else if (strcmp(a, "--keys") == 0)
            o->keys = (uint32_t)num(v, 1, 1e9);
        else if (strcmp(a, "--duration-s") == 0)
            o->duration_s = num(v, 0.1, 86400);
        else if (strcmp(a, "--warmup-s") == 0)
            o->warmup_s = num(v, 0, 3600);
        else if (strcmp(a, "--requests") == 0)
            o->requests = (uint64_t)num(v, 1, 1e12);
        else if (strcmp(a, "--timeout-ms") == 0)
            o->timeout_ms = (uint32_t)num(v, 1, 600000);
        else if (strcmp(a, "--leader-wait-s") == 0)
            o->leader_wait_s = num(v, 0, 600);
        else if (strcmp(a, "--seed") == 0)
            o->seed = (uint64_t)num(v, 1, 1e18);
        else
            usage();
    }
    if (!have_target || !have_op || o->urls == NULL)
        usage();
}

int main(int argc, char **argv)
{
    static struct run rn;
    httpc_prog = "corral-loadgen";
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
        /* spread over the endpoints */
        if (hconn_init(&c->io, rn.epfd, i, &rn.eps[i % rn.n_eps], REQ_BYTES_MAX) != 0)
            die("out of memory");
    }
    run_loop(&rn);
    report(&rn);
    for (uint32_t i = 0; i < rn.o.clients; i++)
        hconn_free(&rn.conns[i].io);
    close(rn.epfd);
    free(rn.conns);
    free(rn.value);
    return rn.ok > 0 ? 0 : 1;
}
