/* The TCP transport of transport.h: per-peer outbound connections that send,
 * inbound connections that receive, length-prefixed codec frames, bounded
 * per-peer send queues flushed in batches (corral_transport_flush, or once
 * per loop iteration at the latest), and
 * reconnect backoff. The handshake is in transport_hs.c.
 *
 * libuv writes with plain write(2)/writev(2), without MSG_NOSIGNAL, so a
 * write to a socket the peer has reset raises SIGPIPE: the process running
 * this transport must ignore SIGPIPE (the daemon does at start, the tests
 * in their main), and then the failure arrives as an EPIPE write error. */
#include "runtime/transport.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "corral.h"
#include "core/codec.h"
#include "runtime/transport_impl.h"
#include "util/bytes.h"
#include "util/mem.h"

static void peer_dial(struct peer *p);

/* ---- logging, randomness, addresses ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 0))) /* clang's -Wformat-nonliteral */
#endif
static void
transport_vlog(struct corral_transport *t, int level, const char *fmt, va_list ap)
{
    if (t->cb.log == NULL)
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    t->cb.log(t->cb.ud, level, msg);
}

void transport_log(struct corral_transport *t, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    transport_vlog(t, level, fmt, ap);
    va_end(ap);
}

/* Says how many lines about l's address were left out, and starts a new
 * interval. */
static void limit_roll(struct corral_transport *t, struct log_limit *l, uint64_t now)
{
    if (l->suppressed > 0)
        transport_log(t, l->level,
                      "transport: %s: (%" PRIu64 " more suppressed in the last %" PRIu64 " s)",
                      l->key, l->suppressed, (now - l->since_ms + 999) / 1000);
    l->since_ms = now;
    l->lines = 0;
    l->suppressed = 0;
    l->level = 3;
}

static struct log_limit *limit_slot(struct corral_transport *t, const char *key, uint64_t now)
{
    struct log_limit *empty = NULL, *oldest = NULL;
    for (int i = 0; i < LOG_LIMIT_SLOTS; i++) {
        struct log_limit *l = &t->limits[i];
        if (l->key[0] == '\0') {
            if (empty == NULL)
                empty = l;
        } else if (strcmp(l->key, key) == 0) {
            return l;
        } else if (oldest == NULL || l->since_ms < oldest->since_ms) {
            oldest = l;
        }
    }
    struct log_limit *l = empty != NULL ? empty : oldest;
    if (l->key[0] != '\0')
        limit_roll(t, l, now);
    snprintf(l->key, sizeof(l->key), "%s", key);
    l->since_ms = now;
    l->lines = 0;
    l->suppressed = 0;
    l->level = 3;
    return l;
}

void transport_log_limited(struct corral_transport *t, const char *key, int level, const char *fmt,
                           ...)
{
    if (t->cb.log == NULL)
        return;
    uint64_t now = uv_now(t->loop);
    struct log_limit *l = limit_slot(t, key, now);
    if (now - l->since_ms >= LOG_LIMIT_MS)
        limit_roll(t, l, now);
    if (l->lines >= LOG_LIMIT_LINES) {
        l->suppressed++;
        if (level < l->level)
            l->level = level;
        return;
    }
    l->lines++;
    va_list ap;
    va_start(ap, fmt);
    transport_vlog(t, level, fmt, ap);
    va_end(ap);
}

/* Once a second: the summaries of intervals that are over. */
static void limits_sweep(struct corral_transport *t, uint64_t now)
{
    for (int i = 0; i < LOG_LIMIT_SLOTS; i++) {
        struct log_limit *l = &t->limits[i];
        if (l->key[0] != '\0' && now - l->since_ms >= LOG_LIMIT_MS) {
            limit_roll(t, l, now);
            l->key[0] = '\0';
        }
    }
}

/* splitmix64: enough to spread reconnects, seeded per node. */
static uint64_t rng_next(struct corral_transport *t)
{
    uint64_t z = (t->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Parses a numeric IPv4 or IPv6 address. */
static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (host == NULL)
        return CORRAL_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return CORRAL_EINVAL;
}

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[64] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%u", ip, port);
        return;
    }
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, "%s:%u", ip, port);
}

static void addr_host(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    snprintf(out, cap, "?");
    if (ss->ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)ss, out, cap);
    else if (ss->ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)ss, out, cap);
}

/* ---- chunks: the send queue ---- */

/* The counters of l against its chunks. They decide the queue bound and
 * the sent/dropped stats, so a drift would go unnoticed otherwise. A walk:
 * only where l is short (in flight: WRITE_BUFS_MAX chunks) or the call
 * rare (a dropped queue, the once-a-second sweep). */
static void chunks_assert_sums(const struct chunk_list *l)
{
#ifndef NDEBUG
    size_t bytes = 0;
    uint64_t msgs = 0;
    const struct chunk *last = NULL;
    for (const struct chunk *k = l->head; k != NULL; k = k->next) {
        assert(k->len <= k->cap && (k->len == 0) == (k->msgs == 0));
        bytes += k->len;
        msgs += k->msgs;
        last = k;
    }
    assert(last == l->tail && bytes == l->bytes && msgs == l->msgs);
#else
    (void)l;
#endif
}

static void chunks_free(struct chunk_list *l)
{
    struct chunk *k = l->head;
    while (k != NULL) {
        struct chunk *next = k->next;
        corral_free(k);
        k = next;
    }
    memset(l, 0, sizeof(*l));
}

/* Room for frame bytes at the tail, in a new chunk when the tail is full.
 * The caller fills them and commits with chunks_commit. */
static uint8_t *chunks_reserve(struct chunk_list *l, size_t frame)
{
    struct chunk *k = l->tail;
    if (k != NULL && k->cap - k->len >= frame)
        return k->data + k->len;
    size_t cap = frame > CHUNK_BYTES ? frame : CHUNK_BYTES;
    k = corral_malloc(sizeof(*k) + cap);
    if (k == NULL)
        return NULL;
    k->next = NULL;
    k->len = 0;
    k->cap = cap;
    k->msgs = 0;
    if (l->tail != NULL)
        l->tail->next = k;
    else
        l->head = k;
    l->tail = k;
    return k->data;
}

static void chunks_commit(struct chunk_list *l, size_t frame)
{
    assert(l->tail != NULL && frame <= l->tail->cap - l->tail->len);
    l->tail->len += frame;
    l->tail->msgs++;
    l->bytes += frame;
    l->msgs++;
}

static struct chunk *chunks_pop(struct chunk_list *l)
{
    struct chunk *k = l->head;
    assert(k != NULL && k->len <= l->bytes && k->msgs <= l->msgs);
    l->head = k->next;
    if (l->head == NULL)
        l->tail = NULL;
    k->next = NULL;
    l->bytes -= k->len;
    l->msgs -= k->msgs;
    /* O(1) half of chunks_assert_sums: an emptied list counts nothing. */
    assert(l->head != NULL || (l->bytes == 0 && l->msgs == 0));
    return k;
}

static void chunks_push(struct chunk_list *l, struct chunk *k)
{
    assert(k->next == NULL && (l->head == NULL) == (l->tail == NULL));
    if (l->tail != NULL)
        l->tail->next = k;
    else
        l->head = k;
    l->tail = k;
    l->bytes += k->len;
    l->msgs += k->msgs;
}

/* ---- handles and their release ---- */

static void transport_free(struct corral_transport *t)
{
    void (*on_closed)(void *ud) = t->on_closed;
    void *ud = t->closed_ud;
    for (uint32_t i = 0; i < t->n_peers; i++) {
        chunks_free(&t->peers[i]->pending);
        corral_free(t->peers[i]);
    }
    memset(&t->tokens, 0, sizeof(t->tokens));
    corral_free(t);
    if (on_closed != NULL)
        on_closed(ud);
}

static void handle_released(struct corral_transport *t)
{
    t->handles--;
    if (t->stopping && t->handles == 0)
        transport_free(t);
}

static void transport_handle_closed_cb(uv_handle_t *h)
{
    handle_released(h->data);
}

static void peer_timer_closed_cb(uv_handle_t *h)
{
    struct peer *p = h->data;
    handle_released(p->t);
}

/* A removed peer's timer is closed: nothing refers to p any more (its
 * connection was detached, its slot taken back). */
static void peer_removed_closed_cb(uv_handle_t *h)
{
    struct peer *p = h->data;
    struct corral_transport *t = p->t;
    assert(p->removed && p->out == NULL);
    chunks_free(&p->pending);
    corral_free(p);
    t->peers_closing--;
    handle_released(t);
}

static void conn_closed_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct corral_transport *t = c->t;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    t->n_conns--;
    chunks_free(&c->inflight);
    corral_free(c->rbuf);
    corral_free(c);
    handle_released(t);
}

/* ---- peers: dialing and backoff ---- */

struct peer *transport_peer_find(const struct corral_transport *t, uint64_t id)
{
    for (uint32_t i = 0; i < t->n_peers; i++)
        if (t->peers[i]->st.id == id)
            return t->peers[i];
    return NULL;
}

static void peer_timer_cb(uv_timer_t *timer)
{
    peer_dial(timer->data);
}

/* Next dial after a delay drawn from [backoff/2, backoff] ("equal jitter"),
 * so peers that lost each other at once do not redial in lockstep. */
static void peer_schedule(struct peer *p)
{
    struct corral_transport *t = p->t;
    uint64_t half = p->backoff_ms / 2;
    uint64_t delay_ms = half + rng_next(t) % (p->backoff_ms - half + 1);
    uv_timer_start(&p->timer, peer_timer_cb, delay_ms, 0);
    p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
}

/* Failures repeat every couple of seconds while a peer is down: the first
 * is a warning, the rest debug lines. */
static int peer_fail_level(struct peer *p)
{
    p->failures++;
    return p->failures == 1 ? 1 : 3;
}

static void peer_drop_pending(struct peer *p)
{
    chunks_assert_sums(&p->pending);
    p->st.dropped_msgs += p->pending.msgs;
    chunks_free(&p->pending);
}

/* ---- connections ---- */

static struct conn *conn_new(struct corral_transport *t, bool inbound)
{
    struct conn *c = corral_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->rbuf = corral_malloc(RBUF_BYTES);
    if (c->rbuf == NULL || uv_tcp_init(t->loop, &c->tcp) != 0) {
        corral_free(c->rbuf);
        corral_free(c);
        return NULL;
    }
    c->rcap = RBUF_BYTES;
    c->t = t;
    c->inbound = inbound;
    c->started_ms = uv_now(t->loop);
    c->tcp.data = c;
    c->connect_req.data = c;
    c->hs_req.data = c;
    c->proof_req.data = c;
    c->wr_req.data = c;
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    t->n_conns++;
    t->handles++;
    return c;
}

/* Unhooks an outbound connection from its peer: what was queued is dropped
 * (Raft retransmits) and, unless stopping, a redial is scheduled. */
static void conn_detach(struct conn *c)
{
    struct peer *p = c->peer;
    if (p == NULL)
        return;
    c->peer = NULL;
    p->out = NULL;
    p->st.connected = false;
    peer_drop_pending(p);
    if (!p->t->stopping && !p->removed)
        peer_schedule(p);
}

void transport_conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    conn_detach(c);
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
}

/* Logs why, with which remote, then closes. */
void transport_conn_fail(struct conn *c, int level, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* A connection from a node of ours, past its handshake, is logged
     * whole; the rest is limited per remote address. */
    if (c->inbound && c->state == CONN_OPEN)
        transport_log(c->t, level,
                      "transport: closing inbound connection from %s (node %" PRIu64 "): %s",
                      c->name, c->peer_id, why);
    else if (c->inbound && c->peer_id == 0)
        transport_log_limited(c->t, c->host, level,
                              "transport: closing inbound connection from %s: %s", c->name, why);
    else if (c->inbound)
        transport_log_limited(c->t, c->host, level,
                              "transport: closing inbound connection from %s (node %" PRIu64
                              "): %s",
                              c->name, c->peer_id, why);
    else if (c->peer != NULL)
        transport_log_limited(c->t, c->peer->name, level,
                              "transport: connection to peer %" PRIu64 " at %s: %s", c->peer->st.id,
                              c->name, why);
    transport_conn_close(c);
}

static void conn_tune(struct conn *c)
{
    /* Raft's small messages must not wait for Nagle; keepalive notices a
     * peer whose host vanished without a FIN. Failures only cost latency. */
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, KEEPALIVE_DELAY_S);
}

/* ---- receiving frames ---- */

/* One message frame on an inbound connection; same returns as transport_take_hello. */
static int take_frame(struct conn *c, size_t *pos)
{
    struct corral_transport *t = c->t;
    size_t avail = c->rlen - *pos;
    if (avail < 4)
        return 0;
    uint32_t len = corral_get_le32(c->rbuf + *pos);
    if (len > CORRAL_CODEC_MSG_BYTES_MAX) {
        transport_conn_fail(c, 1, "frame of %" PRIu32 " bytes exceeds the limit", len);
        return -1;
    }
    if (avail - 4 < len)
        return 0;
    struct corral_raft_msg m;
    int rc = corral_codec_msg_decode(c->rbuf + *pos + 4, len, &m);
    if (rc != 0) {
        transport_conn_fail(c, 1, "undecodable message: %s", corral_strerror(rc));
        return -1;
    }
    if (m.from != c->peer_id || m.to != t->node_id) {
        transport_conn_fail(c, 1, "message from %" PRIu64 " to %" PRIu64 " on this connection",
                            m.from, m.to);
        corral_raft_msg_clear(&m);
        return -1;
    }
    *pos += 4 + (size_t)len;
    assert(*pos <= c->rlen);
    struct peer *p = transport_peer_find(t, c->peer_id);
    if (p != NULL) {
        p->st.recv_msgs++;
        p->st.recv_bytes += 4 + (uint64_t)len;
    }
    if (t->cb.on_msg != NULL)
        t->cb.on_msg(t->cb.ud, &m);
    corral_raft_msg_clear(&m);
    return c->state == CONN_CLOSING ? -1 : 1;
}

/* Sizes the receive buffer for what comes next: the frame whose header is
 * already in, else the resting size. Never below rlen. */
static int conn_reserve(struct conn *c)
{
    size_t want = RBUF_BYTES;
    if (c->inbound && c->state == CONN_OPEN && c->rlen >= 4) {
        size_t frame = 4 + (size_t)corral_get_le32(c->rbuf);
        if (frame > want)
            want = frame;
    }
    if (want == c->rcap || (want < c->rcap && c->rlen > want))
        return 0;
    uint8_t *b = corral_realloc(c->rbuf, want);
    if (b == NULL)
        return want > c->rcap ? CORRAL_ENOMEM : 0;
    c->rbuf = b;
    c->rcap = want;
    assert(c->rlen <= c->rcap);
    return 0;
}

static void conn_process(struct conn *c)
{
    size_t pos = 0;
    int rc = 1;
    while (rc > 0 && pos < c->rlen) {
        if (c->state == CONN_HELLO)
            rc = c->inbound ? transport_take_hello(c, &pos) : transport_take_reply(c, &pos);
        else if (c->state == CONN_PROOF)
            rc = transport_take_proof(c, &pos);
        else if (c->state == CONN_OPEN && c->inbound)
            rc = take_frame(c, &pos);
        else if (c->state == CONN_OPEN) {
            transport_conn_fail(c, 1, "unexpected bytes from the acceptor");
            rc = -1;
        } else
            pos = c->rlen; /* refusing: whatever follows is ignored */
    }
    if (c->state == CONN_CLOSING)
        return;
    assert(pos <= c->rlen);
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    if (conn_reserve(c) != 0)
        transport_conn_fail(c, 0, "no memory for a frame");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    /* conn_reserve leaves room for at least the rest of the current frame,
     * so this is never empty while a frame is incomplete. */
    assert(c->rlen < c->rcap);
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (c->state == CONN_CLOSING || nread == 0)
        return;
    if (nread == UV_EOF && c->state == CONN_PROOF) {
        transport_conn_fail(c, 1,
                            "closed before proving the cluster token: our proof failed "
                            "at its end (its token differs from ours?)");
        return;
    }
    if (nread == UV_EOF) {
        transport_conn_fail(c, 2, "closed by the remote end");
        return;
    }
    if (nread < 0) {
        transport_conn_fail(c, 1, "read failed: %s", uv_strerror((int)nread));
        return;
    }
    c->rlen += (size_t)nread;
    assert(c->rlen <= c->rcap); /* libuv filled at most what alloc_cb gave */
    conn_process(c);
}

static int conn_read_start(struct conn *c)
{
    int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (rc != 0)
        transport_conn_fail(c, 1, "read start failed: %s", uv_strerror(rc));
    return rc;
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *server, int status)
{
    struct corral_transport *t = server->data;
    if (status < 0) {
        transport_log_limited(t, "accept", 1, "transport: accept failed: %s", uv_strerror(status));
        return;
    }
    struct conn *c = conn_new(t, true);
    if (c == NULL) {
        transport_log(t, 0, "transport: no memory for an inbound connection");
        return;
    }
    c->state = CONN_HELLO;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        transport_conn_fail(c, 1, "accept failed: %s", uv_strerror(rc));
        return;
    }
    struct sockaddr_storage ss;
    int sslen = (int)sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen);
    addr_name(&ss, c->name, sizeof(c->name));
    addr_host(&ss, c->host, sizeof(c->host));
    if (t->n_conns > CONNS_MAX) {
        transport_conn_fail(c, 1, "too many connections (%d)", CONNS_MAX);
        return;
    }
    conn_tune(c);
    conn_read_start(c);
}

/* ---- dialing ---- */

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        transport_conn_fail(c, peer_fail_level(c->peer), "connect failed: %s", uv_strerror(status));
        return;
    }
    conn_tune(c);
    c->state = CONN_HELLO;
    if (transport_hello_send(c) != 0)
        return;
    conn_read_start(c);
}

static void peer_dial(struct peer *p)
{
    struct corral_transport *t = p->t;
    if (t->stopping || p->removed || p->out != NULL)
        return;
    struct conn *c = conn_new(t, false);
    if (c == NULL) {
        transport_log(t, 0, "transport: no memory to dial peer %" PRIu64, p->st.id);
        peer_schedule(p);
        return;
    }
    c->peer = p;
    p->out = c;
    c->state = CONN_CONNECTING;
    memcpy(c->name, p->name, sizeof(c->name));
    int rc =
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->addr, connect_cb);
    if (rc != 0)
        transport_conn_fail(c, peer_fail_level(p), "connect failed: %s", uv_strerror(rc));
}

/* Every handle is counted once: the three of t, a timer per peer (a
 * removed one's until it is closed), a socket per connection. Otherwise
 * stop would free t early or never. O(1). */
static void assert_handles(const struct corral_transport *t)
{
    assert(t->stopping || t->handles == 3 + t->n_peers + t->peers_closing + t->n_conns);
    (void)t;
}

/* The lists against their counters and each other: a walk over the
 * connections (CONNS_MAX and the one being refused) and the peers' queues,
 * so only once a second. */
static void assert_lists(const struct corral_transport *t)
{
#ifndef NDEBUG
    uint32_t n = 0;
    for (const struct conn *c = t->conns; c != NULL; c = c->next) {
        assert(c->next == NULL || c->next->prev == c);
        assert(c->peer == NULL || (!c->inbound && c->peer->out == c));
        assert(c->writing == (c->inflight.head != NULL));
        n++;
    }
    assert(n == t->n_conns);
    for (uint32_t i = 0; i < t->n_peers; i++) {
        const struct peer *p = t->peers[i];
        assert(!p->removed);
        assert(p->out == NULL || p->out->peer == p);
        assert(p->st.connected || p->pending.head == NULL);
        chunks_assert_sums(&p->pending);
    }
#else
    (void)t;
#endif
}

/* Closes connections stuck before the end of their handshake. */
static void sweep_cb(uv_timer_t *timer)
{
    struct corral_transport *t = timer->data;
    assert_handles(t);
    assert_lists(t);
    uint64_t now = uv_now(t->loop);
    limits_sweep(t, now);
    struct conn *c = t->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        bool stuck =
            c->state == CONN_CONNECTING || c->state == CONN_HELLO || c->state == CONN_PROOF;
        if (stuck && now - c->started_ms >= HANDSHAKE_MS)
            transport_conn_fail(c, c->peer != NULL ? peer_fail_level(c->peer) : 1,
                                "no handshake within %d ms", HANDSHAKE_MS);
        c = next;
    }
}

/* ---- sending ---- */

static void write_cb(uv_write_t *req, int status);

/* Hands up to WRITE_BUFS_MAX queued chunks to one uv_write (one writev). */
static void peer_flush(struct peer *p)
{
    struct conn *c = p->out;
    assert(c == NULL || c->writing == (c->inflight.head != NULL));
    if (c == NULL || c->state != CONN_OPEN || c->writing || p->pending.head == NULL)
        return;
    unsigned n = 0;
    while (n < WRITE_BUFS_MAX && p->pending.head != NULL) {
        struct chunk *k = chunks_pop(&p->pending);
        chunks_push(&c->inflight, k);
        c->bufs[n++] = uv_buf_init((char *)k->data, (unsigned)k->len);
    }
    c->writing = true;
    int rc = uv_write(&c->wr_req, (uv_stream_t *)&c->tcp, c->bufs, n, write_cb);
    if (rc != 0) {
        c->writing = false;
        p->st.dropped_msgs += c->inflight.msgs;
        chunks_free(&c->inflight);
        transport_conn_fail(c, 1, "write failed: %s", uv_strerror(rc));
    }
}

void corral_transport_flush(struct corral_transport *t)
{
    if (t->stopping)
        return;
    assert_handles(t);
    for (uint32_t i = 0; i < t->n_peers; i++)
        peer_flush(t->peers[i]);
}

static void flush_cb(uv_prepare_t *prep)
{
    struct corral_transport *t = prep->data;
    uv_prepare_stop(prep);
    t->flush_armed = false;
    corral_transport_flush(t);
}

/* Writes go out at the latest just before the loop polls, so every
 * message queued by this iteration's callbacks shares one writev; the
 * node flushes sooner (corral_transport_flush) after each driver run and
 * before a batch's fsync. */
static void flush_arm(struct corral_transport *t)
{
    if (t->flush_armed || t->stopping)
        return;
    t->flush_armed = true;
    uv_prepare_start(&t->flush, flush_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    struct peer *p = c->peer;
    chunks_assert_sums(&c->inflight); /* at most WRITE_BUFS_MAX chunks */
    uint64_t msgs = c->inflight.msgs, bytes = c->inflight.bytes;
    c->writing = false;
    chunks_free(&c->inflight);
    if (status < 0) {
        if (p != NULL)
            p->st.dropped_msgs += msgs;
        if (c->state != CONN_CLOSING)
            transport_conn_fail(c, 1, "write failed: %s", uv_strerror(status));
        return;
    }
    if (p == NULL)
        return;
    p->st.sent_msgs += msgs;
    p->st.sent_bytes += bytes;
    if (p->pending.head != NULL)
        flush_arm(p->t);
}

static size_t peer_queued(const struct peer *p)
{
    return p->pending.bytes + (p->out != NULL ? p->out->inflight.bytes : 0);
}

int corral_transport_send(struct corral_transport *t, const struct corral_raft_msg *m)
{
    if (t->stopping)
        return CORRAL_ESHUTDOWN;
    if (m->from != t->node_id)
        return CORRAL_EINVAL;
    struct peer *p = transport_peer_find(t, m->to);
    if (p == NULL)
        return CORRAL_ENOTFOUND;
    size_t size = corral_codec_msg_size(m);
    if (size > CORRAL_CODEC_MSG_BYTES_MAX)
        return CORRAL_ETOOBIG;
    size_t frame = 4 + size;
    /* Only a connection past its handshake has a queue (conn_detach drops
     * it), so a message is never queued where it cannot go. */
    assert(p->st.connected == (p->out != NULL && p->out->state == CONN_OPEN));
    assert(p->st.connected || p->pending.head == NULL);
    if (!p->st.connected || peer_queued(p) + frame > t->queue_max_bytes) {
        p->st.dropped_msgs++;
        return CORRAL_EFULL;
    }
    uint8_t *b = chunks_reserve(&p->pending, frame);
    if (b == NULL) {
        p->st.dropped_msgs++;
        return CORRAL_ENOMEM;
    }
    size_t len = 0;
    int rc = corral_codec_msg_encode(m, b + 4, size, &len);
    if (rc != 0)
        return rc;       /* an empty new chunk stays as the tail, to be reused */
    assert(len == size); /* the frame is what was reserved and bounded */
    corral_put_le32(b, (uint32_t)len);
    chunks_commit(&p->pending, 4 + len);
    assert(peer_queued(p) <= t->queue_max_bytes);
    flush_arm(t);
    return 0;
}

/* ---- lifecycle ---- */

static int start_listen(struct corral_transport *t, const struct corral_transport_config *cfg,
                        const struct sockaddr_storage *ss, char *err, size_t errlen)
{
    char name[64];
    addr_name(ss, name, sizeof(name));
    int rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)ss, 0);
    /* libuv may report EADDRINUSE from bind only at listen. */
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&t->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "transport: cannot listen on %s: %s", name, uv_strerror(rc));
        return CORRAL_EIO;
    }
    transport_log(t, 2, "transport: node %" PRIu64 " listening on %s (port %u)", cfg->node_id, name,
                  (unsigned)corral_transport_port(t));
    return 0;
}

static int check_config(const struct corral_transport_config *cfg, struct sockaddr_storage *ss,
                        char *err, size_t errlen)
{
    if (cfg->node_id == 0) {
        snprintf(err, errlen, "transport: node id must be nonzero");
        return CORRAL_EINVAL;
    }
    if (cfg->http_addr != NULL && cfg->http_addr[0] != '\0' &&
        !corral_transport_addr_ok(cfg->http_addr, CORRAL_TRANSPORT_HTTP_ADDR_MAX)) {
        snprintf(err, errlen,
                 "transport: http address longer than %d bytes, or not printable ASCII without "
                 "spaces",
                 CORRAL_TRANSPORT_HTTP_ADDR_MAX);
        return CORRAL_EINVAL;
    }
    if (cfg->cluster_name != NULL && !corral_transport_cluster_name_ok(cfg->cluster_name)) {
        snprintf(err, errlen,
                 "transport: cluster name '%.80s' is not 1..%d characters of [a-z0-9._-]",
                 cfg->cluster_name, CORRAL_TRANSPORT_CLUSTER_NAME_MAX);
        return CORRAL_EINVAL;
    }
    if (cfg->advertise_addr != NULL &&
        !corral_transport_addr_ok(cfg->advertise_addr, CORRAL_TRANSPORT_CLUSTER_ADDR_MAX)) {
        snprintf(err, errlen,
                 "transport: advertised cluster address '%.80s' is not 1..%d bytes of printable "
                 "ASCII without spaces",
                 cfg->advertise_addr, CORRAL_TRANSPORT_CLUSTER_ADDR_MAX);
        return CORRAL_EINVAL;
    }
    if (parse_addr(cfg->listen_host, cfg->listen_port, ss) != 0) {
        snprintf(err, errlen, "transport: listen host '%s' is not a numeric IPv4 or IPv6 address",
                 cfg->listen_host != NULL ? cfg->listen_host : "(null)");
        return CORRAL_EINVAL;
    }
    return 0;
}

int corral_transport_start(uv_loop_t *loop, const struct corral_transport_config *cfg,
                           const struct corral_transport_callbacks *cb,
                           struct corral_transport **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    *out = NULL;
    int rc = check_config(cfg, &ss, err, errlen);
    if (rc != 0)
        return rc;
    struct corral_transport *t = corral_calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "transport: out of memory");
        return CORRAL_ENOMEM;
    }
    t->loop = loop;
    t->cb = *cb;
    t->cluster_id = cfg->cluster_id;
    t->node_id = cfg->node_id;
    if (cfg->tokens != NULL)
        t->tokens = *cfg->tokens;
    t->queue_max_bytes = cfg->queue_max_bytes != 0 ? cfg->queue_max_bytes : QUEUE_DEFAULT_BYTES;
    snprintf(t->cluster_name, sizeof(t->cluster_name), "%s",
             cfg->cluster_name != NULL ? cfg->cluster_name : CORRAL_TRANSPORT_CLUSTER_NAME_DEFAULT);
    t->rng = cfg->node_id;
    uv_tcp_init(loop, &t->listener);
    uv_timer_init(loop, &t->sweep);
    uv_prepare_init(loop, &t->flush);
    t->listener.data = t->sweep.data = t->flush.data = t;
    t->handles = 3;
    rc = start_listen(t, cfg, &ss, err, errlen);
    if (rc != 0) {
        /* The handles exist now; they free t once closed. */
        corral_transport_stop(t, NULL, NULL);
        return rc;
    }
    /* The default advertised address names the bound port (listen port
     * 0 picks one). */
    if (cfg->advertise_addr != NULL)
        snprintf(t->cluster_addr, sizeof(t->cluster_addr), "%s", cfg->advertise_addr);
    else if (strchr(cfg->listen_host, ':') != NULL)
        snprintf(t->cluster_addr, sizeof(t->cluster_addr), "[%s]:%u", cfg->listen_host,
                 (unsigned)corral_transport_port(t));
    else
        snprintf(t->cluster_addr, sizeof(t->cluster_addr), "%s:%u", cfg->listen_host,
                 (unsigned)corral_transport_port(t));
    transport_strings_build(t, cfg->http_addr);
    uv_timer_start(&t->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    *out = t;
    return 0;
}

uint16_t corral_transport_port(const struct corral_transport *t)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

int corral_transport_add_peer(struct corral_transport *t, uint64_t id, const char *host,
                              uint16_t port)
{
    if (t->stopping)
        return CORRAL_ESHUTDOWN;
    if (id == 0 || id == t->node_id || transport_peer_find(t, id) != NULL)
        return CORRAL_EINVAL;
    if (t->n_peers == CORRAL_RAFT_NODES_MAX)
        return CORRAL_EFULL;
    struct sockaddr_storage ss;
    if (parse_addr(host, port, &ss) != 0)
        return CORRAL_EINVAL;
    struct peer *p = corral_calloc(1, sizeof(*p));
    if (p == NULL)
        return CORRAL_ENOMEM;
    p->t = t;
    p->st.id = id;
    p->addr = ss;
    addr_name(&ss, p->name, sizeof(p->name));
    p->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(t->loop, &p->timer);
    p->timer.data = p;
    t->handles++;
    t->peers[t->n_peers++] = p;
    uv_timer_start(&p->timer, peer_timer_cb, 0, 0);
    return 0;
}

int corral_transport_set_peer(struct corral_transport *t, uint64_t id, const char *host,
                              uint16_t port)
{
    if (t->stopping)
        return CORRAL_ESHUTDOWN;
    struct peer *p = transport_peer_find(t, id);
    if (p == NULL)
        return corral_transport_add_peer(t, id, host, port);
    struct sockaddr_storage ss;
    if (parse_addr(host, port, &ss) != 0)
        return CORRAL_EINVAL;
    char name[64];
    addr_name(&ss, name, sizeof(name));
    if (strcmp(name, p->name) == 0)
        return 0;
    transport_log(t, 2, "transport: peer %" PRIu64 " moves from %s to %s", id, p->name, name);
    p->addr = ss;
    memcpy(p->name, name, sizeof(p->name));
    /* Its refusals were the old address's. */
    p->st.wrong_cluster_refusals = 0;
    p->st.wrong_token_refusals = 0;
    if (p->out != NULL)
        transport_conn_close(p->out); /* drops its queue; schedules a redial */
    p->backoff_ms = BACKOFF_MIN_MS;
    p->failures = 0;
    uv_timer_start(&p->timer, peer_timer_cb, 0, 0);
    return 0;
}

int corral_transport_remove_peer(struct corral_transport *t, uint64_t id)
{
    if (t->stopping)
        return CORRAL_ESHUTDOWN;
    uint32_t i = 0;
    while (i < t->n_peers && t->peers[i]->st.id != id)
        i++;
    if (i == t->n_peers)
        return CORRAL_ENOTFOUND;
    struct peer *p = t->peers[i];
    /* Out of the table first, so nothing finds it; its order is kept for
     * the others (stats list peers in the order added). */
    memmove(&t->peers[i], &t->peers[i + 1], (t->n_peers - i - 1) * sizeof(t->peers[0]));
    t->n_peers--;
    t->peers[t->n_peers] = NULL;
    p->removed = true;
    if (p->out != NULL)
        transport_conn_close(p->out); /* detaches; no redial for a removed peer */
    peer_drop_pending(p);
    transport_log(t, 2, "transport: peer %" PRIu64 " at %s removed", id, p->name);
    /* Freed once its timer is closed; a connection closing meanwhile no
     * longer points at it. */
    t->peers_closing++;
    uv_close((uv_handle_t *)&p->timer, peer_removed_closed_cb);
    return 0;
}

uint32_t corral_transport_stats(const struct corral_transport *t,
                                struct corral_transport_peer_stats *out, uint32_t cap)
{
    for (uint32_t i = 0; i < t->n_peers && i < cap; i++) {
        out[i] = t->peers[i]->st;
        out[i].queued_bytes = peer_queued(t->peers[i]);
        out[i].wrong_cluster_ms = out[i].wrong_cluster_refusals > 0
                                      ? uv_now(t->loop) - t->peers[i]->wrong_cluster_since_ms
                                      : 0;
        out[i].wrong_token_ms = out[i].wrong_token_refusals > 0
                                    ? uv_now(t->loop) - t->peers[i]->wrong_token_since_ms
                                    : 0;
    }
    return t->n_peers;
}

void corral_transport_stop(struct corral_transport *t, void (*on_closed)(void *ud), void *ud)
{
    if (t->stopping)
        return;
    t->stopping = true;
    t->on_closed = on_closed;
    t->closed_ud = ud;
    uv_close((uv_handle_t *)&t->listener, transport_handle_closed_cb);
    uv_close((uv_handle_t *)&t->sweep, transport_handle_closed_cb);
    uv_close((uv_handle_t *)&t->flush, transport_handle_closed_cb);
    for (struct conn *c = t->conns; c != NULL; c = c->next)
        transport_conn_close(c);
    for (uint32_t i = 0; i < t->n_peers; i++)
        uv_close((uv_handle_t *)&t->peers[i]->timer, peer_timer_closed_cb);
}
