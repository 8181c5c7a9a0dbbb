/* report.h - usage reports over the ledger: `orproxy usage` and
 * GET /v1/usage.
 *
 * One aggregate query per report, on a read-only connection: the ledger is
 * in WAL mode, so a report reads a consistent snapshot while the daemon's
 * writer keeps committing, and never blocks it.  All sums are SQL SUM()
 * over the integer columns (tokens, cost_pusd in picodollars), so totals
 * are exact; money becomes a decimal string only when printed.  The query
 * fills plain rows once and every format (table, JSON, CSV) is rendered
 * from those same rows, so the formats cannot disagree.
 *
 * A row counts as an error when status >= 400 or its outcome is set and is
 * not 'ok'.  A cost is "estimated" when cost_source = 'estimate' (a local
 * guess from counted characters); 'pricing' costs are exact arithmetic on
 * OpenRouter's price table, so they count as not estimated but are also
 * reported on their own as priced_cost_*.  Rows are ordered by cost, most
 * expensive first, then by group name (rows without a group value last).
 */
#ifndef ORP_REPORT_H
#define ORP_REPORT_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum report_by {
    REPORT_BY_NONE,  /* totals only */
    REPORT_BY_KEY,   /* column client */
    REPORT_BY_MODEL, /* COALESCE(served_model, model) */
    REPORT_BY_DAY,   /* UTC date of started_ms, YYYY-MM-DD */
    REPORT_BY_USER,  /* column user */
    REPORT_BY_INSTANCE /* column instance: the PostgreSQL ledger only (report_pg.h) */
};

enum report_format { REPORT_TABLE, REPORT_JSON, REPORT_CSV };

/* Owned by the caller; client is borrowed for the duration of the call. */
struct report_query {
    int64_t since_ms, until_ms; /* unix ms, rows with since <= started_ms < until; 0 = unbounded */
    enum report_by by;
    const char *client; /* non-NULL: only this client's rows */
};

/* Parses a point in time: "90s", "30m", "24h", "7d", "2w" (that long before
 * now_ms), "2026-11-01" (UTC midnight), "2026-11-01T12:30:00Z" or
 * "2026-11-01 12:30:00" (UTC; the T or space, the seconds, a fraction of up
 * to 3 digits and the Z are as shown or optional respectively).  Returns 0,
 * or -1 when s is not one of these or the time falls before 1970. */
int report_parse_time(const char *s, int64_t now_ms, int64_t *out_ms);
/* "key", "model", "day", "user", "instance" or "none".  Returns 0 or -1. */
int report_parse_by(const char *s, enum report_by *out);
/* "table", "json" or "csv".  Returns 0 or -1. */
int report_parse_format(const char *s, enum report_format *out);

/* Runs the report on an open (read-only is enough) connection.  Returns a
 * new cJSON object the caller deletes, or NULL with err set:
 *
 *   {"since": "2026-11-18T00:00:00Z" | null, "until": ... | null,
 *    "by": "key"|"model"|"day"|"user"|"none",
 *    "rows": [{"group": "openai/gpt-4o" | null, "requests": 3, "errors": 1,
 *              "prompt_tokens": n, "completion_tokens": n, "total_tokens": n,
 *              "cost_usd": "0.000369", "estimated_cost_usd": "0.00",
 *              "priced_cost_usd": "0.00", "cost_pusd": 369000000,
 *              "estimated_cost_pusd": 0, "priced_cost_pusd": 0}, ...],
 *    "total": {the same fields without "group"},
 *    "estimated_share": 0.0}
 *
 * rows is empty for REPORT_BY_NONE.  estimated_share is the fraction
 * (0..1) of the total cost that is estimated.  The *_usd strings are always
 * exact; the *_pusd numbers are exact up to 2^53 pusd (about $9007). */
cJSON *report_query_json(sqlite3 *db, const struct report_query *q, char *err, size_t errlen);

/* Opens db_path read-only (never creating it; busy timeout 2 s), runs the
 * report and writes it to out in fmt.  Returns 0, or -1 with err set, e.g.
 * "cannot open /x/usage.db: unable to open database file" or
 * "/x/usage.db: not an orproxy ledger (no requests table)". */
int report_write(const char *db_path, const struct report_query *q, enum report_format fmt,
                 FILE *out, char *err, size_t errlen);

/* ---- other ledgers (report_pg.c): the same report over another backend ---- */

/* One group's sums.  Costs in pusd: all sources, cost_source = 'estimate',
 * = 'pricing'. */
struct report_sums {
    int64_t requests, errors;
    int64_t prompt, completion, total;
    int64_t cost, est, priced;
};

/* The groups being collected for one report. */
struct report_acc;

/* Adds one group (group NULL: the rows without a value), in the order the
 * report shows them.  0, or -1 with err (totals overflow, out of memory). */
int report_acc_add(struct report_acc *acc, const char *group, const struct report_sums *s,
                   enum report_by by, char *err, size_t errlen);

/* A ledger backend: adds q's groups to acc.  0, or -1 with err. */
typedef int (*report_fill_fn)(void *src, const struct report_query *q, struct report_acc *acc,
                              char *err, size_t errlen);

/* report_query_json and report_write over the backend fill (with src). */
cJSON *report_json_with(report_fill_fn fill, void *src, const struct report_query *q, char *err,
                        size_t errlen);
int report_write_with(report_fill_fn fill, void *src, const struct report_query *q,
                      enum report_format fmt, FILE *out, char *err, size_t errlen);

#endif
