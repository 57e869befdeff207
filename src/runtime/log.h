/* Log lines on stderr: "2026-11-21T10:00:00.123Z info node 1: message".
 * The level is set once at startup (before the loop runs). */
#ifndef CORRAL_RUNTIME_LOG_H
#define CORRAL_RUNTIME_LOG_H

#include <stdint.h>

enum corral_log_level {
    CORRAL_LOG_ERROR = 0,
    CORRAL_LOG_WARN = 1,
    CORRAL_LOG_INFO = 2,
    CORRAL_LOG_DEBUG = 3,
};

/* Parses "error", "warn", "info", "debug"; -1 when unknown. */
int corral_log_level_parse(const char *s);
void corral_log_setup(int level, uint64_t node_id);
int corral_log_enabled(int level);
void corral_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
