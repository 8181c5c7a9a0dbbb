/* End-to-end tests of the usage ledger: rows in SQLite after real traffic
 * through build/orproxy to the fake OpenRouter, their durability across
 * SIGTERM and kill -9, and the usage report. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

static const char *conf_ledger =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; idle_timeout_s = 2; };\n"
    "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 100; };\n"
    "state_dir = \"@DIR@/state\";\n"
    "ledger = { flush_ms = 200; jsonl_path = \"@DIR@/usage.jsonl\"; };\n"
    "workers = 2;\n";

static struct h_proc fake, orp;
static char db_path[512];

static void wait_log(const char *needle, int timeout_ms)
{
    ck_assert_msg(h_log_wait(&orp, needle, timeout_ms), "no '%s' in the log", needle);
}

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf_ledger, env_key), 0);
    snprintf(db_path, sizeof db_path, "%s/state/usage.db", orp.dir);
    wait_log("model prices loaded from upstream", 5000);
}

static void teardown(void)
{
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

/* Waits up to 3 s for a row matching where (SQL) and returns column col of
 * it as text (malloc'd), or NULL. */
static char *db_value(const char *col, const char *where)
{
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE %s", col, where);
    return h_db_value(db_path, sql, 3000);
}

static void assert_col(const char *where, const char *col, const char *expect)
{
    char *v = db_value(col, where);
    ck_assert_msg(v != NULL, "no row where %s", where);
    ck_assert_msg(strcmp(v, expect) == 0, "%s: %s = '%s', expected '%s'", where, col, v, expect);
    free(v);
}

static long long db_count(const char *where)
{
    char *v = db_value("COUNT(*)", where);
    long long n = v ? atoll(v) : -1;
    free(v);
    return n;
}

static void post(const char *body, const char *rid, struct h_resp *r, const struct h_req_opts *o)
{
    char hdr[128];
    const char *hdrs[] = {hdr, NULL};
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", rid);
    h_request(r, orp.port, "POST", "/v1/chat/completions", body, hdrs, o);
}

START_TEST(test_json_usage_recorded_exactly)
{
    struct h_resp r;
    post("{\"model\":\"openai/gpt-4o-mini\",\"user\":\"alice\",\"fake\":{\"usage\":{\"prompt_tokens\":1234,"
         "\"completion_tokens\":56,\"cost\":0.00098765,\"prompt_tokens_details\":{\"cached_tokens\":"
         "200},\"completion_tokens_details\":{\"reasoning_tokens\":7}}}}",
         "L-json", &r, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    assert_col("request_id='L-json'", "prompt_tokens", "1234");
    assert_col("request_id='L-json'", "completion_tokens", "56");
    assert_col("request_id='L-json'", "total_tokens", "1290");
    assert_col("request_id='L-json'", "cached_tokens", "200");
    assert_col("request_id='L-json'", "reasoning_tokens", "7");
    assert_col("request_id='L-json'", "cost_pusd", "987650000");
    assert_col("request_id='L-json'", "cost_source", "upstream");
    assert_col("request_id='L-json'", "client", "anonymous");
    assert_col("request_id='L-json'", "user", "alice");
    assert_col("request_id='L-json'", "model", "openai/gpt-4o-mini");
    assert_col("request_id='L-json'", "served_model", "openai/gpt-4o-mini");
    assert_col("request_id='L-json'", "provider", "FakeProvider");
    assert_col("request_id='L-json'", "finish_reason", "stop");
    assert_col("request_id='L-json'", "status", "200");
    assert_col("request_id='L-json'", "stream", "0");
    assert_col("request_id='L-json'", "attempts", "1");
    assert_col("request_id='L-json'", "route", "/chat/completions");
    assert_col("request_id='L-json'", "outcome", "ok");
    assert_col("request_id='L-json'", "generation_id LIKE 'gen-%'", "1");
}
END_TEST

START_TEST(test_stream_usage_after_finish_reason_recorded)
{
    struct h_resp r;
    post("{\"model\":\"m/s\",\"stream\":true,\"fake\":{\"events\":4,\"usage\":{\"prompt_tokens\":9,"
         "\"cost\":0.5}}}",
         "L-stream", &r, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "data: [DONE]"));
    h_resp_free(&r);
    assert_col("request_id='L-stream'", "prompt_tokens", "9");
    assert_col("request_id='L-stream'", "completion_tokens", "4");
    assert_col("request_id='L-stream'", "cost_pusd", "500000000000");
    assert_col("request_id='L-stream'", "cost_source", "upstream");
    assert_col("request_id='L-stream'", "stream", "1");
    assert_col("request_id='L-stream'", "finish_reason", "stop");
}
END_TEST

START_TEST(test_embeddings_usage_recorded)
{
    struct h_resp r;
    const char *hdrs[] = {"X-Request-Id: L-emb", NULL};
    h_request(&r, orp.port, "POST", "/v1/embeddings", "{\"model\":\"e/1\",\"input\":\"x\"}", hdrs, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    assert_col("request_id='L-emb'", "prompt_tokens", "5");
    assert_col("request_id='L-emb'", "cost_pusd", "10000000");
    assert_col("request_id='L-emb'", "cost_source", "upstream");
    assert_col("request_id='L-emb'", "route", "/embeddings");
}
END_TEST

START_TEST(test_pricing_fallback_exact_on_awkward_price)
{
    /* test/awkward: prompt "0.0000003"/token, request "0.0001". 1,234,567
     * prompt tokens: 0.3703701 + 0.0001 = 0.3704701 USD exactly. */
    struct h_resp r;
    post("{\"model\":\"test/awkward\",\"fake\":{\"usage\":{\"prompt_tokens\":1234567,"
         "\"completion_tokens\":0,\"cost\":null}}}",
         "L-price", &r, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    assert_col("request_id='L-price'", "cost_pusd", "370470100000");
    assert_col("request_id='L-price'", "cost_source", "pricing");
}
END_TEST

/* The value of an unlabelled or fully labelled series in a /metrics scrape, -1 if absent. */
static long long metric(const char *series)
{
    long long v;
    ck_assert_int_eq(h_metric(orp.port, NULL, series, &v), 200);
    return v;
}

START_TEST(test_aborted_stream_estimate_then_reconciled)
{
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 600};
    long long answered = metric("orproxy_reconcile_total{result=\"answered\"}");

    ck_assert_int_ge(answered, 0);
    post("{\"model\":\"openai/gpt-4o-mini\",\"stream\":true,\"fake\":{\"tag\":\"L-ab\",\"events\":200,"
         "\"interval_ms\":20,\"usage\":{\"cost\":0.0042}}}",
         "L-abort", &r, &o);
    h_resp_free(&r);
    assert_col("request_id='L-abort'", "cost_source", "estimate");
    assert_col("request_id='L-abort'", "outcome", "cancelled");
    assert_col("request_id='L-abort'", "completion_tokens > 0", "1");
    /* The fake's /generation answers; within the first tries (2 s, +5 s)
     * the row becomes OpenRouter's own figure. */
    for (int i = 0; i < 100; i++) {
        char *v = db_value("cost_source", "request_id='L-abort'");
        int done = v != NULL && strcmp(v, "upstream") == 0;
        free(v);
        if (done)
            break;
        usleep(100000);
    }
    assert_col("request_id='L-abort'", "cost_source", "upstream");
    assert_col("request_id='L-abort'", "cost_pusd", "4200000000");
    /* The metrics say the same: one more answered, nothing left pending. */
    ck_assert_int_eq(metric("orproxy_reconcile_total{result=\"answered\"}"), answered + 1);
    ck_assert_int_eq(metric("orproxy_reconcile_pending"), 0);
    ck_assert_int_eq(metric("orproxy_reconcile_total{result=\"dropped\"}"), 0);
}
END_TEST

START_TEST(test_failed_requests_recorded_with_status_and_zero_cost)
{
    struct h_resp r;
    post("{\"fake\":{\"status\":400}}", "L-400", &r, NULL);
    ck_assert_int_eq(r.status, 400);
    h_resp_free(&r);
    post("{\"fake\":{\"status\":502}}", "L-502", &r, NULL);
    ck_assert_int_eq(r.status, 502);
    h_resp_free(&r);
    post("not json", "L-bad", &r, NULL);
    ck_assert_int_eq(r.status, 400);
    h_resp_free(&r);
    assert_col("request_id='L-400'", "status || ' ' || cost_pusd || ' ' || error_class", "400 0 upstream_4xx");
    assert_col("request_id='L-502'", "status || ' ' || attempts || ' ' || error_class", "502 2 upstream_5xx");
    assert_col("request_id='L-bad'", "status || ' ' || attempts || ' ' || error_class", "400 0 invalid_json");
}
END_TEST

START_TEST(test_jsonl_copy_written)
{
    struct h_resp r;
    char path[600], *text;
    post("{\"model\":\"j/1\"}", "L-jsonl", &r, NULL);
    h_resp_free(&r);
    assert_col("request_id='L-jsonl'", "status", "200");
    snprintf(path, sizeof path, "%s/usage.jsonl", orp.dir);
    text = h_read_file(path);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\"request_id\":\"L-jsonl\""));
    ck_assert_ptr_nonnull(strstr(text, "\"cost_source\":\"upstream\""));
    ck_assert_ptr_null(strstr(text, KEY));
    free(text);
}
END_TEST

START_TEST(test_thousand_concurrent_then_sigterm_all_rows)
{
    enum { N = 1000 };
    static struct h_async *a[N];
    int ok = 0;

    for (int i = 0; i < N; i++) {
        char body[160];
        snprintf(body, sizeof body, "{\"model\":\"c/%d\",\"stream\":%s,\"fake\":{\"events\":2}}", i % 7,
                 i % 2 ? "true" : "false");
        a[i] = h_request_async(orp.port, "POST", "/v1/chat/completions", body, NULL, NULL);
        ck_assert_ptr_nonnull(a[i]);
    }
    for (int i = 0; i < N; i++) {
        struct h_resp r;
        h_async_wait(a[i], &r);
        ok += r.status == 200;
        h_resp_free(&r);
    }
    ck_assert_int_eq(ok, N);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 15000), 0);
    ck_assert_int_eq(db_count("model LIKE 'c/%'"), N);
}
END_TEST

START_TEST(test_locked_database_does_not_fail_requests)
{
    sqlite3 *db;
    struct h_resp r;
    char *log;

    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    post("{\"model\":\"lock/1\"}", "L-locked", &r, NULL);
    ck_assert_int_eq(r.status, 200); /* the request is served regardless */
    h_resp_free(&r);
    wait_log("ledger: could not write", 5000);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    /* The daemon carries on: the held row is retried and written, and later rows too. */
    post("{\"model\":\"lock/2\"}", "L-after", &r, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    assert_col("request_id='L-after'", "status", "200");
    assert_col("request_id='L-locked'", "status", "200");
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    log = h_read_file(orp.log);
    ck_assert_ptr_nonnull(strstr(log, " written, 0 dropped"));
    free(log);
}
END_TEST

START_TEST(test_kill9_keeps_database_consistent)
{
    struct h_resp r;
    for (int i = 0; i < 20; i++) {
        char rid[32];
        snprintf(rid, sizeof rid, "L-k9-%d", i);
        post("{\"model\":\"k/9\"}", rid, &r, NULL);
        h_resp_free(&r);
    }
    usleep(600000); /* three flush windows of 200 ms */
    kill(orp.pid, SIGKILL);
    h_proc_stop(&orp, SIGKILL, 5000);
    ck_assert_int_eq(db_count("model = 'k/9'"), 20);
    {
        sqlite3 *db;
        sqlite3_stmt *st;
        ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}
END_TEST

/* Two known requests, then the report in every format, read while the
 * daemon runs. */
START_TEST(test_usage_report_formats_and_endpoint)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    struct h_resp r;
    char *out = NULL, *err = NULL;
    cJSON *root, *total;

    post("{\"model\":\"rep/a\",\"fake\":{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,"
         "\"cost\":0.25}}}", "L-rep1", &r, NULL);
    h_resp_free(&r);
    post("{\"model\":\"rep/b\",\"fake\":{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
         "\"cost\":0.5}}}", "L-rep2", &r, NULL);
    h_resp_free(&r);
    assert_col("request_id='L-rep2'", "status", "200");

    const char *table[] = {bin, "usage", "-c", orp.conf, "--since", "1h", "--by", "model", NULL};
    ck_assert_int_eq(h_run(table, &out, &err), 0);
    ck_assert_msg(strstr(out, "MODEL") && strstr(out, "rep/a") && strstr(out, "rep/b") &&
                      strstr(out, "TOTAL") && strstr(out, "0.75"),
                  "table:\n%s", out);
    ck_assert_ptr_nonnull(strstr(out, "estimated: none"));
    /* rep/b cost more: it comes first */
    ck_assert(strstr(out, "rep/b") < strstr(out, "rep/a"));
    free(out);
    free(err);

    const char *csv[] = {bin, "usage", "-c", orp.conf, "--by", "model", "--format", "csv", NULL};
    ck_assert_int_eq(h_run(csv, &out, &err), 0);
    ck_assert(strncmp(out, "group,requests,errors,prompt_tokens,completion_tokens,total_tokens,"
                           "cost_usd,estimated_cost_usd\n", 85) == 0);
    ck_assert_ptr_nonnull(strstr(out, "rep/a,1,0,10,5,15,0.25,0.00\n"));
    ck_assert_ptr_nonnull(strstr(out, "rep/b,1,0,1,2,3,0.50,0.00\n"));
    free(out);
    free(err);

    const char *json[] = {bin, "usage", "-c", orp.conf, "--by", "none", "--format", "json", NULL};
    ck_assert_int_eq(h_run(json, &out, &err), 0);
    root = cJSON_Parse(out);
    total = cJSON_GetObjectItem(root, "total");
    ck_assert_int_eq(cJSON_GetObjectItem(total, "requests")->valueint, 2);
    ck_assert_str_eq(cJSON_GetObjectItem(total, "cost_usd")->valuestring, "0.75");
    cJSON_Delete(root);
    free(out);
    free(err);

    const char *bad[] = {bin, "usage", "-c", orp.conf, "--since", "yesterday", NULL};
    ck_assert_int_eq(h_run(bad, &out, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "yesterday"));
    free(out);
    free(err);

    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/v1/usage?since=1h&by=model", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    root = cJSON_Parse(r.body);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "rows")), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "total"), "cost_usd")->valuestring,
                     "0.75");
    cJSON_Delete(root);
    h_resp_free(&r);
    h_request(&r, orp.port, "GET", "/v1/usage?by=planet", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 400);
    h_resp_free(&r);
    /* by=instance needs the shared (PostgreSQL) ledger: a clear refusal here */
    h_request(&r, orp.port, "GET", "/v1/usage?by=instance", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 400);
    ck_assert_ptr_nonnull(strstr(r.body, "\"invalid_group\""));
    ck_assert_ptr_nonnull(strstr(r.body, "ledger.backend"));
    h_resp_free(&r);
    const char *by_instance[] = {bin, "usage", "-c", orp.conf, "--by", "instance", NULL};
    ck_assert_int_eq(h_run(by_instance, &out, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "by instance needs ledger.backend = \"postgresql\""));
    free(out);
    free(err);
}
END_TEST

static Suite *ledger_suite(void)
{
    Suite *s = suite_create("ledger");
    TCase *tc = tcase_create("rows");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_json_usage_recorded_exactly);
    tcase_add_test(tc, test_stream_usage_after_finish_reason_recorded);
    tcase_add_test(tc, test_embeddings_usage_recorded);
    tcase_add_test(tc, test_pricing_fallback_exact_on_awkward_price);
    tcase_add_test(tc, test_aborted_stream_estimate_then_reconciled);
    tcase_add_test(tc, test_failed_requests_recorded_with_status_and_zero_cost);
    tcase_add_test(tc, test_jsonl_copy_written);
    tcase_add_test(tc, test_usage_report_formats_and_endpoint);
    tcase_add_test(tc, test_thousand_concurrent_then_sigterm_all_rows);
    tcase_add_test(tc, test_locked_database_does_not_fail_requests);
    tcase_add_test(tc, test_kill9_keeps_database_consistent);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(ledger_suite)
