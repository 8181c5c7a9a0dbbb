/* policy.c - client rules as arithmetic.  See policy.h.
 *
 * Model patterns are globs with '*' only, matched by the classic greedy
 * loop with one backtrack point (the last '*'): no recursion, and linear
 * for practical patterns.  Rate windows are sixty one-second buckets:
 * moving the window clears the seconds that went by, the sum is the
 * window's count, and a refusal walks the buckets oldest first to find
 * when enough will have expired.  Budgets keep "spent + reserved <= limit"
 * at every admission: each request reserves its estimate, and settling
 * swaps the estimate for the actual cost, so when actual <= estimate the
 * cap is never exceeded however requests interleave, and when requests
 * cost more than they reserved the overshoot is at most the excess of the
 * requests in flight at the last admission (one request's, when they run
 * one at a time).  At a UTC period boundary spent restarts from 0 but
 * reserved is carried over: settle is not told in which period a
 * reservation was made, so a request that straddles the boundary can only
 * be charged when it settles, in the new period, and its reservation must
 * count there too or the new period could be overspent by it.  (The ledger
 * books a request by its start, so after a restart such a request counts
 * in the old period instead; the live figure errs on the safe side.)
 * Calendar arithmetic uses day numbers (H. Hinnant's days-from-civil), not
 * gmtime and timegm: pure, no time_t range limit, leap years included.
 * Body edits parse with cJSON and print compactly; cJSON keeps numbers as
 * doubles, which would turn a 19-digit "seed" into 1.2345678901234568e+18,
 * so before printing every number is replaced by its literal text from the
 * original body (the body's number tokens and the tree's number nodes come
 * in the same document order, and the edits add numbers only as raw
 * text). */
#include "policy.h"
#include "pricing.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_DAY 86400000LL
#define WINDOW_S 60

/* --- model patterns --------------------------------------------------- */

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

int policy_model_allowed(const char *const *patterns, size_t n, const char *model)
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

/* --- rate windows ----------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static size_t slot(int64_t s)
{
    return (size_t)(s - floor_div(s, WINDOW_S) * WINDOW_S);
}

void policy_window_init(struct policy_window *w)
{
    memset(w, 0, sizeof *w);
}

/* Moves the window to now, clearing the seconds that went by.  A clock
 * that steps back a little books into the newest second (counts then
 * expire a little late, never early); one that steps back by a whole
 * window or more starts it afresh rather than holding counts that long. */
static void window_advance(struct policy_window *w, int64_t now_ms)
{
    int64_t s = floor_div(now_ms, 1000);

    if (s <= w->last_s && s > w->last_s - WINDOW_S)
        return;
    if (s <= w->last_s || s - w->last_s >= WINDOW_S) {
        memset(w->bucket, 0, sizeof w->bucket);
    } else {
        for (int64_t t = w->last_s + 1; t <= s; t++)
            w->bucket[slot(t)] = 0;
    }
    w->last_s = s;
}

long long policy_window_sum(struct policy_window *w, int64_t now_ms)
{
    long long sum = 0;

    window_advance(w, now_ms);
    for (int i = 0; i < WINDOW_S; i++)
        sum += w->bucket[i];
    return sum;
}

void policy_window_add(struct policy_window *w, int64_t now_ms, long long amount)
{
    window_advance(w, now_ms);
    w->bucket[slot(w->last_s)] += amount;
}

int policy_window_check(struct policy_window *w, int64_t now_ms, long long limit, long long amount,
                        long long *retry_after_s)
{
    long long sum = policy_window_sum(w, now_ms), left = sum;

    /* sum <= 0 is an empty window (corrections may leave it negative) */
    if (limit <= 0 || sum <= 0 || amount <= limit - sum) {
        policy_window_add(w, now_ms, amount);
        return 1;
    }
    /* Second last_s + k drops the bucket of second last_s + k - 60, the
     * oldest first; stop when what is left admits amount (or is empty). */
    for (int64_t k = 1; k <= WINDOW_S; k++) {
        left -= w->bucket[slot(w->last_s + k)];
        if (left <= 0 || amount <= limit - left) {
            int64_t wait_ms = (w->last_s + k) * 1000 - now_ms;
            *retry_after_s = wait_ms <= 1000 ? 1 : (wait_ms + 999) / 1000;
            return 0;
        }
    }
    *retry_after_s = WINDOW_S; /* not reached: after 60 s the window is empty */
    return 0;
}

/* --- UTC periods ------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year and month (1-12) of a day number. */
static void civil_from_days(int64_t z, int64_t *y, int *m)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int64_t policy_period_start(int64_t now_ms, int period)
{
    int64_t day = floor_div(now_ms, MS_PER_DAY), y;
    int m;

    if (period != POLICY_MONTH)
        return day * MS_PER_DAY;
    civil_from_days(day, &y, &m);
    return days_from_civil(y, m, 1) * MS_PER_DAY;
}

int64_t policy_period_next(int64_t now_ms, int period)
{
    int64_t day = floor_div(now_ms, MS_PER_DAY), y;
    int m;

    if (period != POLICY_MONTH)
        return (day + 1) * MS_PER_DAY;
    civil_from_days(day, &y, &m);
    return (m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1)) * MS_PER_DAY;
}

/* --- budgets ---------------------------------------------------------- */

/* Starts a new period when now is past the current one; reserved carries
 * over (see the top of the file).  A clock stepped back by less than a
 * day keeps the current period, so an NTP correction around midnight
 * cannot wipe the spend; a clock set back further is not trusted to
 * return soon, and the period follows it. */
static void budget_roll(struct policy_budget *b, int64_t now_ms)
{
    int64_t start = policy_period_start(now_ms, b->period);

    if (start > b->period_start_ms || now_ms < b->period_start_ms - MS_PER_DAY) {
        b->period_start_ms = start;
        b->spent_pusd = 0;
    }
}

int policy_budget_reserve(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t *resets_at_ms)
{
    budget_roll(b, now_ms);
    /* Saturating sums: a spend at the int64 limit must still refuse. */
    if (b->limit_pusd > 0 &&
        pricing_add_pusd(pricing_add_pusd(b->spent_pusd, b->reserved_pusd), estimate_pusd) >
            b->limit_pusd) {
        *resets_at_ms = policy_period_next(now_ms, b->period);
        return 0;
    }
    b->reserved_pusd = pricing_add_pusd(b->reserved_pusd, estimate_pusd);
    return 1;
}

void policy_budget_settle(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t actual_pusd)
{
    budget_roll(b, now_ms);
    b->reserved_pusd = pricing_add_pusd(b->reserved_pusd, -estimate_pusd);
    if (b->reserved_pusd < 0)
        b->reserved_pusd = 0;
    b->spent_pusd = pricing_add_pusd(b->spent_pusd, actual_pusd);
}

void policy_budget_seed(struct policy_budget *b, int64_t now_ms, int64_t spent_pusd)
{
    budget_roll(b, now_ms);
    b->spent_pusd = spent_pusd;
}

/* A cost learnt after settling (reconciliation) moves spent in the period
 * the request was settled in, and only while that period is current: a
 * finished period's spend no longer gates anything.  Checked: spent stays
 * within 0 .. INT64_MAX whatever delta upstream's figure produced. */
void policy_budget_adjust(struct policy_budget *b, int64_t now_ms, int64_t booked_ms,
                          int64_t delta_pusd)
{
    int64_t sum;

    budget_roll(b, now_ms);
    if (policy_period_start(booked_ms, b->period) != b->period_start_ms)
        return;
    if (__builtin_add_overflow(b->spent_pusd, delta_pusd, &sum))
        sum = delta_pusd > 0 ? INT64_MAX : 0;
    b->spent_pusd = sum < 0 ? 0 : sum;
}

/* --- request body edits ----------------------------------------------- */

/* The next number token of a JSON text cJSON has accepted: outside
 * strings a '-' or a digit can only start a number, and the number runs
 * over the characters cJSON's parse_number takes. */
static int next_number(const char **pp, const char *end, const char **lit, size_t *n)
{
    const char *p = *pp;

    while (p < end) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            p++;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            *lit = p;
            while (p < end && *p != '\0' && strchr("0123456789+-.eE", *p) != NULL)
                p++;
            *n = (size_t)(p - *lit);
            *pp = p;
            return 0;
        } else {
            p++;
        }
    }
    return -1;
}

/* Replaces every number under node, in document order, by a raw node with
 * its literal text.  0, or -1 (out of memory, or the texts disagree). */
static int keep_number_literals(cJSON *node, const char **pp, const char *end)
{
    cJSON *c, *next;

    for (c = node->child; c != NULL; c = next) {
        next = c->next;
        if (cJSON_IsNumber(c)) {
            const char *lit;
            size_t n;
            char *text;
            cJSON *raw;
            if (next_number(pp, end, &lit, &n) < 0 || (text = malloc(n + 1)) == NULL)
                return -1;
            memcpy(text, lit, n);
            text[n] = '\0';
            raw = cJSON_CreateRaw(text);
            free(text);
            if (raw == NULL)
                return -1;
            raw->string = c->string; /* the member name moves to the raw node */
            c->string = NULL;
            cJSON_ReplaceItemViaPointer(node, c, raw);
        } else if (c->child != NULL && keep_number_literals(c, pp, end) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The shortest %g text that reads back as v. */
static void format_double(double v, char *out, size_t cap)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* An edit in progress: the changes made so far, and whether one could not
 * be made (out of memory). */
struct edit_run {
    int n, failed;
};

static void count(struct edit_run *run, int ok)
{
    if (ok)
        run->n++;
    else
        run->failed = 1;
}

/* Adds name = text (a JSON number) unless the member is present. */
static void add_default(struct edit_run *run, cJSON *root, const char *name, const char *text)
{
    if (cJSON_GetObjectItemCaseSensitive(root, name) == NULL)
        count(run, cJSON_AddRawToObject(root, name, text) != NULL);
}

static void add_default_double(struct edit_run *run, cJSON *root, const char *name, int has,
                               double v)
{
    char text[40];

    if (!has || !isfinite(v))
        return;
    format_double(v, text, sizeof text);
    add_default(run, root, name, text);
}

/* Renames item when it is a string naming an alias. */
static void apply_alias(struct edit_run *run, const struct policy_edits *e, cJSON *item)
{
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return;
    for (size_t i = 0; i < e->n_aliases; i++) {
        if (e->alias_from[i] != NULL && e->alias_to[i] != NULL &&
            strcmp(item->valuestring, e->alias_from[i]) == 0) {
            count(run, cJSON_SetValuestring(item, e->alias_to[i]) != NULL);
            return;
        }
    }
}

static int has_system_message(const cJSON *messages)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "system") == 0)
            return 1;
    }
    return 0;
}

/* Puts {"role":"system","content":prompt} first. */
static void insert_system(struct edit_run *run, cJSON *messages, const char *prompt)
{
    cJSON *sys = cJSON_CreateObject();

    if (sys == NULL || cJSON_AddStringToObject(sys, "role", "system") == NULL ||
        cJSON_AddStringToObject(sys, "content", prompt) == NULL ||
        !cJSON_InsertItemInArray(messages, 0, sys)) {
        cJSON_Delete(sys);
        count(run, 0);
        return;
    }
    count(run, 1);
}

/* Applies every edit to root: the number of changes made, or -1. */
static int edit(cJSON *root, const struct policy_edits *e)
{
    struct edit_run run = {0, 0};
    cJSON *model, *models, *m, *messages;

    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model == NULL && e->default_model != NULL) {
        model = cJSON_AddStringToObject(root, "model", e->default_model);
        count(&run, model != NULL);
    }
    apply_alias(&run, e, model);
    models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (cJSON_IsArray(models))
        cJSON_ArrayForEach(m, models)
            apply_alias(&run, e, m);
    add_default_double(&run, root, "temperature", e->has_temperature, e->temperature);
    add_default_double(&run, root, "top_p", e->has_top_p, e->top_p);
    /* max_completion_tokens is the newer name of the same limit */
    if (e->has_max_tokens &&
        cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens") == NULL) {
        char text[24];
        snprintf(text, sizeof text, "%ld", e->max_tokens);
        add_default(&run, root, "max_tokens", text);
    }
    add_default_double(&run, root, "frequency_penalty", e->has_frequency_penalty,
                       e->frequency_penalty);
    add_default_double(&run, root, "presence_penalty", e->has_presence_penalty,
                       e->presence_penalty);
    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (e->system_prompt != NULL && cJSON_IsArray(messages) && !has_system_message(messages))
        insert_system(&run, messages, e->system_prompt);
    return run.failed ? -1 : run.n;
}

static int only_whitespace(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

char *policy_apply_body(const char *body, size_t len, const struct policy_edits *e, char *err,
                        size_t errlen, int *changed)
{
    const char *parse_end = NULL, *numbers = body;
    cJSON *root = NULL;
    char *out = NULL;
    int n;

    *changed = 0;
    if (body != NULL)
        root = cJSON_ParseWithLengthOpts(body, len, &parse_end, 0);
    if (!cJSON_IsObject(root) || !only_whitespace(parse_end, body + len)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "request body must be a JSON object");
        goto done;
    }
    if ((n = edit(root, e)) < 0 || (n > 0 && keep_number_literals(root, &numbers, body + len) < 0))
        goto fail;
    if (n == 0)
        goto done;
    if ((out = cJSON_PrintUnformatted(root)) == NULL)
        goto fail;
    *changed = 1;
    goto done;
fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "could not edit the request body (out of memory)");
done:
    cJSON_Delete(root);
    return out;
}
