/* The request trace: see trace.h. */
#include "runtime/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/log.h"

#define TRACE_RECORDS_MAX (4u << 20) /* 4 Mi records, 128 MiB: seconds of full load */

struct record {
    uint32_t stage;
    uint64_t a, b, t_ns;
};

bool corral_trace_enabled;
uint64_t corral_trace_request;

static struct record *records;
static uint64_t n_records, n_dropped;
static char *path;

int corral_trace_start(void)
{
    const char *p = getenv("CORRAL_TRACE_FILE");
    if (p == NULL || p[0] == '\0')
        return 0;
    records = malloc(TRACE_RECORDS_MAX * sizeof(*records));
    path = strdup(p);
    if (records == NULL || path == NULL) {
        free(records);
        free(path);
        records = NULL;
        path = NULL;
        return -1;
    }
    n_records = n_dropped = 0;
    corral_trace_enabled = true;
    corral_log(CORRAL_LOG_INFO, "tracing requests into %s (CORRAL_TRACE_FILE), written at stop",
               path);
    return 0;
}

void corral_trace_record(enum corral_trace_stage stage, uint64_t a, uint64_t b)
{
    if (n_records == TRACE_RECORDS_MAX) {
        n_dropped++;
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    records[n_records++] = (struct record){
        (uint32_t)stage, a, b, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec};
}

void corral_trace_stop(void)
{
    if (!corral_trace_enabled)
        return;
    corral_trace_enabled = false;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        corral_log(CORRAL_LOG_ERROR, "cannot write the trace to %s: %s", path, strerror(errno));
    } else {
        fprintf(f, "# corral trace v1 records %llu dropped %llu\n", (unsigned long long)n_records,
                (unsigned long long)n_dropped);
        for (uint64_t i = 0; i < n_records; i++)
            fprintf(f, "%u %llu %llu %llu\n", records[i].stage, (unsigned long long)records[i].a,
                    (unsigned long long)records[i].b, (unsigned long long)records[i].t_ns);
        if (fclose(f) != 0)
            corral_log(CORRAL_LOG_ERROR, "writing the trace to %s failed: %s", path,
                       strerror(errno));
        else
            corral_log(CORRAL_LOG_INFO, "trace: %llu records written to %s (%llu dropped)",
                       (unsigned long long)n_records, path, (unsigned long long)n_dropped);
    }
    free(records);
    free(path);
    records = NULL;
    path = NULL;
}
