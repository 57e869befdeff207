/* The controller's world (ctl_world.h): state, liveness, controller and
 * instant agents, for tests/unit/test_controller.c and
 * bench/bench_controller.c. */
#include "ctl_world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/rbuf.h"

static void die(const char *what)
{
    fprintf(stderr, "ctl_world: %s\n", what);
    abort();
}

void world_init(struct ctl_world *w, const struct corral_controller_config *cfg,
                uint64_t took_office_ms)
{
    memset(w, 0, sizeof(*w));
    struct corral_liveness_config lc;
    corral_liveness_config_default(&lc);
    w->st = corral_state_new();
    if (w->st == NULL || corral_liveness_init(&w->lv, &lc, took_office_ms) != 0 ||
        corral_controller_new(cfg, &w->ctl) != 0)
        die("init");
    w->now_ms = took_office_ms;
}

void world_close(struct ctl_world *w)
{
    corral_controller_free(w->ctl);
    corral_liveness_close(&w->lv);
    corral_state_free(w->st);
}

uint8_t world_apply(struct ctl_world *w, const struct corral_state_cmd *c)
{
    if (w->check != NULL)
        w->check(w, c, w->check_arg);
    struct corral_rbuf *b = corral_state_cmd_encode(c);
    if (b == NULL)
        die("encode");
    struct corral_state_result res;
    if (corral_state_apply(w->st, ++w->index, b, &res) != 0)
        die("apply");
    corral_rbuf_unref(b);
    if (res.status == CORRAL_STATE_OK)
        w->applied++;
    else
        w->refused++;
    return res.status;
}

uint32_t world_member(struct ctl_world *w, const char *name, const char *zone, uint16_t weight,
                      uint8_t role)
{
    struct corral_state_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CORRAL_STATE_MEMBER_PUT;
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.role = role;
    c.addr = "127.0.0.1:7000";
    c.addr_len = (uint16_t)strlen(c.addr);
    c.zone = zone;
    c.zone_len = (uint16_t)strlen(zone);
    c.weight = weight;
    if (world_apply(w, &c) != CORRAL_STATE_OK)
        die("member put");
    const struct corral_state_member *m = corral_state_member_by_name(w->st, name, c.name_len);
    if (m == NULL || m->id >= WORLD_IDS_MAX)
        die("member id");
    w->alive[m->id] = true;
    corral_liveness_heartbeat(&w->lv, m->id, w->now_ms);
    return m->id;
}

void world_status(struct ctl_world *w, uint32_t id, uint8_t status)
{
    struct corral_state_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CORRAL_STATE_MEMBER_STATUS;
    c.id = id;
    c.status = status;
    if (world_apply(w, &c) != CORRAL_STATE_OK)
        die("member status");
}

uint32_t world_resource(struct ctl_world *w, const char *name, uint32_t partitions,
                        uint8_t replicas)
{
    struct corral_state_cmd c;
    memset(&c, 0, sizeof(c));
    c.type = CORRAL_STATE_RESOURCE_PUT;
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.partitions = partitions;
    c.replicas = replicas;
    if (world_apply(w, &c) != CORRAL_STATE_OK)
        die("resource put");
    return corral_state_resource_by_name(w->st, name, c.name_len)->id;
}

void world_tick(struct ctl_world *w, uint64_t ms)
{
    w->now_ms += ms;
    for (uint32_t i = 0; i < corral_state_member_count(w->st); i++) {
        uint32_t id = corral_state_member_at(w->st, i)->id;
        if (w->alive[id])
            corral_liveness_heartbeat(&w->lv, id, w->now_ms);
    }
}

uint32_t world_step(struct ctl_world *w, struct corral_controller_output *out)
{
    struct corral_controller_output o;
    if (corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &o) != 0)
        die("evaluate");
    uint32_t refused = 0;
    for (uint32_t i = 0; i < o.n_cmds; i++)
        refused += world_apply(w, &o.cmds[i]) != CORRAL_STATE_OK;
    if (out != NULL)
        *out = o;
    return refused;
}

static uint32_t report(struct ctl_world *w, uint32_t member, const char *name, uint32_t p,
                       uint64_t epoch, uint8_t state)
{
    struct corral_progress r = {0, name, (uint32_t)strlen(name), p, epoch, state};
    struct corral_controller_output o;
    if (corral_controller_report(w->ctl, w->st, &w->lv, w->now_ms, member, &r, &o) != 0)
        die("report");
    uint32_t n = 0;
    for (uint32_t i = 0; i < o.n_cmds; i++)
        n += world_apply(w, &o.cmds[i]) == CORRAL_STATE_OK;
    return n;
}

uint32_t world_report_all(struct ctl_world *w)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < corral_state_resource_count(w->st); i++) {
        const struct corral_state_resource *sr = corral_state_resource_at(w->st, i);
        char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
        memcpy(name, sr->name, sizeof(name));
        uint32_t id = sr->id;
        for (uint32_t p = 0; p < sr->partitions; p++) {
            /* Reports change the state: look the partition up again. */
            const struct corral_state_partition *ps =
                &corral_state_resource_by_id(w->st, id)->parts[p];
            uint32_t copying[CORRAL_STATE_ROW_MAX], nc = 0;
            for (uint32_t j = 0; j < ps->n_replicas; j++)
                if (ps->replicas[j].state == CORRAL_REPLICA_COPYING &&
                    w->alive[ps->replicas[j].member])
                    copying[nc++] = ps->replicas[j].member;
            uint64_t epoch = ps->epoch;
            uint32_t primary = ps->releasing && w->alive[ps->primary] ? ps->primary : 0;
            for (uint32_t k = 0; k < nc; k++)
                n += report(w, copying[k], name, p, epoch, CORRAL_PROGRESS_IN_SYNC);
            if (primary != 0)
                n += report(w, primary, name, p, epoch, CORRAL_PROGRESS_RELEASED);
        }
    }
    return n;
}

uint32_t world_converge(struct ctl_world *w, uint32_t max_rounds, uint64_t tick_ms)
{
    for (uint32_t round = 1; round <= max_rounds; round++) {
        struct corral_controller_output o;
        world_tick(w, tick_ms);
        world_step(w, &o);
        uint32_t reports = world_report_all(w);
        if (o.n_cmds == 0 && reports == 0 && o.stats.in_flight == 0 && o.stats.out_of_target == 0 &&
            o.stats.recomputed == 0)
            return round;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_host(struct ctl_world *w, const struct corral_state_member *m, bool settled)
{
    return m->role == CORRAL_MEMBER_WORKER && m->status == CORRAL_MEMBER_ACTIVE &&
           !(settled && corral_liveness_lease_over(&w->lv, m->id, w->now_ms));
}

struct corral_placement_member *world_hosts(struct ctl_world *w, uint32_t *n)
{
    uint32_t count = corral_state_member_count(w->st), k = 0, nz = 0;
    struct corral_placement_member *hosts = calloc(count + 1, sizeof(*hosts));
    const char **zones = calloc(count + 1, sizeof(*zones));
    if (hosts == NULL || zones == NULL)
        die("hosts");
    bool settled = corral_liveness_settled(&w->lv, w->now_ms);
    for (uint32_t i = 0; i < count; i++)
        if (is_host(w, corral_state_member_at(w->st, i), settled))
            zones[nz++] = corral_state_member_at(w->st, i)->zone;
    qsort(zones, nz, sizeof(*zones), cmp_str);
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < nz; i++)
        if (distinct == 0 || strcmp(zones[distinct - 1], zones[i]) != 0)
            zones[distinct++] = zones[i];
    for (uint32_t i = 0; i < count; i++) {
        const struct corral_state_member *m = corral_state_member_at(w->st, i);
        if (!is_host(w, m, settled))
            continue;
        uint32_t z = 0;
        while (strcmp(zones[z], m->zone) != 0)
            z++;
        hosts[k++] = (struct corral_placement_member){m->id, z, m->weight};
    }
    free(zones);
    *n = k;
    return hosts;
}

void world_map(struct ctl_world *w, uint32_t resource, struct corral_placement_map *map)
{
    const struct corral_state_resource *sr = corral_state_resource_by_id(w->st, resource);
    if (corral_placement_map_init(map, sr->partitions, sr->replicas) != 0)
        die("map");
    for (uint32_t p = 0; p < sr->partitions; p++) {
        const struct corral_state_partition *ps = &sr->parts[p];
        uint32_t *row = &map->slots[(size_t)p * sr->replicas], n = 0;
        if (ps->primary != CORRAL_STATE_NONE)
            row[n++] = ps->primary;
        for (uint32_t j = 0; j < ps->n_replicas && n < sr->replicas; j++)
            if (ps->replicas[j].member != ps->primary)
                row[n++] = ps->replicas[j].member;
    }
}

static bool row_equal(const uint32_t *a, const uint32_t *b, uint32_t R)
{
    if (a[0] != b[0])
        return false;
    for (uint32_t j = 1; j < R; j++) {
        bool found = false;
        for (uint32_t k = 1; k < R && !found; k++)
            found = a[j] == b[k];
        if (!found)
            return false;
    }
    return true;
}

bool world_balanced(struct ctl_world *w, uint32_t resource)
{
    const struct corral_state_resource *sr = corral_state_resource_by_id(w->st, resource);
    const struct corral_placement_result *t = corral_controller_target(w->ctl, resource);
    if (sr == NULL || t == NULL || t->map.replicas != sr->replicas)
        return false;
    bool ok = true;
    for (uint32_t p = 0; p < sr->partitions && ok; p++) {
        const struct corral_state_partition *ps = &sr->parts[p];
        ok = ps->primary != CORRAL_STATE_NONE && !ps->releasing && ps->n_replicas <= sr->replicas;
        for (uint32_t j = 0; j < ps->n_replicas && ok; j++)
            ok = ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
    }
    struct corral_placement_map map;
    world_map(w, resource, &map);
    for (uint32_t p = 0; p < sr->partitions && ok; p++)
        ok = row_equal(&map.slots[(size_t)p * sr->replicas],
                       &t->map.slots[(size_t)p * sr->replicas], sr->replicas);
    uint32_t n;
    struct corral_placement_member *hosts = world_hosts(w, &n);
    struct corral_placement_input in = {sr->partitions, sr->replicas, sr->id, hosts, n, NULL};
    struct corral_placement_report rep;
    if (ok && corral_placement_check(&in, &map, &rep, NULL, NULL, NULL) != 0)
        die("check");
    if (ok)
        ok = rep.unknown_holders + rep.duplicate_holders + rep.zone_violations +
                 rep.missing_replicas + rep.replica_imbalance + rep.primary_imbalance ==
             0;
    free(hosts);
    corral_placement_map_close(&map);
    return ok;
}
