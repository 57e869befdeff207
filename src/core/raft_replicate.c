/* Log replication (section 5.3): AppendEntries with pipelining and fast
 * conflict backtracking, heartbeats, the commit rule (section 5.4.2),
 * chunked InstallSnapshot (section 7) and the configuration in the log. */
#include <assert.h>
#include <string.h>

#include "corral.h"
#include "core/raft_impl.h"
#include "util/mem.h"

static void inflight_add(struct progress *pr, uint64_t last)
{
    assert(pr->inflight_count < CORRAL_RAFT_INFLIGHT_MAX);
    uint32_t slot = (pr->inflight_start + pr->inflight_count) % CORRAL_RAFT_INFLIGHT_MAX;
    pr->inflight[slot] = last;
    pr->inflight_count++;
}

/* Frees the in-flight slots of every append acknowledged up to index. */
static void inflight_free_to(struct progress *pr, uint64_t index)
{
    while (pr->inflight_count > 0 && pr->inflight[pr->inflight_start] <= index) {
        pr->inflight_start = (pr->inflight_start + 1) % CORRAL_RAFT_INFLIGHT_MAX;
        pr->inflight_count--;
    }
}

void raft_inflight_free_first(struct progress *pr)
{
    if (pr->inflight_count == 0)
        return;
    pr->inflight_start = (pr->inflight_start + 1) % CORRAL_RAFT_INFLIGHT_MAX;
    pr->inflight_count--;
}

static void progress_become(struct progress *pr, uint8_t state, uint64_t next)
{
    pr->state = state;
    pr->next = next;
    pr->probe_sent = false;
    pr->inflight_start = 0;
    pr->inflight_count = 0;
}

static void send_snapshot_chunk(struct corral_raft *r, struct progress *pr)
{
    uint64_t size = r->snap_data ? r->snap_data->len : 0;
    uint64_t off = pr->snap_acked;
    uint64_t len = size - off;
    if (len > r->cfg.snapshot_chunk_bytes)
        len = r->cfg.snapshot_chunk_bytes;
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_SNAPSHOT,
                                .to = pr->id,
                                .snapshot = r->snap,
                                .size = size,
                                .offset = off,
                                .flags = off + len == size ? CORRAL_RAFT_FLAG_DONE : 0};
    if (len > 0) {
        m.chunk = corral_rbuf_new(r->snap_data->data + off, (uint32_t)len);
        if (m.chunk == NULL)
            return; /* retried on the next heartbeat */
    }
    pr->snap_sent_ms = r->now_ms;
    raft_send(r, &m);
}

/* The follower needs entries we compacted: send our snapshot instead. */
static void start_snapshot(struct corral_raft *r, struct progress *pr)
{
    if (r->snap.index == 0)
        return; /* nothing compacted: cannot happen with a valid next */
    progress_become(pr, PROGRESS_SNAPSHOT, pr->next);
    pr->snap_index = r->snap.index;
    pr->snap_acked = 0;
    send_snapshot_chunk(r, pr);
}

void raft_send_append(struct corral_raft *r, struct progress *pr)
{
    if (pr->id == r->id || pr->state == PROGRESS_SNAPSHOT)
        return;
    if (pr->state == PROGRESS_PROBE && pr->probe_sent)
        return;
    if (pr->state == PROGRESS_REPLICATE && pr->inflight_count >= r->cfg.max_inflight)
        return;
    uint64_t prev = pr->next - 1;
    uint64_t prev_term;
    if (raft_log_term(&r->log, prev, &prev_term) != 0) {
        start_snapshot(r, pr);
        return;
    }
    uint64_t last = raft_log_last_index(&r->log);
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_APPEND,
                                .to = pr->id,
                                .index = prev,
                                .log_term = prev_term,
                                .commit = r->commit};
    if (raft_log_slice(&r->log, pr->next, last, r->cfg.max_msg_entries, r->cfg.max_msg_bytes,
                       &m.entries, &m.n_entries) != 0)
        return;
    if (pr->state == PROGRESS_REPLICATE && m.n_entries > 0) {
        /* Pipelining: assume it arrives, move on (section 10.2.2). */
        pr->next = m.entries[m.n_entries - 1].index + 1;
        inflight_add(pr, pr->next - 1);
    } else if (pr->state == PROGRESS_PROBE) {
        pr->probe_sent = true;
    }
    raft_send(r, &m);
}

void raft_broadcast_append(struct corral_raft *r)
{
    for (uint32_t i = 0; i < r->n_progress; i++) {
        struct progress *pr = &r->progress[i];
        if (pr->id != r->id && pr->next <= raft_log_last_index(&r->log) + 1)
            raft_send_append(r, pr);
    }
}

void raft_broadcast_heartbeat(struct corral_raft *r, uint64_t round)
{
    for (uint32_t i = 0; i < r->n_progress; i++) {
        struct progress *pr = &r->progress[i];
        if (pr->id == r->id)
            continue;
        /* Never tell a follower to commit past what it is known to hold. */
        uint64_t commit = pr->match < r->commit ? pr->match : r->commit;
        struct corral_raft_msg m = {
            .type = CORRAL_RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = commit, .context = round};
        raft_send(r, &m);
    }
}

void raft_commit_to(struct corral_raft *r, uint64_t index)
{
    uint64_t last = raft_log_last_index(&r->log);
    if (index > last)
        index = last;
    if (index > r->commit)
        r->commit = index;
}

/* The commit rule (section 5.4.2, Figure 8; raft.h R5): the highest index
 * on a majority of voters commits only if its entry is of the current
 * term; earlier entries then commit with it. The leader's own match is
 * its stable index (R1). The broken variant, built only for
 * the simulator's self-test, counts replicas of old-term entries too. */
bool raft_maybe_commit(struct corral_raft *r)
{
    uint64_t m[CORRAL_RAFT_NODES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_progress; i++) {
        /* R1: the leader's own match is never past what it persisted. */
        assert(r->progress[i].id != r->id || r->progress[i].match <= r->log.stable);
        if (!r->progress[i].learner)
            m[n++] = r->progress[i].match;
    }
    if (n == 0)
        return false;
    for (uint32_t i = 1; i < n; i++) /* insertion sort, descending */
        for (uint32_t j = i; j > 0 && m[j] > m[j - 1]; j--) {
            uint64_t t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    uint64_t index = m[raft_quorum(r) - 1];
    uint64_t term;
    if (index <= r->commit || raft_log_term(&r->log, index, &term) != 0)
        return false;
#ifndef CORRAL_RAFT_BROKEN_COMMIT
    if (term != r->term)
        return false;
#endif
    r->commit = index; /* R2: only grows (index > commit above) */
    raft_leader_committed(r);
    return true;
}

/* etcd's findConflictByTerm: the largest index <= index whose term is
 * <= term, so one round trip skips a whole conflicting term. */
static uint64_t conflict_by_term(const struct raft_log *l, uint64_t index, uint64_t term)
{
    uint64_t last = raft_log_last_index(l);
    if (index > last)
        index = last;
    for (;;) {
        uint64_t t;
        if (raft_log_term(l, index, &t) != 0 || t <= term)
            return index;
        index--;
    }
}

static void append_reject(struct corral_raft *r, const struct corral_raft_msg *m)
{
    uint64_t hint = conflict_by_term(&r->log, m->index, m->log_term);
    uint64_t hint_term = 0;
    raft_log_term(&r->log, hint, &hint_term);
    struct corral_raft_msg resp = {.type = CORRAL_RAFT_MSG_APPEND_RESP,
                                   .to = m->from,
                                   .index = m->index,
                                   .reject = 1,
                                   .hint_index = hint,
                                   .hint_term = hint_term};
    raft_send(r, &resp);
}

/* Appends the part of m's entries we lack, truncating a conflicting
 * suffix first (section 5.3). Never touches committed entries. */
static int append_entries(struct corral_raft *r, const struct corral_raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct corral_raft_entry *e = &m->entries[i];
        uint64_t t;
        int rv = raft_log_term(&r->log, e->index, &t);
        if (rv == 0 && t == e->term)
            continue;
        if (rv == CORRAL_ECOMPACTED)
            continue; /* covered by our snapshot, hence committed */
        if (rv == 0) {
            if (e->index <= r->commit)
                return CORRAL_EINVAL; /* a leader contradicting a commit */
            raft_log_truncate(&r->log, e->index);
            if (raft_conf_rebuild(r) != 0)
                return CORRAL_EINVAL;
        }
        rv = raft_log_append(&r->log, e);
        if (rv != 0)
            return rv;
        if (e->type == CORRAL_RAFT_ENTRY_CONF)
            raft_conf_changed(r);
    }
    return 0;
}

void raft_handle_append(struct corral_raft *r, const struct corral_raft_msg *m)
{
    struct corral_raft_msg resp = {.type = CORRAL_RAFT_MSG_APPEND_RESP, .to = m->from};
    if (m->index < r->commit) {
        resp.index = r->commit; /* old news: tell it where we are */
        raft_send(r, &resp);
        return;
    }
    uint64_t t;
    if (raft_log_term(&r->log, m->index, &t) != 0 || t != m->log_term) {
        append_reject(r, m);
        return;
    }
    if (append_entries(r, m) != 0)
        return; /* out of memory or hostile: no answer, the leader retries */
    uint64_t last_new = m->index + m->n_entries;
    raft_commit_to(r, m->commit < last_new ? m->commit : last_new);
    resp.index = last_new;
    raft_send(r, &resp);
}

static void handle_reject(struct corral_raft *r, struct progress *pr,
                          const struct corral_raft_msg *m)
{
    if (pr->state == PROGRESS_REPLICATE) {
        if (m->index <= pr->match)
            return; /* stale */
        progress_become(pr, PROGRESS_PROBE, pr->match + 1);
    } else if (pr->state == PROGRESS_PROBE) {
        if (m->index != pr->next - 1)
            return; /* stale */
        uint64_t next = conflict_by_term(&r->log, m->hint_index, m->hint_term) + 1;
        if (next > m->index)
            next = m->index;
        if (next <= pr->match)
            next = pr->match + 1;
        progress_become(pr, PROGRESS_PROBE, next);
    } else {
        return;
    }
    raft_send_append(r, pr);
}

void raft_handle_append_resp(struct corral_raft *r, const struct corral_raft_msg *m)
{
    struct progress *pr = raft_progress(r, m->from);
    if (m->reject) {
        handle_reject(r, pr, m);
        return;
    }
    uint64_t last = raft_log_last_index(&r->log);
    if (m->index > last)
        return; /* acknowledges entries we never had: ignore */
    if (m->index > pr->match) {
        pr->match = m->index;
        if (pr->next <= m->index)
            pr->next = m->index + 1;
        if (pr->state == PROGRESS_PROBE)
            progress_become(pr, PROGRESS_REPLICATE, pr->match + 1);
        else if (pr->state == PROGRESS_SNAPSHOT && pr->match >= pr->snap_index)
            progress_become(pr, PROGRESS_PROBE, pr->match + 1);
        inflight_free_to(pr, m->index);
        if (raft_maybe_commit(r))
            raft_broadcast_append(r);
        raft_transfer_check(r, pr);
    } else if (pr->state == PROGRESS_PROBE) {
        pr->probe_sent = false;
    }
    /* Fill the pipeline window; a probe sends at most one. */
    for (uint32_t k = 0;
         k < r->cfg.max_inflight && r->role == CORRAL_RAFT_LEADER && pr->next <= last; k++) {
        uint64_t before = pr->next;
        raft_send_append(r, pr);
        if (pr->state != PROGRESS_REPLICATE || pr->next == before)
            break;
    }
}

void raft_handle_heartbeat(struct corral_raft *r, const struct corral_raft_msg *m)
{
    raft_commit_to(r, m->commit);
    struct corral_raft_msg resp = {
        .type = CORRAL_RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .context = m->context};
    raft_send(r, &resp);
}

static void snapshot_resp(struct corral_raft *r, const struct corral_raft_msg *m, bool reject,
                          bool done)
{
    struct corral_raft_msg resp = {.type = CORRAL_RAFT_MSG_SNAPSHOT_RESP,
                                   .to = m->from,
                                   .index = m->snapshot.index,
                                   .offset = r->recv_bytes,
                                   .reject = reject,
                                   .flags = done ? CORRAL_RAFT_FLAG_DONE : 0};
    raft_send(r, &resp);
}

/* Replaces our log and state with the received snapshot (section 7):
 * entries after it are kept when our log agrees at its last index. */
static void install_snapshot(struct corral_raft *r)
{
    const struct corral_raft_snapshot_meta *s = &r->recv_meta;
    uint64_t t;
    if (raft_log_term(&r->log, s->index, &t) == 0 && t == s->term)
        raft_log_compact(&r->log, s->index);
    else
        raft_log_reset(&r->log, s->index, s->term);
    if (r->log.stable < s->index)
        r->log.stable = s->index;
    corral_rbuf_unref(r->snap_data);
    r->snap_data = r->recv_data;
    r->snap = *s;
    r->recv_data = NULL;
    r->snap_pending = true;
    if (r->commit < s->index)
        r->commit = s->index;
    raft_conf_rebuild(r);
}

void raft_handle_snapshot(struct corral_raft *r, const struct corral_raft_msg *m)
{
    const struct corral_raft_snapshot_meta *s = &m->snapshot;
    if (s->index <= r->commit) {
        /* Nothing to install: report where we are as for an append. */
        struct corral_raft_msg resp = {
            .type = CORRAL_RAFT_MSG_APPEND_RESP, .to = m->from, .index = r->commit};
        raft_send(r, &resp);
        return;
    }
    bool same = r->recv_data != NULL && r->recv_meta.index == s->index &&
                r->recv_meta.term == s->term && r->recv_data->len == m->size;
    if (m->offset == 0 && !same) {
        corral_rbuf_unref(r->recv_data);
        r->recv_data = corral_rbuf_new(NULL, (uint32_t)m->size);
        r->recv_bytes = 0;
        r->recv_meta = *s;
        if (r->recv_data == NULL) {
            snapshot_resp(r, m, true, false);
            return;
        }
        same = true;
    }
    uint64_t len = m->chunk ? m->chunk->len : 0;
    if (!same || m->offset != r->recv_bytes || m->offset + len > m->size) {
        snapshot_resp(r, m, true, false); /* tells the leader where to resume */
        return;
    }
    if (len > 0)
        memcpy(r->recv_data->data + m->offset, m->chunk->data, len);
    r->recv_bytes += len;
    bool done = (m->flags & CORRAL_RAFT_FLAG_DONE) && r->recv_bytes == m->size;
    if (done)
        install_snapshot(r);
    snapshot_resp(r, m, false, done);
    if (done)
        r->recv_bytes = 0;
}

void raft_handle_snapshot_resp(struct corral_raft *r, const struct corral_raft_msg *m)
{
    struct progress *pr = raft_progress(r, m->from);
    if (pr->state != PROGRESS_SNAPSHOT || m->index != pr->snap_index)
        return;
    if (m->flags & CORRAL_RAFT_FLAG_DONE) {
        if (pr->match < m->index)
            pr->match = m->index;
        progress_become(pr, PROGRESS_PROBE, m->index + 1);
        raft_send_append(r, pr);
        return;
    }
    if (pr->snap_index != r->snap.index) {
        /* We compacted again meanwhile: start over with the new one. */
        start_snapshot(r, pr);
        return;
    }
    uint64_t size = r->snap_data ? r->snap_data->len : 0;
    pr->snap_acked = m->offset <= size ? m->offset : 0;
    send_snapshot_chunk(r, pr);
}

/* Heartbeat-driven retries: a lost snapshot chunk is resent after an
 * election timeout of silence; a lost probe is retried. */
void raft_resend_snapshots(struct corral_raft *r)
{
    for (uint32_t i = 0; i < r->n_progress; i++) {
        struct progress *pr = &r->progress[i];
        if (pr->id == r->id)
            continue;
        if (pr->state == PROGRESS_SNAPSHOT &&
            r->now_ms >= pr->snap_sent_ms + r->cfg.election_timeout_ms) {
            if (pr->snap_index != r->snap.index)
                start_snapshot(r, pr);
            else
                send_snapshot_chunk(r, pr);
        } else if (pr->state == PROGRESS_PROBE) {
            pr->probe_sent = false;
            raft_send_append(r, pr);
        }
    }
}

int raft_append_local(struct corral_raft *r, uint8_t type, struct corral_rbuf *data)
{
    struct corral_raft_entry e = {
        .term = r->term, .index = raft_log_last_index(&r->log) + 1, .type = type, .data = data};
    int rv = raft_log_append(&r->log, &e);
    if (rv == 0 && type == CORRAL_RAFT_ENTRY_CONF)
        raft_conf_changed(r);
    return rv;
}

/* A CONF entry was appended: the new configuration takes effect at once,
 * committed or not (thesis section 4.1). */
void raft_conf_changed(struct corral_raft *r)
{
    const struct corral_raft_entry *e = raft_log_get(&r->log, raft_log_last_index(&r->log));
    struct corral_raft_conf c = r->conf;
    if (corral_raft_conf_apply(&c, e->data) == 0)
        r->conf = c;
    raft_rebuild_progress(r);
}

/* Recomputes the configuration from the snapshot and every CONF entry
 * after it: needed after a truncation removed an uncommitted change. */
int raft_conf_rebuild(struct corral_raft *r)
{
    struct corral_raft_conf c = r->snap.conf;
    uint64_t last = raft_log_last_index(&r->log);
    uint64_t from = r->snap.index + 1 > r->log.offset ? r->snap.index + 1 : r->log.offset;
    for (uint64_t i = from; i <= last; i++) {
        const struct corral_raft_entry *e = raft_log_get(&r->log, i);
        if (e->type == CORRAL_RAFT_ENTRY_CONF)
            corral_raft_conf_apply(&c, e->data);
    }
    r->conf = c;
    raft_rebuild_progress(r);
    return 0;
}
