/* libFuzzer entry point for the config store (src/core/kv.c): every input
 * goes to the command decoder and apply, and, as it is and with its CRC32C
 * trailer re-computed, to the snapshot restore, over a copy of a small
 * fixed store. Checks: whatever decodes re-encodes to the very same bytes;
 * apply reports BAD_COMMAND exactly for what does not decode, never fails,
 * and leaves corral_kv_check true; a restore that succeeds gives a store
 * that passes the check and whose snapshot is byte-identical to the input,
 * one that fails leaves the store's snapshot as it was. Build and run:
 * tests/fuzz/README.md. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct corral_rbuf *fixture_snap;

static struct corral_kv *fixture_copy(void)
{
    struct corral_kv *kv = corral_kv_new();
    FUZZ_REQUIRE(kv != NULL);
    FUZZ_REQUIRE(corral_kv_restore(kv, fixture_snap) == 0);
    return kv;
}

static void fuzz_cmd(const struct corral_rbuf *buf)
{
    struct corral_kv_cmd c;
    bool decoded = corral_kv_cmd_decode(buf, &c) == 0;
    if (decoded) {
        struct corral_rbuf *re = corral_kv_cmd_encode(&c);
        FUZZ_REQUIRE(fuzz_rbuf_is(re, buf->data, buf->len));
        corral_rbuf_unref(re);
    }
    struct corral_kv *kv = fixture_copy();
    uint64_t index = corral_kv_applied(kv) + 1;
    struct corral_kv_result res;
    FUZZ_REQUIRE(corral_kv_apply(kv, index, buf, &res) == 0);
    FUZZ_REQUIRE((res.status == CORRAL_KV_BAD_COMMAND) == !decoded);
    FUZZ_REQUIRE(corral_kv_applied(kv) == index && corral_kv_check(kv));
    FUZZ_REQUIRE(corral_kv_apply(kv, index + 1, buf, &res) == 0);
    FUZZ_REQUIRE(corral_kv_check(kv));
    corral_kv_free(kv);
}

static void fuzz_restore(const struct corral_rbuf *buf)
{
    struct corral_kv *kv = fixture_copy();
    struct corral_rbuf *after;
    if (corral_kv_restore(kv, buf) == 0) {
        FUZZ_REQUIRE(corral_kv_check(kv));
        after = corral_kv_snapshot(kv);
        FUZZ_REQUIRE(fuzz_rbuf_is(after, buf->data, buf->len));
    } else {
        after = corral_kv_snapshot(kv);
        FUZZ_REQUIRE(fuzz_rbuf_is(after, fixture_snap->data, fixture_snap->len));
    }
    corral_rbuf_unref(after);
    corral_kv_free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fixture_snap == NULL) {
        struct corral_state *st = fixture_state();
        fixture_snap = corral_kv_snapshot(corral_state_kv(st));
        FUZZ_REQUIRE(fixture_snap != NULL);
        corral_state_free(st);
    }
    fuzz_each(data, size, fuzz_cmd, false);
    fuzz_each(data, size, fuzz_restore, true);
    return 0;
}
