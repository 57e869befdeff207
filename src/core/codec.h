/* The binary codec for Raft messages, log entries, hard state and snapshot
 * meta: the bytes that cross the network and land on disk. Every encoding
 * carries a format version and a CRC32C, and the decoders treat their input
 * as hostile: they check every length and count against a documented limit
 * before reading or allocating, and return an error instead of crashing.
 *
 * Byte layout, format version 1. Integers are little endian, unaligned;
 * there is no padding. Every encoding is a frame:
 *
 *     u8   version     CORRAL_CODEC_VERSION. Byte 0 in every version to
 *                      come, so a reader can always tell which layout
 *                      follows (and answers CORRAL_EVERSION when it cannot).
 *     u8   kind        1 message, 2 entry, 3 hard state, 4 snapshot meta;
 *                      bytes of one kind never decode as another.
 *     ...  body        below, per kind
 *     u32  crc32c      CRC32C (Castagnoli) of every byte before it, version
 *                      through the end of the body. The trailer position
 *                      lets the encoder checksum in the same pass it writes.
 *
 * Bodies (sizes in bytes):
 *
 *     message (kind 1), 92 + sections:
 *         u8 type (1..CORRAL_RAFT_MSG_TYPE_MAX), u8 reject (0 or 1),
 *         u16 flags (only CORRAL_RAFT_FLAG_TRANSFER | CORRAL_RAFT_FLAG_DONE),
 *         u64 from, to, term, index, log_term, commit, hint_index,
 *             hint_term, context, size, offset;
 *         then, for APPEND only:   u32 n_entries, n_entries x entry;
 *         then, for SNAPSHOT only: snapshot meta, u32 chunk_len, chunk.
 *         Other types carry neither section: encoding refuses their
 *         entries or chunk and ignores their snapshot meta; decoding
 *         leaves all three zero.
 *     entry (kind 2 alone, or inside a message), 21 + data_len:
 *         u64 term, u64 index, u8 type (0..CORRAL_RAFT_ENTRY_TYPE_MAX),
 *         u32 data_len (<= CORRAL_RAFT_ENTRY_BYTES_MAX), data.
 *     hard state (kind 3), 24: u64 term, u64 vote, u64 commit.
 *     snapshot meta (kind 4 alone, or inside a SNAPSHOT message),
 *         18 + 8 x (n_voters + n_learners):
 *         u64 index, u64 term, u8 n_voters, u8 n_learners,
 *         u64 voters[n_voters], u64 learners[n_learners].
 *
 * Decoding checks, besides the version and the CRC: types and flags in
 * range; reject 0 or 1; counts and lengths within the CORRAL_RAFT_* limits
 * (CORRAL_ETOOBIG); a SNAPSHOT's offset + chunk_len <= size; a conf either
 * empty or valid (corral_raft_conf_valid); and the input consumed exactly.
 * Encodings are canonical: whatever decodes re-encodes to the same bytes.
 *
 * Errors: CORRAL_EVERSION (unknown version byte), CORRAL_ECORRUPT (CRC
 * mismatch, truncated, malformed, wrong kind, trailing bytes),
 * CORRAL_ETOOBIG (a count or length over its limit), CORRAL_ENOMEM;
 * encoders answer CORRAL_EINVAL for input the decoder would refuse, and
 * for a buffer smaller than the size function says. */
#ifndef CORRAL_CORE_CODEC_H
#define CORRAL_CORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/raft.h"

#define CORRAL_CODEC_VERSION 1

/* Fixed sizes of the layout above. */
#define CORRAL_CODEC_FRAME_BYTES 6     /* version, kind, crc32c */
#define CORRAL_CODEC_ENTRY_OVERHEAD 21 /* an entry's bytes besides its data */
#define CORRAL_CODEC_HARD_STATE_BYTES (CORRAL_CODEC_FRAME_BYTES + 24)
#define CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX                                                       \
    (CORRAL_CODEC_FRAME_BYTES + 18 + 8 * CORRAL_RAFT_NODES_MAX)

/* The largest encoded message. A transport reads a whole frame into memory
 * before decoding it, so this bounds the receive buffer per connection.
 * 8 MiB holds one largest entry or one largest snapshot chunk with room to
 * spare (checked in codec.c), so every entry and chunk can always be sent;
 * the leader's max_msg_bytes payload budget must stay below it minus
 * CORRAL_CODEC_ENTRY_OVERHEAD per entry. */
#define CORRAL_CODEC_MSG_BYTES_MAX (8u << 20)

/* Messages. _size is the exact encoded length of a message that _encode
 * accepts. _encode writes into buf (cap bytes) and sets *len; the message
 * is borrowed. _decode fills *out from exactly len bytes: the entries array
 * (corral_malloc), the entry payloads and the chunk (rbufs, NULL when
 * empty) are the caller's, freed with corral_raft_msg_clear(). On any
 * error nothing stays allocated and *out is zeroed. */
size_t corral_codec_msg_size(const struct corral_raft_msg *m);
int corral_codec_msg_encode(const struct corral_raft_msg *m, uint8_t *buf, size_t cap, size_t *len);
int corral_codec_msg_decode(const uint8_t *buf, size_t len, struct corral_raft_msg *out);

/* One entry alone, as the WAL stores it. Same conventions; the decoded
 * payload is a new rbuf with one reference for the caller (NULL when
 * empty), released with corral_rbuf_unref(). */
size_t corral_codec_entry_size(const struct corral_raft_entry *e);
int corral_codec_entry_encode(const struct corral_raft_entry *e, uint8_t *buf, size_t cap,
                              size_t *len);
int corral_codec_entry_decode(const uint8_t *buf, size_t len, struct corral_raft_entry *out);

/* Hard state (always CORRAL_CODEC_HARD_STATE_BYTES) and snapshot meta,
 * for the runtime's meta files. Nothing is allocated. */
int corral_codec_hard_state_encode(const struct corral_raft_hard_state *hs, uint8_t *buf,
                                   size_t cap, size_t *len);
int corral_codec_hard_state_decode(const uint8_t *buf, size_t len,
                                   struct corral_raft_hard_state *out);
size_t corral_codec_snapshot_meta_size(const struct corral_raft_snapshot_meta *s);
int corral_codec_snapshot_meta_encode(const struct corral_raft_snapshot_meta *s, uint8_t *buf,
                                      size_t cap, size_t *len);
int corral_codec_snapshot_meta_decode(const uint8_t *buf, size_t len,
                                      struct corral_raft_snapshot_meta *out);

#endif
