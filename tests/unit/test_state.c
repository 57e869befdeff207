/* Unit tests for the cluster state machine (src/core/state*.c): the
 * command codec against truncation, bit flips and hand-made frames; every
 * command applied and every refusal rule, each refusal checked to leave
 * the state byte-identical to a skip; all-or-nothing partition ops;
 * epochs and ids; snapshots (determinism, round trip, corruption, hostile
 * snapshots with the CRC fixed up, the version-1 store snapshot); limits;
 * allocation failures; and a seeded randomized run against a simple model
 * (STATE_SEED=n replays one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/kv.h"
#include "core/state.h"
#include "corral.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rbuf.h"

#define OK CORRAL_STATE_OK
#define BAD CORRAL_STATE_BAD_COMMAND
#define NOT_FOUND CORRAL_STATE_NOT_FOUND
#define CONFLICT CORRAL_STATE_CONFLICT
#define FULL CORRAL_STATE_FULL
#define KV_DONE CORRAL_STATE_KV_DONE

#define ACTIVE CORRAL_MEMBER_ACTIVE
#define DRAINING CORRAL_MEMBER_DRAINING
#define DEAD CORRAL_MEMBER_DEAD
#define LEFT CORRAL_MEMBER_LEFT

#define COPYING CORRAL_REPLICA_COPYING
#define IN_SYNC CORRAL_REPLICA_IN_SYNC

/* ---- Helpers ---- */

/* splitmix64, for the seeded runs and mutations. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool rbuf_equal(const struct corral_rbuf *a, const struct corral_rbuf *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static struct corral_rbuf *enc(const struct corral_state_cmd *c)
{
    struct corral_rbuf *b = corral_state_cmd_encode(c);
    assert_non_null(b);
    return b;
}

static struct corral_rbuf *snap(const struct corral_state *st)
{
    struct corral_rbuf *b = corral_state_snapshot(st);
    assert_non_null(b);
    return b;
}

static struct corral_state_cmd member_cmd(const char *name, uint8_t role, const char *addr,
                                          const char *zone, uint16_t weight, const char *meta)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_MEMBER_PUT;
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.role = role;
    c.addr = addr;
    c.addr_len = (uint16_t)strlen(addr);
    c.zone = zone;
    c.zone_len = (uint16_t)strlen(zone);
    c.weight = weight;
    c.meta = (const uint8_t *)meta;
    c.meta_len = (uint16_t)strlen(meta);
    return c;
}

static struct corral_state_cmd simple_member(const char *name)
{
    return member_cmd(name, CORRAL_MEMBER_WORKER, "10.0.0.1:7000", "z1", 100, "{}");
}

static struct corral_state_cmd id_cmd(uint8_t type, uint32_t id)
{
    struct corral_state_cmd c = {0};
    c.type = type;
    c.id = id;
    return c;
}

static struct corral_state_cmd status_cmd(uint32_t id, uint8_t status)
{
    struct corral_state_cmd c = id_cmd(CORRAL_STATE_MEMBER_STATUS, id);
    c.status = status;
    return c;
}

static struct corral_state_cmd resource_cmd(const char *name, uint32_t partitions, uint8_t replicas)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_RESOURCE_PUT;
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.partitions = partitions;
    c.replicas = replicas;
    return c;
}

static struct corral_state_cmd ops_cmd(uint32_t res, uint32_t n,
                                       const struct corral_partition_opv *v)
{
    struct corral_state_cmd c = id_cmd(CORRAL_STATE_PARTITION_OPS, res);
    c.n_ops = n;
    c.ops = v;
    return c;
}

static struct corral_state_cmd kv_cmd(uint8_t op, const char *key, const char *value, bool has_cas,
                                      uint64_t cas)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_KV;
    c.kv.op = op;
    c.kv.has_cas = has_cas;
    c.kv.cas = cas;
    c.kv.key = (const uint8_t *)key;
    c.kv.key_len = (uint32_t)strlen(key);
    c.kv.value = (const uint8_t *)value;
    c.kv.value_len = value != NULL ? (uint32_t)strlen(value) : 0;
    return c;
}

static struct corral_state_cmd coord_cmd(uint32_t id, const char *name, const char *cluster,
                                         const char *http)
{
    return corral_state_coord_put(id, name, cluster, http);
}

#define OPV(p, o, m, e) ((struct corral_partition_opv){(p), (o), (m), (e)})

/* A state and the next index to apply at. */
struct h {
    struct corral_state *st;
    uint64_t index;
};

static void h_init(struct h *h)
{
    h->st = corral_state_new();
    assert_non_null(h->st);
    h->index = 0;
}

static void h_free(struct h *h)
{
    corral_state_free(h->st);
}

/* Applies b (consumed) at the next index; the call itself must succeed. */
static struct corral_state_result apply_buf(struct h *h, struct corral_rbuf *b)
{
    struct corral_state_result r;
    memset(&r, 0x5a, sizeof(r));
    h->index++;
    assert_int_equal(corral_state_apply(h->st, h->index, b, &r), 0);
    assert_int_equal(corral_state_applied(h->st), h->index);
    assert_int_equal(corral_kv_applied(corral_state_kv(h->st)), h->index);
    assert_non_null(r.detail);
    corral_rbuf_unref(b);
    assert_true(corral_state_check(h->st));
    return r;
}

static struct corral_state_result apply(struct h *h, struct corral_state_cmd c)
{
    return apply_buf(h, enc(&c));
}

/* Applies b, which must report `status` and change nothing but the
 * applied index: the state's snapshot afterwards equals that of a copy
 * that skipped the index instead. */
static struct corral_state_result unchanged_buf(struct h *h, struct corral_rbuf *b, uint8_t status)
{
    struct corral_rbuf *before = snap(h->st);
    struct corral_state *twin = corral_state_new();
    assert_int_equal(corral_state_restore(twin, before), 0);
    assert_int_equal(corral_state_skip(twin, h->index + 1), 0);
    uint64_t assign = corral_state_assign_index(h->st);
    struct corral_state_result r = apply_buf(h, b);
    assert_int_equal(r.status, status);
    if (status != OK && status != KV_DONE)
        assert_true(strlen(r.detail) > 0);
    else
        assert_string_equal(r.detail, "");
    struct corral_rbuf *after = snap(h->st), *want = snap(twin);
    assert_true(rbuf_equal(after, want));
    assert_int_equal(corral_state_assign_index(h->st), assign);
    corral_rbuf_unref(after);
    corral_rbuf_unref(want);
    corral_rbuf_unref(before);
    corral_state_free(twin);
    return r;
}

static struct corral_state_result unchanged(struct h *h, struct corral_state_cmd c, uint8_t status)
{
    return unchanged_buf(h, enc(&c), status);
}

static uint32_t add_member(struct h *h, const char *name)
{
    struct corral_state_result r = apply(h, simple_member(name));
    assert_int_equal(r.status, OK);
    assert_string_equal(r.detail, "");
    return r.id;
}

static uint32_t add_resource(struct h *h, const char *name, uint32_t partitions, uint8_t replicas)
{
    struct corral_state_result r = apply(h, resource_cmd(name, partitions, replicas));
    assert_int_equal(r.status, OK);
    return r.id;
}

static void set_status(struct h *h, uint32_t id, uint8_t status)
{
    assert_int_equal(apply(h, status_cmd(id, status)).status, OK);
}

static struct corral_state_result op1(struct h *h, uint32_t res, uint32_t p, uint8_t op,
                                      uint32_t member, uint64_t epoch)
{
    struct corral_partition_opv v = OPV(p, op, member, epoch);
    return apply(h, ops_cmd(res, 1, &v));
}

static void op_ok(struct h *h, uint32_t res, uint32_t p, uint8_t op, uint32_t member,
                  uint64_t epoch)
{
    struct corral_state_result r = op1(h, res, p, op, member, epoch);
    assert_int_equal(r.status, OK);
    const struct corral_state_resource *rs = corral_state_resource_by_id(h->st, res);
    assert_int_equal(rs->changed_index, h->index);
    assert_int_equal(corral_state_assign_index(h->st), h->index);
}

static void op_refused(struct h *h, uint32_t res, uint32_t p, uint8_t op, uint32_t member,
                       uint64_t epoch, uint8_t status)
{
    struct corral_partition_opv v = OPV(p, op, member, epoch);
    struct corral_state_result r = unchanged(h, ops_cmd(res, 1, &v), status);
    assert_int_equal(r.op, 0);
}

/* As op_refused, CONFLICT for the given reason (the rule that refused). */
static void op_refused_for(struct h *h, uint32_t res, uint32_t p, uint8_t op, uint32_t member,
                           uint64_t epoch, const char *detail)
{
    struct corral_partition_opv v = OPV(p, op, member, epoch);
    struct corral_state_result r = unchanged(h, ops_cmd(res, 1, &v), CONFLICT);
    assert_int_equal(r.op, 0);
    assert_string_equal(r.detail, detail);
}

#define AT_R "the partition has its R replicas"
#define AT_R1 "the partition has R + 1 replicas"

static const struct corral_state_partition *part(struct h *h, uint32_t res, uint32_t p)
{
    const struct corral_state_resource *rs = corral_state_resource_by_id(h->st, res);
    assert_non_null(rs);
    assert_true(p < rs->partitions);
    return &rs->parts[p];
}

static uint64_t epoch_of(struct h *h, uint32_t res, uint32_t p)
{
    return part(h, res, p)->epoch;
}

/* Gives member an in-sync replica of partition p and makes it primary. */
static void make_primary(struct h *h, uint32_t res, uint32_t p, uint32_t member)
{
    op_ok(h, res, p, CORRAL_OP_ADD_COPYING, member, epoch_of(h, res, p));
    op_ok(h, res, p, CORRAL_OP_MARK_IN_SYNC, member, epoch_of(h, res, p));
    op_ok(h, res, p, CORRAL_OP_GRANT, member, epoch_of(h, res, p));
    assert_int_equal(part(h, res, p)->primary, member);
}

/* Raw frames, for bytes the encoder never writes. */
struct sbuf {
    uint8_t *data;
    size_t len, cap;
};

static void sb_bytes(struct sbuf *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 16;
        s->data = realloc(s->data, s->cap);
        assert_non_null(s->data);
    }
    if (n > 0)
        memcpy(s->data + s->len, p, n);
    s->len += n;
}

static void sb_le(struct sbuf *s, uint64_t v, size_t n)
{
    uint8_t b[8];
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    sb_bytes(s, b, n);
}

static void sb_str(struct sbuf *s, const char *str)
{
    sb_le(s, strlen(str), 2);
    sb_bytes(s, str, strlen(str));
}

/* Appends the CRC and hands the bytes over as an rbuf. */
static struct corral_rbuf *sb_finish(struct sbuf *s)
{
    sb_le(s, corral_crc32c(0, s->data, s->len), 4);
    struct corral_rbuf *b = corral_rbuf_new(s->data, (uint32_t)s->len);
    assert_non_null(b);
    free(s->data);
    *s = (struct sbuf){0};
    return b;
}

/* A version-2 frame around body (len bytes), CRC included. */
static struct corral_rbuf *frame(uint8_t type, const void *body, size_t len)
{
    struct sbuf s = {0};
    sb_le(&s, 2, 1);
    sb_le(&s, type, 1);
    sb_le(&s, len, 4);
    sb_bytes(&s, body, len);
    return sb_finish(&s);
}

/* ---- The codec ---- */

static char name_max[CORRAL_STATE_NAME_BYTES_MAX + 2];
static char name_long[CORRAL_STATE_NAME_BYTES_MAX + 2]; /* one too many */
static char addr_max[CORRAL_STATE_ADDR_BYTES_MAX + 2];
static char zone_max[CORRAL_STATE_ZONE_BYTES_MAX + 2];
static char meta_max[CORRAL_STATE_META_BYTES_MAX + 2];
static struct corral_partition_opv ops_max[CORRAL_STATE_OPS_MAX + 1];

static void fill_globals(void)
{
    memset(name_max, 'n', CORRAL_STATE_NAME_BYTES_MAX);
    memset(name_long, 'n', CORRAL_STATE_NAME_BYTES_MAX + 1);
    memset(addr_max, 'a', CORRAL_STATE_ADDR_BYTES_MAX);
    memset(zone_max, 'z', CORRAL_STATE_ZONE_BYTES_MAX);
    memset(meta_max, '{', CORRAL_STATE_META_BYTES_MAX);
    for (uint32_t i = 0; i <= CORRAL_STATE_OPS_MAX; i++)
        ops_max[i] = OPV(i / 7, (uint8_t)(1 + i % 7), i * 3 + 1, (uint64_t)i << 33);
}

static const struct corral_partition_opv sample_ops[] = {
    {0, CORRAL_OP_ADD_COPYING, 1, 0},
    {0, CORRAL_OP_MARK_IN_SYNC, 1, 0},
    {3, CORRAL_OP_GRANT, 0xfffffffe, UINT64_MAX},
};

/* One command of every type, small and at the limits. */
static size_t cmd_samples(struct corral_state_cmd *out)
{
    size_t n = 0;
    out[n++] = simple_member("m-1.a_b");
    out[n++] = member_cmd(name_max, CORRAL_MEMBER_COORDINATOR, addr_max, zone_max,
                          CORRAL_STATE_WEIGHT_MAX, meta_max);
    out[n++] = member_cmd("x", CORRAL_MEMBER_WORKER, "[::1]:1", "", 1, "");
    out[n++] = status_cmd(7, DRAINING);
    out[n++] = status_cmd(UINT32_MAX, LEFT);
    out[n++] = id_cmd(CORRAL_STATE_MEMBER_DELETE, 3);
    out[n++] = resource_cmd("orders", 16, 3);
    out[n++] =
        resource_cmd(name_max, CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX, CORRAL_STATE_REPLICAS_MAX);
    out[n++] = id_cmd(CORRAL_STATE_RESOURCE_DELETE, 0x01020304);
    out[n++] = ops_cmd(5, 3, sample_ops);
    out[n++] = ops_cmd(1, CORRAL_STATE_OPS_MAX, ops_max);
    out[n++] = kv_cmd(CORRAL_KV_PUT, "key", "value", true, 9);
    out[n++] = kv_cmd(CORRAL_KV_DEL, "k", NULL, false, 0);
    out[n++] = coord_cmd(1, "c-1", "127.0.0.1:8139", "127.0.0.1:8140");
    out[n++] = coord_cmd(UINT32_MAX - 1, name_max, addr_max, addr_max);
    out[n++] = id_cmd(CORRAL_STATE_COORD_DELETE, 9);
    return n;
}

static void expect_cmd_equal(const struct corral_state_cmd *a, const struct corral_state_cmd *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case CORRAL_STATE_MEMBER_PUT:
        assert_int_equal(a->name_len, b->name_len);
        assert_memory_equal(a->name, b->name, a->name_len);
        assert_int_equal(a->role, b->role);
        assert_int_equal(a->addr_len, b->addr_len);
        assert_memory_equal(a->addr, b->addr, a->addr_len);
        assert_int_equal(a->zone_len, b->zone_len);
        if (a->zone_len > 0)
            assert_memory_equal(a->zone, b->zone, a->zone_len);
        assert_int_equal(a->weight, b->weight);
        assert_int_equal(a->meta_len, b->meta_len);
        if (a->meta_len > 0)
            assert_memory_equal(a->meta, b->meta, a->meta_len);
        break;
    case CORRAL_STATE_RESOURCE_PUT:
        assert_int_equal(a->name_len, b->name_len);
        assert_memory_equal(a->name, b->name, a->name_len);
        assert_int_equal(a->partitions, b->partitions);
        assert_int_equal(a->replicas, b->replicas);
        break;
    case CORRAL_STATE_PARTITION_OPS:
        assert_int_equal(a->id, b->id);
        assert_int_equal(a->n_ops, b->n_ops);
        for (uint32_t i = 0; i < a->n_ops; i++) {
            struct corral_partition_opv x, y;
            corral_state_cmd_op_at(a, i, &x);
            corral_state_cmd_op_at(b, i, &y);
            assert_int_equal(x.partition, y.partition);
            assert_int_equal(x.op, y.op);
            assert_int_equal(x.member, y.member);
            assert_int_equal(x.epoch, y.epoch);
        }
        break;
    case CORRAL_STATE_COORD_PUT:
        assert_int_equal(a->id, b->id);
        assert_int_equal(a->name_len, b->name_len);
        assert_memory_equal(a->name, b->name, a->name_len);
        assert_int_equal(a->addr_len, b->addr_len);
        assert_memory_equal(a->addr, b->addr, a->addr_len);
        assert_int_equal(a->http_addr_len, b->http_addr_len);
        assert_memory_equal(a->http_addr, b->http_addr, a->http_addr_len);
        break;
    case CORRAL_STATE_KV:
        assert_int_equal(a->kv.op, b->kv.op);
        assert_int_equal(a->kv.has_cas, b->kv.has_cas);
        assert_int_equal(a->kv.cas, b->kv.cas);
        assert_int_equal(a->kv.key_len, b->kv.key_len);
        assert_memory_equal(a->kv.key, b->kv.key, a->kv.key_len);
        assert_int_equal(a->kv.value_len, b->kv.value_len);
        if (a->kv.value_len > 0)
            assert_memory_equal(a->kv.value, b->kv.value, a->kv.value_len);
        break;
    default:
        assert_int_equal(a->id, b->id);
        assert_int_equal(a->status, b->status);
    }
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    struct corral_state_cmd s[20];
    size_t n = cmd_samples(s);
    for (size_t i = 0; i < n; i++) {
        struct corral_rbuf *b = enc(&s[i]);
        assert_int_equal(b->data[0], 2);
        assert_int_equal(b->data[1], s[i].type);
        struct corral_state_cmd out;
        assert_int_equal(corral_state_cmd_decode(b, &out), 0);
        expect_cmd_equal(&s[i], &out);
        if (out.type == CORRAL_STATE_PARTITION_OPS) {
            assert_null(out.ops);
            assert_true(out.ops_bytes >= b->data && out.ops_bytes < b->data + b->len);
        }
        /* Canonical: the decoded command encodes to the same bytes. */
        struct corral_rbuf *again = enc(&out);
        assert_true(rbuf_equal(b, again));
        corral_rbuf_unref(again);
        corral_rbuf_unref(b);
    }
    /* The largest KV command, and the largest PARTITION_OPS, fit in an entry. */
    uint8_t *big = malloc(CORRAL_KV_VALUE_BYTES_MAX);
    assert_non_null(big);
    memset(big, 7, CORRAL_KV_VALUE_BYTES_MAX);
    struct corral_state_cmd kv = kv_cmd(CORRAL_KV_PUT, "k", NULL, false, 0);
    kv.kv.value = big;
    kv.kv.value_len = CORRAL_KV_VALUE_BYTES_MAX;
    struct corral_rbuf *b = enc(&kv);
    struct corral_state_cmd out;
    assert_int_equal(corral_state_cmd_decode(b, &out), 0);
    expect_cmd_equal(&kv, &out);
    corral_rbuf_unref(b);
    free(big);
}

static void test_codec_truncations(void **state)
{
    (void)state;
    struct corral_state_cmd s[20];
    size_t n = cmd_samples(s);
    struct corral_state_cmd out;
    for (size_t i = 0; i < n; i++) {
        struct corral_rbuf *b = enc(&s[i]);
        /* The frame cut anywhere. */
        for (uint32_t len = 0; len < b->len; len++) {
            struct corral_rbuf *t = corral_rbuf_new(b->data, len);
            assert_int_not_equal(corral_state_cmd_decode(t, &out), 0);
            corral_rbuf_unref(t);
        }
        /* The body cut anywhere, in a frame whose length and CRC agree, so
         * the body decoder itself sees the short input; and one byte more. */
        uint32_t body = b->len - 10;
        for (uint32_t len = 0; len <= body + 1; len++) {
            /* All of a small body; the ends and a stride of a large one. */
            bool edge = len < 64 || len + 64 > body || len % 1021 == 0;
            if (len == body || (body > 4096 && !edge))
                continue;
            uint8_t *tmp = calloc(1, body + 1);
            memcpy(tmp, b->data + 6, body);
            struct corral_rbuf *t = frame(s[i].type, tmp, len);
            assert_int_equal(corral_state_cmd_decode(t, &out), CORRAL_EINVAL);
            corral_rbuf_unref(t);
            free(tmp);
        }
        /* A trailing byte after the CRC. */
        struct corral_rbuf *longer = corral_rbuf_new(NULL, b->len + 1);
        memcpy(longer->data, b->data, b->len);
        longer->data[b->len] = 0;
        assert_int_equal(corral_state_cmd_decode(longer, &out), CORRAL_EINVAL);
        corral_rbuf_unref(longer);
        corral_rbuf_unref(b);
    }
    assert_int_equal(corral_state_cmd_decode(NULL, &out), CORRAL_EINVAL);
    struct corral_rbuf *empty = corral_rbuf_new(NULL, 0);
    assert_int_equal(corral_state_cmd_decode(empty, &out), CORRAL_EINVAL);
    corral_rbuf_unref(empty);
}

/* Every single-bit flip of a frame is refused: the CRC catches the body
 * and the header; the version byte cannot flip to 1. */
static void test_codec_bit_flips(void **state)
{
    (void)state;
    struct corral_state_cmd s[20];
    size_t n = cmd_samples(s);
    for (size_t i = 0; i < n; i++) {
        if (s[i].type == CORRAL_STATE_PARTITION_OPS && s[i].n_ops > 3)
            continue; /* 700 KiB of flips; the small sample covers the layout */
        struct corral_rbuf *f = enc(&s[i]);
        for (uint32_t bit = 0; bit < 8 * f->len; bit++) {
            f->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct corral_state_cmd c;
            int rv = corral_state_cmd_decode(f, &c);
            if (bit < 8)
                assert_int_equal(rv, CORRAL_EVERSION);
            else if (bit >= 16 && bit < 48)
                assert_int_equal(rv, CORRAL_EINVAL); /* body_len */
            else
                assert_int_equal(rv, CORRAL_ECORRUPT);
            f->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        corral_rbuf_unref(f);
    }
}

/* The encoder refuses what the decoder would. */
static void test_codec_encode_refuses(void **state)
{
    (void)state;
    char name_over[CORRAL_STATE_NAME_BYTES_MAX + 2], addr_over[CORRAL_STATE_ADDR_BYTES_MAX + 2];
    char zone_over[CORRAL_STATE_ZONE_BYTES_MAX + 2], meta_over[CORRAL_STATE_META_BYTES_MAX + 2];
    memcpy(name_over, name_max, sizeof(name_over));
    name_over[CORRAL_STATE_NAME_BYTES_MAX] = 'n';
    name_over[CORRAL_STATE_NAME_BYTES_MAX + 1] = 0;
    memcpy(addr_over, addr_max, sizeof(addr_over));
    addr_over[CORRAL_STATE_ADDR_BYTES_MAX] = 'a';
    addr_over[CORRAL_STATE_ADDR_BYTES_MAX + 1] = 0;
    memcpy(zone_over, zone_max, sizeof(zone_over));
    zone_over[CORRAL_STATE_ZONE_BYTES_MAX] = 'z';
    zone_over[CORRAL_STATE_ZONE_BYTES_MAX + 1] = 0;
    memcpy(meta_over, meta_max, sizeof(meta_over));
    meta_over[CORRAL_STATE_META_BYTES_MAX] = '{';
    meta_over[CORRAL_STATE_META_BYTES_MAX + 1] = 0;
    const uint8_t W = CORRAL_MEMBER_WORKER;
    struct corral_state_cmd bad[] = {
        id_cmd(0, 1),
        id_cmd(8, 1),
        member_cmd("", W, "h:1", "", 1, ""),
        member_cmd("Upper", W, "h:1", "", 1, ""),
        member_cmd("a/b", W, "h:1", "", 1, ""),
        member_cmd("a b", W, "h:1", "", 1, ""),
        member_cmd(name_over, W, "h:1", "", 1, ""),
        member_cmd("a", 0, "h:1", "", 1, ""),
        member_cmd("a", 3, "h:1", "", 1, ""),
        member_cmd("a", W, "", "", 1, ""),
        member_cmd("a", W, "h :1", "", 1, ""),
        member_cmd("a", W, "h:1\x7f", "", 1, ""),
        member_cmd("a", W, addr_over, "", 1, ""),
        member_cmd("a", W, "h:1", "Z", 1, ""),
        member_cmd("a", W, "h:1", zone_over, 1, ""),
        member_cmd("a", W, "h:1", "", 0, ""),
        member_cmd("a", W, "h:1", "", CORRAL_STATE_WEIGHT_MAX + 1, ""),
        member_cmd("a", W, "h:1", "", 1, meta_over),
        status_cmd(1, 0),
        status_cmd(1, 5),
        resource_cmd("r", 0, 1),
        resource_cmd("r", CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX + 1, 1),
        resource_cmd("r", 1, 0),
        resource_cmd("r", 1, CORRAL_STATE_REPLICAS_MAX + 1),
        resource_cmd("R", 1, 1),
        resource_cmd(name_over, 1, 1),
        ops_cmd(1, 0, sample_ops),
        ops_cmd(1, CORRAL_STATE_OPS_MAX + 1, ops_max),
        ops_cmd(1, 1, NULL),
        kv_cmd(CORRAL_KV_PUT, "", "v", false, 0),
        kv_cmd(CORRAL_KV_DEL, "k", "v", false, 0),
        kv_cmd(9, "k", NULL, false, 0),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("refused by the encoder: case %zu\n", i);
        assert_null(corral_state_cmd_encode(&bad[i]));
    }
    struct corral_state_cmd ok = member_cmd("a", W, "h:1", "", 1, "");
    ok.name_len = 0;
    assert_null(corral_state_cmd_encode(&ok));
    ok = member_cmd("a", W, "h:1", "", 1, "");
    ok.meta = NULL;
    ok.meta_len = 3;
    assert_null(corral_state_cmd_encode(&ok));
    struct corral_partition_opv v[][2] = {
        {OPV(0, 0, 1, 0), OPV(0, 1, 1, 0)},
        {OPV(0, 1, 1, 0), OPV(0, CORRAL_PARTITION_OP_MAX + 1, 1, 0)},
        {OPV(2, 1, 1, 0), OPV(1, 1, 1, 0)}, /* partitions must not decrease */
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        struct corral_state_cmd c = ops_cmd(1, 2, v[i]);
        assert_null(corral_state_cmd_encode(&c));
    }
    assert_null(corral_state_cmd_encode(NULL));
}

/* A member put body with every field given, for hand-made frames. */
static struct corral_rbuf *raw_member(const char *name, uint8_t role, const char *addr,
                                      const char *zone, uint16_t weight, uint16_t meta_len)
{
    struct sbuf s = {0};
    sb_str(&s, name);
    sb_le(&s, role, 1);
    sb_str(&s, addr);
    sb_str(&s, zone);
    sb_le(&s, weight, 2);
    sb_le(&s, meta_len, 2);
    for (uint16_t i = 0; i < meta_len; i++)
        sb_le(&s, 'm', 1);
    struct corral_rbuf *b = frame(CORRAL_STATE_MEMBER_PUT, s.data, s.len);
    free(s.data);
    return b;
}

static struct corral_rbuf *raw_ops(uint32_t res, uint32_t n_ops, uint32_t n_given,
                                   const struct corral_partition_opv *v)
{
    struct sbuf s = {0};
    sb_le(&s, res, 4);
    sb_le(&s, n_ops, 4);
    for (uint32_t i = 0; i < n_given; i++) {
        sb_le(&s, v[i].partition, 4);
        sb_le(&s, v[i].op, 1);
        sb_le(&s, v[i].member, 4);
        sb_le(&s, v[i].epoch, 8);
    }
    struct corral_rbuf *b = frame(CORRAL_STATE_PARTITION_OPS, s.data, s.len);
    free(s.data);
    return b;
}

static void expect_decode(struct corral_rbuf *b, int want)
{
    struct corral_state_cmd c;
    assert_int_equal(corral_state_cmd_decode(b, &c), want);
    corral_rbuf_unref(b);
}

/* Frames with a good CRC that the encoder never writes. */
static void test_codec_hand_made(void **state)
{
    (void)state;
    const uint8_t W = CORRAL_MEMBER_WORKER;
    /* A good one first, so the builders are known to match the layout. */
    expect_decode(raw_member("a", W, "h:1", "z", 1, 2), 0);
    expect_decode(raw_member("a", W, "h:1", "", 1000, 1024), 0);
    expect_decode(raw_member("", W, "h:1", "z", 1, 0), CORRAL_EINVAL);
    expect_decode(raw_member(name_max, W, "h:1", "z", 1, 0), 0);
    char over[CORRAL_STATE_ADDR_BYTES_MAX + 2];
    memset(over, 'n', sizeof(over));
    over[CORRAL_STATE_NAME_BYTES_MAX + 1] = 0;
    expect_decode(raw_member(over, W, "h:1", "z", 1, 0), CORRAL_EINVAL);
    over[CORRAL_STATE_NAME_BYTES_MAX + 1] = 'n';
    over[CORRAL_STATE_ADDR_BYTES_MAX + 1] = 0;
    expect_decode(raw_member("a", W, over, "z", 1, 0), CORRAL_EINVAL);
    over[CORRAL_STATE_ZONE_BYTES_MAX + 1] = 0;
    expect_decode(raw_member("a", W, "h:1", over, 1, 0), CORRAL_EINVAL);
    expect_decode(raw_member("a", W, "h:1", "", 1, 1025), CORRAL_EINVAL);
    expect_decode(raw_member("a", 9, "h:1", "", 1, 0), CORRAL_EINVAL);
    expect_decode(raw_member("a", W, "h:1", "", 0, 0), CORRAL_EINVAL);
    expect_decode(raw_member("a\xff", W, "h:1", "", 1, 0), CORRAL_EINVAL);
    /* A u16 length far past the end. */
    struct sbuf s = {0};
    sb_le(&s, 0xffff, 2);
    sb_bytes(&s, "abc", 3);
    struct corral_rbuf *b = frame(CORRAL_STATE_MEMBER_PUT, s.data, s.len);
    expect_decode(b, CORRAL_EINVAL);
    free(s.data);

    struct corral_partition_opv v[2] = {OPV(0, 1, 1, 0), OPV(1, 7, 2, 5)};
    expect_decode(raw_ops(1, 2, 2, v), 0);
    expect_decode(raw_ops(1, 0, 0, v), CORRAL_EINVAL);
    expect_decode(raw_ops(1, 3, 2, v), CORRAL_EINVAL);
    expect_decode(raw_ops(1, 1, 2, v), CORRAL_EINVAL);
    expect_decode(raw_ops(1, CORRAL_STATE_OPS_MAX + 1, CORRAL_STATE_OPS_MAX + 1, ops_max),
                  CORRAL_EINVAL);
    expect_decode(raw_ops(1, UINT32_MAX, 2, v), CORRAL_EINVAL);
    expect_decode(raw_ops(1, 0x0f0f0f10, 2, v), CORRAL_EINVAL); /* x17 wraps to 16 in 32 bits */
    struct corral_partition_opv down[2] = {OPV(1, 1, 1, 0), OPV(0, 1, 1, 0)};
    expect_decode(raw_ops(1, 2, 2, down), CORRAL_EINVAL);
    struct corral_partition_opv bad_op[1] = {OPV(0, CORRAL_PARTITION_OP_MAX + 1, 1, 0)};
    expect_decode(raw_ops(1, 1, 1, bad_op), CORRAL_EINVAL);
    bad_op[0].op = 0;
    expect_decode(raw_ops(1, 1, 1, bad_op), CORRAL_EINVAL);

    /* Unknown types, with a plausible body. */
    uint8_t body[5] = {1, 0, 0, 0, 1};
    expect_decode(frame(0, body, 5), CORRAL_EINVAL);
    expect_decode(frame(8, body, 5), CORRAL_EINVAL);
    expect_decode(frame(255, body, 4), CORRAL_EINVAL);
    expect_decode(frame(CORRAL_STATE_MEMBER_STATUS, body, 5), 0);
    body[4] = 0;
    expect_decode(frame(CORRAL_STATE_MEMBER_STATUS, body, 5), CORRAL_EINVAL);
    body[4] = 5;
    expect_decode(frame(CORRAL_STATE_MEMBER_STATUS, body, 5), CORRAL_EINVAL);
    expect_decode(frame(CORRAL_STATE_MEMBER_DELETE, body, 4), 0);
    expect_decode(frame(CORRAL_STATE_MEMBER_DELETE, body, 5), CORRAL_EINVAL);
    /* A KV frame whose body is not a store command. */
    expect_decode(frame(CORRAL_STATE_KV, "\x01\x01junk", 6), CORRAL_EINVAL);
    expect_decode(frame(CORRAL_STATE_KV, "", 0), CORRAL_EINVAL);
    /* Unknown versions. */
    uint8_t v0[] = {0, 3, 4, 0, 0, 0, 0, 0, 0, 0};
    for (unsigned ver = 0; ver < 256; ver++) {
        if (ver == 1 || ver == 2)
            continue;
        v0[0] = (uint8_t)ver;
        expect_decode(corral_rbuf_new(v0, sizeof(v0)), CORRAL_EVERSION);
    }
    /* body_len disagrees with the frame. */
    b = frame(CORRAL_STATE_MEMBER_DELETE, body, 4);
    b->data[2] = 5;
    expect_decode(b, CORRAL_EINVAL);
    b = frame(CORRAL_STATE_MEMBER_DELETE, body, 4);
    b->data[5] = 0x80;
    expect_decode(b, CORRAL_EINVAL);
}

/* A version-1 payload is a store command and decodes as type KV. */
static void test_codec_legacy(void **state)
{
    (void)state;
    struct corral_kv_cmd kc = {CORRAL_KV_PUT,          true, 4, (const uint8_t *)"key", 3,
                               (const uint8_t *)"val", 3};
    struct corral_rbuf *b = corral_kv_cmd_encode(&kc);
    assert_non_null(b);
    struct corral_state_cmd c;
    assert_int_equal(corral_state_cmd_decode(b, &c), 0);
    assert_int_equal(c.type, CORRAL_STATE_KV);
    assert_int_equal(c.kv.op, CORRAL_KV_PUT);
    assert_int_equal(c.kv.cas, 4);
    assert_memory_equal(c.kv.key, "key", 3);
    assert_true(c.kv.key >= b->data && c.kv.key < b->data + b->len);
    /* It re-encodes as a version-2 frame around the same store bytes. */
    struct corral_rbuf *v2 = enc(&c);
    assert_int_equal(v2->data[0], 2);
    assert_int_equal(v2->len, b->len + 10);
    assert_memory_equal(v2->data + 6, b->data, b->len);
    corral_rbuf_unref(v2);
    b->data[b->len - 1] ^= 1; /* a store command has no CRC: value byte */
    assert_int_equal(corral_state_cmd_decode(b, &c), 0);
    corral_rbuf_unref(b);
    struct corral_rbuf *junk = corral_rbuf_new("\x01junk", 5);
    assert_int_equal(corral_state_cmd_decode(junk, &c), CORRAL_EINVAL);
    corral_rbuf_unref(junk);
}

/* ---- Apply: members ---- */

static void test_member_put(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    assert_int_equal(corral_state_member_count(h.st), 0);
    uint32_t a = add_member(&h, "alpha");
    assert_int_equal(a, 1);
    const struct corral_state_member *m = corral_state_member_by_id(h.st, a);
    assert_non_null(m);
    assert_string_equal(m->name, "alpha");
    assert_string_equal(m->addr, "10.0.0.1:7000");
    assert_string_equal(m->zone, "z1");
    assert_int_equal(m->role, CORRAL_MEMBER_WORKER);
    assert_int_equal(m->status, ACTIVE);
    assert_int_equal(m->weight, 100);
    assert_int_equal(m->meta_len, 2);
    assert_memory_equal(m->meta, "{}", 2);
    assert_int_equal(m->joined_index, 1);
    assert_int_equal(m->changed_index, 1);
    assert_int_equal(corral_state_assign_index(h.st), 1);
    uint32_t b = add_member(&h, "beta");
    assert_int_equal(b, 2);
    uint32_t c = add_member(&h, "aa");
    assert_int_equal(c, 3);
    assert_int_equal(corral_state_member_count(h.st), 3);
    /* Id order, whatever the names. */
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(corral_state_member_at(h.st, i)->id, i + 1);
    assert_null(corral_state_member_at(h.st, 3));
    assert_ptr_equal(corral_state_member_by_name(h.st, "beta", 4),
                     corral_state_member_by_id(h.st, b));
    assert_ptr_equal(corral_state_member_by_name(h.st, "alphaX", 5),
                     corral_state_member_by_id(h.st, a));
    assert_null(corral_state_member_by_name(h.st, "alph", 4));
    assert_null(corral_state_member_by_name(h.st, "alphab", 6));
    assert_null(corral_state_member_by_name(h.st, "ALPHA", 5));
    assert_null(corral_state_member_by_name(h.st, "", 0));
    assert_null(corral_state_member_by_name(h.st, NULL, 3));
    assert_null(corral_state_member_by_id(h.st, 0));
    assert_null(corral_state_member_by_id(h.st, 4));

    /* An update keeps the id and joined_index. */
    struct corral_state_result r =
        apply(&h, member_cmd("alpha", CORRAL_MEMBER_COORDINATOR, "[::1]:9", "", 7, "{\"v\":2}"));
    assert_int_equal(r.status, OK);
    assert_int_equal(r.id, a);
    m = corral_state_member_by_id(h.st, a);
    assert_int_equal(m->role, CORRAL_MEMBER_COORDINATOR);
    assert_string_equal(m->addr, "[::1]:9");
    assert_string_equal(m->zone, "");
    assert_int_equal(m->weight, 7);
    assert_int_equal(m->meta_len, 7);
    assert_int_equal(m->joined_index, 1);
    assert_int_equal(m->changed_index, h.index);
    assert_int_equal(corral_state_assign_index(h.st), h.index);
    /* The same again changes nothing, not even an index. */
    r = unchanged(&h, member_cmd("alpha", CORRAL_MEMBER_COORDINATOR, "[::1]:9", "", 7, "{\"v\":2}"),
                  OK);
    assert_int_equal(r.id, a);
    /* One field at a time is a change. */
    r = apply(&h, member_cmd("alpha", CORRAL_MEMBER_COORDINATOR, "[::1]:9", "", 7, "{\"v\":3}"));
    assert_int_equal(corral_state_member_by_id(h.st, a)->changed_index, h.index);
    r = apply(&h, member_cmd("alpha", CORRAL_MEMBER_COORDINATOR, "[::1]:9", "", 7, ""));
    assert_int_equal(corral_state_member_by_id(h.st, a)->meta_len, 0);
    assert_int_equal(corral_state_member_by_id(h.st, a)->changed_index, h.index);
    h_free(&h);
}

/* A put of a dead or left member makes it active again (same id); a
 * draining member stays draining. */
static void test_member_rejoin(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a");
    uint8_t from[] = {DEAD, LEFT, DRAINING};
    uint8_t want[] = {ACTIVE, ACTIVE, DRAINING};
    for (size_t i = 0; i < 3; i++) {
        set_status(&h, a, from[i]);
        assert_int_equal(corral_state_member_by_id(h.st, a)->status, from[i]);
        struct corral_state_result r;
        if (want[i] == ACTIVE) {
            r = apply(&h, simple_member("a"));
            assert_int_equal(corral_state_member_by_id(h.st, a)->changed_index, h.index);
            assert_int_equal(corral_state_assign_index(h.st), h.index);
        } else {
            r = unchanged(&h, simple_member("a"), OK);
        }
        assert_int_equal(r.status, OK);
        assert_int_equal(r.id, a);
        assert_int_equal(corral_state_member_by_id(h.st, a)->status, want[i]);
        assert_int_equal(corral_state_member_by_id(h.st, a)->joined_index, 1);
        set_status(&h, a, ACTIVE);
    }
    assert_int_equal(corral_state_member_count(h.st), 1);
    h_free(&h);
}

static void test_member_status(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a"), b = add_member(&h, "b");
    uint32_t res = add_resource(&h, "r", 2, 2);
    unchanged(&h, status_cmd(0, DEAD), NOT_FOUND);
    unchanged(&h, status_cmd(99, DEAD), NOT_FOUND);
    unchanged(&h, status_cmd(a, ACTIVE), OK); /* its own status: no change */
    /* Every transition, with no replicas held. */
    uint8_t seq[] = {DRAINING, DEAD, ACTIVE, LEFT, DRAINING, LEFT, DEAD, LEFT, ACTIVE};
    for (size_t i = 0; i < sizeof(seq); i++) {
        set_status(&h, a, seq[i]);
        const struct corral_state_member *m = corral_state_member_by_id(h.st, a);
        assert_int_equal(m->status, seq[i]);
        assert_int_equal(m->changed_index, h.index);
        assert_int_equal(corral_state_assign_index(h.st), h.index);
    }
    /* Holding a replica (a copying one, not the primary): not LEFT. */
    op_ok(&h, res, 1, CORRAL_OP_ADD_COPYING, a, 0);
    unchanged(&h, status_cmd(a, LEFT), CONFLICT);
    set_status(&h, a, DRAINING);
    unchanged(&h, status_cmd(a, LEFT), CONFLICT);
    set_status(&h, a, DEAD);
    unchanged(&h, status_cmd(a, LEFT), CONFLICT);
    /* A dead primary keeps its primary slot: the controller clears it. */
    make_primary(&h, res, 0, b);
    set_status(&h, b, DEAD);
    assert_int_equal(part(&h, res, 0)->primary, b);
    unchanged(&h, status_cmd(b, LEFT), CONFLICT);
    op_ok(&h, res, 1, CORRAL_OP_DROP, a, 0);
    set_status(&h, a, LEFT);
    h_free(&h);
}

static void test_member_delete(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a"), b = add_member(&h, "b"), c = add_member(&h, "c");
    uint32_t res = add_resource(&h, "r", 1, 3);
    unchanged(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, 0), NOT_FOUND);
    unchanged(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, 4), NOT_FOUND);
    op_ok(&h, res, 0, CORRAL_OP_ADD_COPYING, b, 0);
    /* Holding a replica, in any status. */
    uint8_t statuses[] = {ACTIVE, DRAINING, DEAD};
    for (size_t i = 0; i < 3; i++) {
        set_status(&h, b, statuses[i]);
        unchanged(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, b), CONFLICT);
    }
    /* A member in the middle goes; the others keep their order. */
    op_ok(&h, res, 0, CORRAL_OP_DROP, b, 0);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, b)).status, OK);
    assert_int_equal(corral_state_assign_index(h.st), h.index);
    assert_int_equal(corral_state_member_count(h.st), 2);
    assert_int_equal(corral_state_member_at(h.st, 0)->id, a);
    assert_int_equal(corral_state_member_at(h.st, 1)->id, c);
    assert_null(corral_state_member_by_id(h.st, b));
    assert_null(corral_state_member_by_name(h.st, "b", 1));
    unchanged(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, b), NOT_FOUND);
    /* The name is free; the id is never given out again. */
    uint32_t b2 = add_member(&h, "b");
    assert_int_equal(b2, 4);
    assert_int_equal(corral_state_member_at(h.st, 2)->id, b2);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, c)).status, OK);
    assert_int_equal(add_member(&h, "d"), 5);
    /* A left member may be deleted too. */
    set_status(&h, a, LEFT);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, a)).status, OK);
    assert_int_equal(corral_state_member_count(h.st), 2);
    h_free(&h);
}

/* ---- Apply: resources ---- */

static void test_resource_put(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a"), b = add_member(&h, "b"), c = add_member(&h, "c");
    uint32_t r1 = add_resource(&h, "orders", 4, 3);
    assert_int_equal(r1, 1);
    const struct corral_state_resource *rs = corral_state_resource_by_id(h.st, r1);
    assert_string_equal(rs->name, "orders");
    assert_int_equal(rs->partitions, 4);
    assert_int_equal(rs->replicas, 3);
    assert_int_equal(rs->created_index, h.index);
    assert_int_equal(rs->changed_index, h.index);
    assert_int_equal(corral_state_assign_index(h.st), h.index);
    for (uint32_t p = 0; p < 4; p++) {
        assert_int_equal(rs->parts[p].epoch, 0);
        assert_int_equal(rs->parts[p].primary, CORRAL_STATE_NONE);
        assert_false(rs->parts[p].releasing);
        assert_int_equal(rs->parts[p].n_replicas, 0);
    }
    uint32_t r2 = add_resource(&h, "a-queue", 2, 1);
    assert_int_equal(r2, 2);
    assert_int_equal(corral_state_partitions_total(h.st), 6);
    assert_int_equal(corral_state_resource_count(h.st), 2);
    assert_int_equal(corral_state_resource_at(h.st, 0)->id, r1);
    assert_int_equal(corral_state_resource_at(h.st, 1)->id, r2);
    assert_null(corral_state_resource_at(h.st, 2));
    assert_ptr_equal(corral_state_resource_by_name(h.st, "a-queue", 7),
                     corral_state_resource_by_id(h.st, r2));
    assert_null(corral_state_resource_by_name(h.st, "orders2", 7));
    assert_null(corral_state_resource_by_name(h.st, "Orders", 6));
    assert_null(corral_state_resource_by_id(h.st, 0));
    assert_null(corral_state_resource_by_id(h.st, 3));

    /* P is fixed; the same R is no change. */
    struct corral_state_result r = unchanged(&h, resource_cmd("orders", 5, 3), CONFLICT);
    assert_int_equal(r.id, r1);
    r = unchanged(&h, resource_cmd("orders", 4, 3), OK);
    assert_int_equal(r.id, r1);
    /* Fill partition 0 to R = 3 in sync and one copy over (a move's, S2),
     * then lower R to 1: allowed, surplus stays, adds stop, drops work. */
    op_ok(&h, r1, 0, CORRAL_OP_ADD_IN_SYNC, a, 0);
    op_ok(&h, r1, 0, CORRAL_OP_ADD_IN_SYNC, b, 0);
    op_ok(&h, r1, 0, CORRAL_OP_ADD_IN_SYNC, c, 0);
    uint32_t d = add_member(&h, "d"), e = add_member(&h, "e");
    op_refused_for(&h, r1, 0, CORRAL_OP_ADD_IN_SYNC, d, 0, AT_R); /* in sync: R */
    op_ok(&h, r1, 0, CORRAL_OP_ADD_COPYING, d, 0);                /* copying: R + 1 */
    op_refused_for(&h, r1, 0, CORRAL_OP_ADD_COPYING, e, 0, AT_R1);
    op_refused_for(&h, r1, 0, CORRAL_OP_ADD_IN_SYNC, e, 0, AT_R);
    r = apply(&h, resource_cmd("orders", 4, 1));
    assert_int_equal(r.status, OK);
    assert_int_equal(r.id, r1);
    rs = corral_state_resource_by_id(h.st, r1);
    assert_int_equal(rs->replicas, 1);
    assert_int_equal(rs->changed_index, h.index);
    assert_int_equal(rs->created_index, 4);
    assert_int_equal(corral_state_assign_index(h.st), h.index);
    assert_int_equal(rs->parts[0].n_replicas, 4); /* R + 3 now */
    op_ok(&h, r1, 0, CORRAL_OP_DROP, c, 0);
    assert_int_equal(part(&h, r1, 0)->n_replicas, 3);
    op_refused_for(&h, r1, 0, CORRAL_OP_ADD_COPYING, c, 0, AT_R1);
    /* Down to R: in sync still refused, one copy (R + 1) taken. */
    op_ok(&h, r1, 0, CORRAL_OP_DROP, d, 0);
    op_ok(&h, r1, 0, CORRAL_OP_DROP, b, 0);
    assert_int_equal(part(&h, r1, 0)->n_replicas, 1);
    op_refused_for(&h, r1, 0, CORRAL_OP_ADD_IN_SYNC, c, 0, AT_R);
    op_ok(&h, r1, 0, CORRAL_OP_ADD_COPYING, c, 0);
    op_refused_for(&h, r1, 0, CORRAL_OP_ADD_COPYING, b, 0, AT_R1);
    /* An empty partition at the lowered R: R + 1 = 2 copies, no third. */
    op_ok(&h, r1, 1, CORRAL_OP_ADD_COPYING, a, 0);
    op_ok(&h, r1, 1, CORRAL_OP_ADD_COPYING, b, 0);
    op_refused_for(&h, r1, 1, CORRAL_OP_ADD_COPYING, e, 0, AT_R1);
    assert_int_equal(part(&h, r1, 1)->n_replicas, 2);
    h_free(&h);
}

static void test_resource_delete(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a"), b = add_member(&h, "b");
    uint32_t r1 = add_resource(&h, "r1", 3, 2), r2 = add_resource(&h, "r2", 5, 2);
    uint32_t r3 = add_resource(&h, "r3", 1, 1);
    unchanged(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 0), NOT_FOUND);
    unchanged(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 4), NOT_FOUND);
    make_primary(&h, r2, 4, a);
    op_ok(&h, r2, 4, CORRAL_OP_ADD_COPYING, b, epoch_of(&h, r2, 4));
    op_ok(&h, r2, 0, CORRAL_OP_ADD_IN_SYNC, b, 0);
    op_ok(&h, r2, 4, CORRAL_OP_RELEASE, a, epoch_of(&h, r2, 4));
    uint64_t last = corral_state_last_epoch(h.st);
    /* With replicas, a primary and a release in progress: it goes whole. */
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, r2)).status, OK);
    assert_int_equal(corral_state_assign_index(h.st), h.index);
    assert_int_equal(corral_state_partitions_total(h.st), 4);
    assert_int_equal(corral_state_resource_count(h.st), 2);
    assert_int_equal(corral_state_resource_at(h.st, 0)->id, r1);
    assert_int_equal(corral_state_resource_at(h.st, 1)->id, r3);
    assert_null(corral_state_resource_by_name(h.st, "r2", 2));
    assert_int_equal(corral_state_last_epoch(h.st), last);
    unchanged(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, r2), NOT_FOUND);
    /* Its replicas no longer count: both members may leave and go. */
    set_status(&h, a, LEFT);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, b)).status, OK);
    /* Created again: a new id, and grants only newer epochs. */
    uint32_t again = add_resource(&h, "r2", 5, 2);
    assert_int_equal(again, 4);
    assert_int_equal(epoch_of(&h, again, 4), 0);
    uint32_t c = add_member(&h, "c");
    make_primary(&h, again, 4, c);
    assert_int_equal(epoch_of(&h, again, 4), last + 1);
    assert_int_equal(corral_state_partitions_total(h.st), 9);
    h_free(&h);
}

/* ---- Apply: partition operations ---- */

/* Members a, b, c active, dr draining, dd dead, lf left; resource res
 * with P = 4, R = 3. */
struct fx {
    struct h h;
    uint32_t a, b, c, dr, dd, lf, res;
};

static void fx_init(struct fx *f)
{
    h_init(&f->h);
    f->a = add_member(&f->h, "a");
    f->b = add_member(&f->h, "b");
    f->c = add_member(&f->h, "c");
    f->dr = add_member(&f->h, "dr");
    f->dd = add_member(&f->h, "dd");
    f->lf = add_member(&f->h, "lf");
    set_status(&f->h, f->dr, DRAINING);
    set_status(&f->h, f->dd, DEAD);
    set_status(&f->h, f->lf, LEFT);
    f->res = add_resource(&f->h, "res", 4, 3);
}

/* The rules every op shares: the partition, the member, the epoch. */
static void test_ops_common(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    make_primary(h, f.res, 0, f.a);
    uint64_t e = epoch_of(h, f.res, 0);
    for (uint8_t op = 1; op <= CORRAL_PARTITION_OP_MAX; op++) {
        op_refused(h, 99, 0, op, f.a, e, NOT_FOUND);
        op_refused(h, f.res, 4, op, f.a, e, NOT_FOUND);
        op_refused(h, f.res, UINT32_MAX, op, f.a, e, NOT_FOUND);
        op_refused(h, f.res, 0, op, 0, e, NOT_FOUND);
        op_refused(h, f.res, 0, op, 77, e, NOT_FOUND);
        op_refused(h, f.res, 0, op, f.a, e - 1, CONFLICT);
        op_refused(h, f.res, 0, op, f.a, e + 1, CONFLICT);
        op_refused(h, f.res, 1, op, f.a, 1, CONFLICT); /* partition 1 is at 0 */
    }
    h_free(h);
}

static void test_ops_add(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.a, 0);
    const struct corral_state_partition *p = part(h, f.res, 0);
    assert_int_equal(p->n_replicas, 1);
    assert_int_equal(p->replicas[0].member, f.a);
    assert_int_equal(p->replicas[0].state, COPYING);
    op_refused(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.a, 0, CONFLICT);
    op_refused(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.a, 0, CONFLICT);
    for (uint8_t op = CORRAL_OP_ADD_COPYING; op <= CORRAL_OP_ADD_IN_SYNC; op++) {
        op_refused(h, f.res, 0, op, f.dr, 0, CONFLICT);
        op_refused(h, f.res, 0, op, f.dd, 0, CONFLICT);
        op_refused(h, f.res, 0, op, f.lf, 0, CONFLICT);
    }
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.b, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.c, 0);
    p = part(h, f.res, 0);
    assert_int_equal(p->n_replicas, 3);
    assert_int_equal(p->replicas[1].member, f.b);
    assert_int_equal(p->replicas[1].state, IN_SYNC);
    assert_int_equal(p->replicas[2].member, f.c);
    /* R reached: no more in sync, but one copy over R (a move copies
     * before it drops, S2); at R + 1 neither. */
    uint32_t d = add_member(h, "d"), x = add_member(h, "x");
    op_refused_for(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, d, 0, AT_R);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, d, 0);
    p = part(h, f.res, 0);
    assert_int_equal(p->n_replicas, 4);
    assert_int_equal(p->replicas[3].member, d);
    assert_int_equal(p->replicas[3].state, COPYING);
    op_refused_for(h, f.res, 0, CORRAL_OP_ADD_COPYING, x, 0, AT_R1);
    op_refused_for(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, x, 0, AT_R);
    /* R + 1 in sync is a state, not an add: the copy may be marked. */
    op_ok(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, d, 0);
    op_ok(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.a, 0);
    op_refused_for(h, f.res, 0, CORRAL_OP_ADD_COPYING, x, 0, AT_R1);
    /* A drop back to R makes room for one copy again, still not for an
     * in-sync add. */
    op_ok(h, f.res, 0, CORRAL_OP_DROP, f.b, 0);
    op_refused_for(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, x, 0, AT_R);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, x, 0);
    op_refused_for(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.b, 0, AT_R1);
    assert_int_equal(part(h, f.res, 0)->n_replicas, 4);
    /* In sync at once only before the first grant, even with the epoch right. */
    make_primary(h, f.res, 1, f.a);
    uint64_t e = epoch_of(h, f.res, 1);
    op_refused(h, f.res, 1, CORRAL_OP_ADD_IN_SYNC, f.b, e, CONFLICT);
    op_ok(h, f.res, 1, CORRAL_OP_ADD_COPYING, f.b, e);
    /* After a clear the epoch stays, so still no in-sync add. */
    op_ok(h, f.res, 1, CORRAL_OP_CLEAR, f.a, e);
    op_refused(h, f.res, 1, CORRAL_OP_ADD_IN_SYNC, f.c, e, CONFLICT);
    h_free(h);
}

/* The copy over R is what lets a move copy first: at R = 1 the primary's
 * partition takes a second, copying replica, hands off to it once in sync
 * and drops the old one; and at R = REPLICAS_MAX the row fills
 * CORRAL_STATE_ROW_MAX and no further. */
static void test_ops_add_over_r(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t m[CORRAL_STATE_ROW_MAX + 1];
    for (uint32_t i = 0; i <= CORRAL_STATE_ROW_MAX; i++) {
        char name[8];
        snprintf(name, sizeof(name), "m%u", i);
        m[i] = add_member(&h, name);
    }
    uint32_t one = add_resource(&h, "one", 2, 1);
    op_ok(&h, one, 0, CORRAL_OP_ADD_IN_SYNC, m[0], 0);
    op_refused_for(&h, one, 0, CORRAL_OP_ADD_IN_SYNC, m[1], 0, AT_R);
    op_ok(&h, one, 0, CORRAL_OP_GRANT, m[0], 0);
    uint64_t e = epoch_of(&h, one, 0);
    /* The move: copy while m0 stays primary, ... */
    op_ok(&h, one, 0, CORRAL_OP_ADD_COPYING, m[1], e);
    const struct corral_state_partition *p = part(&h, one, 0);
    assert_int_equal(p->n_replicas, 2);
    assert_int_equal(p->primary, m[0]);
    assert_int_equal(p->replicas[0].state, IN_SYNC);
    assert_int_equal(p->replicas[1].state, COPYING);
    op_refused_for(&h, one, 0, CORRAL_OP_ADD_COPYING, m[2], e, AT_R1);
    /* ... in sync, hand off, and only then drop the old replica. */
    op_ok(&h, one, 0, CORRAL_OP_MARK_IN_SYNC, m[1], e);
    op_refused(&h, one, 0, CORRAL_OP_DROP, m[0], e, CONFLICT); /* still the primary */
    op_ok(&h, one, 0, CORRAL_OP_RELEASE, m[0], e);
    struct corral_partition_opv handoff[] = {
        OPV(0, CORRAL_OP_CLEAR, m[0], e),
        OPV(0, CORRAL_OP_GRANT, m[1], e),
        OPV(0, CORRAL_OP_DROP, m[0], e + 1),
    };
    assert_int_equal(apply(&h, ops_cmd(one, 3, handoff)).status, OK);
    p = part(&h, one, 0);
    assert_int_equal(p->n_replicas, 1);
    assert_int_equal(p->replicas[0].member, m[1]);
    assert_int_equal(p->primary, m[1]);
    assert_int_equal(p->epoch, e + 1);
    /* Room for the next move's copy again. */
    op_ok(&h, one, 0, CORRAL_OP_ADD_COPYING, m[0], e + 1);
    op_refused_for(&h, one, 0, CORRAL_OP_ADD_COPYING, m[2], e + 1, AT_R1);

    /* R = 7: seven in sync, the eighth only copying, no ninth. */
    uint32_t seven = add_resource(&h, "seven", 2, CORRAL_STATE_REPLICAS_MAX);
    for (uint32_t i = 0; i < CORRAL_STATE_REPLICAS_MAX; i++)
        op_ok(&h, seven, 0, CORRAL_OP_ADD_IN_SYNC, m[i], 0);
    op_refused_for(&h, seven, 0, CORRAL_OP_ADD_IN_SYNC, m[7], 0, AT_R);
    op_ok(&h, seven, 0, CORRAL_OP_ADD_COPYING, m[7], 0);
    assert_int_equal(part(&h, seven, 0)->n_replicas, CORRAL_STATE_ROW_MAX);
    op_refused_for(&h, seven, 0, CORRAL_OP_ADD_COPYING, m[8], 0, AT_R1);
    op_refused_for(&h, seven, 0, CORRAL_OP_ADD_IN_SYNC, m[8], 0, AT_R);
    op_ok(&h, seven, 0, CORRAL_OP_MARK_IN_SYNC, m[7], 0);
    assert_int_equal(part(&h, seven, 0)->replicas[7].state, IN_SYNC);
    /* The same in one command: eight copies fit, the ninth refuses all. */
    struct corral_partition_opv fill[CORRAL_STATE_ROW_MAX + 1];
    for (uint32_t i = 0; i <= CORRAL_STATE_ROW_MAX; i++)
        fill[i] = OPV(1, CORRAL_OP_ADD_COPYING, m[i], 0);
    struct corral_state_result r =
        unchanged(&h, ops_cmd(seven, CORRAL_STATE_ROW_MAX + 1, fill), CONFLICT);
    assert_int_equal(r.op, CORRAL_STATE_ROW_MAX);
    assert_string_equal(r.detail, AT_R1);
    assert_int_equal(apply(&h, ops_cmd(seven, CORRAL_STATE_ROW_MAX, fill)).status, OK);
    assert_int_equal(part(&h, seven, 1)->n_replicas, CORRAL_STATE_ROW_MAX);
    h_free(&h);
}

static void test_ops_mark_in_sync(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    op_refused(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.a, 0, CONFLICT); /* no replica */
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.a, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.b, 0);
    op_ok(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.b, 0);
    const struct corral_state_partition *p = part(h, f.res, 0);
    assert_int_equal(p->replicas[0].state, COPYING);
    assert_int_equal(p->replicas[1].state, IN_SYNC);
    op_refused(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.b, 0, CONFLICT); /* already */
    op_refused(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.c, 0, CONFLICT); /* not a replica */
    /* A dead member's claim is not taken; a draining one's is. */
    set_status(h, f.a, DEAD);
    op_refused(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.a, 0, CONFLICT);
    set_status(h, f.a, DRAINING);
    op_ok(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.a, 0);
    h_free(h);
}

static void test_ops_drop(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    op_refused(h, f.res, 0, CORRAL_OP_DROP, f.a, 0, CONFLICT);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.a, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.b, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.c, 0);
    op_ok(h, f.res, 0, CORRAL_OP_GRANT, f.b, 0);
    uint64_t e = epoch_of(h, f.res, 0);
    op_refused(h, f.res, 0, CORRAL_OP_DROP, f.b, e, CONFLICT); /* the primary */
    op_refused(h, f.res, 0, CORRAL_OP_DROP, f.dr, e, CONFLICT);
    /* The first goes; the others keep their order and states. */
    op_ok(h, f.res, 0, CORRAL_OP_DROP, f.a, e);
    const struct corral_state_partition *p = part(h, f.res, 0);
    assert_int_equal(p->n_replicas, 2);
    assert_int_equal(p->replicas[0].member, f.b);
    assert_int_equal(p->replicas[0].state, IN_SYNC);
    assert_int_equal(p->replicas[1].member, f.c);
    assert_int_equal(p->replicas[1].state, COPYING);
    assert_int_equal(p->primary, f.b);
    /* A dead member's replica can be dropped (the way off it). */
    set_status(h, f.c, DEAD);
    op_ok(h, f.res, 0, CORRAL_OP_DROP, f.c, e);
    op_refused(h, f.res, 0, CORRAL_OP_DROP, f.c, e, CONFLICT);
    /* After a clear the former primary can be dropped. */
    op_ok(h, f.res, 0, CORRAL_OP_CLEAR, f.b, e);
    op_ok(h, f.res, 0, CORRAL_OP_DROP, f.b, e);
    assert_int_equal(part(h, f.res, 0)->n_replicas, 0);
    assert_int_equal(epoch_of(h, f.res, 0), e);
    h_free(h);
}

static void test_ops_grant(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.a, 0, CONFLICT); /* no replica */
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.a, 0);
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.a, 0, CONFLICT); /* copying */
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.b, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.c, 0);
    /* Not to a draining or dead member, even one in sync. */
    set_status(h, f.c, DRAINING);
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.c, 0, CONFLICT);
    set_status(h, f.c, DEAD);
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.c, 0, CONFLICT);
    assert_int_equal(corral_state_last_epoch(h->st), 0);
    op_ok(h, f.res, 0, CORRAL_OP_GRANT, f.b, 0);
    const struct corral_state_partition *p = part(h, f.res, 0);
    assert_int_equal(p->primary, f.b);
    assert_int_equal(p->epoch, 1);
    assert_false(p->releasing);
    assert_int_equal(corral_state_last_epoch(h->st), 1);
    /* A primary is set: no second grant, to it or another. */
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.b, 1, CONFLICT);
    op_ok(h, f.res, 0, CORRAL_OP_MARK_IN_SYNC, f.a, 1);
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.a, 1, CONFLICT);
    /* Clear, then grant to a: a fresh epoch. */
    op_ok(h, f.res, 0, CORRAL_OP_CLEAR, f.b, 1);
    op_refused(h, f.res, 0, CORRAL_OP_GRANT, f.a, 0, CONFLICT); /* stale */
    op_ok(h, f.res, 0, CORRAL_OP_GRANT, f.a, 1);
    assert_int_equal(epoch_of(h, f.res, 0), 2);
    assert_int_equal(part(h, f.res, 0)->primary, f.a);
    h_free(h);
}

/* GRANT_DRAINING: GRANT's rules with the member draining, not active;
 * GRANT itself still refuses a draining member (old logs replay alike). */
static void test_ops_grant_draining(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.a, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_IN_SYNC, f.b, 0);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.c, 0);
    op_refused_for(h, f.res, 0, CORRAL_OP_GRANT_DRAINING, f.a, 0, "the member is not draining");
    set_status(h, f.c, DRAINING);
    op_refused_for(h, f.res, 0, CORRAL_OP_GRANT_DRAINING, f.c, 0,
                   "the member has no in-sync replica");
    set_status(h, f.b, DRAINING);
    op_refused_for(h, f.res, 0, CORRAL_OP_GRANT, f.b, 0, "the member is not active");
    set_status(h, f.a, DEAD);
    op_refused(h, f.res, 0, CORRAL_OP_GRANT_DRAINING, f.a, 0, CONFLICT);
    op_ok(h, f.res, 0, CORRAL_OP_GRANT_DRAINING, f.b, 0);
    const struct corral_state_partition *p = part(h, f.res, 0);
    assert_int_equal(p->primary, f.b);
    assert_int_equal(p->epoch, 1);
    assert_int_equal(corral_state_last_epoch(h->st), 1);
    /* Remove before assign holds for it too. */
    op_refused_for(h, f.res, 0, CORRAL_OP_GRANT_DRAINING, f.b, 1, "the partition has a primary");
    /* It hands off as any primary does. */
    op_ok(h, f.res, 0, CORRAL_OP_RELEASE, f.b, 1);
    op_ok(h, f.res, 0, CORRAL_OP_CLEAR, f.b, 1);
    assert_true(corral_state_check(h->st));
    h_free(h);
}

static void test_ops_release_clear(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    op_refused(h, f.res, 0, CORRAL_OP_RELEASE, f.a, 0, CONFLICT); /* no primary */
    op_refused(h, f.res, 0, CORRAL_OP_CLEAR, f.a, 0, CONFLICT);
    make_primary(h, f.res, 0, f.a);
    op_ok(h, f.res, 0, CORRAL_OP_ADD_COPYING, f.b, epoch_of(h, f.res, 0));
    uint64_t e = epoch_of(h, f.res, 0);
    op_refused(h, f.res, 0, CORRAL_OP_RELEASE, f.b, e, CONFLICT); /* not the primary */
    op_refused(h, f.res, 0, CORRAL_OP_CLEAR, f.b, e, CONFLICT);
    op_refused(h, f.res, 0, CORRAL_OP_RELEASE, f.a, e - 1, CONFLICT);
    op_ok(h, f.res, 0, CORRAL_OP_RELEASE, f.a, e);
    assert_true(part(h, f.res, 0)->releasing);
    op_refused(h, f.res, 0, CORRAL_OP_RELEASE, f.a, e, CONFLICT); /* already */
    op_refused(h, f.res, 0, CORRAL_OP_CLEAR, f.b, e, CONFLICT);
    op_refused(h, f.res, 0, CORRAL_OP_CLEAR, f.a, e + 1, CONFLICT);
    op_ok(h, f.res, 0, CORRAL_OP_CLEAR, f.a, e);
    const struct corral_state_partition *p = part(h, f.res, 0);
    assert_int_equal(p->primary, CORRAL_STATE_NONE);
    assert_false(p->releasing);
    assert_int_equal(p->epoch, e);
    op_refused(h, f.res, 0, CORRAL_OP_CLEAR, f.a, e, CONFLICT);
    /* Clear without a release first (a lease expired, a death). */
    op_ok(h, f.res, 0, CORRAL_OP_GRANT, f.a, e);
    set_status(h, f.a, DEAD);
    op_ok(h, f.res, 0, CORRAL_OP_CLEAR, f.a, e + 1);
    assert_int_equal(part(h, f.res, 0)->primary, CORRAL_STATE_NONE);
    h_free(h);
}

/* A command's ops: in order, against what the earlier ops left, and all
 * or nothing. */
static void test_ops_atomic(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f);
    struct h *h = &f.h;
    /* A whole hand-over in one command: ops see their predecessors. */
    struct corral_partition_opv seq[] = {
        OPV(0, CORRAL_OP_ADD_COPYING, f.a, 0), OPV(0, CORRAL_OP_MARK_IN_SYNC, f.a, 0),
        OPV(0, CORRAL_OP_GRANT, f.a, 0),       OPV(0, CORRAL_OP_ADD_COPYING, f.b, 1),
        OPV(0, CORRAL_OP_RELEASE, f.a, 1),     OPV(0, CORRAL_OP_CLEAR, f.a, 1),
        OPV(1, CORRAL_OP_ADD_IN_SYNC, f.b, 0), OPV(1, CORRAL_OP_GRANT, f.b, 0),
        OPV(3, CORRAL_OP_ADD_IN_SYNC, f.c, 0), OPV(3, CORRAL_OP_GRANT, f.c, 0),
    };
    struct corral_state_result r = apply(h, ops_cmd(f.res, 10, seq));
    assert_int_equal(r.status, OK);
    assert_int_equal(epoch_of(h, f.res, 0), 1);
    assert_int_equal(part(h, f.res, 0)->primary, CORRAL_STATE_NONE);
    assert_int_equal(part(h, f.res, 0)->n_replicas, 2);
    assert_int_equal(epoch_of(h, f.res, 1), 2);
    assert_int_equal(epoch_of(h, f.res, 3), 3);
    assert_int_equal(corral_state_last_epoch(h->st), 3);
    assert_int_equal(corral_state_resource_by_id(h->st, f.res)->changed_index, h->index);

    /* Refused at the last op: nothing of the earlier ones stays. */
    struct corral_partition_opv bad[] = {
        OPV(0, CORRAL_OP_DROP, f.a, 1),
        OPV(2, CORRAL_OP_ADD_IN_SYNC, f.a, 0),
        OPV(2, CORRAL_OP_GRANT, f.a, 0),
        OPV(2, CORRAL_OP_GRANT, f.a, 0),
    };
    r = unchanged(h, ops_cmd(f.res, 4, bad), CONFLICT);
    assert_int_equal(r.op, 3);
    /* R and R + 1 count the replicas the command itself added: in sync
     * stops at R, ... */
    uint32_t d = add_member(h, "d"), x = add_member(h, "x");
    struct corral_partition_opv full[] = {
        OPV(2, CORRAL_OP_ADD_IN_SYNC, f.a, 0),
        OPV(2, CORRAL_OP_ADD_IN_SYNC, f.b, 0),
        OPV(2, CORRAL_OP_ADD_IN_SYNC, f.c, 0),
        OPV(2, CORRAL_OP_ADD_IN_SYNC, d, 0),
    };
    r = unchanged(h, ops_cmd(f.res, 4, full), CONFLICT);
    assert_int_equal(r.op, 3);
    assert_string_equal(r.detail, AT_R);
    /* ... a copy at R + 1. */
    struct corral_partition_opv room[] = {
        OPV(2, CORRAL_OP_ADD_COPYING, f.a, 0), OPV(2, CORRAL_OP_ADD_COPYING, f.b, 0),
        OPV(2, CORRAL_OP_ADD_COPYING, f.c, 0), OPV(2, CORRAL_OP_ADD_COPYING, d, 0),
        OPV(2, CORRAL_OP_ADD_COPYING, x, 0),
    };
    r = unchanged(h, ops_cmd(f.res, 5, room), CONFLICT);
    assert_int_equal(r.op, 4);
    assert_string_equal(r.detail, AT_R1);
    /* ... and drops make room within the command. */
    struct corral_partition_opv swap[] = {
        OPV(2, CORRAL_OP_ADD_COPYING, f.a, 0), OPV(2, CORRAL_OP_ADD_COPYING, f.b, 0),
        OPV(2, CORRAL_OP_ADD_COPYING, f.c, 0), OPV(2, CORRAL_OP_ADD_COPYING, d, 0),
        OPV(2, CORRAL_OP_DROP, f.b, 0),        OPV(2, CORRAL_OP_ADD_COPYING, x, 0),
    };
    assert_int_equal(apply(h, ops_cmd(f.res, 6, swap)).status, OK);
    assert_int_equal(part(h, f.res, 2)->n_replicas, 4);
    assert_int_equal(part(h, f.res, 2)->replicas[2].member, d);
    assert_int_equal(part(h, f.res, 2)->replicas[3].member, x);
    /* Later ops carry the epoch the earlier grant made: the stale one is
     * refused at its turn. */
    uint64_t next = corral_state_last_epoch(h->st) + 1;
    struct corral_partition_opv stale[] = {
        OPV(2, CORRAL_OP_MARK_IN_SYNC, f.a, 0),
        OPV(2, CORRAL_OP_GRANT, f.a, 0),
        OPV(2, CORRAL_OP_RELEASE, f.a, 0),
    };
    r = unchanged(h, ops_cmd(f.res, 3, stale), CONFLICT);
    assert_int_equal(r.op, 2);
    stale[2].epoch = next;
    assert_int_equal(apply(h, ops_cmd(f.res, 3, stale)).status, OK);
    assert_true(part(h, f.res, 2)->releasing);
    assert_int_equal(epoch_of(h, f.res, 2), next);
    /* The index of a NOT_FOUND op, too. */
    struct corral_partition_opv nf[] = {
        OPV(0, CORRAL_OP_DROP, f.b, 1),
        OPV(9, CORRAL_OP_DROP, f.b, 0),
    };
    r = unchanged(h, ops_cmd(f.res, 2, nf), NOT_FOUND);
    assert_int_equal(r.op, 1);
    nf[1] = OPV(1, CORRAL_OP_DROP, 1000, 2);
    r = unchanged(h, ops_cmd(f.res, 2, nf), NOT_FOUND);
    assert_int_equal(r.op, 1);
    /* Decreasing partitions do not decode: a bad command. */
    struct corral_partition_opv down[] = {OPV(1, 4, f.b, 2), OPV(0, 4, f.b, 1)};
    unchanged_buf(h, raw_ops(f.res, 2, 2, down), BAD);
    h_free(h);
}

/* One cluster-wide counter: every grant anywhere takes the next epoch. */
static void test_epochs(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a"), b = add_member(&h, "b");
    uint32_t r1 = add_resource(&h, "r1", 3, 2), r2 = add_resource(&h, "r2", 2, 2);
    uint64_t prev = 0;
    uint32_t res[] = {r1, r2, r1, r2, r1};
    uint32_t parts[] = {0, 0, 2, 1, 1};
    for (int i = 0; i < 5; i++) {
        make_primary(&h, res[i], parts[i], i % 2 ? a : b);
        uint64_t e = epoch_of(&h, res[i], parts[i]);
        assert_int_equal(e, prev + 1);
        assert_int_equal(corral_state_last_epoch(h.st), e);
        prev = e;
    }
    /* Re-grants of one partition: strictly increasing. */
    for (int i = 0; i < 3; i++) {
        op_ok(&h, r1, 0, CORRAL_OP_CLEAR, b, epoch_of(&h, r1, 0));
        op_ok(&h, r1, 0, CORRAL_OP_GRANT, b, epoch_of(&h, r1, 0));
        assert_int_equal(epoch_of(&h, r1, 0), ++prev);
    }
    /* Delete and create again under the same name: newer still. */
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, r1)).status, OK);
    uint32_t r1b = add_resource(&h, "r1", 3, 2);
    assert_true(r1b > r2);
    make_primary(&h, r1b, 0, a);
    assert_int_equal(epoch_of(&h, r1b, 0), ++prev);
    assert_int_equal(corral_state_last_epoch(h.st), prev);
    h_free(&h);
}

/* ---- Apply: the config store ---- */

static void expect_kv(struct h *h, const char *key, const char *value, uint64_t version)
{
    struct corral_kv_item it;
    assert_true(
        corral_kv_get(corral_state_kv(h->st), (const uint8_t *)key, (uint32_t)strlen(key), &it));
    assert_int_equal(it.value_len, strlen(value));
    assert_memory_equal(it.value, value, it.value_len);
    assert_int_equal(it.version, version);
}

static void test_kv_commands(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    struct corral_state_result r = apply(&h, kv_cmd(CORRAL_KV_PUT, "k", "v1", false, 0));
    assert_int_equal(r.status, KV_DONE);
    assert_int_equal(r.kv.status, CORRAL_KV_OK);
    assert_int_equal(r.kv.version, 1);
    assert_string_equal(r.detail, "");
    expect_kv(&h, "k", "v1", 1);
    assert_int_equal(corral_state_assign_index(h.st), 0); /* not an assignment */
    /* Members and skips move the store's applied index along. */
    add_member(&h, "a");
    assert_int_equal(corral_state_skip(h.st, ++h.index), 0);
    assert_int_equal(corral_kv_applied(corral_state_kv(h.st)), h.index);
    r = apply(&h, kv_cmd(CORRAL_KV_PUT, "k", "v2", true, 2));
    assert_int_equal(r.status, KV_DONE);
    assert_int_equal(r.kv.status, CORRAL_KV_CAS_FAILED);
    assert_int_equal(r.kv.version, 1);
    r = apply(&h, kv_cmd(CORRAL_KV_PUT, "k", "v2", true, 1));
    assert_int_equal(r.kv.status, CORRAL_KV_OK);
    expect_kv(&h, "k", "v2", h.index);
    /* A version-1 payload, as the WAL held before: the store's own. */
    struct corral_kv_cmd kc = {CORRAL_KV_PUT,          false, 0, (const uint8_t *)"old", 3,
                               (const uint8_t *)"wal", 3};
    r = apply_buf(&h, corral_kv_cmd_encode(&kc));
    assert_int_equal(r.status, KV_DONE);
    assert_int_equal(r.kv.status, CORRAL_KV_OK);
    expect_kv(&h, "old", "wal", h.index);
    kc.op = CORRAL_KV_DEL;
    kc.value_len = 0;
    r = apply_buf(&h, corral_kv_cmd_encode(&kc));
    assert_int_equal(r.kv.status, CORRAL_KV_OK);
    r = apply_buf(&h, corral_kv_cmd_encode(&kc));
    assert_int_equal(r.kv.status, CORRAL_KV_NOT_FOUND);
    /* A malformed version-1 payload: the store reports it, as it did. */
    r = unchanged_buf(&h, corral_rbuf_new("\x01junk", 5), KV_DONE);
    assert_int_equal(r.kv.status, CORRAL_KV_BAD_COMMAND);
    r = apply(&h, kv_cmd(CORRAL_KV_DEL, "k", NULL, false, 0));
    assert_int_equal(r.kv.status, CORRAL_KV_OK);
    assert_int_equal(corral_kv_count(corral_state_kv(h.st)), 0);
    h_free(&h);
}

static void test_bad_commands(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    add_member(&h, "a");
    add_resource(&h, "r", 2, 1);
    unchanged_buf(&h, NULL, BAD);
    unchanged_buf(&h, corral_rbuf_new(NULL, 0), BAD);
    unchanged_buf(&h, corral_rbuf_new("\x03garbage", 8), BAD);
    unchanged_buf(&h, corral_rbuf_new("\x02\x01\x00", 3), BAD);
    /* A good frame with one bit flipped. */
    struct corral_state_cmd c = simple_member("b");
    struct corral_rbuf *b = enc(&c);
    b->data[8] ^= 4;
    unchanged_buf(&h, b, BAD);
    /* A KV frame whose body is not a store command. */
    unchanged_buf(&h, frame(CORRAL_STATE_KV, "\x01\x01junk", 6), BAD);
    /* res may be NULL. */
    assert_int_equal(corral_state_apply(h.st, ++h.index, NULL, NULL), 0);
    c = simple_member("b");
    b = enc(&c);
    assert_int_equal(corral_state_apply(h.st, ++h.index, b, NULL), 0);
    corral_rbuf_unref(b);
    assert_non_null(corral_state_member_by_name(h.st, "b", 1));
    h_free(&h);
}

static void test_index_monotonic(void **state)
{
    (void)state;
    struct corral_state *st = corral_state_new();
    assert_int_equal(corral_state_applied(st), 0);
    struct corral_state_cmd c = simple_member("a");
    struct corral_rbuf *b = enc(&c);
    struct corral_state_result r;
    memset(&r, 0x77, sizeof(r));
    assert_int_equal(corral_state_apply(st, 0, b, &r), CORRAL_EINVAL);
    assert_int_equal(r.status, 0x77);
    assert_int_equal(corral_state_member_count(st), 0);
    assert_int_equal(corral_state_apply(st, 5, b, &r), 0);
    assert_int_equal(corral_state_apply(st, 5, b, &r), CORRAL_EINVAL);
    assert_int_equal(corral_state_apply(st, 4, b, &r), CORRAL_EINVAL);
    assert_int_equal(corral_state_skip(st, 5), CORRAL_EINVAL);
    assert_int_equal(corral_state_skip(st, 3), CORRAL_EINVAL);
    assert_int_equal(corral_state_applied(st), 5);
    assert_int_equal(corral_state_skip(st, 9), 0);
    assert_int_equal(corral_state_applied(st), 9);
    assert_int_equal(corral_kv_applied(corral_state_kv(st)), 9);
    assert_int_equal(corral_state_apply(st, 9, b, &r), CORRAL_EINVAL);
    assert_int_equal(corral_state_apply(st, 10, b, &r), 0);
    assert_int_equal(corral_state_member_by_id(st, 1)->joined_index, 5);
    corral_rbuf_unref(b);
    assert_true(corral_state_check(st));
    corral_state_free(st);
}

/* ---- Snapshots ---- */

/* A small state with a bit of everything, built by commands. */
static void build_sample(struct h *h)
{
    uint32_t a = add_member(h, "a"), b = add_member(h, "b"), c = add_member(h, "c");
    apply(h, member_cmd("z", CORRAL_MEMBER_COORDINATOR, "[fe80::1]:7001", "", 1000, ""));
    uint32_t gone = add_member(h, "gone");
    apply(h, id_cmd(CORRAL_STATE_MEMBER_DELETE, gone));
    set_status(h, c, DRAINING);
    uint32_t r1 = add_resource(h, "orders", 3, 2);
    uint32_t r2 = add_resource(h, "events", 2, 3);
    make_primary(h, r1, 0, a);
    op_ok(h, r1, 0, CORRAL_OP_ADD_COPYING, b, epoch_of(h, r1, 0));
    op_ok(h, r1, 2, CORRAL_OP_ADD_IN_SYNC, b, 0);
    make_primary(h, r2, 1, b);
    op_ok(h, r2, 1, CORRAL_OP_RELEASE, b, epoch_of(h, r2, 1));
    apply(h, kv_cmd(CORRAL_KV_PUT, "config/x", "1", false, 0));
    apply(h, kv_cmd(CORRAL_KV_PUT, "config/y", "", false, 0));
    assert_int_equal(apply(h, coord_cmd(1, "c1", "127.0.0.1:8139", "127.0.0.1:8140")).status, OK);
    assert_int_equal(apply(h, coord_cmd(4, "c4", "[::1]:9", "[::1]:10")).status, OK);
    assert_int_equal(apply(h, coord_cmd(6, "c6", "h:1", "h:2")).status, OK);
    assert_int_equal(apply(h, id_cmd(CORRAL_STATE_COORD_DELETE, 4)).status, OK);
}

/* The roster: ids given by the proposer, never reused; a known name
 * moves address under its own id only. */
static void test_coords(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    assert_int_equal(corral_state_next_coord_id(h.st), 1);
    struct corral_state_result r = apply(&h, coord_cmd(1, "a", "127.0.0.1:1", "127.0.0.1:2"));
    assert_int_equal(r.status, OK);
    assert_int_equal(r.id, 1);
    assert_int_equal(apply(&h, coord_cmd(3, "b", "127.0.0.1:3", "127.0.0.1:4")).status, OK);
    assert_int_equal(corral_state_next_coord_id(h.st), 4);
    assert_int_equal(corral_state_coords_index(h.st), 2);
    /* Refused, changing nothing: a known name with another id, a known id
     * under another name, an id below next (2 was never used, still no). */
    unchanged(&h, coord_cmd(2, "a", "127.0.0.1:1", "127.0.0.1:2"), CONFLICT);
    unchanged(&h, coord_cmd(3, "c", "127.0.0.1:5", "127.0.0.1:6"), CONFLICT);
    unchanged(&h, coord_cmd(2, "c", "127.0.0.1:5", "127.0.0.1:6"), CONFLICT);
    unchanged(&h, id_cmd(CORRAL_STATE_COORD_DELETE, 2), NOT_FOUND);
    /* The same put again: OK, no index moves. */
    uint64_t before = corral_state_coords_index(h.st);
    assert_int_equal(apply(&h, coord_cmd(1, "a", "127.0.0.1:1", "127.0.0.1:2")).status, OK);
    assert_int_equal(corral_state_coords_index(h.st), before);
    /* A new address under the same id. */
    r = apply(&h, coord_cmd(1, "a", "10.0.0.9:1", "10.0.0.9:2"));
    assert_int_equal(r.status, OK);
    const struct corral_state_coord *k = corral_state_coord_by_name(h.st, "a", 1);
    assert_non_null(k);
    assert_string_equal(k->cluster_addr, "10.0.0.9:1");
    assert_string_equal(k->http_addr, "10.0.0.9:2");
    assert_int_equal(k->added_index, 1);
    assert_int_equal(k->changed_index, h.index);
    assert_int_equal(corral_state_coords_index(h.st), h.index);
    /* Delete: the name is free again, the id is not. */
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_COORD_DELETE, 1)).status, OK);
    assert_null(corral_state_coord_by_id(h.st, 1));
    assert_int_equal(corral_state_coord_count(h.st), 1);
    unchanged(&h, coord_cmd(1, "a", "127.0.0.1:1", "127.0.0.1:2"), CONFLICT);
    assert_int_equal(apply(&h, coord_cmd(4, "a", "127.0.0.1:1", "127.0.0.1:2")).status, OK);
    assert_int_equal(corral_state_coord_at(h.st, 0)->id, 3);
    assert_int_equal(corral_state_coord_at(h.st, 1)->id, 4);
    /* Full at COORDS_MAX. */
    for (uint32_t i = 2; i < CORRAL_STATE_COORDS_MAX; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%u", i);
        assert_int_equal(apply(&h, coord_cmd(10 + i, name, "h:1", "h:2")).status, OK);
    }
    assert_int_equal(corral_state_coord_count(h.st), CORRAL_STATE_COORDS_MAX);
    unchanged(&h, coord_cmd(100, "z", "h:1", "h:2"), FULL);
    /* Bad fields do not encode, and hand-made frames with them do not
     * decode. */
    struct corral_state_cmd bad = coord_cmd(0, "z", "h:1", "h:2");
    assert_null(corral_state_cmd_encode(&bad));
    bad = coord_cmd(5, "Z", "h:1", "h:2");
    assert_null(corral_state_cmd_encode(&bad));
    bad = coord_cmd(5, "z", "h 1", "h:2");
    assert_null(corral_state_cmd_encode(&bad));
    bad = coord_cmd(5, "z", "h:1", "h\t2");
    assert_null(corral_state_cmd_encode(&bad));
    bad = coord_cmd(5, "z", "", "h:2");
    assert_null(corral_state_cmd_encode(&bad));
    /* An HTTP address not known yet is empty. */
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_COORD_DELETE, 4)).status, OK);
    assert_int_equal(apply(&h, coord_cmd(200, "e", "h:1", "")).status, OK);
    assert_string_equal(corral_state_coord_by_id(h.st, 200)->http_addr, "");
    bad = id_cmd(CORRAL_STATE_COORD_DELETE, 0);
    assert_null(corral_state_cmd_encode(&bad));
    h_free(&h);
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    build_sample(&h);
    struct corral_rbuf *s1 = snap(h.st);
    assert_int_equal(s1->data[0], 3);
    struct corral_state *st = corral_state_new();
    assert_int_equal(corral_state_restore(st, s1), 0);
    assert_true(corral_state_check(st));
    struct corral_rbuf *s2 = snap(st);
    assert_true(rbuf_equal(s1, s2));
    /* Everything readable came back. */
    assert_int_equal(corral_state_applied(st), h.index);
    assert_int_equal(corral_state_assign_index(st), corral_state_assign_index(h.st));
    assert_int_equal(corral_state_last_epoch(st), 2);
    assert_int_equal(corral_state_member_count(st), 4);
    assert_int_equal(corral_state_member_by_name(st, "z", 1)->weight, 1000);
    assert_int_equal(corral_state_member_by_name(st, "c", 1)->status, DRAINING);
    assert_true(corral_state_resource_by_name(st, "events", 6)->parts[1].releasing);
    assert_int_equal(corral_state_partitions_total(st), 5);
    assert_int_equal(corral_kv_count(corral_state_kv(st)), 2);
    /* Ids carry on where they were: the deleted member's id is not reused. */
    struct h h2 = {st, h.index};
    assert_int_equal(add_member(&h2, "new"), 6);
    assert_int_equal(add_resource(&h2, "new", 1, 1), 3);
    /* Replica counts were rebuilt: a member holding replicas cannot go. */
    unchanged(&h2, id_cmd(CORRAL_STATE_MEMBER_DELETE, 2), CONFLICT);
    assert_int_equal(apply(&h2, id_cmd(CORRAL_STATE_MEMBER_DELETE, 3)).status, OK);
    /* Restore over a state that holds things replaces them all. */
    assert_int_equal(corral_state_restore(st, s1), 0);
    struct corral_rbuf *s3 = snap(st);
    assert_true(rbuf_equal(s1, s3));
    corral_rbuf_unref(s3);
    /* An empty state round-trips too. */
    struct corral_state *empty = corral_state_new();
    struct corral_rbuf *e = snap(empty);
    assert_int_equal(corral_state_restore(st, e), 0);
    assert_int_equal(corral_state_member_count(st), 0);
    assert_int_equal(corral_state_applied(st), 0);
    corral_rbuf_unref(e);
    corral_state_free(empty);
    corral_rbuf_unref(s1);
    corral_rbuf_unref(s2);
    corral_state_free(st);
    h_free(&h);
}

/* Same commands, same bytes; and a restored state carries on identically. */
static void test_snapshot_deterministic(void **state)
{
    (void)state;
    struct h x, y;
    h_init(&x);
    h_init(&y);
    build_sample(&x);
    build_sample(&y);
    struct corral_rbuf *a = snap(x.st), *b = snap(y.st);
    assert_true(rbuf_equal(a, b));
    struct corral_state *z = corral_state_new();
    assert_int_equal(corral_state_restore(z, a), 0);
    struct h hz = {z, x.index};
    /* The same next commands on the original and the restored copy. */
    uint32_t m = add_member(&x, "later");
    assert_int_equal(add_member(&hz, "later"), m);
    op_ok(&x, 1, 1, CORRAL_OP_ADD_IN_SYNC, m, 0);
    op_ok(&hz, 1, 1, CORRAL_OP_ADD_IN_SYNC, m, 0);
    op_ok(&x, 1, 1, CORRAL_OP_GRANT, m, 0);
    op_ok(&hz, 1, 1, CORRAL_OP_GRANT, m, 0);
    corral_rbuf_unref(a);
    corral_rbuf_unref(b);
    a = snap(x.st);
    b = snap(z);
    assert_true(rbuf_equal(a, b));
    /* And a different history gives different bytes. */
    add_member(&y, "other");
    corral_rbuf_unref(b);
    b = snap(y.st);
    assert_false(rbuf_equal(a, b));
    corral_rbuf_unref(a);
    corral_rbuf_unref(b);
    corral_state_free(z);
    h_free(&x);
    h_free(&y);
}

static void expect_restore_fails(struct corral_state *st, const struct corral_rbuf *b, int want)
{
    struct corral_rbuf *before = snap(st);
    assert_int_equal(corral_state_restore(st, b), want);
    struct corral_rbuf *after = snap(st);
    assert_true(rbuf_equal(before, after));
    corral_rbuf_unref(before);
    corral_rbuf_unref(after);
}

/* Every bit flip and every truncation of a small snapshot is refused, and
 * the state stays as it was. */
static void test_snapshot_corrupt(void **state)
{
    (void)state;
    struct h h, mine;
    h_init(&h);
    h_init(&mine);
    build_sample(&h);
    add_member(&mine, "mine");
    struct corral_rbuf *s = snap(h.st);
    struct corral_rbuf *m = corral_rbuf_new(s->data, s->len);
    for (uint32_t bit = 0; bit < 8 * s->len; bit++) {
        m->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rv = corral_state_restore(mine.st, m);
        /* A flip to another known version fails its CRC. */
        uint8_t v = m->data[0];
        assert_int_equal(rv, bit < 8 && v != 1 && v != 2 ? CORRAL_EVERSION : CORRAL_ECORRUPT);
        m->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    print_message("snapshot corruption: %u bit flips refused\n", 8 * s->len);
    for (uint32_t len = 0; len < s->len; len++) {
        struct corral_rbuf *t = corral_rbuf_new(s->data, len);
        expect_restore_fails(mine.st, t, CORRAL_ECORRUPT);
        corral_rbuf_unref(t);
    }
    struct corral_rbuf *longer = corral_rbuf_new(NULL, s->len + 1);
    memcpy(longer->data, s->data, s->len);
    longer->data[s->len] = 0;
    expect_restore_fails(mine.st, longer, CORRAL_ECORRUPT);
    corral_rbuf_unref(longer);
    expect_restore_fails(mine.st, NULL, CORRAL_ECORRUPT);
    assert_non_null(corral_state_member_by_name(mine.st, "mine", 4));
    assert_true(corral_state_check(mine.st));
    corral_rbuf_unref(m);
    corral_rbuf_unref(s);
    h_free(&h);
    h_free(&mine);
}

/* Seeded mutations with the CRC fixed up, so they reach the structure
 * checks: each is refused with the state left as it was, or restores a
 * valid state that re-snapshots to exactly the mutated bytes. */
static void test_snapshot_mutations(void **state)
{
    (void)state;
    struct h h, mine;
    h_init(&h);
    h_init(&mine);
    build_sample(&h);
    add_member(&mine, "mine");
    struct corral_rbuf *s = snap(h.st), *before = snap(mine.st);
    uint64_t rng = 0x57a7eull;
    long accepted = 0, runs = 30000;
    for (long it = 0; it < runs; it++) {
        struct corral_rbuf *m = corral_rbuf_new(s->data, s->len);
        uint32_t body = m->len - 4;
        for (uint64_t k = 1 + rng_next(&rng) % 3; k > 0; k--) {
            uint32_t at = 1 + (uint32_t)(rng_next(&rng) % (body - 1));
            if (rng_next(&rng) % 2)
                m->data[at] ^= (uint8_t)(1u << (rng_next(&rng) % 8));
            else
                m->data[at] = (uint8_t)(rng_next(&rng) % 8); /* small values: plausible fields */
        }
        uint32_t crc = corral_crc32c(0, m->data, body);
        for (int i = 0; i < 4; i++)
            m->data[body + (uint32_t)i] = (uint8_t)(crc >> (8 * i));
        int rv = corral_state_restore(mine.st, m);
        struct corral_rbuf *after = snap(mine.st);
        if (rv == 0) {
            assert_true(corral_state_check(mine.st));
            assert_true(rbuf_equal(after, m));
            assert_int_equal(corral_state_restore(mine.st, before), 0);
            accepted++;
        } else {
            assert_int_equal(rv, CORRAL_ECORRUPT);
            assert_true(rbuf_equal(after, before));
        }
        corral_rbuf_unref(after);
        corral_rbuf_unref(m);
    }
    print_message("snapshot mutations: %ld of %ld accepted\n", accepted, runs);
    assert_true(accepted > 0);
    corral_rbuf_unref(s);
    corral_rbuf_unref(before);
    h_free(&h);
    h_free(&mine);
}

/* A config store snapshot from before the state machine loads as a state
 * with no members or resources. */
static void test_snapshot_legacy(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    struct corral_kv_cmd kc = {CORRAL_KV_PUT,        false, 0, (const uint8_t *)"k", 1,
                               (const uint8_t *)"v", 1};
    struct corral_rbuf *b = corral_kv_cmd_encode(&kc);
    assert_int_equal(corral_kv_apply(kv, 3, b, NULL), 0);
    assert_int_equal(corral_kv_skip(kv, 8), 0);
    corral_rbuf_unref(b);
    struct corral_rbuf *ks = corral_kv_snapshot(kv);
    struct h h;
    h_init(&h);
    build_sample(&h);
    assert_int_equal(corral_state_restore(h.st, ks), 0);
    h.index = 8;
    assert_true(corral_state_check(h.st));
    assert_int_equal(corral_state_applied(h.st), 8);
    assert_int_equal(corral_state_member_count(h.st), 0);
    assert_int_equal(corral_state_resource_count(h.st), 0);
    assert_int_equal(corral_state_partitions_total(h.st), 0);
    assert_int_equal(corral_state_last_epoch(h.st), 0);
    assert_int_equal(corral_state_assign_index(h.st), 0);
    expect_kv(&h, "k", "v", 3);
    /* It carries on: ids start at 1, the store at the next index. */
    assert_int_equal(add_member(&h, "a"), 1);
    assert_int_equal(add_resource(&h, "r", 1, 1), 1);
    struct corral_state_result r = apply(&h, kv_cmd(CORRAL_KV_PUT, "k", "w", true, 3));
    assert_int_equal(r.kv.status, CORRAL_KV_OK);
    /* A corrupt store snapshot is refused, with the state unchanged. */
    ks->data[5] ^= 1;
    expect_restore_fails(h.st, ks, CORRAL_ECORRUPT);
    corral_rbuf_unref(ks);
    corral_kv_free(kv);
    h_free(&h);
}

/* Snapshots written by the test from a description, to hold what the
 * state never would. Partitions past the three described are empty. */
struct tmember {
    uint32_t id;
    uint8_t role, status;
    uint16_t weight;
    uint64_t joined, changed;
    const char *name, *addr, *zone;
    uint16_t meta_len;
};

struct tpart {
    uint64_t epoch;
    uint32_t primary;
    uint8_t releasing, n;
    uint32_t member[CORRAL_STATE_ROW_MAX + 1];
    uint8_t state[CORRAL_STATE_ROW_MAX + 1];
};

struct tres {
    uint32_t id, partitions;
    uint8_t replicas;
    uint64_t created, changed;
    const char *name;
    struct tpart parts[3];
};

struct tcoord {
    uint32_t id;
    uint64_t added, changed;
    const char *name, *cluster, *http;
};

struct tsnap {
    uint64_t applied, assign, last_epoch;
    uint32_t next_member, next_resource;
    uint32_t n_members, n_members_given;
    struct tmember m[CORRAL_STATE_ROW_MAX + 1];
    uint32_t n_res, n_res_given;
    struct tres r[5];
    uint64_t kv_applied;
    int kv_flip;       /* flip a byte of the store's snapshot (the outer CRC fixed up) */
    int kv_len_delta;  /* added to the store's length field */
    const char *extra; /* bytes after the store */
    uint32_t version;  /* 0: 3 */
    uint32_t next_coord;
    uint64_t coords_index;
    uint32_t n_coords, n_coords_given;
    struct tcoord k[3];
};

static void ts_member(struct sbuf *s, const struct tmember *m)
{
    sb_le(s, m->id, 4);
    sb_le(s, m->role, 1);
    sb_le(s, m->status, 1);
    sb_le(s, m->weight, 2);
    sb_le(s, m->joined, 8);
    sb_le(s, m->changed, 8);
    sb_str(s, m->name);
    sb_str(s, m->addr);
    sb_str(s, m->zone);
    sb_le(s, m->meta_len, 2);
    for (uint16_t i = 0; i < m->meta_len; i++)
        sb_le(s, 'x', 1);
}

static void ts_resource(struct sbuf *s, const struct tres *r)
{
    sb_le(s, r->id, 4);
    sb_le(s, r->partitions, 4);
    sb_le(s, r->replicas, 1);
    sb_le(s, r->created, 8);
    sb_le(s, r->changed, 8);
    sb_str(s, r->name);
    for (uint32_t p = 0; p < r->partitions; p++) {
        static const struct tpart empty = {0};
        const struct tpart *tp = p < 3 ? &r->parts[p] : &empty;
        sb_le(s, tp->epoch, 8);
        sb_le(s, tp->primary, 4);
        sb_le(s, tp->releasing, 1);
        sb_le(s, tp->n, 1);
        for (uint8_t i = 0; i < tp->n && i < CORRAL_STATE_ROW_MAX + 1; i++) {
            sb_le(s, tp->member[i], 4);
            sb_le(s, tp->state[i], 1);
        }
    }
}

static struct corral_rbuf *ts_build(const struct tsnap *t)
{
    struct corral_kv *kv = corral_kv_new();
    if (t->kv_applied > 0)
        assert_int_equal(corral_kv_skip(kv, t->kv_applied), 0);
    struct corral_rbuf *ks = corral_kv_snapshot(kv);
    corral_kv_free(kv);
    if (t->kv_flip)
        ks->data[3] ^= 0x10;
    struct sbuf s = {0};
    sb_le(&s, t->version ? t->version : 3, 1);
    sb_le(&s, t->applied, 8);
    sb_le(&s, t->assign, 8);
    sb_le(&s, t->last_epoch, 8);
    sb_le(&s, t->next_member, 4);
    sb_le(&s, t->next_resource, 4);
    sb_le(&s, t->n_members, 4);
    for (uint32_t i = 0; i < t->n_members_given; i++)
        ts_member(&s, &t->m[i]);
    sb_le(&s, t->n_res, 4);
    for (uint32_t i = 0; i < t->n_res_given; i++)
        ts_resource(&s, &t->r[i]);
    if (t->version != 2) {
        sb_le(&s, t->next_coord, 4);
        sb_le(&s, t->coords_index, 8);
        sb_le(&s, t->n_coords, 4);
        for (uint32_t i = 0; i < t->n_coords_given; i++) {
            sb_le(&s, t->k[i].id, 4);
            sb_le(&s, t->k[i].added, 8);
            sb_le(&s, t->k[i].changed, 8);
            sb_str(&s, t->k[i].name);
            sb_str(&s, t->k[i].cluster);
            sb_str(&s, t->k[i].http);
        }
    }
    sb_le(&s, (uint32_t)((int)ks->len + t->kv_len_delta), 4);
    sb_bytes(&s, ks->data, ks->len);
    sb_bytes(&s, t->extra, strlen(t->extra));
    corral_rbuf_unref(ks);
    return sb_finish(&s);
}

/* Valid: members 1, 2 and 4 (3 was deleted); resources 1 and 3; epochs 3
 * and 5 granted; a release under way on resource 3. */
static struct tsnap ts_base(void)
{
    struct tsnap t = {20, 18, 5, 5,  4, 3, 3, {{0}}, 2, 2,    {{0}},
                      20, 0,  0, "", 0, 0, 0, 0,     0, {{0}}};
    t.m[0] = (struct tmember){1, 2, ACTIVE, 10, 1, 2, "a", "h:1", "z1", 3};
    t.m[1] = (struct tmember){2, 1, DRAINING, 10, 2, 9, "b", "h:2", "", 0};
    t.m[2] = (struct tmember){4, 2, DEAD, 1000, 7, 18, "d", "[::1]:3", "z-2", 0};
    t.r[0] = (struct tres){1, 2, 2, 3, 15, "q", {{0}}};
    t.r[0].parts[0] = (struct tpart){3, 1, 0, 2, {1, 2}, {IN_SYNC, COPYING}};
    t.r[1] = (struct tres){3, 1, 3, 11, 18, "s", {{0}}};
    t.r[1].parts[0] = (struct tpart){5, 2, 1, 2, {2, 4}, {IN_SYNC, COPYING}};
    t.next_coord = 4;
    t.coords_index = 12;
    t.n_coords = t.n_coords_given = 2;
    t.k[0] = (struct tcoord){1, 1, 1, "c1", "127.0.0.1:1", "127.0.0.1:2"};
    t.k[1] = (struct tcoord){3, 8, 12, "c3", "[::1]:1", ""};
    return t;
}

/* A version-2 snapshot (before the roster) restores with an empty one,
 * and the state then writes version 3. */
static void test_snapshot_v2(void **state)
{
    (void)state;
    struct tsnap t = ts_base();
    t.version = 2;
    struct corral_rbuf *b = ts_build(&t);
    struct corral_state *st = corral_state_new();
    assert_int_equal(corral_state_restore(st, b), 0);
    assert_true(corral_state_check(st));
    assert_int_equal(corral_state_coord_count(st), 0);
    assert_int_equal(corral_state_next_coord_id(st), 1);
    assert_int_equal(corral_state_member_count(st), 3);
    struct corral_rbuf *again = snap(st);
    assert_int_equal(again->data[0], 3);
    corral_rbuf_unref(again);
    corral_rbuf_unref(b);
    corral_state_free(st);
}

struct hostile {
    const char *what;
    void (*mutate)(struct tsnap *t);
};

#define HOSTILE(name, ...)                                                                         \
    static void mut_##name(struct tsnap *t)                                                        \
    {                                                                                              \
        __VA_ARGS__;                                                                               \
    }
HOSTILE(member_id_zero, t->m[0].id = 0)
HOSTILE(member_ids_unordered, t->m[1].id = 5; t->next_member = 6)
HOSTILE(member_ids_equal, t->m[1].id = 1)
HOSTILE(member_id_next, t->next_member = 4)
HOSTILE(member_name_twice, t->m[2].name = "a")
HOSTILE(member_name_bad, t->m[1].name = "B")
HOSTILE(member_name_empty, t->m[1].name = "")
HOSTILE(member_name_long, t->m[1].name = name_long)
HOSTILE(member_addr_empty, t->m[1].addr = "")
HOSTILE(member_addr_space, t->m[1].addr = "h 1")
HOSTILE(member_zone_bad, t->m[1].zone = "Z")
HOSTILE(member_role, t->m[1].role = 3)
HOSTILE(member_status_zero, t->m[1].status = 0)
HOSTILE(member_status_five, t->m[1].status = 5)
HOSTILE(member_weight_zero, t->m[1].weight = 0)
HOSTILE(member_weight_over, t->m[1].weight = 1001)
HOSTILE(member_meta_over, t->m[1].meta_len = 1025)
HOSTILE(member_joined_zero, t->m[0].joined = 0)
HOSTILE(member_joined_after_changed, t->m[0].joined = 3)
HOSTILE(member_changed_after_assign, t->m[0].changed = 19)
HOSTILE(member_left_holding, t->m[2].status = LEFT)
HOSTILE(members_count_long, t->n_members = 4)
HOSTILE(members_count_short, t->n_members = 2)
HOSTILE(members_count_huge, t->n_members = CORRAL_STATE_MEMBERS_MAX + 1)
HOSTILE(assign_after_applied, t->assign = 21)
HOSTILE(next_member_zero, t->n_members = 0; t->n_members_given = 0; t->n_res = 0;
        t->n_res_given = 0; t->next_member = 0)
HOSTILE(next_resource_zero, t->n_res = 0; t->n_res_given = 0; t->next_resource = 0)
HOSTILE(resource_id_zero, t->r[0].id = 0)
HOSTILE(resource_ids_unordered, t->r[0].id = 3; t->r[1].id = 1)
HOSTILE(resource_id_next, t->next_resource = 3)
HOSTILE(resource_name_twice, t->r[1].name = "q")
HOSTILE(resource_name_bad, t->r[1].name = "s!")
HOSTILE(resource_p_zero, t->r[1].partitions = 0)
HOSTILE(resource_p_over, t->r[1].partitions = CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX + 1)
HOSTILE(resource_r_zero, t->r[1].replicas = 0)
HOSTILE(resource_r_over, t->r[1].replicas = 8)
HOSTILE(resource_created_zero, t->r[1].created = 0)
HOSTILE(resource_created_after_changed, t->r[1].created = 19)
HOSTILE(resource_changed_after_assign, t->r[1].changed = 19)
HOSTILE(resources_count_long, t->n_res = 3)
HOSTILE(resources_count_huge, t->n_res = CORRAL_STATE_RESOURCES_MAX + 1)
HOSTILE(epoch_over_last, t->r[1].parts[0].epoch = 6)
HOSTILE(epoch_twice, t->r[0].parts[0].epoch = 5)
HOSTILE(epoch_twice_unprimaried, t->r[0].parts[1].epoch = 3)
HOSTILE(primary_epoch_zero, t->r[0].parts[0].epoch = 0)
HOSTILE(primary_not_replica, t->r[0].parts[0].primary = 4)
HOSTILE(primary_copying, t->r[0].parts[0].primary = 2)
HOSTILE(primary_unknown, t->r[0].parts[0].primary = 3)
HOSTILE(releasing_no_primary, t->r[0].parts[1].releasing = 1)
HOSTILE(releasing_two, t->r[1].parts[0].releasing = 2)
HOSTILE(
    replicas_over_max, t->r[0].parts[1].n = CORRAL_STATE_ROW_MAX + 1;
    for (uint32_t i = 0; i < CORRAL_STATE_ROW_MAX + 1; i++) {
        t->r[0].parts[1].member[i] = 1;
        t->r[0].parts[1].state[i] = COPYING;
    })
HOSTILE(replica_unknown, t->r[0].parts[0].member[1] = 3)
HOSTILE(replica_zero, t->r[0].parts[0].member[1] = 0)
HOSTILE(replica_twice, t->r[0].parts[0].member[1] = 1)
HOSTILE(replica_state_zero, t->r[0].parts[0].state[1] = 0)
HOSTILE(replica_state_three, t->r[0].parts[0].state[1] = 3)
HOSTILE(
    partitions_total_over, t->n_res = 5; t->n_res_given = 5; t->next_resource = 9;
    for (uint32_t i = 0; i < 5; i++) {
        t->r[i] = (struct tres){
            (uint32_t)(4 + i), CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX, 1, 1, 1, NULL, {{0}}};
    } t->r[0]
        .name = "p0";
    t->r[1].name = "p1"; t->r[2].name = "p2"; t->r[3].name = "p3"; t->r[4].name = "p4")
HOSTILE(kv_applied_differs, t->kv_applied = 19)
HOSTILE(kv_corrupt, t->kv_flip = 1)
HOSTILE(kv_len_long, t->kv_len_delta = 1)
HOSTILE(kv_len_short, t->kv_len_delta = -1)
HOSTILE(trailing, t->extra = "x")
HOSTILE(coord_id_zero, t->k[0].id = 0)
HOSTILE(coord_ids_unordered, t->k[1].id = 1)
HOSTILE(coord_id_next, t->next_coord = 3)
HOSTILE(coord_name_twice, t->k[1].name = "c1")
HOSTILE(coord_name_bad, t->k[1].name = "C3")
HOSTILE(coord_addr_space, t->k[1].cluster = "h 1")
HOSTILE(coord_http_space, t->k[0].http = "h 2")
HOSTILE(coord_added_zero, t->k[0].added = 0)
HOSTILE(coord_added_after_changed, t->k[1].added = 13; t->k[1].changed = 12)
HOSTILE(coord_changed_after_index, t->coords_index = 11)
HOSTILE(coords_index_after_applied, t->coords_index = 21; t->k[1].changed = 21)
HOSTILE(coords_count_long, t->n_coords = 3)
HOSTILE(coords_count_huge, t->n_coords = 17)
HOSTILE(coords_count_short, t->n_coords = 1)

static void test_snapshot_hostile(void **state)
{
    (void)state;
    const struct hostile cases[] = {
#define C(name) {#name, mut_##name}
        C(member_id_zero),
        C(member_ids_unordered),
        C(member_ids_equal),
        C(member_id_next),
        C(member_name_twice),
        C(member_name_bad),
        C(member_name_empty),
        C(member_name_long),
        C(member_addr_empty),
        C(member_addr_space),
        C(member_zone_bad),
        C(member_role),
        C(member_status_zero),
        C(member_status_five),
        C(member_weight_zero),
        C(member_weight_over),
        C(member_meta_over),
        C(member_joined_zero),
        C(member_joined_after_changed),
        C(member_changed_after_assign),
        C(member_left_holding),
        C(members_count_long),
        C(members_count_short),
        C(members_count_huge),
        C(assign_after_applied),
        C(next_member_zero),
        C(next_resource_zero),
        C(resource_id_zero),
        C(resource_ids_unordered),
        C(resource_id_next),
        C(resource_name_twice),
        C(resource_name_bad),
        C(resource_p_zero),
        C(resource_p_over),
        C(resource_r_zero),
        C(resource_r_over),
        C(resource_created_zero),
        C(resource_created_after_changed),
        C(resource_changed_after_assign),
        C(resources_count_long),
        C(resources_count_huge),
        C(epoch_over_last),
        C(epoch_twice),
        C(epoch_twice_unprimaried),
        C(primary_epoch_zero),
        C(primary_not_replica),
        C(primary_copying),
        C(primary_unknown),
        C(releasing_no_primary),
        C(releasing_two),
        C(replicas_over_max),
        C(replica_unknown),
        C(replica_zero),
        C(replica_twice),
        C(replica_state_zero),
        C(replica_state_three),
        C(partitions_total_over),
        C(kv_applied_differs),
        C(kv_corrupt),
        C(kv_len_long),
        C(kv_len_short),
        C(trailing),
        C(coord_id_zero),
        C(coord_ids_unordered),
        C(coord_id_next),
        C(coord_name_twice),
        C(coord_name_bad),
        C(coord_addr_space),
        C(coord_http_space),
        C(coord_added_zero),
        C(coord_added_after_changed),
        C(coord_changed_after_index),
        C(coords_index_after_applied),
        C(coords_count_long),
        C(coords_count_huge),
        C(coords_count_short),
#undef C
    };
    struct h mine;
    h_init(&mine);
    add_member(&mine, "mine");
    /* The base itself is valid and is exactly what the state writes. */
    struct tsnap base = ts_base();
    struct corral_rbuf *b = ts_build(&base);
    struct corral_state *ok = corral_state_new();
    assert_int_equal(corral_state_restore(ok, b), 0);
    assert_true(corral_state_check(ok));
    struct corral_rbuf *again = snap(ok);
    assert_true(rbuf_equal(b, again));
    assert_int_equal(corral_state_member_by_id(ok, 4)->meta_len, 0);
    assert_int_equal(corral_state_resource_by_id(ok, 3)->parts[0].primary, 2);
    corral_rbuf_unref(again);
    corral_rbuf_unref(b);
    /* Four resources of 65,536 partitions: exactly PARTITIONS_MAX loads. */
    struct tsnap full = ts_base();
    mut_partitions_total_over(&full);
    full.n_res = full.n_res_given = 4;
    b = ts_build(&full);
    assert_int_equal(corral_state_restore(ok, b), 0);
    assert_int_equal(corral_state_partitions_total(ok), CORRAL_STATE_PARTITIONS_MAX);
    corral_rbuf_unref(b);
    corral_state_free(ok);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tsnap t = ts_base();
        cases[i].mutate(&t);
        print_message("hostile snapshot: %s\n", cases[i].what);
        b = ts_build(&t);
        expect_restore_fails(mine.st, b, CORRAL_ECORRUPT);
        corral_rbuf_unref(b);
    }
    b = ts_build(&base);
    b->data[0] = 4;
    expect_restore_fails(mine.st, b, CORRAL_EVERSION);
    corral_rbuf_unref(b);
    assert_non_null(corral_state_member_by_name(mine.st, "mine", 4));
    h_free(&mine);
}

/* A row of n replicas at R on members 1..n (one in sync primary, the last
 * copying when n > R, the rest in sync), in a snapshot of nine members. */
static struct tsnap ts_row(uint8_t R, uint8_t n)
{
    static const char *const names[] = {"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"};
    struct tsnap t = {20, 20, 1, 10, 2, 9, 9, {{0}}, 1, 1,    {{0}},
                      20, 0,  0, "", 0, 1, 0, 0,     0, {{0}}};
    for (uint32_t i = 0; i < 9; i++)
        t.m[i] = (struct tmember){i + 1, 2, ACTIVE, 1, i + 1, i + 1, names[i], "h:1", "z1", 0};
    t.r[0] = (struct tres){1, 1, R, 11, 20, "q", {{0}}};
    struct tpart *tp = &t.r[0].parts[0];
    *tp = (struct tpart){1, 1, 0, n, {0}, {0}};
    for (uint8_t i = 0; i < n; i++) {
        tp->member[i] = i + 1u;
        tp->state[i] = i + 1 == n && n > R ? COPYING : IN_SYNC;
    }
    return t;
}

/* S2 in snapshots: R + 1 replicas (a move's copy) round-trip, from
 * commands and written by hand; R + 2 at R = REPLICAS_MAX is over
 * CORRAL_STATE_ROW_MAX and refused. Below REPLICAS_MAX a row over R + 1
 * still loads: R may be lowered under a partition's count (the state
 * makes such rows itself), so restore can bound rows by ROW_MAX only. */
static void test_snapshot_row_max(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t m[CORRAL_STATE_ROW_MAX + 1];
    for (uint32_t i = 0; i <= CORRAL_STATE_ROW_MAX; i++) {
        char name[8];
        snprintf(name, sizeof(name), "m%u", i);
        m[i] = add_member(&h, name);
    }
    /* R = 1: a granted partition copying to a second member, and a fresh
     * one with two copies; R = 7: seven in sync and an eighth copying. */
    uint32_t one = add_resource(&h, "one", 2, 1);
    op_ok(&h, one, 0, CORRAL_OP_ADD_IN_SYNC, m[0], 0);
    op_ok(&h, one, 0, CORRAL_OP_GRANT, m[0], 0);
    uint64_t e = epoch_of(&h, one, 0);
    op_ok(&h, one, 0, CORRAL_OP_ADD_COPYING, m[1], e);
    op_ok(&h, one, 1, CORRAL_OP_ADD_COPYING, m[2], 0);
    op_ok(&h, one, 1, CORRAL_OP_ADD_COPYING, m[3], 0);
    uint32_t seven = add_resource(&h, "seven", 1, CORRAL_STATE_REPLICAS_MAX);
    for (uint32_t i = 0; i < CORRAL_STATE_REPLICAS_MAX; i++)
        op_ok(&h, seven, 0, CORRAL_OP_ADD_IN_SYNC, m[i], 0);
    op_ok(&h, seven, 0, CORRAL_OP_GRANT, m[3], 0);
    op_ok(&h, seven, 0, CORRAL_OP_ADD_COPYING, m[7], epoch_of(&h, seven, 0));
    struct corral_rbuf *s1 = snap(h.st);
    struct corral_state *st = corral_state_new();
    assert_int_equal(corral_state_restore(st, s1), 0);
    assert_true(corral_state_check(st));
    struct corral_rbuf *s2 = snap(st);
    assert_true(rbuf_equal(s1, s2));
    corral_rbuf_unref(s2);
    struct h h2 = {st, h.index};
    const struct corral_state_partition *p = part(&h2, one, 0);
    assert_int_equal(p->n_replicas, 2);
    assert_int_equal(p->primary, m[0]);
    assert_int_equal(p->replicas[1].member, m[1]);
    assert_int_equal(p->replicas[1].state, COPYING);
    assert_int_equal(part(&h2, one, 1)->n_replicas, 2);
    p = part(&h2, seven, 0);
    assert_int_equal(p->n_replicas, CORRAL_STATE_ROW_MAX);
    assert_int_equal(p->primary, m[3]);
    assert_int_equal(p->replicas[7].member, m[7]);
    assert_int_equal(p->replicas[7].state, COPYING);
    /* The restored state goes on by the same rule: full rows take no copy,
     * a move completes, and the replica counts were rebuilt. */
    op_refused_for(&h2, one, 0, CORRAL_OP_ADD_COPYING, m[8], e, AT_R1);
    op_refused_for(&h2, seven, 0, CORRAL_OP_ADD_COPYING, m[8], epoch_of(&h2, seven, 0), AT_R1);
    unchanged(&h2, id_cmd(CORRAL_STATE_MEMBER_DELETE, m[7]), CONFLICT);
    op_ok(&h2, one, 0, CORRAL_OP_MARK_IN_SYNC, m[1], e);
    op_ok(&h2, one, 0, CORRAL_OP_RELEASE, m[0], e);
    op_ok(&h2, one, 0, CORRAL_OP_CLEAR, m[0], e);
    op_ok(&h2, one, 0, CORRAL_OP_GRANT, m[1], e);
    op_ok(&h2, one, 0, CORRAL_OP_DROP, m[0], epoch_of(&h2, one, 0));
    assert_int_equal(part(&h2, one, 0)->n_replicas, 1);
    corral_rbuf_unref(s1);
    corral_state_free(st);

    /* Written by hand: R + 1 = ROW_MAX loads and is what the state
     * writes; R + 2 is refused, the state left as it was. */
    struct tsnap t = ts_row(CORRAL_STATE_REPLICAS_MAX, CORRAL_STATE_ROW_MAX);
    struct corral_rbuf *b = ts_build(&t);
    struct corral_state *ok = corral_state_new();
    assert_int_equal(corral_state_restore(ok, b), 0);
    assert_true(corral_state_check(ok));
    struct corral_rbuf *again = snap(ok);
    assert_true(rbuf_equal(b, again));
    assert_int_equal(corral_state_resource_by_id(ok, 1)->parts[0].n_replicas, CORRAL_STATE_ROW_MAX);
    corral_rbuf_unref(again);
    corral_rbuf_unref(b);
    t = ts_row(CORRAL_STATE_REPLICAS_MAX, CORRAL_STATE_ROW_MAX + 1);
    b = ts_build(&t);
    expect_restore_fails(ok, b, CORRAL_ECORRUPT);
    expect_restore_fails(h.st, b, CORRAL_ECORRUPT);
    corral_rbuf_unref(b);
    /* R = 1 with one copy over: loads; with three replicas (R lowered
     * from 3 under a full row): loads too. */
    for (uint8_t n = 2; n <= 3; n++) {
        t = ts_row(1, n);
        b = ts_build(&t);
        assert_int_equal(corral_state_restore(ok, b), 0);
        assert_true(corral_state_check(ok));
        assert_int_equal(corral_state_resource_by_id(ok, 1)->parts[0].n_replicas, n);
        corral_rbuf_unref(b);
    }
    corral_state_free(ok);
    h_free(&h);
}

/* ---- Limits ---- */

/* Counters at their ends (only a crafted snapshot gets there): refused
 * FULL, never wrapped. */
static void test_exhausted(void **state)
{
    (void)state;
    struct tsnap t = ts_base();
    t.next_member = UINT32_MAX;
    t.next_resource = UINT32_MAX;
    t.last_epoch = UINT64_MAX;
    struct corral_rbuf *b = ts_build(&t);
    struct h h;
    h_init(&h);
    assert_int_equal(corral_state_restore(h.st, b), 0);
    corral_rbuf_unref(b);
    h.index = t.applied;
    unchanged(&h, simple_member("new"), FULL);
    unchanged(&h, resource_cmd("new", 1, 1), FULL);
    /* Known names still update. */
    assert_int_equal(apply(&h, simple_member("a")).id, 1);
    assert_int_equal(apply(&h, resource_cmd("q", 2, 3)).id, 1);
    op_ok(&h, 1, 1, CORRAL_OP_ADD_IN_SYNC, 1, 0);
    struct corral_partition_opv v[] = {OPV(0, CORRAL_OP_CLEAR, 1, 3),
                                       OPV(1, CORRAL_OP_GRANT, 1, 0)};
    struct corral_state_result r = unchanged(&h, ops_cmd(1, 2, v), FULL);
    assert_int_equal(r.op, 1);
    assert_int_equal(corral_state_last_epoch(h.st), UINT64_MAX);
    h_free(&h);
}

static void test_members_max(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    char name[16];
    /* Names in an order unrelated to the ids (2053 is odd: a bijection). */
    for (uint32_t i = 0; i < CORRAL_STATE_MEMBERS_MAX; i++) {
        snprintf(name, sizeof(name), "m%u", (i * 2053u) % CORRAL_STATE_MEMBERS_MAX);
        struct corral_state_cmd c = simple_member(name);
        struct corral_rbuf *b = enc(&c);
        struct corral_state_result r;
        assert_int_equal(corral_state_apply(h.st, ++h.index, b, &r), 0);
        assert_int_equal(r.status, OK);
        assert_int_equal(r.id, i + 1);
        corral_rbuf_unref(b);
    }
    assert_true(corral_state_check(h.st));
    assert_int_equal(corral_state_member_count(h.st), CORRAL_STATE_MEMBERS_MAX);
    unchanged(&h, simple_member("one-more"), FULL);
    /* Updates of existing members still work; a delete makes room. */
    snprintf(name, sizeof(name), "m%u", (7 * 2053u) % CORRAL_STATE_MEMBERS_MAX);
    assert_int_equal(apply(&h, member_cmd(name, 1, "h:2", "", 5, "")).id, 8);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_MEMBER_DELETE, 8)).status, OK);
    assert_int_equal(add_member(&h, "one-more"), CORRAL_STATE_MEMBERS_MAX + 1);
    for (uint32_t i = 0; i < CORRAL_STATE_MEMBERS_MAX; i++) {
        const struct corral_state_member *m = corral_state_member_at(h.st, i);
        assert_ptr_equal(corral_state_member_by_name(h.st, m->name, (uint32_t)strlen(m->name)), m);
        assert_ptr_equal(corral_state_member_by_id(h.st, m->id), m);
    }
    struct corral_rbuf *s = snap(h.st);
    struct corral_state *st = corral_state_new();
    assert_int_equal(corral_state_restore(st, s), 0);
    corral_rbuf_unref(s);
    corral_state_free(st);
    h_free(&h);
}

static void test_resources_and_partitions_max(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    const uint32_t P = CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX;
    add_resource(&h, "big0", P, 1);
    add_resource(&h, "big1", P, 1);
    add_resource(&h, "big2", P, 1);
    add_resource(&h, "big3", P - 2, 1);
    assert_int_equal(corral_state_partitions_total(h.st), CORRAL_STATE_PARTITIONS_MAX - 2);
    unchanged(&h, resource_cmd("more", 3, 1), FULL);
    add_resource(&h, "more", 2, 1);
    assert_int_equal(corral_state_partitions_total(h.st), CORRAL_STATE_PARTITIONS_MAX);
    unchanged(&h, resource_cmd("one", 1, 1), FULL);
    /* A delete gives its partitions back. */
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 2)).status, OK);
    assert_int_equal(corral_state_partitions_total(h.st), CORRAL_STATE_PARTITIONS_MAX - P);
    uint32_t id = add_resource(&h, "big1", P, 1);
    assert_int_equal(id, 6);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 1)).status, OK);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 3)).status, OK);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 4)).status, OK);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, id)).status, OK);
    assert_int_equal(apply(&h, id_cmd(CORRAL_STATE_RESOURCE_DELETE, 5)).status, OK);
    assert_int_equal(corral_state_partitions_total(h.st), 0);
    /* RESOURCES_MAX resources. */
    char name[16];
    for (uint32_t i = 0; i < CORRAL_STATE_RESOURCES_MAX; i++) {
        snprintf(name, sizeof(name), "r%u", CORRAL_STATE_RESOURCES_MAX - i);
        add_resource(&h, name, 1, 1);
    }
    unchanged(&h, resource_cmd("last", 1, 1), FULL);
    assert_int_equal(apply(&h, resource_cmd("r5", 1, 2)).status, OK); /* an update still works */
    h_free(&h);
}

/* OPS_MAX ops in one command apply; one more does not encode or decode. */
static void test_ops_max(void **state)
{
    (void)state;
    struct h h;
    h_init(&h);
    uint32_t a = add_member(&h, "a");
    uint32_t res = add_resource(&h, "r", CORRAL_STATE_OPS_MAX, 1);
    struct corral_partition_opv *v = calloc(CORRAL_STATE_OPS_MAX + 1, sizeof(*v));
    for (uint32_t i = 0; i <= CORRAL_STATE_OPS_MAX; i++)
        v[i] = OPV(i, CORRAL_OP_ADD_IN_SYNC, a, 0);
    struct corral_state_result r = apply(&h, ops_cmd(res, CORRAL_STATE_OPS_MAX, v));
    assert_int_equal(r.status, OK);
    for (uint32_t i = 0; i < CORRAL_STATE_OPS_MAX; i++)
        v[i] = OPV(i, CORRAL_OP_GRANT, a, 0);
    r = apply(&h, ops_cmd(res, CORRAL_STATE_OPS_MAX, v));
    assert_int_equal(r.status, OK);
    assert_int_equal(corral_state_last_epoch(h.st), CORRAL_STATE_OPS_MAX);
    assert_int_equal(epoch_of(&h, res, CORRAL_STATE_OPS_MAX - 1), CORRAL_STATE_OPS_MAX);
    struct corral_state_cmd c = ops_cmd(res, CORRAL_STATE_OPS_MAX + 1, v);
    assert_null(corral_state_cmd_encode(&c));
    unchanged_buf(&h, raw_ops(res, CORRAL_STATE_OPS_MAX + 1, CORRAL_STATE_OPS_MAX + 1, v), BAD);
    free(v);
    h_free(&h);
}

/* ---- Allocation failures ---- */

static void expect_enomem(struct h *h, struct corral_state_cmd c, int allocs)
{
    struct corral_rbuf *b = enc(&c), *before = snap(h->st);
    for (int n = 1; n <= allocs; n++) {
        struct corral_state_result r;
        memset(&r, 0x55, sizeof(r));
        corral_mem_fail_after((uint64_t)n);
        assert_int_equal(corral_state_apply(h->st, h->index + 1, b, &r), CORRAL_ENOMEM);
        corral_mem_fail_after(0);
        assert_int_equal(r.status, 0x55);
        assert_int_equal(corral_state_applied(h->st), h->index);
        struct corral_rbuf *after = snap(h->st);
        assert_true(rbuf_equal(before, after));
        corral_rbuf_unref(after);
    }
    corral_mem_fail_after((uint64_t)allocs + 1);
    struct corral_state_result r;
    assert_int_equal(corral_state_apply(h->st, ++h->index, b, &r), 0);
    corral_mem_fail_after(0);
    assert_int_not_equal(r.status, BAD);
    corral_rbuf_unref(b);
    corral_rbuf_unref(before);
}

static void test_enomem(void **state)
{
    (void)state;
    corral_mem_fail_after(1);
    assert_null(corral_state_new());
    corral_mem_fail_after(2);
    assert_null(corral_state_new()); /* the store inside */
    corral_mem_fail_after(0);
    struct h h;
    h_init(&h);
    build_sample(&h);
    /* The allocations each command needs: a member; a resource and its
     * map; the store's copy of the body and its node. */
    expect_enomem(&h, simple_member("fresh"), 1);
    expect_enomem(&h, resource_cmd("fresh", 4, 2), 2);
    expect_enomem(&h, kv_cmd(CORRAL_KV_PUT, "fresh", "v", false, 0), 2);
    /* Commands that allocate nothing do not fail. */
    struct corral_state_cmd sc = status_cmd(1, DRAINING);
    struct corral_rbuf *sb = enc(&sc);
    struct corral_state_result r;
    corral_mem_fail_after(1);
    assert_int_equal(corral_state_apply(h.st, ++h.index, sb, &r), 0);
    corral_mem_fail_after(0);
    assert_int_equal(r.status, OK);
    corral_rbuf_unref(sb);
    /* Snapshot: the store's bytes, then the state's. */
    for (uint64_t n = 1; n <= 2; n++) {
        corral_mem_fail_after(n);
        assert_null(corral_state_snapshot(h.st));
        corral_mem_fail_after(0);
    }
    struct corral_state_cmd c = simple_member("x");
    corral_mem_fail_after(1);
    assert_null(corral_state_cmd_encode(&c));
    c = kv_cmd(CORRAL_KV_PUT, "k", "v", false, 0);
    for (uint64_t n = 1; n <= 2; n++) {
        corral_mem_fail_after(n);
        assert_null(corral_state_cmd_encode(&c));
        corral_mem_fail_after(0);
    }
    /* A version-1 store snapshot: the fresh state, then the store's nodes. */
    struct corral_kv *kv = corral_kv_new();
    assert_int_equal(corral_kv_skip(kv, 2), 0);
    struct corral_rbuf *ks = corral_kv_snapshot(kv);
    corral_kv_free(kv);
    struct corral_rbuf *mid = snap(h.st);
    for (uint64_t n = 1; n <= 2; n++) {
        corral_mem_fail_after(n);
        assert_int_equal(corral_state_restore(h.st, ks), CORRAL_ENOMEM);
        corral_mem_fail_after(0);
        struct corral_rbuf *after = snap(h.st);
        assert_true(rbuf_equal(mid, after));
        corral_rbuf_unref(after);
    }
    corral_rbuf_unref(mid);
    corral_rbuf_unref(ks);
    /* Restore: fail each allocation in turn until it succeeds. */
    struct corral_rbuf *s = snap(h.st);
    struct h mine;
    h_init(&mine);
    add_member(&mine, "mine");
    struct corral_rbuf *before = snap(mine.st);
    int failures = 0;
    for (uint64_t n = 1;; n++) {
        corral_mem_fail_after(n);
        int rv = corral_state_restore(mine.st, s);
        corral_mem_fail_after(0);
        if (rv == 0)
            break;
        assert_int_equal(rv, CORRAL_ENOMEM);
        failures++;
        assert_true(corral_state_check(mine.st));
        struct corral_rbuf *after = snap(mine.st);
        assert_true(rbuf_equal(before, after));
        corral_rbuf_unref(after);
    }
    print_message("restore: %d allocation failures survived\n", failures);
    assert_true(failures > 10);
    struct corral_rbuf *again = snap(mine.st);
    assert_true(rbuf_equal(s, again));
    corral_rbuf_unref(again);
    corral_rbuf_unref(before);
    corral_rbuf_unref(s);
    h_free(&mine);
    h_free(&h);
}

/* ---- Randomized, against a simple model ---- */

#define M_NAMES 10
#define R_NAMES 6
#define MP_MAX 4

static const char *const m_names[M_NAMES] = {"m0", "m1", "m2", "m3", "m4",
                                             "m5", "m6", "m7", "m8", "m9"};
static const char *const r_names[R_NAMES] = {"r0", "r1", "r2", "r3", "r4", "r5"};
static const char *const addrs[3] = {"h:1", "h:2", "[::1]:3"};
static const char *const zones[3] = {"", "z1", "z2"};
static const char *const metas[2] = {"", "{}"};

struct mmem {
    uint32_t id;
    int name, addr, zone, meta;
    uint8_t status, role;
    uint16_t weight;
    uint64_t joined, changed;
};

struct mpart {
    uint64_t epoch;
    uint32_t primary;
    bool releasing;
    uint8_t n;
    uint32_t rep[CORRAL_STATE_ROW_MAX];
    uint8_t rst[CORRAL_STATE_ROW_MAX];
};

struct mres {
    uint32_t id;
    int name;
    uint32_t P;
    uint8_t R;
    uint64_t created, changed;
    struct mpart parts[MP_MAX];
};

/* Members and resources in id order, like the state; plain arrays. */
struct model {
    struct mmem m[M_NAMES];
    uint32_t nm;
    struct mres r[R_NAMES];
    uint32_t nr;
    uint32_t next_m, next_r;
    uint64_t last_epoch, assign;
};

struct expect {
    uint8_t status;
    uint32_t id, op;
};

static uint64_t g_seed;
static long g_step;
/* Commands applied with a copy added at R, and refused at a copy that
 * only the row's size (R + 1) refused. */
static long g_over_r, g_row_refused;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("state random: seed %llu step %ld: %s (replay with STATE_SEED=%llu)\n",    \
                        (unsigned long long)g_seed, g_step, #cond, (unsigned long long)g_seed);    \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

static uint32_t rnd(uint64_t *rng, uint32_t n)
{
    return (uint32_t)(rng_next(rng) % n);
}

static int mm_by_id(const struct model *M, uint32_t id)
{
    for (uint32_t i = 0; i < M->nm; i++)
        if (M->m[i].id == id)
            return (int)i;
    return -1;
}

static int mm_by_name(const struct model *M, int name)
{
    for (uint32_t i = 0; i < M->nm; i++)
        if (M->m[i].name == name)
            return (int)i;
    return -1;
}

static int mr_by_id(const struct model *M, uint32_t id)
{
    for (uint32_t i = 0; i < M->nr; i++)
        if (M->r[i].id == id)
            return (int)i;
    return -1;
}

static int mr_by_name(const struct model *M, int name)
{
    for (uint32_t i = 0; i < M->nr; i++)
        if (M->r[i].name == name)
            return (int)i;
    return -1;
}

/* The model counts replicas by looking, where the state keeps counts. */
static uint32_t m_holds(const struct model *M, uint32_t id)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < M->nr; i++)
        for (uint32_t p = 0; p < M->r[i].P; p++)
            for (uint8_t k = 0; k < M->r[i].parts[p].n; k++)
                n += M->r[i].parts[p].rep[k] == id;
    return n;
}

/* A member id: mostly a real one, sometimes one that is not. */
static uint32_t pick_member(uint64_t *rng, const struct model *M)
{
    if (M->nm == 0 || rnd(rng, 10) == 0)
        return rnd(rng, M->next_m + 2);
    return M->m[rnd(rng, M->nm)].id;
}

static struct corral_state_cmd gen_member_put(uint64_t *rng, struct model *M, uint64_t index,
                                              struct expect *x)
{
    struct mmem n = {0,
                     (int)rnd(rng, M_NAMES),
                     (int)rnd(rng, 3),
                     (int)rnd(rng, 3),
                     (int)rnd(rng, 2),
                     ACTIVE,
                     (uint8_t)(1 + rnd(rng, 2)),
                     (uint16_t)(1 + rnd(rng, 3)),
                     index,
                     index};
    struct corral_state_cmd c =
        member_cmd(m_names[n.name], n.role, addrs[n.addr], zones[n.zone], n.weight, metas[n.meta]);
    int i = mm_by_name(M, n.name);
    if (i < 0) {
        n.id = M->next_m++;
        M->m[M->nm++] = n;
        M->assign = index;
        *x = (struct expect){OK, n.id, 0};
        return c;
    }
    struct mmem *m = &M->m[i];
    bool rejoin = m->status == DEAD || m->status == LEFT;
    bool same = m->role == n.role && m->addr == n.addr && m->zone == n.zone && m->meta == n.meta &&
                m->weight == n.weight;
    if (rejoin || !same) {
        m->role = n.role;
        m->addr = n.addr;
        m->zone = n.zone;
        m->meta = n.meta;
        m->weight = n.weight;
        if (rejoin)
            m->status = ACTIVE;
        m->changed = index;
        M->assign = index;
    }
    *x = (struct expect){OK, m->id, 0};
    return c;
}

static struct corral_state_cmd gen_member_status(uint64_t *rng, struct model *M, uint64_t index,
                                                 struct expect *x)
{
    uint32_t id = pick_member(rng, M);
    uint8_t status = rnd(rng, 5) < 2 ? ACTIVE : (uint8_t)(1 + rnd(rng, 4));
    int i = mm_by_id(M, id);
    *x = (struct expect){OK, 0, 0};
    if (i < 0)
        x->status = NOT_FOUND;
    else if (M->m[i].status == status)
        ;
    else if (status == LEFT && m_holds(M, id) > 0)
        x->status = CONFLICT;
    else {
        M->m[i].status = status;
        M->m[i].changed = index;
        M->assign = index;
    }
    return status_cmd(id, status);
}

static struct corral_state_cmd gen_member_delete(uint64_t *rng, struct model *M, uint64_t index,
                                                 struct expect *x)
{
    uint32_t id = pick_member(rng, M);
    int i = mm_by_id(M, id);
    *x = (struct expect){OK, 0, 0};
    if (i < 0) {
        x->status = NOT_FOUND;
    } else if (m_holds(M, id) > 0) {
        x->status = CONFLICT;
    } else {
        memmove(&M->m[i], &M->m[i + 1], (M->nm - (uint32_t)i - 1) * sizeof(M->m[0]));
        M->nm--;
        M->assign = index;
    }
    return id_cmd(CORRAL_STATE_MEMBER_DELETE, id);
}

static struct corral_state_cmd gen_resource_put(uint64_t *rng, struct model *M, uint64_t index,
                                                struct expect *x)
{
    int name = (int)rnd(rng, R_NAMES);
    uint32_t P = 1 + rnd(rng, MP_MAX);
    uint8_t R = (uint8_t)(1 + rnd(rng, 3));
    int i = mr_by_name(M, name);
    if (i >= 0 && rnd(rng, 4) != 0)
        P = M->r[i].P;
    struct corral_state_cmd c = resource_cmd(r_names[name], P, R);
    if (i < 0) {
        struct mres n = {M->next_r++, name, P, R, index, index, {{0}}};
        M->r[M->nr++] = n;
        M->assign = index;
        *x = (struct expect){OK, n.id, 0};
        return c;
    }
    struct mres *r = &M->r[i];
    *x = (struct expect){OK, r->id, 0};
    if (P != r->P) {
        x->status = CONFLICT;
    } else if (R != r->R) {
        r->R = R;
        r->changed = index;
        M->assign = index;
    }
    return c;
}

static struct corral_state_cmd gen_resource_delete(uint64_t *rng, struct model *M, uint64_t index,
                                                   struct expect *x)
{
    uint32_t id =
        M->nr > 0 && rnd(rng, 5) != 0 ? M->r[rnd(rng, M->nr)].id : rnd(rng, M->next_r + 2);
    int i = mr_by_id(M, id);
    *x = (struct expect){OK, 0, 0};
    if (i < 0) {
        x->status = NOT_FOUND;
    } else {
        memmove(&M->r[i], &M->r[i + 1], (M->nr - (uint32_t)i - 1) * sizeof(M->r[0]));
        M->nr--;
        M->assign = index;
    }
    return id_cmd(CORRAL_STATE_RESOURCE_DELETE, id);
}

static int mp_find(const struct mpart *p, uint32_t member)
{
    for (int k = 0; k < p->n; k++)
        if (p->rep[k] == member)
            return k;
    return -1;
}

/* One op on the model, written as plainly as the rules read. */
static uint8_t model_op(struct model *M, struct mres *r, const struct corral_partition_opv *op)
{
    if (op->partition >= r->P)
        return NOT_FOUND;
    int mi = mm_by_id(M, op->member);
    if (mi < 0)
        return NOT_FOUND;
    struct mpart *p = &r->parts[op->partition];
    if (op->epoch != p->epoch)
        return CONFLICT;
    uint8_t status = M->m[mi].status;
    int k = mp_find(p, op->member);
    switch (op->op) {
    case CORRAL_OP_ADD_COPYING:
    case CORRAL_OP_ADD_IN_SYNC:
        /* S2: a copy may go one over R (a move copies first); in sync
         * stops at R. */
        if (k >= 0 || status != ACTIVE || p->n >= r->R + (op->op == CORRAL_OP_ADD_COPYING))
            return CONFLICT;
        if (op->op == CORRAL_OP_ADD_IN_SYNC && p->epoch != 0)
            return CONFLICT;
        p->rep[p->n] = op->member;
        p->rst[p->n++] = op->op == CORRAL_OP_ADD_IN_SYNC ? IN_SYNC : COPYING;
        return OK;
    case CORRAL_OP_MARK_IN_SYNC:
        if (k < 0 || p->rst[k] != COPYING || status == DEAD)
            return CONFLICT;
        p->rst[k] = IN_SYNC;
        return OK;
    case CORRAL_OP_DROP:
        if (k < 0 || p->primary == op->member)
            return CONFLICT;
        for (int j = k; j + 1 < p->n; j++) {
            p->rep[j] = p->rep[j + 1];
            p->rst[j] = p->rst[j + 1];
        }
        p->n--;
        return OK;
    case CORRAL_OP_GRANT:
    case CORRAL_OP_GRANT_DRAINING:
        if (p->primary != 0 || k < 0 || p->rst[k] != IN_SYNC ||
            status != (op->op == CORRAL_OP_GRANT ? ACTIVE : DRAINING))
            return CONFLICT;
        p->primary = op->member;
        p->epoch = ++M->last_epoch;
        return OK;
    case CORRAL_OP_RELEASE:
        if (p->primary != op->member || p->releasing)
            return CONFLICT;
        p->releasing = true;
        return OK;
    case CORRAL_OP_CLEAR:
        if (p->primary != op->member)
            return CONFLICT;
        p->primary = 0;
        p->releasing = false;
        return OK;
    default:
        abort(); /* gen_op makes only known ops */
    }
}

/* An active member, most of the time. */
static uint32_t pick_active(uint64_t *rng, const struct model *M)
{
    uint32_t ids[M_NAMES], n = 0;
    for (uint32_t i = 0; i < M->nm; i++)
        if (M->m[i].status == ACTIVE)
            ids[n++] = M->m[i].id;
    return n > 0 && rnd(rng, 5) != 0 ? ids[rnd(rng, n)] : pick_member(rng, M);
}

/* A replica of p in the given state (0: any), or 0 when there is none. */
static uint32_t pick_replica(uint64_t *rng, const struct mpart *p, uint8_t state)
{
    uint32_t ids[CORRAL_STATE_ROW_MAX], n = 0;
    for (uint8_t k = 0; k < p->n; k++)
        if ((state == 0 || p->rst[k] == state) && p->rep[k] != p->primary)
            ids[n++] = p->rep[k];
    return n > 0 ? ids[rnd(rng, n)] : 0;
}

/* The step a controller would take next on p, roughly. */
static void smart_op(uint64_t *rng, const struct model *M, const struct mpart *p,
                     struct corral_partition_opv *op)
{
    uint32_t copying = pick_replica(rng, p, COPYING), synced = pick_replica(rng, p, IN_SYNC);
    uint32_t pick = rnd(rng, 6);
    if (p->primary != 0 && pick < 2) {
        op->op = p->releasing || pick == 0 ? CORRAL_OP_CLEAR : CORRAL_OP_RELEASE;
        op->member = p->primary;
    } else if (p->primary == 0 && synced != 0 && pick < 3) {
        int mi = mm_by_id(M, synced);
        bool draining = mi >= 0 && M->m[mi].status == DRAINING;
        op->op = draining != (rnd(rng, 8) == 0) ? CORRAL_OP_GRANT_DRAINING : CORRAL_OP_GRANT;
        op->member = synced;
    } else if (copying != 0 && pick < 4) {
        op->op = CORRAL_OP_MARK_IN_SYNC;
        op->member = copying;
    } else if (pick == 4 && (copying != 0 || synced != 0)) {
        op->op = CORRAL_OP_DROP;
        op->member = copying != 0 ? copying : synced;
    } else {
        op->op = p->epoch == 0 && rnd(rng, 2) ? CORRAL_OP_ADD_IN_SYNC : CORRAL_OP_ADD_COPYING;
        op->member = pick_active(rng, M);
    }
}

/* One op aimed at partition p of r as the ops so far left it (in tmp): a
 * member and an epoch that make sense most of the time. */
static struct corral_partition_opv gen_op(uint64_t *rng, const struct model *tmp,
                                          const struct mres *r, uint32_t p)
{
    struct corral_partition_opv op = {p, (uint8_t)(1 + rnd(rng, CORRAL_PARTITION_OP_MAX)), 0, 0};
    static const struct mpart none = {0};
    const struct mpart *mp = r != NULL && p < r->P ? &r->parts[p] : &none;
    if (rnd(rng, 4) != 0) {
        smart_op(rng, tmp, mp, &op);
    } else {
        op.member = pick_member(rng, tmp);
        if (mp->n > 0 && rnd(rng, 2) != 0)
            op.member = mp->rep[rnd(rng, mp->n)];
    }
    op.epoch = rnd(rng, 12) != 0 ? mp->epoch : rnd(rng, (uint32_t)tmp->last_epoch + 2);
    return op;
}

/* An ADD_COPYING that every rule but the row's size allows. */
static bool copy_fits_but_row(const struct model *M, const struct mres *r,
                              const struct corral_partition_opv *op)
{
    int mi = mm_by_id(M, op->member);
    const struct mpart *p = &r->parts[op->partition];
    return mi >= 0 && M->m[mi].status == ACTIVE && op->epoch == p->epoch &&
           mp_find(p, op->member) < 0;
}

static struct corral_state_cmd gen_ops(uint64_t *rng, struct model *M, uint64_t index,
                                       struct expect *x, struct corral_partition_opv *v)
{
    uint32_t id =
        M->nr > 0 && rnd(rng, 10) != 0 ? M->r[rnd(rng, M->nr)].id : rnd(rng, M->next_r + 2);
    int ri = mr_by_id(M, id);
    uint32_t P = ri >= 0 ? M->r[ri].P : MP_MAX;
    uint32_t n = rnd(rng, 2) ? 1 : 2 + rnd(rng, 3), p = 0;
    /* Generate against a scratch model that follows the valid ops. */
    struct model tmp = *M;
    for (uint32_t i = 0; i < n; i++) {
        if (i == 0)
            p = rnd(rng, 20) == 0 ? P : rnd(rng, P); /* now and then past the end */
        else if (rnd(rng, 3) == 0)
            p++;
        v[i] = gen_op(rng, &tmp, ri >= 0 ? &tmp.r[ri] : NULL, p);
        if (ri >= 0) {
            struct model t2 = tmp;
            if (model_op(&t2, &t2.r[ri], &v[i]) == OK)
                tmp = t2;
        }
    }
    /* The expectation: all or nothing, from the model as it was. */
    *x = (struct expect){OK, 0, 0};
    if (ri < 0) {
        x->status = NOT_FOUND;
        return ops_cmd(id, n, v);
    }
    tmp = *M;
    bool over_r = false;
    for (uint32_t i = 0; i < n; i++) {
        const struct mres *mr = &tmp.r[ri];
        bool add = v[i].op == CORRAL_OP_ADD_COPYING && v[i].partition < mr->P;
        uint8_t at = add ? mr->parts[v[i].partition].n : 0;
        uint8_t s = model_op(&tmp, &tmp.r[ri], &v[i]);
        if (s != OK) {
            g_row_refused += add && at == mr->R + 1 && copy_fits_but_row(&tmp, mr, &v[i]);
            *x = (struct expect){s, 0, i};
            return ops_cmd(id, n, v);
        }
        over_r |= add && at == mr->R;
    }
    g_over_r += over_r;
    *M = tmp;
    M->r[ri].changed = index;
    M->assign = index;
    return ops_cmd(id, n, v);
}

static void compare_model(const struct corral_state *st, const struct model *M)
{
    CHECK(corral_state_member_count(st) == M->nm);
    for (uint32_t i = 0; i < M->nm; i++) {
        const struct corral_state_member *m = corral_state_member_at(st, i);
        const struct mmem *w = &M->m[i];
        CHECK(m->id == w->id && strcmp(m->name, m_names[w->name]) == 0);
        CHECK(m->status == w->status && m->role == w->role && m->weight == w->weight);
        CHECK(strcmp(m->addr, addrs[w->addr]) == 0 && strcmp(m->zone, zones[w->zone]) == 0);
        CHECK(m->meta_len == strlen(metas[w->meta]));
        CHECK(m->joined_index == w->joined && m->changed_index == w->changed);
        CHECK(corral_state_member_by_name(st, m->name, (uint32_t)strlen(m->name)) == m);
    }
    CHECK(corral_state_resource_count(st) == M->nr);
    uint64_t total = 0;
    for (uint32_t i = 0; i < M->nr; i++) {
        const struct corral_state_resource *r = corral_state_resource_at(st, i);
        const struct mres *w = &M->r[i];
        CHECK(r->id == w->id && strcmp(r->name, r_names[w->name]) == 0);
        CHECK(r->partitions == w->P && r->replicas == w->R);
        CHECK(r->created_index == w->created && r->changed_index == w->changed);
        total += w->P;
        for (uint32_t p = 0; p < w->P; p++) {
            const struct corral_state_partition *a = &r->parts[p];
            const struct mpart *b = &w->parts[p];
            CHECK(a->epoch == b->epoch && a->primary == b->primary);
            CHECK(a->releasing == b->releasing && a->n_replicas == b->n);
            for (uint8_t k = 0; k < b->n; k++)
                CHECK(a->replicas[k].member == b->rep[k] && a->replicas[k].state == b->rst[k]);
        }
    }
    CHECK(corral_state_partitions_total(st) == total);
    CHECK(corral_state_last_epoch(st) == M->last_epoch);
    CHECK(corral_state_assign_index(st) == M->assign);
}

struct tally {
    long applied[8];
    long refused[8];
};

static void random_step(struct corral_state *st, struct model *M, uint64_t *rng, uint64_t index,
                        struct tally *t)
{
    struct corral_partition_opv v[4];
    struct expect x = {OK, 0, 0};
    struct corral_state_cmd c;
    uint32_t pick = rnd(rng, 100);
    if (pick < 12)
        c = gen_member_put(rng, M, index, &x);
    else if (pick < 18)
        c = gen_member_status(rng, M, index, &x);
    else if (pick < 21)
        c = gen_member_delete(rng, M, index, &x);
    else if (pick < 27)
        c = gen_resource_put(rng, M, index, &x);
    else if (pick < 29)
        c = gen_resource_delete(rng, M, index, &x);
    else if (pick < 95)
        c = gen_ops(rng, M, index, &x, v);
    else
        c = kv_cmd(CORRAL_KV_PUT, m_names[rnd(rng, M_NAMES)], "v", false, 0);
    struct corral_rbuf *b = corral_state_cmd_encode(&c);
    CHECK(b != NULL);
    struct corral_state_result r;
    CHECK(corral_state_apply(st, index, b, &r) == 0);
    corral_rbuf_unref(b);
    if (c.type == CORRAL_STATE_KV) {
        CHECK(r.status == KV_DONE && r.kv.status == CORRAL_KV_OK);
    } else {
        CHECK(r.status == x.status);
        if (c.type == CORRAL_STATE_MEMBER_PUT || c.type == CORRAL_STATE_RESOURCE_PUT)
            CHECK(r.id == x.id);
        if (c.type == CORRAL_STATE_PARTITION_OPS && x.status != OK)
            CHECK(r.op == x.op);
    }
    if (r.status == OK || r.status == KV_DONE)
        t->applied[c.type]++;
    else
        t->refused[c.type]++;
}

/* Restores a snapshot into a fresh state, checks it re-snapshots to the
 * same bytes, and carries on with the restored state. */
static struct corral_state *random_restore(struct corral_state *st)
{
    struct corral_rbuf *s = corral_state_snapshot(st);
    struct corral_state *fresh = corral_state_new();
    CHECK(s != NULL && fresh != NULL);
    CHECK(corral_state_restore(fresh, s) == 0);
    struct corral_rbuf *again = corral_state_snapshot(fresh);
    CHECK(rbuf_equal(s, again));
    corral_rbuf_unref(again);
    corral_rbuf_unref(s);
    corral_state_free(st);
    return fresh;
}

static void random_run(uint64_t seed, long steps)
{
    g_seed = seed;
    uint64_t rng = seed;
    struct model M = {0};
    M.next_m = M.next_r = 1;
    struct corral_state *st = corral_state_new();
    struct tally t = {{0}, {0}};
    uint64_t index = 0;
    g_over_r = g_row_refused = 0;
    for (g_step = 0; g_step < steps; g_step++) {
        index += rnd(&rng, 8) == 0 ? 2 : 1;
        if (rnd(&rng, 50) == 0)
            CHECK(corral_state_skip(st, index) == 0);
        else
            random_step(st, &M, &rng, index, &t);
        CHECK(corral_state_check(st));
        compare_model(st, &M);
        if (g_step % 101 == 100)
            st = random_restore(st);
    }
    print_message("state random: seed %llu, %ld steps; applied/refused: member put %ld/%ld, "
                  "status %ld/%ld, delete %ld/%ld, resource put %ld/%ld, delete %ld/%ld, "
                  "ops %ld/%ld (a copy at R %ld, one at R + 1 refused %ld); last epoch %llu\n",
                  (unsigned long long)seed, steps, t.applied[1], t.refused[1], t.applied[2],
                  t.refused[2], t.applied[3], t.refused[3], t.applied[4], t.refused[4],
                  t.applied[5], t.refused[5], t.applied[6], t.refused[6], g_over_r, g_row_refused,
                  (unsigned long long)M.last_epoch);
    CHECK(t.applied[6] > steps / 10 && t.refused[6] > steps / 10);
    CHECK(g_over_r > 0 && g_row_refused > 0);
    corral_state_free(st);
}

static void test_random(void **state)
{
    (void)state;
    const char *env = getenv("STATE_SEED");
    if (env != NULL) {
        random_run(strtoull(env, NULL, 0), 20000);
        return;
    }
    for (uint64_t seed = 1; seed <= 3; seed++)
        random_run(0x57a7e000ull + seed, 4000);
}

int main(void)
{
    fill_globals();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_truncations),
        cmocka_unit_test(test_codec_bit_flips),
        cmocka_unit_test(test_codec_encode_refuses),
        cmocka_unit_test(test_codec_hand_made),
        cmocka_unit_test(test_codec_legacy),
        cmocka_unit_test(test_member_put),
        cmocka_unit_test(test_member_rejoin),
        cmocka_unit_test(test_member_status),
        cmocka_unit_test(test_member_delete),
        cmocka_unit_test(test_resource_put),
        cmocka_unit_test(test_resource_delete),
        cmocka_unit_test(test_ops_common),
        cmocka_unit_test(test_ops_add),
        cmocka_unit_test(test_ops_add_over_r),
        cmocka_unit_test(test_ops_mark_in_sync),
        cmocka_unit_test(test_ops_drop),
        cmocka_unit_test(test_ops_grant),
        cmocka_unit_test(test_ops_grant_draining),
        cmocka_unit_test(test_ops_release_clear),
        cmocka_unit_test(test_ops_atomic),
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_kv_commands),
        cmocka_unit_test(test_bad_commands),
        cmocka_unit_test(test_index_monotonic),
        cmocka_unit_test(test_coords),
        cmocka_unit_test(test_snapshot_v2),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_deterministic),
        cmocka_unit_test(test_snapshot_corrupt),
        cmocka_unit_test(test_snapshot_mutations),
        cmocka_unit_test(test_snapshot_legacy),
        cmocka_unit_test(test_snapshot_hostile),
        cmocka_unit_test(test_snapshot_row_max),
        cmocka_unit_test(test_exhausted),
        cmocka_unit_test(test_members_max),
        cmocka_unit_test(test_resources_and_partitions_max),
        cmocka_unit_test(test_ops_max),
        cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
