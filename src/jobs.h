/* jobs.h - work a worker thread must not do: the SQLite queries of
 * /v1/usage and of the admin API, and the admin API's writes.  One
 * background thread takes the jobs in order; each job is a copy of what it
 * needs (it never touches its request), and its answer is posted back to
 * the request's loop (loop_post), where the request is made ready.  A slow
 * ledger stalls only these jobs, never a worker's streams.
 *
 * The request is held (r->usage_pending, a reference like in_multi) from
 * jobs_submit until the answer is back on its loop. */
#ifndef ORP_JOBS_H
#define ORP_JOBS_H

#include <sys/queue.h>

#include "loop.h"
#include "request.h"

struct job {
    /* Set by the submitter: */
    void (*run)(struct job *j);  /* on the jobs thread: fills the answer below */
    void (*free_ctx)(void *ctx); /* or NULL */
    void *ctx;                   /* the job's own copy of its parameters */
    char *ledger_path;           /* a copy of the request's ledger.path */

    /* The answer: text (JSON, malloc'd; "" for no body) with status, or
     * NULL and an error (status, code, message). */
    unsigned status;
    char *text;
    const char *code;
    char err[256];

    /* Private: */
    struct request *r;           /* read and written on r's loop only */
    struct loop *loop;
    struct loop_task done;
    STAILQ_ENTRY(job) link;
};

/* A job for r with its parameters ctx (freed with free_ctx whatever
 * happens); NULL when out of memory (ctx freed). */
struct job *jobs_new(struct request *r, void (*run)(struct job *j), void *ctx,
                     void (*free_ctx)(void *ctx));
/* Queues j: 1, the answer will come (keep the connection suspended until
 * relay_ready); or 0 with r's error set (500) and j freed. */
int jobs_submit(struct job *j);

/* After the workers stopped: ends the thread (a job under way finishes
 * first; queued ones are dropped). */
void jobs_shutdown(void);

#endif
