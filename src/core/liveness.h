/* Leader-side liveness of members: heartbeats in, lease answers out, and
 * the decisions the controller needs (has a member's lease certainly
 * expired; is it suspect; is it dead), all on the leader's own monotonic
 * clock and all pure. The rules are those of docs/partitions.md, Leases.
 *
 * A member counts its lease from the moment it SENT the heartbeat; the
 * leader only knows when it RECEIVED it, which is later, and the two
 * clocks may run at rates differing by up to max_drift. So the leader
 * treats the lease as over only after
 *     lease_ms * (1 + max_drift) + margin_ms
 * on its clock since it received the last heartbeat it answered (L1).
 *
 * A new leader knows nothing of the heartbeats its predecessor answered,
 * and a deposed leader that has not noticed may go on answering until
 * check-quorum deposes it, at most max_election_timeout after its last
 * quorum contact. So until
 *     took_office + (max_election_timeout_ms + lease_ms) * (1 + max_drift)
 *                 + margin_ms
 * every member's lease may still be running, whatever this leader heard
 * (L2): no lease is over and nobody is dead before that instant.
 *
 * Invariants:
 * L1  lease_over(m, now) implies now >= last_answered(m) + lease_ms * (1 +
 *     max_drift) + margin_ms.
 * L2  lease_over(m, now) implies now >= took_office + the new-leader wait.
 * L3  dead(m, now) implies lease_over(m, now).
 * L4  A heartbeat is answered with a lease only while the caller says this
 *     node leads (the host asks the Raft core); the answer is recorded
 *     before it is sent, so L1 holds for every lease granted.
 *
 * Arithmetic: the products are computed in 64 bits in permille and rounded
 * up (a longer wait, never a shorter one), and every sum saturates at
 * UINT64_MAX. A member never answered by this leader (or forgotten) is
 * treated as one whose lease may run until the L2 instant. */
#ifndef CORRAL_CORE_LIVENESS_H
#define CORRAL_CORE_LIVENESS_H

#include <stdbool.h>
#include <stdint.h>

/* Members tracked at once: as CORRAL_STATE_MEMBERS_MAX. */
#define CORRAL_LIVENESS_MEMBERS_MAX 4096u

struct corral_liveness_config {
    uint32_t heartbeat_ms;            /* members heartbeat this often (250) */
    uint32_t lease_ms;                /* granted per answer (1000); > 2 heartbeats */
    uint32_t max_drift_permille;      /* clock rate bound, 100 = 10% */
    uint32_t margin_ms;               /* slack for scheduling (50) */
    uint32_t max_election_timeout_ms; /* 2 x the Raft base timeout (600) */
    uint32_t suspect_after_ms;        /* no heartbeat for this long: suspect (2 x heartbeat) */
};

/* Fills c with the defaults above. */
void corral_liveness_config_default(struct corral_liveness_config *c);
/* 0 or CORRAL_EINVAL: lease_ms <= 2 x heartbeat_ms, any field zero (no
 * real clock pair has zero drift, and margin_ms 0 leaves no room for a
 * late timer), or a drift of 1000 permille or more. */
int corral_liveness_config_check(const struct corral_liveness_config *c);

struct corral_liveness_member {
    uint32_t id;
    uint64_t last_answered_ms; /* leader clock; valid when heard */
    bool heard;                /* answered at least once in this term of office;
                                  every tracked member has it set */
};

struct corral_liveness {
    struct corral_liveness_config cfg;
    uint64_t took_office_ms;
    uint32_t n;
    struct corral_liveness_member *members; /* sorted by id, owned */
    uint32_t cap;
};

/* A fresh view for a leader that took office at now_ms (every earlier
 * answer is forgotten: they were another leader's). 0 or CORRAL_ENOMEM /
 * CORRAL_EINVAL; on an error lv is zeroed, and closing it is harmless. */
int corral_liveness_init(struct corral_liveness *lv, const struct corral_liveness_config *cfg,
                         uint64_t took_office_ms);
void corral_liveness_close(struct corral_liveness *lv);

/* A heartbeat from member id arrived at now_ms and is answered: records it
 * and returns the lease to send back (cfg.lease_ms), or 0 when the member
 * cannot be tracked (CORRAL_LIVENESS_MEMBERS_MAX reached, out of memory,
 * or id 0, which is no member): the answer then grants no lease. A now_ms
 * earlier than the last one recorded for id keeps the later one. */
uint32_t corral_liveness_heartbeat(struct corral_liveness *lv, uint32_t id, uint64_t now_ms);
/* Forget a member (deleted from the cluster state, which refuses that
 * while it holds a replica, so no lease of it matters any more). Its
 * lease_end falls back to the L2 instant. */
void corral_liveness_forget(struct corral_liveness *lv, uint32_t id);

/* The first instant (leader clock) at which id's lease is certainly over:
 * the later of the L1 instant (when heard) and the L2 instant.
 * lease_over is now_ms >= lease_end. */
uint64_t corral_liveness_lease_end(const struct corral_liveness *lv, uint32_t id);
bool corral_liveness_lease_over(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms);
/* No answered heartbeat for suspect_after_ms (counted from took_office
 * for a member not heard yet). Advisory: it decides nothing by itself. */
bool corral_liveness_suspect(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms);
/* Exactly lease_over (docs: "It declares the member dead after that"):
 * L3 holds with equality. */
bool corral_liveness_dead(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms);
/* The new-leader wait is over (L2): grants over unreleased holders and
 * deaths may be decided. now_ms >= the L2 instant. */
bool corral_liveness_settled(const struct corral_liveness *lv, uint64_t now_ms);
/* How long ago (leader clock) id was last heard, UINT64_MAX when never. */
uint64_t corral_liveness_age_ms(const struct corral_liveness *lv, uint32_t id, uint64_t now_ms);

#endif
