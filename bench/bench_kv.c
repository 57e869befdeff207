/* bench-kv: how fast the config store applies puts of 100-byte values
 * (new keys, then overwrites, in a scrambled order), answers gets and
 * paged listings, and takes and restores a snapshot. Payloads are encoded
 * before the clock starts, so apply times include decoding only.
 *
 *   bench-kv [--quick] [--json-out FILE] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kv.h"
#include "util/mem.h"
#include "util/rbuf.h"

#define VALUE_BYTES 100
#define PAGE 100

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-kv: %s\n", what);
    exit(1);
}

/* Key i of n, visited in a scrambled but fixed order: multiplying by a
 * prime that does not divide n permutes 0..n-1. */
static uint64_t scrambled(uint64_t i, uint64_t n)
{
    return (i * 7919) % n;
}

static int key_of(uint64_t k, char *buf)
{
    return snprintf(buf, 32, "svc/%04" PRIu64 "/node-%08" PRIu64, k % 1000, k);
}

static struct corral_rbuf **encode_puts(uint64_t n, uint8_t fill)
{
    struct corral_rbuf **p = malloc(n * sizeof(*p));
    uint8_t value[VALUE_BYTES];
    char key[32];
    if (p == NULL)
        die("out of memory");
    memset(value, fill, sizeof(value));
    for (uint64_t i = 0; i < n; i++) {
        int len = key_of(scrambled(i, n), key);
        struct corral_kv_cmd c = {CORRAL_KV_PUT, false, 0,          (const uint8_t *)key,
                                  (uint32_t)len, value, VALUE_BYTES};
        if ((p[i] = corral_kv_cmd_encode(&c)) == NULL)
            die("encode");
    }
    return p;
}

static FILE *json;

static void report(const char *phase, uint64_t ops, double seconds, uint64_t allocs)
{
    double rate = (double)ops / seconds;
    double per_op = (double)allocs / (double)ops;
    printf("%-12s %10" PRIu64 " %10.3f %14.0f %14.2f\n", phase, ops, seconds, rate, per_op);
    if (json)
        fprintf(json,
                "{\"bench\":\"kv\",\"phase\":\"%s\",\"value_bytes\":%d,\"ops\":%" PRIu64
                ",\"seconds\":%.4f,\"ops_per_s\":%.0f,\"allocs_per_op\":%.3f}\n",
                phase, VALUE_BYTES, ops, seconds, rate, per_op);
}

static void apply_all(struct corral_kv *kv, struct corral_rbuf **p, uint64_t n, uint64_t *index,
                      const char *phase)
{
    uint64_t allocs0 = corral_mem_allocs();
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        struct corral_kv_result r;
        if (corral_kv_apply(kv, ++*index, p[i], &r) != 0 || r.status != CORRAL_KV_OK)
            die("apply");
    }
    report(phase, n, now_s() - t0, corral_mem_allocs() - allocs0);
    for (uint64_t i = 0; i < n; i++)
        corral_rbuf_unref(p[i]);
    free(p);
}

static void bench_reads(struct corral_kv *kv, uint64_t n)
{
    char key[32];
    struct corral_kv_item it;
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        int len = key_of(scrambled(i, n), key);
        if (!corral_kv_get(kv, (const uint8_t *)key, (uint32_t)len, &it))
            die("get");
    }
    report("get", n, now_s() - t0, 0);

    struct corral_kv_item page[PAGE];
    uint8_t after[CORRAL_KV_KEY_BYTES_MAX];
    uint32_t after_len = 0, got;
    uint64_t listed = 0;
    bool more = true;
    t0 = now_s();
    while (more) {
        got = corral_kv_list(kv, (const uint8_t *)"svc/", 4, after, after_len, page, PAGE, &more);
        listed += got;
        if (got > 0) {
            after_len = page[got - 1].key_len;
            memcpy(after, page[got - 1].key, after_len);
        }
    }
    if (listed != n)
        die("list");
    report("list-paged", listed, now_s() - t0, 0);
}

static void bench_snapshot(struct corral_kv *kv)
{
    double t0 = now_s();
    struct corral_rbuf *snap = corral_kv_snapshot(kv);
    double t_snap = now_s() - t0;
    if (snap == NULL)
        die("snapshot");
    struct corral_kv *copy = corral_kv_new();
    t0 = now_s();
    if (copy == NULL || corral_kv_restore(copy, snap) != 0)
        die("restore");
    double t_restore = now_s() - t0;
    printf("snapshot: %" PRIu32 " bytes, %.3f s to take, %.3f s to restore (%.0f MB/s)\n",
           snap->len, t_snap, t_restore, (double)snap->len / t_restore / 1e6);
    if (json)
        fprintf(json,
                "{\"bench\":\"kv\",\"phase\":\"snapshot\",\"keys\":%" PRIu64 ",\"bytes\":%" PRIu32
                ",\"take_s\":%.4f,\"restore_s\":%.4f}\n",
                corral_kv_count(kv), snap->len, t_snap, t_restore);
    corral_kv_free(copy);
    corral_rbuf_unref(snap);
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
            fprintf(stderr, "usage: bench-kv [--quick] [--json-out FILE]\n");
            return 2;
        }
    }
    json = json_out ? fopen(json_out, "w") : NULL;
    if (json_out != NULL && json == NULL)
        die("cannot open the --json-out file");
    uint64_t n = quick ? 10000 : 100000; /* 7919 divides neither: see scrambled() */
    struct corral_kv *kv = corral_kv_new();
    if (kv == NULL)
        die("out of memory");
    uint64_t index = 0;
    printf("config store, %" PRIu64 " keys of ~22 bytes, %d-byte values\n", n, VALUE_BYTES);
    printf("%-12s %10s %10s %14s %14s\n", "phase", "ops", "seconds", "ops/s", "allocs/op");
    apply_all(kv, encode_puts(n, 'a'), n, &index, "put-new");
    apply_all(kv, encode_puts(n, 'b'), n, &index, "put-over");
    bench_reads(kv, n);
    bench_snapshot(kv);
    corral_kv_free(kv);
    if (json)
        fclose(json);
    return 0;
}
