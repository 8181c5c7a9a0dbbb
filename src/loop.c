/* loop.c - the per-worker event loop.
 *
 * One thread, one epoll fd.  In it: MHD's own epoll fd (MHD runs in
 * external mode and uses edge-triggered epoll inside, so MHD_run is called
 * on every pass), every socket curl asks us to watch (socket callback), and
 * an eventfd the main thread writes to ask for shutdown.  The wait time is
 * the smallest of curl's timer, MHD's timeout and the next retry.  Each
 * pass, in order: feed curl the ready sockets and an expired timer, drain
 * curl's finished transfers, start due retries, run the deferred work
 * (resume suspended connections, unpause transfers: both are unsafe or
 * wasteful inside callbacks), then MHD_run once. */
#include "loop.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "server.h"
#include "upstream.h"
#include "util.h"

enum { EV_MHD = 1, EV_WAKE, EV_CURL };

static void watchdog(struct worker *w, int64_t now);


int64_t loop_now_ns(void)
{
    return util_mono_ns();
}

int64_t loop_now_ms(void)
{
    return util_mono_ms();
}

uint64_t loop_rand(struct worker *w)
{
    /* xorshift64*: request ids and jitter, not secrets. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* curl sockets stay in the epoll set between transfers.  curl says
 * CURL_POLL_REMOVE each time a kept-alive upstream connection goes idle and
 * asks for it again when the next request reuses it; doing both in the
 * kernel would cost two epoll_ctl calls a request.  So REMOVE only marks
 * the socket unwanted: it leaves the set when an event arrives for it while
 * unwanted (an idle connection closed by upstream), or when curl closes it
 * (the kernel drops a closed descriptor from the set; loop_close_socket
 * forgets our record, so a new socket with the same number is added). */
static struct ev_src *curl_src_for(struct worker *w, curl_socket_t s)
{
    if (s < 0)
        return NULL;
    if (s >= w->n_curl_src) {
        int n = w->n_curl_src ? w->n_curl_src : 64;
        while (n <= s)
            n *= 2;
        struct ev_src **t = realloc(w->curl_src, (size_t)n * sizeof *t);
        if (t == NULL)
            return NULL;
        memset(t + w->n_curl_src, 0, (size_t)(n - w->n_curl_src) * sizeof *t);
        w->curl_src = t;
        w->n_curl_src = n;
    }
    if (w->curl_src[s] == NULL) {
        struct ev_src *src = calloc(1, sizeof *src);
        if (src == NULL)
            return NULL;
        src->kind = EV_CURL;
        src->fd = s;
        w->curl_src[s] = src;
    }
    return w->curl_src[s];
}

static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct worker *w = userp;
    struct ev_src *src;
    struct epoll_event ev;
    (void)easy;
    (void)socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s >= 0 && s < w->n_curl_src && w->curl_src[s] != NULL)
            w->curl_src[s]->wanted = 0;
        return 0;
    }
    if ((src = curl_src_for(w, s)) == NULL)
        return -1;
    src->wanted = 1;
    memset(&ev, 0, sizeof ev);
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.ptr = src;
    if (ev.events == src->events)
        return 0;
    if (src->events != 0 && epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) == 0) {
        src->events = ev.events;
        return 0;
    }
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev) < 0 &&
        (errno != EEXIST || epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) < 0)) {
        log_error("epoll_ctl curl socket: %s", strerror(errno));
        src->events = 0;
        return -1;
    }
    src->events = ev.events;
    return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl closes an upstream socket. */
int loop_close_socket(void *clientp, curl_socket_t s)
{
    struct worker *w = clientp;
    if (s >= 0 && s < w->n_curl_src && w->curl_src[s] != NULL) {
        w->curl_src[s]->events = 0;
        w->curl_src[s]->wanted = 0;
    }
    return close(s);
}

/* An event for a socket curl no longer watches: take it out of the set. */
static void curl_src_unwanted(struct worker *w, struct ev_src *src)
{
    if (src->events != 0)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, src->fd, NULL);
    src->events = 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct worker *w = userp;
    (void)multi;
    w->curl_deadline = timeout_ms < 0 ? -1 : loop_now_ms() + timeout_ms;
    return 0;
}

int worker_init(struct worker *w)
{
    struct epoll_event ev;

    if (getrandom(&w->rng, sizeof w->rng, 0) != sizeof w->rng || w->rng == 0)
        w->rng = (uint64_t)loop_now_ns() | 1;
    w->curl_deadline = -1;
    w->stop_deadline = -1;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->wake_fd < 0) {
        log_error("worker %d: epoll/eventfd: %s", w->id, strerror(errno));
        return -1;
    }
    w->multi = curl_multi_init();
    if (w->multi == NULL)
        return -1;
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    /* Keep enough idle upstream connections for the worker's share of
     * clients, so bursts reuse them instead of reconnecting. */
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 256L);

    if (server_start(w) < 0)
        return -1;
    w->mhd_kick = 1;

    memset(&ev, 0, sizeof ev);
    w->wake_src.kind = EV_WAKE;
    w->wake_src.fd = w->wake_fd;
    ev.events = EPOLLIN;
    ev.data.ptr = &w->wake_src;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev) < 0)
        return -1;
    w->mhd_src.kind = EV_MHD;
    w->mhd_src.fd = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd;
    ev.data.ptr = &w->mhd_src;
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->mhd_src.fd, &ev) < 0) {
        log_error("worker %d: cannot watch MHD epoll fd: %s", w->id, strerror(errno));
        return -1;
    }
    return 0;
}

/* Easy handles are reused: curl_easy_init and its cleanup cost more than
 * the whole proxying of a small request.  curl_easy_reset puts every option
 * back to its default, so nothing of the previous request (its key header
 * list, its callbacks' data) survives into the next. */
CURL *loop_easy_get(struct worker *w)
{
    if (w->n_easy_pool > 0)
        return w->easy_pool[--w->n_easy_pool];
    return curl_easy_init();
}

void loop_easy_put(struct worker *w, CURL *e)
{
    if (e == NULL)
        return;
    if (w->n_easy_pool < (int)(sizeof w->easy_pool / sizeof w->easy_pool[0])) {
        curl_easy_reset(e);
        w->easy_pool[w->n_easy_pool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

void loop_defer(struct request *r)
{
    struct worker *w = r->w;
    if (r->in_deferred)
        return;
    r->in_deferred = 1;
    r->next_deferred = w->deferred;
    w->deferred = r;
}

void loop_retry_at(struct request *r, int64_t at_ms)
{
    if (r->retry_at == 0)
        r->w->n_retry_wait++;
    r->retry_at = at_ms > 0 ? at_ms : 1;
}

void loop_retry_cancel(struct request *r)
{
    if (r->retry_at != 0) {
        r->retry_at = 0;
        r->w->n_retry_wait--;
    }
}

static void drain_curl(struct worker *w)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        struct request *r = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode res = msg->data.result;
        CURL *easy = msg->easy_handle;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(w->multi, easy);
        r->in_multi = 0;
        upstream_transfer_done(r, res);
    }
}

/* Runs due retries; returns ms until the next one, -1 if none. */
static long run_retries(struct worker *w, int64_t now)
{
    long next = -1;
    struct request *r, *nx;

    if (w->n_retry_wait == 0)
        return -1;
    for (r = w->live; r != NULL; r = nx) {
        nx = r->next;
        if (r->retry_at == 0)
            continue;
        if (r->retry_at <= now) {
            loop_retry_cancel(r);
            upstream_start(r);
        } else if (next < 0 || r->retry_at - now < next) {
            next = (long)(r->retry_at - now);
        }
    }
    return next;
}

static void run_deferred(struct worker *w)
{
    struct request *list = w->deferred, *r, *nx;

    w->deferred = NULL;
    for (r = list; r != NULL; r = nx) {
        nx = r->next_deferred;
        r->in_deferred = 0;
        r->next_deferred = NULL;
        if (r->want_unpause) {
            r->want_unpause = 0;
            if (r->paused && r->in_multi) {
                r->paused = 0;
                /* May call the write callback, which may pause again. */
                curl_easy_pause(r->easy, CURLPAUSE_CONT);
            }
        }
        if (r->want_resume) {
            r->want_resume = 0;
            if (r->suspended) {
                r->suspended = 0;
                MHD_resume_connection(r->conn);
                w->mhd_kick = 1;
            }
        }
        request_maybe_free(r);
    }
}

/* Graceful stop: stop accepting, let in-flight requests finish until the
 * deadline, then end the rest with an error. */
static int handle_stop(struct worker *w, int64_t now)
{
    if (!w->quiesced) {
        MHD_socket fd = MHD_quiesce_daemon(w->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
        w->quiesced = 1;
        w->stop_deadline = now + (int64_t)w->cfg->shutdown_timeout_s * 1000;
    }
    if (w->n_live == 0)
        return 1;
    if (now >= w->stop_deadline && !w->cancelled_all) {
        struct request *r, *nx;
        w->cancelled_all = 1;
        log_warn("worker %d: shutdown timeout: ending %u requests", w->id, w->n_live);
        for (r = w->live; r != NULL; r = nx) {
            nx = r->next;
            server_cancel(r, "orproxy is shutting down");
        }
        w->stop_deadline = now + 2000;
    } else if (now >= w->stop_deadline && w->cancelled_all) {
        return 1; /* clients that do not read cannot hold us forever */
    }
    return 0;
}

/* A suspended connection's disconnect is noticed only when we write to it
 * (DESIGN.md): during long upstream silence send a comment so a client
 * that went away surfaces, and its upstream is cancelled, within
 * stream.keepalive_s.
 * Only at an event boundary, so the comment never splits an event. */
static void send_keepalives(struct worker *w, int64_t now)
{
    static const char ping[] = ": ping\n\n";
    const int64_t every = (int64_t)w->cfg->stream_keepalive_s * 1000;
    struct request *r;

    for (r = w->live; r != NULL; r = r->next) {
        if (!r->streaming || r->upstream_done || r->client_done ||
            now - r->last_relay_ms < every || r->sse.total != r->sse.boundary)
            continue;
        if (buf_append(&r->out, ping, sizeof ping - 1) == 0) {
            r->ready += sizeof ping - 1;
            r->last_relay_ms = now;
            server_data_ready(r);
        }
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

void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[256];
    int running;

    log_batch_begin();
    for (;;) {
        int64_t now = loop_now_ms();
        int timeout = w->watchdog_ms > 0 && w->watchdog_ms / 4 < 1000 ? (int)(w->watchdog_ms / 4) : 1000;
        MHD_UNSIGNED_LONG_LONG mhd_to;
        int64_t mhd_due;
        long retry_next;

        struct orp_config *fresh = atomic_exchange(&w->pending, NULL);
        if (fresh != NULL) {
            config_release(w->cfg);
            w->cfg = fresh;
        }
        atomic_store(&w->heartbeat_ms, now);
        watchdog(w, now);
        if (w->stop_requested && handle_stop(w, now))
            break;

        /* Idle for 2 s after work: give freed memory back to the system
         * (glibc keeps it in its arenas otherwise; a burst of thousands of
         * streams would leave the daemon at its peak RSS for good). */
        if (w->n_live > 0) {
            w->last_busy_ms = now;
            w->trimmed = 0;
        } else if (!w->trimmed && now - w->last_busy_ms > 2000) {
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not glibc's: nothing to trim */
            malloc_trim(0);
#endif
            w->trimmed = 1;
        }
        if (now >= w->next_ping_scan) {
            send_keepalives(w, now);
            for (struct request *r = w->live; r != NULL; r = r->next)
                server_check_waiting(r);
            server_check_slow_clients(w, now);
            w->next_ping_scan = now + 1000;
        }
        retry_next = run_retries(w, now);
        timeout = min_timeout(timeout, retry_next);
        if (w->curl_deadline >= 0)
            timeout = min_timeout(timeout, w->curl_deadline > now ? w->curl_deadline - now : 0);
        mhd_due = INT64_MAX;
        if (MHD_get_timeout(w->mhd, &mhd_to) == MHD_YES) {
            timeout = min_timeout(timeout, mhd_to > 1000 ? 1000 : (long)mhd_to);
            mhd_due = now + (mhd_to > 1000 ? 1000 : (int64_t)mhd_to);
        }
        if (w->deferred != NULL)
            timeout = 0;

        log_flush();
        int n = epoll_wait(w->epfd, evs, (int)(sizeof evs / sizeof evs[0]), timeout);
        if (n < 0 && errno != EINTR) {
            log_error("worker %d: epoll_wait: %s", w->id, strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct ev_src *src = evs[i].data.ptr;
            if (src->kind == EV_CURL && !src->wanted) {
                curl_src_unwanted(w, src);
            } else if (src->kind == EV_CURL) {
                int flags = 0;
                if (evs[i].events & EPOLLIN)
                    flags |= CURL_CSELECT_IN;
                if (evs[i].events & EPOLLOUT)
                    flags |= CURL_CSELECT_OUT;
                if (evs[i].events & (EPOLLERR | EPOLLHUP))
                    flags |= CURL_CSELECT_ERR;
                curl_multi_socket_action(w->multi, src->fd, flags, &running);
            } else if (src->kind == EV_MHD) {
                w->mhd_kick = 1;
            } else if (src->kind == EV_WAKE) {
                uint64_t v;
                ssize_t rd = read(w->wake_fd, &v, sizeof v);
                (void)rd;
            }
        }
        if (w->curl_deadline >= 0 && loop_now_ms() >= w->curl_deadline) {
            w->curl_deadline = -1;
            curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_curl(w);
        run_deferred(w);
        /* MHD only when it has something to do: its epoll fd fired, a
         * connection was resumed, or one of its timeouts is due.  An idle
         * MHD_run still costs an epoll_wait on MHD's own set. */
        if (w->mhd_kick || w->stop_requested || loop_now_ms() >= mhd_due) {
            w->mhd_kick = 0;
            MHD_run(w->mhd);
        }
        /* MHD callbacks may have deferred work (a reader that drained the
         * buffer wants curl unpaused); do it now rather than a pass later. */
        run_deferred(w);
    }
    log_flush();
    return NULL;
}

void worker_set_config(struct worker *w, struct orp_config *cfg)
{
    struct orp_config *old = atomic_exchange(&w->pending, cfg);
    uint64_t one = 1;
    ssize_t wr;

    if (old != NULL)
        config_release(old); /* never adopted: superseded */
    wr = write(w->wake_fd, &one, sizeof one);
    (void)wr;
}

/* Worker 0 tells systemd the daemon is alive, but only when every worker's
 * loop has made a pass recently: one stuck loop fails the watchdog. */
static void watchdog(struct worker *w, int64_t now)
{
    if (w->id != 0 || w->watchdog_ms <= 0 || now < w->next_watchdog)
        return;
    w->next_watchdog = now + w->watchdog_ms / 2;
    for (int i = 0; i < w->n_all; i++)
        if (now - atomic_load(&w->all[i].heartbeat_ms) > w->watchdog_ms / 2)
            return;
    sd_notify(0, "WATCHDOG=1");
}

void worker_request_stop(struct worker *w)
{
    uint64_t one = 1;
    w->stop_requested = 1;
    ssize_t wr = write(w->wake_fd, &one, sizeof one);
    (void)wr;
}

void worker_destroy(struct worker *w)
{
    struct request *r, *nx;

    /* Requests still alive here belong to clients that stopped reading
     * after the forced stop: drop their upstreams, then let MHD close them. */
    for (r = w->live; r != NULL; r = nx) {
        nx = r->next;
        upstream_abort(r);
        loop_retry_cancel(r);
        if (r->suspended) {
            r->suspended = 0;
            MHD_resume_connection(r->conn);
        }
    }
    if (w->mhd != NULL)
        MHD_stop_daemon(w->mhd);
    w->mhd = NULL;
    config_release(w->cfg); /* after MHD freed the last requests */
    w->cfg = NULL;
    while (w->n_easy_pool > 0)
        curl_easy_cleanup(w->easy_pool[--w->n_easy_pool]);
    if (w->multi != NULL)
        curl_multi_cleanup(w->multi);
    w->multi = NULL;
    for (int i = 0; i < w->n_curl_src; i++)
        free(w->curl_src[i]);
    free(w->curl_src);
    w->curl_src = NULL;
    w->n_curl_src = 0;
    {
        struct orp_config *p = atomic_exchange(&w->pending, NULL);
        config_release(p);
    }
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    w->epfd = w->wake_fd = -1;
}
