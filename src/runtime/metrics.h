/* Prometheus text exposition helpers: a growable text buffer and fixed-
 * bucket latency histograms. */
#ifndef CORRAL_RUNTIME_METRICS_H
#define CORRAL_RUNTIME_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct corral_sbuf {
    char *p;
    size_t len, cap;
    bool oom; /* an append failed; the text is truncated */
};
void corral_sbuf_printf(struct corral_sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void corral_sbuf_free(struct corral_sbuf *b);

/* Buckets (seconds): 100 us doubling up to ~6.5 s, then +Inf. */
#define CORRAL_HIST_BUCKETS 17
struct corral_hist {
    uint64_t counts[CORRAL_HIST_BUCKETS]; /* per bucket, not cumulative */
    uint64_t inf;
    uint64_t count;
    double sum;
};
void corral_hist_observe(struct corral_hist *h, double seconds);
void corral_hist_write(const struct corral_hist *h, const char *name, const char *help,
                       struct corral_sbuf *out);

#endif
