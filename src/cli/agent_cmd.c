/* `corral agent`: the member side for programs in any language. Parses and
 * checks every flag (a bad one exits 2 before anything is sent), then
 * hands over to the host loop (agent_host.c). docs/cli.md describes the
 * flags, the hook environment and the exit codes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/agent_impl.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "corral.h"
#include "runtime/log.h"
#include "util/parse.h"

#define PROG "corral agent"
#define HOOK_TIMEOUT_MS_DEFAULT 30000u
#define DRAIN_TIMEOUT_MS_DEFAULT 60000u
/* A day: longer is surely a typo. */
#define DURATION_MS_MAX (24ull * 3600 * 1000)

enum flag_id {
    O_NAME,
    O_COORDINATORS,
    O_ADDR,
    O_ZONE,
    O_WEIGHT,
    O_META,
    O_ON_ACQUIRE,
    O_ON_RELEASE,
    O_ON_REPLICATE,
    O_ON_DROP,
    O_HOOK,
    O_HOOK_TIMEOUT,
    O_DRAIN_ON_STOP,
    O_DRAIN_TIMEOUT,
    O_LEASE_FILE,
    O_TOKEN_FILE,
    O_LOG_LEVEL,
    O_CACERT,
    O_CERT,
    O_KEY,
    O_HELP,
    O_N
};

static const struct {
    const char *name;
    bool takes_value;
} flags[O_N] = {
    [O_NAME] = {"--name", true},
    [O_COORDINATORS] = {"--coordinators", true},
    [O_ADDR] = {"--addr", true},
    [O_ZONE] = {"--zone", true},
    [O_WEIGHT] = {"--weight", true},
    [O_META] = {"--meta", true},
    [O_ON_ACQUIRE] = {"--on-acquire", true},
    [O_ON_RELEASE] = {"--on-release", true},
    [O_ON_REPLICATE] = {"--on-replicate", true},
    [O_ON_DROP] = {"--on-drop", true},
    [O_HOOK] = {"--hook", true},
    [O_HOOK_TIMEOUT] = {"--hook-timeout", true},
    [O_DRAIN_ON_STOP] = {"--drain-on-stop", false},
    [O_DRAIN_TIMEOUT] = {"--drain-timeout", true},
    [O_LEASE_FILE] = {"--lease-file", true},
    [O_TOKEN_FILE] = {"--token-file", true},
    [O_LOG_LEVEL] = {"--log-level", true},
    [O_CACERT] = {"--cacert", true},
    [O_CERT] = {"--cert", true},
    [O_KEY] = {"--key", true},
    [O_HELP] = {"--help", false},
};

static const char usage_text[] =
    "usage: corral agent --name NAME --coordinators HOST:PORT[,HOST:PORT...] [options]\n"
    "\n"
    "Runs the member side of partition ownership for a program in any language:\n"
    "registers NAME as a worker, heartbeats to the leader, watches the member's\n"
    "assignment and runs a command for each hook (acquire, release, replicate,\n"
    "drop). Runs until SIGTERM or SIGINT, then releases everything and exits.\n"
    "\n"
    "options:\n"
    "  --name NAME            the member's name: 1-64 chars of [a-z0-9._-] (required)\n"
    "  --coordinators LIST    coordinators' HTTP addresses, comma-separated; http://\n"
    "                         is optional; https:// for coordinators run with\n"
    "                         --tls-cert (required)\n"
    "  --addr HOST[:PORT]     what clients connect to (default: this host's name)\n"
    "  --zone ZONE            failure zone: 0-64 chars of [a-z0-9._-] (default none)\n"
    "  --weight W             placement weight, 1-1000 (default 1)\n"
    "  --meta JSON            a JSON object of at most 1 KiB (default {})\n"
    "  --on-acquire CMD       run on becoming primary of a partition\n"
    "  --on-release CMD       run on ceasing to be primary (handoff, lease_lost, ...)\n"
    "  --on-replicate CMD     run to copy a partition from CORRAL_COPY_FROM\n"
    "  --on-drop CMD          run to delete a partition's local data\n"
    "  --hook CMD             one command for every event, which comes as $1\n"
    "                         (not with --on-*)\n"
    "  --hook-timeout DUR     kill a hook's process group after this (default 30s)\n"
    "  --drain-on-stop        on SIGTERM, first drain the member and wait for its\n"
    "                         partitions to move away\n"
    "  --drain-timeout DUR    wait at most this for the drain (default 60s)\n"
    "  --lease-file PATH      keep the lease end (CLOCK_MONOTONIC ms) in PATH, rewritten\n"
    "                         on every change, for an application to fence itself\n"
    "  --token-file PATH      the cluster token, sent as a bearer token (default\n"
    "                         $CORRAL_TOKEN_FILE, else none)\n"
    "  --log-level L          error, warn, info or debug (default info)\n"
    "  --cacert FILE          PEM CA of the coordinators' certificates (default\n"
    "                         $CORRAL_CACERT, else the system's)\n"
    "  --cert FILE, --key FILE  PEM client certificate and key, for coordinators\n"
    "                         run with --tls-ca\n"
    "  --help                 print this text\n"
    "\n"
    "An event without a command succeeds at once. Commands run as /bin/sh -c CMD\n"
    "with CORRAL_EVENT, CORRAL_MEMBER, CORRAL_RESOURCE, CORRAL_RESOURCE_ID,\n"
    "CORRAL_PARTITION, CORRAL_EPOCH, CORRAL_ROLE, CORRAL_COPY_FROM,\n"
    "CORRAL_COPY_FROM_ADDR, CORRAL_REASON (release), CORRAL_LEASE_END_MS and CORRAL_HOOK_START_MS "
    "in\n"
    "the environment; exit status 0 is success. DUR is a number with ms, s, m or\n"
    "h (a plain number is seconds).\n"
    "\n"
    "Exit codes: 0 stopped cleanly after a signal, 1 failure (the registration\n"
    "was refused, a second signal cut the stop short), 2 bad flags.\n";

struct opts {
    bool seen[O_N];
    const char *value[O_N];
};

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see '" PROG " --help')\n");
    va_end(ap);
    return CORRAL_EXIT_USAGE;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0)
            arg = "--help";
        const char *eq = strchr(arg, '=');
        size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        int f = -1;
        for (int k = 0; k < O_N && f < 0; k++)
            if (strlen(flags[k].name) == len && strncmp(arg, flags[k].name, len) == 0)
                f = k;
        if (f < 0)
            return arg[0] == '-' ? usage_error("unknown option '%s'", arg)
                                 : usage_error("unexpected argument '%s'", arg);
        if (o->seen[f])
            return usage_error("%s given twice", flags[f].name);
        if (!flags[f].takes_value && eq != NULL)
            return usage_error("%s takes no value", flags[f].name);
        if (flags[f].takes_value && eq == NULL && i + 1 >= argc)
            return usage_error("%s needs a value", flags[f].name);
        o->seen[f] = true;
        if (flags[f].takes_value)
            o->value[f] = eq != NULL ? eq + 1 : argv[++i];
    }
    return 0;
}

static bool name_chars(const char *s, size_t min, size_t max)
{
    size_t len = strlen(s);
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* "30s", "500ms", "2m", "1h"; a plain number is seconds. */
static bool parse_duration(const char *s, uint64_t *out_ms)
{
    char digits[24];
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    if (n == 0 || n >= sizeof(digits))
        return false;
    memcpy(digits, s, n);
    digits[n] = '\0';
    uint64_t v, unit;
    const char *suffix = s + n;
    if (!corral_parse_u64(digits, &v))
        return false;
    if (strcmp(suffix, "ms") == 0)
        unit = 1;
    else if (strcmp(suffix, "s") == 0 || suffix[0] == '\0')
        unit = 1000;
    else if (strcmp(suffix, "m") == 0)
        unit = 60000;
    else if (strcmp(suffix, "h") == 0)
        unit = 3600000;
    else
        return false;
    if (v > DURATION_MS_MAX / unit)
        return false;
    *out_ms = v * unit;
    return true;
}

static int duration_flag(const struct opts *o, int f, uint64_t dflt, uint64_t min, uint64_t *out)
{
    *out = dflt;
    if (!o->seen[f])
        return 0;
    if (!parse_duration(o->value[f], out) || *out < min)
        return usage_error("%s: '%s' is not a duration of %llu ms to 24h (30s, 500ms, 2m)",
                           flags[f].name, o->value[f], (unsigned long long)min);
    return 0;
}

static int check_identity(const struct opts *o, struct agent_opts *a)
{
    if (!o->seen[O_NAME])
        return usage_error("--name is required");
    if (!name_chars(o->value[O_NAME], 1, CORRAL_STATE_NAME_BYTES_MAX))
        return usage_error("--name: '%s' is not 1-64 characters of [a-z0-9._-]", o->value[O_NAME]);
    snprintf(a->name, sizeof(a->name), "%s", o->value[O_NAME]);
    if (!o->seen[O_COORDINATORS])
        return usage_error("--coordinators is required");
    a->coordinators = o->value[O_COORDINATORS];
    const char *zone = o->seen[O_ZONE] ? o->value[O_ZONE] : "";
    if (!name_chars(zone, 0, CORRAL_STATE_ZONE_BYTES_MAX))
        return usage_error("--zone: '%s' is not 0-64 characters of [a-z0-9._-]", zone);
    snprintf(a->zone, sizeof(a->zone), "%s", zone);
    if (o->seen[O_ADDR]) {
        const char *s = o->value[O_ADDR];
        bool ok = s[0] != '\0' && strlen(s) <= CORRAL_STATE_ADDR_BYTES_MAX;
        for (size_t i = 0; ok && s[i] != '\0'; i++)
            ok = s[i] > ' ' && s[i] <= '~';
        if (!ok)
            return usage_error("--addr: '%s' is not 1-260 printable characters without spaces", s);
        snprintf(a->addr, sizeof(a->addr), "%s", s);
    } else if (gethostname(a->addr, sizeof(a->addr) - 1) != 0 || a->addr[0] == '\0') {
        snprintf(a->addr, sizeof(a->addr), "localhost");
    }
    a->weight = 1;
    uint64_t w;
    if (o->seen[O_WEIGHT] &&
        (!corral_parse_u64(o->value[O_WEIGHT], &w) || w < 1 || w > CORRAL_STATE_WEIGHT_MAX))
        return usage_error("--weight: '%s' is not a number from 1 to 1000", o->value[O_WEIGHT]);
    if (o->seen[O_WEIGHT])
        a->weight = (uint32_t)w;
    return 0;
}

static int check_meta(const struct opts *o, struct agent_opts *a)
{
    json_error_t jerr;
    json_t *meta =
        json_loads(o->seen[O_META] ? o->value[O_META] : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (meta == NULL)
        return usage_error("--meta: not JSON: %s (column %d)", jerr.text, jerr.column);
    if (!json_is_object(meta)) {
        json_decref(meta);
        return usage_error("--meta: not a JSON object");
    }
    a->meta_json = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    if (a->meta_json == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return CORRAL_EXIT_FAILURE;
    }
    if (strlen(a->meta_json) > CORRAL_STATE_META_BYTES_MAX)
        return usage_error("--meta: %zu bytes serialized, over %u", strlen(a->meta_json),
                           CORRAL_STATE_META_BYTES_MAX);
    return 0;
}

static int check_hooks(const struct opts *o, struct agent_opts *a)
{
    static const int on[AGENT_HOOK_KINDS] = {
        [CORRAL_AGENT_ACQUIRE] = O_ON_ACQUIRE,
        [CORRAL_AGENT_RELEASE] = O_ON_RELEASE,
        [CORRAL_AGENT_REPLICATE] = O_ON_REPLICATE,
        [CORRAL_AGENT_DROP] = O_ON_DROP,
    };
    for (int k = 1; k < AGENT_HOOK_KINDS; k++) {
        if (!o->seen[on[k]])
            continue;
        if (o->seen[O_HOOK])
            return usage_error("--hook and %s exclude each other", flags[on[k]].name);
        a->on[k] = o->value[on[k]];
        if (a->on[k][0] == '\0')
            return usage_error("%s: an empty command", flags[on[k]].name);
    }
    if (o->seen[O_HOOK] && o->value[O_HOOK][0] == '\0')
        return usage_error("--hook: an empty command");
    a->hook = o->seen[O_HOOK] ? o->value[O_HOOK] : NULL;
    int rv = duration_flag(o, O_HOOK_TIMEOUT, HOOK_TIMEOUT_MS_DEFAULT, 1, &a->hook_timeout_ms);
    if (rv == 0)
        rv = duration_flag(o, O_DRAIN_TIMEOUT, DRAIN_TIMEOUT_MS_DEFAULT, 0, &a->drain_timeout_ms);
    a->drain_on_stop = o->seen[O_DRAIN_ON_STOP];
    a->lease_file = o->seen[O_LEASE_FILE] ? o->value[O_LEASE_FILE] : NULL;
    if (rv == 0 && a->lease_file != NULL && a->lease_file[0] == '\0')
        return usage_error("--lease-file: an empty path");
    return rv;
}

/* --cacert (else $CORRAL_CACERT), --cert, --key: readable now, and used
 * by every client the agent makes (its threads start later). */
static int check_tls(const struct opts *o)
{
    struct corral_client_tls t = {
        .cacert = o->seen[O_CACERT] ? o->value[O_CACERT] : getenv("CORRAL_CACERT"),
        .cert = o->seen[O_CERT] ? o->value[O_CERT] : NULL,
        .key = o->seen[O_KEY] ? o->value[O_KEY] : NULL,
    };
    if (t.cacert != NULL && t.cacert[0] == '\0')
        t.cacert = NULL;
    if ((t.cert == NULL) != (t.key == NULL))
        return usage_error("--cert and --key go together: %s is missing",
                           t.cert == NULL ? "--cert" : "--key");
    const char *files[3] = {t.cacert, t.cert, t.key};
    const char *names[3] = {o->seen[O_CACERT] ? "--cacert" : "$CORRAL_CACERT", "--cert", "--key"};
    for (int i = 0; i < 3; i++) {
        FILE *f = files[i] != NULL ? fopen(files[i], "r") : NULL;
        if (files[i] != NULL && f == NULL)
            return usage_error("%s %s: cannot read: %s", names[i], files[i], strerror(errno));
        if (f != NULL)
            fclose(f);
    }
    corral_client_set_tls(&t);
    return 0;
}

/* The list must parse as corral_client_init reads it; libcurl must load. */
static int check_coordinators(const struct agent_opts *a)
{
    struct corral_client c;
    int rv = corral_client_init(&c, a->coordinators, 1000);
    if (rv == CORRAL_EINVAL)
        return usage_error("--coordinators: %s", c.err);
    if (rv != 0) {
        fprintf(stderr, PROG ": %s\n", c.err);
        return CORRAL_EXIT_FAILURE;
    }
    if (a->token_file != NULL && corral_client_set_token_file(&c, a->token_file) != 0) {
        corral_client_close(&c);
        return usage_error("%s", c.err);
    }
    corral_client_close(&c);
    return 0;
}

int corral_cmd_agent(int argc, char **argv)
{
    struct opts o = {0};
    static struct agent_opts a; /* the host keeps a pointer for its life */
    memset(&a, 0, sizeof(a));
    int rv = parse_args(&o, argc, argv);
    if (rv == 0 && o.seen[O_HELP]) {
        fputs(usage_text, stdout);
        return CORRAL_EXIT_OK;
    }
    if (rv == 0)
        rv = check_identity(&o, &a);
    if (rv == 0)
        rv = check_meta(&o, &a);
    if (rv == 0)
        rv = check_hooks(&o, &a);
    a.log_level = corral_log_level_parse(o.seen[O_LOG_LEVEL] ? o.value[O_LOG_LEVEL] : "info");
    if (rv == 0 && a.log_level < 0)
        rv = usage_error("--log-level: '%s' is not error, warn, info or debug",
                         o.value[O_LOG_LEVEL]);
    a.token_file = corral_client_token_file(o.seen[O_TOKEN_FILE] ? o.value[O_TOKEN_FILE] : NULL);
    if (rv == 0)
        rv = check_tls(&o);
    if (rv == 0)
        rv = check_coordinators(&a);
    if (rv == 0)
        rv = corral_agent_host_run(&a);
    free(a.meta_json);
    return rv;
}
