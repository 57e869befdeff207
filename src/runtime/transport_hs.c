/* The hello handshake of transport.h: the dialer's hello, the acceptor's
 * checks (cluster id, our node id, version) and its reply, and the
 * dialer's checks of that reply. A refusal is logged on both sides. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "runtime/transport_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"

enum hello_status {
    HELLO_OK = 0,
    HELLO_WRONG_CLUSTER = 1,
    HELLO_WRONG_NODE = 2,
    HELLO_BAD_VERSION = 3,
};

static size_t hello_build(const struct corral_transport *t, uint64_t to, uint8_t *b)
{
    memcpy(b, "CRLH", 4);
    b[4] = CORRAL_TRANSPORT_VERSION;
    corral_put_le64(b + 5, t->cluster_id);
    corral_put_le64(b + 13, t->node_id);
    corral_put_le64(b + 21, to);
    corral_put_le16(b + 29, t->http_len);
    memcpy(b + HELLO_FIXED_BYTES, t->http_addr, t->http_len);
    size_t n = HELLO_FIXED_BYTES + (size_t)t->http_len;
    assert(n + 4 <= HS_BYTES_MAX); /* start bounded http_len; c->hs_buf holds this */
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    return n + 4;
}

static size_t reply_build(const struct corral_transport *t, uint8_t status, uint8_t *b)
{
    memcpy(b, "CRLR", 4);
    b[4] = CORRAL_TRANSPORT_VERSION;
    b[5] = status;
    corral_put_le64(b + 6, t->cluster_id);
    corral_put_le64(b + 14, t->node_id);
    corral_put_le16(b + 22, t->http_len);
    memcpy(b + REPLY_FIXED_BYTES, t->http_addr, t->http_len);
    size_t n = REPLY_FIXED_BYTES + (size_t)t->http_len;
    assert(n + 4 <= HS_BYTES_MAX);
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    return n + 4;
}

static const char *hello_status_name(unsigned status)
{
    switch (status) {
    case HELLO_OK:
        return "ok";
    case HELLO_WRONG_CLUSTER:
        return "wrong cluster id";
    case HELLO_WRONG_NODE:
        return "wrong node id";
    case HELLO_BAD_VERSION:
        return "unsupported version";
    default:
        return "unknown status";
    }
}

static void hs_write_cb(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0)
        transport_conn_fail(c, 1, "handshake write failed: %s", uv_strerror(status));
    else if (c->state == CONN_REFUSING)
        transport_conn_close(c);
}

static int hs_write(struct conn *c, size_t len)
{
    uv_buf_t buf = uv_buf_init((char *)c->hs_buf, (unsigned)len);
    int rc = uv_write(&c->hs_req, (uv_stream_t *)&c->tcp, &buf, 1, hs_write_cb);
    if (rc != 0)
        transport_conn_fail(c, 1, "handshake write failed: %s", uv_strerror(rc));
    return rc;
}

/* Checks magic and the total length of a handshake at b (avail bytes):
 * 0 when whole (*len set), 1 when more bytes are needed, -1 when bad. */
static int hs_frame(const uint8_t *b, size_t avail, const char *magic, size_t fixed, size_t *len)
{
    size_t m = avail < 4 ? avail : 4;
    if (memcmp(b, magic, m) != 0)
        return -1;
    if (avail < fixed)
        return 1;
    size_t http_len = corral_get_le16(b + fixed - 2);
    if (http_len > CORRAL_TRANSPORT_HTTP_ADDR_MAX)
        return -1;
    *len = fixed + http_len + 4;
    return avail < *len ? 1 : 0;
}

static bool hs_crc_ok(const uint8_t *b, size_t len)
{
    return corral_crc32c(0, b, len - 4) == corral_get_le32(b + len - 4);
}

static void hs_http(const uint8_t *b, size_t fixed, char *out)
{
    size_t n = corral_get_le16(b + fixed - 2);
    assert(n <= CORRAL_TRANSPORT_HTTP_ADDR_MAX); /* hs_frame refused longer */
    memcpy(out, b + fixed, n);
    out[n] = '\0';
}

static void conn_refuse(struct conn *c, uint8_t status, const char *detail)
{
    struct peer *p = transport_peer_find(c->t, c->peer_id);
    if (p != NULL)
        p->st.refused++;
    transport_log_limited(c->t, c->host, 1,
                          "transport: refused hello from %s (node %" PRIu64 "): %s: %s", c->name,
                          c->peer_id, hello_status_name(status), detail);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->state = CONN_REFUSING;
    hs_write(c, reply_build(c->t, status, c->hs_buf));
}

/* Validates the hello at b (len bytes, whole, CRC checked) and answers. */
static void hello_accept(struct conn *c, const uint8_t *b)
{
    struct corral_transport *t = c->t;
    char detail[128];
    uint64_t cluster = corral_get_le64(b + 5), to = corral_get_le64(b + 21);
    c->peer_id = corral_get_le64(b + 13);
    if (cluster != t->cluster_id) {
        snprintf(detail, sizeof(detail), "it is in cluster %" PRIx64 ", we are in %" PRIx64,
                 cluster, t->cluster_id);
        conn_refuse(c, HELLO_WRONG_CLUSTER, detail);
        return;
    }
    if (to != t->node_id || c->peer_id == 0 || c->peer_id == t->node_id) {
        snprintf(detail, sizeof(detail),
                 "it dialed node %" PRIu64 " from node %" PRIu64 ", we are node %" PRIu64, to,
                 c->peer_id, t->node_id);
        conn_refuse(c, HELLO_WRONG_NODE, detail);
        return;
    }
    if (hs_write(c, reply_build(t, HELLO_OK, c->hs_buf)) != 0)
        return;
    c->state = CONN_OPEN;
    transport_log(t, 2, "transport: accepted node %" PRIu64 " from %s", c->peer_id, c->name);
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    hs_http(b, HELLO_FIXED_BYTES, http);
    if (t->cb.on_peer_http != NULL)
        t->cb.on_peer_http(t->cb.ud, c->peer_id, http);
}

/* The inbound side's first frame. Returns 1 on progress, 0 when more bytes
 * are needed, -1 when the connection is closing. */
int transport_take_hello(struct conn *c, size_t *pos)
{
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos, len = 0;
    if (avail >= 5 && memcmp(b, "CRLH", 4) == 0 && b[4] != CORRAL_TRANSPORT_VERSION) {
        char detail[64];
        snprintf(detail, sizeof(detail), "version %u, ours %u", b[4], CORRAL_TRANSPORT_VERSION);
        conn_refuse(c, HELLO_BAD_VERSION, detail);
        return -1;
    }
    int rc = hs_frame(b, avail, "CRLH", HELLO_FIXED_BYTES, &len);
    if (rc < 0 || (rc == 0 && !hs_crc_ok(b, len))) {
        transport_conn_fail(c, 1, "malformed hello");
        return -1;
    }
    if (rc > 0)
        return 0;
    *pos += len;
    hello_accept(c, b);
    return c->state == CONN_OPEN ? 1 : -1;
}

static void reply_accept(struct conn *c, const uint8_t *b)
{
    struct peer *p = c->peer;
    struct corral_transport *t = c->t;
    uint8_t status = b[5];
    uint64_t cluster = corral_get_le64(b + 6), id = corral_get_le64(b + 14);
    if (status == HELLO_WRONG_CLUSTER) {
        if (p->st.wrong_cluster_refusals++ == 0)
            p->wrong_cluster_since_ms = uv_now(t->loop);
        p->st.their_cluster_id = cluster;
    }
    if (status != HELLO_OK) {
        p->st.refused++;
        transport_conn_fail(c, 1, "refused our hello: %s", hello_status_name(status));
        return;
    }
    if (cluster != t->cluster_id || id != p->st.id) {
        p->st.refused++;
        transport_conn_fail(c, 1, "answered as node %" PRIu64 " of cluster %" PRIx64, id, cluster);
        return;
    }
    c->state = CONN_OPEN;
    p->st.connected = true;
    p->st.connects++;
    p->backoff_ms = BACKOFF_MIN_MS;
    p->failures = 0;
    p->st.wrong_cluster_refusals = 0;
    transport_log(t, 2, "transport: connected to peer %" PRIu64 " at %s", p->st.id, c->name);
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    hs_http(b, REPLY_FIXED_BYTES, http);
    if (t->cb.on_peer_http != NULL)
        t->cb.on_peer_http(t->cb.ud, p->st.id, http);
}

/* The dialer's answer from the acceptor; same returns as transport_take_hello. */
int transport_take_reply(struct conn *c, size_t *pos)
{
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos, len = 0;
    if (avail >= 5 && memcmp(b, "CRLR", 4) == 0 && b[4] != CORRAL_TRANSPORT_VERSION) {
        c->peer->st.refused++;
        transport_conn_fail(c, 1, "it speaks transport version %u, we speak %u", b[4],
                            CORRAL_TRANSPORT_VERSION);
        return -1;
    }
    int rc = hs_frame(b, avail, "CRLR", REPLY_FIXED_BYTES, &len);
    if (rc < 0 || (rc == 0 && !hs_crc_ok(b, len))) {
        transport_conn_fail(c, 1, "malformed hello reply");
        return -1;
    }
    if (rc > 0)
        return 0;
    *pos += len;
    reply_accept(c, b);
    return c->state == CONN_OPEN ? 1 : -1;
}

int transport_hello_send(struct conn *c)
{
    return hs_write(c, hello_build(c->t, c->peer->st.id, c->hs_buf));
}
