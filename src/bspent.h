/* bspent.h - the shared budgets' spend as last read from PostgreSQL
 * (ledger.backend = "postgresql"), kept in memory for the threads that
 * must not query: GET /v1/key (a worker) and the admin API's client spend.
 *
 * The budgets thread (bshare.c) refreshes it about once a second from the
 * budgets rows of the current UTC day and month (lease_spent_read: the
 * spend every instance has settled into them, not what is leased).  With
 * SQLite nothing sets it and bspent_get always answers 0. */
#ifndef ORP_BSPENT_H
#define ORP_BSPENT_H

#include <stdint.h>

struct pgconn;

/* Reads the rows through c (the budgets thread's connection) and keeps
 * them.  0, or -1 when the database did not answer (the old values stay,
 * and age out). */
int bspent_refresh(struct pgconn *c, int64_t now_ms);

/* 1 with *day_pusd and *month_pusd filled (0 for a scope without a row)
 * when a read of the current UTC day and month at most BSPENT_MAX_AGE_MS
 * old is kept; else 0 and nothing filled.  Thread-safe, no I/O. */
#define BSPENT_MAX_AGE_MS 10000
int bspent_get(const char *scope, int64_t now_ms, int64_t *day_pusd, int64_t *month_pusd);

/* Forgets what was kept (the budgets thread stops). */
void bspent_clear(void);

#endif
