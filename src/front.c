/* front.c - the HTTP front (libmicrohttpd, external epoll mode).
 *
 * MHD calls on_request() several times per request: first with no state
 * (we allocate the request, route it, check its headers and identify the
 * client: admit.c), then once per uploaded body slice (we append), then
 * with no data (the body is complete: answer locally or admit it and start
 * the upstream transfer, and suspend the connection).  While the upstream
 * is working the connection stays suspended; when a response is ready the
 * request's task resumes it on the loop and MHD calls on_request() again,
 * where we queue it.  That queue is the commit point: retries happen only
 * before it.  A stream is relayed through stream_reader(), which hands MHD
 * the complete events buffered so far (relay.c) and suspends the
 * connection when there is nothing to send (returning 0 without
 * suspending would spin).  on_completed() is the only "client gone"
 * signal; what it does to the upstream transfer, and why a non-streamed
 * request can outlive its connection, is in doc/DESIGN.md ("Hang-ups").
 * r->conn is cleared when the client is done, and nothing may touch it
 * after.  The request's phase (request.h) is moved here, except for READY
 * (relay.c) and RESPONDING (respond.c). */
#include "front.h"

#include <ctype.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "apierr.h"
#include "guard.h"
#include "headcheck.h"
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "relay.h"
#include "respond.h"
#include "ui.h"
#include "util.h"

#define DRAIN_SLACK (1024 * 1024) /* over-limit body bytes read before hanging up */

static void front_wake(struct request *r);
static void front_settled(struct request *r);
static void request_task(void *arg);
static const struct request_ops front_ops = {front_wake, front_settled};

static struct request *request_new(struct front *f, struct MHD_Connection *conn, const char *method)
{
    struct request *r = calloc(1, sizeof *r);
    const char *rid;

    if (r == NULL)
        return NULL;
    r->fr = f;
    r->loop = f->loop;
    r->pool = f->pool;
    r->ops = &front_ops;
    r->task.fn = request_task;
    r->task.arg = r;
    r->client = -1;
    if (f->adopt != NULL)
        f->adopt(f->adopt_arg);
    r->cfg = config_hold(f->cfg);
    r->conn = conn;
    r->t_start = util_mono_ns();
    r->t_wall_ms = util_wall_ms();
    record_token(r->method, sizeof r->method, method); /* logged and quoted in errors */
    rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (headcheck_request_id(rid))
        snprintf(r->id, sizeof r->id, "%s", rid);
    else
        snprintf(r->id, sizeof r->id, "req_%016" PRIx64 "%08" PRIx64, loop_rand(f->loop),
                 ++f->seq & 0xffffffffu);
    metrics_connections(1);
    TAILQ_INSERT_HEAD(&f->live, r, link);
    f->n_live++;
    return r;
}

/* Frees r if nothing refers to it any more (request.h). */
static void maybe_free(struct request *r)
{
    struct front *f = r->fr;

    if (r->phase != PHASE_FINISHED || r->in_multi || r->task.queued || loop_timer_armed(&r->retry) ||
        r->usage_pending)
        return;
    TAILQ_REMOVE(&f->live, r, link);
    f->n_live--;
    metrics_connections(-1);
    if (r->streaming)
        metrics_streams(-1);
    upstream_free(r);
    admit_release(r);
    buf_free(&r->body);
    buf_free(&r->out);
    usage_info_free(&r->ui);
    free(r->local_msg);
    free(r->reply);
    free(r->url_query);
    free(r->path);
    config_release(r->cfg);
    free(r);
}

/* The loop's turn for r: unpause its transfer, resume its connection
 * (neither is safe inside a callback), free it if it is over. */
static void request_task(void *arg)
{
    struct request *r = arg;

    if (r->want_unpause) {
        r->want_unpause = 0;
        upstream_unpause(r);
    }
    if (r->want_resume) {
        r->want_resume = 0;
        if (r->suspended) {
            r->suspended = 0;
            MHD_resume_connection(r->conn);
            r->fr->mhd_kick = 1;
        }
    }
    maybe_free(r);
}

static void front_wake(struct request *r)
{
    if (r->suspended) {
        r->want_resume = 1;
        loop_defer(r->loop, &r->task);
    } else if (r->conn == NULL) {
        loop_defer(r->loop, &r->task); /* maybe it can be freed now */
    }
}

static void suspend(struct request *r)
{
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
}

/* A head that libmicrohttpd cannot frame safely is refused: headcheck.c. */
static int check_head(struct request *r, const char *version)
{
    const char *bad = headcheck(r->conn, version, (size_t)r->cfg->limits_max_header_bytes + 4096);

    if (bad == NULL)
        return 0;
    relay_set_error(r, 400, "invalid_request", "%s", bad);
    return -1;
}

/* The body is complete: answer locally, or admit it and go upstream. */
static enum MHD_Result dispatch(struct request *r)
{
    if (r->local_status != 0)
        return respond_local(r);
    if (r->route->kind != ROUTE_UPSTREAM) {
        /* The client was decided from the headers, before the body:
         * admit_identify().  A refused one never gets here. */
        if (local_answer(r) > 0) {
            request_phase(r, PHASE_WAITING);
            suspend(r); /* /v1/usage: its answer comes from the usage thread */
            return MHD_YES;
        }
        if (r->reply != NULL)
            return respond_reply(r);
        return r->local_status != 0 ? respond_local(r) : MHD_NO;
    }
    if (admit_body(r) < 0)
        return respond_local(r);
    if (strcmp(r->route->method, "GET") == 0)
        admit_query(r);
    if (upstream_start(r) < 0)
        return respond_local(r);
    request_phase(r, PHASE_WAITING);
    suspend(r);
    return MHD_YES;
}

static enum MHD_Result busy(struct request *r)
{
    admit_set_busy(r);
    return respond_local(r);
}

/* The first call: route, headers, client.  Everything refused here is
 * refused before a body byte is read and before any "100 Continue": MHD
 * discards the body and closes the connection after the answer. */
static enum MHD_Result on_head(struct request *r, const char *url, const char *method,
                               const char *version)
{
    const struct orp_config *cfg = r->cfg;
    const char *cl;

    switch (route_match(url, method, &r->route)) {
    case ROUTE_OK:
        break;
    case ROUTE_BAD_METHOD:
        relay_set_error(r, 405, "method_not_allowed", "method %s is not allowed here; use %s",
                        r->method, r->route->method);
        break;
    case ROUTE_NOT_FOUND:
        relay_set_error(r, 404, "not_found", "no such endpoint");
        break;
    }
    if (r->route != NULL && r->route->kind == ROUTE_ADMIN && (r->path = strdup(url)) == NULL)
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
    if (check_head(r, version) < 0)
        return respond_local(r);
    if (r->local_status == 0 && r->route->kind == ROUTE_UI)
        return ui_respond(r, url); /* files with no data: no client needed */
    cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)cfg->limits_max_body_bytes) {
        relay_set_error(r, 413, "body_too_large", "request body is larger than %lld bytes",
                        cfg->limits_max_body_bytes);
        return respond_local(r);
    }
    if (r->local_status == 0 && admit_identify(r) < 0)
        return respond_local(r);
    if (r->local_status == 0 && r->route->json_body && cl != NULL &&
        admit_body_charge(r, strtoull(cl, NULL, 10)) < 0)
        return busy(r);
    return MHD_YES;
}

/* One slice of the uploaded body. */
static enum MHD_Result on_upload(struct request *r, const char *data, size_t n)
{
    const struct orp_config *cfg = r->cfg;

    r->body_seen += n;
    if (r->phase == PHASE_RESPONDING)
        return MHD_YES;
    if (r->body_seen > (uint64_t)cfg->limits_max_body_bytes) {
        /* A response queued mid-upload is never sent by MHD 0.9.75 (the
         * client sees an empty reply), so drain the rest and answer 413
         * at the end; a body far over the limit is cut off instead. */
        if (r->local_status != 413) {
            relay_set_error(r, 413, "body_too_large", "request body is larger than %lld bytes",
                            cfg->limits_max_body_bytes);
            buf_free(&r->body);
            admit_body_uncharge(r);
        }
        if (r->body_seen > (uint64_t)cfg->limits_max_body_bytes * 2 + DRAIN_SLACK)
            return MHD_NO;
        return MHD_YES;
    }
    if (r->local_status == 0 && r->route->json_body && r->body_seen > r->body_charged &&
        admit_body_charge(r, r->body_seen - r->body_charged) < 0) {
        /* A chunked body over the total: stop keeping it, read the rest
         * (a response queued mid-upload is never sent) and answer 503. */
        admit_set_busy(r);
        buf_free(&r->body);
        admit_body_uncharge(r);
        return MHD_YES;
    }
    if (r->local_status == 0 && r->route->json_body && buf_append(&r->body, data, n) < 0) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return respond_local(r);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct front *f = cls;
    struct request *r = *con_cls;

    if (r == NULL) {
        r = request_new(f, conn, method);
        if (r == NULL)
            return MHD_NO;
        *con_cls = r;
        return on_head(r, url, method, version);
    }
    if (r->phase == PHASE_GONE || r->phase == PHASE_AWAITED)
        return MHD_NO; /* resumed only to be closed: see check_waiting() */
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_upload(r, upload_data, n);
    }
    switch (r->phase) {
    case PHASE_RECEIVING:
        break;
    case PHASE_WAITING: /* woken with nothing to send yet: keep waiting */
        suspend(r);
        return MHD_YES;
    case PHASE_READY:
        if (r->reply != NULL)
            return respond_reply(r);
        return r->local_status != 0 ? respond_local(r) : respond_upstream(r);
    default: /* RESPONDING: MHD is sending it */
        return MHD_YES;
    }
    guard_receiving(conn, 0); /* the whole request is in */
    return dispatch(r);
}

/* A hang-up does not stop upstream's bill for this request: a non-streamed
 * API request whose transfer is under way (a pending retry has not reached
 * upstream and is simply dropped).  Then the request is kept (awaited) until
 * the transfer ends.  Kept requests no longer hold a connection, so they
 * are capped at the worker's connection share, or clients hanging up in a
 * loop could pile up bodies and answers without bound; past the cap the
 * transfer is dropped as before, and its cost is not known. */
static int await_after_hangup(struct request *r)
{
    if (!r->in_multi || r->route == NULL || r->route->kind != ROUTE_UPSTREAM || r->stream_req ||
        r->streaming)
        return 0;
    if (r->phase == PHASE_AWAITED)
        return 1;
    if (r->fr->n_awaited >= r->fr->max_connections) {
        log_warn("request id=%s: client went away and %u answers are already awaited for "
                 "clients that hung up; dropping its upstream transfer, its cost is not known",
                 r->id, r->fr->n_awaited);
        return 0;
    }
    request_phase(r, PHASE_AWAITED);
    r->fr->n_awaited++;
    return 1;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_debug("http: %s", msg);
}

/* A client that hung up while its connection is suspended waiting for
 * upstream is noticed here (MHD cannot see it) and its connection closed;
 * its upstream transfer is dropped, or, for a non-streamed request upstream
 * bills anyway, left to finish. */
static int waiting_fd(struct request *r)
{
    const union MHD_ConnectionInfo *ci;

    if (!r->suspended || (r->phase != PHASE_WAITING && r->phase != PHASE_READY))
        return -1;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci == NULL ? -1 : ci->connect_fd;
}

static void hung_up_waiting(struct request *r)
{
    upstream_cancel_retry(r); /* a retry not started yet costs nothing: drop it */
    if (await_after_hangup(r)) {
        log_debug("request id=%s: client went away while waiting for upstream; upstream bills "
                  "it anyway, so its answer is awaited and dropped", r->id);
    } else {
        log_debug("request id=%s: client went away while waiting for upstream", r->id);
        request_phase(r, PHASE_GONE);
        upstream_abort(r);
    }
    front_wake(r);
}

/* MHD treats end-of-input as the client leaving on connections it watches;
 * do the same for the ones it cannot watch while suspended.  One poll(2)
 * for all of them (it was one per request: thousands of streams waiting
 * for their first token cost thousands of syscalls a second). */
static void check_waiting(struct front *f)
{
    struct request *r;
    size_t n = 0;
    int fd;

    TAILQ_FOREACH(r, &f->live, link) {
        if ((fd = waiting_fd(r)) < 0)
            continue;
        if (n == f->wait_cap) {
            size_t cap = f->wait_cap ? f->wait_cap * 2 : 64;
            struct pollfd *p = realloc(f->wait_pfd, cap * sizeof *p);
            struct request **w = p ? realloc(f->wait_req, cap * sizeof *w) : NULL;
            if (p != NULL)
                f->wait_pfd = p;
            if (w == NULL)
                break; /* the rest are checked next second */
            f->wait_req = w;
            f->wait_cap = cap;
        }
        f->wait_pfd[n] = (struct pollfd){.fd = fd, .events = POLLRDHUP};
        f->wait_req[n++] = r;
    }
    if (n == 0 || poll(f->wait_pfd, (nfds_t)n, 0) <= 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (f->wait_pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
            hung_up_waiting(f->wait_req[i]);
}

/* The one end of a request: log line, ledger row, budget settled.  The
 * record reads the phase the request ended in. */
static void request_end(struct request *r)
{
    if (r->status == 0)
        r->status = r->local_status;
    record_finish(r);
    if (r->phase == PHASE_AWAITED)
        r->fr->n_awaited--;
    request_phase(r, PHASE_FINISHED);
    maybe_free(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *r = *con_cls;
    (void)cls;

    if (r == NULL)
        return;
    *con_cls = NULL;
    guard_receiving(conn, 1); /* a kept-alive connection's next request */
    r->suspended = 0;
    r->conn = NULL; /* MHD frees the connection; the request may live on */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* The client did not get everything: nothing was committed yet, a
         * stream still had bytes to come or waiting, or MHD could not finish
         * sending a buffered upstream answer (it holds that buffer, so any
         * error while sending it means the client missed part of it). */
        int aborted = r->phase != PHASE_RESPONDING;
        if (!aborted) {
            r->cut_short = !r->upstream_done || r->ready > 0 ||
                           (!r->streaming && r->local_status == 0 && r->at.status != 0);
            aborted = r->cut_short;
        }
        if (aborted && await_after_hangup(r)) {
            log_debug("request id=%s: client went away; upstream bills it anyway, so its "
                      "answer is awaited and dropped", r->id);
            return; /* front_settled() ends it */
        }
        if (aborted && r->in_multi)
            log_debug("request id=%s: client went away, aborting upstream", r->id);
    }
    upstream_abort(r);
    request_end(r);
}

/* The upstream transfer of a request whose client hung up has ended (its
 * usage, if any, is in r->ui): end the request if MHD is done with it. */
static void front_settled(struct request *r)
{
    if (r->conn == NULL)
        request_end(r);
    /* else the client is gone but MHD has not said so yet: on_completed() ends it */
}

static void on_mhd_events(void *arg, uint32_t events)
{
    struct front *f = arg;
    (void)events;
    f->mhd_kick = 1;
}

int front_start(struct front *f, int listen_fd)
{
    const struct orp_config *cfg = f->cfg;

    TAILQ_INIT(&f->live);
    LIST_INIT(&f->guard.watches);
    f->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, f,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        f->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->limits_client_timeout_s,
        /* A connection's memory: its request line and headers, and room
         * for the response headers.  It is most of what an idle or slow
         * stream costs (MHD's default is 32 KiB). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits_max_header_bytes + 4096,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_NOTIFY_CONNECTION, guard_notify, &f->guard,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, f,
        /* -1 is the level that answers 400 to a blank before a header's colon
         * (0.9.75 has that test reversed); 1 would close the connection
         * without a word on a space in the URI.  check_head() does the rest. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)-1,
        MHD_OPTION_END);
    if (f->mhd == NULL) {
        log_error("worker %d: cannot start the HTTP server", f->id);
        return -1;
    }
    f->mhd_kick = 1;
    f->mhd_fd.fd = MHD_get_daemon_info(f->mhd, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd;
    f->mhd_fd.fn = on_mhd_events;
    f->mhd_fd.arg = f;
    if (loop_add_fd(f->loop, &f->mhd_fd) < 0) {
        log_error("worker %d: cannot watch MHD epoll fd", f->id);
        return -1;
    }
    return 0;
}

long front_timeout(struct front *f)
{
    MHD_UNSIGNED_LONG_LONG to;

    if (MHD_get_timeout(f->mhd, &to) != MHD_YES)
        return -1;
    return to > 1000 ? 1000 : (long)to;
}

void front_run(struct front *f, int force)
{
    if (f->mhd_kick || force) {
        f->mhd_kick = 0;
        MHD_run(f->mhd);
    }
}

void front_tick(struct front *f, int64_t now)
{
    const int64_t every = (int64_t)f->cfg->stream_keepalive_s * 1000;
    struct request *r;

    /* A suspended connection's disconnect is noticed only when we write to
     * it: during long upstream silence a comment makes a client that went
     * away surface, and its upstream is cancelled, within
     * stream.keepalive_s. */
    TAILQ_FOREACH(r, &f->live, link)
        relay_keepalive(r, now, every);
    check_waiting(f);
    guard_check(&f->guard, now, f->cfg->limits_client_timeout_s);
}

void front_quiesce(struct front *f)
{
    MHD_socket fd = MHD_quiesce_daemon(f->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

/* Shutdown: end this request now (error event or 503), no upstream left. */
static void cancel(struct request *r, const char *why)
{
    /* a hung-up client's answer, still due, with MHD done with it */
    int awaited = r->phase == PHASE_AWAITED && r->conn == NULL;

    upstream_abort(r);
    if (awaited) {
        log_warn("request id=%s: shutting down before upstream answered a request whose client "
                 "hung up; its cost is not known", r->id);
        request_end(r);
        return;
    }
    if (r->phase == PHASE_FINISHED)
        return;
    if (r->streaming)
        relay_end_stream(r, 503, "shutting_down", why);
    else if (r->phase != PHASE_RESPONDING)
        relay_fail(r, 503, "shutting_down", why);
}

void front_cancel_all(struct front *f, const char *why)
{
    struct request *r, *nx;

    for (r = TAILQ_FIRST(&f->live); r != NULL; r = nx) {
        nx = TAILQ_NEXT(r, link);
        cancel(r, why);
    }
}

void front_stop(struct front *f)
{
    struct request *r;

    /* Requests still alive here belong to clients that stopped reading
     * after the forced stop: drop their upstreams, then let MHD close them. */
    TAILQ_FOREACH(r, &f->live, link) {
        upstream_abort(r);
        if (r->suspended) {
            r->suspended = 0;
            MHD_resume_connection(r->conn);
        }
    }
    if (f->mhd != NULL)
        MHD_stop_daemon(f->mhd);
    f->mhd = NULL;
    free(f->wait_pfd);
    free(f->wait_req);
    f->wait_pfd = NULL;
    f->wait_req = NULL;
    f->wait_cap = 0;
}
