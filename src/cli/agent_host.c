/* `corral agent`'s main loop (agent_impl.h): registers the member,
 * heartbeats to the leader, watches the member's assignment, feeds all of
 * it to the pure agent (core/agent.h) and runs the hooks it asks for, then
 * stops on SIGTERM or SIGINT. The order of the agent calls is the
 * simulator's (tests/sim/sim_worker.c): after every call the queued hooks
 * are taken and the timer is re-armed at corral_agent_next_wakeup(). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/agent_impl.h"
#include "cli/cli.h"
#include "corral.h"
#include "runtime/log.h"

/* Before the first answer says otherwise (docs/api.md defaults). */
#define LEASE_MS_DEFAULT 1000u
#define HEARTBEAT_MS_DEFAULT 250u
#define HEARTBEAT_MS_MIN 10u
#define HEARTBEAT_MS_MAX 60000u
/* A heartbeat waits at most min(lease / 2, this) for its answer, so that a
 * dead leader does not hold up the next one past the lease. */
#define HEARTBEAT_TIMEOUT_MS_MAX 1000u
#define HEARTBEAT_TIMEOUT_MS_MIN 50u
/* The watch asks the node to hold it this long; the request gives up a
 * little later. */
#define WATCH_WAIT_S 30
#define WATCH_TIMEOUT_MS ((WATCH_WAIT_S + 5) * 1000L)
/* An answer that brings nothing new is not asked again before this. */
#define WATCH_SPACING_MS 250u
/* Registration and drain are Raft writes: above the server's 5 s
 * request timeout, so its 503 timeout arrives. */
#define WRITE_TIMEOUT_MS 10000L
/* Retries after a failure: doubling from the base up to the max. */
#define RETRY_BASE_MS 250u
#define RETRY_MAX_MS 5000u
#define DRAIN_RETRY_MS 1000u
/* A failure that repeats is logged at most this often. */
#define FAILURE_LOG_MS 10000u
/* The last heartbeat at exit may take this long. */
#define FINAL_HEARTBEAT_MS 3000u

static int signal_fd = -1;
static volatile sig_atomic_t signal_stops; /* SIGTERM and SIGINT received */

static void on_signal(int sig)
{
    int saved = errno;
    if (sig != SIGCHLD)
        signal_stops++;
    ssize_t n = write(signal_fd, "s", 1);
    (void)n; /* a full pipe has a wake-up pending already */
    errno = saved;
}

uint64_t agent_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t backoff_ms(uint32_t failures)
{
    uint64_t d = RETRY_BASE_MS;
    for (uint32_t k = 1; k < failures && d < RETRY_MAX_MS; k++)
        d *= 2;
    return d < RETRY_MAX_MS ? d : RETRY_MAX_MS;
}

__attribute__((format(printf, 3, 4))) static void failing(struct agent_failing *f, uint64_t now,
                                                          const char *fmt, ...)
{
    f->count++;
    if (f->count > 1 && now - f->logged_ms < FAILURE_LOG_MS) {
        f->suppressed++;
        return;
    }
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (f->suppressed > 0)
        corral_log(CORRAL_LOG_WARN, "%s (%" PRIu32 " more failures since the last report)", msg,
                   f->suppressed);
    else
        corral_log(CORRAL_LOG_WARN, "%s", msg);
    f->logged_ms = now;
    f->suppressed = 0;
}

static void recovered(struct agent_failing *f, const char *what)
{
    if (f->count > 0)
        corral_log(CORRAL_LOG_INFO, "%s again after %" PRIu32 " failure(s)", what, f->count);
    *f = (struct agent_failing){0};
}

/* "HTTP 503 no_leader: message" for a log line. */
static void answer_text(const struct corral_client_response *r, char *buf, size_t len)
{
    snprintf(buf, len, "HTTP %ld %s: %.200s from %.200s", r->status,
             r->code != NULL ? r->code : "(no error code)", r->message != NULL ? r->message : "",
             r->url);
}

static json_int_t int_or(const json_t *o, const char *key, json_int_t dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* After every agent call: run what it queued, and a report waiting means
 * a heartbeat now rather than at the next period (the hand-off waits on
 * it), as tests/sim/sim_worker.c does. */
static void settle(struct host *x)
{
    agent_hooks_take(x);
    struct corral_agent_stats st;
    corral_agent_stats(x->agent, &st);
    if (st.reports_pending > x->reports_seen)
        x->hb_early = true;
    x->reports_seen = st.reports_pending;
}

/* ---- Desired sets ---- */

static void set_desired(struct host *x, uint64_t index, struct corral_agent_entry *e, uint32_t n,
                        bool take, const char *source)
{
    uint64_t now = agent_now_ms();
    uint64_t before = corral_agent_index(x->agent);
    int rv = corral_agent_set_desired(x->agent, now, index, e, n);
    if (rv == 0 && take) {
        free(x->inforce);
        x->inforce = e;
        x->n_inforce = n;
        e = NULL;
    }
    if (rv == 0 && index != before)
        corral_log(CORRAL_LOG_DEBUG, "%s: desired set at index %" PRIu64 ": %" PRIu32 " entries",
                   source, index, n);
    else if (rv == CORRAL_EINVAL && index < before)
        corral_log(CORRAL_LOG_DEBUG, "%s: index %" PRIu64 " is older than %" PRIu64, source, index,
                   before);
    else if (rv != 0)
        corral_log(CORRAL_LOG_WARN,
                   "%s: the agent refused the desired set at index %" PRIu64 ": %s", source, index,
                   corral_strerror(rv));
    if (take)
        free(e);
    settle(x);
}

/* A view's JSON ({"index":N,"partitions":[...]}, the watch answer or a
 * heartbeat's assignment) into the agent. */
static void apply_view(struct host *x, const json_t *view, const char *source)
{
    json_int_t index = int_or(view, "index", -1);
    if (index < 0) {
        corral_log(CORRAL_LOG_WARN, "%s: an assignment without an index", source);
        return;
    }
    if ((uint64_t)index < corral_agent_index(x->agent))
        return; /* a late answer to an older question */
    struct agent_view v;
    char err[256];
    if (agent_view_parse(json_object_get(view, "partitions"), &x->resources, &x->members, &v, err,
                         sizeof(err)) != 0) {
        corral_log(CORRAL_LOG_WARN,
                   "%s: refused the assignment at index %" JSON_INTEGER_FORMAT ": %s", source,
                   index, err);
        return;
    }
    set_desired(x, (uint64_t)index, v.e, v.n, true, source);
}

/* ---- Registration and drain (the ctl thread) ---- */

static void submit_ctl(struct host *x, uint8_t what, const char *method, const char *suffix,
                       const char *body)
{
    struct agent_req_job job = {
        .method = method, .timeout_ms = WRITE_TIMEOUT_MS, .rotate = x->ctl_rotate};
    snprintf(job.path, sizeof(job.path), "/v1/members/%s%s", x->o->name, suffix);
    if (body != NULL) {
        job.body_len = strlen(body);
        if ((job.body = malloc(job.body_len + 1)) == NULL)
            return;
        memcpy(job.body, body, job.body_len + 1);
    }
    agent_req_submit(&x->ctl, &job);
    x->ctl_job = what;
    x->ctl_rotate = false;
}

static void schedule_ctl(struct host *x, uint64_t now)
{
    if (x->ctl.busy)
        return;
    if (!x->registered && x->phase <= AGENT_DRAIN && now >= x->reg_at_ms)
        submit_ctl(x, AGENT_CTL_REGISTER, "PUT", "", x->reg_body);
    else if (x->phase == AGENT_DRAIN && x->registered && !x->drained && now >= x->drain_at_ms)
        submit_ctl(x, AGENT_CTL_DRAIN, "POST", "/drain", "{}");
}

static void begin_stop(struct host *x, uint64_t now);

static void registered(struct host *x, const struct corral_client_response *r, uint64_t now)
{
    char text[512];
    if (r->status == 200) {
        x->registered = x->ever_registered = true;
        x->hb_early = true; /* the first heartbeat at once */
        recovered(&x->reg_fail, "registration succeeded");
        corral_log(CORRAL_LOG_INFO, "registered as %s (member id %" JSON_INTEGER_FORMAT ")",
                   x->o->name, int_or(r->json, "id", 0));
        return;
    }
    answer_text(r, text, sizeof(text));
    if (r->status == 400) {
        /* The same body would be refused again: our flags are wrong. Stop
         * (or end the drain) and exit with 1. */
        corral_log(CORRAL_LOG_ERROR, "the coordinators refused the registration: %s", text);
        x->exit_code = CORRAL_EXIT_FAILURE;
        x->reg_at_ms = UINT64_MAX;
        x->drain_deadline_ms = now;
        begin_stop(x, now);
        return;
    }
    failing(&x->reg_fail, now, "registration failed: %s; retrying", text);
    x->reg_at_ms = now + backoff_ms(x->reg_fail.count);
}

static void drain_answered(struct host *x, const struct corral_client_response *r, uint64_t now)
{
    char text[512];
    if (r->status == 200) {
        x->drained = true;
        corral_log(CORRAL_LOG_INFO,
                   "draining: waiting up to %" PRIu64 " ms for the partitions "
                   "to move away",
                   x->drain_deadline_ms > now ? x->drain_deadline_ms - now : 0);
        return;
    }
    answer_text(r, text, sizeof(text));
    corral_log(CORRAL_LOG_WARN, "drain failed: %s; retrying", text);
    x->drain_at_ms = now + DRAIN_RETRY_MS;
}

static void take_ctl(struct host *x)
{
    int rv;
    char err[512];
    struct corral_client_response r;
    if (!agent_req_take(&x->ctl, &rv, err, sizeof(err), &r))
        return;
    uint64_t now = agent_now_ms();
    uint8_t what = x->ctl_job;
    x->ctl_job = AGENT_CTL_NONE;
    /* Whatever went wrong, the next write starts at another node. */
    x->ctl_rotate = rv != 0 || r.status != 200;
    if (rv != 0 && what == AGENT_CTL_REGISTER) {
        failing(&x->reg_fail, now, "registration failed: %s; retrying", err);
        x->reg_at_ms = now + backoff_ms(x->reg_fail.count);
    } else if (rv != 0) {
        corral_log(CORRAL_LOG_WARN, "drain failed: %s; retrying", err);
        x->drain_at_ms = now + DRAIN_RETRY_MS;
    } else if (what == AGENT_CTL_REGISTER) {
        registered(x, &r, now);
    } else {
        drain_answered(x, &r, now);
    }
    corral_client_response_free(&r);
}

/* ---- Heartbeats ---- */

static void send_heartbeat(struct host *x, uint64_t now)
{
    static struct corral_agent_report reports[AGENT_REPORTS_PER_HEARTBEAT_MAX];
    uint32_t n = 0, unnamed = 0;
    uint64_t index = corral_agent_index(x->agent);
    /* The lease counts from here (agent.h A1): before the request leaves
     * is the safe side. */
    uint64_t seq =
        corral_agent_heartbeat_sent(x->agent, now, reports, AGENT_REPORTS_PER_HEARTBEAT_MAX, &n);
    x->hb_next_ms = now + x->heartbeat_ms;
    x->hb_early = false;
    struct agent_req_job job = {.method = "POST", .rotate = x->hb_rotate};
    job.body =
        agent_heartbeat_body(index, reports, n, &x->resources, x->o->hook_timeout_ms, &unnamed);
    if (job.body == NULL) {
        corral_log(CORRAL_LOG_ERROR, "out of memory building a heartbeat");
        settle(x);
        return;
    }
    if (unnamed > 0)
        corral_log(CORRAL_LOG_WARN, "%" PRIu32 " report(s) name a resource of unknown name",
                   unnamed);
    job.body_len = strlen(job.body);
    snprintf(job.path, sizeof(job.path), "/v1/members/%s/heartbeat", x->o->name);
    uint32_t t = x->lease_ms / 2;
    job.timeout_ms = t > HEARTBEAT_TIMEOUT_MS_MAX   ? HEARTBEAT_TIMEOUT_MS_MAX
                     : t < HEARTBEAT_TIMEOUT_MS_MIN ? HEARTBEAT_TIMEOUT_MS_MIN
                                                    : t;
    agent_req_submit(&x->hb, &job);
    x->hb_seq = seq;
    x->hb_index = index;
    x->hb_rotate = false;
    settle(x);
}

static void schedule_heartbeat(struct host *x, uint64_t now)
{
    if (!x->registered || x->hb.busy || x->phase == AGENT_EXIT)
        return;
    if (x->phase == AGENT_FINAL) {
        if (!x->final_sent) {
            x->final_sent = true;
            send_heartbeat(x, now);
        }
        return;
    }
    if (x->hb_early || now >= x->hb_next_ms)
        send_heartbeat(x, now);
}

/* --lease-file: the lease end, written to a temporary file renamed over
 * PATH, so a reader sees the old value or the new one, never a part. */
static void lease_file_update(struct host *x)
{
    uint64_t end = corral_agent_lease_end(x->agent);
    if (x->o->lease_file == NULL || end == x->lease_file_end)
        return;
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", x->o->lease_file) >= (int)sizeof(tmp))
        return;
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL && fprintf(f, "%" PRIu64 "\n", end) > 0;
    ok = (f != NULL && fclose(f) == 0) && ok;
    if (ok && rename(tmp, x->o->lease_file) == 0) {
        x->lease_file_end = end;
        return;
    }
    failing(&x->lease_file_fail, agent_now_ms(), "--lease-file %s: cannot write it",
            x->o->lease_file);
}

static void leased(struct host *x, const json_t *j, uint64_t now)
{
    json_int_t lease = int_or(j, "lease_ms", -1);
    json_int_t index = int_or(j, "index", 0);
    json_int_t period = int_or(j, "heartbeat_ms", x->heartbeat_ms);
    if (lease < 0 || lease > UINT32_MAX || index < 0) {
        failing(&x->hb_fail, now, "heartbeat: an answer without a valid lease_ms or index");
        return;
    }
    recovered(&x->hb_fail, "heartbeats answered");
    corral_agent_heartbeat_answered(x->agent, x->hb_seq, (uint32_t)lease, (uint64_t)index, now);
    lease_file_update(x);
    settle(x);
    if (lease > 0)
        x->lease_ms = (uint32_t)lease;
    x->heartbeat_ms = period < HEARTBEAT_MS_MIN   ? HEARTBEAT_MS_MIN
                      : period > HEARTBEAT_MS_MAX ? HEARTBEAT_MS_MAX
                                                  : (uint32_t)period;
    const json_t *a = json_object_get(j, "assignment");
    if (!json_is_object(a))
        return; /* the leader cannot tell yet */
    if (!json_is_true(json_object_get(a, "unchanged"))) {
        apply_view(x, a, "heartbeat");
        return;
    }
    /* "Still the view you named": only if that is still the one in force
     * (a watch answer may have replaced it since). */
    json_int_t ai = int_or(a, "index", -1);
    if (ai >= 0 && corral_agent_index(x->agent) == x->hb_index && (uint64_t)ai >= x->hb_index)
        set_desired(x, (uint64_t)ai, x->inforce, x->n_inforce, false, "heartbeat");
}

static void take_heartbeat(struct host *x)
{
    int rv;
    char err[512], text[512];
    struct corral_client_response r;
    if (!agent_req_take(&x->hb, &rv, err, sizeof(err), &r))
        return;
    uint64_t now = agent_now_ms();
    if (rv != 0) {
        failing(&x->hb_fail, now, "heartbeat failed: %s", err);
    } else if (r.status == 200 && json_is_object(r.json)) {
        leased(x, r.json, now);
    } else if (r.status == 404 || r.status == 409) {
        answer_text(&r, text, sizeof(text));
        corral_log(CORRAL_LOG_WARN, "heartbeat: %s; registering again", text);
        x->registered = false;
        x->reg_at_ms = now;
    } else {
        answer_text(&r, text, sizeof(text));
        failing(&x->hb_fail, now, "heartbeat: %s", text);
        x->hb_rotate = true;
    }
    corral_client_response_free(&r);
    if (x->phase == AGENT_FINAL && x->final_sent)
        x->phase = AGENT_EXIT;
}

/* ---- The watch ---- */

static void schedule_watch(struct host *x, uint64_t now)
{
    if (!x->ever_registered || x->watch.busy || now < x->watch_at_ms || x->phase >= AGENT_FINAL)
        return;
    uint64_t index = corral_agent_index(x->agent);
    if (x->watch_index > index)
        index = x->watch_index;
    struct agent_req_job job = {
        .method = "GET", .timeout_ms = WATCH_TIMEOUT_MS, .rotate = x->watch_rotate};
    snprintf(job.path, sizeof(job.path), "/v1/members/%s/assignment", x->o->name);
    snprintf(job.query, sizeof(job.query), "index=%" PRIu64 "&wait=%ds", index, WATCH_WAIT_S);
    agent_req_submit(&x->watch, &job);
    x->watch_asked = index;
    x->watch_rotate = false;
}

static void take_watch(struct host *x)
{
    int rv;
    char err[512], text[512];
    struct corral_client_response r;
    if (!agent_req_take(&x->watch, &rv, err, sizeof(err), &r))
        return;
    uint64_t now = agent_now_ms();
    if (rv == 0 && r.status == 200 && json_is_object(r.json)) {
        recovered(&x->watch_fail, "the assignment watch answered");
        json_int_t index = int_or(r.json, "index", -1);
        apply_view(x, r.json, "watch");
        if (index > 0 && (uint64_t)index > x->watch_index)
            x->watch_index = (uint64_t)index;
        x->watch_at_ms =
            index > 0 && (uint64_t)index > x->watch_asked ? now : now + WATCH_SPACING_MS;
    } else {
        if (rv != 0) {
            failing(&x->watch_fail, now, "assignment watch failed: %s", err);
        } else {
            answer_text(&r, text, sizeof(text));
            failing(&x->watch_fail, now, "assignment watch: %s", text);
            x->watch_rotate = r.status != 404;
        }
        x->watch_at_ms = now + backoff_ms(x->watch_fail.count);
    }
    corral_client_response_free(&r);
}

/* ---- Stopping ---- */

static void begin_stop(struct host *x, uint64_t now)
{
    if (x->phase != AGENT_RUN)
        return;
    struct corral_agent_stats st;
    corral_agent_stats(x->agent, &st);
    if (x->o->drain_on_stop && x->registered && st.desired > 0) {
        x->phase = AGENT_DRAIN;
        x->drain_at_ms = now;
        x->drain_deadline_ms = now + x->o->drain_timeout_ms;
        corral_log(CORRAL_LOG_INFO, "stopping: draining %" PRIu32 " partition(s) first",
                   st.desired);
        return;
    }
    x->phase = AGENT_STOP;
    corral_log(CORRAL_LOG_INFO, "stopping: releasing %" PRIu32 " partition(s)", st.held);
    corral_agent_shutdown(x->agent, now);
    settle(x);
}

/* Moves through the phases of stopping as their conditions come true. */
static void step_phase(struct host *x, uint64_t now)
{
    struct corral_agent_stats st;
    corral_agent_stats(x->agent, &st);
    if (x->phase == AGENT_DRAIN &&
        ((x->drained && st.desired == 0) || now >= x->drain_deadline_ms)) {
        if (st.desired > 0)
            corral_log(CORRAL_LOG_WARN,
                       "drain: %" PRIu32 " partition(s) still here after %" PRIu64
                       " ms; stopping anyway",
                       st.desired, x->o->drain_timeout_ms);
        x->phase = AGENT_STOP;
        corral_log(CORRAL_LOG_INFO, "stopping: releasing %" PRIu32 " partition(s)", st.held);
        corral_agent_shutdown(x->agent, now);
        settle(x);
    }
    if (x->phase == AGENT_STOP && corral_agent_shutdown_done(x->agent)) {
        x->phase = x->registered ? AGENT_FINAL : AGENT_EXIT;
        x->final_deadline_ms = now + FINAL_HEARTBEAT_MS;
    }
    if (x->phase == AGENT_FINAL && !x->registered) {
        x->phase = AGENT_EXIT; /* a 404 since: nobody to tell */
    } else if (x->phase == AGENT_FINAL && now >= x->final_deadline_ms) {
        corral_log(CORRAL_LOG_WARN, "the last heartbeat did not complete in time");
        x->phase = AGENT_EXIT;
    }
}

/* ---- The loop ---- */

static uint64_t earliest(struct host *x)
{
    uint64_t t = corral_agent_next_wakeup(x->agent);
    uint64_t d = agent_hooks_next_deadline(x);
    t = d < t ? d : t;
    if (x->registered && !x->hb.busy) {
        d = x->hb_early || x->phase == AGENT_FINAL ? 0 : x->hb_next_ms;
        t = d < t ? d : t;
    }
    if (!x->ctl.busy && !x->registered && x->phase <= AGENT_DRAIN)
        t = x->reg_at_ms < t ? x->reg_at_ms : t;
    if (!x->ctl.busy && x->phase == AGENT_DRAIN && !x->drained)
        t = x->drain_at_ms < t ? x->drain_at_ms : t;
    if (x->phase == AGENT_DRAIN)
        t = x->drain_deadline_ms < t ? x->drain_deadline_ms : t;
    if (!x->watch.busy && x->ever_registered && x->phase < AGENT_FINAL)
        t = x->watch_at_ms < t ? x->watch_at_ms : t;
    if (x->phase == AGENT_FINAL)
        t = x->final_deadline_ms < t ? x->final_deadline_ms : t;
    return t;
}

static void wait_events(struct host *x)
{
    uint64_t now = agent_now_ms();
    uint64_t t = earliest(x);
    int timeout = t <= now ? 0 : t - now > 60000 ? 60000 : (int)(t - now);
    struct pollfd p = {.fd = x->wake_r, .events = POLLIN};
    if (poll(&p, 1, timeout) > 0) {
        char buf[256];
        while (read(x->wake_r, buf, sizeof(buf)) > 0)
            ;
    }
}

static int loop(struct host *x)
{
    for (;;) {
        wait_events(x);
        if (signal_stops > x->signals_seen) {
            x->signals_seen = signal_stops;
            if (x->signals_seen > 1) {
                corral_log(CORRAL_LOG_WARN,
                           "signalled again: killing %" PRIu32
                           " running hook(s) and exiting at once",
                           x->hooks.n_run);
                agent_hooks_kill_all(x);
                return CORRAL_EXIT_FAILURE;
            }
            corral_log(CORRAL_LOG_INFO, "signalled: stopping");
            begin_stop(x, agent_now_ms());
        }
        agent_hooks_poll(x);
        take_ctl(x);
        take_heartbeat(x);
        take_watch(x);
        uint64_t now = agent_now_ms();
        if (now >= corral_agent_next_wakeup(x->agent))
            corral_agent_tick(x->agent, now);
        settle(x);
        step_phase(x, now);
        if (x->phase == AGENT_EXIT)
            return x->exit_code;
        schedule_ctl(x, now);
        schedule_heartbeat(x, now);
        schedule_watch(x, now);
    }
}

static char *registration_body(const struct agent_opts *o)
{
    json_t *meta = json_loads(o->meta_json, 0, NULL);
    json_t *body =
        json_pack("{s:s,s:s,s:s,s:I,s:o}", "role", "worker", "addr", o->addr, "zone", o->zone,
                  "weight", (json_int_t)o->weight, "meta", meta != NULL ? meta : json_object());
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

static int setup(struct host *x)
{
    char err[512];
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "corral agent: pipe: %s\n", strerror(errno));
        return -1;
    }
    x->wake_r = fds[0];
    x->wake_w = signal_fd = fds[1];
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    json_object_seed(0); /* once, before the threads parse JSON */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The request threads take no signals: they all come to this one. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rv = agent_req_start(&x->ctl, "registration", x->o->coordinators, x->o->token_file,
                             x->wake_w, err, sizeof(err));
    if (rv == 0)
        rv = agent_req_start(&x->hb, "heartbeat", x->o->coordinators, x->o->token_file, x->wake_w,
                             err, sizeof(err));
    if (rv == 0)
        rv = agent_req_start(&x->watch, "watch", x->o->coordinators, x->o->token_file, x->wake_w,
                             err, sizeof(err));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        fprintf(stderr, "corral agent: %s\n", err);
        return -1;
    }
    struct corral_agent_config cfg;
    corral_agent_config_default(&cfg);
    if (corral_agent_new(&cfg, &x->agent) != 0 || (x->reg_body = registration_body(x->o)) == NULL) {
        fprintf(stderr, "corral agent: out of memory\n");
        return -1;
    }
    return 0;
}

int corral_agent_host_run(const struct agent_opts *o)
{
    /* Large (the hook table): off the stack. One per process. */
    static struct host x;
    memset(&x, 0, sizeof(x));
    x.o = o;
    x.lease_ms = LEASE_MS_DEFAULT;
    x.heartbeat_ms = HEARTBEAT_MS_DEFAULT;
    x.exit_code = CORRAL_EXIT_OK;
    char label[96];
    snprintf(label, sizeof(label), "member %s", o->name);
    corral_log_setup_label(o->log_level, label);
    if (setup(&x) != 0)
        return CORRAL_EXIT_FAILURE;
    corral_log(CORRAL_LOG_INFO, "starting: coordinators %s, addr %s, zone '%s', weight %" PRIu32,
               o->coordinators, o->addr, o->zone, o->weight);
    int rc = loop(&x);
    if (rc == CORRAL_EXIT_OK)
        corral_log(CORRAL_LOG_INFO, "stopped");
    /* The request threads may be inside a request (the watch waits up to
     * 35 s): they are left to end with the process, and what they own
     * with them. */
    corral_agent_free(x.agent);
    agent_hooks_free(&x);
    agent_names_free(&x.resources);
    agent_names_free(&x.members);
    free(x.inforce);
    free(x.reg_body);
    return rc;
}
