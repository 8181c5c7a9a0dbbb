/* ledger.h - the usage ledger: one durable row per request that went
 * upstream (and per request orproxy refused), in SQLite.
 *
 * The request path never touches the database: ledger_submit() copies the
 * record into a bounded in-memory queue (a mutex held for a memcpy, never
 * for I/O) and returns.  One writer thread takes records off the queue and
 * commits them in batches, at least every ledger.flush_ms (default 1000),
 * so a crash loses at most that window; WAL mode keeps the file consistent
 * whatever happens.  When the database fails (locked by another process,
 * disk full), the batch is kept and retried with backoff; only when the
 * queue (ledger.queue_max, counting the batch being retried) is full are
 * new records counted as dropped and logged; the request is not affected.
 * With ledger.backend = "postgresql" the same rows also go to a database
 * shared by every instance, after their SQLite commit (ledger_pg.h).
 *
 * Costs are integers in picodollars (1e-12 USD): exact sums, no float
 * drift.  Schema (version 1), table `requests`:
 *
 *   id INTEGER PRIMARY KEY, request_id TEXT, started_at TEXT (ISO-8601 UTC),
 *   started_ms INTEGER (unix ms), client TEXT, user TEXT, route TEXT,
 *   model TEXT (requested), served_model TEXT, provider TEXT,
 *   stream INTEGER, status INTEGER, attempts INTEGER,
 *   prompt_tokens, completion_tokens, total_tokens, cached_tokens,
 *   reasoning_tokens INTEGER, cost_pusd INTEGER,
 *   cost_source TEXT ('upstream'|'pricing'|'estimate'|'none'),
 *   generation_id TEXT, finish_reason TEXT, latency_ms REAL, ttfb_ms REAL,
 *   error_class TEXT, outcome TEXT
 */
#ifndef ORP_LEDGER_H
#define ORP_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "ledger_record.h"

#define LEDGER_SCHEMA_VERSION 2

/* Version 1 of the schema; migrations to later versions go in ledger.c. */
#define LEDGER_SCHEMA_V1                                                        \
    "CREATE TABLE IF NOT EXISTS requests ("                                    \
    " id INTEGER PRIMARY KEY,"                                                 \
    " request_id TEXT NOT NULL,"                                               \
    " started_at TEXT NOT NULL,"                                               \
    " started_ms INTEGER NOT NULL,"                                            \
    " client TEXT NOT NULL DEFAULT 'anonymous',"                               \
    " user TEXT,"                                                              \
    " route TEXT NOT NULL,"                                                    \
    " model TEXT,"                                                             \
    " served_model TEXT,"                                                      \
    " provider TEXT,"                                                          \
    " stream INTEGER NOT NULL DEFAULT 0,"                                      \
    " status INTEGER NOT NULL,"                                                \
    " attempts INTEGER NOT NULL DEFAULT 0,"                                    \
    " prompt_tokens INTEGER NOT NULL DEFAULT 0,"                               \
    " completion_tokens INTEGER NOT NULL DEFAULT 0,"                           \
    " total_tokens INTEGER NOT NULL DEFAULT 0,"                                \
    " cached_tokens INTEGER NOT NULL DEFAULT 0,"                               \
    " reasoning_tokens INTEGER NOT NULL DEFAULT 0,"                            \
    " cost_pusd INTEGER NOT NULL DEFAULT 0,"                                   \
    " cost_source TEXT NOT NULL DEFAULT 'none',"                               \
    " generation_id TEXT,"                                                     \
    " finish_reason TEXT,"                                                     \
    " latency_ms REAL,"                                                        \
    " ttfb_ms REAL,"                                                           \
    " error_class TEXT,"                                                       \
    " outcome TEXT);"                                                          \
    "CREATE INDEX IF NOT EXISTS requests_started ON requests(started_ms);"     \
    "CREATE INDEX IF NOT EXISTS requests_gen ON requests(generation_id);"

/* The rollup tables: t the table, k its time column, w its width in ms. */
#define LEDGER_ROLLUP_TABLE(t, k)                                               \
    "CREATE TABLE IF NOT EXISTS " t " ("                                       \
    " " k " INTEGER NOT NULL,"                                                 \
    " client TEXT NOT NULL,"                                                   \
    " model TEXT NOT NULL,"                                                    \
    " cost_source TEXT NOT NULL,"                                              \
    " requests INTEGER NOT NULL DEFAULT 0,"                                    \
    " errors INTEGER NOT NULL DEFAULT 0,"                                      \
    " prompt_tokens INTEGER NOT NULL DEFAULT 0,"                               \
    " completion_tokens INTEGER NOT NULL DEFAULT 0,"                           \
    " cached_tokens INTEGER NOT NULL DEFAULT 0,"                               \
    " reasoning_tokens INTEGER NOT NULL DEFAULT 0,"                            \
    " cost_pusd INTEGER NOT NULL DEFAULT 0,"                                   \
    " PRIMARY KEY (" k ", client, model, cost_source)) WITHOUT ROWID;"
/* A new row adds itself to its rollup row. */
#define LEDGER_ROLLUP_ADD(t, k, w)                                              \
    " INSERT INTO " t " VALUES (NEW.started_ms - NEW.started_ms % " w ","      \
    "  NEW.client, COALESCE(NEW.model, ''), NEW.cost_source, 1, NEW.status >= 400," \
    "  NEW.prompt_tokens, NEW.completion_tokens, NEW.cached_tokens,"          \
    "  NEW.reasoning_tokens, NEW.cost_pusd)"                                   \
    " ON CONFLICT (" k ", client, model, cost_source) DO UPDATE SET"          \
    "  requests = requests + 1, errors = errors + excluded.errors,"           \
    "  prompt_tokens = prompt_tokens + excluded.prompt_tokens,"               \
    "  completion_tokens = completion_tokens + excluded.completion_tokens,"   \
    "  cached_tokens = cached_tokens + excluded.cached_tokens,"               \
    "  reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,"      \
    "  cost_pusd = cost_pusd + excluded.cost_pusd;"
/* A reconciled cost moves the row's cost (and maybe its source); the
 * request stays counted where it was first written. */
#define LEDGER_ROLLUP_MOVE(t, k, w)                                             \
    " UPDATE " t " SET cost_pusd = cost_pusd - OLD.cost_pusd"                  \
    "  WHERE " k " = OLD.started_ms - OLD.started_ms % " w                     \
    "  AND client = OLD.client AND model = COALESCE(OLD.model, '')"            \
    "  AND cost_source = OLD.cost_source;"                                     \
    " INSERT INTO " t " (" k ", client, model, cost_source, cost_pusd)"        \
    "  VALUES (NEW.started_ms - NEW.started_ms % " w ", NEW.client,"          \
    "  COALESCE(NEW.model, ''), NEW.cost_source, NEW.cost_pusd)"               \
    "  ON CONFLICT (" k ", client, model, cost_source) DO UPDATE SET"         \
    "  cost_pusd = cost_pusd + excluded.cost_pusd;"

/* Version 2: what the console needs (issue 13).
 *
 * rollup_hour, rollup_day: one row per UTC hour (day), client, model and
 * cost source, kept up to date by triggers in the same transaction as the
 * rows they sum, so the console reads rollup rows, never the raw table.
 * model '' = none.  errors = rows with status >= 400.  The daily table is
 * what keeps the overview fast on a big ledger: in the 10-million-row
 * bench ledger, 30 days are about 710,000 hourly rows but 112,000 daily
 * ones, and the overview went from 418 ms to 68 ms (bench/README.md,
 * "Console queries"); it costs the writer one more upsert per row.
 *
 * clients: the managed clients (created through /admin/v1/clients, not the
 * config file).  Only key hashes are kept.  old_key_sha256 works until
 * old_key_until_ms (a rotation's grace period).  models and defaults are
 * JSON texts (an array of patterns; an object shaped like a config client's
 * defaults).  expires_ms NULL = never.  A revoked client's row is kept with
 * revoked_ms set (its ledger rows still name it) and its keys cleared.
 *
 * alerts_sent: one row per budget alert (client '' = all traffic; budget
 * 'day' | 'month' | 'expiry'; period '2026-12-01' | '2026-12' | the expiry
 * date; threshold in percent, 0 for expiry).  sent_ms NULL = crossed but not
 * delivered yet: retried, also after a restart.  The primary key makes an
 * alert fire once per budget, period and threshold.
 *
 * requests_client, requests_model: the console's requests list filtered
 * by client or model pages backwards by id (console_rows.c); every index
 * entry ends with the rowid (= id), so these are ordered by (client, id)
 * and (model, id).  Each costs the writer one more b-tree insert per row
 * (measured in bench/README.md, "Console queries"). */
#define LEDGER_SCHEMA_V2                                                        \
    LEDGER_ROLLUP_TABLE("rollup_hour", "hour_ms")                              \
    LEDGER_ROLLUP_TABLE("rollup_day", "day_ms")                                \
    "CREATE TRIGGER IF NOT EXISTS requests_rollup_insert AFTER INSERT ON requests BEGIN" \
    LEDGER_ROLLUP_ADD("rollup_hour", "hour_ms", "3600000")                     \
    LEDGER_ROLLUP_ADD("rollup_day", "day_ms", "86400000")                      \
    " END;"                                                                    \
    "CREATE TRIGGER IF NOT EXISTS requests_rollup_update"                      \
    " AFTER UPDATE OF cost_pusd, cost_source ON requests BEGIN"                \
    LEDGER_ROLLUP_MOVE("rollup_hour", "hour_ms", "3600000")                    \
    LEDGER_ROLLUP_MOVE("rollup_day", "day_ms", "86400000")                     \
    " END;"                                                                    \
    "CREATE INDEX IF NOT EXISTS requests_client ON requests(client);"          \
    "CREATE INDEX IF NOT EXISTS requests_model ON requests(model);"            \
    "CREATE TABLE IF NOT EXISTS clients ("                                     \
    " name TEXT PRIMARY KEY,"                                                  \
    " key_sha256 BLOB,"                                                        \
    " old_key_sha256 BLOB,"                                                    \
    " old_key_until_ms INTEGER,"                                               \
    " admin INTEGER NOT NULL DEFAULT 0,"                                       \
    " models TEXT NOT NULL DEFAULT '[]',"                                      \
    " rpm INTEGER NOT NULL DEFAULT 0,"                                         \
    " tpm INTEGER NOT NULL DEFAULT 0,"                                         \
    " max_concurrent INTEGER NOT NULL DEFAULT 0,"                              \
    " budget_day_pusd INTEGER NOT NULL DEFAULT 0,"                             \
    " budget_month_pusd INTEGER NOT NULL DEFAULT 0,"                           \
    " expires_ms INTEGER,"                                                     \
    " defaults TEXT NOT NULL DEFAULT '{}',"                                    \
    " created_ms INTEGER NOT NULL,"                                            \
    " updated_ms INTEGER NOT NULL,"                                            \
    " revoked_ms INTEGER);"                                                    \
    "CREATE TABLE IF NOT EXISTS alerts_sent ("                                 \
    " client TEXT NOT NULL,"                                                   \
    " budget TEXT NOT NULL,"                                                   \
    " period TEXT NOT NULL,"                                                   \
    " threshold INTEGER NOT NULL,"                                             \
    " spent_pusd INTEGER NOT NULL DEFAULT 0,"                                  \
    " limit_pusd INTEGER NOT NULL DEFAULT 0,"                                  \
    " crossed_ms INTEGER NOT NULL,"                                            \
    " sent_ms INTEGER,"                                                        \
    " PRIMARY KEY (client, budget, period, threshold)) WITHOUT ROWID;"

/* Fills rollup_hour, then rollup_day from it, from the rows already
 * written (the move to version 2 of a ledger that has rows). */
#define LEDGER_ROLLUP_BACKFILL                                                  \
    "INSERT INTO rollup_hour SELECT started_ms - started_ms % 3600000, client,"  \
    " COALESCE(model, ''), cost_source, COUNT(*), SUM(status >= 400),"         \
    " SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),"         \
    " SUM(reasoning_tokens), SUM(cost_pusd) FROM requests"                     \
    " GROUP BY 1, 2, 3, 4;"                                                    \
    "INSERT INTO rollup_day SELECT hour_ms - hour_ms % 86400000, client, model,"  \
    " cost_source, SUM(requests), SUM(errors), SUM(prompt_tokens),"            \
    " SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens),"      \
    " SUM(cost_pusd) FROM rollup_hour GROUP BY 1, 2, 3, 4;"

struct ledger_stats {
    uint64_t submitted, written, dropped, queue_depth;
};

struct orp_config;

/* Opens (creating and migrating) the database and starts the writer
 * thread.  Returns 0, or -1 with err set. */
int ledger_open(const struct orp_config *cfg, char *err, size_t errlen);
/* Thread-safe, never blocks on I/O.  Returns 0, or -1 if dropped. */
int ledger_submit(const struct ledger_record *rec);
/* Updates cost (and source) of the row with this generation id, through
 * the writer thread.  Thread-safe. */
int ledger_update_cost(const char *generation_id, int64_t cost_pusd, enum cost_source src);
/* Flushes everything queued and stops the writer.  Safe if never opened. */
void ledger_close(void);
void ledger_get_stats(struct ledger_stats *out);
/* The last write attempt succeeded (or none failed yet since opening). */
int ledger_healthy(void);
/* Reads the spend of the current UTC day and month per client (and, with
 * client NULL, in all) and hands each to fn.  For budgets at start-up. */
void ledger_seed_spend(const char *path, void (*fn)(const char *client, int64_t day_pusd,
                                                     int64_t month_pusd));

#endif
