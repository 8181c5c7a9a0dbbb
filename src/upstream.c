/* upstream.c - the curl side of a request.
 *
 * One easy handle per request, reused across retries (and, once reset,
 * by later requests of the same worker: see loop_easy_get).  The forwarded
 * request is the client's body byte for byte (CURLOPT_POSTFIELDS points at
 * it, no copy) with the client's end-to-end headers, minus its
 * Authorization and the hop-by-hop ones, plus the upstream key.
 *
 * When upstream's headers are complete we decide: a retryable status with
 * attempts left is discarded and retried after a delay; a 2xx
 * text/event-stream answer is committed at once and relayed event by event;
 * anything else is buffered whole (bounded by upstream.max_response_bytes)
 * and answered with its status, so a failure while reading it can still be
 * retried or turned into a clean 502/504.
 *
 * Stream bytes go to the response buffer (relay.c), which offers the
 * client only complete events.  If the client reads slower than upstream
 * writes, the transfer is paused (HTTP/1.1 upstream only: pausing HTTP/2
 * streams misbehaves in curl 7.88) and resumed from the loop once the
 * client caught up.  Each attempt starts from a zeroed struct attempt. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "retry.h"
#include "util.h"
#include "upcurl.h"

/* Request headers never forwarded: hop-by-hop (RFC 9110 7.6.1), ones curl
 * or we set ourselves, and credentials meant for someone else than
 * OpenRouter: the client's own (for orproxy), other APIs' key headers (an
 * Anthropic SDK sends x-api-key), cookies, and every Proxy-* header (see
 * copy_client_header). */
static const char *const drop_request_headers[] = {
    "authorization", "host", "connection", "keep-alive", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "expect", "accept-encoding", "x-request-id",
    "x-openrouter-key", "x-api-key", "api-key", "cookie", NULL};

/* Response headers not relayed: hop-by-hop, framing MHD redoes, and
 * cookies (one upstream account is shared by every local app). */
static const char *const drop_response_headers[] = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "date", "server", "set-cookie",
    "x-request-id", NULL};

static int in_list(const char *const *list, const char *name, size_t len)
{
    for (; *list != NULL; list++)
        if (strlen(*list) == len && strncasecmp(*list, name, len) == 0)
            return 1;
    return 0;
}

struct hdr_acc {
    struct request *r;
    struct curl_slist *list;
    int failed;
};

/* Sized to the header: a long value is forwarded whole or not at all
 * (MHD's memory limit, limits.max_header_bytes, bounds it with a 431). */
static void add_header(struct hdr_acc *acc, const char *name, const char *value)
{
    size_t cap = strlen(name) + strlen(value) + 3;
    char *line = malloc(cap);
    struct curl_slist *n = NULL;

    if (line != NULL) {
        snprintf(line, cap, "%s: %s", name, value);
        n = curl_slist_append(acc->list, line);
        free(line);
    }
    if (n == NULL)
        acc->failed = 1;
    else
        acc->list = n;
}

static enum MHD_Result copy_client_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    struct hdr_acc *acc = cls;
    const struct orp_config *cfg = acc->r->cfg;
    const char *conn_hdr;
    (void)kind;

    if (value == NULL || in_list(drop_request_headers, key, strlen(key)) ||
        strncasecmp(key, "proxy-", 6) == 0)
        return MHD_YES;
    if ((cfg->upstream_referer[0] != '\0' && strcasecmp(key, "HTTP-Referer") == 0) ||
        (cfg->upstream_title[0] != '\0' && strcasecmp(key, "X-Title") == 0))
        return MHD_YES;
    /* Headers named in Connection are hop-by-hop too. */
    conn_hdr = MHD_lookup_connection_value(acc->r->conn, MHD_HEADER_KIND, "Connection");
    if (conn_hdr != NULL) {
        size_t klen = strlen(key);
        const char *p = conn_hdr;
        while (*p != '\0') {
            size_t tok;
            p += strspn(p, " \t,");
            tok = strcspn(p, " \t,");
            if (tok == klen && strncasecmp(p, key, klen) == 0)
                return MHD_YES;
            p += tok;
        }
    }
    add_header(acc, key, value);
    return MHD_YES;
}

static struct curl_slist *build_headers(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    struct hdr_acc acc = {r, NULL, 0};

    if ((acc.list = upcurl_add_auth(NULL, r->up_key)) == NULL)
        return NULL;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, copy_client_header, &acc);
    if (r->route->json_body &&
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type") == NULL)
        add_header(&acc, "Content-Type", "application/json");
    if (cfg->upstream_referer[0] != '\0')
        add_header(&acc, "HTTP-Referer", cfg->upstream_referer);
    if (cfg->upstream_title[0] != '\0')
        add_header(&acc, "X-Title", cfg->upstream_title);
    add_header(&acc, "X-Request-Id", r->id);
    /* No "Expect: 100-continue" round trip. */
    add_header(&acc, "Expect", "");
    if (acc.failed) {
        upcurl_free_headers(acc.list);
        return NULL;
    }
    return acc.list;
}

static void clear_response_headers(struct request *r)
{
    for (size_t i = 0; i < r->n_rhdrs; i++) {
        free(r->rhdrs[i].name);
        free(r->rhdrs[i].value);
    }
    r->n_rhdrs = 0;
    free(r->up_ctype);
    free(r->up_retry_after);
    r->up_ctype = r->up_retry_after = NULL;
}

static void keep_header(struct request *r, const char *name, size_t nlen, const char *val, size_t vlen)
{
    struct hdr h;

    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) {
        free(r->up_ctype);
        r->up_ctype = strndup(val, vlen);
    } else if (nlen == 11 && strncasecmp(name, "retry-after", 11) == 0) {
        free(r->up_retry_after);
        r->up_retry_after = strndup(val, vlen);
    } else if (nlen == 15 && strncasecmp(name, "x-generation-id", 15) == 0) {
        free(r->gen_id);
        r->gen_id = strndup(val, vlen);
    }
    if (in_list(drop_response_headers, name, nlen))
        return;
    if (r->n_rhdrs == r->cap_rhdrs) {
        size_t ncap = r->cap_rhdrs ? r->cap_rhdrs * 2 : 8;
        struct hdr *n = realloc(r->rhdrs, ncap * sizeof *n);
        if (n == NULL)
            return;
        r->rhdrs = n;
        r->cap_rhdrs = ncap;
    }
    h.name = strndup(name, nlen);
    h.value = strndup(val, vlen);
    if (h.name == NULL || h.value == NULL) {
        free(h.name);
        free(h.value);
        return;
    }
    r->rhdrs[r->n_rhdrs++] = h;
}

static void on_sse_event(void *ud, const char *data, size_t len, int truncated)
{
    struct request *r = ud;

    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        r->saw_done = 1;
        return;
    }
    if (r->t_first == 0)
        r->t_first = util_mono_ns(); /* first data event: comments are not tokens */
    if (truncated)
        return;
    /* Every chunk is parsed (the relayed bytes stay untouched): matching
     * raw bytes such as "finish_reason":" missed chunks spaced otherwise,
     * and their text went uncounted. */
    {
        int was_error = r->ui.is_error;
        size_t chars = 0;
        usage_parse_chunk(data, len, &r->ui, &chars);
        r->est_chars += chars;
        if (r->ui.is_error && !was_error)
            r->saw_error_event = 1;
    }
}

static void headers_complete(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    long status = 0;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200) { /* interim 1xx: the real headers follow */
        clear_response_headers(r);
        return;
    }
    r->at.status = status;
    if (retry_status_retryable(status) && r->attempts < cfg->retry_max_attempts) {
        long ra = retry_after_ms(r->up_retry_after, time(NULL));
        long d = retry_delay_ms(r->attempts, cfg->retry_base_delay_ms, cfg->retry_max_delay_ms, ra,
                                loop_rand(r->loop));
        if (d >= 0) {
            r->at.discard = 1;
            r->at.retry_delay = d;
            return;
        }
    }
    if (status >= 200 && status < 300 && r->up_ctype != NULL &&
        strncasecmp(r->up_ctype, "text/event-stream", 17) == 0) {
        metrics_streams(1);
        sse_init(&r->sse, on_sse_event, r);
        relay_start_stream(r, util_mono_ms());
    }
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    struct request *r = ud;
    size_t len = size * nitems, nlen, vstart;

    r->at.got_bytes = 1;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        clear_response_headers(r);
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        headers_complete(r);
        return len;
    }
    while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
        len--;
    nlen = 0;
    while (nlen < len && buf[nlen] != ':')
        nlen++;
    if (nlen == len || nlen == 0)
        return size * nitems;
    vstart = nlen + 1;
    while (vstart < len && (buf[vstart] == ' ' || buf[vstart] == '\t'))
        vstart++;
    keep_header(r, buf, nlen, buf + vstart, len - vstart);
    return size * nitems;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct request *r = ud;
    size_t len = size * nmemb;

    enum relay_write wr;

    r->at.got_bytes = 1;
    if (r->at.discard)
        return len;
    if (r->streaming)
        wr = relay_stream_write(r, ptr, len, util_mono_ms());
    else
        wr = relay_body_write(r, ptr, len, (size_t)r->cfg->upstream_max_response_bytes);
    switch (wr) {
    case RELAY_OK:
        return len;
    case RELAY_PAUSE:
        return CURL_WRITEFUNC_PAUSE;
    case RELAY_TOO_LARGE:
        r->at.too_large = 1;
        return 0;
    case RELAY_NO_MEMORY:
        break;
    }
    return 0;
}

/* curl 7.88 re-sends a request on a fresh connection, on its own, when a
 * reused connection dies before any response byte arrived
 * (transfer.c:Curl_retry_request) - also a POST that upstream had already
 * read, and may bill.  Its PREREQFUNCTION runs before every send of a
 * transfer, that re-send included (with redirects and HTTP auth off nothing
 * else sends twice), so a second call in one attempt is refused: the
 * attempt fails like an empty reply and retry.max_attempts, not curl,
 * decides whether to send again, so the ledger's attempts are the number
 * of times upstream was sent the request.  See /work/shared/LIBS.md A. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    struct request *r = ud;
    (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;

    if (++r->at.sends > 1) {
        r->at.resend_blocked = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* Easy handles are reused: curl_easy_init and its cleanup cost more than
 * the whole proxying of a small request.  curl_easy_reset puts every option
 * back to its default, so nothing of the previous request (its key header
 * list, its callbacks' data) survives into the next.
 *
 * A stream's receive buffer is 2 KiB instead of curl's 16 KiB: SSE events
 * are a few hundred bytes, so a larger buffer only holds memory for the
 * whole life of a stream (16 KiB to 4 KiB took 12 KiB off a slow stream,
 * 4 KiB to 2 KiB another 2 KiB: 31.1 to 29.0 KiB with 1,000 slow streams,
 * bench/README.md).  An event longer than the buffer takes one more recv, a
 * burst of events as many recvs as it has 2 KiB; curl's minimum is 1 KiB.  But
 * curl keeps the buffer its handle was first given (Curl_preconnect
 * allocates it once; a later, larger CURLOPT_BUFFERSIZE would overrun it),
 * so streams and plain transfers keep separate idle handles. */
#define UPSTREAM_STREAM_BUFFER 2048L

static CURL *easy_get(struct upstream_pool *p, int stream)
{
    CURL *e;

    if (p->n_easy_pool[stream] > 0)
        e = p->easy_pool[stream][--p->n_easy_pool[stream]];
    else if ((e = curl_easy_init()) == NULL)
        return NULL;
    if (stream)
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, UPSTREAM_STREAM_BUFFER);
    return e;
}

static void easy_put(struct upstream_pool *p, CURL *e, int stream)
{
    if (e == NULL)
        return;
    if (p->n_easy_pool[stream] < (int)(sizeof p->easy_pool[0] / sizeof p->easy_pool[0][0])) {
        curl_easy_reset(e);
        p->easy_pool[stream][p->n_easy_pool[stream]++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static int setup_easy(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    const char *query = r->url_query ? r->url_query : "";
    size_t cap = strlen(cfg->upstream_base_url) + strlen(r->route->tail) + strlen(query) + 1;
    char *url = malloc(cap); /* sized: a long query goes whole or not at all */
    CURL *e;
    CURLcode set;

    if (url == NULL)
        return -1;
    snprintf(url, cap, "%s%s%s", cfg->upstream_base_url, r->route->tail, query);
    r->up_headers = build_headers(r);
    e = r->easy = easy_get(r->pool, r->stream_req != 0);
    if (e == NULL || r->up_headers == NULL) {
        free(url);
        return -1;
    }
    set = curl_easy_setopt(e, CURLOPT_URL, url); /* curl copies it */
    free(url);
    if (set != CURLE_OK)
        return -1;
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->up_headers);
    if (strcmp(r->route->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)buf_used(&r->body));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, buf_used(&r->body) ? buf_head(&r->body) : "");
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    upcurl_common(e, cfg);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, loop_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, r->loop);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    /* Idle detection, not a total timeout: long streams are legitimate. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)cfg->upstream_idle_timeout_s);
    return 0;
}

static void transfer_done(struct request *r, CURLcode res);

static void on_curl_done(CURL *easy, CURLcode res)
{
    struct request *r = NULL;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    r->in_multi = 0;
    transfer_done(r, res);
}

int upstream_pool_init(struct upstream_pool *p, struct loop *l)
{
    memset(p, 0, sizeof *p);
    p->loop = l;
    p->multi = curl_multi_init();
    if (p->multi == NULL)
        return -1;
    loop_attach_multi(l, p->multi, on_curl_done);
    /* Keep enough idle upstream connections for the worker's share of
     * clients, so bursts reuse them instead of reconnecting. */
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, 256L);
    return 0;
}

void upstream_pool_destroy(struct upstream_pool *p)
{
    for (int k = 0; k < 2; k++)
        while (p->n_easy_pool[k] > 0)
            curl_easy_cleanup(p->easy_pool[k][--p->n_easy_pool[k]]);
    if (p->multi != NULL)
        curl_multi_cleanup(p->multi);
    p->multi = NULL;
}

/* One attempt: everything of the previous one is dropped as a whole. */
static int attempt_start(struct request *r)
{
    clear_response_headers(r);
    free(r->gen_id); /* a failed attempt's generation is not this one's */
    r->gen_id = NULL;
    relay_reset(r);
    memset(&r->at, 0, sizeof r->at);
    r->attempts++;
    if (curl_multi_add_handle(r->pool->multi, r->easy) != CURLM_OK) {
        relay_fail(r, 500, "internal_error", "orproxy could not start the upstream request");
        return -1;
    }
    r->in_multi = 1;
    return 0;
}

int upstream_start(struct request *r)
{
    if (setup_easy(r) < 0) {
        relay_fail(r, 500, "out_of_memory", "orproxy could not set up the upstream request");
        return -1;
    }
    return attempt_start(r);
}

static void retry_due(void *arg)
{
    attempt_start(arg);
}

static void schedule_retry(struct request *r, long delay, const char *why)
{
    log_info("request id=%s attempt=%d failed (%s), retrying in %ld ms", r->id, r->attempts, why,
             delay);
    r->retry.fn = retry_due;
    r->retry.arg = r;
    loop_timer_set(r->loop, &r->retry, util_mono_ms() + delay);
}

/* After commit: the stream ends with an error event or cleanly. */
static void stream_done(struct request *r, CURLcode res)
{
    char msg[256];

    if (res == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof msg, "upstream sent nothing for %d s", r->cfg->upstream_idle_timeout_s);
        relay_end_stream(r, 502, "upstream_stream_error", msg);
    } else if (r->at.too_large) {
        relay_end_stream(r, 502, "upstream_stream_error", "upstream sent an event larger than 16 MiB");
    } else if (res != CURLE_OK) {
        snprintf(msg, sizeof msg, "upstream connection failed mid-stream: %s",
                 curl_easy_strerror(res));
        relay_end_stream(r, 502, "upstream_stream_error", msg);
    } else if (!r->saw_done && !r->saw_error_event) {
        relay_end_stream(r, 502, "upstream_stream_error", "upstream ended the stream without [DONE]");
    } else {
        relay_end_stream(r, 0, NULL, NULL);
    }
}

/* Before commit, a transfer that failed: retry, or answer 502/504. */
static void buffered_failed(struct request *r, CURLcode res)
{
    const struct orp_config *cfg = r->cfg;
    char msg[256];

    if (!r->at.too_large && r->attempts < cfg->retry_max_attempts &&
        retry_transport_retryable((int)res, r->at.got_bytes)) {
        long d = retry_delay_ms(r->attempts, cfg->retry_base_delay_ms, cfg->retry_max_delay_ms, -1,
                                loop_rand(r->loop));
        schedule_retry(r, d, curl_easy_strerror(res));
        return;
    }
    r->upstream_done = 1;
    if (r->at.too_large) {
        snprintf(msg, sizeof msg, "upstream response is larger than %lld bytes",
                 cfg->upstream_max_response_bytes);
        relay_fail(r, 502, "upstream_response_too_large", msg);
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof msg, "upstream did not answer in time (attempts: %d)", r->attempts);
        relay_fail(r, 504, "upstream_timeout", msg);
    } else {
        snprintf(msg, sizeof msg, "upstream unreachable: %s (attempts: %d)", curl_easy_strerror(res),
                 r->attempts);
        relay_fail(r, 502, "upstream_unreachable", msg);
    }
}

static void transfer_done(struct request *r, CURLcode res)
{
    if (r->at.resend_blocked && res == CURLE_ABORTED_BY_CALLBACK)
        res = CURLE_GOT_NOTHING; /* see on_prereq */
    r->curl_result = (int)res;
    if (r->phase == PHASE_GONE || r->phase == PHASE_AWAITED || r->phase == PHASE_FINISHED) {
        /* Nobody waits for this answer any more: no retry; keep only its
         * usage, which is what upstream bills. */
        r->upstream_done = 1;
        if (res == CURLE_OK && !r->at.discard && r->up_ctype != NULL &&
            strstr(r->up_ctype, "json") != NULL)
            usage_parse(buf_head(&r->out), buf_used(&r->out), &r->ui);
        r->ops->settled(r);
        return;
    }
    if (r->at.discard) {
        char why[32];
        snprintf(why, sizeof why, "status %ld", r->at.status);
        schedule_retry(r, r->at.retry_delay, why);
        return;
    }
    if (r->streaming) {
        stream_done(r, res);
        return;
    }
    if (res != CURLE_OK) {
        buffered_failed(r, res);
        return;
    }
    r->upstream_done = 1;
    if (r->up_ctype != NULL && strstr(r->up_ctype, "json") != NULL)
        usage_parse(buf_head(&r->out), buf_used(&r->out), &r->ui);
    relay_ready(r);
}

void upstream_cancel_retry(struct request *r)
{
    loop_timer_cancel(r->loop, &r->retry);
}

void upstream_abort(struct request *r)
{
    if (r->in_multi) {
        curl_multi_remove_handle(r->pool->multi, r->easy);
        r->in_multi = 0;
    }
    upstream_cancel_retry(r);
    r->upstream_done = 1;
}

void upstream_unpause(struct request *r)
{
    if (r->paused && r->in_multi) {
        r->paused = 0;
        /* May call the write callback, which may pause again. */
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
    }
}

void upstream_free(struct request *r)
{
    if (r->in_multi)
        upstream_abort(r);
    easy_put(r->pool, r->easy, r->stream_req != 0);
    r->easy = NULL;
    upcurl_free_headers(r->up_headers); /* it holds the upstream key */
    r->up_headers = NULL;
    clear_response_headers(r);
    free(r->rhdrs);
    r->rhdrs = NULL;
    r->cap_rhdrs = 0;
    free(r->gen_id);
    r->gen_id = NULL;
    if (r->streaming)
        sse_free(&r->sse);
}
