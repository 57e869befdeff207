/* Unit tests for src/core/agent.c: each transition of the member side,
 * citing the invariants of agent.h (A1-A11): the lease from the send time
 * and its exact end, acquire rules and epochs, releasing, replicas,
 * dropping, failures and backoff, report delivery over lost heartbeats,
 * shutdown, limits and allocation failure. The broken variant
 * (CORRAL_AGENT_BROKEN_LEASE_FROM_ANSWER) is the simulator's to catch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/agent.h"
#include "corral.h"
#include "util/mem.h"

#define LEASE 1000u
#define BASE 100u /* the default backoff base */

/* ---- Helpers ---- */

static struct corral_agent *agent_new(void)
{
    struct corral_agent_config c;
    corral_agent_config_default(&c);
    struct corral_agent *a = NULL;
    assert_int_equal(corral_agent_new(&c, &a), 0);
    assert_non_null(a);
    return a;
}

static struct corral_agent_entry primary(uint32_t res, uint32_t part, uint64_t epoch)
{
    return (struct corral_agent_entry){
        res, part, CORRAL_AGENT_PRIMARY, CORRAL_AGENT_IN_SYNC, epoch, CORRAL_AGENT_NONE};
}

static struct corral_agent_entry releasing(uint32_t res, uint32_t part, uint64_t epoch)
{
    return (struct corral_agent_entry){
        res, part, CORRAL_AGENT_PRIMARY, CORRAL_AGENT_RELEASING, epoch, CORRAL_AGENT_NONE};
}

static struct corral_agent_entry copying(uint32_t res, uint32_t part, uint64_t epoch, uint32_t from)
{
    return (struct corral_agent_entry){res,   part, CORRAL_AGENT_REPLICA, CORRAL_AGENT_COPYING,
                                       epoch, from};
}

static struct corral_agent_entry in_sync(uint32_t res, uint32_t part, uint64_t epoch)
{
    return (struct corral_agent_entry){
        res, part, CORRAL_AGENT_REPLICA, CORRAL_AGENT_IN_SYNC, epoch, CORRAL_AGENT_NONE};
}

static void desire(struct corral_agent *a, uint64_t now, uint64_t index,
                   const struct corral_agent_entry *e, uint32_t n)
{
    assert_int_equal(corral_agent_set_desired(a, now, index, e, n), 0);
    assert_int_equal(corral_agent_index(a), index);
}

static void desire1(struct corral_agent *a, uint64_t now, uint64_t index,
                    struct corral_agent_entry e)
{
    desire(a, now, index, &e, 1);
}

/* A heartbeat sent at sent_ms, answered at answer_ms granting lease_ms. */
static uint64_t lease(struct corral_agent *a, uint64_t sent_ms, uint32_t lease_ms,
                      uint64_t answer_ms)
{
    uint64_t seq = corral_agent_heartbeat_sent(a, sent_ms, NULL, 0, NULL);
    assert_int_equal(corral_agent_heartbeat_answered(a, seq, lease_ms, 0, answer_ms), 0);
    return seq;
}

static struct corral_agent_hook take(struct corral_agent *a, uint8_t kind, uint32_t res,
                                     uint32_t part, uint64_t epoch)
{
    struct corral_agent_hook h;
    assert_true(corral_agent_next_hook(a, &h));
    assert_int_equal(h.kind, kind);
    assert_int_equal(h.resource, res);
    assert_int_equal(h.partition, part);
    assert_int_equal(h.epoch, epoch);
    return h;
}

static void no_hook(struct corral_agent *a)
{
    struct corral_agent_hook h;
    assert_false(corral_agent_next_hook(a, &h));
}

static void done(struct corral_agent *a, const struct corral_agent_hook *h, int err, uint64_t now)
{
    assert_int_equal(corral_agent_hook_done(a, h->id, err, now), 0);
}

static bool acting(const struct corral_agent *a, uint32_t res, uint32_t part, uint64_t epoch)
{
    uint64_t e = 0;
    if (!corral_agent_acting(a, res, part, &e))
        return false;
    assert_int_equal(e, epoch);
    return true;
}

static struct corral_agent_stats stats(const struct corral_agent *a)
{
    struct corral_agent_stats s;
    corral_agent_stats(a, &s);
    return s;
}

/* Sends a heartbeat at now carrying up to 16 reports; returns the count. */
static uint32_t carry(struct corral_agent *a, uint64_t now, struct corral_agent_report *out,
                      uint64_t *seq)
{
    uint32_t n = 99;
    *seq = corral_agent_heartbeat_sent(a, now, out, 16, &n);
    assert_true(n <= 16);
    return n;
}

static void expect_report(const struct corral_agent_report *r, uint32_t res, uint32_t part,
                          uint64_t epoch, uint8_t state)
{
    assert_int_equal(r->resource, res);
    assert_int_equal(r->partition, part);
    assert_int_equal(r->epoch, epoch);
    assert_int_equal(r->state, state);
}

/* An agent acting as primary of (1, 0) at epoch 5, acquired, leased until 2000. */
static struct corral_agent *acting_agent(void)
{
    struct corral_agent *a = agent_new();
    lease(a, 1000, LEASE, 1010);
    desire1(a, 1020, 10, primary(1, 0, 5));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 5);
    done(a, &h, 0, 1030);
    assert_true(acting(a, 1, 0, 5));
    no_hook(a);
    return a;
}

/* ---- Tests ---- */

static void test_config(void **state)
{
    (void)state;
    struct corral_agent_config c;
    corral_agent_config_default(&c);
    assert_int_equal(c.backoff_base_ms, BASE);
    assert_int_equal(c.backoff_max_ms, 10000);
    assert_int_equal(corral_agent_config_check(&c), 0);
    struct corral_agent *a = NULL;
    c.backoff_base_ms = 0;
    assert_int_equal(corral_agent_config_check(&c), CORRAL_EINVAL);
    assert_int_equal(corral_agent_new(&c, &a), CORRAL_EINVAL);
    c.backoff_base_ms = 200;
    c.backoff_max_ms = 199;
    assert_int_equal(corral_agent_new(&c, &a), CORRAL_EINVAL);
    assert_null(a);
    c.backoff_max_ms = 200;
    for (uint64_t k = 1; k <= 2; k++) {
        corral_mem_fail_after(k);
        assert_int_equal(corral_agent_new(&c, &a), CORRAL_ENOMEM);
        assert_null(a);
    }
    assert_int_equal(corral_agent_new(&c, &a), 0);
    assert_int_equal(corral_agent_lease_end(a), 0);
    assert_int_equal(corral_agent_index(a), 0);
    assert_int_equal(corral_agent_next_wakeup(a), UINT64_MAX);
    assert_false(corral_agent_shutdown_done(a));
    corral_agent_free(a);
    corral_agent_free(NULL);
}

/* A3: a desired primary waits for a lease; A4: it acts from the queued acquire. */
static void test_no_acquire_without_lease(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 100, 1, primary(1, 0, 3));
    no_hook(a);
    assert_false(acting(a, 1, 0, 3));
    corral_agent_tick(a, 5000);
    no_hook(a);
    /* An answer that grants nothing (lease_ms 0) is no lease either. */
    lease(a, 5000, 0, 5001);
    no_hook(a);
    assert_int_equal(corral_agent_lease_end(a), 0);
    /* A lease: the acquire is queued and it acts at once, before the hook ran. */
    lease(a, 5010, LEASE, 5020);
    assert_int_equal(corral_agent_lease_end(a), 6010);
    assert_true(acting(a, 1, 0, 3));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 3);
    assert_int_equal(h.reason, 0);
    assert_int_equal(h.from, CORRAL_AGENT_NONE);
    no_hook(a);
    assert_int_equal(stats(a).hooks_in_flight, 1);
    done(a, &h, 0, 5030);
    assert_true(acting(a, 1, 0, 3));
    no_hook(a);
    /* A2: the host is told to wake at the lease end. */
    assert_int_equal(corral_agent_next_wakeup(a), 6010);
    /* A successful acquire reports nothing. */
    assert_int_equal(stats(a).reports_pending, 0);
    corral_agent_free(a);
}

/* A12: a lease answer that names index 40 lets no acquire go on a view of
 * index 30, however valid the lease; a view of 40 does. What already acts
 * goes on. */
static void test_acquire_needs_fresh_view(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 0, 10, primary(1, 0, 3));
    lease(a, 0, LEASE, 5); /* index 0: any view will do */
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 3);
    done(a, &h, 0, 6);
    uint64_t seq = corral_agent_heartbeat_sent(a, 100, NULL, 0, NULL);
    assert_int_equal(corral_agent_heartbeat_answered(a, seq, LEASE, 40, 105), 0);
    assert_true(acting(a, 1, 0, 3)); /* goes on acting */
    struct corral_agent_entry e[] = {primary(1, 0, 3), primary(1, 1, 7)};
    desire(a, 110, 30, e, 2); /* a stale view grants (1, 1) */
    no_hook(a);
    assert_false(corral_agent_acting(a, 1, 1, NULL));
    desire(a, 120, 40, e, 2);
    take(a, CORRAL_AGENT_ACQUIRE, 1, 1, 7);
    assert_true(acting(a, 1, 1, 7));
    corral_agent_free(a);
}

static void test_acquire_with_lease(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 0, LEASE, 5);
    assert_int_equal(corral_agent_next_wakeup(a), UINT64_MAX); /* nothing acts yet */
    struct corral_agent_entry e[] = {primary(2, 7, 9), primary(1, 3, 4), in_sync(1, 4, 2)};
    desire(a, 10, 5, e, 3);
    /* Queued in (resource, partition) order. */
    struct corral_agent_hook h1 = take(a, CORRAL_AGENT_ACQUIRE, 1, 3, 4);
    struct corral_agent_hook h2 = take(a, CORRAL_AGENT_ACQUIRE, 2, 7, 9);
    assert_true(h2.id > h1.id);
    no_hook(a);
    assert_true(acting(a, 1, 3, 4));
    assert_true(acting(a, 2, 7, 9));
    assert_false(corral_agent_acting(a, 1, 4, NULL)); /* a replica */
    assert_false(corral_agent_acting(a, 9, 9, NULL)); /* unknown */
    struct corral_agent_stats s = stats(a);
    assert_int_equal(s.partitions, 3);
    assert_int_equal(s.desired, 3);
    assert_int_equal(s.acting, 2);
    assert_int_equal(s.held, 2);
    assert_int_equal(s.hooks_in_flight, 2);
    assert_int_equal(s.hooks_queued, 0);
    done(a, &h2, 0, 20);
    done(a, &h1, 0, 20);
    /* The same set again: nothing to do. */
    desire(a, 30, 6, e, 3);
    no_hook(a);
    assert_int_equal(corral_agent_next_wakeup(a), 1000);
    corral_agent_free(a);
}

/* A2: at the lease end every primary stops at once, then the releases. */
static void test_lease_expiry_boundary(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 1000, LEASE, 1010);
    struct corral_agent_entry e[] = {primary(1, 0, 5), primary(1, 1, 6)};
    desire(a, 1020, 10, e, 2);
    struct corral_agent_hook h0 = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 5);
    struct corral_agent_hook h1 = take(a, CORRAL_AGENT_ACQUIRE, 1, 1, 6);
    done(a, &h0, 0, 1030);
    /* h1 is still running when the lease runs out. */
    assert_int_equal(corral_agent_next_wakeup(a), 2000);
    corral_agent_tick(a, 1999);
    assert_true(acting(a, 1, 0, 5));
    assert_true(acting(a, 1, 1, 6));
    no_hook(a);
    corral_agent_tick(a, 2000);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    assert_false(corral_agent_acting(a, 1, 1, NULL));
    assert_int_equal(stats(a).acting, 0);
    uint32_t cursor = 0;
    struct corral_agent_primary p;
    assert_false(corral_agent_primary_next(a, &cursor, &p));
    /* The acquired one is released at once; the running one after its acquire. */
    struct corral_agent_hook r0 = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(r0.reason, CORRAL_AGENT_LEASE_LOST);
    no_hook(a);
    assert_int_equal(corral_agent_next_wakeup(a), UINT64_MAX);
    done(a, &h1, 0, 2005); /* A6: held even though acting stopped */
    struct corral_agent_hook r1 = take(a, CORRAL_AGENT_RELEASE, 1, 1, 6);
    assert_int_equal(r1.reason, CORRAL_AGENT_LEASE_LOST);
    assert_int_equal(stats(a).held, 2);
    done(a, &r0, 0, 2010);
    done(a, &r1, 0, 2010);
    assert_int_equal(stats(a).held, 0);
    /* A7: both report released. */
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 2020, out, &seq), 2);
    expect_report(&out[0], 1, 0, 5, CORRAL_AGENT_REPORT_RELEASED);
    expect_report(&out[1], 1, 1, 6, CORRAL_AGENT_REPORT_RELEASED);
    corral_agent_free(a);
}

/* A2: not only tick: any call at or after the lease end stops first. */
static void test_lease_expiry_any_call(void **state)
{
    (void)state;
    for (int which = 0; which < 4; which++) {
        struct corral_agent *a = acting_agent();
        switch (which) {
        case 0:
            corral_agent_heartbeat_sent(a, 2000, NULL, 0, NULL);
            break;
        case 1: {
            /* Even an answer that would extend the lease: acting stopped at
             * 2000 first, and epoch 5 is not taken up again (A3). */
            uint64_t seq = corral_agent_heartbeat_sent(a, 1900, NULL, 0, NULL);
            assert_int_equal(corral_agent_heartbeat_answered(a, seq, LEASE, 0, 2000), 0);
            assert_int_equal(corral_agent_lease_end(a), 2900);
            break;
        }
        case 2:
            assert_int_equal(corral_agent_hook_done(a, 12345, 0, 2000), CORRAL_ENOTFOUND);
            break;
        default:
            desire1(a, 2000, 11, primary(1, 0, 5));
            break;
        }
        assert_false(corral_agent_acting(a, 1, 0, NULL));
        struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
        assert_int_equal(r.reason, CORRAL_AGENT_LEASE_LOST);
        no_hook(a);
        corral_agent_free(a);
    }
}

/* A1: a late answer counts from the send, not from its arrival. */
static void test_late_answer(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 0, 1, primary(1, 0, 1));
    lease(a, 1000, LEASE, 1800);
    assert_int_equal(corral_agent_lease_end(a), 2000); /* not 2800 */
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 1);
    done(a, &h, 0, 1850);
    corral_agent_tick(a, 1999);
    assert_true(acting(a, 1, 0, 1));
    corral_agent_tick(a, 2000);
    assert_false(acting(a, 1, 0, 1));
    take(a, CORRAL_AGENT_RELEASE, 1, 0, 1);
    corral_agent_free(a);

    /* An answer arriving after send + lease grants nothing usable. */
    a = agent_new();
    desire1(a, 0, 1, primary(1, 0, 1));
    lease(a, 1000, LEASE, 2000);
    no_hook(a);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    lease(a, 1000, LEASE, 2100);
    no_hook(a);
    corral_agent_free(a);
}

/* A1: answers out of order take the maximum of the valid ends. */
static void test_out_of_order_answers(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    uint64_t s1 = corral_agent_heartbeat_sent(a, 1000, NULL, 0, NULL);
    uint64_t s2 = corral_agent_heartbeat_sent(a, 1250, NULL, 0, NULL);
    uint64_t s3 = corral_agent_heartbeat_sent(a, 1500, NULL, 0, NULL);
    assert_int_equal(s1, 1);
    assert_int_equal(s2, 2);
    assert_int_equal(s3, 3);
    assert_int_equal(corral_agent_heartbeat_answered(a, s2, LEASE, 0, 1300), 0);
    assert_int_equal(corral_agent_lease_end(a), 2250);
    /* The older answer arrives later: its end is earlier, nothing moves. */
    assert_int_equal(corral_agent_heartbeat_answered(a, s1, LEASE, 0, 1400), 0);
    assert_int_equal(corral_agent_lease_end(a), 2250);
    /* A repeated answer is harmless. */
    assert_int_equal(corral_agent_heartbeat_answered(a, s2, LEASE, 0, 1450), 0);
    assert_int_equal(corral_agent_lease_end(a), 2250);
    /* A shorter lease on a newer heartbeat does not cut the granted one. */
    assert_int_equal(corral_agent_heartbeat_answered(a, s3, 500, 0, 1600), 0);
    assert_int_equal(corral_agent_lease_end(a), 2250);
    /* Unknown sequence numbers: never sent, zero, fallen out of the ring. */
    assert_int_equal(corral_agent_heartbeat_answered(a, 0, LEASE, 0, 1700), CORRAL_ENOTFOUND);
    assert_int_equal(corral_agent_heartbeat_answered(a, 4, LEASE, 0, 1700), CORRAL_ENOTFOUND);
    for (uint32_t i = 0; i < CORRAL_AGENT_HEARTBEATS_MAX; i++)
        corral_agent_heartbeat_sent(a, 1700, NULL, 0, NULL);
    assert_int_equal(corral_agent_heartbeat_answered(a, s3, 5000, 0, 1700), CORRAL_ENOTFOUND);
    assert_int_equal(corral_agent_lease_end(a), 2250);
    /* The oldest still remembered works. */
    assert_int_equal(corral_agent_heartbeat_answered(a, 4, LEASE, 0, 1800), 0);
    assert_int_equal(corral_agent_lease_end(a), 2700);
    /* A huge lease saturates. */
    uint64_t big = corral_agent_heartbeat_sent(a, UINT64_MAX - 5, NULL, 0, NULL);
    assert_int_equal(corral_agent_heartbeat_answered(a, big, UINT32_MAX, 0, UINT64_MAX - 4), 0);
    assert_int_equal(corral_agent_lease_end(a), UINT64_MAX);
    corral_agent_free(a);
}

/* A3: once stopped at an epoch, never again at it; a larger one is taken. */
static void test_no_reacquire_after_stop(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    corral_agent_tick(a, 2000);
    struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    done(a, &r, 0, 2010);
    lease(a, 2100, LEASE, 2110);
    no_hook(a);
    desire1(a, 2120, 11, primary(1, 0, 5)); /* the same grant, again */
    no_hook(a);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    desire1(a, 2130, 12, primary(1, 0, 7)); /* a new grant */
    take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 7);
    assert_true(acting(a, 1, 0, 7));
    corral_agent_free(a);
}

/* A3: a desired entry with an epoch below one seen is ignored. */
static void test_epoch_never_back(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    desire1(a, 1100, 11, primary(1, 0, 4));
    no_hook(a);
    assert_true(acting(a, 1, 0, 5));
    assert_int_equal(stats(a).stale_ignored, 1);
    /* A stale demotion or release is ignored too: it still acts at 5. */
    desire1(a, 1110, 12, in_sync(1, 0, 4));
    desire1(a, 1120, 13, releasing(1, 0, 3));
    no_hook(a);
    assert_true(acting(a, 1, 0, 5));
    assert_int_equal(stats(a).stale_ignored, 3);
    /* An older watch answer is refused whole (A9). */
    assert_int_equal(corral_agent_set_desired(a, 1130, 12, NULL, 0), CORRAL_EINVAL);
    assert_int_equal(corral_agent_index(a), 13);
    assert_true(acting(a, 1, 0, 5));
    /* The same index again is fine (a repeated answer). */
    desire1(a, 1140, 13, primary(1, 0, 5));
    no_hook(a);
    /* A larger epoch while acting: acquired directly, acting at it at once. */
    desire1(a, 1150, 14, primary(1, 0, 8));
    assert_true(acting(a, 1, 0, 8));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 8);
    done(a, &h, 0, 1160);
    desire1(a, 1170, 15, primary(1, 0, 5));
    no_hook(a);
    assert_true(acting(a, 1, 0, 8));
    corral_agent_free(a);
}

/* A4, A6, A7: releasing stops acting at once, then release, then released. */
static void test_releasing(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    desire1(a, 1100, 11, releasing(1, 0, 5));
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(r.reason, CORRAL_AGENT_HANDOFF);
    no_hook(a);
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 1110, out, &seq), 0); /* not released yet */
    done(a, &r, 0, 1120);
    assert_int_equal(carry(a, 1130, out, &seq), 1);
    expect_report(&out[0], 1, 0, 5, CORRAL_AGENT_REPORT_RELEASED);
    assert_int_equal(out[0].index, 11);
    assert_int_equal(out[0].error, 0);
    assert_int_equal(corral_agent_heartbeat_answered(a, seq, LEASE, 0, 1140), 0);
    assert_int_equal(stats(a).reports_pending, 0);
    /* The same releasing set at the same index: not said again. */
    assert_int_equal(
        corral_agent_set_desired(a, 1145, 11, (struct corral_agent_entry[]){releasing(1, 0, 5)}, 1),
        0);
    no_hook(a);
    assert_int_equal(stats(a).reports_pending, 0);
    /* A newer view still shows it releasing: the leader did not act on the
     * report, so it is said again (A7), once per newer view. */
    desire1(a, 1150, 12, releasing(1, 0, 5));
    no_hook(a);
    assert_int_equal(carry(a, 1152, out, &seq), 1);
    expect_report(&out[0], 1, 0, 5, CORRAL_AGENT_REPORT_RELEASED);
    assert_int_equal(corral_agent_heartbeat_answered(a, seq, LEASE, 0, 1155), 0);
    assert_int_equal(stats(a).reports_pending, 0);
    /* Then demoted to an in-sync replica: nothing to do. */
    desire1(a, 1160, 13, in_sync(1, 0, 5));
    no_hook(a);
    assert_int_equal(stats(a).held, 0);
    corral_agent_free(a);
}

/* Releasing while the acquire runs: stop now, release after the acquire. */
static void test_releasing_during_acquire(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 1000, LEASE, 1010);
    desire1(a, 1020, 10, primary(1, 0, 5));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 5);
    desire1(a, 1030, 11, releasing(1, 0, 5));
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    no_hook(a); /* A5: one hook at a time */
    assert_int_equal(stats(a).reports_pending, 0);
    done(a, &h, 0, 1040);
    struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(r.reason, CORRAL_AGENT_HANDOFF);
    done(a, &r, 0, 1050);
    assert_int_equal(stats(a).reports_pending, 1);
    corral_agent_free(a);
}

/* A7: releasing a primary it never held reports released at once. */
static void test_releasing_not_held(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 10, 1, releasing(1, 0, 5)); /* no lease: never acquired */
    no_hook(a);
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 20, out, &seq), 1);
    expect_report(&out[0], 1, 0, 5, CORRAL_AGENT_REPORT_RELEASED);
    assert_int_equal(out[0].index, 1);
    corral_agent_free(a);
}

/* Demoted to a replica while acting: stop, release (handoff). */
static void test_demoted(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    desire1(a, 1100, 11, in_sync(1, 0, 5));
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(r.reason, CORRAL_AGENT_HANDOFF);
    done(a, &r, 0, 1110);
    no_hook(a); /* an in-sync replica needs no copy */
    corral_agent_free(a);
}

/* A9, A7: copying -> replicate -> in_sync report; once per copy. */
static void test_copying(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 10, 3, copying(4, 2, 6, 77));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_REPLICATE, 4, 2, 6);
    assert_int_equal(h.from, 77);
    no_hook(a);
    /* The same answer again, or a new copy_from: no second replicate in flight. */
    desire1(a, 20, 4, copying(4, 2, 6, 78));
    no_hook(a);
    done(a, &h, 0, 30);
    no_hook(a);
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 40, out, &seq), 1);
    expect_report(&out[0], 4, 2, 6, CORRAL_AGENT_REPORT_IN_SYNC);
    assert_int_equal(out[0].index, 3);
    assert_int_equal(corral_agent_heartbeat_answered(a, seq, LEASE, 0, 50), 0);
    assert_int_equal(stats(a).reports_pending, 0);
    /* Still copying in the next answer (the leader has not applied it yet). */
    desire1(a, 60, 5, copying(4, 2, 6, 78));
    no_hook(a);
    desire1(a, 70, 6, in_sync(4, 2, 6));
    no_hook(a);
    /* Copying again after being in sync: a new copy. */
    desire1(a, 80, 7, copying(4, 2, 6, 79));
    h = take(a, CORRAL_AGENT_REPLICATE, 4, 2, 6);
    assert_int_equal(h.from, 79);
    /* It leaves while copying: the in_sync is not reported, the data dropped. */
    desire(a, 90, 8, NULL, 0);
    no_hook(a);
    done(a, &h, 0, 100);
    take(a, CORRAL_AGENT_DROP, 4, 2, 6);
    assert_int_equal(stats(a).reports_pending, 0);
    corral_agent_free(a);
}

/* A8: a failed hook reports failed and is retried after the backoff. */
static void test_failure_backoff(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 1000, 1, copying(1, 0, 2, 9));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
    done(a, &h, 5, 1000);
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 1000, out, &seq), 1);
    expect_report(&out[0], 1, 0, 2, CORRAL_AGENT_REPORT_FAILED);
    assert_int_equal(out[0].hook, CORRAL_AGENT_REPLICATE);
    assert_int_equal(out[0].error, 5);
    no_hook(a);
    /* 100, 200, 400 ms, ... up to 10 s. */
    uint64_t now = 1000;
    uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        if (k > 0) {
            h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
            done(a, &h, CORRAL_ETIMEDOUT, now);
        }
        assert_int_equal(corral_agent_next_wakeup(a), now + want[k]);
        corral_agent_tick(a, now + want[k] - 1);
        no_hook(a);
        now += want[k];
        corral_agent_tick(a, now);
    }
    h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
    /* Success: the failure is withdrawn, in_sync replaces it, k resets. */
    done(a, &h, 0, now);
    assert_int_equal(corral_agent_next_wakeup(a), UINT64_MAX);
    assert_int_equal(carry(a, now, out, &seq), 1);
    expect_report(&out[0], 1, 0, 2, CORRAL_AGENT_REPORT_IN_SYNC);
    desire1(a, now, 2, copying(1, 0, 2, 9));
    desire1(a, now, 3, in_sync(1, 0, 2));
    desire1(a, now, 4, copying(1, 0, 2, 9));
    h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
    done(a, &h, 1, now);
    assert_int_equal(corral_agent_next_wakeup(a), now + BASE);
    /* A retry instant off the base grid is rounded up to it. */
    corral_agent_tick(a, now + BASE);
    h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
    done(a, &h, 1, now + BASE + 7);
    assert_int_equal(corral_agent_next_wakeup(a), now + 4 * BASE);
    /* A changed desired entry resets the backoff: it goes at once. */
    desire1(a, now + BASE + 8, 5, copying(1, 0, 2, 10));
    h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
    assert_int_equal(h.from, 10);
    corral_agent_free(a);
}

/* A4, A8: a failed acquire still acts (the application may hold it), and is
 * retried while the lease lasts; at the lease end it is released. */
static void test_failed_acquire(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 1000, LEASE, 1000);
    desire1(a, 1000, 1, primary(1, 0, 3));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 3);
    done(a, &h, 2, 1000);
    assert_true(acting(a, 1, 0, 3));
    assert_int_equal(stats(a).reports_pending, 1);
    assert_int_equal(corral_agent_next_wakeup(a), 1100);
    corral_agent_tick(a, 1100);
    h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 3);
    done(a, &h, 0, 1150);
    assert_int_equal(stats(a).reports_pending, 0); /* the failure is withdrawn */
    assert_true(acting(a, 1, 0, 3));
    no_hook(a);
    /* Fails again, then the lease runs out during the backoff. */
    desire1(a, 1200, 2, primary(1, 0, 4));
    h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 4);
    done(a, &h, 2, 1950);
    assert_int_equal(corral_agent_next_wakeup(a), 2000); /* lease end = retry here */
    corral_agent_tick(a, 2000);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    h = take(a, CORRAL_AGENT_RELEASE, 1, 0, 4);
    assert_int_equal(h.reason, CORRAL_AGENT_LEASE_LOST);
    /* A failed release is retried and stays held (A6). */
    done(a, &h, 9, 2000);
    assert_int_equal(stats(a).held, 1);
    assert_int_equal(corral_agent_next_wakeup(a), 2100);
    corral_agent_tick(a, 2100);
    h = take(a, CORRAL_AGENT_RELEASE, 1, 0, 4);
    done(a, &h, 0, 2100);
    assert_int_equal(stats(a).held, 0);
    corral_agent_free(a);
}

/* A9, A4: a partition leaving the set while acting: stop, release, drop. */
static void test_dropped_while_acting(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    desire(a, 1100, 11, NULL, 0);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(r.reason, CORRAL_AGENT_DROPPED);
    no_hook(a);
    done(a, &r, 0, 1110);
    struct corral_agent_hook d = take(a, CORRAL_AGENT_DROP, 1, 0, 5);
    no_hook(a);
    done(a, &d, 0, 1120);
    no_hook(a);
    /* Forgotten once the released report is delivered (A10). */
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 1130, out, &seq), 1);
    expect_report(&out[0], 1, 0, 5, CORRAL_AGENT_REPORT_RELEASED);
    assert_int_equal(corral_agent_heartbeat_answered(a, seq, LEASE, 0, 1140), 0);
    desire(a, 1150, 12, NULL, 0);
    assert_int_equal(stats(a).partitions, 0);
    assert_int_equal(stats(a).desired, 0);
    corral_agent_free(a);
}

/* Leaving while the acquire runs: acquire, then release, then drop. */
static void test_dropped_during_acquire(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 1000, LEASE, 1010);
    desire1(a, 1020, 10, primary(1, 0, 5));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 5);
    desire(a, 1030, 11, NULL, 0);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    no_hook(a);
    done(a, &h, 0, 1040);
    h = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(h.reason, CORRAL_AGENT_DROPPED);
    done(a, &h, 0, 1050);
    take(a, CORRAL_AGENT_DROP, 1, 0, 5);
    corral_agent_free(a);
}

/* A partition coming back while its drop runs is copied again after it. */
static void test_back_during_drop(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    desire1(a, 10, 1, in_sync(1, 0, 2));
    no_hook(a);
    desire(a, 20, 2, NULL, 0);
    struct corral_agent_hook d = take(a, CORRAL_AGENT_DROP, 1, 0, 2);
    desire1(a, 30, 3, copying(1, 0, 2, 5));
    no_hook(a);
    done(a, &d, 0, 40);
    struct corral_agent_hook h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 2);
    done(a, &h, 0, 50);
    /* Leaving again needs a new drop. */
    desire(a, 60, 4, NULL, 0);
    take(a, CORRAL_AGENT_DROP, 1, 0, 2);
    corral_agent_free(a);
}

/* A5: one hook at a time: a grant during a copy waits for the copy. */
static void test_one_hook_per_partition(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 0, LEASE, 0);
    desire1(a, 10, 1, copying(1, 0, 0, 3));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 0);
    desire1(a, 20, 2, primary(1, 0, 1));
    no_hook(a);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    done(a, &h, 0, 30);
    take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 1);
    assert_true(acting(a, 1, 0, 1));
    assert_int_equal(stats(a).reports_pending, 0); /* no longer a copying replica */
    corral_agent_free(a);
}

/* A7: reports survive lost heartbeats and are retired only by an answer
 * to a heartbeat that carried them. */
static void test_report_delivery(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    uint64_t s0 = corral_agent_heartbeat_sent(a, 5, NULL, 0, NULL); /* carries nothing */
    desire1(a, 10, 1, releasing(1, 0, 5));
    struct corral_agent_report out[16];
    uint64_t s1, s2;
    assert_int_equal(carry(a, 20, out, &s1), 1); /* lost */
    assert_int_equal(carry(a, 30, out, &s2), 1);
    /* The answer to s0, which did not carry it, retires nothing. */
    assert_int_equal(corral_agent_heartbeat_answered(a, s0, LEASE, 0, 35), 0);
    assert_int_equal(stats(a).reports_pending, 1);
    assert_int_equal(corral_agent_heartbeat_answered(a, s2, LEASE, 0, 40), 0);
    assert_int_equal(stats(a).reports_pending, 0);
    uint64_t s3;
    assert_int_equal(carry(a, 50, out, &s3), 0);
    corral_agent_free(a);

    /* Room for one report a heartbeat: the one carried before goes first,
     * and a heartbeat that skipped one breaks its run. */
    a = agent_new();
    struct corral_agent_entry e[] = {releasing(1, 0, 5), releasing(1, 1, 5)};
    desire(a, 10, 1, e, 2);
    uint32_t n;
    struct corral_agent_report one;
    uint64_t t1 = corral_agent_heartbeat_sent(a, 20, &one, 1, &n);
    assert_int_equal(n, 1);
    assert_int_equal(one.partition, 0);
    uint64_t t2 = corral_agent_heartbeat_sent(a, 30, &one, 1, &n);
    assert_int_equal(one.partition, 0);
    assert_int_equal(corral_agent_heartbeat_answered(a, t1, LEASE, 0, 40), 0);
    assert_int_equal(stats(a).reports_pending, 1);
    uint64_t t3 = corral_agent_heartbeat_sent(a, 50, &one, 1, &n);
    assert_int_equal(one.partition, 1);
    assert_int_equal(corral_agent_heartbeat_answered(a, t2, LEASE, 0, 60), 0);
    assert_int_equal(stats(a).reports_pending, 1); /* t2 did not carry partition 1 */
    uint64_t t4 = corral_agent_heartbeat_sent(a, 70, NULL, 0, &n); /* carries none */
    assert_int_equal(n, 0);
    assert_int_equal(corral_agent_heartbeat_answered(a, t4, LEASE, 0, 80), 0);
    assert_int_equal(stats(a).reports_pending, 1);
    assert_int_equal(corral_agent_heartbeat_answered(a, t3, LEASE, 0, 90), 0);
    assert_int_equal(stats(a).reports_pending, 0);
    corral_agent_free(a);

    /* A report replaced after it was carried is not retired by that answer. */
    a = agent_new();
    desire1(a, 10, 1, copying(1, 0, 0, 2));
    struct corral_agent_hook h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 0);
    done(a, &h, 3, 100);
    assert_int_equal(carry(a, 120, out, &s1), 1);
    assert_int_equal(out[0].state, CORRAL_AGENT_REPORT_FAILED);
    corral_agent_tick(a, 200);
    h = take(a, CORRAL_AGENT_REPLICATE, 1, 0, 0);
    done(a, &h, 0, 210);
    assert_int_equal(corral_agent_heartbeat_answered(a, s1, LEASE, 0, 220), 0);
    assert_int_equal(carry(a, 230, out, &s2), 1);
    expect_report(&out[0], 1, 0, 0, CORRAL_AGENT_REPORT_IN_SYNC);
    corral_agent_free(a);
}

/* A11: shutdown stops everything at once and releases what is held. */
static void test_shutdown(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    lease(a, 1000, LEASE, 1000);
    struct corral_agent_entry e[] = {primary(1, 0, 5), primary(1, 1, 6), copying(1, 2, 0, 4)};
    desire(a, 1000, 1, e, 3);
    struct corral_agent_hook a0 = take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 5);
    struct corral_agent_hook a1 = take(a, CORRAL_AGENT_ACQUIRE, 1, 1, 6);
    struct corral_agent_hook c2 = take(a, CORRAL_AGENT_REPLICATE, 1, 2, 0);
    done(a, &a0, 0, 1010);
    corral_agent_shutdown(a, 1020);
    assert_int_equal(stats(a).acting, 0);
    assert_false(corral_agent_shutdown_done(a));
    struct corral_agent_hook r0 = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    assert_int_equal(r0.reason, CORRAL_AGENT_SHUTDOWN);
    no_hook(a);
    done(a, &a1, 0, 1030);
    struct corral_agent_hook r1 = take(a, CORRAL_AGENT_RELEASE, 1, 1, 6);
    assert_int_equal(r1.reason, CORRAL_AGENT_SHUTDOWN);
    done(a, &c2, 7, 1040); /* not retried */
    done(a, &r0, 0, 1050);
    assert_false(corral_agent_shutdown_done(a));
    done(a, &r1, 0, 1060);
    assert_true(corral_agent_shutdown_done(a));
    /* The reports are there for a last heartbeat. */
    struct corral_agent_report out[16];
    uint64_t seq;
    assert_int_equal(carry(a, 1060, out, &seq), 3);
    expect_report(&out[0], 1, 0, 5, CORRAL_AGENT_REPORT_RELEASED);
    expect_report(&out[1], 1, 1, 6, CORRAL_AGENT_REPORT_RELEASED);
    expect_report(&out[2], 1, 2, 0, CORRAL_AGENT_REPORT_FAILED);
    corral_agent_tick(a, 5000);
    no_hook(a);
    /* Nothing new after it: no acquire, no drop. */
    desire1(a, 1070, 2, primary(1, 3, 9));
    no_hook(a);
    assert_false(corral_agent_acting(a, 1, 3, NULL));
    corral_agent_shutdown(a, 1080); /* idempotent */
    assert_true(corral_agent_shutdown_done(a));
    corral_agent_free(a);
}

/* A9: an invalid set is refused whole and changes nothing. */
static void test_invalid_sets(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    struct corral_agent_entry bad[] = {
        {1, 0, 0, CORRAL_AGENT_IN_SYNC, 5, 0},                      /* no role */
        {1, 0, 3, CORRAL_AGENT_IN_SYNC, 5, 0},                      /* bad role */
        {1, 0, CORRAL_AGENT_PRIMARY, CORRAL_AGENT_COPYING, 5, 0},   /* copying primary */
        {1, 0, CORRAL_AGENT_PRIMARY, CORRAL_AGENT_IN_SYNC, 0, 0},   /* epoch 0 */
        {1, 0, CORRAL_AGENT_REPLICA, CORRAL_AGENT_RELEASING, 5, 0}, /* releasing replica */
        {1, 0, CORRAL_AGENT_REPLICA, 0, 5, 0},                      /* no state */
        {1, 0, CORRAL_AGENT_REPLICA, 9, 5, 0},                      /* bad state */
        {1, CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX, CORRAL_AGENT_REPLICA, CORRAL_AGENT_IN_SYNC, 5,
         0}, /* partition out of range */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct corral_agent_entry e[] = {primary(1, 0, 5), bad[i]};
        e[1].partition = bad[i].partition == 0 ? 1 : bad[i].partition;
        assert_int_equal(corral_agent_set_desired(a, 1100, 20, e, 2), CORRAL_EINVAL);
    }
    struct corral_agent_entry dup[] = {primary(1, 0, 5), in_sync(2, 0, 1), in_sync(1, 0, 5)};
    assert_int_equal(corral_agent_set_desired(a, 1100, 20, dup, 3), CORRAL_EINVAL);
    assert_int_equal(corral_agent_set_desired(a, 1100, 20, NULL, 1), CORRAL_EINVAL);
    assert_int_equal(corral_agent_index(a), 10);
    assert_true(acting(a, 1, 0, 5));
    assert_int_equal(stats(a).partitions, 1);
    no_hook(a);
    corral_agent_free(a);
}

/* A10: the set and table limits, and allocation failures change nothing. */
static void test_limits(void **state)
{
    (void)state;
    uint32_t max = CORRAL_AGENT_PARTITIONS_MAX;
    struct corral_agent_entry *e = calloc((size_t)max + 1, sizeof(*e));
    assert_non_null(e);
    struct corral_agent *a = agent_new();
    for (uint32_t i = 0; i <= max; i++)
        e[i] = in_sync(1 + i / 1000, i % 1000, 1);
    assert_int_equal(corral_agent_set_desired(a, 0, 1, e, max + 1), CORRAL_EFULL);
    assert_int_equal(stats(a).partitions, 0);
    desire(a, 0, 1, e, max); /* set A: in sync, no hooks */
    assert_int_equal(stats(a).desired, max);
    no_hook(a);
    /* Set B, all different: A is being dropped, 2 x max kept. */
    for (uint32_t i = 0; i < max; i++)
        e[i].resource += 1000;
    desire(a, 0, 2, e, max);
    assert_int_equal(stats(a).partitions, 2 * max);
    assert_int_equal(stats(a).hooks_in_flight, max);
    /* Set C, different again: no room while A drains. */
    for (uint32_t i = 0; i < max; i++)
        e[i].resource += 1000;
    assert_int_equal(corral_agent_set_desired(a, 0, 3, e, max), CORRAL_EFULL);
    assert_int_equal(corral_agent_index(a), 2);
    /* One drop done makes room for one; all done, C fits. */
    struct corral_agent_hook h;
    for (uint32_t i = 0; i < max; i++) {
        assert_true(corral_agent_next_hook(a, &h));
        assert_int_equal(h.kind, CORRAL_AGENT_DROP);
        done(a, &h, 0, 1);
    }
    no_hook(a);
    desire(a, 2, 3, e, max);
    assert_int_equal(stats(a).partitions, 2 * max);
    corral_agent_free(a);

    /* Allocation failures in set_desired: nothing changes, a retry works. */
    a = acting_agent();
    struct corral_agent_entry two[] = {primary(1, 0, 5), copying(1, 1, 0, 3)};
    for (uint64_t k = 1; k <= 3; k++) {
        corral_mem_fail_after(k);
        int rc = corral_agent_set_desired(a, 1100, 11, two, 2);
        corral_mem_fail_after(0);
        if (rc == 0)
            break;
        assert_int_equal(rc, CORRAL_ENOMEM);
        assert_int_equal(corral_agent_index(a), 10);
        assert_int_equal(stats(a).partitions, 1);
        assert_true(acting(a, 1, 0, 5));
        no_hook(a);
    }
    desire(a, 1100, 11, two, 2);
    take(a, CORRAL_AGENT_REPLICATE, 1, 1, 0);
    corral_agent_free(a);
    free(e);
}

/* splitmix64, for a shuffled order. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Many partitions in any order: sorted, looked up, iterated (A4). */
static void test_many_partitions(void **state)
{
    (void)state;
    enum { N = 3000 };
    static struct corral_agent_entry e[N];
    for (uint32_t i = 0; i < N; i++)
        e[i] = i % 3 == 0 ? in_sync(i % 7, i, 1) : primary(i % 7, i, 10 + i);
    uint64_t rng = 0xa9e7;
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(&rng) % (i + 1));
        struct corral_agent_entry x = e[i];
        e[i] = e[j];
        e[j] = x;
    }
    struct corral_agent *a = agent_new();
    lease(a, 0, LEASE, 0);
    desire(a, 1, 1, e, N);
    uint32_t acquires = 0;
    struct corral_agent_hook h, prev = {0};
    while (corral_agent_next_hook(a, &h)) {
        assert_int_equal(h.kind, CORRAL_AGENT_ACQUIRE);
        if (acquires > 0)
            assert_true(h.resource > prev.resource ||
                        (h.resource == prev.resource && h.partition > prev.partition));
        prev = h;
        acquires++;
        if (acquires % 2 == 0)
            done(a, &h, 0, 2);
    }
    assert_int_equal(acquires, N - N / 3);
    uint32_t cursor = 0, seen = 0;
    struct corral_agent_primary p, last = {0};
    while (corral_agent_primary_next(a, &cursor, &p)) {
        assert_int_equal(p.partition % 3 == 0, 0);
        assert_int_equal(p.resource, p.partition % 7);
        assert_int_equal(p.epoch, 10 + p.partition);
        if (seen > 0)
            assert_true(p.resource > last.resource ||
                        (p.resource == last.resource && p.partition > last.partition));
        last = p;
        seen++;
    }
    assert_int_equal(seen, acquires);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(acting(a, i % 7, i, 10 + i), i % 3 != 0);
    corral_agent_free(a);
}

/* Hook ids: unknown, not handed out yet, or done twice are refused. */
static void test_hook_done_refusals(void **state)
{
    (void)state;
    struct corral_agent *a = agent_new();
    struct corral_agent_entry e[] = {copying(1, 0, 0, 2), copying(1, 1, 0, 2)};
    desire(a, 0, 1, e, 2);
    assert_int_equal(stats(a).hooks_queued, 2);
    struct corral_agent_hook h;
    assert_true(corral_agent_next_hook(a, &h));
    assert_int_equal(corral_agent_hook_done(a, h.id + 1, 0, 1), CORRAL_ENOTFOUND); /* queued */
    assert_int_equal(corral_agent_hook_done(a, 0, 0, 1), CORRAL_ENOTFOUND);
    assert_int_equal(corral_agent_hook_done(a, 999, 0, 1), CORRAL_ENOTFOUND);
    done(a, &h, 0, 1);
    assert_int_equal(corral_agent_hook_done(a, h.id, 0, 1), CORRAL_ENOTFOUND); /* twice */
    assert_int_equal(stats(a).hooks_in_flight, 1);
    corral_agent_free(a);
}

/* A clock reading earlier than one given does not undo an expiry. */
static void test_clock_back(void **state)
{
    (void)state;
    struct corral_agent *a = acting_agent();
    corral_agent_tick(a, 2000);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    struct corral_agent_hook r = take(a, CORRAL_AGENT_RELEASE, 1, 0, 5);
    done(a, &r, 0, 1500);
    /* A heartbeat "sent" at 1500 answered: its end (2500) counts from the
     * given send time, but the agent's clock stays at 2000. */
    lease(a, 1500, LEASE, 1600);
    assert_int_equal(corral_agent_lease_end(a), 2500);
    desire1(a, 1700, 11, primary(1, 0, 6));
    take(a, CORRAL_AGENT_ACQUIRE, 1, 0, 6);
    corral_agent_tick(a, 2499);
    assert_true(acting(a, 1, 0, 6));
    corral_agent_tick(a, 2500);
    assert_false(corral_agent_acting(a, 1, 0, NULL));
    corral_agent_free(a);
}

/* ---- A seeded random run (AGENT_SEED=n replays one) ---- */

#define RP 8 /* partitions 0..RP-1 of resource 1 */
#define PENDING_MAX 16

struct rmodel {
    uint64_t now;
    uint64_t index;
    uint64_t last_epoch;              /* the cluster-wide counter */
    uint64_t epoch[RP];               /* each partition's current grant */
    uint64_t stopped_max[RP];         /* the largest epoch it stopped acting at */
    uint64_t act_epoch[RP];           /* 0: not acting */
    bool held[RP];                    /* acquire seen, no release completed ok */
    struct corral_agent_hook run[RP]; /* the hook in flight per partition */
    bool running[RP];
    uint64_t pending[PENDING_MAX]; /* heartbeats awaiting an answer */
    uint64_t kinds[5];             /* hooks seen, by kind */
    uint64_t lease_lost;           /* releases for a lost lease */
    uint32_t n_pending;
};

/* After every call: A2 (no acting at or past the lease end), A3, A5, A6. */
static void rcheck(struct corral_agent *a, struct rmodel *m)
{
    struct corral_agent_hook h;
    while (corral_agent_next_hook(a, &h)) {
        uint32_t p = h.partition;
        assert_true(h.resource == 1 && p < RP);
        assert_false(m->running[p]); /* A5 */
        m->running[p] = true;
        m->run[p] = h;
        m->kinds[h.kind]++;
        m->lease_lost += h.reason == CORRAL_AGENT_LEASE_LOST;
        if (h.kind == CORRAL_AGENT_ACQUIRE) {
            assert_true(m->now < corral_agent_lease_end(a)); /* A3 */
            assert_true(h.epoch > m->stopped_max[p]);
            m->held[p] = true;
        } else if (h.kind == CORRAL_AGENT_RELEASE) {
            assert_true(m->held[p]); /* A6 */
            assert_false(corral_agent_acting(a, 1, p, NULL));
        } else {
            assert_false(m->held[p]); /* A6: the release comes first */
        }
    }
    uint32_t n_acting = 0;
    for (uint32_t p = 0; p < RP; p++) {
        uint64_t e = 0;
        bool act = corral_agent_acting(a, 1, p, &e);
        if (act) {
            n_acting++;
            assert_true(m->now < corral_agent_lease_end(a)); /* A2 */
            assert_true(m->held[p]);
            assert_true(e > m->stopped_max[p]);
            assert_true(e >= m->act_epoch[p] || m->act_epoch[p] == 0);
        }
        if (m->act_epoch[p] != 0 && (!act || e != m->act_epoch[p]) && !act)
            m->stopped_max[p] =
                m->act_epoch[p] > m->stopped_max[p] ? m->act_epoch[p] : m->stopped_max[p];
        m->act_epoch[p] = act ? e : 0;
    }
    struct corral_agent_stats s = stats(a);
    assert_int_equal(s.acting, n_acting);
    if (n_acting > 0)
        assert_true(corral_agent_next_wakeup(a) <= corral_agent_lease_end(a));
}

static void rdesire(struct corral_agent *a, struct rmodel *m, uint64_t *rng)
{
    struct corral_agent_entry e[RP];
    uint32_t n = 0;
    for (uint32_t p = 0; p < RP; p++) {
        uint64_t pick = rng_next(rng) % 100;
        if (pick < 10)
            continue;
        if (pick < 20 || m->epoch[p] == 0)
            m->epoch[p] = ++m->last_epoch; /* a new grant */
        if (pick < 45)
            e[n++] = primary(1, p, m->epoch[p]);
        else if (pick < 55)
            e[n++] = releasing(1, p, m->epoch[p]);
        else if (pick < 80)
            e[n++] = in_sync(1, p, m->epoch[p]);
        else
            e[n++] = copying(1, p, m->epoch[p], 2);
    }
    if (rng_next(rng) % 20 == 0 && m->index > 0) {
        assert_int_equal(corral_agent_set_desired(a, m->now, m->index - 1, e, n), CORRAL_EINVAL);
        return;
    }
    desire(a, m->now, ++m->index, e, n);
}

static void ranswer(struct corral_agent *a, struct rmodel *m, uint64_t *rng)
{
    if (m->n_pending == 0)
        return;
    uint32_t i = (uint32_t)(rng_next(rng) % m->n_pending);
    uint64_t seq = m->pending[i];
    m->pending[i] = m->pending[--m->n_pending];
    if (rng_next(rng) % 5 == 0)
        return; /* lost */
    int rc = corral_agent_heartbeat_answered(a, seq, LEASE, 0, m->now);
    assert_true(rc == 0 || rc == CORRAL_ENOTFOUND);
}

static void rhook_done(struct corral_agent *a, struct rmodel *m, uint64_t *rng)
{
    uint32_t p = (uint32_t)(rng_next(rng) % RP);
    if (!m->running[p])
        return;
    int err = rng_next(rng) % 4 == 0 ? 1 : 0;
    done(a, &m->run[p], err, m->now);
    m->running[p] = false;
    if (err == 0 && m->run[p].kind == CORRAL_AGENT_RELEASE)
        m->held[p] = false;
}

/* A host that always wakes when told: time moves on in steps, with a tick
 * at every wakeup passed on the way. */
static void radvance(struct corral_agent *a, struct rmodel *m, uint64_t by)
{
    uint64_t to = m->now + by;
    for (int guard = 0; guard < 1000; guard++) {
        uint64_t w = corral_agent_next_wakeup(a);
        if (w > to)
            break;
        if (w > m->now)
            m->now = w;
        corral_agent_tick(a, m->now);
        rcheck(a, m);
    }
    m->now = to;
}

static void test_random(void **state)
{
    (void)state;
    const char *env = getenv("AGENT_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : 0xa9e47ull;
    uint64_t rng = seed;
    struct rmodel *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    struct corral_agent *a = agent_new();
    long ops = 20000;
    for (long op = 0; op < ops; op++) {
        radvance(a, m, rng_next(&rng) % 200);
        uint64_t pick = rng_next(&rng) % 100;
        if (pick < 15) {
            rdesire(a, m, &rng);
        } else if (pick < 40 && m->n_pending < PENDING_MAX) {
            /* Send times lag the clock a little: the host stamps the send
             * before it hands the heartbeat to the network. */
            m->pending[m->n_pending++] = corral_agent_heartbeat_sent(a, m->now, NULL, 0, NULL);
        } else if (pick < 60) {
            ranswer(a, m, &rng);
        } else if (pick < 90) {
            rhook_done(a, m, &rng);
        } else if (pick < 99) {
            corral_agent_tick(a, m->now);
        } else if (op > ops - 100) {
            corral_agent_shutdown(a, m->now);
        }
        rcheck(a, m);
    }
    /* Drain: every hook completes ok, then nothing is held after a shutdown. */
    corral_agent_shutdown(a, m->now);
    for (int round = 0; round < 100; round++) {
        rcheck(a, m);
        for (uint32_t p = 0; p < RP; p++) {
            if (!m->running[p])
                continue;
            done(a, &m->run[p], 0, m->now);
            m->running[p] = false;
            if (m->run[p].kind == CORRAL_AGENT_RELEASE)
                m->held[p] = false;
        }
        radvance(a, m, 100);
    }
    rcheck(a, m);
    assert_true(corral_agent_shutdown_done(a));
    print_message("agent random: seed %llu, %ld ops, hooks %llu acquire %llu release (%llu "
                  "lease lost) %llu replicate %llu drop\n",
                  (unsigned long long)seed, ops, (unsigned long long)m->kinds[1],
                  (unsigned long long)m->kinds[2], (unsigned long long)m->lease_lost,
                  (unsigned long long)m->kinds[3], (unsigned long long)m->kinds[4]);
    assert_true(m->kinds[1] > 0 && m->lease_lost > 0 && m->kinds[3] > 0 && m->kinds[4] > 0);
    corral_agent_free(a);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_no_acquire_without_lease),
        cmocka_unit_test(test_acquire_with_lease),
        cmocka_unit_test(test_acquire_needs_fresh_view),
        cmocka_unit_test(test_lease_expiry_boundary),
        cmocka_unit_test(test_lease_expiry_any_call),
        cmocka_unit_test(test_late_answer),
        cmocka_unit_test(test_out_of_order_answers),
        cmocka_unit_test(test_no_reacquire_after_stop),
        cmocka_unit_test(test_epoch_never_back),
        cmocka_unit_test(test_releasing),
        cmocka_unit_test(test_releasing_during_acquire),
        cmocka_unit_test(test_releasing_not_held),
        cmocka_unit_test(test_demoted),
        cmocka_unit_test(test_copying),
        cmocka_unit_test(test_failure_backoff),
        cmocka_unit_test(test_failed_acquire),
        cmocka_unit_test(test_dropped_while_acting),
        cmocka_unit_test(test_dropped_during_acquire),
        cmocka_unit_test(test_back_during_drop),
        cmocka_unit_test(test_one_hook_per_partition),
        cmocka_unit_test(test_report_delivery),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_invalid_sets),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_many_partitions),
        cmocka_unit_test(test_hook_done_refusals),
        cmocka_unit_test(test_clock_back),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
