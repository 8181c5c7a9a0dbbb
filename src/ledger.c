/* ledger.c - the usage ledger's writer.  See ledger.h for the contract.
 *
 * Submitters (worker threads) append a heap copy of the record to a
 * mutex-protected FIFO and return; the mutex is never held across I/O.  The
 * writer thread wakes when a batch is full or the flush window has passed,
 * takes the whole FIFO at once, and writes it in one transaction (plus the
 * optional JSON-lines copy).  A transaction that fails (a lock held by
 * another process, a full disk) keeps its batch: the writer puts it back at
 * the head of the FIFO and tries again after a backoff (RETRY_MIN_MS
 * doubling to RETRY_MAX_MS), because those rows are costs that budgets are
 * reseeded from at the next start.  The batch being written still counts
 * against ledger.queue_max, so memory stays bounded: only when the queue is
 * full are new records dropped (counted and logged).  A record the database
 * refuses for itself (a constraint) would block the queue forever, so that
 * one record alone is dropped.  On close the writer drains the FIFO,
 * retrying for at most CLOSE_RETRY_MS, so a SIGTERM loses nothing unless the
 * database stays unwritable that long.  With ledger.backend = "postgresql",
 * each committed batch then goes, in order, to the shared database or its
 * spool (ledger_pg.h), on this same thread. */
#include "ledger.h"
#include "ledger_pg.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pricing.h"
#include "util.h"

#define BATCH_WAKE 256 /* wake the writer early once this many are queued */
/* Rows written between two sched_yield()s.  A batch of 256 rows is about
 * 1.1-1.7 ms of CPU (SQLite's inserts, about 4-6 us a row); run in one go,
 * it held a core that a worker woken meanwhile had to wait for: the
 * scheduler lets a running task finish its slice (CFS's wakeup granularity,
 * EEVDF's run-to-parity), so at c=1 about one request per batch waited a
 * whole ~1.5 ms (perf sched timehist: the worker's scheduling delay equal
 * to the writer's run time).  Yielding every few rows bounds that wait to
 * about 60 us; with nothing else runnable on the core the yield returns at
 * once.  The writer keeps its normal priority, so a saturated machine
 * cannot starve it (SCHED_IDLE would, and an unprivileged thread cannot
 * leave SCHED_IDLE again). */
#define YIELD_ROWS 12
#define RETRY_MIN_MS 50 /* first backoff after a failed batch */
#define RETRY_MAX_MS 5000
#define CLOSE_RETRY_MS 10000 /* how long ledger_close() keeps retrying */

/* What write_batch() did with its batch. */
enum batch_rc { BATCH_DONE, BATCH_RETRY };

enum op { OP_INSERT, OP_UPDATE_COST };

struct item {
    enum op op;
    struct ledger_record rec;    /* OP_INSERT; for OP_UPDATE_COST: generation_id, cost */
    STAILQ_ENTRY(item) link;
};
STAILQ_HEAD(item_list, item);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    struct item_list q; /* FIFO: submitted, not yet taken by the writer */
    size_t count, max;
    size_t inflight; /* records the writer holds (being written or awaiting retry) */
    int flush_ms;
    int stopping, running;
    sqlite3 *db;
    sqlite3_stmt *ins, *upd;
    FILE *jsonl;
    atomic_uint_fast64_t submitted, written, dropped;
    atomic_int healthy;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER,
       .q = STAILQ_HEAD_INITIALIZER(L.q)};

static const char insert_sql[] =
    "INSERT INTO requests (request_id, started_at, started_ms, client, user, route, model,"
    " served_model, provider, stream, status, attempts, prompt_tokens, completion_tokens,"
    " total_tokens, cached_tokens, reasoning_tokens, cost_pusd, cost_source, generation_id,"
    " finish_reason, latency_ms, ttfb_ms, error_class, outcome)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

static const char update_sql[] =
    "UPDATE requests SET cost_pusd = ?, cost_source = ? WHERE generation_id = ?";

static int read_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st;

    *version = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* Brings the schema to LEDGER_SCHEMA_VERSION in one IMMEDIATE transaction:
 * the version is read under the write lock, so two processes opening one
 * new ledger together migrate it once. */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    int version;
    char *msg = NULL;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    if (read_version(db, &version) < 0)
        goto fail;
    if (version > LEDGER_SCHEMA_VERSION) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        snprintf(err, errlen, "ledger schema version %d is newer than this orproxy (%d)", version,
                 LEDGER_SCHEMA_VERSION);
        return -1;
    }
    if (version < 1 &&
        sqlite3_exec(db, LEDGER_SCHEMA_V1 "PRAGMA user_version = 1;", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    /* Each later version: its DDL and the data it needs moved. */
    if (version < 2 && sqlite3_exec(db, LEDGER_SCHEMA_V2 LEDGER_ROLLUP_BACKFILL "PRAGMA user_version = 2;",
                                    NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot bring the ledger schema to version %d: %s", LEDGER_SCHEMA_VERSION,
             msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static void iso_time(int64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03dZ", date, (int)(ms % 1000));
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s[0] != '\0')
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int insert_one(const struct ledger_record *r)
{
    sqlite3_stmt *st = L.ins;
    char when[40];
    int i = 1, rc;

    iso_time(r->started_ms, when, sizeof when);
    sqlite3_reset(st);
    sqlite3_bind_text(st, i++, r->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, i++, when, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, i++, r->started_ms);
    sqlite3_bind_text(st, i++, r->client[0] ? r->client : "anonymous", -1, SQLITE_STATIC);
    bind_text_or_null(st, i++, r->user);
    sqlite3_bind_text(st, i++, r->route, -1, SQLITE_STATIC);
    bind_text_or_null(st, i++, r->model);
    bind_text_or_null(st, i++, r->served_model);
    bind_text_or_null(st, i++, r->provider);
    sqlite3_bind_int(st, i++, r->stream);
    sqlite3_bind_int(st, i++, r->status);
    sqlite3_bind_int(st, i++, r->attempts);
    sqlite3_bind_int64(st, i++, r->prompt_tokens);
    sqlite3_bind_int64(st, i++, r->completion_tokens);
    sqlite3_bind_int64(st, i++, r->total_tokens);
    sqlite3_bind_int64(st, i++, r->cached_tokens);
    sqlite3_bind_int64(st, i++, r->reasoning_tokens);
    sqlite3_bind_int64(st, i++, r->cost_pusd);
    sqlite3_bind_text(st, i++, ledger_cost_source_name(r->cost_source), -1, SQLITE_STATIC);
    bind_text_or_null(st, i++, r->generation_id);
    bind_text_or_null(st, i++, r->finish_reason);
    sqlite3_bind_double(st, i++, r->latency_ms);
    if (r->ttfb_ms >= 0)
        sqlite3_bind_double(st, i++, r->ttfb_ms);
    else
        sqlite3_bind_null(st, i++);
    bind_text_or_null(st, i++, r->error_class);
    bind_text_or_null(st, i++, r->outcome);
    rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int update_one(const struct ledger_record *r)
{
    sqlite3_stmt *st = L.upd;
    int rc;

    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, r->cost_pusd);
    sqlite3_bind_text(st, 2, ledger_cost_source_name(r->cost_source), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->generation_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void jsonl_write(const struct ledger_record *r)
{
    cJSON *o = cJSON_CreateObject();
    char when[40], *line;

    if (o == NULL)
        return;
    iso_time(r->started_ms, when, sizeof when);
    cJSON_AddStringToObject(o, "request_id", r->request_id);
    cJSON_AddStringToObject(o, "started_at", when);
    cJSON_AddStringToObject(o, "client", r->client[0] ? r->client : "anonymous");
    if (r->user[0])
        cJSON_AddStringToObject(o, "user", r->user);
    cJSON_AddStringToObject(o, "route", r->route);
    if (r->model[0])
        cJSON_AddStringToObject(o, "model", r->model);
    if (r->served_model[0])
        cJSON_AddStringToObject(o, "served_model", r->served_model);
    if (r->provider[0])
        cJSON_AddStringToObject(o, "provider", r->provider);
    cJSON_AddBoolToObject(o, "stream", r->stream);
    cJSON_AddNumberToObject(o, "status", r->status);
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)r->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", (double)r->total_tokens);
    cJSON_AddNumberToObject(o, "cached_tokens", (double)r->cached_tokens);
    cJSON_AddNumberToObject(o, "reasoning_tokens", (double)r->reasoning_tokens);
    cJSON_AddNumberToObject(o, "cost_pusd", (double)r->cost_pusd);
    cJSON_AddStringToObject(o, "cost_source", ledger_cost_source_name(r->cost_source));
    if (r->generation_id[0])
        cJSON_AddStringToObject(o, "generation_id", r->generation_id);
    if (r->finish_reason[0])
        cJSON_AddStringToObject(o, "finish_reason", r->finish_reason);
    cJSON_AddNumberToObject(o, "latency_ms", r->latency_ms);
    if (r->ttfb_ms >= 0)
        cJSON_AddNumberToObject(o, "ttfb_ms", r->ttfb_ms);
    if (r->error_class[0])
        cJSON_AddStringToObject(o, "error_class", r->error_class);
    cJSON_AddStringToObject(o, "outcome", r->outcome);
    line = cJSON_PrintUnformatted(o);
    if (line != NULL) {
        fputs(line, L.jsonl);
        fputc('\n', L.jsonl);
        free(line);
    }
    cJSON_Delete(o);
}

/* A failure the same statement would hit again whatever the timing: the
 * record itself is refused, so retrying it would block the queue. */
static int permanent_error(int code)
{
    switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        return 1;
    default:
        return 0;
    }
}

/* Writes *list in one transaction.  BATCH_DONE: committed (and *list is
 * still the caller's to free).  BATCH_RETRY: nothing was committed; *list
 * holds what to try again (a record refused for itself has been unlinked,
 * freed and counted as dropped). */
static enum batch_rc write_batch(struct item_list *list, size_t *n)
{
    struct item *it;
    size_t ok = 0;
    char *msg = NULL;

    if (sqlite3_exec(L.db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    STAILQ_FOREACH(it, list, link) {
        if ((it->op == OP_INSERT ? insert_one(&it->rec) : update_one(&it->rec)) < 0) {
            int code = sqlite3_extended_errcode(L.db);
            msg = sqlite3_mprintf("%s", sqlite3_errmsg(L.db));
            sqlite3_exec(L.db, "ROLLBACK", NULL, NULL, NULL);
            if (permanent_error(code)) {
                STAILQ_REMOVE(list, it, item, link);
                (*n)--;
                atomic_fetch_add(&L.dropped, 1);
                log_error("ledger: record %s refused: %s (dropped; counted in "
                          "orproxy_ledger_dropped_total)",
                          it->op == OP_INSERT ? it->rec.request_id : it->rec.generation_id,
                          msg ? msg : "?");
                sqlite3_free(msg);
                free(it);
                return BATCH_RETRY;
            }
            goto fail;
        }
        if (++ok % YIELD_ROWS == 0)
            sched_yield();
    }
    if (sqlite3_exec(L.db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        sqlite3_exec(L.db, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    atomic_fetch_add(&L.written, ok);
    if (!atomic_exchange(&L.healthy, 1))
        log_info("ledger: writing again");
    if (L.jsonl != NULL) {
        STAILQ_FOREACH(it, list, link)
            if (it->op == OP_INSERT)
                jsonl_write(&it->rec);
        fflush(L.jsonl);
    }
    return BATCH_DONE;
fail:
    if (atomic_exchange(&L.healthy, 0))
        log_error("ledger: could not write %zu records: %s (kept; retrying)", *n,
                  msg ? msg : sqlite3_errmsg(L.db));
    sqlite3_free(msg);
    return BATCH_RETRY;
}

/* ledger.backend = "postgresql": what SQLite committed goes on to the
 * shared database (or its spool), in the same order (ledger_pg.h). */
static void hand_to_postgresql(const struct item_list *list)
{
    struct item *it;

    if (!ledgerpg_enabled())
        return;
    STAILQ_FOREACH(it, list, link)
        ledgerpg_add(&it->rec, it->op == OP_UPDATE_COST);
    ledgerpg_flush();
}

static void free_list(struct item_list *list)
{
    struct item *it;

    while ((it = STAILQ_FIRST(list)) != NULL) {
        STAILQ_REMOVE_HEAD(list, link);
        free(it);
    }
}

/* Called with L.mu held.  Puts a batch that could not be written back at
 * the head of the FIFO, ahead of anything submitted since, so rows keep
 * their order. */
static void requeue(struct item_list *list, size_t n)
{
    STAILQ_CONCAT(list, &L.q); /* list, then what came since */
    STAILQ_CONCAT(&L.q, list);
    L.count += n;
}

static void *writer_main(void *arg)
{
    int backoff_ms = 0; /* > 0: the last batch failed; wait this long before the next try */
    int64_t give_up_ms = 0; /* while stopping: the time retries end */

    (void)arg;
    pthread_mutex_lock(&L.mu);
    for (;;) {
        struct item_list list = STAILQ_HEAD_INITIALIZER(list);
        size_t n;

        if (backoff_ms > 0) {
            /* Sleep out the whole backoff: neither new records nor
             * ledger_close() cut it short (close bounds its retries below). */
            struct timespec ts = util_wall_after_ms(backoff_ms);
            while (pthread_cond_timedwait(&L.cv, &L.mu, &ts) == 0)
                ;
        } else if (L.count < BATCH_WAKE && !L.stopping) {
            struct timespec ts = util_wall_after_ms(L.flush_ms);
            pthread_cond_timedwait(&L.cv, &L.mu, &ts);
        }
        if (L.stopping && give_up_ms == 0)
            give_up_ms = util_mono_ms() + CLOSE_RETRY_MS;
        STAILQ_CONCAT(&list, &L.q); /* takes them all; L.q is empty again */
        n = L.count;
        L.count = 0;
        if (STAILQ_EMPTY(&list) && L.stopping)
            break;
        L.inflight = n;
        pthread_mutex_unlock(&L.mu);
        if (!STAILQ_EMPTY(&list) && write_batch(&list, &n) == BATCH_DONE) {
            hand_to_postgresql(&list);
            free_list(&list);
            n = 0;
            backoff_ms = 0;
        } else if (!STAILQ_EMPTY(&list)) {
            backoff_ms = backoff_ms == 0 ? RETRY_MIN_MS
                         : backoff_ms >= RETRY_MAX_MS / 2 ? RETRY_MAX_MS
                                                          : backoff_ms * 2;
            if (give_up_ms != 0 && util_mono_ms() >= give_up_ms) {
                atomic_fetch_add(&L.dropped, n);
                log_error("ledger: still cannot write at shutdown, %zu records dropped "
                          "(counted in orproxy_ledger_dropped_total)",
                          n);
                free_list(&list);
                n = 0;
            }
        }
        ledgerpg_tick(0);
        pthread_mutex_lock(&L.mu);
        L.inflight = 0;
        requeue(&list, n);
    }
    pthread_mutex_unlock(&L.mu);
    return NULL;
}

static int enqueue(struct item *it)
{
    int wake;

    pthread_mutex_lock(&L.mu);
    if (!L.running || L.count + L.inflight >= L.max) {
        pthread_mutex_unlock(&L.mu);
        free(it);
        atomic_fetch_add(&L.dropped, 1);
        log_error("ledger: queue full or closed, record dropped (counted in "
                  "orproxy_ledger_dropped_total)");
        return -1;
    }
    STAILQ_INSERT_TAIL(&L.q, it, link);
    L.count++;
    wake = L.count == BATCH_WAKE;
    pthread_mutex_unlock(&L.mu);
    if (wake)
        pthread_cond_signal(&L.cv);
    return 0;
}

int ledger_submit(const struct ledger_record *rec)
{
    struct item *it = malloc(sizeof *it);

    atomic_fetch_add(&L.submitted, 1);
    if (it == NULL) {
        atomic_fetch_add(&L.dropped, 1);
        return -1;
    }
    it->op = OP_INSERT;
    it->rec = *rec;
    return enqueue(it);
}

int ledger_update_cost(const char *generation_id, int64_t cost_pusd, enum cost_source src)
{
    struct item *it = calloc(1, sizeof *it);

    if (it == NULL)
        return -1;
    it->op = OP_UPDATE_COST;
    snprintf(it->rec.generation_id, sizeof it->rec.generation_id, "%s", generation_id);
    it->rec.cost_pusd = cost_pusd;
    it->rec.cost_source = src;
    return enqueue(it);
}

static void release_handles(void)
{
    sqlite3_finalize(L.ins);
    sqlite3_finalize(L.upd);
    L.ins = L.upd = NULL;
    sqlite3_close(L.db);
    L.db = NULL;
    if (L.jsonl != NULL)
        fclose(L.jsonl);
    L.jsonl = NULL;
}

int ledger_open(const struct orp_config *cfg, char *err, size_t errlen)
{
    const char *path = cfg->ledger_path;
    char *msg = NULL;

    if (sqlite3_open_v2(path, &L.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger %s: %s", path,
                 L.db ? sqlite3_errmsg(L.db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(L.db, 1000);
    /* WAL: readers (orproxy usage) never block the writer; NORMAL sync is
     * durable across a process crash, which is what a batch window means.
     * cache_size: the writer appends, so it needs the tree interiors and the
     * rightmost leaves, not SQLite's default 2 MiB of cache, which a running
     * daemon fills with pages it wrote once and keeps for good: after 8,000
     * requests the daemon held 1.6 MiB less private memory with 512 KiB, and
     * the writer's CPU time was the same (bench/README.md, Memory). */
    if (sqlite3_exec(L.db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                           " PRAGMA cache_size=-512;", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open ledger %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    if (migrate(L.db, err, errlen) < 0)
        goto fail;
    if (sqlite3_prepare_v2(L.db, insert_sql, -1, &L.ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(L.db, update_sql, -1, &L.upd, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "ledger %s: %s", path, sqlite3_errmsg(L.db));
        goto fail;
    }
    if (cfg->ledger_jsonl_path[0] != '\0') {
        L.jsonl = fopen(cfg->ledger_jsonl_path, "a");
        if (L.jsonl == NULL) {
            snprintf(err, errlen, "cannot open %s: %s", cfg->ledger_jsonl_path, strerror(errno));
            goto fail;
        }
    }
    if (ledgerpg_open(cfg, err, errlen) < 0)
        goto fail;
    L.max = (size_t)cfg->ledger_queue_max;
    L.flush_ms = cfg->ledger_flush_ms;
    L.stopping = 0;
    L.running = 1;
    atomic_store(&L.healthy, 1);
    if (pthread_create(&L.thread, NULL, writer_main, NULL) != 0) {
        L.running = 0;
        ledgerpg_close();
        snprintf(err, errlen, "cannot start the ledger writer thread");
        goto fail;
    }
    return 0;
fail:
    release_handles();
    return -1;
}

void ledger_close(void)
{
    pthread_mutex_lock(&L.mu);
    if (!L.running) {
        pthread_mutex_unlock(&L.mu);
        return;
    }
    L.stopping = 1;
    pthread_mutex_unlock(&L.mu);
    pthread_cond_signal(&L.cv);
    pthread_join(L.thread, NULL);
    ledgerpg_close(); /* to PostgreSQL, or kept in the spool for the next start */
    pthread_mutex_lock(&L.mu);
    L.running = 0;
    pthread_mutex_unlock(&L.mu);
    release_handles();
}

void ledger_get_stats(struct ledger_stats *out)
{
    out->submitted = atomic_load(&L.submitted);
    out->written = atomic_load(&L.written);
    out->dropped = atomic_load(&L.dropped);
    pthread_mutex_lock(&L.mu);
    out->queue_depth = L.count + L.inflight;
    pthread_mutex_unlock(&L.mu);
}

int ledger_healthy(void)
{
    struct ledgerpg_stats pg;

    ledgerpg_get_stats(&pg);
    return L.running && atomic_load(&L.healthy) && !pg.spool_failed;
}

static int64_t utc_start(int month)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (month)
        tm.tm_mday = 1;
    return (int64_t)timegm(&tm) * 1000;
}

void ledger_seed_spend(const char *path, void (*fn)(const char *client, int64_t day_pusd,
                                                     int64_t month_pusd))
{
    /* SQLite's SUM fails on int64 overflow, which would lose every
     * client's spend, so rows above $1000 (rare; absurd ones are up to
     * $1,000,000, and older ledgers may hold INT64_MAX) come back one by
     * one and are added here, saturating.  Rows arrive ordered by client. */
    static const char sql[] =
        "SELECT client, SUM(CASE WHEN started_ms >= ?1 THEN cost_pusd ELSE 0 END),"
        " SUM(cost_pusd) FROM requests WHERE started_ms >= ?2"
        " GROUP BY client, CASE WHEN cost_pusd > ?3 OR cost_pusd < 0 THEN id ELSE 0 END"
        " ORDER BY client";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t day_total = 0, month_total = 0, day = 0, month = 0;
    char *cur = NULL;
    int rc;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_warn("ledger: cannot read past spend for budgets: %s", db ? sqlite3_errmsg(db) : "?");
        goto done;
    }
    sqlite3_bind_int64(st, 1, utc_start(0));
    sqlite3_bind_int64(st, 2, utc_start(1));
    sqlite3_bind_int64(st, 3, 1000000000000000LL);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *client = (const char *)sqlite3_column_text(st, 0);
        int64_t d = sqlite3_column_int64(st, 1), m = sqlite3_column_int64(st, 2);
        if (client == NULL)
            continue;
        if (cur != NULL && strcmp(cur, client) != 0) {
            fn(cur, day, month);
            free(cur);
            cur = NULL;
        }
        if (cur == NULL) {
            if ((cur = strdup(client)) == NULL)
                break;
            day = month = 0;
        }
        day = pricing_add_pusd(day, d);
        month = pricing_add_pusd(month, m);
        day_total = pricing_add_pusd(day_total, d);
        month_total = pricing_add_pusd(month_total, m);
    }
    if (rc != SQLITE_DONE)
        log_warn("ledger: cannot read all past spend for budgets: %s", sqlite3_errmsg(db));
    if (cur != NULL)
        fn(cur, day, month);
    fn(NULL, day_total, month_total);
done:
    free(cur);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
