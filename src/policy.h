/* policy.h - the arithmetic behind client rules: model patterns, sliding
 * window rate limits, budgets with reservations, and the request body
 * edits (aliases, defaults, system prompt).
 *
 * Pure functions over caller-owned structs; no I/O, no globals.
 * policy_model_allowed and policy_apply_body are safe from any thread.  The
 * window and budget functions take no lock: a window or budget shared
 * between threads must be guarded by the caller (access.c holds one mutex
 * around every call). */
#ifndef ORP_POLICY_H
#define ORP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define POLICY_DAY 0
#define POLICY_MONTH 1

/* 1 when model matches one of the n patterns, else 0; n == 0 allows every
 * model, a NULL model none.  In a pattern '*' matches any run of characters
 * (also '/' and ':'), everything else itself, case-sensitively, and the
 * whole model must match: "*:free", "anthropic/claude-3.5-*", "*". */
int policy_model_allowed(const char *const *patterns, size_t n, const char *model);

/* A sliding 60-second window of counts (requests, tokens) kept as sixty
 * one-second buckets in a ring, so memory is fixed.  Owned by the caller,
 * usually embedded in a per-client record; nothing to free. */
struct policy_window {
    long long bucket[60]; /* bucket[s mod 60] counts second s */
    int64_t last_s;       /* the newest second the ring holds */
};

void policy_window_init(struct policy_window *w);

/* Admits amount (>= 0) if the window's sum plus amount stays within limit:
 * 1, and amount is counted.  Otherwise 0, nothing counted, and
 * *retry_after_s = the whole seconds (>= 1) until enough of the window has
 * expired for amount to fit.  limit <= 0 means unlimited: always 1, still
 * counted.  An empty window admits any amount, even one above the limit,
 * or such a request could never pass. */
int policy_window_check(struct policy_window *w, int64_t now_ms, long long limit, long long amount,
                        long long *retry_after_s);

/* Counts amount without checking: settling tokens once the real usage is
 * known, or undoing an admission (amount may be negative). */
void policy_window_add(struct policy_window *w, int64_t now_ms, long long amount);

/* The window's sum at now_ms (this moves the window: old seconds expire). */
long long policy_window_sum(struct policy_window *w, int64_t now_ms);

/* Start of the UTC day or month holding now_ms, and start of the next one
 * (milliseconds since the epoch).  Any period other than POLICY_MONTH is a
 * day. */
int64_t policy_period_start(int64_t now_ms, int period);
int64_t policy_period_next(int64_t now_ms, int period);

/* A spending cap for one UTC day or month, in picodollars, with
 * reservations for requests in flight: a request reserves its worst-case
 * cost before it goes upstream and settles with the real cost when it
 * ends, so concurrent requests cannot jointly overspend.  Owned by the
 * caller; zero-initialise, then set limit_pusd and period.  Not
 * thread-safe: the caller holds a lock around every call.
 *
 * At a period boundary spent starts again from 0, but reservations of
 * requests still in flight are carried into the new period: their cost is
 * charged when they settle, which is now in the new period, so keeping
 * their reservations keeps "spent + reserved <= limit" true across the
 * boundary (see policy.c). */
struct policy_budget {
    int64_t limit_pusd;      /* <= 0: no cap (still counted) */
    int64_t spent_pusd;      /* settled in the current period */
    int64_t reserved_pusd;   /* reserved by requests in flight */
    int64_t period_start_ms; /* start of the current period; 0 before first use */
    int period;              /* POLICY_DAY or POLICY_MONTH, UTC */
};

/* Rolls the period over if now_ms is past it, then, when limit_pusd > 0
 * and spent + reserved + estimate > limit, refuses: 0 with *resets_at_ms =
 * the start of the next period.  Otherwise reserves estimate: 1. */
int policy_budget_reserve(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t *resets_at_ms);

/* Ends a request admitted by policy_budget_reserve: releases its estimate
 * (reserved never goes below 0) and adds its actual cost to spent.  With
 * actual 0 this undoes a reservation. */
void policy_budget_settle(struct policy_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t actual_pusd);

/* Sets spent for the period holding now_ms (from the ledger at start-up). */
void policy_budget_seed(struct policy_budget *b, int64_t now_ms, int64_t spent_pusd);

/* Adds delta (either sign) to spent when booked_ms (when the request was
 * settled) lies in the current period after rolling to now_ms; otherwise
 * nothing.  spent saturates at INT64_MAX and never goes below 0. */
void policy_budget_adjust(struct policy_budget *b, int64_t now_ms, int64_t booked_ms,
                          int64_t delta_pusd);

/* What to change in a request body.  Every pointer is borrowed from the
 * caller (the configuration) for the duration of the call. */
struct policy_edits {
    const char *const *alias_from; /* n_aliases names ... */
    const char *const *alias_to;   /* ... and what each becomes; the first match wins */
    size_t n_aliases;
    const char *default_model; /* NULL: none */
    int has_temperature;
    double temperature;
    int has_top_p;
    double top_p;
    int has_max_tokens;
    long max_tokens;
    int has_frequency_penalty;
    double frequency_penalty;
    int has_presence_penalty;
    double presence_penalty;
    const char *system_prompt; /* NULL: none */
};

/* Applies e to a JSON object body of len bytes:
 *  - "model" absent and default_model set: "model" becomes default_model;
 *  - "model" (now) and each string in a "models" array equal to an
 *    alias_from become the matching alias_to (once, no chains);
 *  - each default is added only where its field is absent (a present null
 *    counts as present; max_tokens is also left out when the request has
 *    max_completion_tokens);
 *  - system_prompt: when "messages" is an array without a message whose
 *    role is "system", {"role":"system","content":...} goes first.
 * Returns a malloc'd compact JSON text (the caller frees it) with
 * *changed = 1; or NULL with *changed = 0 when nothing applies, and the
 * caller forwards the original bytes untouched; or NULL with *changed = 0
 * and a message in err when the body is not a JSON object (or memory ran
 * out).  Members the edits do not touch survive, number literals byte for
 * byte. */
char *policy_apply_body(const char *body, size_t len, const struct policy_edits *e, char *err,
                        size_t errlen, int *changed);

#endif
