/* libFuzzer entry point for src/core/codec.c: feeds arbitrary bytes to
 * every decoder, once as they are and once with the CRC32C trailer
 * re-computed (so the fuzzer gets past the checksum into the structure),
 * and checks that whatever decodes re-encodes to the very same bytes.
 * Build and run: see tests/fuzz/README.md. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "corral.h"
#include "core/codec.h"
#include "core/raft.h"
#include "util/crc32c.h"
#include "util/rbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoded values re-encode into this; inputs larger than it are still
 * decoded, and then only compared when they fit. */
#define REENC_CAP (1u << 20)
static uint8_t reenc[REENC_CAP];

/* rv and n come from the encode call that filled reenc; the callers make
 * that call first (the order in which a function's arguments are
 * evaluated is unspecified: gcc passed n before the encoder had set it). */
static void check_same(int rv, const uint8_t *data, size_t size, size_t n)
{
    if (rv != 0 || n != size || memcmp(reenc, data, size) != 0)
        abort(); /* accepted bytes that are not canonical */
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    size_t n = 0;
    struct corral_raft_msg m;
    if (corral_codec_msg_decode(data, size, &m) == 0) {
        if (size <= REENC_CAP) {
            int rv = corral_codec_msg_encode(&m, reenc, REENC_CAP, &n);
            check_same(rv, data, size, n);
        }
        corral_raft_msg_clear(&m);
    }
    struct corral_raft_entry e;
    if (corral_codec_entry_decode(data, size, &e) == 0) {
        if (size <= REENC_CAP) {
            int rv = corral_codec_entry_encode(&e, reenc, REENC_CAP, &n);
            check_same(rv, data, size, n);
        }
        corral_rbuf_unref(e.data);
    }
    struct corral_raft_hard_state hs;
    if (corral_codec_hard_state_decode(data, size, &hs) == 0) {
        int rv = corral_codec_hard_state_encode(&hs, reenc, REENC_CAP, &n);
        check_same(rv, data, size, n);
    }
    struct corral_raft_snapshot_meta meta;
    if (corral_codec_snapshot_meta_decode(data, size, &meta) == 0) {
        int rv = corral_codec_snapshot_meta_encode(&meta, reenc, REENC_CAP, &n);
        check_same(rv, data, size, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_one(data, size);
    if (size < 4)
        return 0;
    /* A copy of exactly size bytes, so ASan catches any over-read. */
    uint8_t *fixed = malloc(size);
    if (fixed == NULL)
        return 0;
    memcpy(fixed, data, size);
    uint32_t crc = corral_crc32c(0, fixed, size - 4);
    for (size_t i = 0; i < 4; i++)
        fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    fuzz_one(fixed, size);
    free(fixed);
    return 0;
}
