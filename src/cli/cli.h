/* The corral command: one function per subcommand, dispatched by main.c.
 * Exit codes are shared by every subcommand. */
#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H

enum {
    CORRAL_EXIT_OK = 0,      /* success */
    CORRAL_EXIT_FAILURE = 1, /* the command ran and failed (I/O, memory, ...) */
    CORRAL_EXIT_USAGE = 2,   /* bad flags, arguments or input */
};

/* A subcommand gets argv after its own name (argv[0] is the subcommand
 * name) and returns a CORRAL_EXIT_* code. It prints its own errors to
 * stderr, prefixed with "corral <name>: ". */
int corral_cmd_placement(int argc, char **argv);
int corral_cmd_server(int argc, char **argv);

#endif
