/* Reference-counted immutable byte buffers. Entry payloads and snapshot
 * data are shared between the Raft log, outgoing messages and the batches
 * handed to the runtime without copying. Single-threaded. */
#ifndef CORRAL_UTIL_RBUF_H
#define CORRAL_UTIL_RBUF_H

#include <stddef.h>
#include <stdint.h>

struct corral_rbuf {
    uint32_t refs;
    uint32_t len;
    uint8_t data[];
};

/* A new buffer holding a copy of len bytes of data (data may be NULL when
 * len is 0, or NULL to leave the bytes uninitialised for the caller to
 * fill). One reference, owned by the caller. NULL on allocation failure. */
struct corral_rbuf *corral_rbuf_new(const void *data, uint32_t len);

/* Takes one more reference; returns b. b may be NULL. */
struct corral_rbuf *corral_rbuf_ref(struct corral_rbuf *b);

/* Drops one reference, freeing the buffer with the last. b may be NULL. */
void corral_rbuf_unref(struct corral_rbuf *b);

#endif
