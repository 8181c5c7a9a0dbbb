/* server.c - the HTTP front (libmicrohttpd, external epoll mode).
 *
 * MHD calls on_request() several times per request: first with no state
 * (we allocate the request and route it), then once per uploaded body
 * slice (we append), then with no data (the body is complete: answer
 * locally or start the upstream transfer and suspend the connection).
 * While the upstream is working the connection stays suspended; when a
 * response is ready the loop resumes it and MHD calls on_request() again,
 * where we queue it.  That queue is the commit point: retries happen only
 * before it.  A stream is relayed through stream_reader(), which hands MHD
 * the complete events buffered so far and suspends the connection when
 * there is nothing to send (returning 0 without suspending would spin).
 * on_completed() is the only "client gone" signal: it stops a stream's
 * upstream transfer at once (closing a stream stops most providers'
 * billing), logs the request line and frees what it can.  A non-streamed
 * request already upstream is different: OpenRouter does not cancel it and
 * bills it in full, so its transfer runs on (bounded by the idle timeout),
 * the answer is dropped, and the request ends, with its real cost settled
 * against the budget and an outcome=cancelled ledger row, when the transfer
 * does (server_upstream_settled).  Until then the request outlives its
 * connection: r->conn is cleared when the client is done, and nothing may
 * touch it after. */
#include "server.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <sqlite3.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "apierr.h"
#include "body.h"
#include "housekeeping.h"
#include "ledger.h"
#include "metrics.h"
#include "bodyedit.h"
#include "pricing.h"
#include "report.h"
#include "log.h"
#include "upstream.h"
#include "utf8.h"
#include "util.h"

#define STREAM_BLOCK 1024        /* MHD's per-response buffer for streams */
#define UNPAUSE_BELOW (64 * 1024)
#define DRAIN_SLACK (1024 * 1024) /* over-limit body bytes read before hanging up */

/* Request body bytes held by all workers together (see body_charge). */
static _Atomic long long body_buffered;

static void set_local(struct request *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_local(struct request *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(r->local_msg);
    r->local_msg = strdup(msg);
    r->local_status = status;
    r->local_code = code;
}

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

/* Model names and methods come from clients: log them only as a safe token. */
static void log_token(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    if (s == NULL)
        s = "-";
    for (; *s != '\0' && i + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        dst[i++] = (isgraph(c) && c != '"' && c != '\\' && c != '=') ? (char)c : '?';
    }
    dst[i] = '\0';
}

static struct request *request_new(struct worker *w, struct MHD_Connection *conn, const char *method)
{
    struct request *r = calloc(1, sizeof *r);
    const char *rid;

    if (r == NULL)
        return NULL;
    r->w = w;
    r->client = -1;
    r->cfg = config_hold(w->cfg);
    r->conn = conn;
    r->t_start = loop_now_ns();
    r->t_wall_ms = util_wall_ms();
    log_token(r->method, sizeof r->method, method); /* logged and quoted in errors */
    rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (sane_request_id(rid))
        snprintf(r->id, sizeof r->id, "%s", rid);
    else
        snprintf(r->id, sizeof r->id, "req_%016" PRIx64 "%08" PRIx64, loop_rand(w),
                 ++w->seq & 0xffffffffu);
    metrics_connections(1);
    r->next = w->live;
    if (w->live != NULL)
        w->live->prev = r;
    w->live = r;
    w->n_live++;
    return r;
}

static void free_models(struct request *r)
{
    for (size_t i = 0; i < r->n_models; i++)
        free(r->models[i]);
    free(r->models);
    r->models = NULL;
    r->n_models = 0;
}

/* The total body memory is bounded: limits.max_body_bytes per request is not
 * enough when every connection may send one.  A request reserves what it
 * will buffer (its Content-Length up front, a chunked body as it arrives)
 * and gives it back when it is freed.  The cap is never below
 * limits.max_body_bytes, so a maximal body fits when nothing else is held.
 * 0 reserved, -1 it would not fit (nothing reserved). */
static int body_charge(struct request *r, uint64_t n)
{
    long long cap = r->cfg->limits_max_buffered_body_bytes;
    long long held = atomic_load(&body_buffered);

    if (cap < r->cfg->limits_max_body_bytes)
        cap = r->cfg->limits_max_body_bytes;
    do {
        if (n > (uint64_t)cap || held > cap - (long long)n)
            return -1;
    } while (!atomic_compare_exchange_weak(&body_buffered, &held, held + (long long)n));
    r->body_charged += n;
    return 0;
}

static void body_uncharge(struct request *r)
{
    if (r->body_charged > 0)
        atomic_fetch_sub(&body_buffered, (long long)r->body_charged);
    r->body_charged = 0;
}

void request_maybe_free(struct request *r)
{
    struct worker *w = r->w;

    if (!r->client_done || r->in_multi || r->in_deferred || r->retry_at != 0)
        return;
    if (r->awaited)
        w->n_awaited--;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        w->live = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    w->n_live--;
    metrics_connections(-1);
    if (r->streaming)
        metrics_streams(-1);
    upstream_free(r);
    body_uncharge(r);
    buf_free(&r->body);
    buf_free(&r->out);
    usage_info_free(&r->ui);
    free(r->local_msg);
    free_models(r);
    free(r->model);
    free(r->user);
    free(r->url_query);
    if (r->up_key != NULL) {
        explicit_bzero(r->up_key, strlen(r->up_key));
        free(r->up_key);
    }
    config_release(r->cfg);
    free(r);
}

static const char *outcome(const struct request *r)
{
    if (r->client_aborted)
        return "cancelled";
    if (r->route != NULL && r->route->kind != ROUTE_UPSTREAM) /* answered locally */
        return r->status >= 500 ? "proxy_error" : r->status >= 400 ? "rejected" : "ok";
    if (r->local_status >= 400)
        return r->local_status >= 500 ? "proxy_error" : "rejected";
    if (r->streaming && !r->saw_done)
        return "stream_error";
    if (r->status >= 400)
        return "upstream_error";
    return "ok";
}

/* Ledger and metrics fields are fixed-size and end up in JSON and label
 * values: cut between characters, and never carry invalid UTF-8 (the
 * served model and provider come from upstream's answer unchecked). */
static void copy_field(char *dst, size_t cap, const char *src)
{
    utf8_copy(dst, cap, src);
}

static int64_t tokens_from_chars(size_t chars)
{
    return (int64_t)((chars + 3) / 4); /* ~4 characters a token */
}

/* Works out the request's tokens and cost, and which source they have:
 * OpenRouter's usage.cost (exact), the price table applied to OpenRouter's
 * token counts (exact arithmetic), or a local estimate from the relayed
 * text when no usage arrived (aborted or failed stream). */
static void account(struct request *r, struct ledger_record *rec)
{
    const struct usage *u = &r->ui.usage;
    const char *model = r->ui.model ? r->ui.model : r->model;
    struct price pr;

    if (u->has_usage) {
        rec->prompt_tokens = u->prompt_tokens;
        rec->completion_tokens = u->completion_tokens;
        rec->total_tokens = u->total_tokens;
        rec->cached_tokens = u->cached_tokens;
        rec->reasoning_tokens = u->reasoning_tokens;
        if (u->has_cost) {
            rec->cost_pusd = pricing_usd_to_pusd(u->cost);
            rec->cost_source = COST_UPSTREAM;
            if (rec->cost_pusd >= PRICING_MAX_COST_PUSD) /* clamped: say so, it is billed */
                log_warn("request id=%s: upstream reported a cost of $%.6g, counted as the "
                         "ceiling of $%d",
                         r->id, u->cost, PRICING_MAX_COST_USD);
        } else if (model != NULL && pricing_current_lookup(model, &pr) == 0) {
            rec->cost_pusd = pricing_cost_pusd(&pr, u->prompt_tokens, u->completion_tokens,
                                               u->cached_tokens, u->reasoning_tokens);
            rec->cost_source = COST_PRICING;
        }
    } else if (r->streaming && (r->est_chars > 0 || r->client_aborted)) {
        rec->prompt_tokens = tokens_from_chars(buf_used(&r->body));
        rec->completion_tokens = tokens_from_chars(r->est_chars);
        rec->total_tokens = rec->prompt_tokens + rec->completion_tokens;
        rec->cost_source = COST_ESTIMATE;
        if (model != NULL && pricing_current_lookup(model, &pr) == 0)
            rec->cost_pusd = pricing_cost_pusd(&pr, rec->prompt_tokens, rec->completion_tokens, 0, 0);
    }
}

static const char *error_class(const struct request *r)
{
    static const char *const names[] = {"upstream_4xx", "upstream_5xx"};
    if (r->local_status >= 400)
        return r->local_code;
    if (r->client_aborted)
        return "client_cancelled";
    if (r->streaming && !r->saw_done)
        return r->saw_error_event ? "upstream_stream_error" : "stream_interrupted";
    if (r->status >= 400)
        return names[r->status >= 500];
    return "";
}

/* The request is over: one log line for every request, and one ledger
 * row for every API request, answered or not (404/405 are not API
 * requests).  Both come from the same record, so they always agree. */
static void request_finish(struct request *r)
{
    struct ledger_record rec;
    char model[128];
    int local = r->route != NULL &&
                (r->route->kind == ROUTE_HEALTHZ || r->route->kind == ROUTE_READYZ ||
                 r->route->kind == ROUTE_METRICS);

    memset(&rec, 0, sizeof rec);
    copy_field(rec.request_id, sizeof rec.request_id, r->id);
    rec.started_ms = r->t_wall_ms;
    copy_field(rec.client, sizeof rec.client,
               r->client >= 0 ? r->cfg->clients[r->client].name : "anonymous");
    copy_field(rec.user, sizeof rec.user, r->user);
    copy_field(rec.route, sizeof rec.route, r->route ? r->route->tail : "-");
    copy_field(rec.model, sizeof rec.model, r->model);
    copy_field(rec.served_model, sizeof rec.served_model, r->ui.model);
    copy_field(rec.provider, sizeof rec.provider, r->ui.provider);
    rec.stream = r->streaming || r->stream_req;
    rec.status = (int)r->status;
    rec.attempts = r->attempts;
    account(r, &rec);
    copy_field(rec.generation_id, sizeof rec.generation_id, r->gen_id ? r->gen_id : r->ui.gen_id);
    copy_field(rec.finish_reason, sizeof rec.finish_reason, r->ui.finish_reason);
    rec.latency_ms = (double)(loop_now_ns() - r->t_start) / 1e6;
    rec.ttfb_ms = r->t_first ? (double)(r->t_first - r->t_start) / 1e6 : -1;
    copy_field(rec.error_class, sizeof rec.error_class, error_class(r));
    copy_field(rec.outcome, sizeof rec.outcome, outcome(r));

    /* Health and metrics probes arrive every few seconds: debug level. */
    if (log_enabled(local ? LOG_LVL_DEBUG : LOG_LVL_INFO)) {
        char cost[48];
        log_token(model, sizeof model, r->model);
        pricing_format_usd(rec.cost_pusd, cost, sizeof cost);
        (local ? log_debug : log_info)("request id=%s method=%s route=%s model=%s status=%d stream=%d attempts=%d "
                 "prompt_tokens=%lld completion_tokens=%lld cost=%s cost_source=%s "
                 "latency_ms=%.1f ttfb_ms=%.1f outcome=%s",
                 r->id, r->method, r->route ? r->route->tail : "-", model, rec.status, rec.stream,
                 rec.attempts, (long long)rec.prompt_tokens, (long long)rec.completion_tokens, cost,
                 ledger_cost_source_name(rec.cost_source), rec.latency_ms, rec.ttfb_ms,
                 rec.outcome);
    }
    access_release(r->cfg, &r->grant, rec.total_tokens, rec.cost_pusd);
    if (r->route == NULL || r->route->kind != ROUTE_UPSTREAM || r->local_status == 405)
        return;
    metrics_observe(&rec);
    ledger_submit(&rec);
    /* Settled at an estimate: /generation gives upstream's figure later,
     * asked with the key this request used, and the difference goes to the
     * budget it was settled against, in the period it was settled in. */
    if (rec.cost_source == COST_ESTIMATE && rec.generation_id[0] != '\0') {
        housekeeping_reconcile(rec.generation_id,
                               r->client >= 0 ? r->cfg->clients[r->client].name : NULL,
                               util_wall_ms() /* as access_release just settled it */,
                               rec.cost_pusd, r->up_key);
    }
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
        r->t_first = loop_now_ns();
    ret = MHD_queue_response(r->conn, r->local_status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct request *r = cls;
    (void)pos;

    if (r->ready > 0) {
        size_t n = r->ready < max ? r->ready : max;
        memcpy(out, buf_head(&r->out), n);
        buf_consume(&r->out, n);
        r->ready -= n;
        if (r->paused && r->ready < UNPAUSE_BELOW) {
            r->want_unpause = 1;
            loop_defer(r);
        }
        return (ssize_t)n;
    }
    if (r->upstream_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
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
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            buf_used(&r->out), (void *)buf_head(&r->out), free_buffer_base, r->out.data);
        if (resp != NULL)
            memset(&r->out, 0, sizeof r->out);
    }
    if (resp == NULL)
        return MHD_NO;
    for (size_t i = 0; i < r->n_rhdrs; i++)
        MHD_add_response_header(resp, r->rhdrs[i].name, r->rhdrs[i].value);
    add_common_headers(r, resp);
    r->status = (unsigned)r->up_status;
    r->committed = 1;
    if (!r->streaming && r->t_first == 0)
        r->t_first = loop_now_ns();
    ret = MHD_queue_response(r->conn, (unsigned)r->up_status, resp);
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

static void parse_body(struct request *r)
{
    struct body_fields f;

    switch (body_parse(buf_head(&r->body), buf_used(&r->body), &f)) {
    case BODY_INVALID_JSON:
        set_local(r, 400, "invalid_json", "request body is not valid JSON");
        return;
    case BODY_NOT_OBJECT:
        set_local(r, 400, "invalid_body", "request body must be a JSON object");
        return;
    case BODY_DUPLICATE_MODEL:
        set_local(r, 400, "duplicate_field",
                  "request body has more than one \"model\" or \"models\" member");
        return;
    case BODY_BAD_MODELS:
        set_local(r, 400, "invalid_models", "\"models\" must be an array of model names (valid UTF-8, "
                                            "no control characters)");
        return;
    case BODY_INVALID_MODEL:
        set_local(r, 400, "invalid_model",
                  "\"model\" must be valid UTF-8 without control characters");
        return;
    case BODY_OK:
        break;
    }
    if (f.model != NULL)
        r->model = f.model;
    if (f.max_tokens > 0)
        r->max_tokens = f.max_tokens;
    if (f.user != NULL)
        r->user = f.user;
    free_models(r);
    r->models = f.models;
    r->n_models = f.n_models;
    r->stream_req = f.stream;
}

static const char *query_arg(struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
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

/* GET /v1/usage: the report's aggregation as JSON.  A short read-only
 * SQLite query on the worker thread (WAL: it never waits for the writer);
 * it is an operator's endpoint, not a hot path. */
static enum MHD_Result answer_usage(struct request *r, const char *only_client)
{
    struct report_query q;
    const char *v;
    char err[256];
    int64_t now;
    sqlite3 *db = NULL;
    cJSON *json = NULL;
    char *text = NULL;

    now = util_wall_ms();
    memset(&q, 0, sizeof q);
    q.client = only_client;
    if (report_parse_time(query_arg(r, "since") ? query_arg(r, "since") : "30d", now, &q.since_ms) < 0 ||
        ((v = query_arg(r, "until")) != NULL && report_parse_time(v, now, &q.until_ms) < 0)) {
        set_local(r, 400, "invalid_time", "since/until must look like 24h, 7d or 2026-11-01");
        return queue_local(r);
    }
    if ((v = query_arg(r, "by")) != NULL && report_parse_by(v, &q.by) < 0) {
        set_local(r, 400, "invalid_group", "by must be one of key, model, day, user, none");
        return queue_local(r);
    }
    if (sqlite3_open_v2(r->cfg->ledger_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        json = report_query_json(db, &q, err, sizeof err);
    } else {
        snprintf(err, sizeof err, "cannot open the ledger");
    }
    sqlite3_close(db);
    if (json == NULL || (text = cJSON_PrintUnformatted(json)) == NULL) {
        cJSON_Delete(json);
        set_local(r, 500, "ledger_unavailable", "%s", err);
        return queue_local(r);
    }
    cJSON_Delete(json);
    return queue_json(r, 200, text, "application/json");
}

/* GET /readyz: 200 only when requests can be served and accounted for. */
static enum MHD_Result answer_readyz(struct request *r)
{
    cJSON *root = cJSON_CreateObject(), *reasons = cJSON_AddArrayToObject(root, "reasons");
    char *text;
    int ready;

    if (r->cfg->upstream_key == NULL)
        cJSON_AddItemToArray(reasons, cJSON_CreateString("no upstream API key is configured"));
    if (!ledger_healthy())
        cJSON_AddItemToArray(reasons, cJSON_CreateString("the usage ledger is not writable"));
    if (pricing_current_size() == 0)
        cJSON_AddItemToArray(reasons, cJSON_CreateString("no price table is loaded yet"));
    ready = cJSON_GetArraySize(reasons) == 0;
    cJSON_AddBoolToObject(root, "ready", ready);
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return queue_json(r, ready ? 200 : 503, text, "application/json");
}

static enum MHD_Result answer_metrics(struct request *r)
{
    buf_t b;
    memset(&b, 0, sizeof b);
    metrics_render(&b);
    if (buf_cstr(&b) == NULL) {
        buf_free(&b);
        return MHD_NO;
    }
    /* queue_json frees with free(): hand over the base pointer (off is 0). */
    return queue_json(r, 200, b.data, "text/plain; version=0.0.4; charset=utf-8");
}

/* The body is complete: answer locally or go upstream. */
static enum MHD_Result deny(struct request *r, const struct access_denial *d)
{
    set_local(r, d->status, d->code, "%s", d->message);
    r->local_retry_after = d->retry_after_s;
    return queue_local(r);
}

/* The key this request goes upstream with: the client's own OpenRouter
 * key, one it passes in X-OpenRouter-Key (if allowed), or the shared one. */
static const char *pick_upstream_key(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    if (r->client >= 0) {
        const struct orp_client *c = &cfg->clients[r->client];
        const char *own = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-OpenRouter-Key");
        if (c->pass_through_keys && own != NULL && strncmp(own, "sk-or-", 6) == 0)
            return own;
        if (c->upstream_key != NULL)
            return c->upstream_key;
    }
    return cfg->upstream_key;
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
    set_local(r, 400, "invalid_request", "%s", hc.bad);
    return -1;
}

/* Who is asking, from the headers alone, before a body byte is read: a
 * stranger is answered 401 at once (no "100 Continue"), so it cannot make
 * orproxy buffer anything.  The client and its upstream key are kept for
 * dispatch().  0 fine, -1 refused (the answer is set). */
static int identify_client(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    enum route_kind kind = r->route->kind;
    struct access_denial d;
    const char *key;

    if (kind == ROUTE_HEALTHZ || kind == ROUTE_READYZ)
        return 0;
    memset(&d, 0, sizeof d);
    r->client = access_identify(cfg, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                                  "Authorization"), &d);
    if (r->client == -2) {
        r->client = -1;
        set_local(r, d.status, d.code, "%s", d.message);
        r->local_retry_after = d.retry_after_s;
        return -1;
    }
    if (kind == ROUTE_METRICS && r->client >= 0 && !cfg->clients[r->client].admin) {
        set_local(r, 403, "admin_only", "metrics need an admin client key");
        return -1;
    }
    if (kind != ROUTE_UPSTREAM)
        return 0;
    key = pick_upstream_key(r);
    if (key == NULL) {
        set_local(r, 500, "no_upstream_key",
                  "orproxy has no upstream API key configured: set the %s environment variable "
                  "or upstream.api_key_file",
                  cfg->upstream_api_key_env);
        return -1;
    }
    r->up_key = strdup(key);
    if (r->up_key == NULL) {
        set_local(r, 500, "out_of_memory", "orproxy is out of memory");
        return -1;
    }
    return 0;
}

/* Aliases (the client's, then the global ones) and the client's defaults,
 * applied to the body.  The body stays byte for byte when nothing applies. */
static void edit_body(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    const struct orp_client *c = r->client >= 0 ? &cfg->clients[r->client] : NULL;
    const struct bodyedit e = {
        .aliases = c != NULL ? c->aliases : NULL,
        .n_aliases = c != NULL ? (size_t)c->n_aliases : 0,
        .more_aliases = cfg->aliases,
        .n_more_aliases = (size_t)cfg->n_aliases,
        .defaults = c != NULL ? &c->defaults : NULL,
    };
    char err[128], *nb;
    int changed = 0;

    /* Nothing to apply: skip the second parse (the common case). */
    if (!bodyedit_needed(&e))
        return;
    nb = bodyedit_apply(buf_head(&r->body), buf_used(&r->body), &e, err, sizeof err, &changed);
    if (nb != NULL && changed) {
        buf_reset(&r->body);
        buf_appendz(&r->body, nb);
        free(r->model);
        free(r->user);
        r->model = r->user = NULL;
        parse_body(r); /* the model (and max_tokens) the upstream will see */
    }
    free(nb);
}

/* Tokens and dollars this request may use at most, for limits and budget
 * reservations: the prompt (about 4 bytes a token) plus max_tokens, or
 * 4096 completion tokens when the request sets no max_tokens. */
static void estimate(const struct request *r, long long *tokens, int64_t *pusd)
{
    long long prompt = (long long)(buf_used(&r->body) + 3) / 4;
    long long completion = r->max_tokens > 0 ? r->max_tokens : 4096;
    struct price pr;

    *tokens = prompt + completion;
    *pusd = 0;
    /* Any model of the fallback list may serve it: reserve at the dearest. */
    for (size_t i = 0; i <= r->n_models; i++) {
        const char *m = i == 0 ? r->model : r->models[i - 1];
        int64_t c;
        if (m == NULL || pricing_current_lookup(m, &pr) < 0)
            continue;
        c = pricing_cost_pusd(&pr, prompt, completion, 0, 0);
        if (c > *pusd)
            *pusd = c;
    }
}

/* The model rules hold for every model the request may be served by:
 * "model" and each fallback in "models".  A request that names only a
 * fallback list is checked on the list alone. */
static int check_models(struct request *r, struct access_denial *d)
{
    if ((r->model != NULL || r->n_models == 0) &&
        access_check_model(r->cfg, r->client, r->model, d) < 0)
        return -1;
    for (size_t i = 0; i < r->n_models; i++)
        if (access_check_model(r->cfg, r->client, r->models[i], d) < 0)
            return -1;
    return 0;
}

/* The body is complete: answer locally or go upstream. */
static enum MHD_Result dispatch(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    struct access_denial d;
    long long est_tokens;
    int64_t est_pusd;

    memset(&d, 0, sizeof d);
    if (r->local_status != 0)
        return queue_local(r);
    if (r->route->kind == ROUTE_HEALTHZ) {
        set_local(r, 200, "ok", "ok");
        return queue_local(r);
    }
    if (r->route->kind == ROUTE_READYZ)
        return answer_readyz(r);

    /* The client (and its upstream key) were decided from the headers, before
     * the body: identify_client().  A refused one never gets here. */
    if (r->route->kind == ROUTE_METRICS)
        return answer_metrics(r);
    if (r->route->kind == ROUTE_USAGE) {
        int admin = r->client < 0 || cfg->clients[r->client].admin;
        return answer_usage(r, admin ? NULL : cfg->clients[r->client].name);
    }
    if (r->route->kind == ROUTE_KEY)
        return queue_json(r, 200, access_key_json(cfg, r->client), "application/json");

    if (r->route->json_body) {
        parse_body(r);
        if (r->local_status == 0)
            edit_body(r);
    }
    if (r->local_status != 0)
        return queue_local(r);
    if (r->route->json_body && check_models(r, &d) < 0)
        return deny(r, &d);
    estimate(r, &est_tokens, &est_pusd);
    if (access_admit(cfg, r->client, est_tokens, est_pusd, &r->grant, &d) < 0)
        return deny(r, &d);

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
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
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
    struct conn_watch *prev, *next;
};

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct worker *w = cls;
    struct conn_watch *cw = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (cw = calloc(1, sizeof *cw)) == NULL)
            return; /* unwatched: MHD's inactivity timeout still applies */
        cw->conn = conn;
        cw->fd = ci->connect_fd;
        cw->receiving = 1;
        cw->since_ms = loop_now_ms();
        cw->next = w->watches;
        if (w->watches != NULL)
            w->watches->prev = cw;
        w->watches = cw;
        *socket_context = cw;
    } else if (cw != NULL) {
        if (cw->prev != NULL)
            cw->prev->next = cw->next;
        else
            w->watches = cw->next;
        if (cw->next != NULL)
            cw->next->prev = cw->prev;
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
        cw->since_ms = loop_now_ms();
    }
}

void server_check_slow_clients(struct worker *w, int64_t now)
{
    int64_t limit = (int64_t)w->cfg->limits_client_timeout_s * 1000;

    for (struct conn_watch *cw = w->watches; cw != NULL; cw = cw->next) {
        if (!cw->receiving || now - cw->since_ms <= limit)
            continue;
        cw->receiving = 0;
        log_info("client sent no complete request within %d s: closing its connection",
                 w->cfg->limits_client_timeout_s);
        shutdown(cw->fd, SHUT_RDWR);
    }
}

static void set_busy(struct request *r)
{
    set_local(r, 503, "server_busy",
              "orproxy already holds its limit of %lld bytes of request bodies "
              "(limits.max_buffered_body_bytes); retry shortly",
              r->cfg->limits_max_buffered_body_bytes);
    r->local_retry_after = 1;
}

static enum MHD_Result busy(struct request *r)
{
    set_busy(r);
    return queue_local(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct worker *w = cls;
    struct request *r = *con_cls;
    const struct orp_config *cfg;

    if (r == NULL) {
        const char *cl;
        r = request_new(w, conn, method);
        if (r == NULL)
            return MHD_NO;
        *con_cls = r;
        cfg = r->cfg;
        switch (route_match(url, method, &r->route)) {
        case ROUTE_OK:
            break;
        case ROUTE_BAD_METHOD:
            set_local(r, 405, "method_not_allowed", "method %s is not allowed here; use %s",
                      r->method, r->route->method);
            break;
        case ROUTE_NOT_FOUND:
            set_local(r, 404, "not_found", "no such endpoint");
            break;
        }
        /* Everything refused here is refused before a body byte is read and
         * before any "100 Continue": MHD discards the body and closes the
         * connection after the answer. */
        if (check_head(r, version) < 0)
            return queue_local(r);
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)cfg->limits_max_body_bytes) {
            set_local(r, 413, "body_too_large", "request body is larger than %lld bytes",
                      cfg->limits_max_body_bytes);
            return queue_local(r);
        }
        if (r->local_status == 0 && identify_client(r) < 0)
            return queue_local(r);
        if (r->local_status == 0 && r->route->json_body && cl != NULL &&
            body_charge(r, strtoull(cl, NULL, 10)) < 0)
            return busy(r);
        return MHD_YES;
    }

    cfg = r->cfg;
    if (r->client_gone)
        return MHD_NO; /* resumed only to be closed: see server_check_waiting() */
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->body_seen += n;
        if (r->committed)
            return MHD_YES;
        if (r->body_seen > (uint64_t)cfg->limits_max_body_bytes) {
            /* A response queued mid-upload is never sent by MHD 0.9.75 (the
             * client sees an empty reply), so drain the rest and answer 413
             * at the end; a body far over the limit is cut off instead. */
            if (r->local_status != 413) {
                set_local(r, 413, "body_too_large", "request body is larger than %lld bytes",
                          cfg->limits_max_body_bytes);
                buf_free(&r->body);
                body_uncharge(r);
            }
            if (r->body_seen > (uint64_t)cfg->limits_max_body_bytes * 2 + DRAIN_SLACK)
                return MHD_NO;
            return MHD_YES;
        }
        if (r->local_status == 0 && r->route->json_body && r->body_seen > r->body_charged &&
            body_charge(r, r->body_seen - r->body_charged) < 0) {
            /* A chunked body over the total: stop keeping it, read the rest
             * (a response queued mid-upload is never sent) and answer 503. */
            set_busy(r);
            buf_free(&r->body);
            body_uncharge(r);
            return MHD_YES;
        }
        if (r->local_status == 0 && r->route->json_body && buf_append(&r->body, upload_data, n) < 0) {
            set_local(r, 500, "out_of_memory", "orproxy is out of memory");
            return queue_local(r);
        }
        return MHD_YES;
    }

    if (r->committed)
        return MHD_YES;
    if (r->resp_ready) {
        r->resp_ready = 0;
        return r->local_status != 0 ? queue_local(r) : queue_upstream(r);
    }
    if (r->attempts > 0 || r->retry_at != 0) {
        /* Woken with nothing to send yet: keep waiting. */
        MHD_suspend_connection(conn);
        r->suspended = 1;
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
    if (r->w->n_awaited >= r->w->max_connections) {
        log_warn("request id=%s: client went away and %u answers are already awaited for "
                 "clients that hung up; dropping its upstream transfer, its cost is not known",
                 r->id, r->w->n_awaited);
        return 0;
    }
    r->awaited = 1;
    r->w->n_awaited++;
    return 1;
}

/* The one end of a request: log line, ledger row, budget settled. */
static void request_end(struct request *r)
{
    if (r->status == 0)
        r->status = r->local_status;
    request_finish(r);
    request_maybe_free(r);
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
                            (!r->streaming && r->local_status == 0 && r->up_status != 0);
        if (r->client_aborted && await_after_hangup(r)) {
            log_debug("request id=%s: client went away; upstream bills it anyway, so its "
                      "answer is awaited and dropped", r->id);
            return; /* server_upstream_settled() ends it */
        }
        if (r->client_aborted && r->in_multi)
            log_debug("request id=%s: client went away, aborting upstream", r->id);
    }
    upstream_abort(r);
    loop_retry_cancel(r);
    request_end(r);
}

void server_upstream_settled(struct request *r)
{
    if (r->client_done)
        request_end(r);
    /* else the client is gone but MHD has not said so yet: on_completed() ends it */
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_debug("http: %s", msg);
}

int server_start(struct worker *w)
{
    const struct orp_config *cfg = w->cfg;
    unsigned limit = w->max_connections;

    w->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, w,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)w->listen_fd, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->limits_client_timeout_s,
        /* A connection's memory: its request line and headers, and room
         * for the response headers.  It is most of what an idle or slow
         * stream costs (MHD's default is 32 KiB). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits_max_header_bytes + 4096,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, w, MHD_OPTION_NOTIFY_CONNECTION, on_connection, w,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, w,
        /* -1 is the level that answers 400 to a blank before a header's colon
         * (0.9.75 has that test reversed); 1 would close the connection
         * without a word on a space in the URI.  check_head() does the rest. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)-1,
        MHD_OPTION_END);
    if (w->mhd == NULL) {
        log_error("worker %d: cannot start the HTTP server", w->id);
        return -1;
    }
    return 0;
}

static void wake(struct request *r)
{
    if (r->suspended) {
        r->want_resume = 1;
        loop_defer(r);
    }
}

void server_fail(struct request *r, unsigned status, const char *code, const char *msg)
{
    set_local(r, status, code, "%s", msg);
    server_response_ready(r);
}

void server_response_ready(struct request *r)
{
    r->resp_ready = 1;
    wake(r);
}

void server_data_ready(struct request *r)
{
    wake(r);
}

void server_check_waiting(struct request *r)
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
    loop_retry_cancel(r); /* a retry not started yet costs nothing: drop it */
    if (await_after_hangup(r)) {
        log_debug("request id=%s: client went away while waiting for upstream; upstream bills "
                  "it anyway, so its answer is awaited and dropped", r->id);
    } else {
        log_debug("request id=%s: client went away while waiting for upstream", r->id);
        upstream_abort(r);
    }
    wake(r);
}

void server_cancel(struct request *r, const char *why)
{
    int awaited = r->client_done && r->in_multi; /* a hung-up client's answer, still due */

    upstream_abort(r);
    loop_retry_cancel(r);
    if (awaited) {
        log_warn("request id=%s: shutting down before upstream answered a request whose client "
                 "hung up; its cost is not known", r->id);
        request_end(r);
        return;
    }
    if (r->client_done)
        return;
    if (r->streaming) {
        char *ev = apierr_sse_event(503, "shutting_down", why);
        /* Drop any half-received event, then end with the error. */
        r->out.len = r->out.off + r->ready;
        if (ev != NULL && buf_appendz(&r->out, ev) == 0)
            r->ready += strlen(ev);
        free(ev);
        r->upstream_done = 1;
        server_data_ready(r);
    } else if (!r->committed) {
        server_fail(r, 503, "shutting_down", why);
    }
}
