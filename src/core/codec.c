/* Encodes and decodes Raft messages, entries, hard state and snapshot meta
 * in the versioned, checksummed layout documented in codec.h. Decoding is
 * one bounds-checked pass over bytes that may be hostile. */
#include "core/codec.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "corral.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rbuf.h"

enum kind { KIND_MSG = 1, KIND_ENTRY = 2, KIND_HARD_STATE = 3, KIND_SNAPSHOT_META = 4 };

#define CRC_BYTES 4
#define MSG_HEADER_BYTES 94 /* version, kind, type, reject, flags, 11 u64s */
#define META_BYTES(s) (18 + 8 * ((size_t)(s)->conf.n_voters + (s)->conf.n_learners))
#define ENTRY_FRAME_BYTES_MAX                                                                      \
    (CORRAL_CODEC_FRAME_BYTES + CORRAL_CODEC_ENTRY_OVERHEAD + CORRAL_RAFT_ENTRY_BYTES_MAX)
#define FLAGS_KNOWN (CORRAL_RAFT_FLAG_TRANSFER | CORRAL_RAFT_FLAG_DONE)

/* The message fields encoded as u64, in wire order. A table keeps the
 * encoder and the decoder from drifting apart field by field. */
static const size_t msg_u64_fields[] = {
    offsetof(struct corral_raft_msg, from),       offsetof(struct corral_raft_msg, to),
    offsetof(struct corral_raft_msg, term),       offsetof(struct corral_raft_msg, index),
    offsetof(struct corral_raft_msg, log_term),   offsetof(struct corral_raft_msg, commit),
    offsetof(struct corral_raft_msg, hint_index), offsetof(struct corral_raft_msg, hint_term),
    offsetof(struct corral_raft_msg, context),    offsetof(struct corral_raft_msg, size),
    offsetof(struct corral_raft_msg, offset),
};
#define N_MSG_U64 (sizeof(msg_u64_fields) / sizeof(msg_u64_fields[0]))

_Static_assert(MSG_HEADER_BYTES == 2 + 4 + 8 * N_MSG_U64, "message header layout");
_Static_assert(CORRAL_CODEC_FRAME_BYTES == 2 + CRC_BYTES, "frame layout");
_Static_assert(CORRAL_RAFT_NODES_MAX <= UINT8_MAX, "conf counts are one byte on the wire");
_Static_assert(CORRAL_RAFT_MSG_TYPE_MAX <= UINT8_MAX && CORRAL_RAFT_ENTRY_TYPE_MAX <= UINT8_MAX,
               "types are one byte on the wire");
_Static_assert(MSG_HEADER_BYTES + 4 + CORRAL_CODEC_ENTRY_OVERHEAD + CORRAL_RAFT_ENTRY_BYTES_MAX +
                       CRC_BYTES <=
                   CORRAL_CODEC_MSG_BYTES_MAX,
               "one largest entry always fits in a message");
_Static_assert(MSG_HEADER_BYTES + CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX + 4 +
                       CORRAL_RAFT_CHUNK_BYTES_MAX <=
                   CORRAL_CODEC_MSG_BYTES_MAX,
               "one largest snapshot chunk always fits in a message");

/* Writing: sizes are computed and checked against the buffer first, so
 * running out of room is a bug in this file, not an input error. */
struct writer {
    uint8_t *buf;
    size_t pos;
    size_t end;
};

static void put_le(struct writer *w, uint64_t v, size_t n)
{
    assert(n <= w->end - w->pos);
    corral_put_le(w->buf + w->pos, v, n);
    w->pos += n;
}

static uint32_t rbuf_len(const struct corral_rbuf *b)
{
    return b != NULL ? b->len : 0;
}

/* A u32 length, then the bytes; NULL encodes as empty. */
static void put_rbuf(struct writer *w, const struct corral_rbuf *b)
{
    uint32_t n = rbuf_len(b);
    put_le(w, n, 4);
    assert(n <= w->end - w->pos);
    if (n > 0)
        memcpy(w->buf + w->pos, b->data, n);
    w->pos += n;
}

/* Reading: the error is sticky and a failed read yields 0, so a decoder
 * reads a group of fields and checks once. A read never passes end. */
struct reader {
    const uint8_t *buf;
    size_t pos;
    size_t end;
    int err;
};

static uint64_t get_le(struct reader *r, size_t n)
{
    if (n > r->end - r->pos) {
        r->err = CORRAL_ECORRUPT;
        r->pos = r->end;
        return 0;
    }
    uint64_t v = corral_get_le(r->buf + r->pos, n);
    r->pos += n;
    return v;
}

/* A u32 length, then the bytes as a new rbuf (NULL when empty). The
 * length is checked against max and the bytes left before allocating, so
 * the allocation never exceeds what the input holds. */
static int get_rbuf(struct reader *r, uint32_t max, struct corral_rbuf **out)
{
    uint32_t n = (uint32_t)get_le(r, 4);
    if (r->err != 0)
        return r->err;
    if (n > max)
        return CORRAL_ETOOBIG;
    if (n > r->end - r->pos)
        return CORRAL_ECORRUPT;
    if (n == 0)
        return 0;
    *out = corral_rbuf_new(r->buf + r->pos, n);
    if (*out == NULL)
        return CORRAL_ENOMEM;
    r->pos += n;
    return 0;
}

/* Frames: version and kind first, the CRC32C of everything before it last. */
static int encode_begin(struct writer *w, uint8_t *buf, size_t cap, size_t size, size_t max,
                        enum kind kind)
{
    if (size > max)
        return CORRAL_ETOOBIG;
    if (buf == NULL || size > cap)
        return CORRAL_EINVAL;
    *w = (struct writer){.buf = buf, .pos = 0, .end = size};
    put_le(w, CORRAL_CODEC_VERSION, 1);
    put_le(w, kind, 1);
    return 0;
}

static void encode_end(struct writer *w, size_t *len)
{
    put_le(w, corral_crc32c(0, w->buf, w->pos), CRC_BYTES);
    assert(w->pos == w->end); /* the size function and the encoder agree */
    *len = w->pos;
}

/* The version comes first so that a newer writer is told apart from
 * corruption; the kind is checked after the CRC so a flipped kind byte
 * counts as corruption. */
static int decode_begin(struct reader *r, const uint8_t *buf, size_t len, size_t max,
                        enum kind kind)
{
    if (buf == NULL || len == 0)
        return CORRAL_ECORRUPT;
    if (buf[0] != CORRAL_CODEC_VERSION)
        return CORRAL_EVERSION;
    if (len > max)
        return CORRAL_ETOOBIG;
    if (len < CORRAL_CODEC_FRAME_BYTES)
        return CORRAL_ECORRUPT;
    struct reader trailer = {.buf = buf, .pos = len - CRC_BYTES, .end = len, .err = 0};
    if (corral_crc32c(0, buf, len - CRC_BYTES) != (uint32_t)get_le(&trailer, CRC_BYTES))
        return CORRAL_ECORRUPT;
    if (buf[1] != kind)
        return CORRAL_ECORRUPT;
    *r = (struct reader){.buf = buf, .pos = 2, .end = len - CRC_BYTES, .err = 0};
    return 0;
}

static int decode_end(const struct reader *r)
{
    if (r->err != 0)
        return r->err;
    return r->pos == r->end ? 0 : CORRAL_ECORRUPT; /* trailing bytes */
}

/* Checks shared by both directions, so the encoder never writes what the
 * decoder refuses. They answer CORRAL_EINVAL (a caller's bug when
 * encoding) or CORRAL_ETOOBIG; decoders turn EINVAL into ECORRUPT. */
static int decode_err(int rv)
{
    return rv == CORRAL_EINVAL ? CORRAL_ECORRUPT : rv;
}

static int check_entry(const struct corral_raft_entry *e)
{
    if (e->type > CORRAL_RAFT_ENTRY_TYPE_MAX)
        return CORRAL_EINVAL;
    return rbuf_len(e->data) > CORRAL_RAFT_ENTRY_BYTES_MAX ? CORRAL_ETOOBIG : 0;
}

static bool conf_counts_ok(const struct corral_raft_conf *c)
{
    return c->n_voters <= CORRAL_RAFT_NODES_MAX && c->n_learners <= CORRAL_RAFT_NODES_MAX &&
           c->n_voters + c->n_learners <= CORRAL_RAFT_NODES_MAX;
}

/* Empty is allowed: a node that has not joined a cluster yet has no conf. */
static int check_conf(const struct corral_raft_conf *c)
{
    if (!conf_counts_ok(c))
        return CORRAL_ETOOBIG;
    if (c->n_voters + c->n_learners > 0 && !corral_raft_conf_valid(c))
        return CORRAL_EINVAL;
    return 0;
}

static bool has_entries(uint8_t type)
{
    return type == CORRAL_RAFT_MSG_APPEND;
}

static bool has_snapshot(uint8_t type)
{
    return type == CORRAL_RAFT_MSG_SNAPSHOT;
}

static int check_msg_header(const struct corral_raft_msg *m)
{
    if (m->type == 0 || m->type > CORRAL_RAFT_MSG_TYPE_MAX || m->reject > 1 ||
        (m->flags & ~FLAGS_KNOWN) != 0)
        return CORRAL_EINVAL;
    return m->size > CORRAL_RAFT_SNAPSHOT_BYTES_MAX ? CORRAL_ETOOBIG : 0;
}

/* The chunk must lie within the snapshot it is part of. */
static int check_chunk(const struct corral_raft_msg *m)
{
    uint32_t n = rbuf_len(m->chunk);
    if (n > CORRAL_RAFT_CHUNK_BYTES_MAX)
        return CORRAL_ETOOBIG;
    if (m->offset > m->size || n > m->size - m->offset)
        return CORRAL_EINVAL;
    return 0;
}

static int check_msg(const struct corral_raft_msg *m)
{
    int rv = check_msg_header(m);
    if (rv != 0)
        return rv;
    /* Sections a type does not carry would be silently lost. */
    if ((m->n_entries > 0 && !has_entries(m->type)) || (m->chunk != NULL && !has_snapshot(m->type)))
        return CORRAL_EINVAL;
    if (m->n_entries > CORRAL_RAFT_MSG_ENTRIES_MAX)
        return CORRAL_ETOOBIG;
    assert(m->n_entries == 0 || m->entries != NULL);
    for (uint32_t i = 0; i < m->n_entries && rv == 0; i++)
        rv = check_entry(&m->entries[i]);
    if (rv == 0 && has_snapshot(m->type))
        rv = check_conf(&m->snapshot.conf);
    if (rv == 0 && has_snapshot(m->type))
        rv = check_chunk(m);
    return rv;
}

/* Bodies. */
static void put_entry(struct writer *w, const struct corral_raft_entry *e)
{
    put_le(w, e->term, 8);
    put_le(w, e->index, 8);
    put_le(w, e->type, 1);
    put_rbuf(w, e->data);
}

static int get_entry(struct reader *r, struct corral_raft_entry *e)
{
    e->term = get_le(r, 8);
    e->index = get_le(r, 8);
    e->type = (uint8_t)get_le(r, 1);
    int rv = get_rbuf(r, CORRAL_RAFT_ENTRY_BYTES_MAX, &e->data);
    return rv != 0 ? rv : decode_err(check_entry(e));
}

static void put_meta(struct writer *w, const struct corral_raft_snapshot_meta *s)
{
    put_le(w, s->index, 8);
    put_le(w, s->term, 8);
    put_le(w, s->conf.n_voters, 1);
    put_le(w, s->conf.n_learners, 1);
    for (uint32_t i = 0; i < s->conf.n_voters; i++)
        put_le(w, s->conf.voters[i], 8);
    for (uint32_t i = 0; i < s->conf.n_learners; i++)
        put_le(w, s->conf.learners[i], 8);
}

/* The counts are checked before the ids are read into the fixed arrays. */
static int get_meta(struct reader *r, struct corral_raft_snapshot_meta *s)
{
    struct corral_raft_conf *c = &s->conf;
    s->index = get_le(r, 8);
    s->term = get_le(r, 8);
    c->n_voters = (uint32_t)get_le(r, 1);
    c->n_learners = (uint32_t)get_le(r, 1);
    if (r->err != 0)
        return r->err;
    if (!conf_counts_ok(c))
        return CORRAL_ETOOBIG;
    for (uint32_t i = 0; i < c->n_voters; i++)
        c->voters[i] = get_le(r, 8);
    for (uint32_t i = 0; i < c->n_learners; i++)
        c->learners[i] = get_le(r, 8);
    if (r->err != 0)
        return r->err;
    return decode_err(check_conf(c));
}

/* Messages. */
size_t corral_codec_msg_size(const struct corral_raft_msg *m)
{
    size_t n = MSG_HEADER_BYTES + CRC_BYTES;
    if (has_entries(m->type)) {
        n += 4;
        for (uint32_t i = 0; i < m->n_entries; i++)
            n += CORRAL_CODEC_ENTRY_OVERHEAD + (size_t)rbuf_len(m->entries[i].data);
    }
    if (has_snapshot(m->type))
        n += META_BYTES(&m->snapshot) + 4 + (size_t)rbuf_len(m->chunk);
    return n;
}

int corral_codec_msg_encode(const struct corral_raft_msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    struct writer w;
    int rv = check_msg(m);
    if (rv == 0)
        rv = encode_begin(&w, buf, cap, corral_codec_msg_size(m), CORRAL_CODEC_MSG_BYTES_MAX,
                          KIND_MSG);
    if (rv != 0)
        return rv;
    put_le(&w, m->type, 1);
    put_le(&w, m->reject, 1);
    put_le(&w, m->flags, 2);
    for (size_t i = 0; i < N_MSG_U64; i++) {
        uint64_t v;
        memcpy(&v, (const char *)m + msg_u64_fields[i], sizeof(v));
        put_le(&w, v, 8);
    }
    if (has_entries(m->type)) {
        put_le(&w, m->n_entries, 4);
        for (uint32_t i = 0; i < m->n_entries; i++)
            put_entry(&w, &m->entries[i]);
    }
    if (has_snapshot(m->type)) {
        put_meta(&w, &m->snapshot);
        put_rbuf(&w, m->chunk);
    }
    encode_end(&w, len);
    return 0;
}

static int get_entries(struct reader *r, struct corral_raft_msg *m)
{
    uint32_t n = (uint32_t)get_le(r, 4);
    if (r->err != 0)
        return r->err;
    if (n > CORRAL_RAFT_MSG_ENTRIES_MAX)
        return CORRAL_ETOOBIG;
    /* Each entry takes at least its overhead: a count the bytes left cannot
     * hold is refused before anything is allocated for it. */
    if (n > (r->end - r->pos) / CORRAL_CODEC_ENTRY_OVERHEAD)
        return CORRAL_ECORRUPT;
    if (n == 0)
        return 0;
    /* Zeroed, so corral_raft_msg_clear() can free a partly decoded array. */
    m->entries = corral_calloc(n, sizeof(*m->entries));
    if (m->entries == NULL)
        return CORRAL_ENOMEM;
    m->n_entries = n;
    int rv = 0;
    for (uint32_t i = 0; i < n && rv == 0; i++)
        rv = get_entry(r, &m->entries[i]);
    return rv;
}

static int get_msg(struct reader *r, struct corral_raft_msg *m)
{
    m->type = (uint8_t)get_le(r, 1);
    m->reject = (uint8_t)get_le(r, 1);
    m->flags = (uint16_t)get_le(r, 2);
    for (size_t i = 0; i < N_MSG_U64; i++) {
        uint64_t v = get_le(r, 8);
        memcpy((char *)m + msg_u64_fields[i], &v, sizeof(v));
    }
    if (r->err != 0)
        return r->err;
    int rv = decode_err(check_msg_header(m));
    if (rv == 0 && has_entries(m->type))
        rv = get_entries(r, m);
    if (rv == 0 && has_snapshot(m->type))
        rv = get_meta(r, &m->snapshot);
    if (rv == 0 && has_snapshot(m->type))
        rv = get_rbuf(r, CORRAL_RAFT_CHUNK_BYTES_MAX, &m->chunk);
    if (rv == 0 && has_snapshot(m->type))
        rv = decode_err(check_chunk(m));
    return rv;
}

int corral_codec_msg_decode(const uint8_t *buf, size_t len, struct corral_raft_msg *out)
{
    struct reader r;
    memset(out, 0, sizeof(*out));
    int rv = decode_begin(&r, buf, len, CORRAL_CODEC_MSG_BYTES_MAX, KIND_MSG);
    if (rv == 0)
        rv = get_msg(&r, out);
    if (rv == 0)
        rv = decode_end(&r);
    if (rv != 0) {
        corral_raft_msg_clear(out);
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

/* Entries alone. */
size_t corral_codec_entry_size(const struct corral_raft_entry *e)
{
    return CORRAL_CODEC_FRAME_BYTES + CORRAL_CODEC_ENTRY_OVERHEAD + (size_t)rbuf_len(e->data);
}

int corral_codec_entry_encode(const struct corral_raft_entry *e, uint8_t *buf, size_t cap,
                              size_t *len)
{
    struct writer w;
    int rv = check_entry(e);
    if (rv == 0)
        rv = encode_begin(&w, buf, cap, corral_codec_entry_size(e), ENTRY_FRAME_BYTES_MAX,
                          KIND_ENTRY);
    if (rv != 0)
        return rv;
    put_entry(&w, e);
    encode_end(&w, len);
    return 0;
}

int corral_codec_entry_decode(const uint8_t *buf, size_t len, struct corral_raft_entry *out)
{
    struct reader r;
    memset(out, 0, sizeof(*out));
    int rv = decode_begin(&r, buf, len, ENTRY_FRAME_BYTES_MAX, KIND_ENTRY);
    if (rv == 0)
        rv = get_entry(&r, out);
    if (rv == 0)
        rv = decode_end(&r);
    if (rv != 0) {
        corral_rbuf_unref(out->data);
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

/* Hard state. */
int corral_codec_hard_state_encode(const struct corral_raft_hard_state *hs, uint8_t *buf,
                                   size_t cap, size_t *len)
{
    struct writer w;
    int rv = encode_begin(&w, buf, cap, CORRAL_CODEC_HARD_STATE_BYTES,
                          CORRAL_CODEC_HARD_STATE_BYTES, KIND_HARD_STATE);
    if (rv != 0)
        return rv;
    put_le(&w, hs->term, 8);
    put_le(&w, hs->vote, 8);
    put_le(&w, hs->commit, 8);
    encode_end(&w, len);
    return 0;
}

int corral_codec_hard_state_decode(const uint8_t *buf, size_t len,
                                   struct corral_raft_hard_state *out)
{
    struct reader r;
    memset(out, 0, sizeof(*out));
    int rv = decode_begin(&r, buf, len, CORRAL_CODEC_HARD_STATE_BYTES, KIND_HARD_STATE);
    if (rv != 0)
        return rv;
    out->term = get_le(&r, 8);
    out->vote = get_le(&r, 8);
    out->commit = get_le(&r, 8);
    rv = decode_end(&r);
    if (rv != 0)
        memset(out, 0, sizeof(*out));
    return rv;
}

/* Snapshot meta. */
size_t corral_codec_snapshot_meta_size(const struct corral_raft_snapshot_meta *s)
{
    return CORRAL_CODEC_FRAME_BYTES + META_BYTES(s);
}

int corral_codec_snapshot_meta_encode(const struct corral_raft_snapshot_meta *s, uint8_t *buf,
                                      size_t cap, size_t *len)
{
    struct writer w;
    int rv = check_conf(&s->conf);
    if (rv == 0)
        rv = encode_begin(&w, buf, cap, corral_codec_snapshot_meta_size(s),
                          CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX, KIND_SNAPSHOT_META);
    if (rv != 0)
        return rv;
    put_meta(&w, s);
    encode_end(&w, len);
    return 0;
}

int corral_codec_snapshot_meta_decode(const uint8_t *buf, size_t len,
                                      struct corral_raft_snapshot_meta *out)
{
    struct reader r;
    memset(out, 0, sizeof(*out));
    int rv = decode_begin(&r, buf, len, CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX, KIND_SNAPSHOT_META);
    if (rv == 0)
        rv = get_meta(&r, out);
    if (rv == 0)
        rv = decode_end(&r);
    if (rv != 0)
        memset(out, 0, sizeof(*out));
    return rv;
}

/* The largest AppendEntries the core can produce: its payload budget, one
 * more entry that overshoots it, and the per-entry overhead of a full batch. */
_Static_assert((uint64_t)MSG_HEADER_BYTES + 4 + CORRAL_RAFT_MSG_PAYLOAD_BYTES_MAX +
                       CORRAL_RAFT_ENTRY_BYTES_MAX +
                       (uint64_t)CORRAL_RAFT_MSG_ENTRIES_MAX * CORRAL_CODEC_ENTRY_OVERHEAD +
                       CORRAL_CODEC_FRAME_BYTES <=
                   CORRAL_CODEC_MSG_BYTES_MAX,
               "every AppendEntries the core can build fits in one frame");
