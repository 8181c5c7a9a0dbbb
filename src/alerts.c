/* alerts.c - see alerts.h.
 *
 * Each pass (about once a second, only while alerts.webhook_url is set):
 *  1. access_budget_snapshot() copies every budget's limit and spend out
 *     of the access counters (one short hold of their mutex; nothing here
 *     ever runs under it);
 *  2. every threshold a budget has reached is INSERT OR IGNOREd into the
 *     ledger's alerts_sent, keyed by (client, budget, period, threshold):
 *     the row is the "already fired" record, so a restart, or two passes
 *     racing a reload, cannot fire it twice; a key within 7 days of its
 *     expires_ms (the ledger's clients table) gets a row too, budget
 *     'expiry', period its UTC expiry date, threshold 0;
 *  3. rows with sent_ms NULL are POSTed in the order they crossed; a 2xx
 *     sets sent_ms.  A failure waits 1 s, 2 s, 4 s ... (at most 5 min)
 *     before the next try; a reload tries again at once.
 * Rows this process has already recorded are remembered (seen), so a
 * budget sitting above its thresholds costs no write per pass.
 *
 * With ledger.backend = "postgresql" (alerts_pg.h), step 1 takes the spend
 * from the shared budget rows instead (every instance's, not this one's
 * share), and budget and expiry rows go to PostgreSQL's alerts_sent, where
 * one instance claims and delivers each; the spool's stay in SQLite (each
 * instance has its own spool).
 *
 * The thread has its own connection to the ledger database and its own
 * blocking curl handle with short timeouts, cut short at stop.  Nothing
 * from the upstream configuration is sent; the webhook URL (which may hold
 * a token, as Slack's do) is logged by host only. */
#include "alerts.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "alerts_fmt.h"
#include "alerts_pg.h"
#include "ledger_pg.h"
#include "log.h"
#include "util.h"

#define TICK_MS 1000
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS (5 * 60 * 1000)
#define EXPIRY_WARN_MS (7LL * 24 * 3600 * 1000)
#define SEEN_MAX 4096
#define BATCH 16

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running;
    atomic_int stopping;
    struct orp_config *cfg;  /* held; replaced on reload; under mu */
    struct alerts_stats st;  /* under mu */
    int64_t next_try_ms;     /* under mu: no POST before this (backoff) */
    int fails;               /* the thread's: failures in a row */
    sqlite3 *db;             /* the thread's */
    CURL *easy;              /* the thread's */
    char **seen;             /* the thread's: rows known to be in alerts_sent */
    size_t n_seen;
} A = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* ---- the ledger: alerts_sent ---- */

static int open_db(const struct orp_config *cfg)
{
    if (A.db != NULL)
        return 0;
    if (sqlite3_open_v2(cfg->ledger_path, &A.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        log_error("alerts: cannot open the ledger %s: %s", cfg->ledger_path,
                  A.db ? sqlite3_errmsg(A.db) : "out of memory");
        sqlite3_close(A.db);
        A.db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(A.db, 5000);
    return 0;
}

static int seen_index(const char *key)
{
    for (size_t i = 0; i < A.n_seen; i++)
        if (strcmp(A.seen[i], key) == 0)
            return (int)i;
    return -1;
}

static void seen_add(const char *key)
{
    char **nv;
    if (A.n_seen >= SEEN_MAX) { /* old periods' rows: forget them all, the table still knows */
        for (size_t i = 0; i < A.n_seen; i++)
            free(A.seen[i]);
        A.n_seen = 0;
    }
    nv = realloc(A.seen, (A.n_seen + 1) * sizeof *nv);
    if (nv == NULL)
        return;
    A.seen = nv;
    if ((A.seen[A.n_seen] = strdup(key)) != NULL)
        A.n_seen++;
}

/* Records that a crossed its threshold (once: the primary key). */
static void record(const struct alert_row *a)
{
    static const char sql[] =
        "INSERT OR IGNORE INTO alerts_sent (client, budget, period, threshold, spent_pusd, "
        "limit_pusd, crossed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    char key[200], what[512];
    sqlite3_stmt *st = NULL;
    int rc;

    snprintf(key, sizeof key, "%s\x1f%s\x1f%s\x1f%d", a->client, a->budget, a->period,
             a->threshold);
    if (seen_index(key) >= 0)
        return;
    if (a->shared) {
        if ((rc = alertspg_record(a)) >= 0)
            seen_add(key);
        if (rc == 1) {
            alertsfmt_describe(a, what, sizeof what);
            log_info("alert: %s", what);
        }
        return;
    }
    if (sqlite3_prepare_v2(A.db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("alerts: %s", sqlite3_errmsg(A.db));
        return;
    }
    sqlite3_bind_text(st, 1, a->client, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->budget, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->period, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, a->threshold);
    sqlite3_bind_int64(st, 5, a->spent_pusd);
    sqlite3_bind_int64(st, 6, a->limit_pusd);
    sqlite3_bind_int64(st, 7, a->crossed_ms);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        seen_add(key);
        if (sqlite3_changes(A.db) == 1) {
            alertsfmt_describe(a, what, sizeof what);
            log_info("alert: %s", what);
        }
    } else {
        log_error("alerts: cannot record an alert: %s", sqlite3_errmsg(A.db));
    }
    sqlite3_finalize(st);
}

/* spent has reached pct percent of limit (exact: limit * 1000% passes int64). */
static int reached(int64_t spent, int64_t limit, int pct)
{
    return limit > 0 && (__int128)spent * 100 >= (__int128)limit * pct;
}

static void check_budget(const struct orp_int_list *th, const char *client, const char *budget,
                         const char *period, int64_t spent, int64_t limit, int64_t now, int shared)
{
    struct alert_row a = {
        .spent_pusd = spent, .limit_pusd = limit, .crossed_ms = now, .shared = shared};

    snprintf(a.client, sizeof a.client, "%s", client);
    snprintf(a.budget, sizeof a.budget, "%s", budget);
    snprintf(a.period, sizeof a.period, "%s", period);
    for (int i = 0; i < th->n && reached(spent, limit, th->v[i]); i++) {
        a.threshold = th->v[i];
        record(&a);
    }
}

/* With PostgreSQL, the spend all instances have settled into the shared
 * budget rows replaces this instance's own counters (its share only); a
 * budget with no row yet has no settled spend.  -1: the database did not
 * answer, nothing is compared this pass. */
static int shared_spend(struct access_budget *b, size_t n, int64_t now)
{
    struct lease_spent *v;
    size_t nv;

    if (alertspg_spent(now, &v, &nv) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        b[i].day_spent_pusd = b[i].month_spent_pusd = 0;
        for (size_t k = 0; k < nv; k++)
            if (strcmp(v[k].scope, b[i].name) == 0)
                *(v[k].period == LEASE_DAY ? &b[i].day_spent_pusd : &b[i].month_spent_pusd) =
                    v[k].spent_pusd;
    }
    free(v);
    return 0;
}

static void check_budgets(const struct orp_config *cfg, int64_t now, int shared)
{
    char day[16], month[16];
    size_t n;
    struct access_budget *b = access_budget_snapshot(cfg, now, &n);

    if (b == NULL)
        return;
    if (shared && shared_spend(b, n, now) < 0)
        n = 0;
    alertsfmt_utc(now, "%Y-%m-%d", day, sizeof day);
    alertsfmt_utc(now, "%Y-%m", month, sizeof month);
    for (size_t i = 0; i < n; i++) {
        check_budget(&cfg->alerts_thresholds_pct, b[i].name, "day", day, b[i].day_spent_pusd,
                     b[i].day_limit_pusd, now, shared);
        check_budget(&cfg->alerts_thresholds_pct, b[i].name, "month", month,
                     b[i].month_spent_pusd, b[i].month_limit_pusd, now, shared);
    }
    free(b);
}

/* Clients whose key expires within 7 days: the clients of the config in
 * use, which holds the managed ones whichever store they live in (the
 * SQLite ledger, or PostgreSQL shared by several instances); a revoked
 * client is not in it. */
static void check_expiry(const struct orp_config *cfg, int64_t now, int shared)
{
    for (int i = 0; i < cfg->n_clients; i++) {
        const struct orp_client *c = &cfg->clients[i];
        struct alert_row a = {.crossed_ms = now, .shared = shared};

        if (c->expires_ms <= now || c->expires_ms > now + EXPIRY_WARN_MS)
            continue;
        snprintf(a.client, sizeof a.client, "%s", c->name);
        snprintf(a.budget, sizeof a.budget, "expiry");
        alertsfmt_utc(c->expires_ms, "%Y-%m-%d", a.period, sizeof a.period);
        record(&a);
    }
}

/* The PostgreSQL ledger's spool (rows waiting while the database is
 * unreachable) growing past 64 KiB, 1 MiB, 16 MiB and 256 MiB: once per
 * size and UTC day.  The row keeps the size in spent_pusd (bytes, not
 * dollars) and the threshold in KiB. */
static void check_spool(int64_t now)
{
    static const int kib[] = {64, 1024, 16384, 262144};
    struct ledgerpg_stats ps;
    struct alert_row a = {.crossed_ms = now};

    ledgerpg_get_stats(&ps);
    if (!ps.enabled)
        return;
    snprintf(a.budget, sizeof a.budget, "spool");
    alertsfmt_utc(now, "%Y-%m-%d", a.period, sizeof a.period);
    a.spent_pusd = (int64_t)ps.spool_bytes;
    for (size_t i = 0; i < sizeof kib / sizeof kib[0] && ps.spool_bytes >= (uint64_t)kib[i] * 1024; i++) {
        a.threshold = kib[i];
        a.limit_pusd = (int64_t)kib[i] * 1024;
        record(&a);
    }
}

/* Up to max undelivered rows, oldest first.  Returns how many. */
static int load_pending(struct alert_row *out, int max)
{
    static const char sql[] =
        "SELECT client, budget, period, threshold, spent_pusd, limit_pusd, crossed_ms"
        " FROM alerts_sent WHERE sent_ms IS NULL"
        " ORDER BY crossed_ms, client, budget, period, threshold LIMIT ?1";
    sqlite3_stmt *st = NULL;
    int n = 0;

    if (sqlite3_prepare_v2(A.db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("alerts: %s", sqlite3_errmsg(A.db));
        return 0;
    }
    sqlite3_bind_int(st, 1, max);
    while (n < max && sqlite3_step(st) == SQLITE_ROW) {
        struct alert_row *a = &out[n++];
        memset(a, 0, sizeof *a);
        snprintf(a->client, sizeof a->client, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(a->budget, sizeof a->budget, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(a->period, sizeof a->period, "%s", (const char *)sqlite3_column_text(st, 2));
        a->threshold = sqlite3_column_int(st, 3);
        a->spent_pusd = sqlite3_column_int64(st, 4);
        a->limit_pusd = sqlite3_column_int64(st, 5);
        a->crossed_ms = sqlite3_column_int64(st, 6);
    }
    sqlite3_finalize(st);
    return n;
}

static void mark_sent(const struct alert_row *a, int64_t now)
{
    static const char sql[] = "UPDATE alerts_sent SET sent_ms = ?1 WHERE client = ?2 AND"
                              " budget = ?3 AND period = ?4 AND threshold = ?5";
    sqlite3_stmt *st = NULL;

    if (a->shared) {
        alertspg_mark_sent(a, now);
        return;
    }
    if (sqlite3_prepare_v2(A.db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_text(st, 2, a->client, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, a->budget, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, a->period, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 5, a->threshold);
        if (sqlite3_step(st) == SQLITE_DONE) {
            sqlite3_finalize(st);
            return;
        }
    }
    /* Delivered but not marked: it will be sent again, which beats losing it. */
    log_error("alerts: cannot mark an alert sent: %s", sqlite3_errmsg(A.db));
    sqlite3_finalize(st);
}

/* ---- delivery ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Stop cuts a POST short instead of waiting out its timeout. */
static int progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)ud;
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return atomic_load(&A.stopping) ? 1 : 0;
}

/* POSTs body as JSON; the HTTP status, or 0 with why filled. */
static long post(const char *url, const char *body, char *why, size_t n)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL, *h2;
    long status = 0;
    CURLcode rc;

    if (A.easy == NULL && (A.easy = curl_easy_init()) == NULL) {
        snprintf(why, n, "out of memory");
        return 0;
    }
    curl_easy_reset(A.easy);
    hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    h2 = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL;
    if (h2 == NULL) {
        curl_slist_free_all(hdrs);
        snprintf(why, n, "out of memory");
        return 0;
    }
    curl_easy_setopt(A.easy, CURLOPT_URL, url);
    curl_easy_setopt(A.easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(A.easy, CURLOPT_HTTPHEADER, h2);
    curl_easy_setopt(A.easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(A.easy, CURLOPT_USERAGENT, "orproxy-alerts");
    curl_easy_setopt(A.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(A.easy, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(A.easy, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(A.easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(A.easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(A.easy, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(A.easy, CURLOPT_ERRORBUFFER, errbuf);
    rc = curl_easy_perform(A.easy);
    if (rc == CURLE_OK)
        curl_easy_getinfo(A.easy, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(why, n, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_easy_setopt(A.easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(A.easy, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(h2);
    return status;
}

/* The wait after the fails+1'th failure in a row: 1 s, 2 s, 4 s ... 5 min. */
static int64_t backoff_ms(int fails)
{
    int64_t ms = (int64_t)BACKOFF_FIRST_MS << (fails < 20 ? fails : 20);
    return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
}

/* Delivers one alert.  0, or -1 when it must be tried again later. */
static int deliver(const struct orp_config *cfg, const struct alert_row *a, const char *host)
{
    char why[CURL_ERROR_SIZE + 32] = "", what[512];
    char instance[256], *body;
    long status;

    util_instance_name(cfg->instance_name, cfg->listen_port, instance, sizeof instance);
    body = alertsfmt_body(a, strcmp(cfg->alerts_format, "slack") == 0, instance);

    if (body == NULL)
        return -1;
    status = post(cfg->alerts_webhook_url, body, why, sizeof why);
    free(body);
    alertsfmt_describe(a, what, sizeof what);
    if (status >= 200 && status < 300) {
        mark_sent(a, util_wall_ms());
        log_info("alert delivered to %s (HTTP %ld): %s", host, status, what);
        return 0;
    }
    if (status != 0)
        snprintf(why, sizeof why, "HTTP %ld", status);
    if (!atomic_load(&A.stopping))
        log_warn("alert to %s failed (%s); retried in %lld s: %s", host, why,
                 (long long)backoff_ms(A.fails) / 1000, what);
    return -1;
}

/* The SQLite rows (in PostgreSQL mode the spool's), then, with shared,
 * the PostgreSQL rows this instance is to deliver. */
static void deliver_pending(const struct orp_config *cfg, int64_t now, int shared)
{
    struct alert_row batch[BATCH];
    char host[256];
    int n;

    pthread_mutex_lock(&A.mu);
    n = now >= A.next_try_ms;
    pthread_mutex_unlock(&A.mu);
    if (!n)
        return;
    alertsfmt_url_host(cfg->alerts_webhook_url, host, sizeof host);
    n = load_pending(batch, BATCH);
    if (shared)
        n += alertspg_claim(batch + n, BATCH - n);
    for (int i = 0; i < n && !atomic_load(&A.stopping); i++) {
        int ok = deliver(cfg, &batch[i], host) == 0;

        pthread_mutex_lock(&A.mu);
        if (ok) {
            A.st.sent++;
        } else {
            A.st.failed++;
            A.next_try_ms = util_wall_ms() + backoff_ms(A.fails);
        }
        pthread_mutex_unlock(&A.mu);
        if (!ok) {
            A.fails++;
            return; /* the receiver is down: wait, then start again from the oldest */
        }
        A.fails = 0;
    }
}

/* ---- the thread ---- */

static void pass(const struct orp_config *cfg)
{
    int64_t now = util_wall_ms();
    int pg = strcmp(cfg->ledger_backend, "postgresql") == 0, shared;

    if (cfg->alerts_webhook_url[0] == '\0' || open_db(cfg) < 0)
        return;
    check_spool(now);
    /* PostgreSQL: budgets and expiry once across the instances, in its
     * alerts_sent; while it cannot be reached they wait (the spool's stay
     * local: each instance has its own). */
    shared = pg && alertspg_usable(cfg);
    if (!pg || shared) {
        check_budgets(cfg, now, shared);
        check_expiry(cfg, now, shared);
    }
    deliver_pending(cfg, now, shared);
}

static void *alerts_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&A.mu);
    while (!atomic_load(&A.stopping)) {
        struct orp_config *cfg = config_hold(A.cfg);
        struct timespec ts;

        pthread_mutex_unlock(&A.mu);
        pass(cfg);
        config_release(cfg);
        pthread_mutex_lock(&A.mu);
        if (atomic_load(&A.stopping))
            break;
        ts = util_wall_after_ms(TICK_MS);
        pthread_cond_timedwait(&A.cv, &A.mu, &ts);
    }
    pthread_mutex_unlock(&A.mu);
    if (A.easy != NULL)
        curl_easy_cleanup(A.easy);
    A.easy = NULL;
    sqlite3_close(A.db);
    A.db = NULL;
    alertspg_close();
    for (size_t i = 0; i < A.n_seen; i++)
        free(A.seen[i]);
    free(A.seen);
    A.seen = NULL;
    A.n_seen = 0;
    return NULL;
}

int alerts_start(struct orp_config *cfg)
{
    A.cfg = config_hold(cfg);
    A.fails = 0;
    A.next_try_ms = 0;
    atomic_store(&A.stopping, 0);
    if (pthread_create(&A.thread, NULL, alerts_main, NULL) != 0) {
        config_release(A.cfg);
        A.cfg = NULL;
        return -1;
    }
    A.running = 1;
    return 0;
}

void alerts_set_config(struct orp_config *cfg)
{
    struct orp_config *old;

    pthread_mutex_lock(&A.mu);
    if (!A.running) {
        pthread_mutex_unlock(&A.mu);
        return;
    }
    old = A.cfg;
    A.cfg = config_hold(cfg);
    A.next_try_ms = 0; /* the webhook may have been fixed: try now */
    pthread_mutex_unlock(&A.mu);
    pthread_cond_signal(&A.cv);
    config_release(old);
}

void alerts_get_stats(struct alerts_stats *out)
{
    pthread_mutex_lock(&A.mu);
    *out = A.st;
    pthread_mutex_unlock(&A.mu);
}

void alerts_stop(void)
{
    pthread_mutex_lock(&A.mu);
    if (!A.running) {
        pthread_mutex_unlock(&A.mu);
        return;
    }
    atomic_store(&A.stopping, 1);
    pthread_cond_broadcast(&A.cv);
    pthread_mutex_unlock(&A.mu);
    pthread_join(A.thread, NULL);
    pthread_mutex_lock(&A.mu);
    A.running = 0;
    config_release(A.cfg);
    A.cfg = NULL;
    pthread_mutex_unlock(&A.mu);
}
