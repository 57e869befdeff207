/* Messages for the CORRAL_E* codes. */
#include "corral.h"

static const char *const messages[] = {
    [CORRAL_OK] = "success",
    [CORRAL_ENOMEM] = "out of memory",
    [CORRAL_EINVAL] = "invalid argument",
    [CORRAL_ETOOBIG] = "length exceeds its limit",
    [CORRAL_ECORRUPT] = "corrupt or malformed data",
    [CORRAL_EVERSION] = "unknown format version",
    [CORRAL_ENOTLEADER] = "not the leader",
    [CORRAL_EBUSY] = "a conflicting operation is in progress",
    [CORRAL_ENOTFOUND] = "not found",
    [CORRAL_ECOMPACTED] = "log entry compacted",
    [CORRAL_EFULL] = "queue full",
    [CORRAL_EIO] = "I/O error",
    [CORRAL_ESHUTDOWN] = "shutting down",
    [CORRAL_ETIMEDOUT] = "timed out",
    [CORRAL_ELOST] = "proposal lost to a leader change",
};
_Static_assert(sizeof(messages) / sizeof(messages[0]) == CORRAL_ERRNO_MAX + 1,
               "one message per error code");

const char *corral_strerror(int err)
{
    if (err < 0 || err > CORRAL_ERRNO_MAX)
        return "unknown error";
    return messages[err];
}
