/* End-to-end tests of the console's files under /ui/ (issue 13): served by
 * orproxy itself with no key even under auth.mode keys (they hold no data),
 * every answer with the console's security headers, exact files only, and
 * nothing of it in the ledger. The console's behaviour in a browser is
 * tests/ui/ (make test-ui). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define KEY H_CANARY_KEY

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};
static struct h_proc fake, orp;
static char user_key[80], user_hash[65];

static void start(void)
{
    static char conf[1024];
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    if (user_key[0] == '\0')
        ck_assert_int_eq(h_key_new("user", user_key, sizeof user_key, user_hash), 0);
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\n"
             "workers = 1;\n"
             "shutdown_timeout_s = 2;\n"
             "auth = { mode = \"keys\"; };\n"
             "clients = ( { name = \"user\"; key_sha256 = \"%s\"; } );\n",
             user_hash);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
}

static void stop(void)
{
    const char *why = h_orproxy_finish(&orp, KEY, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
    ck_assert_msg(why == NULL, "orproxy: %s", why);
}

static void assert_security_headers(const struct h_resp *r)
{
    ck_assert_str_eq(h_header(r, "Content-Security-Policy") ? h_header(r, "Content-Security-Policy") : "",
                     "default-src 'self'");
    ck_assert_str_eq(h_header(r, "X-Frame-Options") ? h_header(r, "X-Frame-Options") : "", "DENY");
    ck_assert_str_eq(h_header(r, "X-Content-Type-Options") ? h_header(r, "X-Content-Type-Options") : "",
                     "nosniff");
}

static char *tree_file(const char *path)
{
    char *text = h_read_file(path);
    ck_assert_msg(text != NULL, "%s not readable (run from the checkout)", path);
    return text;
}

START_TEST(test_files_served_without_a_key)
{
    struct h_resp r;
    char *index = tree_file("ui/index.html"), *app = tree_file("ui/app.js");
    const char *const bad_key[] = {"Authorization: Bearer not-a-key", NULL};

    start();
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/ui/", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(h_header(&r, "Content-Type"), "text/html; charset=utf-8");
    ck_assert_str_eq(r.body, index);
    assert_security_headers(&r);
    ck_assert_ptr_nonnull(h_header(&r, "Cache-Control"));
    h_resp_free(&r);
    /* A wrong key does not matter here: nothing is identified. */
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/ui/app.js", NULL, bad_key, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(h_header(&r, "Content-Type"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(r.body, app);
    assert_security_headers(&r);
    h_resp_free(&r);
    /* The API itself still needs a key. */
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/v1/models", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 401);
    h_resp_free(&r);
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/ui/auth.json", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"mode\":\"keys\"}");
    assert_security_headers(&r);
    h_resp_free(&r);
    free(index);
    free(app);
}
END_TEST

START_TEST(test_redirect_404_405_304_head)
{
    struct h_resp r;
    char inm[128];
    const char *hdrs[] = {inm, NULL};

    start();
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/ui", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 301);
    ck_assert_str_eq(h_header(&r, "Location"), "/ui/");
    assert_security_headers(&r);
    h_resp_free(&r);
    /* Unknown files, and paths that would leave ui/ (curl squashes a literal "..", so escaped),
     * are 404s in the API's error shape. */
    for (const char *const *p = (const char *const[]){"/ui/nope.js", "/ui/%2e%2e/Makefile", "/ui/%2e%2e/src/ui.c",
                                                      "/ui/vendor/", NULL};
         *p != NULL; p++) {
        ck_assert_int_eq(h_request(&r, orp.port, "GET", *p, NULL, NULL, NULL), 0);
        ck_assert_msg(r.status == 404, "%s: %ld", *p, r.status);
        ck_assert_str_eq(h_header(&r, "Content-Type"), "application/json");
        ck_assert_ptr_nonnull(strstr(r.body, "\"code\":\"not_found\""));
        assert_security_headers(&r);
        h_resp_free(&r);
    }
    ck_assert_int_eq(h_request(&r, orp.port, "POST", "/ui/", "{}", NULL, NULL), 0);
    ck_assert_int_eq(r.status, 405);
    h_resp_free(&r);
    /* A cached copy is revalidated with its ETag: 304, no body. */
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/ui/style.css", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(h_header(&r, "ETag"));
    snprintf(inm, sizeof inm, "If-None-Match: %s", h_header(&r, "ETag"));
    h_resp_free(&r);
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/ui/style.css", NULL, hdrs, NULL), 0);
    ck_assert_int_eq(r.status, 304);
    ck_assert_uint_eq(r.len, 0);
    assert_security_headers(&r);
    h_resp_free(&r);
    ck_assert_int_eq(h_request(&r, orp.port, "HEAD", "/ui/app.js", NULL, NULL, NULL), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.len, 0);
    h_resp_free(&r);
    /* None of it is an API request: after one refused API call, the ledger
     * holds that one row and nothing from /ui. */
    ck_assert_int_eq(h_request(&r, orp.port, "GET", "/v1/models", NULL,
                               (const char *const[]){"Authorization: Bearer not-a-key", NULL}, NULL), 0);
    ck_assert_int_eq(r.status, 401);
    h_resp_free(&r);
    {
        char db[512], *n;
        snprintf(db, sizeof db, "%s/state/usage.db", orp.dir);
        n = h_db_value(db, "SELECT id FROM requests", 5000);
        ck_assert_ptr_nonnull(n);
        free(n);
        n = h_db_value(db, "SELECT count(*) FROM requests", 0);
        ck_assert_str_eq(n, "1");
        free(n);
    }
}
END_TEST

static Suite *console_suite(void)
{
    Suite *s = suite_create("console");
    TCase *tc = tcase_create("ui");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, stop);
    tcase_add_test(tc, test_files_served_without_a_key);
    tcase_add_test(tc, test_redirect_404_405_304_head);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(console_suite)
