/* report_pg.c - the usage report over PostgreSQL.  See report_pg.h.
 *
 * One statement per grouping, fixed at compile time like report.c's; the
 * user's values travel as parameters.  SUM over bigint is numeric in
 * PostgreSQL (it cannot overflow there), so a sum beyond 64 bits is caught
 * when it is read here.  Groups are ordered as in SQLite: cost, most first,
 * then rows without a group last, then the group's bytes (COLLATE "C", as
 * SQLite's BINARY). */
#include "report_pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pgconn.h"
#include "util.h"

#define PG_REPORT_SQL(group_expr)                                                              \
    "SELECT grp, n, e, p, c, t, cost, est, priced FROM (SELECT " group_expr " AS grp,"         \
    " count(*) AS n, sum(CASE WHEN status >= 400 OR outcome <> 'ok' THEN 1 ELSE 0 END) AS e,"  \
    " sum(prompt_tokens) AS p, sum(completion_tokens) AS c, sum(total_tokens) AS t,"           \
    " sum(cost_pusd) AS cost,"                                                                 \
    " sum(CASE WHEN cost_source = 'estimate' THEN cost_pusd ELSE 0 END) AS est,"               \
    " sum(CASE WHEN cost_source = 'pricing' THEN cost_pusd ELSE 0 END) AS priced"              \
    " FROM requests WHERE started_ms >= $1 AND started_ms < $2"                                \
    " AND ($3::text IS NULL OR client = $3) GROUP BY 1) g"                                     \
    " ORDER BY cost DESC, grp IS NULL, grp COLLATE \"C\""

/* Indexed by enum report_by. */
static const char *const pg_sql[] = {
    PG_REPORT_SQL("NULL::text"),
    PG_REPORT_SQL("client"),
    PG_REPORT_SQL("COALESCE(NULLIF(served_model, ''), NULLIF(model, ''))"),
    PG_REPORT_SQL("to_char(to_timestamp(started_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
    PG_REPORT_SQL("NULLIF(\"user\", '')"),
    PG_REPORT_SQL("instance"),
};

/* Column i of row k as int64; -1 (err set) when it does not fit. */
static int column(PGresult *res, int k, int i, int64_t *out, char *err, size_t errlen)
{
    const char *v = PQgetisnull(res, k, i) ? "0" : PQgetvalue(res, k, i);
    char *end;

    errno = 0;
    *out = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0') {
        util_set_err(err, errlen, "cannot query ledger: totals overflow 64 bits");
        return -1;
    }
    return 0;
}

/* A report_fill_fn; src is the pgconn. */
static int pg_fill(void *src, const struct report_query *q, struct report_acc *acc, char *err,
                   size_t errlen)
{
    char since[24], until[24];
    const char *p[3] = {since, until, q->client};
    PGresult *res = NULL;
    int rc, ret = -1;

    if ((unsigned)q->by >= sizeof pg_sql / sizeof pg_sql[0]) {
        util_set_err(err, errlen, "invalid grouping %d", (int)q->by);
        return -1;
    }
    snprintf(since, sizeof since, "%" PRId64, q->since_ms != 0 ? q->since_ms : INT64_MIN);
    snprintf(until, sizeof until, "%" PRId64, q->until_ms != 0 ? q->until_ms : INT64_MAX);
    rc = pgconn_exec(src, pg_sql[q->by], 3, p, &res, err, errlen);
    if (rc != PGC_OK)
        return -1;
    for (int k = 0; k < PQntuples(res); k++) {
        struct report_sums s;
        int64_t *f[] = {&s.requests, &s.errors, &s.prompt, &s.completion,
                        &s.total,    &s.cost,   &s.est,    &s.priced};
        for (int i = 0; i < 8; i++)
            if (column(res, k, i + 1, f[i], err, errlen) < 0)
                goto done;
        if (report_acc_add(acc, PQgetisnull(res, k, 0) ? NULL : PQgetvalue(res, k, 0), &s, q->by,
                           err, errlen) < 0)
            goto done;
    }
    ret = 0;
done:
    PQclear(res);
    return ret;
}

static struct pgconn *connect_for(const char *url, const char *password_file, char *err,
                                  size_t errlen)
{
    struct pgconn_opts o = {.url = url,
                            .password_file = password_file,
                            .app_name = "orproxy usage",
                            .timeout_ms = 5000};
    return pgconn_new(&o, err, errlen);
}

cJSON *report_pg_json(const char *url, const char *password_file, const struct report_query *q,
                      char *err, size_t errlen)
{
    struct pgconn *c = connect_for(url, password_file, err, errlen);
    cJSON *root = c != NULL ? report_json_with(pg_fill, c, q, err, errlen) : NULL;
    pgconn_free(c);
    return root;
}

int report_pg_write(const char *url, const char *password_file, const struct report_query *q,
                    enum report_format fmt, FILE *out, char *err, size_t errlen)
{
    struct pgconn *c = connect_for(url, password_file, err, errlen);
    int rc = c != NULL ? report_write_with(pg_fill, c, q, fmt, out, err, errlen) : -1;
    pgconn_free(c);
    return rc;
}
