/* Internals of the members, resources and events routes (members.c,
 * resources.c, events.c, own.c): the API's context (the node's hooks.ud),
 * blocking queries and the shared JSON builders. docs/api.md has the
 * contract. */
#ifndef CORRAL_API_OWN_H
#define CORRAL_API_OWN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "runtime/http.h"
#include "runtime/node.h"

/* Blocking queries held at once: each is an HTTP request suspended in
 * libmicrohttpd, bounded by its connection limit anyway. */
#define API_WAITS_MAX 16384u
/* A blocking query's wait: default and maximum, in ms. */
#define API_WAIT_DEFAULT_MS 30000u
#define API_WAIT_MAX_MS 300000u
/* Events kept in memory, and per answer. */
#define API_EVENTS_KEPT 10000u
#define API_EVENTS_PER_ANSWER 1000u

struct api_wait;
/* true when w can be answered now (it is then answered and freed). */
typedef bool (*api_wait_try)(struct corral_node *n, struct api_wait *w, bool timed_out);

struct api_wait {
    struct corral_http_request *req;
    uint64_t deadline_ms;
    api_wait_try try_answer;
    uint64_t index;                             /* the query's index */
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1]; /* the member or resource */
    bool flag;                                  /* per route */
    struct api_wait *next;
};

enum api_event_type {
    API_EV_MEMBER_JOIN = 1,
    API_EV_MEMBER_UPDATE,
    API_EV_MEMBER_STATUS,
    API_EV_MEMBER_DELETE,
    API_EV_RESOURCE_PUT,
    API_EV_RESOURCE_DELETE,
    API_EV_COPY,
    API_EV_IN_SYNC,
    API_EV_DROP,
    API_EV_GRANT,
    API_EV_RELEASE,
    API_EV_CLEAR,
};

struct api_event {
    uint64_t index;
    uint8_t type;
    uint8_t status; /* MEMBER_STATUS: the new status */
    uint32_t partition;
    uint64_t epoch;
    char member[CORRAL_STATE_NAME_BYTES_MAX + 1];
    char resource[CORRAL_STATE_NAME_BYTES_MAX + 1];
};

struct api_ctx {
    struct api_wait *waits; /* unordered */
    uint32_t n_waits;
    /* The event ring: the last API_EVENTS_KEPT events, oldest at head. */
    struct api_event *events;
    uint32_t ev_cap, ev_head, ev_count;
    uint64_t ev_last_index; /* index of the newest event, 0 when none */
    json_t *loads;          /* member name -> its last heartbeat's load (leader) */
    /* Joins in flight each took an id above this one's (coordinators.c):
     * two joins proposed in one batch must not both take next_coord_id. */
    uint32_t join_id_floor;
    /* A removal this leader proposed that had not applied yet at
     * remove_at_ms: a second one waits for it (one change at a time). */
    uint32_t remove_id;
    uint64_t remove_at_ms;
};

struct api_ctx *api_ctx(struct corral_node *n);

/* Parks req until try_answer says done or the deadline passes (then it is
 * called with timed_out). Answers 503 busy itself when too many wait.
 * Returns the wait to fill in (index, name, flag), or NULL when answered. */
struct api_wait *api_wait_park(struct corral_node *n, struct corral_http_request *req,
                               uint64_t wait_ms, api_wait_try try_answer);
/* The `wait` argument: "30s", "500ms", "2m" or plain seconds; false (and
 * answered 400) when malformed or over API_WAIT_MAX_MS. */
bool api_wait_arg(struct corral_http_request *req, uint64_t *ms);
/* The `index` argument, 0 when absent; false (answered 400) when bad. */
bool api_index_arg(struct corral_http_request *req, uint64_t *index);

/* Hooks for the node (own.c). */
void api_own_batch_done(struct corral_node *n);
void api_own_sweep(struct corral_node *n, uint64_t now_ms);
void api_own_stopping(struct corral_node *n);
void api_events_applied(struct corral_node *n, const struct corral_raft_entry *e,
                        const struct corral_state_result *res);

/* Per-member counts over every partition, indexed like
 * corral_state_member_at. Free with api_counts_free. */
struct api_counts {
    uint32_t n;
    uint32_t *primaries;
    uint32_t *replicas;
};
bool api_counts_build(const struct corral_state *st, struct api_counts *c);
void api_counts_free(struct api_counts *c);

/* The member object of docs/api.md; i is m's position (counts may be
 * NULL: zero counts). */
json_t *api_member_json(struct corral_node *n, const struct corral_state_member *m,
                        const struct api_counts *c, uint32_t i);
/* Answers a state machine refusal (NOT_FOUND, CONFLICT, FULL, BAD). */
void api_state_refusal(struct corral_http_request *req, const struct corral_state_result *res);
/* false, after answering 307 (or 503 no_leader), when this node is not
 * the Raft leader. */
bool api_require_leader(struct corral_node *n, struct corral_http_request *req);
/* "active", "draining", "dead", "left". */
const char *api_status_name(uint8_t status);
/* Answers a failed proposal (not leader: 307, or the node error). */
void api_propose_error(struct corral_node *n, struct corral_http_request *req, int rv);
/* The request's JSON body as an object, or NULL (answered 400). An empty
 * body gives an empty object when empty_ok. */
json_t *api_body_object(struct corral_http_request *req, bool empty_ok);
/* Checks that obj has no member outside allowed (NULL-terminated); else
 * answers 400 naming it. */
bool api_known_fields(struct corral_http_request *req, json_t *obj, const char *const *allowed);
/* The name in a path segment (up to '/' or the end): false and 400 when
 * not a valid name; *rest points after it. */
bool api_path_name(struct corral_http_request *req, const char *seg, char *name, const char **rest);

/* Proposes c and, once it applied, answers with answer(n, req, name)
 * (or the refusal or the node's error); answer NULL: the deletion
 * {"name","deleted":true}. */
typedef void (*api_answer_fn)(struct corral_node *n, struct corral_http_request *req,
                              const char *name);
void api_propose_then(struct corral_node *n, struct corral_http_request *req, const char *name,
                      const struct corral_state_cmd *c, api_answer_fn answer);
/* GET, with HEAD served as GET when m is "GET". */
bool api_method_is(struct corral_http_request *req, const char *m);
/* The start of /v1/members and /v1/resources: "" or "/" is the list (GET
 * only, else 405 with what); otherwise the name segment into name, *rest
 * after it. true when the caller goes on with name. */
bool api_list_or_name(struct corral_node *n, struct corral_http_request *req, const char *path,
                      void (*list)(struct corral_node *, struct corral_http_request *),
                      const char *what, char *name, const char **rest);

/* Routes (members.c, resources.c, events.c). path follows the prefix. */
void api_members(struct corral_node *n, struct corral_http_request *req, const char *path);
void api_resources(struct corral_node *n, struct corral_http_request *req, const char *path);
void api_events(struct corral_node *n, struct corral_http_request *req);
/* /v1/coordinators (coordinators.c); path follows the prefix. */
void api_coordinators(struct corral_node *n, struct corral_http_request *req, const char *path);

/* /v1/status and /metrics (own.c). */
struct api_own_summary {
    uint32_t members_by_status[5]; /* [enum corral_member_status] */
    uint32_t resources;
    uint64_t partitions;
    uint64_t without_primary;  /* no primary (never granted ones included) */
    uint64_t under_replicated; /* fewer in-sync replicas than R */
    uint64_t moving;           /* a copying replica or a releasing primary */
};
void api_own_summary(const struct corral_state *st, struct api_own_summary *s);
/* Adds one resource's partition counts (partitions, without_primary,
 * under_replicated, moving) to s. */
void api_resource_counts(const struct corral_state_resource *r, struct api_own_summary *s);

#endif
