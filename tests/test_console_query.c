/* Unit tests for console_query.c and console_rows.c: the console's figures
 * over a ledger built with the real schema (LEDGER_SCHEMA_V1, then V2 with
 * its rollup triggers), rows inserted as the writer inserts them, so every
 * aggregate here comes through the triggers.  Queries run on a second,
 * read-only connection, as the admin API's thread does.
 *
 * The rows (ids in insert order), with NOW = 2026-11-18T12:30Z:
 *   1 alice gpt-4o  today 01:00   200 ok       100+50  c10 r5  $0.001 upstream
 *   2 alice gpt-4o  today 01:05   200 ok s     200+100 c20 r0  $0.002 pricing
 *   3 bob   claude  today 02:00   200 ok s     1000+500        $0.005 upstream
 *   4 bob   (none)  today 03:00   429 upstream_error          $0     none
 *   5 carol llama   yesterday 05  200 ok       10+10           $0.003 estimate
 *   6 alice claude  Nov 2 01:00   200 ok       1+1             $0.007 upstream
 *   7 dave  gpt-4o  Oct 25 00:00  200 ok       1+1             $0.011 upstream
 *   8 erin  gpt-4o  Oct 1         200 ok       1+1             $0.013 upstream (outside 30 days)
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "console_query.h"
#include "ledger.h"

#define H INT64_C(3600000)
#define DAY INT64_C(86400000)
#define D0 INT64_C(1794873600000)   /* 2026-11-17T00:00:00Z */
#define D1 (D0 + DAY)               /* 2026-11-18 */
#define NOV1 (D0 - 16 * DAY)        /* 2026-11-01 */
#define NOW (D1 + 12 * H + 30 * 60000)
#define M INT64_C(1000000000) /* $0.001 in pusd */

static char db_path[64];
static sqlite3 *wdb, *rdb; /* the writer (the daemon), the reader (the admin API) */
static char err[256];

struct spec {
    int64_t ms;
    const char *client, *model;
    int status, stream;
    const char *outcome;
    int64_t prompt, completion, cached, reasoning, cost;
    const char *source;
};

static void add(struct spec s)
{
    static const char sql[] =
        "INSERT INTO requests (request_id, started_at, started_ms, client, route, model, stream,"
        " status, prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,"
        " cost_pusd, cost_source, outcome, latency_ms)"
        " VALUES ('r', 'x', ?, ?, 'chat', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 12.5)";
    sqlite3_stmt *st;

    ck_assert_int_eq(sqlite3_prepare_v2(wdb, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, s.ms);
    sqlite3_bind_text(st, 2, s.client, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s.model, -1, SQLITE_STATIC); /* NULL binds NULL */
    sqlite3_bind_int(st, 4, s.stream);
    sqlite3_bind_int(st, 5, s.status);
    sqlite3_bind_int64(st, 6, s.prompt);
    sqlite3_bind_int64(st, 7, s.completion);
    sqlite3_bind_int64(st, 8, s.prompt + s.completion);
    sqlite3_bind_int64(st, 9, s.cached);
    sqlite3_bind_int64(st, 10, s.reasoning);
    sqlite3_bind_int64(st, 11, s.cost);
    sqlite3_bind_text(st, 12, s.source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 13, s.outcome, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

static void add_standard(void)
{
    add((struct spec){D1 + H, "alice", "openai/gpt-4o", 200, 0, "ok", 100, 50, 10, 5, 1 * M, "upstream"});
    add((struct spec){D1 + H + 300000, "alice", "openai/gpt-4o", 200, 1, "ok", 200, 100, 20, 0, 2 * M,
                      "pricing"});
    add((struct spec){D1 + 2 * H, "bob", "anthropic/claude", 200, 1, "ok", 1000, 500, 0, 0, 5 * M,
                      "upstream"});
    add((struct spec){D1 + 3 * H, "bob", NULL, 429, 0, "upstream_error", 0, 0, 0, 0, 0, "none"});
    add((struct spec){D0 + 5 * H, "carol", "meta/llama", 200, 0, "ok", 10, 10, 0, 0, 3 * M, "estimate"});
    add((struct spec){NOV1 + DAY + H, "alice", "anthropic/claude", 200, 0, "ok", 1, 1, 0, 0, 7 * M,
                      "upstream"});
    add((struct spec){NOV1 - 7 * DAY, "dave", "openai/gpt-4o", 200, 0, "ok", 1, 1, 0, 0, 11 * M,
                      "upstream"});
    add((struct spec){NOV1 - 31 * DAY, "erin", "openai/gpt-4o", 200, 0, "ok", 1, 1, 0, 0, 13 * M,
                      "upstream"});
}

static void setup(void)
{
    int fd;

    snprintf(db_path, sizeof db_path, "/tmp/orproxy-cq-XXXXXX");
    fd = mkstemp(db_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sqlite3_open(db_path, &wdb), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(wdb, "PRAGMA journal_mode=WAL;" LEDGER_SCHEMA_V1 LEDGER_SCHEMA_V2,
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    add_standard();
    ck_assert_int_eq(sqlite3_open_v2(db_path, &rdb, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    err[0] = '\0';
}

static void teardown(void)
{
    char side[80];

    sqlite3_close(rdb);
    sqlite3_close(wdb);
    unlink(db_path);
    snprintf(side, sizeof side, "%s-wal", db_path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db_path);
    unlink(side);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsString(v), "%s is not a string", key);
    return v->valuestring;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", key);
    return v->valuedouble;
}

static const cJSON *item(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(v != NULL, "no %s", key);
    return v;
}

/* The array under key as one string: each element's field joined by ','
 * (null as "-"); for checking an order in one assert. */
static const char *names(const cJSON *o, const char *key, const char *field)
{
    static char buf[512];
    const cJSON *e;

    buf[0] = '\0';
    cJSON_ArrayForEach(e, item(o, key))
    {
        const cJSON *v = field != NULL ? cJSON_GetObjectItemCaseSensitive(e, field) : e;
        char one[64];
        if (cJSON_IsString(v))
            snprintf(one, sizeof one, "%s", v->valuestring);
        else if (cJSON_IsNumber(v))
            snprintf(one, sizeof one, "%.0f", v->valuedouble);
        else
            snprintf(one, sizeof one, "-");
        if (buf[0] != '\0')
            strcat(buf, ",");
        strcat(buf, one);
    }
    return buf;
}

START_TEST(test_overview_sums_spend_tokens_and_counts)
{
    cJSON *j = cq_overview(rdb, NOW, err, sizeof err);
    const cJSON *spend, *tok;

    ck_assert_msg(j != NULL, "%s", err);
    spend = item(j, "spend");
    ck_assert_str_eq(str(spend, "today"), "0.008");
    ck_assert_str_eq(str(spend, "month"), "0.018");
    ck_assert_str_eq(str(spend, "last_30_days"), "0.029");
    ck_assert_int_eq((int)num(j, "requests"), 7);
    ck_assert_int_eq((int)num(j, "errors"), 1);
    tok = item(j, "tokens");
    ck_assert_int_eq((int)num(tok, "prompt"), 1312);
    ck_assert_int_eq((int)num(tok, "completion"), 662);
    ck_assert_int_eq((int)num(tok, "cached"), 30);
    ck_assert_int_eq((int)num(tok, "reasoning"), 5);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_overview_cost_by_source_and_top_lists)
{
    cJSON *j = cq_overview(rdb, NOW, err, sizeof err);
    const cJSON *e;

    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(names(j, "cost_by_source", "cost_source"), "upstream,estimate,pricing,none");
    ck_assert_str_eq(names(j, "cost_by_source", "cost_usd"), "0.024,0.003,0.002,0.00");
    ck_assert_str_eq(names(j, "cost_by_source", "requests"), "4,1,1,1");
    ck_assert_str_eq(names(j, "top_clients", "client"), "dave,alice,bob,carol");
    ck_assert_str_eq(names(j, "top_clients", "cost_usd"), "0.011,0.01,0.005,0.003");
    e = cJSON_GetArrayItem(item(j, "top_clients"), 2); /* bob */
    ck_assert_int_eq((int)num(e, "requests"), 2);
    ck_assert_int_eq((int)num(e, "errors"), 1);
    ck_assert_int_eq((int)num(e, "tokens"), 1500);
    ck_assert_str_eq(names(j, "top_models", "model"), "openai/gpt-4o,anthropic/claude,meta/llama,-");
    ck_assert_str_eq(names(j, "top_models", "requests"), "3,2,1,1");
    ck_assert_str_eq(names(j, "top_models", "cost_usd"), "0.014,0.012,0.003,0.00");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_overview_top_lists_hold_ten)
{
    cJSON *j;

    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%02d", i);
        add((struct spec){D1 + 4 * H, name, name, 200, 0, "ok", 1, 1, 0, 0, (100 + i) * M, "upstream"});
    }
    j = cq_overview(rdb, NOW, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "top_clients")), 10);
    ck_assert_str_eq(names(j, "top_clients", "client"), "c11,c10,c09,c08,c07,c06,c05,c04,c03,c02");
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "top_models")), 10);
    ck_assert_int_eq((int)num(j, "requests"), 19);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_reconciled_cost_moves_the_rollup)
{
    cJSON *j;

    /* Row 2's priced $0.002 becomes the upstream's $0.004. */
    ck_assert_int_eq(sqlite3_exec(wdb,
                                  "UPDATE requests SET cost_pusd = 4000000000, cost_source = 'upstream'"
                                  " WHERE id = 2",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    j = cq_overview(rdb, NOW, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(str(item(j, "spend"), "today"), "0.01");
    ck_assert_str_eq(str(item(j, "spend"), "last_30_days"), "0.031");
    /* The cost moves to its new source; the request stays counted where it was first written. */
    ck_assert_str_eq(names(j, "cost_by_source", "cost_source"), "upstream,estimate,none,pricing");
    ck_assert_str_eq(names(j, "cost_by_source", "cost_usd"), "0.028,0.003,0.00,0.00");
    ck_assert_str_eq(names(j, "cost_by_source", "requests"), "4,1,1,1");
    ck_assert_str_eq(names(j, "top_clients", "cost_usd"), "0.012,0.011,0.005,0.003");
    cJSON_Delete(j);
    j = cq_spend(rdb, NOW, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(str(item(j, "all"), "spent_usd_day"), "0.01");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_timeseries_hourly_by_client_with_other)
{
    cJSON *j = cq_timeseries(rdb, D1 + 1, D1 + 4 * H, 0, 0, 1, err, sizeof err);
    const cJSON *s;

    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(str(j, "bucket"), "hour");
    ck_assert_str_eq(str(j, "by"), "client");
    ck_assert(num(j, "since") == (double)(D1 + 1));
    ck_assert(num(j, "until") == (double)(D1 + 4 * H));
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "t")), 4);
    ck_assert(cJSON_GetArrayItem(item(j, "t"), 0)->valuedouble == (double)D1);
    ck_assert(cJSON_GetArrayItem(item(j, "t"), 3)->valuedouble == (double)(D1 + 3 * H));
    ck_assert_str_eq(names(j, "series", "name"), "bob,(other)");
    s = cJSON_GetArrayItem(item(j, "series"), 0);
    ck_assert_str_eq(names(s, "cost_usd", NULL), "0.00,0.00,0.005,0.00");
    ck_assert_str_eq(names(s, "requests", NULL), "0,0,1,1");
    ck_assert_str_eq(names(s, "tokens", NULL), "0,0,1500,0");
    s = cJSON_GetArrayItem(item(j, "series"), 1);
    ck_assert_str_eq(names(s, "cost_usd", NULL), "0.00,0.003,0.00,0.00");
    ck_assert_str_eq(names(s, "requests", NULL), "0,2,0,0");
    ck_assert_str_eq(names(s, "tokens", NULL), "0,450,0,0");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_timeseries_daily_by_model)
{
    cJSON *j = cq_timeseries(rdb, D0, D1 + 1, 1, 1, 2, err, sizeof err);
    const cJSON *s;

    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(str(j, "bucket"), "day");
    ck_assert_str_eq(str(j, "by"), "model");
    ck_assert_str_eq(names(j, "t", NULL), "1794873600000,1794960000000");
    ck_assert_str_eq(names(j, "series", "name"), "anthropic/claude,openai/gpt-4o,(other)");
    s = cJSON_GetArrayItem(item(j, "series"), 0);
    ck_assert_str_eq(names(s, "cost_usd", NULL), "0.00,0.005");
    s = cJSON_GetArrayItem(item(j, "series"), 1);
    ck_assert_str_eq(names(s, "cost_usd", NULL), "0.00,0.003");
    ck_assert_str_eq(names(s, "requests", NULL), "0,2");
    s = cJSON_GetArrayItem(item(j, "series"), 2); /* llama yesterday, (none) today */
    ck_assert_str_eq(names(s, "cost_usd", NULL), "0.003,0.00");
    ck_assert_str_eq(names(s, "requests", NULL), "1,1");
    cJSON_Delete(j);
    /* Room for every name: no "(other)", the model-less rows as "(none)". */
    j = cq_timeseries(rdb, D0, D1 + 1, 1, 1, 10, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(names(j, "series", "name"), "anthropic/claude,openai/gpt-4o,meta/llama,(none)");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_timeseries_empty_range)
{
    cJSON *j = cq_timeseries(rdb, D1 + 5 * H, D1 + 5 * H, 0, 0, 5, err, sizeof err);

    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "t")), 0);
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "series")), 0);
    cJSON_Delete(j);
    j = cq_timeseries(rdb, D1 + 5 * H, D1 + 7 * H, 0, 1, 5, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "t")), 2);
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "series")), 0);
    cJSON_Delete(j);
}
END_TEST

static cJSON *list(struct cq_filter f)
{
    cJSON *j = cq_requests(rdb, &f, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    return j;
}

#define NOFILTER                                                                                   \
    (struct cq_filter)                                                                             \
    {                                                                                              \
        .status = -1, .stream = -1, .limit = 100                                                   \
    }

START_TEST(test_requests_newest_first_with_every_column)
{
    cJSON *j = list(NOFILTER);
    const cJSON *r;

    ck_assert_str_eq(names(j, "requests", "id"), "8,7,6,5,4,3,2,1");
    ck_assert(cJSON_IsNull(item(j, "next_before")));
    r = cJSON_GetArrayItem(item(j, "requests"), 4); /* id 4 */
    ck_assert_str_eq(str(r, "client"), "bob");
    ck_assert(cJSON_IsNull(item(r, "model")));
    ck_assert_int_eq((int)num(r, "status"), 429);
    ck_assert_str_eq(str(r, "outcome"), "upstream_error");
    ck_assert_str_eq(str(r, "cost_usd"), "0.00");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(r, "cost_pusd"));
    r = cJSON_GetArrayItem(item(j, "requests"), 7); /* id 1 */
    ck_assert_str_eq(str(r, "cost_usd"), "0.001");
    ck_assert_str_eq(str(r, "cost_source"), "upstream");
    ck_assert(num(r, "started_ms") == (double)(D1 + H));
    ck_assert(num(r, "latency_ms") == 12.5);
    ck_assert_int_eq((int)num(r, "cached_tokens"), 10);
    ck_assert(cJSON_IsNull(item(r, "ttfb_ms")));
    cJSON_Delete(j);
}
END_TEST

/* The ids f lists, as "6,2,1". */
static void expect_ids(struct cq_filter f, const char *ids)
{
    cJSON *j = list(f);
    ck_assert_str_eq(names(j, "requests", "id"), ids);
    cJSON_Delete(j);
}

START_TEST(test_requests_each_filter)
{
    struct cq_filter f = NOFILTER;
    cJSON *j;

    f.client = "alice";
    expect_ids(f, "6,2,1");
    f = NOFILTER;
    f.model = "anthropic/claude";
    expect_ids(f, "6,3");
    f = NOFILTER;
    f.status = 429;
    expect_ids(f, "4");
    f = NOFILTER;
    f.outcome = "ok";
    expect_ids(f, "8,7,6,5,3,2,1");
    f = NOFILTER;
    f.stream = 1;
    expect_ids(f, "3,2");
    f = NOFILTER;
    f.since_ms = D0;
    f.until_ms = D1 + 2 * H; /* until is exclusive */
    expect_ids(f, "5,2,1");
    f.until_ms = 0;
    expect_ids(f, "5,4,3,2,1");
    f.since_ms = 0;
    f.until_ms = D0;
    expect_ids(f, "8,7,6");
    f = NOFILTER;
    f.client = "alice";
    f.model = "openai/gpt-4o";
    f.stream = 0;
    expect_ids(f, "1");
    f = NOFILTER;
    f.client = "nobody";
    j = list(f);
    ck_assert_int_eq(cJSON_GetArraySize(item(j, "requests")), 0);
    ck_assert(cJSON_IsNull(item(j, "next_before")));
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_requests_pages_until_exhausted)
{
    struct cq_filter f = NOFILTER;
    char seen[64] = "";
    int pages = 0;

    f.limit = 3;
    for (;;) {
        cJSON *j = list(f);
        const cJSON *nb = item(j, "next_before");
        strcat(seen, names(j, "requests", "id"));
        strcat(seen, "|");
        pages++;
        if (cJSON_IsNull(nb)) {
            cJSON_Delete(j);
            break;
        }
        f.before_id = (int64_t)nb->valuedouble;
        cJSON_Delete(j);
        ck_assert_int_lt(pages, 10);
    }
    ck_assert_str_eq(seen, "8,7,6|5,4,3|2,1|");
    /* A page that ends exactly at the last row says so. */
    f = NOFILTER;
    f.client = "alice";
    f.limit = 3;
    {
        cJSON *j = list(f);
        ck_assert_str_eq(names(j, "requests", "id"), "6,2,1");
        ck_assert(cJSON_IsNull(item(j, "next_before")));
        cJSON_Delete(j);
    }
    f.limit = 2;
    {
        cJSON *j = list(f);
        ck_assert_str_eq(names(j, "requests", "id"), "6,2");
        ck_assert_int_eq((int)num(j, "next_before"), 2);
        cJSON_Delete(j);
    }
}
END_TEST

START_TEST(test_models_by_cost)
{
    cJSON *j = cq_models(rdb, NOV1 + 1, err, sizeof err);

    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(names(j, "models", "model"), "anthropic/claude,openai/gpt-4o,meta/llama,-");
    ck_assert_str_eq(names(j, "models", "cost_usd"), "0.012,0.003,0.003,0.00");
    ck_assert_str_eq(names(j, "models", "requests"), "2,2,1,1");
    ck_assert_str_eq(names(j, "models", "tokens"), "1502,450,20,0");
    cJSON_Delete(j);
    j = cq_models(rdb, 0, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(names(j, "models", "cost_usd"), "0.027,0.012,0.003,0.00");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_spend_per_client_day_and_month)
{
    cJSON *j = cq_spend(rdb, NOW, err, sizeof err);

    ck_assert_msg(j != NULL, "%s", err);
    ck_assert_str_eq(names(j, "clients", "client"), "alice,bob,carol");
    ck_assert_str_eq(names(j, "clients", "spent_usd_day"), "0.003,0.005,0.00");
    ck_assert_str_eq(names(j, "clients", "spent_usd_month"), "0.01,0.005,0.003");
    ck_assert_str_eq(str(item(j, "all"), "spent_usd_day"), "0.008");
    ck_assert_str_eq(str(item(j, "all"), "spent_usd_month"), "0.018");
    cJSON_Delete(j);
}
END_TEST

/* Each call must fail with NULL and a message containing want. */
static void bad(cJSON *j, const char *want)
{
    ck_assert_ptr_null(j);
    ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
    err[0] = '\0';
}

START_TEST(test_bad_inputs_are_refused_with_a_message)
{
    struct cq_filter f = NOFILTER;

    bad(cq_overview(rdb, 0, err, sizeof err), "now");
    bad(cq_spend(rdb, -5, err, sizeof err), "now");
    bad(cq_models(rdb, -1, err, sizeof err), "since");
    bad(cq_timeseries(rdb, D1, D0, 0, 0, 5, err, sizeof err), "since must not be after until");
    bad(cq_timeseries(rdb, -1, D0, 0, 0, 5, err, sizeof err), "since and until");
    bad(cq_timeseries(rdb, D1 - 401 * DAY, D1, 0, 0, 5, err, sizeof err), "400 days");
    {
        cJSON *edge = cq_timeseries(rdb, D1 - 400 * DAY, D1, 0, 0, 5, err, sizeof err);
        ck_assert_msg(edge != NULL, "%s", err);
        ck_assert_int_eq(cJSON_GetArraySize(item(edge, "t")), 400 * 24);
        cJSON_Delete(edge);
    }
    bad(cq_timeseries(rdb, D1 - 1831 * DAY, D1, 1, 0, 5, err, sizeof err), "1830 days");
    bad(cq_timeseries(rdb, D0, D1, 2, 0, 5, err, sizeof err), "bucket");
    bad(cq_timeseries(rdb, D0, D1, 0, 3, 5, err, sizeof err), "bucket");
    bad(cq_timeseries(rdb, D0, D1, 0, 0, 0, err, sizeof err), "top");
    bad(cq_timeseries(rdb, D0, D1, 0, 0, CQ_MAX_TOP_N + 1, err, sizeof err), "top");
    bad(cq_requests(rdb, NULL, err, sizeof err), "filter");
    f.limit = 0;
    bad(cq_requests(rdb, &f, err, sizeof err), "limit");
    f.limit = 1001;
    bad(cq_requests(rdb, &f, err, sizeof err), "limit must be between 1 and 1000");
    f = NOFILTER;
    f.status = 99;
    bad(cq_requests(rdb, &f, err, sizeof err), "status");
    f = NOFILTER;
    f.stream = 2;
    bad(cq_requests(rdb, &f, err, sizeof err), "stream");
    f = NOFILTER;
    f.since_ms = D1;
    f.until_ms = D0;
    bad(cq_requests(rdb, &f, err, sizeof err), "since must not be after until");
    f = NOFILTER;
    f.until_ms = -1;
    bad(cq_requests(rdb, &f, err, sizeof err), "since and until");
    f = NOFILTER;
    f.before_id = -1;
    bad(cq_requests(rdb, &f, err, sizeof err), "before");
    f = NOFILTER;
    f.client = "";
    bad(cq_requests(rdb, &f, err, sizeof err), "client");
    f = NOFILTER;
    f.model = "";
    bad(cq_requests(rdb, &f, err, sizeof err), "model");
    {
        char longname[CQ_MAX_FILTER_LEN + 2];
        memset(longname, 'x', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        f = NOFILTER;
        f.outcome = longname;
        bad(cq_requests(rdb, &f, err, sizeof err), "outcome");
    }
}
END_TEST

START_TEST(test_a_ledger_without_rollups_is_a_database_error)
{
    sqlite3 *v1;
    char path[64];
    int fd;

    snprintf(path, sizeof path, "/tmp/orproxy-cq1-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sqlite3_open(path, &v1), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(v1, LEDGER_SCHEMA_V1, NULL, NULL, NULL), SQLITE_OK);
    bad(cq_overview(v1, NOW, err, sizeof err), "ledger: no such table: rollup_day");
    bad(cq_timeseries(v1, D0, D1, 0, 0, 5, err, sizeof err), "ledger: no such table: rollup_hour");
    bad(cq_models(v1, 0, err, sizeof err), "ledger: no such table");
    bad(cq_spend(v1, NOW, err, sizeof err), "ledger: no such table");
    ck_assert_int_eq(sqlite3_exec(v1, "DROP TABLE requests", NULL, NULL, NULL), SQLITE_OK);
    {
        struct cq_filter f = NOFILTER;
        bad(cq_requests(v1, &f, err, sizeof err), "ledger: no such table: requests");
    }
    sqlite3_close(v1);
    unlink(path);
}
END_TEST

/* A version 1 ledger with rows moved to version 2 (as ledger.c's migration
 * does): the backfilled rollups give the figures the triggers give. */
START_TEST(test_backfilled_rollups_match_the_triggers)
{
    sqlite3 *keep_w = wdb, *keep_r = rdb;
    char path[64];
    cJSON *a, *b;
    int fd;

    snprintf(path, sizeof path, "/tmp/orproxy-cqm-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sqlite3_open(path, &wdb), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(wdb, LEDGER_SCHEMA_V1, NULL, NULL, NULL), SQLITE_OK);
    add_standard();
    ck_assert_int_eq(sqlite3_exec(wdb, LEDGER_SCHEMA_V2 LEDGER_ROLLUP_BACKFILL, NULL, NULL, NULL),
                     SQLITE_OK);
    a = cq_overview(wdb, NOW, err, sizeof err);
    ck_assert_msg(a != NULL, "%s", err);
    b = cq_overview(keep_r, NOW, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    ck_assert_msg(cJSON_Compare(a, b, 1), "backfilled overview differs");
    ck_assert_str_eq(str(item(a, "spend"), "last_30_days"), "0.029");
    cJSON_Delete(a);
    cJSON_Delete(b);
    a = cq_timeseries(wdb, D0, D1 + DAY, 0, 1, 5, err, sizeof err);
    b = cq_timeseries(keep_r, D0, D1 + DAY, 0, 1, 5, err, sizeof err);
    ck_assert(a != NULL && b != NULL && cJSON_Compare(a, b, 1));
    cJSON_Delete(a);
    cJSON_Delete(b);
    sqlite3_close(wdb);
    unlink(path);
    wdb = keep_w;
    rdb = keep_r;
}
END_TEST

static Suite *console_query_suite(void)
{
    Suite *s = suite_create("console_query");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_overview_sums_spend_tokens_and_counts);
    tcase_add_test(tc, test_overview_cost_by_source_and_top_lists);
    tcase_add_test(tc, test_overview_top_lists_hold_ten);
    tcase_add_test(tc, test_reconciled_cost_moves_the_rollup);
    tcase_add_test(tc, test_timeseries_hourly_by_client_with_other);
    tcase_add_test(tc, test_timeseries_daily_by_model);
    tcase_add_test(tc, test_timeseries_empty_range);
    tcase_add_test(tc, test_requests_newest_first_with_every_column);
    tcase_add_test(tc, test_requests_each_filter);
    tcase_add_test(tc, test_requests_pages_until_exhausted);
    tcase_add_test(tc, test_models_by_cost);
    tcase_add_test(tc, test_spend_per_client_day_and_month);
    tcase_add_test(tc, test_bad_inputs_are_refused_with_a_message);
    tcase_add_test(tc, test_a_ledger_without_rollups_is_a_database_error);
    tcase_add_test(tc, test_backfilled_rollups_match_the_triggers);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(console_query_suite)
