/* loop.h - one event loop per worker thread.
 *
 * Each worker owns an epoll fd, an MHD daemon in external epoll mode (its
 * epoll fd nested in ours), and a curl multi handle driven by
 * curl_multi_socket_action.  Nothing on the request path is shared
 * between workers: no locks, no cross-thread wake-ups except the stop
 * signal.  See DESIGN.md for the loop order. */
#ifndef ORP_LOOP_H
#define ORP_LOOP_H

#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "request.h"

struct conn_watch;

struct ev_src {
    int kind;         /* EV_MHD, EV_WAKE, EV_CURL */
    int fd;
    uint32_t events;  /* EV_CURL: what the epoll set has for fd (0: not in it) */
    int wanted;       /* EV_CURL: curl watches fd now */
};

struct worker {
    int id;
    struct orp_config *cfg;      /* held; new requests use it */
    _Atomic(struct orp_config *) pending; /* a reload waiting to be adopted */
    unsigned max_connections;    /* this worker's share */
    atomic_llong heartbeat_ms;   /* last loop pass, for the watchdog */
    int listen_fd;
    int epfd;
    int wake_fd;                 /* eventfd written by the main thread */
    struct ev_src mhd_src, wake_src;
    struct MHD_Daemon *mhd;
    CURLM *multi;
    int64_t curl_deadline;       /* monotonic ms, -1 = none */
    pthread_t thread;
    uint64_t rng;
    uint64_t seq;

    int64_t last_busy_ms;        /* monotonic ms of the last pass with live requests */
    int trimmed;                 /* malloc_trim done since then */
    int mhd_kick;                /* MHD has work: run it this pass */
    struct conn_watch *watches;  /* client connections (server.c, slow-loris guard) */
    struct ev_src **curl_src;    /* by fd: curl sockets, registered lazily */
    int n_curl_src;
    CURL *easy_pool[64];         /* idle easy handles, reset, for reuse */
    int n_easy_pool;

    struct request *deferred;    /* want resume / unpause */
    struct request *live;        /* every live request */
    unsigned n_live;
    unsigned n_retry_wait;
    unsigned n_awaited;          /* requests whose client hung up, kept for their bill */

    volatile int stop_requested; /* set by the main thread */
    int quiesced;
    int64_t stop_deadline;       /* monotonic ms for forced stop */
    int cancelled_all;
    int64_t next_ping_scan;      /* monotonic ms */
    struct worker *all;          /* every worker (worker 0 checks them for the watchdog) */
    int n_all;
    int64_t watchdog_ms;         /* 0 = no systemd watchdog */
    int64_t next_watchdog;
};

int64_t loop_now_ms(void);
int64_t loop_now_ns(void);
uint64_t loop_rand(struct worker *w);
/* An easy handle in its default state (reused when one is idle), and back. */
CURL *loop_easy_get(struct worker *w);
void loop_easy_put(struct worker *w, CURL *e);
/* CURLOPT_CLOSESOCKETFUNCTION for every easy handle (clientp: the worker). */
int loop_close_socket(void *clientp, curl_socket_t s);

/* Sets up w (listen_fd, cfg and id already filled in).  0 or -1. */
int worker_init(struct worker *w);
void *worker_main(void *arg);
void worker_destroy(struct worker *w);
/* From the main thread: ask the worker to shut down gracefully. */
void worker_request_stop(struct worker *w);
/* From the main thread: new requests on w use cfg (a reference is
 * handed over); in-flight ones keep theirs. */
void worker_set_config(struct worker *w, struct orp_config *cfg);

/* Loop services for the request code (worker thread only). */
void loop_defer(struct request *r);          /* process want_* flags soon */
void loop_retry_at(struct request *r, int64_t at_ms);
void loop_retry_cancel(struct request *r);

#endif
