/* `corral placement`: replays a trace of membership events against a
 * cluster description, offline, and prints what the placement engine does
 * at each event (balance, moves against their lower bound, primary
 * changes, violations), for operators planning capacity. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/placement.h"
#include "corral.h"
#include "util/crc32c.h"

#define PROG "corral placement"
/* Zone names are hashed to the engine's 32-bit labels; names longer than
 * this are surely mistakes. */
#define ZONE_NAME_MAX 256
/* Events in one trace: each computes a full placement. */
#define EVENTS_MAX 100000

struct zone_name {
    uint32_t label;
    char *name;
};

struct state {
    uint32_t partitions, replicas;
    uint64_t seed;
    struct corral_placement_member *members;
    uint32_t n;
    struct corral_placement_map map;
    int placed;
    struct zone_name *zones; /* every zone name seen, to catch hash collisions */
    size_t zones_n;
};

__attribute__((format(printf, 2, 3))) static int input_error(const char *where, const char *fmt,
                                                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": %s: ", where);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CORRAL_EXIT_USAGE;
}

/* Reads an integer field in [min, max]; absent fields take dflt unless
 * dflt is negative (required). */
static int get_uint(const json_t *obj, const char *key, long long min, long long max,
                    long long dflt, const char *where, uint64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (dflt < 0)
            return input_error(where, "missing \"%s\"", key);
        *out = (uint64_t)dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return input_error(where, "\"%s\" must be an integer", key);
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return input_error(where, "\"%s\" is %lld, must be within %lld..%lld", key, x, min, max);
    *out = (uint64_t)x;
    return 0;
}

/* Zone names (strings, or integers taken as their decimal text) map to a
 * CRC32C label, which does not depend on the order members are listed. */
static int get_zone(struct state *st, const json_t *obj, const char *where, uint32_t *label)
{
    const json_t *v = json_object_get(obj, "zone");
    char buf[32];
    const char *name = "";
    if (json_is_string(v)) {
        name = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        name = buf;
    } else if (v != NULL) {
        return input_error(where, "\"zone\" must be a string or an integer");
    }
    size_t len = strlen(name);
    if (len > ZONE_NAME_MAX)
        return input_error(where, "zone name longer than %d bytes", ZONE_NAME_MAX);
    *label = corral_crc32c(0, name, len);
    for (size_t i = 0; i < st->zones_n; i++) {
        if (st->zones[i].label != *label)
            continue;
        if (strcmp(st->zones[i].name, name) == 0)
            return 0;
        return input_error(where, "zone names \"%s\" and \"%s\" collide; rename one",
                           st->zones[i].name, name);
    }
    struct zone_name *grown = realloc(st->zones, (st->zones_n + 1) * sizeof(*grown));
    char *copy = strdup(name);
    if (grown == NULL || copy == NULL) {
        free(copy);
        if (grown != NULL)
            st->zones = grown;
        fprintf(stderr, PROG ": out of memory\n");
        return CORRAL_EXIT_FAILURE;
    }
    st->zones = grown;
    st->zones[st->zones_n++] = (struct zone_name){*label, copy};
    return 0;
}

static long find_member(const struct state *st, uint32_t id)
{
    for (uint32_t i = 0; i < st->n; i++)
        if (st->members[i].id == id)
            return i;
    return -1;
}

static int add_member(struct state *st, const json_t *m, const char *where)
{
    if (!json_is_object(m))
        return input_error(where, "a member must be an object with \"id\", \"zone\", \"weight\"");
    uint64_t id, weight;
    uint32_t zone;
    int rv;
    if ((rv = get_uint(m, "id", 0, (long long)CORRAL_PLACEMENT_NONE - 1, -1, where, &id)) ||
        (rv = get_uint(m, "weight", 1, CORRAL_PLACEMENT_WEIGHT_MAX, 1, where, &weight)) ||
        (rv = get_zone(st, m, where, &zone)))
        return rv;
    if (find_member(st, (uint32_t)id) >= 0)
        return input_error(where, "duplicate member id %llu", (unsigned long long)id);
    if (st->n >= CORRAL_PLACEMENT_MEMBERS_MAX)
        return input_error(where, "more than %u members", CORRAL_PLACEMENT_MEMBERS_MAX);
    st->members[st->n++] = (struct corral_placement_member){(uint32_t)id, zone, (uint32_t)weight};
    return 0;
}

static int remove_member(struct state *st, const json_t *obj, const char *key, const char *where)
{
    uint64_t id;
    int rv = obj == NULL
                 ? 0
                 : get_uint(obj, key, 0, (long long)CORRAL_PLACEMENT_NONE - 1, -1, where, &id);
    if (rv != 0)
        return rv;
    long i = find_member(st, (uint32_t)id);
    if (i < 0)
        return input_error(where, "no live member with id %llu", (unsigned long long)id);
    st->members[i] = st->members[--st->n];
    return 0;
}

static int for_each_member(struct state *st, const json_t *ev, const char *key, const char *where,
                           int add)
{
    const json_t *arr = json_object_get(ev, key);
    if (!json_is_array(arr))
        return input_error(where, "\"%s\" must be an array", key);
    char at[96];
    size_t i;
    const json_t *item;
    json_array_foreach(arr, i, item)
    {
        snprintf(at, sizeof(at), "%s.%s[%zu]", where, key, i);
        int rv;
        if (add) {
            rv = add_member(st, item, at);
        } else {
            json_t *wrap = json_pack("{s:O}", "id", item);
            rv = wrap == NULL ? input_error(at, "bad id") : remove_member(st, wrap, "id", at);
            json_decref(wrap);
        }
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int lose_zone(struct state *st, const json_t *ev, const char *where)
{
    uint32_t zone;
    if (json_object_get(ev, "zone") == NULL)
        return input_error(where, "missing \"zone\"");
    int rv = get_zone(st, ev, where, &zone);
    if (rv != 0)
        return rv;
    uint32_t before = st->n;
    for (uint32_t i = st->n; i-- > 0;)
        if (st->members[i].zone == zone)
            st->members[i] = st->members[--st->n];
    if (st->n == before)
        return input_error(where, "no live member in that zone");
    return 0;
}

/* Applies one event to the membership. Sets *fresh for a bootstrap. */
static int apply_event(struct state *st, const json_t *ev, const char *where, int *fresh)
{
    *fresh = 0;
    if (!json_is_object(ev))
        return input_error(where, "an event must be an object with a \"type\"");
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type == NULL)
        return input_error(where, "missing \"type\" (a string)");
    if (strcmp(type, "bootstrap") == 0) {
        *fresh = 1;
        return 0;
    }
    if (strcmp(type, "rebalance") == 0)
        return 0;
    if (strcmp(type, "join") == 0)
        return add_member(st, ev, where);
    if (strcmp(type, "leave") == 0 || strcmp(type, "crash") == 0)
        return remove_member(st, ev, "id", where);
    if (strcmp(type, "weight") == 0) {
        uint64_t id, weight;
        int rv;
        if ((rv = get_uint(ev, "id", 0, (long long)CORRAL_PLACEMENT_NONE - 1, -1, where, &id)) ||
            (rv = get_uint(ev, "weight", 1, CORRAL_PLACEMENT_WEIGHT_MAX, -1, where, &weight)))
            return rv;
        long i = find_member(st, (uint32_t)id);
        if (i < 0)
            return input_error(where, "no live member with id %llu", (unsigned long long)id);
        st->members[i].weight = (uint32_t)weight;
        return 0;
    }
    if (strcmp(type, "lose_zone") == 0)
        return lose_zone(st, ev, where);
    if (strcmp(type, "add_members") == 0)
        return for_each_member(st, ev, "members", where, 1);
    if (strcmp(type, "remove_members") == 0)
        return for_each_member(st, ev, "ids", where, 0);
    return input_error(where,
                       "unknown event type \"%s\" (expected bootstrap, join, leave, crash, "
                       "weight, lose_zone, add_members, remove_members or rebalance)",
                       type);
}

/* Balance of one map: each member's count relative to its share. */
struct balance {
    double rmax, rmin, pmax, pmin;
    uint64_t violations;
    struct corral_placement_report rep;
};

static int measure(const struct state *st, const struct corral_placement_input *in,
                   const struct corral_placement_map *map, struct balance *b)
{
    uint32_t n = st->n ? st->n : 1;
    struct corral_placement_share *sh = calloc(n, sizeof(*sh));
    uint32_t *rc = calloc(n, sizeof(*rc)), *pc = calloc(n, sizeof(*pc));
    int rv = sh && rc && pc ? corral_placement_check(in, map, &b->rep, sh, rc, pc) : CORRAL_ENOMEM;
    b->rmax = b->pmax = 0;
    b->rmin = b->pmin = st->n ? 1e300 : 0;
    for (uint32_t i = 0; rv == 0 && i < st->n; i++) {
        double s = (double)sh[i].num / (double)sh[i].den;
        double q = s / b->rep.replicas_effective;
        double r = s > 0 ? rc[i] / s : 0, p = q > 0 ? pc[i] / q : 0;
        b->rmax = r > b->rmax ? r : b->rmax;
        b->rmin = r < b->rmin ? r : b->rmin;
        b->pmax = p > b->pmax ? p : b->pmax;
        b->pmin = p < b->pmin ? p : b->pmin;
    }
    b->violations = b->rep.unknown_holders + b->rep.duplicate_holders + b->rep.zone_violations +
                    b->rep.missing_replicas + b->rep.replica_imbalance + b->rep.primary_imbalance;
    free(sh);
    free(rc);
    free(pc);
    return rv;
}

static void print_header(void)
{
    printf("%5s %-14s %7s %5s %2s %7s %7s %7s %7s %8s %8s %8s %8s %7s %7s %8s %5s\n", "event",
           "type", "members", "zones", "R", "rep.max", "rep.min", "pri.max", "pri.min", "moves",
           "LB", "moves/LB", "pri.chg", "promo", "fresh", "pri.LB", "viol");
}

static void print_row(size_t i, const char *type, const struct corral_placement_stats *s,
                      const struct balance *b, int json)
{
    double ratio = s->moves_lower_bound ? (double)s->moves / (double)s->moves_lower_bound : 1.0;
    if (!json) {
        printf("%5zu %-14s %7u %5u %2u %7.3f %7.3f %7.3f %7.3f %8llu %8llu %8.2f %8llu %7llu "
               "%7llu %8llu %5llu\n",
               i, type, s->members, s->zones, s->replicas_effective, b->rmax, b->rmin, b->pmax,
               b->pmin, (unsigned long long)s->moves, (unsigned long long)s->moves_lower_bound,
               ratio, (unsigned long long)s->primary_changes, (unsigned long long)s->promotions,
               (unsigned long long)s->fresh_primaries, (unsigned long long)s->primary_lower_bound,
               (unsigned long long)b->violations);
        return;
    }
    printf("{\"event\":%zu,\"type\":\"%s\",\"members\":%u,\"zones\":%u,\"replicas_effective\":%u,"
           "\"replicas_max_over_share\":%.4f,\"replicas_min_over_share\":%.4f,"
           "\"primaries_max_over_share\":%.4f,\"primaries_min_over_share\":%.4f,"
           "\"moves\":%llu,\"moves_lower_bound\":%llu,\"moves_over_lower_bound\":%.4f,"
           "\"moves_extra\":%llu,\"primary_changes\":%llu,\"promotions\":%llu,"
           "\"fresh_primaries\":%llu,\"primary_lower_bound\":%llu,\"drops\":%llu,"
           "\"under_replicated\":%llu,\"lost\":%llu,\"violations\":{\"unknown\":%llu,"
           "\"duplicate\":%llu,\"zone\":%llu,\"missing\":%llu,\"replica_balance\":%llu,"
           "\"primary_balance\":%llu}}\n",
           i, type, s->members, s->zones, s->replicas_effective, b->rmax, b->rmin, b->pmax, b->pmin,
           (unsigned long long)s->moves, (unsigned long long)s->moves_lower_bound, ratio,
           (unsigned long long)s->moves_extra, (unsigned long long)s->primary_changes,
           (unsigned long long)s->promotions, (unsigned long long)s->fresh_primaries,
           (unsigned long long)s->primary_lower_bound, (unsigned long long)s->drops,
           (unsigned long long)s->under_replicated, (unsigned long long)s->lost,
           (unsigned long long)b->rep.unknown_holders, (unsigned long long)b->rep.duplicate_holders,
           (unsigned long long)b->rep.zone_violations, (unsigned long long)b->rep.missing_replicas,
           (unsigned long long)b->rep.replica_imbalance,
           (unsigned long long)b->rep.primary_imbalance);
}

/* Computes the placement for the current membership, prints its row and
 * makes it the current map. */
static int place(struct state *st, size_t i, const char *type, int json)
{
    struct corral_placement_input in = {st->partitions, st->replicas, st->seed,
                                        st->members,    st->n,        st->placed ? &st->map : NULL};
    struct corral_placement_result res;
    struct balance b;
    int rv = corral_placement_compute(&in, &res);
    if (rv == 0) {
        rv = measure(st, &in, &res.map, &b);
        if (rv == 0)
            print_row(i, type, &res.stats, &b, json);
        corral_placement_map_close(&st->map);
        st->map = res.map;
        res.map.slots = NULL;
        st->placed = 1;
        corral_placement_result_close(&res);
    }
    if (rv != 0) {
        fprintf(stderr, PROG ": event %zu: %s\n", i, corral_strerror(rv));
        return rv == CORRAL_EINVAL ? CORRAL_EXIT_USAGE : CORRAL_EXIT_FAILURE;
    }
    return 0;
}

static json_t *load(const char *path)
{
    json_error_t err;
    json_t *root =
        strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &err) : json_load_file(path, 0, &err);
    if (root == NULL) {
        if (err.line < 1)
            fprintf(stderr, PROG ": %s: %s\n", path, err.text);
        else
            fprintf(stderr, PROG ": %s:%d:%d: malformed JSON: %s\n", path, err.line, err.column,
                    err.text);
    }
    return root;
}

/* Reads P, R, seed and the initial members. */
static int read_cluster(struct state *st, const json_t *root, const char *path)
{
    if (!json_is_object(root))
        return input_error(path, "the top level must be an object");
    uint64_t p, r;
    int rv;
    if ((rv = get_uint(root, "partitions", 1, CORRAL_PLACEMENT_PARTITIONS_MAX, -1, path, &p)) ||
        (rv = get_uint(root, "replicas", 1, CORRAL_PLACEMENT_REPLICAS_MAX, -1, path, &r)) ||
        (rv = get_uint(root, "seed", 0, (long long)(~0ull >> 1), 0, path, &st->seed)))
        return rv;
    st->partitions = (uint32_t)p;
    st->replicas = (uint32_t)r;
    const json_t *ms = json_object_get(root, "members");
    if (ms == NULL)
        return 0;
    json_t *wrap = json_pack("{s:O}", "members", (json_t *)ms);
    rv = wrap == NULL ? CORRAL_EXIT_FAILURE : for_each_member(st, wrap, "members", path, 1);
    json_decref(wrap);
    return rv;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: corral placement [--json] [--events FILE] CLUSTER.json\n"
                 "\n"
                 "Replays membership events against a cluster description and prints, per\n"
                 "event, the balance, moves against their lower bound, primary changes and\n"
                 "violations of the resulting placement. FILE and CLUSTER may be '-' (stdin).\n"
                 "The events come from CLUSTER's \"events\" array unless --events names a\n"
                 "file holding a JSON array of events. See docs/cli.md for the format.\n"
                 "\n"
                 "  --json         one JSON object per event instead of a table\n"
                 "  --events FILE  read the events from FILE\n"
                 "  --help         this text\n");
}

static int run(struct state *st, const json_t *cluster, const char *path, const json_t *events,
               const char *events_path, int json)
{
    int rv = read_cluster(st, cluster, path);
    if (rv != 0)
        return rv;
    if (events != NULL && !json_is_array(events))
        return input_error(events_path, "the events must be a JSON array");
    size_t count = events ? json_array_size(events) : 0;
    if (count > EVENTS_MAX)
        return input_error(events_path, "more than %d events", EVENTS_MAX);
    /* Validate the whole trace on the membership alone before computing,
     * so that bad input never leaves half a table behind. */
    struct state dry = *st;
    dry.members = malloc((CORRAL_PLACEMENT_MEMBERS_MAX + 1) * sizeof(*dry.members));
    if (dry.members == NULL)
        return CORRAL_EXIT_FAILURE;
    memcpy(dry.members, st->members, st->n * sizeof(*st->members));
    char where[64];
    int fresh;
    for (size_t i = 0; i < count && rv == 0; i++) {
        snprintf(where, sizeof(where), "events[%zu]", i);
        rv = apply_event(&dry, json_array_get(events, i), where, &fresh);
    }
    st->zones = dry.zones; /* the zone table only grows */
    st->zones_n = dry.zones_n;
    free(dry.members);
    if (rv != 0)
        return rv;
    if (!json)
        print_header();
    if ((rv = place(st, 0, "initial", json)) != 0)
        return rv;
    for (size_t i = 0; i < count; i++) {
        const json_t *ev = json_array_get(events, i);
        snprintf(where, sizeof(where), "events[%zu]", i);
        if ((rv = apply_event(st, ev, where, &fresh)) != 0)
            return rv;
        if (fresh) {
            corral_placement_map_close(&st->map);
            st->placed = 0;
        }
        if ((rv = place(st, i + 1, json_string_value(json_object_get(ev, "type")), json)) != 0)
            return rv;
    }
    return 0;
}

int corral_cmd_placement(int argc, char **argv)
{
    int json = 0;
    const char *path = NULL, *events_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CORRAL_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--events") == 0) {
            if (++i == argc) {
                fprintf(stderr, PROG ": --events needs a file\n");
                return CORRAL_EXIT_USAGE;
            }
            events_path = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, PROG ": unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CORRAL_EXIT_USAGE;
        } else if (path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, PROG ": more than one cluster file\n");
            return CORRAL_EXIT_USAGE;
        }
    }
    if (path == NULL) {
        fprintf(stderr, PROG ": missing the cluster file\n");
        usage(stderr);
        return CORRAL_EXIT_USAGE;
    }
    json_t *cluster = load(path), *events_root = NULL;
    if (cluster == NULL)
        return CORRAL_EXIT_USAGE;
    if (events_path != NULL && (events_root = load(events_path)) == NULL) {
        json_decref(cluster);
        return CORRAL_EXIT_USAGE;
    }
    struct state st;
    memset(&st, 0, sizeof(st));
    st.members = malloc((CORRAL_PLACEMENT_MEMBERS_MAX + 1) * sizeof(*st.members));
    int rv = CORRAL_EXIT_FAILURE;
    if (st.members != NULL)
        rv = run(&st, cluster, path, events_root ? events_root : json_object_get(cluster, "events"),
                 events_root ? events_path : path, json);
    corral_placement_map_close(&st.map);
    for (size_t i = 0; i < st.zones_n; i++)
        free(st.zones[i].name);
    free(st.zones);
    free(st.members);
    json_decref(cluster);
    json_decref(events_root);
    return rv;
}
