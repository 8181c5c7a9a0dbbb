/* alerts_pg.h - the alerts thread's side of PostgreSQL (ledger.backend =
 * "postgresql"): the shared spend to compare with the budgets, and the
 * alerts_sent table every instance shares, so an alert goes out once
 * across the instances.
 *
 * A crossing is INSERTed ... ON CONFLICT DO NOTHING with claimed_by = this
 * instance and claimed_ms = the database's clock: the instance whose insert
 * created the row delivers it.  alertspg_claim hands out the undelivered
 * rows this instance holds (renewing its claim) and those whose claim is
 * older than ALERTSPG_TAKEOVER_MS (a crashed or stuck instance's), taking
 * them over in one UPDATE, so each row is delivered by one instance at a
 * time and a crashed instance's alert still goes out.
 *
 * Only the alerts thread calls these (one connection of its own). */
#ifndef ORP_ALERTS_PG_H
#define ORP_ALERTS_PG_H

#include <stddef.h>
#include <stdint.h>

#include "alerts_fmt.h"
#include "config.h"
#include "lease.h"

#define ALERTSPG_TAKEOVER_MS 60000

/* 1 when cfg's ledger is PostgreSQL and the connection may be tried now
 * (it is opened on first use; after a failure it rests a few seconds). */
int alertspg_usable(const struct orp_config *cfg);
/* The settled spend of the current day and month rows (lease_spent_read):
 * 0, or -1 (logged) when the database cannot answer. */
int alertspg_spent(int64_t now_ms, struct lease_spent **out, size_t *n);
/* Records a crossing.  1 this call created the row, 0 it was there, -1
 * the database could not take it (logged; try again later). */
int alertspg_record(const struct alert_row *a);
/* Up to max undelivered rows this instance is to deliver, oldest first
 * (shared set).  Returns how many (0 on a failure, logged). */
int alertspg_claim(struct alert_row *out, int max);
/* The row was delivered. */
void alertspg_mark_sent(const struct alert_row *a, int64_t now_ms);
/* Closes the connection (the thread ends). */
void alertspg_close(void);

#endif
