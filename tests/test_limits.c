/* Unit tests for limits.c: the rate window, UTC periods, and budgets with
 * reservations (including a 50-thread property test). */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "limits.h"

#define T0 1764000000000LL /* 2025-11-24T16:00:00Z, on a whole second */
#define DAY_MS 86400000LL

/* --- rate windows ----------------------------------------------------- */

START_TEST(test_limits_window_admits_up_to_the_limit_then_refuses)
{
    struct limits_window w;
    long long ra = 0;
    limits_window_init(&w);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(limits_window_check(&w, T0 + i * 1000, 3, 1, &ra), 1);
    ck_assert_int_eq(limits_window_check(&w, T0 + 3000, 3, 1, &ra), 0);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 3000), 3);
}
END_TEST

START_TEST(test_limits_window_retry_after_is_time_until_the_oldest_expires)
{
    struct limits_window w;
    long long ra = 0;
    limits_window_init(&w);
    for (int i = 0; i < 3; i++)
        limits_window_check(&w, T0 + i * 1000, 3, 1, &ra);
    ck_assert_int_eq(limits_window_check(&w, T0 + 10000, 3, 1, &ra), 0);
    ck_assert_int_eq(ra, 50); /* the one at T0 leaves at T0 + 60 s */
    ck_assert_int_eq(limits_window_check(&w, T0 + 10400, 3, 1, &ra), 0);
    ck_assert_int_eq(ra, 50); /* 49.6 s rounds up */
    ck_assert_int_eq(limits_window_check(&w, T0 + 59999, 3, 1, &ra), 0);
    ck_assert_int_eq(ra, 1); /* never 0 */
    ck_assert_int_eq(limits_window_check(&w, T0 + 60000, 3, 1, &ra), 1);
}
END_TEST

START_TEST(test_limits_window_retry_after_waits_until_enough_has_expired)
{
    struct limits_window w;
    long long ra = 0;
    limits_window_init(&w);
    limits_window_add(&w, T0, 40);
    limits_window_add(&w, T0 + 5000, 30);
    limits_window_add(&w, T0 + 20000, 30);
    /* 100 of 100 used; 50 needs the first two buckets gone: T0 + 65 s */
    ck_assert_int_eq(limits_window_check(&w, T0 + 30000, 100, 50, &ra), 0);
    ck_assert_int_eq(ra, 35);
    ck_assert_int_eq(limits_window_check(&w, T0 + 30000, 100, 40, &ra), 0);
    ck_assert_int_eq(ra, 30);
}
END_TEST

START_TEST(test_limits_window_refusal_counts_nothing)
{
    struct limits_window w;
    long long ra;
    limits_window_init(&w);
    ck_assert_int_eq(limits_window_check(&w, T0, 10, 8, &ra), 1);
    ck_assert_int_eq(limits_window_check(&w, T0, 10, 5, &ra), 0);
    ck_assert_int_eq(limits_window_sum(&w, T0), 8);
    ck_assert_int_eq(limits_window_check(&w, T0, 10, 2, &ra), 1);
}
END_TEST

START_TEST(test_limits_window_counts_expire_after_sixty_seconds)
{
    struct limits_window w;
    limits_window_init(&w);
    limits_window_add(&w, T0 + 500, 7);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 59999), 7);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 60000), 0);
}
END_TEST

START_TEST(test_limits_window_long_idle_clears_everything)
{
    struct limits_window w;
    limits_window_init(&w);
    for (int i = 0; i < 60; i++)
        limits_window_add(&w, T0 + i * 1000, 1);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 59000), 60);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 30 * DAY_MS), 0);
}
END_TEST

START_TEST(test_limits_window_unlimited_admits_and_still_counts)
{
    struct limits_window w;
    long long ra;
    limits_window_init(&w);
    ck_assert_int_eq(limits_window_check(&w, T0, 0, 1000000, &ra), 1);
    ck_assert_int_eq(limits_window_check(&w, T0, -1, 5, &ra), 1);
    ck_assert_int_eq(limits_window_sum(&w, T0), 1000005);
}
END_TEST

START_TEST(test_limits_window_empty_window_admits_an_amount_over_the_limit)
{
    struct limits_window w;
    long long ra;
    limits_window_init(&w);
    ck_assert_int_eq(limits_window_check(&w, T0, 100, 500, &ra), 1);
    ck_assert_int_eq(limits_window_check(&w, T0 + 1000, 100, 1, &ra), 0);
    ck_assert_int_eq(ra, 59);
}
END_TEST

START_TEST(test_limits_window_add_counts_without_checking_and_corrects)
{
    struct limits_window w;
    long long ra;
    limits_window_init(&w);
    limits_window_add(&w, T0, 150); /* over a limit of 100: added anyway */
    ck_assert_int_eq(limits_window_sum(&w, T0), 150);
    limits_window_add(&w, T0 + 2000, -120); /* settled lower than estimated */
    ck_assert_int_eq(limits_window_sum(&w, T0 + 2000), 30);
    ck_assert_int_eq(limits_window_check(&w, T0 + 2000, 100, 70, &ra), 1);
}
END_TEST

START_TEST(test_limits_window_clock_step_back_books_into_the_newest_second)
{
    struct limits_window w;
    limits_window_init(&w);
    limits_window_add(&w, T0 + 10000, 1);
    limits_window_add(&w, T0 + 5000, 1); /* 5 s in the past */
    ck_assert_int_eq(limits_window_sum(&w, T0 + 5000), 2);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 69999), 2);
    ck_assert_int_eq(limits_window_sum(&w, T0 + 70000), 0);
}
END_TEST

START_TEST(test_limits_window_clock_step_back_beyond_the_window_restarts_it)
{
    struct limits_window w;
    limits_window_init(&w);
    limits_window_add(&w, T0 + 3600000, 5);
    ck_assert_int_eq(limits_window_sum(&w, T0), 0);
}
END_TEST

/* --- UTC periods ------------------------------------------------------ */

START_TEST(test_limits_period_day_is_utc_midnight_to_midnight)
{
    int64_t midnight = 1763942400000LL; /* 2025-11-24T00:00:00Z */
    ck_assert_int_eq(limits_period_start(T0, LIMITS_DAY), midnight);
    ck_assert_int_eq(limits_period_next(T0, LIMITS_DAY), midnight + DAY_MS);
}
END_TEST

START_TEST(test_limits_period_boundary_instant_belongs_to_the_new_period)
{
    int64_t midnight = 1763942400000LL;                     /* 2025-11-24 */
    int64_t nov1 = 1761955200000LL, oct1 = 1759276800000LL; /* 2025-11-01, 2025-10-01 */
    ck_assert_int_eq(limits_period_start(midnight, LIMITS_DAY), midnight);
    ck_assert_int_eq(limits_period_start(midnight - 1, LIMITS_DAY), midnight - DAY_MS);
    ck_assert_int_eq(limits_period_start(nov1, LIMITS_MONTH), nov1);
    ck_assert_int_eq(limits_period_start(nov1 - 1, LIMITS_MONTH), oct1);
}
END_TEST

START_TEST(test_limits_period_month_of_leap_february)
{
    int64_t t = 1709211600000LL; /* 2024-02-29T13:00:00Z */
    ck_assert_int_eq(limits_period_start(t, LIMITS_MONTH), 1706745600000LL); /* 2024-02-01 */
    ck_assert_int_eq(limits_period_next(t, LIMITS_MONTH), 1709251200000LL);  /* 2024-03-01 */
    ck_assert_int_eq(limits_period_next(t, LIMITS_DAY), 1709251200000LL);
}
END_TEST

START_TEST(test_limits_period_month_of_common_february)
{
    int64_t t = 1677585600000LL; /* 2023-02-28T12:00:00Z */
    ck_assert_int_eq(limits_period_start(t, LIMITS_MONTH), 1675209600000LL); /* 2023-02-01 */
    ck_assert_int_eq(limits_period_next(t, LIMITS_MONTH), 1677628800000LL);  /* 2023-03-01 */
}
END_TEST

START_TEST(test_limits_period_december_rolls_into_january)
{
    int64_t t = 1734998400000LL; /* 2024-12-24T00:00:00Z */
    ck_assert_int_eq(limits_period_start(t, LIMITS_MONTH), 1733011200000LL); /* 2024-12-01 */
    ck_assert_int_eq(limits_period_next(t, LIMITS_MONTH), 1735689600000LL);  /* 2025-01-01 */
}
END_TEST

/* Reference: the C library's own UTC calendar. */
static int64_t ref_period(int64_t ms, int period, int next)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (period == LIMITS_MONTH) {
        tm.tm_mday = 1;
        tm.tm_mon += next;
    } else {
        tm.tm_mday += next;
    }
    return (int64_t)timegm(&tm) * 1000;
}

START_TEST(test_limits_period_agrees_with_timegm_from_1970_to_2400)
{
    /* 20000 instants spread over 430 years, including 2000 (leap) and
     * 2100 (not leap) */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        int64_t ms;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ms = (int64_t)(x % 13569465600000ULL); /* up to 2400-01-01 */
        for (int period = LIMITS_DAY; period <= LIMITS_MONTH; period++) {
            ck_assert_int_eq(limits_period_start(ms, period), ref_period(ms, period, 0));
            ck_assert_int_eq(limits_period_next(ms, period), ref_period(ms, period, 1));
        }
    }
}
END_TEST

/* --- budgets ---------------------------------------------------------- */

static struct limits_budget budget(int64_t limit, int period)
{
    struct limits_budget b;
    memset(&b, 0, sizeof b);
    b.limit_pusd = limit;
    b.period = period;
    return b;
}

START_TEST(test_limits_budget_reserves_within_the_limit)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset = -1;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 600, &reset), 1);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 400, &reset), 1); /* exactly the limit */
    ck_assert_int_eq(b.reserved_pusd, 1000);
    ck_assert_int_eq(b.spent_pusd, 0);
    ck_assert_int_eq(reset, -1);
}
END_TEST

START_TEST(test_limits_budget_refuses_over_the_limit_until_the_next_day)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset = 0;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 600, &reset), 1);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 401, &reset), 0);
    ck_assert_int_eq(reset, 1763942400000LL + DAY_MS); /* 2025-11-25T00:00:00Z */
    ck_assert_int_eq(b.reserved_pusd, 600);            /* the refusal reserved nothing */
}
END_TEST

START_TEST(test_limits_budget_monthly_refusal_resets_on_the_first)
{
    struct limits_budget b = budget(10, LIMITS_MONTH);
    int64_t reset = 0;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 11, &reset), 0);
    ck_assert_int_eq(reset, 1764547200000LL); /* 2025-12-01T00:00:00Z */
}
END_TEST

START_TEST(test_limits_budget_settle_swaps_the_estimate_for_the_actual_cost)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset;
    limits_budget_reserve(&b, T0, 600, &reset);
    limits_budget_settle(&b, T0 + 5000, 600, 100);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(b.spent_pusd, 100);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 900, &reset), 1);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1, &reset), 0);
}
END_TEST

/* Issue 11 item 14: spent += INT64_MAX (an absurd upstream cost) wrapped
 * to a negative spend (UBSan aborted), and the budget admitted again. */
START_TEST(test_limits_budget_settle_huge_cost_saturates_and_still_refuses)
{
    struct limits_budget b = budget(10000000000000LL, LIMITS_DAY); /* $10 */
    int64_t reset;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1000, &reset), 1);
    limits_budget_settle(&b, T0, 1000, 500);
    limits_budget_settle(&b, T0, 0, INT64_MAX);
    ck_assert_int_eq(b.spent_pusd, INT64_MAX);
    limits_budget_settle(&b, T0, 0, INT64_MAX);
    ck_assert_int_eq(b.spent_pusd, INT64_MAX); /* saturated, not wrapped */
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1, &reset), 0);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, INT64_MAX, &reset), 0);
    ck_assert_int_eq(b.reserved_pusd, 0);
}
END_TEST

START_TEST(test_limits_budget_reserve_huge_estimates_do_not_wrap)
{
    struct limits_budget b = budget(10000000000000LL, LIMITS_DAY);
    int64_t reset;
    b.reserved_pusd = INT64_MAX - 10;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 100, &reset), 0);
    /* The largest budget the config allows ($1,000,000) and the largest
     * single cost: one fits, a second does not, whatever is reserved. */
    b = budget(1000000000000000000LL, LIMITS_DAY);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1000000000000000000LL, &reset), 1);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1000000000000000000LL, &reset), 0);
    b.reserved_pusd = INT64_MAX;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, INT64_MAX, &reset), 0);
    ck_assert_int_eq(b.reserved_pusd, INT64_MAX);
}
END_TEST

START_TEST(test_limits_budget_settle_with_zero_undoes_a_reservation)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset;
    limits_budget_reserve(&b, T0, 700, &reset);
    limits_budget_settle(&b, T0, 700, 0);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(b.spent_pusd, 0);
}
END_TEST

START_TEST(test_limits_budget_reserved_never_goes_below_zero)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset;
    limits_budget_reserve(&b, T0, 100, &reset);
    limits_budget_settle(&b, T0, 300, 50);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(b.spent_pusd, 50);
}
END_TEST

START_TEST(test_limits_budget_without_limit_admits_and_counts)
{
    struct limits_budget b = budget(0, LIMITS_MONTH);
    int64_t reset;
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1000000000, &reset), 1);
    limits_budget_settle(&b, T0, 1000000000, 999);
    ck_assert_int_eq(b.spent_pusd, 999);
}
END_TEST

START_TEST(test_limits_budget_new_day_starts_from_zero_spent)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset;
    limits_budget_reserve(&b, T0, 1000, &reset);
    limits_budget_settle(&b, T0, 1000, 1000);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 1, &reset), 0);
    ck_assert_int_eq(limits_budget_reserve(&b, T0 + DAY_MS, 1000, &reset), 1);
    ck_assert_int_eq(b.spent_pusd, 0);
    ck_assert_int_eq(b.period_start_ms, limits_period_start(T0 + DAY_MS, LIMITS_DAY));
}
END_TEST

/* Reconciliation: upstream's figure arrives after the request settled at
 * an estimate; the difference moves the spend of the period it was settled
 * in, and the budget refuses at once when that pushes it over. */
START_TEST(test_limits_budget_adjust_moves_spent_in_the_booked_period)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset;
    limits_budget_reserve(&b, T0, 10, &reset);
    limits_budget_settle(&b, T0, 10, 4); /* the estimate */
    ck_assert_int_eq(limits_budget_reserve(&b, T0 + 1, 10, &reset), 1);
    limits_budget_settle(&b, T0 + 1, 10, 0);
    limits_budget_adjust(&b, T0 + 60000, T0, 5000 - 4); /* upstream said 5000 */
    ck_assert_int_eq(b.spent_pusd, 5000);
    ck_assert_int_eq(limits_budget_reserve(&b, T0 + 60000, 1, &reset), 0);
    limits_budget_adjust(&b, T0 + 60000, T0, -4000); /* upstream cheaper than settled */
    ck_assert_int_eq(b.spent_pusd, 1000);
}
END_TEST

START_TEST(test_limits_budget_adjust_ignores_a_finished_period)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t reset;
    limits_budget_reserve(&b, T0, 10, &reset);
    limits_budget_settle(&b, T0, 10, 4);
    ck_assert_int_eq(limits_budget_reserve(&b, T0 + DAY_MS, 0, &reset), 1); /* a new day */
    limits_budget_adjust(&b, T0 + DAY_MS, T0, 5000);
    ck_assert_int_eq(b.spent_pusd, 0);
    /* the new day's spend is moved by a request booked in it */
    limits_budget_adjust(&b, T0 + DAY_MS + 1000, T0 + DAY_MS, 7);
    ck_assert_int_eq(b.spent_pusd, 7);
}
END_TEST

START_TEST(test_limits_budget_adjust_saturates_instead_of_wrapping)
{
    struct limits_budget b = budget(1000, LIMITS_MONTH);
    limits_budget_seed(&b, T0, INT64_MAX - 5);
    limits_budget_adjust(&b, T0, T0, INT64_MAX);
    ck_assert_int_eq(b.spent_pusd, INT64_MAX);
    limits_budget_adjust(&b, T0, T0, INT64_MIN);
    ck_assert_int_eq(b.spent_pusd, 0);
    limits_budget_seed(&b, T0, 3);
    limits_budget_adjust(&b, T0, T0, -10); /* never below zero */
    ck_assert_int_eq(b.spent_pusd, 0);
}
END_TEST

START_TEST(test_limits_budget_in_flight_reservation_carries_into_the_new_period)
{
    /* reserved at 23:59, settles after midnight: its cost lands in the new
     * day, so its reservation counts there until then */
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t midnight = limits_period_next(T0, LIMITS_DAY), reset;
    limits_budget_reserve(&b, midnight - 60000, 400, &reset);
    ck_assert_int_eq(limits_budget_reserve(&b, midnight + 1000, 700, &reset), 0);
    ck_assert_int_eq(limits_budget_reserve(&b, midnight + 1000, 600, &reset), 1);
    limits_budget_settle(&b, midnight + 2000, 400, 300);
    ck_assert_int_eq(b.spent_pusd, 300);
    ck_assert_int_eq(b.reserved_pusd, 600);
}
END_TEST

START_TEST(test_limits_budget_seed_sets_the_spend_of_the_current_period)
{
    struct limits_budget b = budget(1000, LIMITS_MONTH);
    int64_t reset;
    limits_budget_seed(&b, T0, 950);
    ck_assert_int_eq(b.spent_pusd, 950);
    ck_assert_int_eq(b.period_start_ms, limits_period_start(T0, LIMITS_MONTH));
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 51, &reset), 0);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 50, &reset), 1);
}
END_TEST

START_TEST(test_limits_budget_small_clock_step_back_keeps_the_spend)
{
    struct limits_budget b = budget(1000, LIMITS_DAY);
    int64_t midnight = limits_period_next(T0, LIMITS_DAY), reset;
    limits_budget_seed(&b, midnight + 1000, 900);
    ck_assert_int_eq(limits_budget_reserve(&b, midnight - 2000, 200, &reset), 0);
    ck_assert_int_eq(b.spent_pusd, 900);
}
END_TEST

/* Property: many threads, each with several requests in flight, reserve E
 * against L and settle with a cost in [0, E]; whatever the interleaving,
 * spent + reserved never exceeds L, so spent never does. */
enum { THREADS = 50, ROUNDS = 200, EST = 700, LIMIT = 1000000 };

struct shared {
    pthread_mutex_t mu;
    struct limits_budget b;
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
        ok = limits_budget_reserve(&sh->b, T0, EST, &reset);
        sh->admitted += ok;
        held += ok;
        if (sh->b.spent_pusd + sh->b.reserved_pusd > LIMIT)
            sh->violations++;
        pthread_mutex_unlock(&sh->mu);
        /* settle some of what this thread holds, keeping others in flight */
        while (held > 0 && (held > 3 || rand_r(&seed) % 2 == 0)) {
            pthread_mutex_lock(&sh->mu);
            limits_budget_settle(&sh->b, T0, EST, rand_r(&seed) % (EST + 1));
            if (sh->b.spent_pusd > LIMIT)
                sh->violations++;
            pthread_mutex_unlock(&sh->mu);
            held--;
        }
    }
    while (held-- > 0) {
        pthread_mutex_lock(&sh->mu);
        limits_budget_settle(&sh->b, T0, EST, EST);
        pthread_mutex_unlock(&sh->mu);
    }
    return NULL;
}

START_TEST(test_limits_budget_fifty_threads_never_exceed_the_limit)
{
    struct shared sh;
    pthread_t t[THREADS];

    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    sh.b = budget(LIMIT, LIMITS_MONTH);
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

START_TEST(test_limits_budget_one_at_a_time_overshoots_by_at_most_one_estimate)
{
    /* each request reserves E and may really cost up to 2E */
    struct limits_budget b = budget(10000, LIMITS_DAY);
    int64_t reset;
    unsigned seed = 7;
    for (int trial = 0; trial < 100; trial++) {
        b = budget(10000, LIMITS_DAY);
        while (limits_budget_reserve(&b, T0, EST, &reset))
            limits_budget_settle(&b, T0, EST, EST + rand_r(&seed) % (EST + 1));
        ck_assert_int_le(b.spent_pusd, 10000 + EST);
    }
    /* and the bound is reached: the last admission at 10000 - E costs 2E */
    b = budget(10000, LIMITS_DAY);
    limits_budget_seed(&b, T0, 10000 - EST);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, EST, &reset), 1);
    limits_budget_settle(&b, T0, EST, 2 * EST);
    ck_assert_int_eq(b.spent_pusd, 10000 + EST);
    ck_assert_int_eq(limits_budget_reserve(&b, T0, 0, &reset), 0);
}
END_TEST

START_TEST(test_limits_budget_overshoot_is_bounded_by_the_excess_in_flight)
{
    /* Random interleavings of up to 8 requests in flight, each costing up
     * to E more than it reserved: spent ends within L plus the excesses of
     * the requests that were in flight when the last one was admitted. */
    enum { L = 20000, MAXF = 8 };
    unsigned seed = 42;
    for (int trial = 0; trial < 500; trial++) {
        struct limits_budget b = budget(L, LIMITS_DAY);
        int64_t cost[MAXF], reset, bound_excess = 0;
        int in_flight = 0, refused = 0;
        int in_flight_at_last[MAXF], n_last = 0, idx[MAXF];

        for (int i = 0; i < MAXF; i++)
            idx[i] = i;
        while (!refused || in_flight > 0) {
            if (!refused && in_flight < MAXF && rand_r(&seed) % 2 == 0) {
                if (limits_budget_reserve(&b, T0, EST, &reset)) {
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
                limits_budget_settle(&b, T0, EST, cost[slot]);
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

static Suite *limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *win = tcase_create("window"), *per = tcase_create("periods"),
          *bud = tcase_create("budget");

    tcase_add_test(win, test_limits_window_admits_up_to_the_limit_then_refuses);
    tcase_add_test(win, test_limits_window_retry_after_is_time_until_the_oldest_expires);
    tcase_add_test(win, test_limits_window_retry_after_waits_until_enough_has_expired);
    tcase_add_test(win, test_limits_window_refusal_counts_nothing);
    tcase_add_test(win, test_limits_window_counts_expire_after_sixty_seconds);
    tcase_add_test(win, test_limits_window_long_idle_clears_everything);
    tcase_add_test(win, test_limits_window_unlimited_admits_and_still_counts);
    tcase_add_test(win, test_limits_window_empty_window_admits_an_amount_over_the_limit);
    tcase_add_test(win, test_limits_window_add_counts_without_checking_and_corrects);
    tcase_add_test(win, test_limits_window_clock_step_back_books_into_the_newest_second);
    tcase_add_test(win, test_limits_window_clock_step_back_beyond_the_window_restarts_it);

    tcase_add_test(per, test_limits_period_day_is_utc_midnight_to_midnight);
    tcase_add_test(per, test_limits_period_boundary_instant_belongs_to_the_new_period);
    tcase_add_test(per, test_limits_period_month_of_leap_february);
    tcase_add_test(per, test_limits_period_month_of_common_february);
    tcase_add_test(per, test_limits_period_december_rolls_into_january);
    tcase_add_test(per, test_limits_period_agrees_with_timegm_from_1970_to_2400);

    tcase_add_test(bud, test_limits_budget_reserves_within_the_limit);
    tcase_add_test(bud, test_limits_budget_refuses_over_the_limit_until_the_next_day);
    tcase_add_test(bud, test_limits_budget_monthly_refusal_resets_on_the_first);
    tcase_add_test(bud, test_limits_budget_settle_swaps_the_estimate_for_the_actual_cost);
    tcase_add_test(bud, test_limits_budget_settle_huge_cost_saturates_and_still_refuses);
    tcase_add_test(bud, test_limits_budget_reserve_huge_estimates_do_not_wrap);
    tcase_add_test(bud, test_limits_budget_settle_with_zero_undoes_a_reservation);
    tcase_add_test(bud, test_limits_budget_reserved_never_goes_below_zero);
    tcase_add_test(bud, test_limits_budget_without_limit_admits_and_counts);
    tcase_add_test(bud, test_limits_budget_new_day_starts_from_zero_spent);
    tcase_add_test(bud, test_limits_budget_in_flight_reservation_carries_into_the_new_period);
    tcase_add_test(bud, test_limits_budget_adjust_moves_spent_in_the_booked_period);
    tcase_add_test(bud, test_limits_budget_adjust_ignores_a_finished_period);
    tcase_add_test(bud, test_limits_budget_adjust_saturates_instead_of_wrapping);
    tcase_add_test(bud, test_limits_budget_seed_sets_the_spend_of_the_current_period);
    tcase_add_test(bud, test_limits_budget_small_clock_step_back_keeps_the_spend);
    tcase_add_test(bud, test_limits_budget_fifty_threads_never_exceed_the_limit);
    tcase_add_test(bud, test_limits_budget_one_at_a_time_overshoots_by_at_most_one_estimate);
    tcase_add_test(bud, test_limits_budget_overshoot_is_bounded_by_the_excess_in_flight);

    suite_add_tcase(s, win);
    suite_add_tcase(s, per);
    suite_add_tcase(s, bud);
    return s;
}

CHECK_MAIN(limits_suite)
