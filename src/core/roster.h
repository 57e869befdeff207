/* The coordinators' roster against the Raft configuration: what the
 * leader changes next so that the configuration follows the roster in the
 * cluster state (core/state.h, CORRAL_STATE_COORD_PUT). Operators change
 * the roster (a join puts a coordinator in it, a removal takes one out);
 * the leader, on every tick, asks corral_roster_next for one step and
 * carries it out. Pure: the node and the simulator both run it.
 *
 * Rules (tests and docs cite them):
 * RO1 Only a leader steps, and one configuration change at a time: no
 *     step while a change is uncommitted or a leadership transfer runs.
 * RO2 A node of the configuration whose id is below the roster's
 *     next_coord_id but not in the roster was taken out of it: it is
 *     removed, lowest id first, the leader last. The leader does not
 *     remove itself: it hands leadership to the most caught-up voter in
 *     contact (leader_health.h H4), and its successor removes it. With no
 *     voter to hand to, it goes on with RO3 and RO4 so that one appears:
 *     it may be the last voter, its fellow voters having left the roster
 *     too (two removals accepted while the first was in flight), and
 *     waiting would wait forever.
 * RO3 A roster entry not in the configuration joins it as a learner,
 *     lowest id first (after every RO2 removal).
 * RO4 While fewer voters of the roster than the target (a leader that
 *     left it does not count) are in the configuration, the learner with the
 *     highest match index among those caught up (corral_raft_caught_up:
 *     within CORRAL_RAFT_PROMOTE_LAG_MAX entries of the commit index) and
 *     heard from within contact_ms is promoted (ties: the lowest id).
 *     Voters beyond the target are not demoted: lowering the target
 *     takes effect as voters leave.
 * RO5 A node of the configuration with an id at or above next_coord_id
 *     predates the roster (a cluster started before it): the leader adopts
 *     it into the roster (a COORD_PUT under its id, with the addresses it
 *     knows) before anything else; adopting is not a configuration
 *     change, so RO1 does not hold it back. RO2-RO4 wait until every node
 *     of the configuration is in the roster. */
#ifndef CORRAL_CORE_ROSTER_H
#define CORRAL_CORE_ROSTER_H

#include <stdint.h>

#include "core/raft.h"
#include "core/state.h"

enum corral_roster_op {
    CORRAL_ROSTER_NONE = 0,
    CORRAL_ROSTER_ADD_LEARNER = 1, /* RO3 */
    CORRAL_ROSTER_PROMOTE = 2,     /* RO4 */
    CORRAL_ROSTER_REMOVE = 3,      /* RO2 */
    CORRAL_ROSTER_TRANSFER = 4,    /* RO2, the leader leaving: hand over to node */
    CORRAL_ROSTER_ADOPT = 5,       /* RO5 */
};

struct corral_roster_step {
    enum corral_roster_op op;
    uint64_t node;
};

/* The next step for the leader whose Raft status is rs, at now_ms on the
 * clock of rs's last_contact_ms; voters_target: --voters. */
void corral_roster_next(const struct corral_state *st, const struct corral_raft_status *rs,
                        uint32_t voters_target, uint64_t now_ms, uint64_t contact_ms,
                        struct corral_roster_step *out);

const char *corral_roster_op_name(enum corral_roster_op op);

/* The entry a new cluster's log holds for one initial coordinator, at
 * index (the bootstrap configuration is index 1; these follow from 2):
 * a COORD_PUT of id, name and cluster address at term 1, with no HTTP
 * address (each node knows only its own; the leader learns the others'),
 * so every initial coordinator writes the same bytes. out->data holds a
 * reference. 0, or CORRAL_EINVAL when the command does not encode. */
int corral_roster_bootstrap_entry(uint32_t id, const char *name, const char *cluster_addr,
                                  uint64_t index, struct corral_raft_entry *out);

/* Carries out step s on the leader's core r, as the node and the
 * simulator both do: ADD_LEARNER, PROMOTE and REMOVE change the
 * configuration (corral_raft_change_conf), TRANSFER hands leadership over
 * (corral_raft_transfer). NONE and ADOPT are the caller's (adopting is a
 * roster write, with addresses only the caller knows): nothing is done,
 * 0. Otherwise returns what the core returned. */
int corral_roster_carry_out(struct corral_raft *r, const struct corral_roster_step *s);

/* The id a joining coordinator gets: never one the roster gave out, nor
 * one the configuration conf holds (a cluster from before the roster):
 * the larger of next_coord_id and 1 + conf's highest id, at most
 * UINT32_MAX. */
uint32_t corral_roster_join_id(const struct corral_state *st, const struct corral_raft_conf *conf);

/* Why a leader refuses to take a coordinator out of the roster. */
enum corral_roster_refusal {
    CORRAL_ROSTER_REMOVE_OK = 0,
    /* A change is under way: one uncommitted, a transfer running, the
     * leader out of the roster (its hand-off is due), or the roster and
     * the configuration not agreeing yet (corral_roster_next would step).
     * One at a time keeps every step's quorum reasoning simple. */
    CORRAL_ROSTER_REMOVE_SETTLING = 1,
    CORRAL_ROSTER_REMOVE_ONLY_VOTER = 2, /* a cluster needs one */
    /* The voters left (*left of them) would reach no quorum of the new
     * configuration among those heard from within contact_ms (*alive),
     * so the removal could never commit. */
    CORRAL_ROSTER_REMOVE_NO_QUORUM = 3,
};

/* Whether the leader whose status is rs, at now_ms, may take coordinator
 * id (in the roster) out of it: the API's DELETE and the simulator's
 * operator ask this before proposing COORD_DELETE. left and alive (either
 * may be NULL) receive the counts of NO_QUORUM for a voter. */
enum corral_roster_refusal corral_roster_may_remove(const struct corral_state *st,
                                                    const struct corral_raft_status *rs,
                                                    uint64_t id, uint64_t now_ms,
                                                    uint64_t contact_ms, uint32_t *left,
                                                    uint32_t *alive);

#endif
