/* corral-memberload: many simulated members heartbeating one corral leader,
 * to measure what the heartbeat path costs the leader (bench/member_bench.py
 * drives it). Every member registers (PUT /v1/members/{name}), then
 * heartbeats (POST /v1/members/{name}/heartbeat) at its rate, carrying the
 * assignment index of the last view it got, so the answers are mostly
 * {"unchanged":true}. With --resource it also acts as an instant agent for
 * that resource: a replica shown `copying` is reported `in_sync` and a
 * primary shown `releasing` is reported `released` on its next heartbeat,
 * so the controller's moves complete and views change.
 *
 *   corral-memberload --url http://HOST:PORT --members N
 *       [--rate-per-member 4] [--conns 256] [--duration-s 10] [--warmup-s 3]
 *       [--register-timeout-s 120] [--timeout-ms 5000] [--late-ms 25]
 *       [--resource NAME] [--prefix m] [--verbose]
 *
 * Open loop. Member i rides connection i mod conns, and each connection
 * walks its members round robin on a fixed schedule: its k-th slot is due
 * at t0 + phase + k * period / (its members), the phases spread the
 * connections' slots evenly, so the whole load arrives at an even
 * members x rate per second. A slot is sent when it is due, or as soon as
 * the connection's previous answer is in when that came later: such a send
 * is late by the difference (counted when over --late-ms). A slot of a
 * member not registered yet (or told to register again: 409 dead, 404)
 * sends the PUT instead; a member refused with 507 (the leader's member
 * limit) is left out: when the registration is over, the schedule starts
 * again over the members the leader took.
 *
 * Phases: register (until every member got 200 or 507 to its PUT, bounded
 * by --register-timeout-s), warmup, measure (--duration-s; only these
 * answers count), drain (answers to sends of the measure phase, bounded by
 * --timeout-ms). Prints one JSON line; measure_start_s and measure_end_s
 * are CLOCK_MONOTONIC seconds, for lining up CPU samples of the server. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "httpc.h"

/* Limits, each with its reason. */
#define CONNS_MAX 1000      /* under the server's default --max-connections of 1024 */
#define MEMBERS_MAX 100000u /* ten times the benchmark's largest run */
#define REPORTS_MAX 16u     /* progress entries per heartbeat; the rest go on later ones */
#define PREFIX_BYTES_MAX 32 /* a name is the prefix and 6 digits: within the 64 allowed */
#define REQ_BYTES_MAX 4096  /* the head plus REPORTS_MAX entries of under 128 bytes */

enum phase { PHASE_REGISTER, PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN };
enum mstate { M_NEW, M_ACTIVE, M_REFUSED };
enum kind { REQ_PUT, REQ_BEAT };

struct report {
    uint32_t partition;
    uint64_t epoch;
    bool released; /* else in_sync */
};

struct member {
    uint64_t index; /* the assignment index of the view it holds (0: none) */
    uint8_t state;  /* enum mstate */
    uint8_t n_pending, n_sent;
    bool ever;     /* registered at least once */
    uint32_t held; /* entries in the last full view it got */
    struct report pending[REPORTS_MAX];
    struct report sent[REPORTS_MAX]; /* the last ones carried: not made again */
};

struct conn {
    struct hconn io;
    uint32_t *list, count; /* its members (i with i mod conns = its index), in order */
    uint64_t slot;         /* the next slot of its schedule */
    uint64_t phase_ns;     /* slot 0 is due at t0 + phase_ns */
    uint64_t due_ns, sent_ns, deadline_ns, retry_at_ns;
    uint32_t member; /* of the request in flight */
    uint8_t kind;    /* enum kind */
    uint8_t n_reports;
    enum phase phase; /* the phase the request in flight was sent in */
};

struct opts {
    const char *url, *resource, *prefix;
    uint32_t members, conns, timeout_ms, late_ms;
    double rate, duration_s, warmup_s, register_timeout_s;
    bool verbose;
};

struct stats {
    uint64_t sent, ok, late, err_status, err_conflict, err_busy, err_conn, err_timeout;
    uint64_t rejoins, views_unchanged, views_full, views_none, reports;
    struct hist lat, lag;
};

struct run {
    struct opts o;
    struct endpoint ep;
    struct member *m;
    struct conn *conns;
    int epfd;
    enum phase phase;
    uint64_t period_ns, start_ns, t0_ns, register_end_ns, warmup_end_ns, measure_start_ns,
        measure_end_ns, hard_end_ns;
    uint32_t registered, refused, verbose_left;
    uint64_t put_ok, put_err, backlog_at_end;
    struct hist put_lat;
    struct stats s; /* the measure phase only */
};

static uint64_t slot_due(const struct run *rn, const struct conn *c, uint64_t slot)
{
    return rn->t0_ns + c->phase_ns + slot * rn->period_ns / c->count;
}

static uint32_t slot_member(const struct conn *c, uint64_t slot)
{
    return c->list[slot % c->count];
}

/* ---- requests ---- */

/* Appends to a request body; -1 when it does not fit. */
static int body_append(char *b, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int body_append(char *b, size_t cap, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *n)
        return -1;
    *n += (size_t)k;
    return 0;
}

static void request_build(struct run *rn, struct conn *c, uint32_t i)
{
    struct member *m = &rn->m[i];
    char body[REQ_BYTES_MAX - 256];
    size_t bn = 0;
    const char *method, *sub;
    c->n_reports = 0;
    if (m->state == M_NEW) {
        c->kind = REQ_PUT;
        method = "PUT";
        sub = "";
        body_append(body, sizeof(body), &bn, "{\"addr\":\"127.0.0.1:%u\"}", 10000u + i % 50000u);
    } else {
        c->kind = REQ_BEAT;
        method = "POST";
        sub = "/heartbeat";
        body_append(body, sizeof(body), &bn, "{\"index\":%" PRIu64, m->index);
        for (uint8_t k = 0; k < m->n_pending; k++) {
            const struct report *r = &m->pending[k];
            if (body_append(body, sizeof(body), &bn,
                            "%s{\"resource\":\"%s\",\"partition\":%" PRIu32 ",\"epoch\":%" PRIu64
                            ",\"state\":\"%s\"}",
                            k == 0 ? ",\"progress\":[" : ",", rn->o.resource, r->partition,
                            r->epoch, r->released ? "released" : "in_sync") != 0)
                die("heartbeat body too large");
            c->n_reports++;
        }
        if (body_append(body, sizeof(body), &bn, "%s}", c->n_reports > 0 ? "]" : "") != 0)
            die("heartbeat body too large");
    }
    int n = snprintf(c->io.wbuf, c->io.wcap,
                     "%s /v1/members/%s%06" PRIu32 "%s HTTP/1.1\r\nHost: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, rn->o.prefix, i, sub, c->io.ep.host, bn, body);
    if (n < 0 || (size_t)n >= c->io.wcap)
        die("request too large");
    c->io.wlen = (size_t)n;
}

/* ---- answers ---- */

static bool was_sent(const struct member *m, const struct report *r)
{
    for (uint8_t k = 0; k < m->n_sent; k++)
        if (m->sent[k].partition == r->partition && m->sent[k].epoch == r->epoch &&
            m->sent[k].released == r->released)
            return true;
    return false;
}

/* A full view: counts its entries and, for --resource, queues the reports
 * an agent whose copies and hand-offs finish at once would make. */
static void view_scan(struct run *rn, struct member *m, const char *a)
{
    m->held = 0;
    m->n_pending = 0;
    const char *p = json_value(a, "partitions");
    for (p = p != NULL ? json_value(p, "resource") : NULL; p != NULL;
         p = json_value(p, "resource")) {
        m->held++;
        char res[PREFIX_BYTES_MAX + 40], state[16];
        uint64_t part, epoch;
        if (rn->o.resource == NULL || !json_token(p, res, sizeof(res)) ||
            strcmp(res, rn->o.resource) != 0 || !json_u64(json_value(p, "partition"), &part) ||
            !json_token(json_value(p, "state"), state, sizeof(state)) ||
            !json_u64(json_value(p, "epoch"), &epoch))
            continue;
        struct report r = {.partition = (uint32_t)part, .epoch = epoch};
        if (strcmp(state, "releasing") == 0)
            r.released = true;
        else if (strcmp(state, "copying") != 0)
            continue;
        if (m->n_pending < REPORTS_MAX && !was_sent(m, &r))
            m->pending[m->n_pending++] = r;
    }
}

/* The reports a 2xx answer took: gone from pending, remembered as sent. */
static void reports_taken(struct member *m, uint8_t n)
{
    if (n == 0)
        return;
    memcpy(m->sent, m->pending, n * sizeof(m->pending[0]));
    m->n_sent = n;
    memmove(m->pending, m->pending + n, (size_t)(m->n_pending - n) * sizeof(m->pending[0]));
    m->n_pending = (uint8_t)(m->n_pending - n);
}

static void beat_answered(struct run *rn, struct conn *c, struct member *m, char *body,
                          bool measure)
{
    reports_taken(m, c->n_reports);
    if (measure)
        rn->s.reports += c->n_reports;
    const char *a = json_value(body, "assignment");
    uint64_t ix;
    if (a == NULL || *a != '{' || !json_u64(json_value(a, "index"), &ix)) {
        rn->s.views_none += measure;
        return;
    }
    m->index = ix;
    const char *un = json_value(a, "unchanged");
    if (un != NULL && strncmp(un, "true", 4) == 0) {
        rn->s.views_unchanged += measure;
        return;
    }
    rn->s.views_full += measure;
    view_scan(rn, m, a);
}

static void put_answered(struct run *rn, struct conn *c, struct member *m, int status, uint64_t t)
{
    hist_add(&rn->put_lat, (t - c->sent_ns) / 1000);
    if (status == 200) {
        rn->put_ok++;
        m->state = M_ACTIVE;
        m->index = 0;
        m->n_pending = m->n_sent = 0;
        if (!m->ever)
            rn->registered++;
        else if (c->phase == PHASE_MEASURE)
            rn->s.rejoins++;
        m->ever = true;
    } else if (status == 507 && !m->ever) {
        m->state = M_REFUSED;
        rn->refused++;
    } else {
        rn->put_err++;
    }
}

/* ---- connections ---- */

static void conn_fail(struct run *rn, struct conn *c, uint64_t *counter, const char *why)
{
    if (rn->o.verbose)
        hconn_warn(&c->io, why, &rn->verbose_left);
    if (c->phase == PHASE_MEASURE && c->kind == REQ_BEAT)
        (*counter)++;
    else if (c->kind == REQ_PUT)
        rn->put_err++;
    hconn_close(&c->io);
    c->slot++; /* that slot is lost, as a real member's heartbeat would be */
    c->retry_at_ns = now_ns() + RECONNECT_DELAY_NS;
}

/* Sends the connection's next slot when due, else sets when to look again. */
static void conn_next(struct run *rn, struct conn *c, uint64_t t)
{
    for (uint32_t tries = 0; tries < c->count; tries++, c->slot++) {
        uint32_t i = slot_member(c, c->slot);
        if (rn->m[i].state == M_REFUSED)
            continue;
        if (rn->phase == PHASE_DRAIN) {
            c->retry_at_ns = UINT64_MAX;
            return;
        }
        uint64_t due = slot_due(rn, c, c->slot);
        if (t < due) {
            c->retry_at_ns = due;
            return;
        }
        c->member = i;
        c->due_ns = due;
        c->phase = rn->phase;
        request_build(rn, c, i);
        if (c->phase == PHASE_MEASURE && c->kind == REQ_BEAT) {
            uint64_t lag = t - due;
            rn->s.sent++;
            hist_add(&rn->s.lag, lag / 1000);
            rn->s.late += lag > (uint64_t)rn->o.late_ms * 1000000ull;
        }
        c->sent_ns = now_ns();
        c->deadline_ns = c->sent_ns + (uint64_t)rn->o.timeout_ms * 1000000ull;
        const char *why;
        if (hconn_send(&c->io, &why) != 0)
            conn_fail(rn, c, &rn->s.err_conn, why);
        return;
    }
    c->retry_at_ns = UINT64_MAX; /* every member of it was refused */
}

/* NUL-terminates the body of a parsed response (in place when it can). */
static char *body_of(struct conn *c, const struct http_resp *r)
{
    static char copy[RBUF_BYTES_MAX + 1];
    if (!r->chunked && r->msg_len < c->io.rcap) {
        c->io.rbuf[r->msg_len] = '\0';
        return c->io.rbuf + r->head_len;
    }
    http_body(c->io.rbuf, r, copy, sizeof(copy));
    return copy;
}

static void conn_done(struct run *rn, struct conn *c, const struct http_resp *r)
{
    uint64_t t = now_ns();
    struct member *m = &rn->m[c->member];
    bool measure = c->phase == PHASE_MEASURE;
    if (c->kind == REQ_PUT) {
        put_answered(rn, c, m, r->status, t);
    } else if (r->status == 200) {
        if (measure) {
            rn->s.ok++;
            hist_add(&rn->s.lat, (t - c->sent_ns) / 1000);
        }
        beat_answered(rn, c, m, body_of(c, r), measure);
    } else {
        if (r->status == 409 || r->status == 404)
            m->state = M_NEW; /* dead (or unknown): register again, as a member would */
        if (measure) {
            rn->s.err_status++;
            rn->s.err_conflict += r->status == 409 || r->status == 404;
            rn->s.err_busy += r->status == 503;
        }
    }
    c->slot++;
    if (!hconn_finish(&c->io, r)) {
        c->retry_at_ns = t;
        return;
    }
    conn_next(rn, c, t);
}

static void conn_event(struct run *rn, struct conn *c, uint32_t events)
{
    struct http_resp r;
    const char *why = NULL;
    switch (hconn_event(&c->io, events, &r, &why)) {
    case HCONN_MORE:
        return;
    case HCONN_FAILED:
        conn_fail(rn, c, &rn->s.err_conn, why);
        return;
    case HCONN_IDLE_CLOSED:
        c->retry_at_ns = now_ns();
        return;
    case HCONN_RESPONSE:
        conn_done(rn, c, &r);
        return;
    }
}

/* ---- the run ---- */

static bool in_flight(const struct conn *c)
{
    return c->io.state != CONN_IDLE;
}

/* Slots due before t that the connections have not reached. */
static uint64_t backlog(const struct run *rn, uint64_t t)
{
    uint64_t k = 0;
    for (uint32_t i = 0; i < rn->o.conns; i++) {
        const struct conn *c = &rn->conns[i];
        uint64_t start = rn->t0_ns + c->phase_ns;
        if (c->retry_at_ns == UINT64_MAX || t <= start)
            continue;
        uint64_t due_slots = (t - start) * c->count / rn->period_ns + 1;
        k += due_slots > c->slot ? due_slots - c->slot : 0;
    }
    return k;
}

/* Slot 0 of connection i is due at t0 + phase: the connections' slots
 * interleave evenly within one slot gap. */
static uint64_t phase_of(const struct run *rn, uint32_t i, uint32_t count)
{
    return (uint64_t)i * rn->period_ns / ((uint64_t)rn->o.conns * count);
}

/* After the registration: the schedule starts over at t over the members
 * the leader took (the refused ones' slots would leave gaps, and since
 * the first members of every connection are the ones taken, all the
 * connections' gaps would fall at the same time: bursts). */
static void schedule_restart(struct run *rn, struct conn *c, uint64_t t)
{
    uint32_t k = 0;
    for (uint32_t j = 0; j < c->count; j++)
        if (rn->m[c->list[j]].state != M_REFUSED)
            c->list[k++] = c->list[j];
    c->slot = 0;
    if (k == 0) {
        c->retry_at_ns = UINT64_MAX; /* every member of it was refused */
        return;
    }
    c->count = k;
    c->phase_ns = phase_of(rn, (uint32_t)(c - rn->conns), k);
    if (!in_flight(c))
        c->retry_at_ns = t;
}

/* Advances the phase; returns false when the run is over. */
static bool phase_step(struct run *rn, uint64_t t)
{
    if (rn->phase == PHASE_REGISTER &&
        (rn->registered + rn->refused >= rn->o.members || t >= rn->register_end_ns)) {
        rn->phase = PHASE_WARMUP;
        rn->register_end_ns = t;
        rn->warmup_end_ns = t + (uint64_t)(rn->o.warmup_s * 1e9);
        /* The schedule starts over now: the slots the registration's PUTs
         * delayed are not sent in a burst. */
        rn->t0_ns = t;
        for (uint32_t i = 0; i < rn->o.conns; i++)
            schedule_restart(rn, &rn->conns[i], t);
    }
    if (rn->phase == PHASE_WARMUP && t >= rn->warmup_end_ns) {
        rn->phase = PHASE_MEASURE;
        rn->measure_start_ns = t;
        rn->measure_end_ns = t + (uint64_t)(rn->o.duration_s * 1e9);
    }
    if (rn->phase == PHASE_MEASURE && t >= rn->measure_end_ns) {
        rn->phase = PHASE_DRAIN;
        rn->measure_end_ns = t;
        rn->backlog_at_end = backlog(rn, t);
        rn->hard_end_ns = t + (uint64_t)rn->o.timeout_ms * 1000000ull;
    }
    if (rn->phase != PHASE_DRAIN)
        return true;
    if (t >= rn->hard_end_ns)
        return false;
    for (uint32_t i = 0; i < rn->o.conns; i++)
        if (in_flight(&rn->conns[i]) && rn->conns[i].phase == PHASE_MEASURE)
            return true;
    return false;
}

static void run_loop(struct run *rn)
{
    static struct epoll_event evs[CONNS_MAX];
    rn->start_ns = rn->t0_ns = now_ns();
    rn->register_end_ns = rn->start_ns + (uint64_t)(rn->o.register_timeout_s * 1e9);
    rn->phase = PHASE_REGISTER;
    for (;;) {
        uint64_t t = now_ns();
        if (!phase_step(rn, t))
            break;
        uint64_t wake = t + 10000000ull; /* 10 ms: timeouts and phases */
        for (uint32_t i = 0; i < rn->o.conns; i++) {
            struct conn *c = &rn->conns[i];
            if (in_flight(c) && t >= c->deadline_ns)
                conn_fail(rn, c, &rn->s.err_timeout, "timeout");
            else if (!in_flight(c) && t >= c->retry_at_ns)
                conn_next(rn, c, t);
            if (!in_flight(c) && c->retry_at_ns < wake)
                wake = c->retry_at_ns;
        }
        int ms = wake > t ? (int)((wake - t + 999999) / 1000000) : 0;
        int n = epoll_wait(rn->epfd, evs, (int)rn->o.conns, ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++)
            conn_event(rn, &rn->conns[evs[i].data.u32], evs[i].events);
    }
}

static void report(const struct run *rn)
{
    const struct stats *s = &rn->s;
    uint64_t span =
        rn->measure_end_ns > rn->measure_start_ns ? rn->measure_end_ns - rn->measure_start_ns : 1;
    double secs = (double)span / 1e9;
    uint64_t holding = 0, held = 0;
    for (uint32_t i = 0; i < rn->o.members; i++) {
        holding += rn->m[i].held > 0;
        held += rn->m[i].held;
    }
    uint32_t active = rn->o.members - rn->refused;
    printf("{\"members\":%" PRIu32 ",\"registered\":%" PRIu32 ",\"refused_full\":%" PRIu32
           ",\"register_complete\":%s,\"register_s\":%.3f,\"put_ok\":%" PRIu64
           ",\"put_errors\":%" PRIu64 ",\"put_p50_ms\":%.3f,\"put_p99_ms\":%.3f"
           ",\"conns\":%" PRIu32 ",\"rate_per_member\":%.3f,\"target_per_s\":%.1f"
           ",\"seconds\":%.3f,\"sent\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"achieved_per_s\":%.1f"
           ",\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f"
           ",\"late_ms\":%" PRIu32 ",\"late\":%" PRIu64 ",\"lag_p99_ms\":%.3f,\"lag_max_ms\":%.3f"
           ",\"backlog_at_end\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"errors_status\":%" PRIu64
           ",\"errors_conflict\":%" PRIu64 ",\"errors_busy\":%" PRIu64 ",\"errors_conn\":%" PRIu64
           ",\"errors_timeout\":%" PRIu64 ",\"rejoins\":%" PRIu64 ",\"views_unchanged\":%" PRIu64
           ",\"views_full\":%" PRIu64 ",\"views_none\":%" PRIu64 ",\"reports\":%" PRIu64
           ",\"resource\":%s%s%s,\"members_holding\":%" PRIu64 ",\"partitions_held\":%" PRIu64
           ",\"measure_start_s\":%.6f,\"measure_end_s\":%.6f}\n",
           rn->o.members, rn->registered, rn->refused,
           rn->registered + rn->refused >= rn->o.members ? "true" : "false",
           (double)(rn->register_end_ns - rn->start_ns) / 1e9, rn->put_ok, rn->put_err,
           hist_quantile_ms(&rn->put_lat, 0.50), hist_quantile_ms(&rn->put_lat, 0.99), rn->o.conns,
           rn->o.rate, (double)active * rn->o.rate, secs, s->sent, s->ok, (double)s->ok / secs,
           hist_mean_ms(&s->lat), hist_quantile_ms(&s->lat, 0.50), hist_quantile_ms(&s->lat, 0.90),
           hist_quantile_ms(&s->lat, 0.99), (double)s->lat.max_us / 1000.0, rn->o.late_ms, s->late,
           hist_quantile_ms(&s->lag, 0.99), (double)s->lag.max_us / 1000.0, rn->backlog_at_end,
           s->err_status + s->err_conn + s->err_timeout, s->err_status, s->err_conflict,
           s->err_busy, s->err_conn, s->err_timeout, s->rejoins, s->views_unchanged, s->views_full,
           s->views_none, s->reports, rn->o.resource ? "\"" : "",
           rn->o.resource ? rn->o.resource : "null", rn->o.resource ? "\"" : "", holding, held,
           (double)rn->measure_start_ns / 1e9, (double)rn->measure_end_ns / 1e9);
}

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: corral-memberload --url http://HOST:PORT --members N\n"
                    "  [--rate-per-member 4] [--conns 256] [--duration-s 10] [--warmup-s 3]\n"
                    "  [--register-timeout-s 120] [--timeout-ms 5000] [--late-ms 25]\n"
                    "  [--resource NAME] [--prefix m] [--verbose]\n");
    exit(2);
}

static double num(const char *s, double lo, double hi)
{
    double v;
    if (!arg_num(s, lo, hi, &v))
        usage();
    return v;
}

/* [a-z0-9._-], as the API's names. */
static bool name_chars(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.prefix = "m",
                       .conns = 256,
                       .timeout_ms = 5000,
                       .late_ms = 25,
                       .rate = 4,
                       .duration_s = 10,
                       .warmup_s = 3,
                       .register_timeout_s = 120};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (v == NULL)
            usage();
        if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--members") == 0)
            o->members = (uint32_t)num(v, 1, MEMBERS_MAX);
        else if (strcmp(a, "--rate-per-member") == 0)
            o->rate = num(v, 0.01, 100);
        else if (strcmp(a, "--conns") == 0)
            o->conns = (uint32_t)num(v, 1, CONNS_MAX);
        else if (strcmp(a, "--duration-s") == 0)
            o->duration_s = num(v, 0.1, 3600);
        else if (strcmp(a, "--warmup-s") == 0)
            o->warmup_s = num(v, 0, 600);
        else if (strcmp(a, "--register-timeout-s") == 0)
            o->register_timeout_s = num(v, 1, 600);
        else if (strcmp(a, "--timeout-ms") == 0)
            o->timeout_ms = (uint32_t)num(v, 1, 600000);
        else if (strcmp(a, "--late-ms") == 0)
            o->late_ms = (uint32_t)num(v, 0, 60000);
        else if (strcmp(a, "--resource") == 0 && name_chars(v, PREFIX_BYTES_MAX))
            o->resource = v;
        else if (strcmp(a, "--prefix") == 0 && name_chars(v, PREFIX_BYTES_MAX))
            o->prefix = v;
        else
            usage();
    }
    if (o->url == NULL || o->members == 0)
        usage();
    if (o->conns > o->members)
        o->conns = o->members;
}

int main(int argc, char **argv)
{
    static struct run rn;
    httpc_prog = "corral-memberload";
    parse_args(argc, argv, &rn.o);
    signal(SIGPIPE, SIG_IGN);
    if (endpoint_parse(rn.o.url, &rn.ep) != 0)
        die("bad --url (want http://HOST:PORT)");
    rn.verbose_left = 20;
    rn.period_ns = (uint64_t)(1e9 / rn.o.rate);
    rn.m = calloc(rn.o.members, sizeof(*rn.m));
    rn.conns = calloc(rn.o.conns, sizeof(*rn.conns));
    rn.epfd = epoll_create1(0);
    if (rn.m == NULL || rn.conns == NULL || rn.epfd < 0)
        die("out of memory or epoll");
    for (uint32_t i = 0; i < rn.o.conns; i++) {
        struct conn *c = &rn.conns[i];
        if (hconn_init(&c->io, rn.epfd, i, &rn.ep, REQ_BYTES_MAX) != 0)
            die("out of memory");
        c->count = (rn.o.members - i + rn.o.conns - 1) / rn.o.conns;
        c->list = malloc(c->count * sizeof(*c->list));
        if (c->list == NULL)
            die("out of memory");
        for (uint32_t j = 0; j < c->count; j++)
            c->list[j] = i + j * rn.o.conns;
        c->phase_ns = phase_of(&rn, i, c->count);
    }
    run_loop(&rn);
    report(&rn);
    for (uint32_t i = 0; i < rn.o.conns; i++) {
        hconn_free(&rn.conns[i].io);
        free(rn.conns[i].list);
    }
    close(rn.epfd);
    free(rn.conns);
    free(rn.m);
    return rn.s.ok > 0 ? 0 : 1;
}
