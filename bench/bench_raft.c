/* bench-raft: how fast the pure Raft core commits entries through a
 * three-node cluster in one process, with no disk and no network: every
 * message is encoded and decoded by the real codec (as the transport
 * will), persistence completes at once. It tells later work whether the
 * core can ever be the bottleneck, and counts allocations per entry.
 *
 *   bench-raft [--quick] [--json-out FILE] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/codec.h"
#include "core/raft.h"
#include "util/mem.h"

#define NODES 3
#define QUEUE_MAX 65536

struct cluster {
    struct corral_raft *r[NODES + 1];
    uint64_t now;
    uint64_t applied[NODES + 1];
    uint32_t n_q;
    struct corral_raft_msg *q;
    uint8_t *buf;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-raft: %s\n", what);
    exit(1);
}

static void cluster_init(struct cluster *c)
{
    memset(c, 0, sizeof(*c));
    c->q = calloc(QUEUE_MAX, sizeof(*c->q));
    c->buf = malloc(CORRAL_CODEC_MSG_BYTES_MAX);
    if (c->q == NULL || c->buf == NULL)
        die("out of memory");
    struct corral_raft_conf conf = {.n_voters = NODES, .voters = {1, 2, 3}};
    struct corral_raft_entry boot;
    if (corral_raft_bootstrap(&conf, &boot) != 0)
        die("bootstrap");
    struct corral_raft_hard_state hs = {.term = 1, .commit = 1};
    struct corral_raft_snapshot_meta snap = {0};
    for (uint64_t id = 1; id <= NODES; id++) {
        struct corral_raft_config cfg;
        corral_raft_config_default(&cfg, id);
        cfg.election_timeout_ms = id == 1 ? 150 : 100000; /* node 1 leads */
        if (corral_raft_new(&cfg, &hs, &snap, NULL, &boot, 1, &c->r[id]) != 0)
            die("raft_new");
    }
    corral_rbuf_unref(boot.data);
}

static void cluster_free(struct cluster *c)
{
    for (uint32_t id = 1; id <= NODES; id++)
        corral_raft_free(c->r[id]);
    free(c->q);
    free(c->buf);
}

/* Handles one node's batch: "persist" at once, send, apply. */
static int node_ready(struct cluster *c, uint32_t id)
{
    if (!corral_raft_has_ready(c->r[id]))
        return 0;
    struct corral_raft_ready rd;
    corral_raft_ready(c->r[id], &rd);
    for (uint32_t i = 0; i < rd.n_msgs; i++) {
        size_t len;
        if (c->n_q == QUEUE_MAX ||
            corral_codec_msg_encode(&rd.msgs[i], c->buf, CORRAL_CODEC_MSG_BYTES_MAX, &len) != 0 ||
            corral_codec_msg_decode(c->buf, len, &c->q[c->n_q]) != 0)
            die("message copy failed");
        c->n_q++;
    }
    if (rd.n_committed > 0)
        c->applied[id] = rd.committed[rd.n_committed - 1].index;
    corral_raft_advance(c->r[id], &rd);
    corral_raft_ready_free(&rd);
    return 1;
}

static void pump(struct cluster *c)
{
    for (;;) {
        int busy = 0;
        for (uint32_t id = 1; id <= NODES; id++)
            busy |= node_ready(c, id);
        uint32_t n = c->n_q;
        for (uint32_t i = 0; i < n; i++) {
            struct corral_raft_msg *m = &c->q[i];
            corral_raft_step(c->r[m->to], m);
            corral_raft_msg_clear(m);
        }
        /* Messages queued while stepping go to the front for next round. */
        memmove(c->q, c->q + n, (c->n_q - n) * sizeof(*c->q));
        c->n_q -= n;
        if (!busy && n == 0)
            return;
    }
}

static void elect(struct cluster *c)
{
    for (int k = 0; k < 200; k++) {
        c->now += 5;
        for (uint32_t id = 1; id <= NODES; id++)
            corral_raft_tick(c->r[id], c->now);
        pump(c);
        struct corral_raft_status s;
        corral_raft_status(c->r[1], &s);
        if (s.role == CORRAL_RAFT_LEADER && s.commit == s.last_index)
            return;
    }
    die("no leader");
}

struct result {
    uint32_t batch;
    uint64_t entries;
    double seconds;
    double allocs_per_entry;
};

/* Proposes batches of 100-byte entries and waits for each to commit and
 * be applied on the leader, as a client-facing write path would. */
static struct result run(uint32_t batch, uint64_t total)
{
    struct cluster c;
    cluster_init(&c);
    elect(&c);
    uint8_t payload[100];
    memset(payload, 'v', sizeof(payload));
    uint64_t allocs0 = corral_mem_allocs();
    double t0 = now_s();
    uint64_t done = 0, last = 0;
    while (done < total) {
        for (uint32_t k = 0; k < batch; k++) {
            struct corral_rbuf *b = corral_rbuf_new(payload, sizeof(payload));
            if (b == NULL || corral_raft_propose(c.r[1], b, &last) != 0)
                die("propose failed");
            corral_rbuf_unref(b);
        }
        pump(&c);
        if (c.applied[1] < last)
            die("batch not committed");
        done += batch;
        c.now += 1;
        corral_raft_tick(c.r[1], c.now);
        /* Keep memory flat, as the runtime's snapshots will. */
        if (done % 8192 < batch) {
            struct corral_raft_snapshot_meta meta;
            for (uint32_t id = 1; id <= NODES; id++)
                corral_raft_compact(c.r[id], c.applied[id], NULL, 1024, &meta);
        }
    }
    struct result r = {batch, done, now_s() - t0,
                       (double)(corral_mem_allocs() - allocs0) / (double)done};
    cluster_free(&c);
    return r;
}

int main(int argc, char **argv)
{
    const char *json_out = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--json-out") == 0 && i + 1 < argc)
            json_out = argv[++i];
        else {
            fprintf(stderr, "usage: bench-raft [--quick] [--json-out FILE]\n");
            return 2;
        }
    }
    FILE *json = json_out ? fopen(json_out, "w") : NULL;
    if (json_out != NULL && json == NULL)
        die("cannot open the --json-out file");
    static const uint32_t batches[] = {1, 16, 256};
    printf("Raft core, 3 voters in one process, 100-byte entries, codec on every message\n");
    printf("%8s %12s %10s %16s %14s\n", "batch", "entries", "seconds", "entries/s", "allocs/entry");
    for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
        uint64_t total = quick ? 20000 : (batches[i] == 1 ? 300000 : 2000000);
        struct result r = run(batches[i], total);
        double rate = (double)r.entries / r.seconds;
        printf("%8u %12" PRIu64 " %10.3f %16.0f %14.2f\n", r.batch, r.entries, r.seconds, rate,
               r.allocs_per_entry);
        if (json)
            fprintf(json,
                    "{\"bench\":\"raft-core\",\"nodes\":3,\"entry_bytes\":100,\"batch\":%u,"
                    "\"entries\":%" PRIu64 ",\"seconds\":%.4f,\"entries_per_s\":%.0f,"
                    "\"allocs_per_entry\":%.3f}\n",
                    r.batch, r.entries, r.seconds, rate, r.allocs_per_entry);
    }
    if (json)
        fclose(json);
    return 0;
}
