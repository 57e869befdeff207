/* Cluster membership: voters and learners, and the single-server change
 * encoded in a CONF entry (thesis section 4.1). */
#include <string.h>

#include "corral.h"
#include "core/raft.h"
#include "util/bytes.h"

static bool contains(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void remove_id(uint64_t *ids, uint32_t *n, uint64_t id)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            ids[i] = ids[*n - 1];
            (*n)--;
            return;
        }
    }
}

bool corral_raft_conf_is_voter(const struct corral_raft_conf *c, uint64_t id)
{
    return contains(c->voters, c->n_voters, id);
}

bool corral_raft_caught_up(uint64_t match, uint64_t commit)
{
    return match > 0 && match + CORRAL_RAFT_PROMOTE_LAG_MAX >= commit;
}

bool corral_raft_conf_is_learner(const struct corral_raft_conf *c, uint64_t id)
{
    return contains(c->learners, c->n_learners, id);
}

struct corral_rbuf *corral_raft_conf_change_encode(uint8_t op, uint64_t node)
{
    struct corral_rbuf *b = corral_rbuf_new(NULL, CORRAL_RAFT_CONF_CHANGE_BYTES);
    if (b == NULL)
        return NULL;
    b->data[0] = op;
    corral_put_le64(b->data + 1, node);
    return b;
}

int corral_raft_conf_change_decode(const struct corral_rbuf *change, uint8_t *op, uint64_t *node)
{
    if (change == NULL || change->len != CORRAL_RAFT_CONF_CHANGE_BYTES)
        return CORRAL_ECORRUPT;
    *op = change->data[0];
    *node = corral_get_le64(change->data + 1);
    if (*op < CORRAL_RAFT_ADD_LEARNER || *op > CORRAL_RAFT_REMOVE || *node == 0)
        return CORRAL_ECORRUPT;
    return 0;
}

int corral_raft_bootstrap(const struct corral_raft_conf *conf, struct corral_raft_entry *entry)
{
    memset(entry, 0, sizeof(*entry));
    if (!corral_raft_conf_valid(conf))
        return CORRAL_EINVAL;
    uint32_t n = conf->n_voters + conf->n_learners;
    struct corral_rbuf *b = corral_rbuf_new(NULL, 3 + 8 * n);
    if (b == NULL)
        return CORRAL_ENOMEM;
    b->data[0] = CORRAL_RAFT_CONF_SET;
    b->data[1] = (uint8_t)conf->n_voters;
    b->data[2] = (uint8_t)conf->n_learners;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = i < conf->n_voters ? conf->voters[i] : conf->learners[i - conf->n_voters];
        corral_put_le64(b->data + 3 + 8 * i, id);
    }
    entry->index = 1;
    entry->term = 1;
    entry->type = CORRAL_RAFT_ENTRY_CONF;
    entry->data = b;
    return 0;
}

/* A whole configuration (the bootstrap entry), validated. */
static int conf_set(struct corral_raft_conf *c, const struct corral_rbuf *b)
{
    if (b->len < 3)
        return CORRAL_ECORRUPT;
    struct corral_raft_conf n = {.n_voters = b->data[1], .n_learners = b->data[2]};
    if (n.n_voters + n.n_learners > CORRAL_RAFT_NODES_MAX ||
        b->len != 3 + 8 * (n.n_voters + n.n_learners))
        return CORRAL_ECORRUPT;
    for (uint32_t i = 0; i < n.n_voters; i++)
        n.voters[i] = corral_get_le64(b->data + 3 + 8 * i);
    for (uint32_t i = 0; i < n.n_learners; i++)
        n.learners[i] = corral_get_le64(b->data + 3 + 8 * (n.n_voters + i));
    if (!corral_raft_conf_valid(&n))
        return CORRAL_ECORRUPT;
    *c = n;
    return 0;
}

/* Applies one change to c. Changes that make no sense for c (adding a
 * member, promoting a non-learner, removing a stranger) are refused with
 * CORRAL_EINVAL and leave c as it was. */
int corral_raft_conf_apply(struct corral_raft_conf *c, const struct corral_rbuf *change)
{
    uint8_t op;
    uint64_t node;
    if (change != NULL && change->len > 0 && change->data[0] == CORRAL_RAFT_CONF_SET)
        return conf_set(c, change);
    int rv = corral_raft_conf_change_decode(change, &op, &node);
    if (rv != 0)
        return rv;
    bool voter = corral_raft_conf_is_voter(c, node);
    bool learner = corral_raft_conf_is_learner(c, node);
    switch (op) {
    case CORRAL_RAFT_ADD_LEARNER:
        if (voter || learner)
            return CORRAL_EINVAL;
        if (c->n_voters + c->n_learners >= CORRAL_RAFT_NODES_MAX)
            return CORRAL_EFULL;
        c->learners[c->n_learners++] = node;
        return 0;
    case CORRAL_RAFT_PROMOTE:
        if (!learner)
            return CORRAL_EINVAL;
        remove_id(c->learners, &c->n_learners, node);
        c->voters[c->n_voters++] = node;
        return 0;
    default: /* CORRAL_RAFT_REMOVE */
        if (!voter && !learner)
            return CORRAL_EINVAL;
        if (voter && c->n_voters == 1)
            return CORRAL_EINVAL; /* never remove the last voter */
        remove_id(c->voters, &c->n_voters, node);
        remove_id(c->learners, &c->n_learners, node);
        return 0;
    }
}

/* A configuration is valid when ids are nonzero and distinct, within the
 * limit, and at least one voter exists. */
bool corral_raft_conf_valid(const struct corral_raft_conf *c)
{
    if (c->n_voters == 0 || c->n_voters > CORRAL_RAFT_NODES_MAX ||
        c->n_learners > CORRAL_RAFT_NODES_MAX ||
        c->n_voters + c->n_learners > CORRAL_RAFT_NODES_MAX)
        return false;
    for (uint32_t i = 0; i < c->n_voters; i++) {
        if (c->voters[i] == 0 || contains(c->voters, i, c->voters[i]))
            return false;
    }
    for (uint32_t i = 0; i < c->n_learners; i++) {
        if (c->learners[i] == 0 || contains(c->learners, i, c->learners[i]) ||
            contains(c->voters, c->n_voters, c->learners[i]))
            return false;
    }
    return true;
}
