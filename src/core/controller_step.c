/* Controller: what one partition needs next, in the safe steps of
 * docs/partitions.md. The failover pass clears primaries whose lease is over
 * and grants partitions that have none; the moves pass places never-granted
 * partitions, starts hand-offs, copies (throttled) and drops. Each
 * partition gets at most one group of ops per call, and none while an
 * earlier proposal for it is in flight (C6). */
#include <assert.h>
#include <string.h>

#include "corral.h"
#include "core/controller_internal.h"

#define NONE CORRAL_PLACEMENT_NONE

/* Replicas a row may hold while a copy runs: R + 1 (state.h S2), so a
 * move copies first and drops the replica it replaces once the copy is in
 * sync (C4); R = 1 partitions move too. */
static uint32_t row_cap(uint32_t replicas)
{
    return replicas + 1;
}

int ctl_row_find(const struct corral_state_partition *ps, uint32_t member)
{
    for (int j = 0; j < (int)ps->n_replicas; j++)
        if (ps->replicas[j].member == member)
            return j;
    return -1;
}

static bool row_in_sync(const struct corral_state_partition *ps, uint32_t member)
{
    int j = ctl_row_find(ps, member);
    return j >= 0 && ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
}

static bool target_has(const uint32_t *t, uint32_t tn, uint32_t member)
{
    for (uint32_t k = 0; k < tn; k++)
        if (t[k] == member)
            return true;
    return false;
}

bool ctl_pending_done(const struct ctl_pending *rec, const struct corral_state_partition *ps)
{
    /* Every op is a compare-and-set on the epoch: once it moved, whatever
     * was in flight either applied or will be refused. */
    if (ps->epoch != rec->epoch)
        return true;
    int j = ctl_row_find(ps, rec->member);
    switch (rec->op) {
    case CORRAL_OP_ADD_COPYING:
    case CORRAL_OP_ADD_IN_SYNC:
        return j >= 0;
    case CORRAL_OP_DROP:
        return j < 0;
    case CORRAL_OP_MARK_IN_SYNC:
        return j < 0 || ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
    case CORRAL_OP_RELEASE:
        return ps->releasing || ps->primary != rec->member;
    case CORRAL_OP_CLEAR:
        return ps->primary != rec->member;
    default: /* GRANT: shows as a new epoch */
        return false;
    }
}

void ctl_pending_set(struct ctl_pending *rec, uint64_t epoch, const struct ctl_group *g,
                     uint64_t deadline_ms)
{
    assert(g->n > 0);
    rec->deadline_ms = deadline_ms > 0 ? deadline_ms : 1;
    rec->epoch = epoch;
    rec->member = g->ops[g->n - 1].member;
    rec->op = g->ops[g->n - 1].op;
}

static void count_copy(struct corral_controller *c, uint32_t member)
{
    struct ctl_member *m = ctl_member_find_mut(c, member);
    if (m != NULL)
        m->copies++;
    c->copies_total++;
}

static void group_add(struct ctl_group *g, uint32_t partition, uint8_t op, uint32_t member,
                      uint64_t epoch)
{
    assert(g->n < CORRAL_CONTROLLER_GROUP_OPS_MAX);
    g->ops[g->n++] = (struct corral_partition_opv){partition, op, member, epoch};
}

/* Appends a partition's group to the resource's current command, or to a
 * new one; false when the budget is spent (C7). Marks it in flight (C6). */
static bool emit(struct corral_controller *c, struct ctl_resource *r,
                 const struct corral_state_partition *ps, const struct ctl_group *g)
{
    uint32_t per = c->cfg.ops_per_command_max;
    struct corral_state_cmd *cmd = c->cur_cmd != CTL_NOIDX ? &c->cmds[c->cur_cmd] : NULL;
    if (cmd == NULL || cmd->id != r->id || cmd->n_ops + g->n > per) {
        if (c->n_cmds == c->cfg.commands_max) {
            c->stats.deferred++;
            return false;
        }
        c->cur_cmd = c->n_cmds++;
        cmd = &c->cmds[c->cur_cmd];
        memset(cmd, 0, sizeof(*cmd));
        cmd->type = CORRAL_STATE_PARTITION_OPS;
        cmd->id = r->id;
        cmd->ops = &c->ops[(size_t)c->cur_cmd * per];
    }
    struct corral_partition_opv *dst = &c->ops[(size_t)c->cur_cmd * per + cmd->n_ops];
    memcpy(dst, g->ops, g->n * sizeof(*dst));
    cmd->n_ops += g->n;
    for (uint32_t i = 0; i < g->n; i++) {
        switch (g->ops[i].op) {
        case CORRAL_OP_CLEAR:
            c->stats.clears++;
            break;
        case CORRAL_OP_GRANT:
        case CORRAL_OP_GRANT_DRAINING:
            c->stats.grants++;
            break;
        case CORRAL_OP_RELEASE:
            c->stats.releases++;
            break;
        case CORRAL_OP_ADD_IN_SYNC:
            c->stats.fresh++;
            break;
        case CORRAL_OP_DROP:
            c->stats.drops++;
            break;
        case CORRAL_OP_ADD_COPYING:
            c->stats.copies++;
            count_copy(c, g->ops[i].member);
            break;
        default:
            break;
        }
    }
    struct ctl_pending *rec = &r->pending[g->ops[0].partition];
    if (rec->deadline_ms == 0)
        r->n_pending++;
    ctl_pending_set(rec, ps->epoch, g, c->now_ms + c->cfg.proposal_timeout_ms);
    return true;
}

static bool view_grantable(const void *ctx, uint32_t id)
{
    const struct ctl_member *m = ctl_member_find(ctx, id);
    return m != NULL && m->grantable;
}

static bool view_live(const void *ctx, uint32_t id)
{
    const struct ctl_member *m = ctl_member_find(ctx, id);
    return m != NULL && m->live;
}

/* A draining member whose lease is not over: a primary of last resort. */
static bool view_draining(const void *ctx, uint32_t id)
{
    const struct ctl_member *m = ctl_member_find(ctx, id);
    return m != NULL && m->live && m->status == CORRAL_MEMBER_DRAINING;
}

/* Who gets the primary: the target primary, else the first target member,
 * else the first replica, that is in sync on a grantable member and is not
 * `except` (C2); NONE when there is none. */
uint32_t ctl_grant_choose(const struct corral_state_partition *ps, const uint32_t *t, uint32_t tn,
                          uint32_t except, bool (*grantable)(const void *, uint32_t),
                          const void *ctx)
{
    for (uint32_t k = 0; k < tn; k++)
        if (t[k] != except && row_in_sync(ps, t[k]) && grantable(ctx, t[k]))
            return t[k];
    for (uint32_t j = 0; j < ps->n_replicas; j++) {
        const struct corral_state_replica *rp = &ps->replicas[j];
        if (rp->member != except && rp->state == CORRAL_REPLICA_IN_SYNC &&
            grantable(ctx, rp->member))
            return rp->member;
    }
    return NONE;
}

uint32_t ctl_grant_pick(const struct corral_state_partition *ps, const uint32_t *t, uint32_t tn,
                        uint32_t except, bool (*grantable)(const void *, uint32_t),
                        bool (*draining)(const void *, uint32_t), const void *ctx, uint8_t *op)
{
    *op = CORRAL_OP_GRANT;
    uint32_t to = ctl_grant_choose(ps, t, tn, except, grantable, ctx);
    if (to == NONE) {
        *op = CORRAL_OP_GRANT_DRAINING;
        to = ctl_grant_choose(ps, NULL, 0, except, draining, ctx);
    }
    return to;
}

static uint32_t target_len(const uint32_t *t, uint32_t replicas)
{
    uint32_t n = 0;
    while (n < replicas && t[n] != NONE)
        n++;
    return n;
}

/* The partition already is its target row: same members, all in sync,
 * the target primary acting. Most rows, so it is checked first. */
static bool at_target(const struct corral_state_partition *ps, const uint32_t *t, uint32_t tn)
{
    if (ps->releasing || ps->n_replicas != tn)
        return false;
    if (tn == 0)
        return ps->primary == CORRAL_STATE_NONE;
    if (ps->primary != t[0])
        return false;
    for (uint32_t j = 0; j < ps->n_replicas; j++)
        if (ps->replicas[j].state != CORRAL_REPLICA_IN_SYNC ||
            !target_has(t, tn, ps->replicas[j].member))
            return false;
    return true;
}

/* Failover (C3, C9): a primary whose lease is certainly over is cleared and
 * an in-sync replica promoted in the same command; a partition that had a
 * primary and has none gets one. Returns whether it proposed anything. */
static bool failover_one(struct corral_controller *c, struct ctl_resource *r,
                         const struct corral_state_partition *ps, uint32_t p, const uint32_t *t,
                         uint32_t tn)
{
    struct ctl_group g = {0};
    if (ps->primary != CORRAL_STATE_NONE) {
        if (tn > 0 && ps->primary == t[0]) /* a target member is a host: not out */
            return false;
        const struct ctl_member *pm = ctl_member_find(c, ps->primary);
        if (pm == NULL || !pm->out)
            return false;
        group_add(&g, p, CORRAL_OP_CLEAR, ps->primary, ps->epoch);
    } else if (ps->epoch == 0) {
        return false; /* never granted: placed by the moves pass */
    }
    uint8_t op;
    uint32_t to = ctl_grant_pick(ps, t, tn, ps->primary, view_grantable, view_draining, c, &op);
    if (to != NONE)
        group_add(&g, p, op, to, ps->epoch);
    return g.n > 0 && emit(c, r, ps, &g);
}

/* A never-granted partition (epoch 0) has no data: its replicas are
 * placed in sync, off-target ones dropped, and the target primary granted
 * at once, in one group (C3, C5). During the new-leader wait every lease
 * counts as running, so a member that registered and was never heard in
 * this term looks like a host: a fresh partition waits until each of its
 * target members has been heard (or the wait ends and the silent ones are
 * out of the target), rather than be granted to a member that may never
 * have run, whose partition would then wait for it forever (Lost data). */
static void place_fresh(struct corral_controller *c, struct ctl_resource *r,
                        const struct corral_state_partition *ps, uint32_t p, const uint32_t *t,
                        uint32_t tn)
{
    for (uint32_t k = 0; k < tn; k++) {
        const struct ctl_member *m = ctl_member_find(c, t[k]);
        if (m == NULL || !m->heard) {
            c->stats.unheard++;
            return;
        }
    }
    struct ctl_group g = {0};
    uint32_t n = ps->n_replicas, to = NONE;
    for (uint32_t j = 0; j < ps->n_replicas; j++)
        if (!target_has(t, tn, ps->replicas[j].member)) {
            group_add(&g, p, CORRAL_OP_DROP, ps->replicas[j].member, 0);
            n--;
        }
    for (uint32_t k = 0; k < tn; k++) {
        int j = ctl_row_find(ps, t[k]);
        if (j < 0 && n < r->replicas) { /* in sync: up to R only (S2) */
            group_add(&g, p, CORRAL_OP_ADD_IN_SYNC, t[k], 0);
            n++;
            j = (int)ps->n_replicas; /* now in sync */
        }
        if (to == NONE && j >= 0 &&
            (j == (int)ps->n_replicas || ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC))
            to = t[k];
    }
    if (to != NONE)
        group_add(&g, p, CORRAL_OP_GRANT, to, 0);
    if (g.n > 0)
        emit(c, r, ps, &g);
}

/* A replica to drop so that a copy fits a full row: off target, not the
 * primary, not already dropped; a copying one first. An in-sync one only
 * while more than R in-sync replicas on live members remain (so never the
 * copy's last source): a row at R + 1 whose extra replica is a copy still
 * running waits for it rather than fall to R - 1 in sync. */
static int room_victim(const struct corral_controller *c, const struct corral_state_partition *ps,
                       const uint32_t *t, uint32_t tn, const bool *dropped, uint32_t replicas)
{
    uint32_t sources = 0;
    int victim = -1;
    for (uint32_t j = 0; j < ps->n_replicas; j++)
        sources += !dropped[j] && ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC &&
                   view_live(c, ps->replicas[j].member);
    for (int j = (int)ps->n_replicas - 1; j >= 0; j--) {
        const struct corral_state_replica *rp = &ps->replicas[j];
        if (dropped[j] || rp->member == ps->primary || target_has(t, tn, rp->member))
            continue;
        if (rp->state == CORRAL_REPLICA_COPYING)
            return j;
        if (victim < 0 && (sources > replicas || !view_live(c, rp->member)))
            victim = j;
    }
    return victim;
}

static bool throttle_allows(const struct corral_controller *c, uint32_t member)
{
    const struct ctl_member *m = ctl_member_find(c, member);
    return m != NULL && m->copies < c->cfg.copies_per_member_max &&
           c->copies_total < c->cfg.copies_max;
}

/* Copies toward the target, or, once every target replica is in sync,
 * drops the surplus (C4, C5). g may already hold drops of lost replicas
 * (marked in dropped); n is the row's size after them. */
static void copy_or_drop(struct corral_controller *c, const struct ctl_resource *r,
                         const struct corral_state_partition *ps, uint32_t p, const uint32_t *t,
                         uint32_t tn, struct ctl_group *g, bool *dropped, uint32_t n)
{
    uint32_t want = NONE;
    bool missing = false, synced = true;
    for (uint32_t k = 0; k < tn; k++) {
        int j = ctl_row_find(ps, t[k]);
        if (j >= 0) {
            synced &= ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
            continue;
        }
        missing = true;
        if (want == NONE && throttle_allows(c, t[k]))
            want = t[k];
    }
    if (missing) {
        if (want == NONE) {
            c->stats.throttled++;
            return;
        }
        if (n >= row_cap(r->replicas)) {
            int v = room_victim(c, ps, t, tn, dropped, r->replicas);
            if (v < 0) {
                /* Only the primary could make room, or only an in-sync
                 * replica while a copy runs: no safe step yet. */
                c->stats.blocked++;
                return;
            }
            group_add(g, p, CORRAL_OP_DROP, ps->replicas[v].member, ps->epoch);
            dropped[v] = true;
            n--;
        }
        if (n < row_cap(r->replicas))
            group_add(g, p, CORRAL_OP_ADD_COPYING, want, ps->epoch);
        return;
    }
    if (!synced)
        return;
    for (uint32_t j = 0; j < ps->n_replicas; j++) {
        uint32_t m = ps->replicas[j].member;
        if (!dropped[j] && m != ps->primary && !target_has(t, tn, m)) {
            group_add(g, p, CORRAL_OP_DROP, m, ps->epoch);
            dropped[j] = true;
        }
    }
}

/* The hand-off (C4): the primary is asked to release when the target
 * primary, or, for a primary off target, another target member, is in sync
 * on a grantable member to take over. */
static bool handoff_wanted(const struct corral_controller *c,
                           const struct corral_state_partition *ps, const uint32_t *t, uint32_t tn)
{
    if (ps->primary == CORRAL_STATE_NONE || (tn > 0 && t[0] == ps->primary))
        return false;
    if (tn > 0 && row_in_sync(ps, t[0]) && view_grantable(c, t[0]))
        return true;
    if (target_has(t, tn, ps->primary))
        return false; /* it stays a replica: wait for the target primary's copy */
    uint32_t to = ctl_grant_choose(ps, t, tn, ps->primary, view_grantable, c);
    return to != NONE && target_has(t, tn, to);
}

static void moves_one(struct corral_controller *c, struct ctl_resource *r,
                      const struct corral_state_resource *sr, uint32_t p)
{
    const struct corral_state_partition *ps = &sr->parts[p];
    const uint32_t *t = &r->target->map.slots[(size_t)p * r->replicas];
    uint32_t tn = target_len(t, r->replicas);
    if (at_target(ps, t, tn))
        return;
    c->stats.out_of_target++;
    /* An empty target row (no member could host when it was computed)
     * moves nothing: with no target member to be in sync first, the
     * surplus drop below would drop every replica, data and all (C4). */
    if (tn == 0)
        return;
    if (ps->releasing)
        return; /* its report, or its lease running out, comes first */
    if (ps->primary == CORRAL_STATE_NONE && ps->epoch == 0) {
        place_fresh(c, r, ps, p, t, tn);
        return;
    }
    const struct ctl_member *pm = ctl_member_find(c, ps->primary);
    if (pm != NULL && pm->out)
        return; /* the failover pass's (out of budget this time) */
    /* With no in-sync replica on a live member the data lives only on
     * lost members: keep their replicas and wait for one to return, rather
     * than copy from nothing and grant an empty replica (C4). */
    if (ctl_grant_choose(ps, t, 0, NONE, view_live, c) == NONE) {
        c->stats.lost++;
        return;
    }
    struct ctl_group g = {0};
    bool dropped[CORRAL_STATE_ROW_MAX] = {false};
    uint32_t n = ps->n_replicas;
    for (uint32_t j = 0; j < ps->n_replicas; j++) {
        uint32_t m = ps->replicas[j].member;
        if (m != ps->primary && !view_live(c, m)) {
            group_add(&g, p, CORRAL_OP_DROP, m, ps->epoch);
            dropped[j] = true;
            n--;
        }
    }
    if (handoff_wanted(c, ps, t, tn))
        group_add(&g, p, CORRAL_OP_RELEASE, ps->primary, ps->epoch);
    else
        copy_or_drop(c, r, ps, p, t, tn, &g, dropped, n);
    if (g.n > 0)
        emit(c, r, ps, &g);
}

void ctl_pass_moves(struct corral_controller *c, struct ctl_resource *r,
                    const struct corral_state_resource *sr, bool all)
{
    c->cur_cmd = CTL_NOIDX;
    uint32_t n = all ? sr->partitions : r->n_todo;
    for (uint32_t k = 0; k < n && c->stats.deferred == 0; k++) {
        uint32_t p = all ? k : r->todo[k];
        if (r->pending[p].deadline_ms == 0)
            moves_one(c, r, sr, p);
    }
}

/* The one scan of every partition: retires in-flight records that applied
 * or timed out, counts copies (applied and in flight) per member, runs the
 * failover step, and lists the partitions the moves pass must look at
 * (off target, nothing in flight). The resource is quiet when every
 * partition is at target and none in flight. Most partitions are at
 * target, so the scan touches little beyond each partition's own bytes. */
void ctl_scan(struct corral_controller *c, struct ctl_resource *r,
              const struct corral_state_resource *sr)
{
    uint32_t at = 0;
    c->cur_cmd = CTL_NOIDX;
    r->n_todo = 0;
    for (uint32_t p = 0; p < sr->partitions; p++) {
        const struct corral_state_partition *ps = &sr->parts[p];
        const uint32_t *t = &r->target->map.slots[(size_t)p * r->replicas];
        uint32_t tn = target_len(t, r->replicas);
        struct ctl_pending *rec = &r->pending[p];
        if (rec->deadline_ms != 0) {
            if (c->now_ms >= rec->deadline_ms || ctl_pending_done(rec, ps)) {
                memset(rec, 0, sizeof(*rec));
                assert(r->n_pending > 0);
                r->n_pending--;
            } else if (rec->op == CORRAL_OP_ADD_COPYING) {
                count_copy(c, rec->member);
            }
        }
        for (uint32_t j = 0; j < ps->n_replicas; j++) {
            bool copying = ps->replicas[j].state == CORRAL_REPLICA_COPYING;
            if (!copying && !c->count_replicas)
                continue;
            struct ctl_member *m = ctl_member_find_mut(c, ps->replicas[j].member);
            if (m != NULL)
                m->replicas++;
            if (copying)
                count_copy(c, ps->replicas[j].member);
        }
        if (at_target(ps, t, tn)) {
            at++;
            continue;
        }
        if (rec->deadline_ms != 0 || (c->stats.deferred == 0 && failover_one(c, r, ps, p, t, tn)))
            continue;
        r->todo[r->n_todo++] = p;
    }
    r->quiet = at == sr->partitions && r->n_pending == 0;
}
