/* Internals of the cluster state machine, shared by state.c (apply and
 * lookups), state_codec.c (the command codec) and state_snap.c (snapshot,
 * restore and check). Nothing outside those three files includes it. */
#ifndef CORRAL_CORE_STATE_IMPL_H
#define CORRAL_CORE_STATE_IMPL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/state.h"
#include "util/bytes.h"

#define STATE_LEGACY_VERSION 1 /* a core/kv.h command or snapshot */
#define STATE_CMD_VERSION 2
#define STATE_SNAP_VERSION 3
#define STATE_SNAP_VERSION_NO_COORDS 2 /* before the roster */
#define STATE_CRC_BYTES 4
#define STATE_CMD_HEADER_BYTES 6 /* version, type, body_len */
#define STATE_OP_BYTES 17        /* u32 partition, u8 op, u32 member, u64 epoch */

/* A member and the number of replicas it holds over every partition, so
 * that MEMBER_STATUS to LEFT and MEMBER_DELETE need no scan. */
struct state_member {
    struct corral_state_member m; /* first: the accessors hand out &m */
    uint32_t n_replicas;
};

struct corral_state {
    struct corral_kv *kv; /* its applied index always equals `applied` */
    uint64_t applied;
    uint64_t assign_index;
    uint64_t last_epoch;
    uint64_t partitions_total; /* the sum of P (S5) */
    uint32_t next_member_id;
    uint32_t next_resource_id;
    uint32_t n_members;
    uint32_t n_resources;
    /* In increasing id order (a new id is the largest, so creation
     * appends) and in name order; each object is in both, owned once. */
    struct state_member *members[CORRAL_STATE_MEMBERS_MAX];
    struct state_member *members_by_name[CORRAL_STATE_MEMBERS_MAX];
    struct corral_state_resource *resources[CORRAL_STATE_RESOURCES_MAX];
    struct corral_state_resource *resources_by_name[CORRAL_STATE_RESOURCES_MAX];
    /* The coordinators' roster, in increasing id order (few: scanned). */
    uint32_t next_coord_id;
    uint64_t coords_index;
    uint32_t n_coords;
    struct corral_state_coord coords[CORRAL_STATE_COORDS_MAX];
};

/* ---- Lookups and the two indexes (state.c) ---- */

void state_free_contents(struct corral_state *st);
struct state_member *state_member_get(const struct corral_state *st, uint32_t id);
/* The first position in the id index whose id is >= id. */
uint32_t state_member_pos(const struct corral_state *st, uint32_t id);
struct corral_state_resource *state_resource_get(const struct corral_state *st, uint32_t id);
/* The position of name in the name index: where it is (*found) or would go. */
uint32_t state_member_name_pos(const struct corral_state *st, const char *name, uint32_t len,
                               bool *found);
uint32_t state_resource_name_pos(const struct corral_state *st, const char *name, uint32_t len,
                                 bool *found);
/* Appends to the id index and inserts into the name index; the caller
 * checked the count limit and that the id is the largest. */
void state_member_insert(struct corral_state *st, struct state_member *m);
void state_resource_insert(struct corral_state *st, struct corral_state_resource *res);
void state_resource_free(struct corral_state_resource *res);
/* The index of member among p's replicas, or -1. */
int state_replica_find(const struct corral_state_partition *p, uint32_t member);
/* Fills in a refusal; returns 0 (a refusal is not an error). */
int state_refuse(struct corral_state_result *r, uint8_t status, const char *detail);
/* len bytes and a NUL into dst. */
void state_copy_str(char *dst, const char *src, uint32_t len);
/* True when the stored string s is exactly the len bytes at p. */
bool state_str_eq(const char *s, const char *p, uint32_t len);
/* strcmp for a stored (NUL-terminated) name against len bytes. */
int state_name_cmp(const char *stored, const char *name, uint32_t len);

/* ---- The roster (state_coord.c) ---- */

int state_apply_coord_put(struct corral_state *st, uint64_t index, const struct corral_state_cmd *c,
                          struct corral_state_result *r);
int state_apply_coord_delete(struct corral_state *st, uint64_t index,
                             const struct corral_state_cmd *c, struct corral_state_result *r);

/* ---- Field rules (state_codec.c), shared by the codec and restore ---- */

bool state_addr_valid(const char *addr, uint32_t len);
bool state_zone_valid(const char *zone, uint32_t len);

/* ---- Snapshot side (state_snap.c) ---- */

/* 0 when every invariant holds, CORRAL_ECORRUPT when one fails,
 * CORRAL_ENOMEM when the check itself ran out of memory. */
int state_validate(const struct corral_state *st);

/* ---- Bytes ---- */

/* Hostile input: the error is sticky and a failed read yields 0 (or
 * NULL), so a decoder reads a group of fields and checks once. */
struct state_reader {
    const uint8_t *p;
    size_t left;
    bool bad;
};

static inline uint64_t state_get(struct state_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = corral_get_le(r->p, n);
    r->p += n;
    r->left -= n;
    return v;
}

static inline const uint8_t *state_get_bytes(struct state_reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* A u16 length of at most max, then that many bytes. */
static inline const uint8_t *state_get_str(struct state_reader *r, uint32_t max, uint16_t *len)
{
    uint64_t n = state_get(r, 2);
    if (n > max)
        r->bad = true;
    *len = r->bad ? 0 : (uint16_t)n;
    return state_get_bytes(r, *len);
}

/* Writing: sizes are computed first, so running out of room is a bug. */
struct state_writer {
    uint8_t *p;
    const uint8_t *end;
};

static inline void state_put(struct state_writer *w, uint64_t v, size_t n)
{
    assert(n <= (size_t)(w->end - w->p));
    corral_put_le(w->p, v, n);
    w->p += n;
}

static inline void state_put_bytes(struct state_writer *w, const void *src, size_t n)
{
    assert(n <= (size_t)(w->end - w->p));
    if (n > 0)
        memcpy(w->p, src, n);
    w->p += n;
}

static inline void state_put_str(struct state_writer *w, const void *s, size_t n)
{
    assert(n <= UINT16_MAX);
    state_put(w, n, 2);
    state_put_bytes(w, s, n);
}

#endif
