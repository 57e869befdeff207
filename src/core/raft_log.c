/* The in-memory Raft log: a growable array of entries with an offset, so
 * compaction drops a prefix and truncation drops a suffix. */
#include "core/raft_log.h"

#include <assert.h>
#include <string.h>

#include "corral.h"
#include "util/mem.h"

void raft_log_init(struct raft_log *l)
{
    memset(l, 0, sizeof(*l));
    l->offset = 1;
}

static void unref_range(struct raft_log *l, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++)
        corral_rbuf_unref(l->e[i].data);
}

void raft_log_close(struct raft_log *l)
{
    unref_range(l, 0, l->n);
    corral_free(l->e);
    raft_log_init(l);
}

uint64_t raft_log_last_index(const struct raft_log *l)
{
    return l->offset + l->n - 1;
}

uint64_t raft_log_last_term(const struct raft_log *l)
{
    return l->n > 0 ? l->e[l->n - 1].term : l->prev_term;
}

int raft_log_term(const struct raft_log *l, uint64_t index, uint64_t *term)
{
    if (index + 1 == l->offset) {
        *term = l->prev_term;
        return 0;
    }
    if (index < l->offset)
        return CORRAL_ECOMPACTED;
    if (index > raft_log_last_index(l))
        return CORRAL_ENOTFOUND;
    *term = l->e[index - l->offset].term;
    return 0;
}

const struct corral_raft_entry *raft_log_get(const struct raft_log *l, uint64_t index)
{
    if (index < l->offset || index > raft_log_last_index(l))
        return NULL;
    return &l->e[index - l->offset];
}

int raft_log_append(struct raft_log *l, const struct corral_raft_entry *entry)
{
    assert(entry->index == raft_log_last_index(l) + 1);
    assert(entry->term >= raft_log_last_term(l));
    if (l->n == l->cap) {
        uint64_t cap = l->cap ? l->cap * 2 : 64;
        struct corral_raft_entry *e = corral_realloc(l->e, (size_t)cap * sizeof(*e));
        if (e == NULL)
            return CORRAL_ENOMEM;
        l->e = e;
        l->cap = cap;
    }
    l->e[l->n] = *entry;
    corral_rbuf_ref(entry->data);
    l->n++;
    return 0;
}

void raft_log_truncate(struct raft_log *l, uint64_t index)
{
    assert(index >= l->offset);
    if (index > raft_log_last_index(l))
        return;
    uint64_t keep = index - l->offset;
    unref_range(l, keep, l->n);
    l->n = keep;
    if (l->stable >= index)
        l->stable = index - 1;
}

void raft_log_compact(struct raft_log *l, uint64_t index)
{
    if (index < l->offset)
        return;
    if (index > raft_log_last_index(l))
        index = raft_log_last_index(l);
    uint64_t drop = index - l->offset + 1;
    l->prev_term = l->e[drop - 1].term;
    unref_range(l, 0, drop);
    memmove(l->e, l->e + drop, (size_t)(l->n - drop) * sizeof(*l->e));
    l->n -= drop;
    l->offset = index + 1;
}

void raft_log_reset(struct raft_log *l, uint64_t index, uint64_t term)
{
    unref_range(l, 0, l->n);
    l->n = 0;
    l->offset = index + 1;
    l->prev_term = term;
    l->stable = index;
}

void raft_log_stable_to(struct raft_log *l, uint64_t index, uint64_t term)
{
    uint64_t t;
    if (raft_log_term(l, index, &t) != 0 || t != term)
        return; /* replaced while it was being written */
    if (index > l->stable)
        l->stable = index;
}

int raft_log_slice(const struct raft_log *l, uint64_t lo, uint64_t hi, uint32_t max_n,
                   uint64_t max_bytes, struct corral_raft_entry **out, uint32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (lo > hi)
        return 0;
    assert(lo >= l->offset && hi <= raft_log_last_index(l));
    uint64_t n = hi - lo + 1;
    if (n > max_n)
        n = max_n;
    uint64_t bytes = 0;
    uint64_t take = 0;
    while (take < n) {
        const struct corral_raft_entry *e = &l->e[lo - l->offset + take];
        bytes += e->data ? e->data->len : 0;
        if (take > 0 && bytes > max_bytes)
            break;
        take++;
    }
    struct corral_raft_entry *a = corral_malloc((size_t)take * sizeof(*a));
    if (a == NULL)
        return CORRAL_ENOMEM;
    for (uint64_t i = 0; i < take; i++) {
        a[i] = l->e[lo - l->offset + i];
        corral_rbuf_ref(a[i].data);
    }
    *out = a;
    *n_out = (uint32_t)take;
    return 0;
}

void raft_entries_free(struct corral_raft_entry *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        corral_rbuf_unref(e[i].data);
    corral_free(e);
}

int raft_log_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term)
{
    uint64_t last_term = raft_log_last_term(l);
    return term > last_term || (term == last_term && index >= raft_log_last_index(l));
}
