/* The coordinator's side of partition ownership, as one pure piece that
 * the daemon (src/runtime/node.c and the API routes) and the simulator
 * (tests/sim/sim_coord.c) both drive, in the same order:
 *
 * - leadership: a term of office starts a fresh liveness view and a fresh
 *   controller, and ends them (liveness.h L2: what another leader answered
 *   or proposed is not this one's);
 * - the controller's evaluations, only while this node leads and is in
 *   contact with a quorum (I6), at most every eval_interval_ms, and not
 *   while the leader's own log runs more than uncommitted_max entries past
 *   its commit index (its last steps have not landed yet);
 * - heartbeats: the lease answer, recorded before it leaves (L4), the
 *   index the lease covers (agent.h A12), and the member's view, sent in
 *   full only when it changed since the view the member holds;
 * - progress reports, turned into commands by the controller.
 *
 * The host proposes the commands it is handed (Raft), tells the coord the
 * index of every cluster state command it proposes (corral_coord_proposed:
 * the API's too, since a lease covers them), and calls
 * corral_coord_propose_failed when a proposal was refused.
 *
 * Invariants:
 * K1  A lease is granted only while leading (the host passes the Raft
 *     role), to an active or draining member, and is recorded in the
 *     liveness view before the answer is built (L4).
 * K2  The lease index of an answer to member m is at least the index of
 *     every command this leader proposed that touches a partition row
 *     holding m (before or after the command), m's view_index (every
 *     applied command that touched its rows), and, until the state has
 *     applied it, the last log index when this leader took office (entries
 *     of earlier terms still in its log may commit under it, and are not
 *     attributed to members). Commands that touch no row of m cannot make
 *     m's view stale (agent.h A12 is about m's own partitions), so they
 *     do not hold its acquires back.
 * K3  A view answered "unchanged as of A" is one the member names by an
 *     index X with member.view_index <= X <= A = the applied index: no
 *     command applied in (X, A] touched a row holding the member, so its
 *     view at X equals its view at A (the committed log is the same on
 *     every node, whichever one answered the view at X).
 *
 * Ownership: the coord owns its controller and liveness view; the state
 * and the Raft status are only read. Outputs borrow from the controller
 * (controller.h: valid until the next evaluate or report). */
#ifndef CORRAL_CORE_COORD_H
#define CORRAL_CORE_COORD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/agent.h"
#include "core/controller.h"
#include "core/liveness.h"
#include "core/raft.h"
#include "core/state.h"

struct corral_coord_config {
    struct corral_liveness_config liveness;
    struct corral_controller_config controller;
    /* The controller runs at most this often (10 ms): every evaluation
     * scans every partition, and a heartbeat's report is acted on at once
     * through corral_coord_report anyway. */
    uint32_t eval_interval_ms;
    /* No evaluation while the leader's last index is more than this past
     * its commit index (32). */
    uint32_t uncommitted_max;
};

void corral_coord_config_default(struct corral_coord_config *c);
/* 0 or CORRAL_EINVAL (the liveness or controller config fails its check,
 * eval_interval_ms 0). */
int corral_coord_config_check(const struct corral_coord_config *c);

struct corral_coord;

int corral_coord_new(const struct corral_coord_config *cfg, struct corral_coord **out);
void corral_coord_free(struct corral_coord *c);

/* After every ready batch: the role and term the core reports, its last
 * log index and the time. A new term of office as leader starts a fresh
 * liveness view and controller; losing it drops them. 0 or CORRAL_ENOMEM
 * (then it does not lead: the host answers heartbeats as a follower). */
int corral_coord_leadership(struct corral_coord *c, bool leader, uint64_t term, uint64_t last_index,
                            uint64_t now_ms);
/* This node holds a term of office (set up by corral_coord_leadership). */
bool corral_coord_leading(const struct corral_coord *c);
/* The liveness view of the current term of office, or NULL. */
const struct corral_liveness *corral_coord_liveness(const struct corral_coord *c);
/* The controller of the current term of office, or NULL. */
const struct corral_controller *corral_coord_controller(const struct corral_coord *c);

/* This node proposed cmd at index (K2), st being the state it was checked
 * against: every member of a row the command touches (before it) and
 * every member an op names is recorded. 0, or CORRAL_ENOMEM: then, to
 * stay safe, every lease of this term of office covers index. */
int corral_coord_proposed(struct corral_coord *c, const struct corral_state *st,
                          const struct corral_state_cmd *cmd, uint64_t index);
/* A proposal was refused: the controller forgets its in-flight steps. */
void corral_coord_propose_failed(struct corral_coord *c);

/* The commands to propose now (out->n_cmds 0 when it is not the time, or
 * this node may not change anything: I6). *ran (may be NULL) says whether
 * the controller ran. 0 or CORRAL_ENOMEM. */
int corral_coord_evaluate(struct corral_coord *c, const struct corral_state *st,
                          const struct corral_raft_status *rs, uint64_t now_ms,
                          struct corral_controller_output *out, bool *ran);

enum corral_coord_beat {
    CORRAL_COORD_BEAT_OK = 0,         /* a lease is granted */
    CORRAL_COORD_BEAT_NOT_LEADER = 1, /* not leading: send the member to the leader */
    CORRAL_COORD_BEAT_UNKNOWN = 2,    /* no such member: it must register */
    CORRAL_COORD_BEAT_INACTIVE = 3,   /* dead or left: it must register again */
    CORRAL_COORD_BEAT_FULL = 4,       /* the liveness view cannot track it: no lease */
};

enum corral_coord_view_kind {
    CORRAL_COORD_VIEW_NONE = 0,      /* the leader cannot tell (the member is ahead of it) */
    CORRAL_COORD_VIEW_UNCHANGED = 1, /* the member's view is current as of view_index (K3) */
    CORRAL_COORD_VIEW_FULL = 2,      /* send the view at view_index */
};

struct corral_coord_answer {
    uint8_t beat;         /* enum corral_coord_beat */
    uint32_t lease_ms;    /* 0 unless OK */
    uint64_t lease_index; /* K2 */
    uint8_t view;         /* enum corral_coord_view_kind */
    uint64_t view_index;  /* the applied index the view is taken at */
};

/* A heartbeat from member (by id) arrived at now_ms from a member holding
 * the view of index member_index (0: none); leader says whether the Raft
 * core leads now. Fills ans. A dead member's heartbeat is recorded (it
 * asks to rejoin; a death decided again before its first leased heartbeat
 * would undo that) but gets no lease. */
void corral_coord_heartbeat(struct corral_coord *c, const struct corral_state *st, bool leader,
                            uint32_t member, uint64_t member_index, uint64_t now_ms,
                            struct corral_coord_answer *ans);

/* A member's progress report, handed to the controller (controller.h).
 * out->n_cmds 0 when not leading or nothing follows. 0 or CORRAL_EINVAL. */
int corral_coord_report(struct corral_coord *c, const struct corral_state *st, uint32_t member,
                        const struct corral_progress *p, uint64_t now_ms,
                        struct corral_controller_output *out);

/* The member's view at the state's applied index, as the watch API gives
 * it: one entry per partition it holds a replica of, in (resource id,
 * partition) order; copy_from of a replica is the primary, else the first
 * other in-sync replica, else none. Returns the number of entries, which
 * may exceed cap (only cap are written). */
uint32_t corral_coord_view(const struct corral_state *st, uint32_t member,
                           struct corral_agent_entry *out, uint32_t cap);

/* The view kind K3 allows for a member holding member_index. */
uint8_t corral_coord_view_kind(const struct corral_state *st, uint32_t member,
                               uint64_t member_index);

#endif
