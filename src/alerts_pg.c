/* alerts_pg.c - see alerts_pg.h.
 *
 * Claims use the database's clock (claimed_ms), so instances whose clocks
 * disagree still agree on when a claim is stale.  The claim is one UPDATE
 * over a sub-SELECT ... FOR UPDATE SKIP LOCKED: two instances claiming at
 * once lock disjoint rows, and a row claimed and committed meanwhile is
 * re-checked on its newest version (READ COMMITTED), where it is no longer
 * stale, so no row is handed to two instances. */
#include "alerts_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"
#include "util.h"

#define TIMEOUT_MS 2000
#define REST_MS 5000 /* after a failure, the database is not tried for this long */
#define DB_NOW "(extract(epoch from clock_timestamp()) * 1000)::bigint"
#define COLS "client, budget, period, threshold, spent_pusd, limit_pusd, crossed_ms"

static const char record_sql[] =
    "INSERT INTO alerts_sent (" COLS ", claimed_by, claimed_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, " DB_NOW ")"
    " ON CONFLICT (client, budget, period, threshold) DO NOTHING RETURNING 1";

static const char claim_sql[] =
    "UPDATE alerts_sent a SET claimed_by = $1, claimed_ms = " DB_NOW " FROM"
    " (SELECT client, budget, period, threshold FROM alerts_sent WHERE sent_ms IS NULL"
    "  AND (claimed_by = $1 OR claimed_ms < " DB_NOW " - $2::bigint)"
    "  ORDER BY crossed_ms, client, budget, period, threshold LIMIT $3 FOR UPDATE SKIP LOCKED) s"
    " WHERE a.client = s.client AND a.budget = s.budget AND a.period = s.period"
    " AND a.threshold = s.threshold AND a.sent_ms IS NULL"
    " RETURNING a.client, a.budget, a.period, a.threshold, a.spent_pusd, a.limit_pusd,"
    " a.crossed_ms";

static const char sent_sql[] =
    "UPDATE alerts_sent SET sent_ms = $1 WHERE client = $2 AND budget = $3 AND period = $4"
    " AND threshold = $5";

static struct {
    struct pgconn *c;
    char instance[128];
    int64_t rest_until; /* mono ms */
    int failing;        /* the last statement failed (logged once) */
} P;

int alertspg_usable(const struct orp_config *cfg)
{
    char app[192], err[256];

    if (strcmp(cfg->ledger_backend, "postgresql") != 0)
        return 0;
    if (P.c == NULL) {
        struct pgconn_opts o = {.url = cfg->ledger_postgresql_url,
                                .password_file = cfg->ledger_postgresql_password_file,
                                .app_name = app,
                                .timeout_ms = TIMEOUT_MS};

        util_instance_name(cfg->instance_name, cfg->listen_port, P.instance, sizeof P.instance);
        snprintf(app, sizeof app, "orproxy alerts %s", P.instance);
        if ((P.c = pgconn_new(&o, err, sizeof err)) == NULL) {
            if (!P.failing)
                log_error("alerts: %s", err);
            P.failing = 1;
            P.rest_until = util_mono_ms() + REST_MS;
            return 0;
        }
    }
    return util_mono_ms() >= P.rest_until;
}

/* A statement's outcome: logs the first failure and the recovery. */
static int outcome(int rc, const char *err)
{
    if (rc == PGC_OK) {
        if (P.failing)
            log_info("alerts: PostgreSQL answers again");
        P.failing = 0;
        return 0;
    }
    if (!P.failing)
        log_warn("alerts: PostgreSQL: %s (alerts of shared budgets wait)", err);
    P.failing = 1;
    if (rc == PGC_DOWN)
        P.rest_until = util_mono_ms() + REST_MS;
    return -1;
}

int alertspg_spent(int64_t now_ms, struct lease_spent **out, size_t *n)
{
    char err[256] = "";
    return outcome(lease_spent_read(P.c, now_ms, out, n, err, sizeof err), err);
}

int alertspg_record(const struct alert_row *a)
{
    char th[16], sp[24], li[24], cr[24], err[256] = "";
    const char *p[8] = {a->client, a->budget, a->period, th, sp, li, cr, P.instance};
    PGresult *r = NULL;
    int rc;

    snprintf(th, sizeof th, "%d", a->threshold);
    snprintf(sp, sizeof sp, "%lld", (long long)a->spent_pusd);
    snprintf(li, sizeof li, "%lld", (long long)a->limit_pusd);
    snprintf(cr, sizeof cr, "%lld", (long long)a->crossed_ms);
    rc = pgconn_exec(P.c, record_sql, 8, p, &r, err, sizeof err);
    if (outcome(rc, err) < 0)
        return -1;
    rc = PQntuples(r) == 1;
    PQclear(r);
    return rc;
}

int alertspg_claim(struct alert_row *out, int max)
{
    char to[24], lim[16], err[256] = "";
    const char *p[3] = {P.instance, to, lim};
    PGresult *r = NULL;
    int n;

    if (max <= 0)
        return 0;
    snprintf(to, sizeof to, "%d", ALERTSPG_TAKEOVER_MS);
    snprintf(lim, sizeof lim, "%d", max);
    if (outcome(pgconn_exec(P.c, claim_sql, 3, p, &r, err, sizeof err), err) < 0)
        return 0;
    n = PQntuples(r) < max ? PQntuples(r) : max;
    for (int i = 0; i < n; i++) {
        struct alert_row *a = &out[i];
        memset(a, 0, sizeof *a);
        snprintf(a->client, sizeof a->client, "%s", PQgetvalue(r, i, 0));
        snprintf(a->budget, sizeof a->budget, "%s", PQgetvalue(r, i, 1));
        snprintf(a->period, sizeof a->period, "%s", PQgetvalue(r, i, 2));
        a->threshold = atoi(PQgetvalue(r, i, 3));
        a->spent_pusd = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        a->limit_pusd = strtoll(PQgetvalue(r, i, 5), NULL, 10);
        a->crossed_ms = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        a->shared = 1;
    }
    PQclear(r);
    return n;
}

void alertspg_mark_sent(const struct alert_row *a, int64_t now_ms)
{
    char now[24], th[16], err[256] = "";
    const char *p[5] = {now, a->client, a->budget, a->period, th};

    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(th, sizeof th, "%d", a->threshold);
    /* Delivered but not marked: it will be sent again, which beats losing it. */
    if (outcome(pgconn_exec(P.c, sent_sql, 5, p, NULL, err, sizeof err), err) < 0)
        log_error("alerts: cannot mark an alert sent: %s", err);
}

void alertspg_close(void)
{
    pgconn_free(P.c);
    P.c = NULL;
    P.failing = 0;
    P.rest_until = 0;
}
