/* End-to-end tests of upstream.ca_file: orproxy in front of the fake OpenRouter served over
 * HTTPS (libmicrohttpd's GnuTLS) with a certificate for 127.0.0.1 signed by a throwaway CA.
 * The CA and the server key are generated at the start of each test with the openssl CLI
 * into a temporary directory (loopback only, two days' validity) and removed at the end.
 *
 *  - upstream.ca_file = that CA: a chat request and a stream pass, each with its ledger row;
 *  - no ca_file (curl's system CAs), or another CA: the certificate is refused, the client
 *    gets 502 upstream_unreachable, and neither the answer nor the log names the key;
 *  - a ca_file that cannot be read is a config error at `orproxy -t`, naming the setting. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

/* A CA and a server certificate for IP 127.0.0.1 it signed; "other" is a second CA that
 * signed nothing here. EC P-256 keys; PEM files in $D. */
static const char gen_script[] =
    "set -e; cd \"$D\"\n"
    "for ca in ca other; do\n"
    "  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $ca.key"
    " -out $ca.pem -days 2 -subj /CN=orproxy-test-$ca -addext basicConstraints=critical,CA:TRUE"
    " -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "done\n"
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key"
    " -out server.csr -subj /CN=127.0.0.1\n"
    "printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
    "extendedKeyUsage=serverAuth\\nkeyUsage=critical,digitalSignature\\n' > server.ext\n"
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
    " -extfile server.ext -out server.pem\n";

static char dir[64];
static struct h_proc fake, orp;

static void setup(void)
{
    char args[200], *out = NULL, *err = NULL;
    const char *argv[] = {"sh", "-c", gen_script, NULL};

    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    snprintf(dir, sizeof dir, "/tmp/orp-tls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("D", dir, 1);
    ck_assert_msg(h_run(argv, &out, &err) == 0, "openssl could not make the certificates: %s",
                  err ? err : "");
    free(out);
    free(err);
    snprintf(args, sizeof args, "--tls-cert %s/server.pem --tls-key %s/server.key", dir, dir);
    ck_assert_int_eq(h_fake_start(&fake, args), 0);
}

static void teardown(void)
{
    const char *rm[] = {"rm", "-rf", dir, NULL};

    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
    if (dir[0] != '\0')
        h_run(rm, NULL, NULL);
    dir[0] = '\0';
}

/* orproxy against https://127.0.0.1:@FAKE@ with ca_line inside the upstream group. */
static void start_orproxy(const char *ca_line)
{
    char conf[1024];

    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"https://127.0.0.1:@FAKE@/api/v1\"; connect_timeout_s = 2;\n"
             "  %s };\n"
             "retry = { max_attempts = 2; base_delay_ms = 50; max_delay_ms = 100; };\n"
             "ledger = { flush_ms = 50; };\n"
             "workers = 1;\nshutdown_timeout_s = 5;\n",
             ca_line);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
}

static char *ledger_value(const char *rid, const char *col)
{
    char sql[256], path[512];
    snprintf(path, sizeof path, "%s/state/usage.db", orp.dir);
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE request_id = '%s'", col, rid);
    return h_db_value(path, sql, 5000);
}

static void assert_ledger(const char *rid, const char *col, const char *want)
{
    char *v = ledger_value(rid, col);
    ck_assert_msg(v != NULL, "no ledger row for %s", rid);
    ck_assert_str_eq(v, want);
    free(v);
}

static void post(struct h_resp *r, const char *rid, const char *body)
{
    char hdr[96];
    const char *hdrs[] = {hdr, NULL};
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", rid);
    h_request(r, orp.port, "POST", "/v1/chat/completions", body, hdrs, NULL);
}

START_TEST(test_tls_ca_file_verifies_the_upstream)
{
    char line[200];
    struct h_resp r;
    const char *why;

    snprintf(line, sizeof line, "ca_file = \"%s/ca.pem\";", dir);
    start_orproxy(line);

    post(&r, "tls-json", "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[]}");
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"choices\""));
    ck_assert_ptr_null(strstr(r.body, KEY));
    h_resp_free(&r);
    assert_ledger("tls-json", "status", "200");
    assert_ledger("tls-json", "stream", "0");

    post(&r, "tls-stream",
         "{\"model\":\"openai/gpt-4o-mini\",\"stream\":true,\"messages\":[],"
         "\"fake\":{\"events\":5,\"interval_ms\":10}}");
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "data: [DONE]"));
    ck_assert_ptr_null(strstr(r.body, KEY));
    h_resp_free(&r);
    assert_ledger("tls-stream", "status", "200");
    assert_ledger("tls-stream", "stream", "1");

    why = h_orproxy_finish(&orp, KEY, 10000);
    ck_assert_msg(why == NULL, "%s", why);
}
END_TEST

/* The certificate is refused: 502 upstream_unreachable, and no key in the answer or the log. */
static void assert_refused(const char *rid)
{
    struct h_resp r;
    const char *why;

    post(&r, rid, "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[]}");
    ck_assert_msg(r.status == 502, "status %ld: %s", r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "\"upstream_unreachable\""));
    ck_assert_ptr_null(strstr(r.body, KEY));
    ck_assert_ptr_null(strstr(r.body, "sk-or-"));
    ck_assert_ptr_null(strstr(r.body, "Bearer"));
    h_resp_free(&r);
    assert_ledger(rid, "status", "502");
    why = h_orproxy_finish(&orp, KEY, 10000);
    ck_assert_msg(why == NULL, "%s", why);
}

START_TEST(test_tls_system_cas_refuse_the_self_signed_upstream)
{
    start_orproxy("");
    assert_refused("tls-system");
}
END_TEST

START_TEST(test_tls_another_ca_refuses_the_upstream)
{
    char line[200];
    snprintf(line, sizeof line, "ca_file = \"%s/other.pem\";", dir);
    start_orproxy(line);
    assert_refused("tls-other");
}
END_TEST

START_TEST(test_tls_missing_ca_file_is_a_config_error)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    char text[600], *file, *err = NULL;
    const char *argv[] = {bin, "-t", "-c", NULL, NULL};

    snprintf(text, sizeof text,
             "upstream = { base_url = \"https://127.0.0.1:9/api/v1\";\n"
             "  ca_file = \"%s/no-such-ca.pem\"; };\n"
             "state_dir = \"%s/state\";\n",
             dir, dir);
    file = h_temp_file(text);
    ck_assert_ptr_nonnull(file);
    argv[3] = file;
    setenv("OPENROUTER_API_KEY", KEY, 1);
    ck_assert_int_eq(h_run(argv, NULL, &err), 2);
    unsetenv("OPENROUTER_API_KEY");
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, ":2: upstream.ca_file") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "no-such-ca.pem") != NULL, "%s", err);
    ck_assert_ptr_null(strstr(err, KEY));
    free(err);
    unlink(file);
    free(file);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("ca_file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tls_ca_file_verifies_the_upstream);
    tcase_add_test(tc, test_tls_system_cas_refuse_the_self_signed_upstream);
    tcase_add_test(tc, test_tls_another_ca_refuses_the_upstream);
    tcase_add_test(tc, test_tls_missing_ca_file_is_a_config_error);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(tls_suite)
