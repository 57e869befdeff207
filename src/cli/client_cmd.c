/* `corral status` and `corral kv get|put|del|ls`: the node's view of the
 * cluster and the replicated config store, over the HTTP API (docs/api.md,
 * docs/cli.md); parsing, requests and errors are client_common.h's. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/client_common.h"
#include "core/kv.h"
#include "corral.h"
#include "util/base64.h"
#include "util/utf8.h"

/* Keys `kv ls` prints when neither --limit nor --all is given, and the
 * most the server returns in one page (docs/api.md). */
#define LS_DEFAULT_LIMIT 100
#define LS_PAGE_MAX 1000

/* Which verbs accept a flag. */
enum {
    F_STATUS = 1 << 0,
    F_GET = 1 << 1,
    F_PUT = 1 << 2,
    F_DEL = 1 << 3,
    F_LS = 1 << 4,
};

enum flag_id { O_STALE = CORRAL_CLI_O_COMMON, O_VERBOSE, O_RAW, O_CAS, O_LIMIT, O_ALL, O_N };

static const struct corral_cli_flag flags[O_N] = {
    CORRAL_CLI_COMMON_FLAGS,
    [O_STALE] = {"--stale", NULL, 0, F_GET | F_LS},
    [O_VERBOSE] = {"--verbose", "-v", 0, F_GET | F_LS},
    [O_RAW] = {"--raw", NULL, 0, F_GET},
    [O_CAS] = {"--cas", NULL, 1, F_PUT | F_DEL},
    [O_LIMIT] = {"--limit", NULL, 1, F_LS},
    [O_ALL] = {"--all", NULL, 0, F_LS},
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
    "\n" CORRAL_CLI_COMMON_USAGE "\n"
    "get prints the value and a newline (--raw: the exact bytes only; -v: then\n"
    "'version N'); a UTF-8 value prints as it is, any other escaped as ls does.\n"
    "--stale reads the answering node's state without Raft.\n"
    "put prints 'OK version N'; VALUE '-' reads the value from stdin.\n"
    "--cas VERSION writes only if the key's version is VERSION (0: absent).\n"
    "del prints 'OK deleted version N'.\n"
    "ls prints 'KEY<TAB>VALUE' lines (-v: 'KEY<TAB>VERSION<TAB>VALUE'), at most\n"
    "N keys (default 100), or every key with --all; in keys and values a tab,\n"
    "newline, CR and backslash print as \\t \\n \\r \\\\, other control bytes and\n"
    "bytes that are not UTF-8 as \\xHH.\n"
    "\n"
    "Exit codes: 0 success, 1 failure (server error, unreachable), 2 usage,\n"
    "3 key not found, 4 --cas version mismatch.\n";

static const char *yes_no(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? (json_is_true(v) ? "yes" : "no") : "-";
}

static void print_status(const json_t *s)
{
    char a[32], b[32], c[32];
    printf("node %s  role %s  term %s  cluster %s\n", corral_cli_int_text(s, "id", a, sizeof(a)),
           corral_cli_str(s, "role", "-"), corral_cli_int_text(s, "term", b, sizeof(b)),
           corral_cli_str(s, "cluster_id", "-"));
    printf("http %s  cluster-addr %s\n", corral_cli_str(s, "http_addr", "-"),
           corral_cli_str(s, "cluster_addr", "-"));
    const json_t *leader = json_object_get(s, "leader");
    if (json_is_object(leader))
        printf("leader %s at %s\n", corral_cli_int_text(leader, "id", a, sizeof(a)),
               corral_cli_str(leader, "http", "-"));
    else
        printf("leader none\n");
    printf("commit %s  applied %s\n", corral_cli_int_text(s, "commit", a, sizeof(a)),
           corral_cli_int_text(s, "applied", b, sizeof(b)));
    const json_t *peers = json_object_get(s, "peers");
    if (json_array_size(peers) == 0)
        return;
    printf("\n%-4s %-22s %-22s %-5s %-9s %-10s %s\n", "ID", "CLUSTER-ADDR", "HTTP", "VOTER",
           "CONNECTED", "MATCH", "LAST-CONTACT-AGE-MS");
    size_t i;
    const json_t *p;
    json_array_foreach(peers, i, p)
    {
        printf("%-4s %-22s %-22s %-5s %-9s %-10s %s\n", corral_cli_int_text(p, "id", a, sizeof(a)),
               corral_cli_str(p, "cluster_addr", "-"), corral_cli_str(p, "http", "-"),
               yes_no(p, "voter"), yes_no(p, "connected"),
               corral_cli_int_text(p, "match", b, sizeof(b)),
               corral_cli_int_text(p, "last_contact_age_ms", c, sizeof(c)));
    }
}

static int run_status(struct corral_cli_ctx *x)
{
    struct corral_client_response r;
    int rv = corral_cli_call(x, "GET", "/v1/status", NULL, NULL, 0, &r);
    if (rv != 0)
        return rv;
    if (x->o->seen[CORRAL_CLI_O_JSON])
        corral_cli_print_json(&r);
    else
        print_status(r.json);
    corral_client_response_free(&r);
    return CORRAL_EXIT_OK;
}

static const struct corral_cli_verb status_verbs[] = {{NULL, F_STATUS, 0, 0, run_status}};

static const struct corral_cli_command status_command = {
    "corral status", status_usage, flags, O_N, status_verbs, 1};

int corral_cmd_status(int argc, char **argv)
{
    return corral_cli_main(&status_command, argc, argv);
}

/* "/v1/kv/<key, percent-encoded but for '/'>", malloc'd. */
static char *key_path(const struct corral_cli_opts *o, const char *key)
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

static int check_key(const struct corral_cli_opts *o, const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || len > CORRAL_KV_KEY_BYTES_MAX)
        return corral_cli_usage_error(o, "a key is 1..%d bytes, not %zu", CORRAL_KV_KEY_BYTES_MAX,
                                      len);
    return 0;
}

/* An item's value: "value" as it is, or "value_base64" decoded into
 * owned (docs/api.md). */
struct value {
    const uint8_t *p;
    size_t len;
    bool binary;    /* it came as value_base64: it is not UTF-8 */
    uint8_t *owned; /* malloc'd, or NULL; free with value_free */
};

static void value_free(struct value *v)
{
    free(v->owned);
    v->owned = NULL;
}

/* Fills v from item, or says on stderr why it cannot and returns
 * CORRAL_EXIT_FAILURE. */
static int value_of(const struct corral_cli_opts *o, const json_t *item, struct value *v)
{
    const json_t *s = json_object_get(item, "value");
    const json_t *b64 = json_object_get(item, "value_base64");
    *v = (struct value){0};
    if (json_is_string(s) && b64 == NULL) {
        v->p = (const uint8_t *)json_string_value(s);
        v->len = json_string_length(s);
        return 0;
    }
    if (json_is_string(b64) && s == NULL) {
        size_t n = json_string_length(b64);
        v->owned = malloc(corral_base64_decoded_max(n) + 1);
        if (v->owned == NULL) {
            fprintf(stderr, "%s: out of memory\n", o->prog);
            return CORRAL_EXIT_FAILURE;
        }
        if (corral_base64_decode(json_string_value(b64), n, v->owned, &v->len) == 0) {
            v->p = v->owned;
            v->binary = true;
            return 0;
        }
        value_free(v);
    }
    fprintf(stderr, "%s: the server's answer holds no value or a malformed one\n", o->prog);
    return CORRAL_EXIT_FAILURE;
}

/* Writes bytes for one field of an `ls` line, or a binary value of `get`:
 * a tab, newline, carriage return or backslash as \t, \n, \r, \\, any
 * other control character (below 0x20, and 0x7f) and each byte that is
 * not part of valid UTF-8 as \xHH, every other byte as it is; so a line
 * always holds exactly the fields it should, and reads back one way. */
static void print_escaped(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        size_t seq = corral_utf8_seq(p + i, n - i);
        if (seq > 1) {
            fwrite(p + i, 1, seq, stdout);
            i += seq;
            continue;
        }
        if (ch == '\t')
            fputs("\\t", stdout);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch == '\r')
            fputs("\\r", stdout);
        else if (ch == '\\')
            fputs("\\\\", stdout);
        else if (seq == 0 || ch < 0x20 || ch == 0x7f)
            printf("\\x%02x", ch);
        else
            putchar(ch);
        i++;
    }
}

static void print_escaped_str(const json_t *s)
{
    const char *p = json_string_value(s);
    print_escaped((const uint8_t *)(p != NULL ? p : ""), p != NULL ? json_string_length(s) : 0);
}

static int kv_get(struct corral_cli_ctx *x, const char *key)
{
    char *path = key_path(x->o, key);
    if (path == NULL)
        return CORRAL_EXIT_FAILURE;
    struct corral_client_response r;
    int rv = corral_cli_call(x, "GET", path, x->o->seen[O_STALE] ? "stale=1" : NULL, NULL, 0, &r);
    free(path);
    if (rv != 0)
        return rv;
    struct value v = {0};
    if (x->o->seen[CORRAL_CLI_O_JSON]) {
        corral_cli_print_json(&r);
    } else if ((rv = value_of(x->o, r.json, &v)) == 0) {
        if (v.binary && !x->o->seen[O_RAW])
            print_escaped(v.p, v.len);
        else
            fwrite(v.p, 1, v.len, stdout);
        if (!x->o->seen[O_RAW])
            putchar('\n');
        if (x->o->seen[O_VERBOSE])
            printf("version %" JSON_INTEGER_FORMAT "\n", corral_cli_int(r.json, "version"));
        value_free(&v);
    }
    corral_client_response_free(&r);
    return rv != 0 ? rv : CORRAL_EXIT_OK;
}

/* Reads stdin into *buf, at most CORRAL_KV_VALUE_BYTES_MAX bytes. */
static int read_stdin(const struct corral_cli_opts *o, char **buf, size_t *len)
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
        return corral_cli_usage_error(o, "the value on stdin is over %u bytes",
                                      CORRAL_KV_VALUE_BYTES_MAX);
    return 0;
}

/* Sends a PUT or DELETE with the query ("cas=N" or none) and prints the
 * outcome. */
static int kv_write(struct corral_cli_ctx *x, const char *method, const char *key,
                    const char *value, size_t value_len, const char *query)
{
    char *path = key_path(x->o, key);
    if (path == NULL)
        return CORRAL_EXIT_FAILURE;
    struct corral_client_response r;
    int rv = corral_cli_call(x, method, path, query, value, value_len, &r);
    free(path);
    if (rv != 0)
        return rv;
    if (x->o->seen[CORRAL_CLI_O_JSON])
        corral_cli_print_json(&r);
    else
        printf("OK %sversion %" JSON_INTEGER_FORMAT "\n", value == NULL ? "deleted " : "",
               corral_cli_int(r.json, "version"));
    corral_client_response_free(&r);
    return CORRAL_EXIT_OK;
}

static int kv_put(struct corral_cli_ctx *x, const char *key, const char *arg, const char *query)
{
    if (strcmp(arg, "-") != 0) {
        size_t len = strlen(arg);
        if (len > CORRAL_KV_VALUE_BYTES_MAX)
            return corral_cli_usage_error(x->o, "the value is over %u bytes",
                                          CORRAL_KV_VALUE_BYTES_MAX);
        return kv_write(x, "PUT", key, arg, len, query);
    }
    char *buf;
    size_t len;
    int rv = read_stdin(x->o, &buf, &len);
    if (rv == 0)
        rv = kv_write(x, "PUT", key, buf, len, query);
    free(buf);
    return rv;
}

/* One page of `kv ls`: prefix=, limit=, after= and stale= as a query. */
static char *ls_query(const struct corral_cli_opts *o, const char *prefix, const char *after,
                      uint64_t n)
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

static int print_item(const struct corral_cli_opts *o, const json_t *item)
{
    struct value v;
    int rv = value_of(o, item, &v);
    if (rv != 0)
        return rv;
    print_escaped_str(json_object_get(item, "key"));
    if (o->seen[O_VERBOSE])
        printf("\t%" JSON_INTEGER_FORMAT, corral_cli_int(item, "version"));
    putchar('\t');
    print_escaped(v.p, v.len);
    putchar('\n');
    value_free(&v);
    return 0;
}

/* Takes one page's items. Keys must increase, or paging could loop. */
static int ls_take(const struct corral_cli_ctx *x, struct listing *l, const json_t *page)
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
        if (x->o->seen[CORRAL_CLI_O_JSON])
            json_array_append(l->items, (json_t *)item);
        else if (print_item(x->o, item) != 0)
            return CORRAL_EXIT_FAILURE;
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

static int ls_pages(struct corral_cli_ctx *x, const char *prefix, struct listing *l)
{
    do {
        uint64_t n = l->left < LS_PAGE_MAX ? l->left : LS_PAGE_MAX;
        char *query = ls_query(x->o, prefix, l->after, n);
        if (query == NULL)
            return CORRAL_EXIT_FAILURE;
        struct corral_client_response r;
        int rv = corral_cli_call(x, "GET", "/v1/kv/", query, NULL, 0, &r);
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

static int kv_ls(struct corral_cli_ctx *x, const char *prefix)
{
    uint64_t limit = LS_DEFAULT_LIMIT;
    if (x->o->seen[O_LIMIT] && x->o->seen[O_ALL])
        return corral_cli_usage_error(x->o, "--limit and --all exclude each other");
    if (x->o->seen[O_LIMIT] &&
        corral_cli_flag_u64(x->o, O_LIMIT, 1, CORRAL_KV_KEYS_MAX, &limit) != 0)
        return CORRAL_EXIT_USAGE;
    if (x->o->seen[O_ALL])
        limit = UINT64_MAX;
    struct listing l = {.items = json_array(), .left = limit};
    int rv = l.items == NULL ? CORRAL_EXIT_FAILURE : ls_pages(x, prefix, &l);
    if (rv == 0 && x->o->seen[CORRAL_CLI_O_JSON]) {
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

/* The key and --cas, checked before stdin is read or anything is sent;
 * *query is "cas=N", or NULL without --cas. */
static int check_write(struct corral_cli_ctx *x, char *buf, size_t len, const char **query)
{
    uint64_t cas = 0;
    int rv = check_key(x->o, x->args[0]);
    if (rv == 0 && x->o->seen[O_CAS])
        rv = corral_cli_flag_u64(x->o, O_CAS, 0, INT64_MAX, &cas);
    snprintf(buf, len, "cas=%" PRIu64, cas);
    *query = x->o->seen[O_CAS] ? buf : NULL;
    return rv;
}

static int run_get(struct corral_cli_ctx *x)
{
    int rv = check_key(x->o, x->args[0]);
    return rv != 0 ? rv : kv_get(x, x->args[0]);
}

static int run_put(struct corral_cli_ctx *x)
{
    char buf[48];
    const char *query;
    int rv = check_write(x, buf, sizeof(buf), &query);
    return rv != 0 ? rv : kv_put(x, x->args[0], x->args[1], query);
}

static int run_del(struct corral_cli_ctx *x)
{
    char buf[48];
    const char *query;
    int rv = check_write(x, buf, sizeof(buf), &query);
    return rv != 0 ? rv : kv_write(x, "DELETE", x->args[0], NULL, 0, query);
}

static int run_ls(struct corral_cli_ctx *x)
{
    return kv_ls(x, x->nargs > 0 ? x->args[0] : "");
}

static const struct corral_cli_verb kv_verbs[] = {
    {"get", F_GET, 1, 1, run_get},
    {"put", F_PUT, 2, 2, run_put},
    {"del", F_DEL, 1, 1, run_del},
    {"ls", F_LS, 0, 1, run_ls},
};

static const struct corral_cli_command kv_command = {
    "corral kv", kv_usage, flags, O_N, kv_verbs, sizeof(kv_verbs) / sizeof(kv_verbs[0])};

int corral_cmd_kv(int argc, char **argv)
{
    return corral_cli_main(&kv_command, argc, argv);
}
