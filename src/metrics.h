/* metrics.h - Prometheus metrics for GET /metrics.
 *
 * Counters are updated once per finished request, never per byte or per
 * event, in the calling thread's own shard (its own mutex, which only a
 * scrape also takes); a scrape sums the shards and renders the text
 * format.  No process-wide lock is taken on the request path. */
#ifndef ORP_METRICS_H
#define ORP_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "ledger.h"

/* A request finished: count it, its tokens and cost, and its timings. */
void metrics_observe(const struct ledger_record *rec);
void metrics_reload(int ok);
/* The status of the last request that went upstream and when it ended
 * (unix ms); 0 and 0 before the first. */
void metrics_upstream_last(int *status, int64_t *at_ms);
/* Gauges: delta (+1/-1) to the connections or streams open; the increase
 * and the decrease may come from different threads. */
void metrics_connections(int delta);
void metrics_streams(int delta);
/* Appends the whole exposition (text format 0.0.4) to out.  0 or -1. */
int metrics_render(buf_t *out);

#endif
