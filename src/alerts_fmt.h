/* alerts_fmt.h - one alert as recorded and sent (alerts.c): the row of
 * alerts_sent, its one-line description, the webhook body. */
#ifndef ORP_ALERTS_FMT_H
#define ORP_ALERTS_FMT_H

#include <stddef.h>
#include <stdint.h>

/* One alerts_sent row (SQLite's or PostgreSQL's: shared says which). */
struct alert_row {
    char client[128], budget[16], period[16];
    int threshold;
    int64_t spent_pusd, limit_pusd, crossed_ms;
    int shared; /* 1: the PostgreSQL table (alerts_pg.h) */
};

/* ms (unix ms, UTC) through strftime's fmt. */
void alertsfmt_utc(int64_t ms, const char *fmt, char *buf, size_t n);
/* The webhook URL's host, for log lines: never its path or credentials. */
void alertsfmt_url_host(const char *url, char *out, size_t n);
/* "client 'alice' day budget for 2026-12-01 reached 50% ($0.60 of $1.00)" */
void alertsfmt_describe(const struct alert_row *a, char *buf, size_t n);
/* The POST body (malloc'd; JSON, or Slack's {"text":...} with slack set),
 * or NULL when out of memory. */
char *alertsfmt_body(const struct alert_row *a, int slack, const char *instance);

#endif
