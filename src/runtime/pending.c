/* The node's table of requests waiting on Raft: see pending.h. */
#include "runtime/pending.h"

#include <assert.h>
#include <string.h>

#include <uv.h>

#include "corral.h"
#include "util/mem.h"

enum kind { WRITE, READ };

struct corral_pending {
    struct corral_pending *prev, *next;
    enum kind kind;
    uint64_t index; /* write: its entry; read: the confirmed read index */
    uint64_t term;  /* write: the term it was proposed in */
    uint64_t read_id;
    uint64_t sent_ms; /* read: when the ReadIndex request last went out */
    uint64_t deadline_ms;
    uint64_t start_ns;
    corral_pending_write_cb wcb;
    corral_pending_read_cb rcb;
    void *ctx;
};

void corral_pending_init(struct corral_pending_table *t)
{
    memset(t, 0, sizeof(*t));
}

static void list_remove(struct corral_pending_list *l, struct corral_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
}

/* Inserts keeping the list sorted by index (usually at the tail): P2. */
static void list_insert_sorted(struct corral_pending_list *l, struct corral_pending *p)
{
    struct corral_pending *after = l->tail;
    while (after != NULL && after->index > p->index)
        after = after->prev;
    p->prev = after;
    p->next = after ? after->next : l->head;
    if (p->next)
        p->next->prev = p;
    else
        l->tail = p;
    if (after)
        after->next = p;
    else
        l->head = p;
}

static void list_append(struct corral_pending_list *l, struct corral_pending *p)
{
    p->next = NULL;
    p->prev = l->tail;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
}

/* Completes and frees p, already unlinked (P3). */
static void finish(struct corral_pending_table *t, struct corral_pending *p, int err,
                   const struct corral_state_result *res)
{
    assert(t->count > 0);
    t->count--;
    if (p->kind == WRITE) {
        if (err == 0)
            corral_hist_observe(&t->commit_hist, (double)(uv_hrtime() - p->start_ns) / 1e9);
        else
            t->writes_failed++;
        p->wcb(p->ctx, err, res);
    } else {
        t->reads_served += err == 0;
        p->rcb(p->ctx, err);
    }
    corral_free(p);
}

/* Completes, with err, every request of a by-index list up to index. */
static void finish_upto(struct corral_pending_table *t, struct corral_pending_list *l,
                        uint64_t index, int err)
{
    while (l->head != NULL && l->head->index <= index) {
        struct corral_pending *p = l->head;
        list_remove(l, p);
        finish(t, p, err, NULL);
    }
}

static struct corral_pending *pending_new(struct corral_pending_table *t, enum kind kind,
                                          uint64_t deadline_ms, void *ctx)
{
    struct corral_pending *p = corral_calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->kind = kind;
    p->ctx = ctx;
    p->start_ns = uv_hrtime();
    p->deadline_ms = deadline_ms;
    t->count++;
    return p;
}

int corral_pending_add_write(struct corral_pending_table *t, uint64_t index, uint64_t term,
                             uint64_t deadline_ms, corral_pending_write_cb cb, void *ctx)
{
    struct corral_pending *p = pending_new(t, WRITE, deadline_ms, ctx);
    if (p == NULL)
        return CORRAL_ENOMEM;
    p->index = index;
    p->term = term;
    p->wcb = cb;
    list_insert_sorted(&t->writes, p);
    return 0;
}

uint64_t corral_pending_next_read_id(struct corral_pending_table *t)
{
    return ++t->next_read_id;
}

int corral_pending_add_read(struct corral_pending_table *t, uint64_t read_id, uint64_t now_ms,
                            uint64_t deadline_ms, corral_pending_read_cb cb, void *ctx)
{
    struct corral_pending *p = pending_new(t, READ, deadline_ms, ctx);
    if (p == NULL)
        return CORRAL_ENOMEM;
    p->read_id = read_id;
    p->sent_ms = now_ms;
    p->rcb = cb;
    list_append(&t->reads, p);
    return 0;
}

void corral_pending_applied(struct corral_pending_table *t, const struct corral_raft_entry *e,
                            const struct corral_state_result *res)
{
    struct corral_pending_list *l = &t->writes;
    while (l->head != NULL && l->head->index <= e->index) {
        struct corral_pending *p = l->head;
        list_remove(l, p);
        bool ours = p->index == e->index && p->term == e->term &&
                    e->type == CORRAL_RAFT_ENTRY_NORMAL && res != NULL;
        finish(t, p, ours ? 0 : CORRAL_ELOST, ours ? res : NULL);
    }
}

void corral_pending_read_ready(struct corral_pending_table *t, const struct corral_raft_read *rr)
{
    struct corral_pending *p = t->reads.head;
    while (p != NULL && p->read_id != rr->id)
        p = p->next;
    if (p == NULL)
        return; /* timed out meanwhile */
    list_remove(&t->reads, p);
    if (!rr->ok) {
        finish(t, p, CORRAL_ENOTLEADER, NULL);
        return;
    }
    p->index = rr->index;
    list_insert_sorted(&t->reads_apply, p);
}

void corral_pending_release_reads(struct corral_pending_table *t, uint64_t applied)
{
    finish_upto(t, &t->reads_apply, applied, 0);
}

void corral_pending_fail_writes_upto(struct corral_pending_table *t, uint64_t index, int err)
{
    finish_upto(t, &t->writes, index, err);
}

void corral_pending_fail_all(struct corral_pending_table *t, int err)
{
    finish_upto(t, &t->writes, UINT64_MAX, err);
    finish_upto(t, &t->reads_apply, UINT64_MAX, err);
    /* reads is in the order asked, not by index: drain it whole. */
    while (t->reads.head != NULL) {
        struct corral_pending *p = t->reads.head;
        list_remove(&t->reads, p);
        finish(t, p, err, NULL);
    }
    assert(t->count == 0);
}

static void expire_list(struct corral_pending_table *t, struct corral_pending_list *l,
                        uint64_t now_ms)
{
    struct corral_pending *p = l->head;
    while (p != NULL) {
        struct corral_pending *next = p->next;
        if (p->deadline_ms <= now_ms) {
            list_remove(l, p);
            finish(t, p, CORRAL_ETIMEDOUT, NULL);
        }
        p = next;
    }
}

void corral_pending_expire(struct corral_pending_table *t, uint64_t now_ms)
{
    expire_list(t, &t->writes, now_ms);
    expire_list(t, &t->reads, now_ms);
    expire_list(t, &t->reads_apply, now_ms);
}

void corral_pending_retry_reads(struct corral_pending_table *t, uint64_t now_ms, uint64_t every_ms,
                                void (*ask)(void *ud, uint64_t read_id), void *ud)
{
    for (struct corral_pending *p = t->reads.head; p != NULL; p = p->next) {
        if (now_ms - p->sent_ms < every_ms)
            continue;
        p->sent_ms = now_ms;
        ask(ud, p->read_id);
    }
}

static bool list_ok(const struct corral_pending_list *l, bool sorted, uint32_t *n)
{
    const struct corral_pending *prev = NULL;
    for (const struct corral_pending *p = l->head; p != NULL; prev = p, p = p->next) {
        if (p->prev != prev || (sorted && prev != NULL && prev->index > p->index))
            return false;
        (*n)++;
    }
    return l->tail == prev;
}

bool corral_pending_check(const struct corral_pending_table *t)
{
    uint32_t n = 0;
    return list_ok(&t->writes, true, &n) && list_ok(&t->reads, false, &n) &&
           list_ok(&t->reads_apply, true, &n) && n == t->count;
}
