/* Unit tests for policy.c: model patterns, the rate window, UTC periods,
 * budgets with reservations (including a 50-thread property test), and the
 * request body edits. */
#include <check.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "policy.h"

#define T0 1764000000000LL /* 2025-11-24T16:00:00Z, on a whole second */
#define DAY_MS 86400000LL

/* --- model patterns --------------------------------------------------- */

static int allowed(const char *pattern, const char *model)
{
    const char *p[1] = {pattern};
    return policy_model_allowed(p, 1, model);
}

START_TEST(test_policy_model_no_patterns_allows_everything)
{
    ck_assert_int_eq(policy_model_allowed(NULL, 0, "any/thing"), 1);
    ck_assert_int_eq(policy_model_allowed(NULL, 0, NULL), 1);
}
END_TEST

START_TEST(test_policy_model_provider_prefix_pattern)
{
    ck_assert_int_eq(allowed("openai/*", "openai/gpt-4o"), 1);
    ck_assert_int_eq(allowed("openai/*", "openai/"), 1);
    ck_assert_int_eq(allowed("openai/*", "xopenai/gpt-4o"), 0);
    ck_assert_int_eq(allowed("openai/*", "openai"), 0);
}
END_TEST

START_TEST(test_policy_model_suffix_pattern)
{
    ck_assert_int_eq(allowed("*:free", "meta-llama/llama-3-8b:free"), 1);
    ck_assert_int_eq(allowed("*:free", "meta-llama/llama-3-8b:freeish"), 0);
    ck_assert_int_eq(allowed("*:free", "meta-llama/llama-3-8b"), 0);
}
END_TEST

START_TEST(test_policy_model_star_in_the_middle_and_several_stars)
{
    ck_assert_int_eq(allowed("anthropic/claude-3.5-*", "anthropic/claude-3.5-sonnet"), 1);
    ck_assert_int_eq(allowed("anthropic/claude-3.5-*", "anthropic/claude-3-opus"), 0);
    ck_assert_int_eq(allowed("a*b*c", "aXbYbZc"), 1); /* needs a backtrack */
    ck_assert_int_eq(allowed("a*b*c", "aXbYbZ"), 0);
    ck_assert_int_eq(allowed("a**c", "ac"), 1);
}
END_TEST

START_TEST(test_policy_model_star_matches_slash_colon_and_nothing)
{
    ck_assert_int_eq(allowed("*", "a/b:c"), 1);
    ck_assert_int_eq(allowed("*", ""), 1);
    ck_assert_int_eq(allowed("x*y", "x/:y"), 1);
    ck_assert_int_eq(allowed("x*y", "xy"), 1);
}
END_TEST

START_TEST(test_policy_model_literal_whole_and_case_sensitive)
{
    ck_assert_int_eq(allowed("openai/gpt-4o", "openai/gpt-4o"), 1);
    ck_assert_int_eq(allowed("openai/gpt-4o", "openai/gpt-4o-mini"), 0);
    ck_assert_int_eq(allowed("openai/gpt-4o", "OpenAI/gpt-4o"), 0);
    ck_assert_int_eq(allowed("openai/?pt-4o", "openai/gpt-4o"), 0); /* '?' is literal */
}
END_TEST

START_TEST(test_policy_model_any_pattern_of_several)
{
    const char *p[] = {"openai/*", "*:free"};
    ck_assert_int_eq(policy_model_allowed(p, 2, "x/y:free"), 1);
    ck_assert_int_eq(policy_model_allowed(p, 2, "openai/o1"), 1);
    ck_assert_int_eq(policy_model_allowed(p, 2, "x/y"), 0);
}
END_TEST

START_TEST(test_policy_model_missing_model_refused_when_patterns_set)
{
    ck_assert_int_eq(allowed("*", NULL), 0);
}
END_TEST

/* --- rate windows ----------------------------------------------------- */

START_TEST(test_policy_window_admits_up_to_the_limit_then_refuses)
{
    struct policy_window w;
    long long ra = 0;
    policy_window_init(&w);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(policy_window_check(&w, T0 + i * 1000, 3, 1, &ra), 1);
    ck_assert_int_eq(policy_window_check(&w, T0 + 3000, 3, 1, &ra), 0);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 3000), 3);
}
END_TEST

START_TEST(test_policy_window_retry_after_is_time_until_the_oldest_expires)
{
    struct policy_window w;
    long long ra = 0;
    policy_window_init(&w);
    for (int i = 0; i < 3; i++)
        policy_window_check(&w, T0 + i * 1000, 3, 1, &ra);
    ck_assert_int_eq(policy_window_check(&w, T0 + 10000, 3, 1, &ra), 0);
    ck_assert_int_eq(ra, 50); /* the one at T0 leaves at T0 + 60 s */
    ck_assert_int_eq(policy_window_check(&w, T0 + 10400, 3, 1, &ra), 0);
    ck_assert_int_eq(ra, 50); /* 49.6 s rounds up */
    ck_assert_int_eq(policy_window_check(&w, T0 + 59999, 3, 1, &ra), 0);
    ck_assert_int_eq(ra, 1); /* never 0 */
    ck_assert_int_eq(policy_window_check(&w, T0 + 60000, 3, 1, &ra), 1);
}
END_TEST

START_TEST(test_policy_window_retry_after_waits_until_enough_has_expired)
{
    struct policy_window w;
    long long ra = 0;
    policy_window_init(&w);
    policy_window_add(&w, T0, 40);
    policy_window_add(&w, T0 + 5000, 30);
    policy_window_add(&w, T0 + 20000, 30);
    /* 100 of 100 used; 50 needs the first two buckets gone: T0 + 65 s */
    ck_assert_int_eq(policy_window_check(&w, T0 + 30000, 100, 50, &ra), 0);
    ck_assert_int_eq(ra, 35);
    ck_assert_int_eq(policy_window_check(&w, T0 + 30000, 100, 40, &ra), 0);
    ck_assert_int_eq(ra, 30);
}
END_TEST

START_TEST(test_policy_window_refusal_counts_nothing)
{
    struct policy_window w;
    long long ra;
    policy_window_init(&w);
    ck_assert_int_eq(policy_window_check(&w, T0, 10, 8, &ra), 1);
    ck_assert_int_eq(policy_window_check(&w, T0, 10, 5, &ra), 0);
    ck_assert_int_eq(policy_window_sum(&w, T0), 8);
    ck_assert_int_eq(policy_window_check(&w, T0, 10, 2, &ra), 1);
}
END_TEST

START_TEST(test_policy_window_counts_expire_after_sixty_seconds)
{
    struct policy_window w;
    policy_window_init(&w);
    policy_window_add(&w, T0 + 500, 7);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 59999), 7);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 60000), 0);
}
END_TEST

START_TEST(test_policy_window_long_idle_clears_everything)
{
    struct policy_window w;
    policy_window_init(&w);
    for (int i = 0; i < 60; i++)
        policy_window_add(&w, T0 + i * 1000, 1);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 59000), 60);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 30 * DAY_MS), 0);
}
END_TEST

START_TEST(test_policy_window_unlimited_admits_and_still_counts)
{
    struct policy_window w;
    long long ra;
    policy_window_init(&w);
    ck_assert_int_eq(policy_window_check(&w, T0, 0, 1000000, &ra), 1);
    ck_assert_int_eq(policy_window_check(&w, T0, -1, 5, &ra), 1);
    ck_assert_int_eq(policy_window_sum(&w, T0), 1000005);
}
END_TEST

START_TEST(test_policy_window_empty_window_admits_an_amount_over_the_limit)
{
    struct policy_window w;
    long long ra;
    policy_window_init(&w);
    ck_assert_int_eq(policy_window_check(&w, T0, 100, 500, &ra), 1);
    ck_assert_int_eq(policy_window_check(&w, T0 + 1000, 100, 1, &ra), 0);
    ck_assert_int_eq(ra, 59);
}
END_TEST

START_TEST(test_policy_window_add_counts_without_checking_and_corrects)
{
    struct policy_window w;
    long long ra;
    policy_window_init(&w);
    policy_window_add(&w, T0, 150); /* over a limit of 100: added anyway */
    ck_assert_int_eq(policy_window_sum(&w, T0), 150);
    policy_window_add(&w, T0 + 2000, -120); /* settled lower than estimated */
    ck_assert_int_eq(policy_window_sum(&w, T0 + 2000), 30);
    ck_assert_int_eq(policy_window_check(&w, T0 + 2000, 100, 70, &ra), 1);
}
END_TEST

START_TEST(test_policy_window_clock_step_back_books_into_the_newest_second)
{
    struct policy_window w;
    policy_window_init(&w);
    policy_window_add(&w, T0 + 10000, 1);
    policy_window_add(&w, T0 + 5000, 1); /* 5 s in the past */
    ck_assert_int_eq(policy_window_sum(&w, T0 + 5000), 2);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 69999), 2);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 70000), 0);
}
END_TEST

START_TEST(test_policy_window_clock_step_back_beyond_the_window_restarts_it)
{
    struct policy_window w;
    policy_window_init(&w);
    policy_window_add(&w, T0 + 3600000, 5);
    ck_assert_int_eq(policy_window_sum(&w, T0), 0);
}
END_TEST

/* --- UTC periods ------------------------------------------------------ */

START_TEST(test_policy_period_day_is_utc_midnight_to_midnight)
{
    int64_t midnight = 1763942400000LL; /* 2025-11-24T00:00:00Z */
    ck_assert_int_eq(policy_period_start(T0, POLICY_DAY), midnight);
    ck_assert_int_eq(policy_period_next(T0, POLICY_DAY), midnight + DAY_MS);
}
END_TEST

START_TEST(test_policy_period_boundary_instant_belongs_to_the_new_period)
{
    int64_t midnight = 1763942400000LL;                     /* 2025-11-24 */
    int64_t nov1 = 1761955200000LL, oct1 = 1759276800000LL; /* 2025-11-01, 2025-10-01 */
    ck_assert_int_eq(policy_period_start(midnight, POLICY_DAY), midnight);
    ck_assert_int_eq(policy_period_start(midnight - 1, POLICY_DAY), midnight - DAY_MS);
    ck_assert_int_eq(policy_period_start(nov1, POLICY_MONTH), nov1);
    ck_assert_int_eq(policy_period_start(nov1 - 1, POLICY_MONTH), oct1);
}
END_TEST

START_TEST(test_policy_period_month_of_leap_february)
{
    int64_t t = 1709211600000LL; /* 2024-02-29T13:00:00Z */
    ck_assert_int_eq(policy_period_start(t, POLICY_MONTH), 1706745600000LL); /* 2024-02-01 */
    ck_assert_int_eq(policy_period_next(t, POLICY_MONTH), 1709251200000LL);  /* 2024-03-01 */
    ck_assert_int_eq(policy_period_next(t, POLICY_DAY), 1709251200000LL);
}
END_TEST

START_TEST(test_policy_period_month_of_common_february)
{
    int64_t t = 1677585600000LL; /* 2023-02-28T12:00:00Z */
    ck_assert_int_eq(policy_period_start(t, POLICY_MONTH), 1675209600000LL); /* 2023-02-01 */
    ck_assert_int_eq(policy_period_next(t, POLICY_MONTH), 1677628800000LL);  /* 2023-03-01 */
}
END_TEST

START_TEST(test_policy_period_december_rolls_into_january)
{
    int64_t t = 1734998400000LL; /* 2024-12-24T00:00:00Z */
    ck_assert_int_eq(policy_period_start(t, POLICY_MONTH), 1733011200000LL); /* 2024-12-01 */
    ck_assert_int_eq(policy_period_next(t, POLICY_MONTH), 1735689600000LL);  /* 2025-01-01 */
}
END_TEST

/* Reference: the C library's own UTC calendar. */
static int64_t ref_period(int64_t ms, int period, int next)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (period == POLICY_MONTH) {
        tm.tm_mday = 1;
        tm.tm_mon += next;
    } else {
        tm.tm_mday += next;
    }
    return (int64_t)timegm(&tm) * 1000;
}

START_TEST(test_policy_period_agrees_with_timegm_from_1970_to_2400)
{
    /* 20000 instants spread over 430 years, including 2000 (leap) and
     * 2100 (not leap) */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        int64_t ms;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ms = (int64_t)(x % 13569465600000ULL); /* up to 2400-01-01 */
        for (int period = POLICY_DAY; period <= POLICY_MONTH; period++) {
            ck_assert_int_eq(policy_period_start(ms, period), ref_period(ms, period, 0));
            ck_assert_int_eq(policy_period_next(ms, period), ref_period(ms, period, 1));
        }
    }
}
END_TEST

/* --- budgets ---------------------------------------------------------- */

static struct policy_budget budget(int64_t limit, int period)
{
    struct policy_budget b;
    memset(&b, 0, sizeof b);
    b.limit_pusd = limit;
    b.period = period;
    return b;
}

START_TEST(test_policy_budget_reserves_within_the_limit)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset = -1;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 600, &reset), 1);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 400, &reset), 1); /* exactly the limit */
    ck_assert_int_eq(b.reserved_pusd, 1000);
    ck_assert_int_eq(b.spent_pusd, 0);
    ck_assert_int_eq(reset, -1);
}
END_TEST

START_TEST(test_policy_budget_refuses_over_the_limit_until_the_next_day)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset = 0;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 600, &reset), 1);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 401, &reset), 0);
    ck_assert_int_eq(reset, 1763942400000LL + DAY_MS); /* 2025-11-25T00:00:00Z */
    ck_assert_int_eq(b.reserved_pusd, 600);            /* the refusal reserved nothing */
}
END_TEST

START_TEST(test_policy_budget_monthly_refusal_resets_on_the_first)
{
    struct policy_budget b = budget(10, POLICY_MONTH);
    int64_t reset = 0;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 11, &reset), 0);
    ck_assert_int_eq(reset, 1764547200000LL); /* 2025-12-01T00:00:00Z */
}
END_TEST

START_TEST(test_policy_budget_settle_swaps_the_estimate_for_the_actual_cost)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset;
    policy_budget_reserve(&b, T0, 600, &reset);
    policy_budget_settle(&b, T0 + 5000, 600, 100);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(b.spent_pusd, 100);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 900, &reset), 1);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1, &reset), 0);
}
END_TEST

/* Issue 11 item 14: spent += INT64_MAX (an absurd upstream cost) wrapped
 * to a negative spend (UBSan aborted), and the budget admitted again. */
START_TEST(test_policy_budget_settle_huge_cost_saturates_and_still_refuses)
{
    struct policy_budget b = budget(10000000000000LL, POLICY_DAY); /* $10 */
    int64_t reset;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1000, &reset), 1);
    policy_budget_settle(&b, T0, 1000, 500);
    policy_budget_settle(&b, T0, 0, INT64_MAX);
    ck_assert_int_eq(b.spent_pusd, INT64_MAX);
    policy_budget_settle(&b, T0, 0, INT64_MAX);
    ck_assert_int_eq(b.spent_pusd, INT64_MAX); /* saturated, not wrapped */
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1, &reset), 0);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, INT64_MAX, &reset), 0);
    ck_assert_int_eq(b.reserved_pusd, 0);
}
END_TEST

START_TEST(test_policy_budget_reserve_huge_estimates_do_not_wrap)
{
    struct policy_budget b = budget(10000000000000LL, POLICY_DAY);
    int64_t reset;
    b.reserved_pusd = INT64_MAX - 10;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 100, &reset), 0);
    /* The largest budget the config allows ($1,000,000) and the largest
     * single cost: one fits, a second does not, whatever is reserved. */
    b = budget(1000000000000000000LL, POLICY_DAY);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1000000000000000000LL, &reset), 1);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1000000000000000000LL, &reset), 0);
    b.reserved_pusd = INT64_MAX;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, INT64_MAX, &reset), 0);
    ck_assert_int_eq(b.reserved_pusd, INT64_MAX);
}
END_TEST

START_TEST(test_policy_budget_settle_with_zero_undoes_a_reservation)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset;
    policy_budget_reserve(&b, T0, 700, &reset);
    policy_budget_settle(&b, T0, 700, 0);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(b.spent_pusd, 0);
}
END_TEST

START_TEST(test_policy_budget_reserved_never_goes_below_zero)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset;
    policy_budget_reserve(&b, T0, 100, &reset);
    policy_budget_settle(&b, T0, 300, 50);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(b.spent_pusd, 50);
}
END_TEST

START_TEST(test_policy_budget_without_limit_admits_and_counts)
{
    struct policy_budget b = budget(0, POLICY_MONTH);
    int64_t reset;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1000000000, &reset), 1);
    policy_budget_settle(&b, T0, 1000000000, 999);
    ck_assert_int_eq(b.spent_pusd, 999);
}
END_TEST

START_TEST(test_policy_budget_new_day_starts_from_zero_spent)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset;
    policy_budget_reserve(&b, T0, 1000, &reset);
    policy_budget_settle(&b, T0, 1000, 1000);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 1, &reset), 0);
    ck_assert_int_eq(policy_budget_reserve(&b, T0 + DAY_MS, 1000, &reset), 1);
    ck_assert_int_eq(b.spent_pusd, 0);
    ck_assert_int_eq(b.period_start_ms, policy_period_start(T0 + DAY_MS, POLICY_DAY));
}
END_TEST

/* Reconciliation: upstream's figure arrives after the request settled at
 * an estimate; the difference moves the spend of the period it was settled
 * in, and the budget refuses at once when that pushes it over. */
START_TEST(test_policy_budget_adjust_moves_spent_in_the_booked_period)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset;
    policy_budget_reserve(&b, T0, 10, &reset);
    policy_budget_settle(&b, T0, 10, 4); /* the estimate */
    ck_assert_int_eq(policy_budget_reserve(&b, T0 + 1, 10, &reset), 1);
    policy_budget_settle(&b, T0 + 1, 10, 0);
    policy_budget_adjust(&b, T0 + 60000, T0, 5000 - 4); /* upstream said 5000 */
    ck_assert_int_eq(b.spent_pusd, 5000);
    ck_assert_int_eq(policy_budget_reserve(&b, T0 + 60000, 1, &reset), 0);
    policy_budget_adjust(&b, T0 + 60000, T0, -4000); /* upstream cheaper than settled */
    ck_assert_int_eq(b.spent_pusd, 1000);
}
END_TEST

START_TEST(test_policy_budget_adjust_ignores_a_finished_period)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t reset;
    policy_budget_reserve(&b, T0, 10, &reset);
    policy_budget_settle(&b, T0, 10, 4);
    ck_assert_int_eq(policy_budget_reserve(&b, T0 + DAY_MS, 0, &reset), 1); /* a new day */
    policy_budget_adjust(&b, T0 + DAY_MS, T0, 5000);
    ck_assert_int_eq(b.spent_pusd, 0);
    /* the new day's spend is moved by a request booked in it */
    policy_budget_adjust(&b, T0 + DAY_MS + 1000, T0 + DAY_MS, 7);
    ck_assert_int_eq(b.spent_pusd, 7);
}
END_TEST

START_TEST(test_policy_budget_adjust_saturates_instead_of_wrapping)
{
    struct policy_budget b = budget(1000, POLICY_MONTH);
    policy_budget_seed(&b, T0, INT64_MAX - 5);
    policy_budget_adjust(&b, T0, T0, INT64_MAX);
    ck_assert_int_eq(b.spent_pusd, INT64_MAX);
    policy_budget_adjust(&b, T0, T0, INT64_MIN);
    ck_assert_int_eq(b.spent_pusd, 0);
    policy_budget_seed(&b, T0, 3);
    policy_budget_adjust(&b, T0, T0, -10); /* never below zero */
    ck_assert_int_eq(b.spent_pusd, 0);
}
END_TEST

START_TEST(test_policy_budget_in_flight_reservation_carries_into_the_new_period)
{
    /* reserved at 23:59, settles after midnight: its cost lands in the new
     * day, so its reservation counts there until then */
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t midnight = policy_period_next(T0, POLICY_DAY), reset;
    policy_budget_reserve(&b, midnight - 60000, 400, &reset);
    ck_assert_int_eq(policy_budget_reserve(&b, midnight + 1000, 700, &reset), 0);
    ck_assert_int_eq(policy_budget_reserve(&b, midnight + 1000, 600, &reset), 1);
    policy_budget_settle(&b, midnight + 2000, 400, 300);
    ck_assert_int_eq(b.spent_pusd, 300);
    ck_assert_int_eq(b.reserved_pusd, 600);
}
END_TEST

START_TEST(test_policy_budget_seed_sets_the_spend_of_the_current_period)
{
    struct policy_budget b = budget(1000, POLICY_MONTH);
    int64_t reset;
    policy_budget_seed(&b, T0, 950);
    ck_assert_int_eq(b.spent_pusd, 950);
    ck_assert_int_eq(b.period_start_ms, policy_period_start(T0, POLICY_MONTH));
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 51, &reset), 0);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 50, &reset), 1);
}
END_TEST

START_TEST(test_policy_budget_small_clock_step_back_keeps_the_spend)
{
    struct policy_budget b = budget(1000, POLICY_DAY);
    int64_t midnight = policy_period_next(T0, POLICY_DAY), reset;
    policy_budget_seed(&b, midnight + 1000, 900);
    ck_assert_int_eq(policy_budget_reserve(&b, midnight - 2000, 200, &reset), 0);
    ck_assert_int_eq(b.spent_pusd, 900);
}
END_TEST

/* Property: many threads, each with several requests in flight, reserve E
 * against L and settle with a cost in [0, E]; whatever the interleaving,
 * spent + reserved never exceeds L, so spent never does. */
enum { THREADS = 50, ROUNDS = 200, EST = 700, LIMIT = 1000000 };

struct shared {
    pthread_mutex_t mu;
    struct policy_budget b;
    int admitted, violations;
};

static void *spender(void *arg)
{
    struct shared *sh = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    int held = 0;

    for (int i = 0; i < ROUNDS; i++) {
        int64_t reset;
        int ok;
        pthread_mutex_lock(&sh->mu);
        ok = policy_budget_reserve(&sh->b, T0, EST, &reset);
        sh->admitted += ok;
        held += ok;
        if (sh->b.spent_pusd + sh->b.reserved_pusd > LIMIT)
            sh->violations++;
        pthread_mutex_unlock(&sh->mu);
        /* settle some of what this thread holds, keeping others in flight */
        while (held > 0 && (held > 3 || rand_r(&seed) % 2 == 0)) {
            pthread_mutex_lock(&sh->mu);
            policy_budget_settle(&sh->b, T0, EST, rand_r(&seed) % (EST + 1));
            if (sh->b.spent_pusd > LIMIT)
                sh->violations++;
            pthread_mutex_unlock(&sh->mu);
            held--;
        }
    }
    while (held-- > 0) {
        pthread_mutex_lock(&sh->mu);
        policy_budget_settle(&sh->b, T0, EST, EST);
        pthread_mutex_unlock(&sh->mu);
    }
    return NULL;
}

START_TEST(test_policy_budget_fifty_threads_never_exceed_the_limit)
{
    struct shared sh;
    pthread_t t[THREADS];

    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    sh.b = budget(LIMIT, POLICY_MONTH);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, spender, &sh), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_mutex_destroy(&sh.mu);
    ck_assert_int_eq(sh.violations, 0);
    ck_assert_int_le(sh.b.spent_pusd, LIMIT);
    ck_assert_int_eq(sh.b.reserved_pusd, 0);
    ck_assert_int_lt(sh.admitted, THREADS * ROUNDS); /* the limit did bind */
    ck_assert_int_gt(sh.admitted, LIMIT / EST);      /* cheap requests freed room */
}
END_TEST

START_TEST(test_policy_budget_one_at_a_time_overshoots_by_at_most_one_estimate)
{
    /* each request reserves E and may really cost up to 2E */
    struct policy_budget b = budget(10000, POLICY_DAY);
    int64_t reset;
    unsigned seed = 7;
    for (int trial = 0; trial < 100; trial++) {
        b = budget(10000, POLICY_DAY);
        while (policy_budget_reserve(&b, T0, EST, &reset))
            policy_budget_settle(&b, T0, EST, EST + rand_r(&seed) % (EST + 1));
        ck_assert_int_le(b.spent_pusd, 10000 + EST);
    }
    /* and the bound is reached: the last admission at 10000 - E costs 2E */
    b = budget(10000, POLICY_DAY);
    policy_budget_seed(&b, T0, 10000 - EST);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, EST, &reset), 1);
    policy_budget_settle(&b, T0, EST, 2 * EST);
    ck_assert_int_eq(b.spent_pusd, 10000 + EST);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 0, &reset), 0);
}
END_TEST

START_TEST(test_policy_budget_overshoot_is_bounded_by_the_excess_in_flight)
{
    /* Random interleavings of up to 8 requests in flight, each costing up
     * to E more than it reserved: spent ends within L plus the excesses of
     * the requests that were in flight when the last one was admitted. */
    enum { L = 20000, MAXF = 8 };
    unsigned seed = 42;
    for (int trial = 0; trial < 500; trial++) {
        struct policy_budget b = budget(L, POLICY_DAY);
        int64_t cost[MAXF], reset, bound_excess = 0;
        int in_flight = 0, refused = 0;
        int in_flight_at_last[MAXF], n_last = 0, idx[MAXF];

        for (int i = 0; i < MAXF; i++)
            idx[i] = i;
        while (!refused || in_flight > 0) {
            if (!refused && in_flight < MAXF && rand_r(&seed) % 2 == 0) {
                if (policy_budget_reserve(&b, T0, EST, &reset)) {
                    cost[idx[in_flight]] = EST + rand_r(&seed) % (EST + 1);
                    in_flight++;
                    n_last = in_flight;
                    for (int i = 0; i < in_flight; i++)
                        in_flight_at_last[i] = idx[i];
                    bound_excess = 0;
                    for (int i = 0; i < n_last; i++)
                        bound_excess += cost[in_flight_at_last[i]] - EST;
                } else {
                    refused = 1;
                }
            } else if (in_flight > 0) {
                int k = (int)(rand_r(&seed) % (unsigned)in_flight), slot = idx[k];
                policy_budget_settle(&b, T0, EST, cost[slot]);
                idx[k] = idx[in_flight - 1];
                idx[in_flight - 1] = slot;
                in_flight--;
            }
        }
        ck_assert_int_le(b.spent_pusd, L + bound_excess);
        ck_assert_int_le(b.spent_pusd, L + MAXF * EST);
    }
}
END_TEST

/* --- request body edits ----------------------------------------------- */

static struct policy_edits no_edits(void)
{
    struct policy_edits e;
    memset(&e, 0, sizeof e);
    return e;
}

/* Applies e and returns the parsed result (NULL when nothing changed). */
static cJSON *apply(const char *body, const struct policy_edits *e)
{
    char err[128] = "";
    int changed = -1;
    char *out = policy_apply_body(body, strlen(body), e, err, sizeof err, &changed);
    cJSON *j;
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(changed, out != NULL);
    if (out == NULL)
        return NULL;
    ck_assert_ptr_null(strchr(out, '\n')); /* compact */
    j = cJSON_Parse(out);
    free(out);
    ck_assert_ptr_nonnull(j);
    return j;
}

static const char *str_member(const cJSON *o, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

START_TEST(test_policy_body_without_applicable_edits_returns_null_unchanged)
{
    struct policy_edits e = no_edits();
    const char *from[] = {"gpt"}, *to[] = {"openai/gpt"};
    ck_assert_ptr_null(apply("{\"model\":\"x\", \"temperature\": 1.0}", &e));
    e.alias_from = from, e.alias_to = to, e.n_aliases = 1;
    e.default_model = "d/m";
    e.has_temperature = 1, e.temperature = 0.5;
    ck_assert_ptr_null(apply("{\"model\":\"x\",\"temperature\":null}", &e));
}
END_TEST

START_TEST(test_policy_body_default_model_when_absent)
{
    struct policy_edits e = no_edits();
    cJSON *j;
    e.default_model = "openai/gpt-4o-mini";
    j = apply("{\"messages\":[]}", &e);
    ck_assert_str_eq(str_member(j, "model"), "openai/gpt-4o-mini");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_body_default_model_not_when_present_even_null)
{
    struct policy_edits e = no_edits();
    e.default_model = "openai/gpt-4o-mini";
    ck_assert_ptr_null(apply("{\"model\":\"mine\"}", &e));
    ck_assert_ptr_null(apply("{\"model\":null}", &e));
    ck_assert_ptr_null(apply("{\"model\":\"\"}", &e));
}
END_TEST

START_TEST(test_policy_body_alias_replaces_the_model)
{
    const char *from[] = {"fast", "smart"},
               *to[] = {"openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"};
    struct policy_edits e = no_edits();
    cJSON *j;
    e.alias_from = from, e.alias_to = to, e.n_aliases = 2;
    j = apply("{\"model\":\"smart\"}", &e);
    ck_assert_str_eq(str_member(j, "model"), "anthropic/claude-3.5-sonnet");
    cJSON_Delete(j);
    ck_assert_ptr_null(apply("{\"model\":\"Smart\"}", &e)); /* case-sensitive */
}
END_TEST

START_TEST(test_policy_body_alias_applies_to_the_default_model)
{
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini"};
    struct policy_edits e = no_edits();
    cJSON *j;
    e.alias_from = from, e.alias_to = to, e.n_aliases = 1;
    e.default_model = "fast";
    j = apply("{}", &e);
    ck_assert_str_eq(str_member(j, "model"), "openai/gpt-4o-mini");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_body_alias_first_match_wins_and_does_not_chain)
{
    const char *from[] = {"a", "a", "b"}, *to[] = {"b", "c", "d"};
    struct policy_edits e = no_edits();
    cJSON *j;
    e.alias_from = from, e.alias_to = to, e.n_aliases = 3;
    j = apply("{\"model\":\"a\"}", &e);
    ck_assert_str_eq(str_member(j, "model"), "b");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_body_alias_replaces_strings_in_models)
{
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini"};
    struct policy_edits e = no_edits();
    cJSON *j, *models;
    e.alias_from = from, e.alias_to = to, e.n_aliases = 1;
    j = apply("{\"model\":\"x/y\",\"models\":[\"fast\",\"x/y\",7,\"fast\"]}", &e);
    models = cJSON_GetObjectItemCaseSensitive(j, "models");
    ck_assert_str_eq(str_member(j, "model"), "x/y");
    ck_assert_str_eq(cJSON_GetArrayItem(models, 0)->valuestring, "openai/gpt-4o-mini");
    ck_assert_str_eq(cJSON_GetArrayItem(models, 1)->valuestring, "x/y");
    ck_assert_int_eq(cJSON_GetArrayItem(models, 2)->valueint, 7);
    ck_assert_str_eq(cJSON_GetArrayItem(models, 3)->valuestring, "openai/gpt-4o-mini");
    cJSON_Delete(j);
}
END_TEST

/* Each numeric default alone: added when absent with its value, nothing
 * else added. */
START_TEST(test_policy_body_each_numeric_default_added_alone_when_absent)
{
    static const char *names[] = {"temperature", "top_p", "max_tokens", "frequency_penalty",
                                  "presence_penalty"};
    static const double values[] = {0.3, 0.9, 256, -0.5, 1.25};
    for (int i = 0; i < 5; i++) {
        struct policy_edits e = no_edits();
        cJSON *j, *m;
        switch (i) {
        case 0: e.has_temperature = 1, e.temperature = values[i]; break;
        case 1: e.has_top_p = 1, e.top_p = values[i]; break;
        case 2: e.has_max_tokens = 1, e.max_tokens = (long)values[i]; break;
        case 3: e.has_frequency_penalty = 1, e.frequency_penalty = values[i]; break;
        default: e.has_presence_penalty = 1, e.presence_penalty = values[i]; break;
        }
        j = apply("{\"model\":\"m\"}", &e);
        ck_assert_int_eq(cJSON_GetArraySize(j), 2);
        m = cJSON_GetObjectItemCaseSensitive(j, names[i]);
        ck_assert_msg(cJSON_IsNumber(m) && m->valuedouble == values[i], "%s", names[i]);
        cJSON_Delete(j);
    }
}
END_TEST

START_TEST(test_policy_body_defaults_not_applied_when_present)
{
    struct policy_edits e = no_edits();
    e.has_temperature = 1, e.temperature = 0.3;
    e.has_top_p = 1, e.top_p = 0.9;
    e.has_max_tokens = 1, e.max_tokens = 64;
    e.has_frequency_penalty = 1, e.frequency_penalty = 0.1;
    e.has_presence_penalty = 1, e.presence_penalty = 0.2;
    ck_assert_ptr_null(apply("{\"temperature\":1,\"top_p\":1,\"max_tokens\":9,"
                             "\"frequency_penalty\":0,\"presence_penalty\":0}",
                             &e));
}
END_TEST

START_TEST(test_policy_body_defaults_not_applied_when_present_as_null)
{
    struct policy_edits e = no_edits();
    cJSON *j;
    e.has_temperature = 1, e.temperature = 0.3;
    e.has_max_tokens = 1, e.max_tokens = 64;
    j = apply("{\"temperature\":null}", &e);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "temperature")));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(j, "max_tokens")->valueint, 64);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_body_max_tokens_default_skipped_with_max_completion_tokens)
{
    struct policy_edits e = no_edits();
    e.has_max_tokens = 1, e.max_tokens = 64;
    ck_assert_ptr_null(apply("{\"max_completion_tokens\":10}", &e));
}
END_TEST

START_TEST(test_policy_body_system_prompt_inserted_first_when_none)
{
    struct policy_edits e = no_edits();
    cJSON *j, *msgs, *first;
    e.system_prompt = "Answer briefly.";
    j = apply("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &e);
    msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    ck_assert_int_eq(cJSON_GetArraySize(msgs), 2);
    first = cJSON_GetArrayItem(msgs, 0);
    ck_assert_int_eq(cJSON_GetArraySize(first), 2);
    ck_assert_str_eq(str_member(first, "role"), "system");
    ck_assert_str_eq(str_member(first, "content"), "Answer briefly.");
    ck_assert_str_eq(str_member(cJSON_GetArrayItem(msgs, 1), "content"), "hi");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_body_system_prompt_not_inserted_when_one_exists)
{
    struct policy_edits e = no_edits();
    e.system_prompt = "Answer briefly.";
    ck_assert_ptr_null(apply("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                             "{\"role\":\"system\",\"content\":\"mine\"}]}",
                             &e));
}
END_TEST

START_TEST(test_policy_body_system_prompt_ignored_without_messages)
{
    struct policy_edits e = no_edits();
    e.system_prompt = "Answer briefly.";
    ck_assert_ptr_null(apply("{\"model\":\"m\",\"prompt\":\"legacy\"}", &e));
    ck_assert_ptr_null(apply("{\"model\":\"m\",\"input\":[\"embed me\"]}", &e));
    ck_assert_ptr_null(apply("{\"messages\":\"not an array\"}", &e));
}
END_TEST

START_TEST(test_policy_body_unicode_and_unknown_nested_fields_survive)
{
    static const char body[] =
        "{\"model\":\"fast\",\"x\":{\"y\":[1,\"\\u00e9\\ud83d\\ude00 \\\"q\\\"\",null,true,{}]},"
        "\"messages\":[{\"role\":\"user\","
        "\"content\":[{\"type\":\"text\",\"text\":\"caf\xc3\xa9\"}]}],"
        "\"provider\":{\"order\":[\"a\",\"b\"],\"allow_fallbacks\":false}}";
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini"};
    struct policy_edits e = no_edits();
    cJSON *orig = cJSON_Parse(body), *j, *m;
    e.alias_from = from, e.alias_to = to, e.n_aliases = 1;
    j = apply(body, &e);
    ck_assert_int_eq(cJSON_GetArraySize(j), cJSON_GetArraySize(orig));
    cJSON_ArrayForEach(m, orig) {
        if (strcmp(m->string, "model") != 0)
            ck_assert_msg(cJSON_Compare(m, cJSON_GetObjectItemCaseSensitive(j, m->string), 1),
                          "member %s", m->string);
    }
    ck_assert_str_eq(
        cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "x"), "y"), 1)->valuestring,
        "\xc3\xa9\xf0\x9f\x98\x80 \"q\"");
    cJSON_Delete(orig);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_body_number_literals_survive_byte_for_byte)
{
    static const char body[] = "{\"seed\":1234567890123456789,\"a\":[1.0,1e2,-0.10,{\"b\":3}],"
                               "\"logit_bias\":{\"50256\":-100}}";
    struct policy_edits e = no_edits();
    char err[64] = "";
    int changed = 0;
    char *out;
    e.default_model = "m";
    out = policy_apply_body(body, strlen(body), &e, err, sizeof err, &changed);
    ck_assert_int_eq(changed, 1);
    ck_assert_str_eq(out, "{\"seed\":1234567890123456789,\"a\":[1.0,1e2,-0.10,{\"b\":3}],"
                          "\"logit_bias\":{\"50256\":-100},\"model\":\"m\"}");
    free(out);
}
END_TEST

START_TEST(test_policy_body_defaults_print_as_plain_json_numbers)
{
    struct policy_edits e = no_edits();
    char err[64] = "";
    int changed = 0;
    char *out;
    e.has_temperature = 1, e.temperature = 0.7;
    e.has_max_tokens = 1, e.max_tokens = 3000000000L;
    out = policy_apply_body("{}", 2, &e, err, sizeof err, &changed);
    ck_assert_str_eq(out, "{\"temperature\":0.7,\"max_tokens\":3000000000}");
    free(out);
}
END_TEST

START_TEST(test_policy_body_uses_only_len_bytes)
{
    struct policy_edits e = no_edits();
    char err[64] = "";
    int changed = 0;
    char *out;
    e.default_model = "m";
    out = policy_apply_body("{\"a\":1}GARBAGE", 7, &e, err, sizeof err, &changed);
    ck_assert_str_eq(out, "{\"a\":1,\"model\":\"m\"}");
    free(out);
}
END_TEST

START_TEST(test_policy_body_not_a_json_object_sets_err)
{
    static const char *bad[] = {
        "[1]", "\"s\"", "3", "null", "{", "", "{\"a\":1} x", "{}{}", "{'a':1}",
    };
    struct policy_edits e = no_edits();
    e.default_model = "m";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[64] = "";
        int changed = 1;
        ck_assert_ptr_null(
            policy_apply_body(bad[i], strlen(bad[i]), &e, err, sizeof err, &changed));
        ck_assert_int_eq(changed, 0);
        ck_assert_msg(strcmp(err, "request body must be a JSON object") == 0, "%s: %s", //
                      bad[i], err);
    }
}
END_TEST

START_TEST(test_policy_body_trailing_whitespace_is_accepted)
{
    struct policy_edits e = no_edits();
    cJSON *j;
    e.default_model = "m";
    j = apply(" {\"a\":1}\r\n", &e);
    ck_assert_str_eq(str_member(j, "model"), "m");
    cJSON_Delete(j);
}
END_TEST

/* A cJSON allocator that fails the nth allocation from now on. */
static int alloc_countdown;

static void *failing_malloc(size_t n)
{
    return alloc_countdown-- == 0 ? NULL : malloc(n);
}

START_TEST(test_policy_body_allocation_failures_report_and_leak_nothing)
{
    /* every edit kind, so every failure path is reached; the sanitizer
     * build checks that none of them leaks */
    static const char body[] = "{\"model\":\"fast\",\"models\":[\"fast\"],\"n\":[1,2.5],"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini-with-a-longer-name"};
    cJSON_Hooks hooks = {failing_malloc, free};
    struct policy_edits e = no_edits();
    int failures = 0, k;
    e.alias_from = from, e.alias_to = to, e.n_aliases = 1;
    e.has_temperature = 1, e.temperature = 0.2;
    e.has_max_tokens = 1, e.max_tokens = 10;
    e.system_prompt = "S";
    cJSON_InitHooks(&hooks);
    for (k = 0; k < 1000; k++) {
        char err[96] = "";
        int changed = -1;
        char *out;
        alloc_countdown = k;
        out = policy_apply_body(body, strlen(body), &e, err, sizeof err, &changed);
        if (out != NULL) {
            ck_assert_int_eq(changed, 1);
            free(out);
            break; /* k allocations were enough */
        }
        ck_assert_int_eq(changed, 0);
        ck_assert_msg(err[0] != '\0', "no error after failing allocation %d", k);
        failures++;
    }
    cJSON_InitHooks(NULL);
    ck_assert_int_lt(k, 1000);
    ck_assert_int_gt(failures, 10);
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *pat = tcase_create("patterns"), *win = tcase_create("window"),
          *per = tcase_create("periods"), *bud = tcase_create("budget"),
          *body = tcase_create("body");

    tcase_add_test(pat, test_policy_model_no_patterns_allows_everything);
    tcase_add_test(pat, test_policy_model_provider_prefix_pattern);
    tcase_add_test(pat, test_policy_model_suffix_pattern);
    tcase_add_test(pat, test_policy_model_star_in_the_middle_and_several_stars);
    tcase_add_test(pat, test_policy_model_star_matches_slash_colon_and_nothing);
    tcase_add_test(pat, test_policy_model_literal_whole_and_case_sensitive);
    tcase_add_test(pat, test_policy_model_any_pattern_of_several);
    tcase_add_test(pat, test_policy_model_missing_model_refused_when_patterns_set);

    tcase_add_test(win, test_policy_window_admits_up_to_the_limit_then_refuses);
    tcase_add_test(win, test_policy_window_retry_after_is_time_until_the_oldest_expires);
    tcase_add_test(win, test_policy_window_retry_after_waits_until_enough_has_expired);
    tcase_add_test(win, test_policy_window_refusal_counts_nothing);
    tcase_add_test(win, test_policy_window_counts_expire_after_sixty_seconds);
    tcase_add_test(win, test_policy_window_long_idle_clears_everything);
    tcase_add_test(win, test_policy_window_unlimited_admits_and_still_counts);
    tcase_add_test(win, test_policy_window_empty_window_admits_an_amount_over_the_limit);
    tcase_add_test(win, test_policy_window_add_counts_without_checking_and_corrects);
    tcase_add_test(win, test_policy_window_clock_step_back_books_into_the_newest_second);
    tcase_add_test(win, test_policy_window_clock_step_back_beyond_the_window_restarts_it);

    tcase_add_test(per, test_policy_period_day_is_utc_midnight_to_midnight);
    tcase_add_test(per, test_policy_period_boundary_instant_belongs_to_the_new_period);
    tcase_add_test(per, test_policy_period_month_of_leap_february);
    tcase_add_test(per, test_policy_period_month_of_common_february);
    tcase_add_test(per, test_policy_period_december_rolls_into_january);
    tcase_add_test(per, test_policy_period_agrees_with_timegm_from_1970_to_2400);

    tcase_add_test(bud, test_policy_budget_reserves_within_the_limit);
    tcase_add_test(bud, test_policy_budget_refuses_over_the_limit_until_the_next_day);
    tcase_add_test(bud, test_policy_budget_monthly_refusal_resets_on_the_first);
    tcase_add_test(bud, test_policy_budget_settle_swaps_the_estimate_for_the_actual_cost);
    tcase_add_test(bud, test_policy_budget_settle_huge_cost_saturates_and_still_refuses);
    tcase_add_test(bud, test_policy_budget_reserve_huge_estimates_do_not_wrap);
    tcase_add_test(bud, test_policy_budget_settle_with_zero_undoes_a_reservation);
    tcase_add_test(bud, test_policy_budget_reserved_never_goes_below_zero);
    tcase_add_test(bud, test_policy_budget_without_limit_admits_and_counts);
    tcase_add_test(bud, test_policy_budget_new_day_starts_from_zero_spent);
    tcase_add_test(bud, test_policy_budget_in_flight_reservation_carries_into_the_new_period);
    tcase_add_test(bud, test_policy_budget_adjust_moves_spent_in_the_booked_period);
    tcase_add_test(bud, test_policy_budget_adjust_ignores_a_finished_period);
    tcase_add_test(bud, test_policy_budget_adjust_saturates_instead_of_wrapping);
    tcase_add_test(bud, test_policy_budget_seed_sets_the_spend_of_the_current_period);
    tcase_add_test(bud, test_policy_budget_small_clock_step_back_keeps_the_spend);
    tcase_add_test(bud, test_policy_budget_fifty_threads_never_exceed_the_limit);
    tcase_add_test(bud, test_policy_budget_one_at_a_time_overshoots_by_at_most_one_estimate);
    tcase_add_test(bud, test_policy_budget_overshoot_is_bounded_by_the_excess_in_flight);

    tcase_add_test(body, test_policy_body_without_applicable_edits_returns_null_unchanged);
    tcase_add_test(body, test_policy_body_default_model_when_absent);
    tcase_add_test(body, test_policy_body_default_model_not_when_present_even_null);
    tcase_add_test(body, test_policy_body_alias_replaces_the_model);
    tcase_add_test(body, test_policy_body_alias_applies_to_the_default_model);
    tcase_add_test(body, test_policy_body_alias_first_match_wins_and_does_not_chain);
    tcase_add_test(body, test_policy_body_alias_replaces_strings_in_models);
    tcase_add_test(body, test_policy_body_each_numeric_default_added_alone_when_absent);
    tcase_add_test(body, test_policy_body_defaults_not_applied_when_present);
    tcase_add_test(body, test_policy_body_defaults_not_applied_when_present_as_null);
    tcase_add_test(body, test_policy_body_max_tokens_default_skipped_with_max_completion_tokens);
    tcase_add_test(body, test_policy_body_system_prompt_inserted_first_when_none);
    tcase_add_test(body, test_policy_body_system_prompt_not_inserted_when_one_exists);
    tcase_add_test(body, test_policy_body_system_prompt_ignored_without_messages);
    tcase_add_test(body, test_policy_body_unicode_and_unknown_nested_fields_survive);
    tcase_add_test(body, test_policy_body_number_literals_survive_byte_for_byte);
    tcase_add_test(body, test_policy_body_defaults_print_as_plain_json_numbers);
    tcase_add_test(body, test_policy_body_uses_only_len_bytes);
    tcase_add_test(body, test_policy_body_not_a_json_object_sets_err);
    tcase_add_test(body, test_policy_body_trailing_whitespace_is_accepted);
    tcase_add_test(body, test_policy_body_allocation_failures_report_and_leak_nothing);

    suite_add_tcase(s, pat);
    suite_add_tcase(s, win);
    suite_add_tcase(s, per);
    suite_add_tcase(s, bud);
    suite_add_tcase(s, body);
    return s;
}

CHECK_MAIN(policy_suite)
