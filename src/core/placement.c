/* Placement: the sticky balanced algorithm. Keep every still-valid replica,
 * compute integer targets from the fair shares, fill empty slots and shed
 * surplus replicas toward members below target, then choose primaries
 * (placement_primary.c) and describe the difference from the old map. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "core/placement_internal.h"
#include "util/mem.h"

/* Candidates sampled per slot; the largest deficit wins. Four samples keep
 * deficits draining evenly (few stragglers at the end) at O(1) cost. */
#define PICK_SAMPLES 4

int corral_placement_map_init(struct corral_placement_map *map, uint32_t partitions,
                              uint32_t replicas)
{
    memset(map, 0, sizeof(*map));
    if (partitions == 0 || partitions > CORRAL_PLACEMENT_PARTITIONS_MAX || replicas == 0 ||
        replicas > CORRAL_PLACEMENT_REPLICAS_MAX)
        return CORRAL_EINVAL;
    size_t n = (size_t)partitions * replicas;
    map->slots = corral_malloc(n * sizeof(*map->slots));
    if (map->slots == NULL)
        return CORRAL_ENOMEM;
    memset(map->slots, 0xff, n * sizeof(*map->slots));
    map->partitions = partitions;
    map->replicas = replicas;
    return 0;
}

int corral_placement_map_copy(struct corral_placement_map *dst,
                              const struct corral_placement_map *src)
{
    int rv = corral_placement_map_init(dst, src->partitions, src->replicas);
    if (rv == 0)
        memcpy(dst->slots, src->slots,
               (size_t)src->partitions * src->replicas * sizeof(*src->slots));
    return rv;
}

void corral_placement_map_close(struct corral_placement_map *map)
{
    corral_free(map->slots);
    memset(map, 0, sizeof(*map));
}

void corral_placement_result_close(struct corral_placement_result *out)
{
    corral_placement_map_close(&out->map);
    corral_free(out->moves);
    corral_free(out->primary_changes);
    corral_free(out->drops);
    memset(out, 0, sizeof(*out));
}

uint32_t pl_row_find(const struct pl_ctx *c, uint32_t p, uint32_t m)
{
    const uint32_t *row = &c->hold[(size_t)p * c->R];
    for (uint32_t j = 0; j < c->count[p]; j++)
        if (row[j] == m)
            return j;
    return NONE;
}

uint32_t pl_zone_count(const struct pl_ctx *c, uint32_t p, uint32_t z, uint32_t except)
{
    const uint32_t *row = &c->hold[(size_t)p * c->R];
    uint32_t n = 0;
    for (uint32_t j = 0; j < c->count[p]; j++)
        n += row[j] != except && c->ms.zone[row[j]] == z;
    return n;
}

int pl_legal(const struct pl_ctx *c, uint32_t p, uint32_t m, uint32_t leaving)
{
    return pl_row_find(c, p, m) == NONE &&
           pl_zone_count(c, p, c->ms.zone[m], leaving) < c->ms.zone_cap;
}

void pl_row_put(struct pl_ctx *c, uint32_t p, uint32_t m, uint32_t leaving)
{
    size_t base = (size_t)p * c->R;
    uint32_t j = leaving == NONE ? c->count[p]++ : pl_row_find(c, p, leaving);
    assert(j < c->R && c->count[p] <= c->reff);
    c->hold[base + j] = m;
    c->fresh[base + j] = 1;
}

void pl_rec_add(struct pl_ctx *c, uint32_t m, uint32_t p)
{
    assert(c->recs < c->recs_max);
    uint32_t r = c->recs++;
    c->rec_part[r] = p;
    c->rec_member[r] = m;
    c->rec_next[r] = c->rec_head[m];
    c->rec_head[m] = r;
}

static void deficit_remove(struct pl_ctx *c, uint32_t m)
{
    uint32_t z = c->ms.zone[m];
    uint32_t last = c->def_list[c->def_start[z] + c->def_len[z] - 1];
    uint32_t pos = c->def_pos[m];
    c->def_list[pos] = last;
    c->def_pos[last] = pos;
    c->def_len[z]--;
    c->def_pos[m] = NONE;
}

void pl_gain(struct pl_ctx *c, uint32_t m)
{
    assert(c->have[m] < c->target[m]);
    if (++c->have[m] == c->target[m])
        deficit_remove(c, m);
}

static void deficit_build(struct pl_ctx *c)
{
    uint32_t start = 0;
    for (uint32_t z = 0; z < c->ms.zones; z++) {
        c->def_start[z] = start;
        c->def_len[z] = 0;
        start += c->ms.zone_size[z];
    }
    for (uint32_t m = 0; m < c->ms.n; m++) {
        c->def_pos[m] = NONE;
        if (c->have[m] < c->target[m]) {
            uint32_t z = c->ms.zone[m];
            c->def_pos[m] = c->def_start[z] + c->def_len[z]++;
            c->def_list[c->def_pos[m]] = m;
        }
    }
}

void pl_index_build(struct pl_ctx *c)
{
    memset(c->idx_start, 0, (c->ms.n + 1u) * sizeof(uint32_t));
    size_t slots = (size_t)c->P * c->R;
    for (size_t s = 0; s < slots; s++)
        if (s % c->R < c->count[s / c->R])
            c->idx_start[c->hold[s] + 1]++;
    for (uint32_t m = 0; m < c->ms.n; m++)
        c->idx_start[m + 1] += c->idx_start[m];
    /* Fill with a moving cursor per member, borrowing m_via as scratch. */
    for (uint32_t m = 0; m < c->ms.n; m++)
        c->m_via[m] = c->idx_start[m];
    for (uint32_t p = 0; p < c->P; p++)
        for (uint32_t j = 0; j < c->count[p]; j++) {
            uint32_t m = c->hold[(size_t)p * c->R + j];
            c->idx_part[c->m_via[m]++] = p;
        }
}

/* Better candidate for partition p: larger deficit, then larger hash. */
static int better(const struct pl_ctx *c, uint32_t p, uint32_t m, uint32_t best)
{
    if (best == NONE)
        return 1;
    uint32_t dm = c->target[m] - c->have[m], db = c->target[best] - c->have[best];
    if (dm != db)
        return dm > db;
    return pl_hash(p, c->ms.id[m], c->in->seed) > pl_hash(p, c->ms.id[best], c->in->seed);
}

/* A member below target that may take the slot `leaving` gives up in row p
 * (NONE: an empty slot), or NONE. */
static uint32_t pick(const struct pl_ctx *c, uint32_t p, uint32_t leaving)
{
    uint32_t zones[CORRAL_PLACEMENT_ZONES_MAX], nz = 0;
    uint64_t total = 0;
    for (uint32_t z = 0; z < c->ms.zones; z++)
        if (c->def_len[z] > 0 && pl_zone_count(c, p, z, leaving) < c->ms.zone_cap) {
            zones[nz++] = z;
            total += c->def_len[z];
        }
    if (total == 0)
        return NONE;
    uint32_t best = NONE;
    for (uint32_t t = 0; t < PICK_SAMPLES; t++) {
        uint64_t r = pl_hash(p, t, c->in->seed ^ 0x5bd1e995u) % total;
        uint32_t k = 0;
        while (r >= c->def_len[zones[k]])
            r -= c->def_len[zones[k++]];
        uint32_t m = c->def_list[c->def_start[zones[k]] + r];
        if (pl_row_find(c, p, m) == NONE && better(c, p, m, best))
            best = m;
    }
    if (best != NONE)
        return best;
    /* All samples already hold p: scan (rare, small lists by then). */
    for (uint32_t k = 0; k < nz; k++)
        for (uint32_t j = 0; j < c->def_len[zones[k]]; j++) {
            uint32_t m = c->def_list[c->def_start[zones[k]] + j];
            if (pl_row_find(c, p, m) == NONE && better(c, p, m, best))
                best = m;
        }
    return best;
}

/* Keeps, per row, the live holders in order while they are distinct and
 * within the zone cap; the old primary stays primary if it is kept. */
static void keep(struct pl_ctx *c)
{
    const struct corral_placement_map *cur = c->in->current;
    for (uint32_t p = 0; p < c->P; p++) {
        c->prim[p] = NONE;
        if (cur == NULL)
            continue;
        const uint32_t *row = &cur->slots[(size_t)p * c->R];
        for (uint32_t j = 0; j < c->R && c->count[p] < c->reff; j++) {
            uint32_t m = row[j] == NONE ? NONE : pl_members_find(&c->ms, row[j]);
            if (m == NONE || !pl_legal(c, p, m, NONE))
                continue;
            c->hold[(size_t)p * c->R + c->count[p]++] = m;
            c->kept[m]++;
            if (j == 0) {
                c->prim[p] = m;
                c->pkept[m]++;
            }
        }
    }
}

/* Fills empty slots, partitions in ascending order. A slot no member
 * below target may legally take goes to the repair search; if even that
 * fails it stays empty and is reported as unplaced. */
static int fill_holes(struct pl_ctx *c)
{
    for (uint32_t p = 0; p < c->P; p++) {
        while (c->count[p] < c->reff) {
            uint32_t m = pick(c, p, NONE);
            if (m == NONE) {
                int rv = pl_repair_hole(c, p);
                if (rv == CORRAL_ENOMEM)
                    return rv;
                if (rv != 0)
                    break;
                continue;
            }
            pl_row_put(c, p, m, NONE);
            pl_rec_add(c, m, p);
            pl_gain(c, m);
        }
    }
    return 0;
}

/* Last resort for a slot no search could fill (seen only when a member's
 * share is capped at P and zones are tight): a copy on the legal member
 * furthest below (or least above) its target. Durability before balance;
 * the check reports the imbalance. */
static void fill_leftovers(struct pl_ctx *c)
{
    for (uint32_t p = 0; p < c->P; p++) {
        while (c->count[p] < c->reff) {
            uint32_t best = NONE;
            for (uint32_t m = 0; m < c->ms.n; m++)
                if (pl_legal(c, p, m, NONE) &&
                    (best == NONE || (int64_t)c->have[m] - c->target[m] <
                                         (int64_t)c->have[best] - c->target[best]))
                    best = m;
            if (best == NONE)
                break;
            pl_row_put(c, p, best, NONE);
            pl_rec_add(c, best, p);
            if (c->have[best] < c->target[best])
                pl_gain(c, best);
            else
                c->have[best]++;
            c->moves_extra++;
        }
    }
}

/* Moves m's replica of p to a member below target, if one may take it. */
static int shed_one(struct pl_ctx *c, uint32_t m, uint32_t p)
{
    uint32_t to = pick(c, p, m);
    if (to == NONE)
        return 0;
    pl_row_put(c, p, to, m);
    c->have[m]--;
    if (c->prim[p] == m) {
        c->prim[p] = NONE;
        c->phave[m]--;
    }
    pl_rec_add(c, to, p);
    pl_gain(c, to);
    return 1;
}

struct keyed {
    uint64_t key;
    uint32_t part;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->part > y->part) - (x->part < y->part);
}

/* Sheds m's surplus. When m also leads more partitions than its primary
 * target, its primaries go first: leadership travels with the moved data.
 * Otherwise non-primary replicas go first, so that no primary changes. */
static int shed_member(struct pl_ctx *c, uint32_t m, struct keyed *tmp)
{
    uint32_t n = 0;
    for (uint32_t s = c->idx_start[m]; s < c->idx_start[m + 1]; s++) {
        uint32_t p = c->idx_part[s], j = pl_row_find(c, p, m);
        if (j != NONE && !c->fresh[(size_t)p * c->R + j])
            tmp[n++] = (struct keyed){pl_hash(p, c->ms.id[m], c->in->seed), p};
    }
    qsort(tmp, n, sizeof(*tmp), cmp_keyed);
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t i = 0; i < n && c->have[m] > c->target[m]; i++) {
            uint32_t p = tmp[i].part;
            int leads = c->prim[p] == m;
            if (pass == 0 && !(leads && c->phave[m] > c->ptarget[m]))
                continue;
            if (pass == 1 && leads)
                continue;
            if (pl_row_find(c, p, m) == NONE)
                continue;
            shed_one(c, m, p);
        }
    }
    while (c->have[m] > c->target[m]) {
        int rv = pl_repair_surplus(c, m);
        if (rv == CORRAL_ENOMEM)
            return rv;
        if (rv != 0)
            break;
    }
    return 0;
}

static int shed(struct pl_ctx *c)
{
    uint32_t most = 0, n = 0;
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint32_t held = c->idx_start[m + 1] - c->idx_start[m];
        most = held > most ? held : most;
    }
    struct keyed *order = corral_malloc((c->ms.n + 1u) * sizeof(*order));
    struct keyed *tmp = corral_malloc((most + 1u) * sizeof(*tmp));
    if (order == NULL || tmp == NULL) {
        corral_free(order);
        corral_free(tmp);
        return CORRAL_ENOMEM;
    }
    for (uint32_t m = 0; m < c->ms.n; m++)
        if (c->have[m] > c->target[m])
            order[n++] = (struct keyed){UINT64_MAX - (c->have[m] - c->target[m]), m};
    qsort(order, n, sizeof(*order), cmp_keyed);
    int rv = 0;
    for (uint32_t i = 0; i < n && rv == 0; i++)
        rv = shed_member(c, order[i].part, tmp);
    corral_free(order);
    corral_free(tmp);
    return rv;
}

static void ctx_close(struct pl_ctx *c)
{
    void *arrays[] = {c->hold,      c->fresh,     c->count,    c->prim,     c->kept,
                      c->pkept,     c->target,    c->ptarget,  c->have,     c->phave,
                      c->rec_part,  c->rec_member, c->rec_next, c->rec_head, c->def_list,
                      c->def_pos,   c->def_start, c->def_len,  c->idx_start, c->idx_part,
                      c->p_seen,    c->p_via,     c->p_rec,    c->queue,    c->m_seen,
                      c->m_via,     c->p_zones,   c->entries};
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
        corral_free(arrays[i]);
    pl_members_close(&c->ms);
}

static int ctx_init(struct pl_ctx *c, const struct corral_placement_input *in)
{
    memset(c, 0, sizeof(*c));
    int rv = pl_members_init(&c->ms, in);
    if (rv != 0)
        return rv;
    const struct corral_placement_map *cur = in->current;
    if (cur != NULL && (cur->partitions != in->partitions || cur->replicas != in->replicas ||
                        cur->slots == NULL)) {
        pl_members_close(&c->ms);
        return CORRAL_EINVAL;
    }
    c->in = in;
    c->P = in->partitions;
    c->R = in->replicas;
    c->reff = c->ms.replicas_eff;
    size_t slots = (size_t)c->P * c->R, n = c->ms.n + 1u, z = c->ms.zones + 1u;
    size_t u = sizeof(uint32_t);
    c->recs_max = (uint32_t)slots;
    c->hold = corral_malloc(slots * u);
    c->fresh = corral_calloc(slots, 1);
    c->count = corral_calloc(c->P, 1);
    c->prim = corral_malloc(c->P * u);
    uint32_t **per_member[] = {&c->kept,     &c->pkept,  &c->target,   &c->ptarget, &c->have,
                               &c->phave,    &c->rec_head, &c->def_list, &c->def_pos,
                               &c->m_seen,   &c->m_via};
    for (size_t i = 0; i < sizeof(per_member) / sizeof(per_member[0]); i++)
        *per_member[i] = corral_calloc(n, u);
    c->idx_start = corral_calloc(n + 1, u);
    c->def_start = corral_calloc(z, u);
    c->def_len = corral_calloc(z, u);
    c->rec_part = corral_malloc(slots * u);
    c->rec_member = corral_malloc(slots * u);
    c->rec_next = corral_malloc(slots * u);
    c->idx_part = corral_malloc(slots * u);
    c->p_seen = corral_calloc(c->P, u);
    c->p_via = corral_malloc(c->P * u);
    c->p_rec = corral_malloc(c->P * u);
    c->queue = corral_malloc(c->P * u);
    c->p_zones = corral_malloc(c->P * sizeof(uint64_t));
    int ok = c->hold && c->fresh && c->count && c->prim && c->idx_start && c->def_start &&
             c->def_len && c->rec_part && c->rec_member && c->rec_next && c->idx_part &&
             c->p_seen && c->p_via && c->p_rec && c->queue && c->p_zones;
    for (size_t i = 0; i < sizeof(per_member) / sizeof(per_member[0]); i++)
        ok = ok && *per_member[i] != NULL;
    if (!ok) {
        ctx_close(c);
        return CORRAL_ENOMEM;
    }
    memset(c->rec_head, 0xff, n * u);
    return 0;
}

/* Per member, how many empty slots it may legally fill: those in rows with
 * room in its zone, less those in rows it already holds. Stored in have[]
 * (free until the fill starts). */
static void hole_room(struct pl_ctx *c)
{
    uint64_t room[CORRAL_PLACEMENT_ZONES_MAX] = {0};
    memset(c->have, 0, c->ms.n * sizeof(uint32_t));
    for (uint32_t p = 0; p < c->P; p++) {
        if (c->count[p] == c->reff)
            continue;
        uint32_t zc[CORRAL_PLACEMENT_ZONES_MAX] = {0}, holes = c->reff - c->count[p];
        const uint32_t *row = &c->hold[(size_t)p * c->R];
        for (uint32_t j = 0; j < c->count[p]; j++)
            zc[c->ms.zone[row[j]]]++;
        for (uint32_t z = 0; z < c->ms.zones; z++)
            if (zc[z] < c->ms.zone_cap)
                room[z] += holes < c->ms.zone_cap - zc[z] ? holes : c->ms.zone_cap - zc[z];
        for (uint32_t j = 0; j < c->count[p]; j++)
            if (zc[c->ms.zone[row[j]]] < c->ms.zone_cap)
                c->have[row[j]]++;
    }
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint64_t r = room[c->ms.zone[m]];
        c->have[m] = (uint32_t)(r > c->have[m] ? r - c->have[m] : 0);
    }
}

/* Per member, the partitions whose primary is lost that it holds a kept
 * replica of. Stored in phave[] (free until primaries are counted). */
static const uint32_t *orphan_room(struct pl_ctx *c)
{
    memset(c->phave, 0, c->ms.n * sizeof(uint32_t));
    for (uint32_t p = 0; p < c->P; p++)
        if (c->prim[p] == NONE)
            for (uint32_t j = 0; j < c->count[p]; j++)
                c->phave[c->hold[(size_t)p * c->R + j]]++;
    return c->phave;
}

static void lower_bounds(const struct pl_ctx *c, struct corral_placement_stats *st)
{
    for (uint32_t m = 0; m < c->ms.n; m++) {
        if (c->target[m] > c->kept[m])
            st->moves_lower_bound += c->target[m] - c->kept[m];
        if (c->ptarget[m] > c->pkept[m])
            st->primary_lower_bound += c->ptarget[m] - c->pkept[m];
    }
}

int corral_placement_compute(const struct corral_placement_input *in,
                             struct corral_placement_result *out)
{
    memset(out, 0, sizeof(*out));
    struct pl_ctx c;
    int rv = ctx_init(&c, in);
    if (rv != 0)
        return rv;
    keep(&c);
    hole_room(&c);
    rv = pl_replica_targets(&c.ms, c.P, in->seed, c.kept, c.have, c.target);
    if (rv == 0)
        rv = pl_primary_targets(&c.ms, c.P, in->seed, c.pkept, c.kept, c.target,
                                orphan_room(&c), c.ptarget);
    if (rv != 0)
        goto out;
    lower_bounds(&c, &out->stats);
    memcpy(c.have, c.kept, c.ms.n * sizeof(uint32_t));
    memcpy(c.phave, c.pkept, c.ms.n * sizeof(uint32_t));
    deficit_build(&c);
    pl_index_build(&c);
    if ((rv = fill_holes(&c)) != 0 || (rv = shed(&c)) != 0)
        goto out;
    fill_leftovers(&c);
    pl_index_build(&c);
    if ((rv = pl_primaries(&c)) == 0)
        rv = pl_output(&c, out);
out:
    ctx_close(&c);
    if (rv != 0)
        corral_placement_result_close(out);
    return rv;
}
