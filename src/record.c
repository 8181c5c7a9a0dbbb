/* record.c - see record.h.  Cost sources: OpenRouter's usage.cost (exact),
 * the price table applied to OpenRouter's token counts (exact arithmetic),
 * or a local estimate from the relayed text when no usage arrived (aborted
 * or failed stream); doc/DESIGN.md follows a request to its ledger row. */
#include "record.h"

#include <ctype.h>
#include <string.h>

#include "housekeeping.h"
#include "ledger.h"
#include "log.h"
#include "metrics.h"
#include "pricing.h"
#include "utf8.h"
#include "util.h"

void record_token(char *dst, size_t cap, const char *s)
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

/* The client left before it had the whole answer: the request ends (is
 * recorded) in a phase before the commit, or in GONE or AWAITED, or the
 * client cut a committed answer short.  MHD reports a clean end only after
 * sending an answer, so an uncommitted end is always a hang-up. */
static int client_cancelled(const struct request *r)
{
    return r->phase != PHASE_RESPONDING || r->cut_short;
}

/* Read at the request's end, in the phase it ended in (before FINISHED).
 * A client that hung up is what the request came to, whatever was decided
 * before (a 413 followed by a hang-up is cancelled, in both fields). */
struct record_class record_classify(const struct request *r)
{
    static const char *const upstream_names[] = {"upstream_4xx", "upstream_5xx"};
    struct record_class c = {"ok", ""};

    if (client_cancelled(r)) {
        c.outcome = "cancelled";
        c.error_class = "client_cancelled";
    } else if (r->route != NULL && r->route->kind != ROUTE_UPSTREAM) { /* answered locally */
        c.outcome = r->status >= 500 ? "proxy_error" : r->status >= 400 ? "rejected" : "ok";
        if (r->local_status >= 400)
            c.error_class = r->local_code;
    } else if (r->local_status >= 400) {
        c.outcome = r->local_status >= 500 ? "proxy_error" : "rejected";
        c.error_class = r->local_code;
    } else if (r->streaming && !r->saw_done) {
        c.outcome = "stream_error";
        c.error_class = r->saw_error_event ? "upstream_stream_error" : "stream_interrupted";
    } else if (r->status >= 400) {
        c.outcome = "upstream_error";
        c.error_class = upstream_names[r->status >= 500];
    }
    return c;
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

static void account(const struct request *r, struct ledger_record *rec)
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
    } else if ((r->streaming && (r->est_chars > 0 || client_cancelled(r))) ||
               (r->stream_req && r->attempts > 0 && client_cancelled(r))) {
        /* A stream cancelled upstream, even before its first byte (upstream had
         * the request and may bill its prompt): estimated, never free. */
        rec->prompt_tokens = tokens_from_chars(buf_used(&r->body));
        rec->completion_tokens = tokens_from_chars(r->est_chars);
        rec->total_tokens = rec->prompt_tokens + rec->completion_tokens;
        rec->cost_source = COST_ESTIMATE;
        if (model != NULL && pricing_current_lookup(model, &pr) == 0)
            rec->cost_pusd = pricing_cost_pusd(&pr, rec->prompt_tokens, rec->completion_tokens, 0, 0);
    }
}

static void fill(const struct request *r, struct ledger_record *rec)
{
    struct record_class c = record_classify(r);

    memset(rec, 0, sizeof *rec);
    copy_field(rec->request_id, sizeof rec->request_id, r->id);
    rec->started_ms = r->t_wall_ms;
    copy_field(rec->client, sizeof rec->client,
               r->client >= 0 ? r->cfg->clients[r->client].name : "anonymous");
    copy_field(rec->user, sizeof rec->user, r->user);
    copy_field(rec->route, sizeof rec->route, r->route ? r->route->tail : "-");
    copy_field(rec->model, sizeof rec->model, r->model);
    copy_field(rec->served_model, sizeof rec->served_model, r->ui.model);
    copy_field(rec->provider, sizeof rec->provider, r->ui.provider);
    rec->stream = r->streaming || r->stream_req;
    rec->status = (int)r->status;
    rec->attempts = r->attempts;
    account(r, rec);
    copy_field(rec->generation_id, sizeof rec->generation_id, r->gen_id ? r->gen_id : r->ui.gen_id);
    copy_field(rec->finish_reason, sizeof rec->finish_reason, r->ui.finish_reason);
    rec->latency_ms = (double)(util_mono_ns() - r->t_start) / 1e6;
    rec->ttfb_ms = r->t_first ? (double)(r->t_first - r->t_start) / 1e6 : -1;
    copy_field(rec->error_class, sizeof rec->error_class, c.error_class);
    copy_field(rec->outcome, sizeof rec->outcome, c.outcome);
}

static void log_line(const struct request *r, const struct ledger_record *rec)
{
    int local = r->route != NULL &&
                (r->route->kind == ROUTE_HEALTHZ || r->route->kind == ROUTE_READYZ ||
                 r->route->kind == ROUTE_METRICS || r->route->kind == ROUTE_UI);
    char model[128], cost[48];

    /* Health and metrics probes arrive every few seconds: debug level. */
    if (!log_enabled(local ? LOG_LVL_DEBUG : LOG_LVL_INFO))
        return;
    record_token(model, sizeof model, r->model);
    pricing_format_usd(rec->cost_pusd, cost, sizeof cost);
    (local ? log_debug : log_info)("request id=%s method=%s route=%s model=%s status=%d stream=%d attempts=%d "
             "prompt_tokens=%lld completion_tokens=%lld cost=%s cost_source=%s "
             "latency_ms=%.1f ttfb_ms=%.1f outcome=%s",
             r->id, r->method, r->route ? r->route->tail : "-", model, rec->status, rec->stream,
             rec->attempts, (long long)rec->prompt_tokens, (long long)rec->completion_tokens, cost,
             ledger_cost_source_name(rec->cost_source), rec->latency_ms, rec->ttfb_ms,
             rec->outcome);
}

void record_finish(struct request *r)
{
    struct ledger_record rec;

    fill(r, &rec);
    log_line(r, &rec);
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
