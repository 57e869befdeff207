/* Unit tests for src/core/codec.c: round trips of every message type,
 * rejection of every truncation, bit flip and unknown version, hostile
 * encodings with valid CRCs, allocation failures, and a seeded mutation
 * loop (CODEC_SEED=n in the environment replays one seed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corral.h"
#include "core/codec.h"
#include "core/raft.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rbuf.h"

/* Offsets in the layout of codec.h, for crafting hostile encodings. */
enum {
    OFF_KIND = 1,
    OFF_TYPE = 2,
    OFF_REJECT = 3,
    OFF_FLAGS = 4,
    OFF_SIZE = 78,
    OFF_OFFSET = 86,
    OFF_SECTIONS = 94,
    /* APPEND: u32 n_entries, then the first entry. */
    OFF_N_ENTRIES = OFF_SECTIONS,
    OFF_ENTRY0_TYPE = OFF_SECTIONS + 4 + 16,
    OFF_ENTRY0_LEN = OFF_ENTRY0_TYPE + 1,
    /* SNAPSHOT: the meta, then the chunk. */
    OFF_N_VOTERS = OFF_SECTIONS + 16,
    OFF_N_LEARNERS = OFF_N_VOTERS + 1,
    OFF_VOTER0 = OFF_N_LEARNERS + 1,
};

#define MSGS_MAX 32

struct corpus {
    size_t n;
    struct corral_raft_msg msgs[MSGS_MAX];
};

static struct corral_rbuf *bytes(const char *s)
{
    struct corral_rbuf *b = corral_rbuf_new(s, (uint32_t)strlen(s));
    assert_non_null(b);
    return b;
}

static struct corral_rbuf *filled(uint32_t len, uint8_t seed)
{
    struct corral_rbuf *b = corral_rbuf_new(NULL, len);
    assert_non_null(b);
    for (uint32_t i = 0; i < len; i++)
        b->data[i] = (uint8_t)(seed + i * 7);
    return b;
}

static struct corral_raft_conf three_voters_one_learner(void)
{
    struct corral_raft_conf c = {.n_voters = 3, .n_learners = 1};
    c.voters[0] = 1;
    c.voters[1] = 2;
    c.voters[2] = 0x0102030405060708ull;
    c.learners[0] = 42;
    return c;
}

static struct corral_raft_msg *add(struct corpus *c, uint8_t type, uint64_t from, uint64_t to,
                                   uint64_t term)
{
    assert_true(c->n < MSGS_MAX);
    struct corral_raft_msg *m = &c->msgs[c->n++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = from;
    m->to = to;
    m->term = term;
    return m;
}

static void add_append(struct corpus *c)
{
    struct corral_raft_msg *m = add(c, CORRAL_RAFT_MSG_APPEND, 1, 2, 7);
    m->index = 100;
    m->log_term = 6;
    m->commit = 98;
    m->n_entries = 4;
    m->entries = corral_calloc(4, sizeof(*m->entries));
    assert_non_null(m->entries);
    m->entries[0] = (struct corral_raft_entry){7, 101, CORRAL_RAFT_ENTRY_NOOP, NULL};
    m->entries[1] = (struct corral_raft_entry){7, 102, CORRAL_RAFT_ENTRY_NORMAL,
                                               bytes("set /svc/a/partitions 64")};
    m->entries[2] =
        (struct corral_raft_entry){7, 103, CORRAL_RAFT_ENTRY_CONF,
                                   corral_raft_conf_change_encode(CORRAL_RAFT_ADD_LEARNER, 42)};
    m->entries[3] = (struct corral_raft_entry){7, 104, CORRAL_RAFT_ENTRY_NORMAL, filled(600, 3)};
    add(c, CORRAL_RAFT_MSG_APPEND, 1, 3, 7)->commit = 104; /* an empty append */
}

static void add_snapshots(struct corpus *c)
{
    struct corral_raft_msg *m = add(c, CORRAL_RAFT_MSG_SNAPSHOT, 1, 4, 9);
    m->snapshot = (struct corral_raft_snapshot_meta){5000, 8, three_voters_one_learner()};
    m->size = 1u << 20;
    m->offset = 65536;
    m->chunk = filled(300, 11);
    m = add(c, CORRAL_RAFT_MSG_SNAPSHOT, 1, 4, 9); /* the last chunk */
    m->snapshot = (struct corral_raft_snapshot_meta){5000, 8, three_voters_one_learner()};
    m->size = 65836;
    m->offset = 65536;
    m->chunk = filled(300, 12);
    m->flags = CORRAL_RAFT_FLAG_DONE;
    m = add(c, CORRAL_RAFT_MSG_SNAPSHOT, 1, 4, 9); /* empty snapshot, no chunk */
    m->snapshot.index = 1;
    m->snapshot.term = 1;
    m->snapshot.conf.n_voters = 1;
    m->snapshot.conf.voters[0] = 1;
    m->flags = CORRAL_RAFT_FLAG_DONE;
}

/* One or more messages of every type, with the fields each type uses. */
static void corpus_init(struct corpus *c)
{
    struct corral_raft_msg *m;
    c->n = 0;
    m = add(c, CORRAL_RAFT_MSG_PREVOTE, 2, 1, 8);
    m->index = 104;
    m->log_term = 7;
    m = add(c, CORRAL_RAFT_MSG_PREVOTE_RESP, 1, 2, 8);
    m->reject = 1;
    m = add(c, CORRAL_RAFT_MSG_VOTE, 2, 3, 8);
    m->index = 104;
    m->log_term = 7;
    m->flags = CORRAL_RAFT_FLAG_TRANSFER;
    add(c, CORRAL_RAFT_MSG_VOTE_RESP, 3, 2, 8);
    add_append(c);
    m = add(c, CORRAL_RAFT_MSG_APPEND_RESP, 2, 1, 7);
    m->index = 90;
    m->reject = 1;
    m->hint_index = 88;
    m->hint_term = 5;
    m = add(c, CORRAL_RAFT_MSG_HEARTBEAT, 1, 2, 7);
    m->commit = 104;
    m->context = UINT64_MAX;
    add(c, CORRAL_RAFT_MSG_HEARTBEAT_RESP, 2, 1, 7)->context = UINT64_MAX;
    add_snapshots(c);
    m = add(c, CORRAL_RAFT_MSG_SNAPSHOT_RESP, 4, 1, 9);
    m->index = 5000;
    m->offset = 65836;
    m->flags = CORRAL_RAFT_FLAG_DONE;
    add(c, CORRAL_RAFT_MSG_TIMEOUT_NOW, 1, 3, 9);
    add(c, CORRAL_RAFT_MSG_READ_INDEX, 3, 1, 9)->context = 77;
    m = add(c, CORRAL_RAFT_MSG_READ_INDEX_RESP, 1, 3, 9);
    m->context = 77;
    m->index = 5010;
}

static void corpus_free(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        corral_raft_msg_clear(&c->msgs[i]);
}

static uint8_t *encode_msg(const struct corral_raft_msg *m, size_t *len)
{
    size_t size = corral_codec_msg_size(m);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    assert_int_equal(corral_codec_msg_encode(m, buf, size, len), 0);
    assert_int_equal(*len, size);
    return buf;
}

static bool rbuf_equal(const struct corral_rbuf *a, const struct corral_rbuf *b)
{
    uint32_t na = a != NULL ? a->len : 0, nb = b != NULL ? b->len : 0;
    return na == nb && (na == 0 || memcmp(a->data, b->data, na) == 0);
}

static void assert_msg_equal(const struct corral_raft_msg *a, const struct corral_raft_msg *b)
{
    struct corral_raft_msg x = *a, y = *b;
    assert_int_equal(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        assert_int_equal(a->entries[i].term, b->entries[i].term);
        assert_int_equal(a->entries[i].index, b->entries[i].index);
        assert_int_equal(a->entries[i].type, b->entries[i].type);
        assert_true(rbuf_equal(a->entries[i].data, b->entries[i].data));
    }
    assert_true(rbuf_equal(a->chunk, b->chunk));
    /* Everything else is plain values: compare with the pointers blanked. */
    x.entries = y.entries = NULL;
    x.chunk = y.chunk = NULL;
    assert_memory_equal(&x, &y, sizeof(x));
}

static void fix_crc(uint8_t *buf, size_t len)
{
    if (len < 4)
        return;
    uint32_t crc = corral_crc32c(0, buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool is_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* What the test is doing, printed with any failure (the mutation loop puts
 * its seed and iteration here). */
static char context[96] = "fixed samples";

static void die(const char *what, int rv)
{
    print_error("%s: %s (rv %d)\n", context, what, rv);
    fail();
}

/* Decodes bytes that must be refused, checks the code and that nothing
 * is left behind. */
static void assert_msg_refused(const uint8_t *buf, size_t len, int want)
{
    struct corral_raft_msg out;
    int rv = corral_codec_msg_decode(buf, len, &out);
    if (rv != want)
        die("refused with another code, or accepted", rv);
    if (!is_zero(&out, sizeof(out)))
        die("output not cleared after an error", rv);
}

static void test_msg_round_trip(void **state)
{
    (void)state;
    struct corpus c;
    corpus_init(&c);
    assert_int_equal(c.n, 16);
    for (size_t i = 0; i < c.n; i++) {
        size_t len, len2;
        uint8_t *buf = encode_msg(&c.msgs[i], &len);
        struct corral_raft_msg out;
        assert_int_equal(corral_codec_msg_decode(buf, len, &out), 0);
        assert_msg_equal(&c.msgs[i], &out);
        uint8_t *again = encode_msg(&out, &len2);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, again, len);
        corral_raft_msg_clear(&out);
        free(again);
        free(buf);
    }
    corpus_free(&c);
}

static void test_entry_round_trip(void **state)
{
    (void)state;
    struct corral_raft_entry in[] = {
        {3, 17, CORRAL_RAFT_ENTRY_NORMAL, bytes("payload")},
        {3, 18, CORRAL_RAFT_ENTRY_NOOP, NULL},
        {UINT64_MAX, UINT64_MAX, CORRAL_RAFT_ENTRY_CONF,
         corral_raft_conf_change_encode(CORRAL_RAFT_PROMOTE, 9)},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        uint8_t buf[64];
        size_t len;
        struct corral_raft_entry out;
        assert_int_equal(corral_codec_entry_encode(&in[i], buf, sizeof(buf), &len), 0);
        assert_int_equal(len, corral_codec_entry_size(&in[i]));
        assert_int_equal(corral_codec_entry_decode(buf, len, &out), 0);
        assert_int_equal(out.term, in[i].term);
        assert_int_equal(out.index, in[i].index);
        assert_int_equal(out.type, in[i].type);
        assert_true(rbuf_equal(out.data, in[i].data));
        if (out.data != NULL)
            assert_int_equal(out.data->refs, 1);
        corral_rbuf_unref(out.data);
        corral_rbuf_unref(in[i].data);
    }
}

static void test_meta_round_trip(void **state)
{
    (void)state;
    struct corral_raft_hard_state hs = {12, 3, 99}, hs_out;
    uint8_t buf[CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX];
    size_t len;
    assert_int_equal(corral_codec_hard_state_encode(&hs, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, CORRAL_CODEC_HARD_STATE_BYTES);
    assert_int_equal(corral_codec_hard_state_decode(buf, len, &hs_out), 0);
    assert_memory_equal(&hs, &hs_out, sizeof(hs));

    /* A live cluster's, one of a node that has not joined yet, a full one. */
    struct corral_raft_snapshot_meta out, metas[3] = {{5000, 8, three_voters_one_learner()}};
    metas[2].index = 1;
    metas[2].conf.n_voters = CORRAL_RAFT_NODES_MAX;
    for (uint32_t i = 0; i < CORRAL_RAFT_NODES_MAX; i++)
        metas[2].conf.voters[i] = 1000 + i;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(corral_codec_snapshot_meta_encode(&metas[i], buf, sizeof(buf), &len), 0);
        assert_int_equal(len, corral_codec_snapshot_meta_size(&metas[i]));
        assert_int_equal(corral_codec_snapshot_meta_decode(buf, len, &out), 0);
        assert_memory_equal(&metas[i], &out, sizeof(out));
    }
    assert_int_equal(len, CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX);
}

/* Every valid encoding of the corpus and of each other kind, for the
 * rejection tests: kind 1 messages, then an entry, a hard state and a
 * snapshot meta. */
struct sample {
    int kind;
    size_t len;
    uint8_t *buf;
};

#define SAMPLES_MAX (MSGS_MAX + 3)

static size_t samples_init(struct sample *s)
{
    struct corpus c;
    size_t n = 0;
    corpus_init(&c);
    for (size_t i = 0; i < c.n; i++, n++) {
        s[n].kind = 1;
        s[n].buf = encode_msg(&c.msgs[i], &s[n].len);
    }
    corpus_free(&c);
    struct corral_raft_entry e = {4, 5, CORRAL_RAFT_ENTRY_NORMAL, bytes("an entry")};
    struct corral_raft_hard_state hs = {4, 2, 5};
    struct corral_raft_snapshot_meta meta = {5000, 8, three_voters_one_learner()};
    for (int k = 2; k <= 4; k++, n++) {
        s[n].kind = k;
        s[n].buf = malloc(CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX);
        assert_non_null(s[n].buf);
        size_t cap = CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX;
        int rv = k == 2   ? corral_codec_entry_encode(&e, s[n].buf, cap, &s[n].len)
                 : k == 3 ? corral_codec_hard_state_encode(&hs, s[n].buf, cap, &s[n].len)
                          : corral_codec_snapshot_meta_encode(&meta, s[n].buf, cap, &s[n].len);
        assert_int_equal(rv, 0);
    }
    corral_rbuf_unref(e.data);
    return n;
}

static void samples_free(struct sample *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].buf);
}

static bool msg_valid(const struct corral_raft_msg *m);

#define MUT_CAP 2048

/* Decodes with the decoder of the given kind. Anything accepted must be
 * structurally valid (messages: msg_valid) and re-encode to the same
 * bytes; anything refused must leave the output zeroed. */
static int decode_kind(int kind, const uint8_t *buf, size_t len)
{
    static uint8_t reenc[MUT_CAP];
    union {
        struct corral_raft_msg m;
        struct corral_raft_entry e;
        struct corral_raft_hard_state hs;
        struct corral_raft_snapshot_meta meta;
    } out;
    size_t n = 0;
    int rv, rv2 = 0;
    bool valid = true;
    memset(&out, 0xa5, sizeof(out));
    if (kind == 1) {
        rv = corral_codec_msg_decode(buf, len, &out.m);
        valid = rv != 0 || msg_valid(&out.m);
        rv2 = rv != 0 ? 0 : corral_codec_msg_encode(&out.m, reenc, sizeof(reenc), &n);
        corral_raft_msg_clear(&out.m);
    } else if (kind == 2) {
        rv = corral_codec_entry_decode(buf, len, &out.e);
        rv2 = rv != 0 ? 0 : corral_codec_entry_encode(&out.e, reenc, sizeof(reenc), &n);
        valid = out.e.data == NULL || out.e.data->len > 0;
        corral_rbuf_unref(out.e.data);
        out.e.data = NULL;
    } else if (kind == 3) {
        rv = corral_codec_hard_state_decode(buf, len, &out.hs);
        rv2 = rv != 0 ? 0 : corral_codec_hard_state_encode(&out.hs, reenc, sizeof(reenc), &n);
    } else {
        rv = corral_codec_snapshot_meta_decode(buf, len, &out.meta);
        rv2 = rv != 0 ? 0 : corral_codec_snapshot_meta_encode(&out.meta, reenc, sizeof(reenc), &n);
    }
    if (!valid)
        die("accepted a structurally invalid message", rv);
    if (rv2 != 0 || (rv == 0 && (n != len || memcmp(reenc, buf, len) != 0)))
        die("accepted bytes that do not re-encode to themselves", rv2);
    if (rv != 0 && !is_zero(&out, kind == 1   ? sizeof(out.m)
                                  : kind == 2 ? sizeof(out.e)
                                  : kind == 3 ? sizeof(out.hs)
                                              : sizeof(out.meta)))
        die("output not cleared after an error", rv);
    return rv;
}

/* Every truncation is refused, with the CRC as it was and re-computed
 * (the body is self-delimiting, so the structure alone catches it). */
static void test_truncations(void **state)
{
    (void)state;
    struct sample s[SAMPLES_MAX];
    size_t n = samples_init(s);
    uint8_t *copy = malloc(2048);
    assert_non_null(copy);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(decode_kind(s[i].kind, s[i].buf, s[i].len), 0);
        for (size_t cut = 0; cut < s[i].len; cut++) {
            assert_int_equal(decode_kind(s[i].kind, s[i].buf, cut), CORRAL_ECORRUPT);
            memcpy(copy, s[i].buf, cut);
            fix_crc(copy, cut);
            assert_int_not_equal(decode_kind(s[i].kind, copy, cut), 0);
        }
    }
    free(copy);
    samples_free(s, n);
}

/* CRC32C detects every single-bit error; byte 0 is the version. */
static void test_bit_flips(void **state)
{
    (void)state;
    struct sample s[SAMPLES_MAX];
    size_t n = samples_init(s);
    for (size_t i = 0; i < n; i++) {
        for (size_t bit = 0; bit < s[i].len * 8; bit++) {
            s[i].buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            int want = bit < 8 ? CORRAL_EVERSION : CORRAL_ECORRUPT;
            assert_int_equal(decode_kind(s[i].kind, s[i].buf, s[i].len), want);
            s[i].buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
    samples_free(s, n);
}

static void test_versions(void **state)
{
    (void)state;
    struct sample s[SAMPLES_MAX];
    size_t n = samples_init(s);
    for (size_t i = 0; i < n; i++) {
        for (int v = 0; v < 256; v++) {
            if (v == CORRAL_CODEC_VERSION)
                continue;
            s[i].buf[0] = (uint8_t)v;
            assert_int_equal(decode_kind(s[i].kind, s[i].buf, s[i].len), CORRAL_EVERSION);
            fix_crc(s[i].buf, s[i].len);
            assert_int_equal(decode_kind(s[i].kind, s[i].buf, s[i].len), CORRAL_EVERSION);
        }
    }
    samples_free(s, n);
}

/* A message mutated at off (n bytes little endian = v), CRC re-computed. */
enum { M_VOTE = 2, M_APPEND = 4, M_APPEND_EMPTY = 5, M_SNAP = 9, M_SNAP_EMPTY = 11 };

struct hostile {
    size_t which; /* index in the corpus */
    size_t off;
    int n;
    uint64_t v;
    int want;
};

static const struct hostile hostiles[] = {
    {M_VOTE, OFF_KIND, 1, 2, CORRAL_ECORRUPT},
    {M_VOTE, OFF_TYPE, 1, 0, CORRAL_ECORRUPT},
    {M_VOTE, OFF_TYPE, 1, CORRAL_RAFT_MSG_TYPE_MAX + 1, CORRAL_ECORRUPT},
    {M_VOTE, OFF_TYPE, 1, 255, CORRAL_ECORRUPT},
    {M_VOTE, OFF_REJECT, 1, 2, CORRAL_ECORRUPT},
    {M_VOTE, OFF_FLAGS, 2, 4, CORRAL_ECORRUPT},
    {M_VOTE, OFF_FLAGS, 2, 0x8001, CORRAL_ECORRUPT},
    {M_VOTE, OFF_SIZE, 8, UINT64_MAX, CORRAL_ETOOBIG},
    /* A vote does not carry the entries section: turning it into an
     * append leaves the section missing. */
    {M_VOTE, OFF_TYPE, 1, CORRAL_RAFT_MSG_APPEND, CORRAL_ECORRUPT},
    {M_VOTE, OFF_TYPE, 1, CORRAL_RAFT_MSG_SNAPSHOT, CORRAL_ECORRUPT},
    {M_APPEND, OFF_TYPE, 1, CORRAL_RAFT_MSG_HEARTBEAT, CORRAL_ECORRUPT},
    {M_APPEND, OFF_N_ENTRIES, 4, UINT32_MAX, CORRAL_ETOOBIG},
    {M_APPEND, OFF_N_ENTRIES, 4, CORRAL_RAFT_MSG_ENTRIES_MAX + 1, CORRAL_ETOOBIG},
    {M_APPEND, OFF_N_ENTRIES, 4, CORRAL_RAFT_MSG_ENTRIES_MAX, CORRAL_ECORRUPT},
    {M_APPEND, OFF_N_ENTRIES, 4, 5, CORRAL_ECORRUPT},
    {M_APPEND, OFF_N_ENTRIES, 4, 3, CORRAL_ECORRUPT}, /* trailing entry */
    {M_APPEND, OFF_ENTRY0_TYPE, 1, CORRAL_RAFT_ENTRY_TYPE_MAX + 1, CORRAL_ECORRUPT},
    {M_APPEND, OFF_ENTRY0_LEN, 4, UINT32_MAX, CORRAL_ETOOBIG},
    {M_APPEND, OFF_ENTRY0_LEN, 4, CORRAL_RAFT_ENTRY_BYTES_MAX + 1, CORRAL_ETOOBIG},
    {M_APPEND, OFF_ENTRY0_LEN, 4, CORRAL_RAFT_ENTRY_BYTES_MAX, CORRAL_ECORRUPT},
    {M_APPEND_EMPTY, OFF_N_ENTRIES, 4, 1, CORRAL_ECORRUPT},
    {M_SNAP, OFF_N_VOTERS, 1, CORRAL_RAFT_NODES_MAX + 1, CORRAL_ETOOBIG},
    {M_SNAP, OFF_N_VOTERS, 1, 255, CORRAL_ETOOBIG},
    {M_SNAP, OFF_N_LEARNERS, 1, CORRAL_RAFT_NODES_MAX, CORRAL_ETOOBIG},
    {M_SNAP_EMPTY, OFF_N_VOTERS, 1, 2, CORRAL_ECORRUPT}, /* ids missing */
    {M_SNAP, OFF_N_VOTERS, 1, 0, CORRAL_ECORRUPT},       /* learners only */
    {M_SNAP, OFF_VOTER0, 8, 0, CORRAL_ECORRUPT},         /* id 0 */
    {M_SNAP, OFF_VOTER0, 8, 2, CORRAL_ECORRUPT},         /* duplicate id */
    {M_SNAP, OFF_VOTER0, 8, 42, CORRAL_ECORRUPT},        /* voter and learner */
    {M_SNAP, OFF_SIZE, 8, CORRAL_RAFT_SNAPSHOT_BYTES_MAX + 1ull, CORRAL_ETOOBIG},
    {M_SNAP, OFF_SIZE, 8, 65536 + 299, CORRAL_ECORRUPT}, /* chunk past size */
    {M_SNAP, OFF_OFFSET, 8, UINT64_MAX, CORRAL_ECORRUPT},
};

static void test_hostile(void **state)
{
    (void)state;
    struct corpus c;
    corpus_init(&c);
    for (size_t i = 0; i < sizeof(hostiles) / sizeof(hostiles[0]); i++) {
        const struct hostile *h = &hostiles[i];
        size_t len;
        uint8_t *buf = encode_msg(&c.msgs[h->which], &len);
        put_le(buf + h->off, h->v, h->n);
        fix_crc(buf, len);
        snprintf(context, sizeof(context), "hostile case %zu (want %d)", i, h->want);
        assert_msg_refused(buf, len, h->want);
        free(buf);
    }
    /* Hostile lengths allocate nothing they do not have the bytes for. */
    snprintf(context, sizeof(context), "hostile lengths allocating");
    size_t len;
    uint8_t *buf = encode_msg(&c.msgs[M_APPEND], &len);
    put_le(buf + OFF_N_ENTRIES, CORRAL_RAFT_MSG_ENTRIES_MAX, 4);
    fix_crc(buf, len);
    uint64_t allocs = corral_mem_allocs();
    assert_msg_refused(buf, len, CORRAL_ECORRUPT);
    assert_int_equal(corral_mem_allocs(), allocs);
    put_le(buf + OFF_N_ENTRIES, 4, 4);
    put_le(buf + OFF_ENTRY0_LEN, CORRAL_RAFT_ENTRY_BYTES_MAX, 4);
    fix_crc(buf, len);
    assert_msg_refused(buf, len, CORRAL_ECORRUPT);
    assert_int_equal(corral_mem_allocs(), allocs + 1); /* the entries array only */
    free(buf);

    snprintf(context, sizeof(context), "hostile chunk length, trailing bytes");
    /* The chunk length (after the meta) and trailing bytes. */
    size_t chunk_len_off = OFF_VOTER0 + 8 * 4;
    buf = encode_msg(&c.msgs[M_SNAP], &len);
    put_le(buf + chunk_len_off, CORRAL_RAFT_CHUNK_BYTES_MAX + 1, 4);
    fix_crc(buf, len);
    assert_msg_refused(buf, len, CORRAL_ETOOBIG);
    put_le(buf + chunk_len_off, 301, 4);
    fix_crc(buf, len);
    assert_msg_refused(buf, len, CORRAL_ECORRUPT);
    free(buf);
    buf = encode_msg(&c.msgs[0], &len);
    uint8_t *longer = calloc(1, len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len - 4);
    fix_crc(longer, len + 1);
    assert_msg_refused(longer, len + 1, CORRAL_ECORRUPT);
    /* Bytes of one kind are refused by the others. */
    for (int k = 2; k <= 4; k++)
        assert_int_not_equal(decode_kind(k, buf, len), 0);
    free(longer);
    free(buf);
    corpus_free(&c);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t len;
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_VOTE, .from = 1, .to = 2, .term = 3};
    assert_int_equal(corral_codec_msg_encode(&m, buf, corral_codec_msg_size(&m) - 1, &len),
                     CORRAL_EINVAL);
    m.type = 0;
    assert_int_equal(corral_codec_msg_encode(&m, buf, sizeof(buf), &len), CORRAL_EINVAL);
    m.type = CORRAL_RAFT_MSG_VOTE;
    m.flags = 8;
    assert_int_equal(corral_codec_msg_encode(&m, buf, sizeof(buf), &len), CORRAL_EINVAL);
    m.flags = 0;
    struct corral_raft_entry e = {1, 1, CORRAL_RAFT_ENTRY_NORMAL, NULL};
    m.entries = &e;
    m.n_entries = 1; /* entries on a vote would be lost */
    assert_int_equal(corral_codec_msg_encode(&m, buf, sizeof(buf), &len), CORRAL_EINVAL);
    m.type = CORRAL_RAFT_MSG_APPEND;
    m.n_entries = CORRAL_RAFT_MSG_ENTRIES_MAX + 1;
    assert_int_equal(corral_codec_msg_encode(&m, buf, sizeof(buf), &len), CORRAL_ETOOBIG);
    m.n_entries = 1;
    e.type = CORRAL_RAFT_ENTRY_TYPE_MAX + 1;
    assert_int_equal(corral_codec_msg_encode(&m, buf, sizeof(buf), &len), CORRAL_EINVAL);
    assert_int_equal(corral_codec_entry_encode(&e, buf, sizeof(buf), &len), CORRAL_EINVAL);
    e.type = 0;
    e.data = filled(CORRAL_RAFT_ENTRY_BYTES_MAX + 1, 0);
    assert_int_equal(corral_codec_msg_encode(&m, buf, sizeof(buf), &len), CORRAL_ETOOBIG);
    assert_int_equal(corral_codec_entry_encode(&e, buf, sizeof(buf), &len), CORRAL_ETOOBIG);
    corral_rbuf_unref(e.data);

    struct corral_raft_snapshot_meta meta = {1, 1, {.n_voters = 17}};
    assert_int_equal(corral_codec_snapshot_meta_encode(&meta, buf, sizeof(buf), &len),
                     CORRAL_ETOOBIG);
    meta.conf.n_voters = 2; /* ids 0 */
    assert_int_equal(corral_codec_snapshot_meta_encode(&meta, buf, sizeof(buf), &len),
                     CORRAL_EINVAL);
}

/* Nine largest entries are over CORRAL_CODEC_MSG_BYTES_MAX both ways. */
static void test_msg_bytes_max(void **state)
{
    (void)state;
    struct corral_raft_entry e[9];
    struct corral_raft_msg m = {.type = CORRAL_RAFT_MSG_APPEND, .n_entries = 9, .entries = e};
    for (uint64_t i = 0; i < 9; i++)
        e[i] = (struct corral_raft_entry){1, i + 1, 0, filled(CORRAL_RAFT_ENTRY_BYTES_MAX, 1)};
    size_t size = corral_codec_msg_size(&m), len;
    assert_true(size > CORRAL_CODEC_MSG_BYTES_MAX);
    uint8_t *buf = calloc(1, size);
    assert_non_null(buf);
    assert_int_equal(corral_codec_msg_encode(&m, buf, size, &len), CORRAL_ETOOBIG);
    m.n_entries = 7; /* fits */
    assert_int_equal(corral_codec_msg_encode(&m, buf, size, &len), 0);
    struct corral_raft_msg out;
    assert_int_equal(corral_codec_msg_decode(buf, len, &out), 0);
    assert_msg_equal(&m, &out);
    corral_raft_msg_clear(&out);
    buf[0] = CORRAL_CODEC_VERSION;
    assert_msg_refused(buf, size, CORRAL_ETOOBIG);
    for (int i = 0; i < 9; i++)
        corral_rbuf_unref(e[i].data);
    free(buf);
}

/* Every allocation of a decode fails in turn: ENOMEM, nothing leaked. */
static void test_decode_enomem(void **state)
{
    (void)state;
    struct corpus c;
    corpus_init(&c);
    for (size_t i = 0; i < c.n; i++) {
        size_t len;
        uint8_t *buf = encode_msg(&c.msgs[i], &len);
        struct corral_raft_msg out;
        int rv = CORRAL_ENOMEM;
        uint64_t k;
        for (k = 1; rv == CORRAL_ENOMEM; k++) {
            corral_mem_fail_after(k);
            rv = corral_codec_msg_decode(buf, len, &out);
            if (rv == CORRAL_ENOMEM)
                assert_true(is_zero(&out, sizeof(out)));
        }
        corral_mem_fail_after(0);
        assert_int_equal(rv, 0);
        corral_raft_msg_clear(&out);
        free(buf);
    }
    corpus_free(&c);
}

/* An independent statement of the structural rules, for the mutation loop:
 * anything the decoder accepts must satisfy them. */
static bool msg_valid(const struct corral_raft_msg *m)
{
    const struct corral_raft_conf *c = &m->snapshot.conf;
    bool append = m->type == CORRAL_RAFT_MSG_APPEND, snap = m->type == CORRAL_RAFT_MSG_SNAPSHOT;
    uint32_t chunk = m->chunk != NULL ? m->chunk->len : 0;
    if (m->type < 1 || m->type > CORRAL_RAFT_MSG_TYPE_MAX || m->reject > 1 || m->flags > 3 ||
        m->size > CORRAL_RAFT_SNAPSHOT_BYTES_MAX || m->n_entries > CORRAL_RAFT_MSG_ENTRIES_MAX ||
        (!append && m->n_entries > 0) || (!snap && m->chunk != NULL) ||
        chunk > CORRAL_RAFT_CHUNK_BYTES_MAX || (m->chunk != NULL && chunk == 0))
        return false;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct corral_raft_entry *e = &m->entries[i];
        if (e->type > CORRAL_RAFT_ENTRY_TYPE_MAX || (e->data != NULL && e->data->len == 0) ||
            (e->data != NULL && e->data->len > CORRAL_RAFT_ENTRY_BYTES_MAX))
            return false;
    }
    if (!snap)
        return is_zero(&m->snapshot, sizeof(m->snapshot));
    return m->offset <= m->size && chunk <= m->size - m->offset &&
           ((c->n_voters == 0 && c->n_learners == 0) || corral_raft_conf_valid(c));
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One to four random edits: flip bits, insert, delete, truncate. */
static size_t mutate(uint64_t *rng, uint8_t *buf, size_t len)
{
    int edits = 1 + (int)(rng_next(rng) % 4);
    for (int i = 0; i < edits && len > 0; i++) {
        size_t at = rng_next(rng) % len;
        switch (rng_next(rng) % 4) {
        case 0:
            buf[at] ^= (uint8_t)(1 + rng_next(rng) % 255);
            break;
        case 1:
            if (len < MUT_CAP) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)rng_next(rng);
                len++;
            }
            break;
        case 2:
            memmove(buf + at, buf + at + 1, len - at - 1);
            len--;
            break;
        default:
            len = at;
            break;
        }
    }
    return len;
}

static void test_mutations(void **state)
{
    (void)state;
    const char *env = getenv("CODEC_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0) : 0x5eed0001ull;
    uint64_t rng = seed;
    long iterations = 200000, accepted = 0;
    struct sample s[SAMPLES_MAX];
    size_t n = samples_init(s);
    uint8_t *buf = malloc(MUT_CAP);
    assert_non_null(buf);
    for (long it = 0; it < iterations; it++) {
        const struct sample *x = &s[rng_next(&rng) % n];
        assert_true(x->len <= MUT_CAP);
        memcpy(buf, x->buf, x->len);
        size_t len = mutate(&rng, buf, x->len);
        if (rng_next(&rng) % 2)
            fix_crc(buf, len);
        snprintf(context, sizeof(context), "seed %llu iteration %ld (CODEC_SEED=%llu)",
                 (unsigned long long)seed, it, (unsigned long long)seed);
        int rv = decode_kind(x->kind, buf, len);
        if (rv != 0 && rv != CORRAL_ECORRUPT && rv != CORRAL_EVERSION && rv != CORRAL_ETOOBIG)
            die("unexpected error code", rv);
        accepted += rv == 0;
    }
    print_message("mutations: seed %llu, %ld iterations, %ld accepted\n", (unsigned long long)seed,
                  iterations, accepted);
    snprintf(context, sizeof(context), "fixed samples");
    free(buf);
    samples_free(s, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_round_trip),  cmocka_unit_test(test_entry_round_trip),
        cmocka_unit_test(test_meta_round_trip), cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_bit_flips),       cmocka_unit_test(test_versions),
        cmocka_unit_test(test_hostile),         cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_msg_bytes_max),   cmocka_unit_test(test_decode_enomem),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
