/* corral-sim: runs seeds of the deterministic simulator and reports.
 *
 *   corral-sim --seed S [--verbose]     one seed, trace on stderr
 *   corral-sim --seeds N [--first F]    seeds F .. F+N-1
 *   corral-sim --seeds N --random       N fresh random seeds (printed)
 *   --expect-violation                  succeed only if some seed breaks a
 *                                       safety property (for the deliberately
 *                                       broken core; liveness does not count)
 *
 * Exit: 0 all seeds passed (or, with --expect-violation, one failed),
 * 1 otherwise, 2 usage error. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

/* Draws a run's plan from its seed. Several profiles, so that some seeds
 * hammer elections (small batches, leader crashes) and others exercise
 * snapshots and membership. */
/* --churn: every seed takes the leader-churn branch below (the self-tests
 * use it: the bugs they plant live there). */
static bool force_churn;
/* --leases: every seed takes the lease-hazard profile at the end (small
 * clock drift, so the leader's lease margin is thin; stalled worker
 * links; frequent worker faults), where a lease counted from the wrong
 * instant shows. */
static bool force_leases;
/* --raft-only: no workers, no ownership (the Raft self-test runs faster,
 * on the seeds it was tuned on). */
static bool raft_only;
/* --calm: the coordinators run without faults (no crash, partition, loss,
 * membership change, stall); only workers crash, pause, get cut off and
 * are drained. What docs/benchmarks.md's ownership gaps are measured on. */
static bool calm;
/* --membership: every seed runs the membership operator (joins and
 * removals through the roster), outside the leader-churn profile. */
static bool force_membership;

void sim_params_from_seed(struct sim_params *p, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
#define DRAW(lo, hi)                                                                               \
    ((x = (x ^ (x >> 31)) * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull),                        \
     (uint32_t)((lo) + (x >> 33) % ((uint64_t)(hi) - (lo) + 1)))
    memset(p, 0, sizeof(*p));
    p->seed = seed;
    static const uint32_t sizes[] = {3, 3, 3, 5, 5, 7};
    p->n_voters = sizes[DRAW(0, 5)];
    p->n_keys = DRAW(1, 8);
    p->n_clients = DRAW(2, SIM_CLIENTS_MAX);
    p->loss_permille = DRAW(0, 3) == 0 ? 0 : DRAW(0, 150);
    p->dup_permille = DRAW(0, 50);
    p->delay_min_us = DRAW(100, 2000);
    /* This was DRAW(0, 1) * DRAW(0, 30000): two unsequenced writes of x,
     * undefined behaviour. gcc 12 advanced x twice and then took both
     * values from the second state; the seeds in the docs were drawn that
     * way, so it is kept, now written out for every compiler. */
    (void)DRAW(0, 0);
    uint32_t spread = DRAW(0, 30000);
    uint32_t wide = (uint32_t)((x >> 33) % 2);
    p->delay_max_us = p->delay_min_us + wide * spread;
    p->disk_min_us = DRAW(50, 1000);
    p->disk_max_us = p->disk_min_us + DRAW(0, 20000);
    p->drift_permille_max = DRAW(0, 200);
    p->crash_every_ms = DRAW(0, 4) == 0 ? 0 : DRAW(200, 2000);
    p->partition_every_ms = DRAW(0, 3) == 0 ? 0 : DRAW(200, 2000);
    p->conf_every_ms = DRAW(0, 2) == 0 ? DRAW(300, 1500) : 0;
    p->max_msg_entries = DRAW(0, 2) == 0 ? 1 : DRAW(1, 64);
    p->snapshot_every = DRAW(50, 500);
    p->snapshot_chunk_bytes = DRAW(0, 1) ? 1024 : 8192;
    p->fault_ms = DRAW(2000, 8000);
    p->restart_max_ms = 3000;
    p->partition_max_ms = 3000;
    p->leader_bias_permille = 400;
    if (force_membership)
        p->conf_every_ms = DRAW(300, 1500);
    if ((DRAW(0, 2) == 0 && !force_membership) || force_churn) {
        /* Leader churn: three voters, one entry per append, leaders
         * isolated or killed while clients keep writing to them, so that
         * logs diverge across terms as in the paper's Figure 8. */
        p->n_voters = force_churn && (seed & 1) ? 5 : 3;
        p->max_msg_entries = 1;
        p->delay_min_us = DRAW(1000, 5000);
        p->delay_max_us = p->delay_min_us + DRAW(0, 20000);
        p->crash_every_ms = DRAW(100, 500);
        p->restart_max_ms = DRAW(50, 600);
        p->partition_every_ms = DRAW(100, 500);
        p->partition_max_ms = DRAW(100, 800);
        p->leader_bias_permille = 800;
        p->nemesis_permille = DRAW(50, 300);
        p->conf_every_ms = 0;
    }
    p->fsync_crash_permille = DRAW(0, 1) ? DRAW(5, 100) : 0;
    p->n_workers = DRAW(3, 6);
    p->n_zones = DRAW(1, 3);
    p->n_resources = DRAW(1, 2);
    p->partitions_max = DRAW(0, 3) == 0 ? 64 : 16;
    p->heartbeat_ms = 250;
    p->lease_ms = 1000;
    p->worker_fault_every_ms = DRAW(0, 3) == 0 ? 0 : DRAW(200, 1500);
    p->worker_fault_max_ms = DRAW(300, 3000);
    p->owner_op_every_ms = DRAW(300, 2000);
    p->slow_permille = DRAW(0, 1) ? DRAW(5, 50) : 0;
    if (raft_only)
        p->n_workers = 0;
    if (calm) {
        p->crash_every_ms = p->partition_every_ms = p->conf_every_ms = 0;
        p->loss_permille = p->dup_permille = p->nemesis_permille = 0;
        p->fsync_crash_permille = p->slow_permille = 0;
        p->worker_fault_every_ms = DRAW(500, 1500);
    }
    if (DRAW(0, 3) == 0 || force_leases) {
        p->drift_permille_max = DRAW(0, 20);
        p->slow_permille = DRAW(30, 100);
        p->worker_fault_every_ms = DRAW(100, 400);
    }
    /* Drawn last, so that the draws above (and the seeds in the docs)
     * stay as they were. */
    p->slow_disk_every_ms = DRAW(0, 2) == 0 ? DRAW(500, 2500) : 0;
    if (calm)
        p->slow_disk_every_ms = 0;
#undef DRAW
}

/* --gaps: the ownership gaps of every seed, pooled by what ended the
 * previous primary's turn, printed as percentiles in simulated ms. */
struct gap_pool {
    uint64_t n, cap;
    uint64_t *us;
};

static void pool_add(struct gap_pool *g, const struct sim_gaps *from)
{
    for (uint32_t i = 0; i < from->n; i++) {
        if (g->n == g->cap) {
            g->cap = g->cap ? 2 * g->cap : 1024;
            g->us = realloc(g->us, g->cap * sizeof(*g->us));
            if (g->us == NULL)
                abort();
        }
        g->us[g->n++] = from->us[i];
    }
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void pool_print(struct gap_pool *g, const char *what)
{
    if (g->n == 0) {
        printf("corral-sim: gaps after %s: none\n", what);
        return;
    }
    qsort(g->us, g->n, sizeof(*g->us), u64_cmp);
    printf("corral-sim: gaps after %s: %" PRIu64 " partitions, p50 %.1f ms, p90 %.1f ms, p99 "
           "%.1f ms, max %.1f ms\n",
           what, g->n, (double)g->us[g->n / 2] / 1000.0, (double)g->us[g->n * 9 / 10] / 1000.0,
           (double)g->us[g->n * 99 / 100] / 1000.0, (double)g->us[g->n - 1] / 1000.0);
    free(g->us);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: corral-sim [--seed S | --seeds N [--first F | --random]]\n"
            "                  [--verbose] [--churn] [--leases] [--raft-only] [--calm] [--gaps]\n"
            "                  [--membership]\n"
            "                  [--liveness-warn]\n"
            "                  [--expect-violation]\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t seed = 0, count = 1, first = 1;
    bool one = false, random_seeds = false, verbose = false, expect = false, gaps = false;
    bool liveness_warn = false;
    uint64_t liveness_failed = 0;
    struct gap_pool pools[SIM_STOP_KINDS] = {{0}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--seed") == 0 && v && parse_u64(v, &seed) == 0) {
            one = true;
            i++;
        } else if (strcmp(a, "--seeds") == 0 && v && parse_u64(v, &count) == 0) {
            i++;
        } else if (strcmp(a, "--first") == 0 && v && parse_u64(v, &first) == 0) {
            i++;
        } else if (strcmp(a, "--random") == 0) {
            random_seeds = true;
        } else if (strcmp(a, "--verbose") == 0) {
            verbose = true;
        } else if (strcmp(a, "--churn") == 0) {
            force_churn = true;
        } else if (strcmp(a, "--leases") == 0) {
            force_leases = true;
        } else if (strcmp(a, "--raft-only") == 0) {
            raft_only = true;
        } else if (strcmp(a, "--membership") == 0) {
            force_membership = true;
        } else if (strcmp(a, "--calm") == 0) {
            calm = true;
        } else if (strcmp(a, "--liveness-warn") == 0) {
            liveness_warn = true;
        } else if (strcmp(a, "--gaps") == 0) {
            gaps = true;
        } else if (strcmp(a, "--expect-violation") == 0) {
            expect = true;
        } else {
            return usage();
        }
    }
    if (one) {
        first = seed;
        count = 1;
    } else if (random_seeds) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        first = ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40) %
                1000000000000ull;
        printf("corral-sim: random batch: seeds %" PRIu64 " .. %" PRIu64 "\n", first,
               first + count - 1);
        fflush(stdout);
    }
    uint64_t failed = 0, events = 0, ops = 0, unknown = 0, elections = 0, snaps = 0, confs = 0,
             crashes = 0;
    uint64_t first_failed = 0, joins = 0, removes = 0, refused = 0, transfers = 0, settle_max = 0;
    uint64_t slow_disks = 0, degraded = 0, health_transfers = 0, handed = 0, no_target = 0;
    for (uint64_t k = 0; k < count; k++) {
        struct sim_params p;
        struct sim_result r;
        sim_params_from_seed(&p, first + k);
        p.verbose = verbose;
        sim_run(&p, &r);
        for (int c = 0; gaps && c < SIM_STOP_KINDS; c++)
            pool_add(&pools[c], &r.gaps[c]);
        events += r.events;
        ops += r.ops_ok;
        unknown += r.ops_unknown;
        elections += r.elections;
        snaps += r.snapshots_sent;
        confs += r.conf_changes;
        joins += r.roster_joins;
        removes += r.roster_removes;
        refused += r.roster_refused;
        transfers += r.roster_transfers;
        settle_max = r.roster_settle_us > settle_max ? r.roster_settle_us : settle_max;
        crashes += r.crashes;
        slow_disks += r.slow_disks;
        degraded += r.health_degraded;
        health_transfers += r.health_transfers;
        handed += r.health_handed;
        no_target += r.health_no_target;
        if (r.violation && !r.safety && liveness_warn) {
            /* Reported with its seed, for a campaign; not a failure. */
            printf("corral-sim: liveness failure (not counted) at seed %" PRIu64 ": %s\n",
                   first + k, r.what);
            liveness_failed++;
            continue;
        }
        if (r.violation && (!expect || r.safety)) {
            if (failed == 0)
                first_failed = first + k;
            failed++;
            if (expect)
                break;
        }
    }
    printf("corral-sim: %" PRIu64 " seeds from %" PRIu64 ": %" PRIu64 " failed; %" PRIu64
           " events, %" PRIu64 " ops ok, %" PRIu64 " unknown, %" PRIu64 " elections, %" PRIu64
           " crashes, %" PRIu64 " snapshots sent, %" PRIu64 " membership changes\n",
           count, first, failed, events, ops, unknown, elections, crashes, snaps, confs);
    printf("corral-sim: roster: %" PRIu64 " joins and %" PRIu64 " removals proposed, %" PRIu64
           " removals refused, %" PRIu64 " hand-offs by a leaving leader; roster and "
           "configuration agreed at most %.1f ms after the heal\n",
           joins, removes, refused, transfers, (double)settle_max / 1000.0);
    printf("corral-sim: leader health: %" PRIu64 " slow disks, %" PRIu64
           " degraded periods, %" PRIu64 " transfers started (%" PRIu64
           " won the next term), %" PRIu64 " times no voter to hand to\n",
           slow_disks, degraded, health_transfers, handed, no_target);
    if (gaps) {
        static const char *const what[SIM_STOP_KINDS] = {
            "a worker crash", "a worker pause", "a lease lost (cut off)", "a planned hand-off"};
        for (int c = 0; c < SIM_STOP_KINDS; c++)
            pool_print(&pools[c], what[c]);
    }
    if (expect) {
        if (failed > 0) {
            printf("corral-sim: the broken core was caught at seed %" PRIu64 " (expected)\n",
                   first_failed);
            return 0;
        }
        printf("corral-sim: the broken core was NOT caught: the checks lack teeth\n");
        return 1;
    }
    if (failed > 0)
        printf("corral-sim: FAILED; first failing seed %" PRIu64
               " (rerun: corral-sim --seed %" PRIu64 " --verbose)\n",
               first_failed, first_failed);
    if (liveness_failed > 0)
        printf("corral-sim: %" PRIu64 " liveness failure(s) reported above, not counted "
               "(--liveness-warn)\n",
               liveness_failed);
    return failed > 0 ? 1 : 0;
}
