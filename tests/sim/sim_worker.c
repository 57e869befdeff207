/* Simulated worker members: each runs the real agent (src/core/agent.c)
 * with its own drifting clock, heartbeats to the leader, watches its
 * assignment on any coordinator (possibly a stale one), and runs its hooks
 * with random latencies and failures. Workers crash, pause (a paused
 * process neither sends nor acts, then resumes with a stale view) and
 * restart under the same name. Every change of what an agent says it acts
 * as primary of is recorded in true simulated time for the ownership
 * checks (sim_owner.c). */
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "sim_impl.h"

#define HOOK_FAIL_PERMILLE 20

uint64_t sim_worker_ms(const struct sim *s, const struct sim_worker *w)
{
    return s->now_us * w->rate_permille / 1000 / 1000;
}

/* The first true instant at which w's clock reads local_ms or more. */
static uint64_t w_true_us(const struct sim_worker *w, uint64_t local_ms)
{
    uint64_t us = local_ms * 1000 * 1000;
    return (us + w->rate_permille - 1) / w->rate_permille;
}

static void w_at(struct sim *s, struct sim_worker *w, uint64_t t_us, uint8_t type, uint64_t b)
{
    struct sim_event ev = {.type = type, .a = w->idx, .b = b, .c = w->incarnation};
    sim_at(s, t_us, ev);
}

/* An event for a paused worker waits until it resumes, in order. */
static bool w_deferred(struct sim *s, struct sim_worker *w, const struct sim_event *ev)
{
    if (!w->paused)
        return false;
    struct sim_event again = *ev;
    sim_at(s, w->resume_us, again);
    return true;
}

/* After every agent call: hand its hooks to the "application", record
 * what it acts as, and wake it when it asks. */
static void w_settle(struct sim *s, struct sim_worker *w)
{
    struct corral_agent_hook h;
    while (corral_agent_next_hook(w->agent, &h)) {
        uint64_t delay = sim_between(s, 200, 20000);
        bool fail = sim_chance(s, HOOK_FAIL_PERMILLE);
        sim_trace(s, "worker %s: hook %u (reason %u) r%u/p%u epoch %llu%s", w->name, h.kind,
                  h.reason, h.resource, h.partition, (unsigned long long)h.epoch,
                  fail ? " (will fail)" : "");
        struct sim_event ev = {
            .type = EV_W_HOOK, .a = w->idx, .b = h.id, .c = w->incarnation, .len = fail ? 1u : 0u};
        sim_at(s, s->now_us + delay, ev);
    }
    sim_owner_update(s, w);
    /* A report (in sync, released) goes out at once rather than with the
     * next periodic heartbeat: the hand-off waits on it. */
    struct corral_agent_stats st;
    corral_agent_stats(w->agent, &st);
    if (st.reports_pending > w->reports_seen && !w->early_beat) {
        w->early_beat = true;
        w_at(s, w, s->now_us + 100, EV_W_BEAT, 1);
    }
    w->reports_seen = st.reports_pending;
    uint64_t wake = corral_agent_next_wakeup(w->agent);
    if (wake != UINT64_MAX && wake != w->wake_scheduled_ms) {
        w->wake_scheduled_ms = wake;
        uint64_t t = w_true_us(w, wake);
        w_at(s, w, t > s->now_us ? t : s->now_us, EV_W_WAKE, 0);
    }
}

/* A worker link's delay: the network's, and now and then a stall of a
 * few hundred ms (a retransmission, a slow host): what makes a lease
 * counted from the answer's arrival outlast what the leader assumes. */
static uint64_t worker_link_delay(struct sim *s)
{
    uint64_t d = sim_between(s, s->p.delay_min_us, s->p.delay_max_us);
    if (sim_chance(s, s->p.slow_permille))
        d += sim_between(s, 50000, 400000);
    return d;
}

static void send_to_node(struct sim *s, struct sim_worker *w, uint32_t node, struct sim_wmsg *m)
{
    m->worker = w->idx;
    m->incarnation = w->incarnation;
    if (node == 0 || node > SIM_NODES_MAX || s->blocked[w->ep][node] ||
        sim_chance(s, s->p.loss_permille)) {
        free(m);
        return;
    }
    struct sim_event ev = {.type = EV_W_TO_NODE, .node = node, .a = w->ep, .ptr = m};
    sim_at(s, s->now_us + worker_link_delay(s), ev);
}

static uint32_t any_node(struct sim *s)
{
    for (int tries = 0; tries < 16; tries++) {
        uint32_t id = 1 + (uint32_t)(sim_rand(s) % SIM_NODES_MAX);
        if (s->nodes[id].started && !s->nodes[id].removed)
            return id;
    }
    return 1;
}

static void heartbeat(struct sim *s, struct sim_worker *w)
{
    struct sim_wmsg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->type = SIM_WMSG_HEARTBEAT;
    uint32_t n = 0;
    m->seq =
        corral_agent_heartbeat_sent(w->agent, sim_worker_ms(s, w), m->reports, SIM_REPORTS_MAX, &n);
    m->n_reports = n;
    m->agent_index = corral_agent_index(w->agent);
    w->sent_ms[m->seq % SIM_BEATS_KEPT] = sim_worker_ms(s, w);
    /* The last heartbeat went unanswered (a dead or cut-off node): try
     * the leader last heard of, else another coordinator, as a real agent
     * times out and moves on. */
    if (w->target == 0 || w->answered_seq + 1 < m->seq) {
        uint32_t hint = w->leader_hint;
        w->target = hint != 0 && hint != w->target && sim_chance(s, 700) ? hint : any_node(s);
    }
    send_to_node(s, w, w->target, m);
    w_settle(s, w);
}

static void watch(struct sim *s, struct sim_worker *w)
{
    struct sim_wmsg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->type = SIM_WMSG_WATCH;
    m->agent_index = corral_agent_index(w->agent);
    /* Any coordinator answers a watch, a lagging one with an old view. */
    send_to_node(s, w, any_node(s), m);
}

static void w_boot(struct sim *s, struct sim_worker *w)
{
    struct corral_agent_config cfg;
    corral_agent_config_default(&cfg);
    if (corral_agent_new(&cfg, &w->agent) != 0)
        abort();
    w->up = true;
    w->paused = false;
    w->target = 0;
    w->wake_scheduled_ms = 0;
    w->n_acting = 0;
    w->early_beat = false;
    w->reports_seen = 0;
    w->lease_end_ms = 0;
    w->last_seq_sent = 0;
    w->answered_seq = 0;
    w->watch_gen++;
    w->n_view = 0;
    uint64_t first = s->now_us + sim_between(s, 0, 50000);
    w_at(s, w, first, EV_W_BEAT, 0);
    w_at(s, w, first + 20000, EV_W_WATCH, w->watch_gen);
}

void sim_worker_start(struct sim *s, struct sim_worker *w)
{
    w->started = true;
    w->incarnation++;
    w_boot(s, w);
    sim_trace(s, "worker %s starts (zone %s)", w->name, w->zone);
}

/* kill -9: the agent and everything it held in memory are gone; it stops
 * acting at this instant. */
void sim_worker_crash(struct sim *s, struct sim_worker *w)
{
    if (!w->up)
        return;
    w->up = false;
    w->paused = false;
    w->incarnation++;
    sim_owner_stopped_all(s, w, SIM_STOP_CRASH);
    corral_agent_free(w->agent);
    w->agent = NULL;
    s->res->worker_crashes++;
    sim_trace(s, "worker %s crashes", w->name);
}

void sim_worker_pause(struct sim *s, struct sim_worker *w, uint64_t until_us)
{
    if (!w->up || w->paused)
        return;
    w->paused = true;
    w->resume_us = until_us;
    /* A stopped process acts on nothing while stopped: what it believes it
     * holds is checked again, against its clock, the moment it resumes. */
    sim_owner_stopped_all(s, w, SIM_STOP_PAUSE);
    w_at(s, w, until_us, EV_W_RESUME, 0);
    s->res->worker_pauses++;
    sim_trace(s, "worker %s pauses for %.1f ms", w->name, (double)(until_us - s->now_us) / 1000.0);
}

static void resume(struct sim *s, struct sim_worker *w)
{
    w->paused = false;
    /* The agent's first act on waking is to read its clock (agent.h A2). */
    corral_agent_tick(w->agent, sim_worker_ms(s, w));
    w->n_acting = 0; /* everything it still acts as starts again now */
    w_settle(s, w);
    sim_trace(s, "worker %s resumes", w->name);
}

static void hook_done(struct sim *s, struct sim_worker *w, uint64_t id, bool fail)
{
    int rv = corral_agent_hook_done(w->agent, id, fail ? CORRAL_EIO : 0, sim_worker_ms(s, w));
    if (rv != 0)
        sim_fail(s, "worker %s: agent refused hook %llu's completion: %d", w->name,
                 (unsigned long long)id, rv);
    w_settle(s, w);
}

/* The lease as I3 defines it, kept by the simulator beside the agent:
 * from when the worker sent the heartbeat, on its own clock. At that end
 * the worker must have stopped acting (checked by an audit then and by
 * sim_owner_update at every later look). */
static void note_lease(struct sim *s, struct sim_worker *w, const struct sim_wmsg *m)
{
    if (m->seq + SIM_BEATS_KEPT <= w->last_seq_sent)
        return; /* too old to know its send time: the agent ignores it too */
    uint64_t end = w->sent_ms[m->seq % SIM_BEATS_KEPT] + m->lease_ms;
    if (end <= w->lease_end_ms)
        return;
    w->lease_end_ms = end;
    w_at(s, w, w_true_us(w, end), EV_W_AUDIT, end);
}

static void audit(struct sim *s, struct sim_worker *w, uint64_t end)
{
    if (end != w->lease_end_ms)
        return; /* extended since */
    corral_agent_tick(w->agent, sim_worker_ms(s, w));
    w_settle(s, w);
    if (w->n_acting > 0)
        sim_fail(s,
                 "lease: worker %s still acts as primary of %u partition(s) when its lease, "
                 "counted from the heartbeat's sending, ended (local %llu ms)",
                 w->name, w->n_acting, (unsigned long long)end);
}

static void answer(struct sim *s, struct sim_worker *w, struct sim_wmsg *m)
{
    uint64_t now = sim_worker_ms(s, w);
    if (m->type == SIM_WMSG_HEARTBEAT_ANSWER) {
        if (!m->ok && m->seq > w->answered_seq)
            w->answered_seq = m->seq; /* answered, if not leased: the hint is good */
        if (m->leader_hint != 0)
            w->leader_hint = m->leader_hint;
        if (!m->ok) {
            w->target = m->leader_hint != 0 ? m->leader_hint : any_node(s);
        } else {
            w->target = m->from;
            if (m->seq > w->answered_seq)
                w->answered_seq = m->seq;
            corral_agent_heartbeat_answered(w->agent, m->seq, m->lease_ms, m->lease_index, now);
            note_lease(s, w, m);
        }
    }
    if (m->has_view || m->view_unchanged) {
        const struct corral_agent_entry *v = m->has_view ? m->view : w->view;
        uint32_t nv = m->has_view ? m->n_view : w->n_view;
        int rv = corral_agent_set_desired(w->agent, now, m->view_index, v, nv);
        if (rv != 0 && rv != CORRAL_EINVAL)
            sim_fail(s, "worker %s: agent refused a view: %d", w->name, rv);
        if (rv == 0 && m->has_view) {
            memcpy(w->view, m->view, m->n_view * sizeof(m->view[0]));
            w->n_view = m->n_view;
        }
    }
    if (m->type == SIM_WMSG_WATCH_ANSWER) {
        w->watch_gen++;
        w_at(s, w, s->now_us + 1000, EV_W_WATCH, w->watch_gen);
    }
    w_settle(s, w);
}

void sim_worker_event(struct sim *s, const struct sim_event *ev)
{
    struct sim_worker *w = &s->workers[ev->a];
    if (ev->type == EV_W_TO_WORKER) {
        struct sim_wmsg *m = ev->ptr;
        if (!w->up || m->incarnation != w->incarnation) {
            free(m);
        } else if (!w_deferred(s, w, ev)) {
            answer(s, w, m);
            free(m);
        }
        return;
    }
    if (!w->up || ev->c != w->incarnation)
        return;
    if (ev->type == EV_W_RESUME) {
        resume(s, w);
        return;
    }
    if (w_deferred(s, w, ev))
        return;
    switch (ev->type) {
    case EV_W_BEAT:
        if (ev->b == 1) { /* an early one, for a report */
            w->early_beat = false;
            heartbeat(s, w);
            break;
        }
        heartbeat(s, w);
        w_at(s, w, w_true_us(w, sim_worker_ms(s, w) + s->p.heartbeat_ms), EV_W_BEAT, 0);
        break;
    case EV_W_WATCH:
        /* A blocking watch: the node holds it until the assignment
         * changes or its wait ends; the answer asks for the next one. A
         * lost request or answer is covered by this timer. */
        if (ev->b != w->watch_gen)
            break;
        watch(s, w);
        w_at(s, w, s->now_us + 2 * SIM_WATCH_WAIT_US, EV_W_WATCH, w->watch_gen);
        break;
    case EV_W_WAKE:
        w->wake_scheduled_ms = 0;
        corral_agent_tick(w->agent, sim_worker_ms(s, w));
        w_settle(s, w);
        break;
    case EV_W_HOOK:
        hook_done(s, w, ev->b, ev->len != 0);
        break;
    case EV_W_AUDIT:
        audit(s, w, ev->b);
        break;
    default:
        break;
    }
}

/* A message a node sends back to a worker. */
void sim_worker_send(struct sim *s, uint32_t from_node, struct sim_wmsg *m)
{
    struct sim_worker *w = &s->workers[m->worker];
    m->from = from_node;
    if (s->blocked[from_node][w->ep] || sim_chance(s, s->p.loss_permille)) {
        free(m);
        return;
    }
    struct sim_event ev = {.type = EV_W_TO_WORKER, .a = w->idx, .ptr = m};
    sim_at(s, s->now_us + worker_link_delay(s), ev);
}

void sim_workers_init(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.n_workers; i++) {
        struct sim_worker *w = &s->workers[i];
        memset(w, 0, sizeof(*w));
        w->idx = i;
        w->ep = SIM_NODES_MAX + 1 + i;
        snprintf(w->name, sizeof(w->name), "w%u", i);
        snprintf(w->zone, sizeof(w->zone), "z%u", (uint32_t)(i % s->p.n_zones));
        int64_t d = (int64_t)sim_between(s, 0, 2ull * s->p.drift_permille_max) -
                    (int64_t)s->p.drift_permille_max;
        w->rate_permille = (uint32_t)(1000 + d);
        sim_worker_start(s, w);
    }
}

void sim_workers_free(struct sim *s)
{
    for (uint32_t i = 0; i < SIM_WORKERS_MAX; i++) {
        corral_agent_free(s->workers[i].agent);
        s->workers[i].agent = NULL;
    }
}
