/* `corral leader transfer [NAME|ID]`: hand leadership to the voter NAME
 * or ID, or to the most caught-up one, over POST /v1/leader/transfer
 * (docs/api.md, docs/cli.md); parsing, requests and errors are
 * client_common.h's. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/client_common.h"

enum { F_TRANSFER = 1 << 0 };
/* Ids are positions in --peers (at most 16 today); anything up to this
 * goes to the server, which says whether it is a voter. */
#define NODE_ID_MAX UINT32_MAX

static const struct corral_cli_flag flags[CORRAL_CLI_O_COMMON] = {CORRAL_CLI_COMMON_FLAGS};

static const char leader_usage[] =
    "usage: corral leader transfer [NAME|ID]\n"
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "transfer asks the leader (a follower redirects there) to hand leadership\n"
    "to the voter called NAME (as 'corral coordinators' lists it) or with node\n"
    "id ID, or without an argument to the most caught-up voter in contact, and\n"
    "waits for the outcome: it prints 'OK leader FROM -> TO (term T)'. An\n"
    "argument of digits only is an ID; anything else is a NAME, 1-64\n"
    "characters of [a-z0-9._-].\n"
    "\n"
    "Exit codes: 0 leadership moved, 1 failure (refused: the target is this\n"
    "leader, not a voter, out of contact, or a transfer runs; no outcome in\n"
    "time; server error or unreachable), 2 usage.\n";

/* An id or a name in the answer, as text. */
static const char *node_text(const json_t *a, const char *key, char *buf, size_t len)
{
    return json_is_string(json_object_get(a, key)) ? corral_cli_str(a, key, "-")
                                                   : corral_cli_int_text(a, key, buf, len);
}

static int print_moved(struct corral_cli_ctx *x, const json_t *a)
{
    (void)x;
    char from[24], to[24], term[24];
    printf("OK leader %s -> %s (term %s)\n", node_text(a, "from", from, sizeof(from)),
           node_text(a, "to", to, sizeof(to)), corral_cli_int_text(a, "term", term, sizeof(term)));
    return CORRAL_EXIT_OK;
}

/* "to=ID" for digits only, else "to=NAME" (a name checked and escaped). */
static int transfer_query(struct corral_cli_ctx *x, char *query, size_t len)
{
    const char *s = x->args[0];
    if (strspn(s, "0123456789") == strlen(s) && s[0] != '\0') {
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(s, &end, 10);
        if (*end != '\0' || errno != 0 || id == 0 || id > NODE_ID_MAX)
            return corral_cli_usage_error(x->o, "ID must be a node id (1, 2, ...), not '%s'", s);
        snprintf(query, len, "to=%llu", id);
        return 0;
    }
    int rv = corral_cli_check_name(x->o, "coordinator", s);
    if (rv != 0)
        return rv;
    char *esc = corral_client_escape(s, strlen(s), 0, len - sizeof("to="));
    if (esc == NULL) {
        fprintf(stderr, "%s: out of memory\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    snprintf(query, len, "to=%s", esc);
    free(esc);
    return 0;
}

static int run_transfer(struct corral_cli_ctx *x)
{
    char query[CORRAL_CLI_NAME_BYTES_MAX * 3 + 8] = "";
    if (x->nargs > 0) {
        int rv = transfer_query(x, query, sizeof(query));
        if (rv != 0)
            return rv;
    }
    return corral_cli_show(x, "POST", "/v1/leader/transfer", query[0] ? query : NULL, NULL,
                           print_moved);
}

static const struct corral_cli_verb leader_verbs[] = {{"transfer", F_TRANSFER, 0, 1, run_transfer}};

static const struct corral_cli_command leader_command = {"corral leader",     leader_usage, flags,
                                                         CORRAL_CLI_O_COMMON, leader_verbs, 1};

int corral_cmd_leader(int argc, char **argv)
{
    return corral_cli_main(&leader_command, argc, argv);
}
