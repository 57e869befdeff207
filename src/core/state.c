/* The cluster state machine: members, resources and their partition maps,
 * the epoch counter and the config store, changed only by applying
 * commands (rules in state.h). Every command is checked whole before
 * anything changes; the allocations a command needs come before its first
 * change, so CORRAL_ENOMEM leaves the state as it was. */
#include <assert.h>
#include <string.h>

#include "core/state_impl.h"
#include "corral.h"
#include "util/mem.h"

/* ---- Lifecycle ---- */

struct corral_state *corral_state_new(void)
{
    struct corral_state *st = corral_calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->kv = corral_kv_new();
    if (st->kv == NULL) {
        corral_free(st);
        return NULL;
    }
    st->next_member_id = 1;
    st->next_resource_id = 1;
    st->next_coord_id = 1;
    return st;
}

void state_resource_free(struct corral_state_resource *res)
{
    if (res == NULL)
        return;
    corral_free(res->parts);
    corral_free(res);
}

void state_free_contents(struct corral_state *st)
{
    for (uint32_t i = 0; i < st->n_members; i++)
        corral_free(st->members[i]);
    for (uint32_t i = 0; i < st->n_resources; i++)
        state_resource_free(st->resources[i]);
    corral_kv_free(st->kv);
    st->n_members = 0;
    st->n_resources = 0;
    st->kv = NULL;
}

void corral_state_free(struct corral_state *st)
{
    if (st == NULL)
        return;
    state_free_contents(st);
    corral_free(st);
}

/* ---- Lookups ---- */

int state_name_cmp(const char *stored, const char *name, uint32_t len)
{
    int c = len > 0 ? strncmp(stored, name, len) : 0;
    if (c != 0)
        return c;
    return stored[len] != '\0'; /* stored is longer: it sorts after */
}

/* Binary searches: the first position whose key is >= the one sought. */

uint32_t state_member_pos(const struct corral_state *st, uint32_t id)
{
    uint32_t lo = 0, hi = st->n_members;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->members[mid]->m.id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct state_member *state_member_get(const struct corral_state *st, uint32_t id)
{
    uint32_t pos = state_member_pos(st, id);
    return pos < st->n_members && st->members[pos]->m.id == id ? st->members[pos] : NULL;
}

static uint32_t resource_pos(const struct corral_state *st, uint32_t id)
{
    uint32_t lo = 0, hi = st->n_resources;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->resources[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct corral_state_resource *state_resource_get(const struct corral_state *st, uint32_t id)
{
    uint32_t pos = resource_pos(st, id);
    return pos < st->n_resources && st->resources[pos]->id == id ? st->resources[pos] : NULL;
}

uint32_t state_member_name_pos(const struct corral_state *st, const char *name, uint32_t len,
                               bool *found)
{
    uint32_t lo = 0, hi = st->n_members;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (state_name_cmp(st->members_by_name[mid]->m.name, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < st->n_members && state_name_cmp(st->members_by_name[lo]->m.name, name, len) == 0;
    return lo;
}

uint32_t state_resource_name_pos(const struct corral_state *st, const char *name, uint32_t len,
                                 bool *found)
{
    uint32_t lo = 0, hi = st->n_resources;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (state_name_cmp(st->resources_by_name[mid]->name, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found =
        lo < st->n_resources && state_name_cmp(st->resources_by_name[lo]->name, name, len) == 0;
    return lo;
}

/* Opens a slot at pos in an array of n elements of size bytes (room for
 * n + 1 is the caller's), or closes the one there. */
static void slot_open(void *arr, uint32_t n, uint32_t pos, size_t size)
{
    assert(pos <= n);
    char *a = arr;
    memmove(a + (pos + 1) * size, a + pos * size, (n - pos) * size);
}

static void slot_close(void *arr, uint32_t n, uint32_t pos, size_t size)
{
    assert(pos < n);
    char *a = arr;
    memmove(a + pos * size, a + (pos + 1) * size, (n - pos - 1) * size);
}

void state_member_insert(struct corral_state *st, struct state_member *m)
{
    assert(st->n_members < CORRAL_STATE_MEMBERS_MAX);
    assert(st->n_members == 0 || st->members[st->n_members - 1]->m.id < m->m.id);
    bool found;
    uint32_t pos = state_member_name_pos(st, m->m.name, (uint32_t)strlen(m->m.name), &found);
    st->members[st->n_members] = m;
    slot_open(st->members_by_name, st->n_members, pos, sizeof(st->members_by_name[0]));
    st->members_by_name[pos] = m;
    st->n_members++;
}

void state_resource_insert(struct corral_state *st, struct corral_state_resource *res)
{
    assert(st->n_resources < CORRAL_STATE_RESOURCES_MAX);
    assert(st->n_resources == 0 || st->resources[st->n_resources - 1]->id < res->id);
    bool found;
    uint32_t pos = state_resource_name_pos(st, res->name, (uint32_t)strlen(res->name), &found);
    st->resources[st->n_resources] = res;
    slot_open(st->resources_by_name, st->n_resources, pos, sizeof(st->resources_by_name[0]));
    st->resources_by_name[pos] = res;
    st->n_resources++;
}

int state_replica_find(const struct corral_state_partition *p, uint32_t member)
{
    for (int i = 0; i < p->n_replicas; i++)
        if (p->replicas[i].member == member)
            return i;
    return -1;
}

/* ---- Accessors ---- */

uint64_t corral_state_applied(const struct corral_state *st)
{
    return st->applied;
}

const struct corral_kv *corral_state_kv(const struct corral_state *st)
{
    return st->kv;
}

uint32_t corral_state_member_replicas(const struct corral_state *st, uint32_t id)
{
    const struct state_member *m = state_member_get(st, id);
    return m != NULL ? m->n_replicas : 0;
}

uint64_t corral_state_assign_index(const struct corral_state *st)
{
    return st->assign_index;
}

uint64_t corral_state_last_epoch(const struct corral_state *st)
{
    return st->last_epoch;
}

uint32_t corral_state_member_count(const struct corral_state *st)
{
    return st->n_members;
}

const struct corral_state_member *corral_state_member_at(const struct corral_state *st, uint32_t i)
{
    return i < st->n_members ? &st->members[i]->m : NULL;
}

const struct corral_state_member *corral_state_member_by_id(const struct corral_state *st,
                                                            uint32_t id)
{
    const struct state_member *m = state_member_get(st, id);
    return m != NULL ? &m->m : NULL;
}

const struct corral_state_member *corral_state_member_by_name(const struct corral_state *st,
                                                              const char *name, uint32_t len)
{
    if (!corral_state_name_valid(name, len))
        return NULL;
    bool found;
    uint32_t pos = state_member_name_pos(st, name, len, &found);
    return found ? &st->members_by_name[pos]->m : NULL;
}

uint32_t corral_state_resource_count(const struct corral_state *st)
{
    return st->n_resources;
}

const struct corral_state_resource *corral_state_resource_at(const struct corral_state *st,
                                                             uint32_t i)
{
    return i < st->n_resources ? st->resources[i] : NULL;
}

const struct corral_state_resource *corral_state_resource_by_id(const struct corral_state *st,
                                                                uint32_t id)
{
    return state_resource_get(st, id);
}

const struct corral_state_resource *corral_state_resource_by_name(const struct corral_state *st,
                                                                  const char *name, uint32_t len)
{
    if (!corral_state_name_valid(name, len))
        return NULL;
    bool found;
    uint32_t pos = state_resource_name_pos(st, name, len, &found);
    return found ? st->resources_by_name[pos] : NULL;
}

uint64_t corral_state_partitions_total(const struct corral_state *st)
{
    return st->partitions_total;
}

/* ---- Apply: members ---- */

/* Fills in a refusal; returns 0 (a refusal is not an error). */
int state_refuse(struct corral_state_result *r, uint8_t status, const char *detail)
{
    r->status = status;
    r->detail = detail;
    return 0;
}

void state_copy_str(char *dst, const char *src, uint32_t len)
{
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

/* True when the stored string s is exactly the len bytes at p. */
bool state_str_eq(const char *s, const char *p, uint32_t len)
{
    return strlen(s) == len && (len == 0 || memcmp(s, p, len) == 0);
}

static bool member_same(const struct corral_state_member *m, const struct corral_state_cmd *c)
{
    return m->role == c->role && m->weight == c->weight &&
           state_str_eq(m->addr, c->addr, c->addr_len) &&
           state_str_eq(m->zone, c->zone, c->zone_len) && m->meta_len == c->meta_len &&
           (c->meta_len == 0 || memcmp(m->meta, c->meta, c->meta_len) == 0);
}

/* The fields a MEMBER_PUT sets (all but the name, id, status, indexes). */
static void member_fill(struct corral_state_member *m, const struct corral_state_cmd *c)
{
    m->role = c->role;
    m->weight = c->weight;
    state_copy_str(m->addr, c->addr, c->addr_len);
    state_copy_str(m->zone, c->zone, c->zone_len);
    m->meta_len = c->meta_len;
    if (c->meta_len > 0)
        memcpy(m->meta, c->meta, c->meta_len);
}

static void member_update(struct corral_state *st, uint64_t index, struct state_member *sm,
                          const struct corral_state_cmd *c)
{
    struct corral_state_member *m = &sm->m;
    bool rejoin = m->status == CORRAL_MEMBER_DEAD || m->status == CORRAL_MEMBER_LEFT;
    if (!rejoin && member_same(m, c))
        return; /* nothing changes, so no index moves either */
    member_fill(m, c);
    if (rejoin)
        m->status = CORRAL_MEMBER_ACTIVE;
    m->changed_index = index;
    st->assign_index = index;
}

static int apply_member_put(struct corral_state *st, uint64_t index,
                            const struct corral_state_cmd *c, struct corral_state_result *r)
{
    bool found;
    uint32_t pos = state_member_name_pos(st, c->name, c->name_len, &found);
    if (found) {
        struct state_member *m = st->members_by_name[pos];
        member_update(st, index, m, c);
        r->id = m->m.id;
        return 0;
    }
    if (st->n_members >= CORRAL_STATE_MEMBERS_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "CORRAL_STATE_MEMBERS_MAX members exist");
    if (st->next_member_id == UINT32_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "member ids are exhausted");
    struct state_member *m = corral_calloc(1, sizeof(*m));
    if (m == NULL)
        return CORRAL_ENOMEM;
    m->m.id = st->next_member_id++;
    m->m.status = CORRAL_MEMBER_ACTIVE;
    m->m.joined_index = index;
    m->m.changed_index = index;
    m->m.view_index = index;
    state_copy_str(m->m.name, c->name, c->name_len);
    member_fill(&m->m, c);
    state_member_insert(st, m);
    st->assign_index = index;
    r->id = m->m.id;
    return 0;
}

static int apply_member_status(struct corral_state *st, uint64_t index,
                               const struct corral_state_cmd *c, struct corral_state_result *r)
{
    struct state_member *m = state_member_get(st, c->id);
    if (m == NULL)
        return state_refuse(r, CORRAL_STATE_NOT_FOUND, "no such member");
    if (m->m.status == c->status)
        return 0;
    if (c->status == CORRAL_MEMBER_LEFT && m->n_replicas > 0)
        return state_refuse(r, CORRAL_STATE_CONFLICT, "the member still holds replicas");
    m->m.status = c->status;
    m->m.changed_index = index;
    st->assign_index = index;
    return 0;
}

static int apply_member_delete(struct corral_state *st, uint64_t index,
                               const struct corral_state_cmd *c, struct corral_state_result *r)
{
    struct state_member *m = state_member_get(st, c->id);
    if (m == NULL)
        return state_refuse(r, CORRAL_STATE_NOT_FOUND, "no such member");
    if (m->n_replicas > 0)
        return state_refuse(r, CORRAL_STATE_CONFLICT, "the member still holds replicas");
    bool found;
    uint32_t by_name = state_member_name_pos(st, m->m.name, (uint32_t)strlen(m->m.name), &found);
    assert(found && st->members_by_name[by_name] == m);
    slot_close(st->members, st->n_members, state_member_pos(st, c->id), sizeof(st->members[0]));
    slot_close(st->members_by_name, st->n_members, by_name, sizeof(st->members_by_name[0]));
    st->n_members--;
    corral_free(m);
    st->assign_index = index;
    return 0;
}

/* ---- Apply: resources ---- */

static int resource_create(struct corral_state *st, uint64_t index,
                           const struct corral_state_cmd *c, struct corral_state_result *r)
{
    if (st->n_resources >= CORRAL_STATE_RESOURCES_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "CORRAL_STATE_RESOURCES_MAX resources exist");
    if (st->partitions_total + c->partitions > CORRAL_STATE_PARTITIONS_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "CORRAL_STATE_PARTITIONS_MAX partitions exist");
    if (st->next_resource_id == UINT32_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "resource ids are exhausted");
    struct corral_state_resource *res = corral_calloc(1, sizeof(*res));
    if (res == NULL)
        return CORRAL_ENOMEM;
    res->parts = corral_calloc(c->partitions, sizeof(*res->parts));
    if (res->parts == NULL) {
        corral_free(res);
        return CORRAL_ENOMEM;
    }
    res->id = st->next_resource_id++;
    res->partitions = c->partitions;
    res->replicas = c->replicas;
    res->created_index = index;
    res->changed_index = index;
    state_copy_str(res->name, c->name, c->name_len);
    state_resource_insert(st, res);
    st->partitions_total += c->partitions;
    st->assign_index = index;
    r->id = res->id;
    return 0;
}

static int apply_resource_put(struct corral_state *st, uint64_t index,
                              const struct corral_state_cmd *c, struct corral_state_result *r)
{
    bool found;
    uint32_t pos = state_resource_name_pos(st, c->name, c->name_len, &found);
    if (!found)
        return resource_create(st, index, c, r);
    struct corral_state_resource *res = st->resources_by_name[pos];
    r->id = res->id;
    if (c->partitions != res->partitions)
        return state_refuse(r, CORRAL_STATE_CONFLICT, "the partition count of a resource is fixed");
    if (c->replicas == res->replicas)
        return 0;
    /* Lowering R below a partition's replica count is allowed: the
     * controller drops the surplus, and adds stop at the new R. */
    res->replicas = c->replicas;
    res->changed_index = index;
    st->assign_index = index;
    return 0;
}

static int apply_resource_delete(struct corral_state *st, uint64_t index,
                                 const struct corral_state_cmd *c, struct corral_state_result *r)
{
    uint32_t pos = resource_pos(st, c->id);
    if (pos == st->n_resources || st->resources[pos]->id != c->id)
        return state_refuse(r, CORRAL_STATE_NOT_FOUND, "no such resource");
    struct corral_state_resource *res = st->resources[pos];
    for (uint32_t p = 0; p < res->partitions; p++) {
        const struct corral_state_partition *part = &res->parts[p];
        for (uint8_t i = 0; i < part->n_replicas; i++) {
            struct state_member *m = state_member_get(st, part->replicas[i].member);
            assert(m != NULL && m->n_replicas > 0);
            m->n_replicas--;
            m->m.view_index = index;
        }
    }
    bool found;
    uint32_t by_name = state_resource_name_pos(st, res->name, (uint32_t)strlen(res->name), &found);
    assert(found && st->resources_by_name[by_name] == res);
    slot_close(st->resources, st->n_resources, pos, sizeof(st->resources[0]));
    slot_close(st->resources_by_name, st->n_resources, by_name, sizeof(st->resources_by_name[0]));
    st->n_resources--;
    assert(st->partitions_total >= res->partitions);
    st->partitions_total -= res->partitions;
    state_resource_free(res);
    st->assign_index = index;
    return 0;
}

/* ---- Apply: partition operations ---- */

/* One op's rules, on a partition that is either a scratch copy (the
 * validation pass) or the real one (the commit pass, which must agree). */
struct op_ctx {
    const struct corral_state *st;
    const struct corral_state_resource *res;
    uint64_t last_epoch; /* the counter as the ops so far left it */
    const char *detail;  /* the refusal, when an op returns non-OK */
};

static uint8_t op_fail(struct op_ctx *x, uint8_t status, const char *detail)
{
    x->detail = detail;
    return status;
}

static uint8_t op_add(struct op_ctx *x, struct corral_state_partition *p,
                      const struct corral_state_member *m, uint8_t op)
{
    if (state_replica_find(p, m->id) >= 0)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member already has a replica");
    if (m->status != CORRAL_MEMBER_ACTIVE)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member is not active");
    /* S2: one copy beyond R while a move runs; in sync only up to R. */
    uint32_t cap = x->res->replicas + (op == CORRAL_OP_ADD_COPYING ? 1u : 0u);
    if (p->n_replicas >= cap)
        return op_fail(x, CORRAL_STATE_CONFLICT,
                       op == CORRAL_OP_ADD_COPYING ? "the partition has R + 1 replicas"
                                                   : "the partition has its R replicas");
    if (op == CORRAL_OP_ADD_IN_SYNC && p->epoch != 0)
        return op_fail(x, CORRAL_STATE_CONFLICT, "in sync at once only before the first grant");
    assert(p->n_replicas < CORRAL_STATE_ROW_MAX);
    p->replicas[p->n_replicas].member = m->id;
    p->replicas[p->n_replicas].state =
        op == CORRAL_OP_ADD_IN_SYNC ? CORRAL_REPLICA_IN_SYNC : CORRAL_REPLICA_COPYING;
    p->n_replicas++;
    return CORRAL_STATE_OK;
}

static uint8_t op_mark(struct op_ctx *x, struct corral_state_partition *p,
                       const struct corral_state_member *m, int at)
{
    if (at < 0)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member has no replica");
    if (p->replicas[at].state != CORRAL_REPLICA_COPYING)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the replica is not copying");
    if (m->status == CORRAL_MEMBER_DEAD)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member is dead");
    p->replicas[at].state = CORRAL_REPLICA_IN_SYNC;
    return CORRAL_STATE_OK;
}

static uint8_t op_drop(struct op_ctx *x, struct corral_state_partition *p, int at)
{
    if (at < 0)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member has no replica");
    if (p->primary == p->replicas[at].member)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the primary's replica cannot be dropped");
    memmove(&p->replicas[at], &p->replicas[at + 1],
            (size_t)(p->n_replicas - at - 1) * sizeof(p->replicas[0]));
    p->n_replicas--;
    memset(&p->replicas[p->n_replicas], 0, sizeof(p->replicas[0]));
    return CORRAL_STATE_OK;
}

static uint8_t op_grant(struct op_ctx *x, struct corral_state_partition *p,
                        const struct corral_state_member *m, int at, uint8_t status)
{
    if (p->primary != CORRAL_STATE_NONE)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the partition has a primary");
    if (at < 0 || p->replicas[at].state != CORRAL_REPLICA_IN_SYNC)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member has no in-sync replica");
    if (m->status != status)
        return op_fail(x, CORRAL_STATE_CONFLICT,
                       status == CORRAL_MEMBER_ACTIVE ? "the member is not active"
                                                      : "the member is not draining");
    if (x->last_epoch == UINT64_MAX)
        return op_fail(x, CORRAL_STATE_FULL, "epochs are exhausted");
    assert(!p->releasing && p->epoch <= x->last_epoch);
    p->primary = m->id;
    p->epoch = ++x->last_epoch;
    return CORRAL_STATE_OK;
}

/* RELEASE (release true) and CLEAR (false). */
static uint8_t op_primary(struct op_ctx *x, struct corral_state_partition *p,
                          const struct corral_state_member *m, bool release)
{
    if (p->primary == CORRAL_STATE_NONE || p->primary != m->id)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the member is not the primary");
    if (release && p->releasing)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the primary is already releasing");
    if (release) {
        p->releasing = true;
    } else {
        p->primary = CORRAL_STATE_NONE;
        p->releasing = false;
    }
    return CORRAL_STATE_OK;
}

static uint8_t op_step(struct op_ctx *x, struct corral_state_partition *p,
                       const struct corral_partition_opv *op)
{
    const struct state_member *sm = state_member_get(x->st, op->member);
    if (sm == NULL)
        return op_fail(x, CORRAL_STATE_NOT_FOUND, "no such member");
    if (op->epoch != p->epoch)
        return op_fail(x, CORRAL_STATE_CONFLICT, "the epoch is not the partition's");
    const struct corral_state_member *m = &sm->m;
    int at = state_replica_find(p, m->id);
    switch (op->op) {
    case CORRAL_OP_ADD_COPYING:
    case CORRAL_OP_ADD_IN_SYNC:
        return op_add(x, p, m, op->op);
    case CORRAL_OP_MARK_IN_SYNC:
        return op_mark(x, p, m, at);
    case CORRAL_OP_DROP:
        return op_drop(x, p, at);
    case CORRAL_OP_GRANT:
        return op_grant(x, p, m, at, CORRAL_MEMBER_ACTIVE);
    case CORRAL_OP_GRANT_DRAINING:
        return op_grant(x, p, m, at, CORRAL_MEMBER_DRAINING);
    case CORRAL_OP_RELEASE:
        return op_primary(x, p, m, true);
    default:
        assert(op->op == CORRAL_OP_CLEAR); /* the decoder knows no other */
        return op_primary(x, p, m, false);
    }
}

/* Runs every op against scratch copies, one partition at a time (the
 * decoder made each partition's ops contiguous). OK, or the refusal with
 * r->op the refused op. */
static uint8_t ops_validate(const struct corral_state *st, const struct corral_state_resource *res,
                            const struct corral_state_cmd *c, struct corral_state_result *r)
{
    struct op_ctx x = {st, res, st->last_epoch, ""};
    struct corral_state_partition scratch;
    uint32_t cur = 0;
    for (uint32_t i = 0; i < c->n_ops; i++) {
        struct corral_partition_opv op;
        corral_state_cmd_op_at(c, i, &op);
        uint8_t status = CORRAL_STATE_NOT_FOUND;
        x.detail = "no such partition";
        if (op.partition < res->partitions) {
            assert(i == 0 || op.partition >= cur);
            if (i == 0 || op.partition != cur)
                scratch = res->parts[op.partition];
            cur = op.partition;
            status = op_step(&x, &scratch, &op);
        }
        if (status != CORRAL_STATE_OK) {
            r->op = i;
            state_refuse(r, status, x.detail);
            return status;
        }
    }
    return CORRAL_STATE_OK;
}

/* The commit pass: the same ops on the real partitions. */
/* Every member of p's row sees its view change at index (the epoch,
 * primary, releasing flag and copy sources are in every member's view). */
static void row_touched(struct corral_state *st, const struct corral_state_partition *p,
                        uint64_t index)
{
    for (uint8_t i = 0; i < p->n_replicas; i++) {
        struct state_member *m = state_member_get(st, p->replicas[i].member);
        if (m != NULL)
            m->m.view_index = index;
    }
}

static void ops_commit(struct corral_state *st, struct corral_state_resource *res,
                       const struct corral_state_cmd *c, uint64_t index)
{
    struct op_ctx x = {st, res, st->last_epoch, ""};
    for (uint32_t i = 0; i < c->n_ops; i++) {
        struct corral_partition_opv op;
        corral_state_cmd_op_at(c, i, &op);
        assert(op.partition < res->partitions);
        row_touched(st, &res->parts[op.partition], index);
        uint8_t status = op_step(&x, &res->parts[op.partition], &op);
        row_touched(st, &res->parts[op.partition], index);
        assert(status == CORRAL_STATE_OK);
        (void)status;
        struct state_member *m = state_member_get(st, op.member);
        if (op.op == CORRAL_OP_ADD_COPYING || op.op == CORRAL_OP_ADD_IN_SYNC)
            m->n_replicas++;
        else if (op.op == CORRAL_OP_DROP)
            m->n_replicas--;
    }
    assert(x.last_epoch >= st->last_epoch);
    st->last_epoch = x.last_epoch;
}

static int apply_partition_ops(struct corral_state *st, uint64_t index,
                               const struct corral_state_cmd *c, struct corral_state_result *r)
{
    struct corral_state_resource *res = state_resource_get(st, c->id);
    if (res == NULL)
        return state_refuse(r, CORRAL_STATE_NOT_FOUND, "no such resource");
    if (ops_validate(st, res, c, r) != CORRAL_STATE_OK)
        return 0;
    ops_commit(st, res, c, index);
    res->changed_index = index;
    st->assign_index = index;
    return 0;
}

/* ---- Apply ---- */

/* A config store command framed as type KV: the store wants an rbuf of
 * its own layout, so the body is handed over as one. */
static int apply_kv(struct corral_state *st, uint64_t index, const struct corral_rbuf *payload,
                    struct corral_state_result *r)
{
    assert(payload->len > STATE_CMD_HEADER_BYTES + STATE_CRC_BYTES);
    uint32_t body = payload->len - STATE_CMD_HEADER_BYTES - STATE_CRC_BYTES;
    struct corral_rbuf *b = corral_rbuf_new(payload->data + STATE_CMD_HEADER_BYTES, body);
    if (b == NULL)
        return CORRAL_ENOMEM;
    int rv = corral_kv_apply(st->kv, index, b, &r->kv);
    corral_rbuf_unref(b);
    r->status = CORRAL_STATE_KV_DONE;
    return rv;
}

static int apply_cmd(struct corral_state *st, uint64_t index, const struct corral_rbuf *payload,
                     const struct corral_state_cmd *c, struct corral_state_result *r)
{
    switch (c->type) {
    case CORRAL_STATE_MEMBER_PUT:
        return apply_member_put(st, index, c, r);
    case CORRAL_STATE_MEMBER_STATUS:
        return apply_member_status(st, index, c, r);
    case CORRAL_STATE_MEMBER_DELETE:
        return apply_member_delete(st, index, c, r);
    case CORRAL_STATE_RESOURCE_PUT:
        return apply_resource_put(st, index, c, r);
    case CORRAL_STATE_RESOURCE_DELETE:
        return apply_resource_delete(st, index, c, r);
    case CORRAL_STATE_PARTITION_OPS:
        return apply_partition_ops(st, index, c, r);
    case CORRAL_STATE_COORD_PUT:
        return state_apply_coord_put(st, index, c, r);
    case CORRAL_STATE_COORD_DELETE:
        return state_apply_coord_delete(st, index, c, r);
    default:
        assert(c->type == CORRAL_STATE_KV);
        return apply_kv(st, index, payload, r);
    }
}

int corral_state_apply(struct corral_state *st, uint64_t index, const struct corral_rbuf *payload,
                       struct corral_state_result *res)
{
    if (index <= st->applied)
        return CORRAL_EINVAL;
    assert(corral_kv_applied(st->kv) == st->applied);
    struct corral_state_result r = {.detail = ""};
    struct corral_state_cmd c;
    int rv;
    if (payload != NULL && payload->len > 0 && payload->data[0] == STATE_LEGACY_VERSION) {
        /* What the WAL held before this state machine: the store's own. */
        rv = corral_kv_apply(st->kv, index, payload, &r.kv);
        r.status = CORRAL_STATE_KV_DONE;
    } else if (corral_state_cmd_decode(payload, &c) != 0) {
        rv = state_refuse(&r, CORRAL_STATE_BAD_COMMAND, "the command did not decode");
    } else {
        rv = apply_cmd(st, index, payload, &c, &r);
    }
    if (rv != 0)
        return rv;
    if (r.status != CORRAL_STATE_KV_DONE) {
        rv = corral_kv_skip(st->kv, index);
        assert(rv == 0);
    }
    st->applied = index;
    if (res != NULL)
        *res = r;
    return 0;
}

int corral_state_skip(struct corral_state *st, uint64_t index)
{
    if (index <= st->applied)
        return CORRAL_EINVAL;
    int rv = corral_kv_skip(st->kv, index);
    assert(rv == 0);
    (void)rv;
    st->applied = index;
    return 0;
}
