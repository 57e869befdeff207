/* The coordinators' roster in the simulator, as the node runs it
 * (src/runtime/node_roster.c) over the same pure step (src/core/roster.c):
 * the leader's step every ROSTER_TICK_MS of its own clock, carried out
 * with corral_roster_carry_out, one roster write of its own in flight at a
 * time; the operator's joins and removals, as the API makes them
 * (src/api/coordinators.c: the id a joiner gets, the refusals of a
 * removal); the decommissioning of a coordinator once it is out of both
 * the roster and the configuration; and the end-of-run check that the
 * configuration followed the roster. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/roster.h"
#include "corral.h"
#include "sim_impl.h"

/* As src/runtime/node_impl.h ROSTER_TICK_MS, and the node's default
 * --request-timeout-ms (how long its roster write may stay in flight). */
#define SIM_ROSTER_TICK_MS 100
#define SIM_REQUEST_TIMEOUT_MS 5000

void sim_roster_names(uint32_t id, char name[16], char cluster[32], char http[32])
{
    snprintf(name, 16, "n%u", id);
    snprintf(cluster, 32, "sim:%u", id);
    snprintf(http, 32, "simhttp:%u", id);
}

/* ---- the leader's roster duty, as node_roster_tick ---- */

/* A roster write proposed at n, as corral_node_propose with a callback:
 * the node tracks it until it is applied, lost or timed out. */
static void roster_put(struct sim *s, struct sim_node *n, uint32_t id, const char *name,
                       const char *cluster, const char *http)
{
    struct corral_state_cmd c = corral_state_coord_put(id, name, cluster, http);
    uint64_t index = 0;
    if (!sim_propose_at(s, n, &c, &index))
        return;
    n->roster_index = index;
    n->roster_deadline_ms = sim_node_ms(s, n) + SIM_REQUEST_TIMEOUT_MS;
    sim_trace(s, "node %u: roster put %s (id %u) http '%s' at %" PRIu64, n->id, name, id, http,
              index);
}

/* The HTTP address n knows for coordinator id: its own, or a peer's once
 * a connection's handshake announced it (here: once n heard from it). */
static bool known_http(const struct sim_node *n, uint32_t id, char http[32])
{
    char name[16], cluster[32];
    sim_roster_names(id, name, cluster, http);
    return id == n->id || (id <= SIM_NODES_MAX && (n->heard >> id & 1u));
}

/* As refresh_http: the roster keeps each coordinator's HTTP address. */
static void refresh_http(struct sim *s, struct sim_node *n)
{
    for (uint32_t i = 0; i < corral_state_coord_count(n->st); i++) {
        const struct corral_state_coord *k = corral_state_coord_at(n->st, i);
        char http[32];
        if (known_http(n, k->id, http) && strcmp(http, k->http_addr) != 0) {
            roster_put(s, n, k->id, k->name, k->cluster_addr, http);
            return;
        }
    }
}

/* As adopt (RO5): a node from before the roster, under the names the
 * simulator gives. None predates the roster here, so it never runs
 * unless the step is wrong; the trace says so if it does. */
static void adopt(struct sim *s, struct sim_node *n, uint64_t id)
{
    char name[16], cluster[32], http[32];
    if (id == 0 || id > SIM_NODES_MAX)
        return;
    sim_roster_names((uint32_t)id, name, cluster, http);
    if (!known_http(n, (uint32_t)id, http))
        http[0] = '\0';
    sim_trace(s, "node %u: roster adopts node %" PRIu64, n->id, id);
    roster_put(s, n, (uint32_t)id, name, cluster, http);
}

static bool converged(const struct sim *s, const struct sim_node *n,
                      const struct corral_raft_status *rs, char *why, size_t cap);

void sim_roster_tick(struct sim *s, struct sim_node *n)
{
    uint64_t now = sim_node_ms(s, n);
    struct corral_raft_status rs;
    corral_raft_status(n->raft, &rs);
    if (rs.role != CORRAL_RAFT_LEADER)
        return;
    /* The end-of-run check's clock: the last instant after the heal a
     * leader saw the roster and the configuration differ. */
    if (s->healed && !converged(s, n, &rs, NULL, 0))
        s->roster_diverged_us = s->now_us;
    if (n->roster_index != 0 && now >= n->roster_deadline_ms) {
        sim_trace(s, "node %u: roster write at %" PRIu64 " timed out", n->id, n->roster_index);
        n->roster_index = 0; /* corral_pending_expire: ETIMEDOUT */
    }
    if (n->roster_index != 0 || now - n->roster_tick_ms < SIM_ROSTER_TICK_MS)
        return;
    n->roster_tick_ms = now;
    struct corral_roster_step st;
    corral_roster_next(n->st, &rs, s->p.n_voters, now, CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT,
                       &st);
    int rv;
    switch (st.op) {
    case CORRAL_ROSTER_NONE:
        refresh_http(s, n);
        break;
    case CORRAL_ROSTER_ADOPT:
        adopt(s, n, st.node);
        break;
    case CORRAL_ROSTER_TRANSFER:
    case CORRAL_ROSTER_ADD_LEARNER:
    case CORRAL_ROSTER_PROMOTE:
    case CORRAL_ROSTER_REMOVE:
        rv = corral_roster_carry_out(n->raft, &st);
        sim_trace(s, "node %u: roster %s node %" PRIu64 " -> %d", n->id,
                  corral_roster_op_name(st.op), st.node, rv);
        if (rv == 0 && st.op != CORRAL_ROSTER_TRANSFER)
            s->res->conf_changes++;
        if (rv == 0 && st.op == CORRAL_ROSTER_TRANSFER)
            s->res->roster_transfers++;
        break;
    }
    sim_node_flush(s, n);
}

/* ---- what applying does: the write in flight, decommissioning ---- */

static void decommission(struct sim *s, struct sim_node *n, uint64_t id, const char *why)
{
    if (id == 0 || id > SIM_NODES_MAX || s->nodes[id].removed)
        return;
    /* The operator stops a coordinator once it is out of the roster and
     * of the configuration (applied here: committed). */
    s->nodes[id].removed = true;
    sim_trace(s, "node %" PRIu64 " decommissioned (%s, applied at node %u)", id, why, n->id);
    if (id != n->id)
        sim_node_crash(s, &s->nodes[id]);
}

static bool in_conf(const struct corral_raft_conf *c, uint64_t id)
{
    return corral_raft_conf_is_voter(c, id) || corral_raft_conf_is_learner(c, id);
}

void sim_roster_applied(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e)
{
    /* corral_pending_applied: the write completes (ours, or ELOST if
     * another entry took its index). */
    if (n->roster_index != 0 && e->index >= n->roster_index)
        n->roster_index = 0;
    if (e->type == CORRAL_RAFT_ENTRY_CONF) {
        uint8_t op;
        uint64_t node;
        if (e->data != NULL && e->data->len > 0 && e->data->data[0] == CORRAL_RAFT_CONF_SET)
            return; /* the bootstrap configuration */
        if (corral_raft_conf_change_decode(e->data, &op, &node) != 0) {
            sim_fail(s, "undecodable conf entry at %" PRIu64, e->index);
            return;
        }
        if (op != CORRAL_RAFT_REMOVE)
            return;
        /* RO2: only a coordinator taken out of the roster leaves the
         * configuration, and ids are never given out again. */
        if (node <= UINT32_MAX && corral_state_coord_by_id(n->st, (uint32_t)node) != NULL) {
            sim_fail(s,
                     "roster: node %u applies the removal of node %" PRIu64 " at %" PRIu64
                     " while the roster holds it",
                     n->id, node, e->index);
            return;
        }
        decommission(s, n, node, "removed from the configuration");
        return;
    }
    struct corral_state_cmd c;
    if (e->type != CORRAL_RAFT_ENTRY_NORMAL || e->data == NULL ||
        corral_state_cmd_decode(e->data, &c) != 0 || c.type != CORRAL_STATE_COORD_DELETE)
        return;
    /* Deleted from the roster before it joined the configuration: nothing
     * will remove it from there, so it stops now. (Not when the latest
     * configuration lacks it because a removal follows in the log: that
     * one decommissions it once committed.) */
    struct corral_raft_status rs;
    corral_raft_status(n->raft, &rs);
    if (in_conf(&rs.conf, c.id) || corral_state_coord_by_id(n->st, c.id) != NULL)
        return;
    for (uint64_t i = e->index + 1; i <= rs.last_index; i++) {
        const struct corral_raft_entry *f = corral_raft_entry_at(n->raft, i);
        uint8_t op;
        uint64_t node;
        if (f != NULL && f->type == CORRAL_RAFT_ENTRY_CONF && f->data != NULL && f->data->len > 0 &&
            f->data->data[0] != CORRAL_RAFT_CONF_SET &&
            corral_raft_conf_change_decode(f->data, &op, &node) == 0 && node == c.id)
            return;
    }
    decommission(s, n, c.id, "deleted from the roster, not in the configuration");
}

void sim_roster_restored(struct sim_node *n, uint64_t index)
{
    /* corral_pending_fail_writes_upto: the snapshot covers it. */
    if (n->roster_index != 0 && index >= n->roster_index)
        n->roster_index = 0;
}

/* ---- the operator, through the leader, as the API ---- */

/* POST /v1/coordinators for a fresh spare: it starts empty (it learns its
 * configuration from the leader), and the leader puts it in the roster
 * under the id the API gives. */
static void join(struct sim *s, struct sim_node *l, const struct corral_raft_status *rs)
{
    uint32_t id = corral_roster_join_id(l->st, &rs->conf);
    if (id > SIM_NODES_MAX || s->nodes[id].removed)
        return;
    struct sim_node *n = &s->nodes[id];
    if (!n->started)
        sim_node_start_fresh(s, n);
    char name[16], cluster[32], http[32];
    sim_roster_names(id, name, cluster, http);
    struct corral_state_cmd c = corral_state_coord_put(id, name, cluster, http);
    bool ok = sim_propose_at(s, l, &c, NULL);
    sim_trace(s, "operator: join %s (id %u) via leader %u -> %s", name, id, l->id,
              ok ? "proposed" : "refused");
    s->res->roster_joins += ok;
}

/* DELETE /v1/coordinators/{name} for a random coordinator of the
 * leader's roster (the leader itself as likely as any). */
static void leave(struct sim *s, struct sim_node *l, const struct corral_raft_status *rs)
{
    uint32_t count = corral_state_coord_count(l->st);
    if (count == 0)
        return;
    const struct corral_state_coord *k =
        corral_state_coord_at(l->st, (uint32_t)(sim_rand(s) % count));
    uint32_t left = 0, alive = 0;
    enum corral_roster_refusal why =
        corral_roster_may_remove(l->st, rs, k->id, sim_node_ms(s, l),
                                 CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT, &left, &alive);
    if (why != CORRAL_ROSTER_REMOVE_OK) {
        sim_trace(s, "operator: remove %s via leader %u refused (%u; %u of %u left in contact)",
                  k->name, l->id, why, alive, left);
        s->res->roster_refused++;
        return;
    }
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    snprintf(name, sizeof(name), "%s", k->name);
    struct corral_state_cmd c = {.type = CORRAL_STATE_COORD_DELETE, .id = k->id};
    bool ok = sim_propose_at(s, l, &c, NULL);
    sim_trace(s, "operator: remove %s via leader %u -> %s", name, l->id,
              ok ? "proposed" : "refused");
    s->res->roster_removes += ok;
}

/* One operator step: the roster grows back toward the voters target and
 * up to two spares beyond it (they stay learners), and shrinks by a
 * removal otherwise. */
void sim_roster_operator(struct sim *s)
{
    uint32_t leader = sim_leader(s);
    if (leader == 0)
        return;
    struct sim_node *l = &s->nodes[leader];
    struct corral_raft_status rs;
    corral_raft_status(l->raft, &rs);
    uint32_t size = corral_state_coord_count(l->st);
    bool can_join = corral_roster_join_id(l->st, &rs.conf) <= SIM_NODES_MAX;
    if (can_join && (size < s->p.n_voters || (size < s->p.n_voters + 2 && sim_chance(s, 500))))
        join(s, l, &rs);
    else
        leave(s, l, &rs);
    sim_node_flush(s, l);
}

/* ---- the end-of-run check ---- */

/* Whether the configuration follows the roster at leader n: the same
 * ids, and as many voters as the target allows (every node of the roster
 * runs after the heal, so each can catch up and be promoted). */
static bool converged(const struct sim *s, const struct sim_node *n,
                      const struct corral_raft_status *rs, char *why, size_t cap)
{
    uint32_t count = corral_state_coord_count(n->st);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t id = corral_state_coord_at(n->st, i)->id;
        if (!in_conf(&rs->conf, id)) {
            if (why != NULL)
                snprintf(why, cap, "coordinator %u of the roster is not in the configuration", id);
            return false;
        }
    }
    for (uint32_t i = 0; i < rs->conf.n_voters + rs->conf.n_learners; i++) {
        uint64_t id =
            i < rs->conf.n_voters ? rs->conf.voters[i] : rs->conf.learners[i - rs->conf.n_voters];
        if (id > UINT32_MAX || corral_state_coord_by_id(n->st, (uint32_t)id) == NULL) {
            if (why != NULL)
                snprintf(why, cap, "node %" PRIu64 " of the configuration is not in the roster",
                         id);
            return false;
        }
    }
    uint32_t want = count < s->p.n_voters ? count : s->p.n_voters;
    if (rs->conf.n_voters != want) {
        if (why != NULL)
            snprintf(why, cap, "%u voters for a target of %u and a roster of %u", rs->conf.n_voters,
                     s->p.n_voters, count);
        return false;
    }
    return true;
}

void sim_roster_check_end(struct sim *s)
{
    uint32_t leader = sim_leader(s);
    if (leader == 0)
        return; /* the liveness check says so */
    struct sim_node *l = &s->nodes[leader];
    struct corral_raft_status rs;
    corral_raft_status(l->raft, &rs);
    char why[160];
    if (!converged(s, l, &rs, why, sizeof(why))) {
        sim_fail(s, "liveness: roster and configuration differ at the end (leader %u): %s", leader,
                 why);
        return;
    }
    uint64_t settle = s->roster_diverged_us > s->heal_us ? s->roster_diverged_us - s->heal_us : 0;
    s->res->roster_settle_us = settle;
    if (settle > SIM_ROSTER_SETTLE_MS * 1000ull)
        sim_fail(s,
                 "liveness: roster and configuration still differed %.3f ms after the heal "
                 "(bound %u ms)",
                 (double)settle / 1000.0, SIM_ROSTER_SETTLE_MS);
}
