/* libFuzzer entry point for the cluster state's command decoder
 * (src/core/state_codec.c) and apply (src/core/state.c). Every input, as
 * it is and with its CRC32C trailer re-computed, is decoded and applied to
 * a copy of a small fixed state (fuzz_fixture.h). Checks: whatever decodes
 * re-encodes to the very same bytes (a version-1 payload through the
 * config store's encoder, a version-2 one through the state's); a payload
 * that does not decode is applied as BAD_COMMAND (version 1: KV_DONE with
 * the store's BAD_COMMAND) and one that decodes never is; apply never fails
 * and leaves corral_state_check true and the applied index at the entry's;
 * the resulting state's snapshot restores into a state with the same
 * snapshot. Build and run: tests/fuzz/README.md. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct corral_rbuf *fixture_snap;

static void check_roundtrip(const struct corral_state *st)
{
    struct corral_rbuf *s1 = corral_state_snapshot(st);
    FUZZ_REQUIRE(s1 != NULL);
    struct corral_state *copy = corral_state_new();
    FUZZ_REQUIRE(copy != NULL);
    FUZZ_REQUIRE(corral_state_restore(copy, s1) == 0);
    struct corral_rbuf *s2 = corral_state_snapshot(copy);
    FUZZ_REQUIRE(fuzz_rbuf_is(s2, s1->data, s1->len));
    corral_rbuf_unref(s2);
    corral_rbuf_unref(s1);
    corral_state_free(copy);
}

static void fuzz_one(const struct corral_rbuf *buf)
{
    struct corral_state_cmd c;
    bool decoded = corral_state_cmd_decode(buf, &c) == 0;
    bool legacy = buf->len > 0 && buf->data[0] == 1;
    if (decoded) {
        struct corral_rbuf *re = legacy ? corral_kv_cmd_encode(&c.kv) : corral_state_cmd_encode(&c);
        FUZZ_REQUIRE(fuzz_rbuf_is(re, buf->data, buf->len));
        corral_rbuf_unref(re);
        if (c.type == CORRAL_STATE_PARTITION_OPS) {
            for (uint32_t i = 0; i < c.n_ops; i++) {
                struct corral_partition_opv op;
                corral_state_cmd_op_at(&c, i, &op);
                FUZZ_REQUIRE(op.op >= 1 && op.op <= CORRAL_PARTITION_OP_MAX);
            }
        }
    }

    struct corral_state *st = corral_state_new();
    FUZZ_REQUIRE(st != NULL);
    FUZZ_REQUIRE(corral_state_restore(st, fixture_snap) == 0);
    uint64_t index = corral_state_applied(st) + 1;
    struct corral_state_result res;
    FUZZ_REQUIRE(corral_state_apply(st, index, buf, &res) == 0);
    FUZZ_REQUIRE(corral_state_applied(st) == index);
    if (!decoded && legacy)
        FUZZ_REQUIRE(res.status == CORRAL_STATE_KV_DONE && res.kv.status == CORRAL_KV_BAD_COMMAND);
    else if (!decoded)
        FUZZ_REQUIRE(res.status == CORRAL_STATE_BAD_COMMAND);
    else
        FUZZ_REQUIRE(
            res.status != CORRAL_STATE_BAD_COMMAND &&
            (res.status != CORRAL_STATE_KV_DONE || res.kv.status != CORRAL_KV_BAD_COMMAND));
    FUZZ_REQUIRE(corral_state_check(st));
    /* The same payload again at the next index: a second put, delete or
     * grant meets the state the first one left. */
    FUZZ_REQUIRE(corral_state_apply(st, index + 1, buf, &res) == 0);
    FUZZ_REQUIRE(corral_state_check(st));
    check_roundtrip(st);
    corral_state_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fixture_snap == NULL) {
        struct corral_state *st = fixture_state();
        fixture_snap = corral_state_snapshot(st);
        FUZZ_REQUIRE(fixture_snap != NULL);
        corral_state_free(st);
    }
    /* Version 1 (config store) has no CRC to fix. */
    fuzz_each(data, size, fuzz_one, size > 0 && data[0] != 1);
    return 0;
}
