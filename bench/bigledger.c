/* bigledger - builds a big ledger through the real schema and triggers and
 * times the console's queries over it (make bench-console).  Not a test.
 *
 *   bigledger [--rows N] [--db PATH] [--runs K] [--reuse] [--no-console-index]
 *
 * N rows (default 10,000,000) over the 90 days before now, 50 clients
 * (a Zipf-like mix: the first few send most traffic), 30 models (each
 * client mostly uses 4 of them), about 95% successes, the rest 429, 502,
 * 400, 401 and hang-ups; successful costs 85% upstream, 10% pricing, 5%
 * estimate.  Rows go in as the ledger's writer puts them: transactions of
 * 256 rows, WAL, synchronous=NORMAL, so the insert rate printed is the
 * writer's (with the rollup triggers and every index of the schema;
 * --no-console-index drops requests_client and requests_model first, to
 * weigh them).  --reuse keeps an existing file and only times the queries.
 * Each query runs K times (default 7) on one read-only connection,
 * rendered to JSON text as the admin API would; the table shows the
 * median and the max in ms. */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "console_query.h"
#include "ledger.h"

#define NCLIENTS 50
#define NMODELS 30
#define DAY_MS INT64_C(86400000)
#define BATCH 256

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) /* xorshift64* */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717u;
}

static int below(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bigledger: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    exit(1);
}

static char client_name[NCLIENTS][16], model_name[NMODELS][40];
static int client_models[NCLIENTS][4];
static double client_cdf[NCLIENTS];
static int64_t price_in[NMODELS], price_out[NMODELS]; /* pusd per token */

static void make_world(void)
{
    static const char *vendor[] = {"openai", "anthropic", "google", "meta-llama", "mistralai", "qwen"};
    double sum = 0, acc = 0;

    for (int i = 0; i < NCLIENTS; i++) {
        snprintf(client_name[i], sizeof client_name[i], "team-%02d", i);
        sum += 1.0 / (i + 1);
        for (int k = 0; k < 4; k++)
            client_models[i][k] = below(NMODELS);
    }
    for (int i = 0; i < NCLIENTS; i++)
        client_cdf[i] = (acc += 1.0 / (i + 1) / sum);
    for (int m = 0; m < NMODELS; m++) {
        snprintf(model_name[m], sizeof model_name[m], "%s/model-%02d", vendor[m % 6], m);
        price_in[m] = 50000 + below(5000000);   /* $0.05 .. $5 per million tokens */
        price_out[m] = price_in[m] * (2 + below(4));
    }
}

static int pick_client(void)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0;
    for (int i = 0; i < NCLIENTS; i++)
        if (u < client_cdf[i])
            return i;
    return NCLIENTS - 1;
}

/* One random row bound to the insert statement (ledger.c's column order). */
static void bind_row(sqlite3_stmt *st, int64_t i, int64_t started)
{
    static const int statuses[] = {429, 429, 502, 400, 401, 499};
    int c = pick_client(), m = below(10) < 8 ? client_models[c][below(4)] : below(NMODELS);
    int err = below(100) < 5, status = err ? statuses[below(6)] : 200, p = below(10);
    int64_t prompt = err ? 0 : 50 + below(4000), compl = err ? 0 : 10 + below(1000);
    int64_t cached = below(4) == 0 ? prompt / 2 : 0, reasoning = below(5) == 0 ? compl / 3 : 0;
    const char *source = err ? "none" : p < 8 || below(2) ? "upstream" : p < 9 ? "pricing" : "estimate";
    char rid[40], gen[40], at[32];
    time_t secs = (time_t)(started / 1000);
    struct tm tm;

    if (!err && p == 9)
        source = below(2) ? "pricing" : "estimate";
    snprintf(rid, sizeof rid, "%016llx%016llx", (unsigned long long)rnd(), (unsigned long long)i);
    snprintf(gen, sizeof gen, "gen-%lld-%08x", (long long)i, (unsigned)rnd());
    gmtime_r(&secs, &tm);
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    sqlite3_bind_text(st, 1, rid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, at, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, started);
    sqlite3_bind_text(st, 4, client_name[c], -1, SQLITE_STATIC);
    sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, "chat", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, model_name[m], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, model_name[m], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, "Provider", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 10, below(10) < 6);
    sqlite3_bind_int(st, 11, status);
    sqlite3_bind_int(st, 12, 1 + (status == 429));
    sqlite3_bind_int64(st, 13, prompt);
    sqlite3_bind_int64(st, 14, compl);
    sqlite3_bind_int64(st, 15, prompt + compl);
    sqlite3_bind_int64(st, 16, cached);
    sqlite3_bind_int64(st, 17, reasoning);
    sqlite3_bind_int64(st, 18, prompt * price_in[m] + compl * price_out[m]);
    sqlite3_bind_text(st, 19, source, -1, SQLITE_STATIC);
    if (err)
        sqlite3_bind_null(st, 20);
    else
        sqlite3_bind_text(st, 20, gen, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 21, err ? NULL : "stop", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 22, 200 + below(20000));
    sqlite3_bind_double(st, 23, 50 + below(2000));
    sqlite3_bind_text(st, 24, err ? "upstream_status" : NULL, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 25, err ? (status == 499 ? "client_closed" : "upstream_error") : "ok", -1,
                      SQLITE_STATIC);
}

static void generate(const char *path, int64_t rows, int64_t end_ms, int console_index)
{
    static const char ins[] =
        "INSERT INTO requests (request_id, started_at, started_ms, client, user, route, model,"
        " served_model, provider, stream, status, attempts, prompt_tokens, completion_tokens,"
        " total_tokens, cached_tokens, reasoning_tokens, cost_pusd, cost_source, generation_id,"
        " finish_reason, latency_ms, ttfb_ms, error_class, outcome)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    int64_t start = end_ms - 90 * DAY_MS, step = 90 * DAY_MS / rows, chunk = rows / 10 ? rows / 10 : 1;
    sqlite3 *db;
    sqlite3_stmt *st;
    double t0 = now_ms(), tc = t0;

    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(db, path);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" LEDGER_SCHEMA_V1
                         LEDGER_SCHEMA_V2 "PRAGMA user_version = 2;",
                     NULL, NULL, NULL) != SQLITE_OK)
        die(db, "schema");
    if (!console_index &&
        sqlite3_exec(db, "DROP INDEX requests_client; DROP INDEX requests_model;", NULL, NULL, NULL))
        die(db, "drop index");
    if (sqlite3_prepare_v2(db, ins, -1, &st, NULL) != SQLITE_OK)
        die(db, "prepare");
    for (int64_t i = 0; i < rows; i++) {
        if (i % BATCH == 0 && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            die(db, "begin");
        bind_row(st, i, start + i * step + below((int)(step > 1 ? step : 1)));
        if (sqlite3_step(st) != SQLITE_DONE)
            die(db, "insert");
        sqlite3_reset(st);
        if ((i % BATCH == BATCH - 1 || i == rows - 1) &&
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            die(db, "commit");
        if ((i + 1) % chunk == 0) {
            double t = now_ms();
            printf("  %10lld rows  %8.0f rows/s over the last %lld\n", (long long)(i + 1),
                   chunk / (t - tc) * 1e3, (long long)chunk);
            fflush(stdout);
            tc = t;
        }
    }
    printf("generated %lld rows in %.1f s: %.0f rows/s (%s the console indexes)\n", (long long)rows,
           (now_ms() - t0) / 1e3, rows / (now_ms() - t0) * 1e3, console_index ? "with" : "without");
    sqlite3_finalize(st);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(db);
}

enum qkind { Q_OVERVIEW, Q_SERIES, Q_REQUESTS, Q_MODELS, Q_SPEND };

struct query {
    const char *label;
    enum qkind kind;
    int64_t since_back_ms; /* series, models: since = now - this */
    int bucket_day, by_model;
    struct cq_filter f;
};

/* Runs q once; returns its ms, or exits on an error. */
static double run_query(sqlite3 *db, const struct query *q, int64_t now, size_t *bytes)
{
    char err[256] = "";
    double t0 = now_ms();
    cJSON *j = NULL;
    char *text;

    switch (q->kind) {
    case Q_OVERVIEW:
        j = cq_overview(db, now, err, sizeof err);
        break;
    case Q_SERIES:
        j = cq_timeseries(db, now - q->since_back_ms, now, q->bucket_day, q->by_model, 10, err,
                          sizeof err);
        break;
    case Q_REQUESTS:
        j = cq_requests(db, &q->f, err, sizeof err);
        break;
    case Q_MODELS:
        j = cq_models(db, now - q->since_back_ms, err, sizeof err);
        break;
    case Q_SPEND:
        j = cq_spend(db, now, err, sizeof err);
        break;
    }
    if (j == NULL) {
        fprintf(stderr, "bigledger: %s: %s\n", q->label, err);
        exit(1);
    }
    text = cJSON_PrintUnformatted(j);
    *bytes = text ? strlen(text) : 0;
    free(text);
    cJSON_Delete(j);
    return now_ms() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void time_queries(const char *path, int64_t now, int runs)
{
#define REQ(st, ...) (struct cq_filter){.stream = -1, .limit = 100, .status = (st), __VA_ARGS__}
    sqlite3 *db;
    int64_t rows, deep;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die(db, path);
    rows = scalar(db, "SELECT MAX(id) FROM requests");
    deep = rows / 10;
    printf("\n%lld requests rows, %lld rollup_hour rows; %d runs each\n\n", (long long)rows,
           (long long)scalar(db, "SELECT COUNT(*) FROM rollup_hour"), runs);
    const struct query qs[] = {
        {"overview", Q_OVERVIEW, 0, 0, 0, {0}},
        {"timeseries hour x client, 7 days", Q_SERIES, 7 * DAY_MS, 0, 0, {0}},
        {"timeseries day x model, 90 days", Q_SERIES, 90 * DAY_MS, 1, 1, {0}},
        {"requests, newest 100", Q_REQUESTS, 0, 0, 0, REQ(-1, .before_id = 0)},
        {"requests, client team-25", Q_REQUESTS, 0, 0, 0, REQ(-1, .client = "team-25")},
        {"requests, model google/model-02", Q_REQUESTS, 0, 0, 0, REQ(-1, .model = "google/model-02")},
        {"requests, status 502", Q_REQUESTS, 0, 0, 0, REQ(502, .before_id = 0)},
        {"requests, deep page (id < N/10)", Q_REQUESTS, 0, 0, 0, REQ(-1, .before_id = deep)},
        {"requests, client team-25, deep page", Q_REQUESTS, 0, 0, 0,
         REQ(-1, .client = "team-25", .before_id = deep)},
        {"requests, one day 60 days ago", Q_REQUESTS, 0, 0, 0,
         REQ(-1, .since_ms = now - 60 * DAY_MS, .until_ms = now - 59 * DAY_MS)},
        {"models, 30 days", Q_MODELS, 30 * DAY_MS, 0, 0, {0}},
        {"spend (day, month per client)", Q_SPEND, 0, 0, 0, {0}},
    };
    printf("| query | median ms | max ms | answer bytes |\n|---|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double ms[64];
        size_t bytes = 0;
        for (int r = 0; r < runs; r++)
            ms[r] = run_query(db, &qs[i], now, &bytes);
        qsort(ms, (size_t)runs, sizeof ms[0], cmp_double);
        printf("| %s | %.1f | %.1f | %zu |\n", qs[i].label, ms[runs / 2], ms[runs - 1], bytes);
        fflush(stdout);
    }
    sqlite3_close(db);
#undef REQ
}

int main(int argc, char **argv)
{
    const char *path = "build/bench/bigledger.db";
    int64_t rows = 10000000, now;
    int runs = 7, reuse = 0, console_index = 1;
    struct timespec ts;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
            rows = atoll(argv[++i]);
        else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reuse") == 0)
            reuse = 1;
        else if (strcmp(argv[i], "--no-console-index") == 0)
            console_index = 0;
        else {
            fprintf(stderr, "usage: bigledger [--rows N] [--db PATH] [--runs K] [--reuse]"
                            " [--no-console-index]\n");
            return 2;
        }
    }
    if (rows < 1 || runs < 1 || runs > 64) {
        fprintf(stderr, "bigledger: --rows must be >= 1 and --runs 1..64\n");
        return 2;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    make_world();
    if (!reuse || access(path, F_OK) != 0) {
        char side[1024];
        unlink(path);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
        generate(path, rows, now, console_index);
    }
    time_queries(path, now, runs);
    return 0;
}
