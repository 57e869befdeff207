/* The cluster state's snapshot (layout in state.h), its restore, and the
 * invariant check that restore runs on what it loaded before it replaces
 * anything. Restore itself only bounds what it reads (counts, lengths,
 * sizes, the alphabet of every string) so that loading is memory-safe and
 * strings round-trip; every other rule is state_validate's. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/state_impl.h"
#include "corral.h"
#include "util/crc32c.h"
#include "util/mem.h"

#define SNAP_HEADER_BYTES 33u /* version, applied, assign_index, last_epoch, two next ids */
#define SNAP_MEMBER_MIN 32u   /* the fixed fields and four u16 lengths */
#define SNAP_RESOURCE_MIN 27u /* id, P, R, two indexes, the name length */
#define SNAP_PART_MIN 14u     /* epoch, primary, releasing, n_replicas */
#define SNAP_REPLICA_BYTES 5u
#define SNAP_COORD_MIN 26u /* id, two indexes, three string lengths */
/* The header, the two counts, the store's length and the CRC. */
#define SNAP_FIXED_BYTES (SNAP_HEADER_BYTES + 4u + 4u + 4u + STATE_CRC_BYTES)
/* The roster's head: next_coord_id, coords_index, n_coords. */
#define SNAP_COORDS_HEAD_BYTES 16u

/* ---- Snapshot ---- */

static size_t member_bytes(const struct corral_state_member *m)
{
    return SNAP_MEMBER_MIN + strlen(m->name) + strlen(m->addr) + strlen(m->zone) + m->meta_len;
}

static size_t resource_bytes(const struct corral_state_resource *res)
{
    size_t n = SNAP_RESOURCE_MIN + strlen(res->name) + (size_t)SNAP_PART_MIN * res->partitions;
    for (uint32_t p = 0; p < res->partitions; p++)
        n += (size_t)SNAP_REPLICA_BYTES * res->parts[p].n_replicas;
    return n;
}

static void put_member(struct state_writer *w, const struct corral_state_member *m)
{
    state_put(w, m->id, 4);
    state_put(w, m->role, 1);
    state_put(w, m->status, 1);
    state_put(w, m->weight, 2);
    state_put(w, m->joined_index, 8);
    state_put(w, m->changed_index, 8);
    state_put_str(w, m->name, strlen(m->name));
    state_put_str(w, m->addr, strlen(m->addr));
    state_put_str(w, m->zone, strlen(m->zone));
    state_put_str(w, m->meta, m->meta_len);
}

static size_t coord_bytes(const struct corral_state_coord *k)
{
    return SNAP_COORD_MIN + strlen(k->name) + strlen(k->cluster_addr) + strlen(k->http_addr);
}

static void put_coords(struct state_writer *w, const struct corral_state *st)
{
    state_put(w, st->next_coord_id, 4);
    state_put(w, st->coords_index, 8);
    state_put(w, st->n_coords, 4);
    for (uint32_t i = 0; i < st->n_coords; i++) {
        const struct corral_state_coord *k = &st->coords[i];
        state_put(w, k->id, 4);
        state_put(w, k->added_index, 8);
        state_put(w, k->changed_index, 8);
        state_put_str(w, k->name, strlen(k->name));
        state_put_str(w, k->cluster_addr, strlen(k->cluster_addr));
        state_put_str(w, k->http_addr, strlen(k->http_addr));
    }
}

static void put_resource(struct state_writer *w, const struct corral_state_resource *res)
{
    state_put(w, res->id, 4);
    state_put(w, res->partitions, 4);
    state_put(w, res->replicas, 1);
    state_put(w, res->created_index, 8);
    state_put(w, res->changed_index, 8);
    state_put_str(w, res->name, strlen(res->name));
    for (uint32_t p = 0; p < res->partitions; p++) {
        const struct corral_state_partition *part = &res->parts[p];
        state_put(w, part->epoch, 8);
        state_put(w, part->primary, 4);
        state_put(w, part->releasing ? 1 : 0, 1);
        state_put(w, part->n_replicas, 1);
        for (uint8_t i = 0; i < part->n_replicas; i++) {
            state_put(w, part->replicas[i].member, 4);
            state_put(w, part->replicas[i].state, 1);
        }
    }
}

static void put_all(struct state_writer *w, const struct corral_state *st,
                    const struct corral_rbuf *kv)
{
    state_put(w, STATE_SNAP_VERSION, 1);
    state_put(w, st->applied, 8);
    state_put(w, st->assign_index, 8);
    state_put(w, st->last_epoch, 8);
    state_put(w, st->next_member_id, 4);
    state_put(w, st->next_resource_id, 4);
    state_put(w, st->n_members, 4);
    for (uint32_t i = 0; i < st->n_members; i++)
        put_member(w, &st->members[i]->m);
    state_put(w, st->n_resources, 4);
    for (uint32_t i = 0; i < st->n_resources; i++)
        put_resource(w, st->resources[i]);
    put_coords(w, st);
    state_put(w, kv->len, 4);
    state_put_bytes(w, kv->data, kv->len);
}

struct corral_rbuf *corral_state_snapshot(const struct corral_state *st)
{
    struct corral_rbuf *kv = corral_kv_snapshot(st->kv);
    if (kv == NULL)
        return NULL;
    size_t size = SNAP_FIXED_BYTES + SNAP_COORDS_HEAD_BYTES + (size_t)kv->len;
    for (uint32_t i = 0; i < st->n_coords; i++)
        size += coord_bytes(&st->coords[i]);
    for (uint32_t i = 0; i < st->n_members; i++)
        size += member_bytes(&st->members[i]->m);
    for (uint32_t i = 0; i < st->n_resources; i++)
        size += resource_bytes(st->resources[i]);
    assert(size <= UINT32_MAX);
    struct corral_rbuf *b = corral_rbuf_new(NULL, (uint32_t)size);
    if (b == NULL) {
        corral_rbuf_unref(kv);
        return NULL;
    }
    struct state_writer w = {b->data, b->data + b->len};
    put_all(&w, st, kv);
    corral_rbuf_unref(kv);
    state_put(&w, corral_crc32c(0, b->data, b->len - STATE_CRC_BYTES), STATE_CRC_BYTES);
    assert(w.p == b->data + b->len);
    return b;
}

/* ---- Restore ---- */

/* A u16-length string of at most max bytes into dst (max + 1 long). */
static bool load_str(struct state_reader *r, uint32_t max, char *dst,
                     bool (*valid)(const char *, uint32_t))
{
    uint16_t len;
    const char *s = (const char *)state_get_str(r, max, &len);
    if (r->bad || !valid(s, len))
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

static int load_member(struct state_reader *r, struct corral_state *st)
{
    assert(st->n_members < CORRAL_STATE_MEMBERS_MAX); /* load_counted bounded it */
    struct state_member *sm = corral_calloc(1, sizeof(*sm));
    if (sm == NULL)
        return CORRAL_ENOMEM;
    struct corral_state_member *m = &sm->m;
    m->id = (uint32_t)state_get(r, 4);
    m->role = (uint8_t)state_get(r, 1);
    m->status = (uint8_t)state_get(r, 1);
    m->weight = (uint16_t)state_get(r, 2);
    m->joined_index = state_get(r, 8);
    m->changed_index = state_get(r, 8);
    m->view_index = st->applied; /* not kept: later than the truth (state.h) */
    bool ok = load_str(r, CORRAL_STATE_NAME_BYTES_MAX, m->name, corral_state_name_valid) &&
              load_str(r, CORRAL_STATE_ADDR_BYTES_MAX, m->addr, state_addr_valid) &&
              load_str(r, CORRAL_STATE_ZONE_BYTES_MAX, m->zone, state_zone_valid);
    const uint8_t *meta = state_get_str(r, CORRAL_STATE_META_BYTES_MAX, &m->meta_len);
    /* Ids strictly increasing keep the id index sorted for the lookups. */
    if (!ok || r->bad || (st->n_members > 0 && st->members[st->n_members - 1]->m.id >= m->id)) {
        corral_free(sm);
        return CORRAL_ECORRUPT;
    }
    if (m->meta_len > 0)
        memcpy(m->meta, meta, m->meta_len);
    state_member_insert(st, sm);
    return 0;
}

static bool load_partition(struct state_reader *r, struct corral_state *st,
                           struct corral_state_partition *p)
{
    p->epoch = state_get(r, 8);
    p->primary = (uint32_t)state_get(r, 4);
    uint64_t releasing = state_get(r, 1);
    uint64_t n = state_get(r, 1);
    if (r->bad || releasing > 1 || n > CORRAL_STATE_ROW_MAX)
        return false;
    p->releasing = releasing != 0;
    p->n_replicas = (uint8_t)n;
    for (uint8_t i = 0; i < p->n_replicas; i++) {
        p->replicas[i].member = (uint32_t)state_get(r, 4);
        p->replicas[i].state = (uint8_t)state_get(r, 1);
        struct state_member *m = state_member_get(st, p->replicas[i].member);
        if (r->bad || m == NULL)
            return false;
        m->n_replicas++;
    }
    return true;
}

/* The fixed part of a resource, with its map allocated (bounded first). */
static int load_resource_head(struct state_reader *r, struct corral_state *st,
                              struct corral_state_resource **out)
{
    assert(st->n_resources < CORRAL_STATE_RESOURCES_MAX); /* load_counted bounded it */
    struct corral_state_resource res = {0};
    res.id = (uint32_t)state_get(r, 4);
    res.partitions = (uint32_t)state_get(r, 4);
    res.replicas = (uint8_t)state_get(r, 1);
    res.created_index = state_get(r, 8);
    res.changed_index = state_get(r, 8);
    if (!load_str(r, CORRAL_STATE_NAME_BYTES_MAX, res.name, corral_state_name_valid))
        return CORRAL_ECORRUPT;
    if (res.partitions < 1 || res.partitions > CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX ||
        st->partitions_total + res.partitions > CORRAL_STATE_PARTITIONS_MAX ||
        (uint64_t)res.partitions * SNAP_PART_MIN > r->left)
        return CORRAL_ECORRUPT;
    if (st->n_resources > 0 && st->resources[st->n_resources - 1]->id >= res.id)
        return CORRAL_ECORRUPT;
    *out = corral_malloc(sizeof(**out));
    if (*out == NULL)
        return CORRAL_ENOMEM;
    **out = res;
    (*out)->parts = corral_calloc(res.partitions, sizeof(*res.parts));
    if ((*out)->parts == NULL) {
        corral_free(*out);
        return CORRAL_ENOMEM;
    }
    return 0;
}

static int load_resource(struct state_reader *r, struct corral_state *st)
{
    struct corral_state_resource *res;
    int rv = load_resource_head(r, st, &res);
    if (rv != 0)
        return rv;
    /* In the state from here on, so freeing the state frees it. */
    state_resource_insert(st, res);
    st->partitions_total += res->partitions;
    for (uint32_t p = 0; p < res->partitions; p++)
        if (!load_partition(r, st, &res->parts[p]))
            return CORRAL_ECORRUPT;
    return 0;
}

/* The store's snapshot, embedded: restored into st's fresh store. */
static int load_kv(struct state_reader *r, struct corral_state *st)
{
    uint64_t len = state_get(r, 4);
    const uint8_t *p = state_get_bytes(r, (size_t)len);
    if (r->bad)
        return CORRAL_ECORRUPT;
    struct corral_rbuf *b = corral_rbuf_new(p, (uint32_t)len);
    if (b == NULL)
        return CORRAL_ENOMEM;
    int rv = corral_kv_restore(st->kv, b);
    corral_rbuf_unref(b);
    /* A version the store does not know, inside a version we do: corrupt. */
    return rv == CORRAL_EVERSION ? CORRAL_ECORRUPT : rv;
}

static bool state_addr_or_empty(const char *addr, uint32_t len)
{
    return len == 0 || state_addr_valid(addr, len);
}

static int load_coord(struct state_reader *r, struct corral_state *st)
{
    assert(st->n_coords < CORRAL_STATE_COORDS_MAX); /* load_counted bounded it */
    struct corral_state_coord *k = &st->coords[st->n_coords];
    memset(k, 0, sizeof(*k));
    k->id = (uint32_t)state_get(r, 4);
    k->added_index = state_get(r, 8);
    k->changed_index = state_get(r, 8);
    bool ok = load_str(r, CORRAL_STATE_NAME_BYTES_MAX, k->name, corral_state_name_valid) &&
              load_str(r, CORRAL_STATE_ADDR_BYTES_MAX, k->cluster_addr, state_addr_valid) &&
              load_str(r, CORRAL_STATE_ADDR_BYTES_MAX, k->http_addr, state_addr_or_empty);
    if (!ok || r->bad)
        return CORRAL_ECORRUPT;
    st->n_coords++;
    return 0;
}

static int load_counted(struct state_reader *r, struct corral_state *st,
                        int (*load)(struct state_reader *, struct corral_state *), uint32_t max,
                        uint32_t min_bytes)
{
    uint64_t n = state_get(r, 4);
    /* Bounds the work before any allocation. */
    if (r->bad || n > max || n * min_bytes > r->left)
        return CORRAL_ECORRUPT;
    for (uint64_t i = 0; i < n; i++) {
        int rv = load(r, st);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int load_all(struct state_reader *r, struct corral_state *st, uint8_t version)
{
    st->applied = state_get(r, 8);
    st->assign_index = state_get(r, 8);
    st->last_epoch = state_get(r, 8);
    st->next_member_id = (uint32_t)state_get(r, 4);
    st->next_resource_id = (uint32_t)state_get(r, 4);
    int rv = load_counted(r, st, load_member, CORRAL_STATE_MEMBERS_MAX, SNAP_MEMBER_MIN);
    if (rv == 0)
        rv = load_counted(r, st, load_resource, CORRAL_STATE_RESOURCES_MAX, SNAP_RESOURCE_MIN);
    if (rv == 0 && version != STATE_SNAP_VERSION_NO_COORDS) {
        st->next_coord_id = (uint32_t)state_get(r, 4);
        st->coords_index = state_get(r, 8);
        rv = load_counted(r, st, load_coord, CORRAL_STATE_COORDS_MAX, SNAP_COORD_MIN);
    }
    if (rv == 0)
        rv = load_kv(r, st);
    if (rv == 0 && (r->bad || r->left != 0))
        rv = CORRAL_ECORRUPT;
    return rv != 0 ? rv : state_validate(st);
}

/* Moves fresh's contents into st, whose old ones are freed. */
static void replace(struct corral_state *st, struct corral_state *fresh)
{
    state_free_contents(st);
    memcpy(st, fresh, sizeof(*st));
    corral_free(fresh);
}

/* A config store snapshot from before this state machine. */
static int restore_legacy(struct corral_state *st, const struct corral_rbuf *snap)
{
    struct corral_state *fresh = corral_state_new();
    if (fresh == NULL)
        return CORRAL_ENOMEM;
    int rv = corral_kv_restore(fresh->kv, snap);
    if (rv != 0) {
        corral_state_free(fresh);
        return rv;
    }
    fresh->applied = corral_kv_applied(fresh->kv);
    replace(st, fresh);
    return 0;
}

int corral_state_restore(struct corral_state *st, const struct corral_rbuf *snap)
{
    if (snap == NULL || snap->len == 0)
        return CORRAL_ECORRUPT;
    if (snap->data[0] == STATE_LEGACY_VERSION)
        return restore_legacy(st, snap);
    uint8_t version = snap->data[0];
    if (version != STATE_SNAP_VERSION && version != STATE_SNAP_VERSION_NO_COORDS)
        return CORRAL_EVERSION;
    if (snap->len < SNAP_FIXED_BYTES)
        return CORRAL_ECORRUPT;
    size_t body = snap->len - STATE_CRC_BYTES;
    if (corral_get_le32(snap->data + body) != corral_crc32c(0, snap->data, body))
        return CORRAL_ECORRUPT;
    struct corral_state *fresh = corral_state_new();
    if (fresh == NULL)
        return CORRAL_ENOMEM;
    struct state_reader r = {snap->data + 1, body - 1, false};
    int rv = load_all(&r, fresh, version);
    if (rv != 0) {
        corral_state_free(fresh);
        return rv;
    }
    replace(st, fresh);
    return 0;
}

/* ---- The invariants ---- */

static bool member_valid(const struct corral_state *st, const struct state_member *sm)
{
    const struct corral_state_member *m = &sm->m;
    if (m->id == CORRAL_STATE_NONE || m->id >= st->next_member_id)
        return false; /* S1 */
    if (!corral_state_name_valid(m->name, (uint32_t)strlen(m->name)) ||
        !state_addr_valid(m->addr, (uint32_t)strlen(m->addr)) ||
        !state_zone_valid(m->zone, (uint32_t)strlen(m->zone)))
        return false;
    if (m->role < CORRAL_MEMBER_COORDINATOR || m->role > CORRAL_MEMBER_WORKER ||
        m->status < CORRAL_MEMBER_ACTIVE || m->status > CORRAL_MEMBER_LEFT)
        return false;
    if (m->weight < 1 || m->weight > CORRAL_STATE_WEIGHT_MAX ||
        m->meta_len > CORRAL_STATE_META_BYTES_MAX)
        return false;
    if (m->status == CORRAL_MEMBER_LEFT && sm->n_replicas > 0)
        return false; /* S2 */
    return m->joined_index >= 1 && m->joined_index <= m->changed_index &&
           m->changed_index <= st->assign_index && m->view_index >= m->joined_index &&
           m->view_index <= st->applied;
}

/* S1 for members: both indexes sorted, the same objects in each. */
static bool members_valid(const struct corral_state *st)
{
    if (st->n_members > CORRAL_STATE_MEMBERS_MAX)
        return false;
    for (uint32_t i = 0; i < st->n_members; i++) {
        const struct state_member *m = st->members[i];
        if (!member_valid(st, m) || (i > 0 && st->members[i - 1]->m.id >= m->m.id))
            return false;
        const struct state_member *n = st->members_by_name[i];
        if (i > 0 && strcmp(st->members_by_name[i - 1]->m.name, n->m.name) >= 0)
            return false;
        if (state_member_get(st, n->m.id) != n)
            return false;
    }
    return true;
}

/* S2, S3, S4 for one partition; counts each replica in counts (by
 * member position). */
static bool partition_valid(const struct corral_state *st, const struct corral_state_partition *p,
                            uint32_t *counts)
{
    if (p->n_replicas > CORRAL_STATE_ROW_MAX || p->epoch > st->last_epoch)
        return false;
    if (p->releasing && p->primary == CORRAL_STATE_NONE)
        return false; /* S4 */
    if (p->primary != CORRAL_STATE_NONE && p->epoch == 0)
        return false; /* S3: a primary was granted */
    bool primary_ok = p->primary == CORRAL_STATE_NONE;
    for (uint8_t i = 0; i < p->n_replicas; i++) {
        const struct corral_state_replica *rep = &p->replicas[i];
        uint32_t pos = state_member_pos(st, rep->member);
        if (pos == st->n_members || st->members[pos]->m.id != rep->member ||
            st->members[pos]->m.status == CORRAL_MEMBER_LEFT)
            return false;
        if (rep->state != CORRAL_REPLICA_COPYING && rep->state != CORRAL_REPLICA_IN_SYNC)
            return false;
        if (state_replica_find(p, rep->member) != i)
            return false; /* twice in one partition */
        if (rep->member == p->primary && rep->state == CORRAL_REPLICA_IN_SYNC)
            primary_ok = true;
        counts[pos]++;
    }
    return primary_ok;
}

static bool resource_valid(const struct corral_state *st, const struct corral_state_resource *res,
                           uint32_t *counts)
{
    if (res->id == 0 || res->id >= st->next_resource_id)
        return false; /* S1 */
    if (!corral_state_name_valid(res->name, (uint32_t)strlen(res->name)))
        return false;
    if (res->partitions < 1 || res->partitions > CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX ||
        res->replicas < 1 || res->replicas > CORRAL_STATE_REPLICAS_MAX || res->parts == NULL)
        return false;
    if (res->created_index < 1 || res->created_index > res->changed_index ||
        res->changed_index > st->assign_index)
        return false;
    for (uint32_t p = 0; p < res->partitions; p++)
        if (!partition_valid(st, &res->parts[p], counts))
            return false;
    return true;
}

/* S1 for resources, S2-S4 for their maps, S5; counts replicas per member. */
static bool resources_valid(const struct corral_state *st, uint32_t *counts)
{
    if (st->n_resources > CORRAL_STATE_RESOURCES_MAX)
        return false;
    uint64_t total = 0;
    for (uint32_t i = 0; i < st->n_resources; i++) {
        const struct corral_state_resource *res = st->resources[i];
        if (!resource_valid(st, res, counts) || (i > 0 && st->resources[i - 1]->id >= res->id))
            return false;
        const struct corral_state_resource *n = st->resources_by_name[i];
        if (i > 0 && strcmp(st->resources_by_name[i - 1]->name, n->name) >= 0)
            return false;
        if (state_resource_get(st, n->id) != n)
            return false;
        total += res->partitions;
    }
    return total == st->partitions_total && total <= CORRAL_STATE_PARTITIONS_MAX; /* S5 */
}

static int epoch_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* S3: every grant took a fresh epoch, so no two partitions share one. */
static int epochs_distinct(const struct corral_state *st)
{
    uint64_t *e = corral_malloc(sizeof(*e) * (st->partitions_total + 1));
    if (e == NULL)
        return CORRAL_ENOMEM;
    size_t n = 0;
    for (uint32_t i = 0; i < st->n_resources; i++)
        for (uint32_t p = 0; p < st->resources[i]->partitions; p++)
            if (st->resources[i]->parts[p].epoch != 0)
                e[n++] = st->resources[i]->parts[p].epoch;
    qsort(e, n, sizeof(*e), epoch_cmp);
    bool ok = true;
    for (size_t i = 1; i < n && ok; i++)
        ok = e[i - 1] != e[i];
    corral_free(e);
    return ok ? 0 : CORRAL_ECORRUPT;
}

/* S6. */
static bool coords_valid(const struct corral_state *st)
{
    if (st->n_coords > CORRAL_STATE_COORDS_MAX || st->next_coord_id < 1 ||
        st->coords_index > st->applied)
        return false;
    for (uint32_t i = 0; i < st->n_coords; i++) {
        const struct corral_state_coord *k = &st->coords[i];
        if (k->id < 1 || k->id >= st->next_coord_id || (i > 0 && st->coords[i - 1].id >= k->id))
            return false;
        if (!corral_state_name_valid(k->name, (uint32_t)strlen(k->name)) ||
            !state_addr_valid(k->cluster_addr, (uint32_t)strlen(k->cluster_addr)) ||
            !state_addr_or_empty(k->http_addr, (uint32_t)strlen(k->http_addr)))
            return false;
        if (k->added_index < 1 || k->added_index > k->changed_index ||
            k->changed_index > st->coords_index)
            return false;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(st->coords[j].name, k->name) == 0)
                return false;
    }
    return true;
}

static bool header_valid(const struct corral_state *st)
{
    return st->next_member_id >= 1 && st->next_resource_id >= 1 && coords_valid(st) &&
           st->assign_index <= st->applied && corral_kv_applied(st->kv) == st->applied;
}

int state_validate(const struct corral_state *st)
{
    if (!header_valid(st) || !members_valid(st))
        return CORRAL_ECORRUPT;
    uint32_t *counts = corral_calloc(st->n_members + 1u, sizeof(*counts));
    if (counts == NULL)
        return CORRAL_ENOMEM;
    bool ok = resources_valid(st, counts);
    for (uint32_t i = 0; i < st->n_members && ok; i++)
        ok = counts[i] == st->members[i]->n_replicas;
    corral_free(counts);
    if (!ok)
        return CORRAL_ECORRUPT;
    int rv = epochs_distinct(st);
    if (rv != 0)
        return rv;
    return corral_kv_check(st->kv) ? 0 : CORRAL_ECORRUPT;
}

bool corral_state_check(const struct corral_state *st)
{
    return state_validate(st) == 0;
}
