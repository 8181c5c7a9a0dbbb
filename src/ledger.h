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

#define LEDGER_SCHEMA_VERSION 1

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

enum cost_source { COST_NONE = 0, COST_UPSTREAM, COST_PRICING, COST_ESTIMATE };

struct ledger_record {
    char request_id[65];
    int64_t started_ms;             /* unix ms */
    char client[64];                /* key name or "anonymous" */
    char user[128];                 /* the request's "user" field */
    char route[32];
    char model[128];
    char served_model[128];
    char provider[64];
    int stream;
    int status;
    int attempts;
    int64_t prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens;
    int64_t cost_pusd;
    enum cost_source cost_source;
    char generation_id[96];
    char finish_reason[32];
    double latency_ms, ttfb_ms;     /* ttfb < 0: none */
    char error_class[48];
    char outcome[24];
};

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
const char *ledger_cost_source_name(enum cost_source s);

#endif
