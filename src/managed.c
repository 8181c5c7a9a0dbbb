/* managed.c - see managed.h.  This file holds the merged config: it reads
 * the `clients` table and builds the config workers use; managed_edit.c
 * checks and writes the changes. */
#include "managed_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pgconn.h"

struct managed_state managed_g = {.mu = PTHREAD_MUTEX_INITIALIZER};
#define M managed_g

int managed_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

void managed_iso_time(int64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *dup_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static void num(const cJSON *o, const char *name, int *has, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNumber(v)) {
        *has = 1;
        *out = v->valuedouble;
    }
}

/* The defaults column (checked when written: managed_edit.c). */
void managed_load_defaults(const char *text, struct bodyedit_defaults *d)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    double mt = 0;

    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return;
    }
    d->model = dup_str(o, "model");
    d->system_prompt = dup_str(o, "system_prompt");
    d->context = dup_str(o, "context");
    num(o, "temperature", &d->has_temperature, &d->temperature);
    num(o, "top_p", &d->has_top_p, &d->top_p);
    num(o, "frequency_penalty", &d->has_frequency_penalty, &d->frequency_penalty);
    num(o, "presence_penalty", &d->has_presence_penalty, &d->presence_penalty);
    num(o, "max_tokens", &d->has_max_tokens, &mt);
    d->max_tokens = (long)mt;
    cJSON_Delete(o);
}

void managed_load_models(const char *text, struct orp_client *c)
{
    cJSON *a = text ? cJSON_Parse(text) : NULL, *m;
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;

    c->models = calloc((size_t)n + 1, sizeof *c->models);
    if (c->models != NULL)
        cJSON_ArrayForEach(m, a)
            if (cJSON_IsString(m) && (c->models[c->n_models] = strdup(m->valuestring)) != NULL)
                c->n_models++;
    cJSON_Delete(a);
}

static void copy_blob(sqlite3_stmt *st, int col, unsigned char out[32])
{
    if (sqlite3_column_bytes(st, col) == 32)
        memcpy(out, sqlite3_column_blob(st, col), 32);
    else
        memset(out, 0, 32);
}

static void load_row(sqlite3_stmt *st, struct orp_client *c)
{
    c->name = strdup((const char *)sqlite3_column_text(st, 0));
    copy_blob(st, 1, c->key_sha256);
    copy_blob(st, 2, c->old_key_sha256);
    c->old_key_until_ms = sqlite3_column_int64(st, 3);
    c->admin = sqlite3_column_int(st, 4);
    managed_load_models((const char *)sqlite3_column_text(st, 5), c);
    c->limits.rpm = sqlite3_column_int64(st, 6);
    c->limits.tpm = sqlite3_column_int64(st, 7);
    c->limits.max_concurrent = sqlite3_column_int(st, 8);
    c->limits.budget_day_pusd = sqlite3_column_int64(st, 9);
    c->limits.budget_month_pusd = sqlite3_column_int64(st, 10);
    c->expires_ms = sqlite3_column_int64(st, 11);
    managed_load_defaults((const char *)sqlite3_column_text(st, 12), &c->defaults);
    c->created_ms = sqlite3_column_int64(st, 13);
    c->updated_ms = sqlite3_column_int64(st, 14);
}

static int base_has(const struct orp_config *base, const char *name)
{
    for (int i = 0; i < base->n_clients; i++)
        if (strcmp(base->clients[i].name, name) == 0)
            return 1;
    return 0;
}

struct orp_config *managed_merge_begin(struct orp_config *base, int *cap)
{
    struct orp_config *m = malloc(sizeof *m);

    if (m == NULL)
        return NULL;
    *cap = base->n_clients + 8;
    memcpy(m, base, sizeof *m);
    m->clients = calloc((size_t)*cap, sizeof *m->clients);
    m->base = config_hold(base);
    m->n_base_clients = base->n_clients;
    atomic_init(&m->refs, 1);
    if (m->clients == NULL) {
        m->n_clients = m->n_base_clients = 0;
        config_release(m);
        return NULL;
    }
    if (base->n_clients > 0) /* base->clients is NULL without any: memcpy's src must not be */
        memcpy(m->clients, base->clients, (size_t)base->n_clients * sizeof *m->clients);
    return m;
}

struct orp_client *managed_merge_slot(struct orp_config *m, int *cap, const char *name)
{
    struct orp_client *c;

    if (name == NULL || base_has(m->base, name)) {
        log_warn("managed client '%s' is hidden: the config file defines a client of that name",
                 name ? name : "?");
        return NULL;
    }
    if (m->n_clients == *cap) {
        struct orp_client *nc = realloc(m->clients, (size_t)*cap * 2 * sizeof *nc);
        if (nc == NULL)
            return NULL;
        m->clients = nc;
        *cap *= 2;
    }
    c = &m->clients[m->n_clients++];
    memset(c, 0, sizeof *c);
    c->managed = 1;
    return c;
}

/* A merged config: base's settings and clients, then every client of the
 * table that is not revoked and whose name base does not use.  NULL (err
 * set) when the table cannot be read. */
static struct orp_config *merge(sqlite3 *db, struct orp_config *base, char *err, size_t errlen)
{
    static const char sql[] =
        "SELECT name, key_sha256, old_key_sha256, old_key_until_ms, admin, models, rpm, tpm,"
        " max_concurrent, budget_day_pusd, budget_month_pusd, expires_ms, defaults, created_ms,"
        " updated_ms FROM clients WHERE revoked_ms IS NULL ORDER BY name";
    int cap, rc;
    struct orp_config *m = managed_merge_begin(base, &cap);
    sqlite3_stmt *st = NULL;

    if (m == NULL || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the managed clients: %s", sqlite3_errmsg(db));
        config_release(m);
        return NULL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct orp_client *c = managed_merge_slot(m, &cap, (const char *)sqlite3_column_text(st, 0));
        if (c != NULL)
            load_row(st, c);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot read the managed clients: %s", sqlite3_errmsg(db));
        config_release(m);
        return NULL;
    }
    return m;
}

void managed_install(struct orp_config *m)
{
    config_release(M.current);
    M.current = m;
    if (M.publish != NULL)
        M.publish(m, M.publish_arg);
}

/* ---- ledger.backend = "postgresql" (managed_pg.c reads the rows) ---- */

static PGresult *pg_last; /* the last good read (under M.mu) */

static int64_t col_i(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void col_hash(const PGresult *r, int row, int col, unsigned char out[32])
{
    if (PQgetisnull(r, row, col) || keys_unhex(PQgetvalue(r, row, col), out, 32) < 0)
        memset(out, 0, 32);
}

static void load_pg_row(const PGresult *r, int i, struct orp_client *c)
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

/* The merged config from the last good read of PostgreSQL (base alone
 * before any); NULL when out of memory. */
static struct orp_config *merge_pg(void)
{
    int cap;
    struct orp_config *m = managed_merge_begin(M.base, &cap);

    for (int i = 0; m != NULL && pg_last != NULL && i < PQntuples(pg_last); i++) {
        struct orp_client *c = managed_merge_slot(m, &cap, PQgetvalue(pg_last, i, 0));
        if (c != NULL)
            load_pg_row(pg_last, i, c);
    }
    return m;
}

/* Caller holds M.mu: reads through c, publishes. */
static int republish_pg(struct pgconn *c, char *err, size_t errlen)
{
    PGresult *r = NULL;
    struct orp_config *m;

    if (managed_pg_read(c, &r, err, errlen) < 0)
        return -1;
    PQclear(pg_last);
    pg_last = r;
    if ((m = merge_pg()) == NULL) {
        snprintf(err, errlen, "cannot merge the managed clients: out of memory");
        return -1;
    }
    managed_install(m);
    return 0;
}

/* managed_pg.c's thread, after a notification, a reconnect or its period:
 * the table re-read through its own connection c and published. */
static int pg_changed(struct pgconn *c, void *arg)
{
    char err[512];
    int rc;

    (void)arg;
    pthread_mutex_lock(&M.mu);
    rc = republish_pg(c, err, sizeof err);
    pthread_mutex_unlock(&M.mu);
    if (rc < 0)
        log_warn("clients: %s; the managed clients read last stay in force", err);
    return rc;
}

/* Caller holds M.mu.  The new merged config replaces the current one and
 * goes to every worker.  0, or -1 (err set; nothing changed). */
int managed_republish(sqlite3 *db, char *err, size_t errlen)
{
    struct orp_config *m;

    if (M.pg)
        return republish_pg(managed_pg_writer(), err, errlen);
    if ((m = merge(db, M.base, err, errlen)) == NULL)
        return -1;
    managed_install(m);
    return 0;
}

static int open_db(const char *path, sqlite3 **db, char *err, size_t errlen)
{
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open the ledger %s: %s", path, *db ? sqlite3_errmsg(*db) : "?");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 2000);
    return 0;
}

/* Caller holds M.mu: the table read and published.  0, or -1 (err set). */
static int load(char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc;

    if (M.pg)
        return managed_republish(NULL, err, errlen);
    rc = open_db(M.base->ledger_path, &db, err, errlen) == 0 ? managed_republish(db, err, errlen) : -1;
    sqlite3_close(db);
    return rc;
}

struct orp_config *managed_start(struct orp_config *file_cfg, char *err, size_t errlen)
{
    struct orp_config *out = NULL, *m;

    pthread_mutex_lock(&M.mu);
    M.base = file_cfg;
    M.pg = strcmp(file_cfg->ledger_backend, "postgresql") == 0;
    if (M.pg && managed_pg_open(file_cfg, pg_changed, NULL, err, errlen) < 0) {
        M.pg = 0; /* err set */
    } else if (load(err, errlen) == 0) {
        out = config_hold(M.current);
    } else if (M.pg && (m = merge_pg()) != NULL) {
        /* The LISTEN thread reads them as soon as PostgreSQL answers. */
        log_warn("%s; no managed client works until PostgreSQL answers", err);
        managed_install(m);
        out = config_hold(M.current);
    }
    pthread_mutex_unlock(&M.mu);
    if (out != NULL && out->n_clients > out->n_base_clients)
        log_info("%d managed clients loaded from the %s", out->n_clients - out->n_base_clients,
                 M.pg ? "PostgreSQL database" : "ledger");
    return out;
}

void managed_set_publisher(managed_publish_fn fn, void *arg)
{
    pthread_mutex_lock(&M.mu);
    M.publish = fn;
    M.publish_arg = arg;
    pthread_mutex_unlock(&M.mu);
    if (fn != NULL)
        managed_pg_start(); /* with PostgreSQL: now its publishes reach the workers */
}

struct orp_config *managed_rebase(struct orp_config *file_cfg)
{
    struct orp_config *old_base, *out;
    char err[512];
    int failed;

    pthread_mutex_lock(&M.mu);
    old_base = M.base;
    M.base = file_cfg;
    failed = load(err, sizeof err) < 0;
    if (failed && M.pg) {
        /* PostgreSQL: the set read last stays in force. */
        struct orp_config *m = merge_pg();
        log_error("reload: %s; keeping the managed clients read last", err);
        if (m != NULL)
            managed_install(m);
    } else if (failed) {
        /* The table cannot be read now: the new file config still takes
         * effect, with the managed clients of the last good read. */
        struct orp_config *m = malloc(sizeof *m);
        log_error("reload: %s; keeping the managed clients already loaded", err);
        if (m != NULL) {
            const struct orp_config *cur = M.current;
            int nm = cur->n_clients - cur->n_base_clients;
            memcpy(m, file_cfg, sizeof *m);
            m->base = config_hold(file_cfg);
            m->n_base_clients = m->n_clients = file_cfg->n_clients;
            atomic_init(&m->refs, 1);
            m->clients = calloc((size_t)(file_cfg->n_clients + nm + 1), sizeof *m->clients);
            if (m->clients != NULL)
                memcpy(m->clients, file_cfg->clients, (size_t)file_cfg->n_clients * sizeof *m->clients);
            else
                m->n_base_clients = m->n_clients = 0;
            /* The managed clients are left out of this one: their strings
             * belong to the current merged config.  They come back with the
             * next write or reload that reads the table. */
            config_release(M.current);
            M.current = m;
            if (M.publish != NULL)
                M.publish(m, M.publish_arg);
        }
    }
    config_release(old_base);
    out = config_hold(M.current);
    pthread_mutex_unlock(&M.mu);
    return out;
}

struct orp_config *managed_current(void)
{
    struct orp_config *c;
    pthread_mutex_lock(&M.mu);
    c = M.current ? config_hold(M.current) : NULL;
    pthread_mutex_unlock(&M.mu);
    return c;
}

void managed_stop(void)
{
    managed_pg_close(); /* its thread publishes under M.mu: stopped first */
    pthread_mutex_lock(&M.mu);
    M.pg = 0;
    PQclear(pg_last);
    pg_last = NULL;
    config_release(M.current);
    config_release(M.base);
    M.current = M.base = NULL;
    M.publish = NULL;
    pthread_mutex_unlock(&M.mu);
}

/* ---- shared by the writes (managed_edit.c, managed_pgedit.c) ---- */

int managed_fail(struct managed_result *res, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    res->status = status;
    res->code = code;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int is_config_client(const char *name)
{
    const struct orp_config *b = M.base;
    for (int i = 0; b != NULL && i < b->n_clients; i++)
        if (strcmp(b->clients[i].name, name) == 0)
            return 1;
    return 0;
}

int managed_check_name(const char *name, int must_exist, struct managed_result *res)
{
    if (!managed_valid_name(name))
        return managed_fail(res, must_exist ? 404 : 400, must_exist ? "unknown_client" : "invalid_name",
                    must_exist ? "no client named '%.63s'" : "invalid name '%.63s'", name);
    if (is_config_client(name))
        return managed_fail(res, 409, must_exist ? "config_client" : "name_taken",
                    must_exist ? "client '%s' is defined in the config file: it is read-only here"
                               : "client '%s' is defined in the config file", name);
    return 0;
}

int managed_new_key(struct managed_result *res, uint8_t h[32])
{
    if (keys_generate(res->key, sizeof res->key) < 0)
        return managed_fail(res, 500, "no_randomness", "the kernel gave no randomness for a key");
    keys_sha256(res->key, strlen(res->key), h);
    return 0;
}
