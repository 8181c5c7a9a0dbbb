/* test_lease.c - budget leases against a real PostgreSQL: concurrent takes
 * never overspend, a killed instance's lease comes back after its timeout,
 * a UTC rollover loses no spend, and the ledger spool replays an outage's
 * rows exactly once. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "lease.h"
#include "pgledger.h"
#include "pgtest.h"
#include "spool.h"
#include "util.h"

#define T0 1798761599900LL /* 2026-12-31T23:59:59.900Z */

static const char *url;

/* budgets.leased_pusd is the sum of its lease rows, for every budget. */
static void assert_leases_add_up(struct pgconn *c)
{
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM budgets b WHERE leased_pusd <>"
                                " (SELECT COALESCE(sum(leased_pusd), 0) FROM budget_leases l"
                                "  WHERE (l.scope, l.period, l.period_key)"
                                "  = (b.scope, b.period, b.period_key))"),
                     0);
}

START_TEST(test_period_keys_are_utc)
{
    struct lease_id id;
    lease_id_set(&id, "alice", LEASE_DAY, T0);
    ck_assert_str_eq(id.period_key, "2026-12-31");
    lease_id_set(&id, "alice", LEASE_MONTH, T0);
    ck_assert_str_eq(id.period_key, "2026-12");
    lease_id_set(&id, NULL, LEASE_DAY, T0 + 100);
    ck_assert_str_eq(id.period_key, "2027-01-01");
    ck_assert_str_eq(id.scope, "");
}
END_TEST

/* lease_renew moves the expiry without taking more; once the hold has
 * expired and gone back to the pool there is nothing to renew. */
START_TEST(test_renew_extends_the_hold_only)
{
    struct pgconn *c = pgt_migrated("orp_lease_renew", &url);
    struct lease_id id;
    struct lease_state st;
    char err[256] = "";
    int64_t back = 0;
    int n = 0;

    lease_id_set(&id, "", LEASE_DAY, T0);
    ck_assert_int_eq(lease_budget_ensure(c, &id, 100, err, sizeof err), PGC_OK);
    ck_assert_int_eq(lease_renew(c, "a", &id, 60000, &st, err, sizeof err), 0); /* no hold yet */
    ck_assert_int_eq(lease_take(c, "a", &id, 30, 500, &st, err, sizeof err), 1);
    ck_assert_int_eq(lease_renew(c, "a", &id, 60000, &st, err, sizeof err), 1);
    ck_assert_int_eq(st.held_pusd, 30);
    usleep(700000); /* past the take's 500 ms, not the renewal's 60 s */
    ck_assert_int_eq(lease_expire(c, &back, &n, err, sizeof err), PGC_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(pgt_int(c, "SELECT leased_pusd FROM budgets"), 30);
    ck_assert_int_eq(lease_renew(c, "a", &id, 100, &st, err, sizeof err), 1);
    usleep(300000);
    ck_assert_int_eq(lease_expire(c, &back, &n, err, sizeof err), PGC_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(back, 30);
    ck_assert_int_eq(lease_renew(c, "a", &id, 60000, &st, err, sizeof err), 0);
    ck_assert_int_eq(pgt_int(c, "SELECT leased_pusd FROM budgets"), 0);
    assert_leases_add_up(c);
    pgconn_free(c);
}
END_TEST

START_TEST(test_take_refuses_beyond_the_limit)
{
    struct pgconn *c = pgt_migrated("orp_lease_basic", &url);
    struct lease_id id;
    struct lease_state st;
    char err[256] = "";

    lease_id_set(&id, "alice", LEASE_DAY, T0);
    /* No budget row: refused, not granted. */
    ck_assert_int_eq(lease_take(c, "a", &id, 10, 60000, &st, err, sizeof err), 0);
    ck_assert_int_eq(lease_budget_ensure(c, &id, 100, err, sizeof err), PGC_OK);
    ck_assert_int_eq(lease_take(c, "a", &id, 60, 60000, &st, err, sizeof err), 1);
    ck_assert_int_eq(st.leased_pusd, 60);
    ck_assert_int_eq(st.held_pusd, 60);
    ck_assert_int_eq(lease_take(c, "b", &id, 41, 60000, &st, err, sizeof err), 0);
    ck_assert_int_eq(lease_take(c, "b", &id, 40, 60000, &st, err, sizeof err), 1);
    ck_assert_int_eq(st.held_pusd, 40);
    ck_assert_int_eq(st.leased_pusd, 100);
    /* a spends 25 of its 60 and returns 35; b overspends: 55 on a 40 hold. */
    ck_assert_int_eq(lease_settle(c, "a", &id, 25, &st, err, sizeof err), PGC_OK);
    ck_assert_int_eq(st.held_pusd, 35);
    ck_assert_int_eq(lease_return(c, "a", &id, 35, &st, err, sizeof err), PGC_OK);
    ck_assert_int_eq(st.held_pusd, 0);
    ck_assert_int_eq(st.spent_pusd, 25);
    ck_assert_int_eq(lease_settle(c, "b", &id, 55, &st, err, sizeof err), PGC_OK);
    ck_assert_int_eq(st.spent_pusd, 80);
    ck_assert_int_eq(st.leased_pusd, 0);
    /* Returning more than is held releases only what is held. */
    ck_assert_int_eq(lease_return(c, "b", &id, 1000, &st, err, sizeof err), PGC_OK);
    ck_assert_int_eq(st.leased_pusd, 0);
    ck_assert_int_eq(lease_take(c, "a", &id, 21, 60000, &st, err, sizeof err), 0);
    ck_assert_int_eq(lease_take(c, "a", &id, 20, 60000, &st, err, sizeof err), 1);
    /* A new limit applies to the row. */
    ck_assert_int_eq(lease_budget_ensure(c, &id, 50, err, sizeof err), PGC_OK);
    ck_assert_int_eq(lease_take(c, "a", &id, 1, 60000, &st, err, sizeof err), 0);
    assert_leases_add_up(c);
    pgconn_free(c);
}
END_TEST

struct taker {
    const char *instance;
    const struct lease_id *id;
    int64_t settled, granted, refused, worst_seen;
    char err[256];
    int rc;
};

/* Takes leases until refused 20 times; spends each fully or in part. */
static void *take_loop(void *arg)
{
    struct taker *t = arg;
    struct pgconn *c = pgt_conn(url);
    struct lease_state st;
    unsigned seed = (unsigned)(uintptr_t)t;

    while (t->refused < 20 && t->granted < 5000) {
        int64_t want = 1 + rand_r(&seed) % 40, spend;
        int rc = lease_take(c, t->instance, t->id, want, 60000, &st, t->err, sizeof t->err);
        if (rc < 0) {
            t->rc = rc;
            break;
        }
        if (rc == 0) {
            t->refused++;
            continue;
        }
        t->granted++;
        if (st.spent_pusd + st.leased_pusd > t->worst_seen)
            t->worst_seen = st.spent_pusd + st.leased_pusd;
        spend = want - rand_r(&seed) % 3;
        if (spend < 0)
            spend = 0;
        rc = lease_settle(c, t->instance, t->id, spend, &st, t->err, sizeof t->err);
        if (rc == PGC_OK)
            rc = lease_return(c, t->instance, t->id, want - spend, &st, t->err, sizeof t->err);
        if (rc != PGC_OK) {
            t->rc = rc;
            break;
        }
        t->settled += spend;
    }
    pgconn_free(c);
    return NULL;
}

START_TEST(test_concurrent_instances_never_overspend)
{
    struct pgconn *c = pgt_migrated("orp_lease_race", &url);
    struct lease_id id;
    struct taker t[3] = {{.instance = "a"}, {.instance = "b"}, {.instance = "c"}};
    pthread_t th[3];
    int64_t settled = 0, granted = 0;
    char err[256] = "";

    lease_id_set(&id, "", LEASE_MONTH, T0);
    ck_assert_int_eq(lease_budget_ensure(c, &id, 5000, err, sizeof err), PGC_OK);
    for (int i = 0; i < 3; i++) {
        t[i].id = &id;
        pthread_create(&th[i], NULL, take_loop, &t[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(t[i].rc == 0, "instance %s: %s", t[i].instance, t[i].err);
        ck_assert_int_le(t[i].worst_seen, 5000);
        settled += t[i].settled;
        granted += t[i].granted;
    }
    ck_assert_int_gt(granted, 100); /* the three really competed */
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM budgets"), settled);
    ck_assert_int_le(settled, 5000);
    ck_assert_int_ge(settled, 5000 - 40); /* refused only near the end */
    ck_assert_int_eq(pgt_int(c, "SELECT leased_pusd FROM budgets"), 0);
    assert_leases_add_up(c);
    pgconn_free(c);
}
END_TEST

START_TEST(test_killed_instance_lease_returns_after_timeout)
{
    struct pgconn *c = pgt_migrated("orp_lease_kill", &url);
    struct lease_id id;
    struct lease_state st;
    char err[256] = "";
    int64_t back = -1;
    int n = -1, fds[2], status;
    pid_t pid;
    char ok;

    lease_id_set(&id, "bob", LEASE_DAY, T0);
    ck_assert_int_eq(lease_budget_ensure(c, &id, 1000, err, sizeof err), PGC_OK);
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    if (pid == 0) { /* the instance that dies holding 700, having spent 100 */
        struct pgconn *k = pgt_conn(url);
        char e[256];
        int r = lease_take(k, "doomed", &id, 800, 1500, NULL, e, sizeof e) == 1 &&
                lease_settle(k, "doomed", &id, 100, NULL, e, sizeof e) == PGC_OK;
        ck_assert_int_eq(write(fds[1], r ? "y" : "n", 1), 1);
        pause();
        _exit(0);
    }
    ck_assert_int_eq(read(fds[0], &ok, 1), 1);
    ck_assert_int_eq(ok, 'y');
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    /* Held until the timeout: another instance gets only what is left. */
    ck_assert_int_eq(lease_take(c, "alive", &id, 201, 60000, &st, err, sizeof err), 0);
    ck_assert_int_eq(lease_expire(c, &back, &n, err, sizeof err), PGC_OK);
    ck_assert_int_eq(back, 0);
    ck_assert_int_eq(n, 0);
    usleep(1600 * 1000);
    ck_assert_int_eq(lease_expire(c, &back, &n, err, sizeof err), PGC_OK);
    ck_assert_int_eq(back, 700);
    ck_assert_int_eq(n, 1);
    /* The spend stays; the rest is free again. */
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM budgets"), 100);
    ck_assert_int_eq(lease_take(c, "alive", &id, 901, 60000, &st, err, sizeof err), 0);
    ck_assert_int_eq(lease_take(c, "alive", &id, 900, 60000, &st, err, sizeof err), 1);
    /* A late settle of the expired hold still records the spend. */
    ck_assert_int_eq(lease_settle(c, "doomed", &id, 5, &st, err, sizeof err), PGC_OK);
    ck_assert_int_eq(st.spent_pusd, 105);
    ck_assert_int_eq(st.leased_pusd, 900);
    assert_leases_add_up(c);
    pgconn_free(c);
}
END_TEST

/* Takes and holds leases until refused 20 times in a row. */
static void *hold_loop(void *arg)
{
    struct taker *t = arg;
    struct pgconn *c = pgt_conn(url);
    struct lease_state st;
    unsigned seed = (unsigned)(uintptr_t)t;

    for (int refused = 0; refused < 20 && t->granted < 5000;) {
        int64_t want = 1 + rand_r(&seed) % 40;
        int rc = lease_take(c, t->instance, t->id, want, 60000, &st, t->err, sizeof t->err);
        if (rc < 0) {
            t->rc = rc;
            break;
        }
        refused = rc == 0 ? refused + 1 : 0;
        if (rc == 1) {
            t->granted++;
            t->settled += want; /* here: held */
        }
    }
    pgconn_free(c);
    return NULL;
}

START_TEST(test_racing_holders_never_exceed_the_limit)
{
    /* 8 connections take and keep leases, so every take after the first
     * few races others near the limit. */
    struct pgconn *c = pgt_migrated("orp_lease_hold", &url);
    char err[256] = "";

    for (int round = 0; round < 5; round++) {
        struct taker t[8];
        pthread_t th[8];
        struct lease_id id;
        int64_t held = 0;

        lease_id_set(&id, "", LEASE_DAY, T0 + round * 86400000LL);
        ck_assert_int_eq(lease_budget_ensure(c, &id, 2000, err, sizeof err), PGC_OK);
        for (int i = 0; i < 8; i++) {
            memset(&t[i], 0, sizeof t[i]);
            t[i].instance = (const char *[]){"a", "b", "c", "d", "e", "f", "g", "h"}[i];
            t[i].id = &id;
            pthread_create(&th[i], NULL, hold_loop, &t[i]);
        }
        for (int i = 0; i < 8; i++) {
            pthread_join(th[i], NULL);
            ck_assert_msg(t[i].rc == 0, "%s", t[i].err);
            held += t[i].settled;
        }
        ck_assert_int_le(held, 2000);
        ck_assert_int_ge(held, 2000 - 40);
    }
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM budgets"), 5);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM budgets WHERE leased_pusd > limit_pusd"), 0);
    assert_leases_add_up(c);
    pgconn_free(c);
}
END_TEST

struct roller {
    const struct lease_id *ids; /* [0] old day, [1] new day */
    int64_t settled[2];
    char err[256];
    int rc;
};

/* 200 requests: the first half in the old day, the second in the new one;
 * every fifth request of the old day settles after the rollover. */
static void *roll_loop(void *arg)
{
    struct roller *r = arg;
    struct pgconn *c = pgt_conn(url);
    char inst[32];
    int late = 0;

    snprintf(inst, sizeof inst, "i%p", arg);
    for (int i = 0; i < 200 && r->rc == 0; i++) {
        int which = i >= 100;
        if (lease_take(c, inst, &r->ids[which], 7, 60000, NULL, r->err, sizeof r->err) != 1) {
            r->rc = -1;
            break;
        }
        if (!which && i % 5 == 0) {
            late++;
            continue;
        }
        r->rc = lease_settle(c, inst, &r->ids[which], 7, NULL, r->err, sizeof r->err);
        r->settled[which] += 7;
        if (which && late > 0 && r->rc == 0) {
            r->rc = lease_settle(c, inst, &r->ids[0], 7, NULL, r->err, sizeof r->err);
            r->settled[0] += 7;
            late--;
        }
    }
    pgconn_free(c);
    return NULL;
}

START_TEST(test_rollover_loses_no_spend)
{
    struct pgconn *c = pgt_migrated("orp_lease_roll", &url);
    struct lease_id ids[2];
    struct roller r[3];
    pthread_t th[3];
    int64_t want[2] = {0, 0};
    char err[256] = "";

    lease_id_set(&ids[0], "carol", LEASE_DAY, T0);
    lease_id_set(&ids[1], "carol", LEASE_DAY, T0 + 200);
    ck_assert_str_ne(ids[0].period_key, ids[1].period_key);
    ck_assert_int_eq(lease_budget_ensure(c, &ids[0], 1000000, err, sizeof err), PGC_OK);
    /* Yesterday's row has spend before the new row exists. */
    ck_assert_int_eq(lease_take(c, "x", &ids[0], 50, 60000, NULL, err, sizeof err), 1);
    ck_assert_int_eq(lease_settle(c, "x", &ids[0], 50, NULL, err, sizeof err), PGC_OK);
    want[0] = 50;
    ck_assert_int_eq(lease_budget_ensure(c, &ids[1], 1000000, err, sizeof err), PGC_OK);
    for (int i = 0; i < 3; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].ids = ids;
        pthread_create(&th[i], NULL, roll_loop, &r[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(r[i].rc == 0, "%s", r[i].err);
        want[0] += r[i].settled[0];
        want[1] += r[i].settled[1];
    }
    ck_assert_int_eq(want[0], 50 + 3 * 100 * 7);
    ck_assert_int_eq(want[1], 3 * 100 * 7);
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM budgets WHERE period_key = '2026-12-31'"),
                     want[0]);
    ck_assert_int_eq(pgt_int(c, "SELECT spent_pusd FROM budgets WHERE period_key = '2027-01-01'"),
                     want[1]);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(leased_pusd) FROM budgets"), 0);
    assert_leases_add_up(c);
    pgconn_free(c);
}
END_TEST

/* The spool's sink: pgledger_insert. */
struct sink_ctx {
    struct pgconn *c;
    size_t inserted;
};

static int to_pg(const struct pgl_row *rows, size_t n, void *arg)
{
    struct sink_ctx *s = arg;
    size_t ins = 0;
    char err[256];
    int rc = pgledger_insert(s->c, "spooler", rows, n, &ins, err, sizeof err);
    s->inserted += ins;
    return rc;
}

START_TEST(test_outage_rows_spool_and_replay_once)
{
    struct pgconn *c = pgt_migrated("orp_spool", &url);
    char dir[] = "/tmp/orp-pgspool.XXXXXX", path[256], err[256] = "";
    struct pgl_row rows[40];
    struct pgl_keys k;
    struct sink_ctx s = {.c = c};
    struct spool *sp;
    int rc;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/pg-spool", dir);
    sp = spool_open(path, NULL, err, sizeof err);
    ck_assert_ptr_nonnull(sp);
    pgledger_keys_init(&k);
    for (int i = 0; i < 40; i++) {
        memset(&rows[i], 0, sizeof rows[i]);
        pgledger_key_next(&k, rows[i].key);
        snprintf(rows[i].rec.request_id, sizeof rows[i].rec.request_id, "r%d", i);
        snprintf(rows[i].rec.route, sizeof rows[i].rec.route, "chat");
        rows[i].rec.started_ms = T0 + i;
        rows[i].rec.status = 200;
        rows[i].rec.cost_pusd = 1000 + i;
        rows[i].rec.ttfb_ms = -1;
    }
    /* The first 10 go through; then the server goes away. */
    ck_assert_int_eq(to_pg(rows, 10, &s), PGC_OK);
    pgt_server("stop");
    for (int b = 1; b < 4; b++) {
        rc = pgledger_insert(c, "spooler", rows + 10 * b, 10, NULL, err, sizeof err);
        ck_assert_int_eq(rc, PGC_DOWN);
        ck_assert_int_eq(spool_append(sp, rows + 10 * b, 10, err, sizeof err), 0);
    }
    ck_assert_uint_gt(spool_bytes(sp), 0);
    /* Replay while still down: fails, keeps everything. */
    ck_assert_int_eq(spool_replay(sp, to_pg, &s, 8, err, sizeof err), 1);
    ck_assert_uint_gt(spool_bytes(sp), 0);
    pgt_server("resume");
    ck_assert_int_eq(spool_replay(sp, to_pg, &s, 8, err, sizeof err), 0);
    ck_assert_uint_eq(spool_bytes(sp), 0);
    ck_assert_uint_eq(s.inserted, 40);
    /* A crash after the commit, before the truncation: the same rows again. */
    ck_assert_int_eq(spool_append(sp, rows, 40, err, sizeof err), 0);
    ck_assert_int_eq(spool_replay(sp, to_pg, &s, 8, err, sizeof err), 0);
    ck_assert_uint_eq(s.inserted, 40);
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests"), 40);
    ck_assert_int_eq(pgt_int(c, "SELECT sum(cost_pusd) FROM requests"), 40 * 1000 + 39 * 40 / 2);
    /* In order: ids follow the row order. */
    ck_assert_int_eq(pgt_int(c, "SELECT count(*) FROM requests a JOIN requests b"
                                " ON a.started_ms < b.started_ms WHERE a.id > b.id"),
                     0);
    spool_close(sp);
    unlink(path);
    rmdir(dir);
    pgconn_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("pg");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_period_keys_are_utc);
    tcase_add_test(tc, test_take_refuses_beyond_the_limit);
    tcase_add_test(tc, test_renew_extends_the_hold_only);
    tcase_add_test(tc, test_concurrent_instances_never_overspend);
    tcase_add_test(tc, test_racing_holders_never_exceed_the_limit);
    tcase_add_test(tc, test_killed_instance_lease_returns_after_timeout);
    tcase_add_test(tc, test_rollover_loses_no_spend);
    tcase_add_test(tc, test_outage_rows_spool_and_replay_once);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
