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
#include <unistd.h>

#include "core/codec.h"
#include "core/raft.h"
#include "fuzz_fixture.h"
#include "runtime/storage.h"
#include "runtime/storage_impl.h"
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

/* The strings section of transport.h (HTTP address, cluster name, cluster
 * address) at b; returns its length. */
static size_t hs_strings(uint8_t *b, const char *http, const char *name, const char *addr)
{
    size_t hl = strlen(http), nl = strlen(name), al = strlen(addr);
    corral_put_le16(b, (uint16_t)hl);
    memcpy(b + 2, http, hl);
    b[2 + hl] = (uint8_t)nl;
    memcpy(b + 3 + hl, name, nl);
    corral_put_le16(b + 3 + hl + nl, (uint16_t)al);
    memcpy(b + 5 + hl + nl, addr, al);
    return 5 + hl + nl + al;
}

/* The layouts of transport.h, as transport_hs.c builds them, for the
 * harness's cluster (id and name "corral") and nodes (1 dials 2). */
static void handshakes(void)
{
    counter = 0;
    const char *http = "127.0.0.1:8140", *addr = "[::1]:7001", *addr2 = "127.0.0.1:7002";
    uint8_t b[HS_BYTES_MAX];
    /* Hellos from node 1 to node 2: accepted, one from another cluster id
     * and one with another cluster name (refused). */
    static const uint64_t clusters[] = {0xc0ffee00c0ffeeull, 0x1234, 0xc0ffee00c0ffeeull};
    static const char *const names[] = {"corral", "corral", "blue"};
    for (size_t i = 0; i < 3; i++) {
        memcpy(b, "CRLH", 4);
        b[4] = CORRAL_TRANSPORT_VERSION;
        corral_put_le64(b + 5, clusters[i]);
        corral_put_le64(b + 13, 1);
        corral_put_le64(b + 21, 2);
        size_t n =
            HELLO_FIXED_BYTES - 2 + hs_strings(b + HELLO_FIXED_BYTES - 2, http, names[i], addr);
        corral_put_le32(b + n, corral_crc32c(0, b, n));
        put_file("transport_hs", b, n + 4);
    }
    /* Replies from node 2: OK, a refusal (wrong node), and one for another
     * cluster name (status 6). */
    static const uint8_t statuses[] = {0, 2, 6};
    for (size_t i = 0; i < 3; i++) {
        memcpy(b, "CRLR", 4);
        b[4] = CORRAL_TRANSPORT_VERSION;
        b[5] = statuses[i];
        corral_put_le64(b + 6, clusters[0]);
        corral_put_le64(b + 14, 2);
        size_t n = REPLY_FIXED_BYTES - 2 +
                   hs_strings(b + REPLY_FIXED_BYTES - 2, "127.0.0.1:8142",
                              statuses[i] == 6 ? "green" : "corral", addr2);
        corral_put_le32(b + n, corral_crc32c(0, b, n));
        put_file("transport_hs", b, n + 4);
    }
    /* Version 4 (a token): a hello with its nonce, followed by a proof
     * frame (its proof zeros: the harness also sends the right one), and
     * an OK reply (the harness puts the acceptor's proof in). */
    memcpy(b, "CRLH", 4);
    b[4] = CORRAL_TRANSPORT_VERSION_AUTH;
    corral_put_le64(b + 5, clusters[0]);
    corral_put_le64(b + 13, 1);
    corral_put_le64(b + 21, 2);
    memset(b + 29, 0x5a, HS_NONCE_BYTES);
    size_t n =
        HELLO4_FIXED_BYTES - 2 + hs_strings(b + HELLO4_FIXED_BYTES - 2, http, "corral", addr);
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    n += 4;
    memcpy(b + n, "CRLP", 4);
    memset(b + n + 4, 0, 1 + HS_PROOF_BYTES);
    corral_put_le32(b + n + 5 + HS_PROOF_BYTES, corral_crc32c(0, b + n, 5 + HS_PROOF_BYTES));
    put_file("transport_hs", b, n + PROOF_FRAME_BYTES);
    memcpy(b, "CRLR", 4);
    b[4] = CORRAL_TRANSPORT_VERSION_AUTH;
    b[5] = 0;
    corral_put_le64(b + 6, clusters[0]);
    corral_put_le64(b + 14, 2);
    memset(b + 22, 0xa5, HS_NONCE_BYTES + HS_PROOF_BYTES);
    n = REPLY4_FIXED_BYTES - 2 +
        hs_strings(b + REPLY4_FIXED_BYTES - 2, "127.0.0.1:8142", "corral", addr2);
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    put_file("transport_hs", b, n + 4);
    /* An older corral's version 1 hello (no cluster name nor address):
     * refused for its version. */
    memcpy(b, "CRLH", 4);
    b[4] = 1;
    corral_put_le64(b + 5, clusters[0]);
    corral_put_le64(b + 13, 1);
    corral_put_le64(b + 21, 2);
    corral_put_le16(b + 29, (uint16_t)strlen(http));
    memcpy(b + 31, http, strlen(http));
    n = 31 + strlen(http);
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    put_file("transport_hs", b, n + 4);
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

/* ---- WAL recovery: data directories written by the real storage ---- */

static uint8_t *slurp(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    FUZZ_REQUIRE(f != NULL);
    static uint8_t buf[1 << 16];
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    uint8_t *b = malloc(*len > 0 ? *len : 1);
    FUZZ_REQUIRE(b != NULL);
    memcpy(b, buf, *len);
    return b;
}

static void rm_dir(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    FUZZ_REQUIRE(system(cmd) == 0);
}

/* A fuzz_wal input: its 8-byte header (fuzz_wal.c), then the files. */
static void put_wal(uint8_t flags, uint8_t first, const uint8_t *hs, size_t hs_len,
                    uint8_t snap_idx, const uint8_t *snap, size_t snap_len, const uint8_t *w1,
                    size_t n1, const uint8_t *w2, size_t n2)
{
    size_t n = 8 + hs_len + snap_len + n1 + n2;
    uint8_t *b = malloc(n);
    FUZZ_REQUIRE(b != NULL);
    b[0] = flags;
    b[1] = first;
    corral_put_le16(b + 2, (uint16_t)n1);
    b[4] = (uint8_t)hs_len;
    b[5] = snap_idx;
    corral_put_le16(b + 6, (uint16_t)snap_len);
    size_t off = 8;
    if (hs_len > 0)
        memcpy(b + off, hs, hs_len);
    off += hs_len;
    if (snap_len > 0)
        memcpy(b + off, snap, snap_len);
    off += snap_len;
    memcpy(b + off, w1, n1);
    off += n1;
    if (n2 > 0)
        memcpy(b + off, w2, n2);
    put_file("wal", b, n);
    free(b);
}

static void append(struct corral_storage *s, uint64_t term, uint64_t index, const char *text)
{
    struct corral_raft_entry e = {.term = term,
                                  .index = index,
                                  .type = CORRAL_RAFT_ENTRY_NORMAL,
                                  .data = corral_rbuf_new(text, (uint32_t)strlen(text))};
    FUZZ_REQUIRE(e.data != NULL && corral_storage_append(s, &e, 1) == 0);
    corral_rbuf_unref(e.data);
}

static void wal(void)
{
    char dir[] = "/tmp/corral-seeds-XXXXXX";
    FUZZ_REQUIRE(mkdtemp(dir) != NULL);
    const struct corral_storage_ident id = {.node_id = 3, .cluster_id = 0xc0ffee};
    struct corral_storage *s;
    struct corral_storage_state st;
    char err[256];
    /* One segment: three entries and a hard state between them. */
    FUZZ_REQUIRE(corral_storage_open(dir, &id, &s, &st, err, sizeof(err)) == 0);
    append(s, 1, 1, "one");
    struct corral_raft_hard_state hs = {.term = 1, .vote = 3, .commit = 1};
    FUZZ_REQUIRE(corral_storage_set_hard_state(s, &hs) == 0);
    append(s, 1, 2, "two");
    append(s, 2, 3, "three");
    FUZZ_REQUIRE(corral_storage_sync(s) == 0);
    corral_storage_close(s);
    corral_storage_state_free(&st);
    size_t n;
    uint8_t *w = slurp(dir, "wal-0000000000000001.log", &n);
    put_wal(0, 1, NULL, 0, 0, NULL, 0, w, n, NULL, 0);
    put_wal(1 | 32, 1, NULL, 0, 0, NULL, 0, w, n, NULL, 0); /* FIX, APPEND */
    put_wal(0, 1, NULL, 0, 0, NULL, 0, w, n - 5, NULL, 0);  /* a torn tail */
    /* The same log split in two segments (the second from entry 3). */
    size_t cut = n;
    for (size_t off = 0; off < n;) {
        uint32_t plen = corral_get_le32(w + off);
        struct corral_raft_entry e;
        if (w[off + 4] == REC_ENTRY &&
            corral_codec_entry_decode(w + off + REC_HEADER_BYTES, plen, &e) == 0) {
            if (e.index == 3)
                cut = off;
            corral_rbuf_unref(e.data);
        }
        off += REC_OVERHEAD + plen;
    }
    uint8_t hdr[REC_OVERHEAD + REC_SEGMENT_BYTES];
    corral_put_le32(hdr + REC_HEADER_BYTES, WAL_MAGIC);
    corral_put_le32(hdr + REC_HEADER_BYTES + 4, CORRAL_STORAGE_FORMAT_VERSION);
    corral_put_le64(hdr + REC_HEADER_BYTES + 8, 3);
    storage_rec_seal(hdr, REC_SEGMENT, REC_SEGMENT_BYTES);
    size_t n2 = sizeof(hdr) + (n - cut);
    uint8_t *w2 = malloc(n2);
    FUZZ_REQUIRE(w2 != NULL);
    memcpy(w2, hdr, sizeof(hdr));
    memcpy(w2 + sizeof(hdr), w + cut, n - cut);
    put_wal(2, 1, NULL, 0, 0, NULL, 0, w, cut, w2, n2);
    free(w2);
    free(w);
    /* A snapshot at 2, the hard state checkpoint its truncation of the
     * log wrote, and the log after it. */
    FUZZ_REQUIRE(corral_storage_open(dir, &id, &s, &st, err, sizeof(err)) == 0);
    struct corral_raft_snapshot_meta meta = {.index = 2, .term = 1};
    meta.conf.n_voters = 1;
    meta.conf.voters[0] = 3;
    struct corral_rbuf *data = corral_rbuf_new("snapshot", 8);
    FUZZ_REQUIRE(data != NULL && corral_storage_save_snapshot(s, &meta, data) == 0);
    corral_rbuf_unref(data);
    append(s, 2, 3, "three again");
    append(s, 2, 4, "four");
    FUZZ_REQUIRE(corral_storage_sync(s) == 0);
    corral_storage_close(s);
    corral_storage_state_free(&st);
    size_t ns, nh = 0;
    uint8_t *sn = slurp(dir, "snap-0000000000000002.snap", &ns);
    w = slurp(dir, "wal-0000000000000001.log", &n);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, HARD_STATE_NAME);
    uint8_t *h = access(path, F_OK) == 0 ? slurp(dir, HARD_STATE_NAME, &nh) : NULL;
    put_wal(h != NULL ? 8 | 4 : 8, 1, h, nh, 2, sn, ns, w, n, NULL, 0);
    put_wal(h != NULL ? 1 | 8 | 4 | 32 : 1 | 8 | 32, 1, h, nh, 2, sn, ns, w, n, NULL, 0);
    free(h);
    free(w);
    free(sn);
    rm_dir(dir);
}

/* ---- The config file and HTTP requests: text ---- */

static void put_text(const char *target, const char *text)
{
    put_file(target, text, strlen(text));
}

static void config(void)
{
    put_text("config", "id = 2\ndata-dir = /var/lib/corral\n"
                       "peers = 127.0.0.1:8139,127.0.0.2:8139,127.0.0.3:8139\n");
    put_text("config", "; a comment\n[server]\ncluster-addr = 10.0.0.1:8139\n"
                       "http-addr = 10.0.0.1:8140\nlog-level = debug\nauth-reads = true\n");
    put_text("config", "election-timeout-ms = 300\nheartbeat-ms = 50\nsnapshot-entries = 1000\n"
                       "request-timeout-ms = 5000\nmax-connections = 64\n"
                       "member-heartbeat-ms = 250\nlease-ms = 1000\nmax-drift-percent = 10\n");
    put_text("config", "[server]\ntls-cert = c.pem\ntls-key = k.pem\ntls-ca = ca.pem\n"
                       "token-file = /etc/corral/token\n");
    put_text("config", "id = 1\n  continued\n");
    put_text("config", "[agent]\nid = 1\nid = 2\nbogus = 3\n");
}

/* fuzz_http: two flag bytes, then requests separated by "\n~~\n". */
static void put_http(uint8_t flags, uint8_t flags2, const char *requests)
{
    size_t n = strlen(requests);
    uint8_t *b = malloc(n + 2);
    FUZZ_REQUIRE(b != NULL);
    b[0] = flags;
    b[1] = flags2;
    memcpy(b + 2, requests, n);
    put_file("http", b, n + 2);
    free(b);
}

static void http(void)
{
    put_http(0, 0, "GET /health\n~~\nGET /health/ready\n~~\nGET /v1/status\n~~\nGET /metrics");
    put_http(0, 0,
             "PUT /v1/kv/app/a?cas=0\n\nhello\n~~\nGET /v1/kv/app/a\n~~\n"
             "GET /v1/kv?prefix=app/&limit=10\n~~\nDELETE /v1/kv/app/a?cas=101\n~~\n"
             "GET /v1/kv/cfg%2Fa");
    put_http(0, 0,
             "PUT /v1/members/d\nContent-Type: application/json\n\n"
             "{\"addr\":\"10.0.0.4:7000\",\"zone\":\"z1\",\"weight\":100}\n~~\n"
             "GET /v1/members\n~~\nGET /v1/members/a\n~~\n"
             "POST /v1/members/a/heartbeat\n\n{\"index\":0}\n~~\n"
             "POST /v1/members/c/status\n\n{\"status\":\"draining\"}\n~~\n"
             "DELETE /v1/members/b");
    put_http(0, 0,
             "PUT /v1/resources/s\n\n{\"partitions\":8,\"replicas\":2}\n~~\n"
             "GET /v1/resources\n~~\nGET /v1/resources/r\n~~\n"
             "GET /v1/resources/r/partitions/0\n~~\nDELETE /v1/resources/q");
    put_http(0, 0,
             "GET /v1/members?index=1&wait=1s\n~~\nGET /v1/events?index=1&wait=500ms\n~~\n"
             "PUT /v1/kv/x\n\n1\n~~\nGET /v1/events?index=0");
    put_http(8, 0,
             "PUT /v1/kv/x\n\n1\n~~\nPUT /v1/kv/x\nAuthorization: Bearer "
             "fuzz-token-0123456789abcdef\n\n1\n~~\nGET /v1/kv/x");
    put_http(8 | 16, 0,
             "GET /v1/status\n~~\nGET /health\n~~\nGET /v1/kv/x\nAuthorization: "
             "bearer  fuzz-token-0123456789abcdef \n");
    put_http(1, 0, "PUT /v1/kv/x?cas=0\n\n1\n~~\nGET /v1/kv/x?stale\n~~\nGET /v1/status");
    put_http(2 | 4, 0, "PUT /v1/kv/x\n\n1\n~~\nGET /health/ready");
    put_http(64, 2, "PUT /v1/kv/x\n\n1\n~~\nGET /v1/kv/x\n~~\nPOST /v1/kv/x\n~~\nGET /nope");
    put_http(32 | 128, 1, "PUT /v1/kv/x\n\n1\n~~\nPUT /v1/members/e\n\n{}");
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
    wal();
    config();
    http();
    return 0;
}
