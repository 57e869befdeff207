/* libFuzzer entry point for the HTTP API: the real router (src/api/router.c)
 * and every route handler of src/api, with a fake request and a fake node.
 *
 * The seam is runtime/http.h's request accessors: this file implements
 * them over requests parsed from the input (no libmicrohttpd, no socket;
 * corral_http_error_json and corral_http_escape are the real ones, from
 * src/runtime/http_text.c). The node (runtime/node.h) is a stand-in too:
 * the cluster state is the real state machine (the fixed state of
 * fuzz_fixture.h), the config store is its real store, the liveness view
 * and controller are a real corral_coord; Raft is not there: a write or
 * proposal is applied to the state right after the handler returns (or
 * refused, or failed, as the input's flags choose), a linearizable read
 * confirms at once, and the API's hooks (applied, batch_done, sweep,
 * stopping) are called as the node calls them. Member progress reports
 * are counted and dropped (the controller's commands are not proposed).
 *
 * Input: two flag bytes (the node's role and failures, below), then up to
 * REQUESTS_MAX requests separated by the line "~~":
 *     METHOD TARGET            (TARGET: path and query, percent-encoded)
 *     Name: value              (headers, up to an empty line)
 *     body                     (the rest)
 * A request whose decoded path or query holds a NUL is skipped (http.c
 * answers those itself).
 *
 * Checks: no crash; every request is answered exactly once (by the end,
 * after the sweep and the stopping hook answer held blocking queries);
 * every reply has a status the API uses; an error (3xx-5xx) is JSON of the
 * shape of docs/api.md, {"error":{"code","message"[,"leader"]}}, with a
 * code that goes with its status, a 307 has a Location and a 401 a
 * WWW-Authenticate; a JSON 2xx body parses; with a token configured, a
 * request that needs it and has no Authorization header is answered 401,
 * and a 401 only comes when the token is configured and needed. Build and
 * run: tests/fuzz/README.md. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/api.h"
#include "core/coord.h"
#include "corral.h"
#include "fuzz_fixture.h"
#include "runtime/http.h"
#include "runtime/node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* flags[0] */
enum {
    N_FOLLOWER = 1,    /* not the leader: writes refused with ENOTLEADER */
    N_NO_LEADER = 2,   /* ... and no leader known */
    N_NOT_READY = 4,   /* /health/ready says not ready */
    N_TOKEN = 8,       /* a cluster token is configured */
    N_AUTH_READS = 16, /* ... and GETs need it too */
    N_BUSY = 32,       /* writes and reads refused at once (EBUSY) */
    N_TIMEOUT = 64,    /* writes and reads fail later (ETIMEDOUT) */
    N_TLS = 128,       /* URLs are https:// */
};
/* flags[1] */
enum {
    R_TOO_LARGE = 1, /* requests with a body were over the body limit */
    R_LOST = 2,      /* writes fail later with ELOST instead of ETIMEDOUT */
};

#define REQUESTS_MAX 8
#define ARGS_MAX 16
#define HEADERS_MAX 16
#define PENDING_MAX 64
#define TOKEN "fuzz-token-0123456789abcdef"

/* ---- The fake request ---- */

struct kv_pair {
    char *name, *value; /* value NULL: "?name" without '=' */
};

struct corral_http_request {
    char *method, *path;
    bool encoded_slash;
    struct kv_pair args[ARGS_MAX];
    uint32_t n_args;
    struct kv_pair headers[HEADERS_MAX];
    uint32_t n_headers;
    uint8_t *body;
    size_t body_len;
    bool too_large;
    int replies;
    unsigned status;
};

static bool auth_needed(const struct corral_http_request *r);

const char *corral_http_method(const struct corral_http_request *req)
{
    return req->method;
}

const char *corral_http_path(const struct corral_http_request *req)
{
    return req->path;
}

bool corral_http_path_encoded_slash(const struct corral_http_request *req)
{
    return req->encoded_slash;
}

/* As MHD: the first argument of that name. */
const char *corral_http_arg(const struct corral_http_request *req, const char *name)
{
    for (uint32_t i = 0; i < req->n_args; i++) {
        if (strcmp(req->args[i].name, name) == 0)
            return req->args[i].value != NULL ? req->args[i].value : "";
    }
    return NULL;
}

/* http.c's contract: every argument allowed, none twice, else the first
 * offender named in msg. */
bool corral_http_args_only(const struct corral_http_request *req, const char *const *allowed,
                           char *msg, size_t cap)
{
    for (uint32_t i = 0; i < req->n_args; i++) {
        const char *key = req->args[i].name;
        bool known = false;
        for (const char *const *p = allowed; *p != NULL && !known; p++)
            known = strcmp(*p, key) == 0;
        bool repeated = false;
        for (uint32_t j = 0; j < i && !repeated; j++)
            repeated = strcmp(req->args[j].name, key) == 0;
        if (!known || repeated) {
            /* As http.h says: printable ASCII, '?' for other bytes, cut at 64. */
            char name[65];
            size_t k = 0;
            for (; key[k] != '\0' && k < sizeof(name) - 1; k++)
                name[k] = key[k] >= ' ' && key[k] <= '~' ? key[k] : '?';
            name[k] = '\0';
            snprintf(msg, cap, "%s \"%s\"%s",
                     known ? "repeated query parameter" : "unknown query parameter", name,
                     key[k] != '\0' ? " (cut)" : "");
            return false;
        }
    }
    return true;
}

int corral_http_query(const struct corral_http_request *req, char *buf, size_t cap)
{
    if (cap == 0)
        return CORRAL_ETOOBIG;
    buf[0] = '\0';
    size_t len = 0;
    for (uint32_t i = 0; i < req->n_args; i++) {
        const char *parts[2] = {req->args[i].name, req->args[i].value};
        for (int k = 0; k < 2; k++) {
            if (k == 1 && parts[1] == NULL)
                break;
            const char *sep = k == 0 ? (i > 0 ? "&" : "") : "=";
            if (len + strlen(sep) >= cap)
                return CORRAL_ETOOBIG;
            memcpy(buf + len, sep, strlen(sep) + 1);
            len += strlen(sep);
            if (corral_http_escape(parts[k], buf + len, cap - len) != 0)
                return CORRAL_ETOOBIG;
            len += strlen(buf + len);
        }
    }
    return 0;
}

const char *corral_http_header(const struct corral_http_request *req, const char *name)
{
    for (uint32_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

const uint8_t *corral_http_body(const struct corral_http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body;
}

int corral_http_body_too_large(const struct corral_http_request *req)
{
    return req->too_large;
}

/* (status, code) pairs of docs/api.md. */
static bool code_fits(unsigned status, const char *code)
{
    static const struct {
        unsigned status;
        const char *code;
    } pairs[] = {
        {307, "not_leader"},
        {400, "bad_request"},
        {401, "unauthorized"},
        {404, "not_found"},
        {405, "method_not_allowed"},
        {409, "cas_failed"},
        {409, "conflict"},
        {409, "transfer_refused"},
        {413, "too_large"},
        {500, "internal"},
        {503, "not_ready"},
        {503, "no_leader"},
        {503, "timeout"},
        {503, "busy"},
        {503, "shutting_down"},
        {507, "store_full"},
        {507, "full"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        if (pairs[i].status == status && strcmp(pairs[i].code, code) == 0)
            return true;
    }
    return false;
}

static void check_error_body(unsigned status, const char *body, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &e);
    FUZZ_REQUIRE(json_is_object(j));
    json_t *err = json_object_get(j, "error");
    FUZZ_REQUIRE(json_is_object(err));
    json_t *code = json_object_get(err, "code"), *msg = json_object_get(err, "message");
    FUZZ_REQUIRE(json_is_string(code) && json_is_string(msg));
    FUZZ_REQUIRE(code_fits(status, json_string_value(code)));
    FUZZ_REQUIRE(json_string_length(msg) > 0);
    const char *key;
    json_t *v;
    json_object_foreach(err, key, v)
    {
        FUZZ_REQUIRE(strcmp(key, "code") == 0 || strcmp(key, "message") == 0 ||
                     (strcmp(key, "leader") == 0 && json_is_string(v)));
    }
    json_decref(j);
}

static bool header_is(const char *h, const char *v, const char *name)
{
    return h != NULL && strcasecmp(h, name) == 0 && v != NULL && v[0] != '\0';
}

void corral_http_respond(struct corral_http_request *req, unsigned status, const char *ctype,
                         const char *body, size_t len, const char *h1, const char *v1,
                         const char *h2, const char *v2)
{
    if (getenv("FUZZ_HTTP_DEBUG") != NULL) /* replaying an input by hand */
        fprintf(stderr, "%s %s -> %u %.*s\n", req->method, req->path, status, (int)len, body);
    FUZZ_REQUIRE(req->replies == 0); /* exactly once */
    req->replies++;
    req->status = status;
    FUZZ_REQUIRE(status == 200 || status == 201 || status == 307 ||
                 (status >= 400 && status <= 507));
    FUZZ_REQUIRE(ctype != NULL && (body != NULL || len == 0));
    bool json = strcmp(ctype, "application/json") == 0;
    if (status >= 300) {
        FUZZ_REQUIRE(json);
        check_error_body(status, body, len);
    } else if (json) {
        json_error_t e;
        json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &e);
        FUZZ_REQUIRE(json_is_object(j) || json_is_array(j));
        json_decref(j);
    } else if (strcmp(ctype, "application/octet-stream") == 0) {
        /* GET /v1/kv/KEY?raw=1: the value's bytes, its version in a header. */
        FUZZ_REQUIRE(
            status == 200 && strcmp(req->method, "GET") == 0 &&
            strncmp(req->path, "/v1/kv/", 7) == 0 &&
            (header_is(h1, v1, "X-Corral-Version") || header_is(h2, v2, "X-Corral-Version")));
    } else {
        FUZZ_REQUIRE(strncmp(ctype, "text/plain", 10) == 0);
    }
    if (status == 307)
        FUZZ_REQUIRE(header_is(h1, v1, "Location") || header_is(h2, v2, "Location"));
    if (status == 401)
        FUZZ_REQUIRE(header_is(h1, v1, "WWW-Authenticate") ||
                     header_is(h2, v2, "WWW-Authenticate"));
    /* The token rule of router.c, by method and never by route. */
    bool needed = auth_needed(req);
    if (status == 401)
        FUZZ_REQUIRE(needed);
    if (needed && corral_http_header(req, "Authorization") == NULL)
        FUZZ_REQUIRE(status == 401);
}

/* ---- The fake node ---- */

struct pending {
    bool read;
    struct corral_rbuf *cmd; /* a write's encoded state command */
    corral_node_write_cb wcb;
    corral_node_read_cb rcb;
    void *ctx;
};

struct corral_node {
    uint8_t flags, flags2;
    struct corral_node_config cfg;
    struct corral_node_hooks hooks;
    struct corral_state *st;
    struct corral_coord *coord;
    uint64_t now_ms;
    uint64_t index; /* the last applied */
    uint64_t term;
    struct pending pending[PENDING_MAX];
    uint32_t n_pending;
    uint64_t reports;
};

static struct corral_node node;

static bool auth_needed(const struct corral_http_request *r)
{
    if (!(node.flags & N_TOKEN))
        return false;
    bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    if (!get)
        return true;
    if (strcmp(r->path, "/health") == 0 || strcmp(r->path, "/health/ready") == 0)
        return false;
    return (node.flags & N_AUTH_READS) != 0;
}

static bool leader(void)
{
    return !(node.flags & (N_FOLLOWER | N_NO_LEADER));
}

void *corral_node_hooks_ud(const struct corral_node *n)
{
    return n->hooks.ud;
}

static int enqueue(struct corral_node *n, const struct pending *p)
{
    if (!leader())
        return CORRAL_ENOTLEADER;
    if (n->flags & N_BUSY || n->n_pending == PENDING_MAX)
        return CORRAL_EBUSY;
    n->pending[n->n_pending++] = *p;
    return 0;
}

int corral_node_propose(struct corral_node *n, const struct corral_state_cmd *c,
                        corral_node_write_cb cb, void *ctx)
{
    struct corral_rbuf *b = corral_state_cmd_encode(c);
    if (b == NULL)
        return CORRAL_EINVAL;
    struct pending p = {.cmd = b, .wcb = cb, .ctx = ctx};
    int rv = enqueue(n, &p);
    if (rv != 0)
        corral_rbuf_unref(b);
    return rv;
}

int corral_node_write(struct corral_node *n, const struct corral_kv_cmd *cmd,
                      corral_node_write_cb cb, void *ctx)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_KV;
    c.kv = *cmd;
    int rv = corral_node_propose(n, &c, cb, ctx);
    return rv == CORRAL_EINVAL ? CORRAL_ETOOBIG : rv;
}

int corral_node_read(struct corral_node *n, corral_node_read_cb cb, void *ctx)
{
    struct pending p = {.read = true, .rcb = cb, .ctx = ctx};
    return enqueue(n, &p);
}

/* What the node does after a ready batch: apply (or fail) what was
 * proposed, in order, then the batch_done hook. */
static void drain(struct corral_node *n)
{
    while (n->n_pending > 0) {
        struct pending p = n->pending[0];
        memmove(n->pending, n->pending + 1, (n->n_pending - 1) * sizeof(*n->pending));
        n->n_pending--;
        int fail =
            n->flags & N_TIMEOUT ? (n->flags2 & R_LOST ? CORRAL_ELOST : CORRAL_ETIMEDOUT) : 0;
        if (p.read) {
            p.rcb(p.ctx, fail);
            continue;
        }
        if (fail != 0) {
            if (p.wcb != NULL)
                p.wcb(p.ctx, fail, NULL);
            corral_rbuf_unref(p.cmd);
            continue;
        }
        struct corral_state_result res;
        FUZZ_REQUIRE(corral_state_apply(n->st, ++n->index, p.cmd, &res) == 0);
        FUZZ_REQUIRE(corral_state_check(n->st));
        struct corral_raft_entry e = {
            .term = n->term, .index = n->index, .type = CORRAL_RAFT_ENTRY_NORMAL, .data = p.cmd};
        if (n->hooks.applied != NULL)
            n->hooks.applied(n, &e, &res);
        if (p.wcb != NULL)
            p.wcb(p.ctx, 0, &res);
        corral_rbuf_unref(p.cmd);
    }
    FUZZ_REQUIRE(corral_coord_leadership(n->coord, leader(), n->term, n->index, n->now_ms) == 0);
    if (n->hooks.batch_done != NULL)
        n->hooks.batch_done(n);
}

void corral_node_heartbeat(struct corral_node *n, uint32_t member, uint64_t member_index,
                           struct corral_coord_answer *ans)
{
    corral_coord_heartbeat(n->coord, n->st, leader(), member, member_index, n->now_ms, ans);
}

void corral_node_report(struct corral_node *n, uint32_t member, const struct corral_progress *p)
{
    (void)member;
    (void)p;
    n->reports++;
}

const struct corral_coord *corral_node_coord(const struct corral_node *n)
{
    return n->coord;
}

void corral_node_duty_stats(const struct corral_node *n, struct corral_node_duty_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->reports = n->reports;
}

const struct corral_kv *corral_node_kv(const struct corral_node *n)
{
    return corral_state_kv(n->st);
}

const struct corral_state *corral_node_state(const struct corral_node *n)
{
    return n->st;
}

void corral_node_info(struct corral_node *n, struct corral_node_info *info)
{
    memset(info, 0, sizeof(*info));
    info->id = 1;
    info->cluster_id = n->cfg.cluster_id;
    info->http_addr = "127.0.0.1:8140";
    info->cluster_addr = "127.0.0.1:8139";
    info->leader = n->flags & N_NO_LEADER ? 0 : n->flags & N_FOLLOWER ? 2 : 1;
    info->leader_http = n->flags & N_NO_LEADER  ? NULL
                        : n->flags & N_FOLLOWER ? "127.0.0.2:8140"
                                                : "127.0.0.1:8140";
    info->tls = (n->flags & N_TLS) != 0;
    info->ready = !(n->flags & N_NOT_READY);
    info->not_ready_reason = info->ready ? NULL : "no quorum in contact";
}

const struct corral_node_config *corral_node_config(const struct corral_node *n)
{
    return &n->cfg;
}

/* As node_health.c: the real pure check on the fake status; a transfer it
 * allows never completes here (the fake leader stays), so the request is
 * held until the stopping hook answers it. */
int corral_node_transfer(struct corral_node *n, uint64_t target, uint64_t *to,
                         enum corral_leader_transfer_refusal *refusal)
{
    *to = 0;
    *refusal = CORRAL_LT_OK;
    if (!leader())
        return CORRAL_ENOTLEADER;
    struct corral_raft_status st;
    corral_node_raft_status(n, &st);
    *refusal = corral_leader_transfer_check(&st, target, n->now_ms, 1000, to);
    return 0;
}

void corral_node_raft_status(const struct corral_node *n, struct corral_raft_status *s)
{
    memset(s, 0, sizeof(*s));
    s->id = 1;
    s->role = leader() ? CORRAL_RAFT_LEADER : CORRAL_RAFT_FOLLOWER;
    s->term = n->term;
    s->leader = n->flags & N_NO_LEADER ? 0 : leader() ? 1 : 2;
    s->commit = s->applied = s->last_index = s->stable_index = n->index;
    s->first_index = 1;
    s->conf.n_voters = 3;
    s->conf.voters[0] = 1;
    s->conf.voters[1] = 2;
    s->conf.voters[2] = 3;
    s->voters_in_contact = leader() ? 3 : 0;
    s->quorum_in_contact = leader();
}

uint64_t corral_node_clock_ms(const struct corral_node *n)
{
    return n->now_ms;
}

uint32_t corral_node_peers(const struct corral_node *n, struct corral_node_peer_info *out,
                           uint32_t cap)
{
    (void)n;
    static const struct corral_node_peer_info peers[] = {
        {2, "127.0.0.2:8139", "127.0.0.2:8140", true, 0},
        {3, "127.0.0.3:8139", NULL, false, 7},
    };
    uint32_t k = 0;
    for (; k < cap && k < 2; k++)
        out[k] = peers[k];
    return 2;
}

void corral_node_stats(const struct corral_node *n, struct corral_node_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->term = n->term;
    st->is_leader = leader();
    st->commit_index = st->applied_index = n->index;
    st->n_peers = corral_node_peers(n, st->peers, CORRAL_RAFT_NODES_MAX);
}

/* ---- Parsing the input ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes b[0..n) (and '+' as a space when plus) into a new
 * string; NULL when it decodes a NUL. */
static char *decode(const char *b, size_t n, bool plus)
{
    char *out = malloc(n + 1);
    FUZZ_REQUIRE(out != NULL);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (c == '%' && i + 2 < n && hexval(b[i + 1]) >= 0 && hexval(b[i + 2]) >= 0) {
            c = (char)(hexval(b[i + 1]) * 16 + hexval(b[i + 2]));
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c == '\0') {
            free(out);
            return NULL;
        }
        out[k++] = c;
    }
    out[k] = '\0';
    return out;
}

static char *dup_n(const char *b, size_t n)
{
    char *s = malloc(n + 1);
    FUZZ_REQUIRE(s != NULL);
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

static void request_free(struct corral_http_request *r)
{
    free(r->method);
    free(r->path);
    for (uint32_t i = 0; i < r->n_args; i++) {
        free(r->args[i].name);
        free(r->args[i].value);
    }
    for (uint32_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The query string q[0..n) into r's arguments; false on a NUL. */
static bool parse_query(struct corral_http_request *r, const char *q, size_t n)
{
    size_t i = 0;
    while (i < n && r->n_args < ARGS_MAX) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t end = amp != NULL ? (size_t)(amp - q) : n;
        const char *eq = memchr(q + i, '=', end - i);
        if (end > i) {
            size_t klen = eq != NULL ? (size_t)(eq - (q + i)) : end - i;
            char *name = decode(q + i, klen, true);
            char *value = eq != NULL ? decode(eq + 1, end - (size_t)(eq + 1 - q), true) : NULL;
            struct kv_pair *a = &r->args[r->n_args++];
            a->name = name;
            a->value = value;
            if (name == NULL || (eq != NULL && value == NULL))
                return false;
        }
        i = end + 1;
    }
    return true;
}

/* One request from b[0..n); false when it is skipped. */
static bool parse_request(struct corral_http_request *r, const char *b, size_t n)
{
    memset(r, 0, sizeof(*r));
    const char *nl = memchr(b, '\n', n);
    size_t line_end = nl != NULL ? (size_t)(nl - b) : n;
    const char *sp = memchr(b, ' ', line_end);
    if (sp == NULL || sp == b)
        return false;
    r->method = dup_n(b, (size_t)(sp - b));
    if (memchr(r->method, '\0', (size_t)(sp - b)) != NULL)
        return false;
    const char *target = sp + 1;
    size_t tlen = line_end - (size_t)(target - b);
    if (tlen > 0 && target[tlen - 1] == '\r')
        tlen--;
    const char *qm = memchr(target, '?', tlen);
    size_t plen = qm != NULL ? (size_t)(qm - target) : tlen;
    for (size_t i = 0; i + 2 < plen; i++) {
        if (target[i] == '%' && target[i + 1] == '2' &&
            (target[i + 2] == 'F' || target[i + 2] == 'f'))
            r->encoded_slash = true;
    }
    r->path = decode(target, plen, false);
    if (r->path == NULL)
        return false;
    if (qm != NULL && !parse_query(r, qm + 1, tlen - plen - 1))
        return false;
    size_t off = line_end + 1;
    while (off < n) {
        const char *e = memchr(b + off, '\n', n - off);
        size_t end = e != NULL ? (size_t)(e - b) : n;
        size_t len = end - off;
        if (len > 0 && b[off + len - 1] == '\r')
            len--;
        if (len == 0) {
            off = end + 1;
            break;
        }
        const char *colon = memchr(b + off, ':', len);
        if (colon != NULL && r->n_headers < HEADERS_MAX) {
            const char *v = colon + 1;
            while (v < b + off + len && *v == ' ')
                v++;
            char *name = dup_n(b + off, (size_t)(colon - (b + off)));
            char *value = dup_n(v, (size_t)(b + off + len - v));
            struct kv_pair *h = &r->headers[r->n_headers++];
            h->name = name;
            h->value = value;
            /* MHD hands headers on as C strings. */
            if (strlen(name) != (size_t)(colon - (b + off)) ||
                strlen(value) != (size_t)(b + off + len - v))
                return false;
        }
        off = end + 1;
    }
    if (off < n) {
        r->body_len = n - off;
        r->body = malloc(r->body_len);
        FUZZ_REQUIRE(r->body != NULL);
        memcpy(r->body, b + off, r->body_len);
        if (node.flags2 & R_TOO_LARGE) {
            free(r->body);
            r->body = NULL;
            r->body_len = 0;
            r->too_large = true;
        }
    }
    return true;
}

/* ---- The harness ---- */

static struct corral_http_request reqs[REQUESTS_MAX];

static void node_init(uint8_t flags, uint8_t flags2)
{
    node.flags = flags;
    node.flags2 = flags2;
    memset(&node.cfg, 0, sizeof(node.cfg));
    node.cfg.id = 1;
    node.cfg.cluster_id = 0xc0ffee;
    node.cfg.request_timeout_ms = 5000;
    if (flags & N_TOKEN) {
        node.cfg.tokens.n = 1;
        node.cfg.tokens.len[0] = strlen(TOKEN);
        memcpy(node.cfg.tokens.tok[0], TOKEN, strlen(TOKEN) + 1);
        node.cfg.auth_reads = (flags & N_AUTH_READS) != 0;
    }
    corral_coord_config_default(&node.cfg.coord);
    /* The smallest valid command size. Nothing here evaluates the
     * controller (no corral_coord_evaluate or _report), so its commands and
     * their ops array are never filled: the size only decides what
     * corral_controller_new allocates, 3 MiB by default, which ASan mapped
     * and poisoned at every input (three quarters of a run's time). */
    node.cfg.coord.controller.ops_per_command_max = CORRAL_CONTROLLER_GROUP_OPS_MAX;
    node.st = fixture_state();
    FUZZ_REQUIRE(corral_coord_new(&node.cfg.coord, &node.coord) == 0);
    FUZZ_REQUIRE(corral_api_hooks(&node.hooks) == 0);
    node.now_ms = 1000000;
    node.index = 100; /* past the fixture's indexes */
    node.term = 3;
    node.n_pending = 0;
    node.reports = 0;
    /* As node_duty.c after a ready batch: a leader holds a term of office. */
    FUZZ_REQUIRE(
        corral_coord_leadership(node.coord, leader(), node.term, node.index, node.now_ms) == 0);
}

static void node_free(void)
{
    FUZZ_REQUIRE(node.n_pending == 0);
    corral_api_hooks_free(&node.hooks);
    corral_coord_free(node.coord);
    corral_state_free(node.st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    node_init(data[0], data[1]);
    /* An exact-size copy, so ASan sees any over-read of a request. */
    char *text = malloc(size - 2 + 1);
    FUZZ_REQUIRE(text != NULL);
    memcpy(text, data + 2, size - 2);
    size_t n = size - 2, off = 0;
    uint32_t k = 0;
    while (off <= n && k < REQUESTS_MAX) {
        const char *sep = NULL;
        for (size_t i = off; i + 4 <= n && sep == NULL; i++) {
            if (memcmp(text + i, "\n~~\n", 4) == 0)
                sep = text + i;
        }
        size_t end = sep != NULL ? (size_t)(sep - text) : n;
        struct corral_http_request *r = &reqs[k];
        if (parse_request(r, text + off, end - off)) {
            k++;
            corral_api_route(&node, r);
            drain(&node);
            node.now_ms += 10;
        } else {
            request_free(r);
        }
        if (sep == NULL)
            break;
        off = end + 4;
    }
    /* Held blocking queries: their deadlines pass, then the node stops. */
    node.now_ms += 10ull * 60 * 1000;
    if (node.hooks.sweep != NULL)
        node.hooks.sweep(&node, node.now_ms);
    drain(&node);
    if (node.hooks.stopping != NULL)
        node.hooks.stopping(&node);
    for (uint32_t i = 0; i < k; i++) {
        FUZZ_REQUIRE(reqs[i].replies == 1);
        request_free(&reqs[i]);
    }
    node_free();
    free(text);
    return 0;
}
