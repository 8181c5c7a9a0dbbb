/* Unit tests for pricing.c: exact decimals, costs, formatting, price tables,
 * their cache file, and the thread-safe current table. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "pricing.h"

#define ATTO_PER_USD 1000000000000000000LL

static int64_t atto(const char *s)
{
    int64_t v = -42;
    ck_assert_msg(pricing_parse_decimal(s, &v) == 0, "\"%s\" should parse", s);
    return v;
}

static struct price_table *table(const char *json)
{
    char err[128] = "";
    struct price_table *t = pricing_table_from_models_json(json, strlen(json), err, sizeof err);
    ck_assert_msg(t != NULL, "table: %s", err);
    return t;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s;
    long n;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    s = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

/* ---- parsing ------------------------------------------------------------ */

START_TEST(test_pricing_parse_small_price_exactly)
{
    ck_assert_int_eq(atto("0.0000003"), 300000000000LL);
    ck_assert_int_eq(atto("0.000000015"), 15000000000LL);
    ck_assert_int_eq(atto("0.0000000001"), 100000000LL);
}
END_TEST

START_TEST(test_pricing_parse_integers_and_plain_decimals)
{
    ck_assert_int_eq(atto("0"), 0);
    ck_assert_int_eq(atto("0.0"), 0);
    ck_assert_int_eq(atto("1"), ATTO_PER_USD);
    ck_assert_int_eq(atto("2.5"), 2 * ATTO_PER_USD + ATTO_PER_USD / 2);
    ck_assert_int_eq(atto("007"), 7 * ATTO_PER_USD);
    ck_assert_int_eq(atto("9.223372036854775807"), INT64_MAX);
}
END_TEST

START_TEST(test_pricing_parse_exponent_exactly)
{
    ck_assert_int_eq(atto("1e-7"), 100000000000LL);
    ck_assert_int_eq(atto("1.5E-7"), 150000000000LL);
    ck_assert_int_eq(atto("3e+0"), 3 * ATTO_PER_USD);
    ck_assert_int_eq(atto("0.03e2"), 3 * ATTO_PER_USD);
    ck_assert_int_eq(atto("1e-18"), 1);
    ck_assert_int_eq(atto("0e999"), 0);
    ck_assert_int_eq(atto("1e-999999999999"), 0);
}
END_TEST

START_TEST(test_pricing_parse_rounds_half_up_past_18_decimals)
{
    ck_assert_int_eq(atto("0.00000000000000000049"), 0);
    ck_assert_int_eq(atto("0.0000000000000000004999999"), 0);
    ck_assert_int_eq(atto("0.0000000000000000005"), 1);
    ck_assert_int_eq(atto("0.00000000000000000149"), 1);
    ck_assert_int_eq(atto("0.0000000000000000015"), 2);
    ck_assert_int_eq(atto("5e-19"), 1);
}
END_TEST

START_TEST(test_pricing_parse_rejects_prices_beyond_int64_attodollars)
{
    /* int64 atto holds up to 9.223372036854775807 USD per token */
    int64_t v = -42;
    ck_assert_int_eq(pricing_parse_decimal("12.5", &v), -1);
    ck_assert_int_eq(pricing_parse_decimal("9.223372036854775808", &v), -1);
    ck_assert_int_eq(pricing_parse_decimal("9.2233720368547758075", &v), -1); /* rounds over */
    ck_assert_int_eq(pricing_parse_decimal("1e19", &v), -1);
    ck_assert_int_eq(v, -42);
}
END_TEST

START_TEST(test_pricing_parse_rejects_invalid_forms)
{
    static const char *bad[] = {"",    "-1",   "-0",  "+1",  "abc", "1.2.3", "1e999", "1e",
                                "1e+", ".5",   "5.",  " 1",  "1 ",  "0x10",  "inf",   "nan",
                                "1,5", "1e-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = -42;
        ck_assert_msg(pricing_parse_decimal(bad[i], &v) == -1, "\"%s\" accepted", bad[i]);
        ck_assert_msg(v == -42, "\"%s\" wrote the output", bad[i]);
    }
    ck_assert_int_eq(pricing_parse_decimal(NULL, &(int64_t){0}), -1);
}
END_TEST

/* ---- cost --------------------------------------------------------------- */

START_TEST(test_pricing_cost_awkward_price_is_exact)
{
    struct price p = {.prompt = atto("0.0000003"), .completion = atto("0.0000003"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION};
    char b[PRICING_USD_BUFSZ];
    int64_t c = pricing_cost_pusd(&p, 1234567, 0, 0, 0);

    ck_assert_int_eq(c, 370370100000LL);
    ck_assert_str_eq(pricing_format_usd(c, b, sizeof b), "0.3703701");
}
END_TEST

START_TEST(test_pricing_cost_cached_tokens_use_cache_read_price)
{
    /* gpt-4o-mini: prompt 0.15 $/M, cached 0.075 $/M, completion 0.6 $/M.
     * 1000 prompt of which 400 cached, 100 completion:
     * 600*0.15 + 400*0.075 + 100*0.6 = 90 + 30 + 60 = 180 micro-USD. */
    struct price p = {.prompt = atto("0.00000015"), .completion = atto("0.0000006"),
                      .cache_read = atto("0.000000075"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION | PRICE_CACHE_READ};
    ck_assert_int_eq(pricing_cost_pusd(&p, 1000, 100, 400, 0), 180000000LL);
}
END_TEST

START_TEST(test_pricing_cost_cached_tokens_without_cache_price_pay_prompt_price)
{
    struct price p = {.prompt = atto("0.00000015"), .completion = atto("0.0000006"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION};
    ck_assert_int_eq(pricing_cost_pusd(&p, 1000, 100, 400, 0), 210000000LL);
    /* more cached than prompt tokens: capped, never a negative term */
    ck_assert_int_eq(pricing_cost_pusd(&p, 1000, 100, 5000, 0), 210000000LL);
}
END_TEST

START_TEST(test_pricing_cost_adds_request_price_once)
{
    struct price p = {.prompt = atto("0.0000003"), .completion = atto("0.0000003"),
                      .request = atto("0.0001"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION | PRICE_REQUEST};
    ck_assert_int_eq(pricing_cost_pusd(&p, 1234567, 0, 0, 0), 370470100000LL);
    ck_assert_int_eq(pricing_cost_pusd(&p, 0, 0, 0, 0), 100000000LL);
}
END_TEST

START_TEST(test_pricing_cost_does_not_add_reasoning_tokens_again)
{
    struct price p = {.prompt = atto("0.000001"), .completion = atto("0.000002"),
                      .reasoning = atto("0.000002"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION | PRICE_REASONING};
    /* 50 of the 100 completion tokens were reasoning: still 100 * 2 micro-USD */
    ck_assert_int_eq(pricing_cost_pusd(&p, 0, 100, 0, 50), 200000000LL);
}
END_TEST

START_TEST(test_pricing_cost_rounds_half_up_at_the_picodollar)
{
    struct price p = {.prompt = atto("0.0000000000005"), .completion = atto("0.0000000000004999"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION};
    ck_assert_int_eq(pricing_cost_pusd(&p, 1, 0, 0, 0), 1);  /* 0.5 pusd -> 1 */
    ck_assert_int_eq(pricing_cost_pusd(&p, 0, 1, 0, 0), 0);  /* 0.4999 pusd -> 0 */
    ck_assert_int_eq(pricing_cost_pusd(&p, 3, 0, 0, 0), 2);  /* 1.5 -> 2 */
    ck_assert_int_eq(pricing_cost_pusd(&p, 0, 2, 0, 0), 1);  /* 0.9998: rounded once, on the total */
}
END_TEST

START_TEST(test_pricing_cost_clamps_negative_counts_to_zero)
{
    struct price p = {.prompt = atto("0.000001"), .completion = atto("0.000002"),
                      .has = PRICE_PROMPT | PRICE_COMPLETION};
    ck_assert_int_eq(pricing_cost_pusd(&p, -5, -7, -9, -1), 0);
    ck_assert_int_eq(pricing_cost_pusd(&p, 10, -7, -9, 0), 10000000LL);
}
END_TEST

START_TEST(test_pricing_cost_saturates_on_absurd_inputs)
{
    struct price p = {.prompt = INT64_MAX, .completion = INT64_MAX, .request = INT64_MAX,
                      .cache_read = INT64_MAX,
                      .has = PRICE_PROMPT | PRICE_COMPLETION | PRICE_REQUEST | PRICE_CACHE_READ};
    /* Saturates at the per-request ceiling ($1,000,000), not INT64_MAX:
     * budgets add these up. */
    ck_assert_int_eq(pricing_cost_pusd(&p, INT64_MAX, INT64_MAX, INT64_MAX / 2, 0),
                     PRICING_MAX_COST_PUSD);
    ck_assert_int_eq(pricing_cost_pusd(&p, INT64_MAX, INT64_MAX, 0, INT64_MAX), PRICING_MAX_COST_PUSD);
    /* the edge itself stays exact: 1 USD/token * 1e6 tokens; one more token is clamped */
    p = (struct price){.prompt = ATTO_PER_USD, .has = PRICE_PROMPT | PRICE_COMPLETION};
    ck_assert_int_eq(pricing_cost_pusd(&p, 1000000, 0, 0, 0), 1000000LL * 1000000000000LL);
    ck_assert_int_eq(pricing_cost_pusd(&p, 1000001, 0, 0, 0), PRICING_MAX_COST_PUSD);
}
END_TEST

/* ---- formatting and usage.cost -------------------------------------------- */

START_TEST(test_pricing_format_usd_trims_to_two_decimals)
{
    static const struct {
        int64_t pusd;
        const char *s;
    } cases[] = {
        {0, "0.00"},
        {123000000LL, "0.000123"},
        {1500000000000LL, "1.50"},
        {1, "0.000000000001"},
        {370370100000LL, "0.3703701"},
        {12340000000000LL, "12.34"},
        {-2250000000000LL, "-2.25"},
        {-1, "-0.000000000001"},
        {INT64_MAX, "9223372.036854775807"},
        {INT64_MIN, "-9223372.036854775808"},
    };
    char b[PRICING_USD_BUFSZ];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_str_eq(pricing_format_usd(cases[i].pusd, b, sizeof b), cases[i].s);
}
END_TEST

START_TEST(test_pricing_format_usd_truncates_to_buffer)
{
    char b[5];
    ck_assert_str_eq(pricing_format_usd(1500000000000LL, b, sizeof b), "1.50");
    ck_assert_str_eq(pricing_format_usd(12340000000000LL, b, sizeof b), "12.3");
}
END_TEST

START_TEST(test_pricing_usd_to_pusd_uses_the_decimal_the_json_gave)
{
    ck_assert_int_eq(pricing_usd_to_pusd(0.000123), 123000000LL);
    ck_assert_int_eq(pricing_usd_to_pusd(0.0042), 4200000000LL);
    ck_assert_int_eq(pricing_usd_to_pusd(0.1 + 0.2), 300000000000LL); /* 0.30000000000000004 */
    ck_assert_int_eq(pricing_usd_to_pusd(0.3), 300000000000LL);
    ck_assert_int_eq(pricing_usd_to_pusd(1.005), 1005000000000LL);
    ck_assert_int_eq(pricing_usd_to_pusd(1e-12), 1);
    ck_assert_int_eq(pricing_usd_to_pusd(5e-13), 1); /* half up */
    ck_assert_int_eq(pricing_usd_to_pusd(4.9e-13), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(12345.678901234), 12345678901234000LL);
}
END_TEST

START_TEST(test_pricing_usd_to_pusd_rejects_nonfinite_and_negative)
{
    ck_assert_int_eq(pricing_usd_to_pusd(NAN), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(INFINITY), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(-INFINITY), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(-0.5), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(-0.0), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(0.0), 0);
    ck_assert_int_eq(pricing_usd_to_pusd(1e300), PRICING_MAX_COST_PUSD);
}
END_TEST

/* Issue 11 item 14: a usage.cost of about $9.2M or more became INT64_MAX,
 * and the budget's spent += cost then wrapped. */
START_TEST(test_pricing_usd_to_pusd_huge_costs_clamped_to_ceiling)
{
    ck_assert_int_eq(PRICING_MAX_COST_PUSD, (int64_t)PRICING_MAX_COST_USD * 1000000000000LL);
    ck_assert_int_eq(pricing_usd_to_pusd(1e7), PRICING_MAX_COST_PUSD);
    ck_assert_int_eq(pricing_usd_to_pusd(9223372.036854775807), PRICING_MAX_COST_PUSD);
    ck_assert_int_eq(pricing_usd_to_pusd(1e6), PRICING_MAX_COST_PUSD);
    ck_assert_int_eq(pricing_usd_to_pusd(1000000.5), PRICING_MAX_COST_PUSD);
    ck_assert_int_eq(pricing_usd_to_pusd(999999.5), 999999500000000000LL); /* below: exact */
    ck_assert_int_eq(pricing_usd_to_pusd(12345.678901), 12345678901000000LL);
}
END_TEST

START_TEST(test_pricing_add_pusd_saturates)
{
    ck_assert_int_eq(pricing_add_pusd(1, 2), 3);
    ck_assert_int_eq(pricing_add_pusd(INT64_MAX, 1), INT64_MAX);
    ck_assert_int_eq(pricing_add_pusd(INT64_MAX - 5, PRICING_MAX_COST_PUSD), INT64_MAX);
    ck_assert_int_eq(pricing_add_pusd(INT64_MIN, -1), INT64_MIN);
    ck_assert_int_eq(pricing_add_pusd(INT64_MAX, -1), INT64_MAX - 1);
    ck_assert_int_eq(pricing_add_pusd(INT64_MIN, INT64_MAX), -1);
}
END_TEST

/* ---- tables --------------------------------------------------------------- */

static const char models_json[] =
    "{\"data\":["
    "{\"id\":\"openai/gpt-4o-mini\",\"context_length\":128000,\"pricing\":{"
    "\"prompt\":\"0.00000015\",\"completion\":\"0.0000006\",\"request\":\"0\","
    "\"input_cache_read\":\"0.000000075\",\"internal_reasoning\":\"0\",\"image\":\"0.000217\"}},"
    "{\"id\":\"openai/gpt-4o\",\"pricing\":{\"prompt\":\"0.0000025\",\"completion\":\"0.00001\","
    "\"input_cache_write\":\"0.000003125\"}},"
    "{\"id\":\"openrouter/auto\",\"pricing\":{\"prompt\":\"-1\",\"completion\":\"-1\"}},"
    "{\"id\":\"x/half\",\"pricing\":{\"prompt\":\"junk\",\"completion\":\"0.000002\","
    "\"request\":\"0.01\"}},"
    "{\"id\":\"test/awkward\",\"pricing\":{\"prompt\":\"0.0000003\",\"completion\":\"0.0000003\","
    "\"request\":\"0.0001\"}},"
    "{\"pricing\":{\"prompt\":\"1\",\"completion\":\"1\"}},"
    "{\"id\":42,\"pricing\":{\"prompt\":\"1\",\"completion\":\"1\"}},"
    "{\"id\":\"openai/gpt-4o-mini\",\"pricing\":{\"prompt\":\"9\",\"completion\":\"9\"}}"
    "]}";

START_TEST(test_pricing_table_lookup_hit)
{
    struct price_table *t = table(models_json);
    struct price p;

    ck_assert_int_eq(pricing_table_size(t), 5); /* no-id entries and the duplicate dropped */
    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-4o-mini", &p), 0);
    ck_assert_int_eq(p.prompt, 150000000000LL);
    ck_assert_int_eq(p.completion, 600000000000LL);
    ck_assert_int_eq(p.request, 0);
    ck_assert_int_eq(p.cache_read, 75000000000LL);
    ck_assert_int_eq(p.reasoning, 0);
    ck_assert_int_eq(p.cache_write, 0);
    ck_assert_uint_eq(p.has, PRICE_PROMPT | PRICE_COMPLETION | PRICE_REQUEST | PRICE_CACHE_READ
                                 | PRICE_REASONING);
    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-4o", &p), 0);
    ck_assert_int_eq(p.cache_write, 3125000000000LL);
    ck_assert_int_eq(pricing_cost_pusd(&p, 1000, 100, 0, 0), 3500000000LL);
    pricing_table_free(t);
}
END_TEST

START_TEST(test_pricing_table_lookup_miss)
{
    struct price_table *t = table(models_json);
    struct price p;

    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-4", &p), -1);      /* a prefix of ids */
    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-4o-mini-x", &p), -1);
    ck_assert_int_eq(pricing_lookup(t, "", &p), -1);
    ck_assert_int_eq(pricing_lookup(t, ":nitro", &p), -1);
    ck_assert_int_eq(pricing_lookup(NULL, "openai/gpt-4o", &p), -1);
    pricing_table_free(t);
}
END_TEST

START_TEST(test_pricing_table_lookup_variant_falls_back_to_base_id)
{
    struct price_table *t = table(models_json);
    struct price p;

    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-4o:nitro", &p), 0);
    ck_assert_int_eq(p.prompt, 2500000000000LL);
    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-4o-mini:floor", &p), 0);
    ck_assert_int_eq(p.prompt, 150000000000LL);
    ck_assert_int_eq(pricing_lookup(t, "openai/gpt-5:nitro", &p), -1);
    pricing_table_free(t);
}
END_TEST

START_TEST(test_pricing_table_variant_exact_entry_wins)
{
    struct price_table *t = table("{\"data\":["
                                  "{\"id\":\"m/a\",\"pricing\":{\"prompt\":\"0.000001\","
                                  "\"completion\":\"0.000001\"}},"
                                  "{\"id\":\"m/a:free\",\"pricing\":{\"prompt\":\"0\","
                                  "\"completion\":\"0\"}}]}");
    struct price p;

    ck_assert_int_eq(pricing_lookup(t, "m/a:free", &p), 0);
    ck_assert_int_eq(p.prompt, 0);
    pricing_table_free(t);
}
END_TEST

START_TEST(test_pricing_table_variable_price_entry_is_not_usable)
{
    struct price_table *t = table(models_json);
    struct price p;

    /* "-1" is variable pricing: kept in the table, but no cost can be
     * computed from it, and the variant fallback does not hide that. */
    ck_assert_int_eq(pricing_lookup(t, "openrouter/auto", &p), -1);
    ck_assert_int_eq(pricing_lookup(t, "openrouter/auto:nitro", &p), -1);
    /* a malformed prompt price: the other fields parse, still not usable */
    ck_assert_int_eq(pricing_lookup(t, "x/half", &p), -1);
    pricing_table_free(t);
}
END_TEST

START_TEST(test_pricing_table_without_data_array_is_an_error)
{
    static const char *bad[] = {"{}", "{\"data\":{}}", "[]", "{\"data\":\"x\"}", "not json", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[64] = "";
        struct price_table *t = pricing_table_from_models_json(bad[i], strlen(bad[i]), err,
                                                               sizeof err);
        ck_assert_msg(t == NULL, "accepted %s", bad[i]);
        ck_assert_msg(err[0] != '\0', "no message for %s", bad[i]);
    }
}
END_TEST

START_TEST(test_pricing_table_empty_data_is_an_empty_table)
{
    struct price_table *t = table("{\"data\":[]}");
    struct price p;

    ck_assert_int_eq(pricing_table_size(t), 0);
    ck_assert_int_eq(pricing_lookup(t, "a", &p), -1);
    pricing_table_free(t);
}
END_TEST

START_TEST(test_pricing_table_json_need_not_be_nul_terminated)
{
    const char text[] = "{\"data\":[{\"id\":\"a\",\"pricing\":{\"prompt\":\"1\",\"completion\":\"2\"}}]}XXXX";
    char err[64];
    struct price_table *t = pricing_table_from_models_json(text, sizeof text - 5, err, sizeof err);
    struct price p;

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pricing_lookup(t, "a", &p), 0);
    ck_assert_int_eq(p.completion, 2 * ATTO_PER_USD);
    pricing_table_free(t);
}
END_TEST

/* ---- persistence ---------------------------------------------------------- */

START_TEST(test_pricing_table_save_load_round_trip_is_exact)
{
    char path[] = "/tmp/test_pricing_XXXXXX", path2[64], tmp[64], err[128] = "";
    int fd = mkstemp(path);
    struct price_table *t = table(models_json), *u;
    const char *ids[] = {"openai/gpt-4o-mini", "openai/gpt-4o", "test/awkward"};
    char *a, *b;

    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(path2, sizeof path2, "%s.2", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_eq(pricing_table_save(t, path), 0);
    ck_assert_int_eq(access(tmp, F_OK), -1); /* renamed away */
    u = pricing_table_load(path, err, sizeof err);
    ck_assert_msg(u != NULL, "load: %s", err);
    ck_assert_int_eq(pricing_table_size(u), pricing_table_size(t));
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        struct price p, q;
        ck_assert_int_eq(pricing_lookup(t, ids[i], &p), 0);
        ck_assert_int_eq(pricing_lookup(u, ids[i], &q), 0);
        ck_assert_msg(memcmp(&p, &q, sizeof p) == 0, "%s changed", ids[i]);
    }
    /* every field, partial entries included: saving again gives the same bytes */
    ck_assert_int_eq(pricing_table_save(u, path2), 0);
    a = slurp(path);
    b = slurp(path2);
    ck_assert_str_eq(a, b);
    ck_assert_ptr_nonnull(strstr(a, "\"input_cache_read\":\"0.000000075\""));
    ck_assert_ptr_nonnull(strstr(a, "\"request\":\"0.0001\""));
    ck_assert_ptr_null(strstr(a, "-1"));
    free(a);
    free(b);
    pricing_table_free(t);
    pricing_table_free(u);
    unlink(path);
    unlink(path2);
}
END_TEST

START_TEST(test_pricing_table_round_trip_keeps_extreme_prices)
{
    char path[] = "/tmp/test_pricing_XXXXXX", err[128];
    int fd = mkstemp(path);
    struct price_table *t = table("{\"data\":[{\"id\":\"e\",\"pricing\":{"
                                  "\"prompt\":\"0.000000000000000001\","
                                  "\"completion\":\"9.223372036854775807\","
                                  "\"request\":\"1.5e-3\"}}]}"),
                       *u;
    struct price p;

    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(pricing_table_save(t, path), 0);
    u = pricing_table_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(pricing_lookup(u, "e", &p), 0);
    ck_assert_int_eq(p.prompt, 1);
    ck_assert_int_eq(p.completion, INT64_MAX);
    ck_assert_int_eq(p.request, 1500000000000000LL);
    pricing_table_free(t);
    pricing_table_free(u);
    unlink(path);
}
END_TEST

START_TEST(test_pricing_table_load_missing_file_is_an_error)
{
    char err[128] = "";
    ck_assert_ptr_null(pricing_table_load("/tmp/no/such/orproxy/prices.json", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "prices.json"));
}
END_TEST

START_TEST(test_pricing_table_save_to_unwritable_path_fails)
{
    struct price_table *t = table(models_json);
    ck_assert_int_eq(pricing_table_save(t, "/tmp/no/such/orproxy/prices.json"), -1);
    pricing_table_free(t);
}
END_TEST

/* ---- the current table ---------------------------------------------------- */

START_TEST(test_pricing_current_starts_empty_and_shuts_down)
{
    struct price p;

    pricing_shutdown();
    ck_assert_int_eq(pricing_current_size(), 0);
    ck_assert_int_eq(pricing_current_lookup("openai/gpt-4o", &p), -1);
    pricing_set_current(table(models_json));
    ck_assert_int_eq(pricing_current_size(), 5);
    ck_assert_int_eq(pricing_current_lookup("openai/gpt-4o:nitro", &p), 0);
    ck_assert_int_eq(p.prompt, 2500000000000LL);
    pricing_shutdown();
    ck_assert_int_eq(pricing_current_lookup("openai/gpt-4o", &p), -1);
}
END_TEST

struct reader {
    pthread_t th;
    atomic_int *stop;
    atomic_long *seen; /* hits of all readers, for the main thread to wait on */
    long lookups, hits, torn;
};

/* Every table the main thread installs prices m/x at prompt k, completion
 * 2k: any other pair means a lookup saw a table being torn down. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;

    while (!atomic_load(r->stop)) {
        struct price p;
        r->lookups++;
        if (pricing_current_lookup(r->lookups % 2 ? "m/x" : "m/x:nitro", &p) == 0) {
            r->hits++;
            atomic_fetch_add(r->seen, 1);
            if (p.completion != 2 * p.prompt || p.prompt <= 0)
                r->torn++;
        }
        (void)pricing_current_size();
    }
    return NULL;
}

START_TEST(test_pricing_current_replace_while_four_threads_look_up)
{
    struct reader rd[4];
    atomic_int stop = 0;
    atomic_long seen = 0;
    long hits = 0;

    pricing_shutdown();
    for (int i = 0; i < 4; i++) {
        rd[i] = (struct reader){.stop = &stop, .seen = &seen};
        ck_assert_int_eq(pthread_create(&rd[i].th, NULL, reader_main, &rd[i]), 0);
    }
    for (int k = 1; k <= 1000; k++) {
        char json[256];
        snprintf(json, sizeof json,
                 "{\"data\":[{\"id\":\"m/x\",\"pricing\":{\"prompt\":\"%de-12\","
                 "\"completion\":\"%de-12\"}},{\"id\":\"m/y\",\"pricing\":{}}]}",
                 k, 2 * k);
        pricing_set_current(table(json));
    }
    /* On a busy machine the readers may not have run yet: let one find
     * the last table before stopping them. */
    while (atomic_load(&seen) == 0)
        sched_yield();
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(rd[i].th, NULL);
        ck_assert_int_eq(rd[i].torn, 0);
        hits += rd[i].hits;
    }
    ck_assert_int_gt(hits, 0);
    ck_assert_int_eq(pricing_current_size(), 2);
    pricing_shutdown();
    ck_assert_int_eq(pricing_current_size(), 0);
}
END_TEST

static Suite *pricing_suite(void)
{
    Suite *s = suite_create("pricing");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pricing_parse_small_price_exactly);
    tcase_add_test(tc, test_pricing_parse_integers_and_plain_decimals);
    tcase_add_test(tc, test_pricing_parse_exponent_exactly);
    tcase_add_test(tc, test_pricing_parse_rounds_half_up_past_18_decimals);
    tcase_add_test(tc, test_pricing_parse_rejects_prices_beyond_int64_attodollars);
    tcase_add_test(tc, test_pricing_parse_rejects_invalid_forms);
    tcase_add_test(tc, test_pricing_cost_awkward_price_is_exact);
    tcase_add_test(tc, test_pricing_cost_cached_tokens_use_cache_read_price);
    tcase_add_test(tc, test_pricing_cost_cached_tokens_without_cache_price_pay_prompt_price);
    tcase_add_test(tc, test_pricing_cost_adds_request_price_once);
    tcase_add_test(tc, test_pricing_cost_does_not_add_reasoning_tokens_again);
    tcase_add_test(tc, test_pricing_cost_rounds_half_up_at_the_picodollar);
    tcase_add_test(tc, test_pricing_cost_clamps_negative_counts_to_zero);
    tcase_add_test(tc, test_pricing_cost_saturates_on_absurd_inputs);
    tcase_add_test(tc, test_pricing_format_usd_trims_to_two_decimals);
    tcase_add_test(tc, test_pricing_format_usd_truncates_to_buffer);
    tcase_add_test(tc, test_pricing_usd_to_pusd_uses_the_decimal_the_json_gave);
    tcase_add_test(tc, test_pricing_usd_to_pusd_rejects_nonfinite_and_negative);
    tcase_add_test(tc, test_pricing_usd_to_pusd_huge_costs_clamped_to_ceiling);
    tcase_add_test(tc, test_pricing_add_pusd_saturates);
    tcase_add_test(tc, test_pricing_table_lookup_hit);
    tcase_add_test(tc, test_pricing_table_lookup_miss);
    tcase_add_test(tc, test_pricing_table_lookup_variant_falls_back_to_base_id);
    tcase_add_test(tc, test_pricing_table_variant_exact_entry_wins);
    tcase_add_test(tc, test_pricing_table_variable_price_entry_is_not_usable);
    tcase_add_test(tc, test_pricing_table_without_data_array_is_an_error);
    tcase_add_test(tc, test_pricing_table_empty_data_is_an_empty_table);
    tcase_add_test(tc, test_pricing_table_json_need_not_be_nul_terminated);
    tcase_add_test(tc, test_pricing_table_save_load_round_trip_is_exact);
    tcase_add_test(tc, test_pricing_table_round_trip_keeps_extreme_prices);
    tcase_add_test(tc, test_pricing_table_load_missing_file_is_an_error);
    tcase_add_test(tc, test_pricing_table_save_to_unwritable_path_fails);
    tcase_add_test(tc, test_pricing_current_starts_empty_and_shuts_down);
    tcase_add_test(tc, test_pricing_current_replace_while_four_threads_look_up);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(pricing_suite)
