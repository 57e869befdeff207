/* `corral members` and `corral member show|drain|activate|remove|stoppable|
 * register`: the cluster's members over the HTTP API (docs/api.md
 * "Members, resources and partitions", docs/cli.md). Names and values are
 * checked here, before any request, with the server's own rules. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client_common.h"
#include "corral.h"

/* The server's limits on a member (docs/api.md, PUT /v1/members). */
#define ADDR_BYTES_MAX 260
#define ZONE_BYTES_MAX 64
#define WEIGHT_MAX 1000
/* DELETE ?wait: the server's default, and our bound (that of its blocking
 * queries). */
#define REMOVE_WAIT_MS_DEFAULT 60000
#define REMOVE_WAIT_MS_MAX 300000
/* "/v1/members/" + a name + "/stoppable" */
#define PATH_BYTES_MAX 128

enum {
    F_MEMBERS = 1 << 0,
    F_SHOW = 1 << 1,
    F_DRAIN = 1 << 2,
    F_ACTIVATE = 1 << 3,
    F_REMOVE = 1 << 4,
    F_STOPPABLE = 1 << 5,
    F_REGISTER = 1 << 6,
};

enum flag_id { O_FORCE = CORRAL_CLI_O_COMMON, O_WAIT, O_ADDR, O_ZONE, O_WEIGHT, O_N };

static const struct corral_cli_flag flags[O_N] = {
    CORRAL_CLI_COMMON_FLAGS,
    [O_FORCE] = {"--force", NULL, 0, F_REMOVE},
    [O_WAIT] = {"--wait", NULL, 1, F_REMOVE},
    [O_ADDR] = {"--addr", NULL, 1, F_REGISTER},
    [O_ZONE] = {"--zone", NULL, 1, F_REGISTER},
    [O_WEIGHT] = {"--weight", NULL, 1, F_REGISTER},
};

static const char usage[] =
    "usage: corral members\n"
    "       corral member show NAME\n"
    "       corral member drain NAME\n"
    "       corral member activate NAME\n"
    "       corral member remove NAME [--force] [--wait DUR]\n"
    "       corral member stoppable NAME\n"
    "       corral member register NAME --addr HOST:PORT [--zone Z] [--weight W]\n"
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "members prints a table: NAME ID ROLE STATUS ADDR ZONE WEIGHT PRIMARIES\n"
    "REPLICAS HEARTBEAT-AGE-MS ('-': none or unknown; ages are the leader's).\n"
    "show prints one 'field value' line per field of the member.\n"
    "drain: the member gets no new replicas and its partitions move away;\n"
    "activate ends a drain. Both print 'OK NAME status STATUS'.\n"
    "remove drains the member, waits until it holds nothing (--wait, default\n"
    "60s, at most 300s) and deletes it: 'OK NAME deleted'. --force marks it\n"
    "dead instead: data held only by it is lost.\n"
    "stoppable prints yes or no, then the reasons, one a line.\n"
    "register adds the member, or updates it under the same name (a rejoin):\n"
    "'OK NAME id N status STATUS'. ZONE is 0-64 of [a-z0-9._-]; W is 1..1000.\n"
    "Names are 1-64 characters of [a-z0-9._-]; DUR is digits with ms, s or m,\n"
    "or plain seconds.\n"
    "\n"
    "Exit codes: 0 success (stoppable: yes), 1 failure (server error,\n"
    "unreachable), 2 usage, 3 no such member, 5 stoppable: no.\n";

static void member_row(struct corral_cli_table *t, const json_t *m)
{
    char id[24], weight[24], primaries[24], replicas[24], age[24];
    const char *row[] = {
        corral_cli_str(m, "name", "-"),
        corral_cli_int_text(m, "id", id, sizeof(id)),
        corral_cli_str(m, "role", "-"),
        corral_cli_str(m, "status", "-"),
        corral_cli_str(m, "addr", "-"),
        corral_cli_str(m, "zone", "-"),
        corral_cli_int_text(m, "weight", weight, sizeof(weight)),
        corral_cli_int_text(m, "primaries", primaries, sizeof(primaries)),
        corral_cli_int_text(m, "replicas", replicas, sizeof(replicas)),
        corral_cli_int_text(m, "heartbeat_age_ms", age, sizeof(age)),
    };
    corral_cli_table_add(t, row);
}

static int print_members(struct corral_cli_ctx *x, const json_t *answer)
{
    static const char *const header[] = {
        "NAME", "ID",     "ROLE",      "STATUS",   "ADDR",
        "ZONE", "WEIGHT", "PRIMARIES", "REPLICAS", "HEARTBEAT-AGE-MS"};
    struct corral_cli_table t;
    corral_cli_table_init(&t, sizeof(header) / sizeof(header[0]), header);
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(answer, "members"), i, m)
    {
        member_row(&t, m);
    }
    return corral_cli_table_print(&t, x->o);
}

static int run_members(struct corral_cli_ctx *x)
{
    return corral_cli_show(x, "GET", "/v1/members", NULL, NULL, print_members);
}

static int print_member(struct corral_cli_ctx *x, const json_t *m)
{
    /* The fields in the order of the members table, then the rest. */
    static const char *const keys[] = {
        "name",          "id",     "role",      "status",   "addr",
        "zone",          "weight", "primaries", "replicas", "heartbeat_age_ms",
        "lease_ms_left", "meta",   "load"};
    struct corral_cli_table t;
    corral_cli_table_init(&t, 2, NULL);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(m, keys[i]);
        char num[24], *text = NULL;
        const char *cell = "-";
        if (json_is_string(v))
            cell = corral_cli_str(m, keys[i], "-");
        else if (json_is_integer(v))
            cell = corral_cli_int_text(m, keys[i], num, sizeof(num));
        else if (json_is_object(v) && (text = json_dumps(v, JSON_COMPACT)) != NULL)
            cell = text;
        const char *row[] = {keys[i], cell};
        corral_cli_table_add(&t, row);
        free(text);
    }
    return corral_cli_table_print(&t, x->o);
}

static int print_status(struct corral_cli_ctx *x, const json_t *m)
{
    (void)x;
    printf("OK %s status %s\n", corral_cli_str(m, "name", "-"), corral_cli_str(m, "status", "-"));
    return CORRAL_EXIT_OK;
}

static int print_registered(struct corral_cli_ctx *x, const json_t *m)
{
    (void)x;
    char id[24];
    printf("OK %s id %s status %s\n", corral_cli_str(m, "name", "-"),
           corral_cli_int_text(m, "id", id, sizeof(id)), corral_cli_str(m, "status", "-"));
    return CORRAL_EXIT_OK;
}

/* "/v1/members/NAME" + suffix, the name checked first. */
static int member_path(struct corral_cli_ctx *x, const char *suffix, char *path)
{
    int rv = corral_cli_check_name(x->o, "member", x->args[0]);
    if (rv == 0)
        snprintf(path, PATH_BYTES_MAX, "/v1/members/%s%s", x->args[0], suffix);
    return rv;
}

static int run_show(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = member_path(x, "", path);
    return rv != 0 ? rv : corral_cli_show(x, "GET", path, NULL, NULL, print_member);
}

/* POST /v1/members/NAME/drain or /activate. */
static int post_status(struct corral_cli_ctx *x, const char *suffix)
{
    char path[PATH_BYTES_MAX];
    int rv = member_path(x, suffix, path);
    return rv != 0 ? rv : corral_cli_show(x, "POST", path, NULL, NULL, print_status);
}

static int run_drain(struct corral_cli_ctx *x)
{
    return post_status(x, "/drain");
}

static int run_activate(struct corral_cli_ctx *x)
{
    return post_status(x, "/activate");
}

static int run_remove(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = member_path(x, "", path);
    uint64_t wait_ms = REMOVE_WAIT_MS_DEFAULT;
    if (rv == 0 && x->o->seen[O_WAIT])
        rv = corral_cli_flag_ms(x->o, O_WAIT, REMOVE_WAIT_MS_MAX, &wait_ms);
    if (rv != 0)
        return rv;
    char query[64];
    int force = x->o->seen[O_FORCE];
    if (x->o->seen[O_WAIT])
        snprintf(query, sizeof(query), "wait=%" PRIu64 "ms%s", wait_ms, force ? "&force=1" : "");
    else
        snprintf(query, sizeof(query), "%s", force ? "force=1" : "");
    corral_cli_allow_wait(x, wait_ms);
    return corral_cli_show(x, "DELETE", path, query[0] != '\0' ? query : NULL, NULL,
                           corral_cli_print_deleted);
}

static int run_stoppable(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = member_path(x, "/stoppable", path);
    if (rv != 0)
        return rv;
    struct corral_client_response r;
    if ((rv = corral_cli_call_json(x, "GET", path, NULL, NULL, &r)) != 0)
        return rv;
    const json_t *stoppable = json_object_get(r.json, "stoppable");
    if (!json_is_boolean(stoppable)) {
        fprintf(stderr, "%s: the answer has no boolean 'stoppable'\n", x->o->prog);
        rv = CORRAL_EXIT_FAILURE;
    } else if (x->o->seen[CORRAL_CLI_O_JSON]) {
        corral_cli_print_json(&r);
    } else {
        printf("%s\n", json_is_true(stoppable) ? "yes" : "no");
        size_t i;
        const json_t *reason;
        json_array_foreach(json_object_get(r.json, "reasons"), i, reason)
        {
            printf("%s\n", json_string_value(reason) != NULL ? json_string_value(reason) : "-");
        }
    }
    if (rv == 0 && !json_is_true(stoppable))
        rv = CORRAL_EXIT_NOT_STOPPABLE;
    corral_client_response_free(&r);
    return rv;
}

/* The server's rules for addr (1-260 printable bytes, no spaces) and
 * zone (0-64 of the name alphabet). */
static int check_register(const struct corral_cli_opts *o, uint64_t *weight)
{
    const char *addr = o->value[O_ADDR];
    size_t len = addr != NULL ? strlen(addr) : 0;
    int ok = len >= 1 && len <= ADDR_BYTES_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = addr[i] > ' ' && addr[i] <= '~';
    if (addr == NULL)
        return corral_cli_usage_error(o, "register needs --addr HOST:PORT");
    if (!ok)
        return corral_cli_usage_error(o, "--addr is 1-%d printable bytes without spaces",
                                      ADDR_BYTES_MAX);
    const char *zone = o->value[O_ZONE];
    if (zone != NULL && zone[0] != '\0' && corral_cli_check_name(o, "zone", zone) != 0)
        return CORRAL_EXIT_USAGE;
    if (o->seen[O_WEIGHT])
        return corral_cli_flag_u64(o, O_WEIGHT, 1, WEIGHT_MAX, weight);
    return 0;
}

_Static_assert(ZONE_BYTES_MAX == CORRAL_CLI_NAME_BYTES_MAX, "a zone is checked as a name");

static int run_register(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    uint64_t weight = 1;
    int rv = member_path(x, "", path);
    if (rv != 0 || (rv = check_register(x->o, &weight)) != 0)
        return rv;
    json_t *body = json_pack("{s:s}", "addr", x->o->value[O_ADDR]);
    if (body != NULL && x->o->seen[O_ZONE])
        json_object_set_new(body, "zone", json_string(x->o->value[O_ZONE]));
    if (body != NULL && x->o->seen[O_WEIGHT])
        json_object_set_new(body, "weight", json_integer((json_int_t)weight));
    if (body == NULL) {
        fprintf(stderr, "%s: out of memory\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    rv = corral_cli_show(x, "PUT", path, NULL, body, print_registered);
    json_decref(body);
    return rv;
}

static const struct corral_cli_verb members_verbs[] = {{NULL, F_MEMBERS, 0, 0, run_members}};

static const struct corral_cli_verb member_verbs[] = {
    {"show", F_SHOW, 1, 1, run_show},
    {"drain", F_DRAIN, 1, 1, run_drain},
    {"activate", F_ACTIVATE, 1, 1, run_activate},
    {"remove", F_REMOVE, 1, 1, run_remove},
    {"stoppable", F_STOPPABLE, 1, 1, run_stoppable},
    {"register", F_REGISTER, 1, 1, run_register},
};

static const struct corral_cli_command members_command = {"corral members", usage, flags, O_N,
                                                          members_verbs,    1};

static const struct corral_cli_command member_command = {
    "corral member", usage,
    flags,           O_N,
    member_verbs,    sizeof(member_verbs) / sizeof(member_verbs[0])};

int corral_cmd_members(int argc, char **argv)
{
    return corral_cli_main(&members_command, argc, argv);
}

int corral_cmd_member(int argc, char **argv)
{
    return corral_cli_main(&member_command, argc, argv);
}
