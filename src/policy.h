/* policy.h - pure policy arithmetic for client rules: model patterns,
 * sliding-window rate limits, budgets with reservations, and the request
 * body edits (aliases, defaults).  No locks: access.c holds one around
 * every call on shared state. */
#ifndef ORP_POLICY_H
#define ORP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define POLICY_DAY 0
#define POLICY_MONTH 1

/* '*' matches any run of characters; everything else is literal.  n == 0
 * allows every model.  1 allowed, 0 not. */
int policy_model_allowed(const char *const *patterns, size_t n, const char *model);

/* A 60-second sliding window in one-second buckets: fixed memory. */
struct policy_window {
    long long bucket[60];
    int64_t last_s;  /* the second of the newest bucket */
};

void policy_window_init(struct policy_window *w);
/* Adds amount if the window's sum stays within limit (limit <= 0: no limit;
 * an empty window admits even an amount larger than the limit, or such a
 * request could never pass).  1 admitted, 0 refused with *retry_after_s =
 * whole seconds until enough has expired (>= 1). */
int policy_window_check(struct policy_window *w, int64_t now_ms, long long limit, long long amount,
                        long long *retry_after_s);
/* Adds amount (may be negative: corrections) without checking. */
void policy_window_add(struct policy_window *w, int64_t now_ms, long long amount);
long long policy_window_sum(struct policy_window *w, int64_t now_ms);

/* A budget for one UTC day or month, with reservations for requests in
 * progress.  Reservations made in an earlier period are forgotten when the
 * period rolls over; their settlement then only adds the actual cost. */
struct policy_budget {
    int64_t limit_pusd;      /* 0 = no budget */
    int64_t spent_pusd, reserved_pusd;
    int64_t period_start_ms;
    int period;              /* POLICY_DAY or POLICY_MONTH */
};

int64_t policy_period_start(int64_t now_ms, int period);
int64_t policy_period_next(int64_t now_ms, int period);
/* 1 reserved, 0 refused (spent + reserved + estimate > limit) with
 * *resets_at_ms = the next period's start. */
int policy_budget_reserve(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t *resets_at_ms);
void policy_budget_settle(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t actual_pusd);
void policy_budget_seed(struct policy_budget *b, int64_t now_ms, int64_t spent_pusd);

struct policy_edits {
    const char *const *alias_from, *const *alias_to;
    size_t n_aliases;
    const char *default_model, *system_prompt;
    int has_temperature, has_top_p, has_max_tokens, has_frequency_penalty, has_presence_penalty;
    double temperature, top_p, frequency_penalty, presence_penalty;
    long max_tokens;
};

/* Applies aliases and defaults to a JSON object body.  Returns a malloc'd
 * JSON text with *changed = 1, or NULL with *changed = 0 when nothing
 * applies (forward the original bytes), or NULL with err set when the body
 * is not a JSON object. */
char *policy_apply_body(const char *body, size_t len, const struct policy_edits *e, char *err,
                        size_t errlen, int *changed);

#endif
