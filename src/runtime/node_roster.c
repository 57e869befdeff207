/* The coordinators' roster on the node (core/roster.h): the bootstrap
 * entries that name a new cluster's coordinators, the peers the transport
 * dials kept in step with the roster, and the leader's roster step on
 * every tick. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/roster.h"
#include "corral.h"
#include "runtime/log.h"
#include "runtime/node_impl.h"
#include "util/mem.h"

/* "host:port" or "[v6]:port" into host and port; false when it is not. */
static bool split_addr(const char *addr, char *host, size_t cap, uint16_t *port)
{
    const char *colon;
    size_t hl;
    const char *h = addr;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return false;
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return false;
        hl = (size_t)(colon - addr);
    }
    char *end = NULL;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (hl == 0 || hl >= cap || end == colon + 1 || *end != '\0' || p == 0 || p > 65535)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return true;
}

int node_roster_bootstrap(struct corral_node *n, struct corral_raft_entry *out, uint32_t cap,
                          uint32_t *n_out)
{
    *n_out = 0;
    for (uint32_t i = 0; i < n->n_peers && *n_out < cap; i++) {
        const struct peer *p = &n->peers[i];
        int rv = corral_roster_bootstrap_entry((uint32_t)p->id, p->name, p->cluster_addr,
                                               2 + *n_out, &out[*n_out]);
        if (rv != 0)
            return rv;
        (*n_out)++;
    }
    return 0;
}

static struct peer *peer_slot(struct corral_node *n, uint64_t id)
{
    struct peer *found = node_find_peer(n, id);
    if (found != NULL)
        return found;
    if (n->n_peers == CORRAL_RAFT_NODES_MAX)
        return NULL;
    struct peer *p = &n->peers[n->n_peers++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    return p;
}

/* Peers neither in the roster nor in the Raft configuration are gone
 * (removed): no longer dialled. Before the roster has anyone (a cluster
 * from before it) the configuration alone keeps them. */
static void drop_gone(struct corral_node *n)
{
    struct corral_raft_status rs;
    corral_raft_status(n->raft, &rs);
    for (uint32_t i = 0; i < n->n_peers;) {
        uint64_t id = n->peers[i].id;
        bool keep = id == n->cfg.id || corral_raft_conf_is_voter(&rs.conf, id) ||
                    corral_raft_conf_is_learner(&rs.conf, id) ||
                    (id <= UINT32_MAX && corral_state_coord_by_id(n->st, (uint32_t)id) != NULL) ||
                    corral_state_coord_count(n->st) == 0;
        if (keep) {
            i++;
            continue;
        }
        corral_log(CORRAL_LOG_INFO, "coordinator %s (id %" PRIu64 ") left: no longer dialled",
                   n->peers[i].name, id);
        corral_transport_remove_peer(n->transport, id);
        memmove(&n->peers[i], &n->peers[i + 1], (n->n_peers - i - 1) * sizeof(n->peers[0]));
        n->n_peers--;
    }
}

void node_roster_sync(struct corral_node *n)
{
    uint64_t at = corral_state_coords_index(n->st);
    struct corral_raft_status rs;
    corral_raft_status(n->raft, &rs);
    uint32_t members = rs.conf.n_voters + rs.conf.n_learners;
    if ((at == n->roster_synced && members == n->roster_conf_size) || n->transport == NULL)
        return;
    n->roster_synced = at;
    n->roster_conf_size = members;
    drop_gone(n);
    for (uint32_t i = 0; i < corral_state_coord_count(n->st); i++) {
        const struct corral_state_coord *k = corral_state_coord_at(n->st, i);
        struct peer *p = peer_slot(n, k->id);
        if (p == NULL)
            continue;
        snprintf(p->name, sizeof(p->name), "%s", k->name);
        if (k->http_addr[0] != '\0' && k->id != n->cfg.id && strlen(k->http_addr) < sizeof(p->http))
            memcpy(p->http, k->http_addr, strlen(k->http_addr) + 1);
        if (k->id == n->cfg.id || strcmp(p->cluster_addr, k->cluster_addr) == 0)
            continue;
        char host[CORRAL_HOST_MAX];
        uint16_t port;
        if (strlen(k->cluster_addr) >= sizeof(p->cluster_addr) ||
            !split_addr(k->cluster_addr, host, sizeof(host), &port)) {
            corral_log(CORRAL_LOG_WARN, "coordinator %s: cluster address %s is not host:port",
                       k->name, k->cluster_addr);
            continue;
        }
        bool moved = p->cluster_addr[0] != '\0';
        memcpy(p->cluster_addr, k->cluster_addr, strlen(k->cluster_addr) + 1);
        int rv = corral_transport_set_peer(n->transport, k->id, host, port);
        corral_log(CORRAL_LOG_INFO, "coordinator %s (id %" PRIu32 ") %s %s%s%s", k->name, k->id,
                   moved ? "moved to" : "is at", k->cluster_addr, rv != 0 ? ": " : "",
                   rv != 0 ? corral_strerror(rv) : "");
    }
}

static void roster_done(void *ctx, int err, const struct corral_state_result *res)
{
    struct corral_node *n = ctx;
    (void)res;
    n->roster_busy = false;
    if (err != 0)
        corral_log(CORRAL_LOG_DEBUG, "roster update not applied: %s", corral_strerror(err));
}

static void roster_put(struct corral_node *n, uint64_t id, const char *name, const char *cluster,
                       const char *http)
{
    struct corral_state_cmd c = corral_state_coord_put((uint32_t)id, name, cluster, http);
    if (corral_node_propose(n, &c, roster_done, n) == 0)
        n->roster_busy = true;
}

/* RO5: a node from before the roster, named as --peers names it. */
static void adopt(struct corral_node *n, uint64_t id)
{
    const struct peer *p = node_find_peer(n, id);
    if (p == NULL || p->cluster_addr[0] == '\0' || p->name[0] == '\0')
        return; /* no address known here: a leader started with the list adopts it */
    corral_log(CORRAL_LOG_INFO, "roster: adopting coordinator %s (id %" PRIu64 ") at %s", p->name,
               id, p->cluster_addr);
    roster_put(n, id, p->name, p->cluster_addr, id == n->cfg.id ? n->http_addr : p->http);
}

/* The leader keeps each coordinator's addresses in the roster as its
 * handshake announced them (a coordinator restarted elsewhere with its
 * data dir; HTTP addresses for redirects on every node). */
static bool refresh_addrs(struct corral_node *n)
{
    for (uint32_t i = 0; i < corral_state_coord_count(n->st); i++) {
        const struct corral_state_coord *k = corral_state_coord_at(n->st, i);
        const char *http = k->id == n->cfg.id ? n->http_addr : NULL;
        const char *addr = k->id == n->cfg.id ? n->cluster_addr : NULL;
        const struct peer *p = http == NULL ? node_find_peer(n, k->id) : NULL;
        if (p != NULL && p->http[0] != '\0') {
            http = p->http;
            addr = p->advertised[0] != '\0' ? p->advertised : NULL;
        }
        if (addr == NULL || (k->id == n->cfg.id && n->cfg.cluster_wildcard))
            addr = k->cluster_addr;
        if (http != NULL &&
            (strcmp(http, k->http_addr) != 0 || strcmp(addr, k->cluster_addr) != 0)) {
            if (strcmp(addr, k->cluster_addr) != 0)
                corral_log(CORRAL_LOG_INFO,
                           "roster: coordinator %s (id %" PRIu32 ") now at %s (was %s)", k->name,
                           k->id, addr, k->cluster_addr);
            roster_put(n, k->id, k->name, addr, http);
            return true;
        }
    }
    return false;
}

void node_roster_peer_addr(struct corral_node *n, uint64_t id, const char *cluster_addr)
{
    struct peer *p = node_find_peer(n, id);
    size_t len = strlen(cluster_addr);
    /* A wildcard says nothing about where to dial (--cluster-addr 0.0.0.0). */
    if (p == NULL || len >= sizeof(p->advertised) || len >= sizeof(p->cluster_addr) ||
        strncmp(cluster_addr, "0.0.0.0:", 8) == 0 || strncmp(cluster_addr, "[::]:", 5) == 0)
        return;
    memcpy(p->advertised, cluster_addr, len + 1);
    /* A peer that dialled us from a new address: dial it there too (the
     * handshake proved the cluster, and the token when there is one). */
    char host[CORRAL_HOST_MAX];
    uint16_t port;
    if (strcmp(p->cluster_addr, cluster_addr) == 0 ||
        !split_addr(cluster_addr, host, sizeof(host), &port))
        return;
    char was[ADDR_MAX];
    memcpy(was, p->cluster_addr, sizeof(was));
    memcpy(p->cluster_addr, cluster_addr, len + 1);
    corral_log(CORRAL_LOG_INFO, "coordinator %s (id %" PRIu64 ") announces %s (was %s)", p->name,
               id, p->cluster_addr, was);
    corral_transport_set_peer(n->transport, id, host, port);
}

static bool in_roster(const struct corral_node *n)
{
    return n->cfg.id <= UINT32_MAX && corral_state_coord_by_id(n->st, (uint32_t)n->cfg.id) != NULL;
}

static void leave_done(void *ctx, int err, const struct corral_state_result *res)
{
    struct corral_node *n = ctx;
    (void)res;
    if (err != 0) {
        corral_log(CORRAL_LOG_WARN, "leaving the roster failed (%s): stopping without",
                   corral_strerror(err));
        node_stop(n, 0);
    }
}

bool node_roster_leave(struct corral_node *n, uint64_t now_ms)
{
    if (!in_roster(n))
        return true;
    if (n->leader != n->cfg.id) {
        if (n->cfg.ask_leave == NULL) {
            corral_log(CORRAL_LOG_INFO, "--leave-on-stop: a follower; the leader is asked after "
                                        "the stop");
            return true;
        }
        struct corral_node_exit peers;
        node_roster_exit(n, &peers);
        n->leave_deadline_ms = now_ms + CORRAL_NODE_LEAVE_WAIT_MS;
        corral_log(CORRAL_LOG_INFO,
                   "--leave-on-stop: a follower; asking the leader to take this node out while "
                   "it still runs (waiting up to %u ms)",
                   CORRAL_NODE_LEAVE_WAIT_MS);
        n->cfg.ask_leave(n->cfg.ask_leave_ud, &peers);
        return false;
    }
    struct corral_state_cmd c = {.type = CORRAL_STATE_COORD_DELETE, .id = (uint32_t)n->cfg.id};
    if (corral_node_propose(n, &c, leave_done, n) != 0)
        return true;
    n->leave_deadline_ms = now_ms + CORRAL_NODE_LEAVE_WAIT_MS;
    corral_log(CORRAL_LOG_INFO,
               "--leave-on-stop: leaving the roster; leadership goes to another voter, which "
               "removes this node (waiting up to %u ms)",
               CORRAL_NODE_LEAVE_WAIT_MS);
    return false;
}

void node_roster_exit(const struct corral_node *n, struct corral_node_exit *out)
{
    memset(out, 0, sizeof(*out));
    out->left = n->st != NULL && !in_roster(n);
    out->leave_needed = n->cfg.leave_on_stop && n->st != NULL && !out->left;
    for (uint32_t i = 0; i < n->n_peers && out->n_peers < CORRAL_RAFT_NODES_MAX; i++)
        if (n->peers[i].id != n->cfg.id && n->peers[i].http[0] != '\0')
            snprintf(out->peers_http[out->n_peers++], sizeof(out->peers_http[0]), "%s",
                     n->peers[i].http);
}

void node_roster_tick(struct corral_node *n, uint64_t now_ms)
{
    if (n->leave_deadline_ms != 0 && !n->stopping &&
        ((!in_roster(n) && n->leader != n->cfg.id) || now_ms >= n->leave_deadline_ms ||
         (n->cfg.leave_answered != NULL && atomic_load(n->cfg.leave_answered)))) {
        corral_log(CORRAL_LOG_INFO, "--leave-on-stop: %s; stopping",
                   !in_roster(n)                    ? "out of the roster"
                   : now_ms >= n->leave_deadline_ms ? "still in the roster at the deadline"
                                                    : "the leader answered");
        node_stop(n, 0);
        return;
    }
    if (n->leader != n->cfg.id || n->roster_busy || now_ms - n->roster_tick_ms < ROSTER_TICK_MS)
        return;
    n->roster_tick_ms = now_ms;
    struct corral_raft_status rs;
    corral_raft_status(n->raft, &rs);
    struct corral_roster_step s;
    corral_roster_next(n->st, &rs, n->cfg.voters, now_ms, n->cfg.election_timeout_ms, &s);
    const struct corral_state_coord *k =
        s.node <= UINT32_MAX ? corral_state_coord_by_id(n->st, (uint32_t)s.node) : NULL;
    const char *name = k != NULL ? k->name : "(not in the roster)";
    int rv = 0;
    switch (s.op) {
    case CORRAL_ROSTER_NONE:
        refresh_addrs(n);
        return;
    case CORRAL_ROSTER_ADOPT:
        adopt(n, s.node);
        return;
    case CORRAL_ROSTER_TRANSFER:
        rv = corral_roster_carry_out(n->raft, &s);
        corral_log(CORRAL_LOG_INFO,
                   "roster: this leader left the roster; handing leadership to %s (id %" PRIu64
                   ")%s%s",
                   name, s.node, rv ? ": " : "", rv ? corral_strerror(rv) : "");
        return;
    case CORRAL_ROSTER_ADD_LEARNER:
    case CORRAL_ROSTER_PROMOTE:
    case CORRAL_ROSTER_REMOVE:
        rv = corral_roster_carry_out(n->raft, &s);
        break;
    }
    corral_log(rv == 0 ? CORRAL_LOG_INFO : CORRAL_LOG_DEBUG,
               "roster: %s coordinator %s (id %" PRIu64 ")%s%s", corral_roster_op_name(s.op), name,
               s.node, rv ? ": " : "", rv ? corral_strerror(rv) : "");
}

/* Applies e to the state as the driver would: commands to the state
 * machine, configuration and no-op entries as skips. */
static int force_apply(struct corral_node *n, const struct corral_raft_entry *e)
{
    if (e->index <= corral_state_applied(n->st))
        return 0;
    if (e->type == CORRAL_RAFT_ENTRY_NORMAL)
        return corral_state_apply(n->st, e->index, e->data, NULL);
    return corral_state_skip(n->st, e->index);
}

int node_roster_force(struct corral_node *n, struct corral_storage_state *st)
{
    if (st->snap.index == 0 && st->n_entries == 0) {
        corral_log(CORRAL_LOG_ERROR, "--force-new-cluster: data dir %s holds nothing to recover",
                   n->cfg.data_dir);
        return CORRAL_EINVAL;
    }
    /* Every entry this node holds, committed or not as far as it knows:
     * with the others gone, its log is the best record there is. */
    uint64_t term = st->snap.term;
    for (uint32_t i = 0; i < st->n_entries; i++) {
        int rv = force_apply(n, &st->entries[i]);
        if (rv != 0)
            return rv;
        term = st->entries[i].term;
    }
    uint64_t from = corral_state_applied(n->st);
    char gone[CORRAL_STATE_COORDS_MAX * (CORRAL_STATE_NAME_BYTES_MAX + 2) + 1] = "";
    size_t len = 0;
    for (uint32_t i = corral_state_coord_count(n->st); i-- > 0;) {
        const struct corral_state_coord *k = corral_state_coord_at(n->st, i);
        if (k->id == n->cfg.id)
            continue;
        len += (size_t)snprintf(gone + len, sizeof(gone) - len, "%s%s", len ? ", " : "", k->name);
        struct corral_state_cmd c = {.type = CORRAL_STATE_COORD_DELETE, .id = k->id};
        struct corral_rbuf *b = corral_state_cmd_encode(&c);
        int rv = b != NULL ? corral_state_apply(n->st, corral_state_applied(n->st) + 1, b, NULL)
                           : CORRAL_ENOMEM;
        corral_rbuf_unref(b);
        if (rv != 0)
            return rv;
    }
    struct corral_rbuf *data = corral_state_snapshot(n->st);
    if (data == NULL)
        return CORRAL_ENOMEM;
    struct corral_raft_snapshot_meta meta = {.index = corral_state_applied(n->st), .term = term};
    meta.conf.voters[meta.conf.n_voters++] = n->cfg.id;
    struct corral_raft_hard_state hs = {.term = st->hs.term > term ? st->hs.term : term,
                                        .commit = meta.index};
    int rv = corral_storage_save_snapshot(n->storage, &meta, data);
    if (rv == 0)
        rv = corral_storage_set_hard_state(n->storage, &hs);
    if (rv == 0)
        rv = corral_storage_sync(n->storage);
    if (rv != 0) {
        corral_rbuf_unref(data);
        return rv;
    }
    for (uint32_t i = 0; i < st->n_entries; i++)
        corral_rbuf_unref(st->entries[i].data);
    corral_free(st->entries);
    st->entries = NULL;
    st->n_entries = 0;
    corral_rbuf_unref(st->snap_data);
    st->snap_data = data;
    st->snap = meta;
    st->hs = hs;
    corral_log(CORRAL_LOG_WARN,
               "--force-new-cluster: this node (%s) is now the only voter, with the data of its "
               "log up to index %" PRIu64 " (term %" PRIu64 "); coordinators taken out: %s. Do "
               "not start them again with their data dirs: wipe them and --join them anew",
               n->cfg.name, from, term, gone[0] ? gone : "none");
    return 0;
}
