/* /v1/coordinators: the coordinators' roster (core/state.h, COORD_PUT)
 * beside the Raft configuration (docs/api.md, Coordinators).
 *   GET                       the list, on any node
 *   POST                      a new coordinator joins (leader; `corral
 *                             server run --join` sends it)
 *   DELETE /{name}            a coordinator leaves (leader)
 * The leader carries a roster change into the Raft configuration on its
 * own (core/roster.h): a joiner becomes a learner, then a voter once
 * caught up, up to --voters; a removed one leaves the configuration. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/own.h"
#include "api/reply.h"
#include "api/routes.h"
#include "core/roster.h"
#include "corral.h"

static const char *role_of(const struct corral_raft_conf *c, uint64_t id, bool in_roster)
{
    if (corral_raft_conf_is_voter(c, id))
        return in_roster ? "voter" : "leaving";
    if (corral_raft_conf_is_learner(c, id))
        return in_roster ? "learner" : "leaving";
    return "joining";
}

static json_t *coord_json(const struct corral_raft_status *rs, uint64_t now_ms, uint64_t id,
                          const char *name, const char *cluster_addr, const char *http_addr,
                          bool in_roster)
{
    json_t *match = json_null(), *contact = json_null();
    for (uint32_t i = 0; i < rs->n_progress && rs->role == CORRAL_RAFT_LEADER; i++) {
        if (rs->progress[i].id != id)
            continue;
        match = json_integer((json_int_t)rs->progress[i].match);
        contact =
            json_integer(id == rs->id ? 0 : (json_int_t)(now_ms - rs->progress[i].last_contact_ms));
    }
    return json_pack("{s:s, s:I, s:s, s:s, s:s?, s:b, s:o, s:o}", "name", name, "id",
                     (json_int_t)id, "role", role_of(&rs->conf, id, in_roster), "cluster_addr",
                     cluster_addr, "http_addr", http_addr[0] ? http_addr : NULL, "leader",
                     rs->leader == id, "match_index", match, "last_contact_ms", contact);
}

/* Every coordinator: the roster's, then nodes of the configuration it no
 * longer (or not yet: a cluster from before the roster) holds. */
static json_t *coords_list(struct corral_node *n)
{
    const struct corral_state *st = corral_node_state(n);
    struct corral_raft_status rs;
    corral_node_raft_status(n, &rs);
    uint64_t now = corral_node_clock_ms(n);
    struct corral_node_peer_info peers[CORRAL_RAFT_NODES_MAX];
    uint32_t np = corral_node_peers(n, peers, CORRAL_RAFT_NODES_MAX);
    struct corral_node_info info;
    corral_node_info(n, &info);
    json_t *list = json_array();
    for (uint32_t i = 0; i < corral_state_coord_count(st); i++) {
        const struct corral_state_coord *k = corral_state_coord_at(st, i);
        /* Until the leader has written a coordinator's HTTP address into
         * the roster, the one its handshake announced (this node's own). */
        const char *http = k->http_addr;
        for (uint32_t j = 0; http[0] == '\0' && j < np; j++)
            if (peers[j].id == k->id && peers[j].http != NULL)
                http = peers[j].http;
        if (http[0] == '\0' && k->id == info.id)
            http = info.http_addr;
        json_array_append_new(list,
                              coord_json(&rs, now, k->id, k->name, k->cluster_addr, http, true));
    }
    for (uint32_t i = 0; i < rs.conf.n_voters + rs.conf.n_learners; i++) {
        uint64_t id =
            i < rs.conf.n_voters ? rs.conf.voters[i] : rs.conf.learners[i - rs.conf.n_voters];
        if (id <= UINT32_MAX && corral_state_coord_by_id(st, (uint32_t)id) != NULL)
            continue;
        const char *addr = "", *http = "";
        for (uint32_t j = 0; j < np; j++)
            if (peers[j].id == id) {
                addr = peers[j].cluster_addr;
                http = peers[j].http != NULL ? peers[j].http : "";
            }
        char name[32];
        snprintf(name, sizeof(name), "node%" PRIu64, id);
        json_array_append_new(list, coord_json(&rs, now, id, name, addr, http, false));
    }
    return list;
}

static json_t *coords_answer(struct corral_node *n)
{
    const struct corral_node_config *c = corral_node_config(n);
    struct corral_node_info info;
    corral_node_info(n, &info);
    const char *leader = NULL;
    const struct corral_state *st = corral_node_state(n);
    if (info.leader != 0 && info.leader <= UINT32_MAX) {
        const struct corral_state_coord *k = corral_state_coord_by_id(st, (uint32_t)info.leader);
        leader = k != NULL ? k->name : NULL;
    }
    char cid[20];
    snprintf(cid, sizeof(cid), "%016" PRIx64, c->cluster_id);
    return json_pack("{s:s, s:s, s:s?, s:i, s:o}", "cluster_name", c->cluster_name, "cluster_id",
                     cid, "leader", leader, "voters_target", (int)c->voters, "coordinators",
                     coords_list(n));
}

static void list(struct corral_node *n, struct corral_http_request *req)
{
    api_json(req, 200, coords_answer(n));
}

static void joined(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    const struct corral_state_coord *k =
        corral_state_coord_by_name(corral_node_state(n), name, (uint32_t)strlen(name));
    if (k == NULL) { /* removed in the same batch */
        api_error_ex(req, API_ERR_CONFLICT, "the coordinator was removed as it joined", NULL, NULL);
        return;
    }
    json_t *a = coords_answer(n);
    json_object_set_new(a, "id", json_integer(k->id));
    json_object_set_new(a, "name", json_string(k->name));
    api_json(req, 201, a);
}

static const char SETTLING[] = "a membership change is under way: try again once `corral "
                               "coordinators` shows every coordinator as voter or learner";

static void conflict(struct corral_http_request *req, const char *msg)
{
    api_error_ex(req, API_ERR_CONFLICT, msg, NULL, NULL);
}

static const char *body_str(struct corral_http_request *req, json_t *body, const char *key)
{
    const char *v = json_string_value(json_object_get(body, key));
    if (v == NULL) {
        char msg[80];
        snprintf(msg, sizeof(msg), "%s is required (a string)", key);
        api_error_ex(req, API_ERR_BAD_REQUEST, msg, NULL, NULL);
    }
    return v;
}

/* The id a new coordinator gets (core/roster.h), and never one a join
 * still in flight took: two joins proposed before the first applied
 * would both take next_coord_id, and the second would be refused. */
static uint32_t next_id(struct corral_node *n)
{
    struct api_ctx *x = api_ctx(n);
    struct corral_raft_status rs;
    corral_node_raft_status(n, &rs);
    uint32_t id = corral_roster_join_id(corral_node_state(n), &rs.conf);
    id = id > x->join_id_floor ? id : x->join_id_floor;
    if (id < UINT32_MAX)
        x->join_id_floor = id + 1;
    return id;
}

static void join(struct corral_node *n, struct corral_http_request *req)
{
    static const char *const fields[] = {"name", "cluster_name", "cluster_addr", "http_addr", NULL};
    if (!api_require_leader(n, req))
        return;
    json_t *body = api_body_object(req, false);
    if (body == NULL)
        return;
    const char *name, *cname, *caddr, *haddr;
    if (!api_known_fields(req, body, fields) || (name = body_str(req, body, "name")) == NULL ||
        (cname = body_str(req, body, "cluster_name")) == NULL ||
        (caddr = body_str(req, body, "cluster_addr")) == NULL ||
        (haddr = body_str(req, body, "http_addr")) == NULL) {
        json_decref(body);
        return;
    }
    const struct corral_node_config *cfg = corral_node_config(n);
    char msg[700];
    struct corral_state_cmd c = corral_state_coord_put(0, name, caddr, haddr);
    const struct corral_state_coord *k =
        corral_state_coord_by_name(corral_node_state(n), name, c.name_len);
    struct corral_raft_status rs;
    corral_node_raft_status(n, &rs);
    if (strcmp(cname, cfg->cluster_name) != 0) {
        snprintf(msg, sizeof(msg),
                 "this cluster is named '%s', the joining node's --cluster-name is '%.64s'",
                 cfg->cluster_name, cname);
        conflict(req, msg);
    } else if (k != NULL && corral_raft_conf_is_voter(&rs.conf, k->id)) {
        snprintf(msg, sizeof(msg),
                 "coordinator %s (id %" PRIu32 ") is a voter of this cluster already. A node "
                 "that lost its data dir must not come back under its old id: it lost its vote "
                 "record and its log, and could vote twice in a term or count toward a commit "
                 "it does not hold. Remove it first: corral coordinator remove %s",
                 k->name, k->id, k->name);
        conflict(req, msg);
    } else {
        /* A learner (or one not in the configuration yet) votes for nothing
         * and counts toward no commit: it may join again, from scratch. */
        c.id = k != NULL ? k->id : next_id(n);
        struct corral_rbuf *check = corral_state_cmd_encode(&c);
        corral_rbuf_unref(check);
        if (check == NULL) {
            api_error_ex(req, API_ERR_BAD_REQUEST,
                         "name must be 1-64 chars of [a-z0-9._-], cluster_addr and http_addr "
                         "host:port (printable, no spaces, at most 260 bytes)",
                         NULL, NULL);
        } else {
            api_propose_then(n, req, name, &c, joined);
        }
    }
    json_decref(body);
}

/* One removal runs at a time (remove_coord), so its id is remove_id. */
static void removed(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    api_json(req, 200,
             json_pack("{s:s, s:I, s:b}", "name", name, "id", (json_int_t)api_ctx(n)->remove_id,
                       "removed", 1));
}

static void remove_coord(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    if (!api_require_leader(n, req))
        return;
    const struct corral_state_coord *k =
        corral_state_coord_by_name(corral_node_state(n), name, (uint32_t)strlen(name));
    char msg[300];
    if (k == NULL) {
        snprintf(msg, sizeof(msg), "no coordinator named %s", name);
        api_error_ex(req, API_ERR_NO_COORDINATOR, msg, NULL, NULL);
        return;
    }
    struct corral_raft_status rs;
    corral_node_raft_status(n, &rs);
    uint32_t contact_ms = corral_node_config(n)->election_timeout_ms;
    uint32_t left = 0, alive = 0;
    /* A removal proposed and not applied yet is invisible to the rules
     * below, which read the applied state: wait for it (or for its
     * request timeout, when it was lost). */
    struct api_ctx *x = api_ctx(n);
    if (x->remove_id != 0 && corral_state_coord_by_id(corral_node_state(n), x->remove_id) != NULL &&
        corral_node_clock_ms(n) - x->remove_at_ms < corral_node_config(n)->request_timeout_ms) {
        conflict(req, SETTLING);
        return;
    }
    /* One change at a time; the voters left must reach a quorum of the
     * new configuration among those heard from (core/roster.h). */
    switch (corral_roster_may_remove(corral_node_state(n), &rs, k->id, corral_node_clock_ms(n),
                                     contact_ms, &left, &alive)) {
    case CORRAL_ROSTER_REMOVE_SETTLING:
        conflict(req, SETTLING);
        return;
    case CORRAL_ROSTER_REMOVE_ONLY_VOTER:
        snprintf(msg, sizeof(msg), "%s is the only voter: a cluster needs one", name);
        conflict(req, msg);
        return;
    case CORRAL_ROSTER_REMOVE_NO_QUORUM:
        snprintf(msg, sizeof(msg),
                 "removing %s would leave %u voters of which only %u are in contact, short of "
                 "a quorum of %u",
                 name, left, alive, left / 2 + 1);
        conflict(req, msg);
        return;
    case CORRAL_ROSTER_REMOVE_OK:
        break;
    }
    struct corral_state_cmd c = {.type = CORRAL_STATE_COORD_DELETE, .id = k->id};
    x->remove_id = k->id;
    x->remove_at_ms = corral_node_clock_ms(n);
    api_propose_then(n, req, name, &c, removed);
}

static void one(struct corral_node *n, struct corral_http_request *req, const char *name)
{
    json_t *a = coords_answer(n);
    json_t *l = json_object_get(a, "coordinators");
    size_t i;
    json_t *k;
    json_array_foreach(l, i, k)
    {
        if (strcmp(json_string_value(json_object_get(k, "name")), name) == 0) {
            api_json(req, 200, json_incref(k));
            json_decref(a);
            return;
        }
    }
    json_decref(a);
    char msg[100];
    snprintf(msg, sizeof(msg), "no coordinator named %s", name);
    api_error_ex(req, API_ERR_NO_COORDINATOR, msg, NULL, NULL);
}

void api_coordinators(struct corral_node *n, struct corral_http_request *req, const char *path)
{
    static const char *const none[] = {NULL};
    if (path[0] == '\0' || strcmp(path, "/") == 0) {
        if (api_method_is(req, "GET"))
            list(n, req);
        else if (api_method_is(req, "POST")) {
            if (api_args_only(req, none))
                join(n, req);
        } else
            api_error_ex(req, API_ERR_METHOD, "use GET or POST", NULL, NULL);
        return;
    }
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    const char *rest;
    if (!api_path_name(req, path + 1, name, &rest))
        return;
    if (rest[0] != '\0') {
        api_error(req, API_ERR_NO_ROUTE);
        return;
    }
    if (api_method_is(req, "GET"))
        one(n, req, name);
    else if (api_method_is(req, "DELETE")) {
        if (api_args_only(req, none))
            remove_coord(n, req, name);
    } else
        api_error_ex(req, API_ERR_METHOD, "use GET or DELETE", NULL, NULL);
}
