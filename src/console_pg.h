/* console_pg.h - the console's queries over the shared PostgreSQL ledger
 * (ledger.backend = "postgresql"): the same contract, shapes and checks as
 * console_query.h, over every instance's rows, plus the instance grouping
 * (by=instance, top_instances, the instance filter).  The aggregates read
 * the rollup_hour and rollup_day tables of schema version 3 (pgledger.h),
 * never the raw requests.
 *
 * c is the caller's connection (pgconn.h: every wait bounded by its
 * timeout), used from one thread.  Errors as in console_query.h, except
 * that a database that cannot be reached (or timed out) gives a message
 * starting with "ledger unavailable: " (a 503 for the admin API). */
#ifndef ORP_CONSOLE_PG_H
#define ORP_CONSOLE_PG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "console_query.h"
#include "pgconn.h"

#define CQPG_UNAVAILABLE "ledger unavailable: "

cJSON *cqpg_overview(struct pgconn *c, int64_t now_ms, char *err, size_t errlen);
cJSON *cqpg_timeseries(struct pgconn *c, int64_t since_ms, int64_t until_ms, int bucket_day, int by,
                       int top_n, char *err, size_t errlen);
/* Each row also has "instance"; the row key is left out. */
cJSON *cqpg_requests(struct pgconn *c, const struct cq_filter *f, char *err, size_t errlen);
cJSON *cqpg_models(struct pgconn *c, int64_t since_ms, char *err, size_t errlen);
cJSON *cqpg_spend(struct pgconn *c, int64_t now_ms, char *err, size_t errlen);

#endif
