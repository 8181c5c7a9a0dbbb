/* ledger_pg.h - the ledger writer's PostgreSQL side (ledger.backend =
 * "postgresql", issue 14): every row the writer committed to the local
 * SQLite ledger is then handed here, and goes to the shared database
 * through pgledger (with this instance's name and a row key assigned once),
 * or, while PostgreSQL is unreachable, to the spool file in the state
 * directory (spool.h), replayed in order, before any newer row, once it is
 * back.  A row the server refuses for itself (a data or constraint error)
 * is found by splitting its batch, dropped alone, counted and logged; any
 * other refusal (a missing table, no privilege) spools the batch like an
 * outage, so the queue never blocks and no row is lost.  Reconciled costs
 * travel the same way, in order, as updates by generation id.
 *
 * Every function but ledgerpg_get_stats runs on the ledger writer thread
 * (or before it starts / after it ends): libpq, the spool and the key
 * counter are that thread's alone.  No worker ever waits on PostgreSQL. */
#ifndef ORP_LEDGER_PG_H
#define ORP_LEDGER_PG_H

#include <stddef.h>
#include <stdint.h>

#include "ledger_record.h"

struct orp_config;

struct ledgerpg_stats {
    int enabled;         /* ledger.backend = "postgresql" */
    int up;              /* the last statement succeeded */
    uint64_t written;    /* rows new in PostgreSQL (replays included) */
    uint64_t dropped;    /* rows the server refused for themselves */
    uint64_t statements; /* statements sent (inserts, updates, migrations) */
    uint64_t spooled;    /* rows appended to the spool */
    uint64_t spool_bytes;
    int spool_failed;    /* the spool could not be written: rows lost */
};

/* With the backend on: checks the URL and password file, opens the spool
 * and tries to migrate.  PostgreSQL unreachable is logged, not an error
 * (rows spool); a refused login, a missing database or a schema that
 * cannot be migrated is.  0 (also when the backend is off), or -1 with
 * err. */
int ledgerpg_open(const struct orp_config *cfg, char *err, size_t errlen);
int ledgerpg_enabled(void);
/* Hands over one committed record (an insert, or with is_update a cost
 * update keyed by generation id); sent in batches of PGLEDGER_CHUNK. */
void ledgerpg_add(const struct ledger_record *rec, int is_update);
/* Sends (or spools) what ledgerpg_add collected. */
void ledgerpg_flush(void);
/* Replays the spool when a retry is due (force: now). */
void ledgerpg_tick(int force);
/* A last replay attempt, then closes the connection and the spool. */
void ledgerpg_close(void);
/* Any thread. */
void ledgerpg_get_stats(struct ledgerpg_stats *out);

#endif
