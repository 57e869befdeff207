/* What the application asks of Raft: proposals, linearizable reads
 * (ReadIndex, thesis section 6.4), membership changes (thesis 4.1),
 * leadership transfer (thesis 3.10) and log compaction (section 7). */
#include <string.h>

#include "corral.h"
#include "core/raft_impl.h"
#include "util/mem.h"

void raft_read_out(struct corral_raft *r, uint64_t id, uint64_t index, bool ok)
{
    if (r->n_reads_out >= CORRAL_RAFT_READS_MAX)
        return; /* the caller's timeout covers a dropped answer */
    if (r->reads_out == NULL) {
        r->reads_out = corral_malloc(CORRAL_RAFT_READS_MAX * sizeof(*r->reads_out));
        if (r->reads_out == NULL)
            return;
    }
    r->reads_out[r->n_reads_out++] = (struct corral_raft_read){id, index, ok};
}

static void read_answer(struct corral_raft *r, const struct pending_read *p, bool ok)
{
    if (p->from == 0) {
        raft_read_out(r, p->id, p->index, ok);
        return;
    }
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_READ_INDEX_RESP,
                                .to = p->from,
                                .context = p->id,
                                .index = p->index,
                                .reject = !ok};
    raft_send(r, &m);
}

void raft_reads_fail_all(struct corral_raft *r)
{
    for (uint32_t i = 0; i < r->n_reads; i++)
        read_answer(r, &r->reads[i], false);
    r->n_reads = 0;
}

static bool committed_in_term(const struct corral_raft *r)
{
    uint64_t t;
    return raft_log_term(&r->log, r->commit, &t) == 0 && t == r->term;
}

/* Reads in the queue have non-decreasing rounds; the prefix whose round a
 * quorum of voters has acknowledged is served. */
void raft_reads_check(struct corral_raft *r)
{
    uint32_t done = 0;
    while (done < r->n_reads) {
        const struct pending_read *p = &r->reads[done];
        if (p->index == 0)
            break; /* waits for our first commit in this term */
        uint32_t acks = 0;
        for (uint32_t i = 0; i < r->n_progress; i++) {
            const struct progress *pr = &r->progress[i];
            if (!pr->learner && (pr->id == r->id || pr->hb_ack >= p->round))
                acks++;
        }
        if (acks < raft_quorum(r))
            break;
        read_answer(r, p, true);
        done++;
    }
    if (done > 0) {
        memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof(*r->reads));
        r->n_reads -= done;
    }
}

/* Starts a heartbeat round for the reads recorded so far: only heartbeats
 * sent after a read was recorded can confirm leadership for it. Called
 * when the next batch is built, so a burst of reads shares one round. */
void raft_reads_flush(struct corral_raft *r)
{
    r->read_round_pending = false;
    if (r->role != CORRAL_RAFT_LEADER || !committed_in_term(r))
        return;
    r->hb_round++;
    for (uint32_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].index == 0 || r->reads[i].round == 0) {
            r->reads[i].index = r->commit;
            r->reads[i].round = r->hb_round;
        }
    }
    raft_broadcast_heartbeat(r, r->hb_round);
    raft_reads_check(r);
}

void raft_handle_read_index(struct corral_raft *r, uint64_t from, uint64_t id)
{
    struct pending_read p = {.id = id, .from = from};
    if (r->role != CORRAL_RAFT_LEADER || r->n_reads >= CORRAL_RAFT_READS_MAX) {
        read_answer(r, &p, false);
        return;
    }
    r->reads[r->n_reads++] = p;
    r->read_round_pending = true;
}

void raft_handle_heartbeat_resp(struct corral_raft *r, const struct corral_raft_msg *m)
{
    struct progress *pr = raft_progress(r, m->from);
    if (m->context <= r->hb_round && m->context > pr->hb_ack)
        pr->hb_ack = m->context;
    raft_reads_check(r);
    if (pr->match < raft_log_last_index(&r->log)) {
        /* The follower is alive yet behind: if the window is full its
         * appends were lost, so free a slot. The next append is rejected
         * if there is a gap, and probing takes over from its match. */
        if (pr->state == PROGRESS_REPLICATE && pr->inflight_count >= r->cfg.max_inflight)
            raft_inflight_free_first(pr);
        raft_send_append(r, pr);
    }
}

/* The leader's commit index moved. */
void raft_leader_committed(struct corral_raft *r)
{
    if (r->n_reads > 0 && r->reads[0].index == 0)
        r->read_round_pending = true;
    /* A leader removed from the voters steps down once the change
     * committed (thesis section 4.2.2). */
    if (!corral_raft_conf_is_voter(&r->conf, r->id) && r->commit >= r->pending_conf_index)
        raft_become_follower(r, r->term, 0);
}

int corral_raft_read_index(struct corral_raft *r, uint64_t id)
{
    if (r->role == CORRAL_RAFT_LEADER) {
        raft_handle_read_index(r, 0, id);
        return 0;
    }
    if (r->leader == 0)
        return CORRAL_ENOTLEADER;
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_READ_INDEX, .to = r->leader, .context = id};
    raft_send(r, &m);
    return 0;
}

int corral_raft_propose(struct corral_raft *r, struct corral_rbuf *data, uint64_t *index)
{
    if (r->role != CORRAL_RAFT_LEADER)
        return CORRAL_ENOTLEADER;
    if (r->transfer_target != 0)
        return CORRAL_EBUSY;
    if (data != NULL && data->len > CORRAL_RAFT_ENTRY_BYTES_MAX)
        return CORRAL_ETOOBIG;
    if (raft_log_last_index(&r->log) - r->commit >= r->cfg.max_uncommitted)
        return CORRAL_EFULL;
    int rv = raft_append_local(r, CORRAL_RAFT_ENTRY_NORMAL, data);
    if (rv != 0)
        return rv;
    if (index != NULL)
        *index = raft_log_last_index(&r->log);
    /* Not sent yet: every proposal made before the next ready batch goes
     * out in one AppendEntries per follower (corral_raft_ready). */
    r->append_pending = true;
    return 0;
}

int corral_raft_change_conf(struct corral_raft *r, enum corral_raft_conf_op op, uint64_t node,
                            uint64_t *index)
{
    if (r->role != CORRAL_RAFT_LEADER)
        return CORRAL_ENOTLEADER;
    if (r->pending_conf_index > r->commit || r->transfer_target != 0)
        return CORRAL_EBUSY;
    struct corral_rbuf *change = corral_raft_conf_change_encode((uint8_t)op, node);
    if (change == NULL)
        return CORRAL_ENOMEM;
    struct corral_raft_conf c = r->conf;
    int rv = corral_raft_conf_apply(&c, change);
    if (rv == 0 && op == CORRAL_RAFT_PROMOTE) {
        /* A voter that is far behind would stall commits (thesis 4.2.1). */
        const struct progress *pr = raft_progress(r, node);
        if (pr == NULL || !corral_raft_caught_up(pr->match, r->commit))
            rv = CORRAL_EBUSY;
    }
    if (rv == 0)
        rv = raft_append_local(r, CORRAL_RAFT_ENTRY_CONF, change);
    corral_rbuf_unref(change);
    if (rv != 0)
        return rv;
    r->pending_conf_index = raft_log_last_index(&r->log);
    if (index != NULL)
        *index = r->pending_conf_index;
    raft_broadcast_append(r);
    return 0;
}

void raft_transfer_check(struct corral_raft *r, struct progress *pr)
{
    if (r->transfer_target != pr->id || pr->match != raft_log_last_index(&r->log))
        return;
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_TIMEOUT_NOW, .to = pr->id};
    raft_send(r, &m);
}

int corral_raft_transfer(struct corral_raft *r, uint64_t target)
{
    if (r->role != CORRAL_RAFT_LEADER)
        return CORRAL_ENOTLEADER;
    if (target == r->id)
        return 0;
    struct progress *pr = raft_progress(r, target);
    if (pr == NULL || pr->learner)
        return CORRAL_EINVAL;
    if (r->transfer_target != 0)
        return CORRAL_EBUSY;
    r->transfer_target = target;
    r->transfer_deadline_ms = r->now_ms + r->cfg.election_timeout_ms;
    if (pr->match == raft_log_last_index(&r->log))
        raft_transfer_check(r, pr);
    else
        raft_send_append(r, pr);
    return 0;
}

int corral_raft_compact(struct corral_raft *r, uint64_t index, struct corral_rbuf *data,
                        uint64_t keep_entries, struct corral_raft_snapshot_meta *meta)
{
    uint64_t term;
    *meta = r->snap;
    if (index <= r->snap.index)
        return CORRAL_ECOMPACTED;
    if (index > r->applied || raft_log_term(&r->log, index, &term) != 0 || r->snap_pending)
        return CORRAL_EINVAL;
    if (data != NULL && data->len > CORRAL_RAFT_SNAPSHOT_BYTES_MAX)
        return CORRAL_ETOOBIG;
    /* The snapshot's configuration is the one in force at index. */
    struct corral_raft_conf c = r->snap.conf;
    for (uint64_t i = r->snap.index + 1; i <= index; i++) {
        const struct corral_raft_entry *e = raft_log_get(&r->log, i);
        if (e != NULL && e->type == CORRAL_RAFT_ENTRY_CONF)
            corral_raft_conf_apply(&c, e->data);
    }
    r->snap.index = index;
    r->snap.term = term;
    r->snap.conf = c;
    corral_rbuf_unref(r->snap_data);
    r->snap_data = corral_rbuf_ref(data);
    if (index > keep_entries)
        raft_log_compact(&r->log, index - keep_entries);
    *meta = r->snap;
    return 0;
}
