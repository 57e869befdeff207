/* A request thread of `corral agent` (agent_impl.h): runs the blocking
 * HTTP requests the main thread hands it, one at a time, so that the main
 * thread never waits on the network. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/agent_impl.h"
#include "corral.h"

static void wake(int fd)
{
    /* The pipe is non-blocking: when it is full the main thread has a
     * wake-up pending already. */
    ssize_t n;
    do
        n = write(fd, "r", 1);
    while (n < 0 && errno == EINTR);
}

static void *req_main(void *arg)
{
    struct agent_req *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (!r->has_job)
            pthread_cond_wait(&r->cond, &r->mu);
        struct agent_req_job job = r->job;
        r->has_job = false;
        pthread_mutex_unlock(&r->mu);

        struct corral_client_response resp;
        r->client.timeout_ms = job.timeout_ms;
        if (job.rotate)
            corral_client_next_endpoint(&r->client);
        int rv = corral_client_request(&r->client, job.method, job.path,
                                       job.query[0] != '\0' ? job.query : NULL, job.body,
                                       job.body_len, &resp);
        free(job.body);

        pthread_mutex_lock(&r->mu);
        r->rv = rv;
        snprintf(r->err, sizeof(r->err), "%s", rv != 0 ? r->client.err : "");
        r->resp = resp;
        r->has_result = true;
        pthread_mutex_unlock(&r->mu);
        wake(r->wake_fd);
    }
    return NULL;
}

int agent_req_start(struct agent_req *r, const char *what, const char *endpoints,
                    const char *token_file, int wake_fd, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->what = what;
    r->wake_fd = wake_fd;
    int rv = corral_client_init(&r->client, endpoints, 1000);
    if (rv != 0) {
        snprintf(err, errlen, "%s", r->client.err);
        return rv;
    }
    if (token_file != NULL && (rv = corral_client_set_token_file(&r->client, token_file)) != 0) {
        snprintf(err, errlen, "%s", r->client.err);
        corral_client_close(&r->client);
        return rv;
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0 || pthread_cond_init(&r->cond, NULL) != 0 ||
        pthread_create(&r->thread, NULL, req_main, r) != 0) {
        snprintf(err, errlen, "cannot start the %s thread", what);
        corral_client_close(&r->client);
        return CORRAL_EIO;
    }
    r->started = true;
    return 0;
}

void agent_req_submit(struct agent_req *r, struct agent_req_job *job)
{
    pthread_mutex_lock(&r->mu);
    r->job = *job;
    r->has_job = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->mu);
    job->body = NULL;
    r->busy = true;
}

bool agent_req_take(struct agent_req *r, int *rv, char *err, size_t errlen,
                    struct corral_client_response *resp)
{
    if (!r->busy)
        return false;
    pthread_mutex_lock(&r->mu);
    bool ready = r->has_result;
    if (ready) {
        *rv = r->rv;
        snprintf(err, errlen, "%s", r->err);
        *resp = r->resp;
        memset(&r->resp, 0, sizeof(r->resp));
        r->has_result = false;
    }
    pthread_mutex_unlock(&r->mu);
    if (ready)
        r->busy = false;
    return ready;
}
