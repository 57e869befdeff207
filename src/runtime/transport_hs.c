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
#include "util/sha256.h"

#include <sys/random.h>

enum hello_status {
    HELLO_OK = 0,
    HELLO_WRONG_CLUSTER = 1,
    HELLO_WRONG_NODE = 2,
    HELLO_BAD_VERSION = 3,
    HELLO_NO_TOKEN = 4,         /* we have a token, its hello proves none */
    HELLO_UNEXPECTED_TOKEN = 5, /* its hello proves a token, we have none */
};

static bool authed(const struct corral_transport *t)
{
    return t->tokens.n > 0;
}

/* Our proof for a handshake (transport.h): role 'a' or 'd'. */
static void hs_proof(const struct corral_transport *t, char role, const uint8_t *peer_nonce,
                     const uint8_t *own_nonce, uint8_t out[HS_PROOF_BYTES], uint32_t token)
{
    uint8_t ids[16];
    corral_put_le64(ids, t->cluster_id);
    corral_put_le64(ids + 8, t->node_id);
    const void *parts[] = {"corral-hs", &role, ids, peer_nonce, own_nonce};
    size_t lens[] = {9, 1, sizeof(ids), HS_NONCE_BYTES, HS_NONCE_BYTES};
    corral_hmac_sha256(t->tokens.tok[token], t->tokens.len[token], parts, lens, 5, out);
}

/* Whether proof is a peer's (id, role) proof with one of our tokens. */
static bool hs_proof_ok(const struct corral_transport *t, char role, uint64_t id,
                        const uint8_t *peer_nonce, const uint8_t *own_nonce, const uint8_t *proof)
{
    uint8_t ids[16], want[HS_PROOF_BYTES];
    corral_put_le64(ids, t->cluster_id);
    corral_put_le64(ids + 8, id);
    /* The peer's own nonce comes last in its proof, ours before it. */
    const void *parts[] = {"corral-hs", &role, ids, own_nonce, peer_nonce};
    size_t lens[] = {9, 1, sizeof(ids), HS_NONCE_BYTES, HS_NONCE_BYTES};
    bool ok = false;
    for (uint32_t k = 0; k < t->tokens.n; k++) {
        corral_hmac_sha256(t->tokens.tok[k], t->tokens.len[k], parts, lens, 5, want);
        if (corral_ct_equal(want, proof, HS_PROOF_BYTES))
            ok = true;
    }
    return ok;
}

/* A fresh nonce from the kernel; on the (unexpected) failure of
 * getrandom the handshake is not attempted. */
static int hs_nonce(uint8_t out[HS_NONCE_BYTES])
{
    size_t got = 0;
    while (got < HS_NONCE_BYTES) {
        ssize_t n = getrandom(out + got, HS_NONCE_BYTES - got, 0);
        if (n < 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static size_t hello_build(const struct corral_transport *t, uint64_t to, const uint8_t *nonce,
                          uint8_t *b)
{
    size_t fixed = nonce != NULL ? HELLO2_FIXED_BYTES : HELLO_FIXED_BYTES;
    memcpy(b, "CRLH", 4);
    b[4] = nonce != NULL ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    corral_put_le64(b + 5, t->cluster_id);
    corral_put_le64(b + 13, t->node_id);
    corral_put_le64(b + 21, to);
    if (nonce != NULL)
        memcpy(b + 29, nonce, HS_NONCE_BYTES);
    corral_put_le16(b + fixed - 2, t->http_len);
    memcpy(b + fixed, t->http_addr, t->http_len);
    size_t n = fixed + (size_t)t->http_len;
    assert(n + 4 <= HS_BYTES_MAX); /* start bounded http_len; c->hs_buf holds this */
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    return n + 4;
}

/* The reply: version 1, or version 2 when c's hello was (with our nonce
 * and, on status 0, our proof). */
static size_t reply_build(const struct conn *c, bool v2, uint8_t status, uint8_t *b)
{
    const struct corral_transport *t = c->t;
    size_t fixed = v2 ? REPLY2_FIXED_BYTES : REPLY_FIXED_BYTES;
    memcpy(b, "CRLR", 4);
    b[4] = v2 ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    b[5] = status;
    corral_put_le64(b + 6, t->cluster_id);
    corral_put_le64(b + 14, t->node_id);
    if (v2) {
        memcpy(b + 22, c->nonce, HS_NONCE_BYTES);
        memset(b + 22 + HS_NONCE_BYTES, 0, HS_PROOF_BYTES);
        if (status == HELLO_OK)
            hs_proof(t, 'a', c->peer_nonce, c->nonce, b + 22 + HS_NONCE_BYTES, 0);
    }
    corral_put_le16(b + fixed - 2, t->http_len);
    memcpy(b + fixed, t->http_addr, t->http_len);
    size_t n = fixed + (size_t)t->http_len;
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
    case HELLO_NO_TOKEN:
        return "no cluster token: the cluster requires one (--token-file), or the node is older";
    case HELLO_UNEXPECTED_TOKEN:
        return "a cluster token: the cluster has none";
    default:
        return "unknown status";
    }
}

/* Counts a refusal of our hello (or of the acceptor's proof) by p that
 * means no token of ours matches its: see wrong_token_refusals in
 * transport.h. */
static void wrong_token(struct peer *p, const char *why)
{
    if (p->st.wrong_token_refusals++ == 0)
        p->wrong_token_since_ms = uv_now(p->t->loop);
    p->st.wrong_token_why = why;
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

static void conn_refuse(struct conn *c, bool v2, uint8_t status, const char *detail)
{
    struct peer *p = transport_peer_find(c->t, c->peer_id);
    if (p != NULL)
        p->st.refused++;
    transport_log_limited(c->t, c->host, 1,
                          "transport: refused hello from %s (node %" PRIu64 "): %s: %s", c->name,
                          c->peer_id, hello_status_name(status), detail);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->state = CONN_REFUSING;
    hs_write(c, reply_build(c, v2, status, c->hs_buf));
}

/* Validates the hello at b (len bytes, whole, CRC checked; version 1 or,
 * v2, version 2) and answers. */
static void hello_accept(struct conn *c, const uint8_t *b, bool v2)
{
    struct corral_transport *t = c->t;
    char detail[128];
    uint64_t cluster = corral_get_le64(b + 5), to = corral_get_le64(b + 21);
    c->peer_id = corral_get_le64(b + 13);
    if (v2 && !authed(t)) {
        conn_refuse(c, false, HELLO_UNEXPECTED_TOKEN,
                    "it proves a cluster token and we have none (start every node with the "
                    "same --token-file, or none)");
        return;
    }
    if (!v2 && authed(t)) {
        conn_refuse(c, false, HELLO_NO_TOKEN,
                    "it has no cluster token (or runs an older corral); this cluster requires "
                    "one");
        return;
    }
    if (v2) {
        memcpy(c->peer_nonce, b + 29, HS_NONCE_BYTES);
        if (hs_nonce(c->nonce) != 0) {
            transport_conn_fail(c, 0, "getrandom failed: no nonce for the handshake");
            return;
        }
    }
    if (cluster != t->cluster_id) {
        snprintf(detail, sizeof(detail), "it is in cluster %" PRIx64 ", we are in %" PRIx64,
                 cluster, t->cluster_id);
        conn_refuse(c, v2, HELLO_WRONG_CLUSTER, detail);
        return;
    }
    if (to != t->node_id || c->peer_id == 0 || c->peer_id == t->node_id) {
        snprintf(detail, sizeof(detail),
                 "it dialed node %" PRIu64 " from node %" PRIu64 ", we are node %" PRIu64, to,
                 c->peer_id, t->node_id);
        conn_refuse(c, v2, HELLO_WRONG_NODE, detail);
        return;
    }
    /* Its HTTP address, told once the handshake is done. */
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    hs_http(b, v2 ? HELLO2_FIXED_BYTES : HELLO_FIXED_BYTES, http);
    if (hs_write(c, reply_build(c, v2, HELLO_OK, c->hs_buf)) != 0)
        return;
    if (v2) {
        c->state = CONN_PROOF;
        memcpy(c->peer_http, http, sizeof(http));
        return;
    }
    c->state = CONN_OPEN;
    transport_log(t, 2, "transport: accepted node %" PRIu64 " from %s", c->peer_id, c->name);
    if (t->cb.on_peer_http != NULL)
        t->cb.on_peer_http(t->cb.ud, c->peer_id, http);
}

/* Inbound, after our version 2 reply: the dialer's proof. */
int transport_take_proof(struct conn *c, size_t *pos)
{
    struct corral_transport *t = c->t;
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos;
    size_t m = avail < 4 ? avail : 4;
    if (memcmp(b, "CRLP", m) != 0 ||
        (avail >= PROOF_FRAME_BYTES && !hs_crc_ok(b, PROOF_FRAME_BYTES))) {
        transport_conn_fail(c, 1, "malformed token proof");
        return -1;
    }
    if (avail < PROOF_FRAME_BYTES)
        return 0;
    *pos += PROOF_FRAME_BYTES;
    /* A dialer sends its proof only after it accepted ours (reply_prove):
     * it shares our first token, whether or not we accept its. Our dials
     * it refuses are then a rotation under way, not a node to stop. */
    struct peer *p = transport_peer_find(t, c->peer_id);
    if (p != NULL)
        p->st.wrong_token_refusals = 0;
    if (b[4] != 0 || !hs_proof_ok(t, 'd', c->peer_id, c->peer_nonce, c->nonce, b + 5)) {
        if (p != NULL)
            p->st.refused++;
        transport_log_limited(t, c->host, 1,
                              "transport: refused hello from %s (node %" PRIu64
                              "): wrong cluster token proof: its --token-file differs from ours",
                              c->name, c->peer_id);
        transport_conn_close(c);
        return -1;
    }
    c->state = CONN_OPEN;
    transport_log(t, 2, "transport: accepted node %" PRIu64 " from %s (token proven)", c->peer_id,
                  c->name);
    if (t->cb.on_peer_http != NULL)
        t->cb.on_peer_http(t->cb.ud, c->peer_id, c->peer_http);
    return c->state == CONN_OPEN ? 1 : -1;
}

/* The inbound side's first frame. Returns 1 on progress, 0 when more bytes
 * are needed, -1 when the connection is closing. */
int transport_take_hello(struct conn *c, size_t *pos)
{
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos, len = 0;
    if (avail >= 5 && memcmp(b, "CRLH", 4) == 0 && b[4] != CORRAL_TRANSPORT_VERSION &&
        b[4] != CORRAL_TRANSPORT_VERSION_AUTH) {
        char detail[64];
        snprintf(detail, sizeof(detail), "version %u, ours %u", b[4],
                 authed(c->t) ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION);
        conn_refuse(c, false, HELLO_BAD_VERSION, detail);
        return -1;
    }
    bool v2 = avail >= 5 && b[4] == CORRAL_TRANSPORT_VERSION_AUTH;
    int rc = hs_frame(b, avail, "CRLH", v2 ? HELLO2_FIXED_BYTES : HELLO_FIXED_BYTES, &len);
    if (rc < 0 || (rc == 0 && !hs_crc_ok(b, len))) {
        transport_conn_fail(c, 1, "malformed hello");
        return -1;
    }
    if (rc > 0)
        return 0;
    *pos += len;
    hello_accept(c, b, v2);
    return c->state == CONN_OPEN || c->state == CONN_PROOF ? 1 : -1;
}

static void proof_write_cb(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != CONN_CLOSING && status < 0)
        transport_conn_fail(c, 1, "token proof write failed: %s", uv_strerror(status));
}

/* Checks the acceptor's proof in the version 2 reply at b and sends ours:
 * 0, or -1 when the connection is failing. */
static int reply_prove(struct conn *c, const uint8_t *b)
{
    struct corral_transport *t = c->t;
    const uint8_t *nonce = b + 22, *proof = b + 22 + HS_NONCE_BYTES;
    if (!hs_proof_ok(t, 'a', c->peer->st.id, nonce, c->nonce, proof)) {
        c->peer->st.refused++;
        wrong_token(c->peer, "it proves a token that is none of ours");
        transport_conn_fail(c, 1,
                            "it failed to prove the cluster token: its --token-file differs from "
                            "ours; not joining it");
        return -1;
    }
    uint8_t *f = c->proof_buf;
    memcpy(f, "CRLP", 4);
    f[4] = 0;
    hs_proof(t, 'd', nonce, c->nonce, f + 5, 0);
    corral_put_le32(f + 5 + HS_PROOF_BYTES, corral_crc32c(0, f, 5 + HS_PROOF_BYTES));
    uv_buf_t buf = uv_buf_init((char *)f, PROOF_FRAME_BYTES);
    int rc = uv_write(&c->proof_req, (uv_stream_t *)&c->tcp, &buf, 1, proof_write_cb);
    if (rc != 0) {
        transport_conn_fail(c, 1, "token proof write failed: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void reply_accept(struct conn *c, const uint8_t *b, bool v2)
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
    if (status == HELLO_NO_TOKEN)
        wrong_token(p, "it requires a token and we have none");
    if (status == HELLO_UNEXPECTED_TOKEN)
        wrong_token(p, "it has no token and we have one");
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
    if (authed(t) && !v2) {
        p->st.refused++;
        transport_conn_fail(c, 1, "accepted without proving the cluster token");
        return;
    }
    if (v2 && reply_prove(c, b) != 0)
        return;
    c->state = CONN_OPEN;
    p->st.connected = true;
    p->st.connects++;
    p->backoff_ms = BACKOFF_MIN_MS;
    p->failures = 0;
    p->st.wrong_cluster_refusals = 0;
    p->st.wrong_token_refusals = 0;
    transport_log(t, 2, "transport: connected to peer %" PRIu64 " at %s", p->st.id, c->name);
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    hs_http(b, v2 ? REPLY2_FIXED_BYTES : REPLY_FIXED_BYTES, http);
    if (t->cb.on_peer_http != NULL)
        t->cb.on_peer_http(t->cb.ud, p->st.id, http);
}

/* The dialer's answer from the acceptor; same returns as transport_take_hello. */
int transport_take_reply(struct conn *c, size_t *pos)
{
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos, len = 0;
    unsigned ours = authed(c->t) ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    /* A version 1 reply to our version 2 hello is a refusal (an older
     * node, or one without a token), read for its status. */
    if (avail >= 5 && memcmp(b, "CRLR", 4) == 0 && b[4] != ours &&
        b[4] != CORRAL_TRANSPORT_VERSION) {
        c->peer->st.refused++;
        transport_conn_fail(c, 1, "it speaks transport version %u, we speak %u%s", b[4], ours,
                            b[4] == CORRAL_TRANSPORT_VERSION_AUTH
                                ? " (it has a cluster token, we have none: --token-file)"
                                : "");
        return -1;
    }
    bool v2 = avail >= 5 && b[4] == CORRAL_TRANSPORT_VERSION_AUTH;
    int rc = hs_frame(b, avail, "CRLR", v2 ? REPLY2_FIXED_BYTES : REPLY_FIXED_BYTES, &len);
    if (rc < 0 || (rc == 0 && !hs_crc_ok(b, len))) {
        transport_conn_fail(c, 1, "malformed hello reply");
        return -1;
    }
    if (rc > 0)
        return 0;
    *pos += len;
    reply_accept(c, b, v2);
    return c->state == CONN_OPEN ? 1 : -1;
}

int transport_hello_send(struct conn *c)
{
    const uint8_t *nonce = NULL;
    if (authed(c->t)) {
        if (hs_nonce(c->nonce) != 0) {
            transport_conn_fail(c, 0, "getrandom failed: no nonce for the handshake");
            return -1;
        }
        nonce = c->nonce;
    }
    return hs_write(c, hello_build(c->t, c->peer->st.id, nonce, c->hs_buf));
}
