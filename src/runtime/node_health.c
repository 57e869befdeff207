/* The leader's health on the node's loop: the tick timer's lateness and
 * the WAL's fsync times measured here, fed to core/leader_health.h on
 * every tick, and the transfer it decides (or an operator asks for)
 * started with corral_raft_transfer (thesis section 3.10). */
#include <inttypes.h>
#include <stdio.h>

#include "corral.h"
#include "runtime/log.h"
#include "runtime/node_impl.h"

void node_health_init(struct corral_node *n)
{
    struct corral_leader_health_config c = n->cfg.leader_health;
    c.contact_ms = n->cfg.election_timeout_ms;
    c.recover_ms = CORRAL_LEADER_HEALTH_RECOVER_MS;
    c.cooldown_ms = CORRAL_LEADER_HEALTH_COOLDOWN_MS;
    corral_leader_health_init(&n->health, &c);
}

void node_health_fsync(struct corral_node *n, uint64_t ms)
{
    corral_leader_health_fsync(&n->health, ms);
}

/* "a WAL fsync took 312 ms, over the 100 ms limit" and the like. */
static void describe(const struct corral_leader_health_decision *d, char *buf, size_t len)
{
    switch (d->reason) {
    case CORRAL_LH_FSYNC:
        snprintf(buf, len, "a WAL fsync took %" PRIu64 " ms, over the %" PRIu64 " ms limit",
                 d->value, d->limit);
        break;
    case CORRAL_LH_LOOP_LAG:
        snprintf(buf, len, "the loop ran a tick %" PRIu64 " ms late, over the %" PRIu64 " ms limit",
                 d->value, d->limit);
        break;
    case CORRAL_LH_APPLY_BACKLOG:
        snprintf(buf, len,
                 "%" PRIu64 " committed entries waited to be applied, over the limit of %" PRIu64,
                 d->value, d->limit);
        break;
    default:
        snprintf(buf, len, "no signal");
        break;
    }
}

/* Starts an automatic transfer to d->target, logging it. */
static void auto_transfer(struct corral_node *n, const struct corral_leader_health_decision *d,
                          const struct corral_raft_status *st, const char *why)
{
    uint64_t match = 0;
    for (uint32_t i = 0; i < st->n_progress; i++)
        if (st->progress[i].id == d->target)
            match = st->progress[i].match;
    int rv = corral_raft_transfer(n->raft, d->target);
    if (rv != 0) {
        corral_log(CORRAL_LOG_WARN,
                   "leader health: degraded for %" PRIu64 " ms: %s; handing leadership to node "
                   "%" PRIu64 " did not start: %s",
                   d->degraded_for_ms, why, d->target, corral_strerror(rv));
        return;
    }
    n->transfers[d->reason]++;
    corral_log(CORRAL_LOG_WARN,
               "leader health: degraded for %" PRIu64 " ms: %s; handing leadership to node "
               "%" PRIu64 " (match %" PRIu64 " of %" PRIu64 ", reason %s)",
               d->degraded_for_ms, why, d->target, match, st->last_index,
               corral_leader_health_reason_name(d->reason));
}

static void report(struct corral_node *n, const struct corral_leader_health_decision *d,
                   const struct corral_raft_status *st)
{
    char why[160];
    describe(d, why, sizeof(why));
    const struct corral_leader_health_config *c = &n->health.cfg;
    if (d->started && c->degraded_ms > 0)
        corral_log(CORRAL_LOG_WARN,
                   "leader health: degraded: %s; leadership moves to another voter if this lasts "
                   "%" PRIu64 " ms",
                   why, c->degraded_ms);
    else if (d->started)
        corral_log(CORRAL_LOG_WARN,
                   "leader health: degraded: %s; automatic transfer is off "
                   "(--leader-degraded-ms 0)",
                   why);
    if (d->recovered)
        corral_log(CORRAL_LOG_INFO, "leader health: recovered after %" PRIu64 " ms (last: %s)",
                   d->degraded_for_ms, why);
    if (d->no_target)
        corral_log(CORRAL_LOG_WARN,
                   "leader health: degraded for %" PRIu64 " ms: %s; but no other voter was heard "
                   "from within %" PRIu64 " ms: staying leader",
                   d->degraded_for_ms, why, c->contact_ms);
    if (d->transfer)
        auto_transfer(n, d, st, why);
}

void node_health_tick(struct corral_node *n, uint64_t now_ms)
{
    uint64_t lag = 0;
    if (n->last_tick_ms != 0 && now_ms > n->last_tick_ms + TICK_MS)
        lag = now_ms - n->last_tick_ms - TICK_MS;
    n->last_tick_ms = now_ms;
    corral_hist_observe(&n->loop_lag_hist, (double)lag / 1e3);
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    struct corral_leader_health_decision d;
    corral_leader_health_tick(&n->health, now_ms, &st, n->stopping, lag, &d);
    report(n, &d, &st);
}

int corral_node_transfer(struct corral_node *n, uint64_t target, uint64_t *to,
                         enum corral_leader_transfer_refusal *refusal)
{
    *to = 0;
    *refusal = CORRAL_LT_OK;
    if (n->stopping)
        return CORRAL_ESHUTDOWN;
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    if (st.role != CORRAL_RAFT_LEADER)
        return CORRAL_ENOTLEADER;
    *refusal =
        corral_leader_transfer_check(&st, target, node_now_ms(), n->health.cfg.contact_ms, to);
    if (*refusal != CORRAL_LT_OK)
        return 0;
    int rv = corral_raft_transfer(n->raft, *to);
    if (rv == CORRAL_EBUSY) {
        *refusal = CORRAL_LT_RUNNING;
        return 0;
    }
    if (rv != 0)
        return rv;
    n->transfers[CORRAL_LH_OPERATOR]++;
    corral_log(CORRAL_LOG_INFO,
               "leadership transfer to node %" PRIu64 " asked for by an operator (term %" PRIu64
               ")",
               *to, st.term);
    return 0;
}
