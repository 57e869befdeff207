/* `corral agent`'s hooks (agent_impl.h): each hook the agent hands out runs
 * as `/bin/sh -c CMD` in a process group of its own, with the CORRAL_*
 * environment of docs/cli.md, stdin from /dev/null and stdout and stderr
 * shared with the agent. Its exit status goes back to the agent; past
 * --hook-timeout its whole group is killed. */
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np (glibc 2.34) */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli/agent_impl.h"
#include "corral.h"
#include "runtime/log.h"

extern char **environ;

/* The variables a hook gets; inherited ones of these names are dropped. */
static const char *const hook_vars[] = {
    "CORRAL_EVENT",          "CORRAL_MEMBER", "CORRAL_RESOURCE",     "CORRAL_RESOURCE_ID",
    "CORRAL_PARTITION",      "CORRAL_EPOCH",  "CORRAL_ROLE",         "CORRAL_COPY_FROM",
    "CORRAL_COPY_FROM_ADDR", "CORRAL_REASON", "CORRAL_LEASE_END_MS", "CORRAL_HOOK_START_MS",
};
#define HOOK_VARS (sizeof(hook_vars) / sizeof(hook_vars[0]))
/* The longest value: an address (260 bytes) and the name. */
#define HOOK_VAR_BYTES_MAX 320

static bool ours(const char *entry)
{
    for (size_t i = 0; i < HOOK_VARS; i++) {
        size_t len = strlen(hook_vars[i]);
        if (strncmp(entry, hook_vars[i], len) == 0 && entry[len] == '=')
            return true;
    }
    return false;
}

struct hook_env {
    char vars[HOOK_VARS][HOOK_VAR_BYTES_MAX];
    char **envp; /* malloc'd: the inherited entries, then vars */
};

static int env_build(struct host *x, const struct corral_agent_hook *h, struct hook_env *env)
{
    const struct agent_name *res = agent_names_find(&x->resources, h->resource);
    const struct agent_name *from =
        h->from != CORRAL_AGENT_NONE ? agent_names_find(&x->members, h->from) : NULL;
    bool primary = h->kind == CORRAL_AGENT_ACQUIRE || h->kind == CORRAL_AGENT_RELEASE;
    const char *values[HOOK_VARS] = {0};
    char resource_id[16], partition[16], epoch[24], lease_end[24], start[24];
    snprintf(resource_id, sizeof(resource_id), "%" PRIu32, h->resource);
    snprintf(partition, sizeof(partition), "%" PRIu32, h->partition);
    snprintf(epoch, sizeof(epoch), "%" PRIu64, h->epoch);
    snprintf(lease_end, sizeof(lease_end), "%" PRIu64, corral_agent_lease_end(x->agent));
    snprintf(start, sizeof(start), "%" PRIu64, agent_now_ms());
    values[0] = agent_event_name(h->kind);
    values[1] = x->o->name;
    values[2] = res != NULL ? res->name : "";
    values[3] = resource_id;
    values[4] = partition;
    values[5] = epoch;
    values[6] = primary ? "primary" : "replica";
    values[7] = from != NULL ? from->name : "";
    values[8] = from != NULL ? from->addr : "";
    values[9] = h->kind == CORRAL_AGENT_RELEASE ? agent_reason_name(h->reason) : NULL;
    values[10] = lease_end;
    values[11] = start;
    size_t n = 0;
    while (environ != NULL && environ[n] != NULL)
        n++;
    env->envp = malloc((n + HOOK_VARS + 1) * sizeof(char *));
    if (env->envp == NULL)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!ours(environ[i]))
            env->envp[k++] = environ[i];
    for (size_t i = 0; i < HOOK_VARS; i++) {
        if (values[i] == NULL)
            continue;
        snprintf(env->vars[i], sizeof(env->vars[i]), "%s=%s", hook_vars[i], values[i]);
        env->envp[k++] = env->vars[i];
    }
    env->envp[k] = NULL;
    return 0;
}

/* Starts h's command; 0 with *pid, or an errno value. */
static int spawn(struct host *x, const struct corral_agent_hook *h, pid_t *pid)
{
    static struct hook_env env; /* the main thread's only; large */
    const char *cmd = x->o->hook != NULL ? x->o->hook : x->o->on[h->kind];
    char *script = NULL;
    char *argv[6] = {"/bin/sh", "-c", (char *)cmd, NULL, NULL, NULL};
    if (x->o->hook != NULL) {
        /* The event comes as $1 after any arguments written in CMD. */
        size_t len = strlen(cmd) + sizeof(" \"$@\"");
        if ((script = malloc(len)) == NULL)
            return ENOMEM;
        snprintf(script, len, "%s \"$@\"", cmd);
        argv[2] = script;
        argv[3] = "corral-hook";
        argv[4] = (char *)agent_event_name(h->kind);
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE); /* ignored here; ignoring would pass through exec */
    sigaddset(&dflt, SIGCHLD);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGINT);
    int rc = env_build(x, h, &env) != 0 ? ENOMEM : 0;
    if (rc == 0 && (rc = posix_spawn_file_actions_init(&fa)) == 0) {
        if ((rc = posix_spawnattr_init(&at)) == 0) {
            rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
            if (rc == 0)
                rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
            if (rc == 0)
                rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                       POSIX_SPAWN_SETSIGDEF);
            if (rc == 0)
                rc = posix_spawnattr_setpgroup(&at, 0);
            if (rc == 0)
                rc = posix_spawnattr_setsigmask(&at, &none);
            if (rc == 0)
                rc = posix_spawnattr_setsigdefault(&at, &dflt);
            if (rc == 0)
                rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, env.envp);
            posix_spawnattr_destroy(&at);
        }
        posix_spawn_file_actions_destroy(&fa);
    }
    free(env.envp);
    env.envp = NULL;
    free(script);
    return rc;
}

/* "acquire orders/3 epoch 7", with the reason of a release and the source
 * of a copy. */
static void describe(struct host *x, const struct corral_agent_hook *h, char *buf, size_t len)
{
    const struct agent_name *res = agent_names_find(&x->resources, h->resource);
    char rname[24];
    snprintf(rname, sizeof(rname), "#%" PRIu32, h->resource);
    int n = snprintf(buf, len, "%s %s/%" PRIu32 " epoch %" PRIu64, agent_event_name(h->kind),
                     res != NULL ? res->name : rname, h->partition, h->epoch);
    if (n < 0 || (size_t)n >= len)
        return;
    if (h->kind == CORRAL_AGENT_RELEASE) {
        snprintf(buf + n, len - (size_t)n, " (%s)", agent_reason_name(h->reason));
    } else if (h->kind == CORRAL_AGENT_REPLICATE) {
        const struct agent_name *from = agent_names_find(&x->members, h->from);
        snprintf(buf + n, len - (size_t)n, " from %s",
                 h->from == CORRAL_AGENT_NONE ? "nothing (empty)"
                 : from != NULL               ? from->name
                                              : "?");
    }
}

static void done(struct host *x, const struct corral_agent_hook *h, int err, uint64_t start_ms)
{
    uint64_t now = agent_now_ms();
    char what[160], outcome[96];
    describe(x, h, what, sizeof(what));
    agent_err_text(err, x->o->hook_timeout_ms, outcome, sizeof(outcome));
    corral_log(err == 0 ? CORRAL_LOG_INFO : CORRAL_LOG_WARN, "hook %s: %s (%" PRIu64 " ms)", what,
               outcome, now - start_ms);
    int rv = corral_agent_hook_done(x->agent, h->id, err, now);
    if (rv != 0)
        corral_log(CORRAL_LOG_ERROR, "the agent refused hook %" PRIu64 "'s completion: %s", h->id,
                   corral_strerror(rv));
}

static void start(struct host *x, const struct corral_agent_hook *h)
{
    uint64_t now = agent_now_ms();
    pid_t pid;
    int rc = spawn(x, h, &pid);
    if (rc != 0) {
        corral_log(CORRAL_LOG_ERROR, "cannot start the %s hook: %s", agent_event_name(h->kind),
                   strerror(rc));
        done(x, h, CORRAL_EIO, now);
        return;
    }
    struct agent_run *r = &x->hooks.run[x->hooks.n_run++];
    *r = (struct agent_run){
        .pid = pid, .h = *h, .start_ms = now, .deadline_ms = now + x->o->hook_timeout_ms};
    if (h->kind == CORRAL_AGENT_RELEASE)
        x->hooks.n_releases++;
    if (corral_log_enabled(CORRAL_LOG_DEBUG)) {
        char what[160];
        describe(x, h, what, sizeof(what));
        corral_log(CORRAL_LOG_DEBUG, "hook %s: started, pid %ld", what, (long)pid);
    }
}

/* ---- Waiting hooks ---- */

static int fifo_push(struct agent_fifo *f, const struct corral_agent_hook *h)
{
    if (f->len == f->cap) {
        uint32_t cap = f->cap != 0 ? 2 * f->cap : 64;
        struct corral_agent_hook *v = malloc((size_t)cap * sizeof(*v));
        if (v == NULL)
            return -1;
        for (uint32_t i = 0; i < f->len; i++)
            v[i] = f->v[(f->head + i) % f->cap];
        free(f->v);
        f->v = v;
        f->cap = cap;
        f->head = 0;
    }
    f->v[(f->head + f->len++) % f->cap] = *h;
    return 0;
}

static bool fifo_pop(struct agent_fifo *f, struct corral_agent_hook *out)
{
    if (f->len == 0)
        return false;
    *out = f->v[f->head];
    f->head = (f->head + 1) % f->cap;
    f->len--;
    return true;
}

static bool room_for(const struct agent_hooks *k, uint8_t kind)
{
    if (kind == CORRAL_AGENT_RELEASE)
        return k->n_releases < AGENT_RELEASES_PARALLEL_MAX;
    return k->n_run - k->n_releases < AGENT_HOOKS_PARALLEL_MAX;
}

static void start_waiting(struct host *x)
{
    struct corral_agent_hook h;
    while (room_for(&x->hooks, CORRAL_AGENT_RELEASE) && fifo_pop(&x->hooks.releases, &h))
        start(x, &h);
    while (room_for(&x->hooks, CORRAL_AGENT_ACQUIRE) && fifo_pop(&x->hooks.others, &h))
        start(x, &h);
}

void agent_hooks_take(struct host *x)
{
    struct corral_agent_hook h;
    start_waiting(x);
    while (corral_agent_next_hook(x->agent, &h)) {
        if (x->o->hook == NULL && x->o->on[h.kind] == NULL) {
            /* No command for the event: it succeeds at once. */
            uint64_t now = agent_now_ms();
            int rv = corral_agent_hook_done(x->agent, h.id, 0, now);
            if (rv != 0)
                corral_log(CORRAL_LOG_ERROR, "the agent refused hook %" PRIu64 ": %s", h.id,
                           corral_strerror(rv));
            continue;
        }
        bool release = h.kind == CORRAL_AGENT_RELEASE;
        struct agent_fifo *f = release ? &x->hooks.releases : &x->hooks.others;
        if (f->len == 0 && room_for(&x->hooks, h.kind)) {
            start(x, &h);
        } else if (fifo_push(f, &h) != 0) {
            corral_log(CORRAL_LOG_ERROR, "out of memory queueing a hook");
            done(x, &h, CORRAL_ENOMEM, agent_now_ms());
        }
    }
}

static int outcome(const struct agent_run *r, int status)
{
    if (r->killed)
        return CORRAL_ETIMEDOUT;
    if (WIFEXITED(status))
        return WEXITSTATUS(status) == 0 ? 0 : AGENT_ERR_EXIT + WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return AGENT_ERR_SIGNAL + WTERMSIG(status);
    return CORRAL_EIO;
}

void agent_hooks_poll(struct host *x)
{
    struct agent_hooks *k = &x->hooks;
    uint64_t now = agent_now_ms();
    for (uint32_t i = 0; i < k->n_run;) {
        struct agent_run *r = &k->run[i];
        int status = 0;
        pid_t got = waitpid(r->pid, &status, WNOHANG);
        if (got == 0 || (got < 0 && errno == EINTR)) {
            if (!r->killed && now >= r->deadline_ms) {
                /* The whole group: the shell and whatever it started. */
                if (kill(-r->pid, SIGKILL) != 0)
                    kill(r->pid, SIGKILL);
                r->killed = true;
            }
            i++;
            continue;
        }
        struct agent_run run = *r;
        *r = k->run[--k->n_run];
        if (run.h.kind == CORRAL_AGENT_RELEASE)
            k->n_releases--;
        done(x, &run.h, got < 0 ? CORRAL_EIO : outcome(&run, status), run.start_ms);
    }
    start_waiting(x);
}

uint64_t agent_hooks_next_deadline(const struct host *x)
{
    uint64_t next = UINT64_MAX;
    for (uint32_t i = 0; i < x->hooks.n_run; i++)
        if (!x->hooks.run[i].killed && x->hooks.run[i].deadline_ms < next)
            next = x->hooks.run[i].deadline_ms;
    return next;
}

void agent_hooks_kill_all(struct host *x)
{
    for (uint32_t i = 0; i < x->hooks.n_run; i++)
        if (kill(-x->hooks.run[i].pid, SIGKILL) != 0)
            kill(x->hooks.run[i].pid, SIGKILL);
}

void agent_hooks_free(struct host *x)
{
    free(x->hooks.releases.v);
    free(x->hooks.others.v);
    memset(&x->hooks.releases, 0, sizeof(x->hooks.releases));
    memset(&x->hooks.others, 0, sizeof(x->hooks.others));
}
