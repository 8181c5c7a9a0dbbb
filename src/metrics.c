/* metrics.c - see metrics.h.
 *
 * Label sets are kept in small fixed tables searched linearly: a few
 * routes and statuses, and at most MAX_SERIES (model, client) pairs; past
 * that, new models are counted under model="other" so a client sending
 * random model names cannot grow memory without bound.
 *
 * No process-wide lock on the request path: each thread that records a
 * request gets its own shard (the tables below, about 100 KB), created on
 * its first call and kept for the process's life, and only that thread
 * writes it.  The shard's mutex is therefore taken by its owner and, for a
 * moment, by a scrape, which sums the shards into one set of tables with
 * the same cap (so a scrape shows at most MAX_SERIES series per table,
 * whatever the number of workers).  Sums are exact: every count is added
 * under its shard's lock.  The series' order in the text follows the
 * shards', which Prometheus does not care about. */
#include "metrics.h"

#include "alerts.h"
#include "housekeeping.h"
#include "ledger_pg.h"
#include "pricing.h"
#include "utf8.h"
#include "version.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 256
#define NBUCKETS 12

static const double bounds[NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,    2.5,   5,    10,  30};

struct hist {
    unsigned long long b[NBUCKETS], count;
    double sum;
};

struct req_series { /* orproxy_requests_total{route,status,model} */
    char route[32], model[128];
    int status;
    unsigned long long n;
};

struct use_series { /* tokens and cost by model and client */
    char model[128], client[64];
    unsigned long long prompt, completion;
    long long cost_pusd;
};

struct route_hist {
    char route[32];
    struct hist dur, ttfb;
};

struct tables {
    struct req_series req[MAX_SERIES];
    int n_req;
    struct use_series use[MAX_SERIES];
    int n_use;
    struct route_hist rh[16];
    int n_rh;
    unsigned long long attempts, retries;
    long conns, streams; /* gauges: this thread's share (either sign) */
};

/* One thread's counters.  Written by its owner only, under mu. */
struct shard {
    pthread_mutex_t mu;
    struct tables t;
    struct shard *next; /* the list of all shards; never shrinks */
};

static pthread_mutex_t shards_mu = PTHREAD_MUTEX_INITIALIZER; /* guards shards (the list) */
static struct shard *shards;
static _Thread_local struct shard *mine;
static struct shard fallback = {.mu = PTHREAD_MUTEX_INITIALIZER}; /* when calloc fails */
static atomic_ullong reload_ok, reload_failed;

/* This thread's shard, created on its first call. */
static struct shard *my_shard(void)
{
    struct shard *s = mine;

    if (s != NULL)
        return s;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return mine = &fallback; /* shared: still exact, under its mutex */
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_lock(&shards_mu);
    s->next = shards;
    shards = s;
    pthread_mutex_unlock(&shards_mu);
    return mine = s;
}

void metrics_connections(int delta)
{
    struct shard *s = my_shard();
    pthread_mutex_lock(&s->mu);
    s->t.conns += delta;
    pthread_mutex_unlock(&s->mu);
}

void metrics_streams(int delta)
{
    struct shard *s = my_shard();
    pthread_mutex_lock(&s->mu);
    s->t.streams += delta;
    pthread_mutex_unlock(&s->mu);
}

void metrics_reload(int ok)
{
    atomic_fetch_add(ok ? &reload_ok : &reload_failed, 1);
}

static void hist_add(struct hist *h, double v)
{
    for (int i = 0; i < NBUCKETS; i++)
        if (v <= bounds[i])
            h->b[i]++;
    h->count++;
    h->sum += v;
}

static struct req_series *req_slot(struct tables *M, const char *route, int status,
                                   const char *model)
{
    for (int i = 0; i < M->n_req; i++)
        if (M->req[i].status == status && strcmp(M->req[i].route, route) == 0 &&
            strcmp(M->req[i].model, model) == 0)
            return &M->req[i];
    if (M->n_req == MAX_SERIES)
        return strcmp(model, "other") ? req_slot(M, route, status, "other")
                                      : &M->req[MAX_SERIES - 1];
    utf8_copy(M->req[M->n_req].route, sizeof M->req[0].route, route);
    utf8_copy(M->req[M->n_req].model, sizeof M->req[0].model, model);
    M->req[M->n_req].status = status;
    return &M->req[M->n_req++];
}

static struct use_series *use_slot(struct tables *M, const char *model, const char *client)
{
    for (int i = 0; i < M->n_use; i++)
        if (strcmp(M->use[i].model, model) == 0 && strcmp(M->use[i].client, client) == 0)
            return &M->use[i];
    if (M->n_use == MAX_SERIES)
        return strcmp(model, "other") ? use_slot(M, "other", client) : &M->use[MAX_SERIES - 1];
    utf8_copy(M->use[M->n_use].model, sizeof M->use[0].model, model);
    utf8_copy(M->use[M->n_use].client, sizeof M->use[0].client, client);
    return &M->use[M->n_use++];
}

static struct route_hist *route_slot(struct tables *M, const char *route)
{
    for (int i = 0; i < M->n_rh; i++)
        if (strcmp(M->rh[i].route, route) == 0)
            return &M->rh[i];
    if (M->n_rh == (int)(sizeof M->rh / sizeof M->rh[0]))
        return &M->rh[M->n_rh - 1];
    utf8_copy(M->rh[M->n_rh].route, sizeof M->rh[0].route, route);
    return &M->rh[M->n_rh++];
}

/* The last answer from upstream (for the console's health page): two
 * relaxed atomics, since a reader may pair one request's status with the
 * next one's time, which is harmless for a display. */
static _Atomic int last_up_status;
static _Atomic int64_t last_up_ms;

void metrics_upstream_last(int *status, int64_t *at_ms)
{
    *status = atomic_load_explicit(&last_up_status, memory_order_relaxed);
    *at_ms = atomic_load_explicit(&last_up_ms, memory_order_relaxed);
}

void metrics_observe(const struct ledger_record *rec)
{
    char model[sizeof ((struct req_series *)0)->model];
    struct shard *s = my_shard();
    struct tables *M = &s->t;
    struct route_hist *rh;

    /* The label as it will be stored, so that lookups compare like with like. */
    utf8_copy(model, sizeof model,
              rec->served_model[0] ? rec->served_model : rec->model[0] ? rec->model : "none");
    if (rec->attempts > 0) {
        atomic_store_explicit(&last_up_status, rec->status, memory_order_relaxed);
        atomic_store_explicit(&last_up_ms, rec->started_ms + (int64_t)rec->latency_ms,
                              memory_order_relaxed);
    }
    pthread_mutex_lock(&s->mu);
    req_slot(M, rec->route, rec->status, model)->n++;
    if (rec->prompt_tokens || rec->completion_tokens || rec->cost_pusd) {
        struct use_series *u = use_slot(M, model, rec->client[0] ? rec->client : "anonymous");
        u->prompt += (unsigned long long)rec->prompt_tokens;
        u->completion += (unsigned long long)rec->completion_tokens;
        u->cost_pusd = pricing_add_pusd(u->cost_pusd, rec->cost_pusd);
    }
    M->attempts += (unsigned long long)rec->attempts;
    if (rec->attempts > 1)
        M->retries += (unsigned long long)rec->attempts - 1;
    rh = route_slot(M, rec->route);
    hist_add(&rh->dur, rec->latency_ms / 1000.0);
    if (rec->ttfb_ms >= 0)
        hist_add(&rh->ttfb, rec->ttfb_ms / 1000.0);
    pthread_mutex_unlock(&s->mu);
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (int i = 0; i < NBUCKETS; i++)
        into->b[i] += h->b[i];
    into->count += h->count;
    into->sum += h->sum;
}

/* Adds shard tables t into the sum M, series by series, with the same cap
 * (and the same fold into "other") as one shard has. */
static void tables_merge(struct tables *M, const struct tables *t)
{
    for (int i = 0; i < t->n_req; i++)
        req_slot(M, t->req[i].route, t->req[i].status, t->req[i].model)->n += t->req[i].n;
    for (int i = 0; i < t->n_use; i++) {
        struct use_series *u = use_slot(M, t->use[i].model, t->use[i].client);
        u->prompt += t->use[i].prompt;
        u->completion += t->use[i].completion;
        u->cost_pusd = pricing_add_pusd(u->cost_pusd, t->use[i].cost_pusd);
    }
    for (int i = 0; i < t->n_rh; i++) {
        struct route_hist *rh = route_slot(M, t->rh[i].route);
        hist_merge(&rh->dur, &t->rh[i].dur);
        hist_merge(&rh->ttfb, &t->rh[i].ttfb);
    }
    M->attempts += t->attempts;
    M->retries += t->retries;
    M->conns += t->conns;
    M->streams += t->streams;
}

/* The sum of every shard, in a malloc'd tables (NULL: no memory). */
static struct tables *tables_sum(void)
{
    struct tables *M = calloc(1, sizeof *M);
    struct shard *list;

    if (M == NULL)
        return NULL;
    pthread_mutex_lock(&shards_mu);
    list = shards;
    pthread_mutex_unlock(&shards_mu);
    /* Shards are only ever pushed at the head: the list from here on is fixed. */
    for (struct shard *s = list; s != NULL; s = s->next) {
        pthread_mutex_lock(&s->mu);
        tables_merge(M, &s->t);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&fallback.mu);
    tables_merge(M, &fallback.t);
    pthread_mutex_unlock(&fallback.mu);
    return M;
}

/* Label values are client-controlled (model names): escape per the format.
 * They were made valid UTF-8 when copied into their series (utf8_copy),
 * which the exposition format requires. */
static void label(buf_t *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            buf_append(b, "\\\\", 2);
        else if (*v == '"')
            buf_append(b, "\\\"", 2);
        else if (*v == '\n')
            buf_append(b, "\\n", 2);
        else
            buf_append(b, v, 1);
    }
}

static void printf_to(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void printf_to(buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void render_hist(buf_t *b, const char *name, const char *route, const struct hist *h)
{
    for (int i = 0; i < NBUCKETS; i++) {
        printf_to(b, "%s_bucket{route=\"", name);
        label(b, route);
        printf_to(b, "\",le=\"%g\"} %llu\n", bounds[i], h->b[i]);
    }
    printf_to(b, "%s_bucket{route=\"", name);
    label(b, route);
    printf_to(b, "\",le=\"+Inf\"} %llu\n", h->count);
    printf_to(b, "%s_sum{route=\"", name);
    label(b, route);
    printf_to(b, "\"} %.6f\n", h->sum);
    printf_to(b, "%s_count{route=\"", name);
    label(b, route);
    printf_to(b, "\"} %llu\n", h->count);
}

/* ledger.backend = "postgresql" only: the shared ledger and its spool. */
static void render_postgresql(buf_t *b)
{
    struct ledgerpg_stats pg;

    ledgerpg_get_stats(&pg);
    if (!pg.enabled)
        return;
    const struct {
        const char *name, *type, *help;
        unsigned long long v;
    } m[] = {
        {"orproxy_ledger_postgresql_up", "gauge",
         "1 when the last statement to the shared ledger succeeded.", (unsigned long long)pg.up},
        {"orproxy_ledger_spool_bytes", "gauge", "Rows waiting on disk for PostgreSQL (0 = none).",
         pg.spool_bytes},
        {"orproxy_ledger_postgresql_written_total", "counter", "Rows new in PostgreSQL.",
         pg.written},
        {"orproxy_ledger_postgresql_spooled_total", "counter", "Rows written to the spool.",
         pg.spooled},
        {"orproxy_ledger_postgresql_dropped_total", "counter",
         "Rows or cost updates PostgreSQL refused for themselves, or the spool could not keep.",
         pg.dropped},
        {"orproxy_ledger_postgresql_statements_total", "counter",
         "Statements sent to PostgreSQL (batched: far fewer than rows).", pg.statements},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        printf_to(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", m[i].name, m[i].help, m[i].name,
                  m[i].type, m[i].name, m[i].v);
}

/* The gauges, and what the ledger and housekeeping threads report. */
static void render_others(buf_t *b, const struct tables *M)
{
    struct ledger_stats ls;
    struct housekeeping_stats hs;
    struct alerts_stats as;

    ledger_get_stats(&ls);
    housekeeping_get_stats(&hs);
    alerts_get_stats(&as);
    printf_to(b, "# HELP orproxy_active_connections Requests in progress.\n"
                 "# TYPE orproxy_active_connections gauge\norproxy_active_connections %ld\n",
              M->conns);
    printf_to(b, "# HELP orproxy_active_streams Streams being relayed.\n"
                 "# TYPE orproxy_active_streams gauge\norproxy_active_streams %ld\n",
              M->streams);
    printf_to(b, "# HELP orproxy_ledger_queue_depth Ledger records waiting for the writer.\n"
                 "# TYPE orproxy_ledger_queue_depth gauge\norproxy_ledger_queue_depth %llu\n",
              (unsigned long long)ls.queue_depth);
    printf_to(b, "# HELP orproxy_ledger_written_total Ledger records committed.\n"
                 "# TYPE orproxy_ledger_written_total counter\norproxy_ledger_written_total %llu\n",
              (unsigned long long)ls.written);
    printf_to(b, "# HELP orproxy_ledger_dropped_total Ledger records lost (queue full or "
                 "database error).\n# TYPE orproxy_ledger_dropped_total counter\n"
                 "orproxy_ledger_dropped_total %llu\n",
              (unsigned long long)ls.dropped);
    render_postgresql(b);
    printf_to(b, "# HELP orproxy_reconcile_pending Aborted streams whose cost is still being "
                 "asked of upstream (GET /generation).\n"
                 "# TYPE orproxy_reconcile_pending gauge\norproxy_reconcile_pending %zu\n",
              hs.pending);
    printf_to(b, "# HELP orproxy_reconcile_total Reconciliations ended: answered (cost from "
                 "upstream), given_up (the estimate stays), dropped (queue full).\n"
                 "# TYPE orproxy_reconcile_total counter\n"
                 "orproxy_reconcile_total{result=\"answered\"} %llu\n"
                 "orproxy_reconcile_total{result=\"given_up\"} %llu\n"
                 "orproxy_reconcile_total{result=\"dropped\"} %llu\n",
              hs.answered, hs.given_up, hs.dropped);
    printf_to(b, "# HELP orproxy_alerts_total Budget and key-expiry alert deliveries: sent "
                 "(the webhook answered 2xx), failed (tried again later).\n"
                 "# TYPE orproxy_alerts_total counter\n"
                 "orproxy_alerts_total{result=\"sent\"} %llu\n"
                 "orproxy_alerts_total{result=\"failed\"} %llu\n",
              as.sent, as.failed);
}

int metrics_render(buf_t *b)
{
    struct tables *M = tables_sum();

    if (M == NULL)
        return -1;
    printf_to(b, "# HELP orproxy_build_info Build information.\n# TYPE orproxy_build_info gauge\n"
                 "orproxy_build_info{version=\"%s\"} 1\n", ORP_VERSION);
    printf_to(b, "# HELP orproxy_requests_total Finished API requests.\n"
                 "# TYPE orproxy_requests_total counter\n");
    for (int i = 0; i < M->n_req; i++) {
        printf_to(b, "orproxy_requests_total{route=\"");
        label(b, M->req[i].route);
        printf_to(b, "\",status=\"%d\",model=\"", M->req[i].status);
        label(b, M->req[i].model);
        printf_to(b, "\"} %llu\n", M->req[i].n);
    }
    printf_to(b, "# HELP orproxy_upstream_attempts_total Upstream attempts made.\n"
                 "# TYPE orproxy_upstream_attempts_total counter\n"
                 "orproxy_upstream_attempts_total %llu\n", M->attempts);
    printf_to(b, "# HELP orproxy_upstream_retries_total Upstream attempts that were retries.\n"
                 "# TYPE orproxy_upstream_retries_total counter\n"
                 "orproxy_upstream_retries_total %llu\n", M->retries);
    printf_to(b, "# HELP orproxy_request_duration_seconds Time from request to its end.\n"
                 "# TYPE orproxy_request_duration_seconds histogram\n");
    for (int i = 0; i < M->n_rh; i++)
        render_hist(b, "orproxy_request_duration_seconds", M->rh[i].route, &M->rh[i].dur);
    printf_to(b, "# HELP orproxy_time_to_first_byte_seconds Time to the first byte (first data "
                 "event for streams).\n# TYPE orproxy_time_to_first_byte_seconds histogram\n");
    for (int i = 0; i < M->n_rh; i++)
        render_hist(b, "orproxy_time_to_first_byte_seconds", M->rh[i].route, &M->rh[i].ttfb);
    printf_to(b, "# HELP orproxy_tokens_total Tokens by model, client and kind.\n"
                 "# TYPE orproxy_tokens_total counter\n");
    for (int i = 0; i < M->n_use; i++) {
        for (int k = 0; k < 2; k++) {
            printf_to(b, "orproxy_tokens_total{model=\"");
            label(b, M->use[i].model);
            printf_to(b, "\",client=\"");
            label(b, M->use[i].client);
            printf_to(b, "\",kind=\"%s\"} %llu\n", k ? "completion" : "prompt",
                      k ? M->use[i].completion : M->use[i].prompt);
        }
    }
    printf_to(b, "# HELP orproxy_cost_usd_total Cost in USD by model and client.\n"
                 "# TYPE orproxy_cost_usd_total counter\n");
    for (int i = 0; i < M->n_use; i++) {
        printf_to(b, "orproxy_cost_usd_total{model=\"");
        label(b, M->use[i].model);
        printf_to(b, "\",client=\"");
        label(b, M->use[i].client);
        printf_to(b, "\"} %.12f\n", (double)M->use[i].cost_pusd / 1e12);
    }
    printf_to(b, "# HELP orproxy_config_reloads_total Configuration reloads (SIGHUP).\n"
                 "# TYPE orproxy_config_reloads_total counter\n"
                 "orproxy_config_reloads_total{result=\"ok\"} %llu\n"
                 "orproxy_config_reloads_total{result=\"failed\"} %llu\n",
              (unsigned long long)atomic_load(&reload_ok),
              (unsigned long long)atomic_load(&reload_failed));
    render_others(b, M);
    free(M);
    return 0;
}
