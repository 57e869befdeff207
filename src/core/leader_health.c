/* The leader's own health and when to hand over: see leader_health.h for
 * the rules H1-H6. */
#include "core/leader_health.h"

#include <assert.h>
#include <string.h>

const char *corral_leader_health_reason_name(enum corral_leader_health_reason r)
{
    static const char *const names[] = {"none", "operator", "fsync", "loop_lag", "apply_backlog"};
    return (unsigned)r <= CORRAL_LH_REASON_MAX ? names[r] : "none";
}

void corral_leader_health_init(struct corral_leader_health *h,
                               const struct corral_leader_health_config *cfg)
{
    memset(h, 0, sizeof(*h));
    h->cfg = *cfg;
}

/* H6's order: the cause first, its symptoms after. */
static const enum corral_leader_health_reason order[] = {CORRAL_LH_FSYNC, CORRAL_LH_APPLY_BACKLOG,
                                                         CORRAL_LH_LOOP_LAG};
#define N_SIGNALS (sizeof(order) / sizeof(order[0]))

static uint64_t limit_of(const struct corral_leader_health_config *c,
                         enum corral_leader_health_reason r)
{
    switch (r) {
    case CORRAL_LH_FSYNC:
        return c->max_fsync_ms;
    case CORRAL_LH_LOOP_LAG:
        return c->max_loop_lag_ms;
    case CORRAL_LH_APPLY_BACKLOG:
        return c->max_apply_backlog;
    default:
        return 0;
    }
}

static bool over(uint64_t value, uint64_t limit)
{
    return limit != 0 && value > limit;
}

/* H5: everything but the cool-down goes. */
static void forget(struct corral_leader_health *h)
{
    struct corral_leader_health keep = *h;
    corral_leader_health_init(h, &keep.cfg);
    h->transferred = keep.transferred;
    h->transfer_ms = keep.transfer_ms;
}

/* H1: records this sample's bad signals; true when any is bad. */
static bool record(struct corral_leader_health *h, uint64_t now_ms,
                   const struct corral_leader_health_sample *s)
{
    if (s->fsync_seen) {
        h->fsync_bad = over(s->fsync_ms, h->cfg.max_fsync_ms);
        h->fsync_ms = s->fsync_ms;
    }
    bool bad[CORRAL_LH_REASON_MAX + 1] = {false};
    uint64_t value[CORRAL_LH_REASON_MAX + 1] = {0};
    bad[CORRAL_LH_FSYNC] = h->fsync_bad;
    value[CORRAL_LH_FSYNC] = h->fsync_ms;
    bad[CORRAL_LH_LOOP_LAG] = over(s->loop_lag_ms, h->cfg.max_loop_lag_ms);
    value[CORRAL_LH_LOOP_LAG] = s->loop_lag_ms;
    bad[CORRAL_LH_APPLY_BACKLOG] = over(s->apply_backlog, h->cfg.max_apply_backlog);
    value[CORRAL_LH_APPLY_BACKLOG] = s->apply_backlog;
    bool any = false;
    for (size_t i = 0; i < N_SIGNALS; i++)
        any |= bad[order[i]];
    if (any && !h->degraded) { /* H2: a period starts */
        h->degraded = true;
        h->since_ms = now_ms;
        h->no_target_said = false;
        memset(h->bad_seen, 0, sizeof(h->bad_seen));
    }
    for (size_t i = 0; i < N_SIGNALS; i++) {
        enum corral_leader_health_reason r = order[i];
        if (bad[r]) {
            h->bad_seen[r] = true;
            h->last_bad_ms[r] = now_ms;
            h->last_value[r] = value[r];
        }
    }
    return any;
}

/* H6: the first signal of `order` bad within recover_ms; NONE when none
 * is (the period is over, H2). */
static enum corral_leader_health_reason cause(const struct corral_leader_health *h, uint64_t now_ms)
{
    for (size_t i = 0; i < N_SIGNALS; i++) {
        enum corral_leader_health_reason r = order[i];
        if (h->bad_seen[r] && now_ms - h->last_bad_ms[r] <= h->cfg.recover_ms)
            return r;
    }
    return CORRAL_LH_NONE;
}

/* The signal bad most recently in this period (for the recovery line). */
static enum corral_leader_health_reason latest(const struct corral_leader_health *h)
{
    enum corral_leader_health_reason best = CORRAL_LH_NONE;
    for (size_t i = 0; i < N_SIGNALS; i++) {
        enum corral_leader_health_reason r = order[i];
        if (h->bad_seen[r] && (best == CORRAL_LH_NONE || h->last_bad_ms[r] > h->last_bad_ms[best]))
            best = r;
    }
    return best;
}

/* H3 and H4, for a leader degraded at now_ms. */
static void maybe_transfer(struct corral_leader_health *h, uint64_t now_ms,
                           const struct corral_raft_status *st,
                           struct corral_leader_health_decision *out)
{
    const struct corral_leader_health_config *c = &h->cfg;
    if (c->degraded_ms == 0 || out->degraded_for_ms < c->degraded_ms)
        return;
    if (h->transferred && now_ms - h->transfer_ms < c->cooldown_ms)
        return;
    uint64_t target = st != NULL ? corral_leader_health_pick(st, now_ms, c->contact_ms) : 0;
    if (target == 0) {
        out->no_target = !h->no_target_said;
        h->no_target_said = true;
        return;
    }
    out->transfer = true;
    out->target = target;
    h->transferred = true;
    h->transfer_ms = now_ms;
}

void corral_leader_health_step(struct corral_leader_health *h, uint64_t now_ms,
                               const struct corral_leader_health_sample *s,
                               const struct corral_raft_status *st,
                               struct corral_leader_health_decision *out)
{
    memset(out, 0, sizeof(*out));
    if (!s->leading) {
        forget(h);
        return;
    }
    bool was = h->degraded;
    bool any = record(h, now_ms, s);
    out->started = h->degraded && !was;
    enum corral_leader_health_reason r = h->degraded ? cause(h, now_ms) : CORRAL_LH_NONE;
    if (h->degraded && !any && r == CORRAL_LH_NONE) { /* H2: recovered */
        r = latest(h);
        out->recovered = true;
        out->reason = r;
        out->value = h->last_value[r];
        out->limit = limit_of(&h->cfg, r);
        out->degraded_for_ms = now_ms - h->since_ms;
        h->degraded = false;
        return;
    }
    if (!h->degraded)
        return;
    assert(r != CORRAL_LH_NONE); /* a bad sample within recover_ms: H2 */
    out->degraded = true;
    out->reason = r;
    out->value = h->last_value[r];
    out->limit = limit_of(&h->cfg, r);
    out->degraded_for_ms = now_ms - h->since_ms;
    maybe_transfer(h, now_ms, st, out);
}

void corral_leader_health_fsync(struct corral_leader_health *h, uint64_t ms)
{
    h->fsync_seen = true;
    if (ms > h->fsync_max_ms)
        h->fsync_max_ms = ms;
}

void corral_leader_health_tick(struct corral_leader_health *h, uint64_t now_ms,
                               const struct corral_raft_status *st, bool stopping,
                               uint64_t loop_lag_ms, struct corral_leader_health_decision *out)
{
    struct corral_leader_health_sample s = {
        .leading = st->role == CORRAL_RAFT_LEADER && !stopping,
        .loop_lag_ms = loop_lag_ms,
        .fsync_seen = h->fsync_seen,
        .fsync_ms = h->fsync_max_ms,
        .apply_backlog = st->commit - st->applied,
    };
    h->fsync_seen = false;
    h->fsync_max_ms = 0;
    corral_leader_health_step(h, now_ms, &s, st, out);
}

static bool heard(const struct corral_raft_status *st, uint32_t i, uint64_t now_ms,
                  uint64_t contact_ms)
{
    uint64_t at = st->progress[i].last_contact_ms;
    return at >= now_ms || now_ms - at <= contact_ms;
}

uint64_t corral_leader_health_pick(const struct corral_raft_status *st, uint64_t now_ms,
                                   uint64_t contact_ms)
{
    uint64_t best = 0, best_match = 0;
    for (uint32_t i = 0; i < st->n_progress && i < CORRAL_RAFT_NODES_MAX; i++) {
        uint64_t id = st->progress[i].id, match = st->progress[i].match;
        if (id == st->id || st->progress[i].learner || !corral_raft_conf_is_voter(&st->conf, id))
            continue;
        if (!heard(st, i, now_ms, contact_ms))
            continue;
        if (best == 0 || match > best_match || (match == best_match && id < best)) {
            best = id;
            best_match = match;
        }
    }
    return best;
}

enum corral_leader_transfer_refusal
corral_leader_transfer_check(const struct corral_raft_status *st, uint64_t target, uint64_t now_ms,
                             uint64_t contact_ms, uint64_t *chosen)
{
    *chosen = 0;
    if (target == st->id)
        return CORRAL_LT_SELF;
    if (st->transfer_target != 0)
        return CORRAL_LT_RUNNING;
    if (target == 0) {
        *chosen = corral_leader_health_pick(st, now_ms, contact_ms);
        return *chosen != 0 ? CORRAL_LT_OK : CORRAL_LT_NO_TARGET;
    }
    if (!corral_raft_conf_is_voter(&st->conf, target))
        return CORRAL_LT_NOT_VOTER;
    for (uint32_t i = 0; i < st->n_progress && i < CORRAL_RAFT_NODES_MAX; i++) {
        if (st->progress[i].id != target)
            continue;
        if (st->progress[i].learner)
            return CORRAL_LT_NOT_VOTER;
        if (!heard(st, i, now_ms, contact_ms))
            return CORRAL_LT_NO_CONTACT;
        *chosen = target;
        return CORRAL_LT_OK;
    }
    return CORRAL_LT_NOT_VOTER;
}
