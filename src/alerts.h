/* alerts.h - budget and key-expiry alerts to a webhook.
 *
 * A thread of its own (never a worker, never in a request's way) compares
 * every budget (all traffic's and each client's, day and month) with its
 * spend about once a second.  The first time one reaches a threshold of
 * alerts.thresholds_pct in its period, and when a managed client's key is
 * within 7 days of expiring, the alert is recorded in the ledger's
 * alerts_sent table (so it fires once per budget, period and threshold,
 * also across restarts) and POSTed to alerts.webhook_url, retried with
 * backoff until the receiver answers 2xx, after a restart too. */
#ifndef ORP_ALERTS_H
#define ORP_ALERTS_H

#include "config.h"

/* Starts the thread with cfg (it takes its own reference).  0 or -1. */
int alerts_start(struct orp_config *cfg);
/* A reload: the next pass uses cfg; a waiting retry is tried at once. */
void alerts_set_config(struct orp_config *cfg);

struct alerts_stats {
    unsigned long long sent;   /* alerts the webhook took (2xx) */
    unsigned long long failed; /* delivery attempts that failed (retried later) */
};
void alerts_get_stats(struct alerts_stats *out);

/* Stops the thread (a POST in progress is cut short) and drops its config. */
void alerts_stop(void);

#endif
