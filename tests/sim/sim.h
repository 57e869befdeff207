/* The deterministic simulator: whole Raft nodes (the real core) with a
 * key-value state machine, over a simulated network, disks and clocks, all
 * driven by one seed. Shared declarations of its files. */
#ifndef CORRAL_SIM_H
#define CORRAL_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/raft.h"

#define SIM_NODES_MAX 12 /* ids 1..12: initial voters plus spares to add */
#define SIM_WORKERS_MAX 8
#define SIM_ENDPOINTS_MAX (SIM_NODES_MAX + SIM_WORKERS_MAX)
#define SIM_KEYS_MAX 16
#define SIM_CLIENTS_MAX 8
#define SIM_TRACE_LINES 256
#define SIM_TRACE_LINE_BYTES 160

/* The per-seed plan: everything a run does is drawn from the seed. */
struct sim_params {
    uint64_t seed;
    uint32_t n_voters; /* 3, 5 or 7 */
    uint32_t n_keys;
    uint32_t n_clients;
    uint32_t loss_permille;
    uint32_t dup_permille;
    uint32_t delay_min_us;
    uint32_t delay_max_us;
    uint32_t disk_min_us;
    uint32_t disk_max_us;
    uint32_t drift_permille_max;   /* clock rate within 1 +- this */
    uint32_t crash_every_ms;       /* mean time between crashes, 0 = none */
    uint32_t restart_max_ms;       /* a crashed node is back within this */
    uint32_t leader_bias_permille; /* crashes and partitions aimed at the leader */
    uint32_t partition_every_ms;   /* mean time between partitions, 0 = none */
    uint32_t partition_max_ms;     /* a partition heals within this */
    uint32_t nemesis_permille;     /* isolate a leader the moment it is elected
                                      or its commit index moves */
    uint32_t conf_every_ms;        /* mean time between membership changes */
    uint32_t fsync_crash_permille; /* a leader crashes inside its fsync, after
                                      its early sends (raft_drive.h, D1) */
    uint32_t max_msg_entries;
    uint32_t snapshot_every; /* compact after this many applied entries */
    uint32_t snapshot_chunk_bytes;
    uint32_t fault_ms; /* faults run this long, then heal */
    /* Partition ownership: workers running the agent, resources, faults. */
    uint32_t n_workers;             /* 2..SIM_WORKERS_MAX */
    uint32_t n_zones;               /* 1..3: workers round-robin over them */
    uint32_t n_resources;           /* created at the start */
    uint32_t partitions_max;        /* P of a resource in 4..this */
    uint32_t heartbeat_ms;          /* a worker's heartbeat interval */
    uint32_t lease_ms;              /* the lease a leader grants */
    uint32_t worker_fault_every_ms; /* mean time between worker faults, 0 = none */
    uint32_t worker_fault_max_ms;   /* a crash, pause or cut lasts up to this */
    uint32_t owner_op_every_ms;     /* mean time between operator steps */
    uint32_t slow_permille;         /* worker-link messages stalled 50-400 ms */
    uint32_t slow_disk_every_ms;    /* mean time between slow disks, 0 = none:
                                       one node's fsyncs take 150-400 ms for 1-4 s */
    bool verbose;
};

/* What ended a primary's turn, for the ownership gaps. */
enum sim_stop {
    SIM_STOP_CRASH = 0,   /* the worker was killed */
    SIM_STOP_PAUSE = 1,   /* the worker was stopped (SIGSTOP) */
    SIM_STOP_LEASE = 2,   /* its lease ran out while it ran (cut off) */
    SIM_STOP_HANDOFF = 3, /* a planned release: drain, rebalance, resize */
    SIM_STOP_KINDS = 4,
};
#define SIM_GAPS_MAX 512

struct sim_result {
    bool violation;
    bool safety; /* the violation broke a safety property, not liveness */
    char what[512];
    uint64_t events;
    uint64_t ops_ok;
    uint64_t ops_unknown;
    uint64_t elections; /* distinct terms with a leader */
    uint64_t commits;   /* highest commit index reached */
    uint64_t snapshots_sent;
    uint64_t conf_changes;     /* the leaders' roster steps: learner added, promoted, removed */
    uint64_t roster_joins;     /* the operator's COORD_PUT proposals */
    uint64_t roster_removes;   /* the operator's COORD_DELETE proposals */
    uint64_t roster_refused;   /* removals the API's rules refused */
    uint64_t roster_transfers; /* a leader out of the roster handed over */
    uint64_t roster_settle_us; /* after the heal, until roster and conf agreed */
    uint64_t slow_disks;       /* slow-disk stretches started */
    uint64_t health_degraded;  /* degraded periods a leader's health step began */
    uint64_t health_transfers; /* transfers the health step started */
    uint64_t health_handed;    /* ... whose target led the very next term */
    uint64_t health_no_target; /* due, but no voter qualified (once a period) */
    uint64_t crashes;
    uint64_t worker_crashes;
    uint64_t worker_pauses;
    uint64_t drains;
    uint64_t acquires;        /* acting intervals started */
    uint64_t state_proposals; /* cluster state commands proposed */
    /* Ownership gaps (no acting primary), by what ended the previous
     * primary's turn: enum sim_stop. */
    struct sim_gaps {
        uint32_t n;
        uint64_t total;
        uint64_t us[SIM_GAPS_MAX];
    } gaps[SIM_STOP_KINDS];
};

void sim_params_from_seed(struct sim_params *p, uint64_t seed);
void sim_run(const struct sim_params *p, struct sim_result *res);

#endif
