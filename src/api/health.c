/* /health, /health/ready and /v1/status. */
#include <inttypes.h>
#include <stdio.h>

#include "api/own.h"
#include "api/reply.h"
#include "api/routes.h"

void api_health(struct corral_node *n, struct corral_http_request *req)
{
    api_json(req, 200,
             json_pack("{s:s, s:I}", "status", "ok", "id", (json_int_t)corral_node_config(n)->id));
}

void api_ready(struct corral_node *n, struct corral_http_request *req)
{
    struct corral_node_info info;
    corral_node_info(n, &info);
    char url[300];
    if (info.ready)
        api_json(req, 200, json_pack("{s:b}", "ready", 1));
    else
        api_error_ex(req, API_ERR_NOT_READY, info.not_ready_reason,
                     api_leader_url(&info, url, sizeof(url)), NULL);
}

/* last_contact_ms in the Raft progress is a reading of the leader's
 * monotonic clock, meaningless to a client: report its age instead. */
/* A coordinator's name from the roster, or NULL. */
static const char *coord_name(struct corral_node *n, uint64_t id)
{
    const struct corral_state_coord *k =
        id <= UINT32_MAX ? corral_state_coord_by_id(corral_node_state(n), (uint32_t)id) : NULL;
    return k != NULL ? k->name : NULL;
}

static json_t *peers_json(struct corral_node *n, const struct corral_raft_status *s)
{
    uint64_t now = corral_node_clock_ms(n);
    struct corral_node_peer_info pi[CORRAL_RAFT_NODES_MAX];
    uint32_t np = corral_node_peers(n, pi, CORRAL_RAFT_NODES_MAX);
    json_t *arr = json_array();
    for (uint32_t i = 0; arr != NULL && i < np; i++) {
        json_t *match = json_null(), *contact = json_null();
        for (uint32_t k = 0; s->role == CORRAL_RAFT_LEADER && k < s->n_progress; k++) {
            if (s->progress[k].id != pi[i].id)
                continue;
            json_decref(match);
            match = json_integer((json_int_t)s->progress[k].match);
            json_decref(contact);
            uint64_t at = s->progress[k].last_contact_ms;
            contact = json_integer((json_int_t)(now > at ? now - at : 0));
        }
        json_array_append_new(arr, json_pack("{s:I, s:s?, s:s, s:s?, s:b, s:b, s:o, s:o}", "id",
                                             (json_int_t)pi[i].id, "name", coord_name(n, pi[i].id),
                                             "cluster_addr", pi[i].cluster_addr, "http", pi[i].http,
                                             "voter", corral_raft_conf_is_voter(&s->conf, pi[i].id),
                                             "connected", pi[i].connected, "match", match,
                                             "last_contact_age_ms", contact));
    }
    return arr;
}

/* The partition ownership part of /v1/status. */
static json_t *own_status(struct corral_node *n)
{
    struct api_own_summary s;
    api_own_summary(corral_node_state(n), &s);
    const struct corral_coord *co = corral_node_coord(n);
    const struct corral_liveness *lv = corral_coord_liveness(co);
    struct corral_node_duty_stats d;
    corral_node_duty_stats(n, &d);
    json_t *members = json_object();
    for (uint8_t i = CORRAL_MEMBER_ACTIVE; i <= CORRAL_MEMBER_LEFT; i++)
        json_object_set_new(members, api_status_name(i), json_integer(s.members_by_status[i]));
    json_t *o = json_pack(
        "{s:b, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "leading", lv != NULL, "members", members,
        "resources", (json_int_t)s.resources, "partitions", (json_int_t)s.partitions,
        "without_primary", (json_int_t)s.without_primary, "under_replicated",
        (json_int_t)s.under_replicated, "moving", (json_int_t)s.moving, "assign_index",
        (json_int_t)corral_state_assign_index(corral_node_state(n)));
    if (o != NULL && lv != NULL) {
        /* Leader only: the new-leader wait (liveness.h L2) and the last
         * evaluation's counts. */
        json_object_set_new(o, "settled",
                            json_boolean(corral_liveness_settled(lv, corral_node_clock_ms(n))));
        json_object_set_new(o, "heartbeats", json_integer((json_int_t)d.heartbeats));
        json_object_set_new(o, "controller",
                            json_pack("{s:I, s:i, s:i, s:i, s:i, s:i}", "evaluations",
                                      (json_int_t)d.evaluations, "in_flight", (int)d.last.in_flight,
                                      "throttled", (int)d.last.throttled, "lost", (int)d.last.lost,
                                      "blocked", (int)d.last.blocked, "out_of_target",
                                      (int)d.last.out_of_target));
    }
    return o;
}

void api_status(struct corral_node *n, struct corral_http_request *req)
{
    struct corral_node_info info;
    struct corral_raft_status s;
    corral_node_info(n, &info);
    corral_node_raft_status(n, &s);
    char cid[24];
    snprintf(cid, sizeof(cid), "%016" PRIx64, info.cluster_id);
    json_t *leader = s.leader == 0
                         ? json_null()
                         : json_pack("{s:I, s:s?, s:s?}", "id", (json_int_t)s.leader, "name",
                                     coord_name(n, s.leader), "http", info.leader_http);
    json_t *body = json_pack(
        "{s:I, s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:s, s:s, s:b, s:o}", "id",
        (json_int_t)info.id, "cluster_id", cid, "role", corral_raft_role_name(s.role), "term",
        (json_int_t)s.term, "leader", leader, "commit", (json_int_t)s.commit, "applied",
        (json_int_t)s.applied, "last_index", (json_int_t)s.last_index, "snapshot_index",
        (json_int_t)s.snapshot_index, "http_addr", info.http_addr, "cluster_addr",
        info.cluster_addr, "ready", info.ready, "peers", peers_json(n, &s));
    if (body != NULL) {
        const struct corral_node_config *c = corral_node_config(n);
        json_object_set_new(body, "name", json_string(c->name));
        json_object_set_new(body, "cluster_name", json_string(c->cluster_name));
        json_object_set_new(body, "ownership", own_status(n));
    }
    api_json(req, 200, body);
}
