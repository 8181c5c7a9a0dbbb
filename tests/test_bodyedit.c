/* Unit tests for bodyedit.c: aliases, defaults and the system prompt
 * applied to a request body, number literals kept byte for byte. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "bodyedit.h"

/* --- request body edits ----------------------------------------------- */

/* One test's edits: e reads the defaults d and the aliases in av. */
#define NO_EDITS                                                                                   \
    struct bodyedit_defaults d = {0};                                                              \
    struct bodyedit_alias av[8];                                                                   \
    struct bodyedit e = {.defaults = &d};                                                          \
    (void)av

/* Points e's (client) aliases at av, filled from the from/to pairs. */
static void set_aliases(struct bodyedit *e, struct bodyedit_alias *av, const char **from,
                        const char **to, size_t n)
{
    for (size_t i = 0; i < n; i++)
        av[i].from = (char *)from[i], av[i].to = (char *)to[i];
    e->aliases = av;
    e->n_aliases = n;
}

/* Applies e and returns the parsed result (NULL when nothing changed). */
static cJSON *apply(const char *body, const struct bodyedit *e)
{
    char err[128] = "";
    int changed = -1;
    char *out = bodyedit_apply(body, strlen(body), e, err, sizeof err, &changed);
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

START_TEST(test_bodyedit_without_applicable_edits_returns_null_unchanged)
{
    NO_EDITS;
    const char *from[] = {"gpt"}, *to[] = {"openai/gpt"};
    ck_assert_ptr_null(apply("{\"model\":\"x\", \"temperature\": 1.0}", &e));
    set_aliases(&e, av, from, to, 1);
    d.model = "d/m";
    d.has_temperature = 1, d.temperature = 0.5;
    ck_assert_ptr_null(apply("{\"model\":\"x\",\"temperature\":null}", &e));
}
END_TEST

START_TEST(test_bodyedit_default_model_when_absent)
{
    NO_EDITS;
    cJSON *j;
    d.model = "openai/gpt-4o-mini";
    j = apply("{\"messages\":[]}", &e);
    ck_assert_str_eq(str_member(j, "model"), "openai/gpt-4o-mini");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_bodyedit_default_model_not_when_present_even_null)
{
    NO_EDITS;
    d.model = "openai/gpt-4o-mini";
    ck_assert_ptr_null(apply("{\"model\":\"mine\"}", &e));
    ck_assert_ptr_null(apply("{\"model\":null}", &e));
    ck_assert_ptr_null(apply("{\"model\":\"\"}", &e));
}
END_TEST

START_TEST(test_bodyedit_alias_replaces_the_model)
{
    const char *from[] = {"fast", "smart"},
               *to[] = {"openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"};
    NO_EDITS;
    cJSON *j;
    set_aliases(&e, av, from, to, 2);
    j = apply("{\"model\":\"smart\"}", &e);
    ck_assert_str_eq(str_member(j, "model"), "anthropic/claude-3.5-sonnet");
    cJSON_Delete(j);
    ck_assert_ptr_null(apply("{\"model\":\"Smart\"}", &e)); /* case-sensitive */
}
END_TEST

START_TEST(test_bodyedit_alias_applies_to_the_default_model)
{
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini"};
    NO_EDITS;
    cJSON *j;
    set_aliases(&e, av, from, to, 1);
    d.model = "fast";
    j = apply("{}", &e);
    ck_assert_str_eq(str_member(j, "model"), "openai/gpt-4o-mini");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_bodyedit_alias_first_match_wins_and_does_not_chain)
{
    const char *from[] = {"a", "a", "b"}, *to[] = {"b", "c", "d"};
    NO_EDITS;
    cJSON *j;
    set_aliases(&e, av, from, to, 3);
    j = apply("{\"model\":\"a\"}", &e);
    ck_assert_str_eq(str_member(j, "model"), "b");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_bodyedit_alias_replaces_strings_in_models)
{
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini"};
    NO_EDITS;
    cJSON *j, *models;
    set_aliases(&e, av, from, to, 1);
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
START_TEST(test_bodyedit_each_numeric_default_added_alone_when_absent)
{
    static const char *names[] = {"temperature", "top_p", "max_tokens", "frequency_penalty",
                                  "presence_penalty"};
    static const double values[] = {0.3, 0.9, 256, -0.5, 1.25};
    for (int i = 0; i < 5; i++) {
        NO_EDITS;
        cJSON *j, *m;
        switch (i) {
        case 0: d.has_temperature = 1, d.temperature = values[i]; break;
        case 1: d.has_top_p = 1, d.top_p = values[i]; break;
        case 2: d.has_max_tokens = 1, d.max_tokens = (long)values[i]; break;
        case 3: d.has_frequency_penalty = 1, d.frequency_penalty = values[i]; break;
        default: d.has_presence_penalty = 1, d.presence_penalty = values[i]; break;
        }
        j = apply("{\"model\":\"m\"}", &e);
        ck_assert_int_eq(cJSON_GetArraySize(j), 2);
        m = cJSON_GetObjectItemCaseSensitive(j, names[i]);
        ck_assert_msg(cJSON_IsNumber(m) && m->valuedouble == values[i], "%s", names[i]);
        cJSON_Delete(j);
    }
}
END_TEST

START_TEST(test_bodyedit_defaults_not_applied_when_present)
{
    NO_EDITS;
    d.has_temperature = 1, d.temperature = 0.3;
    d.has_top_p = 1, d.top_p = 0.9;
    d.has_max_tokens = 1, d.max_tokens = 64;
    d.has_frequency_penalty = 1, d.frequency_penalty = 0.1;
    d.has_presence_penalty = 1, d.presence_penalty = 0.2;
    ck_assert_ptr_null(apply("{\"temperature\":1,\"top_p\":1,\"max_tokens\":9,"
                             "\"frequency_penalty\":0,\"presence_penalty\":0}",
                             &e));
}
END_TEST

START_TEST(test_bodyedit_defaults_not_applied_when_present_as_null)
{
    NO_EDITS;
    cJSON *j;
    d.has_temperature = 1, d.temperature = 0.3;
    d.has_max_tokens = 1, d.max_tokens = 64;
    j = apply("{\"temperature\":null}", &e);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "temperature")));
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(j, "max_tokens")->valueint, 64);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_bodyedit_max_tokens_default_skipped_with_max_completion_tokens)
{
    NO_EDITS;
    d.has_max_tokens = 1, d.max_tokens = 64;
    ck_assert_ptr_null(apply("{\"max_completion_tokens\":10}", &e));
}
END_TEST

START_TEST(test_bodyedit_system_prompt_inserted_first_when_none)
{
    NO_EDITS;
    cJSON *j, *msgs, *first;
    d.system_prompt = "Answer briefly.";
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

START_TEST(test_bodyedit_system_prompt_not_inserted_when_one_exists)
{
    NO_EDITS;
    d.system_prompt = "Answer briefly.";
    ck_assert_ptr_null(apply("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                             "{\"role\":\"system\",\"content\":\"mine\"}]}",
                             &e));
}
END_TEST

START_TEST(test_bodyedit_system_prompt_ignored_without_messages)
{
    NO_EDITS;
    d.system_prompt = "Answer briefly.";
    ck_assert_ptr_null(apply("{\"model\":\"m\",\"prompt\":\"legacy\"}", &e));
    ck_assert_ptr_null(apply("{\"model\":\"m\",\"input\":[\"embed me\"]}", &e));
    ck_assert_ptr_null(apply("{\"messages\":\"not an array\"}", &e));
}
END_TEST

START_TEST(test_bodyedit_unicode_and_unknown_nested_fields_survive)
{
    static const char body[] =
        "{\"model\":\"fast\",\"x\":{\"y\":[1,\"\\u00e9\\ud83d\\ude00 \\\"q\\\"\",null,true,{}]},"
        "\"messages\":[{\"role\":\"user\","
        "\"content\":[{\"type\":\"text\",\"text\":\"caf\xc3\xa9\"}]}],"
        "\"provider\":{\"order\":[\"a\",\"b\"],\"allow_fallbacks\":false}}";
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini"};
    NO_EDITS;
    cJSON *orig = cJSON_Parse(body), *j, *m;
    set_aliases(&e, av, from, to, 1);
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

START_TEST(test_bodyedit_number_literals_survive_byte_for_byte)
{
    static const char body[] = "{\"seed\":1234567890123456789,\"a\":[1.0,1e2,-0.10,{\"b\":3}],"
                               "\"logit_bias\":{\"50256\":-100}}";
    NO_EDITS;
    char err[64] = "";
    int changed = 0;
    char *out;
    d.model = "m";
    out = bodyedit_apply(body, strlen(body), &e, err, sizeof err, &changed);
    ck_assert_int_eq(changed, 1);
    ck_assert_str_eq(out, "{\"seed\":1234567890123456789,\"a\":[1.0,1e2,-0.10,{\"b\":3}],"
                          "\"logit_bias\":{\"50256\":-100},\"model\":\"m\"}");
    free(out);
}
END_TEST

START_TEST(test_bodyedit_defaults_print_as_plain_json_numbers)
{
    NO_EDITS;
    char err[64] = "";
    int changed = 0;
    char *out;
    d.has_temperature = 1, d.temperature = 0.7;
    d.has_max_tokens = 1, d.max_tokens = 3000000000L;
    out = bodyedit_apply("{}", 2, &e, err, sizeof err, &changed);
    ck_assert_str_eq(out, "{\"temperature\":0.7,\"max_tokens\":3000000000}");
    free(out);
}
END_TEST

START_TEST(test_bodyedit_uses_only_len_bytes)
{
    NO_EDITS;
    char err[64] = "";
    int changed = 0;
    char *out;
    d.model = "m";
    out = bodyedit_apply("{\"a\":1}GARBAGE", 7, &e, err, sizeof err, &changed);
    ck_assert_str_eq(out, "{\"a\":1,\"model\":\"m\"}");
    free(out);
}
END_TEST

START_TEST(test_bodyedit_not_a_json_object_sets_err)
{
    static const char *bad[] = {
        "[1]", "\"s\"", "3", "null", "{", "", "{\"a\":1} x", "{}{}", "{'a':1}",
    };
    NO_EDITS;
    d.model = "m";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[64] = "";
        int changed = 1;
        ck_assert_ptr_null(
            bodyedit_apply(bad[i], strlen(bad[i]), &e, err, sizeof err, &changed));
        ck_assert_int_eq(changed, 0);
        ck_assert_msg(strcmp(err, "request body must be a JSON object") == 0, "%s: %s", //
                      bad[i], err);
    }
}
END_TEST

START_TEST(test_bodyedit_trailing_whitespace_is_accepted)
{
    NO_EDITS;
    cJSON *j;
    d.model = "m";
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

START_TEST(test_bodyedit_allocation_failures_report_and_leak_nothing)
{
    /* every edit kind, so every failure path is reached; the sanitizer
     * build checks that none of them leaks */
    static const char body[] = "{\"model\":\"fast\",\"models\":[\"fast\"],\"n\":[1,2.5],"
                               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *from[] = {"fast"}, *to[] = {"openai/gpt-4o-mini-with-a-longer-name"};
    cJSON_Hooks hooks = {failing_malloc, free};
    NO_EDITS;
    int failures = 0, k;
    set_aliases(&e, av, from, to, 1);
    d.has_temperature = 1, d.temperature = 0.2;
    d.has_max_tokens = 1, d.max_tokens = 10;
    d.system_prompt = "S";
    cJSON_InitHooks(&hooks);
    for (k = 0; k < 1000; k++) {
        char err[96] = "";
        int changed = -1;
        char *out;
        alloc_countdown = k;
        out = bodyedit_apply(body, strlen(body), &e, err, sizeof err, &changed);
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

START_TEST(test_bodyedit_client_aliases_win_over_the_global_ones)
{
    const char *from[] = {"fast"}, *to[] = {"client/model"};
    struct bodyedit_alias global[] = {{"fast", "global/model"}, {"smart", "global/smart"}};
    NO_EDITS;
    cJSON *j;
    e.more_aliases = global, e.n_more_aliases = 2;
    set_aliases(&e, av, from, to, 1);
    j = apply("{\"model\":\"fast\",\"models\":[\"smart\"]}", &e);
    ck_assert_str_eq(str_member(j, "model"), "client/model");
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "models"), 0)->valuestring,
                     "global/smart");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_bodyedit_needed_only_with_an_alias_or_a_default)
{
    struct bodyedit_alias global[] = {{"fast", "global/model"}};
    NO_EDITS;
    struct bodyedit none = {0};
    ck_assert_int_eq(bodyedit_needed(&none), 0);
    ck_assert_int_eq(bodyedit_needed(&e), 0); /* defaults all unset */
    d.has_presence_penalty = 1;
    ck_assert_int_eq(bodyedit_needed(&e), 1);
    d.has_presence_penalty = 0;
    d.system_prompt = "S";
    ck_assert_int_eq(bodyedit_needed(&e), 1);
    none.more_aliases = global, none.n_more_aliases = 1;
    ck_assert_int_eq(bodyedit_needed(&none), 1);
}
END_TEST

START_TEST(test_bodyedit_context_goes_after_the_system_prompt_once)
{
    NO_EDITS;
    char *out;
    int changed = 0;
    char err[64];
    d.system_prompt = "Be brief.";
    d.context = "Paris is in France.";
    const char *in = "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}";
    const char *own = "{\"messages\":[{\"role\":\"system\",\"content\":\"Context:\\nmine\"}]}";
    out = bodyedit_apply(in, strlen(in), &e, err, sizeof err, &changed);
    ck_assert_int_eq(changed, 1);
    ck_assert_str_eq(out, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                          "{\"role\":\"system\",\"content\":\"Context:\\nParis is in France.\"},"
                          "{\"role\":\"user\",\"content\":\"q\"}]}");
    free(out);
    /* a request that brings its own context gets none added */
    d.system_prompt = NULL;
    ck_assert_ptr_null(bodyedit_apply(own, strlen(own), &e, err, sizeof err, &changed));
    ck_assert_int_eq(changed, 0);
}
END_TEST

static Suite *bodyedit_suite(void)
{
    Suite *s = suite_create("bodyedit");
    TCase *body = tcase_create("body");

    tcase_add_test(body, test_bodyedit_without_applicable_edits_returns_null_unchanged);
    tcase_add_test(body, test_bodyedit_default_model_when_absent);
    tcase_add_test(body, test_bodyedit_default_model_not_when_present_even_null);
    tcase_add_test(body, test_bodyedit_alias_replaces_the_model);
    tcase_add_test(body, test_bodyedit_alias_applies_to_the_default_model);
    tcase_add_test(body, test_bodyedit_alias_first_match_wins_and_does_not_chain);
    tcase_add_test(body, test_bodyedit_alias_replaces_strings_in_models);
    tcase_add_test(body, test_bodyedit_each_numeric_default_added_alone_when_absent);
    tcase_add_test(body, test_bodyedit_defaults_not_applied_when_present);
    tcase_add_test(body, test_bodyedit_defaults_not_applied_when_present_as_null);
    tcase_add_test(body, test_bodyedit_max_tokens_default_skipped_with_max_completion_tokens);
    tcase_add_test(body, test_bodyedit_system_prompt_inserted_first_when_none);
    tcase_add_test(body, test_bodyedit_system_prompt_not_inserted_when_one_exists);
    tcase_add_test(body, test_bodyedit_system_prompt_ignored_without_messages);
    tcase_add_test(body, test_bodyedit_unicode_and_unknown_nested_fields_survive);
    tcase_add_test(body, test_bodyedit_number_literals_survive_byte_for_byte);
    tcase_add_test(body, test_bodyedit_defaults_print_as_plain_json_numbers);
    tcase_add_test(body, test_bodyedit_uses_only_len_bytes);
    tcase_add_test(body, test_bodyedit_not_a_json_object_sets_err);
    tcase_add_test(body, test_bodyedit_trailing_whitespace_is_accepted);
    tcase_add_test(body, test_bodyedit_allocation_failures_report_and_leak_nothing);
    tcase_add_test(body, test_bodyedit_client_aliases_win_over_the_global_ones);
    tcase_add_test(body, test_bodyedit_needed_only_with_an_alias_or_a_default);
    tcase_add_test(body, test_bodyedit_context_goes_after_the_system_prompt_once);

    suite_add_tcase(s, body);
    return s;
}

CHECK_MAIN(bodyedit_suite)
