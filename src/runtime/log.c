/* See log.h. */
#include "runtime/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int log_level = CORRAL_LOG_INFO;
static uint64_t log_node;
static char log_label[96]; /* "" : "node N" */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int corral_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void corral_log_setup(int level, uint64_t node_id)
{
    log_level = level;
    log_node = node_id;
    log_label[0] = '\0';
}

void corral_log_setup_label(int level, const char *label)
{
    log_level = level;
    snprintf(log_label, sizeof(log_label), "%s", label);
}

int corral_log_enabled(int level)
{
    return level <= log_level;
}

void corral_log(int level, const char *fmt, ...)
{
    if (level > log_level || level < 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_label[0] != '\0')
        fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", when, ts.tv_nsec / 1000000, level_names[level],
                log_label, msg);
    else
        fprintf(stderr, "%s.%03ldZ %-5s node %" PRIu64 ": %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], log_node, msg);
}
