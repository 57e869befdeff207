/* /v1/resources: create, resize, list, show with the map, delete, key
 * lookup and the dry-run plan. See docs/api.md. */
#include <stdlib.h>
#include <string.h>

#include "api/own.h"
#include "api/reply.h"
#include "corral.h"
#include "core/controller.h"

static const struct corral_state_resource *find(struct corral_node *n, const char *name)
{
    return corral_state_resource_by_name(corral_node_state(n), name, (uint32_t)strlen(name));
}

static const char *member_name(const struct corral_state *st, uint32_t id)
{
    const struct corral_state_member *m = corral_state_member_by_id(st, id);
    return m != NULL ? m->name : "?";
}

static json_t *summary_json(const struct corral_state_resource *r)
{
    struct api_own_summary c;
    memset(&c, 0, sizeof(c));
    api_resource_counts(r, &c);
    json_int_t without = (json_int_t)c.without_primary, under = (json_int_t)c.under_replicated,
               moving = (json_int_t)c.moving;
    return json_pack("{s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I}", "name", r->name, "id",
                     (json_int_t)r->id, "partitions", (json_int_t)r->partitions, "replicas",
                     (int)r->replicas, "index", (json_int_t)r->changed_index, "without_primary",
                     (json_int_t)without, "under_replicated", (json_int_t)under, "moving",
                     (json_int_t)moving);
}

static json_t *replicas_json(const struct corral_state *st, const struct corral_state_partition *pt,
                             bool with_addr)
{
    json_t *arr = json_array();
    for (uint8_t j = 0; arr != NULL && j < pt->n_replicas; j++) {
        const struct corral_state_replica *rp = &pt->replicas[j];
        const char *state = rp->state == CORRAL_REPLICA_IN_SYNC ? "in_sync" : "copying";
        const struct corral_state_member *m = corral_state_member_by_id(st, rp->member);
        if (with_addr)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name", m ? m->name : "?",
                                                 "addr", m ? m->addr : "", "state", state));
        else
            json_array_append_new(arr, json_pack("{s:s, s:s}", "member",
                                                 member_name(st, rp->member), "state", state));
    }
    return arr;
}

static void show(struct corral_node *n, struct corral_http_request *req,
                 const struct corral_state_resource *r)
{
    const struct corral_state *st = corral_node_state(n);
    json_t *body = summary_json(r);
    json_t *map = json_array();
    for (uint32_t p = 0; map != NULL && p < r->partitions; p++) {
        const struct corral_state_partition *pt = &r->parts[p];
        json_t *primary = pt->primary != CORRAL_STATE_NONE
                              ? json_string(member_name(st, pt->primary))
                              : json_null();
        json_array_append_new(map, json_pack("{s:I, s:o, s:I, s:b, s:o}", "partition",
                                             (json_int_t)p, "primary", primary, "epoch",
                                             (json_int_t)pt->epoch, "releasing", pt->releasing,
                                             "replicas", replicas_json(st, pt, false)));
    }
    if (body != NULL)
        json_object_set_new(body, "map", map);
    else
        json_decref(map);
    api_json(req, 200, body);
}

static void list(struct corral_node *n, struct corral_http_request *req)
{
    const struct corral_state *st = corral_node_state(n);
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < corral_state_resource_count(st); i++)
        json_array_append_new(arr, summary_json(corral_state_resource_at(st, i)));
    api_json(req, 200,
             json_pack("{s:I, s:o}", "index", (json_int_t)corral_state_assign_index(st),
                       "resources", arr));
}

/* ---- writes ---- */

/* The summary once the write applied. */
static void answer_summary(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    const struct corral_state_resource *r = find(n, name);
    if (r == NULL)
        api_error(req, API_ERR_NO_RESOURCE); /* deleted in the same batch */
    else
        api_json(req, 200, summary_json(r));
}

/* Workers that could hold a copy: registered, not left. */
static uint32_t hosts(const struct corral_state *st)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < corral_state_member_count(st); i++) {
        const struct corral_state_member *m = corral_state_member_at(st, i);
        k += m->role == CORRAL_MEMBER_WORKER && m->status != CORRAL_MEMBER_LEFT;
    }
    return k;
}

static void put(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    static const char *const args[] = {"force", NULL};
    bool force = false;
    if (!api_args_only(req, args) || !api_flag_arg(req, "force", &force))
        return;
    /* The checks below read the state: a follower's may be stale (a
     * worker or the resource itself not applied yet), so only the leader
     * judges them. */
    if (!api_require_leader(n, req))
        return;
    json_t *body = api_body_object(req, false);
    if (body == NULL)
        return;
    static const char *const fields[] = {"partitions", "replicas", NULL};
    json_t *jp = json_object_get(body, "partitions"), *jr = json_object_get(body, "replicas");
    const struct corral_state *st = corral_node_state(n);
    const struct corral_state_resource *old = find(n, name);
    char msg[200];
    msg[0] = '\0';
    if (!api_known_fields(req, body, fields))
        goto out;
    if (jp == NULL && old != NULL)
        jp = json_integer(old->partitions), json_object_set_new(body, "partitions", jp);
    if (!json_is_integer(jp) || json_integer_value(jp) < 1 ||
        json_integer_value(jp) > (json_int_t)CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX)
        snprintf(msg, sizeof(msg), "partitions must be an integer from 1 to 65536");
    else if (!json_is_integer(jr) || json_integer_value(jr) < 1 ||
             json_integer_value(jr) > (json_int_t)CORRAL_STATE_REPLICAS_MAX)
        snprintf(msg, sizeof(msg), "replicas must be an integer from 1 to 7");
    if (msg[0] != '\0') {
        api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
        goto out;
    }
    uint32_t h = hosts(st);
    if ((uint32_t)json_integer_value(jr) > h && !force) {
        snprintf(msg, sizeof(msg),
                 "replicas (%d) exceeds the workers that could hold a copy (%u); add workers "
                 "first, or ask with ?force=1",
                 (int)json_integer_value(jr), h);
        api_error_ex(req, API_ERR_CONFLICT, msg, NULL, json_pack("{s:i}", "workers", (int)h));
        goto out;
    }
    struct corral_state_cmd c = {.type = CORRAL_STATE_RESOURCE_PUT,
                                 .name = name,
                                 .name_len = (uint16_t)strlen(name),
                                 .partitions = (uint32_t)json_integer_value(jp),
                                 .replicas = (uint8_t)json_integer_value(jr)};
    api_propose_then(n, req, name, &c, answer_summary);
out:
    json_decref(body);
}

static void delete_resource(struct corral_node *n, struct corral_http_request *req,
                            const struct corral_state_resource *r)
{
    struct corral_state_cmd c = {.type = CORRAL_STATE_RESOURCE_DELETE, .id = r->id};
    api_propose_then(n, req, r->name, &c, NULL);
}

/* ---- lookup ---- */

/* FNV-1a, 64 bits (docs/api.md): what every client computes. */
static uint64_t fnv1a64(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void lookup(struct corral_node *n, struct corral_http_request *req,
                   const struct corral_state_resource *r)
{
    const char *key = corral_http_arg(req, "key");
    if (key == NULL) {
        api_error_ex(req, API_ERR_BAD_REQUEST, "key is required", NULL, NULL);
        return;
    }
    const struct corral_state *st = corral_node_state(n);
    uint32_t p = (uint32_t)(fnv1a64(key, strlen(key)) % r->partitions);
    const struct corral_state_partition *pt = &r->parts[p];
    const struct corral_state_member *m =
        pt->primary != CORRAL_STATE_NONE ? corral_state_member_by_id(st, pt->primary) : NULL;
    json_t *primary =
        m != NULL ? json_pack("{s:s, s:s}", "name", m->name, "addr", m->addr) : json_null();
    api_json(req, 200,
             json_pack("{s:s, s:I, s:I, s:I, s:o, s:o}", "resource", r->name, "index",
                       (json_int_t)corral_state_applied(st), "partition", (json_int_t)p, "epoch",
                       (json_int_t)pt->epoch, "primary", primary, "replicas",
                       replicas_json(st, pt, true)));
}

/* ---- plan: the controller's target against the map ---- */

static bool in_row(const uint32_t *row, uint32_t r, uint32_t id)
{
    for (uint32_t i = 0; i < r; i++)
        if (row[i] == id)
            return true;
    return false;
}

static json_t *names(json_t *arr, const struct corral_state *st, uint32_t id)
{
    json_array_append_new(arr, json_string(member_name(st, id)));
    return arr;
}

static void plan(struct corral_node *n, struct corral_http_request *req,
                 const struct corral_state_resource *r)
{
    if (!api_require_leader(n, req))
        return;
    const struct corral_state *st = corral_node_state(n);
    const struct corral_controller *ctl = corral_coord_controller(corral_node_coord(n));
    const struct corral_placement_result *t =
        ctl != NULL ? corral_controller_target(ctl, r->id) : NULL;
    if (t == NULL || t->map.partitions != r->partitions) {
        api_error_ex(req, API_ERR_NO_LEADER,
                     "the controller has not computed this resource's target yet; retry shortly",
                     NULL, NULL);
        return;
    }
    uint32_t R = t->map.replicas, total = 0;
    json_t *moves = json_array();
    for (uint32_t p = 0; moves != NULL && p < r->partitions; p++) {
        const uint32_t *row = &t->map.slots[(size_t)p * R];
        const struct corral_state_partition *pt = &r->parts[p];
        json_t *add = json_array(), *drop = json_array();
        uint32_t have[CORRAL_STATE_ROW_MAX];
        for (uint8_t j = 0; j < pt->n_replicas; j++) {
            have[j] = pt->replicas[j].member;
            if (!in_row(row, R, have[j]))
                names(drop, st, have[j]);
        }
        for (uint32_t i = 0; i < R; i++)
            if (row[i] != CORRAL_PLACEMENT_NONE && !in_row(have, pt->n_replicas, row[i]))
                names(add, st, row[i]);
        bool primary_moves = row[0] != CORRAL_PLACEMENT_NONE && row[0] != pt->primary;
        if (json_array_size(add) == 0 && json_array_size(drop) == 0 && !primary_moves) {
            json_decref(add);
            json_decref(drop);
            continue;
        }
        total++;
        json_t *from = pt->primary != CORRAL_STATE_NONE ? json_string(member_name(st, pt->primary))
                                                        : json_null();
        json_t *to =
            row[0] != CORRAL_PLACEMENT_NONE ? json_string(member_name(st, row[0])) : json_null();
        if (total <= 1000)
            json_array_append_new(moves, json_pack("{s:I, s:o, s:o, s:o, s:o}", "partition",
                                                   (json_int_t)p, "add", add, "drop", drop,
                                                   "primary_from", from, "primary_to", to));
        else
            json_decref(add), json_decref(drop), json_decref(from), json_decref(to);
    }
    api_json(req, 200,
             json_pack("{s:s, s:I, s:o, s:I, s:I, s:I}", "resource", r->name, "index",
                       (json_int_t)corral_state_applied(st), "moves", moves, "moves_total",
                       (json_int_t)total, "lower_bound", (json_int_t)t->stats.moves_lower_bound,
                       "primary_lower_bound", (json_int_t)t->stats.primary_lower_bound));
}

void api_resources(struct corral_node *n, struct corral_http_request *req, const char *path)
{
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    const char *rest;
    if (!api_list_or_name(n, req, path, list, "resource", name, &rest))
        return;
    bool known = rest[0] == '\0' || strcmp(rest, "/lookup") == 0 || strcmp(rest, "/plan") == 0;
    if (!known) {
        api_error(req, API_ERR_NO_ROUTE);
        return;
    }
    if (rest[0] == '\0' && api_method_is(req, "PUT")) {
        put(n, req, name);
        return;
    }
    bool get = api_method_is(req, "GET");
    bool del = rest[0] == '\0' && strcmp(corral_http_method(req), "DELETE") == 0;
    if (!get && !del) {
        api_error(req, API_ERR_METHOD);
        return;
    }
    static const char *const none[] = {NULL};
    if (del && !api_args_only(req, none))
        return;
    /* Leader only: a follower redirects before it looks the resource up in
     * its own, maybe stale, state. */
    if ((del || strcmp(rest, "/plan") == 0) && !api_require_leader(n, req))
        return;
    const struct corral_state_resource *r = find(n, name);
    if (r == NULL) {
        api_error(req, API_ERR_NO_RESOURCE);
        return;
    }
    if (del)
        delete_resource(n, req, r);
    else if (rest[0] == '\0')
        show(n, req, r);
    else if (strcmp(rest, "/lookup") == 0)
        lookup(n, req, r);
    else
        plan(n, req, r);
}
