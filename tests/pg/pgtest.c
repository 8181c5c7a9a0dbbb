/* pgtest.c - see pgtest.h. */
#include "pgtest.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "pgledger.h"

const char *pgt_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, "%s is not set: run the PostgreSQL tests with make test-pg\n", name);
        exit(2);
    }
    return v;
}

static struct pgconn *conn_with(const char *url, const char *pwfile)
{
    struct pgconn_opts o = {
        .url = url, .password_file = pwfile, .app_name = "orp-test", .timeout_ms = 5000};
    char err[256] = "";
    struct pgconn *c = pgconn_new(&o, err, sizeof err);
    ck_assert_msg(c != NULL, "pgconn_new: %s", err);
    return c;
}

struct pgconn *pgt_conn(const char *url)
{
    return conn_with(url, pgt_env("ORP_PG_PASSWORD_FILE"));
}

const char *pgt_fresh_db(const char *db)
{
    static char url[512];
    char sql[256];
    struct pgconn *a = conn_with(pgt_env("ORP_PG_ADMIN_URL"), pgt_env("ORP_PG_ADMIN_PASSWORD_FILE"));

    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
    pgt_exec(a, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s OWNER orp_test", db);
    pgt_exec(a, sql);
    pgconn_free(a);
    snprintf(url, sizeof url, "postgresql://orp_test@127.0.0.1:%s/%s", pgt_env("ORP_PG_PORT"), db);
    return url;
}

void pgt_exec(struct pgconn *c, const char *sql)
{
    char err[512] = "";
    int rc = pgconn_exec(c, sql, 0, NULL, NULL, err, sizeof err);
    ck_assert_msg(rc == PGC_OK, "%s: %s", sql, err);
}

int64_t pgt_int(struct pgconn *c, const char *sql)
{
    char err[512] = "";
    PGresult *r = NULL;
    int64_t v;
    int rc = pgconn_exec(c, sql, 0, NULL, &r, err, sizeof err);
    ck_assert_msg(rc == PGC_OK, "%s: %s", sql, err);
    ck_assert_msg(PQntuples(r) > 0 && !PQgetisnull(r, 0, 0), "%s: no value", sql);
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

void pgt_server(const char *what)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s'", pgt_env("ORP_PG_CTL"), what, pgt_env("ORP_PG_DIR"));
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

struct pgconn *pgt_migrated(const char *db, const char **url)
{
    const char *u = pgt_fresh_db(db);
    struct pgconn *c = pgt_conn(u);
    char err[256] = "";
    int v = 0, applied = 0;

    ck_assert_msg(pgledger_migrate(c, "t", &v, &applied, err, sizeof err) == PGC_OK, "%s", err);
    ck_assert_int_eq(v, PGLEDGER_SCHEMA_VERSION);
    ck_assert_int_eq(applied, PGLEDGER_SCHEMA_VERSION);
    if (url != NULL)
        *url = u;
    return c;
}
