/* bench-placement: the sticky balanced placement engine side by side with
 * ring hashing (100 and 256 virtual nodes per unit of weight) and weighted
 * rendezvous hashing, on one trace of membership events per configuration.
 * Prints a table and writes one JSON line per (configuration, algorithm,
 * event) to --json-out. --quick runs a small version as a smoke test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/wait.h>
#include <unistd.h>

#include "core/placement.h"
#include "core/placement_internal.h"
#include "corral.h"
#include "placement_baselines.h"
#include "util/crc32c.h"

enum { STICKY, RING100, RING256, HRW, ALGOS };
static const char *const algo_names[ALGOS] = {"sticky", "ring-100", "ring-256", "rendezvous"};

/* One step of the trace: the membership after it, and for rendezvous the
 * ids whose weight changed or that joined. */
struct event {
    const char *name;
    struct corral_placement_member *members;
    uint32_t n;
    uint32_t *changed;
    uint32_t changed_n;
    int single; /* one member joined, left or crashed */
};

struct params {
    uint32_t partitions, replicas, members, random_events, runs;
    uint64_t seed;
};

/* Measured numbers of one algorithm at one event. */
struct row {
    double rmax, rmin, pmax, pmin, ms;
    double ms_cold; /* sticky: corral_placement_compute(), allocating every call */
    uint64_t moves, lb, pchg, promo, fresh, viol, unbalanced;
};

static FILE *json_out;
/* --only-sticky: skip the baselines (profiling the engine). */
static int only_sticky;
/* --misses: print each random single-member event where the engine moved
 * more than the bound or took over 10 ms (diagnosis). */
static int print_misses;
static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "bench-placement: out of memory\n");
        exit(1);
    }
    return p;
}

/* Peak resident memory since the last reset, via /proc (Linux). */
static void peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f != NULL) {
        fputs("5", f);
        fclose(f);
    }
}

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, k) == 0)
            v = strtol(line + k + 1, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* Trace construction. */

static uint32_t next_id;

static struct corral_placement_member new_member(uint32_t zones, int weighted)
{
    uint32_t id = next_id++;
    uint32_t w = weighted ? 1 + (uint32_t)(pl_mix(id) % 4) : 1;
    return (struct corral_placement_member){id, id % zones, w};
}

static struct event snapshot(const char *name, const struct corral_placement_member *m, uint32_t n,
                             const uint32_t *changed, uint32_t changed_n, int single)
{
    struct event e = {
        name, xmalloc(n * sizeof(*m)), n, xmalloc(changed_n * sizeof(uint32_t)), changed_n, single};
    memcpy(e.members, m, n * sizeof(*m));
    if (changed_n > 0)
        memcpy(e.changed, changed, changed_n * sizeof(uint32_t));
    return e;
}

static void drop(struct corral_placement_member *m, uint32_t *n, uint32_t i)
{
    m[i] = m[--*n];
}

static uint32_t build_trace(const struct params *pr, uint32_t zones, int weighted, struct event *ev)
{
    uint32_t cap = pr->members * 2 + 16, n = 0, k = 0, nc = 0;
    struct corral_placement_member *m = xmalloc(cap * sizeof(*m));
    uint32_t *ch = xmalloc(cap * sizeof(*ch));
    next_id = 1;
    rng_state = 88172645463325252ull ^ (zones * 31 + (uint32_t)weighted);
    for (; n < pr->members; n++)
        m[n] = new_member(zones, weighted);
    ev[k++] = snapshot("bootstrap", m, n, NULL, 0, 0);
    m[n] = new_member(zones, weighted);
    ch[0] = m[n++].id;
    ev[k++] = snapshot("join 1", m, n, ch, 1, 1);
    drop(m, &n, n / 3);
    ev[k++] = snapshot("leave 1", m, n, NULL, 0, 1);
    drop(m, &n, 2 * n / 3);
    ev[k++] = snapshot("crash 1", m, n, NULL, 0, 1);
    for (nc = 0; nc < pr->members / 10; nc++) {
        m[n] = new_member(zones, weighted);
        ch[nc] = m[n++].id;
    }
    ev[k++] = snapshot("add 10%", m, n, ch, nc, 0);
    for (uint32_t i = 0; i < pr->members / 10; i++)
        drop(m, &n, (i * 7919u) % n);
    ev[k++] = snapshot("remove 10%", m, n, NULL, 0, 0);
    if (zones > 1) {
        for (uint32_t i = n; i-- > 0;)
            if (m[i].zone == 0)
                m[i] = m[--n];
        ev[k++] = snapshot("lose a zone", m, n, NULL, 0, 0);
    }
    for (uint32_t e = 0; e < pr->random_events; e++) {
        uint32_t kind = (uint32_t)(rng() % 4);
        nc = 0;
        if (kind == 0 || n < 4) { /* join, into a surviving zone */
            m[n] = new_member(zones, weighted);
            if (zones > 1 && m[n].zone == 0)
                m[n].zone = 1;
            ch[nc++] = m[n++].id;
        } else if (kind == 3) { /* weight change */
            uint32_t i = (uint32_t)(rng() % n);
            m[i].weight = weighted ? 1 + (uint32_t)(rng() % 4) : m[i].weight;
            ch[nc++] = m[i].id;
        } else { /* leave or crash */
            drop(m, &n, (uint32_t)(rng() % n));
        }
        ev[k++] = snapshot("random", m, n, ch, nc, kind != 3);
    }
    free(m);
    free(ch);
    return k;
}

/* Measurement. */

/* The fewest copies any balanced map needs from old, by the engine's
 * bound (per member, and per zone for copies the zone caps force). */
static uint64_t lower_bound(struct corral_placement_engine *e,
                            const struct corral_placement_input *in,
                            const struct corral_placement_map *old)
{
    struct corral_placement_input with_old = *in;
    struct corral_placement_stats bounds;
    with_old.current = old;
    if (corral_placement_engine_bounds(e, &with_old, &bounds) != 0)
        abort();
    return bounds.moves_lower_bound;
}

static void diff(const uint32_t *old, const uint32_t *cur, uint32_t P, uint32_t R, struct row *r)
{
    for (uint32_t p = 0; p < P; p++) {
        const uint32_t *o = old ? &old[(size_t)p * R] : NULL, *c = &cur[(size_t)p * R];
        for (uint32_t j = 0; j < R; j++) {
            if (c[j] == NONE)
                continue;
            int had = 0;
            for (uint32_t k = 0; o != NULL && k < R; k++)
                had |= o[k] == c[j];
            r->moves += !had;
            if (j == 0 && (o == NULL || o[0] != c[0])) {
                r->pchg++;
                if (had)
                    r->promo++;
                else
                    r->fresh++;
            }
        }
    }
}

static void balance(const struct corral_placement_input *in, const struct corral_placement_map *map,
                    struct row *r)
{
    uint32_t n = in->members_count;
    struct corral_placement_share *sh = xmalloc(n * sizeof(*sh));
    uint32_t *rc = xmalloc(n * sizeof(*rc)), *pc = xmalloc(n * sizeof(*pc));
    struct corral_placement_report rep;
    if (corral_placement_check(in, map, &rep, sh, rc, pc) != 0)
        abort();
    r->rmax = r->pmax = 0;
    r->rmin = r->pmin = 1e300;
    for (uint32_t i = 0; i < n; i++) {
        double s = (double)sh[i].num / (double)sh[i].den, q = s / rep.replicas_effective;
        double x = rc[i] / s, y = pc[i] / q;
        r->rmax = x > r->rmax ? x : r->rmax;
        r->rmin = x < r->rmin ? x : r->rmin;
        r->pmax = y > r->pmax ? y : r->pmax;
        r->pmin = y < r->pmin ? y : r->pmin;
    }
    r->viol =
        rep.unknown_holders + rep.duplicate_holders + rep.zone_violations + rep.missing_replicas;
    r->unbalanced = rep.replica_imbalance + rep.primary_imbalance;
    free(sh);
    free(rc);
    free(pc);
}

/* Algorithm state and one computation. */

struct algo_state {
    int algo;
    struct corral_placement_engine *engine; /* sticky: kept between events */
    struct corral_placement_engine *bounds; /* for lower_bound() */
    const struct corral_placement_result *res;
    struct corral_placement_map map; /* current */
    int placed;
    struct bl_hrw hrw;
    uint32_t reff, cap; /* rendezvous: limits of the current map */
};

static struct bl_cluster cluster_of(const struct params *pr, const struct event *e)
{
    struct bl_cluster c = {pr->partitions, pr->replicas, e->members, e->n, 0};
    for (uint32_t i = 0; i < e->n; i++)
        c.zones = e->members[i].zone + 1 > c.zones ? e->members[i].zone + 1 : c.zones;
    return c;
}

/* Computes the map after event e into out (allocated by the caller). */
static void compute(struct algo_state *st, const struct params *pr, const struct event *e,
                    uint32_t *out, double *saved_scores)
{
    struct bl_cluster c = cluster_of(pr, e);
    size_t slots = (size_t)pr->partitions * pr->replicas;
    if (st->algo == STICKY) {
        /* The map is copied out after the timed part (finish()). */
        struct corral_placement_input in = {
            pr->partitions, pr->replicas, pr->seed, e->members, e->n, st->placed ? &st->map : NULL};
        if (corral_placement_engine_compute(st->engine, &in, &st->res) != 0)
            abort();
        (void)out;
    } else if (st->algo == HRW) {
        uint32_t reff, cap;
        bl_limits(&c, &reff, &cap);
        int full = !st->placed || reff != st->reff || cap != st->cap;
        memcpy(saved_scores, st->hrw.min_score, pr->partitions * sizeof(double));
        if (st->placed)
            memcpy(out, st->map.slots, slots * sizeof(*out));
        bl_hrw_update(&st->hrw, &c, e->changed, e->changed_n, full, out);
    } else {
        struct bl_ring ring;
        if (bl_ring_build(&ring, &c, st->algo == RING100 ? 100 : 256) != 0)
            abort();
        bl_ring_place(&ring, &c, out);
        bl_ring_free(&ring);
    }
}

/* The sticky engine's map into out (the baselines write out directly). */
static void finish(const struct algo_state *st, const struct params *pr, uint32_t *out)
{
    if (st->algo == STICKY)
        memcpy(out, st->res->map.slots, (size_t)pr->partitions * pr->replicas * sizeof(*out));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs event e: timed (median of `runs`, or of 3 past 200 ms a run), then
 * measured against the previous map, which it replaces. */
static struct row run_event(struct algo_state *st, const struct params *pr, const struct event *e,
                            uint32_t runs, int measure_all, uint32_t *out)
{
    struct row r;
    memset(&r, 0, sizeof(r));
    double times[32], *saved = xmalloc(pr->partitions * sizeof(double));
    uint32_t done = 0;
    for (; done < runs; done++) {
        if (st->algo == HRW && done > 0)
            memcpy(st->hrw.min_score, saved, pr->partitions * sizeof(double));
        double t0 = now_ms();
        compute(st, pr, e, out, saved);
        times[done] = now_ms() - t0;
        if (done == 0 && times[0] > 200 && runs > 3)
            runs = 3;
    }
    finish(st, pr, out);
    qsort(times, done, sizeof(double), cmp_double);
    r.ms = times[done / 2];
    if (st->algo == STICKY && runs > 1) {
        /* The same computation without the engine's kept memory. */
        struct corral_placement_input in = {
            pr->partitions, pr->replicas, pr->seed, e->members, e->n, st->placed ? &st->map : NULL};
        for (done = 0; done < runs; done++) {
            struct corral_placement_result res;
            double t0 = now_ms();
            if (corral_placement_compute(&in, &res) != 0)
                abort();
            times[done] = now_ms() - t0;
            corral_placement_result_close(&res);
        }
        qsort(times, done, sizeof(double), cmp_double);
        r.ms_cold = times[done / 2];
    }
    free(saved);
    struct corral_placement_input in = {pr->partitions, pr->replicas, pr->seed,
                                        e->members,     e->n,         NULL};
    struct corral_placement_map cur = {pr->partitions, pr->replicas, out};
    diff(st->placed ? st->map.slots : NULL, out, pr->partitions, pr->replicas, &r);
    if (measure_all) {
        r.lb = lower_bound(st->bounds, &in, st->placed ? &st->map : NULL);
        balance(&in, &cur, &r);
    } else {
        r.rmin = r.pmin = 1e300;
    }
    if (st->algo == HRW) {
        struct bl_cluster c = cluster_of(pr, e);
        bl_limits(&c, &st->reff, &st->cap);
    }
    memcpy(st->map.slots, out, (size_t)pr->partitions * pr->replicas * sizeof(*out));
    st->placed = 1;
    return r;
}

/* Output. */

#define NAMED_MAX 8

struct summary {
    struct row named[NAMED_MAX];
    const char *names[NAMED_MAX];
    uint32_t named_n;
    struct row random; /* totals, extremes, mean time */
    uint64_t random_singles, random_singles_at_lb, random_unbalanced_events, random_measured;
    uint64_t random_timed;      /* random events computed and timed */
    uint64_t all_moves, all_lb; /* over every computed random event */
    double random_ms_max;
    /* Sticky: compute time of the random single-member events. */
    double single_ms_p50, single_ms_p99, single_ms_max;
    uint64_t single_over_10ms;
    long peak_kib;
    uint32_t hash;
    int deterministic;
};

/* LB columns: the event's bound, i.e. the sticky engine's (it starts from
 * a balanced map, so this is the fewest copies the event itself forces),
 * the same for every algorithm. Each algorithm's own bound (from its own,
 * possibly unbalanced, previous map to a balanced one) is in the JSON. */
static void print_row(FILE *out, const char *event, const char *algo, const struct row *r,
                      uint64_t lb)
{
    double ratio = lb ? (double)r->moves / (double)lb : 1.0;
    fprintf(out,
            "%-12s %-10s %6.3f %6.3f %6.3f %6.3f %9llu %9llu %7.2f %8llu %7llu %7llu %5llu %6llu "
            "%9.2f\n",
            event, algo, r->rmax, r->rmin, r->pmax, r->pmin, (unsigned long long)r->moves,
            (unsigned long long)lb, ratio, (unsigned long long)r->pchg,
            (unsigned long long)r->promo, (unsigned long long)r->fresh, (unsigned long long)r->viol,
            (unsigned long long)r->unbalanced, r->ms);
}

static void json_row(uint32_t zones, int weighted, const char *algo, const char *event,
                     const struct row *r, uint64_t lb, const struct summary *s)
{
    if (json_out == NULL)
        return;
    fprintf(json_out,
            "{\"bench\":\"placement\",\"zones\":%u,\"weights\":\"%s\",\"algorithm\":\"%s\","
            "\"event\":\"%s\",\"replicas_max_over_avg\":%.4f,\"replicas_min_over_avg\":%.4f,"
            "\"primaries_max_over_avg\":%.4f,\"primaries_min_over_avg\":%.4f,\"moves\":%llu,"
            "\"lower_bound\":%llu,\"moves_over_lower_bound\":%.4f,\"lower_bound_own\":%llu,"
            "\"primary_changes\":%llu,"
            "\"promotions\":%llu,\"fresh_primaries\":%llu,\"violations\":%llu,"
            "\"members_outside_floor_ceil\":%llu,\"ms\":%.3f,\"ms_cold\":%.3f",
            zones, weighted ? "1-4" : "uniform", algo, event, r->rmax, r->rmin, r->pmax, r->pmin,
            (unsigned long long)r->moves, (unsigned long long)lb,
            lb ? (double)r->moves / (double)lb : 1.0, (unsigned long long)r->lb,
            (unsigned long long)r->pchg, (unsigned long long)r->promo, (unsigned long long)r->fresh,
            (unsigned long long)r->viol, (unsigned long long)r->unbalanced, r->ms, r->ms_cold);
    if (s != NULL)
        fprintf(json_out,
                ",\"single_member_ms_p50\":%.3f,\"single_member_ms_p99\":%.3f,"
                "\"single_member_ms_max\":%.3f,\"single_member_over_10ms\":%llu"
                ",\"events\":%u,\"random_moves_all\":%llu,\"random_lower_bound_all\":%llu,"
                "\"random_events_timed\":%llu,"
                "\"single_member_events\":%llu,\"single_member_at_lower_bound\":"
                "%llu,\"events_outside_floor_ceil\":%llu,\"ms_max\":%.3f,\"peak_kib\":%ld,"
                "\"output_crc32c\":\"%08x\",\"same_output_reversed_members\":%s",
                s->single_ms_p50, s->single_ms_p99, s->single_ms_max,
                (unsigned long long)s->single_over_10ms, s->named_n,
                (unsigned long long)s->all_moves, (unsigned long long)s->all_lb,
                (unsigned long long)s->random_timed, (unsigned long long)s->random_singles,
                (unsigned long long)s->random_singles_at_lb,
                (unsigned long long)s->random_unbalanced_events, s->random_ms_max, s->peak_kib,
                s->hash, s->deterministic ? "true" : "false");
    fprintf(json_out, "}\n");
}

/* The bootstrap map with the members listed in reverse must be identical. */
static int deterministic(int algo, const struct params *pr, const struct event *boot,
                         const uint32_t *expect)
{
    struct event rev = *boot;
    rev.members = xmalloc(boot->n * sizeof(*rev.members));
    for (uint32_t i = 0; i < boot->n; i++)
        rev.members[i] = boot->members[boot->n - 1 - i];
    struct algo_state st = {.algo = algo};
    size_t slots = (size_t)pr->partitions * pr->replicas;
    uint32_t *out = xmalloc(slots * sizeof(*out));
    double *saved = xmalloc(pr->partitions * sizeof(double));
    if (bl_hrw_init(&st.hrw, pr->partitions) != 0 || corral_placement_engine_new(&st.engine) != 0)
        abort();
    compute(&st, pr, &rev, out, saved);
    finish(&st, pr, out);
    int same = memcmp(out, expect, slots * sizeof(*out)) == 0;
    bl_hrw_free(&st.hrw);
    corral_placement_engine_free(st.engine);
    free(out);
    free(saved);
    free(rev.members);
    return same;
}

/* The member that joined or left between two events, for --misses. */
static void print_miss(const struct event *before, const struct event *after, uint32_t i,
                       const struct row *r, uint64_t extra)
{
    uint32_t sizes[8] = {0};
    for (uint32_t k = 0; k < after->n; k++)
        sizes[after->members[k].zone % 8]++;
    const struct event *big = after->n > before->n ? after : before;
    const struct event *small = after->n > before->n ? before : after;
    for (uint32_t k = 0; k < big->n; k++) {
        int found = 0;
        for (uint32_t j = 0; j < small->n && !found; j++)
            found = small->members[j].id == big->members[k].id;
        if (!found)
            fprintf(stderr,
                    "miss: event %u %s member zone %u weight %u; zone sizes %u %u %u %u %u; "
                    "moves %llu LB %llu extra %llu, %.1f ms\n",
                    i, big == after ? "join" : "leave", big->members[k].zone,
                    big->members[k].weight, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4],
                    (unsigned long long)r->moves, (unsigned long long)r->lb,
                    (unsigned long long)extra, r->ms);
    }
}

static void run_algo(int algo, const struct params *pr, const struct event *ev, uint32_t count,
                     struct summary *s)
{
    struct algo_state st = {.algo = algo};
    size_t slots = (size_t)pr->partitions * pr->replicas;
    uint32_t *out = xmalloc(slots * sizeof(*out));
    if (corral_placement_map_init(&st.map, pr->partitions, pr->replicas) != 0 ||
        bl_hrw_init(&st.hrw, pr->partitions) != 0 || corral_placement_engine_new(&st.engine) != 0 ||
        corral_placement_engine_new(&st.bounds) != 0)
        abort();
    memset(s, 0, sizeof(*s));
    double *single_ms = xmalloc((count + 1) * sizeof(double));
    uint32_t singles_timed = 0;
    peak_reset();
    long rss0 = status_kib("VmRSS");
    s->random.rmin = s->random.pmin = 1e300;
    for (uint32_t i = 0; i < count; i++) {
        int named = strcmp(ev[i].name, "random") != 0, sampled = i % 10 == 0;
        /* Baselines are checked at every named event and every 10th random
         * one, to keep the run short; the engine at every event. Ring
         * hashing has no state, so its map is only computed where it is
         * measured and just before (for the moves). */
        int measure = named || algo == STICKY || sampled;
        if ((algo == RING100 || algo == RING256) && !named && !sampled && (i + 1) % 10 != 0)
            continue;
        struct row r = run_event(&st, pr, &ev[i], named ? pr->runs : 1, measure, out);
        if (i == 0)
            s->deterministic = deterministic(algo, pr, &ev[0], out);
        if (named) {
            s->names[s->named_n] = ev[i].name;
            s->named[s->named_n++] = r;
            continue;
        }
        struct row *t = &s->random;
        t->rmax = r.rmax > t->rmax ? r.rmax : t->rmax;
        t->pmax = r.pmax > t->pmax ? r.pmax : t->pmax;
        t->rmin = r.rmin < t->rmin ? r.rmin : t->rmin;
        t->pmin = r.pmin < t->pmin ? r.pmin : t->pmin;
        /* Moves are compared on the sampled events, the same for all. */
        if (sampled) {
            t->moves += r.moves;
            t->lb += r.lb;
            t->pchg += r.pchg;
            t->promo += r.promo;
            t->fresh += r.fresh;
        }
        s->all_moves += r.moves;
        s->all_lb += r.lb;
        s->random_timed++;
        t->viol += r.viol;
        t->unbalanced += r.unbalanced;
        t->ms += r.ms;
        s->random_ms_max = r.ms > s->random_ms_max ? r.ms : s->random_ms_max;
        s->random_unbalanced_events += r.unbalanced > 0;
        s->random_measured += (uint64_t)measure;
        if (ev[i].single && algo == STICKY) {
            single_ms[singles_timed++] = r.ms;
            s->single_over_10ms += r.ms > 10;
            s->random_singles++;
            s->random_singles_at_lb += r.moves == r.lb;
            if (print_misses && (r.moves != r.lb || r.ms > 10))
                print_miss(&ev[i - 1], &ev[i], i, &r, st.res->stats.moves_extra);
        }
    }
    if (s->random_timed > 0)
        s->random.ms /= (double)s->random_timed;
    if (singles_timed > 0) {
        qsort(single_ms, singles_timed, sizeof(double), cmp_double);
        s->single_ms_p50 = single_ms[singles_timed / 2];
        s->single_ms_p99 = single_ms[(singles_timed * 99) / 100];
        s->single_ms_max = single_ms[singles_timed - 1];
    }
    free(single_ms);
    s->peak_kib = status_kib("VmHWM") - rss0;
    s->hash = corral_crc32c(0, st.map.slots, slots * sizeof(uint32_t));
    corral_placement_map_close(&st.map);
    bl_hrw_free(&st.hrw);
    corral_placement_engine_free(st.engine);
    corral_placement_engine_free(st.bounds);
    free(out);
}

static void run_config(FILE *out, const struct params *pr, uint32_t zones, int weighted,
                       struct summary *sums)
{
    struct event *ev = xmalloc((NAMED_MAX + pr->random_events) * sizeof(*ev));
    uint32_t count = build_trace(pr, zones, weighted, ev);
    memset(sums, 0, ALGOS * sizeof(*sums));
    for (int a = 0; a < (only_sticky ? 1 : ALGOS); a++)
        run_algo(a, pr, ev, count, &sums[a]);
    fprintf(out, "\nP=%u R=%u N=%u, zones=%u, weights %s\n", pr->partitions, pr->replicas,
            pr->members, zones, weighted ? "1-4" : "uniform");
    fprintf(out, "%-12s %-10s %6s %6s %6s %6s %9s %9s %7s %8s %7s %7s %5s %6s %9s\n", "event",
            "algo", "r.max", "r.min", "p.max", "p.min", "moves", "LB", "mv/LB", "p.chg", "promo",
            "fresh", "viol", "unbal", "ms");
    int algos = only_sticky ? 1 : ALGOS;
    for (uint32_t e = 0; e < sums[0].named_n; e++)
        for (int a = 0; a < algos; a++) {
            uint64_t lb = sums[STICKY].named[e].lb;
            print_row(out, a == 0 ? sums[a].names[e] : "", algo_names[a], &sums[a].named[e], lb);
            json_row(zones, weighted, algo_names[a], sums[a].names[e], &sums[a].named[e], lb, NULL);
        }
    fprintf(out, "%-12s sticky ms without a kept engine (corral_placement_compute):", "");
    for (uint32_t e = 0; e < sums[0].named_n; e++)
        fprintf(out, " %s %.2f%s", sums[STICKY].names[e], sums[STICKY].named[e].ms_cold,
                e + 1 < sums[0].named_n ? "," : "\n");
    char label[32];
    snprintf(label, sizeof(label), "random /10");
    for (int a = 0; a < algos && pr->random_events > 0; a++) {
        uint64_t lb = sums[STICKY].random.lb;
        print_row(out, a == 0 ? label : "", algo_names[a], &sums[a].random, lb);
        json_row(zones, weighted, algo_names[a], "random", &sums[a].random, lb, &sums[a]);
    }
    fprintf(out, "%-12s %-10s %10s %10s %8s %10s %10s %6s\n", "", "algo", "single@LB", "unbal.ev",
            "ms.max", "peak MiB", "crc32c", "det");
    for (int a = 0; a < algos; a++)
        fprintf(out, "%-12s %-10s %4llu/%-5llu %4llu/%-5llu %8.2f %10.1f %10.8x %6s\n", "",
                algo_names[a], (unsigned long long)sums[a].random_singles_at_lb,
                (unsigned long long)sums[a].random_singles,
                (unsigned long long)sums[a].random_unbalanced_events,
                (unsigned long long)sums[a].random_measured, sums[a].random_ms_max,
                (double)sums[a].peak_kib / 1024.0, sums[a].hash,
                sums[a].deterministic ? "same" : "DIFF");
    if (pr->random_events > 0)
        fprintf(out,
                "%-12s sticky, random single-member events: ms p50 %.2f, p99 %.2f, max %.2f; "
                "%llu of %llu over 10 ms\n",
                "", sums[STICKY].single_ms_p50, sums[STICKY].single_ms_p99,
                sums[STICKY].single_ms_max, (unsigned long long)sums[STICKY].single_over_10ms,
                (unsigned long long)sums[STICKY].random_singles);
    fflush(out);
    for (uint32_t i = 0; i < count; i++) {
        free(ev[i].members);
        free(ev[i].changed);
    }
    free(ev);
}

int main(int argc, char **argv)
{
    struct params pr = {65536, 3, 1000, 1000, 20, 42};
    const char *json_path = NULL;
    int only = -1; /* configuration index, or -1 for all six */
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--quick") == 0) {
            pr = (struct params){4096, 3, 100, 50, 3, 42};
        } else if (strcmp(argv[i], "--json-out") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else if (strcmp(argv[i], "--misses") == 0) {
            print_misses = 1;
        } else if (strcmp(argv[i], "--only-sticky") == 0) {
            only_sticky = 1;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
                   (only = (int)strtol(argv[++i], &end, 10), *end == '\0') && only >= 0 &&
                   only < 6) {
        } else if (strcmp(argv[i], "--random-events") == 0 && i + 1 < argc &&
                   (pr.random_events = (uint32_t)strtoul(argv[++i], &end, 10), *end == '\0') &&
                   pr.random_events <= 100000) {
        } else {
            fprintf(stderr, "usage: bench-placement [--quick] [--json-out FILE] [--only-sticky]\n"
                            "       [--config 0-5 (zones 1,1,3,3,5,5; weights uniform, 1-4)]\n"
                            "       [--random-events N] [--misses]\n");
            return 2;
        }
    }
    if (json_path != NULL && (json_out = fopen(json_path, "w")) == NULL) {
        perror(json_path);
        return 1;
    }
    printf("placement: sticky vs ring hashing (100/256 vnodes per weight unit) vs weighted "
           "rendezvous\nratios are count / fair share (max/avg, min/avg); ms: median of %u runs "
           "(3 past 200 ms), random events timed once (mean)\n"
           "random /10: moves, LB and primary changes summed over every 10th random event "
           "(the same events for every algorithm)\n",
           pr.runs);
    /* The six configurations run as child processes, one at a time, so
     * that timings are not shared with another run; each writes to its own
     * temporary files, which are printed in order at the end (a child's
     * peak memory is its own). */
    FILE *txt[6], *js[6];
    pid_t pids[6];
    int bad = 0, running = 0, status_of[6] = {0}, reaped[6] = {0};
    for (int i = 0; i < 6; i++) {
        pids[i] = -1;
        txt[i] = js[i] = NULL;
        if (only >= 0 && i != only)
            continue;
        if (running == 1) {
            int status;
            pid_t done = wait(&status);
            for (int j = 0; j < i; j++)
                if (pids[j] == done) {
                    status_of[j] = status;
                    reaped[j] = 1;
                    running--;
                }
        }
        txt[i] = tmpfile();
        js[i] = tmpfile();
        if (txt[i] == NULL || js[i] == NULL) {
            perror("tmpfile");
            return 1;
        }
        fflush(stdout);
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0) {
            struct summary sums[ALGOS];
            int child_bad = 0;
            json_out = js[i];
            run_config(txt[i], &pr, 1 + 2 * (uint32_t)(i / 2), i % 2, sums);
            child_bad |= sums[STICKY].random.viol > 0 || sums[STICKY].random_unbalanced_events > 0;
            for (uint32_t e = 0; e < sums[STICKY].named_n; e++)
                child_bad |= sums[STICKY].named[e].viol > 0 || sums[STICKY].named[e].unbalanced > 0;
            fflush(txt[i]);
            fflush(js[i]);
            _exit(child_bad);
        }
        running++;
    }
    for (int i = 0; i < 6; i++) {
        int status = status_of[i];
        if (pids[i] < 0)
            continue;
        if (!reaped[i] && waitpid(pids[i], &status, 0) < 0)
            bad = 1;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad = 1;
        char buf[4096];
        size_t got;
        rewind(txt[i]);
        while ((got = fread(buf, 1, sizeof(buf), txt[i])) > 0)
            fwrite(buf, 1, got, stdout);
        rewind(js[i]);
        while (json_out != NULL && (got = fread(buf, 1, sizeof(buf), js[i])) > 0)
            fwrite(buf, 1, got, json_out);
        fclose(txt[i]);
        fclose(js[i]);
    }
    if (json_out != NULL)
        fclose(json_out);
    if (bad)
        fprintf(stderr, "bench-placement: the sticky engine left a violation or imbalance\n");
    return bad;
}
