/* worker.h - one worker thread: a loop (loop.h), a curl multi handle
 * (upstream.h) and an HTTP front (front.h), composed; plus its start, stop,
 * config hand-over and the systemd watchdog.  Threads, ownership and the
 * order of a pass are in doc/DESIGN.md. */
#ifndef ORP_WORKER_H
#define ORP_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "front.h"
#include "loop.h"
#include "upstream.h"

struct worker {
    int id;
    struct orp_config *cfg;      /* held; new requests use it */
    _Atomic(struct orp_config *) pending; /* a reload waiting to be adopted */
    unsigned max_connections;    /* this worker's share */
    atomic_llong heartbeat_ms;   /* last loop pass, for the watchdog */
    int listen_fd;
    pthread_t thread;

    struct loop loop;
    struct upstream_pool pool;
    struct front front;

    int64_t last_busy_ms;        /* monotonic ms of the last pass with live requests */
    int trimmed;                 /* malloc_trim done since then */
    int64_t next_tick;           /* monotonic ms of the next once-a-second scan */

    atomic_int stop_requested;   /* set by the main thread */
    int quiesced;
    int64_t stop_deadline;       /* monotonic ms for forced stop */
    int cancelled_all;

    struct worker *all;          /* every worker (worker 0 checks them for the watchdog) */
    int n_all;
    int64_t watchdog_ms;         /* 0 = no systemd watchdog */
    int64_t next_watchdog;
};

/* Sets up w (listen_fd, cfg, id and max_connections already filled in).
 * 0 or -1. */
int worker_init(struct worker *w);
void *worker_main(void *arg);
void worker_destroy(struct worker *w);
/* From the main thread: ask the worker to shut down gracefully. */
void worker_request_stop(struct worker *w);
/* From the main thread: new requests on w use cfg (a reference is
 * handed over); in-flight ones keep theirs. */
void worker_set_config(struct worker *w, struct orp_config *cfg);

#endif
