/* managed_pgedit.c - the writes of managed.h in PostgreSQL (ledger.backend
 * = "postgresql"; managed_edit.c checks the body and hands over): each in one
 * transaction on the writer connection of managed_pg.c, ended by
 * "NOTIFY orproxy_clients; COMMIT" so every instance hears of it exactly
 * when it is visible, then the merged config published here before the
 * answer goes out. */
#include "managed_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"
#include "util.h"

#define CHANNEL "orproxy_clients"
#define W managed_pg_writer()

/* A failed statement into res: the server unreachable is 503 (nothing
 * changed, or, at COMMIT, maybe changed: the next read tells). */
static void pg_fail(int rc, const char *err, int at_commit, struct managed_result *res)
{
    if (rc == PGC_DOWN)
        managed_fail(res, 503, "database_unavailable",
                     at_commit ? "PostgreSQL was lost at commit; the change may or may not be "
                                 "saved (list the clients to see): %s"
                               : "PostgreSQL cannot be reached; nothing was changed: %s",
                     err);
    else if (strcmp(pgconn_sqlstate(W), "23505") == 0)
        managed_fail(res, 409, "name_taken", "a client of that name exists already");
    else
        managed_fail(res, 500, "ledger_unavailable", "the change was refused: %s", err);
}

/* Runs one statement of the open transaction; 1 row changed is success.
 * 0, or -1 (res filled, transaction rolled back). */
static int step(const char *sql, int n, const char *const *p, struct managed_result *res,
                unsigned none_status, const char *none_code, const char *name)
{
    PGresult *r = NULL;
    char err[300];
    int rc = pgconn_exec(W, sql, n, p, &r, err, sizeof err);

    if (rc == PGC_OK && strcmp(PQcmdTuples(r), "1") != 0) {
        PQclear(r);
        pgconn_exec(W, "ROLLBACK", 0, NULL, NULL, NULL, 0);
        return managed_fail(res, none_status, none_code,
                            none_status == 409 ? "a client named '%s' exists already"
                                               : "no client named '%s'",
                            name);
    }
    PQclear(r);
    if (rc != PGC_OK) {
        pg_fail(rc, err, 0, res);
        if (rc == PGC_SQL)
            pgconn_exec(W, "ROLLBACK", 0, NULL, NULL, NULL, 0);
        return -1;
    }
    return 0;
}

/* Takes the lock, checks the name, opens the transaction.  0, or -1 (res
 * filled, lock released). */
static int begin(const char *name, int must_exist, struct managed_result *res)
{
    char err[300];
    int rc;

    pthread_mutex_lock(&managed_g.mu);
    if (managed_check_name(name, must_exist, res) < 0) {
        pthread_mutex_unlock(&managed_g.mu);
        return -1;
    }
    if ((rc = pgconn_exec(W, "BEGIN", 0, NULL, NULL, err, sizeof err)) != PGC_OK) {
        pg_fail(rc, err, 0, res);
        pthread_mutex_unlock(&managed_g.mu);
        return -1;
    }
    return 0;
}

/* Ends a write begun by begin: on success NOTIFY, COMMIT (one round trip)
 * and the merged config published here at once; releases the lock. */
static void end(int failed, unsigned ok_status, struct managed_result *res)
{
    char err[300];
    int rc;

    if (!failed) {
        rc = pgconn_exec(W, "NOTIFY " CHANNEL "; COMMIT", 0, NULL, NULL, err, sizeof err);
        if (rc != PGC_OK) {
            pg_fail(rc, err, rc == PGC_DOWN, res);
            if (rc == PGC_SQL)
                pgconn_exec(W, "ROLLBACK", 0, NULL, NULL, NULL, 0);
        } else if (managed_republish(NULL, err, sizeof err) < 0) {
            /* Saved, and the other instances were told; here the LISTEN
             * thread re-reads it as soon as the database answers. */
            log_error("admin: %s", err);
            managed_fail(res, 500, "publish_failed", "the change is saved but not in effect yet: %s",
                         err);
        } else {
            res->status = ok_status;
        }
    }
    pthread_mutex_unlock(&managed_g.mu);
}

/* UPDATE clients SET updated_ms = now, <e's columns> WHERE name = $2 AND
 * live.  Parameters as text; the server casts them to the columns' types. */
static int apply(const char *name, const struct managed_change *e, int64_t now,
                 struct managed_result *res)
{
    char sql[700], num[MANAGED_MAX_COLS + 1][24];
    const char *p[MANAGED_MAX_COLS + 2];
    size_t used = (size_t)snprintf(sql, sizeof sql, "UPDATE clients SET updated_ms = $1");

    snprintf(num[0], sizeof num[0], "%lld", (long long)now);
    p[0] = num[0];
    p[1] = name;
    for (int i = 0; i < e->n; i++) {
        const struct managed_col *v = &e->v[i];
        used += (size_t)snprintf(sql + used, sizeof sql - used, ", %s = $%d", v->name, i + 3);
        snprintf(num[i + 1], sizeof num[0], "%lld", (long long)v->i);
        p[i + 2] = v->kind == 'i' ? num[i + 1] : v->kind == 't' ? (v->text ? v->text : "") : NULL;
    }
    snprintf(sql + used, sizeof sql - used, " WHERE name = $2 AND revoked_ms IS NULL");
    return step(sql, e->n + 2, p, res, 404, "unknown_client", name);
}

void managed_pg_create(const struct managed_change *e, struct managed_result *res)
{
    /* A revoked name may be used again: its row starts over.  A live one
     * makes the insert change nothing (409); two instances creating the
     * same name at once meet on the primary key, and the second sees the
     * first's row once it commits. */
    static const char sql[] =
        "INSERT INTO clients (name, key_sha256, created_ms, updated_ms) VALUES ($1, decode($2, 'hex'),"
        " $3, $3) ON CONFLICT (name) DO UPDATE SET key_sha256 = EXCLUDED.key_sha256,"
        " old_key_sha256 = NULL, old_key_until_ms = NULL, admin = 0, models = '[]', rpm = 0,"
        " tpm = 0, max_concurrent = 0, budget_day_pusd = 0, budget_month_pusd = 0,"
        " expires_ms = NULL, defaults = '{}', created_ms = EXCLUDED.created_ms,"
        " updated_ms = EXCLUDED.updated_ms, revoked_ms = NULL WHERE clients.revoked_ms IS NOT NULL";
    int64_t now = util_wall_ms();
    uint8_t h[32];
    char hex[65], ms[24];
    const char *p[3] = {e->name, hex, ms};
    int bad;

    if (begin(e->name, 0, res) < 0)
        return;
    bad = managed_new_key(res, h) < 0;
    if (!bad) {
        keys_hex(h, 32, hex);
        snprintf(ms, sizeof ms, "%lld", (long long)now);
        bad = step(sql, 3, p, res, 409, "name_taken", e->name) < 0 || apply(e->name, e, now, res) < 0;
    } else {
        pgconn_exec(W, "ROLLBACK", 0, NULL, NULL, NULL, 0);
    }
    end(bad, 201, res);
    if (res->status != 201)
        memset(res->key, 0, sizeof res->key);
    else
        log_info("admin: managed client '%s' created", e->name);
}

void managed_pg_update(const char *name, const struct managed_change *e, struct managed_result *res)
{
    if (begin(name, 1, res) < 0)
        return;
    end(apply(name, e, util_wall_ms(), res) < 0, 200, res);
    if (res->status == 200)
        log_info("admin: managed client '%s' edited", name);
}

void managed_pg_rotate(const char *name, int64_t grace_s, int64_t now, struct managed_result *res)
{
    static const char sql[] =
        "UPDATE clients SET old_key_sha256 = CASE WHEN $3::bigint > 0 THEN key_sha256 END,"
        " old_key_until_ms = CASE WHEN $3::bigint > 0 THEN $4::bigint + $3::bigint * 1000 END,"
        " key_sha256 = decode($2, 'hex'), updated_ms = $4 WHERE name = $1 AND revoked_ms IS NULL";
    uint8_t h[32];
    char hex[65], g[24], ms[24];
    const char *p[4] = {name, hex, g, ms};
    int bad;

    if (begin(name, 1, res) < 0)
        return;
    bad = managed_new_key(res, h) < 0;
    if (!bad) {
        keys_hex(h, 32, hex);
        snprintf(g, sizeof g, "%lld", (long long)grace_s);
        snprintf(ms, sizeof ms, "%lld", (long long)now);
        bad = step(sql, 4, p, res, 404, "unknown_client", name) < 0;
    } else {
        pgconn_exec(W, "ROLLBACK", 0, NULL, NULL, NULL, 0);
    }
    end(bad, 200, res);
}

void managed_pg_revoke(const char *name, struct managed_result *res)
{
    static const char sql[] =
        "UPDATE clients SET revoked_ms = $2, updated_ms = $2, key_sha256 = NULL,"
        " old_key_sha256 = NULL, old_key_until_ms = NULL WHERE name = $1 AND revoked_ms IS NULL";
    char ms[24];
    const char *p[2] = {name, ms};

    if (begin(name, 1, res) < 0)
        return;
    snprintf(ms, sizeof ms, "%lld", (long long)util_wall_ms());
    end(step(sql, 2, p, res, 404, "unknown_client", name) < 0, 204, res);
    if (res->status == 204)
        log_info("admin: managed client '%s' revoked", name);
}
