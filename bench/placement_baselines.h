/* Baselines for bench-placement, implemented here only: consistent hashing
 * on a ring with virtual nodes, and weighted rendezvous (HRW) hashing, both
 * zone-aware (a partition takes at most zone_cap replicas per zone). They
 * write the same map layout as the placement engine: row p is slots[p * R
 * ...], primary first, NONE-padded. */
#ifndef CORRAL_BENCH_PLACEMENT_BASELINES_H
#define CORRAL_BENCH_PLACEMENT_BASELINES_H

#include <stddef.h>
#include <stdint.h>

#include "core/placement.h"

/* Members as the baselines see them: zone is a dense index < zones. */
struct bl_cluster {
    uint32_t partitions, replicas;
    const struct corral_placement_member *members;
    uint32_t n;
    uint32_t zones;
};

/* Replicas a partition gets, and the per-zone cap, as the engine defines
 * them (min(R, room over zones), ceil(R / zones)). */
void bl_limits(const struct bl_cluster *c, uint32_t *replicas_eff, uint32_t *zone_cap);

/* Ring: vnodes * weight points per member, sorted by hash. A partition
 * walks clockwise from its own hash, taking distinct members within the
 * zone cap. */
struct bl_ring {
    uint64_t *hash;
    uint32_t *member; /* index into the cluster's members */
    size_t n;
};
int bl_ring_build(struct bl_ring *r, const struct bl_cluster *c, uint32_t vnodes);
void bl_ring_place(const struct bl_ring *r, const struct bl_cluster *c, uint32_t *slots);
void bl_ring_free(struct bl_ring *r);

/* Weighted rendezvous: member m scores weight / -ln(u(p, m)) for
 * partition p; the highest scores win, within the zone cap. min_score[p]
 * keeps the lowest winning score of each row, so that an update only
 * recomputes rows a change can affect. */
struct bl_hrw {
    double *min_score; /* [partitions] */
};
int bl_hrw_init(struct bl_hrw *h, uint32_t partitions);
void bl_hrw_free(struct bl_hrw *h);
void bl_hrw_place_all(struct bl_hrw *h, const struct bl_cluster *c, uint32_t *slots);
/* Recomputes the rows that hold a member no longer live or listed in
 * changed (ids whose weight changed), and the rows a member in changed (or
 * new) could now win. With full set, every row. */
void bl_hrw_update(struct bl_hrw *h, const struct bl_cluster *c, const uint32_t *changed,
                   uint32_t changed_n, int full, uint32_t *slots);

#endif
