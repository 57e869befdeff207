/* Writes the seed corpora of the fuzz targets: a handful of valid inputs
 * each, made by the real encoders (and, for the handshake, by the layout
 * of transport.h), into DIR/corpus-<target>/seed-NN. The committed
 * tests/fuzz/corpus-* come from `scripts/fuzz.sh seeds`.
 *
 *     fuzz_seeds DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/codec.h"
#include "core/raft.h"
#include "fuzz_fixture.h"
#include "runtime/transport_impl.h"
#include "util/bytes.h"

static const char *root;
static unsigned counter;

static void put_file(const char *target, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/corpus-%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/corpus-%s/seed-%02u", root, target, counter++);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_rbuf(const char *target, struct corral_rbuf *b)
{
    FUZZ_REQUIRE(b != NULL);
    put_file(target, b->data, b->len);
    corral_rbuf_unref(b);
}

static void state_cmds(void)
{
    counter = 0;
    struct corral_state_cmd cmds[FIXTURE_CMDS_MAX + 8];
    size_t n = fixture_cmds(cmds);
    struct corral_state_cmd c = {0};
    c.type = CORRAL_STATE_MEMBER_DELETE;
    c.id = 3;
    cmds[n++] = c;
    c.type = CORRAL_STATE_RESOURCE_DELETE;
    c.id = 2;
    cmds[n++] = c;
    static const struct corral_partition_opv more[] = {
        {0, CORRAL_OP_RELEASE, 1, 1},
        {0, CORRAL_OP_CLEAR, 1, 1},
        {1, CORRAL_OP_MARK_IN_SYNC, 3, 0},
        {2, CORRAL_OP_DROP, 2, 0},
    };
    struct corral_state_cmd ops = {0};
    ops.type = CORRAL_STATE_PARTITION_OPS;
    ops.id = 1;
    ops.n_ops = sizeof(more) / sizeof(more[0]);
    ops.ops = more;
    cmds[n++] = ops;
    struct corral_state_cmd del = fixture_kv("cfg/a", "");
    del.kv.op = CORRAL_KV_DEL;
    del.kv.value = NULL;
    del.kv.value_len = 0;
    del.kv.has_cas = true;
    del.kv.cas = 8;
    cmds[n++] = del;
    for (size_t i = 0; i < n; i++)
        put_rbuf("state_cmd", corral_state_cmd_encode(&cmds[i]));
    /* A version-1 payload: a config store command as the WAL held it. */
    put_rbuf("state_cmd", corral_kv_cmd_encode(&cmds[n - 1].kv));
}

static void snapshots(void)
{
    counter = 0;
    struct corral_state *st = corral_state_new();
    FUZZ_REQUIRE(st != NULL);
    put_rbuf("state_restore", corral_state_snapshot(st));
    corral_state_free(st);
    st = fixture_state();
    put_rbuf("state_restore", corral_state_snapshot(st));
    /* A version-1 snapshot (the config store's alone). */
    put_rbuf("state_restore", corral_kv_snapshot(corral_state_kv(st)));
    corral_state_free(st);
}

static void kv(void)
{
    counter = 0;
    struct corral_kv_cmd put = {.op = CORRAL_KV_PUT,
                                .key = (const uint8_t *)"cfg/a",
                                .key_len = 5,
                                .value = (const uint8_t *)"value",
                                .value_len = 5};
    put_rbuf("kv", corral_kv_cmd_encode(&put));
    put.has_cas = true;
    put.cas = 8;
    put_rbuf("kv", corral_kv_cmd_encode(&put));
    struct corral_kv_cmd del = {.op = CORRAL_KV_DEL, .key = (const uint8_t *)"cfg/b", .key_len = 5};
    put_rbuf("kv", corral_kv_cmd_encode(&del));
    struct corral_kv *k = corral_kv_new();
    FUZZ_REQUIRE(k != NULL);
    put_rbuf("kv", corral_kv_snapshot(k));
    corral_kv_free(k);
    struct corral_state *st = fixture_state();
    put_rbuf("kv", corral_kv_snapshot(corral_state_kv(st)));
    corral_state_free(st);
}

/* The layouts of transport.h, as transport_hs.c builds them. */
static void handshakes(void)
{
    counter = 0;
    const char *http = "127.0.0.1:8140";
    size_t hl = strlen(http);
    uint8_t b[HS_BYTES_MAX];
    /* Hellos from node 1 to node 2 of the harness's cluster: accepted, and
     * one from another cluster (refused). */
    static const uint64_t clusters[] = {0xc0ffee00c0ffeeull, 0x1234};
    for (size_t i = 0; i < 2; i++) {
        memcpy(b, "CRLH", 4);
        b[4] = CORRAL_TRANSPORT_VERSION;
        corral_put_le64(b + 5, clusters[i]);
        corral_put_le64(b + 13, 1);
        corral_put_le64(b + 21, 2);
        corral_put_le16(b + 29, (uint16_t)hl);
        memcpy(b + HELLO_FIXED_BYTES, http, hl);
        size_t n = HELLO_FIXED_BYTES + hl;
        corral_put_le32(b + n, corral_crc32c(0, b, n));
        put_file("transport_hs", b, n + 4);
    }
    /* Replies from node 2: OK, and a refusal (wrong node). */
    for (uint8_t status = 0; status < 3; status += 2) {
        memcpy(b, "CRLR", 4);
        b[4] = CORRAL_TRANSPORT_VERSION;
        b[5] = status;
        corral_put_le64(b + 6, clusters[0]);
        corral_put_le64(b + 14, 2);
        corral_put_le16(b + 22, (uint16_t)hl);
        memcpy(b + REPLY_FIXED_BYTES, http, hl);
        size_t n = REPLY_FIXED_BYTES + hl;
        corral_put_le32(b + n, corral_crc32c(0, b, n));
        put_file("transport_hs", b, n + 4);
    }
}

static void codec(void)
{
    counter = 0;
    static uint8_t buf[1 << 16];
    size_t n = 0;
    struct corral_raft_hard_state hs = {.term = 7, .vote = 2, .commit = 41};
    FUZZ_REQUIRE(corral_codec_hard_state_encode(&hs, buf, sizeof(buf), &n) == 0);
    put_file("codec", buf, n);
    struct corral_raft_snapshot_meta meta = {.index = 40, .term = 6};
    meta.conf.n_voters = 3;
    meta.conf.voters[0] = 1;
    meta.conf.voters[1] = 2;
    meta.conf.voters[2] = 3;
    meta.conf.n_learners = 1;
    meta.conf.learners[0] = 4;
    FUZZ_REQUIRE(corral_codec_snapshot_meta_encode(&meta, buf, sizeof(buf), &n) == 0);
    put_file("codec", buf, n);
    struct corral_state_cmd c = fixture_member("a", "z1");
    struct corral_raft_entry e = {.term = 7, .index = 42, .type = CORRAL_RAFT_ENTRY_NORMAL};
    e.data = corral_state_cmd_encode(&c);
    FUZZ_REQUIRE(e.data != NULL);
    FUZZ_REQUIRE(corral_codec_entry_encode(&e, buf, sizeof(buf), &n) == 0);
    put_file("codec", buf, n);
    struct corral_raft_msg m = {0};
    m.type = CORRAL_RAFT_MSG_APPEND;
    m.from = 1;
    m.to = 2;
    m.term = 7;
    m.index = 41;
    m.log_term = 6;
    m.commit = 41;
    m.n_entries = 1;
    m.entries = &e;
    FUZZ_REQUIRE(corral_codec_msg_encode(&m, buf, sizeof(buf), &n) == 0);
    put_file("codec", buf, n);
    struct corral_raft_msg v = {0};
    v.type = CORRAL_RAFT_MSG_VOTE;
    v.from = 3;
    v.to = 1;
    v.term = 8;
    v.index = 42;
    v.log_term = 7;
    FUZZ_REQUIRE(corral_codec_msg_encode(&v, buf, sizeof(buf), &n) == 0);
    put_file("codec", buf, n);
    corral_rbuf_unref(e.data);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    root = argv[1];
    state_cmds();
    snapshots();
    kv();
    handshakes();
    codec();
    return 0;
}
