/* End-to-end tests of the relay: the real build/orproxy in front of the
 * fake OpenRouter.  Each test states what the client sees (status, bytes,
 * timing) and what upstream received (from the fake's records). */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY
#define CLIENT_KEY "client-secret-never-forwarded"

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

static const char *conf_main =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; connect_timeout_s = 2;\n"
    "  idle_timeout_s = 1; referer = \"https://example.test/app\"; title = \"orproxy e2e\"; };\n"
    "retry = { max_attempts = 3; base_delay_ms = 50; max_delay_ms = 1500; };\n"
    "limits = { max_body_bytes = 4096L; };\n"
    "stream = { keepalive_s = 1; };\n"
    "workers = 2;\n"
    "shutdown_timeout_s = 5;\n";

static struct h_proc fake, orp;

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf_main, env_key), 0);
    /* orproxy fetches the price table (GET /models) at start: wait for it,
     * then forget it, so each test sees only its own upstream requests. */
    for (int i = 0; i < 250 && h_fake_count(fake.port, NULL) < 1; i++)
        usleep(20000);
    h_fake_reset(fake.port);
}

static void teardown(void)
{
    char *log = h_read_file(orp.log);
    /* The key never reaches a log line. */
    if (log != NULL)
        ck_assert_ptr_null(strstr(log, KEY));
    free(log);
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

/* Every response a client sees: the key is never in it. */
static void assert_no_key(const struct h_resp *r)
{
    ck_assert_ptr_null(strstr(r->body, KEY));
    ck_assert_ptr_null(strstr(r->raw_headers ? r->raw_headers : "", KEY));
}

static int post(struct h_resp *r, const char *path, const char *body, const char *const *hdrs,
                const struct h_req_opts *o)
{
    int rc = h_request(r, orp.port, "POST", path, body, hdrs, o);
    assert_no_key(r);
    return rc;
}

static cJSON *record(const char *tag)
{
    cJSON *rec = h_fake_wait(fake.port, tag, NULL, 3000);
    ck_assert_msg(rec != NULL, "upstream saw no request tagged %s", tag);
    return rec;
}

static const char *rec_header(cJSON *rec, const char *name)
{
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Asserts the OpenAI error shape with this status and code. */
static void assert_error(const struct h_resp *r, long status, const char *code)
{
    cJSON *root, *err;
    ck_assert_int_eq(r->status, status);
    ck_assert_str_eq(h_header(r, "Content-Type"), "application/json");
    root = cJSON_Parse(r->body);
    ck_assert_msg(root != NULL, "error body is not JSON: %s", r->body);
    err = cJSON_GetObjectItem(root, "error");
    ck_assert(cJSON_IsObject(err));
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(err, "message")));
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(err, "type")));
    ck_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, code);
    cJSON_Delete(root);
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* ---- plain JSON relay ---------------------------------------------------------------- */

START_TEST(test_json_response_relayed_and_key_replaced)
{
    const char *body = "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
                       "\"content\":\"hi\"}],\"fake\":{\"tag\":\"json1\"}}";
    const char *hdrs[] = {"Authorization: Bearer " CLIENT_KEY, "X-Custom: kept", NULL};
    struct h_resp r;
    cJSON *rec, *root;

    ck_assert_int_eq(post(&r, "/v1/chat/completions", body, hdrs, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(h_header(&r, "Content-Type"), "application/json");
    ck_assert_ptr_nonnull(h_header(&r, "X-Generation-Id"));
    ck_assert_ptr_nonnull(h_header(&r, "X-Request-Id"));
    root = cJSON_Parse(r.body);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(
                         cJSON_GetObjectItem(root, "choices"), 0), "message"), "content")
                         ->valuestring,
                     "Hello from the fake upstream.");
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "usage"), "prompt_tokens")->valueint, 11);
    cJSON_Delete(root);

    rec = record("json1");
    ck_assert_str_eq(rec_header(rec, "authorization"), "Bearer " KEY);
    ck_assert_str_eq(cJSON_GetObjectItem(rec, "body")->valuestring, body);
    ck_assert_str_eq(cJSON_GetObjectItem(rec, "path")->valuestring, "/api/v1/chat/completions");
    ck_assert_str_eq(rec_header(rec, "x-custom"), "kept");
    ck_assert_str_eq(rec_header(rec, "http-referer"), "https://example.test/app");
    ck_assert_str_eq(rec_header(rec, "x-title"), "orproxy e2e");
    cJSON_Delete(rec);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_unknown_fields_pass_through_byte_for_byte)
{
    /* Odd spacing, unicode escapes, duplicate-looking keys and every
     * OpenRouter-only field: the proxy must not re-serialise any of it. */
    const char *body =
        "{ \"model\" : \"x/y\",\n \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \xe2\x9c\x93\"}],"
        "\"models\":[\"a/b\",\"c/d\"],\"provider\":{\"order\":[\"Together\"],\"allow_fallbacks\":false,"
        "\"max_price\":{\"prompt\":1}},\"transforms\":[\"middle-out\"],\"reasoning\":{\"effort\":"
        "\"high\"},\"usage\":{\"include\":true},\"stream_options\":{\"include_usage\":true},"
        "\"top_k\":40,\"min_p\":0.05,\"user\":\"u-1\",\"session_id\":\"s\",\"metadata\":{\"k\":\"v\"},"
        "\"temperature\":1.0e0,\"fake\":{\"tag\":\"intact\"}}  ";
    struct h_resp r;
    cJSON *rec;

    ck_assert_int_eq(post(&r, "/api/v1/chat/completions", body, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    rec = record("intact");
    ck_assert_str_eq(cJSON_GetObjectItem(rec, "body")->valuestring, body);
    cJSON_Delete(rec);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_hop_by_hop_headers_dropped)
{
    const char *hdrs[] = {"Connection: keep-alive, X-Hop", "X-Hop: secret-hop", "Keep-Alive: timeout=5",
                          "TE: trailers", "Proxy-Authorization: Basic Zm9vOmJhcg==",
                          "X-End-To-End: yes", NULL};
    struct h_resp r;
    cJSON *rec;

    ck_assert_int_eq(post(&r, "/v1/chat/completions", "{\"fake\":{\"tag\":\"hop\"}}", hdrs, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    rec = record("hop");
    ck_assert_ptr_null(rec_header(rec, "x-hop"));
    ck_assert_ptr_null(rec_header(rec, "keep-alive"));
    ck_assert_ptr_null(rec_header(rec, "te"));
    ck_assert_ptr_null(rec_header(rec, "proxy-authorization"));
    ck_assert_str_eq(rec_header(rec, "x-end-to-end"), "yes");
    cJSON_Delete(rec);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_request_id_echoed_or_generated)
{
    const char *mine[] = {"X-Request-Id: trace-42.a_b:c", NULL};
    const char *bad[] = {"X-Request-Id: has spaces <script>", NULL};
    struct h_resp r;
    cJSON *rec;

    post(&r, "/v1/chat/completions", "{\"fake\":{\"tag\":\"rid\"}}", mine, NULL);
    ck_assert_str_eq(h_header(&r, "X-Request-Id"), "trace-42.a_b:c");
    rec = record("rid");
    ck_assert_str_eq(rec_header(rec, "x-request-id"), "trace-42.a_b:c");
    cJSON_Delete(rec);
    h_resp_free(&r);

    post(&r, "/v1/chat/completions", "{}", bad, NULL);
    ck_assert(strncmp(h_header(&r, "X-Request-Id"), "req_", 4) == 0);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_get_models_and_query_forwarded)
{
    struct h_resp r;
    cJSON *recs;

    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/v1/models", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"openai/gpt-4o-mini\""));
    h_resp_free(&r);

    h_fake_reset(fake.port);
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/api/v1/generation?id=gen-1%2Bx", NULL, NULL, NULL), 0);
    recs = h_fake_requests(fake.port);
    ck_assert_int_eq(cJSON_GetArraySize(recs), 1);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(recs, 0), "path")->valuestring,
                     "/api/v1/generation?id=gen-1%2Bx");
    cJSON_Delete(recs);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_embeddings_and_legacy_completions)
{
    struct h_resp r;

    post(&r, "/v1/embeddings", "{\"model\":\"e\",\"input\":\"hello\"}", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"embedding\""));
    h_resp_free(&r);
    post(&r, "/v1/completions", "{\"model\":\"m\",\"prompt\":\"say\"}", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"text\""));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_upstream_non_json_200_relayed_unchanged)
{
    struct h_resp r;
    post(&r, "/v1/chat/completions", "{\"fake\":{\"notjson\":true}}", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "this is not json");
    h_resp_free(&r);
}
END_TEST

/* ---- proxy-made errors ----------------------------------------------------------------- */

START_TEST(test_body_not_json_is_400)
{
    struct h_resp r;
    post(&r, "/v1/chat/completions", "{\"model\": nope", NULL, NULL);
    assert_error(&r, 400, "invalid_json");
    h_resp_free(&r);
    post(&r, "/v1/chat/completions", "[1,2,3]", NULL, NULL);
    assert_error(&r, 400, "invalid_body");
    h_resp_free(&r);
    post(&r, "/v1/embeddings", "", NULL, NULL);
    assert_error(&r, 400, "invalid_json");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 0);
}
END_TEST

START_TEST(test_body_at_limit_ok_one_over_is_413)
{
    /* max_body_bytes = 4096: a JSON object of exactly 4096 bytes passes. */
    char body[4098];
    struct h_resp r;
    const char *head = "{\"fake\":{\"tag\":\"limit\"},\"pad\":\"";
    size_t n = strlen(head);

    memcpy(body, head, n);
    memset(body + n, 'x', 4096 - n - 2);
    memcpy(body + 4094, "\"}", 3);
    ck_assert_uint_eq(strlen(body), 4096);
    post(&r, "/v1/chat/completions", body, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);

    memcpy(body + 4094, "x\"}", 4);
    ck_assert_uint_eq(strlen(body), 4097);
    post(&r, "/v1/chat/completions", body, NULL, NULL);
    assert_error(&r, 413, "body_too_large");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "limit"), 1);

    /* Chunked upload without Content-Length: caught while reading. */
    {
        const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
        memcpy(body + 4094, "x\"}", 4);
        post(&r, "/v1/chat/completions", body, chunked, NULL);
        assert_error(&r, 413, "body_too_large");
        h_resp_free(&r);
    }
    /* And the daemon keeps serving. */
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/healthz", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_unknown_path_404_wrong_method_405)
{
    struct h_resp r;
    h_request(&r, orp.port, "GET", "/v1/nope", NULL, NULL, NULL);
    assert_error(&r, 404, "not_found");
    h_resp_free(&r);
    h_request(&r, orp.port, "GET", "/v1/chat/completions", NULL, NULL, NULL);
    assert_error(&r, 405, "method_not_allowed");
    ck_assert_str_eq(h_header(&r, "Allow"), "POST");
    h_resp_free(&r);
    h_request(&r, orp.port, "DELETE", "/v1/models", NULL, NULL, NULL);
    assert_error(&r, 405, "method_not_allowed");
    ck_assert_str_eq(h_header(&r, "Allow"), "GET, HEAD");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 0);
}
END_TEST

START_TEST(test_healthz_local)
{
    struct h_resp r;
    h_request(&r, orp.port, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 0);
}
END_TEST

/* ---- retries ----------------------------------------------------------------------------- */

START_TEST(test_retry_5xx_then_success)
{
    static const int statuses[] = {500, 502, 503, 504, 524, 529, 408};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        char body[256], tag[32];
        struct h_resp r;
        snprintf(tag, sizeof tag, "r5xx-%d", statuses[i]);
        snprintf(body, sizeof body,
                 "{\"fake\":{\"tag\":\"%s\",\"key\":\"%s\",\"fail_times\":2,\"fail_status\":%d}}",
                 tag, tag, statuses[i]);
        post(&r, "/v1/chat/completions", body, NULL, NULL);
        ck_assert_msg(r.status == 200, "status %d: got %ld", statuses[i], r.status);
        ck_assert_int_eq(h_fake_count(fake.port, tag), 3);
        h_resp_free(&r);
    }
}
END_TEST

START_TEST(test_retry_exhausted_relays_upstream_answer)
{
    struct h_resp r;
    post(&r, "/v1/chat/completions", "{\"fake\":{\"tag\":\"exh\",\"status\":503}}", NULL, NULL);
    ck_assert_int_eq(r.status, 503);
    ck_assert_ptr_nonnull(strstr(r.body, "fake upstream error 503"));
    ck_assert_int_eq(h_fake_count(fake.port, "exh"), 3);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_retry_429_honours_retry_after)
{
    struct h_resp r;
    post(&r, "/v1/chat/completions",
         "{\"fake\":{\"tag\":\"ra\",\"key\":\"ra\",\"fail_times\":1,\"fail_status\":429,"
         "\"retry_after\":\"1\"}}",
         NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(h_fake_count(fake.port, "ra"), 2);
    ck_assert_msg(r.t_end - r.t_start >= 0.95, "retried after %.3f s", r.t_end - r.t_start);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_retry_after_beyond_cap_relayed_at_once)
{
    struct h_resp r;
    post(&r, "/v1/chat/completions",
         "{\"fake\":{\"tag\":\"racap\",\"status\":429,\"retry_after\":\"30\"}}", NULL, NULL);
    ck_assert_int_eq(r.status, 429);
    ck_assert_str_eq(h_header(&r, "Retry-After"), "30");
    ck_assert_int_eq(h_fake_count(fake.port, "racap"), 1);
    ck_assert(r.t_end - r.t_start < 1.0);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_client_errors_never_retried)
{
    static const int statuses[] = {400, 401, 402, 403, 404, 413, 422};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        char body[128], tag[32];
        struct h_resp r;
        snprintf(tag, sizeof tag, "norety-%d", statuses[i]);
        snprintf(body, sizeof body, "{\"fake\":{\"tag\":\"%s\",\"status\":%d}}", tag, statuses[i]);
        post(&r, "/v1/chat/completions", body, NULL, NULL);
        ck_assert_int_eq(r.status, statuses[i]);
        ck_assert_ptr_nonnull(strstr(r.body, "fake upstream error"));
        ck_assert_int_eq(h_fake_count(fake.port, tag), 1);
        h_resp_free(&r);
    }
}
END_TEST

START_TEST(test_empty_reply_retried_then_502)
{
    struct h_resp r;
    post(&r, "/v1/chat/completions", "{\"fake\":{\"tag\":\"empty\",\"close_before_headers\":true}}",
         NULL, NULL);
    assert_error(&r, 502, "upstream_unreachable");
    ck_assert_int_eq(h_fake_count(fake.port, "empty"), 3);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_upstream_hang_is_504_after_retries)
{
    struct h_resp r;
    struct h_req_opts o = {.timeout_ms = 30000};
    post(&r, "/v1/chat/completions", "{\"fake\":{\"tag\":\"hang\",\"hang_ms\":60000}}", NULL, &o);
    assert_error(&r, 504, "upstream_timeout");
    ck_assert_int_eq(h_fake_count(fake.port, "hang"), 3);
    h_resp_free(&r);
}
END_TEST

/* ---- streaming --------------------------------------------------------------------------- */

static const char *stream_body(char *buf, size_t n, const char *tag, const char *extra)
{
    snprintf(buf, n, "{\"model\":\"openai/gpt-4o-mini\",\"stream\":true,\"messages\":[],"
             "\"fake\":{\"tag\":\"%s\"%s%s}}", tag, extra[0] ? "," : "", extra);
    return buf;
}

START_TEST(test_stream_relayed_incrementally)
{
    char body[512];
    struct h_resp r;
    size_t n;
    char **ev;
    double first_event = 0;

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "inc", "\"events\":5,\"interval_ms\":200,\"comments\":1"),
         NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strncmp(h_header(&r, "Content-Type"), "text/event-stream", 17) == 0);
    ev = h_sse_split(r.body, &n);
    /* comment, role, 5 content, finish, usage, [DONE] */
    ck_assert_uint_eq(n, 10);
    ck_assert_str_eq(ev[0], ": OPENROUTER PROCESSING");
    ck_assert_str_eq(ev[9], "data: [DONE]");
    ck_assert_ptr_nonnull(strstr(ev[8], "\"usage\""));
    h_strv_free(ev, n);
    /* The role chunk arrived while upstream was still pacing the rest
     * (~0.8 s of pacing after it). */
    for (size_t i = 0; i < r.nticks; i++) {
        if (r.ticks[i].bytes > strlen(": OPENROUTER PROCESSING\n\n") + 10) {
            first_event = r.ticks[i].t;
            break;
        }
    }
    ck_assert(first_event > 0);
    ck_assert_msg(r.t_end - first_event > 0.5, "first event %.3f s before the end",
                  r.t_end - first_event);
    ck_assert_uint_ge(r.nticks, 6);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_stream_crlf_byte_by_byte_relayed_exactly)
{
    char body[512];
    struct h_resp r;
    size_t n;
    char **ev;

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "bytes", "\"events\":4,\"crlf\":true,\"byte_by_byte\":true,\"comments\":2"),
         NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert(ends_with(r.body, r.len, "data: [DONE]\r\n\r\n"));
    ck_assert(strncmp(r.body, ": OPENROUTER PROCESSING\r\n\r\n: OPENROUTER PROCESSING\r\n\r\ndata: {", 61) == 0);
    ev = h_sse_split(r.body, &n);
    ck_assert_uint_eq(n, 2 + 1 + 4 + 1 + 1 + 1);
    h_strv_free(ev, n);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_stream_upstream_error_event_passes_through)
{
    char body[512];
    struct h_resp r;

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "errev", "\"events\":5,\"error_after\":2"), NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, 0);
    ck_assert_ptr_nonnull(strstr(r.body, "fake mid-stream error"));
    ck_assert_ptr_null(strstr(r.body, "[DONE]"));
    ck_assert_ptr_null(strstr(r.body, "upstream_stream_error")); /* no second error */
    h_resp_free(&r);

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "errev2", "\"events\":5,\"error_after\":1,\"error_code_string\":true"),
         NULL, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\"server_error\""));
    ck_assert_ptr_null(strstr(r.body, "[DONE]"));
    h_resp_free(&r);
}
END_TEST

static void assert_ends_with_proxy_error_event(const struct h_resp *r)
{
    size_t n;
    char **ev = h_sse_split(r->body, &n);
    cJSON *root, *err;
    ck_assert_uint_ge(n, 1);
    ck_assert_msg(strncmp(ev[n - 1], "data: {", 7) == 0, "last event: %s", ev[n - 1]);
    root = cJSON_Parse(ev[n - 1] + 6);
    err = cJSON_GetObjectItem(root, "error");
    ck_assert(cJSON_IsObject(err));
    ck_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, "upstream_stream_error");
    ck_assert_str_eq(cJSON_GetObjectItem(err, "type")->valuestring, "upstream_error");
    ck_assert_ptr_null(strstr(r->body, "data: [DONE]"));
    ck_assert(ends_with(r->body, r->len, "}\n\n"));
    cJSON_Delete(root);
    h_strv_free(ev, n);
}

START_TEST(test_stream_cut_mid_body_ends_with_error_event)
{
    char body[512];
    struct h_resp r;
    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "drop", "\"events\":6,\"drop_after\":3,\"interval_ms\":20"), NULL,
         NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, 0); /* the client's stream ends cleanly... */
    assert_ends_with_proxy_error_event(&r); /* ...with an error, never silently */
    ck_assert_ptr_nonnull(strstr(r.body, "tok2 "));
    ck_assert_int_eq(h_fake_count(fake.port, "drop"), 1); /* committed: no retry */
    h_resp_free(&r);
}
END_TEST

START_TEST(test_stream_without_done_ends_with_error_event)
{
    char body[512];
    struct h_resp r;
    post(&r, "/v1/chat/completions", stream_body(body, sizeof body, "nodone", "\"no_done\":true"),
         NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    assert_ends_with_proxy_error_event(&r);
    ck_assert_ptr_nonnull(strstr(r.body, "\"usage\""));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_stream_silence_hits_idle_timeout)
{
    char body[512];
    struct h_resp r;
    struct h_req_opts o = {.timeout_ms = 20000};
    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "silent", "\"events\":5,\"hang_after\":1"), NULL, &o);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, 0);
    assert_ends_with_proxy_error_event(&r);
    ck_assert_ptr_nonnull(strstr(r.body, "sent nothing"));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_client_disconnect_aborts_upstream)
{
    char body[512];
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 1};
    cJSON *rec;

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "gone", "\"events\":100,\"interval_ms\":50"), NULL, &o);
    ck_assert_int_ne(r.curl_code, 0);
    rec = h_fake_wait(fake.port, "gone", "aborted", 3000);
    ck_assert_msg(rec != NULL, "upstream transfer was not aborted");
    ck_assert_int_lt(cJSON_GetObjectItem(rec, "events_sent")->valueint, 60);
    cJSON_Delete(rec);
    /* ...and the request is logged as cancelled. */
    ck_assert_msg(h_log_wait(&orp, "outcome=cancelled", 1000), "no cancelled request line in the log");
    h_resp_free(&r);
}
END_TEST

START_TEST(test_stream_silence_gets_keepalive_comments)
{
    /* stream.keepalive_s = 1: a 2.5 s pause upstream shows up as ": ping"
     * comments at event boundaries, and the stream still completes. */
    char body[512];
    struct h_resp r;
    size_t n;
    char **ev;
    int pings = 0;

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "ping", "\"events\":2,\"interval_ms\":2500"), NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ev = h_sse_split(r.body, &n);
    for (size_t i = 0; i < n; i++)
        pings += strcmp(ev[i], ": ping") == 0;
    ck_assert_int_ge(pings, 2);
    ck_assert_str_eq(ev[n - 1], "data: [DONE]");
    h_strv_free(ev, n);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_client_gone_during_silence_aborts_upstream)
{
    /* The client hangs up while upstream is silent: the next keep-alive
     * write fails and the upstream transfer is cancelled. */
    char body[512];
    struct h_resp r;
    struct h_req_opts o = {.abort_after_bytes = 1};
    cJSON *rec;

    post(&r, "/v1/chat/completions",
         stream_body(body, sizeof body, "silentgone", "\"events\":3,\"interval_ms\":30000"), NULL, &o);
    rec = h_fake_wait(fake.port, "silentgone", "aborted", 6000);
    ck_assert_msg(rec != NULL, "upstream not aborted while silent");
    cJSON_Delete(rec);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_request_log_line_fields)
{
    char body[512], *log, *line;
    const char *rid[] = {"X-Request-Id: logline-1", NULL};
    struct h_resp r;

    post(&r, "/v1/chat/completions", stream_body(body, sizeof body, "log", "\"events\":3"), rid, NULL);
    h_resp_free(&r);
    line = NULL;
    for (int i = 0; i < 50 && line == NULL; i++) {
        log = h_read_file(orp.log);
        line = log ? strstr(log, "request id=logline-1 ") : NULL;
        if (line != NULL) {
            char *end = strchr(line, '\n');
            if (end)
                *end = '\0';
            ck_assert_ptr_nonnull(strstr(line, "route=/chat/completions"));
            ck_assert_ptr_nonnull(strstr(line, "model=openai/gpt-4o-mini"));
            ck_assert_ptr_nonnull(strstr(line, "status=200"));
            ck_assert_ptr_nonnull(strstr(line, "stream=1"));
            ck_assert_ptr_nonnull(strstr(line, "attempts=1"));
            ck_assert_ptr_nonnull(strstr(line, "prompt_tokens=11"));
            ck_assert_ptr_nonnull(strstr(line, "completion_tokens=3"));
            ck_assert_ptr_nonnull(strstr(line, "cost=0.000123 cost_source=upstream"));
            ck_assert_ptr_nonnull(strstr(line, "ttfb_ms="));
            ck_assert_ptr_nonnull(strstr(line, "outcome=ok"));
            ck_assert_ptr_null(strstr(line, "messages"));
        }
        free(log);
        if (line == NULL)
            usleep(20000);
    }
    ck_assert_msg(line != NULL, "no request line for logline-1");
}
END_TEST

/* ---- other daemons --------------------------------------------------------------------- */

START_TEST(test_no_key_is_500_but_health_ok)
{
    struct h_proc p;
    struct h_resp r;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(h_orproxy_start(&p, conf_main, NULL), 0);
    h_request(&r, p.port, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    h_request(&r, p.port, "POST", "/v1/chat/completions", "{}", NULL, NULL);
    assert_error(&r, 500, "no_upstream_key");
    ck_assert_ptr_nonnull(strstr(r.body, "OPENROUTER_API_KEY"));
    h_resp_free(&r);
    ck_assert_int_eq(h_proc_stop(&p, SIGTERM, 10000), 0);
    h_proc_cleanup(&p);
}
END_TEST

START_TEST(test_connection_refused_is_502_after_retries)
{
    struct h_proc p;
    struct h_resp r;
    char conf[1024];
    int dead = h_free_port();

    memset(&p, 0, sizeof p);
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:%d/api/v1\"; };\n"
             "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 50; };\n",
             dead);
    ck_assert_int_eq(h_orproxy_start(&p, conf, env_key), 0);
    h_request(&r, p.port, "POST", "/v1/chat/completions", "{\"stream\":true}", NULL, NULL);
    assert_error(&r, 502, "upstream_unreachable");
    ck_assert_ptr_nonnull(strstr(r.body, "attempts: 2"));
    assert_no_key(&r);
    h_resp_free(&r);
    ck_assert_int_eq(h_proc_stop(&p, SIGTERM, 10000), 0);
    h_proc_cleanup(&p);
}
END_TEST

START_TEST(test_check_config_flag)
{
    char *good = h_temp_file("listen = { port = 8099; };\n");
    char *bad = h_temp_file("listen = { port = 8099; };\nretry = { max_attempts = 99; };\n");
    char *unknown = h_temp_file("\n\nlisten = { prot = 1; };\n");
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    char *out = NULL, *err = NULL, expect[512];

    const char *a1[] = {bin, "-t", "-c", good, NULL};
    ck_assert_int_eq(h_run(a1, &out, &err), 0);
    free(out);
    free(err);

    const char *a2[] = {bin, "--check-config", "-c", bad, NULL};
    ck_assert_int_eq(h_run(a2, &out, &err), 2);
    snprintf(expect, sizeof expect, "%s:2: retry.max_attempts must be between 1 and 10", bad);
    ck_assert_msg(strstr(err, expect) != NULL, "stderr: %s", err);
    free(out);
    free(err);

    const char *a3[] = {bin, "-t", "-c", unknown, NULL};
    ck_assert_int_eq(h_run(a3, &out, &err), 2);
    snprintf(expect, sizeof expect, "%s:3: unknown setting 'listen.prot'", unknown);
    ck_assert_msg(strstr(err, expect) != NULL, "stderr: %s", err);
    free(out);
    free(err);

    const char *a4[] = {bin, "-t", "-c", "/nonexistent/orproxy.conf", NULL};
    ck_assert_int_eq(h_run(a4, &out, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/orproxy.conf"));
    free(out);
    free(err);

    const char *a5[] = {bin, "--version", NULL};
    ck_assert_int_eq(h_run(a5, &out, &err), 0);
    ck_assert(strncmp(out, "orproxy ", 8) == 0);
    free(out);
    free(err);

    const char *a6[] = {bin, "--bogus", NULL};
    ck_assert_int_eq(h_run(a6, &out, &err), 2);
    free(out);
    free(err);

    unlink(good);
    unlink(bad);
    unlink(unknown);
    free(good);
    free(bad);
    free(unknown);
}
END_TEST

START_TEST(test_sigterm_exits_zero)
{
    struct h_proc p;
    memset(&p, 0, sizeof p);
    ck_assert_int_eq(h_orproxy_start(&p, conf_main, env_key), 0);
    ck_assert_int_eq(h_proc_stop(&p, SIGTERM, 10000), 0);
    h_proc_cleanup(&p);
}
END_TEST

static Suite *proxy_suite(void)
{
    Suite *s = suite_create("proxy");
    TCase *tc = tcase_create("relay");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_json_response_relayed_and_key_replaced);
    tcase_add_test(tc, test_unknown_fields_pass_through_byte_for_byte);
    tcase_add_test(tc, test_hop_by_hop_headers_dropped);
    tcase_add_test(tc, test_request_id_echoed_or_generated);
    tcase_add_test(tc, test_get_models_and_query_forwarded);
    tcase_add_test(tc, test_embeddings_and_legacy_completions);
    tcase_add_test(tc, test_upstream_non_json_200_relayed_unchanged);
    tcase_add_test(tc, test_body_not_json_is_400);
    tcase_add_test(tc, test_body_at_limit_ok_one_over_is_413);
    tcase_add_test(tc, test_unknown_path_404_wrong_method_405);
    tcase_add_test(tc, test_healthz_local);
    tcase_add_test(tc, test_retry_5xx_then_success);
    tcase_add_test(tc, test_retry_exhausted_relays_upstream_answer);
    tcase_add_test(tc, test_retry_429_honours_retry_after);
    tcase_add_test(tc, test_retry_after_beyond_cap_relayed_at_once);
    tcase_add_test(tc, test_client_errors_never_retried);
    tcase_add_test(tc, test_empty_reply_retried_then_502);
    tcase_add_test(tc, test_upstream_hang_is_504_after_retries);
    tcase_add_test(tc, test_stream_relayed_incrementally);
    tcase_add_test(tc, test_stream_crlf_byte_by_byte_relayed_exactly);
    tcase_add_test(tc, test_stream_upstream_error_event_passes_through);
    tcase_add_test(tc, test_stream_cut_mid_body_ends_with_error_event);
    tcase_add_test(tc, test_stream_without_done_ends_with_error_event);
    tcase_add_test(tc, test_stream_silence_hits_idle_timeout);
    tcase_add_test(tc, test_client_disconnect_aborts_upstream);
    tcase_add_test(tc, test_stream_silence_gets_keepalive_comments);
    tcase_add_test(tc, test_client_gone_during_silence_aborts_upstream);
    tcase_add_test(tc, test_request_log_line_fields);
    suite_add_tcase(s, tc);

    tc = tcase_create("daemon");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_no_key_is_500_but_health_ok);
    tcase_add_test(tc, test_connection_refused_is_502_after_retries);
    tcase_add_test(tc, test_check_config_flag);
    tcase_add_test(tc, test_sigterm_exits_zero);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(proxy_suite)
