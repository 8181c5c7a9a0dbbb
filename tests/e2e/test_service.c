/* End-to-end tests of orproxy as a service: readiness, metrics, reload and
 * graceful stop under live streams, systemd notifications and socket
 * activation. */
#include <check.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY
#define NSTREAMS 100

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

static const char *conf_fmt =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; title = \"%s\"; idle_timeout_s = 5; };\n"
    "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 100; };\n"
    "state_dir = \"@DIR@/state\";\n"
    "ledger = { flush_ms = 100; };\n"
    "shutdown_timeout_s = %d;\n"
    "workers = 2;\n";

static struct h_proc fake, orp;

static char *conf(const char *title, int shutdown_s)
{
    static char buf[2048];
    snprintf(buf, sizeof buf, conf_fmt, title, shutdown_s);
    return buf;
}

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    h_proc_stop(&orp, SIGTERM, 15000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

static int log_has(const char *needle)
{
    return h_log_wait(&orp, needle, 0);
}

static void wait_log(const char *needle, int timeout_ms)
{
    ck_assert_msg(h_log_wait(&orp, needle, timeout_ms), "no '%s' in the log", needle);
}

static long get_status(const char *path, char **body)
{
    struct h_resp r;
    long st;
    h_request(&r, orp.port, "GET", path, NULL, NULL, NULL);
    st = r.status;
    if (body != NULL)
        *body = strdup(r.body ? r.body : "");
    h_resp_free(&r);
    return st;
}

static struct h_async *start_stream(const char *tag, int events, int interval_ms)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"model\":\"svc/m\",\"stream\":true,\"fake\":{\"tag\":\"%s\",\"events\":%d,"
             "\"interval_ms\":%d}}",
             tag, events, interval_ms);
    return h_request_async(orp.port, "POST", "/v1/chat/completions", body, NULL, NULL);
}

START_TEST(test_readyz_reports_why_not_ready)
{
    char *body;
    ck_assert_int_eq(h_orproxy_start(&orp, conf("t", 5), NULL), 0); /* no key */
    ck_assert_int_eq(get_status("/healthz", NULL), 200);
    ck_assert_int_eq(get_status("/readyz", &body), 503);
    ck_assert_ptr_nonnull(strstr(body, "no upstream API key"));
    ck_assert_ptr_nonnull(strstr(body, "\"ready\":false"));
    free(body);
}
END_TEST

START_TEST(test_readyz_ready_with_key_ledger_and_prices)
{
    char *body = NULL;
    long st = 0;
    ck_assert_int_eq(h_orproxy_start(&orp, conf("t", 5), env_key), 0);
    for (int i = 0; i < 100 && st != 200; i++) {
        free(body);
        st = get_status("/readyz", &body);
        if (st != 200)
            usleep(50000);
    }
    ck_assert_msg(st == 200, "readyz: %s", body);
    ck_assert_str_eq(body, "{\"reasons\":[],\"ready\":true}");
    free(body);
}
END_TEST

START_TEST(test_readyz_without_prices_is_503)
{
    /* Upstream unreachable at start and no price cache: not ready. */
    char *body, text[1024];
    snprintf(text, sizeof text,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:%d/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\n", h_free_port());
    ck_assert_int_eq(h_orproxy_start(&orp, text, env_key), 0);
    ck_assert_int_eq(get_status("/readyz", &body), 503);
    ck_assert_ptr_nonnull(strstr(body, "no price table"));
    ck_assert_ptr_null(strstr(body, "API key"));
    free(body);
}
END_TEST

START_TEST(test_metrics_valid_after_traffic)
{
    struct h_resp r;
    char *body, *path, *out = NULL, *err = NULL;
    const char *promtool = access("/usr/bin/promtool", X_OK) == 0 ? "/usr/bin/promtool" : NULL;

    ck_assert_int_eq(h_orproxy_start(&orp, conf("t", 5), env_key), 0);
    h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"met/a\\\"q\"}", NULL, NULL);
    h_resp_free(&r);
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"met/s\",\"stream\":true,\"fake\":{\"events\":2}}", NULL, NULL);
    h_resp_free(&r);
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"met/e\",\"fake\":{\"key\":\"m\",\"fail_times\":1}}", NULL, NULL);
    h_resp_free(&r);

    h_request(&r, orp.port, "GET", "/metrics", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strncmp(h_header(&r, "Content-Type"), "text/plain; version=0.0.4", 25) == 0);
    body = strdup(r.body);
    h_resp_free(&r);
    ck_assert_ptr_nonnull(strstr(body, "orproxy_requests_total{route=\"/chat/completions\",status=\"200\",model=\"met/s\"} 1"));
    ck_assert_ptr_nonnull(strstr(body, "model=\"met/a\\\"q\"")); /* escaped label */
    ck_assert_ptr_nonnull(strstr(body, "orproxy_upstream_retries_total 1"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_tokens_total{model=\"met/s\",client=\"anonymous\",kind=\"completion\"} 2"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_cost_usd_total{model=\"met/s\",client=\"anonymous\"} 0.000123"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_request_duration_seconds_bucket{route=\"/chat/completions\",le=\"+Inf\"} 3"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_time_to_first_byte_seconds_count"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_ledger_dropped_total 0"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_active_streams 0"));
    ck_assert_ptr_nonnull(strstr(body, "orproxy_build_info{version="));
    ck_assert_ptr_null(strstr(body, KEY));

    ck_assert_msg(promtool != NULL, "promtool is missing (Debian package prometheus; make deps-test installs it)");
    path = h_temp_file(body);
    {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s check metrics < %s", promtool, path);
        const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        int rc = h_run(argv, &out, &err);
        ck_assert_msg(rc == 0, "promtool: %s%s", out, err);
    }
    unlink(path);
    free(path);
    free(out);
    free(err);
    free(body);
}
END_TEST

static void wait_all_done(struct h_async **a, int n, int *complete)
{
    *complete = 0;
    for (int i = 0; i < n; i++) {
        struct h_resp r;
        h_async_wait(a[i], &r);
        if (r.status == 200 && r.curl_code == 0 && strstr(r.body, "data: [DONE]") != NULL)
            (*complete)++;
        h_resp_free(&r);
    }
}

START_TEST(test_sighup_under_live_streams)
{
    static struct h_async *a[NSTREAMS];
    int complete;
    cJSON *rec;
    char *text;
    struct h_resp r;

    ck_assert_int_eq(h_orproxy_start(&orp, conf("before", 5), env_key), 0);
    for (int i = 0; i < NSTREAMS; i++)
        a[i] = start_stream("hup-live", 15, 100);
    {
        cJSON *seen = h_fake_wait(fake.port, "hup-live", NULL, 3000);
        ck_assert_ptr_nonnull(seen);
        cJSON_Delete(seen);
    }
    usleep(300000);

    /* A good new config: new requests use it, live streams are untouched. */
    text = h_subst(&orp, conf("after", 5));
    ck_assert_int_eq(h_write_file(orp.conf, text), 0);
    free(text);
    kill(orp.pid, SIGHUP);
    wait_log("reloaded ", 3000);
    h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"fake\":{\"tag\":\"hup-new\"}}", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    rec = h_fake_wait(fake.port, "hup-new", NULL, 3000);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "x-title")->valuestring, "after");
    cJSON_Delete(rec);

    /* A broken one is rejected with FILE:LINE and the running one stays. */
    ck_assert_int_eq(h_write_file(orp.conf, "listen = { port = 1; };\nretry = { max_attempts = 0; };\n"), 0);
    kill(orp.pid, SIGHUP);
    wait_log("reload failed, keeping the running configuration", 3000);
    ck_assert(log_has(":2: retry.max_attempts must be between 1 and 10"));
    h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"fake\":{\"tag\":\"hup-kept\"}}", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    rec = h_fake_wait(fake.port, "hup-kept", NULL, 3000);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "x-title")->valuestring, "after");
    cJSON_Delete(rec);

    wait_all_done(a, NSTREAMS, &complete);
    ck_assert_int_eq(complete, NSTREAMS);
    {
        char *m;
        ck_assert_int_eq(get_status("/metrics", &m), 200);
        ck_assert_ptr_nonnull(strstr(m, "orproxy_config_reloads_total{result=\"ok\"} 1"));
        ck_assert_ptr_nonnull(strstr(m, "orproxy_config_reloads_total{result=\"failed\"} 1"));
        free(m);
    }
}
END_TEST

static long long ledger_rows(const char *where)
{
    char db[600], sql[256];
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;

    snprintf(db, sizeof db, "%s/state/usage.db", orp.dir);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM requests WHERE %s", where);
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

START_TEST(test_sigterm_drains_live_streams_and_ledger)
{
    static struct h_async *a[NSTREAMS];
    int complete, rc;
    double t0;

    ck_assert_int_eq(h_orproxy_start(&orp, conf("t", 10), env_key), 0);
    for (int i = 0; i < NSTREAMS; i++)
        a[i] = start_stream("term-live", 15, 100);
    {
        cJSON *seen = h_fake_wait(fake.port, "term-live", NULL, 3000);
        ck_assert_ptr_nonnull(seen);
        cJSON_Delete(seen);
    }
    usleep(300000);
    t0 = h_now();
    kill(orp.pid, SIGTERM);
    wait_all_done(a, NSTREAMS, &complete);
    ck_assert_int_eq(complete, NSTREAMS); /* every stream finished normally */
    rc = h_proc_stop(&orp, SIGTERM, 15000);
    ck_assert_int_eq(rc, 0);
    ck_assert(h_now() - t0 < 10);
    ck_assert_int_eq(ledger_rows("model = 'svc/m' AND outcome = 'ok'"), NSTREAMS);
}
END_TEST

START_TEST(test_sigterm_timeout_ends_streams_with_error_event)
{
    static struct h_async *a[10];
    int ended = 0, rc;
    double t0;

    ck_assert_int_eq(h_orproxy_start(&orp, conf("t", 1), env_key), 0);
    for (int i = 0; i < 10; i++)
        a[i] = start_stream("term-slow", 200, 100); /* 20 s each */
    {
        cJSON *seen = h_fake_wait(fake.port, "term-slow", NULL, 3000);
        ck_assert_ptr_nonnull(seen);
        cJSON_Delete(seen);
    }
    usleep(300000);
    t0 = h_now();
    kill(orp.pid, SIGTERM);
    for (int i = 0; i < 10; i++) {
        struct h_resp r;
        h_async_wait(a[i], &r);
        if (strstr(r.body, "\"code\":\"shutting_down\"") != NULL && strstr(r.body, "data: [DONE]") == NULL)
            ended++;
        h_resp_free(&r);
    }
    ck_assert_int_eq(ended, 10);
    rc = h_proc_stop(&orp, SIGTERM, 10000);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(h_now() - t0 < 5, "stop took %.1f s", h_now() - t0);
    ck_assert_int_eq(ledger_rows("model = 'svc/m'"), 10);
}
END_TEST

START_TEST(test_sd_notify_messages)
{
    char sock_path[96], env_sock[160], buf[512], seen[4096] = "";
    const char *env[] = {"OPENROUTER_API_KEY=" KEY, env_sock, "WATCHDOG_USEC=400000", NULL};
    struct sockaddr_un sa;
    int fd;

    snprintf(sock_path, sizeof sock_path, "/tmp/orp-notify-%d", getpid());
    unlink(sock_path);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sock_path);

    ck_assert_int_eq(h_orproxy_start(&orp, conf("t", 5), env), 0);
    usleep(600000); /* a few watchdog periods */
    kill(orp.pid, SIGHUP);
    wait_log("reloaded ", 3000);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            break;
        buf[n] = '\0';
        strncat(seen, buf, sizeof seen - strlen(seen) - 2);
        strcat(seen, "|");
    }
    close(fd);
    unlink(sock_path);
    ck_assert_msg(strstr(seen, "READY=1") != NULL, "%s", seen);
    ck_assert_msg(strstr(seen, "WATCHDOG=1") != NULL, "%s", seen);
    ck_assert_msg(strstr(seen, "RELOADING=1") != NULL, "%s", seen);
    ck_assert_msg(strstr(strstr(seen, "RELOADING=1"), "READY=1") != NULL, "no READY after reload: %s", seen);
    ck_assert_msg(strstr(seen, "STOPPING=1") != NULL, "%s", seen);
}
END_TEST

START_TEST(test_socket_activation)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    char listen[64], confpath[] = "/tmp/orp-sa-XXXXXX", *text;
    int port = h_free_port(), fd;
    pid_t pid;
    struct h_resp r;
    int status;

    ck_assert_msg(access("/usr/bin/systemd-socket-activate", X_OK) == 0,
                  "systemd-socket-activate is missing (Debian package systemd)");
    fd = mkstemp(confpath);
    close(fd);
    memset(&orp, 0, sizeof orp);
    /* The port in the file is unused: the socket comes from systemd. */
    text = h_subst(&orp, "listen = { port = 1; };\n"
                         "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
                         "state_dir = \"/tmp/orp-sa-state\";\n");
    h_write_file(confpath, text);
    free(text);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    /* orproxy's stderr goes to the capture (tests/secrets), or nowhere. */
    char errpath[1024] = "/dev/null";
    if (h_capture_dir() != NULL)
        snprintf(errpath, sizeof errpath, "%s/socket-activation.log", h_capture_dir());
    pid = fork();
    if (pid == 0) {
        int errfd = open(errpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(errfd, 2);
        execl("/usr/bin/systemd-socket-activate", "systemd-socket-activate", "-l", listen, "-E",
              "OPENROUTER_API_KEY=" KEY, bin, "-c", confpath, (char *)NULL);
        _exit(127);
    }
    usleep(300000);
    /* The first connection starts orproxy on the passed socket. */
    for (int i = 0; i < 50; i++) {
        h_request(&r, port, "POST", "/v1/chat/completions", "{\"fake\":{\"tag\":\"sa\"}}", NULL, NULL);
        if (r.status == 200)
            break;
        h_resp_free(&r);
        usleep(100000);
    }
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "sa"), 1);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    unlink(confpath);
    {
        const char *rm[] = {"rm", "-rf", "/tmp/orp-sa-state", NULL};
        h_run(rm, NULL, NULL);
    }
}
END_TEST

START_TEST(test_journald_priorities_and_json_lines)
{
    const char *env[] = {"OPENROUTER_API_KEY=" KEY, "JOURNAL_STREAM=8:12345", NULL};
    char text[4096], *log, *line;
    struct h_resp r;

    snprintf(text, sizeof text, "%slog = { format = \"json\"; };\n", conf("t", 5));
    ck_assert_int_eq(h_orproxy_start(&orp, text, env), 0);
    h_request(&r, orp.port, "POST", "/v1/chat/completions", "{\"model\":\"j/1\",\"fake\":{\"status\":400}}", NULL, NULL);
    h_resp_free(&r);
    wait_log("model=j/1", 3000);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    log = h_read_file(orp.log);
    /* every line: "<N>" priority for journald, then one JSON object */
    for (line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        cJSON *o;
        ck_assert_msg(line[0] == '<' && line[2] == '>', "no priority: %s", line);
        o = cJSON_Parse(line + 3);
        ck_assert_msg(cJSON_IsObject(o), "not JSON: %s", line);
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(o, "level")));
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(o, "msg")));
        if (strstr(line, "model=j/1") != NULL)
            ck_assert_msg(strncmp(line, "<6>", 3) == 0, "request line is info: %s", line);
        cJSON_Delete(o);
    }
    free(log);
}
END_TEST

static Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("service");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_readyz_reports_why_not_ready);
    tcase_add_test(tc, test_readyz_ready_with_key_ledger_and_prices);
    tcase_add_test(tc, test_readyz_without_prices_is_503);
    tcase_add_test(tc, test_metrics_valid_after_traffic);
    tcase_add_test(tc, test_sighup_under_live_streams);
    tcase_add_test(tc, test_sigterm_drains_live_streams_and_ledger);
    tcase_add_test(tc, test_sigterm_timeout_ends_streams_with_error_event);
    tcase_add_test(tc, test_sd_notify_messages);
    tcase_add_test(tc, test_socket_activation);
    tcase_add_test(tc, test_journald_priorities_and_json_lines);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(service_suite)
