/* `corral agent`'s JSON (agent_impl.h): desired sets from the watch and
 * heartbeat answers into agent entries, resource and member names by id
 * (hooks and heartbeats name resources; the agent knows ids), and the
 * heartbeat body. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/agent_impl.h"
#include "corral.h"

const char *agent_event_name(uint8_t kind)
{
    switch (kind) {
    case CORRAL_AGENT_ACQUIRE:
        return "acquire";
    case CORRAL_AGENT_RELEASE:
        return "release";
    case CORRAL_AGENT_REPLICATE:
        return "replicate";
    case CORRAL_AGENT_DROP:
        return "drop";
    default:
        return "?";
    }
}

const char *agent_reason_name(uint8_t reason)
{
    switch (reason) {
    case CORRAL_AGENT_HANDOFF:
        return "handoff";
    case CORRAL_AGENT_LEASE_LOST:
        return "lease_lost";
    case CORRAL_AGENT_DROPPED:
        return "dropped";
    case CORRAL_AGENT_SHUTDOWN:
        return "shutdown";
    default:
        return "";
    }
}

void agent_err_text(int err, uint64_t timeout_ms, char *buf, size_t len)
{
    if (err == 0)
        snprintf(buf, len, "ok");
    else if (err == CORRAL_ETIMEDOUT)
        snprintf(buf, len, "timed out after %llu ms, killed", (unsigned long long)timeout_ms);
    else if (err > AGENT_ERR_SIGNAL && err < AGENT_ERR_SIGNAL + 0x100)
        snprintf(buf, len, "killed by signal %d", err - AGENT_ERR_SIGNAL);
    else if (err > AGENT_ERR_EXIT && err < AGENT_ERR_EXIT + 0x100)
        snprintf(buf, len, "exit %d", err - AGENT_ERR_EXIT);
    else if (err == CORRAL_EIO)
        snprintf(buf, len, "could not be started");
    else
        snprintf(buf, len, "%s", corral_strerror(err));
}

/* ---- Names by id ---- */

static uint32_t names_lower(const struct agent_names *m, uint32_t id)
{
    uint32_t lo = 0, hi = m->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct agent_name *agent_names_find(const struct agent_names *m, uint32_t id)
{
    uint32_t i = names_lower(m, id);
    return i < m->n && m->v[i].id == id ? &m->v[i] : NULL;
}

static int names_put(struct agent_names *m, uint32_t id, const char *name, const char *addr)
{
    uint32_t i = names_lower(m, id);
    if (i == m->n || m->v[i].id != id) {
        if (m->n == AGENT_NAMES_MAX) {
            m->n = 0; /* see AGENT_NAMES_MAX */
            i = 0;
        }
        if (m->n == m->cap) {
            uint32_t cap = m->cap != 0 ? 2 * m->cap : 16;
            struct agent_name *v = realloc(m->v, (size_t)cap * sizeof(*v));
            if (v == NULL)
                return -1;
            m->v = v;
            m->cap = cap;
        }
        memmove(&m->v[i + 1], &m->v[i], (size_t)(m->n - i) * sizeof(*m->v));
        m->n++;
        m->v[i].id = id;
    }
    snprintf(m->v[i].name, sizeof(m->v[i].name), "%s", name);
    snprintf(m->v[i].addr, sizeof(m->v[i].addr), "%s", addr != NULL ? addr : "");
    return 0;
}

void agent_names_free(struct agent_names *m)
{
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* ---- Views ---- */

static bool name_ok(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0 || len > CORRAL_STATE_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool addr_ok(const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len > CORRAL_STATE_ADDR_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

/* An integer field within [min, max]. */
static bool int_field(const json_t *o, const char *key, json_int_t min, json_int_t max,
                      json_int_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* One entry; why not into err. */
static bool parse_entry(const json_t *j, struct agent_names *resources, struct agent_names *members,
                        struct corral_agent_entry *e, char *err, size_t errlen)
{
    const char *res = json_string_value(json_object_get(j, "resource"));
    const char *role = json_string_value(json_object_get(j, "role"));
    const char *state = json_string_value(json_object_get(j, "state"));
    json_int_t rid, part, epoch;
    if (!json_is_object(j) || !name_ok(res) || !int_field(j, "resource_id", 1, UINT32_MAX, &rid) ||
        !int_field(j, "partition", 0, CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX - 1, &part) ||
        !int_field(j, "epoch", 0, INT64_MAX, &epoch) || role == NULL || state == NULL) {
        snprintf(err, errlen, "an entry lacks resource, resource_id, partition or epoch");
        return false;
    }
    *e = (struct corral_agent_entry){.resource = (uint32_t)rid,
                                     .partition = (uint32_t)part,
                                     .epoch = (uint64_t)epoch,
                                     .copy_from = CORRAL_AGENT_NONE};
    if (strcmp(role, "primary") == 0)
        e->role = CORRAL_AGENT_PRIMARY;
    else if (strcmp(role, "replica") == 0)
        e->role = CORRAL_AGENT_REPLICA;
    if (strcmp(state, "copying") == 0)
        e->state = CORRAL_AGENT_COPYING;
    else if (strcmp(state, "in_sync") == 0)
        e->state = CORRAL_AGENT_IN_SYNC;
    else if (strcmp(state, "releasing") == 0)
        e->state = CORRAL_AGENT_RELEASING;
    if (e->role == 0 || e->state == 0) {
        snprintf(err, errlen, "%s/%u: unknown role '%.32s' or state '%.32s'", res, e->partition,
                 role, state);
        return false;
    }
    const json_t *from = json_object_get(j, "copy_from");
    if (json_is_object(from)) {
        const char *name = json_string_value(json_object_get(from, "name"));
        const char *addr = json_string_value(json_object_get(from, "addr"));
        json_int_t id;
        if (!int_field(from, "id", 1, UINT32_MAX, &id) || !name_ok(name) || !addr_ok(addr)) {
            snprintf(err, errlen, "%s/%u: a bad copy_from", res, e->partition);
            return false;
        }
        e->copy_from = (uint32_t)id;
        if (names_put(members, e->copy_from, name, addr) != 0) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
    } else if (from != NULL && !json_is_null(from)) {
        snprintf(err, errlen, "%s/%u: copy_from is neither an object nor null", res, e->partition);
        return false;
    }
    if (names_put(resources, e->resource, res, NULL) != 0) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    return true;
}

int agent_view_parse(const json_t *partitions, struct agent_names *resources,
                     struct agent_names *members, struct agent_view *v, char *err, size_t errlen)
{
    v->e = NULL;
    v->n = 0;
    if (!json_is_array(partitions)) {
        snprintf(err, errlen, "no partitions array");
        return -1;
    }
    size_t n = json_array_size(partitions);
    if (n > CORRAL_AGENT_PARTITIONS_MAX) {
        snprintf(err, errlen, "%zu entries, over the %u an agent takes", n,
                 CORRAL_AGENT_PARTITIONS_MAX);
        return -1;
    }
    struct corral_agent_entry *e = malloc((n > 0 ? n : 1) * sizeof(*e));
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!parse_entry(json_array_get(partitions, i), resources, members, &e[i], err, errlen)) {
            free(e);
            return -1;
        }
    }
    v->e = e;
    v->n = (uint32_t)n;
    return 0;
}

/* ---- Heartbeat bodies ---- */

static json_t *progress_entry(const struct corral_agent_report *r, const char *resource,
                              uint64_t hook_timeout_ms)
{
    const char *state = r->state == CORRAL_AGENT_REPORT_IN_SYNC    ? "in_sync"
                        : r->state == CORRAL_AGENT_REPORT_RELEASED ? "released"
                                                                   : "failed";
    json_t *p = json_pack("{s:s,s:I,s:I,s:s}", "resource", resource, "partition",
                          (json_int_t)r->partition, "epoch", (json_int_t)r->epoch, "state", state);
    if (p != NULL && r->state == CORRAL_AGENT_REPORT_FAILED) {
        char why[96], text[128];
        agent_err_text(r->error, hook_timeout_ms, why, sizeof(why));
        snprintf(text, sizeof(text), "%s: %s", agent_event_name(r->hook), why);
        if (json_object_set_new(p, "error", json_string(text)) != 0) {
            json_decref(p);
            return NULL;
        }
    }
    return p;
}

char *agent_heartbeat_body(uint64_t index, const struct corral_agent_report *r, uint32_t n,
                           const struct agent_names *resources, uint64_t hook_timeout_ms,
                           uint32_t *unnamed)
{
    *unnamed = 0;
    json_t *progress = json_array();
    json_t *body =
        json_pack("{s:I,s:{},s:o}", "index", (json_int_t)index, "load", "progress", progress);
    if (body == NULL)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        const struct agent_name *name = agent_names_find(resources, r[i].resource);
        if (name == NULL) {
            (*unnamed)++;
            continue;
        }
        if (json_array_append_new(progress, progress_entry(&r[i], name->name, hook_timeout_ms)) !=
            0) {
            json_decref(body);
            return NULL;
        }
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}
