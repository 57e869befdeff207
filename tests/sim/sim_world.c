/* The simulated world: an event queue in simulated microseconds, the
 * network (loss, duplication, delay and so reordering, symmetric and
 * one-way partitions), per-node clocks with rate drift, crashes and
 * restarts, slow disks, membership changes by an operator (through the roster:
 * sim_roster.c), and the clients. Nodes
 * themselves live in sim_node.c; the checks in sim_check.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "sim_impl.h"

/* ---- randomness: xorshift-style generator seeded from the run's seed ---- */

uint64_t sim_rand(struct sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sim_between(struct sim *s, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + sim_rand(s) % (hi - lo + 1);
}

bool sim_chance(struct sim *s, uint32_t permille)
{
    return sim_rand(s) % 1000 < permille;
}

/* ---- trace: the last lines, printed when a check fails ---- */

void sim_trace(struct sim *s, const char *fmt, ...)
{
    char *line = s->trace[s->trace_next % SIM_TRACE_LINES];
    int n = snprintf(line, SIM_TRACE_LINE_BYTES, "%8.3f ", (double)s->now_us / 1000.0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, (size_t)(SIM_TRACE_LINE_BYTES - n), fmt, ap);
    va_end(ap);
    s->trace_next++;
    if (s->p.verbose)
        fprintf(stderr, "%s\n", line);
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->res->violation)
        return;
    s->res->violation = true;
    /* Liveness and undecided checks say so in their message. */
    s->res->safety = strncmp(fmt, "liveness", 8) != 0 && strncmp(fmt, "undecided", 9) != 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->res->what, sizeof(s->res->what), fmt, ap);
    va_end(ap);
    sim_trace(s, "VIOLATION: %s", s->res->what);
}

void sim_print_trace(const struct sim *s, FILE *f, uint32_t lines)
{
    uint64_t n = s->trace_next < lines ? s->trace_next : lines;
    for (uint64_t i = s->trace_next - n; i < s->trace_next; i++)
        fprintf(f, "  %s\n", s->trace[i % SIM_TRACE_LINES]);
}

/* ---- the event queue: a binary heap ordered by (time, sequence) ---- */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
    return a->t_us < b->t_us || (a->t_us == b->t_us && a->seq < b->seq);
}

void sim_at(struct sim *s, uint64_t t_us, struct sim_event ev)
{
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? s->cap_ev * 2 : 1024;
        s->ev = realloc(s->ev, s->cap_ev * sizeof(*s->ev));
        if (s->ev == NULL)
            abort();
    }
    ev.t_us = t_us;
    ev.seq = s->seq++;
    size_t i = s->n_ev++;
    while (i > 0 && ev_before(&ev, &s->ev[(i - 1) / 2])) {
        s->ev[i] = s->ev[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->ev[i] = ev;
}

static struct sim_event ev_pop(struct sim *s)
{
    struct sim_event top = s->ev[0];
    struct sim_event last = s->ev[--s->n_ev];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_ev)
            break;
        if (c + 1 < s->n_ev && ev_before(&s->ev[c + 1], &s->ev[c]))
            c++;
        if (!ev_before(&s->ev[c], &last))
            break;
        s->ev[i] = s->ev[c];
        i = c;
    }
    if (s->n_ev > 0)
        s->ev[i] = last;
    return top;
}

/* ---- network ---- */

/* Sends one Raft message: encoded with the real codec, as on the wire. */
void sim_net_send(struct sim *s, const struct corral_raft_msg *m)
{
    uint32_t from = (uint32_t)m->from, to = (uint32_t)m->to;
    if (to == 0 || to > SIM_NODES_MAX)
        return;
    size_t len = corral_codec_msg_size(m);
    uint8_t *buf = malloc(len);
    size_t out_len;
    if (buf == NULL || corral_codec_msg_encode(m, buf, len, &out_len) != 0) {
        free(buf);
        sim_fail(s, "codec refused a message the core produced (%s)",
                 corral_raft_msg_type_name(m->type));
        return;
    }
    if (m->type == CORRAL_RAFT_MSG_SNAPSHOT && m->offset == 0)
        s->res->snapshots_sent++;
    if (s->blocked[from][to] || sim_chance(s, s->p.loss_permille)) {
        free(buf);
        return;
    }
    int copies = sim_chance(s, s->p.dup_permille) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        uint8_t *b = buf;
        if (c == 1) {
            b = malloc(len);
            memcpy(b, buf, len);
        }
        struct sim_event ev = {.type = EV_DELIVER, .node = to, .a = from, .ptr = b, .len = len};
        sim_at(s, s->now_us + sim_between(s, s->p.delay_min_us, s->p.delay_max_us), ev);
    }
}

/* A link cut while a message is in flight loses it: a partition acts at
 * delivery as well as at sending. (Leaders send appends before their
 * fsync, D1, so a nemesis that isolates a leader right after a step
 * would otherwise always be too late for that step's appends.) */
static void deliver(struct sim *s, const struct sim_event *ev)
{
    struct sim_node *n = &s->nodes[ev->node];
    if (n->up && !s->blocked[ev->a][ev->node]) {
        struct corral_raft_msg m;
        int rv = corral_codec_msg_decode(ev->ptr, ev->len, &m);
        if (rv != 0) {
            sim_fail(s, "codec could not decode its own encoding: %d", rv);
        } else {
            sim_node_step(s, n, &m);
            corral_raft_msg_clear(&m);
        }
    }
    free(ev->ptr);
}

/* ---- faults ---- */

static void heal_partitions(struct sim *s)
{
    memset(s->blocked, 0, sizeof(s->blocked));
}

static uint32_t random_member(struct sim *s, bool up_only)
{
    uint32_t ids[SIM_NODES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->started && !nd->removed && (!up_only || nd->up))
            ids[n++] = i;
    }
    return n == 0 ? 0 : ids[sim_rand(s) % n];
}

/* Splits the members in two: symmetric, one-way, or isolating one node,
 * usually the leader (which is what provokes the Figure 8 histories). */
static void partition(struct sim *s, uint32_t isolate)
{
    heal_partitions(s);
    bool side[SIM_ENDPOINTS_MAX + 1] = {false};
    uint32_t kind =
        isolate != 0 || sim_chance(s, s->p.leader_bias_permille) ? 2 : (uint32_t)(sim_rand(s) % 2);
    uint32_t leader = isolate != 0 ? isolate : sim_leader(s);
    /* Workers take sides too: isolating a leader cuts it from every
     * worker as well (a deposed leader that still answers the workers on
     * its side is the other case: kinds 0 and 1). */
    for (uint32_t i = 1; i <= SIM_ENDPOINTS_MAX; i++)
        side[i] = kind == 2 ? i == leader : sim_chance(s, 500);
    for (uint32_t a = 1; a <= SIM_ENDPOINTS_MAX; a++)
        for (uint32_t b = 1; b <= SIM_ENDPOINTS_MAX; b++)
            if (side[a] && !side[b]) {
                s->blocked[a][b] = true;
                s->blocked[b][a] = kind != 1; /* kind 1: one-way */
            }
    sim_trace(s, "partition kind=%u (0 sym, 1 one-way, 2 isolate node %u)", kind, leader);
    struct sim_event ev = {.type = EV_PARTITION_END, .a = ++s->partition_gen};
    sim_at(s, s->now_us + sim_between(s, 20000, (uint64_t)s->p.partition_max_ms * 1000), ev);
}

/* A targeted fault: a leader is cut off at the moment it was elected or
 * its commit index moved, before the messages of that step leave. */
void sim_nemesis(struct sim *s, struct sim_node *n, bool elected, bool committed)
{
    if (s->healed || (!elected && !committed) || !sim_chance(s, s->p.nemesis_permille))
        return;
    sim_trace(s, "nemesis: isolate node %u (%s)", n->id, elected ? "elected" : "committed");
    partition(s, n->id);
}

static void schedule(struct sim *s, uint8_t type, uint32_t mean_ms)
{
    if (mean_ms == 0)
        return;
    struct sim_event ev = {.type = type};
    sim_at(s, s->now_us + sim_between(s, 1000, 2ull * mean_ms * 1000), ev);
}

static void crash_and_restart(struct sim *s, uint32_t id)
{
    sim_node_crash(s, &s->nodes[id]);
    struct sim_event ev = {.type = EV_RESTART, .node = id};
    sim_at(s, s->now_us + sim_between(s, 10000, (uint64_t)s->p.restart_max_ms * 1000), ev);
}

static void crash_one(struct sim *s)
{
    /* Aim at the leader often: leader churn is where Raft breaks. */
    uint32_t id = sim_chance(s, s->p.leader_bias_permille) ? sim_leader(s) : 0;
    if (id == 0)
        id = random_member(s, true);
    if (id != 0)
        crash_and_restart(s, id);
}

/* A leader's batch of new entries has gone out to the followers (D1) and
 * its own fsync is under way: now and then the leader crashes before the
 * fsync completes, losing its own copy. */
void sim_nemesis_fsync(struct sim *s, struct sim_node *n, uint64_t fsync_us)
{
    if (s->healed || !sim_chance(s, s->p.fsync_crash_permille))
        return;
    struct sim_event ev = {.type = EV_CRASH_NODE, .node = n->id, .a = n->incarnation};
    sim_at(s, s->now_us + sim_between(s, 0, fsync_us), ev);
}

/* A slow disk: one member's fsyncs take 150-400 ms each for 1-4 s,
 * mostly the leader's (its health step should notice, H1-H3 of
 * core/leader_health.h, and hand leadership to a healthy voter); a slow
 * follower only slows its own acks. */
#define SLOW_DISK_LEADER_PERMILLE 750
static void slow_disk(struct sim *s)
{
    uint32_t id = sim_chance(s, SLOW_DISK_LEADER_PERMILLE) ? sim_leader(s) : 0;
    if (id == 0)
        id = random_member(s, true);
    if (id == 0)
        return;
    uint64_t ms = sim_between(s, SIM_SLOW_DISK_MIN_MS, SIM_SLOW_DISK_MAX_MS);
    s->nodes[id].slow_disk_until_us = s->now_us + ms * 1000;
    s->res->slow_disks++;
    sim_trace(s, "nemesis: node %u's disk is slow for %llu ms", id, (unsigned long long)ms);
}

/* The end of the fault phase: everything heals, crashed members restart,
 * and from now on the cluster must make progress. */
static void heal(struct sim *s)
{
    s->healed = true;
    s->heal_us = s->now_us;
    heal_partitions(s);
    s->p.loss_permille = 0;
    s->p.dup_permille = 0;
    s->p.slow_permille = 0;
    s->p.slow_disk_every_ms = 0;
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        struct sim_node *n = &s->nodes[i];
        n->slow_disk_until_us = 0; /* an fsync under way finishes as drawn */
        if (n->started && !n->removed && !n->up)
            sim_node_restart(s, n);
    }
    sim_workers_heal(s);
    sim_trace(s, "heal: faults stop");
}

static void dispatch(struct sim *s, const struct sim_event *ev)
{
    switch (ev->type) {
    case EV_TICK:
        sim_node_tick(s, &s->nodes[ev->node], ev->a);
        break;
    case EV_DELIVER:
        deliver(s, ev);
        break;
    case EV_PERSIST:
        sim_node_persisted(s, &s->nodes[ev->node], ev->a);
        break;
    case EV_CLIENT_NEXT:
    case EV_CLIENT_ARRIVE:
    case EV_CLIENT_REPLY:
    case EV_CLIENT_TIMEOUT:
        sim_client_event(s, ev);
        break;
    case EV_CRASH:
        if (!s->healed) {
            crash_one(s);
            schedule(s, EV_CRASH, s->p.crash_every_ms);
        }
        break;
    case EV_CRASH_NODE:
        if (!s->healed && s->nodes[ev->node].up && s->nodes[ev->node].incarnation == ev->a &&
            s->nodes[ev->node].persisting) {
            sim_trace(s, "nemesis: node %u crashes during its fsync", ev->node);
            crash_and_restart(s, ev->node);
        }
        break;
    case EV_RESTART:
        if (!s->healed && !s->nodes[ev->node].removed && !s->nodes[ev->node].up)
            sim_node_restart(s, &s->nodes[ev->node]);
        break;
    case EV_PARTITION:
        if (!s->healed) {
            partition(s, 0);
            schedule(s, EV_PARTITION, s->p.partition_every_ms);
        }
        break;
    case EV_PARTITION_END:
        if (!s->healed && ev->a == s->partition_gen)
            heal_partitions(s);
        break;
    case EV_SLOW_DISK:
        if (!s->healed) {
            slow_disk(s);
            schedule(s, EV_SLOW_DISK, s->p.slow_disk_every_ms);
        }
        break;
    case EV_CONF:
        if (!s->healed) {
            sim_roster_operator(s);
            schedule(s, EV_CONF, s->p.conf_every_ms);
        }
        break;
    case EV_HEAL:
        heal(s);
        break;
    case EV_W_TO_NODE:
        if (s->blocked[ev->a][ev->node])
            free(ev->ptr); /* cut while in flight */
        else
            sim_coord_receive(s, &s->nodes[ev->node], ev->ptr);
        break;
    case EV_WATCH_WAIT:
        if (s->nodes[ev->node].up)
            sim_coord_watches(s, &s->nodes[ev->node]);
        break;
    case EV_W_BEAT:
    case EV_W_WATCH:
    case EV_W_WAKE:
    case EV_W_HOOK:
    case EV_W_RESUME:
    case EV_W_AUDIT:
    case EV_W_TO_WORKER:
        sim_worker_event(s, ev);
        break;
    case EV_W_RESTART:
    case EV_W_UNCUT:
        sim_worker_fault_event(s, ev);
        break;
    case EV_W_FAULT:
        if (!s->healed) {
            sim_worker_fault(s);
            schedule(s, EV_W_FAULT, s->p.worker_fault_every_ms);
        }
        break;
    case EV_OWNER_OP:
        sim_ops_step(s);
        if (!s->healed)
            sim_at(s, s->now_us + sim_between(s, 1000, 2ull * s->p.owner_op_every_ms * 1000),
                   (struct sim_event){.type = EV_OWNER_OP});
        break;
    default:
        break;
    }
}

/* The lease rules' drift bound must cover any two clocks of the run: a
 * rate r_member and r_leader in [1 - d, 1 + d] differ by up to
 * (1 + d) / (1 - d). The margin is kept small so that a lease counted from
 * the wrong instant shows within the network's delays. */
static void ownership_init(struct sim *s)
{
    uint32_t d = s->p.drift_permille_max;
    corral_coord_config_default(&s->coord_cfg);
    struct corral_liveness_config *lc = &s->coord_cfg.liveness;
    lc->heartbeat_ms = s->p.heartbeat_ms;
    lc->lease_ms = s->p.lease_ms;
    lc->max_drift_permille = (1000 + d) * 1000 / (1000 - d) - 1000 + 1;
    lc->margin_ms = 2;
    lc->max_election_timeout_ms = 2 * CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT;
    lc->suspect_after_ms = 2 * s->p.heartbeat_ms;
    if (s->p.n_workers == 0)
        return; /* --raft-only */
    sim_workers_init(s);
    sim_at(s, 400000, (struct sim_event){.type = EV_OWNER_OP});
    schedule(s, EV_W_FAULT, s->p.worker_fault_every_ms);
}

static void world_init(struct sim *s, const struct sim_params *p, struct sim_result *res)
{
    memset(s, 0, sizeof(*s));
    s->p = *p;
    s->res = res;
    s->rng = p->seed * 0x2545f4914f6cdd1dull + 1;
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        struct sim_node *n = &s->nodes[i];
        n->id = i;
        n->sim = s;
        /* Clock rate 1 +- drift: a node's ms pass at its own pace. */
        int64_t d = (int64_t)sim_between(s, 0, 2ull * p->drift_permille_max) -
                    (int64_t)p->drift_permille_max;
        n->rate_permille = (uint32_t)(1000 + d);
    }
    sim_trace(s,
              "seed %llu: %u voters, %u keys, %u clients, loss %u/1000, dup %u/1000, delay "
              "%u-%u us, disk %u-%u us, drift %u/1000, crash/%u ms, partition/%u ms, conf/%u "
              "ms, batch %u, snapshot/%u, chunk %u, faults %u ms, leader bias %u/1000",
              (unsigned long long)p->seed, p->n_voters, p->n_keys, p->n_clients, p->loss_permille,
              p->dup_permille, p->delay_min_us, p->delay_max_us, p->disk_min_us, p->disk_max_us,
              p->drift_permille_max, p->crash_every_ms, p->partition_every_ms, p->conf_every_ms,
              p->max_msg_entries, p->snapshot_every, p->snapshot_chunk_bytes, p->fault_ms,
              p->leader_bias_permille);
    if (p->slow_disk_every_ms != 0)
        sim_trace(s, "slow disks every %u ms on average", p->slow_disk_every_ms);
    for (uint32_t i = 1; i <= p->n_voters; i++)
        sim_node_start_fresh(s, &s->nodes[i]);
    sim_clients_init(s);
    ownership_init(s);
    schedule(s, EV_CRASH, p->crash_every_ms);
    schedule(s, EV_PARTITION, p->partition_every_ms);
    schedule(s, EV_CONF, p->conf_every_ms);
    struct sim_event heal_ev = {.type = EV_HEAL};
    sim_at(s, (uint64_t)p->fault_ms * 1000, heal_ev);
    /* Last, and only when on: seeds without slow disks draw as before. */
    schedule(s, EV_SLOW_DISK, p->slow_disk_every_ms);
}

static void world_free(struct sim *s)
{
    for (size_t i = 0; i < s->n_ev; i++)
        if (s->ev[i].type == EV_DELIVER || s->ev[i].type == EV_W_TO_NODE ||
            s->ev[i].type == EV_W_TO_WORKER)
            free(s->ev[i].ptr);
    free(s->ev);
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++)
        sim_node_destroy(s, &s->nodes[i]);
    sim_workers_free(s);
    sim_check_free(s);
    sim_clients_free(s);
    free(s->ops);
}

static void dump_nodes(struct sim *s)
{
    struct corral_raft_status st;
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        struct sim_node *n = &s->nodes[i];
        if (!sim_node_status(n, &st))
            continue;
        fprintf(stderr, "node %u: %s term %llu leader %llu commit %llu applied %llu last %llu\n", i,
                corral_raft_role_name(st.role), (unsigned long long)st.term,
                (unsigned long long)st.leader, (unsigned long long)st.commit,
                (unsigned long long)st.applied, (unsigned long long)st.last_index);
        for (uint32_t k = 0; k < st.n_progress && st.role == CORRAL_RAFT_LEADER; k++)
            fprintf(stderr, "  peer %llu match %llu next %llu\n",
                    (unsigned long long)st.progress[k].id, (unsigned long long)st.progress[k].match,
                    (unsigned long long)st.progress[k].next);
    }
}

void sim_run(const struct sim_params *p, struct sim_result *res)
{
    memset(res, 0, sizeof(*res));
    struct sim *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    world_init(s, p, res);
    uint64_t end_us = ((uint64_t)p->fault_ms + SIM_SETTLE_MS) * 1000;
    while (s->n_ev > 0 && !res->violation) {
        struct sim_event ev = ev_pop(s);
        if (ev.t_us > end_us) {
            if (ev.type == EV_DELIVER || ev.type == EV_W_TO_NODE || ev.type == EV_W_TO_WORKER)
                free(ev.ptr);
            break;
        }
        s->now_us = ev.t_us;
        dispatch(s, &ev);
        res->events++;
        if (ev.node != 0 && ev.node <= SIM_NODES_MAX && ev.type != EV_CLIENT_NEXT &&
            ev.type != EV_CLIENT_REPLY && ev.type != EV_CLIENT_TIMEOUT)
            sim_check_node(s, &s->nodes[ev.node]);
    }
    if (!res->violation)
        sim_check_end(s);
    if (p->verbose)
        dump_nodes(s);
    if (res->violation) {
        fprintf(stderr, "sim: VIOLATION seed=%llu: %s\n", (unsigned long long)p->seed, res->what);
        fprintf(stderr, "sim: last events (reproduce: corral-sim --seed %llu --verbose):\n",
                (unsigned long long)p->seed);
        sim_print_trace(s, stderr, 60);
    }
    world_free(s);
    free(s);
}
