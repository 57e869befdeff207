/* `corral coordinators` and `corral coordinator remove NAME [--no-wait]`:
 * the coordinators' roster and Raft membership over GET /v1/coordinators
 * and DELETE /v1/coordinators/{name} (docs/api.md, docs/cli.md). remove
 * sends the DELETE (committed once the roster changed), then polls the
 * list until NAME has left Raft too. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client_common.h"

/* How often remove asks whether NAME is still listed. */
#define POLL_INTERVAL_MS 200
/* "/v1/coordinators/" + a name */
#define PATH_BYTES_MAX 128
/* A role as shown in the table ("leaving*"), or as remembered by remove. */
#define ROLE_BYTES_MAX 32

enum {
    F_LIST = 1 << 0,
    F_REMOVE = 1 << 1,
};

enum flag_id { O_NO_WAIT = CORRAL_CLI_O_COMMON, O_N };

static const struct corral_cli_flag flags[O_N] = {
    CORRAL_CLI_COMMON_FLAGS,
    [O_NO_WAIT] = {"--no-wait", NULL, 0, F_REMOVE},
};

static const char usage[] =
    "usage: corral coordinators\n"
    "       corral coordinator remove NAME [--no-wait]\n"
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "coordinators prints a line 'cluster NAME  id ID  leader NAME  voters-target N',\n"
    "then a table: NAME ID ROLE CLUSTER-ADDR HTTP-ADDR MATCH LAST-CONTACT. ROLE\n"
    "is voter, learner, joining (in the roster, not yet in Raft) or leaving\n"
    "(out of the roster, still in Raft); the leader's has a '*' (voter*).\n"
    "MATCH and LAST-CONTACT (an age, in ms) are known only when the leader\n"
    "answers: '-' otherwise.\n"
    "remove asks the leader to take NAME out of the roster (DELETE\n"
    "/v1/coordinators/NAME), then asks every 200 ms until NAME is no longer\n"
    "listed (it has left Raft too), for at most --timeout-ms after the DELETE's\n"
    "answer, and prints 'removed NAME (id N)'. --no-wait prints 'removing\n"
    "NAME (id N)' once the roster change is committed and does not wait.\n"
    "--json prints the DELETE's answer instead (and still waits, silently).\n"
    "NAME is 1-64 characters of [a-z0-9._-].\n"
    "\n"
    "Exit codes: 0 success, 1 failure (refused with 409 conflict: a change in\n"
    "flight, the last voter, quorum; still listed when --timeout-ms ran out;\n"
    "server error, unreachable), 2 usage, 3 no such coordinator.\n";

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Whether c is the leader: its own flag, or the answer's "leader" name. */
static int is_leader(const json_t *answer, const json_t *c)
{
    if (json_is_true(json_object_get(c, "leader")))
        return 1;
    const char *leader = corral_cli_str(answer, "leader", NULL);
    const char *name = corral_cli_str(c, "name", NULL);
    return leader != NULL && name != NULL && strcmp(leader, name) == 0;
}

static void coordinator_row(struct corral_cli_table *t, const json_t *answer, const json_t *c)
{
    char id[24], match[24], contact[32], role[ROLE_BYTES_MAX];
    snprintf(role, sizeof(role), "%s%s", corral_cli_str(c, "role", "-"),
             is_leader(answer, c) ? "*" : "");
    const json_t *last = json_object_get(c, "last_contact_ms");
    const char *age = "-";
    if (json_is_integer(last)) {
        snprintf(contact, sizeof(contact), "%" JSON_INTEGER_FORMAT "ms", json_integer_value(last));
        age = contact;
    }
    const char *row[] = {
        corral_cli_str(c, "name", "-"),
        corral_cli_int_text(c, "id", id, sizeof(id)),
        role,
        corral_cli_str(c, "cluster_addr", "-"),
        corral_cli_str(c, "http_addr", "-"),
        corral_cli_int_text(c, "match_index", match, sizeof(match)),
        age,
    };
    corral_cli_table_add(t, row);
}

static int print_coordinators(struct corral_cli_ctx *x, const json_t *answer)
{
    static const char *const header[] = {"NAME",      "ID",    "ROLE",        "CLUSTER-ADDR",
                                         "HTTP-ADDR", "MATCH", "LAST-CONTACT"};
    const json_t *list = json_object_get(answer, "coordinators");
    if (!json_is_array(list)) {
        fprintf(stderr, "%s: the answer has no 'coordinators' array\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    char target[24];
    printf("cluster %s  id %s  leader %s  voters-target %s\n",
           corral_cli_str(answer, "cluster_name", "-"), corral_cli_str(answer, "cluster_id", "-"),
           corral_cli_str(answer, "leader", "-"),
           corral_cli_int_text(answer, "voters_target", target, sizeof(target)));
    struct corral_cli_table t;
    corral_cli_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    size_t i;
    const json_t *c;
    json_array_foreach(list, i, c)
    {
        coordinator_row(&t, answer, c);
    }
    return corral_cli_table_print(&t, x->o);
}

/* The leader's HTTP address from an answer that came from a follower
 * (every match_index null: only the leader knows them), or NULL. */
static const char *leader_elsewhere(const json_t *answer)
{
    const json_t *list = json_object_get(answer, "coordinators"), *c, *lead = NULL;
    size_t i;
    json_array_foreach(list, i, c)
    {
        if (json_is_integer(json_object_get(c, "match_index")))
            return NULL;
        if (is_leader(answer, c))
            lead = c;
    }
    return lead != NULL ? corral_cli_str(lead, "http_addr", NULL) : NULL;
}

/* Match indexes and contact ages are the leader's: a follower's answer
 * has them null, so the list is asked of the leader once more (the first
 * answer is printed when that fails). */
static int run_list(struct corral_cli_ctx *x)
{
    struct corral_client_response r;
    int rv = corral_cli_call_json(x, "GET", "/v1/coordinators", NULL, NULL, &r);
    if (rv != 0)
        return rv;
    const char *addr = leader_elsewhere(r.json);
    struct corral_client *cl = &x->client;
    if (addr != NULL && cl->n_endpoints > 0) {
        const char *ep = cl->endpoints[cl->current < cl->n_endpoints ? cl->current : 0];
        const char *sep = strstr(ep, "://");
        int scheme = sep != NULL ? (int)(sep - ep) : 4;
        snprintf(cl->leader, sizeof(cl->leader), "%.*s://%s", scheme, sep != NULL ? ep : "http",
                 addr);
        struct corral_client_response lr;
        if (corral_client_request_json(cl, "GET", "/v1/coordinators", NULL, NULL, &lr) == 0 &&
            lr.status == 200 && json_is_object(lr.json) && leader_elsewhere(lr.json) == NULL) {
            corral_client_response_free(&r);
            r = lr;
        } else {
            corral_client_response_free(&lr);
        }
    }
    if (x->o->seen[CORRAL_CLI_O_JSON])
        corral_cli_print_json(&r);
    else
        rv = print_coordinators(x, r.json);
    corral_client_response_free(&r);
    return rv;
}

/* 1 when a coordinator called name is in the answer (its role copied to
 * role), 0 when not, -1 when the answer has no list. */
static int listed(const json_t *answer, const char *name, char *role, size_t len)
{
    const json_t *list = json_object_get(answer, "coordinators");
    if (!json_is_array(list))
        return -1;
    size_t i;
    const json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *n = corral_cli_str(c, "name", NULL);
        if (n != NULL && strcmp(n, name) == 0) {
            snprintf(role, len, "%s", corral_cli_str(c, "role", "-"));
            return 1;
        }
    }
    return 0;
}

/* Asks GET /v1/coordinators every POLL_INTERVAL_MS until name is gone,
 * for at most the command's --timeout-ms; each request gets what is left
 * of it. */
static int wait_gone(struct corral_cli_ctx *x, const char *name, const char *id)
{
    long long deadline = now_ms() + x->o->timeout_ms;
    char role[ROLE_BYTES_MAX] = "-";
    for (;;) {
        long long left = deadline - now_ms();
        if (left < 1)
            break;
        x->timeout_ms = (long)left;
        struct corral_client_response r;
        int rv = corral_cli_call_json(x, "GET", "/v1/coordinators", NULL, NULL, &r);
        if (rv != 0) {
            fprintf(stderr,
                    "%s: %s (id %s) is out of the roster, but whether it has left Raft is "
                    "unknown: see 'corral coordinators'\n",
                    x->o->prog, name, id);
            return rv;
        }
        int found = listed(r.json, name, role, sizeof(role));
        corral_client_response_free(&r);
        if (found < 0) {
            fprintf(stderr, "%s: the answer has no 'coordinators' array\n", x->o->prog);
            return CORRAL_EXIT_FAILURE;
        }
        if (!found) {
            if (!x->o->seen[CORRAL_CLI_O_JSON])
                printf("removed %s (id %s)\n", name, id);
            return CORRAL_EXIT_OK;
        }
        left = deadline - now_ms();
        if (left < 1)
            break;
        sleep_ms(left < POLL_INTERVAL_MS ? left : POLL_INTERVAL_MS);
    }
    fprintf(stderr,
            "%s: timed out: %s (id %s) is out of the roster but still listed (role %s) after "
            "%ld ms; it should leave Raft shortly: see 'corral coordinators'\n",
            x->o->prog, name, id, role, x->o->timeout_ms);
    return CORRAL_EXIT_FAILURE;
}

static int run_remove(struct corral_cli_ctx *x)
{
    const char *name = x->args[0];
    int rv = corral_cli_check_name(x->o, "coordinator", name);
    if (rv != 0)
        return rv;
    char path[PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "/v1/coordinators/%s", name);
    struct corral_client_response r;
    if ((rv = corral_cli_call_json(x, "DELETE", path, NULL, NULL, &r)) != 0)
        return rv;
    char idbuf[24];
    char id[24];
    snprintf(id, sizeof(id), "%s", corral_cli_int_text(r.json, "id", idbuf, sizeof(idbuf)));
    int json = x->o->seen[CORRAL_CLI_O_JSON];
    if (json)
        corral_cli_print_json(&r);
    corral_client_response_free(&r);
    if (x->o->seen[O_NO_WAIT]) {
        if (!json)
            printf("removing %s (id %s)\n", name, id);
        return CORRAL_EXIT_OK;
    }
    fflush(stdout);
    return wait_gone(x, name, id);
}

static const struct corral_cli_verb list_verbs[] = {{NULL, F_LIST, 0, 0, run_list}};

static const struct corral_cli_verb coordinator_verbs[] = {{"remove", F_REMOVE, 1, 1, run_remove}};

static const struct corral_cli_command coordinators_command = {
    "corral coordinators", usage, flags, O_N, list_verbs, 1};

static const struct corral_cli_command coordinator_command = {
    .prog = "corral coordinator",
    .usage = usage,
    .flags = flags,
    .n_flags = O_N,
    .verbs = coordinator_verbs,
    .n_verbs = sizeof(coordinator_verbs) / sizeof(coordinator_verbs[0]),
};

int corral_cmd_coordinators(int argc, char **argv)
{
    return corral_cli_main(&coordinators_command, argc, argv);
}

int corral_cmd_coordinator(int argc, char **argv)
{
    return corral_cli_main(&coordinator_command, argc, argv);
}
