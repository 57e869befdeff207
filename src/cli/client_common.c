/* The option parser, verb dispatch, request and error handling and the
 * printing helpers of the client commands (client_common.h). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/client_common.h"
#include "corral.h"

/* The request timeout above a server-side wait: the server answers when
 * its wait ends, and that answer must still arrive. */
#define WAIT_MARGIN_MS 5000

_Static_assert(CORRAL_CLI_O_COMMON <= CORRAL_CLI_FLAGS_MAX, "the common flags fit");

int corral_cli_usage_error(const struct corral_cli_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", o->prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see '%s --help')\n", o->prog);
    va_end(ap);
    return CORRAL_EXIT_USAGE;
}

static int find_flag(const struct corral_cli_opts *o, const char *arg, size_t len)
{
    for (int i = 0; i < o->n_flags; i++) {
        const struct corral_cli_flag *f = &o->flags[i];
        if ((strlen(f->name) == len && strncmp(arg, f->name, len) == 0) ||
            (f->alias != NULL && strlen(f->alias) == len && strncmp(arg, f->alias, len) == 0))
            return i;
    }
    return -1;
}

/* One option at argv[*i], "--name VALUE" or "--name=VALUE". */
static int parse_flag(struct corral_cli_opts *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    int f = find_flag(o, arg, len);
    if (f < 0)
        return corral_cli_usage_error(o, "unknown option '%s'", arg);
    if (!o->flags[f].takes_value && eq != NULL)
        return corral_cli_usage_error(o, "%s takes no value", o->flags[f].name);
    if (o->flags[f].takes_value && eq == NULL && *i + 1 >= argc)
        return corral_cli_usage_error(o, "%s needs a value", o->flags[f].name);
    o->seen[f] = 1;
    if (o->flags[f].takes_value)
        o->value[f] = eq != NULL ? eq + 1 : argv[++*i];
    return 0;
}

/* Options may come anywhere; "--" ends them; "-" alone is an argument. */
static int parse_args(struct corral_cli_opts *o, int argc, char **argv)
{
    int options = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options && strcmp(arg, "--") == 0) {
            options = 0;
        } else if (options && arg[0] == '-' && arg[1] != '\0') {
            int rv = parse_flag(o, argc, argv, &i);
            if (rv != 0)
                return rv;
        } else if (o->npos == CORRAL_CLI_ARGS_MAX) {
            return corral_cli_usage_error(o, "too many arguments");
        } else {
            o->pos[o->npos++] = arg;
        }
    }
    return 0;
}

int corral_cli_flag_u64(const struct corral_cli_opts *o, int f, uint64_t min, uint64_t max,
                        uint64_t *out)
{
    const char *s = o->value[f];
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        return corral_cli_usage_error(
            o, "%s must be an integer within %" PRIu64 "..%" PRIu64 ", not '%s'", o->flags[f].name,
            min, max, s);
    *out = v;
    return 0;
}

int corral_cli_flag_ms(const struct corral_cli_opts *o, int f, uint64_t max_ms, uint64_t *out)
{
    const char *s = o->value[f];
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t unit_ms = strcmp(end, "ms") == 0 ? 1 : strcmp(end, "m") == 0 ? 60000 : 1000;
    int unit_ok =
        *end == '\0' || strcmp(end, "s") == 0 || strcmp(end, "ms") == 0 || strcmp(end, "m") == 0;
    if (s[0] < '0' || s[0] > '9' || !unit_ok || errno != 0 || v > max_ms / unit_ms)
        return corral_cli_usage_error(
            o,
            "%s must be a duration such as 500ms, 30s, 2m or 30 (seconds), "
            "at most %" PRIu64 "s, not '%s'",
            o->flags[f].name, max_ms / 1000, s);
    *out = v * unit_ms;
    return 0;
}

int corral_cli_check_name(const struct corral_cli_opts *o, const char *what, const char *name)
{
    size_t len = strlen(name);
    int ok = len >= 1 && len <= CORRAL_CLI_NAME_BYTES_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '.' || name[i] == '_' || name[i] == '-';
    if (!ok)
        return corral_cli_usage_error(o, "a %s name is 1-%d characters of [a-z0-9._-], not '%s'",
                                      what, CORRAL_CLI_NAME_BYTES_MAX, name);
    return 0;
}

void corral_cli_allow_wait(struct corral_cli_ctx *x, uint64_t wait_ms)
{
    if (wait_ms + WAIT_MARGIN_MS > (uint64_t)x->timeout_ms)
        x->timeout_ms = (long)(wait_ms + WAIT_MARGIN_MS);
}

static int check_flags(struct corral_cli_opts *o, const struct corral_cli_verb *v)
{
    for (int f = 0; f < o->n_flags; f++)
        if (o->seen[f] && !(o->flags[f].commands & v->mask))
            return v->name != NULL
                       ? corral_cli_usage_error(o, "%s does not apply to '%s'", o->flags[f].name,
                                                v->name)
                       : corral_cli_usage_error(o, "%s does not apply here", o->flags[f].name);
    uint64_t timeout_ms = CORRAL_CLI_DEFAULT_TIMEOUT_MS;
    int rv = 0;
    if (o->seen[CORRAL_CLI_O_TIMEOUT])
        rv =
            corral_cli_flag_u64(o, CORRAL_CLI_O_TIMEOUT, 1, CORRAL_CLI_TIMEOUT_MS_MAX, &timeout_ms);
    o->timeout_ms = (long)timeout_ms;
    return rv;
}

/* "get, put, del or ls" */
static void verb_list(const struct corral_cli_command *cmd, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < cmd->n_verbs && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == cmd->n_verbs ? " or " : ", ";
        int n = snprintf(buf + used, len - used, "%s%s", sep, cmd->verbs[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
}

static const struct corral_cli_verb *pick_verb(const struct corral_cli_command *cmd,
                                               const struct corral_cli_opts *o)
{
    if (cmd->verbs[0].name == NULL)
        return &cmd->verbs[0];
    char names[256];
    verb_list(cmd, names, sizeof(names));
    if (o->npos == 0) {
        corral_cli_usage_error(o, "missing command: %s", names);
        return NULL;
    }
    for (size_t i = 0; i < cmd->n_verbs; i++)
        if (strcmp(o->pos[0], cmd->verbs[i].name) == 0)
            return &cmd->verbs[i];
    corral_cli_usage_error(o, "unknown command '%s' (one of: %s)", o->pos[0], names);
    return NULL;
}

int corral_cli_main(const struct corral_cli_command *cmd, int argc, char **argv)
{
    struct corral_cli_opts o = {.prog = cmd->prog, .flags = cmd->flags, .n_flags = cmd->n_flags};
    assert(cmd->n_flags <= CORRAL_CLI_FLAGS_MAX && cmd->n_verbs > 0 &&
           strchr(cmd->prog, ' ') != NULL);
    int rv = parse_args(&o, argc, argv);
    if (rv == 0 && o.seen[CORRAL_CLI_O_HELP]) {
        fputs(cmd->usage, stdout);
        return CORRAL_EXIT_OK;
    }
    if (rv != 0)
        return rv;
    const struct corral_cli_verb *v = pick_verb(cmd, &o);
    if (v == NULL)
        return CORRAL_EXIT_USAGE;
    int skip = v->name != NULL ? 1 : 0;
    int nargs = o.npos - skip;
    /* "get", or "status" for a command without verbs */
    const char *name = v->name != NULL ? v->name : strrchr(o.prog, ' ') + 1;
    if (nargs < v->min_args || nargs > v->max_args)
        return v->max_args == 0
                   ? corral_cli_usage_error(&o, "'%s' takes no arguments", name)
                   : corral_cli_usage_error(&o, "wrong number of arguments for '%s'", name);
    if ((rv = check_flags(&o, v)) != 0)
        return rv;
    struct corral_cli_ctx x = {
        .o = &o, .args = o.pos + skip, .nargs = nargs, .timeout_ms = o.timeout_ms};
    rv = v->run(&x);
    if (x.opened)
        corral_client_close(&x.client);
    return rv;
}

/* A TLS file the client is to read: readable now, else a usage error. */
static int tls_file(const struct corral_cli_opts *o, const char *flag, const char *file)
{
    if (file == NULL)
        return 0;
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return corral_cli_usage_error(o, "%s %s: cannot read: %s", flag, file, strerror(errno));
    fclose(f);
    return 0;
}

/* --cacert (else $CORRAL_CACERT), --cert and --key, for every client made
 * from here on. */
static int client_tls(const struct corral_cli_opts *o)
{
    struct corral_client_tls t = {
        .cacert = o->value[CORRAL_CLI_O_CACERT],
        .cert = o->value[CORRAL_CLI_O_CERT],
        .key = o->value[CORRAL_CLI_O_KEY],
    };
    if (t.cacert == NULL)
        t.cacert = getenv("CORRAL_CACERT");
    if (t.cacert != NULL && t.cacert[0] == '\0')
        t.cacert = NULL;
    if ((t.cert == NULL) != (t.key == NULL))
        return corral_cli_usage_error(o, "--cert and --key go together: %s is missing",
                                      t.cert == NULL ? "--cert" : "--key");
    int rv = tls_file(o, o->value[CORRAL_CLI_O_CACERT] ? "--cacert" : "$CORRAL_CACERT", t.cacert);
    if (rv == 0)
        rv = tls_file(o, "--cert", t.cert);
    if (rv == 0)
        rv = tls_file(o, "--key", t.key);
    if (rv == 0)
        corral_client_set_tls(&t);
    return rv;
}

static int client_open(struct corral_cli_ctx *x)
{
    int trv = client_tls(x->o);
    if (trv != 0)
        return trv;
    const char *endpoints = x->o->value[CORRAL_CLI_O_ENDPOINTS];
    if (endpoints == NULL)
        endpoints = getenv("CORRAL_ENDPOINTS");
    if (endpoints == NULL || endpoints[0] == '\0')
        endpoints = CORRAL_CLI_DEFAULT_ENDPOINTS;
    int rv = corral_client_init(&x->client, endpoints, x->timeout_ms);
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", x->o->prog, x->client.err);
        return rv == CORRAL_EINVAL ? CORRAL_EXIT_USAGE : CORRAL_EXIT_FAILURE;
    }
    const char *tf = corral_client_token_file(x->o->value[CORRAL_CLI_O_TOKEN_FILE]);
    if (tf != NULL && corral_client_set_token_file(&x->client, tf) != 0) {
        fprintf(stderr, "%s: %s\n", x->o->prog, x->client.err);
        corral_client_close(&x->client);
        return CORRAL_EXIT_USAGE;
    }
    x->opened = 1;
    return 0;
}

void corral_cli_print_json(const struct corral_client_response *r)
{
    size_t len = r->body_len;
    while (len > 0 && (r->body[len - 1] == '\n' || r->body[len - 1] == '\r'))
        len--;
    if (memchr(r->body, '\n', len) == NULL && memchr(r->body, '\0', len) == NULL) {
        fwrite(r->body, 1, len, stdout);
        putchar('\n');
        return;
    }
    json_dumpf(r->json, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
    putchar('\n');
}

/* Reports an answer that is not a success and returns the exit code. */
static int report_error(const struct corral_cli_ctx *x, const struct corral_client_response *r)
{
    const char *code = r->code != NULL ? r->code : "unexpected_response";
    const char *message = r->message != NULL ? r->message : "the answer is not a corral error";
    if (x->o->seen[CORRAL_CLI_O_JSON] && r->json != NULL)
        corral_cli_print_json(r);
    fprintf(stderr, "%s: %s: %s (HTTP %ld from %s", x->o->prog, code, message, r->status, r->url);
    if (r->retry_after_s >= 0)
        fprintf(stderr, "; retry after %ld s", r->retry_after_s);
    if (r->tries > 1)
        fprintf(stderr, "; gave up after %d tries", r->tries);
    json_t *version = json_object_get(r->json, "version");
    if (strcmp(code, "cas_failed") == 0 && json_is_integer(version))
        fprintf(stderr, "; current version %" JSON_INTEGER_FORMAT, json_integer_value(version));
    json_t *replicas = json_object_get(r->json, "replicas");
    if (strcmp(code, "conflict") == 0 && json_is_integer(replicas))
        fprintf(stderr, "; %" JSON_INTEGER_FORMAT " replicas still held",
                json_integer_value(replicas));
    fprintf(stderr, ")\n");
    if (r->status == 404 && strcmp(code, "not_found") == 0)
        return CORRAL_EXIT_NOT_FOUND;
    if (r->status == 409 && strcmp(code, "cas_failed") == 0)
        return CORRAL_EXIT_CAS_FAILED;
    return CORRAL_EXIT_FAILURE;
}

/* After corral_client_request*: the exit code, or 0 for a 200 object. */
static int answered(struct corral_cli_ctx *x, int rv, struct corral_client_response *r)
{
    if (rv == CORRAL_ESHUTDOWN && x->cancel != NULL && *x->cancel != 0) {
        x->interrupted = 1;
        return CORRAL_EXIT_FAILURE;
    }
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", x->o->prog, x->client.err);
        return CORRAL_EXIT_FAILURE;
    }
    if (r->status == 200 && json_is_object(r->json))
        return 0;
    rv = report_error(x, r);
    corral_client_response_free(r);
    return rv;
}

/* Opens the client on first use and applies this request's settings. */
static int prepare(struct corral_cli_ctx *x, struct corral_client_response *r)
{
    memset(r, 0, sizeof(*r));
    r->retry_after_s = -1;
    int rv = x->opened ? 0 : client_open(x);
    x->client.timeout_ms = x->timeout_ms;
    x->client.cancel = x->cancel;
    x->interrupted = 0;
    return rv;
}

int corral_cli_call(struct corral_cli_ctx *x, const char *method, const char *path,
                    const char *query, const char *body, size_t body_len,
                    struct corral_client_response *r)
{
    int rv = prepare(x, r);
    if (rv != 0)
        return rv;
    return answered(x, corral_client_request(&x->client, method, path, query, body, body_len, r),
                    r);
}

int corral_cli_call_json(struct corral_cli_ctx *x, const char *method, const char *path,
                         const char *query, const json_t *body, struct corral_client_response *r)
{
    int rv = prepare(x, r);
    if (rv != 0)
        return rv;
    return answered(x, corral_client_request_json(&x->client, method, path, query, body, r), r);
}

int corral_cli_show(struct corral_cli_ctx *x, const char *method, const char *path,
                    const char *query, const json_t *body,
                    int (*print)(struct corral_cli_ctx *x, const json_t *answer))
{
    struct corral_client_response r;
    int rv = corral_cli_call_json(x, method, path, query, body, &r);
    if (rv != 0)
        return rv;
    if (x->o->seen[CORRAL_CLI_O_JSON])
        corral_cli_print_json(&r);
    else
        rv = print(x, r.json);
    corral_client_response_free(&r);
    return rv;
}

int corral_cli_print_deleted(struct corral_cli_ctx *x, const json_t *answer)
{
    (void)x;
    printf("OK %s deleted\n", corral_cli_str(answer, "name", "-"));
    return CORRAL_EXIT_OK;
}

const char *corral_cli_str(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL && s[0] != '\0' ? s : dflt;
}

const char *corral_cli_int_text(const json_t *obj, const char *key, char *buf, size_t len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf;
}

json_int_t corral_cli_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

void corral_cli_table_init(struct corral_cli_table *t, size_t ncols, const char *const *header)
{
    assert(ncols > 0 && ncols <= CORRAL_CLI_TABLE_COLS_MAX);
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    if (header != NULL)
        corral_cli_table_add(t, header);
}

void corral_cli_table_add(struct corral_cli_table *t, const char *const *row)
{
    if (t->failed)
        return;
    if (t->nrows == t->cap) {
        size_t cap = t->cap != 0 ? t->cap * 2 : 64;
        char **bigger = cap <= CORRAL_CLI_TABLE_ROWS_MAX
                            ? realloc(t->cells, cap * t->ncols * sizeof(*t->cells))
                            : NULL;
        if (bigger == NULL) {
            t->failed = 1;
            return;
        }
        t->cells = bigger;
        t->cap = cap;
    }
    char **cells = t->cells + t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        cells[c] = strdup(row[c]);
        if (cells[c] == NULL) {
            while (c-- > 0)
                free(cells[c]);
            t->failed = 1;
            return;
        }
        size_t len = strlen(row[c]);
        if (len > t->width[c])
            t->width[c] = len;
    }
    t->nrows++;
}

int corral_cli_table_print(struct corral_cli_table *t, const struct corral_cli_opts *o)
{
    for (size_t r = 0; r < t->nrows && !t->failed; r++) {
        char **cells = t->cells + r * t->ncols;
        for (size_t c = 0; c + 1 < t->ncols; c++)
            printf("%-*s  ", (int)t->width[c], cells[c]);
        printf("%s\n", cells[t->ncols - 1]);
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    if (t->failed)
        fprintf(stderr, "%s: out of memory (or over %u rows) building the table\n", o->prog,
                CORRAL_CLI_TABLE_ROWS_MAX);
    int rv = t->failed ? CORRAL_EXIT_FAILURE : CORRAL_EXIT_OK;
    memset(t, 0, sizeof(*t));
    return rv;
}
