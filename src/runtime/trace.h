/* A per-request trace for finding where a request's time goes (issue 14):
 * compiled in, off unless the environment names a file
 * (CORRAL_TRACE_FILE=PATH). When on, every stage below appends one
 * fixed-size record (stage, two values, CLOCK_MONOTONIC ns) to a buffer
 * allocated at start; the buffer is written to PATH as text, one
 * "stage a b t_ns" line each, when the node stops. When it is full,
 * later records are dropped (and counted in the file's first line), so
 * tracing never allocates or writes on the request path.
 *
 * CLOCK_MONOTONIC is one clock for every process of a machine, so the
 * files of a leader and its followers merge into one timeline
 * (bench/trace_breakdown.py does that). Records are keyed so the merge
 * needs no other state:
 *   HTTP_*           a = the HTTP request's sequence number on this node
 *   PROPOSE          a = log index, b = the request proposing it (0: none)
 *   READ             a = read id, b = the request asking for it
 *   READ_READY       a = read id, b = the index it must wait for
 *   WAL_WRITTEN,
 *   FSYNC_DONE       a = last index of the batch's entries (0: none),
 *                    b = entries in the batch
 *   SEND, RECV       a = message type << 32 | the peer, b = its index
 *                    (an append: the last entry's index, or prev index
 *                    with none; a response: the index it acknowledges)
 *   COMMIT           a = the new commit index
 *   APPLY            a = the applied index
 * Off, a trace point costs one predictable branch. */
#ifndef CORRAL_RUNTIME_TRACE_H
#define CORRAL_RUNTIME_TRACE_H

#include <stdbool.h>
#include <stdint.h>

enum corral_trace_stage {
    CORRAL_TRACE_HTTP_PARSE = 1, /* headers in: the request is created */
    CORRAL_TRACE_HTTP_DISPATCH,  /* body in: handed to the router */
    CORRAL_TRACE_HTTP_QUEUED,    /* the answer is ready */
    CORRAL_TRACE_HTTP_WRITTEN,   /* libmicrohttpd has sent it all */
    CORRAL_TRACE_PROPOSE,
    CORRAL_TRACE_READ,
    CORRAL_TRACE_READ_READY,
    CORRAL_TRACE_WAL_WRITTEN,
    CORRAL_TRACE_FSYNC_DONE,
    CORRAL_TRACE_SEND,
    CORRAL_TRACE_RECV,
    CORRAL_TRACE_COMMIT,
    CORRAL_TRACE_APPLY,
};

extern bool corral_trace_enabled;
/* The HTTP request being dispatched now (0 outside a dispatch): the node's
 * PROPOSE and READ records name it. */
extern uint64_t corral_trace_request;

/* Reads CORRAL_TRACE_FILE; returns 0, or -1 when it is set but the buffer
 * could not be allocated (tracing then stays off). */
int corral_trace_start(void);
void corral_trace_record(enum corral_trace_stage stage, uint64_t a, uint64_t b);
/* Writes the file (when on) and frees the buffer. */
void corral_trace_stop(void);

#define CORRAL_TRACE(stage, a, b)                                                                  \
    do {                                                                                           \
        if (corral_trace_enabled)                                                                  \
            corral_trace_record((stage), (a), (b));                                                \
    } while (0)

#endif
