/*
 * test_fake.c - the fake OpenRouter and the harness, tested directly (no proxy).
 *
 * Each test starts a fresh fake, drives it through the harness the way orproxy will and asserts
 * what arrived on the wire and what the fake recorded. The proxy's end-to-end tests build on the
 * behaviours proven here, so a failure here means the test tools, not orproxy, are broken.
 */
#include "harness.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHAT "/api/v1/chat/completions"

static struct h_proc fake;

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    int status = h_proc_stop(&fake, SIGTERM, 2000);
    h_proc_cleanup(&fake);
    ck_assert_int_eq(status, 0); /* exits cleanly, and under ASan without leaks */
}

/* POSTs body to path on the fake. */
static int post(struct h_resp *r, const char *path, const char *body, const struct h_req_opts *o)
{
    return h_request(r, fake.port, "POST", path, body, NULL, o);
}

/* When the body bytes up to and including the first needle had arrived; -1 if never. */
static double arrival_of(const struct h_resp *r, const char *needle)
{
    const char *at = strstr(r->body, needle);
    if (!at)
        return -1;
    size_t end = (size_t)(at - r->body) + strlen(needle);
    for (size_t i = 0; i < r->nticks; i++)
        if (r->ticks[i].bytes >= end)
            return r->ticks[i].t;
    return -1;
}

static const cJSON *get(const cJSON *o, const char *path)
{
    /* "a.b.c" walk; numeric components index arrays */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(k))
                             : cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

static double num(const cJSON *o, const char *path)
{
    const cJSON *v = get(o, path);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", path);
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *path)
{
    const cJSON *v = get(o, path);
    ck_assert_msg(cJSON_IsString(v), "%s is not a string", path);
    return v->valuestring;
}

START_TEST(test_json_answer_has_usage_and_generation_id)
{
    struct h_resp r;
    ck_assert_int_eq(post(&r, CHAT, "{\"model\":\"test/awkward\",\"messages\":[]}", NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(h_header(&r, "x-generation-id"), "gen-1");
    ck_assert_str_eq(h_header(&r, "Content-Type"), "application/json");
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(str(doc, "id"), "gen-1");
    ck_assert_str_eq(str(doc, "model"), "test/awkward");
    ck_assert_str_eq(str(doc, "provider"), "FakeProvider");
    ck_assert_str_eq(str(doc, "choices.0.message.content"), "Hello from the fake upstream.");
    ck_assert_str_eq(str(doc, "choices.0.finish_reason"), "stop");
    ck_assert_int_eq((int)num(doc, "usage.prompt_tokens"), 11);
    ck_assert_int_eq((int)num(doc, "usage.completion_tokens"), 7);
    ck_assert_int_eq((int)num(doc, "usage.total_tokens"), 18);
    ck_assert_double_eq_tol(num(doc, "usage.cost"), 0.000123, 1e-12);
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_usage_override_replaces_and_removes_members)
{
    struct h_resp r;
    post(&r, CHAT, "{\"fake\":{\"usage\":{\"prompt_tokens\":100,\"cost\":null,\"x\":1}}}", NULL);
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_int_eq((int)num(doc, "usage.prompt_tokens"), 100);
    ck_assert_int_eq((int)num(doc, "usage.total_tokens"), 107);
    ck_assert_int_eq((int)num(doc, "usage.x"), 1);
    ck_assert_ptr_null(get(doc, "usage.cost"));
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_paced_stream_arrives_incrementally)
{
    struct h_resp r;
    ck_assert_int_eq(
        post(&r, CHAT, "{\"stream\":true,\"fake\":{\"events\":5,\"interval_ms\":100}}", NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(h_header(&r, "Content-Type"), "text/event-stream");
    double first = arrival_of(&r, "tok0 "), last = arrival_of(&r, "tok4 ");
    ck_assert(first > 0 && last > 0);
    ck_assert_msg(last - first >= 0.35, "tok0..tok4 took only %.3f s", last - first);
    ck_assert_msg(first - r.t_start < 0.2, "first token after %.3f s", first - r.t_start);
    ck_assert_ptr_nonnull(strstr(r.body, "data: [DONE]\n\n"));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_stream_event_sequence_ends_with_usage_then_done)
{
    struct h_resp r;
    post(&r, CHAT, "{\"model\":\"m/x\",\"stream\":true,\"fake\":{\"events\":2}}", NULL);
    size_t n;
    char **ev = h_sse_split(r.body, &n);
    ck_assert_uint_eq(n, 6); /* role, tok0, tok1, finish, usage, [DONE] */
    ck_assert_ptr_nonnull(strstr(ev[0], "\"role\":\"assistant\""));
    ck_assert_ptr_nonnull(strstr(ev[2], "\"content\":\"tok1 \""));
    ck_assert_ptr_nonnull(strstr(ev[3], "\"finish_reason\":\"stop\""));
    cJSON *usage = cJSON_Parse(ev[4] + strlen("data: "));
    ck_assert_int_eq(cJSON_GetArraySize(get(usage, "choices")), 0);
    ck_assert_int_eq((int)num(usage, "usage.completion_tokens"), 2);
    ck_assert_str_eq(str(usage, "model"), "m/x");
    ck_assert_str_eq(ev[5], "data: [DONE]");
    cJSON_Delete(usage);
    h_strv_free(ev, n);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_comments_come_before_data)
{
    struct h_resp r;
    post(&r, CHAT, "{\"stream\":true,\"fake\":{\"comments\":2,\"interval_ms\":50}}", NULL);
    size_t n;
    char **ev = h_sse_split(r.body, &n);
    ck_assert_uint_ge(n, 3);
    ck_assert_str_eq(ev[0], ": OPENROUTER PROCESSING");
    ck_assert_str_eq(ev[1], ": OPENROUTER PROCESSING");
    ck_assert_ptr_nonnull(strstr(ev[2], "data: {"));
    ck_assert(arrival_of(&r, "data: {") - arrival_of(&r, ": OPENROUTER") >= 0.09);
    h_strv_free(ev, n);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_byte_by_byte_crlf_stream_is_well_framed)
{
    struct h_resp r;
    ck_assert_int_eq(
        post(&r, CHAT, "{\"stream\":true,\"fake\":{\"byte_by_byte\":true,\"crlf\":true}}", NULL),
        0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"content\":\"tok2 \"}"));
    ck_assert_ptr_nonnull(strstr(r.body, "}\r\n\r\ndata: [DONE]\r\n\r\n"));
    ck_assert_ptr_null(strstr(r.body, "}\n\n"));
    ck_assert_uint_gt(r.nticks, 1);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_event_bytes_pads_content_chunks)
{
    struct h_resp r;
    post(&r, CHAT, "{\"stream\":true,\"fake\":{\"events\":2,\"event_bytes\":5000}}", NULL);
    size_t n;
    char **ev = h_sse_split(r.body, &n);
    ck_assert_uint_eq(n, 6);
    ck_assert_uint_ge(strlen(ev[1]), 4990);
    ck_assert_uint_le(strlen(ev[1]), 5000);
    h_strv_free(ev, n);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_status_429_carries_retry_after)
{
    struct h_resp r;
    post(&r, CHAT, "{\"fake\":{\"status\":429,\"retry_after\":\"7\"}}", NULL);
    ck_assert_int_eq(r.status, 429);
    ck_assert_str_eq(h_header(&r, "Retry-After"), "7");
    ck_assert_ptr_nonnull(h_header(&r, "X-Generation-Id"));
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_int_eq((int)num(doc, "error.code"), 429);
    ck_assert_str_eq(str(doc, "error.metadata.error_type"), "fake");
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_fail_times_then_success)
{
    const char *body = "{\"fake\":{\"fail_times\":2,\"key\":\"k1\",\"retry_after\":\"1\"}}";
    long want[] = {503, 503, 200, 200};
    for (int i = 0; i < 4; i++) {
        struct h_resp r;
        post(&r, CHAT, body, NULL);
        ck_assert_int_eq(r.status, want[i]);
        if (want[i] == 503)
            ck_assert_str_eq(h_header(&r, "Retry-After"), "1");
        h_resp_free(&r);
    }
    struct h_resp r; /* counters are per key */
    post(&r, CHAT, "{\"fake\":{\"fail_times\":1,\"fail_status\":502,\"key\":\"k2\"}}", NULL);
    ck_assert_int_eq(r.status, 502);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_drop_after_cuts_the_body)
{
    struct h_resp r;
    int rc = post(&r, CHAT, "{\"stream\":true,\"fake\":{\"events\":3,\"drop_after\":1}}", NULL);
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "tok0 "));
    ck_assert_ptr_null(strstr(r.body, "tok1 "));
    ck_assert_ptr_null(strstr(r.body, "[DONE]"));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_error_after_ends_with_error_event_and_no_done)
{
    const char *bodies[] = {
        "{\"stream\":true,\"fake\":{\"events\":4,\"error_after\":2}}",
        "{\"stream\":true,\"fake\":{\"events\":4,\"error_after\":2,\"error_code_string\":true}}"};
    for (int i = 0; i < 2; i++) {
        struct h_resp r;
        ck_assert_int_eq(post(&r, CHAT, bodies[i], NULL), 0);
        size_t n;
        char **ev = h_sse_split(r.body, &n);
        ck_assert_uint_eq(n, 4); /* role, tok0, tok1, error */
        cJSON *err = cJSON_Parse(ev[n - 1] + strlen("data: "));
        ck_assert_str_eq(str(err, "choices.0.finish_reason"), "error");
        ck_assert_str_eq(str(err, "error.message"), "fake mid-stream error");
        if (i == 0)
            ck_assert_int_eq((int)num(err, "error.code"), 502);
        else
            ck_assert_str_eq(str(err, "error.code"), "server_error");
        ck_assert_ptr_null(strstr(r.body, "[DONE]"));
        ck_assert_ptr_null(strstr(r.body, "\"usage\""));
        cJSON_Delete(err);
        h_strv_free(ev, n);
        h_resp_free(&r);
    }
}
END_TEST

START_TEST(test_no_done_ends_cleanly_after_usage)
{
    struct h_resp r;
    ck_assert_int_eq(post(&r, CHAT, "{\"stream\":true,\"fake\":{\"no_done\":true}}", NULL), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "\"usage\""));
    ck_assert_ptr_null(strstr(r.body, "[DONE]"));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_record_has_headers_and_exact_body)
{
    const char *body = "{ \"model\" : \"a/b\",\n \"fake\":{\"tag\":\"rec\"}, \"x\":\"\\u00e9\" }";
    const char *hdrs[] = {"Authorization: Bearer sk-or-test", "X-Title: e2e", NULL};
    struct h_resp r;
    h_request(&r, fake.port, "POST", CHAT "?a=1&b=%20", body, hdrs, NULL);
    h_resp_free(&r);
    cJSON *rec = h_fake_wait(fake.port, "rec", "completed", 2000);
    ck_assert_ptr_nonnull(rec);
    ck_assert_str_eq(str(rec, "headers.authorization"), "Bearer sk-or-test");
    ck_assert_str_eq(str(rec, "headers.x-title"), "e2e");
    ck_assert_str_eq(str(rec, "body"), body);
    ck_assert_str_eq(str(rec, "path"), CHAT "?a=1&b=%20");
    ck_assert_str_eq(str(rec, "method"), "POST");
    ck_assert_int_eq((int)num(rec, "seq"), 1);
    ck_assert_int_eq((int)num(rec, "status"), 200);
    ck_assert(cJSON_IsFalse(get(rec, "aborted")));
    cJSON_Delete(rec);
}
END_TEST

START_TEST(test_client_abort_marks_record_aborted)
{
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 1};
    double t0 = h_now();
    int rc =
        post(&r, CHAT,
             "{\"stream\":true,\"fake\":{\"tag\":\"ab\",\"events\":100,\"interval_ms\":100}}", &o);
    ck_assert_int_ne(rc, 0);
    h_resp_free(&r);
    cJSON *rec = h_fake_wait(fake.port, "ab", "aborted", 3000);
    ck_assert_ptr_nonnull(rec);
    ck_assert(cJSON_IsFalse(get(rec, "completed")));
    ck_assert_int_lt((int)num(rec, "events_sent"), 10);
    ck_assert(h_now() - t0 < 2.0);
    cJSON_Delete(rec);
}
END_TEST

START_TEST(test_hang_after_stalls_until_the_client_leaves)
{
    struct h_resp r;
    struct h_req_opts o = {.timeout_ms = 500};
    int rc = post(&r, CHAT, "{\"stream\":true,\"fake\":{\"tag\":\"ha\",\"hang_after\":1}}", &o);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_nonnull(strstr(r.body, "tok0 "));
    ck_assert_ptr_null(strstr(r.body, "tok1 "));
    h_resp_free(&r);
    cJSON *rec = h_fake_wait(fake.port, "ha", "aborted", 2000);
    ck_assert_ptr_nonnull(rec);
    ck_assert_int_eq((int)num(rec, "events_sent"), 2);
    cJSON_Delete(rec);
}
END_TEST

START_TEST(test_hang_ms_delays_the_headers)
{
    struct h_resp r;
    post(&r, CHAT, "{\"fake\":{\"hang_ms\":300}}", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert(r.t_headers - r.t_start >= 0.29);
    h_resp_free(&r);

    struct h_req_opts o = {.timeout_ms = 300}; /* a hang the client gives up on */
    ck_assert_int_ne(post(&r, CHAT, "{\"fake\":{\"tag\":\"hm\",\"hang_ms\":100000000}}", &o), 0);
    h_resp_free(&r);
    cJSON *rec = h_fake_wait(fake.port, "hm", "aborted", 2000);
    ck_assert_ptr_nonnull(rec);
    cJSON_Delete(rec);
}
END_TEST

START_TEST(test_close_before_headers_gives_an_empty_reply)
{
    struct h_resp r;
    int rc = post(&r, CHAT, "{\"fake\":{\"close_before_headers\":true}}", NULL);
    ck_assert_int_eq(rc, 52); /* CURLE_GOT_NOTHING */
    ck_assert_int_eq(r.status, 0);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_notjson_and_body_bytes)
{
    struct h_resp r;
    post(&r, CHAT, "{\"fake\":{\"notjson\":true}}", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "this is not json");
    h_resp_free(&r);

    post(&r, CHAT, "{\"fake\":{\"body_bytes\":200000}}", NULL);
    ck_assert_uint_ge(r.len, 199000);
    ck_assert_uint_le(r.len, 201000);
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_ptr_nonnull(doc);
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_legacy_completions_and_embeddings)
{
    struct h_resp r;
    post(&r, "/api/v1/completions", "{\"prompt\":\"hi\"}", NULL);
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_str_eq(str(doc, "choices.0.text"), "Hello from the fake upstream.");
    cJSON_Delete(doc);
    h_resp_free(&r);

    post(&r, "/api/v1/completions", "{\"prompt\":\"hi\",\"stream\":true}", NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\"text\":\"tok0 \""));
    ck_assert_ptr_nonnull(strstr(r.body, "data: [DONE]"));
    h_resp_free(&r);

    post(&r, "/api/v1/embeddings", "{\"model\":\"e/m\",\"input\":\"x\"}", NULL);
    ck_assert_ptr_nonnull(h_header(&r, "X-Generation-Id"));
    doc = cJSON_Parse(r.body);
    ck_assert_str_eq(str(doc, "object"), "list");
    ck_assert_double_eq_tol(num(doc, "data.0.embedding.2"), 0.3, 1e-9);
    ck_assert_double_eq_tol(num(doc, "usage.cost"), 0.00001, 1e-12);
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_generation_lookup_lags)
{
    struct h_resp r;
    post(&r, CHAT, "{\"fake\":{\"generation_lag\":2,\"usage\":{\"cost\":0.5}}}", NULL);
    ck_assert_str_eq(h_header(&r, "X-Generation-Id"), "gen-1");
    h_resp_free(&r);
    long want[] = {404, 404, 200};
    for (int i = 0; i < 3; i++) {
        h_request(&r, fake.port, "GET", "/api/v1/generation?id=gen-1", NULL, NULL, NULL);
        ck_assert_int_eq(r.status, want[i]);
        if (want[i] == 200) {
            cJSON *doc = cJSON_Parse(r.body);
            ck_assert_str_eq(str(doc, "data.id"), "gen-1");
            ck_assert_double_eq_tol(num(doc, "data.total_cost"), 0.5, 1e-12);
            ck_assert_int_eq((int)num(doc, "data.tokens_completion"), 7);
            ck_assert(cJSON_IsFalse(get(doc, "data.streamed")));
            ck_assert(cJSON_IsFalse(get(doc, "data.cancelled")));
            cJSON_Delete(doc);
        }
        h_resp_free(&r);
    }
    h_request(&r, fake.port, "GET", "/api/v1/generation?id=gen-999", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_models_and_key)
{
    struct h_resp r;
    h_request(&r, fake.port, "GET", "/api/v1/models", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_str_eq(str(doc, "data.1.id"), "test/awkward");
    ck_assert_str_eq(str(doc, "data.1.pricing.request"), "0.0001");
    ck_assert_str_eq(str(doc, "data.0.pricing.completion"), "0.0000006");
    cJSON_Delete(doc);
    h_resp_free(&r);

    h_request(&r, fake.port, "GET", "/api/v1/key", NULL, NULL, NULL);
    doc = cJSON_Parse(r.body);
    ck_assert_str_eq(str(doc, "data.label"), "fake");
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_unknown_path_is_404_in_error_shape)
{
    struct h_resp r;
    h_request(&r, fake.port, "GET", "/api/v1/nope", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    cJSON *doc = cJSON_Parse(r.body);
    ck_assert_int_eq((int)num(doc, "error.code"), 404);
    str(doc, "error.message");
    cJSON_Delete(doc);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_reset_forgets_records_and_counters)
{
    struct h_resp r;
    post(&r, CHAT, "{\"fake\":{\"fail_times\":1,\"key\":\"rs\",\"tag\":\"t\"}}", NULL);
    ck_assert_int_eq(r.status, 503);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "t"), 1);
    h_fake_reset(fake.port);
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 0);
    post(&r, CHAT, "{\"fake\":{\"fail_times\":1,\"key\":\"rs\"}}", NULL);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(h_header(&r, "X-Generation-Id"), "gen-1");
    h_resp_free(&r);
}
END_TEST

START_TEST(test_require_key_rejects_missing_key)
{
    struct h_proc k = {0};
    ck_assert_int_eq(h_fake_start(&k, "--require-key sk-or-test"), 0);
    struct h_resp r;
    h_request(&r, k.port, "POST", CHAT, "{}", NULL, NULL);
    ck_assert_int_eq(r.status, 401);
    ck_assert_ptr_nonnull(strstr(r.body, "No auth credentials found"));
    h_resp_free(&r);
    const char *hdrs[] = {"Authorization: Bearer sk-or-test", NULL};
    h_request(&r, k.port, "POST", CHAT, "{}", hdrs, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    ck_assert_int_eq(h_proc_stop(&k, SIGTERM, 2000), 0);
    h_proc_cleanup(&k);
    h_fake_port = fake.port;
}
END_TEST

START_TEST(test_sigterm_exits_promptly_despite_hanging_responses)
{
    struct h_async *a = h_request_async(
        fake.port, "POST", CHAT, "{\"fake\":{\"tag\":\"sig\",\"hang_ms\":100000000}}", NULL, NULL);
    struct h_async *b = h_request_async(
        fake.port, "POST", CHAT, "{\"stream\":true,\"fake\":{\"tag\":\"sig\",\"hang_after\":1}}",
        NULL, NULL);
    for (int i = 0; i < 100 && h_fake_count(fake.port, "sig") < 2; i++)
        usleep(10000);
    double t0 = h_now();
    ck_assert_int_eq(h_proc_stop(&fake, SIGTERM, 3000), 0);
    ck_assert_msg(h_now() - t0 < 1.0, "exit took %.3f s", h_now() - t0);
    struct h_resp r;
    ck_assert_int_ne(h_async_wait(a, &r), 0);
    h_resp_free(&r);
    ck_assert_int_ne(h_async_wait(b, &r), 0);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0); /* for teardown */
}
END_TEST

START_TEST(test_harness_run_and_files)
{
    char *out, *err;
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    ck_assert_int_eq(h_run(argv, &out, &err), 3);
    ck_assert_str_eq(out, "out\n");
    ck_assert_str_eq(err, "err\n");
    free(out);
    free(err);
    char *path = h_temp_file("a = @PORT@\n");
    char *text = h_read_file(path);
    ck_assert_str_eq(text, "a = @PORT@\n");
    free(text);
    unlink(path);
    free(path);
    struct h_proc p = {.port = 1234, .dir = "/x"};
    h_fake_port = 99;
    char *s = h_subst(&p, "@PORT@ @FAKE@ @DIR@/s @PORT@");
    ck_assert_str_eq(s, "1234 99 /x/s 1234");
    free(s);
    h_fake_port = fake.port;
    ck_assert_int_gt(h_free_port(), 0);
}
END_TEST

START_TEST(test_sse_split_handles_crlf_and_truncation)
{
    size_t n;
    char **ev = h_sse_split(": c\r\n\r\ndata: a\ndata: b\n\n\n\ndata: tail", &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(ev[0], ": c");
    ck_assert_str_eq(ev[1], "data: a\ndata: b");
    ck_assert_str_eq(ev[2], "data: tail");
    h_strv_free(ev, n);
}
END_TEST

int main(void)
{
    alarm(300); /* the whole suite is bounded, whatever hangs */
    Suite *s = suite_create("fake");
    TCase *tc = tcase_create("fake");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_json_answer_has_usage_and_generation_id);
    tcase_add_test(tc, test_usage_override_replaces_and_removes_members);
    tcase_add_test(tc, test_paced_stream_arrives_incrementally);
    tcase_add_test(tc, test_stream_event_sequence_ends_with_usage_then_done);
    tcase_add_test(tc, test_comments_come_before_data);
    tcase_add_test(tc, test_byte_by_byte_crlf_stream_is_well_framed);
    tcase_add_test(tc, test_event_bytes_pads_content_chunks);
    tcase_add_test(tc, test_status_429_carries_retry_after);
    tcase_add_test(tc, test_fail_times_then_success);
    tcase_add_test(tc, test_drop_after_cuts_the_body);
    tcase_add_test(tc, test_error_after_ends_with_error_event_and_no_done);
    tcase_add_test(tc, test_no_done_ends_cleanly_after_usage);
    tcase_add_test(tc, test_record_has_headers_and_exact_body);
    tcase_add_test(tc, test_client_abort_marks_record_aborted);
    tcase_add_test(tc, test_hang_after_stalls_until_the_client_leaves);
    tcase_add_test(tc, test_hang_ms_delays_the_headers);
    tcase_add_test(tc, test_close_before_headers_gives_an_empty_reply);
    tcase_add_test(tc, test_notjson_and_body_bytes);
    tcase_add_test(tc, test_legacy_completions_and_embeddings);
    tcase_add_test(tc, test_generation_lookup_lags);
    tcase_add_test(tc, test_models_and_key);
    tcase_add_test(tc, test_unknown_path_is_404_in_error_shape);
    tcase_add_test(tc, test_reset_forgets_records_and_counters);
    tcase_add_test(tc, test_require_key_rejects_missing_key);
    tcase_add_test(tc, test_sigterm_exits_promptly_despite_hanging_responses);
    tcase_add_test(tc, test_harness_run_and_files);
    tcase_add_test(tc, test_sse_split_handles_crlf_and_truncation);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
