/* The hello handshake of transport.h: the dialer's hello, the acceptor's
 * checks (version, token, cluster name, cluster id, our node id) and its
 * reply, and the dialer's checks of that reply. A refusal is logged on
 * both sides. */
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
    HELLO_WRONG_NAME = 6,       /* another cluster name */
};

/* The versions before 3: no cluster name nor cluster address. */
#define VERSION_OLD 1
#define VERSION_OLD_AUTH 2

/* ---- the strings section ---- */

static bool name_char_ok(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
           ch == '-';
}

static bool addr_bytes_ok(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x21 || b[i] > 0x7e)
            return false;
    return true;
}

static bool name_bytes_ok(const uint8_t *b, size_t n)
{
    if (n == 0 || n > CORRAL_TRANSPORT_CLUSTER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok(b[i]))
            return false;
    return true;
}

bool corral_transport_cluster_name_ok(const char *s)
{
    return s != NULL &&
           name_bytes_ok((const uint8_t *)s, strnlen(s, 1 + CORRAL_TRANSPORT_CLUSTER_NAME_MAX));
}

bool corral_transport_addr_ok(const char *s, size_t max)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, max + 1);
    return n >= 1 && n <= max && addr_bytes_ok((const uint8_t *)s, n);
}

/* A strings section (transport.h), parsed and checked. */
struct hs_strings {
    char http[CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1];
    char name[CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 1];
    char addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
};

/* The length of the strings section at b (avail bytes): 0 when whole
 * (*len set), 1 when more bytes are needed, -1 when a length is out of
 * bounds. */
static int strings_len(const uint8_t *b, size_t avail, size_t *len)
{
    if (avail < 2)
        return 1;
    size_t off = 2 + (size_t)corral_get_le16(b);
    if (off - 2 > CORRAL_TRANSPORT_HTTP_ADDR_MAX)
        return -1;
    if (avail < off + 1)
        return 1;
    size_t name = b[off];
    if (name == 0 || name > CORRAL_TRANSPORT_CLUSTER_NAME_MAX)
        return -1;
    off += 1 + name;
    if (avail < off + 2)
        return 1;
    size_t addr = corral_get_le16(b + off);
    if (addr == 0 || addr > CORRAL_TRANSPORT_CLUSTER_ADDR_MAX)
        return -1;
    *len = off + 2 + addr;
    return avail < *len ? 1 : 0;
}

/* Parses the whole section at b (n bytes, as strings_len measured):
 * false when its bytes break transport.h's rules. */
static bool strings_parse(const uint8_t *b, size_t n, struct hs_strings *out)
{
    size_t http = corral_get_le16(b), off = 2;
    assert(http <= CORRAL_TRANSPORT_HTTP_ADDR_MAX && off + http < n);
    if (!addr_bytes_ok(b + off, http))
        return false;
    memcpy(out->http, b + off, http);
    out->http[http] = '\0';
    off += http;
    size_t name = b[off++];
    assert(name <= CORRAL_TRANSPORT_CLUSTER_NAME_MAX && off + name + 2 <= n);
    if (!name_bytes_ok(b + off, name))
        return false;
    memcpy(out->name, b + off, name);
    out->name[name] = '\0';
    off += name;
    size_t addr = corral_get_le16(b + off);
    off += 2;
    assert(addr <= CORRAL_TRANSPORT_CLUSTER_ADDR_MAX && off + addr == n);
    if (addr == 0 || !addr_bytes_ok(b + off, addr))
        return false;
    memcpy(out->addr, b + off, addr);
    out->addr[addr] = '\0';
    return true;
}

void transport_strings_build(struct corral_transport *t, const char *http_addr)
{
    const char *http = http_addr != NULL ? http_addr : "";
    size_t hl = strlen(http), nl = strlen(t->cluster_name), al = strlen(t->cluster_addr);
    assert(hl <= CORRAL_TRANSPORT_HTTP_ADDR_MAX && nl >= 1 &&
           nl <= CORRAL_TRANSPORT_CLUSTER_NAME_MAX && al >= 1 &&
           al <= CORRAL_TRANSPORT_CLUSTER_ADDR_MAX);
    uint8_t *b = t->strings;
    corral_put_le16(b, (uint16_t)hl);
    memcpy(b + 2, http, hl);
    size_t off = 2 + hl;
    b[off++] = (uint8_t)nl;
    memcpy(b + off, t->cluster_name, nl);
    off += nl;
    corral_put_le16(b + off, (uint16_t)al);
    memcpy(b + off + 2, t->cluster_addr, al);
    t->strings_len = off + 2 + al;
    assert(t->strings_len <= HS_STRINGS_MAX);
}

static bool authed(const struct corral_transport *t)
{
    return t->tokens.n > 0;
}

/* Our proof for a handshake (transport.h): role 'a' or 'd', over our own
 * strings section. */
static void hs_proof(const struct corral_transport *t, char role, const uint8_t *peer_nonce,
                     const uint8_t *own_nonce, uint8_t out[HS_PROOF_BYTES], uint32_t token)
{
    uint8_t ids[16];
    corral_put_le64(ids, t->cluster_id);
    corral_put_le64(ids + 8, t->node_id);
    const void *parts[] = {"corral-hs4", &role, ids, peer_nonce, own_nonce, t->strings};
    size_t lens[] = {10, 1, sizeof(ids), HS_NONCE_BYTES, HS_NONCE_BYTES, t->strings_len};
    corral_hmac_sha256(t->tokens.tok[token], t->tokens.len[token], parts, lens, 6, out);
}

/* Whether proof is a peer's (id, role) proof with one of our tokens, over
 * its strings section (strings, n bytes). */
static bool hs_proof_ok(const struct corral_transport *t, char role, uint64_t id,
                        const uint8_t *peer_nonce, const uint8_t *own_nonce, const uint8_t *strings,
                        size_t n, const uint8_t *proof)
{
    uint8_t ids[16], want[HS_PROOF_BYTES];
    corral_put_le64(ids, t->cluster_id);
    corral_put_le64(ids + 8, id);
    /* The peer's own nonce comes last in its proof, ours before it. */
    const void *parts[] = {"corral-hs4", &role, ids, own_nonce, peer_nonce, strings};
    size_t lens[] = {10, 1, sizeof(ids), HS_NONCE_BYTES, HS_NONCE_BYTES, n};
    bool ok = false;
    for (uint32_t k = 0; k < t->tokens.n; k++) {
        corral_hmac_sha256(t->tokens.tok[k], t->tokens.len[k], parts, lens, 6, want);
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
    size_t fixed = nonce != NULL ? HELLO4_FIXED_BYTES : HELLO_FIXED_BYTES;
    memcpy(b, "CRLH", 4);
    b[4] = nonce != NULL ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    corral_put_le64(b + 5, t->cluster_id);
    corral_put_le64(b + 13, t->node_id);
    corral_put_le64(b + 21, to);
    if (nonce != NULL)
        memcpy(b + 29, nonce, HS_NONCE_BYTES);
    memcpy(b + fixed - 2, t->strings, t->strings_len);
    size_t n = fixed - 2 + t->strings_len;
    assert(n + 4 <= HS_BYTES_MAX); /* c->hs_buf holds this */
    corral_put_le32(b + n, corral_crc32c(0, b, n));
    return n + 4;
}

/* The reply: version 3, or version 4 when c's hello was (with our nonce
 * and, on status 0, our proof). */
static size_t reply_build(const struct conn *c, bool v4, uint8_t status, uint8_t *b)
{
    const struct corral_transport *t = c->t;
    size_t fixed = v4 ? REPLY4_FIXED_BYTES : REPLY_FIXED_BYTES;
    memcpy(b, "CRLR", 4);
    b[4] = v4 ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    b[5] = status;
    corral_put_le64(b + 6, t->cluster_id);
    corral_put_le64(b + 14, t->node_id);
    if (v4) {
        memcpy(b + 22, c->nonce, HS_NONCE_BYTES);
        memset(b + 22 + HS_NONCE_BYTES, 0, HS_PROOF_BYTES);
        if (status == HELLO_OK)
            hs_proof(t, 'a', c->peer_nonce, c->nonce, b + 22 + HS_NONCE_BYTES, 0);
    }
    memcpy(b + fixed - 2, t->strings, t->strings_len);
    size_t n = fixed - 2 + t->strings_len;
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
    case HELLO_WRONG_NAME:
        return "wrong cluster name";
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
    size_t sl = 0;
    int rc = strings_len(b + fixed - 2, avail - (fixed - 2), &sl);
    if (rc != 0)
        return rc;
    *len = fixed - 2 + sl + 4;
    return avail < *len ? 1 : 0;
}

static bool hs_crc_ok(const uint8_t *b, size_t len)
{
    return corral_crc32c(0, b, len - 4) == corral_get_le32(b + len - 4);
}

/* The frame's strings section (hs_frame measured the frame: len bytes). */
static bool hs_strings(const uint8_t *b, size_t fixed, size_t len, struct hs_strings *out)
{
    return strings_parse(b + fixed - 2, len - 4 - (fixed - 2), out);
}

/* A handshake done: tell the node what the peer advertised. */
static void peer_told(struct corral_transport *t, uint64_t id, const struct hs_strings *s)
{
    if (t->cb.on_peer_http != NULL)
        t->cb.on_peer_http(t->cb.ud, id, s->http);
    if (t->cb.on_peer_addr != NULL)
        t->cb.on_peer_addr(t->cb.ud, id, s->addr, s->http);
}

static void conn_refuse(struct conn *c, bool v4, uint8_t status, const char *detail)
{
    struct peer *p = transport_peer_find(c->t, c->peer_id);
    if (p != NULL)
        p->st.refused++;
    transport_log_limited(c->t, c->host, 1,
                          "transport: refused hello from %s (node %" PRIu64 "): %s: %s", c->name,
                          c->peer_id, hello_status_name(status), detail);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->state = CONN_REFUSING;
    hs_write(c, reply_build(c, v4, status, c->hs_buf));
}

/* Validates the hello at b (len bytes, whole, CRC checked, strings s
 * parsed; version 3 or, v4, version 4) and answers. */
static void hello_accept(struct conn *c, const uint8_t *b, size_t len, bool v4,
                         const struct hs_strings *s)
{
    struct corral_transport *t = c->t;
    char detail[512];
    uint64_t cluster = corral_get_le64(b + 5), to = corral_get_le64(b + 21);
    c->peer_id = corral_get_le64(b + 13);
    if (v4 && !authed(t)) {
        conn_refuse(c, false, HELLO_UNEXPECTED_TOKEN,
                    "it proves a cluster token and we have none (start every node with the "
                    "same --token-file, or none)");
        return;
    }
    if (!v4 && authed(t)) {
        conn_refuse(c, false, HELLO_NO_TOKEN, "it has no cluster token; this cluster requires one");
        return;
    }
    if (v4) {
        memcpy(c->peer_nonce, b + 29, HS_NONCE_BYTES);
        if (hs_nonce(c->nonce) != 0) {
            transport_conn_fail(c, 0, "getrandom failed: no nonce for the handshake");
            return;
        }
    }
    if (strcmp(s->name, t->cluster_name) != 0) {
        snprintf(detail, sizeof(detail), "peer at %s is in cluster '%s', this node in '%s'",
                 s->addr, s->name, t->cluster_name);
        conn_refuse(c, v4, HELLO_WRONG_NAME, detail);
        return;
    }
    if (cluster != t->cluster_id) {
        snprintf(detail, sizeof(detail), "it is in cluster %" PRIx64 ", we are in %" PRIx64,
                 cluster, t->cluster_id);
        conn_refuse(c, v4, HELLO_WRONG_CLUSTER, detail);
        return;
    }
    if (to != t->node_id || c->peer_id == 0 || c->peer_id == t->node_id) {
        snprintf(detail, sizeof(detail),
                 "it dialed node %" PRIu64 " from node %" PRIu64 ", we are node %" PRIu64, to,
                 c->peer_id, t->node_id);
        conn_refuse(c, v4, HELLO_WRONG_NODE, detail);
        return;
    }
    if (hs_write(c, reply_build(c, v4, HELLO_OK, c->hs_buf)) != 0)
        return;
    if (v4) {
        /* Its strings are believed once its proof, which covers them, is. */
        size_t fixed = HELLO4_FIXED_BYTES;
        c->peer_strings_len = len - 4 - (fixed - 2);
        assert(c->peer_strings_len <= sizeof(c->peer_strings));
        memcpy(c->peer_strings, b + fixed - 2, c->peer_strings_len);
        c->state = CONN_PROOF;
        return;
    }
    c->state = CONN_OPEN;
    transport_log(t, 2, "transport: accepted node %" PRIu64 " from %s (cluster address %s)",
                  c->peer_id, c->name, s->addr);
    peer_told(t, c->peer_id, s);
}

/* Inbound, after our version 4 reply: the dialer's proof. */
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
    if (b[4] != 0 || !hs_proof_ok(t, 'd', c->peer_id, c->peer_nonce, c->nonce, c->peer_strings,
                                  c->peer_strings_len, b + 5)) {
        if (p != NULL)
            p->st.refused++;
        transport_log_limited(t, c->host, 1,
                              "transport: refused hello from %s (node %" PRIu64
                              "): wrong cluster token proof: its --token-file differs from ours",
                              c->name, c->peer_id);
        transport_conn_close(c);
        return -1;
    }
    struct hs_strings s;
    bool parsed = strings_parse(c->peer_strings, c->peer_strings_len, &s);
    assert(parsed); /* take_hello checked them */
    (void)parsed;
    c->state = CONN_OPEN;
    transport_log(t, 2,
                  "transport: accepted node %" PRIu64 " from %s (cluster address %s, token proven)",
                  c->peer_id, c->name, s.addr);
    peer_told(t, c->peer_id, &s);
    return c->state == CONN_OPEN ? 1 : -1;
}

/* The inbound side's first frame. Returns 1 on progress, 0 when more bytes
 * are needed, -1 when the connection is closing. */
int transport_take_hello(struct conn *c, size_t *pos)
{
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos, len = 0;
    unsigned ours = authed(c->t) ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    if (avail >= 5 && memcmp(b, "CRLH", 4) == 0 && b[4] != CORRAL_TRANSPORT_VERSION &&
        b[4] != CORRAL_TRANSPORT_VERSION_AUTH) {
        char detail[160];
        if (avail >= 21)
            c->peer_id = corral_get_le64(b + 13); /* at the same place in every version */
        if (b[4] == VERSION_OLD || b[4] == VERSION_OLD_AUTH)
            snprintf(detail, sizeof(detail),
                     "it runs an older corral with the old handshake (version %u, without the "
                     "cluster name and address; ours is %u): upgrade it",
                     b[4], ours);
        else
            snprintf(detail, sizeof(detail), "version %u, ours %u", b[4], ours);
        conn_refuse(c, false, HELLO_BAD_VERSION, detail);
        return -1;
    }
    bool v4 = avail >= 5 && b[4] == CORRAL_TRANSPORT_VERSION_AUTH;
    size_t fixed = v4 ? HELLO4_FIXED_BYTES : HELLO_FIXED_BYTES;
    int rc = hs_frame(b, avail, "CRLH", fixed, &len);
    struct hs_strings s;
    if (rc < 0 || (rc == 0 && (!hs_crc_ok(b, len) || !hs_strings(b, fixed, len, &s)))) {
        transport_conn_fail(c, 1, "malformed hello");
        return -1;
    }
    if (rc > 0)
        return 0;
    *pos += len;
    hello_accept(c, b, len, v4, &s);
    return c->state == CONN_OPEN || c->state == CONN_PROOF ? 1 : -1;
}

static void proof_write_cb(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != CONN_CLOSING && status < 0)
        transport_conn_fail(c, 1, "token proof write failed: %s", uv_strerror(status));
}

/* Checks the acceptor's proof in the version 4 reply at b (len bytes) and
 * sends ours: 0, or -1 when the connection is failing. */
static int reply_prove(struct conn *c, const uint8_t *b, size_t len)
{
    struct corral_transport *t = c->t;
    const uint8_t *nonce = b + 22, *proof = b + 22 + HS_NONCE_BYTES;
    const uint8_t *strings = b + REPLY4_FIXED_BYTES - 2;
    size_t n = len - 4 - (REPLY4_FIXED_BYTES - 2);
    if (!hs_proof_ok(t, 'a', c->peer->st.id, nonce, c->nonce, strings, n, proof)) {
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

/* A refusal of our hello for another cluster (id or name): counted for the
 * node's stop-when-every-peer-refuses check. */
static void wrong_cluster(struct peer *p, uint64_t cluster, const char *name)
{
    if (p->st.wrong_cluster_refusals++ == 0)
        p->wrong_cluster_since_ms = uv_now(p->t->loop);
    p->st.their_cluster_id = cluster;
    snprintf(p->st.their_cluster_name, sizeof(p->st.their_cluster_name), "%s", name);
}

static void reply_accept(struct conn *c, const uint8_t *b, size_t len, bool v4,
                         const struct hs_strings *s)
{
    struct peer *p = c->peer;
    struct corral_transport *t = c->t;
    uint8_t status = b[5];
    uint64_t cluster = corral_get_le64(b + 6), id = corral_get_le64(b + 14);
    if (status == HELLO_WRONG_CLUSTER || status == HELLO_WRONG_NAME)
        wrong_cluster(p, cluster, s->name);
    if (status == HELLO_NO_TOKEN)
        wrong_token(p, "it requires a token and we have none");
    if (status == HELLO_UNEXPECTED_TOKEN)
        wrong_token(p, "it has no token and we have one");
    if (status == HELLO_WRONG_NAME) {
        p->st.refused++;
        transport_conn_fail(c, 1,
                            "refused our hello: wrong cluster name: peer at %s is in cluster "
                            "'%s', this node in '%s'",
                            s->addr, s->name, t->cluster_name);
        return;
    }
    if (status == HELLO_WRONG_CLUSTER) {
        p->st.refused++;
        transport_conn_fail(c, 1,
                            "refused our hello: wrong cluster id: it is in cluster %" PRIx64
                            ", we are in %" PRIx64,
                            cluster, t->cluster_id);
        return;
    }
    if (status != HELLO_OK) {
        p->st.refused++;
        transport_conn_fail(c, 1, "refused our hello: %s", hello_status_name(status));
        return;
    }
    if (strcmp(s->name, t->cluster_name) != 0) {
        p->st.refused++;
        wrong_cluster(p, cluster, s->name);
        transport_conn_fail(c, 1, "peer at %s answered for cluster '%s', this node is in '%s'",
                            s->addr, s->name, t->cluster_name);
        return;
    }
    if (cluster != t->cluster_id || id != p->st.id) {
        p->st.refused++;
        transport_conn_fail(c, 1, "answered as node %" PRIu64 " of cluster %" PRIx64, id, cluster);
        return;
    }
    if (authed(t) && !v4) {
        p->st.refused++;
        transport_conn_fail(c, 1, "accepted without proving the cluster token");
        return;
    }
    if (v4 && reply_prove(c, b, len) != 0)
        return;
    c->state = CONN_OPEN;
    p->st.connected = true;
    p->st.connects++;
    p->backoff_ms = BACKOFF_MIN_MS;
    p->failures = 0;
    p->st.wrong_cluster_refusals = 0;
    p->st.wrong_token_refusals = 0;
    transport_log(t, 2, "transport: connected to peer %" PRIu64 " at %s", p->st.id, c->name);
    peer_told(t, p->st.id, s);
}

/* The dialer's answer from the acceptor; same returns as transport_take_hello. */
int transport_take_reply(struct conn *c, size_t *pos)
{
    const uint8_t *b = c->rbuf + *pos;
    size_t avail = c->rlen - *pos, len = 0;
    unsigned ours = authed(c->t) ? CORRAL_TRANSPORT_VERSION_AUTH : CORRAL_TRANSPORT_VERSION;
    /* An older acceptor answers our hello, whichever version, with a
     * version 1 refusal (bad version). */
    if (avail >= 5 && memcmp(b, "CRLR", 4) == 0 &&
        (b[4] == VERSION_OLD || b[4] == VERSION_OLD_AUTH)) {
        c->peer->st.refused++;
        transport_conn_fail(c, 1,
                            "it runs an older corral with the old handshake (version %u, ours "
                            "%u): upgrade it",
                            b[4], ours);
        return -1;
    }
    /* A version 3 reply to our version 4 hello is a refusal (a node
     * without a token), read for its status. */
    if (avail >= 5 && memcmp(b, "CRLR", 4) == 0 && b[4] != ours &&
        b[4] != CORRAL_TRANSPORT_VERSION) {
        c->peer->st.refused++;
        transport_conn_fail(c, 1, "it speaks transport version %u, we speak %u%s", b[4], ours,
                            b[4] == CORRAL_TRANSPORT_VERSION_AUTH
                                ? " (it has a cluster token, we have none: --token-file)"
                                : "");
        return -1;
    }
    bool v4 = avail >= 5 && b[4] == CORRAL_TRANSPORT_VERSION_AUTH;
    size_t fixed = v4 ? REPLY4_FIXED_BYTES : REPLY_FIXED_BYTES;
    int rc = hs_frame(b, avail, "CRLR", fixed, &len);
    struct hs_strings s;
    if (rc < 0 || (rc == 0 && (!hs_crc_ok(b, len) || !hs_strings(b, fixed, len, &s)))) {
        transport_conn_fail(c, 1, "malformed hello reply");
        return -1;
    }
    if (rc > 0)
        return 0;
    *pos += len;
    reply_accept(c, b, len, v4, &s);
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
