/* A coordinator node: the Raft core, the WAL, the TCP transport, the
 * config store and the HTTP server, driven by one libuv loop.
 *
 * The loop: a 10 ms timer ticks the core; the transport steps messages
 * into it; HTTP handlers propose writes and ask for reads. Before the loop
 * blocks in its poll (a uv_prepare) and after each poll (a uv_check) the
 * node runs the driver (core/raft_drive.h), which owns the order of each
 * ready batch: the leader's appends go out first (flushed to the sockets
 * at once, so the followers' fsyncs overlap the leader's), entries already
 * durable are applied, the batch is written to the WAL with one fsync
 * when it must sync (group commit: every proposal since the last batch
 * shares it), then the other messages go out, the rest is applied and
 * the requests it completes are answered (runtime/pending.h). After each
 * driver run the transport and the HTTP answers are flushed, so nothing
 * waits for the loop's next turn (a tick, up to 10 ms). The simulator
 * runs the same driver. */
#ifndef CORRAL_RUNTIME_NODE_H
#define CORRAL_RUNTIME_NODE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/coord.h"
#include "core/kv.h"
#include "core/leader_health.h"
#include "core/raft.h"
#include "core/state.h"
#include "runtime/http.h"
#include "runtime/metrics.h"
#include "util/token.h"

#define CORRAL_HOST_MAX 64

struct corral_node;

#define CORRAL_NODE_NAME_MAX 64

struct corral_node_peer_config {
    uint64_t id;
    char name[CORRAL_NODE_NAME_MAX + 1];
    char host[CORRAL_HOST_MAX]; /* numeric IPv4 or IPv6 */
    uint16_t port;
};

struct corral_node_exit;

struct corral_node_config {
    uint64_t id;
    uint64_t cluster_id;
    char name[CORRAL_NODE_NAME_MAX + 1];         /* this coordinator's */
    char cluster_name[CORRAL_NODE_NAME_MAX + 1]; /* part of the identity */
    /* The node joined a running cluster (id and cluster_id came from its
     * leader) or restarts from a data dir: never bootstrap. peers then
     * are only where to dial first; the roster in the cluster state says
     * the rest. */
    bool no_bootstrap;
    uint32_t voters; /* the leader promotes learners up to this (core/roster.h) */
    /* cluster_host is 0.0.0.0 or ::: the roster's address for this node
     * is kept (peers dial that), not replaced by the wildcard. */
    bool cluster_wildcard;
    const char *data_dir;
    char cluster_host[CORRAL_HOST_MAX];
    uint16_t cluster_port;
    char http_host[CORRAL_HOST_MAX];
    uint16_t http_port;
    uint32_t n_peers; /* every initial coordinator, this node included (or known ones) */
    struct corral_node_peer_config peers[CORRAL_RAFT_NODES_MAX];
    uint32_t election_timeout_ms;
    uint32_t heartbeat_ms;
    uint64_t snapshot_entries; /* take a snapshot after this many applied entries */
    uint32_t request_timeout_ms;
    uint32_t max_pending;
    struct corral_http_limits http;
    /* TLS on the HTTP API (tls.cert_pem NULL: plain HTTP). The texts must
     * outlive the node. Redirects and "leader" URLs then say https://:
     * every node of a cluster must use TLS or none (docs/operations.md). */
    struct corral_http_tls tls;
    /* Partition ownership: leases, liveness and the controller
     * (core/coord.h). max_election_timeout_ms is set by the node from
     * election_timeout_ms. */
    struct corral_coord_config coord;
    /* The cluster token (util/token.h; n 0: an open cluster): proven in
     * the transport handshake and required as a bearer token on mutating
     * HTTP requests, and on reads too with auth_reads. */
    struct corral_tokens tokens;
    bool auth_reads;
    /* --leave-on-stop: SIGTERM takes this coordinator out of the roster
     * before it stops, waiting up to CORRAL_NODE_LEAVE_WAIT_MS. A leader
     * proposes its own removal (its successor removes it from the
     * configuration) and stops once out. A follower cannot propose: it
     * calls ask_leave, on the loop thread, with the other coordinators'
     * HTTP addresses; the caller asks the leader over HTTP off the loop
     * thread while the node runs on, so that it still counts for the
     * quorum that commits its removal (with two voters there is none
     * without it), and sets *leave_answered once answered, which stops
     * the node at its next tick. Without ask_leave a follower stops at
     * once and exit->leave_needed tells the caller to ask after the run. */
    bool leave_on_stop;
    void (*ask_leave)(void *ud, const struct corral_node_exit *peers);
    void *ask_leave_ud;
    atomic_bool *leave_answered; /* set by the caller's thread; may be NULL */
    /* --force-new-cluster (docs/operations.md): the quorum is lost for
     * good; this node, with its data, becomes a cluster of one. */
    bool force_new_cluster;
    struct corral_node_exit *exit; /* filled at the end of the run; may be NULL */
    /* The leader's own health (core/leader_health.h): the limits and
     * degraded_ms come from the flags; the node sets contact_ms to the
     * election timeout and recover_ms and cooldown_ms to
     * CORRAL_LEADER_HEALTH_RECOVER_MS and CORRAL_LEADER_HEALTH_COOLDOWN_MS. */
    struct corral_leader_health_config leader_health;
};

#define CORRAL_NODE_LEAVE_WAIT_MS 10000

/* What a run leaves for its caller (corral_node_config.exit). */
struct corral_node_exit {
    bool leave_needed; /* --leave-on-stop on a follower: ask the leader */
    bool left;         /* out of the roster as this node last saw it */
    uint32_t n_peers;  /* the HTTP addresses of the other coordinators known */
    char peers_http[CORRAL_RAFT_NODES_MAX][256];
};

/* The API layer (src/api) plugs in here; every hook runs on the loop
 * thread, and every one but route may be NULL. */
struct corral_node_hooks {
    /* Every HTTP request. */
    void (*route)(struct corral_node *node, struct corral_http_request *req);
    /* Every entry applied, with the state machine's result (NULL for
     * no-op and configuration entries), right after it was applied. */
    void (*applied)(struct corral_node *node, const struct corral_raft_entry *e,
                    const struct corral_state_result *res);
    /* After the driver ran one or more ready batches (outside it, so the
     * hook may propose): blocking queries look again. */
    void (*batch_done)(struct corral_node *node);
    /* Every 50 ms: waits that ran out. */
    void (*sweep)(struct corral_node *node, uint64_t now_ms);
    /* The node stops: answer every request still held, before the HTTP
     * server goes (CORRAL_ESHUTDOWN). */
    void (*stopping)(struct corral_node *node);
    void *ud; /* for the hooks: corral_node_hooks_ud() */
};

/* Runs the node until SIGTERM or SIGINT. Returns 0 after a clean shutdown,
 * 1 when it could not start or hit a fatal error (logged). */
int corral_node_run(const struct corral_node_config *cfg, const struct corral_node_hooks *hooks);
void *corral_node_hooks_ud(const struct corral_node *n);

/* ---- For the API layer (all on the loop thread). ---- */

/* A write's outcome: err 0 with the state machine's result (a config
 * store write's in res->kv), or CORRAL_ENOTLEADER / CORRAL_ELOST (not
 * applied), CORRAL_ETIMEDOUT (unknown), CORRAL_ESHUTDOWN (unknown),
 * CORRAL_ENOMEM. */
typedef void (*corral_node_write_cb)(void *ctx, int err, const struct corral_state_result *res);
/* Proposes a config store command. Returns 0 (cb runs later, exactly
 * once), or at once CORRAL_ENOTLEADER, CORRAL_EBUSY (too many pending),
 * CORRAL_ETOOBIG, CORRAL_ESHUTDOWN, CORRAL_ENOMEM (cb never runs). */
int corral_node_write(struct corral_node *n, const struct corral_kv_cmd *cmd,
                      corral_node_write_cb cb, void *ctx);
/* Proposes a cluster state command, as corral_node_write. cb NULL: nobody
 * waits (the controller's steps); the index still counts toward the lease
 * index (coord.h K2). CORRAL_EINVAL when the command does not encode. */
int corral_node_propose(struct corral_node *n, const struct corral_state_cmd *c,
                        corral_node_write_cb cb, void *ctx);

/* ---- Leadership transfer (node_health.c). ---- */

/* An operator asks this node, the leader, to hand leadership to target
 * (0: the most caught-up voter in contact, leader_health.h H4). Returns
 * 0 with *refusal CORRAL_LT_OK and *to the node it hands to (the outcome
 * shows in corral_node_raft_status later: the transfer is abandoned after
 * an election timeout), 0 with another *refusal when it cannot start, or
 * CORRAL_ENOTLEADER, CORRAL_ESHUTDOWN. */
int corral_node_transfer(struct corral_node *n, uint64_t target, uint64_t *to,
                         enum corral_leader_transfer_refusal *refusal);

/* ---- Partition ownership (node_duty.c), leader side. ---- */

/* A member's heartbeat arrived now (coord.h corral_coord_heartbeat). */
void corral_node_heartbeat(struct corral_node *n, uint32_t member, uint64_t member_index,
                           struct corral_coord_answer *ans);
/* A progress report from member: the command it leads to is proposed
 * (nobody waits for it). */
void corral_node_report(struct corral_node *n, uint32_t member, const struct corral_progress *p);
/* The duty: leading or not, its liveness view and controller. */
const struct corral_coord *corral_node_coord(const struct corral_node *n);

struct corral_node_duty_stats {
    uint64_t heartbeats;         /* answered with a lease */
    uint64_t heartbeats_refused; /* not leader, unknown or inactive member */
    uint64_t reports;            /* progress entries handed to the controller */
    uint64_t evaluations;        /* controller evaluations that ran */
    uint64_t steps_proposed;     /* commands the controller proposed */
    uint64_t steps_failed;       /* proposals refused at once */
    uint64_t deaths, clears, grants, releases, copies, drops; /* ops proposed */
    struct corral_hist eval_latency;                          /* seconds per evaluation */
    struct corral_controller_stats last;                      /* the last evaluation's */
};
void corral_node_duty_stats(const struct corral_node *n, struct corral_node_duty_stats *out);

/* A linearizable read: cb(ctx, 0) once the store may be read (ReadIndex
 * confirmed and applied), or an error as for writes. */
typedef void (*corral_node_read_cb)(void *ctx, int err);
int corral_node_read(struct corral_node *n, corral_node_read_cb cb, void *ctx);

const struct corral_kv *corral_node_kv(const struct corral_node *n);
/* The cluster state (members, resources, assignments); read-only. */
const struct corral_state *corral_node_state(const struct corral_node *n);

struct corral_node_info {
    uint64_t id;
    uint64_t cluster_id;
    const char *http_addr;    /* "host:port" */
    const char *cluster_addr; /* "host:port" */
    uint64_t leader;
    const char *leader_http; /* NULL when unknown */
    /* The HTTP API is served over TLS: URLs to this cluster's nodes are
     * https:// (every node is taken to do the same). */
    bool tls;
    /* A follower that has not heard from that leader for longer than an
     * election timeout (a frozen or cut-off leader it still names). */
    bool leader_stale;
    bool ready;
    const char *not_ready_reason;
};
void corral_node_info(struct corral_node *n, struct corral_node_info *info);
const struct corral_node_config *corral_node_config(const struct corral_node *n);

/* The Raft status and per-peer details for /v1/status. */
void corral_node_raft_status(const struct corral_node *n, struct corral_raft_status *s);
/* Now on the monotonic clock the node feeds to Raft, in ms: the times in
 * corral_raft_status (progress[].last_contact_ms) are readings of it, only
 * meaningful as a difference from this. */
uint64_t corral_node_clock_ms(const struct corral_node *n);
struct corral_node_peer_info {
    uint64_t id;
    const char *cluster_addr;
    const char *http; /* NULL until the peer's handshake told us */
    bool connected;
    uint64_t dropped_msgs;
};
uint32_t corral_node_peers(const struct corral_node *n, struct corral_node_peer_info *out,
                           uint32_t cap);

/* The node's numbers for /metrics, one snapshot (src/api formats them).
 * Counters count since the process started. */
struct corral_node_stats {
    uint64_t term;
    bool is_leader;
    uint64_t leader_changes;
    uint64_t proposals;        /* writes proposed by this node as leader */
    uint64_t proposals_failed; /* lost, timed out or cut short */
    uint64_t reads_served;     /* linearizable reads */
    uint64_t commit_index, applied_index;
    uint64_t snapshot_index; /* of the latest snapshot */
    uint64_t snapshots;      /* taken by this node */
    uint64_t kv_keys;
    uint64_t pending_requests; /* waiting on Raft */
    uint64_t wal_syncs, wal_bytes_written;
    struct corral_hist commit_latency; /* leader: proposal to applied, per write */
    struct corral_hist fsync_latency;  /* one WAL fsync */
    /* Leader only (n_lag 0 elsewhere): the entries each other node of
     * the Raft progress lacks (last index - match index), in its order. */
    uint32_t n_lag;
    struct {
        uint64_t peer;
        uint64_t entries;
    } lag[CORRAL_RAFT_NODES_MAX];
    /* Every other configured node, as corral_node_peers gives them. */
    uint32_t n_peers;
    struct corral_node_peer_info peers[CORRAL_RAFT_NODES_MAX];
    struct corral_http_stats http; /* zero while the server is not running */
    /* Leadership transfers this node started as leader, by reason
     * (enum corral_leader_health_reason; [0] unused). */
    uint64_t transfers[CORRAL_LH_REASON_MAX + 1];
    bool leader_degraded;        /* leader_health.h H2, on the leader */
    struct corral_hist loop_lag; /* seconds each tick fired late */
};
void corral_node_stats(const struct corral_node *n, struct corral_node_stats *st);

#endif
