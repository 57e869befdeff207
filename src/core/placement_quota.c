/* Placement: the member table and the fair-share arithmetic. Shares are
 * exact fractions (water-filling over zones, then over members) so that
 * "within floor/ceil of the share" has one precise meaning everywhere. */
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "core/placement_internal.h"
#include "util/mem.h"

struct member_row {
    uint32_t id, zone, weight, orig;
};

static int cmp_member_row(const void *a, const void *b)
{
    const struct member_row *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int validate(const struct corral_placement_input *in)
{
    if (in == NULL || in->partitions == 0 || in->partitions > CORRAL_PLACEMENT_PARTITIONS_MAX ||
        in->replicas == 0 || in->replicas > CORRAL_PLACEMENT_REPLICAS_MAX ||
        in->members_count > CORRAL_PLACEMENT_MEMBERS_MAX ||
        (in->members_count > 0 && in->members == NULL))
        return CORRAL_EINVAL;
    for (uint32_t i = 0; i < in->members_count; i++) {
        const struct corral_placement_member *m = &in->members[i];
        if (m->id == NONE || m->weight == 0 || m->weight > CORRAL_PLACEMENT_WEIGHT_MAX)
            return CORRAL_EINVAL;
    }
    return 0;
}

/* Sorted copy of the members, rejecting duplicate ids. */
static int sort_members(struct pl_members *ms, const struct corral_placement_input *in,
                        struct member_row *rows)
{
    for (uint32_t i = 0; i < ms->n; i++)
        rows[i] =
            (struct member_row){in->members[i].id, in->members[i].zone, in->members[i].weight, i};
    qsort(rows, ms->n, sizeof(*rows), cmp_member_row);
    for (uint32_t i = 1; i < ms->n; i++)
        if (rows[i].id == rows[i - 1].id)
            return CORRAL_EINVAL;
    return 0;
}

/* Numbers zones by ascending label; returns CORRAL_EINVAL past the limit. */
static int number_zones(struct pl_members *ms, const struct member_row *rows, uint32_t *labels)
{
    for (uint32_t i = 0; i < ms->n; i++)
        labels[i] = rows[i].zone;
    qsort(labels, ms->n, sizeof(*labels), cmp_u32);
    uint32_t z = 0;
    for (uint32_t i = 0; i < ms->n; i++)
        if (i == 0 || labels[i] != labels[z - 1])
            labels[z++] = labels[i];
    if (z > CORRAL_PLACEMENT_ZONES_MAX)
        return CORRAL_EINVAL;
    ms->zones = z;
    for (uint32_t i = 0; i < ms->n; i++) {
        const uint32_t *hit = bsearch(&rows[i].zone, labels, z, sizeof(*labels), cmp_u32);
        ms->zone[i] = (uint32_t)(hit - labels);
        ms->zone_size[ms->zone[i]]++;
    }
    return 0;
}

/* x > y1 * y2, without overflowing 64 bits. */
static int exceeds(uint64_t x, uint64_t y1, uint64_t y2)
{
    if (y2 == 0)
        return x > 0;
    uint64_t q = x / y2, r = x % y2;
    return y1 < q || (y1 == q && r > 0);
}

static uint64_t zone_cap_slots(const struct pl_members *ms, uint32_t partitions, uint32_t z)
{
    uint32_t per = pl_zone_per(ms, z);
    return (uint64_t)partitions * per;
}

/* Water-fills the zone shares: zone z gets a[z] / b[z] slots. */
static void zone_shares(const struct pl_members *ms, uint32_t partitions, uint64_t *a, uint64_t *b)
{
    uint64_t weight[CORRAL_PLACEMENT_ZONES_MAX] = {0};
    uint8_t capped[CORRAL_PLACEMENT_ZONES_MAX] = {0};
    for (uint32_t i = 0; i < ms->n; i++)
        weight[ms->zone[i]] += ms->weight[i];
    uint64_t total = (uint64_t)partitions * ms->replicas_eff;
    for (;;) {
        uint64_t rem = total, wu = 0;
        for (uint32_t z = 0; z < ms->zones; z++) {
            if (capped[z])
                rem -= zone_cap_slots(ms, partitions, z);
            else
                wu += weight[z];
        }
        int changed = 0;
        for (uint32_t z = 0; z < ms->zones; z++) {
            if (!capped[z] && rem * weight[z] > zone_cap_slots(ms, partitions, z) * wu) {
                capped[z] = 1;
                changed = 1;
            }
        }
        if (changed)
            continue;
        for (uint32_t z = 0; z < ms->zones; z++) {
            a[z] = capped[z] ? zone_cap_slots(ms, partitions, z) : rem * weight[z];
            b[z] = capped[z] ? 1 : wu;
        }
        return;
    }
}

/* Water-fills zone z's a / b slots over its members, each capped at P. */
static void member_shares(struct pl_members *ms, uint32_t partitions, uint32_t z, uint64_t a,
                          uint64_t b, uint8_t *capped)
{
    for (;;) {
        uint64_t ncap = 0, wr = 0;
        for (uint32_t i = 0; i < ms->n; i++) {
            if (ms->zone[i] != z)
                continue;
            if (capped[i])
                ncap++;
            else
                wr += ms->weight[i];
        }
        uint64_t left = a - (uint64_t)partitions * ncap * b;
        int changed = 0;
        for (uint32_t i = 0; i < ms->n; i++) {
            if (ms->zone[i] == z && !capped[i] &&
                exceeds(left * ms->weight[i], (uint64_t)partitions * b, wr)) {
                capped[i] = 1;
                changed = 1;
            }
        }
        if (changed)
            continue;
        for (uint32_t i = 0; i < ms->n; i++) {
            if (ms->zone[i] != z)
                continue;
            ms->share[i] = capped[i]
                               ? (struct corral_placement_share){partitions, 1}
                               : (struct corral_placement_share){left * ms->weight[i], b * wr};
        }
        return;
    }
}

static void compute_shares(struct pl_members *ms, uint32_t partitions, uint8_t *capped)
{
    uint64_t a[CORRAL_PLACEMENT_ZONES_MAX], b[CORRAL_PLACEMENT_ZONES_MAX];
    zone_shares(ms, partitions, a, b);
    for (uint32_t z = 0; z < ms->zones; z++)
        member_shares(ms, partitions, z, a[z], b[z], capped);
}

static void effective_replicas(struct pl_members *ms, uint32_t replicas)
{
    if (ms->zones == 0) {
        ms->zone_cap = 0;
        ms->replicas_eff = 0;
        return;
    }
    ms->zone_cap = (replicas + ms->zones - 1) / ms->zones;
    uint32_t room = 0;
    for (uint32_t z = 0; z < ms->zones; z++)
        room += pl_zone_per(ms, z);
    ms->replicas_eff = room < replicas ? room : replicas;
}

static int build_table(struct pl_members *ms)
{
    uint32_t size = 2;
    while (size < 2 * ms->n)
        size *= 2;
    ms->table = corral_malloc(size * sizeof(*ms->table));
    if (ms->table == NULL)
        return CORRAL_ENOMEM;
    memset(ms->table, 0xff, size * sizeof(*ms->table));
    ms->table_mask = size - 1;
    for (uint32_t i = 0; i < ms->n; i++) {
        uint32_t h = (uint32_t)pl_mix(ms->id[i]) & ms->table_mask;
        while (ms->table[h] != NONE)
            h = (h + 1) & ms->table_mask;
        ms->table[h] = i;
    }
    /* ids are sorted: the last is the largest. */
    uint64_t limit = 8ull * ms->n + 256;
    if (ms->n > 0 && ms->id[ms->n - 1] < limit) {
        ms->direct_len = ms->id[ms->n - 1] + 1;
        ms->direct = corral_malloc(ms->direct_len * sizeof(*ms->direct));
        if (ms->direct == NULL)
            return CORRAL_ENOMEM;
        memset(ms->direct, 0xff, ms->direct_len * sizeof(*ms->direct));
        for (uint32_t i = 0; i < ms->n; i++)
            ms->direct[ms->id[i]] = i;
    }
    return 0;
}

int pl_members_init(struct pl_members *ms, const struct corral_placement_input *in)
{
    memset(ms, 0, sizeof(*ms));
    int rv = validate(in);
    if (rv != 0)
        return rv;
    ms->n = in->members_count;
    size_t n1 = ms->n + 1u;
    struct member_row *rows = corral_malloc(n1 * sizeof(*rows));
    uint32_t *labels = corral_malloc(n1 * sizeof(*labels));
    uint8_t *capped = corral_calloc(n1, 1);
    ms->id = corral_malloc(n1 * sizeof(uint32_t));
    ms->zone = corral_malloc(n1 * sizeof(uint32_t));
    ms->weight = corral_malloc(n1 * sizeof(uint32_t));
    ms->orig = corral_malloc(n1 * sizeof(uint32_t));
    ms->zone_size = corral_calloc(CORRAL_PLACEMENT_ZONES_MAX + 1, sizeof(uint32_t));
    ms->share = corral_calloc(n1, sizeof(*ms->share));
    rv = CORRAL_ENOMEM;
    if (!rows || !labels || !capped || !ms->id || !ms->zone || !ms->weight || !ms->orig ||
        !ms->zone_size || !ms->share)
        goto out;
    if ((rv = sort_members(ms, in, rows)) != 0 || (rv = number_zones(ms, rows, labels)) != 0)
        goto out;
    for (uint32_t i = 0; i < ms->n; i++) {
        ms->id[i] = rows[i].id;
        ms->weight[i] = rows[i].weight;
        ms->orig[i] = rows[i].orig;
    }
    if ((rv = build_table(ms)) != 0)
        goto out;
    effective_replicas(ms, in->replicas);
    compute_shares(ms, in->partitions, capped);
out:
    corral_free(rows);
    corral_free(labels);
    corral_free(capped);
    if (rv != 0)
        pl_members_close(ms);
    return rv;
}

void pl_members_close(struct pl_members *ms)
{
    corral_free(ms->id);
    corral_free(ms->zone);
    corral_free(ms->weight);
    corral_free(ms->orig);
    corral_free(ms->zone_size);
    corral_free(ms->share);
    corral_free(ms->table);
    corral_free(ms->direct);
    memset(ms, 0, sizeof(*ms));
}

uint32_t pl_members_probe(const struct pl_members *ms, uint32_t id)
{
    for (uint32_t h = (uint32_t)pl_mix(id) & ms->table_mask;; h = (h + 1) & ms->table_mask) {
        uint32_t i = ms->table[h];
        if (i == NONE || ms->id[i] == id)
            return i;
    }
}

/* Ordering of candidates for a spare ceiling: higher prio first, then the
 * higher hash of (id, seed). */
struct cand {
    int64_t prio;
    uint64_t room;
    uint64_t hash;
    uint32_t member;
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    if (x->room != y->room)
        return x->room > y->room ? -1 : 1;
    if (x->hash != y->hash)
        return x->hash > y->hash ? -1 : 1;
    return (x->member > y->member) - (x->member < y->member);
}

/* Gives `spare` ceilings to the sorted candidates, within each zone's room
 * (NULL: no zone limit) and, when limit is set, keeping target < limit. */
static uint64_t give_ceilings(const struct pl_members *ms, struct cand *cands, uint32_t ncand,
                              uint64_t spare, uint64_t *room, const uint32_t *limit,
                              uint32_t *target)
{
    qsort(cands, ncand, sizeof(*cands), cmp_cand);
    for (uint32_t j = 0; j < ncand && spare > 0; j++) {
        uint32_t i = cands[j].member;
        if (room != NULL && room[ms->zone[i]] == 0)
            continue;
        if (limit != NULL && target[i] >= limit[i])
            continue;
        target[i]++;
        spare--;
        if (room != NULL)
            room[ms->zone[i]]--;
    }
    return spare;
}

int pl_replica_targets(const struct pl_members *ms, uint32_t partitions, uint64_t seed,
                       const uint32_t *kept, const uint32_t *hole_room, uint32_t *target)
{
    uint64_t room[CORRAL_PLACEMENT_ZONES_MAX];
    for (uint32_t z = 0; z < ms->zones; z++)
        room[z] = zone_cap_slots(ms, partitions, z);
    struct cand *cands = corral_malloc((ms->n + 1u) * sizeof(*cands));
    if (cands == NULL)
        return CORRAL_ENOMEM;
    uint64_t spare = (uint64_t)partitions * ms->replicas_eff;
    uint32_t ncand = 0;
    for (uint32_t i = 0; i < ms->n; i++) {
        const struct corral_placement_share *s = &ms->share[i];
        target[i] = (uint32_t)pl_floor(s->num, s->den);
        spare -= target[i];
        room[ms->zone[i]] -= target[i];
        if (s->num % s->den != 0)
            cands[ncand++] = (struct cand){(int64_t)kept[i] - target[i], hole_room[i],
                                           pl_hash(ms->id[i], 0, seed), i};
    }
    spare = give_ceilings(ms, cands, ncand, spare, room, NULL, target);
    corral_free(cands);
    /* Each zone's floors leave room for its fractional part (its share is
     * within its cap), so the spare ceilings always fit. */
    return spare == 0 ? 0 : CORRAL_EINVAL;
}

int pl_primary_targets(const struct pl_members *ms, uint32_t partitions, uint64_t seed,
                       const uint32_t *kept, const uint32_t *replica_kept,
                       const uint32_t *replica_target, const uint32_t *orphans, uint32_t *target)
{
    if (ms->n == 0)
        return 0;
    if (ms->replicas_eff == 1) {
        memcpy(target, replica_target, ms->n * sizeof(*target));
        return 0;
    }
    struct cand *cands = corral_malloc((ms->n + 1u) * sizeof(*cands));
    if (cands == NULL)
        return CORRAL_ENOMEM;
    uint64_t spare = partitions;
    uint32_t ncand = 0;
    for (uint32_t i = 0; i < ms->n; i++) {
        uint64_t den = ms->share[i].den * ms->replicas_eff;
        target[i] = (uint32_t)pl_floor(ms->share[i].num, den);
        spare -= target[i];
        if (ms->share[i].num % den != 0)
            cands[ncand++] =
                (struct cand){(int64_t)kept[i] - target[i],
                              (uint64_t)orphans[i] << 1 | (replica_kept[i] <= replica_target[i]),
                              pl_hash(ms->id[i], 1, seed), i};
    }
    /* A primary must sit on one of the member's replicas. */
    spare = give_ceilings(ms, cands, ncand, spare, NULL, replica_target, target);
    if (spare > 0) {
        /* Only with members whose share is below one replica: fall back to
         * any member with a replica to spare; the check reports it. */
        ncand = 0;
        for (uint32_t i = 0; i < ms->n; i++)
            cands[ncand++] = (struct cand){(int64_t)kept[i], 0, pl_hash(ms->id[i], 2, seed), i};
        spare = give_ceilings(ms, cands, ncand, spare, NULL, replica_target, target);
    }
    corral_free(cands);
    return spare == 0 ? 0 : CORRAL_EINVAL;
}
