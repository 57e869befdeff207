/* A coordinator node: see node.h for the loop. */
#include "runtime/node.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "corral.h"
#include "runtime/log.h"
#include "runtime/storage.h"
#include "runtime/transport.h"
#include "util/mem.h"

#define TICK_MS 10
#define SWEEP_MS 50
#define SNAPSHOT_KEEP_MAX 5000
#define ADDR_MAX (CORRAL_HOST_MAX + 8)

enum pending_kind { PENDING_WRITE, PENDING_READ };

/* A request waiting on Raft: a write until its index is applied, a read
 * until its ReadIndex is confirmed and then until that index is applied. */
struct pending {
    struct pending *prev, *next;
    enum pending_kind kind;
    uint64_t index; /* write: its entry; read: the confirmed read index */
    uint64_t term;  /* write: the term it was proposed in */
    uint64_t read_id;
    uint64_t sent_ms; /* read: when the ReadIndex request last went out */
    uint64_t deadline_ms;
    uint64_t start_ns;
    corral_node_write_cb wcb;
    corral_node_read_cb rcb;
    void *ctx;
};

struct plist {
    struct pending *head, *tail;
};

struct peer {
    uint64_t id;
    char cluster_addr[ADDR_MAX];
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
};

struct corral_node {
    struct corral_node_config cfg;
    corral_node_router router;
    uv_loop_t loop;
    uv_timer_t tick, sweep;
    uv_check_t check;
    uv_signal_t sigterm, sigint;
    struct corral_raft *raft;
    struct corral_storage *storage;
    struct corral_transport *transport;
    struct corral_http *http;
    struct corral_kv *kv;

    struct plist writes;      /* by index */
    struct plist reads;       /* waiting for ReadIndex, by id */
    struct plist reads_apply; /* waiting for the store to apply, by index */
    uint32_t n_pending;
    uint64_t next_read_id;

    uint64_t snapshot_index;
    uint32_t n_peers;
    struct peer peers[CORRAL_RAFT_NODES_MAX];
    char http_addr[ADDR_MAX];
    char cluster_addr[ADDR_MAX];

    uint64_t leader, term;
    uint64_t synced_term, synced_vote; /* the hard state last made durable */
    uint64_t last_leader_contact_ms;
    bool stopping;
    int exit_code;

    uint64_t leader_changes, proposals, proposals_failed, snapshots, reads_served;
    struct corral_hist commit_hist, fsync_hist;
};

static uint64_t now_ms(void)
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

/* ---- pending lists ---- */

static void plist_remove(struct plist *l, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        l->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        l->tail = p->prev;
    p->prev = p->next = NULL;
}

/* Inserts keeping the list sorted by index (usually at the tail). */
static void plist_insert_sorted(struct plist *l, struct pending *p)
{
    struct pending *after = l->tail;
    while (after != NULL && after->index > p->index)
        after = after->prev;
    p->prev = after;
    p->next = after ? after->next : l->head;
    if (p->next)
        p->next->prev = p;
    else
        l->tail = p;
    if (after)
        after->next = p;
    else
        l->head = p;
}

static void plist_append(struct plist *l, struct pending *p)
{
    p->next = NULL;
    p->prev = l->tail;
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
}

/* Completes and frees p (already unlinked). */
static void pending_finish(struct corral_node *n, struct pending *p, int err,
                           const struct corral_kv_result *res)
{
    n->n_pending--;
    if (p->kind == PENDING_WRITE) {
        if (err == 0)
            corral_hist_observe(&n->commit_hist, (double)(uv_hrtime() - p->start_ns) / 1e9);
        else
            n->proposals_failed++;
        p->wcb(p->ctx, err, res);
    } else {
        if (err == 0)
            n->reads_served++;
        p->rcb(p->ctx, err);
    }
    corral_free(p);
}

/* Completes, with err, every pending of a by-index list up to index
 * (UINT64_MAX: all of any list). */
static void plist_finish_upto(struct corral_node *n, struct plist *l, uint64_t index, int err)
{
    while (l->head != NULL && l->head->index <= index) {
        struct pending *p = l->head;
        plist_remove(l, p);
        pending_finish(n, p, err, NULL);
    }
}

static void plist_fail_all(struct corral_node *n, struct plist *l, int err)
{
    plist_finish_upto(n, l, UINT64_MAX, err);
}

static void plist_expire(struct corral_node *n, struct plist *l, uint64_t now)
{
    struct pending *p = l->head;
    while (p != NULL) {
        struct pending *next = p->next;
        if (p->deadline_ms <= now) {
            plist_remove(l, p);
            pending_finish(n, p, CORRAL_ETIMEDOUT, NULL);
        }
        p = next;
    }
}

static struct pending *pending_new(struct corral_node *n, enum pending_kind kind, void *ctx)
{
    struct pending *p = corral_calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->kind = kind;
    p->ctx = ctx;
    p->start_ns = uv_hrtime();
    p->deadline_ms = now_ms() + n->cfg.request_timeout_ms;
    n->n_pending++;
    return p;
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

static void node_stop(struct corral_node *n, int exit_code)
{
    if (n->stopping)
        return;
    n->stopping = true;
    n->exit_code = exit_code;
    corral_log(CORRAL_LOG_INFO, "shutting down");
    plist_fail_all(n, &n->writes, CORRAL_ESHUTDOWN);
    plist_fail_all(n, &n->reads, CORRAL_ESHUTDOWN);
    plist_fail_all(n, &n->reads_apply, CORRAL_ESHUTDOWN);
    if (n->http != NULL)
        corral_http_stop(n->http);
    n->http = NULL;
    if (n->transport != NULL)
        corral_transport_stop(n->transport, on_transport_closed, n);
    n->transport = NULL;
    uv_close((uv_handle_t *)&n->tick, on_closed_handle);
    uv_close((uv_handle_t *)&n->sweep, on_closed_handle);
    uv_close((uv_handle_t *)&n->check, on_closed_handle);
    uv_close((uv_handle_t *)&n->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&n->sigint, on_closed_handle);
}

static void on_signal(uv_signal_t *s, int signum)
{
    corral_log(CORRAL_LOG_INFO, "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    node_stop(s->data, 0);
}

/* ---- the ready loop ---- */

static int persist(struct corral_node *n, const struct corral_raft_ready *rd, double *fsync_s)
{
    int rv = 0;
    bool wrote = false;
    *fsync_s = -1;
    if (rd->has_snapshot) {
        rv = corral_storage_save_snapshot(n->storage, &rd->snapshot, rd->snapshot_data);
        if (rv != 0)
            return rv;
    }
    if (rd->n_entries > 0) {
        rv = corral_storage_append(n->storage, rd->entries, rd->n_entries);
        wrote = true;
    }
    if (rv == 0 && rd->has_hard_state) {
        rv = corral_storage_set_hard_state(n->storage, &rd->hard_state);
        /* The commit index is only a hint (raft.h): a batch that changes
         * nothing but it is written without its own fsync and becomes
         * durable with the next one. Term and vote always sync. */
        wrote = wrote || rd->hard_state.term != n->synced_term ||
                rd->hard_state.vote != n->synced_vote;
    }
    if (rv == 0 && wrote) {
        uint64_t t0 = uv_hrtime();
        rv = corral_storage_sync(n->storage);
        *fsync_s = (double)(uv_hrtime() - t0) / 1e9;
        if (rv == 0 && rd->has_hard_state) {
            n->synced_term = rd->hard_state.term;
            n->synced_vote = rd->hard_state.vote;
        }
    }
    return rv;
}

static void resolve_writes(struct corral_node *n, const struct corral_raft_entry *e,
                           const struct corral_kv_result *res)
{
    while (n->writes.head != NULL && n->writes.head->index <= e->index) {
        struct pending *p = n->writes.head;
        plist_remove(&n->writes, p);
        bool ours = p->index == e->index && p->term == e->term &&
                    e->type == CORRAL_RAFT_ENTRY_NORMAL;
        pending_finish(n, p, ours ? 0 : CORRAL_ELOST, ours ? res : NULL);
    }
}

static int apply_entry(struct corral_node *n, const struct corral_raft_entry *e)
{
    struct corral_kv_result res = {0};
    if (e->index <= corral_kv_applied(n->kv))
        return 0; /* covered by a snapshot already loaded */
    if (e->type == CORRAL_RAFT_ENTRY_NORMAL && e->data != NULL) {
        int rv = corral_kv_apply(n->kv, e->index, e->data, &res);
        if (rv != 0)
            return rv;
    } else {
        corral_kv_skip(n->kv, e->index);
    }
    resolve_writes(n, e, &res);
    return 0;
}

static void release_reads(struct corral_node *n)
{
    plist_finish_upto(n, &n->reads_apply, corral_kv_applied(n->kv), 0);
}

static void handle_reads(struct corral_node *n, const struct corral_raft_ready *rd)
{
    for (uint32_t i = 0; i < rd->n_reads; i++) {
        const struct corral_raft_read *rr = &rd->reads[i];
        struct pending *p = n->reads.head;
        while (p != NULL && p->read_id != rr->id)
            p = p->next;
        if (p == NULL)
            continue; /* timed out meanwhile */
        plist_remove(&n->reads, p);
        if (!rr->ok) {
            pending_finish(n, p, CORRAL_ENOTLEADER, NULL);
            continue;
        }
        p->index = rr->index;
        plist_insert_sorted(&n->reads_apply, p);
    }
    release_reads(n);
}

static int load_snapshot(struct corral_node *n, const struct corral_raft_ready *rd)
{
    int rv = corral_kv_restore(n->kv, rd->snapshot_data);
    if (rv != 0)
        return rv;
    n->snapshot_index = rd->snapshot.index;
    /* Writes the snapshot covers: their outcome is in the snapshot but not
     * which write did what; answer "unknown" rather than guess. */
    plist_finish_upto(n, &n->writes, rd->snapshot.index, CORRAL_ETIMEDOUT);
    corral_log(CORRAL_LOG_INFO, "installed a snapshot at index %" PRIu64 " from the leader",
               rd->snapshot.index);
    return 0;
}

static void note_leader(struct corral_node *n, const struct corral_raft_ready *rd)
{
    if (rd->term != n->term || rd->leader != n->leader) {
        if (rd->leader != n->leader) {
            n->leader_changes++;
            if (rd->leader != 0)
                corral_log(CORRAL_LOG_INFO, "leader is node %" PRIu64 " (term %" PRIu64 ")%s",
                           rd->leader, rd->term, rd->leader == n->cfg.id ? ", this node" : "");
            else
                corral_log(CORRAL_LOG_INFO, "no leader (term %" PRIu64 ")", rd->term);
            n->last_leader_contact_ms = now_ms();
        }
        n->leader = rd->leader;
        n->term = rd->term;
    }
}

static void maybe_snapshot(struct corral_node *n)
{
    uint64_t applied = corral_kv_applied(n->kv);
    if (n->cfg.snapshot_entries == 0 || applied < n->snapshot_index + n->cfg.snapshot_entries)
        return;
    struct corral_rbuf *data = corral_kv_snapshot(n->kv);
    if (data == NULL) {
        corral_log(CORRAL_LOG_WARN, "snapshot at %" PRIu64 ": out of memory", applied);
        return;
    }
    struct corral_raft_snapshot_meta meta;
    /* Keep some entries behind the snapshot so a follower a little behind
     * catches up from the log rather than with a whole snapshot. */
    uint64_t keep = n->cfg.snapshot_entries < SNAPSHOT_KEEP_MAX ? n->cfg.snapshot_entries
                                                                 : SNAPSHOT_KEEP_MAX;
    int rv = corral_raft_compact(n->raft, applied, data, keep, &meta);
    if (rv == 0)
        rv = corral_storage_save_snapshot(n->storage, &meta, data);
    if (rv == 0 || rv == CORRAL_ECOMPACTED) {
        n->snapshot_index = applied;
        n->snapshots += rv == 0;
        corral_log(CORRAL_LOG_DEBUG, "snapshot at index %" PRIu64 " (%u bytes)", applied,
                   data->len);
    } else {
        corral_log(CORRAL_LOG_ERROR, "snapshot at %" PRIu64 " failed: %s", applied,
                   corral_strerror(rv));
        if (rv == CORRAL_EIO)
            node_stop(n, 1);
    }
    corral_rbuf_unref(data);
}

static bool is_leader_data(const struct corral_raft_msg *m)
{
    return m->type == CORRAL_RAFT_MSG_APPEND || m->type == CORRAL_RAFT_MSG_SNAPSHOT;
}

/* Sends the batch's leader data messages (early) or all the others. */
static void send_msgs(struct corral_node *n, const struct corral_raft_ready *rd, bool early)
{
    for (uint32_t i = 0; i < rd->n_msgs; i++)
        if (is_leader_data(&rd->msgs[i]) == early)
            corral_transport_send(n->transport, &rd->msgs[i]);
}

/* The rest of a batch once it is durable: send, apply, answer, advance. */
static int apply_committed(struct corral_node *n, struct corral_raft_ready *rd)
{
    int rv = rd->has_snapshot ? load_snapshot(n, rd) : 0;
    for (uint32_t i = 0; rv == 0 && i < rd->n_committed; i++)
        rv = apply_entry(n, &rd->committed[i]);
    if (rv != 0)
        corral_log(CORRAL_LOG_ERROR, "applying to the store failed: %s; stopping",
                   corral_strerror(rv));
    return rv;
}

/* Committed entries that were all durable here before this batch (below
 * its first new entry, no snapshot) may be applied, and their writers
 * answered, before the batch's fsync rather than after it. */
static bool committed_already_durable(const struct corral_raft_ready *rd)
{
    return !rd->has_snapshot && rd->n_committed > 0 &&
           (rd->n_entries == 0 ||
            rd->committed[rd->n_committed - 1].index < rd->entries[0].index);
}

static int finish_batch(struct corral_node *n, struct corral_raft_ready *rd, bool applied)
{
    send_msgs(n, rd, false);
    note_leader(n, rd);
    int rv = applied ? 0 : apply_committed(n, rd);
    if (rv != 0)
        return rv;
    handle_reads(n, rd);
    release_reads(n);
    corral_raft_advance(n->raft, rd);
    return 0;
}

/* One ready batch, persisted on the loop thread. (Handing the fsync to a
 * libuv worker was measured: on 2 cores shared by three nodes it raised
 * the write p99 from about 3 ms to about 10 ms for no throughput gain.) */
static int process_one(struct corral_node *n)
{
    struct corral_raft_ready rd;
    corral_raft_ready(n->raft, &rd);
    /* A leader may send its appends before its own fsync (thesis section
     * 10.2.1): the core counts the leader's own copy toward a commit only
     * once persisted (advance), so the leader's disk write and the
     * followers' overlap instead of adding up. Everything else (votes,
     * acknowledgements) goes out only after the fsync. */
    send_msgs(n, &rd, true);
    bool early = committed_already_durable(&rd);
    int rv = early ? apply_committed(n, &rd) : 0;
    double fsync_s = -1;
    if (rv == 0)
        rv = persist(n, &rd, &fsync_s);
    if (fsync_s >= 0)
        corral_hist_observe(&n->fsync_hist, fsync_s);
    if (rv != 0)
        corral_log(CORRAL_LOG_ERROR, "writing the WAL failed: %s; stopping",
                   corral_strerror(rv));
    else
        rv = finish_batch(n, &rd, early);
    corral_raft_ready_free(&rd);
    if (rv == 0)
        maybe_snapshot(n);
    return rv;
}

static void drain_ready(struct corral_node *n)
{
    while (!n->stopping && corral_raft_has_ready(n->raft)) {
        if (process_one(n) != 0) {
            node_stop(n, 1);
            return;
        }
    }
}

static void on_check(uv_check_t *c)
{
    drain_ready(c->data);
}

static void on_tick(uv_timer_t *t)
{
    struct corral_node *n = t->data;
    corral_raft_tick(n->raft, now_ms());
    drain_ready(n);
}

/* A ReadIndex request or its answer travels once: the transport may drop
 * it (a connection not up yet, a full queue) and Raft does not resend it.
 * So an unanswered read asks again, with the same id, every two heartbeats;
 * a late duplicate answer finds no pending read and is ignored. */
static void retry_reads(struct corral_node *n, uint64_t now)
{
    uint64_t every = 2u * n->cfg.heartbeat_ms;
    if (n->leader == n->cfg.id)
        return; /* a leader's own reads ride its heartbeat rounds, which repeat */
    for (struct pending *p = n->reads.head; p != NULL; p = p->next) {
        if (now - p->sent_ms < every)
            continue;
        p->sent_ms = now;
        corral_raft_read_index(n->raft, p->read_id); /* no leader: retried later */
    }
}

static void on_sweep(uv_timer_t *t)
{
    struct corral_node *n = t->data;
    uint64_t now = now_ms();
    plist_expire(n, &n->writes, now);
    plist_expire(n, &n->reads, now);
    plist_expire(n, &n->reads_apply, now);
    retry_reads(n, now);
    drain_ready(n);
}

/* ---- transport callbacks ---- */

static struct peer *find_peer(struct corral_node *n, uint64_t id)
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
        n->last_leader_contact_ms = now_ms();
    int rv = corral_raft_step(n->raft, m);
    if (rv != 0 && corral_log_enabled(CORRAL_LOG_DEBUG))
        corral_log(CORRAL_LOG_DEBUG, "dropped %s from node %" PRIu64 ": %s",
                   corral_raft_msg_type_name(m->type), m->from, corral_strerror(rv));
}

static void on_peer_http(void *ud, uint64_t id, const char *http)
{
    struct peer *p = find_peer(ud, id);
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
    n->router(n, req);
}

/* ---- the API for routes ---- */

int corral_node_write(struct corral_node *n, const struct corral_kv_cmd *cmd,
                      corral_node_write_cb cb, void *ctx)
{
    if (n->stopping)
        return CORRAL_ESHUTDOWN;
    if (n->n_pending >= n->cfg.max_pending)
        return CORRAL_EBUSY;
    struct corral_rbuf *data = corral_kv_cmd_encode(cmd);
    if (data == NULL)
        return CORRAL_ENOMEM;
    uint64_t index = 0;
    int rv = corral_raft_propose(n->raft, data, &index);
    corral_rbuf_unref(data);
    if (rv != 0)
        return rv == CORRAL_EFULL ? CORRAL_EBUSY : rv;
    n->proposals++;
    struct pending *p = pending_new(n, PENDING_WRITE, ctx);
    if (p == NULL)
        return CORRAL_ENOMEM; /* the entry may still commit; nobody waits for it */
    const struct corral_raft_entry *e = corral_raft_entry_at(n->raft, index);
    p->index = index;
    p->term = e != NULL ? e->term : 0;
    p->wcb = cb;
    plist_insert_sorted(&n->writes, p);
    return 0;
}

int corral_node_read(struct corral_node *n, corral_node_read_cb cb, void *ctx)
{
    if (n->stopping)
        return CORRAL_ESHUTDOWN;
    if (n->n_pending >= n->cfg.max_pending)
        return CORRAL_EBUSY;
    uint64_t id = ++n->next_read_id;
    int rv = corral_raft_read_index(n->raft, id);
    if (rv != 0)
        return rv;
    struct pending *p = pending_new(n, PENDING_READ, ctx);
    if (p == NULL)
        return CORRAL_ENOMEM;
    p->read_id = id;
    p->sent_ms = now_ms();
    p->rcb = cb;
    plist_append(&n->reads, p);
    return 0;
}

const struct corral_kv *corral_node_kv(const struct corral_node *n)
{
    return n->kv;
}

const struct corral_node_config *corral_node_config(const struct corral_node *n)
{
    return &n->cfg;
}

void corral_node_raft_status(const struct corral_node *n, struct corral_raft_status *s)
{
    corral_raft_status(n->raft, s);
}

static const char *leader_http(struct corral_node *n, uint64_t leader)
{
    if (leader == 0)
        return NULL;
    if (leader == n->cfg.id)
        return n->http_addr;
    struct peer *p = find_peer(n, leader);
    return p != NULL && p->http[0] != '\0' ? p->http : NULL;
}

/* Why the node is not ready, or NULL when it is. */
static const char *not_ready(struct corral_node *n, const struct corral_raft_status *s)
{
    uint64_t now = now_ms();
    uint64_t window = 2u * n->cfg.election_timeout_ms;
    if (n->stopping)
        return "the node is shutting down";
    if (s->leader == 0)
        return "no leader known";
    if (s->role == CORRAL_RAFT_LEADER) {
        uint32_t voters = s->conf.n_voters, contact = 0;
        for (uint32_t i = 0; i < s->n_progress; i++) {
            bool voter = corral_raft_conf_is_voter(&s->conf, s->progress[i].id);
            if (voter && (s->progress[i].id == n->cfg.id ||
                          now - s->progress[i].last_contact_ms <= window))
                contact++;
        }
        if (contact < voters / 2 + 1)
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
    info->not_ready_reason = not_ready(n, &s);
    info->ready = info->not_ready_reason == NULL;
}

uint32_t corral_node_peers(const struct corral_node *n, struct corral_node_peer_info *out,
                           uint32_t cap)
{
    struct corral_transport_peer_stats st[CORRAL_RAFT_NODES_MAX];
    uint32_t ns = n->transport ? corral_transport_stats(n->transport, st, CORRAL_RAFT_NODES_MAX)
                               : 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n->n_peers && k < cap; i++) {
        const struct peer *p = &n->peers[i];
        if (p->id == n->cfg.id)
            continue;
        out[k] = (struct corral_node_peer_info){.id = p->id, .cluster_addr = p->cluster_addr,
                                                .http = p->http[0] ? p->http : NULL};
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
        .proposals_failed = n->proposals_failed,
        .reads_served = n->reads_served,
        .commit_index = s.commit,
        .applied_index = s.applied,
        .snapshot_index = n->snapshot_index,
        .snapshots = n->snapshots,
        .kv_keys = corral_kv_count(n->kv),
        .pending_requests = n->n_pending,
        .wal_syncs = ss.syncs,
        .wal_bytes_written = ss.bytes_written,
        .commit_latency = n->commit_hist,
        .fsync_latency = n->fsync_hist,
    };
    lag_stats(n, &s, st);
    st->n_peers = corral_node_peers(n, st->peers, CORRAL_RAFT_NODES_MAX);
    if (n->http != NULL)
        corral_http_stats(n->http, &st->http);
}

/* ---- start ---- */

static int bootstrap(struct corral_node *n, struct corral_storage_state *st)
{
    struct corral_raft_conf conf = {0};
    for (uint32_t i = 0; i < n->n_peers; i++)
        conf.voters[conf.n_voters++] = n->peers[i].id;
    struct corral_raft_entry e;
    int rv = corral_raft_bootstrap(&conf, &e);
    if (rv != 0)
        return rv;
    struct corral_raft_hard_state hs = {.term = 1, .vote = 0, .commit = 1};
    rv = corral_storage_append(n->storage, &e, 1);
    if (rv == 0)
        rv = corral_storage_set_hard_state(n->storage, &hs);
    if (rv == 0)
        rv = corral_storage_sync(n->storage);
    if (rv != 0) {
        corral_rbuf_unref(e.data);
        return rv;
    }
    st->hs = hs;
    st->entries = corral_calloc(1, sizeof(e));
    if (st->entries == NULL) {
        corral_rbuf_unref(e.data);
        return CORRAL_ENOMEM;
    }
    st->entries[0] = e;
    st->n_entries = 1;
    corral_log(CORRAL_LOG_INFO, "bootstrapped a new cluster of %u voter(s)", conf.n_voters);
    return 0;
}

static int open_storage(struct corral_node *n, struct corral_storage_state *st)
{
    char err[512] = "";
    struct corral_storage_ident ident = {.node_id = n->cfg.id, .cluster_id = n->cfg.cluster_id};
    int rv = corral_storage_open(n->cfg.data_dir, &ident, &n->storage, st, err, sizeof(err));
    if (rv != 0) {
        corral_log(CORRAL_LOG_ERROR, "cannot use data dir %s: %s", n->cfg.data_dir, err);
        return rv;
    }
    if (st->torn_bytes > 0)
        corral_log(CORRAL_LOG_WARN,
                   "WAL had a torn tail of %" PRIu64 " bytes (an interrupted write); truncated",
                   st->torn_bytes);
    if (st->hs.term == 0 && st->snap.index == 0 && st->n_entries == 0)
        return bootstrap(n, st);
    return 0;
}

static int start_core(struct corral_node *n, struct corral_storage_state *st)
{
    n->kv = corral_kv_new();
    if (n->kv == NULL)
        return CORRAL_ENOMEM;
    if (st->snap.index > 0) {
        int rv = corral_kv_restore(n->kv, st->snap_data);
        if (rv != 0) {
            corral_log(CORRAL_LOG_ERROR, "the snapshot at index %" PRIu64 " does not load: %s",
                       st->snap.index, corral_strerror(rv));
            return rv;
        }
        n->snapshot_index = st->snap.index;
    }
    n->synced_term = st->hs.term;
    n->synced_vote = st->hs.vote;
    struct corral_raft_config rc;
    corral_raft_config_default(&rc, n->cfg.id);
    rc.election_timeout_ms = n->cfg.election_timeout_ms;
    rc.heartbeat_ms = n->cfg.heartbeat_ms;
    rc.seed = n->cfg.id ^ uv_hrtime();
    int rv = corral_raft_new(&rc, &st->hs, &st->snap, st->snap_data, st->entries, st->n_entries,
                             &n->raft);
    if (rv != 0)
        corral_log(CORRAL_LOG_ERROR, "cannot start Raft from the data dir: %s",
                   corral_strerror(rv));
    else
        corral_log(CORRAL_LOG_INFO,
                   "recovered term %" PRIu64 ", snapshot %" PRIu64 ", %u log entries",
                   st->hs.term, st->snap.index, st->n_entries);
    return rv;
}

static int start_network(struct corral_node *n)
{
    char err[256] = "";
    struct corral_transport_config tc = {.cluster_id = n->cfg.cluster_id,
                                         .node_id = n->cfg.id,
                                         .listen_host = n->cfg.cluster_host,
                                         .listen_port = n->cfg.cluster_port,
                                         .http_addr = n->http_addr};
    struct corral_transport_callbacks cb = {
        .ud = n, .on_msg = on_msg, .on_peer_http = on_peer_http, .log = on_transport_log};
    int rv = corral_transport_start(&n->loop, &tc, &cb, &n->transport, err, sizeof(err));
    if (rv != 0) {
        corral_log(CORRAL_LOG_ERROR, "%s", err);
        return rv;
    }
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        const struct corral_node_peer_config *p = &n->cfg.peers[i];
        if (p->id != n->cfg.id)
            corral_transport_add_peer(n->transport, p->id, p->host, p->port);
    }
    rv = corral_http_start(&n->loop, n->cfg.http_host, n->cfg.http_port, &n->cfg.http, on_http,
                           n, &n->http, err, sizeof(err));
    if (rv != 0)
        corral_log(CORRAL_LOG_ERROR, "%s", err);
    return rv;
}

static void start_timers(struct corral_node *n)
{
    uv_timer_init(&n->loop, &n->tick);
    uv_timer_init(&n->loop, &n->sweep);
    uv_check_init(&n->loop, &n->check);
    uv_signal_init(&n->loop, &n->sigterm);
    uv_signal_init(&n->loop, &n->sigint);
    n->tick.data = n->sweep.data = n->check.data = n->sigterm.data = n->sigint.data = n;
    uv_timer_start(&n->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_start(&n->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_check_start(&n->check, on_check);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
}

static void init_peers(struct corral_node *n)
{
    format_addr(n->http_addr, sizeof(n->http_addr), n->cfg.http_host, n->cfg.http_port);
    format_addr(n->cluster_addr, sizeof(n->cluster_addr), n->cfg.cluster_host,
                n->cfg.cluster_port);
    n->n_peers = n->cfg.n_peers;
    for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
        n->peers[i].id = n->cfg.peers[i].id;
        format_addr(n->peers[i].cluster_addr, sizeof(n->peers[i].cluster_addr),
                    n->cfg.peers[i].host, n->cfg.peers[i].port);
    }
    if (n->n_peers == 0) { /* a cluster of one */
        n->n_peers = 1;
        n->peers[0].id = n->cfg.id;
        snprintf(n->peers[0].cluster_addr, sizeof(n->peers[0].cluster_addr), "%s",
                 n->cluster_addr);
    }
}

static void node_free(struct corral_node *n, struct corral_storage_state *st)
{
    if (n->storage != NULL)
        corral_storage_close(n->storage);
    corral_raft_free(n->raft);
    corral_kv_free(n->kv);
    corral_storage_state_free(st);
    uv_loop_close(&n->loop);
    corral_free(n);
}

int corral_node_run(const struct corral_node_config *cfg, corral_node_router router)
{
    signal(SIGPIPE, SIG_IGN); /* a dead peer is an EPIPE, never a signal */
    struct corral_node *n = corral_calloc(1, sizeof(*n));
    if (n == NULL)
        return 1;
    n->cfg = *cfg;
    n->router = router;
    n->exit_code = 1;
    uv_loop_init(&n->loop);
    init_peers(n);
    struct corral_storage_state st = {0};
    if (open_storage(n, &st) != 0 || start_core(n, &st) != 0) {
        node_free(n, &st);
        return 1;
    }
    corral_storage_state_free(&st);
    if (start_network(n) != 0) {
        if (n->transport != NULL)
            corral_transport_stop(n->transport, on_transport_closed, n);
        uv_run(&n->loop, UV_RUN_DEFAULT);
        node_free(n, &st);
        return 1;
    }
    start_timers(n);
    corral_log(CORRAL_LOG_INFO, "serving: cluster %s, HTTP %s, cluster id %016" PRIx64,
               n->cluster_addr, n->http_addr, n->cfg.cluster_id);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    int code = n->exit_code;
    corral_log(CORRAL_LOG_INFO, "stopped");
    node_free(n, &st);
    return code;
}
