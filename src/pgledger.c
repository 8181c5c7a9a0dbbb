/* pgledger.c - schema, migrations and the idempotent batched insert of the
 * PostgreSQL ledger (see pgledger.h).
 *
 * A batch is sent as multi-row INSERT ... VALUES statements with text
 * parameters (the server casts them to the column types), PGLEDGER_CHUNK
 * rows each, through pgconn's non-blocking exec.  ON CONFLICT (row_key) DO
 * NOTHING is what makes a retry after an unknown outcome (the connection
 * died after the statement was sent) safe; PQcmdTuples tells how many rows
 * were new. */
#include "pgledger.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "utf8.h"
#include "util.h"

/* pg_advisory_xact_lock key of the migrations: "orproxy" in ASCII. */
#define MIGRATE_LOCK "31369549696694393"

/* The console's rollups (version 3): as the SQLite ledger's (ledger.h),
 * with the instance in the key.  Each instance's writer touches only its
 * own rollup rows, so writers on several instances never wait for each
 * other (nor deadlock) there. */
#define PG_ROLLUP_TABLE(t, k)                                                                      \
    "CREATE TABLE " t " (" k " bigint NOT NULL, instance text NOT NULL, client text NOT NULL,"     \
    " model text NOT NULL, cost_source text NOT NULL, requests bigint NOT NULL DEFAULT 0,"         \
    " errors bigint NOT NULL DEFAULT 0, prompt_tokens bigint NOT NULL DEFAULT 0,"                 \
    " completion_tokens bigint NOT NULL DEFAULT 0, cached_tokens bigint NOT NULL DEFAULT 0,"      \
    " reasoning_tokens bigint NOT NULL DEFAULT 0, cost_pusd bigint NOT NULL DEFAULT 0,"           \
    " PRIMARY KEY (" k ", instance, client, model, cost_source));"
/* A statement's new rows (the transition table: only the rows really
 * inserted, so one skipped by ON CONFLICT DO NOTHING, a replay, counts
 * nothing) add to their rollup rows, one upsert per group and statement. */
#define PG_ROLLUP_ADD(t, k, w)                                                                     \
    " INSERT INTO " t " SELECT started_ms - started_ms % " w ", instance, client,"                 \
    " COALESCE(model, ''), cost_source, count(*), count(*) FILTER (WHERE status >= 400),"         \
    " sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(reasoning_tokens),"     \
    " sum(cost_pusd) FROM new_rows GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"                 \
    " ON CONFLICT (" k ", instance, client, model, cost_source) DO UPDATE SET"                    \
    " requests = " t ".requests + EXCLUDED.requests, errors = " t ".errors + EXCLUDED.errors,"     \
    " prompt_tokens = " t ".prompt_tokens + EXCLUDED.prompt_tokens,"                              \
    " completion_tokens = " t ".completion_tokens + EXCLUDED.completion_tokens,"                  \
    " cached_tokens = " t ".cached_tokens + EXCLUDED.cached_tokens,"                              \
    " reasoning_tokens = " t ".reasoning_tokens + EXCLUDED.reasoning_tokens,"                     \
    " cost_pusd = " t ".cost_pusd + EXCLUDED.cost_pusd;"
/* A reconciled cost moves the row's cost (and maybe its source); the
 * request stays counted where it was first written (as in SQLite). */
#define PG_ROLLUP_MOVE(t, k, w)                                                                    \
    " UPDATE " t " SET cost_pusd = cost_pusd - OLD.cost_pusd WHERE " k " = OLD.started_ms -"       \
    " OLD.started_ms % " w " AND instance = OLD.instance AND client = OLD.client"                 \
    " AND model = COALESCE(OLD.model, '') AND cost_source = OLD.cost_source;"                     \
    " INSERT INTO " t " (" k ", instance, client, model, cost_source, cost_pusd) VALUES"          \
    " (NEW.started_ms - NEW.started_ms % " w ", NEW.instance, NEW.client,"                        \
    " COALESCE(NEW.model, ''), NEW.cost_source, NEW.cost_pusd)"                                   \
    " ON CONFLICT (" k ", instance, client, model, cost_source) DO UPDATE SET"                    \
    " cost_pusd = " t ".cost_pusd + EXCLUDED.cost_pusd;"

/* Migration n (1-based) brings the schema from version n-1 to n. */
static const char *const migrations[PGLEDGER_SCHEMA_VERSION] = {
    /* 1: the ledger rows. */
    "CREATE TABLE requests ("
    " id bigserial PRIMARY KEY,"
    " row_key text NOT NULL UNIQUE,"
    " instance text NOT NULL,"
    " request_id text NOT NULL,"
    " started_at text NOT NULL,"
    " started_ms bigint NOT NULL,"
    " client text NOT NULL DEFAULT 'anonymous',"
    " \"user\" text,"
    " route text NOT NULL,"
    " model text,"
    " served_model text,"
    " provider text,"
    " stream integer NOT NULL DEFAULT 0,"
    " status integer NOT NULL,"
    " attempts integer NOT NULL DEFAULT 0,"
    " prompt_tokens bigint NOT NULL DEFAULT 0,"
    " completion_tokens bigint NOT NULL DEFAULT 0,"
    " total_tokens bigint NOT NULL DEFAULT 0,"
    " cached_tokens bigint NOT NULL DEFAULT 0,"
    " reasoning_tokens bigint NOT NULL DEFAULT 0,"
    " cost_pusd bigint NOT NULL DEFAULT 0,"
    " cost_source text NOT NULL DEFAULT 'none',"
    " generation_id text,"
    " finish_reason text,"
    " latency_ms double precision,"
    " ttfb_ms double precision,"
    " error_class text,"
    " outcome text);"
    "CREATE INDEX requests_started ON requests(started_ms);"
    "CREATE INDEX requests_gen ON requests(generation_id);"
    "CREATE INDEX requests_instance ON requests(instance, started_ms);"
    "CREATE INDEX requests_request_id ON requests(request_id);",
    /* 2: budgets shared by the instances (lease.h). */
    "CREATE TABLE budgets ("
    " scope text NOT NULL,"
    " period text NOT NULL CHECK (period IN ('day', 'month')),"
    " period_key text NOT NULL,"
    " limit_pusd bigint NOT NULL CHECK (limit_pusd >= 0),"
    " spent_pusd bigint NOT NULL DEFAULT 0,"
    " leased_pusd bigint NOT NULL DEFAULT 0 CHECK (leased_pusd >= 0),"
    " PRIMARY KEY (scope, period, period_key));"
    "CREATE TABLE budget_leases ("
    " scope text NOT NULL,"
    " period text NOT NULL,"
    " period_key text NOT NULL,"
    " instance text NOT NULL,"
    " leased_pusd bigint NOT NULL CHECK (leased_pusd >= 0),"
    " expires_at timestamptz NOT NULL,"
    " PRIMARY KEY (scope, period, period_key, instance),"
    " FOREIGN KEY (scope, period, period_key) REFERENCES budgets ON DELETE CASCADE);"
    "CREATE INDEX budget_leases_expiry ON budget_leases(expires_at);",
    /* 3: the console's rollups and paging indexes (console_pg.c). */
    PG_ROLLUP_TABLE("rollup_hour", "hour_ms") PG_ROLLUP_TABLE("rollup_day", "day_ms")
    "CREATE FUNCTION orp_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
    PG_ROLLUP_ADD("rollup_hour", "hour_ms", "3600000")
    PG_ROLLUP_ADD("rollup_day", "day_ms", "86400000")
    " RETURN NULL; END $f$;"
    "CREATE TRIGGER requests_rollup_insert AFTER INSERT ON requests"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orp_rollup_insert();"
    "CREATE FUNCTION orp_rollup_move() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
    PG_ROLLUP_MOVE("rollup_hour", "hour_ms", "3600000")
    PG_ROLLUP_MOVE("rollup_day", "day_ms", "86400000")
    " RETURN NULL; END $f$;"
    "CREATE TRIGGER requests_rollup_update AFTER UPDATE OF cost_pusd, cost_source ON requests"
    " FOR EACH ROW WHEN (OLD.cost_pusd IS DISTINCT FROM NEW.cost_pusd"
    " OR OLD.cost_source IS DISTINCT FROM NEW.cost_source)"
    " EXECUTE FUNCTION orp_rollup_move();"
    /* the rows written before this version */
    "INSERT INTO rollup_hour SELECT started_ms - started_ms % 3600000, instance, client,"
    " COALESCE(model, ''), cost_source, count(*), count(*) FILTER (WHERE status >= 400),"
    " sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(reasoning_tokens),"
    " sum(cost_pusd) FROM requests GROUP BY 1, 2, 3, 4, 5;"
    "INSERT INTO rollup_day SELECT hour_ms - hour_ms % 86400000, instance, client, model,"
    " cost_source, sum(requests), sum(errors), sum(prompt_tokens), sum(completion_tokens),"
    " sum(cached_tokens), sum(reasoning_tokens), sum(cost_pusd) FROM rollup_hour"
    " GROUP BY 1, 2, 3, 4, 5;"
    "CREATE INDEX requests_client_id ON requests(client, id);"
    "CREATE INDEX requests_model_id ON requests(model, id);"
    "CREATE INDEX requests_instance_id ON requests(instance, id);"
    "CREATE INDEX requests_started_id ON requests(started_ms, id);",
    /* 4: the managed clients (managed.h), SQLite's columns; key hashes only. */
    "CREATE TABLE clients ("
    " name text PRIMARY KEY,"
    " key_sha256 bytea,"
    " old_key_sha256 bytea,"
    " old_key_until_ms bigint,"
    " admin integer NOT NULL DEFAULT 0,"
    " models text NOT NULL DEFAULT '[]',"
    " rpm bigint NOT NULL DEFAULT 0,"
    " tpm bigint NOT NULL DEFAULT 0,"
    " max_concurrent integer NOT NULL DEFAULT 0,"
    " budget_day_pusd bigint NOT NULL DEFAULT 0,"
    " budget_month_pusd bigint NOT NULL DEFAULT 0,"
    " expires_ms bigint,"
    " defaults text NOT NULL DEFAULT '{}',"
    " created_ms bigint NOT NULL,"
    " updated_ms bigint NOT NULL,"
    " revoked_ms bigint);",
    /* 5: limits.shared: rate and concurrency limits in the same rows (lease.h). */
    "ALTER TABLE budgets DROP CONSTRAINT budgets_period_check;"
    "ALTER TABLE budgets ADD CONSTRAINT budgets_period_check"
    " CHECK (period IN ('day', 'month', 'rpm', 'tpm', 'concurrent'));",
    /* 6: alerts sent once across the instances (alerts_pg.h): SQLite's
     * columns and key, plus which instance delivers the row and since when. */
    "CREATE TABLE alerts_sent ("
    " client text NOT NULL,"
    " budget text NOT NULL,"
    " period text NOT NULL,"
    " threshold integer NOT NULL,"
    " spent_pusd bigint NOT NULL DEFAULT 0,"
    " limit_pusd bigint NOT NULL DEFAULT 0,"
    " crossed_ms bigint NOT NULL,"
    " sent_ms bigint,"
    " claimed_by text NOT NULL,"
    " claimed_ms bigint NOT NULL,"
    " PRIMARY KEY (client, budget, period, threshold));"
    "CREATE INDEX alerts_sent_pending ON alerts_sent(crossed_ms) WHERE sent_ms IS NULL;",
};

#define NCOLS 27
static const char insert_head[] =
    "INSERT INTO requests (row_key, instance, request_id, started_at, started_ms, client,"
    " \"user\", route, model, served_model, provider, stream, status, attempts, prompt_tokens,"
    " completion_tokens, total_tokens, cached_tokens, reasoning_tokens, cost_pusd, cost_source,"
    " generation_id, finish_reason, latency_ms, ttfb_ms, error_class, outcome) VALUES ";
static const char insert_tail[] = " ON CONFLICT (row_key) DO NOTHING";

int pgledger_keys_init(struct pgl_keys *k)
{
    if (getrandom(&k->boot, sizeof k->boot, 0) != (ssize_t)sizeof k->boot)
        return -1;
    k->seq = 0;
    return 0;
}

void pgledger_key_next(struct pgl_keys *k, char *out)
{
    snprintf(out, PGL_KEY_LEN, "%016" PRIx64 "-%" PRIu64, k->boot, ++k->seq);
}

/* The version recorded, under the lock the caller's transaction holds. */
static int read_version(struct pgconn *c, int *version, char *err, size_t errlen)
{
    PGresult *r;
    int rc = pgconn_exec(c,
                         "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ");"
                         "CREATE TABLE IF NOT EXISTS orp_schema (version integer PRIMARY KEY,"
                         " applied_at timestamptz NOT NULL DEFAULT now(), instance text);"
                         "SELECT COALESCE(max(version), 0) FROM orp_schema",
                         0, NULL, &r, err, errlen);
    if (rc != PGC_OK)
        return rc;
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return PGC_OK;
}

int pgledger_migrate(struct pgconn *c, const char *instance, int *version, int *applied, char *err,
                     size_t errlen)
{
    int rc, v = 0;

    *applied = 0;
    rc = pgconn_exec(c, "BEGIN", 0, NULL, NULL, err, errlen);
    if (rc == PGC_OK)
        rc = read_version(c, &v, err, errlen);
    while (rc == PGC_OK && v < PGLEDGER_SCHEMA_VERSION) {
        char vs[16];
        const char *p[2] = {vs, instance};
        rc = pgconn_exec(c, migrations[v], 0, NULL, NULL, err, errlen);
        snprintf(vs, sizeof vs, "%d", v + 1);
        if (rc == PGC_OK)
            rc = pgconn_exec(c, "INSERT INTO orp_schema (version, instance) VALUES ($1, $2)", 2, p,
                             NULL, err, errlen);
        if (rc == PGC_OK) {
            v++;
            (*applied)++;
        }
    }
    if (rc == PGC_OK)
        rc = pgconn_exec(c, "COMMIT", 0, NULL, NULL, err, errlen);
    if (rc == PGC_SQL) /* the transaction is aborted: end it, keep the first error */
        pgconn_exec(c, "ROLLBACK", 0, NULL, NULL, NULL, 0);
    if (rc != PGC_OK)
        *applied = 0;
    *version = v;
    return rc;
}

/* Replaces bytes that are not UTF-8 with '?', in place. */
static void clean_text(char *s, size_t cap)
{
    char tmp[256];
    if (utf8_valid(s, strlen(s)))
        return;
    if (cap > sizeof tmp)
        cap = sizeof tmp;
    utf8_copy(tmp, cap, s);
    memcpy(s, tmp, strlen(tmp) + 1);
}

static void clean_record(struct ledger_record *r)
{
#define CLEAN(f) clean_text(r->f, sizeof r->f)
    CLEAN(request_id);
    CLEAN(client);
    CLEAN(user);
    CLEAN(route);
    CLEAN(model);
    CLEAN(served_model);
    CLEAN(provider);
    CLEAN(generation_id);
    CLEAN(finish_reason);
    CLEAN(error_class);
    CLEAN(outcome);
#undef CLEAN
}

/* Numbers of one row as text: 14 slots of 32 bytes. */
struct row_text {
    struct ledger_record rec;
    char num[14][32];
};

static const char *opt(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

/* Points p[0..NCOLS) at row's values (kept in t). */
static void row_params(const struct pgl_row *row, const char *instance, struct row_text *t,
                       const char **p)
{
    struct ledger_record *r = &t->rec;
    time_t s;
    struct tm tm;
    char date[24];
    int i = 0, k = 0;

    t->rec = row->rec;
    clean_record(r);
    s = (time_t)(r->started_ms / 1000);
    gmtime_r(&s, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t->num[0], sizeof t->num[0], "%s.%03dZ", date, (int)(r->started_ms % 1000));
#define NUM(fmt, v) (snprintf(t->num[++k], sizeof t->num[0], fmt, v), t->num[k])
    p[i++] = row->key;
    p[i++] = instance;
    p[i++] = r->request_id;
    p[i++] = t->num[0];
    p[i++] = NUM("%" PRId64, r->started_ms);
    p[i++] = r->client[0] ? r->client : "anonymous";
    p[i++] = opt(r->user);
    p[i++] = r->route;
    p[i++] = opt(r->model);
    p[i++] = opt(r->served_model);
    p[i++] = opt(r->provider);
    p[i++] = NUM("%d", r->stream);
    p[i++] = NUM("%d", r->status);
    p[i++] = NUM("%d", r->attempts);
    p[i++] = NUM("%" PRId64, r->prompt_tokens);
    p[i++] = NUM("%" PRId64, r->completion_tokens);
    p[i++] = NUM("%" PRId64, r->total_tokens);
    p[i++] = NUM("%" PRId64, r->cached_tokens);
    p[i++] = NUM("%" PRId64, r->reasoning_tokens);
    p[i++] = NUM("%" PRId64, r->cost_pusd);
    p[i++] = ledger_cost_source_name(r->cost_source);
    p[i++] = opt(r->generation_id);
    p[i++] = opt(r->finish_reason);
    p[i++] = NUM("%.17g", r->latency_ms);
    p[i++] = r->ttfb_ms >= 0 ? NUM("%.17g", r->ttfb_ms) : NULL;
    p[i++] = opt(r->error_class);
    p[i++] = opt(r->outcome);
#undef NUM
}

/* "INSERT ... VALUES ($1,...,$27),(...)... ON CONFLICT ..." for n rows. */
static char *insert_sql(size_t n)
{
    size_t cap = sizeof insert_head + sizeof insert_tail + n * (NCOLS * 8 + 4);
    char *sql = malloc(cap), *w;
    size_t i;
    int j;

    if (sql == NULL)
        return NULL;
    w = sql + snprintf(sql, cap, "%s", insert_head);
    for (i = 0; i < n; i++) {
        *w++ = i ? ',' : '(';
        if (i)
            *w++ = '(';
        for (j = 0; j < NCOLS; j++)
            w += sprintf(w, j ? ",$%zu" : "$%zu", i * NCOLS + (size_t)j + 1);
        *w++ = ')';
    }
    memcpy(w, insert_tail, sizeof insert_tail);
    return sql;
}

/* One statement of n <= PGLEDGER_CHUNK rows. */
static int insert_chunk(struct pgconn *c, const char *instance, const struct pgl_row *rows,
                        size_t n, size_t *inserted, char *err, size_t errlen)
{
    struct row_text *t = malloc(n * sizeof *t);
    const char **p = malloc(n * NCOLS * sizeof *p);
    char *sql = insert_sql(n);
    PGresult *res = NULL;
    size_t i;
    int rc = PGC_DOWN;

    if (t == NULL || p == NULL || sql == NULL) {
        util_set_err(err, errlen, "postgresql insert: out of memory");
        goto done;
    }
    for (i = 0; i < n; i++)
        row_params(&rows[i], instance, &t[i], p + i * NCOLS);
    rc = pgconn_exec(c, sql, (int)(n * NCOLS), p, &res, err, errlen);
    if (rc == PGC_OK)
        *inserted += (size_t)strtoul(PQcmdTuples(res), NULL, 10);
    PQclear(res);
done:
    free(sql);
    free(p);
    free(t);
    return rc;
}

int pgledger_insert(struct pgconn *c, const char *instance, const struct pgl_row *rows, size_t n,
                    size_t *inserted, char *err, size_t errlen)
{
    size_t done = 0, ins = 0;
    int rc = PGC_OK;

    while (rc == PGC_OK && done < n) {
        size_t k = n - done < PGLEDGER_CHUNK ? n - done : PGLEDGER_CHUNK;
        rc = insert_chunk(c, instance, rows + done, k, &ins, err, errlen);
        done += k;
    }
    if (inserted != NULL)
        *inserted = ins;
    return rc;
}
