/* The member side of partition ownership: turns the desired assignment
 * (from the watch API), heartbeat send and answer times, and hook
 * completions into the next hook calls (acquire, release, replicate, drop)
 * and the progress reports the next heartbeat carries. Pure and
 * deterministic: the host (the simulator, `corral agent`, libcorral) owns
 * the clock, the network and the hooks; the same agent runs in all three.
 * The protocol is that of docs/partitions.md ("Leases", "The member side").
 *
 * Driving it. The host calls the input functions with its monotonic clock
 * (now_ms; a reading earlier than one already given is taken as the later
 * one, except for a heartbeat's send time, which is used as given since an
 * earlier start only shortens the lease). After every call it takes the
 * queued hooks with corral_agent_next_hook() and runs each of them exactly
 * once, reporting the outcome with corral_agent_hook_done() (a host-side
 * timeout is a failure: err CORRAL_ETIMEDOUT), and re-arms its timer at
 * corral_agent_next_wakeup(), calling corral_agent_tick() then. When it
 * sends a heartbeat it calls corral_agent_heartbeat_sent() first, which
 * numbers the heartbeat and hands over the progress reports for its body,
 * and when the leader answers it (a 2xx answer with lease_ms, not a
 * redirect or an error), corral_agent_heartbeat_answered().
 *
 * Invariants (tests in tests/unit/test_agent.c cite them):
 * A1  Lease. The lease ends at the maximum, over every answered heartbeat,
 *     of (the instant that heartbeat was SENT, on this member's clock) +
 *     the lease_ms of its answer, saturating. It is never counted from the
 *     answer's arrival, and an answer to an older heartbeat never moves
 *     the end earlier. The lease is valid while now < end. It starts
 *     invalid.
 * A2  Acting stops at the lease end. Every call first checks the clock:
 *     when now >= lease end, every primary stops acting at once, before
 *     any release hook is queued (reason lease_lost). While anything acts,
 *     corral_agent_next_wakeup() <= the lease end, so a host that wakes
 *     when told never acts past it. The release hooks run after that
 *     instant: the leader's longer wait (liveness.h L1, lease x (1 +
 *     drift) + margin) leaves them room, and the epoch (I4) fences
 *     whatever the application still does later.
 * A3  Acquire rule. An acquire for (partition, epoch) is issued only while
 *     the lease is valid, not shutting down, for a desired primary in
 *     state in_sync, with no other hook in flight on the partition, and
 *     only when epoch is greater than every epoch the agent stopped acting
 *     on for that partition: once stopped at E, it never acts at E or
 *     below again; a new grant (a larger epoch) is needed, and a desired
 *     grant it may not take up is reported `released` (A7). A desired entry
 *     whose epoch is below the largest epoch seen for its partition is
 *     stale: it is ignored (the partition keeps its previous desired
 *     entry) and counted in stats.stale_ignored.
 * A4  Acting. The agent acts as primary of (partition, epoch) from the
 *     moment it queues the acquire (before the host runs it: the
 *     conservative side) until it stops: at the lease end (A2), when the
 *     desired entry becomes `releasing`, a replica, or absent, or at
 *     shutdown. Stopping is immediate, in the call that sees the cause;
 *     the release hook follows, after any hook in flight on the partition
 *     has completed. A failed acquire still counts as acting (the
 *     application may hold it) and is retried (A8).
 * A5  One hook at a time. At most one hook is in flight (queued or
 *     running) per partition. Hook ids are unique and increase from 1.
 * A6  Held until released. After an acquire is queued, whatever its
 *     outcome, the partition is held until a release hook for it
 *     completes ok. A held partition that does not act gets that release
 *     before any other hook; a failed release is retried (A8) and stays
 *     held. The release's reason is why acting stopped (handoff for
 *     releasing or demoted to replica, dropped, lease_lost, shutdown).
 * A7  Reports. Each partition has at most one pending report, the latest
 *     (a new one replaces it; a hook's success withdraws a pending
 *     `failed`; a partition leaving or re-entering the desired set
 *     withdraws what was pending, which described the previous copy). A
 *     release completed ok reports `released` for its epoch; a desired
 *     primary in state `releasing`, or one A3 refuses, that the agent does
 *     not hold reports `released` for that epoch at once (once per epoch);
 *     a replicate completed ok for a replica still desired `copying`
 *     reports `in_sync`; every failed hook reports `failed` with its
 *     error. A report is handed to every heartbeat (those carried before
 *     first, as many as the caller has room for) until an answer arrives
 *     for a heartbeat in an unbroken run of heartbeats that all carried
 *     it; then it is gone. A lost heartbeat or answer loses no report.
 *     A report the leader heard but did not act on (it lost office, or its
 *     command was refused) would be lost with it: so `released` for an
 *     epoch still shown as this member's, and `in_sync` for a copy still
 *     shown copying, are made again whenever a newer desired set still
 *     shows them and nothing is pending for the partition.
 * A8  Retry. A hook that fails sets the partition's next hook no earlier
 *     than now + backoff(k), k the consecutive failures:
 *     min(backoff_base_ms * 2^(k-1), backoff_max_ms), that instant rounded
 *     up to a multiple of backoff_base_ms (retries falling due close
 *     together then run in one pass over the partitions). A success, a
 *     change of the partition's desired entry, or a stop (A4: the release
 *     must not wait out a backoff) resets k and the wait. What is retried
 *     is whatever the partition then needs, not necessarily the same hook.
 * A9  Desired sets replace the whole set at once. An index below the one
 *     applied is refused (CORRAL_EINVAL: a late answer to an older watch);
 *     a set with an invalid entry is refused whole and changes nothing
 *     (the previous set stays in force: a bad entry must not read as
 *     "absent", which would drop data). A replica desired `copying` gets a
 *     replicate (from copy_from) once per copy: again only after it was
 *     absent, in sync or primary in between. A partition absent from the
 *     set is released if held (reason dropped), then dropped, once.
 * A10 Bounds. At most CORRAL_AGENT_PARTITIONS_MAX entries per desired set
 *     and CORRAL_AGENT_RECORDS_MAX partitions kept (desired, or undesired
 *     but still releasing, dropping or reporting): beyond either a set is
 *     refused with CORRAL_EFULL. Every array is bounded by them; memory
 *     grows only in corral_agent_new and corral_agent_set_desired, so
 *     every other call succeeds without allocating.
 * A12 Fresh enough view. A lease answer names the log index its leader
 *     had reached for assignments: its applied changes, every change it
 *     has proposed, and every entry of an earlier term still in its log
 *     (such an entry may commit under it); an acquire is issued only while
 *     the desired set in force is at least that new. Without it a member could take up a grant from
 *     a stale view (from a lagging coordinator, or read before the leader's
 *     clear of it committed) under a lease from a later answer, while the
 *     leader has granted the partition elsewhere. What already acts goes
 *     on: the leader grants elsewhere only after a release or the lease's
 *     certain end (liveness.h L1), which stops it first (A2).
 * A11 Shutdown. corral_agent_shutdown stops every primary at once (reason
 *     shutdown) and releases everything held; after it no acquire,
 *     replicate or drop is queued. It is done when nothing is held and no
 *     hook is in flight.
 *
 * Memory of epochs. The epochs of A3 are kept per partition while the
 * agent keeps the partition; a partition dropped and done is forgotten
 * (A10 bounds the table), but the largest epoch seen of any forgotten
 * partition is kept, and a partition new to the table takes no grant at
 * or below it. With the state machine's one epoch counter (state.h S3)
 * a correct leader never asks for one: a partition that leaves this
 * member's set was cleared first, so coming back as primary takes a new
 * grant, above every epoch granted before. Nothing is kept across a
 * restart: an agent starts without a lease, and the epochs handed to the
 * application (I4) fence a stale owner in its storage.
 *
 * Ownership: corral_agent_new allocates the agent (through util/mem.h),
 * corral_agent_free releases it. Every input is copied; nothing the
 * caller passes is retained. Outputs are copied into the caller's
 * structs. Not thread-safe: one host thread drives it. */
#ifndef CORRAL_CORE_AGENT_H
#define CORRAL_CORE_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"

/* Limits, each with its reason:
 * - PARTITIONS_MAX: entries of one member's desired set, as one resource's
 *   partition count (state.h PARTITIONS_PER_RESOURCE_MAX). At 100-200
 *   bytes of JSON per entry, a watch answer of 65,536 entries is 6.5-13
 *   MiB, about the most one HTTP answer should carry; a full pass over
 *   them (on each set, on a lease regained, on the lease end and on
 *   retries) takes about 2 ms, a whole set_desired about 5 ms (-O2, one
 *   core). A cluster that would place more on one member needs more
 *   members.
 * - RECORDS_MAX: partitions kept, desired or still being released,
 *   dropped or reported: room for a whole set being replaced by another
 *   whole set while the old one drains. A partition costs 160 bytes and
 *   at most two 48-byte hook slots: 33 MiB at the limit, a few KiB for a
 *   member with a few partitions (the tables grow as needed).
 * - HEARTBEATS_MAX: sent heartbeats whose send time is remembered; an
 *   answer to an older one is ignored. At the 250 ms default that is
 *   16 s, far past any lease (1 s) such an answer could still grant. */
#define CORRAL_AGENT_PARTITIONS_MAX CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX
#define CORRAL_AGENT_RECORDS_MAX (2u * CORRAL_AGENT_PARTITIONS_MAX)
#define CORRAL_AGENT_HEARTBEATS_MAX 64u

/* No member (copy_from of a replica with nothing to copy from). */
#define CORRAL_AGENT_NONE CORRAL_STATE_NONE

enum corral_agent_role {
    CORRAL_AGENT_PRIMARY = 1,
    CORRAL_AGENT_REPLICA = 2,
};

/* As the watch API's "state"; copying and in_sync are state.h's values. */
enum corral_agent_entry_state {
    CORRAL_AGENT_COPYING = CORRAL_REPLICA_COPYING,
    CORRAL_AGENT_IN_SYNC = CORRAL_REPLICA_IN_SYNC,
    CORRAL_AGENT_RELEASING = 3, /* primaries only: stop acting, report released */
};

/* One partition of the desired assignment of this member. Valid entries:
 * a primary is in_sync or releasing with epoch >= 1; a replica is copying
 * or in_sync (any epoch: 0 when never granted); partition <
 * CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX; each (resource, partition) at
 * most once per set. */
struct corral_agent_entry {
    uint32_t resource;
    uint32_t partition;
    uint8_t role;       /* enum corral_agent_role */
    uint8_t state;      /* enum corral_agent_entry_state */
    uint64_t epoch;     /* the partition's current epoch */
    uint32_t copy_from; /* member id to copy from (replica copying), or CORRAL_AGENT_NONE */
};

enum corral_agent_hook_kind {
    CORRAL_AGENT_ACQUIRE = 1,   /* become primary of (resource, partition) at epoch */
    CORRAL_AGENT_RELEASE = 2,   /* stop being primary at epoch, keep the data; see reason */
    CORRAL_AGENT_REPLICATE = 3, /* copy the partition from member `from` (NONE: start empty) */
    CORRAL_AGENT_DROP = 4,      /* delete the local data of the partition */
};

enum corral_agent_reason {
    CORRAL_AGENT_HANDOFF = 1,    /* releasing, or no longer the primary */
    CORRAL_AGENT_LEASE_LOST = 2, /* the lease ran out */
    CORRAL_AGENT_DROPPED = 3,    /* the partition left this member's set */
    CORRAL_AGENT_SHUTDOWN = 4,   /* corral_agent_shutdown */
};

/* A hook for the host to run. */
struct corral_agent_hook {
    uint64_t id;    /* for corral_agent_hook_done */
    uint8_t kind;   /* enum corral_agent_hook_kind */
    uint8_t reason; /* RELEASE: enum corral_agent_reason; else 0 */
    uint32_t resource;
    uint32_t partition;
    uint64_t epoch; /* ACQUIRE, RELEASE: the fencing token; else the desired epoch */
    uint32_t from;  /* REPLICATE: the member to copy from; else CORRAL_AGENT_NONE */
};

/* As the heartbeat's progress "state". */
enum corral_agent_progress {
    CORRAL_AGENT_REPORT_IN_SYNC = 1,
    CORRAL_AGENT_REPORT_RELEASED = 2,
    CORRAL_AGENT_REPORT_FAILED = 3,
};

/* One progress entry of a heartbeat body. */
struct corral_agent_report {
    uint32_t resource;
    uint32_t partition;
    uint64_t epoch;
    uint8_t state; /* enum corral_agent_progress */
    uint8_t hook;  /* FAILED: the enum corral_agent_hook_kind that failed; else 0 */
    int32_t error; /* FAILED: the host's error (never 0); else 0 */
    /* The assignment index in force when the hook reported on was queued
     * (or when the report was made, for one without a hook): lets the
     * leader tell an in_sync about an older copy of the partition from
     * one about the copy it now waits for. */
    uint64_t index;
};

/* A partition the agent acts as primary of. */
struct corral_agent_primary {
    uint32_t resource;
    uint32_t partition;
    uint64_t epoch;
};

struct corral_agent_config {
    uint32_t backoff_base_ms; /* first retry delay after a failed hook (100) */
    uint32_t backoff_max_ms;  /* the delay doubles up to this (10,000) */
};

struct corral_agent_stats {
    uint32_t partitions;      /* kept (A10): desired, or undesired and not done yet */
    uint32_t desired;         /* in the desired set in force */
    uint32_t acting;          /* acting as primary */
    uint32_t held;            /* held (A6): acting, or waiting for a release to complete */
    uint32_t hooks_in_flight; /* queued or running */
    uint32_t hooks_queued;    /* queued, not taken by corral_agent_next_hook yet */
    uint32_t reports_pending; /* waiting for an answered heartbeat (A7) */
    uint64_t stale_ignored;   /* desired entries ignored for a stale epoch (A3) */
};

struct corral_agent;

/* Fills c with the defaults above. */
void corral_agent_config_default(struct corral_agent_config *c);
/* 0, or CORRAL_EINVAL when backoff_base_ms is 0 or above backoff_max_ms. */
int corral_agent_config_check(const struct corral_agent_config *c);

/* A new agent: no lease, no desired set (index 0), nothing held. 0,
 * CORRAL_EINVAL (config) or CORRAL_ENOMEM; *out is set only on success. */
int corral_agent_new(const struct corral_agent_config *cfg, struct corral_agent **out);
/* Frees the agent; NULL is fine. Hooks in flight are forgotten. */
void corral_agent_free(struct corral_agent *a);

/* Replaces the desired set with entries[0..n) (any order), the watch
 * answer for assignment index `index` (A9). Then reconciles: may queue
 * hooks and reports. 0; CORRAL_EINVAL (index below the applied one, an
 * invalid entry or a duplicate, entries NULL with n > 0); CORRAL_EFULL
 * (A10); CORRAL_ENOMEM. On an error nothing changes but the clock check
 * of A2, which every call makes. */
int corral_agent_set_desired(struct corral_agent *a, uint64_t now_ms, uint64_t index,
                             const struct corral_agent_entry *entries, uint32_t n);

/* A heartbeat is being sent at now_ms: returns its sequence number (1, 2,
 * ...; to be given back to _answered) and copies up to cap pending reports
 * for its body into out (out may be NULL when cap is 0), their count in
 * *n_out. Reports stay pending until answered (A7). */
uint64_t corral_agent_heartbeat_sent(struct corral_agent *a, uint64_t now_ms,
                                     struct corral_agent_report *out, uint32_t cap,
                                     uint32_t *n_out);
/* The leader answered heartbeat seq, granting lease_ms (0: no lease) for
 * views at least as new as lease_index (A12), and the answer arrived at
 * now_ms. Extends the lease per A1 (a lease that becomes valid lets
 * waiting acquires go) and retires the reports that heartbeat carried
 * (A7). 0, or CORRAL_ENOTFOUND, changing nothing, when seq was never sent
 * or is more than CORRAL_AGENT_HEARTBEATS_MAX old (the clock check of A2
 * is made all the same). */
int corral_agent_heartbeat_answered(struct corral_agent *a, uint64_t seq, uint32_t lease_ms,
                                    uint64_t lease_index, uint64_t now_ms);

/* Time passes: the lease end (A2) and retry times (A8) due at now_ms. */
void corral_agent_tick(struct corral_agent *a, uint64_t now_ms);
/* The earliest instant at which corral_agent_tick must run: the lease end
 * while anything acts, the earliest retry; UINT64_MAX when nothing waits
 * on time. It may be early (a tick then finds nothing to do), never late;
 * it may be <= now after a hook_done: tick at once. Read it again after
 * every call. */
uint64_t corral_agent_next_wakeup(const struct corral_agent *a);

/* The next queued hook, in the order queued: false when none. Each hook is
 * handed out once; the host must run it and report it. */
bool corral_agent_next_hook(struct corral_agent *a, struct corral_agent_hook *out);
/* Hook id, handed out by next_hook, completed at now_ms: err 0 when it
 * succeeded, else the host's code (an exit status, CORRAL_ETIMEDOUT for
 * the host's timeout). Reconciles that partition. 0, or CORRAL_ENOTFOUND
 * for an id not in flight or not handed out yet (changing nothing but the
 * clock check of A2). */
int corral_agent_hook_done(struct corral_agent *a, uint64_t hook_id, int err, uint64_t now_ms);

/* Stops everything (A11); idempotent. */
void corral_agent_shutdown(struct corral_agent *a, uint64_t now_ms);
/* Shutting down, nothing held, no hook in flight: the host may exit
 * (after a last heartbeat for the reports, if it wants them delivered). */
bool corral_agent_shutdown_done(const struct corral_agent *a);

/* True when acting as primary of (resource, partition) (A4), with the
 * epoch in *epoch (epoch may be NULL). The answer is as of the last call:
 * a host that ticks at next_wakeup gets no answer past the lease end. */
bool corral_agent_acting(const struct corral_agent *a, uint32_t resource, uint32_t partition,
                         uint64_t *epoch);
/* Iterates the partitions acted as primary of, in (resource, partition)
 * order: start with *cursor = 0; each true return fills out and moves the
 * cursor; false at the end. A call that changes the agent in between may
 * make the walk skip or repeat partitions: finish it first. */
bool corral_agent_primary_next(const struct corral_agent *a, uint32_t *cursor,
                               struct corral_agent_primary *out);

/* The lease end (A1), 0 before any lease; valid while now < it. */
uint64_t corral_agent_lease_end(const struct corral_agent *a);
/* The assignment index of the desired set in force (0 before any). */
uint64_t corral_agent_index(const struct corral_agent *a);
void corral_agent_stats(const struct corral_agent *a, struct corral_agent_stats *out);

#endif
