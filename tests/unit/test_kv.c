/* Unit tests for src/core/kv.c: the command codec against truncation and
 * bit flips, PUT/DEL/CAS semantics, listing, limits, snapshots (round
 * trip, determinism, corruption), allocation failures, and a seeded
 * randomized run against a sorted-array model (KV_SEED=n replays one). */
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
#include "corral.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rbuf.h"

/* ---- Helpers ---- */

/* splitmix64, for the seeded model run and mutations. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static struct corral_rbuf *encode(uint8_t op, const void *key, uint32_t key_len, const void *value,
                                  uint32_t value_len, bool has_cas, uint64_t cas)
{
    struct corral_kv_cmd c = {op, has_cas, cas, key, key_len, value, value_len};
    struct corral_rbuf *b = corral_kv_cmd_encode(&c);
    assert_non_null(b);
    return b;
}

/* Applies one command and returns its result; the call itself must succeed. */
static struct corral_kv_result run(struct corral_kv *kv, uint64_t index, uint8_t op,
                                   const char *key, const char *value, bool has_cas, uint64_t cas)
{
    uint32_t value_len = value != NULL ? (uint32_t)strlen(value) : 0;
    struct corral_rbuf *b = encode(op, key, (uint32_t)strlen(key), value, value_len, has_cas, cas);
    struct corral_kv_result r = {99, 99};
    assert_int_equal(corral_kv_apply(kv, index, b, &r), 0);
    assert_int_equal(corral_kv_applied(kv), index);
    corral_rbuf_unref(b);
    return r;
}

static struct corral_kv_result put(struct corral_kv *kv, uint64_t index, const char *key,
                                   const char *value)
{
    return run(kv, index, CORRAL_KV_PUT, key, value, false, 0);
}

static void expect_kv(struct corral_kv *kv, const char *key, const char *value, uint64_t version)
{
    struct corral_kv_item it;
    assert_true(corral_kv_get(kv, (const uint8_t *)key, (uint32_t)strlen(key), &it));
    assert_int_equal(it.value_len, strlen(value));
    assert_memory_equal(it.value, value, it.value_len);
    assert_int_equal(it.version, version);
}

static bool rbuf_equal(const struct corral_rbuf *a, const struct corral_rbuf *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Snapshot bytes as the test writes them, to craft snapshots the store
 * would never produce. */
struct sbuf {
    uint8_t *data;
    size_t len, cap;
};

static void sb_bytes(struct sbuf *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
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

static void sb_item(struct sbuf *s, const char *key, uint64_t version, const char *value)
{
    sb_le(s, strlen(key), 4);
    sb_bytes(s, key, strlen(key));
    sb_le(s, version, 8);
    sb_le(s, strlen(value), 4);
    sb_bytes(s, value, strlen(value));
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

/* ---- The codec ---- */

/* The longest key, and a little more ('k' bytes; filled by main). */
static uint8_t key_max[CORRAL_KV_KEY_BYTES_MAX + 1];

static size_t codec_samples(struct corral_rbuf **out)
{
    size_t n = 0;
    out[n++] = encode(CORRAL_KV_PUT, "a", 1, "v", 1, false, 0);
    out[n++] = encode(CORRAL_KV_PUT, "key/\xff", 5, NULL, 0, true, 0);
    out[n++] = encode(CORRAL_KV_PUT, "x", 1, "value", 5, true, 0x0102030405060708ull);
    out[n++] = encode(CORRAL_KV_DEL, "gone", 4, NULL, 0, false, 0);
    out[n++] = encode(CORRAL_KV_DEL, "gone", 4, NULL, 0, true, 7);
    out[n++] = encode(CORRAL_KV_PUT, key_max, CORRAL_KV_KEY_BYTES_MAX, "z", 1, false, 0);
    return n;
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    uint8_t *big = malloc(CORRAL_KV_VALUE_BYTES_MAX);
    assert_non_null(big);
    for (uint32_t i = 0; i < CORRAL_KV_VALUE_BYTES_MAX; i++)
        big[i] = (uint8_t)(i * 31);
    struct corral_kv_cmd in[] = {
        {CORRAL_KV_PUT, false, 0, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1},
        {CORRAL_KV_PUT, true, 0, (const uint8_t *)"\x01\xff", 2, NULL, 0},
        {CORRAL_KV_PUT, true, UINT64_MAX, key_max, CORRAL_KV_KEY_BYTES_MAX, big,
         CORRAL_KV_VALUE_BYTES_MAX},
        {CORRAL_KV_DEL, true, 42, (const uint8_t *)"d", 1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct corral_rbuf *b = corral_kv_cmd_encode(&in[i]);
        assert_non_null(b);
        struct corral_kv_cmd out;
        assert_int_equal(corral_kv_cmd_decode(b, &out), 0);
        assert_int_equal(out.op, in[i].op);
        assert_int_equal(out.has_cas, in[i].has_cas);
        assert_int_equal(out.cas, in[i].cas);
        assert_int_equal(out.key_len, in[i].key_len);
        assert_memory_equal(out.key, in[i].key, out.key_len);
        assert_int_equal(out.value_len, in[i].value_len);
        if (out.value_len > 0)
            assert_memory_equal(out.value, in[i].value, out.value_len);
        assert_true(out.key >= b->data && out.key + out.key_len <= b->data + b->len);
        corral_rbuf_unref(b);
    }
    free(big);
}

static void test_codec_truncations(void **state)
{
    (void)state;
    struct corral_rbuf *s[8];
    size_t n = codec_samples(s);
    struct corral_kv_cmd out;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t len = 0; len < s[i]->len; len++) {
            struct corral_rbuf *t = corral_rbuf_new(s[i]->data, len);
            assert_int_equal(corral_kv_cmd_decode(t, &out), CORRAL_EINVAL);
            corral_rbuf_unref(t);
        }
        struct corral_rbuf *longer = corral_rbuf_new(NULL, s[i]->len + 1);
        memcpy(longer->data, s[i]->data, s[i]->len);
        longer->data[s[i]->len] = 0;
        assert_int_equal(corral_kv_cmd_decode(longer, &out), CORRAL_EINVAL);
        corral_rbuf_unref(longer);
        corral_rbuf_unref(s[i]);
    }
    assert_int_equal(corral_kv_cmd_decode(NULL, &out), CORRAL_EINVAL);
}

/* Every single-bit flip either fails to decode or decodes to a command
 * that re-encodes to exactly the flipped bytes (the encoding is canonical). */
static void test_codec_bit_flips(void **state)
{
    (void)state;
    struct corral_rbuf *s[8];
    size_t n = codec_samples(s);
    long accepted = 0;
    for (size_t i = 0; i < n; i++) {
        struct corral_rbuf *f = corral_rbuf_new(s[i]->data, s[i]->len);
        for (uint32_t bit = 0; bit < 8 * f->len; bit++) {
            f->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            struct corral_kv_cmd c;
            if (corral_kv_cmd_decode(f, &c) == 0) {
                struct corral_rbuf *again = corral_kv_cmd_encode(&c);
                assert_non_null(again);
                assert_true(rbuf_equal(again, f));
                corral_rbuf_unref(again);
                accepted++;
            }
            f->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        corral_rbuf_unref(f);
        corral_rbuf_unref(s[i]);
    }
    assert_true(accepted > 0); /* flips in keys, values and cas do decode */
}

static void test_codec_refuses(void **state)
{
    (void)state;
    const uint8_t *k = (const uint8_t *)"k";
    struct corral_kv_cmd bad[] = {
        {0, false, 0, k, 1, NULL, 0},
        {3, false, 0, k, 1, NULL, 0},
        {CORRAL_KV_PUT, false, 0, k, 0, NULL, 0},
        {CORRAL_KV_PUT, false, 0, NULL, 1, NULL, 0},
        {CORRAL_KV_PUT, false, 0, key_max, CORRAL_KV_KEY_BYTES_MAX + 1, NULL, 0},
        {CORRAL_KV_PUT, false, 0, (const uint8_t *)"a\0b", 3, NULL, 0},
        {CORRAL_KV_PUT, false, 0, k, 1, key_max, CORRAL_KV_VALUE_BYTES_MAX + 1},
        {CORRAL_KV_PUT, false, 0, k, 1, NULL, 1},
        {CORRAL_KV_DEL, false, 0, k, 1, k, 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(corral_kv_cmd_encode(&bad[i]));

    /* Hand-made payloads the encoder never writes. */
    struct {
        uint8_t v, op, flags;
        uint64_t cas;
        uint32_t key_len, value_len;
    } raw[] = {
        {2, 1, 0, 0, 1, 0}, /* unknown version */
        {1, 1, 2, 0, 1, 0}, /* unknown flag */
        {1, 1, 0, 5, 1, 0}, /* cas without the flag */
        {1, 9, 0, 0, 1, 0}, /* unknown op */
        {1, 2, 0, 0, 1, 1}, /* DEL with a value */
        {1, 1, 0, 0, 0, 0}, /* empty key */
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        struct sbuf s = {0};
        sb_le(&s, raw[i].v, 1);
        sb_le(&s, raw[i].op, 1);
        sb_le(&s, raw[i].flags, 1);
        sb_le(&s, raw[i].cas, 8);
        sb_le(&s, raw[i].key_len, 4);
        sb_bytes(&s, "kk", raw[i].key_len);
        sb_le(&s, raw[i].value_len, 4);
        sb_bytes(&s, "vv", raw[i].value_len);
        struct corral_rbuf *b = corral_rbuf_new(s.data, (uint32_t)s.len);
        struct corral_kv_cmd c;
        assert_int_equal(corral_kv_cmd_decode(b, &c), CORRAL_EINVAL);
        corral_rbuf_unref(b);
        free(s.data);
    }
}

/* Lengths over the limits are refused before they are compared with the
 * buffer: a huge length field never reads past the end. */
static void test_codec_huge_lengths(void **state)
{
    (void)state;
    uint32_t lens[][2] = {{CORRAL_KV_KEY_BYTES_MAX + 1, 0},
                          {UINT32_MAX, 0},
                          {1, CORRAL_KV_VALUE_BYTES_MAX + 1},
                          {1, UINT32_MAX},
                          {1, 100}};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct sbuf s = {0};
        sb_bytes(&s, "\x01\x01\x00", 3);
        sb_le(&s, 0, 8);
        sb_le(&s, lens[i][0], 4);
        sb_bytes(&s, "k", 1);
        sb_le(&s, lens[i][1], 4);
        sb_bytes(&s, "short", 5);
        struct corral_rbuf *b = corral_rbuf_new(s.data, (uint32_t)s.len);
        struct corral_kv_cmd c;
        assert_int_equal(corral_kv_cmd_decode(b, &c), CORRAL_EINVAL);
        corral_rbuf_unref(b);
        free(s.data);
    }
}

/* ---- Apply ---- */

static void test_put_get(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    struct corral_kv_item it;
    assert_false(corral_kv_get(kv, (const uint8_t *)"a", 1, &it));
    struct corral_kv_result r = put(kv, 3, "a", "one");
    assert_int_equal(r.status, CORRAL_KV_OK);
    assert_int_equal(r.version, 3);
    expect_kv(kv, "a", "one", 3);
    r = put(kv, 7, "a", "two, longer");
    assert_int_equal(r.status, CORRAL_KV_OK);
    assert_int_equal(r.version, 7);
    expect_kv(kv, "a", "two, longer", 7);
    assert_int_equal(put(kv, 8, "b", "").status, CORRAL_KV_OK);
    expect_kv(kv, "b", "", 8);
    assert_int_equal(corral_kv_count(kv), 2);
    assert_false(corral_kv_get(kv, (const uint8_t *)"ab", 2, &it));
    assert_false(corral_kv_get(kv, (const uint8_t *)"", 0, &it));
    assert_false(corral_kv_get(kv, key_max, CORRAL_KV_KEY_BYTES_MAX + 1, &it));
    corral_kv_free(kv);
}

static void test_cas(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    /* cas 0: must not exist. */
    struct corral_kv_result r = run(kv, 1, CORRAL_KV_PUT, "k", "v1", true, 0);
    assert_int_equal(r.status, CORRAL_KV_OK);
    r = run(kv, 2, CORRAL_KV_PUT, "k", "v2", true, 0);
    assert_int_equal(r.status, CORRAL_KV_CAS_FAILED);
    assert_int_equal(r.version, 1);
    r = run(kv, 3, CORRAL_KV_PUT, "k", "v2", true, 2);
    assert_int_equal(r.status, CORRAL_KV_CAS_FAILED);
    assert_int_equal(r.version, 1);
    expect_kv(kv, "k", "v1", 1);
    r = run(kv, 4, CORRAL_KV_PUT, "k", "v2", true, 1);
    assert_int_equal(r.status, CORRAL_KV_OK);
    assert_int_equal(r.version, 4);
    expect_kv(kv, "k", "v2", 4);
    /* A version on a missing key fails with current version 0. */
    r = run(kv, 5, CORRAL_KV_PUT, "new", "x", true, 4);
    assert_int_equal(r.status, CORRAL_KV_CAS_FAILED);
    assert_int_equal(r.version, 0);
    /* DEL with CAS. */
    r = run(kv, 6, CORRAL_KV_DEL, "k", NULL, true, 1);
    assert_int_equal(r.status, CORRAL_KV_CAS_FAILED);
    assert_int_equal(r.version, 4);
    r = run(kv, 7, CORRAL_KV_DEL, "k", NULL, true, 4);
    assert_int_equal(r.status, CORRAL_KV_OK);
    r = run(kv, 8, CORRAL_KV_DEL, "k", NULL, true, 0); /* CAS holds, key missing */
    assert_int_equal(r.status, CORRAL_KV_NOT_FOUND);
    assert_int_equal(corral_kv_count(kv), 0);
    corral_kv_free(kv);
}

static void test_del(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    struct corral_kv_result r = run(kv, 1, CORRAL_KV_DEL, "nope", NULL, false, 0);
    assert_int_equal(r.status, CORRAL_KV_NOT_FOUND);
    assert_int_equal(r.version, 0);
    put(kv, 2, "a", "1");
    put(kv, 3, "b", "2");
    r = run(kv, 4, CORRAL_KV_DEL, "a", NULL, false, 0);
    assert_int_equal(r.status, CORRAL_KV_OK);
    assert_int_equal(r.version, 4);
    struct corral_kv_item it;
    assert_false(corral_kv_get(kv, (const uint8_t *)"a", 1, &it));
    expect_kv(kv, "b", "2", 3);
    assert_int_equal(corral_kv_count(kv), 1);
    assert_int_equal(run(kv, 5, CORRAL_KV_DEL, "a", NULL, false, 0).status, CORRAL_KV_NOT_FOUND);
    corral_kv_free(kv);
}

static void test_bad_command(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    put(kv, 1, "a", "1");
    struct corral_rbuf *junk = corral_rbuf_new("\x01\x01garbage", 9);
    struct corral_kv_result r;
    assert_int_equal(corral_kv_apply(kv, 2, junk, &r), 0);
    assert_int_equal(r.status, CORRAL_KV_BAD_COMMAND);
    assert_int_equal(corral_kv_apply(kv, 3, NULL, &r), 0);
    assert_int_equal(r.status, CORRAL_KV_BAD_COMMAND);
    assert_int_equal(corral_kv_applied(kv), 3);
    assert_int_equal(corral_kv_count(kv), 1);
    expect_kv(kv, "a", "1", 1);
    assert_int_equal(corral_kv_apply(kv, 4, junk, NULL), 0); /* res may be NULL */
    corral_rbuf_unref(junk);
    corral_kv_free(kv);
}

static void test_index_monotonic(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    assert_int_equal(corral_kv_applied(kv), 0);
    struct corral_rbuf *b = encode(CORRAL_KV_PUT, "k", 1, "v", 1, false, 0);
    struct corral_kv_result r = {77, 77};
    assert_int_equal(corral_kv_apply(kv, 0, b, &r), CORRAL_EINVAL);
    assert_int_equal(r.status, 77);
    assert_int_equal(corral_kv_count(kv), 0);
    assert_int_equal(corral_kv_apply(kv, 5, b, &r), 0);
    assert_int_equal(corral_kv_apply(kv, 5, b, &r), CORRAL_EINVAL);
    assert_int_equal(corral_kv_apply(kv, 4, b, &r), CORRAL_EINVAL);
    assert_int_equal(corral_kv_skip(kv, 5), CORRAL_EINVAL);
    assert_int_equal(corral_kv_skip(kv, 2), CORRAL_EINVAL);
    assert_int_equal(corral_kv_applied(kv), 5);
    expect_kv(kv, "k", "v", 5);
    assert_int_equal(corral_kv_skip(kv, 6), 0);
    assert_int_equal(corral_kv_skip(kv, 9), 0);
    assert_int_equal(corral_kv_applied(kv), 9);
    assert_int_equal(corral_kv_apply(kv, 9, b, &r), CORRAL_EINVAL);
    assert_int_equal(corral_kv_apply(kv, 10, b, &r), 0);
    expect_kv(kv, "k", "v", 10);
    corral_rbuf_unref(b);
    corral_kv_free(kv);
}

/* ---- Listing ---- */

/* Lists and checks the keys (joined with ',') and the more flag. */
static void expect_list(struct corral_kv *kv, const char *prefix, uint32_t prefix_len,
                        const char *after, uint32_t limit, const char *want, bool want_more)
{
    struct corral_kv_item items[16];
    bool more = !want_more;
    uint32_t after_len = after != NULL ? (uint32_t)strlen(after) : 0;
    uint32_t n = corral_kv_list(kv, (const uint8_t *)prefix, prefix_len, (const uint8_t *)after,
                                after_len, items, limit, &more);
    char got[256] = "";
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0)
            strcat(got, ",");
        strncat(got, (const char *)items[i].key, items[i].key_len);
    }
    assert_string_equal(got, want);
    assert_int_equal(more, want_more);
}

static void test_list(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    const char *keys[] = {"b/2", "a", "b/1", "b", "b/\xff", "b/\xff\xff", "c", "b/10", "\xff"};
    uint64_t index = 1;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        put(kv, index++, keys[i], "v");
    expect_list(kv, "", 0, NULL, 16, "a,b,b/1,b/10,b/2,b/\xff,b/\xff\xff,c,\xff", false);
    expect_list(kv, "", 0, NULL, 2, "a,b", true);
    expect_list(kv, "", 0, "b", 2, "b/1,b/10", true);
    expect_list(kv, "b/", 2, NULL, 16, "b/1,b/10,b/2,b/\xff,b/\xff\xff", false);
    expect_list(kv, "b/", 2, NULL, 5, "b/1,b/10,b/2,b/\xff,b/\xff\xff", false);
    expect_list(kv, "b/", 2, NULL, 4, "b/1,b/10,b/2,b/\xff", true);
    expect_list(kv, "b/", 2, NULL, 0, "", true);
    expect_list(kv, "b/1", 3, NULL, 16, "b/1,b/10", false);
    /* Paging with `after`: before the prefix, inside it, between keys,
     * at the last key, past every key. */
    expect_list(kv, "b/", 2, "a", 2, "b/1,b/10", true);
    expect_list(kv, "b/", 2, "b/10", 2, "b/2,b/\xff", true);
    expect_list(kv, "b/", 2, "b/11", 16, "b/2,b/\xff,b/\xff\xff", false);
    expect_list(kv, "b/", 2, "b/\xff\xff", 16, "", false);
    expect_list(kv, "b/", 2, "z", 16, "", false);
    /* Prefixes made of 0xff bytes (no "next prefix" to compute). */
    expect_list(kv, "b/\xff", 3, NULL, 16, "b/\xff,b/\xff\xff", false);
    expect_list(kv, "\xff", 1, NULL, 16, "\xff", false);
    expect_list(kv, "\xff\xff", 2, NULL, 16, "", false);
    expect_list(kv, "x", 1, NULL, 16, "", false);
    expect_list(kv, "", 0, "\xff", 16, "", false);
    /* more may be NULL, and out too when limit is 0. */
    assert_int_equal(corral_kv_list(kv, NULL, 0, NULL, 0, NULL, 0, NULL), 0);
    corral_kv_free(kv);
    kv = corral_kv_new();
    expect_list(kv, "", 0, NULL, 16, "", false);
    corral_kv_free(kv);
}

/* Sorted inserts and deletes are the worst case for an unbalanced tree;
 * the AVL invariant must hold after each phase. */
static void test_tree_shapes(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    char key[16];
    uint64_t index = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "%05d", i);
        put(kv, ++index, key, "v");
    }
    assert_true(corral_kv_check(kv));
    for (int i = 0; i < 20000; i += 2) {
        snprintf(key, sizeof(key), "%05d", i);
        assert_int_equal(run(kv, ++index, CORRAL_KV_DEL, key, NULL, false, 0).status, CORRAL_KV_OK);
    }
    assert_true(corral_kv_check(kv));
    for (int i = 39999; i >= 20000; i--) {
        snprintf(key, sizeof(key), "%05d", i);
        put(kv, ++index, key, "w");
    }
    assert_true(corral_kv_check(kv));
    for (int i = 1; i < 40000; i += 2) {
        snprintf(key, sizeof(key), "%05d", i);
        assert_int_equal(run(kv, ++index, CORRAL_KV_DEL, key, NULL, false, 0).status, CORRAL_KV_OK);
    }
    assert_true(corral_kv_check(kv));
    assert_int_equal(corral_kv_count(kv), 10000);
    corral_kv_free(kv);
}

/* ---- Limits ---- */

/* A snapshot of CORRAL_KV_KEYS_MAX keys loads in O(n), far faster than a
 * million applies; the limit is then checked on real applies. */
static void test_keys_max(void **state)
{
    (void)state;
    struct sbuf s = {0};
    sb_le(&s, 1, 1);
    sb_le(&s, 10, 8);
    sb_le(&s, CORRAL_KV_KEYS_MAX, 8);
    char key[16];
    for (uint32_t i = 0; i < CORRAL_KV_KEYS_MAX; i++) {
        snprintf(key, sizeof(key), "k%07u", i);
        sb_item(&s, key, 1 + i % 10, "");
    }
    struct corral_rbuf *snap = sb_finish(&s);
    struct corral_kv *kv = corral_kv_new();
    assert_int_equal(corral_kv_restore(kv, snap), 0);
    assert_int_equal(corral_kv_count(kv), CORRAL_KV_KEYS_MAX);
    assert_true(corral_kv_check(kv));
    struct corral_rbuf *again = corral_kv_snapshot(kv);
    assert_true(rbuf_equal(again, snap));
    corral_rbuf_unref(again);
    corral_rbuf_unref(snap);

    struct corral_kv_result r = put(kv, 11, "new", "v");
    assert_int_equal(r.status, CORRAL_KV_FULL);
    assert_int_equal(r.version, 0);
    assert_int_equal(put(kv, 12, "k0000005", "overwrite").status, CORRAL_KV_OK);
    assert_int_equal(run(kv, 13, CORRAL_KV_DEL, "k0000007", NULL, false, 0).status, CORRAL_KV_OK);
    assert_int_equal(put(kv, 14, "new", "v").status, CORRAL_KV_OK);
    assert_int_equal(put(kv, 15, "newer", "v").status, CORRAL_KV_FULL);
    assert_int_equal(corral_kv_count(kv), CORRAL_KV_KEYS_MAX);
    assert_true(corral_kv_check(kv));
    expect_list(kv, "k000000", 7, NULL, 16,
                "k0000000,k0000001,k0000002,k0000003,k0000004,"
                "k0000005,k0000006,k0000008,k0000009",
                false);
    corral_kv_free(kv);
}

static void test_bytes_max(void **state)
{
    (void)state;
    uint32_t len = CORRAL_KV_VALUE_BYTES_MAX;
    uint8_t *value = calloc(1, len);
    assert_non_null(value);
    memset(value, 'v', len);
    struct corral_kv *kv = corral_kv_new();
    struct corral_kv_result r = {0};
    char key[16];
    uint64_t index = 0;
    while (r.status == CORRAL_KV_OK) {
        index++;
        snprintf(key, sizeof(key), "%06llu", (unsigned long long)index);
        struct corral_rbuf *b = encode(CORRAL_KV_PUT, key, 6, value, len, false, 0);
        assert_int_equal(corral_kv_apply(kv, index, b, &r), 0);
        corral_rbuf_unref(b);
    }
    assert_int_equal(r.status, CORRAL_KV_FULL);
    assert_int_equal(corral_kv_count(kv), index - 1);
    /* A smaller value for an existing key still fits. */
    struct corral_rbuf *b = encode(CORRAL_KV_PUT, "000001", 6, "small", 5, false, 0);
    assert_int_equal(corral_kv_apply(kv, ++index, b, &r), 0);
    assert_int_equal(r.status, CORRAL_KV_OK);
    corral_rbuf_unref(b);
    struct corral_rbuf *snap = corral_kv_snapshot(kv);
    assert_non_null(snap);
    assert_true(snap->len <= CORRAL_KV_SNAPSHOT_BYTES_MAX);
    assert_true(snap->len > CORRAL_KV_SNAPSHOT_BYTES_MAX - 2 * (uint64_t)len);
    corral_rbuf_unref(snap);
    corral_kv_free(kv);
    free(value);
}

/* ---- Snapshots ---- */

static void fill(struct corral_kv *kv, uint64_t seed, int n, uint64_t *index)
{
    char key[32], value[32];
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(key, sizeof(key), "k/%llu", (unsigned long long)(seed >> 54));
        snprintf(value, sizeof(value), "%llu", (unsigned long long)(seed >> 40));
        if ((seed >> 33) % 5 == 0)
            run(kv, ++*index, CORRAL_KV_DEL, key, NULL, false, 0);
        else
            put(kv, ++*index, key, value);
    }
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct corral_kv *a = corral_kv_new();
    uint64_t index = 0;
    fill(a, 1, 3000, &index);
    struct corral_rbuf *snap = corral_kv_snapshot(a);
    assert_non_null(snap);

    struct corral_kv *b = corral_kv_new();
    put(b, 1, "stale", "gone after restore");
    assert_int_equal(corral_kv_restore(b, snap), 0);
    assert_int_equal(corral_kv_applied(b), corral_kv_applied(a));
    assert_int_equal(corral_kv_count(b), corral_kv_count(a));
    struct corral_kv_item it;
    assert_false(corral_kv_get(b, (const uint8_t *)"stale", 5, &it));
    struct corral_rbuf *again = corral_kv_snapshot(b);
    assert_true(rbuf_equal(snap, again));
    corral_rbuf_unref(again);

    /* Both keep working the same way after the restore. */
    fill(a, 2, 500, &index);
    index -= 500;
    fill(b, 2, 500, &index);
    struct corral_rbuf *sa = corral_kv_snapshot(a), *sb = corral_kv_snapshot(b);
    assert_true(rbuf_equal(sa, sb));
    corral_rbuf_unref(sa);
    corral_rbuf_unref(sb);

    /* An empty store round-trips too. */
    struct corral_kv *e = corral_kv_new();
    assert_int_equal(corral_kv_skip(e, 4), 0);
    struct corral_rbuf *empty = corral_kv_snapshot(e);
    assert_int_equal(corral_kv_restore(b, empty), 0);
    assert_int_equal(corral_kv_count(b), 0);
    assert_int_equal(corral_kv_applied(b), 4);
    corral_rbuf_unref(empty);
    corral_kv_free(e);
    corral_rbuf_unref(snap);
    corral_kv_free(a);
    corral_kv_free(b);
}

/* The same contents reached through different histories (and so
 * different tree shapes) give the same bytes. */
static void test_snapshot_deterministic(void **state)
{
    (void)state;
    struct corral_kv *a = corral_kv_new(), *b = corral_kv_new();
    char key[16];
    for (uint64_t i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "%03llu", (unsigned long long)i);
        put(a, i + 1, key, "old");
    }
    assert_int_equal(corral_kv_skip(a, 600), 0);
    for (uint64_t i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "%03llu", (unsigned long long)(199 - i));
        put(b, 2 * i + 1, key, "older");
        put(b, 2 * i + 2, i % 2 ? "zz" : "yy", "junk");
    }
    assert_int_equal(run(b, 599, CORRAL_KV_DEL, "zz", NULL, false, 0).status, CORRAL_KV_OK);
    assert_int_equal(run(b, 600, CORRAL_KV_DEL, "yy", NULL, false, 0).status, CORRAL_KV_OK);
    for (uint64_t i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "%03llu", (unsigned long long)i);
        put(a, 601 + i, key, "v");
        put(b, 601 + i, key, "v");
    }
    struct corral_rbuf *sa = corral_kv_snapshot(a), *sb = corral_kv_snapshot(b);
    assert_true(rbuf_equal(sa, sb));
    corral_rbuf_unref(sa);
    corral_rbuf_unref(sb);
    corral_kv_free(a);
    corral_kv_free(b);
}

static void expect_restore_fails(struct corral_kv *kv, const struct corral_rbuf *bad, int want)
{
    struct corral_rbuf *before = corral_kv_snapshot(kv);
    assert_int_equal(corral_kv_restore(kv, bad), want);
    struct corral_rbuf *after = corral_kv_snapshot(kv);
    assert_true(rbuf_equal(before, after));
    corral_rbuf_unref(before);
    corral_rbuf_unref(after);
}

static void test_snapshot_corrupt(void **state)
{
    (void)state;
    struct corral_kv *src = corral_kv_new(), *kv = corral_kv_new();
    uint64_t index = 0;
    fill(src, 3, 40, &index);
    put(kv, 1, "mine", "unchanged");
    struct corral_rbuf *snap = corral_kv_snapshot(src);
    struct corral_rbuf *f = corral_rbuf_new(snap->data, snap->len);
    for (uint32_t bit = 0; bit < 8 * f->len; bit++) {
        f->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rv = corral_kv_restore(kv, f);
        assert_true(rv == CORRAL_ECORRUPT || (bit < 8 && rv == CORRAL_EVERSION));
        f->data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    corral_rbuf_unref(f);
    for (uint32_t len = 0; len < snap->len; len++) {
        struct corral_rbuf *t = corral_rbuf_new(snap->data, len);
        assert_int_equal(corral_kv_restore(kv, t), CORRAL_ECORRUPT);
        corral_rbuf_unref(t);
    }
    expect_restore_fails(kv, NULL, CORRAL_ECORRUPT);
    expect_kv(kv, "mine", "unchanged", 1);
    assert_int_equal(corral_kv_applied(kv), 1);
    assert_int_equal(corral_kv_count(kv), 1);
    corral_rbuf_unref(snap);
    corral_kv_free(src);
    corral_kv_free(kv);
}

/* Snapshots with a valid CRC and bad contents. */
struct bad_snap {
    const char *what;
    int want;
    uint8_t version;
    uint64_t applied, count;
    const char *keys[3];
    uint64_t versions[3];
    const char *extra; /* trailing bytes before the CRC */
};

static void test_snapshot_hostile(void **state)
{
    (void)state;
    char long_key[CORRAL_KV_KEY_BYTES_MAX + 2];
    memset(long_key, 'l', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    struct bad_snap cases[] = {
        {"good", 0, 1, 9, 3, {"a", "b", "c"}, {1, 2, 9}, ""},
        {"version", CORRAL_EVERSION, 2, 9, 3, {"a", "b", "c"}, {1, 2, 3}, ""},
        {"unsorted", CORRAL_ECORRUPT, 1, 9, 3, {"a", "c", "b"}, {1, 2, 3}, ""},
        {"duplicate", CORRAL_ECORRUPT, 1, 9, 3, {"a", "b", "b"}, {1, 2, 3}, ""},
        {"prefix first", CORRAL_ECORRUPT, 1, 9, 2, {"ab", "a"}, {1, 2}, ""},
        {"version 0", CORRAL_ECORRUPT, 1, 9, 2, {"a", "b"}, {1, 0}, ""},
        {"version > applied", CORRAL_ECORRUPT, 1, 9, 2, {"a", "b"}, {1, 10}, ""},
        {"empty key", CORRAL_ECORRUPT, 1, 9, 2, {"", "b"}, {1, 2}, ""},
        {"long key", CORRAL_ECORRUPT, 1, 9, 1, {long_key}, {1}, ""},
        {"count short", CORRAL_ECORRUPT, 1, 9, 2, {"a", "b", "c"}, {1, 2, 3}, ""},
        {"count long", CORRAL_ECORRUPT, 1, 9, 4, {"a", "b", "c"}, {1, 2, 3}, ""},
        {"trailing", CORRAL_ECORRUPT, 1, 9, 3, {"a", "b", "c"}, {1, 2, 3}, "x"},
        {"count huge", CORRAL_ECORRUPT, 1, 9, UINT64_MAX, {"a"}, {1}, ""},
        {"count over max", CORRAL_ECORRUPT, 1, 9, CORRAL_KV_KEYS_MAX + 1, {"a"}, {1}, ""},
    };
    struct corral_kv *kv = corral_kv_new();
    put(kv, 1, "mine", "unchanged");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_snap *c = &cases[i];
        struct sbuf s = {0};
        sb_le(&s, c->version, 1);
        sb_le(&s, c->applied, 8);
        sb_le(&s, c->count, 8);
        for (size_t k = 0; k < 3 && c->keys[k] != NULL; k++)
            sb_item(&s, c->keys[k], c->versions[k], "val");
        sb_bytes(&s, c->extra, strlen(c->extra));
        struct corral_rbuf *b = sb_finish(&s);
        print_message("hostile snapshot: %s\n", c->what);
        if (c->want == 0) {
            struct corral_kv *ok = corral_kv_new();
            assert_int_equal(corral_kv_restore(ok, b), 0);
            expect_kv(ok, "c", "val", 9);
            corral_kv_free(ok);
        } else {
            expect_restore_fails(kv, b, c->want);
        }
        corral_rbuf_unref(b);
    }
    expect_kv(kv, "mine", "unchanged", 1);
    corral_kv_free(kv);
}

/* Seeded mutations of a small snapshot with the CRC recomputed, so they
 * reach the structure checks: each one is refused with the store left as
 * it was, or restores a valid store that re-snapshots to the same bytes. */
static void test_snapshot_mutations(void **state)
{
    (void)state;
    struct corral_kv *src = corral_kv_new(), *kv = corral_kv_new();
    uint64_t index = 0, rng = 0x5eedull;
    fill(src, 6, 12, &index);
    put(kv, 1, "mine", "unchanged");
    struct corral_rbuf *snap = corral_kv_snapshot(src), *before = corral_kv_snapshot(kv);
    long accepted = 0;
    for (int it = 0; it < 20000; it++) {
        struct corral_rbuf *m = corral_rbuf_new(snap->data, snap->len);
        uint32_t body = m->len - 4;
        for (uint64_t k = 1 + rng_next(&rng) % 3; k > 0; k--)
            m->data[1 + rng_next(&rng) % (body - 1)] ^= (uint8_t)(1u << (rng_next(&rng) % 8));
        uint32_t crc = corral_crc32c(0, m->data, body);
        for (int i = 0; i < 4; i++)
            m->data[body + (uint32_t)i] = (uint8_t)(crc >> (8 * i));
        int rv = corral_kv_restore(kv, m);
        struct corral_rbuf *after = corral_kv_snapshot(kv);
        if (rv == 0) {
            assert_true(corral_kv_check(kv));
            assert_true(rbuf_equal(after, m));
            assert_int_equal(corral_kv_restore(kv, before), 0);
            accepted++;
        } else {
            assert_int_equal(rv, CORRAL_ECORRUPT);
            assert_true(rbuf_equal(after, before));
        }
        corral_rbuf_unref(after);
        corral_rbuf_unref(m);
    }
    print_message("snapshot mutations: %ld of 20000 accepted\n", accepted);
    corral_rbuf_unref(snap);
    corral_rbuf_unref(before);
    corral_kv_free(src);
    corral_kv_free(kv);
}

/* ---- Allocation failures ---- */

static void test_enomem(void **state)
{
    (void)state;
    struct corral_kv *kv = corral_kv_new();
    uint64_t index = 0;
    fill(kv, 4, 300, &index);
    put(kv, ++index, "k/1", "exists");
    struct corral_rbuf *before = corral_kv_snapshot(kv);

    /* Apply: a new key and an overwrite; the applied index stays too. */
    const char *keys[] = {"fresh", "k/1"};
    for (size_t i = 0; i < 2; i++) {
        struct corral_rbuf *b =
            encode(CORRAL_KV_PUT, keys[i], (uint32_t)strlen(keys[i]), "x", 1, false, 0);
        struct corral_kv_result r = {55, 55};
        corral_mem_fail_after(1);
        assert_int_equal(corral_kv_apply(kv, index + 1, b, &r), CORRAL_ENOMEM);
        assert_int_equal(r.status, 55);
        assert_int_equal(corral_kv_applied(kv), index);
        struct corral_rbuf *after = corral_kv_snapshot(kv);
        assert_true(rbuf_equal(before, after));
        corral_rbuf_unref(after);
        corral_rbuf_unref(b);
    }
    corral_mem_fail_after(1);
    assert_null(corral_kv_snapshot(kv));
    corral_mem_fail_after(1);
    assert_null(corral_kv_new());
    corral_mem_fail_after(1);
    struct corral_kv_cmd c = {CORRAL_KV_PUT, false, 0, (const uint8_t *)"k", 1, NULL, 0};
    assert_null(corral_kv_cmd_encode(&c));

    /* Restore: fail each allocation in turn until it succeeds. */
    struct corral_kv *src = corral_kv_new();
    uint64_t src_index = 0;
    fill(src, 5, 200, &src_index);
    struct corral_rbuf *snap = corral_kv_snapshot(src);
    int failures = 0;
    for (uint64_t n = 1;; n++) {
        corral_mem_fail_after(n);
        int rv = corral_kv_restore(kv, snap);
        corral_mem_fail_after(0);
        if (rv == 0)
            break;
        assert_int_equal(rv, CORRAL_ENOMEM);
        assert_true(corral_kv_check(kv));
        failures++;
        struct corral_rbuf *after = corral_kv_snapshot(kv);
        assert_true(rbuf_equal(before, after));
        corral_rbuf_unref(after);
    }
    assert_int_equal(failures, corral_kv_count(src));
    struct corral_rbuf *again = corral_kv_snapshot(kv);
    assert_true(rbuf_equal(snap, again));
    corral_rbuf_unref(again);
    corral_rbuf_unref(snap);
    corral_rbuf_unref(before);
    corral_kv_free(src);
    corral_kv_free(kv);
}

/* ---- Randomized, against a sorted-array model ---- */

#define RKEY_MAX 4
#define RVAL_MAX 12
#define MODEL_MAX 1024 /* more than the 5 + 25 + 125 + 625 possible keys */

struct mitem {
    uint8_t key[RKEY_MAX];
    uint32_t key_len;
    uint8_t value[RVAL_MAX];
    uint32_t value_len;
    uint64_t version;
};

struct model {
    struct mitem items[MODEL_MAX];
    size_t n;
};

static uint64_t g_seed;
static long g_op;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("kv random: seed %llu op %ld: %s (replay with KV_SEED=%llu)\n",            \
                        (unsigned long long)g_seed, g_op, #cond, (unsigned long long)g_seed);      \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

static int bytes_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    uint32_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (a_len > b_len) - (a_len < b_len);
}

/* The index of the first item >= key. */
static size_t model_lower(const struct model *m, const uint8_t *key, uint32_t key_len)
{
    size_t i = 0;
    while (i < m->n && bytes_cmp(m->items[i].key, m->items[i].key_len, key, key_len) < 0)
        i++;
    return i;
}

static bool model_has(const struct model *m, size_t i, const uint8_t *key, uint32_t key_len)
{
    return i < m->n && bytes_cmp(m->items[i].key, m->items[i].key_len, key, key_len) == 0;
}

/* Random bytes from a small alphabet, with 0xff, so keys collide and nest. */
static uint32_t random_bytes(uint64_t *rng, uint8_t *out, uint32_t min, uint32_t max)
{
    static const uint8_t alphabet[] = {'a', 'b', '/', 0x01, 0xff};
    uint32_t len = min + (uint32_t)(rng_next(rng) % (max - min + 1));
    for (uint32_t i = 0; i < len; i++)
        out[i] = alphabet[rng_next(rng) % sizeof(alphabet)];
    return len;
}

static void model_apply(struct model *m, uint64_t index, const struct corral_kv_cmd *c,
                        struct corral_kv_result *want)
{
    size_t i = model_lower(m, c->key, c->key_len);
    bool has = model_has(m, i, c->key, c->key_len);
    uint64_t cur = has ? m->items[i].version : 0;
    *want = (struct corral_kv_result){CORRAL_KV_OK, index};
    if (c->has_cas && c->cas != cur) {
        *want = (struct corral_kv_result){CORRAL_KV_CAS_FAILED, cur};
    } else if (c->op == CORRAL_KV_DEL && !has) {
        *want = (struct corral_kv_result){CORRAL_KV_NOT_FOUND, 0};
    } else if (c->op == CORRAL_KV_DEL) {
        memmove(&m->items[i], &m->items[i + 1], (m->n - i - 1) * sizeof(m->items[0]));
        m->n--;
    } else {
        if (!has) {
            CHECK(m->n < MODEL_MAX);
            memmove(&m->items[i + 1], &m->items[i], (m->n - i) * sizeof(m->items[0]));
            m->n++;
        }
        struct mitem *it = &m->items[i];
        memcpy(it->key, c->key, c->key_len);
        it->key_len = c->key_len;
        memcpy(it->value, c->value, c->value_len);
        it->value_len = c->value_len;
        it->version = index;
    }
}

static void random_write(struct corral_kv *kv, struct model *m, uint64_t *rng, uint64_t index)
{
    uint8_t key[RKEY_MAX], value[RVAL_MAX];
    struct corral_kv_cmd c = {0};
    c.op = rng_next(rng) % 3 == 0 ? CORRAL_KV_DEL : CORRAL_KV_PUT;
    c.key = key;
    c.key_len = random_bytes(rng, key, 1, RKEY_MAX);
    if (c.op == CORRAL_KV_PUT) {
        c.value = value;
        c.value_len = random_bytes(rng, value, 0, RVAL_MAX);
    }
    if (rng_next(rng) % 3 == 0) {
        size_t i = model_lower(m, key, c.key_len);
        uint64_t cur = model_has(m, i, key, c.key_len) ? m->items[i].version : 0;
        uint64_t pick = rng_next(rng) % 3;
        c.has_cas = true;
        c.cas = pick == 0 ? cur : pick == 1 ? 0 : rng_next(rng) % (index + 1);
    }
    struct corral_rbuf *b = corral_kv_cmd_encode(&c);
    CHECK(b != NULL);
    struct corral_kv_result got, want;
    model_apply(m, index, &c, &want);
    CHECK(corral_kv_apply(kv, index, b, &got) == 0);
    CHECK(got.status == want.status && got.version == want.version);
    corral_rbuf_unref(b);
}

static void random_list(struct corral_kv *kv, const struct model *m, uint64_t *rng)
{
    uint8_t prefix[RKEY_MAX], after[RKEY_MAX];
    uint32_t prefix_len = random_bytes(rng, prefix, 0, 2);
    uint32_t after_len = rng_next(rng) % 2 ? random_bytes(rng, after, 1, RKEY_MAX) : 0;
    uint32_t limit = (uint32_t)(rng_next(rng) % 40);
    struct corral_kv_item out[40];
    bool more;
    uint32_t n = corral_kv_list(kv, prefix, prefix_len, after, after_len, out, limit, &more);
    uint32_t want = 0;
    bool want_more = false;
    for (size_t i = 0; i < m->n; i++) {
        const struct mitem *it = &m->items[i];
        if (it->key_len < prefix_len || memcmp(it->key, prefix, prefix_len) != 0)
            continue;
        if (after_len > 0 && bytes_cmp(it->key, it->key_len, after, after_len) <= 0)
            continue;
        if (want == limit) {
            want_more = true;
            break;
        }
        CHECK(want < n);
        CHECK(bytes_cmp(out[want].key, out[want].key_len, it->key, it->key_len) == 0);
        CHECK(bytes_cmp(out[want].value, out[want].value_len, it->value, it->value_len) == 0);
        CHECK(out[want].version == it->version);
        want++;
    }
    CHECK(n == want);
    CHECK(more == want_more);
}

static void random_get(struct corral_kv *kv, const struct model *m, uint64_t *rng)
{
    uint8_t key[RKEY_MAX];
    uint32_t key_len = random_bytes(rng, key, 1, RKEY_MAX);
    size_t i = model_lower(m, key, key_len);
    struct corral_kv_item it;
    bool found = corral_kv_get(kv, key, key_len, &it);
    CHECK(found == model_has(m, i, key, key_len));
    if (found) {
        CHECK(it.version == m->items[i].version);
        CHECK(bytes_cmp(it.value, it.value_len, m->items[i].value, m->items[i].value_len) == 0);
    }
}

/* Restores a snapshot into a fresh store, checks it re-snapshots to the
 * same bytes, and carries on with the restored store. */
static struct corral_kv *random_restore(struct corral_kv *kv)
{
    struct corral_rbuf *snap = corral_kv_snapshot(kv);
    struct corral_kv *fresh = corral_kv_new();
    CHECK(snap != NULL && fresh != NULL);
    CHECK(corral_kv_restore(fresh, snap) == 0);
    struct corral_rbuf *again = corral_kv_snapshot(fresh);
    CHECK(rbuf_equal(snap, again));
    corral_rbuf_unref(again);
    corral_rbuf_unref(snap);
    corral_kv_free(kv);
    return fresh;
}

static void test_random(void **state)
{
    (void)state;
    const char *env = getenv("KV_SEED");
    g_seed = env != NULL ? strtoull(env, NULL, 0) : 0x6b76ull;
    uint64_t rng = g_seed;
    struct model *m = calloc(1, sizeof(*m));
    struct corral_kv *kv = corral_kv_new();
    assert_non_null(m);
    uint64_t index = 0;
    long ops = 30000;
    for (g_op = 0; g_op < ops; g_op++) {
        uint64_t pick = rng_next(&rng) % 100;
        index += rng_next(&rng) % 8 == 0 ? 2 : 1;
        if (pick < 55) {
            random_write(kv, m, &rng, index);
        } else if (pick < 60) {
            CHECK(corral_kv_skip(kv, index) == 0);
        } else if (pick < 80) {
            random_list(kv, m, &rng);
        } else if (pick < 99) {
            random_get(kv, m, &rng);
        } else {
            kv = random_restore(kv);
        }
        CHECK(corral_kv_count(kv) == m->n);
        if (g_op % 64 == 0)
            CHECK(corral_kv_check(kv));
    }
    print_message("kv random: seed %llu, %ld ops, %zu keys at the end\n",
                  (unsigned long long)g_seed, ops, m->n);
    corral_kv_free(kv);
    free(m);
}

int main(void)
{
    memset(key_max, 'k', sizeof(key_max));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_truncations),
        cmocka_unit_test(test_codec_bit_flips),
        cmocka_unit_test(test_codec_refuses),
        cmocka_unit_test(test_codec_huge_lengths),
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_cas),
        cmocka_unit_test(test_del),
        cmocka_unit_test(test_bad_command),
        cmocka_unit_test(test_index_monotonic),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_tree_shapes),
        cmocka_unit_test(test_keys_max),
        cmocka_unit_test(test_bytes_max),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_deterministic),
        cmocka_unit_test(test_snapshot_corrupt),
        cmocka_unit_test(test_snapshot_hostile),
        cmocka_unit_test(test_snapshot_mutations),
        cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
