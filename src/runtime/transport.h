/* TCP transport between the coordinators of one cluster, driven by a
 * libuv loop (single-threaded: every call and callback on the loop thread).
 *
 * Connections: each node dials one outbound connection to every peer and
 * sends its messages on it; it accepts inbound connections and only
 * receives on those. So a pair of nodes uses two connections, one per
 * direction, and there is never a question of which side owns a socket.
 *
 * Wire format (all integers little-endian; handshake version 3, or 4
 * with a cluster token):
 *   hello (dialer -> acceptor, first frame):
 *       off  0  magic "CRLH"
 *       off  4  u8 version (3 open, 4 with a token)
 *       off  5  u64 cluster id
 *       off 13  u64 from node id (the dialer)
 *       off 21  u64 to node id (the acceptor it means to reach)
 *       off 29  version 4 only: 16 bytes, the dialer's nonce Nd
 *       then    the strings section S (below), u32 CRC32C of every
 *               preceding byte of the frame.
 *   hello reply (acceptor -> dialer):
 *       off  0  magic "CRLR"
 *       off  4  u8 version (3 or 4, the hello's)
 *       off  5  u8 status: 0 ok, 1 wrong cluster id, 2 wrong node id,
 *               3 bad version, 4 no token, 5 unexpected token, 6 wrong
 *               cluster name
 *       off  6  u64 cluster id (the acceptor's)
 *       off 14  u64 node id (the acceptor's)
 *       off 22  version 4 only: 16 bytes, the acceptor's nonce Na, then
 *               its 32-byte proof (zeros unless status 0)
 *       then    the acceptor's strings section S, u32 CRC32C.
 *   The strings section S of a frame tells the sender's own:
 *       u16 http_len (0..255), the HTTP address "host:port" (may be
 *           empty);
 *       u8 name_len (1..64), the cluster name ([a-z0-9._-]);
 *       u16 addr_len (1..260), the advertised cluster address
 *           "host:port" (the one its peers should dial).
 *   The addresses are printable ASCII without spaces (0x21..0x7e). A
 *   frame whose lengths or bytes break these rules, or whose CRC32C is
 *   wrong, closes the connection without a reply.
 *   On a nonzero status the acceptor closes; the dialer logs the reason
 *   and retries later with backoff. Every reply, a refusal too, carries
 *   the acceptor's strings, so a dialer refused for its cluster name
 *   logs both names. The acceptor checks, in order: the version, the
 *   token (4 vs 3), the cluster name, the cluster id, the node ids.
 *   A hello of version 1 or 2 (an older corral; its hello had no cluster
 *   name nor cluster address) is refused with status 3 in a version 3
 *   reply; a version 1 or 2 reply (an older acceptor refusing our hello)
 *   is logged as such.
 *   With a cluster token (version 4, CORRAL_TRANSPORT_VERSION_AUTH) the
 *   proof of a node is HMAC-SHA256(token, "corral-hs4" || role || u64
 *   cluster id || u64 its own id || the peer's nonce || its own nonce ||
 *   its own strings section S, byte for byte as in its frame), role 'a'
 *   for the acceptor and 'd' for the dialer. So a proof covers the
 *   prover's cluster id, node id, cluster name, HTTP address and cluster
 *   address (not the version, status or the to node id, which only
 *   refuse). The dialer checks the acceptor's proof, then sends a proof
 *   frame: magic "CRLP", u8 0, its 32-byte proof, u32 CRC32C; only then
 *   does the acceptor take message frames, and only then is the hello's
 *   strings section believed (on_peer_addr). The token never crosses the
 *   wire. A node with a token refuses a version 3 hello (status 4, no
 *   token) and one without refuses a version 4 hello (status 5,
 *   unexpected token); a wrong proof closes the connection, logged on
 *   the side that checked it.
 *   message frames after that (dialer -> acceptor only): u32 length, then
 *       length bytes of a codec-encoded Raft message (core/codec.h, which
 *       carries its own version byte and CRC32C). A frame longer than
 *       CORRAL_CODEC_MSG_BYTES_MAX, or that fails to decode, closes the
 *       connection (the peer reconnects; Raft retransmits).
 *
 * Reconnect: exponential backoff from 50 ms doubling to 2 s, with jitter.
 * Send queue: per peer, bounded at queue_max_bytes of encoded frames
 * (default 64 MiB). When a message does not fit, or the peer is not
 * connected, it is dropped and counted: Raft retransmits lost messages,
 * so dropping is always safe and keeps memory bounded. A peer dying is an
 * EOF or write error on its socket, never a signal: the process ignores
 * SIGPIPE (the runtime sets that at start). */
#ifndef CORRAL_RUNTIME_TRANSPORT_H
#define CORRAL_RUNTIME_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/raft.h"
#include "util/token.h"

#define CORRAL_TRANSPORT_VERSION 3
#define CORRAL_TRANSPORT_VERSION_AUTH 4
#define CORRAL_TRANSPORT_HTTP_ADDR_MAX 255
#define CORRAL_TRANSPORT_CLUSTER_NAME_MAX 64
#define CORRAL_TRANSPORT_CLUSTER_ADDR_MAX 260
/* The cluster name when the config gives none. */
#define CORRAL_TRANSPORT_CLUSTER_NAME_DEFAULT "corral"

/* Whether s is a valid cluster name: 1..CORRAL_TRANSPORT_CLUSTER_NAME_MAX
 * bytes of [a-z0-9._-]. */
bool corral_transport_cluster_name_ok(const char *s);
/* Whether s is a valid advertised address: 1..max bytes of printable
 * ASCII without spaces (max: CORRAL_TRANSPORT_CLUSTER_ADDR_MAX for a
 * cluster address). */
bool corral_transport_addr_ok(const char *s, size_t max);

struct corral_transport_callbacks {
    void *ud;
    /* A decoded message from peer `from` (the handshake's node id; the
     * message's own from field was checked to match). m is borrowed: the
     * callee copies or steps it before returning; the transport then
     * clears it. */
    void (*on_msg)(void *ud, const struct corral_raft_msg *m);
    /* A peer completed a handshake in either direction and told us its
     * HTTP address (for redirects and status pages). May be NULL. */
    void (*on_peer_http)(void *ud, uint64_t peer, const char *http_addr);
    /* The same moment (after on_peer_http): what the peer advertised, its
     * cluster address (the one to dial it at, "host:port", never empty)
     * and its HTTP address (may be empty). With a token both were proven
     * by the peer. The callee may call corral_transport_set_peer or
     * _remove_peer (for this peer too). May be NULL. */
    void (*on_peer_addr)(void *ud, uint64_t peer, const char *cluster_addr, const char *http_addr);
    /* A log line (level: 0 error, 1 warn, 2 info, 3 debug). May be NULL. */
    void (*log)(void *ud, int level, const char *msg);
};

struct corral_transport_config {
    uint64_t cluster_id;
    uint64_t node_id;
    const char *listen_host; /* numeric IPv4 or IPv6 address */
    uint16_t listen_port;
    const char *http_addr; /* advertised "host:port", copied; NULL: none */
    /* The cluster's name (corral_transport_cluster_name_ok), copied; NULL:
     * CORRAL_TRANSPORT_CLUSTER_NAME_DEFAULT. A peer with another name is
     * refused like one with another cluster id. */
    const char *cluster_name;
    /* Our cluster address as peers should dial it, "host:port"
     * (corral_transport_addr_ok), copied; NULL: listen_host:port (the
     * bound port; an IPv6 host in brackets). With a wildcard listen host
     * (0.0.0.0, ::) pass an explicit one: it is sent as given. */
    const char *advertise_addr;
    /* The cluster token(s), copied; NULL or none: the open handshake. */
    const struct corral_tokens *tokens;
    size_t queue_max_bytes; /* 0: the default, 64 MiB */
};

struct corral_transport_peer_stats {
    uint64_t id;
    bool connected; /* outbound handshake done */
    uint64_t sent_msgs, sent_bytes, dropped_msgs, queued_bytes;
    uint64_t recv_msgs, recv_bytes;
    uint64_t connects, refused; /* refused: handshakes rejected */
    /* Our hellos it refused for another cluster id or another cluster
     * name since our last handshake with it, for how long (ms since the
     * first of them), and the cluster id and name it answered with
     * (their_cluster_name "" until then). */
    uint32_t wrong_cluster_refusals;
    uint64_t wrong_cluster_ms;
    uint64_t their_cluster_id;
    char their_cluster_name[CORRAL_TRANSPORT_CLUSTER_NAME_MAX + 1];
    /* The same for a token mismatch that no token of ours can mend: it
     * proved a token that is none of ours, or refused us for having a
     * token (or none) when it has none (or one); wrong_token_why says
     * which, a static string. A token of ours it accepts (its proof, when
     * it dials us) or a handshake clears them: in a rotation the two
     * sides share a token. */
    uint32_t wrong_token_refusals;
    uint64_t wrong_token_ms;
    const char *wrong_token_why;
};

struct corral_transport;

/* Binds and listens (errors: CORRAL_EIO with a message in err, e.g. the
 * address is in use; CORRAL_EINVAL for a bad config). Callbacks are
 * copied. Listen port 0 picks a free port; corral_transport_port() tells
 * which. On an error *out is NULL, but handles may already be closing on
 * the loop: the caller must still run the loop before uv_loop_close(). */
int corral_transport_start(uv_loop_t *loop, const struct corral_transport_config *cfg,
                           const struct corral_transport_callbacks *cb,
                           struct corral_transport **out, char *err, size_t errlen);

/* The port the listener is bound to (useful after listen_port 0). */
uint16_t corral_transport_port(const struct corral_transport *t);

/* Registers a peer and starts dialing it (host numeric, port). Errors:
 * CORRAL_EINVAL (id 0, our own id, already added, or a bad host),
 * CORRAL_EFULL (CORRAL_RAFT_NODES_MAX peers), CORRAL_ENOMEM,
 * CORRAL_ESHUTDOWN. Inbound connections are accepted from any node id of
 * our cluster, registered or not (a joining node dials before it is
 * added); stats count traffic only for registered peers. */
int corral_transport_add_peer(struct corral_transport *t, uint64_t id, const char *host,
                              uint16_t port);

/* add_peer, or for a known peer at another address: its outbound
 * connection is closed (what it had queued is dropped: Raft retransmits)
 * and the new address dialed at once; its wrong-cluster and wrong-token
 * counts start again. The same address: nothing changes, 0. Errors as
 * add_peer. */
int corral_transport_set_peer(struct corral_transport *t, uint64_t id, const char *host,
                              uint16_t port);

/* Forgets a peer: stops dialing it, closes its outbound connection (its
 * queue dropped) and frees its slot, so CORRAL_RAFT_NODES_MAX counts the
 * current peers only and a later add_peer of the id works. Sends to it
 * then answer CORRAL_ENOTFOUND, stats leave it out. Its inbound
 * connection, if any, stays open until the remote end closes it (a node
 * may dial us before it is added, or after it is removed). Errors:
 * CORRAL_ENOTFOUND (unknown id), CORRAL_ESHUTDOWN. May be called from a
 * transport callback. */
int corral_transport_remove_peer(struct corral_transport *t, uint64_t id);

/* Encodes and queues m for m->to. Returns 0 when queued, CORRAL_EFULL when
 * dropped for a full queue or an unconnected peer, CORRAL_ENOTFOUND for an
 * unknown peer, CORRAL_ETOOBIG when it cannot be encoded in a frame,
 * CORRAL_EINVAL when m->from is not our id or the codec refuses m,
 * CORRAL_ENOMEM, CORRAL_ESHUTDOWN after stop. The caller keeps ownership
 * of m. Queued frames go out in one batched write per loop iteration. */
int corral_transport_send(struct corral_transport *t, const struct corral_raft_msg *m);

/* Hands every queued message to the kernel now (one writev per peer whose
 * connection has no write in flight) instead of just before the loop
 * polls: the node calls it before a blocking fsync and after each driver
 * run, so no message waits behind the loop's other work. */
void corral_transport_flush(struct corral_transport *t);

/* Fills up to cap entries; returns the number of peers. */
uint32_t corral_transport_stats(const struct corral_transport *t,
                                struct corral_transport_peer_stats *out, uint32_t cap);

/* Closes every socket and timer; on_closed(ud) runs once everything is
 * released (after which t is freed). */
void corral_transport_stop(struct corral_transport *t, void (*on_closed)(void *ud), void *ud);

#endif
