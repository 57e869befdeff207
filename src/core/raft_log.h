/* The in-memory Raft log of one node: the entries after its snapshot point
 * (and a few before it, kept for slow followers), the term of the entry
 * just before the first held one, and how far the log is persisted. */
#ifndef CORRAL_CORE_RAFT_LOG_H
#define CORRAL_CORE_RAFT_LOG_H

#include <stdint.h>

#include "core/raft.h"

struct raft_log {
    uint64_t offset;    /* index of e[0]; the log holds [offset, offset + n) */
    uint64_t prev_term; /* term of entry offset - 1 (0 when offset == 1) */
    uint64_t stable;    /* last index known persisted */
    uint64_t n;
    uint64_t cap;
    struct corral_raft_entry *e; /* owned, payload references held */
};

void raft_log_init(struct raft_log *l);
void raft_log_close(struct raft_log *l);

uint64_t raft_log_last_index(const struct raft_log *l);
uint64_t raft_log_last_term(const struct raft_log *l);

/* The term of the entry at index: 0 and *term set when known (index 0 has
 * term 0, offset - 1 has prev_term); CORRAL_ECOMPACTED when it was dropped;
 * CORRAL_ENOTFOUND past the end. */
int raft_log_term(const struct raft_log *l, uint64_t index, uint64_t *term);

/* The entry at index, or NULL when not held. */
const struct corral_raft_entry *raft_log_get(const struct raft_log *l, uint64_t index);

/* Appends one entry, which must be at last + 1; takes a reference to its
 * payload. CORRAL_ENOMEM leaves the log unchanged. */
int raft_log_append(struct raft_log *l, const struct corral_raft_entry *entry);

/* Drops the entries from index on (index > offset - 1), lowering stable. */
void raft_log_truncate(struct raft_log *l, uint64_t index);

/* Forgets entries up to and including index (a snapshot covers them). */
void raft_log_compact(struct raft_log *l, uint64_t index);

/* Replaces everything with an empty log positioned after (index, term). */
void raft_log_reset(struct raft_log *l, uint64_t index, uint64_t term);

/* Persistence finished up to (index, term): stable moves there unless the
 * entry was replaced in the meantime (then the completion is stale). */
void raft_log_stable_to(struct raft_log *l, uint64_t index, uint64_t term);

/* Copies entries [lo, hi] (all held) into a new array with payload
 * references, at most max_n entries and max_bytes of payload (at least one
 * entry whatever its size). *out is NULL when the range is empty. */
int raft_log_slice(const struct raft_log *l, uint64_t lo, uint64_t hi, uint32_t max_n,
                   uint64_t max_bytes, struct corral_raft_entry **out, uint32_t *n_out);

/* Frees an array from raft_log_slice. */
void raft_entries_free(struct corral_raft_entry *e, uint32_t n);

/* Whether a log ending at (index, term) is at least as up to date as this
 * one (section 5.4.1). */
int raft_log_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term);

#endif
