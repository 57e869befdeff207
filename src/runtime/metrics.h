/* Fixed-bucket latency histograms, filled by the node and written out as
 * Prometheus text by src/api (metrics.c). */
#ifndef CORRAL_RUNTIME_METRICS_H
#define CORRAL_RUNTIME_METRICS_H

#include <stdint.h>

/* Buckets (seconds): 100 us doubling up to ~6.5 s, then +Inf. */
#define CORRAL_HIST_BUCKETS 17
struct corral_hist {
    uint64_t counts[CORRAL_HIST_BUCKETS]; /* per bucket, not cumulative */
    uint64_t inf;
    uint64_t count;
    double sum;
};
void corral_hist_observe(struct corral_hist *h, double seconds);
/* The upper bound (seconds, inclusive) of bucket i < CORRAL_HIST_BUCKETS. */
double corral_hist_bound(int i);

#endif
