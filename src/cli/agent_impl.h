/* `corral agent`: the host that runs the pure member agent (core/agent.h)
 * against the coordinators over HTTP (docs/api.md, "Members, resources and
 * partitions") and runs its hooks as commands. Internal to src/cli/agent_*:
 * agent_cmd.c parses the flags, agent_host.c owns the loop and the
 * protocol, agent_req.c the HTTP threads, agent_view.c the JSON of views
 * and heartbeats, agent_hooks.c the hook processes.
 *
 * Threads. The main thread owns the agent, the hooks and every decision:
 * the agent is not thread-safe and only the main thread calls it. Three
 * request threads (agent_req) each run one blocking HTTP request at a time
 * for it, with their own corral_client: one for heartbeats (never held up
 * by a slow write, so that a lease is renewed on time), one for the
 * registration and the drain (Raft writes, which may take seconds), and
 * one for the blocking assignment watch. A thread hands its answer back
 * through its own mutex-protected slot and a byte on the main thread's
 * wake pipe; signals (SIGTERM, SIGINT, SIGCHLD) arrive on the same pipe.
 * The clock everywhere is CLOCK_MONOTONIC in milliseconds. */
#ifndef CORRAL_CLI_AGENT_IMPL_H
#define CORRAL_CLI_AGENT_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "cli/client.h"
#include "core/agent.h"
#include "core/state.h"

/* Indexed by enum corral_agent_hook_kind; 0 is unused. */
#define AGENT_HOOK_KINDS 5
/* Hooks other than releases running at once; more wait their turn. */
#define AGENT_HOOKS_PARALLEL_MAX 16u
/* Releases running at once. A release never waits behind another kind of
 * hook (stopping is what makes the lease safe), but a lost lease over
 * thousands of partitions must not start thousands of processes at once:
 * past this many, releases wait for one another, ahead of everything. */
#define AGENT_RELEASES_PARALLEL_MAX 256u
#define AGENT_RUNNING_MAX (AGENT_HOOKS_PARALLEL_MAX + AGENT_RELEASES_PARALLEL_MAX)
/* Progress reports carried by one heartbeat (about 100 bytes each in the
 * body); the rest go with the next ones (agent.h A7). */
#define AGENT_REPORTS_PER_HEARTBEAT_MAX 4096u
/* Names kept by id (resources, members). Ids are never reused, so the
 * table only grows; past this it starts again from the views that follow
 * (state.h allows 1,024 resources and 4,096 members at once). */
#define AGENT_NAMES_MAX 16384u

/* Hook outcomes as the agent gets them (hook_done's err): 0 ok,
 * CORRAL_ETIMEDOUT (killed at --hook-timeout), CORRAL_EIO (could not be
 * started), else one of these plus the exit status or signal. */
#define AGENT_ERR_EXIT 0x100
#define AGENT_ERR_SIGNAL 0x200

struct agent_opts {
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    const char *coordinators;
    char addr[CORRAL_STATE_ADDR_BYTES_MAX + 1];
    char zone[CORRAL_STATE_ZONE_BYTES_MAX + 1];
    uint32_t weight;
    char *meta_json;                  /* the --meta object, compact; malloc'd */
    const char *on[AGENT_HOOK_KINDS]; /* --on-EVENT commands; NULL: succeeds at once */
    const char *hook;                 /* --hook: one command for every event; or NULL */
    uint64_t hook_timeout_ms;
    bool drain_on_stop;
    uint64_t drain_timeout_ms;
    const char *lease_file; /* --lease-file, or NULL */
    const char *token_file; /* --token-file or $CORRAL_TOKEN_FILE, or NULL */
    int log_level;
};

/* Runs until stopped; returns a CORRAL_EXIT_* code. */
int corral_agent_host_run(const struct agent_opts *o);

uint64_t agent_now_ms(void);
/* "acquire", "release", "replicate", "drop" (or "?"). */
const char *agent_event_name(uint8_t kind);
/* "handoff", "lease_lost", "dropped", "shutdown" (or ""). */
const char *agent_reason_name(uint8_t reason);
/* A hook outcome (AGENT_ERR_*, CORRAL_E*) as text: "exit 3", ... */
void agent_err_text(int err, uint64_t timeout_ms, char *buf, size_t len);

/* ---- agent_req.c: one HTTP request at a time on a thread ---- */

struct agent_req_job {
    const char *method; /* a string constant */
    char path[192];
    char query[64]; /* "" for none */
    char *body;     /* malloc'd, or NULL; the thread frees it */
    size_t body_len;
    long timeout_ms;
    bool rotate; /* first move to the next endpoint (corral_client_next_endpoint) */
};

struct agent_req {
    const char *what; /* for log lines */
    struct corral_client client;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int wake_fd;
    bool started;
    /* Under mu. */
    bool has_job;
    bool has_result;
    struct agent_req_job job;
    int rv;
    char err[sizeof(((struct corral_client *)0)->err)];
    struct corral_client_response resp;
    /* The main thread's only. */
    bool busy; /* submitted and not taken back yet */
    uint64_t started_ms;
};

/* Sets up r's client (0, or corral_client_init's error with the reason in
 * err) and starts its thread (CORRAL_EIO). Signals must be blocked in the
 * calling thread, so that the new thread inherits the mask. */
int agent_req_start(struct agent_req *r, const char *what, const char *endpoints,
                    const char *token_file, int wake_fd, char *err, size_t errlen);
/* Hands the thread a job (r must not be busy); the job's body moves. */
void agent_req_submit(struct agent_req *r, struct agent_req_job *job);
/* The answer of the job submitted, once there: true, with rv 0 and the
 * answer in *resp (the caller frees it), or rv nonzero and why in err. */
bool agent_req_take(struct agent_req *r, int *rv, char *err, size_t errlen,
                    struct corral_client_response *resp);

/* ---- agent_view.c: names, views and heartbeat bodies ---- */

struct agent_name {
    uint32_t id;
    char name[CORRAL_STATE_NAME_BYTES_MAX + 1];
    char addr[CORRAL_STATE_ADDR_BYTES_MAX + 1]; /* members only */
};

/* Sorted by id. */
struct agent_names {
    struct agent_name *v;
    uint32_t n, cap;
};

const struct agent_name *agent_names_find(const struct agent_names *m, uint32_t id);
void agent_names_free(struct agent_names *m);

/* A desired set as it came: its index and entries (malloc'd). */
struct agent_view {
    uint64_t index;
    struct corral_agent_entry *e;
    uint32_t n;
};

/* Parses "partitions" (a JSON array of watch entries) into v->e, v->n and
 * notes the resource and member names in the tables. 0, or -1 with why in
 * err, v left empty: one bad entry refuses the whole set (agent.h A9). */
int agent_view_parse(const json_t *partitions, struct agent_names *resources,
                     struct agent_names *members, struct agent_view *v, char *err, size_t errlen);

/* The heartbeat body {"index":N,"load":{},"progress":[...]} for reports
 * r[0..n), resources by name; malloc'd, NULL when out of memory. A report
 * whose resource has no known name is left out (and counted in
 * *unnamed). */
char *agent_heartbeat_body(uint64_t index, const struct corral_agent_report *r, uint32_t n,
                           const struct agent_names *resources, uint64_t hook_timeout_ms,
                           uint32_t *unnamed);

/* ---- agent_hooks.c: hook processes ---- */

/* A hook process running. */
struct agent_run {
    pid_t pid; /* also its process group */
    struct corral_agent_hook h;
    uint64_t start_ms;
    uint64_t deadline_ms;
    bool killed; /* past its deadline: SIGKILL sent */
};

/* Hooks handed out by the agent and waiting for room, in order. */
struct agent_fifo {
    struct corral_agent_hook *v;
    uint32_t head, len, cap;
};

struct agent_hooks {
    struct agent_run run[AGENT_RUNNING_MAX];
    uint32_t n_run;
    uint32_t n_releases; /* of n_run */
    struct agent_fifo releases, others;
};

struct host;

/* Takes every hook the agent queued: one without a command completes at
 * once, the others start or wait for room. Also starts waiting hooks that
 * now have room. Call after every agent call. */
void agent_hooks_take(struct host *x);
/* Reaps finished hook processes and kills those past their deadline;
 * each finished hook goes back to the agent (corral_agent_hook_done). */
void agent_hooks_poll(struct host *x);
/* The next hook deadline, UINT64_MAX when none. */
uint64_t agent_hooks_next_deadline(const struct host *x);
/* SIGKILL to the process group of every running hook. */
void agent_hooks_kill_all(struct host *x);
void agent_hooks_free(struct host *x);

/* ---- agent_host.c ---- */

/* Rate-limited log lines for a failure that repeats. */
struct agent_failing {
    uint32_t count;      /* consecutive failures */
    uint64_t logged_ms;  /* last logged */
    uint32_t suppressed; /* not logged since */
};

enum agent_phase {
    AGENT_RUN = 0,
    AGENT_DRAIN = 1, /* --drain-on-stop: drain asked, waiting for the set to empty */
    AGENT_STOP = 2,  /* corral_agent_shutdown: the releases run */
    AGENT_FINAL = 3, /* the last heartbeat, for the reports */
    AGENT_EXIT = 4,
};

enum agent_ctl_job {
    AGENT_CTL_NONE = 0,
    AGENT_CTL_REGISTER = 1,
    AGENT_CTL_DRAIN = 2,
};

struct host {
    const struct agent_opts *o;
    struct corral_agent *agent;
    int wake_r, wake_w;
    struct agent_req ctl, hb, watch;
    struct agent_names resources, members;
    struct agent_hooks hooks;
    /* The desired set in force (the entries of the last set_desired that
     * succeeded): what an answer that says "unchanged" stands for. */
    struct corral_agent_entry *inforce;
    uint32_t n_inforce;
    uint32_t reports_seen; /* pending reports after the last settle */
    /* Registration. */
    char *reg_body;       /* the PUT body, built once */
    bool registered;      /* the last PUT succeeded, no 404 or 409 since */
    bool ever_registered; /* the watch may start */
    uint64_t reg_at_ms;   /* the next attempt */
    struct agent_failing reg_fail;
    uint8_t ctl_job; /* enum agent_ctl_job in flight */
    bool ctl_rotate; /* the last write failed: the next starts at another node */
    /* Heartbeats. */
    uint32_t lease_ms;     /* the last granted (1000 before any) */
    uint32_t heartbeat_ms; /* the interval the leader asks for (250 before) */
    uint64_t hb_next_ms;   /* the next periodic heartbeat */
    bool hb_early;         /* a report waits: send at once */
    bool hb_rotate;        /* the last answer came from a node that could not serve */
    uint64_t hb_seq;       /* the one in flight */
    uint64_t hb_index;     /* the index it named */
    struct agent_failing hb_fail;
    struct agent_failing lease_file_fail;
    uint64_t lease_file_end; /* the lease end last written to --lease-file */
    /* The watch. */
    uint64_t watch_at_ms;
    uint64_t watch_index; /* the last index a watch answered */
    uint64_t watch_asked; /* the index the one in flight asked with */
    bool watch_rotate;
    struct agent_failing watch_fail;
    /* Stopping. */
    uint8_t phase; /* enum agent_phase */
    int signals_seen;
    bool drained; /* the drain POST was answered 200 */
    uint64_t drain_at_ms, drain_deadline_ms;
    bool final_sent;
    uint64_t final_deadline_ms;
    int exit_code;
};

#endif
