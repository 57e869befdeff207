/* corral server run: flags and config file into a node configuration,
 * validated completely before anything touches the disk. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "corral.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/curl_load.h"
#include "cli/server_config.h"
#include "runtime/log.h"
#include "core/state.h"
#include "runtime/node.h"
#include "runtime/storage.h"
#include "util/parse.h"
#include "util/token.h"

#define DEFAULT_CLUSTER_PORT 8139
#define DEFAULT_HTTP_PORT 8140
#define ADDR_TEXT_MAX (CORRAL_HOST_MAX + 8)

static void usage(FILE *out)
{
    fprintf(out, "usage: corral server run [options]\n\n"
                 "Runs a coordinator. With no options: a cluster of one on 127.0.0.1,\n"
                 "Raft on port 8139, HTTP on port 8140, data in ./corral-data.\n\noptions:\n");
    for (size_t i = 0; i < SERVER_N_OPTS; i++)
        fprintf(out, "  --%-25s %s\n", server_opt_defs[i].name, server_opt_defs[i].help);
    fprintf(out, "  --%-25s %s\n", "config FILE",
            "INI file with the same keys (no section or [server]); flags override it");
    fprintf(out, "\nExit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 runtime failure (data dir\n"
                 "refused or corrupt, address in use, I/O error), 2 bad flags or config.\n");
}

/* Flags: --name value or --name=value; --config is read first. */
static int parse_flags(struct server_opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0) {
            const char *file = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (file == NULL) {
                snprintf(o->err, sizeof(o->err), "--config needs a file");
                return 2;
            }
            if (!server_config_load(o, file))
                return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(o->err, sizeof(o->err), "unexpected argument '%s'", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        snprintf(name, sizeof(name), "%.*s", (int)(nlen < 63 ? nlen : 63), a + 2);
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (strcmp(name, "config") == 0) {
            i += eq ? 0 : 1;
            continue;
        }
        const struct opt_def *d = server_opt_find(name);
        if (d != NULL && eq == NULL &&
            (strcmp(name, "auth-reads") == 0 || strcmp(name, "leave-on-stop") == 0 ||
             strcmp(name, "force-new-cluster") == 0)) { /* flags */
            if (!server_opt_set(o, d, "true"))
                return 2;
            continue;
        }
        if (d == NULL) {
            snprintf(o->err, sizeof(o->err), "unknown option '--%s'", name);
            return 2;
        }
        if (value == NULL) {
            snprintf(o->err, sizeof(o->err), "--%s needs a value", name);
            return 2;
        }
        if (!server_opt_set(o, d, value))
            return 2;
        i += eq ? 0 : 1;
    }
    return 0;
}

static bool parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v = 0;
    if (!corral_parse_u64(s, &v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* "HOST:PORT", "[V6]:PORT", "HOST" (default port) or ":PORT" (127.0.0.1).
 * HOST is a numeric address or "localhost". */
static bool parse_addr(const char *s, uint16_t def_port, char *host, size_t cap, uint16_t *port)
{
    char h[CORRAL_HOST_MAX + 2] = "";
    const char *p = NULL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || (size_t)(close - s - 1) >= sizeof(h))
            return false;
        memcpy(h, s + 1, (size_t)(close - s - 1));
        h[close - s - 1] = '\0';
        p = close[1] == ':' ? close + 2 : (close[1] == '\0' ? NULL : "x");
    } else {
        const char *colon = strrchr(s, ':');
        size_t hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= sizeof(h) || (colon != NULL && strchr(s, ':') != colon))
            return false;
        memcpy(h, s, hl);
        h[hl] = '\0';
        p = colon ? colon + 1 : NULL;
    }
    if (h[0] == '\0' || strcmp(h, "localhost") == 0)
        snprintf(h, sizeof(h), "127.0.0.1");
    unsigned char buf[16];
    if (inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1)
        return false;
    uint64_t pv = def_port;
    if (p != NULL && !parse_uint(p, 1, 65535, &pv))
        return false;
    snprintf(host, cap, "%s", h);
    *port = (uint16_t)pv;
    return true;
}

static bool name_ok(const char *s)
{
    return corral_state_name_valid(s, (uint32_t)strnlen(s, CORRAL_NODE_NAME_MAX + 1));
}

/* One --peers entry: "NAME=HOST:PORT" or "HOST:PORT" (named node<k>). */
static bool parse_peer(struct server_opts *o, const char *tok, struct corral_node_peer_config *p,
                       uint32_t k, bool *named)
{
    const char *eq = strchr(tok, '=');
    *named = eq != NULL;
    if (eq != NULL) {
        size_t n = (size_t)(eq - tok);
        snprintf(p->name, sizeof(p->name), "%.*s", (int)(n <= CORRAL_NODE_NAME_MAX ? n : 0), tok);
        if (n > CORRAL_NODE_NAME_MAX || !name_ok(p->name)) {
            snprintf(o->err, sizeof(o->err),
                     "--peers: '%.200s': the name before '=' must be 1-64 chars of [a-z0-9._-]",
                     tok);
            return false;
        }
        tok = eq + 1;
    } else {
        snprintf(p->name, sizeof(p->name), "node%u", k);
    }
    if (!parse_addr(tok, DEFAULT_CLUSTER_PORT, p->host, sizeof(p->host), &p->port)) {
        snprintf(o->err, sizeof(o->err),
                 "--peers: '%.200s' is not HOST:PORT with a numeric address", tok);
        return false;
    }
    return true;
}

static bool peer_dup(struct server_opts *o, const struct corral_node_config *c,
                     const struct corral_node_peer_config *p)
{
    for (uint32_t k = 0; k < c->n_peers; k++) {
        if (strcmp(c->peers[k].host, p->host) == 0 && c->peers[k].port == p->port) {
            snprintf(o->err, sizeof(o->err), "--peers: %s:%u appears twice", p->host, p->port);
            return true;
        }
        if (strcmp(c->peers[k].name, p->name) == 0) {
            snprintf(o->err, sizeof(o->err), "--peers: the name '%s' appears twice", p->name);
            return true;
        }
    }
    return false;
}

static bool parse_peers(struct server_opts *o, struct corral_node_config *c, bool *named)
{
    char list[TEXT_MAX];
    snprintf(list, sizeof(list), "%s", o->peers);
    /* Split by hand: strtok_r() would skip the empty entries of "a,,b" and
     * "a,", which are typos (a peer left out), not a shorter list. */
    unsigned entry = 0;
    *named = false;
    if (list[0] == '\0') /* not given: a cluster of one */
        return true;
    for (char *tok = list, *next = NULL; tok != NULL; tok = next) {
        char *comma = strchr(tok, ',');
        next = comma ? comma + 1 : NULL;
        if (comma)
            *comma = '\0';
        entry++;
        while (*tok == ' ')
            tok++;
        if (*tok == '\0') {
            snprintf(o->err, sizeof(o->err),
                     "--peers: entry %u is empty (a stray or trailing comma in '%.200s')", entry,
                     o->peers);
            return false;
        }
        if (c->n_peers == CORRAL_RAFT_NODES_MAX) {
            snprintf(o->err, sizeof(o->err), "--peers: at most %d coordinators",
                     CORRAL_RAFT_NODES_MAX);
            return false;
        }
        struct corral_node_peer_config *p = &c->peers[c->n_peers];
        bool this_named;
        if (!parse_peer(o, tok, p, c->n_peers + 1, &this_named))
            return false;
        if (entry > 1 && this_named != *named) {
            snprintf(o->err, sizeof(o->err),
                     "--peers: give every entry as NAME=HOST:PORT or none ('%.200s')", o->peers);
            return false;
        }
        *named = this_named;
        p->id = c->n_peers + 1;
        if (peer_dup(o, c, p))
            return false;
        c->n_peers++;
    }
    return true;
}

/* Which of the peers this node is: --name (named entries), --id (plain
 * ones), or its --cluster-addr's position. */
static bool resolve_id(struct server_opts *o, struct corral_node_config *c, bool addr_given,
                       bool named)
{
    uint64_t id = 0;
    if (o->id[0] != '\0' && !parse_uint(o->id, 1, c->n_peers ? c->n_peers : UINT32_MAX, &id)) {
        snprintf(o->err, sizeof(o->err), "--id: '%s' is not a number from 1 to %u", o->id,
                 c->n_peers ? c->n_peers : UINT32_MAX);
        return false;
    }
    if (c->n_peers == 0) {
        c->id = id ? id : 1;
        return true;
    }
    if (named && o->name[0] != '\0') {
        for (uint32_t k = 0; k < c->n_peers; k++)
            if (strcmp(c->peers[k].name, o->name) == 0)
                id = c->peers[k].id;
        if (id == 0) {
            snprintf(o->err, sizeof(o->err), "--name %s is not one of the names in --peers",
                     o->name);
            return false;
        }
    }
    if (id == 0) {
        for (uint32_t k = 0; k < c->n_peers; k++)
            if (strcmp(c->peers[k].host, c->cluster_host) == 0 &&
                c->peers[k].port == c->cluster_port)
                id = c->peers[k].id;
        if (id == 0) {
            snprintf(o->err, sizeof(o->err), "--cluster-addr %s:%u is not in --peers; give %s",
                     c->cluster_host, c->cluster_port,
                     named ? "--name (this node's NAME in --peers)"
                           : "--id (this node's position in --peers)");
            return false;
        }
    }
    c->id = id;
    const struct corral_node_peer_config *self = &c->peers[id - 1];
    if (!named && o->name[0] != '\0' && strcmp(o->name, self->name) != 0) {
        snprintf(o->err, sizeof(o->err),
                 "--name %s: with plain HOST:PORT --peers entries the names are node1..node%u "
                 "(this one is %s); to choose names, give --peers NAME=HOST:PORT,...",
                 o->name, c->n_peers, self->name);
        return false;
    }
    snprintf(c->name, sizeof(c->name), "%s", self->name);
    bool wildcard = strcmp(c->cluster_host, "0.0.0.0") == 0 || strcmp(c->cluster_host, "::") == 0;
    if (addr_given && (c->cluster_port != self->port ||
                       (!wildcard && strcmp(c->cluster_host, self->host) != 0))) {
        snprintf(o->err, sizeof(o->err),
                 "--cluster-addr %s:%u is not this node's entry in --peers (%s:%u for %s); peers "
                 "could not reach it",
                 c->cluster_host, c->cluster_port, self->host, self->port, self->name);
        return false;
    }
    if (!addr_given) { /* listen where the peers will dial */
        snprintf(c->cluster_host, sizeof(c->cluster_host), "%s", c->peers[id - 1].host);
        c->cluster_port = c->peers[id - 1].port;
    }
    return true;
}

/* The host name as a coordinator name: lower case, other characters '-';
 * "node1" when there is none. */
static void default_name(char *out, size_t cap)
{
    char h[256] = "";
    if (gethostname(h, sizeof(h) - 1) != 0)
        h[0] = '\0';
    size_t n = 0;
    for (size_t i = 0; h[i] != '\0' && n + 1 < cap && n < CORRAL_NODE_NAME_MAX; i++) {
        char ch = h[i] >= 'A' && h[i] <= 'Z' ? (char)(h[i] - 'A' + 'a') : h[i];
        out[n++] = name_ok((char[]){ch, '\0'}) ? ch : '-';
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, cap, "node1");
}

/* FNV-1a over the cluster name and the bootstrap membership: every node
 * started with the same --cluster-name and --peers computes the same id,
 * and a different name or list a different one. A node that joins or
 * restarts takes its cluster's id instead (from the leader, from its
 * data dir). */
static uint64_t fnv1a(const char *text)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *p = text; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

/* The id a cluster from before named coordinators has (meta version 1):
 * the hash of the ids and addresses of --peers alone. */
static uint64_t legacy_cluster_id(const struct corral_node_config *c)
{
    char text[TEXT_MAX + 1024] = "corral/1\n";
    size_t len = strlen(text);
    for (uint32_t k = 0; k < c->n_peers && len < sizeof(text); k++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%" PRIu64 "=%s:%u\n",
                                c->peers[k].id, c->peers[k].host, c->peers[k].port);
    if (c->n_peers == 0 && len < sizeof(text))
        snprintf(text + len, sizeof(text) - len, "single\n");
    return fnv1a(text);
}

static uint64_t cluster_id(const struct corral_node_config *c)
{
    char text[TEXT_MAX + 1024];
    size_t len = (size_t)snprintf(text, sizeof(text), "corral/2\n%s\n", c->cluster_name);
    for (uint32_t k = 0; k < c->n_peers && len < sizeof(text); k++)
        len +=
            (size_t)snprintf(text + len, sizeof(text) - len, "%" PRIu64 "=%s=%s:%u\n",
                             c->peers[k].id, c->peers[k].name, c->peers[k].host, c->peers[k].port);
    if (c->n_peers == 0 && len < sizeof(text))
        snprintf(text + len, sizeof(text) - len, "single %s\n", c->name);
    return fnv1a(text);
}

static bool parse_numbers(struct server_opts *o, struct corral_node_config *c)
{
    struct {
        const char *name, *text;
        uint64_t lo, hi, def;
        uint64_t v;
    } nums[] = {
        {"election-timeout-ms", o->election_timeout_ms, 10, 60000,
         CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT, 0},
        {"heartbeat-ms", o->heartbeat_ms, 1, 30000, CORRAL_RAFT_HEARTBEAT_MS_DEFAULT, 0},
        {"snapshot-entries", o->snapshot_entries, 0, 100000000, 50000, 0},
        {"request-timeout-ms", o->request_timeout_ms, 10, 600000, 5000, 0},
        {"max-connections", o->max_connections, 1, 100000, 1024, 0},
        {"member-heartbeat-ms", o->member_heartbeat_ms, 10, 60000, 250, 0},
        {"lease-ms", o->lease_ms, 30, 600000, 1000, 0},
        {"max-drift-percent", o->max_drift_percent, 1, 50, 10, 0},
        {"leader-max-fsync-ms", o->leader_max_fsync_ms, 0, 600000, LEADER_MAX_FSYNC_MS_DEFAULT, 0},
        {"leader-max-loop-lag-ms", o->leader_max_loop_lag_ms, 0, 600000,
         LEADER_MAX_LOOP_LAG_MS_DEFAULT, 0},
        {"leader-max-apply-backlog", o->leader_max_apply_backlog, 0, 100000000,
         LEADER_MAX_APPLY_BACKLOG_DEFAULT, 0},
        {"leader-degraded-ms", o->leader_degraded_ms, 0, 3600000, LEADER_DEGRADED_MS_DEFAULT, 0},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        nums[i].v = nums[i].def;
        if (nums[i].text[0] != '\0' &&
            !parse_uint(nums[i].text, nums[i].lo, nums[i].hi, &nums[i].v)) {
            snprintf(o->err, sizeof(o->err),
                     "--%s: '%s' is not a number from %" PRIu64 " to %" PRIu64, nums[i].name,
                     nums[i].text, nums[i].lo, nums[i].hi);
            return false;
        }
    }
    c->election_timeout_ms = (uint32_t)nums[0].v;
    c->heartbeat_ms = (uint32_t)nums[1].v;
    c->snapshot_entries = nums[2].v;
    c->request_timeout_ms = (uint32_t)nums[3].v;
    c->http.max_connections = (uint32_t)nums[4].v;
    struct corral_liveness_config *lc = &c->coord.liveness;
    lc->heartbeat_ms = (uint32_t)nums[5].v;
    lc->lease_ms = (uint32_t)nums[6].v;
    lc->max_drift_permille = (uint32_t)nums[7].v * 10u;
    lc->suspect_after_ms = 2u * lc->heartbeat_ms;
    c->leader_health = (struct corral_leader_health_config){.max_fsync_ms = nums[8].v,
                                                            .max_loop_lag_ms = nums[9].v,
                                                            .max_apply_backlog = nums[10].v,
                                                            .degraded_ms = nums[11].v};
    if (nums[11].v != 0 && nums[11].v < LEADER_DEGRADED_MS_MIN) {
        snprintf(o->err, sizeof(o->err),
                 "--leader-degraded-ms: %" PRIu64 " is below %u: one slow batch would hand "
                 "leadership over (0 turns automatic transfer off)",
                 nums[11].v, LEADER_DEGRADED_MS_MIN);
        return false;
    }
    if (lc->lease_ms <= 2u * lc->heartbeat_ms) {
        snprintf(o->err, sizeof(o->err),
                 "--lease-ms (%u) must be more than twice --member-heartbeat-ms (%u): a lease "
                 "must outlive a lost heartbeat",
                 lc->lease_ms, lc->heartbeat_ms);
        return false;
    }
    if (c->heartbeat_ms >= c->election_timeout_ms) {
        snprintf(o->err, sizeof(o->err),
                 "--heartbeat-ms (%u) must be below "
                 "--election-timeout-ms (%u)",
                 c->heartbeat_ms, c->election_timeout_ms);
        return false;
    }
    return true;
}

/* A PEM file's text (NUL-terminated, malloc'd; kept for the life of the
 * process: MHD reads it in place), or NULL with why in o->err. */
#define PEM_BYTES_MAX (1u << 20)
static char *read_pem(struct server_opts *o, const char *flag, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        snprintf(o->err, sizeof(o->err), "--%s %s: cannot read: %s", flag, file, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PEM_BYTES_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PEM_BYTES_MAX + 1, f) : 0;
    int failed = buf == NULL || ferror(f);
    int e = errno;
    fclose(f);
    if (failed || n > PEM_BYTES_MAX || n == 0 || memchr(buf, '\0', n) != NULL ||
        strstr((buf[n] = '\0', buf), "-----BEGIN ") == NULL) {
        snprintf(o->err, sizeof(o->err), "--%s %s: %s", flag, file,
                 buf == NULL         ? "out of memory"
                 : failed            ? strerror(e ? e : EIO)
                 : n > PEM_BYTES_MAX ? "over 1 MiB: not a PEM file"
                                     : "not a PEM file (no \"-----BEGIN \" line)");
        free(buf);
        return NULL;
    }
    char *fit = realloc(buf, n + 1); /* a PEM is a few KiB, not the 1 MiB bound */
    return fit != NULL ? fit : buf;
}

/* --tls-cert, --tls-key, --tls-ca: read and checked (the key matches the
 * certificate, the CA parses) before anything touches the data dir. */
static bool load_tls(struct server_opts *o, struct corral_http_tls *t)
{
    memset(t, 0, sizeof(*t));
    bool cert = o->tls_cert[0] != '\0', key = o->tls_key[0] != '\0', ca = o->tls_ca[0] != '\0';
    if (cert != key) {
        snprintf(o->err, sizeof(o->err), "--tls-cert and --tls-key go together: %s is missing",
                 cert ? "--tls-key" : "--tls-cert");
        return false;
    }
    if (ca && !cert) {
        snprintf(o->err, sizeof(o->err), "--tls-ca needs --tls-cert and --tls-key");
        return false;
    }
    if (!cert)
        return true;
    char *c = read_pem(o, "tls-cert", o->tls_cert);
    char *k = c != NULL ? read_pem(o, "tls-key", o->tls_key) : NULL;
    char *a = k != NULL && ca ? read_pem(o, "tls-ca", o->tls_ca) : NULL;
    if (c == NULL || k == NULL || (ca && a == NULL)) {
        free(c);
        free(k);
        return false;
    }
    *t = (struct corral_http_tls){.cert_pem = c, .key_pem = k, .ca_pem = a};
    char why[300];
    if (corral_http_tls_check(t, why, sizeof(why)) != 0) {
        snprintf(o->err, sizeof(o->err), "--tls-cert/--tls-key%s: %.300s", ca ? "/--tls-ca" : "",
                 why);
        free(c);
        free(k);
        free(a);
        memset(t, 0, sizeof(*t));
        return false;
    }
    return true;
}

/* --cacert (else $CORRAL_CACERT): a readable PEM file, checked now; the
 * clients of --join and --leave-on-stop use it, with --tls-cert/--tls-key
 * as the client certificate. */
static bool load_client_tls(struct server_opts *o)
{
    const char *env = getenv("CORRAL_CACERT");
    bool from_env = o->cacert[0] == '\0' && env != NULL && env[0] != '\0';
    if (from_env && strlen(env) >= sizeof(o->cacert)) {
        snprintf(o->err, sizeof(o->err), "$CORRAL_CACERT: value too long");
        return false;
    }
    if (from_env)
        memcpy(o->cacert, env, strlen(env) + 1);
    if (o->cacert[0] == '\0')
        return true;
    char *pem = read_pem(o, from_env ? "cacert (from $CORRAL_CACERT)" : "cacert", o->cacert);
    free(pem);
    return pem != NULL;
}

/* A flag's text ("", true/false, 1/0) into *on; false with the reason. */
static bool parse_bool(struct server_opts *o, const char *flag, const char *v, bool *on)
{
    if (v[0] == '\0' || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *on = false;
    else if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *on = true;
    else {
        snprintf(o->err, sizeof(o->err), "--%s: '%s' is not true or false", flag, v);
        return false;
    }
    return true;
}

static bool parse_auth(struct server_opts *o, struct corral_node_config *c)
{
    if (!parse_bool(o, "auth-reads", o->auth_reads, &c->auth_reads) ||
        !parse_bool(o, "leave-on-stop", o->leave_on_stop, &c->leave_on_stop) ||
        !parse_bool(o, "force-new-cluster", o->force_new_cluster, &c->force_new_cluster))
        return false;
    if (c->force_new_cluster && (o->join[0] != '\0' || !c->no_bootstrap)) {
        snprintf(o->err, sizeof(o->err),
                 "--force-new-cluster needs a data dir that names its coordinator and no "
                 "--peers or --join (it recovers what that dir holds)");
        return false;
    }
    if (o->token_file[0] == '\0') {
        if (c->auth_reads) {
            snprintf(o->err, sizeof(o->err), "--auth-reads needs --token-file");
            return false;
        }
        return true;
    }
    char why[400];
    if (corral_tokens_load(o->token_file, &c->tokens, &o->token_loose, why, sizeof(why)) != 0) {
        snprintf(o->err, sizeof(o->err), "--token-file: %s", why);
        return false;
    }
    return true;
}

/* --name (checked; filled in later from --peers or the host name),
 * --cluster-name, --voters, --join (with --peers: refused). */
static bool parse_names(struct server_opts *o, struct corral_node_config *c)
{
    if (o->name[0] != '\0' && !name_ok(o->name)) {
        snprintf(o->err, sizeof(o->err), "--name: '%.80s' is not 1-64 chars of [a-z0-9._-]",
                 o->name);
        return false;
    }
    if (o->name[0] == '\0')
        default_name(c->name, sizeof(c->name)); /* unless --peers or the data dir says */
    else
        snprintf(c->name, sizeof(c->name), "%.64s", o->name);
    const char *cn = o->cluster_name[0] ? o->cluster_name : "corral";
    if (!name_ok(cn)) {
        snprintf(o->err, sizeof(o->err), "--cluster-name: '%.80s' is not 1-64 chars of [a-z0-9._-]",
                 cn);
        return false;
    }
    snprintf(c->cluster_name, sizeof(c->cluster_name), "%.64s", cn);
    uint64_t v = 3;
    if (o->voters[0] != '\0' &&
        (!parse_uint(o->voters, 1, 7, &v) || (v != 1 && v != 3 && v != 5 && v != 7))) {
        snprintf(o->err, sizeof(o->err), "--voters: '%s' is not 1, 3, 5 or 7", o->voters);
        return false;
    }
    c->voters = (uint32_t)v;
    if (o->join[0] != '\0' && o->peers[0] != '\0') {
        snprintf(o->err, sizeof(o->err),
                 "--join and --peers: give --peers to start a new cluster, --join to join one");
        return false;
    }
    return true;
}

/* Without --peers, a data dir that names its coordinator (meta version
 * 2) says who this node is: its name, ids and cluster name win over the
 * flags (which may only repeat them), and the node never bootstraps: so
 * a coordinator that joined, or one moved to a new address, restarts with
 * its data dir alone. With --peers the flags say who it is, as they
 * always did, and the data dir must match them (the storage refuses
 * another cluster's or another node's dir). Returns 1 when the data dir
 * decided, 0 when the flags do (a new dir, --peers, or a version-1 meta
 * file, which gets the names), -1 on an error (in o->err). */
static int from_data_dir(struct server_opts *o, struct corral_node_config *c, bool *legacy)
{
    struct corral_storage_ident have;
    char err[400];
    int rv = corral_storage_peek_ident(c->data_dir, &have, err, sizeof(err));
    if (rv == CORRAL_ENOTFOUND)
        return 0;
    if (rv != 0) {
        snprintf(o->err, sizeof(o->err), "data dir %.200s: %.300s", c->data_dir, err);
        return -1;
    }
    if (have.name[0] == '\0') {
        *legacy = true;
        return 0;
    }
    if (o->peers[0] != '\0')
        return 0;
    if (o->name[0] != '\0' && strcmp(o->name, have.name) != 0) {
        snprintf(o->err, sizeof(o->err),
                 "--name %s: data dir %.200s belongs to the coordinator named '%s'", o->name,
                 c->data_dir, have.name);
        return -1;
    }
    if (o->cluster_name[0] != '\0' && strcmp(o->cluster_name, have.cluster_name) != 0) {
        snprintf(o->err, sizeof(o->err),
                 "--cluster-name %s: data dir %.200s belongs to the cluster named '%s'",
                 o->cluster_name, c->data_dir, have.cluster_name);
        return -1;
    }
    snprintf(c->name, sizeof(c->name), "%s", have.name);
    snprintf(c->cluster_name, sizeof(c->cluster_name), "%s", have.cluster_name);
    c->id = have.node_id;
    c->cluster_id = have.cluster_id;
    c->no_bootstrap = true;
    return 1;
}

static bool build_config(struct server_opts *o, struct corral_node_config *c, int *level)
{
    memset(c, 0, sizeof(*c));
    corral_http_limits_default(&c->http);
    corral_coord_config_default(&c->coord);
    c->max_pending = 65536;
    c->data_dir = o->data_dir[0] ? o->data_dir : "./corral-data";
    *level = corral_log_level_parse(o->log_level[0] ? o->log_level : "info");
    if (*level < 0) {
        snprintf(o->err, sizeof(o->err), "--log-level: '%s' is not error, warn, info or debug",
                 o->log_level);
        return false;
    }
    if (!parse_addr(o->cluster_addr[0] ? o->cluster_addr : "127.0.0.1", DEFAULT_CLUSTER_PORT,
                    c->cluster_host, sizeof(c->cluster_host), &c->cluster_port)) {
        snprintf(o->err, sizeof(o->err),
                 "--cluster-addr: '%s' is not HOST:PORT with a numeric "
                 "address",
                 o->cluster_addr);
        return false;
    }
    if (!parse_addr(o->http_addr[0] ? o->http_addr : "127.0.0.1", DEFAULT_HTTP_PORT, c->http_host,
                    sizeof(c->http_host), &c->http_port)) {
        snprintf(o->err, sizeof(o->err),
                 "--http-addr: '%s' is not HOST:PORT with a numeric "
                 "address",
                 o->http_addr);
        return false;
    }
    bool named = false;
    if (!parse_numbers(o, c) || !parse_names(o, c) || !parse_peers(o, c, &named))
        return false;
    bool legacy = false;
    int known = from_data_dir(o, c, &legacy);
    if (known < 0 || (known == 0 && !resolve_id(o, c, o->cluster_addr[0], named)))
        return false;
    if (strcmp(c->http_host, c->cluster_host) == 0 && c->http_port == c->cluster_port) {
        snprintf(o->err, sizeof(o->err), "--http-addr and --cluster-addr are the same address");
        return false;
    }
    if (!load_tls(o, &c->tls) || !load_client_tls(o))
        return false;
    if (!c->no_bootstrap)
        c->cluster_id = legacy ? legacy_cluster_id(c) : cluster_id(c);
    return parse_auth(o, c);
}

/* The role flags (--coordinator, --worker) take no value: they are taken
 * out of argv here. A worker is not in Raft: it is `corral agent` (the
 * member side) with the same flags. */
static int take_roles(int *argc, char **argv, bool *coordinator, bool *worker)
{
    int k = 1;
    *coordinator = *worker = false;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--coordinator") == 0)
            *coordinator = true;
        else if (strcmp(argv[i], "--worker") == 0)
            *worker = true;
        else
            argv[k++] = argv[i];
    }
    *argc = k;
    argv[k] = NULL;
    return 0;
}

static bool has_flag(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], name, len) == 0 && (argv[i][len] == '\0' || argv[i][len] == '='))
            return true;
    return false;
}

/* "host:port" of a listen address, IPv6 in brackets. */
static void addr_text(char *out, size_t cap, const char *host, uint16_t port)
{
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

static bool wildcard_host(const char *h)
{
    return strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0;
}

/* The join answer's coordinators into c->peers (where to dial first). */
static bool join_peers(const json_t *list, struct corral_node_config *c, char *why, size_t cap)
{
    size_t i;
    const json_t *k;
    c->n_peers = 0;
    json_array_foreach(list, i, k)
    {
        const char *name = json_string_value(json_object_get(k, "name"));
        const char *addr = json_string_value(json_object_get(k, "cluster_addr"));
        json_int_t id = json_integer_value(json_object_get(k, "id"));
        if (c->n_peers == CORRAL_RAFT_NODES_MAX || name == NULL || addr == NULL || id <= 0)
            break;
        struct corral_node_peer_config *p = &c->peers[c->n_peers];
        p->id = (uint64_t)id;
        snprintf(p->name, sizeof(p->name), "%.64s", name);
        if (!parse_addr(addr, DEFAULT_CLUSTER_PORT, p->host, sizeof(p->host), &p->port))
            continue; /* a name, not a numeric address: the roster will say */
        c->n_peers++;
    }
    if (i != json_array_size(list)) {
        snprintf(why, cap, "the answer's coordinators list is malformed");
        return false;
    }
    return true;
}

/* --join: asks the cluster (any coordinator; the client follows the 307
 * to the leader) to take this node in. On success c has the id the
 * cluster gave it, the cluster's id and where its coordinators are. */
static int join_cluster(const struct server_opts *o, struct corral_node_config *c)
{
    if (wildcard_host(c->cluster_host) || wildcard_host(c->http_host)) {
        fprintf(stderr, "corral server run: --join needs --cluster-addr and --http-addr with an "
                        "address of this host the others can reach, not a wildcard\n");
        return CORRAL_EXIT_USAGE;
    }
    struct corral_client cl;
    if (corral_client_init(&cl, o->join, 30000) != 0) {
        fprintf(stderr, "corral server run: --join: %s\n", cl.err);
        return CORRAL_EXIT_USAGE;
    }
    if (o->token_file[0] != '\0' && corral_client_set_token_file(&cl, o->token_file) != 0) {
        fprintf(stderr, "corral server run: --token-file: %s\n", cl.err);
        corral_client_close(&cl);
        return CORRAL_EXIT_USAGE;
    }
    char ca[ADDR_TEXT_MAX], ha[ADDR_TEXT_MAX];
    addr_text(ca, sizeof(ca), c->cluster_host, c->cluster_port);
    addr_text(ha, sizeof(ha), c->http_host, c->http_port);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "name", c->name, "cluster_name",
                             c->cluster_name, "cluster_addr", ca, "http_addr", ha);
    struct corral_client_response r;
    int rv = body != NULL
                 ? corral_client_request_json(&cl, "POST", "/v1/coordinators", NULL, body, &r)
                 : CORRAL_ENOMEM;
    json_decref(body);
    int code = CORRAL_EXIT_FAILURE;
    char why[300] = "";
    if (rv != 0) {
        fprintf(stderr, "corral server run: --join %s: %s\n", o->join, cl.err);
    } else if (r.status != 201) {
        fprintf(stderr, "corral server run: --join: the cluster refused (%ld %s): %s\n", r.status,
                r.code ? r.code : "", r.message ? r.message : "(no message)");
    } else {
        json_int_t id = json_integer_value(json_object_get(r.json, "id"));
        const char *cid = json_string_value(json_object_get(r.json, "cluster_id"));
        uint64_t cluster = 0;
        char *end = NULL;
        if (cid != NULL)
            cluster = strtoull(cid, &end, 16);
        if (id <= 0 || cid == NULL || end == cid || *end != '\0')
            snprintf(why, sizeof(why), "the answer has no id or cluster_id");
        else if (join_peers(json_object_get(r.json, "coordinators"), c, why, sizeof(why))) {
            c->id = (uint64_t)id;
            c->cluster_id = cluster;
            c->no_bootstrap = true;
            code = CORRAL_EXIT_OK;
            fprintf(stderr, "corral server run: joined cluster '%s' as %s (id %" PRIu64 ")\n",
                    c->cluster_name, c->name, c->id);
        }
        if (why[0] != '\0')
            fprintf(stderr, "corral server run: --join: %s\n", why);
    }
    if (rv == 0)
        corral_client_response_free(&r);
    corral_client_close(&cl);
    return code;
}

/* --leave-on-stop on a follower: the leader (through any peer) takes it
 * out of the roster. Best effort, bounded by timeout_ms; true once out. */
static bool leave_cluster(const struct server_opts *o, const struct corral_node_config *c,
                          const struct corral_node_exit *ex, uint32_t timeout_ms)
{
    char list[CORRAL_RAFT_NODES_MAX * 260] = "";
    size_t len = 0;
    for (uint32_t i = 0; i < ex->n_peers && len < sizeof(list); i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", len ? "," : "",
                                ex->peers_http[i]);
    struct corral_client cl;
    if (ex->n_peers == 0 || corral_client_init(&cl, list, timeout_ms) != 0) {
        corral_log(CORRAL_LOG_WARN,
                   "--leave-on-stop: no other coordinator known to ask; run "
                   "corral coordinator remove %s",
                   c->name);
        return false;
    }
    if (o->token_file[0] != '\0')
        corral_client_set_token_file(&cl, o->token_file);
    char path[128];
    snprintf(path, sizeof(path), "/v1/coordinators/%s", c->name);
    struct corral_client_response r;
    int rv = corral_client_request(&cl, "DELETE", path, NULL, NULL, 0, &r);
    bool left = rv == 0 && r.status == 200;
    if (left)
        corral_log(CORRAL_LOG_INFO, "--leave-on-stop: left the cluster");
    else
        corral_log(CORRAL_LOG_WARN,
                   "--leave-on-stop: the cluster did not take %s out (%s); run "
                   "corral coordinator remove %s",
                   c->name, rv != 0 ? cl.err : (r.message ? r.message : "refused"), c->name);
    if (rv == 0)
        corral_client_response_free(&r);
    corral_client_close(&cl);
    return left;
}

/* A follower's --leave-on-stop while its node runs on (node.h,
 * ask_leave): one thread asks the leader, then tells the node, which
 * stops at its next tick. */
struct leave_asker {
    const struct server_opts *o;
    const struct corral_node_config *c;
    struct corral_node_exit peers;
    pthread_t thread;
    bool started;
    atomic_bool answered;
};

static void *leave_thread(void *arg)
{
    struct leave_asker *a = arg;
    /* Answered before the node's own wait runs out. */
    leave_cluster(a->o, a->c, &a->peers, CORRAL_NODE_LEAVE_WAIT_MS - 1000);
    atomic_store(&a->answered, true);
    return NULL;
}

static void ask_leave(void *ud, const struct corral_node_exit *peers)
{
    struct leave_asker *a = ud;
    if (a->started)
        return;
    a->peers = *peers;
    /* libcurl's global init is not thread-safe: done here, before the
     * thread, on the one thread that runs. */
    char err[256];
    const struct corral_curl *cu = corral_curl_load(err, sizeof(err));
    if (cu != NULL)
        cu->global_init(CURL_GLOBAL_DEFAULT);
    int rv = pthread_create(&a->thread, NULL, leave_thread, a);
    if (rv != 0) {
        corral_log(CORRAL_LOG_WARN,
                   "--leave-on-stop: cannot start the thread that asks the leader (%s); run "
                   "corral coordinator remove %s",
                   strerror(rv), a->c->name);
        atomic_store(&a->answered, true);
        return;
    }
    a->started = true;
}

/* Runs the node built from o into c: the join first, then until the stop,
 * then the leave. An exit code. */
static int serve(struct server_opts *o, struct corral_node_config *c, int level)
{
    c->cluster_wildcard = wildcard_host(c->cluster_host);
    /* This node's own HTTP requests (--join, --leave-on-stop): to nodes
     * that serve TLS when this one does (every node of a cluster does or
     * none does). */
    static struct corral_client_tls ctls;
    ctls = (struct corral_client_tls){.cacert = o->cacert[0] ? o->cacert : NULL,
                                      .cert = o->tls_cert[0] ? o->tls_cert : NULL,
                                      .key = o->tls_key[0] ? o->tls_key : NULL,
                                      .https_default = o->tls_cert[0] != '\0'};
    corral_client_set_tls(&ctls);
    if (o->join[0] != '\0' && !c->no_bootstrap) {
        int jc = join_cluster(o, c);
        if (jc != CORRAL_EXIT_OK)
            return jc;
    } else if (o->join[0] != '\0') {
        fprintf(stderr,
                "corral server run: data dir %s already belongs to %s (id %" PRIu64
                ") of cluster '%s': --join is ignored, it restarts as that coordinator\n",
                c->data_dir, c->name, c->id, c->cluster_name);
    }
    corral_log_setup(level, c->id);
    if (o->token_loose)
        corral_log(CORRAL_LOG_WARN,
                   "token file %s is readable by group or other users: chmod 600 it (anyone who "
                   "reads it can join the cluster and write to it)",
                   o->token_file);
    struct corral_node_hooks hooks;
    if (corral_api_hooks(&hooks) != 0) {
        fprintf(stderr, "corral server run: out of memory\n");
        return CORRAL_EXIT_FAILURE;
    }
    static struct corral_node_exit ex;
    static struct leave_asker asker;
    asker = (struct leave_asker){.o = o, .c = c};
    atomic_init(&asker.answered, false);
    c->exit = &ex;
    c->ask_leave = ask_leave;
    c->ask_leave_ud = &asker;
    c->leave_answered = &asker.answered;
    int code = corral_node_run(c, &hooks);
    corral_api_hooks_free(&hooks);
    if (asker.started)
        pthread_join(asker.thread, NULL);
    else if (code == 0 && ex.leave_needed)
        leave_cluster(o, c, &ex, 15000);
    return code == 0 ? CORRAL_EXIT_OK : CORRAL_EXIT_FAILURE;
}

static int server_run(int argc, char **argv)
{
    bool coordinator, worker;
    take_roles(&argc, argv, &coordinator, &worker);
    if (coordinator && worker) {
        fprintf(stderr, "corral server run: --coordinator and --worker together are not "
                        "supported yet: run a coordinator and a `corral agent` beside it\n");
        return CORRAL_EXIT_USAGE;
    }
    if (worker) {
        if (!has_flag(argc, argv, "--coordinators")) {
            fprintf(stderr, "corral server run: --worker needs --coordinators "
                            "HOST:PORT,... (the coordinators' HTTP addresses)\n");
            return CORRAL_EXIT_USAGE;
        }
        argv[0] = "agent";
        return corral_cmd_agent(argc, argv);
    }
    if (coordinator && !has_flag(argc, argv, "--peers") && !has_flag(argc, argv, "--config")) {
        fprintf(stderr, "corral server run: --coordinator needs --peers HOST:PORT,... (every "
                        "initial coordinator); without a role flag a single node runs\n");
        return CORRAL_EXIT_USAGE;
    }
    static struct server_opts o; /* large: keep it off the stack */
    memset(&o, 0, sizeof(o));
    int rv = parse_flags(&o, argc, argv);
    if (rv == 1) {
        usage(stdout);
        return CORRAL_EXIT_OK;
    }
    struct corral_node_config c;
    memset(&c, 0, sizeof(c));
    int level = CORRAL_LOG_INFO;
    int code;
    if (rv != 0 || !build_config(&o, &c, &level)) {
        fprintf(stderr, "corral server run: %s\n", o.err);
        fprintf(stderr, "Run 'corral server run --help' for the options.\n");
        code = CORRAL_EXIT_USAGE;
    } else {
        code = serve(&o, &c, level);
    }
    /* The PEM texts load_tls read (the HTTP daemon has stopped). */
    free((char *)(uintptr_t)c.tls.cert_pem);
    free((char *)(uintptr_t)c.tls.key_pem);
    free((char *)(uintptr_t)c.tls.ca_pem);
    return code;
}

int corral_cmd_server(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return server_run(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return CORRAL_EXIT_OK;
    }
    fprintf(stderr, "corral server: expected 'run'\n");
    usage(stderr);
    return CORRAL_EXIT_USAGE;
}
