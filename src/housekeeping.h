/* housekeeping.h - the background thread: price table refresh and
 * reconciliation of aborted streams' costs with GET /generation. */
#ifndef ORP_HOUSEKEEPING_H
#define ORP_HOUSEKEEPING_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

/* Loads the cached price table and starts the thread.  0 or -1. */
int housekeeping_start(struct orp_config *cfg);
/* A reload: later jobs use cfg (the thread takes its own reference). */
void housekeeping_set_config(struct orp_config *cfg);
/* Thread-safe: ask /generation for this id's cost a few times over about
 * a minute, with key (the upstream key the request used; NULL: the shared
 * one; copied, wiped when done), and when it answers update its ledger row
 * and settle the difference from settled_pusd (the estimate the request
 * was settled at, at wall time booked_ms) into the live budgets of client
 * (NULL: anonymous) and of all traffic. */
void housekeeping_reconcile(const char *gen_id, const char *client, int64_t booked_ms,
                            int64_t settled_pusd, const char *key);
struct housekeeping_stats {
    size_t pending;                /* reconciles waiting or being asked now */
    unsigned long long answered;   /* rows whose cost came from /generation */
    unsigned long long given_up;   /* no answer after every try: the estimate stays */
    unsigned long long dropped;    /* not queued (queue full, or stopping) */
};
void housekeeping_get_stats(struct housekeeping_stats *out);
void housekeeping_stop(void);

#endif
