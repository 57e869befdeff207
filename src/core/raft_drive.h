/* The driver: the one order in which a ready batch of the Raft core is
 * persisted, sent, applied to the state machine and advanced. The node
 * (src/runtime/node.c) and the simulator (tests/sim/sim_node.c) both run
 * it, through the callback table below, so the order the simulator proves
 * under faults is the order production uses. Pure: no I/O of its own.
 *
 * One batch at a time:
 *
 *     corral_drive_run(d)
 *       rd = corral_raft_ready()                   (no batch in flight)
 *       send rd's leader data messages, flush      D1
 *       apply rd.committed now if already durable  D3
 *       io.persist(rd, rd.must_sync, &done)        D2
 *       ... done, or later corral_drive_persisted(d)
 *       send the other messages                    D1
 *       load rd.snapshot into the state machine    D4
 *       apply rd.committed (unless done above)     D3, D5
 *       io.batch_done(rd)                          (reads, soft state)
 *       corral_raft_advance(rd)                    D6
 *       take a snapshot when due                   D7
 *     and again while the core has a batch ready.
 *
 * The invariants (assertions and tests cite them by number):
 *
 * D1  Before the batch is durable only the leader's AppendEntries and
 *     InstallSnapshot messages may leave (thesis section 10.2.1: the
 *     leader's disk write overlaps the followers'). This is safe because
 *     of R1 (raft.h): the leader counts its own copy toward a commit only
 *     at advance. Every other message (votes, acknowledgements, ReadIndex
 *     answers) may promise something about local durable state, so it
 *     leaves only once the batch is durable. The leader's data messages
 *     leave early only from a batch that must sync: with no fsync to
 *     overlap, they wait until the batch's committed entries are applied
 *     (their writers answered first).
 * D2  A batch is durable when io.persist says so. It must be fsynced when
 *     rd.must_sync (R3); a batch that only moves the commit hint may be
 *     written without its own fsync.
 * D3  Committed entries that were durable here before this batch (all
 *     below its first new entry, and no snapshot in the batch) are applied,
 *     and their writers answered, before the batch is persisted; any
 *     other committed entry is applied only after it.
 * D4  A snapshot received from the leader is loaded into the state machine
 *     only after it is durable, and before the batch's committed entries.
 * D5  The state machine's applied index steps by exactly one per applied
 *     entry, or jumps to the index of a loaded snapshot; it never goes back.
 *     Entries at or below it (covered by a snapshot) are skipped.
 * D6  corral_raft_advance runs once per batch, after the batch is durable,
 *     and no new batch is taken before it. A crash in between loses the
 *     batch: only D1 messages left, and the core never counted them.
 * D7  A snapshot is taken between batches, at the store's applied index,
 *     handed to the core (corral_raft_compact) and then to io.save_snapshot.
 *     Until it is on disk the old snapshot and the log there still describe
 *     the state, so a crash in between loses nothing (raft.h).
 *
 * The state machine is the cluster state (src/core/state.h), which holds
 * the config store. */
#ifndef CORRAL_CORE_RAFT_DRIVE_H
#define CORRAL_CORE_RAFT_DRIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/raft.h"
#include "core/state.h"

/* What the driver asks of its host. Every callback runs on the caller's
 * thread, inside corral_drive_run or corral_drive_persisted; none may call
 * back into the driver or free the core or the store. */
struct corral_drive_io {
    void *ud;
    /* Starts making rd durable: rd->snapshot when has_snapshot, then the
     * log truncated at rd->entries[0].index and rd->entries appended, then
     * rd->hard_state; fsync when must_sync (D2). Sets *done when durable on
     * return; otherwise the host calls corral_drive_persisted later (rd
     * stays valid until then). Returns 0 or a CORRAL_E* code, which is
     * fatal: the host must stop. */
    int (*persist)(void *ud, const struct corral_raft_ready *rd, bool must_sync, bool *done);
    /* Hands one message to the network (best effort; Raft retransmits). */
    void (*send)(void *ud, const struct corral_raft_msg *m);
    /* The messages sent so far must leave now, not at the host's next
     * chance: called after the early sends (D1), before persist, so the
     * followers' disk writes really overlap the leader's. May be NULL (a
     * host whose send is immediate). */
    void (*flush)(void *ud);
    /* Entry e was applied to the state; res is the state's result for a
     * NORMAL entry with a payload, NULL for no-op and conf entries. */
    void (*applied)(void *ud, const struct corral_raft_entry *e,
                    const struct corral_state_result *res);
    /* A snapshot from the leader replaced the store (D4). May be NULL. */
    void (*restored)(void *ud, const struct corral_raft_snapshot_meta *meta);
    /* The batch is applied: rd->reads and the soft state are the host's. */
    void (*batch_done)(void *ud, const struct corral_raft_ready *rd);
    /* Makes a snapshot the driver took durable (D7). 0, or a CORRAL_E*
     * code: CORRAL_EIO is fatal, anything else only skips this one. */
    int (*save_snapshot)(void *ud, const struct corral_raft_snapshot_meta *meta,
                         struct corral_rbuf *data);
};

struct corral_drive_config {
    /* Take a snapshot once this many entries were applied since the last
     * one (0 = never). */
    uint64_t snapshot_every;
    /* Log entries kept behind a snapshot, so a follower a little behind
     * catches up from the log rather than with the whole snapshot. */
    uint64_t snapshot_keep;
};

struct corral_drive_stats {
    uint64_t batches;
    uint64_t syncs;         /* batches persisted with must_sync */
    uint64_t early_sends;   /* D1 messages sent before their batch was durable */
    uint64_t early_applies; /* batches whose entries were applied before persisting (D3) */
    uint64_t snapshots_taken;
    uint64_t snapshots_loaded;
};

/* Lives in the host's memory (libuv style); fields are private but for
 * stats and snapshot_index, which the host may read. */
struct corral_drive {
    struct corral_raft *raft;  /* borrowed */
    struct corral_state *st;   /* borrowed */
    struct corral_drive_io io; /* copied */
    struct corral_drive_config cfg;
    bool in_flight;     /* rd taken, not yet advanced */
    bool applied_early; /* rd's committed entries were applied before persisting */
    bool failed;        /* a fatal error was returned; nothing runs any more */
    struct corral_raft_ready rd;
    uint64_t snapshot_index; /* of the latest snapshot on disk */
    struct corral_drive_stats stats;
};

/* raft and st must describe the same recovered state: st loaded from the
 * snapshot at snapshot_index (or empty when 0). */
void corral_drive_init(struct corral_drive *d, struct corral_raft *raft, struct corral_state *st,
                       const struct corral_drive_io *io, const struct corral_drive_config *cfg,
                       uint64_t snapshot_index);

/* Processes ready batches until the core has none, or one waits on its
 * persistence. Returns 0, or the fatal error a callback or the store gave
 * (the host stops; the driver does nothing afterwards). */
int corral_drive_run(struct corral_drive *d);

/* The io finished persisting the batch in flight (after *done was left
 * false). Finishes it and runs on. Returns as corral_drive_run. */
int corral_drive_persisted(struct corral_drive *d);

/* Drops the batch in flight without advancing (a crash, or shutdown):
 * call before freeing the core. */
void corral_drive_close(struct corral_drive *d);

#endif
