/* End-to-end tests of the HTTP front against hostile clients (issue 11,
 * items 2, 3, 4, 5 and 15): who is refused before a body byte is read, how
 * much body memory all connections together may hold, which malformed or
 * ambiguous headers are refused instead of forwarded, which credentials
 * never reach OpenRouter, that nothing is forwarded shortened, and that a
 * client's bytes cannot forge or corrupt log lines.
 *
 * Raw sockets play the clients libcurl would not be: exact bytes go out,
 * the answer is read as it comes, and the fake upstream's records say what
 * (if anything) was forwarded. */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY
#define MIB (1024L * 1024L)

#if defined(__SANITIZE_ADDRESS__)
#define SLOW 4
#else
#define SLOW 1
#endif

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

static struct h_proc fake, orp;

/* ---- set-up ---------------------------------------------------------------------------- */

static const char *conf_none =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; connect_timeout_s = 2; };\n"
    "limits = { max_header_bytes = 65536; };\n"
    "state_dir = \"@DIR@/state\";\n"
    "workers = 1;\n"
    "shutdown_timeout_s = 2;\n";

static void start_conf(const char *conf)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
    /* orproxy's own GET /models at start must not count as a forwarded request:
     * forget the fake's records only once it has happened. */
    ck_assert_msg(h_log_wait(&orp, "model prices loaded from upstream", 10000),
                  "orproxy did not load its prices");
    h_fake_reset(fake.port);
}

static void stop(void)
{
    const char *why = h_orproxy_finish(&orp, KEY, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
    ck_assert_msg(why == NULL, "orproxy: %s", why);
}

static char user_key[80], user_hash[65];

/* auth.mode keys with one client, "user" (not an admin); bodies up to the
 * default 16 MiB. */
static void start_keys(void)
{
    static char conf[2048];
    if (user_key[0] == '\0')
        ck_assert_int_eq(h_key_new("user", user_key, sizeof user_key, user_hash), 0);
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nworkers = 1;\nshutdown_timeout_s = 2;\n"
             "auth = { mode = \"keys\"; };\n"
             "clients = ( { name = \"user\"; key_sha256 = \"%s\"; } );\n",
             user_hash);
    start_conf(conf);
}

/* ---- raw sockets ------------------------------------------------------------------------- */

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

/* Reads until the peer closes or timeout_ms pass (whatever came, malloc'd,
 * NUL-terminated, the first 64 KiB kept; *closed says whether the peer closed). */
static char *raw_read(int fd, int timeout_ms, int *closed)
{
    return h_raw_read(fd, timeout_ms, 65536, closed);
}

/* The "error"."code" of a JSON error body that follows the head in text. */
static int body_has_code(const char *text, const char *code)
{
    const char *b = strstr(text, "\r\n\r\n");
    char needle[96];
    if (b == NULL)
        return 0;
    snprintf(needle, sizeof needle, "\"code\":\"%s\"", code);
    return strstr(b, needle) != NULL;
}

/* ---- item 2: auth before the body, and a cap on all bodies together ------------------------ */

/* A keyless POST announcing a 12 MiB body with "Expect: 100-continue" is
 * answered 401 from its headers alone: no "100 Continue", Connection: close,
 * and nothing reaches upstream. */
START_TEST(test_keyless_expect_continue_gets_401_not_100)
{
    start_keys();
    int fd = raw_connect(orp.port), closed;
    const char *req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/json\r\nContent-Length: 12582912\r\n"
                      "Expect: 100-continue\r\n\r\n";
    raw_send(fd, req, strlen(req));
    char *got = raw_read(fd, 3000 * SLOW, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 401", 12) == 0, "got: %.200s", got);
    ck_assert_msg(strstr(got, "100 Continue") == NULL, "got: %.200s", got);
    ck_assert_msg(strstr(got, "Connection: close") != NULL, "got: %.300s", got);
    ck_assert_msg(body_has_code(got, "missing_api_key"), "got: %.400s", got);
    ck_assert_msg(closed, "connection left open after the 401");
    free(got);
    close(fd);
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 0);
}
END_TEST

/* Without Expect the answer still comes from the headers: a wrong key gets
 * 401 and a non-admin key on /metrics 403 while the announced body has not
 * been sent at all. */
START_TEST(test_bad_key_refused_before_any_body_byte)
{
    start_keys();
    char req[512];
    int fd, closed;
    char *got;

    fd = raw_connect(orp.port);
    snprintf(req, sizeof req,
             "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer orp-wrong\r\n"
             "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n");
    raw_send(fd, req, strlen(req));
    got = raw_read(fd, 2000 * SLOW, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 401", 12) == 0, "got: %.200s", got);
    ck_assert(closed);
    free(got);
    close(fd);

    fd = raw_connect(orp.port);
    snprintf(req, sizeof req,
             "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Length: 1000000\r\n\r\n",
             user_key);
    raw_send(fd, req, strlen(req));
    got = raw_read(fd, 2000 * SLOW, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 403", 12) == 0, "got: %.200s", got);
    ck_assert(body_has_code(got, "admin_only"));
    free(got);
    close(fd);
    ck_assert_int_eq(h_fake_count(fake.port, NULL), 0);
}
END_TEST

/* A client with a good key still gets "100 Continue", sends its body and is
 * served: early identification changes nothing for it. */
START_TEST(test_good_key_expect_continue_still_served)
{
    start_keys();
    char req[512];
    const char *body = "{\"model\":\"m/x\",\"fake\":{\"tag\":\"good100\"}}";
    int fd = raw_connect(orp.port), closed;
    snprintf(req, sizeof req,
             "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\nExpect: 100-continue\r\n"
             "Connection: close\r\n\r\n",
             user_key, strlen(body));
    raw_send(fd, req, strlen(req));
    char *head = h_raw_read_head(fd, 3000 * SLOW);
    ck_assert_msg(strncmp(head, "HTTP/1.1 100", 12) == 0, "got: %.200s", head);
    free(head);
    raw_send(fd, body, strlen(body));
    char *got = raw_read(fd, 5000 * SLOW, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.200s", got);
    free(got);
    close(fd);
    cJSON *rec = h_fake_wait(fake.port, "good100", NULL, 2000);
    ck_assert_ptr_nonnull(rec);
    cJSON_Delete(rec);
}
END_TEST

/* Eight keyless clients pushing their 12 MiB bodies at once (the issue's
 * reproduction), all but the last byte so a daemon that buffers them holds
 * all eight together: the bodies are never read into memory, so orproxy's
 * peak RSS grows by far less than the 96 MiB they carry. */
START_TEST(test_keyless_bodies_do_not_grow_memory)
{
    enum { N = 8 };
    const size_t total = 12582912 - 1;
    static char filler[65536];
    int fds[N], done = 0;
    size_t sent[N] = {0};
    int over[N] = {0};
    start_keys();
    memset(filler, ' ', sizeof filler);
    long before = h_proc_kb(orp.pid, "VmHWM:");
    const char *req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/json\r\nContent-Length: 12582912\r\n\r\n";
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(orp.port);
        raw_send(fds[i], req, strlen(req));
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    /* Round robin until every body is sent or its connection is gone. */
    double deadline = h_now() + 30 * SLOW;
    while (done < N && h_now() < deadline) {
        struct pollfd p[N];
        for (int i = 0; i < N; i++)
            p[i] = (struct pollfd){.fd = over[i] ? -1 : fds[i], .events = POLLOUT};
        if (poll(p, N, 1000) <= 0)
            continue;
        for (int i = 0; i < N; i++) {
            if (over[i] || !(p[i].revents & (POLLOUT | POLLERR | POLLHUP)))
                continue;
            size_t k = total - sent[i] < sizeof filler ? total - sent[i] : sizeof filler;
            ssize_t w = send(fds[i], filler, k, MSG_NOSIGNAL);
            if (w > 0)
                sent[i] += (size_t)w;
            if ((w < 0 && errno != EAGAIN) || sent[i] == total) {
                over[i] = 1;
                done++;
            }
        }
    }
    ck_assert_msg(done == N, "bodies still being sent after 30 s");
    usleep(300000);
    long after = h_proc_kb(orp.pid, "VmHWM:");
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ck_assert_msg(before > 0 && after > 0, "no /proc figures");
    ck_assert_msg(after - before < 24 * 1024 * SLOW, "peak RSS grew by %ld KiB (from %ld KiB)",
                  after - before, before);
}
END_TEST

/* limits.max_buffered_body_bytes bounds the body bytes all connections hold
 * together.  Two requests that announced 64 KiB each fill 128 KiB; a third
 * is refused at once with 503 and Retry-After (its body never read), and a
 * chunked one is refused when its bytes would go over.  Once the first
 * finishes, a new one fits again. */
START_TEST(test_total_buffered_body_is_capped)
{
    start_conf("listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
               "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
               "limits = { max_body_bytes = 65536L; max_buffered_body_bytes = 131072L; };\n"
               "state_dir = \"@DIR@/state\";\nworkers = 2;\nshutdown_timeout_s = 2;\n");
    /* A JSON body of exactly 65536 bytes. */
    char *body = malloc(65537);
    const char *pre = "{\"model\":\"m/x\",\"fake\":{\"tag\":\"capA\"},\"pad\":\"";
    size_t plen = strlen(pre);
    memcpy(body, pre, plen);
    memset(body + plen, 'a', 65536 - plen - 2);
    memcpy(body + 65536 - 2, "\"}", 3);
    ck_assert_uint_eq(strlen(body), 65536);
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json\r\nContent-Length: 65536\r\n\r\n";
    int a = raw_connect(orp.port), b = raw_connect(orp.port), c, closed;
    raw_send(a, head, strlen(head));
    raw_send(b, head, strlen(head));
    usleep(300000); /* both are reading their bodies now */

    c = raw_connect(orp.port);
    raw_send(c, head, strlen(head));
    char *got = raw_read(c, 2000 * SLOW, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 503", 12) == 0, "got: %.200s", got);
    ck_assert_msg(strstr(got, "Retry-After: ") != NULL, "got: %.300s", got);
    ck_assert(body_has_code(got, "server_busy"));
    free(got);
    close(c);

    /* Chunked: refused once what it sent would not fit (answered at its end). */
    c = raw_connect(orp.port);
    const char *chunked = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "10\r\n{\"model\":\"m/x\"}\r\n0\r\n\r\n";
    raw_send(c, chunked, strlen(chunked));
    got = raw_read(c, 3000 * SLOW, &closed);
    ck_assert_msg(strncmp(got, "HTTP/1.1 503", 12) == 0, "got: %.200s", got);
    free(got);
    close(c);

    /* The first one completes; then a new request fits again. */
    raw_send(a, body, 65536);
    got = h_raw_read_head(a, 5000 * SLOW);
    ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.200s", got);
    free(got);
    close(a);
    usleep(200000);
    struct h_resp r;
    ck_assert_int_eq(h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"m/x\"}",
                               NULL, NULL),
                     0);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    close(b);
    free(body);
}
END_TEST

/* ---- item 3: malformed and ambiguous headers ------------------------------------------------ */

/* Each of these is refused with 400 from its headers, and nothing reaches
 * upstream: names with a blank before the colon (they would be forwarded as
 * a second Authorization, Transfer-Encoding, Content-Length or Host), a bare
 * CR or other control byte inside a value, two Content-Lengths,
 * Content-Length beside chunked, HTTP/1.1 without Host, and a folded line. */
START_TEST(test_malformed_headers_refused_not_forwarded)
{
    static const struct {
        const char *name, *hdrs; /* hdrs: extra header lines */
        int chunked;             /* send the body chunked */
    } cases[] = {
        {"authorization-space", "Authorization : Bearer x\r\n", 0},
        {"te-space", "Transfer-Encoding : chunked\r\n", 0},
        {"cl-space", "Content-Length : 0\r\n", 0},
        {"host-space", "Host : evil\r\n", 0},
        {"bare-cr", "X-CR: a\rX-Injected: 1\r\n", 0},
        {"ctl-byte", "X-Ctl: a\x01z\r\n", 0},
        {"del-byte", "X-Del: a\x7fz\r\n", 0},
        {"two-lengths", "Content-Length: 5\r\n", 0},
        {"length-and-chunked", "Transfer-Encoding: chunked\r\n", 1},
        {"folded", "X-Fold: a\r\n  b\r\n", 0},
        {"name-ctl", "X\x01Y: a\r\n", 0},
        {"no-host", NULL, 0},
    };
    const char *body = "{\"model\":\"m/x\"}";
    char failed[2048] = "";
    start_conf(conf_none);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char req[1024];
        int fd = raw_connect(orp.port), closed;
        if (cases[i].hdrs == NULL)
            snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
        else if (cases[i].chunked)
            snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%zx\r\n%s\r\n0\r\n\r\n",
                     strlen(body), cases[i].hdrs, strlen(body), body);
        else
            snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     strlen(body), cases[i].hdrs, body);
        raw_send(fd, req, strlen(req));
        char *got = raw_read(fd, 3000 * SLOW, &closed);
        usleep(100000);
        int forwarded = h_fake_count(fake.port, NULL);
        /* Every case is tried; the failures are listed together. */
        if (strncmp(got, "HTTP/1.1 400", 12) != 0 || forwarded != 0)
            snprintf(failed + strlen(failed), sizeof failed - strlen(failed),
                     " %s(%.12s, %d forwarded)", cases[i].name, got, forwarded);
        h_fake_reset(fake.port);
        free(got);
        close(fd);
    }
    ck_assert_msg(failed[0] == '\0', "not refused with 400 / forwarded:%s", failed);
    /* A tab inside a value and an ordinary request still pass. */
    {
        const char *hdrs[] = {"X-Tab: a\tb", NULL};
        struct h_resp r;
        ck_assert_int_eq(h_request(&r, orp.port, "POST", "/v1/chat/completions",
                                   "{\"model\":\"m/x\",\"fake\":{\"tag\":\"tab\"}}", hdrs, NULL),
                         0);
        ck_assert_int_eq(r.status, 200);
        h_resp_free(&r);
        cJSON *rec = h_fake_wait(fake.port, "tab", NULL, 2000);
        ck_assert_ptr_nonnull(rec);
        cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "x-tab");
        ck_assert_msg(cJSON_IsString(v) && strcmp(v->valuestring, "a\tb") == 0, "x-tab not forwarded");
        cJSON_Delete(rec);
    }
}
END_TEST

/* ---- item 4: credentials for others ------------------------------------------------------ */

/* Proxy-* headers, other APIs' key headers and cookies never go upstream;
 * ordinary end-to-end headers still do. */
START_TEST(test_foreign_credentials_not_forwarded)
{
    const char *hdrs[] = {"Proxy-Authorization: Basic c2VjcmV0",
                          "Proxy-Foo: bar",
                          "X-Api-Key: sk-ant-secret",
                          "Api-Key: azure-secret",
                          "Cookie: session=secret",
                          "X-Keep: 1",
                          NULL};
    static const char *const dropped[] = {"proxy-authorization", "proxy-foo", "x-api-key", "api-key",
                                          "cookie"};
    struct h_resp r;
    start_conf(conf_none);
    ck_assert_int_eq(h_request(&r, orp.port, "POST", "/v1/messages",
                               "{\"model\":\"m/x\",\"fake\":{\"tag\":\"creds\"}}", hdrs, NULL),
                     0);
    h_resp_free(&r);
    cJSON *rec = h_fake_wait(fake.port, "creds", NULL, 3000);
    ck_assert_ptr_nonnull(rec);
    cJSON *h = cJSON_GetObjectItem(rec, "headers");
    char forwarded[256] = "";
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (cJSON_GetObjectItem(h, dropped[i]) != NULL)
            snprintf(forwarded + strlen(forwarded), sizeof forwarded - strlen(forwarded), " %s",
                     dropped[i]);
    ck_assert_msg(forwarded[0] == '\0', "forwarded:%s", forwarded);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(h, "x-keep"));
    char *text = cJSON_PrintUnformatted(rec);
    ck_assert_ptr_null(strstr(text, "secret"));
    free(text);
    cJSON_Delete(rec);
}
END_TEST

/* ---- item 5: nothing forwarded shortened ---------------------------------------------------- */

/* A 10,000-byte header value and a 10,000-character query reach upstream
 * whole (they fit limits.max_header_bytes = 64 KiB). */
START_TEST(test_long_header_and_query_forwarded_whole)
{
    size_t n = 10000;
    char *hdr = malloc(n + 16), *path = malloc(n + 64);
    strcpy(hdr, "X-Long: ");
    memset(hdr + 8, 'h', n);
    hdr[8 + n] = '\0';
    strcpy(path, "/v1/models?q=");
    size_t pl = strlen(path);
    memset(path + pl, 'q', n);
    path[pl + n] = '\0';
    const char *hdrs[] = {hdr, NULL};
    struct h_resp r;
    start_conf(conf_none);

    ck_assert_int_eq(h_request(&r, orp.port, "POST", "/v1/chat/completions",
                               "{\"model\":\"m/x\",\"fake\":{\"tag\":\"longhdr\"}}", hdrs, NULL),
                     0);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    cJSON *rec = h_fake_wait(fake.port, "longhdr", NULL, 3000);
    ck_assert_ptr_nonnull(rec);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "x-long");
    size_t hlen = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
    cJSON_Delete(rec);

    /* The query by raw socket: the harness's client cuts URLs at 2 KiB. */
    h_fake_reset(fake.port);
    {
        size_t cap = n + 256;
        char *req = malloc(cap);
        int fd = raw_connect(orp.port), closed;
        snprintf(req, cap, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
        raw_send(fd, req, strlen(req));
        char *got = raw_read(fd, 5000 * SLOW, &closed);
        ck_assert_msg(strncmp(got, "HTTP/1.1 200", 12) == 0, "got: %.200s", got);
        free(got);
        free(req);
        close(fd);
    }
    cJSON *all = h_fake_requests(fake.port);
    ck_assert_ptr_nonnull(all);
    ck_assert_int_eq(cJSON_GetArraySize(all), 1);
    cJSON *p = cJSON_GetObjectItem(cJSON_GetArrayItem(all, 0), "path");
    ck_assert_msg(cJSON_IsString(p), "no path recorded");
    ck_assert_msg(hlen == n && strcmp(p->valuestring + strlen("/api/v1"), path + strlen("/v1")) == 0,
                  "forwarded: header value %zu of %zu bytes, path %zu of %zu bytes", hlen, n,
                  strlen(p->valuestring) - strlen("/api"), strlen(path));
    cJSON_Delete(all);
    free(hdr);
    free(path);
}
END_TEST

/* ---- item 15: log injection ------------------------------------------------------------- */

/* Every byte of a log file is printable ASCII, a tab-free newline, or part
 * of well-formed UTF-8 (nothing here produces any); no ESC, DEL or raw high
 * byte from a client gets in. */
static void assert_log_clean(const char *path)
{
    char *log = h_read_file(path);
    ck_assert_ptr_nonnull(log);
    for (const unsigned char *p = (const unsigned char *)log; *p != '\0'; p++)
        ck_assert_msg(*p == '\n' || (*p >= 0x20 && *p < 0x7f), "raw byte 0x%02x in the log at %zu", *p,
                      (size_t)(p - (const unsigned char *)log));
    free(log);
}

static void send_weird_methods(void)
{
    static const char *const reqs[] = {
        "\x1b[2J\x7f\xff /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
        "G\xc3\x28\x1b\x80 /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        int fd = raw_connect(orp.port), closed;
        raw_send(fd, reqs[i], strlen(reqs[i]));
        char *got = raw_read(fd, 3000 * SLOW, &closed);
        ck_assert_msg(strncmp(got, "HTTP/1.1 4", 10) == 0, "got: %.200s", got);
        free(got);
        close(fd);
    }
    usleep(200000);
}

START_TEST(test_weird_method_escaped_in_text_log)
{
    start_conf(conf_none);
    send_weird_methods();
    char *log = h_read_file(orp.log);
    ck_assert_ptr_nonnull(log);
    ck_assert_msg(strstr(log, "route=/models") != NULL, "no request line logged:\n%s", log);
    free(log);
    assert_log_clean(orp.log);
}
END_TEST

/* The JSON log: every line parses and is valid UTF-8 without raw control or
 * high bytes. */
START_TEST(test_weird_method_escaped_in_json_log)
{
    char conf[1024];
    snprintf(conf, sizeof conf, "%slog = { format = \"json\"; };\n", conf_none);
    start_conf(conf);
    send_weird_methods();
    assert_log_clean(orp.log);
    char *log = h_read_file(orp.log), *save = NULL;
    int lines = 0;
    for (char *line = strtok_r(log, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        ck_assert_msg(j != NULL, "not JSON: %s", line);
        cJSON_Delete(j);
        lines++;
    }
    ck_assert_int_gt(lines, 0);
    free(log);
}
END_TEST

static Suite *front_security_suite(void)
{
    Suite *s = suite_create("front_security");
    TCase *tc = tcase_create("front");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, stop);
    tcase_add_test(tc, test_keyless_expect_continue_gets_401_not_100);
    tcase_add_test(tc, test_bad_key_refused_before_any_body_byte);
    tcase_add_test(tc, test_good_key_expect_continue_still_served);
    tcase_add_test(tc, test_keyless_bodies_do_not_grow_memory);
    tcase_add_test(tc, test_total_buffered_body_is_capped);
    tcase_add_test(tc, test_malformed_headers_refused_not_forwarded);
    tcase_add_test(tc, test_foreign_credentials_not_forwarded);
    tcase_add_test(tc, test_long_header_and_query_forwarded_whole);
    tcase_add_test(tc, test_weird_method_escaped_in_text_log);
    tcase_add_test(tc, test_weird_method_escaped_in_json_log);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(front_security_suite)
