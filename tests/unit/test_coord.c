/* Unit tests for src/core/coord.c over the real state machine: leadership
 * starts and ends a term of office, heartbeats (K1: leases only while
 * leading, to active or draining members; dead ones recorded but refused),
 * the lease index (K2: proposals and the log at office), the view kinds
 * (K3: unchanged only when no command touched the member's rows since the
 * index it holds, none when it is ahead), member view_index bookkeeping in
 * the state (rows before and after a command, resource deletion, restore),
 * the evaluation pacing and I6, and the view builder's copy sources. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/coord.h"
#include "corral.h"

struct world {
    struct corral_state *st;
    struct corral_coord *c;
    uint64_t index;
};

static void apply(struct world *w, const struct corral_state_cmd *c, uint8_t want)
{
    struct corral_rbuf *b = corral_state_cmd_encode(c);
    assert_non_null(b);
    struct corral_state_result r;
    assert_int_equal(corral_state_apply(w->st, ++w->index, b, &r), 0);
    corral_rbuf_unref(b);
    assert_int_equal(r.status, want);
}

static void add_member(struct world *w, const char *name)
{
    struct corral_state_cmd c = {.type = CORRAL_STATE_MEMBER_PUT,
                                 .name = name,
                                 .name_len = (uint16_t)strlen(name),
                                 .role = CORRAL_MEMBER_WORKER,
                                 .addr = "127.0.0.1:1",
                                 .addr_len = 11,
                                 .zone = "",
                                 .weight = 1};
    apply(w, &c, CORRAL_STATE_OK);
}

static void add_resource(struct world *w, const char *name, uint32_t p, uint8_t r)
{
    struct corral_state_cmd c = {.type = CORRAL_STATE_RESOURCE_PUT,
                                 .name = name,
                                 .name_len = (uint16_t)strlen(name),
                                 .partitions = p,
                                 .replicas = r};
    apply(w, &c, CORRAL_STATE_OK);
}

static void ops(struct world *w, uint32_t res, const struct corral_partition_opv *o, uint32_t n,
                uint8_t want)
{
    struct corral_state_cmd c = {
        .type = CORRAL_STATE_PARTITION_OPS, .id = res, .n_ops = n, .ops = o};
    apply(w, &c, want);
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof(*w));
    w->st = corral_state_new();
    assert_non_null(w->st);
    struct corral_coord_config cfg;
    corral_coord_config_default(&cfg);
    assert_int_equal(corral_coord_new(&cfg, &w->c), 0);
}

static void world_close(struct world *w)
{
    corral_coord_free(w->c);
    corral_state_free(w->st);
}

static struct corral_raft_status leader_status(uint64_t last, uint64_t commit, bool quorum)
{
    struct corral_raft_status s;
    memset(&s, 0, sizeof(s));
    s.role = CORRAL_RAFT_LEADER;
    s.last_index = last;
    s.commit = commit;
    s.quorum_in_contact = quorum;
    return s;
}

static void test_config(void **state)
{
    (void)state;
    struct corral_coord_config c;
    corral_coord_config_default(&c);
    assert_int_equal(corral_coord_config_check(&c), 0);
    c.eval_interval_ms = 0;
    assert_int_equal(corral_coord_config_check(&c), CORRAL_EINVAL);
    corral_coord_config_default(&c);
    c.liveness.lease_ms = 2 * c.liveness.heartbeat_ms; /* not more than two heartbeats */
    assert_int_equal(corral_coord_config_check(&c), CORRAL_EINVAL);
    struct corral_coord *co = NULL;
    assert_int_equal(corral_coord_new(&c, &co), CORRAL_EINVAL);
    assert_null(co);
}

/* K1: no lease unless leading; a term change starts a fresh office. */
static void test_leadership_and_k1(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    add_member(&w, "a");
    struct corral_coord_answer ans;
    corral_coord_heartbeat(w.c, w.st, true, 1, 0, 1000, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_NOT_LEADER);
    assert_int_equal(ans.lease_ms, 0);
    assert_int_equal(corral_coord_leadership(w.c, true, 2, 7, 1000), 0);
    assert_true(corral_coord_leading(w.c));
    assert_non_null(corral_coord_liveness(w.c));
    /* The core no longer leads (a step down not yet seen as a new term). */
    corral_coord_heartbeat(w.c, w.st, false, 1, 0, 1001, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_NOT_LEADER);
    corral_coord_heartbeat(w.c, w.st, true, 1, 0, 1002, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_OK);
    assert_int_equal(ans.lease_ms, 1000);
    /* L4: recorded before the answer. */
    assert_int_equal(corral_liveness_age_ms(corral_coord_liveness(w.c), 1, 1002), 0);
    corral_coord_heartbeat(w.c, w.st, true, 99, 0, 1003, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_UNKNOWN);
    /* A new term of office forgets the old answers (L2). */
    assert_int_equal(corral_coord_leadership(w.c, true, 3, 7, 5000), 0);
    assert_int_equal(corral_liveness_age_ms(corral_coord_liveness(w.c), 1, 5000), UINT64_MAX);
    assert_int_equal(corral_coord_leadership(w.c, false, 3, 7, 5001), 0);
    assert_false(corral_coord_leading(w.c));
    assert_null(corral_coord_liveness(w.c));
    assert_null(corral_coord_controller(w.c));
    world_close(&w);
}

/* Dead members are heard but refused; left members too; draining ones
 * are leased. */
static void test_inactive(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    add_member(&w, "a");
    add_member(&w, "b");
    add_member(&w, "c");
    struct corral_state_cmd dead = {
        .type = CORRAL_STATE_MEMBER_STATUS, .id = 1, .status = CORRAL_MEMBER_DEAD};
    apply(&w, &dead, CORRAL_STATE_OK);
    struct corral_state_cmd left = {
        .type = CORRAL_STATE_MEMBER_STATUS, .id = 2, .status = CORRAL_MEMBER_LEFT};
    apply(&w, &left, CORRAL_STATE_OK);
    struct corral_state_cmd drain = {
        .type = CORRAL_STATE_MEMBER_STATUS, .id = 3, .status = CORRAL_MEMBER_DRAINING};
    apply(&w, &drain, CORRAL_STATE_OK);
    assert_int_equal(corral_coord_leadership(w.c, true, 2, w.index, 100), 0);
    struct corral_coord_answer ans;
    corral_coord_heartbeat(w.c, w.st, true, 1, 0, 200, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_INACTIVE);
    assert_int_equal(ans.lease_ms, 0);
    assert_int_equal(corral_liveness_age_ms(corral_coord_liveness(w.c), 1, 200), 0);
    corral_coord_heartbeat(w.c, w.st, true, 2, 0, 200, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_INACTIVE);
    assert_int_equal(corral_liveness_age_ms(corral_coord_liveness(w.c), 2, 200), UINT64_MAX);
    corral_coord_heartbeat(w.c, w.st, true, 3, 0, 200, &ans);
    assert_int_equal(ans.beat, CORRAL_COORD_BEAT_OK);
    world_close(&w);
}

/* K2: per member, the log at office until applied, the member's rows
 * proposed and applied; others' rows do not count. */
static void test_lease_index(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    add_member(&w, "a"); /* 1 */
    add_member(&w, "b"); /* 2 */
    add_member(&w, "c"); /* 3 */
    add_resource(&w, "r", 2, 2);
    uint64_t base = w.index;
    assert_int_equal(corral_coord_leadership(w.c, true, 2, base + 3, 100), 0);
    struct corral_coord_answer ans;
    corral_coord_heartbeat(w.c, w.st, true, 1, 0, 101, &ans);
    assert_int_equal(ans.lease_index, base + 3); /* the log at office, not applied yet */
    /* Proposed: a fresh partition 0 for a and b (names them). */
    struct corral_partition_opv fresh[] = {
        {0, CORRAL_OP_ADD_IN_SYNC, 1, 0},
        {0, CORRAL_OP_ADD_IN_SYNC, 2, 0},
        {0, CORRAL_OP_GRANT, 1, 0},
    };
    struct corral_state_cmd c0 = {
        .type = CORRAL_STATE_PARTITION_OPS, .id = 1, .n_ops = 3, .ops = fresh};
    assert_int_equal(corral_coord_proposed(w.c, w.st, &c0, base + 4), 0);
    /* The earlier-term entries apply (a no-op each here). */
    for (int i = 0; i < 3; i++)
        assert_int_equal(corral_state_skip(w.st, ++w.index), 0);
    corral_coord_heartbeat(w.c, w.st, true, 1, 0, 102, &ans);
    assert_int_equal(ans.lease_index, base + 4);
    corral_coord_heartbeat(w.c, w.st, true, 3, 0, 102, &ans);
    assert_true(ans.lease_index < base + 4); /* c's rows: untouched */
    ops(&w, 1, fresh, 3, CORRAL_STATE_OK);   /* it applies at base + 4 */
    assert_int_equal(w.index, base + 4);
    /* A later proposal on partition 0 names only a, but b is in the row. */
    struct corral_partition_opv rel[] = {{0, CORRAL_OP_RELEASE, 1, 1}};
    struct corral_state_cmd c1 = {
        .type = CORRAL_STATE_PARTITION_OPS, .id = 1, .n_ops = 1, .ops = rel};
    assert_int_equal(corral_coord_proposed(w.c, w.st, &c1, base + 9), 0);
    corral_coord_heartbeat(w.c, w.st, true, 2, 0, 103, &ans);
    assert_int_equal(ans.lease_index, base + 9);
    corral_coord_heartbeat(w.c, w.st, true, 3, 0, 103, &ans);
    assert_true(ans.lease_index < base + 4);
    /* Many members proposed over: the table prunes applied entries and
     * grows; every member keeps its index. */
    for (uint32_t i = 0; i < 300; i++) {
        char name[8];
        snprintf(name, sizeof(name), "m%u", i);
        add_member(&w, name);
    }
    for (uint32_t id = 4; id < 304; id++) {
        struct corral_partition_opv add[] = {{1, CORRAL_OP_ADD_COPYING, id, 0}};
        struct corral_state_cmd c2 = {
            .type = CORRAL_STATE_PARTITION_OPS, .id = 1, .n_ops = 1, .ops = add};
        assert_int_equal(corral_coord_proposed(w.c, w.st, &c2, w.index + id), 0);
    }
    for (uint32_t id = 4; id < 304; id += 37) {
        corral_coord_heartbeat(w.c, w.st, true, id, 0, 104, &ans);
        assert_int_equal(ans.lease_index, w.index + id);
    }
    /* b's proposal at base + 9 is below the applied index now (in this
     * test other commands took those indexes): pruned, its view_index
     * speaks for it. */
    corral_coord_heartbeat(w.c, w.st, true, 2, 0, 104, &ans);
    assert_int_equal(ans.lease_index, corral_state_member_by_id(w.st, 2)->view_index);
    /* A new term of office starts from nothing but its log. */
    assert_int_equal(corral_coord_leadership(w.c, true, 3, w.index, 200), 0);
    corral_coord_heartbeat(w.c, w.st, true, 2, 0, 201, &ans);
    assert_int_equal(ans.lease_index, corral_state_member_by_id(w.st, 2)->view_index);
    world_close(&w);
}

/* K3 and the state's view_index: touched rows, before and after. */
static void test_view_kinds(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    add_member(&w, "a"); /* 1 */
    add_member(&w, "b"); /* 2 */
    add_member(&w, "c"); /* 3 */
    add_resource(&w, "r", 2, 2);
    struct corral_partition_opv fresh[] = {
        {0, CORRAL_OP_ADD_IN_SYNC, 1, 0},
        {0, CORRAL_OP_ADD_IN_SYNC, 2, 0},
        {0, CORRAL_OP_GRANT, 1, 0},
    };
    ops(&w, 1, fresh, 3, CORRAL_STATE_OK);
    uint64_t at = w.index;
    assert_int_equal(corral_state_member_by_id(w.st, 1)->view_index, at);
    assert_int_equal(corral_state_member_by_id(w.st, 2)->view_index, at);
    assert_true(corral_state_member_by_id(w.st, 3)->view_index < at);
    assert_int_equal(corral_coord_view_kind(w.st, 1, 0), CORRAL_COORD_VIEW_FULL);
    assert_int_equal(corral_coord_view_kind(w.st, 1, at - 1), CORRAL_COORD_VIEW_FULL);
    assert_int_equal(corral_coord_view_kind(w.st, 1, at), CORRAL_COORD_VIEW_UNCHANGED);
    assert_int_equal(corral_coord_view_kind(w.st, 1, at + 1), CORRAL_COORD_VIEW_NONE);
    /* Another partition, other members: a's view is unchanged. */
    struct corral_partition_opv other[] = {{1, CORRAL_OP_ADD_IN_SYNC, 3, 0}};
    ops(&w, 1, other, 1, CORRAL_STATE_OK);
    assert_int_equal(corral_coord_view_kind(w.st, 1, at), CORRAL_COORD_VIEW_UNCHANGED);
    assert_int_equal(corral_coord_view_kind(w.st, 3, at), CORRAL_COORD_VIEW_FULL);
    /* A release touches every member of the row, the non-primary too. */
    struct corral_partition_opv rel[] = {{0, CORRAL_OP_RELEASE, 1, 1}};
    ops(&w, 1, rel, 1, CORRAL_STATE_OK);
    assert_int_equal(corral_coord_view_kind(w.st, 2, at), CORRAL_COORD_VIEW_FULL);
    /* A drop touches the dropped member (its row before the command). */
    uint64_t now = w.index;
    struct corral_partition_opv drop[] = {{1, CORRAL_OP_DROP, 3, 0}};
    ops(&w, 1, drop, 1, CORRAL_STATE_OK);
    assert_int_equal(corral_coord_view_kind(w.st, 3, now), CORRAL_COORD_VIEW_FULL);
    /* A refused command touches nothing. */
    now = w.index;
    struct corral_partition_opv bad[] = {{0, CORRAL_OP_GRANT, 2, 1}}; /* a primary is set */
    ops(&w, 1, bad, 1, CORRAL_STATE_CONFLICT);
    assert_int_equal(corral_coord_view_kind(w.st, 2, now), CORRAL_COORD_VIEW_UNCHANGED);
    /* Deleting the resource touches its members. */
    struct corral_state_cmd del = {.type = CORRAL_STATE_RESOURCE_DELETE, .id = 1};
    apply(&w, &del, CORRAL_STATE_OK);
    assert_int_equal(corral_coord_view_kind(w.st, 1, now), CORRAL_COORD_VIEW_FULL);
    assert_int_equal(corral_coord_view(w.st, 1, NULL, 0), 0);
    /* Restore sets every view_index to the snapshot's index. */
    struct corral_rbuf *snap = corral_state_snapshot(w.st);
    assert_non_null(snap);
    struct corral_state *st2 = corral_state_new();
    assert_int_equal(corral_state_restore(st2, snap), 0);
    corral_rbuf_unref(snap);
    for (uint32_t id = 1; id <= 3; id++)
        assert_int_equal(corral_state_member_by_id(st2, id)->view_index, w.index);
    assert_true(corral_state_check(st2));
    corral_state_free(st2);
    world_close(&w);
}

/* The view: roles, states, copy sources. */
static void test_view_builder(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    add_member(&w, "a");
    add_member(&w, "b");
    add_member(&w, "c");
    add_resource(&w, "r", 3, 3);
    struct corral_partition_opv o[] = {
        {0, CORRAL_OP_ADD_IN_SYNC, 1, 0}, {0, CORRAL_OP_ADD_IN_SYNC, 2, 0},
        {0, CORRAL_OP_GRANT, 1, 0},       {2, CORRAL_OP_ADD_IN_SYNC, 2, 0},
        {2, CORRAL_OP_ADD_IN_SYNC, 3, 0},
    };
    ops(&w, 1, o, 5, CORRAL_STATE_OK);
    struct corral_partition_opv copy[] = {{0, CORRAL_OP_ADD_COPYING, 3, 1},
                                          {0, CORRAL_OP_RELEASE, 1, 1}};
    ops(&w, 1, copy, 2, CORRAL_STATE_OK);
    struct corral_agent_entry e[4];
    assert_int_equal(corral_coord_view(w.st, 1, e, 4), 1);
    assert_int_equal(e[0].role, CORRAL_AGENT_PRIMARY);
    assert_int_equal(e[0].state, CORRAL_AGENT_RELEASING);
    assert_int_equal(e[0].epoch, 1);
    assert_int_equal(e[0].copy_from, CORRAL_AGENT_NONE);
    assert_int_equal(corral_coord_view(w.st, 3, e, 4), 2);
    assert_int_equal(e[0].partition, 0);
    assert_int_equal(e[0].state, CORRAL_AGENT_COPYING);
    assert_int_equal(e[0].copy_from, 1); /* the primary */
    assert_int_equal(e[1].partition, 2);
    assert_int_equal(e[1].copy_from, 2); /* no primary: the first other in-sync replica */
    /* cap smaller than the view: the count all the same, cap written. */
    memset(e, 0xff, sizeof(e));
    assert_int_equal(corral_coord_view(w.st, 2, e, 1), 2);
    assert_int_equal(e[0].partition, 0);
    assert_int_equal(e[1].resource, UINT32_MAX);
    world_close(&w);
}

/* Evaluation: I6 (leader, quorum), pacing, the uncommitted bound. */
static void test_evaluate(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    add_member(&w, "a");
    add_resource(&w, "r", 4, 1);
    struct corral_controller_output out;
    bool ran = true;
    struct corral_raft_status s = leader_status(w.index, w.index, true);
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 10, &out, &ran), 0);
    assert_false(ran); /* not leading yet */
    assert_int_equal(corral_coord_leadership(w.c, true, 2, w.index, 10), 0);
    corral_coord_heartbeat(w.c, w.st, true, 1, 0, 10, &(struct corral_coord_answer){0});
    s.quorum_in_contact = false;
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 20, &out, &ran), 0);
    assert_false(ran);
    s.quorum_in_contact = true;
    s.last_index = w.index + 33; /* past uncommitted_max (32) */
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 20, &out, &ran), 0);
    assert_false(ran);
    s.last_index = w.index;
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 20, &out, &ran), 0);
    assert_true(ran);
    assert_true(out.n_cmds > 0); /* fresh partitions go in sync at once */
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 25, &out, &ran), 0);
    assert_false(ran); /* within eval_interval_ms (10) */
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 30, &out, &ran), 0);
    assert_true(ran);
    assert_int_equal(out.n_cmds, 0); /* in flight (C6) */
    corral_coord_propose_failed(w.c);
    assert_int_equal(corral_coord_evaluate(w.c, w.st, &s, 40, &out, &ran), 0);
    assert_true(out.n_cmds > 0); /* forgotten: proposed again */
    world_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),     cmocka_unit_test(test_leadership_and_k1),
        cmocka_unit_test(test_inactive),   cmocka_unit_test(test_lease_index),
        cmocka_unit_test(test_view_kinds), cmocka_unit_test(test_view_builder),
        cmocka_unit_test(test_evaluate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
