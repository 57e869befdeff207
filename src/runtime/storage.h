/* Durable storage of one node's Raft state in its data directory:
 *
 *     data-dir/meta           node id, cluster id, node name, cluster name,
 *                             format version (CRC32C)
 *     data-dir/wal-<first index, 16 hex digits>.log   WAL segments
 *     data-dir/snap-<index, 16 hex>.snap              latest snapshot
 *     data-dir/hardstate      the hard state, when a truncation or a
 *                             deletion of segments removed its record
 *     data-dir/lock           flock'ed while open
 *
 * (Layouts in storage_impl.h.)
 * A WAL segment is a sequence of records, each with a CRC32C: entries and
 * hard states. Appending an entry whose index is at or below the last one
 * truncates the log from that index (a new leader overwrote the tail).
 * Segments roll over at a size limit; segments wholly covered by the
 * latest snapshot are deleted after the snapshot is durable.
 *
 * Recovery (corral_storage_open): a torn tail of the last segment (a
 * partial or checksum-failing record at the very end of the last segment,
 * what a crash in the middle of a write leaves) is truncated away and
 * reported in the log. Corruption anywhere else (a bad record followed by
 * good data, a bad record in an older segment, a bad meta or snapshot
 * file, a gap in indexes) is an error: the node refuses to start, says
 * which file and offset, and changes nothing on disk.
 *
 * Durability: corral_storage_append and _set_hard_state only buffer and
 * write; corral_storage_sync makes everything written so far durable (one
 * fdatasync for the whole batch: group commit). _save_snapshot is durable
 * when it returns (temporary file, fsync, rename, directory fsync). Rare
 * steps sync on their own: a truncation is durable before the new entries
 * are written after it, a segment is synced when it is closed, and a hard
 * state whose record a truncation or deletion removes is first written
 * durably to data-dir/hardstate (the newer of it and the WAL's wins).
 *
 * Blocking I/O. Not thread-safe: one thread uses a storage at a time (the
 * runtime may hand it to a worker thread for a batch and take it back).
 * This is runtime code: it may do I/O; src/core may not include it. */
#ifndef CORRAL_RUNTIME_STORAGE_H
#define CORRAL_RUNTIME_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/raft.h"

#define CORRAL_STORAGE_FORMAT_VERSION 1
/* A segment is closed and a new one started past this size. */
#define CORRAL_STORAGE_SEGMENT_BYTES (64u << 20)

/* Who the data dir belongs to. Opening checks a data dir's meta file
 * against the wanted identity:
 * - node_id and cluster_id: a different pair is refused (CORRAL_EINVAL),
 *   unless adopt_ids: then the pair on disk wins and is reported in
 *   corral_storage_state.ident (a coordinator restarted with a different
 *   --peers list, or one that joined: its ids came from the cluster).
 * - name and cluster_name (1-64 chars of [a-z0-9._-]; "" for none): a
 *   meta file naming another is refused (CORRAL_EINVAL). A meta file of
 *   version 1 (node and cluster ids only, before named nodes) is upgraded
 *   in place to version 2 with the wanted names, keeping its ids; the
 *   rewrite is atomic and happens only after the whole dir validated. */
#define CORRAL_STORAGE_NAME_MAX 64
struct corral_storage_ident {
    uint64_t node_id;
    uint64_t cluster_id;
    char name[CORRAL_STORAGE_NAME_MAX + 1];
    char cluster_name[CORRAL_STORAGE_NAME_MAX + 1];
    bool adopt_ids;
};

/* What a previous run left: hand it to corral_raft_new. On a brand new
 * data directory everything is zero/NULL and fresh is true. */
struct corral_storage_state {
    bool fresh;
    struct corral_raft_hard_state hs;
    struct corral_raft_snapshot_meta snap; /* index 0: none */
    struct corral_rbuf *snap_data;         /* one reference, NULL when none */
    uint32_t n_entries;                    /* entries after snap.index, in order */
    struct corral_raft_entry *entries;     /* payload rbufs owned by the array */
    uint64_t torn_bytes;                   /* bytes of torn tail truncated, 0 normally */
    struct corral_storage_ident ident;     /* as the meta file now says */
    bool meta_upgraded;                    /* a version-1 meta file was rewritten */
};

/* Reads the identity in dir's meta file without opening or locking the
 * dir: 0, or CORRAL_ENOTFOUND when there is no meta file (a new or empty
 * dir), or an error as corral_storage_open's with a message in err. */
int corral_storage_peek_ident(const char *dir, struct corral_storage_ident *out, char *err,
                              size_t errlen);
void corral_storage_state_free(struct corral_storage_state *s);

struct corral_storage;

/* Opens (creating it and the meta file when missing or empty) the data
 * directory dir for ident and loads its state. Errors, with a one-line
 * human message in err (errlen bytes) naming the file and the problem:
 *   CORRAL_EIO       the directory cannot be created, read or locked
 *                    (another process holds it: flock on data-dir/lock)
 *   CORRAL_ECORRUPT  a checksum or structure error outside a torn tail
 *   CORRAL_EVERSION  a format version this build does not read
 *   CORRAL_EINVAL    the meta file names another node or cluster
 * On any error nothing on disk was modified, except that the lock file is
 * created if missing. fresh is true when nothing was loaded (no snapshot,
 * no entries, a zero hard state): a node that crashed before writing
 * anything is still fresh. */
int corral_storage_open(const char *dir, const struct corral_storage_ident *ident,
                        struct corral_storage **out, struct corral_storage_state *state, char *err,
                        size_t errlen);

/* Writes entries (in index order, contiguous). If entries[0].index is not
 * last_index + 1, the log is first truncated so that it ends at
 * entries[0].index - 1 (this may reach into older segments).
 * CORRAL_EINVAL when the entries are not contiguous, start at or below the
 * snapshot or leave a gap after the log; CORRAL_ETOOBIG for an entry over
 * CORRAL_RAFT_ENTRY_BYTES_MAX; CORRAL_EIO on a write error, after which
 * every call on s answers CORRAL_EIO (close and reopen to recover). */
int corral_storage_append(struct corral_storage *s, const struct corral_raft_entry *entries,
                          uint32_t n);
int corral_storage_set_hard_state(struct corral_storage *s,
                                  const struct corral_raft_hard_state *hs);
/* fdatasync of everything written since the last sync. */
int corral_storage_sync(struct corral_storage *s);

/* After a call answered CORRAL_EIO: the errno of the system call that
 * failed s (ENOSPC for a full disk, EIO for a failed fsync, ...), so the
 * log can say which; 0 when s has not failed or the cause is not a system
 * call's. */
int corral_storage_errno(const struct corral_storage *s);

/* Replaces the snapshot with (meta, data), durably, then drops WAL entries
 * at or below meta->index (segments entirely covered are deleted; a
 * snapshot newer than the whole log, as one received from a leader,
 * leaves an empty log that continues at meta->index + 1). */
int corral_storage_save_snapshot(struct corral_storage *s,
                                 const struct corral_raft_snapshot_meta *meta,
                                 struct corral_rbuf *data);

/* Counters for /metrics. first_index: the first entry still in a WAL
 * segment (it may be covered by the snapshot), 0 when none; last_index:
 * the log's last index (the snapshot's when the WAL holds nothing newer). */
struct corral_storage_stats {
    uint64_t syncs;
    uint64_t bytes_written;
    uint64_t segments;
    uint64_t first_index, last_index;
};
void corral_storage_stats(const struct corral_storage *s, struct corral_storage_stats *st);

/* Closes files (after a final sync) and frees s. s may be NULL. */
void corral_storage_close(struct corral_storage *s);

/* Tests only: segments roll over past bytes instead of
 * CORRAL_STORAGE_SEGMENT_BYTES (0 restores it), for storages opened
 * afterwards. One of the two pieces of global state here. */
void corral_storage_set_segment_bytes_for_test(uint64_t bytes);
/* The same for the preallocation step of the last segment (default 1
 * MiB; 0 restores it): the WAL fuzzer uses a small one, since zeroing a
 * MiB was half of its every run. Recovery does not depend on it. */
void corral_storage_set_prealloc_bytes_for_test(uint64_t bytes);

#endif
