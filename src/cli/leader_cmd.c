/* `corral leader transfer [ID]`: hand leadership to the voter ID, or to
 * the most caught-up one, over POST /v1/leader/transfer (docs/api.md,
 * docs/cli.md); parsing, requests and errors are client_common.h's. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cli/client_common.h"

enum { F_TRANSFER = 1 << 0 };
/* Ids are positions in --peers (at most 16 today); anything up to this
 * goes to the server, which says whether it is a voter. */
#define NODE_ID_MAX UINT32_MAX

static const struct corral_cli_flag flags[CORRAL_CLI_O_COMMON] = {CORRAL_CLI_COMMON_FLAGS};

static const char leader_usage[] =
    "usage: corral leader transfer [ID]\n"
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "transfer asks the leader (a follower redirects there) to hand leadership\n"
    "to the voter with node id ID (its position in --peers), or without ID to\n"
    "the most caught-up voter in contact, and waits for the outcome: it prints\n"
    "'OK leader FROM -> TO (term T)'. Node names are not there yet: ID is the\n"
    "numeric id that 'corral status' shows.\n"
    "\n"
    "Exit codes: 0 leadership moved, 1 failure (refused: ID is this leader, not\n"
    "a voter, out of contact, or a transfer runs; no outcome in time; server\n"
    "error or unreachable), 2 usage.\n";

static int print_moved(struct corral_cli_ctx *x, const json_t *a)
{
    (void)x;
    printf("OK leader %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT
           " (term %" JSON_INTEGER_FORMAT ")\n",
           corral_cli_int(a, "from"), corral_cli_int(a, "to"), corral_cli_int(a, "term"));
    return CORRAL_EXIT_OK;
}

static int run_transfer(struct corral_cli_ctx *x)
{
    char query[32] = "";
    if (x->nargs > 0) {
        const char *s = x->args[0];
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(s, &end, 10);
        if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || id == 0 || id > NODE_ID_MAX)
            return corral_cli_usage_error(x->o, "ID must be a node id (1, 2, ...), not '%s'", s);
        snprintf(query, sizeof(query), "to=%llu", id);
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
