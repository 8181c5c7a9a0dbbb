/* test_shared_limits.c - limits.shared: rpm and max_concurrent counted
 * across three orproxy instances on one real PostgreSQL (make test-pg),
 * by the leases the budgets use (src/bshare.c, src/lease.c).  Each test
 * asserts what the clients saw (status, error code, Retry-After), what
 * reached the fake upstream (how many, how many at once) and what the
 * database holds once the instances stopped. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pgtest.h"

#define NINST 3

static struct h_proc fake, orp[NINST];

static void start_all(const char *url, const char *limits)
{
    static const char *const env[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};
    char conf[4096];

    memset(&fake, 0, sizeof fake);
    memset(orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    for (int i = 0; i < NINST; i++) {
        snprintf(conf, sizeof conf,
                 "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
                 "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
                 "state_dir = \"@DIR@/state\";\nworkers = 2;\n"
                 "ledger = { flush_ms = 50; backend = \"postgresql\"; postgresql_url = \"%s\";\n"
                 "  postgresql_password_file = \"%s\"; };\n"
                 "instance = { name = \"i%d\"; };\nlimits = { %s };\n",
                 url, pgt_env("ORP_PG_PASSWORD_FILE"), i, limits);
        ck_assert_int_eq(h_orproxy_start(&orp[i], conf, env), 0);
        ck_assert_int_eq(h_wait_ready(orp[i].port, 10000), 0);
    }
}

/* SIGTERM each instance (every hold returned, every settle recorded),
 * checking its log holds no secret; then the fake. */
static void stop_all(void)
{
    for (int i = 0; i < NINST; i++) {
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
        h_proc_cleanup(&orp[i]);
    }
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&fake);
}

static const char *chat(int hang_ms)
{
    static __thread char body[384];
    snprintf(body, sizeof body,
             "{\"model\":\"openai/gpt-4o-mini\",\"max_tokens\":10,\"messages\":[{\"role\":"
             "\"user\",\"content\":\"hi\"}],\"fake\":{\"tag\":\"s\",\"hang_ms\":%d,\"usage\":"
             "{\"prompt_tokens\":12,\"completion_tokens\":8,\"total_tokens\":20}}}",
             hang_ms);
    return body;
}

/* n concurrent requests over the instances; returns how many got 200.  The
 * rest must be 429 with this code and a Retry-After of 1 to 60 s. */
static int burst(int n, int hang_ms, const char *code)
{
    struct h_async **a = calloc((size_t)n, sizeof *a);
    char want[80];
    int ok = 0;

    snprintf(want, sizeof want, "\"code\":\"%s\"", code);
    for (int i = 0; i < n; i++)
        a[i] = h_request_async(orp[i % NINST].port, "POST", "/v1/chat/completions", chat(hang_ms),
                               NULL, NULL);
    for (int i = 0; i < n; i++) {
        struct h_resp r;
        const char *ra;
        h_async_wait(a[i], &r);
        if (r.status == 200) {
            ok++;
        } else {
            ck_assert_msg(r.status == 429, "%ld: %s", r.status, r.body);
            ck_assert_msg(strstr(r.body, "{\"error\":{") != NULL && strstr(r.body, want) != NULL,
                          "%s", r.body);
            ck_assert_msg(strstr(r.body, "all instances") != NULL, "%s", r.body);
            ra = h_header(&r, "Retry-After");
            ck_assert_ptr_nonnull(ra);
            ck_assert_int_ge(atoi(ra), 1);
            ck_assert_int_le(atoi(ra), 60);
        }
        h_resp_free(&r);
    }
    free(a);
    return ok;
}

/* The most requests tagged "s" the fake had in progress at once.  A
 * request's end is when the fake's response completed, which its thread
 * may note a moment after the proxy already has the last byte (and may
 * have sent the next request): ends within 20 ms count as before a start. */
static int fake_peak(void)
{
    cJSON *all = h_fake_requests(fake.port), *r, *o;
    int peak = 0;

    ck_assert_ptr_nonnull(all);
    cJSON_ArrayForEach(r, all) {
        const cJSON *tag = cJSON_GetObjectItem(r, "tag");
        double t = cJSON_GetObjectItem(r, "t_start_ms")->valuedouble;
        int n = 0;
        if (!cJSON_IsString(tag) || strcmp(tag->valuestring, "s") != 0)
            continue;
        cJSON_ArrayForEach(o, all) {
            const cJSON *ot = cJSON_GetObjectItem(o, "tag");
            double s = cJSON_GetObjectItem(o, "t_start_ms")->valuedouble;
            double e = cJSON_GetObjectItem(o, "t_end_ms")->valuedouble;
            if (cJSON_IsString(ot) && strcmp(ot->valuestring, "s") == 0 && s <= t &&
                (e == 0 || e - 20 > t))
                n++;
        }
        if (n > peak)
            peak = n;
    }
    cJSON_Delete(all);
    return peak;
}

/* The windows are fixed UTC minutes: start a test with 15 s of one to spare. */
static void wait_minute_start(void)
{
    while (time(NULL) % 60 > 45)
        sleep(1);
}

/* 60 requests at once over 3 instances with rpm = 30 for all traffic,
 * shared: at most 30 are admitted in the minute (some headroom may sit
 * unused on another instance: at most an eighth of the limit each), the
 * rest get 429 rate_limit_rpm with a Retry-After up to the next minute.
 * Per instance (not shared) the same burst would pass 60. */
START_TEST(test_rpm_shared_across_three_instances)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_lim_rpm", &url);
    int ok, reached;

    start_all(url, "rpm = 30; shared = true;");
    wait_minute_start();
    ok = burst(60, 0, "rate_limit_rpm");
    reached = h_fake_count(fake.port, "s");
    fprintf(stderr, "rpm 30 shared, 60 requests over 3 instances: %d admitted, %d refused\n", ok,
            60 - ok);
    ck_assert_int_le(ok, 30);
    ck_assert_int_ge(ok, 30 - 2 * (30 / 8));
    ck_assert_int_eq(reached, ok);
    /* A second burst in the same minute: what headroom is left, no more. */
    if (time(NULL) % 60 <= 55) {
        int more = burst(15, 0, "rate_limit_rpm");
        ck_assert_int_le(ok + more, 30);
        ok += more;
    }
    stop_all();
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM budgets WHERE period = 'rpm'"), 1);
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM budgets WHERE period = 'rpm' AND scope = ''"),
                     ok);
    ck_assert_int_eq(pgt_int(c, "SELECT limit_pusd FROM budgets WHERE period = 'rpm'"), 30);
    ck_assert_int_eq(pgt_int(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budgets"), 0);
    ck_assert_int_eq(pgt_int(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budget_leases"), 0);
    pgconn_free(c);
}
END_TEST

/* tpm = 480 for all traffic, shared, 60 requests at once over 3 instances:
 * each reserves its estimate (body bytes / 4 + max_tokens, about 70) and
 * settles the 20 tokens the fake is told to report, so the tokens recorded in the
 * minute's row are exactly 20 per admitted request and never above 480
 * (the real use is below the estimate); the rest get 429 rate_limit_tpm. */
START_TEST(test_tpm_shared_across_three_instances)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_lim_tpm", &url);
    int ok;

    start_all(url, "tpm = 480; shared = true;");
    wait_minute_start();
    ok = burst(60, 0, "rate_limit_tpm");
    fprintf(stderr, "tpm 480 shared, 60 requests over 3 instances: %d admitted, %d refused\n", ok,
            60 - ok);
    ck_assert_int_le(ok * 20, 480);
    ck_assert_int_ge(ok, 3);
    ck_assert_int_eq(h_fake_count(fake.port, "s"), ok);
    stop_all();
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM budgets WHERE period = 'tpm'"), 1);
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM budgets WHERE period = 'tpm'"), ok * 20);
    ck_assert_int_eq(pgt_int(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budgets"), 0);
    pgconn_free(c);
}
END_TEST

/* max_concurrent = 4 for all traffic, shared, 3 instances, 24 slow
 * requests at once: never more than 4 at the fake together; the rest get
 * 429 concurrency_limit, Retry-After 1.  Slots are returned as requests
 * end: nothing stays leased. */
START_TEST(test_max_concurrent_shared_across_three_instances)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_lim_conc", &url);
    int ok = 0, peak;

    start_all(url, "max_concurrent = 4; shared = true;");
    for (int round = 0; round < 3; round++)
        ok += burst(24, 300, "concurrency_limit");
    peak = fake_peak();
    fprintf(stderr, "max_concurrent 4 shared, 3 x 24 slow requests over 3 instances: %d admitted, "
            "at most %d at the fake at once\n", ok, peak);
    ck_assert_int_le(peak, 4);
    ck_assert_int_ge(peak, 2); /* the slots were used, not just refused */
    ck_assert_int_ge(ok, 4);
    ck_assert_int_eq(h_fake_count(fake.port, "s"), ok);
    stop_all();
    ck_assert_int_eq(
        pgt_int(c, "SELECT limit_pusd FROM budgets WHERE period = 'concurrent' AND scope = ''"), 4);
    ck_assert_int_eq(pgt_int(c, "SELECT COALESCE(sum(spent_pusd + leased_pusd), 0) FROM budgets"
                                " WHERE period = 'concurrent'"),
                     0);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM budget_leases WHERE leased_pusd > 0"), 0);
    pgconn_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("shared_limits");
    TCase *tc = tcase_create("pg");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_rpm_shared_across_three_instances);
    tcase_add_test(tc, test_tpm_shared_across_three_instances);
    tcase_add_test(tc, test_max_concurrent_shared_across_three_instances);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(suite)
