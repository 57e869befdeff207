/* `corral status` and `corral kv get|put|del|ls`: the commands that talk
 * to a running cluster over the HTTP API (docs/api.md, docs/cli.md). They
 * share one option parser and one way of turning an answer into output
 * and an exit code. */
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
#include "core/kv.h"
#include "corral.h"

#define DEFAULT_ENDPOINTS "http://127.0.0.1:8140"
/* Above the server's 5 s request timeout, so its 503 timeout arrives. */
#define DEFAULT_TIMEOUT_MS 10000
#define TIMEOUT_MS_MAX 3600000
/* Positional arguments: `kv put KEY VALUE` has the most. */
#define ARGS_MAX 4
/* Keys `kv ls` prints when neither --limit nor --all is given, and the
 * most the server returns in one page (docs/api.md). */
#define LS_DEFAULT_LIMIT 100
#define LS_PAGE_MAX 1000

/* Which commands accept a flag. */
enum {
    F_STATUS = 1 << 0,
    F_GET = 1 << 1,
    F_PUT = 1 << 2,
    F_DEL = 1 << 3,
    F_LS = 1 << 4,
    F_ALL = F_STATUS | F_GET | F_PUT | F_DEL | F_LS,
};

enum flag_id {
    O_ENDPOINTS,
    O_TIMEOUT,
    O_JSON,
    O_HELP,
    O_STALE,
    O_VERBOSE,
    O_RAW,
    O_CAS,
    O_LIMIT,
    O_ALL,
    O_N
};

struct flag {
    const char *name;
    const char *alias;
    int takes_value;
    int commands; /* F_* that accept it */
};

static const struct flag flags[O_N] = {
    [O_ENDPOINTS] = {"--endpoints", NULL, 1, F_ALL},
    [O_TIMEOUT] = {"--timeout-ms", NULL, 1, F_ALL},
    [O_JSON] = {"--json", NULL, 0, F_ALL},
    [O_HELP] = {"--help", "-h", 0, F_ALL},
    [O_STALE] = {"--stale", NULL, 0, F_GET | F_LS},
    [O_VERBOSE] = {"--verbose", "-v", 0, F_GET | F_LS},
    [O_RAW] = {"--raw", NULL, 0, F_GET},
    [O_CAS] = {"--cas", NULL, 1, F_PUT | F_DEL},
    [O_LIMIT] = {"--limit", NULL, 1, F_LS},
    [O_ALL] = {"--all", NULL, 0, F_LS},
};

struct opts {
    const char *prog;
    int seen[O_N];
    const char *value[O_N];
    const char *pos[ARGS_MAX];
    int npos;
    long timeout_ms;
    uint64_t cas;
    uint64_t limit;
};

struct ctx {
    struct opts *o;
    struct corral_client client;
};

static const char status_usage[] =
    "usage: corral status [--endpoints URL[,URL...]] [--timeout-ms N] [--json]\n"
    "\n"
    "Prints the answering node's role, term, leader, commit and applied\n"
    "indexes, and its view of every peer.\n";

static const char kv_usage[] =
    "usage: corral kv get KEY [--stale] [-v] [--raw]\n"
    "       corral kv put KEY VALUE|- [--cas VERSION]\n"
    "       corral kv del KEY [--cas VERSION]\n"
    "       corral kv ls [PREFIX] [--limit N | --all] [--stale] [-v]\n"
    "\n"
    "options for every command:\n"
    "  --endpoints URL[,URL...]  servers to try in order (default $CORRAL_ENDPOINTS,\n"
    "                            else " DEFAULT_ENDPOINTS ")\n"
    "  --timeout-ms N            per request (default 10000)\n"
    "  --json                    print the server's JSON answer on one line\n"
    "  --help                    print this text\n"
    "\n"
    "get prints the value and a newline (--raw: the exact bytes only; -v: then\n"
    "'version N'); --stale reads the answering node's state without Raft.\n"
    "put prints 'OK version N'; VALUE '-' reads the value from stdin.\n"
    "--cas VERSION writes only if the key's version is VERSION (0: absent).\n"
    "del prints 'OK deleted version N'.\n"
    "ls prints 'KEY<TAB>VALUE' lines (-v: 'KEY<TAB>VERSION<TAB>VALUE'), at most\n"
    "N keys (default 100), or every key with --all.\n"
    "\n"
    "Exit codes: 0 success, 1 failure (server error, unreachable), 2 usage,\n"
    "3 key not found, 4 --cas version mismatch.\n";

__attribute__((format(printf, 2, 3))) static int usage_error(const struct opts *o, const char *fmt,
                                                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", o->prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see '%s --help')\n", o->prog);
    va_end(ap);
    return CORRAL_EXIT_USAGE;
}

static int find_flag(const char *arg, size_t len)
{
    for (int i = 0; i < O_N; i++)
        if ((strlen(flags[i].name) == len && strncmp(arg, flags[i].name, len) == 0) ||
            (flags[i].alias != NULL && strlen(flags[i].alias) == len &&
             strncmp(arg, flags[i].alias, len) == 0))
            return i;
    return -1;
}

/* One option at argv[*i], "--name VALUE" or "--name=VALUE". */
static int parse_flag(struct opts *o, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    int f = find_flag(arg, len);
    if (f < 0)
        return usage_error(o, "unknown option '%s'", arg);
    if (!flags[f].takes_value && eq != NULL)
        return usage_error(o, "%s takes no value", flags[f].name);
    if (flags[f].takes_value && eq == NULL && *i + 1 >= argc)
        return usage_error(o, "%s needs a value", flags[f].name);
    o->seen[f] = 1;
    if (flags[f].takes_value)
        o->value[f] = eq != NULL ? eq + 1 : argv[++*i];
    return 0;
}

/* Options may come anywhere; "--" ends them; "-" alone is an argument. */
static int parse_args(struct opts *o, int argc, char **argv)
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
        } else if (o->npos == ARGS_MAX) {
            return usage_error(o, "too many arguments");
        } else {
            o->pos[o->npos++] = arg;
        }
    }
    return 0;
}

static int parse_u64(const struct opts *o, int f, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = o->value[f];
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        return usage_error(o, "%s must be an integer within %" PRIu64 "..%" PRIu64 ", not '%s'",
                           flags[f].name, min, max, s);
    *out = v;
    return 0;
}

/* Checks the flags against the command (mask) and reads their values. */
static int check_flags(struct opts *o, int mask)
{
    for (int f = 0; f < O_N; f++)
        if (o->seen[f] && !(flags[f].commands & mask))
            return usage_error(o, "%s does not apply here", flags[f].name);
    uint64_t timeout_ms = DEFAULT_TIMEOUT_MS;
    int rv = 0;
    if (o->seen[O_TIMEOUT])
        rv = parse_u64(o, O_TIMEOUT, 1, TIMEOUT_MS_MAX, &timeout_ms);
    o->timeout_ms = (long)timeout_ms;
    if (rv == 0 && o->seen[O_CAS])
        rv = parse_u64(o, O_CAS, 0, INT64_MAX, &o->cas);
    o->limit = LS_DEFAULT_LIMIT;
    if (rv == 0 && o->seen[O_LIMIT])
        rv = parse_u64(o, O_LIMIT, 1, CORRAL_KV_KEYS_MAX, &o->limit);
    if (rv == 0 && o->seen[O_LIMIT] && o->seen[O_ALL])
        rv = usage_error(o, "--limit and --all exclude each other");
    if (o->seen[O_ALL])
        o->limit = UINT64_MAX;
    return rv;
}

static int client_open(struct ctx *x)
{
    const char *endpoints = x->o->value[O_ENDPOINTS];
    if (endpoints == NULL)
        endpoints = getenv("CORRAL_ENDPOINTS");
    if (endpoints == NULL || endpoints[0] == '\0')
        endpoints = DEFAULT_ENDPOINTS;
    int rv = corral_client_init(&x->client, endpoints, x->o->timeout_ms);
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", x->o->prog, x->client.err);
        return rv == CORRAL_EINVAL ? CORRAL_EXIT_USAGE : CORRAL_EXIT_FAILURE;
    }
    return 0;
}

/* The server's JSON on one line: the body as sent when it is one line,
 * else re-encoded compactly. */
static void print_json(const struct corral_client_response *r)
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
static int report_error(const struct ctx *x, const struct corral_client_response *r)
{
    const char *code = r->code != NULL ? r->code : "unexpected_response";
    const char *message = r->message != NULL ? r->message : "the answer is not a corral error";
    if (x->o->seen[O_JSON] && r->json != NULL)
        print_json(r);
    fprintf(stderr, "%s: %s: %s (HTTP %ld from %s", x->o->prog, code, message, r->status, r->url);
    if (r->retry_after_s >= 0)
        fprintf(stderr, "; retry after %ld s", r->retry_after_s);
    json_t *version = json_object_get(r->json, "version");
    if (strcmp(code, "cas_failed") == 0 && json_is_integer(version))
        fprintf(stderr, "; current version %" JSON_INTEGER_FORMAT, json_integer_value(version));
    fprintf(stderr, ")\n");
    if (r->status == 404 && strcmp(code, "not_found") == 0)
        return CORRAL_EXIT_NOT_FOUND;
    if (r->status == 409 && strcmp(code, "cas_failed") == 0)
        return CORRAL_EXIT_CAS_FAILED;
    return CORRAL_EXIT_FAILURE;
}

/* Sends one request. Returns 0 with a 200 JSON object in *r, or an exit
 * code (having printed why). */
static int call(struct ctx *x, const char *method, const char *path, const char *query,
                const char *body, size_t body_len, struct corral_client_response *r)
{
    int rv = corral_client_request(&x->client, method, path, query, body, body_len, r);
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

static const char *str_or(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : dflt;
}

/* An integer field as text, "-" when absent or null. */
static const char *int_text(const json_t *obj, const char *key, char *buf, size_t len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return "-";
    snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf;
}

static const char *yes_no(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? (json_is_true(v) ? "yes" : "no") : "-";
}

static void print_status(const json_t *s)
{
    char a[32], b[32], c[32];
    printf("node %s  role %s  term %s  cluster %s\n", int_text(s, "id", a, sizeof(a)),
           str_or(s, "role", "-"), int_text(s, "term", b, sizeof(b)), str_or(s, "cluster_id", "-"));
    printf("http %s  cluster-addr %s\n", str_or(s, "http_addr", "-"),
           str_or(s, "cluster_addr", "-"));
    const json_t *leader = json_object_get(s, "leader");
    if (json_is_object(leader))
        printf("leader %s at %s\n", int_text(leader, "id", a, sizeof(a)),
               str_or(leader, "http", "-"));
    else
        printf("leader none\n");
    printf("commit %s  applied %s\n", int_text(s, "commit", a, sizeof(a)),
           int_text(s, "applied", b, sizeof(b)));
    const json_t *peers = json_object_get(s, "peers");
    if (json_array_size(peers) == 0)
        return;
    printf("\n%-4s %-22s %-22s %-5s %-9s %-10s %s\n", "ID", "CLUSTER-ADDR", "HTTP", "VOTER",
           "CONNECTED", "MATCH", "LAST-CONTACT-AGE-MS");
    size_t i;
    const json_t *p;
    json_array_foreach(peers, i, p)
    {
        printf("%-4s %-22s %-22s %-5s %-9s %-10s %s\n", int_text(p, "id", a, sizeof(a)),
               str_or(p, "cluster_addr", "-"), str_or(p, "http", "-"), yes_no(p, "voter"),
               yes_no(p, "connected"), int_text(p, "match", b, sizeof(b)),
               int_text(p, "last_contact_age_ms", c, sizeof(c)));
    }
}

static int run_status(struct ctx *x)
{
    if (x->o->npos != 0)
        return usage_error(x->o, "status takes no arguments");
    struct corral_client_response r;
    int rv = call(x, "GET", "/v1/status", NULL, NULL, 0, &r);
    if (rv != 0)
        return rv;
    if (x->o->seen[O_JSON])
        print_json(&r);
    else
        print_status(r.json);
    corral_client_response_free(&r);
    return CORRAL_EXIT_OK;
}

int corral_cmd_status(int argc, char **argv)
{
    struct opts o = {.prog = "corral status"};
    int rv = parse_args(&o, argc, argv);
    if (rv == 0 && o.seen[O_HELP]) {
        fputs(status_usage, stdout);
        return CORRAL_EXIT_OK;
    }
    if (rv != 0 || (rv = check_flags(&o, F_STATUS)) != 0)
        return rv;
    struct ctx x = {.o = &o};
    if ((rv = client_open(&x)) != 0)
        return rv;
    rv = run_status(&x);
    corral_client_close(&x.client);
    return rv;
}

/* "/v1/kv/<key, percent-encoded but for '/'>", malloc'd. */
static char *key_path(const struct opts *o, const char *key)
{
    char *esc = corral_client_escape(key, strlen(key), 1, CORRAL_CLIENT_URL_BYTES_MAX);
    size_t n = esc != NULL ? strlen(esc) + sizeof("/v1/kv/") : 0;
    char *path = esc != NULL ? malloc(n) : NULL;
    if (path != NULL)
        snprintf(path, n, "/v1/kv/%s", esc);
    else
        fprintf(stderr, "%s: out of memory\n", o->prog);
    free(esc);
    return path;
}

static int check_key(const struct opts *o, const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || len > CORRAL_KV_KEY_BYTES_MAX)
        return usage_error(o, "a key is 1..%d bytes, not %zu", CORRAL_KV_KEY_BYTES_MAX, len);
    return 0;
}

static json_int_t int_field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void print_value(const json_t *item)
{
    const json_t *v = json_object_get(item, "value");
    fwrite(json_string_value(v) != NULL ? json_string_value(v) : "", 1, json_string_length(v),
           stdout);
}

static int kv_get(struct ctx *x, const char *key)
{
    char *path = key_path(x->o, key);
    if (path == NULL)
        return CORRAL_EXIT_FAILURE;
    struct corral_client_response r;
    int rv = call(x, "GET", path, x->o->seen[O_STALE] ? "stale=1" : NULL, NULL, 0, &r);
    free(path);
    if (rv != 0)
        return rv;
    if (x->o->seen[O_JSON]) {
        print_json(&r);
    } else {
        print_value(r.json);
        if (!x->o->seen[O_RAW])
            putchar('\n');
        if (x->o->seen[O_VERBOSE])
            printf("version %" JSON_INTEGER_FORMAT "\n", int_field(r.json, "version"));
    }
    corral_client_response_free(&r);
    return CORRAL_EXIT_OK;
}

/* Reads stdin into *buf, at most CORRAL_KV_VALUE_BYTES_MAX bytes. */
static int read_stdin(const struct opts *o, char **buf, size_t *len)
{
    size_t cap = CORRAL_KV_VALUE_BYTES_MAX + 1;
    *buf = malloc(cap);
    if (*buf == NULL) {
        fprintf(stderr, "%s: out of memory\n", o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    *len = fread(*buf, 1, cap, stdin);
    if (ferror(stdin)) {
        fprintf(stderr, "%s: reading stdin: %s\n", o->prog, strerror(errno));
        return CORRAL_EXIT_FAILURE;
    }
    if (*len > CORRAL_KV_VALUE_BYTES_MAX)
        return usage_error(o, "the value on stdin is over %u bytes", CORRAL_KV_VALUE_BYTES_MAX);
    return 0;
}

/* Sends a PUT or DELETE with the optional ?cas and prints the outcome. */
static int kv_write(struct ctx *x, const char *method, const char *key, const char *value,
                    size_t value_len)
{
    char *path = key_path(x->o, key);
    if (path == NULL)
        return CORRAL_EXIT_FAILURE;
    char query[48];
    snprintf(query, sizeof(query), "cas=%" PRIu64, x->o->cas);
    struct corral_client_response r;
    int rv = call(x, method, path, x->o->seen[O_CAS] ? query : NULL, value, value_len, &r);
    free(path);
    if (rv != 0)
        return rv;
    if (x->o->seen[O_JSON])
        print_json(&r);
    else
        printf("OK %sversion %" JSON_INTEGER_FORMAT "\n", value == NULL ? "deleted " : "",
               int_field(r.json, "version"));
    corral_client_response_free(&r);
    return CORRAL_EXIT_OK;
}

static int kv_put(struct ctx *x, const char *key, const char *arg)
{
    if (strcmp(arg, "-") != 0) {
        size_t len = strlen(arg);
        if (len > CORRAL_KV_VALUE_BYTES_MAX)
            return usage_error(x->o, "the value is over %u bytes", CORRAL_KV_VALUE_BYTES_MAX);
        return kv_write(x, "PUT", key, arg, len);
    }
    char *buf;
    size_t len;
    int rv = read_stdin(x->o, &buf, &len);
    if (rv == 0)
        rv = kv_write(x, "PUT", key, buf, len);
    free(buf);
    return rv;
}

/* One page of `kv ls`: prefix=, limit=, after= and stale= as a query. */
static char *ls_query(const struct opts *o, const char *prefix, const char *after, uint64_t n)
{
    char *p = corral_client_escape(prefix, strlen(prefix), 0, CORRAL_CLIENT_URL_BYTES_MAX);
    char *a = after != NULL
                  ? corral_client_escape(after, strlen(after), 0, CORRAL_CLIENT_URL_BYTES_MAX)
                  : NULL;
    char *q = malloc(CORRAL_CLIENT_URL_BYTES_MAX);
    if (p == NULL || (after != NULL && a == NULL) || q == NULL) {
        fprintf(stderr, "%s: out of memory\n", o->prog);
        free(q);
        q = NULL;
    } else {
        snprintf(q, CORRAL_CLIENT_URL_BYTES_MAX, "prefix=%s&limit=%" PRIu64 "%s%s%s", p, n,
                 a != NULL ? "&after=" : "", a != NULL ? a : "",
                 o->seen[O_STALE] ? "&stale=1" : "");
    }
    free(p);
    free(a);
    return q;
}

struct listing {
    json_t *items; /* collected for --json */
    uint64_t left; /* keys still to print */
    char *after;   /* the last key seen, malloc'd */
    int more;      /* the server has keys after `after` */
};

static void print_item(const struct opts *o, const json_t *item)
{
    fputs(str_or(item, "key", ""), stdout);
    if (o->seen[O_VERBOSE])
        printf("\t%" JSON_INTEGER_FORMAT, int_field(item, "version"));
    putchar('\t');
    print_value(item);
    putchar('\n');
}

/* Takes one page's items. Keys must increase, or paging could loop. */
static int ls_take(const struct ctx *x, struct listing *l, const json_t *page)
{
    const json_t *items = json_object_get(page, "items");
    size_t i;
    const json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *key = json_string_value(json_object_get(item, "key"));
        if (l->left == 0 || key == NULL || (l->after != NULL && strcmp(key, l->after) <= 0)) {
            fprintf(stderr, "%s: the server's listing is out of order or malformed\n", x->o->prog);
            return CORRAL_EXIT_FAILURE;
        }
        if (x->o->seen[O_JSON])
            json_array_append(l->items, (json_t *)item);
        else
            print_item(x->o, item);
        free(l->after);
        if ((l->after = strdup(key)) == NULL)
            return CORRAL_EXIT_FAILURE;
        l->left--;
    }
    l->more = json_is_true(json_object_get(page, "more"));
    if (l->more && json_array_size(items) == 0) {
        fprintf(stderr, "%s: the server said there is more but sent no keys\n", x->o->prog);
        return CORRAL_EXIT_FAILURE;
    }
    return 0;
}

static int ls_pages(struct ctx *x, const char *prefix, struct listing *l)
{
    do {
        uint64_t n = l->left < LS_PAGE_MAX ? l->left : LS_PAGE_MAX;
        char *query = ls_query(x->o, prefix, l->after, n);
        if (query == NULL)
            return CORRAL_EXIT_FAILURE;
        struct corral_client_response r;
        int rv = call(x, "GET", "/v1/kv/", query, NULL, 0, &r);
        free(query);
        if (rv != 0)
            return rv;
        rv = ls_take(x, l, r.json);
        corral_client_response_free(&r);
        if (rv != 0)
            return rv;
    } while (l->more && l->left > 0);
    return 0;
}

static int kv_ls(struct ctx *x, const char *prefix)
{
    struct listing l = {.items = json_array(), .left = x->o->limit};
    int rv = l.items == NULL ? CORRAL_EXIT_FAILURE : ls_pages(x, prefix, &l);
    if (rv == 0 && x->o->seen[O_JSON]) {
        json_t *out = json_pack("{s:O,s:b}", "items", l.items, "more", l.more);
        json_dumpf(out, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(out);
    } else if (rv == 0 && l.more) {
        fprintf(stderr, "%s: more keys after '%s'; use --limit N or --all\n", x->o->prog, l.after);
    }
    json_decref(l.items);
    free(l.after);
    return rv;
}

struct verb {
    const char *name;
    int mask;
    int min_args, max_args; /* after the verb */
};

static const struct verb verbs[] = {
    {"get", F_GET, 1, 1},
    {"put", F_PUT, 2, 2},
    {"del", F_DEL, 1, 1},
    {"ls", F_LS, 0, 1},
};

static int run_kv(struct ctx *x, const struct verb *v)
{
    const char **arg = x->o->pos + 1;
    if (v->mask != F_LS) {
        int rv = check_key(x->o, arg[0]);
        if (rv != 0)
            return rv;
    }
    switch (v->mask) {
    case F_GET:
        return kv_get(x, arg[0]);
    case F_PUT:
        return kv_put(x, arg[0], arg[1]);
    case F_DEL:
        return kv_write(x, "DELETE", arg[0], NULL, 0);
    default:
        return kv_ls(x, x->o->npos > 1 ? arg[0] : "");
    }
}

static const struct verb *find_verb(const struct opts *o)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (o->npos > 0 && strcmp(o->pos[0], verbs[i].name) == 0)
            return &verbs[i];
    return NULL;
}

int corral_cmd_kv(int argc, char **argv)
{
    struct opts o = {.prog = "corral kv"};
    int rv = parse_args(&o, argc, argv);
    if (rv == 0 && o.seen[O_HELP]) {
        fputs(kv_usage, stdout);
        return CORRAL_EXIT_OK;
    }
    if (rv != 0)
        return rv;
    const struct verb *v = find_verb(&o);
    if (v == NULL)
        return o.npos == 0 ? usage_error(&o, "missing command: get, put, del or ls")
                           : usage_error(&o, "unknown command '%s'", o.pos[0]);
    if (o.npos - 1 < v->min_args || o.npos - 1 > v->max_args)
        return usage_error(&o, "wrong number of arguments for '%s'", v->name);
    if ((rv = check_flags(&o, v->mask)) != 0)
        return rv;
    struct ctx x = {.o = &o};
    if ((rv = client_open(&x)) != 0)
        return rv;
    rv = run_kv(&x, v);
    corral_client_close(&x.client);
    return rv;
}
