/* console_int.h - inside the console's queries: the aggregation of
 * console_query.c over rollup rows from any ledger backend.  The SQLite
 * ledger (console_rows.c) and the PostgreSQL one (console_pg.c) each
 * supply a scan of their rollup tables; the sums, rankings, validation
 * and JSON shapes are shared, so both backends answer alike. */
#ifndef ORP_CONSOLE_INT_H
#define ORP_CONSOLE_INT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "console_query.h"

struct cq_sums {
    int64_t requests, errors, prompt, completion, cached, reasoning, cost;
    int64_t cost_day; /* cq_spend: the day's part of cost */
};

/* One rollup row; instance is NULL when the backend has none (SQLite). */
struct cq_row {
    int64_t t_ms; /* the hour or day */
    const char *instance, *client, *model, *source;
    struct cq_sums s;
};

/* Returns 0, or -1 when out of memory. */
typedef int (*cq_row_fn)(const struct cq_row *r, void *arg);

/* Where the rollup rows come from: scan hands every row of the daily
 * (day) or hourly table with from <= its time < to to fn; 0, or -1 with
 * err set ("ledger: ..." or "ledger unavailable: ..."). */
struct cq_source {
    int (*scan)(void *db, int day, int64_t from, int64_t to, cq_row_fn fn, void *arg, char *err,
                size_t errlen);
    void *db;
    int instances; /* rows carry an instance: by=instance, top_instances */
};

cJSON *cq_overview_from(const struct cq_source *src, int64_t now_ms, char *err, size_t errlen);
cJSON *cq_timeseries_from(const struct cq_source *src, int64_t since_ms, int64_t until_ms,
                          int bucket_day, int by, int top_n, char *err, size_t errlen);
cJSON *cq_models_from(const struct cq_source *src, int64_t since_ms, char *err, size_t errlen);
cJSON *cq_spend_from(const struct cq_source *src, int64_t now_ms, char *err, size_t errlen);

/* The requests filter's checks (both backends): 0, or -1 with err. */
int cq_filter_check(const struct cq_filter *f, char *err, size_t errlen);

#endif
