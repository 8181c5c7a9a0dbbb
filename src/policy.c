/* policy.c - see policy.h. */
#include "policy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Glob with '*' only; iterative with one backtrack point, linear-ish. */
static int glob(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star != NULL) {
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
        if (glob(patterns[i], model))
            return 1;
    return 0;
}

void policy_window_init(struct policy_window *w)
{
    memset(w, 0, sizeof *w);
}

/* Moves the window to now, clearing the seconds that went by. */
static void advance(struct policy_window *w, int64_t now_ms)
{
    int64_t s = now_ms / 1000;
    if (s <= w->last_s)
        return;
    if (s - w->last_s >= 60) {
        memset(w->bucket, 0, sizeof w->bucket);
    } else {
        for (int64_t t = w->last_s + 1; t <= s; t++)
            w->bucket[t % 60] = 0;
    }
    w->last_s = s;
}

long long policy_window_sum(struct policy_window *w, int64_t now_ms)
{
    long long sum = 0;
    advance(w, now_ms);
    for (int i = 0; i < 60; i++)
        sum += w->bucket[i];
    return sum;
}

void policy_window_add(struct policy_window *w, int64_t now_ms, long long amount)
{
    advance(w, now_ms);
    w->bucket[w->last_s % 60] += amount;
}

int policy_window_check(struct policy_window *w, int64_t now_ms, long long limit, long long amount,
                        long long *retry_after_s)
{
    long long sum = policy_window_sum(w, now_ms), freed = 0;

    if (limit <= 0 || sum + amount <= limit || sum <= 0) {
        policy_window_add(w, now_ms, amount);
        return 1;
    }
    /* The oldest bucket expires first: count seconds until enough is gone. */
    for (int k = 1; k <= 60; k++) {
        freed += w->bucket[(w->last_s + k) % 60];
        if (sum - freed + amount <= limit || sum - freed <= 0) {
            *retry_after_s = k;
            return 0;
        }
    }
    *retry_after_s = 60;
    return 0;
}

int64_t policy_period_start(int64_t now_ms, int period)
{
    time_t s = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (period == POLICY_MONTH)
        tm.tm_mday = 1;
    return (int64_t)timegm(&tm) * 1000;
}

int64_t policy_period_next(int64_t now_ms, int period)
{
    time_t s = (time_t)(policy_period_start(now_ms, period) / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    if (period == POLICY_MONTH)
        tm.tm_mon++; /* timegm normalises December + 1 */
    else
        tm.tm_mday++;
    return (int64_t)timegm(&tm) * 1000;
}

static void roll(struct policy_budget *b, int64_t now_ms)
{
    int64_t start = policy_period_start(now_ms, b->period);
    if (start != b->period_start_ms) {
        b->period_start_ms = start;
        b->spent_pusd = 0;
        b->reserved_pusd = 0;
    }
}

int policy_budget_reserve(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t *resets_at_ms)
{
    roll(b, now_ms);
    if (b->limit_pusd > 0 && b->spent_pusd + b->reserved_pusd + estimate_pusd > b->limit_pusd) {
        *resets_at_ms = policy_period_next(now_ms, b->period);
        return 0;
    }
    b->reserved_pusd += estimate_pusd;
    return 1;
}

void policy_budget_settle(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t actual_pusd)
{
    roll(b, now_ms);
    b->reserved_pusd -= estimate_pusd;
    if (b->reserved_pusd < 0)
        b->reserved_pusd = 0;
    b->spent_pusd += actual_pusd;
}

void policy_budget_seed(struct policy_budget *b, int64_t now_ms, int64_t spent_pusd)
{
    roll(b, now_ms);
    b->spent_pusd = spent_pusd;
}

static int set_default_num(cJSON *root, const char *name, int has, double v)
{
    if (!has || cJSON_GetObjectItemCaseSensitive(root, name) != NULL)
        return 0;
    cJSON_AddNumberToObject(root, name, v);
    return 1;
}

static int alias(const struct policy_edits *e, cJSON *item)
{
    if (!cJSON_IsString(item))
        return 0;
    for (size_t i = 0; i < e->n_aliases; i++) {
        if (strcmp(item->valuestring, e->alias_from[i]) == 0) {
            cJSON_SetValuestring(item, e->alias_to[i]);
            return 1;
        }
    }
    return 0;
}

char *policy_apply_body(const char *body, size_t len, const struct policy_edits *e, char *err,
                        size_t errlen, int *changed)
{
    cJSON *root = cJSON_ParseWithLength(body, len), *model, *models, *msgs, *m;
    char *out = NULL;
    int n = 0;

    *changed = 0;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "request body must be a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model == NULL && e->default_model != NULL) {
        cJSON_AddStringToObject(root, "model", e->default_model);
        model = cJSON_GetObjectItemCaseSensitive(root, "model");
        n++;
    }
    n += alias(e, model);
    models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (cJSON_IsArray(models))
        cJSON_ArrayForEach(m, models) n += alias(e, m);
    n += set_default_num(root, "temperature", e->has_temperature, e->temperature);
    n += set_default_num(root, "top_p", e->has_top_p, e->top_p);
    n += set_default_num(root, "max_tokens", e->has_max_tokens, (double)e->max_tokens);
    n += set_default_num(root, "frequency_penalty", e->has_frequency_penalty, e->frequency_penalty);
    n += set_default_num(root, "presence_penalty", e->has_presence_penalty, e->presence_penalty);
    msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (e->system_prompt != NULL && cJSON_IsArray(msgs)) {
        int has_system = 0;
        cJSON_ArrayForEach(m, msgs)
        {
            cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            if (cJSON_IsString(role) && strcmp(role->valuestring, "system") == 0)
                has_system = 1;
        }
        if (!has_system) {
            cJSON *sys = cJSON_CreateObject();
            cJSON_AddStringToObject(sys, "role", "system");
            cJSON_AddStringToObject(sys, "content", e->system_prompt);
            cJSON_InsertItemInArray(msgs, 0, sys);
            n++;
        }
    }
    if (n > 0) {
        out = cJSON_PrintUnformatted(root);
        *changed = out != NULL;
    }
    cJSON_Delete(root);
    return out;
}
