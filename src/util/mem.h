/* Allocation wrappers used by the core and util, so that benchmarks can
 * count allocations per operation. Single-threaded counters. */
#ifndef CORRAL_UTIL_MEM_H
#define CORRAL_UTIL_MEM_H

#include <stddef.h>
#include <stdint.h>

void *corral_malloc(size_t size);
void *corral_calloc(size_t n, size_t size);
void *corral_realloc(void *p, size_t size);
void corral_free(void *p);

/* Allocation calls (malloc, calloc, realloc) since the process started. */
uint64_t corral_mem_allocs(void);

/* Test hook: when set above zero, the n-th allocation from now fails
 * (returns NULL), to exercise out-of-memory paths. */
void corral_mem_fail_after(uint64_t n);

#endif
