/* Controller: what one evaluation starts from. The member view (who hosts,
 * who may be granted, who is live, zones numbered in sorted order), the
 * controller's resources kept in step with the state, and each resource's
 * target from its own placement engine, recomputed only when the
 * placement members or R changed, or to confirm a target reached. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "core/controller_internal.h"
#include "util/mem.h"

static uint32_t hash_slot(uint32_t id)
{
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & (CTL_HASH_SIZE - 1u);
}

struct ctl_member *ctl_member_find_mut(struct corral_controller *c, uint32_t id)
{
    for (uint32_t h = hash_slot(id), probes = 0; probes < CTL_HASH_SIZE; probes++) {
        uint32_t v = c->hash[h];
        if (v == 0)
            return NULL;
        if (c->members[v - 1].id == id)
            return &c->members[v - 1];
        h = (h + 1u) & (CTL_HASH_SIZE - 1u);
    }
    return NULL;
}

const struct ctl_member *ctl_member_find(const struct corral_controller *c, uint32_t id)
{
    return ctl_member_find_mut((struct corral_controller *)c, id);
}

static void hash_put(struct corral_controller *c, uint32_t id, uint32_t index)
{
    uint32_t h = hash_slot(id);
    while (c->hash[h] != 0)
        h = (h + 1u) & (CTL_HASH_SIZE - 1u);
    c->hash[h] = index + 1u;
}

static int cmp_zone(const void *a, const void *b)
{
    return strcmp(((const struct zone_rank *)a)->name, ((const struct zone_rank *)b)->name);
}

static uint32_t zone_slot(const char *zone)
{
    uint32_t h = 2166136261u;
    for (const char *s = zone; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h & (CTL_HASH_SIZE - 1u);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

/* The placement members: hosts with their zone numbers (the rank of the
 * zone string among the hosts' distinct zones, found through a hash, so
 * only the few distinct zones are sorted), and their hash. */
static void hosts_build(struct corral_controller *c, const struct corral_state *st)
{
    uint32_t n_zones = 0;
    memset(c->zone_hash, 0, CTL_HASH_SIZE * sizeof(*c->zone_hash));
    c->n_hosts = 0;
    for (uint32_t i = 0; i < c->n_members; i++) {
        if (!c->members[i].host)
            continue;
        const struct corral_state_member *sm = corral_state_member_at(st, i);
        uint32_t h = zone_slot(sm->zone);
        while (c->zone_hash[h] != 0 && strcmp(c->zones[c->zone_hash[h] - 1u].name, sm->zone) != 0)
            h = (h + 1u) & (CTL_HASH_SIZE - 1u);
        if (c->zone_hash[h] == 0) {
            c->zones[n_zones] = (struct zone_rank){sm->zone, n_zones};
            c->zone_hash[h] = (uint16_t)++n_zones;
        }
        struct corral_placement_member *host = &c->hosts[c->n_hosts++];
        host->id = sm->id;
        host->zone = c->zone_hash[h] - 1u; /* first appearance, for now */
        host->weight = sm->weight;
    }
    qsort(c->zones, n_zones, sizeof(*c->zones), cmp_zone);
    for (uint32_t k = 0; k < n_zones; k++)
        c->zone_rank[c->zones[k].first] = k % CORRAL_PLACEMENT_ZONES_MAX;
    uint64_t key = 0x6a09e667f3bcc908ull;
    for (uint32_t i = 0; i < c->n_hosts; i++) {
        struct corral_placement_member *host = &c->hosts[i];
        host->zone = c->zone_rank[host->zone];
        key = mix(mix(mix(key, host->id), host->zone), host->weight);
    }
    c->hosts_key = mix(key, c->n_hosts);
}

/* Drops deaths that applied or timed out; flags the rest on the members. */
static void deaths_update(struct corral_controller *c)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->n_deaths; i++) {
        struct ctl_member *m = ctl_member_find_mut(c, c->deaths[i].id);
        if (m == NULL || m->status == CORRAL_MEMBER_DEAD || m->status == CORRAL_MEMBER_LEFT ||
            c->now_ms >= c->deaths[i].deadline_ms)
            continue;
        m->death_pending = true;
        c->deaths[k++] = c->deaths[i];
    }
    c->n_deaths = k;
}

int ctl_view_build(struct corral_controller *c, const struct corral_state *st,
                   const struct corral_liveness *lv, uint64_t now_ms)
{
    uint32_t n = corral_state_member_count(st);
    assert(n <= CORRAL_STATE_MEMBERS_MAX); /* the state's own limit */
    c->now_ms = now_ms;
    c->settled = corral_liveness_settled(lv, now_ms);
    c->n_members = n;
    c->copies_total = 0;
    memset(c->hash, 0, CTL_HASH_SIZE * sizeof(*c->hash));
    for (uint32_t i = 0; i < n; i++) {
        const struct corral_state_member *sm = corral_state_member_at(st, i);
        struct ctl_member *m = &c->members[i];
        bool in_office = sm->status == CORRAL_MEMBER_ACTIVE || sm->status == CORRAL_MEMBER_DRAINING;
        memset(m, 0, sizeof(*m));
        m->id = sm->id;
        m->status = sm->status;
        m->role = sm->role;
        m->heard = corral_liveness_age_ms(lv, sm->id, now_ms) != UINT64_MAX;
        /* L2 makes lease_over false before settled; C3 asks for both. */
        m->out = c->settled && corral_liveness_lease_over(lv, sm->id, now_ms);
#ifdef CORRAL_CONTROLLER_BROKEN_NO_LEASE_WAIT
        /* BROKEN ON PURPOSE, for the simulator's self-test only: a member
         * two heartbeats late counts as out of lease at once, with no wait
         * for its lease's certain end or the new-leader wait (breaks C3). */
        m->out = corral_liveness_suspect(lv, sm->id, now_ms);
#endif
        m->live = in_office && !m->out;
        /* The state grants and adds only on active members. */
        m->grantable = sm->status == CORRAL_MEMBER_ACTIVE && !m->out;
        m->host = sm->role == CORRAL_MEMBER_WORKER && m->grantable;
        hash_put(c, sm->id, i);
    }
    deaths_update(c);
    hosts_build(c, st);
    /* Replicas are counted (a lookup per replica) only when the death of
     * a member never heard in this term hinges on whether it holds any. */
    c->count_replicas = false;
    for (uint32_t i = 0; i < n && !c->count_replicas; i++) {
        const struct ctl_member *m = &c->members[i];
        c->count_replicas =
            m->out && m->role == CORRAL_MEMBER_WORKER && !m->death_pending &&
            (m->status == CORRAL_MEMBER_ACTIVE || m->status == CORRAL_MEMBER_DRAINING) &&
            corral_liveness_age_ms(lv, m->id, now_ms) == UINT64_MAX;
    }
    return 0;
}

/* Resources. */

static void resource_free(struct ctl_resource *r)
{
    if (r == NULL)
        return;
    corral_placement_engine_free(r->engine);
    corral_placement_map_close(&r->input);
    corral_free(r->pending);
    corral_free(r->todo);
    corral_free(r);
}

static struct ctl_resource *resource_new(const struct corral_state_resource *sr)
{
    struct ctl_resource *r = corral_calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->id = sr->id;
    r->partitions = sr->partitions;
    r->pending = corral_calloc(sr->partitions, sizeof(*r->pending));
    r->todo = corral_calloc(sr->partitions, sizeof(*r->todo));
    if (r->pending == NULL || r->todo == NULL || corral_placement_engine_new(&r->engine) != 0) {
        resource_free(r);
        return NULL;
    }
    return r;
}

void ctl_resources_free(struct corral_controller *c)
{
    for (uint32_t i = 0; i < c->n_res; i++)
        resource_free(c->res[i]);
    c->n_res = 0;
}

/* Merges the controller's resources with the state's (both by increasing
 * id): keeps the known ones, creates the new, frees the deleted. Out of
 * memory, it keeps what it has (still sorted) and says so: the list then
 * does not match the state, and the evaluation stops. */
int ctl_resources_sync(struct corral_controller *c, const struct corral_state *st)
{
    uint32_t n = corral_state_resource_count(st), j = 0, k = 0;
    bool failed = false;
    assert(n <= CORRAL_STATE_RESOURCES_MAX); /* the state's own limit */
    for (uint32_t i = 0; i < n && !failed; i++) {
        const struct corral_state_resource *sr = corral_state_resource_at(st, i);
        while (j < c->n_res && c->res[j]->id < sr->id)
            resource_free(c->res[j++]);
        if (j < c->n_res && c->res[j]->id == sr->id && c->res[j]->partitions == sr->partitions) {
            c->res_next[k++] = c->res[j++];
            continue;
        }
        struct ctl_resource *r = resource_new(sr);
        if (r != NULL)
            c->res_next[k++] = r;
        failed = r == NULL;
    }
    while (j < c->n_res) {
        if (failed)
            c->res_next[k++] = c->res[j++];
        else
            resource_free(c->res[j++]);
    }
    struct ctl_resource **t = c->res;
    c->res = c->res_next;
    c->res_next = t;
    c->n_res = k;
    return failed ? CORRAL_ENOMEM : 0;
}

struct ctl_resource *ctl_resource_find(const struct corral_controller *c, uint32_t id)
{
    uint32_t lo = 0, hi = c->n_res;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->res[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n_res && c->res[lo]->id == id ? c->res[lo] : NULL;
}

/* Row p of the engine's current map: the primary, then the in-sync
 * replicas, then the copying ones, at most R (more after R shrank): the
 * engine keeps slot 0 as primary when it can, and keeps the first R. */
static void input_row(const struct corral_state_partition *ps, uint32_t R, uint32_t *row)
{
    uint32_t n = 0;
    if (ps->primary != CORRAL_STATE_NONE)
        row[n++] = ps->primary;
    for (uint32_t j = 0; j < ps->n_replicas && n < R; j++)
        if (ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC &&
            ps->replicas[j].member != ps->primary)
            row[n++] = ps->replicas[j].member;
    for (uint32_t j = 0; j < ps->n_replicas && n < R; j++)
        if (ps->replicas[j].state != CORRAL_REPLICA_IN_SYNC)
            row[n++] = ps->replicas[j].member;
    while (n < R)
        row[n++] = CORRAL_PLACEMENT_NONE;
}

/* Whether every member of a target row is still a placement member. */
static bool row_hosted(const struct corral_controller *c, const uint32_t *row, uint32_t R)
{
    for (uint32_t j = 0; j < R; j++) {
        if (row[j] == CORRAL_PLACEMENT_NONE)
            continue;
        const struct ctl_member *m = ctl_member_find(c, row[j]);
        if (m == NULL || !m->host)
            return false;
    }
    return true;
}

/* The target stays fixed while the placement members and R do: every step
 * then moves the state toward the same rows. Recomputing from the half-
 * moved state instead flip-flops, since which replica the engine sheds
 * depends on who is primary at that moment. When the members change, the
 * engine starts from the previous target where its rows are still hosted
 * (the moves already planned stay planned), from the state elsewhere.
 * Once the state reached a target that the engine has not yet returned
 * unchanged for itself as input, it is computed once more from itself:
 * a sticky engine returns its balanced map unchanged (one extra compute
 * per quiet period), and a map it can still improve gets improved. */
int ctl_target_update(struct corral_controller *c, struct ctl_resource *r,
                      const struct corral_state_resource *sr, bool refine)
{
    const struct corral_placement_result *prev = r->target;
    bool same_shape = prev != NULL && prev->map.replicas == sr->replicas;
    if (same_shape && r->key_members == c->hosts_key && !refine)
        return 0;
    uint32_t R = sr->replicas;
    if (r->input.slots == NULL || r->input.replicas != R) {
        r->target = NULL;
        corral_placement_map_close(&r->input);
        int rv = corral_placement_map_init(&r->input, sr->partitions, R);
        if (rv != 0)
            return rv;
    }
    for (uint32_t p = 0; p < sr->partitions; p++) {
        uint32_t *row = &r->input.slots[(size_t)p * R];
        const uint32_t *old = same_shape ? &prev->map.slots[(size_t)p * R] : NULL;
        if (old != NULL && row_hosted(c, old, R))
            memcpy(row, old, R * sizeof(*row));
        else
            input_row(&sr->parts[p], R, row);
    }
    r->target = NULL; /* the engine reuses its result's memory */
    r->replicas = R;
    struct corral_placement_input in = {sr->partitions, R, sr->id, c->hosts, c->n_hosts, &r->input};
    const struct corral_placement_result *res;
    int rv = corral_placement_engine_compute(r->engine, &in, &res);
    if (rv != 0)
        return rv;
    r->target = res;
    r->fixed = res->moves_count == 0 && res->primary_changes_count == 0 && res->drops_count == 0;
    r->key_members = c->hosts_key;
    c->stats.recomputed++;
    return 0;
}
