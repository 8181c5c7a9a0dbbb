/* pgledger.h - the ledger in PostgreSQL: the schema and its migrations, and
 * the batched, idempotent insert of ledger rows (issue 14, groundwork: not
 * wired into ledger.c yet).
 *
 * Several instances share one database.  Migrations run in one transaction
 * under a transaction-scoped advisory lock, so instances that start together
 * apply each one exactly once; the table orp_schema records which.
 *
 * Every row carries a row key that is unique in the table and assigned once,
 * when the row is first handed to PostgreSQL (pgledger_key_next); a retried
 * batch, or rows replayed from the spool (spool.h), carry the same keys and
 * INSERT ... ON CONFLICT (row_key) DO NOTHING makes the second write a no-op.
 * The key is not the request id: a client may send its own X-Request-Id, and
 * two requests with the same one are two rows.  The key is the instance's
 * random boot nonce and a sequence number.
 *
 * Table requests: the SQLite ledger's columns (ledger.h) plus id bigserial,
 * row_key (UNIQUE) and instance; "user" is quoted (a keyword here).
 * Table budgets and budget_leases: see lease.h.  Table clients (version 4):
 * managed.h.
 * Tables rollup_hour and rollup_day (version 3): the console's sums per UTC
 * hour (day), instance, client, model ('' = none) and cost source, kept by
 * triggers on requests in the writer's own transaction (console_pg.h). */
#ifndef ORP_PGLEDGER_H
#define ORP_PGLEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "ledger_record.h"
#include "pgconn.h"

/* The newest schema version this build knows. */
#define PGLEDGER_SCHEMA_VERSION 6

/* Rows per INSERT statement: 27 parameters each, under libpq's 65535. */
#define PGLEDGER_CHUNK 500

#define PGL_KEY_LEN 40

/* One row on its way to PostgreSQL; owned by the caller. */
struct pgl_row {
    char key[PGL_KEY_LEN]; /* pgledger_key_next, never reused */
    struct ledger_record rec;
};

/* The source of row keys of one process: seeded once from getrandom. */
struct pgl_keys {
    uint64_t boot;
    uint64_t seq;
};

/* 0, or -1 when no random bytes could be had. */
int pgledger_keys_init(struct pgl_keys *k);
/* Writes the next key ("<16 hex boot>-<seq>") to out[PGL_KEY_LEN].  One
 * thread at a time per pgl_keys. */
void pgledger_key_next(struct pgl_keys *k, char *out);

/* Brings the schema to PGLEDGER_SCHEMA_VERSION (a newer one is left alone).
 * *version: the version the database is at afterwards; *applied: how many
 * migrations this call applied (0 when another instance did them).
 * Returns a pgconn_rc. */
int pgledger_migrate(struct pgconn *c, const char *instance, int *version, int *applied, char *err,
                     size_t errlen);

/* Writes n rows, PGLEDGER_CHUNK per statement, each statement committed on
 * its own; rows whose key is already there are skipped.  *inserted (may be
 * NULL): the rows that were new.  On failure some chunks may be committed;
 * writing the same rows again is always safe.  Text that is not valid UTF-8
 * (PostgreSQL refuses it) is stored with '?' for each bad byte.  Returns a
 * pgconn_rc: PGC_DOWN means spool and retry. */
int pgledger_insert(struct pgconn *c, const char *instance, const struct pgl_row *rows, size_t n,
                    size_t *inserted, char *err, size_t errlen);

#endif
