/* The server's options table and config file reader (server_config.h). */
#include "cli/server_config.h"

#include <errno.h>
#include <ini.h>
#include <string.h>
#include <sys/stat.h>

#include "core/raft.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define OPT(field, name, help)                                                                     \
    {                                                                                              \
        name, offsetof(struct server_opts, field), sizeof(((struct server_opts *)0)->field), help  \
    }
const struct opt_def server_opt_defs[] = {
    OPT(name, "name",
        "this coordinator's name, 1-64 chars of [a-z0-9._-] (default: its NAME in --peers, found "
        "from --cluster-addr; node<position> for plain --peers entries; else the host name)"),
    OPT(cluster_name, "cluster-name",
        "the cluster's name, part of its identity: nodes of another name are refused (default "
        "corral)"),
    OPT(id, "id",
        "with plain HOST:PORT --peers entries: this node's 1-based position in them (default: "
        "found from --cluster-addr, or 1)"),
    OPT(data_dir, "data-dir",
        "where the WAL, snapshots and meta file live (default ./corral-data)"),
    OPT(cluster_addr, "cluster-addr", "HOST:PORT for Raft traffic (default 127.0.0.1:8139)"),
    OPT(http_addr, "http-addr", "HOST:PORT for the HTTP API (default 127.0.0.1:8140)"),
    OPT(peers, "peers",
        "NAME=HOST:PORT,... (or HOST:PORT,...) cluster addresses of all initial coordinators, "
        "this one included (default: none, a cluster of one)"),
    OPT(join, "join",
        "HOST:PORT,... HTTP addresses of coordinators of a running cluster: join it as a new "
        "coordinator (learner, then voter up to --voters); only for an empty data dir"),
    OPT(leave_on_stop, "leave-on-stop",
        "SIGTERM takes this coordinator out of the cluster before it stops (a flag; in the "
        "config file: leave-on-stop = true)"),
    OPT(force_new_cluster, "force-new-cluster",
        "recovery when a quorum is lost for good: this node, with its data dir, becomes the only "
        "voter; the others leave the roster (a flag; once, then restart without it)"),
    OPT(voters, "voters",
        "how many coordinators vote; the leader promotes caught-up learners up to this: 1, 3, 5 "
        "or 7 (default 3)"),
    OPT(election_timeout_ms, "election-timeout-ms",
        "base election timeout, randomized in [t, 2t) (default " STR(
            CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT) ")"),
    OPT(heartbeat_ms, "heartbeat-ms",
        "leader heartbeat interval (default " STR(CORRAL_RAFT_HEARTBEAT_MS_DEFAULT) ")"),
    OPT(snapshot_entries, "snapshot-entries",
        "snapshot and compact the log every N applied entries (default 50000)"),
    OPT(request_timeout_ms, "request-timeout-ms",
        "HTTP requests waiting on Raft answer 503 after this (default 5000)"),
    OPT(max_connections, "max-connections", "open HTTP connections before 503 busy (default 1024)"),
    OPT(member_heartbeat_ms, "member-heartbeat-ms",
        "how often members heartbeat to the leader (default 250)"),
    OPT(lease_ms, "lease-ms",
        "the lease a heartbeat answer grants; more than 2 member heartbeats (default 1000)"),
    OPT(max_drift_percent, "max-drift-percent",
        "bound on how much faster or slower two hosts' clocks run, 1-50 (default 10)"),
    OPT(leader_max_fsync_ms, "leader-max-fsync-ms",
        "a leader whose WAL fsyncs take longer than this is degraded; 0: not watched (default " STR(
            LEADER_MAX_FSYNC_MS_DEFAULT) ")"),
    OPT(leader_max_loop_lag_ms, "leader-max-loop-lag-ms",
        "a leader whose event loop runs a tick later than this is degraded; 0: not watched "
        "(default " STR(LEADER_MAX_LOOP_LAG_MS_DEFAULT) ")"),
    OPT(leader_max_apply_backlog, "leader-max-apply-backlog",
        "a leader with more committed entries not yet applied is degraded; 0: not watched "
        "(default " STR(LEADER_MAX_APPLY_BACKLOG_DEFAULT) ")"),
    OPT(leader_degraded_ms, "leader-degraded-ms",
        "a leader degraded this long hands leadership to the most caught-up voter; 0: never, "
        "else at least " STR(LEADER_DEGRADED_MS_MIN) " (default " STR(
            LEADER_DEGRADED_MS_DEFAULT) ")"),
    OPT(log_level, "log-level", "error, warn, info or debug (default info)"),
    OPT(tls_cert, "tls-cert",
        "PEM certificate (chain) of the HTTP API: serve it over TLS (needs --tls-key; every node "
        "of the cluster must use TLS)"),
    OPT(tls_key, "tls-key", "PEM private key (unencrypted) of --tls-cert"),
    OPT(tls_ca, "tls-ca",
        "PEM CA certificate(s): HTTP clients must present a certificate it signed (needs "
        "--tls-cert)"),
    OPT(cacert, "cacert",
        "PEM CA certificate(s) the other coordinators' HTTPS certificates are verified against, "
        "for this node's own requests to them (--join, --leave-on-stop; default $CORRAL_CACERT, "
        "else the system's store); with --tls-cert this node presents that certificate when "
        "they ask for one"),
    OPT(token_file, "token-file",
        "file with the cluster token (at least 16 bytes; a second line: the next token, during a "
        "rotation); peers prove it, HTTP writes send it as a bearer token (default: none, an "
        "open cluster)"),
    OPT(auth_reads, "auth-reads",
        "with --token-file, GETs need the token too, but /health and /health/ready (a flag; in "
        "the config file: auth-reads = true)"),
};
#undef OPT
#define N_OPTS (sizeof(server_opt_defs) / sizeof(server_opt_defs[0]))
_Static_assert(N_OPTS == SERVER_N_OPTS, "SERVER_N_OPTS counts server_opt_defs");

const struct opt_def *server_opt_find(const char *name)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strcmp(server_opt_defs[i].name, name) == 0)
            return &server_opt_defs[i];
    return NULL;
}

bool server_opt_set(struct server_opts *o, const struct opt_def *d, const char *value)
{
    if (value[0] == '\0') {
        snprintf(o->err, sizeof(o->err), "--%s: empty value", d->name);
        return false;
    }
    if (strlen(value) >= d->size) {
        snprintf(o->err, sizeof(o->err), "--%s: value too long", d->name);
        return false;
    }
    memcpy((char *)o + d->offset, value, strlen(value) + 1);
    return true;
}

/* The config file is read through our own reader so the handler knows the
 * line: inih's INI_HANDLER_LINENO is fixed when the library is built. */
struct ini_ctx {
    struct server_opts *o;
    const char *file;
    FILE *f;
    int line;           /* of the text last handed to inih */
    bool line_done;     /* that text ended with a newline */
    bool indented;      /* that line began with a space or tab */
    int set_at[N_OPTS]; /* line each key was given on, 0 if not yet */
    bool failed;
};

/* fgets, but by the byte, and refusing two kinds of line inih would
 * misread: one holding a NUL byte (strlen would hide the rest of it) and
 * one longer than inih's line buffer of num bytes (inih would take the
 * rest for a new line, and count it as one). So each call is one line,
 * and inih's line numbers are the file's. */
static char *ini_read(char *str, int num, void *stream)
{
    struct ini_ctx *c = stream;
    size_t len = 0;
    int ch = EOF;
    while (len + 1 < (size_t)num && (ch = getc(c->f)) != EOF) {
        str[len++] = (char)ch;
        if (ch == '\n' || ch == '\0')
            break;
    }
    if (len == 0 || ferror(c->f))
        return NULL;
    str[len] = '\0';
    if (c->line_done) {
        c->line++;
        c->indented = str[0] == ' ' || str[0] == '\t';
    }
    c->line_done = str[len - 1] == '\n';
    bool nul = ch == '\0';
    bool too_long = !nul && !c->line_done && (ch = getc(c->f)) != EOF && ungetc(ch, c->f) != EOF;
    if (!nul && !too_long)
        return str;
    if (c->failed)
        return NULL;
    if (nul)
        snprintf(c->o->err, sizeof(c->o->err), "%s:%d: a NUL byte: not a text file", c->file,
                 c->line);
    else
        snprintf(c->o->err, sizeof(c->o->err), "%s:%d: line longer than %d bytes", c->file, c->line,
                 num - 2);
    c->failed = true;
    return NULL;
}

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    if (c->failed)
        return 0;
    if (section[0] != '\0' && strcmp(section, "server") != 0) {
        snprintf(c->o->err, sizeof(c->o->err), "%s:%d: unknown section [%s]", c->file, c->line,
                 section);
        c->failed = true;
        return 0;
    }
    const struct opt_def *d = server_opt_find(name);
    if (d == NULL) {
        snprintf(c->o->err, sizeof(c->o->err), "%s:%d: unknown key '%s'", c->file, c->line, name);
        c->failed = true;
        return 0;
    }
    int *at = &c->set_at[d - server_opt_defs];
    if (*at != 0) {
        /* inih reads an indented line after a key as more of its value
         * and hands it over under the same name. */
        if (c->indented && *at < c->line)
            snprintf(c->o->err, sizeof(c->o->err),
                     "%s:%d: indented line continues '%s' from %s:%d; values are one line "
                     "(remove the indentation)",
                     c->file, c->line, name, c->file, *at);
        else
            snprintf(c->o->err, sizeof(c->o->err), "%s:%d: duplicate key '%s' (first at %s:%d)",
                     c->file, c->line, name, c->file, *at);
        c->failed = true;
        return 0;
    }
    *at = c->line;
    if (!server_opt_set(c->o, d, value)) {
        char why[sizeof(c->o->err)];
        snprintf(why, sizeof(why), "%s", c->o->err);
        snprintf(c->o->err, sizeof(c->o->err), "%s:%d: %.300s", c->file, c->line, why);
        c->failed = true;
        return 0;
    }
    return 1;
}

bool server_config_read(struct server_opts *o, FILE *f, const char *file)
{
    struct ini_ctx c = {.o = o, .file = file, .f = f, .line_done = true};
    errno = 0;
    int rv = ini_parse_stream(ini_read, &c, on_ini, &c);
    int read_errno = errno;
    if (ferror(f) != 0) {
        snprintf(o->err, sizeof(o->err), "--config %s: cannot read: %s", file,
                 strerror(read_errno ? read_errno : EIO));
        return false;
    }
    if (rv != 0 && !c.failed)
        snprintf(o->err, sizeof(o->err), "%s:%d: not a valid INI line", file, rv);
    return rv == 0 && !c.failed;
}

bool server_config_load(struct server_opts *o, const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        snprintf(o->err, sizeof(o->err), "--config %s: cannot open: %s", file, strerror(errno));
        return false;
    }
    /* fopen() opens a directory for reading; fgets() then fails with
     * EISDIR, which inih takes for an empty file. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(o->err, sizeof(o->err), "--config %s: is a directory, not a file", file);
        fclose(f);
        return false;
    }
    bool ok = server_config_read(o, f, file);
    fclose(f);
    return ok;
}
