/* Raft consensus as a pure step function: events go in (ticks, messages,
 * persistence completions, proposals, reads, configuration changes), and a
 * batch of actions comes out (state to persist, messages to send, entries
 * to apply). No I/O, no clock, no randomness of its own: the time arrives
 * with every tick and the randomness from a seed in the configuration.
 *
 * The shape follows etcd/raft; the rules follow the Raft paper (Ongaro and
 * Ousterhout 2014) and Ongaro's thesis, cited by section where applied.
 *
 * Driving it: the node and the simulator do not call _ready/_advance
 * themselves; both run the one driver in core/raft_drive.h, which owns the
 * order (early sends, persistence, applying, advancing; its invariants are
 * D1-D7). In outline:
 *
 *     corral_raft_tick / _step / _propose / ...      any number of times
 *     if (corral_raft_has_ready(r)) {
 *         corral_raft_ready(r, &rd);
 *         send rd's AppendEntries/InstallSnapshot  (may precede the fsync)
 *         persist rd.snapshot, rd.entries, rd.hard_state; fsync if rd.must_sync
 *         send the other messages               (only after the fsync)
 *         apply rd.committed, serve rd.reads once applied;
 *         corral_raft_advance(r, &rd);          (the persistence completion)
 *         corral_raft_ready_free(&rd);
 *     }
 *
 * The core's side of the contract (tests, the driver and assertions cite
 * these numbers):
 *
 * R1  A leader counts its own copy of an entry toward a commit only once
 *     the batch that held it was advanced (persisted); a follower's
 *     acknowledgement of entries travels in the batch that holds them, so
 *     it leaves only once they are durable (D1). Together: committed means
 *     on a majority's disks (DESIGN I2). This is what lets the leader send
 *     its appends before its own fsync (thesis section 10.2.1).
 * R2  The term and the commit index never decrease; applied <= commit.
 * R3  rd.must_sync is set when the batch holds entries, a snapshot, or a
 *     term or vote different from the last batch's. Term and vote must be
 *     durable before any message of the batch that depends on them leaves;
 *     the commit index is a hint, safe to lose (a restarted node learns it
 *     again), so a batch that moves only it needs no fsync of its own.
 * R4  One batch at a time: _ready is not called again before _advance;
 *     events may keep arriving in between (the fsync may take a while). A
 *     crash before _advance loses the batch, which is safe by R1: only
 *     leader data left early, and the core never counted it.
 * R5  An entry commits by counting replicas only if it is of the current
 *     term (section 5.4.2, Figure 8); earlier entries commit with it.
 *
 * Ownership: every pointer in a ready batch is owned by the batch (entry
 * payloads are reference-counted and shared, never mutated) and stays valid
 * until corral_raft_ready_free, whatever the core does meanwhile. Messages
 * given to corral_raft_step are borrowed: the core takes its own references
 * to any payload it keeps. */
#ifndef CORRAL_CORE_RAFT_H
#define CORRAL_CORE_RAFT_H

#include <stdbool.h>
#include <stdint.h>

#include "util/rbuf.h"

/* Limits. Each has a reason:
 * - NODES_MAX: voters plus learners. Clusters run 1-7 voters; 16 leaves
 *   room for learners catching up during replacements, and keeps the
 *   per-peer arrays small enough to scan linearly.
 * - ENTRY_BYTES_MAX: one entry is one command on the cluster state; the
 *   config store caps values far below this. Bounds decoder allocations.
 * - MSG_ENTRIES_MAX: entries in one AppendEntries; bounds message size
 *   together with the configured byte budget.
 * - SNAPSHOT_BYTES_MAX: the cluster state is held in memory; a snapshot
 *   larger than this means something is wrong, and a hostile or corrupt
 *   size field must not make a node allocate gigabytes.
 * - CHUNK_BYTES_MAX: one InstallSnapshot chunk; bounds message size.
 * - INFLIGHT_MAX: pipelined AppendEntries per follower.
 * - MSG_PAYLOAD_BYTES_MAX: the most max_msg_bytes may be. A batch may
 *   overshoot the budget by one entry, so a message stays within
 *   4 MiB + one largest entry + per-entry overhead, below the codec's
 *   8 MiB frame limit (CORRAL_CODEC_MSG_BYTES_MAX). */
#define CORRAL_RAFT_NODES_MAX 16
#define CORRAL_RAFT_ENTRY_BYTES_MAX (1u << 20)
#define CORRAL_RAFT_MSG_ENTRIES_MAX 1024
#define CORRAL_RAFT_SNAPSHOT_BYTES_MAX (256u << 20)
#define CORRAL_RAFT_CHUNK_BYTES_MAX (1u << 20)
#define CORRAL_RAFT_INFLIGHT_MAX 256
#define CORRAL_RAFT_READS_MAX 4096
#define CORRAL_RAFT_MSG_PAYLOAD_BYTES_MAX (4u << 20)

enum corral_raft_role {
    CORRAL_RAFT_FOLLOWER = 0,
    CORRAL_RAFT_PRECANDIDATE = 1,
    CORRAL_RAFT_CANDIDATE = 2,
    CORRAL_RAFT_LEADER = 3,
};

enum corral_raft_entry_type {
    CORRAL_RAFT_ENTRY_NORMAL = 0, /* an application command */
    CORRAL_RAFT_ENTRY_NOOP = 1,   /* appended by a new leader (section 5.4.2) */
    CORRAL_RAFT_ENTRY_CONF = 2,   /* a membership change, see conf_change */
};
#define CORRAL_RAFT_ENTRY_TYPE_MAX 2

struct corral_raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type;             /* enum corral_raft_entry_type */
    struct corral_rbuf *data; /* payload, may be NULL when empty */
};

/* Membership: voters and non-voting learners. A node is in at most one
 * list. Ids are nonzero. */
struct corral_raft_conf {
    uint32_t n_voters;
    uint32_t n_learners;
    uint64_t voters[CORRAL_RAFT_NODES_MAX];
    uint64_t learners[CORRAL_RAFT_NODES_MAX];
};

/* The payload of a CONF entry is either one single-server change (thesis
 * section 4.1): 9 bytes, the op then the node id, little endian; or, only
 * in the bootstrap entry, a whole configuration: op CORRAL_RAFT_CONF_SET,
 * u8 n_voters, u8 n_learners, then the ids as u64. */
enum corral_raft_conf_op {
    CORRAL_RAFT_CONF_SET = 0, /* bootstrap: the whole configuration */
    CORRAL_RAFT_ADD_LEARNER = 1,
    CORRAL_RAFT_PROMOTE = 2, /* learner -> voter */
    CORRAL_RAFT_REMOVE = 3,  /* voter or learner -> gone */
};
#define CORRAL_RAFT_CONF_CHANGE_BYTES 9

/* What must survive a crash besides the log (Figure 2). */
struct corral_raft_hard_state {
    uint64_t term;
    uint64_t vote;   /* 0 = none */
    uint64_t commit; /* persisted as a hint; safe to lose */
};

struct corral_raft_snapshot_meta {
    uint64_t index; /* last entry covered */
    uint64_t term;  /* term of that entry */
    struct corral_raft_conf conf;
};

enum corral_raft_msg_type {
    CORRAL_RAFT_MSG_PREVOTE = 1, /* thesis section 9.6 */
    CORRAL_RAFT_MSG_PREVOTE_RESP = 2,
    CORRAL_RAFT_MSG_VOTE = 3, /* RequestVote */
    CORRAL_RAFT_MSG_VOTE_RESP = 4,
    CORRAL_RAFT_MSG_APPEND = 5, /* AppendEntries */
    CORRAL_RAFT_MSG_APPEND_RESP = 6,
    CORRAL_RAFT_MSG_HEARTBEAT = 7, /* AppendEntries without entries */
    CORRAL_RAFT_MSG_HEARTBEAT_RESP = 8,
    CORRAL_RAFT_MSG_SNAPSHOT = 9, /* one InstallSnapshot chunk */
    CORRAL_RAFT_MSG_SNAPSHOT_RESP = 10,
    CORRAL_RAFT_MSG_TIMEOUT_NOW = 11, /* leadership transfer, thesis 3.10 */
    CORRAL_RAFT_MSG_READ_INDEX = 12,  /* follower asks the leader */
    CORRAL_RAFT_MSG_READ_INDEX_RESP = 13,
};
#define CORRAL_RAFT_MSG_TYPE_MAX 13

/* One message. Which fields matter depends on the type:
 * PREVOTE/VOTE:        term (proposed), index/log_term = last log entry,
 *                      flags & FLAG_TRANSFER when sent after TimeoutNow.
 * *_RESP of votes:     term, reject.
 * APPEND:              index/log_term = entry preceding the batch, commit,
 *                      entries.
 * APPEND_RESP:         index = last index matched (accept) or the rejected
 *                      index (reject); hint_index/hint_term for fast
 *                      backtracking: the follower's last index when shorter,
 *                      else the first index of the conflicting term.
 * HEARTBEAT:           commit, context = leader's heartbeat round.
 * HEARTBEAT_RESP:      context echoed.
 * SNAPSHOT:            snapshot (meta), offset, chunk, flags & FLAG_DONE on
 *                      the last chunk, size = total bytes.
 * SNAPSHOT_RESP:       index = snapshot index, offset = bytes now held
 *                      (the next expected offset), reject when the follower
 *                      cannot continue, flags & FLAG_DONE when installed.
 * READ_INDEX:          context (the requester's read id).
 * READ_INDEX_RESP:     context, index = read index, reject when the leader
 *                      could not serve it. */
#define CORRAL_RAFT_FLAG_TRANSFER 1u
#define CORRAL_RAFT_FLAG_DONE 2u

struct corral_raft_msg {
    uint8_t type;
    uint8_t reject;
    uint16_t flags;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t index;
    uint64_t log_term;
    uint64_t commit;
    uint64_t hint_index;
    uint64_t hint_term;
    uint64_t context;
    uint32_t n_entries;
    struct corral_raft_entry *entries; /* n_entries, owned by the holder */
    struct corral_raft_snapshot_meta snapshot;
    uint64_t size;
    uint64_t offset;
    struct corral_rbuf *chunk; /* may be NULL */
};

/* A linearizable read is ready: once the state machine has applied index,
 * serve the read identified by id (thesis section 6.4). */
struct corral_raft_read {
    uint64_t id;
    uint64_t index;
    bool ok; /* false: leadership was lost, retry elsewhere */
};

struct corral_raft_config {
    uint64_t id;                  /* this node, nonzero */
    uint32_t election_timeout_ms; /* base; randomized in [t, 2t) */
    uint32_t heartbeat_ms;
    uint64_t seed;            /* randomness for election timeouts */
    bool pre_vote;            /* default on */
    bool check_quorum;        /* default on */
    uint32_t max_inflight;    /* pipelined appends per peer */
    uint32_t max_msg_entries; /* per AppendEntries */
    uint32_t max_msg_bytes;   /* payload budget per AppendEntries */
    uint32_t snapshot_chunk_bytes;
    uint32_t max_uncommitted; /* proposals refused past this many */
};

/* The timing defaults, in one place: corral_raft_config_default uses them,
 * and so do the flag defaults and help of `corral server run`. */
#define CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT 300
#define CORRAL_RAFT_HEARTBEAT_MS_DEFAULT 50

/* Fills c with the defaults (election 300 ms -> 300-600 ms randomized,
 * heartbeat 50 ms, pre-vote and check-quorum on). These are the product's
 * defaults: `corral server run` takes its flag defaults from here, and the
 * simulator runs them. */
void corral_raft_config_default(struct corral_raft_config *c, uint64_t id);

/* The batch of actions. See the driving loop at the top. */
struct corral_raft_ready {
    /* The batch must be fsynced before it counts as persisted: it holds
     * entries, a snapshot, or a new term or vote (R3). A batch that only
     * moves the commit hint may be written without an fsync. */
    bool must_sync;

    bool has_hard_state;
    struct corral_raft_hard_state hard_state;

    /* A snapshot received from the leader: persist it, load it into the
     * state machine, and drop the log it covers. NULL data when none. */
    bool has_snapshot;
    struct corral_raft_snapshot_meta snapshot;
    struct corral_rbuf *snapshot_data;

    /* Entries to append. The log on disk is truncated from entries[0].index
     * first (entries after it there are stale). */
    uint32_t n_entries;
    struct corral_raft_entry *entries;

    uint32_t n_msgs;
    struct corral_raft_msg *msgs;

    /* Committed entries in order, to apply after persisting. */
    uint32_t n_committed;
    struct corral_raft_entry *committed;

    uint32_t n_reads;
    struct corral_raft_read *reads;

    /* Soft state, for information: it is not persisted. */
    enum corral_raft_role role;
    uint64_t leader;
    uint64_t term;
};

struct corral_raft; /* opaque */

/* Creates a node. The persisted state from a previous run (all may be
 * empty on first boot): its hard state, its latest snapshot meta (index 0
 * when none) and the entries after the snapshot in order. The
 * configuration comes from the snapshot, then from CONF entries.
 *
 * A brand new cluster: every initial voter persists, before its first
 * start, the same bootstrap entry (corral_raft_bootstrap) and the hard
 * state {term 1, vote 0, commit 1}. Being identical everywhere it is
 * committed by construction, and it reaches nodes added later through
 * replication like any entry, so they learn the whole membership. A node
 * that joins an existing cluster starts with nothing at all: no
 * configuration, so it never campaigns until the leader's log adds it.
 *
 * snap_data is the snapshot's bytes (NULL when index is 0): the core takes
 * a reference, to send it to followers that are too far behind. The core
 * copies what else it needs; the caller keeps ownership of its arguments.
 * Returns 0 or CORRAL_EINVAL/CORRAL_ENOMEM. */
int corral_raft_new(const struct corral_raft_config *config,
                    const struct corral_raft_hard_state *hs,
                    const struct corral_raft_snapshot_meta *snap, struct corral_rbuf *snap_data,
                    const struct corral_raft_entry *entries, uint32_t n_entries,
                    struct corral_raft **out);
void corral_raft_free(struct corral_raft *r);

/* Time passes: now_ms is a monotonic time from the node's own clock. */
void corral_raft_tick(struct corral_raft *r, uint64_t now_ms);

/* A message arrived from the network. Invalid messages (unknown type,
 * wrong recipient, out-of-range fields) are dropped: returns CORRAL_EINVAL. */
int corral_raft_step(struct corral_raft *r, const struct corral_raft_msg *m);

/* Leader only. Appends a command; *index receives its log index (the
 * caller learns the outcome when that index is applied: if the entry there
 * is not this one, the proposal was lost). Takes a reference to data. */
int corral_raft_propose(struct corral_raft *r, struct corral_rbuf *data, uint64_t *index);

/* Leader only. One membership change at a time (thesis section 4.1):
 * CORRAL_EBUSY while a previous one is uncommitted. Promoting a learner
 * that is not caught up (corral_raft_caught_up) is CORRAL_EBUSY too. */
int corral_raft_change_conf(struct corral_raft *r, enum corral_raft_conf_op op, uint64_t node,
                            uint64_t *index);

/* Asks for a linearizable read with the caller's id; the answer comes
 * back in a ready batch. On a follower, the request goes to the leader. */
int corral_raft_read_index(struct corral_raft *r, uint64_t id);

/* Leader only: hand leadership to target (thesis section 3.10). */
int corral_raft_transfer(struct corral_raft *r, uint64_t target);

/* The application took a snapshot of its state at index (<= applied); the
 * core keeps data (one more reference) to send to followers that are too
 * far behind, forgets log entries up to index - keep_entries, and fills
 * *meta (term and configuration at index) for the application to persist
 * with the data. Until that is on disk the old snapshot and the log there
 * still describe the state, so a crash in between loses nothing. */
int corral_raft_compact(struct corral_raft *r, uint64_t index, struct corral_rbuf *data,
                        uint64_t keep_entries, struct corral_raft_snapshot_meta *meta);

bool corral_raft_has_ready(const struct corral_raft *r);
void corral_raft_ready(struct corral_raft *r, struct corral_raft_ready *rd);
void corral_raft_advance(struct corral_raft *r, const struct corral_raft_ready *rd);
void corral_raft_ready_free(struct corral_raft_ready *rd);

/* Frees what a message owns (entries, chunk); used by decoders. */
void corral_raft_msg_clear(struct corral_raft_msg *m);

/* Read-only views for status pages, tests and the simulator's checks. */
struct corral_raft_status {
    uint64_t id;
    enum corral_raft_role role;
    uint64_t term;
    uint64_t vote;
    uint64_t leader;
    uint64_t commit;
    uint64_t applied;
    uint64_t first_index; /* first entry held in memory */
    uint64_t last_index;
    uint64_t snapshot_index;
    uint64_t stable_index; /* persisted (last advance) */
    struct corral_raft_conf conf;
    /* Leader only (0/false elsewhere): voters heard from within two
     * election timeouts of the last tick, the leader included, and whether
     * they make a quorum (what /health/ready reports). */
    uint32_t voters_in_contact;
    bool quorum_in_contact;
    /* Leader only: the node a leadership transfer is handing to, 0 when
     * none runs (corral_raft_transfer; abandoned after an election
     * timeout). */
    uint64_t transfer_target;
    /* Leader only: the index of its last configuration change; one is
     * in flight while this is above commit (corral_raft_change_conf
     * answers CORRAL_EBUSY meanwhile). */
    uint64_t pending_conf_index;
    uint32_t n_progress;
    struct {
        uint64_t id;
        uint64_t match;
        uint64_t next;
        uint64_t last_contact_ms;
        bool learner;
    } progress[CORRAL_RAFT_NODES_MAX];
};
void corral_raft_status(const struct corral_raft *r, struct corral_raft_status *s);

/* The entry at index held in memory, or NULL (compacted, or past the end). */
const struct corral_raft_entry *corral_raft_entry_at(const struct corral_raft *r, uint64_t index);

const char *corral_raft_role_name(enum corral_raft_role role);
const char *corral_raft_msg_type_name(uint8_t type);

/* Membership helpers, also used by the codec and the simulator. */
bool corral_raft_conf_is_voter(const struct corral_raft_conf *c, uint64_t id);

/* Whether a learner whose match index is match is caught up enough to
 * become a voter of a leader at commit: it holds entries (no snapshot
 * left to send) and trails the commit index by at most
 * CORRAL_RAFT_PROMOTE_LAG_MAX entries. A voter far behind would stall
 * commits (thesis 4.2.1); one a few entries behind costs a round trip.
 * Not match >= commit: under a steady write load a learner trails by the
 * entries of one round trip at every instant, most of all behind a single
 * voter, whose commit moves at its own fsync, and was never promoted. */
#define CORRAL_RAFT_PROMOTE_LAG_MAX 64u
bool corral_raft_caught_up(uint64_t match, uint64_t commit);
bool corral_raft_conf_is_learner(const struct corral_raft_conf *c, uint64_t id);
int corral_raft_conf_apply(struct corral_raft_conf *c, const struct corral_rbuf *change);
int corral_raft_conf_change_decode(const struct corral_rbuf *change, uint8_t *op, uint64_t *node);
struct corral_rbuf *corral_raft_conf_change_encode(uint8_t op, uint64_t node);

/* Fills *entry (index 1, term 1, a CONF entry setting conf; the caller
 * owns the payload reference) for a new cluster whose voters are conf's. */
int corral_raft_bootstrap(const struct corral_raft_conf *conf, struct corral_raft_entry *entry);
bool corral_raft_conf_valid(const struct corral_raft_conf *c);

#endif
