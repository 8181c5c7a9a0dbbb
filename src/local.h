/* local.h - the endpoints orproxy answers itself: /healthz, /readyz,
 * /metrics, /v1/key, /v1/usage.
 *
 * An answer is left in the request (r->reply, or the local error fields)
 * for the front to queue.  /v1/usage and /admin/v1/ (admin.h) are
 * answered off the worker threads: their SQLite work runs on the jobs
 * thread (jobs.h) and the answer comes back to the request's loop. */
#ifndef ORP_LOCAL_H
#define ORP_LOCAL_H

#include "request.h"

/* Answers r (route kind healthz, readyz, metrics, key, usage or admin).
 * 0: the answer is set; 1: it is being prepared (/v1/usage, /admin/v1/),
 * keep the connection suspended until relay_ready. */
int local_answer(struct request *r);

/* After the workers stopped: ends the jobs thread (a query under way
 * finishes first; queued ones are dropped). */
void local_shutdown(void);

#endif
