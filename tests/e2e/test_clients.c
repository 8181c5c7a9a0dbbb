/* End-to-end tests of client keys and policies: identity, model rules,
 * aliases, defaults, per-client and pass-through upstream keys, limits,
 * budgets under concurrency, /v1/key and /v1/usage scoping, reload. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY
#define BOB_KEY H_CANARY_KEY_2

static const char *const env_keys[] = {"OPENROUTER_API_KEY=" KEY, "BOB_OR_KEY=" BOB_KEY, NULL};

static struct h_proc fake, orp;
static char alice[80], bob[80], carol[80], admin[80], dave[80];
static char alice_h[65], bob_h[65], carol_h[65], admin_h[65], dave_h[65];

static char conf_text[8192];

static const char *make_conf(const char *extra_client)
{
    snprintf(conf_text, sizeof conf_text,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 2;\n"
             "auth = { mode = \"keys\"; };\n"
             "aliases = ( [\"fast\", \"openai/gpt-4o-mini\"] );\n"
             "clients = (\n"
             "  { name = \"alice\"; key_sha256 = \"%s\"; models = [\"openai/*\", \"*:free\"];\n"
             "    aliases = ( [\"gpt-4o\", \"openai/gpt-4o\"] ); rpm = 3;\n"
             "    defaults = { temperature = 0.2; system_prompt = \"Be brief.\"; }; },\n"
             "  { name = \"bob\"; key_sha256 = \"%s\"; upstream_key_env = \"BOB_OR_KEY\"; max_concurrent = 1; tpm = 5000; },\n"
             "  { name = \"carol\"; key_sha256 = \"%s\"; pass_through_keys = true;\n"
             "    budget_usd_day = \"0.001\"; },\n"
             "  { name = \"root\"; key_sha256 = \"%s\"; admin = true; }%s\n"
             ");\n",
             alice_h, bob_h, carol_h, admin_h, extra_client);
    return conf_text;
}

static void setup(void)
{
    static int keys_made;
    if (!keys_made) {
        ck_assert_int_eq(h_key_new("alice", alice, sizeof alice, alice_h), 0);
        ck_assert_int_eq(h_key_new("bob", bob, sizeof bob, bob_h), 0);
        ck_assert_int_eq(h_key_new("carol", carol, sizeof carol, carol_h), 0);
        ck_assert_int_eq(h_key_new("root", admin, sizeof admin, admin_h), 0);
        ck_assert_int_eq(h_key_new("dave", dave, sizeof dave, dave_h), 0);
        keys_made = 1;
    }
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, make_conf(""), env_keys), 0);
}

static void teardown(void)
{
    char *log = h_read_file(orp.log);
    if (log != NULL) {
        ck_assert_ptr_null(strstr(log, alice));
        ck_assert_ptr_null(strstr(log, KEY));
        ck_assert_ptr_null(strstr(log, BOB_KEY));
    }
    free(log);
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

static long call(const char *key, const char *path, const char *body, const char *extra_hdr,
                 struct h_resp *r)
{
    char auth[128];
    const char *hdrs[3] = {NULL, NULL, NULL};
    int n = 0;
    if (key != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdrs[n++] = auth;
    }
    if (extra_hdr != NULL)
        hdrs[n++] = extra_hdr;
    h_request(r, orp.port, body ? "POST" : "GET", path, body, hdrs, NULL);
    return r->status;
}

static const char *err_code(const struct h_resp *r)
{
    static char code[64];
    cJSON *root = cJSON_Parse(r->body);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "code");
    snprintf(code, sizeof code, "%s", cJSON_IsString(c) ? c->valuestring : "?");
    cJSON_Delete(root);
    return code;
}

static cJSON *upstream_body(const char *tag)
{
    cJSON *rec = h_fake_wait(fake.port, tag, NULL, 3000), *body;
    ck_assert_ptr_nonnull(rec);
    body = cJSON_Parse(cJSON_GetObjectItem(rec, "body")->valuestring);
    cJSON_Delete(rec);
    return body;
}

static const char *upstream_auth(const char *tag)
{
    static char v[256];
    cJSON *rec = h_fake_wait(fake.port, tag, NULL, 3000);
    ck_assert_ptr_nonnull(rec);
    snprintf(v, sizeof v, "%s",
             cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "authorization")->valuestring);
    cJSON_Delete(rec);
    return v;
}

START_TEST(test_key_new_output_accepted_by_check_config)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    char *path = h_subst(&orp, make_conf("")), *file = h_temp_file(path), *err = NULL;
    const char *argv[] = {bin, "-t", "-c", file, NULL};
    ck_assert_int_eq(strlen(alice), 47);
    ck_assert(strncmp(alice, "orp-", 4) == 0);
    setenv("BOB_OR_KEY", BOB_KEY, 1); /* bob's upstream_key_env must resolve */
    ck_assert_msg(h_run(argv, NULL, &err) == 0, "%s", err);
    unsetenv("BOB_OR_KEY");
    free(err);
    unlink(file);
    free(file);
    free(path);
}
END_TEST

START_TEST(test_missing_or_wrong_key_is_401)
{
    struct h_resp r;
    ck_assert_int_eq(call(NULL, "/v1/chat/completions", "{}", NULL, &r), 401);
    ck_assert_str_eq(err_code(&r), "missing_api_key");
    h_resp_free(&r);
    ck_assert_int_eq(call("orp-wrongwrongwrong", "/v1/chat/completions", "{}", NULL, &r), 401);
    ck_assert_str_eq(err_code(&r), "invalid_api_key");
    h_resp_free(&r);
    ck_assert_int_eq(call(KEY, "/v1/chat/completions", "{}", NULL, &r), 401); /* not a client key */
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, NULL) <= 1, 1); /* only the price fetch */
}
END_TEST

START_TEST(test_model_rules_and_aliases)
{
    struct h_resp r;
    cJSON *b;
    ck_assert_int_eq(call(alice, "/v1/chat/completions", "{\"model\":\"anthropic/claude-3\",\"messages\":[]}", NULL, &r), 403);
    ck_assert_str_eq(err_code(&r), "model_not_allowed");
    ck_assert_ptr_nonnull(strstr(r.body, "anthropic/claude-3"));
    h_resp_free(&r);
    /* a second "model" member cannot smuggle a forbidden model past the check */
    ck_assert_int_eq(call(alice, "/v1/chat/completions",
                          "{\"model\":\"openai/x\",\"model\":\"anthropic/claude-3\"}", NULL, &r), 400);
    ck_assert_str_eq(err_code(&r), "duplicate_field");
    h_resp_free(&r);
    ck_assert_int_eq(call(alice, "/v1/chat/completions", "{\"model\":\"meta/llama:free\",\"messages\":[]}", NULL, &r), 200);
    h_resp_free(&r);
    /* client alias, then the global one: upstream sees OpenRouter ids */
    ck_assert_int_eq(call(alice, "/v1/chat/completions", "{\"model\":\"gpt-4o\",\"messages\":[],\"fake\":{\"tag\":\"al1\"}}", NULL, &r), 200);
    h_resp_free(&r);
    b = upstream_body("al1");
    ck_assert_str_eq(cJSON_GetObjectItem(b, "model")->valuestring, "openai/gpt-4o");
    cJSON_Delete(b);
    ck_assert_int_eq(call(bob, "/v1/chat/completions", "{\"model\":\"fast\",\"fake\":{\"tag\":\"al2\"}}", NULL, &r), 200);
    h_resp_free(&r);
    b = upstream_body("al2");
    ck_assert_str_eq(cJSON_GetObjectItem(b, "model")->valuestring, "openai/gpt-4o-mini");
    cJSON_Delete(b);
}
END_TEST

START_TEST(test_defaults_only_where_missing)
{
    struct h_resp r;
    cJSON *b, *msgs;
    call(alice, "/v1/chat/completions",
         "{\"model\":\"openai/x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"fake\":{\"tag\":\"d1\"}}", NULL, &r);
    h_resp_free(&r);
    b = upstream_body("d1");
    ck_assert_double_eq_tol(cJSON_GetObjectItem(b, "temperature")->valuedouble, 0.2, 1e-9);
    msgs = cJSON_GetObjectItem(b, "messages");
    ck_assert_int_eq(cJSON_GetArraySize(msgs), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "role")->valuestring, "system");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "content")->valuestring, "Be brief.");
    cJSON_Delete(b);
    call(alice, "/v1/chat/completions",
         "{\"model\":\"openai/x\",\"temperature\":1.5,\"messages\":[{\"role\":\"system\",\"content\":\"Mine.\"}],"
         "\"fake\":{\"tag\":\"d2\"}}", NULL, &r);
    h_resp_free(&r);
    b = upstream_body("d2");
    ck_assert_double_eq_tol(cJSON_GetObjectItem(b, "temperature")->valuedouble, 1.5, 1e-9);
    msgs = cJSON_GetObjectItem(b, "messages");
    ck_assert_int_eq(cJSON_GetArraySize(msgs), 1);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "content")->valuestring, "Mine.");
    cJSON_Delete(b);
}
END_TEST

/* Rows in the ledger matching where (waits up to 3 s for the writer). */
static long long ledger_count(const char *where)
{
    char db[600], sql[256];
    long long n = 0;
    snprintf(db, sizeof db, "%s/state/usage.db", orp.dir);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM requests WHERE %s", where);
    for (int i = 0; i < 60 && n == 0; i++) {
        sqlite3 *h = NULL;
        sqlite3_stmt *st = NULL;
        if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(h);
        if (n == 0)
            usleep(50000);
    }
    return n;
}

START_TEST(test_per_client_and_pass_through_upstream_keys)
{
    struct h_resp r;
    cJSON *rec;
    call(bob, "/v1/chat/completions", "{\"fake\":{\"tag\":\"bobk\"}}", NULL, &r);
    h_resp_free(&r);
    ck_assert_str_eq(upstream_auth("bobk"), "Bearer " BOB_KEY);
    call(carol, "/v1/chat/completions", "{\"fake\":{\"tag\":\"carolk\"}}", "X-OpenRouter-Key: " H_CANARY_KEY_3, &r);
    h_resp_free(&r);
    ck_assert_str_eq(upstream_auth("carolk"), "Bearer " H_CANARY_KEY_3);
    rec = h_fake_wait(fake.port, "carolk", NULL, 1000);
    ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetObjectItem(rec, "headers"), "x-openrouter-key"));
    cJSON_Delete(rec);
    /* still accounted to carol in the ledger */
    ck_assert_int_eq(ledger_count("client = 'carol' AND status = 200"), 1);
    ck_assert_int_eq(ledger_count("client = 'bob' AND status = 200"), 1);
    /* not allowed for alice: the shared key is used, her header ignored */
    call(alice, "/v1/chat/completions", "{\"model\":\"openai/x\",\"fake\":{\"tag\":\"alicek\"}}", "X-OpenRouter-Key: " H_CANARY_KEY_4, &r);
    h_resp_free(&r);
    ck_assert_str_eq(upstream_auth("alicek"), "Bearer " KEY);
}
END_TEST

START_TEST(test_rpm_limit_with_retry_after)
{
    struct h_resp r;
    long ra;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(call(alice, "/v1/chat/completions", "{\"model\":\"openai/x\"}", NULL, &r), 200);
        h_resp_free(&r);
    }
    ck_assert_int_eq(call(alice, "/v1/chat/completions", "{\"model\":\"openai/x\"}", NULL, &r), 429);
    ck_assert_str_eq(err_code(&r), "rate_limit_rpm");
    ra = atol(h_header(&r, "Retry-After"));
    ck_assert_msg(ra >= 1 && ra <= 60, "Retry-After %ld", ra);
    h_resp_free(&r);
    /* other clients are not affected */
    ck_assert_int_eq(call(admin, "/v1/chat/completions", "{}", NULL, &r), 200);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_tpm_limit)
{
    struct h_resp r;
    /* tpm settles on the real usage: 3000 tokens used, then 3000 more asked */
    ck_assert_int_eq(call(bob, "/v1/chat/completions",
                          "{\"max_tokens\":3000,\"fake\":{\"usage\":{\"prompt_tokens\":2000,\"completion_tokens\":1000}}}",
                          NULL, &r), 200);
    h_resp_free(&r);
    /* bob's one concurrency slot is freed when orproxy sees the first
     * response delivered, which can be just after the client has it. */
    for (int k = 0; k < 100; k++) {
        ck_assert_int_eq(call(bob, "/v1/chat/completions", "{\"max_tokens\":3000}", NULL, &r), 429);
        if (strcmp(err_code(&r), "concurrency_limit") != 0)
            break;
        h_resp_free(&r);
        usleep(10000);
    }
    ck_assert_str_eq(err_code(&r), "rate_limit_tpm");
    ck_assert_ptr_nonnull(h_header(&r, "Retry-After"));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_concurrency_limit)
{
    struct h_resp r;
    char auth[128];
    const char *hdrs[] = {auth, NULL};
    struct h_async *a;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", bob);
    a = h_request_async(orp.port, "POST", "/v1/chat/completions",
                        "{\"stream\":true,\"max_tokens\":10,\"fake\":{\"tag\":\"slow\",\"events\":10,\"interval_ms\":100}}", hdrs, NULL);
    {
        cJSON *seen = h_fake_wait(fake.port, "slow", NULL, 3000);
        ck_assert_ptr_nonnull(seen);
        cJSON_Delete(seen);
    }
    ck_assert_int_eq(call(bob, "/v1/chat/completions", "{\"max_tokens\":10}", NULL, &r), 429);
    ck_assert_str_eq(err_code(&r), "concurrency_limit");
    ck_assert_str_eq(h_header(&r, "Retry-After"), "1");
    h_resp_free(&r);
    h_async_wait(a, &r);
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
    ck_assert_int_eq(call(bob, "/v1/chat/completions", "{\"max_tokens\":10}", NULL, &r), 200);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_budget_never_overshoots_under_50_concurrent)
{
    /* carol: $0.001 a day.  Each request reserves its worst case (test/awkward:
     * 0.0000003/token + 0.0001/request) and really costs $0.0001.  50 at once:
     * the admitted ones' total stays within the budget plus one reservation. */
    static struct h_async *a[50];
    char auth[128];
    const char *hdrs[] = {auth, NULL};
    int ok = 0, denied = 0;
    long ready = 0;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", carol);
    /* Reservations need the price table, which orproxy fetches after it
     * answers /healthz: without this wait the burst could race the fetch,
     * be admitted with zero estimates and overshoot (seen intermittently). */
    for (int k = 0; k < 500; k++) {
        struct h_resp rr;
        ready = call(NULL, "/readyz", NULL, NULL, &rr);
        h_resp_free(&rr);
        if (ready == 200)
            break;
        usleep(10000);
    }
    ck_assert_int_eq(ready, 200);
    for (int i = 0; i < 50; i++)
        a[i] = h_request_async(orp.port, "POST", "/v1/chat/completions",
                               "{\"model\":\"test/awkward\",\"max_tokens\":100,\"fake\":{\"hang_ms\":300,"
                               "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":10,\"cost\":0.0001}}}",
                               hdrs, NULL);
    for (int i = 0; i < 50; i++) {
        struct h_resp r;
        h_async_wait(a[i], &r);
        if (r.status == 200)
            ok++;
        else if (r.status == 402 && strcmp(err_code(&r), "budget_day_exceeded") == 0 &&
                 strstr(r.body, "daily budget of $0.001") && strstr(r.body, "resets at ") &&
                 h_header(&r, "Retry-After") != NULL)
            denied++;
        h_resp_free(&r);
    }
    ck_assert_int_eq(ok + denied, 50);
    ck_assert_int_ge(ok, 1);
    /* reservation per request ~ (30 + 100) * 0.0000003 + 0.0001 = 0.000139 */
    ck_assert_msg(ok * 100 <= 1000 + 139, "admitted %d requests of $0.0001 against $0.001", ok);
    ck_assert_int_ge(denied, 40);
}
END_TEST

START_TEST(test_key_endpoint_and_usage_scoping)
{
    struct h_resp r;
    cJSON *root, *data;
    call(alice, "/v1/chat/completions", "{\"model\":\"openai/x\",\"fake\":{\"usage\":{\"cost\":0.25}}}", NULL, &r);
    h_resp_free(&r);
    call(bob, "/v1/chat/completions", "{\"fake\":{\"usage\":{\"cost\":0.5}}}", NULL, &r);
    h_resp_free(&r);
    usleep(300000);

    ck_assert_int_eq(call(alice, "/v1/key", NULL, NULL, &r), 200);
    root = cJSON_Parse(r.body);
    data = cJSON_GetObjectItem(root, "data");
    ck_assert_str_eq(cJSON_GetObjectItem(data, "label")->valuestring, "alice");
    ck_assert_int_eq(cJSON_GetObjectItem(data, "rpm")->valueint, 3);
    ck_assert_double_eq_tol(cJSON_GetObjectItem(data, "usage_daily")->valuedouble, 0.25, 1e-12);
    cJSON_Delete(root);
    h_resp_free(&r);

    ck_assert_int_eq(call(alice, "/v1/usage?by=key", NULL, NULL, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"alice\""));
    ck_assert_ptr_null(strstr(r.body, "\"bob\""));
    h_resp_free(&r);
    ck_assert_int_eq(call(admin, "/v1/usage?by=key", NULL, NULL, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"alice\""));
    ck_assert_ptr_nonnull(strstr(r.body, "\"bob\""));
    h_resp_free(&r);
    ck_assert_int_eq(call(alice, "/metrics", NULL, NULL, &r), 403);
    h_resp_free(&r);
    ck_assert_int_eq(call(admin, "/metrics", NULL, NULL, &r), 200);
    h_resp_free(&r);
    ck_assert_int_eq(call(NULL, "/v1/key", NULL, NULL, &r), 401);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_reload_adds_client_without_restart)
{
    struct h_resp r;
    char extra[200], *text;
    ck_assert_int_eq(call(dave, "/v1/chat/completions", "{}", NULL, &r), 401);
    h_resp_free(&r);
    snprintf(extra, sizeof extra, ",\n  { name = \"dave\"; key_sha256 = \"%s\"; }", dave_h);
    text = h_subst(&orp, make_conf(extra));
    h_write_file(orp.conf, text);
    free(text);
    kill(orp.pid, SIGHUP);
    for (int i = 0; i < 100; i++) {
        call(dave, "/v1/chat/completions", "{}", NULL, &r);
        if (r.status == 200)
            break;
        h_resp_free(&r);
        usleep(30000);
    }
    ck_assert_int_eq(r.status, 200);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_auth_none_refused_off_loopback)
{
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
    char *file = h_temp_file("listen = { address = \"0.0.0.0\"; };\n"), *err = NULL;
    const char *argv[] = {bin, "-t", "-c", file, NULL};
    ck_assert_int_eq(h_run(argv, NULL, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, ":1: listen.address 0.0.0.0 is not loopback"));
    free(err);
    unlink(file);
    free(file);
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_key_new_output_accepted_by_check_config);
    tcase_add_test(tc, test_missing_or_wrong_key_is_401);
    tcase_add_test(tc, test_model_rules_and_aliases);
    tcase_add_test(tc, test_defaults_only_where_missing);
    tcase_add_test(tc, test_per_client_and_pass_through_upstream_keys);
    tcase_add_test(tc, test_rpm_limit_with_retry_after);
    tcase_add_test(tc, test_tpm_limit);
    tcase_add_test(tc, test_concurrency_limit);
    tcase_add_test(tc, test_budget_never_overshoots_under_50_concurrent);
    tcase_add_test(tc, test_key_endpoint_and_usage_scoping);
    tcase_add_test(tc, test_reload_adds_client_without_restart);
    tcase_add_test(tc, test_auth_none_refused_off_loopback);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(keys_suite)
