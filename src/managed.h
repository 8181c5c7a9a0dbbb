/* managed.h - managed clients: the clients created, edited, rotated and
 * revoked through /admin/v1/clients, kept in the ledger database's
 * `clients` table (ledger.h, schema version 2; only SHA-256 key hashes), or,
 * with ledger.backend = "postgresql", in PostgreSQL's (managed_pg.c: shared
 * by every instance, a change on one reaching the others by NOTIFY).
 *
 * They join the config file's clients in one merged config (config.h:
 * `base`, `n_base_clients`): the file's clients first, the managed ones
 * after.  Every change publishes a new merged config to every worker
 * through the publisher main.c registers (worker_set_config, as a reload
 * does), and a worker adopts it when its next request starts (front.h:
 * `adopt`), so a created or rotated key works, and a revoked one fails, from
 * the very next request on every worker.  A reload re-merges the managed
 * clients onto the new file config; a config client keeps its name (a
 * managed one with the same name is left out, with a warning).
 *
 * Threads: managed_start, managed_rebase and managed_stop on the main
 * thread; the writes on the jobs thread (jobs.h), never on a worker; one
 * mutex orders them with each other and with reloads. */
#ifndef ORP_MANAGED_H
#define ORP_MANAGED_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>

#include "config.h"
#include "keys.h"

/* Hands merged to every worker and to housekeeping (borrowed: take your
 * own references). */
typedef void (*managed_publish_fn)(struct orp_config *merged, void *arg);

/* Start-up, after ledger_open: loads the managed clients of
 * file_cfg->ledger_path and returns the merged config (a reference for the
 * caller), taking over the caller's reference to file_cfg.  NULL (err set)
 * when the table cannot be read. */
struct orp_config *managed_start(struct orp_config *file_cfg, char *err, size_t errlen);
void managed_set_publisher(managed_publish_fn fn, void *arg);
/* A reload: file_cfg (its reference taken over) becomes the base; the
 * merged config is published and returned (a reference for the caller). */
struct orp_config *managed_rebase(struct orp_config *file_cfg);
/* The config workers were last handed (a reference for the caller). */
struct orp_config *managed_current(void);
void managed_stop(void);

/* The outcome of a write: an HTTP status (201, 200, 204; 400, 404, 409,
 * 500; 503 when PostgreSQL cannot be reached) with code and message for an error, and a new key when one was
 * made (shown once, never stored). */
struct managed_result {
    unsigned status;
    const char *code;
    char msg[256];
    char key[KEYS_GENERATED_LEN + 1];
    int64_t until_ms;           /* rotate: the old key works until then (0: not at all) */
};

/* The name rule: 1-63 characters of [A-Za-z0-9._-]. */
int managed_valid_name(const char *name);

/* body is the parsed request body (strictly checked here: unknown fields,
 * wrong types, negative limits are 400).  db: a read-write connection to the
 * ledger.  Each publishes the new merged config before it returns. */
void managed_create(sqlite3 *db, const cJSON *body, struct managed_result *res);
void managed_edit(sqlite3 *db, const char *name, const cJSON *body, struct managed_result *res);
void managed_rotate(sqlite3 *db, const char *name, const cJSON *body, struct managed_result *res);
void managed_revoke(sqlite3 *db, const char *name, struct managed_result *res);

/* Unix ms as "2026-12-01T04:30:00Z" (buf holds 21 bytes or more). */
void managed_iso_time(int64_t ms, char *buf, size_t n);

#endif
