/* What the members, resources and events routes share: blocking queries,
 * arguments, JSON builders and the summary counts. See own.h. */
#include "api/own.h"

#include <stdlib.h>
#include <string.h>

#include "api/reply.h"
#include "corral.h"
#include "core/liveness.h"
#include "util/parse.h"

struct api_ctx *api_ctx(struct corral_node *n)
{
    return corral_node_hooks_ud(n);
}

/* ---- blocking queries ---- */

struct api_wait *api_wait_park(struct corral_node *n, struct corral_http_request *req,
                               uint64_t wait_ms, api_wait_try try_answer)
{
    struct api_ctx *x = api_ctx(n);
    if (x->n_waits >= API_WAITS_MAX) {
        api_error(req, API_ERR_BUSY);
        return NULL;
    }
    struct api_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        api_error(req, API_ERR_OOM);
        return NULL;
    }
    w->req = req;
    w->deadline_ms = corral_node_clock_ms(n) + wait_ms;
    w->try_answer = try_answer;
    w->next = x->waits;
    x->waits = w;
    x->n_waits++;
    return w;
}

/* Offers every wait its answer; those answered (or timed out) go. */
static void waits_run(struct corral_node *n, bool expire_only, uint64_t now_ms, bool stopping)
{
    struct api_ctx *x = api_ctx(n);
    struct api_wait **pp = &x->waits;
    while (*pp != NULL) {
        struct api_wait *w = *pp;
        bool done;
        if (stopping) {
            api_error(w->req, API_ERR_SHUTTING_DOWN);
            done = true;
        } else {
            bool timed_out = now_ms >= w->deadline_ms;
            done = (expire_only && !timed_out) ? false : w->try_answer(n, w, timed_out);
        }
        if (done) {
            *pp = w->next;
            x->n_waits--;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

void api_own_batch_done(struct corral_node *n)
{
    if (api_ctx(n)->n_waits > 0)
        waits_run(n, false, corral_node_clock_ms(n), false);
}

void api_own_sweep(struct corral_node *n, uint64_t now_ms)
{
    (void)now_ms; /* the node's clock: the deadlines were set on it */
    if (api_ctx(n)->n_waits > 0)
        waits_run(n, true, corral_node_clock_ms(n), false);
}

void api_own_stopping(struct corral_node *n)
{
    waits_run(n, false, 0, true);
}

/* ---- arguments ---- */

bool api_wait_arg(struct corral_http_request *req, uint64_t *ms)
{
    const char *v = corral_http_arg(req, "wait");
    *ms = API_WAIT_DEFAULT_MS;
    if (v == NULL)
        return true;
    size_t len = strlen(v), digits = 0;
    while (digits < len && v[digits] >= '0' && v[digits] <= '9')
        digits++;
    uint64_t num = 0, unit = 1000;
    char buf[24];
    bool ok = digits > 0 && digits < sizeof(buf);
    if (ok) {
        memcpy(buf, v, digits);
        buf[digits] = '\0';
        ok = corral_parse_u64(buf, &num);
    }
    const char *suffix = v + digits;
    if (strcmp(suffix, "ms") == 0)
        unit = 1;
    else if (strcmp(suffix, "m") == 0)
        unit = 60000;
    else if (strcmp(suffix, "s") != 0 && suffix[0] != '\0')
        ok = false;
    if (!ok || num > API_WAIT_MAX_MS || num * unit > API_WAIT_MAX_MS) {
        api_error(req, API_ERR_BAD_WAIT);
        return false;
    }
    *ms = num * unit;
    return true;
}

bool api_index_arg(struct corral_http_request *req, uint64_t *index)
{
    const char *v = corral_http_arg(req, "index");
    *index = 0;
    if (v == NULL || corral_parse_u64(v, index))
        return true;
    api_error(req, API_ERR_BAD_INDEX);
    return false;
}

bool api_path_name(struct corral_http_request *req, const char *seg, char *name, const char **rest)
{
    const char *end = strchr(seg, '/');
    size_t len = end != NULL ? (size_t)(end - seg) : strlen(seg);
    if (!corral_state_name_valid(seg, (uint32_t)len) || len > CORRAL_STATE_NAME_BYTES_MAX) {
        api_error(req, API_ERR_BAD_NAME);
        return false;
    }
    memcpy(name, seg, len);
    name[len] = '\0';
    *rest = seg + len;
    return true;
}

json_t *api_body_object(struct corral_http_request *req, bool empty_ok)
{
    size_t len = 0;
    const uint8_t *body = corral_http_body(req, &len);
    if (corral_http_body_too_large(req)) {
        api_error(req, API_ERR_TOO_LARGE);
        return NULL;
    }
    if (len == 0 && empty_ok)
        return json_object();
    if (len == 0) {
        api_error_ex(req, API_ERR_BAD_REQUEST, "the body is empty: it must be a JSON object", NULL,
                     NULL);
        return NULL;
    }
    json_error_t err;
    json_t *obj = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &err);
    if (obj == NULL || !json_is_object(obj)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "the body must be a JSON object%s%s", obj == NULL ? ": " : "",
                 obj == NULL ? err.text : "");
        json_decref(obj);
        api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
        return NULL;
    }
    return obj;
}

bool api_known_fields(struct corral_http_request *req, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(allowed[i], key) == 0;
        if (!known) {
            char msg[160];
            snprintf(msg, sizeof(msg), "unknown field \"%.64s\" in the body", key);
            api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
            return false;
        }
    }
    return true;
}

/* ---- answers ---- */

void api_state_refusal(struct corral_http_request *req, const struct corral_state_result *res)
{
    const char *d = res->detail != NULL && res->detail[0] != '\0' ? res->detail : NULL;
    switch (res->status) {
    case CORRAL_STATE_NOT_FOUND:
        api_error_ex(req, API_ERR_CONFLICT, d, NULL, NULL); /* gone meanwhile */
        break;
    case CORRAL_STATE_CONFLICT:
        api_error_ex(req, API_ERR_CONFLICT, d, NULL, NULL);
        break;
    case CORRAL_STATE_FULL:
        api_error_ex(req, API_ERR_FULL, d, NULL, NULL);
        break;
    default:
        api_error(req, API_ERR_APPLY);
        break;
    }
}

bool api_require_leader(struct corral_node *n, struct corral_http_request *req)
{
    struct corral_raft_status s;
    corral_node_raft_status(n, &s);
    if (s.role == CORRAL_RAFT_LEADER)
        return true;
    api_not_leader(n, req);
    return false;
}

void api_propose_error(struct corral_node *n, struct corral_http_request *req, int rv)
{
    if (rv == CORRAL_ENOTLEADER)
        api_not_leader(n, req);
    else if (rv == CORRAL_EINVAL)
        api_error_ex(req, API_ERR_BAD_REQUEST, "the command does not encode", NULL, NULL);
    else
        api_node_error(req, rv);
}

bool api_counts_build(const struct corral_state *st, struct api_counts *c)
{
    c->n = corral_state_member_count(st);
    c->primaries = calloc(c->n + 1u, sizeof(uint32_t));
    c->replicas = calloc(c->n + 1u, sizeof(uint32_t));
    if (c->primaries == NULL || c->replicas == NULL) {
        api_counts_free(c);
        return false;
    }
    for (uint32_t i = 0; i < corral_state_resource_count(st); i++) {
        const struct corral_state_resource *r = corral_state_resource_at(st, i);
        for (uint32_t p = 0; p < r->partitions; p++) {
            const struct corral_state_partition *pt = &r->parts[p];
            for (uint8_t j = 0; j < pt->n_replicas; j++) {
                /* members are in id order: find the position by bisection */
                uint32_t id = pt->replicas[j].member, lo = 0, hi = c->n;
                while (lo < hi) {
                    uint32_t mid = lo + (hi - lo) / 2;
                    if (corral_state_member_at(st, mid)->id < id)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (lo == c->n)
                    continue;
                c->replicas[lo]++;
                c->primaries[lo] += pt->primary == id;
            }
        }
    }
    return true;
}

void api_counts_free(struct api_counts *c)
{
    free(c->primaries);
    free(c->replicas);
    c->primaries = c->replicas = NULL;
}

static const char *role_name(uint8_t role)
{
    return role == CORRAL_MEMBER_COORDINATOR ? "coordinator" : "worker";
}

const char *api_status_name(uint8_t status)
{
    static const char *const names[] = {"?", "active", "draining", "dead", "left"};
    return status <= CORRAL_MEMBER_LEFT ? names[status] : "?";
}

json_t *api_member_json(struct corral_node *n, const struct corral_state_member *m,
                        const struct api_counts *c, uint32_t i)
{
    json_t *meta =
        m->meta_len > 0 ? json_loadb((const char *)m->meta, m->meta_len, 0, NULL) : json_object();
    if (meta == NULL)
        meta = json_object();
    json_t *age = json_null(), *left = json_null();
    const struct corral_liveness *lv = corral_coord_liveness(corral_node_coord(n));
    uint64_t now = corral_node_clock_ms(n);
    if (lv != NULL) {
        uint64_t a = corral_liveness_age_ms(lv, m->id, now);
        if (a != UINT64_MAX) {
            json_decref(age);
            age = json_integer((json_int_t)a);
            uint64_t end = corral_liveness_lease_end(lv, m->id);
            json_decref(left);
            /* The member's own lease ends earlier than this leader's bound
             * (lease_end is the certain end): an upper bound, in ms. */
            left = json_integer(end > now ? (json_int_t)(end - now) : 0);
        }
    }
    json_t *load = NULL;
    if (lv != NULL)
        load = json_object_get(api_ctx(n)->loads, m->name);
    return json_pack(
        "{s:s, s:I, s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:i, s:i, s:o}", "name", m->name, "id",
        (json_int_t)m->id, "role", role_name(m->role), "status", api_status_name(m->status), "addr",
        m->addr, "zone", m->zone, "weight", (int)m->weight, "meta", meta, "heartbeat_age_ms", age,
        "lease_ms_left", left, "primaries", c != NULL ? (int)c->primaries[i] : 0, "replicas",
        c != NULL ? (int)c->replicas[i] : 0, "load",
        load != NULL ? json_incref(load) : json_object()); /* o: steals one reference */
}

void api_own_summary(const struct corral_state *st, struct api_own_summary *s)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < corral_state_member_count(st); i++) {
        uint8_t status = corral_state_member_at(st, i)->status;
        if (status <= CORRAL_MEMBER_LEFT)
            s->members_by_status[status]++;
    }
    s->resources = corral_state_resource_count(st);
    for (uint32_t i = 0; i < s->resources; i++)
        api_resource_counts(corral_state_resource_at(st, i), s);
}

void api_resource_counts(const struct corral_state_resource *r, struct api_own_summary *s)
{
    s->partitions += r->partitions;
    for (uint32_t p = 0; p < r->partitions; p++) {
        const struct corral_state_partition *pt = &r->parts[p];
        uint32_t in_sync = 0;
        bool copying = false;
        for (uint8_t j = 0; j < pt->n_replicas; j++) {
            in_sync += pt->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
            copying |= pt->replicas[j].state == CORRAL_REPLICA_COPYING;
        }
        s->without_primary += pt->primary == CORRAL_STATE_NONE;
        s->under_replicated += in_sync < r->replicas;
        s->moving += copying || pt->releasing;
    }
}

/* ---- proposals answered once applied ---- */

struct prop {
    struct corral_node *node;
    struct corral_http_request *req;
    api_answer_fn answer;
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
};

static void on_applied(void *ctx, int err, const struct corral_state_result *res)
{
    struct prop *p = ctx;
    if (err != 0)
        api_node_error(p->req, err);
    else if (res->status != CORRAL_STATE_OK)
        api_state_refusal(p->req, res);
    else if (p->answer == NULL)
        api_json(p->req, 200, json_pack("{s:s, s:b}", "name", p->name, "deleted", 1));
    else
        p->answer(p->node, p->req, p->name);
    free(p);
}

void api_propose_then(struct corral_node *n, struct corral_http_request *req, const char *name,
                      const struct corral_state_cmd *c, api_answer_fn answer)
{
    struct prop *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        api_error(req, API_ERR_OOM);
        return;
    }
    *p = (struct prop){.node = n, .req = req, .answer = answer};
    snprintf(p->name, sizeof(p->name), "%s", name);
    int rv = corral_node_propose(n, c, on_applied, p);
    if (rv != 0) {
        free(p);
        api_propose_error(n, req, rv);
    }
}

bool api_method_is(struct corral_http_request *req, const char *m)
{
    const char *have = corral_http_method(req);
    return strcmp(have, m) == 0 || (strcmp(m, "GET") == 0 && strcmp(have, "HEAD") == 0);
}

bool api_list_or_name(struct corral_node *n, struct corral_http_request *req, const char *path,
                      void (*list)(struct corral_node *, struct corral_http_request *),
                      const char *what, char *name, const char **rest)
{
    if (path[0] == '\0' || strcmp(path, "/") == 0) {
        if (api_method_is(req, "GET")) {
            list(n, req);
        } else {
            char msg[80];
            snprintf(msg, sizeof(msg), "the %s list is GET only", what);
            api_error_ex(req, API_ERR_METHOD, msg, NULL, NULL);
        }
        return false;
    }
    /* Names hold no '/': an escaped one is a bad name, not a separator
     * (w1%2Fdrain must not drain w1). */
    if (corral_http_path_encoded_slash(req)) {
        api_error(req, API_ERR_BAD_NAME);
        return false;
    }
    return api_path_name(req, path + 1, name, rest);
}
