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
 * calls back into it. */
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
struct upstream_pool;
struct request;

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
    struct MHD_Connection *conn; /* NULL once client_done: MHD freed it */
    const struct route *route;
    char id[65];
    char method[8];
    char *url_query;            /* "?a=b" or NULL, forwarded as given */

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
    int usage_pending;          /* a /v1/usage query holds the request */
    char *model;                /* the request's "model", if any */
    char **models;              /* its "models" fallback list (n_models entries) */
    size_t n_models;
    int stream_req;             /* the request asked for "stream": true */
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
    int in_multi;               /* easy is added to the worker's multi */
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
    int streaming;              /* response is relayed as SSE */
    int resp_ready;             /* a response is ready to queue */
    int committed;              /* MHD_queue_response done */
    int suspended;              /* our own flag: MHD resume on a running
                                   connection is undefined */
    int paused;                 /* curl transfer paused (backpressure) */
    int upstream_done;          /* no more bytes will come from upstream */
    int saw_done;               /* "[DONE]" seen */
    int saw_error_event;        /* upstream sent an error event */
    int client_done;            /* MHD completion callback ran */
    int client_aborted;
    int client_gone;            /* hung up while suspended, before commit */
    int awaited;                /* client gone; upstream transfer kept for its bill */
    unsigned status;            /* status sent to the client */
    struct usage_info ui;       /* usage, served model, finish reason */

    /* timing, monotonic ns */
    int64_t t_start, t_first, t_end;
    int64_t last_relay_ms;      /* last stream byte queued for the client */

    /* loop bookkeeping */
    int want_resume, want_unpause;
    struct loop_task task;      /* resume / unpause / free, on the loop */
    struct loop_timer retry;    /* armed: waiting for the next attempt */
    TAILQ_ENTRY(request) link;  /* the front's list of live requests */
};

#endif
