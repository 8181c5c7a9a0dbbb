/* End-to-end tests that secrets and internals stay inside orproxy: credentials in
 * upstream.base_url, the state directory and the config path never reach an error a client
 * gets, whatever way upstream fails; the userinfo never reaches the log; and orproxy will not
 * serve a non-loopback address without client keys. The canary upstream key itself is checked
 * across the whole suite's output by tests/secrets/check_secrets.sh (make test-secrets). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "harness.h"

static const char *const env_key[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};

/* %s: host:port of upstream. The userinfo is what must not leak. */
static const char *conf_fmt =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://canaryuser:canarypass@%s/api/v1\"; idle_timeout_s = 1;\n"
    "             connect_timeout_s = 2; };\n"
    "retry = { max_attempts = 2; base_delay_ms = 10; max_delay_ms = 50; };\n"
    "state_dir = \"@DIR@/state\";\n"
    "ledger = { flush_ms = 100; jsonl_path = \"@DIR@/state/usage.jsonl\"; };\n"
    "workers = 1;\n";

static struct h_proc fake, orp;
static char base_url[256];

static void start(const char *hostport)
{
    char conf[2048];
    snprintf(conf, sizeof conf, conf_fmt, hostport);
    snprintf(base_url, sizeof base_url, "http://canaryuser:canarypass@%s/api/v1", hostport);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
}

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    /* The userinfo is not in any log line either (the startup line shows the upstream). */
    char *log = orp.log[0] ? h_read_file(orp.log) : NULL;
    if (log != NULL) {
        ck_assert_msg(strstr(log, "canarypass") == NULL, "the base_url password is in the log");
        ck_assert_msg(strstr(log, "canaryuser") == NULL, "the base_url user is in the log");
    }
    free(log);
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

/* What a client sees holds no credential, no upstream URL, no internal path. */
static void assert_nothing_internal(const struct h_resp *r)
{
    const char *parts[] = {r->raw_headers ? r->raw_headers : "", r->body ? r->body : ""};
    for (int i = 0; i < 2; i++) {
        const char *t = parts[i];
        ck_assert_msg(strcasestr(t, "pass") == NULL, "'pass' in a response: %s", t);
        ck_assert_msg(strstr(t, "canaryuser") == NULL, "the base_url user in a response: %s", t);
        ck_assert_msg(strstr(t, base_url) == NULL, "the base_url in a response: %s", t);
        ck_assert_msg(strstr(t, "@127.0.0.1") == NULL, "userinfo@host in a response: %s", t);
        ck_assert_msg(strstr(t, orp.dir) == NULL, "the state/config directory in a response: %s",
                      t);
        ck_assert_msg(strstr(t, "orproxy.conf") == NULL, "the config path in a response: %s", t);
        ck_assert_msg(strstr(t, "usage.db") == NULL, "the ledger path in a response: %s", t);
        ck_assert_msg(strstr(t, H_CANARY_KEY) == NULL, "the upstream key in a response");
    }
}

static long post(const char *body, struct h_resp *r)
{
    h_request(r, orp.port, "POST", "/v1/chat/completions", body, NULL, NULL);
    assert_nothing_internal(r);
    return r->status;
}

START_TEST(test_refused_upstream_error_hides_base_url_credentials)
{
    char hostport[64];
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", h_free_port()); /* nobody listens */
    start(hostport);
    struct h_resp r;
    ck_assert_int_eq(post("{\"model\":\"openai/gpt-4o-mini\"}", &r), 502);
    ck_assert_ptr_nonnull(strstr(r.body, "\"upstream_unreachable\""));
    h_resp_free(&r);
    ck_assert_int_eq(post("{\"model\":\"openai/gpt-4o-mini\",\"stream\":true}", &r), 502);
    h_resp_free(&r);
    h_request(&r, orp.port, "GET", "/v1/models", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 502);
    assert_nothing_internal(&r);
    h_resp_free(&r);
    /* readiness and metrics explain themselves without internals too */
    h_request(&r, orp.port, "GET", "/readyz", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 503);
    assert_nothing_internal(&r);
    h_resp_free(&r);
    h_request(&r, orp.port, "GET", "/metrics", NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    assert_nothing_internal(&r);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_upstream_500_error_hides_base_url_credentials)
{
    char hostport[64];
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", fake.port);
    start(hostport);
    struct h_resp r;
    ck_assert_int_eq(post("{\"fake\":{\"status\":500}}", &r), 500);
    h_resp_free(&r);
    ck_assert_int_eq(post("{\"stream\":true,\"fake\":{\"status\":500}}", &r), 500);
    h_resp_free(&r);
    ck_assert_int_eq(post("{\"fake\":{\"close_before_headers\":true}}", &r), 502);
    h_resp_free(&r);
    ck_assert_int_eq(post("{\"fake\":{\"notjson\":true}}", &r), 200);
    h_resp_free(&r);
    ck_assert_int_eq(post("{\"fake\":{\"status\":400}}", &r), 400);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_upstream_timeout_error_hides_base_url_credentials)
{
    char hostport[64];
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", fake.port);
    start(hostport);
    struct h_resp r;
    ck_assert_int_eq(post("{\"fake\":{\"hang_ms\":60000}}", &r), 504);
    ck_assert_ptr_nonnull(strstr(r.body, "\"upstream_timeout\""));
    h_resp_free(&r);
    /* after the commit point: the failure is the stream's last event */
    ck_assert_int_eq(post("{\"stream\":true,\"fake\":{\"events\":3,\"hang_after\":1}}", &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "upstream_stream_error"));
    h_resp_free(&r);
    ck_assert_int_eq(post("{\"stream\":true,\"fake\":{\"events\":3,\"drop_after\":1}}", &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "upstream_stream_error"));
    h_resp_free(&r);
}
END_TEST

/* orproxy itself (not only -t: test_clients.c's test_auth_none_refused_off_loopback) refuses
 * to serve a non-loopback address with auth.mode = "none", with FILE:LINE and exit 2. */
static void assert_refused(const char *address)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    char text[256], expect[1024];
    snprintf(text, sizeof text,
             "state_dir = \"/tmp\";\nlisten = { address = \"%s\"; port = %d; };\n", address,
             h_free_port());
    char *file = h_temp_file(text), *err = NULL;
    const char *argv[] = {bin, "-c", file, NULL};
    ck_assert_int_eq(h_run(argv, NULL, &err), 2);
    snprintf(expect, sizeof expect, "%s:2: listen.address %s is not loopback", file, address);
    ck_assert_msg(strstr(err, expect) != NULL, "expected '%s' in: %s", expect, err);
    free(err);
    unlink(file);
    free(file);
}

START_TEST(test_daemon_refuses_non_loopback_without_client_keys)
{
    assert_refused("0.0.0.0");
    assert_refused("::");
    assert_refused("192.0.2.1");
}
END_TEST

static Suite *secrets_suite(void)
{
    Suite *s = suite_create("secrets");
    TCase *tc = tcase_create("secrets");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_refused_upstream_error_hides_base_url_credentials);
    tcase_add_test(tc, test_upstream_500_error_hides_base_url_credentials);
    tcase_add_test(tc, test_upstream_timeout_error_hides_base_url_credentials);
    tcase_add_test(tc, test_daemon_refuses_non_loopback_without_client_keys);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(secrets_suite)
