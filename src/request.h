/* request.h - the state of one proxied request.
 *
 * Ownership: a request is created by the HTTP front on the first callback
 * for a connection and belongs to that connection's worker thread for its
 * whole life; no other thread touches it.  It is referenced from three
 * places: MHD's con_cls, the streaming reader's closure, and the easy
 * handle's CURLOPT_PRIVATE.  It is freed in exactly one place,
 * front_maybe_free(), once the client side is finished (MHD's completion
 * callback ran) and no upstream transfer, retry timer, deferred loop call
 * or usage query refers to it any more.  A request can outlive its
 * connection: a non-streamed request whose client hung up waits for its
 * upstream transfer, which upstream bills anyway (doc/DESIGN.md).
 *
 * The modules that work on it report to each other only through the
 * hooks in request_ops, which front.c fills in: nothing below front.c
 * calls back into it.
 *
 * Its life is one enum phase, moved only by request_phase() (request.c),
 * which checks each move against the table below; doc/DESIGN.md has the
 * same table.  The flags left in struct request are facts that do not
 * follow the life (each says why). */
#ifndef ORP_REQUEST_H
#define ORP_REQUEST_H

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdint.h>

#include "access.h"
#include "buf.h"
#include "loop.h"
#include "route.h"
#include "sse.h"
#include "usage.h"

struct front;
struct orp_config;

/* A request's life.  Allowed moves (anything else is a bug):
 *
 *   RECEIVING  -> WAITING     the body is in; admitted and sent upstream, or
 *                             the /v1/usage query started (front.c dispatch)
 *   RECEIVING  -> READY       an answer before dispatch: upstream_start
 *                             failed, or a shutdown during the upload
 *   RECEIVING  -> RESPONDING  refused or answered at once (respond.c)
 *   WAITING    -> READY       an answer or a stream's start (relay_ready)
 *   WAITING    -> GONE        the client hung up while suspended; its
 *                             transfer is dropped (front.c check_waiting)
 *   WAITING    -> AWAITED     the same for a non-streamed request already
 *                             upstream: its transfer runs on for the bill
 *   READY      -> RESPONDING  the answer is queued: the commit point
 *   READY      -> GONE        the client hung up before the queue
 *   RECEIVING, WAITING, READY, RESPONDING, GONE, AWAITED -> FINISHED
 *                             logged and recorded (front.c request_end)
 *
 * FINISHED is final: the request waits there for its last reference
 * (transfer, timer, deferred task, usage query) and is freed.  An answer
 * made ready in GONE, AWAITED or FINISHED is dropped (relay_ready leaves
 * the phase alone): nobody reads it. */
enum phase {
    PHASE_RECEIVING,   /* head accepted; the body is arriving */
    PHASE_WAITING,     /* dispatched, connection suspended: upstream attempts
                          and retries, or the usage query; nothing committed */
    PHASE_READY,       /* an answer is ready: resume and queue it */
    PHASE_RESPONDING,  /* committed: the answer or the stream goes out; no retry */
    PHASE_GONE,        /* the client hung up before the commit; its transfer
                          was dropped; MHD closes the connection */
    PHASE_AWAITED,     /* the client hung up before the commit; the transfer
                          of this non-streamed request runs on for its bill */
    PHASE_FINISHED,    /* logged and recorded; waiting for the last reference */
};

struct request;
/* Moves r to phase `to`: an error logged if the table above does not allow
 * it (and an abort in builds with ORP_STRICT_PHASES: the sanitizer build). */
void request_phase(struct request *r, enum phase to);
const char *request_phase_name(enum phase p);

struct upstream_pool;

/* How the lower modules (relay, upstream, local) reach the front. */
struct request_ops {
    /* Something for the client: resume its connection (if suspended) on
     * the next loop turn, and free the request if nothing holds it. */
    void (*wake)(struct request *r);
    /* The upstream transfer of a request whose client is gone has ended. */
    void (*settled)(struct request *r);
};

/* One upstream attempt's state: reset as a whole before each attempt. */
struct attempt {
    long status;                /* upstream's HTTP status, 0 before headers */
    int got_bytes;              /* any response byte arrived */
    int discard;                /* the body is dropped: a retry follows */
    long retry_delay;           /* ms, for that retry */
    int too_large;              /* response or event over its limit */
    int sends;                  /* request sends (PREREQFUNCTION calls) */
    int resend_blocked;         /* curl tried to re-send on its own */
};

struct hdr {            /* one upstream response header to relay */
    char *name;
    char *value;
};

struct request {
    struct front *fr;           /* the worker's front (front.c only) */
    struct loop *loop;
    struct upstream_pool *pool;
    const struct request_ops *ops;
    struct orp_config *cfg;     /* the config this request started with (held) */
    enum phase phase;           /* request_phase() only */
    struct MHD_Connection *conn; /* NULL once MHD's completion callback ran:
                                   MHD freed it (AWAITED or FINISHED then) */
    const struct route *route;
    char id[65];
    char method[8];
    char *url_query;            /* "?a=b" or NULL, forwarded as given */
    char *path;                 /* the URL path, kept for a route that
                                   dispatches on it (/admin/v1/), or NULL */

    /* client side */
    buf_t body;                 /* request body as received */
    uint64_t body_seen;         /* body bytes received, kept or not */
    uint64_t body_charged;      /* body bytes reserved against the process-wide cap */
    unsigned local_status;      /* != 0: answer this local error */
    const char *local_code;
    char *local_msg;
    long local_retry_after;     /* Retry-After seconds on a local 429/402 */
    char *reply;                /* a local endpoint's answer body (local.c), or NULL */
    const char *reply_ctype;
    unsigned reply_status;
    int usage_pending;          /* a background job (jobs.h: /v1/usage,
                                   /admin/v1/) holds the request: a
                                   reference, like in_multi; it outlives the
                                   WAITING phase if the client hangs up */
    char *model;                /* the request's "model", if any */
    char **models;              /* its "models" fallback list (n_models entries) */
    size_t n_models;
    int stream_req;             /* the request asked for "stream": true (a
                                   fact of the request, not of its life) */
    char *user;                 /* the request's "user" field, if any */
    int client;                 /* index in cfg->clients, -1 = anonymous */
    struct access_grant grant;  /* limits/budget held until the end */
    long max_tokens;            /* the request's max_tokens, 0 if absent */
    char *up_key;               /* upstream key for this request (secret, owned) */
    int64_t t_wall_ms;          /* unix ms at start, for the ledger */
    size_t est_chars;           /* generated text relayed (for estimates) */

    /* upstream side */
    CURL *easy;
    struct curl_slist *up_headers;
    int in_multi;               /* easy is added to the worker's multi: handle
                                   ownership, a reference that holds the
                                   request (it spans WAITING..AWAITED) */
    int attempts;
    struct attempt at;
    char *up_ctype;
    char *up_retry_after;
    char *gen_id;
    struct hdr *rhdrs;          /* headers to relay */
    size_t n_rhdrs, cap_rhdrs;
    int curl_result;            /* last transfer result (CURLcode) */

    /* relay */
    buf_t out;                  /* bytes for the client not yet handed to MHD */
    sse_parser sse;
    size_t ready;               /* head bytes of out that may go to the client:
                                   out = [ready][partial event held back] */
    /* Facts beside the phase: */
    int streaming;              /* the kind of the answer, SSE relayed event
                                   by event; set before the commit, kept after */
    int suspended;              /* mirrors MHD's own connection state (MHD
                                   resume on a running connection is
                                   undefined); it flips within WAITING and
                                   RESPONDING alike */
    int paused;                 /* curl transfer paused: backpressure inside
                                   RESPONDING (or READY) */
    int upstream_done;          /* the upstream side is over (answer complete,
                                   failed or aborted): before the commit for
                                   a buffered answer, after it for a stream,
                                   at any phase on abort; the stream reader's
                                   end of stream */
    int saw_done;               /* "[DONE]" seen: a fact about the stream */
    int saw_error_event;        /* upstream sent an error event: the same */
    int cut_short;              /* the client left a committed answer before
                                   it had all of it (set on leaving RESPONDING;
                                   leaving any earlier phase is a cancel anyway) */
    unsigned status;            /* status sent to the client */
    struct usage_info ui;       /* usage, served model, finish reason */

    /* timing, monotonic ns */
    int64_t t_start, t_first, t_end;
    int64_t last_relay_ms;      /* last stream byte queued for the client */

    /* loop bookkeeping: what the next task run does, not a phase */
    int want_resume, want_unpause;
    struct loop_task task;      /* resume / unpause / free, on the loop */
    struct loop_timer retry;    /* armed: waiting for the next attempt */
    TAILQ_ENTRY(request) link;  /* the front's list of live requests */
};

#endif
