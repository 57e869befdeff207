/* Unit tests for src/runtime/transport.c over real sockets on 127.0.0.1:
 * exchanges between transports in one loop, refused handshakes, restarts,
 * drops, hostile raw clients, and release of everything on stop. Every
 * wait is bounded by a uv timer. TRANSPORT_LOG=1 prints the log lines. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <signal.h>
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
#include "runtime/transport.h"
#include "util/crc32c.h"
#include "util/mem.h"
#include "util/rbuf.h"

#define NODES 3
#define WAIT_MS 5000
#define CLUSTER 0xc0ffee

struct node {
    struct corral_transport *t;
    uint64_t id;
    uint16_t port;
    bool closed;
    uint64_t got[NODES + 2];        /* messages received, by sender id */
    uint64_t next_index[NODES + 2]; /* the index expected next, per sender */
    uint64_t bad;                   /* out of order or wrong payload */
    char http[NODES + 2][CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    /* on_peer_addr's, by peer id: what it advertised, and how often. */
    char addr_cluster[NODES + 2][CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
    char addr_http[NODES + 2][CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    uint64_t addr_calls[NODES + 2];
    uint64_t refuse_logs;
    uint64_t accepted_logs; /* "accepted node" lines: handshakes it accepted */
    /* Lines with log_match: the last of each side's refusals, and counts. */
    char acc_log[512];  /* "refused hello from ..." (its acceptor refusing) */
    char dial_log[512]; /* "refused our hello ..." (its dialer refused) */
    uint64_t acc_logs, dial_logs;
    uint64_t remove_on_addr; /* on_peer_addr removes this peer (0: none) */
    uint64_t snaps;          /* intact SNAPSHOT chunks received */
};

struct fx {
    uv_loop_t loop;
    uv_timer_t tick;
    bool (*pred)(struct fx *f);
    uint64_t deadline_ms;
    struct node nodes[NODES];
    int stopping; /* the node node_stop waits for */
};

/* ---- loop driving ---- */

static void tick_cb(uv_timer_t *timer)
{
    struct fx *f = timer->data;
    if (f->pred(f) || uv_now(&f->loop) >= f->deadline_ms)
        uv_stop(&f->loop);
}

/* Runs the loop until pred holds or timeout_ms pass; returns pred. */
static bool run_until(struct fx *f, bool (*pred)(struct fx *f), uint64_t timeout_ms)
{
    f->pred = pred;
    uv_update_time(&f->loop);
    f->deadline_ms = uv_now(&f->loop) + timeout_ms;
    uv_timer_start(&f->tick, tick_cb, 1, 2);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&f->tick);
    return pred(f);
}

static bool never(struct fx *f)
{
    (void)f;
    return false;
}

static void run_for(struct fx *f, uint64_t ms)
{
    run_until(f, never, ms);
}

/* ---- messages ---- */

static uint8_t pattern(uint64_t index, uint32_t i)
{
    return (uint8_t)(index * 31 + i);
}

/* An APPEND from -> to with two entries whose payloads derive from index. */
static void make_append(struct corral_raft_msg *m, uint64_t from, uint64_t to, uint64_t index)
{
    memset(m, 0, sizeof(*m));
    m->type = CORRAL_RAFT_MSG_APPEND;
    m->from = from;
    m->to = to;
    m->term = 3;
    m->index = index;
    m->n_entries = 2;
    m->entries = corral_calloc(2, sizeof(*m->entries));
    assert_non_null(m->entries);
    for (uint32_t e = 0; e < 2; e++) {
        uint32_t len = (uint32_t)(index % 100) + e;
        struct corral_rbuf *b = corral_rbuf_new(NULL, len);
        assert_non_null(b);
        for (uint32_t i = 0; i < len; i++)
            b->data[i] = pattern(index + e, i);
        m->entries[e] = (struct corral_raft_entry){
            .term = 3, .index = index + 1 + e, .type = CORRAL_RAFT_ENTRY_NORMAL, .data = b};
    }
}

static bool append_ok(const struct corral_raft_msg *m)
{
    if (m->type != CORRAL_RAFT_MSG_APPEND || m->n_entries != 2)
        return false;
    for (uint32_t e = 0; e < 2; e++) {
        const struct corral_raft_entry *en = &m->entries[e];
        uint32_t len = (uint32_t)(m->index % 100) + e;
        uint32_t got = en->data != NULL ? en->data->len : 0;
        if (en->index != m->index + 1 + e || got != len)
            return false;
        for (uint32_t i = 0; i < len; i++)
            if (en->data->data[i] != pattern(m->index + e, i))
                return false;
    }
    return true;
}

#define BIG_CHUNK_BYTES (1u << 20)

/* A SNAPSHOT with a whole 1 MiB chunk: larger than any send chunk or the
 * receive buffer at rest. */
static int send_snapshot(struct node *n, uint64_t to, uint64_t offset)
{
    struct corral_raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = CORRAL_RAFT_MSG_SNAPSHOT;
    m.from = n->id;
    m.to = to;
    m.term = 3;
    m.offset = offset;
    m.size = offset + BIG_CHUNK_BYTES;
    m.chunk = corral_rbuf_new(NULL, BIG_CHUNK_BYTES);
    assert_non_null(m.chunk);
    for (uint32_t i = 0; i < BIG_CHUNK_BYTES; i++)
        m.chunk->data[i] = pattern(offset, i);
    int rc = corral_transport_send(n->t, &m);
    corral_raft_msg_clear(&m);
    return rc;
}

static bool chunk_ok(const struct corral_raft_msg *m)
{
    if (m->chunk == NULL || m->chunk->len != BIG_CHUNK_BYTES)
        return false;
    for (uint32_t i = 0; i < BIG_CHUNK_BYTES; i++)
        if (m->chunk->data[i] != pattern(m->offset, i))
            return false;
    return true;
}

static int send_append(struct node *n, uint64_t to, uint64_t index)
{
    struct corral_raft_msg m;
    make_append(&m, n->id, to, index);
    int rc = corral_transport_send(n->t, &m);
    corral_raft_msg_clear(&m);
    return rc;
}

/* ---- transport callbacks ---- */

static void on_msg(void *ud, const struct corral_raft_msg *m)
{
    struct node *n = ud;
    assert_int_equal(m->to, n->id);
    assert_true(m->from < NODES + 2);
    if (m->type == CORRAL_RAFT_MSG_SNAPSHOT) {
        n->snaps += chunk_ok(m);
        return;
    }
    if (!append_ok(m) || m->index != n->next_index[m->from])
        n->bad++;
    n->next_index[m->from] = m->index + 1;
    n->got[m->from]++;
}

static void on_peer_http(void *ud, uint64_t peer, const char *http)
{
    struct node *n = ud;
    if (peer < NODES + 2)
        snprintf(n->http[peer], sizeof(n->http[peer]), "%s", http);
}

static void on_peer_addr(void *ud, uint64_t peer, const char *cluster_addr, const char *http)
{
    struct node *n = ud;
    assert_non_null(cluster_addr);
    assert_non_null(http);
    if (peer < NODES + 2) {
        snprintf(n->addr_cluster[peer], sizeof(n->addr_cluster[peer]), "%s", cluster_addr);
        snprintf(n->addr_http[peer], sizeof(n->addr_http[peer]), "%s", http);
        n->addr_calls[peer]++;
    }
    if (n->remove_on_addr == peer)
        assert_int_equal(corral_transport_remove_peer(n->t, peer), 0);
}

/* A substring the tests look for in log lines (NULL: none). */
static const char *log_match;

static void on_log(void *ud, int level, const char *msg)
{
    struct node *n = ud;
    if (strstr(msg, "refused") != NULL)
        n->refuse_logs++;
    if (strstr(msg, "accepted node") != NULL)
        n->accepted_logs++;
    if (log_match != NULL && strstr(msg, log_match) != NULL) {
        if (strstr(msg, "refused hello from") != NULL) {
            snprintf(n->acc_log, sizeof(n->acc_log), "%s", msg);
            n->acc_logs++;
        } else {
            snprintf(n->dial_log, sizeof(n->dial_log), "%s", msg);
            n->dial_logs++;
        }
    }
    if (getenv("TRANSPORT_LOG") != NULL)
        fprintf(stderr, "[node %llu L%d] %s\n", (unsigned long long)n->id, level, msg);
}

static void on_closed(void *ud)
{
    struct node *n = ud;
    n->closed = true;
}

/* ---- nodes ---- */

/* The cluster token each node starts with (NULL: none), its cluster name
 * and advertised address (NULL: the defaults); reset per test. */
static const struct corral_tokens *node_tokens[NODES];
static const char *node_names[NODES];
static const char *node_advertise[NODES];

static void node_start_queue(struct fx *f, int i, uint64_t cluster, uint16_t port,
                             size_t queue_max_bytes)
{
    struct node *n = &f->nodes[i];
    uint64_t id = n->id;
    memset(n, 0, sizeof(*n));
    n->id = id;
    char http[64];
    snprintf(http, sizeof(http), "127.0.0.1:%d", 9000 + i);
    struct corral_transport_config cfg = {.cluster_id = cluster,
                                          .node_id = n->id,
                                          .listen_host = "127.0.0.1",
                                          .listen_port = port,
                                          .http_addr = http,
                                          .queue_max_bytes = queue_max_bytes,
                                          .tokens = node_tokens[i],
                                          .cluster_name = node_names[i],
                                          .advertise_addr = node_advertise[i]};
    struct corral_transport_callbacks cb = {.ud = n,
                                            .on_msg = on_msg,
                                            .on_peer_http = on_peer_http,
                                            .on_peer_addr = on_peer_addr,
                                            .log = on_log};
    char err[256] = "";
    int rc = corral_transport_start(&f->loop, &cfg, &cb, &n->t, err, sizeof(err));
    if (rc != 0)
        fail_msg("start: %s", err);
    n->port = corral_transport_port(n->t);
    assert_int_not_equal(n->port, 0);
}

static void node_start(struct fx *f, int i, uint64_t cluster)
{
    node_start_queue(f, i, cluster, 0, 0);
}

static bool all_closed(struct fx *f)
{
    for (int i = 0; i < NODES; i++)
        if (f->nodes[i].t != NULL && !f->nodes[i].closed)
            return false;
    return true;
}

static bool node_closed(struct fx *f)
{
    return f->nodes[f->stopping].closed;
}

static void node_stop(struct fx *f, int i)
{
    struct node *n = &f->nodes[i];
    corral_transport_stop(n->t, on_closed, n);
    f->stopping = i;
    assert_true(run_until(f, node_closed, WAIT_MS));
    n->t = NULL;
}

static void link(struct fx *f, int from, int to)
{
    struct node *a = &f->nodes[from], *b = &f->nodes[to];
    assert_int_equal(corral_transport_add_peer(a->t, b->id, "127.0.0.1", b->port), 0);
}

static struct corral_transport_peer_stats stats_of(struct node *n, uint64_t peer)
{
    struct corral_transport_peer_stats st[CORRAL_RAFT_NODES_MAX];
    uint32_t count = corral_transport_stats(n->t, st, CORRAL_RAFT_NODES_MAX);
    for (uint32_t i = 0; i < count; i++)
        if (st[i].id == peer)
            return st[i];
    fail_msg("no stats for peer %llu", (unsigned long long)peer);
    return st[0];
}

static bool connected(struct fx *f, int from, int to)
{
    return f->nodes[from].t != NULL && stats_of(&f->nodes[from], f->nodes[to].id).connected;
}

static bool mesh_connected(struct fx *f)
{
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            if (i != j && !connected(f, i, j))
                return false;
    return true;
}

static bool pair_connected(struct fx *f)
{
    return connected(f, 0, 1) && connected(f, 1, 0);
}

static bool pair_connected_0_1(struct fx *f)
{
    return connected(f, 0, 1);
}

static bool pair_connected_1_0(struct fx *f)
{
    return connected(f, 1, 0);
}

static int setup(void **state)
{
    struct fx *f = corral_calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    f->tick.data = f;
    for (int i = 0; i < NODES; i++) {
        f->nodes[i].id = (uint64_t)i + 1;
        node_tokens[i] = NULL;
        node_names[i] = NULL;
        node_advertise[i] = NULL;
    }
    log_match = NULL;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        if (f->nodes[i].t != NULL)
            corral_transport_stop(f->nodes[i].t, on_closed, &f->nodes[i]);
    assert_true(run_until(f, all_closed, WAIT_MS));
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle released */
    corral_free(f);
    return 0;
}

/* ---- a raw client speaking (or mangling) the wire format ---- */

struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t out[1024];
    size_t out_len;
    uint8_t in[1024];
    size_t in_len;
    bool done; /* EOF or error from the transport's side */
};

static struct raw *the_raw;

static void raw_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct raw *r = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)r->in + r->in_len, (unsigned)(sizeof(r->in) - r->in_len));
}

static void raw_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    (void)buf;
    if (nread > 0)
        r->in_len += (size_t)nread;
    if (nread < 0 && !r->done) {
        r->done = true;
        uv_read_stop(s);
    }
}

static void raw_write_cb(uv_write_t *req, int status)
{
    (void)req;
    (void)status; /* the transport may close first */
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    assert_int_equal(status, 0);
    uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->out_len);
    assert_int_equal(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_write_cb), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc_cb, raw_read_cb), 0);
}

static bool raw_done(struct fx *f)
{
    (void)f;
    return the_raw->done;
}

/* Connects to node i, sends r->out, and waits for the transport to close
 * the connection; returns whether it did. */
static bool raw_session(struct fx *f, struct raw *r, int i)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", f->nodes[i].port, &a);
    uv_tcp_init(&f->loop, &r->tcp);
    r->tcp.data = r->creq.data = r;
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&a, raw_connect_cb),
                     0);
    the_raw = r;
    bool closed = run_until(f, raw_done, WAIT_MS);
    uv_close((uv_handle_t *)&r->tcp, NULL);
    run_for(f, 1);
    return closed;
}

static void le(uint8_t *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* The strings section of transport.h at b: returns its length. */
static size_t raw_strings(uint8_t *b, const char *http, const char *name, const char *addr)
{
    size_t hl = strlen(http), nl = strlen(name), al = strlen(addr);
    le(b, hl, 2);
    memcpy(b + 2, http, hl);
    b[2 + hl] = (uint8_t)nl;
    memcpy(b + 3 + hl, name, nl);
    le(b + 3 + hl + nl, al, 2);
    memcpy(b + 5 + hl + nl, addr, al);
    return 5 + hl + nl + al;
}

/* A version 3 hello as transport.h lays it out, with the given cluster
 * name and address; returns its length. */
static size_t raw_hello_named(uint8_t *b, uint64_t cluster, uint64_t from, uint64_t to,
                              const char *name, const char *addr)
{
    memcpy(b, "CRLH", 4);
    b[4] = CORRAL_TRANSPORT_VERSION;
    le(b + 5, cluster, 8);
    le(b + 13, from, 8);
    le(b + 21, to, 8);
    size_t n = 29 + raw_strings(b + 29, "10.0.0.9:80", name, addr);
    le(b + n, corral_crc32c(0, b, n), 4);
    return n + 4;
}

static size_t raw_hello(uint8_t *b, uint64_t cluster, uint64_t from, uint64_t to)
{
    return raw_hello_named(b, cluster, from, to, "corral", "10.0.0.9:7000");
}

/* A hello of an older corral: version 1 (open) or 2 (with a nonce), as
 * they were, without the cluster name and address. */
static size_t raw_hello_old(uint8_t *b, int version, uint64_t cluster, uint64_t from, uint64_t to)
{
    const char *http = "10.0.0.9:80";
    size_t hl = strlen(http), off = 29;
    memcpy(b, "CRLH", 4);
    b[4] = (uint8_t)version;
    le(b + 5, cluster, 8);
    le(b + 13, from, 8);
    le(b + 21, to, 8);
    if (version == 2) {
        memset(b + off, 0x5a, 16);
        off += 16;
    }
    le(b + off, hl, 2);
    memcpy(b + off + 2, http, hl);
    size_t n = off + 2 + hl;
    le(b + n, corral_crc32c(0, b, n), 4);
    return n + 4;
}

/* ---- tests ---- */

/* Three transports, every pair both ways, with entry payloads; order per
 * connection is kept. */
static void test_exchange(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        node_start(f, i, CLUSTER);
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            if (i != j)
                link(f, i, j);
    assert_true(run_until(f, mesh_connected, WAIT_MS));
    enum { PER_PAIR = 3000 };
    for (uint64_t k = 0; k < PER_PAIR; k++)
        for (int i = 0; i < NODES; i++)
            for (int j = 0; j < NODES; j++)
                if (i != j)
                    assert_int_equal(send_append(&f->nodes[i], f->nodes[j].id, k), 0);
    bool done = false;
    for (int round = 0; round < 100 && !done; round++) {
        run_for(f, 20);
        done = true;
        for (int j = 0; j < NODES; j++)
            for (int i = 0; i < NODES; i++)
                if (i != j && f->nodes[j].got[f->nodes[i].id] != PER_PAIR)
                    done = false;
    }
    assert_true(done);
    for (int j = 0; j < NODES; j++) {
        assert_int_equal(f->nodes[j].bad, 0);
        for (int i = 0; i < NODES; i++) {
            if (i == j)
                continue;
            char want[64];
            snprintf(want, sizeof(want), "127.0.0.1:%d", 9000 + i);
            assert_string_equal(f->nodes[j].http[f->nodes[i].id], want);
            /* on_peer_addr on both sides: once as the acceptor of i's
             * hello, once as the dialer i accepted; the default advertised
             * address is the listen host and the bound port. */
            assert_string_equal(f->nodes[j].addr_http[f->nodes[i].id], want);
            snprintf(want, sizeof(want), "127.0.0.1:%u", f->nodes[i].port);
            assert_string_equal(f->nodes[j].addr_cluster[f->nodes[i].id], want);
            assert_int_equal(f->nodes[j].addr_calls[f->nodes[i].id], 2);
            struct corral_transport_peer_stats st = stats_of(&f->nodes[i], f->nodes[j].id);
            assert_int_equal(st.sent_msgs, PER_PAIR);
            assert_int_equal(st.dropped_msgs, 0);
            assert_int_equal(st.queued_bytes, 0);
            assert_int_equal(st.connects, 1);
            struct corral_transport_peer_stats rs = stats_of(&f->nodes[j], f->nodes[i].id);
            assert_int_equal(rs.recv_msgs, PER_PAIR);
            assert_int_equal(rs.recv_bytes, st.sent_bytes);
        }
    }
}

static bool snaps_in(struct fx *f)
{
    return f->nodes[1].snaps == 6;
}

/* Frames larger than the resting buffers, interleaved with small ones;
 * and a message too big for any frame. */
static void test_large(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 0, 1);
    assert_true(run_until(f, pair_connected_0_1, WAIT_MS));
    for (uint64_t k = 0; k < 6; k++) {
        assert_int_equal(send_snapshot(&f->nodes[0], 2, k * 1000), 0);
        assert_int_equal(send_append(&f->nodes[0], 2, k), 0);
    }
    assert_true(run_until(f, snaps_in, WAIT_MS));
    assert_int_equal(f->nodes[1].got[1], 6);
    assert_int_equal(f->nodes[1].bad, 0);

    struct corral_raft_msg m;
    make_append(&m, 1, 2, 0);
    for (uint32_t e = 0; e < 2; e++) {
        corral_rbuf_unref(m.entries[e].data);
        m.entries[e].data = corral_rbuf_new(NULL, CORRAL_RAFT_ENTRY_BYTES_MAX);
        assert_non_null(m.entries[e].data);
    }
    struct corral_raft_entry *more = corral_realloc(m.entries, 10 * sizeof(*more));
    assert_non_null(more);
    m.entries = more;
    for (uint32_t e = 2; e < 10; e++)
        m.entries[e] = (struct corral_raft_entry){
            .term = 3, .index = e + 1, .data = corral_rbuf_ref(m.entries[0].data)};
    m.n_entries = 10;
    assert_int_equal(corral_transport_send(f->nodes[0].t, &m), CORRAL_ETOOBIG);
    corral_raft_msg_clear(&m);
}

static bool both_refused(struct fx *f)
{
    return stats_of(&f->nodes[0], f->nodes[1].id).refused >= 2 &&
           stats_of(&f->nodes[1], f->nodes[0].id).refused >= 2;
}

/* Different cluster ids: both dialers are refused, again after backoff,
 * both sides log it, nothing is delivered or connected. */
static void test_wrong_cluster(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER + 1);
    link(f, 0, 1);
    link(f, 1, 0);
    assert_true(run_until(f, both_refused, WAIT_MS));
    assert_false(connected(f, 0, 1));
    assert_false(connected(f, 1, 0));
    assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, 0), CORRAL_EFULL);
    run_for(f, 50);
    assert_int_equal(f->nodes[1].got[f->nodes[0].id], 0);
    assert_true(f->nodes[0].refuse_logs >= 2); /* its own refusal, and the peer's */
    assert_true(f->nodes[1].refuse_logs >= 2);
    struct corral_transport_peer_stats st = stats_of(&f->nodes[0], f->nodes[1].id);
    assert_true(st.wrong_cluster_refusals >= 1);
    assert_int_equal(st.their_cluster_id, CLUSTER + 1);
    assert_string_equal(st.their_cluster_name, "corral");
    assert_int_equal(f->nodes[0].addr_calls[f->nodes[1].id], 0);
}

static bool names_refused(struct fx *f)
{
    return stats_of(&f->nodes[0], f->nodes[1].id).wrong_cluster_refusals >= 2 &&
           stats_of(&f->nodes[1], f->nodes[0].id).wrong_cluster_refusals >= 2 &&
           f->nodes[0].acc_logs > 0 && f->nodes[1].acc_logs > 0;
}

/* The same cluster id, other cluster names: refused both ways like another
 * cluster id (counted for the node's stop), the names in both sides'
 * lines, nothing delivered. */
static void test_wrong_name(void **state)
{
    struct fx *f = *state;
    node_names[0] = "blue";
    node_names[1] = "green";
    log_match = "is in cluster";
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 0, 1);
    link(f, 1, 0);
    assert_true(run_until(f, names_refused, WAIT_MS));
    assert_false(connected(f, 0, 1));
    assert_false(connected(f, 1, 0));
    assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, 0), CORRAL_EFULL);
    run_for(f, 50);
    assert_int_equal(f->nodes[1].got[f->nodes[0].id], 0);
    for (int i = 0; i < 2; i++) {
        struct node *n = &f->nodes[i], *o = &f->nodes[1 - i];
        struct corral_transport_peer_stats st = stats_of(n, o->id);
        assert_true(st.refused >= 2);
        assert_int_equal(st.their_cluster_id, CLUSTER);
        assert_string_equal(st.their_cluster_name, node_names[1 - i]);
        assert_int_equal(st.wrong_token_refusals, 0);
        assert_int_equal(n->addr_calls[o->id], 0);
        /* The acceptor names the dialer's advertised address, the dialer
         * the acceptor's: both are the other node's. */
        char want[128];
        snprintf(want, sizeof(want), "peer at 127.0.0.1:%u is in cluster '%s', this node in '%s'",
                 o->port, node_names[1 - i], node_names[i]);
        assert_non_null(strstr(n->acc_log, want));
        assert_non_null(strstr(n->acc_log, "wrong cluster name"));
        assert_true(n->dial_logs > 0);
        assert_non_null(strstr(n->dial_log, want));
        assert_non_null(strstr(n->dial_log, "refused our hello: wrong cluster name"));
    }
}

static bool no_messages_pending(struct fx *f)
{
    return f->nodes[1].got[f->nodes[0].id] == 10 && f->nodes[0].got[f->nodes[1].id] == 10;
}

static bool peer_lost(struct fx *f)
{
    return !connected(f, 0, 1);
}

/* A peer that stops and comes back on the same port is redialed and the
 * messages flow again, both ways. */
static void test_restart(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 0, 1);
    link(f, 1, 0);
    assert_true(run_until(f, pair_connected, WAIT_MS));
    for (uint64_t k = 0; k < 10; k++) {
        assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, k), 0);
        assert_int_equal(send_append(&f->nodes[1], f->nodes[0].id, k), 0);
    }
    assert_true(run_until(f, no_messages_pending, WAIT_MS));

    uint16_t port = f->nodes[1].port;
    node_stop(f, 1);
    assert_true(run_until(f, peer_lost, WAIT_MS));
    assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, 10), CORRAL_EFULL);
    run_for(f, 300); /* a few failed dials, so the backoff grows */

    node_start_queue(f, 1, CLUSTER, port, 0);
    link(f, 1, 0);
    assert_true(run_until(f, pair_connected, WAIT_MS));
    assert_int_equal(stats_of(&f->nodes[0], f->nodes[1].id).connects, 2);
    f->nodes[0].next_index[f->nodes[1].id] = 0;
    f->nodes[0].got[f->nodes[1].id] = 0;
    for (uint64_t k = 0; k < 10; k++) {
        assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, k), 0);
        assert_int_equal(send_append(&f->nodes[1], f->nodes[0].id, k), 0);
    }
    assert_true(run_until(f, no_messages_pending, WAIT_MS));
    assert_int_equal(f->nodes[0].bad, 0);
    assert_int_equal(f->nodes[1].bad, 0);
}

/* Unknown peers, unconnected peers and full queues: refused and counted. */
static void test_drops(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start_queue(f, 1, CLUSTER, 0, 4096);
    /* Node 3 is registered but nothing listens where it should. */
    node_start(f, 2, CLUSTER);
    uint16_t dead_port = f->nodes[2].port;
    node_stop(f, 2);
    assert_int_equal(corral_transport_add_peer(f->nodes[0].t, 3, "127.0.0.1", dead_port), 0);
    assert_int_equal(corral_transport_add_peer(f->nodes[0].t, 3, "127.0.0.1", dead_port),
                     CORRAL_EINVAL);
    assert_int_equal(corral_transport_add_peer(f->nodes[0].t, 7, "localhost", 1), CORRAL_EINVAL);
    assert_int_equal(send_append(&f->nodes[0], 3, 0), CORRAL_EFULL);
    assert_int_equal(send_append(&f->nodes[0], 3, 1), CORRAL_EFULL);
    assert_int_equal(send_append(&f->nodes[0], 9, 0), CORRAL_ENOTFOUND);
    run_for(f, 200);
    struct corral_transport_peer_stats st = stats_of(&f->nodes[0], 3);
    assert_false(st.connected);
    assert_int_equal(st.dropped_msgs, 2);

    /* A 4 KiB queue takes a few messages of one iteration, then drops. */
    link(f, 1, 0);
    assert_true(run_until(f, pair_connected_1_0, WAIT_MS));
    int ok = 0, full = 0;
    for (uint64_t k = 0; k < 200; k++) {
        int rc = send_append(&f->nodes[1], f->nodes[0].id, k);
        assert_true(rc == 0 || rc == CORRAL_EFULL);
        rc == 0 ? ok++ : full++;
    }
    assert_true(ok > 0 && full > 0);
    st = stats_of(&f->nodes[1], f->nodes[0].id);
    assert_int_equal(st.dropped_msgs, (uint64_t)full);
    assert_true(st.queued_bytes <= 4096);
}

static bool got_from_2(struct fx *f)
{
    return f->nodes[0].got[2] >= 1;
}

/* After a hostile session node 1 still serves node 2: one more message. */
static void still_serving(struct fx *f, uint64_t index)
{
    f->nodes[0].got[2] = 0;
    f->nodes[0].next_index[2] = index;
    assert_int_equal(send_append(&f->nodes[1], 1, index), 0);
    assert_true(run_until(f, got_from_2, WAIT_MS));
    assert_int_equal(f->nodes[0].bad, 0);
}

/* Raw clients send garbage, an oversized length, a corrupt frame after a
 * valid hello, a message claiming another sender, and a hello for another
 * node: each is closed, nothing is delivered, and the transport keeps
 * serving its real peer. */
static void test_hostile(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 1, 0);
    assert_true(run_until(f, pair_connected_1_0, WAIT_MS));
    struct raw *r = corral_calloc(1, sizeof(*r));
    assert_non_null(r);

    memset(r, 0, sizeof(*r));
    r->out_len = (size_t)snprintf((char *)r->out, sizeof(r->out), "GET / HTTP/1.1\r\n\r\n");
    assert_true(raw_session(f, r, 0));
    assert_int_equal(r->in_len, 0);
    still_serving(f, 100);

    /* Valid hello (from a node nobody registered), then a huge length. */
    memset(r, 0, sizeof(*r));
    r->out_len = raw_hello(r->out, CLUSTER, 4, 1);
    le(r->out + r->out_len, 0xffffffffu, 4);
    r->out_len += 4;
    assert_true(raw_session(f, r, 0));
    assert_true(r->in_len > 6 && memcmp(r->in, "CRLR", 4) == 0 && r->in[5] == 0);
    still_serving(f, 200);

    /* Valid hello, then a well-sized frame of a message with a bad CRC. */
    struct corral_raft_msg m;
    make_append(&m, 4, 1, 7);
    memset(r, 0, sizeof(*r));
    r->out_len = raw_hello(r->out, CLUSTER, 4, 1);
    size_t len = 0;
    assert_int_equal(corral_codec_msg_encode(&m, r->out + r->out_len + 4, 512, &len), 0);
    le(r->out + r->out_len, len, 4);
    r->out[r->out_len + 4 + len / 2] ^= 0x40;
    r->out_len += 4 + len;
    assert_true(raw_session(f, r, 0));
    still_serving(f, 300);

    /* Valid hello as node 4, then an intact message claiming node 2. */
    m.from = 2;
    memset(r, 0, sizeof(*r));
    r->out_len = raw_hello(r->out, CLUSTER, 4, 1);
    assert_int_equal(corral_codec_msg_encode(&m, r->out + r->out_len + 4, 512, &len), 0);
    le(r->out + r->out_len, len, 4);
    r->out_len += 4 + len;
    assert_true(raw_session(f, r, 0));
    corral_raft_msg_clear(&m);
    assert_int_equal(f->nodes[0].got[2], 1); /* only still_serving's */
    assert_int_equal(f->nodes[0].got[4], 0);
    still_serving(f, 400);

    /* A hello for node 9: refused with status 2. */
    memset(r, 0, sizeof(*r));
    r->out_len = raw_hello(r->out, CLUSTER, 4, 9);
    assert_true(raw_session(f, r, 0));
    assert_true(r->in_len > 6 && memcmp(r->in, "CRLR", 4) == 0 && r->in[5] == 2);
    still_serving(f, 500);
    corral_free(r);
}

/* A port in use is an EIO with a message; the failed transport still
 * releases its handles (teardown's uv_loop_close checks). */
static void test_addr_in_use(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    struct corral_transport_config cfg = {.cluster_id = CLUSTER,
                                          .node_id = 2,
                                          .listen_host = "127.0.0.1",
                                          .listen_port = f->nodes[0].port};
    struct corral_transport_callbacks cb = {.on_msg = on_msg};
    struct corral_transport *t = NULL;
    char err[256] = "";
    assert_int_equal(corral_transport_start(&f->loop, &cfg, &cb, &t, err, sizeof(err)), CORRAL_EIO);
    assert_null(t);
    assert_non_null(strstr(err, "address already in use"));
    cfg.listen_host = "not-an-ip";
    assert_int_equal(corral_transport_start(&f->loop, &cfg, &cb, &t, err, sizeof(err)),
                     CORRAL_EINVAL);
    run_for(f, 10);
}

/* Stop with connections in every state and messages queued: everything
 * is released (ASan and uv_loop_close in teardown check), on_closed once. */
static void test_stop_busy(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        node_start(f, i, CLUSTER);
    link(f, 0, 1);
    link(f, 1, 0);
    link(f, 0, 2);
    assert_true(run_until(f, pair_connected, WAIT_MS));
    for (uint64_t k = 0; k < 500; k++)
        assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, k), 0);
    /* A silent raw connection mid-handshake. */
    struct raw *r = corral_calloc(1, sizeof(*r));
    assert_non_null(r);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", f->nodes[0].port, &a);
    uv_tcp_init(&f->loop, &r->tcp);
    r->tcp.data = r->creq.data = r;
    r->out_len = 3;
    memcpy(r->out, "CRL", 3);
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&a, raw_connect_cb),
                     0);
    run_for(f, 20);
    corral_transport_stop(f->nodes[0].t, on_closed, &f->nodes[0]);
    corral_transport_stop(f->nodes[0].t, on_closed, &f->nodes[0]); /* no-op */
    f->nodes[0].t = NULL;
    f->nodes[0].closed = false;
    the_raw = r;
    assert_true(run_until(f, raw_done, WAIT_MS)); /* the raw one was closed */
    uv_close((uv_handle_t *)&r->tcp, NULL);
    run_for(f, 5);
    corral_free(r);
}

static struct corral_tokens make_tokens(const char *a, const char *b)
{
    struct corral_tokens t = {0};
    const char *v[] = {a, b};
    for (int i = 0; i < 2 && v[i] != NULL; i++) {
        snprintf(t.tok[i], sizeof(t.tok[i]), "%s", v[i]);
        t.len[i] = strlen(v[i]);
        t.n++;
    }
    return t;
}

static bool got_one_each(struct fx *f)
{
    return f->nodes[1].got[f->nodes[0].id] == 1 && f->nodes[0].got[f->nodes[1].id] == 1;
}

/* Two nodes of CLUSTER with tokens a and b, dialing each other. */
static void start_pair_with_tokens(struct fx *f, const struct corral_tokens *a,
                                   const struct corral_tokens *b)
{
    node_tokens[0] = a;
    node_tokens[1] = b;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 0, 1);
    link(f, 1, 0);
}

/* The same token (or, in a rotation, overlapping ones proving one the
 * other accepts): the version 2 handshake connects and messages flow. */
static void tokens_connect(struct fx *f, const struct corral_tokens *a,
                           const struct corral_tokens *b)
{
    node_advertise[1] = "node-b.example:7001"; /* sent as given */
    node_names[0] = node_names[1] = "tok.en-1_";
    start_pair_with_tokens(f, a, b);
    assert_true(run_until(f, pair_connected, WAIT_MS));
    assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, 0), 0);
    assert_int_equal(send_append(&f->nodes[1], f->nodes[0].id, 0), 0);
    assert_true(run_until(f, got_one_each, WAIT_MS));
    assert_string_equal(f->nodes[1].http[f->nodes[0].id], "127.0.0.1:9000");
    assert_string_equal(f->nodes[0].http[f->nodes[1].id], "127.0.0.1:9001");
    /* Version 4: the proven strings, on both sides. */
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", f->nodes[0].port);
    assert_string_equal(f->nodes[1].addr_cluster[f->nodes[0].id], want);
    assert_string_equal(f->nodes[1].addr_http[f->nodes[0].id], "127.0.0.1:9000");
    assert_string_equal(f->nodes[0].addr_cluster[f->nodes[1].id], "node-b.example:7001");
    assert_string_equal(f->nodes[0].addr_http[f->nodes[1].id], "127.0.0.1:9001");
    assert_int_equal(f->nodes[0].addr_calls[f->nodes[1].id], 2);
    assert_int_equal(f->nodes[1].addr_calls[f->nodes[0].id], 2);
}

static void test_token_same(void **state)
{
    struct corral_tokens t = make_tokens("0123456789abcdef-same", NULL);
    tokens_connect(*state, &t, &t);
}

static void test_token_rotation(void **state)
{
    struct corral_tokens a = make_tokens("current-token-0123456789", "next-token-0123456789");
    struct corral_tokens b = make_tokens("next-token-0123456789", "current-token-0123456789");
    tokens_connect(*state, &a, &b);
}

static bool refused_both_ways(struct fx *f)
{
    return stats_of(&f->nodes[0], f->nodes[1].id).refused >= 2 &&
           stats_of(&f->nodes[1], f->nodes[0].id).refused >= 2;
}

/* Another token, or a token against none: never connected, nothing
 * delivered, refusals counted on both dialers. */
static void tokens_refused(struct fx *f, const struct corral_tokens *a,
                           const struct corral_tokens *b)
{
    start_pair_with_tokens(f, a, b);
    assert_true(run_until(f, refused_both_ways, WAIT_MS));
    assert_false(connected(f, 0, 1));
    assert_false(connected(f, 1, 0));
    assert_int_equal(send_append(&f->nodes[0], f->nodes[1].id, 0), CORRAL_EFULL);
    run_for(f, 50);
    assert_int_equal(f->nodes[1].got[f->nodes[0].id], 0);
    assert_int_equal(f->nodes[0].got[f->nodes[1].id], 0);
    /* Counted for the node's stop-when-every-peer-refuses check. */
    for (int i = 0; i < 2; i++) {
        struct corral_transport_peer_stats st = stats_of(&f->nodes[i], f->nodes[1 - i].id);
        assert_true(st.wrong_token_refusals >= 1);
        assert_non_null(st.wrong_token_why);
        assert_int_equal(st.wrong_cluster_refusals, 0);
    }
}

static void test_token_wrong(void **state)
{
    struct corral_tokens a = make_tokens("0123456789abcdef-one", NULL);
    struct corral_tokens b = make_tokens("0123456789abcdef-two", NULL);
    tokens_refused(*state, &a, &b);
}

static void test_token_vs_none(void **state)
{
    struct corral_tokens a = make_tokens("0123456789abcdef-one", NULL);
    tokens_refused(*state, &a, NULL);
}

/* A rotation done wrong: node 0 proves a token node 1 does not accept. */
static void test_token_rotation_mismatch(void **state)
{
    struct corral_tokens a = make_tokens("next-token-0123456789", "current-token-0123456789");
    struct corral_tokens b = make_tokens("current-token-0123456789", NULL);
    struct fx *f = *state;
    node_tokens[0] = &a;
    node_tokens[1] = &b;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 0, 1);
    run_for(f, 300);
    /* Node 0 may count itself connected for the moment between sending
     * its proof and node 1 closing: only node 1's side is asserted. */
    assert_true(f->nodes[0].refuse_logs + f->nodes[1].refuse_logs >= 1);
    assert_int_equal(f->nodes[1].got[f->nodes[0].id], 0);
    /* Node 1's proof was one node 0 accepts: not a mismatch to stop for. */
    assert_int_equal(stats_of(&f->nodes[0], f->nodes[1].id).wrong_token_refusals, 0);
}

/* Hellos of an older corral (versions 1 and 2, without the cluster name
 * and address): refused with status 3 in a version 3 reply, the line
 * saying why; also by a node with a token. */
static void test_old_version(void **state)
{
    struct fx *f = *state;
    struct corral_tokens tok = make_tokens("0123456789abcdef-old", NULL);
    node_tokens[1] = &tok;
    log_match = "older corral";
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    struct raw *r = corral_calloc(1, sizeof(*r));
    assert_non_null(r);
    for (int node = 0; node < 2; node++) {
        for (int version = 1; version <= 2; version++) {
            memset(r, 0, sizeof(*r));
            uint64_t before = f->nodes[node].acc_logs;
            r->out_len = raw_hello_old(r->out, version, CLUSTER, 4, f->nodes[node].id);
            assert_true(raw_session(f, r, node));
            assert_true(r->in_len > 6 && memcmp(r->in, "CRLR", 4) == 0);
            assert_int_equal(r->in[4], CORRAL_TRANSPORT_VERSION); /* the open reply */
            assert_int_equal(r->in[5], 3);                        /* bad version */
            assert_int_equal(f->nodes[node].acc_logs, before + 1);
            assert_non_null(strstr(f->nodes[node].acc_log, "unsupported version"));
            assert_non_null(strstr(f->nodes[node].acc_log, "old handshake"));
        }
    }
    corral_free(r);
}

/* A server that answers whatever it is sent with fixed bytes: an older
 * corral's acceptor, refusing a hello it does not know. */
struct old_server {
    uv_tcp_t listener;
    uv_tcp_t conn;
    bool accepted;
    uv_write_t wreq;
    uint8_t reply[64];
    size_t reply_len;
    uint64_t hellos; /* reads from the dialer */
};

static void old_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[1024];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void old_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct old_server *o = st->data;
    (void)buf;
    if (nread <= 0) {
        uv_read_stop(st);
        return;
    }
    if (o->hellos++ == 0) {
        uv_buf_t b = uv_buf_init((char *)o->reply, (unsigned)o->reply_len);
        assert_int_equal(uv_write(&o->wreq, st, &b, 1, raw_write_cb), 0);
    }
}

static void old_on_conn(uv_stream_t *server, int status)
{
    struct old_server *o = server->data;
    assert_int_equal(status, 0);
    if (o->accepted)
        return; /* one connection is enough */
    uv_tcp_init(server->loop, &o->conn);
    o->conn.data = o;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&o->conn), 0);
    o->accepted = true;
    assert_int_equal(uv_read_start((uv_stream_t *)&o->conn, old_alloc_cb, old_read_cb), 0);
}

static bool dial_said_old(struct fx *f)
{
    return f->nodes[0].dial_logs > 0;
}

/* Our dialer meets an older acceptor, which refuses our version 3 hello
 * in its version 1 reply (status 3): logged as an older corral, refused,
 * not connected. */
static void test_old_acceptor(void **state)
{
    struct fx *f = *state;
    log_match = "older corral";
    node_start(f, 0, CLUSTER);
    struct old_server *o = corral_calloc(1, sizeof(*o));
    assert_non_null(o);
    /* A version 1 reply as older releases wrote it: magic, version,
     * status, cluster id, node id, http_len, http address, CRC32C. */
    uint8_t *b = o->reply;
    memcpy(b, "CRLR", 4);
    b[4] = 1;
    b[5] = 3;
    le(b + 6, CLUSTER, 8);
    le(b + 14, 2, 8);
    le(b + 22, 4, 2);
    memcpy(b + 24, "x:80", 4);
    le(b + 28, corral_crc32c(0, b, 28), 4);
    o->reply_len = 32;
    uv_tcp_init(&f->loop, &o->listener);
    o->listener.data = o;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&o->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&o->listener, 8, old_on_conn), 0);
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&o->listener, (struct sockaddr *)&ss, &len), 0);
    uint16_t port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    assert_int_equal(corral_transport_add_peer(f->nodes[0].t, 2, "127.0.0.1", port), 0);
    assert_true(run_until(f, dial_said_old, WAIT_MS));
    assert_non_null(strstr(f->nodes[0].dial_log, "old handshake (version 1, ours 3)"));
    struct corral_transport_peer_stats st = stats_of(&f->nodes[0], 2);
    assert_false(st.connected);
    assert_true(st.refused >= 1);
    assert_int_equal(f->nodes[0].addr_calls[2], 0);
    assert_int_equal(corral_transport_remove_peer(f->nodes[0].t, 2), 0);
    uv_close((uv_handle_t *)&o->listener, NULL);
    if (o->accepted)
        uv_close((uv_handle_t *)&o->conn, NULL);
    run_for(f, 10);
    corral_free(o);
}

/* Hellos whose strings break transport.h's rules, with a right CRC: closed
 * without a reply, and the node serves on. */
static void test_bad_strings(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    link(f, 1, 0);
    assert_true(run_until(f, pair_connected_1_0, WAIT_MS));
    struct raw *r = corral_calloc(1, sizeof(*r));
    assert_non_null(r);
    char long_name[80], long_addr[300];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    memset(long_addr, 'a', 261);
    long_addr[261] = '\0';
    const char *cases[][2] = {
        {"Blue", "10.0.0.9:7000"},    {"blue!", "10.0.0.9:7000"}, {"", "10.0.0.9:7000"},
        {long_name, "10.0.0.9:7000"}, {"blue", "10.0.0.9 :7000"}, {"blue", ""},
        {"blue", "10.0.0.9:\x01"},    {"blue", long_addr},
    };
    uint8_t *big = corral_malloc(1024);
    assert_non_null(big);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        memset(r, 0, sizeof(*r));
        size_t n = raw_hello_named(big, CLUSTER, 4, 1, cases[k][0], cases[k][1]);
        assert_true(n <= sizeof(r->out));
        memcpy(r->out, big, n);
        r->out_len = n;
        assert_true(raw_session(f, r, 0));
        assert_int_equal(r->in_len, 0);
        still_serving(f, 100 * (k + 1));
    }
    corral_free(big);
    corral_free(r);
}

/* Bad cluster names and advertised addresses in the config: EINVAL. */
static void test_bad_config(void **state)
{
    struct fx *f = *state;
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    const char *names[] = {"", "Blue", "a b", "x/y", long_name};
    const char *addrs[] = {"", "a b:1", "tab\t:1"};
    struct corral_transport_callbacks cb = {.on_msg = on_msg};
    struct corral_transport *t = NULL;
    char err[256] = "";
    for (size_t k = 0; k < 5 + 3; k++) {
        struct corral_transport_config cfg = {
            .cluster_id = CLUSTER, .node_id = 2, .listen_host = "127.0.0.1"};
        if (k < 5)
            cfg.cluster_name = names[k];
        else
            cfg.advertise_addr = addrs[k - 5];
        assert_int_equal(corral_transport_start(&f->loop, &cfg, &cb, &t, err, sizeof(err)),
                         CORRAL_EINVAL);
        assert_null(t);
        assert_non_null(strstr(err, k < 5 ? "cluster name" : "advertised cluster address"));
    }
    assert_true(corral_transport_cluster_name_ok("a-b.c_9"));
    assert_true(corral_transport_cluster_name_ok(long_name + 1)); /* 64 */
    assert_false(corral_transport_cluster_name_ok(NULL));
    run_for(f, 10);
}

static bool got_5_at_1(struct fx *f)
{
    return f->nodes[1].got[1] == 5;
}

static bool got_5_at_2(struct fx *f)
{
    return f->nodes[2].got[1] == 5;
}

static bool moved(struct fx *f)
{
    struct corral_transport_peer_stats st = stats_of(&f->nodes[0], 2);
    return st.connected && st.connects == 2;
}

/* set_peer: the same address changes nothing; another one closes the
 * connection and dials the new address, where node 2 now listens (a
 * second transport with its id): messages arrive there, not at the old. */
static void test_set_peer(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    f->nodes[2].id = 2; /* node 2 again, at another port */
    node_start(f, 2, CLUSTER);
    struct corral_transport *t = f->nodes[0].t;
    assert_int_equal(corral_transport_set_peer(t, 2, "127.0.0.1", f->nodes[1].port), 0); /* add */
    assert_true(run_until(f, pair_connected_0_1, WAIT_MS));
    for (uint64_t k = 0; k < 5; k++)
        assert_int_equal(send_append(&f->nodes[0], 2, k), 0);
    assert_true(run_until(f, got_5_at_1, WAIT_MS));
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", f->nodes[1].port);
    assert_string_equal(f->nodes[0].addr_cluster[2], want);

    assert_int_equal(corral_transport_set_peer(t, 2, "127.0.0.1", f->nodes[1].port), 0);
    run_for(f, 50);
    struct corral_transport_peer_stats st = stats_of(&f->nodes[0], 2);
    assert_true(st.connected);
    assert_int_equal(st.connects, 1);

    assert_int_equal(corral_transport_set_peer(t, 2, "127.0.0.1", f->nodes[2].port), 0);
    assert_false(stats_of(&f->nodes[0], 2).connected);
    assert_int_equal(send_append(&f->nodes[0], 2, 0), CORRAL_EFULL);
    assert_true(run_until(f, moved, WAIT_MS));
    for (uint64_t k = 0; k < 5; k++)
        assert_int_equal(send_append(&f->nodes[0], 2, k), 0);
    assert_true(run_until(f, got_5_at_2, WAIT_MS));
    run_for(f, 50);
    assert_int_equal(f->nodes[1].got[1], 5); /* nothing more at the old address */
    assert_int_equal(f->nodes[1].bad + f->nodes[2].bad, 0);
    snprintf(want, sizeof(want), "127.0.0.1:%u", f->nodes[2].port);
    assert_string_equal(f->nodes[0].addr_cluster[2], want);

    assert_int_equal(corral_transport_set_peer(t, 0, "127.0.0.1", 1), CORRAL_EINVAL);
    assert_int_equal(corral_transport_set_peer(t, 1, "127.0.0.1", 1), CORRAL_EINVAL); /* ours */
    assert_int_equal(corral_transport_set_peer(t, 2, "localhost", 1), CORRAL_EINVAL);
    assert_true(stats_of(&f->nodes[0], 2).connected); /* a bad call changes nothing */
}

static bool got_3_at_1(struct fx *f)
{
    return f->nodes[1].got[1] == 3;
}

static bool got_4_at_1(struct fx *f)
{
    return f->nodes[1].got[1] == 4;
}

static bool removed_on_addr(struct fx *f)
{
    return corral_transport_stats(f->nodes[0].t, NULL, 0) == 0 && f->nodes[0].addr_calls[2] > 0;
}

/* remove_peer: no more traffic nor dials, sends answer ENOTFOUND, the
 * slot is free (16 peers, remove one, add another); removing from a
 * callback, and stopping with a removed peer's timer still closing, are
 * safe (ASan; teardown's uv_loop_close). */
static void test_remove_peer(void **state)
{
    struct fx *f = *state;
    node_start(f, 0, CLUSTER);
    node_start(f, 1, CLUSTER);
    node_start(f, 2, CLUSTER);
    uint16_t dead_port = f->nodes[2].port;
    node_stop(f, 2);
    struct corral_transport *t = f->nodes[0].t;
    link(f, 0, 1);
    assert_true(run_until(f, pair_connected_0_1, WAIT_MS));
    for (uint64_t k = 0; k < 3; k++)
        assert_int_equal(send_append(&f->nodes[0], 2, k), 0);
    assert_true(run_until(f, got_3_at_1, WAIT_MS));
    /* Queued and not yet written when it goes: dropped. */
    assert_int_equal(send_append(&f->nodes[0], 2, 3), 0);
    uint64_t accepted = f->nodes[1].accepted_logs;
    assert_int_equal(corral_transport_remove_peer(t, 2), 0);
    assert_int_equal(corral_transport_remove_peer(t, 2), CORRAL_ENOTFOUND);
    assert_int_equal(send_append(&f->nodes[0], 2, 4), CORRAL_ENOTFOUND);
    assert_int_equal(corral_transport_stats(t, NULL, 0), 0);
    run_for(f, 400); /* more than a few backoffs */
    assert_int_equal(f->nodes[1].accepted_logs, accepted);
    assert_int_equal(f->nodes[1].got[1], 3);

    /* Every slot: 16 peers, one more is EFULL; one removed, another fits. */
    for (uint64_t id = 10; id < 10 + CORRAL_RAFT_NODES_MAX; id++)
        assert_int_equal(corral_transport_add_peer(t, id, "127.0.0.1", dead_port), 0);
    assert_int_equal(corral_transport_add_peer(t, 40, "127.0.0.1", dead_port), CORRAL_EFULL);
    assert_int_equal(corral_transport_remove_peer(t, 17), 0);
    assert_int_equal(corral_transport_stats(t, NULL, 0), CORRAL_RAFT_NODES_MAX - 1);
    assert_int_equal(send_append(&f->nodes[0], 17, 0), CORRAL_ENOTFOUND);
    assert_int_equal(corral_transport_add_peer(t, 40, "127.0.0.1", dead_port), 0);
    assert_int_equal(corral_transport_add_peer(t, 41, "127.0.0.1", dead_port), CORRAL_EFULL);
    run_for(f, 100);

    /* Node 2 back in a freed slot: dialed again, messages flow. */
    assert_int_equal(corral_transport_remove_peer(t, 10), 0);
    f->nodes[1].next_index[1] = 3;
    link(f, 0, 1);
    assert_true(run_until(f, pair_connected_0_1, WAIT_MS));
    assert_int_equal(send_append(&f->nodes[0], 2, 3), 0);
    assert_true(run_until(f, got_4_at_1, WAIT_MS));
    assert_int_equal(f->nodes[1].bad, 0);

    /* Removed from inside on_peer_addr of its own handshake. */
    assert_int_equal(corral_transport_remove_peer(t, 2), 0);
    for (uint64_t id = 11; id < 10 + CORRAL_RAFT_NODES_MAX; id++)
        if (id != 17)
            assert_int_equal(corral_transport_remove_peer(t, id), 0);
    assert_int_equal(corral_transport_remove_peer(t, 40), 0);
    f->nodes[0].remove_on_addr = 2;
    f->nodes[0].addr_calls[2] = 0;
    link(f, 0, 1);
    assert_true(run_until(f, removed_on_addr, WAIT_MS));
    run_for(f, 50);

    /* Removed, then stopped in the same loop iteration. */
    assert_int_equal(corral_transport_add_peer(t, 5, "127.0.0.1", f->nodes[1].port), 0);
    assert_int_equal(corral_transport_remove_peer(t, 5), 0);
    node_stop(f, 0);
}

int main(void)
{
    /* libuv writes without MSG_NOSIGNAL; a write to a reset socket must
     * be an EPIPE error, not a signal (the daemon does the same). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addr_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_wrong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_vs_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_rotation_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_acceptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_peer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
