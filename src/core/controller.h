/* The Raft leader's controller: a pure function of (cluster state, liveness
 * view, now) that returns the next commands to propose, moving every
 * resource's map toward the sticky balanced target of the placement engine
 * (core/placement.h) in the safe steps of docs/partitions.md: copy, hand
 * off (release, then clear and grant epoch + 1), drop. The host proposes
 * the commands to Raft, applies what commits, and calls evaluate again
 * later (on a timer and after applies); progress reports from members go
 * through corral_controller_report(), which turns one into a command.
 *
 * Who hosts partitions: members with role worker and status active whose
 * lease is not over. A node with both roles registers as a worker;
 * coordinator-only members never host, and their liveness is Raft's
 * business, so the controller never declares one dead. Draining members
 * host nothing new (they are not placement members) but may stay primary
 * until an in-sync replica can take over, and take a primary back when
 * nothing active can (C2); the controller never proposes
 * MEMBER_STATUS left: a drained member leaves through the API (DELETE
 * /v1/members/{name} waits until it holds nothing), so an operator may also
 * end a drain without the controller racing to remove the member.
 *
 * Zones: the distinct zone strings of the placement members, in byte
 * order, are numbered 0, 1, ...; past CORRAL_PLACEMENT_ZONES_MAX zones the
 * number wraps (zones then share a number: fewer failure domains, never an
 * error). The engine's seed per resource is its id.
 *
 * Targets: one placement engine per resource. A target stays fixed while
 * the placement members (id, zone, weight) and R stay the same, so every
 * step moves toward the same rows (recomputing from a half-moved map makes
 * the engine shed whichever replica is primary at that moment, and the
 * primary then flip-flops). When they change, the engine starts from the
 * previous target where its rows are still hosted, from the state
 * elsewhere. Once the state reached a target that the engine has not yet
 * returned unchanged, it is computed once more from itself, so the map
 * ends at the engine's own fixed point. The cost of an evaluation is one
 * scan of every partition, plus one engine computation per resource whose
 * members changed.
 *
 * Room: the state adds no replica past R (state.h, ADD_COPYING), so a copy
 * into a full row drops, in the same command and just before the add, the
 * off-target replica it replaces (a copying one first, never the last
 * in-sync one): redundancy is R - 1 while the copy runs. With R = 1 the
 * only replica is the primary and a partition cannot move at all (counted
 * as blocked). A state that allowed one replica past R during a move would
 * let every copy come first; only row_cap() in controller_step.c would
 * change.
 *
 * Lost data: a partition that had a primary and whose in-sync replicas all
 * sit on members that are dead, left or out of lease keeps those replicas
 * and waits for one to come back (a rejoin keeps the member's id), rather
 * than copy from nothing and grant an empty replica (counted as lost).
 *
 * Invariants (tests/unit/test_controller.c checks them after every step):
 * C1  Every op carries the partition's epoch as the controller saw it (the
 *     state's compare-and-set), and is valid against the state evaluated:
 *     if nothing else changed the partition first, the state applies it.
 * C2  Remove before assign: a GRANT goes to a partition with no primary, or
 *     follows the CLEAR of its primary in the same command; its member
 *     holds an in-sync replica, is active and its lease is not over. Only
 *     when no such member exists does a draining member whose lease is not
 *     over get it, as GRANT_DRAINING (a drain moves partitions away when
 *     they have somewhere to go; it never leaves one without a primary
 *     that a live replica could be). A hand-off (RELEASE) still waits for
 *     an active member, so such a primary moves on once one is in sync.
 * C3  A primary is cleared only when it reported `released` for the
 *     partition's current epoch (asked to, or refusing an epoch it stopped
 *     at: an agent never acts again at an epoch it released, agent.h A3)
 *     or when its lease is certainly over; the latter, and every
 *     MEMBER_STATUS dead, only once corral_liveness_settled(now) (the
 *     new-leader wait). Partitions never granted (epoch 0) or with no
 *     primary may be granted at once.
 * C4  Copy, then hand off, then drop: a RELEASE is proposed only when
 *     another in-sync target replica on a grantable member exists to take
 *     over; a live member's replica outside the target is dropped only once
 *     every target member of its partition holds an in-sync replica, or, in
 *     a full row, together with (before) the copy that replaces it (Room).
 *     The primary's replica is never dropped, nor the last in-sync replica
 *     on a live member; a replica on a member that is dead, left or out of
 *     lease is dropped at once when an in-sync replica on a live member
 *     remains (else see Lost data).
 * C5  Throttles: the copying replicas on a member (in the state, plus
 *     copies proposed and not yet seen applied) stay at most
 *     copies_per_member_max, and over the cluster at most copies_max. A
 *     partition never granted gets its first replicas in sync (ADD_IN_SYNC:
 *     nothing to copy) and is not throttled.
 * C6  Idempotence, by tracking in-flight proposals: a partition, or a
 *     member's death, with a proposal in flight gets nothing more until the
 *     proposal's last op is seen applied in the state, the partition's epoch
 *     moves, or proposal_timeout_ms passes. So evaluating again before the
 *     commands apply proposes no duplicate and no conflicting step. Should a
 *     proposal be lost and retried after the timeout (or after
 *     corral_controller_forget()), the state's checks refuse the
 *     duplicate (C1), so nothing applies twice.
 * C7  Bounded output: at most commands_max commands per call, each at most
 *     ops_per_command_max ops (<= CORRAL_STATE_OPS_MAX) for one resource,
 *     partitions in non-decreasing order; one group of ops per partition per
 *     call, never split across commands.
 * C8  Deterministic: the output is a function of the state, the liveness
 *     view, now and the controller's own history (in-flight proposals and
 *     targets); the same inputs give the same commands.
 * C9  Failover first: the CLEAR/GRANT ops of every resource come before any
 *     MEMBER_STATUS, copy, hand-off or drop, so a crash's partitions get a
 *     new primary in one evaluation (within the command budget).
 *
 * Ownership: the controller owns its engines, caches and output buffers.
 * The commands an evaluate returns (and their ops) are borrowed, valid until
 * the next corral_controller_evaluate() or corral_controller_free(); a
 * report's command is valid until the next corral_controller_report(). The
 * caller owns the state and the liveness view, which are only read, and
 * encodes each command with corral_state_cmd_encode() to propose it.
 *
 * Only the Raft leader runs a controller; a new leader makes a new one (or
 * calls corral_controller_forget()), since in-flight proposals of another
 * term are not its own. */
#ifndef CORRAL_CORE_CONTROLLER_H
#define CORRAL_CORE_CONTROLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/liveness.h"
#include "core/placement.h"
#include "core/state.h"

/* Limits, each with its reason:
 * - COMMANDS_MAX: commands per evaluation. A call at most fills this many
 *   Raft entries, 4096 x 24-byte ops each: 256 of them are 24 MiB of
 *   buffers, far more than one evaluation should propose.
 * - GROUP_OPS_MAX: ops for one partition in one call: the drops of every
 *   replica (REPLICAS_MAX), one more drop, the adds of a fresh partition
 *   (REPLICAS_MAX) and a grant fit in 16. */
#define CORRAL_CONTROLLER_COMMANDS_MAX 256u
#define CORRAL_CONTROLLER_GROUP_OPS_MAX 16u

struct corral_controller_config {
    /* Copies (copying replicas) at once per member (4): a copy reads a
     * whole partition from its source and writes it on the member, so a
     * few at a time keep its disk and network from starving its traffic. */
    uint32_t copies_per_member_max;
    /* Copies at once in the cluster (64): bounds the re-replication load
     * after a crash or a zone loss, and the ops one evaluation proposes. */
    uint32_t copies_max;
    /* Commands per evaluation (32), 1..CORRAL_CONTROLLER_COMMANDS_MAX: a
     * bootstrap of 65,536 partitions at R = 3 (262,144 ops) then takes two
     * evaluations. */
    uint32_t commands_max;
    /* Ops per command (CORRAL_STATE_OPS_MAX), GROUP_OPS_MAX..OPS_MAX. */
    uint32_t ops_per_command_max;
    /* A proposal not seen applied after this long is taken as lost (2000):
     * a Raft commit takes milliseconds, a refused command never applies,
     * and a retry is harmless (C6). */
    uint32_t proposal_timeout_ms;
};

/* Fills c with the defaults above. */
void corral_controller_config_default(struct corral_controller_config *c);
/* 0 or CORRAL_EINVAL (a zero, or a count outside its range). */
int corral_controller_config_check(const struct corral_controller_config *c);

/* What one evaluation did and left for later (counts of ops proposed). */
struct corral_controller_stats {
    uint32_t deaths;        /* MEMBER_STATUS dead */
    uint32_t clears;        /* CLEAR of a primary whose lease is over */
    uint32_t grants;        /* GRANT */
    uint32_t releases;      /* RELEASE (hand-off started) */
    uint32_t copies;        /* ADD_COPYING */
    uint32_t fresh;         /* ADD_IN_SYNC (never-granted partitions) */
    uint32_t drops;         /* DROP */
    uint32_t throttled;     /* partitions that wanted a copy over a throttle */
    uint32_t deferred;      /* partitions left for later: the command budget ran out */
    uint32_t in_flight;     /* partitions with a proposal in flight (this call's too) */
    uint32_t lost;          /* partitions whose data lives only on lost members: they
                             * wait for one to return (nothing is copied from nothing) */
    uint32_t blocked;       /* partitions with no safe step: a full row whose only
                             * replica off target is the primary (R = 1), see C4 */
    uint32_t unheard;       /* never-granted partitions waiting for a target member
                             * to be heard in this term (the new-leader wait) */
    uint32_t recomputed;    /* resources whose target was computed again */
    uint32_t out_of_target; /* partitions not yet equal to their target */
};

struct corral_controller_output {
    uint32_t n_cmds;
    const struct corral_state_cmd *cmds; /* borrowed (see Ownership) */
    struct corral_controller_stats stats;
};

/* A member's progress report (docs/partitions.md, heartbeat "progress"). */
enum corral_progress_state {
    CORRAL_PROGRESS_IN_SYNC = 1,  /* its copying replica caught up */
    CORRAL_PROGRESS_RELEASED = 2, /* it stopped acting as primary of (partition, epoch) */
    CORRAL_PROGRESS_FAILED = 3,   /* a hook failed; the agent retries */
};

struct corral_progress {
    uint32_t resource_id; /* the resource's id (agent.h reports), or 0: by name */
    const char *resource; /* else its name (the heartbeat's JSON); need not be terminated */
    uint32_t resource_len;
    uint32_t partition;
    uint64_t epoch; /* the epoch of the assignment the member acted on */
    uint8_t state;  /* enum corral_progress_state */
};

struct corral_controller;

/* 0, CORRAL_EINVAL (cfg fails the check) or CORRAL_ENOMEM. cfg NULL: the
 * defaults. */
int corral_controller_new(const struct corral_controller_config *cfg,
                          struct corral_controller **out);
void corral_controller_free(struct corral_controller *c);

/* The next commands to propose, in order: first the failover ops of every
 * resource (C9), then deaths, then copies, hand-offs and drops (C4, C5),
 * within the budget (C7). Marks what it returns as in flight (C6). Returns
 * 0, or CORRAL_ENOMEM (out->n_cmds is then 0, and nothing is marked).
 * st and lv are only read. */
int corral_controller_evaluate(struct corral_controller *c, const struct corral_state *st,
                               const struct corral_liveness *lv, uint64_t now_ms,
                               struct corral_controller_output *out);

/* Turns member's report into at most one command, validated against the
 * state: in_sync of a copying replica at the partition's epoch (member not
 * dead) gives MARK_IN_SYNC; released by the primary at its epoch gives
 * CLEAR and, when an in-sync replica on a grantable member exists, GRANT
 * to it in the same command (the target primary first), so a planned
 * hand-off costs one commit (C2, C3). A stale report (another epoch, no
 * such replica, not the primary), an unknown resource, or failed (the
 * agent retries with backoff, agent.h A8; the host logs it) gives
 * nothing: out->n_cmds = 0. The agent's assignment index is not needed:
 * the agent withdraws a report about an earlier copy itself (A7), and the
 * epoch CAS refuses one from before a grant. Returns 0 or CORRAL_EINVAL (a
 * bad state value). */
int corral_controller_report(struct corral_controller *c, const struct corral_state *st,
                             const struct corral_liveness *lv, uint64_t now_ms, uint32_t member,
                             const struct corral_progress *report,
                             struct corral_controller_output *out);

/* Forgets every in-flight proposal (a proposal failed, or leadership
 * changed hands): the next evaluation starts from the state alone. */
void corral_controller_forget(struct corral_controller *c);

/* The target the last evaluation computed for a resource (the dry run of
 * GET /v1/resources/{name}/plan), or NULL. Borrowed, valid until the next
 * evaluate. */
const struct corral_placement_result *corral_controller_target(const struct corral_controller *c,
                                                               uint32_t resource_id);

#endif
