/* Internals shared by the simulator's files. */
#ifndef CORRAL_SIM_IMPL_H
#define CORRAL_SIM_IMPL_H

#include <stddef.h>
#include <stdio.h>

#include "core/agent.h"
#include "core/controller.h"
#include "core/coord.h"
#include "core/kv.h"
#include "core/leader_health.h"
#include "core/liveness.h"
#include "core/raft_drive.h"
#include "core/state.h"
#include "lincheck.h"
#include "sim.h"

/* After the fault phase: how long the healed cluster runs, and within how
 * long it must have elected a leader and served every client. */
#define SIM_SETTLE_MS 12000
#define SIM_LIVENESS_MS 8000
#define SIM_CLIENT_TIMEOUT_MS 1500
/* Within this long after the heal the configuration follows the roster
 * (sim_roster.c). */
#define SIM_ROSTER_SETTLE_MS SIM_LIVENESS_MS
#define SIM_TICK_MS 5
/* The leader health step's limits here (the server's defaults are 250 ms
 * and 3000 ms: docs/operations.md). The sim's healthy fsyncs take at most
 * about 25 ms on a node's clock; a slow disk's take 150-400 ms. The loop
 * lag and the apply backlog keep the server's limits: a simulated node's
 * tick is never late, and it applies in the batch that commits. */
#define SIM_HEALTH_MAX_FSYNC_MS 100
#define SIM_HEALTH_MAX_LOOP_LAG_MS 250
#define SIM_HEALTH_MAX_APPLY_BACKLOG 10000
#define SIM_HEALTH_DEGRADED_MS 1000
/* A slow disk (sim_world.c): how long it lasts and what each fsync takes. */
#define SIM_SLOW_DISK_MIN_MS 1000
#define SIM_SLOW_DISK_MAX_MS 4000
/* More batches than this at one simulated instant is a livelock (sim_node.c). */
#define SIM_BATCHES_PER_INSTANT_MAX 10000
#define SIM_SLOW_FSYNC_MIN_US 150000
#define SIM_SLOW_FSYNC_MAX_US 400000
#define SIM_PENDING_MAX 512
/* Ownership: simulated resource ids and partitions tracked by the checks,
 * what one worker may act as, one view, the reports one heartbeat carries,
 * parked watches per node, and how long a watch waits. */
#define SIM_RESOURCE_IDS_MAX 32
#define SIM_PARTITIONS_MAX 64
#define SIM_ACTING_MAX 256
#define SIM_VIEW_MAX 256
#define SIM_REPORTS_MAX 64
#define SIM_WATCHES_MAX 16
#define SIM_WATCH_WAIT_US 1000000ull
#define SIM_EVAL_MS 10
#define SIM_BEATS_KEPT 64 /* as CORRAL_AGENT_HEARTBEATS_MAX */
#define SIM_UNCOMMITTED_MAX 32
/* Search steps for the linearizability check of one key: histories here
 * need up to ~10^7; this bounds a pathological one to a few seconds. */
#define SIM_LINCHECK_BUDGET 300000000ull

enum sim_event_type {
    EV_TICK = 1,
    EV_DELIVER,
    EV_PERSIST,
    EV_CLIENT_NEXT,
    EV_CLIENT_ARRIVE,
    EV_CLIENT_REPLY,
    EV_CLIENT_TIMEOUT,
    EV_CRASH,
    EV_CRASH_NODE,
    EV_RESTART,
    EV_PARTITION,
    EV_PARTITION_END,
    EV_CONF,
    EV_HEAL,
    EV_W_BEAT,      /* a worker's heartbeat timer */
    EV_W_WATCH,     /* a worker's watch (re)request */
    EV_W_WAKE,      /* the agent asked to be ticked now */
    EV_W_HOOK,      /* a hook the worker ran completes */
    EV_W_RESUME,    /* a paused worker runs again */
    EV_W_TO_NODE,   /* a worker's message reaches a node */
    EV_W_TO_WORKER, /* a node's answer reaches a worker */
    EV_W_RESTART,
    EV_W_UNCUT,    /* a worker-leader cut heals */
    EV_W_FAULT,    /* the next worker fault */
    EV_OWNER_OP,   /* the next ownership operator step */
    EV_WATCH_WAIT, /* a parked watch's wait may be over */
    EV_W_AUDIT,    /* a worker's lease (as I3 counts it) ends: it must not act */
    EV_SLOW_DISK,  /* the next slow disk */
};

struct sim_event {
    uint64_t t_us;
    uint64_t seq;
    uint8_t type;
    uint32_t node;
    uint32_t a; /* incarnation, client, generation: per type */
    uint64_t b; /* op id, result: per type */
    uint64_t c;
    void *ptr;
    size_t len;
};

/* What one node keeps on its simulated disk: survives crashes. */
struct sim_disk {
    struct corral_raft_hard_state hs;
    /* A hard state written without an fsync (D2): a crash keeps or loses
     * it, by the seed, unless a synced batch made it durable first. */
    bool hs_dirty;
    struct corral_raft_hard_state hs_cache;
    struct corral_raft_snapshot_meta snap;
    struct corral_rbuf *snap_data;
    uint32_t n;
    uint32_t cap;
    struct corral_raft_entry *e; /* entries after snap.index, contiguous */
};

struct sim_pending {
    uint64_t index; /* log index of a proposal, or read index (0 = unknown) */
    uint64_t term;  /* a proposal's term: (index, term) names its entry */
    uint64_t op;    /* op id */
    bool read;
    bool read_ready;
};

struct sim;

/* A worker <-> coordinator message: heartbeat (with progress reports) and
 * its answer (lease, the index the lease covers, the leader's view), or a
 * watch and its answer (the answering node's view). */
enum sim_wmsg_type {
    SIM_WMSG_HEARTBEAT = 1,
    SIM_WMSG_HEARTBEAT_ANSWER,
    SIM_WMSG_WATCH,
    SIM_WMSG_WATCH_ANSWER,
};

struct sim_wmsg {
    uint8_t type;
    uint32_t worker;
    uint32_t incarnation;
    uint32_t from; /* the answering node */
    uint64_t seq;
    bool ok;
    uint32_t lease_ms;
    uint64_t lease_index;
    uint64_t agent_index; /* heartbeat, watch: the index of the view the agent holds */
    bool view_unchanged;  /* answer: the agent's view is current as of view_index */
    uint32_t leader_hint;
    uint32_t n_reports;
    struct corral_agent_report reports[SIM_REPORTS_MAX];
    bool has_view;
    uint64_t view_index;
    uint32_t n_view;
    struct corral_agent_entry view[SIM_VIEW_MAX];
};

struct sim_watch {
    struct sim_wmsg *msg;
    uint64_t until_us; /* its wait ends */
};

struct sim_node {
    struct sim *sim;
    uint32_t id;
    bool started; /* ever part of the run */
    bool up;
    bool removed;
    uint32_t incarnation;
    uint32_t rate_permille;
    struct corral_raft *raft;
    struct sim_disk disk;
    /* The production driver and state machine (src/core/raft_drive.c,
     * src/core/kv.c); both are lost on a crash. */
    /* Batches the driver took at one simulated instant: a core that
     * offers batches for ever (a livelock) would spin there unseen. */
    uint64_t batch_instant_us;
    uint32_t batches_at_instant;
    struct corral_drive drive;
    struct corral_state *st;
    bool persisting;             /* the driver's batch waits on an EV_PERSIST */
    uint64_t persist_ms;         /* when that fsync began, on the node's clock */
    uint64_t slow_disk_until_us; /* fsyncs are slow until then (sim_world.c) */
    /* The leader's health step (src/core/leader_health.c), as
     * node_health.c runs it; lost on a crash. */
    struct corral_leader_health health;
    uint64_t health_target; /* its last transfer went to this node ... */
    uint64_t health_term;   /* ... from this term (sim_node.c counts it done) */
    /* Ownership (sim_coord.c): the production coordinator duty
     * (src/core/coord.c); lost on a crash. */
    struct corral_coord *coord;
    uint64_t reg_sent_ms[SIM_WORKERS_MAX];
    uint32_t n_watches;
    struct sim_watch watches[SIM_WATCHES_MAX];
    uint32_t n_pending;
    struct sim_pending pending[SIM_PENDING_MAX];
    /* The leader's roster duty (sim_roster.c, as node_roster.c): its
     * last step on its own clock, the index of its roster write in flight
     * (0: none) and when that times out; and the nodes it heard from this
     * incarnation (their HTTP addresses are known: the handshake). */
    uint64_t roster_tick_ms;
    uint64_t roster_index;
    uint64_t roster_deadline_ms;
    uint32_t heard;
    /* What the checks saw last of this incarnation. */
    uint64_t seen_term;
    uint64_t seen_commit;
};

enum sim_op_status { OP_INFLIGHT = 0, OP_OK, OP_FAILED, OP_UNKNOWN };

struct sim_op {
    uint32_t client;
    uint64_t index; /* a write's entry once proposed: (index, term) */
    uint64_t term;
    uint8_t kind; /* enum lincheck_kind */
    uint32_t key;
    uint64_t value;
    uint64_t expect;
    bool cas_ok;
    uint8_t status;
    uint32_t node;
    uint64_t call_us;
    uint64_t return_us;
    uint64_t applied_us; /* first application anywhere, 0 = never */
    bool applied_cas_ok;
    uint64_t applied_version; /* the key's version it produced (its index) */
};

struct sim_client {
    uint64_t op; /* in flight, or UINT64_MAX */
    uint32_t target;
    uint64_t ok_after_heal;
};

/* A worker member: the real agent over a drifting clock (sim_worker.c). */
struct sim_worker {
    uint32_t idx;
    uint32_t ep; /* its endpoint in the network: SIM_NODES_MAX + 1 + idx */
    char name[16];
    char zone[16];
    bool started, up, paused, decommissioned, early_beat;
    uint32_t incarnation;
    uint32_t rate_permille;
    uint64_t resume_us;
    struct corral_agent *agent;
    uint32_t target; /* the node it heartbeats to */
    uint64_t wake_scheduled_ms;
    uint64_t watch_gen;
    uint32_t reports_seen; /* pending reports at the last look: a new one beats early */
    /* The desired set in force (a heartbeat answer may say it is still
     * current as of a newer index: it is set again at that index). */
    uint32_t n_view;
    struct corral_agent_entry view[SIM_VIEW_MAX];
    uint64_t sent_ms[SIM_BEATS_KEPT]; /* local send time of heartbeat seq, by seq */
    uint64_t last_seq_sent;
    uint64_t answered_seq; /* the newest heartbeat any node answered */
    uint32_t leader_hint;  /* the leader an answer last named */
    uint64_t lease_end_ms; /* I3's lease end, local clock: sent + lease_ms */
    uint32_t n_acting;
    struct corral_agent_primary acting[SIM_ACTING_MAX];
};

/* Who acts as primary of one partition now, for the checks (sim_owner.c). */
struct sim_owner {
    uint32_t worker; /* idx + 1, 0 = nobody */
    uint64_t epoch;
    uint64_t since_us;
    uint64_t last_epoch;
    uint32_t last_worker;
    bool gap_open;
    uint8_t gap_cause; /* enum sim_stop */
    uint32_t gap_r;    /* the resource's R when the gap opened */
    uint64_t gap_from_us;
};

struct sim_check; /* sim_check.c */

struct sim {
    struct sim_params p;
    struct sim_result *res;
    uint64_t rng;
    uint64_t now_us;
    uint64_t seq;
    size_t n_ev;
    size_t cap_ev;
    struct sim_event *ev;
    struct sim_node nodes[SIM_NODES_MAX + 1]; /* [0] unused */
    /* Links between endpoints: nodes 1..SIM_NODES_MAX, then workers. */
    bool blocked[SIM_ENDPOINTS_MAX + 1][SIM_ENDPOINTS_MAX + 1];
    struct sim_worker workers[SIM_WORKERS_MAX];
    struct sim_owner owners[SIM_RESOURCE_IDS_MAX][SIM_PARTITIONS_MAX];
    struct corral_coord_config coord_cfg;
    bool resources_created;
    uint32_t next_resource_name;
    uint32_t partition_gen;
    uint64_t roster_diverged_us; /* after the heal: a leader last saw them differ */
    bool healed;
    uint64_t heal_us;
    struct sim_client clients[SIM_CLIENTS_MAX];
    uint64_t n_ops;
    uint64_t cap_ops;
    struct sim_op *ops;
    uint64_t last_version[SIM_KEYS_MAX]; /* seen by any client: CAS targets */
    struct sim_props *props;             /* (index, term) -> op, sim_client.c */
    struct sim_check *check;
    uint64_t trace_next;
    char trace[SIM_TRACE_LINES][SIM_TRACE_LINE_BYTES];
};

/* sim_world.c */
uint64_t sim_rand(struct sim *s);
uint64_t sim_between(struct sim *s, uint64_t lo, uint64_t hi);
bool sim_chance(struct sim *s, uint32_t permille);
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_print_trace(const struct sim *s, FILE *f, uint32_t lines);
void sim_at(struct sim *s, uint64_t t_us, struct sim_event ev);
void sim_net_send(struct sim *s, const struct corral_raft_msg *m);
void sim_nemesis(struct sim *s, struct sim_node *n, bool elected, bool committed);
void sim_nemesis_fsync(struct sim *s, struct sim_node *n, uint64_t fsync_us);

/* sim_worker.c */
void sim_workers_init(struct sim *s);
void sim_workers_free(struct sim *s);
void sim_worker_start(struct sim *s, struct sim_worker *w);
void sim_worker_crash(struct sim *s, struct sim_worker *w);
void sim_worker_pause(struct sim *s, struct sim_worker *w, uint64_t until_us);
void sim_worker_event(struct sim *s, const struct sim_event *ev);
void sim_worker_send(struct sim *s, uint32_t from_node, struct sim_wmsg *m);
uint64_t sim_worker_ms(const struct sim *s, const struct sim_worker *w); /* its own clock */

/* sim_owner.c */
void sim_owner_update(struct sim *s, struct sim_worker *w);
void sim_owner_stopped_all(struct sim *s, struct sim_worker *w, uint8_t cause);
bool sim_owner_acting(const struct sim *s, uint32_t resource, uint32_t partition, uint64_t epoch);
void sim_owner_check_end(struct sim *s);

/* sim_coord.c */
void sim_coord_soft_state(struct sim *s, struct sim_node *n, const struct corral_raft_ready *rd);
void sim_coord_tick(struct sim *s, struct sim_node *n);
void sim_coord_receive(struct sim *s, struct sim_node *n, struct sim_wmsg *m);
void sim_coord_watches(struct sim *s, struct sim_node *n);
void sim_coord_crash(struct sim_node *n);
bool sim_propose(struct sim *s, struct sim_node *n, const struct corral_state_cmd *c);
bool sim_propose_at(struct sim *s, struct sim_node *n, const struct corral_state_cmd *c,
                    uint64_t *index);

/* sim_roster.c */
void sim_roster_names(uint32_t id, char name[16], char cluster[32], char http[32]);
void sim_roster_tick(struct sim *s, struct sim_node *n);
void sim_roster_applied(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e);
void sim_roster_restored(struct sim_node *n, uint64_t index);
void sim_roster_operator(struct sim *s);
void sim_roster_check_end(struct sim *s);

/* sim_ops.c */
void sim_ops_step(struct sim *s);
void sim_worker_fault(struct sim *s);
void sim_worker_fault_event(struct sim *s, const struct sim_event *ev);
void sim_workers_heal(struct sim *s);

/* sim_node.c */
void sim_node_start_fresh(struct sim *s, struct sim_node *n);
void sim_node_restart(struct sim *s, struct sim_node *n);
void sim_node_crash(struct sim *s, struct sim_node *n);
void sim_node_destroy(struct sim *s, struct sim_node *n);
void sim_node_tick(struct sim *s, struct sim_node *n, uint32_t incarnation);
void sim_node_step(struct sim *s, struct sim_node *n, const struct corral_raft_msg *m);
void sim_node_persisted(struct sim *s, struct sim_node *n, uint32_t incarnation);
void sim_node_flush(struct sim *s, struct sim_node *n);
/* A node's own clock, in ms: simulated time at its drifting rate. */
uint64_t sim_node_ms(const struct sim *s, const struct sim_node *n);
uint32_t sim_leader(struct sim *s);
bool sim_node_status(const struct sim_node *n, struct corral_raft_status *st);

/* sim_client.c */
void sim_clients_init(struct sim *s);
void sim_client_event(struct sim *s, const struct sim_event *ev);
void sim_clients_free(struct sim *s);
void sim_client_reply(struct sim *s, uint64_t op, bool ok, uint64_t value, bool cas_ok,
                      uint32_t leader_hint);
void sim_client_applied(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e,
                        const struct corral_state_result *res);
uint64_t sim_kv_version(const struct sim_node *n, uint32_t key);

/* sim_check.c */
void sim_check_node(struct sim *s, struct sim_node *n);
void sim_check_applied(struct sim *s, struct sim_node *n, uint64_t index);
void sim_check_read(struct sim *s, struct sim_node *n, uint32_t key);
void sim_check_end(struct sim *s);
void sim_check_free(struct sim *s);
uint64_t sim_hash_bytes(const void *data, size_t len, uint64_t h);

#endif
