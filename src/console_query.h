/* console_query.h - the operator console's read queries over the ledger
 * (the data behind GET /admin/v1/{overview,timeseries,requests,models}
 * and the clients' spend).
 *
 * Each function runs on a non-worker thread with the caller's own
 * (read-only is enough) connection to a ledger at schema version 2, and
 * returns a new cJSON object the caller deletes, or NULL with err filled:
 * a bad parameter gives a message meant for a 400 answer, a database
 * failure one that starts with "ledger: ".  Every statement is prepared
 * with bound parameters.
 *
 * The overview, the time series, the models and the spend read only the
 * rollups (rollup_hour and rollup_day, kept by triggers as rows are
 * written), never the raw requests table, so their cost follows the number
 * of rollup rows in the range, not the number of requests.  The requests list pages
 * through `requests` by id (keyset: id < before_id, newest first), using
 * the indexes on (client, id) and (model, id).
 *
 * Amounts are decimal strings (pricing_format_usd), times unix ms,
 * buckets UTC hours or days.  A row without a model (model NULL in the
 * ledger, '' in the rollups) shows as "model": null in lists and as the
 * series "(none)" in a time series.
 *
 * With ledger.backend = "postgresql" the same queries run over the shared
 * database (console_pg.h), whose rows also carry the instance that served
 * them: there a time series may be by instance, the overview adds
 * top_instances, and the requests list takes an instance filter.  Over
 * SQLite those are a 400 ("needs ledger.backend"). */
#ifndef ORP_CONSOLE_QUERY_H
#define ORP_CONSOLE_QUERY_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Longest range a time series may cover: 400 days of hourly buckets, or
 * 1830 days (five years) of daily ones. */
#define CQ_MAX_HOURLY_MS (INT64_C(400) * 86400000)
#define CQ_MAX_DAILY_MS (INT64_C(1830) * 86400000)
#define CQ_MAX_LIMIT 1000 /* rows in one requests page */
#define CQ_MAX_TOP_N 100  /* named series in one time series */
#define CQ_MAX_FILTER_LEN 256

/* What a time series' names are. */
enum cq_by { CQ_BY_CLIENT = 0, CQ_BY_MODEL = 1, CQ_BY_INSTANCE = 2 };

/* /admin/v1/requests; NULL / -1 = no filter.  Owned by the caller; the
 * strings are borrowed for the call. */
struct cq_filter {
    const char *client, *model, *outcome; /* exact matches; model is the requested model */
    const char *instance;                 /* exact; PostgreSQL only */
    int status;                           /* exact status (100..599), or -1 */
    int stream;                           /* 0, 1, or -1 */
    int64_t since_ms, until_ms;           /* since <= started_ms < until; 0 = open */
    int64_t before_id;                    /* page: rows with id < before_id; 0 = newest */
    int limit;                            /* 1..CQ_MAX_LIMIT */
};

/* {"spend":{"today","month","last_30_days"}, "requests":N, "errors":N,
 *  "tokens":{"prompt","completion","cached","reasoning"},
 *  "cost_by_source":[{"cost_source","cost_usd","requests"}],
 *  "top_clients":[{"client","requests","errors","tokens","cost_usd"}],
 *  "top_models":[{"model",...the same}]
 *  (PostgreSQL: "top_instances":[{"instance",...the same}])}
 * today and month are the UTC day and month holding now_ms; the last 30
 * days are the 30 UTC days ending with today (from rollup_day), over
 * which requests, errors, tokens, cost_by_source and the top lists (10
 * long, by cost, then requests, then name) count.  tokens in a top list =
 * prompt + completion. */
cJSON *cq_overview(sqlite3 *db, int64_t now_ms, char *err, size_t errlen);

/* {"bucket":"hour"|"day","by":"client"|"model"|"instance","since":ms,"until":ms,
 *  "t":[bucket start ms,...],
 *  "series":[{"name","cost_usd":["..",..],"requests":[N,..],"tokens":[N,..]},..]}
 * t holds every bucket that starts before until_ms, from the one holding
 * since_ms (0 <= since_ms <= until_ms, at most CQ_MAX_HOURLY_MS or
 * CQ_MAX_DAILY_MS apart).  The top_n (1..CQ_MAX_TOP_N) names by cost in
 * the range get a series each, largest first; the rest are summed into
 * one series named "(other)", last, present only when there is a rest. */
cJSON *cq_timeseries(sqlite3 *db, int64_t since_ms, int64_t until_ms, int bucket_day, int by,
                     int top_n, char *err, size_t errlen);

/* {"requests":[{every ledger column, with "cost_usd":".." instead of
 *  cost_pusd},..], "next_before": id | null}, newest first: by id, or, when
 * since or until is given, by start time (then id).  next_before is the
 * before_id of the next page, null when no older row matches; with a time
 * range a before_id that names no row is an error. */
cJSON *cq_requests(sqlite3 *db, const struct cq_filter *f, char *err, size_t errlen);

/* {"models":[{"model","requests","tokens","cost_usd"}]}: spend per
 * requested model from the UTC hour holding since_ms (>= 0) on, by cost,
 * then requests, then name. */
cJSON *cq_models(sqlite3 *db, int64_t since_ms, char *err, size_t errlen);

/* {"clients":[{"client","spent_usd_day","spent_usd_month"}],
 *  "all":{"spent_usd_day","spent_usd_month"}}: the spend of the UTC day
 * and month holding now_ms, per client with rows this month (by name) and
 * in all. */
cJSON *cq_spend(sqlite3 *db, int64_t now_ms, char *err, size_t errlen);

#endif
