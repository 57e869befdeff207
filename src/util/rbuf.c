/* Reference-counted immutable byte buffers. */
#include "util/rbuf.h"

#include <assert.h>
#include <string.h>

#include "util/mem.h"

struct corral_rbuf *corral_rbuf_new(const void *data, uint32_t len)
{
    struct corral_rbuf *b = corral_malloc(sizeof(*b) + (size_t)len);
    if (b == NULL)
        return NULL;
    b->refs = 1;
    b->len = len;
    if (data != NULL && len > 0)
        memcpy(b->data, data, len);
    return b;
}

struct corral_rbuf *corral_rbuf_ref(struct corral_rbuf *b)
{
    if (b != NULL) {
        assert(b->refs > 0 && b->refs < UINT32_MAX);
        b->refs++;
    }
    return b;
}

void corral_rbuf_unref(struct corral_rbuf *b)
{
    if (b == NULL)
        return;
    assert(b->refs > 0);
    if (--b->refs == 0)
        corral_free(b);
}
