/* Linearizability checker for key-value histories recorded by the
 * deterministic simulator: Wing & Gong search with Lowe's memoization (as in
 * Knossos and Porcupine), run separately on each key. Test code only. */
#ifndef CORRAL_SIM_LINCHECK_H
#define CORRAL_SIM_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lincheck_kind {
    LINCHECK_PUT = 1,
    LINCHECK_GET = 2,
    LINCHECK_DEL = 3,
    LINCHECK_CAS = 4,
};

/* One client operation in a history. Times are simulated ms.
 *
 * Intervals are closed: an op may take effect at any instant t with
 * call_ms <= t <= return_ms. So if A.return_ms == B.call_ms, A and B overlap
 * and may linearize in either order; A precedes B only if
 * A.return_ms < B.call_ms. A simulator with coarse clocks therefore never
 * gets a false violation from a tie. */
struct lincheck_op {
    uint32_t client; /* only used in explanations */
    uint8_t kind;    /* enum lincheck_kind */
    uint32_t key;
    uint64_t value;  /* PUT/CAS: value written; GET: value read (0 = absent) */
    uint64_t expect; /* CAS: expected current value (0 = absent) */
    bool cas_ok;     /* CAS: the outcome the client observed (ignored if pending) */
    uint64_t call_ms;
    uint64_t return_ms; /* LINCHECK_PENDING when the outcome is unknown (timeout,
                           crash): the op may or may not have taken effect, at
                           any time after call_ms */
};

#define LINCHECK_PENDING UINT64_MAX

/* At most this many ops per call: indexes are uint32_t and each op needs two
 * list nodes; simulator histories are 10^2..10^4 ops. */
#define LINCHECK_OPS_MAX (1u << 24)

/* The memo cache of one key may hold at most this many bytes; past it the
 * key's result is LINCHECK_UNKNOWN. Each entry costs 16 bytes plus one bit
 * per op on the key (rounded up to 64). */
#define LINCHECK_CACHE_BYTES_MAX ((size_t)512 << 20)

/* A budget that checks typical simulator histories in well under 1 ms per key
 * and bounds a pathological key to roughly a second. */
#define LINCHECK_STEP_BUDGET_DEFAULT ((uint64_t)10 * 1000 * 1000)

enum lincheck_result {
    LINCHECK_OK = 0,
    LINCHECK_VIOLATION = 1,
    LINCHECK_UNKNOWN = 2, /* step budget, cache limit or malloc exhausted */
    LINCHECK_INVALID = 3, /* malformed op: bad kind, return before call, too many ops */
};

/* Checks ops[0..n) (any order) against a sequential map where every key starts
 * absent (0): GET returns the current value; PUT sets it; DEL sets 0; CAS sets
 * value iff current == expect, and a completed CAS must agree with cas_ok.
 *
 * The history is split per key (P-compositionality: a map is linearizable iff
 * each key's sub-history is). A pending op takes effect once at any time after
 * its call or never; a pending CAS succeeds iff the value then equals expect.
 * Pending GETs are dropped up front since they constrain nothing.
 *
 * step_budget bounds the search steps per key; exceeding it gives
 * LINCHECK_UNKNOWN, never a pass. Linearizable histories are found in about
 * one step per op; proving a violation may exhaust the search, which is
 * exponential in the pending ops the checker cannot prune (see
 * drop_unobserved_pending and bound_observed_pending in lincheck.c), so a hot
 * key with dozens of unobserved pending writes plus failed CASes can end
 * UNKNOWN rather than VIOLATION. Callers should treat UNKNOWN as a failure. A violation on any key
 * wins over UNKNOWN on another; keys are checked in ascending order and the first violating key is
 * reported.
 *
 * why (may be NULL) receives a one-line explanation, truncated to why_len:
 * on VIOLATION the key, the op (index into ops[], client, kind, interval) that
 * has no valid linearization point after the longest linearizable prefix the
 * search found, that prefix's length and the value the key then had; on
 * UNKNOWN or INVALID the reason; on OK an empty string.
 *
 * The checker allocates and frees its own memory; ops is only read. */
enum lincheck_result lincheck_check(const struct lincheck_op *ops, size_t n, uint64_t step_budget,
                                    char *why, size_t why_len);

#endif
