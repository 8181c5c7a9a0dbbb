/* limits.c - rate windows, UTC periods and budgets as arithmetic.  See
 * limits.h.
 *
 * Rate windows are sixty one-second buckets:
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
 * gmtime and timegm: pure, no time_t range limit, leap years included. */
#include "limits.h"
#include "pricing.h"

#include <string.h>

#define MS_PER_DAY 86400000LL
#define WINDOW_S 60

/* --- rate windows ----------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static size_t slot(int64_t s)
{
    return (size_t)(s - floor_div(s, WINDOW_S) * WINDOW_S);
}

void limits_window_init(struct limits_window *w)
{
    memset(w, 0, sizeof *w);
}

/* Moves the window to now, clearing the seconds that went by.  A clock
 * that steps back a little books into the newest second (counts then
 * expire a little late, never early); one that steps back by a whole
 * window or more starts it afresh rather than holding counts that long. */
static void window_advance(struct limits_window *w, int64_t now_ms)
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

long long limits_window_sum(struct limits_window *w, int64_t now_ms)
{
    long long sum = 0;

    window_advance(w, now_ms);
    for (int i = 0; i < WINDOW_S; i++)
        sum += w->bucket[i];
    return sum;
}

void limits_window_add(struct limits_window *w, int64_t now_ms, long long amount)
{
    window_advance(w, now_ms);
    w->bucket[slot(w->last_s)] += amount;
}

int limits_window_check(struct limits_window *w, int64_t now_ms, long long limit, long long amount,
                        long long *retry_after_s)
{
    long long sum = limits_window_sum(w, now_ms), left = sum;

    /* sum <= 0 is an empty window (corrections may leave it negative) */
    if (limit <= 0 || sum <= 0 || amount <= limit - sum) {
        limits_window_add(w, now_ms, amount);
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

int64_t limits_period_start(int64_t now_ms, int period)
{
    int64_t day = floor_div(now_ms, MS_PER_DAY), y;
    int m;

    if (period != LIMITS_MONTH)
        return day * MS_PER_DAY;
    civil_from_days(day, &y, &m);
    return days_from_civil(y, m, 1) * MS_PER_DAY;
}

int64_t limits_period_next(int64_t now_ms, int period)
{
    int64_t day = floor_div(now_ms, MS_PER_DAY), y;
    int m;

    if (period != LIMITS_MONTH)
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
static void budget_roll(struct limits_budget *b, int64_t now_ms)
{
    int64_t start = limits_period_start(now_ms, b->period);

    if (start > b->period_start_ms || now_ms < b->period_start_ms - MS_PER_DAY) {
        b->period_start_ms = start;
        b->spent_pusd = 0;
    }
}

int limits_budget_reserve(struct limits_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t *resets_at_ms)
{
    budget_roll(b, now_ms);
    /* Saturating sums: a spend at the int64 limit must still refuse. */
    if (b->limit_pusd > 0 &&
        pricing_add_pusd(pricing_add_pusd(b->spent_pusd, b->reserved_pusd), estimate_pusd) >
            b->limit_pusd) {
        *resets_at_ms = limits_period_next(now_ms, b->period);
        return 0;
    }
    b->reserved_pusd = pricing_add_pusd(b->reserved_pusd, estimate_pusd);
    return 1;
}

void limits_budget_settle(struct limits_budget *b, int64_t now_ms, int64_t estimate_pusd,
                          int64_t actual_pusd)
{
    budget_roll(b, now_ms);
    b->reserved_pusd = pricing_add_pusd(b->reserved_pusd, -estimate_pusd);
    if (b->reserved_pusd < 0)
        b->reserved_pusd = 0;
    b->spent_pusd = pricing_add_pusd(b->spent_pusd, actual_pusd);
}

void limits_budget_seed(struct limits_budget *b, int64_t now_ms, int64_t spent_pusd)
{
    budget_roll(b, now_ms);
    b->spent_pusd = spent_pusd;
}

/* A cost learnt after settling (reconciliation) moves spent in the period
 * the request was settled in, and only while that period is current: a
 * finished period's spend no longer gates anything.  Checked: spent stays
 * within 0 .. INT64_MAX whatever delta upstream's figure produced. */
void limits_budget_adjust(struct limits_budget *b, int64_t now_ms, int64_t booked_ms,
                          int64_t delta_pusd)
{
    int64_t sum;

    budget_roll(b, now_ms);
    if (limits_period_start(booked_ms, b->period) != b->period_start_ms)
        return;
    if (__builtin_add_overflow(b->spent_pusd, delta_pusd, &sum))
        sum = delta_pusd > 0 ? INT64_MAX : 0;
    b->spent_pusd = sum < 0 ? 0 : sum;
}
