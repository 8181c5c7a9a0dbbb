/* upstream.h - one request's transfers to OpenRouter through the worker's
 * curl multi handle: building the forwarded request, reading the answer,
 * attempts and retry decisions before commit.  What it learns goes to the
 * response buffer (relay.h); a request whose client is gone is reported
 * through the request's ops->settled hook. */
#ifndef ORP_UPSTREAM_H
#define ORP_UPSTREAM_H

#include <curl/curl.h>

#include "loop.h"
#include "request.h"

/* A worker's curl side: its multi handle, driven by its loop, and its idle
 * easy handles. */
struct upstream_pool {
    CURLM *multi;
    struct loop *loop;
    /* Idle easy handles, reset, for reuse: [0] for plain transfers (curl's
     * default 16 KiB receive buffer), [1] for streams (UPSTREAM_STREAM_BUFFER).
     * curl allocates a handle's receive buffer at its first transfer and
     * keeps it, so a handle only ever serves one kind. */
    CURL *easy_pool[2][32];
    int n_easy_pool[2];
};

int upstream_pool_init(struct upstream_pool *p, struct loop *l);
void upstream_pool_destroy(struct upstream_pool *p);

/* Starts the first upstream attempt.  0 or -1 (the request has then been
 * failed locally: relay_fail). */
int upstream_start(struct request *r);
/* The client is gone or we are shutting down: stop the transfer and any
 * pending retry now. */
void upstream_abort(struct request *r);
/* Drops a pending retry only (it has not reached upstream: it costs nothing). */
void upstream_cancel_retry(struct request *r);
/* The client caught up: resume a paused transfer (loop turn only, never
 * inside a curl callback). */
void upstream_unpause(struct request *r);
/* Releases the easy handle and everything upstream-related. */
void upstream_free(struct request *r);

#endif
