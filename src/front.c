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
 * after. */
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
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "relay.h"
#include "util.h"

#define STREAM_BLOCK 1024        /* MHD's per-response buffer for streams */
#define DRAIN_SLACK (1024 * 1024) /* over-limit body bytes read before hanging up */

static void front_wake(struct request *r);
static void front_settled(struct request *r);
static void request_task(void *arg);
static const struct request_ops front_ops = {front_wake, front_settled};

static int sane_request_id(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= 64 || !(isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return n > 0;
}

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
    r->cfg = config_hold(f->cfg);
    r->conn = conn;
    r->t_start = util_mono_ns();
    r->t_wall_ms = util_wall_ms();
    record_token(r->method, sizeof r->method, method); /* logged and quoted in errors */
    rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (sane_request_id(rid))
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

    if (!r->client_done || r->in_multi || r->task.queued || loop_timer_armed(&r->retry) ||
        r->usage_pending)
        return;
    if (r->awaited)
        f->n_awaited--;
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
    } else if (r->client_done) {
        loop_defer(r->loop, &r->task); /* maybe it can be freed now */
    }
}

static void suspend(struct request *r)
{
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
}

static void add_common_headers(struct request *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->id);
}

static enum MHD_Result queue_local(struct request *r)
{
    const char *msg = r->local_msg ? r->local_msg : "error";
    char *json;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (r->local_status == 200) {
        json = strdup("{\"status\":\"ok\"}");
    } else {
        json = apierr_json(r->local_status, r->local_code, msg);
    }
    if (json == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(json), json, free);
    if (resp == NULL) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (r->local_retry_after > 0) {
        char ra[24];
        snprintf(ra, sizeof ra, "%ld", r->local_retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (r->local_status == 405 && r->route != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                strcmp(r->route->method, "GET") == 0 ? "GET, HEAD" : r->route->method);
    add_common_headers(r, resp);
    r->status = r->local_status;
    r->committed = 1;
    if (r->t_first == 0)
        r->t_first = util_mono_ns();
    ret = MHD_queue_response(r->conn, r->local_status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct request *r = cls;
    size_t n;
    (void)pos;

    if ((n = relay_read(r, out, max)) > 0)
        return (ssize_t)n;
    if (r->upstream_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    suspend(r);
    return 0;
}

static void free_buffer_base(void *base)
{
    free(base);
}

static enum MHD_Result queue_upstream(struct request *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (r->streaming) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, r,
                                                 NULL);
    } else {
        /* Hand the body buffer to MHD: no copy. */
        char *base;
        const char *head;
        size_t len;
        relay_take_body(r, &base, &head, &len);
        resp = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)head,
                                                                      free_buffer_base, base);
        if (resp == NULL)
            free(base);
    }
    if (resp == NULL)
        return MHD_NO;
    for (size_t i = 0; i < r->n_rhdrs; i++)
        MHD_add_response_header(resp, r->rhdrs[i].name, r->rhdrs[i].value);
    add_common_headers(r, resp);
    r->status = (unsigned)r->at.status;
    r->committed = 1;
    if (!r->streaming && r->t_first == 0)
        r->t_first = util_mono_ns();
    ret = MHD_queue_response(r->conn, (unsigned)r->at.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* MHD hands us the path and the parsed arguments: rebuild the query string
 * for GET routes (e.g. /generation?id=...). */
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    buf_t *b = cls;
    char *k, *v = NULL;
    (void)kind;

    k = curl_easy_escape(NULL, key, 0);
    if (value != NULL)
        v = curl_easy_escape(NULL, value, 0);
    if (k != NULL) {
        buf_append(b, b->len == b->off ? "?" : "&", 1);
        buf_appendz(b, k);
        if (v != NULL) {
            buf_append(b, "=", 1);
            buf_appendz(b, v);
        }
    }
    curl_free(k);
    curl_free(v);
    return MHD_YES;
}

static enum MHD_Result queue_json(struct request *r, unsigned status, char *text, const char *ctype)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (text == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_common_headers(r, resp);
    r->status = status;
    r->committed = 1;
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* RFC 9110 5.6.2: a header name is a token. */
static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

struct head_check {
    const char *bad;            /* why the request is refused, NULL while fine */
    int n_length, n_host, has_te;
    size_t max_gap;             /* most blanks between a colon and its value */
};

/* libmicrohttpd 0.9.75 glues an obsolete folded line ("Foo: a" CRLF " b")
 * onto the header's name ("Foob: a"), which no look at the name or value can
 * tell from a real "Foob" header.  But a header parsed from one line lies in
 * the read buffer as it came: the name, the NUL that replaced the colon,
 * blanks, the value.  A glued name was copied elsewhere in the connection's
 * memory pool, so its value is not right behind it. */
static int parsed_from_one_line(const char *key, const char *value, size_t max_gap)
{
    size_t klen = strlen(key);
    uintptr_t end = (uintptr_t)key + klen + 1, v = (uintptr_t)value;

    if (v < end || v - end > max_gap)
        return 0;
    for (const char *p = key + klen + 1; p < value; p++)
        if (*p != ' ' && *p != '\t')
            return 0;
    return 1;
}

static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct head_check *hc = cls;
    (void)kind;

    if (key[0] == '\0')
        hc->bad = "a request header has an empty name";
    if (hc->bad == NULL && value != NULL && !parsed_from_one_line(key, value, hc->max_gap))
        hc->bad = "a request header is folded over several lines (obsolete, RFC 9112 5.2)";
    for (const char *p = key; hc->bad == NULL && *p != '\0'; p++)
        if (!is_tchar((unsigned char)*p))
            hc->bad = "a request header name is not a token (RFC 9110): no spaces, no control bytes";
    for (const char *p = value ? value : ""; hc->bad == NULL && *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            hc->bad = "a request header value holds a control byte (CR, LF, NUL, ...)";
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        hc->n_length++;
        if (value == NULL || value[0] == '\0' || strspn(value, "0123456789") != strlen(value))
            hc->bad = "Content-Length must be a decimal number";
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        hc->n_host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        hc->has_te = 1;
    }
    return hc->bad == NULL ? MHD_YES : MHD_NO;
}

/* libmicrohttpd passes on what it cannot frame safely: header names with
 * blanks or folded lines glued on, bare CR inside values, several
 * Content-Lengths (the first wins and the rest of the body would be read as
 * the next request), Content-Length beside chunked.  Anything upstream or a
 * later hop could read differently is refused here, before the body, and
 * never forwarded.  0 fine, -1 refused (400 set). */
static int check_head(struct request *r, const char *version)
{
    struct head_check hc;

    memset(&hc, 0, sizeof hc);
    hc.max_gap = (size_t)r->cfg->limits_max_header_bytes + 4096;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, check_header, &hc);
    if (hc.bad == NULL && hc.n_length > 1)
        hc.bad = "Content-Length appears more than once";
    if (hc.bad == NULL && hc.n_length > 0 && hc.has_te)
        hc.bad = "Content-Length and Transfer-Encoding together";
    if (hc.bad == NULL && hc.n_host > 1)
        hc.bad = "Host appears more than once";
    if (hc.bad == NULL && hc.n_host == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
        hc.bad = "an HTTP/1.1 request needs a Host header";
    if (hc.bad == NULL)
        return 0;
    relay_set_error(r, 400, "invalid_request", "%s", hc.bad);
    return -1;
}

/* A local endpoint's answer (local.c): MHD takes the text. */
static enum MHD_Result queue_reply(struct request *r)
{
    char *text = r->reply;
    r->reply = NULL;
    return queue_json(r, r->reply_status, text, r->reply_ctype);
}

/* The body is complete: answer locally, or admit it and go upstream. */
static enum MHD_Result dispatch(struct request *r)
{
    if (r->local_status != 0)
        return queue_local(r);
    if (r->route->kind != ROUTE_UPSTREAM) {
        /* The client was decided from the headers, before the body:
         * admit_identify().  A refused one never gets here. */
        if (local_answer(r) > 0) {
            suspend(r); /* /v1/usage: its answer comes from the usage thread */
            return MHD_YES;
        }
        if (r->reply != NULL)
            return queue_reply(r);
        return r->local_status != 0 ? queue_local(r) : MHD_NO;
    }
    if (admit_body(r) < 0)
        return queue_local(r);
    if (strcmp(r->route->method, "GET") == 0) {
        buf_t q;
        memset(&q, 0, sizeof q);
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &q);
        if (buf_used(&q) > 0)
            r->url_query = strdup(buf_cstr(&q));
        buf_free(&q);
    }
    if (upstream_start(r) < 0)
        return queue_local(r);
    suspend(r);
    return MHD_YES;
}

/* Slow-loris guard.  MHD's connection timeout is an inactivity timeout:
 * a client trickling one byte a second keeps a connection forever.  So each
 * connection is watched from its first byte (or from the end of its
 * previous request) until its request is complete, and one that has not
 * sent a whole request within limits.client_timeout_s is shut down; MHD
 * then sees the end of the stream and closes it as it would any other. */
struct conn_watch {
    struct MHD_Connection *conn;
    int fd;
    int receiving;              /* a request is being read */
    int64_t since_ms;           /* monotonic: when reading it began */
    LIST_ENTRY(conn_watch) link;
};

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct front *f = cls;
    struct conn_watch *cw = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (cw = calloc(1, sizeof *cw)) == NULL)
            return; /* unwatched: MHD's inactivity timeout still applies */
        cw->conn = conn;
        cw->fd = ci->connect_fd;
        cw->receiving = 1;
        cw->since_ms = util_mono_ms();
        LIST_INSERT_HEAD(&f->watches, cw, link);
        *socket_context = cw;
    } else if (cw != NULL) {
        LIST_REMOVE(cw, link);
        free(cw);
        *socket_context = NULL;
    }
}

static void watch_receiving(struct MHD_Connection *conn, int receiving)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_watch *cw = ci != NULL ? ci->socket_context : NULL;
    if (cw != NULL) {
        cw->receiving = receiving;
        cw->since_ms = util_mono_ms();
    }
}

static void check_slow_clients(struct front *f, int64_t now)
{
    int64_t limit = (int64_t)f->cfg->limits_client_timeout_s * 1000;
    struct conn_watch *cw;

    LIST_FOREACH(cw, &f->watches, link) {
        if (!cw->receiving || now - cw->since_ms <= limit)
            continue;
        cw->receiving = 0;
        log_info("client sent no complete request within %d s: closing its connection",
                 f->cfg->limits_client_timeout_s);
        shutdown(cw->fd, SHUT_RDWR);
    }
}

static enum MHD_Result busy(struct request *r)
{
    admit_set_busy(r);
    return queue_local(r);
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
    if (check_head(r, version) < 0)
        return queue_local(r);
    cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)cfg->limits_max_body_bytes) {
        relay_set_error(r, 413, "body_too_large", "request body is larger than %lld bytes",
                        cfg->limits_max_body_bytes);
        return queue_local(r);
    }
    if (r->local_status == 0 && admit_identify(r) < 0)
        return queue_local(r);
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
    if (r->committed)
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
        return queue_local(r);
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
    if (r->client_gone)
        return MHD_NO; /* resumed only to be closed: see check_waiting() */
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_upload(r, upload_data, n);
    }
    if (r->committed)
        return MHD_YES;
    if (r->resp_ready) {
        r->resp_ready = 0;
        if (r->reply != NULL)
            return queue_reply(r);
        return r->local_status != 0 ? queue_local(r) : queue_upstream(r);
    }
    if (r->attempts > 0 || loop_timer_armed(&r->retry) || r->usage_pending) {
        /* Woken with nothing to send yet: keep waiting. */
        suspend(r);
        return MHD_YES;
    }
    watch_receiving(conn, 0); /* the whole request is in */
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
    if (r->awaited)
        return 1;
    if (r->fr->n_awaited >= r->fr->max_connections) {
        log_warn("request id=%s: client went away and %u answers are already awaited for "
                 "clients that hung up; dropping its upstream transfer, its cost is not known",
                 r->id, r->fr->n_awaited);
        return 0;
    }
    r->awaited = 1;
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
static void check_waiting(struct request *r)
{
    const union MHD_ConnectionInfo *ci;
    struct pollfd p;

    if (!r->suspended || r->committed || r->client_done || r->client_gone)
        return;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return;
    memset(&p, 0, sizeof p);
    p.fd = ci->connect_fd;
    p.events = POLLRDHUP;
    /* MHD treats end-of-input as the client leaving on connections it
     * watches; do the same for the ones it cannot watch while suspended. */
    if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
        return;
    r->client_gone = 1;
    upstream_cancel_retry(r); /* a retry not started yet costs nothing: drop it */
    if (await_after_hangup(r)) {
        log_debug("request id=%s: client went away while waiting for upstream; upstream bills "
                  "it anyway, so its answer is awaited and dropped", r->id);
    } else {
        log_debug("request id=%s: client went away while waiting for upstream", r->id);
        upstream_abort(r);
    }
    front_wake(r);
}

/* The one end of a request: log line, ledger row, budget settled. */
static void request_end(struct request *r)
{
    if (r->status == 0)
        r->status = r->local_status;
    record_finish(r);
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
    watch_receiving(conn, 1); /* a kept-alive connection's next request */
    r->client_done = 1;
    r->suspended = 0;
    r->conn = NULL; /* MHD frees the connection; the request may live on */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* The client did not get everything: nothing was committed yet, a
         * stream still had bytes to come or waiting, or MHD could not finish
         * sending a buffered upstream answer (it holds that buffer, so any
         * error while sending it means the client missed part of it). */
        r->client_aborted = !r->committed || !r->upstream_done || r->ready > 0 ||
                            (!r->streaming && r->local_status == 0 && r->at.status != 0);
        if (r->client_aborted && await_after_hangup(r)) {
            log_debug("request id=%s: client went away; upstream bills it anyway, so its "
                      "answer is awaited and dropped", r->id);
            return; /* front_settled() ends it */
        }
        if (r->client_aborted && r->in_multi)
            log_debug("request id=%s: client went away, aborting upstream", r->id);
    }
    upstream_abort(r);
    request_end(r);
}

/* The upstream transfer of a request whose client hung up has ended (its
 * usage, if any, is in r->ui): end the request if MHD is done with it. */
static void front_settled(struct request *r)
{
    if (r->client_done)
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
    LIST_INIT(&f->watches);
    f->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, f,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        f->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->limits_client_timeout_s,
        /* A connection's memory: its request line and headers, and room
         * for the response headers.  It is most of what an idle or slow
         * stream costs (MHD's default is 32 KiB). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits_max_header_bytes + 4096,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, f, MHD_OPTION_NOTIFY_CONNECTION, on_connection, f,
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
    TAILQ_FOREACH(r, &f->live, link)
        check_waiting(r);
    check_slow_clients(f, now);
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
    int awaited = r->client_done && r->in_multi; /* a hung-up client's answer, still due */

    upstream_abort(r);
    if (awaited) {
        log_warn("request id=%s: shutting down before upstream answered a request whose client "
                 "hung up; its cost is not known", r->id);
        request_end(r);
        return;
    }
    if (r->client_done)
        return;
    if (r->streaming)
        relay_end_stream(r, 503, "shutting_down", why);
    else if (!r->committed)
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
}
