/* console_rows.c - the console's queries over the SQLite ledger: the
 * rollup scan the aggregates of console_query.c read, and the requests
 * list: ledger rows, newest first, paged by id.  See console_query.h for
 * the contract.
 *
 * Keyset paging (id < before_id ORDER BY id DESC LIMIT n; with a time
 * range, by start time: see by_time) costs the same
 * on the last page as on the first, where OFFSET would walk every row
 * before the page.  The statement is put together from fixed fragments,
 * one per filter given, and every value is bound, so the planner sees
 * which filters apply (a client or model filter walks its (client, id) or
 * (model, id) index backwards from before_id) and no user text reaches the
 * SQL.  One row more than the page is read to tell whether an older page
 * exists. */
#include "console_int.h"

#include <stdio.h>
#include <string.h>

#include "pricing.h"
#include "util.h"

#define ROLLUP_SELECT(t, k)                                                                        \
    "SELECT " k ", client, model, cost_source, requests, errors, prompt_tokens,"                   \
    " completion_tokens, cached_tokens, reasoning_tokens, cost_pusd FROM " t " WHERE " k           \
    " >= ?1 AND " k " < ?2"

/* A cq_source scan of rollup_day (day) or rollup_hour, along its primary
 * key (time first). */
static int scan_rollup(void *arg_db, int day, int64_t from, int64_t to, cq_row_fn fn, void *arg,
                       char *err, size_t errlen)
{
    const char *sql = day ? ROLLUP_SELECT("rollup_day", "day_ms")
                          : ROLLUP_SELECT("rollup_hour", "hour_ms");
    sqlite3 *db = arg_db;
    sqlite3_stmt *st = NULL;
    struct cq_row r = {0};
    int64_t *sum_field[] = {&r.s.requests, &r.s.errors,    &r.s.prompt, &r.s.completion,
                            &r.s.cached,   &r.s.reasoning, &r.s.cost};
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        r.t_ms = sqlite3_column_int64(st, 0);
        r.client = (const char *)sqlite3_column_text(st, 1);
        r.model = (const char *)sqlite3_column_text(st, 2);
        r.source = (const char *)sqlite3_column_text(st, 3);
        for (int k = 0; k < 7; k++) /* the sums, in the SELECT's order */
            *sum_field[k] = sqlite3_column_int64(st, 4 + k);
        if (r.client == NULL || r.model == NULL || r.source == NULL)
            continue;
        if (fn(&r, arg) < 0) {
            sqlite3_finalize(st);
            util_set_err(err, errlen, "ledger: out of memory");
            return -1;
        }
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    return 0;
fail:
    util_set_err(err, errlen, "ledger: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return -1;
}

#define SQLITE_SOURCE(db) (&(struct cq_source){.scan = scan_rollup, .db = (db)})

cJSON *cq_overview(sqlite3 *db, int64_t now_ms, char *err, size_t errlen)
{
    return cq_overview_from(SQLITE_SOURCE(db), now_ms, err, errlen);
}

cJSON *cq_timeseries(sqlite3 *db, int64_t since_ms, int64_t until_ms, int bucket_day, int by,
                     int top_n, char *err, size_t errlen)
{
    return cq_timeseries_from(SQLITE_SOURCE(db), since_ms, until_ms, bucket_day, by, top_n, err,
                              errlen);
}

cJSON *cq_models(sqlite3 *db, int64_t since_ms, char *err, size_t errlen)
{
    return cq_models_from(SQLITE_SOURCE(db), since_ms, err, errlen);
}

cJSON *cq_spend(sqlite3 *db, int64_t now_ms, char *err, size_t errlen)
{
    return cq_spend_from(SQLITE_SOURCE(db), now_ms, err, errlen);
}

int cq_filter_check(const struct cq_filter *f, char *err, size_t errlen)
{
    const char *text[] = {f->client, f->model, f->outcome, f->instance};
    const char *label[] = {"client", "model", "outcome", "instance"};

    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
        if (text[i] != NULL && (text[i][0] == '\0' || strlen(text[i]) > CQ_MAX_FILTER_LEN)) {
            util_set_err(err, errlen, "%s must be 1 to %d characters", label[i], CQ_MAX_FILTER_LEN);
            return -1;
        }
    if (f->limit < 1 || f->limit > CQ_MAX_LIMIT)
        util_set_err(err, errlen, "limit must be between 1 and %d", CQ_MAX_LIMIT);
    else if (f->status != -1 && (f->status < 100 || f->status > 599))
        util_set_err(err, errlen, "status must be an HTTP status (100..599)");
    else if (f->stream < -1 || f->stream > 1)
        util_set_err(err, errlen, "stream must be 0 or 1");
    else if (f->since_ms < 0 || f->until_ms < 0)
        util_set_err(err, errlen, "since and until must be unix times in ms (>= 0)");
    else if (f->since_ms != 0 && f->until_ms != 0 && f->since_ms > f->until_ms)
        util_set_err(err, errlen, "since must not be after until");
    else if (f->before_id < 0)
        util_set_err(err, errlen, "before must be a row id (>= 1)");
    else
        return 0;
    return -1;
}

/* A time range orders by start time: the (started_ms, id) index then gives
 * the page in its own order, where ordering a range by id alone sorts every
 * row of the range first (800 ms for one day of a 10-million-row ledger).
 * The page key is then (started_ms of before_id, before_id). */
static int by_time(const struct cq_filter *f)
{
    return f->since_ms != 0 || f->until_ms != 0;
}

/* The statement for f: parameters ?1 before, ?2 client, ?3 model,
 * ?4 outcome, ?5 status, ?6 stream, ?7 since, ?8 until, ?9 the row count,
 * ?10 the start time of the before row; only those of the filters given
 * appear. */
static void filter_sql(const struct cq_filter *f, char *sql, size_t n)
{
    const char *key = !by_time(f)          ? "id < ?1"
                      : f->before_id != 0 ? "(started_ms, id) < (?10, ?1)"
                                          : "1";
    snprintf(sql, n, "SELECT * FROM requests WHERE %s%s%s%s%s%s%s%s ORDER BY %s LIMIT ?9", key,
             f->client != NULL ? " AND client = ?2" : "", f->model != NULL ? " AND model = ?3" : "",
             f->outcome != NULL ? " AND outcome = ?4" : "", f->status != -1 ? " AND status = ?5" : "",
             f->stream != -1 ? " AND stream = ?6" : "", f->since_ms != 0 ? " AND started_ms >= ?7" : "",
             f->until_ms != 0 ? " AND started_ms < ?8" : "",
             by_time(f) ? "started_ms DESC, id DESC" : "id DESC");
}

/* The start time of row id (the page key of a time-ordered list); -1 when
 * there is no such row. */
static int64_t started_of(sqlite3 *db, int64_t id)
{
    sqlite3_stmt *st;
    int64_t ms = -1;

    if (sqlite3_prepare_v2(db, "SELECT started_ms FROM requests WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW)
        ms = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ms;
}

static void filter_bind(sqlite3_stmt *st, const struct cq_filter *f, int64_t before_started)
{
    sqlite3_bind_int64(st, 1, f->before_id != 0 ? f->before_id : INT64_MAX);
    if (f->client != NULL)
        sqlite3_bind_text(st, 2, f->client, -1, SQLITE_STATIC);
    if (f->model != NULL)
        sqlite3_bind_text(st, 3, f->model, -1, SQLITE_STATIC);
    if (f->outcome != NULL)
        sqlite3_bind_text(st, 4, f->outcome, -1, SQLITE_STATIC);
    if (f->status != -1)
        sqlite3_bind_int(st, 5, f->status);
    if (f->stream != -1)
        sqlite3_bind_int(st, 6, f->stream);
    if (f->since_ms != 0)
        sqlite3_bind_int64(st, 7, f->since_ms);
    if (f->until_ms != 0)
        sqlite3_bind_int64(st, 8, f->until_ms);
    sqlite3_bind_int(st, 9, f->limit + 1);
    if (by_time(f) && f->before_id != 0)
        sqlite3_bind_int64(st, 10, before_started);
}

/* The current row as an object: every column by its name and type, except
 * cost_pusd, which becomes the decimal string cost_usd. */
static cJSON *row_json(sqlite3_stmt *st)
{
    cJSON *o = cJSON_CreateObject();
    char buf[PRICING_USD_BUFSZ];

    for (int i = 0; o != NULL && i < sqlite3_column_count(st); i++) {
        const char *name = sqlite3_column_name(st, i);
        if (strcmp(name, "cost_pusd") == 0) {
            cJSON_AddStringToObject(
                o, "cost_usd", pricing_format_usd(sqlite3_column_int64(st, i), buf, sizeof buf));
            continue;
        }
        switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER:
        case SQLITE_FLOAT:
            cJSON_AddNumberToObject(o, name, sqlite3_column_double(st, i));
            break;
        case SQLITE_TEXT:
            cJSON_AddStringToObject(o, name, (const char *)sqlite3_column_text(st, i));
            break;
        default:
            cJSON_AddNullToObject(o, name);
        }
    }
    return o;
}

cJSON *cq_requests(sqlite3 *db, const struct cq_filter *f, char *err, size_t errlen)
{
    char sql[512];
    sqlite3_stmt *st = NULL;
    cJSON *j = NULL, *rows;
    int64_t last = 0, before_started = 0;
    int rc, n = 0;

    if (f == NULL || cq_filter_check(f, err, errlen) < 0) {
        if (f == NULL)
            util_set_err(err, errlen, "no filter");
        return NULL;
    }
    if (f->instance != NULL) {
        util_set_err(err, errlen, "instance needs ledger.backend = \"postgresql\"");
        return NULL;
    }
    if (by_time(f) && f->before_id != 0 && (before_started = started_of(db, f->before_id)) < 0) {
        util_set_err(err, errlen, "before: no row %lld in the ledger", (long long)f->before_id);
        return NULL;
    }
    filter_sql(f, sql, sizeof sql);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto fail;
    filter_bind(st, f, before_started);
    if ((j = cJSON_CreateObject()) == NULL || (rows = cJSON_AddArrayToObject(j, "requests")) == NULL)
        goto oom;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < f->limit) {
        cJSON *o = row_json(st);
        if (o == NULL)
            goto oom;
        cJSON_AddItemToArray(rows, o);
        last = sqlite3_column_int64(st, 0);
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        goto fail;
    /* A row beyond the page was read: an older page exists. */
    if (rc == SQLITE_ROW)
        cJSON_AddNumberToObject(j, "next_before", (double)last);
    else
        cJSON_AddNullToObject(j, "next_before");
    sqlite3_finalize(st);
    return j;
oom:
    util_set_err(err, errlen, "ledger: out of memory");
    goto done;
fail:
    util_set_err(err, errlen, "ledger: %s", sqlite3_errmsg(db));
done:
    sqlite3_finalize(st);
    cJSON_Delete(j);
    return NULL;
}
