/* A coordinator node: the Raft core, the WAL, the TCP transport, the
 * config store and the HTTP server, driven by one libuv loop.
 *
 * The loop: a 10 ms timer ticks the core; the transport steps messages
 * into it; HTTP handlers propose writes and ask for reads. After every
 * loop iteration (a uv_check) the node runs the driver (core/raft_drive.h),
 * which owns the order of each ready batch: the leader's appends go out
 * first, entries already durable are applied, the batch is written to the
 * WAL with one fsync when it must sync (group commit: every proposal since
 * the last batch shares it), then the other messages go out, the rest is
 * applied and the requests it completes are answered (runtime/pending.h).
 * The simulator runs the same driver. */
#ifndef CORRAL_RUNTIME_NODE_H
#define CORRAL_RUNTIME_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kv.h"
#include "core/raft.h"
#include "core/state.h"
#include "runtime/http.h"
#include "runtime/metrics.h"

#define CORRAL_HOST_MAX 64

struct corral_node;

struct corral_node_peer_config {
    uint64_t id;
    char host[CORRAL_HOST_MAX]; /* numeric IPv4 or IPv6 */
    uint16_t port;
};

struct corral_node_config {
    uint64_t id;
    uint64_t cluster_id;
    const char *data_dir;
    char cluster_host[CORRAL_HOST_MAX];
    uint16_t cluster_port;
    char http_host[CORRAL_HOST_MAX];
    uint16_t http_port;
    uint32_t n_peers; /* every initial coordinator, this node included */
    struct corral_node_peer_config peers[CORRAL_RAFT_NODES_MAX];
    uint32_t election_timeout_ms;
    uint32_t heartbeat_ms;
    uint64_t snapshot_entries; /* take a snapshot after this many applied entries */
    uint32_t request_timeout_ms;
    uint32_t max_pending;
    struct corral_http_limits http;
};

/* The HTTP routes (src/api) plug in here: the node calls it for every
 * request. */
typedef void (*corral_node_router)(struct corral_node *node, struct corral_http_request *req);

/* Runs the node until SIGTERM or SIGINT. Returns 0 after a clean shutdown,
 * 1 when it could not start or hit a fatal error (logged). */
int corral_node_run(const struct corral_node_config *cfg, corral_node_router router);

/* ---- For the API layer (all on the loop thread). ---- */

/* A write's outcome: err 0 with the store's result, or CORRAL_ENOTLEADER /
 * CORRAL_ELOST (not applied), CORRAL_ETIMEDOUT (unknown), CORRAL_ESHUTDOWN
 * (unknown), CORRAL_ENOMEM. */
typedef void (*corral_node_write_cb)(void *ctx, int err, const struct corral_kv_result *res);
/* Proposes cmd. Returns 0 (cb runs later, exactly once), or at once
 * CORRAL_ENOTLEADER, CORRAL_EBUSY (too many pending), CORRAL_ETOOBIG,
 * CORRAL_ESHUTDOWN, CORRAL_ENOMEM (cb never runs). */
int corral_node_write(struct corral_node *n, const struct corral_kv_cmd *cmd,
                      corral_node_write_cb cb, void *ctx);

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
};
void corral_node_stats(const struct corral_node *n, struct corral_node_stats *st);

#endif
