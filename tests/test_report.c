/* Unit tests for report.c: grouping, filtering, exact money, the three
 * output formats, time parsing, and opening the ledger read-only.  Each
 * test gets a fresh WAL ledger file under /tmp with LEDGER_SCHEMA_V1. */
#include <check.h>
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "ledger.h"
#include "report.h"

#define H INT64_C(3600000)
#define D0 INT64_C(1794873600000) /* 2026-11-17T00:00:00Z */
#define D1 INT64_C(1794960000000) /* 2026-11-18T00:00:00Z */

static char db_path[64];
static sqlite3 *wdb; /* the "daemon": a writer connection, WAL mode */

static void setup(void)
{
    int fd;

    snprintf(db_path, sizeof db_path, "/tmp/orproxy-report-XXXXXX");
    fd = mkstemp(db_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(sqlite3_open(db_path, &wdb), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(wdb, "PRAGMA journal_mode=WAL;" LEDGER_SCHEMA_V1, NULL, NULL, NULL),
                     SQLITE_OK);
}

static void remove_db(const char *path)
{
    char side[80];

    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void teardown(void)
{
    sqlite3_close(wdb);
    wdb = NULL;
    remove_db(db_path);
}

struct spec {
    int64_t ms;
    const char *client, *user, *model, *served;
    int status;
    const char *outcome;
    int64_t prompt, completion, total, cost;
    const char *source;
};

static void add(struct spec s)
{
    static const char sql[] =
        "INSERT INTO requests (request_id, started_at, started_ms, client, user, route, model,"
        " served_model, status, prompt_tokens, completion_tokens, total_tokens, cost_pusd,"
        " cost_source, outcome) VALUES ('r', 'x', ?, ?, ?, 'chat', ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    sqlite3_stmt *st;

    ck_assert_int_eq(sqlite3_prepare_v2(wdb, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, s.ms);
    sqlite3_bind_text(st, 2, s.client != NULL ? s.client : "anonymous", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s.user, -1, SQLITE_STATIC); /* NULL binds NULL */
    sqlite3_bind_text(st, 4, s.model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, s.served, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, s.status != 0 ? s.status : 200);
    sqlite3_bind_int64(st, 7, s.prompt);
    sqlite3_bind_int64(st, 8, s.completion);
    sqlite3_bind_int64(st, 9, s.total);
    sqlite3_bind_int64(st, 10, s.cost);
    sqlite3_bind_text(st, 11, s.source != NULL ? s.source : "upstream", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, s.outcome != NULL ? s.outcome : "ok", -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Five requests over two days, three clients, three models, four users;
 * one estimated cost, one priced, two errors. */
static void add_standard(void)
{
    add((struct spec){D0 + 1 * H, "alice", "u1", "openai/gpt-4o", "openai/gpt-4o", 200, "ok", 100,
                      50, 150, 123000000, "upstream"});
    add((struct spec){D0 + 2 * H, "alice", "u2", "openai/gpt-4o", NULL, 200, "ok", 100, 50, 150,
                      123000000, "pricing"});
    add((struct spec){D1 + 1 * H, "bob", "u1", "openai/gpt-4o", "openai/gpt-4o", 200, "stream_error",
                      100, 50, 150, 123000000, "estimate"});
    add((struct spec){D1 + 2 * H, "bob", NULL, "anthropic/claude-3.5-sonnet",
                      "anthropic/claude-3.5-sonnet", 200, "ok", 1000, 500, 1500, 1500000000000,
                      "upstream"});
    add((struct spec){D1 + 3 * H, "carol", "a,b \"c\"", "meta/llama", "meta/llama", 429,
                      "upstream_error", 0, 0, 0, 0, "none"});
}

/* Runs report_write into memory; asserts it succeeds.  Caller frees. */
static char *run(const struct report_query *q, enum report_format fmt)
{
    char *text = NULL, err[256] = "";
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc;

    ck_assert_ptr_nonnull(f);
    rc = report_write(db_path, q, fmt, f, err, sizeof err);
    fclose(f);
    ck_assert_msg(rc == 0, "report_write: %s", err);
    return text;
}

/* report_query_json on a fresh read-only connection. */
static cJSON *query(const struct report_query *q)
{
    sqlite3 *db;
    char err[256] = "";
    cJSON *j;

    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    j = report_query_json(db, q, err, sizeof err);
    sqlite3_close(db);
    ck_assert_msg(j != NULL, "report_query_json: %s", err);
    return j;
}

static const cJSON *row_at(const cJSON *j, int i)
{
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rows"), i);
    ck_assert_msg(r != NULL, "no row %d", i);
    return r;
}

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    ck_assert_msg(cJSON_IsString(v), "%s is not a string", name);
    return v->valuestring;
}

static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", name);
    return v->valuedouble;
}

static int nrows(const cJSON *j)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(j, "rows"));
}

/* ---- totals and money ---- */

START_TEST(test_report_total_is_exact_sum_of_pusd)
{
    struct report_query q = {0};
    cJSON *j;

    for (int i = 0; i < 3; i++)
        add((struct spec){D0 + i, "k", NULL, "m", NULL, 200, "ok", 10, 5, 15, 123000000, NULL});
    j = query(&q);
    ck_assert_str_eq(str(cJSON_GetObjectItem(j, "total"), "cost_usd"), "0.000369");
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "cost_pusd") == 369000000.0);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 3);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "prompt_tokens") == 30);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "completion_tokens") == 15);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "total_tokens") == 45);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_money_is_decimal_usd_with_at_least_two_places)
{
    struct report_query q = {.by = REPORT_BY_KEY};
    static const struct {
        const char *client;
        int64_t pusd;
        const char *usd;
    } cases[] = {{"a", INT64_C(12345678901234567), "12345.678901234567"},
                 {"b", INT64_C(1500000000000), "1.50"},
                 {"c", INT64_C(1000000000), "0.001"},
                 {"d", INT64_C(123000000), "0.000123"},
                 {"e", INT64_C(1), "0.000000000001"},
                 {"f", INT64_C(0), "0.00"}};
    cJSON *j;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        add((struct spec){D0, cases[i].client, NULL, "m", NULL, 200, "ok", 0, 0, 0, cases[i].pusd,
                          NULL});
    j = query(&q);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_str_eq(str(row_at(j, (int)i), "group"), cases[i].client);
        ck_assert_str_eq(str(row_at(j, (int)i), "cost_usd"), cases[i].usd);
    }
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_empty_ledger_reports_zeroes)
{
    struct report_query q = {.by = REPORT_BY_MODEL};
    cJSON *j = query(&q);

    ck_assert_int_eq(nrows(j), 0);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 0);
    ck_assert_str_eq(str(cJSON_GetObjectItem(j, "total"), "cost_usd"), "0.00");
    ck_assert(num(j, "estimated_share") == 0.0);
    cJSON_Delete(j);
}
END_TEST

/* ---- grouping and order ---- */

START_TEST(test_report_by_model_uses_served_model_else_requested)
{
    struct report_query q = {.by = REPORT_BY_MODEL};
    cJSON *j;

    add_standard();
    add((struct spec){D0, "k", NULL, "openrouter/auto", "openai/gpt-4o", 200, "ok", 0, 0, 0, 1,
                      NULL});
    j = query(&q);
    ck_assert_str_eq(str(j, "by"), "model");
    ck_assert_int_eq(nrows(j), 3);
    ck_assert_str_eq(str(row_at(j, 0), "group"), "anthropic/claude-3.5-sonnet");
    ck_assert_str_eq(str(row_at(j, 1), "group"), "openai/gpt-4o");
    ck_assert(num(row_at(j, 1), "requests") == 4); /* three served + one routed by auto */
    ck_assert_str_eq(str(row_at(j, 1), "cost_usd"), "0.000369000001");
    ck_assert_str_eq(str(row_at(j, 2), "group"), "meta/llama");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_by_key_orders_by_cost_descending)
{
    struct report_query q = {.by = REPORT_BY_KEY};
    cJSON *j;

    add_standard();
    j = query(&q);
    ck_assert_int_eq(nrows(j), 3);
    ck_assert_str_eq(str(row_at(j, 0), "group"), "bob");
    ck_assert_str_eq(str(row_at(j, 0), "cost_usd"), "1.500123");
    ck_assert_str_eq(str(row_at(j, 1), "group"), "alice");
    ck_assert_str_eq(str(row_at(j, 1), "cost_usd"), "0.000246");
    ck_assert_str_eq(str(row_at(j, 2), "group"), "carol");
    ck_assert_str_eq(str(row_at(j, 2), "cost_usd"), "0.00");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_equal_costs_order_by_group_name)
{
    struct report_query q = {.by = REPORT_BY_KEY};
    cJSON *j;

    add((struct spec){D0, "zed", NULL, "m", NULL, 200, "ok", 0, 0, 0, 5, NULL});
    add((struct spec){D0, "amy", NULL, "m", NULL, 200, "ok", 0, 0, 0, 5, NULL});
    add((struct spec){D0, "max", NULL, "m", NULL, 200, "ok", 0, 0, 0, 7, NULL});
    j = query(&q);
    ck_assert_str_eq(str(row_at(j, 0), "group"), "max");
    ck_assert_str_eq(str(row_at(j, 1), "group"), "amy");
    ck_assert_str_eq(str(row_at(j, 2), "group"), "zed");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_by_day_groups_by_utc_date)
{
    struct report_query q = {.by = REPORT_BY_DAY};
    cJSON *j;

    add_standard();
    add((struct spec){D1 - 1, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL}); /* 23:59:59.999 */
    j = query(&q);
    ck_assert_int_eq(nrows(j), 2);
    ck_assert_str_eq(str(row_at(j, 0), "group"), "2026-11-18");
    ck_assert(num(row_at(j, 0), "requests") == 3);
    ck_assert_str_eq(str(row_at(j, 1), "group"), "2026-11-17");
    ck_assert(num(row_at(j, 1), "requests") == 3);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_by_user_groups_missing_user_as_null)
{
    struct report_query q = {.by = REPORT_BY_USER};
    cJSON *j;

    add_standard();
    j = query(&q);
    ck_assert_int_eq(nrows(j), 4);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(row_at(j, 0), "group")));
    ck_assert_str_eq(str(row_at(j, 0), "cost_usd"), "1.50");
    ck_assert_str_eq(str(row_at(j, 1), "group"), "u1");
    ck_assert(num(row_at(j, 1), "requests") == 2);
    ck_assert_str_eq(str(row_at(j, 2), "group"), "u2");
    ck_assert_str_eq(str(row_at(j, 3), "group"), "a,b \"c\"");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_by_none_has_no_rows_only_total)
{
    struct report_query q = {.by = REPORT_BY_NONE};
    cJSON *j;

    add_standard();
    j = query(&q);
    ck_assert_str_eq(str(j, "by"), "none");
    ck_assert_int_eq(nrows(j), 0);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 5);
    ck_assert_str_eq(str(cJSON_GetObjectItem(j, "total"), "cost_usd"), "1.500369");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_errors_count_bad_status_or_outcome_not_ok)
{
    struct report_query q = {0};
    cJSON *j;

    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    add((struct spec){D0, "k", NULL, "m", NULL, 404, "ok", 0, 0, 0, 0, NULL});
    add((struct spec){D0, "k", NULL, "m", NULL, 502, "upstream_error", 0, 0, 0, 0, NULL});
    add((struct spec){D0, "k", NULL, "m", NULL, 200, "cancelled", 0, 0, 0, 0, NULL});
    add((struct spec){D0, "k", NULL, "m", NULL, 399, "ok", 0, 0, 0, 0, NULL});
    j = query(&q);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 5);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "errors") == 3);
    cJSON_Delete(j);
}
END_TEST

/* ---- filters ---- */

START_TEST(test_report_since_is_inclusive_until_is_exclusive)
{
    struct report_query q = {.since_ms = 2000, .until_ms = 3000, .by = REPORT_BY_KEY};
    cJSON *j;

    add((struct spec){1999, "before", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    add((struct spec){2000, "at-since", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    add((struct spec){2999, "last-in", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    add((struct spec){3000, "at-until", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    j = query(&q);
    ck_assert_int_eq(nrows(j), 2);
    ck_assert_str_eq(str(row_at(j, 0), "group"), "at-since");
    ck_assert_str_eq(str(row_at(j, 1), "group"), "last-in");
    ck_assert_str_eq(str(j, "since"), "1970-01-01T00:00:02Z");
    ck_assert_str_eq(str(j, "until"), "1970-01-01T00:00:03Z");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_zero_bounds_are_unbounded_and_null)
{
    struct report_query q = {0};
    cJSON *j;

    add((struct spec){1, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    add((struct spec){INT64_C(4102444800000), "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    j = query(&q);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 2);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "since")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "until")));
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_client_filter_keeps_only_that_client)
{
    struct report_query q = {.by = REPORT_BY_MODEL, .client = "alice"};
    cJSON *j;

    add_standard();
    j = query(&q);
    ck_assert_int_eq(nrows(j), 1);
    ck_assert_str_eq(str(row_at(j, 0), "group"), "openai/gpt-4o");
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 2);
    ck_assert_str_eq(str(cJSON_GetObjectItem(j, "total"), "cost_usd"), "0.000246");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_client_filter_is_a_bound_value)
{
    struct report_query q = {.client = "x' OR '1'='1"};
    cJSON *j;

    add_standard();
    j = query(&q);
    ck_assert(num(cJSON_GetObjectItem(j, "total"), "requests") == 0);
    cJSON_Delete(j);
}
END_TEST

/* ---- estimated costs ---- */

START_TEST(test_report_only_estimate_rows_count_as_estimated)
{
    struct report_query q = {.by = REPORT_BY_KEY};
    const cJSON *t;
    cJSON *j;

    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 250000000, "estimate"});
    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 250000000, "pricing"});
    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 500000000, "upstream"});
    j = query(&q);
    t = cJSON_GetObjectItem(j, "total");
    ck_assert_str_eq(str(t, "cost_usd"), "0.001");
    ck_assert_str_eq(str(t, "estimated_cost_usd"), "0.00025");
    ck_assert(num(t, "estimated_cost_pusd") == 250000000.0);
    ck_assert_str_eq(str(t, "priced_cost_usd"), "0.00025");
    ck_assert(num(t, "priced_cost_pusd") == 250000000.0);
    ck_assert_str_eq(str(row_at(j, 0), "estimated_cost_usd"), "0.00025");
    ck_assert_str_eq(str(row_at(j, 0), "priced_cost_usd"), "0.00025");
    ck_assert_double_eq_tol(num(j, "estimated_share"), 0.25, 1e-12);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_report_table_states_estimated_share)
{
    struct report_query q = {0};
    char *text;

    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 123000000, "estimate"});
    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 877000000, "upstream"});
    text = run(&q, REPORT_TABLE);
    ck_assert_ptr_nonnull(strstr(text, "\nestimated: $0.000123 of $0.001 (12.3%) is a local estimate "
                                       "(cost_source=estimate); the rest is as reported by "
                                       "OpenRouter or computed from its price table\n"));
    free(text);
}
END_TEST

START_TEST(test_report_table_states_nothing_estimated)
{
    struct report_query q = {0};
    char *text;

    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 123000000, "pricing"});
    text = run(&q, REPORT_TABLE);
    ck_assert_ptr_nonnull(strstr(text, "\nestimated: none (all costs as reported by OpenRouter or "
                                       "computed from its price table)\n"));
    free(text);
}
END_TEST

/* ---- output formats ---- */

START_TEST(test_report_table_exact_text)
{
    struct report_query q = {.since_ms = D0, .by = REPORT_BY_MODEL};
    char *text;

    add_standard();
    text = run(&q, REPORT_TABLE);
    ck_assert_str_eq(
        text,
        "orproxy usage from 2026-11-17T00:00:00Z to now\n"
        "MODEL                        REQUESTS  ERRORS  PROMPT  COMPLETION  TOTAL_TOKENS  COST_USD\n"
        "anthropic/claude-3.5-sonnet         1       0    1000         500          1500      1.50\n"
        "openai/gpt-4o                       3       1     300         150           450  0.000369\n"
        "meta/llama                          1       1       0           0             0      0.00\n"
        "TOTAL                               5       2    1300         650          1950  1.500369\n"
        "estimated: $0.000123 of $1.500369 (0.0%) is a local estimate (cost_source=estimate); the "
        "rest is as reported by OpenRouter or computed from its price table\n");
    free(text);
}
END_TEST

START_TEST(test_report_table_without_grouping_has_blank_group_header)
{
    struct report_query q = {.until_ms = D1 + 12 * H};
    char *text;

    add_standard();
    text = run(&q, REPORT_TABLE);
    ck_assert_str_eq(text,
                     "orproxy usage from the beginning to 2026-11-18T12:00:00Z\n"
                     "       REQUESTS  ERRORS  PROMPT  COMPLETION  TOTAL_TOKENS  COST_USD\n"
                     "TOTAL         5       2    1300         650          1950  1.500369\n"
                     "estimated: $0.000123 of $1.500369 (0.0%) is a local estimate "
                     "(cost_source=estimate); the rest is as reported by OpenRouter or computed "
                     "from its price table\n");
    free(text);
}
END_TEST

START_TEST(test_report_table_replaces_control_characters_in_groups)
{
    struct report_query q = {.by = REPORT_BY_USER};
    char *text;

    add((struct spec){D0, "k", "evil\x1b[2J\nline", "m", NULL, 200, "ok", 0, 0, 0, 1, NULL});
    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 0, NULL});
    text = run(&q, REPORT_TABLE);
    ck_assert_ptr_nonnull(strstr(text, "\nevil?[2J?line  "));
    ck_assert_ptr_nonnull(strstr(text, "\n(none)  "));
    ck_assert_ptr_null(strchr(text, '\x1b'));
    free(text);
}
END_TEST

START_TEST(test_report_csv_exact_text_with_quoting)
{
    struct report_query q = {.by = REPORT_BY_USER};
    char *text;

    add_standard();
    text = run(&q, REPORT_CSV);
    ck_assert_str_eq(text,
                     "group,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost_usd,"
                     "estimated_cost_usd\n"
                     ",1,0,1000,500,1500,1.50,0.00\n"
                     "u1,2,1,200,100,300,0.000246,0.000123\n"
                     "u2,1,0,100,50,150,0.000123,0.00\n"
                     "\"a,b \"\"c\"\"\",1,1,0,0,0,0.00,0.00\n"
                     "TOTAL,5,2,1300,650,1950,1.500369,0.000123\n");
    free(text);
}
END_TEST

START_TEST(test_report_csv_quotes_newlines)
{
    struct report_query q = {.by = REPORT_BY_USER};
    char *text;

    add((struct spec){D0, "k", "two\nlines", "m", NULL, 200, "ok", 1, 2, 3, 0, NULL});
    text = run(&q, REPORT_CSV);
    ck_assert_str_eq(text,
                     "group,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost_usd,"
                     "estimated_cost_usd\n"
                     "\"two\nlines\",1,0,1,2,3,0.00,0.00\n"
                     "TOTAL,1,0,1,2,3,0.00,0.00\n");
    free(text);
}
END_TEST

START_TEST(test_report_json_output_parses_back)
{
    struct report_query q = {.since_ms = D0, .by = REPORT_BY_MODEL};
    const cJSON *t, *r0;
    char *text;
    cJSON *j;

    add_standard();
    text = run(&q, REPORT_JSON);
    ck_assert_int_eq(text[strlen(text) - 1], '\n');
    j = cJSON_Parse(text);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(str(j, "since"), "2026-11-17T00:00:00Z");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "until")));
    ck_assert_str_eq(str(j, "by"), "model");
    ck_assert_int_eq(nrows(j), 3);
    r0 = row_at(j, 0);
    ck_assert_str_eq(str(r0, "group"), "anthropic/claude-3.5-sonnet");
    ck_assert(num(r0, "cost_pusd") == 1500000000000.0);
    ck_assert_str_eq(str(r0, "cost_usd"), "1.50");
    ck_assert(num(row_at(j, 1), "errors") == 1);
    t = cJSON_GetObjectItem(j, "total");
    ck_assert_ptr_null(cJSON_GetObjectItem(t, "group"));
    ck_assert(num(t, "requests") == 5);
    ck_assert(num(t, "errors") == 2);
    ck_assert(num(t, "prompt_tokens") == 1300);
    ck_assert(num(t, "completion_tokens") == 650);
    ck_assert(num(t, "total_tokens") == 1950);
    ck_assert(num(t, "cost_pusd") == 1500369000000.0);
    ck_assert(num(t, "estimated_cost_pusd") == 123000000.0);
    ck_assert(num(t, "priced_cost_pusd") == 123000000.0);
    ck_assert_str_eq(str(t, "cost_usd"), "1.500369");
    ck_assert_str_eq(str(t, "estimated_cost_usd"), "0.000123");
    ck_assert_double_eq_tol(num(j, "estimated_share"), 123.0 / 1500369.0, 1e-15);
    cJSON_Delete(j);
    free(text);
}
END_TEST

/* ---- parsing ---- */

START_TEST(test_report_parse_time_relative_to_now)
{
    const int64_t now = INT64_C(1795000000123);
    int64_t t;

    ck_assert_int_eq(report_parse_time("90s", now, &t), 0);
    ck_assert_int_eq(t, now - 90 * 1000);
    ck_assert_int_eq(report_parse_time("30m", now, &t), 0);
    ck_assert_int_eq(t, now - 30 * 60 * 1000);
    ck_assert_int_eq(report_parse_time("24h", now, &t), 0);
    ck_assert_int_eq(t, now - 24 * H);
    ck_assert_int_eq(report_parse_time("7d", now, &t), 0);
    ck_assert_int_eq(t, now - 7 * 24 * H);
    ck_assert_int_eq(report_parse_time("2w", now, &t), 0);
    ck_assert_int_eq(t, now - 14 * 24 * H);
    ck_assert_int_eq(report_parse_time("0s", now, &t), 0);
    ck_assert_int_eq(t, now);
}
END_TEST

START_TEST(test_report_parse_time_absolute_utc)
{
    int64_t t;

    ck_assert_int_eq(report_parse_time("2026-11-01", 0, &t), 0);
    ck_assert_int_eq(t, INT64_C(1793491200000));
    ck_assert_int_eq(report_parse_time("2026-11-01T12:30:00Z", 0, &t), 0);
    ck_assert_int_eq(t, INT64_C(1793536200000));
    ck_assert_int_eq(report_parse_time("2026-11-01 12:30:00", 0, &t), 0);
    ck_assert_int_eq(t, INT64_C(1793536200000));
    ck_assert_int_eq(report_parse_time("2026-11-01T12:30Z", 0, &t), 0);
    ck_assert_int_eq(t, INT64_C(1793536200000));
    ck_assert_int_eq(report_parse_time("2026-11-01T12:30:00.250Z", 0, &t), 0);
    ck_assert_int_eq(t, INT64_C(1793536200250));
    ck_assert_int_eq(report_parse_time("2028-02-29", 0, &t), 0);
    ck_assert_int_eq(t, INT64_C(1835395200000));
    ck_assert_int_eq(report_parse_time("1970-01-01", 0, &t), 0);
    ck_assert_int_eq(t, 0);
}
END_TEST

START_TEST(test_report_parse_time_rejects_invalid)
{
    static const char *bad[] = {"",
                                "7x",
                                "2026-13-01",
                                "-1d",
                                "d",
                                "24",
                                "7d ",
                                " 7d",
                                "1.5h",
                                "2026-11-1",
                                "2026-02-29",
                                "2026-11-31",
                                "2026-00-10",
                                "1969-12-31",
                                "2026-11-01T",
                                "2026-11-01T24:00:00Z",
                                "2026-11-01T12:60:00Z",
                                "2026-11-01T12:30:60Z",
                                "2026-11-01T12:30:00+01:00",
                                "2026-11-01T12:30:00.1234Z",
                                "2026-11-01T12:30:00.Z",
                                "2026-11-01Z",
                                "99999999999999999999d",
                                "999999w"};
    int64_t t = 42;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(report_parse_time(bad[i], INT64_C(1795000000000), &t) == -1, "'%s'", bad[i]);
    ck_assert_int_eq(report_parse_time(NULL, 0, &t), -1);
    ck_assert_int_eq(t, 42);
}
END_TEST

START_TEST(test_report_parse_by_and_format_names)
{
    enum report_by by;
    enum report_format fmt;

    ck_assert_int_eq(report_parse_by("key", &by), 0);
    ck_assert_int_eq(by, REPORT_BY_KEY);
    ck_assert_int_eq(report_parse_by("model", &by), 0);
    ck_assert_int_eq(by, REPORT_BY_MODEL);
    ck_assert_int_eq(report_parse_by("day", &by), 0);
    ck_assert_int_eq(by, REPORT_BY_DAY);
    ck_assert_int_eq(report_parse_by("user", &by), 0);
    ck_assert_int_eq(by, REPORT_BY_USER);
    ck_assert_int_eq(report_parse_by("none", &by), 0);
    ck_assert_int_eq(by, REPORT_BY_NONE);
    ck_assert_int_eq(report_parse_by("Model", &by), -1);
    ck_assert_int_eq(report_parse_by("", &by), -1);
    ck_assert_int_eq(report_parse_format("table", &fmt), 0);
    ck_assert_int_eq(fmt, REPORT_TABLE);
    ck_assert_int_eq(report_parse_format("json", &fmt), 0);
    ck_assert_int_eq(fmt, REPORT_JSON);
    ck_assert_int_eq(report_parse_format("csv", &fmt), 0);
    ck_assert_int_eq(fmt, REPORT_CSV);
    ck_assert_int_eq(report_parse_format("xml", &fmt), -1);
}
END_TEST

/* ---- opening the ledger ---- */

START_TEST(test_report_database_without_requests_table_is_not_a_ledger)
{
    struct report_query q = {0};
    char err[256] = "";
    FILE *f = fopen("/dev/null", "w");

    ck_assert_int_eq(sqlite3_exec(wdb, "DROP TABLE requests; CREATE TABLE other (x);", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    ck_assert_int_eq(report_write(db_path, &q, REPORT_TABLE, f, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not an orproxy ledger") != NULL, "%s", err);
    ck_assert_msg(strstr(err, db_path) != NULL, "%s", err);
    fclose(f);
}
END_TEST

START_TEST(test_report_non_sqlite_file_is_not_a_ledger)
{
    struct report_query q = {0};
    char path[] = "/tmp/orproxy-report-text-XXXXXX", err[256] = "";
    FILE *f = fopen("/dev/null", "w");
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "this is not a database, just some text\n", 39), 39);
    close(fd);
    ck_assert_int_eq(report_write(path, &q, REPORT_TABLE, f, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not an orproxy ledger") != NULL, "%s", err);
    fclose(f);
    unlink(path);
}
END_TEST

START_TEST(test_report_missing_file_is_an_error_and_is_not_created)
{
    struct report_query q = {0};
    char path[80], err[256] = "";
    FILE *f = fopen("/dev/null", "w");

    snprintf(path, sizeof path, "%s-missing", db_path);
    ck_assert_int_eq(report_write(path, &q, REPORT_TABLE, f, err, sizeof err), -1);
    ck_assert_msg(strncmp(err, "cannot open ", 12) == 0 && strstr(err, path) != NULL, "%s", err);
    ck_assert_int_eq(access(path, F_OK), -1);
    fclose(f);
}
END_TEST

START_TEST(test_report_reads_while_writer_holds_a_transaction)
{
    struct report_query q = {0};
    cJSON *j;
    char *text;

    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 123000000, NULL});
    ck_assert_int_eq(sqlite3_exec(wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 1, NULL}); /* uncommitted */
    text = run(&q, REPORT_JSON);
    j = cJSON_Parse(text);
    ck_assert_str_eq(str(cJSON_GetObjectItem(j, "total"), "cost_usd"), "0.000123");
    ck_assert_int_eq(sqlite3_exec(wdb, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    cJSON_Delete(j);
    free(text);
}
END_TEST

START_TEST(test_report_reads_ledger_after_daemon_closed_it)
{
    struct report_query q = {0};
    char *text;

    add((struct spec){D0, "k", NULL, "m", NULL, 200, "ok", 0, 0, 0, 123000000, NULL});
    sqlite3_close(wdb);
    wdb = NULL;
    text = run(&q, REPORT_CSV);
    ck_assert_ptr_nonnull(strstr(text, "\nTOTAL,1,0,0,0,0,0.000123,0.00\n"));
    free(text);
}
END_TEST

static Suite *report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_report_total_is_exact_sum_of_pusd);
    tcase_add_test(tc, test_report_money_is_decimal_usd_with_at_least_two_places);
    tcase_add_test(tc, test_report_empty_ledger_reports_zeroes);
    tcase_add_test(tc, test_report_by_model_uses_served_model_else_requested);
    tcase_add_test(tc, test_report_by_key_orders_by_cost_descending);
    tcase_add_test(tc, test_report_equal_costs_order_by_group_name);
    tcase_add_test(tc, test_report_by_day_groups_by_utc_date);
    tcase_add_test(tc, test_report_by_user_groups_missing_user_as_null);
    tcase_add_test(tc, test_report_by_none_has_no_rows_only_total);
    tcase_add_test(tc, test_report_errors_count_bad_status_or_outcome_not_ok);
    tcase_add_test(tc, test_report_since_is_inclusive_until_is_exclusive);
    tcase_add_test(tc, test_report_zero_bounds_are_unbounded_and_null);
    tcase_add_test(tc, test_report_client_filter_keeps_only_that_client);
    tcase_add_test(tc, test_report_client_filter_is_a_bound_value);
    tcase_add_test(tc, test_report_only_estimate_rows_count_as_estimated);
    tcase_add_test(tc, test_report_table_states_estimated_share);
    tcase_add_test(tc, test_report_table_states_nothing_estimated);
    tcase_add_test(tc, test_report_table_exact_text);
    tcase_add_test(tc, test_report_table_without_grouping_has_blank_group_header);
    tcase_add_test(tc, test_report_table_replaces_control_characters_in_groups);
    tcase_add_test(tc, test_report_csv_exact_text_with_quoting);
    tcase_add_test(tc, test_report_csv_quotes_newlines);
    tcase_add_test(tc, test_report_json_output_parses_back);
    tcase_add_test(tc, test_report_parse_time_relative_to_now);
    tcase_add_test(tc, test_report_parse_time_absolute_utc);
    tcase_add_test(tc, test_report_parse_time_rejects_invalid);
    tcase_add_test(tc, test_report_parse_by_and_format_names);
    tcase_add_test(tc, test_report_database_without_requests_table_is_not_a_ledger);
    tcase_add_test(tc, test_report_non_sqlite_file_is_not_a_ledger);
    tcase_add_test(tc, test_report_missing_file_is_an_error_and_is_not_created);
    tcase_add_test(tc, test_report_reads_while_writer_holds_a_transaction);
    tcase_add_test(tc, test_report_reads_ledger_after_daemon_closed_it);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(report_suite)
