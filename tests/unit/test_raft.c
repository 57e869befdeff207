/* Unit tests for the Raft core: one deterministic fixture cluster (messages
 * copied through the real codec, persistence instant, time stepped by
 * hand) and one test per protocol rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "corral.h"
#include "core/codec.h"
#include "core/raft.h"

#define FX_NODES 7
#define FX_QUEUE 4096

struct fx {
    uint32_t n;
    uint64_t now;
    struct corral_raft *r[FX_NODES + 1];
    bool down[FX_NODES + 1];
    bool cut[FX_NODES + 1][FX_NODES + 1];
    uint64_t applied[FX_NODES + 1];
    uint64_t last_read_index[FX_NODES + 1];
    uint64_t reads_ok[FX_NODES + 1];
    uint64_t reads_failed[FX_NODES + 1];
    uint32_t n_q;
    struct corral_raft_msg q[FX_QUEUE];
    uint64_t sent_by_type[CORRAL_RAFT_MSG_TYPE_MAX + 1];
    struct corral_rbuf *snap_data[FX_NODES + 1];
    bool (*drop)(const struct corral_raft_msg *m); /* optional filter */
};

static struct corral_raft_config fx_config(uint64_t id)
{
    struct corral_raft_config c;
    corral_raft_config_default(&c, id);
    c.seed = id * 7919;
    /* The scenarios below are timed for a 150 ms base election timeout
     * (the product default is CORRAL_RAFT_ELECTION_TIMEOUT_MS_DEFAULT). */
    c.election_timeout_ms = 150;
    return c;
}

static void fx_boot(struct fx *f, uint32_t id, const struct corral_raft_config *cfg,
                    const struct corral_raft_hard_state *hs,
                    const struct corral_raft_entry *entries, uint32_t n)
{
    struct corral_raft_snapshot_meta snap = {0};
    assert_int_equal(corral_raft_new(cfg, hs, &snap, NULL, entries, n, &f->r[id]), 0);
    corral_raft_tick(f->r[id], f->now);
}

/* A new cluster of n voters, each with the bootstrap entry; tweak (may be
 * NULL) adjusts each node's configuration. */
static void fx_init(struct fx *f, uint32_t n, void (*tweak)(struct corral_raft_config *cfg))
{
    memset(f, 0, sizeof(*f));
    f->n = n;
    struct corral_raft_conf conf = {.n_voters = n};
    for (uint32_t i = 0; i < n; i++)
        conf.voters[i] = i + 1;
    struct corral_raft_entry boot;
    assert_int_equal(corral_raft_bootstrap(&conf, &boot), 0);
    struct corral_raft_hard_state hs = {.term = 1, .commit = 1};
    for (uint32_t id = 1; id <= n; id++) {
        struct corral_raft_config cfg = fx_config(id);
        if (tweak != NULL)
            tweak(&cfg);
        fx_boot(f, id, &cfg, &hs, &boot, 1);
    }
    corral_rbuf_unref(boot.data);
}

static void fx_free(struct fx *f)
{
    for (uint32_t i = 0; i < f->n_q; i++)
        corral_raft_msg_clear(&f->q[i]);
    for (uint32_t id = 1; id <= FX_NODES; id++) {
        corral_raft_free(f->r[id]);
        corral_rbuf_unref(f->snap_data[id]);
    }
}

/* Copies a message through the codec, as the transport will. */
static void fx_enqueue(struct fx *f, const struct corral_raft_msg *m)
{
    size_t len = corral_codec_msg_size(m), out;
    uint8_t *buf = test_malloc(len);
    assert_int_equal(corral_codec_msg_encode(m, buf, len, &out), 0);
    assert_true(f->n_q < FX_QUEUE);
    assert_int_equal(corral_codec_msg_decode(buf, out, &f->q[f->n_q]), 0);
    f->n_q++;
    f->sent_by_type[m->type]++;
    test_free(buf);
}

static bool fx_ready(struct fx *f, uint32_t id)
{
    struct corral_raft *r = f->r[id];
    if (r == NULL || f->down[id] || !corral_raft_has_ready(r))
        return false;
    struct corral_raft_ready rd;
    corral_raft_ready(r, &rd);
    for (uint32_t i = 0; i < rd.n_msgs; i++)
        fx_enqueue(f, &rd.msgs[i]);
    if (rd.has_snapshot)
        f->applied[id] = rd.snapshot.index;
    for (uint32_t i = 0; i < rd.n_committed; i++) {
        assert_int_equal(rd.committed[i].index, f->applied[id] + 1);
        f->applied[id] = rd.committed[i].index;
    }
    for (uint32_t i = 0; i < rd.n_reads; i++) {
        if (rd.reads[i].ok) {
            f->reads_ok[id]++;
            f->last_read_index[id] = rd.reads[i].index;
        } else {
            f->reads_failed[id]++;
        }
    }
    corral_raft_advance(r, &rd);
    corral_raft_ready_free(&rd);
    return true;
}

/* Delivers everything deliverable until the cluster is quiet. */
static void fx_pump(struct fx *f)
{
    for (int round = 0; round < 1000; round++) {
        bool busy = false;
        for (uint32_t id = 1; id <= FX_NODES; id++)
            busy |= fx_ready(f, id);
        uint32_t n = f->n_q;
        struct corral_raft_msg batch[FX_QUEUE];
        memcpy(batch, f->q, n * sizeof(batch[0]));
        f->n_q = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct corral_raft_msg *m = &batch[i];
            uint32_t from = (uint32_t)m->from, to = (uint32_t)m->to;
            if (to <= FX_NODES && f->r[to] != NULL && !f->down[to] && !f->down[from] &&
                !f->cut[from][to] && !(f->drop != NULL && f->drop(m))) {
                corral_raft_tick(f->r[to], f->now);
                corral_raft_step(f->r[to], m);
            }
            corral_raft_msg_clear(m);
            busy = true;
        }
        if (!busy)
            return;
    }
    fail_msg("cluster did not quiesce");
}

static void fx_run(struct fx *f, uint64_t ms)
{
    for (uint64_t t = 0; t < ms; t += 5) {
        f->now += 5;
        for (uint32_t id = 1; id <= FX_NODES; id++)
            if (f->r[id] != NULL && !f->down[id])
                corral_raft_tick(f->r[id], f->now);
        fx_pump(f);
    }
}

static struct corral_raft_status fx_status(struct fx *f, uint32_t id)
{
    struct corral_raft_status s;
    corral_raft_status(f->r[id], &s);
    return s;
}

/* The single live leader of the highest term, 0 if none. */
static uint32_t fx_leader(struct fx *f)
{
    uint32_t leader = 0;
    uint64_t term = 0;
    for (uint32_t id = 1; id <= FX_NODES; id++) {
        if (f->r[id] == NULL || f->down[id])
            continue;
        struct corral_raft_status s = fx_status(f, id);
        if (s.role == CORRAL_RAFT_LEADER && s.term >= term) {
            leader = id;
            term = s.term;
        }
    }
    return leader;
}

static void fx_isolate(struct fx *f, uint32_t id, bool on)
{
    for (uint32_t j = 1; j <= FX_NODES; j++) {
        f->cut[id][j] = on;
        f->cut[j][id] = on;
    }
}

/* A new cluster that has elected its leader; returns the leader. */
static uint32_t fx_start(struct fx *f, uint32_t n, void (*tweak)(struct corral_raft_config *cfg))
{
    fx_init(f, n, tweak);
    fx_run(f, 700);
    uint32_t l = fx_leader(f);
    assert_true(l != 0);
    return l;
}

static uint64_t fx_propose(struct fx *f, uint32_t id, const char *s)
{
    struct corral_rbuf *b = corral_rbuf_new(s, (uint32_t)strlen(s));
    uint64_t index = 0;
    assert_int_equal(corral_raft_propose(f->r[id], b, &index), 0);
    corral_rbuf_unref(b);
    return index;
}

/* ---- tests ---- */

static void test_single_node(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 1, NULL);
    fx_run(&f, 400);
    assert_int_equal(fx_leader(&f), 1);
    uint64_t i = fx_propose(&f, 1, "x");
    fx_pump(&f);
    assert_int_equal(fx_status(&f, 1).commit, i);
    assert_int_equal(f.applied[1], i);
    fx_free(&f);
}

static void test_election_and_replication(void **state)
{
    (void)state;
    struct fx f;
    uint32_t l = fx_start(&f, 3, NULL);
    assert_true(l != 0);
    uint32_t leaders = 0;
    for (uint32_t id = 1; id <= 3; id++)
        leaders += fx_status(&f, id).role == CORRAL_RAFT_LEADER;
    assert_int_equal(leaders, 1);
    uint64_t last = 0;
    for (int k = 0; k < 50; k++)
        last = fx_propose(&f, l, "value");
    fx_pump(&f);
    fx_run(&f, 100); /* heartbeats carry the commit index */
    for (uint32_t id = 1; id <= 3; id++) {
        assert_int_equal(fx_status(&f, id).commit, last);
        assert_int_equal(f.applied[id], last);
    }
    /* A follower cannot propose. */
    uint32_t follower = l == 1 ? 2 : 1;
    struct corral_rbuf *b = corral_rbuf_new("y", 1);
    assert_int_equal(corral_raft_propose(f.r[follower], b, NULL), CORRAL_ENOTLEADER);
    corral_rbuf_unref(b);
    fx_free(&f);
}

/* Acknowledgements of index 3 and beyond get lost. */
static bool drop_acks_from_3(const struct corral_raft_msg *m)
{
    return m->type == CORRAL_RAFT_MSG_APPEND_RESP && !m->reject && m->index >= 3;
}

/* Figure 8 of the Raft paper: a leader must not commit an entry of an
 * earlier term by counting replicas (section 5.4.2). */
static void test_figure8_no_commit_by_counting(void **state)
{
    (void)state;
    struct fx f;
    memset(&f, 0, sizeof(f));
    f.n = 5;
    struct corral_raft_conf conf = {.n_voters = 5, .voters = {1, 2, 3, 4, 5}};
    struct corral_raft_entry e[2];
    assert_int_equal(corral_raft_bootstrap(&conf, &e[0]), 0);
    /* (b): S1 and S2 hold index 2 of term 2; S5 holds index 2 of term 3;
     * S3 and S4 hold only index 1. Everyone has seen term 3. */
    struct corral_rbuf *p2 = corral_rbuf_new("term2", 5), *p3 = corral_rbuf_new("term3", 5);
    for (uint32_t id = 1; id <= 5; id++) {
        struct corral_raft_config cfg = fx_config(id);
        cfg.max_msg_entries = 1;
        cfg.election_timeout_ms = id == 1 ? 150 : 100000; /* S1 campaigns first */
        cfg.heartbeat_ms = id == 1 ? 50 : 1000;
        struct corral_raft_hard_state hs = {.term = 3, .commit = 1};
        e[1] = (struct corral_raft_entry){.term = id == 5 ? 3 : 2,
                                          .index = 2,
                                          .type = CORRAL_RAFT_ENTRY_NORMAL,
                                          .data = id == 5 ? p3 : p2};
        fx_boot(&f, id, &cfg, &hs, e, id == 3 || id == 4 ? 1 : 2);
    }
    /* (c): S1 leads term 4 (S5, with the newer log, is cut off) and gets
     * its term-2 entry at index 2 onto S3 and S4, which acknowledge it;
     * acknowledgements of its term-4 no-op at index 3 are lost. */
    f.cut[1][5] = f.cut[5][1] = true;
    f.drop = drop_acks_from_3;
    fx_run(&f, 400);
    assert_int_equal(fx_leader(&f), 1);
    assert_int_equal(fx_status(&f, 1).term, 4);
    struct corral_raft_status s1 = fx_status(&f, 1);
    uint32_t holding2 = 0;
    for (uint32_t k = 0; k < s1.n_progress; k++)
        holding2 += s1.progress[k].match >= 2;
    assert_true(holding2 >= 3);     /* S1 knows a majority holds index 2 ... */
    assert_int_equal(s1.commit, 1); /* ... and still must not commit it */
    /* Once the term-4 entry reaches a majority, both commit together. */
    f.drop = NULL;
    fx_run(&f, 200);
    assert_true(fx_status(&f, 1).commit >= 3);
    corral_rbuf_unref(e[0].data);
    corral_rbuf_unref(p2);
    corral_rbuf_unref(p3);
    fx_free(&f);
}

/* Check-quorum: a leader cut off from the majority steps down within a
 * couple of election timeouts and the majority elects another. */
static void test_isolated_leader_steps_down(void **state)
{
    (void)state;
    struct fx f;
    uint32_t old = fx_start(&f, 3, NULL);
    assert_true(old != 0);
    fx_isolate(&f, old, true);
    fx_run(&f, 700);
    assert_int_not_equal(fx_status(&f, old).role, CORRAL_RAFT_LEADER);
    uint32_t now = fx_leader(&f);
    assert_true(now != 0 && now != old);
    fx_isolate(&f, old, false);
    fx_run(&f, 300);
    assert_int_equal(fx_status(&f, old).leader, now);
    fx_free(&f);
}

/* Pre-vote: a follower partitioned away keeps failing pre-votes without
 * raising its term, so when it comes back the leader is undisturbed. */
static void test_prevote_rejoin_does_not_disrupt(void **state)
{
    (void)state;
    struct fx f;
    uint32_t l = fx_start(&f, 3, NULL);
    uint64_t term = fx_status(&f, l).term;
    uint32_t lonely = l == 3 ? 1 : 3;
    fx_isolate(&f, lonely, true);
    fx_run(&f, 3000);
    assert_int_equal(fx_status(&f, lonely).term, term);
    fx_propose(&f, l, "while away");
    fx_isolate(&f, lonely, false);
    fx_run(&f, 500);
    assert_int_equal(fx_leader(&f), l);
    assert_int_equal(fx_status(&f, l).term, term);
    assert_int_equal(fx_status(&f, lonely).commit, fx_status(&f, l).commit);
    fx_free(&f);
}

/* Without pre-vote the same rejoin deposes the leader: the test above
 * depends on pre-vote, not on luck. */
static void no_prevote(struct corral_raft_config *cfg)
{
    cfg->pre_vote = false;
    cfg->check_quorum = false;
}

static void test_without_prevote_rejoin_disrupts(void **state)
{
    (void)state;
    struct fx f;
    uint32_t l = fx_start(&f, 3, no_prevote);
    uint64_t term = fx_status(&f, l).term;
    uint32_t lonely = l == 3 ? 1 : 3;
    fx_isolate(&f, lonely, true);
    fx_run(&f, 3000);
    assert_true(fx_status(&f, lonely).term > term);
    fx_isolate(&f, lonely, false);
    fx_run(&f, 500);
    assert_true(fx_status(&f, fx_leader(&f)).term > term);
    fx_free(&f);
}

/* After a leader crash, the first follower to time out may be refused its
 * pre-vote by a peer whose lease on the dead leader runs longer (it heard
 * from the leader later). The precandidate asks again every heartbeat, so
 * a leader follows within a few heartbeats of that lease ending instead of
 * a whole election timeout later. */
static uint32_t starved_leader, starved_node;

static bool drop_leader_to_starved(const struct corral_raft_msg *m)
{
    return m->from == starved_leader && m->to == starved_node;
}

static void slow_elections(struct corral_raft_config *cfg)
{
    cfg->election_timeout_ms = 1000;
}

static void test_prevote_retried_when_lease_ends(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 3, slow_elections);
    fx_run(&f, 2500);
    uint32_t l = fx_leader(&f);
    assert_true(l != 0);
    starved_leader = l;
    starved_node = l == 1 ? 2 : 1;
    uint32_t other = 6 - l - starved_node;
    f.drop = drop_leader_to_starved; /* its last contact: 900 ms before the crash */
    fx_run(&f, 900);
    f.down[l] = true;
    fx_run(&f, 950); /* the other survivor's lease on l lasts 1000 ms more */
    assert_int_equal(fx_leader(&f), 0);
    assert_int_equal(fx_status(&f, starved_node).role, CORRAL_RAFT_PRECANDIDATE);
    assert_int_equal(fx_status(&f, other).role, CORRAL_RAFT_FOLLOWER);
    fx_run(&f, 50 + 2 * 50); /* the lease ends, and the next retry wins */
    assert_int_equal(fx_leader(&f), starved_node);
    fx_free(&f);
}

static void test_read_index(void **state)
{
    (void)state;
    struct fx f;
    uint32_t l = fx_start(&f, 3, NULL);
    uint64_t i = fx_propose(&f, l, "w");
    fx_pump(&f);
    assert_int_equal(corral_raft_read_index(f.r[l], 42), 0);
    fx_pump(&f);
    assert_int_equal(f.reads_ok[l], 1);
    assert_true(f.last_read_index[l] >= i);
    /* From a follower: forwarded to the leader. */
    uint32_t fo = l == 1 ? 2 : 1;
    assert_int_equal(corral_raft_read_index(f.r[fo], 43), 0);
    fx_pump(&f);
    assert_int_equal(f.reads_ok[fo], 1);
    assert_true(f.last_read_index[fo] >= i);
    /* An isolated leader cannot confirm its leadership: no answer, and
     * the read fails when it steps down. */
    fx_isolate(&f, l, true);
    assert_int_equal(corral_raft_read_index(f.r[l], 44), 0);
    fx_pump(&f);
    assert_int_equal(f.reads_ok[l], 1);
    fx_run(&f, 700);
    assert_int_equal(f.reads_ok[l], 1);
    assert_int_equal(f.reads_failed[l], 1);
    fx_free(&f);
}

static void test_leadership_transfer(void **state)
{
    (void)state;
    struct fx f;
    uint32_t l = fx_start(&f, 3, NULL);
    uint64_t term = fx_status(&f, l).term;
    uint32_t target = l % 3 + 1;
    fx_propose(&f, l, "before");
    assert_int_equal(corral_raft_transfer(f.r[l], target), 0);
    fx_pump(&f);
    assert_int_equal(fx_leader(&f), target);
    assert_int_equal(fx_status(&f, target).term, term + 1);
    fx_free(&f);
}

static void test_membership_learner_promote_remove(void **state)
{
    (void)state;
    struct fx f;
    uint32_t l = fx_start(&f, 3, NULL);
    for (int k = 0; k < 20; k++)
        fx_propose(&f, l, "data");
    fx_pump(&f);
    /* Node 4 joins with nothing: no configuration, so it never campaigns. */
    struct corral_raft_config cfg = fx_config(4);
    struct corral_raft_hard_state hs = {0};
    fx_boot(&f, 4, &cfg, &hs, NULL, 0);
    assert_int_equal(corral_raft_change_conf(f.r[l], CORRAL_RAFT_PROMOTE, 4, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_raft_change_conf(f.r[l], CORRAL_RAFT_ADD_LEARNER, 4, NULL), 0);
    assert_int_equal(corral_raft_change_conf(f.r[l], CORRAL_RAFT_REMOVE, 3, NULL), CORRAL_EBUSY);
    fx_run(&f, 200);
    struct corral_raft_status s4 = fx_status(&f, 4);
    assert_int_equal(s4.commit, fx_status(&f, l).commit);
    assert_true(corral_raft_conf_is_learner(&s4.conf, 4));
    assert_true(corral_raft_conf_is_voter(&s4.conf, 1)); /* from the bootstrap entry */
    assert_int_equal(corral_raft_change_conf(f.r[l], CORRAL_RAFT_PROMOTE, 4, NULL), 0);
    fx_run(&f, 200);
    s4 = fx_status(&f, 4);
    assert_true(corral_raft_conf_is_voter(&s4.conf, 4));
    /* Remove the leader itself: it steps down once that commits. */
    assert_int_equal(corral_raft_change_conf(f.r[l], CORRAL_RAFT_REMOVE, l, NULL), 0);
    fx_run(&f, 1000);
    uint32_t nl = fx_leader(&f);
    assert_true(nl != 0 && nl != l);
    struct corral_raft_status sn = fx_status(&f, nl);
    assert_false(corral_raft_conf_is_voter(&sn.conf, l));
    assert_int_equal(sn.conf.n_voters, 3);
    fx_free(&f);
}

static void small_chunks(struct corral_raft_config *cfg)
{
    cfg->snapshot_chunk_bytes = 64;
}

/* A follower that missed compacted entries gets the snapshot in chunks. */
static void test_snapshot_chunks(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 3, small_chunks);
    fx_run(&f, 700);
    uint32_t l = fx_leader(&f);
    uint32_t lag = l == 3 ? 1 : 3;
    fx_isolate(&f, lag, true);
    uint64_t last = 0;
    for (int k = 0; k < 100; k++)
        last = fx_propose(&f, l, "entry");
    fx_pump(&f);
    uint8_t state_bytes[1000];
    for (size_t k = 0; k < sizeof(state_bytes); k++)
        state_bytes[k] = (uint8_t)k;
    struct corral_rbuf *data = corral_rbuf_new(state_bytes, sizeof(state_bytes));
    struct corral_raft_snapshot_meta meta;
    assert_int_equal(corral_raft_compact(f.r[l], last, data, 5, &meta), 0);
    assert_int_equal(meta.index, last);
    assert_int_equal(corral_raft_compact(f.r[l], last, data, 5, &meta), CORRAL_ECOMPACTED);
    corral_rbuf_unref(data);
    assert_null(corral_raft_entry_at(f.r[l], last - 10));
    fx_isolate(&f, lag, false);
    fx_run(&f, 600);
    assert_true(f.sent_by_type[CORRAL_RAFT_MSG_SNAPSHOT] >= sizeof(state_bytes) / 64);
    assert_int_equal(fx_status(&f, lag).snapshot_index, last);
    assert_int_equal(f.applied[lag], last);
    fx_free(&f);
}

/* Fast backtracking: a follower with a long divergent tail converges in a
 * few round trips, not one per entry. */
static void test_conflict_backtracking(void **state)
{
    (void)state;
    struct fx f;
    uint32_t old = fx_start(&f, 3, NULL);
    fx_isolate(&f, old, true);
    for (int k = 0; k < 200; k++)
        fx_propose(&f, old, "doomed"); /* never committed */
    fx_pump(&f);
    fx_run(&f, 700);
    uint32_t l = fx_leader(&f);
    assert_true(l != 0 && l != old);
    for (int k = 0; k < 10; k++)
        fx_propose(&f, l, "kept");
    fx_pump(&f);
    uint64_t appends_before = f.sent_by_type[CORRAL_RAFT_MSG_APPEND_RESP];
    fx_isolate(&f, old, false);
    fx_run(&f, 300);
    assert_int_equal(fx_status(&f, old).commit, fx_status(&f, l).commit);
    assert_int_equal(fx_status(&f, old).last_index, fx_status(&f, l).last_index);
    assert_true(f.sent_by_type[CORRAL_RAFT_MSG_APPEND_RESP] - appends_before < 40);
    fx_free(&f);
}

static void test_hostile_messages_dropped(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 3, NULL);
    struct corral_raft_entry e = {.term = 5, .index = 9, .type = 0};
    struct corral_raft_msg bad[] = {
        {.type = 0, .from = 2, .to = 1, .term = 1},
        {.type = CORRAL_RAFT_MSG_APPEND, .from = 2, .to = 9, .term = 1},
        {.type = CORRAL_RAFT_MSG_APPEND, .from = 1, .to = 1, .term = 1},
        {.type = CORRAL_RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 0},
        {.type = CORRAL_RAFT_MSG_APPEND, .from = 2, .to = 1, .term = 2, .log_term = 3},
        /* entries not following index */
        {.type = CORRAL_RAFT_MSG_APPEND,
         .from = 2,
         .to = 1,
         .term = 5,
         .index = 1,
         .n_entries = 1,
         .entries = &e},
        {.type = CORRAL_RAFT_MSG_HEARTBEAT,
         .from = 2,
         .to = 1,
         .term = 5,
         .n_entries = 1,
         .entries = &e},
        {.type = CORRAL_RAFT_MSG_SNAPSHOT,
         .from = 2,
         .to = 1,
         .term = 5,
         .size = (uint64_t)CORRAL_RAFT_SNAPSHOT_BYTES_MAX + 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(corral_raft_step(f.r[1], &bad[i]), CORRAL_EINVAL);
    assert_int_equal(fx_status(&f, 1).term, 1);
    fx_free(&f);
}

/* One whole-snapshot chunk from leader 1 (term 2) to node 2. */
static void snap_msg(struct corral_raft_msg *m, uint64_t index, struct corral_rbuf *data)
{
    *m = (struct corral_raft_msg){.type = CORRAL_RAFT_MSG_SNAPSHOT,
                                  .from = 1,
                                  .to = 2,
                                  .term = 2,
                                  .size = data->len,
                                  .offset = 0,
                                  .flags = CORRAL_RAFT_FLAG_DONE,
                                  .chunk = data};
    m->snapshot.index = index;
    m->snapshot.term = 2;
    m->snapshot.conf.n_voters = 3;
    for (uint32_t i = 0; i < 3; i++)
        m->snapshot.conf.voters[i] = i + 1;
}

/* A second snapshot installed while the batch with the first one is
 * persisting (an asynchronous persist: the simulator's, seed
 * 772833473390, where it spun for ever): the first batch's advance must
 * not drop the second, which comes in the next batch and moves applied
 * to its index. */
static void test_snapshot_installed_while_one_persists(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 3, NULL);
    struct corral_raft *r = f.r[2];
    struct corral_rbuf *a = corral_rbuf_new("state-a", 7), *b = corral_rbuf_new("state-bb", 8);
    struct corral_raft_msg m;
    snap_msg(&m, 52, a);
    assert_int_equal(corral_raft_step(r, &m), 0);
    struct corral_raft_ready rd1, rd2;
    corral_raft_ready(r, &rd1);
    assert_true(rd1.has_snapshot);
    assert_int_equal(rd1.snapshot.index, 52);
    snap_msg(&m, 105, b); /* arrives before rd1 is durable */
    assert_int_equal(corral_raft_step(r, &m), 0);
    corral_raft_advance(r, &rd1);
    corral_raft_ready_free(&rd1);
    assert_true(corral_raft_has_ready(r));
    corral_raft_ready(r, &rd2);
    assert_true(rd2.has_snapshot);
    assert_int_equal(rd2.snapshot.index, 105);
    corral_raft_advance(r, &rd2);
    corral_raft_ready_free(&rd2);
    struct corral_raft_status st;
    corral_raft_status(r, &st);
    assert_int_equal(st.applied, 105);
    assert_int_equal(st.commit, 105);
    assert_false(corral_raft_has_ready(r));
    corral_rbuf_unref(a);
    corral_rbuf_unref(b);
    fx_free(&f);
}

/* Node 1 leads with a small proposal bound; 2 and 3 only vote. */
static void small_bound(struct corral_raft_config *cfg)
{
    cfg->max_uncommitted = 5;
    if (cfg->id != 1) {
        cfg->election_timeout_ms = 100000;
        cfg->heartbeat_ms = 1000;
    }
}

static void test_bounded_uncommitted(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 3, small_bound);
    fx_run(&f, 400);
    assert_int_equal(fx_leader(&f), 1);
    fx_isolate(&f, 1, true);
    struct corral_rbuf *b = corral_rbuf_new("z", 1);
    int rv = 0, k = 0;
    for (; k < 10 && rv == 0; k++)
        rv = corral_raft_propose(f.r[1], b, NULL);
    assert_int_equal(rv, CORRAL_EFULL);
    assert_true(k <= 6);
    corral_rbuf_unref(b);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_snapshot_installed_while_one_persists),
        cmocka_unit_test(test_election_and_replication),
        cmocka_unit_test(test_figure8_no_commit_by_counting),
        cmocka_unit_test(test_isolated_leader_steps_down),
        cmocka_unit_test(test_prevote_rejoin_does_not_disrupt),
        cmocka_unit_test(test_prevote_retried_when_lease_ends),
        cmocka_unit_test(test_without_prevote_rejoin_disrupts),
        cmocka_unit_test(test_read_index),
        cmocka_unit_test(test_leadership_transfer),
        cmocka_unit_test(test_membership_learner_promote_remove),
        cmocka_unit_test(test_snapshot_chunks),
        cmocka_unit_test(test_conflict_backtracking),
        cmocka_unit_test(test_hostile_messages_dropped),
        cmocka_unit_test(test_bounded_uncommitted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
