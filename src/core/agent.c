/* The member-side reconciliation loop (contract and invariants A1-A11 in
 * agent.h). One record per partition, in an array sorted by (resource,
 * partition); hooks in flight in a table sorted by id, which is the order
 * they are queued in; reports live in their partition's record. */
#include "core/agent.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "util/mem.h"

#define HOOKS_SLACK 16u

_Static_assert(CORRAL_AGENT_RECORDS_MAX <= UINT32_MAX / 2 - HOOKS_SLACK,
               "the hook table size fits in 32 bits");
_Static_assert((CORRAL_AGENT_HEARTBEATS_MAX & (CORRAL_AGENT_HEARTBEATS_MAX - 1)) == 0,
               "the heartbeat ring is indexed by seq modulo a power of two");

/* What the agent knows of one partition. */
struct rec {
    uint32_t resource;
    uint32_t partition;
    /* The desired entry in force; d_role 0: not in the desired set. */
    uint8_t d_role;
    uint8_t d_state;
    uint32_t d_from;
    uint64_t d_epoch; /* kept when it leaves the set: the drop hook's epoch */
    /* Epochs (A3). */
    uint64_t epoch_seen;     /* largest epoch of any entry applied */
    uint64_t epoch_stopped;  /* largest epoch it stopped acting at */
    uint64_t released_epoch; /* largest epoch reported released */
    uint64_t released_index; /* the desired set's index when it was */
    uint64_t in_sync_index;  /* the same for the last in_sync report */
    /* Local state (A4, A6). acting implies held. */
    bool acting;
    bool held;     /* an acquire was queued and no release has completed ok */
    bool acquired; /* the acquire of held_epoch completed ok */
    bool copied;   /* the replicate of copy `gen` completed ok */
    bool need_drop;
    uint8_t stop_reason; /* why acting stopped: the release's reason */
    uint32_t gen;        /* the copy a replicate is for (A9) */
    uint64_t held_epoch;
    /* The hook in flight (A5); hook 0: none. */
    uint8_t hook;
    uint32_t hook_gen;
    uint64_t hook_id;
    uint64_t hook_index; /* the assignment index when it was queued */
    /* Retry (A8). */
    uint32_t failures;
    uint64_t retry_at;
    /* The pending report (A7); r.state 0: none. carried_since..carried_last
     * is the unbroken run of heartbeats that carried it (0: none yet). */
    struct corral_agent_report r;
    uint64_t carried_since;
    uint64_t carried_last;
};

struct slot {
    struct corral_agent_hook h;
    bool live;
};

struct sent {
    uint64_t seq;
    uint64_t sent_ms;
};

struct corral_agent {
    struct corral_agent_config cfg;
    uint64_t now;         /* the latest clock reading given */
    uint64_t index;       /* of the desired set in force */
    uint64_t lease_end;   /* A1 */
    uint64_t lease_index; /* A12: the view an acquire needs */
    uint64_t seq;         /* of the last heartbeat sent */
    struct sent sent[CORRAL_AGENT_HEARTBEATS_MAX];
    uint64_t next_hook_id;
    uint64_t retry_min; /* <= every pending retry_at (A8); may be early */
    /* The largest epoch seen of any partition forgotten: a partition new
     * to the table starts as if it had stopped acting there (A3). */
    uint64_t forgotten_epoch;
    bool shutting;
    struct rec *recs;
    uint32_t n;
    /* Hooks in flight or done and not compacted yet: [0, taken) handed
     * out, [taken, len) queued. Only handed-out slots die. cap >= 2 x the
     * records at the last set + slack, so a queue never allocates. */
    struct slot *hooks;
    uint32_t hooks_len;
    uint32_t hooks_taken;
    uint32_t hooks_cap;
    uint32_t n_desired;
    uint32_t n_acting;
    uint32_t n_held;
    uint32_t n_inflight;
    uint32_t n_reports;
    uint64_t stale_ignored;
};

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int key_cmp(uint32_t ra, uint32_t pa, uint32_t rb, uint32_t pb)
{
    if (ra != rb)
        return ra < rb ? -1 : 1;
    return (pa > pb) - (pa < pb);
}

static struct rec *find_rec(const struct corral_agent *a, uint32_t resource, uint32_t partition)
{
    uint32_t lo = 0, hi = a->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct rec *r = &a->recs[mid];
        int c = key_cmp(r->resource, r->partition, resource, partition);
        if (c == 0)
            return &a->recs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool lease_valid(const struct corral_agent *a)
{
    return a->now < a->lease_end;
}

static bool removable(const struct rec *r)
{
    return r->d_role == 0 && !r->need_drop && r->hook == 0 && !r->held && r->r.state == 0;
}

static void forget(struct corral_agent *a, const struct rec *r)
{
    if (r->epoch_seen > a->forgotten_epoch)
        a->forgotten_epoch = r->epoch_seen;
}

/* ---- Reports (A7) ---- */

static void report(struct corral_agent *a, struct rec *r, uint8_t state, uint64_t epoch,
                   uint8_t hook, int err, uint64_t index)
{
    if (r->r.state == 0)
        a->n_reports++;
    r->r = (struct corral_agent_report){
        .resource = r->resource,
        .partition = r->partition,
        .epoch = epoch,
        .state = state,
        .hook = hook,
        .error = (int32_t)err,
        .index = index,
    };
    r->carried_since = 0;
    r->carried_last = 0;
}

static void report_clear(struct corral_agent *a, struct rec *r)
{
    if (r->r.state == 0)
        return;
    a->n_reports--;
    r->r.state = 0;
    r->carried_since = 0;
    r->carried_last = 0;
}

/* ---- Hooks (A5) ---- */

static void compact_hooks(struct corral_agent *a)
{
    uint32_t w = 0, taken = 0;
    for (uint32_t i = 0; i < a->hooks_len; i++) {
        if (!a->hooks[i].live)
            continue;
        if (i < a->hooks_taken)
            taken++;
        a->hooks[w++] = a->hooks[i];
    }
    a->hooks_len = w;
    a->hooks_taken = taken;
}

static void queue_hook(struct corral_agent *a, struct rec *r, uint8_t kind, uint8_t reason,
                       uint64_t epoch, uint32_t from)
{
    assert(r->hook == 0);
    if (a->hooks_len == a->hooks_cap)
        compact_hooks(a);
    assert(a->hooks_len < a->hooks_cap);
    struct slot *s = &a->hooks[a->hooks_len++];
    s->h = (struct corral_agent_hook){
        .id = a->next_hook_id++,
        .kind = kind,
        .reason = reason,
        .resource = r->resource,
        .partition = r->partition,
        .epoch = epoch,
        .from = from,
    };
    s->live = true;
    r->hook = kind;
    r->hook_id = s->h.id;
    r->hook_gen = r->gen;
    r->hook_index = a->index;
    a->n_inflight++;
}

/* A handed-out hook still in flight, by id. */
static struct slot *find_hook(struct corral_agent *a, uint64_t id)
{
    uint32_t lo = 0, hi = a->hooks_taken;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a->hooks[mid].h.id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < a->hooks_taken && a->hooks[lo].h.id == id && a->hooks[lo].live)
        return &a->hooks[lo];
    return NULL;
}

/* ---- Reconciliation ---- */

/* A4: acting ends here, at once; the release follows in step(). */
static void stop(struct corral_agent *a, struct rec *r, uint8_t reason)
{
    if (!r->acting)
        return;
    r->acting = false;
    a->n_acting--;
    if (r->held_epoch > r->epoch_stopped)
        r->epoch_stopped = r->held_epoch;
    r->stop_reason = reason;
    /* The application must stop now: the release does not wait out a
     * backoff left by an earlier failure (A8). */
    r->failures = 0;
    r->retry_at = 0;
}

static void step_primary(struct corral_agent *a, struct rec *r)
{
    /* A7: asked to release, or a grant it may not take up (A3), with
     * nothing held: it is released already, and saying so lets the
     * leader clear it and grant a new epoch. */
    if (r->d_state == CORRAL_AGENT_RELEASING || r->d_epoch <= r->epoch_stopped) {
        /* Said again when a newer view still shows this epoch as ours and
         * nothing is pending: the leader that heard it may have lost
         * office, or its command was refused, before acting on it. */
        bool again =
            r->released_epoch == r->d_epoch && a->index > r->released_index && r->r.state == 0;
        if (!r->held && (r->released_epoch < r->d_epoch || again)) {
            r->released_epoch = r->d_epoch;
            r->released_index = a->index;
            report(a, r, CORRAL_AGENT_REPORT_RELEASED, r->d_epoch, 0, 0, a->index);
        }
        return;
    }
    if (!lease_valid(a) || a->index < a->lease_index) /* A3, A12 */
        return;
    if (r->acting && r->held_epoch == r->d_epoch && r->acquired)
        return;
    if (!r->acting) {
        r->acting = true;
        a->n_acting++;
    }
    if (!r->held) {
        r->held = true;
        a->n_held++;
    }
    r->held_epoch = r->d_epoch;
    r->acquired = false;
    queue_hook(a, r, CORRAL_AGENT_ACQUIRE, 0, r->d_epoch, CORRAL_AGENT_NONE);
}

/* Queues the partition's next hook, if it needs one and may have one now. */
static void step(struct corral_agent *a, struct rec *r)
{
    if (r->hook != 0 || r->retry_at > a->now)
        return;
    if (r->held && !r->acting) { /* A6: the release comes first */
        queue_hook(a, r, CORRAL_AGENT_RELEASE, r->stop_reason, r->held_epoch, CORRAL_AGENT_NONE);
        return;
    }
    if (a->shutting)
        return;
    if (r->d_role == 0) {
        if (r->need_drop)
            queue_hook(a, r, CORRAL_AGENT_DROP, 0, r->d_epoch, CORRAL_AGENT_NONE);
        return;
    }
    if (r->d_role == CORRAL_AGENT_PRIMARY) {
        step_primary(a, r);
        return;
    }
    if (r->d_state == CORRAL_AGENT_COPYING && !r->copied)
        queue_hook(a, r, CORRAL_AGENT_REPLICATE, 0, r->d_epoch, r->d_from);
    else if (r->d_state == CORRAL_AGENT_COPYING && r->r.state == 0 && a->index > r->in_sync_index) {
        /* Copied, but a newer view still says copying: the leader that
         * heard the report may have lost office, or its command was
         * refused, before acting on it. Say it again (A7). */
        r->in_sync_index = a->index;
        report(a, r, CORRAL_AGENT_REPORT_IN_SYNC, r->d_epoch, 0, 0, a->index);
    }
}

/* Steps every partition, forgets the finished ones and recomputes the
 * earliest retry. */
static void scan(struct corral_agent *a)
{
    uint64_t min = UINT64_MAX;
    uint32_t w = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        struct rec *r = &a->recs[i];
        step(a, r);
        if (removable(r)) {
            forget(a, r);
            continue;
        }
        if (r->retry_at > a->now && r->retry_at < min)
            min = r->retry_at;
        if (w != i)
            a->recs[w] = *r;
        w++;
    }
    a->n = w;
    a->retry_min = min;
}

/* Every call starts here (A2). */
static void advance(struct corral_agent *a, uint64_t now_ms)
{
    if (now_ms > a->now)
        a->now = now_ms;
    if (a->n_acting == 0 || lease_valid(a))
        return;
    for (uint32_t i = 0; i < a->n; i++)
        stop(a, &a->recs[i], CORRAL_AGENT_LEASE_LOST);
    assert(a->n_acting == 0);
    scan(a);
}

/* ---- Configuration and life cycle ---- */

void corral_agent_config_default(struct corral_agent_config *c)
{
    c->backoff_base_ms = 100;
    c->backoff_max_ms = 10000;
}

int corral_agent_config_check(const struct corral_agent_config *c)
{
    if (c->backoff_base_ms == 0 || c->backoff_base_ms > c->backoff_max_ms)
        return CORRAL_EINVAL;
    return 0;
}

int corral_agent_new(const struct corral_agent_config *cfg, struct corral_agent **out)
{
    if (corral_agent_config_check(cfg) != 0)
        return CORRAL_EINVAL;
    struct corral_agent *a = corral_calloc(1, sizeof(*a));
    if (a == NULL)
        return CORRAL_ENOMEM;
    a->hooks = corral_malloc(HOOKS_SLACK * sizeof(*a->hooks));
    if (a->hooks == NULL) {
        corral_free(a);
        return CORRAL_ENOMEM;
    }
    a->hooks_cap = HOOKS_SLACK;
    a->cfg = *cfg;
    a->next_hook_id = 1;
    a->retry_min = UINT64_MAX;
    *out = a;
    return 0;
}

void corral_agent_free(struct corral_agent *a)
{
    if (a == NULL)
        return;
    corral_free(a->recs);
    corral_free(a->hooks);
    corral_free(a);
}

/* ---- The desired set (A9) ---- */

static bool entry_valid(const struct corral_agent_entry *e)
{
    if (e->partition >= CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX)
        return false;
    if (e->role == CORRAL_AGENT_PRIMARY)
        return (e->state == CORRAL_AGENT_IN_SYNC || e->state == CORRAL_AGENT_RELEASING) &&
               e->epoch >= 1;
    if (e->role == CORRAL_AGENT_REPLICA)
        return e->state == CORRAL_AGENT_COPYING || e->state == CORRAL_AGENT_IN_SYNC;
    return false;
}

static int entry_cmp(const void *x, const void *y)
{
    const struct corral_agent_entry *a = x, *b = y;
    return key_cmp(a->resource, a->partition, b->resource, b->partition);
}

/* The partition is in the new set with entry e. */
static void apply(struct corral_agent *a, struct rec *r, const struct corral_agent_entry *e)
{
    if (e->epoch < r->epoch_seen) { /* A3: stale, the previous entry stays */
        a->stale_ignored++;
        return;
    }
    bool entering = r->d_role == 0;
    bool changed = entering || r->d_role != e->role || r->d_state != e->state ||
                   r->d_epoch != e->epoch || r->d_from != e->copy_from;
    if (entering) { /* A7: what was pending was about the previous copy */
        r->need_drop = false;
        report_clear(a, r);
    }
    if (e->state == CORRAL_AGENT_COPYING && (entering || r->d_state != CORRAL_AGENT_COPYING)) {
        r->copied = false;
        r->gen++;
    }
    r->d_role = e->role;
    r->d_state = e->state;
    r->d_epoch = e->epoch;
    r->d_from = e->copy_from;
    r->epoch_seen = e->epoch;
    if (e->role == CORRAL_AGENT_REPLICA || e->state == CORRAL_AGENT_RELEASING)
        stop(a, r, CORRAL_AGENT_HANDOFF);
    if (changed) {
        r->failures = 0;
        r->retry_at = 0;
    }
}

/* The partition is not in the new set. */
static void leave(struct corral_agent *a, struct rec *r)
{
    if (r->d_role == 0)
        return;
    r->d_role = 0;
    r->d_state = 0;
    r->need_drop = true;
    report_clear(a, r);
    stop(a, r, CORRAL_AGENT_DROPPED);
    r->failures = 0;
    r->retry_at = 0;
}

/* The records the merge of the sorted entries e[0..n) keeps. */
static uint64_t merged_count(const struct corral_agent *a, const struct corral_agent_entry *e,
                             uint32_t n)
{
    uint64_t count = n;
    uint32_t j = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        const struct rec *r = &a->recs[i];
        while (j < n && key_cmp(e[j].resource, e[j].partition, r->resource, r->partition) < 0)
            j++;
        bool in_set = j < n && e[j].resource == r->resource && e[j].partition == r->partition;
        if (!in_set && !removable(r))
            count++;
    }
    return count;
}

static void merge(struct corral_agent *a, const struct corral_agent_entry *e, uint32_t n,
                  struct rec *out)
{
    uint32_t i = 0, j = 0, w = 0, desired = 0;
    while (i < a->n || j < n) {
        int c = i == a->n ? 1
                : j == n  ? -1
                          : key_cmp(a->recs[i].resource, a->recs[i].partition, e[j].resource,
                                    e[j].partition);
        struct rec r;
        if (c < 0) {
            r = a->recs[i++];
            if (removable(&r)) {
                forget(a, &r);
                continue;
            }
            leave(a, &r);
        } else {
            if (c == 0) {
                r = a->recs[i++];
            } else {
                memset(&r, 0, sizeof(r));
                r.resource = e[j].resource;
                r.partition = e[j].partition;
                r.epoch_stopped = a->forgotten_epoch;
            }
            apply(a, &r, &e[j++]);
        }
        desired += r.d_role != 0;
        out[w++] = r;
    }
    a->n = w;
    a->n_desired = desired;
}

/* Sorted copy of the entries, checked (A9). */
static int sorted_entries(const struct corral_agent_entry *entries, uint32_t n,
                          struct corral_agent_entry **out)
{
    *out = NULL;
    for (uint32_t i = 0; i < n; i++)
        if (!entry_valid(&entries[i]))
            return CORRAL_EINVAL;
    if (n == 0)
        return 0;
    struct corral_agent_entry *s = corral_malloc((size_t)n * sizeof(*s));
    if (s == NULL)
        return CORRAL_ENOMEM;
    memcpy(s, entries, (size_t)n * sizeof(*s));
    qsort(s, n, sizeof(*s), entry_cmp);
    for (uint32_t i = 1; i < n; i++) {
        if (entry_cmp(&s[i - 1], &s[i]) == 0) {
            corral_free(s);
            return CORRAL_EINVAL;
        }
    }
    *out = s;
    return 0;
}

static int reserve_hooks(struct corral_agent *a, uint64_t records)
{
    uint64_t need = 2 * records + HOOKS_SLACK;
    if (a->hooks_cap >= need)
        return 0;
    struct slot *h = corral_realloc(a->hooks, (size_t)need * sizeof(*h));
    if (h == NULL)
        return CORRAL_ENOMEM;
    a->hooks = h;
    a->hooks_cap = (uint32_t)need;
    return 0;
}

int corral_agent_set_desired(struct corral_agent *a, uint64_t now_ms, uint64_t index,
                             const struct corral_agent_entry *entries, uint32_t n)
{
    advance(a, now_ms);
    if (n > CORRAL_AGENT_PARTITIONS_MAX)
        return CORRAL_EFULL;
    if ((n > 0 && entries == NULL) || index < a->index)
        return CORRAL_EINVAL;
    struct corral_agent_entry *sorted;
    int rc = sorted_entries(entries, n, &sorted);
    if (rc != 0)
        return rc;
    uint64_t count = merged_count(a, sorted, n);
    struct rec *recs = NULL;
    if (count > CORRAL_AGENT_RECORDS_MAX) {
        rc = CORRAL_EFULL;
        goto out;
    }
    recs = corral_malloc((size_t)(count > 0 ? count : 1) * sizeof(*recs));
    if (recs == NULL || reserve_hooks(a, count) != 0) {
        rc = CORRAL_ENOMEM;
        goto out;
    }
    merge(a, sorted, n, recs);
    assert(a->n == count);
    corral_free(a->recs);
    a->recs = recs;
    recs = NULL;
    a->index = index;
    scan(a);
out:
    corral_free(recs);
    corral_free(sorted);
    return rc;
}

/* ---- Heartbeats (A1, A7) ---- */

uint64_t corral_agent_heartbeat_sent(struct corral_agent *a, uint64_t now_ms,
                                     struct corral_agent_report *out, uint32_t cap, uint32_t *n_out)
{
    advance(a, now_ms);
    uint64_t seq = ++a->seq;
    a->sent[seq % CORRAL_AGENT_HEARTBEATS_MAX] = (struct sent){seq, now_ms};
    uint32_t k = 0;
    /* Reports carried before go first, so that a run once started goes on. */
    for (int pass = 0; pass < 2 && out != NULL; pass++) {
        for (uint32_t i = 0; i < a->n && k < cap; i++) {
            struct rec *r = &a->recs[i];
            if (r->r.state == 0 || (r->carried_last != 0) != (pass == 0))
                continue;
            if (r->carried_last == 0 || r->carried_last + 1 != seq)
                r->carried_since = seq;
            r->carried_last = seq;
            out[k++] = r->r;
        }
    }
    if (n_out != NULL)
        *n_out = k;
    return seq;
}

int corral_agent_heartbeat_answered(struct corral_agent *a, uint64_t seq, uint32_t lease_ms,
                                    uint64_t lease_index, uint64_t now_ms)
{
    advance(a, now_ms);
    const struct sent *s = &a->sent[seq % CORRAL_AGENT_HEARTBEATS_MAX];
    if (seq == 0 || s->seq != seq)
        return CORRAL_ENOTFOUND;
#ifdef CORRAL_AGENT_BROKEN_LEASE_FROM_ANSWER
    /* BROKEN ON PURPOSE, for the simulator's self-test only: the lease
     * counted from the answer's arrival, the classic bug A1 forbids. */
    uint64_t from = now_ms;
#else
    uint64_t from = s->sent_ms;
#endif
    uint64_t end = add_sat(from, lease_ms);
    if (lease_ms > 0 && lease_index > a->lease_index)
        a->lease_index = lease_index; /* A12 */
    if (lease_ms > 0 && end > a->lease_end) {
        bool was_valid = lease_valid(a);
        a->lease_end = end;
        if (!was_valid && lease_valid(a))
            scan(a); /* acquires waiting for a lease may go */
    }
    for (uint32_t i = 0; i < a->n && a->n_reports > 0; i++) {
        struct rec *r = &a->recs[i];
        if (r->r.state != 0 && r->carried_since != 0 && r->carried_since <= seq &&
            seq <= r->carried_last)
            report_clear(a, r);
    }
    return 0;
}

/* ---- Time ---- */

void corral_agent_tick(struct corral_agent *a, uint64_t now_ms)
{
    advance(a, now_ms);
    if (a->now >= a->retry_min)
        scan(a);
}

uint64_t corral_agent_next_wakeup(const struct corral_agent *a)
{
    uint64_t w = a->retry_min;
    if (a->n_acting > 0 && a->lease_end < w)
        w = a->lease_end;
    return w;
}

/* ---- Hooks out and back ---- */

bool corral_agent_next_hook(struct corral_agent *a, struct corral_agent_hook *out)
{
    if (a->hooks_taken == a->hooks_len)
        return false;
    *out = a->hooks[a->hooks_taken++].h;
    return true;
}

/* A8: min(base * 2^(k-1), max); d stays below 2^33 before it is capped. */
static uint64_t backoff_ms(const struct corral_agent_config *c, uint32_t failures)
{
    uint64_t d = c->backoff_base_ms;
    for (uint32_t k = 1; k < failures && d < c->backoff_max_ms; k++)
        d *= 2;
    return d < c->backoff_max_ms ? d : c->backoff_max_ms;
}

static void hook_ok(struct corral_agent *a, struct rec *r, const struct corral_agent_hook *h)
{
    r->failures = 0;
    r->retry_at = 0;
    if (r->r.state == CORRAL_AGENT_REPORT_FAILED)
        report_clear(a, r);
    switch (h->kind) {
    case CORRAL_AGENT_ACQUIRE:
        if (r->held && r->held_epoch == h->epoch)
            r->acquired = true;
        break;
    case CORRAL_AGENT_RELEASE:
        assert(r->held && r->held_epoch == h->epoch && !r->acting);
        r->held = false;
        r->acquired = false;
        a->n_held--;
        if (h->epoch > r->released_epoch) {
            r->released_epoch = h->epoch;
            r->released_index = a->index;
        }
        report(a, r, CORRAL_AGENT_REPORT_RELEASED, h->epoch, 0, 0, r->hook_index);
        break;
    case CORRAL_AGENT_REPLICATE:
        if (r->d_role != CORRAL_AGENT_REPLICA || r->gen != r->hook_gen)
            break; /* about a copy no longer wanted */
        r->copied = true;
        r->in_sync_index = a->index;
        if (r->d_state == CORRAL_AGENT_COPYING)
            report(a, r, CORRAL_AGENT_REPORT_IN_SYNC, r->d_epoch, 0, 0, r->hook_index);
        break;
    case CORRAL_AGENT_DROP:
        if (r->d_role == 0)
            r->need_drop = false;
        break;
    default:
        assert(0);
    }
}

static void hook_failed(struct corral_agent *a, struct rec *r, const struct corral_agent_hook *h,
                        int err)
{
    if (r->failures < UINT32_MAX)
        r->failures++;
    /* Rounded up to a multiple of the base, so that retries falling due
     * close together run in one pass over the partitions. */
    uint64_t base = a->cfg.backoff_base_ms;
    uint64_t at = add_sat(a->now, backoff_ms(&a->cfg, r->failures));
    r->retry_at = add_sat(at, (base - at % base) % base);
    if (r->retry_at < a->retry_min)
        a->retry_min = r->retry_at;
    report(a, r, CORRAL_AGENT_REPORT_FAILED, h->epoch, h->kind, err, r->hook_index);
}

int corral_agent_hook_done(struct corral_agent *a, uint64_t hook_id, int err, uint64_t now_ms)
{
    advance(a, now_ms);
    struct slot *s = find_hook(a, hook_id);
    if (s == NULL)
        return CORRAL_ENOTFOUND;
    struct corral_agent_hook h = s->h; /* s moves if step() compacts the table */
    s->live = false;
    a->n_inflight--;
    struct rec *r = find_rec(a, h.resource, h.partition);
    assert(r != NULL && r->hook == h.kind && r->hook_id == h.id);
    r->hook = 0;
    if (err == 0)
        hook_ok(a, r, &h);
    else
        hook_failed(a, r, &h, err);
    step(a, r);
    return 0;
}

/* ---- Shutdown (A11) ---- */

void corral_agent_shutdown(struct corral_agent *a, uint64_t now_ms)
{
    advance(a, now_ms);
    a->shutting = true;
    for (uint32_t i = 0; i < a->n; i++)
        stop(a, &a->recs[i], CORRAL_AGENT_SHUTDOWN);
    scan(a);
}

bool corral_agent_shutdown_done(const struct corral_agent *a)
{
    return a->shutting && a->n_held == 0 && a->n_inflight == 0;
}

/* ---- Queries ---- */

bool corral_agent_acting(const struct corral_agent *a, uint32_t resource, uint32_t partition,
                         uint64_t *epoch)
{
    const struct rec *r = find_rec(a, resource, partition);
    if (r == NULL || !r->acting)
        return false;
    if (epoch != NULL)
        *epoch = r->held_epoch;
    return true;
}

bool corral_agent_primary_next(const struct corral_agent *a, uint32_t *cursor,
                               struct corral_agent_primary *out)
{
    for (uint32_t i = *cursor; i < a->n; i++) {
        const struct rec *r = &a->recs[i];
        if (!r->acting)
            continue;
        *out = (struct corral_agent_primary){r->resource, r->partition, r->held_epoch};
        *cursor = i + 1;
        return true;
    }
    *cursor = a->n;
    return false;
}

uint64_t corral_agent_lease_end(const struct corral_agent *a)
{
    return a->lease_end;
}

uint64_t corral_agent_index(const struct corral_agent *a)
{
    return a->index;
}

void corral_agent_stats(const struct corral_agent *a, struct corral_agent_stats *out)
{
    *out = (struct corral_agent_stats){
        .partitions = a->n,
        .desired = a->n_desired,
        .acting = a->n_acting,
        .held = a->n_held,
        .hooks_in_flight = a->n_inflight,
        .hooks_queued = a->hooks_len - a->hooks_taken,
        .reports_pending = a->n_reports,
        .stale_ignored = a->stale_ignored,
    };
}
