/* corral: the command-line entry point. It only dispatches to subcommands
 * (one file each, registered in the table below) and handles --help and
 * --version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "corral.h"

struct subcommand {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

/* Add new subcommands here (server run, status, kv, ...). */
static const struct subcommand subcommands[] = {
    {"server", "run a coordinator: 'corral server run' (see --help)", corral_cmd_server},
    {"placement", "plan partition placement offline from a cluster and an event trace",
     corral_cmd_placement},
    {"status", "show a node's view of the cluster (role, term, leader, peers)", corral_cmd_status},
    {"kv", "get, put, delete and list keys in the replicated store", corral_cmd_kv},
    {"members", "list the members: status, address, zone, partitions held", corral_cmd_members},
    {"member", "show, register, drain, activate or remove a member; is it stoppable",
     corral_cmd_member},
    {"resources", "list the resources and how many partitions lack a primary or copies",
     corral_cmd_resources},
    {"resource", "create, resize, show (the partition map) or delete a resource",
     corral_cmd_resource},
    {"lookup", "which partition, primary and replicas hold a resource's key", corral_cmd_lookup},
    {"plan", "the moves the controller would make for a resource", corral_cmd_plan},
    {"coordinators", "list the coordinators: role, addresses, replication progress",
     corral_cmd_coordinators},
    {"coordinator", "remove a coordinator from the cluster: 'corral coordinator remove NAME'",
     corral_cmd_coordinator},
    {"leader", "hand leadership to another coordinator: 'corral leader transfer [NAME|ID]'",
     corral_cmd_leader},
    {"events", "print the cluster's change log; --follow waits for more", corral_cmd_events},
    {"agent", "run a member: heartbeats, assignment and hook commands (see --help)",
     corral_cmd_agent},
};

#define SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: corral [--help] [--version] <command> [<args>]\n\ncommands:\n");
    for (size_t i = 0; i < SUBCOMMANDS; i++)
        fprintf(out, "  %-12s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\nRun 'corral <command> --help' for a command's options.\n"
                 "Exit codes: 0 success, 1 runtime failure (including a server error or\n"
                 "no server reachable), 2 usage or input error, 3 not found (a key,\n"
                 "member or resource), 4 compare-and-swap version mismatch (kv --cas),\n"
                 "5 not stoppable (member stoppable).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CORRAL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CORRAL_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("corral %s\n", CORRAL_VERSION);
        return CORRAL_EXIT_OK;
    }
    for (size_t i = 0; i < SUBCOMMANDS; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "corral: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CORRAL_EXIT_USAGE;
}
