/* The replicated config key-value store: a pure, deterministic state
 * machine. Commands are encoded into Raft entries by the leader and
 * applied, in log order, on every node; the same commands in the same
 * order give byte-identical snapshots everywhere.
 *
 * Keys are 1..CORRAL_KV_KEY_BYTES_MAX bytes (any bytes but NUL), values
 * 0..CORRAL_KV_VALUE_BYTES_MAX bytes. A key's version is the log index of
 * the command that last wrote it (so versions only grow, and a
 * compare-and-swap names the exact write it expects). A CAS version of 0
 * means "the key must not exist".
 *
 * Keys are kept in order (a balanced tree), so a prefix listing is a
 * range scan: O(log n + k).
 *
 * Byte layouts, version 1. Integers are little endian, unaligned:
 *
 *     command:  u8 version (1), u8 op (PUT or DEL), u8 flags (bit 0:
 *               has_cas; no other bit), u64 cas (0 without has_cas),
 *               u32 key_len, key, u32 value_len (0 for DEL), value.
 *     snapshot: u8 version (1), u64 applied index, u64 count,
 *               count x { u32 key_len, key, u64 version, u32 value_len,
 *               value } in strictly increasing key order (memcmp, then
 *               shorter first), then u32 CRC32C of every byte before it.
 *
 * Decoders check every length against its limit and the buffer, and want
 * the input consumed exactly; encodings are canonical (whatever decodes
 * re-encodes to the same bytes). */
#ifndef CORRAL_CORE_KV_H
#define CORRAL_CORE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/rbuf.h"

#define CORRAL_KV_KEY_BYTES_MAX 512
#define CORRAL_KV_VALUE_BYTES_MAX (256u << 10)
#define CORRAL_KV_KEYS_MAX 1000000 /* puts creating a key past this are refused */
/* Puts that would make the store's snapshot larger than this are refused
 * (CORRAL_KV_FULL): 1M keys of 256 KiB would not fit in memory or in a
 * Raft snapshot (CORRAL_RAFT_SNAPSHOT_BYTES_MAX, checked in kv.c), and a
 * store that cannot be snapshotted would grow the log without bound. */
#define CORRAL_KV_SNAPSHOT_BYTES_MAX (256u << 20)

enum corral_kv_op {
    CORRAL_KV_PUT = 1,
    CORRAL_KV_DEL = 2,
};

struct corral_kv_cmd {
    uint8_t op; /* enum corral_kv_op */
    bool has_cas;
    uint64_t cas;       /* expected version when has_cas (0: must not exist) */
    const uint8_t *key; /* borrowed */
    uint32_t key_len;
    const uint8_t *value; /* borrowed, PUT only */
    uint32_t value_len;
};

/* Encoding of a command as an entry payload (versioned, length-checked;
 * the WAL and transport add checksums around it). A new rbuf with one
 * reference for the caller; NULL when out of memory or when c is one the
 * decoder would refuse (bad op, key length or NUL byte, value length, a
 * DEL with a value). */
struct corral_rbuf *corral_kv_cmd_encode(const struct corral_kv_cmd *c);
/* Decodes a payload; the key and value point into buf. CORRAL_EINVAL on
 * anything malformed. */
int corral_kv_cmd_decode(const struct corral_rbuf *buf, struct corral_kv_cmd *out);
/* The same over len bytes at data, for a command framed inside another
 * payload (core/state.h); the key and value point into data. */
int corral_kv_cmd_decode_bytes(const uint8_t *data, size_t len, struct corral_kv_cmd *out);

enum corral_kv_status {
    CORRAL_KV_OK = 0,
    CORRAL_KV_NOT_FOUND = 1,   /* DEL of a missing key */
    CORRAL_KV_CAS_FAILED = 2,  /* version did not match; result.version is the current (0: none) */
    CORRAL_KV_FULL = 3,        /* CORRAL_KV_KEYS_MAX or CORRAL_KV_SNAPSHOT_BYTES_MAX reached */
    CORRAL_KV_BAD_COMMAND = 4, /* payload did not decode: applied as a no-op */
};

struct corral_kv_result {
    uint8_t status;   /* enum corral_kv_status */
    uint64_t version; /* OK: the new version (the index); CAS_FAILED: current; else 0 */
};

struct corral_kv;

struct corral_kv *corral_kv_new(void);
void corral_kv_free(struct corral_kv *kv);

/* Applies the entry payload committed at index (> every index applied
 * before). Never fails on bad input: a malformed payload (or NULL) is a
 * no-op that reports CORRAL_KV_BAD_COMMAND. The CAS check comes first
 * (a DEL may carry one too), then NOT_FOUND or FULL. Every status marks
 * index applied. Returns CORRAL_EINVAL when index <= corral_kv_applied()
 * and CORRAL_ENOMEM when memory runs out; the store, applied index
 * included, is then unchanged and *res untouched. res may be NULL. */
int corral_kv_apply(struct corral_kv *kv, uint64_t index, const struct corral_rbuf *payload,
                    struct corral_kv_result *res);

/* Marks index applied without a command (no-op and conf entries), so that
 * corral_kv_applied() tracks the log. CORRAL_EINVAL, changing nothing,
 * when index <= corral_kv_applied(). */
int corral_kv_skip(struct corral_kv *kv, uint64_t index);
uint64_t corral_kv_applied(const struct corral_kv *kv);

struct corral_kv_item {
    const uint8_t *key; /* borrowed from the store: valid until the next apply/restore */
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
    uint64_t version;
};

/* Looks up key; false when absent (or the key is not a valid one). */
bool corral_kv_get(const struct corral_kv *kv, const uint8_t *key, uint32_t key_len,
                   struct corral_kv_item *out);

/* Keys starting with prefix (prefix_len may be 0: all keys), strictly
 * after `after` when after_len > 0 (for paging), in byte order, at most
 * limit of them into out (which may be NULL when limit is 0). Returns how
 * many were written; *more (more may be NULL) is set when further keys
 * match. */
uint32_t corral_kv_list(const struct corral_kv *kv, const uint8_t *prefix, uint32_t prefix_len,
                        const uint8_t *after, uint32_t after_len, struct corral_kv_item *out,
                        uint32_t limit, bool *more);

uint64_t corral_kv_count(const struct corral_kv *kv);

/* Walks the whole store and checks its invariants: keys valid and in
 * strictly increasing order, the tree balanced with correct heights,
 * versions in 1..applied, the count and the snapshot size. O(n): for
 * tests and debug checks, not the apply path. */
bool corral_kv_check(const struct corral_kv *kv);

/* Snapshot: the whole store and its applied index, versioned, with a
 * CRC32C; at most CORRAL_KV_SNAPSHOT_BYTES_MAX bytes. A new rbuf with one
 * reference for the caller, NULL when out of memory. Equal stores give
 * equal bytes. Restore validates the whole snapshot first (version, CRC,
 * limits, key order, versions in 1..applied, exact length), then
 * replaces the store's contents and applied index (kv unchanged on
 * error: CORRAL_ECORRUPT, CORRAL_EVERSION, CORRAL_ENOMEM). */
struct corral_rbuf *corral_kv_snapshot(const struct corral_kv *kv);
int corral_kv_restore(struct corral_kv *kv, const struct corral_rbuf *snap);

#endif
