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

void pl_deficit_add(struct pl_ctx *c, uint32_t m)
{
    uint32_t z = c->ms.zone[m];
    c->def_pos[m] = c->def_start[z] + c->def_len[z]++;
    c->def_list[c->def_pos[m]] = m;
}

void pl_deficit_remove(struct pl_ctx *c, uint32_t m)
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
        pl_deficit_remove(c, m);
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
        if (c->have[m] < c->target[m])
            pl_deficit_add(c, m);
    }
}

void pl_index_build(struct pl_ctx *c)
{
    memset(c->idx_start, 0, (c->ms.n + 1u) * sizeof(uint32_t));
    for (uint32_t p = 0; p < c->P; p++)
        for (uint32_t j = 0; j < c->count[p]; j++)
            c->idx_start[c->hold[(size_t)p * c->R + j] + 1]++;
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
    if (cur == NULL) {
        memset(c->prim, 0xff, c->P * sizeof(uint32_t));
        memset(c->count, 0, c->P);
        return;
    }
    const uint32_t *zone = c->ms.zone;
    for (uint32_t p = 0; p < c->P; p++) {
        const uint32_t *row = &cur->slots[(size_t)p * c->R];
        uint32_t *held = &c->hold[(size_t)p * c->R], n = 0;
        uint32_t zones[CORRAL_PLACEMENT_REPLICAS_MAX];
        c->prim[p] = NONE;
        for (uint32_t j = 0; j < c->R && n < c->reff; j++) {
            uint32_t m = pl_members_find(&c->ms, row[j]);
            if (m == NONE)
                continue;
            uint32_t z = zone[m], dup = 0, same_zone = 0;
            for (uint32_t k = 0; k < n; k++) {
                dup |= held[k] == m;
                same_zone += zones[k] == z;
            }
            if (!dup && same_zone >= c->ms.zone_cap) {
                /* Live, but its zone is full in this row (the zone cap
                 * fell): keeping it instead of another would cost nothing. */
                c->zdrop[m]++;
                c->any_zdrop = 1;
            }
            if (dup || same_zone >= c->ms.zone_cap)
                continue;
            held[n] = m;
            zones[n++] = z;
            c->kept[m]++;
            if (j == 0) {
                c->prim[p] = m;
                c->pkept[m]++;
            }
        }
        c->count[p] = (uint8_t)n;
    }
}

/* Fills empty slots, the most constrained rows first (fewest zones with
 * room: their copies can only go to a few zones, so they must not find
 * those zones' deficits spent on rows that could have gone anywhere), then
 * by partition. A slot no member below target may legally take goes to
 * the repair search; if even that fails it stays empty and is reported as
 * unplaced. */
/* Rows with empty slots into c->order, by zones with room, then by
 * partition (a counting sort). Returns how many. */
static uint32_t hole_order(struct pl_ctx *c)
{
    uint32_t start[CORRAL_PLACEMENT_ZONES_MAX + 2] = {0}, n = 0;
    for (uint32_t p = 0; p < c->P; p++) {
        c->p_via[p] = NONE;
        if (c->count[p] == c->reff)
            continue;
        uint32_t open = 0;
        for (uint32_t z = 0; z < c->ms.zones; z++)
            open += pl_zone_count(c, p, z, NONE) < c->ms.zone_cap;
        c->p_via[p] = open;
        start[open + 1]++;
        n++;
    }
    for (uint32_t k = 1; k <= c->ms.zones + 1u; k++)
        start[k] += start[k - 1];
    for (uint32_t p = 0; p < c->P; p++)
        if (c->p_via[p] != NONE)
            c->order[start[c->p_via[p]]++] = p;
    return n;
}

static int fill_holes(struct pl_ctx *c)
{
    uint32_t rows = hole_order(c);
    for (uint32_t i = 0; i < rows; i++) {
        uint32_t p = c->order[i];
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
                    (best == NONE ||
                     (int64_t)c->have[m] - c->target[m] < (int64_t)c->have[best] - c->target[best]))
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

static uint32_t gcd(uint32_t a, uint32_t b)
{
    while (b != 0) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Sheds m's surplus, visiting its replicas in a pseudo-random order (a
 * start and a stride coprime to their number, both from a hash of its
 * id), so that members shed unrelated partitions. When m also leads
 * more partitions than its primary target, its primaries go first:
 * leadership travels with the moved data. Otherwise non-primary replicas
 * go first, so that no primary changes. */
static int shed_member(struct pl_ctx *c, uint32_t m)
{
    uint32_t first = c->idx_start[m], len = c->idx_start[m + 1] - first;
    uint64_t h = pl_hash(c->ms.id[m], 3, c->in->seed);
    uint32_t off = len ? (uint32_t)(h % len) : 0, stride = len ? (uint32_t)((h >> 32) % len) : 0;
    while (len > 0 && gcd(stride, len) != 1)
        stride = stride + 1 == len ? 1 : stride + 1;
    for (int pass = 0; pass < 3 && len > 0; pass++) {
        for (uint32_t i = 0, k = off; i < len && c->have[m] > c->target[m]; i++) {
            uint32_t p = c->idx_part[first + k], j = pl_row_find(c, p, m);
            k = k + stride >= len ? k + stride - len : k + stride;
            if (j == NONE || c->fresh[(size_t)p * c->R + j])
                continue;
            int leads = c->prim[p] == m;
            if (pass == 0 && !(leads && c->phave[m] > c->ptarget[m]))
                continue;
            if (pass == 1 && leads)
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
    uint32_t n = 0;
    struct keyed *order = corral_malloc((c->ms.n + 1u) * sizeof(*order));
    if (order == NULL)
        return CORRAL_ENOMEM;
    for (uint32_t m = 0; m < c->ms.n; m++)
        if (c->have[m] > c->target[m])
            order[n++] = (struct keyed){UINT64_MAX - (c->have[m] - c->target[m]), m};
    qsort(order, n, sizeof(*order), cmp_keyed);
    int rv = 0;
    for (uint32_t i = 0; i < n && rv == 0; i++)
        rv = shed_member(c, order[i].part);
    corral_free(order);
    return rv;
}

/* The engine: a computation's working arrays and its result, kept between
 * calls so that an event costs no page faults for fresh memory. */
struct corral_placement_engine {
    struct pl_ctx c;
    uint32_t P, R, n_cap; /* shape of the arrays in c; 0 when none */
    struct corral_placement_result res;
    uint32_t res_P, res_R; /* shape of the arrays in res */
};

static void ctx_free_arrays(struct pl_ctx *c)
{
    void *arrays[] = {
        c->hold,      c->fresh,    c->count,    c->prim,    c->kept,      c->pkept,
        c->target,    c->ptarget,  c->have,     c->phave,   c->rec_part,  c->rec_member,
        c->rec_next,  c->rec_head, c->def_list, c->def_pos, c->def_start, c->def_len,
        c->idx_start, c->idx_part, c->p_seen,   c->p_via,   c->p_rec,     c->queue,
        c->m_seen,    c->m_via,    c->p_zones,  c->entries, c->lead_head, c->lead_next,
        c->lead_prev, c->unv_list, c->unv_pos,  c->opp,     c->order,     c->zdrop};
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
        corral_free(arrays[i]);
    memset(c, 0, sizeof(*c));
}

/* Allocates the working arrays for P partitions, R slots per row and up to
 * n_cap - 1 members. */
static int ctx_alloc(struct pl_ctx *c, uint32_t P, uint32_t R, uint32_t n_cap)
{
    size_t slots = (size_t)P * R, n = n_cap, z = CORRAL_PLACEMENT_ZONES_MAX + 1u;
    size_t u = sizeof(uint32_t);
    c->hold = corral_malloc(slots * u);
    c->fresh = corral_malloc(slots);
    c->count = corral_malloc(P);
    c->prim = corral_malloc(P * u);
    uint32_t **per_member[] = {&c->kept,     &c->pkept,   &c->target,   &c->ptarget,
                               &c->have,     &c->phave,   &c->rec_head, &c->def_list,
                               &c->def_pos,  &c->m_seen,  &c->m_via,    &c->lead_head,
                               &c->unv_list, &c->unv_pos, &c->opp,      &c->zdrop};
    for (size_t i = 0; i < sizeof(per_member) / sizeof(per_member[0]); i++)
        *per_member[i] = corral_calloc(n, u);
    c->idx_start = corral_calloc(n + 1, u);
    c->def_start = corral_calloc(z, u);
    c->def_len = corral_calloc(z, u);
    c->rec_part = corral_malloc(slots * u);
    c->rec_member = corral_malloc(slots * u);
    c->rec_next = corral_malloc(slots * u);
    c->idx_part = corral_malloc(slots * u);
    c->p_seen = corral_calloc(P, u);
    c->p_via = corral_malloc(P * u);
    c->p_rec = corral_malloc(P * u);
    c->queue = corral_malloc(P * u);
    c->p_zones = corral_malloc(P * sizeof(uint64_t));
    c->lead_next = corral_malloc(P * u);
    c->lead_prev = corral_malloc(P * u);
    c->order = corral_malloc(P * u);
    int ok = c->hold && c->fresh && c->count && c->prim && c->idx_start && c->def_start &&
             c->def_len && c->rec_part && c->rec_member && c->rec_next && c->idx_part &&
             c->p_seen && c->p_via && c->p_rec && c->queue && c->p_zones && c->lead_next &&
             c->lead_prev && c->order;
    for (size_t i = 0; i < sizeof(per_member) / sizeof(per_member[0]); i++)
        ok = ok && *per_member[i] != NULL;
    if (!ok) {
        ctx_free_arrays(c);
        return CORRAL_ENOMEM;
    }
    return 0;
}

/* Prepares the engine's context for in: validates and sorts the members,
 * (re)allocates the arrays when the shape grew, and resets what a
 * computation expects to start from. */
static int ctx_init(struct corral_placement_engine *e, const struct corral_placement_input *in)
{
    struct pl_ctx *c = &e->c;
    struct pl_members ms;
    int rv = pl_members_init(&ms, in);
    if (rv != 0)
        return rv;
    const struct corral_placement_map *cur = in->current;
    if (cur != NULL && (cur->partitions != in->partitions || cur->replicas != in->replicas ||
                        cur->slots == NULL)) {
        pl_members_close(&ms);
        return CORRAL_EINVAL;
    }
    if (e->P != in->partitions || e->R != in->replicas || ms.n + 1u > e->n_cap) {
        ctx_free_arrays(c);
        e->P = e->R = e->n_cap = 0;
        /* Room for a quarter more members, so that joins do not reallocate. */
        uint32_t n_cap = ms.n + 1u + ms.n / 4u;
        if ((rv = ctx_alloc(c, in->partitions, in->replicas, n_cap)) != 0) {
            pl_members_close(&ms);
            return rv;
        }
        e->P = in->partitions;
        e->R = in->replicas;
        e->n_cap = n_cap;
    }
    c->ms = ms;
    c->in = in;
    c->P = in->partitions;
    c->R = in->replicas;
    c->reff = c->ms.replicas_eff;
    c->recs = 0;
    c->recs_max = (uint32_t)((size_t)c->P * c->R);
    c->moves_extra = 0;
    size_t u = sizeof(uint32_t);
    memset(c->fresh, 0, (size_t)c->P * c->R);
    memset(c->kept, 0, e->n_cap * u);
    memset(c->pkept, 0, e->n_cap * u);
    memset(c->zdrop, 0, e->n_cap * u);
    c->any_zdrop = 0;
    memset(c->rec_head, 0xff, e->n_cap * u);
    return 0;
}

/* Sizes the result arrays for the shape of c and empties the result. */
static int result_prepare(struct corral_placement_engine *e)
{
    struct corral_placement_result *r = &e->res;
    const struct pl_ctx *c = &e->c;
    if (e->res_P != c->P || e->res_R != c->R) {
        corral_placement_result_close(r);
        e->res_P = e->res_R = 0;
        size_t slots = (size_t)c->P * c->R;
        int rv = corral_placement_map_init(&r->map, c->P, c->R);
        if (rv != 0)
            return rv;
        r->moves = corral_malloc((slots + 1u) * sizeof(*r->moves));
        r->primary_changes = corral_malloc(c->P * sizeof(*r->primary_changes));
        r->drops = corral_malloc(slots * sizeof(*r->drops));
        if (!r->moves || !r->primary_changes || !r->drops) {
            corral_placement_result_close(r);
            return CORRAL_ENOMEM;
        }
        e->res_P = c->P;
        e->res_R = c->R;
    }
    r->moves_count = r->primary_changes_count = r->drops_count = 0;
    memset(&r->stats, 0, sizeof(r->stats));
    return 0;
}

/* Adds a row's forced copies to every zone set: with kept[Y] its kept
 * members in Y and out[Y] what the zones outside Y can hold, it needs
 * reff - out[Y] - kept[Y] new ones in Y. Sums over sets are built from
 * the set without its lowest zone. */
static void forced_sets(struct pl_ctx *c, const uint32_t *zc, const uint32_t *per, uint32_t all)
{
    uint32_t sets = 1u << c->ms.zones;
    uint32_t kept[1u << PL_SUBSET_ZONES], inside[1u << PL_SUBSET_ZONES];
    kept[0] = inside[0] = 0;
    for (uint32_t y = 1; y < sets; y++) {
        uint32_t low = (uint32_t)__builtin_ctz(y), rest = y & (y - 1);
        kept[y] = kept[rest] + zc[low];
        inside[y] = inside[rest] + per[low];
        uint32_t out = all - inside[y];
        if (c->reff > out + kept[y])
            c->forced_set[y] += c->reff - out - kept[y];
    }
}

/* After the zone cap fell, the keep pass dropped, in rows with too many
 * members of one zone, whichever came last. Where a dropped member is
 * below its floor and a kept member of the same zone in that row above its
 * ceiling, swap them: balance for free, instead of a copy later. The old
 * primary always stays. */
static void rebalance_kept(struct pl_ctx *c)
{
    const struct corral_placement_map *cur = c->in->current;
    for (uint32_t p = 0; p < c->P; p++) {
        const uint32_t *old = &cur->slots[(size_t)p * c->R];
        uint32_t *held = &c->hold[(size_t)p * c->R];
        for (uint32_t j = 0; j < c->R; j++) {
            uint32_t d = pl_members_find(&c->ms, old[j]);
            if (d == NONE || pl_row_find(c, p, d) != NONE ||
                c->kept[d] >= pl_share_floor(&c->ms, d))
                continue;
            for (uint32_t k = 0; k < c->count[p]; k++) {
                uint32_t m = held[k];
                if (m == d || m == c->prim[p] || c->ms.zone[m] != c->ms.zone[d] ||
                    c->kept[m] <= pl_share_ceil(&c->ms, m))
                    continue;
                held[k] = d;
                c->kept[d]++;
                c->kept[m]--;
                c->zdrop[d]--;
                c->zdrop[m]++;
                break;
            }
        }
    }
}

/* Per member, how many empty slots it may legally fill: those in rows with
 * room in its zone, less those in rows it already holds. Stored in have[]
 * (free until the fill starts). Also counts the empty slots and, per zone,
 * the copies they force into it: a row holds at most min(zone_cap, size)
 * members of any zone, so it needs at least reff minus what the other
 * zones can hold from zone z, less the kept members it has there. That
 * holds for any valid map, whatever else it moves. */
static void hole_room(struct pl_ctx *c)
{
    uint64_t room[CORRAL_PLACEMENT_ZONES_MAX] = {0};
    uint32_t per[CORRAL_PLACEMENT_ZONES_MAX], all = 0;
    for (uint32_t z = 0; z < c->ms.zones; z++) {
        per[z] = pl_zone_per(&c->ms, z);
        all += per[z];
        c->forced[z] = 0;
    }
    c->holes = 0;
    memset(c->have, 0, c->ms.n * sizeof(uint32_t));
    /* Sets only matter when something was kept (else every slot is a copy
     * anyway) and while they are few. */
    uint64_t any_kept = 0;
    for (uint32_t m = 0; m < c->ms.n; m++)
        any_kept += c->kept[m];
    c->forced_set = NULL;
    if (any_kept > 0 && c->ms.zones > 1 && c->ms.zones <= PL_SUBSET_ZONES) {
        c->forced_set = c->forced_sets_buf;
        memset(c->forced_set, 0, (sizeof(uint64_t) << c->ms.zones));
    }
    for (uint32_t p = 0; p < c->P; p++) {
        if (c->count[p] == c->reff)
            continue;
        uint32_t zc[CORRAL_PLACEMENT_ZONES_MAX] = {0}, holes = c->reff - c->count[p];
        const uint32_t *row = &c->hold[(size_t)p * c->R];
        c->holes += holes;
        for (uint32_t j = 0; j < c->count[p]; j++)
            zc[c->ms.zone[row[j]]]++;
        for (uint32_t z = 0; z < c->ms.zones; z++) {
            if (zc[z] < c->ms.zone_cap)
                room[z] += holes < c->ms.zone_cap - zc[z] ? holes : c->ms.zone_cap - zc[z];
            /* reff <= all, so reff - (all - per[z]) <= per[z]. */
            uint32_t need = c->reff + per[z] > all ? c->reff + per[z] - all : 0;
            c->forced[z] += need > zc[z] ? need - zc[z] : 0;
        }
        for (uint32_t j = 0; j < c->count[p]; j++)
            if (zc[c->ms.zone[row[j]]] < c->ms.zone_cap)
                c->have[row[j]]++;
        if (c->forced_set != NULL)
            forced_sets(c, zc, per, all);
    }
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint64_t r = room[c->ms.zone[m]];
        c->have[m] = (uint32_t)(r > c->have[m] ? r - c->have[m] : 0);
    }
}

/* Per zone: deficit (new copies its targets call for), targets and slot
 * cap. */
struct zone_sums {
    uint64_t deficit[CORRAL_PLACEMENT_ZONES_MAX], target[CORRAL_PLACEMENT_ZONES_MAX];
    uint64_t cap[CORRAL_PLACEMENT_ZONES_MAX];
};

static void zone_sums(const struct pl_ctx *c, struct zone_sums *zs)
{
    memset(zs, 0, sizeof(*zs));
    for (uint32_t z = 0; z < c->ms.zones; z++) {
        uint32_t per = pl_zone_per(&c->ms, z);
        zs->cap[z] = (uint64_t)c->P * per;
    }
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint32_t z = c->ms.zone[m];
        zs->target[z] += c->target[m];
        zs->deficit[z] += c->target[m] > c->kept[m] ? c->target[m] - c->kept[m] : 0;
    }
}

/* A demand: the zones of mask (bit z: zone z) must take at least `need`
 * new copies between them. */
struct demand {
    uint64_t mask, need;
};

static uint64_t mask_sum(const uint64_t *per_zone, uint64_t mask)
{
    uint64_t sum = 0;
    for (; mask != 0; mask &= mask - 1)
        sum += per_zone[__builtin_ctzll(mask)];
    return sum;
}

/* The demands worth checking: every zone set with forced copies, or the
 * single zones when there are too many zones for sets. */
static uint32_t demands(const struct pl_ctx *c, struct demand *out)
{
    uint32_t n = 0;
    if (c->forced_set != NULL) {
        for (uint32_t y = 1; y < 1u << c->ms.zones; y++)
            if (c->forced_set[y] > 0)
                out[n++] = (struct demand){y, c->forced_set[y]};
        return n;
    }
    for (uint32_t z = 0; z < c->ms.zones; z++)
        if (c->forced[z] > 0)
            out[n++] = (struct demand){1ull << z, c->forced[z]};
    return n;
}

/* The spare ceilings were given by member (kept replicas first), blind to
 * which zones the empty slots need. Where a set of zones takes fewer new
 * copies than are forced into it, move ceilings to its members from
 * members of other zones, as long as no other demand falls short; each
 * such move leaves the per-member bound unchanged (the receiver's ceiling
 * costs a copy, the donor's saved one). */
static void zone_targets(struct pl_ctx *c)
{
    struct zone_sums zs;
    struct demand dem[1u << PL_SUBSET_ZONES];
    uint32_t nd = demands(c, dem);
    zone_sums(c, &zs);
    for (uint32_t moved = 0; moved < c->ms.n; moved++) {
        /* The demand furthest short that some member can still help. */
        uint32_t worst = NONE, y = NONE, d = NONE;
        uint64_t short_by = 0;
        for (uint32_t k = 0; k < nd; k++) {
            uint64_t has = mask_sum(zs.deficit, dem[k].mask);
            if (has < dem[k].need && dem[k].need - has > short_by) {
                worst = k;
                short_by = dem[k].need - has;
            }
        }
        if (worst == NONE)
            return;
        uint64_t in = dem[worst].mask;
        for (uint32_t m = 0; m < c->ms.n; m++) {
            uint32_t z = c->ms.zone[m];
            if ((in >> z & 1) && c->target[m] < pl_share_ceil(&c->ms, m) &&
                c->kept[m] <= c->target[m] && zs.target[z] < zs.cap[z] &&
                (y == NONE || c->kept[m] > c->kept[y]))
                y = m;
        }
        if (y == NONE)
            return;
        /* A donor's zone may lose one copy of deficit only where every
         * demand counting it (and not the receiver's zone) has one spare. */
        uint8_t ok[CORRAL_PLACEMENT_ZONES_MAX];
        for (uint32_t z = 0; z < c->ms.zones; z++) {
            ok[z] = !(in >> z & 1);
            for (uint32_t k = 0; k < nd && ok[z]; k++)
                if ((dem[k].mask >> z & 1) && !(dem[k].mask >> c->ms.zone[y] & 1))
                    ok[z] = mask_sum(zs.deficit, dem[k].mask) > dem[k].need;
        }
        for (uint32_t m = 0; m < c->ms.n; m++)
            if (ok[c->ms.zone[m]] && c->target[m] > c->kept[m] &&
                c->target[m] > pl_share_floor(&c->ms, m) && (d == NONE || c->kept[m] < c->kept[d]))
                d = m;
        if (d == NONE)
            return;
        c->target[y]++;
        c->target[d]--;
        zs.target[c->ms.zone[y]]++;
        zs.deficit[c->ms.zone[y]]++;
        zs.target[c->ms.zone[d]]--;
        zs.deficit[c->ms.zone[d]]--;
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

/* The bounds on new copies and primary changes. Copies: the per-member
 * bound (every member's target less what it kept), or, when larger, the
 * zone bound: every empty slot needs a copy, and a zone whose members
 * cannot take all the copies forced into it (its ceilings less its kept
 * replicas) must drop kept replicas of its own to make room, each costing
 * one more copy. Both hold for any balanced map, so the larger does. */
static int lower_bounds(struct pl_ctx *c, struct corral_placement_stats *st)
{
    /* Where the keep pass chose which holders of a too-full zone stay, the
     * per-member bound counts every live holder as keepable, with the
     * targets that suit those counts best (opp and m_via are free here). */
    const uint32_t *target = c->target, *kept_max = c->kept;
    if (c->any_zdrop) {
        for (uint32_t m = 0; m < c->ms.n; m++)
            c->opp[m] = c->kept[m] + c->zdrop[m];
        int rv = pl_replica_targets(&c->ms, c->P, c->in->seed, c->opp, c->have, c->m_via);
        if (rv != 0)
            return rv;
        target = c->m_via;
        kept_max = c->opp;
    }
    uint64_t room[CORRAL_PLACEMENT_ZONES_MAX] = {0}, kept[CORRAL_PLACEMENT_ZONES_MAX] = {0};
    uint64_t floors[CORRAL_PLACEMENT_ZONES_MAX] = {0}, caps[CORRAL_PLACEMENT_ZONES_MAX];
    uint64_t member_lb = 0, zone_lb = c->holes;
    uint64_t all = c->ms.zones < 64 ? (1ull << c->ms.zones) - 1 : ~0ull;
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint32_t z = c->ms.zone[m];
        if (target[m] > kept_max[m])
            member_lb += target[m] - kept_max[m];
        if (c->ptarget[m] > c->pkept[m])
            st->primary_lower_bound += c->ptarget[m] - c->pkept[m];
        room[z] += pl_share_ceil(&c->ms, m);
        floors[z] += pl_share_floor(&c->ms, m);
        kept[z] += c->kept[m];
    }
    for (uint32_t z = 0; z < c->ms.zones; z++)
        caps[z] = (uint64_t)c->P * pl_zone_per(&c->ms, z);
    /* The copies a set of zones can still take: it holds at most its
     * members' ceilings, its caps, and what the other zones' floors leave
     * of the slots; less what it keeps. The zones one by one, then (when
     * counted) every set, which can force more than its zones alone. */
    uint32_t sets = c->forced_set != NULL ? 1u << c->ms.zones : 0;
    for (uint32_t k = 0; k < c->ms.zones + sets; k++) {
        uint64_t y = k < c->ms.zones ? 1ull << k : k - c->ms.zones;
        uint64_t forced = k < c->ms.zones ? c->forced[k] : c->forced_set[y];
        uint64_t most = mask_sum(room, y), cap = mask_sum(caps, y);
        uint64_t left = (uint64_t)c->P * c->reff - mask_sum(floors, all & ~y);
        most = most < cap ? most : cap;
        most = most < left ? most : left;
        uint64_t has = mask_sum(kept, y), free = most > has ? most - has : 0;
        uint64_t over = forced > free ? forced - free : 0;
        if (k < c->ms.zones)
            zone_lb += over; /* disjoint zones: their drops add up */
        else if (c->holes + over > zone_lb)
            zone_lb = c->holes + over;
    }
    st->moves_lower_bound = member_lb > zone_lb ? member_lb : zone_lb;
    return 0;
}

int corral_placement_engine_new(struct corral_placement_engine **out)
{
    *out = corral_calloc(1, sizeof(**out));
    return *out == NULL ? CORRAL_ENOMEM : 0;
}

void corral_placement_engine_free(struct corral_placement_engine *e)
{
    if (e == NULL)
        return;
    ctx_free_arrays(&e->c);
    corral_placement_result_close(&e->res);
    corral_free(e);
}

/* Keep pass, targets and bounds: everything before the first copy. */
static int plan_targets(struct pl_ctx *c, struct corral_placement_stats *st)
{
    keep(c);
    if (c->any_zdrop)
        rebalance_kept(c);
    hole_room(c);
    int rv = pl_replica_targets(&c->ms, c->P, c->in->seed, c->kept, c->have, c->target);
    if (rv != 0)
        return rv;
    zone_targets(c);
    rv = pl_primary_targets(&c->ms, c->P, c->in->seed, c->pkept, c->kept, c->target, orphan_room(c),
                            c->ptarget);
    if (rv == 0)
        rv = lower_bounds(c, st);
    return rv;
}

/* A holder the keep pass dropped from a too-full zone may have been put
 * back in its row (a member below target takes a slot there): it still has
 * the data, so that slot is no new copy. */
static void unmark_returning(struct pl_ctx *c)
{
    const struct corral_placement_map *cur = c->in->current;
    for (uint32_t p = 0; p < c->P; p++) {
        const uint32_t *old = &cur->slots[(size_t)p * c->R];
        for (uint32_t j = 0; j < c->count[p]; j++) {
            size_t s = (size_t)p * c->R + j;
            for (uint32_t k = 0; k < c->R && c->fresh[s]; k++)
                if (old[k] == c->ms.id[c->hold[s]])
                    c->fresh[s] = 0;
        }
    }
}

static int run_phases(struct pl_ctx *c, struct corral_placement_result *out)
{
    int rv = plan_targets(c, &out->stats);
    if (rv != 0)
        return rv;
    memcpy(c->have, c->kept, c->ms.n * sizeof(uint32_t));
    memcpy(c->phave, c->pkept, c->ms.n * sizeof(uint32_t));
    deficit_build(c);
    pl_index_build(c);
    if ((rv = fill_holes(c)) != 0 || (rv = shed(c)) != 0)
        return rv;
    fill_leftovers(c);
    if (c->any_zdrop)
        unmark_returning(c);
    pl_index_build(c);
    if ((rv = pl_primaries(c)) != 0)
        return rv;
    pl_output(c, out);
    return 0;
}

int corral_placement_engine_compute(struct corral_placement_engine *e,
                                    const struct corral_placement_input *in,
                                    const struct corral_placement_result **out)
{
    *out = NULL;
    int rv = ctx_init(e, in);
    if (rv != 0)
        return rv;
    if ((rv = result_prepare(e)) == 0 && (rv = run_phases(&e->c, &e->res)) == 0)
        *out = &e->res;
    pl_members_close(&e->c.ms);
    return rv;
}

int corral_placement_engine_bounds(struct corral_placement_engine *e,
                                   const struct corral_placement_input *in,
                                   struct corral_placement_stats *bounds)
{
    memset(bounds, 0, sizeof(*bounds));
    int rv = ctx_init(e, in);
    if (rv != 0)
        return rv;
    rv = plan_targets(&e->c, bounds);
    pl_members_close(&e->c.ms);
    return rv;
}

int corral_placement_compute(const struct corral_placement_input *in,
                             struct corral_placement_result *out)
{
    memset(out, 0, sizeof(*out));
    struct corral_placement_engine *e;
    const struct corral_placement_result *res;
    int rv = corral_placement_engine_new(&e);
    if (rv != 0)
        return rv;
    if ((rv = corral_placement_engine_compute(e, in, &res)) == 0) {
        /* The caller takes the result's arrays over. */
        *out = e->res;
        memset(&e->res, 0, sizeof(e->res));
    }
    corral_placement_engine_free(e);
    return rv;
}
