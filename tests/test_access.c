/* Unit tests for access.c's pure part: the model patterns of a client's
 * rules.  (The counters behind admission are exercised end to end.) */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "access.h"
#include "util.h"

/* --- admission counters ------------------------------------------------ */

/* The per-client state array grows as new clients arrive (16, 32, ...):
 * a global state found before the growth must not be used after it (a
 * use-after-free that lost the global counts). */
START_TEST(test_access_admit_global_counts_survive_state_growth)
{
    enum { N = 40 };
    struct orp_config cfg;
    struct orp_client clients[N];
    struct access_grant g[N];
    struct access_denial d;
    char names[N][16], *json;

    memset(&cfg, 0, sizeof cfg);
    memset(clients, 0, sizeof clients);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "growth-%d", i);
        clients[i].name = names[i];
    }
    cfg.clients = clients;
    cfg.n_clients = N;
    cfg.auth_mode = "keys";
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(access_admit(&cfg, i, 10, 0, &g[i], &d), 0);
    json = access_key_json(&cfg, -1);
    ck_assert_ptr_nonnull(strstr(json, "\"in_progress\":40"));
    free(json);
    for (int i = 0; i < N; i++)
        access_release(&cfg, &g[i], 10, 0);
    json = access_key_json(&cfg, -1);
    ck_assert_ptr_nonnull(strstr(json, "\"in_progress\":0"));
    free(json);
}
END_TEST

/* The alerts thread's copy: all traffic first, then every client, with the
 * config's limits and the spend settled so far this day and month. */
START_TEST(test_access_budget_snapshot_copies_limits_and_spend)
{
    struct orp_config cfg;
    struct orp_client clients[2];
    struct access_grant g;
    struct access_denial d;
    struct access_budget *b;
    size_t n;

    memset(&cfg, 0, sizeof cfg);
    memset(clients, 0, sizeof clients);
    clients[0].name = "snap-a";
    clients[0].limits.budget_day_pusd = 1000;
    clients[1].name = "snap-b";
    clients[1].limits.budget_month_pusd = 5000;
    cfg.clients = clients;
    cfg.n_clients = 2;
    cfg.limits.budget_month_pusd = 9000;
    cfg.auth_mode = "keys";
    ck_assert_int_eq(access_admit(&cfg, 0, 1, 100, &g, &d), 0);
    access_release(&cfg, &g, 1, 600); /* reserved 100, cost 600 */
    b = access_budget_snapshot(&cfg, util_wall_ms(), &n);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(b[0].name, "");
    ck_assert_int_eq(b[0].month_limit_pusd, 9000);
    ck_assert_int_eq(b[0].day_limit_pusd, 0);
    ck_assert_int_ge(b[0].month_spent_pusd, 600); /* all traffic: other tests' spend too */
    ck_assert_str_eq(b[1].name, "snap-a");
    ck_assert_int_eq(b[1].day_limit_pusd, 1000);
    ck_assert_int_eq(b[1].day_spent_pusd, 600);
    ck_assert_int_eq(b[1].month_spent_pusd, 600);
    ck_assert_str_eq(b[2].name, "snap-b");
    ck_assert_int_eq(b[2].month_limit_pusd, 5000);
    ck_assert_int_eq(b[2].day_spent_pusd, 0);
    free(b);
    /* 40 days on: a new day and a new month, both start from 0 again */
    b = access_budget_snapshot(&cfg, util_wall_ms() + 86400000LL * 40, &n);
    ck_assert_int_eq(b[1].day_spent_pusd, 0);
    ck_assert_int_eq(b[1].month_spent_pusd, 0);
    free(b);
}
END_TEST

/* --- model patterns --------------------------------------------------- */

static int allowed(const char *pattern, const char *model)
{
    const char *p[1] = {pattern};
    return access_model_allowed(p, 1, model);
}

START_TEST(test_access_model_no_patterns_allows_everything)
{
    ck_assert_int_eq(access_model_allowed(NULL, 0, "any/thing"), 1);
    ck_assert_int_eq(access_model_allowed(NULL, 0, NULL), 1);
}
END_TEST

START_TEST(test_access_model_provider_prefix_pattern)
{
    ck_assert_int_eq(allowed("openai/*", "openai/gpt-4o"), 1);
    ck_assert_int_eq(allowed("openai/*", "openai/"), 1);
    ck_assert_int_eq(allowed("openai/*", "xopenai/gpt-4o"), 0);
    ck_assert_int_eq(allowed("openai/*", "openai"), 0);
}
END_TEST

START_TEST(test_access_model_suffix_pattern)
{
    ck_assert_int_eq(allowed("*:free", "meta-llama/llama-3-8b:free"), 1);
    ck_assert_int_eq(allowed("*:free", "meta-llama/llama-3-8b:freeish"), 0);
    ck_assert_int_eq(allowed("*:free", "meta-llama/llama-3-8b"), 0);
}
END_TEST

START_TEST(test_access_model_star_in_the_middle_and_several_stars)
{
    ck_assert_int_eq(allowed("anthropic/claude-3.5-*", "anthropic/claude-3.5-sonnet"), 1);
    ck_assert_int_eq(allowed("anthropic/claude-3.5-*", "anthropic/claude-3-opus"), 0);
    ck_assert_int_eq(allowed("a*b*c", "aXbYbZc"), 1); /* needs a backtrack */
    ck_assert_int_eq(allowed("a*b*c", "aXbYbZ"), 0);
    ck_assert_int_eq(allowed("a**c", "ac"), 1);
}
END_TEST

START_TEST(test_access_model_star_matches_slash_colon_and_nothing)
{
    ck_assert_int_eq(allowed("*", "a/b:c"), 1);
    ck_assert_int_eq(allowed("*", ""), 1);
    ck_assert_int_eq(allowed("x*y", "x/:y"), 1);
    ck_assert_int_eq(allowed("x*y", "xy"), 1);
}
END_TEST

START_TEST(test_access_model_literal_whole_and_case_sensitive)
{
    ck_assert_int_eq(allowed("openai/gpt-4o", "openai/gpt-4o"), 1);
    ck_assert_int_eq(allowed("openai/gpt-4o", "openai/gpt-4o-mini"), 0);
    ck_assert_int_eq(allowed("openai/gpt-4o", "OpenAI/gpt-4o"), 0);
    ck_assert_int_eq(allowed("openai/?pt-4o", "openai/gpt-4o"), 0); /* '?' is literal */
}
END_TEST

START_TEST(test_access_model_any_pattern_of_several)
{
    const char *p[] = {"openai/*", "*:free"};
    ck_assert_int_eq(access_model_allowed(p, 2, "x/y:free"), 1);
    ck_assert_int_eq(access_model_allowed(p, 2, "openai/o1"), 1);
    ck_assert_int_eq(access_model_allowed(p, 2, "x/y"), 0);
}
END_TEST

START_TEST(test_access_model_missing_model_refused_when_patterns_set)
{
    ck_assert_int_eq(allowed("*", NULL), 0);
}
END_TEST

static Suite *access_suite(void)
{
    Suite *s = suite_create("access");
    TCase *pat = tcase_create("patterns");

    tcase_add_test(pat, test_access_admit_global_counts_survive_state_growth);
    tcase_add_test(pat, test_access_budget_snapshot_copies_limits_and_spend);
    tcase_add_test(pat, test_access_model_no_patterns_allows_everything);
    tcase_add_test(pat, test_access_model_provider_prefix_pattern);
    tcase_add_test(pat, test_access_model_suffix_pattern);
    tcase_add_test(pat, test_access_model_star_in_the_middle_and_several_stars);
    tcase_add_test(pat, test_access_model_star_matches_slash_colon_and_nothing);
    tcase_add_test(pat, test_access_model_literal_whole_and_case_sensitive);
    tcase_add_test(pat, test_access_model_any_pattern_of_several);
    tcase_add_test(pat, test_access_model_missing_model_refused_when_patterns_set);

    suite_add_tcase(s, pat);
    return s;
}

CHECK_MAIN(access_suite)
