/* managed_pg.c - the managed clients in PostgreSQL (ledger.backend =
 * "postgresql"): the table `clients` of every instance (pgledger.c,
 * migration 3), the writes, and the thread that keeps this instance's set
 * in step with the others'.
 *
 * A write commits with NOTIFY orproxy_clients in the same transaction, so
 * the notification goes out exactly when the change is visible.  The thread
 * holds a second connection that LISTENs; on a notification it re-reads the
 * table and publishes the merged config (managed.c).  It also re-reads every
 * FULL_READ_MS (a lost notification is never a lasting difference) and after
 * every reconnect (notifications sent while it was away are gone).  While
 * PostgreSQL is unreachable the set read last stays in force: every merged
 * config is built from the last good result (`last`), reloads included.
 *
 * The write connection is used under managed_g.mu only (the jobs thread's
 * writes, start-up and reloads on the main thread); the LISTEN connection by
 * the thread only.  Every statement is bounded by pgconn's timeout. */
#include "managed_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"
#include "util.h"

#define CHANNEL "orproxy_clients"
#define TIMEOUT_MS 2000
#define FULL_READ_MS 30000
#define RETRY_MS 1000
#define WAIT_SLICE_MS 250

struct managed_pg {
    struct pgconn *w;           /* writes and reads under managed_g.mu */
    struct pgconn *l;           /* LISTEN: the thread's */
    PGresult *last;             /* the last good read (under managed_g.mu) */
    pthread_t thread;
    int running;
    pthread_mutex_t mu;         /* guards stopping; cond wakes the thread */
    pthread_cond_t cond;
    int stopping;
};

static struct managed_pg P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static const char select_sql[] =
    "SELECT name, encode(key_sha256, 'hex'), encode(old_key_sha256, 'hex'), old_key_until_ms,"
    " admin, models, rpm, tpm, max_concurrent, budget_day_pusd, budget_month_pusd, expires_ms,"
    " defaults, created_ms, updated_ms FROM clients WHERE revoked_ms IS NULL ORDER BY name";

static int64_t col_i(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void col_hash(const PGresult *r, int row, int col, unsigned char out[32])
{
    if (PQgetisnull(r, row, col) || keys_unhex(PQgetvalue(r, row, col), out, 32) < 0)
        memset(out, 0, 32);
}

static void load_row(const PGresult *r, int i, struct orp_client *c)
{
    c->name = strdup(PQgetvalue(r, i, 0));
    col_hash(r, i, 1, c->key_sha256);
    col_hash(r, i, 2, c->old_key_sha256);
    c->old_key_until_ms = col_i(r, i, 3);
    c->admin = (int)col_i(r, i, 4);
    managed_load_models(PQgetvalue(r, i, 5), c);
    c->limits.rpm = col_i(r, i, 6);
    c->limits.tpm = col_i(r, i, 7);
    c->limits.max_concurrent = (int)col_i(r, i, 8);
    c->limits.budget_day_pusd = col_i(r, i, 9);
    c->limits.budget_month_pusd = col_i(r, i, 10);
    c->expires_ms = col_i(r, i, 11);
    managed_load_defaults(PQgetvalue(r, i, 12), &c->defaults);
    c->created_ms = col_i(r, i, 13);
    c->updated_ms = col_i(r, i, 14);
}

struct orp_config *managed_pg_merge(void)
{
    int cap;
    struct orp_config *m = managed_merge_begin(managed_g.base, &cap);

    for (int i = 0; m != NULL && P.last != NULL && i < PQntuples(P.last); i++) {
        struct orp_client *c = managed_merge_slot(m, &cap, PQgetvalue(P.last, i, 0));
        if (c != NULL)
            load_row(P.last, i, c);
    }
    return m;
}

/* Caller holds managed_g.mu: reads through c, publishes. */
static int republish_via(struct pgconn *c, char *err, size_t errlen)
{
    PGresult *r = NULL;
    struct orp_config *m;
    char why[256];

    if (pgconn_exec(c, select_sql, 0, NULL, &r, why, sizeof why) != PGC_OK) {
        util_set_err(err, errlen, "cannot read the managed clients from PostgreSQL: %s", why);
        return -1;
    }
    PQclear(P.last);
    P.last = r;
    if ((m = managed_pg_merge()) == NULL) {
        util_set_err(err, errlen, "cannot merge the managed clients: out of memory");
        return -1;
    }
    managed_install(m);
    return 0;
}

int managed_pg_republish(char *err, size_t errlen)
{
    return republish_via(P.w, err, errlen);
}

/* Sleeps ms unless asked to stop; 1 when stopping. */
static int nap(int ms)
{
    struct timespec ts = util_wall_after_ms(ms);
    int stop;
    pthread_mutex_lock(&P.mu);
    if (!P.stopping)
        pthread_cond_timedwait(&P.cond, &P.mu, &ts);
    stop = P.stopping;
    pthread_mutex_unlock(&P.mu);
    return stop;
}

/* The LISTEN loop (see the top comment). */
static void *listen_main(void *arg)
{
    int64_t next_read = 0;
    int was_up = 1, got;
    char err[512];

    (void)arg;
    while (!nap(0)) {
        if (!pgconn_connected(P.l)) {
            if (pgconn_exec(P.l, "LISTEN " CHANNEL, 0, NULL, NULL, err, sizeof err) != PGC_OK) {
                if (was_up)
                    log_warn("clients: PostgreSQL unreachable (%s); the managed clients read "
                             "last stay in force", err);
                was_up = 0;
                nap(RETRY_MS);
                continue;
            }
            if (!was_up)
                log_info("clients: PostgreSQL answers again; re-reading the managed clients");
            was_up = 1;
            next_read = 0; /* what was sent while away is lost: catch up */
        }
        if (util_mono_ms() >= next_read) {
            int rc;
            pthread_mutex_lock(&managed_g.mu);
            rc = republish_via(P.l, err, sizeof err);
            pthread_mutex_unlock(&managed_g.mu);
            if (rc < 0)
                log_warn("clients: %s; the managed clients read last stay in force", err);
            next_read = util_mono_ms() + (rc < 0 ? RETRY_MS : FULL_READ_MS);
        }
        if (pgconn_wait_notify(P.l, CHANNEL, WAIT_SLICE_MS, &got, err, sizeof err) != PGC_OK) {
            log_warn("clients: the LISTEN connection is lost (%s); reconnecting", err);
            was_up = 0;
        } else if (got > 0) {
            next_read = 0;
        }
    }
    return NULL;
}

int managed_pg_open(const struct orp_config *cfg, char *err, size_t errlen)
{
    struct pgconn_opts o = {.url = cfg->ledger_postgresql_url,
                            .password_file = cfg->ledger_postgresql_password_file,
                            .app_name = "orproxy clients",
                            .timeout_ms = TIMEOUT_MS};
    char why[512];

    if ((P.w = pgconn_new(&o, why, sizeof why)) == NULL ||
        (P.l = pgconn_new(&o, why, sizeof why)) == NULL) {
        util_set_err(err, errlen, "managed clients: %s", why);
        pgconn_free(P.w);
        P.w = NULL;
        return -1;
    }
    managed_g.pg = &P;
    return 0;
}

void managed_pg_start(void)
{
    if (managed_g.pg == NULL || P.running)
        return;
    P.stopping = 0;
    if (pthread_create(&P.thread, NULL, listen_main, NULL) != 0) {
        log_error("clients: cannot start the LISTEN thread; changes made on other instances "
                  "take effect here at the next reload");
        return;
    }
    P.running = 1;
}

void managed_pg_close(void)
{
    if (P.running) {
        pthread_mutex_lock(&P.mu);
        P.stopping = 1;
        pthread_cond_broadcast(&P.cond);
        pthread_mutex_unlock(&P.mu);
        pthread_join(P.thread, NULL);
        P.running = 0;
    }
    pthread_mutex_lock(&managed_g.mu);
    managed_g.pg = NULL;
    pthread_mutex_unlock(&managed_g.mu);
    pgconn_free(P.w);
    pgconn_free(P.l);
    PQclear(P.last);
    P.w = P.l = NULL;
    P.last = NULL;
}

/* ---- the writes ---- */

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
    else if (strcmp(pgconn_sqlstate(P.w), "23505") == 0)
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
    int rc = pgconn_exec(P.w, sql, n, p, &r, err, sizeof err);

    if (rc == PGC_OK && strcmp(PQcmdTuples(r), "1") != 0) {
        PQclear(r);
        pgconn_exec(P.w, "ROLLBACK", 0, NULL, NULL, NULL, 0);
        return managed_fail(res, none_status, none_code,
                            none_status == 409 ? "a client named '%s' exists already"
                                               : "no client named '%s'",
                            name);
    }
    PQclear(r);
    if (rc != PGC_OK) {
        pg_fail(rc, err, 0, res);
        if (rc == PGC_SQL)
            pgconn_exec(P.w, "ROLLBACK", 0, NULL, NULL, NULL, 0);
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
    if ((rc = pgconn_exec(P.w, "BEGIN", 0, NULL, NULL, err, sizeof err)) != PGC_OK) {
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
        rc = pgconn_exec(P.w, "NOTIFY " CHANNEL "; COMMIT", 0, NULL, NULL, err, sizeof err);
        if (rc != PGC_OK) {
            pg_fail(rc, err, rc == PGC_DOWN, res);
            if (rc == PGC_SQL)
                pgconn_exec(P.w, "ROLLBACK", 0, NULL, NULL, NULL, 0);
        } else if (republish_via(P.w, err, sizeof err) < 0) {
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
        pgconn_exec(P.w, "ROLLBACK", 0, NULL, NULL, NULL, 0);
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
        pgconn_exec(P.w, "ROLLBACK", 0, NULL, NULL, NULL, 0);
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
