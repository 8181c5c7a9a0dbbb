/* jobs.c - see jobs.h.  Started on the first job. */
#include "jobs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "relay.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    STAILQ_HEAD(, job) jobs;
    pthread_t thread;
    int started, stopping;
} Q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, STAILQ_HEAD_INITIALIZER(Q.jobs), 0, 0, 0};

static void job_free(struct job *j)
{
    if (j->free_ctx != NULL)
        j->free_ctx(j->ctx);
    free(j->ledger_path);
    free(j->text);
    free(j);
}

static void *jobs_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&Q.lock);
    for (;;) {
        struct job *j;
        while (STAILQ_EMPTY(&Q.jobs) && !Q.stopping)
            pthread_cond_wait(&Q.cond, &Q.lock);
        if (Q.stopping)
            break;
        j = STAILQ_FIRST(&Q.jobs);
        STAILQ_REMOVE_HEAD(&Q.jobs, link);
        pthread_mutex_unlock(&Q.lock);
        j->run(j);
        loop_post(j->loop, &j->done);
        pthread_mutex_lock(&Q.lock);
    }
    pthread_mutex_unlock(&Q.lock);
    return NULL;
}

/* On the request's loop: the answer is in. */
static void job_done(void *arg)
{
    struct job *j = arg;
    struct request *r = j->r;

    r->usage_pending = 0;
    if (j->text != NULL) {
        r->reply = j->text;
        j->text = NULL;
        r->reply_status = j->status ? j->status : 200;
        r->reply_ctype = "application/json";
    } else {
        relay_set_error(r, j->status ? j->status : 500, j->code ? j->code : "ledger_unavailable",
                        "%s", j->err[0] ? j->err : "out of memory");
    }
    job_free(j);
    relay_ready(r);
}

struct job *jobs_new(struct request *r, void (*run)(struct job *j), void *ctx,
                     void (*free_ctx)(void *ctx))
{
    struct job *j = calloc(1, sizeof *j);

    if (j == NULL || (j->ledger_path = strdup(r->cfg->ledger_path)) == NULL) {
        if (free_ctx != NULL)
            free_ctx(ctx);
        free(j);
        return NULL;
    }
    j->run = run;
    j->ctx = ctx;
    j->free_ctx = free_ctx;
    j->r = r;
    j->loop = r->loop;
    j->done.fn = job_done;
    j->done.arg = j;
    return j;
}

int jobs_submit(struct job *j)
{
    struct request *r = j->r;
    int ok = 1;

    pthread_mutex_lock(&Q.lock);
    if (!Q.started && !Q.stopping)
        Q.started = pthread_create(&Q.thread, NULL, jobs_thread, NULL) == 0;
    if (Q.started && !Q.stopping)
        STAILQ_INSERT_TAIL(&Q.jobs, j, link);
    else
        ok = 0;
    pthread_cond_signal(&Q.cond);
    pthread_mutex_unlock(&Q.lock);
    if (!ok) {
        job_free(j);
        relay_set_error(r, 500, "ledger_unavailable", "the query could not be started");
        return 0;
    }
    r->usage_pending = 1;
    return 1;
}

void jobs_shutdown(void)
{
    struct job *j;

    pthread_mutex_lock(&Q.lock);
    Q.stopping = 1;
    pthread_cond_signal(&Q.cond);
    pthread_mutex_unlock(&Q.lock);
    if (Q.started)
        pthread_join(Q.thread, NULL);
    Q.started = 0;
    while ((j = STAILQ_FIRST(&Q.jobs)) != NULL) {
        STAILQ_REMOVE_HEAD(&Q.jobs, link);
        job_free(j);
    }
}
