/* Simulated clients of the config store and the commands they send
 * through Raft, encoded as the HTTP API encodes them (corral_kv_cmd).
 * Every operation is recorded (call and return times, what it saw) for
 * the linearizability check at the end of the run. The checker's "value"
 * of a key is its version in the store: the log index of the write that
 * made it, unique per write; the bytes a write stores are its op id, which
 * every read checks against that version (sim_check_read). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "sim_impl.h"

#define NO_OP UINT64_MAX

/* (index, term) -> op id of every proposal: an entry is named by both
 * (Log Matching), so any node applying it finds the op behind it. */
struct sim_prop {
    uint64_t index; /* 0 = empty */
    uint64_t term;
    uint64_t op;
};

struct sim_props {
    uint64_t cap, used;
    struct sim_prop *slot;
};

static struct sim_prop *props_slot(struct sim_props *t, uint64_t index, uint64_t term)
{
    uint64_t h = (index * 0x9e3779b97f4a7c15ull) ^ (term * 0xc2b2ae3d27d4eb4full);
    for (uint64_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
        if (t->slot[i].index == 0 || (t->slot[i].index == index && t->slot[i].term == term))
            return &t->slot[i];
}

static void props_put(struct sim *s, uint64_t index, uint64_t term, uint64_t op)
{
    if (s->props == NULL && (s->props = calloc(1, sizeof(*s->props))) == NULL)
        abort();
    struct sim_props *t = s->props;
    if (2 * (t->used + 1) > t->cap) {
        struct sim_props old = *t;
        t->cap = old.cap ? old.cap * 2 : 4096;
        t->used = 0;
        if ((t->slot = calloc(t->cap, sizeof(*t->slot))) == NULL)
            abort();
        for (uint64_t i = 0; i < old.cap; i++)
            if (old.slot[i].index != 0)
                *props_slot(t, old.slot[i].index, old.slot[i].term) = old.slot[i];
        t->used = old.used;
        free(old.slot);
    }
    struct sim_prop *sl = props_slot(t, index, term);
    t->used += sl->index == 0;
    *sl = (struct sim_prop){index, term, op};
}

static uint64_t props_get(const struct sim *s, uint64_t index, uint64_t term)
{
    if (s->props == NULL)
        return NO_OP;
    const struct sim_prop *sl = props_slot(s->props, index, term);
    return sl->index == 0 ? NO_OP : sl->op;
}

void sim_clients_free(struct sim *s)
{
    if (s->props != NULL)
        free(s->props->slot);
    free(s->props);
    s->props = NULL;
}

static uint32_t key_name(uint32_t key, uint8_t out[16])
{
    return (uint32_t)snprintf((char *)out, 16, "k%u", key);
}

uint64_t sim_kv_version(const struct sim_node *n, uint32_t key)
{
    uint8_t name[16];
    struct corral_kv_item it;
    return corral_kv_get(corral_state_kv(n->st), name, key_name(key, name), &it) ? it.version : 0;
}

static uint64_t op_new(struct sim *s, uint32_t client)
{
    if (s->n_ops == s->cap_ops) {
        s->cap_ops = s->cap_ops ? s->cap_ops * 2 : 1024;
        s->ops = realloc(s->ops, s->cap_ops * sizeof(*s->ops));
        if (s->ops == NULL)
            abort();
    }
    struct sim_op *op = &s->ops[s->n_ops];
    memset(op, 0, sizeof(*op));
    op->client = client;
    op->call_us = s->now_us;
    uint32_t r = (uint32_t)(sim_rand(s) % 100);
    op->kind = r < 40 ? LINCHECK_PUT : r < 80 ? LINCHECK_GET : r < 90 ? LINCHECK_CAS : LINCHECK_DEL;
    op->key = (uint32_t)(sim_rand(s) % s->p.n_keys);
    /* A CAS mostly names the newest version any client saw, so that many
     * succeed; sometimes "absent", sometimes one just before it. */
    if (op->kind == LINCHECK_CAS) {
        uint64_t v = s->last_version[op->key];
        op->expect = sim_chance(s, 300) ? 0 : sim_chance(s, 800) || v < 2 ? v : v - 1;
    }
    return s->n_ops++;
}

static bool client_target_ok(struct sim *s, uint32_t id)
{
    return id != 0 && id <= SIM_NODES_MAX && s->nodes[id].started && !s->nodes[id].removed;
}

static void client_next(struct sim *s, uint32_t c)
{
    struct sim_client *cl = &s->clients[c];
    /* Clients stop starting operations a while before the run ends, so
     * every operation can finish or time out inside the run. */
    uint64_t stop_us = ((uint64_t)s->p.fault_ms + SIM_SETTLE_MS - 2 * SIM_CLIENT_TIMEOUT_MS) * 1000;
    if (s->now_us >= stop_us)
        return;
    if (!client_target_ok(s, cl->target))
        cl->target = 1 + (uint32_t)(sim_rand(s) % SIM_NODES_MAX);
    if (!client_target_ok(s, cl->target)) {
        struct sim_event ev = {.type = EV_CLIENT_NEXT, .a = c};
        sim_at(s, s->now_us + 1000, ev);
        return;
    }
    uint64_t id = op_new(s, c);
    cl->op = id;
    s->ops[id].node = cl->target;
    struct sim_event arrive = {.type = EV_CLIENT_ARRIVE, .node = cl->target, .a = c, .b = id};
    sim_at(s, s->now_us + sim_between(s, s->p.delay_min_us, s->p.delay_max_us), arrive);
    struct sim_event timeout = {.type = EV_CLIENT_TIMEOUT, .a = c, .b = id};
    sim_at(s, s->now_us + SIM_CLIENT_TIMEOUT_MS * 1000, timeout);
}

void sim_clients_init(struct sim *s)
{
    for (uint32_t c = 0; c < s->p.n_clients; c++) {
        s->clients[c].op = NO_OP;
        s->clients[c].target = 1 + (uint32_t)(sim_rand(s) % s->p.n_voters);
        struct sim_event ev = {.type = EV_CLIENT_NEXT, .a = c};
        sim_at(s, sim_between(s, 0, 100000), ev);
    }
}

/* The reply leaves the node now and reaches the client after a delay. */
void sim_client_reply(struct sim *s, uint64_t op, bool ok, uint64_t value, bool cas_ok,
                      uint32_t leader_hint)
{
    struct sim_event ev = {.type = EV_CLIENT_REPLY,
                           .a = s->ops[op].client,
                           .b = op,
                           .c = value,
                           .node = 0,
                           .len = (size_t)ok | (size_t)cas_ok << 1 | (size_t)leader_hint << 2};
    sim_at(s, s->now_us + sim_between(s, s->p.delay_min_us, s->p.delay_max_us), ev);
}

/* The op as the API would propose it: key "k<N>", the op id as the bytes
 * of a PUT or CAS. */
static struct corral_rbuf *command_encode(const struct sim_op *op, uint64_t id)
{
    uint8_t name[16], value[8];
    memcpy(value, &id, sizeof(value));
    struct corral_kv_cmd c = {.op = op->kind == LINCHECK_DEL ? CORRAL_KV_DEL : CORRAL_KV_PUT,
                              .has_cas = op->kind == LINCHECK_CAS,
                              .cas = op->expect,
                              .key = name,
                              .key_len = key_name(op->key, name)};
    if (c.op == CORRAL_KV_PUT) {
        c.value = value;
        c.value_len = sizeof(value);
    }
    struct corral_state_cmd sc = {.type = CORRAL_STATE_KV, .kv = c};
    return corral_state_cmd_encode(&sc);
}

/* A request reaches a node: reads go through ReadIndex, writes through
 * the log. A node that cannot take it answers at once with its leader. */
static void node_receive(struct sim *s, uint32_t node, uint64_t id)
{
    struct sim_node *n = &s->nodes[node];
    if (!n->up)
        return; /* the client times out */
    const struct sim_op *op = &s->ops[id];
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    if (n->n_pending >= SIM_PENDING_MAX) {
        sim_client_reply(s, id, false, 0, false, (uint32_t)st.leader);
        return;
    }
    struct sim_pending *p = &n->pending[n->n_pending];
    memset(p, 0, sizeof(*p));
    p->op = id;
    int rv;
    if (op->kind == LINCHECK_GET) {
        p->read = true;
        rv = corral_raft_read_index(n->raft, id);
    } else {
        struct corral_rbuf *data = command_encode(op, id);
        if (data == NULL)
            abort();
        rv = corral_raft_propose(n->raft, data, &p->index);
        corral_rbuf_unref(data);
        if (rv == 0) {
            const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, p->index);
            p->term = e->term;
            s->ops[id].index = p->index;
            s->ops[id].term = p->term;
            props_put(s, p->index, p->term, id);
        }
    }
    if (rv != 0) {
        sim_client_reply(s, id, false, 0, false, (uint32_t)st.leader);
        return;
    }
    n->n_pending++;
    sim_node_flush(s, n);
}

static void client_done(struct sim *s, uint32_t c, uint64_t id, uint8_t status)
{
    struct sim_client *cl = &s->clients[c];
    if (cl->op != id)
        return; /* a late reply to an operation that timed out */
    struct sim_op *op = &s->ops[id];
    op->status = status;
    op->return_us = s->now_us;
    cl->op = NO_OP;
    if (status == OP_OK && s->healed)
        cl->ok_after_heal++;
    struct sim_event ev = {.type = EV_CLIENT_NEXT, .a = c};
    sim_at(s, s->now_us + sim_between(s, 0, 3000), ev);
}

void sim_client_event(struct sim *s, const struct sim_event *ev)
{
    switch (ev->type) {
    case EV_CLIENT_NEXT:
        client_next(s, ev->a);
        break;
    case EV_CLIENT_ARRIVE:
        node_receive(s, ev->node, ev->b);
        break;
    case EV_CLIENT_REPLY: {
        bool ok = ev->len & 1;
        uint32_t hint = (uint32_t)(ev->len >> 2);
        struct sim_op *op = &s->ops[ev->b];
        if (s->clients[ev->a].op != ev->b)
            break;
        if (ok) {
            if (op->kind == LINCHECK_GET)
                op->value = ev->c;
            op->cas_ok = (ev->len >> 1) & 1;
        } else {
            s->clients[ev->a].target =
                client_target_ok(s, hint) ? hint : 1 + (uint32_t)(sim_rand(s) % SIM_NODES_MAX);
        }
        client_done(s, ev->a, ev->b, ok ? OP_OK : OP_FAILED);
        break;
    }
    case EV_CLIENT_TIMEOUT:
        if (s->clients[ev->a].op == ev->b)
            sim_trace(s, "client %u: op %llu (kind %u) at node %u timed out", ev->a,
                      (unsigned long long)ev->b, s->ops[ev->b].kind, s->ops[ev->b].node);
        s->clients[ev->a].target = 1 + (uint32_t)(sim_rand(s) % SIM_NODES_MAX);
        client_done(s, ev->a, ev->b, OP_UNKNOWN);
        break;
    default:
        break;
    }
}

/* Records what a committed write did (once, at its first application
 * anywhere) and answers its client if it asked this node. */
static void record_write(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e,
                         const struct corral_kv_result *res)
{
    uint64_t id = props_get(s, e->index, e->term);
    if (id == NO_OP)
        return; /* a cluster state command (sim_coord.c, sim_ops.c) */
    if (res == NULL) {
        sim_fail(s, "node %u applies an entry nobody proposed at %llu", n->id,
                 (unsigned long long)e->index);
        return;
    }
    struct sim_op *op = &s->ops[id];
    bool ok = res->status == CORRAL_KV_OK ||
              (op->kind == LINCHECK_DEL && res->status == CORRAL_KV_NOT_FOUND);
    if (!ok && !(op->kind == LINCHECK_CAS && res->status == CORRAL_KV_CAS_FAILED)) {
        sim_fail(s, "node %u: the store refused op %llu at %llu: status %u", n->id,
                 (unsigned long long)id, (unsigned long long)e->index, res->status);
        return;
    }
    if (op->applied_us == 0) {
        op->applied_us = s->now_us;
        op->applied_cas_ok = ok;
        op->applied_version = e->index;
        op->value = e->index; /* what the checker sees the write store */
        if (ok && op->kind != LINCHECK_DEL)
            s->last_version[op->key] = e->index;
    }
    for (uint32_t i = 0; i < n->n_pending; i++) {
        struct sim_pending *p = &n->pending[i];
        if (p->read || p->index != e->index)
            continue;
        /* Our proposal at this index was either committed, or replaced by
         * another leader's entry: then its outcome is unknown to us. */
        if (p->term == e->term)
            sim_client_reply(s, p->op, true, 0, ok, 0);
        n->pending[i] = n->pending[--n->n_pending];
        break;
    }
}

void sim_client_applied(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e,
                        const struct corral_state_result *res)
{
    /* Conf entries: the roster's (sim_roster.c) decommissions a removed
     * coordinator. */
    if (e->type == CORRAL_RAFT_ENTRY_NORMAL)
        record_write(s, n, e, res != NULL && res->status == CORRAL_STATE_KV_DONE ? &res->kv : NULL);
}
