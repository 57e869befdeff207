/* /v1/events: the cluster's change log as this coordinator applied it, a
 * ring of the last API_EVENTS_KEPT events made from each applied command
 * (refused commands make none), served as a blocking query. */
#include <stdlib.h>
#include <string.h>

#include "api/own.h"
#include "api/reply.h"
#include "corral.h"

static const char *const type_names[] = {
    "?",
    "member_join",
    "member_update",
    "member_status",
    "member_delete",
    "resource_put",
    "resource_delete",
    "copy",
    "in_sync",
    "drop",
    "grant",
    "release",
    "clear",
};

static struct api_event *push(struct api_ctx *x, uint64_t index, uint8_t type)
{
    if (x->ev_cap < API_EVENTS_KEPT && x->ev_count == x->ev_cap) {
        /* Grow (only while the ring is not full yet: it starts small). */
        uint32_t cap = x->ev_cap ? x->ev_cap * 2 : 64;
        if (cap > API_EVENTS_KEPT)
            cap = API_EVENTS_KEPT;
        struct api_event *ev = calloc(cap, sizeof(*ev));
        if (ev == NULL)
            return NULL;
        for (uint32_t i = 0; i < x->ev_count; i++)
            ev[i] = x->events[(x->ev_head + i) % x->ev_cap];
        free(x->events);
        x->events = ev;
        x->ev_head = 0;
        x->ev_cap = cap;
    }
    if (x->ev_cap == 0)
        return NULL;
    struct api_event *e;
    if (x->ev_count == x->ev_cap) { /* full: the oldest goes */
        e = &x->events[x->ev_head];
        x->ev_head = (x->ev_head + 1) % x->ev_cap;
    } else {
        e = &x->events[(x->ev_head + x->ev_count) % x->ev_cap];
        x->ev_count++;
    }
    memset(e, 0, sizeof(*e));
    e->index = index;
    e->type = type;
    x->ev_last_index = index;
    return e;
}

static void set_str(char *dst, const char *src, size_t len)
{
    if (len > CORRAL_STATE_NAME_BYTES_MAX)
        len = CORRAL_STATE_NAME_BYTES_MAX;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void member_of(const struct corral_state *st, uint32_t id, char *dst)
{
    const struct corral_state_member *m = corral_state_member_by_id(st, id);
    snprintf(dst, CORRAL_STATE_NAME_BYTES_MAX + 1, "%s", m != NULL ? m->name : "?");
}

static void ops_events(struct api_ctx *x, const struct corral_state *st, uint64_t index,
                       const struct corral_state_cmd *c)
{
    const struct corral_state_resource *r = corral_state_resource_by_id(st, c->id);
    static const uint8_t kinds[] = {
        [CORRAL_OP_ADD_COPYING] = API_EV_COPY,     [CORRAL_OP_ADD_IN_SYNC] = API_EV_COPY,
        [CORRAL_OP_MARK_IN_SYNC] = API_EV_IN_SYNC, [CORRAL_OP_DROP] = API_EV_DROP,
        [CORRAL_OP_GRANT] = API_EV_GRANT,          [CORRAL_OP_RELEASE] = API_EV_RELEASE,
        [CORRAL_OP_CLEAR] = API_EV_CLEAR,          [CORRAL_OP_GRANT_DRAINING] = API_EV_GRANT,
    };
    for (uint32_t i = 0; r != NULL && i < c->n_ops; i++) {
        struct corral_partition_opv op;
        corral_state_cmd_op_at(c, i, &op);
        if (op.op == 0 || op.op > CORRAL_PARTITION_OP_MAX)
            continue;
        struct api_event *e = push(x, index, kinds[op.op]);
        if (e == NULL)
            return;
        e->partition = op.partition;
        /* A grant's epoch is the new one: the state after the command. */
        e->epoch = kinds[op.op] == API_EV_GRANT && op.partition < r->partitions
                       ? r->parts[op.partition].epoch
                       : op.epoch;
        member_of(st, op.member, e->member);
        snprintf(e->resource, sizeof(e->resource), "%s", r->name);
    }
}

void api_events_applied(struct corral_node *n, const struct corral_raft_entry *e,
                        const struct corral_state_result *res)
{
    struct corral_state_cmd c;
    if (res == NULL || res->status != CORRAL_STATE_OK || e->data == NULL ||
        corral_state_cmd_decode(e->data, &c) != 0)
        return;
    struct api_ctx *x = api_ctx(n);
    const struct corral_state *st = corral_node_state(n);
    struct api_event *ev = NULL;
    switch (c.type) {
    case CORRAL_STATE_MEMBER_PUT: {
        const struct corral_state_member *m = corral_state_member_by_id(st, res->id);
        bool joined = m != NULL && m->joined_index == e->index;
        if (m != NULL && (joined || m->changed_index == e->index))
            ev = push(x, e->index, joined ? API_EV_MEMBER_JOIN : API_EV_MEMBER_UPDATE);
        if (ev != NULL)
            set_str(ev->member, c.name, c.name_len);
        break;
    }
    case CORRAL_STATE_MEMBER_STATUS:
        ev = push(x, e->index, API_EV_MEMBER_STATUS);
        if (ev != NULL) {
            member_of(st, c.id, ev->member);
            ev->status = c.status;
        }
        break;
    case CORRAL_STATE_MEMBER_DELETE:
        ev = push(x, e->index, API_EV_MEMBER_DELETE);
        if (ev != NULL)
            snprintf(ev->member, sizeof(ev->member), "#%u", c.id); /* its name is gone */
        break;
    case CORRAL_STATE_RESOURCE_PUT:
        ev = push(x, e->index, API_EV_RESOURCE_PUT);
        if (ev != NULL)
            set_str(ev->resource, c.name, c.name_len);
        break;
    case CORRAL_STATE_RESOURCE_DELETE:
        ev = push(x, e->index, API_EV_RESOURCE_DELETE);
        if (ev != NULL)
            snprintf(ev->resource, sizeof(ev->resource), "#%u", c.id);
        break;
    case CORRAL_STATE_PARTITION_OPS:
        ops_events(x, st, e->index, &c);
        break;
    default:
        break;
    }
}

static json_t *event_json(const struct api_event *e)
{
    json_t *o = json_pack("{s:I, s:s}", "index", (json_int_t)e->index, "type", type_names[e->type]);
    if (o == NULL)
        return NULL;
    if (e->member[0] != '\0')
        json_object_set_new(o, "member", json_string(e->member));
    if (e->resource[0] != '\0')
        json_object_set_new(o, "resource", json_string(e->resource));
    if (e->type >= API_EV_COPY) {
        json_object_set_new(o, "partition", json_integer(e->partition));
        json_object_set_new(o, "epoch", json_integer((json_int_t)e->epoch));
    }
    if (e->type == API_EV_MEMBER_STATUS)
        json_object_set_new(o, "status", json_string(api_status_name(e->status)));
    return o;
}

static bool try_events(struct corral_node *n, struct api_wait *w, bool timed_out)
{
    struct api_ctx *x = api_ctx(n);
    if (!timed_out && x->ev_last_index <= w->index)
        return false;
    json_t *arr = json_array();
    uint32_t k = 0;
    uint64_t last = w->index;
    bool truncated = false;
    for (uint32_t i = 0; arr != NULL && i < x->ev_count; i++) {
        const struct api_event *e = &x->events[(x->ev_head + i) % x->ev_cap];
        if (e->index <= w->index)
            continue;
        /* The ring lost events after the asked index (it was full). */
        if (k == 0 && i == 0 && w->index > 0 && x->ev_count == x->ev_cap)
            truncated = true;
        /* At the limit, but never cutting one index's events in two. */
        if (k >= API_EVENTS_PER_ANSWER && e->index != last)
            break;
        json_array_append_new(arr, event_json(e));
        last = e->index;
        k++;
    }
    json_t *body = json_pack("{s:I, s:o}", "index", (json_int_t)last, "events", arr);
    if (body != NULL && truncated)
        json_object_set_new(body, "truncated", json_true());
    api_json(w->req, 200, body);
    return true;
}

void api_events(struct corral_node *n, struct corral_http_request *req)
{
    if (strcmp(corral_http_method(req), "GET") != 0 &&
        strcmp(corral_http_method(req), "HEAD") != 0) {
        api_error(req, API_ERR_GET_ONLY);
        return;
    }
    uint64_t index, wait_ms;
    if (!api_index_arg(req, &index) || !api_wait_arg(req, &wait_ms))
        return;
    struct api_wait probe = {.req = req, .index = index};
    if (try_events(n, &probe, index == 0))
        return;
    struct api_wait *w = api_wait_park(n, req, wait_ms, try_events);
    if (w != NULL)
        w->index = index;
}
