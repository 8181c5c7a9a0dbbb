/* test_console.c - the console's data over the shared PostgreSQL ledger
 * (console_pg.h, the admin data routes with ledger.backend = "postgresql").
 *   the rollups: a row written twice (a replay: ON CONFLICT DO NOTHING)
 *     counts once, a reconciled cost moves them, and the queries' sums
 *     equal the raw table's;
 *   two instances on one database: each one's /admin/v1/overview and
 *     timeseries?by=instance show both instances' rows, with the sums the
 *     database holds; the requests list pages across instances and filters
 *     by instance;
 *   rows spooled while PostgreSQL was down and replayed count once;
 *   PostgreSQL down: the data routes answer 503 ledger_unavailable at
 *     once, and 200 again when it is back. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "console_pg.h"
#include "harness.h"
#include "pgledger.h"
#include "pgtest.h"
#include "pricing.h"
#include "util.h"

#define NINST 2
#define DAY 86400000LL
static const char *const env_key[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};

static struct h_proc fake, orp[NINST];
static int server_stopped;

static void server(const char *what)
{
    pgt_server(what);
    server_stopped = strcmp(what, "stop") == 0;
}

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    for (int i = 0; i < NINST; i++)
        h_proc_cleanup(&orp[i]);
    h_proc_cleanup(&fake);
    if (server_stopped)
        server("resume");
}

static int64_t db_int(const char *url, const char *sql)
{
    struct pgconn *c = pgt_conn(url);
    int64_t v = pgt_int(c, sql);
    pgconn_free(c);
    return v;
}

static const char *usd(int64_t pusd)
{
    static char buf[PRICING_USD_BUFSZ];
    return pricing_format_usd(pusd, buf, sizeof buf);
}

/* ---- the rollups, through the queries directly ---- */

static void fill_row(struct pgl_row *r, struct pgl_keys *k, int i, int64_t now)
{
    memset(r, 0, sizeof *r);
    pgledger_key_next(k, r->key);
    snprintf(r->rec.request_id, sizeof r->rec.request_id, "req_%d", i);
    r->rec.started_ms = now - (int64_t)(i % 3) * 3600000;
    snprintf(r->rec.client, sizeof r->rec.client, "client%d", i % 2);
    snprintf(r->rec.route, sizeof r->rec.route, "chat");
    if (i % 4 != 0) /* else no model */
        snprintf(r->rec.model, sizeof r->rec.model, "m/a");
    snprintf(r->rec.generation_id, sizeof r->rec.generation_id, "gen_%d", i);
    r->rec.status = i % 5 == 0 ? 502 : 200;
    r->rec.prompt_tokens = 10 + i;
    r->rec.completion_tokens = 5;
    r->rec.cached_tokens = 2;
    r->rec.cost_pusd = 1000003LL * (i + 1);
    r->rec.cost_source = COST_PRICING;
    r->rec.latency_ms = 1;
    r->rec.ttfb_ms = -1;
}

/* The rollups hold exactly what requests holds (by instance). */
static void assert_rollups_match(struct pgconn *c)
{
    static const char *const checks[] = {
        "SELECT count(*) FROM (SELECT instance, count(*) n, sum(cost_pusd) cost,"
        " count(*) FILTER (WHERE status >= 400) e, sum(prompt_tokens) p FROM requests GROUP BY 1) r"
        " FULL JOIN (SELECT instance, sum(requests) n, sum(cost_pusd) cost, sum(errors) e,"
        " sum(prompt_tokens) p FROM %s GROUP BY 1) u USING (instance)"
        " WHERE r.n IS DISTINCT FROM u.n OR r.cost IS DISTINCT FROM u.cost"
        " OR r.e IS DISTINCT FROM u.e OR r.p IS DISTINCT FROM u.p",
    };
    char sql[1024];
    const char *tables[] = {"rollup_hour", "rollup_day"};

    for (int t = 0; t < 2; t++) {
        snprintf(sql, sizeof sql, checks[0], tables[t]);
        ck_assert_int_eq(pgt_int(c, sql), 0);
    }
}

START_TEST(test_rollups_count_each_row_once)
{
    const char *url;
    struct pgconn *c = pgt_migrated("orp_console_rollup", &url);
    struct pgl_keys k;
    struct pgl_row rows[40];
    size_t ins = 0;
    char err[256];
    int64_t now = util_wall_ms(), sum;
    cJSON *o, *s;

    ck_assert_int_eq(pgledger_keys_init(&k), 0);
    for (int i = 0; i < 40; i++)
        fill_row(&rows[i], &k, i, now);
    ck_assert_int_eq(pgledger_insert(c, "inst-a", rows, 30, &ins, err, sizeof err), PGC_OK);
    ck_assert_int_eq(ins, 30);
    ck_assert_int_eq(pgledger_insert(c, "inst-b", rows + 30, 10, &ins, err, sizeof err), PGC_OK);
    ck_assert_int_eq(ins, 10);
    /* the replay: all 40 again, each batch with its old rows and no new one */
    ck_assert_int_eq(pgledger_insert(c, "inst-a", rows, 40, &ins, err, sizeof err), PGC_OK);
    ck_assert_int_eq(ins, 0);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(requests) FROM rollup_hour"), 40);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(requests) FROM rollup_day"), 40);
    assert_rollups_match(c);
    /* a reconciled cost moves the rollups' cost (and source), not the count */
    pgt_exec(c, "UPDATE requests SET cost_pusd = cost_pusd + 7, cost_source = 'upstream'"
                " WHERE generation_id IN ('gen_1', 'gen_2', 'gen_35')");
    assert_rollups_match(c);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(requests) FROM rollup_day"), 40);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(cost_pusd) FROM rollup_day WHERE cost_source = "
                                "'upstream'"),
                     pgt_int(c, "SELECT sum(cost_pusd) FROM requests WHERE generation_id IN "
                                "('gen_1', 'gen_2', 'gen_35')"));
    sum = pgt_int(c, "SELECT sum(cost_pusd) FROM requests");

    o = cqpg_overview(c, now, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    ck_assert_int_eq(cJSON_GetObjectItem(o, "requests")->valueint, 40);
    ck_assert_int_eq(cJSON_GetObjectItem(o, "errors")->valueint, 8);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "spend"), "last_30_days")->valuestring,
                     usd(sum));
    s = cJSON_GetObjectItem(o, "top_instances");
    ck_assert_int_eq(cJSON_GetArraySize(s), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(s, 0), "instance")->valuestring, "inst-a");
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(s, 0), "requests")->valueint, 30);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(s, 1), "requests")->valueint, 10);
    cJSON_Delete(o);

    /* the same validation as over SQLite, and by=instance */
    ck_assert_ptr_null(cqpg_timeseries(c, now, now - 1, 0, CQ_BY_INSTANCE, 5, err, sizeof err));
    ck_assert_str_eq(err, "since must not be after until");
    ck_assert_ptr_null(cqpg_timeseries(c, 0, now, 0, CQ_BY_INSTANCE, 5, err, sizeof err));
    ck_assert_str_eq(err, "a range of hourly buckets may span at most 400 days");
    o = cqpg_timeseries(c, now - DAY, now, 0, CQ_BY_INSTANCE, 1, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "by")->valuestring, "instance");
    s = cJSON_GetObjectItem(o, "series");
    ck_assert_int_eq(cJSON_GetArraySize(s), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(s, 0), "name")->valuestring, "inst-a");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(s, 1), "name")->valuestring, "(other)");
    cJSON_Delete(o);
    pgconn_free(c);
}
END_TEST

/* ---- instances ---- */

static void start(int i, const char *url)
{
    char conf[2048];
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\n"
             "ledger = { flush_ms = 100; backend = \"postgresql\"; postgresql_url = \"%s\";"
             " postgresql_password_file = \"%s\"; };\n"
             "instance = { name = \"inst-%d\"; };\n"
             "workers = 2;\n",
             url, pgt_env("ORP_PG_PASSWORD_FILE"), i);
    ck_assert_msg(h_orproxy_start(&orp[i], conf, env_key) == 0, "instance %d", i);
}

/* n requests, request k to instance k % ninst, client "c<k % 3>", each
 * answered 200. */
static void send_load(const char *prefix, int n, int ninst)
{
    for (int k = 0; k < n; k++) {
        char body[256];
        struct h_resp r;
        snprintf(body, sizeof body,
                 "{\"model\":\"m/x%d\",\"messages\":[],\"fake\":{\"tag\":\"%s-%d\","
                 "\"usage\":{\"cost\":0.0000%02d}}}",
                 k % 2, prefix, k, k % 50 + 1);
        h_request(&r, orp[k % ninst].port, "POST", "/v1/chat/completions", body, NULL, NULL);
        ck_assert_int_eq(r.status, 200);
        h_resp_free(&r);
    }
}

static void wait_rows(const char *url, int n)
{
    double end = h_now() + 10;
    while (db_int(url, "SELECT count(*) FROM requests") < n && h_now() < end)
        usleep(50 * 1000);
    ck_assert_int_eq(db_int(url, "SELECT count(*) FROM requests"), n);
}

static cJSON *get(int i, const char *path, long want)
{
    struct h_resp r;
    cJSON *o;

    h_request(&r, orp[i].port, "GET", path, NULL, NULL, NULL);
    ck_assert_msg(r.status == want, "%s: %ld %s", path, r.status, r.body);
    o = cJSON_Parse(r.body);
    ck_assert_msg(o != NULL, "%s", r.body);
    h_resp_free(&r);
    return o;
}

static int64_t usd_pusd(const cJSON *s)
{
    int64_t v;
    ck_assert(cJSON_IsString(s));
    ck_assert_int_eq(pricing_parse_decimal(s->valuestring, &v), 0);
    return v / 1000000; /* atto to pico */
}

/* The timeseries by instance: one series per instance, whose requests and
 * costs sum to the database's. */
static void assert_series_by_instance(int i, const char *url)
{
    cJSON *o = get(i, "/admin/v1/timeseries?by=instance&bucket=hour&since=24h", 200), *s;
    int seen = 0;

    ck_assert_str_eq(cJSON_GetObjectItem(o, "by")->valuestring, "instance");
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(o, "series"))
    {
        const char *name = cJSON_GetObjectItem(s, "name")->valuestring;
        char sql[256];
        int64_t req = 0, cost = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(s, "requests")) req += v->valueint;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(s, "cost_usd")) cost += usd_pusd(v);
        snprintf(sql, sizeof sql, "SELECT count(*) FROM requests WHERE instance = '%s'", name);
        ck_assert_int_eq(req, db_int(url, sql));
        snprintf(sql, sizeof sql, "SELECT sum(cost_pusd) FROM requests WHERE instance = '%s'", name);
        ck_assert_int_eq(cost, db_int(url, sql));
        seen++;
    }
    ck_assert_int_eq(seen, 2);
    cJSON_Delete(o);
}

START_TEST(test_two_instances_one_console)
{
    char u[512], path[256];
    int64_t sum, before = 0, prev = INT64_MAX;
    int n = 0, per[NINST] = {0};
    cJSON *o, *rows, *row;

    snprintf(u, sizeof u, "%s", pgt_fresh_db("orp_console_two"));
    start(0, u);
    start(1, u);
    send_load("two", 30, 2);
    wait_rows(u, 30);
    sum = db_int(u, "SELECT sum(cost_pusd) FROM requests");
    ck_assert_int_gt(sum, 0);
    for (int i = 0; i < NINST; i++) {
        cJSON *top;
        o = get(i, "/admin/v1/overview", 200);
        ck_assert_int_eq(cJSON_GetObjectItem(o, "requests")->valueint, 30);
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "spend"), "today")->valuestring,
                         usd(sum));
        top = cJSON_GetObjectItem(o, "top_instances");
        ck_assert_int_eq(cJSON_GetArraySize(top), 2);
        ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(top, 0), "requests")->valueint +
                             cJSON_GetObjectItem(cJSON_GetArrayItem(top, 1), "requests")->valueint,
                         30);
        cJSON_Delete(o);
        assert_series_by_instance(i, u);
    }
    /* pages of 7 across both instances: every row once, newest first */
    do {
        snprintf(path, sizeof path, "/admin/v1/requests?limit=7%s%lld", before ? "&before=" : "",
                 before ? (long long)before : 0LL);
        if (!before)
            path[strlen(path) - 1] = '\0';
        o = get(n % 2, path, 200);
        rows = cJSON_GetObjectItem(o, "requests");
        cJSON_ArrayForEach(row, rows)
        {
            int64_t id = (int64_t)cJSON_GetObjectItem(row, "id")->valuedouble;
            const char *inst = cJSON_GetObjectItem(row, "instance")->valuestring;
            ck_assert_int_lt(id, prev);
            prev = id;
            per[strcmp(inst, "inst-0") == 0 ? 0 : 1]++;
            ck_assert_ptr_null(cJSON_GetObjectItem(row, "row_key"));
            ck_assert(cJSON_IsString(cJSON_GetObjectItem(row, "cost_usd")));
            n++;
        }
        row = cJSON_GetObjectItem(o, "next_before");
        before = cJSON_IsNumber(row) ? (int64_t)row->valuedouble : 0;
        cJSON_Delete(o);
    } while (before != 0);
    ck_assert_int_eq(n, 30);
    ck_assert_int_eq(per[0], 15);
    ck_assert_int_eq(per[1], 15);
    /* the instance filter */
    o = get(0, "/admin/v1/requests?instance=inst-1&limit=100", 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "requests")), 15);
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(o, "requests"))
        ck_assert_str_eq(cJSON_GetObjectItem(row, "instance")->valuestring, "inst-1");
    cJSON_Delete(o);
    /* a bad grouping is a 400 in the API's shape */
    o = get(1, "/admin/v1/timeseries?by=host", 400);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code")->valuestring,
                     "invalid_parameter");
    cJSON_Delete(o);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(h_proc_stop(&orp[i], SIGTERM, 20000), 0);
}
END_TEST

START_TEST(test_replayed_rows_count_once_and_down_is_503)
{
    char u[512];
    double t0;
    cJSON *o;
    struct pgconn *c;

    snprintf(u, sizeof u, "%s", pgt_fresh_db("orp_console_replay"));
    start(0, u);
    send_load("before", 4, 1);
    wait_rows(u, 4);
    server("stop");
    send_load("down", 6, 1);
    /* the database is out of reach: a 503 in the API's error shape, at once */
    t0 = h_now();
    o = get(0, "/admin/v1/overview", 503);
    ck_assert_double_lt(h_now() - t0, 6.0);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code")->valuestring,
                     "ledger_unavailable");
    cJSON_Delete(o);
    o = get(0, "/admin/v1/requests", 503);
    cJSON_Delete(o);
    server("resume");
    wait_rows(u, 10);
    o = get(0, "/admin/v1/overview", 200);
    ck_assert_int_eq(cJSON_GetObjectItem(o, "requests")->valueint, 10);
    cJSON_Delete(o);
    c = pgt_conn(u);
    assert_rollups_match(c);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(requests) FROM rollup_hour"), 10);
    pgconn_free(c);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("console_pg");
    TCase *tc = tcase_create("postgresql");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rollups_count_each_row_once);
    tcase_add_test(tc, test_two_instances_one_console);
    tcase_add_test(tc, test_replayed_rows_count_once_and_down_is_503);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
