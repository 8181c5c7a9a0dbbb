/* loop.h - a generic reactor, one per worker thread: epoll, timers,
 * deferred calls, a cross-thread wake, and the glue that drives a curl
 * multi handle with curl_multi_socket_action.
 *
 * It knows callbacks (fn, arg), not requests.  Everything here runs on the
 * loop's thread except loop_post() and loop_wake(), which any thread may
 * call.  The order of one pass is in doc/DESIGN.md ("The worker loop"). */
#ifndef ORP_LOOP_H
#define ORP_LOOP_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/queue.h>

/* A call to make soon on the loop's thread, embedded in its owner. */
struct loop_task {
    void (*fn)(void *arg);
    void *arg;
    int queued;
    STAILQ_ENTRY(loop_task) link;
};

/* A call to make at a monotonic instant, embedded in its owner. */
struct loop_timer {
    void (*fn)(void *arg);
    void *arg;
    int64_t at_ms;              /* != 0: armed */
    LIST_ENTRY(loop_timer) link;
};

/* A file descriptor in the epoll set. */
struct loop_fd {
    int fd;
    void (*fn)(void *arg, uint32_t events);
    void *arg;
};

struct loop_curl_src;

struct loop {
    int epfd;
    int wake_fd;                 /* eventfd: loop_wake() from any thread */
    struct loop_fd wake;
    uint64_t rng;

    STAILQ_HEAD(, loop_task) deferred;
    LIST_HEAD(, loop_timer) timers;
    unsigned n_timers;
    int64_t timers_due;          /* no timer is due before this (0: walk the list) */

    pthread_mutex_t post_lock;   /* guards posted: the one cross-thread queue */
    STAILQ_HEAD(, loop_task) posted;

    CURLM *multi;                /* attached with loop_attach_multi, or NULL */
    void (*curl_done)(CURL *easy, CURLcode res);
    int64_t curl_deadline;       /* monotonic ms, -1 = none */
    struct loop_curl_src **curl_src; /* by fd: curl sockets, registered lazily */
    int n_curl_src;
};

/* 0 or -1 (errno-style failure already logged). */
int loop_init(struct loop *l);
void loop_destroy(struct loop *l);

/* A pseudo-random number (xorshift64*): ids and jitter, not secrets. */
uint64_t loop_rand(struct loop *l);

int loop_add_fd(struct loop *l, struct loop_fd *f);

/* Runs t->fn(t->arg) on a later turn of the loop (once, however often it is
 * deferred before it runs). */
void loop_defer(struct loop *l, struct loop_task *t);
/* From any thread: the same, and wakes the loop. */
void loop_post(struct loop *l, struct loop_task *t);
/* From any thread: end the current wait early. */
void loop_wake(struct loop *l);

void loop_timer_set(struct loop *l, struct loop_timer *t, int64_t at_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline int loop_timer_armed(const struct loop_timer *t) { return t->at_ms != 0; }

/* Drive multi from this loop.  done(easy, res) is called for each finished
 * transfer, after the handle was removed from multi. */
void loop_attach_multi(struct loop *l, CURLM *multi, void (*done)(CURL *easy, CURLcode res));
/* CURLOPT_CLOSESOCKETFUNCTION for every easy handle (clientp: the loop). */
int loop_close_socket(void *clientp, curl_socket_t s);

/* One wait: due timers, then epoll_wait for at most max_ms (less when a
 * timer, curl's timer or deferred work is due sooner), fd callbacks, curl's
 * socket and timer actions, finished transfers.  Deferred calls are run by
 * loop_run_deferred(), which the owner calls where its pass wants them. */
void loop_poll(struct loop *l, int max_ms);
void loop_run_deferred(struct loop *l);

#endif
