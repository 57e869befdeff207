/* The options of `corral server run` as text, and its INI config file
 * (inih, read line by line so that every error names file:line). Split
 * from server_cmd.c so the config fuzz target (tests/fuzz/fuzz_config.c)
 * runs this very parser on a buffer. */
#ifndef CORRAL_CLI_SERVER_CONFIG_H
#define CORRAL_CLI_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define TEXT_MAX 4096
/* Leader health (docs/operations.md, "Leader health" says why these):
 * below the 300 ms election timeout, whose followers already replace a
 * leader stalled longer; far above a healthy disk's fsync (under 10 ms)
 * and a healthy loop's lag (under a tick); sustained for 3 s. */
#define LEADER_MAX_FSYNC_MS_DEFAULT 250
#define LEADER_MAX_LOOP_LAG_MS_DEFAULT 250
#define LEADER_MAX_APPLY_BACKLOG_DEFAULT 10000
#define LEADER_DEGRADED_MS_DEFAULT 3000
/* A shorter bound would hand leadership over for one slow batch. */
#define LEADER_DEGRADED_MS_MIN 100

/* Options as text: flags override the config file, then everything is
 * parsed and checked at once. */
struct server_opts {
    char id[32], data_dir[TEXT_MAX], cluster_addr[256], http_addr[256], peers[TEXT_MAX];
    char election_timeout_ms[32], heartbeat_ms[32], snapshot_entries[32], log_level[16];
    char request_timeout_ms[32], max_connections[32];
    char member_heartbeat_ms[32], lease_ms[32], max_drift_percent[32];
    char leader_max_fsync_ms[32], leader_max_loop_lag_ms[32], leader_max_apply_backlog[32];
    char leader_degraded_ms[32];
    char tls_cert[TEXT_MAX], tls_key[TEXT_MAX], tls_ca[TEXT_MAX], cacert[TEXT_MAX];
    char token_file[TEXT_MAX], auth_reads[16];
    char name[80], cluster_name[80], join[TEXT_MAX], voters[16], leave_on_stop[16],
        force_new_cluster[16];
    bool token_loose; /* the token file is readable by group or other */
    char err[512];
};

struct opt_def {
    const char *name; /* flag without "--", also the config file key */
    size_t offset;
    size_t size;
    const char *help;
};

/* Every option, flag and config key alike. */
#define SERVER_N_OPTS 30
extern const struct opt_def server_opt_defs[SERVER_N_OPTS];

/* The option named name (without "--"), or NULL. */
const struct opt_def *server_opt_find(const char *name);
/* Copies value into o's field for d; false with the reason in o->err
 * ("--NAME: empty value", "--NAME: value too long"). */
bool server_opt_set(struct server_opts *o, const struct opt_def *d, const char *value);

/* Reads the INI text of f (named file in messages) into o: keys outside
 * no section or [server], unknown keys, repeats, indented continuation
 * lines and bad values are errors, each as "FILE:LINE: why" in o->err;
 * a read error is "--config FILE: cannot read: why". */
bool server_config_read(struct server_opts *o, FILE *f, const char *file);
/* Opens file and reads it as server_config_read; "--config FILE: ..."
 * when it cannot be opened or is a directory. */
bool server_config_load(struct server_opts *o, const char *file);

#endif
