/* libFuzzer entry point for the cluster state's snapshot restore
 * (src/core/state_snap.c). Every input, as it is and with its CRC32C
 * trailer re-computed, is restored over a copy of a small fixed state
 * (fuzz_fixture.h). Checks: a restore that succeeds gives a state that
 * passes corral_state_check and whose snapshot is byte-identical to the
 * input (a version-1 input, a config store snapshot, gives a state with no
 * members or resources whose store's snapshot is the input; a version-2
 * input, from before the coordinators' roster, gives an empty roster and a
 * version-3 snapshot that restores to itself); one that
 * fails leaves the state's snapshot as it was; a restored state then
 * takes a member put and a config put and still passes the check. Build
 * and run: tests/fuzz/README.md. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct corral_rbuf *fixture_snap;

static void apply_ok(struct corral_state *st, const struct corral_state_cmd *c)
{
    struct corral_rbuf *b = corral_state_cmd_encode(c);
    FUZZ_REQUIRE(b != NULL);
    FUZZ_REQUIRE(corral_state_apply(st, corral_state_applied(st) + 1, b, NULL) == 0);
    FUZZ_REQUIRE(corral_state_check(st));
    corral_rbuf_unref(b);
}

static void fuzz_one(const struct corral_rbuf *buf)
{
    struct corral_state *st = corral_state_new();
    FUZZ_REQUIRE(st != NULL);
    FUZZ_REQUIRE(corral_state_restore(st, fixture_snap) == 0);
    if (corral_state_restore(st, buf) != 0) {
        struct corral_rbuf *after = corral_state_snapshot(st);
        FUZZ_REQUIRE(fuzz_rbuf_is(after, fixture_snap->data, fixture_snap->len));
        corral_rbuf_unref(after);
        corral_state_free(st);
        return;
    }
    FUZZ_REQUIRE(corral_state_check(st));
    if (buf->len > 0 && buf->data[0] == 1) {
        FUZZ_REQUIRE(corral_state_member_count(st) == 0 && corral_state_resource_count(st) == 0);
        struct corral_rbuf *kv = corral_kv_snapshot(corral_state_kv(st));
        FUZZ_REQUIRE(fuzz_rbuf_is(kv, buf->data, buf->len));
        corral_rbuf_unref(kv);
    } else if (buf->data[0] == 2) {
        FUZZ_REQUIRE(corral_state_coord_count(st) == 0 && corral_state_next_coord_id(st) == 1);
        struct corral_rbuf *again = corral_state_snapshot(st);
        FUZZ_REQUIRE(again != NULL && again->data[0] == 3);
        struct corral_state *twin = corral_state_new();
        FUZZ_REQUIRE(twin != NULL && corral_state_restore(twin, again) == 0);
        struct corral_rbuf *third = corral_state_snapshot(twin);
        FUZZ_REQUIRE(fuzz_rbuf_is(third, again->data, again->len));
        corral_rbuf_unref(third);
        corral_rbuf_unref(again);
        corral_state_free(twin);
    } else {
        struct corral_rbuf *again = corral_state_snapshot(st);
        FUZZ_REQUIRE(fuzz_rbuf_is(again, buf->data, buf->len));
        corral_rbuf_unref(again);
    }
    if (corral_state_applied(st) < UINT64_MAX - 2) {
        struct corral_state_cmd m = fixture_member("fuzz", "z9");
        apply_ok(st, &m);
        struct corral_state_cmd k = fixture_kv("fuzz/k", "v");
        apply_ok(st, &k);
    }
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
    fuzz_each(data, size, fuzz_one, true);
    return 0;
}
