/* Unit tests for src/core/liveness.c: the exact instants of L1 and L2 (one
 * ms before: not over; at the instant: over), members never heard, suspect
 * and dead (L3), config refusals, forget, many members inserted out of
 * order, the member limit, saturation and allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/liveness.h"
#include "corral.h"
#include "util/mem.h"

/* With the defaults: a lease is over 1000 * 1.1 + 50 = 1150 ms after the
 * answer (L1); the new-leader wait is (600 + 1000) * 1.1 + 50 = 1810 ms (L2). */
#define L1_MS 1150u
#define L2_MS 1810u
#define OFFICE 100000u /* took office here, so L2 ends at OFFICE + L2_MS */

static void init_default(struct corral_liveness *lv, uint64_t took_office)
{
    struct corral_liveness_config c;
    corral_liveness_config_default(&c);
    assert_int_equal(corral_liveness_init(lv, &c, took_office), 0);
}

static void test_config_default(void **state)
{
    (void)state;
    struct corral_liveness_config c;
    corral_liveness_config_default(&c);
    assert_int_equal(c.heartbeat_ms, 250);
    assert_int_equal(c.lease_ms, 1000);
    assert_int_equal(c.max_drift_permille, 100);
    assert_int_equal(c.margin_ms, 50);
    assert_int_equal(c.max_election_timeout_ms, 600);
    assert_int_equal(c.suspect_after_ms, 500);
    assert_int_equal(corral_liveness_config_check(&c), 0);
}

static void test_config_check(void **state)
{
    (void)state;
    struct corral_liveness_config d, c;
    corral_liveness_config_default(&d);
    /* Every field zero in turn. */
    uint32_t *fields[] = {&c.heartbeat_ms,
                          &c.lease_ms,
                          &c.max_drift_permille,
                          &c.margin_ms,
                          &c.max_election_timeout_ms,
                          &c.suspect_after_ms};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        c = d;
        *fields[i] = 0;
        assert_int_equal(corral_liveness_config_check(&c), CORRAL_EINVAL);
    }
    /* The lease must exceed two heartbeats: at 2x it is refused, 2x + 1 passes. */
    c = d;
    c.lease_ms = 2 * c.heartbeat_ms;
    assert_int_equal(corral_liveness_config_check(&c), CORRAL_EINVAL);
    c.lease_ms = 2 * c.heartbeat_ms + 1;
    assert_int_equal(corral_liveness_config_check(&c), 0);
    c = d;
    c.heartbeat_ms = UINT32_MAX; /* 2 x heartbeat must not wrap */
    c.lease_ms = UINT32_MAX;
    assert_int_equal(corral_liveness_config_check(&c), CORRAL_EINVAL);
    /* Drift below 100%. */
    c = d;
    c.max_drift_permille = 1000;
    assert_int_equal(corral_liveness_config_check(&c), CORRAL_EINVAL);
    c.max_drift_permille = 999;
    assert_int_equal(corral_liveness_config_check(&c), 0);
    /* init refuses what check refuses, and leaves a closable view. */
    struct corral_liveness lv;
    c.max_drift_permille = 1000;
    assert_int_equal(corral_liveness_init(&lv, &c, 0), CORRAL_EINVAL);
    corral_liveness_close(&lv);
}

static void test_l1_boundary(void **state)
{
    (void)state;
    struct corral_liveness lv;
    init_default(&lv, OFFICE);
    uint64_t t = OFFICE + 5000; /* well past L2 */
    assert_int_equal(corral_liveness_heartbeat(&lv, 7, t), 1000);
    assert_int_equal(corral_liveness_lease_end(&lv, 7), t + L1_MS);
    assert_false(corral_liveness_lease_over(&lv, 7, t));
    assert_false(corral_liveness_lease_over(&lv, 7, t + L1_MS - 1));
    assert_true(corral_liveness_lease_over(&lv, 7, t + L1_MS));
    /* A later answer moves it on. */
    assert_int_equal(corral_liveness_heartbeat(&lv, 7, t + 250), 1000);
    assert_false(corral_liveness_lease_over(&lv, 7, t + 250 + L1_MS - 1));
    assert_true(corral_liveness_lease_over(&lv, 7, t + 250 + L1_MS));
    /* A clock stepping back keeps the later answer (L1 for the lease granted). */
    assert_int_equal(corral_liveness_heartbeat(&lv, 7, t), 1000);
    assert_int_equal(corral_liveness_lease_end(&lv, 7), t + 250 + L1_MS);
    corral_liveness_close(&lv);
}

static void test_l1_rounds_up(void **state)
{
    (void)state;
    struct corral_liveness_config c;
    corral_liveness_config_default(&c);
    c.lease_ms = 1001;
    c.max_drift_permille = 1; /* 1001 * 1.001 = 1002.001: 1003, not 1002 */
    c.margin_ms = 1;
    c.max_election_timeout_ms = 1;
    struct corral_liveness lv;
    assert_int_equal(corral_liveness_init(&lv, &c, 0), 0);
    assert_int_equal(corral_liveness_heartbeat(&lv, 1, 10000), 1001);
    assert_false(corral_liveness_lease_over(&lv, 1, 10000 + 1003));
    assert_true(corral_liveness_lease_over(&lv, 1, 10000 + 1004));
    /* L2: (1 + 1001) * 1.001 = 1003.002: 1004, plus the margin. */
    assert_false(corral_liveness_settled(&lv, 1004));
    assert_true(corral_liveness_settled(&lv, 1005));
    corral_liveness_close(&lv);
}

static void test_l2_boundary(void **state)
{
    (void)state;
    struct corral_liveness lv;
    init_default(&lv, OFFICE);
    assert_false(corral_liveness_settled(&lv, OFFICE));
    assert_false(corral_liveness_settled(&lv, OFFICE + L2_MS - 1));
    assert_true(corral_liveness_settled(&lv, OFFICE + L2_MS));
    /* Heard right after taking office: L1 alone would end at OFFICE + 10 +
     * 1150, but L2 holds it until OFFICE + 1810. */
    corral_liveness_heartbeat(&lv, 3, OFFICE + 10);
    assert_int_equal(corral_liveness_lease_end(&lv, 3), OFFICE + L2_MS);
    assert_false(corral_liveness_lease_over(&lv, 3, OFFICE + 10 + L1_MS));
    assert_false(corral_liveness_lease_over(&lv, 3, OFFICE + L2_MS - 1));
    assert_true(corral_liveness_lease_over(&lv, 3, OFFICE + L2_MS));
    assert_false(corral_liveness_dead(&lv, 3, OFFICE + L2_MS - 1));
    assert_true(corral_liveness_dead(&lv, 3, OFFICE + L2_MS));
    /* Heard late in the wait: L1 is the later bound. */
    corral_liveness_heartbeat(&lv, 4, OFFICE + 1000);
    assert_int_equal(corral_liveness_lease_end(&lv, 4), OFFICE + 1000 + L1_MS);
    assert_false(corral_liveness_lease_over(&lv, 4, OFFICE + 1000 + L1_MS - 1));
    assert_true(corral_liveness_lease_over(&lv, 4, OFFICE + 1000 + L1_MS));
    corral_liveness_close(&lv);
}

static void test_never_heard(void **state)
{
    (void)state;
    struct corral_liveness lv;
    init_default(&lv, OFFICE);
    /* Another leader may have answered it: over only when L2 is. */
    assert_int_equal(corral_liveness_lease_end(&lv, 9), OFFICE + L2_MS);
    assert_false(corral_liveness_lease_over(&lv, 9, OFFICE + L2_MS - 1));
    assert_true(corral_liveness_lease_over(&lv, 9, OFFICE + L2_MS));
    assert_false(corral_liveness_dead(&lv, 9, OFFICE + L2_MS - 1));
    assert_true(corral_liveness_dead(&lv, 9, OFFICE + L2_MS));
    assert_int_equal(corral_liveness_age_ms(&lv, 9, OFFICE + 5), UINT64_MAX);
    /* Suspect counts from taking office. */
    assert_false(corral_liveness_suspect(&lv, 9, OFFICE + 499));
    assert_true(corral_liveness_suspect(&lv, 9, OFFICE + 500));
    /* Id 0 is no member: no lease is granted, nothing tracked. */
    assert_int_equal(corral_liveness_heartbeat(&lv, 0, OFFICE), 0);
    assert_int_equal(lv.n, 0);
    corral_liveness_close(&lv);
}

static void test_suspect_dead_age(void **state)
{
    (void)state;
    struct corral_liveness lv;
    init_default(&lv, OFFICE);
    uint64_t t = OFFICE + 3000;
    corral_liveness_heartbeat(&lv, 5, t);
    assert_int_equal(corral_liveness_age_ms(&lv, 5, t), 0);
    assert_int_equal(corral_liveness_age_ms(&lv, 5, t + 123), 123);
    assert_int_equal(corral_liveness_age_ms(&lv, 5, t - 1), 0); /* no wrap */
    assert_false(corral_liveness_suspect(&lv, 5, t + 499));
    assert_true(corral_liveness_suspect(&lv, 5, t + 500));
    /* L3: dead only once the lease is over, and (here) exactly then. */
    for (uint64_t now = t; now < t + 2 * L1_MS; now += 7) {
        if (corral_liveness_dead(&lv, 5, now))
            assert_true(corral_liveness_lease_over(&lv, 5, now));
        assert_true(corral_liveness_dead(&lv, 5, now) == corral_liveness_lease_over(&lv, 5, now));
    }
    assert_false(corral_liveness_dead(&lv, 5, t + L1_MS - 1));
    assert_true(corral_liveness_dead(&lv, 5, t + L1_MS));
    corral_liveness_close(&lv);
}

static void test_forget(void **state)
{
    (void)state;
    struct corral_liveness lv;
    init_default(&lv, OFFICE);
    uint64_t t = OFFICE + 5000;
    corral_liveness_heartbeat(&lv, 1, t);
    corral_liveness_heartbeat(&lv, 2, t);
    corral_liveness_heartbeat(&lv, 3, t);
    corral_liveness_forget(&lv, 2);
    corral_liveness_forget(&lv, 42); /* unknown: nothing */
    assert_int_equal(lv.n, 2);
    assert_int_equal(lv.members[0].id, 1);
    assert_int_equal(lv.members[1].id, 3);
    assert_int_equal(corral_liveness_age_ms(&lv, 2, t), UINT64_MAX);
    assert_int_equal(corral_liveness_lease_end(&lv, 2), OFFICE + L2_MS);
    assert_true(corral_liveness_lease_over(&lv, 2, t));
    assert_false(corral_liveness_lease_over(&lv, 1, t));
    assert_false(corral_liveness_lease_over(&lv, 3, t));
    /* It may come back. */
    corral_liveness_heartbeat(&lv, 2, t + 1);
    assert_int_equal(lv.n, 3);
    assert_int_equal(lv.members[1].id, 2);
    assert_int_equal(corral_liveness_lease_end(&lv, 2), t + 1 + L1_MS);
    corral_liveness_close(&lv);
}

/* splitmix64, for a shuffled insertion order. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_many_members(void **state)
{
    (void)state;
    static uint32_t ids[CORRAL_LIVENESS_MEMBERS_MAX];
    uint32_t n = CORRAL_LIVENESS_MEMBERS_MAX;
    for (uint32_t i = 0; i < n; i++)
        ids[i] = 3 * i + 1;
    uint64_t rng = 0x11e5;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(&rng) % (i + 1));
        uint32_t x = ids[i];
        ids[i] = ids[j];
        ids[j] = x;
    }
    struct corral_liveness lv;
    init_default(&lv, 0);
    uint64_t t = 10000;
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(corral_liveness_heartbeat(&lv, ids[i], t + ids[i]), 1000);
    assert_int_equal(lv.n, n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(lv.members[i].id, 3 * i + 1);
        assert_true(lv.members[i].heard);
        assert_int_equal(corral_liveness_lease_end(&lv, 3 * i + 1), t + 3 * i + 1 + L1_MS);
        assert_int_equal(corral_liveness_age_ms(&lv, 3 * i + 2, t), UINT64_MAX);
    }
    /* Full: a new member gets no lease; a known one is still answered. */
    assert_int_equal(corral_liveness_heartbeat(&lv, 2, t), 0);
    assert_int_equal(lv.n, n);
    assert_int_equal(corral_liveness_age_ms(&lv, 2, t), UINT64_MAX);
    assert_int_equal(corral_liveness_heartbeat(&lv, 1, t + 50000), 1000);
    assert_int_equal(corral_liveness_lease_end(&lv, 1), t + 50000 + L1_MS);
    /* After a forget there is room again. */
    corral_liveness_forget(&lv, 4);
    assert_int_equal(corral_liveness_heartbeat(&lv, 2, t), 1000);
    assert_int_equal(lv.n, n);
    assert_int_equal(lv.members[1].id, 2);
    corral_liveness_close(&lv);
}

static void test_enomem(void **state)
{
    (void)state;
    struct corral_liveness_config c;
    corral_liveness_config_default(&c);
    struct corral_liveness lv;
    corral_mem_fail_after(1);
    assert_int_equal(corral_liveness_init(&lv, &c, 0), CORRAL_ENOMEM);
    corral_liveness_close(&lv);
    assert_int_equal(corral_liveness_init(&lv, &c, 0), 0);
    uint32_t id = 1;
    while (lv.n < lv.cap)
        assert_int_equal(corral_liveness_heartbeat(&lv, id++, 5000), 1000);
    uint32_t n = lv.n;
    corral_mem_fail_after(1); /* the growth fails: no lease, nothing changes */
    assert_int_equal(corral_liveness_heartbeat(&lv, id, 5000), 0);
    assert_int_equal(lv.n, n);
    assert_int_equal(corral_liveness_heartbeat(&lv, id, 5000), 1000);
    assert_int_equal(lv.n, n + 1);
    corral_liveness_close(&lv);
}

static void test_saturation(void **state)
{
    (void)state;
    struct corral_liveness lv;
    init_default(&lv, UINT64_MAX - 100);
    assert_int_equal(corral_liveness_lease_end(&lv, 1), UINT64_MAX);
    assert_false(corral_liveness_settled(&lv, UINT64_MAX - 1));
    assert_false(corral_liveness_lease_over(&lv, 1, UINT64_MAX - 1));
    assert_false(corral_liveness_suspect(&lv, 1, UINT64_MAX - 1));
    corral_liveness_heartbeat(&lv, 1, UINT64_MAX - 10);
    assert_int_equal(corral_liveness_lease_end(&lv, 1), UINT64_MAX);
    assert_false(corral_liveness_dead(&lv, 1, UINT64_MAX - 1));
    corral_liveness_close(&lv);
    /* The largest config: nothing wraps in the products. */
    struct corral_liveness_config c = {
        .heartbeat_ms = 1,
        .lease_ms = UINT32_MAX,
        .max_drift_permille = 999,
        .margin_ms = UINT32_MAX,
        .max_election_timeout_ms = UINT32_MAX,
        .suspect_after_ms = UINT32_MAX,
    };
    assert_int_equal(corral_liveness_init(&lv, &c, 0), 0);
    uint64_t wait = ((2ull * UINT32_MAX) * 1999 + 999) / 1000 + UINT32_MAX;
    assert_false(corral_liveness_settled(&lv, wait - 1));
    assert_true(corral_liveness_settled(&lv, wait));
    corral_liveness_close(&lv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_default),   cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_l1_boundary),      cmocka_unit_test(test_l1_rounds_up),
        cmocka_unit_test(test_l2_boundary),      cmocka_unit_test(test_never_heard),
        cmocka_unit_test(test_suspect_dead_age), cmocka_unit_test(test_forget),
        cmocka_unit_test(test_many_members),     cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_saturation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
