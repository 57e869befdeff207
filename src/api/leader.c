/* POST /v1/leader/transfer[?to=ID]: an operator hands leadership to
 * another voter (docs/api.md). The answer waits, as a parked request
 * (own.h), until this node sees the leadership move, or up to two
 * election timeouts (the core abandons a transfer after one). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/own.h"
#include "api/reply.h"
#include "api/routes.h"
#include "corral.h"
#include "util/parse.h"

/* A refusal: 409 transfer_refused, its "reason" and a message. */
static void refuse(struct corral_http_request *req, const char *reason, const char *msg)
{
    api_error_ex(req, API_ERR_TRANSFER_REFUSED, msg, NULL, json_pack("{s:s}", "reason", reason));
}

static void refusal(struct corral_node *n, struct corral_http_request *req,
                    enum corral_leader_transfer_refusal why, uint64_t target)
{
    char msg[200];
    uint32_t window = corral_node_config(n)->election_timeout_ms;
    switch (why) {
    case CORRAL_LT_SELF:
        snprintf(msg, sizeof(msg), "node %" PRIu64 " is the leader already: name another voter",
                 target);
        refuse(req, "self", msg);
        break;
    case CORRAL_LT_NOT_VOTER:
        snprintf(msg, sizeof(msg), "node %" PRIu64 " is not a voter of this cluster", target);
        refuse(req, "not_voter", msg);
        break;
    case CORRAL_LT_NO_CONTACT:
        snprintf(msg, sizeof(msg),
                 "node %" PRIu64 " has not been heard from within an election timeout (%u ms)",
                 target, window);
        refuse(req, "no_contact", msg);
        break;
    case CORRAL_LT_RUNNING:
        refuse(req, "running", "a leadership transfer is already running");
        break;
    default:
        snprintf(msg, sizeof(msg),
                 "no other voter has been heard from within an election timeout (%u ms)", window);
        refuse(req, "no_target", msg);
        break;
    }
}

/* The parked request: w->index is the target. */
static bool try_answer(struct corral_node *n, struct api_wait *w, bool timed_out)
{
    struct corral_raft_status s;
    corral_node_raft_status(n, &s);
    char msg[200];
    if (s.role != CORRAL_RAFT_LEADER && s.leader == w->index) {
        api_json(w->req, 200,
                 json_pack("{s:I, s:I, s:I}", "from", (json_int_t)s.id, "to", (json_int_t)w->index,
                           "term", (json_int_t)s.term));
        return true;
    }
    if (s.role != CORRAL_RAFT_LEADER && s.leader != 0) {
        snprintf(msg, sizeof(msg), "leadership moved to node %" PRIu64 ", not to node %" PRIu64,
                 s.leader, w->index);
        refuse(w->req, "other_leader", msg);
        return true;
    }
    if (!timed_out)
        return false;
    snprintf(msg, sizeof(msg),
             "leadership did not move to node %" PRIu64 " within %" PRIu64
             " ms; this node %s (term %" PRIu64 ")",
             w->index, 2u * (uint64_t)corral_node_config(n)->election_timeout_ms,
             s.role == CORRAL_RAFT_LEADER ? "still leads" : "knows no leader", s.term);
    api_error_ex(w->req, API_ERR_TIMEOUT, msg, NULL, NULL);
    return true;
}

void api_leader_transfer(struct corral_node *n, struct corral_http_request *req)
{
    static const char *const args[] = {"to", NULL};
    if (!api_method_is(req, "POST")) {
        api_error_ex(req, API_ERR_METHOD, "use POST", NULL, NULL);
        return;
    }
    if (!api_args_only(req, args))
        return;
    const char *v = corral_http_arg(req, "to");
    uint64_t target = 0;
    if (v != NULL && !corral_parse_u64(v, &target)) { /* a coordinator's name */
        const struct corral_state_coord *k =
            corral_state_coord_by_name(corral_node_state(n), v, (uint32_t)strlen(v));
        target = k != NULL ? k->id : 0;
        if (k == NULL) {
            api_error_ex(req, API_ERR_BAD_REQUEST,
                         "to must be a coordinator's name or its id (a positive integer)", NULL,
                         NULL);
            return;
        }
    }
    if (v != NULL && target == 0) {
        api_error_ex(req, API_ERR_BAD_REQUEST,
                     "to must be a coordinator's name or its id (a positive integer)", NULL, NULL);
        return;
    }
    /* Room to wait is checked first: a transfer started and then answered
     * 503 busy would be retried by clients into a 409 running. */
    if (api_ctx(n)->n_waits >= API_WAITS_MAX) {
        api_error(req, API_ERR_BUSY);
        return;
    }
    uint64_t to = 0;
    enum corral_leader_transfer_refusal why;
    int rv = corral_node_transfer(n, target, &to, &why);
    if (rv != 0) {
        api_propose_error(n, req, rv); /* not the leader: 307 */
        return;
    }
    if (why != CORRAL_LT_OK) {
        refusal(n, req, why, target);
        return;
    }
    uint64_t wait_ms = 2u * (uint64_t)corral_node_config(n)->election_timeout_ms;
    struct api_wait *w = api_wait_park(n, req, wait_ms, try_answer);
    if (w != NULL)
        w->index = to;
}
