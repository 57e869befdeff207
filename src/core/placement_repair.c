/* Placement: shortest augmenting paths, for the slots and primaries the
 * greedy passes could not place. A replica path re-routes new copies made in
 * this computation (free: the number of copies stays the same); only when
 * none exists does it move a kept replica too, which costs one extra copy
 * and is counted. A primary path shifts primaryship between holders. */
#include <assert.h>
#include <string.h>

#include "corral.h"
#include "core/placement_internal.h"
#include "util/mem.h"

/* p_rec values besides record indexes. */
#define REC_START (NONE - 1) /* the search started here */
#define REC_KEPT NONE        /* the member gives up a kept replica */

static void bump(struct pl_ctx *c)
{
    if (++c->stamp == 0) {
        memset(c->p_seen, 0, c->P * sizeof(uint32_t));
        memset(c->m_seen, 0, (c->ms.n + 1u) * sizeof(uint32_t));
        c->stamp = 1;
    }
}

static void enqueue(struct pl_ctx *c, uint32_t *tail, uint32_t p, uint32_t via, uint32_t rec)
{
    c->p_seen[p] = c->stamp;
    c->p_via[p] = via;
    c->p_rec[p] = rec;
    c->queue[(*tail)++] = p;
}

/* Adds state (p, zone of via) unless seen. Returns 0 or CORRAL_ENOMEM. */
static int push(struct pl_ctx *c, uint32_t *tail, uint32_t p, uint32_t via, uint32_t rec,
                uint32_t parent)
{
    uint64_t bit = via == NONE ? ~0ull : 1ull << c->ms.zone[via];
    if (c->p_seen[p] != c->stamp) {
        c->p_seen[p] = c->stamp;
        c->p_zones[p] = 0;
    }
    if (c->p_zones[p] & bit)
        return 0;
    c->p_zones[p] |= bit;
    if (*tail == c->entries_cap) {
        /* Bounded: each member is expanded once, offering at most its
         * holdings, so a search holds at most P * R + P entries. */
        uint32_t cap = c->entries_cap ? c->entries_cap * 2 : 1024;
        struct pl_entry *grown = corral_realloc(c->entries, cap * sizeof(*grown));
        if (grown == NULL)
            return CORRAL_ENOMEM;
        c->entries = grown;
        c->entries_cap = cap;
    }
    c->entries[(*tail)++] = (struct pl_entry){p, via, rec, parent};
    return 0;
}

/* Member y, legal for the state at index from but at target, offers the
 * slots it could give up: its new copies, and with allow_kept its kept
 * replicas. */
static int expand_member(struct pl_ctx *c, uint32_t *tail, uint32_t y, uint32_t from,
                         int allow_kept)
{
    int rv = 0;
    c->m_seen[y] = c->stamp;
    for (uint32_t r = c->rec_head[y]; r != NONE && rv == 0; r = c->rec_next[r])
        if (c->rec_part[r] != NONE)
            rv = push(c, tail, c->rec_part[r], y, r, from);
    if (!allow_kept)
        return rv;
    for (uint32_t s = c->idx_start[y]; s < c->idx_start[y + 1] && rv == 0; s++) {
        uint32_t p = c->idx_part[s], j = pl_row_find(c, p, y);
        if (j != NONE && !c->fresh[(size_t)p * c->R + j])
            rv = push(c, tail, p, y, REC_KEPT, from);
    }
    return rv;
}

/* A path must not pass a partition twice: each step was judged legal
 * against the row as it is now, which two changes to one row could break. */
static int path_simple(const struct pl_ctx *c, uint32_t e)
{
    for (uint32_t a = e; a != NONE; a = c->entries[a].parent)
        for (uint32_t b = c->entries[a].parent; b != NONE; b = c->entries[b].parent)
            if (c->entries[a].part == c->entries[b].part)
                return 0;
    return 1;
}

/* The unvisited lists hold every member again. */
static void unvisited_reset(struct pl_ctx *c)
{
    for (uint32_t z = 0, start = 0; z < c->ms.zones; z++) {
        c->unv_start[z] = start;
        c->unv_len[z] = 0;
        start += c->ms.zone_size[z];
    }
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint32_t z = c->ms.zone[m];
        c->unv_pos[m] = c->unv_start[z] + c->unv_len[z]++;
        c->unv_list[c->unv_pos[m]] = m;
    }
}

static void unvisited_take(struct pl_ctx *c, uint32_t m)
{
    uint32_t z = c->ms.zone[m], pos = c->unv_pos[m];
    uint32_t last = c->unv_list[c->unv_start[z] + --c->unv_len[z]];
    c->unv_list[pos] = last;
    c->unv_pos[last] = pos;
}

/* Targets are one balanced choice among many: any member may hold the
 * ceiling of its share. A relaxed search may end at a member at its target
 * but below its ceiling, which then takes the spare ceiling of a member
 * that has not reached its own target (a donor): the targets still sum to
 * the slots and the bound on moves is unchanged. Prepares, per zone, a
 * donor (the one furthest from its target, then the lowest index) and
 * whether the zone's targets may grow by one (a ceiling moving in from
 * another zone) within its cap. */
static int donors_prepare(struct pl_ctx *c)
{
    uint64_t sum[CORRAL_PLACEMENT_ZONES_MAX] = {0};
    int any = 0;
    for (uint32_t z = 0; z < c->ms.zones; z++)
        c->donor[z] = NONE;
    for (uint32_t m = 0; m < c->ms.n; m++) {
        uint32_t z = c->ms.zone[m], d = c->donor[z];
        sum[z] += c->target[m];
        if (c->have[m] < c->target[m] && c->target[m] > pl_share_floor(&c->ms, m) &&
            (d == NONE || c->target[m] - c->have[m] > c->target[d] - c->have[d])) {
            c->donor[z] = m;
            any = 1;
        }
    }
    for (uint32_t z = 0; z < c->ms.zones; z++) {
        uint32_t per = pl_zone_per(&c->ms, z);
        c->zone_grows[z] = sum[z] < (uint64_t)c->P * per;
    }
    return any;
}

/* A donor whose spare ceiling member y may take, or NONE. */
static uint32_t donor_for(const struct pl_ctx *c, uint32_t y)
{
    uint32_t zy = c->ms.zone[y];
    if (c->have[y] != c->target[y] || c->target[y] >= pl_share_ceil(&c->ms, y))
        return NONE;
    if (c->donor[zy] != NONE && c->donor[zy] != y)
        return c->donor[zy];
    if (!c->zone_grows[zy])
        return NONE;
    for (uint32_t z = 0; z < c->ms.zones; z++)
        if (z != zy && c->donor[z] != NONE)
            return c->donor[z];
    return NONE;
}

/* A member below target that may take the slot of state k, or NONE. */
static uint32_t deficit_taker(const struct pl_ctx *c, uint32_t k)
{
    uint32_t q = c->entries[k].part, v = c->entries[k].via;
    for (uint32_t z = 0; z < c->ms.zones; z++) {
        if (c->def_len[z] == 0 || pl_zone_count(c, q, z, v) >= c->ms.zone_cap)
            continue;
        for (uint32_t j = 0; j < c->def_len[z]; j++) {
            uint32_t m = c->def_list[c->def_start[z] + j];
            if (pl_row_find(c, q, m) == NONE)
                return m;
        }
    }
    return NONE;
}

/* Breadth-first search over the queued states for a member below target
 * (or, relaxed, one that may take a spare ceiling). A state offers its
 * slot to the unvisited members of every zone with room in its row.
 * Returns 0 with *end_member and *end_entry set, CORRAL_ENOTFOUND or
 * CORRAL_ENOMEM. */
static int search(struct pl_ctx *c, uint32_t tail, int allow_kept, int relaxed,
                  uint32_t *end_member, uint32_t *end_entry)
{
    for (uint32_t head = 0; head < tail; head++) {
        uint32_t q = c->entries[head].part, v = c->entries[head].via;
        for (uint32_t z = 0; z < c->ms.zones; z++) {
            if (c->unv_len[z] == 0 || pl_zone_count(c, q, z, v) >= c->ms.zone_cap)
                continue;
            for (uint32_t i = 0; i < c->unv_len[z];) {
                uint32_t y = c->unv_list[c->unv_start[z] + i];
                if (pl_row_find(c, q, y) != NONE) {
                    i++;
                    continue;
                }
                if (c->have[y] < c->target[y] || (relaxed && donor_for(c, y) != NONE)) {
                    if (!path_simple(c, head)) {
                        i++;
                        continue;
                    }
                    *end_member = y;
                    *end_entry = head;
                    return 0;
                }
                unvisited_take(c, y);
                uint32_t first = tail;
                int rv = expand_member(c, &tail, y, head, allow_kept);
                if (rv != 0)
                    return rv;
                /* Test the new states at once: a member y offers hundreds
                 * of kept replicas, and one of them usually ends a path. */
                for (uint32_t k = first; k < tail; k++) {
                    uint32_t d = deficit_taker(c, k);
                    if (d != NONE && path_simple(c, k)) {
                        *end_member = d;
                        *end_entry = k;
                        return 0;
                    }
                }
            }
        }
    }
    return CORRAL_ENOTFOUND;
}

/* Member e, found by a relaxed search, takes a donor's spare ceiling. */
static void take_ceiling(struct pl_ctx *c, uint32_t e)
{
    if (c->have[e] < c->target[e])
        return;
    uint32_t d = donor_for(c, e);
    assert(d != NONE);
    if (--c->target[d] == c->have[d])
        pl_deficit_remove(c, d);
    c->target[e]++;
    pl_deficit_add(c, e);
}

static void lose_primary(struct pl_ctx *c, uint32_t p, uint32_t m)
{
    if (c->prim[p] == m) {
        c->prim[p] = NONE;
        c->phave[m]--;
    }
}

/* Applies the path: member e takes the slot of the state at index i, whose
 * giver takes the slot of its parent state, and so on to the start. */
static void apply(struct pl_ctx *c, uint32_t e, uint32_t i)
{
    pl_rec_add(c, e, c->entries[i].part);
    pl_gain(c, e);
    for (uint32_t m = e;; i = c->entries[i].parent) {
        const struct pl_entry *en = &c->entries[i];
        uint32_t q = en->part, v = en->via;
        assert(pl_legal(c, q, m, v));
        pl_row_put(c, q, m, v);
        if (en->parent == NONE) {
            if (v != NONE) { /* a surplus member's replica */
                c->have[v]--;
                lose_primary(c, q, v);
                if (en->rec != REC_START) /* its new copy: no longer held */
                    c->rec_part[en->rec] = NONE;
            }
            return;
        }
        uint32_t next = c->entries[en->parent].part;
        if (en->rec == REC_KEPT) {
            lose_primary(c, q, v);
            pl_rec_add(c, v, next);
            c->moves_extra++;
        } else {
            assert(c->rec_member[en->rec] == v && c->rec_part[en->rec] == q);
            c->rec_part[en->rec] = next;
        }
        m = v;
    }
}

/* Searches in order of cost: re-routing new copies only, first to a member
 * below target, then (relaxed) to one that may take a spare ceiling; only
 * then through kept replicas, which costs an extra copy. */
static int run(struct pl_ctx *c, uint32_t start, uint32_t p)
{
    for (int mode = 0; mode < 4; mode++) {
        int allow_kept = mode >= 2, relaxed = mode & 1;
        if (relaxed && !donors_prepare(c))
            continue;
        bump(c);
        unvisited_reset(c);
        uint32_t tail = 0, e = NONE, end = NONE;
        int rv = 0;
        if (start == NONE) {
            rv = push(c, &tail, p, NONE, REC_START, NONE);
        } else {
            c->m_seen[start] = c->stamp;
            unvisited_take(c, start);
            for (uint32_t s = c->idx_start[start]; s < c->idx_start[start + 1] && rv == 0; s++) {
                uint32_t q = c->idx_part[s], j = pl_row_find(c, q, start);
                if (j != NONE && !c->fresh[(size_t)q * c->R + j])
                    rv = push(c, &tail, q, start, REC_START, NONE);
            }
            /* A longer path may have left it holding new copies only. */
            for (uint32_t r = c->rec_head[start]; r != NONE && rv == 0; r = c->rec_next[r])
                if (c->rec_part[r] != NONE)
                    rv = push(c, &tail, c->rec_part[r], start, r, NONE);
        }
        if (rv == 0)
            rv = search(c, tail, allow_kept, relaxed, &e, &end);
        if (rv == 0) {
            if (relaxed)
                take_ceiling(c, e);
            apply(c, e, end);
            return 0;
        }
        if (rv != CORRAL_ENOTFOUND)
            return rv;
    }
    return CORRAL_ENOTFOUND;
}

int pl_repair_hole(struct pl_ctx *c, uint32_t p)
{
    return run(c, NONE, p);
}

int pl_repair_surplus(struct pl_ctx *c, uint32_t m)
{
    return run(c, m, NONE);
}

/* Primaries. */

/* The best holder of p below its primary target: an in-sync (kept) replica
 * before a new copy; then, when opp is given, the holder whose remaining
 * primary deficit is largest relative to the partitions it could still
 * lead (one that must lead nearly all of them cannot wait); then the
 * larger deficit, then the larger hash. */
static uint32_t best_holder(const struct pl_ctx *c, uint32_t p, uint32_t except, int kept_only,
                            const uint32_t *opp)
{
    uint32_t best = NONE, best_fresh = 0, best_def = 0, best_opp = 1;
    uint64_t best_hash = 0;
    for (uint32_t j = 0; j < c->count[p]; j++) {
        size_t s = (size_t)p * c->R + j;
        uint32_t y = c->hold[s];
        if (y == except || c->phave[y] >= c->ptarget[y] || (kept_only && c->fresh[s]))
            continue;
        uint32_t def = c->ptarget[y] - c->phave[y], o = opp ? opp[y] : 1;
        uint64_t h = pl_hash(p, c->ms.id[y], c->in->seed);
        uint64_t mine = (uint64_t)def * best_opp, theirs = (uint64_t)best_def * o;
        int better = best == NONE || c->fresh[s] < best_fresh;
        if (!better && c->fresh[s] == best_fresh)
            better = mine > theirs ||
                     (mine == theirs && (def > best_def || (def == best_def && h > best_hash)));
        if (better) {
            best = y;
            best_fresh = c->fresh[s];
            best_def = def;
            best_opp = o;
            best_hash = h;
        }
    }
    return best;
}

static void lead_unlink(struct pl_ctx *c, uint32_t p)
{
    uint32_t x = c->prim[p], nx = c->lead_next[p], pv = c->lead_prev[p];
    if (pv == NONE)
        c->lead_head[x] = nx;
    else
        c->lead_next[pv] = nx;
    if (nx != NONE)
        c->lead_prev[nx] = pv;
}

static void lead_link(struct pl_ctx *c, uint32_t p, uint32_t m)
{
    c->lead_prev[p] = NONE;
    c->lead_next[p] = c->lead_head[m];
    if (c->lead_head[m] != NONE)
        c->lead_prev[c->lead_head[m]] = p;
    c->lead_head[m] = p;
}

/* Builds the led lists from prim[], each in ascending partition order. */
static void lead_build(struct pl_ctx *c)
{
    memset(c->lead_head, 0xff, c->ms.n * sizeof(uint32_t));
    for (uint32_t p = c->P; p-- > 0;)
        if (c->prim[p] != NONE)
            lead_link(c, p, c->prim[p]);
}

static void set_primary(struct pl_ctx *c, uint32_t p, uint32_t m)
{
    if (c->prim[p] != NONE) {
        c->phave[c->prim[p]]--;
        lead_unlink(c, p);
    }
    c->prim[p] = m;
    c->phave[m]++;
    lead_link(c, p, m);
}

/* Search modes for primaries. */
#define PM_KEPT 1    /* only through in-sync (kept) replicas */
#define PM_RELAXED 2 /* end at any member whose share allows one more */

static uint32_t primary_ceil(const struct pl_ctx *c, uint32_t m)
{
    return (uint32_t)pl_ceil(c->ms.share[m].num, c->ms.share[m].den * c->reff);
}

static int primary_below(const struct pl_ctx *c, uint32_t m, int mode)
{
    return c->phave[m] < ((mode & PM_RELAXED) ? primary_ceil(c, m) : c->ptarget[m]);
}

/* Member e takes one more primary than its target: the target of a member
 * that will not reach its own (a spare ceiling it holds) moves to e, so
 * the targets still sum to P. */
static void move_ceiling(struct pl_ctx *c, uint32_t e)
{
    for (uint32_t d = 0; d < c->ms.n; d++) {
        const struct corral_placement_share *sh = &c->ms.share[d];
        if (d != e && c->phave[d] < c->ptarget[d] &&
            c->ptarget[d] > pl_floor(sh->num, sh->den * c->reff)) {
            c->ptarget[d]--;
            break;
        }
    }
    c->ptarget[e]++;
}

/* A holder of q, other than its primary and not yet visited, that may
 * take q's primaryship and end the search, or NONE. */
static uint32_t primary_taker(const struct pl_ctx *c, uint32_t q, int mode)
{
    for (uint32_t j = 0; j < c->count[q]; j++) {
        uint32_t y = c->hold[(size_t)q * c->R + j];
        if (y != c->prim[q] && c->m_seen[y] != c->stamp &&
            !((mode & PM_KEPT) && c->fresh[(size_t)q * c->R + j]) && primary_below(c, y, mode))
            return y;
    }
    return NONE;
}

/* Breadth-first over partitions: a holder of a queued partition either
 * ends the search or is visited, queueing the partitions it leads. Each
 * queued partition is tested at once: a member leads dozens, and testing
 * only when they come out of the queue made a search queue tens of
 * thousands of partitions before finding a taker one level down. */
static uint32_t primary_search(struct pl_ctx *c, uint32_t tail, int mode, uint32_t *end)
{
    int kept_only = mode & PM_KEPT;
    for (uint32_t head = 0; head < tail; head++) {
        uint32_t q = c->queue[head], t = primary_taker(c, q, mode);
        if (t != NONE) {
            *end = q;
            return t;
        }
        for (uint32_t j = 0; j < c->count[q]; j++) {
            uint32_t y = c->hold[(size_t)q * c->R + j];
            if (y == c->prim[q] || c->m_seen[y] == c->stamp ||
                (kept_only && c->fresh[(size_t)q * c->R + j]))
                continue;
            c->m_seen[y] = c->stamp;
            c->m_via[y] = q;
            for (uint32_t p = c->lead_head[y]; p != NONE; p = c->lead_next[p]) {
                if (c->p_seen[p] == c->stamp)
                    continue;
                enqueue(c, &tail, p, y, 0);
                if ((t = primary_taker(c, p, mode)) != NONE) {
                    *end = p;
                    return t;
                }
            }
        }
    }
    return NONE;
}

/* Shifts primaryship along a path to a member below its primary target,
 * starting at a partition without primary (start NONE, partition p) or at
 * any partition led by `start`, a member above its target. */
static int primary_repair(struct pl_ctx *c, uint32_t start, uint32_t p, int mode)
{
    bump(c);
    uint32_t tail = 0, end = NONE;
    if (start == NONE) {
        enqueue(c, &tail, p, NONE, REC_START);
    } else {
        c->m_seen[start] = c->stamp;
        for (uint32_t q = c->lead_head[start]; q != NONE; q = c->lead_next[q])
            enqueue(c, &tail, q, start, REC_START);
    }
    uint32_t e = primary_search(c, tail, mode, &end);
    if (e == NONE)
        return CORRAL_ENOTFOUND;
    if (c->phave[e] >= c->ptarget[e])
        move_ceiling(c, e);
    for (uint32_t m = e, q = end;;) {
        uint32_t v = c->prim[q];
        int first = c->p_rec[q] == REC_START;
        set_primary(c, q, m);
        if (first || v == NONE)
            return 0;
        /* v gave q up above and takes the partition it was reached from. */
        m = v;
        q = c->m_via[v];
    }
}

/* A partition without a primary is unavailable until it gets one: an
 * in-sync replica can serve at once, a new copy only after catching up. So
 * kept holders win even at the price of a longer path (extra hand-offs
 * between live replicas are cheap); new copies lead only where no kept
 * replica survives or no path through kept replicas exists. */
/* Whether a search through kept replicas can end anywhere: some member
 * below its primary target still has a kept replica. Without one (a join:
 * the newcomer holds only new copies) every such search would explore the
 * whole map and fail. */
static int kept_search_useful(const struct pl_ctx *c)
{
    for (uint32_t m = 0; m < c->ms.n; m++)
        if (c->phave[m] < c->ptarget[m] && c->kept[m] > 0)
            return 1;
    return 0;
}

/* Whether this pass leads row p: it has no primary and holders, and in the
 * kept pass, its old primary is gone. A live old primary that sheds this
 * replica serves until the hand-off, so there is no gap to avoid: its
 * leadership may travel with the data to the new copy (second pass). */
static int orphan_row(const struct pl_ctx *c, uint32_t p, int kept_only)
{
    const struct corral_placement_map *cur = c->in->current;
    if (c->prim[p] != NONE || c->count[p] == 0)
        return 0;
    return !(kept_only && cur != NULL &&
             pl_members_find(&c->ms, cur->slots[(size_t)p * c->R]) != NONE);
}

/* The holders of row p this pass may choose from lose one opportunity. */
static void opp_count(struct pl_ctx *c, uint32_t p, int kept_only, uint32_t delta)
{
    for (uint32_t j = 0; j < c->count[p]; j++) {
        size_t s = (size_t)p * c->R + j;
        if (!(kept_only && c->fresh[s]))
            c->opp[c->hold[s]] += delta;
    }
}

static void lead_orphans(struct pl_ctx *c, int kept_only)
{
    int search = !kept_only || kept_search_useful(c);
    memset(c->opp, 0, c->ms.n * sizeof(uint32_t));
    for (uint32_t p = 0; p < c->P; p++)
        if (orphan_row(c, p, kept_only))
            opp_count(c, p, kept_only, 1);
    for (uint32_t p = 0; p < c->P; p++) {
        if (!orphan_row(c, p, kept_only))
            continue;
        uint32_t y = best_holder(c, p, NONE, kept_only, c->opp);
        opp_count(c, p, kept_only, UINT32_MAX); /* wraps: minus one */
        if (y != NONE)
            set_primary(c, p, y);
        else if (search)
            (void)primary_repair(c, NONE, p, kept_only ? PM_KEPT | PM_RELAXED : PM_RELAXED);
    }
}

/* Member m leads more partitions than its target: hand some to holders
 * below theirs. In-sync replicas first, directly, then along a path of
 * in-sync replicas; only then new copies (a joining member holds nothing
 * else), directly before along a path. */
static void shed_primaries(struct pl_ctx *c, uint32_t m)
{
    for (int kept_only = 1; kept_only >= 0; kept_only--) {
        for (uint32_t p = c->lead_head[m], next; p != NONE && c->phave[m] > c->ptarget[m];
             p = next) {
            next = c->lead_next[p];
            uint32_t y = best_holder(c, p, m, kept_only, NULL);
            if (y != NONE)
                set_primary(c, p, y);
        }
        while (c->phave[m] > c->ptarget[m] && (!kept_only || kept_search_useful(c)))
            if (primary_repair(c, m, NONE, kept_only ? PM_KEPT | PM_RELAXED : PM_RELAXED) != 0)
                break;
    }
}

/* Last resort for a row still without primary (no path reaches a member
 * below target): a member whose share allows one more primary, else the
 * first holder. Every non-empty row leads somewhere; the check reports any
 * imbalance this leaves. */
static void lead_leftovers(struct pl_ctx *c)
{
    for (uint32_t p = 0; p < c->P; p++) {
        if (c->prim[p] != NONE || c->count[p] == 0 || primary_repair(c, NONE, p, PM_RELAXED) == 0)
            continue;
        uint32_t pick = c->hold[(size_t)p * c->R];
        for (uint32_t j = 0; j < c->count[p]; j++) {
            uint32_t y = c->hold[(size_t)p * c->R + j];
            const struct corral_placement_share *sh = &c->ms.share[y];
            if (c->phave[y] < pl_ceil(sh->num, sh->den * c->reff)) {
                pick = y;
                break;
            }
        }
        set_primary(c, p, pick);
    }
}

static uint32_t primary_floor(const struct pl_ctx *c, uint32_t m)
{
    return (uint32_t)pl_floor(c->ms.share[m].num, c->ms.share[m].den * c->reff);
}

/* Member y leads fewer partitions than its share's floor: search back from
 * y through the leaders of the partitions it holds for one that can spare
 * a primary, and shift primaryship one step along that path. The targets
 * chosen up front are only a preference; any member within floor/ceil is
 * balanced, and with that freedom such a path exists whenever a balanced
 * choice of primaries does. With kept_only, every taker leads through an
 * in-sync replica (no fresh primary). */
static int raise_floor(struct pl_ctx *c, uint32_t y, uint32_t *queue, uint32_t *taker,
                       int kept_only)
{
    bump(c);
    uint32_t head = 0, tail = 0;
    queue[tail++] = y;
    c->m_seen[y] = c->stamp;
    while (head < tail) {
        uint32_t u = queue[head++];
        for (uint32_t s = c->idx_start[u]; s < c->idx_start[u + 1]; s++) {
            uint32_t q = c->idx_part[s], x = c->prim[q];
            if (x == NONE || x == u || c->m_seen[x] == c->stamp)
                continue;
            if (kept_only && c->fresh[(size_t)q * c->R + pl_row_find(c, q, u)])
                continue;
            c->m_seen[x] = c->stamp;
            c->m_via[x] = q;
            taker[x] = u;
            if (c->phave[x] > primary_floor(c, x)) {
                for (uint32_t v = x; v != y; v = taker[v])
                    set_primary(c, c->m_via[v], taker[v]);
                return 0;
            }
            queue[tail++] = x;
        }
    }
    return CORRAL_ENOTFOUND;
}

int pl_primaries(struct pl_ctx *c)
{
    lead_build(c);
    lead_orphans(c, 1);
    lead_orphans(c, 0);
    lead_leftovers(c);
    for (uint32_t m = 0; m < c->ms.n; m++)
        shed_primaries(c, m);
    uint32_t *queue = corral_malloc((c->ms.n + 1u) * sizeof(*queue));
    uint32_t *taker = corral_malloc((c->ms.n + 1u) * sizeof(*taker));
    if (queue == NULL || taker == NULL) {
        corral_free(queue);
        corral_free(taker);
        return CORRAL_ENOMEM;
    }
    for (uint32_t m = 0; m < c->ms.n; m++)
        while (c->phave[m] < primary_floor(c, m) &&
               (raise_floor(c, m, queue, taker, 1) == 0 || raise_floor(c, m, queue, taker, 0) == 0))
            ;
    for (uint32_t m = 0; m < c->ms.n; m++)
        while (c->phave[m] > primary_ceil(c, m) &&
               (primary_repair(c, m, NONE, PM_KEPT | PM_RELAXED) == 0 ||
                primary_repair(c, m, NONE, PM_RELAXED) == 0))
            ;
    corral_free(queue);
    corral_free(taker);
    return 0;
}
