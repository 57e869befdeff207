/* GET /metrics: the node's stats in the Prometheus text format (0.0.4).
 * The names are an interface (docs/api.md, dashboards): keep them. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "api/own.h"
#include "api/reply.h"
#include "api/routes.h"
#include "runtime/metrics.h"
#include "util/mem.h"

/* The text being built: a growable buffer. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom; /* an append failed; the text is truncated */
};

static void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *np = corral_realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void hist(struct sbuf *o, const char *name, const char *help, const struct corral_hist *h)
{
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < CORRAL_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        sbuf_printf(o, "%s_bucket{le=\"%.4f\"} %llu\n", name, corral_hist_bound(i),
                    (unsigned long long)cum);
    }
    sbuf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

static void metric(struct sbuf *o, const char *name, const char *type, const char *help, uint64_t v)
{
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

static void node_metrics(const struct corral_node_stats *st, struct sbuf *o)
{
    metric(o, "corral_term", "gauge", "Current Raft term.", st->term);
    metric(o, "corral_is_leader", "gauge", "1 when this node is the leader.", st->is_leader);
    metric(o, "corral_leader_changes_total", "counter", "Leader changes seen by this node.",
           st->leader_changes);
    metric(o, "corral_proposals_total", "counter", "Writes proposed by this node as leader.",
           st->proposals);
    metric(o, "corral_proposals_failed_total", "counter",
           "Writes that were lost, timed out or cut short.", st->proposals_failed);
    metric(o, "corral_reads_total", "counter", "Linearizable reads served.", st->reads_served);
    metric(o, "corral_commit_index", "gauge", "Raft commit index.", st->commit_index);
    metric(o, "corral_applied_index", "gauge", "Index applied to the store.", st->applied_index);
    metric(o, "corral_snapshot_index", "gauge", "Index of the latest snapshot.",
           st->snapshot_index);
    metric(o, "corral_snapshots_total", "counter", "Snapshots taken by this node.", st->snapshots);
    metric(o, "corral_kv_keys", "gauge", "Keys in the config store.", st->kv_keys);
    metric(o, "corral_pending_requests", "gauge", "Requests waiting on Raft.",
           st->pending_requests);
    metric(o, "corral_wal_syncs_total", "counter", "WAL fsyncs.", st->wal_syncs);
    metric(o, "corral_wal_bytes_written_total", "counter", "Bytes written to the WAL.",
           st->wal_bytes_written);
    hist(o, "corral_commit_latency_seconds", "Leader: from proposal to applied, per write.",
         &st->commit_latency);
    hist(o, "corral_fsync_latency_seconds", "WAL fsync duration.", &st->fsync_latency);
    hist(o, "corral_loop_lag_seconds", "How late each 10 ms tick of the event loop fired.",
         &st->loop_lag);
    metric(o, "corral_leader_degraded", "gauge",
           "1 on a leader whose fsync, loop lag or apply backlog is over its limit.",
           st->leader_degraded);
    sbuf_printf(o, "# HELP corral_leader_transfers_total Leadership transfers this node started "
                   "as leader, by reason.\n# TYPE corral_leader_transfers_total counter\n");
    for (int r = CORRAL_LH_OPERATOR; r <= CORRAL_LH_REASON_MAX; r++)
        sbuf_printf(o, "corral_leader_transfers_total{reason=\"%s\"} %" PRIu64 "\n",
                    corral_leader_health_reason_name((enum corral_leader_health_reason)r),
                    st->transfers[r]);
}

static void peer_metrics(const struct corral_node_stats *st, struct sbuf *o)
{
    sbuf_printf(o, "# HELP corral_peer_replication_lag_entries Leader only: entries the "
                   "peer lacks (last index - match index).\n"
                   "# TYPE corral_peer_replication_lag_entries gauge\n");
    for (uint32_t i = 0; i < st->n_lag; i++)
        sbuf_printf(o, "corral_peer_replication_lag_entries{peer=\"%" PRIu64 "\"} %" PRIu64 "\n",
                    st->lag[i].peer, st->lag[i].entries);
    sbuf_printf(o, "# HELP corral_peer_connected 1 when the outbound connection to the "
                   "peer is up.\n# TYPE corral_peer_connected gauge\n");
    for (uint32_t i = 0; i < st->n_peers; i++)
        sbuf_printf(o, "corral_peer_connected{peer=\"%" PRIu64 "\"} %d\n", st->peers[i].id,
                    st->peers[i].connected ? 1 : 0);
    sbuf_printf(o, "# HELP corral_peer_dropped_messages_total Messages dropped for a "
                   "full send queue or a disconnected peer.\n"
                   "# TYPE corral_peer_dropped_messages_total counter\n");
    for (uint32_t i = 0; i < st->n_peers; i++)
        sbuf_printf(o, "corral_peer_dropped_messages_total{peer=\"%" PRIu64 "\"} %" PRIu64 "\n",
                    st->peers[i].id, st->peers[i].dropped_msgs);
}

static void http_metrics(const struct corral_http_stats *hs, struct sbuf *o)
{
    sbuf_printf(o, "# HELP corral_http_requests_total HTTP responses by status code.\n"
                   "# TYPE corral_http_requests_total counter\n");
    for (uint32_t i = 0; i < hs->n_codes; i++)
        sbuf_printf(o, "corral_http_requests_total{code=\"%u\"} %" PRIu64 "\n", hs->codes[i].code,
                    hs->codes[i].count);
    metric(o, "corral_http_open_connections", "gauge", "Open HTTP connections.",
           hs->open_connections);
}

static void own_metrics(struct corral_node *n, struct sbuf *o)
{
    struct api_own_summary s;
    api_own_summary(corral_node_state(n), &s);
    sbuf_printf(o, "# HELP corral_members Members in the cluster state, by status.\n"
                   "# TYPE corral_members gauge\n");
    for (uint8_t i = CORRAL_MEMBER_ACTIVE; i <= CORRAL_MEMBER_LEFT; i++)
        sbuf_printf(o, "corral_members{status=\"%s\"} %u\n", api_status_name(i),
                    s.members_by_status[i]);
    metric(o, "corral_resources", "gauge", "Resources.", s.resources);
    metric(o, "corral_partitions", "gauge", "Partitions over all resources.", s.partitions);
    metric(o, "corral_partitions_without_primary", "gauge",
           "Partitions with no primary: the ownership gap.", s.without_primary);
    metric(o, "corral_partitions_under_replicated", "gauge",
           "Partitions with fewer in-sync replicas than the replication factor.",
           s.under_replicated);
    metric(o, "corral_moves_in_flight", "gauge",
           "Partitions with a copy running or a primary releasing.", s.moving);
    struct corral_node_duty_stats d;
    corral_node_duty_stats(n, &d);
    metric(o, "corral_member_heartbeats_total", "counter",
           "Leader: member heartbeats answered with a lease.", d.heartbeats);
    metric(o, "corral_member_heartbeats_refused_total", "counter",
           "Member heartbeats refused (not leader, unknown or inactive member).",
           d.heartbeats_refused);
    metric(o, "corral_progress_reports_total", "counter",
           "Leader: progress reports handed to the controller.", d.reports);
    metric(o, "corral_lease_expiries_total", "counter",
           "Leader: members declared dead and primaries cleared because a lease ran out.",
           d.deaths + d.clears);
    metric(o, "corral_grants_total", "counter", "Leader: primaries granted (epoch + 1).", d.grants);
    metric(o, "corral_handoffs_started_total", "counter",
           "Leader: primaries asked to release for a planned hand-off.", d.releases);
    metric(o, "corral_copies_total", "counter", "Leader: replicas added.", d.copies);
    metric(o, "corral_drops_total", "counter", "Leader: replicas dropped.", d.drops);
    metric(o, "corral_controller_evaluations_total", "counter", "Leader: controller evaluations.",
           d.evaluations);
    hist(o, "corral_controller_evaluation_seconds", "Leader: one controller evaluation.",
         &d.eval_latency);
}

void api_metrics(struct corral_node *n, struct corral_http_request *req)
{
    struct corral_node_stats st;
    corral_node_stats(n, &st);
    struct sbuf out = {0};
    node_metrics(&st, &out);
    peer_metrics(&st, &out);
    http_metrics(&st.http, &out);
    own_metrics(n, &out);
    if (out.oom) {
        corral_free(out.p);
        api_error(req, API_ERR_OOM);
        return;
    }
    corral_http_respond(req, 200, "text/plain; version=0.0.4", out.p ? out.p : "", out.len, NULL,
                        NULL, NULL, NULL);
    corral_free(out.p);
}
