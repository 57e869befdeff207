/* `corral resources`, `corral resource create|set|show|delete`, `corral
 * lookup` and `corral plan`: resources, their partition maps, where a key
 * lives and what the controller would move (docs/api.md "Members,
 * resources and partitions", docs/cli.md). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client_common.h"
#include "corral.h"

/* The server's limits on a resource (docs/api.md, PUT /v1/resources). */
#define PARTITIONS_MAX 65536
#define REPLICAS_MAX 7
/* "/v1/resources/" + a name + "/lookup" */
#define PATH_BYTES_MAX 128
/* One REPLICAS or ADD/DROP cell: R + 1 <= 8 names of 64 bytes, each with
 * a state; longer (a server gone wrong) is cut with "...". */
#define CELL_BYTES_MAX 1024

enum {
    F_RESOURCES = 1 << 0,
    F_CREATE = 1 << 1,
    F_SET = 1 << 2,
    F_SHOW = 1 << 3,
    F_DELETE = 1 << 4,
    F_LOOKUP = 1 << 5,
    F_PLAN = 1 << 6,
};

enum flag_id { O_PARTITIONS = CORRAL_CLI_O_COMMON, O_REPLICAS, O_FORCE, O_N };

static const struct corral_cli_flag flags[O_N] = {
    CORRAL_CLI_COMMON_FLAGS,
    [O_PARTITIONS] = {"--partitions", NULL, 1, F_CREATE},
    [O_REPLICAS] = {"--replicas", NULL, 1, F_CREATE | F_SET},
    [O_FORCE] = {"--force", NULL, 0, F_CREATE | F_SET},
};

static const char usage[] =
    "usage: corral resources\n"
    "       corral resource create NAME --partitions P --replicas R [--force]\n"
    "       corral resource set NAME --replicas R [--force]\n"
    "       corral resource show NAME\n"
    "       corral resource delete NAME\n"
    "       corral lookup RESOURCE KEY\n"
    "       corral plan RESOURCE\n"
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "resources prints a table: NAME PARTITIONS REPLICAS WITHOUT-PRIMARY\n"
    "UNDER-REPLICATED MOVING.\n"
    "create makes a resource of P (1..65536) partitions and R (1..7) replicas;\n"
    "set changes R (P is fixed). Both print 'OK NAME partitions P replicas R';\n"
    "--force allows R above the workers that could hold a copy.\n"
    "show prints the map: PARTITION PRIMARY EPOCH STATE REPLICAS, STATE being\n"
    "no-primary, releasing, under-replicated (fewer than R in sync), copying\n"
    "or ok, and REPLICAS the members, '(state)' after those not in sync.\n"
    "delete prints 'OK NAME deleted'.\n"
    "lookup prints the partition of KEY, its epoch, primary and replicas.\n"
    "plan prints the moves the controller would make (leader only).\n"
    "Names are 1-64 characters of [a-z0-9._-].\n"
    "\n"
    "Exit codes: 0 success, 1 failure (server error, unreachable), 2 usage,\n"
    "3 no such resource.\n";

static int print_resources(struct corral_cli_ctx *x, const json_t *answer)
{
    static const char *const header[] = {
        "NAME", "PARTITIONS", "REPLICAS", "WITHOUT-PRIMARY", "UNDER-REPLICATED", "MOVING"};
    static const char *const keys[] = {"partitions", "replicas", "without_primary",
                                       "under_replicated", "moving"};
    struct corral_cli_table t;
    corral_cli_table_init(&t, 6, header);
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(answer, "resources"), i, s)
    {
        char buf[5][24];
        const char *row[6] = {corral_cli_str(s, "name", "-")};
        for (size_t k = 0; k < 5; k++)
            row[k + 1] = corral_cli_int_text(s, keys[k], buf[k], sizeof(buf[k]));
        corral_cli_table_add(&t, row);
    }
    return corral_cli_table_print(&t, x->o);
}

static int run_resources(struct corral_cli_ctx *x)
{
    return corral_cli_show(x, "GET", "/v1/resources", NULL, NULL, print_resources);
}

/* Appends s to a cell, cutting it with "..." when full. */
static void cell_add(char *cell, const char *sep, const char *s)
{
    size_t used = strlen(cell);
    if (used >= 3 && strcmp(cell + used - 3, "...") == 0)
        return;
    int n = snprintf(cell + used, CELL_BYTES_MAX - used, "%s%s", used > 0 ? sep : "", s);
    if (n < 0 || (size_t)n >= CELL_BYTES_MAX - used)
        memcpy(cell + CELL_BYTES_MAX - 4, "...", 4);
}

/* "w1,w3(copying)": the replicas, with the state of those not in sync. */
static void replicas_cell(const json_t *replicas, char *cell)
{
    cell[0] = '\0';
    size_t i;
    const json_t *rep;
    json_array_foreach(replicas, i, rep)
    {
        const char *state = corral_cli_str(rep, "state", "-");
        char one[CORRAL_CLI_NAME_BYTES_MAX + 80];
        if (strcmp(state, "in_sync") == 0)
            snprintf(one, sizeof(one), "%s", corral_cli_str(rep, "member", "-"));
        else
            snprintf(one, sizeof(one), "%s(%.64s)", corral_cli_str(rep, "member", "-"), state);
        cell_add(cell, ",", one);
    }
    if (cell[0] == '\0')
        snprintf(cell, CELL_BYTES_MAX, "-");
}

/* The first that holds of no-primary, releasing, under-replicated (fewer
 * than R replicas in sync), copying (a copy running) and ok. */
static const char *row_state(const json_t *row, json_int_t want)
{
    if (!json_is_string(json_object_get(row, "primary")))
        return "no-primary";
    if (json_is_true(json_object_get(row, "releasing")))
        return "releasing";
    json_int_t in_sync = 0, copying = 0;
    size_t i;
    const json_t *rep;
    json_array_foreach(json_object_get(row, "replicas"), i, rep)
    {
        const char *state = corral_cli_str(rep, "state", "");
        in_sync += strcmp(state, "in_sync") == 0;
        copying += strcmp(state, "copying") == 0;
    }
    if (in_sync < want)
        return "under-replicated";
    return copying > 0 ? "copying" : "ok";
}

static int print_map(struct corral_cli_ctx *x, const json_t *res)
{
    char id[24], p[24], r[24], index[24];
    printf("resource %s  id %s  partitions %s  replicas %s  index %s\n",
           corral_cli_str(res, "name", "-"), corral_cli_int_text(res, "id", id, sizeof(id)),
           corral_cli_int_text(res, "partitions", p, sizeof(p)),
           corral_cli_int_text(res, "replicas", r, sizeof(r)),
           corral_cli_int_text(res, "index", index, sizeof(index)));
    static const char *const header[] = {"PARTITION", "PRIMARY", "EPOCH", "STATE", "REPLICAS"};
    json_int_t want = corral_cli_int(res, "replicas");
    struct corral_cli_table t;
    corral_cli_table_init(&t, 5, header);
    size_t i;
    const json_t *row;
    json_array_foreach(json_object_get(res, "map"), i, row)
    {
        char partition[24], epoch[24], replicas[CELL_BYTES_MAX];
        replicas_cell(json_object_get(row, "replicas"), replicas);
        const char *cells[] = {corral_cli_int_text(row, "partition", partition, sizeof(partition)),
                               corral_cli_str(row, "primary", "-"),
                               corral_cli_int_text(row, "epoch", epoch, sizeof(epoch)),
                               row_state(row, want), replicas};
        corral_cli_table_add(&t, cells);
    }
    return corral_cli_table_print(&t, x->o);
}

static int print_summary(struct corral_cli_ctx *x, const json_t *s)
{
    (void)x;
    char p[24], r[24];
    printf("OK %s partitions %s replicas %s\n", corral_cli_str(s, "name", "-"),
           corral_cli_int_text(s, "partitions", p, sizeof(p)),
           corral_cli_int_text(s, "replicas", r, sizeof(r)));
    return CORRAL_EXIT_OK;
}

/* "/v1/resources/NAME" + suffix, the name checked first. */
static int resource_path(struct corral_cli_ctx *x, const char *suffix, char *path)
{
    int rv = corral_cli_check_name(x->o, "resource", x->args[0]);
    if (rv == 0)
        snprintf(path, PATH_BYTES_MAX, "/v1/resources/%s%s", x->args[0], suffix);
    return rv;
}

/* PUT {"partitions":P,"replicas":R}, with ?force=1 for --force. */
static int put_resource(struct corral_cli_ctx *x, const char *path, uint64_t partitions,
                        uint64_t replicas)
{
    json_t *body = json_pack("{s:I,s:I}", "partitions", (json_int_t)partitions, "replicas",
                             (json_int_t)replicas);
    if (body == NULL) {
        fprintf(stderr, "%s: out of memory\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    int rv = corral_cli_show(x, "PUT", path, x->o->seen[O_FORCE] ? "force=1" : NULL, body,
                             print_summary);
    json_decref(body);
    return rv;
}

static int replicas_flag(const struct corral_cli_opts *o, uint64_t *replicas)
{
    if (!o->seen[O_REPLICAS])
        return corral_cli_usage_error(o, "--replicas R is required");
    return corral_cli_flag_u64(o, O_REPLICAS, 1, REPLICAS_MAX, replicas);
}

static int run_create(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    uint64_t partitions = 0, replicas = 0;
    int rv = resource_path(x, "", path);
    if (rv == 0 && !x->o->seen[O_PARTITIONS])
        rv = corral_cli_usage_error(x->o, "--partitions P is required");
    if (rv == 0)
        rv = corral_cli_flag_u64(x->o, O_PARTITIONS, 1, PARTITIONS_MAX, &partitions);
    if (rv == 0)
        rv = replicas_flag(x->o, &replicas);
    return rv != 0 ? rv : put_resource(x, path, partitions, replicas);
}

/* The PUT must name the partition count, which cannot change: it is read
 * first. */
static int run_set(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    uint64_t replicas = 0;
    int rv = resource_path(x, "", path);
    if (rv != 0 || (rv = replicas_flag(x->o, &replicas)) != 0)
        return rv;
    struct corral_client_response r;
    if ((rv = corral_cli_call_json(x, "GET", path, NULL, NULL, &r)) != 0)
        return rv;
    json_int_t partitions = corral_cli_int(r.json, "partitions");
    corral_client_response_free(&r);
    if (partitions < 1 || partitions > PARTITIONS_MAX) {
        fprintf(stderr, "%s: the resource's answer has no valid 'partitions'\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    return put_resource(x, path, (uint64_t)partitions, replicas);
}

static int run_show(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = resource_path(x, "", path);
    return rv != 0 ? rv : corral_cli_show(x, "GET", path, NULL, NULL, print_map);
}

static int run_delete(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = resource_path(x, "", path);
    return rv != 0 ? rv : corral_cli_show(x, "DELETE", path, NULL, NULL, corral_cli_print_deleted);
}

static int print_lookup(struct corral_cli_ctx *x, const json_t *l)
{
    (void)x;
    char partition[24], epoch[24];
    printf("partition %s\nepoch %s\n",
           corral_cli_int_text(l, "partition", partition, sizeof(partition)),
           corral_cli_int_text(l, "epoch", epoch, sizeof(epoch)));
    const json_t *primary = json_object_get(l, "primary");
    if (json_is_object(primary))
        printf("primary %s %s\n", corral_cli_str(primary, "name", "-"),
               corral_cli_str(primary, "addr", "-"));
    else
        printf("primary -\n");
    size_t i;
    const json_t *rep;
    json_array_foreach(json_object_get(l, "replicas"), i, rep)
    {
        printf("replica %s %s %s\n", corral_cli_str(rep, "name", "-"),
               corral_cli_str(rep, "addr", "-"), corral_cli_str(rep, "state", "-"));
    }
    return CORRAL_EXIT_OK;
}

static int run_lookup(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = resource_path(x, "/lookup", path);
    if (rv != 0)
        return rv;
    const char *key = x->args[1];
    /* Half the URL: the rest holds the endpoint and the path. */
    size_t esc_max = CORRAL_CLIENT_URL_BYTES_MAX / 2;
    char *esc = corral_client_escape(key, strlen(key), 0, esc_max);
    if (esc == NULL && strlen(key) * 3 + 1 > esc_max)
        return corral_cli_usage_error(x->o, "the key is too long for a URL (%zu bytes)",
                                      strlen(key));
    size_t len = esc != NULL ? strlen(esc) + sizeof("key=") : 0;
    char *query = esc != NULL ? malloc(len) : NULL;
    if (query == NULL) {
        free(esc);
        fprintf(stderr, "%s: out of memory\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    snprintf(query, len, "key=%s", esc);
    rv = corral_cli_show(x, "GET", path, query, NULL, print_lookup);
    free(query);
    free(esc);
    return rv;
}

/* The names of a JSON array joined by ',' ("-" when none). */
static void names_cell(const json_t *names, char *cell)
{
    cell[0] = '\0';
    size_t i;
    const json_t *n;
    json_array_foreach(names, i, n)
    {
        cell_add(cell, ",", json_string_value(n) != NULL ? json_string_value(n) : "-");
    }
    if (cell[0] == '\0')
        snprintf(cell, CELL_BYTES_MAX, "-");
}

static int print_plan(struct corral_cli_ctx *x, const json_t *plan)
{
    char index[24], total[24], bound[24];
    printf("resource %s  index %s\n", corral_cli_str(plan, "resource", "-"),
           corral_cli_int_text(plan, "index", index, sizeof(index)));
    static const char *const header[] = {"PARTITION", "ADD", "DROP", "PRIMARY-FROM", "PRIMARY-TO"};
    struct corral_cli_table t;
    corral_cli_table_init(&t, 5, header);
    size_t i;
    const json_t *move;
    json_array_foreach(json_object_get(plan, "moves"), i, move)
    {
        char partition[24], add[CELL_BYTES_MAX], drop[CELL_BYTES_MAX];
        names_cell(json_object_get(move, "add"), add);
        names_cell(json_object_get(move, "drop"), drop);
        const char *cells[] = {corral_cli_int_text(move, "partition", partition, sizeof(partition)),
                               add, drop, corral_cli_str(move, "primary_from", "-"),
                               corral_cli_str(move, "primary_to", "-")};
        corral_cli_table_add(&t, cells);
    }
    int rv = corral_cli_table_print(&t, x->o);
    printf("moves_total %s  lower_bound %s",
           corral_cli_int_text(plan, "moves_total", total, sizeof(total)),
           corral_cli_int_text(plan, "lower_bound", bound, sizeof(bound)));
    if (json_is_integer(json_object_get(plan, "primary_lower_bound")))
        printf("  primary_lower_bound %s",
               corral_cli_int_text(plan, "primary_lower_bound", bound, sizeof(bound)));
    putchar('\n');
    return rv;
}

static int run_plan(struct corral_cli_ctx *x)
{
    char path[PATH_BYTES_MAX];
    int rv = resource_path(x, "/plan", path);
    return rv != 0 ? rv : corral_cli_show(x, "GET", path, NULL, NULL, print_plan);
}

static const struct corral_cli_verb resources_verbs[] = {{NULL, F_RESOURCES, 0, 0, run_resources}};
static const struct corral_cli_verb lookup_verbs[] = {{NULL, F_LOOKUP, 2, 2, run_lookup}};
static const struct corral_cli_verb plan_verbs[] = {{NULL, F_PLAN, 1, 1, run_plan}};
static const struct corral_cli_verb resource_verbs[] = {
    {"create", F_CREATE, 1, 1, run_create},
    {"set", F_SET, 1, 1, run_set},
    {"show", F_SHOW, 1, 1, run_show},
    {"delete", F_DELETE, 1, 1, run_delete},
};

static const struct corral_cli_command resources_command = {"corral resources", usage, flags, O_N,
                                                            resources_verbs,    1};
static const struct corral_cli_command resource_command = {"corral resource",
                                                           usage,
                                                           flags,
                                                           O_N,
                                                           resource_verbs,
                                                           sizeof(resource_verbs) /
                                                               sizeof(resource_verbs[0])};
static const struct corral_cli_command lookup_command = {"corral lookup", usage, flags, O_N,
                                                         lookup_verbs,    1};
static const struct corral_cli_command plan_command = {"corral plan", usage,      flags,
                                                       O_N,           plan_verbs, 1};

int corral_cmd_resources(int argc, char **argv)
{
    return corral_cli_main(&resources_command, argc, argv);
}

int corral_cmd_resource(int argc, char **argv)
{
    return corral_cli_main(&resource_command, argc, argv);
}

int corral_cmd_lookup(int argc, char **argv)
{
    return corral_cli_main(&lookup_command, argc, argv);
}

int corral_cmd_plan(int argc, char **argv)
{
    return corral_cli_main(&plan_command, argc, argv);
}
