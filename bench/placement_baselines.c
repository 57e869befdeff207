/* The two stateless baselines of bench-placement: ring hashing with virtual
 * nodes and weighted rendezvous hashing, each with a zone-aware selection.
 * Doubles are fine here: the baselines are not part of the core. */
#include "placement_baselines.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void bl_limits(const struct bl_cluster *c, uint32_t *replicas_eff, uint32_t *zone_cap)
{
    uint32_t size[CORRAL_PLACEMENT_ZONES_MAX] = {0}, zones = 0, room = 0;
    for (uint32_t i = 0; i < c->n; i++)
        zones += size[c->members[i].zone]++ == 0;
    *zone_cap = zones ? (c->replicas + zones - 1) / zones : 0;
    for (uint32_t z = 0; z < c->zones; z++)
        room += size[z] < *zone_cap ? size[z] : *zone_cap;
    *replicas_eff = room < c->replicas ? room : c->replicas;
}

struct point {
    uint64_t hash;
    uint32_t member;
};

static int cmp_point(const void *a, const void *b)
{
    const struct point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->member > y->member) - (x->member < y->member);
}

int bl_ring_build(struct bl_ring *r, const struct bl_cluster *c, uint32_t vnodes)
{
    size_t n = 0;
    for (uint32_t i = 0; i < c->n; i++)
        n += (size_t)vnodes * c->members[i].weight;
    struct point *pts = malloc((n + 1) * sizeof(*pts));
    r->hash = malloc((n + 1) * sizeof(*r->hash));
    r->member = malloc((n + 1) * sizeof(*r->member));
    if (pts == NULL || r->hash == NULL || r->member == NULL) {
        free(pts);
        bl_ring_free(r);
        return -1;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < c->n; i++)
        for (uint32_t j = 0; j < vnodes * c->members[i].weight; j++)
            pts[k++] = (struct point){mix((uint64_t)c->members[i].id << 32 | j), i};
    qsort(pts, n, sizeof(*pts), cmp_point);
    for (size_t i = 0; i < n; i++) {
        r->hash[i] = pts[i].hash;
        r->member[i] = pts[i].member;
    }
    r->n = n;
    free(pts);
    return 0;
}

void bl_ring_free(struct bl_ring *r)
{
    free(r->hash);
    free(r->member);
    memset(r, 0, sizeof(*r));
}

void bl_ring_place(const struct bl_ring *r, const struct bl_cluster *c, uint32_t *slots)
{
    uint32_t reff, cap;
    bl_limits(c, &reff, &cap);
    for (uint32_t p = 0; p < c->partitions; p++) {
        uint32_t *row = &slots[(size_t)p * c->replicas], got = 0;
        uint32_t zc[CORRAL_PLACEMENT_ZONES_MAX] = {0}, chosen[CORRAL_PLACEMENT_REPLICAS_MAX];
        uint64_t h = mix(0x5eed0000ull ^ p);
        size_t lo = 0, hi = r->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (r->hash[mid] < h)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t step = 0; step < r->n && got < reff; step++) {
            uint32_t m = r->member[(lo + step) % r->n], z = c->members[m].zone, dup = 0;
            for (uint32_t j = 0; j < got; j++)
                dup |= chosen[j] == m;
            if (dup || zc[z] >= cap)
                continue;
            zc[z]++;
            chosen[got++] = m;
        }
        for (uint32_t j = 0; j < c->replicas; j++)
            row[j] = j < got ? c->members[chosen[j]].id : CORRAL_PLACEMENT_NONE;
    }
}

int bl_hrw_init(struct bl_hrw *h, uint32_t partitions)
{
    h->min_score = calloc(partitions, sizeof(*h->min_score));
    return h->min_score ? 0 : -1;
}

void bl_hrw_free(struct bl_hrw *h)
{
    free(h->min_score);
    h->min_score = NULL;
}

static double score(uint32_t p, uint32_t id, uint32_t weight)
{
    uint64_t x = mix((uint64_t)id << 32 ^ mix(p ^ 0x4877ull));
    double u = ((double)(x >> 11) + 0.5) * 0x1.0p-53; /* in (0, 1) */
    return weight / -log(u);
}

/* Places row p from scratch: repeatedly the best-scoring legal member. */
static void hrw_row(struct bl_hrw *h, const struct bl_cluster *c, uint32_t reff, uint32_t cap,
                    uint32_t p, double *scores, uint32_t *slots)
{
    uint32_t *row = &slots[(size_t)p * c->replicas], got = 0;
    uint32_t zc[CORRAL_PLACEMENT_ZONES_MAX] = {0}, chosen[CORRAL_PLACEMENT_REPLICAS_MAX];
    for (uint32_t i = 0; i < c->n; i++)
        scores[i] = score(p, c->members[i].id, c->members[i].weight);
    double last = 0;
    while (got < reff) {
        uint32_t best = CORRAL_PLACEMENT_NONE;
        for (uint32_t i = 0; i < c->n; i++)
            if (scores[i] >= 0 && zc[c->members[i].zone] < cap &&
                (best == CORRAL_PLACEMENT_NONE || scores[i] > scores[best]))
                best = i;
        if (best == CORRAL_PLACEMENT_NONE)
            break;
        last = scores[best];
        scores[best] = -1;
        zc[c->members[best].zone]++;
        chosen[got++] = best;
    }
    h->min_score[p] = last;
    for (uint32_t j = 0; j < c->replicas; j++)
        row[j] = j < got ? c->members[chosen[j]].id : CORRAL_PLACEMENT_NONE;
}

void bl_hrw_place_all(struct bl_hrw *h, const struct bl_cluster *c, uint32_t *slots)
{
    bl_hrw_update(h, c, NULL, 0, 1, slots);
}

void bl_hrw_update(struct bl_hrw *h, const struct bl_cluster *c, const uint32_t *changed,
                   uint32_t changed_n, int full, uint32_t *slots)
{
    uint32_t reff, cap, max_id = 0;
    bl_limits(c, &reff, &cap);
    for (uint32_t i = 0; i < c->n; i++)
        max_id = c->members[i].id > max_id ? c->members[i].id : max_id;
    for (uint32_t i = 0; i < changed_n; i++)
        max_id = changed[i] > max_id ? changed[i] : max_id;
    /* live[id]: 1 live, 2 live and changed. */
    uint8_t *live = calloc((size_t)max_id + 1, 1);
    double *scores = malloc((c->n + 1) * sizeof(*scores));
    uint32_t *weight_of = calloc((size_t)max_id + 1, sizeof(*weight_of));
    if (live == NULL || scores == NULL || weight_of == NULL)
        abort();
    for (uint32_t i = 0; i < c->n; i++) {
        live[c->members[i].id] = 1;
        weight_of[c->members[i].id] = c->members[i].weight;
    }
    for (uint32_t i = 0; i < changed_n; i++)
        if (live[changed[i]])
            live[changed[i]] = 2;
    for (uint32_t p = 0; p < c->partitions; p++) {
        const uint32_t *row = &slots[(size_t)p * c->replicas];
        int dirty = full;
        for (uint32_t j = 0; j < c->replicas && !dirty; j++)
            dirty = row[j] == CORRAL_PLACEMENT_NONE ? (j < reff)
                                                    : (row[j] > max_id || live[row[j]] != 1);
        for (uint32_t i = 0; i < changed_n && !dirty; i++)
            dirty =
                live[changed[i]] && score(p, changed[i], weight_of[changed[i]]) > h->min_score[p];
        if (dirty)
            hrw_row(h, c, reff, cap, p, scores, slots);
    }
    free(live);
    free(scores);
    free(weight_of);
}
