/* Unit tests for src/core/controller*.c: the step order on join, crash,
 * drain, rejoin, weight change, zone loss and R change; the new-leader
 * wait; throttles; idempotence; reports; determinism; and seeded loops of
 * random events that must converge to the placement engine's balanced
 * target. Every command is checked (C1-C7) before the real state machine
 * applies it. CORRAL_CONTROLLER_SEEDS=<n> runs more loop seeds,
 * CORRAL_CONTROLLER_SEED=<s> replays one (printed when it gets stuck). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral.h"
#include "core/controller.h"
#include "ctl_world.h"
#include "util/mem.h"
#include "util/rbuf.h"

#define TICK_MS 50
/* The liveness defaults: the new-leader wait is (600 + 1000) x 1.1 + 50,
 * a lease is over 1000 x 1.1 + 50 after the last answer. */
#define SETTLE_MS 1810
#define LEASE_OVER_MS 1150

/* One op as the checker saw it go by. */
struct seen {
    uint32_t resource, partition, member;
    uint8_t op;
    uint64_t epoch;
    uint32_t seq; /* command number */
};

#define SEEN_MAX 200000
static struct seen seen[SEEN_MAX];
static uint32_t n_seen, n_cmds_seen;
static uint32_t max_copies_member, max_copies_total;
static struct corral_controller_config cfg_used;

static const struct corral_state_member *member_of(struct ctl_world *w, uint32_t id)
{
    return corral_state_member_by_id(w->st, id);
}

/* An in-sync floor a test holds one resource to (floor_in_sync 0: none):
 * every partition of it that had data keeps at least floor_in_sync in-sync
 * replicas in every state it passes through (checked before every command
 * and after every step). floor_peak: the most replicas a row held. */
static uint32_t floor_res, floor_in_sync, floor_peak;

static void check_floor(struct ctl_world *w)
{
    if (floor_in_sync == 0)
        return;
    const struct corral_state_resource *sr = corral_state_resource_by_id(w->st, floor_res);
    assert_non_null(sr);
    for (uint32_t p = 0; p < sr->partitions; p++) {
        const struct corral_state_partition *ps = &sr->parts[p];
        uint32_t in_sync = 0;
        for (uint32_t j = 0; j < ps->n_replicas; j++)
            in_sync += ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
        if (ps->epoch > 0 && in_sync < floor_in_sync)
            fail_msg("partition %u: %u in-sync replicas, below %u", p, in_sync, floor_in_sync);
        floor_peak = ps->n_replicas > floor_peak ? ps->n_replicas : floor_peak;
    }
}

/* C1-C7 on one command, against the state it is about to be applied to. */
static void check_cmd(struct ctl_world *w, const struct corral_state_cmd *c, void *arg)
{
    (void)arg;
    n_cmds_seen++;
    check_floor(w);
    bool settled = corral_liveness_settled(&w->lv, w->now_ms);
    if (c->type == CORRAL_STATE_MEMBER_STATUS && c->status == CORRAL_MEMBER_DEAD) {
        assert_true(settled); /* C3 */
        assert_true(corral_liveness_dead(&w->lv, c->id, w->now_ms));
        seen[n_seen++] = (struct seen){0, 0, c->id, 0, 0, n_cmds_seen};
        return;
    }
    if (c->type != CORRAL_STATE_PARTITION_OPS)
        return;
    assert_true(c->n_ops >= 1 && c->n_ops <= cfg_used.ops_per_command_max); /* C7 */
    const struct corral_state_resource *sr = corral_state_resource_by_id(w->st, c->id);
    assert_non_null(sr);
    for (uint32_t i = 0; i < c->n_ops; i++) {
        const struct corral_partition_opv *op = &c->ops[i];
        assert_true(i == 0 || op->partition >= c->ops[i - 1].partition);
        const struct corral_state_partition *ps = &sr->parts[op->partition];
        assert_int_equal(op->epoch, ps->epoch); /* C1: the CAS */
        if (op->op == CORRAL_OP_CLEAR)          /* C3 */
            assert_true(ps->releasing ||
                        (settled && corral_liveness_lease_over(&w->lv, op->member, w->now_ms)));
        if (op->op == CORRAL_OP_GRANT || op->op == CORRAL_OP_GRANT_DRAINING) { /* C2 */
            bool cleared = i > 0 && c->ops[i - 1].partition == op->partition &&
                           c->ops[i - 1].op == CORRAL_OP_CLEAR;
            assert_true(ps->primary == CORRAL_STATE_NONE || cleared);
            assert_false(settled && corral_liveness_lease_over(&w->lv, op->member, w->now_ms));
            assert_int_equal(member_of(w, op->member)->status, op->op == CORRAL_OP_GRANT
                                                                   ? CORRAL_MEMBER_ACTIVE
                                                                   : CORRAL_MEMBER_DRAINING);
            /* The last resort only: no active in-sync replica could. */
            for (uint32_t j = 0; op->op == CORRAL_OP_GRANT_DRAINING && j < ps->n_replicas; j++) {
                const struct corral_state_replica *rp = &ps->replicas[j];
                assert_false(
                    rp->member != ps->primary && rp->state == CORRAL_REPLICA_IN_SYNC &&
                    member_of(w, rp->member)->status == CORRAL_MEMBER_ACTIVE &&
                    !(settled && corral_liveness_lease_over(&w->lv, rp->member, w->now_ms)));
            }
        }
        if (op->op == CORRAL_OP_DROP)
            assert_int_not_equal(op->member, ps->primary); /* C4 */
        assert_true(n_seen < SEEN_MAX);
        seen[n_seen++] =
            (struct seen){c->id, op->partition, op->member, op->op, op->epoch, n_cmds_seen};
    }
}

/* After every step: throttles (C5) and no partition that had data left
 * without an in-sync replica. */
static void check_state(struct ctl_world *w)
{
    uint32_t copies[WORLD_IDS_MAX] = {0}, total = 0;
    for (uint32_t i = 0; i < corral_state_resource_count(w->st); i++) {
        const struct corral_state_resource *sr = corral_state_resource_at(w->st, i);
        for (uint32_t p = 0; p < sr->partitions; p++) {
            const struct corral_state_partition *ps = &sr->parts[p];
            uint32_t in_sync = 0;
            for (uint32_t j = 0; j < ps->n_replicas; j++) {
                if (ps->replicas[j].state == CORRAL_REPLICA_COPYING) {
                    copies[ps->replicas[j].member]++;
                    total++;
                } else {
                    in_sync++;
                }
            }
            if (ps->epoch > 0)
                assert_true(in_sync > 0);
        }
    }
    for (uint32_t id = 0; id < WORLD_IDS_MAX; id++) {
        assert_true(copies[id] <= cfg_used.copies_per_member_max);
        max_copies_member = copies[id] > max_copies_member ? copies[id] : max_copies_member;
    }
    assert_true(total <= cfg_used.copies_max);
    max_copies_total = total > max_copies_total ? total : max_copies_total;
    assert_true(corral_state_check(w->st));
    check_floor(w);
}

static struct ctl_world *world_new(const struct corral_controller_config *cfg)
{
    struct ctl_world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    if (cfg == NULL)
        corral_controller_config_default(&cfg_used);
    else
        cfg_used = *cfg;
    world_init(w, &cfg_used, 0);
    w->check = check_cmd;
    n_seen = n_cmds_seen = 0;
    max_copies_member = max_copies_total = 0;
    floor_res = floor_in_sync = floor_peak = 0;
    return w;
}

static void world_free(struct ctl_world *w)
{
    world_close(w);
    free(w);
}

/* tick, evaluate, apply, check; no reports. */
static struct corral_controller_output step(struct ctl_world *w)
{
    struct corral_controller_output o;
    world_tick(w, TICK_MS);
    assert_int_equal(world_step(w, &o), 0); /* nothing refused */
    check_state(w);
    return o;
}

static bool holds(const struct corral_state_partition *ps, uint32_t member);

static uint64_t ctx_seed;
static uint32_t ctx_event;

/* What is left when a convergence fails. */
static void print_stuck(struct ctl_world *w, const struct corral_controller_output *o)
{
    const struct corral_controller_stats *s = &o->stats;
    fprintf(stderr, "seed %llu event %u\n", (unsigned long long)ctx_seed, ctx_event);
    fprintf(stderr,
            "stuck: cmds %u out_of_target %u in_flight %u throttled %u lost %u deferred %u\n",
            o->n_cmds, s->out_of_target, s->in_flight, s->throttled, s->lost, s->deferred);
    for (uint32_t i = 0; i < corral_state_resource_count(w->st); i++) {
        const struct corral_state_resource *sr = corral_state_resource_at(w->st, i);
        const struct corral_placement_result *t = corral_controller_target(w->ctl, sr->id);
        for (uint32_t p = 0, shown = 0; p < sr->partitions && shown < 6; p++) {
            const struct corral_state_partition *ps = &sr->parts[p];
            const uint32_t *row = &t->map.slots[(size_t)p * sr->replicas];
            bool same = ps->primary == row[0] && ps->n_replicas <= sr->replicas;
            for (uint32_t j = 0; j < ps->n_replicas && same; j++)
                same = ps->replicas[j].state == CORRAL_REPLICA_IN_SYNC;
            for (uint32_t j = 0; j < sr->replicas && same; j++)
                same = row[j] == CORRAL_PLACEMENT_NONE || holds(ps, row[j]);
            if (same)
                continue;
            shown++;
            fprintf(stderr, "  res %u p %u epoch %llu primary %u%s replicas", sr->id, p,
                    (unsigned long long)ps->epoch, ps->primary, ps->releasing ? " releasing" : "");
            for (uint32_t j = 0; j < ps->n_replicas; j++) {
                const struct corral_state_member *m = member_of(w, ps->replicas[j].member);
                fprintf(stderr, " %u%s(st%u%s)", ps->replicas[j].member,
                        ps->replicas[j].state == CORRAL_REPLICA_COPYING ? "c" : "", m->status,
                        w->alive[m->id] ? "" : ",down");
            }
            fprintf(stderr, " target");
            for (uint32_t j = 0; j < sr->replicas; j++)
                fprintf(stderr, " %d", (int)row[j]);
            fprintf(stderr, "\n");
        }
    }
}

static uint32_t converge(struct ctl_world *w)
{
    struct corral_controller_output o;
    for (uint32_t round = 1; round <= 2000; round++) {
        o = step(w);
        uint32_t reports = world_report_all(w);
        check_state(w);
        if (o.n_cmds == 0 && reports == 0 && o.stats.in_flight == 0 && o.stats.out_of_target == 0 &&
            o.stats.recomputed == 0)
            return round;
    }
    print_stuck(w, &o);
    fail_msg("no convergence");
    return 0;
}

static uint32_t add_workers(struct ctl_world *w, uint32_t n, uint32_t zones, const char *prefix)
{
    uint32_t first = 0;
    for (uint32_t i = 0; i < n; i++) {
        char name[32], zone[16];
        snprintf(name, sizeof(name), "%s%u", prefix, i);
        snprintf(zone, sizeof(zone), "z%u", i % zones);
        uint32_t id = world_member(w, name, zone, 1, CORRAL_MEMBER_WORKER);
        first = i == 0 ? id : first;
    }
    return first;
}

/* A settled cluster of n workers over `zones` zones holding one balanced
 * resource. */
static struct ctl_world *cluster(uint32_t n, uint32_t zones, uint32_t P, uint8_t R, uint32_t *res,
                                 const struct corral_controller_config *cfg)
{
    struct ctl_world *w = world_new(cfg);
    add_workers(w, n, zones, "w");
    *res = world_resource(w, "r", P, R);
    while (!corral_liveness_settled(&w->lv, w->now_ms))
        world_tick(w, TICK_MS);
    converge(w);
    assert_true(world_balanced(w, *res));
    n_seen = 0;
    return w;
}

static const struct corral_state_partition *part(struct ctl_world *w, uint32_t res, uint32_t p)
{
    return &corral_state_resource_by_id(w->st, res)->parts[p];
}

static bool holds(const struct corral_state_partition *ps, uint32_t member)
{
    for (uint32_t j = 0; j < ps->n_replicas; j++)
        if (ps->replicas[j].member == member)
            return true;
    return false;
}

static uint32_t count_holding(struct ctl_world *w, uint32_t res, uint32_t member, bool primary)
{
    const struct corral_state_resource *sr = corral_state_resource_by_id(w->st, res);
    uint32_t n = 0;
    for (uint32_t p = 0; p < sr->partitions; p++)
        n += primary ? sr->parts[p].primary == member : holds(&sr->parts[p], member);
    return n;
}

/* The first op index of kind `op` on (partition, member) seen, or -1. */
static int seen_find(uint32_t partition, uint8_t op, uint32_t member, int from)
{
    for (uint32_t i = (uint32_t)from; i < n_seen; i++)
        if (seen[i].op == op && seen[i].partition == partition &&
            (member == 0 || seen[i].member == member))
            return (int)i;
    return -1;
}

/* ---- Bootstrap ---- */

static void test_bootstrap(void **unused)
{
    (void)unused;
    struct ctl_world *w = world_new(NULL);
    add_workers(w, 6, 3, "w");
    uint32_t res = world_resource(w, "r", 64, 3);
    /* Before the new-leader wait ends: never-granted partitions are
     * placed in sync and granted at once (C3), none copied (C5). */
    struct corral_controller_output o = step(w);
    assert_false(corral_liveness_settled(&w->lv, w->now_ms));
    assert_int_equal(o.n_cmds, 1);
    assert_int_equal(o.stats.fresh, 64 * 3);
    assert_int_equal(o.stats.grants, 64);
    assert_int_equal(o.stats.copies, 0);
    for (uint32_t p = 0; p < 64; p++) {
        assert_int_not_equal(part(w, res, p)->primary, CORRAL_STATE_NONE);
        assert_int_equal(part(w, res, p)->n_replicas, 3);
    }
    o = step(w);
    assert_int_equal(o.n_cmds, 0);
    assert_true(world_balanced(w, res));
    world_free(w);
}

/* A bootstrap larger than one evaluation's budget takes several, each
 * within commands_max x ops_per_command_max (C7). */
static void test_bounded_output(void **unused)
{
    (void)unused;
    struct corral_controller_config cfg;
    corral_controller_config_default(&cfg);
    cfg.commands_max = 2;
    cfg.ops_per_command_max = 64; /* 16 partitions of 4 ops */
    struct ctl_world *w = world_new(&cfg);
    add_workers(w, 5, 1, "w");
    uint32_t res = world_resource(w, "r", 100, 3);
    uint32_t evals = 0;
    for (;;) {
        struct corral_controller_output o = step(w);
        assert_true(o.n_cmds <= 2);
        if (o.n_cmds == 0)
            break;
        evals++;
    }
    assert_int_equal(evals, 4); /* 100 partitions, 32 per evaluation */
    assert_true(world_balanced(w, res));
    world_free(w);
}

/* ---- Join ---- */

/* A join copies to the new member first; a partition whose target primary
 * is the new member hands off only once its copy is in sync; surplus goes
 * last. */
static void test_join(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 96, 3, &res, NULL);
    uint32_t id = world_member(w, "new", "z0", 1, CORRAL_MEMBER_WORKER);
    struct corral_controller_output o = step(w);
    assert_true(o.stats.copies > 0);
    /* Hand-offs between members already in sync may start at once (the
     * engine rebalances primaries); nothing is granted while set. */
    assert_int_equal(o.stats.grants, 0);
    converge(w);
    assert_true(world_balanced(w, res));
    /* z0 now has three members for its 96 rows (zone cap 1 of R = 3). */
    assert_int_equal(count_holding(w, res, id, false), 32);
    for (uint32_t p = 0; p < 96; p++) {
        int add = seen_find(p, CORRAL_OP_ADD_COPYING, id, 0);
        int mark = seen_find(p, CORRAL_OP_MARK_IN_SYNC, id, 0);
        int grant = seen_find(p, CORRAL_OP_GRANT, id, 0);
        if (add < 0) {
            assert_int_equal(grant, -1); /* no primary without a replica */
            continue;
        }
        assert_true(mark > add);
        if (grant >= 0) {
            /* copy, in sync, release, then grant: the hand-off */
            int rel = seen_find(p, CORRAL_OP_RELEASE, 0, mark);
            assert_true(rel > mark && grant > rel);
            assert_true(seen_find(p, CORRAL_OP_CLEAR, 0, rel) < grant);
        }
    }
    world_free(w);
}

/* ---- Crash ---- */

static void stop(struct ctl_world *w, uint32_t id)
{
    w->alive[id] = false;
}

/* A crash: once the lease is over, one evaluation clears every primary of
 * the member and promotes an in-sync replica (epoch + 1, C9), then the
 * member is declared dead and its replicas are re-created elsewhere. */
static void test_crash(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 96, 3, &res, NULL);
    uint32_t victim = corral_state_member_at(w->st, 2)->id;
    uint32_t had[96], n_had = 0;
    uint64_t epochs[96];
    for (uint32_t p = 0; p < 96; p++) {
        epochs[p] = part(w, res, p)->epoch;
        if (part(w, res, p)->primary == victim)
            had[n_had++] = p;
    }
    assert_true(n_had > 0);
    stop(w, victim);
    /* Within the lease: nothing. */
    for (uint64_t t = 0; t + TICK_MS < LEASE_OVER_MS; t += TICK_MS)
        assert_int_equal(step(w).n_cmds, 0);
    struct corral_controller_output o;
    do
        o = step(w);
    while (o.n_cmds == 0);
    /* The first command is the failover: CLEAR + GRANT, nothing else. */
    assert_int_equal(o.cmds[0].type, CORRAL_STATE_PARTITION_OPS);
    assert_int_equal(o.cmds[0].n_ops, 2 * n_had);
    for (uint32_t i = 0; i < o.cmds[0].n_ops; i += 2) {
        assert_int_equal(o.cmds[0].ops[i].op, CORRAL_OP_CLEAR);
        assert_int_equal(o.cmds[0].ops[i + 1].op, CORRAL_OP_GRANT);
    }
    assert_int_equal(o.cmds[1].type, CORRAL_STATE_MEMBER_STATUS);
    assert_int_equal(o.stats.deaths, 1);
    assert_int_equal(o.stats.clears, n_had);
    assert_int_equal(o.stats.grants, n_had);
    /* Applied: every partition has a live primary, new epochs. */
    for (uint32_t k = 0; k < n_had; k++) {
        const struct corral_state_partition *ps = part(w, res, had[k]);
        assert_int_not_equal(ps->primary, CORRAL_STATE_NONE);
        assert_int_not_equal(ps->primary, victim);
        assert_true(ps->epoch > epochs[had[k]]);
    }
    assert_int_equal(member_of(w, victim)->status, CORRAL_MEMBER_DEAD);
    /* The same evaluation also started re-replication of the other
     * partitions; the promoted ones follow once their grant applied. */
    converge(w);
    assert_true(world_balanced(w, res));
    assert_int_equal(count_holding(w, res, victim, false), 0);
    for (uint32_t k = 0; k < n_had; k++) {
        int grant = seen_find(had[k], CORRAL_OP_GRANT, 0, 0);
        int add = seen_find(had[k], CORRAL_OP_ADD_COPYING, 0, 0);
        assert_true(grant >= 0 && (add < 0 || add > grant));
    }
    world_free(w);
}

/* ---- Drain ---- */

static void test_drain(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 96, 3, &res, NULL);
    uint32_t id = corral_state_member_at(w->st, 0)->id;
    uint32_t primaries = count_holding(w, res, id, true);
    assert_true(primaries > 0);
    bool held[96];
    for (uint32_t p = 0; p < 96; p++)
        held[p] = holds(part(w, res, p), id);
    world_status(w, id, CORRAL_MEMBER_DRAINING);
    struct corral_controller_output o = step(w);
    /* Primaries hand off first: RELEASE, never a GRANT while set (C2).
     * (Others' primaries may move too, to rebalance them.) */
    assert_true(o.stats.releases >= primaries);
    assert_int_equal(o.stats.grants, 0);
    for (uint32_t p = 0; p < 96; p++)
        if (part(w, res, p)->primary == id)
            assert_true(part(w, res, p)->releasing);
    converge(w);
    assert_int_equal(count_holding(w, res, id, false), 0);
    assert_int_equal(member_of(w, id)->status, CORRAL_MEMBER_DRAINING); /* the API leaves */
    assert_true(world_balanced(w, res));
    for (uint32_t p = 0; p < 96; p++) {
        int rel = seen_find(p, CORRAL_OP_RELEASE, id, 0);
        int drop = seen_find(p, CORRAL_OP_DROP, id, 0);
        assert_true(drop >= 0 || !held[p]);
        if (rel >= 0)
            assert_true(seen_find(p, CORRAL_OP_CLEAR, id, rel) < drop); /* hand off, drop */
    }
    /* Leaving is the API's: once empty the state takes LEFT. */
    world_status(w, id, CORRAL_MEMBER_LEFT);
    assert_int_equal(step(w).n_cmds, 0);
    world_free(w);
}

/* A drain does not take partitions offline: with every live member
 * draining (nothing can host, so nothing moves), a crash's partitions go
 * to a draining replica (GRANT_DRAINING, only then), and once an active
 * member is back they move to it as a drain moves them. */
static void test_drain_last_resort(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(3, 1, 12, 3, &res, NULL);
    uint32_t a = corral_state_member_at(w->st, 0)->id, b = corral_state_member_at(w->st, 1)->id,
             c = corral_state_member_at(w->st, 2)->id;
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    memcpy(name, member_of(w, c)->name, sizeof(name));
    stop(w, c); /* c dies: a and b hold everything */
    for (uint64_t t = 0; t < LEASE_OVER_MS; t += TICK_MS)
        step(w);
    converge(w);
    assert_int_equal(member_of(w, c)->status, CORRAL_MEMBER_DEAD);
    world_status(w, a, CORRAL_MEMBER_DRAINING);
    world_status(w, b, CORRAL_MEMBER_DRAINING);
    /* Nowhere to go: both keep their rows (every row stays off its empty
     * target, so these rounds cannot converge; they must not move). */
    for (uint32_t round = 0; round < 100; round++) {
        assert_int_equal(step(w).n_cmds, 0);
        assert_int_equal(world_report_all(w), 0);
    }
    uint32_t on_b = count_holding(w, res, b, true);
    assert_true(on_b > 0 && count_holding(w, res, a, true) == 12 - on_b);
    assert_int_equal(count_holding(w, res, a, false), 12);
    n_seen = 0;
    stop(w, b);
    for (uint64_t t = 0; t < 2 * LEASE_OVER_MS; t += TICK_MS) {
        step(w);
        world_report_all(w);
    }
    assert_int_equal(count_holding(w, res, a, true), 12);
    uint32_t last_resort = 0;
    for (uint32_t i = 0; i < n_seen; i++) {
        assert_int_not_equal(seen[i].op, CORRAL_OP_GRANT);
        last_resort += seen[i].op == CORRAL_OP_GRANT_DRAINING;
    }
    assert_int_equal(last_resort, on_b);
    /* c comes back: the drain goes on, through copies and hand-offs. */
    assert_int_equal(world_member(w, name, "z0", 1, CORRAL_MEMBER_WORKER), c);
    converge(w);
    assert_int_equal(count_holding(w, res, c, true), 12);
    assert_int_equal(count_holding(w, res, a, false), 0);
    world_free(w);
}

/* ---- Rejoin ---- */

static void test_rejoin(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(5, 1, 80, 2, &res, NULL);
    uint32_t id = corral_state_member_at(w->st, 1)->id;
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    memcpy(name, member_of(w, id)->name, sizeof(name));
    stop(w, id);
    for (uint64_t t = 0; t < LEASE_OVER_MS; t += TICK_MS)
        world_tick(w, TICK_MS);
    converge(w);
    assert_int_equal(member_of(w, id)->status, CORRAL_MEMBER_DEAD);
    assert_int_equal(count_holding(w, res, id, false), 0);
    assert_true(world_balanced(w, res));
    /* The same name comes back: the same id, active, and a fair share. */
    assert_int_equal(world_member(w, name, "z0", 1, CORRAL_MEMBER_WORKER), id);
    assert_int_equal(member_of(w, id)->status, CORRAL_MEMBER_ACTIVE);
    converge(w);
    assert_true(world_balanced(w, res));
    assert_int_equal(count_holding(w, res, id, false), 80 * 2 / 5);
    assert_int_equal(count_holding(w, res, id, true), 80 / 5);
    world_free(w);
}

/* ---- Weight ---- */

static void test_weight_change(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(4, 1, 100, 2, &res, NULL);
    const struct corral_state_member *m = corral_state_member_at(w->st, 0);
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    memcpy(name, m->name, sizeof(name));
    uint32_t id = m->id;
    world_member(w, name, "z0", 4, CORRAL_MEMBER_WORKER); /* weight 1 -> 4 of 7 */
    converge(w);
    assert_true(world_balanced(w, res));
    uint32_t n = count_holding(w, res, id, false);
    assert_true(n >= 99 && n <= 100); /* capped at P: 200 x 4 / 7 = 114 */
    world_free(w);
}

/* ---- Zone loss ---- */

static void test_zone_loss(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(9, 3, 120, 3, &res, NULL);
    for (uint32_t i = 0; i < corral_state_member_count(w->st); i++) {
        const struct corral_state_member *m = corral_state_member_at(w->st, i);
        if (strcmp(m->zone, "z0") == 0)
            stop(w, m->id);
    }
    struct corral_controller_output o;
    do
        o = step(w);
    while (o.stats.grants == 0);
    /* One evaluation: every partition has a primary again. */
    for (uint32_t p = 0; p < 120; p++) {
        uint32_t pr = part(w, res, p)->primary;
        assert_int_not_equal(pr, CORRAL_STATE_NONE);
        assert_true(w->alive[pr]);
    }
    assert_int_equal(o.stats.deaths, 3);
    converge(w);
    assert_true(world_balanced(w, res));
    world_free(w);
}

/* ---- R change ---- */

static void test_replicas_change(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 60, 3, &res, NULL);
    world_resource(w, "r", 60, 2);
    struct corral_controller_output o = step(w);
    assert_int_equal(o.stats.drops, 60); /* every replica in sync: drop at once */
    assert_int_equal(o.stats.copies, 0);
    converge(w);
    assert_true(world_balanced(w, res));
    world_resource(w, "r", 60, 5);
    converge(w);
    assert_true(world_balanced(w, res));
    for (uint32_t p = 0; p < 60; p++)
        assert_int_equal(part(w, res, p)->n_replicas, 5);
    world_free(w);
}

/* ---- New-leader wait ---- */

static void test_new_leader_wait(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 48, 3, &res, NULL);
    uint32_t victim = corral_state_member_at(w->st, 3)->id;
    uint32_t some = corral_state_member_at(w->st, 0)->id;
    /* A new leader takes office: its view knows no heartbeat. The victim
     * crashed just before; another member is releasing a partition. */
    corral_liveness_close(&w->lv);
    struct corral_liveness_config lc;
    corral_liveness_config_default(&lc);
    assert_int_equal(corral_liveness_init(&w->lv, &lc, w->now_ms), 0);
    uint64_t took = w->now_ms;
    corral_controller_free(w->ctl);
    assert_int_equal(corral_controller_new(&cfg_used, &w->ctl), 0);
    stop(w, victim);
    bool victims[48];
    for (uint32_t p = 0; p < 48; p++)
        victims[p] = part(w, res, p)->primary == victim;
    uint32_t p_rel = 0;
    while (part(w, res, p_rel)->primary != some)
        p_rel++;
    uint64_t e_rel = part(w, res, p_rel)->epoch;
    struct corral_partition_opv rel = {p_rel, CORRAL_OP_RELEASE, some, e_rel};
    struct corral_state_cmd c = {
        .type = CORRAL_STATE_PARTITION_OPS, .id = res, .n_ops = 1, .ops = &rel};
    assert_int_equal(world_apply(w, &c), CORRAL_STATE_OK);
    /* A new resource: never granted. */
    uint32_t res2 = world_resource(w, "fresh", 8, 2);
    bool granted_fresh = false, released_regranted = false;
    while (w->now_ms + TICK_MS < took + SETTLE_MS) {
        struct corral_controller_output o = step(w);
        assert_int_equal(o.stats.deaths, 0);
        assert_int_equal(o.stats.clears, 0);
        granted_fresh |= part(w, res2, 0)->primary != CORRAL_STATE_NONE;
        /* The releasing primary reports: hand-off before settled is fine. */
        world_report_all(w);
        released_regranted |=
            part(w, res, p_rel)->epoch > e_rel && part(w, res, p_rel)->primary != CORRAL_STATE_NONE;
        for (uint32_t p = 0; p < 48; p++)
            if (victims[p]) /* no lease-expiry CLEAR before settled (C3) */
                assert_int_equal(part(w, res, p)->primary, victim);
    }
    assert_true(granted_fresh);
    assert_true(released_regranted);
    assert_int_equal(member_of(w, victim)->status, CORRAL_MEMBER_ACTIVE);
    /* Settled: now the victim is dead and its primaries move. */
    converge(w);
    assert_int_equal(member_of(w, victim)->status, CORRAL_MEMBER_DEAD);
    assert_true(world_balanced(w, res));
    assert_true(world_balanced(w, res2));
    world_free(w);
}

/* ---- Throttles ---- */

static void test_throttles(void **unused)
{
    (void)unused;
    struct corral_controller_config cfg;
    corral_controller_config_default(&cfg);
    cfg.copies_per_member_max = 2;
    cfg.copies_max = 5;
    uint32_t res;
    struct ctl_world *w = cluster(4, 1, 64, 2, &res, &cfg);
    world_member(w, "a", "z0", 1, CORRAL_MEMBER_WORKER);
    world_member(w, "b", "z0", 1, CORRAL_MEMBER_WORKER);
    world_member(w, "c", "z0", 1, CORRAL_MEMBER_WORKER);
    struct corral_controller_output o = step(w);
    assert_int_equal(o.stats.copies, 5); /* 2 + 2 + 1: the cluster cap */
    assert_true(o.stats.throttled > 0);
    /* Without reports nothing more starts. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(step(w).stats.copies, 0);
    converge(w); /* check_state held both caps at every step */
    assert_int_equal(max_copies_member, 2);
    assert_int_equal(max_copies_total, 5);
    assert_true(world_balanced(w, res));
    world_free(w);
}

/* ---- Idempotence ---- */

static uint32_t ops_on(const struct corral_controller_output *o, uint32_t res, uint32_t p)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < o->n_cmds; i++)
        for (uint32_t k = 0; o->cmds[i].type == CORRAL_STATE_PARTITION_OPS && k < o->cmds[i].n_ops;
             k++)
            n += o->cmds[i].id == res && o->cmds[i].ops[k].partition == p;
    return n;
}

static struct corral_rbuf *encoded[2 * CORRAL_CONTROLLER_COMMANDS_MAX];

static uint32_t keep(const struct corral_controller_output *o, uint32_t at)
{
    for (uint32_t i = 0; i < o->n_cmds; i++)
        assert_non_null(encoded[at + i] = corral_state_cmd_encode(&o->cmds[i]));
    return at + o->n_cmds;
}

static void test_idempotence(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 96, 3, &res, NULL);
    uint32_t victim = corral_state_member_at(w->st, 4)->id;
    world_member(w, "new", "z1", 2, CORRAL_MEMBER_WORKER);
    stop(w, victim);
    for (uint64_t t = 0; t < LEASE_OVER_MS; t += TICK_MS)
        world_tick(w, TICK_MS);
    struct corral_controller_output a, b;
    assert_int_equal(corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &a), 0);
    assert_true(a.n_cmds > 0 && a.stats.deaths == 1);
    uint32_t n = keep(&a, 0);
    uint32_t touched[96];
    for (uint32_t p = 0; p < 96; p++)
        touched[p] = ops_on(&a, res, p); /* before b reuses the buffers */
    /* Again, before anything applied, later: nothing on those partitions,
     * no second death. */
    world_tick(w, TICK_MS);
    assert_int_equal(corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &b), 0);
    assert_int_equal(b.stats.deaths, 0);
    for (uint32_t p = 0; p < 96; p++)
        assert_true(touched[p] == 0 || ops_on(&b, res, p) == 0);
    uint32_t n2 = keep(&b, n);
    /* Both batches apply without a refusal. */
    for (uint32_t i = 0; i < n2; i++) {
        struct corral_state_result r;
        assert_int_equal(corral_state_apply(w->st, ++w->index, encoded[i], &r), 0);
        assert_int_equal(r.status, CORRAL_STATE_OK);
    }
    /* A proposal that is lost and retried after forget: the duplicate of
     * an applied one is refused whole and changes nothing (C6); a second
     * MEMBER_STATUS dead is OK and changes nothing either. */
    corral_controller_forget(w->ctl);
    for (uint32_t i = 0; i < n; i++) {
        struct corral_state_cmd dc;
        assert_int_equal(corral_state_cmd_decode(encoded[i], &dc), 0);
        if (dc.type != CORRAL_STATE_PARTITION_OPS)
            continue;
        struct corral_state_result r;
        const struct corral_state_partition *parts = corral_state_resource_by_id(w->st, res)->parts;
        struct corral_state_partition before[96];
        memcpy(before, parts, sizeof(before));
        uint64_t assigned = corral_state_assign_index(w->st);
        assert_int_equal(corral_state_apply(w->st, ++w->index, encoded[i], &r), 0);
        assert_int_not_equal(r.status, CORRAL_STATE_OK);
        assert_memory_equal(before, parts, sizeof(before));
        assert_int_equal(corral_state_assign_index(w->st), assigned);
    }
    for (uint32_t i = 0; i < n2; i++)
        corral_rbuf_unref(encoded[i]);
    converge(w);
    assert_true(world_balanced(w, res));
    world_free(w);
}

/* Same inputs, same commands (C8): two controllers side by side. */
static void test_deterministic(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(7, 3, 64, 3, &res, NULL);
    world_member(w, "x", "z2", 3, CORRAL_MEMBER_WORKER);
    stop(w, corral_state_member_at(w->st, 1)->id);
    world_status(w, corral_state_member_at(w->st, 5)->id, CORRAL_MEMBER_DRAINING);
    for (uint64_t t = 0; t < LEASE_OVER_MS; t += TICK_MS)
        world_tick(w, TICK_MS);
    struct corral_controller *other;
    assert_int_equal(corral_controller_new(NULL, &other), 0);
    struct corral_controller_output a, b;
    assert_int_equal(corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &a), 0);
    uint32_t n = keep(&a, 0);
    assert_int_equal(corral_controller_evaluate(other, w->st, &w->lv, w->now_ms, &b), 0);
    assert_int_equal(a.n_cmds, b.n_cmds);
    for (uint32_t i = 0; i < n; i++) {
        struct corral_rbuf *x = corral_state_cmd_encode(&b.cmds[i]);
        assert_int_equal(x->len, encoded[i]->len);
        assert_memory_equal(x->data, encoded[i]->data, x->len);
        corral_rbuf_unref(x);
        corral_rbuf_unref(encoded[i]);
    }
    corral_controller_free(other);
    world_free(w);
}

/* ---- Reports ---- */

static struct corral_controller_output rep(struct ctl_world *w, uint32_t member, const char *res,
                                           uint32_t p, uint64_t epoch, uint8_t state)
{
    struct corral_progress r = {0, res, (uint32_t)strlen(res), p, epoch, state};
    struct corral_controller_output o;
    assert_int_equal(corral_controller_report(w->ctl, w->st, &w->lv, w->now_ms, member, &r, &o), 0);
    return o;
}

static void test_reports(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(4, 1, 16, 2, &res, NULL);
    uint32_t id = world_member(w, "new", "z0", 1, CORRAL_MEMBER_WORKER);
    step(w); /* copies to the new member */
    uint32_t p = 0;
    while (!holds(part(w, res, p), id))
        p++;
    uint64_t e = part(w, res, p)->epoch;
    uint32_t other = part(w, res, p)->primary;
    /* Stale or wrong: nothing. */
    assert_int_equal(rep(w, id, "r", p, e + 1, CORRAL_PROGRESS_IN_SYNC).n_cmds, 0);
    assert_int_equal(rep(w, id, "nope", p, e, CORRAL_PROGRESS_IN_SYNC).n_cmds, 0);
    assert_int_equal(rep(w, id, "r", 999, e, CORRAL_PROGRESS_IN_SYNC).n_cmds, 0);
    assert_int_equal(rep(w, other, "r", p, e, CORRAL_PROGRESS_IN_SYNC).n_cmds, 0); /* in sync */
    assert_int_equal(rep(w, id, "r", p, e, CORRAL_PROGRESS_RELEASED).n_cmds, 0);   /* no primary */
    /* Unasked (an agent refusing an epoch it stopped at, agent.h A3): the
     * primary will not act at e again, so it is cleared and granted on. */
    struct corral_controller_output un = rep(w, other, "r", p, e, CORRAL_PROGRESS_RELEASED);
    assert_int_equal(un.n_cmds, 1);
    assert_int_equal(un.cmds[0].ops[0].op, CORRAL_OP_CLEAR);
    corral_controller_forget(w->ctl); /* not applied: nothing in flight */
    assert_int_equal(rep(w, id, "r", p, e, CORRAL_PROGRESS_FAILED).n_cmds, 0);
    struct corral_progress bad = {0, "r", 1, p, e, 9};
    struct corral_controller_output o;
    assert_int_equal(corral_controller_report(w->ctl, w->st, &w->lv, w->now_ms, id, &bad, &o),
                     CORRAL_EINVAL);
    /* in_sync at the epoch: MARK_IN_SYNC with the CAS (here by id). */
    struct corral_progress by_id = {res, NULL, 0, p, e, CORRAL_PROGRESS_IN_SYNC};
    assert_int_equal(corral_controller_report(w->ctl, w->st, &w->lv, w->now_ms, id, &by_id, &o), 0);
    assert_int_equal(o.n_cmds, 1);
    assert_int_equal(o.cmds[0].n_ops, 1);
    assert_int_equal(o.cmds[0].ops[0].op, CORRAL_OP_MARK_IN_SYNC);
    assert_int_equal(o.cmds[0].ops[0].epoch, e);
    assert_int_equal(world_apply(w, &o.cmds[0]), CORRAL_STATE_OK);
    assert_int_equal(rep(w, id, "r", p, e, CORRAL_PROGRESS_IN_SYNC).n_cmds, 0); /* once */
    /* released after a RELEASE: CLEAR and GRANT in one command. */
    struct corral_partition_opv rel = {p, CORRAL_OP_RELEASE, other, e};
    struct corral_state_cmd c = {
        .type = CORRAL_STATE_PARTITION_OPS, .id = res, .n_ops = 1, .ops = &rel};
    assert_int_equal(world_apply(w, &c), CORRAL_STATE_OK);
    assert_int_equal(rep(w, other, "r", p, e - 1, CORRAL_PROGRESS_RELEASED).n_cmds, 0);
    o = rep(w, other, "r", p, e, CORRAL_PROGRESS_RELEASED);
    assert_int_equal(o.n_cmds, 1);
    assert_int_equal(o.cmds[0].n_ops, 2);
    assert_int_equal(o.cmds[0].ops[0].op, CORRAL_OP_CLEAR);
    assert_int_equal(o.cmds[0].ops[1].op, CORRAL_OP_GRANT);
    assert_int_not_equal(o.cmds[0].ops[1].member, other);
    assert_int_equal(world_apply(w, &o.cmds[0]), CORRAL_STATE_OK);
    assert_true(part(w, res, p)->epoch > e);
    /* The grant is in flight for the controller: it proposes nothing for
     * that partition that conflicts, and converges. */
    converge(w);
    assert_true(world_balanced(w, res));
    world_free(w);
}

/* ---- R = 1 and full rows: copy first ---- */

/* The steps of one copy-first move of partition p from `from` to `to`, in
 * the ops seen: the copy is added while `from` stays primary, marked in
 * sync, then `from` releases and is cleared with the grant to `to` in one
 * command, and only then is `from`'s replica dropped; no other drop or
 * grant on the partition before. */
static void expect_copy_first(uint32_t p, uint32_t from, uint32_t to)
{
    int add = seen_find(p, CORRAL_OP_ADD_COPYING, to, 0);
    assert_true(add >= 0);
    int mark = seen_find(p, CORRAL_OP_MARK_IN_SYNC, to, add);
    int rel = seen_find(p, CORRAL_OP_RELEASE, from, 0);
    int clr = seen_find(p, CORRAL_OP_CLEAR, from, 0);
    int grant = seen_find(p, CORRAL_OP_GRANT, to, 0);
    int drop = seen_find(p, CORRAL_OP_DROP, from, 0);
    assert_true(mark > add && rel > mark && clr > rel && grant > clr && drop > grant);
    assert_int_equal(seen[grant].seq, seen[clr].seq);
    assert_int_equal(seen_find(p, CORRAL_OP_GRANT, 0, 0), grant);
    assert_int_equal(seen_find(p, CORRAL_OP_DROP, 0, 0), drop);
    assert_int_equal(seen_find(p, CORRAL_OP_ADD_COPYING, 0, 0), add);
}

/* With R = 1 a partition's only replica is its primary. The state takes
 * one copy over R (state.h S2), so a move copies first: the new replica
 * is added copying while the old one stays primary, and only once it is
 * in sync is the primary handed off (release, then clear and grant) and
 * the old replica dropped. No partition is ever without an in-sync
 * replica (the floor, before every command). A join and a drain move that
 * way; a crash leaves the partition waiting for its member (lost). */
static void test_single_replica(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(4, 1, 16, 1, &res, NULL);
    floor_res = res;
    floor_in_sync = 1;
    uint32_t old[16];
    uint64_t epochs[16];
    for (uint32_t p = 0; p < 16; p++) {
        assert_int_equal(part(w, res, p)->n_replicas, 1);
        old[p] = part(w, res, p)->primary;
        epochs[p] = part(w, res, p)->epoch;
    }
    /* A join: copies start, nothing is blocked, nothing else happens. */
    uint32_t id = world_member(w, "new", "z0", 1, CORRAL_MEMBER_WORKER);
    struct corral_controller_output o = step(w);
    assert_true(o.stats.copies > 0);
    assert_int_equal(o.stats.blocked, 0);
    assert_int_equal(o.stats.drops + o.stats.releases + o.stats.grants + o.stats.clears, 0);
    uint32_t p0 = 16, moving = 0;
    for (uint32_t p = 0; p < 16; p++) {
        const struct corral_state_partition *ps = part(w, res, p);
        if (!holds(ps, id))
            continue;
        p0 = p0 == 16 ? p : p0;
        moving++;
        assert_int_equal(ps->n_replicas, 2); /* R + 1 */
        assert_int_equal(ps->primary, old[p]);
        assert_false(ps->releasing);
        assert_int_equal(ps->replicas[0].member, old[p]);
        assert_int_equal(ps->replicas[0].state, CORRAL_REPLICA_IN_SYNC);
        assert_int_equal(ps->replicas[1].member, id);
        assert_int_equal(ps->replicas[1].state, CORRAL_REPLICA_COPYING);
    }
    assert_int_equal(moving, o.stats.copies);
    /* Follow p0: in sync, the old primary still acting ... */
    const struct corral_state_partition *ps = part(w, res, p0);
    assert_true(world_report_all(w) > 0);
    check_state(w);
    assert_int_equal(ps->replicas[1].state, CORRAL_REPLICA_IN_SYNC);
    assert_int_equal(ps->primary, old[p0]);
    /* ... asked to release, both replicas kept ... */
    step(w);
    ps = part(w, res, p0);
    assert_true(ps->releasing);
    assert_int_equal(ps->primary, old[p0]);
    assert_int_equal(ps->n_replicas, 2);
    /* ... released: cleared and granted to the copy, the old one kept ... */
    world_report_all(w);
    check_state(w);
    ps = part(w, res, p0);
    assert_int_equal(ps->primary, id);
    assert_false(ps->releasing);
    assert_true(ps->epoch > epochs[p0]);
    assert_int_equal(ps->n_replicas, 2);
    assert_true(holds(ps, old[p0]));
    /* ... and only now dropped. */
    step(w);
    ps = part(w, res, p0);
    assert_int_equal(ps->n_replicas, 1);
    assert_int_equal(ps->replicas[0].member, id);
    assert_int_equal(ps->primary, id);
    converge(w);
    assert_true(world_balanced(w, res));
    assert_int_equal(floor_peak, 2);
    uint32_t got = count_holding(w, res, id, false);
    assert_true(got >= 3 && got <= 4); /* 16 rows over 5 members */
    for (uint32_t p = 0; p < 16; p++) {
        if (holds(part(w, res, p), id))
            expect_copy_first(p, old[p], id);
        else
            assert_int_equal(seen_find(p, CORRAL_OP_DROP, 0, 0), -1); /* unmoved */
    }

    /* A drain: the same steps, onto the members that stay. */
    uint32_t dr = corral_state_member_at(w->st, 0)->id;
    assert_true(count_holding(w, res, dr, true) > 0);
    for (uint32_t p = 0; p < 16; p++)
        old[p] = part(w, res, p)->primary;
    n_seen = 0;
    world_status(w, dr, CORRAL_MEMBER_DRAINING);
    converge(w);
    assert_true(world_balanced(w, res));
    assert_int_equal(count_holding(w, res, dr, false), 0);
    for (uint32_t p = 0; p < 16; p++)
        if (old[p] == dr)
            expect_copy_first(p, dr, part(w, res, p)->primary);

    /* A crash: the only copy is on the lost member; kept, and waited for. */
    uint32_t victim = part(w, res, 0)->primary;
    stop(w, victim);
    for (uint64_t t = 0; t < LEASE_OVER_MS; t += TICK_MS)
        o = step(w);
    o = step(w);
    assert_int_equal(part(w, res, 0)->primary, CORRAL_STATE_NONE); /* cleared, kept */
    assert_true(holds(part(w, res, 0), victim));
    assert_int_equal(part(w, res, 0)->n_replicas, 1); /* nothing copied from nothing */
    assert_true(o.stats.lost > 0);
    /* It comes back under its name: granted again, data and all. */
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    memcpy(name, member_of(w, victim)->name, sizeof(name));
    world_member(w, name, "z0", 1, CORRAL_MEMBER_WORKER);
    step(w);
    assert_int_equal(part(w, res, 0)->primary, victim);
    world_free(w);
}

/* A full row at R = 3 moves copy first too: two members drain and one
 * joins at once, in one zone (so some rows lose two members), with agents
 * slower than the controller (three evaluations between reports). Each
 * copy goes into R + 1 and the replica it replaces is dropped only once a
 * copy is in sync: no partition ever has fewer than R in-sync replicas. */
static void test_full_row(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 1, 60, 3, &res, NULL);
    floor_res = res;
    floor_in_sync = 3;
    uint32_t a = corral_state_member_at(w->st, 0)->id, b = corral_state_member_at(w->st, 1)->id;
    uint32_t both = 0;
    for (uint32_t p = 0; p < 60; p++)
        both += holds(part(w, res, p), a) && holds(part(w, res, p), b);
    assert_true(both > 0);
    world_status(w, a, CORRAL_MEMBER_DRAINING);
    world_status(w, b, CORRAL_MEMBER_DRAINING);
    world_member(w, "new", "z0", 1, CORRAL_MEMBER_WORKER);
    bool done = false;
    uint32_t waited = 0;
    for (uint32_t round = 1; round <= 3000 && !done; round++) {
        struct corral_controller_output o = step(w);
        waited += o.stats.blocked;
        if (round % 3 != 0)
            continue;
        uint32_t reports = world_report_all(w);
        check_state(w);
        done = o.n_cmds == 0 && reports == 0 && o.stats.in_flight == 0 &&
               o.stats.out_of_target == 0 && o.stats.recomputed == 0;
    }
    assert_true(done);
    assert_true(world_balanced(w, res));
    assert_int_equal(count_holding(w, res, a, false), 0);
    assert_int_equal(count_holding(w, res, b, false), 0);
    assert_int_equal(floor_peak, 4); /* rows did hold R + 1 */
    /* A row losing two members, full with its first copy still running,
     * waited for that copy rather than drop an in-sync replica for the
     * second. */
    assert_true(waited > 0);
    /* Every drop came after a copy on its partition was marked in sync. */
    for (uint32_t i = 0; i < n_seen; i++) {
        if (seen[i].op != CORRAL_OP_DROP)
            continue;
        int mark = seen_find(seen[i].partition, CORRAL_OP_MARK_IN_SYNC, 0, 0);
        assert_true(mark >= 0 && seen[mark].seq < seen[i].seq);
    }
    world_free(w);
}

/* ---- Roles ---- */

/* Coordinators host nothing and are never declared dead by the
 * controller; a node with both roles registers as a worker. */
static void test_roles(void **unused)
{
    (void)unused;
    struct ctl_world *w = world_new(NULL);
    uint32_t coord = world_member(w, "coord", "z0", 1, CORRAL_MEMBER_COORDINATOR);
    add_workers(w, 3, 1, "w");
    uint32_t res = world_resource(w, "r", 12, 2);
    stop(w, coord);
    for (int i = 0; i < 60; i++)
        step(w);
    converge(w);
    assert_true(world_balanced(w, res));
    assert_int_equal(count_holding(w, res, coord, false), 0);
    assert_int_equal(member_of(w, coord)->status, CORRAL_MEMBER_ACTIVE);
    world_free(w);
}

/* ---- Memory ---- */

/* An evaluation that runs out of memory proposes nothing and marks
 * nothing: the next one gives what a fresh controller gives. Once the
 * engines exist, a steady evaluation allocates nothing, and one after an
 * event only what the engine allocates per call. */
static void test_out_of_memory(void **unused)
{
    (void)unused;
    uint32_t res;
    struct ctl_world *w = cluster(6, 3, 64, 3, &res, NULL);
    world_resource(w, "other", 16, 2);
    world_member(w, "new", "z1", 1, CORRAL_MEMBER_WORKER);
    world_tick(w, TICK_MS);
    struct corral_controller_output o;
    int failures = 0;
    for (uint64_t k = 1;; k++) {
        struct corral_controller *c;
        assert_int_equal(corral_controller_new(&cfg_used, &c), 0);
        corral_mem_fail_after(k);
        int rv = corral_controller_evaluate(c, w->st, &w->lv, w->now_ms, &o);
        corral_mem_fail_after(0);
        if (rv == 0) {
            corral_controller_free(c);
            break;
        }
        failures++;
        assert_int_equal(rv, CORRAL_ENOMEM);
        assert_int_equal(o.n_cmds, 0);
        /* Retried: exactly a fresh controller's commands. */
        struct corral_controller *fresh;
        struct corral_controller_output f;
        assert_int_equal(corral_controller_new(&cfg_used, &fresh), 0);
        assert_int_equal(corral_controller_evaluate(c, w->st, &w->lv, w->now_ms, &o), 0);
        assert_int_equal(corral_controller_evaluate(fresh, w->st, &w->lv, w->now_ms, &f), 0);
        assert_int_equal(o.n_cmds, f.n_cmds);
        for (uint32_t i = 0; i < o.n_cmds; i++) {
            assert_int_equal(o.cmds[i].n_ops, f.cmds[i].n_ops);
            assert_memory_equal(o.cmds[i].ops, f.cmds[i].ops,
                                o.cmds[i].n_ops * sizeof(*o.cmds[i].ops));
        }
        corral_controller_free(fresh);
        corral_controller_free(c);
    }
    assert_true(failures > 0);
    /* A resource deleted and another created: the merge fails at the new
     * one, with as many resources as the state. */
    struct corral_controller *c;
    assert_int_equal(corral_controller_new(&cfg_used, &c), 0);
    assert_int_equal(corral_controller_evaluate(c, w->st, &w->lv, w->now_ms, &o), 0);
    struct corral_state_cmd del = {.type = CORRAL_STATE_RESOURCE_DELETE,
                                   .id = corral_state_resource_at(w->st, 1)->id};
    assert_int_equal(world_apply(w, &del), CORRAL_STATE_OK);
    world_resource(w, "third", 24, 2);
    corral_mem_fail_after(1);
    assert_int_equal(corral_controller_evaluate(c, w->st, &w->lv, w->now_ms, &o), CORRAL_ENOMEM);
    corral_mem_fail_after(0);
    assert_int_equal(o.n_cmds, 0);
    assert_int_equal(corral_controller_evaluate(c, w->st, &w->lv, w->now_ms, &o), 0);
    assert_non_null(corral_controller_target(c, corral_state_resource_at(w->st, 1)->id));
    assert_int_equal(corral_controller_target(c, del.id), NULL);
    corral_controller_free(c);
    converge(w);
    world_tick(w, TICK_MS);
    uint64_t before = corral_mem_allocs();
    assert_int_equal(corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &o), 0);
    assert_int_equal(o.n_cmds, 0); /* steady */
    assert_int_equal(corral_mem_allocs(), before);
    world_member(w, "another", "z2", 1, CORRAL_MEMBER_WORKER);
    before = corral_mem_allocs();
    struct corral_controller_output e;
    assert_int_equal(corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &e), 0);
    assert_true(e.stats.recomputed == 2 && e.stats.copies > 0);
    /* The engine builds its member tables per call: about 33 at N = 8. */
    assert_true(corral_mem_allocs() - before <= 48 * e.stats.recomputed);
    world_free(w);
}

/* ---- Loops ---- */

static uint64_t rng_state;

static uint32_t rng_below(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Random events (join, crash, drain, rejoin, weight), each followed by a
 * convergence to the balanced target with every partition granted. */
static void loop_seed(uint64_t seed)
{
    rng_state = seed * 2654435761u + 1;
    uint32_t zones = 1 + rng_below(4), n = 4 + rng_below(6);
    /* R = 1 moves (test_single_replica), but a crash there loses the
     * partition until the member returns, which the loop does not wait for. */
    uint8_t R = (uint8_t)(2 + rng_below(3));
    struct corral_controller_config cfg;
    corral_controller_config_default(&cfg);
    cfg.copies_per_member_max = 1 + rng_below(4);
    cfg.copies_max = cfg.copies_per_member_max + rng_below(8);
    struct ctl_world *w = world_new(&cfg);
    add_workers(w, n, zones, "w");
    uint32_t res[2] = {world_resource(w, "a", 32 + rng_below(64), R),
                       world_resource(w, "b", 8 + rng_below(16), (uint8_t)(2 + rng_below(2)))};
    while (!corral_liveness_settled(&w->lv, w->now_ms))
        world_tick(w, TICK_MS); /* before it, a crash is not acted on (C3) */
    uint32_t joined = 0;
    ctx_seed = seed;
    for (uint32_t event = 0; event < 12; event++) {
        ctx_event = event;
        uint32_t count = corral_state_member_count(w->st), kind = rng_below(5);
        const struct corral_state_member *m = corral_state_member_at(w->st, rng_below(count));
        uint32_t active = 0;
        for (uint32_t i = 0; i < count; i++)
            active += corral_state_member_at(w->st, i)->status == CORRAL_MEMBER_ACTIVE &&
                      w->alive[corral_state_member_at(w->st, i)->id];
        char name[CORRAL_STATE_NAME_BYTES_MAX + 1], zone[CORRAL_STATE_ZONE_BYTES_MAX + 1];
        memcpy(name, m->name, sizeof(name));
        memcpy(zone, m->zone, sizeof(zone));
        if (kind == 0 || active < 3) {
            char nm[32], zn[16];
            snprintf(nm, sizeof(nm), "j%u", joined++);
            snprintf(zn, sizeof(zn), "z%u", rng_below(zones));
            world_member(w, nm, zn, 1, CORRAL_MEMBER_WORKER);
        } else if (kind == 1 && m->status == CORRAL_MEMBER_ACTIVE) {
            stop(w, m->id); /* crash: converge only once its lease is over */
            for (uint64_t t = 0; t < LEASE_OVER_MS; t += TICK_MS)
                step(w);
        } else if (kind == 2 && m->status == CORRAL_MEMBER_ACTIVE && w->alive[m->id]) {
            world_status(w, m->id, CORRAL_MEMBER_DRAINING);
        } else if (kind == 3 && m->status != CORRAL_MEMBER_ACTIVE) {
            if (m->status == CORRAL_MEMBER_DRAINING)
                world_status(w, m->id, CORRAL_MEMBER_ACTIVE);
            else
                world_member(w, name, zone, 1, CORRAL_MEMBER_WORKER); /* rejoin */
        } else if (m->status == CORRAL_MEMBER_ACTIVE && w->alive[m->id]) {
            world_member(w, name, zone, (uint16_t)(1 + rng_below(4)), CORRAL_MEMBER_WORKER);
        }
        converge(w);
        for (uint32_t k = 0; k < 2; k++)
            if (!world_balanced(w, res[k]))
                fail_msg("seed %llu event %u: resource %u not balanced", (unsigned long long)seed,
                         event, k);
    }
    world_free(w);
}

static void test_loop(void **unused)
{
    (void)unused;
    const char *env = getenv("CORRAL_CONTROLLER_SEEDS");
    const char *one = getenv("CORRAL_CONTROLLER_SEED");
    uint64_t seeds = env != NULL ? strtoull(env, NULL, 10) : 40;
    if (one != NULL) {
        loop_seed(strtoull(one, NULL, 10));
        return;
    }
    for (uint64_t s = 1; s <= seeds; s++)
        loop_seed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bootstrap),
        cmocka_unit_test(test_bounded_output),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_crash),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_drain_last_resort),
        cmocka_unit_test(test_rejoin),
        cmocka_unit_test(test_weight_change),
        cmocka_unit_test(test_zone_loss),
        cmocka_unit_test(test_replicas_change),
        cmocka_unit_test(test_new_leader_wait),
        cmocka_unit_test(test_throttles),
        cmocka_unit_test(test_idempotence),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_reports),
        cmocka_unit_test(test_single_replica),
        cmocka_unit_test(test_full_row),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
