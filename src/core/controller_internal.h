/* Controller internals shared by its files: the member view of one
 * evaluation, the per-resource cache (engine, target, in-flight table) and
 * the output buffers. Only controller*.c include this. */
#ifndef CORRAL_CORE_CONTROLLER_INTERNAL_H
#define CORRAL_CORE_CONTROLLER_INTERNAL_H

#include "core/controller.h"

#define CTL_NOIDX UINT32_MAX
/* Open-addressing table from member id to its index in the view: a power
 * of two at least twice CORRAL_STATE_MEMBERS_MAX keeps probes short. */
#define CTL_HASH_SIZE 8192u
_Static_assert(CTL_HASH_SIZE >= 2u * CORRAL_STATE_MEMBERS_MAX, "member table too small");
_Static_assert((CTL_HASH_SIZE & (CTL_HASH_SIZE - 1u)) == 0, "member table not a power of two");
_Static_assert(CORRAL_STATE_REPLICAS_MAX <= CORRAL_PLACEMENT_REPLICAS_MAX, "R above the engine");
_Static_assert(CORRAL_STATE_MEMBERS_MAX <= CORRAL_PLACEMENT_MEMBERS_MAX, "members above engine");
_Static_assert(CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX <= CORRAL_PLACEMENT_PARTITIONS_MAX,
               "partitions above the engine");
_Static_assert(CORRAL_STATE_WEIGHT_MAX <= CORRAL_PLACEMENT_WEIGHT_MAX, "weight above the engine");
_Static_assert(CORRAL_CONTROLLER_GROUP_OPS_MAX >= 2u * CORRAL_STATE_REPLICAS_MAX + 2u,
               "a partition's group does not fit");

/* A distinct zone string of the hosts, in order of first appearance. */
struct zone_rank {
    const char *name;
    uint32_t first;
};

/* One member as this evaluation sees it. */
struct ctl_member {
    uint32_t id;
    uint8_t status;     /* enum corral_member_status */
    uint8_t role;       /* enum corral_member_role */
    bool host;          /* a placement member: worker, active, lease not over */
    bool live;          /* active or draining, lease not over: its in-sync replicas hold data */
    bool grantable;     /* may be granted a primary: active, lease not over */
    bool out;           /* settled and lease over: its primaryship may be cleared (C3) */
    bool death_pending; /* a MEMBER_STATUS dead for it is in flight */
    bool heard;         /* answered at least once in this term of office */
    uint32_t copies;    /* copying replicas on it, applied or in flight (C5) */
    uint32_t replicas;  /* replicas it holds, counted only when count_replicas */
};

/* The last proposal for a partition not yet seen applied (C6): its last
 * op, which is the one whose effect shows that the command applied. */
struct ctl_pending {
    uint64_t deadline_ms; /* 0: nothing in flight */
    uint64_t epoch;       /* the partition's epoch when proposed */
    uint32_t member;
    uint8_t op; /* enum corral_partition_op */
};

/* Per resource: the engine, its last target and the in-flight table. */
struct ctl_resource {
    uint32_t id;
    uint32_t partitions;
    uint32_t replicas;
    struct corral_placement_engine *engine;
    const struct corral_placement_result *target; /* owned by engine; NULL: none yet */
    uint64_t key_members;                         /* hosts_key the target was computed for */
    bool fixed; /* the target is the engine's output for itself as input */
    bool quiet; /* every partition at target, none in flight (set by the prescan) */
    struct corral_placement_map input; /* the current map handed to the engine */
    struct ctl_pending *pending;       /* partitions of them */
    uint32_t n_pending;
    uint32_t *todo; /* what the moves pass looks at (ctl_scan): room for partitions */
    uint32_t n_todo;
};

/* A MEMBER_STATUS dead in flight. */
struct ctl_death {
    uint32_t id;
    uint64_t deadline_ms;
};

struct corral_controller {
    struct corral_controller_config cfg;

    /* The member view of the evaluation in progress (controller_view.c). */
    struct ctl_member *members; /* state order (increasing id) */
    uint32_t n_members;
    uint32_t *hash; /* CTL_HASH_SIZE slots: member index + 1, 0 empty */
    struct corral_placement_member *hosts;
    uint32_t n_hosts;
    struct zone_rank *zones; /* distinct zone strings of the hosts */
    uint16_t *zone_hash;     /* CTL_HASH_SIZE slots: zone index + 1, 0 empty */
    uint32_t *zone_rank;     /* zone index (first appearance) -> number */
    uint64_t hosts_key;      /* hash of the hosts (id, zone, weight) */
    bool settled;
    bool count_replicas; /* a never-heard member may be declared dead: count replicas */
    uint64_t now_ms;
    uint32_t copies_total; /* copying replicas in the cluster, applied or in flight */

    /* Resources, by increasing id. */
    struct ctl_resource **res;
    struct ctl_resource **res_next; /* scratch for the merge with the state */
    uint32_t n_res;

    struct ctl_death *deaths;
    uint32_t n_deaths;

    /* Output of evaluate: command k uses ops[k * ops_per_command_max ...]. */
    struct corral_state_cmd *cmds;
    struct corral_partition_opv *ops;
    uint32_t n_cmds;
    uint32_t cur_cmd; /* the command the next group may join, CTL_NOIDX: none */
    struct corral_controller_stats stats;

    /* Output of report. */
    struct corral_state_cmd report_cmd;
    struct corral_partition_opv report_ops[2];
};

/* The ops for one partition in one call, applied in order. */
struct ctl_group {
    uint32_t n;
    struct corral_partition_opv ops[CORRAL_CONTROLLER_GROUP_OPS_MAX];
};

/* controller_view.c: the member view and the per-resource targets. */
int ctl_view_build(struct corral_controller *c, const struct corral_state *st,
                   const struct corral_liveness *lv, uint64_t now_ms);
const struct ctl_member *ctl_member_find(const struct corral_controller *c, uint32_t id);
struct ctl_member *ctl_member_find_mut(struct corral_controller *c, uint32_t id);
int ctl_resources_sync(struct corral_controller *c, const struct corral_state *st);
/* Recomputes the target when the hosts or R changed, or when refine asks
 * for the engine's output on the target itself. */
int ctl_target_update(struct corral_controller *c, struct ctl_resource *r,
                      const struct corral_state_resource *sr, bool refine);
struct ctl_resource *ctl_resource_find(const struct corral_controller *c, uint32_t id);
void ctl_resources_free(struct corral_controller *c);

/* controller_step.c: what one partition needs next. */
int ctl_row_find(const struct corral_state_partition *ps, uint32_t member);
bool ctl_pending_done(const struct ctl_pending *rec, const struct corral_state_partition *ps);
void ctl_scan(struct corral_controller *c, struct ctl_resource *r,
              const struct corral_state_resource *sr);
/* all: every partition (the target changed after the scan), else the
 * scan's list. */
void ctl_pass_moves(struct corral_controller *c, struct ctl_resource *r,
                    const struct corral_state_resource *sr, bool all);
void ctl_pending_set(struct ctl_pending *rec, uint64_t epoch, const struct ctl_group *g,
                     uint64_t deadline_ms);
uint32_t ctl_grant_choose(const struct corral_state_partition *ps, const uint32_t *t, uint32_t tn,
                          uint32_t except, bool (*grantable)(const void *, uint32_t),
                          const void *ctx);
/* The grant of a partition with no primary (C2): ctl_grant_choose with
 * grantable; when that finds nobody, the first in-sync replica on a member
 * that draining() accepts (draining, lease not over), with *op
 * CORRAL_OP_GRANT_DRAINING instead of CORRAL_OP_GRANT. */
uint32_t ctl_grant_pick(const struct corral_state_partition *ps, const uint32_t *t, uint32_t tn,
                        uint32_t except, bool (*grantable)(const void *, uint32_t),
                        bool (*draining)(const void *, uint32_t), const void *ctx, uint8_t *op);

#endif
