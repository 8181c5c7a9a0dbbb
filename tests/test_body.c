/* Unit tests for body.c: which request bodies are refused before they go
 * upstream, and what the proxy reads out of the ones it forwards. */
#include <check.h>
#include <string.h>

#include "body.h"
#include "check_main.h"

static enum body_result parse(const char *text, struct body_fields *f)
{
    return body_parse(text, strlen(text), f);
}

START_TEST(test_body_reads_model_user_max_tokens_stream)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":\"openai/gpt-4o\",\"user\":\"u1\",\"max_tokens\":64,"
                           "\"stream\":true,\"messages\":[]}",
                           &f),
                     BODY_OK);
    ck_assert_str_eq(f.model, "openai/gpt-4o");
    ck_assert_str_eq(f.user, "u1");
    ck_assert_int_eq(f.max_tokens, 64);
    ck_assert_int_eq(f.stream, 1);
    body_fields_free(&f);
}
END_TEST

START_TEST(test_body_absent_or_odd_members_read_as_nothing)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":7,\"user\":null,\"max_tokens\":-5,\"stream\":\"yes\"}", &f),
                     BODY_OK);
    ck_assert_ptr_null(f.model);
    ck_assert_ptr_null(f.user);
    ck_assert_int_eq(f.max_tokens, 0);
    ck_assert_int_eq(f.stream, 0);
    body_fields_free(&f);
}
END_TEST

START_TEST(test_body_reads_models_fallback_list)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":\"a/b\",\"models\":[\"c/d\", \"e/f\"]}", &f), BODY_OK);
    ck_assert_uint_eq(f.n_models, 2);
    ck_assert_str_eq(f.models[0], "c/d");
    ck_assert_str_eq(f.models[1], "e/f");
    body_fields_free(&f);
    ck_assert_int_eq(parse("{\"models\":null}", &f), BODY_OK);
    ck_assert_uint_eq(f.n_models, 0);
    ck_assert_ptr_null(f.models);
    body_fields_free(&f);
}
END_TEST

START_TEST(test_body_unreadable_or_duplicate_models_refused)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"models\":\"c/d\"}", &f), BODY_BAD_MODELS);
    ck_assert_ptr_null(f.models);
    ck_assert_int_eq(parse("{\"models\":[\"c/d\",7]}", &f), BODY_BAD_MODELS);
    ck_assert_ptr_null(f.models);
    ck_assert_int_eq(parse("{\"models\":[[\"c/d\"]]}", &f), BODY_BAD_MODELS);
    ck_assert_int_eq(parse("{\"models\":{\"x\":\"c/d\"}}", &f), BODY_BAD_MODELS);
    ck_assert_int_eq(parse("{\"models\":[\"a/b\"],\"models\":[\"c/d\"]}", &f), BODY_DUPLICATE_MODEL);
    /* A refused "model" after a good list: the list is not kept (found by fuzz_request). */
    ck_assert_int_eq(parse("{\"models\":[\"a/b\"],\"model\":\"x\x99y\"}", &f), BODY_INVALID_MODEL);
    ck_assert_ptr_null(f.models);
    ck_assert_uint_eq(f.n_models, 0);
}
END_TEST

START_TEST(test_body_max_completion_tokens_counts_too)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"max_completion_tokens\":100000}", &f), BODY_OK);
    ck_assert_int_eq(f.max_tokens, 100000);
    body_fields_free(&f);
    ck_assert_int_eq(parse("{\"max_tokens\":50,\"max_completion_tokens\":70}", &f), BODY_OK);
    ck_assert_int_eq(f.max_tokens, 70);
    body_fields_free(&f);
}
END_TEST

START_TEST(test_body_max_tokens_capped_at_a_billion)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"max_tokens\":1e300}", &f), BODY_OK);
    ck_assert_int_eq(f.max_tokens, 1000000000L);
    body_fields_free(&f);
    ck_assert_int_eq(parse("{\"max_tokens\":1e999}", &f), BODY_OK); /* +inf to cJSON */
    ck_assert_int_eq(f.max_tokens, 1000000000L);
    body_fields_free(&f);
}
END_TEST

START_TEST(test_body_not_json_not_object_duplicate_model_refused)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":", &f), BODY_INVALID_JSON);
    ck_assert_int_eq(parse("", &f), BODY_INVALID_JSON);
    ck_assert_int_eq(parse("[1,2]", &f), BODY_NOT_OBJECT);
    ck_assert_int_eq(parse("\"model\"", &f), BODY_NOT_OBJECT);
    ck_assert_int_eq(parse("{\"model\":\"a\",\"x\":1,\"model\":\"b\"}", &f), BODY_DUPLICATE_MODEL);
    ck_assert_ptr_null(f.model);
}
END_TEST

START_TEST(test_body_nested_model_is_not_a_duplicate)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":\"a\",\"provider\":{\"model\":\"b\"}}", &f), BODY_OK);
    ck_assert_str_eq(f.model, "a");
    body_fields_free(&f);
}
END_TEST

/* Issue 11 item 13: cJSON takes any bytes in a string, and a bad model
 * name broke /metrics and /v1/usage until restart. */
START_TEST(test_body_model_not_clean_utf8_refused)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":\"bad\xff\"}", &f), BODY_INVALID_MODEL);
    ck_assert_ptr_null(f.model);
    ck_assert_int_eq(parse("{\"model\":\"half\xc3\"}", &f), BODY_INVALID_MODEL);
    ck_assert_int_eq(parse("{\"model\":\"\xc0\xafoverlong\"}", &f), BODY_INVALID_MODEL);
    ck_assert_int_eq(parse("{\"model\":\"\xed\xa0\x80surrogate\"}", &f), BODY_INVALID_MODEL);
    ck_assert_int_eq(parse("{\"model\":\"esc\\u001b[31m\"}", &f), BODY_INVALID_MODEL);
    ck_assert_int_eq(parse("{\"model\":\"tab\\t\"}", &f), BODY_INVALID_MODEL);
    ck_assert_int_eq(parse("{\"model\":\"del\x7f\"}", &f), BODY_INVALID_MODEL);
    ck_assert_int_eq(parse("{\"model\":\"c1\\u0085\"}", &f), BODY_INVALID_MODEL);
    /* Valid UTF-8, escaped or not, is a name like any other. */
    ck_assert_int_eq(parse("{\"model\":\"caf\xc3\xa9/\\u00e9\xf0\x9f\x98\x80\"}", &f), BODY_OK);
    ck_assert_str_eq(f.model, "caf\xc3\xa9/\xc3\xa9\xf0\x9f\x98\x80");
    body_fields_free(&f);
    /* Only "model" is a name; other strings go upstream as they are. */
    ck_assert_int_eq(parse("{\"model\":\"m\",\"user\":\"u\xff\"}", &f), BODY_OK);
    body_fields_free(&f);
}
END_TEST

/* Found by fuzzing (tests/fuzz/regress/request/trailing_object): the front
 * accepted what followed the object while bodyedit_apply refused it,
 * so the original bytes, second object and all, went upstream. */
START_TEST(test_body_bytes_after_the_object_refused)
{
    struct body_fields f;
    ck_assert_int_eq(parse("{\"model\":\"a\"} {\"model\":\"b\"}", &f), BODY_INVALID_JSON);
    ck_assert_int_eq(parse("{\"model\":\"a\"}x", &f), BODY_INVALID_JSON);
    ck_assert_ptr_null(f.model);
    ck_assert_int_eq(parse("{\"model\":\"a\"} \r\n\t", &f), BODY_OK);
    ck_assert_str_eq(f.model, "a");
    body_fields_free(&f);
}
END_TEST

START_TEST(test_body_reads_only_len_bytes)
{
    struct body_fields f;
    const char *text = "{\"model\":\"a\"}{\"model\":\"b\"}";
    ck_assert_int_eq(body_parse(text, 13, &f), BODY_OK);
    ck_assert_str_eq(f.model, "a");
    body_fields_free(&f);
}
END_TEST

static Suite *body_suite(void)
{
    Suite *s = suite_create("body");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_body_reads_model_user_max_tokens_stream);
    tcase_add_test(tc, test_body_absent_or_odd_members_read_as_nothing);
    tcase_add_test(tc, test_body_reads_models_fallback_list);
    tcase_add_test(tc, test_body_unreadable_or_duplicate_models_refused);
    tcase_add_test(tc, test_body_max_completion_tokens_counts_too);
    tcase_add_test(tc, test_body_max_tokens_capped_at_a_billion);
    tcase_add_test(tc, test_body_not_json_not_object_duplicate_model_refused);
    tcase_add_test(tc, test_body_nested_model_is_not_a_duplicate);
    tcase_add_test(tc, test_body_model_not_clean_utf8_refused);
    tcase_add_test(tc, test_body_bytes_after_the_object_refused);
    tcase_add_test(tc, test_body_reads_only_len_bytes);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(body_suite)
