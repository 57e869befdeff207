/* The coordinator side of partition ownership in the simulator: what the
 * daemon's HTTP routes and leader loop will do, over the real state
 * machine (src/core/state.c), liveness rules (liveness.c) and controller
 * (controller.c). A leader answers heartbeats with leases and turns
 * progress reports into commands; while it is in contact with a quorum
 * (I6) its controller proposes the next safe steps. Any node answers a
 * watch from its own applied state, so a lagging one gives a stale view;
 * a watch waits (a blocking query) until the assignment changes. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "sim_impl.h"

void sim_coord_stop(struct sim_node *n)
{
    if (!n->leading)
        return;
    n->leading = false;
    corral_controller_free(n->ctl);
    n->ctl = NULL;
    corral_liveness_close(&n->lv);
}

/* Leadership starts or ends with the batch's soft state. A new term of
 * office starts a new liveness view and controller: what another leader
 * answered or proposed is not this one's (liveness.h L2). */
void sim_coord_soft_state(struct sim *s, struct sim_node *n, const struct corral_raft_ready *rd)
{
    bool lead = rd->role == CORRAL_RAFT_LEADER;
    if (n->leading && (!lead || rd->term != n->lead_term))
        sim_coord_stop(n);
    if (!lead || n->leading)
        return;
    if (corral_liveness_init(&n->lv, &s->liveness_cfg, sim_node_ms(s, n)) != 0 ||
        corral_controller_new(&s->controller_cfg, &n->ctl) != 0)
        abort();
    n->leading = true;
    n->lead_term = rd->term;
    /* Entries of earlier terms still in its log may commit under it (a
     * clear of a primary among them): a lease it grants covers them too
     * (agent.h A12). */
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    n->last_state_prop = st.last_index;
    n->last_eval_ms = 0;
}

/* Proposes a cluster state command at n, as the API or the controller
 * would: its index counts toward the leader's lease index (agent.h A12). */
bool sim_propose(struct sim *s, struct sim_node *n, const struct corral_state_cmd *c)
{
    struct corral_rbuf *data = corral_state_cmd_encode(c);
    if (data == NULL) {
        sim_fail(s, "node %u: the state refused to encode a command of type %u", n->id, c->type);
        return false;
    }
    uint64_t index = 0;
    int rv = corral_raft_propose(n->raft, data, &index);
    corral_rbuf_unref(data);
    if (rv == 0) {
        s->res->state_proposals++;
        if (index > n->last_state_prop)
            n->last_state_prop = index;
    }
    return rv == 0;
}

static void propose_output(struct sim *s, struct sim_node *n,
                           const struct corral_controller_output *out)
{
    for (uint32_t i = 0; i < out->n_cmds; i++) {
        if (!sim_propose(s, n, &out->cmds[i])) {
            corral_controller_forget(n->ctl);
            return;
        }
    }
}

/* I6: only a leader in contact with a quorum changes anything. */
static bool may_change(struct sim_node *n)
{
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    return n->leading && st.role == CORRAL_RAFT_LEADER && st.quorum_in_contact;
}

void sim_coord_tick(struct sim *s, struct sim_node *n)
{
    uint64_t now = sim_node_ms(s, n);
    if (!may_change(n) || now < n->last_eval_ms + SIM_EVAL_MS)
        return;
    /* A leader whose proposals do not commit proposes no more of them:
     * the controller's steps wait for the last ones to land. */
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    if (st.last_index > st.commit + SIM_UNCOMMITTED_MAX)
        return;
    n->last_eval_ms = now;
    struct corral_controller_output out;
    if (corral_controller_evaluate(n->ctl, n->st, &n->lv, now, &out) != 0)
        return;
    if (out.n_cmds > 0)
        sim_trace(s, "node %u: controller proposes %u command(s): %u grants, %u clears, %u deaths",
                  n->id, out.n_cmds, out.stats.grants, out.stats.clears, out.stats.deaths);
    propose_output(s, n, &out);
    sim_node_flush(s, n);
}

/* The entries of a member's desired assignment, as the watch API gives
 * them, from n's applied state. */
static uint32_t build_view(const struct sim_node *n, uint32_t member,
                           struct corral_agent_entry *out, uint32_t cap)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < corral_state_resource_count(n->st); i++) {
        const struct corral_state_resource *r = corral_state_resource_at(n->st, i);
        for (uint32_t p = 0; p < r->partitions; p++) {
            const struct corral_state_partition *pt = &r->parts[p];
            for (uint32_t j = 0; j < pt->n_replicas && k < cap; j++) {
                if (pt->replicas[j].member != member)
                    continue;
                bool primary = pt->primary == member;
                uint32_t from = pt->primary;
                for (uint32_t q = 0; from == CORRAL_STATE_NONE && q < pt->n_replicas; q++)
                    if (pt->replicas[q].state == CORRAL_REPLICA_IN_SYNC &&
                        pt->replicas[q].member != member)
                        from = pt->replicas[q].member;
                out[k++] = (struct corral_agent_entry){
                    .resource = r->id,
                    .partition = p,
                    .role = primary ? CORRAL_AGENT_PRIMARY : CORRAL_AGENT_REPLICA,
                    .state =
                        primary && pt->releasing ? CORRAL_AGENT_RELEASING : pt->replicas[j].state,
                    .epoch = pt->epoch,
                    .copy_from = primary ? CORRAL_AGENT_NONE : from};
            }
        }
    }
    return k;
}

static void attach_view(const struct sim_node *n, uint32_t member, struct sim_wmsg *m)
{
    m->has_view = member != CORRAL_STATE_NONE;
    m->view_index = corral_state_applied(n->st);
    m->n_view = m->has_view ? build_view(n, member, m->view, SIM_VIEW_MAX) : 0;
}

static void take_reports(struct sim *s, struct sim_node *n, uint32_t member,
                         const struct sim_wmsg *m)
{
    for (uint32_t i = 0; i < m->n_reports; i++) {
        const struct corral_agent_report *r = &m->reports[i];
        const struct corral_state_resource *res = corral_state_resource_by_id(n->st, r->resource);
        if (res == NULL || r->state == CORRAL_AGENT_REPORT_FAILED)
            continue;
        struct corral_progress pr = {.resource = res->name,
                                     .resource_len = (uint32_t)strlen(res->name),
                                     .partition = r->partition,
                                     .epoch = r->epoch,
                                     .state = r->state == CORRAL_AGENT_REPORT_IN_SYNC
                                                  ? CORRAL_PROGRESS_IN_SYNC
                                                  : CORRAL_PROGRESS_RELEASED};
        struct corral_controller_output out;
        if (corral_controller_report(n->ctl, n->st, &n->lv, sim_node_ms(s, n), member, &pr, &out) ==
            0)
            propose_output(s, n, &out);
    }
}

/* A worker not in the state, or dead or gone, registers (or rejoins
 * under the same name) first; it gets no lease until it is active. */
static void register_worker(struct sim *s, struct sim_node *n, const struct sim_worker *w)
{
    uint64_t now = sim_node_ms(s, n);
    if (now < n->reg_sent_ms[w->idx] + 100)
        return;
    n->reg_sent_ms[w->idx] = now;
    char addr[32];
    snprintf(addr, sizeof(addr), "10.0.0.%u:9000", w->idx + 1);
    struct corral_state_cmd c = {.type = CORRAL_STATE_MEMBER_PUT,
                                 .name = w->name,
                                 .name_len = (uint16_t)strlen(w->name),
                                 .role = CORRAL_MEMBER_WORKER,
                                 .addr = addr,
                                 .addr_len = (uint16_t)strlen(addr),
                                 .zone = w->zone,
                                 .zone_len = (uint16_t)strlen(w->zone),
                                 .weight = 1};
    if (sim_propose(s, n, &c))
        sim_trace(s, "node %u: registers worker %s", n->id, w->name);
}

static void heartbeat(struct sim *s, struct sim_node *n, struct sim_wmsg *m)
{
    const struct sim_worker *w = &s->workers[m->worker];
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    m->type = SIM_WMSG_HEARTBEAT_ANSWER;
    m->leader_hint = (uint32_t)st.leader;
    m->ok = false;
    if (!n->leading || st.role != CORRAL_RAFT_LEADER)
        return;
    const struct corral_state_member *mb =
        corral_state_member_by_name(n->st, w->name, (uint32_t)strlen(w->name));
    if (mb == NULL || mb->status == CORRAL_MEMBER_DEAD || mb->status == CORRAL_MEMBER_LEFT) {
        if (!may_change(n) || (mb != NULL && mb->status == CORRAL_MEMBER_LEFT && w->decommissioned))
            return;
        /* Heard, though granted nothing: the rejoin it asks for must not
         * be undone by a death decided before its first leased heartbeat
         * (a later lease end is only more cautious, liveness.h L1). */
        if (mb != NULL)
            corral_liveness_heartbeat(&n->lv, mb->id, sim_node_ms(s, n));
        register_worker(s, n, w);
        return;
    }
    /* L4: the answer is recorded before it leaves. */
    m->lease_ms = corral_liveness_heartbeat(&n->lv, mb->id, sim_node_ms(s, n));
    m->ok = m->lease_ms > 0;
    /* The view the lease covers must be at least this new (agent.h A12):
     * every change this leader applied or proposed is in it. */
    uint64_t ai = corral_state_assign_index(n->st);
    m->lease_index = n->last_state_prop > ai ? n->last_state_prop : ai;
    take_reports(s, n, mb->id, m);
    attach_view(n, mb->id, m);
    sim_node_flush(s, n);
}

static void answer_watch(struct sim *s, struct sim_node *n, struct sim_wmsg *m)
{
    const struct sim_worker *w = &s->workers[m->worker];
    const struct corral_state_member *mb =
        corral_state_member_by_name(n->st, w->name, (uint32_t)strlen(w->name));
    m->type = SIM_WMSG_WATCH_ANSWER;
    attach_view(n, mb != NULL ? mb->id : CORRAL_STATE_NONE, m);
    sim_worker_send(s, n->id, m);
}

/* Parked watches are answered when the assignment changed, or when their
 * wait ran out. */
void sim_coord_watches(struct sim *s, struct sim_node *n)
{
    uint64_t ai = corral_state_assign_index(n->st);
    for (uint32_t i = 0; i < n->n_watches;) {
        struct sim_watch *pw = &n->watches[i];
        if (ai > pw->index || s->now_us >= pw->until_us) {
            struct sim_wmsg *m = pw->msg;
            *pw = n->watches[--n->n_watches];
            answer_watch(s, n, m);
        } else {
            i++;
        }
    }
}

void sim_coord_receive(struct sim *s, struct sim_node *n, struct sim_wmsg *m)
{
    if (!n->up) {
        free(m);
        return;
    }
    if (m->type == SIM_WMSG_HEARTBEAT) {
        heartbeat(s, n, m);
        sim_worker_send(s, n->id, m);
        return;
    }
    if (n->n_watches == SIM_WATCHES_MAX) {
        answer_watch(s, n, m);
        return;
    }
    n->watches[n->n_watches++] = (struct sim_watch){.msg = m,
                                                    .index = corral_state_assign_index(n->st),
                                                    .until_us = s->now_us + SIM_WATCH_WAIT_US};
    sim_at(s, s->now_us + SIM_WATCH_WAIT_US,
           (struct sim_event){.type = EV_WATCH_WAIT, .node = n->id});
}

/* A crash forgets the parked watches: their workers ask again. */
void sim_coord_crash(struct sim_node *n)
{
    for (uint32_t i = 0; i < n->n_watches; i++)
        free(n->watches[i].msg);
    n->n_watches = 0;
    sim_coord_stop(n);
}
