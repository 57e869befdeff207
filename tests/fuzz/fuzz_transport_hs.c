/* libFuzzer entry point for the peer handshake parser
 * (src/runtime/transport_hs.c) without sockets: the file is linked on its
 * own with stubs for the few libuv calls it makes (uv_write records the
 * bytes and completes at once, uv_read_stop, uv_strerror, uv_buf_init) and
 * for transport.c's helpers (a failed or closed connection only changes
 * state). Every input, as it is and with the CRC32C re-computed where its
 * length fields put the trailer, is given to an inbound connection as the
 * hello and to an outbound one as the reply. Checks: 1 (progress) only
 * with the connection open, the frame consumed whole, its cluster name
 * ours, and the peer's HTTP and cluster addresses handed on (on_peer_http,
 * on_peer_addr) exactly as the frame has them and valid by transport.h's
 * rules; 0 (more bytes needed) changes nothing; -1 only with the
 * connection closing or refusing and nothing handed on; no prefix of an
 * accepted frame decides anything; what the acceptor writes back (an OK
 * or a refusal) is a well-formed reply that a dialer takes whole. Build
 * and run: tests/fuzz/README.md. */
#include "fuzz_require.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/transport_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/sha256.h"

#include <sys/random.h>

/* ---- Stubs: libuv ---- */

static uint8_t written[HS_BYTES_MAX];
static size_t written_len;
static int writes;

static bool side_write(struct conn *c, const uv_buf_t *buf);

int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs,
             uv_write_cb cb)
{
    struct conn *c = (struct conn *)(void *)((char *)handle - offsetof(struct conn, tcp));
    FUZZ_REQUIRE(nbufs == 1);
    if (side_write(c, &bufs[0])) { /* one of the version 2 sides */
        cb(req, 0);
        return 0;
    }
    FUZZ_REQUIRE(bufs[0].len <= HS_BYTES_MAX && writes == 0);
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

uint64_t uv_now(const uv_loop_t *loop)
{
    (void)loop;
    return 0; /* the handshake's clock: only refusal bookkeeping reads it */
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
#define NAME "corral" /* both ends' cluster name */

static const char *http_of(uint64_t id)
{
    return id == SELF ? "127.0.0.1:8142" : "127.0.0.1:8140";
}

static const char *addr_of(uint64_t id)
{
    return id == SELF ? "127.0.0.1:7002" : "[::1]:7001";
}

/* The strings section of transport.h, from its description: u16 + HTTP
 * address, u8 + cluster name, u16 + cluster address. */
static size_t expect_strings(uint64_t id, uint8_t *b)
{
    const char *http = http_of(id), *addr = addr_of(id);
    size_t hl = strlen(http), nl = strlen(NAME), al = strlen(addr);
    corral_put_le16(b, (uint16_t)hl);
    memcpy(b + 2, http, hl);
    b[2 + hl] = (uint8_t)nl;
    memcpy(b + 3 + hl, NAME, nl);
    corral_put_le16(b + 3 + hl + nl, (uint16_t)al);
    memcpy(b + 5 + hl + nl, addr, al);
    return 5 + hl + nl + al;
}

/* The section of a frame whose fixed part is fixed bytes (through the HTTP
 * length), as its length fields put it: false when the input is shorter.
 * *off is where it starts, *n its length; the bounds are not checked. */
static bool frame_strings(const uint8_t *d, size_t size, size_t fixed, size_t *off, size_t *n)
{
    *off = fixed - 2;
    if (size < fixed)
        return false;
    size_t k = fixed + corral_get_le16(d + fixed - 2);
    if (size < k + 1)
        return false;
    k += 1 + d[k];
    if (size < k + 2)
        return false;
    k += 2 + corral_get_le16(d + k);
    *n = k - *off;
    return size >= k;
}

/* Whether the section at d (n bytes) keeps transport.h's rules. */
static bool strings_valid(const uint8_t *d, size_t n, char *http, char *name, char *addr)
{
    size_t hl = corral_get_le16(d), k = 2;
    if (hl > CORRAL_TRANSPORT_HTTP_ADDR_MAX)
        return false;
    for (size_t i = 0; i < hl; i++)
        if (d[k + i] < 0x21 || d[k + i] > 0x7e)
            return false;
    memcpy(http, d + k, hl);
    http[hl] = '\0';
    k += hl;
    size_t nl = d[k++];
    if (nl < 1 || nl > CORRAL_TRANSPORT_CLUSTER_NAME_MAX)
        return false;
    for (size_t i = 0; i < nl; i++) {
        uint8_t ch = d[k + i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return false;
    }
    memcpy(name, d + k, nl);
    name[nl] = '\0';
    k += nl;
    size_t al = corral_get_le16(d + k);
    k += 2;
    if (al < 1 || al > CORRAL_TRANSPORT_CLUSTER_ADDR_MAX || k + al != n)
        return false;
    for (size_t i = 0; i < al; i++)
        if (d[k + i] < 0x21 || d[k + i] > 0x7e)
            return false;
    memcpy(addr, d + k, al);
    addr[al] = '\0';
    return true;
}

struct told {
    int http_calls, addr_calls;
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    char addr_http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    char addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
};

static struct told told;

static void on_peer_http(void *ud, uint64_t peer, const char *addr)
{
    (void)ud;
    (void)peer;
    FUZZ_REQUIRE(strlen(addr) <= CORRAL_TRANSPORT_HTTP_ADDR_MAX && told.addr_calls == 0);
    snprintf(told.http, sizeof(told.http), "%s", addr);
    told.http_calls++;
}

static void on_peer_addr(void *ud, uint64_t peer, const char *addr, const char *http)
{
    (void)ud;
    (void)peer;
    FUZZ_REQUIRE(corral_transport_addr_ok(addr, CORRAL_TRANSPORT_CLUSTER_ADDR_MAX));
    FUZZ_REQUIRE(http[0] == '\0' || corral_transport_addr_ok(http, CORRAL_TRANSPORT_HTTP_ADDR_MAX));
    FUZZ_REQUIRE(told.http_calls == 1 && strcmp(http, told.http) == 0); /* after on_peer_http */
    snprintf(told.addr, sizeof(told.addr), "%s", addr);
    snprintf(told.addr_http, sizeof(told.addr_http), "%s", http);
    told.addr_calls++;
}

/* t's own name, address and strings section, as transport.c sets them. */
static void strings_setup(struct corral_transport *t, uint64_t id)
{
    snprintf(t->cluster_name, sizeof(t->cluster_name), "%s", NAME);
    snprintf(t->cluster_addr, sizeof(t->cluster_addr), "%s", addr_of(id));
    transport_strings_build(t, http_of(id));
    uint8_t want[HS_STRINGS_MAX];
    size_t n = expect_strings(id, want);
    FUZZ_REQUIRE(t->strings_len == n && memcmp(t->strings, want, n) == 0);
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
    tr.cb.on_peer_addr = on_peer_addr;
    strings_setup(&tr, node_id);
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
    memset(&told, 0, sizeof(told));
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
        size_t fixed = inbound ? HELLO_FIXED_BYTES : REPLY_FIXED_BYTES, off = 0, n = 0;
        FUZZ_REQUIRE(conn.state == CONN_OPEN && told.http_calls == 1 && told.addr_calls == 1);
        /* Handed on exactly as the frame has them, and the name is ours. */
        FUZZ_REQUIRE(frame_strings(data, size, fixed, &off, &n));
        char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1], name[CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 1];
        char addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
        FUZZ_REQUIRE(strings_valid(data + off, n, http, name, addr));
        FUZZ_REQUIRE(strcmp(name, NAME) == 0 && strcmp(told.http, http) == 0 &&
                     strcmp(told.addr, addr) == 0 && strcmp(told.addr_http, http) == 0);
        FUZZ_REQUIRE(*pos == off + n + 4 && *pos <= size);
        FUZZ_REQUIRE(data[4] == CORRAL_TRANSPORT_VERSION);
        FUZZ_REQUIRE(inbound ? writes == 1 : (writes == 0 && dial_peer.st.connected));
    } else if (rv == 0) {
        FUZZ_REQUIRE(*pos == 0 && conn.state == CONN_HELLO && writes == 0 && told.http_calls == 0);
    } else {
        /* A whole frame that is refused counts as consumed. */
        FUZZ_REQUIRE(rv == -1 && *pos <= size && told.http_calls == 0 && told.addr_calls == 0);
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

/* A copy with the CRC32C put where the frame's own length fields say its
 * trailer is (when the input is that long). */
static uint8_t *crc_fixed(const uint8_t *data, size_t size, size_t fixed)
{
    size_t off, n;
    if (!frame_strings(data, size, fixed, &off, &n) || off + n + 4 > size)
        return NULL;
    size_t len = off + n + 4;
    uint8_t *b = malloc(size);
    if (b == NULL)
        return NULL;
    memcpy(b, data, size);
    corral_put_le32(b + len - 4, corral_crc32c(0, b, len - 4));
    return b;
}

/* ---- Version 4: the cluster token's HMAC challenge ---- */

/* getrandom, for the handshake's nonces: deterministic per input. */
static uint64_t rnd_seed;

ssize_t getrandom(void *buf, size_t buflen, unsigned int flags)
{
    (void)flags;
    uint8_t *p = buf;
    for (size_t i = 0; i < buflen; i++) {
        rnd_seed += 0x9e3779b97f4a7c15ull; /* splitmix64 */
        uint64_t z = rnd_seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        p[i] = (uint8_t)(z ^ (z >> 31));
    }
    return (ssize_t)buflen;
}

static const char *const tokens[2] = {"fuzz-token-A-0123456789", "fuzz-token-B-0123456789"};

/* sel % 5: none, {A}, {B}, {A, B}, {B, A} (the first is the one proven). */
static void tokens_set(struct corral_tokens *t, unsigned sel)
{
    static const int sets[5][2] = {{-1, -1}, {0, -1}, {1, -1}, {0, 1}, {1, 0}};
    memset(t, 0, sizeof(*t));
    for (int k = 0; k < 2; k++) {
        int i = sets[sel % 5][k];
        if (i < 0)
            break;
        t->len[t->n] = strlen(tokens[i]);
        memcpy(t->tok[t->n], tokens[i], t->len[t->n] + 1);
        t->n++;
    }
}

static bool tokens_have(const struct corral_tokens *t, const char *tok)
{
    for (uint32_t k = 0; k < t->n; k++)
        if (strcmp(t->tok[k], tok) == 0)
            return true;
    return false;
}

/* The proof of transport.h, computed here from its description: HMAC-SHA256
 * with the token over "corral-hs4", the role ('a' acceptor, 'd' dialer),
 * the cluster id and the prover's node id (little endian), the verifier's
 * nonce, the prover's nonce, the prover's strings section (n bytes). */
static void expect_proof(const char *tok, char role, uint64_t prover, const uint8_t *verifier_nonce,
                         const uint8_t *prover_nonce, const uint8_t *strings, size_t n,
                         uint8_t out[HS_PROOF_BYTES])
{
    uint8_t ids[16];
    corral_put_le64(ids, CLUSTER);
    corral_put_le64(ids + 8, prover);
    const void *parts[] = {"corral-hs4", &role, ids, verifier_nonce, prover_nonce, strings};
    size_t lens[] = {10, 1, 16, HS_NONCE_BYTES, HS_NONCE_BYTES, n};
    corral_hmac_sha256(tok, strlen(tok), parts, lens, 6, out);
}

/* The same for a node of the harness: its strings are expect_strings's. */
static void expect_node_proof(const char *tok, char role, uint64_t prover,
                              const uint8_t *verifier_nonce, const uint8_t *prover_nonce,
                              uint8_t out[HS_PROOF_BYTES])
{
    uint8_t st[HS_STRINGS_MAX];
    size_t n = expect_strings(prover, st);
    expect_proof(tok, role, prover, verifier_nonce, prover_nonce, st, n, out);
}

/* One end of a version 4 handshake, with its own transport and peer. */
struct side {
    struct corral_transport t;
    struct peer peer;
    struct conn c;
    int n_writes;
    uint8_t out[2][HS_BYTES_MAX]; /* what it wrote: a hello or reply, a proof */
    size_t out_len[2];
    int http_calls, addr_calls;
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    char addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
};

static struct side acc, dial;

static bool side_write(struct conn *c, const uv_buf_t *buf)
{
    struct side *s = c == &acc.c ? &acc : c == &dial.c ? &dial : NULL;
    if (s == NULL)
        return false;
    FUZZ_REQUIRE(s->n_writes < 2 && buf->len <= HS_BYTES_MAX);
    memcpy(s->out[s->n_writes], buf->base, buf->len);
    s->out_len[s->n_writes++] = buf->len;
    return true;
}

static void on_side_http(void *ud, uint64_t peer, const char *addr)
{
    struct side *s = ud;
    /* The acceptor names the node its hello came from, the dialer the node it dialed. */
    FUZZ_REQUIRE(peer == (s->c.inbound ? s->c.peer_id : s->peer.st.id));
    FUZZ_REQUIRE(strlen(addr) <= CORRAL_TRANSPORT_HTTP_ADDR_MAX && s->addr_calls == 0);
    snprintf(s->http, sizeof(s->http), "%s", addr);
    s->http_calls++;
}

static void on_side_addr(void *ud, uint64_t peer, const char *addr, const char *http)
{
    struct side *s = ud;
    FUZZ_REQUIRE(peer == (s->c.inbound ? s->c.peer_id : s->peer.st.id));
    FUZZ_REQUIRE(corral_transport_addr_ok(addr, CORRAL_TRANSPORT_CLUSTER_ADDR_MAX));
    FUZZ_REQUIRE(s->http_calls == 1 && strcmp(http, s->http) == 0);
    snprintf(s->addr, sizeof(s->addr), "%s", addr);
    s->addr_calls++;
}

static void side_setup(struct side *s, uint64_t self, uint64_t other, bool inbound, unsigned sel)
{
    memset(s, 0, sizeof(*s));
    s->t.cluster_id = CLUSTER;
    s->t.node_id = self;
    s->t.cb.on_peer_http = on_side_http;
    s->t.cb.on_peer_addr = on_side_addr;
    s->t.cb.ud = s;
    tokens_set(&s->t.tokens, sel);
    strings_setup(&s->t, self);
    s->peer.t = &s->t;
    s->peer.st.id = other;
    s->t.peers[0] = &s->peer;
    s->t.n_peers = 1;
    s->c.t = &s->t;
    s->c.inbound = inbound;
    s->c.state = CONN_HELLO;
    s->c.peer = inbound ? NULL : &s->peer;
    if (!inbound)
        s->peer.out = &s->c;
    s->c.hs_req.data = &s->c;
    s->c.proof_req.data = &s->c;
    snprintf(s->c.name, sizeof(s->c.name), "127.0.0.1:%u", inbound ? 50000u : 7002u);
}

/* fn over an exact-size copy of b[0..n) as s's received bytes. */
static int side_take(struct side *s, const uint8_t *b, size_t n, size_t *pos,
                     int (*fn)(struct conn *, size_t *))
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    FUZZ_REQUIRE(copy != NULL);
    memcpy(copy, b, n);
    s->c.rbuf = copy;
    s->c.rlen = s->c.rcap = n;
    *pos = 0;
    int rv = fn(&s->c, pos);
    FUZZ_REQUIRE(*pos <= n);
    s->c.rbuf = NULL;
    free(copy);
    return rv;
}

/* Both ends, each with the token set sel chose: the dialer opens exactly
 * when both have no token, or both have one and it holds the acceptor's
 * first; the acceptor when, besides, it holds the dialer's first. */
static void round_trip(unsigned sel)
{
    side_setup(&dial, DIALER, SELF, false, sel & 7);
    side_setup(&acc, SELF, DIALER, true, (sel >> 3) & 7);
    FUZZ_REQUIRE(transport_hello_send(&dial.c) == 0 && dial.n_writes == 1);
    size_t pos;
    side_take(&acc, dial.out[0], dial.out_len[0], &pos, transport_take_hello);
    FUZZ_REQUIRE(pos == dial.out_len[0] && acc.n_writes == 1); /* an OK or a refusal */
    side_take(&dial, acc.out[0], acc.out_len[0], &pos, transport_take_reply);
    FUZZ_REQUIRE(pos == acc.out_len[0]);
    if (dial.n_writes == 2) {
        FUZZ_REQUIRE(acc.c.state == CONN_PROOF && dial.out_len[1] == PROOF_FRAME_BYTES);
        side_take(&acc, dial.out[1], dial.out_len[1], &pos, transport_take_proof);
        FUZZ_REQUIRE(pos == PROOF_FRAME_BYTES);
    }
    const struct corral_tokens *dt = &dial.t.tokens, *at = &acc.t.tokens;
    bool open_v1 = dt->n == 0 && at->n == 0, both = dt->n > 0 && at->n > 0;
    bool dial_open = open_v1 || (both && tokens_have(dt, at->tok[0]));
    bool acc_open = open_v1 || (dial_open && both && tokens_have(at, dt->tok[0]));
    FUZZ_REQUIRE((dial.c.state == CONN_OPEN) == dial_open && dial.peer.st.connected == dial_open);
    FUZZ_REQUIRE((acc.c.state == CONN_OPEN) == acc_open);
    FUZZ_REQUIRE(dial.http_calls == (dial_open ? 1 : 0) && acc.http_calls == (acc_open ? 1 : 0));
    FUZZ_REQUIRE(dial.addr_calls == dial.http_calls && acc.addr_calls == acc.http_calls);
    if (dial_open)
        FUZZ_REQUIRE(strcmp(dial.http, http_of(SELF)) == 0 &&
                     strcmp(dial.addr, addr_of(SELF)) == 0);
    if (acc_open)
        FUZZ_REQUIRE(strcmp(acc.http, http_of(DIALER)) == 0 &&
                     strcmp(acc.addr, addr_of(DIALER)) == 0);
}

/* The input as a hello to an acceptor with a token, then the rest of it as
 * the dialer's proof: accepted only with the proof transport.h defines,
 * over the hello's own strings section. */
static void fuzz_acceptor_v4(const uint8_t *data, size_t size, unsigned sel)
{
    unsigned set = 1 + sel % 4;
    uint64_t seed = rnd_seed;
    side_setup(&acc, SELF, DIALER, true, set);
    size_t pos, p2;
    int rv = side_take(&acc, data, size, &pos, transport_take_hello);
    if (rv != 1) {
        FUZZ_REQUIRE(acc.http_calls == 0 && acc.c.state != CONN_OPEN && acc.c.state != CONN_PROOF);
        rnd_seed = seed;
        return;
    }
    /* A version 3 hello is refused: this acceptor has a token. */
    FUZZ_REQUIRE(acc.c.state == CONN_PROOF && acc.http_calls == 0 && acc.n_writes == 1);
    FUZZ_REQUIRE(data[4] == CORRAL_TRANSPORT_VERSION_AUTH && pos >= HELLO4_FIXED_BYTES);
    size_t off, n;
    FUZZ_REQUIRE(frame_strings(data, size, HELLO4_FIXED_BYTES, &off, &n) && pos == off + n + 4);
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1], name[CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 1];
    char addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
    FUZZ_REQUIRE(strings_valid(data + off, n, http, name, addr) && strcmp(name, NAME) == 0);
    const uint8_t *reply = acc.out[0];
    FUZZ_REQUIRE(acc.out_len[0] >= REPLY4_FIXED_BYTES &&
                 reply[4] == CORRAL_TRANSPORT_VERSION_AUTH && reply[5] == 0);
    uint8_t want[HS_PROOF_BYTES], nonce[HS_NONCE_BYTES];
    memcpy(nonce, reply + 22, HS_NONCE_BYTES);
    expect_node_proof(acc.t.tokens.tok[0], 'a', SELF, data + 29, nonce, want);
    FUZZ_REQUIRE(memcmp(reply + 22 + HS_NONCE_BYTES, want, HS_PROOF_BYTES) == 0);
    uint64_t from = corral_get_le64(data + 13);
    size_t rest = size - pos;
    int rv3 = side_take(&acc, data + pos, rest, &p2, transport_take_proof);
    if (rv3 == 1) {
        FUZZ_REQUIRE(acc.c.state == CONN_OPEN && acc.http_calls == 1 && acc.addr_calls == 1 &&
                     p2 == PROOF_FRAME_BYTES);
        bool ok = false;
        for (uint32_t k = 0; k < acc.t.tokens.n; k++) {
            expect_proof(acc.t.tokens.tok[k], 'd', from, nonce, data + 29, data + off, n, want);
            ok = ok || memcmp(data + pos + 5, want, HS_PROOF_BYTES) == 0;
        }
        FUZZ_REQUIRE(ok && data[pos + 4] == 0);
    } else if (rv3 == 0) {
        FUZZ_REQUIRE(acc.c.state == CONN_PROOF && rest < PROOF_FRAME_BYTES && p2 == 0);
    } else {
        FUZZ_REQUIRE(acc.c.state == CONN_CLOSING && acc.http_calls == 0 && acc.addr_calls == 0);
    }
    /* Again, from the same nonce, with the proof of the acceptor's second
     * token when it has one (any of its tokens is accepted): it opens and
     * hands on the hello's addresses. */
    rnd_seed = seed;
    side_setup(&acc, SELF, DIALER, true, set);
    FUZZ_REQUIRE(side_take(&acc, data, size, &pos, transport_take_hello) == 1);
    FUZZ_REQUIRE(memcmp(acc.out[0] + 22, nonce, HS_NONCE_BYTES) == 0);
    uint8_t f[PROOF_FRAME_BYTES];
    memcpy(f, "CRLP", 4);
    f[4] = 0;
    expect_proof(acc.t.tokens.tok[acc.t.tokens.n - 1], 'd', from, nonce, data + 29, data + off, n,
                 f + 5);
    corral_put_le32(f + 5 + HS_PROOF_BYTES, corral_crc32c(0, f, 5 + HS_PROOF_BYTES));
    FUZZ_REQUIRE(side_take(&acc, f, sizeof(f), &p2, transport_take_proof) == 1);
    FUZZ_REQUIRE(acc.c.state == CONN_OPEN && acc.http_calls == 1 && acc.addr_calls == 1);
    FUZZ_REQUIRE(strcmp(acc.http, http) == 0 && strcmp(acc.addr, addr) == 0);
    /* A proof over other strings (its cluster address's last byte
     * changed) is not that dialer's: refused. */
    uint8_t *other = malloc(n);
    FUZZ_REQUIRE(other != NULL);
    memcpy(other, data + off, n);
    other[n - 1] = other[n - 1] == 'x' ? 'y' : 'x';
    rnd_seed = seed;
    side_setup(&acc, SELF, DIALER, true, set);
    FUZZ_REQUIRE(side_take(&acc, data, size, &pos, transport_take_hello) == 1);
    expect_proof(acc.t.tokens.tok[0], 'd', from, nonce, data + 29, other, n, f + 5);
    corral_put_le32(f + 5 + HS_PROOF_BYTES, corral_crc32c(0, f, 5 + HS_PROOF_BYTES));
    FUZZ_REQUIRE(side_take(&acc, f, sizeof(f), &p2, transport_take_proof) == -1);
    FUZZ_REQUIRE(acc.c.state == CONN_CLOSING && acc.http_calls == 0);
    free(other);
}

/* A dialer with a token sends its hello, then takes the input as the
 * reply; fix: with the acceptor's proof (over the reply's own strings)
 * and the CRC made right. Opens only on an OK version 4 reply from the
 * node it dialed, in its cluster (id and name), with valid strings, whose
 * proof holds for one of its tokens, and then sends its own proof. */
static void fuzz_dialer_v4(const uint8_t *data, size_t size, unsigned sel, bool fix)
{
    side_setup(&dial, DIALER, SELF, false, 1 + (sel >> 2) % 4);
    FUZZ_REQUIRE(transport_hello_send(&dial.c) == 0 && dial.n_writes == 1);
    uint8_t nonce_d[HS_NONCE_BYTES];
    memcpy(nonce_d, dial.out[0] + 29, HS_NONCE_BYTES);
    uint8_t *b = malloc(size > 0 ? size : 1);
    FUZZ_REQUIRE(b != NULL);
    memcpy(b, data, size);
    bool valid = false;
    size_t off = 0, n = 0;
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1], name[CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 1];
    char addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
    bool whole = frame_strings(b, size, REPLY4_FIXED_BYTES, &off, &n) && off + n + 4 <= size;
    if (fix && whole) {
        expect_proof(dial.t.tokens.tok[0], 'a', SELF, nonce_d, b + 22, b + off, n,
                     b + 22 + HS_NONCE_BYTES);
        size_t len = off + n + 4;
        corral_put_le32(b + len - 4, corral_crc32c(0, b, len - 4));
        valid = memcmp(b, "CRLR", 4) == 0 && b[4] == CORRAL_TRANSPORT_VERSION_AUTH && b[5] == 0 &&
                corral_get_le64(b + 6) == CLUSTER && corral_get_le64(b + 14) == SELF &&
                strings_valid(b + off, n, http, name, addr) && strcmp(name, NAME) == 0;
    }
    size_t pos;
    int rv = side_take(&dial, b, size, &pos, transport_take_reply);
    FUZZ_REQUIRE(!valid || rv == 1);
    if (rv == 1) {
        FUZZ_REQUIRE(dial.c.state == CONN_OPEN && dial.peer.st.connected && dial.http_calls == 1 &&
                     dial.addr_calls == 1);
        FUZZ_REQUIRE(b[4] == CORRAL_TRANSPORT_VERSION_AUTH && b[5] == 0 &&
                     corral_get_le64(b + 6) == CLUSTER && corral_get_le64(b + 14) == SELF);
        FUZZ_REQUIRE(whole && pos == off + n + 4);
        FUZZ_REQUIRE(strings_valid(b + off, n, http, name, addr) && strcmp(name, NAME) == 0 &&
                     strcmp(dial.http, http) == 0 && strcmp(dial.addr, addr) == 0);
        uint8_t want[HS_PROOF_BYTES];
        bool ok = false;
        for (uint32_t k = 0; k < dial.t.tokens.n; k++) {
            expect_proof(dial.t.tokens.tok[k], 'a', SELF, nonce_d, b + 22, b + off, n, want);
            ok = ok || memcmp(b + 22 + HS_NONCE_BYTES, want, HS_PROOF_BYTES) == 0;
        }
        FUZZ_REQUIRE(ok);
        /* Its proof: with its first token, over the acceptor's nonce and
         * its own strings. */
        FUZZ_REQUIRE(dial.n_writes == 2 && dial.out_len[1] == PROOF_FRAME_BYTES);
        const uint8_t *f = dial.out[1];
        expect_node_proof(dial.t.tokens.tok[0], 'd', DIALER, b + 22, nonce_d, want);
        FUZZ_REQUIRE(
            memcmp(f, "CRLP", 4) == 0 && f[4] == 0 && memcmp(f + 5, want, HS_PROOF_BYTES) == 0 &&
            corral_get_le32(f + 5 + HS_PROOF_BYTES) == corral_crc32c(0, f, 5 + HS_PROOF_BYTES));
    } else {
        FUZZ_REQUIRE(!dial.peer.st.connected && dial.http_calls == 0 && dial.n_writes == 1);
        FUZZ_REQUIRE(rv == 0 ? dial.c.state == CONN_HELLO : dial.c.state == CONN_CLOSING);
    }
    free(b);
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
    /* Version 4: the token sets come from the first byte, nonces from the
     * rest (getrandom is the stub above). */
    unsigned sel = size > 0 ? data[0] : 0;
    rnd_seed = size > 1 ? corral_crc32c(0, data + 1, size - 1) : 1;
    round_trip(sel);
    fuzz_acceptor_v4(data, size, sel);
    uint8_t *h4 = crc_fixed(data, size, HELLO4_FIXED_BYTES);
    if (h4 != NULL)
        fuzz_acceptor_v4(h4, size, sel);
    free(h4);
    fuzz_dialer_v4(data, size, sel, false);
    fuzz_dialer_v4(data, size, sel, true);
    return 0;
}
