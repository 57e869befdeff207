/* What the commands that talk to a cluster share (client_cmd.c,
 * member_cmd.c, resource_cmd.c, events_cmd.c): one option parser driven by
 * a per-command flag table, one dispatcher to verbs, one way of sending a
 * request and turning an error answer into a message and an exit code
 * (docs/cli.md), and the helpers that print answers. */
#ifndef CORRAL_CLI_CLIENT_COMMON_H
#define CORRAL_CLI_CLIENT_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/client.h"

#define CORRAL_CLI_DEFAULT_ENDPOINTS "http://127.0.0.1:8140"
/* Above the server's 5 s request timeout, so its 503 timeout arrives. */
#define CORRAL_CLI_DEFAULT_TIMEOUT_MS 10000
#define CORRAL_CLI_TIMEOUT_MS_MAX 3600000
/* Positional arguments: `kv put KEY VALUE` has the most. */
#define CORRAL_CLI_ARGS_MAX 4
/* Flags in one command's table, the common ones included. */
#define CORRAL_CLI_FLAGS_MAX 16
/* Names of members and resources (docs/api.md): 1-64 of [a-z0-9._-]. */
#define CORRAL_CLI_NAME_BYTES_MAX 64
/* Columns and rows of a printed table: a resource map has at most 65,536
 * partitions; more rows than this is a server gone wrong. */
#define CORRAL_CLI_TABLE_COLS_MAX 12
#define CORRAL_CLI_TABLE_ROWS_MAX (1u << 20)

struct corral_cli_flag {
    const char *name;
    const char *alias;
    int takes_value;
    unsigned commands; /* the masks (struct corral_cli_verb) that accept it */
};

/* Every table starts with these, at these ids; the command's own flags
 * follow from CORRAL_CLI_O_COMMON. */
enum {
    CORRAL_CLI_O_ENDPOINTS,
    CORRAL_CLI_O_TIMEOUT,
    CORRAL_CLI_O_JSON,
    CORRAL_CLI_O_HELP,
    CORRAL_CLI_O_CACERT,
    CORRAL_CLI_O_CERT,
    CORRAL_CLI_O_KEY,
    CORRAL_CLI_O_TOKEN_FILE,
    CORRAL_CLI_O_COMMON
};

#define CORRAL_CLI_COMMON_FLAGS                                                                    \
    [CORRAL_CLI_O_ENDPOINTS] = {"--endpoints", NULL, 1, ~0u},                                      \
    [CORRAL_CLI_O_TIMEOUT] = {"--timeout-ms", NULL, 1, ~0u},                                       \
    [CORRAL_CLI_O_JSON] = {"--json", NULL, 0, ~0u},                                                \
    [CORRAL_CLI_O_HELP] = {"--help", "-h", 0, ~0u},                                                \
    [CORRAL_CLI_O_CACERT] = {"--cacert", NULL, 1, ~0u},                                            \
    [CORRAL_CLI_O_CERT] = {"--cert", NULL, 1, ~0u}, [CORRAL_CLI_O_KEY] = {"--key", NULL, 1, ~0u},  \
    [CORRAL_CLI_O_TOKEN_FILE] = {"--token-file", NULL, 1, ~0u}

/* The common options in a usage text. */
#define CORRAL_CLI_COMMON_USAGE                                                                    \
    "options for every command:\n"                                                                 \
    "  --endpoints URL[,URL...]  servers to try in order (default $CORRAL_ENDPOINTS,\n"            \
    "                            else " CORRAL_CLI_DEFAULT_ENDPOINTS ")\n"                         \
    "  --timeout-ms N            a request's deadline, retries included (default 10000)\n"         \
    "  --json                    print the server's JSON answer on one line\n"                     \
    "  --cacert FILE             PEM CA that signed the servers' certificates, for https://\n"     \
    "                            endpoints (default $CORRAL_CACERT, else the system's)\n"          \
    "  --cert FILE, --key FILE   PEM client certificate and key, for a server run with\n"          \
    "                            --tls-ca\n"                                                       \
    "  --token-file PATH         the cluster token, sent as a bearer token (default\n"             \
    "                            $CORRAL_TOKEN_FILE, else none)\n"                                 \
    "  --help                    print this text\n"

struct corral_cli_opts {
    const char *prog; /* "corral kv": the prefix of every message */
    const struct corral_cli_flag *flags;
    int n_flags;
    int seen[CORRAL_CLI_FLAGS_MAX];
    const char *value[CORRAL_CLI_FLAGS_MAX]; /* points into argv */
    const char *pos[CORRAL_CLI_ARGS_MAX];
    int npos;
    long timeout_ms; /* --timeout-ms, or the default */
};

/* One run of a command. The client is opened by the first request, so
 * that every argument is checked (exit 2) before anything is sent. */
struct corral_cli_ctx {
    struct corral_cli_opts *o;
    const char **args; /* the positional arguments after the verb */
    int nargs;
    long timeout_ms; /* a request's deadline, retries included; a command may raise it */
    volatile sig_atomic_t *cancel; /* see corral_client.cancel; may be NULL */
    int interrupted;               /* the last request ended on *cancel */
    int opened;                    /* client is initialized */
    struct corral_client client;
};

struct corral_cli_verb {
    const char *name; /* NULL for a command without verbs */
    unsigned mask;    /* which flags apply (corral_cli_flag.commands) */
    int min_args, max_args;
    int (*run)(struct corral_cli_ctx *x); /* returns a CORRAL_EXIT_* code */
};

struct corral_cli_command {
    const char *prog;
    const char *usage; /* printed for --help */
    const struct corral_cli_flag *flags;
    int n_flags;
    const struct corral_cli_verb *verbs;
    size_t n_verbs;
};

/* Parses argv (argv[0] is the command's name), prints the usage for
 * --help, picks the verb, checks the flags and arguments against it and
 * runs it. Returns a CORRAL_EXIT_* code. */
int corral_cli_main(const struct corral_cli_command *cmd, int argc, char **argv);

/* Prints "PROG: message (see 'PROG --help')" and returns CORRAL_EXIT_USAGE. */
__attribute__((format(printf, 2, 3))) int corral_cli_usage_error(const struct corral_cli_opts *o,
                                                                 const char *fmt, ...);
/* The value of flag f (given) as an integer in [min, max], else a usage
 * error. */
int corral_cli_flag_u64(const struct corral_cli_opts *o, int f, uint64_t min, uint64_t max,
                        uint64_t *out);
/* The value of flag f (given) as a duration: digits with "ms", "s" or
 * "m", or plain seconds as the server reads them, at most max_ms. */
int corral_cli_flag_ms(const struct corral_cli_opts *o, int f, uint64_t max_ms, uint64_t *out);
/* A member or resource name: 1-64 characters of [a-z0-9._-]; what is
 * "member" or "resource", for the message. */
int corral_cli_check_name(const struct corral_cli_opts *o, const char *what, const char *name);
/* Raises the request timeout to hold a server-side wait of wait_ms. */
void corral_cli_allow_wait(struct corral_cli_ctx *x, uint64_t wait_ms);

/* Sends one request (a raw body, or a JSON one: NULL for none). Returns 0
 * with a 200 JSON object in *r (free it), or an exit code, having printed
 * why (the error answer as is under --json, and the message on stderr). */
int corral_cli_call(struct corral_cli_ctx *x, const char *method, const char *path,
                    const char *query, const char *body, size_t body_len,
                    struct corral_client_response *r);
int corral_cli_call_json(struct corral_cli_ctx *x, const char *method, const char *path,
                         const char *query, const json_t *body, struct corral_client_response *r);
/* Sends a request with a JSON body (or none) and prints the answer: as
 * sent under --json, else with print (which returns an exit code). */
int corral_cli_show(struct corral_cli_ctx *x, const char *method, const char *path,
                    const char *query, const json_t *body,
                    int (*print)(struct corral_cli_ctx *x, const json_t *answer));
/* A printer for corral_cli_show: "OK NAME deleted". */
int corral_cli_print_deleted(struct corral_cli_ctx *x, const json_t *answer);
/* The server's JSON on one line: the body as sent when it is one line. */
void corral_cli_print_json(const struct corral_client_response *r);

/* A string field, dflt when absent, null or empty. */
const char *corral_cli_str(const json_t *obj, const char *key, const char *dflt);
/* An integer field as text in buf, "-" when absent or null. */
const char *corral_cli_int_text(const json_t *obj, const char *key, char *buf, size_t len);
/* An integer field, -1 when absent or not an integer. */
json_int_t corral_cli_int(const json_t *obj, const char *key);

/* A table printed with columns as wide as their widest cell, two spaces
 * apart. Cells are copied. An allocation failure is remembered and
 * reported by print. */
struct corral_cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* nrows * ncols, row 0 the header */
    size_t width[CORRAL_CLI_TABLE_COLS_MAX];
    int failed;
};

/* header NULL: no header row. */
void corral_cli_table_init(struct corral_cli_table *t, size_t ncols, const char *const *header);
void corral_cli_table_add(struct corral_cli_table *t, const char *const *row);
/* Prints the table to stdout and frees it; CORRAL_EXIT_OK, or
 * CORRAL_EXIT_FAILURE (printed nothing) after a failed add. */
int corral_cli_table_print(struct corral_cli_table *t, const struct corral_cli_opts *o);

#endif
