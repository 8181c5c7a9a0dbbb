/* bshare.h - budgets shared by several instances (ledger.backend =
 * postgresql): the local side of the leases of lease.c.
 *
 * Each budget (all traffic's and each client's, per UTC day and month) has
 * a local row: the headroom this instance holds in PostgreSQL (held), the
 * reservations of its requests in flight (reserved) and the spend settled
 * locally but not yet recorded in the database (unsettled).  A request is
 * admitted from held - reserved - unsettled under one mutex, with no
 * database statement.  A thread of this module's own, with its own
 * connection, keeps each row's headroom topped up in chunks sized to the
 * recent traffic (lease_take), records settled spend in batches
 * (lease_settle), renews the lease before it expires, gives back what an
 * idle row or a past period holds (lease_return) and returns crashed
 * instances' expired leases to the pool (lease_expire).
 *
 * Only a request that finds its instance's headroom spent waits, at most
 * BSHARE_WAIT_MS, for the thread to lease more; the answer is then
 * admitted, refused (the database has no headroom left for it: 402), or
 * unavailable (the database cannot be reached: 503 or admitted, as
 * limits.budget_fail says). */
#ifndef ORP_BSHARE_H
#define ORP_BSHARE_H

#include <stdint.h>

#include "config.h"

#define BSHARE_WAIT_MS 500

/* What a request holds: up to BSHARE_ROWS rows, each with its amount
 * (the slots of bshare_reserve's which). */
#define BSHARE_ROWS 10
struct bshare_hold {
    void *row[BSHARE_ROWS];
    int64_t amount[BSHARE_ROWS];
    int n;
};

enum bshare_verdict { BSHARE_OK = 0, BSHARE_REFUSED = 1, BSHARE_UNAVAILABLE = 2 };

/* Starts the thread when cfg->ledger_backend is "postgresql" (else does
 * nothing and returns 0).  The database may be down: the thread keeps
 * trying.  -1 with err on a bad URL or password file. */
int bshare_start(struct orp_config *cfg, char *err, size_t errlen);
/* 1 when budgets are shared (bshare_start started the thread). */
int bshare_active(void);
/* A reload: later rows take their limits from cfg. */
void bshare_set_config(struct orp_config *cfg);
/* Records what is left to settle, returns every unused hold, stops. */
void bshare_stop(void);

/* Reserves est on the budget rows of client (index in cfg->clients, -1:
 * anonymous) and of all traffic that have a limit; with limits.shared
 * also one request on their rpm and max_concurrent rows and est_tokens on
 * their tpm rows (the same leases, lease.h).  BSHARE_OK (h filled; with
 * limits.budget_fail = "open" also when the database is unreachable), or
 * a refusal with *which = the row refused: 0 client day, 1 client month,
 * 2 all traffic day, 3 all traffic month, 4 client rpm, 5 client tpm,
 * 6 client max_concurrent, 7, 8, 9 the same of all traffic; nothing is
 * held then. */
enum bshare_verdict bshare_reserve(const struct orp_config *cfg, int client, int64_t est,
                                   int64_t est_tokens, struct bshare_hold *h, int *which);
/* The request ended: releases its reservations, settles cost on the
 * budgets, tokens on tpm, the request on rpm, and frees its concurrency
 * slot. */
void bshare_settle(struct bshare_hold *h, int64_t cost_pusd, int64_t tokens);
/* A cost learnt later (reconciliation), delta > 0 only: recorded on the
 * rows of client and all traffic of the period holding booked_ms. */
void bshare_adjust(const char *client, int64_t booked_ms, int64_t delta_pusd);

struct bshare_stats {
    unsigned long long reservations; /* requests reserved on shared rows */
    unsigned long long statements;   /* database statements run */
    unsigned long long waits;        /* reservations that waited for the thread */
};
void bshare_get_stats(struct bshare_stats *out);

#endif
