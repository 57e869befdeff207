/* The cluster state's command codec (layout in state.h): a version-2
 * frame with a CRC32C around a per-type body, or a version-1 payload,
 * which is a config store command (core/kv.h). The field rules here are
 * the decoder's, the encoder's and restore's: whatever decodes
 * re-encodes to the same bytes. */
#include <assert.h>
#include <string.h>

#include "core/raft.h"
#include "core/state_impl.h"
#include "corral.h"
#include "util/crc32c.h"
#include "util/mem.h"

#define KV_CMD_BYTES_MAX (15u + CORRAL_KV_KEY_BYTES_MAX + 4u + CORRAL_KV_VALUE_BYTES_MAX)
#define MEMBER_PUT_BYTES_MAX                                                                       \
    (2u + CORRAL_STATE_NAME_BYTES_MAX + 1u + 2u + CORRAL_STATE_ADDR_BYTES_MAX + 2u +               \
     CORRAL_STATE_ZONE_BYTES_MAX + 2u + 2u + CORRAL_STATE_META_BYTES_MAX)
#define OPS_BYTES_MAX (8u + STATE_OP_BYTES * CORRAL_STATE_OPS_MAX)
#define COORD_PUT_BYTES_MAX                                                                        \
    (4u + 2u + CORRAL_STATE_NAME_BYTES_MAX + 2u * (2u + CORRAL_STATE_ADDR_BYTES_MAX))
#define FRAME_BYTES (STATE_CMD_HEADER_BYTES + STATE_CRC_BYTES)

_Static_assert(FRAME_BYTES + KV_CMD_BYTES_MAX <= CORRAL_RAFT_ENTRY_BYTES_MAX,
               "the largest config store command fits in one entry");
_Static_assert(FRAME_BYTES + OPS_BYTES_MAX <= CORRAL_RAFT_ENTRY_BYTES_MAX,
               "the largest PARTITION_OPS fits in one entry");
_Static_assert(FRAME_BYTES + MEMBER_PUT_BYTES_MAX <= CORRAL_RAFT_ENTRY_BYTES_MAX,
               "the largest MEMBER_PUT fits in one entry");
_Static_assert(FRAME_BYTES + COORD_PUT_BYTES_MAX <= CORRAL_RAFT_ENTRY_BYTES_MAX,
               "the largest COORD_PUT fits in one entry");
_Static_assert(CORRAL_STATE_COORDS_MAX == CORRAL_RAFT_NODES_MAX,
               "the roster holds as many coordinators as Raft has nodes");
_Static_assert(CORRAL_STATE_ADDR_BYTES_MAX <= UINT16_MAX &&
                   CORRAL_STATE_META_BYTES_MAX <= UINT16_MAX,
               "string lengths are u16 on the wire");
_Static_assert(CORRAL_STATE_CMD_TYPE_MAX <= UINT8_MAX && CORRAL_PARTITION_OP_MAX <= UINT8_MAX,
               "types and ops are one byte on the wire");

/* ---- Field rules ---- */

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
           ch == '-';
}

static bool chars_valid(const char *s, uint32_t len, bool (*ok)(char))
{
    if (len > 0 && s == NULL)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (!ok(s[i]))
            return false;
    return true;
}

bool corral_state_name_valid(const char *name, uint32_t len)
{
    return len >= 1 && len <= CORRAL_STATE_NAME_BYTES_MAX && chars_valid(name, len, name_char);
}

bool state_zone_valid(const char *zone, uint32_t len)
{
    return len <= CORRAL_STATE_ZONE_BYTES_MAX && chars_valid(zone, len, name_char);
}

/* Printable ASCII without the space: "host:port", "[v6]:port". */
static bool addr_char(char ch)
{
    return ch > ' ' && ch <= '~';
}

bool state_addr_valid(const char *addr, uint32_t len)
{
    return len >= 1 && len <= CORRAL_STATE_ADDR_BYTES_MAX && chars_valid(addr, len, addr_char);
}

static bool member_put_valid(const struct corral_state_cmd *c)
{
    if (!corral_state_name_valid(c->name, c->name_len) || !state_addr_valid(c->addr, c->addr_len))
        return false;
    if (c->role != CORRAL_MEMBER_COORDINATOR && c->role != CORRAL_MEMBER_WORKER)
        return false;
    if (!state_zone_valid(c->zone, c->zone_len))
        return false;
    if (c->weight < 1 || c->weight > CORRAL_STATE_WEIGHT_MAX)
        return false;
    return c->meta_len <= CORRAL_STATE_META_BYTES_MAX && (c->meta_len == 0 || c->meta != NULL);
}

static bool op_valid(const struct corral_partition_opv *op)
{
    return op->op >= CORRAL_OP_ADD_COPYING && op->op <= CORRAL_PARTITION_OP_MAX;
}

/* 1..OPS_MAX known ops, partitions in non-decreasing order (so each
 * partition's ops are contiguous: apply validates one at a time). */
static bool ops_valid(const struct corral_state_cmd *c)
{
    if (c->n_ops < 1 || c->n_ops > CORRAL_STATE_OPS_MAX)
        return false;
    if (c->ops == NULL && c->ops_bytes == NULL)
        return false;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < c->n_ops; i++) {
        struct corral_partition_opv op;
        corral_state_cmd_op_at(c, i, &op);
        if (!op_valid(&op) || op.partition < prev)
            return false;
        prev = op.partition;
    }
    return true;
}

/* Every type but KV, whose body the config store's codec judges. */
static bool cmd_valid(const struct corral_state_cmd *c)
{
    switch (c->type) {
    case CORRAL_STATE_MEMBER_PUT:
        return member_put_valid(c);
    case CORRAL_STATE_MEMBER_STATUS:
        return c->status >= CORRAL_MEMBER_ACTIVE && c->status <= CORRAL_MEMBER_LEFT;
    case CORRAL_STATE_MEMBER_DELETE:
    case CORRAL_STATE_RESOURCE_DELETE:
        return true;
    case CORRAL_STATE_RESOURCE_PUT:
        return corral_state_name_valid(c->name, c->name_len) && c->partitions >= 1 &&
               c->partitions <= CORRAL_STATE_PARTITIONS_PER_RESOURCE_MAX && c->replicas >= 1 &&
               c->replicas <= CORRAL_STATE_REPLICAS_MAX;
    case CORRAL_STATE_PARTITION_OPS:
        return ops_valid(c);
    case CORRAL_STATE_COORD_PUT:
        return c->id >= 1 && corral_state_name_valid(c->name, c->name_len) &&
               state_addr_valid(c->addr, c->addr_len) &&
               (c->http_addr_len == 0 || state_addr_valid(c->http_addr, c->http_addr_len));
    case CORRAL_STATE_COORD_DELETE:
        return c->id >= 1;
    default:
        return false;
    }
}

/* ---- Encoding ---- */

static size_t body_bytes(const struct corral_state_cmd *c)
{
    switch (c->type) {
    case CORRAL_STATE_MEMBER_PUT:
        return 2u + c->name_len + 1u + 2u + c->addr_len + 2u + c->zone_len + 2u + 2u + c->meta_len;
    case CORRAL_STATE_MEMBER_STATUS:
        return 5;
    case CORRAL_STATE_RESOURCE_PUT:
        return 2u + c->name_len + 4u + 1u;
    case CORRAL_STATE_PARTITION_OPS:
        return 8u + (size_t)STATE_OP_BYTES * c->n_ops;
    case CORRAL_STATE_COORD_PUT:
        return 4u + 2u + c->name_len + 2u + c->addr_len + 2u + c->http_addr_len;
    default:
        return 4; /* MEMBER_DELETE, RESOURCE_DELETE, COORD_DELETE */
    }
}

static void put_ops(struct state_writer *w, const struct corral_state_cmd *c)
{
    state_put(w, c->id, 4);
    state_put(w, c->n_ops, 4);
    for (uint32_t i = 0; i < c->n_ops; i++) {
        struct corral_partition_opv op;
        corral_state_cmd_op_at(c, i, &op);
        state_put(w, op.partition, 4);
        state_put(w, op.op, 1);
        state_put(w, op.member, 4);
        state_put(w, op.epoch, 8);
    }
}

static void put_body(struct state_writer *w, const struct corral_state_cmd *c)
{
    switch (c->type) {
    case CORRAL_STATE_MEMBER_PUT:
        state_put_str(w, c->name, c->name_len);
        state_put(w, c->role, 1);
        state_put_str(w, c->addr, c->addr_len);
        state_put_str(w, c->zone, c->zone_len);
        state_put(w, c->weight, 2);
        state_put_str(w, c->meta, c->meta_len);
        break;
    case CORRAL_STATE_MEMBER_STATUS:
        state_put(w, c->id, 4);
        state_put(w, c->status, 1);
        break;
    case CORRAL_STATE_RESOURCE_PUT:
        state_put_str(w, c->name, c->name_len);
        state_put(w, c->partitions, 4);
        state_put(w, c->replicas, 1);
        break;
    case CORRAL_STATE_PARTITION_OPS:
        put_ops(w, c);
        break;
    case CORRAL_STATE_COORD_PUT:
        state_put(w, c->id, 4);
        state_put_str(w, c->name, c->name_len);
        state_put_str(w, c->addr, c->addr_len);
        state_put_str(w, c->http_addr, c->http_addr_len);
        break;
    default:
        state_put(w, c->id, 4);
        break;
    }
}

/* The frame around body_len bytes; kv, when set, is the body. */
static struct corral_rbuf *frame(const struct corral_state_cmd *c, const struct corral_rbuf *kv)
{
    size_t body = kv != NULL ? kv->len : body_bytes(c);
    struct corral_rbuf *b = corral_rbuf_new(NULL, (uint32_t)(FRAME_BYTES + body));
    if (b == NULL)
        return NULL;
    struct state_writer w = {b->data, b->data + b->len};
    state_put(&w, STATE_CMD_VERSION, 1);
    state_put(&w, c->type, 1);
    state_put(&w, body, 4);
    if (kv != NULL)
        state_put_bytes(&w, kv->data, kv->len);
    else
        put_body(&w, c);
    state_put(&w, corral_crc32c(0, b->data, b->len - STATE_CRC_BYTES), STATE_CRC_BYTES);
    assert(w.p == b->data + b->len);
    return b;
}

struct corral_rbuf *corral_state_cmd_encode(const struct corral_state_cmd *c)
{
    if (c == NULL)
        return NULL;
    if (c->type != CORRAL_STATE_KV)
        return cmd_valid(c) ? frame(c, NULL) : NULL;
    struct corral_rbuf *kv = corral_kv_cmd_encode(&c->kv);
    if (kv == NULL)
        return NULL;
    assert(kv->len <= KV_CMD_BYTES_MAX);
    struct corral_rbuf *b = frame(c, kv);
    corral_rbuf_unref(kv);
    return b;
}

/* ---- Decoding ---- */

static void get_member_put(struct state_reader *r, struct corral_state_cmd *c)
{
    c->name = (const char *)state_get_str(r, CORRAL_STATE_NAME_BYTES_MAX, &c->name_len);
    c->role = (uint8_t)state_get(r, 1);
    c->addr = (const char *)state_get_str(r, CORRAL_STATE_ADDR_BYTES_MAX, &c->addr_len);
    c->zone = (const char *)state_get_str(r, CORRAL_STATE_ZONE_BYTES_MAX, &c->zone_len);
    c->weight = (uint16_t)state_get(r, 2);
    c->meta = state_get_str(r, CORRAL_STATE_META_BYTES_MAX, &c->meta_len);
}

static void get_ops(struct state_reader *r, struct corral_state_cmd *c)
{
    c->id = (uint32_t)state_get(r, 4);
    uint64_t n = state_get(r, 4);
    /* The limit first, so the product cannot overflow. */
    if (n > CORRAL_STATE_OPS_MAX) {
        r->bad = true;
        return;
    }
    c->n_ops = (uint32_t)n;
    c->ops_bytes = state_get_bytes(r, (size_t)n * STATE_OP_BYTES);
}

static void get_body(struct state_reader *r, struct corral_state_cmd *c)
{
    switch (c->type) {
    case CORRAL_STATE_MEMBER_PUT:
        get_member_put(r, c);
        break;
    case CORRAL_STATE_MEMBER_STATUS:
        c->id = (uint32_t)state_get(r, 4);
        c->status = (uint8_t)state_get(r, 1);
        break;
    case CORRAL_STATE_RESOURCE_PUT:
        c->name = (const char *)state_get_str(r, CORRAL_STATE_NAME_BYTES_MAX, &c->name_len);
        c->partitions = (uint32_t)state_get(r, 4);
        c->replicas = (uint8_t)state_get(r, 1);
        break;
    case CORRAL_STATE_PARTITION_OPS:
        get_ops(r, c);
        break;
    case CORRAL_STATE_COORD_PUT:
        c->id = (uint32_t)state_get(r, 4);
        c->name = (const char *)state_get_str(r, CORRAL_STATE_NAME_BYTES_MAX, &c->name_len);
        c->addr = (const char *)state_get_str(r, CORRAL_STATE_ADDR_BYTES_MAX, &c->addr_len);
        c->http_addr =
            (const char *)state_get_str(r, CORRAL_STATE_ADDR_BYTES_MAX, &c->http_addr_len);
        break;
    default:
        c->id = (uint32_t)state_get(r, 4);
        break;
    }
}

static int decode_frame(const struct corral_rbuf *buf, struct corral_state_cmd *out)
{
    if (buf->len < FRAME_BYTES)
        return CORRAL_EINVAL;
    size_t body = buf->len - FRAME_BYTES;
    if (corral_get_le32(buf->data + 2) != body)
        return CORRAL_EINVAL;
    size_t crc_at = buf->len - STATE_CRC_BYTES;
    if (corral_get_le32(buf->data + crc_at) != corral_crc32c(0, buf->data, crc_at))
        return CORRAL_ECORRUPT;
    struct corral_state_cmd c = {0};
    c.type = buf->data[1];
    const uint8_t *p = buf->data + STATE_CMD_HEADER_BYTES;
    if (c.type == CORRAL_STATE_KV) {
        if (corral_kv_cmd_decode_bytes(p, body, &c.kv) != 0)
            return CORRAL_EINVAL;
    } else {
        struct state_reader r = {p, body, false};
        get_body(&r, &c);
        if (r.bad || r.left != 0 || !cmd_valid(&c))
            return CORRAL_EINVAL;
    }
    *out = c;
    return 0;
}

int corral_state_cmd_decode(const struct corral_rbuf *buf, struct corral_state_cmd *out)
{
    if (buf == NULL || buf->len == 0)
        return CORRAL_EINVAL;
    if (buf->data[0] == STATE_LEGACY_VERSION) {
        struct corral_state_cmd c = {.type = CORRAL_STATE_KV};
        int rv = corral_kv_cmd_decode(buf, &c.kv);
        if (rv == 0)
            *out = c;
        return rv;
    }
    if (buf->data[0] != STATE_CMD_VERSION)
        return CORRAL_EVERSION;
    return decode_frame(buf, out);
}

void corral_state_cmd_op_at(const struct corral_state_cmd *c, uint32_t i,
                            struct corral_partition_opv *op)
{
    assert(i < c->n_ops);
    if (c->ops != NULL) {
        *op = c->ops[i];
        return;
    }
    const uint8_t *p = c->ops_bytes + (size_t)i * STATE_OP_BYTES;
    op->partition = corral_get_le32(p);
    op->op = p[4];
    op->member = corral_get_le32(p + 5);
    op->epoch = corral_get_le64(p + 9);
}
