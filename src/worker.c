/* worker.c - one worker: see worker.h.  A pass of worker_main, in order:
 * adopt a reloaded config, heartbeat and watchdog, graceful stop, memory
 * trim when idle, the once-a-second scan (front_tick), then one loop_poll
 * (timers such as due retries, epoll, curl's sockets and timer, finished
 * transfers), deferred calls (resume connections, unpause transfers), MHD
 * when it has work, and deferred calls again. */
#include "worker.h"

#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "util.h"

static void adopt_config(struct worker *w);

static void adopt_cb(void *arg)
{
    adopt_config(arg);
}

int worker_init(struct worker *w)
{
    w->stop_deadline = -1;
    if (loop_init(&w->loop) < 0 || upstream_pool_init(&w->pool, &w->loop) < 0) {
        log_error("worker %d: cannot set up its event loop", w->id);
        return -1;
    }
    w->front.id = w->id;
    w->front.cfg = w->cfg;
    w->front.max_connections = w->max_connections;
    w->front.loop = &w->loop;
    w->front.pool = &w->pool;
    w->front.adopt = adopt_cb;
    w->front.adopt_arg = w;
    return front_start(&w->front, w->listen_fd);
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

/* Graceful stop: stop accepting, let in-flight requests finish until the
 * deadline, then end the rest with an error.  1: the loop may end. */
static int handle_stop(struct worker *w, int64_t now)
{
    if (!w->quiesced) {
        front_quiesce(&w->front);
        w->quiesced = 1;
        w->stop_deadline = now + (int64_t)w->cfg->shutdown_timeout_s * 1000;
    }
    if (w->front.n_live == 0)
        return 1;
    if (now >= w->stop_deadline && !w->cancelled_all) {
        w->cancelled_all = 1;
        log_warn("worker %d: shutdown timeout: ending %u requests", w->id, w->front.n_live);
        front_cancel_all(&w->front, "orproxy is shutting down");
        w->stop_deadline = now + 2000;
    } else if (now >= w->stop_deadline && w->cancelled_all) {
        return 1; /* clients that do not read cannot hold us forever */
    }
    return 0;
}

/* Idle for 2 s after work: give freed memory back to the system (glibc
 * keeps it in its arenas otherwise; a burst of thousands of streams would
 * leave the daemon at its peak RSS for good). */
static void trim_when_idle(struct worker *w, int64_t now)
{
    if (w->front.n_live > 0) {
        w->last_busy_ms = now;
        w->trimmed = 0;
    } else if (!w->trimmed && now - w->last_busy_ms > 2000) {
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not glibc's: nothing to trim */
        malloc_trim(0);
#endif
        w->trimmed = 1;
    }
}

/* A load first: the common case (nothing pending) costs no locked
 * instruction, and this runs once a pass and once a request. */
static void adopt_config(struct worker *w)
{
    struct orp_config *fresh;

    if (atomic_load_explicit(&w->pending, memory_order_acquire) == NULL)
        return;
    fresh = atomic_exchange(&w->pending, NULL);
    if (fresh != NULL) {
        config_release(w->cfg);
        w->cfg = fresh;
        w->front.cfg = fresh;
    }
}

void *worker_main(void *arg)
{
    struct worker *w = arg;

    log_batch_begin();
    for (;;) {
        int64_t now = util_mono_ms(), mhd_due = INT64_MAX;
        int timeout = w->watchdog_ms > 0 && w->watchdog_ms / 4 < 1000 ? (int)(w->watchdog_ms / 4) : 1000;
        long mhd_to;

        adopt_config(w);
        atomic_store(&w->heartbeat_ms, now);
        watchdog(w, now);
        if (atomic_load(&w->stop_requested) && handle_stop(w, now))
            break;
        trim_when_idle(w, now);
        if (now >= w->next_tick) {
            front_tick(&w->front, now);
            w->next_tick = now + 1000;
        }
        if (w->front.mhd_kick) /* a connection resumed late in the last pass */
            timeout = 0;
        if ((mhd_to = front_timeout(&w->front)) >= 0) {
            if (mhd_to < timeout)
                timeout = (int)mhd_to;
            mhd_due = now + mhd_to;
        }
        log_flush();
        loop_poll(&w->loop, timeout);
        loop_run_deferred(&w->loop);
        /* MHD only when it has something to do: its epoll fd fired, a
         * connection was resumed, or one of its timeouts is due.  An idle
         * MHD_run still costs an epoll_wait on MHD's own set. */
        front_run(&w->front, atomic_load(&w->stop_requested) || util_mono_ms() >= mhd_due);
        /* MHD callbacks may have deferred work (a reader that drained the
         * buffer wants curl unpaused); do it now rather than a pass later. */
        loop_run_deferred(&w->loop);
        /* MHD often has more to do at once: a response sent, the request's
         * completion and the next request on a kept-alive connection each
         * take one MHD_run (its timeout is then 0).  A new pass for each cost
         * an epoll_wait(0) on the worker's set before it: 3 of the 14
         * syscalls of a request at c=1 (strace).  Run MHD again here
         * instead, a bounded number of times so curl's sockets wait little. */
        /* The same when that deferred work resumed a connection: an answer
         * posted from another thread (the jobs thread's /v1/usage and admin
         * answers) is queued by a task its own callback defers, so it
         * resumes here, after the MHD_run above; without this it waited
         * for the next pass's epoll_wait, up to 1 s. */
        for (int i = 0; i < 3 && (w->front.mhd_kick || front_timeout(&w->front) == 0); i++) {
            front_run(&w->front, 1);
            loop_run_deferred(&w->loop);
        }
    }
    log_flush();
    return NULL;
}

void worker_set_config(struct worker *w, struct orp_config *cfg)
{
    struct orp_config *old = atomic_exchange(&w->pending, cfg);

    if (old != NULL)
        config_release(old); /* never adopted: superseded */
    loop_wake(&w->loop);
}

void worker_request_stop(struct worker *w)
{
    atomic_store(&w->stop_requested, 1);
    loop_wake(&w->loop);
}

void worker_destroy(struct worker *w)
{
    if (w->cfg == NULL)
        return; /* never set up: start-up failed before it */
    front_stop(&w->front);
    config_release(w->cfg); /* after MHD freed the last requests */
    w->cfg = NULL;
    upstream_pool_destroy(&w->pool);
    config_release(atomic_exchange(&w->pending, NULL));
    loop_destroy(&w->loop);
}
