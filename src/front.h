/* front.h - a worker's HTTP front: the libmicrohttpd daemon in external
 * epoll mode, its callbacks, the header checks made before the body, the
 * upload and stream readers, the slow-loris guard, and the life of every
 * request from its first byte to its end (doc/DESIGN.md follows one). */
#ifndef ORP_FRONT_H
#define ORP_FRONT_H

#include <microhttpd.h>
#include <poll.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "guard.h"
#include "loop.h"
#include "request.h"
#include "upstream.h"

struct front {
    int id;                      /* the worker's, for log lines */
    struct orp_config *cfg;      /* new requests hold it (the worker owns this reference) */
    /* Called as each request starts, before it takes cfg: the worker swaps
     * in a config published since its pass began, so a client created or
     * revoked through the admin API counts from the very next request. */
    void (*adopt)(void *arg);
    void *adopt_arg;
    unsigned max_connections;    /* this worker's share */
    struct loop *loop;
    struct upstream_pool *pool;
    struct MHD_Daemon *mhd;
    struct loop_fd mhd_fd;       /* MHD's own epoll fd, nested in the loop's */
    int mhd_kick;                /* MHD has work: run it this pass */
    uint64_t seq;
    TAILQ_HEAD(, request) live;  /* every live request */
    unsigned n_live;
    unsigned n_awaited;          /* requests whose client hung up, kept for their bill */
    struct guard guard;          /* slow-loris guard over its connections */
    struct pollfd *wait_pfd;     /* check_waiting's poll set, reused each second */
    struct request **wait_req;   /* the request of each wait_pfd entry */
    size_t wait_cap;
};

/* Starts the daemon on listen_fd and watches it from f->loop.  0 or -1. */
int front_start(struct front *f, int listen_fd);
/* MHD_run when it has work or its timeout is due; returns ms until MHD's
 * next timeout (-1: none). */
void front_run(struct front *f, int force);
long front_timeout(struct front *f);
/* Once a second: stream keep-alives, clients that hung up while waiting
 * for upstream, connections that trickle their request (slow-loris). */
void front_tick(struct front *f, int64_t now_ms);
/* Graceful stop: accept no more connections. */
void front_quiesce(struct front *f);
/* Forced stop: end every live request now (error event or 503). */
void front_cancel_all(struct front *f, const char *why);
/* After the loop stopped: drop upstreams, close connections, stop MHD. */
void front_stop(struct front *f);

#endif
