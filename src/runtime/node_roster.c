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
    for (uint32_t i = 0; i < n->n_peers; i++)
        if (n->peers[i].id == id)
            return &n->peers[i];
    if (n->n_peers == CORRAL_RAFT_NODES_MAX)
        return NULL;
    struct peer *p = &n->peers[n->n_peers++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    return p;
}

void node_roster_sync(struct corral_node *n)
{
    uint64_t at = corral_state_coords_index(n->st);
    if (at == n->roster_synced || n->transport == NULL)
        return;
    n->roster_synced = at;
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
        int rv = corral_transport_add_peer(n->transport, k->id, host, port); /* TODO set_peer */
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
    struct corral_state_cmd c = {.type = CORRAL_STATE_COORD_PUT, .id = (uint32_t)id};
    c.name = name;
    c.name_len = (uint16_t)strlen(name);
    c.addr = cluster;
    c.addr_len = (uint16_t)strlen(cluster);
    c.http_addr = http;
    c.http_addr_len = (uint16_t)strlen(http);
    if (corral_node_propose(n, &c, roster_done, n) == 0)
        n->roster_busy = true;
}

/* RO5: a node from before the roster, named as --peers names it. */
static void adopt(struct corral_node *n, uint64_t id)
{
    const struct peer *p = NULL;
    for (uint32_t i = 0; i < n->n_peers; i++)
        if (n->peers[i].id == id)
            p = &n->peers[i];
    if (p == NULL || p->cluster_addr[0] == '\0' || p->name[0] == '\0')
        return; /* no address known here: a leader started with the list adopts it */
    corral_log(CORRAL_LOG_INFO, "roster: adopting coordinator %s (id %" PRIu64 ") at %s", p->name,
               id, p->cluster_addr);
    roster_put(n, id, p->name, p->cluster_addr, id == n->cfg.id ? n->http_addr : p->http);
}

/* The leader keeps each coordinator's HTTP address in the roster as its
 * handshake announced it (for redirects on every node). */
static bool refresh_http(struct corral_node *n)
{
    for (uint32_t i = 0; i < corral_state_coord_count(n->st); i++) {
        const struct corral_state_coord *k = corral_state_coord_at(n->st, i);
        const char *http = k->id == n->cfg.id ? n->http_addr : NULL;
        for (uint32_t j = 0; j < n->n_peers && http == NULL; j++)
            if (n->peers[j].id == k->id && n->peers[j].http[0] != '\0')
                http = n->peers[j].http;
        if (http != NULL && strcmp(http, k->http_addr) != 0) {
            roster_put(n, k->id, k->name, k->cluster_addr, http);
            return true;
        }
    }
    return false;
}

void node_roster_tick(struct corral_node *n, uint64_t now_ms)
{
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
        refresh_http(n);
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
