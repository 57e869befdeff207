/* bench-controller: what one evaluation of the leader's controller costs at
 * P = 65,536 partitions in all (one resource of 65,536, or 16 of 4,096),
 * R = 3, 1,000 members in 3 zones: the bootstrap, the steady state, and
 * the evaluations after a single-member event (a crash, i.e. a lease
 * running out; a join; a drain) until the map is back at its balanced
 * target. Reports p50 and max per phase, and side by side the baseline the
 * controller cannot go below: the placement engine alone computing the
 * event's new map (a kept engine, as the controller keeps one per
 * resource). Commands are applied through the real state machine and
 * agents report at once (tests/unit/ctl_world.c); only the evaluation is
 * timed.
 *
 *   bench-controller [--quick] [--json-out FILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/controller.h"
#include "core/placement.h"
#include "ctl_world.h"

#define TICK_MS 50
#define ROUNDS_MAX 5000
#define TIMES_MAX ROUNDS_MAX

struct layout {
    const char *name;
    uint32_t resources, partitions; /* per resource */
};

struct phase {
    const char *name;
    uint32_t evals, rounds;
    double p50_ms, max_ms, first_ms, engine_ms;
    uint64_t cmds, ops;
    int balanced;
};

static FILE *json;
static double times[TIMES_MAX];

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-controller: %s\n", what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The engine alone on the event: every resource's new map from the state's
 * map and the current hosts but `gone`, with a kept engine (median of 3). */
static double engine_baseline(struct ctl_world *w, uint32_t gone)
{
    uint32_t n, k = 0;
    struct corral_placement_member *hosts = world_hosts(w, &n);
    for (uint32_t i = 0; i < n; i++)
        if (hosts[i].id != gone)
            hosts[k++] = hosts[i];
    n = k;
    double runs[3];
    struct corral_placement_engine *e;
    if (corral_placement_engine_new(&e) != 0)
        die("engine");
    for (int run = 0; run < 4; run++) { /* the first run warms the engine up */
        double total = 0;
        for (uint32_t i = 0; i < corral_state_resource_count(w->st); i++) {
            const struct corral_state_resource *sr = corral_state_resource_at(w->st, i);
            struct corral_placement_map map;
            world_map(w, sr->id, &map);
            struct corral_placement_input in = {
                sr->partitions, sr->replicas, sr->id, hosts, n, &map};
            const struct corral_placement_result *res;
            double t0 = now_ms();
            if (corral_placement_engine_compute(e, &in, &res) != 0)
                die("engine compute");
            total += now_ms() - t0;
            corral_placement_map_close(&map);
        }
        if (run > 0)
            runs[run - 1] = total;
    }
    corral_placement_engine_free(e);
    free(hosts);
    qsort(runs, 3, sizeof(double), cmp_double);
    return runs[1];
}

/* Evaluations until the controller proposes nothing and every partition
 * is at target; idle ones before the event shows (a lease still running)
 * are not counted. */
static void run_phase(struct ctl_world *w, struct phase *ph, int wait_for_change)
{
    uint32_t n = 0;
    ph->first_ms = -1;
    for (ph->rounds = 1; ph->rounds <= ROUNDS_MAX; ph->rounds++) {
        struct corral_controller_output o;
        world_tick(w, TICK_MS);
        double t0 = now_ms();
        if (corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &o) != 0)
            die("evaluate");
        double ms = now_ms() - t0;
        bool idle = o.n_cmds == 0 && o.stats.out_of_target == 0 && o.stats.recomputed == 0 &&
                    o.stats.in_flight == 0;
        if (wait_for_change && n == 0 && idle)
            continue;
        if (ph->first_ms < 0)
            ph->first_ms = ms;
        times[n++] = ms;
        ph->cmds += o.n_cmds;
        for (uint32_t i = 0; i < o.n_cmds; i++) {
            ph->ops += o.cmds[i].type == CORRAL_STATE_PARTITION_OPS ? o.cmds[i].n_ops : 1;
            if (world_apply(w, &o.cmds[i]) != CORRAL_STATE_OK)
                die("a command was refused");
        }
        uint32_t reports = world_report_all(w);
        if (idle && reports == 0)
            break;
        if (n == TIMES_MAX)
            die("no convergence");
    }
    qsort(times, n, sizeof(double), cmp_double);
    ph->evals = n;
    ph->p50_ms = times[n / 2];
    ph->max_ms = times[n - 1];
    ph->balanced = 1;
    for (uint32_t i = 0; i < corral_state_resource_count(w->st); i++)
        ph->balanced &= world_balanced(w, corral_state_resource_at(w->st, i)->id);
}

static void print_phase(const struct layout *l, uint32_t members, const struct phase *ph)
{
    printf("%-8s %-10s %6u %6u %9.2f %9.2f %9.2f %9.2f %7.2f %7llu %9llu %4s\n", l->name, ph->name,
           ph->evals, ph->rounds, ph->first_ms, ph->p50_ms, ph->max_ms, ph->engine_ms,
           ph->engine_ms > 0 ? ph->max_ms / ph->engine_ms : 0.0, (unsigned long long)ph->cmds,
           (unsigned long long)ph->ops, ph->balanced ? "yes" : "NO");
    if (json != NULL)
        fprintf(json,
                "{\"bench\":\"controller\",\"layout\":\"%s\",\"resources\":%u,"
                "\"partitions_total\":%u,\"replicas\":3,\"members\":%u,\"zones\":3,"
                "\"phase\":\"%s\",\"evaluations\":%u,\"rounds\":%u,\"first_ms\":%.3f,"
                "\"p50_ms\":%.3f,\"max_ms\":%.3f,\"engine_alone_ms\":%.3f,"
                "\"max_over_engine\":%.3f,\"commands\":%llu,\"ops\":%llu,\"balanced\":%s}\n",
                l->name, l->resources, l->resources * l->partitions, members, ph->name, ph->evals,
                ph->rounds, ph->first_ms, ph->p50_ms, ph->max_ms, ph->engine_ms,
                ph->engine_ms > 0 ? ph->max_ms / ph->engine_ms : 0.0, (unsigned long long)ph->cmds,
                (unsigned long long)ph->ops, ph->balanced ? "true" : "false");
}

/* One layout: bootstrap, steady state, then crash, join and drain, each
 * run to convergence. Returns whether every phase ended balanced and every
 * single-member evaluation stayed within 10 ms (the target). */
static int time_target_off; /* --quick: the time target is not checked */

static int run_layout(const struct layout *l, uint32_t members)
{
    struct ctl_world *w = calloc(1, sizeof(*w));
    if (w == NULL)
        die("out of memory");
    world_init(w, NULL, 0);
    for (uint32_t i = 0; i < members; i++) {
        char name[32], zone[16];
        snprintf(name, sizeof(name), "m%u", i);
        snprintf(zone, sizeof(zone), "z%u", i % 3);
        world_member(w, name, zone, 1, CORRAL_MEMBER_WORKER);
    }
    for (uint32_t r = 0; r < l->resources; r++) {
        char name[32];
        snprintf(name, sizeof(name), "res%u", r);
        world_resource(w, name, l->partitions, 3);
    }
    struct phase ph[5];
    memset(ph, 0, sizeof(ph));
    ph[0].name = "bootstrap";
    run_phase(w, &ph[0], 0);
    while (!corral_liveness_settled(&w->lv, w->now_ms))
        world_tick(w, TICK_MS);
    /* Steady: nothing changes; each evaluation still scans every partition. */
    ph[1].name = "steady";
    for (uint32_t i = 0; i < 20; i++) {
        struct corral_controller_output o;
        world_tick(w, TICK_MS);
        double t0 = now_ms();
        if (corral_controller_evaluate(w->ctl, w->st, &w->lv, w->now_ms, &o) != 0)
            die("evaluate");
        times[i] = now_ms() - t0;
        if (o.n_cmds != 0)
            die("a steady evaluation proposed something");
    }
    qsort(times, 20, sizeof(double), cmp_double);
    ph[1].evals = ph[1].rounds = 20;
    ph[1].first_ms = ph[1].p50_ms = times[10];
    ph[1].max_ms = times[19];
    ph[1].balanced = 1;
    /* A crash: member 1 stops heartbeating; its lease runs out. */
    ph[2].name = "crash";
    uint32_t crashed = corral_state_member_at(w->st, 1)->id;
    ph[2].engine_ms = engine_baseline(w, crashed);
    w->alive[crashed] = false;
    run_phase(w, &ph[2], 1);
    ph[3].name = "join";
    world_member(w, "joiner", "z0", 1, CORRAL_MEMBER_WORKER);
    ph[3].engine_ms = engine_baseline(w, 0);
    run_phase(w, &ph[3], 1);
    ph[4].name = "drain";
    world_status(w, corral_state_member_at(w->st, 2)->id, CORRAL_MEMBER_DRAINING);
    ph[4].engine_ms = engine_baseline(w, 0);
    run_phase(w, &ph[4], 1);
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        print_phase(l, members, &ph[i]);
        ok &= ph[i].balanced;
        /* The 10 ms target is the benchmark's verdict, not a test's: the
         * --quick run in the unit suite checks balance only (a loaded
         * machine must not fail a test on time). */
        if (i >= 2 && ph[i].max_ms > 10.0 && !time_target_off)
            ok = 0;
    }
    world_close(w);
    free(w);
    return ok;
}

int main(int argc, char **argv)
{
    const char *json_path = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
            time_target_off = 1;
        } else if (strcmp(argv[i], "--json-out") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            fprintf(stderr, "usage: bench-controller [--quick] [--json-out FILE]\n");
            return 2;
        }
    }
    if (json_path != NULL && (json = fopen(json_path, "w")) == NULL) {
        perror(json_path);
        return 1;
    }
    const struct layout full[] = {{"1x65536", 1, 65536}, {"16x4096", 16, 4096}};
    const struct layout small[] = {{"1x4096", 1, 4096}, {"4x1024", 4, 1024}};
    const struct layout *ls = quick ? small : full;
    uint32_t members = quick ? 100 : 1000;
    printf("controller: one evaluation (ms), R=3, %u members in 3 zones, a %d ms tick;\n"
           "after an event, every evaluation until the map is at its balanced target\n"
           "(first: the one that recomputes the target); engine: the placement engine alone\n"
           "on the event (the floor); default throttles 4 copies per member, 64 in all\n",
           members, TICK_MS);
    printf("%-8s %-10s %6s %6s %9s %9s %9s %9s %7s %7s %9s %4s\n", "layout", "phase", "evals",
           "rounds", "first", "p50", "max", "engine", "max/eng", "cmds", "ops", "bal");
    int ok = 1;
    for (int i = 0; i < 2; i++)
        ok &= run_layout(&ls[i], members);
    if (json != NULL)
        fclose(json);
    if (!ok)
        fprintf(stderr, "bench-controller: an evaluation after a single-member event took over "
                        "10 ms, or a phase did not end balanced\n");
    return ok ? 0 : 1;
}
