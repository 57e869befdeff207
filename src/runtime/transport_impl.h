/* Internals of the TCP transport shared by its files (transport.c:
 * lifecycle, peers, connections, frames and the send queue;
 * transport_hs.c: the hello handshake). */
#ifndef CORRAL_RUNTIME_TRANSPORT_IMPL_H
#define CORRAL_RUNTIME_TRANSPORT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/codec.h"
#include "runtime/transport.h"
#include "util/token.h"

/* Limits, each with its reason:
 * - CHUNK_BYTES: the unit of a send queue. Small frames are packed into
 *   chunks, so one writev carries hundreds of messages.
 * - WRITE_BUFS_MAX: chunks per uv_write, well under IOV_MAX (1024).
 * - RBUF_BYTES: a connection's receive buffer at rest. It grows to hold one
 *   whole frame (at most FRAME_BYTES_MAX) and shrinks back afterwards.
 * - CONNS_MAX: open connections. Each peer dials us once, so more than this
 *   is a misbehaving client; refusing it keeps memory bounded.
 * - HANDSHAKE_MS: a connection without a completed handshake by then is
 *   closed, so a silent socket cannot hold a slot or stall a dialer.
 * - LOG_LIMIT_*: lines about connections that never got past the
 *   handshake (a port scan, a node of another cluster) and about a peer's
 *   dial failures: at most LOG_LIMIT_LINES per remote address (inbound: the
 *   IP, any port; outbound: the peer's address) per LOG_LIMIT_MS, then one
 *   "(N more suppressed)" line when the interval ends. LOG_LIMIT_SLOTS
 *   addresses are tracked at once; a new one evicts the oldest. */
#define CHUNK_BYTES ((size_t)64 << 10)
#define WRITE_BUFS_MAX 64
#define RBUF_BYTES ((size_t)64 << 10)
#define FRAME_BYTES_MAX ((size_t)4 + CORRAL_CODEC_MSG_BYTES_MAX)
#define CONNS_MAX (4 * CORRAL_RAFT_NODES_MAX)
#define HANDSHAKE_MS 5000
#define SWEEP_MS 1000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define KEEPALIVE_DELAY_S 10
#define LISTEN_BACKLOG 128
#define QUEUE_DEFAULT_BYTES ((size_t)64 << 20)
#define LOG_LIMIT_MS 10000
#define LOG_LIMIT_LINES 3
#define LOG_LIMIT_SLOTS 32

/* The handshake layouts of transport.h: fixed parts through the HTTP
 * address's length, then the strings section (the HTTP address, the
 * cluster name and the cluster address, each after its length), then a
 * CRC32C. */
#define HELLO_FIXED_BYTES (4 + 1 + 8 + 8 + 8 + 2)
#define REPLY_FIXED_BYTES (4 + 1 + 1 + 8 + 8 + 2)
/* Version 4 (with a cluster token): the hello adds the dialer's nonce, the
 * reply the acceptor's nonce and proof; then the dialer's proof frame. */
#define HS_NONCE_BYTES 16
#define HS_PROOF_BYTES 32
#define HELLO4_FIXED_BYTES (HELLO_FIXED_BYTES + HS_NONCE_BYTES)
#define REPLY4_FIXED_BYTES (REPLY_FIXED_BYTES + HS_NONCE_BYTES + HS_PROOF_BYTES)
#define PROOF_FRAME_BYTES (4 + 1 + HS_PROOF_BYTES + 4)
/* The strings section, at most: u16 + HTTP address, u8 + name, u16 +
 * cluster address. */
#define HS_STRINGS_MAX                                                                             \
    (2 + CORRAL_TRANSPORT_HTTP_ADDR_MAX + 1 + CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 2 +              \
     CORRAL_TRANSPORT_CLUSTER_ADDR_MAX)
#define HS_BYTES_MAX (REPLY4_FIXED_BYTES - 2 + HS_STRINGS_MAX + 4)
_Static_assert(HS_BYTES_MAX < RBUF_BYTES, "a handshake fits the resting receive buffer");

enum conn_state {
    CONN_CONNECTING, /* outbound: TCP connect in flight */
    CONN_HELLO,      /* outbound: awaiting the reply; inbound: the hello */
    CONN_PROOF,      /* inbound, with a token: our reply sent, awaiting the proof */
    CONN_OPEN,       /* handshake done */
    CONN_REFUSING,   /* inbound: writing a refusal, then closing */
    CONN_CLOSING,    /* uv_close called; freed in its callback */
};

/* A run of encoded frames, the unit of the send queue and of a write. */
struct chunk {
    struct chunk *next;
    size_t len;
    size_t cap;
    uint64_t msgs;
    uint8_t data[];
};

struct chunk_list {
    struct chunk *head;
    struct chunk *tail;
    size_t bytes;
    uint64_t msgs;
};

struct conn {
    uv_tcp_t tcp;
    struct corral_transport *t;
    struct conn *prev, *next; /* t->conns */
    struct peer *peer;        /* outbound: its peer, until detached */
    bool inbound;
    enum conn_state state;
    uint64_t peer_id; /* inbound: the hello's from */
    uint64_t started_ms;
    char name[64]; /* remote address, for log lines */
    char host[64]; /* its IP without the port: inbound log lines are limited per host */
    uv_connect_t connect_req;
    uv_write_t hs_req;
    uint8_t hs_buf[HS_BYTES_MAX];
    uv_write_t proof_req; /* outbound: the proof frame, after the hello */
    uint8_t proof_buf[PROOF_FRAME_BYTES];
    uint8_t nonce[HS_NONCE_BYTES];      /* ours, for this handshake */
    uint8_t peer_nonce[HS_NONCE_BYTES]; /* inbound: the hello's */
    /* Inbound, in CONN_PROOF: the hello's strings section, which the
     * dialer's proof covers, and its length. */
    uint8_t peer_strings[HS_STRINGS_MAX];
    size_t peer_strings_len;
    uv_write_t wr_req;
    bool writing;
    struct chunk_list inflight; /* chunks owned by wr_req */
    uv_buf_t bufs[WRITE_BUFS_MAX];
    uint8_t *rbuf;
    size_t rlen;
    size_t rcap;
};

struct peer {
    struct corral_transport *t;
    struct corral_transport_peer_stats st; /* queued_bytes filled on read */
    struct sockaddr_storage addr;
    char name[64];
    uv_timer_t timer; /* reconnect backoff */
    struct conn *out;
    uint32_t backoff_ms;
    uint32_t failures;               /* dial failures since the last handshake */
    uint64_t wrong_cluster_since_ms; /* the first of st.wrong_cluster_refusals */
    uint64_t wrong_token_since_ms;   /* the first of st.wrong_token_refusals */
    bool removed;                    /* corral_transport_remove_peer: its timer is closing */
    struct chunk_list pending;
};

/* One remote address's log lines in the current interval. */
struct log_limit {
    char key[64]; /* "" when the slot is free */
    uint64_t since_ms;
    uint32_t lines;
    uint64_t suppressed;
    int level; /* the most severe suppressed line's */
};

struct corral_transport {
    uv_loop_t *loop;
    struct corral_transport_callbacks cb;
    uint64_t cluster_id;
    uint64_t node_id;
    struct corral_tokens tokens; /* n 0: the open, version 3 handshake */
    size_t queue_max_bytes;
    /* Our strings section (transport.h), as sent in every hello and reply,
     * and its parts as strings (for log lines and checks). */
    uint8_t strings[HS_STRINGS_MAX];
    size_t strings_len;
    char cluster_name[CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 1];
    char cluster_addr[CORRAL_TRANSPORT_CLUSTER_ADDR_MAX + 1];
    uv_tcp_t listener;
    uv_timer_t sweep;
    uv_prepare_t flush;
    bool flush_armed;
    struct peer *peers[CORRAL_RAFT_NODES_MAX];
    uint32_t n_peers;
    uint32_t peers_closing; /* removed, their timer not yet closed */
    struct conn *conns;
    uint32_t n_conns;
    uint64_t rng;
    uint32_t handles; /* initialised and not yet closed */
    bool stopping;
    struct log_limit limits[LOG_LIMIT_SLOTS];
    void (*on_closed)(void *ud);
    void *closed_ud;
};

/* Shared helpers (transport.c). */
__attribute__((format(printf, 3, 4))) void transport_log(struct corral_transport *t, int level,
                                                         const char *fmt, ...);
/* transport_log, limited per key (a remote address: LOG_LIMIT_*). */
__attribute__((format(printf, 4, 5))) void
transport_log_limited(struct corral_transport *t, const char *key, int level, const char *fmt, ...);
__attribute__((format(printf, 3, 4))) void transport_conn_fail(struct conn *c, int level,
                                                               const char *fmt, ...);
void transport_conn_close(struct conn *c);
struct peer *transport_peer_find(const struct corral_transport *t, uint64_t id);

/* The handshake (transport_hs.c). take_hello (inbound) and take_reply
 * (outbound) consume one handshake frame at c->rbuf + *pos: 1 on progress,
 * 0 when more bytes are needed, -1 when the connection is closing or
 * refusing. hello_send writes our hello on a connected dialer. */
int transport_hello_send(struct conn *c);
int transport_take_hello(struct conn *c, size_t *pos);
int transport_take_reply(struct conn *c, size_t *pos);
/* Inbound in CONN_PROOF: the dialer's proof frame. */
int transport_take_proof(struct conn *c, size_t *pos);
/* Fills t->strings from the HTTP address, t->cluster_name and
 * t->cluster_addr (each valid: transport.c checked the config). */
void transport_strings_build(struct corral_transport *t, const char *http_addr);

#endif
