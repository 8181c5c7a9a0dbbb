/* End-to-end tests of spend that must reach the budget however the client
 * behaves (issue 11, items 6, 7 and 10):
 *  - a client that hangs up on a non-streamed request is still billed by
 *    OpenRouter, so orproxy lets the transfer finish, drops the answer and
 *    settles the real cost: outcome=cancelled rows with upstream's cost, and
 *    the budget refuses the next request;
 *  - an aborted stream settled at a local estimate and later reconciled
 *    through /generation moves the live budget by the difference at once,
 *    not at the next restart;
 *  - /generation is asked with the key the request went upstream with (the
 *    client's own, or its pass-through key), not the shared one.
 * Each runs the real orproxy in keys mode in front of the fake OpenRouter. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY
#define OWN_KEY H_CANARY_KEY_2
#define PASS_KEY H_CANARY_KEY_3

static const char *const env_keys[] = {"OPENROUTER_API_KEY=" KEY, "SPEND_OWN_KEY=" OWN_KEY, NULL};

static struct h_proc fake, orp;
static char db_path[512];
static char spender[80], owner[80], passer[80], ops[80];
static char spender_h[65], owner_h[65], passer_h[65], ops_h[65];

static void wait_log(const char *needle, int timeout_ms)
{
    ck_assert_msg(h_log_wait(&orp, needle, timeout_ms), "no '%s' in the log", needle);
}

/* spender: $0.01 a day, shared key.  owner: its own upstream key, $1 a
 * day.  passer: pass-through keys.  ops: admin, for /metrics.  The idle
 * timeout (5 s) is well above the fake's 2 s answers, so only a hang-up can
 * end a transfer early. */
static void start_orproxy(const char *more)
{
    char conf[4096];
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; idle_timeout_s = 5; };\n"
             "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 50; };\n"
             "stream = { keepalive_s = 1; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\n"
             "shutdown_timeout_s = 1;\n%s"
             "auth = { mode = \"keys\"; };\n"
             "clients = (\n"
             "  { name = \"spender\"; key_sha256 = \"%s\"; budget_usd_day = \"0.01\"; },\n"
             "  { name = \"owner\"; key_sha256 = \"%s\"; upstream_key_env = \"SPEND_OWN_KEY\";\n"
             "    budget_usd_day = \"1\"; },\n"
             "  { name = \"passer\"; key_sha256 = \"%s\"; pass_through_keys = true; },\n"
             "  { name = \"ops\"; key_sha256 = \"%s\"; admin = true; }\n"
             ");\n",
             more, spender_h, owner_h, passer_h, ops_h);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_keys), 0);
    snprintf(db_path, sizeof db_path, "%s/state/usage.db", orp.dir);
    wait_log("model prices loaded from upstream", 5000);
    h_fake_reset(fake.port);
}

static void setup(void)
{
    static int keys_made;
    if (!keys_made) {
        ck_assert_int_eq(h_key_new("spender", spender, sizeof spender, spender_h), 0);
        ck_assert_int_eq(h_key_new("owner", owner, sizeof owner, owner_h), 0);
        ck_assert_int_eq(h_key_new("passer", passer, sizeof passer, passer_h), 0);
        ck_assert_int_eq(h_key_new("ops", ops, sizeof ops, ops_h), 0);
        keys_made = 1;
    }
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    start_orproxy("workers = 2;\n");
}

static void teardown(void)
{
    char *log = h_read_file(orp.log);
    if (log != NULL) {
        ck_assert_msg(strstr(log, KEY) == NULL, "the shared key is in the log");
        ck_assert_msg(strstr(log, OWN_KEY) == NULL, "the client's own key is in the log");
        ck_assert_msg(strstr(log, PASS_KEY) == NULL, "the pass-through key is in the log");
    }
    free(log);
    if (orp.pid > 0)
        ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

/* One request as client key, with request id rid and an optional extra
 * header; the response is the caller's. */
static long call(const char *key, const char *rid, const char *body, const char *extra,
                 const struct h_req_opts *o, struct h_resp *r)
{
    char auth[128], id[96];
    const char *hdrs[4] = {auth, id, extra, NULL};
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    snprintf(id, sizeof id, "X-Request-Id: %s", rid);
    h_request(r, orp.port, body != NULL ? "POST" : "GET",
              body != NULL ? "/v1/chat/completions" : "/metrics", body, hdrs, o);
    return r->status;
}

static const char *err_code(const struct h_resp *r)
{
    static char code[64];
    cJSON *root = cJSON_Parse(r->body);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "code");
    snprintf(code, sizeof code, "%s", cJSON_IsString(c) ? c->valuestring : "?");
    cJSON_Delete(root);
    return code;
}

/* Column col (SQL) of the row of request rid as text (malloc'd), waiting up
 * to timeout_ms for the row to exist and col to equal want (want NULL: any
 * value); the last value seen, or NULL when there is no row. */
static char *db_wait(const char *rid, const char *col, const char *want, int timeout_ms)
{
    char sql[1024], *out = NULL;
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE request_id='%s'", col, rid);
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        free(out);
        out = h_db_value(db_path, sql, 0);
        if (out != NULL && (want == NULL || strcmp(out, want) == 0))
            return out;
        usleep(50000);
    }
    return out;
}

static void assert_row(const char *rid, const char *col, const char *want, int timeout_ms)
{
    char *v = db_wait(rid, col, want, timeout_ms);
    ck_assert_msg(v != NULL, "no ledger row for %s", rid);
    ck_assert_msg(strcmp(v, want) == 0, "%s: %s = '%s', expected '%s'", rid, col, v, want);
    free(v);
}

/* A series of a /metrics scrape (as the admin), -1 if absent. */
static long long metric(const char *series)
{
    char auth[128];
    const char *hdrs[] = {auth, "X-Request-Id: S-metrics", NULL};
    long long v;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", ops);
    ck_assert_int_eq(h_metric(orp.port, hdrs, series, &v), 200);
    return v;
}

/* Waits up to timeout_ms for orproxy_reconcile_total{result="answered"} to
 * reach n. */
static void wait_answered(long long n, int timeout_ms)
{
    long long v = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 200) {
        v = metric("orproxy_reconcile_total{result=\"answered\"}");
        if (v >= n)
            return;
        usleep(200000);
    }
    ck_abort_msg("reconciliations answered: %lld, expected %lld", v, n);
}

/* A stream the client hangs up on after its first body bytes, as client
 * key (with an extra header), costing upstream `cost` dollars. */
static void aborted_stream(const char *key, const char *rid, const char *tag, const char *cost,
                           const char *extra)
{
    char body[512];
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 1};
    snprintf(body, sizeof body,
             "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":5,\"stream\":true,\"fake\":{\"tag\":"
             "\"%s\",\"events\":100,\"interval_ms\":30,\"usage\":{\"cost\":%s}}}",
             tag, cost);
    call(key, rid, body, extra, &o, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_ne(r.curl_code, 0); /* we hung up */
    h_resp_free(&r);
    assert_row(rid, "outcome||' '||cost_source", "cancelled estimate", 5000);
}

/* Item 6.  A $0.01/day client sends 5 non-streamed requests and hangs up
 * after 0.3 s on each; upstream answers each at 2 s and bills $0.004.  The
 * fake sent every answer in full (orproxy read it), every row says
 * cancelled with upstream's $0.004 (status 0: the client got nothing), and
 * the $0.02 spent stops the next request with 402. */
START_TEST(test_hangup_on_non_streamed_request_is_billed_and_counts_against_the_budget)
{
    struct h_resp r;
    struct h_req_opts quick = {.timeout_ms = 300};
    char rid[32], tag[32], body[512];

    for (int i = 1; i <= 5; i++) {
        snprintf(rid, sizeof rid, "S-hang-%d", i);
        snprintf(tag, sizeof tag, "hang%d", i);
        snprintf(body, sizeof body,
                 "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":5,\"fake\":{\"tag\":\"%s\","
                 "\"hang_ms\":2000,\"usage\":{\"cost\":0.004}}}",
                 tag);
        call(spender, rid, body, NULL, &quick, &r);
        ck_assert_int_eq(r.status, 0); /* hung up before any answer */
        h_resp_free(&r);
    }
    for (int i = 1; i <= 5; i++) {
        snprintf(rid, sizeof rid, "S-hang-%d", i);
        snprintf(tag, sizeof tag, "hang%d", i);
        cJSON *rec = h_fake_wait(fake.port, tag, "completed", 8000);
        ck_assert_msg(rec != NULL, "upstream did not send its answer for %s in full", rid);
        ck_assert(!cJSON_IsTrue(cJSON_GetObjectItem(rec, "aborted")));
        cJSON_Delete(rec);
        assert_row(rid, "status||' '||attempts||' '||outcome||' '||error_class||' '||cost_source",
                   "0 1 cancelled client_cancelled upstream", 5000);
        assert_row(rid, "cost_pusd", "4000000000", 0);
        assert_row(rid, "client", "spender", 0);
    }
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 5); /* no retries for gone clients */
    ck_assert_int_eq(call(spender, "S-hang-after", "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":5,"
                                                   "\"fake\":{\"tag\":\"after\"}}",
                          NULL, NULL, &r),
                     402);
    ck_assert_str_eq(err_code(&r), "budget_day_exceeded");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "after"), 0);
}
END_TEST

/* A shutdown does not wait for ever for the answer of a client that hung
 * up: after shutdown_timeout_s the transfer is dropped and the request ends
 * with its ledger row (cost unknown: none), and the daemon exits 0. */
START_TEST(test_shutdown_ends_a_request_awaited_for_a_gone_client)
{
    struct h_resp r;
    struct h_req_opts quick = {.timeout_ms = 300};
    double t0;

    call(spender, "S-stop",
         "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":5,\"fake\":{\"tag\":\"stop\","
         "\"hang_ms\":4500}}",
         NULL, &quick, &r);
    ck_assert_int_eq(r.status, 0);
    h_resp_free(&r);
    usleep(1500000); /* the hang-up is noticed within a second */
    cJSON *rec = h_fake_wait(fake.port, "stop", NULL, 0);
    ck_assert_ptr_nonnull(rec);
    ck_assert(!cJSON_IsTrue(cJSON_GetObjectItem(rec, "aborted"))); /* still awaited */
    cJSON_Delete(rec);
    t0 = h_now();
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    ck_assert_msg(h_now() - t0 < 2.5, "shutdown took %.2f s", h_now() - t0);
    assert_row("S-stop", "status||' '||attempts||' '||outcome||' '||error_class||' '||cost_source",
               "0 1 cancelled client_cancelled none", 0);
    ck_assert(h_log_wait(&orp, "request id=S-stop: shutting down before upstream answered", 0));
}
END_TEST

/* Requests kept for their bill no longer hold a connection, so they are
 * capped at the worker's connection share (here 4): a fifth client hanging
 * up while four answers are awaited has its upstream transfer dropped, as
 * before the fix, with a warning; the four are billed. */
START_TEST(test_awaited_answers_are_capped_at_the_connection_limit)
{
    struct h_resp r;
    struct h_req_opts quick = {.timeout_ms = 300};
    char rid[32], tag[32], body[512];
    int completed = 0, aborted = 0, billed = 0;

    h_proc_stop(&orp, SIGTERM, 10000);
    start_orproxy("limits = { max_connections = 4; };\nworkers = 1;\n");
    for (int i = 1; i <= 5; i++) {
        snprintf(rid, sizeof rid, "S-cap-%d", i);
        snprintf(tag, sizeof tag, "cap%d", i);
        snprintf(body, sizeof body,
                 "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":5,\"fake\":{\"tag\":\"%s\","
                 "\"hang_ms\":4000,\"usage\":{\"cost\":0.001}}}",
                 tag);
        call(owner, rid, body, NULL, &quick, &r);
        h_resp_free(&r);
    }
    for (int i = 1; i <= 5; i++) {
        snprintf(rid, sizeof rid, "S-cap-%d", i);
        snprintf(tag, sizeof tag, "cap%d", i);
        cJSON *rec = h_fake_wait(fake.port, tag, NULL, 8000);
        ck_assert_msg(rec != NULL, "%s never reached upstream", rid);
        cJSON_Delete(rec);
        char *v = db_wait(rid, "cost_pusd", NULL, 10000);
        ck_assert_msg(v != NULL, "no ledger row for %s", rid);
        billed += strcmp(v, "1000000000") == 0;
        free(v);
        assert_row(rid, "outcome", "cancelled", 0);
        for (int waited = 0; waited <= 5000; waited += 50) { /* until the fake knows the end */
            rec = h_fake_wait(fake.port, tag, NULL, 0);
            int c = cJSON_IsTrue(cJSON_GetObjectItem(rec, "completed"));
            int a = cJSON_IsTrue(cJSON_GetObjectItem(rec, "aborted"));
            cJSON_Delete(rec);
            if (c || a) {
                completed += c;
                aborted += a;
                break;
            }
            usleep(50000);
        }
    }
    ck_assert_int_eq(completed, 4);
    ck_assert_int_eq(aborted, 1);
    ck_assert_int_eq(billed, 4);
    ck_assert(h_log_wait(&orp, "4 answers are already awaited for clients that hung up", 0));
}
END_TEST

/* Item 7.  owner ($1/day) aborts a stream that upstream bills $5.  The row
 * starts at a local estimate of a fraction of a cent, so the next request
 * still passes; once /generation has answered (a reconcile on /metrics),
 * the row says $5 from upstream and the live budget knows it too: 402. */
START_TEST(test_reconciled_cost_reaches_the_live_budget)
{
    struct h_resp r;
    const char *small = "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":5,\"fake\":{\"tag\":\"small\"}}";

    aborted_stream(owner, "S-dear", "dear", "5", NULL);
    ck_assert_int_eq(call(owner, "S-before", small, NULL, NULL, &r), 200);
    h_resp_free(&r);
    wait_answered(1, 15000);
    assert_row("S-dear", "cost_source||' '||cost_pusd", "upstream 5000000000000", 3000);
    ck_assert_int_eq(call(owner, "S-after", small, NULL, NULL, &r), 402);
    ck_assert_str_eq(err_code(&r), "budget_day_exceeded");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "small"), 1); /* only S-before went upstream */
}
END_TEST

/* The fake's /generation request for gen-<seq> carried the same
 * Authorization as request seq (the one that created the generation), and
 * not the shared key's.  Compared without printing either. */
static void assert_generation_asked_with_creator_key(const cJSON *recs, const char *tag)
{
    const cJSON *rec, *creator = NULL;
    char path[64];
    int asked = 0;

    cJSON_ArrayForEach(rec, recs)
    {
        const cJSON *t = cJSON_GetObjectItem(rec, "tag");
        if (cJSON_IsString(t) && strcmp(t->valuestring, tag) == 0)
            creator = rec;
    }
    ck_assert_msg(creator != NULL, "no upstream record tagged %s", tag);
    snprintf(path, sizeof path, "/api/v1/generation?id=gen-%d",
             cJSON_GetObjectItem(creator, "seq")->valueint);
    const char *want =
        cJSON_GetObjectItem(cJSON_GetObjectItem(creator, "headers"), "authorization")->valuestring;
    ck_assert_msg(strcmp(want, "Bearer " KEY) != 0, "%s went upstream with the shared key", tag);
    cJSON_ArrayForEach(rec, recs)
    {
        const cJSON *p = cJSON_GetObjectItem(rec, "path");
        if (!cJSON_IsString(p) || strcmp(p->valuestring, path) != 0)
            continue;
        const cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "authorization");
        asked++;
        ck_assert_msg(cJSON_IsString(a) && strcmp(a->valuestring, want) == 0,
                      "%s was asked with another key than the one %s was created with", path, tag);
    }
    ck_assert_msg(asked > 0, "nobody asked for %s", path);
}

/* Item 10.  owner's stream went upstream with its own key, passer's with the
 * key it passed in X-OpenRouter-Key; both are aborted and reconciled.  Each
 * /generation request carries the key of the account that was billed. */
START_TEST(test_reconcile_asks_generation_with_the_requests_own_key)
{
    cJSON *recs;

    aborted_stream(owner, "S-own", "own", "0.002", NULL);
    aborted_stream(passer, "S-pass", "pass", "0.003", "X-OpenRouter-Key: " PASS_KEY);
    wait_answered(2, 15000);
    assert_row("S-own", "cost_source||' '||cost_pusd", "upstream 2000000000", 3000);
    assert_row("S-pass", "cost_source||' '||cost_pusd", "upstream 3000000000", 3000);
    recs = h_fake_requests(fake.port);
    ck_assert_ptr_nonnull(recs);
    assert_generation_asked_with_creator_key(recs, "own");
    assert_generation_asked_with_creator_key(recs, "pass");
    cJSON_Delete(recs);
}
END_TEST

static Suite *spend_suite(void)
{
    Suite *s = suite_create("spend_security");
    TCase *tc = tcase_create("spend");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_hangup_on_non_streamed_request_is_billed_and_counts_against_the_budget);
    tcase_add_test(tc, test_shutdown_ends_a_request_awaited_for_a_gone_client);
    tcase_add_test(tc, test_awaited_answers_are_capped_at_the_connection_limit);
    tcase_add_test(tc, test_reconciled_cost_reaches_the_live_budget);
    tcase_add_test(tc, test_reconcile_asks_generation_with_the_requests_own_key);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(spend_suite)
