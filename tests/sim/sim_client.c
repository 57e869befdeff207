/* Simulated clients of the key-value store and the commands they send
 * through Raft. Every operation is recorded (call and return times, what
 * it saw) for the linearizability check at the end of the run. */
#include <stdlib.h>
#include <string.h>

#include "sim_impl.h"

#define NO_OP UINT64_MAX

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
    if (op->kind == LINCHECK_PUT || op->kind == LINCHECK_CAS)
        op->value = ++s->next_value;
    if (op->kind == LINCHECK_CAS)
        op->expect = sim_chance(s, 300) ? 0 : sim_between(s, 1, s->next_value);
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

uint64_t sim_command_encode(const struct sim_op *op, uint64_t id, uint8_t out[32])
{
    memset(out, 0, 32);
    memcpy(out, &id, 8);
    out[8] = op->kind;
    out[9] = (uint8_t)op->key;
    memcpy(out + 10, &op->value, 8);
    memcpy(out + 18, &op->expect, 8);
    return 26;
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
        uint8_t buf[32];
        uint64_t len = sim_command_encode(op, id, buf);
        struct corral_rbuf *data = corral_rbuf_new(buf, (uint32_t)len);
        rv = corral_raft_propose(n->raft, data, &p->index);
        corral_rbuf_unref(data);
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

static void apply_conf(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e)
{
    uint8_t op;
    uint64_t node;
    if (e->data != NULL && e->data->len > 0 && e->data->data[0] == CORRAL_RAFT_CONF_SET)
        return; /* the bootstrap configuration */
    if (corral_raft_conf_change_decode(e->data, &op, &node) != 0) {
        sim_fail(s, "undecodable conf entry at %llu", (unsigned long long)e->index);
        return;
    }
    if (op != CORRAL_RAFT_REMOVE || node > SIM_NODES_MAX || s->nodes[node].removed)
        return;
    /* The operator decommissions a removed member once the change is
     * committed (it is: we are applying it). */
    s->nodes[node].removed = true;
    sim_trace(s, "node %llu removed (applied at %u)", (unsigned long long)node, n->id);
    if (node != n->id)
        sim_node_crash(s, &s->nodes[node]);
}

/* Applies one committed entry to n's state machine and answers the client
 * whose proposal it is, if that client asked this node. */
void sim_apply_command(struct sim *s, struct sim_node *n, const struct corral_raft_entry *e)
{
    if (e->type == CORRAL_RAFT_ENTRY_CONF) {
        apply_conf(s, n, e);
        return;
    }
    if (e->type != CORRAL_RAFT_ENTRY_NORMAL)
        return;
    if (e->data == NULL || e->data->len != 26) {
        sim_fail(s, "node %u applies a malformed command at %llu", n->id,
                 (unsigned long long)e->index);
        return;
    }
    uint64_t id, value, expect;
    memcpy(&id, e->data->data, 8);
    uint8_t kind = e->data->data[8];
    uint32_t key = e->data->data[9];
    memcpy(&value, e->data->data + 10, 8);
    memcpy(&expect, e->data->data + 18, 8);
    bool cas_ok = false;
    if (kind == LINCHECK_PUT)
        n->kv[key] = value;
    else if (kind == LINCHECK_DEL)
        n->kv[key] = 0;
    else if (kind == LINCHECK_CAS && n->kv[key] == expect) {
        n->kv[key] = value;
        cas_ok = true;
    }
    if (id < s->n_ops && s->ops[id].applied_us == 0) {
        s->ops[id].applied_us = s->now_us;
        s->ops[id].applied_cas_ok = cas_ok;
    }
    for (uint32_t i = 0; i < n->n_pending; i++) {
        struct sim_pending *p = &n->pending[i];
        if (p->read || p->index != e->index)
            continue;
        /* Our proposal at this index was either committed, or replaced by
         * another leader's entry: then its outcome is unknown to us. */
        if (p->op == id)
            sim_client_reply(s, id, true, 0, cas_ok, 0);
        n->pending[i] = n->pending[--n->n_pending];
        break;
    }
}
