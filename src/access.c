/* access.c - see access.h.
 *
 * One state record per client name (and one, named "", for all traffic
 * together), created on first use and kept across reloads.  Budgets use
 * reservations: a request reserves its worst-case cost before it goes
 * upstream and settles on the real cost when it ends, so concurrent
 * requests cannot jointly overspend; at most the requests already
 * admitted when the budget ran out can exceed their own estimates. */
#include "access.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bspent.h"
#include "keys.h"
#include "limits.h"
#include "pricing.h"
#include "util.h"

struct state {
    char name[64];
    struct limits_window rpm, tpm;
    int concurrent;
    struct limits_budget day, month;
};

static struct {
    pthread_mutex_t mu;
    struct state *v;
    size_t n, cap;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Caller holds S.mu. */
static struct state *state_for(const char *name)
{
    for (size_t i = 0; i < S.n; i++)
        if (strcmp(S.v[i].name, name) == 0)
            return &S.v[i];
    if (S.n == S.cap) {
        size_t cap = S.cap ? S.cap * 2 : 16;
        struct state *nv = realloc(S.v, cap * sizeof *nv);
        if (nv == NULL)
            return NULL;
        S.v = nv;
        S.cap = cap;
    }
    memset(&S.v[S.n], 0, sizeof S.v[S.n]);
    snprintf(S.v[S.n].name, sizeof S.v[S.n].name, "%s", name);
    limits_window_init(&S.v[S.n].rpm);
    limits_window_init(&S.v[S.n].tpm);
    S.v[S.n].day.period = LIMITS_DAY;
    S.v[S.n].month.period = LIMITS_MONTH;
    return &S.v[S.n++];
}

int access_identify(const struct orp_config *cfg, const char *authorization, struct access_denial *d)
{
    const char *tok;
    size_t len;

    if (strcmp(cfg->auth_mode, "keys") != 0)
        return -1;
    if (authorization == NULL || keys_bearer(authorization, &tok, &len) < 0) {
        d->status = 401;
        d->code = "missing_api_key";
        snprintf(d->message, sizeof d->message,
                 "this orproxy needs a client key: send Authorization: Bearer <key>");
        return -2;
    }
    {
        /* Only hashes are stored; compare against every client's key (and
         * old key) in constant time, so timing reveals neither the key nor
         * which client matched.  A rotation's old key counts only until
         * its grace period ends: checked here, so it stops at that instant
         * with no new config published. */
        uint8_t h[32];
        int found = -1;
        int64_t now = util_wall_ms();
        keys_sha256(tok, len, h);
        for (int k = 0; k < cfg->n_clients; k++) {
            const struct orp_client *c = &cfg->clients[k];
            int eq = keys_ct_equal(h, c->key_sha256, 32);
            int old = keys_ct_equal(h, c->old_key_sha256, 32) & (c->old_key_until_ms > now);
            found = ((eq | old) && found < 0) ? k : found;
        }
        if (found >= 0 && cfg->clients[found].expires_ms > 0 && cfg->clients[found].expires_ms <= now) {
            d->status = 401;
            d->code = "key_expired";
            snprintf(d->message, sizeof d->message, "the client key of '%s' has expired",
                     cfg->clients[found].name);
            return -2;
        }
        if (found >= 0)
            return found;
    }
    d->status = 401;
    d->code = "invalid_api_key";
    snprintf(d->message, sizeof d->message, "the client key is not valid");
    return -2;
}

/* Globs with '*' only, matched by the classic greedy loop with one
 * backtrack point (the last '*'): no recursion, and linear for practical
 * patterns. */
static int glob_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s != '\0') {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star != NULL) { /* let the last '*' swallow one more character */
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int access_model_allowed(const char *const *patterns, size_t n, const char *model)
{
    if (n == 0)
        return 1;
    if (model == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (patterns[i] != NULL && glob_match(patterns[i], model))
            return 1;
    return 0;
}

int access_check_model(const struct orp_config *cfg, int client, const char *model,
                       struct access_denial *d)
{
    const struct orp_client *c;
    if (client < 0)
        return 0;
    c = &cfg->clients[client];
    if (c->n_models == 0)
        return 0;
    if (model != NULL &&
        access_model_allowed((const char *const *)c->models, (size_t)c->n_models, model))
        return 0;
    d->status = 403;
    d->code = "model_not_allowed";
    snprintf(d->message, sizeof d->message, "client '%s' may not use model '%.100s'", c->name,
             model ? model : "(none)");
    return -1;
}

static void limits_of(const struct orp_config *cfg, int client, const struct orp_limits **out)
{
    *out = client >= 0 ? &cfg->clients[client].limits : NULL;
}

static void fmt_reset(int64_t at_ms, char *buf, size_t n)
{
    time_t s = (time_t)(at_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Caller holds S.mu.  Checks one scope (a client, or all traffic).  With
 * shared set (limits.shared), bshare has checked rpm, tpm and
 * max_concurrent across instances: the local counters only count. */
static int admit_scope(struct state *st, const struct orp_limits *lim, const char *who, int64_t now,
                       long long est_tokens, int64_t est_pusd, int shared, struct access_denial *d)
{
    long long ra = 0;
    int64_t reset = 0;

    if (!shared && lim->max_concurrent > 0 && st->concurrent >= lim->max_concurrent) {
        d->status = 429;
        d->code = "concurrency_limit";
        d->retry_after_s = 1;
        snprintf(d->message, sizeof d->message, "%s already has %d requests in progress (max_concurrent)",
                 who, st->concurrent);
        return -1;
    }
    if (!limits_window_check(&st->rpm, now, shared ? 0 : lim->rpm, 1, &ra)) {
        d->status = 429;
        d->code = "rate_limit_rpm";
        d->retry_after_s = (long)ra;
        snprintf(d->message, sizeof d->message, "%s is over its limit of %lld requests per minute",
                 who, lim->rpm);
        return -1;
    }
    if (!limits_window_check(&st->tpm, now, shared ? 0 : lim->tpm, est_tokens, &ra)) {
        limits_window_add(&st->rpm, now, -1); /* not admitted after all */
        d->status = 429;
        d->code = "rate_limit_tpm";
        d->retry_after_s = (long)ra;
        snprintf(d->message, sizeof d->message, "%s is over its limit of %lld tokens per minute",
                 who, lim->tpm);
        return -1;
    }
    /* Shared budgets are checked by bshare (across instances); the local
     * counters still count this instance's spend. */
    st->day.limit_pusd = bshare_active() ? 0 : lim->budget_day_pusd;
    st->month.limit_pusd = bshare_active() ? 0 : lim->budget_month_pusd;
    {
        int daily = 1, ok = limits_budget_reserve(&st->day, now, est_pusd, &reset);
        if (ok && !limits_budget_reserve(&st->month, now, est_pusd, &reset)) {
            limits_budget_settle(&st->day, now, est_pusd, 0); /* undo the daily reservation */
            ok = 0;
            daily = 0;
        }
        if (ok)
            goto admitted;
        char when[32], lim_s[40];
        limits_window_add(&st->rpm, now, -1);
        limits_window_add(&st->tpm, now, -est_tokens);
        fmt_reset(reset, when, sizeof when);
        pricing_format_usd(daily ? lim->budget_day_pusd : lim->budget_month_pusd, lim_s, sizeof lim_s);
        d->status = 402;
        d->code = daily ? "budget_day_exceeded" : "budget_month_exceeded";
        d->retry_after_s = (long)((reset - now + 999) / 1000);
        snprintf(d->message, sizeof d->message,
                 "%s has used its %s budget of $%s; it resets at %s", who,
                 daily ? "daily" : "monthly", lim_s, when);
        return -1;
    }
admitted:
    st->concurrent++;
    return 0;
}

static void release_scope(struct state *st, int64_t now, long long est_tokens, long long tokens,
                          int64_t est_pusd, int64_t cost)
{
    st->concurrent--;
    limits_window_add(&st->tpm, now, tokens - est_tokens);
    limits_budget_settle(&st->day, now, est_pusd, cost);
    limits_budget_settle(&st->month, now, est_pusd, cost);
}

/* Who a shared limit or budget belongs to, for a denial's message. */
static void shared_who(const struct orp_config *cfg, int client, int of_client, char *who, size_t n)
{
    if (of_client)
        snprintf(who, n, "client '%s'", cfg->clients[client].name);
    else
        snprintf(who, n, "all clients together");
}

/* 503 with Retry-After 5: what (of who) cannot be checked, the database
 * that shares it (db: "budget" or "limits") being unreachable. */
static void shared_unavailable(struct access_denial *d, const char *code, const char *what,
                               const char *who, const char *db)
{
    d->status = 503;
    d->code = code;
    d->retry_after_s = 5;
    snprintf(d->message, sizeof d->message,
             "the %s of %.80s cannot be checked: the shared %s database is unreachable; retry "
             "shortly",
             what, who, db);
}

/* The denial for a shared rate or concurrency limit (limits.shared): which
 * is 4 client rpm, 5 client tpm, 6 client max_concurrent, 7 to 9 the same
 * of all traffic (bshare.h). */
static void shared_limit_denial(const struct orp_config *cfg, int client, int which,
                                enum bshare_verdict v, struct access_denial *d)
{
    const struct orp_limits *lim = which < 7 ? &cfg->clients[client].limits : &cfg->limits;
    int kind = (which - 4) % 3;
    int64_t now = util_wall_ms();
    char who[96];

    shared_who(cfg, client, which < 7, who, sizeof who);
    if (v == BSHARE_UNAVAILABLE) {
        shared_unavailable(d, "limit_unavailable",
                           kind == 0   ? "shared rpm limit"
                           : kind == 1 ? "shared tpm limit"
                                       : "shared max_concurrent limit",
                           who, "limits");
        return;
    }
    d->status = 429;
    if (kind == 2) {
        d->code = "concurrency_limit";
        d->retry_after_s = 1;
        snprintf(d->message, sizeof d->message,
                 "%s already has %d requests in progress on all instances (max_concurrent)", who,
                 lim->max_concurrent);
        return;
    }
    /* rpm and tpm count per UTC minute across instances: the next one starts afresh. */
    d->code = kind == 0 ? "rate_limit_rpm" : "rate_limit_tpm";
    d->retry_after_s = (long)((60000 - now % 60000 + 999) / 1000);
    snprintf(d->message, sizeof d->message,
             "%s is over its limit of %lld %s per minute (all instances together)", who,
             kind == 0 ? lim->rpm : lim->tpm, kind == 0 ? "requests" : "tokens");
}

/* The denial for a shared budget bshare_reserve did not grant: which is
 * 0 client day, 1 client month, 2 all traffic day, 3 all traffic month;
 * 4 to 9 are the shared limits' (shared_limit_denial). */
static void shared_denial(const struct orp_config *cfg, int client, int which,
                          enum bshare_verdict v, struct access_denial *d)
{
    if (which >= 4) {
        shared_limit_denial(cfg, client, which, v, d);
        return;
    }
    const struct orp_limits *lim = which < 2 ? &cfg->clients[client].limits : &cfg->limits;
    int daily = which % 2 == 0;
    int64_t now = util_wall_ms(), reset = limits_period_next(now, daily ? LIMITS_DAY : LIMITS_MONTH);
    char who[96], when[32], lim_s[40];

    shared_who(cfg, client, which < 2, who, sizeof who);
    pricing_format_usd(daily ? lim->budget_day_pusd : lim->budget_month_pusd, lim_s, sizeof lim_s);
    if (v == BSHARE_UNAVAILABLE) {
        shared_unavailable(d, "budget_unavailable", daily ? "daily budget" : "monthly budget", who,
                           "budget");
        return;
    }
    fmt_reset(reset, when, sizeof when);
    d->status = 402;
    d->code = daily ? "budget_day_exceeded" : "budget_month_exceeded";
    d->retry_after_s = (long)((reset - now + 999) / 1000);
    snprintf(d->message, sizeof d->message, "%s has used its %s budget of $%s; it resets at %s",
             who, daily ? "daily" : "monthly", lim_s, when);
}

static int admit_local(const struct orp_config *cfg, int client, long long est_tokens,
                       int64_t est_pusd, struct access_grant *g, struct access_denial *d);

int access_admit(const struct orp_config *cfg, int client, long long est_tokens, int64_t est_pusd,
                 struct access_grant *g, struct access_denial *d)
{
    struct bshare_hold h = {0};
    int which = 0;
    enum bshare_verdict v;

    if (!bshare_active())
        return admit_local(cfg, client, est_tokens, est_pusd, g, d);
    /* Shared budgets first: the only step that may wait (for the lease
     * thread, when this instance's headroom is spent), so never under S.mu. */
    v = bshare_reserve(cfg, client, est_pusd, est_tokens, &h, &which);
    if (v != BSHARE_OK) {
        memset(g, 0, sizeof *g);
        shared_denial(cfg, client, which, v, d);
        return -1;
    }
    if (admit_local(cfg, client, est_tokens, est_pusd, g, d) < 0) {
        bshare_settle(&h, 0, 0);
        return -1;
    }
    g->share = h;
    return 0;
}

static int admit_local(const struct orp_config *cfg, int client, long long est_tokens,
                       int64_t est_pusd, struct access_grant *g, struct access_denial *d)
{
    const struct orp_limits *lim;
    struct state *glob, *cst = NULL;
    int64_t now = util_wall_ms();
    char who[96];
    int shared = cfg->limits_shared && bshare_active();

    memset(g, 0, sizeof *g);
    g->client = client;
    limits_of(cfg, client, &lim);
    pthread_mutex_lock(&S.mu);
    glob = state_for("");
    if (client >= 0) {
        cst = state_for(cfg->clients[client].name);
        /* A new client's state may have moved the array (realloc): find the
         * global state again, it exists now, so nothing is allocated. */
        glob = state_for("");
    }
    if (glob == NULL || (client >= 0 && cst == NULL)) {
        pthread_mutex_unlock(&S.mu);
        d->status = 500;
        d->code = "out_of_memory";
        snprintf(d->message, sizeof d->message, "orproxy is out of memory");
        return -1;
    }
    if (cst != NULL) {
        snprintf(who, sizeof who, "client '%s'", cfg->clients[client].name);
        if (admit_scope(cst, lim, who, now, est_tokens, est_pusd, shared, d) < 0) {
            pthread_mutex_unlock(&S.mu);
            return -1;
        }
    }
    if (admit_scope(glob, &cfg->limits, "this orproxy (all clients)", now, est_tokens, est_pusd,
                    shared, d) < 0) {
        if (cst != NULL) { /* undo the client's admission */
            release_scope(cst, now, est_tokens, 0, est_pusd, 0);
            limits_window_add(&cst->rpm, now, -1);
        }
        pthread_mutex_unlock(&S.mu);
        return -1;
    }
    pthread_mutex_unlock(&S.mu);
    g->admitted = 1;
    g->tokens_est = est_tokens;
    g->reserved_pusd = est_pusd;
    return 0;
}

void access_release(const struct orp_config *cfg, struct access_grant *g, long long tokens,
                    int64_t cost_pusd)
{
    int64_t now = util_wall_ms();
    struct state *st;

    if (!g->admitted)
        return;
    g->admitted = 0;
    pthread_mutex_lock(&S.mu);
    if (g->client >= 0 && (st = state_for(cfg->clients[g->client].name)) != NULL)
        release_scope(st, now, g->tokens_est, tokens, g->reserved_pusd, cost_pusd);
    if ((st = state_for("")) != NULL)
        release_scope(st, now, g->tokens_est, tokens, g->reserved_pusd, cost_pusd);
    pthread_mutex_unlock(&S.mu);
    bshare_settle(&g->share, cost_pusd, tokens);
}

void access_adjust_spend(const char *client, int64_t booked_ms, int64_t delta_pusd)
{
    int64_t now = util_wall_ms();
    struct state *st;

    if (delta_pusd == 0)
        return;
    bshare_adjust(client, booked_ms, delta_pusd);
    pthread_mutex_lock(&S.mu);
    if (client != NULL && client[0] != '\0' && (st = state_for(client)) != NULL) {
        limits_budget_adjust(&st->day, now, booked_ms, delta_pusd);
        limits_budget_adjust(&st->month, now, booked_ms, delta_pusd);
    }
    if ((st = state_for("")) != NULL) {
        limits_budget_adjust(&st->day, now, booked_ms, delta_pusd);
        limits_budget_adjust(&st->month, now, booked_ms, delta_pusd);
    }
    pthread_mutex_unlock(&S.mu);
}

void access_seed_spend(const char *client, int64_t day_pusd, int64_t month_pusd)
{
    int64_t now = util_wall_ms();
    struct state *st;
    pthread_mutex_lock(&S.mu);
    st = state_for(client ? client : "");
    if (st != NULL) {
        limits_budget_seed(&st->day, now, day_pusd);
        limits_budget_seed(&st->month, now, month_pusd);
    }
    pthread_mutex_unlock(&S.mu);
}

static void add_usd(cJSON *o, const char *name, int64_t pusd, int unset_is_null)
{
    char buf[48];
    if (unset_is_null && pusd == 0) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    pricing_format_usd(pusd, buf, sizeof buf);
    cJSON_AddNumberToObject(o, name, atof(buf));
}

/* With PostgreSQL, the shared budget rows' spend (all instances) as the
 * budgets thread last read it, when larger than this instance's own. */
static void with_shared(const char *name, int64_t now, int64_t *day, int64_t *month)
{
    int64_t d, m;

    if (bspent_get(name, now, &d, &m)) {
        *day = d > *day ? d : *day;
        *month = m > *month ? m : *month;
    }
}

char *access_key_json(const struct orp_config *cfg, int client)
{
    const struct orp_client *c = client >= 0 ? &cfg->clients[client] : NULL;
    const struct orp_limits *lim = c ? &c->limits : &cfg->limits;
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddObjectToObject(root, "data");
    int64_t now = util_wall_ms(), day = 0, month = 0, reserved = 0;
    int concurrent = 0;
    struct state *st;
    char *out;

    pthread_mutex_lock(&S.mu);
    st = state_for(c ? c->name : "");
    if (st != NULL) {
        int64_t dummy;
        /* roll periods over before reporting */
        limits_budget_reserve(&st->day, now, 0, &dummy);
        limits_budget_reserve(&st->month, now, 0, &dummy);
        day = st->day.spent_pusd;
        month = st->month.spent_pusd;
        reserved = st->month.reserved_pusd;
        concurrent = st->concurrent;
    }
    pthread_mutex_unlock(&S.mu);
    with_shared(c ? c->name : "", now, &day, &month);

    cJSON_AddStringToObject(data, "label", c ? c->name : "anonymous");
    cJSON_AddBoolToObject(data, "is_admin", c ? c->admin : strcmp(cfg->auth_mode, "none") == 0);
    add_usd(data, "limit", lim->budget_month_pusd, 1);
    if (lim->budget_month_pusd > 0)
        add_usd(data, "limit_remaining", lim->budget_month_pusd - month > 0 ? lim->budget_month_pusd - month : 0, 0);
    else
        cJSON_AddNullToObject(data, "limit_remaining");
    add_usd(data, "usage_daily", day, 0);
    add_usd(data, "usage_monthly", month, 0);
    add_usd(data, "usage", month, 0);
    add_usd(data, "budget_usd_day", lim->budget_day_pusd, 1);
    add_usd(data, "budget_usd_month", lim->budget_month_pusd, 1);
    add_usd(data, "reserved_usd", reserved, 0);
    cJSON_AddNumberToObject(data, "rpm", (double)lim->rpm);
    cJSON_AddNumberToObject(data, "tpm", (double)lim->tpm);
    cJSON_AddNumberToObject(data, "max_concurrent", lim->max_concurrent);
    cJSON_AddNumberToObject(data, "in_progress", concurrent);
    if (c != NULL && c->n_models > 0) {
        cJSON *m = cJSON_AddArrayToObject(data, "models");
        for (int i = 0; i < c->n_models; i++)
            cJSON_AddItemToArray(m, cJSON_CreateString(c->models[i]));
    }
    cJSON_AddBoolToObject(data, "own_upstream_key", c != NULL && c->upstream_key != NULL);
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* Caller holds S.mu.  The spend of st so far in the current day and month
 * (rolling the periods over first, so a new day reads 0). */
static void spent_now(struct state *st, int64_t now, int64_t *day_pusd, int64_t *month_pusd)
{
    int64_t dummy;

    limits_budget_reserve(&st->day, now, 0, &dummy);
    limits_budget_reserve(&st->month, now, 0, &dummy);
    *day_pusd = st->day.spent_pusd;
    *month_pusd = st->month.spent_pusd;
}

/* Caller holds S.mu. */
static void snapshot_scope(struct access_budget *b, const char *name, const struct orp_limits *lim,
                           int64_t now)
{
    struct state *st = state_for(name);

    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->day_limit_pusd = lim->budget_day_pusd;
    b->month_limit_pusd = lim->budget_month_pusd;
    if (st != NULL)
        spent_now(st, now, &b->day_spent_pusd, &b->month_spent_pusd);
}

struct access_budget *access_budget_snapshot(const struct orp_config *cfg, int64_t now_ms,
                                             size_t *n)
{
    struct access_budget *v = calloc((size_t)cfg->n_clients + 1, sizeof *v);

    *n = 0;
    if (v == NULL)
        return NULL;
    pthread_mutex_lock(&S.mu);
    snapshot_scope(&v[0], "", &cfg->limits, now_ms);
    for (int i = 0; i < cfg->n_clients; i++)
        snapshot_scope(&v[i + 1], cfg->clients[i].name, &cfg->clients[i].limits, now_ms);
    pthread_mutex_unlock(&S.mu);
    *n = (size_t)cfg->n_clients + 1;
    return v;
}

void access_spent(const char *client, int64_t *day_pusd, int64_t *month_pusd)
{
    struct state *st;
    int64_t now = util_wall_ms();

    *day_pusd = *month_pusd = 0;
    pthread_mutex_lock(&S.mu);
    if ((st = state_for(client ? client : "")) != NULL)
        spent_now(st, now, day_pusd, month_pusd);
    pthread_mutex_unlock(&S.mu);
    with_shared(client ? client : "", now, day_pusd, month_pusd);
}
