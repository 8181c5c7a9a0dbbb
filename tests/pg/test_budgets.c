/* test_budgets.c - budgets shared by several orproxy instances through a
 * real PostgreSQL (make test-pg): real orproxy processes, the fake upstream,
 * and the budgets tables read back.  Every test asserts what the clients
 * saw (status, error code, Retry-After) and what the database holds. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "pgtest.h"

#define COST_PUSD 500000000LL /* what the fake charges a request: $0.0005 */
#define COST "0.0005"

static struct h_proc fake, orp[3];
static const char *extra_conf = "";    /* appended to every instance's config */
static const char *const *req_headers; /* sent with every request (NULL: none) */

static void start_fake(void)
{
    memset(&fake, 0, sizeof fake);
    memset(orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void stop_all(void)
{
    for (int i = 0; i < 3; i++) {
        h_proc_stop(&orp[i], SIGTERM, 10000);
        h_proc_cleanup(&orp[i]);
    }
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&fake);
}

/* Starts instance i on url with these limits, and waits until it has its
 * price table (/readyz 200): before that every model is unpriced. */
static void start_orp(int i, const char *url, const char *limits)
{
    static const char *const env[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};
    char conf[4096];

    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nworkers = 2;\n"
             "ledger = { flush_ms = 50; backend = \"postgresql\"; postgresql_url = \"%s\";\n"
             "  postgresql_password_file = \"%s\"; };\n"
             "instance = { name = \"i%d\"; };\nlimits = { %s };\n%s",
             url, pgt_env("ORP_PG_PASSWORD_FILE"), i, limits, extra_conf);
    ck_assert_int_eq(h_orproxy_start(&orp[i], conf, env), 0);
    ck_assert_int_eq(h_wait_ready(orp[i].port, 10000), 0);
}

static const char *chat(const char *model, int hang_ms)
{
    static __thread char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"max_tokens\":1000,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hi\"}],\"fake\":{\"tag\":\"b\",\"hang_ms\":%d,\"usage\":{\"cost\":%s}}}",
             model, hang_ms, COST);
    return body;
}

/* What the clients saw for n requests. */
struct seen {
    int ok, over, unavailable, other;
};

static void count(struct seen *s, struct h_resp *r)
{
    if (r->status == 200) {
        s->ok++;
    } else if (r->status == 402) {
        ck_assert_msg(strstr(r->body, "\"code\":\"budget_day_exceeded\"") != NULL, "%s", r->body);
        ck_assert_ptr_nonnull(h_header(r, "Retry-After"));
        if (req_headers != NULL) /* the client's budget ran out, not all traffic's */
            ck_assert_msg(strstr(r->body, "client 'alice' has used its daily budget of $0.005") != NULL,
                          "%s", r->body);
        s->over++;
    } else if (r->status == 503) {
        ck_assert_msg(strstr(r->body, "{\"error\":{") != NULL, "%s", r->body);
        ck_assert_msg(strstr(r->body, "\"code\":\"budget_unavailable\"") != NULL, "%s", r->body);
        ck_assert_ptr_nonnull(h_header(r, "Retry-After"));
        s->unavailable++;
    } else {
        fprintf(stderr, "unexpected %ld: %s\n", r->status, r->body);
        s->other++;
    }
}

/* n concurrent requests spread over the first k instances. */
static struct seen burst(int n, int k, const char *model, int hang_ms)
{
    struct h_async **a = calloc((size_t)n, sizeof *a);
    struct seen s = {0};

    for (int i = 0; i < n; i++)
        a[i] = h_request_async(orp[i % k].port, "POST", "/v1/chat/completions",
                               chat(model, hang_ms), req_headers, NULL);
    for (int i = 0; i < n; i++) {
        struct h_resp r;
        h_async_wait(a[i], &r);
        count(&s, &r);
        h_resp_free(&r);
    }
    free(a);
    return s;
}

static int64_t q(struct pgconn *c, const char *sql)
{
    return pgt_int(c, sql);
}

/* The budget of all traffic for today holds in the database, and agrees
 * with the shared ledger's rows (instances stopped: every row flushed). */
static void check_budget_rows(struct pgconn *c, int64_t spent, int64_t limit)
{
    ck_assert_int_eq(q(c, "SELECT COALESCE(sum(cost_pusd), 0) FROM requests WHERE status = 200"),
                     spent);
    ck_assert_int_eq(q(c, "SELECT count(*) FROM requests WHERE status <> 200 AND cost_pusd <> 0"), 0);
    ck_assert_int_eq(q(c, "SELECT limit_pusd FROM budgets WHERE scope = '' AND period = 'day'"),
                     limit);
    ck_assert_int_eq(q(c, "SELECT spent_pusd FROM budgets WHERE scope = '' AND period = 'day'"),
                     spent);
    ck_assert_int_eq(q(c, "SELECT leased_pusd FROM budgets WHERE scope = '' AND period = 'day'"),
                     q(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budget_leases"
                          " WHERE scope = '' AND period = 'day'"));
}

/* The figures instance i logged at its shutdown: shared reservations and
 * database statements. */
static void stmt_figures(int i, long long *res, long long *stmts)
{
    char *log = h_read_file(orp[i].log), *p;
    *res = *stmts = -1;
    ck_assert_ptr_nonnull(log);
    p = strstr(log, "budgets: ");
    while (p != NULL &&
           sscanf(p, "budgets: %lld shared reservations, %lld database statements", res, stmts) != 2)
        p = strstr(p + 1, "budgets: ");
    free(log);
    ck_assert_msg(*res >= 0 && *stmts >= 0, "instance %d logged no figures", i);
}

/* min_ok: at least this many are admitted, so the budget is not refused
 * wholesale (a burst fits at most limit / reservation requests at once). */
static void budget_holds(const char *db, const char *model, const char *limits, int min_ok)
{
    const char *url;
    struct pgconn *c = pgt_migrated(db, &url);
    const int64_t limit = 20 * COST_PUSD;
    struct seen s;
    int charged;

    start_fake();
    for (int i = 0; i < 3; i++)
        start_orp(i, url, limits);
    s = burst(300, 3, model, 100);
    charged = h_fake_count(fake.port, "b");
    fprintf(stderr, "%s: %d admitted, %d refused (402), %d unavailable, %d other; fake charged %d\n",
            model, s.ok, s.over, s.unavailable, s.other, charged);
    ck_assert_int_eq(s.other + s.unavailable, 0);
    ck_assert_int_eq(s.ok + s.over, 300);
    ck_assert_int_eq(charged, s.ok); /* every admitted request reached upstream */
    ck_assert_int_le((int64_t)charged * COST_PUSD, limit); /* and the budget held */
    ck_assert_int_ge(s.ok, min_ok);
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
    /* Stopped: every settle recorded, every lease given back. */
    check_budget_rows(c, (int64_t)charged * COST_PUSD, limit);
    ck_assert_int_eq(q(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budgets"), 0);
    stop_all();
    pgconn_free(c);
}

START_TEST(test_budget_holds_across_three_instances)
{
    /* $0.000604 reserved a request: 16 fit at once. */
    budget_holds("orp_bud_priced", "openai/gpt-4o-mini", "budget_usd_day = \"0.01\";", 8);
}
END_TEST

START_TEST(test_budget_holds_with_an_unpriced_model)
{
    /* Reserves $0.001 a request (twice what it costs) instead of nothing. */
    budget_holds("orp_bud_unpriced", "test/unpriced",
                 "budget_usd_day = \"0.01\"; unpriced_reserve_usd = \"0.001\";", 5);
}
END_TEST

START_TEST(test_common_request_touches_no_database)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_bud_load", &url);
    long long res = 0, stmts = 0;
    int ok = 0;

    start_fake();
    for (int i = 0; i < 3; i++)
        start_orp(i, url, "budget_usd_day = \"100\"; budget_usd_month = \"1000\";");
    for (int round = 0; round < 10; round++)
        ok += burst(60, 3, "openai/gpt-4o-mini", 20).ok;
    ck_assert_int_eq(ok, 600);
    for (int i = 0; i < 3; i++) {
        long long r, st;
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
        stmt_figures(i, &r, &st);
        res += r;
        stmts += st;
    }
    fprintf(stderr, "600 requests, 2 budgets each, 3 instances: %lld statements, %.3f per request\n",
            stmts, (double)stmts / (double)res);
    ck_assert_int_eq(res, 600);
    ck_assert_msg(stmts * 2 < res, "%lld statements for %lld requests", stmts, res);
    check_budget_rows(c, 600 * COST_PUSD, 100000000000000LL);
    ck_assert_int_eq(q(c, "SELECT spent_pusd FROM budgets WHERE scope = '' AND period = 'month'"),
                     600 * COST_PUSD);
    ck_assert_int_eq(q(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budgets"), 0);
    stop_all();
    pgconn_free(c);
}
END_TEST

/* A client's budget holds across instances too, next to all traffic's. */
START_TEST(test_client_budget_holds_across_two_instances)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_bud_client", &url);
    char key[64], hash[65], conf[512], auth[128];
    const char *hdrs[] = {auth, NULL};
    struct seen s;
    int charged;

    ck_assert_int_eq(h_key_new("alice", key, sizeof key, hash), 0);
    snprintf(conf, sizeof conf,
             "auth = { mode = \"keys\"; };\nclients = ( { name = \"alice\"; key_sha256 = \"%s\";"
             " budget_usd_day = \"0.005\"; } );\n",
             hash);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    extra_conf = conf;
    req_headers = hdrs;
    start_fake();
    start_orp(0, url, "budget_usd_day = \"100\";");
    start_orp(1, url, "budget_usd_day = \"100\";");
    s = burst(100, 2, "openai/gpt-4o-mini", 100);
    extra_conf = "";
    req_headers = NULL;
    charged = h_fake_count(fake.port, "b");
    ck_assert_int_eq(s.other + s.unavailable, 0);
    ck_assert_int_eq(charged, s.ok);
    ck_assert_int_le((int64_t)charged * COST_PUSD, 10 * COST_PUSD);
    ck_assert_int_ge(s.ok, 4); /* 8 fit at once */
    ck_assert_int_eq(s.over, 100 - s.ok);
    for (int i = 0; i < 2; i++)
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
    ck_assert_int_eq(q(c, "SELECT spent_pusd FROM budgets WHERE scope = 'alice' AND period = 'day'"),
                     (int64_t)charged * COST_PUSD);
    ck_assert_int_eq(q(c, "SELECT limit_pusd FROM budgets WHERE scope = 'alice' AND period = 'day'"),
                     10 * COST_PUSD);
    check_budget_rows(c, (int64_t)charged * COST_PUSD, 100000000000000LL);
    ck_assert_int_eq(q(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budgets"), 0);
    stop_all();
    pgconn_free(c);
}
END_TEST

static struct seen sequential(int i, int n)
{
    struct seen s = {0};
    for (int k = 0; k < n; k++) {
        struct h_resp r;
        h_request(&r, orp[i].port, "POST", "/v1/chat/completions", chat("openai/gpt-4o-mini", 0),
                  NULL, NULL);
        count(&s, &r);
        h_resp_free(&r);
    }
    return s;
}

START_TEST(test_killed_instance_lease_returns)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_bud_crash", &url);
    const char *limits = "budget_usd_day = \"1.00\"; lease_timeout_s = 2;";
    struct seen s;
    double t0;

    start_fake();
    start_orp(0, url, limits);
    start_orp(1, url, limits);
    s = burst(6, 1, "openai/gpt-4o-mini", 0);
    ck_assert_int_eq(s.ok, 6);
    usleep(400000); /* settled locally and recorded (a 100 ms tick) */
    ck_assert_int_gt(
        q(c, "SELECT COALESCE(sum(leased_pusd), 0) FROM budget_leases WHERE instance = 'i0'"), 0);
    ck_assert_int_eq(q(c, "SELECT spent_pusd FROM budgets WHERE scope = '' AND period = 'day'"),
                     6 * COST_PUSD);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGKILL, 5000), 128 + SIGKILL);
    /* i1's housekeeping returns i0's hold within the lease timeout plus
     * its expiry period (half the timeout) and a margin. */
    t0 = h_now();
    while (q(c, "SELECT count(*) FROM budget_leases WHERE instance = 'i0'") > 0 && h_now() - t0 < 8)
        usleep(100000);
    ck_assert_int_eq(q(c, "SELECT count(*) FROM budget_leases WHERE instance = 'i0'"), 0);
    ck_assert_msg(h_now() - t0 > 0.5, "returned before the timeout");
    check_budget_rows(c, 6 * COST_PUSD, 1000000000000LL);
    /* The survivor goes on spending the same budget; nothing of i0's is lost. */
    ck_assert_int_eq(sequential(1, 3).ok, 3);
    ck_assert_ptr_null(h_orproxy_finish(&orp[1], H_CANARY_KEY, 10000));
    check_budget_rows(c, 9 * COST_PUSD, 1000000000000LL);
    ck_assert_int_eq(q(c, "SELECT leased_pusd FROM budgets WHERE scope = '' AND period = 'day'"), 0);
    stop_all();
    pgconn_free(c);
}
END_TEST

START_TEST(test_database_down_fails_closed_or_open)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_bud_outage", &url);
    struct seen closed, open, after;
    int ok_before = 0;

    start_fake();
    start_orp(0, url, "budget_usd_day = \"1.00\"; budget_fail = \"closed\"; lease_timeout_s = 4;");
    start_orp(1, url, "budget_usd_day = \"1.00\"; budget_fail = \"open\"; lease_timeout_s = 4;");
    ok_before += sequential(0, 2).ok;
    ok_before += sequential(1, 2).ok;
    ck_assert_int_eq(ok_before, 4);
    pgconn_free(c);
    pgt_server("stop");
    sleep(4); /* past any local hold's validity (3/4 of the lease timeout) */
    closed = sequential(0, 20);
    open = sequential(1, 20);
    fprintf(stderr, "database down: closed %d ok %d unavailable; open %d ok %d unavailable\n",
            closed.ok, closed.unavailable, open.ok, open.unavailable);
    ck_assert_int_eq(closed.other + closed.over + open.other + open.over, 0);
    ck_assert_int_eq(closed.unavailable, 20); /* no hold left to spend */
    ck_assert_int_eq(open.ok, 20);
    pgt_server("resume");
    {
        double t0 = h_now();
        do {
            after = sequential(0, 1);
        } while (after.ok == 0 && h_now() - t0 < 10 && usleep(200000) == 0);
        ck_assert_int_eq(after.ok, 1);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_ptr_null(h_orproxy_finish(&orp[i], H_CANARY_KEY, 10000));
    c = pgt_conn(url);
    /* Nothing was lost: what was admitted while the database was down,
     * open or from the last chunk, is recorded once it is back. */
    check_budget_rows(c, (int64_t)(4 + closed.ok + open.ok + 1) * COST_PUSD, 1000000000000LL);
    ck_assert_int_eq(h_fake_count(fake.port, "b"), 4 + closed.ok + open.ok + 1);
    stop_all();
    pgconn_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("budgets");
    TCase *tc = tcase_create("pg");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_budget_holds_across_three_instances);
    tcase_add_test(tc, test_budget_holds_with_an_unpriced_model);
    tcase_add_test(tc, test_client_budget_holds_across_two_instances);
    tcase_add_test(tc, test_killed_instance_lease_returns);
    tcase_add_test(tc, test_database_down_fails_closed_or_open);
    suite_add_tcase(s, tc);
    tc = tcase_create("load");
    tcase_set_timeout(tc, 100);
    tcase_add_test(tc, test_common_request_touches_no_database);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(suite)
