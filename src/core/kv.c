/* The replicated config store: the command codec, an AVL tree of keys
 * with their values and versions, and the snapshot format (layouts in
 * kv.h). Pure and deterministic: equal command sequences give equal bytes. */
#include "core/kv.h"

#include <assert.h>
#include <string.h>

#include "core/raft.h"
#include "corral.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"

#define CMD_VERSION 1
#define CMD_FLAG_CAS 1u
#define CMD_HEADER_BYTES 15 /* version, op, flags, cas, key_len */
#define SNAP_VERSION 1
#define SNAP_HEADER_BYTES 17  /* version, applied, count */
#define SNAP_ITEM_OVERHEAD 16 /* key_len, version, value_len */
#define CRC_BYTES 4
/* An AVL tree of n nodes is at most 1.44 log2(n + 2) high: 29 for a
 * million keys. The iterator's stack holds one root-to-leaf path. */
#define HEIGHT_MAX 48

_Static_assert(CORRAL_KV_SNAPSHOT_BYTES_MAX <= CORRAL_RAFT_SNAPSHOT_BYTES_MAX,
               "every store fits in a Raft snapshot");
_Static_assert(CMD_HEADER_BYTES + CORRAL_KV_KEY_BYTES_MAX + 4 + CORRAL_KV_VALUE_BYTES_MAX <=
                   CORRAL_RAFT_ENTRY_BYTES_MAX,
               "the largest command fits in one entry");
_Static_assert((uint64_t)CORRAL_KV_KEYS_MAX *(SNAP_ITEM_OVERHEAD + 1) <= UINT32_MAX,
               "a full store of one-byte keys fits in an rbuf");

struct node {
    struct node *left;
    struct node *right;
    uint64_t version;
    uint32_t key_len;
    uint32_t value_len;
    uint8_t height;  /* of the subtree rooted here; a leaf is 1 */
    uint8_t bytes[]; /* key_len bytes of key, then value_len of value */
};

struct corral_kv {
    struct node *root;
    uint64_t count;
    uint64_t applied;
    uint64_t snap_bytes; /* the exact size of a snapshot of the store now */
};

/* ---- Bytes in and out ---- */

static uint8_t *put_le(uint8_t *p, uint64_t v, size_t n)
{
    corral_put_le(p, v, n);
    return p + n;
}

static uint8_t *put_bytes(uint8_t *p, const uint8_t *src, uint32_t n)
{
    if (n > 0)
        memcpy(p, src, n);
    return p + n;
}

/* Hostile input: every read checks what is left first. */
struct reader {
    const uint8_t *p;
    size_t left;
};

static bool get_le(struct reader *r, size_t n, uint64_t *v)
{
    if (r->left < n)
        return false;
    *v = corral_get_le(r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

/* A u32 length of at most max, then that many bytes. */
static bool get_span(struct reader *r, uint32_t max, const uint8_t **data, uint32_t *len)
{
    uint64_t n;
    if (!get_le(r, 4, &n) || n > max || n > r->left)
        return false;
    *data = r->p;
    *len = (uint32_t)n;
    r->p += n;
    r->left -= n;
    return true;
}

static bool key_valid(const uint8_t *key, uint32_t len)
{
    return len >= 1 && len <= CORRAL_KV_KEY_BYTES_MAX && key != NULL && memchr(key, 0, len) == NULL;
}

/* ---- The command codec ---- */

static bool cmd_valid(const struct corral_kv_cmd *c)
{
    if (c->op != CORRAL_KV_PUT && c->op != CORRAL_KV_DEL)
        return false;
    if (!key_valid(c->key, c->key_len) || c->value_len > CORRAL_KV_VALUE_BYTES_MAX)
        return false;
    if (c->op == CORRAL_KV_DEL && c->value_len != 0)
        return false;
    return c->value_len == 0 || c->value != NULL;
}

struct corral_rbuf *corral_kv_cmd_encode(const struct corral_kv_cmd *c)
{
    if (!cmd_valid(c))
        return NULL;
    struct corral_rbuf *b = corral_rbuf_new(NULL, CMD_HEADER_BYTES + c->key_len + 4 + c->value_len);
    if (b == NULL)
        return NULL;
    uint8_t *p = b->data;
    p = put_le(p, CMD_VERSION, 1);
    p = put_le(p, c->op, 1);
    p = put_le(p, c->has_cas ? CMD_FLAG_CAS : 0, 1);
    p = put_le(p, c->has_cas ? c->cas : 0, 8);
    p = put_le(p, c->key_len, 4);
    p = put_bytes(p, c->key, c->key_len);
    p = put_le(p, c->value_len, 4);
    p = put_bytes(p, c->value, c->value_len);
    assert(p == b->data + b->len);
    return b;
}

int corral_kv_cmd_decode(const struct corral_rbuf *buf, struct corral_kv_cmd *out)
{
    if (buf == NULL)
        return CORRAL_EINVAL;
    return corral_kv_cmd_decode_bytes(buf->data, buf->len, out);
}

int corral_kv_cmd_decode_bytes(const uint8_t *data, size_t len, struct corral_kv_cmd *out)
{
    if (data == NULL && len > 0)
        return CORRAL_EINVAL;
    struct reader r = {data, len};
    uint64_t version, op, flags, cas;
    struct corral_kv_cmd c = {0};
    if (!get_le(&r, 1, &version) || version != CMD_VERSION)
        return CORRAL_EINVAL;
    if (!get_le(&r, 1, &op) || !get_le(&r, 1, &flags) || (flags & ~(uint64_t)CMD_FLAG_CAS) != 0)
        return CORRAL_EINVAL;
    if (!get_le(&r, 8, &cas) || (flags == 0 && cas != 0))
        return CORRAL_EINVAL;
    c.op = (uint8_t)op;
    c.has_cas = flags != 0;
    c.cas = cas;
    if (!get_span(&r, CORRAL_KV_KEY_BYTES_MAX, &c.key, &c.key_len))
        return CORRAL_EINVAL;
    if (!get_span(&r, CORRAL_KV_VALUE_BYTES_MAX, &c.value, &c.value_len))
        return CORRAL_EINVAL;
    if (r.left != 0 || !cmd_valid(&c))
        return CORRAL_EINVAL;
    *out = c;
    return 0;
}

/* ---- The tree ---- */

static int key_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    uint32_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return (a_len > b_len) - (a_len < b_len);
}

static int node_cmp(const struct node *n, const uint8_t *key, uint32_t key_len)
{
    return key_cmp(n->bytes, n->key_len, key, key_len);
}

static uint64_t item_bytes(uint32_t key_len, uint32_t value_len)
{
    return SNAP_ITEM_OVERHEAD + (uint64_t)key_len + value_len;
}

static struct node *node_new(const uint8_t *key, uint32_t key_len, const uint8_t *value,
                             uint32_t value_len, uint64_t version)
{
    struct node *n = corral_malloc(sizeof(*n) + (size_t)key_len + value_len);
    if (n == NULL)
        return NULL;
    n->left = NULL;
    n->right = NULL;
    n->version = version;
    n->key_len = key_len;
    n->value_len = value_len;
    n->height = 1;
    memcpy(n->bytes, key, key_len);
    put_bytes(n->bytes + key_len, value, value_len);
    return n;
}

static void tree_free(struct node *t)
{
    while (t != NULL) {
        tree_free(t->left);
        struct node *right = t->right;
        corral_free(t);
        t = right;
    }
}

static int height(const struct node *n)
{
    return n != NULL ? n->height : 0;
}

static void fix_height(struct node *n)
{
    int l = height(n->left), r = height(n->right);
    n->height = (uint8_t)(1 + (l > r ? l : r));
    assert(n->height < HEIGHT_MAX);
}

static struct node *rotate_right(struct node *n)
{
    struct node *l = n->left;
    n->left = l->right;
    l->right = n;
    fix_height(n);
    fix_height(l);
    return l;
}

static struct node *rotate_left(struct node *n)
{
    struct node *r = n->right;
    n->right = r->left;
    r->left = n;
    fix_height(n);
    fix_height(r);
    return r;
}

/* Restores the AVL invariant at n, whose subtrees are AVL trees whose
 * heights differ by at most 2. Returns the subtree's new root. */
static struct node *rebalance(struct node *n)
{
    fix_height(n);
    int balance = height(n->left) - height(n->right);
    if (balance > 1) {
        if (height(n->left->left) < height(n->left->right))
            n->left = rotate_left(n->left);
        return rotate_right(n);
    }
    if (balance < -1) {
        if (height(n->right->right) < height(n->right->left))
            n->right = rotate_right(n->right);
        return rotate_left(n);
    }
    return n;
}

/* Inserts n, whose key is not in t. */
static struct node *insert(struct node *t, struct node *n)
{
    if (t == NULL)
        return n;
    if (node_cmp(t, n->bytes, n->key_len) > 0)
        t->left = insert(t->left, n);
    else
        t->right = insert(t->right, n);
    return rebalance(t);
}

static struct node *unlink_min(struct node *t, struct node **min)
{
    if (t->left == NULL) {
        *min = t;
        return t->right;
    }
    t->left = unlink_min(t->left, min);
    return rebalance(t);
}

/* Unlinks the node holding key, which is in t, into *out. */
static struct node *unlink_key(struct node *t, const uint8_t *key, uint32_t key_len,
                               struct node **out)
{
    int c = node_cmp(t, key, key_len);
    if (c > 0) {
        t->left = unlink_key(t->left, key, key_len, out);
    } else if (c < 0) {
        t->right = unlink_key(t->right, key, key_len, out);
    } else {
        *out = t;
        if (t->right == NULL)
            return t->left;
        struct node *succ;
        struct node *right = unlink_min(t->right, &succ);
        succ->left = t->left;
        succ->right = right;
        return rebalance(succ);
    }
    return rebalance(t);
}

/* The link that points at key's node, or the NULL link where it would go. */
static struct node **find_link(struct corral_kv *kv, const uint8_t *key, uint32_t key_len)
{
    struct node **link = &kv->root;
    while (*link != NULL) {
        int c = node_cmp(*link, key, key_len);
        if (c == 0)
            break;
        link = c > 0 ? &(*link)->left : &(*link)->right;
    }
    return link;
}

/* In-order iteration from a lower bound with an explicit stack: the
 * ancestors whose left subtree the walk is in. */
struct iter {
    const struct node *stack[HEIGHT_MAX];
    unsigned depth;
};

static void iter_push(struct iter *it, const struct node *n)
{
    assert(it->depth < HEIGHT_MAX);
    it->stack[it->depth++] = n;
}

/* Positions it before the first key >= key (> key when strict). */
static void iter_seek(struct iter *it, const struct node *t, const uint8_t *key, uint32_t key_len,
                      bool strict)
{
    it->depth = 0;
    while (t != NULL) {
        int c = node_cmp(t, key, key_len);
        if (c > 0 || (c == 0 && !strict)) {
            iter_push(it, t);
            t = t->left;
        } else {
            t = t->right;
        }
    }
}

static const struct node *iter_next(struct iter *it)
{
    if (it->depth == 0)
        return NULL;
    const struct node *n = it->stack[--it->depth];
    for (const struct node *t = n->right; t != NULL; t = t->left)
        iter_push(it, t);
    return n;
}

/* ---- The store ---- */

struct corral_kv *corral_kv_new(void)
{
    struct corral_kv *kv = corral_calloc(1, sizeof(*kv));
    if (kv != NULL)
        kv->snap_bytes = SNAP_HEADER_BYTES + CRC_BYTES;
    return kv;
}

void corral_kv_free(struct corral_kv *kv)
{
    if (kv == NULL)
        return;
    tree_free(kv->root);
    corral_free(kv);
}

/* False, with the result filled in, when c's CAS does not match. */
static bool cas_matches(const struct node *cur, const struct corral_kv_cmd *c,
                        struct corral_kv_result *r)
{
    uint64_t version = cur != NULL ? cur->version : 0;
    if (!c->has_cas || c->cas == version)
        return true;
    r->status = CORRAL_KV_CAS_FAILED;
    r->version = version;
    return false;
}

static int apply_put(struct corral_kv *kv, uint64_t index, const struct corral_kv_cmd *c,
                     struct corral_kv_result *r)
{
    struct node **link = find_link(kv, c->key, c->key_len);
    struct node *old = *link;
    if (!cas_matches(old, c, r))
        return 0;
    uint64_t bytes = kv->snap_bytes + item_bytes(c->key_len, c->value_len);
    if (old != NULL)
        bytes -= item_bytes(old->key_len, old->value_len);
    if ((old == NULL && kv->count >= CORRAL_KV_KEYS_MAX) || bytes > CORRAL_KV_SNAPSHOT_BYTES_MAX) {
        r->status = CORRAL_KV_FULL;
        return 0;
    }
    struct node *n = node_new(c->key, c->key_len, c->value, c->value_len, index);
    if (n == NULL)
        return CORRAL_ENOMEM;
    if (old != NULL) {
        /* Same key, so the new node takes the old one's place as it is. */
        n->left = old->left;
        n->right = old->right;
        n->height = old->height;
        *link = n;
        corral_free(old);
    } else {
        kv->root = insert(kv->root, n);
        kv->count++;
    }
    kv->snap_bytes = bytes;
    r->status = CORRAL_KV_OK;
    r->version = index;
    return 0;
}

static void apply_del(struct corral_kv *kv, uint64_t index, const struct corral_kv_cmd *c,
                      struct corral_kv_result *r)
{
    struct node *cur = *find_link(kv, c->key, c->key_len);
    if (!cas_matches(cur, c, r))
        return;
    if (cur == NULL) {
        r->status = CORRAL_KV_NOT_FOUND;
        return;
    }
    struct node *gone;
    kv->root = unlink_key(kv->root, c->key, c->key_len, &gone);
    assert(gone == cur);
    kv->snap_bytes -= item_bytes(gone->key_len, gone->value_len);
    kv->count--;
    corral_free(gone);
    r->status = CORRAL_KV_OK;
    r->version = index;
}

int corral_kv_apply(struct corral_kv *kv, uint64_t index, const struct corral_rbuf *payload,
                    struct corral_kv_result *res)
{
    if (index <= kv->applied)
        return CORRAL_EINVAL;
    struct corral_kv_result r = {0};
    struct corral_kv_cmd c;
    if (corral_kv_cmd_decode(payload, &c) != 0) {
        r.status = CORRAL_KV_BAD_COMMAND;
    } else if (c.op == CORRAL_KV_PUT) {
        int rv = apply_put(kv, index, &c, &r);
        if (rv != 0)
            return rv;
    } else {
        apply_del(kv, index, &c, &r);
    }
    kv->applied = index;
    if (res != NULL)
        *res = r;
    return 0;
}

int corral_kv_skip(struct corral_kv *kv, uint64_t index)
{
    if (index <= kv->applied)
        return CORRAL_EINVAL;
    kv->applied = index;
    return 0;
}

uint64_t corral_kv_applied(const struct corral_kv *kv)
{
    return kv->applied;
}

uint64_t corral_kv_count(const struct corral_kv *kv)
{
    return kv->count;
}

/* Totals over a subtree, for corral_kv_check. */
struct check {
    const struct node *prev; /* the previous node in key order */
    uint64_t applied, count, bytes;
};

/* The subtree's height, or -1 when an invariant fails. */
static int check_tree(const struct node *n, struct check *c)
{
    if (n == NULL)
        return 0;
    int l = check_tree(n->left, c);
    if (l < 0 || !key_valid(n->bytes, n->key_len) || n->value_len > CORRAL_KV_VALUE_BYTES_MAX)
        return -1;
    if (c->prev != NULL && node_cmp(c->prev, n->bytes, n->key_len) >= 0)
        return -1;
    if (n->version == 0 || n->version > c->applied)
        return -1;
    c->prev = n;
    c->count++;
    c->bytes += item_bytes(n->key_len, n->value_len);
    int r = check_tree(n->right, c);
    int h = 1 + (l > r ? l : r);
    if (r < 0 || l - r > 1 || r - l > 1 || n->height != h)
        return -1;
    return h;
}

bool corral_kv_check(const struct corral_kv *kv)
{
    struct check c = {NULL, kv->applied, 0, SNAP_HEADER_BYTES + CRC_BYTES};
    return check_tree(kv->root, &c) >= 0 && c.count == kv->count && c.count <= CORRAL_KV_KEYS_MAX &&
           c.bytes == kv->snap_bytes && c.bytes <= CORRAL_KV_SNAPSHOT_BYTES_MAX;
}

static void item_fill(struct corral_kv_item *out, const struct node *n)
{
    out->key = n->bytes;
    out->key_len = n->key_len;
    out->value = n->bytes + n->key_len;
    out->value_len = n->value_len;
    out->version = n->version;
}

bool corral_kv_get(const struct corral_kv *kv, const uint8_t *key, uint32_t key_len,
                   struct corral_kv_item *out)
{
    if (!key_valid(key, key_len))
        return false;
    const struct node *n = kv->root;
    while (n != NULL) {
        int c = node_cmp(n, key, key_len);
        if (c == 0) {
            item_fill(out, n);
            return true;
        }
        n = c > 0 ? n->left : n->right;
    }
    return false;
}

static bool has_prefix(const struct node *n, const uint8_t *prefix, uint32_t prefix_len)
{
    return n->key_len >= prefix_len &&
           (prefix_len == 0 || memcmp(n->bytes, prefix, prefix_len) == 0);
}

uint32_t corral_kv_list(const struct corral_kv *kv, const uint8_t *prefix, uint32_t prefix_len,
                        const uint8_t *after, uint32_t after_len, struct corral_kv_item *out,
                        uint32_t limit, bool *more)
{
    struct iter it;
    /* Start at the later of the prefix itself and just past `after`. */
    if (after_len > 0 && key_cmp(after, after_len, prefix, prefix_len) >= 0)
        iter_seek(&it, kv->root, after, after_len, true);
    else
        iter_seek(&it, kv->root, prefix, prefix_len, false);
    uint32_t n = 0;
    bool further = false;
    for (const struct node *x = iter_next(&it); x != NULL && has_prefix(x, prefix, prefix_len);
         x = iter_next(&it)) {
        if (n == limit) {
            further = true;
            break;
        }
        item_fill(&out[n++], x);
    }
    if (more != NULL)
        *more = further;
    return n;
}

/* ---- Snapshots ---- */

struct corral_rbuf *corral_kv_snapshot(const struct corral_kv *kv)
{
    assert(kv->snap_bytes <= CORRAL_KV_SNAPSHOT_BYTES_MAX);
    struct corral_rbuf *b = corral_rbuf_new(NULL, (uint32_t)kv->snap_bytes);
    if (b == NULL)
        return NULL;
    uint8_t *p = b->data;
    p = put_le(p, SNAP_VERSION, 1);
    p = put_le(p, kv->applied, 8);
    p = put_le(p, kv->count, 8);
    struct iter it;
    iter_seek(&it, kv->root, NULL, 0, false);
    for (const struct node *n = iter_next(&it); n != NULL; n = iter_next(&it)) {
        p = put_le(p, n->key_len, 4);
        p = put_bytes(p, n->bytes, n->key_len);
        p = put_le(p, n->version, 8);
        p = put_le(p, n->value_len, 4);
        p = put_bytes(p, n->bytes + n->key_len, n->value_len);
    }
    uint32_t crc = corral_crc32c(0, b->data, (size_t)(p - b->data));
    p = put_le(p, crc, CRC_BYTES);
    assert(p == b->data + b->len);
    return b;
}

/* Restore reads the items in order while building a perfectly balanced
 * tree (left half, middle, right half): O(n), no rotations. */
struct loader {
    struct reader r;
    uint64_t applied;
    const uint8_t *prev_key; /* into the snapshot; NULL before the first */
    uint32_t prev_len;
};

static int load_item(struct loader *l, struct node **out)
{
    const uint8_t *key, *value;
    uint32_t key_len, value_len;
    uint64_t version;
    if (!get_span(&l->r, CORRAL_KV_KEY_BYTES_MAX, &key, &key_len) || !key_valid(key, key_len))
        return CORRAL_ECORRUPT;
    if (l->prev_key != NULL && key_cmp(l->prev_key, l->prev_len, key, key_len) >= 0)
        return CORRAL_ECORRUPT;
    if (!get_le(&l->r, 8, &version) || version == 0 || version > l->applied)
        return CORRAL_ECORRUPT;
    if (!get_span(&l->r, CORRAL_KV_VALUE_BYTES_MAX, &value, &value_len))
        return CORRAL_ECORRUPT;
    l->prev_key = key;
    l->prev_len = key_len;
    *out = node_new(key, key_len, value, value_len, version);
    return *out != NULL ? 0 : CORRAL_ENOMEM;
}

/* Builds n items into *out; on error nothing stays allocated. */
static int load_tree(struct loader *l, uint64_t n, struct node **out)
{
    struct node *left, *mid, *right;
    *out = NULL;
    if (n == 0)
        return 0;
    int rv = load_tree(l, (n - 1) / 2, &left);
    if (rv != 0)
        return rv;
    rv = load_item(l, &mid);
    if (rv != 0) {
        tree_free(left);
        return rv;
    }
    rv = load_tree(l, n - 1 - (n - 1) / 2, &right);
    if (rv != 0) {
        tree_free(left);
        corral_free(mid);
        return rv;
    }
    mid->left = left;
    mid->right = right;
    fix_height(mid);
    *out = mid;
    return 0;
}

int corral_kv_restore(struct corral_kv *kv, const struct corral_rbuf *snap)
{
    if (snap == NULL || snap->len < SNAP_HEADER_BYTES + CRC_BYTES)
        return CORRAL_ECORRUPT;
    if (snap->data[0] != SNAP_VERSION)
        return CORRAL_EVERSION;
    size_t body = snap->len - CRC_BYTES;
    struct reader trailer = {snap->data + body, CRC_BYTES};
    uint64_t crc, applied, count;
    if (snap->len > CORRAL_KV_SNAPSHOT_BYTES_MAX || !get_le(&trailer, CRC_BYTES, &crc) ||
        crc != corral_crc32c(0, snap->data, body))
        return CORRAL_ECORRUPT;
    struct loader l = {{snap->data + 1, body - 1}, 0, NULL, 0};
    get_le(&l.r, 8, &applied);
    get_le(&l.r, 8, &count);
    /* Bounds the work before any allocation: each item takes >= 17 bytes. */
    if (count > CORRAL_KV_KEYS_MAX || count * (SNAP_ITEM_OVERHEAD + 1) > l.r.left)
        return CORRAL_ECORRUPT;
    l.applied = applied;
    struct node *root;
    int rv = load_tree(&l, count, &root);
    if (rv == 0 && l.r.left != 0)
        rv = CORRAL_ECORRUPT;
    if (rv != 0) {
        tree_free(root);
        return rv;
    }
    tree_free(kv->root);
    kv->root = root;
    kv->count = count;
    kv->applied = applied;
    kv->snap_bytes = snap->len;
    return 0;
}
