/* The ownership checks, over what each worker's agent says it acts as
 * primary of, in true simulated time:
 * - no two workers act as primary of one partition at any instant (I3);
 * - an acquire never carries an epoch below one a coordinator's state has
 *   granted for that partition, and the epochs a partition is acted on at
 *   never go back (I4);
 * and the ownership gaps (a partition with no acting primary), by what
 * ended the previous primary's turn, for docs/benchmarks.md. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_impl.h"

static struct sim_owner *owner_of(struct sim *s, uint32_t resource, uint32_t partition)
{
    if (resource == 0 || resource > SIM_RESOURCE_IDS_MAX || partition >= SIM_PARTITIONS_MAX)
        return NULL;
    return &s->owners[resource - 1][partition];
}

/* The highest epoch any running coordinator has applied for the partition. */
static uint64_t granted_epoch(struct sim *s, uint32_t resource, uint32_t partition)
{
    uint64_t best = 0;
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        if (!s->nodes[i].up)
            continue;
        const struct corral_state_resource *r =
            corral_state_resource_by_id(s->nodes[i].st, resource);
        if (r != NULL && partition < r->partitions && r->parts[partition].epoch > best)
            best = r->parts[partition].epoch;
    }
    return best;
}

/* The replication factor of a resource, as a running coordinator has it. */
static uint32_t replicas_of(struct sim *s, uint32_t resource)
{
    for (uint32_t i = 1; i <= SIM_NODES_MAX; i++) {
        if (!s->nodes[i].up)
            continue;
        const struct corral_state_resource *r =
            corral_state_resource_by_id(s->nodes[i].st, resource);
        if (r != NULL)
            return r->replicas;
    }
    return 0;
}

/* Gaps are counted for R >= 2 only: an R = 1 partition has no replica to
 * take over, so its gap is its member's downtime. */
static void record_gap(struct sim *s, struct sim_owner *o)
{
    if (!o->gap_open)
        return;
    o->gap_open = false;
    if (o->gap_r < 2)
        return;
    uint64_t gap = s->now_us - o->gap_from_us;
    struct sim_gaps *g = &s->res->gaps[o->gap_cause];
    if (g->n < SIM_GAPS_MAX)
        g->us[g->n++] = gap;
    g->total++;
}

static void started(struct sim *s, const struct sim_worker *w, const struct corral_agent_primary *p)
{
    struct sim_owner *o = owner_of(s, p->resource, p->partition);
    if (o == NULL) {
        sim_fail(s, "worker %s acts on r%u/p%u, outside the simulated range", w->name, p->resource,
                 p->partition);
        return;
    }
    if (o->worker != 0 && o->worker != w->idx + 1) {
        sim_fail(s,
                 "two primaries: worker %s (epoch %" PRIu64 ") starts acting on r%u/p%u while "
                 "worker %s (epoch %" PRIu64 ") acts on it",
                 w->name, p->epoch, p->resource, p->partition, s->workers[o->worker - 1].name,
                 o->epoch);
        return;
    }
    uint64_t granted = granted_epoch(s, p->resource, p->partition);
    if (p->epoch < granted || p->epoch < o->last_epoch ||
        (p->epoch == o->last_epoch && o->last_worker != w->idx + 1 && o->last_worker != 0)) {
        sim_fail(s,
                 "epochs: worker %s acts on r%u/p%u at epoch %" PRIu64 " (granted %" PRIu64
                 ", last acted on %" PRIu64 " by %s)",
                 w->name, p->resource, p->partition, p->epoch, granted, o->last_epoch,
                 o->last_worker ? s->workers[o->last_worker - 1].name : "nobody");
        return;
    }
    record_gap(s, o);
    o->worker = w->idx + 1;
    o->epoch = p->epoch;
    o->last_epoch = p->epoch;
    o->last_worker = w->idx + 1;
    o->since_us = s->now_us;
    s->res->acquires++;
}

static void stopped(struct sim *s, const struct sim_worker *w, const struct corral_agent_primary *p,
                    uint8_t cause)
{
    struct sim_owner *o = owner_of(s, p->resource, p->partition);
    if (o == NULL || o->worker != w->idx + 1)
        return;
    o->worker = 0;
    o->gap_open = true;
    o->gap_from_us = s->now_us;
    o->gap_cause = cause;
    o->gap_r = replicas_of(s, p->resource);
}

static int primary_cmp(const struct corral_agent_primary *a, const struct corral_agent_primary *b)
{
    if (a->resource != b->resource)
        return a->resource < b->resource ? -1 : 1;
    if (a->partition != b->partition)
        return a->partition < b->partition ? -1 : 1;
    return a->epoch < b->epoch ? -1 : a->epoch > b->epoch;
}

/* Diffs what w acts as now against what it acted as (both sorted). */
void sim_owner_update(struct sim *s, struct sim_worker *w)
{
    if (!w->up || w->paused)
        return;
    struct corral_agent_primary now[SIM_ACTING_MAX];
    uint32_t n = 0, cursor = 0;
    struct corral_agent_primary p;
    while (corral_agent_primary_next(w->agent, &cursor, &p))
        if (n < SIM_ACTING_MAX)
            now[n++] = p;
    /* A stop while the lease still runs is a planned hand-off (release,
     * drop, shutdown); otherwise the lease ran out. */
    bool lease_ok = corral_agent_lease_end(w->agent) > sim_worker_ms(s, w);
    uint8_t cause = lease_ok ? SIM_STOP_HANDOFF : SIM_STOP_LEASE;
    uint32_t i = 0, j = 0;
    while (i < w->n_acting || j < n) {
        int c = i == w->n_acting ? 1 : j == n ? -1 : primary_cmp(&w->acting[i], &now[j]);
        if (c < 0)
            stopped(s, w, &w->acting[i++], cause);
        else if (c > 0)
            started(s, w, &now[j++]);
        else
            i++, j++;
    }
    memcpy(w->acting, now, n * sizeof(now[0]));
    w->n_acting = n;
    if (n > 0 && sim_worker_ms(s, w) >= w->lease_end_ms)
        sim_fail(s, "lease: worker %s acts as primary of %u partition(s) past its lease", w->name,
                 n);
}

void sim_owner_stopped_all(struct sim *s, struct sim_worker *w, uint8_t cause)
{
    for (uint32_t i = 0; i < w->n_acting; i++)
        stopped(s, w, &w->acting[i], cause);
    w->n_acting = 0;
}

/* Whether some running worker acts on (resource, partition) at epoch. */
bool sim_owner_acting(const struct sim *s, uint32_t resource, uint32_t partition, uint64_t epoch)
{
    if (resource == 0 || resource > SIM_RESOURCE_IDS_MAX || partition >= SIM_PARTITIONS_MAX)
        return false;
    const struct sim_owner *o = &s->owners[resource - 1][partition];
    return o->worker != 0 && o->epoch == epoch;
}

/* The map of one resource as the placement engine reads it: primary
 * first, then the other replicas in order. */
static int map_of(const struct corral_state_resource *r, struct corral_placement_map *map)
{
    int rv = corral_placement_map_init(map, r->partitions, r->replicas);
    for (uint32_t p = 0; rv == 0 && p < r->partitions; p++) {
        const struct corral_state_partition *pt = &r->parts[p];
        uint32_t *row = &map->slots[p * r->replicas], k = 0;
        if (pt->primary != CORRAL_STATE_NONE)
            row[k++] = pt->primary;
        for (uint32_t j = 0; j < pt->n_replicas && k < r->replicas; j++)
            if (pt->replicas[j].member != pt->primary)
                row[k++] = pt->replicas[j].member;
    }
    return rv;
}

/* The active workers as placement members, zones numbered in byte order. */
static uint32_t active_members(const struct corral_state *st, struct corral_placement_member *out)
{
    const char *zones[SIM_WORKERS_MAX];
    uint32_t nz = 0, n = 0;
    for (uint32_t i = 0; i < corral_state_member_count(st); i++) {
        const struct corral_state_member *m = corral_state_member_at(st, i);
        if (m->role != CORRAL_MEMBER_WORKER || m->status != CORRAL_MEMBER_ACTIVE ||
            n == SIM_WORKERS_MAX)
            continue;
        uint32_t z = 0;
        while (z < nz && strcmp(zones[z], m->zone) != 0)
            z++;
        if (z == nz)
            zones[nz++] = m->zone;
        out[n++] = (struct corral_placement_member){.id = m->id, .zone = z, .weight = m->weight};
    }
    /* Renumber the zones in byte order, as the controller does. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t rank = 0;
        for (uint32_t z = 0; z < nz; z++)
            rank += strcmp(zones[z], zones[out[i].zone]) < 0;
        out[i].zone = rank;
    }
    return n;
}

static void check_balanced(struct sim *s, const struct corral_state *st,
                           const struct corral_state_resource *r)
{
    struct corral_placement_member members[SIM_WORKERS_MAX];
    struct corral_placement_input in = {.partitions = r->partitions,
                                        .replicas = r->replicas,
                                        .seed = r->id,
                                        .members = members,
                                        .members_count = active_members(st, members)};
    struct corral_placement_map map;
    struct corral_placement_report rep;
    if (map_of(r, &map) != 0 || corral_placement_check(&in, &map, &rep, NULL, NULL, NULL) != 0)
        abort();
    corral_placement_map_close(&map);
    if (rep.unknown_holders || rep.duplicate_holders || rep.zone_violations ||
        rep.missing_replicas || rep.replica_imbalance || rep.primary_imbalance)
        sim_fail(s,
                 "liveness: ownership: resource %s is not balanced %u s after the heal: "
                 "%" PRIu64 " unknown, %" PRIu64 " duplicate, %" PRIu64 " zone, %" PRIu64
                 " missing, imbalance %" PRIu64 " replicas / %" PRIu64 " primaries",
                 r->name, SIM_SETTLE_MS / 1000, rep.unknown_holders, rep.duplicate_holders,
                 rep.zone_violations, rep.missing_replicas, rep.replica_imbalance,
                 rep.primary_imbalance);
}

/* After the heal (the run's last SIM_SETTLE_MS): every partition of the
 * leader's state has a primary that a worker acts as, at its epoch, and
 * every map is one the placement engine calls balanced (I5 included). */
static void dump_state(const struct corral_state *st)
{
    for (uint32_t i = 0; i < corral_state_member_count(st); i++) {
        const struct corral_state_member *m = corral_state_member_at(st, i);
        fprintf(stderr, "member %u %s role %u status %u zone %s\n", m->id, m->name, m->role,
                m->status, m->zone);
    }
    for (uint32_t i = 0; i < corral_state_resource_count(st); i++) {
        const struct corral_state_resource *r = corral_state_resource_at(st, i);
        fprintf(stderr, "resource %u %s P=%u R=%u\n", r->id, r->name, r->partitions, r->replicas);
        for (uint32_t p = 0; p < r->partitions; p++) {
            const struct corral_state_partition *pt = &r->parts[p];
            fprintf(stderr, "  p%u primary %u epoch %" PRIu64 "%s:", p, pt->primary, pt->epoch,
                    pt->releasing ? " releasing" : "");
            for (uint32_t j = 0; j < pt->n_replicas; j++)
                fprintf(stderr, " %u%s", pt->replicas[j].member,
                        pt->replicas[j].state == CORRAL_REPLICA_COPYING ? "c" : "");
            fprintf(stderr, "\n");
        }
    }
}

void sim_owner_check_end(struct sim *s)
{
    uint32_t l = sim_leader(s);
    if (l == 0)
        return; /* the Raft liveness check reports it */
    const struct corral_state *st = s->nodes[l].st;
    if (s->p.verbose)
        dump_state(st);
    /* The operator may have drained every worker (its drains go through
     * leaders whose view lags). Then nothing can be balanced and a
     * partition never granted has nowhere to go; one that was granted
     * still needs a primary, a draining one if need be (controller C2). */
    struct corral_placement_member hosts[SIM_WORKERS_MAX];
    bool no_hosts = active_members(st, hosts) == 0;
    for (uint32_t i = 0; i < corral_state_resource_count(st) && !s->res->violation; i++) {
        const struct corral_state_resource *r = corral_state_resource_at(st, i);
        for (uint32_t p = 0; p < r->partitions; p++) {
            const struct corral_state_partition *pt = &r->parts[p];
            if (no_hosts && pt->epoch == 0)
                continue;
            if (pt->primary == CORRAL_STATE_NONE || !sim_owner_acting(s, r->id, p, pt->epoch)) {
                sim_fail(s,
                         "liveness: ownership: %s/%u has no acting primary %u s after the "
                         "heal (primary %u, epoch %" PRIu64 ")",
                         r->name, p, SIM_SETTLE_MS / 1000, pt->primary, pt->epoch);
                return;
            }
        }
        if (!no_hosts)
            check_balanced(s, st, r);
    }
}
