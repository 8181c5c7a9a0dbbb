/* Unit tests for policy.c: model patterns, the rate window, budgets with
 * reservations and UTC periods, and request body edits. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "policy.h"

#define T0 1764000000000LL /* 2025-11-24T16:00:00Z */

START_TEST(test_policy_model_patterns)
{
    const char *p[] = {"openai/*", "*:free", "anthropic/claude-3.5-*"};
    ck_assert_int_eq(policy_model_allowed(p, 0, "any/thing"), 1);
    ck_assert_int_eq(policy_model_allowed(p, 3, "openai/gpt-4o"), 1);
    ck_assert_int_eq(policy_model_allowed(p, 3, "meta/llama-3:free"), 1);
    ck_assert_int_eq(policy_model_allowed(p, 3, "anthropic/claude-3.5-haiku"), 1);
    ck_assert_int_eq(policy_model_allowed(p, 3, "anthropic/claude-3-opus"), 0);
    ck_assert_int_eq(policy_model_allowed(p, 3, "xopenai/gpt"), 0);
    ck_assert_int_eq(policy_model_allowed(p, 3, "meta/llama:freeish"), 0);
    ck_assert_int_eq(policy_model_allowed(p, 3, NULL), 0);
    {
        const char *star[] = {"*"}, *mid[] = {"a*b*c"};
        ck_assert_int_eq(policy_model_allowed(star, 1, ""), 1);
        ck_assert_int_eq(policy_model_allowed(mid, 1, "aXbYbZc"), 1);
        ck_assert_int_eq(policy_model_allowed(mid, 1, "aXbYbZ"), 0);
    }
}
END_TEST

START_TEST(test_policy_window_limits_and_retry_after)
{
    struct policy_window w;
    long long ra = 0;
    policy_window_init(&w);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(policy_window_check(&w, T0 + i * 1000, 3, 1, &ra), 1);
    ck_assert_int_eq(policy_window_check(&w, T0 + 10000, 3, 1, &ra), 0);
    /* the first one (at T0) leaves the window at T0 + 60 s: 50 s from now */
    ck_assert_int_eq(ra, 50);
    ck_assert_int_eq(policy_window_check(&w, T0 + 60000, 3, 1, &ra), 1);
    ck_assert_int_eq(policy_window_sum(&w, T0 + 200000), 0);
}
END_TEST

START_TEST(test_policy_window_unlimited_and_big_first)
{
    struct policy_window w;
    long long ra;
    policy_window_init(&w);
    ck_assert_int_eq(policy_window_check(&w, T0, 0, 1000000, &ra), 1);
    policy_window_init(&w);
    ck_assert_int_eq(policy_window_check(&w, T0, 100, 500, &ra), 1); /* empty window admits */
    ck_assert_int_eq(policy_window_check(&w, T0, 100, 1, &ra), 0);
    policy_window_add(&w, T0, -500);
    ck_assert_int_eq(policy_window_sum(&w, T0), 0);
}
END_TEST

START_TEST(test_policy_periods_utc)
{
    /* 2024-02-29T13:00Z: day starts 2024-02-29, month 2024-02-01; next month 2024-03-01 */
    int64_t t = 1709211600000LL;
    ck_assert_int_eq(policy_period_start(t, POLICY_DAY), 1709164800000LL);
    ck_assert_int_eq(policy_period_next(t, POLICY_DAY), 1709251200000LL);
    ck_assert_int_eq(policy_period_start(t, POLICY_MONTH), 1706745600000LL);
    ck_assert_int_eq(policy_period_next(t, POLICY_MONTH), 1709251200000LL);
    /* December rolls into January */
    ck_assert_int_eq(policy_period_next(1734998400000LL, POLICY_MONTH), 1735689600000LL);
}
END_TEST

START_TEST(test_policy_budget_reserve_and_settle)
{
    struct policy_budget b = {.limit_pusd = 1000, .period = POLICY_DAY};
    int64_t reset = 0;
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 600, &reset), 1);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 600, &reset), 0); /* 1200 > 1000 */
    ck_assert_int_eq(reset, policy_period_next(T0, POLICY_DAY));
    policy_budget_settle(&b, T0, 600, 100);
    ck_assert_int_eq(b.spent_pusd, 100);
    ck_assert_int_eq(b.reserved_pusd, 0);
    ck_assert_int_eq(policy_budget_reserve(&b, T0, 600, &reset), 1);
    /* the next day starts from zero */
    ck_assert_int_eq(policy_budget_reserve(&b, T0 + 86400000LL, 1000, &reset), 1);
    ck_assert_int_eq(b.spent_pusd, 0);
}
END_TEST

START_TEST(test_policy_budget_concurrent_never_overshoots)
{
    /* 50 requests arrive before any finishes; each reserves E and really
     * costs up to E: what is admitted never exceeds the limit. */
    struct policy_budget b = {.limit_pusd = 10000, .period = POLICY_MONTH};
    int64_t reset, spent = 0;
    int admitted = 0;
    policy_budget_seed(&b, T0, 1234);
    for (int i = 0; i < 50; i++)
        admitted += policy_budget_reserve(&b, T0, 700, &reset);
    ck_assert_int_eq(admitted, (10000 - 1234) / 700);
    for (int i = 0; i < admitted; i++)
        policy_budget_settle(&b, T0, 700, 700), spent += 700;
    ck_assert(b.spent_pusd <= b.limit_pusd);
    ck_assert_int_eq(b.spent_pusd, 1234 + spent);
}
END_TEST

static cJSON *apply(const char *body, const struct policy_edits *e, int *changed)
{
    char err[64];
    char *out = policy_apply_body(body, strlen(body), e, err, sizeof err, changed);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    free(out);
    return j;
}

START_TEST(test_policy_no_edit_keeps_original)
{
    struct policy_edits e;
    int changed = 1;
    memset(&e, 0, sizeof e);
    ck_assert_ptr_null(apply("{\"model\":\"x\",\"temperature\":null}", &e, &changed));
    ck_assert_int_eq(changed, 0);
}
END_TEST

START_TEST(test_policy_defaults_only_where_absent)
{
    struct policy_edits e;
    int changed;
    cJSON *j;
    memset(&e, 0, sizeof e);
    e.has_temperature = 1, e.temperature = 0.3;
    e.has_max_tokens = 1, e.max_tokens = 64;
    e.default_model = "d/m";
    j = apply("{\"temperature\":null,\"x\":{\"y\":[1,\"\\u00e9\"]}}", &e, &changed);
    ck_assert_int_eq(changed, 1);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "temperature"))); /* present null stays */
    ck_assert_int_eq(cJSON_GetObjectItem(j, "max_tokens")->valueint, 64);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "model")->valuestring, "d/m");
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "x"), "y"), 1)->valuestring, "\xc3\xa9");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_aliases_in_model_and_models)
{
    const char *from[] = {"gpt-4o"}, *to[] = {"openai/gpt-4o"};
    struct policy_edits e;
    int changed;
    cJSON *j;
    memset(&e, 0, sizeof e);
    e.alias_from = from, e.alias_to = to, e.n_aliases = 1;
    j = apply("{\"model\":\"gpt-4o\",\"models\":[\"a/b\",\"gpt-4o\"]}", &e, &changed);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "model")->valuestring, "openai/gpt-4o");
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "models"), 1)->valuestring, "openai/gpt-4o");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_policy_system_prompt_only_if_none)
{
    struct policy_edits e;
    int changed;
    cJSON *j;
    memset(&e, 0, sizeof e);
    e.system_prompt = "S";
    j = apply("{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}]}", &e, &changed);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "messages")), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0), "content")->valuestring, "S");
    cJSON_Delete(j);
    ck_assert_ptr_null(apply("{\"messages\":[{\"role\":\"system\",\"content\":\"mine\"}]}", &e, &changed));
    ck_assert_ptr_null(apply("{\"prompt\":\"legacy\"}", &e, &changed));
}
END_TEST

START_TEST(test_policy_not_an_object)
{
    struct policy_edits e;
    char err[64] = "";
    int changed;
    memset(&e, 0, sizeof e);
    ck_assert_ptr_null(policy_apply_body("[1]", 3, &e, err, sizeof err, &changed));
    ck_assert_str_eq(err, "request body must be a JSON object");
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("policy");
    tcase_add_test(tc, test_policy_model_patterns);
    tcase_add_test(tc, test_policy_window_limits_and_retry_after);
    tcase_add_test(tc, test_policy_window_unlimited_and_big_first);
    tcase_add_test(tc, test_policy_periods_utc);
    tcase_add_test(tc, test_policy_budget_reserve_and_settle);
    tcase_add_test(tc, test_policy_budget_concurrent_never_overshoots);
    tcase_add_test(tc, test_policy_no_edit_keeps_original);
    tcase_add_test(tc, test_policy_defaults_only_where_absent);
    tcase_add_test(tc, test_policy_aliases_in_model_and_models);
    tcase_add_test(tc, test_policy_system_prompt_only_if_none);
    tcase_add_test(tc, test_policy_not_an_object);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(policy_suite)
