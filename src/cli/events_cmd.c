/* `corral events [--index N] [--wait DUR] [--follow]`: the cluster's change
 * log (GET /v1/events, docs/api.md), one line per event; --follow repeats
 * the blocking query from the last index seen until SIGINT or SIGTERM. */
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client_common.h"
#include "corral.h"

/* The server's default wait and its maximum (blocking queries). */
#define FOLLOW_WAIT_MS_DEFAULT 30000
#define WAIT_MS_MAX 300000
/* After an answer that brought nothing new and did not move the index
 * (a server answering at once), so that --follow never spins. */
#define IDLE_PAUSE_MS 250
/* A string value printed bare; longer or with spaces and quotes it is
 * printed as a JSON string. */
#define BARE_BYTES_MAX 128

enum { F_EVENTS = 1 << 0 };

enum flag_id { O_INDEX = CORRAL_CLI_O_COMMON, O_WAIT, O_FOLLOW, O_N };

static const struct corral_cli_flag flags[O_N] = {
    CORRAL_CLI_COMMON_FLAGS,
    [O_INDEX] = {"--index", NULL, 1, F_EVENTS},
    [O_WAIT] = {"--wait", NULL, 1, F_EVENTS},
    [O_FOLLOW] = {"--follow", "-f", 0, F_EVENTS},
};

static const char usage[] =
    "usage: corral events [--index N] [--wait DUR] [--follow]\n"
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "Prints the events after log index N (default 0: the oldest kept), one\n"
    "line each: INDEX TYPE, then field=value for every other field present.\n"
    "Without --follow: one page (at most 1000 events); the server waits up\n"
    "to DUR (default 0) for an event after N.\n"
    "--follow asks again from the last index seen, each time waiting up to\n"
    "DUR (default 30s, at most 300s), until SIGINT or SIGTERM (exit 0).\n"
    "--json prints each answer as the server sent it, one line per page.\n"
    "DUR is digits with ms, s or m, or plain seconds.\n"
    "\n"
    "Exit codes: 0 success, 1 failure (server error, unreachable), 2 usage.\n";

static volatile sig_atomic_t stop;

static void stop_cb(int sig)
{
    (void)sig;
    stop = 1;
}

/* SIGINT and SIGTERM set stop once; a second one kills as usual. No
 * SA_RESTART, so that a wait in progress is cut short. */
static void catch_stop(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop_cb;
    sa.sa_flags = (int)SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int bare(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > BARE_BYTES_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == '"')
            return 0;
    return 1;
}

static void print_field(const char *key, const json_t *v)
{
    const char *s = json_string_value(v);
    if (json_is_null(v)) {
        printf(" %s=-", key);
    } else if (s != NULL && bare(s)) {
        printf(" %s=%s", key, s);
    } else {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf(" %s=%s", key, text != NULL ? text : "?");
        free(text);
    }
}

static void print_event(const json_t *e)
{
    char index[24];
    printf("%s %s", corral_cli_int_text(e, "index", index, sizeof(index)),
           corral_cli_str(e, "type", "-"));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)e, key, v)
    {
        if (strcmp(key, "index") != 0 && strcmp(key, "type") != 0)
            print_field(key, v);
    }
    putchar('\n');
}

/* Prints a page's events after from, the index asked (one at or below
 * it would be a repeat) and returns the index to ask from next: the last
 * event's, or the answer's when it has none. Several events may share one
 * log index (one command); the server never splits them over two pages,
 * so asking from the last event's index loses none. */
static uint64_t take_page(const struct corral_cli_ctx *x, const json_t *page, uint64_t from)
{
    const json_t *events = json_object_get(page, "events");
    if (json_is_true(json_object_get(page, "truncated")))
        fprintf(stderr, "%s: events after %" PRIu64 " are no longer all kept; the oldest follow\n",
                x->o->prog, from);
    uint64_t next = from, last = from;
    size_t i;
    const json_t *e;
    json_array_foreach(events, i, e)
    {
        json_int_t index = corral_cli_int(e, "index");
        if (index < 0 || (uint64_t)index <= from)
            continue;
        if ((uint64_t)index > last)
            last = (uint64_t)index;
        if (!x->o->seen[CORRAL_CLI_O_JSON])
            print_event(e);
    }
    json_int_t index = corral_cli_int(page, "index");
    if (last > next)
        next = last;
    else if (json_array_size(events) == 0 && index > 0 && (uint64_t)index > next)
        next = (uint64_t)index;
    return next;
}

static void idle_pause(void)
{
    struct timespec ts = {0, IDLE_PAUSE_MS * 1000000L};
    nanosleep(&ts, NULL); /* a signal ends it early, which is what we want */
}

static int run_events(struct corral_cli_ctx *x)
{
    int follow = x->o->seen[O_FOLLOW];
    uint64_t index = 0, wait_ms = follow ? FOLLOW_WAIT_MS_DEFAULT : 0;
    int rv = 0;
    if (x->o->seen[O_INDEX])
        rv = corral_cli_flag_u64(x->o, O_INDEX, 0, INT64_MAX, &index);
    if (rv == 0 && x->o->seen[O_WAIT])
        rv = corral_cli_flag_ms(x->o, O_WAIT, WAIT_MS_MAX, &wait_ms);
    if (rv != 0)
        return rv;
    corral_cli_allow_wait(x, wait_ms);
    if (follow) {
        catch_stop();
        x->cancel = &stop;
    }
    do {
        char query[80];
        snprintf(query, sizeof(query), "index=%" PRIu64 "&wait=%" PRIu64 "ms", index, wait_ms);
        struct corral_client_response r;
        if ((rv = corral_cli_call(x, "GET", "/v1/events", query, NULL, 0, &r)) != 0)
            return x->interrupted ? CORRAL_EXIT_OK : rv;
        if (x->o->seen[CORRAL_CLI_O_JSON])
            corral_cli_print_json(&r);
        uint64_t next = take_page(x, r.json, index);
        corral_client_response_free(&r);
        fflush(stdout);
        if (follow && next == index && !stop)
            idle_pause();
        index = next;
    } while (follow && !stop);
    return CORRAL_EXIT_OK;
}

static const struct corral_cli_verb events_verbs[] = {{NULL, F_EVENTS, 0, 0, run_events}};

static const struct corral_cli_command events_command = {"corral events", usage, flags, O_N,
                                                         events_verbs,    1};

int corral_cmd_events(int argc, char **argv)
{
    return corral_cli_main(&events_command, argc, argv);
}
