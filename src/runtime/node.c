/* A coordinator node: see node.h for the loop. */
#include "runtime/node.h"

#include <assert.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "corral.h"
#include "runtime/log.h"
#include "runtime/node_impl.h"
#include "runtime/trace.h"
#include "util/mem.h"
#include "util/parse.h"

uint64_t node_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void format_addr(char *buf, size_t cap, const char *host, uint16_t port)
{
    if (strchr(host, ':') != NULL)
        snprintf(buf, cap, "[%s]:%u", host, port);
    else
        snprintf(buf, cap, "%s:%u", host, port);
}

/* ---- shutdown ---- */

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void on_transport_closed(void *ud)
{
    (void)ud;
}

/* Stops the HTTP server and the transport; the loop releases them. */
static void close_listeners(struct corral_node *n)
{
    if (n->http != NULL)
        corral_http_stop(n->http);
    n->http = NULL;
    if (n->transport != NULL)
        corral_transport_stop(n->transport, on_transport_closed, n);
    n->transport = NULL;
}

void node_stop(struct corral_node *n, int exit_code)
{
    if (n->stopping)
        return;
    n->stopping = true;
    n->exit_code = exit_code;
    corral_log(CORRAL_LOG_INFO, "shutting down");
    corral_pending_fail_all(&n->pending, CORRAL_ESHUTDOWN);
    if (n->hooks.stopping != NULL)
        n->hooks.stopping(n);
    close_listeners(n);
    uv_close((uv_handle_t *)&n->tick, on_closed_handle);
    uv_close((uv_handle_t *)&n->sweep, on_closed_handle);
    uv_close((uv_handle_t *)&n->check, on_closed_handle);
    uv_close((uv_handle_t *)&n->prepare, on_closed_handle);
    uv_close((uv_handle_t *)&n->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&n->sigint, on_closed_handle);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct corral_node *n = s->data;
    corral_log(CORRAL_LOG_INFO, "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    if (n->leave_deadline_ms == 0 && signum == SIGTERM && n->cfg.leave_on_stop &&
        !node_roster_leave(n, node_now_ms()))
        return; /* leaving first; a second signal stops at once */
    node_stop(n, 0);
}

/* ---- the ready loop: the driver (core/raft_drive.h) with the node's io ---- */

/* What a storage call's error rv was: the system call's error ("No space
 * left on device", "Input/output error") when the storage knows it. */
static void storage_error(const struct corral_node *n, int rv, char *out, size_t len)
{
    int e = rv == CORRAL_EIO ? corral_storage_errno(n->storage) : 0;
    snprintf(out, len, "%s", e != 0 ? strerror(e) : corral_strerror(rv));
}

/* One batch, persisted on the loop thread before returning. (Handing the
 * fsync to a libuv worker was measured: on 2 cores shared by three nodes
 * it raised the write p99 from about 3 ms to about 10 ms for no
 * throughput gain.) */
static int io_persist(void *ud, const struct corral_raft_ready *rd, bool must_sync, bool *done)
{
    struct corral_node *n = ud;
    int rv = 0;
    if (rd->has_snapshot)
        rv = corral_storage_save_snapshot(n->storage, &rd->snapshot, rd->snapshot_data);
    if (rv == 0 && rd->n_entries > 0)
        rv = corral_storage_append(n->storage, rd->entries, rd->n_entries);
    if (rv == 0 && rd->has_hard_state)
        rv = corral_storage_set_hard_state(n->storage, &rd->hard_state);
    uint64_t last = rd->n_entries > 0 ? rd->entries[rd->n_entries - 1].index : 0;
    if (rd->has_hard_state)
        CORRAL_TRACE(CORRAL_TRACE_COMMIT, rd->hard_state.commit, 0);
    CORRAL_TRACE(CORRAL_TRACE_WAL_WRITTEN, last, rd->n_entries);
    if (rv == 0 && must_sync) {
        uint64_t t0 = uv_hrtime();
        rv = corral_storage_sync(n->storage);
        uint64_t ns = uv_hrtime() - t0;
        corral_hist_observe(&n->fsync_hist, (double)ns / 1e9);
        node_health_fsync(n, ns / 1000000u);
        CORRAL_TRACE(CORRAL_TRACE_FSYNC_DONE, last, rd->n_entries);
    }
    if (rv != 0) {
        char why[128];
        storage_error(n, rv, why, sizeof(why));
        corral_log(CORRAL_LOG_ERROR, "writing the WAL failed: %s; stopping", why);
    }
    *done = true;
    return rv;
}

/* The index a trace record gives a message (trace.h). */
static uint64_t trace_msg_index(const struct corral_raft_msg *m)
{
    return m->type == CORRAL_RAFT_MSG_APPEND ? m->index + m->n_entries : m->index;
}

static void io_send(void *ud, const struct corral_raft_msg *m)
{
    struct corral_node *n = ud;
    CORRAL_TRACE(CORRAL_TRACE_SEND, (uint64_t)m->type << 32 | m->to, trace_msg_index(m));
    corral_transport_send(n->transport, m);
}

static void io_flush(void *ud)
{
    struct corral_node *n = ud;
    if (n->transport != NULL)
        corral_transport_flush(n->transport);
}

static void io_applied(void *ud, const struct corral_raft_entry *e,
                       const struct corral_state_result *res)
{
    struct corral_node *n = ud;
    CORRAL_TRACE(CORRAL_TRACE_APPLY, e->index, 0);
    corral_pending_applied(&n->pending, e, res);
    if (n->hooks.applied != NULL)
        n->hooks.applied(n, e, res);
}

static void io_restored(void *ud, const struct corral_raft_snapshot_meta *meta)
{
    struct corral_node *n = ud;
    /* Writes the snapshot covers: their outcome is in the snapshot but not
     * which write did what; answer "unknown" rather than guess. */
    corral_pending_fail_writes_upto(&n->pending, meta->index, CORRAL_ETIMEDOUT);
    corral_log(CORRAL_LOG_INFO, "installed a snapshot at index %" PRIu64 " from the leader",
               meta->index);
}

static void note_leader(struct corral_node *n, const struct corral_raft_ready *rd)
{
    assert(rd->term >= n->term); /* terms never go back */
    if (rd->term == n->term && rd->leader == n->leader)
        return;
    if (rd->leader != n->leader) {
        n->leader_changes++;
        if (rd->leader != 0)
            corral_log(CORRAL_LOG_INFO, "leader is node %" PRIu64 " (term %" PRIu64 ")%s",
                       rd->leader, rd->term, rd->leader == n->cfg.id ? ", this node" : "");
        else
            corral_log(CORRAL_LOG_INFO, "no leader (term %" PRIu64 ")", rd->term);
        n->last_leader_contact_ms = node_now_ms();
    }
    n->leader = rd->leader;
    n->term = rd->term;
}

static void io_batch_done(void *ud, const struct corral_raft_ready *rd)
{
    struct corral_node *n = ud;
    note_leader(n, rd);
    node_duty_batch(n, rd);
    for (uint32_t i = 0; i < rd->n_reads; i++) {
        CORRAL_TRACE(CORRAL_TRACE_READ_READY, rd->reads[i].id, rd->reads[i].index);
        corral_pending_read_ready(&n->pending, &rd->reads[i]);
    }
    corral_pending_release_reads(&n->pending, corral_state_applied(n->st));
    assert(corral_pending_check(&n->pending) || n->pending.count > 64);
    n->batch_seen = true; /* the API's hook runs once the driver is done */
}

static int io_save_snapshot(void *ud, const struct corral_raft_snapshot_meta *meta,
                            struct corral_rbuf *data)
{
    struct corral_node *n = ud;
    int rv = corral_storage_save_snapshot(n->storage, meta, data);
    if (rv == 0)
        corral_log(CORRAL_LOG_DEBUG, "snapshot at index %" PRIu64 " (%u bytes)", meta->index,
                   data->len);
    else {
        char why[128];
        storage_error(n, rv, why, sizeof(why));
        corral_log(CORRAL_LOG_ERROR, "snapshot at %" PRIu64 " failed: %s", meta->index, why);
    }
    return rv;
}

static const struct corral_drive_io node_io = {
    .persist = io_persist,
    .send = io_send,
    .flush = io_flush,
    .applied = io_applied,
    .restored = io_restored,
    .batch_done = io_batch_done,
    .save_snapshot = io_save_snapshot,
};

static void drain_ready(struct corral_node *n)
{
    if (n->stopping)
        return;
    int rv = corral_drive_run(&n->drive);
    if (rv == 0)
        node_roster_sync(n);
    /* Outside the driver: a blocking query answered here may propose. */
    if (rv == 0 && n->batch_seen && n->hooks.batch_done != NULL) {
        n->batch_seen = false;
        n->hooks.batch_done(n);
    }
    /* The answers first (the clients wait on them; on a follower there
     * are few), then the messages: acknowledgements, heartbeats, commit
     * notices. Both now, not at the loop's next turn. */
    if (rv == 0)
        corral_http_flush(n->http);
    if (n->transport != NULL)
        corral_transport_flush(n->transport);
    if (rv != 0) {
        if (rv != CORRAL_EIO)
            corral_log(CORRAL_LOG_ERROR, "applying to the store failed: %s; stopping",
                       corral_strerror(rv));
        node_stop(n, 1);
    }
}

static void on_check(uv_check_t *c)
{
    drain_ready(c->data);
}

/* Before the loop blocks in its poll: work a timer callback made ready
 * (a proposal from an HTTP request libmicrohttpd parsed in its timer run,
 * a tick's messages) would otherwise wait for the next event, up to a
 * whole tick, before the check above runs. A resumed HTTP answer starts
 * a zero timer, so the poll after this does not block either. */
static void on_prepare(uv_prepare_t *p)
{
    drain_ready(p->data);
}

static void on_tick(uv_timer_t *t)
{
    struct corral_node *n = t->data;
    uint64_t now = node_now_ms();
    corral_raft_tick(n->raft, now);
    drain_ready(n);
    /* As the simulator: the controller runs after the tick's batch. */
    if (!n->stopping)
        node_duty_tick(n);
    if (!n->stopping)
        node_health_tick(n, now);
    if (!n->stopping)
        node_roster_tick(n, now);
}

static void ask_read(void *ud, uint64_t read_id)
{
    struct corral_node *n = ud;
    corral_raft_read_index(n->raft, read_id); /* no leader: retried later */
}

/* A ReadIndex request or its answer travels once: the transport may drop
 * it (a connection not up yet, a full queue) and Raft does not resend it.
 * So an unanswered read asks again, with the same id, every two
 * heartbeats. A leader's own reads ride its heartbeat rounds, which
 * repeat. */
static void retry_reads(struct corral_node *n, uint64_t now)
{
    if (n->leader != n->cfg.id)
        corral_pending_retry_reads(&n->pending, now, 2u * n->cfg.heartbeat_ms, ask_read, n);
}

/* Whether every peer has refused us for one reason at least
 * REFUSED_EXIT_COUNT times over at least REFUSED_EXIT_MS: cluster
 * (another cluster id) or not (a token mismatch). */
static bool all_refuse(const struct corral_transport_peer_stats *st, uint32_t ns, bool cluster)
{
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t count = cluster ? st[i].wrong_cluster_refusals : st[i].wrong_token_refusals;
        uint64_t ms = cluster ? st[i].wrong_cluster_ms : st[i].wrong_token_ms;
        if (count < REFUSED_EXIT_COUNT || ms < REFUSED_EXIT_MS)
            return false;
    }
    return ns > 0;
}

/* Stops the node when every peer has refused it for another cluster id,
 * or for a cluster token no token of ours matches (REFUSED_EXIT_MS),
 * naming them. */
static void check_refused(struct corral_node *n)
{
    struct corral_transport_peer_stats st[CORRAL_RAFT_NODES_MAX];
    if (n->transport == NULL || n->stopping)
        return;
    uint32_t ns = corral_transport_stats(n->transport, st, CORRAL_RAFT_NODES_MAX);
    if (ns == 0 || ns > CORRAL_RAFT_NODES_MAX)
        return;
    bool cluster = all_refuse(st, ns, true);
    if (!cluster && !all_refuse(st, ns, false))
        return;
    char list[1024] = "";
    size_t len = 0;
    for (uint32_t i = 0; i < ns && len < sizeof(list); i++) {
        struct peer *p = node_find_peer(n, st[i].id);
        char why[128];
        if (cluster && st[i].their_cluster_name[0] != '\0' &&
            strcmp(st[i].their_cluster_name, n->cfg.cluster_name) != 0)
            snprintf(why, sizeof(why), "cluster '%s'", st[i].their_cluster_name);
        else if (cluster)
            snprintf(why, sizeof(why), "cluster id %016" PRIx64, st[i].their_cluster_id);
        else
            snprintf(why, sizeof(why), "%s", st[i].wrong_token_why);
        len +=
            (size_t)snprintf(list + len, sizeof(list) - len, "%snode %" PRIu64 " at %s (%s)",
                             i > 0 ? ", " : "", st[i].id, p != NULL ? p->cluster_addr : "?", why);
    }
    if (cluster)
        corral_log(CORRAL_LOG_ERROR,
                   "every peer refuses this node because it is of another cluster (ours: '%s', id "
                   "%016" PRIx64 "), for %u s now: %s. The cluster id comes from --cluster-name "
                   "and --peers: this node was started with another name or --peers list than "
                   "they were, or they use another data dir (another cluster); stopping",
                   n->cfg.cluster_name, n->cfg.cluster_id, REFUSED_EXIT_MS / 1000, list);
    else
        corral_log(CORRAL_LOG_ERROR,
                   "every peer refuses this node because no cluster token of ours matches theirs "
                   "(%s), for %u s now: %s. Give every node the same --token-file (in a "
                   "rotation, a first line the others accept: docs/operations.md); stopping",
                   n->cfg.tokens.n > 0 ? "this node has one" : "this node has none",
                   REFUSED_EXIT_MS / 1000, list);
    node_stop(n, 1);
}

static void on_sweep(uv_timer_t *t)
{
    struct corral_node *n = t->data;
    uint64_t now = node_now_ms();
    corral_pending_expire(&n->pending, now);
    retry_reads(n, now);
    if (n->hooks.sweep != NULL && !n->stopping)
        n->hooks.sweep(n, now);
    check_refused(n);
    drain_ready(n);
}

/* ---- transport callbacks ---- */

struct peer *node_find_peer(struct corral_node *n, uint64_t id)
{
    for (uint32_t i = 0; i < n->n_peers; i++)
        if (n->peers[i].id == id)
            return &n->peers[i];
    return NULL;
}

static void on_msg(void *ud, const struct corral_raft_msg *m)
{
    struct corral_node *n = ud;
    if (n->stopping)
        return;
    if (m->from == n->leader &&
        (m->type == CORRAL_RAFT_MSG_APPEND || m->type == CORRAL_RAFT_MSG_HEARTBEAT ||
         m->type == CORRAL_RAFT_MSG_SNAPSHOT))
        n->last_leader_contact_ms = node_now_ms();
    CORRAL_TRACE(CORRAL_TRACE_RECV, (uint64_t)m->type << 32 | m->from, trace_msg_index(m));
    int rv = corral_raft_step(n->raft, m);
    if (rv != 0 && corral_log_enabled(CORRAL_LOG_DEBUG))
        corral_log(CORRAL_LOG_DEBUG, "dropped %s from node %" PRIu64 ": %s",
                   corral_raft_msg_type_name(m->type), m->from, corral_strerror(rv));
}

static void on_peer_addr(void *ud, uint64_t id, const char *cluster_addr, const char *http)
{
    (void)http; /* on_peer_http has it */
    node_roster_peer_addr(ud, id, cluster_addr);
}

static void on_peer_http(void *ud, uint64_t id, const char *http)
{
    struct peer *p = node_find_peer(ud, id);
    /* Peers passed the handshake, but what they announce goes into
     * clients' Location headers: nothing but a plain host:port. */
    if (!corral_parse_hostport_safe(http)) {
        corral_log(CORRAL_LOG_WARN,
                   "node %" PRIu64 " announced an HTTP address that is not a plain "
                   "host:port; ignored",
                   id);
        return;
    }
    if (p != NULL && strcmp(p->http, http) != 0) {
        snprintf(p->http, sizeof(p->http), "%s", http);
        corral_log(CORRAL_LOG_INFO, "node %" PRIu64 " serves HTTP on %s", id, http);
    }
}

static void on_transport_log(void *ud, int level, const char *msg)
{
    (void)ud;
    corral_log(level, "%s", msg);
}

/* ---- HTTP ---- */

static void on_http(void *ud, struct corral_http_request *req)
{
    struct corral_node *n = ud;
    n->hooks.route(n, req);
}

/* ---- the API for routes ---- */

int corral_node_propose(struct corral_node *n, const struct corral_state_cmd *c,
                        corral_node_write_cb cb, void *ctx)
{
    if (n->stopping)
        return CORRAL_ESHUTDOWN;
    if (cb != NULL && n->pending.count >= n->cfg.max_pending)
        return CORRAL_EBUSY;
    struct corral_rbuf *data = corral_state_cmd_encode(c);
    if (data == NULL)
        return CORRAL_EINVAL;
    uint64_t index = 0;
    int rv = corral_raft_propose(n->raft, data, &index);
    corral_rbuf_unref(data);
    if (rv != 0)
        return rv == CORRAL_EFULL ? CORRAL_EBUSY : rv;
    n->proposals++;
    CORRAL_TRACE(CORRAL_TRACE_PROPOSE, index, corral_trace_request);
    if (corral_coord_proposed(n->coord, n->st, c, index) != 0)
        corral_log(CORRAL_LOG_WARN, "out of memory recording a proposal: leases of this term "
                                    "cover it whole");
    if (cb == NULL)
        return 0;
    const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, index);
    /* On ENOMEM the entry may still commit; nobody waits for it. */
    return corral_pending_add_write(&n->pending, index, e != NULL ? e->term : 0,
                                    node_now_ms() + n->cfg.request_timeout_ms, cb, ctx);
}

int corral_node_write(struct corral_node *n, const struct corral_kv_cmd *cmd,
                      corral_node_write_cb cb, void *ctx)
{
    struct corral_state_cmd sc = {.type = CORRAL_STATE_KV, .kv = *cmd};
    int rv = corral_node_propose(n, &sc, cb, ctx);
    return rv == CORRAL_EINVAL ? CORRAL_ENOMEM : rv;
}

int corral_node_read(struct corral_node *n, corral_node_read_cb cb, void *ctx)
{
    if (n->stopping)
        return CORRAL_ESHUTDOWN;
    if (n->pending.count >= n->cfg.max_pending)
        return CORRAL_EBUSY;
    uint64_t id = corral_pending_next_read_id(&n->pending);
    int rv = corral_raft_read_index(n->raft, id);
    if (rv != 0)
        return rv;
    CORRAL_TRACE(CORRAL_TRACE_READ, id, corral_trace_request);
    uint64_t now = node_now_ms();
    return corral_pending_add_read(&n->pending, id, now, now + n->cfg.request_timeout_ms, cb, ctx);
}

const struct corral_kv *corral_node_kv(const struct corral_node *n)
{
    return corral_state_kv(n->st);
}

const struct corral_state *corral_node_state(const struct corral_node *n)
{
    return n->st;
}

const struct corral_node_config *corral_node_config(const struct corral_node *n)
{
    return &n->cfg;
}

void corral_node_raft_status(const struct corral_node *n, struct corral_raft_status *s)
{
    corral_raft_status(n->raft, s);
}

uint64_t corral_node_clock_ms(const struct corral_node *n)
{
    (void)n;
    return node_now_ms();
}

static const char *leader_http(struct corral_node *n, uint64_t leader)
{
    if (leader == 0)
        return NULL;
    if (leader == n->cfg.id)
        return n->http_addr;
    struct peer *p = node_find_peer(n, leader);
    return p != NULL && p->http[0] != '\0' ? p->http : NULL;
}

/* Why the node is not ready, or NULL when it is. */
static const char *not_ready(struct corral_node *n, const struct corral_raft_status *s)
{
    uint64_t now = node_now_ms();
    uint64_t window = 2u * n->cfg.election_timeout_ms;
    if (n->stopping)
        return "the node is shutting down";
    if (s->leader == 0)
        return "no leader known";
    if (s->role == CORRAL_RAFT_LEADER) {
        if (!s->quorum_in_contact)
            return "the leader has no recent contact with a quorum";
    } else if (now - n->last_leader_contact_ms > window) {
        return "no recent contact with the leader";
    }
    if (s->applied < s->commit)
        return "still applying committed entries";
    return NULL;
}

void corral_node_info(struct corral_node *n, struct corral_node_info *info)
{
    struct corral_raft_status s;
    corral_raft_status(n->raft, &s);
    info->id = n->cfg.id;
    info->cluster_id = n->cfg.cluster_id;
    info->http_addr = n->http_addr;
    info->cluster_addr = n->cluster_addr;
    info->leader = s.leader;
    info->leader_http = leader_http(n, s.leader);
    info->tls = n->cfg.tls.cert_pem != NULL;
    info->leader_stale = s.role != CORRAL_RAFT_LEADER && s.leader != 0 &&
                         node_now_ms() - n->last_leader_contact_ms > n->cfg.election_timeout_ms;
    info->not_ready_reason = not_ready(n, &s);
    info->ready = info->not_ready_reason == NULL;
}

uint32_t corral_node_peers(const struct corral_node *n, struct corral_node_peer_info *out,
                           uint32_t cap)
{
    struct corral_transport_peer_stats st[CORRAL_RAFT_NODES_MAX];
    uint32_t ns =
        n->transport ? corral_transport_stats(n->transport, st, CORRAL_RAFT_NODES_MAX) : 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n->n_peers && k < cap; i++) {
        const struct peer *p = &n->peers[i];
        if (p->id == n->cfg.id)
            continue;
        out[k] = (struct corral_node_peer_info){
            .id = p->id, .cluster_addr = p->cluster_addr, .http = p->http[0] ? p->http : NULL};
        for (uint32_t j = 0; j < ns && j < CORRAL_RAFT_NODES_MAX; j++) {
            if (st[j].id == p->id) {
                out[k].connected = st[j].connected;
                out[k].dropped_msgs = st[j].dropped_msgs;
            }
        }
        k++;
    }
    return k;
}

/* ---- stats ---- */

static void lag_stats(const struct corral_node *n, const struct corral_raft_status *s,
                      struct corral_node_stats *st)
{
    st->n_lag = 0;
    for (uint32_t i = 0; s->role == CORRAL_RAFT_LEADER && i < s->n_progress; i++) {
        if (s->progress[i].id == n->cfg.id)
            continue;
        st->lag[st->n_lag].peer = s->progress[i].id;
        st->lag[st->n_lag].entries = s->last_index - s->progress[i].match;
        st->n_lag++;
    }
}

void corral_node_stats(const struct corral_node *n, struct corral_node_stats *st)
{
    struct corral_raft_status s;
    corral_raft_status(n->raft, &s);
    struct corral_storage_stats ss;
    corral_storage_stats(n->storage, &ss);
    *st = (struct corral_node_stats){
        .term = s.term,
        .is_leader = s.role == CORRAL_RAFT_LEADER,
        .leader_changes = n->leader_changes,
        .proposals = n->proposals,
        .proposals_failed = n->pending.writes_failed,
        .reads_served = n->pending.reads_served,
        .commit_index = s.commit,
        .applied_index = s.applied,
        .snapshot_index = n->drive.snapshot_index,
        .snapshots = n->drive.stats.snapshots_taken,
        .kv_keys = corral_kv_count(corral_state_kv(n->st)),
        .pending_requests = n->pending.count,
        .wal_syncs = ss.syncs,
        .wal_bytes_written = ss.bytes_written,
        .commit_latency = n->pending.commit_hist,
        .fsync_latency = n->fsync_hist,
        .leader_degraded = s.role == CORRAL_RAFT_LEADER && n->health.degraded,
        .loop_lag = n->loop_lag_hist,
    };
    memcpy(st->transfers, n->transfers, sizeof(st->transfers));
    lag_stats(n, &s, st);
    st->n_peers = corral_node_peers(n, st->peers, CORRAL_RAFT_NODES_MAX);
    if (n->http != NULL)
        corral_http_stats(n->http, &st->http);
}

/* ---- start ---- */

static void free_entries(struct corral_raft_entry *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        corral_rbuf_unref(e[i].data);
}

/* A new cluster: every initial coordinator writes the same first entries,
 * the configuration (index 1) and the roster naming each of them (2..),
 * committed by construction (raft.h). */
static int bootstrap(struct corral_node *n, struct corral_storage_state *st)
{
    struct corral_raft_conf conf = {0};
    for (uint32_t i = 0; i < n->n_peers; i++)
        conf.voters[conf.n_voters++] = n->peers[i].id;
    struct corral_raft_entry e[1 + CORRAL_RAFT_NODES_MAX];
    uint32_t ne = 0;
    int rv = corral_raft_bootstrap(&conf, &e[0]);
    if (rv != 0)
        return rv;
    rv = node_roster_bootstrap(n, e + 1, CORRAL_RAFT_NODES_MAX, &ne);
    ne++;
    struct corral_raft_hard_state hs = {.term = 1, .vote = 0, .commit = ne};
    if (rv == 0)
        rv = corral_storage_append(n->storage, e, ne);
    if (rv == 0)
        rv = corral_storage_set_hard_state(n->storage, &hs);
    if (rv == 0)
        rv = corral_storage_sync(n->storage);
    st->entries = rv == 0 ? corral_calloc(ne, sizeof(e[0])) : NULL;
    if (rv == 0 && st->entries == NULL)
        rv = CORRAL_ENOMEM;
    if (rv != 0) {
        free_entries(e, ne);
        return rv;
    }
    st->hs = hs;
    memcpy(st->entries, e, ne * sizeof(e[0]));
    st->n_entries = ne;
    corral_log(CORRAL_LOG_INFO, "bootstrapped cluster '%s' of %u voter(s)", n->cfg.cluster_name,
               conf.n_voters);
    return 0;
}

static int open_storage(struct corral_node *n, struct corral_storage_state *st)
{
    char err[512] = "";
    struct corral_storage_ident ident = {.node_id = n->cfg.id, .cluster_id = n->cfg.cluster_id};
    snprintf(ident.name, sizeof(ident.name), "%s", n->cfg.name);
    snprintf(ident.cluster_name, sizeof(ident.cluster_name), "%s", n->cfg.cluster_name);
    int rv = corral_storage_open(n->cfg.data_dir, &ident, &n->storage, st, err, sizeof(err));
    if (rv != 0) {
        corral_log(CORRAL_LOG_ERROR, "cannot use data dir %s: %s", n->cfg.data_dir, err);
        return rv;
    }
    if (st->torn_bytes > 0)
        corral_log(CORRAL_LOG_WARN,
                   "WAL had a torn tail of %" PRIu64 " bytes (an interrupted write); truncated",
                   st->torn_bytes);
    if (st->meta_upgraded)
        corral_log(CORRAL_LOG_INFO,
                   "data dir %s: meta file upgraded to version 2 (coordinator '%s' of cluster "
                   "'%s')",
                   n->cfg.data_dir, n->cfg.name, n->cfg.cluster_name);
    if (st->hs.term == 0 && st->snap.index == 0 && st->n_entries == 0 && !n->cfg.no_bootstrap) {
        rv = bootstrap(n, st);
        if (rv != 0) {
            char why[128];
            storage_error(n, rv, why, sizeof(why));
            corral_log(CORRAL_LOG_ERROR, "writing the first WAL entry to %s failed: %s",
                       n->cfg.data_dir, why);
        }
        return rv;
    }
    return 0;
}

static int start_core(struct corral_node *n, struct corral_storage_state *st)
{
    n->st = corral_state_new();
    if (n->st == NULL)
        return CORRAL_ENOMEM;
    if (st->snap.index > 0) {
        /* A config store snapshot from before the cluster state loads too
         * (state.h). */
        int rv = corral_state_restore(n->st, st->snap_data);
        if (rv == 0 && corral_state_applied(n->st) != st->snap.index)
            rv = CORRAL_ECORRUPT; /* the store's bytes name another index */
        if (rv != 0) {
            corral_log(CORRAL_LOG_ERROR, "the snapshot at index %" PRIu64 " does not load: %s",
                       st->snap.index, corral_strerror(rv));
            return rv;
        }
    }
    if (n->cfg.force_new_cluster) {
        int rv = node_roster_force(n, st);
        if (rv != 0) {
            corral_log(CORRAL_LOG_ERROR, "--force-new-cluster failed: %s", corral_strerror(rv));
            return rv;
        }
    }
    struct corral_raft_config rc;
    corral_raft_config_default(&rc, n->cfg.id);
    rc.election_timeout_ms = n->cfg.election_timeout_ms;
    rc.heartbeat_ms = n->cfg.heartbeat_ms;
    rc.seed = n->cfg.id ^ uv_hrtime();
    int rv = corral_raft_new(&rc, &st->hs, &st->snap, st->snap_data, st->entries, st->n_entries,
                             &n->raft);
    if (rv != 0) {
        corral_log(CORRAL_LOG_ERROR, "cannot start Raft from the data dir: %s",
                   corral_strerror(rv));
        return rv;
    }
    struct corral_drive_io io = node_io;
    io.ud = n;
    /* Keep some entries behind a snapshot so a follower a little behind
     * catches up from the log rather than with a whole snapshot. */
    struct corral_drive_config dc = {.snapshot_every = n->cfg.snapshot_entries,
                                     .snapshot_keep = n->cfg.snapshot_entries < SNAPSHOT_KEEP_MAX
                                                          ? n->cfg.snapshot_entries
                                                          : SNAPSHOT_KEEP_MAX};
    corral_drive_init(&n->drive, n->raft, n->st, &io, &dc, st->snap.index);
    corral_pending_init(&n->pending);
    node_health_init(n);
    corral_log(CORRAL_LOG_INFO, "recovered term %" PRIu64 ", snapshot %" PRIu64 ", %u log entries",
               st->hs.term, st->snap.index, st->n_entries);
    return 0;
}

/* Binds the Raft and HTTP listeners, before the data dir is touched: a
 * start that fails for a port in use, a permission or an address not of
 * this host writes nothing. Nothing is dialed or served until the loop
 * runs. */
static int start_listeners(struct corral_node *n)
{
    char err[256] = "";
    struct corral_transport_config tc = {.cluster_id = n->cfg.cluster_id,
                                         .cluster_name = n->cfg.cluster_name,
                                         .advertise_addr =
                                             n->cfg.cluster_wildcard ? NULL : n->cluster_addr,
                                         .node_id = n->cfg.id,
                                         .listen_host = n->cfg.cluster_host,
                                         .listen_port = n->cfg.cluster_port,
                                         .http_addr = n->http_addr,
                                         .tokens = &n->cfg.tokens};
    struct corral_transport_callbacks cb = {.ud = n,
                                            .on_msg = on_msg,
                                            .on_peer_http = on_peer_http,
                                            .on_peer_addr = on_peer_addr,
                                            .log = on_transport_log};
    int rv = corral_transport_start(&n->loop, &tc, &cb, &n->transport, err, sizeof(err));
    if (rv != 0) {
        corral_log(CORRAL_LOG_ERROR, "%s", err);
        return rv;
    }
    rv = corral_http_start(&n->loop, n->cfg.http_host, n->cfg.http_port, &n->cfg.http, &n->cfg.tls,
                           on_http, n, &n->http, err, sizeof(err));
    if (rv != 0)
        corral_log(CORRAL_LOG_ERROR, "%s", err);
    return rv;
}

static void add_peers(struct corral_node *n)
{
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        const struct corral_node_peer_config *p = &n->cfg.peers[i];
        if (p->id != n->cfg.id)
            corral_transport_add_peer(n->transport, p->id, p->host, p->port);
    }
}

/* Closes what start_listeners opened and lets the loop release it. */
static void stop_listeners(struct corral_node *n)
{
    close_listeners(n);
    uv_run(&n->loop, UV_RUN_DEFAULT);
}

static void start_timers(struct corral_node *n)
{
    uv_timer_init(&n->loop, &n->tick);
    uv_timer_init(&n->loop, &n->sweep);
    uv_check_init(&n->loop, &n->check);
    uv_prepare_init(&n->loop, &n->prepare);
    uv_signal_init(&n->loop, &n->sigterm);
    uv_signal_init(&n->loop, &n->sigint);
    n->tick.data = n->sweep.data = n->check.data = n->prepare.data = n->sigterm.data =
        n->sigint.data = n;
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&n->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_check_start(&n->check, on_check);
    uv_prepare_start(&n->prepare, on_prepare);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
}

static void init_peers(struct corral_node *n)
{
    format_addr(n->http_addr, sizeof(n->http_addr), n->cfg.http_host, n->cfg.http_port);
    format_addr(n->cluster_addr, sizeof(n->cluster_addr), n->cfg.cluster_host, n->cfg.cluster_port);
    n->n_peers = n->cfg.n_peers;
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        n->peers[i].id = n->cfg.peers[i].id;
        memcpy(n->peers[i].name, n->cfg.peers[i].name, sizeof(n->peers[i].name));
        format_addr(n->peers[i].cluster_addr, sizeof(n->peers[i].cluster_addr),
                    n->cfg.peers[i].host, n->cfg.peers[i].port);
    }
    if (n->n_peers == 0 && !n->cfg.no_bootstrap) { /* a cluster of one */
        n->n_peers = 1;
        n->peers[0].id = n->cfg.id;
        memcpy(n->peers[0].name, n->cfg.name, sizeof(n->peers[0].name));
        snprintf(n->peers[0].cluster_addr, sizeof(n->peers[0].cluster_addr), "%s", n->cluster_addr);
    }
}

static void node_free(struct corral_node *n, struct corral_storage_state *st)
{
    if (n->raft != NULL)
        corral_drive_close(&n->drive);
    if (n->storage != NULL)
        corral_storage_close(n->storage);
    corral_raft_free(n->raft);
    corral_state_free(n->st);
    corral_coord_free(n->coord);
    corral_storage_state_free(st);
    uv_loop_close(&n->loop);
    corral_free(n);
}

void *corral_node_hooks_ud(const struct corral_node *n)
{
    return n->hooks.ud;
}

int corral_node_run(const struct corral_node_config *cfg, const struct corral_node_hooks *hooks)
{
    signal(SIGPIPE, SIG_IGN); /* a dead peer is an EPIPE, never a signal */
    struct corral_node *n = corral_calloc(1, sizeof(*n));
    if (n == NULL)
        return 1;
    n->cfg = *cfg;
    n->hooks = *hooks;
    n->exit_code = 1;
    n->cfg.coord.liveness.max_election_timeout_ms = 2u * cfg->election_timeout_ms;
    if (corral_coord_new(&n->cfg.coord, &n->coord) != 0) {
        corral_log(CORRAL_LOG_ERROR, "the lease settings are invalid");
        corral_free(n);
        return 1;
    }
    uv_loop_init(&n->loop);
    init_peers(n);
    struct corral_storage_state st = {0};
    if (start_listeners(n) != 0) {
        stop_listeners(n);
        node_free(n, &st);
        return 1;
    }
    if (open_storage(n, &st) != 0 || start_core(n, &st) != 0) {
        stop_listeners(n);
        node_free(n, &st);
        return 1;
    }
    corral_storage_state_free(&st);
    add_peers(n);
    start_timers(n);
    if (corral_trace_start() != 0)
        corral_log(CORRAL_LOG_WARN, "CORRAL_TRACE_FILE is set but its buffer did not allocate: "
                                    "no trace");
    corral_log(CORRAL_LOG_INFO, "serving: cluster %s, HTTP %s, cluster id %016" PRIx64,
               n->cluster_addr, n->http_addr, n->cfg.cluster_id);
    if (n->cfg.tokens.n == 0)
        corral_log(CORRAL_LOG_WARN,
                   "the cluster is OPEN: no --token-file, so peers are not authenticated and "
                   "anyone who reaches %s can write to the HTTP API (docs/operations.md, "
                   "Security)",
                   n->http_addr);
    else
        corral_log(CORRAL_LOG_INFO,
                   "authentication on: peers prove the cluster token; HTTP %s need a bearer "
                   "token",
                   n->cfg.auth_reads ? "requests but /health" : "writes");
    uv_run(&n->loop, UV_RUN_DEFAULT);
    corral_trace_stop();
    if (n->cfg.exit != NULL)
        node_roster_exit(n, n->cfg.exit);
    int code = n->exit_code;
    corral_log(CORRAL_LOG_INFO, "stopped");
    node_free(n, &st);
    return code;
}
