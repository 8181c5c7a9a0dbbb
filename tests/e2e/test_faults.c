/* End-to-end fault injection (issue 7): the real build/orproxy between
 * misbehaving clients and a misbehaving fake OpenRouter.  Each test states
 * what the client gets and what ledger row the request leaves, and asserts
 * both; tests that move a lot of data also bound orproxy's resident memory
 * (VmRSS / VmHWM from /proc).  Raw sockets play the clients that libcurl
 * would not: hang-ups mid-upload, readers that stop reading, slow-loris
 * trickles, malformed HTTP, ten thousand idle connections.
 *
 * Covered elsewhere, not repeated here:
 *  - upstream error events with numeric and string codes passing through:
 *    test_proxy.c test_stream_upstream_error_event_passes_through (the
 *    ledger side is test_error_event_codes_recorded below);
 *  - an orderly upstream close mid-stream, a stream without [DONE] and a
 *    silent stream, as seen by the client: test_proxy.c
 *    test_stream_cut_mid_body_ends_with_error_event,
 *    test_stream_without_done_ends_with_error_event,
 *    test_stream_silence_hits_idle_timeout;
 *  - a body exactly at limits.max_body_bytes and one byte over (also
 *    chunked): test_proxy.c test_body_at_limit_ok_one_over_is_413;
 *  - an empty upstream reply and an upstream that never answers (retried,
 *    then 502/504): test_proxy.c test_empty_reply_retried_then_502,
 *    test_upstream_hang_is_504_after_retries. */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define KEY "sk-or-v1-FAULTS-SECRET-KEY-0123456789abcdef"
#define MIB (1024L * 1024L)
#define GIB (1024L * MIB)

/* Resident memory orproxy may reach while a gigabyte goes through it.  The
 * sanitizers' shadow memory and quarantine inflate RSS several times, so
 * their bound is looser; both are far below the gigabyte. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_LIMIT_KB (256L * 1024L)
#define SLOW 4
#else
#define RSS_LIMIT_KB (64L * 1024L)
#define SLOW 1
#endif

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

/* idle_timeout_s = 1 (unless a test needs upstream to outlast the client's
 * patience) makes silences quick to provoke; client_timeout_s = 2
 * likewise for silent clients; max_response_bytes = 16 MiB keeps the
 * gigabyte answer's buffer well inside the memory bound. */
static const char *conf_fmt =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; connect_timeout_s = 2;\n"
    "  idle_timeout_s = %d; max_response_bytes = 16777216L; };\n"
    "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 50; };\n"
    "limits = { max_body_bytes = 65536L; client_timeout_s = %d; max_connections = %d; };\n"
    "stream = { keepalive_s = 1; };\n"
    "state_dir = \"@DIR@/state\";\n"
    "ledger = { flush_ms = 50; };\n"
    "workers = %d;\n"
    "shutdown_timeout_s = 2;\n";

static struct h_proc fake, orp;
static char db_path[512];

/* ---- set-up ---------------------------------------------------------------------------- */

static void wait_log(const struct h_proc *p, const char *needle, int timeout_ms)
{
    ck_assert_msg(h_log_wait(p, needle, timeout_ms), "no '%s' in %s", needle, p->log);
}

/* Starts the fake and an orproxy in front of it, waits for the price table,
 * then forgets the fake's records. */
static void start_idle(int idle_timeout_s, int client_timeout_s, int max_connections, int workers)
{
    char conf[2048];
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    snprintf(conf, sizeof conf, conf_fmt, idle_timeout_s, client_timeout_s, max_connections,
             workers);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
    snprintf(db_path, sizeof db_path, "%s/state/usage.db", orp.dir);
    wait_log(&orp, "model prices loaded from upstream", 5000);
    h_fake_reset(fake.port);
}

static void start(int client_timeout_s, int max_connections, int workers)
{
    start_idle(1, client_timeout_s, max_connections, workers);
}

static void start_default(void)
{
    start(2, 20000, 2);
}

/* The daemon survived whatever the test did: still running, exits 0 on
 * SIGTERM (a crash or a sanitizer report would show here), never logged the
 * key. */
static void teardown(void)
{
    const char *why = h_orproxy_finish(&orp, KEY, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
    ck_assert_msg(why == NULL, "orproxy: %s", why);
}

/* ---- the ledger ------------------------------------------------------------------------ */

/* Column col (SQL expression) of the row where `where` holds, as text
 * (malloc'd), waiting up to 5 s for the row to be written; NULL if none. */
static char *db_value(const char *path, const char *col, const char *where)
{
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE %s", col, where);
    return h_db_value(path, sql, 5000);
}

/* The ledger row of request id rid: `cols` (an SQL expression) equals expect. */
static void assert_row_in(const char *path, const char *rid, const char *cols, const char *expect)
{
    char where[128];
    snprintf(where, sizeof where, "request_id='%s'", rid);
    char *v = db_value(path, cols, where);
    ck_assert_msg(v != NULL, "no ledger row for %s", rid);
    ck_assert_msg(strcmp(v, expect) == 0, "%s: %s = '%s', expected '%s'", rid, cols, v, expect);
    free(v);
}

static void assert_row(const char *rid, const char *cols, const char *expect)
{
    assert_row_in(db_path, rid, cols, expect);
}

/* The columns most tests check, in one string. */
#define ROW "status||' '||attempts||' '||outcome||' '||ifnull(error_class,'-')||' '||cost_source"

/* ---- clients ----------------------------------------------------------------------------- */

static int post_rid(struct h_resp *r, const char *rid, const char *body, const struct h_req_opts *o)
{
    char hdr[128];
    const char *hdrs[] = {hdr, NULL};
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", rid);
    int rc = h_request(r, orp.port, "POST", "/v1/chat/completions", body, hdrs, o);
    ck_assert_ptr_null(strstr(r->body, KEY));
    return rc;
}

/* The daemon still answers an ordinary request (and its health check). */
static void assert_serves(void)
{
    struct h_resp r;
    struct h_req_opts o = {.timeout_ms = 10000};
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/healthz", NULL, NULL, &o), 0);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    ck_assert_int_eq(h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"m/ok\"}",
                               NULL, &o),
                     0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "Hello from the fake upstream."));
    h_resp_free(&r);
}

/* The OpenAI error shape with this status and code. */
static void assert_error(const struct h_resp *r, long status, const char *code)
{
    ck_assert_int_eq(r->status, status);
    cJSON *root = cJSON_Parse(r->body);
    ck_assert_msg(root != NULL, "error body is not JSON: %s", r->body);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "code");
    ck_assert_msg(cJSON_IsString(c) && strcmp(c->valuestring, code) == 0, "body: %s", r->body);
    cJSON_Delete(root);
}

/* The last SSE event is orproxy's own upstream_stream_error, and no [DONE]. */
static void assert_ends_with_stream_error(const struct h_resp *r, const char *why)
{
    size_t n;
    char **ev = h_sse_split(r->body, &n);
    ck_assert_uint_ge(n, 1);
    ck_assert_msg(strstr(ev[n - 1], "\"upstream_stream_error\"") != NULL, "last event: %.200s",
                  ev[n - 1]);
    ck_assert_msg(strstr(ev[n - 1], why) != NULL, "last event: %.200s", ev[n - 1]);
    ck_assert_ptr_null(strstr(r->body, "data: [DONE]"));
    h_strv_free(ev, n);
}

/* h_raw_connect() and h_raw_send() that fail the test. */
static int raw_connect(int port)
{
    int fd = h_raw_connect(port);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static void raw_send(int fd, const char *data, size_t n)
{
    ck_assert_int_eq(h_raw_send(fd, data, n), 0);
}

/* A POST of body to /v1/chat/completions with X-Request-Id rid, as raw bytes
 * (malloc'd); extra is more header lines ("" for none). */
static char *raw_post(const char *rid, const char *body, const char *extra)
{
    size_t cap = strlen(body) + strlen(extra) + 512;
    char *s = malloc(cap);
    snprintf(s, cap,
             "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: %s\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
             rid, strlen(body), extra, body);
    return s;
}

static int fd_count(pid_t pid)
{
    char path[64];
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 2;
}

/* The fake's record tagged tag (waiting up to 5 s for one with field true). */
static cJSON *fake_record(const char *tag, const char *field)
{
    cJSON *rec = h_fake_wait(fake.port, tag, field, 5000);
    ck_assert_msg(rec != NULL, "no upstream record tagged %s with %s", tag, field ? field : "-");
    return rec;
}

static int rec_int(const cJSON *rec, const char *name)
{
    return cJSON_GetObjectItem(rec, name)->valueint;
}

/* ==== upstream faults ====================================================================== */

/* Nothing listens upstream.  Client: 502 upstream_unreachable after both
 * attempts.  Row: status 502, attempts 2, proxy_error, upstream_unreachable,
 * cost_source none. */
START_TEST(test_upstream_connection_refused)
{
    struct h_proc p;
    struct h_resp r;
    char conf[1024], path[600];
    const char *hdrs[] = {"X-Request-Id: F-refused", NULL};

    memset(&p, 0, sizeof p);
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:%d/api/v1\"; };\n"
             "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 50; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\n",
             h_free_port());
    ck_assert_int_eq(h_orproxy_start(&p, conf, env_key), 0);
    h_request(&r, p.port, "POST", "/v1/chat/completions", "{\"model\":\"m/x\"}", hdrs, NULL);
    assert_error(&r, 502, "upstream_unreachable");
    h_resp_free(&r);
    snprintf(path, sizeof path, "%s/state/usage.db", p.dir);
    assert_row_in(path, "F-refused", ROW, "502 2 proxy_error upstream_unreachable none");
    ck_assert_int_eq(h_proc_stop(&p, SIGTERM, 10000), 0);
    h_proc_cleanup(&p);
}
END_TEST

/* Upstream resets the connection (TCP RST) after reading the request,
 * before any header.  Nothing reached the client yet, so it is retried.
 * Client: 502 upstream_unreachable.  Row: 502, attempts 2, proxy_error,
 * upstream_unreachable, none. */
START_TEST(test_upstream_reset_before_headers)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-rst0", "{\"fake\":{\"tag\":\"rst0\",\"close_before_headers\":true,\"rst\":true}}",
             NULL);
    assert_error(&r, 502, "upstream_unreachable");
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "rst0"), 2);
    assert_row("F-rst0", ROW, "502 2 proxy_error upstream_unreachable none");
    assert_serves();
}
END_TEST

/* Upstream sends the headers and 100 bytes of a JSON answer, then resets
 * (and, second, closes in order).  Bytes arrived, so no retry.  Client: 502
 * upstream_unreachable, never a truncated 200.  Row: 502, attempts 1,
 * proxy_error, upstream_unreachable, none. */
START_TEST(test_upstream_reset_mid_json_body)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-cut-rst", "{\"fake\":{\"tag\":\"cutr\",\"cut_after_bytes\":100,\"rst\":true}}",
             NULL);
    assert_error(&r, 502, "upstream_unreachable");
    h_resp_free(&r);
    post_rid(&r, "F-cut-fin", "{\"fake\":{\"tag\":\"cutf\",\"cut_after_bytes\":100}}", NULL);
    assert_error(&r, 502, "upstream_unreachable");
    ck_assert_ptr_nonnull(strstr(r.body, "partial"));
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "cutr"), 1);
    ck_assert_int_eq(h_fake_count(fake.port, "cutf"), 1);
    assert_row("F-cut-rst", ROW, "502 1 proxy_error upstream_unreachable none");
    assert_row("F-cut-fin", ROW, "502 1 proxy_error upstream_unreachable none");
    assert_serves();
}
END_TEST

/* Upstream resets a stream after three content events.  Client: 200, the
 * three events, then orproxy's upstream_stream_error event, no [DONE].
 * Row: 200, attempts 1, stream_error, stream_interrupted, cost_source
 * estimate (no usage arrived; tokens counted from the relayed text). */
START_TEST(test_upstream_reset_mid_stream)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-srst",
             "{\"model\":\"openai/gpt-4o-mini\",\"stream\":true,\"fake\":{\"tag\":\"srst\","
             "\"events\":6,\"drop_after\":3,\"rst\":true}}",
             NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.curl_code, 0);
    ck_assert_ptr_nonnull(strstr(r.body, "tok2 "));
    ck_assert_ptr_null(strstr(r.body, "tok3 "));
    assert_ends_with_stream_error(&r, "failed mid-stream");
    h_resp_free(&r);
    assert_row("F-srst", ROW, "200 1 stream_error stream_interrupted estimate");
    assert_row("F-srst", "completion_tokens > 0 AND cost_pusd > 0", "1");
    assert_serves();
}
END_TEST

/* Upstream sends the headers, then nothing: idle_timeout_s (1 s) ends it.
 * JSON: headers arrived, so no retry; client 504 upstream_timeout; row 504,
 * attempts 1, proxy_error, upstream_timeout, none.  Stream (the role chunk,
 * then silence): client 200 ending with the "sent nothing" error event; row
 * 200, stream_error, stream_interrupted. */
START_TEST(test_upstream_headers_then_silence)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-mute", "{\"fake\":{\"tag\":\"mute\",\"hang_after_bytes\":0}}", NULL);
    assert_error(&r, 504, "upstream_timeout");
    /* curl's low-speed check averages over a window of a few seconds, so the
     * header bytes keep it above 1 B/s for a while: about 7 s here. */
    ck_assert_msg(r.t_end - r.t_start >= 0.9 && r.t_end - r.t_start < 12.0 * SLOW, "took %.2f s",
                  r.t_end - r.t_start);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "mute"), 1);
    assert_row("F-mute", ROW, "504 1 proxy_error upstream_timeout none");

    post_rid(&r, "F-smute", "{\"stream\":true,\"fake\":{\"tag\":\"smute\",\"hang_after\":0}}", NULL);
    ck_assert_int_eq(r.status, 200);
    assert_ends_with_stream_error(&r, "sent nothing for 1 s");
    h_resp_free(&r);
    assert_row("F-smute", "status||' '||outcome||' '||error_class", "200 stream_error stream_interrupted");
    assert_serves();
}
END_TEST

/* A stream that ends after its usage chunk but without [DONE].  Client: see
 * test_proxy.c (ends with an error event).  Row: the usage that did arrive
 * is kept (cost_source upstream, exact cost), but the outcome says the
 * stream was cut: 200, stream_error, stream_interrupted. */
START_TEST(test_stream_without_done_recorded)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-nodone",
             "{\"stream\":true,\"fake\":{\"events\":4,\"no_done\":true,\"usage\":{\"cost\":0.25}}}", NULL);
    ck_assert_int_eq(r.status, 200);
    assert_ends_with_stream_error(&r, "without [DONE]");
    h_resp_free(&r);
    assert_row("F-nodone", ROW, "200 1 stream_error stream_interrupted upstream");
    assert_row("F-nodone", "completion_tokens||' '||cost_pusd", "4 250000000000");
}
END_TEST

/* A 200 whose body is not JSON.  Client: relayed unchanged (status 200,
 * the same bytes).  Row: 200, attempts 1, ok, no tokens and cost_source none
 * (no usage could be read). */
START_TEST(test_upstream_200_not_json)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-notjson", "{\"fake\":{\"notjson\":true}}", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "this is not json");
    h_resp_free(&r);
    assert_row("F-notjson", ROW, "200 1 ok - none");
    assert_row("F-notjson", "total_tokens||' '||cost_pusd", "0 0");
}
END_TEST

/* Upstream answers a non-streamed request with a 1 GiB JSON body.  orproxy
 * buffers non-streamed answers only up to upstream.max_response_bytes (16 MiB
 * here), then hangs up on upstream.  Client: 502
 * upstream_response_too_large, at once.  Memory: orproxy's peak RSS stays
 * under the bound.  Upstream: the transfer was abandoned (record aborted).
 * Row: 502, attempts 1, proxy_error, upstream_response_too_large, none. */
START_TEST(test_gigabyte_json_answer_refused_with_bounded_memory)
{
    struct h_resp r;
    cJSON *rec;
    start_default();
    post_rid(&r, "F-gibjson", "{\"fake\":{\"tag\":\"gibj\",\"huge_bytes\":1073741824}}", NULL);
    assert_error(&r, 502, "upstream_response_too_large");
    ck_assert_ptr_nonnull(strstr(r.body, "16777216"));
    ck_assert_msg(r.t_end - r.t_start < 5.0 * SLOW, "took %.2f s", r.t_end - r.t_start);
    h_resp_free(&r);
    ck_assert_int_lt(h_proc_kb(orp.pid, "VmHWM:"), RSS_LIMIT_KB);
    rec = fake_record("gibj", "aborted");
    cJSON_Delete(rec);
    ck_assert_int_eq(h_fake_count(fake.port, "gibj"), 1);
    assert_row("F-gibjson", ROW, "502 1 proxy_error upstream_response_too_large none");
    assert_serves();
}
END_TEST

/* Reads a streamed answer to the end on a raw socket (the request says
 * Connection: close), keeping only the last tail_cap bytes; samples orproxy's
 * VmRSS every 32 MiB.  Returns the bytes received after the header block. */
static size_t read_stream_counting(int fd, char *tail, size_t tail_cap, long *max_rss_kb)
{
    static char buf[256 * 1024];
    size_t body = 0, next_sample = 0, tl = 0;
    int in_body = 0;
    char hdr_end[4] = {0};
    *max_rss_kb = 0;
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            break;
        size_t start = 0;
        while (!in_body && start < (size_t)k) { /* find the blank line ending the headers */
            memmove(hdr_end, hdr_end + 1, 3);
            hdr_end[3] = buf[start++];
            in_body = memcmp(hdr_end, "\r\n\r\n", 4) == 0;
        }
        size_t n = (size_t)k - start;
        body += n;
        if (n >= tail_cap) {
            memcpy(tail, buf + (size_t)k - tail_cap, tail_cap);
            tl = tail_cap;
        } else {
            size_t keep = tl + n > tail_cap ? tail_cap - n : tl;
            memmove(tail, tail + tl - keep, keep);
            memcpy(tail + keep, buf + start, n);
            tl = keep + n;
        }
        if (body >= next_sample) {
            long kb = h_proc_kb(orp.pid, "VmRSS:");
            if (kb > *max_rss_kb)
                *max_rss_kb = kb;
            next_sample += 32 * MIB;
        }
    }
    tail[tl < tail_cap ? tl : tail_cap - 1] = '\0';
    return body;
}

/* A streamed answer of 1 GiB (16384 events of 64 KiB) read by a fast client.
 * Streams are relayed event by event with backpressure, not capped.  Client:
 * all of it, ending with [DONE].  Memory: orproxy's RSS, sampled every 32 MiB,
 * and its peak stay under the bound.  Row: 200, ok, the stream's usage
 * (16384 completion tokens), cost_source upstream. */
START_TEST(test_gigabyte_stream_passes_with_bounded_memory)
{
    char tail[4096], *req;
    long max_rss;
    size_t got;
    double t0 = h_now();
    int fd;

    start_default();
    fd = raw_connect(orp.port);
    req = raw_post("F-gibstream", "{\"stream\":true,\"fake\":{\"tag\":\"gibs\",\"stream_bytes\":1073741824}}",
                   "Connection: close\r\n");
    raw_send(fd, req, strlen(req));
    free(req);
    got = read_stream_counting(fd, tail, sizeof tail, &max_rss);
    close(fd);
    fprintf(stderr, "test_faults: 1 GiB stream relayed in %.1f s, orproxy VmRSS max %ld KiB, VmHWM %ld KiB\n",
            h_now() - t0, max_rss, h_proc_kb(orp.pid, "VmHWM:"));
    ck_assert_uint_gt(got, (size_t)GIB);
    ck_assert_msg(strstr(tail, "data: [DONE]") != NULL, "stream tail: %s", tail);
    ck_assert_int_gt(max_rss, 0);
    ck_assert_int_lt(max_rss, RSS_LIMIT_KB);
    ck_assert_int_lt(h_proc_kb(orp.pid, "VmHWM:"), RSS_LIMIT_KB);
    assert_row("F-gibstream", ROW, "200 1 ok - upstream");
    assert_row("F-gibstream", "completion_tokens", "16384");
}
END_TEST

/* One SSE event line of 10 MiB: under orproxy's 16 MiB event limit, so it is
 * held until complete and relayed whole.  Client: 200, the event intact,
 * [DONE].  Row: 200, ok, upstream.  An event of 17 MiB is over the limit:
 * client gets the events before it and the "larger than 16 MiB" error
 * event; row 200, stream_error.  Memory stays under the bound throughout. */
START_TEST(test_huge_event_line)
{
    struct h_resp r;
    size_t n;
    char **ev;
    struct h_req_opts o = {.timeout_ms = 30000};

    start_default();
    post_rid(&r, "F-ev10",
             "{\"stream\":true,\"fake\":{\"tag\":\"ev10\",\"events\":1,\"event_bytes\":10485760}}", &o);
    ck_assert_int_eq(r.status, 200);
    ev = h_sse_split(r.body, &n);
    ck_assert_uint_eq(n, 5); /* role, the big one, finish, usage, [DONE] */
    ck_assert_uint_ge(strlen(ev[1]), (size_t)10 * MIB - 8);
    ck_assert_ptr_nonnull(strstr(ev[1], "tok0 xxxx"));
    ck_assert(ev[1][strlen(ev[1]) - 1] == '}');
    ck_assert_str_eq(ev[4], "data: [DONE]");
    h_strv_free(ev, n);
    h_resp_free(&r);
    assert_row("F-ev10", ROW, "200 1 ok - upstream");

    post_rid(&r, "F-ev17",
             "{\"stream\":true,\"fake\":{\"tag\":\"ev17\",\"events\":2,\"event_bytes\":17825792}}", &o);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_lt(r.len, (size_t)MIB);
    assert_ends_with_stream_error(&r, "larger than 16 MiB");
    h_resp_free(&r);
    assert_row("F-ev17", "status||' '||outcome", "200 stream_error");
    ck_assert_int_lt(h_proc_kb(orp.pid, "VmHWM:"), RSS_LIMIT_KB);
    assert_serves();
}
END_TEST

/* Upstream trickles: every gap is shorter than idle_timeout_s (1 s) but the
 * whole answer takes longer.  Only silence is a failure.  Stream (4 events
 * 600 ms apart) and JSON (100-byte pieces 300 ms apart): client 200,
 * complete; rows 200, ok, upstream. */
START_TEST(test_slow_trickle_below_idle_timeout_succeeds)
{
    struct h_resp r;
    cJSON *root;
    start_default();
    post_rid(&r, "F-trs", "{\"stream\":true,\"fake\":{\"events\":4,\"interval_ms\":600}}", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "data: [DONE]"));
    ck_assert_msg(r.t_end - r.t_start > 1.5, "took %.2f s", r.t_end - r.t_start);
    h_resp_free(&r);
    post_rid(&r, "F-trj", "{\"fake\":{\"trickle_ms\":300,\"trickle_bytes\":100}}", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.t_end - r.t_start > 1.2, "took %.2f s", r.t_end - r.t_start);
    root = cJSON_Parse(r.body);
    ck_assert_ptr_nonnull(root);
    cJSON_Delete(root);
    h_resp_free(&r);
    assert_row("F-trs", ROW, "200 1 ok - upstream");
    assert_row("F-trj", ROW, "200 1 ok - upstream");
}
END_TEST

/* Upstream error events (numeric and string codes; the client side is
 * test_proxy.c test_stream_upstream_error_event_passes_through).  Rows:
 * 200, stream_error, upstream_stream_error. */
START_TEST(test_error_event_codes_recorded)
{
    struct h_resp r;
    start_default();
    post_rid(&r, "F-errnum", "{\"stream\":true,\"fake\":{\"events\":3,\"error_after\":1}}", NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":502"));
    h_resp_free(&r);
    post_rid(&r, "F-errstr",
             "{\"stream\":true,\"fake\":{\"events\":3,\"error_after\":1,\"error_code_string\":true}}", NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"server_error\""));
    h_resp_free(&r);
    assert_row("F-errnum", "status||' '||outcome||' '||error_class", "200 stream_error upstream_stream_error");
    assert_row("F-errstr", "status||' '||outcome||' '||error_class", "200 stream_error upstream_stream_error");
    assert_row("F-errnum", "finish_reason", "error");
}
END_TEST

/* ==== client faults ======================================================================== */

/* The client sends the headers and part of a declared 1000-byte body, then
 * hangs up.  Nothing went upstream.  Row: status 0 (nothing was sent),
 * attempts 0, cancelled, client_cancelled, none.  The daemon serves on. */
START_TEST(test_client_gone_during_upload)
{
    char body[1001], *req;
    int fd;
    start_default();
    memset(body, ' ', 1000);
    memcpy(body, "{\"fake\":{\"tag\":\"upl\"}", 21);
    body[999] = '}';
    body[1000] = '\0';
    req = raw_post("F-upload", body, "");
    fd = raw_connect(orp.port);
    raw_send(fd, req, strlen(req) - 700);
    free(req);
    usleep(200000);
    close(fd);
    assert_row("F-upload", ROW, "0 0 cancelled client_cancelled none");
    ck_assert_int_eq(h_fake_count(fake.port, "upl"), 0);
    assert_serves();
}
END_TEST

/* The client hangs up while orproxy waits for upstream's headers.  MHD
 * cannot see a suspended connection close, so orproxy looks at waiting
 * clients' sockets once a second.  A stream request's upstream transfer
 * (upstream would take 10 s) is dropped within about a second (the fake
 * sees its connection end long before its 10 s), not retried: closing a
 * stream stops the bill.  Row: status 0 (nothing was sent), attempts 1,
 * cancelled, client_cancelled, estimate: upstream had the request and may
 * bill its prompt, so the prompt is estimated (never free) and no text.  A non-streamed request is billed
 * whether anyone reads the answer or not, so its transfer runs on until
 * upstream answers (2.5 s, inside the 5 s idle timeout): the fake sends the
 * whole answer, and the row has upstream's cost with status 0, attempts 1,
 * cancelled, client_cancelled.  The daemon serves on. */
START_TEST(test_client_gone_while_waiting_for_upstream)
{
    char *req;
    int fd;
    start_idle(5, 2, 20000, 2);
    req = raw_post("F-wait", "{\"fake\":{\"tag\":\"wait\",\"hang_ms\":2500}}", "");
    fd = raw_connect(orp.port);
    raw_send(fd, req, strlen(req));
    free(req);
    usleep(300000);
    close(fd);
    req = raw_post("F-swait", "{\"stream\":true,\"fake\":{\"tag\":\"swait\",\"hang_ms\":10000}}", "");
    fd = raw_connect(orp.port);
    raw_send(fd, req, strlen(req));
    free(req);
    usleep(300000);
    close(fd);
    {
        double t0 = h_now();
        cJSON *rec = fake_record("swait", "aborted");
        cJSON_Delete(rec);
        ck_assert_msg(h_now() - t0 < 4.0, "upstream dropped after %.2f s", h_now() - t0);
        rec = fake_record("wait", "completed");
        ck_assert_int_eq(rec_int(rec, "status"), 200);
        ck_assert(!cJSON_IsTrue(cJSON_GetObjectItem(rec, "aborted")));
        cJSON_Delete(rec);
    }
    assert_row("F-wait", ROW, "0 1 cancelled client_cancelled upstream");
    assert_row("F-wait", "cost_pusd", "123000000"); /* the fake's usage.cost, $0.000123 */
    assert_row("F-swait", ROW, "0 1 cancelled client_cancelled estimate");
    assert_row("F-swait", "prompt_tokens > 0 AND completion_tokens = 0", "1");
    ck_assert_int_eq(h_fake_count(fake.port, "wait"), 1);
    ck_assert_int_eq(h_fake_count(fake.port, "swait"), 1);
    assert_serves();
}
END_TEST

/* The client reads the header block of a stream and hangs up.  Upstream:
 * aborted promptly (well before its 100 events).  Row: 200 (the status was
 * sent), cancelled, client_cancelled, estimate.  The daemon serves on. */
START_TEST(test_client_gone_mid_stream)
{
    char *req, *got;
    int fd;
    cJSON *rec;
    start_default();
    req = raw_post("F-mids",
                   "{\"model\":\"openai/gpt-4o-mini\",\"stream\":true,\"fake\":{\"tag\":\"mids\","
                   "\"events\":100,\"interval_ms\":30}}",
                   "");
    fd = raw_connect(orp.port);
    raw_send(fd, req, strlen(req));
    free(req);
    got = h_raw_read_head(fd, 5000 * SLOW);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.100s", got);
    free(got);
    close(fd);
    rec = fake_record("mids", "aborted");
    ck_assert_int_lt(rec_int(rec, "events_sent"), 60);
    cJSON_Delete(rec);
    assert_row("F-mids", ROW, "200 1 cancelled client_cancelled estimate");
    assert_serves();
}
END_TEST

/* An 8 MB JSON answer; the client (with a tiny receive buffer) reads the
 * header block and hangs up, so orproxy cannot finish sending it.  Upstream
 * had sent it all.  Row: 200 (the status line went out), cancelled,
 * client_cancelled; the cost is still upstream's own (non-streamed requests
 * are billed in full). */
START_TEST(test_client_gone_mid_json_answer)
{
    char *req, *got;
    int fd, small = 4096;
    start_default();
    req = raw_post("F-midj", "{\"fake\":{\"tag\":\"midj\",\"body_bytes\":8000000}}", "");
    fd = raw_connect(orp.port);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    raw_send(fd, req, strlen(req));
    free(req);
    got = h_raw_read_head(fd, 5000 * SLOW);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.100s", got);
    free(got);
    close(fd);
    assert_row("F-midj", ROW, "200 1 cancelled client_cancelled upstream");
    assert_row("F-midj", "cost_pusd", "123000000");
    {
        cJSON *rec = fake_record("midj", "completed");
        ck_assert(!cJSON_IsTrue(cJSON_GetObjectItem(rec, "aborted")));
        cJSON_Delete(rec);
    }
    assert_serves();
}
END_TEST

/* A client asks for a 1 GiB stream and never reads past the headers.
 * orproxy stops reading upstream once 256 KiB wait for the client (curl
 * pause), so the fake's send blocks: its event count stops growing far below
 * the 16384 events, and orproxy's RSS stays under the bound.  When the client
 * finally hangs up, the upstream transfer is aborted.  Row: 200, cancelled,
 * client_cancelled, estimate. */
START_TEST(test_slow_reader_pauses_upstream)
{
    char *req, *got;
    int fd, small = 4096, prev = -1, now_sent = 0;
    cJSON *rec;
    start_default();
    req = raw_post("F-slowrd", "{\"stream\":true,\"fake\":{\"tag\":\"slowrd\",\"stream_bytes\":1073741824}}", "");
    fd = raw_connect(orp.port);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    raw_send(fd, req, strlen(req));
    free(req);
    got = h_raw_read_head(fd, 5000 * SLOW);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.100s", got);
    free(got);
    /* Wait until upstream is stalled: the same count twice, 500 ms apart. */
    for (int i = 0; i < 40; i++) {
        usleep(500000);
        rec = fake_record("slowrd", NULL);
        now_sent = rec_int(rec, "events_sent");
        cJSON_Delete(rec);
        if (now_sent == prev && now_sent > 0)
            break;
        prev = now_sent;
    }
    ck_assert_msg(now_sent == prev, "upstream never stalled (%d events sent)", now_sent);
    /* 64 KiB events: what sits in socket buffers and orproxy's 256 KiB. */
    ck_assert_msg(now_sent < 1024, "%d events sent to a client that reads nothing", now_sent);
    ck_assert_int_lt(h_proc_kb(orp.pid, "VmHWM:"), RSS_LIMIT_KB);
    close(fd);
    rec = fake_record("slowrd", "aborted");
    ck_assert_int_lt(rec_int(rec, "events_sent"), 1024);
    cJSON_Delete(rec);
    assert_row("F-slowrd", ROW, "200 1 cancelled client_cancelled estimate");
    assert_serves();
}
END_TEST

/* Slow-loris.  limits.client_timeout_s (2 s) is an inactivity timeout (MHD's
 * connection timeout): a client that goes silent in the middle of its headers
 * or its body is closed about 2 s after its last byte.  Meanwhile other
 * clients are served.  The one that stopped mid-body leaves a row: status 0,
 * attempts 0, cancelled, client_cancelled. */
START_TEST(test_slowloris_silent_client_times_out)
{
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: aaa";
    char *req, *got;
    int fh, fb, closed;
    double t0, waited;

    start_default();
    fh = raw_connect(orp.port);
    raw_send(fh, head, strlen(head));
    req = raw_post("F-loris-body", "{\"fake\":{\"tag\":\"lorisb\"},\"pad\":\"xxxxxxxxxxxxxxxx\"}", "");
    fb = raw_connect(orp.port);
    raw_send(fb, req, strlen(req) - 10);
    free(req);
    t0 = h_now();
    assert_serves(); /* others are served while the two hold their connections */

    got = h_raw_read(fh, 8000 * SLOW, 4096, &closed);
    waited = h_now() - t0;
    ck_assert_msg(closed, "silent client mid-headers not closed after %.1f s", waited);
    ck_assert_msg(waited > 1.5 && waited < 4.0 * SLOW, "closed after %.2f s", waited);
    ck_assert_msg(got[0] == '\0' || strncmp(got, "HTTP/1.1 4", 10) == 0, "got: %.100s", got);
    free(got);
    got = h_raw_read(fb, 8000 * SLOW, 4096, &closed);
    ck_assert_msg(closed, "silent client mid-body not closed");
    free(got);
    close(fh);
    close(fb);
    assert_row("F-loris-body", ROW, "0 0 cancelled client_cancelled none");
    ck_assert_int_eq(h_fake_count(fake.port, "lorisb"), 0);
    assert_serves();
}
END_TEST

/* Closed by orproxy: a read returns end of stream (or a reset). */
static int peer_closed(int fd)
{
    char c;
    ssize_t k = recv(fd, &c, 1, MSG_DONTWAIT);
    return k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Slow-loris that trickles: one byte every 400 ms of headers (and, on a
 * second connection, of body).  Each byte resets MHD's inactivity timer,
 * but orproxy gives a request client_timeout_s (2 s here) in all to
 * arrive, checked once a second: both connections are shut within about
 * 3 s, while other clients are served promptly all along.  Row for the
 * body trickle (its headers had arrived): 0, 0 attempts, cancelled,
 * client_cancelled, no cost; nothing was sent upstream. */
START_TEST(test_slowloris_trickle_is_cut_off)
{
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ";
    const char *bodyhead = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "X-Request-Id: F-trickle-body\r\nContent-Length: 1000\r\n\r\n"
                           "{\"fake\":{\"tag\":\"trickleb\"},\"pad\":\"";
    int fh, fb, h_open = 1, b_open = 1;
    double t0, h_closed_at = 0, b_closed_at = 0;

    start_default();
    fh = raw_connect(orp.port);
    fb = raw_connect(orp.port);
    raw_send(fh, head, strlen(head));
    raw_send(fb, bodyhead, strlen(bodyhead));
    t0 = h_now();
    while ((h_open || b_open) && h_now() - t0 < 6.0 * SLOW) {
        struct h_resp r;
        if (h_open && peer_closed(fh)) {
            h_open = 0;
            h_closed_at = h_now() - t0;
        }
        if (b_open && peer_closed(fb)) {
            b_open = 0;
            b_closed_at = h_now() - t0;
        }
        if (h_open && send(fh, "a", 1, MSG_NOSIGNAL) < 0)
            continue;
        if (b_open && send(fb, "x", 1, MSG_NOSIGNAL) < 0)
            continue;
        h_request(&r, orp.port, "GET", "/healthz", NULL, NULL, NULL);
        ck_assert_int_eq(r.status, 200);
        ck_assert_msg(r.t_end - r.t_start < 0.5 * SLOW, "healthz took %.2f s", r.t_end - r.t_start);
        h_resp_free(&r);
        usleep(400000);
    }
    ck_assert_msg(!h_open, "a header trickle was still open after %.1f s", h_now() - t0);
    ck_assert_msg(!b_open, "a body trickle was still open after %.1f s", h_now() - t0);
    /* not before client_timeout_s; at most one check interval (and a send) after */
    ck_assert_msg(h_closed_at >= 1.9 && h_closed_at < 4.0 * SLOW, "header trickle cut at %.2f s",
                  h_closed_at);
    ck_assert_msg(b_closed_at >= 1.9 && b_closed_at < 4.0 * SLOW, "body trickle cut at %.2f s",
                  b_closed_at);
    close(fh);
    close(fb);
    assert_row("F-trickle-body", ROW, "0 0 cancelled client_cancelled none");
    ck_assert_int_eq(h_fake_count(fake.port, "trickleb"), 0);
    assert_serves();
}
END_TEST

/* 10,000 idle client connections (limits.max_connections = 20000): orproxy
 * accepts them all (its descriptor count shows it) and still serves a new
 * request at once.  Row for that request: 200, ok. */
START_TEST(test_ten_thousand_idle_connections)
{
    enum { N = 10000 };
    static int fds[N];
    struct rlimit rl;
    struct h_resp r;
    int opened = 0, seen = 0;

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    ck_assert_msg(rl.rlim_cur >= N + 200, "RLIMIT_NOFILE hard limit %ld is too low for this test",
                  (long)rl.rlim_cur);
    start(60, 20000, 2);
    for (; opened < N; opened++)
        fds[opened] = raw_connect(orp.port);
    for (int i = 0; i < 500 && seen < N; i++) {
        seen = fd_count(orp.pid);
        if (seen < N)
            usleep(20000);
    }
    ck_assert_msg(seen >= N, "orproxy holds %d descriptors with %d clients connected", seen, N);
    {
        const char *hdrs[] = {"X-Request-Id: F-10k", NULL};
        struct h_req_opts o = {.timeout_ms = 5000};
        ck_assert_int_eq(h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"m/10k\"}",
                                   hdrs, &o),
                         0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_msg(r.t_end - r.t_start < 1.0 * SLOW, "took %.2f s", r.t_end - r.t_start);
        h_resp_free(&r);
    }
    assert_row("F-10k", ROW, "200 1 ok - upstream");
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    assert_serves();
}
END_TEST

/* At limits.max_connections (4 here, one worker) orproxy stops accepting:
 * a new connection waits in the listen backlog, unanswered, instead of being
 * refused; once a held connection closes it is accepted and served. */
START_TEST(test_connection_cap_new_client_waits)
{
    int held[4], fd, closed;
    char *got;
    const char *req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

    start(60, 4, 1);
    for (int i = 0; i < 4; i++)
        held[i] = raw_connect(orp.port);
    usleep(200000);
    fd = raw_connect(orp.port); /* the kernel completes the handshake: backlog */
    raw_send(fd, req, strlen(req));
    got = h_raw_read(fd, 700, 4096, &closed);
    ck_assert_msg(got[0] == '\0' && !closed, "answered at the cap: %.100s", got);
    free(got);
    close(held[0]);
    got = h_raw_read(fd, 3000 * SLOW, 4096, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.100s", got);
    free(got);
    close(fd);
    for (int i = 1; i < 4; i++)
        close(held[i]);
    assert_serves();
}
END_TEST

/* Malformed HTTP: each is answered with a 4xx by MHD (or the connection is
 * closed without a word, for a request line that is not HTTP at all), never
 * a crash, and the daemon serves the next request.  HTTP/0.9 ("GET /path"
 * without a version) is refused with 400; an unknown version gets 505. */
START_TEST(test_malformed_http)
{
    static const struct {
        const char *req, *expect; /* expect "" = closed without an answer */
    } cases[] = {
        {"GARBAGE\r\n\r\n", ""},
        {"\x01\x02\x03 \xff\xfe\r\n\r\n", "HTTP/1.1 400"},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nBadHeaderNoColon\r\n\r\n", "HTTP/1.1 400"},
        {"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: F-badchunk\r\n"
         "Transfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n",
         "HTTP/1.1 400"},
        {"GET /healthz\r\n", "HTTP/1.1 400"},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "HTTP/1.1 400"},
        {"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
    };
    start_default();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = raw_connect(orp.port), closed;
        char *got;
        raw_send(fd, cases[i].req, strlen(cases[i].req));
        got = h_raw_read(fd, 3000 * SLOW, 4096, &closed);
        ck_assert_msg(closed, "case %zu: connection left open", i);
        ck_assert_msg(strncmp(got, cases[i].expect, strlen(cases[i].expect)) == 0 &&
                          (cases[i].expect[0] != '\0' || got[0] == '\0'),
                      "case %zu: got %.100s", i, got);
        free(got);
        close(fd);
        assert_serves();
    }
    /* A 70 KB header is over MHD's per-connection memory: 431. */
    {
        size_t n = 70000;
        char *big = malloc(n + 64);
        int fd = raw_connect(orp.port), closed;
        char *got;
        strcpy(big, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
        size_t at = strlen(big);
        memset(big + at, 'a', n);
        strcpy(big + at + n, "\r\n\r\n");
        raw_send(fd, big, strlen(big));
        free(big);
        got = h_raw_read(fd, 3000 * SLOW, 4096, &closed);
        ck_assert_msg(strncmp(got, "HTTP/1.1 431", 12) == 0, "got %.100s", got);
        free(got);
        close(fd);
    }
    /* The bad chunked body reached orproxy's handler (its headers were
     * fine): MHD answered the 400 itself and reported the request as ended
     * in error, so the row reads like a client that went away. */
    assert_row("F-badchunk", ROW, "0 0 cancelled client_cancelled none");
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 7); /* only assert_serves() went upstream */
    assert_serves();
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("upstream");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_upstream_connection_refused);
    tcase_add_test(tc, test_upstream_reset_before_headers);
    tcase_add_test(tc, test_upstream_reset_mid_json_body);
    tcase_add_test(tc, test_upstream_reset_mid_stream);
    tcase_add_test(tc, test_upstream_headers_then_silence);
    tcase_add_test(tc, test_stream_without_done_recorded);
    tcase_add_test(tc, test_upstream_200_not_json);
    tcase_add_test(tc, test_gigabyte_json_answer_refused_with_bounded_memory);
    tcase_add_test(tc, test_gigabyte_stream_passes_with_bounded_memory);
    tcase_add_test(tc, test_huge_event_line);
    tcase_add_test(tc, test_slow_trickle_below_idle_timeout_succeeds);
    tcase_add_test(tc, test_error_event_codes_recorded);
    suite_add_tcase(s, tc);

    tc = tcase_create("client");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_client_gone_during_upload);
    tcase_add_test(tc, test_client_gone_while_waiting_for_upstream);
    tcase_add_test(tc, test_client_gone_mid_stream);
    tcase_add_test(tc, test_client_gone_mid_json_answer);
    tcase_add_test(tc, test_slow_reader_pauses_upstream);
    tcase_add_test(tc, test_slowloris_silent_client_times_out);
    tcase_add_test(tc, test_slowloris_trickle_is_cut_off);
    tcase_add_test(tc, test_ten_thousand_idle_connections);
    tcase_add_test(tc, test_connection_cap_new_client_waits);
    tcase_add_test(tc, test_malformed_http);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(faults_suite)
