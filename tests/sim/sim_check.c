/* The simulator's checks, run after every event on the node it touched:
 * one leader per term, log matching, committed entries never lost or
 * changed, identical state machines at equal indexes; and at the end,
 * liveness after healing and linearizability of the client history. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_impl.h"

/* (index, term) -> what the entry held and the term before it. If two
 * logs hold an entry with the same index and term, its payload and the
 * preceding term must agree: by induction the whole prefix agrees, which
 * is the Log Matching property (section 5.3). */
struct lm_slot {
    uint64_t index; /* 0 = empty */
    uint64_t term;
    uint64_t hash;
    uint64_t prev_term;
};

struct sim_check {
    uint64_t n_terms;
    uint32_t *leader_of_term;
    uint64_t n_committed;
    uint64_t *committed_term; /* by index, 0 = not seen committed yet */
    uint64_t *committed_hash;
    uint64_t n_state;
    uint64_t *state_hash; /* by index: state machine after applying it */
    uint64_t lm_cap;
    uint64_t lm_used;
    struct lm_slot *lm;
};

uint64_t sim_hash_bytes(const void *data, size_t len, uint64_t h)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t entry_hash(const struct corral_raft_entry *e)
{
    uint64_t h = sim_hash_bytes(&e->type, 1, 0xcbf29ce484222325ull);
    return e->data ? sim_hash_bytes(e->data->data, e->data->len, h) : h;
}

static void *grow(void *p, uint64_t *n, uint64_t need, size_t size)
{
    if (need < *n)
        return p;
    uint64_t m = *n ? *n : 1024;
    while (m <= need)
        m *= 2;
    p = realloc(p, m * size);
    if (p == NULL)
        abort();
    memset((char *)p + *n * size, 0, (m - *n) * size);
    *n = m;
    return p;
}

static struct sim_check *check_of(struct sim *s)
{
    if (s->check == NULL) {
        s->check = calloc(1, sizeof(*s->check));
        if (s->check == NULL)
            abort();
    }
    return s->check;
}

void sim_check_free(struct sim *s)
{
    struct sim_check *c = s->check;
    if (c == NULL)
        return;
    free(c->leader_of_term);
    free(c->committed_term);
    free(c->committed_hash);
    free(c->state_hash);
    free(c->lm);
    free(c);
    s->check = NULL;
}

static struct lm_slot *lm_find(struct sim_check *c, uint64_t index, uint64_t term)
{
    if (c->lm_used * 2 >= c->lm_cap) {
        uint64_t old_cap = c->lm_cap;
        struct lm_slot *old = c->lm;
        c->lm_cap = old_cap ? old_cap * 2 : 4096;
        c->lm = calloc(c->lm_cap, sizeof(*c->lm));
        if (c->lm == NULL)
            abort();
        c->lm_used = 0;
        for (uint64_t i = 0; i < old_cap; i++) {
            if (old[i].index == 0)
                continue;
            struct lm_slot *sl = lm_find(c, old[i].index, old[i].term);
            *sl = old[i];
        }
        free(old);
    }
    uint64_t h = (index * 0x9e3779b97f4a7c15ull) ^ (term * 0xc2b2ae3d27d4eb4full);
    for (uint64_t i = h & (c->lm_cap - 1);; i = (i + 1) & (c->lm_cap - 1)) {
        struct lm_slot *sl = &c->lm[i];
        if (sl->index == index && sl->term == term)
            return sl;
        if (sl->index == 0) {
            sl->index = index;
            sl->term = term;
            sl->hash = 0;
            sl->prev_term = UINT64_MAX;
            c->lm_used++;
            return sl;
        }
    }
}

static void check_log_matching(struct sim *s, struct sim_node *n,
                               const struct corral_raft_status *st, uint64_t from)
{
    struct sim_check *c = check_of(s);
    if (from < st->first_index)
        from = st->first_index;
    for (uint64_t i = from; i <= st->last_index; i++) {
        const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, i);
        const struct corral_raft_entry *prev = corral_raft_entry_at(n->raft, i - 1);
        uint64_t h = entry_hash(e);
        struct lm_slot *sl = lm_find(c, i, e->term);
        if (sl->prev_term == UINT64_MAX) {
            sl->hash = h;
            sl->prev_term = prev ? prev->term : UINT64_MAX;
            continue;
        }
        if (sl->hash != h ||
            (prev != NULL && sl->prev_term != UINT64_MAX && sl->prev_term != prev->term)) {
            sim_fail(s,
                     "log matching: node %u entry %" PRIu64 " term %" PRIu64
                     " differs from another log's entry with the same index and term",
                     n->id, i, e->term);
            return;
        }
        if (sl->prev_term == UINT64_MAX && prev != NULL)
            sl->prev_term = prev->term;
    }
}

/* Every entry a node counts as committed must be the one every other
 * node counts as committed at that index, forever. */
static void check_committed(struct sim *s, struct sim_node *n, const struct corral_raft_status *st)
{
    struct sim_check *c = check_of(s);
    uint64_t from = n->seen_commit + 1;
    if (from < st->first_index)
        from = st->first_index;
    for (uint64_t i = from; i <= st->commit; i++) {
        const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, i);
        if (e == NULL)
            continue;
        uint64_t nc = c->n_committed;
        c->committed_term = grow(c->committed_term, &nc, i, sizeof(uint64_t));
        c->committed_hash = grow(c->committed_hash, &c->n_committed, i, sizeof(uint64_t));
        uint64_t h = entry_hash(e);
        if (c->committed_term[i] == 0) {
            c->committed_term[i] = e->term;
            c->committed_hash[i] = h;
            if (i > s->res->commits)
                s->res->commits = i;
        } else if (c->committed_term[i] != e->term || c->committed_hash[i] != h) {
            sim_fail(s,
                     "committed entry changed: index %" PRIu64 " was term %" PRIu64
                     ", node %u now commits term %" PRIu64,
                     i, c->committed_term[i], n->id, e->term);
            return;
        }
    }
}

/* True when node id's disk holds the entry (index, term), or a snapshot
 * that covers index. */
static bool disk_holds(const struct sim *s, uint64_t id, uint64_t index, uint64_t term)
{
    if (id == 0 || id > SIM_NODES_MAX)
        return false;
    const struct sim_disk *d = &s->nodes[id].disk;
    if (index <= d->snap.index)
        return d->snap.index > 0;
    uint64_t k = index - d->snap.index - 1;
    return k < d->n && d->e[k].index == index && d->e[k].term == term;
}

/* I2, checked where it is made: when a leader's commit index moves, the
 * entry there is on the disks of a majority of its voters (its own copy
 * counts only once its fsync completed: R1, D6). A driver or core that
 * counts an unsynced copy fails here at once, with no crash needed. */
static void check_commit_durable(struct sim *s, struct sim_node *n,
                                 const struct corral_raft_status *st)
{
    const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, st->commit);
    if (e == NULL || st->commit <= n->seen_commit)
        return;
    uint32_t held = 0;
    for (uint32_t i = 0; i < st->conf.n_voters; i++)
        held += disk_holds(s, st->conf.voters[i], e->index, e->term);
    if (held < st->conf.n_voters / 2 + 1)
        sim_fail(s,
                 "durability: leader %u commits %" PRIu64 " (term %" PRIu64
                 ") held on %u of %u voters' disks",
                 n->id, e->index, e->term, held, st->conf.n_voters);
}

/* Leader completeness (section 5.4): a newly elected leader's log holds
 * the highest entry ever seen committed, so by Log Matching every
 * committed entry. Checked at election, before the leader can overwrite
 * anything, so a wrong commit shows even if nobody commits over it. */
static void check_leader_complete(struct sim *s, struct sim_node *n,
                                  const struct corral_raft_status *st)
{
    const struct sim_check *c = s->check;
    uint64_t top = s->res->commits;
    if (top == 0 || top <= st->snapshot_index || top >= c->n_committed)
        return;
    const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, top);
    if (e == NULL || e->term != c->committed_term[top])
        sim_fail(s,
                 "leader completeness: node %u leads term %" PRIu64 " without the entry committed"
                 " at %" PRIu64 " (term %" PRIu64 ")",
                 n->id, st->term, top, c->committed_term[top]);
}

void sim_check_node(struct sim *s, struct sim_node *n)
{
    if (!n->up || s->res->violation)
        return;
    struct sim_check *c = check_of(s);
    struct corral_raft_status st;
    corral_raft_status(n->raft, &st);
    if (st.term < n->seen_term || st.commit < n->seen_commit) {
        sim_fail(s,
                 "node %u went back: term %" PRIu64 "->%" PRIu64 ", commit %" PRIu64 "->%" PRIu64,
                 n->id, n->seen_term, st.term, n->seen_commit, st.commit);
        return;
    }
    if (st.term != n->seen_term)
        sim_trace(s, "node %u term %" PRIu64 " %s", n->id, st.term, corral_raft_role_name(st.role));
    bool elected = false;
    if (st.role == CORRAL_RAFT_LEADER) {
        c->leader_of_term = grow(c->leader_of_term, &c->n_terms, st.term, sizeof(uint32_t));
        if (c->leader_of_term[st.term] == 0) {
            elected = true;
            c->leader_of_term[st.term] = n->id;
            s->res->elections++;
            sim_trace(s, "node %u leads term %" PRIu64 " (commit %" PRIu64 ", last %" PRIu64 ")",
                      n->id, st.term, st.commit, st.last_index);
            check_leader_complete(s, n, &st);
        } else if (c->leader_of_term[st.term] != n->id) {
            sim_fail(s, "two leaders in term %" PRIu64 ": nodes %u and %u", st.term,
                     c->leader_of_term[st.term], n->id);
            return;
        }
    }
    if (st.role == CORRAL_RAFT_LEADER)
        check_commit_durable(s, n, &st);
    check_log_matching(s, n, &st, n->seen_commit > 0 ? n->seen_commit : st.first_index);
    check_committed(s, n, &st);
    bool committed = st.role == CORRAL_RAFT_LEADER && st.commit > n->seen_commit;
    n->seen_term = st.term;
    n->seen_commit = st.commit;
    if (!s->res->violation)
        sim_nemesis(s, n, elected, committed);
}

/* State machine safety: every node has the same state after applying the
 * same index, compared through a hash of the store's own snapshot bytes
 * (which hold the applied index and a CRC, and are what a follower that
 * falls behind receives). The store's internal invariants hold too. */
void sim_check_applied(struct sim *s, struct sim_node *n, uint64_t index)
{
    struct sim_check *c = check_of(s);
    if (corral_state_applied(n->st) != index) {
        sim_fail(s, "node %u: the state is at %" PRIu64 " after applying %" PRIu64, n->id,
                 corral_state_applied(n->st), index);
        return;
    }
    if (!corral_state_check(n->st)) {
        sim_fail(s, "node %u: the state's invariants fail at %" PRIu64, n->id, index);
        return;
    }
    struct corral_rbuf *snap = corral_state_snapshot(n->st);
    if (snap == NULL)
        abort();
    uint64_t h = sim_hash_bytes(snap->data, snap->len, 0xcbf29ce484222325ull) | 1;
    corral_rbuf_unref(snap);
    c->state_hash = grow(c->state_hash, &c->n_state, index, sizeof(uint64_t));
    if (c->state_hash[index] == 0)
        c->state_hash[index] = h;
    else if (c->state_hash[index] != h)
        sim_fail(s, "state machines differ at index %" PRIu64 " (node %u)", index, n->id);
}

/* A read returns the key's version; the bytes stored there must be the op
 * id of the write that the store says made that version. */
void sim_check_read(struct sim *s, struct sim_node *n, uint32_t key)
{
    char name[16];
    int len = snprintf(name, sizeof(name), "k%u", key);
    struct corral_kv_item it;
    if (!corral_kv_get(corral_state_kv(n->st), (const uint8_t *)name, (uint32_t)len, &it))
        return;
    uint64_t id = UINT64_MAX;
    if (it.value_len == sizeof(id))
        memcpy(&id, it.value, sizeof(id));
    if (id >= s->n_ops || s->ops[id].key != key || s->ops[id].applied_version != it.version)
        sim_fail(s, "node %u: key %u at version %" PRIu64 " holds bytes of no write there", n->id,
                 key, it.version);
}

static void check_liveness(struct sim *s)
{
    uint64_t deadline = s->heal_us + SIM_LIVENESS_MS * 1000ull;
    for (uint32_t c = 0; c < s->p.n_clients; c++) {
        if (s->clients[c].ok_after_heal == 0) {
            sim_fail(s, "liveness: client %u completed nothing after the heal", c);
            return;
        }
    }
    for (uint64_t i = 0; i < s->n_ops; i++) {
        const struct sim_op *op = &s->ops[i];
        if (op->status == OP_INFLIGHT) {
            sim_fail(s, "liveness: op %" PRIu64 " never completed", i);
            return;
        }
        if (op->call_us >= deadline && op->status == OP_UNKNOWN) {
            sim_fail(s,
                     "liveness: op %" PRIu64 " (client %u, node %u) issued %.3f ms after "
                     "the heal timed out",
                     i, op->client, op->node, (double)(op->call_us - s->heal_us) / 1000.0);
            return;
        }
    }
}

/* Settles a write whose client never heard back, from what the cluster
 * did with it: a write that no node ever applied (by the end of a healed
 * run, all committed entries are applied) never took effect, and one that
 * was applied took effect no later than its first application anywhere,
 * with the outcome every state machine computed. Both are sound bounds
 * for a correct system, and they spare the checker an exponential search
 * over maybe-happened writes. A bug that shows a value to a reader before
 * it is applied, or shows one that was never applied, is still caught. */
static bool settle_unknown(struct sim_op *op)
{
    if (op->applied_us == 0)
        return false;
    op->status = OP_OK;
    op->return_us = op->applied_us;
    op->cas_ok = op->applied_cas_ok;
    return true;
}

static void check_linearizable(struct sim *s)
{
    struct lincheck_op *h = calloc(s->n_ops + 1, sizeof(*h));
    if (h == NULL)
        abort();
    size_t n = 0;
    for (uint64_t i = 0; i < s->n_ops; i++) {
        struct sim_op op = s->ops[i];
        s->res->ops_ok += op.status == OP_OK;
        s->res->ops_unknown += op.status == OP_UNKNOWN;
        if (op.status == OP_UNKNOWN && op.kind != LINCHECK_GET && !settle_unknown(&op))
            continue;
        if (op.status != OP_OK && op.status != OP_UNKNOWN)
            continue;
        h[n++] =
            (struct lincheck_op){.client = op.client,
                                 .kind = op.kind,
                                 .key = op.key,
                                 .value = op.value,
                                 .expect = op.expect,
                                 .cas_ok = op.cas_ok,
                                 .call_ms = op.call_us,
                                 .return_ms = op.status == OP_OK ? op.return_us : LINCHECK_PENDING};
    }
    char why[400];
    enum lincheck_result r = lincheck_check(h, n, SIM_LINCHECK_BUDGET, why, sizeof(why));
    free(h);
    if (r == LINCHECK_VIOLATION)
        sim_fail(s, "history not linearizable (times in us): %s", why);
    else if (r != LINCHECK_OK)
        sim_fail(s, "undecided: linearizability check gave up (%d): %s", (int)r, why);
}

/* Safety first, so that a run whose liveness fails (reported but not
 * counted in make test's random batch) is still checked for it. */
void sim_check_end(struct sim *s)
{
    check_linearizable(s);
    if (!s->res->violation)
        check_liveness(s);
    if (!s->res->violation)
        sim_roster_check_end(s);
    if (!s->res->violation && s->p.n_workers > 0)
        sim_owner_check_end(s);
}
