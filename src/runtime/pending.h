/* The requests a node holds while they wait on Raft: writes until their
 * entry is applied, linearizable reads until their ReadIndex is confirmed
 * and that index is applied. Each completes exactly once, through its
 * callback, with a result, an error or a timeout. Loop thread only.
 *
 * Invariants (asserted by corral_pending_check):
 * P1  count equals the number of requests on the three lists.
 * P2  writes and reads_apply are sorted by index; reads are in the order
 *     they were asked.
 * P3  a request is on exactly one list until it completes, then freed. */
#ifndef CORRAL_RUNTIME_PENDING_H
#define CORRAL_RUNTIME_PENDING_H

#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"
#include "core/raft.h"
#include "runtime/metrics.h"

/* A write's outcome: err 0 with the state machine's result (a config
 * store write's in res->kv), or CORRAL_ELOST (its
 * entry was overwritten: not applied), CORRAL_ETIMEDOUT (unknown),
 * CORRAL_ENOTLEADER, CORRAL_ESHUTDOWN (unknown). */
typedef void (*corral_pending_write_cb)(void *ctx, int err, const struct corral_state_result *res);
/* A read may be served (err 0), or failed with err. */
typedef void (*corral_pending_read_cb)(void *ctx, int err);

struct corral_pending;

struct corral_pending_list {
    struct corral_pending *head, *tail;
};

struct corral_pending_table {
    struct corral_pending_list writes;      /* by index */
    struct corral_pending_list reads;       /* waiting for ReadIndex, in order asked */
    struct corral_pending_list reads_apply; /* waiting for the store, by index */
    uint32_t count;
    uint64_t next_read_id;
    /* Outcomes, for the node's stats. */
    uint64_t writes_failed; /* lost, timed out or cut short */
    uint64_t reads_served;
    struct corral_hist commit_hist; /* seconds from proposal to applied */
};

void corral_pending_init(struct corral_pending_table *t);

/* A write proposed at (index, term). 0 or CORRAL_ENOMEM (cb never runs). */
int corral_pending_add_write(struct corral_pending_table *t, uint64_t index, uint64_t term,
                             uint64_t deadline_ms, corral_pending_write_cb cb, void *ctx);
/* A read asked with corral_raft_read_index(*read_id) at now_ms: takes the
 * next id from the table. 0 or CORRAL_ENOMEM (cb never runs). */
uint64_t corral_pending_next_read_id(struct corral_pending_table *t);
int corral_pending_add_read(struct corral_pending_table *t, uint64_t read_id, uint64_t now_ms,
                            uint64_t deadline_ms, corral_pending_read_cb cb, void *ctx);

/* Entry e was applied with res (NULL for no-op and conf entries, and
 * for entries no request waits on, see the node): writes
 * up to e's index complete, ours with res, the overwritten with ELOST. */
void corral_pending_applied(struct corral_pending_table *t, const struct corral_raft_entry *e,
                            const struct corral_state_result *res);
/* The core answered a ReadIndex: the read waits for its index, or fails
 * with CORRAL_ENOTLEADER. Unknown ids (timed out meanwhile) are ignored. */
void corral_pending_read_ready(struct corral_pending_table *t, const struct corral_raft_read *rr);
/* Serves the reads whose index is applied. */
void corral_pending_release_reads(struct corral_pending_table *t, uint64_t applied);
/* Fails the writes up to index with err (a snapshot covered them: their
 * outcome is in it, but not which write did what). */
void corral_pending_fail_writes_upto(struct corral_pending_table *t, uint64_t index, int err);
/* Fails everything with err (shutdown). */
void corral_pending_fail_all(struct corral_pending_table *t, int err);
/* Times out whatever passed its deadline. */
void corral_pending_expire(struct corral_pending_table *t, uint64_t now_ms);

/* A ReadIndex request travels once and may be dropped; reads still
 * unanswered after every_ms are asked again through ask(ud, read_id),
 * with the same id (a late duplicate answer finds nothing and is
 * ignored). */
void corral_pending_retry_reads(struct corral_pending_table *t, uint64_t now_ms, uint64_t every_ms,
                                void (*ask)(void *ud, uint64_t read_id), void *ud);

/* P1-P3; O(n): for tests and debug builds. */
bool corral_pending_check(const struct corral_pending_table *t);

#endif
