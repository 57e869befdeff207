/* Shared internals of the placement engine (placement*.c only): the member
 * table sorted by id, the fair-share arithmetic and the working state of one
 * computation. */
#ifndef CORRAL_CORE_PLACEMENT_INTERNAL_H
#define CORRAL_CORE_PLACEMENT_INTERNAL_H

#include <stdint.h>

#include "core/placement.h"

#define NONE CORRAL_PLACEMENT_NONE

/* Zone sets are enumerated for the bound up to this many zones. */
#define PL_SUBSET_ZONES 8u

/* Live members sorted by id, so that nothing depends on input order. */
struct pl_members {
    uint32_t n;
    uint32_t zones;                       /* distinct zones */
    uint32_t zone_cap;                    /* ceil(R / zones) */
    uint32_t replicas_eff;                /* min(R, sum over zones of min(zone_cap, size)) */
    uint32_t *id;                         /* [n] ascending */
    uint32_t *zone;                       /* [n] zone index, zones numbered by ascending label */
    uint32_t *weight;                     /* [n] */
    uint32_t *orig;                       /* [n] index in the caller's array */
    uint32_t *zone_size;                  /* [zones] members per zone */
    struct corral_placement_share *share; /* [n] replica share */
    /* Open-addressing table id -> index, so that looking up every slot of
     * a map costs O(1) each; table_mask + 1 is a power of two >= 2n. */
    uint32_t *table;
    uint32_t table_mask;
    /* When the ids are small (below 8n + 256, as with ids handed out in
     * order), direct[id] is the index or NONE, for ids < direct_len: one
     * load instead of a probe. NULL otherwise. */
    uint32_t *direct;
    uint32_t direct_len;
};

/* Validates and sorts the members and computes their shares. */
int pl_members_init(struct pl_members *ms, const struct corral_placement_input *in);
void pl_members_close(struct pl_members *ms);
/* Index of a live member id, or NONE (the probing path of pl_members_find). */
uint32_t pl_members_probe(const struct pl_members *ms, uint32_t id);

static inline uint32_t pl_members_find(const struct pl_members *ms, uint32_t id)
{
    if (ms->direct != NULL)
        return id < ms->direct_len ? ms->direct[id] : CORRAL_PLACEMENT_NONE;
    return pl_members_probe(ms, id);
}

/* Targets within floor/ceil of each share: the spare ceilings go first to
 * members whose ceiling costs no move (kept >= ceiling), then to those
 * closest to it, then to members that may legally fill more empty slots
 * (hole_room[i]: such a ceiling can be met by a slot that must be filled
 * anyway), then by a hash of id and seed; a zone's total stays
 * within its cap. Primaries: the same on primaries kept, then members
 * holding more replicas of partitions whose primary is lost (orphans[i]:
 * they can take one over by promotion), then members that shed no replica (so that members shedding
 * replicas are the ones above their primary target, and leadership leaves with the data), and never
 * more primaries than replicas. */
int pl_replica_targets(const struct pl_members *ms, uint32_t partitions, uint64_t seed,
                       const uint32_t *kept, const uint32_t *hole_room, uint32_t *target);
int pl_primary_targets(const struct pl_members *ms, uint32_t partitions, uint64_t seed,
                       const uint32_t *kept, const uint32_t *replica_kept,
                       const uint32_t *replica_target, const uint32_t *orphans, uint32_t *target);

/* floor and ceil of a fraction. */
static inline uint64_t pl_floor(uint64_t num, uint64_t den)
{
    return num / den;
}

static inline uint64_t pl_ceil(uint64_t num, uint64_t den)
{
    return num / den + (num % den != 0);
}

/* How many members of zone z one partition may hold: min(zone_cap, size). */
static inline uint32_t pl_zone_per(const struct pl_members *ms, uint32_t z)
{
    return ms->zone_cap < ms->zone_size[z] ? ms->zone_cap : ms->zone_size[z];
}

/* floor and ceil of member m's replica share. */
static inline uint32_t pl_share_floor(const struct pl_members *ms, uint32_t m)
{
    return (uint32_t)pl_floor(ms->share[m].num, ms->share[m].den);
}

static inline uint32_t pl_share_ceil(const struct pl_members *ms, uint32_t m)
{
    return (uint32_t)pl_ceil(ms->share[m].num, ms->share[m].den);
}

/* The fixed tie-break hash: a splitmix64 finalizer over (a, b, seed). */
static inline uint64_t pl_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t pl_hash(uint64_t a, uint64_t b, uint64_t seed)
{
    return pl_mix(pl_mix(seed ^ (a << 32 | b)) ^ a);
}

/* A search state: `via` gives up its slot of `part` (NONE: an empty slot),
 * through its new-copy record `rec` (or a REC_* marker); `via` was reached
 * as a taker of the state at index `parent`. */
struct pl_entry {
    uint32_t part, via, rec, parent;
};

/* Working state of one corral_placement_compute() call. Rows hold member
 * indexes; fresh[] marks slots filled by a new copy in this computation. */
struct pl_ctx {
    const struct corral_placement_input *in;
    struct pl_members ms;
    uint32_t P, R;     /* partitions, slots per row */
    uint32_t reff;     /* replicas each row should get */
    uint32_t *hold;    /* [P * R] member index or NONE; count[p] used */
    uint8_t *fresh;    /* [P * R] */
    uint8_t *count;    /* [P] */
    uint32_t *prim;    /* [P] primary member index or NONE */
    uint32_t *kept;    /* [n] replicas kept from the current map */
    uint32_t *pkept;   /* [n] primaries kept */
    uint32_t *target;  /* [n] replica target T */
    uint32_t *ptarget; /* [n] primary target Q */
    uint32_t *have;    /* [n] replicas now */
    uint32_t *phave;   /* [n] primaries now */
    /* New copies: record r puts member rec_member[r] on rec_part[r]; each
     * member's records are chained through rec_next from rec_head. */
    uint32_t *rec_part, *rec_member, *rec_next, *rec_head;
    uint32_t recs, recs_max;
    /* Members with a replica deficit, per zone, with positions for O(1)
     * removal. */
    uint32_t *def_list;            /* [n], zone z occupies def_start[z] .. + def_len[z] */
    uint32_t *def_pos;             /* [n] */
    uint32_t *def_start, *def_len; /* [zones] */
    /* Member -> partitions index (CSR), rebuilt when needed. */
    uint32_t *idx_start; /* [n + 1] */
    uint32_t *idx_part;  /* [P * R] */
    /* Breadth-first search scratch, reset by bumping stamp. */
    uint32_t stamp;
    uint32_t *p_seen, *p_via, *p_rec, *queue; /* [P] */
    uint32_t *m_seen, *m_via;                 /* [n] */
    /* Replica searches: a partition is a different state depending on the
     * zone of the member giving a slot up, so states are (partition, zone)
     * (p_zones: zones seen, valid when p_seen is current) kept in a
     * growing array of entries. */
    uint64_t *p_zones;
    struct pl_entry *entries;
    uint32_t entries_cap;
    uint64_t moves_extra;
    /* Replica searches: the members not yet visited, per zone (same layout
     * as def_list), so that a search state costs O(R + zones) plus the
     * members it visits rather than a scan of every member. */
    uint32_t *unv_list, *unv_pos; /* [n] */
    uint32_t unv_start[CORRAL_PLACEMENT_ZONES_MAX], unv_len[CORRAL_PLACEMENT_ZONES_MAX];
    /* Relaxed searches (see placement_repair.c): per zone, a member that
     * can give up a spare ceiling (NONE if none), and whether the zone's
     * targets may grow by one. */
    uint32_t donor[CORRAL_PLACEMENT_ZONES_MAX];
    uint8_t zone_grows[CORRAL_PLACEMENT_ZONES_MAX];
    /* Per zone, the new copies the empty slots force into it: a row can
     * hold at most min(zone_cap, zone size) members of each other zone, so
     * it needs the rest from this one (see zone_demand in placement.c). */
    uint64_t forced[CORRAL_PLACEMENT_ZONES_MAX];
    /* The same for every set of zones (bit z: zone z), when there are at
     * most PL_SUBSET_ZONES zones: a row holds at most per_z members of
     * each zone outside the set, so it needs the rest from inside it. */
    uint64_t *forced_set; /* [1 << zones] or NULL */
    uint64_t forced_sets_buf[1u << PL_SUBSET_ZONES];
    uint64_t holes;  /* empty slots after the keep pass */
    uint32_t *order; /* [P] rows in the order the fill visits them */
    /* While primaries are chosen: each member's led partitions as a doubly
     * linked list (lead_head[m], lead_next[p], lead_prev[p]), kept in step
     * with prim[] so searches need not scan every replica a member holds. */
    uint32_t *lead_head; /* [n] */
    /* While partitions without primary are led: per member, how many of
     * those still to be decided it could lead. */
    uint32_t *opp; /* [n] */
    /* Per member, live replicas the keep pass dropped because their zone
     * was full in the row (the zone cap fell); any_zdrop when there are. */
    uint32_t *zdrop; /* [n] */
    int any_zdrop;
    uint32_t *lead_next, *lead_prev; /* [P] */
};

/* Index of member m in row p, or NONE. */
uint32_t pl_row_find(const struct pl_ctx *c, uint32_t p, uint32_t m);
/* Members of zone z in row p, not counting the member `except`. */
uint32_t pl_zone_count(const struct pl_ctx *c, uint32_t p, uint32_t z, uint32_t except);
/* Whether m may take a slot of row p that `leaving` gives up (NONE: an
 * empty slot): m is not in the row and its zone stays within the cap. */
int pl_legal(const struct pl_ctx *c, uint32_t p, uint32_t m, uint32_t leaving);
/* Puts m in row p in place of `leaving` (NONE: appends) as a new copy. */
void pl_row_put(struct pl_ctx *c, uint32_t p, uint32_t m, uint32_t leaving);
/* Adds a new-copy record; the deficit bookkeeping is the caller's. */
void pl_rec_add(struct pl_ctx *c, uint32_t m, uint32_t p);
/* Replica deficit bookkeeping: m gained one replica. */
void pl_gain(struct pl_ctx *c, uint32_t m);
/* m's target rose above what it has: it joins its zone's deficit list. */
void pl_deficit_add(struct pl_ctx *c, uint32_t m);
/* m's target fell to what it has: it leaves its zone's deficit list. */
void pl_deficit_remove(struct pl_ctx *c, uint32_t m);
/* Builds the member -> partitions index from the rows. */
void pl_index_build(struct pl_ctx *c);

/* Re-routing of new copies by shortest augmenting paths. */
int pl_repair_hole(struct pl_ctx *c, uint32_t p);
int pl_repair_surplus(struct pl_ctx *c, uint32_t m);
/* Chooses the primaries (placement_primary.c). */
int pl_primaries(struct pl_ctx *c);
/* Writes the new map and its difference from the old one into out, whose
 * arrays are sized for the shape of c (placement_plan.c). */
void pl_output(const struct pl_ctx *c, struct corral_placement_result *out);

#endif
