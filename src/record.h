/* record.h - the end of a request: one classifier for its outcome and
 * error class, its tokens and cost, the log line, the budget settlement,
 * the ledger row and the metrics. */
#ifndef ORP_RECORD_H
#define ORP_RECORD_H

#include <stddef.h>

#include "request.h"

/* How a request ended, both names from one decision. */
struct record_class {
    const char *outcome;        /* ok, rejected, proxy_error, upstream_error, stream_error, cancelled */
    const char *error_class;    /* "" when none */
};
struct record_class record_classify(const struct request *r);

/* One log line for every request, and one ledger row for every API
 * request, answered or not (404/405 are not API requests); the grant is
 * settled at the request's real or estimated cost. */
void record_finish(struct request *r);

/* Client-supplied names (model, method) as a safe log token. */
void record_token(char *dst, size_t cap, const char *s);

#endif
