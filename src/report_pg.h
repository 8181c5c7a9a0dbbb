/* report_pg.h - the usage report over the shared PostgreSQL ledger
 * (ledger.backend = "postgresql"): `orproxy usage` and GET /v1/usage read
 * every instance's rows, and can group them by instance.  The same rows,
 * sums, order and formats as report.h; only the query differs.  Each call
 * opens its own connection (bounded by a 5 s timeout, never on a worker)
 * and closes it. */
#ifndef ORP_REPORT_PG_H
#define ORP_REPORT_PG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

#include "report.h"

/* report_query_json over the ledger at url (ledger.postgresql_url) with
 * the password in password_file ("" = libpq's .pgpass). */
cJSON *report_pg_json(const char *url, const char *password_file, const struct report_query *q,
                      char *err, size_t errlen);
/* report_write over the same. */
int report_pg_write(const char *url, const char *password_file, const struct report_query *q,
                    enum report_format fmt, FILE *out, char *err, size_t errlen);

#endif
