/* The one ready/persist/send/apply order for the node and the simulator:
 * see raft_drive.h for the sequence and the invariants D1-D7 it keeps. */
#include "core/raft_drive.h"

#include <assert.h>
#include <string.h>

#include "corral.h"

void corral_drive_init(struct corral_drive *d, struct corral_raft *raft, struct corral_state *st,
                       const struct corral_drive_io *io, const struct corral_drive_config *cfg,
                       uint64_t snapshot_index)
{
    memset(d, 0, sizeof(*d));
    d->raft = raft;
    d->st = st;
    d->io = *io;
    d->cfg = *cfg;
    d->snapshot_index = snapshot_index;
    assert(corral_state_applied(st) == snapshot_index);
}

static bool is_leader_data(const struct corral_raft_msg *m)
{
    return m->type == CORRAL_RAFT_MSG_APPEND || m->type == CORRAL_RAFT_MSG_SNAPSHOT;
}

/* D1: the leader's data messages early, every other one once durable.
 * Early only when the batch has an fsync to overlap: otherwise its
 * appends (a new commit index, a follower catching up) wait until its
 * committed entries are applied and their writers answered, and go out
 * with the rest. */
static void send_msgs(struct corral_drive *d, bool early)
{
    uint32_t sent = 0;
    for (uint32_t i = 0; i < d->rd.n_msgs; i++) {
        bool leader_data = is_leader_data(&d->rd.msgs[i]) && d->rd.must_sync;
        if (leader_data != early)
            continue;
        d->io.send(d->io.ud, &d->rd.msgs[i]);
        sent++;
    }
    if (early)
        d->stats.early_sends += sent;
    if (early && sent > 0 && d->io.flush != NULL)
        d->io.flush(d->io.ud); /* out before the fsync, not after it */
}

/* D3: every committed entry is below the batch's first new entry, and
 * the batch brings no snapshot, so all of them were durable before it. */
static bool committed_already_durable(const struct corral_raft_ready *rd)
{
    return !rd->has_snapshot && rd->n_committed > 0 &&
           (rd->n_entries == 0 || rd->committed[rd->n_committed - 1].index < rd->entries[0].index);
}

/* D5: one entry, through the state machine. */
static int apply_entry(struct corral_drive *d, const struct corral_raft_entry *e)
{
    uint64_t applied = corral_state_applied(d->st);
    if (e->index <= applied)
        return 0; /* covered by a snapshot already loaded */
    assert(e->index == applied + 1);
    struct corral_state_result res = {0};
    const struct corral_state_result *out = NULL;
    int rv;
    if (e->type == CORRAL_RAFT_ENTRY_NORMAL && e->data != NULL) {
        rv = corral_state_apply(d->st, e->index, e->data, &res);
        out = &res;
    } else {
        rv = corral_state_skip(d->st, e->index);
    }
    if (rv != 0)
        return rv;
    assert(corral_state_applied(d->st) == e->index);
    d->io.applied(d->io.ud, e, out);
    return 0;
}

static int apply_committed(struct corral_drive *d)
{
    for (uint32_t i = 0; i < d->rd.n_committed; i++) {
        int rv = apply_entry(d, &d->rd.committed[i]);
        if (rv != 0)
            return rv;
    }
    return 0;
}

/* D4: a snapshot from the leader, now durable, replaces the state. */
static int load_snapshot(struct corral_drive *d)
{
    uint64_t before = corral_state_applied(d->st);
    int rv = corral_state_restore(d->st, d->rd.snapshot_data);
    if (rv != 0)
        return rv;
    /* The state's own applied index is inside the snapshot's bytes: it
     * must be the index the core installed, and never behind us (D5). */
    if (corral_state_applied(d->st) != d->rd.snapshot.index)
        return CORRAL_ECORRUPT;
    assert(corral_state_applied(d->st) >= before);
    (void)before;
    d->snapshot_index = d->rd.snapshot.index;
    d->stats.snapshots_loaded++;
    if (d->io.restored != NULL)
        d->io.restored(d->io.ud, &d->rd.snapshot);
    return 0;
}

/* D7, between batches. Only an I/O error is fatal: a snapshot that could
 * not be taken is tried again after the next batch. */
static int maybe_snapshot(struct corral_drive *d)
{
    uint64_t applied = corral_state_applied(d->st);
    if (d->cfg.snapshot_every == 0 || applied < d->snapshot_index + d->cfg.snapshot_every)
        return 0;
    struct corral_rbuf *data = corral_state_snapshot(d->st);
    if (data == NULL)
        return 0;
    struct corral_raft_snapshot_meta meta;
    int rv = corral_raft_compact(d->raft, applied, data, d->cfg.snapshot_keep, &meta);
    if (rv == 0)
        rv = d->io.save_snapshot(d->io.ud, &meta, data);
    corral_rbuf_unref(data);
    if (rv == 0 || rv == CORRAL_ECOMPACTED) {
        d->snapshot_index = applied;
        d->stats.snapshots_taken += rv == 0;
        return 0;
    }
    return rv == CORRAL_EIO ? rv : 0;
}

/* The rest of a batch once durable (D1, D4, D3, D6, D7). */
static int finish(struct corral_drive *d)
{
    assert(d->in_flight);
    send_msgs(d, false);
    int rv = d->rd.has_snapshot ? load_snapshot(d) : 0;
    if (rv == 0 && !d->applied_early)
        rv = apply_committed(d);
    if (rv != 0)
        return rv;
    d->io.batch_done(d->io.ud, &d->rd);
#ifndef CORRAL_DRIVE_BROKEN_EARLY_ADVANCE
    corral_raft_advance(d->raft, &d->rd);
#endif
    corral_raft_ready_free(&d->rd);
    d->in_flight = false;
    return maybe_snapshot(d);
}

/* Takes the next batch and starts persisting it; *done when durable. */
static int begin(struct corral_drive *d, bool *done)
{
    assert(!d->in_flight);
    corral_raft_ready(d->raft, &d->rd);
    d->in_flight = true;
    d->stats.batches++;
    send_msgs(d, true);
    d->applied_early = committed_already_durable(&d->rd);
    if (d->applied_early) {
        d->stats.early_applies++;
        int rv = apply_committed(d);
        if (rv != 0)
            return rv;
    }
#ifdef CORRAL_DRIVE_BROKEN_EARLY_ADVANCE
    /* Deliberately wrong, for the simulator's self-test only: the core
     * hears "persisted" before the fsync, so a leader counts its own copy
     * toward a commit while it may still be lost (breaks D6, R1). */
    corral_raft_advance(d->raft, &d->rd);
#endif
    d->stats.syncs += d->rd.must_sync;
    *done = false;
    return d->io.persist(d->io.ud, &d->rd, d->rd.must_sync, done);
}

static int fail(struct corral_drive *d, int rv)
{
    if (rv != 0)
        d->failed = true;
    return rv;
}

int corral_drive_run(struct corral_drive *d)
{
    while (!d->failed && !d->in_flight && corral_raft_has_ready(d->raft)) {
        bool done = false;
        int rv = begin(d, &done);
        if (rv != 0)
            return fail(d, rv);
        if (!done)
            return 0;
        rv = finish(d);
        if (rv != 0)
            return fail(d, rv);
    }
    return 0;
}

int corral_drive_persisted(struct corral_drive *d)
{
    if (d->failed)
        return 0;
    int rv = finish(d);
    if (rv != 0)
        return fail(d, rv);
    return corral_drive_run(d);
}

void corral_drive_close(struct corral_drive *d)
{
    if (d->in_flight)
        corral_raft_ready_free(&d->rd);
    d->in_flight = false;
    d->failed = true;
}
