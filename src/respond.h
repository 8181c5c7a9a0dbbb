/* respond.h - a request's answer queued on its MHD connection: orproxy's
 * own error, a local endpoint's reply, or upstream's answer (buffered, or
 * a stream read through relay.c).  Queuing is the commit point: the status
 * goes to the client and no retry follows.  Called from MHD's request
 * callback only (front.c). */
#ifndef ORP_RESPOND_H
#define ORP_RESPOND_H

#include <microhttpd.h>

#include "request.h"

/* r->local_status, code and message (or {"status":"ok"} for a 200). */
enum MHD_Result respond_local(struct request *r);
/* r->reply (local.c); MHD takes the text. */
enum MHD_Result respond_reply(struct request *r);
/* Upstream's status, relayed headers, and body or stream. */
enum MHD_Result respond_upstream(struct request *r);

#endif
