/* locks.c - what the locks an API request takes cost, measured.
 *
 * Each row runs one of the calls a request makes, in a tight loop, first
 * on one thread (the lock uncontended) and then on two threads at once
 * (contended: every call of one thread can meet the other), and prints
 * nanoseconds per call as a Markdown table (doc/DESIGN.md quotes it).  The
 * calls are the real ones from liborp.a:
 *   - access_admit + access_release (access.c's mutex, taken twice);
 *   - pricing_current_lookup (the price table's read-write lock, read side);
 *   - metrics_observe (a per-thread shard and its own mutex);
 *   - ledger_submit (the writer queue's mutex; the writer thread drains it
 *     into SQLite under a temporary directory meanwhile);
 * plus a bare pthread mutex lock/unlock pair for scale, and pricing_lookup
 * on the same table without the lock, as a control: what two threads cost
 * each other on this machine when they share nothing.  Each cell is the
 * best and the median of nine runs of a few milliseconds: the best filters
 * out other processes' preemptions but also favours runs in which the two
 * threads happened not to overlap; the median is the typical figure.  A
 * busy machine adds noise: compare rows of one run.
 *
 *   usage: locks [iterations per thread]   (default 300000) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "config.h"
#include "ledger.h"
#include "metrics.h"
#include "pricing.h"

static struct orp_config cfg;
static long iters = 300000;
static pthread_mutex_t bare = PTHREAD_MUTEX_INITIALIZER;
static atomic_int go;

static void op_bare(void)
{
    pthread_mutex_lock(&bare);
    pthread_mutex_unlock(&bare);
}

static void op_access(void)
{
    struct access_grant g;
    struct access_denial d;

    if (access_admit(&cfg, -1, 100, 1000, &g, &d) == 0)
        access_release(&cfg, &g, 100, 1000);
}

static struct price_table *table;

static void op_pricing_nolock(void)
{
    struct price p;
    (void)pricing_lookup(table, "openai/gpt-4o-mini", &p);
}

static void op_pricing(void)
{
    struct price p;
    (void)pricing_current_lookup("openai/gpt-4o-mini", &p);
}

static struct ledger_record rec = {
    .route = "chat", .model = "openai/gpt-4o-mini", .status = 200, .attempts = 1,
    .prompt_tokens = 10, .completion_tokens = 20, .total_tokens = 30, .cost_pusd = 123,
    .latency_ms = 120, .ttfb_ms = 40, .outcome = "ok",
};

static void op_metrics(void)
{
    metrics_observe(&rec);
}

static void op_ledger(void)
{
    (void)ledger_submit(&rec);
}

struct op {
    const char *name, *lock;
    void (*fn)(void);
    long divisor; /* iterations per run = iters / divisor: each run a few ms, within a time slice */
};

static const struct op ops[] = {
    {"bare mutex lock+unlock", "one pthread_mutex_t", op_bare, 1},
    {"access_admit + access_release", "access.c S.mu, twice", op_access, 30},
    {"pricing_lookup (control)", "none: the same lookup, no lock", op_pricing_nolock, 1},
    {"pricing_current_lookup", "pricing.c cur_lock (rdlock)", op_pricing, 1},
    {"metrics_observe", "metrics.c: the thread's shard mutex", op_metrics, 10},
    {"ledger_submit", "ledger.c L.mu (+ malloc)", op_ledger, 100},
};

struct run {
    const struct op *op;
    long n;
    double ns;
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void *runner(void *arg)
{
    struct run *r = arg;
    double t0;

    while (!atomic_load(&go))
        ;
    t0 = now_ns();
    for (long i = 0; i < r->n; i++)
        r->op->fn();
    r->ns = (now_ns() - t0) / (double)r->n;
    return NULL;
}

/* ns per call with `threads` threads calling at once (the mean of theirs). */
static double measure_once(const struct op *op, int threads)
{
    pthread_t th[2];
    struct run r[2];
    double sum = 0;

    atomic_store(&go, 0);
    for (int i = 0; i < threads; i++) {
        r[i] = (struct run){op, iters / op->divisor, 0};
        pthread_create(&th[i], NULL, runner, &r[i]);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        sum += r[i].ns;
    }
    return sum / threads;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nine runs: *best and *median ns per call. */
static void measure(const struct op *op, int threads, double *best, double *median)
{
    double ns[9];

    for (int i = 0; i < 9; i++)
        ns[i] = measure_once(op, threads);
    qsort(ns, 9, sizeof ns[0], cmp_double);
    *best = ns[0];
    *median = ns[4];
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/orp-locks-XXXXXX", err[256], ledger[300], wal[310];
    static const char models[] =
        "{\"data\":[{\"id\":\"openai/gpt-4o-mini\",\"pricing\":{\"prompt\":\"0.00000015\","
        "\"completion\":\"0.0000006\"}},{\"id\":\"anthropic/claude-3.5-sonnet\",\"pricing\":"
        "{\"prompt\":\"0.000003\",\"completion\":\"0.000015\"}}]}";

    if (argc > 1)
        iters = atol(argv[1]);
    if (iters < 1000 || mkdtemp(dir) == NULL)
        return 2;
    config_defaults(&cfg);
    snprintf(ledger, sizeof ledger, "%s/usage.db", dir);
    free(cfg.ledger_path);
    if ((cfg.ledger_path = strdup(ledger)) == NULL)
        return 2;
    cfg.ledger_queue_max = 10000000;
    if (ledger_open(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "locks: %s\n", err);
        return 1;
    }
    table = pricing_table_from_models_json(models, sizeof models - 1, err, sizeof err);
    if (table == NULL) {
        fprintf(stderr, "locks: %s\n", err);
        return 1;
    }
    pricing_set_current(pricing_table_from_models_json(models, sizeof models - 1, err, sizeof err));

    printf("| call | lock | 1 thread: best / median ns | 2 threads: best / median ns |\n"
           "|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        double b1, m1, b2, m2;
        measure(&ops[i], 1, &b1, &m1);
        measure(&ops[i], 2, &b2, &m2);
        printf("| `%s` | %s | %.0f / %.0f | %.0f / %.0f |\n", ops[i].name, ops[i].lock, b1, m1,
               b2, m2);
        fflush(stdout);
    }
    ledger_close();
    pricing_shutdown();
    pricing_table_free(table);
    config_free(&cfg);
    unlink(ledger);
    snprintf(wal, sizeof wal, "%s-wal", ledger);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", ledger);
    unlink(wal);
    rmdir(dir);
    return 0;
}
