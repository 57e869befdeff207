/* What every fuzz target shares: the libFuzzer entry point's prototype and
 * the way a target reports a broken property. */
#ifndef CORRAL_FUZZ_REQUIRE_H
#define CORRAL_FUZZ_REQUIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken property: abort, so libFuzzer (or the replay driver) reports
 * the input. */
#define FUZZ_REQUIRE(cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#endif
