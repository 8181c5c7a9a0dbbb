/* server.h - the HTTP front: libmicrohttpd callbacks, routing, request
 * intake, local answers and the streaming reader. */
#ifndef ORP_SERVER_H
#define ORP_SERVER_H

#include "loop.h"
#include "request.h"

/* Creates w->mhd in external epoll mode on w->listen_fd.  0 or -1. */
int server_start(struct worker *w);

/* Make the request answer status/code/message from orproxy itself (before
 * commit) and wake its connection. */
void server_fail(struct request *r, unsigned status, const char *code, const char *msg);
/* A response (upstream status, headers, body or stream) is ready to queue. */
void server_response_ready(struct request *r);
/* More stream bytes or the end of the stream: wake the reader. */
void server_data_ready(struct request *r);
/* Shutdown: end this request now (error event or 503), no upstream left. */
void server_cancel(struct request *r, const char *why);
/* The upstream transfer of a request whose client hung up has ended (its
 * usage, if any, is in r->ui): end the request if MHD is done with it. */
void server_upstream_settled(struct request *r);
/* Once a second for each live request: a client that hung up while its
 * connection is suspended waiting for upstream is noticed here (MHD cannot
 * see it) and its connection closed; its upstream transfer is dropped, or,
 * for a non-streamed request upstream bills anyway, left to finish. */
void server_check_waiting(struct request *r);
/* Once a second: shut connections that have not sent a whole request within
 * limits.client_timeout_s (slow-loris), however steadily they trickle. */
void server_check_slow_clients(struct worker *w, int64_t now);

/* Frees r if nothing refers to it any more. */
void request_maybe_free(struct request *r);

#endif
