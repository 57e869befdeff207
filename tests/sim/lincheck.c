/* Linearizability checker (see lincheck.h): per key, the Wing & Gong search
 * over a doubly linked list of call/return events, memoized on (set of
 * linearized ops, register value) as proposed by Lowe and done by Porcupine. */
#include "lincheck.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A call or return of one op of the current key; op is a local index. */
struct event {
    uint64_t time_ms;
    uint32_t op;
    bool is_return;
};

/* List node. Lifting an op unlinks its call and return nodes, so the list
 * always holds exactly the ops not yet linearized, in time order. */
struct node {
    struct node *prev;
    struct node *next;
    struct node *match; /* call: its return node; return: NULL */
    uint32_t op;
};

struct frame {
    struct node *call;
    uint64_t state; /* register value before the op was linearized */
};

struct centry {
    uint64_t hash;
    uint64_t state;
};

/* Hash set of (linearized bitset, state). Bitsets live in one array, entry i
 * at bits[i * words]; slots hold entry index + 1 (0 = empty), linear probing. */
struct cache {
    uint32_t *slots;
    size_t slots_cap; /* power of two, kept at least twice count */
    struct centry *entries;
    uint64_t *bits;
    size_t count;
    size_t cap;
    size_t words;
};

/* Working memory for one key, sized for the largest key and reused. */
struct keycheck {
    const struct lincheck_op *ops; /* the caller's array */
    uint32_t *idx;                 /* local op -> index into ops */
    size_t n;
    size_t n_completed;
    const uint64_t *zobrist; /* random word per local op: XOR = set hash */
    struct event *events;
    struct node *nodes; /* nodes[0] is the list head */
    struct frame *stack;
    uint64_t *lin;
    uint32_t *ret_node; /* scratch: local op -> its return node */
    uint64_t *observed; /* scratch: sorted values that completed ops can observe */
    uint64_t *ret_ms;   /* local op -> return time used by the search */
    struct cache cache;
    bool oom;
    /* Deepest dead end seen, for the explanation. */
    size_t best_depth;
    uint32_t best_op;
    uint64_t best_state;
};

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finalizer: spreads states like 1, 2, 3 over all bits. */
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static bool is_pending(const struct lincheck_op *op)
{
    return op->return_ms == LINCHECK_PENDING;
}

/* The sequential register. Returns whether op may take effect in state. */
static bool model_step(const struct lincheck_op *op, uint64_t state, uint64_t *next)
{
    switch (op->kind) {
    case LINCHECK_PUT:
        *next = op->value;
        return true;
    case LINCHECK_DEL:
        *next = 0;
        return true;
    case LINCHECK_GET:
        *next = state;
        return state == op->value;
    case LINCHECK_CAS:
        if (is_pending(op)) { /* outcome unseen: whatever the state dictates */
            *next = state == op->expect ? op->value : state;
            return true;
        }
        *next = op->cas_ok ? op->value : state;
        return (state == op->expect) == op->cas_ok;
    default:
        return false;
    }
}

static void cache_free(struct cache *c)
{
    free(c->slots);
    free(c->entries);
    free(c->bits);
    memset(c, 0, sizeof(*c));
}

/* Empties the cache for a key whose bitsets have `words` words. */
static void cache_reset(struct cache *c, size_t words)
{
    if (c->slots != NULL) {
        memset(c->slots, 0, c->slots_cap * sizeof(c->slots[0]));
    }
    if (words != c->words) { /* entry storage is laid out by word count */
        free(c->entries);
        free(c->bits);
        c->entries = NULL;
        c->bits = NULL;
        c->cap = 0;
    }
    c->count = 0;
    c->words = words;
}

static void cache_place(struct cache *c, uint32_t entry)
{
    size_t mask = c->slots_cap - 1;
    size_t i = (size_t)c->entries[entry].hash & mask;
    while (c->slots[i] != 0) {
        i = (i + 1) & mask;
    }
    c->slots[i] = entry + 1;
}

/* Makes room for one more entry. Returns false on the memory limit. */
static bool cache_grow(struct cache *c)
{
    if (c->count + 1 > c->cap) {
        size_t cap = c->cap == 0 ? 256 : c->cap * 2;
        size_t bytes = cap * (sizeof(struct centry) + c->words * sizeof(uint64_t));
        if (cap >= UINT32_MAX || bytes > LINCHECK_CACHE_BYTES_MAX) {
            return false;
        }
        struct centry *e = realloc(c->entries, cap * sizeof(*e));
        if (e == NULL) {
            return false;
        }
        c->entries = e;
        uint64_t *b = realloc(c->bits, cap * c->words * sizeof(*b));
        if (b == NULL) {
            return false;
        }
        c->bits = b;
        c->cap = cap;
    }
    if ((c->count + 1) * 2 > c->slots_cap) {
        size_t cap = c->slots_cap == 0 ? 1024 : c->slots_cap * 2;
        uint32_t *s = calloc(cap, sizeof(*s));
        if (s == NULL) {
            return false;
        }
        free(c->slots);
        c->slots = s;
        c->slots_cap = cap;
        for (size_t i = 0; i < c->count; i++) {
            cache_place(c, (uint32_t)i);
        }
    }
    return true;
}

/* Adds (lin, state) unless present. set_hash is the Zobrist hash of lin.
 * Returns 1 if added, 0 if already seen, -1 if out of memory. */
static int cache_add(struct cache *c, const uint64_t *lin, uint64_t set_hash, uint64_t state)
{
    if (!cache_grow(c)) {
        return -1;
    }
    uint64_t h = set_hash ^ mix64(state);
    size_t bytes = c->words * sizeof(uint64_t);
    size_t mask = c->slots_cap - 1;
    size_t i = (size_t)h & mask;
    for (; c->slots[i] != 0; i = (i + 1) & mask) {
        uint32_t e = c->slots[i] - 1;
        if (c->entries[e].hash == h && c->entries[e].state == state &&
            memcmp(&c->bits[(size_t)e * c->words], lin, bytes) == 0) {
            return 0;
        }
    }
    c->entries[c->count] = (struct centry){.hash = h, .state = state};
    memcpy(&c->bits[c->count * c->words], lin, bytes);
    c->slots[i] = (uint32_t)c->count + 1;
    c->count++;
    return 1;
}

static int event_cmp(const void *pa, const void *pb)
{
    const struct event *a = pa;
    const struct event *b = pb;
    if (a->time_ms != b->time_ms) {
        return a->time_ms < b->time_ms ? -1 : 1;
    }
    /* Closed intervals: a call at t sorts before a return at t, so the two
     * ops overlap and the search may linearize either first. */
    if (a->is_return != b->is_return) {
        return a->is_return ? 1 : -1;
    }
    return a->op < b->op ? -1 : (a->op > b->op ? 1 : 0);
}

/* Builds the time-ordered event list for the current key's ops. */
static void build_list(struct keycheck *kc)
{
    size_t n = kc->n;
    for (uint32_t i = 0; i < (uint32_t)n; i++) {
        const struct lincheck_op *op = &kc->ops[kc->idx[i]];
        /* A pending return sorts last: the op may take effect at any time. */
        kc->events[2 * i] = (struct event){op->call_ms, i, false};
        kc->events[2 * i + 1] = (struct event){kc->ret_ms[i], i, true};
    }
    qsort(kc->events, 2 * n, sizeof(kc->events[0]), event_cmp);
    struct node *nodes = kc->nodes;
    nodes[0] = (struct node){.prev = NULL, .next = n > 0 ? &nodes[1] : NULL};
    for (size_t p = 1; p <= 2 * n; p++) {
        nodes[p] = (struct node){.prev = &nodes[p - 1],
                                 .next = p < 2 * n ? &nodes[p + 1] : NULL,
                                 .op = kc->events[p - 1].op};
        if (kc->events[p - 1].is_return) {
            kc->ret_node[nodes[p].op] = (uint32_t)p;
        }
    }
    for (size_t p = 1; p <= 2 * n; p++) {
        if (!kc->events[p - 1].is_return) {
            nodes[p].match = &nodes[kc->ret_node[nodes[p].op]];
        }
    }
}

static void lift(struct node *call)
{
    call->prev->next = call->next;
    call->next->prev = call->prev; /* a call is always followed by its return */
    struct node *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next != NULL) {
        ret->next->prev = ret->prev;
    }
}

/* Exact inverse of lift: relinks in reverse order. */
static void unlift(struct node *call)
{
    struct node *ret = call->match;
    ret->prev->next = ret;
    if (ret->next != NULL) {
        ret->next->prev = ret;
    }
    call->prev->next = call;
    call->next->prev = call;
}

static void note_dead_end(struct keycheck *kc, size_t depth, uint32_t op, uint64_t state)
{
    if (depth > kc->best_depth || kc->best_op == UINT32_MAX) {
        kc->best_depth = depth;
        kc->best_op = op;
        kc->best_state = state;
    }
}

/* Tries to linearize the op whose call node is entry next. Returns 1 if it
 * was (lin/state/hash updated, op lifted), 0 if not, -1 if out of memory. */
static int try_linearize(struct keycheck *kc, struct node *entry, uint64_t *state, uint64_t *hash,
                         size_t depth)
{
    uint32_t op = entry->op;
    uint64_t next;
    if (!model_step(&kc->ops[kc->idx[op]], *state, &next)) {
        return 0;
    }
    kc->lin[op / 64] |= (uint64_t)1 << (op % 64);
    int added = cache_add(&kc->cache, kc->lin, *hash ^ kc->zobrist[op], next);
    if (added != 1) {
        kc->lin[op / 64] &= ~((uint64_t)1 << (op % 64));
        return added;
    }
    kc->stack[depth] = (struct frame){.call = entry, .state = *state};
    *state = next;
    *hash ^= kc->zobrist[op];
    lift(entry);
    return 1;
}

/* Wing & Gong with memoization. Succeeds once every completed op is
 * linearized: the pending ones left can all take effect afterwards, where
 * nobody observes them, which is the same as never. */
static enum lincheck_result search(struct keycheck *kc, uint64_t step_budget)
{
    struct node *head = &kc->nodes[0];
    struct node *entry = head->next;
    uint64_t state = 0, hash = 0, steps = 0;
    size_t depth = 0, done = 0;
    while (done < kc->n_completed) {
        if (++steps > step_budget) {
            return LINCHECK_UNKNOWN;
        }
        /* A completed op's return is still listed, and pending returns sort
         * after all completed ones, so the walk meets a return first. */
        assert(entry != NULL);
        if (entry->match != NULL) {
            int r = try_linearize(kc, entry, &state, &hash, depth);
            if (r < 0) {
                kc->oom = true;
                return LINCHECK_UNKNOWN;
            }
            if (r == 0) {
                entry = entry->next;
                continue;
            }
            done += kc->ret_ms[entry->op] != LINCHECK_PENDING;
            depth++;
            entry = head->next;
            continue;
        }
        /* This op returned before any extension of the current prefix let it
         * take effect: undo the most recent choice. */
        note_dead_end(kc, depth, entry->op, state);
        if (depth == 0) {
            return LINCHECK_VIOLATION;
        }
        depth--;
        entry = kc->stack[depth].call;
        state = kc->stack[depth].state;
        uint32_t op = entry->op;
        kc->lin[op / 64] &= ~((uint64_t)1 << (op % 64));
        hash ^= kc->zobrist[op];
        done -= kc->ret_ms[op] != LINCHECK_PENDING;
        unlift(entry);
        entry = entry->next;
    }
    return LINCHECK_OK;
}

static int describe_op(char *buf, size_t len, const struct lincheck_op *op)
{
    char ret[32];
    if (is_pending(op)) {
        snprintf(ret, sizeof(ret), "pending");
    } else {
        snprintf(ret, sizeof(ret), "%" PRIu64, op->return_ms);
    }
    int k = snprintf(buf, len, "client %" PRIu32 " ", op->client);
    size_t off = k > 0 && (size_t)k < len ? (size_t)k : len;
    len -= off;
    buf += off;
    switch (op->kind) {
    case LINCHECK_PUT:
        return snprintf(buf, len, "PUT %" PRIu64 " [%" PRIu64 ", %s] ms", op->value, op->call_ms,
                        ret);
    case LINCHECK_GET:
        return snprintf(buf, len, "GET -> %" PRIu64 " [%" PRIu64 ", %s] ms", op->value, op->call_ms,
                        ret);
    case LINCHECK_DEL:
        return snprintf(buf, len, "DEL [%" PRIu64 ", %s] ms", op->call_ms, ret);
    default:
        return snprintf(buf, len, "CAS %" PRIu64 " -> %" PRIu64 " %s [%" PRIu64 ", %s] ms",
                        op->expect, op->value,
                        is_pending(op) ? "(outcome unknown)" : (op->cas_ok ? "ok" : "failed"),
                        op->call_ms, ret);
    }
}

static void explain(const struct keycheck *kc, enum lincheck_result r, uint32_t key,
                    uint64_t step_budget, char *why, size_t why_len)
{
    if (why == NULL || why_len == 0) {
        return;
    }
    if (r == LINCHECK_UNKNOWN) {
        if (kc->oom) {
            snprintf(why, why_len, "key %" PRIu32 ": memo cache out of memory (%zu ops)", key,
                     kc->n);
        } else {
            snprintf(why, why_len, "key %" PRIu32 ": step budget %" PRIu64 " exhausted (%zu ops)",
                     key, step_budget, kc->n);
        }
        return;
    }
    char op_text[160];
    uint32_t global = kc->idx[kc->best_op];
    describe_op(op_text, sizeof(op_text), &kc->ops[global]);
    snprintf(why, why_len,
             "key %" PRIu32 ": not linearizable: op #%" PRIu32 " (%s) has no valid"
             " linearization point; longest linearizable prefix: %zu of %zu ops checked,"
             " leaving value %" PRIu64,
             key, global, op_text, kc->best_depth, kc->n, kc->best_state);
}

static int u64_cmp(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa;
    uint64_t b = *(const uint64_t *)pb;
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* Pending ops never return, so each can be linearized anywhere after its call
 * and the search space grows as 2^pending when it must be exhausted (that is,
 * on a violation). Most pending writes are lost writes nobody saw, so this
 * drops a pending PUT, DEL or CAS P of value v (DEL: 0) when no completed GET
 * returned v, no CAS expects v, and no completed failed CAS returned at or
 * after P's call. Then in any linearization where P applied, between P and
 * the next effective write (a PUT or DEL, since no CAS expects v) lie only
 * pending CASes that did nothing: a GET there would read v, and a failed CAS
 * there could need v to fail. Removing P (the value stays as before P) may
 * let those pending CASes apply, but nothing reads the value before the next
 * write, so no op's legality changes; "never took effect" is allowed, so the
 * verdict is unchanged. The reference test in test_lincheck.c checks this. */
static void drop_unobserved_pending(struct keycheck *kc)
{
    size_t n_obs = 0;
    uint64_t failed_cas_return_ms = 0; /* latest; 0 also when there is none */
    bool any_failed_cas = false;
    for (size_t i = 0; i < kc->n; i++) {
        const struct lincheck_op *op = &kc->ops[kc->idx[i]];
        if (op->kind == LINCHECK_CAS && !is_pending(op) && !op->cas_ok) {
            any_failed_cas = true;
            if (op->return_ms > failed_cas_return_ms) {
                failed_cas_return_ms = op->return_ms;
            }
        }
        if (op->kind == LINCHECK_GET || op->kind == LINCHECK_CAS) {
            kc->observed[n_obs++] = op->kind == LINCHECK_GET ? op->value : op->expect;
        }
    }
    qsort(kc->observed, n_obs, sizeof(kc->observed[0]), u64_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < kc->n; i++) {
        const struct lincheck_op *op = &kc->ops[kc->idx[i]];
        bool blind = is_pending(op) && op->kind != LINCHECK_GET;
        bool cas_after = any_failed_cas && failed_cas_return_ms >= op->call_ms;
        uint64_t v = op->kind == LINCHECK_DEL ? 0 : op->value;
        if (!blind || cas_after || bsearch(&v, kc->observed, n_obs, sizeof(v), u64_cmp) != NULL) {
            kc->idx[kept++] = kc->idx[i];
        }
    }
    kc->n = kept;
}

/* A pending write P that is the only op on the key writing v != 0, when some
 * completed op observed v (a GET returned it or a successful CAS expected
 * it), must have taken effect before the first such observer returned: give
 * P that return time, so the search stops trying it everywhere later. Every
 * linearization of the history puts P there anyway, so the verdict is
 * unchanged. O(ops on the key) per pending write. */
static void bound_observed_pending(struct keycheck *kc, uint32_t p)
{
    const struct lincheck_op *w = &kc->ops[kc->idx[p]];
    if (!is_pending(w) || w->kind == LINCHECK_GET || w->kind == LINCHECK_DEL || w->value == 0) {
        return;
    }
    uint64_t bound_ms = LINCHECK_PENDING;
    for (size_t i = 0; i < kc->n; i++) {
        const struct lincheck_op *op = &kc->ops[kc->idx[i]];
        bool writes_v =
            (op->kind == LINCHECK_PUT || op->kind == LINCHECK_CAS) && op->value == w->value;
        if (writes_v && i != p) {
            return; /* another writer could explain the observation */
        }
        bool sees_v = (op->kind == LINCHECK_GET && op->value == w->value) ||
                      (op->kind == LINCHECK_CAS && op->cas_ok && op->expect == w->value);
        if (sees_v && !is_pending(op) && op->return_ms < bound_ms) {
            bound_ms = op->return_ms;
        }
    }
    /* Observed before P was even called: leave it pending and let the search
     * report the violation rather than build a return before the call. */
    if (bound_ms >= w->call_ms) {
        kc->ret_ms[p] = bound_ms;
    }
}

/* Checks the ops kc->idx[0..n) which all share one key. */
static enum lincheck_result check_key(struct keycheck *kc, uint64_t step_budget)
{
    drop_unobserved_pending(kc);
    size_t words = (kc->n + 63) / 64;
    memset(kc->lin, 0, words * sizeof(kc->lin[0]));
    cache_reset(&kc->cache, words);
    kc->oom = false;
    kc->best_depth = 0;
    kc->best_op = UINT32_MAX;
    kc->best_state = 0;
    kc->n_completed = 0;
    for (size_t i = 0; i < kc->n; i++) {
        kc->ret_ms[i] = kc->ops[kc->idx[i]].return_ms;
    }
    for (size_t i = 0; i < kc->n; i++) {
        bound_observed_pending(kc, (uint32_t)i);
        kc->n_completed += kc->ret_ms[i] != LINCHECK_PENDING;
    }
    build_list(kc);
    return search(kc, step_budget);
}

static bool keycheck_init(struct keycheck *kc, const struct lincheck_op *ops, size_t n_max)
{
    memset(kc, 0, sizeof(*kc));
    kc->ops = ops;
    size_t m = n_max == 0 ? 1 : n_max;
    uint64_t *zobrist = malloc(m * sizeof(*zobrist));
    kc->events = malloc(2 * m * sizeof(*kc->events));
    kc->nodes = malloc((2 * m + 1) * sizeof(*kc->nodes));
    kc->stack = malloc(m * sizeof(*kc->stack));
    kc->lin = malloc(((m + 63) / 64) * sizeof(*kc->lin));
    kc->ret_node = malloc(m * sizeof(*kc->ret_node));
    kc->observed = malloc(m * sizeof(*kc->observed));
    kc->ret_ms = malloc(m * sizeof(*kc->ret_ms));
    kc->zobrist = zobrist;
    if (zobrist == NULL || kc->events == NULL || kc->nodes == NULL || kc->stack == NULL ||
        kc->lin == NULL || kc->ret_node == NULL || kc->observed == NULL || kc->ret_ms == NULL) {
        return false;
    }
    for (size_t i = 0; i < m; i++) {
        zobrist[i] = mix64(0x6c696e636865636bu + i); /* fixed: runs are reproducible */
    }
    return true;
}

static void keycheck_free(struct keycheck *kc)
{
    free((void *)kc->zobrist);
    free(kc->events);
    free(kc->nodes);
    free(kc->stack);
    free(kc->lin);
    free(kc->ret_node);
    free(kc->observed);
    free(kc->ret_ms);
    cache_free(&kc->cache);
}

struct keyed {
    uint32_t key;
    uint32_t idx;
};

static int keyed_cmp(const void *pa, const void *pb)
{
    const struct keyed *a = pa;
    const struct keyed *b = pb;
    if (a->key != b->key) {
        return a->key < b->key ? -1 : 1;
    }
    return a->idx < b->idx ? -1 : (a->idx > b->idx ? 1 : 0);
}

/* Returns the index of the first malformed op, or n if none. */
static size_t find_invalid(const struct lincheck_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool kind_ok = ops[i].kind >= LINCHECK_PUT && ops[i].kind <= LINCHECK_CAS;
        if (!kind_ok || ops[i].return_ms < ops[i].call_ms) {
            return i;
        }
    }
    return n;
}

/* Sorts the ops that matter by key; pending GETs have no effect and are
 * dropped. Returns the count kept and the largest per-key count. */
static size_t group_by_key(const struct lincheck_op *ops, size_t n, struct keyed *out,
                           size_t *n_max)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(ops[i].kind == LINCHECK_GET && is_pending(&ops[i]))) {
            out[m++] = (struct keyed){ops[i].key, (uint32_t)i};
        }
    }
    qsort(out, m, sizeof(out[0]), keyed_cmp);
    *n_max = 0;
    for (size_t a = 0, b = 0; a < m; a = b) {
        for (b = a; b < m && out[b].key == out[a].key; b++) {
        }
        *n_max = b - a > *n_max ? b - a : *n_max;
    }
    return m;
}

/* Runs check_key on each key's run of `keyed`, violations first. */
static enum lincheck_result check_groups(struct keycheck *kc, const struct keyed *keyed, size_t m,
                                         uint32_t *idx, uint64_t step_budget, char *why,
                                         size_t why_len)
{
    enum lincheck_result result = LINCHECK_OK;
    for (size_t a = 0, b = 0; a < m; a = b) {
        for (b = a; b < m && keyed[b].key == keyed[a].key; b++) {
            idx[b - a] = keyed[b].idx;
        }
        kc->n = b - a;
        enum lincheck_result r = check_key(kc, step_budget);
        if (r == LINCHECK_VIOLATION) {
            explain(kc, r, keyed[a].key, step_budget, why, why_len);
            return r;
        }
        if (r == LINCHECK_UNKNOWN && result == LINCHECK_OK) {
            explain(kc, r, keyed[a].key, step_budget, why, why_len);
            result = r;
        }
    }
    return result;
}

enum lincheck_result lincheck_check(const struct lincheck_op *ops, size_t n, uint64_t step_budget,
                                    char *why, size_t why_len)
{
    if (why != NULL && why_len > 0) {
        why[0] = '\0';
    }
    size_t bad = find_invalid(ops, n);
    if (n > LINCHECK_OPS_MAX || bad < n) {
        if (why != NULL && why_len > 0 && n > LINCHECK_OPS_MAX) {
            snprintf(why, why_len, "too many ops (%zu, max %u)", n, LINCHECK_OPS_MAX);
        } else if (why != NULL && why_len > 0) {
            snprintf(why, why_len, "op #%zu is malformed (kind or times)", bad);
        }
        return LINCHECK_INVALID;
    }
    struct keyed *keyed = malloc((n == 0 ? 1 : n) * sizeof(*keyed));
    uint32_t *idx = malloc((n == 0 ? 1 : n) * sizeof(*idx));
    struct keycheck kc;
    size_t n_max = 0;
    size_t m = keyed == NULL ? 0 : group_by_key(ops, n, keyed, &n_max);
    bool ok = keycheck_init(&kc, ops, n_max) && keyed != NULL && idx != NULL;
    enum lincheck_result result = LINCHECK_UNKNOWN;
    if (ok) {
        kc.idx = idx;
        result = check_groups(&kc, keyed, m, idx, step_budget, why, why_len);
    } else if (why != NULL && why_len > 0) {
        snprintf(why, why_len, "out of memory");
    }
    keycheck_free(&kc);
    free(idx);
    free(keyed);
    return result;
}
