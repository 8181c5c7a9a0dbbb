/* bshare.c - see bshare.h.
 *
 * Locking: B.mu guards every row's counters and the list; the thread never
 * holds it during a statement (it copies what to do, runs the statement,
 * then writes the answer back).  Rows live on the heap (stable addresses,
 * so a request holds pointers) and are freed once their period is over and
 * nothing refers to them or is held or unsettled.
 *
 * Why the invariant holds: a request is admitted only within this
 * instance's hold (or with budget_fail open, when the database is down), a
 * hold is only granted by lease_take's atomic check, and the local hold is
 * treated as gone a quarter of the lease timeout before the database would
 * expire it.  So what all instances spend beyond their holds is what
 * upstream charged beyond the reservations (plus, with budget_fail open,
 * what was admitted unchecked). */
#include "bshare.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bspent.h"
#include "lease.h"
#include "log.h"
#include "pgledger.h"
#include "util.h"

#define IDLE_MS 3000        /* a row unused this long gives its free headroom back */
#define REFUSED_TTL_MS 1000 /* a refused take is believed this long */
#define TICK_MS 100
#define PRUNE_AGE_MS 600000 /* rpm and tpm rows of minutes this old are deleted */

struct row {
    struct lease_id id;
    int64_t limit, ensured_limit; /* from the config; what the database row has */
    int64_t held, reserved, unsettled;
    int64_t valid_until;                  /* mono ms: the hold may be spent until then */
    int64_t asked;                        /* largest shortfall a waiting request has */
    int64_t refused_short, refused_until; /* the database refused this shortfall */
    int64_t topup_after;                  /* mono ms: no unasked top-up before (one was refused) */
    int64_t last_use, est_max;            /* mono ms of the last reservation; largest one */
    int64_t recent, rate;                 /* reserved since the last tick; pusd per second */
    int refs;                             /* requests holding the row */
    int period_over;
    struct row *next;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work, answer; /* to the thread; to waiting requests */
    pthread_t thread;
    int running, stopping, db_down, migrated;
    struct orp_config *cfg;
    struct pgconn *pg;
    char instance[128];
    struct row *rows;
    struct bshare_stats st;
} B = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .work = PTHREAD_COND_INITIALIZER,
       .answer = PTHREAD_COND_INITIALIZER};

static int64_t row_free(const struct row *r, int64_t now)
{
    int64_t held = r->valid_until > now ? r->held : 0;
    return held - r->reserved - r->unsettled;
}

/* Caller holds B.mu.  The row of scope and period at wall time wall_ms;
 * created (limit as given) when missing and create is set. */
static struct row *row_get(const char *scope, enum lease_period p, int64_t wall_ms, int64_t limit,
                           int create)
{
    struct lease_id id;
    struct row *r;

    lease_id_set(&id, scope, p, wall_ms);
    for (r = B.rows; r != NULL; r = r->next)
        if (r->id.period == p && strcmp(r->id.scope, id.scope) == 0 &&
            strcmp(r->id.period_key, id.period_key) == 0)
            break;
    if (r == NULL && create && (r = calloc(1, sizeof *r)) != NULL) {
        r->id = id;
        r->next = B.rows;
        B.rows = r;
    }
    if (r != NULL && create)
        r->limit = limit;
    return r;
}

int bshare_active(void)
{
    return B.running;
}

/* Caller holds B.mu.  Adds the rows of limits.shared for one scope (slots
 * base + 0 rpm, + 1 tpm, + 2 concurrent).  A tpm reservation is capped at
 * the limit, so a request larger than the whole limit passes in an empty
 * minute, as with the local window. */
static int limit_rows(const struct orp_limits *l, const char *scope, int base, int64_t wall,
                      int64_t tokens, struct row **v, int64_t *amt, int *slot, int n)
{
    if (l->rpm > 0) {
        slot[n] = base;
        amt[n] = 1;
        v[n++] = row_get(scope, LEASE_RPM, wall, l->rpm, 1);
    }
    if (l->tpm > 0) {
        slot[n] = base + 1;
        amt[n] = tokens < l->tpm ? tokens : l->tpm;
        v[n++] = row_get(scope, LEASE_TPM, wall, l->tpm, 1);
    }
    if (l->max_concurrent > 0) {
        slot[n] = base + 2;
        amt[n] = 1;
        v[n++] = row_get(scope, LEASE_CONCURRENT, wall, l->max_concurrent, 1);
    }
    return n;
}

/* Caller holds B.mu.  The rows a request of client reserves on, and the
 * amount on each (amt preset to est_pusd). */
static int rows_for(const struct orp_config *cfg, int client, int64_t now_wall, int64_t tokens,
                    struct row **v, int64_t *amt, int *slot)
{
    const struct orp_limits *g = &cfg->limits;
    int n = 0;

    if (cfg->limits_shared) {
        if (client >= 0)
            n = limit_rows(&cfg->clients[client].limits, cfg->clients[client].name, 4, now_wall,
                           tokens, v, amt, slot, n);
        n = limit_rows(g, "", 7, now_wall, tokens, v, amt, slot, n);
    }
    if (client >= 0) {
        const struct orp_client *c = &cfg->clients[client];
        if (c->limits.budget_day_pusd > 0) {
            slot[n] = 0;
            v[n++] = row_get(c->name, LEASE_DAY, now_wall, c->limits.budget_day_pusd, 1);
        }
        if (c->limits.budget_month_pusd > 0) {
            slot[n] = 1;
            v[n++] = row_get(c->name, LEASE_MONTH, now_wall, c->limits.budget_month_pusd, 1);
        }
    }
    if (g->budget_day_pusd > 0) {
        slot[n] = 2;
        v[n++] = row_get("", LEASE_DAY, now_wall, g->budget_day_pusd, 1);
    }
    if (g->budget_month_pusd > 0) {
        slot[n] = 3;
        v[n++] = row_get("", LEASE_MONTH, now_wall, g->budget_month_pusd, 1);
    }
    for (int i = 0; i < n; i++)
        if (v[i] == NULL)
            return -1;
    return n;
}

/* Caller holds B.mu. */
static void take_all(struct row **v, const int64_t *amt, int n, int64_t now, struct bshare_hold *h)
{
    h->n = n;
    for (int i = 0; i < n; i++) {
        v[i]->reserved += amt[i];
        v[i]->recent += amt[i];
        v[i]->refs++;
        v[i]->last_use = now;
        if (amt[i] > v[i]->est_max)
            v[i]->est_max = amt[i];
        h->row[i] = v[i];
        h->amount[i] = amt[i];
    }
    B.st.reservations += n > 0;
}

enum bshare_verdict bshare_reserve(const struct orp_config *cfg, int client, int64_t est,
                                   int64_t est_tokens, struct bshare_hold *h, int *which)
{
    struct row *v[BSHARE_ROWS];
    int64_t amt[BSHARE_ROWS];
    int slot[BSHARE_ROWS], n, open = strcmp(cfg->limits_budget_fail, "open") == 0, waited = 0;
    int64_t now = util_mono_ms(), deadline = now + BSHARE_WAIT_MS;
    enum bshare_verdict out;

    memset(h, 0, sizeof *h);
    pthread_mutex_lock(&B.mu);
    for (int i = 0; i < BSHARE_ROWS; i++)
        amt[i] = est;
    n = rows_for(cfg, client, util_wall_ms(), est_tokens, v, amt, slot);
    for (;;) {
        int bad = -1;
        struct row *r;
        now = util_mono_ms();
        for (int i = 0; i < n && bad < 0; i++)
            if (row_free(v[i], now) < amt[i])
                bad = i;
        if (n >= 0 && bad < 0) {
            take_all(v, amt, n, now, h);
            out = BSHARE_OK;
            break;
        }
        *which = n < 0 ? 2 : slot[bad];
        r = n < 0 ? NULL : v[bad];
        if (r != NULL && r->refused_until > now &&
            amt[bad] - row_free(r, now) >= r->refused_short) {
            out = BSHARE_REFUSED;
            break;
        }
        if (r == NULL || B.db_down || now >= deadline || B.stopping) {
            out = BSHARE_UNAVAILABLE;
            if (open && n >= 0) {
                take_all(v, amt, n, now, h);
                out = BSHARE_OK;
            }
            break;
        }
        for (int i = 0; i < n; i++) { /* every row short of est asks, not just the first */
            int64_t short_ = amt[i] - row_free(v[i], now);
            if (short_ > v[i]->asked)
                v[i]->asked = short_;
            v[i]->last_use = now; /* in use: not idle, whatever it holds stays */
        }
        waited = 1;
        pthread_cond_signal(&B.work);
        {
            struct timespec ts = util_wall_after_ms(deadline - now);
            pthread_cond_timedwait(&B.answer, &B.mu, &ts);
        }
    }
    B.st.waits += (unsigned long long)waited;
    pthread_mutex_unlock(&B.mu);
    return out;
}

void bshare_settle(struct bshare_hold *h, int64_t cost_pusd, int64_t tokens)
{
    if (h->n == 0)
        return;
    pthread_mutex_lock(&B.mu);
    for (int i = 0; i < h->n; i++) {
        struct row *r = h->row[i];
        /* What the request used of each: its cost, its tokens, the request
         * itself (rpm: counted once admitted), or nothing (a concurrency
         * slot is only held while it runs). */
        int64_t used = r->id.period == LEASE_RPM ? h->amount[i]
                       : r->id.period == LEASE_TPM ? tokens
                       : r->id.period == LEASE_CONCURRENT ? 0
                                                         : cost_pusd;
        r->reserved -= h->amount[i];
        r->unsettled += used > 0 ? used : 0;
        r->refs--;
    }
    pthread_mutex_unlock(&B.mu);
    h->n = 0;
}

void bshare_adjust(const char *client, int64_t booked_ms, int64_t delta_pusd)
{
    if (!B.running || delta_pusd <= 0)
        return;
    pthread_mutex_lock(&B.mu);
    for (int s = 0; s < 2; s++) {
        const char *scope = s == 0 ? client : "";
        if (scope == NULL || (s == 0 && scope[0] == '\0'))
            continue;
        for (int p = LEASE_DAY; p <= LEASE_MONTH; p++) {
            struct row *r = row_get(scope, (enum lease_period)p, booked_ms, 0, 0);
            if (r != NULL)
                r->unsettled += delta_pusd;
        }
    }
    pthread_mutex_unlock(&B.mu);
}

/* ---- the thread ---------------------------------------------------------------------- */

/* What the thread does for one row in one pass, decided under B.mu. */
struct plan {
    struct lease_id id;
    int64_t limit; /* > 0: make sure the database row has it */
    int64_t settle, take, short_, give_back;
    int renew;
};

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Caller holds B.mu. */
static void plan_row(struct row *r, int64_t now, int64_t wall, int timeout_ms, struct plan *p)
{
    struct lease_id cur;
    int64_t free_, target;
    /* A concurrency row's slots come back as requests end: what is free is
     * given back after one idle tick, and never leased ahead. */
    int live = r->id.period == LEASE_CONCURRENT, idle_ms = live ? TICK_MS : IDLE_MS;

    memset(p, 0, sizeof *p);
    p->id = r->id;
    lease_id_set(&cur, r->id.scope, r->id.period, wall);
    r->period_over = strcmp(cur.period_key, r->id.period_key) != 0;
    if (r->limit != r->ensured_limit && r->limit > 0)
        p->limit = r->limit;
    p->settle = r->unsettled;
    /* The headroom wanted: about 2 s of the recent traffic, at least the
     * largest request seen, at most an eighth of the budget, so idle
     * instances hold little of it. */
    r->rate = (r->rate + r->recent * (1000 / TICK_MS)) / 2;
    r->recent = 0;
    target = clamp64(2 * r->rate, r->est_max, r->limit / 8);
    free_ = row_free(r, now); /* the same after the settle while held covers it */
    if (!r->period_over && (r->asked > 0 || (!live && now - r->last_use < IDLE_MS &&
                                             free_ < target / 2 && now >= r->topup_after))) {
        p->short_ = r->asked;
        p->take = target - free_ > r->asked ? target - free_ : r->asked;
    }
    if ((r->period_over || now - r->last_use >= idle_ms) && free_ > 0 && r->valid_until > now &&
        p->take == 0)
        p->give_back = free_;
    p->renew = r->held > 0 && r->valid_until - now < timeout_ms / 2 && p->take == 0;
}

/* Caller holds B.mu.  What goes back is no longer spendable from now on,
 * before the statement runs: no request may reserve on it meanwhile. */
static void plan_give_back(struct row *r, struct plan *p, int final)
{
    if (final) {
        p->take = p->short_ = 0;
        p->renew = 0;
        p->give_back = r->held - r->reserved;
    }
    if (p->give_back <= 0) {
        p->give_back = 0;
        return;
    }
    r->held -= p->give_back;
}

/* Runs one statement of the plan; counts it.  A pgconn_rc or lease_take's answer. */
static int stmt_done(int rc)
{
    pthread_mutex_lock(&B.mu);
    B.st.statements++;
    B.db_down = rc == PGC_DOWN;
    pthread_mutex_unlock(&B.mu);
    return rc;
}

/* Executes p for r without B.mu; writes the answers back under it.  -1
 * when the database is down (the pass stops). */
static int run_plan(struct row *r, const struct plan *p, int timeout_ms)
{
    char err[256] = "";
    struct lease_state st;
    int rc;

    if (p->limit > 0) {
        if (stmt_done(lease_budget_ensure(B.pg, &p->id, p->limit, err, sizeof err)) == PGC_DOWN)
            return -1;
        pthread_mutex_lock(&B.mu);
        r->ensured_limit = p->limit;
        pthread_mutex_unlock(&B.mu);
    }
    if (p->settle > 0) {
        if ((rc = stmt_done(lease_settle(B.pg, B.instance, &p->id, p->settle, &st, err, sizeof err))) ==
            PGC_DOWN)
            return -1;
        pthread_mutex_lock(&B.mu);
        r->unsettled -= p->settle;
        if (rc == PGC_OK)
            r->held = st.held_pusd;
        pthread_mutex_unlock(&B.mu);
        if (rc != PGC_OK)
            log_warn("budgets: settling %s/%s: %s", p->id.scope, p->id.period_key, err);
    }
    if (p->take > 0) {
        int64_t t0 = util_mono_ms();
        rc = stmt_done(lease_take(B.pg, B.instance, &p->id, p->take, timeout_ms, &st, err, sizeof err));
        if (rc == 0 && p->short_ > 0 && p->short_ < p->take)
            rc = stmt_done(
                lease_take(B.pg, B.instance, &p->id, p->short_, timeout_ms, &st, err, sizeof err));
        if (rc == PGC_DOWN)
            return -1;
        pthread_mutex_lock(&B.mu);
        if (rc == 1) {
            r->held = st.held_pusd;
            r->valid_until = t0 + timeout_ms * 3 / 4;
        } else if (rc == 0) {
            /* Near the limit: no more unasked top-ups for a while (a request
             * that needs headroom still asks at once). */
            r->topup_after = util_mono_ms() + REFUSED_TTL_MS;
            if (p->short_ > 0) {
                r->refused_short = p->short_;
                r->refused_until = r->topup_after;
            }
        }
        if (r->asked <= p->short_)
            r->asked = 0;
        pthread_mutex_unlock(&B.mu);
        if (rc < 0)
            log_warn("budgets: leasing %s/%s: %s", p->id.scope, p->id.period_key, err);
    } else if (p->renew) {
        int64_t t0 = util_mono_ms();
        rc = stmt_done(lease_renew(B.pg, B.instance, &p->id, timeout_ms, &st, err, sizeof err));
        if (rc == PGC_DOWN)
            return -1;
        pthread_mutex_lock(&B.mu);
        r->valid_until = rc == 1 ? t0 + timeout_ms * 3 / 4 : 0;
        r->held = rc == 1 ? st.held_pusd : 0;
        pthread_mutex_unlock(&B.mu);
    }
    if (p->give_back > 0) {
        if ((rc = stmt_done(lease_return(B.pg, B.instance, &p->id, p->give_back, &st, err,
                                         sizeof err))) == PGC_DOWN)
            return -1;
        pthread_mutex_lock(&B.mu);
        if (rc == PGC_OK)
            r->held = st.held_pusd;
        pthread_mutex_unlock(&B.mu);
    }
    return 0;
}

/* Caller holds B.mu.  Frees the rows of past periods nothing refers to. */
static void retire_rows(void)
{
    struct row **pp = &B.rows;
    while (*pp != NULL) {
        struct row *r = *pp;
        if (r->period_over && r->refs == 0 && r->reserved == 0 && r->unsettled == 0 &&
            (r->held == 0 || r->valid_until == 0)) {
            *pp = r->next;
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* One pass over every row.  -1 when the database is down. */
static int pass(int timeout_ms, int final)
{
    int64_t now = util_mono_ms(), wall = util_wall_ms();
    struct row *r;

    pthread_mutex_lock(&B.mu);
    for (r = B.rows; r != NULL; r = r->next) {
        struct plan p;
        plan_row(r, now, wall, timeout_ms, &p);
        plan_give_back(r, &p, final);
        pthread_mutex_unlock(&B.mu);
        if (run_plan(r, &p, timeout_ms) < 0) {
            pthread_mutex_lock(&B.mu);
            pthread_cond_broadcast(&B.answer);
            pthread_mutex_unlock(&B.mu);
            return -1;
        }
        pthread_mutex_lock(&B.mu);
        pthread_cond_broadcast(&B.answer);
    }
    retire_rows();
    pthread_mutex_unlock(&B.mu);
    return 0;
}

/* The budgets tables exist (the migrations run once, whoever starts
 * first).  0, or -1 while the database cannot be reached. */
static int ensure_schema(void)
{
    char err[256] = "";
    int version = 0, applied = 0, rc;

    if (B.migrated)
        return 0;
    rc = stmt_done(pgledger_migrate(B.pg, B.instance, &version, &applied, err, sizeof err));
    if (rc == PGC_OK) {
        B.migrated = 1;
        return 0;
    }
    if (rc != PGC_DOWN) {
        log_error("budgets: cannot prepare the PostgreSQL schema: %s", err);
        stmt_done(PGC_DOWN); /* budgets cannot be checked: fail as configured */
    }
    return -1;
}

static void *bs_main(void *arg)
{
    int64_t next_expire = 0, next_spent = 0, backoff_until = 0;
    (void)arg;

    pthread_mutex_lock(&B.mu);
    while (!B.stopping) {
        int timeout_ms = B.cfg->limits_lease_timeout_s * 1000;
        int64_t now = util_mono_ms();
        struct timespec ts;

        if (now >= backoff_until) {
            int down;
            pthread_mutex_unlock(&B.mu);
            down = ensure_schema() < 0 || pass(timeout_ms, 0) < 0;
            if (!down && now >= next_expire) {
                char err[256];
                int64_t back = 0;
                int n = 0;
                if (stmt_done(lease_expire(B.pg, &back, &n, err, sizeof err)) == PGC_OK && n > 0)
                    log_info("budgets: %d expired leases returned %lld pusd to the pool", n,
                             (long long)back);
                if (B.cfg->limits_shared &&
                    stmt_done(lease_prune(B.pg, util_wall_ms() - PRUNE_AGE_MS, &n, err,
                                          sizeof err)) != PGC_OK)
                    log_warn("budgets: pruning past minutes' rate limit rows: %s", err);
                next_expire = now + timeout_ms / 2;
            }
            if (!down && now >= next_spent) /* for GET /v1/key and the admin API */
                next_spent = bspent_refresh(B.pg, util_wall_ms()) == 0 ? now + 1000 : now + 500;
            pthread_mutex_lock(&B.mu);
            backoff_until = down ? util_mono_ms() + 500 : 0;
            if (down) /* waiting requests learn it now, not at their deadline */
                pthread_cond_broadcast(&B.answer);
        }
        ts = util_wall_after_ms(TICK_MS);
        pthread_cond_timedwait(&B.work, &B.mu, &ts);
    }
    pthread_mutex_unlock(&B.mu);
    return NULL;
}

int bshare_start(struct orp_config *cfg, char *err, size_t errlen)
{
    char app[160];
    struct pgconn_opts o = {0};

    if (strcmp(cfg->ledger_backend, "postgresql") != 0)
        return 0;
    if (cfg->ledger_postgresql_url[0] == '\0') {
        util_set_err(err, errlen, "ledger.backend = \"postgresql\" needs ledger.postgresql_url");
        return -1;
    }
    util_instance_name(cfg->instance_name, cfg->listen_port, B.instance, sizeof B.instance);
    snprintf(app, sizeof app, "orproxy budgets %s", B.instance);
    o.url = cfg->ledger_postgresql_url;
    o.password_file = cfg->ledger_postgresql_password_file;
    o.app_name = app;
    o.timeout_ms = 2000;
    if ((B.pg = pgconn_new(&o, err, errlen)) == NULL)
        return -1;
    B.cfg = config_hold(cfg);
    B.stopping = 0;
    if (pthread_create(&B.thread, NULL, bs_main, NULL) != 0) {
        pgconn_free(B.pg);
        config_release(B.cfg);
        util_set_err(err, errlen, "cannot start the budgets thread");
        return -1;
    }
    B.running = 1;
    log_info("budgets: shared through PostgreSQL as instance %s", B.instance);
    return 0;
}

void bshare_set_config(struct orp_config *cfg)
{
    struct orp_config *old;
    if (!B.running)
        return;
    pthread_mutex_lock(&B.mu);
    old = B.cfg;
    B.cfg = config_hold(cfg);
    pthread_mutex_unlock(&B.mu);
    config_release(old);
}

void bshare_stop(void)
{
    struct row *r;

    if (!B.running)
        return;
    pthread_mutex_lock(&B.mu);
    B.stopping = 1;
    pthread_cond_broadcast(&B.work);
    pthread_cond_broadcast(&B.answer);
    pthread_mutex_unlock(&B.mu);
    pthread_join(B.thread, NULL);
    if (pass(B.cfg->limits_lease_timeout_s * 1000, 1) < 0)
        log_warn("budgets: the database is unreachable at shutdown; this instance's leases "
                 "return to the pool after limits.lease_timeout_s, unsettled spend is lost");
    log_info("budgets: %llu shared reservations, %llu database statements, %llu waits",
             B.st.reservations, B.st.statements, B.st.waits);
    while ((r = B.rows) != NULL) {
        B.rows = r->next;
        free(r);
    }
    pgconn_free(B.pg);
    bspent_clear();
    B.pg = NULL;
    config_release(B.cfg);
    B.cfg = NULL;
    B.running = 0;
}

void bshare_get_stats(struct bshare_stats *out)
{
    pthread_mutex_lock(&B.mu);
    *out = B.st;
    pthread_mutex_unlock(&B.mu);
}
