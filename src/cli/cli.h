/* The corral command: one function per subcommand, dispatched by main.c.
 * Exit codes are shared by every subcommand (docs/cli.md). */
#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H

enum {
    CORRAL_EXIT_OK = 0,         /* success */
    CORRAL_EXIT_FAILURE = 1,    /* the command ran and failed (I/O, memory, ...) */
    CORRAL_EXIT_USAGE = 2,      /* bad flags, arguments or input */
    CORRAL_EXIT_NOT_FOUND = 3,  /* no such key, member or resource (404 not_found) */
    CORRAL_EXIT_CAS_FAILED = 4, /* kv: --cas did not match (409 cas_failed) */
    /* member stoppable: the answer is no. Not 1, so that a script can tell
     * "do not stop it" from "could not ask". */
    CORRAL_EXIT_NOT_STOPPABLE = 5,
};

/* A subcommand gets argv after its own name (argv[0] is the subcommand
 * name) and returns a CORRAL_EXIT_* code. It prints its own errors to
 * stderr, prefixed with "corral <name>: ". */
int corral_cmd_placement(int argc, char **argv);
int corral_cmd_server(int argc, char **argv);
/* client_cmd.c: commands that talk to a running cluster. */
int corral_cmd_status(int argc, char **argv);
int corral_cmd_kv(int argc, char **argv);
/* member_cmd.c, resource_cmd.c, events_cmd.c: members, resources and
 * partitions (docs/api.md "Members, resources and partitions"). */
int corral_cmd_members(int argc, char **argv);
int corral_cmd_member(int argc, char **argv);
int corral_cmd_resources(int argc, char **argv);
int corral_cmd_resource(int argc, char **argv);
int corral_cmd_lookup(int argc, char **argv);
int corral_cmd_plan(int argc, char **argv);
int corral_cmd_events(int argc, char **argv);
/* coord_cmd.c: the coordinators' roster and Raft membership. */
int corral_cmd_coordinators(int argc, char **argv);
int corral_cmd_coordinator(int argc, char **argv);
/* leader_cmd.c: leader transfer. */
int corral_cmd_leader(int argc, char **argv);
/* agent_cmd.c: the member side (hooks as commands). */
int corral_cmd_agent(int argc, char **argv);

#endif
