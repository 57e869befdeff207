/* /v1/members: register, list, heartbeat, the assignment watch, stoppable,
 * drain, activate and remove. See docs/api.md. */
#include <stdlib.h>
#include <string.h>

#include "api/own.h"
#include "api/reply.h"
#include "corral.h"

/* Progress entries one heartbeat may carry (agent.h reports): more than
 * an agent ever has pending at once for a member's partitions. */
#define REPORTS_MAX 4096u

static const struct corral_state_member *find(struct corral_node *n, const char *name)
{
    return corral_state_member_by_name(corral_node_state(n), name, (uint32_t)strlen(name));
}

/* The member's position in id order (for the counts). */
static uint32_t position(const struct corral_state *st, const struct corral_state_member *m)
{
    for (uint32_t i = 0; i < corral_state_member_count(st); i++)
        if (corral_state_member_at(st, i) == m)
            return i;
    return 0;
}

static void answer_member(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    const struct corral_state *st = corral_node_state(n);
    const struct corral_state_member *m = find(n, name);
    if (m == NULL) {
        api_error(req, API_ERR_NO_MEMBER);
        return;
    }
    struct api_counts c;
    if (!api_counts_build(st, &c)) {
        api_error(req, API_ERR_OOM);
        return;
    }
    api_json(req, 200, api_member_json(n, m, &c, position(st, m)));
    api_counts_free(&c);
}

static void list(struct corral_node *n, struct corral_http_request *req)
{
    const struct corral_state *st = corral_node_state(n);
    struct api_counts c;
    if (!api_counts_build(st, &c)) {
        api_error(req, API_ERR_OOM);
        return;
    }
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < corral_state_member_count(st); i++)
        json_array_append_new(arr, api_member_json(n, corral_state_member_at(st, i), &c, i));
    api_counts_free(&c);
    api_json(req, 200,
             json_pack("{s:I, s:o}", "index", (json_int_t)corral_state_assign_index(st), "members",
                       arr));
}

/* ---- writes that answer with the member (or a deletion) once applied ---- */

static void propose(struct corral_node *n, struct corral_http_request *req, const char *name,
                    const struct corral_state_cmd *c, bool deleted)
{
    api_propose_then(n, req, name, c, deleted ? NULL : answer_member);
}

static bool bad_field(struct corral_http_request *req, const char *msg)
{
    api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
    return false;
}

/* The PUT body into c; false when answered 400. meta_buf holds the
 * serialized meta (freed by the caller). */
static bool parse_put(struct corral_http_request *req, json_t *body, struct corral_state_cmd *c,
                      char **meta_buf)
{
    static const char *const fields[] = {"role", "addr", "zone", "weight", "meta", NULL};
    if (!api_known_fields(req, body, fields))
        return false;
    json_t *role = json_object_get(body, "role"), *addr = json_object_get(body, "addr");
    json_t *zone = json_object_get(body, "zone"), *weight = json_object_get(body, "weight");
    json_t *meta = json_object_get(body, "meta");
    c->role = CORRAL_MEMBER_WORKER;
    if (role != NULL) {
        const char *r = json_string_value(role);
        if (r != NULL && strcmp(r, "worker") == 0)
            c->role = CORRAL_MEMBER_WORKER;
        else if (r != NULL && strcmp(r, "coordinator") == 0)
            c->role = CORRAL_MEMBER_COORDINATOR;
        else
            return bad_field(req, "role must be \"worker\" or \"coordinator\"");
    }
    if (!json_is_string(addr) || json_string_length(addr) == 0 ||
        json_string_length(addr) > CORRAL_STATE_ADDR_BYTES_MAX)
        return bad_field(req, "addr must be a string of 1-260 printable bytes without spaces");
    c->addr = json_string_value(addr);
    c->addr_len = (uint16_t)json_string_length(addr);
    for (uint16_t i = 0; i < c->addr_len; i++)
        if (c->addr[i] <= ' ' || c->addr[i] > '~')
            return bad_field(req, "addr must be a string of 1-260 printable bytes without spaces");
    c->zone = "";
    if (zone != NULL) {
        if (!json_is_string(zone) || json_string_length(zone) > CORRAL_STATE_ZONE_BYTES_MAX ||
            (json_string_length(zone) > 0 &&
             !corral_state_name_valid(json_string_value(zone), (uint32_t)json_string_length(zone))))
            return bad_field(req, "zone must be 0-64 characters of [a-z0-9._-]");
        c->zone = json_string_value(zone);
    }
    c->zone_len = (uint16_t)strlen(c->zone);
    c->weight = 1;
    if (weight != NULL) {
        if (!json_is_integer(weight) || json_integer_value(weight) < 1 ||
            json_integer_value(weight) > CORRAL_STATE_WEIGHT_MAX)
            return bad_field(req, "weight must be an integer from 1 to 1000");
        c->weight = (uint16_t)json_integer_value(weight);
    }
    if (meta != NULL && !json_is_object(meta))
        return bad_field(req, "meta must be a JSON object");
    if (meta != NULL && json_object_size(meta) > 0) {
        *meta_buf = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
        if (*meta_buf == NULL || strlen(*meta_buf) > CORRAL_STATE_META_BYTES_MAX)
            return bad_field(req, "meta must serialize to at most 1024 bytes");
        c->meta = (const uint8_t *)*meta_buf;
        c->meta_len = (uint16_t)strlen(*meta_buf);
    }
    return true;
}

static void put(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    json_t *body = api_body_object(req, false);
    if (body == NULL)
        return;
    struct corral_state_cmd c = {
        .type = CORRAL_STATE_MEMBER_PUT, .name = name, .name_len = (uint16_t)strlen(name)};
    char *meta = NULL;
    if (parse_put(req, body, &c, &meta))
        propose(n, req, name, &c, false);
    free(meta);
    json_decref(body);
}

static void set_status(struct corral_node *n, struct corral_http_request *req, const char *name,
                       uint8_t status)
{
    /* A follower redirects before it looks the member up in its own,
     * maybe stale, state. */
    if (!api_require_leader(n, req))
        return;
    const struct corral_state_member *m = find(n, name);
    if (m == NULL) {
        api_error(req, API_ERR_NO_MEMBER);
        return;
    }
    struct corral_state_cmd c = {.type = CORRAL_STATE_MEMBER_STATUS, .id = m->id, .status = status};
    propose(n, req, name, &c, false);
}

static void drain(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    set_status(n, req, name, CORRAL_MEMBER_DRAINING);
}

static void activate(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    set_status(n, req, name, CORRAL_MEMBER_ACTIVE);
}

/* ---- DELETE: drain (or mark dead), wait until it holds nothing, delete ---- */

static bool try_delete(struct corral_node *n, struct api_wait *w, bool timed_out)
{
    const struct corral_state *st = corral_node_state(n);
    const struct corral_state_member *m = find(n, w->name);
    if (m == NULL) {
        api_json(w->req, 200, json_pack("{s:s, s:b}", "name", w->name, "deleted", 1));
        return true;
    }
    uint32_t held = corral_state_member_replicas(st, m->id);
    if (held == 0) {
        struct corral_state_cmd c = {.type = CORRAL_STATE_MEMBER_DELETE, .id = m->id};
        propose(n, w->req, w->name, &c, true);
        return true;
    }
    if (!timed_out)
        return false;
    char msg[160];
    snprintf(msg, sizeof(msg), "the member still holds %u replica(s); it stays %s: ask again", held,
             m->status == CORRAL_MEMBER_DEAD ? "dead" : "draining");
    api_error_ex(w->req, API_ERR_CONFLICT, msg, NULL, json_pack("{s:i}", "replicas", (int)held));
    return true;
}

/* The status change before the wait, then the wait. */
struct del {
    struct corral_node *node;
    struct corral_http_request *req;
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    uint64_t wait_ms;
};

static void park_delete(struct corral_node *n, struct corral_http_request *req, const char *name,
                        uint64_t wait_ms)
{
    struct api_wait *w = api_wait_park(n, req, wait_ms, try_delete);
    if (w == NULL)
        return;
    snprintf(w->name, sizeof(w->name), "%s", name);
}

static void on_status_applied(void *ctx, int err, const struct corral_state_result *res)
{
    struct del *d = ctx;
    if (err != 0)
        api_node_error(d->req, err);
    else if (res->status != CORRAL_STATE_OK)
        api_state_refusal(d->req, res);
    else
        park_delete(d->node, d->req, d->name, d->wait_ms);
    free(d);
}

static void remove_member(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    uint64_t wait_ms = 60000;
    bool force = false;
    if (corral_http_arg(req, "wait") != NULL && !api_wait_arg(req, &wait_ms))
        return;
    if (!api_flag_arg(req, "force", &force))
        return;
    if (!api_require_leader(n, req))
        return;
    const struct corral_state_member *m = find(n, name);
    if (m == NULL) {
        api_error(req, API_ERR_NO_MEMBER);
        return;
    }
    if (corral_state_member_replicas(corral_node_state(n), m->id) == 0) {
        struct corral_state_cmd c = {.type = CORRAL_STATE_MEMBER_DELETE, .id = m->id};
        propose(n, req, name, &c, true);
        return;
    }
    /* A dead member's replicas go anyway; otherwise drain, or with force
     * mark it dead (its primaries move once its lease is certainly over). */
    uint8_t want = force ? CORRAL_MEMBER_DEAD : CORRAL_MEMBER_DRAINING;
    if (m->status == want || m->status == CORRAL_MEMBER_DEAD) {
        park_delete(n, req, name, wait_ms);
        return;
    }
    struct del *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        api_error(req, API_ERR_OOM);
        return;
    }
    *d = (struct del){.node = n, .req = req, .wait_ms = wait_ms};
    snprintf(d->name, sizeof(d->name), "%s", name);
    struct corral_state_cmd c = {.type = CORRAL_STATE_MEMBER_STATUS, .id = m->id, .status = want};
    int rv = corral_node_propose(n, &c, on_status_applied, d);
    if (rv != 0) {
        free(d);
        api_propose_error(n, req, rv);
    }
}

/* ---- the view (watch and heartbeat answers) ---- */

static json_t *view_json(struct corral_node *n, uint32_t member)
{
    const struct corral_state *st = corral_node_state(n);
    uint32_t count = corral_coord_view(st, member, NULL, 0);
    struct corral_agent_entry *e = count > 0 ? calloc(count, sizeof(*e)) : NULL;
    if (count > 0 && e == NULL)
        return NULL;
    corral_coord_view(st, member, e, count);
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < count; i++) {
        const struct corral_state_resource *r = corral_state_resource_by_id(st, e[i].resource);
        const struct corral_state_member *from = e[i].copy_from != CORRAL_AGENT_NONE
                                                     ? corral_state_member_by_id(st, e[i].copy_from)
                                                     : NULL;
        static const char *const states[] = {"?", "copying", "in_sync", "releasing"};
        json_t *cf = from != NULL ? json_pack("{s:I, s:s, s:s}", "id", (json_int_t)from->id, "name",
                                              from->name, "addr", from->addr)
                                  : json_null();
        json_array_append_new(arr,
                              json_pack("{s:s, s:I, s:I, s:s, s:s, s:I, s:o}", "resource",
                                        r ? r->name : "", "resource_id", (json_int_t)e[i].resource,
                                        "partition", (json_int_t)e[i].partition, "role",
                                        e[i].role == CORRAL_AGENT_PRIMARY ? "primary" : "replica",
                                        "state", e[i].state <= 3 ? states[e[i].state] : "?",
                                        "epoch", (json_int_t)e[i].epoch, "copy_from", cf));
    }
    free(e);
    return arr;
}

static uint32_t lease_ms(struct corral_node *n)
{
    return corral_node_config(n)->coord.liveness.lease_ms;
}

static bool try_watch(struct corral_node *n, struct api_wait *w, bool timed_out)
{
    const struct corral_state *st = corral_node_state(n);
    const struct corral_state_member *m = find(n, w->name);
    if (m == NULL) {
        api_error(w->req, API_ERR_NO_MEMBER);
        return true;
    }
    if (!timed_out && w->index != 0 && m->view_index <= w->index)
        return false;
    json_t *arr = view_json(n, m->id);
    if (arr == NULL) {
        api_error(w->req, API_ERR_OOM);
        return true;
    }
    api_json(w->req, 200,
             json_pack("{s:I, s:i, s:o}", "index", (json_int_t)corral_state_applied(st), "lease_ms",
                       (int)lease_ms(n), "partitions", arr));
    return true;
}

static void watch(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    uint64_t index, wait_ms;
    if (!api_index_arg(req, &index) || !api_wait_arg(req, &wait_ms))
        return;
    struct api_wait probe = {.req = req, .index = index};
    snprintf(probe.name, sizeof(probe.name), "%s", name);
    if (try_watch(n, &probe, false))
        return;
    struct api_wait *w = api_wait_park(n, req, wait_ms, try_watch);
    if (w == NULL)
        return;
    w->index = index;
    snprintf(w->name, sizeof(w->name), "%s", name);
}

/* ---- heartbeat ---- */

static bool parse_progress(struct corral_http_request *req, json_t *item, struct corral_progress *p)
{
    static const char *const fields[] = {"resource", "partition", "epoch", "state", "error", NULL};
    if (!json_is_object(item) || !api_known_fields(req, item, fields))
        return json_is_object(item) ? false : bad_field(req, "progress entries must be objects");
    json_t *r = json_object_get(item, "resource"), *pa = json_object_get(item, "partition");
    json_t *ep = json_object_get(item, "epoch"), *s = json_object_get(item, "state");
    const char *sv = json_string_value(s);
    if (!json_is_string(r) || !json_is_integer(pa) || json_integer_value(pa) < 0 ||
        json_integer_value(pa) >= (json_int_t)CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX ||
        !json_is_integer(ep) || json_integer_value(ep) < 0 || sv == NULL)
        return bad_field(req, "a progress entry needs resource, partition, epoch and state");
    *p = (struct corral_progress){.resource = json_string_value(r),
                                  .resource_len = (uint32_t)json_string_length(r),
                                  .partition = (uint32_t)json_integer_value(pa),
                                  .epoch = (uint64_t)json_integer_value(ep)};
    if (strcmp(sv, "in_sync") == 0)
        p->state = CORRAL_PROGRESS_IN_SYNC;
    else if (strcmp(sv, "released") == 0)
        p->state = CORRAL_PROGRESS_RELEASED;
    else if (strcmp(sv, "failed") == 0)
        p->state = CORRAL_PROGRESS_FAILED;
    else
        return bad_field(req, "progress state must be in_sync, released or failed");
    return true;
}

static bool parse_beat(struct corral_http_request *req, json_t *body, uint64_t *index,
                       json_t **progress)
{
    static const char *const fields[] = {"index", "load", "progress", NULL};
    if (!api_known_fields(req, body, fields))
        return false;
    json_t *ix = json_object_get(body, "index"), *load = json_object_get(body, "load");
    *progress = json_object_get(body, "progress");
    *index = 0;
    if (ix != NULL && (!json_is_integer(ix) || json_integer_value(ix) < 0))
        return bad_field(req, "index must be an unsigned integer");
    if (ix != NULL)
        *index = (uint64_t)json_integer_value(ix);
    if (load != NULL && !json_is_object(load))
        return bad_field(req, "load must be a JSON object");
    if (*progress != NULL &&
        (!json_is_array(*progress) || json_array_size(*progress) > REPORTS_MAX))
        return bad_field(req, "progress must be an array of at most 4096 entries");
    return true;
}

static void heartbeat(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    json_t *body = api_body_object(req, true);
    if (body == NULL)
        return;
    uint64_t index;
    json_t *progress;
    struct corral_progress *reports = NULL;
    size_t n_reports = 0;
    if (!parse_beat(req, body, &index, &progress))
        goto out;
    n_reports = progress != NULL ? json_array_size(progress) : 0;
    reports = n_reports > 0 ? calloc(n_reports, sizeof(*reports)) : NULL;
    if (n_reports > 0 && reports == NULL) {
        api_error(req, API_ERR_OOM);
        goto out;
    }
    for (size_t i = 0; i < n_reports; i++)
        if (!parse_progress(req, json_array_get(progress, i), &reports[i]))
            goto out;
    const struct corral_state_member *m = find(n, name);
    struct corral_coord_answer ans;
    corral_node_heartbeat(n, m != NULL ? m->id : CORRAL_STATE_NONE, index, &ans);
    if (ans.beat == CORRAL_COORD_BEAT_NOT_LEADER) {
        api_not_leader(n, req);
        goto out;
    }
    if (ans.beat == CORRAL_COORD_BEAT_UNKNOWN) {
        api_error(req, API_ERR_NO_MEMBER);
        goto out;
    }
    if (ans.beat == CORRAL_COORD_BEAT_INACTIVE) {
        api_error_ex(req, API_ERR_CONFLICT, "the member is dead or left: register it again (PUT)",
                     NULL, json_pack("{s:s}", "status", api_status_name(m->status)));
        goto out;
    }
    if (ans.beat == CORRAL_COORD_BEAT_FULL) {
        api_error_ex(req, API_ERR_BUSY, "this leader tracks its maximum of members", NULL, NULL);
        goto out;
    }
    json_t *load = json_object_get(body, "load");
    /* The map takes a reference: the body's load is borrowed, a fresh
     * empty object is handed over. */
    json_object_set_new(api_ctx(n)->loads, name, load != NULL ? json_incref(load) : json_object());
    uint32_t id = m->id;
    for (size_t i = 0; i < n_reports; i++)
        corral_node_report(n, id, &reports[i]);
    /* As the simulator: the view after the reports' proposals (they apply
     * later; the answer's lease index was fixed before them). */
    json_t *assignment = NULL;
    if (ans.view == CORRAL_COORD_VIEW_UNCHANGED) {
        assignment = json_pack("{s:I, s:b}", "index", (json_int_t)ans.view_index, "unchanged", 1);
    } else if (ans.view == CORRAL_COORD_VIEW_FULL) {
        json_t *arr = view_json(n, id);
        assignment = arr != NULL ? json_pack("{s:I, s:o}", "index", (json_int_t)ans.view_index,
                                             "partitions", arr)
                                 : NULL;
    }
    json_t *ansj = json_pack("{s:i, s:i, s:I}", "lease_ms", (int)ans.lease_ms, "heartbeat_ms",
                             (int)corral_node_config(n)->coord.liveness.heartbeat_ms, "index",
                             (json_int_t)ans.lease_index);
    if (ansj != NULL && assignment != NULL)
        json_object_set_new(ansj, "assignment", assignment);
    else
        json_decref(assignment);
    api_json(req, 200, ansj);
out:
    free(reports);
    json_decref(body);
}

/* ---- stoppable ---- */

static void stoppable(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    const struct corral_state *st = corral_node_state(n);
    const struct corral_state_member *m = find(n, name);
    if (m == NULL) {
        api_error(req, API_ERR_NO_MEMBER);
        return;
    }
    json_t *reasons = json_array();
    uint32_t shown = 0, total = 0;
    for (uint32_t i = 0; reasons != NULL && i < corral_state_resource_count(st); i++) {
        const struct corral_state_resource *r = corral_state_resource_at(st, i);
        for (uint32_t p = 0; p < r->partitions; p++) {
            const struct corral_state_partition *pt = &r->parts[p];
            bool mine = false;
            uint32_t other_in_sync = 0;
            for (uint8_t j = 0; j < pt->n_replicas; j++) {
                if (pt->replicas[j].member == m->id)
                    mine = true;
                else if (pt->replicas[j].state == CORRAL_REPLICA_IN_SYNC)
                    other_in_sync++;
            }
            if (!mine)
                continue;
            const char *why = NULL;
            if (pt->primary == m->id)
                why = other_in_sync > 0 ? "its primary (a replica could take over after the lease)"
                                        : "its primary, with no other in-sync replica";
            else if (other_in_sync == 0 && pt->epoch > 0)
                why = "the only in-sync replica";
            if (why == NULL)
                continue;
            total++;
            if (shown++ < 100)
                json_array_append_new(reasons, json_sprintf("%s/%u: %s", r->name, p, why));
        }
    }
    api_json(req, 200,
             json_pack("{s:b, s:o, s:i}", "stoppable", total == 0, "reasons", reasons, "partitions",
                       (int)total));
}

void api_members(struct corral_node *n, struct corral_http_request *req, const char *path)
{
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    const char *rest;
    if (!api_list_or_name(n, req, path, list, "member", name, &rest))
        return;
    static const char *const none[] = {NULL}, *const del[] = {"wait", "force", NULL};
    static const struct {
        const char *sub, *method;
        void (*fn)(struct corral_node *, struct corral_http_request *, const char *);
        const char *const *args; /* a write's only arguments; NULL: a GET ignores others */
    } routes[] = {
        {"", "GET", answer_member, NULL},    {"", "PUT", put, none},
        {"", "DELETE", remove_member, del},  {"/heartbeat", "POST", heartbeat, none},
        {"/assignment", "GET", watch, NULL}, {"/stoppable", "GET", stoppable, NULL},
        {"/drain", "POST", drain, none},     {"/activate", "POST", activate, none},
    };
    bool path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(rest, routes[i].sub) != 0)
            continue;
        path_known = true;
        if (!api_method_is(req, routes[i].method))
            continue;
        if (routes[i].args == NULL || api_args_only(req, routes[i].args))
            routes[i].fn(n, req, name);
        return;
    }
    if (path_known)
        api_error(req, API_ERR_METHOD);
    else
        api_error(req, API_ERR_NO_ROUTE);
}
