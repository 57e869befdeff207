/* Placement: what a computation hands back. The new map and its difference
 * from the old one (copies, primary hand-offs, drops), the ordered plan that
 * partition hand-off executes, and an independent checker of a map. */
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "core/placement_internal.h"
#include "util/mem.h"

/* The old holders of p that are not in the new row, in old order, without
 * repeats. Returns how many. */
static uint32_t removed_holders(const struct corral_placement_map *old, uint32_t p,
                                const uint32_t *row, uint32_t count, uint32_t *out)
{
    uint32_t n = 0;
    if (old == NULL)
        return 0;
    const uint32_t *orow = &old->slots[(size_t)p * old->replicas];
    for (uint32_t j = 0; j < old->replicas; j++) {
        uint32_t id = orow[j], dup = id == NONE;
        for (uint32_t k = 0; k < count && !dup; k++)
            dup = row[k] == id;
        for (uint32_t k = 0; k < j && !dup; k++)
            dup = orow[k] == id;
        if (!dup)
            out[n++] = id;
    }
    return n;
}

/* The member to copy p from: the old primary when live, else the first
 * live old holder, else NONE (no copy survived). */
static uint32_t copy_source(const struct pl_ctx *c, uint32_t p)
{
    const struct corral_placement_map *old = c->in->current;
    if (old == NULL)
        return NONE;
    const uint32_t *orow = &old->slots[(size_t)p * old->replicas];
    for (uint32_t j = 0; j < old->replicas; j++)
        if (orow[j] != NONE && pl_members_find(&c->ms, orow[j]) != NONE)
            return orow[j];
    return NONE;
}

/* Writes row p of the new map: primary, kept replicas, new copies. */
static void write_row(const struct pl_ctx *c, uint32_t p, uint32_t *row)
{
    uint32_t n = 0;
    size_t base = (size_t)p * c->R;
    if (c->prim[p] != NONE)
        row[n++] = c->ms.id[c->prim[p]];
    for (uint8_t fresh = 0; fresh < 2; fresh++)
        for (uint32_t j = 0; j < c->count[p]; j++)
            if (c->fresh[base + j] == fresh && c->hold[base + j] != c->prim[p])
                row[n++] = c->ms.id[c->hold[base + j]];
    while (n < c->R)
        row[n++] = NONE;
}

static void diff_row(const struct pl_ctx *c, uint32_t p, struct corral_placement_result *out)
{
    const struct corral_placement_map *old = c->in->current;
    struct corral_placement_stats *st = &out->stats;
    uint32_t *row = &out->map.slots[(size_t)p * c->R];
    uint32_t gone[CORRAL_PLACEMENT_REPLICAS_MAX], ngone, nrepl = 0;
    ngone = removed_holders(old, p, row, c->count[p], gone);
    uint32_t source = copy_source(c, p), old_primary = old ? old->slots[(size_t)p * c->R] : NONE;
    if (ngone > 0 && source == NONE)
        st->lost++;
    for (uint32_t k = 0; k < ngone; k++)
        if (pl_members_find(&c->ms, gone[k]) != NONE)
            out->drops[out->drops_count++] = (struct corral_placement_drop){p, gone[k]};
    size_t base = (size_t)p * c->R;
    for (uint32_t j = 0; j < c->count[p]; j++) {
        if (!c->fresh[base + j])
            continue;
        uint32_t replaced = nrepl < ngone ? gone[nrepl++] : NONE;
        out->moves[out->moves_count++] =
            (struct corral_placement_move){p, c->ms.id[c->hold[base + j]], source, replaced};
    }
    if (c->prim[p] != NONE && row[0] != old_primary) {
        uint32_t j = pl_row_find(c, p, c->prim[p]);
        uint32_t kind = c->fresh[base + j] ? CORRAL_PLACEMENT_FRESH : CORRAL_PLACEMENT_PROMOTION;
        out->primary_changes[out->primary_changes_count++] =
            (struct corral_placement_primary_change){p, old_primary, row[0], kind};
        if (kind == CORRAL_PLACEMENT_FRESH)
            st->fresh_primaries++;
        else
            st->promotions++;
    }
    st->under_replicated += c->count[p] < c->R;
    st->unplaced += c->reff - c->count[p];
}

void pl_output(const struct pl_ctx *c, struct corral_placement_result *out)
{
    const struct corral_placement_map *old = c->in->current;
    for (uint32_t p = 0; p < c->P; p++) {
        uint32_t *row = &out->map.slots[(size_t)p * c->R];
        write_row(c, p, row);
        /* Most rows are unchanged: no new copy, same holders in the same
         * order, so nothing to diff. */
        int changed = old == NULL;
        const uint32_t *orow = old ? &old->slots[(size_t)p * c->R] : NULL;
        for (uint32_t j = 0; j < c->R && !changed; j++)
            changed = row[j] != orow[j] || (j < c->count[p] && c->fresh[(size_t)p * c->R + j]);
        if (!changed) {
            out->stats.under_replicated += c->count[p] < c->R;
            out->stats.unplaced += c->reff - c->count[p];
            continue;
        }
        diff_row(c, p, out);
    }
    struct corral_placement_stats *st = &out->stats;
    st->members = c->ms.n;
    st->zones = c->ms.zones;
    st->zone_cap = c->ms.zone_cap;
    st->replicas_effective = c->reff;
    st->moves = out->moves_count;
    st->moves_extra = c->moves_extra;
    st->primary_changes = out->primary_changes_count;
    st->drops = out->drops_count;
}

/* Plan. */

int corral_placement_plan_init(struct corral_placement_plan *plan,
                               const struct corral_placement_result *res)
{
    memset(plan, 0, sizeof(*plan));
    size_t n = (size_t)res->moves_count + res->primary_changes_count + res->drops_count;
    plan->steps = corral_malloc((n + 1) * sizeof(*plan->steps));
    if (plan->steps == NULL)
        return CORRAL_ENOMEM;
    /* Each list is sorted by partition: merge them partition by partition. */
    uint32_t i = 0, j = 0, k = 0;
    struct corral_placement_step *out = plan->steps;
    while (i < res->moves_count || j < res->primary_changes_count || k < res->drops_count) {
        uint32_t p = UINT32_MAX;
        if (i < res->moves_count && res->moves[i].partition < p)
            p = res->moves[i].partition;
        if (j < res->primary_changes_count && res->primary_changes[j].partition < p)
            p = res->primary_changes[j].partition;
        if (k < res->drops_count && res->drops[k].partition < p)
            p = res->drops[k].partition;
        for (; i < res->moves_count && res->moves[i].partition == p; i++)
            *out++ = (struct corral_placement_step){p, CORRAL_PLACEMENT_STEP_COPY, res->moves[i].to,
                                                    res->moves[i].source};
        for (; j < res->primary_changes_count && res->primary_changes[j].partition == p; j++)
            *out++ = (struct corral_placement_step){p, CORRAL_PLACEMENT_STEP_HANDOFF,
                                                    res->primary_changes[j].to,
                                                    res->primary_changes[j].from};
        for (; k < res->drops_count && res->drops[k].partition == p; k++)
            *out++ = (struct corral_placement_step){p, CORRAL_PLACEMENT_STEP_DROP,
                                                    res->drops[k].member, NONE};
    }
    plan->steps_count = (uint32_t)(out - plan->steps);
    return 0;
}

void corral_placement_plan_close(struct corral_placement_plan *plan)
{
    corral_free(plan->steps);
    memset(plan, 0, sizeof(*plan));
}

/* Checker. */

static void check_row(const struct pl_members *ms, const uint32_t *row, uint32_t R,
                      struct corral_placement_report *rep, uint32_t *rc, uint32_t *pc)
{
    uint32_t zc[CORRAL_PLACEMENT_ZONES_MAX] = {0}, valid = 0, over = 0;
    for (uint32_t j = 0; j < R; j++) {
        if (row[j] == NONE)
            continue;
        uint32_t m = pl_members_find(ms, row[j]), dup = 0;
        for (uint32_t k = 0; k < j; k++)
            dup |= row[k] == row[j];
        if (m == NONE) {
            rep->unknown_holders++;
            continue;
        }
        if (dup) {
            rep->duplicate_holders++;
            continue;
        }
        valid++;
        rc[m]++;
        if (j == 0)
            pc[m]++;
        over |= ++zc[ms->zone[m]] > ms->zone_cap;
    }
    rep->zone_violations += over;
    if (valid < ms->replicas_eff)
        rep->missing_replicas += ms->replicas_eff - valid;
}

static uint64_t outside(uint64_t count, uint64_t num, uint64_t den)
{
    return count < pl_floor(num, den) || count > pl_ceil(num, den);
}

int corral_placement_check(const struct corral_placement_input *in,
                           const struct corral_placement_map *map,
                           struct corral_placement_report *rep,
                           struct corral_placement_share *shares, uint32_t *replica_counts,
                           uint32_t *primary_counts)
{
    struct pl_members ms;
    memset(rep, 0, sizeof(*rep));
    if (map == NULL || map->slots == NULL || in == NULL || map->partitions != in->partitions ||
        map->replicas != in->replicas)
        return CORRAL_EINVAL;
    int rv = pl_members_init(&ms, in);
    if (rv != 0)
        return rv;
    uint32_t *rc = corral_calloc(ms.n + 1u, sizeof(*rc));
    uint32_t *pc = corral_calloc(ms.n + 1u, sizeof(*pc));
    if (rc == NULL || pc == NULL) {
        rv = CORRAL_ENOMEM;
        goto out;
    }
    rep->replicas_effective = ms.replicas_eff;
    rep->zones = ms.zones;
    rep->zone_cap = ms.zone_cap;
    for (uint32_t p = 0; p < map->partitions; p++)
        check_row(&ms, &map->slots[(size_t)p * map->replicas], map->replicas, rep, rc, pc);
    for (uint32_t m = 0; m < ms.n; m++) {
        const struct corral_placement_share *s = &ms.share[m];
        rep->replica_imbalance += outside(rc[m], s->num, s->den);
        rep->primary_imbalance += outside(pc[m], s->num, s->den * ms.replicas_eff);
        if (shares != NULL)
            shares[ms.orig[m]] = *s;
        if (replica_counts != NULL)
            replica_counts[ms.orig[m]] = rc[m];
        if (primary_counts != NULL)
            primary_counts[ms.orig[m]] = pc[m];
    }
out:
    corral_free(rc);
    corral_free(pc);
    pl_members_close(&ms);
    return rv;
}
