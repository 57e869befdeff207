/* Leader-side liveness: a sorted array of the members this leader has
 * answered, and the L1/L2 arithmetic in integer permille (rules in
 * liveness.h). Every sum saturates at UINT64_MAX, so a clock near the top
 * of its range makes a lease last longer, never end early. */
#include "core/liveness.h"

#include <string.h>

#include "corral.h"
#include "util/mem.h"

#define PERMILLE 1000u
#define INITIAL_CAP 16u

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ms * (1 + drift), rounded up: a lease stretched by the worst clock rate
 * difference. ms < 2^33 and the factor < 2^11, so no overflow. */
static uint64_t stretch(uint64_t ms, uint32_t drift_permille)
{
    uint64_t scaled = ms * (PERMILLE + drift_permille);
    return (scaled + PERMILLE - 1) / PERMILLE;
}

/* L2: the instant at which this leader's wait is over. */
static uint64_t settle_at(const struct corral_liveness *lv)
{
    const struct corral_liveness_config *c = &lv->cfg;
    uint64_t wait =
        stretch((uint64_t)c->max_election_timeout_ms + c->lease_ms, c->max_drift_permille);
    return add_sat(add_sat(lv->took_office_ms, wait), c->margin_ms);
}

void corral_liveness_config_default(struct corral_liveness_config *c)
{
    c->heartbeat_ms = 250;
    c->lease_ms = 1000;
    c->max_drift_permille = 100;
    c->margin_ms = 50;
    c->max_election_timeout_ms = 600;
    c->suspect_after_ms = 500;
}

int corral_liveness_config_check(const struct corral_liveness_config *c)
{
    if (c->heartbeat_ms == 0 || c->lease_ms == 0 || c->max_drift_permille == 0 ||
        c->margin_ms == 0 || c->max_election_timeout_ms == 0 || c->suspect_after_ms == 0)
        return CORRAL_EINVAL;
    if ((uint64_t)c->lease_ms <= 2 * (uint64_t)c->heartbeat_ms)
        return CORRAL_EINVAL;
    if (c->max_drift_permille >= PERMILLE)
        return CORRAL_EINVAL;
    return 0;
}

int corral_liveness_init(struct corral_liveness *lv, const struct corral_liveness_config *cfg,
                         uint64_t took_office_ms)
{
    memset(lv, 0, sizeof(*lv));
    if (corral_liveness_config_check(cfg) != 0)
        return CORRAL_EINVAL;
    lv->members = corral_malloc(INITIAL_CAP * sizeof(*lv->members));
    if (lv->members == NULL)
        return CORRAL_ENOMEM;
    lv->cfg = *cfg;
    lv->took_office_ms = took_office_ms;
    lv->cap = INITIAL_CAP;
    return 0;
}

void corral_liveness_close(struct corral_liveness *lv)
{
    corral_free(lv->members);
    memset(lv, 0, sizeof(*lv));
}

/* The position of id, or where it would be inserted (*found false). */
static uint32_t find(const struct corral_liveness *lv, uint32_t id, bool *found)
{
    uint32_t lo = 0, hi = lv->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (lv->members[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < lv->n && lv->members[lo].id == id;
    return lo;
}

static const struct corral_liveness_member *lookup(const struct corral_liveness *lv, uint32_t id)
{
    bool found;
    uint32_t i = find(lv, id, &found);
    return found && lv->members[i].heard ? &lv->members[i] : NULL;
}

static bool grow(struct corral_liveness *lv)
{
    if (lv->n < lv->cap)
        return true;
    if (lv->cap >= CORRAL_LIVENESS_MEMBERS_MAX)
        return false;
    uint32_t cap = lv->cap * 2;
    if (cap > CORRAL_LIVENESS_MEMBERS_MAX)
        cap = CORRAL_LIVENESS_MEMBERS_MAX;
    struct corral_liveness_member *m = corral_realloc(lv->members, cap * sizeof(*m));
    if (m == NULL)
        return false;
    lv->members = m;
    lv->cap = cap;
    return true;
}

uint32_t corral_liveness_heartbeat(struct corral_liveness *lv, uint32_t id, uint64_t now_ms)
{
    if (id == 0)
        return 0;
    bool found;
    uint32_t i = find(lv, id, &found);
    if (!found) {
        if (!grow(lv))
            return 0;
        memmove(&lv->members[i + 1], &lv->members[i], (lv->n - i) * sizeof(*lv->members));
        lv->members[i] = (struct corral_liveness_member){.id = id};
        lv->n++;
    }
    struct corral_liveness_member *m = &lv->members[i];
    /* A clock that steps back must not move a granted lease earlier (L1). */
    if (!m->heard || now_ms > m->last_answered_ms)
        m->last_answered_ms = now_ms;
    m->heard = true;
    return lv->cfg.lease_ms;
}

void corral_liveness_forget(struct corral_liveness *lv, uint32_t id)
{
    bool found;
    uint32_t i = find(lv, id, &found);
    if (!found)
        return;
    memmove(&lv->members[i], &lv->members[i + 1], (lv->n - i - 1) * sizeof(*lv->members));
    lv->n--;
}

uint64_t corral_liveness_lease_end(const struct corral_liveness *lv, uint32_t id)
{
    uint64_t end = settle_at(lv);
    const struct corral_liveness_member *m = lookup(lv, id);
    if (m != NULL) {
        uint64_t own = stretch(lv->cfg.lease_ms, lv->cfg.max_drift_permille);
        own = add_sat(add_sat(m->last_answered_ms, own), lv->cfg.margin_ms);
        if (own > end)
            end = own;
    }
    return end;
}

bool corral_liveness_lease_over(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms)
{
    return now_ms >= corral_liveness_lease_end(lv, id);
}

bool corral_liveness_suspect(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms)
{
    const struct corral_liveness_member *m = lookup(lv, id);
    uint64_t since = m != NULL ? m->last_answered_ms : lv->took_office_ms;
    return now_ms >= add_sat(since, lv->cfg.suspect_after_ms);
}

bool corral_liveness_dead(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms)
{
    return corral_liveness_lease_over(lv, id, now_ms);
}

bool corral_liveness_settled(const struct corral_liveness *lv, uint64_t now_ms)
{
    return now_ms >= settle_at(lv);
}

uint64_t corral_liveness_age_ms(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms)
{
    const struct corral_liveness_member *m = lookup(lv, id);
    if (m == NULL)
        return UINT64_MAX;
    return now_ms > m->last_answered_ms ? now_ms - m->last_answered_ms : 0;
}
