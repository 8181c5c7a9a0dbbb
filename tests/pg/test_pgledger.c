/* test_pgledger.c - the PostgreSQL ledger against a real server: the
 * password sources, migrations run once by instances starting together,
 * idempotent batched inserts, an outage and a silent server. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check_main.h"
#include "pgledger.h"
#include "pgtest.h"
#include "util.h"

static void fill_row(struct pgl_row *r, struct pgl_keys *k, int i)
{
    memset(r, 0, sizeof *r);
    pgledger_key_next(k, r->key);
    snprintf(r->rec.request_id, sizeof r->rec.request_id, "req_%d", i);
    r->rec.started_ms = 1764547200000LL + i; /* 2025-12-01T00:00:00.000Z + i ms */
    snprintf(r->rec.client, sizeof r->rec.client, "client%d", i % 3);
    snprintf(r->rec.route, sizeof r->rec.route, "chat");
    snprintf(r->rec.model, sizeof r->rec.model, "openai/gpt-4o-mini");
    r->rec.status = i % 10 == 0 ? 429 : 200;
    r->rec.prompt_tokens = 10 + i;
    r->rec.completion_tokens = 5;
    r->rec.total_tokens = 15 + i;
    r->rec.cost_pusd = 1000003LL * (i + 1);
    r->rec.cost_source = COST_UPSTREAM;
    r->rec.latency_ms = 12.25;
    r->rec.ttfb_ms = i % 2 ? 3.5 : -1;
}

START_TEST(test_url_with_password_is_refused)
{
    struct pgconn_opts o = {.url = "postgresql://u:hunter2@127.0.0.1:1/db", .timeout_ms = 100};
    char err[256] = "";
    ck_assert_ptr_null(pgconn_new(&o, err, sizeof err));
    ck_assert_msg(strstr(err, "must not contain a password") != NULL, "%s", err);
    ck_assert_ptr_null(strstr(err, "hunter2"));
    o.url = "host=127.0.0.1 password=hunter2";
    ck_assert_ptr_null(pgconn_new(&o, err, sizeof err));
    o.url = "postgresql://u@127.0.0.1:1/db";
    o.password_file = "/nonexistent/pw";
    ck_assert_ptr_null(pgconn_new(&o, err, sizeof err));
    ck_assert_msg(strstr(err, "/nonexistent/pw") != NULL, "%s", err);
}
END_TEST

START_TEST(test_password_sources)
{
    const char *url = pgt_env("ORP_PG_URL");
    struct pgconn_opts o = {.url = url, .timeout_ms = 5000};
    char err[256] = "", bad[] = "/tmp/orp-pgtest-badpw.XXXXXX";
    struct pgconn *c;
    int fd;

    /* The password file. */
    c = pgt_conn(url);
    ck_assert_int_eq(pgt_int(c, "SELECT 41 + 1"), 42);
    pgconn_free(c);
    /* A wrong one: refused by the server, reported as an outage. */
    fd = mkstemp(bad);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "wrong\n", 6), 6);
    close(fd);
    o.password_file = bad;
    c = pgconn_new(&o, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(pgconn_connect(c, err, sizeof err), PGC_DOWN);
    ck_assert_msg(strstr(err, "password authentication failed") != NULL, "%s", err);
    pgconn_free(c);
    unlink(bad);
    /* None, and no .pgpass: no password to give. */
    o.password_file = NULL;
    setenv("PGPASSFILE", "/nonexistent/pgpass", 1);
    c = pgconn_new(&o, err, sizeof err);
    ck_assert_int_eq(pgconn_connect(c, err, sizeof err), PGC_DOWN);
    pgconn_free(c);
    /* libpq's own PGPASSFILE. */
    setenv("PGPASSFILE", pgt_env("ORP_PG_PASSFILE"), 1);
    c = pgconn_new(&o, err, sizeof err);
    ck_assert_msg(pgconn_connect(c, err, sizeof err) == PGC_OK, "%s", err);
    ck_assert_int_eq(pgt_int(c, "SELECT 7"), 7);
    pgconn_free(c);
    unsetenv("PGPASSFILE");
}
END_TEST

struct migrator {
    const char *url;
    pthread_barrier_t *go;
    int rc, version, applied;
    char err[256];
};

static void *migrate_thread(void *arg)
{
    struct migrator *m = arg;
    struct pgconn_opts o = {
        .url = m->url, .password_file = getenv("ORP_PG_PASSWORD_FILE"), .timeout_ms = 10000};
    struct pgconn *c = pgconn_new(&o, m->err, sizeof m->err);
    m->rc = c ? pgconn_connect(c, m->err, sizeof m->err) : -9;
    pthread_barrier_wait(m->go);
    if (m->rc == PGC_OK)
        m->rc = pgledger_migrate(c, "t", &m->version, &m->applied, m->err, sizeof m->err);
    pgconn_free(c);
    return NULL;
}

START_TEST(test_three_instances_migrate_once)
{
    for (int round = 0; round < 3; round++) {
        const char *url = pgt_fresh_db("orp_migrate");
        struct migrator m[3];
        pthread_t th[3];
        pthread_barrier_t go;
        struct pgconn *c;
        int applied = 0;

        pthread_barrier_init(&go, NULL, 3);
        for (int i = 0; i < 3; i++) {
            memset(&m[i], 0, sizeof m[i]);
            m[i].url = url;
            m[i].go = &go;
            pthread_create(&th[i], NULL, migrate_thread, &m[i]);
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            ck_assert_msg(m[i].rc == PGC_OK, "migration %d: %s", i, m[i].err);
            ck_assert_int_eq(m[i].version, PGLEDGER_SCHEMA_VERSION);
            applied += m[i].applied;
        }
        pthread_barrier_destroy(&go);
        /* Each migration applied by exactly one of them, recorded once. */
        ck_assert_int_eq(applied, PGLEDGER_SCHEMA_VERSION);
        c = pgt_conn(url);
        ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM orp_schema"), PGLEDGER_SCHEMA_VERSION);
        ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM pg_tables WHERE tablename IN"
                                    " ('requests', 'budgets', 'budget_leases')"),
                         3);
        pgconn_free(c);
    }
}
END_TEST

START_TEST(test_insert_twice_rows_once)
{
    struct pgconn *c = pgt_migrated("orp_insert", NULL);
    size_t n = 2 * PGLEDGER_CHUNK + 137, ins = 99;
    struct pgl_row *rows = calloc(n, sizeof *rows);
    struct pgl_keys k;
    char err[256] = "";
    int64_t want_cost = 0;

    ck_assert_int_eq(pgledger_keys_init(&k), 0);
    for (size_t i = 0; i < n; i++) {
        fill_row(&rows[i], &k, (int)i);
        want_cost += rows[i].rec.cost_pusd;
    }
    ck_assert_msg(pgledger_insert(c, "host-a:8080", rows, n, &ins, err, sizeof err) == PGC_OK, "%s",
                  err);
    ck_assert_uint_eq(ins, n);
    ck_assert_msg(pgledger_insert(c, "host-a:8080", rows, n, &ins, err, sizeof err) == PGC_OK, "%s",
                  err);
    ck_assert_uint_eq(ins, 0);
    /* A batch that overlaps what is there: only the new rows count. */
    ck_assert_int_eq(pgledger_insert(c, "host-a:8080", rows + n - 10, 10, &ins, err, sizeof err),
                     PGC_OK);
    ck_assert_uint_eq(ins, 0);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests"), (int64_t)n);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(cost_pusd) FROM requests"), want_cost);
    ck_assert_int_eq(pgt_int(c, "SELECT count(DISTINCT row_key) FROM requests"), (int64_t)n);
    /* One row, column by column, as the SQLite ledger would hold it. */
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests WHERE request_id = 'req_1'"
                                " AND instance = 'host-a:8080' AND client = 'client1'"
                                " AND started_at = '2025-12-01T00:00:00.001Z'"
                                " AND started_ms = 1764547200001 AND \"user\" IS NULL"
                                " AND route = 'chat' AND model = 'openai/gpt-4o-mini'"
                                " AND served_model IS NULL AND stream = 0 AND status = 200"
                                " AND prompt_tokens = 11 AND total_tokens = 16"
                                " AND cost_pusd = 2000006 AND cost_source = 'upstream'"
                                " AND latency_ms = 12.25 AND ttfb_ms = 3.5"),
                     1);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests WHERE ttfb_ms IS NULL"),
                     (int64_t)(n + 1) / 2);
    free(rows);
    pgconn_free(c);
}
END_TEST

START_TEST(test_same_request_id_is_two_rows)
{
    /* A client may send the same X-Request-Id twice: both requests are billed. */
    struct pgconn *c = pgt_migrated("orp_samerid", NULL);
    struct pgl_row rows[2];
    struct pgl_keys k;
    size_t ins = 0;
    char err[256] = "";

    pgledger_keys_init(&k);
    fill_row(&rows[0], &k, 5);
    fill_row(&rows[1], &k, 5);
    ck_assert_str_ne(rows[0].key, rows[1].key);
    ck_assert_int_eq(pgledger_insert(c, "a", rows, 2, &ins, err, sizeof err), PGC_OK);
    ck_assert_uint_eq(ins, 2);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests WHERE request_id = 'req_5'"), 2);
    pgconn_free(c);
}
END_TEST

START_TEST(test_invalid_utf8_is_stored_cleaned)
{
    struct pgconn *c = pgt_migrated("orp_utf8", NULL);
    struct pgl_row row;
    struct pgl_keys k;
    size_t ins = 0;
    char err[256] = "";

    pgledger_keys_init(&k);
    fill_row(&row, &k, 1);
    snprintf(row.rec.user, sizeof row.rec.user, "bob\xff\xfe-\xc3\xa9");
    ck_assert_msg(pgledger_insert(c, "a", &row, 1, &ins, err, sizeof err) == PGC_OK, "%s", err);
    ck_assert_uint_eq(ins, 1);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests WHERE \"user\" = 'bob?"
                                "?-\xc3\xa9'"),
                     1);
    pgconn_free(c);
}
END_TEST

START_TEST(test_outage_is_down_then_recovers)
{
    struct pgconn *c = pgt_migrated("orp_outage", NULL);
    struct pgl_row rows[3];
    struct pgl_keys k;
    size_t ins = 0;
    char err[256] = "";
    int64_t t0;

    pgledger_keys_init(&k);
    for (int i = 0; i < 3; i++)
        fill_row(&rows[i], &k, i);
    ck_assert_int_eq(pgledger_insert(c, "a", rows, 1, &ins, err, sizeof err), PGC_OK);
    pgt_server("stop");
    t0 = util_mono_ms();
    ck_assert_int_eq(pgledger_insert(c, "a", rows, 3, &ins, err, sizeof err), PGC_DOWN);
    ck_assert_int_lt(util_mono_ms() - t0, 5000);
    ck_assert(!pgconn_connected(c));
    pgt_server("resume");
    /* The next call reconnects; the row written before counts once. */
    ck_assert_msg(pgledger_insert(c, "a", rows, 3, &ins, err, sizeof err) == PGC_OK, "%s", err);
    ck_assert_uint_eq(ins, 2);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests"), 3);
    pgconn_free(c);
}
END_TEST

START_TEST(test_silent_server_times_out)
{
    /* A listener that never answers: the connect must give up on time. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    char url[128], err[256] = "";
    struct pgconn_opts o = {.url = url, .timeout_ms = 300};
    struct pgconn *c;
    int64_t t0;

    ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(s, 4), 0);
    getsockname(s, (struct sockaddr *)&a, &len);
    snprintf(url, sizeof url, "postgresql://u@127.0.0.1:%d/db", ntohs(a.sin_port));
    c = pgconn_new(&o, err, sizeof err);
    t0 = util_mono_ms();
    ck_assert_int_eq(pgconn_exec(c, "SELECT 1", 0, NULL, NULL, err, sizeof err), PGC_DOWN);
    ck_assert_int_lt(util_mono_ms() - t0, 1500);
    ck_assert_int_ge(util_mono_ms() - t0, 290);
    ck_assert_msg(strstr(err, "timed out") != NULL, "%s", err);
    pgconn_free(c);
    close(s);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pgledger");
    TCase *tc = tcase_create("pg");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_url_with_password_is_refused);
    tcase_add_test(tc, test_password_sources);
    tcase_add_test(tc, test_three_instances_migrate_once);
    tcase_add_test(tc, test_insert_twice_rows_once);
    tcase_add_test(tc, test_same_request_id_is_two_rows);
    tcase_add_test(tc, test_invalid_utf8_is_stored_cleaned);
    tcase_add_test(tc, test_outage_is_down_then_recovers);
    tcase_add_test(tc, test_silent_server_times_out);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
