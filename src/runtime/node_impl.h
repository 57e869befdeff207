/* The node's insides, shared by node.c (the loop, storage, transport,
 * HTTP) and node_duty.c (the coordinator duty: core/coord.h hosted on the
 * loop). Nothing outside src/runtime/node*.c includes it. */
#ifndef CORRAL_RUNTIME_NODE_IMPL_H
#define CORRAL_RUNTIME_NODE_IMPL_H

#include <uv.h>

#include "core/coord.h"
#include "core/raft_drive.h"
#include "runtime/node.h"
#include "runtime/pending.h"
#include "runtime/storage.h"
#include "runtime/transport.h"

#define TICK_MS 10
#define SWEEP_MS 50
#define SNAPSHOT_KEEP_MAX 5000
#define ADDR_MAX (CORRAL_HOST_MAX + 8)
/* A node every peer refuses for another cluster id, or for a token none
 * of ours matches, at least this many times each over at least this long,
 * stops: it was started with another --peers list or --token-file than
 * they were, and retrying cannot help. A peer that is down, one that lets
 * it in, or one that accepts a token of ours keeps it running. */
#define REFUSED_EXIT_MS 10000
#define REFUSED_EXIT_COUNT 3

/* The leader's roster step runs this often (core/roster.h). */
#define ROSTER_TICK_MS 100

struct peer {
    uint64_t id;
    char name[CORRAL_NODE_NAME_MAX + 1];
    char cluster_addr[ADDR_MAX];
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    char advertised[ADDR_MAX]; /* the cluster address its handshake announced */
};

struct corral_node {
    struct corral_node_config cfg;
    struct corral_node_hooks hooks;
    uv_loop_t loop;
    uv_timer_t tick, sweep;
    uv_check_t check;
    uv_prepare_t prepare;
    uv_signal_t sigterm, sigint;
    struct corral_raft *raft;
    struct corral_storage *storage;
    struct corral_transport *transport;
    struct corral_http *http;
    struct corral_state *st;   /* the cluster state, the config store inside */
    struct corral_drive drive; /* the one ready/persist/send/apply order */
    struct corral_pending_table pending;

    uint32_t n_peers;
    struct peer peers[CORRAL_RAFT_NODES_MAX];
    char http_addr[ADDR_MAX];
    char cluster_addr[ADDR_MAX];

    uint64_t leader, term;
    uint64_t last_leader_contact_ms;
    bool stopping;
    bool batch_seen; /* a ready batch finished since the API's batch hook ran */
    int exit_code;

    uint64_t leader_changes, proposals;
    struct corral_hist fsync_hist;

    /* The leader's health (node_health.c). */
    struct corral_leader_health health;
    uint64_t last_tick_ms;
    uint64_t transfers[CORRAL_LH_REASON_MAX + 1];
    struct corral_hist loop_lag_hist;

    /* The roster (node_roster.c): the coords_index the peers were last
     * synced at, a roster write of the leader's in flight, its last step. */
    uint64_t roster_synced;
    uint32_t roster_conf_size; /* voters + learners at that sync */
    bool roster_busy;
    uint64_t roster_tick_ms;
    uint64_t leave_deadline_ms; /* --leave-on-stop: leaving since a SIGTERM, until this */

    /* The coordinator duty (node_duty.c). */
    struct corral_coord *coord;
    struct corral_node_duty_stats duty;
};

uint64_t node_now_ms(void);

/* node_health.c: the limits in place (at start). */
void node_health_init(struct corral_node *n);
/* node_health.c: an fsync of the WAL took ms. */
void node_health_fsync(struct corral_node *n, uint64_t ms);
/* node_health.c: on every tick, after the tick's batch: measures the
 * tick's lateness and feeds the leader's health; may start a transfer. */
void node_health_tick(struct corral_node *n, uint64_t now_ms);

/* node_roster.c: the roster entries a new cluster's log starts with
 * (indexes 2.., term 1, after the bootstrap configuration), one per
 * peer; the caller owns the payloads. */
int node_roster_bootstrap(struct corral_node *n, struct corral_raft_entry *out, uint32_t cap,
                          uint32_t *n_out);
/* node_roster.c: after applying: the peers follow the roster. */
void node_roster_sync(struct corral_node *n);
/* node_roster.c: a SIGTERM with --leave-on-stop: true when the node
 * should stop now (a follower, or nothing to wait for), false when it
 * leaves first (node_roster_tick stops it once gone or at the deadline). */
bool node_roster_leave(struct corral_node *n, uint64_t now_ms);
/* node_roster.c: at the end of a run, for corral_node_config.exit. */
void node_roster_exit(const struct corral_node *n, struct corral_node_exit *out);
/* node.c */
void node_stop(struct corral_node *n, int exit_code);
/* node.c: the known peer with that id, or NULL. */
struct peer *node_find_peer(struct corral_node *n, uint64_t id);
/* node_roster.c: --force-new-cluster, after the snapshot loaded into
 * n->st and before Raft starts: the log applied, every other coordinator
 * out of the roster, and a snapshot with this node as the only voter
 * written durably; st then describes it. */
int node_roster_force(struct corral_node *n, struct corral_storage_state *st);
/* node_roster.c: a peer's handshake announced its cluster address. */
void node_roster_peer_addr(struct corral_node *n, uint64_t id, const char *cluster_addr);
/* node_roster.c: on every tick: the leader's roster step. */
void node_roster_tick(struct corral_node *n, uint64_t now_ms);

/* node_duty.c: after every ready batch (leadership may have changed). */
void node_duty_batch(struct corral_node *n, const struct corral_raft_ready *rd);
/* node_duty.c: on every tick, the controller's next steps. */
void node_duty_tick(struct corral_node *n);

#endif
