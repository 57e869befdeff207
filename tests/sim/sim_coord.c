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

/* Leadership starts or ends with the batch's soft state (coord.h). */
void sim_coord_soft_state(struct sim *s, struct sim_node *n, const struct corral_raft_ready *rd)
{
    if (n->coord == NULL && corral_coord_new(&s->coord_cfg, &n->coord) != 0)
        abort();
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    if (corral_coord_leadership(n->coord, rd->role == CORRAL_RAFT_LEADER, rd->term, st.last_index,
                                sim_node_ms(s, n)) != 0)
        abort();
}

/* Proposes a cluster state command at n, as the API or the controller
 * would: its index counts toward the leader's lease index (coord.h K2). */
bool sim_propose(struct sim *s, struct sim_node *n, const struct corral_state_cmd *c)
{
    return sim_propose_at(s, n, c, NULL);
}

bool sim_propose_at(struct sim *s, struct sim_node *n, const struct corral_state_cmd *c,
                    uint64_t *index_out)
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
        if (n->coord != NULL)
            (void)corral_coord_proposed(n->coord, n->st, c, index);
        if (index_out != NULL)
            *index_out = index;
    }
    return rv == 0;
}

static void propose_output(struct sim *s, struct sim_node *n,
                           const struct corral_controller_output *out)
{
    for (uint32_t i = 0; i < out->n_cmds; i++) {
        if (!sim_propose(s, n, &out->cmds[i])) {
            corral_coord_propose_failed(n->coord);
            return;
        }
    }
}

void sim_coord_tick(struct sim *s, struct sim_node *n)
{
    if (n->coord == NULL)
        return;
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    struct corral_controller_output out;
    if (corral_coord_evaluate(n->coord, n->st, &st, sim_node_ms(s, n), &out, NULL) != 0 ||
        out.n_cmds == 0)
        return;
    sim_trace(s, "node %u: controller proposes %u command(s): %u grants, %u clears, %u deaths",
              n->id, out.n_cmds, out.stats.grants, out.stats.clears, out.stats.deaths);
    propose_output(s, n, &out);
    sim_node_flush(s, n);
}

static void attach_view(const struct sim_node *n, uint32_t member, struct sim_wmsg *m)
{
    m->has_view = member != CORRAL_STATE_NONE;
    m->view_index = corral_state_applied(n->st);
    m->n_view = m->has_view ? corral_coord_view(n->st, member, m->view, SIM_VIEW_MAX) : 0;
    if (m->n_view > SIM_VIEW_MAX)
        abort(); /* the run's maps are sized to fit */
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
        if (corral_coord_report(n->coord, n->st, member, &pr, sim_node_ms(s, n), &out) == 0)
            propose_output(s, n, &out);
    }
}

/* A worker not in the state, or dead or gone, registers again (a PUT of
 * the API, under the same name) before it gets a lease. */
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
    if (n->coord == NULL)
        return;
    const struct corral_state_member *mb =
        corral_state_member_by_name(n->st, w->name, (uint32_t)strlen(w->name));
    struct corral_coord_answer ans;
    corral_coord_heartbeat(n->coord, n->st, st.role == CORRAL_RAFT_LEADER,
                           mb != NULL ? mb->id : CORRAL_STATE_NONE, m->agent_index,
                           sim_node_ms(s, n), &ans);
    if (ans.beat == CORRAL_COORD_BEAT_NOT_LEADER)
        return;
    if (ans.beat == CORRAL_COORD_BEAT_UNKNOWN || ans.beat == CORRAL_COORD_BEAT_INACTIVE) {
        bool gone = mb != NULL && mb->status == CORRAL_MEMBER_LEFT && w->decommissioned;
        if (st.quorum_in_contact && !gone)
            register_worker(s, n, w);
        return;
    }
    m->lease_ms = ans.lease_ms;
    m->ok = ans.beat == CORRAL_COORD_BEAT_OK;
    m->lease_index = ans.lease_index;
    take_reports(s, n, mb->id, m);
    if (ans.view == CORRAL_COORD_VIEW_FULL) {
        attach_view(n, mb->id, m);
    } else if (ans.view == CORRAL_COORD_VIEW_UNCHANGED) {
        m->view_unchanged = true;
        m->view_index = ans.view_index;
    }
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

/* Whether a watch from member (NONE: not registered) holding index waits. */
static bool watch_waits(const struct sim_node *n, const struct sim_wmsg *m)
{
    const struct sim_worker *w = &n->sim->workers[m->worker];
    const struct corral_state_member *mb =
        corral_state_member_by_name(n->st, w->name, (uint32_t)strlen(w->name));
    return mb != NULL && m->agent_index != 0 && mb->view_index <= m->agent_index;
}

/* Parked watches are answered when the assignment changed, or when their
 * wait ran out. */
void sim_coord_watches(struct sim *s, struct sim_node *n)
{
    for (uint32_t i = 0; i < n->n_watches;) {
        struct sim_watch *pw = &n->watches[i];
        if (!watch_waits(n, pw->msg) || s->now_us >= pw->until_us) {
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
    if (n->n_watches == SIM_WATCHES_MAX || !watch_waits(n, m)) {
        answer_watch(s, n, m);
        return;
    }
    n->watches[n->n_watches++] =
        (struct sim_watch){.msg = m, .until_us = s->now_us + SIM_WATCH_WAIT_US};
    sim_at(s, s->now_us + SIM_WATCH_WAIT_US,
           (struct sim_event){.type = EV_WATCH_WAIT, .node = n->id});
}

/* A crash forgets the parked watches: their workers ask again. */
void sim_coord_crash(struct sim_node *n)
{
    for (uint32_t i = 0; i < n->n_watches; i++)
        free(n->watches[i].msg);
    n->n_watches = 0;
    corral_coord_free(n->coord);
    n->coord = NULL;
}
