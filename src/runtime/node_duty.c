/* The coordinator duty on the node's loop: core/coord.h driven exactly as
 * the simulator drives it (tests/sim/sim_coord.c): leadership after every
 * ready batch, the controller after every tick's batch, heartbeats and
 * reports as the API hands them over. Nothing here waits on a disk: a
 * heartbeat is answered from memory, and the controller's steps and the
 * commands reports lead to are proposed without anyone waiting. */
#include <inttypes.h>
#include <string.h>

#include "corral.h"
#include "runtime/log.h"
#include "runtime/node_impl.h"

void node_duty_batch(struct corral_node *n, const struct corral_raft_ready *rd)
{
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    bool was = corral_coord_leading(n->coord);
    if (corral_coord_leadership(n->coord, rd->role == CORRAL_RAFT_LEADER, rd->term, st.last_index,
                                node_now_ms()) != 0)
        corral_log(CORRAL_LOG_ERROR, "out of memory starting the leader's ownership duty");
    bool now = corral_coord_leading(n->coord);
    if (now && !was) {
        /* A member never heard (id 0: none) has the new-leader wait's end
         * as its lease end (liveness.h L2): the formula stays there. */
        uint64_t t = node_now_ms(),
                 end = corral_liveness_lease_end(corral_coord_liveness(n->coord), 0);
        corral_log(CORRAL_LOG_INFO,
                   "leader's ownership duty starts (term %" PRIu64
                   "): no lease counts as over for the first %" PRIu64 " ms",
                   rd->term, end > t ? end - t : 0);
    }
}

static void count_ops(struct corral_node_duty_stats *d, const struct corral_controller_stats *s)
{
    d->deaths += s->deaths;
    d->clears += s->clears;
    d->grants += s->grants;
    d->releases += s->releases;
    d->copies += s->copies + s->fresh;
    d->drops += s->drops;
}

/* Proposes what the controller returned; the first refusal makes it forget
 * its in-flight steps (they are retried from the state). */
static void propose_output(struct corral_node *n, const struct corral_controller_output *out)
{
    for (uint32_t i = 0; i < out->n_cmds; i++) {
        int rv = corral_node_propose(n, &out->cmds[i], NULL, NULL);
        if (rv != 0) {
            n->duty.steps_failed++;
            corral_coord_propose_failed(n->coord);
            corral_log(CORRAL_LOG_WARN, "proposing the controller's step failed: %s",
                       corral_strerror(rv));
            return;
        }
        n->duty.steps_proposed++;
    }
}

void node_duty_tick(struct corral_node *n)
{
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    uint64_t t0 = uv_hrtime();
    struct corral_controller_output out;
    bool ran = false;
    if (corral_coord_evaluate(n->coord, n->st, &st, node_now_ms(), &out, &ran) != 0) {
        corral_log(CORRAL_LOG_WARN, "the controller ran out of memory; retrying");
        return;
    }
    if (ran) {
        n->duty.evaluations++;
        corral_hist_observe(&n->duty.eval_latency, (double)(uv_hrtime() - t0) / 1e9);
        n->duty.last = out.stats;
    }
    if (out.n_cmds == 0)
        return;
    count_ops(&n->duty, &out.stats);
    if (corral_log_enabled(CORRAL_LOG_DEBUG))
        corral_log(CORRAL_LOG_DEBUG,
                   "controller: %u command(s): %u grants, %u clears, %u releases, %u copies, "
                   "%u drops, %u deaths",
                   out.n_cmds, out.stats.grants, out.stats.clears, out.stats.releases,
                   out.stats.copies + out.stats.fresh, out.stats.drops, out.stats.deaths);
    propose_output(n, &out);
}

void corral_node_heartbeat(struct corral_node *n, uint32_t member, uint64_t member_index,
                           struct corral_coord_answer *ans)
{
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    corral_coord_heartbeat(n->coord, n->st, st.role == CORRAL_RAFT_LEADER && !n->stopping, member,
                           member_index, node_now_ms(), ans);
    if (ans->beat == CORRAL_COORD_BEAT_OK)
        n->duty.heartbeats++;
    else
        n->duty.heartbeats_refused++;
}

void corral_node_report(struct corral_node *n, uint32_t member, const struct corral_progress *p)
{
    struct corral_controller_output out;
    n->duty.reports++;
    if (corral_coord_report(n->coord, n->st, member, p, node_now_ms(), &out) != 0 ||
        out.n_cmds == 0)
        return;
    count_ops(&n->duty, &out.stats);
    propose_output(n, &out);
}

const struct corral_coord *corral_node_coord(const struct corral_node *n)
{
    return n->coord;
}

void corral_node_duty_stats(const struct corral_node *n, struct corral_node_duty_stats *out)
{
    *out = n->duty;
}
