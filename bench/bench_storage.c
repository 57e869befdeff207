/* The storage write path: appends of 100-byte entries with one sync per
 * batch of 1, 16 and 64 entries (group commit), on a fresh data directory
 * under /tmp (or $TMPDIR). Prints entries/s and syncs/s per batch size.
 * --quick runs fewer entries; --json-out FILE also writes one JSON line per
 * batch size. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral.h"
#include "runtime/storage.h"
#include "util/rbuf.h"

#define ENTRY_BYTES 100
#define BATCH_MAX 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Appends n entries in batches of batch, syncing after each. */
static int run(const char *dir, uint32_t batch, uint32_t n, struct corral_rbuf *payload, FILE *json)
{
    static const struct corral_storage_ident id = {.node_id = 1, .cluster_id = 1};
    struct corral_storage *s;
    struct corral_storage_state st;
    char err[256];
    int rv = corral_storage_open(dir, &id, &s, &st, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "open: %s\n", err);
        return rv;
    }
    corral_storage_state_free(&st);
    struct corral_raft_entry es[BATCH_MAX];
    double t0 = now_s();
    for (uint32_t done = 0; done < n && rv == 0; done += batch) {
        for (uint32_t i = 0; i < batch; i++)
            es[i] = (struct corral_raft_entry){.term = 1, .index = done + i + 1, .data = payload};
        rv = corral_storage_append(s, es, batch);
        if (rv == 0)
            rv = corral_storage_sync(s);
    }
    double dt = now_s() - t0;
    struct corral_storage_stats stats;
    corral_storage_stats(s, &stats);
    corral_storage_close(s);
    if (rv != 0) {
        fprintf(stderr, "write: %s\n", corral_strerror(rv));
        return rv;
    }
    printf("%5u %8u %14.0f %10.0f\n", batch, n, n / dt, (double)stats.syncs / dt);
    if (json != NULL)
        fprintf(json,
                "{\"bench\":\"storage\",\"batch\":%u,\"entries\":%u,\"entry_bytes\":%d,"
                "\"entries_per_s\":%.0f,\"syncs_per_s\":%.0f}\n",
                batch, n, ENTRY_BYTES, n / dt, (double)stats.syncs / dt);
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t n = 16384;
    FILE *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            n = 1024;
        } else if (strcmp(argv[i], "--json-out") == 0 && i + 1 < argc) {
            json = fopen(argv[++i], "w");
            if (json == NULL) {
                perror(argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench-storage [--quick] [--json-out FILE]\n");
            return 2;
        }
    }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    static const uint32_t batches[] = {1, 16, 64};
    struct corral_rbuf *payload = corral_rbuf_new(NULL, ENTRY_BYTES);
    if (payload == NULL)
        return 1;
    memset(payload->data, 'x', ENTRY_BYTES);
    printf("batch  entries      entries/s    syncs/s\n");
    int rv = 0;
    for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]) && rv == 0; i++) {
        char dir[512];
        snprintf(dir, sizeof(dir), "%s/corral-bench-storage-XXXXXX", tmp);
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            rv = 1;
            break;
        }
        rv = run(dir, batches[i], n, payload, json);
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    corral_rbuf_unref(payload);
    if (json != NULL)
        fclose(json);
    return rv == 0 ? 0 : 1;
}
