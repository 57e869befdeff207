/* Unit tests for the linearizability checker: hand-written classic anomalies,
 * agreement with a brute-force reference on thousands of small random
 * histories, and large generated histories that must pass (and fail when
 * mutated) quickly. Failing randomized cases print their seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "lincheck.h"

#define P LINCHECK_PENDING
#define BUDGET LINCHECK_STEP_BUDGET_DEFAULT

static struct lincheck_op put(uint32_t key, uint64_t v, uint64_t call, uint64_t ret)
{
    return (struct lincheck_op){
        .kind = LINCHECK_PUT, .key = key, .value = v, .call_ms = call, .return_ms = ret};
}

static struct lincheck_op get(uint32_t key, uint64_t v, uint64_t call, uint64_t ret)
{
    return (struct lincheck_op){
        .kind = LINCHECK_GET, .key = key, .value = v, .call_ms = call, .return_ms = ret};
}

static struct lincheck_op del(uint32_t key, uint64_t call, uint64_t ret)
{
    return (struct lincheck_op){
        .kind = LINCHECK_DEL, .key = key, .call_ms = call, .return_ms = ret};
}

static struct lincheck_op cas(uint32_t key, uint64_t expect, uint64_t v, bool ok, uint64_t call,
                              uint64_t ret)
{
    return (struct lincheck_op){.kind = LINCHECK_CAS,
                                .key = key,
                                .value = v,
                                .expect = expect,
                                .cas_ok = ok,
                                .call_ms = call,
                                .return_ms = ret};
}

static enum lincheck_result check_n(const struct lincheck_op *ops, size_t n, char *why,
                                    size_t why_len)
{
    return lincheck_check(ops, n, BUDGET, why, why_len);
}

#define CHECK(ops) check_n((ops), sizeof(ops) / sizeof((ops)[0]), why, sizeof(why))

static void test_empty_and_sequential(void **state)
{
    (void)state;
    char why[256] = "x";
    assert_int_equal(lincheck_check(NULL, 0, BUDGET, why, sizeof(why)), LINCHECK_OK);
    assert_string_equal(why, "");
    struct lincheck_op ops[] = {
        put(1, 10, 0, 1),
        get(1, 10, 2, 3),
        put(1, 11, 4, 5),
        get(1, 11, 6, 7),
        del(1, 8, 9),
        get(1, 0, 10, 11),
        cas(1, 0, 12, true, 12, 13),
        get(1, 12, 14, 15),
        get(2, 0, 0, 100),
    };
    assert_int_equal(CHECK(ops), LINCHECK_OK);
}

static void test_stale_read(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op ops[] = {put(7, 1, 0, 10), put(7, 2, 20, 30), get(7, 1, 40, 50)};
    assert_int_equal(CHECK(ops), LINCHECK_VIOLATION);
    /* The explanation names the key and the read that cannot be placed. */
    assert_non_null(strstr(why, "key 7:"));
    assert_non_null(strstr(why, "op #2"));
    assert_non_null(strstr(why, "GET -> 1"));
}

static void test_read_never_written(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op ops[] = {put(1, 1, 0, 10), get(1, 99, 5, 50)};
    assert_int_equal(CHECK(ops), LINCHECK_VIOLATION);
}

static void test_reads_see_opposite_orders(void **state)
{
    (void)state;
    char why[256];
    /* Two concurrent writes; one reader sees 1 then 2, the other 2 then 1. */
    struct lincheck_op ops[] = {
        put(1, 1, 0, 100), put(1, 2, 0, 100), get(1, 1, 10, 20),
        get(1, 2, 30, 40), get(1, 2, 10, 20), get(1, 1, 30, 40),
    };
    assert_int_equal(CHECK(ops), LINCHECK_VIOLATION);
    /* Either single reader alone is fine. */
    assert_int_equal(check_n(ops, 4, why, sizeof(why)), LINCHECK_OK);
}

static void test_lost_write(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op ops[] = {put(1, 1, 0, 10), get(1, 1, 20, 30), get(1, 0, 40, 50)};
    assert_int_equal(CHECK(ops), LINCHECK_VIOLATION);
    struct lincheck_op ops2[] = {put(1, 1, 0, 10), put(1, 2, 20, 30), get(1, 2, 40, 50),
                                 get(1, 1, 60, 70)};
    assert_int_equal(CHECK(ops2), LINCHECK_VIOLATION);
}

static void test_concurrent_any_order(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op a[] = {put(1, 1, 0, 100), put(1, 2, 0, 100), get(1, 2, 10, 20),
                              get(1, 1, 30, 40)};
    assert_int_equal(CHECK(a), LINCHECK_OK);
    struct lincheck_op b[] = {put(1, 1, 0, 100), put(1, 2, 0, 100), get(1, 1, 10, 20),
                              get(1, 2, 30, 40)};
    assert_int_equal(CHECK(b), LINCHECK_OK);
    /* Reads overlapping a write may see old or new, in real-time order. */
    struct lincheck_op c[] = {put(1, 5, 10, 50), get(1, 0, 20, 30), get(1, 5, 25, 35),
                              get(1, 5, 60, 70)};
    assert_int_equal(CHECK(c), LINCHECK_OK);
    c[3].value = 0; /* old value after the write returned */
    assert_int_equal(CHECK(c), LINCHECK_VIOLATION);
}

static void test_closed_intervals(void **state)
{
    (void)state;
    char why[256];
    /* Call at the other op's return time: they overlap, either order. */
    struct lincheck_op touch[] = {put(1, 1, 0, 10), get(1, 0, 10, 20)};
    assert_int_equal(CHECK(touch), LINCHECK_OK);
    struct lincheck_op after[] = {put(1, 1, 0, 10), get(1, 0, 11, 20)};
    assert_int_equal(CHECK(after), LINCHECK_VIOLATION);
    struct lincheck_op instant[] = {put(1, 1, 5, 5), get(1, 1, 5, 5), get(1, 0, 5, 5)};
    assert_int_equal(CHECK(instant), LINCHECK_OK);
}

static void test_pending_writes(void **state)
{
    (void)state;
    char why[256];
    /* Took effect: seen absent, then present. */
    struct lincheck_op took[] = {put(1, 1, 0, P), get(1, 0, 5, 10), get(1, 1, 20, 30)};
    assert_int_equal(CHECK(took), LINCHECK_OK);
    /* Never took effect. */
    struct lincheck_op never[] = {put(1, 1, 0, P), get(1, 0, 500, 600)};
    assert_int_equal(CHECK(never), LINCHECK_OK);
    /* Contradiction: present, then absent again. */
    struct lincheck_op flip[] = {put(1, 1, 0, P), get(1, 1, 20, 30), get(1, 0, 40, 50)};
    assert_int_equal(CHECK(flip), LINCHECK_VIOLATION);
    /* Seen before it was called. */
    struct lincheck_op early[] = {put(1, 1, 50, P), get(1, 1, 10, 20)};
    assert_int_equal(CHECK(early), LINCHECK_VIOLATION);
    /* It takes effect at most once: 2 cannot come back after 3. */
    struct lincheck_op once[] = {put(1, 1, 0, 10), put(1, 2, 20, P), put(1, 3, 30, 40),
                                 get(1, 2, 50, 60), get(1, 3, 70, 80)};
    assert_int_equal(CHECK(once), LINCHECK_VIOLATION);
    once[4].value = 2;
    assert_int_equal(CHECK(once), LINCHECK_OK);
    /* Pending reads are dropped whatever they claim. */
    struct lincheck_op pget[] = {get(1, 99, 0, P), del(1, 0, P)};
    assert_int_equal(CHECK(pget), LINCHECK_OK);
}

static void test_cas(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op ok[] = {cas(1, 0, 1, true, 0, 10), cas(1, 0, 2, false, 20, 30),
                               cas(1, 1, 3, true, 40, 50), get(1, 3, 60, 70)};
    assert_int_equal(CHECK(ok), LINCHECK_OK);
    struct lincheck_op bad_fail[] = {put(1, 2, 0, 10), cas(1, 2, 3, false, 20, 30)};
    assert_int_equal(CHECK(bad_fail), LINCHECK_VIOLATION);
    struct lincheck_op bad_ok[] = {put(1, 2, 0, 10), cas(1, 5, 6, true, 20, 30)};
    assert_int_equal(CHECK(bad_ok), LINCHECK_VIOLATION);
    /* Concurrent CAS races: exactly one of two identical CASes may win. */
    struct lincheck_op race[] = {put(1, 1, 0, 10), cas(1, 1, 2, true, 20, 40),
                                 cas(1, 1, 3, true, 20, 40)};
    assert_int_equal(CHECK(race), LINCHECK_VIOLATION);
    race[2].cas_ok = false;
    assert_int_equal(CHECK(race), LINCHECK_OK);
    /* A pending CAS applies only if its expectation held. */
    struct lincheck_op pend[] = {put(1, 1, 0, 10), cas(1, 1, 2, false, 20, P), get(1, 2, 50, 60)};
    assert_int_equal(CHECK(pend), LINCHECK_OK);
    pend[1].expect = 7;
    assert_int_equal(CHECK(pend), LINCHECK_VIOLATION);
}

static void test_del(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op ok[] = {put(1, 1, 0, 10), del(1, 20, 30), get(1, 0, 40, 50)};
    assert_int_equal(CHECK(ok), LINCHECK_OK);
    ok[2].value = 1;
    assert_int_equal(CHECK(ok), LINCHECK_VIOLATION);
}

static void test_keys_budget_invalid(void **state)
{
    (void)state;
    char why[256];
    struct lincheck_op ops[] = {put(1, 1, 0, 10), get(1, 1, 20, 30), put(2, 1, 0, 10),
                                get(2, 5, 20, 30)};
    assert_int_equal(CHECK(ops), LINCHECK_VIOLATION);
    assert_non_null(strstr(why, "key 2:"));
    /* Out of budget is not a pass; a violation elsewhere still wins. */
    assert_int_equal(lincheck_check(ops, 2, 1, why, sizeof(why)), LINCHECK_UNKNOWN);
    assert_non_null(strstr(why, "budget"));
    assert_int_equal(lincheck_check(ops, 4, 1, why, sizeof(why)), LINCHECK_UNKNOWN);
    struct lincheck_op mixed[] = {put(1, 1, 0, 10), get(1, 1, 20, 30), get(2, 5, 0, 1)};
    assert_int_equal(lincheck_check(mixed, 3, 2, why, sizeof(why)), LINCHECK_VIOLATION);
    struct lincheck_op bad[] = {put(1, 1, 10, 5)};
    assert_int_equal(CHECK(bad), LINCHECK_INVALID);
    bad[0] = put(1, 1, 0, 5);
    bad[0].kind = 9;
    assert_int_equal(CHECK(bad), LINCHECK_INVALID);
    assert_int_equal(lincheck_check(bad, 1, BUDGET, NULL, 0), LINCHECK_INVALID);
}

/* ---- Randomized: reference checker and generators ---- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15u);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rnd(s) % n);
}

#define REF_KEYS 4
#define REF_OPS 8

/* The definition, written independently: try every order of the ops that
 * respects real time (A before B if A.return < B.call) on the whole map;
 * pending ops may be left out. No memoization, no per-key split. */
static bool ref_apply(const struct lincheck_op *op, uint64_t *v)
{
    bool pending = op->return_ms == P;
    if (op->kind == LINCHECK_PUT) {
        *v = op->value;
    } else if (op->kind == LINCHECK_DEL) {
        *v = 0;
    } else if (op->kind == LINCHECK_GET) {
        return *v == op->value;
    } else if (pending || op->cas_ok) {
        if (*v == op->expect) {
            *v = op->value;
        } else if (!pending) {
            return false;
        }
    } else {
        return *v != op->expect;
    }
    return true;
}

static bool ref_check(const struct lincheck_op *ops, size_t n, uint32_t placed, uint64_t *map)
{
    bool all = true;
    for (size_t i = 0; i < n; i++) {
        all = all && ((placed >> i) & 1u || ops[i].return_ms == P);
    }
    if (all) {
        return true;
    }
    for (size_t c = 0; c < n; c++) {
        if ((placed >> c) & 1u) {
            continue;
        }
        bool blocked = false;
        for (size_t a = 0; a < n && !blocked; a++) {
            blocked = !((placed >> a) & 1u) && a != c && ops[a].return_ms < ops[c].call_ms;
        }
        uint64_t old = map[ops[c].key];
        if (blocked || !ref_apply(&ops[c], &map[ops[c].key])) {
            map[ops[c].key] = old;
            continue;
        }
        bool ok = ref_check(ops, n, placed | (1u << c), map);
        map[ops[c].key] = old;
        if (ok) {
            return true;
        }
    }
    return false;
}

/* A small history, either arbitrary or sequentially valid then perturbed, so
 * both outcomes are common. Times are tiny so ties are frequent. */
static size_t gen_small(uint64_t seed, struct lincheck_op *ops)
{
    uint64_t s = seed;
    size_t n = 1 + below(&s, REF_OPS);
    bool valid = below(&s, 2) == 0;
    uint64_t map[REF_KEYS] = {0};
    for (size_t i = 0; i < n; i++) {
        uint64_t lp = valid ? 2 * i : below(&s, 12);
        struct lincheck_op *op = &ops[i];
        *op = (struct lincheck_op){.client = (uint32_t)i,
                                   .kind = (uint8_t)(1 + below(&s, 4)),
                                   .key = below(&s, 2),
                                   .value = 1 + below(&s, 3),
                                   .expect = below(&s, 3),
                                   .cas_ok = below(&s, 2)};
        op->call_ms = lp - (lp > 0 ? below(&s, (uint32_t)lp + 1) : 0);
        op->return_ms = below(&s, 6) == 0 ? P : lp + below(&s, 5);
        if (valid && op->kind == LINCHECK_GET) {
            op->value = map[op->key];
        }
        if (valid && op->kind == LINCHECK_CAS) {
            op->cas_ok = map[op->key] == op->expect;
        }
        bool skip = op->return_ms == P && below(&s, 2) == 0;
        if (valid && !skip) {
            uint64_t v = map[op->key];
            ref_apply(op, &v);
            map[op->key] = v;
        }
    }
    if (valid && below(&s, 2) == 0) { /* perturb one op */
        struct lincheck_op *op = &ops[below(&s, (uint32_t)n)];
        op->value = below(&s, 4);
        op->cas_ok = !op->cas_ok;
    }
    return n;
}

static void test_against_reference(void **state)
{
    (void)state;
    struct lincheck_op ops[REF_OPS];
    char why[256];
    size_t counts[3] = {0};
    for (uint64_t seed = 1; seed <= 20000; seed++) {
        size_t n = gen_small(seed, ops);
        uint64_t map[REF_KEYS] = {0};
        bool want = ref_check(ops, n, 0, map);
        enum lincheck_result got = lincheck_check(ops, n, BUDGET, why, sizeof(why));
        if (got != (want ? LINCHECK_OK : LINCHECK_VIOLATION)) {
            fprintf(stderr, "seed %llu: reference %s, lincheck %d (%s)\n", (unsigned long long)seed,
                    want ? "ok" : "violation", (int)got, why);
            fail();
        }
        counts[got]++;
    }
    printf("reference agreement: %zu ok, %zu violations over 20000 histories\n",
           counts[LINCHECK_OK], counts[LINCHECK_VIOLATION]);
    assert_true(counts[LINCHECK_OK] > 3000);
    assert_true(counts[LINCHECK_VIOLATION] > 3000);
}

/* A linearizable history: each op takes effect at a point lp on a sequential
 * map, and its [call, return] is a random interval around lp on a client that
 * is idle then. Some writes become pending, taking effect or not. Values
 * written are below 1 << 32. */
static size_t gen_large(uint64_t seed, struct lincheck_op *ops, size_t n, uint32_t clients,
                        uint32_t keys)
{
    uint64_t s = seed;
    uint64_t *map = calloc(keys, sizeof(*map));
    uint64_t *free_at = calloc(clients, sizeof(*free_at));
    assert_non_null(map);
    assert_non_null(free_at);
    uint64_t lp = 100, next_value = 1, spread = 20;
    for (size_t i = 0; i < n; i++) {
        lp += 1 + below(&s, 3);
        uint32_t c = below(&s, clients);
        for (uint32_t j = 0; j < clients && free_at[c] >= lp; j++) {
            c = free_at[j] < free_at[c] ? j : c; /* busy: take the first to be idle */
        }
        lp = free_at[c] >= lp ? free_at[c] + 1 : lp;
        struct lincheck_op *op = &ops[i];
        uint64_t earliest = lp - below(&s, (uint32_t)spread);
        *op = (struct lincheck_op){.client = c,
                                   .key = below(&s, keys),
                                   .call_ms = earliest > free_at[c] ? earliest : lp,
                                   .return_ms = lp + below(&s, (uint32_t)spread)};
        uint32_t k = below(&s, 100);
        op->kind = k < 35   ? LINCHECK_PUT
                   : k < 70 ? LINCHECK_GET
                   : k < 80 ? LINCHECK_DEL
                            : LINCHECK_CAS;
        uint64_t *v = &map[op->key];
        op->value = op->kind == LINCHECK_GET ? *v : next_value++;
        op->expect = below(&s, 2) ? *v : next_value - 1 - below(&s, 5);
        op->cas_ok = *v == op->expect;
        uint32_t fate = below(&s, 100);
        if (fate < 3) {
            op->return_ms = P;
        }
        if (fate != 0) { /* fate 0: pending and never took effect */
            *v = op->kind == LINCHECK_PUT                 ? op->value
                 : op->kind == LINCHECK_DEL               ? 0
                 : op->kind == LINCHECK_CAS && op->cas_ok ? op->value
                                                          : *v;
        }
        free_at[c] = op->return_ms == P ? lp + spread : op->return_ms;
    }
    free(free_at);
    free(map);
    return n;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#define LARGE_OPS 2000

static void test_large_linearizable_and_mutated(void **state)
{
    (void)state;
    struct lincheck_op *ops = malloc(LARGE_OPS * sizeof(*ops));
    assert_non_null(ops);
    char why[512];
    for (uint64_t seed = 1; seed <= 200; seed++) {
        gen_large(seed, ops, LARGE_OPS, 8, 20);
        enum lincheck_result r = lincheck_check(ops, LARGE_OPS, BUDGET, why, sizeof(why));
        if (r != LINCHECK_OK) {
            fprintf(stderr, "seed %llu: valid history gave %d: %s\n", (unsigned long long)seed,
                    (int)r, why);
            fail();
        }
        /* A read of a value nobody wrote can never linearize. */
        uint64_t s = seed * 7919;
        size_t i = below(&s, LARGE_OPS);
        while (ops[i].kind != LINCHECK_GET || ops[i].return_ms == P) {
            i = (i + 1) % LARGE_OPS;
        }
        ops[i].value = ((uint64_t)1 << 40) + seed;
        r = lincheck_check(ops, LARGE_OPS, BUDGET, why, sizeof(why));
        char want_key[32];
        snprintf(want_key, sizeof(want_key), "key %u:", (unsigned)ops[i].key);
        if (r != LINCHECK_VIOLATION || strstr(why, want_key) != why) {
            fprintf(stderr, "seed %llu: mutated op #%zu gave %d: %s\n", (unsigned long long)seed, i,
                    (int)r, why);
            fail();
        }
    }
    free(ops);
}

static void test_single_key_contention(void **state)
{
    (void)state;
    struct lincheck_op *ops = malloc(LARGE_OPS * sizeof(*ops));
    assert_non_null(ops);
    char why[512];
    for (uint64_t seed = 1; seed <= 20; seed++) {
        gen_large(seed, ops, LARGE_OPS, 8, 1);
        enum lincheck_result r = lincheck_check(ops, LARGE_OPS, BUDGET, why, sizeof(why));
        if (r != LINCHECK_OK) {
            fprintf(stderr, "seed %llu: gave %d: %s\n", (unsigned long long)seed, (int)r, why);
            fail();
        }
    }
    free(ops);
}

/* Not a pass/fail test: prints the cost of one typical simulator history. */
static void bench_one(const char *name, uint32_t keys, int runs)
{
    struct lincheck_op *ops = malloc(LARGE_OPS * sizeof(*ops));
    assert_non_null(ops);
    double total_ms = 0;
    for (int r = 0; r < runs; r++) {
        gen_large((uint64_t)r + 1000, ops, LARGE_OPS, 8, keys);
        double t0 = now_ms();
        assert_int_equal(lincheck_check(ops, LARGE_OPS, BUDGET, NULL, 0), LINCHECK_OK);
        total_ms += now_ms() - t0;
    }
    printf("bench %s: %.3f ms per %d-op history (8 clients, %u keys, %d runs)\n", name,
           total_ms / runs, LARGE_OPS, (unsigned)keys, runs);
    free(ops);
}

static void test_bench(void **state)
{
    (void)state;
    bench_one("typical", 20, 100);
    bench_one("one-key", 1, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_sequential),
        cmocka_unit_test(test_stale_read),
        cmocka_unit_test(test_read_never_written),
        cmocka_unit_test(test_reads_see_opposite_orders),
        cmocka_unit_test(test_lost_write),
        cmocka_unit_test(test_concurrent_any_order),
        cmocka_unit_test(test_closed_intervals),
        cmocka_unit_test(test_pending_writes),
        cmocka_unit_test(test_cas),
        cmocka_unit_test(test_del),
        cmocka_unit_test(test_keys_budget_invalid),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_large_linearizable_and_mutated),
        cmocka_unit_test(test_single_key_contention),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
