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
 * S2  Per partition: at most `replicas` replicas, on distinct members that
 *     exist and are not `left`; the primary, when set, is one of them and
 *     in sync.
 * S3  A partition's epoch is the epoch of its last grant (0: never
 *     granted); it never decreases; a new grant takes last_epoch + 1, and
 *     last_epoch >= every partition's epoch.
 * S4  releasing is set only while a primary is set.
 * S5  total partitions over all resources <= CORRAL_STATE_PARTITIONS_MAX.
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
 * existed): it is applied to the store unchanged. Bodies per type are
 * described at enum corral_state_cmd_type; strings are u16 len + bytes.
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
 *   far below CORRAL_RAFT_ENTRY_BYTES_MAX (a 21-byte op: 4096 ops < 90 KiB). */
#define CORRAL_STATE_MEMBERS_MAX 4096u
#define CORRAL_STATE_RESOURCES_MAX 1024u
#define CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX 65536u
#define CORRAL_STATE_REPLICAS_MAX 7u
#define CORRAL_STATE_PARTITIONS_MAX (1u << 18)
#define CORRAL_STATE_NAME_BYTES_MAX 64u
#define CORRAL_STATE_ADDR_BYTES_MAX 260u
#define CORRAL_STATE_ZONE_BYTES_MAX 64u
#define CORRAL_STATE_META_BYTES_MAX 1024u
#define CORRAL_STATE_OPS_MAX 4096u
#define CORRAL_STATE_WEIGHT_MAX 1000u

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
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    char addr[CORRAL_STATE_ADDR_BYTES_MAX + 1];
    char zone[CORRAL_STATE_ZONE_BYTES_MAX + 1];
    uint16_t meta_len;
    uint8_t meta[CORRAL_STATE_META_BYTES_MAX]; /* opaque bytes */
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
    struct corral_state_replica replicas[CORRAL_STATE_REPLICAS_MAX]; /* in order */
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
     * active); a known name updates role, addr, zone, weight and meta and
     * sets a dead or left member active again (a rejoin: same id). */
    CORRAL_STATE_MEMBER_PUT = 1,
    /* body: u32 member, u8 status. Any status change but to LEFT, which is
     * refused while the member holds a replica. */
    CORRAL_STATE_MEMBER_STATUS = 2,
    /* body: u32 member. Refused while it holds a replica. */
    CORRAL_STATE_MEMBER_DELETE = 3,
    /* body: str name, u32 partitions, u8 replicas. Creates the resource
     * (every partition empty); for a known name only the replica count may
     * change (partitions must equal the existing P). */
    CORRAL_STATE_RESOURCE_PUT = 4,
    /* body: u32 resource. Deletes it and its whole map. */
    CORRAL_STATE_RESOURCE_DELETE = 5,
    /* body: u32 resource, u32 n_ops, n_ops x { u32 partition, u8 op, u32
     * member, u64 epoch }, partitions in non-decreasing order. Applied in
     * order; the command is refused whole if any op is invalid at its turn. */
    CORRAL_STATE_PARTITION_OPS = 6,
    /* body: the config store command (core/kv.h layout). */
    CORRAL_STATE_KV = 7,
};
#define CORRAL_STATE_CMD_TYPE_MAX 7

/* Partition operations, the safe steps of docs/partitions.md. `epoch` is
 * the partition's current epoch as the proposer saw it (a compare-and-set:
 * a stale controller's op is refused), except where noted. */
enum corral_partition_op {
    /* A new replica on member (not already a replica, not dead or left,
     * room below R), appended as copying. */
    CORRAL_OP_ADD_COPYING = 1,
    /* The same, appended in sync: only for a partition never granted
     * (epoch 0), which has no data to copy. */
    CORRAL_OP_ADD_IN_SYNC = 2,
    /* member's copying replica reports in sync. */
    CORRAL_OP_MARK_IN_SYNC = 3,
    /* member's replica goes; never the primary. */
    CORRAL_OP_DROP = 4,
    /* No primary set: member, an in-sync replica, becomes primary with
     * epoch last_epoch + 1 (remove before assign). */
    CORRAL_OP_GRANT = 5,
    /* The primary (== member) is asked to release: releasing = true. */
    CORRAL_OP_RELEASE = 6,
    /* The primary (== member) released, or its lease certainly expired, or
     * it was declared dead: no primary; the epoch stays. */
    CORRAL_OP_CLEAR = 7,
};
#define CORRAL_PARTITION_OP_MAX 7

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
    uint32_t id;  /* MEMBER_STATUS/DELETE: member; RESOURCE_DELETE, PARTITION_OPS: resource */
    /* MEMBER_PUT and RESOURCE_PUT */
    const char *name;
    uint16_t name_len;
    uint8_t role;
    const char *addr;
    uint16_t addr_len;
    const char *zone;
    uint16_t zone_len;
    uint16_t weight;
    const uint8_t *meta;
    uint16_t meta_len;
    uint8_t status;                         /* MEMBER_STATUS */
    uint32_t partitions;                    /* RESOURCE_PUT */
    uint8_t replicas;                       /* RESOURCE_PUT */
    uint32_t n_ops;                         /* PARTITION_OPS */
    const struct corral_partition_opv *ops; /* encode: the caller's array */
    const uint8_t *ops_bytes;               /* decode: the raw ops, read with _op_at */
    struct corral_kv_cmd kv;                /* KV */
};

/* A new rbuf with one reference, or NULL when out of memory or when c is
 * one the decoder would refuse (a bad type, a length over its limit, a
 * name outside [a-z0-9._-]{1,64}). */
struct corral_rbuf *corral_state_cmd_encode(const struct corral_state_cmd *c);
/* CORRAL_EINVAL/CORRAL_ECORRUPT/CORRAL_EVERSION on anything malformed. A
 * version-1 payload decodes as type KV. */
int corral_state_cmd_decode(const struct corral_rbuf *buf, struct corral_state_cmd *out);
/* The i-th op of a decoded PARTITION_OPS command. */
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
    uint32_t id;        /* MEMBER_PUT, RESOURCE_PUT: the id */
    uint32_t op;        /* CONFLICT in PARTITION_OPS: the index of the refused op */
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

/* Resources in increasing id order. */
uint32_t corral_state_resource_count(const struct corral_state *st);
const struct corral_state_resource *corral_state_resource_at(const struct corral_state *st,
                                                             uint32_t i);
const struct corral_state_resource *corral_state_resource_by_id(const struct corral_state *st,
                                                                uint32_t id);
const struct corral_state_resource *corral_state_resource_by_name(const struct corral_state *st,
                                                                  const char *name, uint32_t len);
uint64_t corral_state_partitions_total(const struct corral_state *st);

/* True when name is 1..64 chars of [a-z0-9._-] (members, resources). */
bool corral_state_name_valid(const char *name, uint32_t len);

/* S1-S5 and the store's own check; O(size): tests and the simulator. */
bool corral_state_check(const struct corral_state *st);

/* Snapshot: u8 version (1), u64 applied, u64 assign_index, u64 last_epoch,
 * u32 next_member_id, u32 next_resource_id, the members, the resources
 * with their maps, the config store's snapshot bytes, u32 CRC32C. Equal
 * states give equal bytes; restore validates everything (S1-S5, limits,
 * lengths, CRC) before replacing the state (unchanged on error:
 * CORRAL_ECORRUPT, CORRAL_EVERSION, CORRAL_ENOMEM). A version-1 config
 * store snapshot (core/kv.h) restores as a state with no members or
 * resources, so data dirs from before this state machine still load. */
struct corral_rbuf *corral_state_snapshot(const struct corral_state *st);
int corral_state_restore(struct corral_state *st, const struct corral_rbuf *snap);

#endif
