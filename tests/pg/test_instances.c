/* test_instances.c - orproxy instances writing one PostgreSQL ledger
 * (ledger.backend = "postgresql"), end to end: build/orproxy and
 * build/fake_openrouter as child processes (tests/e2e/harness.h), the
 * database of tests/pg/run.sh.  Each test asserts what the clients saw, what
 * reached the fake upstream, and what the database holds.
 *   three instances, one database: 600 concurrent requests, then SIGTERM;
 *   an outage mid-load: every row exactly once, the spool empties;
 *   SIGTERM while PostgreSQL is down, a start while it is still down: the
 *     spool keeps the rows and a later start replays them;
 *   a row the server refuses is dropped alone;
 *   three instances starting at once on an empty database: one schema. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "pgledger.h"
#include "pgtest.h"
#include "spool.h"

#define NINST 3
static const char *const env_key[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};

static struct h_proc fake, orp[NINST];
static int server_stopped; /* a failed test must not leave the next one without a server */

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

/* The config of instance "inst-<i>" against url. */
static char *conf_for(const char *url, int i)
{
    static char conf[2048];
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\n"
             "ledger = { flush_ms = 100; backend = \"postgresql\"; postgresql_url = \"%s\";"
             " postgresql_password_file = \"%s\"; };\n"
             "instance = { name = \"inst-%d\"; };\n"
             "workers = 2;\n",
             url, pgt_env("ORP_PG_PASSWORD_FILE"), i);
    return conf;
}

static void start(int i, const char *url)
{
    ck_assert_msg(h_orproxy_start(&orp[i], conf_for(url, i), env_key) == 0, "instance %d", i);
}

static long long metric(int i, const char *series)
{
    long long v = -1;
    ck_assert_int_eq(h_metric(orp[i].port, NULL, series, &v), 200);
    return v;
}

/* Waits up to timeout_ms for metric series of instance i to satisfy
 * (v > 0) == positive; returns the last value. */
static long long wait_metric(int i, const char *series, int positive, int timeout_ms)
{
    double end = h_now() + timeout_ms / 1000.0;
    long long v;
    while ((v = metric(i, series)), ((v > 0) != positive) && h_now() < end)
        usleep(50 * 1000);
    return v;
}

/* Sends n requests concurrently, request k (first + k) to instance
 * k % ninst, cost (k % 50 + 1) microdollars, X-Request-Id "<prefix>-<k>";
 * asserts every one answered 200.  Returns the sum of the costs in pusd. */
static long long send_load(const char *prefix, int first, int n, int ninst)
{
    struct h_async **a = calloc((size_t)n, sizeof *a);
    long long sum = 0;
    int ok = 0;

    ck_assert_ptr_nonnull(a);
    for (int j = 0; j < n; j++) {
        int k = first + j;
        char body[256], hdr[96];
        const char *hdrs[] = {hdr, NULL};
        snprintf(body, sizeof body,
                 "{\"model\":\"m/x\",\"messages\":[],\"fake\":{\"tag\":\"%s-%d\","
                 "\"usage\":{\"cost\":0.0000%02d}}}",
                 prefix, k, k % 50 + 1);
        snprintf(hdr, sizeof hdr, "X-Request-Id: %s-%d", prefix, k);
        a[j] = h_request_async(orp[k % ninst].port, "POST", "/v1/chat/completions", body, hdrs,
                               NULL);
        sum += (long long)(k % 50 + 1) * 1000000LL;
    }
    for (int j = 0; j < n; j++) {
        struct h_resp r;
        h_async_wait(a[j], &r);
        if (r.status == 200)
            ok++;
        else
            fprintf(stderr, "%s-%d: status %ld\n", prefix, first + j, r.status);
        h_resp_free(&r);
    }
    free(a);
    ck_assert_int_eq(ok, n);
    return sum;
}

/* What reached the fake: chat requests answered 200, and the sum of the
 * costs it reported for them, in pusd. */
static int fake_seen(long long *cost_pusd)
{
    cJSON *recs = h_fake_requests(fake.port), *rec;
    int n = 0;

    ck_assert_ptr_nonnull(recs);
    *cost_pusd = 0;
    cJSON_ArrayForEach(rec, recs)
    {
        cJSON *path = cJSON_GetObjectItem(rec, "path"), *body;
        if (!cJSON_IsString(path) || strstr(path->valuestring, "chat/completions") == NULL ||
            cJSON_GetObjectItem(rec, "status")->valueint != 200)
            continue;
        body = cJSON_Parse(cJSON_GetObjectItem(rec, "body")->valuestring);
        ck_assert_ptr_nonnull(body);
        *cost_pusd += llround(cJSON_GetObjectItem(
                                  cJSON_GetObjectItem(cJSON_GetObjectItem(body, "fake"), "usage"),
                                  "cost")->valuedouble * 1e6) * 1000000LL;
        cJSON_Delete(body);
        n++;
    }
    cJSON_Delete(recs);
    return n;
}

static int64_t db_int(const char *url, const char *sql)
{
    struct pgconn *c = pgt_conn(url);
    int64_t v = pgt_int(c, sql);
    pgconn_free(c);
    return v;
}

/* The rows of one test in the database hold exactly what the fake saw:
 * as many, each once, the same total cost. */
static void assert_db_matches_fake(const char *url, int expect_rows)
{
    long long fake_cost;
    int seen = fake_seen(&fake_cost);

    ck_assert_int_eq(seen, expect_rows);
    ck_assert_int_eq(db_int(url, "SELECT count(*) FROM requests"), seen);
    ck_assert_int_eq(db_int(url, "SELECT count(DISTINCT request_id) FROM requests"), seen);
    ck_assert_int_eq(db_int(url, "SELECT count(DISTINCT row_key) FROM requests"), seen);
    ck_assert_int_eq(db_int(url, "SELECT COALESCE(sum(cost_pusd), 0) FROM requests"), fake_cost);
    ck_assert_int_eq(db_int(url, "SELECT count(*) FROM requests WHERE status <> 200 OR "
                                 "cost_source <> 'upstream'"),
                     0);
}

static void stop_all(int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(h_proc_stop(&orp[i], SIGTERM, 20000), 0);
}

static off_t spool_size(int i)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/state/postgresql.spool", orp[i].dir);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A usage report's rows by instance: 200 requests each, the costs summing
 * to cost_pusd. */
static void assert_report(cJSON *rep, long long cost_pusd)
{
    cJSON *rows = cJSON_GetObjectItem(rep, "rows"), *row;
    int n = 0;

    ck_assert_ptr_nonnull(rows);
    ck_assert_str_eq(cJSON_GetObjectItem(rep, "by")->valuestring, "instance");
    cJSON_ArrayForEach(row, rows)
    {
        ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(row, "group")->valuestring, "inst-"));
        ck_assert_int_eq(cJSON_GetObjectItem(row, "requests")->valueint, 200);
        n++;
    }
    ck_assert_int_eq(n, NINST);
    ck_assert_int_eq((long long)cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "total"),
                                                    "cost_pusd")->valuedouble,
                     cost_pusd);
}

/* orproxy usage (instance 0's config) and GET /v1/usage (instance 1) read
 * the shared database: every instance's rows. */
static void assert_usage_by_instance(long long cost_pusd)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    const char *argv[] = {bin, "usage", "-c", orp[0].conf, "--by", "instance",
                          "--format", "json", NULL};
    char *out = NULL, *errs = NULL;
    struct h_resp r;
    cJSON *rep;

    ck_assert_int_eq(h_run(argv, &out, &errs), 0);
    rep = cJSON_Parse(out);
    ck_assert_msg(rep != NULL, "%s %s", out, errs);
    assert_report(rep, cost_pusd);
    cJSON_Delete(rep);
    free(out);
    free(errs);
    h_request(&r, orp[1].port, "GET", "/v1/usage?by=instance", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    rep = cJSON_Parse(r.body);
    ck_assert_msg(rep != NULL, "%s", r.body);
    assert_report(rep, cost_pusd);
    cJSON_Delete(rep);
    h_resp_free(&r);
}

START_TEST(test_three_instances_one_database)
{
    const char *url = pgt_fresh_db("orp_three");
    char u[512];
    long long sent_cost, statements = 0;
    int64_t xact0, xact1;
    double t0, t1;

    snprintf(u, sizeof u, "%s", url);
    for (int i = 0; i < NINST; i++)
        start(i, u);
    xact0 = db_int(u, "SELECT xact_commit FROM pg_stat_database WHERE datname = 'orp_three'");
    t0 = h_now();
    sent_cost = send_load("three", 0, 600, NINST);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(wait_metric(i, "orproxy_ledger_queue_depth", 0, 5000), 0);
    t1 = h_now();
    for (int i = 0; i < NINST; i++) {
        statements += metric(i, "orproxy_ledger_postgresql_statements_total");
        ck_assert_int_eq(metric(i, "orproxy_ledger_spool_bytes"), 0);
        ck_assert_int_eq(metric(i, "orproxy_ledger_postgresql_up"), 1);
        ck_assert_int_eq(metric(i, "orproxy_ledger_postgresql_dropped_total"), 0);
    }
    assert_usage_by_instance(sent_cost);
    stop_all(NINST);
    assert_db_matches_fake(u, 600);
    ck_assert_int_eq(db_int(u, "SELECT COALESCE(sum(cost_pusd), 0) FROM requests"), sent_cost);
    /* each row names the instance its request was sent to */
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests WHERE instance <> 'inst-' ||"
                               " (split_part(request_id, '-', 2)::int % 3)"),
                     0);
    for (int i = 0; i < NINST; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM requests WHERE instance = 'inst-%d'", i);
        ck_assert_int_eq(db_int(u, sql), 200);
    }
    usleep(600 * 1000); /* the server's statistics are flushed about every 0.5 s */
    xact1 = db_int(u, "SELECT xact_commit FROM pg_stat_database WHERE datname = 'orp_three'");
    fprintf(stderr,
            "three instances: 600 rows in %.2f s (%.0f rows/s end to end); %lld insert "
            "statements = %.3f per request; %lld server transactions in the test = %.3f per "
            "request (the test's own queries included)\n",
            t1 - t0, 600 / (t1 - t0), statements, statements / 600.0,
            (long long)(xact1 - xact0), (xact1 - xact0) / 600.0);
    ck_assert_msg(statements * 2 < 600, "%lld statements for 600 requests", statements);
}
END_TEST

START_TEST(test_outage_mid_load)
{
    const char *url = pgt_fresh_db("orp_outage");
    char u[512];

    snprintf(u, sizeof u, "%s", url);
    start(0, u);
    start(1, u);
    send_load("out", 0, 100, 2);
    server("stop");
    send_load("out", 100, 150, 2); /* the clients see no difference */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_gt(wait_metric(i, "orproxy_ledger_spool_bytes", 1, 5000), 0);
        ck_assert_int_eq(metric(i, "orproxy_ledger_postgresql_up"), 0);
        ck_assert_int_gt(spool_size(i), 0);
    }
    ck_assert(h_log_wait(&orp[0], "rows spool to", 1000));
    {
        /* an outage does not make an instance unready: its rows are safe */
        struct h_resp r;
        ck_assert(h_log_wait(&orp[0], "model prices loaded", 5000));
        h_request(&r, orp[0].port, "GET", "/readyz", NULL, NULL, NULL);
        ck_assert_msg(r.status == 200 && strstr(r.body, "\"postgresql\":{\"up\":false"),
                      "%ld %s", r.status, r.body);
        h_resp_free(&r);
    }
    server("resume");
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(wait_metric(i, "orproxy_ledger_spool_bytes", 0, 15000), 0);
        ck_assert_int_eq(metric(i, "orproxy_ledger_postgresql_up"), 1);
        ck_assert_int_eq(spool_size(i), 0);
    }
    ck_assert(h_log_wait(&orp[1], "replayed into postgresql", 1000));
    send_load("out", 250, 50, 2);
    stop_all(2);
    assert_db_matches_fake(u, 300);
    /* in order: an instance's rows committed in the order it wrote them */
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM (SELECT instance, id, split_part(row_key, "
                               "'-', 2)::bigint AS seq, lag(split_part(row_key, '-', 2)::bigint)"
                               " OVER (PARTITION BY instance ORDER BY id) AS prev FROM requests) x"
                               " WHERE prev IS NOT NULL AND seq < prev"),
                     0);
}
END_TEST

/* The spool growing past 64 KiB while PostgreSQL is down is alerted (the
 * webhook here is the fake, which records every request it gets), once
 * per size and day: the alerts_sent row in the instance's own ledger. */
START_TEST(test_spool_growth_alerts)
{
    const char *url = pgt_fresh_db("orp_spool_alert");
    char conf[3072], u[512], path[600], *v;
    int found = 0;
    double end;

    snprintf(u, sizeof u, "%s", url);
    snprintf(conf, sizeof conf, "%salerts = { webhook_url = \"http://127.0.0.1:%d/hooks/spool\"; };\n",
             conf_for(u, 0), fake.port);
    ck_assert_int_eq(h_orproxy_start(&orp[0], conf, env_key), 0);
    server("stop");
    send_load("spool", 0, 200, 1); /* about 500 bytes a row: over 64 KiB */
    {
        /* the rows reach the spool a flush (100 ms) at a time */
        double until = h_now() + 10;
        long long bytes;
        while ((bytes = metric(0, "orproxy_ledger_spool_bytes")) < 65536 && h_now() < until)
            usleep(100 * 1000);
        ck_assert_int_ge(bytes, 65536);
    }
    end = h_now() + 10;
    while (!found && h_now() < end) {
        cJSON *recs = h_fake_requests(fake.port), *rec;
        cJSON_ArrayForEach(rec, recs)
        {
            cJSON *b;
            if (strcmp(cJSON_GetObjectItem(rec, "path")->valuestring, "/hooks/spool") != 0)
                continue;
            b = cJSON_Parse(cJSON_GetObjectItem(rec, "body")->valuestring);
            ck_assert_ptr_nonnull(b);
            ck_assert_str_eq(cJSON_GetObjectItem(b, "type")->valuestring, "spool");
            ck_assert_int_eq(cJSON_GetObjectItem(b, "threshold_kib")->valueint, 64);
            ck_assert(cJSON_GetObjectItem(b, "spool_bytes")->valuedouble >= 65536);
            ck_assert_str_eq(cJSON_GetObjectItem(b, "instance")->valuestring, "inst-0");
            cJSON_Delete(b);
            found = 1;
        }
        cJSON_Delete(recs);
        if (!found)
            usleep(100 * 1000);
    }
    ck_assert_msg(found, "no spool alert reached the webhook");
    snprintf(path, sizeof path, "%s/state/usage.db", orp[0].dir);
    v = h_db_value(path, "SELECT count(*) FROM alerts_sent WHERE budget = 'spool' AND threshold = 64", 2000);
    ck_assert_str_eq(v, "1");
    free(v);
    server("resume");
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_spool_bytes", 0, 10000), 0);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    assert_db_matches_fake(u, 200);
}
END_TEST

START_TEST(test_sigterm_while_down_replays_at_next_start)
{
    const char *url = pgt_fresh_db("orp_down");
    char u[512];

    snprintf(u, sizeof u, "%s", url);
    start(0, u);
    server("stop");
    send_load("down", 0, 40, 1);
    ck_assert_int_gt(wait_metric(0, "orproxy_ledger_spool_bytes", 1, 5000), 0);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    ck_assert(h_log_wait(&orp[0], "the next start replays them", 1000));
    ck_assert_int_gt(spool_size(0), 0);
    /* started again while PostgreSQL is still down: it serves, rows spool */
    start(0, u);
    ck_assert(h_log_wait(&orp[0], "postgresql unreachable at start", 2000));
    ck_assert(h_log_wait(&orp[0], "40 rows wait in", 1000));
    send_load("down", 40, 10, 1);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    server("resume");
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests"), 0);
    start(0, u);
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_spool_bytes", 0, 10000), 0);
    ck_assert_int_eq(spool_size(0), 0);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    assert_db_matches_fake(u, 50);
}
END_TEST

START_TEST(test_refused_row_dropped_alone)
{
    const char *url = pgt_fresh_db("orp_refused");
    char u[512];
    struct h_resp r;
    const char *hdrs[] = {"X-Request-Id: bad-1", NULL};
    struct pgconn *c;

    snprintf(u, sizeof u, "%s", url);
    start(0, u);
    /* the server refuses one model: a constraint the SQLite ledger lacks */
    c = pgt_conn(u);
    pgt_exec(c, "ALTER TABLE requests ADD CONSTRAINT no_bad CHECK (model <> 'm/bad')");
    pgconn_free(c);
    h_request(&r, orp[0].port, "POST", "/v1/chat/completions",
              "{\"model\":\"m/bad\",\"messages\":[],\"fake\":{\"usage\":{\"cost\":0.000001}}}",
              hdrs, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    send_load("ok", 0, 30, 1);
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_postgresql_dropped_total", 1, 5000), 1);
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_queue_depth", 0, 5000), 0);
    ck_assert(h_log_wait(&orp[0], "postgresql refused row bad-1", 1000));
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests"), 30);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests WHERE request_id LIKE 'ok-%'"), 30);
}
END_TEST

START_TEST(test_start_race_one_schema)
{
    const char *url = pgt_fresh_db("orp_race");
    char u[512];

    snprintf(u, sizeof u, "%s", url);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(h_orproxy_spawn(&orp[i], conf_for(u, i), env_key), 0);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(h_orproxy_ready(&orp[i]), 0);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM orp_schema"), PGLEDGER_SCHEMA_VERSION);
    ck_assert_int_eq(db_int(u, "SELECT count(DISTINCT version) FROM orp_schema"), PGLEDGER_SCHEMA_VERSION);
    send_load("race", 0, 30, NINST);
    stop_all(NINST);
    assert_db_matches_fake(u, 30);
    {
        int applied = 0, found = 0;
        char at[64], here[64];
        snprintf(at, sizeof at, "postgresql schema at version %d", PGLEDGER_SCHEMA_VERSION);
        snprintf(here, sizeof here, "(%d migrations applied here)", PGLEDGER_SCHEMA_VERSION);
        for (int i = 0; i < NINST; i++) {
            ck_assert(h_log_wait(&orp[i], at, 100));
            applied += h_log_wait(&orp[i], here, 10);
            found += h_log_wait(&orp[i], "(0 migrations applied here)", 10);
        }
        ck_assert_int_eq(applied, 1); /* one instance migrated, the others found it done */
        ck_assert_int_eq(found, NINST - 1);
    }
}
END_TEST

/* Writes n rows with request ids "<prefix>-<k>" and cost 1 microdollar each
 * into instance i's spool file, as an outage would have left them. */
static void fill_spool(int i, const char *prefix, int n)
{
    char path[512], err[256] = "";
    struct pgl_row *rows = calloc(500, sizeof *rows);
    struct spool *sp;

    snprintf(path, sizeof path, "%s/state/postgresql.spool", orp[i].dir);
    sp = spool_open(path, NULL, err, sizeof err);
    ck_assert_msg(sp != NULL, "%s", err);
    for (int k = 0; k < n;) {
        int m = 0;
        for (; m < 500 && k < n; m++, k++) {
            struct ledger_record *r = &rows[m].rec;
            memset(&rows[m], 0, sizeof rows[m]);
            snprintf(rows[m].key, sizeof rows[m].key, "earlier-%d", k);
            snprintf(r->request_id, sizeof r->request_id, "%s-%d", prefix, k);
            r->started_ms = 1764547200000LL + k;
            snprintf(r->route, sizeof r->route, "/chat/completions");
            snprintf(r->model, sizeof r->model, "m/x");
            snprintf(r->outcome, sizeof r->outcome, "ok");
            r->status = 200;
            r->cost_pusd = 1000000;
            r->cost_source = COST_UPSTREAM;
            r->ttfb_ms = -1;
        }
        ck_assert_msg(spool_append(sp, rows, (size_t)m, err, sizeof err) == 0, "%s", err);
    }
    spool_close(sp);
    free(rows);
}

START_TEST(test_long_spool_replays_in_turns_while_serving)
{
    const char *url = pgt_fresh_db("orp_long");
    char u[512];
    const char *line;
    char *log;
    int rows = 0, turns = 0;

    snprintf(u, sizeof u, "%s", url);
    start(0, u);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    fill_spool(0, "earlier", 25000); /* a long outage's rows */
    start(0, u);
    send_load("meanwhile", 0, 30, 1); /* served while the spool replays */
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_spool_bytes", 0, 30000), 0);
    ck_assert(h_log_wait(&orp[0], "is replayed into postgresql", 1000));
    log = h_read_file(orp[0].log);
    ck_assert_ptr_nonnull(log);
    line = strstr(log, "is replayed into postgresql (");
    ck_assert_ptr_nonnull(line);
    ck_assert_int_eq(sscanf(line, "is replayed into postgresql (%d rows in %d turns", &rows, &turns),
                     2);
    free(log);
    ck_assert_int_ge(rows, 25000);
    ck_assert_int_ge(turns, 3); /* 10,000 rows a turn at most: the writer came back between */
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests WHERE request_id LIKE 'earlier-%'"),
                     25000);
    ck_assert_int_eq(db_int(u, "SELECT count(DISTINCT row_key) FROM requests"), 25030);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests WHERE request_id LIKE 'meanwhile-%'"),
                     30);
    /* the replayed rows came first: in order */
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests WHERE request_id LIKE 'meanwhile-%'"
                               " AND id < (SELECT max(id) FROM requests WHERE request_id LIKE"
                               " 'earlier-%')"),
                     0);
}
END_TEST

/* Polls (every 100 ms, up to timeout_ms) until sql counts expect. */
static int64_t wait_count(const char *url, const char *sql, int64_t expect, int timeout_ms)
{
    double end = h_now() + timeout_ms / 1000.0;
    int64_t v;
    while ((v = db_int(url, sql)) != expect && h_now() < end)
        usleep(100 * 1000);
    return v;
}

/* An aborted stream whose cost the fake's /generation answers later. */
static void aborted_stream(const char *rid)
{
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 600};
    char hdr[96];
    const char *hdrs[] = {hdr, NULL};

    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", rid);
    h_request(&r, orp[0].port, "POST", "/v1/chat/completions",
              "{\"model\":\"openai/gpt-4o-mini\",\"stream\":true,\"fake\":{\"events\":200,"
              "\"interval_ms\":20,\"usage\":{\"cost\":0.0042}}}",
              hdrs, &o);
    h_resp_free(&r);
}

START_TEST(test_reconciled_cost_reaches_postgresql)
{
    const char *url = pgt_fresh_db("orp_reconcile");
    char u[512];
    long long answered;

    snprintf(u, sizeof u, "%s", url);
    start(0, u);
    ck_assert(h_log_wait(&orp[0], "model prices loaded", 5000));
    answered = metric(0, "orproxy_reconcile_total{result=\"answered\"}");
    aborted_stream("rec-1");
    /* first the local estimate, then OpenRouter's own figure, in PostgreSQL too */
    ck_assert_int_eq(wait_count(u, "SELECT count(*) FROM requests WHERE request_id = 'rec-1'"
                                   " AND cost_source = 'estimate' AND outcome = 'cancelled'",
                                1, 5000),
                     1);
    ck_assert_int_eq(wait_count(u, "SELECT count(*) FROM requests WHERE request_id = 'rec-1'"
                                   " AND cost_source = 'upstream' AND cost_pusd = 4200000000",
                                1, 15000),
                     1);
    /* while PostgreSQL is down the update waits in the spool, behind its row */
    server("stop");
    aborted_stream("rec-2");
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_spool_bytes", 1, 5000) > 0, 1);
    for (int i = 0; i < 150 && metric(0, "orproxy_reconcile_total{result=\"answered\"}") <
                                   answered + 2;
         i++)
        usleep(100 * 1000);
    ck_assert_int_eq(metric(0, "orproxy_reconcile_total{result=\"answered\"}"), answered + 2);
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_queue_depth", 0, 5000), 0);
    server("resume");
    ck_assert_int_eq(wait_metric(0, "orproxy_ledger_spool_bytes", 0, 10000), 0);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests WHERE request_id = 'rec-2'"
                               " AND cost_source = 'upstream' AND cost_pusd = 4200000000"),
                     1);
    ck_assert_int_eq(db_int(u, "SELECT count(*) FROM requests"), 2);
    ck_assert_int_eq(h_proc_stop(&orp[0], SIGTERM, 20000), 0);
}
END_TEST

/* Runs orproxy once against url with password file pw; returns its exit
 * status, its stderr in *out. */
static int run_once(const char *url, const char *pw, char **out)
{
    char dir[] = "/tmp/orp-pgstart-XXXXXX", conf[600], text[1500], rm[700];
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    int rc;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/orproxy.conf", dir);
    snprintf(text, sizeof text,
             "listen = { address = \"127.0.0.1\"; port = 0; };\nstate_dir = \"%s/state\";\n"
             "ledger = { backend = \"postgresql\"; postgresql_url = \"%s\";"
             " postgresql_password_file = \"%s\"; };\n",
             dir, url, pw);
    ck_assert_int_eq(h_write_file(conf, text), 0);
    {
        const char *argv[] = {bin, "-c", conf, NULL};
        rc = h_run(argv, NULL, out);
    }
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(rm), 0);
    return rc;
}

START_TEST(test_start_refused_when_plainly_wrong)
{
    char *out = NULL, *bad = h_temp_file("not-the-password\n");
    char url[512];
    int rc;

    /* a wrong password: exit 1, a clear message, no secret */
    rc = run_once(pgt_fresh_db("orp_refuse"), bad, &out);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out, "postgresql ledger:") && strstr(out, "password authentication failed"),
                  "%s", out);
    ck_assert_ptr_null(strstr(out, "not-the-password"));
    free(out);
    /* a database that does not exist */
    snprintf(url, sizeof url, "postgresql://orp_test@127.0.0.1:%s/orp_no_such_db",
             pgt_env("ORP_PG_PORT"));
    rc = run_once(url, pgt_env("ORP_PG_PASSWORD_FILE"), &out);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out, "does not exist"), "%s", out);
    free(out);
    /* a password in the URL: a config error (exit 2), the password never shown */
    snprintf(url, sizeof url, "postgresql://orp_test:hunter2@127.0.0.1:%s/orp_refuse",
             pgt_env("ORP_PG_PORT"));
    rc = run_once(url, pgt_env("ORP_PG_PASSWORD_FILE"), &out);
    ck_assert_int_eq(rc, 2);
    ck_assert_msg(strstr(out, "must not contain a password"), "%s", out);
    ck_assert_ptr_null(strstr(out, "hunter2"));
    free(out);
    unlink(bad);
    free(bad);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("instances");
    TCase *tc = tcase_create("postgresql");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_three_instances_one_database);
    tcase_add_test(tc, test_outage_mid_load);
    tcase_add_test(tc, test_sigterm_while_down_replays_at_next_start);
    tcase_add_test(tc, test_spool_growth_alerts);
    tcase_add_test(tc, test_refused_row_dropped_alone);
    tcase_add_test(tc, test_reconciled_cost_reaches_postgresql);
    tcase_add_test(tc, test_long_spool_replays_in_turns_while_serving);
    tcase_add_test(tc, test_start_race_one_schema);
    tcase_add_test(tc, test_start_refused_when_plainly_wrong);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
