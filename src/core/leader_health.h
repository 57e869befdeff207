/* The leader watches its own health and decides when to hand leadership
 * to another voter (thesis section 3.10 does the handing): pure, fed once
 * a tick with what the node measured, on the node's monotonic clock. A
 * leader whose disk or loop is slow makes every write slow while a
 * healthy voter could serve them; followers only replace a leader that
 * stops talking, not one that is merely slow, so the leader must notice.
 *
 * The signals, each with a limit (0: not watched):
 *   fsync      the slowest WAL fsync since the previous sample, ms;
 *   loop_lag   how late the tick timer fired, ms;
 *   backlog    entries committed but not applied (commit - applied).
 *
 * Rules (tests/unit/test_leader_health.c cites them):
 * H1  A signal is bad in a sample when its value is over its limit. A
 *     sample without an fsync leaves the fsync signal as the last fsync
 *     left it: no write says nothing new about the disk.
 * H2  Hysteresis: the leader is degraded from its first bad sample until
 *     recover_ms have passed with no bad sample. A disk slow on every
 *     other batch keeps it degraded; one slow fsync does not flap it.
 * H3  The transfer is due when the leader has been degraded for at least
 *     degraded_ms (degraded_ms 0: never), and no automatic transfer was
 *     decided within cooldown_ms before (at most one per cool-down,
 *     whether or not it succeeded, so two sick nodes cannot ping-pong).
 * H4  The target is the voter other than this node with the highest
 *     match index among those heard from within contact_ms; ties go to
 *     the lowest id. With none, nothing is decided and the due check
 *     repeats at the next sample (no_target is said once per period).
 * H5  A sample taken while not leading ends any degraded period and
 *     forgets the fsync signal; only the cool-down survives it.
 * H6  The reason is the first bad signal within the last recover_ms in
 *     the order fsync, backlog, loop lag: a slow fsync blocks the loop
 *     (the node fsyncs on it), so the lag it causes is not the cause. */
#ifndef CORRAL_CORE_LEADER_HEALTH_H
#define CORRAL_CORE_LEADER_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/raft.h"

/* The node's choices for what its flags do not set (node.c, and the
 * simulator, which runs the same step): a degraded leader counts as
 * healthy again after RECOVER_MS without a bad sample (a disk slow on
 * every few batches keeps it degraded; one spike is over in a second),
 * and makes at most one automatic transfer per COOLDOWN_MS, so that two
 * slow nodes cannot hand leadership back and forth. */
#define CORRAL_LEADER_HEALTH_RECOVER_MS 1000
#define CORRAL_LEADER_HEALTH_COOLDOWN_MS 60000

enum corral_leader_health_reason {
    CORRAL_LH_NONE = 0,
    CORRAL_LH_OPERATOR = 1, /* not decided here: POST /v1/leader/transfer */
    CORRAL_LH_FSYNC = 2,
    CORRAL_LH_LOOP_LAG = 3,
    CORRAL_LH_APPLY_BACKLOG = 4,
};
#define CORRAL_LH_REASON_MAX 4

/* "operator", "fsync", "loop_lag", "apply_backlog" (the metric's label),
 * "none". */
const char *corral_leader_health_reason_name(enum corral_leader_health_reason r);

struct corral_leader_health_config {
    uint64_t max_fsync_ms;      /* 0: not watched */
    uint64_t max_loop_lag_ms;   /* 0: not watched */
    uint64_t max_apply_backlog; /* entries; 0: not watched */
    uint64_t degraded_ms;       /* degraded this long: transfer; 0: never */
    uint64_t recover_ms;        /* no bad sample this long: healthy again */
    uint64_t cooldown_ms;       /* between automatic transfers */
    uint64_t contact_ms;        /* a target must have been heard within this */
};

struct corral_leader_health_sample {
    bool leading;
    uint64_t loop_lag_ms;
    bool fsync_seen; /* an fsync finished since the previous sample */
    uint64_t fsync_ms;
    uint64_t apply_backlog;
};

struct corral_leader_health_decision {
    bool degraded;  /* after this sample */
    bool started;   /* a degraded period began with this sample */
    bool recovered; /* a degraded period ended with this sample */
    bool transfer;  /* hand leadership to target now */
    bool no_target; /* due, but no voter qualifies (said once a period) */
    uint64_t target;
    enum corral_leader_health_reason reason; /* the cause (H6), when degraded */
    uint64_t value, limit;                   /* the reason's last bad value, its limit */
    uint64_t degraded_for_ms;                /* how long so far, when degraded */
};

/* Everything the module keeps; zero it with corral_leader_health_init. */
struct corral_leader_health {
    struct corral_leader_health_config cfg;
    bool degraded;
    bool no_target_said;
    bool fsync_bad;    /* H1: as the last fsync left it */
    uint64_t fsync_ms; /* that fsync's duration */
    uint64_t since_ms; /* start of the degraded period */
    /* Per signal (indexed by reason), within the degraded period only. */
    bool bad_seen[CORRAL_LH_REASON_MAX + 1];
    uint64_t last_bad_ms[CORRAL_LH_REASON_MAX + 1];
    uint64_t last_value[CORRAL_LH_REASON_MAX + 1];
    bool transferred;     /* an automatic transfer was decided ... */
    uint64_t transfer_ms; /* ... at this instant */
    /* The fsyncs the host reported since the last tick. */
    bool fsync_seen;
    uint64_t fsync_max_ms;
};

void corral_leader_health_init(struct corral_leader_health *h,
                               const struct corral_leader_health_config *cfg);

/* One sample at now_ms (never earlier than the previous one); st is the
 * Raft status (for H4; may be NULL when not leading). Fills *out. */
void corral_leader_health_step(struct corral_leader_health *h, uint64_t now_ms,
                               const struct corral_leader_health_sample *s,
                               const struct corral_raft_status *st,
                               struct corral_leader_health_decision *out);

/* The host finished a WAL fsync that took ms (on its clock); the next
 * tick's sample carries the slowest since the previous one. */
void corral_leader_health_fsync(struct corral_leader_health *h, uint64_t ms);

/* What the node (node_health.c) and the simulator do on every tick, after
 * the tick's batch: one sample, leading when st (this tick's Raft status)
 * says leader and the host is not stopping, with the loop lag the host
 * measured, the fsyncs reported since the previous tick and st's apply
 * backlog (commit - applied), then one step. The host acts on *out: on
 * out->transfer it calls corral_raft_transfer(raft, out->target). */
void corral_leader_health_tick(struct corral_leader_health *h, uint64_t now_ms,
                               const struct corral_raft_status *st, bool stopping,
                               uint64_t loop_lag_ms, struct corral_leader_health_decision *out);

/* Why target cannot take over now, checked against a leader's status st:
 * the refusals of POST /v1/leader/transfer. */
enum corral_leader_transfer_refusal {
    CORRAL_LT_OK = 0,
    CORRAL_LT_SELF = 1,       /* target is this node */
    CORRAL_LT_NOT_VOTER = 2,  /* no voter of the configuration has that id */
    CORRAL_LT_NO_CONTACT = 3, /* not heard from within contact_ms */
    CORRAL_LT_RUNNING = 4,    /* a transfer is already running */
    CORRAL_LT_NO_TARGET = 5,  /* target 0: no other voter qualifies (H4) */
};
/* target 0: pick one by H4 into *chosen. Otherwise *chosen = target when
 * it qualifies. */
enum corral_leader_transfer_refusal
corral_leader_transfer_check(const struct corral_raft_status *st, uint64_t target, uint64_t now_ms,
                             uint64_t contact_ms, uint64_t *chosen);

/* H4: the most caught-up voter heard within contact_ms, or 0. */
uint64_t corral_leader_health_pick(const struct corral_raft_status *st, uint64_t now_ms,
                                   uint64_t contact_ms);

#endif
