/* console_pg.c - the console's queries over PostgreSQL.  See console_pg.h.
 *
 * The aggregates are console_query.c's, fed by a scan of the PostgreSQL
 * rollups (one statement, the range's rows, summed there as over SQLite).
 * The requests list is a keyset page like console_rows.c's: the statement
 * is put together from fixed fragments, one per filter given, numbered
 * $1.. in the order they appear (PostgreSQL must see every parameter it
 * is given), and every value travels as a parameter. */
#include "console_pg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console_int.h"
#include "pricing.h"
#include "util.h"

/* err after a failed pgconn_exec, with the prefix its kind calls for. */
static void exec_err(int rc, char *err, size_t errlen)
{
    char msg[256];

    snprintf(msg, sizeof msg, "%s", err);
    util_set_err(err, errlen, "%s%s", rc == PGC_DOWN ? CQPG_UNAVAILABLE : "ledger: ", msg);
}

static int64_t num(PGresult *res, int k, int i)
{
    return PQgetisnull(res, k, i) ? 0 : strtoll(PQgetvalue(res, k, i), NULL, 10);
}

#define ROLLUP_SELECT(t, k)                                                                        \
    "SELECT " k ", instance, client, model, cost_source, requests, errors, prompt_tokens,"         \
    " completion_tokens, cached_tokens, reasoning_tokens, cost_pusd FROM " t " WHERE " k           \
    " >= $1 AND " k " < $2 ORDER BY " k

static int scan_rollup(void *db, int day, int64_t from, int64_t to, cq_row_fn fn, void *arg,
                       char *err, size_t errlen)
{
    const char *sql = day ? ROLLUP_SELECT("rollup_day", "day_ms")
                          : ROLLUP_SELECT("rollup_hour", "hour_ms");
    char a[24], b[24];
    const char *p[2] = {a, b};
    PGresult *res = NULL;
    struct cq_row r = {0};
    int64_t *sum_field[] = {&r.s.requests, &r.s.errors,    &r.s.prompt, &r.s.completion,
                            &r.s.cached,   &r.s.reasoning, &r.s.cost};
    int rc;

    snprintf(a, sizeof a, "%" PRId64, from);
    snprintf(b, sizeof b, "%" PRId64, to);
    if ((rc = pgconn_exec(db, sql, 2, p, &res, err, errlen)) != PGC_OK) {
        exec_err(rc, err, errlen);
        return -1;
    }
    for (int k = 0; k < PQntuples(res); k++) {
        r.t_ms = num(res, k, 0);
        r.instance = PQgetvalue(res, k, 1);
        r.client = PQgetvalue(res, k, 2);
        r.model = PQgetvalue(res, k, 3);
        r.source = PQgetvalue(res, k, 4);
        for (int i = 0; i < 7; i++) /* the sums, in the SELECT's order */
            *sum_field[i] = num(res, k, 5 + i);
        if (fn(&r, arg) < 0) {
            PQclear(res);
            util_set_err(err, errlen, "ledger: out of memory");
            return -1;
        }
    }
    PQclear(res);
    return 0;
}

#define PG_SOURCE(c) (&(struct cq_source){.scan = scan_rollup, .db = (c), .instances = 1})

cJSON *cqpg_overview(struct pgconn *c, int64_t now_ms, char *err, size_t errlen)
{
    return cq_overview_from(PG_SOURCE(c), now_ms, err, errlen);
}

cJSON *cqpg_timeseries(struct pgconn *c, int64_t since_ms, int64_t until_ms, int bucket_day, int by,
                       int top_n, char *err, size_t errlen)
{
    return cq_timeseries_from(PG_SOURCE(c), since_ms, until_ms, bucket_day, by, top_n, err, errlen);
}

cJSON *cqpg_models(struct pgconn *c, int64_t since_ms, char *err, size_t errlen)
{
    return cq_models_from(PG_SOURCE(c), since_ms, err, errlen);
}

cJSON *cqpg_spend(struct pgconn *c, int64_t now_ms, char *err, size_t errlen)
{
    return cq_spend_from(PG_SOURCE(c), now_ms, err, errlen);
}

/* ---- the requests list ---- */

#define MAXP 10

/* A statement under construction with its parameters. */
struct stmt {
    char sql[1024];
    size_t len;
    const char *p[MAXP];
    char num[MAXP][24];
    int n;
};

static void put(struct stmt *s, const char *text)
{
    s->len += (size_t)snprintf(s->sql + s->len, sizeof s->sql - s->len, "%s", text);
}

/* Appends fmt with "$%d" standing for a new parameter of value v. */
static void bind(struct stmt *s, const char *fmt, const char *v)
{
    s->p[s->n++] = v;
    s->len += (size_t)snprintf(s->sql + s->len, sizeof s->sql - s->len, fmt, s->n);
}

static void bind_int(struct stmt *s, const char *fmt, int64_t v)
{
    snprintf(s->num[s->n], sizeof s->num[0], "%" PRId64, v);
    bind(s, fmt, s->num[s->n]);
}

/* A time range orders by start time, as in console_rows.c (by_time). */
static int by_time(const struct cq_filter *f)
{
    return f->since_ms != 0 || f->until_ms != 0;
}

static void filter_sql(struct stmt *s, const struct cq_filter *f, const char *before_started)
{
    int64_t before = f->before_id != 0 ? f->before_id : INT64_MAX;

    put(s, "SELECT * FROM requests WHERE ");
    if (!by_time(f)) {
        bind_int(s, "id < $%d", before);
    } else if (f->before_id != 0) {
        bind(s, "(started_ms, id) < ($%d::bigint", before_started);
        bind_int(s, ", $%d::bigint)", before);
    } else {
        put(s, "true");
    }
    if (f->client != NULL)
        bind(s, " AND client = $%d", f->client);
    if (f->model != NULL)
        bind(s, " AND model = $%d", f->model);
    if (f->outcome != NULL)
        bind(s, " AND outcome = $%d", f->outcome);
    if (f->instance != NULL)
        bind(s, " AND instance = $%d", f->instance);
    if (f->status != -1)
        bind_int(s, " AND status = $%d", f->status);
    if (f->stream != -1)
        bind_int(s, " AND stream = $%d", f->stream);
    if (f->since_ms != 0)
        bind_int(s, " AND started_ms >= $%d", f->since_ms);
    if (f->until_ms != 0)
        bind_int(s, " AND started_ms < $%d", f->until_ms);
    put(s, by_time(f) ? " ORDER BY started_ms DESC, id DESC" : " ORDER BY id DESC");
    bind_int(s, " LIMIT $%d", f->limit + 1);
}

/* Row k as an object: every column by its name (numbers as numbers, SQL
 * NULL as null), cost_pusd as the decimal string cost_usd, no row_key. */
static cJSON *row_json(PGresult *res, int k)
{
    cJSON *o = cJSON_CreateObject();
    char buf[PRICING_USD_BUFSZ];

    for (int i = 0; o != NULL && i < PQnfields(res); i++) {
        const char *name = PQfname(res, i), *v = PQgetvalue(res, k, i);
        Oid t = PQftype(res, i);
        if (strcmp(name, "row_key") == 0)
            continue;
        if (strcmp(name, "cost_pusd") == 0)
            cJSON_AddStringToObject(o, "cost_usd", pricing_format_usd(num(res, k, i), buf, sizeof buf));
        else if (PQgetisnull(res, k, i))
            cJSON_AddNullToObject(o, name);
        else if (t == 20 || t == 21 || t == 23 || t == 700 || t == 701) /* int8/2/4, float4/8 */
            cJSON_AddNumberToObject(o, name, strtod(v, NULL));
        else
            cJSON_AddStringToObject(o, name, v);
    }
    return o;
}

/* The start time of row id as text in out; 0, 1 when there is no such
 * row, or a pgconn_rc. */
static int started_of(struct pgconn *c, int64_t id, char *out, size_t n, char *err, size_t errlen)
{
    char ids[24];
    const char *p[1] = {ids};
    PGresult *res = NULL;
    int rc;

    snprintf(ids, sizeof ids, "%" PRId64, id);
    rc = pgconn_exec(c, "SELECT started_ms FROM requests WHERE id = $1", 1, p, &res, err, errlen);
    if (rc != PGC_OK)
        return rc;
    rc = PQntuples(res) == 1 ? 0 : 1;
    if (rc == 0)
        snprintf(out, n, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

cJSON *cqpg_requests(struct pgconn *c, const struct cq_filter *f, char *err, size_t errlen)
{
    struct stmt s = {0};
    char before_started[24] = "0";
    PGresult *res = NULL;
    cJSON *j, *rows;
    int rc, n;

    if (f == NULL || cq_filter_check(f, err, errlen) < 0) {
        if (f == NULL)
            util_set_err(err, errlen, "no filter");
        return NULL;
    }
    if (by_time(f) && f->before_id != 0 &&
        (rc = started_of(c, f->before_id, before_started, sizeof before_started, err, errlen)) != 0) {
        if (rc == 1)
            util_set_err(err, errlen, "before: no row %" PRId64 " in the ledger", f->before_id);
        else
            exec_err(rc, err, errlen);
        return NULL;
    }
    filter_sql(&s, f, before_started);
    if ((rc = pgconn_exec(c, s.sql, s.n, s.p, &res, err, errlen)) != PGC_OK) {
        exec_err(rc, err, errlen);
        return NULL;
    }
    n = PQntuples(res) < f->limit ? PQntuples(res) : f->limit;
    if ((j = cJSON_CreateObject()) == NULL || (rows = cJSON_AddArrayToObject(j, "requests")) == NULL)
        goto oom;
    for (int k = 0; k < n; k++) {
        cJSON *o = row_json(res, k);
        if (o == NULL)
            goto oom;
        cJSON_AddItemToArray(rows, o);
    }
    /* A row beyond the page was read: an older page exists. */
    if (PQntuples(res) > f->limit)
        cJSON_AddNumberToObject(j, "next_before", (double)num(res, n - 1, 0));
    else
        cJSON_AddNullToObject(j, "next_before");
    PQclear(res);
    return j;
oom:
    PQclear(res);
    cJSON_Delete(j);
    util_set_err(err, errlen, "ledger: out of memory");
    return NULL;
}
