/* One simulated node: the real Raft core, driven by the production driver
 * (src/core/raft_drive.c) into the production state machine
 * (src/core/kv.c), over a disk that keeps only what was persisted when the
 * node crashes, and whose fsyncs complete after the early sends. */
#include <stdlib.h>
#include <string.h>

#include "core/roster.h"
#include "corral.h"
#include "sim_impl.h"

/* ---- the disk ---- */

static void disk_truncate(struct sim_disk *d, uint64_t from_index)
{
    while (d->n > 0 && d->e[d->n - 1].index >= from_index) {
        d->n--;
        corral_rbuf_unref(d->e[d->n].data);
    }
}

static void disk_append(struct sim *s, struct sim_disk *d, const struct corral_raft_entry *e)
{
    uint64_t expect = d->n > 0 ? d->e[d->n - 1].index + 1 : d->snap.index + 1;
    if (e->index != expect) {
        sim_fail(s, "ready entries not contiguous on disk: got %llu, expected %llu",
                 (unsigned long long)e->index, (unsigned long long)expect);
        return;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->e = realloc(d->e, d->cap * sizeof(*d->e));
        if (d->e == NULL)
            abort();
    }
    d->e[d->n] = *e;
    corral_rbuf_ref(e->data);
    d->n++;
}

/* A snapshot replaces the entries it covers; later entries stay only when
 * the log agrees with it at its last index (as the core does). */
static void disk_snapshot(struct sim_disk *d, const struct corral_raft_snapshot_meta *meta,
                          struct corral_rbuf *data)
{
    uint32_t keep_from = d->n;
    for (uint32_t i = 0; i < d->n; i++) {
        if (d->e[i].index == meta->index) {
            keep_from = d->e[i].term == meta->term ? i + 1 : d->n;
            break;
        }
        if (d->e[i].index > meta->index) {
            keep_from = d->n;
            break;
        }
    }
    for (uint32_t i = 0; i < keep_from; i++)
        corral_rbuf_unref(d->e[i].data);
    if (keep_from > 0 && keep_from < d->n)
        memmove(d->e, d->e + keep_from, (d->n - keep_from) * sizeof(*d->e));
    d->n -= keep_from;
    d->snap = *meta;
    corral_rbuf_unref(d->snap_data);
    d->snap_data = corral_rbuf_ref(data);
}

static void disk_free(struct sim_disk *d)
{
    disk_truncate(d, 0);
    free(d->e);
    corral_rbuf_unref(d->snap_data);
    memset(d, 0, sizeof(*d));
}

/* ---- lifecycle ---- */

uint64_t sim_node_ms(const struct sim *s, const struct sim_node *n)
{
    return s->now_us * n->rate_permille / 1000 / 1000;
}

static void schedule_tick(struct sim *s, struct sim_node *n)
{
    struct sim_event ev = {.type = EV_TICK, .node = n->id, .a = n->incarnation};
    sim_at(s, s->now_us + (uint64_t)SIM_TICK_MS * 1000 * 1000 / n->rate_permille, ev);
}

static const struct corral_drive_io sim_io; /* the driver's callbacks, below */

/* The state as the disk's snapshot left it, as the node does at start. */
static bool state_load(struct sim *s, struct sim_node *n)
{
    n->st = corral_state_new();
    if (n->st == NULL)
        abort();
    if (n->disk.snap.index == 0)
        return true;
    int rv = corral_state_restore(n->st, n->disk.snap_data);
    if (rv != 0 || corral_state_applied(n->st) != n->disk.snap.index) {
        sim_fail(s, "node %u: its snapshot at %llu does not load: %d", n->id,
                 (unsigned long long)n->disk.snap.index, rv);
        return false;
    }
    return true;
}

static void boot(struct sim *s, struct sim_node *n)
{
    struct corral_raft_config cfg;
    corral_raft_config_default(&cfg, n->id);
    cfg.seed = s->p.seed * 131 + n->id * 7919 + n->incarnation;
    cfg.max_msg_entries = s->p.max_msg_entries;
    cfg.snapshot_chunk_bytes = s->p.snapshot_chunk_bytes;
    int rv = corral_raft_new(&cfg, &n->disk.hs, &n->disk.snap, n->disk.snap_data, n->disk.e,
                             n->disk.n, &n->raft);
    if (rv != 0) {
        sim_fail(s, "node %u cannot boot from its disk: %d", n->id, rv);
        return;
    }
    if (!state_load(s, n))
        return;
    struct corral_drive_io io = sim_io;
    io.ud = n;
    struct corral_drive_config dc = {.snapshot_every = s->p.snapshot_every,
                                     .snapshot_keep = sim_between(s, 0, s->p.snapshot_every / 2)};
    corral_drive_init(&n->drive, n->raft, n->st, &io, &dc, n->disk.snap.index);
    n->up = true;
    n->persisting = false;
    n->n_pending = 0;
    n->seen_term = 0;
    n->seen_commit = 0;
    n->roster_tick_ms = 0;
    n->roster_index = 0;
    n->heard = 0;
    /* As node_health_init: the limits of SIM_HEALTH_*, the rest as the
     * node sets it. */
    struct corral_leader_health_config hc = {
        .max_fsync_ms = SIM_HEALTH_MAX_FSYNC_MS,
        .max_loop_lag_ms = SIM_HEALTH_MAX_LOOP_LAG_MS,
        .max_apply_backlog = SIM_HEALTH_MAX_APPLY_BACKLOG,
        .degraded_ms = SIM_HEALTH_DEGRADED_MS,
        .recover_ms = CORRAL_LEADER_HEALTH_RECOVER_MS,
        .cooldown_ms = CORRAL_LEADER_HEALTH_COOLDOWN_MS,
        .contact_ms = cfg.election_timeout_ms,
    };
    corral_leader_health_init(&n->health, &hc);
    corral_raft_tick(n->raft, sim_node_ms(s, n));
    schedule_tick(s, n);
}

void sim_node_start_fresh(struct sim *s, struct sim_node *n)
{
    memset(&n->disk, 0, sizeof(n->disk));
    n->started = true;
    /* Initial voters write what the node's bootstrap writes: the
     * configuration at index 1, then one roster entry per voter; a node
     * added later starts empty and learns both from the leader. */
    if (n->id <= s->p.n_voters) {
        struct corral_raft_conf conf = {.n_voters = s->p.n_voters};
        for (uint32_t i = 0; i < s->p.n_voters; i++)
            conf.voters[i] = i + 1;
        struct corral_raft_entry e;
        if (corral_raft_bootstrap(&conf, &e) != 0)
            abort();
        disk_append(s, &n->disk, &e);
        corral_rbuf_unref(e.data);
        for (uint32_t i = 1; i <= s->p.n_voters; i++) {
            char name[16], cluster[32], http[32];
            sim_roster_names(i, name, cluster, http);
            if (corral_roster_bootstrap_entry(i, name, cluster, 1 + i, &e) != 0)
                abort();
            disk_append(s, &n->disk, &e);
            corral_rbuf_unref(e.data);
        }
        n->disk.hs =
            (struct corral_raft_hard_state){.term = 1, .vote = 0, .commit = 1 + s->p.n_voters};
    }
    boot(s, n);
    sim_trace(s, "node %u starts fresh", n->id);
}

void sim_node_restart(struct sim *s, struct sim_node *n)
{
    n->incarnation++;
    boot(s, n);
    sim_trace(s, "node %u restarts: term %llu, %u entries after snapshot %llu", n->id,
              (unsigned long long)n->disk.hs.term, n->disk.n,
              (unsigned long long)n->disk.snap.index);
}

/* The in-flight batch is lost, and with it anything not yet on disk; a
 * hard state written without an fsync may or may not have made it. */
void sim_node_crash(struct sim *s, struct sim_node *n)
{
    if (!n->up)
        return;
    corral_drive_close(&n->drive);
    n->persisting = false;
    if (n->disk.hs_dirty && sim_chance(s, 500))
        n->disk.hs = n->disk.hs_cache;
    n->disk.hs_dirty = false;
    corral_raft_free(n->raft);
    n->raft = NULL;
    sim_coord_crash(n);
    corral_state_free(n->st);
    n->st = NULL;
    n->up = false;
    n->incarnation++;
    n->n_pending = 0; /* their clients time out: outcome unknown */
    s->res->crashes++;
    sim_trace(s, "node %u crashes", n->id);
}

void sim_node_destroy(struct sim *s, struct sim_node *n)
{
    sim_node_crash(s, n);
    disk_free(&n->disk);
}

bool sim_node_status(const struct sim_node *n, struct corral_raft_status *st)
{
    if (!n->up)
        return false;
    corral_raft_status(n->raft, st);
    return true;
}

uint32_t sim_leader(struct sim *s)
{
    uint64_t best_term = 0;
    uint32_t best = 0;
    struct corral_raft_status st;
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        if (sim_node_status(&s->nodes[i], &st) && st.role == CORRAL_RAFT_LEADER &&
            st.term >= best_term) {
            best_term = st.term;
            best = i;
        }
    }
    return best;
}

/* ---- the ready loop: the production driver, with this host's io ---- */

/* Writes a batch to the simulated disk, as storage does at its fsync. */
static void disk_write_batch(struct sim *s, struct sim_node *n, const struct corral_raft_ready *rd)
{
    if (rd->has_snapshot)
        disk_snapshot(&n->disk, &rd->snapshot, rd->snapshot_data);
    if (rd->n_entries > 0)
        disk_truncate(&n->disk, rd->entries[0].index);
    for (uint32_t i = 0; i < rd->n_entries; i++)
        disk_append(s, &n->disk, &rd->entries[i]);
    if (rd->has_hard_state)
        n->disk.hs = rd->hard_state;
    else if (n->disk.hs_dirty)
        n->disk.hs = n->disk.hs_cache; /* the fsync covers the earlier write */
    n->disk.hs_dirty = false;
}

/* A batch that must sync completes after the disk latency (the driver has
 * sent its leader data messages already, D1); one that only moves the
 * commit hint is written to the page cache at once (D2). */
static int io_persist(void *ud, const struct corral_raft_ready *rd, bool must_sync, bool *done)
{
    struct sim_node *n = ud;
    struct sim *s = n->sim;
    if (n->batch_instant_us != s->now_us) {
        n->batch_instant_us = s->now_us;
        n->batches_at_instant = 0;
    }
    if (++n->batches_at_instant > SIM_BATCHES_PER_INSTANT_MAX) {
        /* An error ends the driver's loop (it fails), and the run. */
        sim_fail(s, "node %u: livelock: the core offered %u batches at one instant", n->id,
                 n->batches_at_instant);
        return CORRAL_EIO;
    }
    if (!must_sync) {
        if (rd->has_hard_state) {
            n->disk.hs_cache = rd->hard_state;
            n->disk.hs_dirty = true;
        }
        *done = true;
        return 0;
    }
    n->persisting = true;
    n->persist_ms = sim_node_ms(s, n);
    /* A slow disk (sim_world.c) draws from its own range: one draw
     * either way, so seeds without one run as before. */
    uint64_t delay = s->now_us < n->slow_disk_until_us
                         ? sim_between(s, SIM_SLOW_FSYNC_MIN_US, SIM_SLOW_FSYNC_MAX_US)
                         : sim_between(s, s->p.disk_min_us, s->p.disk_max_us);
    struct sim_event ev = {.type = EV_PERSIST, .node = n->id, .a = n->incarnation};
    sim_at(s, s->now_us + delay, ev);
    if (rd->role == CORRAL_RAFT_LEADER && rd->n_entries > 0)
        sim_nemesis_fsync(s, n, delay);
    return 0;
}

static void io_send(void *ud, const struct corral_raft_msg *m)
{
    struct sim_node *n = ud;
    sim_net_send(n->sim, m);
}

static void pending_remove(struct sim_node *n, uint32_t i)
{
    n->pending[i] = n->pending[--n->n_pending];
}

/* Serves the reads whose index has been applied. */
static void serve_reads(struct sim *s, struct sim_node *n)
{
    uint64_t applied = corral_state_applied(n->st);
    for (uint32_t i = 0; i < n->n_pending;) {
        struct sim_pending *p = &n->pending[i];
        if (p->read && p->read_ready && p->index <= applied) {
            const struct sim_op *op = &s->ops[p->op];
            sim_check_read(s, n, op->key);
            sim_client_reply(s, p->op, true, sim_kv_version(n, op->key), false, 0);
            pending_remove(n, i);
        } else {
            i++;
        }
    }
}

/* --verbose: the partition ops and member status changes the leader
 * applies, one line each. */
static void trace_ops(struct sim *s, const struct sim_node *n, const struct corral_raft_entry *e,
                      const struct corral_state_result *res)
{
    struct corral_state_cmd c;
    if (!s->p.verbose || n->coord == NULL || !corral_coord_leading(n->coord) || e->data == NULL ||
        corral_state_cmd_decode(e->data, &c) != 0)
        return;
    if (c.type == CORRAL_STATE_MEMBER_STATUS) {
        sim_trace(s, "node %u applies member %u status %u: status %u", n->id, c.id, c.status,
                  res->status);
        return;
    }
    if (c.type != CORRAL_STATE_PARTITION_OPS)
        return;
    for (uint32_t i = 0; i < c.n_ops; i++) {
        struct corral_partition_opv op;
        corral_state_cmd_op_at(&c, i, &op);
        sim_trace(s, "node %u applies r%u/p%u op %u member %u epoch %llu: status %u", n->id, c.id,
                  op.partition, op.op, op.member, (unsigned long long)op.epoch, res->status);
    }
}

static void io_applied(void *ud, const struct corral_raft_entry *e,
                       const struct corral_state_result *res)
{
    struct sim_node *n = ud;
    if (res != NULL)
        trace_ops(n->sim, n, e, res);
    sim_client_applied(n->sim, n, e, res);
    sim_roster_applied(n->sim, n, e);
    sim_check_applied(n->sim, n, e->index);
}

static void io_restored(void *ud, const struct corral_raft_snapshot_meta *meta)
{
    struct sim_node *n = ud;
    sim_roster_restored(n, meta->index);
    sim_check_applied(n->sim, n, meta->index);
}

static void io_batch_done(void *ud, const struct corral_raft_ready *rd)
{
    struct sim_node *n = ud;
    struct sim *s = n->sim;
    sim_coord_soft_state(s, n, rd);
    sim_coord_watches(s, n);
    for (uint32_t i = 0; i < rd->n_reads; i++) {
        for (uint32_t j = 0; j < n->n_pending; j++) {
            struct sim_pending *p = &n->pending[j];
            if (!p->read || p->op != rd->reads[i].id || p->read_ready)
                continue;
            if (!rd->reads[i].ok) {
                sim_client_reply(s, p->op, false, 0, false, 0);
                pending_remove(n, j);
            } else {
                p->read_ready = true;
                p->index = rd->reads[i].index;
            }
            break;
        }
    }
    serve_reads(s, n);
}

static int io_save_snapshot(void *ud, const struct corral_raft_snapshot_meta *meta,
                            struct corral_rbuf *data)
{
    struct sim_node *n = ud;
    disk_snapshot(&n->disk, meta, data);
    return 0;
}

static const struct corral_drive_io sim_io = {
    .persist = io_persist,
    .send = io_send,
    .applied = io_applied,
    .restored = io_restored,
    .batch_done = io_batch_done,
    .save_snapshot = io_save_snapshot,
};

static void drive_result(struct sim *s, struct sim_node *n, int rv)
{
    if (rv != 0)
        sim_fail(s, "node %u: the driver stopped: %d", n->id, rv);
}

void sim_node_flush(struct sim *s, struct sim_node *n)
{
    if (!n->up)
        return;
    drive_result(s, n, corral_drive_run(&n->drive));
}

void sim_node_persisted(struct sim *s, struct sim_node *n, uint32_t incarnation)
{
    if (!n->up || n->incarnation != incarnation || !n->persisting)
        return;
    n->persisting = false;
    /* The fsync's duration on the node's clock, as node.c measures it. */
    corral_leader_health_fsync(&n->health, sim_node_ms(s, n) - n->persist_ms);
    disk_write_batch(s, n, &n->drive.rd);
    drive_result(s, n, corral_drive_persisted(&n->drive));
}

/* As node_health_tick: the leader's health step on the node's clock, with
 * the fsyncs that completed since the last tick and no loop lag (a
 * simulated tick is never late); a transfer it decides starts here, as
 * node_health.c's auto_transfer does. */
static void health_tick(struct sim *s, struct sim_node *n)
{
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    struct corral_leader_health_decision d;
    corral_leader_health_tick(&n->health, sim_node_ms(s, n), &st, false, 0, &d);
    for (uint32_t i = 1; st.role == CORRAL_RAFT_LEADER && i <= SIM_NODES_MAX; i++) {
        struct sim_node *from = &s->nodes[i];
        if (from->health_target != n->id || st.term <= from->health_term)
            continue;
        if (st.term == from->health_term + 1)
            s->res->health_handed++; /* the target led the very next term */
        from->health_target = 0;
    }
    const char *why = corral_leader_health_reason_name(d.reason);
    if (d.started) {
        s->res->health_degraded++;
        sim_trace(s, "node %u: leader health: degraded (%s %llu, limit %llu)", n->id, why,
                  (unsigned long long)d.value, (unsigned long long)d.limit);
    }
    if (d.recovered)
        sim_trace(s, "node %u: leader health: recovered after %llu ms", n->id,
                  (unsigned long long)d.degraded_for_ms);
    if (d.no_target) {
        s->res->health_no_target++;
        sim_trace(s, "node %u: leader health: degraded for %llu ms, no voter to hand to", n->id,
                  (unsigned long long)d.degraded_for_ms);
    }
    if (!d.transfer)
        return;
    int rv = corral_raft_transfer(n->raft, d.target);
    sim_trace(s, "node %u: leader health: degraded for %llu ms (%s): transfer to node %llu -> %d",
              n->id, (unsigned long long)d.degraded_for_ms, why, (unsigned long long)d.target, rv);
    if (rv != 0)
        return;
    s->res->health_transfers++;
    n->health_target = d.target;
    n->health_term = st.term;
    sim_node_flush(s, n);
}

void sim_node_tick(struct sim *s, struct sim_node *n, uint32_t incarnation)
{
    if (!n->up || n->incarnation != incarnation)
        return;
    corral_raft_tick(n->raft, sim_node_ms(s, n));
    schedule_tick(s, n);
    sim_node_flush(s, n);
    if (n->up)
        sim_coord_tick(s, n);
    if (n->up) /* as the node: the health step after the controller's */
        health_tick(s, n);
    if (n->up) /* and the roster step after that */
        sim_roster_tick(s, n);
}

void sim_node_step(struct sim *s, struct sim_node *n, const struct corral_raft_msg *m)
{
    corral_raft_tick(n->raft, sim_node_ms(s, n));
    if (m->from >= 1 && m->from <= SIM_NODES_MAX)
        n->heard |= 1u << m->from;
    int rv = corral_raft_step(n->raft, m);
    if (rv != 0 && rv != CORRAL_EINVAL)
        sim_fail(s, "node %u step failed: %d", n->id, rv);
    sim_node_flush(s, n);
}
