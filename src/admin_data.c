/* admin_data.c - the console's data routes: /admin/v1/overview,
 * /timeseries, /requests, /models, /health.  The query string is checked
 * on the worker (a bad one is a 400 at once); the queries run on the jobs
 * thread: over the SQLite ledger with its own read-only connection
 * (console_query.h), or, with ledger.backend = "postgresql", over the
 * shared database (console_pg.h) through one connection the jobs thread
 * keeps, every wait bounded (PG_TIMEOUT_MS): a database that cannot be
 * reached is a 503 ledger_unavailable, never a hang. */
#include "admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "console_pg.h"
#include "housekeeping.h"
#include "ledger.h"
#include "metrics.h"
#include "managed.h"
#include "pricing.h"
#include "relay.h"
#include "report.h"
#include "util.h"
#include "version.h"
#include "worker.h"

static struct {
    const struct worker *w;
    int n;
    int64_t started_ms;
} RT;

void admin_set_workers(const struct worker *w, int n)
{
    RT.w = w;
    RT.n = n;
    RT.started_ms = util_wall_ms();
}

/* ---- shared by the routes ---- */

void admin_ctx_free(void *arg)
{
    struct admin_ctx *c = arg;
    if (c == NULL)
        return;
    free(c->name);
    free(c->body);
    free(c->s1);
    free(c->s2);
    free(c->s3);
    free(c->s4);
    free(c->pg_url);
    free(c->pg_password_file);
    free(c);
}

void admin_set_json(struct job *j, unsigned status, cJSON *o)
{
    j->status = status;
    j->text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (j->text == NULL && j->err[0] == '\0') {
        j->status = 500;
        j->code = "out_of_memory";
        snprintf(j->err, sizeof j->err, "orproxy is out of memory");
    }
}

void admin_add_usd(cJSON *o, const char *name, int64_t pusd, int zero_is_null)
{
    char buf[PRICING_USD_BUFSZ];
    if (zero_is_null && pusd == 0)
        cJSON_AddNullToObject(o, name);
    else
        cJSON_AddStringToObject(o, name, pricing_format_usd(pusd, buf, sizeof buf));
}

void admin_add_time(cJSON *o, const char *name, int64_t ms)
{
    char buf[40];
    if (ms <= 0) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    managed_iso_time(ms, buf, sizeof buf);
    cJSON_AddStringToObject(o, name, buf);
}

static const char *arg(struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

static int bad(struct request *r, const char *fmt, const char *name)
{
    relay_set_error(r, 400, "invalid_parameter", fmt, name);
    return -1;
}

/* v is a whole decimal integer: 0 (*out set), else -1. */
static int whole(const char *v, long long *out)
{
    char *end;
    *out = strtoll(v, &end, 10);
    return *v != '\0' && *end == '\0' ? 0 : -1;
}

/* A time: unix ms, "2026-11-01", "2026-11-01T12:00:00Z" or "24h", "7d"
 * (that long before now).  Absent: *out stays. */
static int time_arg(struct request *r, const char *name, int64_t now, int64_t *out)
{
    const char *v = arg(r, name);
    long long n;

    if (v == NULL)
        return 0;
    if (whole(v, &n) == 0 && n >= 0 && strlen(v) > 8) {
        *out = n;
        return 0;
    }
    if (report_parse_time(v, now, out) < 0)
        return bad(r, "%s must be unix ms, an ISO-8601 UTC time or a span like 24h or 7d", name);
    return 0;
}

static int int_arg(struct request *r, const char *name, long long lo, long long hi, long long *out)
{
    const char *v = arg(r, name);
    long long n;

    if (v == NULL)
        return 0;
    if (whole(v, &n) < 0 || n < lo || n > hi) {
        char fmt[96];
        snprintf(fmt, sizeof fmt, "%%s must be an integer from %lld to %lld", lo, hi);
        return bad(r, fmt, name);
    }
    *out = n;
    return 0;
}

static int str_arg(struct request *r, const char *name, char **out)
{
    const char *v = arg(r, name);
    if (v == NULL || *v == '\0')
        return 0;
    if (strlen(v) > CQ_MAX_FILTER_LEN)
        return bad(r, "%s is too long", name);
    *out = strdup(v);
    return 0;
}

/* *out = the index of the value among the NULL-ended list of choices. */
static int choice(struct request *r, const char *name, const char *const *list, const char *text,
                  int *out)
{
    const char *v = arg(r, name);
    if (v == NULL)
        return 0;
    for (int i = 0; list[i] != NULL; i++)
        if (strcmp(v, list[i]) == 0) {
            *out = i;
            return 0;
        }
    relay_set_error(r, 400, "invalid_parameter", "%s must be %s", name, text);
    return -1;
}

/* ---- on the jobs thread ---- */

static sqlite3 *open_ro(struct job *j)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(j->ledger_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        j->status = 500;
        j->code = "ledger_unavailable";
        snprintf(j->err, sizeof j->err, "cannot open the ledger");
        return NULL;
    }
    sqlite3_busy_timeout(db, 2000);
    return db;
}

/* A console_query result, or its error: 400 for a bad parameter, 500 for
 * the ledger ("ledger: ..."), 503 for a database out of reach. */
static void answer(struct job *j, cJSON *o)
{
    if (o != NULL) {
        admin_set_json(j, 200, o);
        return;
    }
    if (strncmp(j->err, CQPG_UNAVAILABLE, strlen(CQPG_UNAVAILABLE)) == 0)
        j->status = 503;
    else
        j->status = strncmp(j->err, "ledger: ", 8) == 0 ? 500 : 400;
    j->code = j->status >= 500 ? "ledger_unavailable" : "invalid_parameter";
}

static void add_budget(cJSON *list, const char *client, const char *period, int64_t limit,
                       int64_t spent)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "client", client);
    cJSON_AddStringToObject(b, "period", period);
    admin_add_usd(b, "limit_usd", limit, 0);
    admin_add_usd(b, "spent_usd", spent, 0);
    cJSON_AddItemToArray(list, b);
}

/* Every budget in effect (all traffic: client ""), from the live counters. */
static void add_budgets(cJSON *o)
{
    struct orp_config *cfg = managed_current();
    cJSON *list = cJSON_AddArrayToObject(o, "budgets");
    for (int i = -1; cfg != NULL && i < cfg->n_clients; i++) {
        const struct orp_limits *l = i < 0 ? &cfg->limits : &cfg->clients[i].limits;
        const char *name = i < 0 ? "" : cfg->clients[i].name;
        int64_t day, month;
        if (l->budget_day_pusd == 0 && l->budget_month_pusd == 0)
            continue;
        access_spent(name, &day, &month);
        if (l->budget_day_pusd > 0)
            add_budget(list, name, "day", l->budget_day_pusd, day);
        if (l->budget_month_pusd > 0)
            add_budget(list, name, "month", l->budget_month_pusd, month);
    }
    config_release(cfg);
}

static void add_price(const char *model, const struct price *p, void *arg)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "model", model);
    /* attodollars per token = picodollars per million tokens */
    admin_add_usd(e, "prompt_usd_per_mtok", p->prompt, 0);
    admin_add_usd(e, "completion_usd_per_mtok", p->completion, 0);
    admin_add_usd(e, "cache_read_usd_per_mtok", p->cache_read, 0);
    admin_add_usd(e, "request_usd", p->request / 1000000, 0);
    cJSON_AddItemToArray(arg, e);
}

/* The jobs thread's connection to the shared ledger, made again when the
 * configured URL or password file changed (a reload). */
#define PG_TIMEOUT_MS 5000
static struct {
    struct pgconn *c;
    char *url, *password_file;
} PG;

static struct pgconn *pg_conn(struct job *j, const struct admin_ctx *c)
{
    struct pgconn_opts o = {.url = c->pg_url,
                            .password_file = c->pg_password_file,
                            .app_name = "orproxy console",
                            .timeout_ms = PG_TIMEOUT_MS};

    if (PG.c != NULL && strcmp(PG.url, c->pg_url) == 0 &&
        strcmp(PG.password_file, c->pg_password_file) == 0)
        return PG.c;
    pgconn_free(PG.c);
    free(PG.url);
    free(PG.password_file);
    PG.url = strdup(c->pg_url);
    PG.password_file = strdup(c->pg_password_file);
    PG.c = PG.url != NULL && PG.password_file != NULL ? pgconn_new(&o, j->err, sizeof j->err) : NULL;
    if (PG.c == NULL) {
        j->status = 503;
        j->code = "ledger_unavailable";
        if (j->err[0] == '\0')
            snprintf(j->err, sizeof j->err, "orproxy is out of memory");
    }
    return PG.c;
}

/* The route's query over PostgreSQL (pg) or SQLite (db). */
static cJSON *query(struct job *j, const struct admin_ctx *c, struct pgconn *pg, sqlite3 *db)
{
    char *e = j->err;
    size_t n = sizeof j->err;

    if (strcmp(c->name, "overview") == 0)
        return pg ? cqpg_overview(pg, c->now_ms, e, n) : cq_overview(db, c->now_ms, e, n);
    if (strcmp(c->name, "timeseries") == 0)
        return pg ? cqpg_timeseries(pg, c->since_ms, c->until_ms, c->bucket_day, c->group, c->top_n, e, n)
                  : cq_timeseries(db, c->since_ms, c->until_ms, c->bucket_day, c->group, c->top_n, e, n);
    if (strcmp(c->name, "requests") == 0)
        return pg ? cqpg_requests(pg, &c->filter, e, n) : cq_requests(db, &c->filter, e, n);
    return pg ? cqpg_models(pg, c->since_ms, e, n) : cq_models(db, c->since_ms, e, n);
}

static void run_data(struct job *j)
{
    struct admin_ctx *c = j->ctx;
    struct pgconn *pg = NULL;
    sqlite3 *db = NULL;
    cJSON *o;

    if (c->pg_url != NULL ? (pg = pg_conn(j, c)) == NULL : (db = open_ro(j)) == NULL)
        return;
    o = query(j, c, pg, db);
    if (o != NULL && strcmp(c->name, "overview") == 0) {
        add_budgets(o);
    } else if (o != NULL && strcmp(c->name, "models") == 0) {
        cJSON *prices = cJSON_AddArrayToObject(o, "prices");
        admin_add_time(o, "prices_fetched_at", pricing_current_each(add_price, prices));
    }
    sqlite3_close(db);
    answer(j, o);
}

static void run_health(struct job *j)
{
    cJSON *o = cJSON_CreateObject(), *w = cJSON_AddArrayToObject(o, "workers"), *x;
    struct housekeeping_stats hs;
    struct ledger_stats ls;
    int64_t mono = util_mono_ms();

    housekeeping_get_stats(&hs);
    ledger_get_stats(&ls);
    cJSON_AddStringToObject(o, "version", ORP_VERSION);
    admin_add_time(o, "started_at", RT.started_ms);
    cJSON_AddNumberToObject(o, "uptime_s", (double)((util_wall_ms() - RT.started_ms) / 1000));
    x = cJSON_AddObjectToObject(o, "upstream");
    cJSON_AddNumberToObject(x, "models_priced", (double)pricing_current_size());
    admin_add_time(x, "prices_fetched_at", pricing_current_each(NULL, NULL));
    {
        int st;
        int64_t at;
        metrics_upstream_last(&st, &at);
        if (st > 0)
            cJSON_AddNumberToObject(x, "last_status", st);
        else
            cJSON_AddNullToObject(x, "last_status");
        admin_add_time(x, "last_status_at", at);
    }
    x = cJSON_AddObjectToObject(o, "reconciliations");
    cJSON_AddNumberToObject(x, "pending", (double)hs.pending);
    cJSON_AddNumberToObject(x, "answered", (double)hs.answered);
    cJSON_AddNumberToObject(x, "given_up", (double)hs.given_up);
    cJSON_AddNumberToObject(x, "dropped", (double)hs.dropped);
    x = cJSON_AddObjectToObject(o, "ledger");
    cJSON_AddBoolToObject(x, "healthy", ledger_healthy());
    cJSON_AddNumberToObject(x, "queue", (double)ls.queue_depth);
    cJSON_AddNumberToObject(x, "written", (double)ls.written);
    cJSON_AddNumberToObject(x, "dropped", (double)ls.dropped);
    for (int i = 0; i < RT.n; i++) {
        cJSON *e = cJSON_CreateObject();
        int64_t age = mono - atomic_load(&RT.w[i].heartbeat_ms);
        cJSON_AddNumberToObject(e, "id", i);
        cJSON_AddNumberToObject(e, "last_pass_ms_ago", (double)(age > 0 ? age : 0));
        cJSON_AddItemToArray(w, e);
    }
    admin_set_json(j, 200, o);
}

/* ---- dispatch (on the worker) ---- */

static int parse_query(struct request *r, struct admin_ctx *c)
{
    long long v = 0;

    c->now_ms = util_wall_ms();
    if (strcmp(c->name, "timeseries") == 0) {
        static const char *const buckets[] = {"hour", "day", NULL};
        static const char *const bys[] = {"client", "model", "instance", NULL};
        if (choice(r, "bucket", buckets, "hour or day", &c->bucket_day) < 0 ||
            choice(r, "by", bys, "client, model or instance", &c->group) < 0)
            return -1;
        c->since_ms = c->now_ms - (c->bucket_day ? 30LL : 1LL) * 86400000;
        c->until_ms = c->now_ms;
        v = 5;
        if (time_arg(r, "since", c->now_ms, &c->since_ms) < 0 ||
            time_arg(r, "until", c->now_ms, &c->until_ms) < 0 ||
            int_arg(r, "top", 1, CQ_MAX_TOP_N, &v) < 0)
            return -1;
        c->top_n = (int)v;
    } else if (strcmp(c->name, "requests") == 0) {
        struct cq_filter *f = &c->filter;
        f->status = f->stream = -1;
        v = 100;
        if (int_arg(r, "limit", 1, CQ_MAX_LIMIT, &v) < 0)
            return -1;
        f->limit = (int)v;
        if (int_arg(r, "status", 100, 599, &v) < 0)
            return -1;
        f->status = arg(r, "status") ? (int)v : -1;
        if (int_arg(r, "stream", 0, 1, &v) < 0)
            return -1;
        f->stream = arg(r, "stream") ? (int)v : -1;
        if (int_arg(r, "before", 1, INT64_MAX, &v) < 0)
            return -1;
        f->before_id = arg(r, "before") ? v : 0;
        if (time_arg(r, "since", c->now_ms, &f->since_ms) < 0 ||
            time_arg(r, "until", c->now_ms, &f->until_ms) < 0 || str_arg(r, "client", &c->s1) < 0 ||
            str_arg(r, "model", &c->s2) < 0 || str_arg(r, "outcome", &c->s3) < 0 ||
            str_arg(r, "instance", &c->s4) < 0)
            return -1;
        f->client = c->s1;
        f->model = c->s2;
        f->outcome = c->s3;
        f->instance = c->s4;
    } else if (strcmp(c->name, "models") == 0) {
        c->since_ms = c->now_ms - 30LL * 86400000;
        if (time_arg(r, "since", c->now_ms, &c->since_ms) < 0)
            return -1;
    }
    return 0;
}

int admin_data_route(struct request *r, const char *rest)
{
    static const char *const names[] = {"overview", "timeseries", "requests", "models", "health"};
    struct admin_ctx *c;
    struct job *j;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(rest, names[i]) != 0)
            continue;
        if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
            relay_set_error(r, 405, "method_not_allowed", "method %s is not allowed on %s; use GET",
                            r->method, r->path);
            return 0;
        }
        if ((c = calloc(1, sizeof *c)) == NULL || (c->name = strdup(names[i])) == NULL) {
            admin_ctx_free(c);
            relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
            return 0;
        }
        c->op = OP_DATA;
        if (i != 4 && strcmp(r->cfg->ledger_backend, "postgresql") == 0 &&
            ((c->pg_url = strdup(r->cfg->ledger_postgresql_url)) == NULL ||
             (c->pg_password_file = strdup(r->cfg->ledger_postgresql_password_file)) == NULL)) {
            admin_ctx_free(c);
            relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
            return 0;
        }
        if (parse_query(r, c) < 0) {
            admin_ctx_free(c);
            return 0;
        }
        if ((j = jobs_new(r, i == 4 ? run_health : run_data, c, admin_ctx_free)) == NULL) {
            relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
            return 0;
        }
        return jobs_submit(j);
    }
    relay_set_error(r, 404, "not_found", "no such admin endpoint: %s", r->path);
    return 0;
}
