/* test_alerts.c - budget alerts with several instances on one PostgreSQL
 * (ledger.backend = "postgresql"), end to end: two orproxy instances, the
 * fake upstream as the webhook receiver (it records every request it gets),
 * the database of tests/pg/run.sh.
 *   a day budget of all traffic worth 10 requests, thresholds [50, 100],
 *   requests alternating between the instances, so neither's own share
 *   ever reaches 50 %: each threshold is alerted once (not once per
 *   instance) when the shared spend reaches it, and not before; the rows
 *   are in PostgreSQL's alerts_sent with sent_ms set, none in the
 *   instances' SQLite ledgers; GET /v1/key on either instance shows the
 *   shared spend;
 *   an undelivered row whose claim is stale (a crashed instance's) is taken
 *   over and delivered once; one freshly claimed by another instance is
 *   left to it. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pgtest.h"

#define COST "0.00001" /* what the fake charges a request: 1/10 of the budget */

static struct h_proc fake, orp[2];

static void start_orp(int i, const char *url)
{
    static const char *const env[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};
    char conf[4096];

    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nworkers = 2;\n"
             "ledger = { flush_ms = 50; backend = \"postgresql\"; postgresql_url = \"%s\";\n"
             "  postgresql_password_file = \"%s\"; };\n"
             "instance = { name = \"inst-%d\"; };\n"
             "limits = { budget_usd_day = \"0.0001\"; unpriced_reserve_usd = \"" COST "\"; };\n"
             "alerts = { webhook_url = \"http://127.0.0.1:%d/hooks/x\"; thresholds_pct = [50, 100]; };\n",
             url, pgt_env("ORP_PG_PASSWORD_FILE"), i, fake.port);
    ck_assert_int_eq(h_orproxy_start(&orp[i], conf, env), 0);
    ck_assert_int_eq(h_wait_ready(orp[i].port, 10000), 0);
}

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++)
        h_proc_cleanup(&orp[i]);
    h_proc_cleanup(&fake);
}

/* One request to instance i, repeated (after a pause) while it is refused
 * because the other instance still holds the headroom it leased. */
static void one_request(int i, int k)
{
    char body[256];
    double end = h_now() + 15;

    snprintf(body, sizeof body,
             "{\"model\":\"test/unpriced\",\"messages\":[],\"fake\":{\"tag\":\"a%d\","
             "\"usage\":{\"cost\":" COST "}}}",
             k);
    for (;;) {
        struct h_resp r;
        long st;

        h_request(&r, orp[i].port, "POST", "/v1/chat/completions", body, NULL, NULL);
        st = r.status;
        ck_assert_msg(st == 200 || st == 402, "%ld %s", st, r.body);
        h_resp_free(&r);
        if (st == 200)
            return;
        ck_assert_msg(h_now() < end, "request %d refused for 15 s", k);
        usleep(500 * 1000);
    }
}

/* The alerts the webhook got: how many of threshold pct (-1: all) for the
 * period (NULL: any); every one a budget alert of all traffic's day
 * budget from one of the two instances. */
static int hooks(int pct, const char *period)
{
    cJSON *recs = h_fake_requests(fake.port), *rec;
    int n = 0;

    ck_assert_ptr_nonnull(recs);
    cJSON_ArrayForEach(rec, recs)
    {
        cJSON *b;
        if (strcmp(cJSON_GetObjectItem(rec, "path")->valuestring, "/hooks/x") != 0)
            continue;
        b = cJSON_Parse(cJSON_GetObjectItem(rec, "body")->valuestring);
        ck_assert_ptr_nonnull(b);
        ck_assert_str_eq(cJSON_GetObjectItem(b, "type")->valuestring, "budget");
        ck_assert_str_eq(cJSON_GetObjectItem(b, "budget")->valuestring, "day");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItem(b, "client")));
        ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(b, "instance")->valuestring, "inst-"));
        if ((pct < 0 || cJSON_GetObjectItem(b, "threshold_pct")->valueint == pct) &&
            (period == NULL || strcmp(cJSON_GetObjectItem(b, "period")->valuestring, period) == 0))
            n++;
        cJSON_Delete(b);
    }
    cJSON_Delete(recs);
    return n;
}

static int wait_hooks(int pct, int want, int timeout_ms)
{
    double end = h_now() + timeout_ms / 1000.0;
    int n;
    while ((n = hooks(pct, NULL)) < want && h_now() < end)
        usleep(100 * 1000);
    return n;
}

/* The spent_usd of the alert of threshold pct. */
static double hook_spent(int pct)
{
    cJSON *recs = h_fake_requests(fake.port), *rec;
    double v = -1;

    cJSON_ArrayForEach(rec, recs)
    {
        cJSON *b;
        if (strcmp(cJSON_GetObjectItem(rec, "path")->valuestring, "/hooks/x") != 0)
            continue;
        b = cJSON_Parse(cJSON_GetObjectItem(rec, "body")->valuestring);
        if (cJSON_GetObjectItem(b, "threshold_pct")->valueint == pct)
            v = atof(cJSON_GetObjectItem(b, "spent_usd")->valuestring);
        cJSON_Delete(b);
    }
    cJSON_Delete(recs);
    return v;
}

/* GET /v1/key's data.usage_daily on instance i. */
static double key_usage_daily(int i)
{
    struct h_resp r;
    cJSON *j;
    double v;

    h_request(&r, orp[i].port, "GET", "/v1/key", NULL, NULL, NULL);
    ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
    j = cJSON_Parse(r.body);
    ck_assert_ptr_nonnull(j);
    v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "usage_daily")->valuedouble;
    cJSON_Delete(j);
    h_resp_free(&r);
    return v;
}

START_TEST(test_shared_budget_alerted_once)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_alerts_once", &url);
    char u[512], path[600], *v;

    snprintf(u, sizeof u, "%s", url);
    start_orp(0, u);
    start_orp(1, u);
    /* 4 requests, 2 each: 40 % shared, no alert */
    for (int k = 0; k < 4; k++)
        one_request(k % 2, k);
    usleep(2500 * 1000); /* two alert passes after the spend is recorded */
    ck_assert_int_eq(hooks(-1, NULL), 0);
    /* 6: 60 % shared, 30 % of each instance's own: one 50 % alert */
    for (int k = 4; k < 6; k++)
        one_request(k % 2, k);
    ck_assert_int_eq(wait_hooks(50, 1, 10000), 1);
    ck_assert(hook_spent(50) >= 0.00005 && hook_spent(50) <= 0.0001);
    /* 10: 100 % shared, 50 % each: one 100 % alert, still one 50 % */
    for (int k = 6; k < 10; k++)
        one_request(k % 2, k);
    ck_assert_int_eq(wait_hooks(100, 1, 10000), 1);
    ck_assert(hook_spent(100) >= 0.0001 - 1e-12);
    usleep(3000 * 1000); /* the other instance's passes: they must not send theirs */
    ck_assert_int_eq(hooks(50, NULL), 1);
    ck_assert_int_eq(hooks(100, NULL), 1);
    ck_assert_int_eq(hooks(-1, NULL), 2);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM alerts_sent"), 2);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM alerts_sent WHERE client = '' AND budget ="
                                " 'day' AND period = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
                                " AND threshold IN (50, 100) AND sent_ms IS NOT NULL"
                                " AND claimed_by IN ('inst-0', 'inst-1')"),
                     2);
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM alerts_sent WHERE threshold = 100"),
                     pgt_int(c, "SELECT spent_pusd FROM budgets WHERE scope = '' AND period = 'day'"));
    /* GET /v1/key on either instance: the shared day spend (10 requests),
     * not the instance's own 5 */
    for (int i = 0; i < 2; i++)
        ck_assert_msg(key_usage_daily(i) > 0.0001 - 1e-9, "instance %d: %g", i,
                      key_usage_daily(i));
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/state/usage.db", orp[i].dir);
        v = h_db_value(path, "SELECT count(*) FROM alerts_sent", 2000);
        ck_assert_str_eq(v, "0");
        free(v);
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
    }
    pgconn_free(c);
}
END_TEST

START_TEST(test_stale_claim_taken_over_once)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_alerts_takeover", &url);
    char u[512];
    double end;

    snprintf(u, sizeof u, "%s", url);
    /* a crashed instance's row (claimed long ago), and a live one's (just now) */
    pgt_exec(c, "INSERT INTO alerts_sent (client, budget, period, threshold, spent_pusd,"
                " limit_pusd, crossed_ms, claimed_by, claimed_ms) VALUES"
                " ('', 'day', '2000-01-01', 50, 60, 100, 1000, 'gone:1', 1000),"
                " ('', 'day', '2000-01-02', 50, 60, 100, 1000, 'alive:1',"
                " (extract(epoch from clock_timestamp()) * 1000)::bigint)");
    start_orp(0, u);
    start_orp(1, u);
    end = h_now() + 10;
    while (hooks(50, "2000-01-01") < 1 && h_now() < end)
        usleep(100 * 1000);
    usleep(3000 * 1000);
    ck_assert_int_eq(hooks(50, "2000-01-01"), 1);
    ck_assert_int_eq(hooks(50, "2000-01-02"), 0);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM alerts_sent WHERE period = '2000-01-01'"
                                " AND sent_ms IS NOT NULL AND claimed_by IN ('inst-0', 'inst-1')"),
                     1);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM alerts_sent WHERE period = '2000-01-02'"
                                " AND sent_ms IS NULL AND claimed_by = 'alive:1'"),
                     1);
    for (int i = 0; i < 2; i++)
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
    pgconn_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alerts");
    TCase *tc = tcase_create("postgresql");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_shared_budget_alerted_once);
    tcase_add_test(tc, test_stale_claim_taken_over_once);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
