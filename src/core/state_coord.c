/* The coordinators' roster inside the cluster state (rules at
 * CORRAL_STATE_COORD_PUT in state.h): a few entries in id order, scanned.
 * The Raft configuration is not here: the leader reconciles the two
 * (core/roster.h). */
#include <string.h>

#include "core/state_impl.h"
#include "corral.h"

static struct corral_state_coord *coord_by_id(const struct corral_state *st, uint32_t id)
{
    for (uint32_t i = 0; i < st->n_coords; i++)
        if (st->coords[i].id == id)
            return (struct corral_state_coord *)&st->coords[i];
    return NULL;
}

static struct corral_state_coord *coord_by_name(const struct corral_state *st, const char *name,
                                                uint32_t len)
{
    for (uint32_t i = 0; i < st->n_coords; i++)
        if (state_str_eq(st->coords[i].name, name, len))
            return (struct corral_state_coord *)&st->coords[i];
    return NULL;
}

static void set_addrs(struct corral_state_coord *k, const struct corral_state_cmd *c)
{
    state_copy_str(k->cluster_addr, c->addr, c->addr_len);
    state_copy_str(k->http_addr, c->http_addr, c->http_addr_len);
}

int state_apply_coord_put(struct corral_state *st, uint64_t index, const struct corral_state_cmd *c,
                          struct corral_state_result *r)
{
    struct corral_state_coord *k = coord_by_name(st, c->name, c->name_len);
    if (k != NULL) {
        if (k->id != c->id)
            return state_refuse(r, CORRAL_STATE_CONFLICT, "the coordinator name has another id");
        r->id = k->id;
        if (state_str_eq(k->cluster_addr, c->addr, c->addr_len) &&
            state_str_eq(k->http_addr, c->http_addr, c->http_addr_len))
            return 0;
        set_addrs(k, c);
        k->changed_index = index;
        st->coords_index = index;
        return 0;
    }
    if (coord_by_id(st, c->id) != NULL)
        return state_refuse(r, CORRAL_STATE_CONFLICT, "the coordinator id has another name");
    if (c->id < st->next_coord_id)
        return state_refuse(r, CORRAL_STATE_CONFLICT, "coordinator ids are never reused");
    if (st->n_coords >= CORRAL_STATE_COORDS_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "CORRAL_STATE_COORDS_MAX coordinators exist");
    if (c->id == UINT32_MAX)
        return state_refuse(r, CORRAL_STATE_FULL, "coordinator ids are exhausted");
    /* The largest id so far: appending keeps the id order. */
    k = &st->coords[st->n_coords++];
    memset(k, 0, sizeof(*k));
    k->id = c->id;
    k->added_index = k->changed_index = index;
    state_copy_str(k->name, c->name, c->name_len);
    set_addrs(k, c);
    st->next_coord_id = c->id + 1;
    st->coords_index = index;
    r->id = k->id;
    return 0;
}

int state_apply_coord_delete(struct corral_state *st, uint64_t index,
                             const struct corral_state_cmd *c, struct corral_state_result *r)
{
    struct corral_state_coord *k = coord_by_id(st, c->id);
    if (k == NULL)
        return state_refuse(r, CORRAL_STATE_NOT_FOUND, "no such coordinator");
    uint32_t at = (uint32_t)(k - st->coords);
    memmove(&st->coords[at], &st->coords[at + 1], (st->n_coords - at - 1) * sizeof(*k));
    st->n_coords--;
    st->coords_index = index;
    r->id = c->id;
    return 0;
}

struct corral_state_cmd corral_state_coord_put(uint32_t id, const char *name,
                                               const char *cluster_addr, const char *http_addr)
{
    struct corral_state_cmd c = {.type = CORRAL_STATE_COORD_PUT, .id = id};
    c.name = name;
    c.name_len = (uint16_t)strnlen(name, UINT16_MAX);
    c.addr = cluster_addr;
    c.addr_len = (uint16_t)strnlen(cluster_addr, UINT16_MAX);
    c.http_addr = http_addr;
    c.http_addr_len = (uint16_t)strnlen(http_addr, UINT16_MAX);
    return c;
}

uint32_t corral_state_coord_count(const struct corral_state *st)
{
    return st->n_coords;
}

const struct corral_state_coord *corral_state_coord_at(const struct corral_state *st, uint32_t i)
{
    return i < st->n_coords ? &st->coords[i] : NULL;
}

const struct corral_state_coord *corral_state_coord_by_id(const struct corral_state *st,
                                                          uint32_t id)
{
    return coord_by_id(st, id);
}

const struct corral_state_coord *corral_state_coord_by_name(const struct corral_state *st,
                                                            const char *name, uint32_t len)
{
    return corral_state_name_valid(name, len) ? coord_by_name(st, name, len) : NULL;
}

uint32_t corral_state_next_coord_id(const struct corral_state *st)
{
    return st->next_coord_id;
}

uint64_t corral_state_coords_index(const struct corral_state *st)
{
    return st->coords_index;
}
