/* The replicated cluster state machine: members, resources split into
 * partitions with replicas, the assignment of every partition (ordered
 * replicas, copying or in sync, the primary and its epoch), and the config
 * key-value store (core/kv.h) inside it. Pure and deterministic: the same
 * commands in the same order give byte-identical snapshots everywhere.
 * The model and the protocol are in docs/partitions.md.
 *
 * Ids: members and resources get numeric ids from the state itself
 * (next_member_id, next_resource_id), never reused, even after a delete.
 * Epochs come from one cluster-wide counter: every grant takes the next
 * value, so an epoch only grows per partition and is never reused anywhere,
 * not even by a resource deleted and created again under the same name.
 *
 * Invariants (corral_state_check verifies them; tests cite them):
 * S1  Member names and resource names are unique; ids are unique and below
 *     their next_*_id counters.
 * S2  Per partition: at most CORRAL_STATE_ROW_MAX replicas (an in-sync add
 *     stops at the resource's R, a copying one at R + 1, so that a move can
 *     copy before it drops; R may be lowered below a partition's count:
 *     the controller then drops the surplus), on distinct members that
 *     exist and are not `left`; the primary, when set, is one of them and
 *     in sync. A member's replica count is the number of partitions it
 *     holds a replica of.
 * S3  A partition's epoch is the epoch of its last grant (0: never
 *     granted); it never decreases; a new grant takes last_epoch + 1, and
 *     last_epoch >= every partition's epoch. So no two partitions hold the
 *     same nonzero epoch, and a partition with a primary has epoch >= 1.
 * S4  releasing is set only while a primary is set.
 * S5  total partitions over all resources <= CORRAL_STATE_PARTITIONS_MAX.
 * S6  Coordinator names and ids are unique, ids below next_coord_id, at
 *     most COORDS_MAX of them; 1 <= added_index <= changed_index <=
 *     coords_index <= applied.
 * Besides: 1 <= joined_index <= changed_index <= assign_index <= applied
 * for members (created_index for resources), and the store's applied
 * index is the state's (non-KV commands and skips mark it applied too).
 *
 * Commands (corral_state_cmd_encode / _decode). Every command is checked
 * against the state first and either applied whole or rejected with a
 * status, changing nothing but the applied index (a Raft entry is applied
 * on every node, so a rejection must be deterministic too). Byte layout,
 * integers little endian:
 *
 *     u8 version (2), u8 type, u32 body_len, body, u32 CRC32C of every byte
 *     before it.
 *
 * A payload whose first byte is 1 is a config store command in the
 * layout of core/kv.h (what the WAL held before this state machine
 * existed): it is applied to the store unchanged (one that does not
 * decode reports KV_DONE with kv.status CORRAL_KV_BAD_COMMAND, as the
 * store alone did). Bodies per type are described at enum
 * corral_state_cmd_type; strings are u16 len + bytes. The decoder checks
 * every length against its limit and the buffer, every field against its
 * rule (names [a-z0-9._-]{1,64}; addr 1..260 bytes of printable ASCII
 * without the space; zone 0..64 chars of the name alphabet; role, status,
 * op codes known; weight 1..1000; P 1..65,536; R 1..7), wants the input
 * consumed exactly, and is canonical: whatever decodes re-encodes to the
 * same bytes. A command that does not decode is applied as BAD_COMMAND.
 *
 * Ownership: the state owns everything it holds; pointers returned by the
 * accessors are borrowed and valid until the next apply or restore. */
#ifndef CORRAL_CORE_STATE_H
#define CORRAL_CORE_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kv.h"
#include "util/rbuf.h"

/* Limits, each with its reason:
 * - MEMBERS_MAX: members ever live at once (coordinators and workers). The
 *   placement engine handles 8192; 4096 keeps a member scan on every
 *   heartbeat-driven evaluation cheap and the snapshot small.
 * - RESOURCES_MAX: resources are coarse (a queue, a table); 1024 bounds the
 *   per-resource placement engines a leader keeps.
 * - PARTITIONS_PER_RESOURCE_MAX: the API's 1..65,536 (docs/partitions.md).
 * - REPLICAS_MAX: R is 1..7 (clusters run up to 7 zones; more copies than
 *   that buy nothing).
 * - PARTITIONS_MAX: the sum of P over resources. 2^18 is four times the
 *   benchmark's 65,536 and keeps the assignment part of a snapshot under
 *   about 16 MiB (about 60 bytes per partition).
 * - NAME_BYTES_MAX: names are 1-64 chars of [a-z0-9._-], as etcd's --name.
 * - ADDR_BYTES_MAX: "host:port" with an IPv6 host in brackets or a DNS
 *   name of up to 253 characters fits in 260.
 * - ZONE_BYTES_MAX: a label, 0-64 chars of the name alphabet (empty: no
 *   zone given, all such members share one zone).
 * - META_BYTES_MAX: a small JSON object (version, host); the API checks it
 *   is JSON, the state only bounds it.
 * - OPS_MAX: partition operations in one command, so one Raft entry stays
 *   far below CORRAL_RAFT_ENTRY_BYTES_MAX (a 17-byte op: 4096 ops < 70 KiB). */
#define CORRAL_STATE_MEMBERS_MAX 4096u
#define CORRAL_STATE_RESOURCES_MAX 1024u
#define CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX 65536u
#define CORRAL_STATE_REPLICAS_MAX 7u
/* Replicas one partition may hold: R, plus one copy while a move runs
 * (copy first, then drop: a full row, or R = 1, can still move). */
#define CORRAL_STATE_ROW_MAX (CORRAL_STATE_REPLICAS_MAX + 1u)
#define CORRAL_STATE_PARTITIONS_MAX (1u << 18)
#define CORRAL_STATE_NAME_BYTES_MAX 64u
#define CORRAL_STATE_ADDR_BYTES_MAX 260u
#define CORRAL_STATE_ZONE_BYTES_MAX 64u
#define CORRAL_STATE_META_BYTES_MAX 1024u
#define CORRAL_STATE_OPS_MAX 4096u
#define CORRAL_STATE_WEIGHT_MAX 1000u
/* Coordinators in the roster: voters and learners, as Raft's node limit
 * (CORRAL_RAFT_NODES_MAX; state.c checks they agree). */
#define CORRAL_STATE_COORDS_MAX 16u

/* No member (an empty primary slot). Member ids start at 1. */
#define CORRAL_STATE_NONE 0u

enum corral_member_role {
    CORRAL_MEMBER_COORDINATOR = 1,
    CORRAL_MEMBER_WORKER = 2,
};

enum corral_member_status {
    CORRAL_MEMBER_ACTIVE = 1,
    CORRAL_MEMBER_DRAINING = 2, /* its partitions move away; then it may leave */
    CORRAL_MEMBER_DEAD = 3,     /* declared by the leader's liveness rules */
    CORRAL_MEMBER_LEFT = 4,     /* holds nothing; kept only until deleted */
};

struct corral_state_member {
    uint32_t id;
    uint8_t role;           /* enum corral_member_role */
    uint8_t status;         /* enum corral_member_status */
    uint16_t weight;        /* 1..CORRAL_STATE_WEIGHT_MAX */
    uint64_t joined_index;  /* log index of its first registration */
    uint64_t changed_index; /* log index of its last change */
    /* Log index of the last command that touched a partition row holding
     * it (before or after the command), or of its creation: its view (the
     * watch API) is the same at every index from here to the next such
     * command. Not in the snapshot: a restore sets it to the snapshot's
     * index (later than the truth, which only makes views sent again). */
    uint64_t view_index;
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    char addr[CORRAL_STATE_ADDR_BYTES_MAX + 1];
    char zone[CORRAL_STATE_ZONE_BYTES_MAX + 1];
    uint16_t meta_len;
    uint8_t meta[CORRAL_STATE_META_BYTES_MAX]; /* opaque bytes */
};

/* A coordinator: a Raft node of this cluster (not a member: members hold
 * partitions). Its id is its Raft node id. */
struct corral_state_coord {
    uint32_t id;
    uint64_t added_index;   /* log index of the put that added it */
    uint64_t changed_index; /* log index of its last change */
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    char cluster_addr[CORRAL_STATE_ADDR_BYTES_MAX + 1]; /* "host:port" for Raft */
    char http_addr[CORRAL_STATE_ADDR_BYTES_MAX + 1];    /* "host:port" of its API, or "" */
};

enum corral_replica_state {
    CORRAL_REPLICA_COPYING = 1,
    CORRAL_REPLICA_IN_SYNC = 2,
};

struct corral_state_replica {
    uint32_t member;
    uint8_t state; /* enum corral_replica_state */
};

/* One partition's assignment. */
struct corral_state_partition {
    uint64_t epoch;   /* of the last grant; 0 = never granted (S3) */
    uint32_t primary; /* member id, or CORRAL_STATE_NONE */
    bool releasing;   /* the primary was asked to release (S4) */
    uint8_t n_replicas;
    struct corral_state_replica replicas[CORRAL_STATE_ROW_MAX]; /* in order */
};

struct corral_state_resource {
    uint32_t id;
    uint32_t partitions; /* P, fixed at creation */
    uint8_t replicas;    /* R, may change */
    uint64_t created_index;
    uint64_t changed_index; /* log index of the last change to it or its map */
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    struct corral_state_partition *parts; /* P of them */
};

enum corral_state_cmd_type {
    /* body: str name, u8 role, str addr, str zone, u16 weight, u16 meta_len,
     * meta. A new name creates a member (id = next_member_id, status
     * active, joined_index = index); refused FULL at MEMBERS_MAX members
     * or when the ids run out. A known name updates role, addr, zone,
     * weight and meta and sets a dead or left member active again (a
     * rejoin: same id; a draining one stays draining). A put that changes
     * nothing is OK and moves no index. result.id: the member's id. */
    CORRAL_STATE_MEMBER_PUT = 1,
    /* body: u32 member, u8 status. NOT_FOUND for an unknown member. Any
     * change is allowed but to LEFT while the member holds a replica
     * (CONFLICT: drop them first). Its own status again: OK, no change.
     * DEAD does not take its primaries away: the controller CLEARs them. */
    CORRAL_STATE_MEMBER_STATUS = 2,
    /* body: u32 member. NOT_FOUND, or CONFLICT while it holds a replica (in
     * any status). Its id is never given out again; its name is free. */
    CORRAL_STATE_MEMBER_DELETE = 3,
    /* body: str name, u32 partitions, u8 replicas. A new name creates the
     * resource (id = next_resource_id, every partition empty, epoch 0);
     * refused FULL at RESOURCES_MAX, when the total would pass
     * PARTITIONS_MAX, or when the ids run out. For a known name only R may
     * change: a different P is CONFLICT; the same R is OK, no change; a
     * lower R than some partition's replica count is allowed (see S2).
     * result.id: the resource's id. */
    CORRAL_STATE_RESOURCE_PUT = 4,
    /* body: u32 resource. NOT_FOUND, or deletes it and its whole map (even
     * with primaries set: their holders learn it from the watch), and its
     * P leaves the total. last_epoch stays, so a resource created again
     * under the name gets a new id and only ever newer epochs. */
    CORRAL_STATE_RESOURCE_DELETE = 5,
    /* body: u32 resource, u32 n_ops (1..OPS_MAX), n_ops x { u32 partition,
     * u8 op, u32 member, u64 epoch }, partitions in non-decreasing order
     * (so each partition's ops are contiguous; the decoder refuses
     * otherwise). NOT_FOUND for an unknown resource. Applied in order, all
     * or nothing: every op is validated at its turn against a scratch copy
     * of its partition as the ops before it left it, and the epoch counter
     * likewise; the first invalid op refuses the whole command (result.op:
     * its index). The rules per op are at enum corral_partition_op. */
    CORRAL_STATE_PARTITION_OPS = 6,
    /* body: the config store command (core/kv.h layout), which must decode.
     * Applied by corral_kv_apply: status KV_DONE, result.kv. */
    CORRAL_STATE_KV = 7,
    /* The coordinators' roster: the Raft nodes by name, with the addresses
     * the others reach them at (docs/operations.md, Membership). The
     * Raft configuration itself is in the log's CONF entries; the leader
     * keeps the two in step (core/roster.h).
     * body: u32 id, str name, str cluster_addr (addr), str http_addr (may
     * be empty: not known yet, as for the coordinators of a new cluster
     * other than the one writing the bootstrap entries). A
     * known name must come with its own id (else CONFLICT) and updates the
     * addresses (a coordinator restarted elsewhere with its data). A new
     * name takes the given id, which must be at least next_coord_id (ids
     * are never reused: CONFLICT) and not another's; next_coord_id becomes
     * id + 1. FULL at COORDS_MAX. A put that changes nothing is OK and
     * moves no index. result.id: the id. */
    CORRAL_STATE_COORD_PUT = 8,
    /* body: u32 id. NOT_FOUND, or the coordinator leaves the roster; the
     * leader then takes it out of the Raft configuration. */
    CORRAL_STATE_COORD_DELETE = 9,
};
#define CORRAL_STATE_CMD_TYPE_MAX 9

/* Partition operations, the safe steps of docs/partitions.md. For every
 * op, in this order: partition < P (else NOT_FOUND), member exists (else
 * NOT_FOUND), and `epoch` equals the partition's current epoch as the
 * proposer saw it (a compare-and-set: a stale controller's op is refused,
 * CONFLICT). Then the op's own rules below, each a CONFLICT when broken. */
enum corral_partition_op {
    /* A new replica on member, appended as copying: member not already a
     * replica, member ACTIVE (a draining, dead or left member gets no new
     * replicas), fewer than R replicas. Any role. */
    CORRAL_OP_ADD_COPYING = 1,
    /* The same, appended in sync: only for a partition never granted
     * (epoch 0), which has no data to copy. */
    CORRAL_OP_ADD_IN_SYNC = 2,
    /* member's copying replica reports in sync: member has a replica, it is
     * copying, and member is not DEAD (its claim is not trusted until it
     * is active again). */
    CORRAL_OP_MARK_IN_SYNC = 3,
    /* member's replica goes (in any status: the way off a dead member);
     * never the primary's (CLEAR first). Later replicas keep their order. */
    CORRAL_OP_DROP = 4,
    /* No primary set: member, an in-sync replica and ACTIVE (a draining
     * member only through GRANT_DRAINING), becomes primary with epoch
     * last_epoch + 1 (remove before assign). FULL if last_epoch is
     * UINT64_MAX. */
    CORRAL_OP_GRANT = 5,
    /* The primary (== member) is asked to release: releasing = true.
     * Refused when it is already releasing. */
    CORRAL_OP_RELEASE = 6,
    /* The primary (== member) released, or its lease certainly expired, or
     * it was declared dead: no primary, releasing cleared; the epoch stays. */
    CORRAL_OP_CLEAR = 7,
    /* GRANT to a DRAINING member: the same rules, with the member draining
     * instead of active. The last resort that keeps a partition served when
     * no active member can take it (the controller proposes it only then,
     * controller.h C2): a drain moves partitions away, it does not take
     * them offline. A separate op rather than a wider GRANT so that logs
     * written before it replay exactly as they applied. */
    CORRAL_OP_GRANT_DRAINING = 8,
};
#define CORRAL_PARTITION_OP_MAX 8

struct corral_partition_opv {
    uint32_t partition;
    uint8_t op; /* enum corral_partition_op */
    uint32_t member;
    uint64_t epoch;
};

/* A decoded command; pointers borrow from the decoded buffer or, to
 * encode, from the caller. */
struct corral_state_cmd {
    uint8_t type; /* enum corral_state_cmd_type */
    uint32_t id;  /* MEMBER_STATUS/DELETE: member; RESOURCE_DELETE, PARTITION_OPS: resource;
                     COORD_PUT/DELETE: coordinator */
    /* MEMBER_PUT, RESOURCE_PUT and COORD_PUT */
    const char *name;
    uint16_t name_len;
    uint8_t role;
    const char *addr; /* COORD_PUT: the cluster address */
    uint16_t addr_len;
    const char *http_addr; /* COORD_PUT */
    uint16_t http_addr_len;
    const char *zone;
    uint16_t zone_len;
    uint16_t weight;
    const uint8_t *meta;
    uint16_t meta_len;
    uint8_t status;                         /* MEMBER_STATUS */
    uint32_t partitions;                    /* RESOURCE_PUT */
    uint8_t replicas;                       /* RESOURCE_PUT */
    uint32_t n_ops;                         /* PARTITION_OPS */
    const struct corral_partition_opv *ops; /* encode: the caller's array (or NULL: ops_bytes) */
    const uint8_t *ops_bytes;               /* decode: the raw ops, read with _op_at */
    struct corral_kv_cmd kv;                /* KV */
};

/* A COORD_PUT of the NUL-terminated strings given (borrowed). */
struct corral_state_cmd corral_state_coord_put(uint32_t id, const char *name,
                                               const char *cluster_addr, const char *http_addr);

/* A new rbuf with one reference, or NULL when out of memory or when c is
 * one the decoder would refuse (a bad type, a length over its limit, a
 * name outside [a-z0-9._-]{1,64}). */
struct corral_rbuf *corral_state_cmd_encode(const struct corral_state_cmd *c);
/* CORRAL_EINVAL/CORRAL_ECORRUPT/CORRAL_EVERSION on anything malformed. A
 * version-1 payload decodes as type KV. */
int corral_state_cmd_decode(const struct corral_rbuf *buf, struct corral_state_cmd *out);
/* The i-th op (i < n_ops) of a PARTITION_OPS command: from ops when set,
 * else from the decoded ops_bytes. */
void corral_state_cmd_op_at(const struct corral_state_cmd *c, uint32_t i,
                            struct corral_partition_opv *op);

enum corral_state_status {
    CORRAL_STATE_OK = 0,
    CORRAL_STATE_BAD_COMMAND = 1, /* did not decode */
    CORRAL_STATE_NOT_FOUND = 2,   /* no such member, resource or partition */
    CORRAL_STATE_CONFLICT = 3,    /* invalid in the current state (see detail) */
    CORRAL_STATE_FULL = 4,        /* a limit would be passed */
    CORRAL_STATE_KV_DONE = 5,     /* a KV command: see result.kv */
};

struct corral_state_result {
    uint8_t status;     /* enum corral_state_status */
    uint32_t id;        /* MEMBER_PUT, RESOURCE_PUT, COORD_PUT: the id */
    uint32_t op;        /* PARTITION_OPS refused at an op: that op's index */
    const char *detail; /* static text saying what was refused, "" when OK */
    struct corral_kv_result kv;
};

struct corral_state;

struct corral_state *corral_state_new(void);
void corral_state_free(struct corral_state *st);

/* As corral_kv_apply: index > every index applied before; never fails on
 * bad input (a refusal is a status); CORRAL_EINVAL when index <= applied,
 * CORRAL_ENOMEM with the state unchanged. res may be NULL. */
int corral_state_apply(struct corral_state *st, uint64_t index, const struct corral_rbuf *payload,
                       struct corral_state_result *res);
int corral_state_skip(struct corral_state *st, uint64_t index);
uint64_t corral_state_applied(const struct corral_state *st);

/* The config store inside (read-only: it changes only through apply). */
const struct corral_kv *corral_state_kv(const struct corral_state *st);

/* Log index of the last change to any member or assignment (watches). */
uint64_t corral_state_assign_index(const struct corral_state *st);
uint64_t corral_state_last_epoch(const struct corral_state *st);

/* Members in increasing id order: i in 0..count-1. */
uint32_t corral_state_member_count(const struct corral_state *st);
const struct corral_state_member *corral_state_member_at(const struct corral_state *st, uint32_t i);
const struct corral_state_member *corral_state_member_by_id(const struct corral_state *st,
                                                            uint32_t id);
const struct corral_state_member *corral_state_member_by_name(const struct corral_state *st,
                                                              const char *name, uint32_t len);

/* The number of partitions whose row holds member id (0 for no such
 * member): kept by the state, O(log members). */
uint32_t corral_state_member_replicas(const struct corral_state *st, uint32_t id);

/* Resources in increasing id order. */
uint32_t corral_state_resource_count(const struct corral_state *st);
const struct corral_state_resource *corral_state_resource_at(const struct corral_state *st,
                                                             uint32_t i);
const struct corral_state_resource *corral_state_resource_by_id(const struct corral_state *st,
                                                                uint32_t id);
const struct corral_state_resource *corral_state_resource_by_name(const struct corral_state *st,
                                                                  const char *name, uint32_t len);
uint64_t corral_state_partitions_total(const struct corral_state *st);

/* The coordinators' roster, in increasing id order. next_coord_id: the
 * lowest id a new coordinator may take (1 on a new state). */
uint32_t corral_state_coord_count(const struct corral_state *st);
const struct corral_state_coord *corral_state_coord_at(const struct corral_state *st, uint32_t i);
const struct corral_state_coord *corral_state_coord_by_id(const struct corral_state *st,
                                                          uint32_t id);
const struct corral_state_coord *corral_state_coord_by_name(const struct corral_state *st,
                                                            const char *name, uint32_t len);
uint32_t corral_state_next_coord_id(const struct corral_state *st);
/* Log index of the last change to the roster (0: never changed). */
uint64_t corral_state_coords_index(const struct corral_state *st);

/* True when name is 1..64 chars of [a-z0-9._-] (members, resources). */
bool corral_state_name_valid(const char *name, uint32_t len);

/* S1-S5, the rest listed with them, and the store's own check; O(size
 * log size), and it allocates (false when out of memory): tests and the
 * simulator. */
bool corral_state_check(const struct corral_state *st);

/* Snapshot: u8 version (3), u64 applied, u64 assign_index, u64 last_epoch,
 * u32 next_member_id, u32 next_resource_id,
 *     u32 n_members, n_members x { u32 id, u8 role, u8 status, u16 weight,
 *         u64 joined_index, u64 changed_index, str name, str addr,
 *         str zone, str meta } in increasing id order,
 *     u32 n_resources, n_resources x { u32 id, u32 partitions, u8
 *         replicas, u64 created_index, u64 changed_index, str name,
 *         partitions x { u64 epoch, u32 primary, u8 releasing (0/1), u8
 *         n_replicas, n_replicas x { u32 member, u8 state } } } in
 *         increasing id order,
 *     u32 next_coord_id, u64 coords_index, u32 n_coords, n_coords x { u32
 *         id, u64 added_index, u64 changed_index, str name, str
 *         cluster_addr, str http_addr } in increasing id order,
 *     u32 kv_len, the config store's snapshot (kv_len bytes),
 * u32 CRC32C of every byte before it. Equal states give equal bytes;
 * restore validates everything (CRC, limits, lengths, exact length, the
 * order of ids, every invariant above, the store's own snapshot) before
 * replacing the state (unchanged on error: CORRAL_ECORRUPT,
 * CORRAL_EVERSION, CORRAL_ENOMEM). A version-1 config store snapshot
 * (core/kv.h) restores as a state with no members or resources, so data
 * dirs from before this state machine still load, and a version-2
 * snapshot (before the roster) restores with an empty roster. The store's bytes are
 * copied once each way (at most CORRAL_KV_SNAPSHOT_BYTES_MAX). */
struct corral_rbuf *corral_state_snapshot(const struct corral_state *st);
int corral_state_restore(struct corral_state *st, const struct corral_rbuf *snap);

#endif
