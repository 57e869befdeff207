/* Internals of the Raft core shared by its files (raft.c: lifecycle,
 * elections and the ready batch; raft_replicate.c: log replication,
 * snapshots and commit; raft_ops.c: reads, membership, transfer). */
#ifndef CORRAL_CORE_RAFT_IMPL_H
#define CORRAL_CORE_RAFT_IMPL_H

#include "core/raft.h"
#include "core/raft_log.h"

/* Messages waiting for the next ready batch. The runtime drains them every
 * loop iteration; the bound only matters when it stalls, and dropping
 * messages is always safe in Raft (they are retried). */
#define RAFT_OUTBOX_MAX 8192

enum progress_state {
    PROGRESS_PROBE = 0,     /* one append in flight until we learn next */
    PROGRESS_REPLICATE = 1, /* pipelining, next is optimistic */
    PROGRESS_SNAPSHOT = 2,  /* sending a snapshot in chunks */
};

struct progress {
    uint64_t id;
    bool learner;
    uint8_t state; /* enum progress_state */
    bool probe_sent;
    bool recent_active; /* heard from since the last quorum check */
    bool vote_granted;
    bool vote_answered;
    uint64_t match;
    uint64_t next;
    uint64_t last_contact_ms;
    uint64_t hb_ack; /* highest heartbeat round acknowledged */
    /* Pipelined appends: the last index of each, oldest first. */
    uint32_t inflight_start;
    uint32_t inflight_count;
    uint64_t inflight[CORRAL_RAFT_INFLIGHT_MAX];
    /* Snapshot transfer: which snapshot, how many bytes acknowledged, and
     * when the last chunk went out (for resending). */
    uint64_t snap_index;
    uint64_t snap_acked;
    uint64_t snap_sent_ms;
};

/* A linearizable read waiting for its heartbeat round (section 6.4). */
struct pending_read {
    uint64_t id;
    uint64_t from; /* 0: local; else the follower that asked */
    uint64_t index;
    uint64_t round;
};

struct corral_raft {
    struct corral_raft_config cfg;
    uint64_t id;
    uint8_t role; /* enum corral_raft_role */
    uint64_t term;
    uint64_t vote;
    uint64_t leader;
    struct raft_log log;
    uint64_t commit;
    uint64_t applied; /* last index handed out in a ready batch */

    struct corral_raft_conf conf; /* the latest in the log (thesis 4.1) */
    uint64_t pending_conf_index;  /* no new change until this commits */
    uint32_t n_progress;
    struct progress progress[CORRAL_RAFT_NODES_MAX];

    uint64_t now_ms;
    uint64_t rng;
    uint64_t election_deadline_ms;
    uint64_t prevote_retry_ms; /* precandidate: when to ask refusers again */
    uint64_t heartbeat_deadline_ms;
    uint64_t quorum_check_ms;   /* leader: next check-quorum */
    uint64_t leader_contact_ms; /* follower: last message from a leader */

    uint64_t transfer_target;
    uint64_t transfer_deadline_ms;

    uint64_t hb_round;
    bool read_round_pending;
    bool append_pending; /* proposals since the last ready: one broadcast covers them */
    uint32_t n_reads;
    struct pending_read *reads; /* leader's queue, CORRAL_RAFT_READS_MAX */
    uint32_t n_reads_out;
    struct corral_raft_read *reads_out;

    uint32_t n_out;
    uint32_t out_cap;
    struct corral_raft_msg *out;

    /* Our latest snapshot, kept to send to followers. */
    struct corral_raft_snapshot_meta snap;
    struct corral_rbuf *snap_data;
    /* A snapshot being received from the leader. */
    struct corral_raft_snapshot_meta recv_meta;
    struct corral_rbuf *recv_data;
    uint64_t recv_bytes;
    /* A received snapshot the application has not been given yet. */
    bool snap_pending;

    struct corral_raft_hard_state hs_saved; /* last handed out */
    bool ready_inflight;
};

/* raft.c */
void raft_become_follower(struct corral_raft *r, uint64_t term, uint64_t leader);
void raft_send(struct corral_raft *r, struct corral_raft_msg *m);
struct progress *raft_progress(struct corral_raft *r, uint64_t id);
void raft_rebuild_progress(struct corral_raft *r);
uint32_t raft_quorum(const struct corral_raft *r);
uint64_t raft_rand(struct corral_raft *r);

/* raft_replicate.c */
void raft_send_append(struct corral_raft *r, struct progress *pr);
void raft_inflight_free_first(struct progress *pr);
void raft_broadcast_append(struct corral_raft *r);
void raft_broadcast_heartbeat(struct corral_raft *r, uint64_t round);
bool raft_maybe_commit(struct corral_raft *r);
void raft_commit_to(struct corral_raft *r, uint64_t index);
void raft_handle_append(struct corral_raft *r, const struct corral_raft_msg *m);
void raft_handle_append_resp(struct corral_raft *r, const struct corral_raft_msg *m);
void raft_handle_heartbeat(struct corral_raft *r, const struct corral_raft_msg *m);
void raft_handle_snapshot(struct corral_raft *r, const struct corral_raft_msg *m);
void raft_handle_snapshot_resp(struct corral_raft *r, const struct corral_raft_msg *m);
void raft_resend_snapshots(struct corral_raft *r);
int raft_append_local(struct corral_raft *r, uint8_t type, struct corral_rbuf *data);
void raft_conf_changed(struct corral_raft *r);
int raft_conf_rebuild(struct corral_raft *r);

/* raft_ops.c */
void raft_reads_fail_all(struct corral_raft *r);
void raft_handle_read_index(struct corral_raft *r, uint64_t from, uint64_t id);
void raft_handle_heartbeat_resp(struct corral_raft *r, const struct corral_raft_msg *m);
void raft_reads_check(struct corral_raft *r);
void raft_reads_flush(struct corral_raft *r);
void raft_read_out(struct corral_raft *r, uint64_t id, uint64_t index, bool ok);
void raft_transfer_check(struct corral_raft *r, struct progress *pr);
void raft_leader_committed(struct corral_raft *r);

#endif
