/* Log lines on stderr: "2026-11-21T10:00:00.123Z info node 1: message"
 * ("member w1: ..." for `corral agent`). The level and the label are set
 * once at startup (before the loop or any thread runs). */
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
/* As corral_log_setup, with label ("member w1", at most 95 bytes kept) in
 * place of "node N". */
void corral_log_setup_label(int level, const char *label);
int corral_log_enabled(int level);
void corral_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
