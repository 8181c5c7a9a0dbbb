/* limits.h - the arithmetic behind client limits: sliding-window rate
 * limits, UTC days and months, and budgets with reservations.
 *
 * Pure functions over caller-owned structs; no I/O, no globals, no lock: a
 * window or budget shared between threads must be guarded by the caller
 * (access.c holds one mutex around every call). */
#ifndef ORP_LIMITS_H
#define ORP_LIMITS_H

#include <stdint.h>

#define LIMITS_DAY 0
#define LIMITS_MONTH 1

/* A sliding 60-second window of counts (requests, tokens) kept as sixty
 * one-second buckets in a ring, so memory is fixed.  Owned by the caller,
 * usually embedded in a per-client record; nothing to free. */
struct limits_window {
    long long bucket[60]; /* bucket[s mod 60] counts second s */
    int64_t last_s;       /* the newest second the ring holds */
};

void limits_window_init(struct limits_window *w);

/* Admits amount (>= 0) if the window's sum plus amount stays within limit:
 * 1, and amount is counted.  Otherwise 0, nothing counted, and
 * *retry_after_s = the whole seconds (>= 1) until enough of the window has
 * expired for amount to fit.  limit <= 0 means unlimited: always 1, still
 * counted.  An empty window admits any amount, even one above the limit,
 * or such a request could never pass. */
int limits_window_check(struct limits_window *w, int64_t now_ms, long long limit, long long amount,
                        long long *retry_after_s);

/* Counts amount without checking: settling tokens once the real usage is
 * known, or undoing an admission (amount may be negative). */
void limits_window_add(struct limits_window *w, int64_t now_ms, long long amount);

/* The window's sum at now_ms (this moves the window: old seconds expire). */
long long limits_window_sum(struct limits_window *w, int64_t now_ms);

/* Start of the UTC day or month holding now_ms, and start of the next one
 * (milliseconds since the epoch).  Any period other than LIMITS_MONTH is a
 * day. */
int64_t limits_period_start(int64_t now_ms, int period);
int64_t limits_period_next(int64_t now_ms, int period);

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
 * boundary (see limits.c). */
struct limits_budget {
    int64_t limit_pusd;      /* <= 0: no cap (still counted) */
    int64_t spent_pusd;      /* settled in the current period */
    int64_t reserved_pusd;   /* reserved by requests in flight */
    int64_t period_start_ms; /* start of the current period; 0 before first use */
    int period;              /* LIMITS_DAY or LIMITS_MONTH, UTC */
};

/* Rolls the period over if now_ms is past it, then, when limit_pusd > 0
 * and spent + reserved + estimate > limit, refuses: 0 with *resets_at_ms =
 * the start of the next period.  Otherwise reserves estimate: 1. */
int limits_budget_reserve(struct limits_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t *resets_at_ms);

/* Ends a request admitted by limits_budget_reserve: releases its estimate
 * (reserved never goes below 0) and adds its actual cost to spent.  With
 * actual 0 this undoes a reservation. */
void limits_budget_settle(struct limits_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t actual_pusd);

/* Sets spent for the period holding now_ms (from the ledger at start-up). */
void limits_budget_seed(struct limits_budget *b, int64_t now_ms, int64_t spent_pusd);

/* Adds delta (either sign) to spent when booked_ms (when the request was
 * settled) lies in the current period after rolling to now_ms; otherwise
 * nothing.  spent saturates at INT64_MAX and never goes below 0. */
void limits_budget_adjust(struct limits_budget *b, int64_t now_ms, int64_t booked_ms,
                          int64_t delta_pusd);

#endif
