/* managed_pg.c - the managed clients in PostgreSQL (ledger.backend =
 * "postgresql"): the connections to the table `clients` of every instance
 * (pgledger.c, migration 3), its read, and the thread that keeps this
 * instance's set in step with the others' (the writes: managed_pgedit.c;
 * the merged config built from a read: managed.c).
 *
 * A write commits with NOTIFY orproxy_clients in the same transaction, so
 * the notification goes out exactly when the change is visible.  The thread
 * holds a second connection that LISTENs; on a notification it re-reads the
 * table and publishes the merged config (managed.c).  It also re-reads every
 * FULL_READ_MS (a lost notification is never a lasting difference) and after
 * every reconnect (notifications sent while it was away are gone).  While
 * PostgreSQL is unreachable the set read last stays in force: every merged
 * config is built from the last good result (managed.c), reloads included.
 * The thread reports upward by the callback managed.c gives it.
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
    managed_pg_changed_fn changed; /* the thread's call upward after a notification */
    void *changed_arg;
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

int managed_pg_read(struct pgconn *c, PGresult **out, char *err, size_t errlen)
{
    char why[256];

    if (pgconn_exec(c, select_sql, 0, NULL, out, why, sizeof why) != PGC_OK) {
        util_set_err(err, errlen, "cannot read the managed clients from PostgreSQL: %s", why);
        return -1;
    }
    return 0;
}

struct pgconn *managed_pg_writer(void)
{
    return P.w;
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
            int rc = P.changed(P.l, P.changed_arg);
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

int managed_pg_open(const struct orp_config *cfg, managed_pg_changed_fn changed, void *arg,
                    char *err, size_t errlen)
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
    P.changed = changed;
    P.changed_arg = arg;
    return 0;
}

void managed_pg_start(void)
{
    if (P.w == NULL || P.running)
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
    pgconn_free(P.w);
    pgconn_free(P.l);
    P.w = P.l = NULL;
}

