/* Controller: the evaluation loop (view, targets, failover pass, deaths,
 * moves pass, in that order: C9) and the progress reports. Per-partition
 * decisions are in controller_step.c, the view and targets in
 * controller_view.c. */
#include <assert.h>
#include <string.h>

#include "corral.h"
#include "core/controller_internal.h"
#include "util/mem.h"

void corral_controller_config_default(struct corral_controller_config *c)
{
    c->copies_per_member_max = 4;
    c->copies_max = 64;
    c->commands_max = 32;
    c->ops_per_command_max = CORRAL_STATE_OPS_MAX;
    c->proposal_timeout_ms = 2000;
}

int corral_controller_config_check(const struct corral_controller_config *c)
{
    if (c->copies_per_member_max == 0 || c->copies_max == 0 || c->proposal_timeout_ms == 0 ||
        c->commands_max == 0 || c->commands_max > CORRAL_CONTROLLER_COMMANDS_MAX ||
        c->ops_per_command_max < CORRAL_CONTROLLER_GROUP_OPS_MAX ||
        c->ops_per_command_max > CORRAL_STATE_OPS_MAX)
        return CORRAL_EINVAL;
    return 0;
}

int corral_controller_new(const struct corral_controller_config *cfg,
                          struct corral_controller **out)
{
    struct corral_controller_config def;
    *out = NULL;
    if (cfg == NULL) {
        corral_controller_config_default(&def);
        cfg = &def;
    }
    if (corral_controller_config_check(cfg) != 0)
        return CORRAL_EINVAL;
    struct corral_controller *c = corral_calloc(1, sizeof(*c));
    if (c == NULL)
        return CORRAL_ENOMEM;
    c->cfg = *cfg;
    c->members = corral_calloc(CORRAL_STATE_MEMBERS_MAX, sizeof(*c->members));
    c->hash = corral_calloc(CTL_HASH_SIZE, sizeof(*c->hash));
    c->hosts = corral_calloc(CORRAL_STATE_MEMBERS_MAX, sizeof(*c->hosts));
    c->zones = corral_calloc(CORRAL_STATE_MEMBERS_MAX, sizeof(*c->zones));
    c->zone_hash = corral_calloc(CTL_HASH_SIZE, sizeof(*c->zone_hash));
    c->zone_rank = corral_calloc(CORRAL_STATE_MEMBERS_MAX, sizeof(*c->zone_rank));
    c->res = corral_calloc(CORRAL_STATE_RESOURCES_MAX, sizeof(*c->res));
    c->res_next = corral_calloc(CORRAL_STATE_RESOURCES_MAX, sizeof(*c->res_next));
    c->deaths = corral_calloc(CORRAL_STATE_MEMBERS_MAX, sizeof(*c->deaths));
    c->cmds = corral_calloc(cfg->commands_max, sizeof(*c->cmds));
    c->ops = corral_calloc((size_t)cfg->commands_max * cfg->ops_per_command_max, sizeof(*c->ops));
    if (c->members == NULL || c->hash == NULL || c->hosts == NULL || c->zones == NULL ||
        c->zone_hash == NULL || c->zone_rank == NULL || c->res == NULL || c->res_next == NULL ||
        c->deaths == NULL || c->cmds == NULL || c->ops == NULL) {
        corral_controller_free(c);
        return CORRAL_ENOMEM;
    }
    *out = c;
    return 0;
}

void corral_controller_free(struct corral_controller *c)
{
    if (c == NULL)
        return;
    if (c->res != NULL)
        ctl_resources_free(c);
    corral_free(c->members);
    corral_free(c->hash);
    corral_free(c->hosts);
    corral_free(c->zones);
    corral_free(c->zone_hash);
    corral_free(c->zone_rank);
    corral_free(c->res);
    corral_free(c->res_next);
    corral_free(c->deaths);
    corral_free(c->cmds);
    corral_free(c->ops);
    corral_free(c);
}

void corral_controller_forget(struct corral_controller *c)
{
    for (uint32_t i = 0; i < c->n_res; i++) {
        struct ctl_resource *r = c->res[i];
        memset(r->pending, 0, r->partitions * sizeof(*r->pending));
        r->n_pending = 0;
    }
    c->n_deaths = 0;
}

const struct corral_placement_result *corral_controller_target(const struct corral_controller *c,
                                                               uint32_t resource_id)
{
    const struct ctl_resource *r = ctl_resource_find(c, resource_id);
    return r != NULL ? r->target : NULL;
}

/* MEMBER_STATUS dead for workers whose lease is over (C3: only once
 * settled). A member never heard in this term that holds nothing is
 * left alone: it may have just registered, and it hosts nothing until it
 * is heard (it is not a placement member while its lease is "over"). */
static void deaths_propose(struct corral_controller *c, const struct corral_liveness *lv)
{
    if (!c->settled)
        return;
    for (uint32_t i = 0; i < c->n_members; i++) {
        struct ctl_member *m = &c->members[i];
        if (m->role != CORRAL_MEMBER_WORKER || m->death_pending || !m->out ||
            (m->status != CORRAL_MEMBER_ACTIVE && m->status != CORRAL_MEMBER_DRAINING))
            continue;
        if (!corral_liveness_dead(lv, m->id, c->now_ms))
            continue;
        if (m->replicas == 0 && corral_liveness_age_ms(lv, m->id, c->now_ms) == UINT64_MAX)
            continue;
        if (c->n_cmds == c->cfg.commands_max) {
            c->stats.deferred++;
            return;
        }
        struct corral_state_cmd *cmd = &c->cmds[c->n_cmds++];
        memset(cmd, 0, sizeof(*cmd));
        cmd->type = CORRAL_STATE_MEMBER_STATUS;
        cmd->id = m->id;
        cmd->status = CORRAL_MEMBER_DEAD;
        assert(c->n_deaths < CORRAL_STATE_MEMBERS_MAX);
        c->deaths[c->n_deaths++] =
            (struct ctl_death){m->id, c->now_ms + c->cfg.proposal_timeout_ms};
        m->death_pending = true;
        c->stats.deaths++;
    }
}

int corral_controller_evaluate(struct corral_controller *c, const struct corral_state *st,
                               const struct corral_liveness *lv, uint64_t now_ms,
                               struct corral_controller_output *out)
{
    memset(out, 0, sizeof(*out));
    memset(&c->stats, 0, sizeof(c->stats));
    c->n_cmds = 0;
    c->cur_cmd = CTL_NOIDX;
    out->cmds = c->cmds;
    int rv = ctl_view_build(c, st, lv, now_ms);
    if (rv == 0)
        rv = ctl_resources_sync(c, st);
    uint32_t n = c->n_res;
    for (uint32_t i = 0; i < n && rv == 0; i++)
        rv = ctl_target_update(c, c->res[i], corral_state_resource_at(st, i), false);
    if (rv != 0)
        return rv;
    /* From here on nothing fails: what is proposed is marked in flight. */
    bool refined[CORRAL_STATE_RESOURCES_MAX];
    for (uint32_t i = 0; i < n; i++) {
        struct ctl_resource *r = c->res[i];
        const struct corral_state_resource *sr = corral_state_resource_at(st, i);
        ctl_scan(c, r, sr);
        /* At a target the engine has not confirmed: ask it again now. Out
         * of memory, the resource has no target until the next evaluation
         * computes one from the state, and no moves this time. */
        refined[i] = r->quiet && !r->fixed && ctl_target_update(c, r, sr, true) == 0;
    }
    deaths_propose(c, lv);
    for (uint32_t i = 0; i < n; i++)
        if (c->res[i]->target != NULL) /* NULL: a refinement ran out of memory */
            ctl_pass_moves(c, c->res[i], corral_state_resource_at(st, i), refined[i]);
    for (uint32_t i = 0; i < n; i++)
        c->stats.in_flight += c->res[i]->n_pending;
    out->n_cmds = c->n_cmds;
    out->stats = c->stats;
    return 0;
}

/* Reports. */

struct direct_ctx {
    const struct corral_state *st;
    const struct corral_liveness *lv;
    uint64_t now_ms;
    bool settled;
};

/* As the view's grantable and draining, read from the state and liveness
 * directly: a report may come between evaluations. */
static bool direct_in_lease(const void *ctx, uint32_t id, uint8_t status)
{
    const struct direct_ctx *d = ctx;
    const struct corral_state_member *m = corral_state_member_by_id(d->st, id);
    return m != NULL && m->status == status &&
           !(d->settled && corral_liveness_lease_over(d->lv, id, d->now_ms));
}

static bool direct_grantable(const void *ctx, uint32_t id)
{
    return direct_in_lease(ctx, id, CORRAL_MEMBER_ACTIVE);
}

static bool direct_draining(const void *ctx, uint32_t id)
{
    return direct_in_lease(ctx, id, CORRAL_MEMBER_DRAINING);
}

int corral_controller_report(struct corral_controller *c, const struct corral_state *st,
                             const struct corral_liveness *lv, uint64_t now_ms, uint32_t member,
                             const struct corral_progress *report,
                             struct corral_controller_output *out)
{
    memset(out, 0, sizeof(*out));
    out->cmds = &c->report_cmd;
    if (report->state < CORRAL_PROGRESS_IN_SYNC || report->state > CORRAL_PROGRESS_FAILED)
        return CORRAL_EINVAL;
    const struct corral_state_resource *sr =
        report->resource_id != 0
            ? corral_state_resource_by_id(st, report->resource_id)
            : corral_state_resource_by_name(st, report->resource, report->resource_len);
    if (sr == NULL || report->partition >= sr->partitions ||
        report->state == CORRAL_PROGRESS_FAILED)
        return 0;
    const struct corral_state_partition *ps = &sr->parts[report->partition];
    const struct corral_state_member *sm = corral_state_member_by_id(st, member);
    if (sm == NULL || ps->epoch != report->epoch)
        return 0;
    struct ctl_group g = {0};
    uint32_t p = report->partition;
    if (report->state == CORRAL_PROGRESS_IN_SYNC) {
        int j = ctl_row_find(ps, member);
        if (j < 0 || ps->replicas[j].state != CORRAL_REPLICA_COPYING ||
            sm->status == CORRAL_MEMBER_DEAD)
            return 0;
        g.ops[g.n++] = (struct corral_partition_opv){p, CORRAL_OP_MARK_IN_SYNC, member, ps->epoch};
    } else {
        /* Released by the primary at its epoch, asked to or not: an agent
         * never acts again at an epoch it released (agent.h A3), and
         * reports one it refuses to take up (C3). */
        if (ps->primary != member)
            return 0;
        g.ops[g.n++] = (struct corral_partition_opv){p, CORRAL_OP_CLEAR, member, ps->epoch};
        struct ctl_resource *r = ctl_resource_find(c, sr->id);
        const uint32_t *t = NULL;
        uint32_t tn = 0;
        if (r != NULL && r->target != NULL && r->replicas == sr->replicas) {
            t = &r->target->map.slots[(size_t)p * r->replicas];
            while (tn < r->replicas && t[tn] != CORRAL_PLACEMENT_NONE)
                tn++;
        }
        struct direct_ctx d = {st, lv, now_ms, corral_liveness_settled(lv, now_ms)};
        uint8_t op;
        uint32_t to = ctl_grant_pick(ps, t, tn, member, direct_grantable, direct_draining, &d, &op);
        if (to != CORRAL_PLACEMENT_NONE)
            g.ops[g.n++] = (struct corral_partition_opv){p, op, to, ps->epoch};
    }
    /* C6 for reports too: the same report heard again (an agent repeats
     * it on every heartbeat until one is answered, A7, so a lost answer
     * or a slow commit brings it back many times) proposes nothing while
     * its step is in flight. Without this a leader that cannot commit for
     * a while floods its log with refused duplicates. Then it is in
     * flight, so that an evaluation does not make the step again. */
    struct ctl_resource *rr = ctl_resource_find(c, sr->id);
    if (rr != NULL) {
        struct ctl_pending *rec = &rr->pending[p];
        const struct corral_partition_opv *last = &g.ops[g.n - 1];
        if (rec->deadline_ms != 0 && now_ms < rec->deadline_ms && rec->epoch == ps->epoch &&
            rec->op == last->op && rec->member == last->member && !ctl_pending_done(rec, ps))
            return 0;
        if (rec->deadline_ms == 0)
            rr->n_pending++;
        ctl_pending_set(rec, ps->epoch, &g, now_ms + c->cfg.proposal_timeout_ms);
    }
    memcpy(c->report_ops, g.ops, g.n * sizeof(g.ops[0]));
    memset(&c->report_cmd, 0, sizeof(c->report_cmd));
    c->report_cmd.type = CORRAL_STATE_PARTITION_OPS;
    c->report_cmd.id = sr->id;
    c->report_cmd.n_ops = g.n;
    c->report_cmd.ops = c->report_ops;
    out->n_cmds = 1;
    return 0;
}
