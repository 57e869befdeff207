/* The Raft node: lifecycle, time, elections (with pre-vote and
 * check-quorum), the dispatch of incoming messages by term and role, and
 * the ready batch that hands actions to the runtime. */
#include "core/raft.h"

#include <assert.h>
#include <string.h>

#include "corral.h"
#include "core/raft_impl.h"
#include "util/mem.h"

void corral_raft_config_default(struct corral_raft_config *c, uint64_t id)
{
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->election_timeout_ms = CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT;
    c->heartbeat_ms = CORRAL_RAFT_HEARTBEAT_MS_DEFAULT;
    c->seed = id;
    c->pre_vote = true;
    c->check_quorum = true;
    c->max_inflight = 64;
    c->max_msg_entries = 256;
    c->max_msg_bytes = 1u << 20;
    c->snapshot_chunk_bytes = 256u << 10;
    c->max_uncommitted = 65536;
}

static int config_check(const struct corral_raft_config *c)
{
    if (c->id == 0 || c->election_timeout_ms == 0 || c->heartbeat_ms == 0 ||
        c->heartbeat_ms >= c->election_timeout_ms || c->max_inflight == 0 ||
        c->max_inflight > CORRAL_RAFT_INFLIGHT_MAX || c->max_msg_entries == 0 ||
        c->max_msg_entries > CORRAL_RAFT_MSG_ENTRIES_MAX || c->max_msg_bytes == 0 ||
        c->max_msg_bytes > CORRAL_RAFT_MSG_PAYLOAD_BYTES_MAX || c->snapshot_chunk_bytes == 0 ||
        c->snapshot_chunk_bytes > CORRAL_RAFT_CHUNK_BYTES_MAX || c->max_uncommitted == 0)
        return CORRAL_EINVAL;
    return 0;
}

/* splitmix64: the core's only randomness, seeded by the caller. */
uint64_t raft_rand(struct corral_raft *r)
{
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Randomized election timeout in [t, 2t) (section 5.2). */
static void reset_election_timer(struct corral_raft *r)
{
    uint64_t t = r->cfg.election_timeout_ms;
    r->election_deadline_ms = r->now_ms + t + raft_rand(r) % t;
}

struct progress *raft_progress(struct corral_raft *r, uint64_t id)
{
    for (uint32_t i = 0; i < r->n_progress; i++)
        if (r->progress[i].id == id)
            return &r->progress[i];
    return NULL;
}

uint32_t raft_quorum(const struct corral_raft *r)
{
    return r->conf.n_voters / 2 + 1;
}

/* Keeps the progress of nodes still in the configuration, adds new ones
 * (probing from the end of our log) and drops the removed. */
void raft_rebuild_progress(struct corral_raft *r)
{
    struct progress old[CORRAL_RAFT_NODES_MAX];
    uint32_t n_old = r->n_progress;
    memcpy(old, r->progress, sizeof(old));
    r->n_progress = 0;
    for (uint32_t k = 0; k < 2; k++) {
        const uint64_t *ids = k == 0 ? r->conf.voters : r->conf.learners;
        uint32_t n = k == 0 ? r->conf.n_voters : r->conf.n_learners;
        for (uint32_t i = 0; i < n; i++) {
            struct progress *pr = &r->progress[r->n_progress++];
            memset(pr, 0, sizeof(*pr));
            for (uint32_t j = 0; j < n_old; j++)
                if (old[j].id == ids[i])
                    *pr = old[j];
            if (pr->id == 0) {
                pr->id = ids[i];
                pr->next = raft_log_last_index(&r->log) + 1;
                pr->last_contact_ms = r->now_ms;
                pr->recent_active = true;
            }
            pr->learner = k == 1;
        }
    }
}

int corral_raft_new(const struct corral_raft_config *config,
                    const struct corral_raft_hard_state *hs,
                    const struct corral_raft_snapshot_meta *snap, struct corral_rbuf *snap_data,
                    const struct corral_raft_entry *entries, uint32_t n_entries,
                    struct corral_raft **out)
{
    *out = NULL;
    if (config_check(config) != 0 ||
        (snap->conf.n_voters > 0 && !corral_raft_conf_valid(&snap->conf)))
        return CORRAL_EINVAL;
    struct corral_raft *r = corral_calloc(1, sizeof(*r));
    if (r == NULL)
        return CORRAL_ENOMEM;
    r->reads = corral_calloc(CORRAL_RAFT_READS_MAX, sizeof(*r->reads));
    if (r->reads == NULL) {
        corral_free(r);
        return CORRAL_ENOMEM;
    }
    r->cfg = *config;
    r->id = config->id;
    r->rng = config->seed;
    raft_log_init(&r->log);
    raft_log_reset(&r->log, snap->index, snap->term);
    r->snap = *snap;
    r->snap_data = corral_rbuf_ref(snap_data);
    r->conf = snap->conf;
    int rv = 0;
    for (uint32_t i = 0; i < n_entries && rv == 0; i++) {
        const struct corral_raft_entry *e = &entries[i];
        if (e->index != raft_log_last_index(&r->log) + 1 || e->term < raft_log_last_term(&r->log) ||
            e->type > CORRAL_RAFT_ENTRY_TYPE_MAX)
            rv = CORRAL_EINVAL;
        else
            rv = raft_log_append(&r->log, e);
    }
    if (rv == 0 && hs->term < raft_log_last_term(&r->log))
        rv = CORRAL_EINVAL;
    if (rv == 0)
        rv = raft_conf_rebuild(r);
    if (rv != 0) {
        corral_raft_free(r);
        return rv;
    }
    r->log.stable = raft_log_last_index(&r->log);
    r->term = hs->term;
    r->vote = hs->vote;
    r->hs_saved = *hs;
    /* Only the log tells what is committed for sure; the hint may run
     * ahead of a log truncated by recovery. */
    r->commit = hs->commit < snap->index ? snap->index : hs->commit;
    if (r->commit > raft_log_last_index(&r->log))
        r->commit = raft_log_last_index(&r->log);
    r->applied = snap->index;
    r->role = CORRAL_RAFT_FOLLOWER;
    raft_rebuild_progress(r);
    reset_election_timer(r);
    *out = r;
    return 0;
}

static void outbox_clear(struct corral_raft *r)
{
    for (uint32_t i = 0; i < r->n_out; i++)
        corral_raft_msg_clear(&r->out[i]);
    r->n_out = 0;
}

void corral_raft_free(struct corral_raft *r)
{
    if (r == NULL)
        return;
    outbox_clear(r);
    corral_free(r->out);
    corral_free(r->reads);
    corral_free(r->reads_out);
    raft_log_close(&r->log);
    corral_rbuf_unref(r->snap_data);
    corral_rbuf_unref(r->recv_data);
    corral_free(r);
}

/* Queues m for the next ready batch; takes ownership of what m holds. */
void raft_send(struct corral_raft *r, struct corral_raft_msg *m)
{
    m->from = r->id;
    if (m->term == 0)
        m->term = r->term;
    if (r->n_out == r->out_cap && r->out_cap < RAFT_OUTBOX_MAX) {
        uint32_t cap = r->out_cap ? r->out_cap * 2 : 16;
        struct corral_raft_msg *o = corral_realloc(r->out, (size_t)cap * sizeof(*o));
        if (o != NULL) {
            r->out = o;
            r->out_cap = cap;
        }
    }
    if (r->n_out == r->out_cap) {
        corral_raft_msg_clear(m); /* dropped: Raft retries */
        return;
    }
    r->out[r->n_out++] = *m;
}

void raft_become_follower(struct corral_raft *r, uint64_t term, uint64_t leader)
{
    assert(term >= r->term);
    if (r->role == CORRAL_RAFT_LEADER)
        raft_reads_fail_all(r);
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = CORRAL_RAFT_FOLLOWER;
    r->leader = leader;
    r->transfer_target = 0;
    if (leader != 0)
        r->leader_contact_ms = r->now_ms;
    reset_election_timer(r);
}

/* Asks every other voter (or, with only_refusers, those that have not
 * granted yet) for a (pre-)vote. */
static void send_votes_to(struct corral_raft *r, uint8_t type, uint64_t term, bool transfer,
                          bool only_refusers)
{
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        if (r->conf.voters[i] == r->id)
            continue;
        struct progress *pr = raft_progress(r, r->conf.voters[i]);
        if (only_refusers) {
            if (pr == NULL || pr->vote_granted)
                continue;
            pr->vote_answered = false; /* its next answer counts afresh */
        }
        struct corral_raft_msg m = {.type = type,
                                    .to = r->conf.voters[i],
                                    .term = term,
                                    .index = raft_log_last_index(&r->log),
                                    .log_term = raft_log_last_term(&r->log),
                                    .flags = transfer ? CORRAL_RAFT_FLAG_TRANSFER : 0};
        raft_send(r, &m);
    }
}

static void send_votes(struct corral_raft *r, uint8_t type, uint64_t term, bool transfer)
{
    send_votes_to(r, type, term, transfer, false);
}

static void become_leader(struct corral_raft *r);
static void campaign_real(struct corral_raft *r, bool transfer);

/* Counts a vote; wins or loses the (pre-)election when decided. */
static void tally(struct corral_raft *r, uint64_t from, bool granted)
{
    struct progress *pr = raft_progress(r, from);
    if (pr == NULL || pr->learner || pr->vote_answered)
        return;
    pr->vote_answered = true;
    pr->vote_granted = granted;
    uint32_t yes = 0, no = 0;
    for (uint32_t i = 0; i < r->n_progress; i++) {
        const struct progress *p = &r->progress[i];
        if (p->learner || !p->vote_answered)
            continue;
        yes += p->vote_granted;
        no += !p->vote_granted;
    }
    if (yes >= raft_quorum(r)) {
        if (r->role == CORRAL_RAFT_PRECANDIDATE)
            campaign_real(r, false);
        else
            become_leader(r);
    } else if (no >= raft_quorum(r)) {
        raft_become_follower(r, r->term, 0);
    }
}

static void reset_votes(struct corral_raft *r)
{
    for (uint32_t i = 0; i < r->n_progress; i++) {
        r->progress[i].vote_answered = false;
        r->progress[i].vote_granted = false;
    }
}

/* A real election: new term, vote for ourselves (section 5.2). */
static void campaign_real(struct corral_raft *r, bool transfer)
{
    r->role = CORRAL_RAFT_CANDIDATE;
    r->term++;
    r->vote = r->id;
    r->leader = 0;
    reset_election_timer(r);
    reset_votes(r);
    send_votes(r, CORRAL_RAFT_MSG_VOTE, r->term, transfer);
    tally(r, r->id, true);
}

/* Pre-vote (thesis section 9.6): ask whether we could win before
 * disturbing anyone's term, so a partitioned node that rejoins does not
 * depose a healthy leader. */
static void campaign(struct corral_raft *r)
{
    if (!corral_raft_conf_is_voter(&r->conf, r->id)) {
        /* A learner, or a node outside the configuration, cannot run; it
         * only stops trusting a leader it no longer hears from, so that
         * reads fail fast instead of waiting on a dead one. */
        r->leader = 0;
        reset_election_timer(r);
        return;
    }
    if (!r->cfg.pre_vote) {
        campaign_real(r, false);
        return;
    }
    r->role = CORRAL_RAFT_PRECANDIDATE;
    r->leader = 0;
    reset_election_timer(r);
    reset_votes(r);
    r->prevote_retry_ms = r->now_ms + r->cfg.heartbeat_ms;
    send_votes(r, CORRAL_RAFT_MSG_PREVOTE, r->term + 1, false);
    tally(r, r->id, true);
}

/* A pre-vote refused because the voter still heard from the old leader
 * recently (in_lease) turns into a grant a few ms later, once that lease
 * runs out; waiting a whole randomized election timeout to ask again made
 * leader failover slow. A precandidate asks the voters that have not
 * granted again every heartbeat interval. Pre-votes change no state, so
 * asking again is harmless. */
static void retry_prevotes(struct corral_raft *r)
{
    if (r->now_ms < r->prevote_retry_ms)
        return;
    r->prevote_retry_ms = r->now_ms + r->cfg.heartbeat_ms;
    send_votes_to(r, CORRAL_RAFT_MSG_PREVOTE, r->term + 1, false, true);
}

static void become_leader(struct corral_raft *r)
{
    r->role = CORRAL_RAFT_LEADER;
    r->leader = r->id;
    r->transfer_target = 0;
    r->hb_round = 0;
    uint64_t last = raft_log_last_index(&r->log);
    for (uint32_t i = 0; i < r->n_progress; i++) {
        struct progress *pr = &r->progress[i];
        uint64_t id = pr->id;
        bool learner = pr->learner;
        memset(pr, 0, sizeof(*pr));
        pr->id = id;
        pr->learner = learner;
        pr->next = last + 1;
        pr->recent_active = true;
        pr->last_contact_ms = r->now_ms;
        if (id == r->id)
            pr->match = r->log.stable;
    }
    r->quorum_check_ms = r->now_ms + r->cfg.election_timeout_ms;
    r->heartbeat_deadline_ms = r->now_ms + r->cfg.heartbeat_ms;
    /* A no-op of the new term lets earlier entries commit through it
     * (section 5.4.2) and lets ReadIndex start (section 6.4). Conf changes
     * wait until it commits: an uncommitted one may hide in the log. */
    raft_append_local(r, CORRAL_RAFT_ENTRY_NOOP, NULL);
    r->pending_conf_index = raft_log_last_index(&r->log);
    raft_broadcast_append(r);
}

static bool in_lease(const struct corral_raft *r)
{
    return r->cfg.check_quorum && r->leader != 0 &&
           r->now_ms < r->leader_contact_ms + r->cfg.election_timeout_ms;
}

/* Check-quorum: a leader that has not heard from a majority within an
 * election timeout steps down (thesis section 6.2). */
static void check_quorum(struct corral_raft *r)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < r->n_progress; i++) {
        struct progress *pr = &r->progress[i];
        if (!pr->learner && (pr->id == r->id || pr->recent_active))
            active++;
        pr->recent_active = false;
    }
    if (r->cfg.check_quorum && active < raft_quorum(r))
        raft_become_follower(r, r->term, 0);
}

void corral_raft_tick(struct corral_raft *r, uint64_t now_ms)
{
    if (now_ms > r->now_ms)
        r->now_ms = now_ms;
    if (r->role != CORRAL_RAFT_LEADER) {
        if (r->now_ms >= r->election_deadline_ms)
            campaign(r);
        else if (r->role == CORRAL_RAFT_PRECANDIDATE)
            retry_prevotes(r);
        return;
    }
    if (r->transfer_target != 0 && r->now_ms >= r->transfer_deadline_ms)
        r->transfer_target = 0;
    if (r->now_ms >= r->quorum_check_ms) {
        r->quorum_check_ms = r->now_ms + r->cfg.election_timeout_ms;
        check_quorum(r);
        if (r->role != CORRAL_RAFT_LEADER)
            return;
    }
    if (r->now_ms >= r->heartbeat_deadline_ms) {
        r->heartbeat_deadline_ms = r->now_ms + r->cfg.heartbeat_ms;
        raft_broadcast_heartbeat(r, r->hb_round);
        raft_resend_snapshots(r);
    }
}

static void handle_vote(struct corral_raft *r, const struct corral_raft_msg *m)
{
    bool pre = m->type == CORRAL_RAFT_MSG_PREVOTE;
    /* A pre-vote is granted for a term above ours without taking it; a
     * vote only once per term, to a log at least as up to date as ours. */
    bool can = pre ? m->term > r->term && !in_lease(r)
                   : (r->vote == 0 || r->vote == m->from) && m->term == r->term;
    bool grant = can && raft_log_up_to_date(&r->log, m->index, m->log_term);
    struct corral_raft_msg resp = {.type = pre ? CORRAL_RAFT_MSG_PREVOTE_RESP
                                               : CORRAL_RAFT_MSG_VOTE_RESP,
                                   .to = m->from,
                                   .term = grant && pre ? m->term : r->term,
                                   .reject = !grant};
    if (grant && !pre) {
        r->vote = m->from;
        reset_election_timer(r);
    }
    raft_send(r, &resp);
}

/* Messages from a higher term: usually adopt it. Returns false when the
 * message must be ignored instead. */
static bool step_higher_term(struct corral_raft *r, const struct corral_raft_msg *m)
{
    switch (m->type) {
    case CORRAL_RAFT_MSG_PREVOTE:
        return true; /* answered without changing our term */
    case CORRAL_RAFT_MSG_PREVOTE_RESP:
        if (!m->reject)
            return true; /* a grant carries the term we proposed */
        break;
    case CORRAL_RAFT_MSG_VOTE:
        /* Within a leader's lease a vote request is a disruption from a
         * partitioned node, unless the leader asked for it (transfer). */
        if (in_lease(r) && !(m->flags & CORRAL_RAFT_FLAG_TRANSFER))
            return false;
        break;
    default:
        break;
    }
    bool from_leader = m->type == CORRAL_RAFT_MSG_APPEND || m->type == CORRAL_RAFT_MSG_HEARTBEAT ||
                       m->type == CORRAL_RAFT_MSG_SNAPSHOT;
    raft_become_follower(r, m->term, from_leader ? m->from : 0);
    return true;
}

/* Messages from a lower term are stale, but a stale leader must learn our
 * term or it would go on forever believing it leads (with check-quorum and
 * pre-vote our term may have moved without it hearing). */
static void step_lower_term(struct corral_raft *r, const struct corral_raft_msg *m)
{
    if (m->type == CORRAL_RAFT_MSG_APPEND || m->type == CORRAL_RAFT_MSG_HEARTBEAT) {
        struct corral_raft_msg resp = {
            .type = CORRAL_RAFT_MSG_APPEND_RESP, .to = m->from, .reject = 1};
        raft_send(r, &resp);
    } else if (m->type == CORRAL_RAFT_MSG_PREVOTE) {
        struct corral_raft_msg resp = {
            .type = CORRAL_RAFT_MSG_PREVOTE_RESP, .to = m->from, .reject = 1};
        raft_send(r, &resp);
    } else if (m->type == CORRAL_RAFT_MSG_READ_INDEX) {
        /* A node asking a deposed leader: tell it the news. */
        struct corral_raft_msg resp = {.type = CORRAL_RAFT_MSG_READ_INDEX_RESP,
                                       .to = m->from,
                                       .context = m->context,
                                       .reject = 1};
        raft_send(r, &resp);
    }
}

static void step_follower_like(struct corral_raft *r, const struct corral_raft_msg *m)
{
    switch (m->type) {
    case CORRAL_RAFT_MSG_APPEND:
    case CORRAL_RAFT_MSG_HEARTBEAT:
    case CORRAL_RAFT_MSG_SNAPSHOT:
        if (r->role != CORRAL_RAFT_FOLLOWER || r->leader != m->from)
            raft_become_follower(r, m->term, m->from);
        r->leader_contact_ms = r->now_ms;
        reset_election_timer(r);
        if (m->type == CORRAL_RAFT_MSG_APPEND)
            raft_handle_append(r, m);
        else if (m->type == CORRAL_RAFT_MSG_HEARTBEAT)
            raft_handle_heartbeat(r, m);
        else
            raft_handle_snapshot(r, m);
        break;
    case CORRAL_RAFT_MSG_TIMEOUT_NOW:
        /* Leadership transfer: skip pre-vote, the leader asked. */
        if (corral_raft_conf_is_voter(&r->conf, r->id))
            campaign_real(r, true);
        break;
    case CORRAL_RAFT_MSG_READ_INDEX_RESP:
        raft_read_out(r, m->context, m->index, !m->reject);
        break;
    case CORRAL_RAFT_MSG_READ_INDEX: {
        struct corral_raft_msg resp = {.type = CORRAL_RAFT_MSG_READ_INDEX_RESP,
                                       .to = m->from,
                                       .context = m->context,
                                       .reject = 1};
        raft_send(r, &resp);
        break;
    }
    case CORRAL_RAFT_MSG_PREVOTE_RESP:
        if (r->role == CORRAL_RAFT_PRECANDIDATE && m->term == r->term + 1 && !m->reject)
            tally(r, m->from, true);
        else if (r->role == CORRAL_RAFT_PRECANDIDATE && m->reject)
            tally(r, m->from, false);
        break;
    case CORRAL_RAFT_MSG_VOTE_RESP:
        if (r->role == CORRAL_RAFT_CANDIDATE)
            tally(r, m->from, !m->reject);
        break;
    default:
        break;
    }
}

static void step_leader(struct corral_raft *r, const struct corral_raft_msg *m)
{
    struct progress *pr = raft_progress(r, m->from);
    if (pr != NULL) {
        pr->recent_active = true;
        pr->last_contact_ms = r->now_ms;
    }
    switch (m->type) {
    case CORRAL_RAFT_MSG_APPEND_RESP:
        if (pr != NULL)
            raft_handle_append_resp(r, m);
        break;
    case CORRAL_RAFT_MSG_HEARTBEAT_RESP:
        if (pr != NULL)
            raft_handle_heartbeat_resp(r, m);
        break;
    case CORRAL_RAFT_MSG_SNAPSHOT_RESP:
        if (pr != NULL)
            raft_handle_snapshot_resp(r, m);
        break;
    case CORRAL_RAFT_MSG_READ_INDEX:
        raft_handle_read_index(r, m->from, m->context);
        break;
    default:
        break; /* votes of our own term were already decided */
    }
}

static bool entries_valid(const struct corral_raft_msg *m)
{
    if (m->n_entries > CORRAL_RAFT_MSG_ENTRIES_MAX || (m->n_entries > 0 && m->entries == NULL))
        return false;
    uint64_t prev_term = m->log_term;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct corral_raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term ||
            e->type > CORRAL_RAFT_ENTRY_TYPE_MAX ||
            (e->data != NULL && e->data->len > CORRAL_RAFT_ENTRY_BYTES_MAX))
            return false;
        prev_term = e->term;
    }
    return true;
}

/* Bytes from the network are never trusted: a message that cannot come
 * from a correct peer is dropped rather than asserted on. */
static bool msg_valid(const struct corral_raft *r, const struct corral_raft_msg *m)
{
    if (m->type == 0 || m->type > CORRAL_RAFT_MSG_TYPE_MAX || m->to != r->id || m->from == 0 ||
        m->from == r->id || m->term == 0)
        return false;
    if (m->type == CORRAL_RAFT_MSG_APPEND &&
        (m->log_term > m->term || m->index > UINT64_MAX / 2 || !entries_valid(m)))
        return false;
    if (m->type != CORRAL_RAFT_MSG_APPEND && m->n_entries != 0)
        return false;
    if (m->type == CORRAL_RAFT_MSG_SNAPSHOT &&
        (m->size > CORRAL_RAFT_SNAPSHOT_BYTES_MAX || m->snapshot.index == 0 ||
         m->snapshot.term > m->term || !corral_raft_conf_valid(&m->snapshot.conf) ||
         (m->chunk != NULL && m->chunk->len > CORRAL_RAFT_CHUNK_BYTES_MAX)))
        return false;
    return true;
}

int corral_raft_step(struct corral_raft *r, const struct corral_raft_msg *m)
{
    if (!msg_valid(r, m))
        return CORRAL_EINVAL;
    if (m->term > r->term) {
        if (!step_higher_term(r, m))
            return 0;
    } else if (m->term < r->term) {
        step_lower_term(r, m);
        return 0;
    }
    if (m->type == CORRAL_RAFT_MSG_PREVOTE || m->type == CORRAL_RAFT_MSG_VOTE) {
        handle_vote(r, m);
        return 0;
    }
    if (r->role == CORRAL_RAFT_LEADER) {
        if (m->type == CORRAL_RAFT_MSG_APPEND || m->type == CORRAL_RAFT_MSG_HEARTBEAT ||
            m->type == CORRAL_RAFT_MSG_SNAPSHOT)
            return CORRAL_EINVAL; /* two leaders in one term: impossible */
        step_leader(r, m);
    } else {
        step_follower_like(r, m);
    }
    return 0;
}

bool corral_raft_has_ready(const struct corral_raft *r)
{
    if (r->ready_inflight)
        return false;
    return r->n_out > 0 || r->snap_pending || r->append_pending ||
           r->log.stable < raft_log_last_index(&r->log) || r->hs_saved.term != r->term ||
           r->hs_saved.vote != r->vote || r->hs_saved.commit != r->commit ||
           r->applied < r->commit || r->n_reads_out > 0 || r->read_round_pending;
}

static void ready_committed(struct corral_raft *r, struct corral_raft_ready *rd)
{
    uint64_t lo = r->applied + 1;
    uint64_t hi = r->commit;
    if (rd->has_snapshot && lo <= rd->snapshot.index)
        lo = rd->snapshot.index + 1;
    if (lo < r->log.offset || hi < lo)
        return;
    if (raft_log_slice(&r->log, lo, hi, UINT32_MAX, UINT64_MAX, &rd->committed, &rd->n_committed) !=
        0) {
        rd->n_committed = 0; /* retried at the next batch */
    }
}

void corral_raft_ready(struct corral_raft *r, struct corral_raft_ready *rd)
{
    assert(!r->ready_inflight);
    memset(rd, 0, sizeof(*rd));
    r->ready_inflight = true;
    if (r->append_pending) {
        r->append_pending = false;
        if (r->role == CORRAL_RAFT_LEADER)
            raft_broadcast_append(r);
    }
    if (r->read_round_pending)
        raft_reads_flush(r);
    struct corral_raft_hard_state hs = {r->term, r->vote, r->commit};
    if (memcmp(&hs, &r->hs_saved, sizeof(hs)) != 0) {
        rd->has_hard_state = true;
        rd->hard_state = hs;
    }
    /* R3: term and vote must be on disk before any message that depends on
     * them leaves; the commit index is a hint (safe to lose), so a batch
     * that moves only it needs no fsync of its own. */
    rd->must_sync = hs.term != r->hs_saved.term || hs.vote != r->hs_saved.vote;
    if (r->snap_pending) {
        rd->has_snapshot = true;
        rd->snapshot = r->snap;
        rd->snapshot_data = corral_rbuf_ref(r->snap_data);
    }
    uint64_t last = raft_log_last_index(&r->log);
    if (r->log.stable < last && raft_log_slice(&r->log, r->log.stable + 1, last, UINT32_MAX,
                                               UINT64_MAX, &rd->entries, &rd->n_entries) != 0) {
        rd->n_entries = 0;
    }
    rd->must_sync = rd->must_sync || rd->has_snapshot || rd->n_entries > 0;
    ready_committed(r, rd);
    /* Messages may depend on the entries and hard state above; when those
     * could not be copied, hold the messages back too. */
    if (rd->n_entries > 0 || r->log.stable == last) {
        rd->msgs = r->out;
        rd->n_msgs = r->n_out;
        r->out = NULL;
        r->n_out = 0;
        r->out_cap = 0;
    }
    rd->reads = r->reads_out;
    rd->n_reads = r->n_reads_out;
    r->reads_out = NULL;
    r->n_reads_out = 0;
    rd->role = r->role;
    rd->leader = r->leader;
    rd->term = r->term;
}

void corral_raft_advance(struct corral_raft *r, const struct corral_raft_ready *rd)
{
    assert(r->ready_inflight);
    r->ready_inflight = false;
    if (rd->has_hard_state)
        r->hs_saved = rd->hard_state;
    if (rd->has_snapshot) {
        /* Only if no newer snapshot was installed while this batch was
         * persisting (an asynchronous persist steps messages meanwhile):
         * that one must still go out in the next batch, or applied stays
         * below a log that starts after it and no batch ever moves it. */
        if (r->snap.index == rd->snapshot.index && r->snap.term == rd->snapshot.term)
            r->snap_pending = false;
        if (r->applied < rd->snapshot.index)
            r->applied = rd->snapshot.index;
        if (r->log.stable < rd->snapshot.index)
            r->log.stable = rd->snapshot.index;
    }
    if (rd->n_entries > 0) {
        const struct corral_raft_entry *e = &rd->entries[rd->n_entries - 1];
        raft_log_stable_to(&r->log, e->index, e->term);
    }
    if (rd->n_committed > 0 && rd->committed[rd->n_committed - 1].index > r->applied)
        r->applied = rd->committed[rd->n_committed - 1].index;
    if (r->role == CORRAL_RAFT_LEADER) {
        struct progress *self = raft_progress(r, r->id);
        if (self != NULL && self->match < r->log.stable)
            self->match = r->log.stable;
        if (raft_maybe_commit(r))
            raft_broadcast_append(r);
    }
}

void corral_raft_ready_free(struct corral_raft_ready *rd)
{
    corral_rbuf_unref(rd->snapshot_data);
    raft_entries_free(rd->entries, rd->n_entries);
    raft_entries_free(rd->committed, rd->n_committed);
    for (uint32_t i = 0; i < rd->n_msgs; i++)
        corral_raft_msg_clear(&rd->msgs[i]);
    corral_free(rd->msgs);
    corral_free(rd->reads);
    memset(rd, 0, sizeof(*rd));
}

/* Leader only: the voters heard from within two election timeouts (the
 * leader counts itself), and whether they make a quorum. */
static void quorum_contact(const struct corral_raft *r, struct corral_raft_status *s)
{
    uint64_t window = 2u * (uint64_t)r->cfg.election_timeout_ms;
    for (uint32_t i = 0; i < r->n_progress; i++) {
        const struct progress *pr = &r->progress[i];
        if (pr->learner)
            continue;
        if (pr->id == r->id || r->now_ms - pr->last_contact_ms <= window)
            s->voters_in_contact++;
    }
    s->quorum_in_contact = s->voters_in_contact >= raft_quorum(r);
}

void corral_raft_status(const struct corral_raft *r, struct corral_raft_status *s)
{
    memset(s, 0, sizeof(*s));
    s->id = r->id;
    s->role = (enum corral_raft_role)r->role;
    s->term = r->term;
    s->vote = r->vote;
    s->leader = r->leader;
    s->commit = r->commit;
    s->applied = r->applied;
    s->first_index = r->log.offset;
    s->last_index = raft_log_last_index(&r->log);
    s->snapshot_index = r->snap.index;
    s->stable_index = r->log.stable;
    s->conf = r->conf;
    s->n_progress = r->n_progress;
    if (r->role == CORRAL_RAFT_LEADER) {
        quorum_contact(r, s);
        s->transfer_target = r->transfer_target;
        s->pending_conf_index = r->pending_conf_index;
    }
    for (uint32_t i = 0; i < r->n_progress; i++) {
        s->progress[i].id = r->progress[i].id;
        s->progress[i].match = r->progress[i].match;
        s->progress[i].next = r->progress[i].next;
        s->progress[i].last_contact_ms = r->progress[i].last_contact_ms;
        s->progress[i].learner = r->progress[i].learner;
    }
}

const struct corral_raft_entry *corral_raft_entry_at(const struct corral_raft *r, uint64_t index)
{
    return raft_log_get(&r->log, index);
}
