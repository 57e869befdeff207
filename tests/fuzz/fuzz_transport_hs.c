/* libFuzzer entry point for the peer handshake parser
 * (src/runtime/transport_hs.c) without sockets: the file is linked on its
 * own with stubs for the few libuv calls it makes (uv_write records the
 * bytes and completes at once, uv_read_stop, uv_strerror, uv_buf_init) and
 * for transport.c's helpers (a failed or closed connection only changes
 * state). Every input, as it is and with the CRC32C re-computed where its
 * length field puts the trailer, is given to an inbound connection as the
 * hello and to an outbound one as the reply. Checks: 1 (progress) only
 * with the connection open, the frame consumed whole and the peer's HTTP
 * address handed on as a string of at most CORRAL_TRANSPORT_HTTP_ADDR_MAX
 * bytes; 0 (more bytes needed) changes nothing; -1 only with the
 * connection closing or refusing and the address not handed on; no prefix of an accepted frame
 * decides anything; what the acceptor writes back (an OK or a refusal) is a well-formed reply that
 * a dialer takes whole. Build and run: tests/fuzz/README.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/transport_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"

#define FUZZ_REQUIRE(cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- Stubs: libuv ---- */

static uint8_t written[HS_BYTES_MAX];
static size_t written_len;
static int writes;

int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs,
             uv_write_cb cb)
{
    (void)handle;
    FUZZ_REQUIRE(nbufs == 1 && bufs[0].len <= HS_BYTES_MAX && writes == 0);
    memcpy(written, bufs[0].base, bufs[0].len);
    written_len = bufs[0].len;
    writes++;
    cb(req, 0);
    return 0;
}

int uv_read_stop(uv_stream_t *stream)
{
    (void)stream;
    return 0;
}

const char *uv_strerror(int err)
{
    (void)err;
    return "stub error";
}

uv_buf_t uv_buf_init(char *base, unsigned int len)
{
    uv_buf_t b;
    b.base = base;
    b.len = len;
    return b;
}

/* ---- Stubs: transport.c ---- */

static char logline[512];

void transport_log(struct corral_transport *t, int level, const char *fmt, ...)
{
    (void)t;
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(logline, sizeof(logline), fmt, ap);
    va_end(ap);
}

void transport_log_limited(struct corral_transport *t, const char *key, int level, const char *fmt,
                           ...)
{
    (void)t;
    (void)key;
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(logline, sizeof(logline), fmt, ap);
    va_end(ap);
}

uint64_t uv_now(const uv_loop_t *loop)
{
    (void)loop;
    return 0;
}

void transport_conn_fail(struct conn *c, int level, const char *fmt, ...)
{
    (void)level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(logline, sizeof(logline), fmt, ap);
    va_end(ap);
    FUZZ_REQUIRE(c->state != CONN_CLOSING);
    c->state = CONN_CLOSING;
}

void transport_conn_close(struct conn *c)
{
    FUZZ_REQUIRE(c->state != CONN_CLOSING);
    c->state = CONN_CLOSING;
}

struct peer *transport_peer_find(const struct corral_transport *t, uint64_t id)
{
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i]->st.id == id)
            return t->peers[i];
    return NULL;
}

/* ---- The harness ---- */

#define CLUSTER 0xc0ffee00c0ffeeull
#define SELF 2u /* the acceptor */
#define DIALER 1u

static int http_calls;
static size_t http_len;

static void on_peer_http(void *ud, uint64_t peer, const char *addr)
{
    (void)ud;
    (void)peer;
    http_len = strlen(addr);
    FUZZ_REQUIRE(http_len <= CORRAL_TRANSPORT_HTTP_ADDR_MAX);
    http_calls++;
}

static struct corral_transport tr;
static struct peer dial_peer;
static struct conn conn;

static void setup(uint64_t node_id, bool inbound, uint8_t *rbuf, size_t rlen)
{
    memset(&tr, 0, sizeof(tr));
    tr.cluster_id = CLUSTER;
    tr.node_id = node_id;
    tr.cb.on_peer_http = on_peer_http;
    const char *http = node_id == SELF ? "127.0.0.1:8142" : "127.0.0.1:8140";
    tr.http_len = (uint16_t)strlen(http);
    memcpy(tr.http_addr, http, tr.http_len);
    memset(&dial_peer, 0, sizeof(dial_peer));
    dial_peer.t = &tr;
    dial_peer.st.id = SELF;
    tr.peers[0] = &dial_peer;
    tr.n_peers = 1;
    memset(&conn, 0, sizeof(conn));
    conn.t = &tr;
    conn.inbound = inbound;
    conn.state = CONN_HELLO;
    conn.peer = inbound ? NULL : &dial_peer;
    if (!inbound)
        dial_peer.out = &conn;
    conn.hs_req.data = &conn; /* as transport.c sets it */
    conn.rbuf = rbuf;
    conn.rlen = rlen;
    conn.rcap = rlen;
    snprintf(conn.name, sizeof(conn.name), "127.0.0.1:%u", inbound ? 50000u : 7002u);
    written_len = 0;
    writes = 0;
    http_calls = 0;
}

/* One take over size bytes at data (copied to an exact-size buffer, so ASan
 * sees any over-read); the checks that hold for any input. Returns the
 * result, *pos the bytes consumed. */
static int take(bool inbound, const uint8_t *data, size_t size, size_t *pos)
{
    uint8_t *b = malloc(size > 0 ? size : 1);
    FUZZ_REQUIRE(b != NULL);
    memcpy(b, data, size);
    setup(inbound ? SELF : DIALER, inbound, b, size);
    *pos = 0;
    int rv = inbound ? transport_take_hello(&conn, pos) : transport_take_reply(&conn, pos);
    if (rv == 1) {
        size_t fixed = inbound ? HELLO_FIXED_BYTES : REPLY_FIXED_BYTES;
        FUZZ_REQUIRE(conn.state == CONN_OPEN && http_calls == 1);
        /* The address as sent may hold a NUL, so the string handed on can
         * be shorter than the length field (transport_hs.c does not check
         * the address's bytes). */
        size_t field = corral_get_le16(data + fixed - 2);
        FUZZ_REQUIRE(*pos == fixed + field + 4 && *pos <= size && http_len <= field);
        FUZZ_REQUIRE(inbound ? writes == 1 : (writes == 0 && dial_peer.st.connected));
    } else if (rv == 0) {
        FUZZ_REQUIRE(*pos == 0 && conn.state == CONN_HELLO && writes == 0 && http_calls == 0);
    } else {
        /* A whole frame that is refused counts as consumed. */
        FUZZ_REQUIRE(rv == -1 && *pos <= size && http_calls == 0);
        FUZZ_REQUIRE(conn.state == CONN_CLOSING || conn.state == CONN_REFUSING);
        FUZZ_REQUIRE(!dial_peer.st.connected);
    }
    free(b);
    return rv;
}

static void fuzz_side(bool inbound, const uint8_t *data, size_t size)
{
    size_t pos;
    int rv = take(inbound, data, size, &pos);
    if (inbound && writes == 1) {
        /* The acceptor's answer: a dialer takes it whole, and it is an OK
         * exactly when the hello was accepted. */
        uint8_t reply[HS_BYTES_MAX];
        size_t n = written_len;
        memcpy(reply, written, n);
        bool ok = n > 5 && reply[5] == 0;
        FUZZ_REQUIRE(ok == (rv == 1));
        size_t rpos;
        int rrv = take(false, reply, n, &rpos);
        FUZZ_REQUIRE(ok ? (rrv == 1 && rpos == n) : rrv == -1);
    }
    if (rv == 1) {
        for (size_t k = 0; k < pos; k++) {
            size_t p2;
            FUZZ_REQUIRE(take(inbound, data, k, &p2) == 0);
        }
    }
}

/* A copy with the CRC32C put where the frame's own length field says its
 * trailer is (when the input is that long). */
static uint8_t *crc_fixed(const uint8_t *data, size_t size, size_t fixed)
{
    if (size < fixed)
        return NULL;
    size_t len = fixed + corral_get_le16(data + fixed - 2) + 4;
    if (len > size)
        return NULL;
    uint8_t *b = malloc(size);
    if (b == NULL)
        return NULL;
    memcpy(b, data, size);
    corral_put_le32(b + len - 4, corral_crc32c(0, b, len - 4));
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_side(true, data, size);
    fuzz_side(false, data, size);
    uint8_t *h = crc_fixed(data, size, HELLO_FIXED_BYTES);
    if (h != NULL)
        fuzz_side(true, h, size);
    free(h);
    uint8_t *r = crc_fixed(data, size, REPLY_FIXED_BYTES);
    if (r != NULL)
        fuzz_side(false, r, size);
    free(r);
    return 0;
}
