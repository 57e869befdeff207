/* See metrics.h. */
#include "runtime/metrics.h"

#include <stdarg.h>
#include <stdio.h>

#include "util/mem.h"

void corral_sbuf_printf(struct corral_sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (int attempt = 0; attempt < 2; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *np = corral_realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

void corral_sbuf_free(struct corral_sbuf *b)
{
    corral_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static double bucket_bound(int i)
{
    double le = 0.0001;
    for (int k = 0; k < i; k++)
        le *= 2;
    return le;
}

void corral_hist_observe(struct corral_hist *h, double seconds)
{
    h->count++;
    h->sum += seconds;
    for (int i = 0; i < CORRAL_HIST_BUCKETS; i++) {
        if (seconds <= bucket_bound(i)) {
            h->counts[i]++;
            return;
        }
    }
    h->inf++;
}

void corral_hist_write(const struct corral_hist *h, const char *name, const char *help,
                       struct corral_sbuf *out)
{
    corral_sbuf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < CORRAL_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        corral_sbuf_printf(out, "%s_bucket{le=\"%.4f\"} %llu\n", name, bucket_bound(i),
                           (unsigned long long)cum);
    }
    corral_sbuf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                       (unsigned long long)h->count, name, h->sum, name,
                       (unsigned long long)h->count);
}
