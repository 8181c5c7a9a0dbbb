/* End-to-end tests of what orproxy records and exposes when the data around it is hostile or
 * unlucky: a ledger database locked by another process, model names that are not valid UTF-8,
 * and upstream costs too large to add up. Each test asserts rows in the ledger, bytes on the
 * wire, or a /metrics scrape that promtool accepts. */
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

static const char *conf_plain =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; idle_timeout_s = 5; };\n"
    "retry = { max_attempts = 1; };\n"
    "state_dir = \"@DIR@/state\";\n"
    "ledger = { flush_ms = 100; };\n"
    "workers = 2;\n";

static struct h_proc fake, orp;
static char db_path[512];

static void start(const char *conf)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
    snprintf(db_path, sizeof db_path, "%s/state/usage.db", orp.dir);
}

static void teardown(void)
{
    h_proc_stop(&orp, SIGTERM, 20000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

/* Rows matching where, once it reaches want or timeout_ms passes. */
static long long db_count_wait(const char *where, long long want, int timeout_ms)
{
    char sql[512];
    long long n = -1;
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM requests WHERE %s", where);
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        char *v = h_db_value(db_path, sql, 0);
        n = v ? atoll(v) : -1;
        free(v);
        if (n >= want)
            break;
        usleep(100000);
    }
    return n;
}

/* The value of a series in a /metrics scrape, -1 if absent. */
static long long metric(const char *series)
{
    long long v;
    ck_assert_int_eq(h_metric(orp.port, NULL, series, &v), 200);
    return v;
}

static long post(const char *body, const char *rid)
{
    struct h_resp r;
    char hdr[128];
    const char *hdrs[] = {hdr, NULL};
    long status;
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", rid);
    h_request(&r, orp.port, "POST", "/v1/chat/completions", body, hdrs, NULL);
    status = r.status;
    h_resp_free(&r);
    return status;
}

/* Another process's write lock on the ledger, as a backup tool or a careless sqlite3 shell
 * would hold it. In WAL mode BEGIN EXCLUSIVE takes the write lock (readers still read). */
static sqlite3 *lock_ledger(void)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, &msg) == SQLITE_OK, "lock: %s",
                  msg ? msg : "?");
    return db;
}

static void unlock_ledger(sqlite3 *db)
{
    ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ---- item 11: a locked ledger keeps its rows ------------------------------------------------ */

START_TEST(test_ledger_lock_rows_kept_and_retried)
{
    char rid[32];
    sqlite3 *lock;
    double t0;

    start(conf_plain);
    ck_assert_int_eq(post("{\"model\":\"lk/warm\"}", "LK-warm"), 200);
    ck_assert_int_eq(db_count_wait("request_id='LK-warm'", 1, 5000), 1);

    /* Longer than the writer's 1 s busy timeout, so its first try fails. */
    lock = lock_ledger();
    t0 = h_now();
    for (int i = 0; i < 4; i++) {
        snprintf(rid, sizeof rid, "LK-%d", i);
        ck_assert_int_eq(post(i == 3 ? "{\"model\":\"lk/s\",\"stream\":true,\"fake\":{\"events\":3}}"
                                     : "{\"model\":\"lk/j\"}",
                              rid),
                         200);
        usleep(100000);
    }
    while (h_now() - t0 < 1.8)
        usleep(20000);
    unlock_ledger(lock);

    ck_assert_int_eq(db_count_wait("request_id LIKE 'LK-_'", 4, 10000), 4);
    ck_assert_int_eq(db_count_wait("request_id LIKE 'LK-%'", 5, 0), 5);
    ck_assert_int_eq(metric("orproxy_ledger_dropped_total"), 0);
    ck_assert_int_eq(metric("orproxy_ledger_queue_depth"), 0);
}
END_TEST

START_TEST(test_ledger_lock_at_shutdown_still_flushed)
{
    sqlite3 *lock;
    int rc;

    start(conf_plain);
    ck_assert_int_eq(post("{\"model\":\"lk/warm\"}", "LS-warm"), 200);
    ck_assert_int_eq(db_count_wait("request_id='LS-warm'", 1, 5000), 1);

    lock = lock_ledger();
    ck_assert_int_eq(post("{\"model\":\"lk/j\"}", "LS-1"), 200);
    ck_assert_int_eq(kill(orp.pid, SIGTERM), 0);
    usleep(2000000);
    unlock_ledger(lock);
    rc = h_proc_stop(&orp, 0, 15000); /* already signalled: only wait for the exit */
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(db_count_wait("request_id='LS-1'", 1, 0), 1);
}
END_TEST

/* ---- item 12: spaced JSON in a stream -------------------------------------------------------- */

/* A column of the row with this request id (malloc'd text), waiting up to 5 s for the row. */
static char *row_col(const char *rid, const char *col)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE request_id='%s'", col, rid);
    return h_db_value(db_path, sql, 5000);
}

static void assert_row(const char *rid, const char *col, const char *expect)
{
    char *v = row_col(rid, col);
    ck_assert_msg(v != NULL, "no row %s", rid);
    ck_assert_msg(strcmp(v, expect) == 0, "%s: %s = '%s', expected '%s'", rid, col, v, expect);
    free(v);
}

START_TEST(test_spaced_stream_finish_reason_and_usage_read)
{
    struct h_resp r;
    const char *hdrs[] = {"X-Request-Id: SP-full", NULL};

    start(conf_plain);
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"sp/a\",\"stream\":true,\"fake\":{\"spaced\":true,\"events\":4,"
              "\"usage\":{\"prompt_tokens\":9,\"cost\":0.25}}}",
              hdrs, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"finish_reason\": \"stop\"")); /* spaced on the wire */
    h_resp_free(&r);
    assert_row("SP-full", "finish_reason", "stop");
    assert_row("SP-full", "completion_tokens", "4");
    assert_row("SP-full", "cost_pusd || ' ' || cost_source", "250000000000 upstream");
    assert_row("SP-full", "outcome", "ok");
}
END_TEST

START_TEST(test_spaced_stream_cut_short_estimates_tokens)
{
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 1500};
    const char *hdrs[] = {"X-Request-Id: SP-cut", NULL};
    char *v;

    start(conf_plain);
    /* Each content event carries text; the client hangs up long before usage arrives. */
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"sp/b\",\"stream\":true,\"fake\":{\"spaced\":true,\"events\":200,"
              "\"interval_ms\":20}}",
              hdrs, &o);
    h_resp_free(&r);
    assert_row("SP-cut", "cost_source", "estimate");
    v = row_col("SP-cut", "completion_tokens");
    ck_assert_ptr_nonnull(v);
    ck_assert_msg(atoll(v) > 0, "completion_tokens %s: the spaced content was not counted", v);
    free(v);
}
END_TEST

/* ---- item 13: model names that are not valid UTF-8 ------------------------------------------ */

/* Runs "cmd < file with text" through /bin/sh; returns its exit code, output in *out (malloc'd). */
static int run_on_text(const char *cmd_fmt, const char *text, char **out)
{
    char *path = h_temp_file(text), cmd[1024], *err = NULL;
    int rc;
    ck_assert_ptr_nonnull(path);
    snprintf(cmd, sizeof cmd, cmd_fmt, path);
    {
        const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        rc = h_run(argv, out, &err);
    }
    if (rc != 0 && out != NULL && *out != NULL && err != NULL) {
        size_t n = strlen(*out) + strlen(err) + 1;
        char *both = malloc(n);
        snprintf(both, n, "%s%s", *out, err);
        free(*out);
        *out = both;
    }
    free(err);
    unlink(path);
    free(path);
    return rc;
}

/* /metrics as promtool reads it, and /v1/usage?by=model as a strict JSON parser (UTF-8
 * included; cJSON would take any bytes) reads it. */
static void assert_metrics_and_usage_valid(void)
{
    struct h_resp r;
    char *out = NULL;
    int rc;

    ck_assert_msg(access("/usr/bin/promtool", X_OK) == 0,
                  "promtool is missing (Debian package prometheus; make deps-test installs it)");
    h_request(&r, orp.port, "GET", "/metrics", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    rc = run_on_text("/usr/bin/promtool check metrics < %s", r.body, &out);
    ck_assert_msg(rc == 0, "promtool rejects /metrics: %s", out ? out : "");
    free(out);
    out = NULL;
    h_resp_free(&r);

    h_request(&r, orp.port, "GET", "/v1/usage?by=model", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    rc = run_on_text("python3 -c 'import json,sys; json.loads(open(sys.argv[1],\"rb\").read())' %s",
                     r.body, &out);
    ck_assert_msg(rc == 0, "/v1/usage?by=model is not JSON: %s", out ? out : "");
    free(out);
    h_resp_free(&r);
}

START_TEST(test_model_invalid_utf8_refused_metrics_and_usage_stay_valid)
{
    struct h_resp r;
    const char *hdrs[] = {"X-Request-Id: U8-bad", NULL};
    cJSON *j, *err;

    start(conf_plain);
    ck_assert_int_eq(post("{\"model\":\"ok/model\"}", "U8-ok"), 200);
    /* Raw bytes: 0xff never occurs in UTF-8, 0xc3 starts a character that never comes. */
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"evil/\xff\xfe\xc3\",\"fake\":{\"tag\":\"U8-bad\"}}", hdrs, NULL);
    assert_metrics_and_usage_valid();
    ck_assert_int_eq(r.status, 400);
    j = cJSON_Parse(r.body);
    err = cJSON_GetObjectItemCaseSensitive(j, "error");
    ck_assert_msg(cJSON_IsObject(err), "not the API error shape: %s", r.body);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(err, "code")->valuestring, "invalid_model");
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "U8-bad"), 0); /* never went upstream */
    assert_row("U8-bad", "status || ' ' || error_class", "400 invalid_model");
    /* A control character, escaped in the JSON, is refused as well. */
    ck_assert_int_eq(post("{\"model\":\"a\\u001b[31mred\"}", "U8-esc"), 400);
}
END_TEST

START_TEST(test_long_model_cut_on_character_boundary)
{
    char body[400], want[200], where[300];
    char *v;

    start(conf_plain);
    /* 126 ASCII bytes and a 2-byte 'é': the 127-byte ledger field cannot hold the 'é'. */
    memset(want, 'a', 126);
    want[126] = '\0';
    snprintf(body, sizeof body, "{\"model\":\"%s\xc3\xa9\"}", want);
    ck_assert_int_eq(post(body, "U8-long"), 200);
    snprintf(where, sizeof where, "SELECT model || '|' || served_model FROM requests WHERE "
                                  "request_id='U8-long'");
    v = h_db_value(db_path, where, 5000);
    ck_assert_ptr_nonnull(v);
    snprintf(body, sizeof body, "%s|%s", want, want);
    ck_assert_str_eq(v, body);
    free(v);
    assert_metrics_and_usage_valid();
}
END_TEST

START_TEST(test_served_model_invalid_utf8_sanitised)
{
    char *v;

    start(conf_plain);
    ck_assert_int_eq(post("{\"model\":\"ok/asked\",\"fake\":{\"served_model\":\"srv/\xff\xc3\"}}", "U8-srv"),
                     200);
    v = row_col("U8-srv", "served_model");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "srv/??");
    free(v);
    assert_metrics_and_usage_valid();
}
END_TEST

/* ---- item 14: an absurd upstream cost ------------------------------------------------------- */

START_TEST(test_absurd_upstream_cost_keeps_budget_enforced)
{
    char key[80], hash[65], conf[2048], auth[128];
    const char *hdrs[] = {auth, "X-Request-Id: OV-1", NULL};
    const char *hdrs2[] = {auth, "X-Request-Id: OV-2", NULL};
    struct h_resp r;
    char *v;

    ck_assert_int_eq(h_key_new("payer", key, sizeof key, hash), 0);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 2;\n"
             "auth = { mode = \"keys\"; };\n"
             "clients = ( { name = \"payer\"; key_sha256 = \"%s\"; budget_usd_day = 5; } );\n",
             hash);
    start(conf);

    /* An ordinary request first ($0.000123), so the spend is not zero when the absurd one
     * is added: that sum is what wrapped. */
    {
        const char *h0[] = {auth, "X-Request-Id: OV-0", NULL};
        h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"ov/m\"}", h0, NULL);
        ck_assert_int_eq(r.status, 200);
        h_resp_free(&r);
    }
    /* $10,000,000: above the int64 picodollar range ($9,223,372.04). */
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"ov/m\",\"fake\":{\"usage\":{\"cost\":10000000}}}", hdrs, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    /* The cost is settled when the request ends, which may be a moment after
     * the client read its last byte (the next request can reach the other
     * worker first); its ledger row is written after the settlement. */
    v = h_db_value(db_path, "SELECT 1 FROM requests WHERE request_id = 'OV-1'", 5000);
    ck_assert_str_eq(v, "1");
    free(v);
    /* The daemon still serves, and the client is over its $5 budget. */
    h_request(&r, orp.port, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    for (int i = 0; i < 2; i++) {
        h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"ov/m\"}", hdrs2, NULL);
        ck_assert_msg(r.status == 402, "request %d after the absurd cost: %ld %s", i, r.status, r.body);
        ck_assert_ptr_nonnull(strstr(r.body, "budget_day_exceeded"));
        h_resp_free(&r);
    }
    /* Recorded at the documented ceiling of $1,000,000 per request. */
    v = row_col("OV-1", "cost_pusd || ' ' || cost_source");
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "1000000000000000000 upstream");
    free(v);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
}
END_TEST

static Suite *data_security_suite(void)
{
    Suite *s = suite_create("data_security");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_ledger_lock_rows_kept_and_retried);
    tcase_add_test(tc, test_ledger_lock_at_shutdown_still_flushed);
    tcase_add_test(tc, test_spaced_stream_finish_reason_and_usage_read);
    tcase_add_test(tc, test_spaced_stream_cut_short_estimates_tokens);
    tcase_add_test(tc, test_model_invalid_utf8_refused_metrics_and_usage_stay_valid);
    tcase_add_test(tc, test_long_model_cut_on_character_boundary);
    tcase_add_test(tc, test_served_model_invalid_utf8_sanitised);
    tcase_add_test(tc, test_absurd_upstream_cost_keeps_budget_enforced);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(data_security_suite)
