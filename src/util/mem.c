/* Counting allocator wrappers and an out-of-memory injection hook. */
#include "util/mem.h"

#include <stdlib.h>

static uint64_t allocs;
static uint64_t fail_countdown;

static int should_fail(void)
{
    allocs++;
    if (fail_countdown == 0)
        return 0;
    return --fail_countdown == 0;
}

void *corral_malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *corral_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *corral_realloc(void *p, size_t size)
{
    return should_fail() ? NULL : realloc(p, size);
}

void corral_free(void *p)
{
    free(p);
}

uint64_t corral_mem_allocs(void)
{
    return allocs;
}

void corral_mem_fail_after(uint64_t n)
{
    fail_countdown = n;
}
