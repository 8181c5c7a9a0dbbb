/* test_unpriced.c - a request for a model missing from the price table
 * reserves limits.unpriced_reserve_usd against the budgets (SQLite ledger,
 * one instance): it is not waved past a budget while it is in flight. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct h_proc fake, orp;

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

static void start(const char *limits)
{
    static const char *const env[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};
    char conf[1024];

    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nworkers = 2;\nlimits = { %s };\n",
             limits);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env), 0);
    ck_assert_int_eq(h_wait_ready(orp.port, 10000), 0); /* else every model is unpriced */
}

static const char *body(const char *model, const char *tag, int hang_ms)
{
    static __thread char b[512];
    snprintf(b, sizeof b,
             "{\"model\":\"%s\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":"
             "\"hi\"}],\"fake\":{\"tag\":\"%s\",\"hang_ms\":%d,\"usage\":{\"cost\":0.01}}}",
             model, tag, hang_ms);
    return b;
}

static long post(const char *model, const char *tag, struct h_resp *r)
{
    h_request(r, orp.port, "POST", "/v1/chat/completions", body(model, tag, 0), NULL, NULL);
    return r->status;
}

/* Budget $1.50, reserve $1.00: one unpriced request in flight holds $1.00,
 * so a second is refused (402) until the first settles at its real cost. */
START_TEST(test_unpriced_model_reserves_the_configured_worst_case)
{
    struct h_async *a;
    struct h_resp r;
    cJSON *rec;

    start("budget_usd_day = \"1.50\"; unpriced_reserve_usd = \"1.00\";");
    a = h_request_async(orp.port, "POST", "/v1/chat/completions", body("test/unpriced", "a", 1500),
                        NULL, NULL);
    rec = h_fake_wait(fake.port, "a", NULL, 5000);
    ck_assert_ptr_nonnull(rec);
    cJSON_Delete(rec);

    ck_assert_int_eq(post("test/unpriced", "b", &r), 402);
    ck_assert_ptr_nonnull(strstr(r.body, "{\"error\":{"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"budget_day_exceeded\""));
    ck_assert_ptr_nonnull(h_header(&r, "Retry-After"));
    h_resp_free(&r);
    /* A fallback list with an unpriced model reserves the worst case too. */
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"models\":[\"openai/gpt-4o-mini\",\"test/unpriced\"],\"max_tokens\":10,"
              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"fake\":{\"tag\":\"c\"}}",
              NULL, NULL);
    ck_assert_int_eq(r.status, 402);
    h_resp_free(&r);
    /* A priced model reserves its own small estimate: admitted. */
    ck_assert_int_eq(post("openai/gpt-4o-mini", "d", &r), 200);
    h_resp_free(&r);

    ck_assert_int_eq(h_async_wait(a, &r), 0);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    /* Settled at $0.01: the next unpriced request fits again. */
    ck_assert_int_eq(post("test/unpriced", "e", &r), 200);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "b"), 0);
    ck_assert_int_eq(h_fake_count(fake.port, "c"), 0);
    ck_assert_int_eq(h_fake_count(fake.port, "e"), 1);
    ck_assert_ptr_null(h_orproxy_finish(&orp, H_CANARY_KEY, 10000));
}
END_TEST

/* The default is $1.00; 0 restores the old behaviour (nothing reserved). */
START_TEST(test_unpriced_reserve_default_and_zero)
{
    struct h_resp r;

    start("budget_usd_day = \"0.50\";");
    ck_assert_int_eq(post("test/unpriced", "f", &r), 402);
    h_resp_free(&r);
    ck_assert_int_eq(post("openai/gpt-4o-mini", "g", &r), 200);
    h_resp_free(&r);
    ck_assert_ptr_null(h_orproxy_finish(&orp, H_CANARY_KEY, 10000));
    h_proc_cleanup(&orp);

    start("budget_usd_day = \"0.50\"; unpriced_reserve_usd = 0;");
    ck_assert_int_eq(post("test/unpriced", "h", &r), 200);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "f"), 0);
    ck_assert_int_eq(h_fake_count(fake.port, "h"), 1);
    ck_assert_ptr_null(h_orproxy_finish(&orp, H_CANARY_KEY, 10000));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("unpriced");
    TCase *tc = tcase_create("e2e");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_unpriced_model_reserves_the_configured_worst_case);
    tcase_add_test(tc, test_unpriced_reserve_default_and_zero);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(suite)
