/* The operator of partition ownership and the faults of workers: resources
 * created, resized and deleted, workers drained, decommissioned once they
 * hold nothing and rejoined later under the same name; workers crashed,
 * paused and cut off from the leader. Commands go through whichever node
 * leads now, as an operator's API calls would. */
#include <stdlib.h>
#include <string.h>

#include "sim_impl.h"

static struct sim_node *leader_node(struct sim *s)
{
    uint32_t id = sim_leader(s);
    return id == 0 ? NULL : &s->nodes[id];
}

static bool propose_cmd(struct sim *s, struct sim_node *n, const struct corral_state_cmd *c)
{
    bool ok = sim_propose(s, n, c);
    sim_node_flush(s, n);
    return ok;
}

static void put_resource(struct sim *s, struct sim_node *n, const char *name, uint32_t partitions,
                         uint8_t replicas)
{
    struct corral_state_cmd c = {.type = CORRAL_STATE_RESOURCE_PUT,
                                 .name = name,
                                 .name_len = (uint16_t)strlen(name),
                                 .partitions = partitions,
                                 .replicas = replicas};
    if (propose_cmd(s, n, &c))
        sim_trace(s, "operator: resource %s P=%u R=%u via node %u", name, partitions, replicas,
                  n->id);
}

static uint8_t pick_replicas(struct sim *s)
{
    uint32_t most = s->p.n_workers < 3 ? s->p.n_workers : 3;
    return (uint8_t)sim_between(s, 1, most);
}

/* The first resources, once a leader exists. */
static void create_resources(struct sim *s, struct sim_node *n)
{
    for (uint32_t i = 0; i < s->p.n_resources; i++) {
        char name[16];
        snprintf(name, sizeof(name), "res%u", i);
        put_resource(s, n, name, (uint32_t)sim_between(s, 4, s->p.partitions_max),
                     pick_replicas(s));
    }
    s->resources_created = true;
}

static const struct corral_state_member *member_of(const struct sim_node *n,
                                                   const struct sim_worker *w)
{
    return corral_state_member_by_name(n->st, w->name, (uint32_t)strlen(w->name));
}

static bool holds_nothing(const struct sim_node *n, uint32_t member)
{
    for (uint32_t i = 0; i < corral_state_resource_count(n->st); i++) {
        const struct corral_state_resource *r = corral_state_resource_at(n->st, i);
        for (uint32_t p = 0; p < r->partitions; p++)
            for (uint32_t j = 0; j < r->parts[p].n_replicas; j++)
                if (r->parts[p].replicas[j].member == member)
                    return false;
    }
    return true;
}

static void set_status(struct sim *s, struct sim_node *n, uint32_t member, uint8_t status)
{
    struct corral_state_cmd c = {
        .type = CORRAL_STATE_MEMBER_STATUS, .id = member, .status = status};
    propose_cmd(s, n, &c);
}

/* Drain one active worker (keeping at least two active), or finish a
 * drain: a draining worker that holds nothing leaves and its process
 * stops; or bring a decommissioned one back under its name. */
static void member_op(struct sim *s, struct sim_node *n)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < s->p.n_workers; i++) {
        const struct corral_state_member *m = member_of(n, &s->workers[i]);
        active += m != NULL && m->status == CORRAL_MEMBER_ACTIVE;
    }
    struct sim_worker *w = &s->workers[sim_rand(s) % s->p.n_workers];
    const struct corral_state_member *m = member_of(n, w);
    if (w->decommissioned) {
        w->decommissioned = false;
        sim_worker_start(s, w);
        sim_trace(s, "operator: worker %s comes back", w->name);
    } else if (m != NULL && m->status == CORRAL_MEMBER_DRAINING && holds_nothing(n, m->id)) {
        set_status(s, n, m->id, CORRAL_MEMBER_LEFT);
        w->decommissioned = true;
        sim_worker_crash(s, w); /* its process is stopped: it holds nothing */
        sim_trace(s, "operator: worker %s drained, leaves", w->name);
    } else if (m != NULL && m->status == CORRAL_MEMBER_ACTIVE && active > 2) {
        set_status(s, n, m->id, CORRAL_MEMBER_DRAINING);
        s->res->drains++;
        sim_trace(s, "operator: drain worker %s", w->name);
    }
}

static void resource_op(struct sim *s, struct sim_node *n)
{
    uint32_t count = corral_state_resource_count(n->st);
    if (count == 0)
        return;
    const struct corral_state_resource *r =
        corral_state_resource_at(n->st, (uint32_t)(sim_rand(s) % count));
    uint32_t what = (uint32_t)(sim_rand(s) % 10);
    if (what < 7) {
        put_resource(s, n, r->name, r->partitions, pick_replicas(s));
    } else if (what < 9 && count < 3) {
        char name[16];
        snprintf(name, sizeof(name), "res%u", s->next_resource_name++ + s->p.n_resources);
        put_resource(s, n, name, (uint32_t)sim_between(s, 4, s->p.partitions_max),
                     pick_replicas(s));
    } else if (count > 1) {
        struct corral_state_cmd c = {.type = CORRAL_STATE_RESOURCE_DELETE, .id = r->id};
        if (propose_cmd(s, n, &c))
            sim_trace(s, "operator: delete resource %s", r->name);
    }
}

void sim_ops_step(struct sim *s)
{
    struct sim_node *n = leader_node(s);
    if (n == NULL)
        return;
    if (!s->resources_created) {
        create_resources(s, n);
        return;
    }
    if (s->healed)
        return;
    if (sim_chance(s, 500))
        member_op(s, n);
    else
        resource_op(s, n);
}

/* One fault on one worker: crash (it restarts later), pause (it resumes
 * later with whatever view it had), or a cut between it and the leader. */
void sim_worker_fault(struct sim *s)
{
    if (s->p.n_workers == 0)
        return;
    struct sim_worker *w = &s->workers[sim_rand(s) % s->p.n_workers];
    if (!w->up || w->decommissioned)
        return;
    uint32_t what = (uint32_t)(sim_rand(s) % 3);
    uint64_t len_us = sim_between(s, 50000, (uint64_t)s->p.worker_fault_max_ms * 1000);
    if (what == 0) {
        sim_worker_crash(s, w);
        struct sim_event ev = {.type = EV_W_RESTART, .a = w->idx};
        sim_at(s, s->now_us + len_us, ev);
    } else if (what == 1) {
        sim_worker_pause(s, w, s->now_us + len_us);
    } else {
        uint32_t leader = sim_leader(s);
        if (leader == 0)
            return;
        s->blocked[w->ep][leader] = s->blocked[leader][w->ep] = true;
        sim_trace(s, "worker %s cut off from leader %u", w->name, leader);
        struct sim_event ev = {
            .type = EV_W_UNCUT, .a = w->idx, .node = 0, .b = leader, .c = s->partition_gen};
        sim_at(s, s->now_us + len_us, ev);
    }
}

void sim_worker_fault_event(struct sim *s, const struct sim_event *ev)
{
    struct sim_worker *w = &s->workers[ev->a];
    if (ev->type == EV_W_RESTART) {
        if (!w->up && !w->decommissioned)
            sim_worker_start(s, w);
    } else if (ev->type == EV_W_UNCUT && ev->c == s->partition_gen) {
        s->blocked[w->ep][ev->b] = s->blocked[ev->b][w->ep] = false;
    }
}

/* At the heal: every worker runs again, decommissioned ones included. */
void sim_workers_heal(struct sim *s)
{
    for (uint32_t i = 0; i < s->p.n_workers; i++) {
        struct sim_worker *w = &s->workers[i];
        w->decommissioned = false;
        if (!w->up)
            sim_worker_start(s, w);
    }
}
