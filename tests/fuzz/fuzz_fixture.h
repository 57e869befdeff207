/* Shared by the fuzz targets and the seed writer: a small fixed cluster
 * state (three members, two resources, some replicas and a primary, two
 * config keys) built through the real command encoder, so a target can
 * apply arbitrary commands to something with content. Header-only: each
 * target is one translation unit plus the library. */
#ifndef CORRAL_FUZZ_FIXTURE_H
#define CORRAL_FUZZ_FIXTURE_H

#include "fuzz_require.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/kv.h"
#include "core/state.h"
#include "util/crc32c.h"
#include "util/rbuf.h"

/* A broken property: abort, so libFuzzer (or the replay driver) reports
 * the input. */

static inline struct corral_state_cmd fixture_member(const char *name, const char *zone)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_MEMBER_PUT;
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.role = CORRAL_MEMBER_WORKER;
    c.addr = "10.0.0.1:7000";
    c.addr_len = (uint16_t)strlen(c.addr);
    c.zone = zone;
    c.zone_len = (uint16_t)strlen(zone);
    c.weight = 100;
    c.meta = (const uint8_t *)"{}";
    c.meta_len = 2;
    return c;
}

static inline struct corral_state_cmd fixture_resource(const char *name, uint32_t p, uint8_t r)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_RESOURCE_PUT;
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.partitions = p;
    c.replicas = r;
    return c;
}

static inline struct corral_state_cmd fixture_kv(const char *key, const char *value)
{
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_KV;
    c.kv.op = CORRAL_KV_PUT;
    c.kv.key = (const uint8_t *)key;
    c.kv.key_len = (uint32_t)strlen(key);
    c.kv.value = (const uint8_t *)value;
    c.kv.value_len = (uint32_t)strlen(value);
    return c;
}

/* Partition ops on resource 1 (P = 4, R = 2): members 1 and 2 in sync on
 * partition 0, member 1 primary there (epoch 1), member 3 copying on
 * partition 1. */
static const struct corral_partition_opv fixture_ops[] = {
    {0, CORRAL_OP_ADD_IN_SYNC, 1, 0}, {0, CORRAL_OP_ADD_IN_SYNC, 2, 0}, {0, CORRAL_OP_GRANT, 1, 0},
    {1, CORRAL_OP_ADD_COPYING, 3, 0}, {2, CORRAL_OP_ADD_IN_SYNC, 2, 0},
};

/* The commands that build the fixture, in order; n set to their count. */
static inline size_t fixture_cmds(struct corral_state_cmd *out)
{
    size_t n = 0;
    out[n++] = fixture_member("a", "z1");
    out[n++] = fixture_member("b", "z2");
    out[n++] = fixture_member("c", "z3");
    out[n++] = fixture_resource("r", 4, 2);
    out[n++] = fixture_resource("q", 2, 1);
    struct corral_state_cmd ops = {0};
    ops.type = CORRAL_STATE_PARTITION_OPS;
    ops.id = 1;
    ops.n_ops = sizeof(fixture_ops) / sizeof(fixture_ops[0]);
    ops.ops = fixture_ops;
    out[n++] = ops;
    struct corral_state_cmd st = {0};
    st.type = CORRAL_STATE_MEMBER_STATUS;
    st.id = 3;
    st.status = CORRAL_MEMBER_DRAINING;
    out[n++] = st;
    out[n++] = fixture_kv("cfg/a", "1");
    out[n++] = fixture_kv("cfg/b", "hello");
    return n;
}
#define FIXTURE_CMDS_MAX 16

/* A new state holding the fixture (every command must apply OK or
 * KV_DONE: a broken fixture aborts). */
static inline struct corral_state *fixture_state(void)
{
    struct corral_state *st = corral_state_new();
    FUZZ_REQUIRE(st != NULL);
    struct corral_state_cmd cmds[FIXTURE_CMDS_MAX];
    size_t n = fixture_cmds(cmds);
    for (size_t i = 0; i < n; i++) {
        struct corral_rbuf *b = corral_state_cmd_encode(&cmds[i]);
        FUZZ_REQUIRE(b != NULL);
        struct corral_state_result res;
        FUZZ_REQUIRE(corral_state_apply(st, i + 1, b, &res) == 0);
        FUZZ_REQUIRE(res.status == CORRAL_STATE_OK || res.status == CORRAL_STATE_KV_DONE);
        corral_rbuf_unref(b);
    }
    FUZZ_REQUIRE(corral_state_check(st));
    return st;
}

/* A copy of size bytes with the last four replaced by the CRC32C of the
 * rest (the trailer every decoder here checks first), so the fuzzer gets
 * past the checksum into the structure. NULL when size < 4 or no memory. */
static inline struct corral_rbuf *fuzz_crc_fixed(const uint8_t *data, size_t size)
{
    if (size < 4 || size > UINT32_MAX)
        return NULL;
    struct corral_rbuf *b = corral_rbuf_new(data, (uint32_t)size);
    if (b == NULL)
        return NULL;
    uint32_t crc = corral_crc32c(0, b->data, size - 4);
    for (size_t i = 0; i < 4; i++)
        b->data[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    return b;
}

/* What every target does with an input: fn on an exact-size copy (so ASan
 * catches any over-read), then, when fix_crc, fn again on the copy with its
 * CRC32C trailer recomputed. */
static inline void fuzz_each(const uint8_t *data, size_t size,
                             void (*fn)(const struct corral_rbuf *), bool fix_crc)
{
    if (size > UINT32_MAX)
        return;
    struct corral_rbuf *buf = corral_rbuf_new(data, (uint32_t)size);
    if (buf == NULL)
        return;
    fn(buf);
    corral_rbuf_unref(buf);
    struct corral_rbuf *fixed = fix_crc ? fuzz_crc_fixed(data, size) : NULL;
    if (fixed != NULL)
        fn(fixed);
    corral_rbuf_unref(fixed);
}

static inline int fuzz_rbuf_is(const struct corral_rbuf *b, const uint8_t *data, size_t size)
{
    return b != NULL && b->len == size && memcmp(b->data, data, size) == 0;
}

#endif
