/* loop.c - the reactor: one epoll fd, timers, deferred calls, a
 * cross-thread wake (eventfd), and curl's socket and timer callbacks.
 *
 * curl sockets stay in the epoll set between transfers.  curl says
 * CURL_POLL_REMOVE each time a kept-alive upstream connection goes idle and
 * asks for it again when the next request reuses it; doing both in the
 * kernel would cost two epoll_ctl calls a request.  So REMOVE only marks
 * the socket unwanted: it leaves the set when an event arrives for it while
 * unwanted (an idle connection closed by upstream), or when curl closes it
 * (the kernel drops a closed descriptor from the set; loop_close_socket
 * forgets our record, so a new socket with the same number is added). */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct loop_curl_src {
    struct loop_fd f;            /* first: epoll's data.ptr is a struct loop_fd */
    struct loop *l;
    uint32_t events;             /* what the epoll set has for fd (0: not in it) */
    int wanted;                  /* curl watches fd now */
};

static void on_wake(void *arg, uint32_t events)
{
    struct loop *l = arg;
    uint64_t v;
    ssize_t rd = read(l->wake_fd, &v, sizeof v);
    (void)rd, (void)events;
}

int loop_init(struct loop *l)
{
    memset(l, 0, sizeof *l);
    l->epfd = l->wake_fd = -1;
    l->curl_deadline = -1;
    STAILQ_INIT(&l->deferred);
    STAILQ_INIT(&l->posted);
    LIST_INIT(&l->timers);
    pthread_mutex_init(&l->post_lock, NULL);
    if (getrandom(&l->rng, sizeof l->rng, 0) != sizeof l->rng || l->rng == 0)
        l->rng = (uint64_t)util_mono_ns() | 1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wake_fd < 0) {
        log_error("epoll/eventfd: %s", strerror(errno));
        return -1;
    }
    l->wake.fd = l->wake_fd;
    l->wake.fn = on_wake;
    l->wake.arg = l;
    return loop_add_fd(l, &l->wake);
}

void loop_destroy(struct loop *l)
{
    for (int i = 0; i < l->n_curl_src; i++)
        free(l->curl_src[i]);
    free(l->curl_src);
    l->curl_src = NULL;
    l->n_curl_src = 0;
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    l->epfd = l->wake_fd = -1;
    pthread_mutex_destroy(&l->post_lock);
}

uint64_t loop_rand(struct loop *l)
{
    uint64_t x = l->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int loop_add_fd(struct loop *l, struct loop_fd *f)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = f;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, f->fd, &ev) < 0) {
        log_error("epoll_ctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void loop_defer(struct loop *l, struct loop_task *t)
{
    if (t->queued)
        return;
    t->queued = 1;
    STAILQ_INSERT_TAIL(&l->deferred, t, link);
}

void loop_wake(struct loop *l)
{
    uint64_t one = 1;
    ssize_t wr = write(l->wake_fd, &one, sizeof one);
    (void)wr;
}

void loop_post(struct loop *l, struct loop_task *t)
{
    pthread_mutex_lock(&l->post_lock);
    STAILQ_INSERT_TAIL(&l->posted, t, link);
    pthread_mutex_unlock(&l->post_lock);
    loop_wake(l);
}

void loop_run_deferred(struct loop *l)
{
    STAILQ_HEAD(, loop_task) now = STAILQ_HEAD_INITIALIZER(now);
    struct loop_task *t;

    /* Calls deferred while these run wait for the next round. */
    STAILQ_CONCAT(&now, &l->deferred);
    while ((t = STAILQ_FIRST(&now)) != NULL) {
        STAILQ_REMOVE_HEAD(&now, link);
        t->queued = 0;
        t->fn(t->arg);
    }
}

void loop_timer_set(struct loop *l, struct loop_timer *t, int64_t at_ms)
{
    if (t->at_ms == 0) {
        LIST_INSERT_HEAD(&l->timers, t, link);
        l->n_timers++;
    }
    t->at_ms = at_ms > 0 ? at_ms : 1;
    if (t->at_ms < l->timers_due)
        l->timers_due = t->at_ms;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    if (t->at_ms != 0) {
        LIST_REMOVE(t, link);
        t->at_ms = 0;
        l->n_timers--;
    }
}

/* Runs due timers; returns ms until the next one, -1 if none.  The list is
 * walked only when one may be due: l->timers_due is a lower bound of every
 * timer's time (setting a timer lowers it; cancelling one leaves it, which
 * costs at most one early walk).  So a pass costs the same with one pending
 * retry as with thousands (a 429 storm at thousands of streams). */
static long run_timers(struct loop *l, int64_t now)
{
    struct loop_timer *t;
    int64_t next = INT64_MAX;

    if (LIST_EMPTY(&l->timers))
        return -1;
    if (now < l->timers_due)
        return (long)(l->timers_due - now);
again:
    LIST_FOREACH(t, &l->timers, link) {
        if (t->at_ms <= now) {
            loop_timer_cancel(l, t);
            t->fn(t->arg); /* may set or cancel timers: start over */
            goto again;
        }
    }
    LIST_FOREACH(t, &l->timers, link)
        if (t->at_ms < next)
            next = t->at_ms;
    l->timers_due = next;
    return next == INT64_MAX ? -1 : (long)(next - now);
}

static struct loop_curl_src *curl_src_for(struct loop *l, curl_socket_t s);

static void on_curl_socket(void *arg, uint32_t events)
{
    struct loop_curl_src *src = arg;
    struct loop *l = src->l;
    int flags = 0, running;

    if (!src->wanted) { /* an event for a socket curl no longer watches */
        if (src->events != 0)
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, src->f.fd, NULL);
        src->events = 0;
        return;
    }
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(l->multi, src->f.fd, flags, &running);
}

static struct loop_curl_src *curl_src_for(struct loop *l, curl_socket_t s)
{
    if (s < 0)
        return NULL;
    if (s >= l->n_curl_src) {
        int n = l->n_curl_src ? l->n_curl_src : 64;
        while (n <= s)
            n *= 2;
        struct loop_curl_src **t = realloc(l->curl_src, (size_t)n * sizeof *t);
        if (t == NULL)
            return NULL;
        memset(t + l->n_curl_src, 0, (size_t)(n - l->n_curl_src) * sizeof *t);
        l->curl_src = t;
        l->n_curl_src = n;
    }
    if (l->curl_src[s] == NULL) {
        struct loop_curl_src *src = calloc(1, sizeof *src);
        if (src == NULL)
            return NULL;
        src->f.fd = s;
        src->f.fn = on_curl_socket;
        src->f.arg = src;
        src->l = l;
        l->curl_src[s] = src;
    }
    return l->curl_src[s];
}

static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct loop *l = userp;
    struct loop_curl_src *src;
    struct epoll_event ev;
    (void)easy, (void)socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s >= 0 && s < l->n_curl_src && l->curl_src[s] != NULL)
            l->curl_src[s]->wanted = 0;
        return 0;
    }
    if ((src = curl_src_for(l, s)) == NULL)
        return -1;
    src->wanted = 1;
    memset(&ev, 0, sizeof ev);
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.ptr = &src->f;
    if (ev.events == src->events)
        return 0;
    if (src->events != 0 && epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev) == 0) {
        src->events = ev.events;
        return 0;
    }
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, s, &ev) < 0 &&
        (errno != EEXIST || epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev) < 0)) {
        log_error("epoll_ctl curl socket: %s", strerror(errno));
        src->events = 0;
        return -1;
    }
    src->events = ev.events;
    return 0;
}

int loop_close_socket(void *clientp, curl_socket_t s)
{
    struct loop *l = clientp;
    if (s >= 0 && s < l->n_curl_src && l->curl_src[s] != NULL) {
        l->curl_src[s]->events = 0;
        l->curl_src[s]->wanted = 0;
    }
    return close(s);
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct loop *l = userp;
    (void)multi;
    l->curl_deadline = timeout_ms < 0 ? -1 : util_mono_ms() + timeout_ms;
    return 0;
}

void loop_attach_multi(struct loop *l, CURLM *multi, void (*done)(CURL *easy, CURLcode res))
{
    l->multi = multi;
    l->curl_done = done;
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, l);
}

static void drain_curl(struct loop *l)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode res = msg->data.result;
        CURL *easy = msg->easy_handle;
        curl_multi_remove_handle(l->multi, easy);
        l->curl_done(easy, res);
    }
}

static int min_timeout(int a, long b)
{
    if (b < 0)
        return a;
    if (b > 1000)
        b = 1000;
    return (a < 0 || b < a) ? (int)b : a;
}

void loop_poll(struct loop *l, int max_ms)
{
    struct epoll_event evs[256];
    int64_t now = util_mono_ms();
    int timeout = min_timeout(max_ms, run_timers(l, now)), running, n;

    /* curl's timer already due (a transfer was just added: curl asks for 0 ms): run it now
     * rather than after an epoll_wait(0) that finds nothing new. One syscall less for each
     * request at low concurrency (bench/README.md, "Profiles of the missed targets"). */
    if (l->multi != NULL && l->curl_deadline >= 0 && l->curl_deadline <= now) {
        l->curl_deadline = -1;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        drain_curl(l); /* a transfer it finished defers its request's task: wait 0 below */
        now = util_mono_ms();
    }
    if (l->multi != NULL && l->curl_deadline >= 0)
        timeout = min_timeout(timeout, l->curl_deadline > now ? l->curl_deadline - now : 0);
    if (!STAILQ_EMPTY(&l->deferred))
        timeout = 0;
    n = epoll_wait(l->epfd, evs, (int)(sizeof evs / sizeof evs[0]), timeout);
    if (n < 0 && errno != EINTR)
        log_error("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        struct loop_fd *f = evs[i].data.ptr;
        f->fn(f->arg, evs[i].events);
    }
    if (l->multi != NULL && l->curl_deadline >= 0 && util_mono_ms() >= l->curl_deadline) {
        l->curl_deadline = -1;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    pthread_mutex_lock(&l->post_lock);
    while (!STAILQ_EMPTY(&l->posted)) {
        struct loop_task *t = STAILQ_FIRST(&l->posted);
        STAILQ_REMOVE_HEAD(&l->posted, link);
        t->queued = 0;
        loop_defer(l, t);
    }
    pthread_mutex_unlock(&l->post_lock);
    if (l->multi != NULL)
        drain_curl(l);
}
