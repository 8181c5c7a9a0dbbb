/* lease.c - budget leases in PostgreSQL (see lease.h for the invariant).
 *
 * Each operation is a single statement whose data-modifying CTEs change the
 * budget row and the lease row together, so budgets.leased_pusd is always
 * the sum of its lease rows.  Locks: settle, return and expire lock the
 * lease row, then the budget row; take updates the budget row first (its
 * WHERE is the budget check) after reading its own lease row FOR UPDATE so
 * the order is the same.  Should two statements still deadlock (40P01),
 * PostgreSQL aborts one, which has then changed nothing, and it is retried.
 *
 * The amount released by a settle or return is LEAST(held, amount) of the
 * newest lease row version (FOR UPDATE): when expire has just deleted the
 * row, nothing is released a second time. */
#include "lease.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define KEY "scope = $1 AND period = $2 AND period_key = $3"

static const char take_sql[] =
    "WITH o AS (SELECT leased_pusd FROM budget_leases WHERE " KEY " AND instance = $4"
    "  FOR UPDATE),"
    " b AS (UPDATE budgets SET leased_pusd = leased_pusd + $5::bigint WHERE " KEY
    "  AND spent_pusd + leased_pusd + $5::bigint <= limit_pusd AND (SELECT count(*) FROM o) >= 0"
    "  RETURNING limit_pusd, spent_pusd, leased_pusd),"
    " l AS (INSERT INTO budget_leases (scope, period, period_key, instance, leased_pusd, expires_at)"
    "  SELECT $1, $2, $3, $4, $5::bigint, now() + $6::bigint * interval '1 millisecond' FROM b"
    "  ON CONFLICT (scope, period, period_key, instance) DO UPDATE SET"
    "  leased_pusd = budget_leases.leased_pusd + excluded.leased_pusd,"
    "  expires_at = excluded.expires_at RETURNING leased_pusd)"
    " SELECT b.limit_pusd, b.spent_pusd, b.leased_pusd, l.leased_pusd FROM b, l";

/* $5: the most to release from the hold; $6: spend to record. */
static const char settle_sql[] =
    "WITH o AS (SELECT LEAST(leased_pusd, $5::bigint) AS rel FROM budget_leases WHERE " KEY
    "  AND instance = $4 FOR UPDATE),"
    " l AS (UPDATE budget_leases SET leased_pusd = leased_pusd - (SELECT rel FROM o)"
    "  WHERE " KEY " AND instance = $4 AND EXISTS (SELECT 1 FROM o) RETURNING leased_pusd),"
    " b AS (UPDATE budgets SET spent_pusd = spent_pusd + $6::bigint,"
    "  leased_pusd = leased_pusd - COALESCE((SELECT rel FROM o), 0) WHERE " KEY
    "  RETURNING limit_pusd, spent_pusd, leased_pusd)"
    " SELECT b.limit_pusd, b.spent_pusd, b.leased_pusd, COALESCE((SELECT leased_pusd FROM l), 0)"
    " FROM b";

static const char renew_sql[] =
    "UPDATE budget_leases SET expires_at = now() + $5::bigint * interval '1 millisecond'"
    " WHERE " KEY " AND instance = $4 RETURNING leased_pusd";

static const char expire_sql[] =
    "WITH d AS (DELETE FROM budget_leases WHERE expires_at < now()"
    "  RETURNING scope, period, period_key, leased_pusd),"
    " s AS (SELECT scope, period, period_key, sum(leased_pusd) AS amt, count(*) AS n FROM d"
    "  GROUP BY 1, 2, 3),"
    " b AS (UPDATE budgets SET leased_pusd = budgets.leased_pusd - s.amt FROM s"
    "  WHERE budgets.scope = s.scope AND budgets.period = s.period"
    "  AND budgets.period_key = s.period_key RETURNING s.amt, s.n)"
    " SELECT COALESCE(sum(amt), 0), COALESCE(sum(n), 0) FROM b";

static const char ensure_sql[] =
    "INSERT INTO budgets (scope, period, period_key, limit_pusd) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (scope, period, period_key) DO UPDATE SET limit_pusd = excluded.limit_pusd"
    " WHERE budgets.limit_pusd <> excluded.limit_pusd";

/* The shared rate limits' rows of minutes before $1 that nothing holds. */
static const char prune_sql[] =
    "DELETE FROM budgets WHERE period IN ('rpm', 'tpm') AND period_key < $1 AND leased_pusd = 0";

void lease_id_set(struct lease_id *id, const char *scope, enum lease_period p, int64_t now_ms)
{
    static const char *const fmt[] = {[LEASE_DAY] = "%Y-%m-%d", [LEASE_MONTH] = "%Y-%m",
                                      [LEASE_RPM] = "%Y-%m-%dT%H:%M", [LEASE_TPM] = "%Y-%m-%dT%H:%M",
                                      [LEASE_CONCURRENT] = "-"};
    time_t s = (time_t)(now_ms / 1000);
    struct tm tm;

    gmtime_r(&s, &tm);
    snprintf(id->scope, sizeof id->scope, "%s", scope ? scope : "");
    id->period = p;
    strftime(id->period_key, sizeof id->period_key, fmt[p], &tm);
}

static const char *period_name(enum lease_period p)
{
    static const char *const name[] = {[LEASE_DAY] = "day", [LEASE_MONTH] = "month",
                                       [LEASE_RPM] = "rpm", [LEASE_TPM] = "tpm",
                                       [LEASE_CONCURRENT] = "concurrent"};
    return name[p];
}

/* Runs a statement, again after a deadlock or a serialization failure. */
static int run(struct pgconn *c, const char *sql, int n, const char *const *p, PGresult **res,
               char *err, size_t errlen)
{
    int rc = PGC_SQL;
    for (int attempt = 0; attempt < 5; attempt++) {
        rc = pgconn_exec(c, sql, n, p, res, err, errlen);
        if (rc != PGC_SQL ||
            (strcmp(pgconn_sqlstate(c), "40P01") != 0 && strcmp(pgconn_sqlstate(c), "40001") != 0))
            break;
    }
    return rc;
}

/* Reads the 4 columns limit, spent, leased, held of row 0. */
static void read_state(PGresult *r, struct lease_state *st)
{
    if (st == NULL)
        return;
    st->limit_pusd = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    st->spent_pusd = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    st->leased_pusd = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    st->held_pusd = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
}

int lease_budget_ensure(struct pgconn *c, const struct lease_id *id, int64_t limit_pusd, char *err,
                        size_t errlen)
{
    char lim[24];
    const char *p[4] = {id->scope, period_name(id->period), id->period_key, lim};
    snprintf(lim, sizeof lim, "%" PRId64, limit_pusd);
    return run(c, ensure_sql, 4, p, NULL, err, errlen);
}

int lease_take(struct pgconn *c, const char *instance, const struct lease_id *id, int64_t want,
               int timeout_ms, struct lease_state *st, char *err, size_t errlen)
{
    char w[24], t[24];
    const char *p[6] = {id->scope, period_name(id->period), id->period_key, instance, w, t};
    PGresult *r = NULL;
    int rc;

    if (want < 0 || timeout_ms <= 0) {
        util_set_err(err, errlen, "lease_take: want %" PRId64 ", timeout %d ms", want, timeout_ms);
        return PGC_SQL;
    }
    snprintf(w, sizeof w, "%" PRId64, want);
    snprintf(t, sizeof t, "%d", timeout_ms);
    rc = run(c, take_sql, 6, p, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    rc = PQntuples(r) == 1;
    if (rc)
        read_state(r, st);
    PQclear(r);
    return rc;
}

static int settle(struct pgconn *c, const char *instance, const struct lease_id *id,
                  int64_t release, int64_t spent, struct lease_state *st, char *err, size_t errlen)
{
    char rel[24], sp[24];
    const char *p[6] = {id->scope, period_name(id->period), id->period_key, instance, rel, sp};
    PGresult *r = NULL;
    int rc;

    if (release < 0 || spent < 0) {
        util_set_err(err, errlen, "lease: negative amount");
        return PGC_SQL;
    }
    snprintf(rel, sizeof rel, "%" PRId64, release);
    snprintf(sp, sizeof sp, "%" PRId64, spent);
    rc = run(c, settle_sql, 6, p, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    if (PQntuples(r) != 1) {
        util_set_err(err, errlen, "no budget %s/%s/%s", id->scope, period_name(id->period),
                     id->period_key);
        rc = PGC_SQL;
    } else {
        read_state(r, st);
    }
    PQclear(r);
    return rc;
}

int lease_settle(struct pgconn *c, const char *instance, const struct lease_id *id, int64_t spent,
                 struct lease_state *st, char *err, size_t errlen)
{
    return settle(c, instance, id, spent, spent, st, err, errlen);
}

int lease_return(struct pgconn *c, const char *instance, const struct lease_id *id, int64_t unused,
                 struct lease_state *st, char *err, size_t errlen)
{
    return settle(c, instance, id, unused, 0, st, err, errlen);
}

int lease_expire(struct pgconn *c, int64_t *returned_pusd, int *leases, char *err, size_t errlen)
{
    PGresult *r = NULL;
    int rc = run(c, expire_sql, 0, NULL, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    if (returned_pusd != NULL)
        *returned_pusd = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (leases != NULL)
        *leases = atoi(PQgetvalue(r, 0, 1));
    PQclear(r);
    return PGC_OK;
}

int lease_renew(struct pgconn *c, const char *instance, const struct lease_id *id, int timeout_ms,
                struct lease_state *st, char *err, size_t errlen)
{
    char t[24];
    const char *p[5] = {id->scope, period_name(id->period), id->period_key, instance, t};
    PGresult *r = NULL;
    int rc;

    snprintf(t, sizeof t, "%d", timeout_ms);
    rc = run(c, renew_sql, 5, p, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    rc = PQntuples(r) == 1;
    if (rc && st != NULL) {
        memset(st, 0, sizeof *st);
        st->held_pusd = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    }
    PQclear(r);
    return rc;
}

int lease_prune(struct pgconn *c, int64_t before_ms, int *deleted, char *err, size_t errlen)
{
    struct lease_id id;
    const char *p[1] = {id.period_key};
    PGresult *r = NULL;
    int rc;

    lease_id_set(&id, "", LEASE_RPM, before_ms);
    rc = run(c, prune_sql, 1, p, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    if (deleted != NULL)
        *deleted = atoi(PQcmdTuples(r));
    PQclear(r);
    return PGC_OK;
}

static const char spent_sql[] =
    "SELECT scope, period, spent_pusd FROM budgets WHERE (period = 'day' AND period_key = $1)"
    " OR (period = 'month' AND period_key = $2)";

int lease_spent_read(struct pgconn *c, int64_t now_ms, struct lease_spent **out, size_t *n,
                     char *err, size_t errlen)
{
    struct lease_id day, month;
    const char *p[2] = {day.period_key, month.period_key};
    PGresult *r = NULL;
    int rc, rows;

    *out = NULL;
    *n = 0;
    lease_id_set(&day, "", LEASE_DAY, now_ms);
    lease_id_set(&month, "", LEASE_MONTH, now_ms);
    rc = run(c, spent_sql, 2, p, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    rows = PQntuples(r);
    if (rows > 0 && (*out = calloc((size_t)rows, sizeof **out)) == NULL) {
        PQclear(r);
        util_set_err(err, errlen, "out of memory");
        return PGC_DOWN;
    }
    for (int i = 0; i < rows; i++) {
        struct lease_spent *s = &(*out)[i];
        snprintf(s->scope, sizeof s->scope, "%s", PQgetvalue(r, i, 0));
        s->period = strcmp(PQgetvalue(r, i, 1), "day") == 0 ? LEASE_DAY : LEASE_MONTH;
        s->spent_pusd = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    *n = (size_t)rows;
    PQclear(r);
    return PGC_OK;
}
