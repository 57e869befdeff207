/* Internals shared by the simulator's files. */
#ifndef CORRAL_SIM_IMPL_H
#define CORRAL_SIM_IMPL_H

#include <stddef.h>
#include <stdio.h>

#include "core/kv.h"
#include "core/raft_drive.h"
#include "lincheck.h"
#include "sim.h"

/* After the fault phase: how long the healed cluster runs, and within how
 * long it must have elected a leader and served every client. */
#define SIM_SETTLE_MS 12000
#define SIM_LIVENESS_MS 6000
#define SIM_CLIENT_TIMEOUT_MS 1500
#define SIM_TICK_MS 5
#define SIM_PENDING_MAX 512
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
    struct corral_drive drive;
    struct corral_kv *kv;
    bool persisting; /* the driver's batch waits on an EV_PERSIST */
    uint32_t n_pending;
    struct sim_pending pending[SIM_PENDING_MAX];
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
    bool blocked[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1];
    uint32_t partition_gen;
    uint32_t next_spare;
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

/* sim_node.c */
void sim_node_start_fresh(struct sim *s, struct sim_node *n);
void sim_node_restart(struct sim *s, struct sim_node *n);
void sim_node_crash(struct sim *s, struct sim_node *n);
void sim_node_destroy(struct sim *s, struct sim_node *n);
void sim_node_tick(struct sim *s, struct sim_node *n, uint32_t incarnation);
void sim_node_step(struct sim *s, struct sim_node *n, const struct corral_raft_msg *m);
void sim_node_persisted(struct sim *s, struct sim_node *n, uint32_t incarnation);
void sim_node_flush(struct sim *s, struct sim_node *n);
uint32_t sim_leader(struct sim *s);
bool sim_node_status(const struct sim_node *n, struct corral_raft_status *st);

/* sim_client.c */
void sim_clients_init(struct sim *s);
void sim_client_event(struct sim *s, const struct sim_event *ev);
void sim_clients_free(struct sim *s);
void sim_client_reply(struct sim *s, uint64_t op, bool ok, uint64_t value, bool cas_ok,
                      uint32_t leader_hint);
void sim_client_applied(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e,
                        const struct corral_kv_result *res);
uint64_t sim_kv_version(const struct sim_node *n, uint32_t key);

/* sim_check.c */
void sim_check_node(struct sim *s, struct sim_node *n);
void sim_check_applied(struct sim *s, struct sim_node *n, uint64_t index);
void sim_check_read(struct sim *s, struct sim_node *n, uint32_t key);
void sim_check_end(struct sim *s);
void sim_check_free(struct sim *s);
uint64_t sim_hash_bytes(const void *data, size_t len, uint64_t h);

#endif
