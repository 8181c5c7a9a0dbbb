/* managed_edit.c - the writes of managed.h: a request body checked
 * strictly (every field known, of its type, in its range) and turned into
 * column values, one transaction, then the merged config published before
 * the answer goes out, so the answer's client sees the change at once. */
#include "managed_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pricing.h"
#include "report.h"
#include "utf8.h"
#include "util.h"

#define MAX_GRACE_S (30LL * 86400)

#define fail managed_fail


/* A member name from the body, for an error message: at most 60 bytes,
 * cut between characters (the answer must stay valid UTF-8). */
static const char *shown(const char *s, char buf[64])
{
    utf8_copy(buf, 61, s);
    return buf;
}

void managed_change_free(struct managed_change *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->v[i].text);
}

static int add(struct managed_change *e, const char *col, int kind, int64_t i, char *text)
{
    for (int k = 0; k < e->n; k++)
        if (strcmp(e->v[k].name, col) == 0) {
            free(text);
            return -1;
        }
    e->v[e->n++] = (struct managed_col){col, kind, i, text};
    return 0;
}

static int whole_number(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return -1;
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* "12.5" or 12.5 (USD, 0 .. PRICING_MAX_COST_USD) -> picodollars. */
static int parse_usd(const cJSON *v, int64_t *pusd)
{
    if (cJSON_IsNumber(v)) {
        if (!(v->valuedouble >= 0) || v->valuedouble > PRICING_MAX_COST_USD)
            return -1;
        *pusd = pricing_usd_to_pusd(v->valuedouble);
        return 0;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        size_t w = strspn(s, "0123456789"), f = 0;
        int64_t whole = 0, frac = 0;
        if (w == 0 || w > 7)
            return -1;
        if (s[w] == '.') {
            f = strspn(s + w + 1, "0123456789");
            if (f == 0 || f > 12 || s[w + 1 + f] != '\0')
                return -1;
        } else if (s[w] != '\0') {
            return -1;
        }
        for (size_t i = 0; i < w; i++)
            whole = whole * 10 + (s[i] - '0');
        for (size_t i = 0; i < 12; i++)
            frac = frac * 10 + (i < f ? s[w + 1 + i] - '0' : 0);
        if (whole > PRICING_MAX_COST_USD || (whole == PRICING_MAX_COST_USD && frac > 0))
            return -1;
        *pusd = whole * 1000000000000LL + frac;
        return 0;
    }
    return -1;
}

static int check_models(const cJSON *v, struct managed_result *res)
{
    const cJSON *m;
    if (!cJSON_IsArray(v))
        return fail(res, 400, "invalid_field", "models must be an array of model patterns");
    cJSON_ArrayForEach(m, v) {
        if (!cJSON_IsString(m) || m->valuestring[0] == '\0' || strlen(m->valuestring) > 200 ||
            !utf8_is_clean_name(m->valuestring, strlen(m->valuestring)))
            return fail(res, 400, "invalid_field",
                        "models must hold strings of 1-200 bytes with no control characters");
    }
    return 0;
}

static int check_defaults(const cJSON *v, struct managed_result *res)
{
    static const struct { const char *name; double lo, hi; int integer; } nums[] = {
        {"temperature", 0, 2, 0},       {"top_p", 0, 1, 0},
        {"frequency_penalty", -2, 2, 0}, {"presence_penalty", -2, 2, 0},
        {"max_tokens", 1, 10000000, 1},
    };
    const cJSON *f;
    if (!cJSON_IsObject(v))
        return fail(res, 400, "invalid_field", "defaults must be an object");
    cJSON_ArrayForEach(f, v) {
        const char *k = f->string;
        int known = 0;
        if (strcmp(k, "model") == 0 || strcmp(k, "system_prompt") == 0 || strcmp(k, "context") == 0) {
            if (!cJSON_IsString(f))
                return fail(res, 400, "invalid_field", "defaults.%s must be a string", k);
            if (k[0] == 'm' && (f->valuestring[0] == '\0' || strlen(f->valuestring) > 127 ||
                                !utf8_is_clean_name(f->valuestring, strlen(f->valuestring))))
                return fail(res, 400, "invalid_field",
                            "defaults.model must be a model id of 1-127 bytes with no control characters");
            continue;
        }
        for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
            int64_t dummy;
            if (strcmp(k, nums[i].name) != 0)
                continue;
            known = 1;
            if (!cJSON_IsNumber(f) || f->valuedouble < nums[i].lo || f->valuedouble > nums[i].hi ||
                (nums[i].integer && whole_number(f, nums[i].lo, nums[i].hi, &dummy) < 0))
                return fail(res, 400, "invalid_field", "defaults.%s must be %s between %g and %g", k,
                            nums[i].integer ? "an integer" : "a number", nums[i].lo, nums[i].hi);
        }
        if (!known) {
            char b[64];
            return fail(res, 400, "unknown_field", "unknown field 'defaults.%s'", shown(k, b));
        }
    }
    return 0;
}

/* One body member -> one column.  0, or -1 (res filled). */
static int field(struct managed_change *e, const cJSON *f, int creating, struct managed_result *res)
{
    static const struct { const char *name, *col; double hi; } ints[] = {
        {"rpm", "rpm", 1e9}, {"tpm", "tpm", 1e12}, {"max_concurrent", "max_concurrent", 1e6}};
    const char *k = f->string;
    int64_t i = 0;
    int r = 0;

    for (size_t n = 0; n < sizeof ints / sizeof ints[0]; n++)
        if (strcmp(k, ints[n].name) == 0) {
            if (whole_number(f, 0, ints[n].hi, &i) < 0)
                return fail(res, 400, "invalid_field", "%s must be an integer between 0 and %.0f", k,
                            ints[n].hi);
            r = add(e, ints[n].col, 'i', i, NULL);
            goto added;
        }
    if (strcmp(k, "name") == 0 && creating) {
        if (!cJSON_IsString(f) || !managed_valid_name(f->valuestring))
            return fail(res, 400, "invalid_name",
                        "name must be 1-63 characters of letters, digits, '.', '_' or '-'");
        if (e->name != NULL) /* else the answer could name one client, the key another's */
            return fail(res, 400, "duplicate_field", "field 'name' is given twice");
        e->name = f->valuestring;
    } else if (strcmp(k, "budget_usd_day") == 0 || strcmp(k, "budget_usd_month") == 0) {
        /* 0 would mean "no budget" to the limits (limits.h), the opposite
         * of what it says: null is the way to remove one. */
        if (!cJSON_IsNull(f) && (parse_usd(f, &i) < 0 || i == 0))
            return fail(res, 400, "invalid_field",
                        "%s must be a decimal amount of USD above 0 and at most %d (\"12.50\"), "
                        "or null for no budget", k, PRICING_MAX_COST_USD);
        r = add(e, k[11] == 'd' ? "budget_day_pusd" : "budget_month_pusd", 'i', i, NULL);
    } else if (strcmp(k, "expires_at") == 0) {
        if (cJSON_IsNull(f))
            r = add(e, "expires_ms", 'n', 0, NULL);
        else if (!cJSON_IsString(f) || strlen(f->valuestring) < 10 || f->valuestring[4] != '-' ||
                 report_parse_time(f->valuestring, 0, &i) < 0)
            return fail(res, 400, "invalid_field",
                        "expires_at must be an ISO-8601 UTC time (\"2026-12-31T00:00:00Z\") or null");
        else /* 1970-01-01T00:00:00Z is 0, which would mean "never" */
            r = add(e, "expires_ms", 'i', i > 0 ? i : 1, NULL);
    } else if (strcmp(k, "models") == 0) {
        if (!cJSON_IsNull(f) && check_models(f, res) < 0)
            return -1;
        r = add(e, "models", 't', 0, cJSON_IsNull(f) ? strdup("[]") : cJSON_PrintUnformatted(f));
    } else if (strcmp(k, "defaults") == 0) {
        if (!cJSON_IsNull(f) && check_defaults(f, res) < 0)
            return -1;
        r = add(e, "defaults", 't', 0, cJSON_IsNull(f) ? strdup("{}") : cJSON_PrintUnformatted(f));
    } else if (strcmp(k, "admin") == 0) {
        if (!cJSON_IsBool(f))
            return fail(res, 400, "invalid_field", "admin must be true or false");
        r = add(e, "admin", 'i', cJSON_IsTrue(f), NULL);
    } else {
        char b[64];
        return fail(res, 400, "unknown_field", "unknown field '%s'", shown(k, b));
    }
added:
    if (r < 0)
        return fail(res, 400, "duplicate_field", "field '%s' is given twice", k);
    return 0;
}

int managed_parse_change(const cJSON *body, int creating, struct managed_change *e,
                         struct managed_result *res)
{
    const cJSON *f;
    if (!cJSON_IsObject(body))
        return fail(res, 400, "invalid_body", "the body must be a JSON object");
    cJSON_ArrayForEach(f, body)
        if (field(e, f, creating, res) < 0)
            return -1;
    if (creating && e->name == NULL)
        return fail(res, 400, "invalid_name", "name is required: 1-63 characters of letters, "
                                              "digits, '.', '_' or '-'");
    return 0;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* UPDATE clients SET <cols>, updated_ms = now WHERE name = ?. */
static int apply(sqlite3 *db, const char *name, const struct managed_change *e, int64_t now)
{
    char sql[512];
    size_t used = (size_t)snprintf(sql, sizeof sql, "UPDATE clients SET updated_ms = ?1");
    sqlite3_stmt *st = NULL;
    int rc;

    for (int i = 0; i < e->n; i++)
        used += (size_t)snprintf(sql + used, sizeof sql - used, ", %s = ?%d", e->v[i].name, i + 3);
    snprintf(sql + used, sizeof sql - used, " WHERE name = ?2");
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    for (int i = 0; i < e->n; i++) {
        if (e->v[i].kind == 'i')
            sqlite3_bind_int64(st, i + 3, e->v[i].i);
        else if (e->v[i].kind == 't')
            sqlite3_bind_text(st, i + 3, e->v[i].text ? e->v[i].text : "", -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, i + 3);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* 1 the name has a live (not revoked) row, 0 it has none, -1 error. */
static int live_row(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    int rc;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM clients WHERE name = ?1 AND revoked_ms IS NULL", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}


/* Caller holds the lock and an open transaction: commit and publish. */
static void commit(sqlite3 *db, unsigned ok_status, struct managed_result *res)
{
    char err[256];
    if (exec(db, "COMMIT") < 0) {
        fail(res, 500, "ledger_unavailable", "the ledger could not be written: %s", sqlite3_errmsg(db));
        exec(db, "ROLLBACK");
        return;
    }
    if (managed_republish(db, err, sizeof err) < 0) {
        log_error("admin: %s", err);
        fail(res, 500, "publish_failed", "the change is saved but not in effect yet: %s", err);
        return;
    }
    res->status = ok_status;
}

/* Begins a write on name: lock, transaction, the checks every write on
 * an existing client shares.  0, or -1 (res filled, lock released). */

static int begin(sqlite3 *db, const char *name, int must_exist, struct managed_result *res)
{
    int live;
    pthread_mutex_lock(&managed_g.mu);
    if (managed_check_name(name, must_exist, res) < 0) {
        /* res filled */
    } else if (exec(db, "BEGIN IMMEDIATE") < 0) {
        fail(res, 500, "ledger_unavailable", "the ledger is busy or unwritable: %s", sqlite3_errmsg(db));
    } else if ((live = live_row(db, name)) < 0 || live != must_exist) {
        if (live < 0)
            fail(res, 500, "ledger_unavailable", "the ledger could not be read: %s", sqlite3_errmsg(db));
        else if (must_exist)
            fail(res, 404, "unknown_client", "no client named '%s'", name);
        else
            fail(res, 409, "name_taken", "a client named '%s' exists already", name);
        exec(db, "ROLLBACK");
    } else {
        return 0;
    }
    pthread_mutex_unlock(&managed_g.mu);
    return -1;
}

static void end(sqlite3 *db, int failed, unsigned ok_status, struct managed_result *res)
{
    if (failed) {
        if (res->status == 0)
            fail(res, 500, "ledger_unavailable", "the ledger could not be written: %s",
                 sqlite3_errmsg(db));
        exec(db, "ROLLBACK");
    } else {
        commit(db, ok_status, res);
    }
    pthread_mutex_unlock(&managed_g.mu);
}


void managed_create(sqlite3 *db, const cJSON *body, struct managed_result *res)
{
    static const char sql[] =
        "INSERT OR REPLACE INTO clients (name, key_sha256, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)";
    struct managed_change e;
    sqlite3_stmt *st = NULL;
    int64_t now = util_wall_ms();
    uint8_t h[32];
    int bad;

    memset(&e, 0, sizeof e);
    if (managed_parse_change(body, 1, &e, res) < 0 || managed_g.pg) {
        if (res->status == 0)
            managed_pg_create(&e, res);
        managed_change_free(&e);
        return;
    }
    if (begin(db, e.name, 0, res) < 0) {
        managed_change_free(&e);
        return;
    }
    bad = managed_new_key(res, h) < 0 || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK;
    if (!bad) {
        sqlite3_bind_text(st, 1, e.name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 2, h, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, now);
        bad = sqlite3_step(st) != SQLITE_DONE;
    }
    sqlite3_finalize(st);
    bad = bad || apply(db, e.name, &e, now) < 0;
    end(db, bad, 201, res);
    if (res->status != 201)
        memset(res->key, 0, sizeof res->key);
    else
        log_info("admin: managed client '%s' created", e.name);
    managed_change_free(&e);
}

void managed_edit(sqlite3 *db, const char *name, const cJSON *body, struct managed_result *res)
{
    struct managed_change e;

    memset(&e, 0, sizeof e);
    if (managed_parse_change(body, 0, &e, res) < 0 || managed_g.pg) {
        if (res->status == 0)
            managed_pg_update(name, &e, res);
        managed_change_free(&e);
        return;
    }
    if (begin(db, name, 1, res) < 0) {
        managed_change_free(&e);
        return;
    }
    end(db, apply(db, name, &e, util_wall_ms()) < 0, 200, res);
    if (res->status == 200)
        log_info("admin: managed client '%s' edited", name);
    managed_change_free(&e);
}

int managed_parse_grace(const cJSON *body, int64_t *grace_s, struct managed_result *res)
{
    const cJSON *f;
    *grace_s = 0;
    if (body == NULL)
        return 0;
    if (!cJSON_IsObject(body))
        return fail(res, 400, "invalid_body", "the body must be a JSON object: {\"grace_s\": N}");
    cJSON_ArrayForEach(f, body) {
        char b[64];
        if (strcmp(f->string, "grace_s") != 0)
            return fail(res, 400, "unknown_field", "unknown field '%s'", shown(f->string, b));
        if (f != body->child) /* as in a create or patch: not the last one wins */
            return fail(res, 400, "duplicate_field", "field 'grace_s' is given twice");
        if (whole_number(f, 0, (double)MAX_GRACE_S, grace_s) < 0)
            return fail(res, 400, "invalid_field", "grace_s must be an integer between 0 and %lld",
                        MAX_GRACE_S);
    }
    return 0;
}

/* The SQLite side of managed_rotate (begun and ended here). */
static void rotate_sqlite(sqlite3 *db, const char *name, int64_t grace_s, int64_t now,
                          struct managed_result *res)
{
    static const char sql[] =
        "UPDATE clients SET old_key_sha256 = CASE WHEN ?3 > 0 THEN key_sha256 END,"
        " old_key_until_ms = CASE WHEN ?3 > 0 THEN ?4 + ?3 * 1000 END, key_sha256 = ?2,"
        " updated_ms = ?4 WHERE name = ?1";
    sqlite3_stmt *st = NULL;
    uint8_t h[32];
    int bad;

    if (begin(db, name, 1, res) < 0)
        return;
    bad = managed_new_key(res, h) < 0 || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK;
    if (!bad) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 2, h, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, grace_s);
        sqlite3_bind_int64(st, 4, now);
        bad = sqlite3_step(st) != SQLITE_DONE;
    }
    sqlite3_finalize(st);
    end(db, bad, 200, res);
}

void managed_rotate(sqlite3 *db, const char *name, const cJSON *body, struct managed_result *res)
{
    int64_t grace_s, now = util_wall_ms();

    if (managed_parse_grace(body, &grace_s, res) < 0)
        return;
    if (managed_g.pg)
        managed_pg_rotate(name, grace_s, now, res);
    else
        rotate_sqlite(db, name, grace_s, now, res);
    res->until_ms = grace_s > 0 ? now + grace_s * 1000 : 0;
    if (res->status != 200)
        memset(res->key, 0, sizeof res->key);
    else
        log_info("admin: key of managed client '%s' rotated (old key valid %lld s more)", name,
                 (long long)grace_s);
}

void managed_revoke(sqlite3 *db, const char *name, struct managed_result *res)
{
    static const char sql[] =
        "UPDATE clients SET revoked_ms = ?2, updated_ms = ?2, key_sha256 = NULL,"
        " old_key_sha256 = NULL, old_key_until_ms = NULL WHERE name = ?1";
    sqlite3_stmt *st = NULL;
    int bad;

    if (managed_g.pg) {
        managed_pg_revoke(name, res);
        return;
    }
    if (begin(db, name, 1, res) < 0)
        return;
    bad = sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK;
    if (!bad) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, util_wall_ms());
        bad = sqlite3_step(st) != SQLITE_DONE;
    }
    sqlite3_finalize(st);
    end(db, bad, 204, res);
    if (res->status == 204)
        log_info("admin: managed client '%s' revoked", name);
}
