/* metrics.h - Prometheus metrics for GET /metrics.
 *
 * Counters are updated once per finished request (one short mutex hold,
 * never per byte or per event) and gauges with atomics; a scrape renders
 * the text format under the same mutex. */
#ifndef ORP_METRICS_H
#define ORP_METRICS_H

#include "buf.h"
#include "ledger.h"

/* A request finished: count it, its tokens and cost, and its timings. */
void metrics_observe(const struct ledger_record *rec);
void metrics_reload(int ok);
void metrics_connections(int delta);
void metrics_streams(int delta);
/* Appends the whole exposition (text format 0.0.4) to out.  0 or -1. */
int metrics_render(buf_t *out);

#endif
