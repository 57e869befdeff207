/* The leader's next roster step (rules RO1-RO5 in roster.h). */
#include "core/roster.h"

#include <string.h>

#include "core/leader_health.h"
#include "corral.h"

static bool in_conf(const struct corral_raft_conf *c, uint64_t id)
{
    return corral_raft_conf_is_voter(c, id) || corral_raft_conf_is_learner(c, id);
}

static bool in_roster(const struct corral_state *st, uint64_t id)
{
    return id <= UINT32_MAX && corral_state_coord_by_id(st, (uint32_t)id) != NULL;
}

/* Every node of the configuration, voters then learners. */
static uint32_t conf_nodes(const struct corral_raft_conf *c, uint64_t *out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_voters; i++)
        out[n++] = c->voters[i];
    for (uint32_t i = 0; i < c->n_learners; i++)
        out[n++] = c->learners[i];
    return n;
}

/* The lowest id of ids[0..n) for which keep() holds, or 0. */
static uint64_t lowest(const uint64_t *ids, uint32_t n, const struct corral_state *st,
                       bool (*keep)(const struct corral_state *, uint64_t))
{
    uint64_t best = 0;
    for (uint32_t i = 0; i < n; i++)
        if (keep(st, ids[i]) && (best == 0 || ids[i] < best))
            best = ids[i];
    return best;
}

static bool predates(const struct corral_state *st, uint64_t id)
{
    return !in_roster(st, id) && id >= corral_state_next_coord_id(st);
}

static bool taken_out(const struct corral_state *st, uint64_t id)
{
    return !in_roster(st, id) && id < corral_state_next_coord_id(st);
}

static uint64_t promotable(const struct corral_raft_status *rs, uint64_t now_ms,
                           uint64_t contact_ms)
{
    uint64_t best = 0, best_match = 0;
    for (uint32_t i = 0; i < rs->n_progress; i++) {
        uint64_t id = rs->progress[i].id, match = rs->progress[i].match;
        if (!corral_raft_conf_is_learner(&rs->conf, id) ||
            !corral_raft_caught_up(match, rs->commit))
            continue;
        if (now_ms - rs->progress[i].last_contact_ms > contact_ms)
            continue;
        if (best == 0 || match > best_match || (match == best_match && id < best)) {
            best = id;
            best_match = match;
        }
    }
    return best;
}

void corral_roster_next(const struct corral_state *st, const struct corral_raft_status *rs,
                        uint32_t voters_target, uint64_t now_ms, uint64_t contact_ms,
                        struct corral_roster_step *out)
{
    *out = (struct corral_roster_step){CORRAL_ROSTER_NONE, 0};
    if (rs->role != CORRAL_RAFT_LEADER)
        return;
    uint64_t ids[2 * CORRAL_RAFT_NODES_MAX];
    uint32_t n = conf_nodes(&rs->conf, ids);
    uint64_t id = lowest(ids, n, st, predates); /* RO5 */
    if (id != 0) {
        *out = (struct corral_roster_step){CORRAL_ROSTER_ADOPT, id};
        return;
    }
    if (rs->pending_conf_index > rs->commit || rs->transfer_target != 0) /* RO1 */
        return;
    id = 0; /* RO2: the others first, lowest id first */
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] != rs->id && taken_out(st, ids[i]) && (id == 0 || ids[i] < id))
            id = ids[i];
    if (id != 0) {
        *out = (struct corral_roster_step){CORRAL_ROSTER_REMOVE, id};
        return;
    }
    if (taken_out(st, rs->id)) { /* then the leader: it hands over */
        uint64_t to = corral_leader_health_pick(rs, now_ms, contact_ms);
        if (to != 0) {
            *out = (struct corral_roster_step){CORRAL_ROSTER_TRANSFER, to};
            return;
        }
        /* No voter to hand to: RO3 and RO4 go on, so that one appears. */
    }
    for (uint32_t i = 0; i < corral_state_coord_count(st); i++) { /* RO3, in id order */
        uint64_t k = corral_state_coord_at(st, i)->id;
        if (!in_conf(&rs->conf, k)) {
            *out = (struct corral_roster_step){CORRAL_ROSTER_ADD_LEARNER, k};
            return;
        }
    }
    uint32_t staying = 0; /* RO4: the voters of the roster */
    for (uint32_t i = 0; i < rs->conf.n_voters; i++)
        staying += in_roster(st, rs->conf.voters[i]);
    if (staying < voters_target) {
        id = promotable(rs, now_ms, contact_ms);
        if (id != 0)
            *out = (struct corral_roster_step){CORRAL_ROSTER_PROMOTE, id};
    }
}

const char *corral_roster_op_name(enum corral_roster_op op)
{
    switch (op) {
    case CORRAL_ROSTER_ADD_LEARNER:
        return "add-learner";
    case CORRAL_ROSTER_PROMOTE:
        return "promote";
    case CORRAL_ROSTER_REMOVE:
        return "remove";
    case CORRAL_ROSTER_TRANSFER:
        return "transfer";
    case CORRAL_ROSTER_ADOPT:
        return "adopt";
    default:
        return "none";
    }
}

int corral_roster_carry_out(struct corral_raft *r, const struct corral_roster_step *s)
{
    switch (s->op) {
    case CORRAL_ROSTER_ADD_LEARNER:
        return corral_raft_change_conf(r, CORRAL_RAFT_ADD_LEARNER, s->node, NULL);
    case CORRAL_ROSTER_PROMOTE:
        return corral_raft_change_conf(r, CORRAL_RAFT_PROMOTE, s->node, NULL);
    case CORRAL_ROSTER_REMOVE:
        return corral_raft_change_conf(r, CORRAL_RAFT_REMOVE, s->node, NULL);
    case CORRAL_ROSTER_TRANSFER:
        return corral_raft_transfer(r, s->node);
    default:
        return 0;
    }
}

uint32_t corral_roster_join_id(const struct corral_state *st, const struct corral_raft_conf *conf)
{
    uint64_t id = corral_state_next_coord_id(st);
    for (uint32_t i = 0; i < conf->n_voters; i++)
        id = conf->voters[i] >= id ? conf->voters[i] + 1 : id;
    for (uint32_t i = 0; i < conf->n_learners; i++)
        id = conf->learners[i] >= id ? conf->learners[i] + 1 : id;
    return id < UINT32_MAX ? (uint32_t)id : UINT32_MAX;
}

enum corral_roster_refusal corral_roster_may_remove(const struct corral_state *st,
                                                    const struct corral_raft_status *rs,
                                                    uint64_t id, uint64_t now_ms,
                                                    uint64_t contact_ms, uint32_t *left,
                                                    uint32_t *alive)
{
    if (rs->pending_conf_index > rs->commit || rs->transfer_target != 0)
        return CORRAL_ROSTER_REMOVE_SETTLING;
    /* The leader itself is leaving: its hand-off (RO2) is the change under
     * way, even while no voter can take it yet and the step is NONE. */
    if (rs->id <= UINT32_MAX && corral_state_coord_by_id(st, (uint32_t)rs->id) == NULL)
        return CORRAL_ROSTER_REMOVE_SETTLING;
    struct corral_roster_step s;
    corral_roster_next(st, rs, 0, now_ms, 0, &s);
    if (s.op != CORRAL_ROSTER_NONE)
        return CORRAL_ROSTER_REMOVE_SETTLING;
    if (!corral_raft_conf_is_voter(&rs->conf, id))
        return CORRAL_ROSTER_REMOVE_OK;
    if (rs->conf.n_voters == 1)
        return CORRAL_ROSTER_REMOVE_ONLY_VOTER;
    uint32_t l = rs->conf.n_voters - 1, a = 0;
    for (uint32_t i = 0; i < rs->n_progress; i++) {
        uint64_t p = rs->progress[i].id;
        if (p == id || !corral_raft_conf_is_voter(&rs->conf, p))
            continue;
        if (p == rs->id || now_ms - rs->progress[i].last_contact_ms <= contact_ms)
            a++;
    }
    if (left != NULL)
        *left = l;
    if (alive != NULL)
        *alive = a;
    return a < l / 2 + 1 ? CORRAL_ROSTER_REMOVE_NO_QUORUM : CORRAL_ROSTER_REMOVE_OK;
}

int corral_roster_bootstrap_entry(uint32_t id, const char *name, const char *cluster_addr,
                                  uint64_t index, struct corral_raft_entry *out)
{
    /* Only a node's own HTTP address is known at bootstrap; the leader
     * learns the others' from their handshakes. Every node writes the
     * same bytes. */
    struct corral_state_cmd c = corral_state_coord_put(id, name, cluster_addr, "");
    struct corral_rbuf *b = corral_state_cmd_encode(&c);
    if (b == NULL)
        return CORRAL_EINVAL;
    *out = (struct corral_raft_entry){
        .term = 1, .index = index, .type = CORRAL_RAFT_ENTRY_NORMAL, .data = b};
    return 0;
}
