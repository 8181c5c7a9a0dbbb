/* Unit tests for usage.c and apierr.c: what the ledger and the client see
 * of usage accounting and of orproxy's own errors. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "apierr.h"
#include "buf.h"
#include "check_main.h"
#include "usage.h"

START_TEST(test_usage_from_json_response)
{
    const char *j = "{\"id\":\"gen-1\",\"model\":\"openai/gpt-4o\",\"choices\":[{\"finish_reason\":"
                    "\"stop\",\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":11,"
                    "\"completion_tokens\":7,\"total_tokens\":18,\"cost\":0.000123,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":3},"
                    "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}";
    struct usage_info ui;
    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse(j, strlen(j), &ui), 0);
    ck_assert_int_eq(ui.usage.has_usage, 1);
    ck_assert_int_eq(ui.usage.prompt_tokens, 11);
    ck_assert_int_eq(ui.usage.completion_tokens, 7);
    ck_assert_int_eq(ui.usage.total_tokens, 18);
    ck_assert_int_eq(ui.usage.cached_tokens, 3);
    ck_assert_int_eq(ui.usage.reasoning_tokens, 2);
    ck_assert_int_eq(ui.usage.has_cost, 1);
    ck_assert_double_eq_tol(ui.usage.cost, 0.000123, 1e-12);
    ck_assert_str_eq(ui.model, "openai/gpt-4o");
    ck_assert_str_eq(ui.finish_reason, "stop");
    ck_assert_str_eq(ui.gen_id, "gen-1");
    ck_assert_int_eq(ui.is_error, 0);
    usage_info_free(&ui);
}
END_TEST

START_TEST(test_usage_stream_chunks_fold)
{
    const char *fin = "{\"id\":\"gen-2\",\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}";
    const char *use = "{\"id\":\"gen-2\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
                      "5,\"completion_tokens\":9}}";
    struct usage_info ui;
    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse(fin, strlen(fin), &ui), 0);
    ck_assert_int_eq(usage_parse(use, strlen(use), &ui), 0);
    ck_assert_str_eq(ui.finish_reason, "length"); /* kept: the usage chunk has no choices */
    ck_assert_int_eq(ui.usage.total_tokens, 14);  /* derived when absent */
    ck_assert_int_eq(ui.usage.has_cost, 0);
    usage_info_free(&ui);
}
END_TEST

START_TEST(test_usage_error_chunk_detected)
{
    const char *a = "{\"error\":{\"code\":502,\"message\":\"x\"},\"choices\":[{\"finish_reason\":"
                    "\"error\"}]}";
    const char *b = "{\"choices\":[{\"finish_reason\":\"error\",\"error\":{\"code\":\"server_error\"}}]}";
    struct usage_info ui;
    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse(a, strlen(a), &ui), 0);
    ck_assert_int_eq(ui.is_error, 1);
    usage_info_free(&ui);
    ck_assert_int_eq(usage_parse(b, strlen(b), &ui), 0);
    ck_assert_int_eq(ui.is_error, 1);
    usage_info_free(&ui);
}
END_TEST

/* Found by fuzzing (tests/fuzz/regress/usage/big_token_counts): a count
 * outside long long's range was converted from double as it came, which is
 * undefined behaviour, and total_tokens could overflow. */
START_TEST(test_usage_counts_out_of_range_are_clamped)
{
    const char *j = "{\"usage\":{\"prompt_tokens\":1e300,\"completion_tokens\":1e999,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":-1e300},"
                    "\"completion_tokens_details\":{\"reasoning_tokens\":-7}}}";
    struct usage_info ui;
    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse(j, strlen(j), &ui), 0);
    ck_assert_int_eq(ui.usage.prompt_tokens, USAGE_MAX_TOKENS);
    ck_assert_int_eq(ui.usage.completion_tokens, USAGE_MAX_TOKENS);
    ck_assert_int_eq(ui.usage.total_tokens, 2 * USAGE_MAX_TOKENS);
    ck_assert_int_eq(ui.usage.cached_tokens, 0);
    ck_assert_int_eq(ui.usage.reasoning_tokens, 0);
    usage_info_free(&ui);
}
END_TEST

START_TEST(test_usage_not_json_rejected)
{
    struct usage_info ui;
    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse("this is not json", 16, &ui), -1);
    ck_assert_int_eq(usage_parse("[1,2]", 5, &ui), -1);
    ck_assert_int_eq(usage_parse("{\"usage\":", 9, &ui), -1);
    ck_assert_int_eq(ui.usage.has_usage, 0);
    usage_info_free(&ui);
}
END_TEST

START_TEST(test_apierr_shape_and_escaping)
{
    char *j = apierr_json(413, "body_too_large", "too \"big\"\n");
    cJSON *root = cJSON_Parse(j), *e;
    ck_assert_ptr_nonnull(root);
    e = cJSON_GetObjectItem(root, "error");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "message")->valuestring, "too \"big\"\n");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "type")->valuestring, "invalid_request_error");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "code")->valuestring, "body_too_large");
    cJSON_Delete(root);
    free(j);
}
END_TEST

START_TEST(test_apierr_types_by_status)
{
    ck_assert_str_eq(apierr_type(400), "invalid_request_error");
    ck_assert_str_eq(apierr_type(404), "invalid_request_error");
    ck_assert_str_eq(apierr_type(401), "authentication_error");
    ck_assert_str_eq(apierr_type(429), "rate_limit_error");
    ck_assert_str_eq(apierr_type(500), "server_error");
    ck_assert_str_eq(apierr_type(502), "upstream_error");
    ck_assert_str_eq(apierr_type(504), "timeout_error");
}
END_TEST

START_TEST(test_apierr_sse_event_is_one_event)
{
    char *ev = apierr_sse_event(502, "upstream_stream_error", "gone");
    size_t n = strlen(ev);
    ck_assert(strncmp(ev, "data: {\"error\":{", 16) == 0);
    ck_assert(n > 2 && ev[n - 1] == '\n' && ev[n - 2] == '\n');
    ck_assert_ptr_null(memchr(ev, '\n', n - 2));
    free(ev);
}
END_TEST

/* Found by fuzzing (tests/fuzz/regress/sse/empty_stream): buf_head of a
 * buffer that never held anything (an empty request or response body)
 * computed NULL + 0, which is undefined (clang's UBSan reports it). */
START_TEST(test_buf_head_of_untouched_buffer_is_null)
{
    buf_t b;
    memset(&b, 0, sizeof b);
    ck_assert_ptr_null(buf_head(&b));
    ck_assert_uint_eq(buf_used(&b), 0);
    ck_assert_int_eq(buf_append(&b, "ab", 2), 0);
    buf_consume(&b, 1);
    ck_assert_int_eq(buf_head(&b)[0], 'b');
    buf_free(&b);
    ck_assert_ptr_null(buf_head(&b));
}
END_TEST

START_TEST(test_buf_append_consume_compacts)
{
    buf_t b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(buf_append(&b, "abcdef", 6), 0);
        buf_consume(&b, 5);
    }
    ck_assert_uint_eq(buf_used(&b), 1000);
    ck_assert(b.cap < 4096); /* the consumed front was reclaimed */
    ck_assert_str_eq(buf_cstr(&b) + 994, "abcdef"); /* the tail is the last append */
    buf_free(&b);
}
END_TEST

/* Issue 11 item 12: the estimate scanned the raw bytes for "content":" and
 * counted nothing when upstream put a blank after the colon. */
START_TEST(test_usage_chunk_counts_surrogate_pairs_once_and_skips_plain_chunks)
{
    struct usage_info ui;
    size_t chars = 0;
    const char *first = "{\"id\":\"gen-1\",\"model\":\"m/a\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}";
    /* An emoji as a surrogate pair, then a character from a \u escape: 3 characters. */
    const char *plain = "{ \"id\" : \"gen-2\", \"model\": \"m/b\", \"choices\": [ { \"delta\": { \"content\": "
                        "\"\\ud83d\\ude00\\u00e9x\" }, \"finish_reason\": null } ] }";

    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse_chunk(first, strlen(first), &ui, &chars), 0);
    ck_assert_uint_eq(chars, 1);
    ck_assert_str_eq(ui.gen_id, "gen-1");
    ck_assert_int_eq(usage_parse_chunk(plain, strlen(plain), &ui, &chars), 0);
    ck_assert_uint_eq(chars, 3);
    /* Nothing in it to account for: not folded (the first chunk's names stay). */
    ck_assert_str_eq(ui.gen_id, "gen-1");
    ck_assert_str_eq(ui.model, "m/a");
    ck_assert_ptr_null(ui.finish_reason);
    ck_assert_int_eq(usage_parse_chunk("{\"content\":\"ab\"} x", 18, &ui, &chars), -1);
    ck_assert_uint_eq(chars, 0);
    usage_info_free(&ui);
}
END_TEST

/* A chunk that must scan: its counted characters. */
static size_t chunk_chars(const char *json, struct usage_info *ui)
{
    size_t chars = 99;

    ck_assert_int_eq(usage_parse_chunk(json, strlen(json), ui, &chars), 0);
    return chars;
}

/* The scan skips strings it does not count (names, ids) in one loop: escapes
 * in them are still checked, a long name still matches nothing, and a chunk
 * that only names the usage after them is still folded. */
START_TEST(test_usage_chunk_skipped_strings_keep_their_escapes_and_names)
{
    struct usage_info ui;
    size_t chars = 0;
    const char *esc = "{\"id\":\"a\\\"b\\\\c\\u0041\",\"model\":\"m\",\"choices\":[{\"delta\":"
                      "{\"content\":\"h\\u00e9\\\"\"}}]}";
    const char *longname = "{\"content_but_longer_than_a_name\":\"xyz\",\"contents\":\"q\","
                           "\"con\\u0074ent\":\"raw bytes name\",\"text\":\"ok\"}";
    const char *late = "{\"an_unusually_long_member_name\":\"v\\/w\",\"usage\":{\"prompt_tokens\":3,"
                       "\"completion_tokens\":4,\"total_tokens\":7}}";

    memset(&ui, 0, sizeof ui);
    ck_assert_uint_eq(chunk_chars(esc, &ui), 3);
    ck_assert_str_eq(ui.gen_id, "a\"b\\cA");
    ck_assert_uint_eq(chunk_chars(longname, &ui), 2); /* only "text": names are raw bytes */
    ck_assert_uint_eq(chunk_chars(late, &ui), 0);
    ck_assert_int_eq(ui.usage.prompt_tokens, 3);
    ck_assert_int_eq(ui.usage.completion_tokens, 4);
    /* Malformed strings that are skipped, not counted, are still refused. */
    ck_assert_int_eq(usage_parse_chunk("{\"id\":\"abc", 10, &ui, &chars), -1);
    ck_assert_int_eq(usage_parse_chunk("{\"id\":\"abc\\", 11, &ui, &chars), -1);
    ck_assert_int_eq(usage_parse_chunk("{\"id\":\"a\\qb\"}", 13, &ui, &chars), -1);
    ck_assert_int_eq(usage_parse_chunk("{\"id\":\"a\\u12x4\"}", 16, &ui, &chars), -1);
    ck_assert_int_eq(usage_parse_chunk("{\"na\\qme\":1}", 12, &ui, &chars), -1);
    usage_info_free(&ui);
}
END_TEST

START_TEST(test_usage_text_chars_any_json_spacing)
{
    const char *compact = "{\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}";
    const char *spaced = "{ \"choices\" : [ { \"delta\" : { \"content\" : \"Hello\" } } ] }";
    const char *newlines = "{\"choices\":\n[{\"delta\":\n\t{\"content\":\r\n\"Hello\"}}]}";
    ck_assert_uint_eq(usage_text_chars(compact, strlen(compact)), 5);
    ck_assert_uint_eq(usage_text_chars(spaced, strlen(spaced)), 5);
    ck_assert_uint_eq(usage_text_chars(newlines, strlen(newlines)), 5);
}
END_TEST

START_TEST(test_usage_text_chars_counts_decoded_text)
{
    /* "text" (legacy completions) and "reasoning" count too; escapes and
     * multi-byte characters count one each; other strings do not count. */
    const char *j = "{\"model\": \"content\", \"choices\": [{\"text\": \"a\\\"b\\u00e9\",\n"
                    " \"delta\": {\"reasoning\": \"\xc3\xa9t\xc3\xa9\", \"role\": \"assistant\"}}]}";
    ck_assert_uint_eq(usage_text_chars(j, strlen(j)), 7);
    ck_assert_uint_eq(usage_text_chars("not json", 8), 0);
    ck_assert_uint_eq(usage_text_chars("{\"content\": ", 12), 0);
}
END_TEST

START_TEST(test_usage_chunk_spaced_finish_usage_error)
{
    const char *fin = "{\"choices\": [{\"delta\": {\"content\": \"ab\"}, \"finish_reason\": \"length\"}]}";
    const char *use = "{\"choices\": [], \"usage\": {\"prompt_tokens\": 5, \"completion_tokens\": 9, "
                      "\"cost\": 0.5}}";
    const char *err = "{\"error\": {\"code\": 502, \"message\": \"x\"}}";
    struct usage_info ui;
    size_t chars = 99;
    memset(&ui, 0, sizeof ui);
    ck_assert_int_eq(usage_parse_chunk(fin, strlen(fin), &ui, &chars), 0);
    ck_assert_uint_eq(chars, 2);
    ck_assert_str_eq(ui.finish_reason, "length");
    ck_assert_int_eq(usage_parse_chunk(use, strlen(use), &ui, &chars), 0);
    ck_assert_uint_eq(chars, 0);
    ck_assert_int_eq(ui.usage.completion_tokens, 9);
    ck_assert_int_eq(ui.usage.has_cost, 1);
    ck_assert_int_eq(ui.is_error, 0);
    ck_assert_int_eq(usage_parse_chunk(err, strlen(err), &ui, NULL), 0);
    ck_assert_int_eq(ui.is_error, 1);
    usage_info_free(&ui);
}
END_TEST

static Suite *usage_suite(void)
{
    Suite *s = suite_create("usage");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_usage_from_json_response);
    tcase_add_test(tc, test_usage_stream_chunks_fold);
    tcase_add_test(tc, test_usage_error_chunk_detected);
    tcase_add_test(tc, test_usage_counts_out_of_range_are_clamped);
    tcase_add_test(tc, test_usage_not_json_rejected);
    tcase_add_test(tc, test_usage_chunk_skipped_strings_keep_their_escapes_and_names);
    tcase_add_test(tc, test_usage_text_chars_any_json_spacing);
    tcase_add_test(tc, test_usage_chunk_counts_surrogate_pairs_once_and_skips_plain_chunks);
    tcase_add_test(tc, test_usage_text_chars_counts_decoded_text);
    tcase_add_test(tc, test_usage_chunk_spaced_finish_usage_error);
    tcase_add_test(tc, test_apierr_shape_and_escaping);
    tcase_add_test(tc, test_apierr_types_by_status);
    tcase_add_test(tc, test_apierr_sse_event_is_one_event);
    tcase_add_test(tc, test_buf_head_of_untouched_buffer_is_null);
    tcase_add_test(tc, test_buf_append_consume_compacts);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(usage_suite)
