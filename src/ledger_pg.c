/* ledger_pg.c - the ledger writer's PostgreSQL side.  See ledger_pg.h.
 *
 * Order is what makes the spool safe: once a row has gone to the spool,
 * every later row and cost update goes there too until a replay has
 * emptied it, so the database sees them in the order the writer committed
 * them, and an update never arrives before the row it changes.  A retry is
 * due after a backoff (RETRY_MIN_MS doubling to RETRY_MAX_MS), so an
 * outage costs one refused connect per backoff, not one per batch.  Keys
 * are assigned before the first attempt and travel with the row, so a
 * batch whose outcome is unknown is spooled whole and its replay skips
 * what did commit. */
#include "ledger_pg.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pgconn.h"
#include "pgledger.h"
#include "spool.h"
#include "util.h"

#define UPDATE_KEY "~cost"   /* the spool's mark of a cost update */
#define DROPPED_KEY "-"      /* a row the server refused, dropped */
#define TIMEOUT_MS 5000      /* a connect or one statement */
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 5000
#define GROWTH_LOG_BYTES 65536 /* log the spool's size from here, at each doubling */
#define REPLAY_TURN_ROWS 10000 /* rows replayed per writer wake-up (about 0.5 s) */

static struct {
    int enabled, migrated;
    struct pgconn *c;
    struct spool *sp;
    struct pgl_keys keys;
    char instance[256];
    char spool_path[4096];
    struct pgl_row *buf, *scratch; /* PGLEDGER_CHUNK rows each */
    size_t n;
    size_t turn_rows;       /* replayed in this turn */
    uint64_t replayed_rows; /* since the spool was last empty */
    int paused;             /* the last turn stopped at REPLAY_TURN_ROWS */
    int turns;              /* replay turns since the spool was last empty */
    int backoff_ms;
    int64_t next_try_ms;
    uint64_t logged_bytes;
    _Atomic int up, spool_failed;
    _Atomic uint64_t written, dropped, statements, spooled, bytes;
} P;

/* The spool's size for other threads (the spool itself is this thread's). */
static uint64_t note_bytes(void)
{
    uint64_t b = spool_bytes(P.sp);
    atomic_store(&P.bytes, b);
    return b;
}

static int64_t now_ms(void)
{
    return util_mono_ms();
}

/* Migrates once per process (another instance may have done it). */
static int schema(char *err, size_t errlen)
{
    int v = 0, applied = 0, rc;

    if (P.migrated)
        return PGC_OK;
    rc = pgledger_migrate(P.c, P.instance, &v, &applied, err, errlen);
    atomic_fetch_add(&P.statements, 1);
    if (rc == PGC_OK) {
        P.migrated = 1;
        log_info("ledger: postgresql schema at version %d (%d migration%s applied here)", v,
                 applied, applied == 1 ? "" : "s");
    }
    return rc;
}

/* The last refusal was about the row itself (a data exception, class 22,
 * or a constraint, class 23): splitting the batch finds it. */
static int row_refused(void)
{
    const char *s = pgconn_sqlstate(P.c);
    return strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0;
}

static void drop_row(struct pgl_row *r, const char *what, const char *err)
{
    atomic_fetch_add(&P.dropped, 1);
    log_error("ledger: postgresql refused %s %s: %s (dropped there; kept in the local ledger; "
              "counted in orproxy_ledger_postgresql_dropped_total)",
              what, what[0] == 'r' ? r->rec.request_id : r->rec.generation_id, err);
    snprintf(r->key, sizeof r->key, "%s", DROPPED_KEY);
}

/* Inserts rows[0..n), splitting on a row refused for itself. */
static int send_inserts(struct pgl_row *rows, size_t n, char *err, size_t errlen)
{
    size_t ins = 0;
    int rc = pgledger_insert(P.c, P.instance, rows, n, &ins, err, errlen);

    atomic_fetch_add(&P.statements, (n + PGLEDGER_CHUNK - 1) / PGLEDGER_CHUNK);
    atomic_fetch_add(&P.written, ins);
    if (rc != PGC_SQL || !row_refused())
        return rc;
    if (n == 1) {
        drop_row(rows, "row", err);
        return PGC_OK;
    }
    rc = send_inserts(rows, n / 2, err, errlen);
    return rc == PGC_OK ? send_inserts(rows + n / 2, n - n / 2, err, errlen) : rc;
}

static int send_update(struct pgl_row *r, char *err, size_t errlen)
{
    static const char sql[] =
        "UPDATE requests SET cost_pusd = $1, cost_source = $2 WHERE generation_id = $3";
    char cost[32];
    const char *p[3] = {cost, ledger_cost_source_name(r->rec.cost_source), r->rec.generation_id};
    int rc;

    snprintf(cost, sizeof cost, "%" PRId64, r->rec.cost_pusd);
    rc = pgconn_exec(P.c, sql, 3, p, NULL, err, errlen);
    atomic_fetch_add(&P.statements, 1);
    if (rc == PGC_SQL && row_refused()) {
        drop_row(r, "cost update", err);
        return PGC_OK;
    }
    return rc;
}

/* Sends rows[0..n) in order: runs of inserts, updates one by one.
 * PGC_OK, or PGC_DOWN (not now: unreachable, or refused as a whole). */
static int send_rows(struct pgl_row *rows, size_t n, char *err, size_t errlen)
{
    size_t i = 0;
    int rc = schema(err, errlen);

    while (rc == PGC_OK && i < n) {
        size_t j = i;
        if (strcmp(rows[i].key, UPDATE_KEY) == 0) {
            rc = send_update(&rows[i], err, errlen);
            i++;
            continue;
        }
        while (j < n && strcmp(rows[j].key, UPDATE_KEY) != 0)
            j++;
        rc = send_inserts(rows + i, j - i, err, errlen);
        i = j;
    }
    /* A refusal of the statement as a whole (no table, no privilege, a
     * read-only server) will not go away by splitting: keep the rows. */
    return rc == PGC_OK ? PGC_OK : PGC_DOWN;
}

static void went_down(const char *err)
{
    P.backoff_ms = P.backoff_ms == 0 ? RETRY_MIN_MS
                   : P.backoff_ms >= RETRY_MAX_MS / 2 ? RETRY_MAX_MS
                                                      : P.backoff_ms * 2;
    P.next_try_ms = now_ms() + P.backoff_ms;
    if (atomic_exchange(&P.up, 0))
        log_warn("ledger: postgresql unavailable: %s; rows spool to %s until it is back", err,
                 P.spool_path);
}

static void went_up(void)
{
    P.backoff_ms = 0;
    P.next_try_ms = 0;
    if (!atomic_exchange(&P.up, 1))
        log_info("ledger: postgresql reachable again");
}

static int replay_sink(const struct pgl_row *rows, size_t n, void *arg)
{
    char *err = arg;

    if (P.turn_rows >= REPLAY_TURN_ROWS) {
        P.paused = 1; /* the rest in the next turn: the writer has SQLite to commit */
        return 1;
    }
    memcpy(P.scratch, rows, n * sizeof *rows);
    if (send_rows(P.scratch, n, err, 512) != PGC_OK)
        return 1;
    P.turn_rows += n;
    P.replayed_rows += n;
    return 0;
}

/* One turn of replay: at most REPLAY_TURN_ROWS rows, so a long spool (a
 * long outage) never holds the writer for long.  0 when the spool is empty
 * afterwards; 1 when rows are left (a pause: due again at once; or a
 * failure: after a backoff). */
static int replay(void)
{
    char err[512] = "";
    int rc;

    if (spool_bytes(P.sp) == 0)
        return 0;
    P.turn_rows = 0;
    P.paused = 0;
    P.turns++;
    rc = spool_replay(P.sp, replay_sink, err, PGLEDGER_CHUNK, err, sizeof err);
    note_bytes();
    if (rc == 0) {
        went_up();
        P.logged_bytes = 0;
        log_info("ledger: the spool is replayed into postgresql (%" PRIu64 " rows in %d turn%s)",
                 P.replayed_rows, P.turns, P.turns == 1 ? "" : "s");
        P.replayed_rows = 0;
        P.turns = 0;
        return 0;
    }
    if (rc > 0 && P.paused) {
        went_up();
        return 1;
    }
    went_down(err);
    if (rc < 0)
        log_error("ledger: %s", err);
    return 1;
}

static void spool_rows(struct pgl_row *rows, size_t n)
{
    char err[512] = "";
    size_t k = 0;
    uint64_t bytes;

    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].key, DROPPED_KEY) != 0)
            rows[k++] = rows[i];
    if (k == 0)
        return;
    if (spool_append(P.sp, rows, k, err, sizeof err) < 0) {
        atomic_store(&P.spool_failed, 1);
        atomic_fetch_add(&P.dropped, k);
        log_error("ledger: %s: %zu rows not kept for postgresql (kept in the local ledger; counted "
                  "in orproxy_ledger_postgresql_dropped_total)",
                  err, k);
        return;
    }
    atomic_store(&P.spool_failed, 0);
    atomic_fetch_add(&P.spooled, k);
    bytes = note_bytes();
    if (bytes >= GROWTH_LOG_BYTES && bytes >= 2 * P.logged_bytes) {
        log_warn("ledger: the spool %s holds %" PRIu64 " bytes waiting for postgresql",
                 P.spool_path, bytes);
        P.logged_bytes = bytes;
    }
}

void ledgerpg_add(const struct ledger_record *rec, int is_update)
{
    struct pgl_row *r;

    if (!P.enabled)
        return;
    r = &P.buf[P.n++];
    r->rec = *rec;
    if (is_update)
        snprintf(r->key, sizeof r->key, "%s", UPDATE_KEY);
    else
        pgledger_key_next(&P.keys, r->key);
    if (P.n == PGLEDGER_CHUNK)
        ledgerpg_flush();
}

void ledgerpg_flush(void)
{
    char err[512] = "";
    size_t n = P.n;

    if (!P.enabled || n == 0)
        return;
    P.n = 0;
    if (spool_bytes(P.sp) > 0 && (now_ms() < P.next_try_ms || replay() != 0)) {
        spool_rows(P.buf, n); /* behind what waits there already */
        return;
    }
    if (!atomic_load(&P.up) && now_ms() < P.next_try_ms) {
        spool_rows(P.buf, n);
        return;
    }
    if (send_rows(P.buf, n, err, sizeof err) == PGC_OK) {
        went_up();
        return;
    }
    went_down(err);
    spool_rows(P.buf, n);
}

void ledgerpg_tick(int force)
{
    if (P.enabled && spool_bytes(P.sp) > 0 && (force || now_ms() >= P.next_try_ms))
        replay();
}

/* A server that answered and said no: retrying will not help. */
static int plainly_wrong(const char *err)
{
    static const char *const says[] = {"authentication failed", "no password supplied",
                                       "does not exist", "permission denied",
                                       "password is required"};
    for (size_t i = 0; i < sizeof says / sizeof says[0]; i++)
        if (strstr(err, says[i]) != NULL)
            return 1;
    return 0;
}

static int open_spool(const struct orp_config *cfg, char *err, size_t errlen)
{
    struct spool_scan scan = {0};

    snprintf(P.spool_path, sizeof P.spool_path, "%s/postgresql.spool", cfg->state_dir);
    P.sp = spool_open(P.spool_path, &scan, err, errlen);
    if (P.sp == NULL)
        return -1;
    if (note_bytes() > 0)
        log_info("ledger: %" PRIu64 " rows wait in %s from an earlier run; replayed once "
                 "postgresql answers",
                 scan.records, P.spool_path);
    if (scan.corrupt > 0 || scan.torn_bytes > 0)
        log_warn("ledger: %s: %" PRIu64 " damaged records skipped, %" PRIu64
                 " bytes of a torn last write cut off",
                 P.spool_path, scan.corrupt, scan.torn_bytes);
    return 0;
}

/* instance.name, or hostname:listen.port. */
static void instance_name(const struct orp_config *cfg)
{
    util_instance_name(cfg->instance_name, cfg->listen_port, P.instance, sizeof P.instance);
}

int ledgerpg_open(const struct orp_config *cfg, char *err, size_t errlen)
{
    char app[300], why[512] = "";
    struct pgconn_opts o = {.url = cfg->ledger_postgresql_url,
                            .password_file = cfg->ledger_postgresql_password_file,
                            .app_name = app,
                            .timeout_ms = TIMEOUT_MS};
    int rc;

    memset(&P, 0, sizeof P);
    if (strcmp(cfg->ledger_backend, "postgresql") != 0)
        return 0;
    instance_name(cfg);
    snprintf(app, sizeof app, "orproxy %s", P.instance);
    P.buf = calloc(PGLEDGER_CHUNK, sizeof *P.buf);
    P.scratch = calloc(PGLEDGER_CHUNK, sizeof *P.scratch);
    if (P.buf == NULL || P.scratch == NULL || pgledger_keys_init(&P.keys) < 0) {
        util_set_err(err, errlen, "postgresql ledger: out of memory or no random bytes");
        goto fail;
    }
    if ((P.c = pgconn_new(&o, why, sizeof why)) == NULL) {
        util_set_err(err, errlen, "postgresql ledger: %s", why);
        goto fail;
    }
    if (open_spool(cfg, err, errlen) < 0)
        goto fail;
    P.enabled = 1;
    rc = schema(why, sizeof why);
    if (rc == PGC_SQL || (rc == PGC_DOWN && plainly_wrong(why))) {
        util_set_err(err, errlen, "postgresql ledger: %s", why);
        goto fail;
    }
    if (rc == PGC_OK) {
        atomic_store(&P.up, 1);
    } else {
        log_warn("ledger: postgresql unreachable at start: %s; rows spool to %s until it "
                 "answers",
                 why, P.spool_path);
        P.backoff_ms = RETRY_MIN_MS;
        P.next_try_ms = now_ms() + RETRY_MIN_MS;
    }
    return 0;
fail:
    ledgerpg_close();
    memset(&P, 0, sizeof P);
    return -1;
}

int ledgerpg_enabled(void)
{
    return P.enabled;
}

void ledgerpg_close(void)
{
    uint64_t left;

    if (P.enabled) {
        ledgerpg_flush();
        ledgerpg_tick(1);
        left = spool_bytes(P.sp);
        if (left > 0)
            log_warn("ledger: %" PRIu64 " bytes of rows stay in %s; the next start replays them",
                     left, P.spool_path);
    }
    spool_close(P.sp);
    pgconn_free(P.c);
    free(P.buf);
    free(P.scratch);
    P.sp = NULL;
    P.c = NULL;
    P.buf = P.scratch = NULL;
    P.n = 0;
}

void ledgerpg_get_stats(struct ledgerpg_stats *out)
{
    out->enabled = P.enabled;
    out->up = atomic_load(&P.up);
    out->written = atomic_load(&P.written);
    out->dropped = atomic_load(&P.dropped);
    out->statements = atomic_load(&P.statements);
    out->spooled = atomic_load(&P.spooled);
    out->spool_bytes = atomic_load(&P.bytes);
    out->spool_failed = atomic_load(&P.spool_failed);
}
