/* Sticky balanced partition placement: given the live members and the
 * current map, computes a new map that keeps every replica it can, is
 * balanced by weight within one replica of each member's fair share, and
 * says which copies and primary hand-offs get there. Pure and deterministic.
 *
 * Ownership: the caller owns every input. corral_placement_compute() fills a
 * caller-provided result whose arrays it allocates (through util/mem.h);
 * the caller releases them with corral_placement_result_close(). The same
 * holds for maps (corral_placement_map_init/close) and plans
 * (corral_placement_plan_init/close). Nothing is retained between calls. */
#ifndef CORRAL_CORE_PLACEMENT_H
#define CORRAL_CORE_PLACEMENT_H

#include <stdint.h>

/* Limits. Each keeps the exact share arithmetic inside 64-bit integers
 * (share numerators reach P * R * W * w; see placement_quota.c) and bounds
 * the memory of one computation to a few tens of MiB. */
/* 2^20: far above any per-resource partition count we expect, and keeps
 * P * R below 2^23 so slot indexes fit in 32 bits with room to spare. */
#define CORRAL_PLACEMENT_PARTITIONS_MAX (1u << 20)
/* Replicas per partition. Rows are scanned linearly; 8 keeps that cheap. */
#define CORRAL_PLACEMENT_REPLICAS_MAX 8u
/* Members: the total weight W <= 8192 * 1000 < 2^23 keeps numerators < 2^57. */
#define CORRAL_PLACEMENT_MEMBERS_MAX 8192u
/* Distinct failure zones among the members. Per-partition zone counts are
 * kept in a small array indexed by zone; 64 covers any real topology. */
#define CORRAL_PLACEMENT_ZONES_MAX 64u
/* Member weight, 1..1000: 0.1% resolution of relative capacity, and small
 * enough for the 64-bit bound above. */
#define CORRAL_PLACEMENT_WEIGHT_MAX 1000u

/* An empty slot in a map row, or "no member" in a move or a hand-off. */
#define CORRAL_PLACEMENT_NONE UINT32_MAX

/* A live member. id is any value but CORRAL_PLACEMENT_NONE; zone is an
 * opaque label (members with equal zone share a failure domain). */
struct corral_placement_member {
    uint32_t id;
    uint32_t zone;
    uint32_t weight;
};

/* Which member holds which partition. Row p is slots[p * replicas ...]:
 * slot 0 is the primary, then the other replicas; empty slots hold
 * CORRAL_PLACEMENT_NONE and only appear at the end of a row. */
struct corral_placement_map {
    uint32_t partitions;
    uint32_t replicas;
    uint32_t *slots;
};

/* Allocates an empty map (every slot NONE). Returns 0, CORRAL_EINVAL when a
 * count is 0 or above its limit, or CORRAL_ENOMEM. */
int corral_placement_map_init(struct corral_placement_map *map, uint32_t partitions,
                              uint32_t replicas);
/* Allocates dst as a copy of src. */
int corral_placement_map_copy(struct corral_placement_map *dst,
                              const struct corral_placement_map *src);
/* Frees the slots; safe on a zeroed or already closed map. */
void corral_placement_map_close(struct corral_placement_map *map);

struct corral_placement_input {
    uint32_t partitions;                           /* P */
    uint32_t replicas;                             /* R, the wanted replicas per partition */
    uint64_t seed;                                 /* only feeds tie-break hashes */
    const struct corral_placement_member *members; /* any order */
    uint32_t members_count;
    /* The current map, with the same partitions and replicas, or NULL when
     * nothing is placed yet. Holders that are not live count as lost. */
    const struct corral_placement_map *current;
};

/* One new copy: member `to` gets a replica of `partition`, copied from
 * `source` (a live member that held it before, preferring the old primary;
 * NONE when no copy survived), taking the slot `replaced` gave up (a lost
 * or dropping member; NONE when the slot was empty). */
struct corral_placement_move {
    uint32_t partition;
    uint32_t to;
    uint32_t source;
    uint32_t replaced;
};

enum corral_placement_primary_kind {
    /* An existing, in-sync replica becomes primary: no data to wait for. */
    CORRAL_PLACEMENT_PROMOTION = 1,
    /* A member that is receiving a new copy becomes primary once caught up. */
    CORRAL_PLACEMENT_FRESH = 2,
};

struct corral_placement_primary_change {
    uint32_t partition;
    uint32_t from; /* old primary; NONE when it is lost or there was none */
    uint32_t to;
    uint32_t kind; /* enum corral_placement_primary_kind */
};

/* A live member giving up its replica of a partition. */
struct corral_placement_drop {
    uint32_t partition;
    uint32_t member;
};

struct corral_placement_stats {
    uint32_t members;
    uint32_t zones;
    uint32_t zone_cap;            /* ceil(R / zones): replicas per zone per partition */
    uint32_t replicas_effective;  /* R, or fewer when members or zones are too few */
    uint64_t moves;               /* new copies, including extra ones */
    uint64_t moves_lower_bound;   /* fewest new copies any balanced map needs (a bound:
                                   * per member, and per zone for the copies the
                                   * zone caps force; see docs/placement.md) */
    uint64_t moves_extra;         /* copies beyond the bound (two-hop re-routes) */
    uint64_t primary_changes;     /* partitions whose primary differs from before */
    uint64_t promotions;          /* ... won by an in-sync replica */
    uint64_t fresh_primaries;     /* ... won by a member receiving a new copy */
    uint64_t primary_lower_bound; /* fewest primary changes any balanced map needs */
    uint64_t drops;               /* replicas live members give up */
    uint64_t under_replicated;    /* partitions with fewer than R replicas */
    uint64_t unplaced;            /* slots below replicas_effective (a bug if not 0) */
    uint64_t lost;                /* partitions that had replicas but no live one */
};

struct corral_placement_result {
    struct corral_placement_map map;
    struct corral_placement_move *moves;
    uint32_t moves_count;
    struct corral_placement_primary_change *primary_changes;
    uint32_t primary_changes_count;
    struct corral_placement_drop *drops;
    uint32_t drops_count;
    struct corral_placement_stats stats;
};

/* Computes the new placement. On success the result owns its arrays (free
 * them with corral_placement_result_close()); on error it holds nothing.
 * Returns 0, CORRAL_EINVAL (a count out of range, a duplicate member id,
 * a weight of 0 or above the limit, too many zones, a current map of
 * another shape) or CORRAL_ENOMEM. With no members every row is empty. */
int corral_placement_compute(const struct corral_placement_input *in,
                             struct corral_placement_result *out);
void corral_placement_result_close(struct corral_placement_result *out);

/* The same computation, with working memory kept between calls: a
 * coordinator keeps one engine per resource, so that an event costs no
 * fresh allocations (about a third of a cold call at P = 65,536). *out
 * points at a result the engine owns, valid until its next compute or its
 * free; the caller copies what it keeps. Errors are those of
 * corral_placement_compute(), with *out NULL. */
struct corral_placement_engine;

int corral_placement_engine_new(struct corral_placement_engine **out);
void corral_placement_engine_free(struct corral_placement_engine *e);
int corral_placement_engine_compute(struct corral_placement_engine *e,
                                    const struct corral_placement_input *in,
                                    const struct corral_placement_result **out);
/* Only the bounds of that computation: fills moves_lower_bound and
 * primary_lower_bound of *bounds (the rest is zero), for judging any map,
 * e.g. another algorithm's, as in->current against the members of in. */
int corral_placement_engine_bounds(struct corral_placement_engine *e,
                                   const struct corral_placement_input *in,
                                   struct corral_placement_stats *bounds);

/* A member's fair share of replica slots, num / den (den > 0): the P * R
 * slots are split over zones by weight, each zone capped at
 * P * min(zone_cap, members in the zone), then over the zone's members by
 * weight, each capped at P, both by water-filling. Primaries: share / R_eff. */
struct corral_placement_share {
    uint64_t num;
    uint64_t den;
};

/* Violations and balance of a map against the live members. */
struct corral_placement_report {
    uint32_t replicas_effective;
    uint32_t zones;
    uint32_t zone_cap;
    uint64_t unknown_holders;   /* slots naming a member that is not live */
    uint64_t duplicate_holders; /* a member twice in one row */
    uint64_t zone_violations;   /* rows with more than zone_cap in one zone */
    uint64_t missing_replicas;  /* slots short of replicas_effective */
    uint64_t replica_imbalance; /* members outside floor/ceil of their share */
    uint64_t primary_imbalance; /* same for primaries */
};

/* Checks map against the members of in (in->current is ignored). The
 * optional arrays, of in->members_count entries in the order of
 * in->members, receive each member's share and counts. Returns 0,
 * CORRAL_EINVAL or CORRAL_ENOMEM. */
int corral_placement_check(const struct corral_placement_input *in,
                           const struct corral_placement_map *map,
                           struct corral_placement_report *report,
                           struct corral_placement_share *shares, uint32_t *replica_counts,
                           uint32_t *primary_counts);

/* The safe order of work for a partition: copy first (the new replica
 * catches up), then hand the primary over, then drop surplus replicas. */
enum corral_placement_step_kind {
    CORRAL_PLACEMENT_STEP_COPY = 1,    /* member copies from peer (NONE: start empty) */
    CORRAL_PLACEMENT_STEP_HANDOFF = 2, /* primary moves from peer (NONE: lost) to member */
    CORRAL_PLACEMENT_STEP_DROP = 3,    /* member drops its replica; peer is NONE */
};

struct corral_placement_step {
    uint32_t partition;
    uint32_t kind; /* enum corral_placement_step_kind */
    uint32_t member;
    uint32_t peer;
};

/* Steps sorted by partition, and within a partition by kind: every step of
 * a partition may only start once the steps of lower kind are done. Steps
 * of different partitions are independent. */
struct corral_placement_plan {
    struct corral_placement_step *steps;
    uint32_t steps_count;
};

/* Builds the plan of a result. The plan owns its steps. */
int corral_placement_plan_init(struct corral_placement_plan *plan,
                               const struct corral_placement_result *result);
void corral_placement_plan_close(struct corral_placement_plan *plan);

#endif
