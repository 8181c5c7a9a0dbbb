/* upstream.h - one request's transfers to OpenRouter through the worker's
 * curl multi handle: building the forwarded request, reading the answer,
 * retry decisions before commit, SSE relay bookkeeping after. */
#ifndef ORP_UPSTREAM_H
#define ORP_UPSTREAM_H

#include <curl/curl.h>

#include "request.h"

/* Starts (or restarts, for a retry) the upstream transfer.  0 or -1 (the
 * request has then been failed locally). */
int upstream_start(struct request *r);
/* The loop saw CURLMSG_DONE for r (the handle is already removed). */
void upstream_transfer_done(struct request *r, CURLcode res);
/* The client is gone or we are shutting down: stop the transfer now. */
void upstream_abort(struct request *r);
/* Releases the easy handle and everything upstream-related. */
void upstream_free(struct request *r);

#endif
