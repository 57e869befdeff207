/* See metrics.h. */
#include "runtime/metrics.h"

double corral_hist_bound(int i)
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
        if (seconds <= corral_hist_bound(i)) {
            h->counts[i]++;
            return;
        }
    }
    h->inf++;
}
