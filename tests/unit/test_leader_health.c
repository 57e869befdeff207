/* Unit tests for src/core/leader_health.c: each signal over its limit
 * (H1), the fsync signal kept between fsyncs, hysteresis (H2), the exact
 * instant a transfer is due and the cool-down (H3), the choice of target
 * and its refusals (H4), leadership lost (H5), the reason's order (H6),
 * the tick the node and the simulator share, and the operator's checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/leader_health.h"

#define T0 1000000u
#define CONTACT 300u

static const struct corral_leader_health_config cfg = {
    .max_fsync_ms = 100,
    .max_loop_lag_ms = 200,
    .max_apply_backlog = 1000,
    .degraded_ms = 3000,
    .recover_ms = 1000,
    .cooldown_ms = 60000,
    .contact_ms = CONTACT,
};

/* A leader (node 1) of voters 1, 2, 3 at now, all heard just now, with
 * these match indexes. */
static struct corral_raft_status status3(uint64_t now, uint64_t m2, uint64_t m3)
{
    struct corral_raft_status st;
    memset(&st, 0, sizeof(st));
    st.id = 1;
    st.role = CORRAL_RAFT_LEADER;
    st.leader = 1;
    st.conf.n_voters = 3;
    st.n_progress = 3;
    uint64_t match[] = {100, m2, m3};
    for (uint32_t i = 0; i < 3; i++) {
        st.conf.voters[i] = i + 1;
        st.progress[i].id = i + 1;
        st.progress[i].match = match[i];
        st.progress[i].last_contact_ms = now;
    }
    return st;
}

static struct corral_leader_health_sample healthy(void)
{
    return (struct corral_leader_health_sample){.leading = true};
}

static struct corral_leader_health_sample slow_fsync(uint64_t ms)
{
    return (struct corral_leader_health_sample){
        .leading = true, .fsync_seen = true, .fsync_ms = ms};
}

static void step(struct corral_leader_health *h, uint64_t now, struct corral_leader_health_sample s,
                 struct corral_leader_health_decision *d)
{
    struct corral_raft_status st = status3(now, 90, 100);
    corral_leader_health_step(h, now, &s, &st, d);
}

static void test_healthy_never_degrades(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    for (uint64_t t = 0; t < 10000; t += 10) {
        struct corral_leader_health_sample s = {.leading = true,
                                                .loop_lag_ms = 200,
                                                .fsync_seen = true,
                                                .fsync_ms = 100,
                                                .apply_backlog = 1000};
        step(&h, T0 + t, s, &d); /* every signal at its limit: not over (H1) */
        assert_false(d.degraded);
        assert_false(d.transfer);
    }
}

/* H1, H3: a slow fsync on every batch; due exactly degraded_ms after the
 * first bad sample, to the most caught-up voter (3, match 100 over 90). */
static void test_fsync_transfer_at_bound(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    step(&h, T0, slow_fsync(150), &d);
    assert_true(d.started);
    assert_true(d.degraded);
    assert_int_equal(d.reason, CORRAL_LH_FSYNC);
    assert_int_equal(d.value, 150);
    assert_int_equal(d.limit, 100);
    for (uint64_t t = 10; t < 3000; t += 10) {
        /* H1: samples without an fsync keep the signal bad */
        step(&h, T0 + t, t % 200 == 0 ? slow_fsync(150) : healthy(), &d);
        assert_true(d.degraded);
        assert_false(d.started);
        assert_false(d.transfer);
    }
    step(&h, T0 + 3000, healthy(), &d);
    assert_true(d.transfer);
    assert_int_equal(d.target, 3);
    assert_int_equal(d.reason, CORRAL_LH_FSYNC);
    assert_int_equal(d.degraded_for_ms, 3000);
    /* H3: the cool-down: no second decision, still degraded. */
    for (uint64_t t = 3010; t < 3000 + cfg.cooldown_ms; t += 500) {
        step(&h, T0 + t, slow_fsync(150), &d);
        assert_true(d.degraded);
        assert_false(d.transfer);
    }
    step(&h, T0 + 3000 + cfg.cooldown_ms, slow_fsync(150), &d);
    assert_true(d.transfer);
}

/* H1: a fast fsync clears the fsync signal; H2: recovery takes recover_ms. */
static void test_hysteresis(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    step(&h, T0, slow_fsync(500), &d);
    assert_true(d.started);
    step(&h, T0 + 10, slow_fsync(5), &d);
    assert_true(d.degraded);
    step(&h, T0 + 1000, healthy(), &d); /* exactly recover_ms: still bad within it */
    assert_true(d.degraded);
    assert_false(d.recovered);
    step(&h, T0 + 1001, healthy(), &d);
    assert_false(d.degraded);
    assert_true(d.recovered);
    assert_int_equal(d.reason, CORRAL_LH_FSYNC);
    assert_int_equal(d.degraded_for_ms, 1001);
    /* A slow batch every 900 ms (within recover_ms) between fast ones:
     * one period, which reaches the bound with the slow batch at 3600 ms
     * (test_flapping_below_bound: one every 1100 ms never does). */
    step(&h, T0 + 5000, slow_fsync(500), &d);
    assert_true(d.started);
    uint64_t t = 5000;
    for (int i = 0; i < 4; i++) {
        t += 900;
        step(&h, T0 + t - 890, slow_fsync(5), &d);
        assert_true(d.degraded);
        assert_false(d.transfer);
        step(&h, T0 + t, slow_fsync(500), &d);
        assert_true(d.degraded);
        assert_false(d.started);
    }
    assert_true(d.transfer);
    assert_int_equal(d.degraded_for_ms, 3600);
}

static void test_flapping_below_bound(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    int periods = 0;
    for (uint64_t t = 0; t < 20000; t += 10) {
        bool bad = t % 1100 == 0;
        struct corral_leader_health_sample s = {.leading = true, .loop_lag_ms = bad ? 300 : 0};
        step(&h, T0 + t, s, &d);
        periods += d.started;
        assert_false(d.transfer);
    }
    assert_true(periods > 10);
}

/* H6: fsync before backlog before loop lag, whatever came first. */
static void test_reason_order(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    struct corral_leader_health_sample s = {.leading = true, .loop_lag_ms = 400};
    step(&h, T0, s, &d);
    assert_int_equal(d.reason, CORRAL_LH_LOOP_LAG);
    assert_int_equal(d.value, 400);
    assert_int_equal(d.limit, 200);
    s.apply_backlog = 5000;
    step(&h, T0 + 10, s, &d);
    assert_int_equal(d.reason, CORRAL_LH_APPLY_BACKLOG);
    s.fsync_seen = true;
    s.fsync_ms = 250;
    step(&h, T0 + 20, s, &d);
    assert_int_equal(d.reason, CORRAL_LH_FSYNC);
    /* The fsync gets fast; backlog remains the cause for recover_ms. */
    s.fsync_ms = 1;
    step(&h, T0 + 30, s, &d);
    assert_int_equal(d.reason, CORRAL_LH_FSYNC); /* bad 10 ms ago */
    step(&h, T0 + 1021, s, &d);
    assert_int_equal(d.reason, CORRAL_LH_APPLY_BACKLOG);
    assert_string_equal(corral_leader_health_reason_name(CORRAL_LH_APPLY_BACKLOG), "apply_backlog");
    assert_string_equal(corral_leader_health_reason_name(CORRAL_LH_OPERATOR), "operator");
}

/* H5: losing leadership ends the period; the cool-down survives. */
static void test_not_leading_resets(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    for (uint64_t t = 0; t <= 3000; t += 100)
        step(&h, T0 + t, slow_fsync(200), &d);
    assert_true(d.transfer);
    struct corral_leader_health_sample follower = {.leading = false, .loop_lag_ms = 5000};
    step(&h, T0 + 3100, follower, &d);
    assert_false(d.degraded);
    assert_false(d.recovered);
    /* Leader again, still slow: a new period, but no transfer in the
     * cool-down; the fsync signal was forgotten (a fast one not needed). */
    step(&h, T0 + 4000, healthy(), &d);
    assert_false(d.degraded);
    for (uint64_t t = 4100; t < 3000 + cfg.cooldown_ms; t += 100) {
        step(&h, T0 + t, slow_fsync(200), &d);
        assert_true(d.degraded);
        assert_false(d.transfer);
    }
    step(&h, T0 + 3000 + cfg.cooldown_ms, slow_fsync(200), &d);
    assert_true(d.transfer);
}

static void test_disabled(void **state)
{
    (void)state;
    struct corral_leader_health_config c = cfg;
    c.degraded_ms = 0;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &c);
    struct corral_leader_health_decision d;
    for (uint64_t t = 0; t < 100000; t += 100) {
        step(&h, T0 + t, slow_fsync(900), &d);
        assert_true(d.degraded); /* watched and reported all the same */
        assert_false(d.transfer);
        assert_false(d.no_target);
    }
    /* A limit of 0 is not watched. */
    c = cfg;
    c.max_loop_lag_ms = 0;
    corral_leader_health_init(&h, &c);
    struct corral_leader_health_sample s = {.leading = true, .loop_lag_ms = 100000};
    step(&h, T0, s, &d);
    assert_false(d.degraded);
}

/* H4: heard within contact_ms, highest match, lowest id on a tie; a
 * learner never; none: no_target said once. */
static void test_pick(void **state)
{
    (void)state;
    uint64_t now = T0;
    struct corral_raft_status st = status3(now, 100, 100);
    assert_int_equal(corral_leader_health_pick(&st, now, CONTACT), 2);
    st.progress[2].match = 101;
    assert_int_equal(corral_leader_health_pick(&st, now, CONTACT), 3);
    st.progress[2].last_contact_ms = now - CONTACT - 1;
    assert_int_equal(corral_leader_health_pick(&st, now, CONTACT), 2);
    st.progress[2].last_contact_ms = now - CONTACT;
    assert_int_equal(corral_leader_health_pick(&st, now, CONTACT), 3);
    /* A learner with the best match is no target. */
    st.n_progress = 4;
    st.progress[3].id = 9;
    st.progress[3].match = 500;
    st.progress[3].last_contact_ms = now;
    st.progress[3].learner = true;
    assert_int_equal(corral_leader_health_pick(&st, now, CONTACT), 3);
    st.progress[1].last_contact_ms = st.progress[2].last_contact_ms = 0;
    assert_int_equal(corral_leader_health_pick(&st, now, CONTACT), 0);

    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    int said = 0;
    for (uint64_t t = 0; t <= 5000; t += 100) {
        struct corral_leader_health_sample s = slow_fsync(300);
        corral_leader_health_step(&h, now + t, &s, &st, &d);
        said += d.no_target;
        assert_false(d.transfer);
    }
    assert_int_equal(said, 1);
    /* A voter comes back: the transfer happens at once. */
    st.progress[1].last_contact_ms = now + 5100;
    struct corral_leader_health_sample s = slow_fsync(300);
    corral_leader_health_step(&h, now + 5100, &s, &st, &d);
    assert_true(d.transfer);
    assert_int_equal(d.target, 2);
}

/* corral_leader_health_tick: the slowest fsync reported since the last
 * tick, once; leading from the status unless stopping; the backlog from
 * commit - applied. */
static void test_tick_sample(void **state)
{
    (void)state;
    struct corral_leader_health h;
    corral_leader_health_init(&h, &cfg);
    struct corral_leader_health_decision d;
    struct corral_raft_status st = status3(T0, 90, 100);
    corral_leader_health_fsync(&h, 20);
    corral_leader_health_fsync(&h, 150);
    corral_leader_health_fsync(&h, 30);
    corral_leader_health_tick(&h, T0, &st, false, 0, &d);
    assert_true(d.started);
    assert_int_equal(d.reason, CORRAL_LH_FSYNC);
    assert_int_equal(d.value, 150);
    assert_false(h.fsync_seen);
    /* No fsync since: the signal stays as the last one left it (H1). */
    corral_leader_health_tick(&h, T0 + 10, &st, false, 0, &d);
    assert_true(d.degraded);
    assert_int_equal(d.value, 150);
    corral_leader_health_fsync(&h, 10);
    corral_leader_health_tick(&h, T0 + 20, &st, false, 0, &d);
    assert_true(d.degraded); /* within recover_ms of the bad one (H2) */
    /* Stopping: not leading (H5). */
    corral_leader_health_tick(&h, T0 + 30, &st, true, 0, &d);
    assert_false(d.degraded);
    /* The backlog and the loop lag. */
    st.commit = 5000;
    st.applied = 3999;
    corral_leader_health_tick(&h, T0 + 40, &st, false, 0, &d);
    assert_true(d.started);
    assert_int_equal(d.reason, CORRAL_LH_APPLY_BACKLOG);
    assert_int_equal(d.value, 1001);
    st.applied = 5000;
    corral_leader_health_tick(&h, T0 + 50, &st, false, 201, &d);
    assert_int_equal(d.reason, CORRAL_LH_APPLY_BACKLOG); /* still within recover_ms (H6) */
    corral_leader_health_tick(&h, T0 + 1041, &st, false, 201, &d);
    assert_int_equal(d.reason, CORRAL_LH_LOOP_LAG);
    assert_int_equal(d.value, 201);
    /* A follower is not leading. */
    st.role = CORRAL_RAFT_FOLLOWER;
    corral_leader_health_tick(&h, T0 + 1050, &st, false, 500, &d);
    assert_false(d.degraded);
}

static void test_operator_checks(void **state)
{
    (void)state;
    uint64_t now = T0, to = 99;
    struct corral_raft_status st = status3(now, 100, 90);
    assert_int_equal(corral_leader_transfer_check(&st, 0, now, CONTACT, &to), CORRAL_LT_OK);
    assert_int_equal(to, 2);
    assert_int_equal(corral_leader_transfer_check(&st, 3, now, CONTACT, &to), CORRAL_LT_OK);
    assert_int_equal(to, 3);
    assert_int_equal(corral_leader_transfer_check(&st, 1, now, CONTACT, &to), CORRAL_LT_SELF);
    assert_int_equal(to, 0);
    assert_int_equal(corral_leader_transfer_check(&st, 7, now, CONTACT, &to), CORRAL_LT_NOT_VOTER);
    st.progress[2].last_contact_ms = now - 1000;
    assert_int_equal(corral_leader_transfer_check(&st, 3, now, CONTACT, &to), CORRAL_LT_NO_CONTACT);
    st.progress[1].last_contact_ms = now - 1000;
    assert_int_equal(corral_leader_transfer_check(&st, 0, now, CONTACT, &to), CORRAL_LT_NO_TARGET);
    st.transfer_target = 2;
    assert_int_equal(corral_leader_transfer_check(&st, 3, now, CONTACT, &to), CORRAL_LT_RUNNING);
    assert_int_equal(corral_leader_transfer_check(&st, 0, now, CONTACT, &to), CORRAL_LT_RUNNING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy_never_degrades),
        cmocka_unit_test(test_fsync_transfer_at_bound),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_flapping_below_bound),
        cmocka_unit_test(test_reason_order),
        cmocka_unit_test(test_not_leading_resets),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_tick_sample),
        cmocka_unit_test(test_operator_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
