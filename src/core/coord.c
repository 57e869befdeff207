/* The coordinator's side of partition ownership: see coord.h. */
#include "core/coord.h"

#include <string.h>

#include "corral.h"
#include "util/mem.h"

struct corral_coord {
    struct corral_coord_config cfg;
    bool leading;
    uint64_t term;
    struct corral_liveness lv;
    struct corral_controller *ctl;
    uint64_t last_eval_ms;
    uint64_t office_index; /* the last log index when it took office (K2) */
    bool office_all;       /* a record was lost: office_index holds for everyone */
    /* K2 per member: the index of the last command this leader proposed
     * that touches a row holding the member (before or after it). Open
     * addressing on the member id (0 = empty), a power of two in size. */
    struct prop_slot {
        uint32_t member;
        uint64_t index;
    } * props;
    uint32_t props_cap, props_n;
};

void corral_coord_config_default(struct corral_coord_config *c)
{
    memset(c, 0, sizeof(*c));
    corral_liveness_config_default(&c->liveness);
    corral_controller_config_default(&c->controller);
    c->eval_interval_ms = 10;
    c->uncommitted_max = 32;
}

int corral_coord_config_check(const struct corral_coord_config *c)
{
    if (corral_liveness_config_check(&c->liveness) != 0 ||
        corral_controller_config_check(&c->controller) != 0 || c->eval_interval_ms == 0)
        return CORRAL_EINVAL;
    return 0;
}

int corral_coord_new(const struct corral_coord_config *cfg, struct corral_coord **out)
{
    if (corral_coord_config_check(cfg) != 0)
        return CORRAL_EINVAL;
    struct corral_coord *c = corral_calloc(1, sizeof(*c));
    if (c == NULL)
        return CORRAL_ENOMEM;
    c->cfg = *cfg;
    *out = c;
    return 0;
}

static void stop_office(struct corral_coord *c)
{
    if (!c->leading)
        return;
    c->leading = false;
    corral_free(c->props);
    c->props = NULL;
    c->props_cap = c->props_n = 0;
    corral_controller_free(c->ctl);
    c->ctl = NULL;
    corral_liveness_close(&c->lv);
}

void corral_coord_free(struct corral_coord *c)
{
    if (c == NULL)
        return;
    stop_office(c);
    corral_free(c);
}

int corral_coord_leadership(struct corral_coord *c, bool leader, uint64_t term, uint64_t last_index,
                            uint64_t now_ms)
{
    if (c->leading && (!leader || term != c->term))
        stop_office(c);
    if (!leader || c->leading)
        return 0;
    if (corral_liveness_init(&c->lv, &c->cfg.liveness, now_ms) != 0)
        return CORRAL_ENOMEM;
    if (corral_controller_new(&c->cfg.controller, &c->ctl) != 0) {
        corral_liveness_close(&c->lv);
        return CORRAL_ENOMEM;
    }
    c->leading = true;
    c->term = term;
    /* K2: entries of earlier terms still in the log may commit under this
     * leader (a clear of a primary among them). */
    c->office_index = last_index;
    c->office_all = false;
    c->last_eval_ms = 0;
    return 0;
}

bool corral_coord_leading(const struct corral_coord *c)
{
    return c->leading;
}

const struct corral_liveness *corral_coord_liveness(const struct corral_coord *c)
{
    return c->leading ? &c->lv : NULL;
}

const struct corral_controller *corral_coord_controller(const struct corral_coord *c)
{
    return c->leading ? c->ctl : NULL;
}

static uint32_t slot_of(const struct corral_coord *c, uint32_t member)
{
    uint32_t mask = c->props_cap - 1, i = (member * 2654435761u) & mask;
    while (c->props[i].member != 0 && c->props[i].member != member)
        i = (i + 1) & mask;
    return i;
}

static uint64_t prop_get(const struct corral_coord *c, uint32_t member)
{
    if (c->props_cap == 0)
        return 0;
    return c->props[slot_of(c, member)].index;
}

/* Rebuilds the table at cap slots, keeping only the entries above
 * applied (an applied command shows in the member's view_index). */
static int props_rehash(struct corral_coord *c, uint32_t cap, uint64_t applied)
{
    struct prop_slot *old = c->props;
    uint32_t old_cap = c->props_cap;
    struct prop_slot *fresh = corral_calloc(cap, sizeof(*fresh));
    if (fresh == NULL)
        return CORRAL_ENOMEM;
    c->props = fresh;
    c->props_cap = cap;
    c->props_n = 0;
    for (uint32_t i = 0; i < old_cap; i++) {
        if (old[i].member == 0 || old[i].index <= applied)
            continue;
        c->props[slot_of(c, old[i].member)] = old[i];
        c->props_n++;
    }
    corral_free(old);
    return 0;
}

static int prop_put(struct corral_coord *c, const struct corral_state *st, uint32_t member,
                    uint64_t index)
{
    if (member == CORRAL_STATE_NONE)
        return 0;
    if (c->props_cap == 0 || 2 * (c->props_n + 1) > c->props_cap) {
        /* Entries at or below the applied index are dropped first; the
         * table doubles only when that is not enough. */
        uint32_t cap = c->props_cap ? c->props_cap : 64;
        if (props_rehash(c, cap, corral_state_applied(st)) != 0)
            return CORRAL_ENOMEM;
        if (2 * (c->props_n + 1) > c->props_cap && props_rehash(c, 2 * cap, 0) != 0)
            return CORRAL_ENOMEM;
    }
    uint32_t i = slot_of(c, member);
    if (c->props[i].member == 0) {
        c->props[i].member = member;
        c->props_n++;
    }
    if (index > c->props[i].index)
        c->props[i].index = index;
    return 0;
}

static int touch_row(struct corral_coord *c, const struct corral_state *st,
                     const struct corral_state_partition *p, uint64_t index)
{
    int rv = 0;
    for (uint8_t j = 0; rv == 0 && j < p->n_replicas; j++)
        rv = prop_put(c, st, p->replicas[j].member, index);
    return rv;
}

int corral_coord_proposed(struct corral_coord *c, const struct corral_state *st,
                          const struct corral_state_cmd *cmd, uint64_t index)
{
    if (!c->leading)
        return 0;
    const struct corral_state_resource *r = corral_state_resource_by_id(st, cmd->id);
    int rv = 0;
    if (cmd->type == CORRAL_STATE_PARTITION_OPS) {
        for (uint32_t i = 0; rv == 0 && i < cmd->n_ops; i++) {
            struct corral_partition_opv op;
            corral_state_cmd_op_at(cmd, i, &op);
            rv = prop_put(c, st, op.member, index);
            if (rv == 0 && r != NULL && op.partition < r->partitions)
                rv = touch_row(c, st, &r->parts[op.partition], index);
        }
    } else if (cmd->type == CORRAL_STATE_RESOURCE_DELETE && r != NULL) {
        for (uint32_t p = 0; rv == 0 && p < r->partitions; p++)
            rv = touch_row(c, st, &r->parts[p], index);
    }
    if (rv != 0) {
        /* Without the record a lease could cover a stale view: this
         * office grants no lease with a lower index from now on. */
        c->office_index = index > c->office_index ? index : c->office_index;
        c->office_all = true;
    }
    return rv;
}

void corral_coord_propose_failed(struct corral_coord *c)
{
    if (c->leading)
        corral_controller_forget(c->ctl);
}

int corral_coord_evaluate(struct corral_coord *c, const struct corral_state *st,
                          const struct corral_raft_status *rs, uint64_t now_ms,
                          struct corral_controller_output *out, bool *ran)
{
    memset(out, 0, sizeof(*out));
    if (ran != NULL)
        *ran = false;
    /* I6: only a leader in contact with a quorum changes anything. */
    if (!c->leading || rs->role != CORRAL_RAFT_LEADER || !rs->quorum_in_contact)
        return 0;
    if (c->last_eval_ms != 0 && now_ms < c->last_eval_ms + c->cfg.eval_interval_ms)
        return 0;
    /* A leader whose proposals do not commit proposes no more of them. */
    if (rs->last_index > rs->commit + c->cfg.uncommitted_max)
        return 0;
    c->last_eval_ms = now_ms;
    if (ran != NULL)
        *ran = true;
    return corral_controller_evaluate(c->ctl, st, &c->lv, now_ms, out);
}

uint8_t corral_coord_view_kind(const struct corral_state *st, uint32_t member,
                               uint64_t member_index)
{
    const struct corral_state_member *m = corral_state_member_by_id(st, member);
    if (member_index == 0 || m == NULL || m->view_index > member_index)
        return CORRAL_COORD_VIEW_FULL;
    if (member_index > corral_state_applied(st))
        return CORRAL_COORD_VIEW_NONE; /* it saw further than this node: K3 cannot tell */
    return CORRAL_COORD_VIEW_UNCHANGED;
}

void corral_coord_heartbeat(struct corral_coord *c, const struct corral_state *st, bool leader,
                            uint32_t member, uint64_t member_index, uint64_t now_ms,
                            struct corral_coord_answer *ans)
{
    memset(ans, 0, sizeof(*ans));
    if (!c->leading || !leader) {
        ans->beat = CORRAL_COORD_BEAT_NOT_LEADER;
        return;
    }
    const struct corral_state_member *m = corral_state_member_by_id(st, member);
    if (m == NULL) {
        ans->beat = CORRAL_COORD_BEAT_UNKNOWN;
        return;
    }
    if (m->status == CORRAL_MEMBER_DEAD || m->status == CORRAL_MEMBER_LEFT) {
        /* Heard, though granted nothing: a later lease end is only more
         * cautious (L1), and the rejoin it asks for is not undone by a
         * death decided again before its first leased heartbeat. */
        if (m->status == CORRAL_MEMBER_DEAD)
            (void)corral_liveness_heartbeat(&c->lv, member, now_ms);
        ans->beat = CORRAL_COORD_BEAT_INACTIVE;
        return;
    }
    /* K1, L4: recorded before the answer is built. */
    ans->lease_ms = corral_liveness_heartbeat(&c->lv, member, now_ms);
    ans->beat = ans->lease_ms > 0 ? CORRAL_COORD_BEAT_OK : CORRAL_COORD_BEAT_FULL;
    /* K2: the member's own rows, and the log at office until it applied. */
    uint64_t li = m->view_index, pi = prop_get(c, member);
    if (pi > li)
        li = pi;
    if ((c->office_all || corral_state_applied(st) < c->office_index) && c->office_index > li)
        li = c->office_index;
    ans->lease_index = li;
    ans->view = corral_coord_view_kind(st, member, member_index);
    ans->view_index = corral_state_applied(st);
}

int corral_coord_report(struct corral_coord *c, const struct corral_state *st, uint32_t member,
                        const struct corral_progress *p, uint64_t now_ms,
                        struct corral_controller_output *out)
{
    memset(out, 0, sizeof(*out));
    if (!c->leading)
        return 0;
    return corral_controller_report(c->ctl, st, &c->lv, now_ms, member, p, out);
}

uint32_t corral_coord_view(const struct corral_state *st, uint32_t member,
                           struct corral_agent_entry *out, uint32_t cap)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < corral_state_resource_count(st); i++) {
        const struct corral_state_resource *r = corral_state_resource_at(st, i);
        for (uint32_t p = 0; p < r->partitions; p++) {
            const struct corral_state_partition *pt = &r->parts[p];
            int mine = -1;
            for (uint32_t j = 0; j < pt->n_replicas; j++)
                if (pt->replicas[j].member == member)
                    mine = (int)j;
            if (mine < 0)
                continue;
            if (k < cap) {
                bool primary = pt->primary == member;
                uint32_t from = pt->primary;
                for (uint32_t q = 0; from == CORRAL_STATE_NONE && q < pt->n_replicas; q++)
                    if (pt->replicas[q].state == CORRAL_REPLICA_IN_SYNC &&
                        pt->replicas[q].member != member)
                        from = pt->replicas[q].member;
                out[k] = (struct corral_agent_entry){
                    .resource = r->id,
                    .partition = p,
                    .role = primary ? CORRAL_AGENT_PRIMARY : CORRAL_AGENT_REPLICA,
                    .state = primary && pt->releasing ? CORRAL_AGENT_RELEASING
                                                      : pt->replicas[mine].state,
                    .epoch = pt->epoch,
                    .copy_from = primary ? CORRAL_AGENT_NONE : from};
            }
            k++;
        }
    }
    return k;
}
