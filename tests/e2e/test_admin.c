/* End-to-end tests of the admin API (/admin/v1/) and managed clients:
 * who may call it (401, 403, the 429 after 10 failures), every route and
 * its errors, and what a managed key can do: work on the very next
 * request on both workers, stop within 1 s when revoked (also an old key
 * in its grace period), both keys during a rotation's grace and only the
 * new one after, an expiry in the past, a restart.  Asserts the bytes a
 * client sees and the rows of the ledger's clients table. */
#include <check.h>
#include <math.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY

static const char *const env_keys[] = {"OPENROUTER_API_KEY=" KEY, NULL};

static struct h_proc fake, orp;
static char alice[80], root[80], alice_h[65], root_h[65];
static char conf_text[4096], db_path[400];
static char made[16][64]; /* every key the API handed out in this test */
static int n_made;

static void setup(void)
{
    static int keys_made;
    if (!keys_made) {
        ck_assert_int_eq(h_key_new("alice", alice, sizeof alice, alice_h), 0);
        ck_assert_int_eq(h_key_new("root", root, sizeof root, root_h), 0);
        keys_made = 1;
    }
    snprintf(conf_text, sizeof conf_text,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 2;\n"
             "auth = { mode = \"keys\"; };\n"
             "limits = { budget_usd_day = \"100\"; };\n"
             "clients = (\n"
             "  { name = \"alice\"; key_sha256 = \"%s\"; },\n"
             "  { name = \"root\"; key_sha256 = \"%s\"; admin = true; }\n"
             ");\n",
             alice_h, root_h);
    n_made = 0;
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf_text, env_keys), 0);
    snprintf(db_path, sizeof db_path, "%s/state/usage.db", orp.dir);
}

static void teardown(void)
{
    char *log = h_read_file(orp.log);
    if (log != NULL) {
        ck_assert_ptr_null(strstr(log, root));
        ck_assert_ptr_null(strstr(log, alice));
        for (int i = 0; i < n_made; i++) /* nor a key the API made */
            ck_assert_ptr_null(strstr(log, made[i]));
    }
    free(log);
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

/* An admin call with key (NULL: none); returns the status. */
static long adm(const char *key, const char *method, const char *path, const char *body,
                struct h_resp *r)
{
    char auth[128];
    const char *hdrs[2] = {NULL, NULL};
    if (key != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdrs[0] = auth;
    }
    h_request(r, orp.port, method, path, body, hdrs, NULL);
    return r->status;
}

/* adm() and the answer's error code ("" when none), response freed. */
static const char *adm_err(const char *key, const char *method, const char *path,
                           const char *body, long want)
{
    static char code[64];
    struct h_resp r;
    cJSON *root_j, *c;
    ck_assert_int_eq(adm(key, method, path, body, &r), want);
    ck_assert_str_eq(h_header(&r, "X-Content-Type-Options"), "nosniff");
    ck_assert_str_eq(h_header(&r, "Cache-Control"), "no-store");
    root_j = cJSON_Parse(r.body);
    c = cJSON_GetObjectItem(cJSON_GetObjectItem(root_j, "error"), "code");
    snprintf(code, sizeof code, "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(root_j);
    h_resp_free(&r);
    return code;
}

/* A chat request with key: the status. */
static long chat(const char *key)
{
    char auth[128];
    const char *hdrs[] = {auth, NULL};
    struct h_resp r;
    long st;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    h_request(&r, orp.port, "POST", "/v1/chat/completions",
              "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
              hdrs, NULL);
    st = r.status;
    h_resp_free(&r);
    return st;
}

/* POST /admin/v1/clients with body: 201 and the key into key. */
static void create(const char *body, char *key, size_t n)
{
    struct h_resp r;
    cJSON *j;
    ck_assert_int_eq(adm(root, "POST", "/admin/v1/clients", body, &r), 201);
    j = cJSON_Parse(r.body);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "key")));
    snprintf(key, n, "%s", cJSON_GetObjectItem(j, "key")->valuestring);
    ck_assert_int_eq(strlen(key), 47);
    if (n_made < 16)
        snprintf(made[n_made++], sizeof made[0], "%s", key);
    cJSON_Delete(j);
    h_resp_free(&r);
}

static void rotate(const char *name, int grace, char *key, size_t n)
{
    char path[128], body[64];
    struct h_resp r;
    cJSON *j;
    snprintf(path, sizeof path, "/admin/v1/clients/%s/rotate", name);
    snprintf(body, sizeof body, "{\"grace_s\":%d}", grace);
    ck_assert_int_eq(adm(root, "POST", path, body, &r), 200);
    j = cJSON_Parse(r.body);
    snprintf(key, n, "%s", cJSON_GetObjectItem(j, "key")->valuestring);
    if (n_made < 16)
        snprintf(made[n_made++], sizeof made[0], "%s", key);
    cJSON_Delete(j);
    h_resp_free(&r);
}

static char *db(const char *sql)
{
    return h_db_value(db_path, sql, 2000);
}

/* How often text occurs in orproxy's log so far. */
static int log_count(const char *text)
{
    char *log = h_read_file(orp.log);
    int n = 0;
    for (const char *p = log; p != NULL && (p = strstr(p, text)) != NULL; p += strlen(text))
        n++;
    free(log);
    return n;
}

START_TEST(test_who_may_call)
{
    struct h_resp r;
    cJSON *j, *list, *c;

    ck_assert_str_eq(adm_err(NULL, "GET", "/admin/v1/clients", NULL, 401), "missing_api_key");
    ck_assert_str_eq(adm_err("orp-not-a-key", "GET", "/admin/v1/clients", NULL, 401), "invalid_api_key");
    ck_assert_str_eq(adm_err(alice, "GET", "/admin/v1/clients", NULL, 403), "admin_only");
    ck_assert_str_eq(adm_err(alice, "POST", "/admin/v1/clients", "{\"name\":\"x\"}", 403), "admin_only");
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/clients", NULL, &r), 200);
    ck_assert_str_eq(h_header(&r, "X-Content-Type-Options"), "nosniff");
    ck_assert_str_eq(h_header(&r, "Cache-Control"), "no-store");
    j = cJSON_Parse(r.body);
    list = cJSON_GetObjectItem(j, "clients");
    ck_assert_int_eq(cJSON_GetArraySize(list), 2);
    c = cJSON_GetArrayItem(list, 0);
    ck_assert_str_eq(cJSON_GetObjectItem(c, "name")->valuestring, "alice");
    ck_assert_str_eq(cJSON_GetObjectItem(c, "source")->valuestring, "config");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(c, "expires_at")));
    ck_assert_str_eq(cJSON_GetObjectItem(c, "spent_usd_day")->valuestring, "0.00");
    cJSON_Delete(j);
    h_resp_free(&r);
    /* the failures were logged, never the key */
    ck_assert(h_log_wait(&orp, "admin: GET /admin/v1/clients from 127.0.0.1 refused: admin_only", 2000));
    ck_assert_str_eq(adm_err(root, "GET", "/admin/v1/nothing", NULL, 404), "not_found");
    ck_assert_str_eq(adm_err(root, "PUT", "/admin/v1/clients", "{}", 405), "method_not_allowed");
    ck_assert_str_eq(adm_err(root, "GET", "/admin/v1/clients/nobody", NULL, 404), "unknown_client");
}
END_TEST

START_TEST(test_create_errors)
{
    char key[64], *v;
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":", 400), "invalid_json");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "[1]", 400), "invalid_body");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{}", 400), "invalid_name");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":\"a b\"}", 400), "invalid_name");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":\"m\",\"colour\":1}", 400),
                     "unknown_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":\"m\",\"rpm\":-1}", 400),
                     "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":\"m\",\"rpm\":\"5\"}", 400),
                     "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients",
                             "{\"name\":\"m\",\"budget_usd_day\":\"-1\"}", 400), "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients",
                             "{\"name\":\"m\",\"expires_at\":\"tomorrow\"}", 400), "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients",
                             "{\"name\":\"m\",\"defaults\":{\"temperature\":9}}", 400), "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients",
                             "{\"name\":\"m\",\"defaults\":{\"colour\":1}}", 400), "unknown_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":\"alice\"}", 409), "name_taken");
    v = db("SELECT COUNT(*) FROM clients");
    ck_assert_str_eq(v, "0"); /* nothing written by a refused call */
    free(v);
    create("{\"name\":\"m\"}", key, sizeof key);
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", "{\"name\":\"m\"}", 409), "name_taken");
    ck_assert_str_eq(adm_err(root, "PATCH", "/admin/v1/clients/alice", "{\"rpm\":1}", 409), "config_client");
    ck_assert_str_eq(adm_err(root, "DELETE", "/admin/v1/clients/alice", NULL, 409), "config_client");
    ck_assert_str_eq(adm_err(root, "PATCH", "/admin/v1/clients/nobody", "{\"rpm\":1}", 404), "unknown_client");
    ck_assert_str_eq(adm_err(root, "DELETE", "/admin/v1/clients/nobody", NULL, 404), "unknown_client");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients/nobody/rotate", "{}", 404), "unknown_client");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients/m/rotate", "{\"grace\":1}", 400), "unknown_field");
    ck_assert_str_eq(adm_err(root, "PATCH", "/admin/v1/clients/m", "{\"name\":\"n\"}", 400), "unknown_field");
}
END_TEST

START_TEST(test_create_use_edit)
{
    char key[64], hex[65], *v, sql[256];
    struct h_resp r;
    cJSON *j;
    int fetches;

    ck_assert(h_log_wait(&orp, "model prices loaded from upstream", 5000));
    fetches = log_count("model prices loaded from upstream");
    create("{\"name\":\"team.a\",\"models\":[\"openai/*\"],\"rpm\":100,\"budget_usd_day\":\"1.50\","
           "\"expires_at\":\"2099-01-01T00:00:00Z\",\"defaults\":{\"context\":\"Facts.\"}}",
           key, sizeof key);
    /* the very next requests, on new connections spread over both workers */
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(chat(key), 200);
    /* only the hash is stored */
    {
        char cmd[200], *out = NULL;
        const char *argv[] = {"sh", "-c", cmd, NULL};
        snprintf(cmd, sizeof cmd, "printf %%s '%s' | sha256sum | cut -c1-64", key);
        ck_assert_int_eq(h_run(argv, &out, NULL), 0);
        snprintf(hex, sizeof hex, "%.64s", out);
        free(out);
    }
    v = db("SELECT lower(hex(key_sha256)) FROM clients WHERE name = 'team.a'");
    ck_assert_str_eq(v, hex);
    free(v);
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM clients WHERE CAST(key_sha256 AS TEXT) LIKE '%%%s%%'", key + 4);
    v = db(sql);
    ck_assert_str_eq(v, "0");
    free(v);
    v = db("SELECT budget_day_pusd || ' ' || rpm || ' ' || expires_ms FROM clients WHERE name = 'team.a'");
    ck_assert_str_eq(v, "1500000000000 100 4070908800000");
    free(v);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/clients/team.a", NULL, &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "source")->valuestring, "managed");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "budget_usd_day")->valuestring, "1.50");
    ck_assert_str_eq(cJSON_GetObjectItem(j, "expires_at")->valuestring, "2099-01-01T00:00:00Z");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "defaults"), "context")->valuestring, "Facts.");
    cJSON_Delete(j);
    h_resp_free(&r);
    /* edit: models, limits, defaults */
    ck_assert_int_eq(adm(root, "PATCH", "/admin/v1/clients/team.a",
                         "{\"models\":[\"anthropic/*\"],\"rpm\":7,\"defaults\":{\"system_prompt\":\"Be brief.\"}}", &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "rpm")->valueint, 7);
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "models"), 0)->valuestring, "anthropic/*");
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_int_eq(chat(key), 403); /* openai/ is no longer allowed, at once */
    v = db("SELECT rpm || ' ' || models FROM clients WHERE name = 'team.a'");
    ck_assert_str_eq(v, "7 [\"anthropic/*\"]");
    free(v);
    /* A create and an edit change clients only: no new price-table fetch. */
    usleep(300 * 1000);
    ck_assert_int_eq(log_count("model prices loaded from upstream"), fetches);
}
END_TEST

START_TEST(test_rotate_and_revoke)
{
    char k1[64], k2[64], g1[64], g2[64], *v;
    double t0;

    create("{\"name\":\"rot\"}", k1, sizeof k1);
    rotate("rot", 2, k2, sizeof k2);
    ck_assert_str_ne(k1, k2);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(chat(k1), 200);
        ck_assert_int_eq(chat(k2), 200);
    }
    v = db("SELECT old_key_sha256 IS NOT NULL AND old_key_until_ms > 0 FROM clients WHERE name = 'rot'");
    ck_assert_str_eq(v, "1");
    free(v);
    usleep(2300 * 1000); /* the grace ends with no publish: checked when identifying */
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(chat(k1), 401);
        ck_assert_int_eq(chat(k2), 200);
    }
    /* rotate again with a long grace, then revoke: every key is refused */
    create("{\"name\":\"rev\"}", g1, sizeof g1);
    rotate("rev", 3600, g2, sizeof g2);
    ck_assert_int_eq(chat(g1), 200);
    ck_assert_int_eq(chat(g2), 200);
    {
        struct h_resp r;
        ck_assert_int_eq(adm(root, "DELETE", "/admin/v1/clients/rev", NULL, &r), 204);
        ck_assert_uint_eq(r.len, 0);
        h_resp_free(&r);
    }
    t0 = h_now();
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(chat(g1), 401);
        ck_assert_int_eq(chat(g2), 401);
    }
    ck_assert(h_now() - t0 < 1.0);
    v = db("SELECT (revoked_ms IS NOT NULL) || (key_sha256 IS NULL) || (old_key_sha256 IS NULL) FROM clients WHERE name = 'rev'");
    ck_assert_str_eq(v, "111");
    free(v);
    ck_assert_str_eq(adm_err(root, "DELETE", "/admin/v1/clients/rev", NULL, 404), "unknown_client");
    ck_assert_int_eq(chat(k2), 200); /* the others are untouched */
}
END_TEST

START_TEST(test_expired_and_restart)
{
    char old[64], live[64];
    struct h_resp r;

    create("{\"name\":\"old\",\"expires_at\":\"2020-01-01T00:00:00Z\"}", old, sizeof old);
    {
        char auth[128];
        const char *hdrs[] = {auth, NULL};
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", old);
        h_request(&r, orp.port, "GET", "/v1/key", NULL, hdrs, NULL);
        ck_assert_int_eq(r.status, 401);
        ck_assert_ptr_nonnull(strstr(r.body, "\"key_expired\""));
        h_resp_free(&r);
    }
    create("{\"name\":\"live\",\"admin\":true}", live, sizeof live);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf_text, env_keys), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(chat(live), 200);
    ck_assert_int_eq(chat(old), 401);
    /* a reload re-merges the managed clients onto the new file config */
    ck_assert_int_eq(kill(orp.pid, SIGHUP), 0);
    ck_assert(h_log_wait(&orp, "reloaded", 5000));
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(chat(live), 200);
    /* a managed admin may use the admin API */
    ck_assert_int_eq(adm(live, "GET", "/admin/v1/clients", NULL, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"name\":\"live\",\"source\":\"managed\",\"admin\":true"));
    h_resp_free(&r);
}
END_TEST

START_TEST(test_failure_limit)
{
    struct h_resp r;
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(adm_err("orp-wrong", "GET", "/admin/v1/health", NULL, 401), "invalid_api_key");
    /* the 11th attempt, even with the right key, waits for the minute to end */
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/health", NULL, &r), 429);
    ck_assert_ptr_nonnull(h_header(&r, "Retry-After"));
    ck_assert_int_gt(atoi(h_header(&r, "Retry-After")), 0);
    ck_assert_int_le(atoi(h_header(&r, "Retry-After")), 60);
    ck_assert_ptr_nonnull(strstr(r.body, "\"too_many_failures\""));
    h_resp_free(&r);
    ck_assert_int_eq(chat(alice), 200); /* the API itself is not affected */
}
END_TEST

START_TEST(test_data_routes)
{
    struct h_resp r;
    cJSON *j;

    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(chat(alice), 200);
    usleep(300 * 1000);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/overview", NULL, &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert(cJSON_IsObject(cJSON_GetObjectItem(j, "spend")));
    ck_assert_int_eq(cJSON_GetObjectItem(j, "requests")->valueint, 3);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "budgets"), 0), "limit_usd")->valuestring,
                     "100.00");
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/timeseries?bucket=hour&by=model&since=24h", NULL, &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "by")->valuestring, "model");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "series"), 0), "name")->valuestring,
                     "openai/gpt-4o-mini");
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/requests?limit=2&client=alice", NULL, &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "requests")), 2);
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "next_before")));
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/models", NULL, &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert(cJSON_IsArray(cJSON_GetObjectItem(j, "models")));
    ck_assert(cJSON_IsArray(cJSON_GetObjectItem(j, "prices")));
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/health", NULL, &r), 200);
    j = cJSON_Parse(r.body);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "version")));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "workers")), 2);
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ledger"), "dropped")));
    /* The requests above went upstream: its last answer was a 200, just now. */
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "upstream"), "last_status")->valueint, 200);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "upstream"), "last_status_at")));
    cJSON_Delete(j);
    h_resp_free(&r);
    ck_assert_str_eq(adm_err(root, "GET", "/admin/v1/timeseries?bucket=week", NULL, 400), "invalid_parameter");
    ck_assert_str_eq(adm_err(root, "GET", "/admin/v1/requests?limit=0", NULL, 400), "invalid_parameter");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/overview", "{}", 405), "method_not_allowed");
}
END_TEST

START_TEST(test_open_without_auth)
{
    struct h_resp r;
    char key[64];
    char *open_conf = strdup(conf_text);
    char *p = strstr(open_conf, "mode = \"keys\"");
    memcpy(p, "mode = \"none\"", 13);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, open_conf, env_keys), 0);
    free(open_conf);
    ck_assert_int_eq(adm(NULL, "GET", "/admin/v1/clients", NULL, &r), 200);
    ck_assert_str_eq(h_header(&r, "Cache-Control"), "no-store");
    h_resp_free(&r);
    create("{\"name\":\"anyone\"}", key, sizeof key);
}
END_TEST

/* With the default ledger.flush_ms, a finished request's cost shows in
 * the overview and the time series within 2 s of its end. */
START_TEST(test_cost_visible_within_2s)
{
    char *conf = strdup(conf_text), *p = strstr(conf, "ledger = { flush_ms = 50; };");
    char today[32] = "", *row;
    double t0, waited = -1;
    struct h_resp r;

    memset(p, ' ', strlen("ledger = { flush_ms = 50; };")); /* the default: 1000 ms */
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_keys), 0);
    free(conf);
    ck_assert_int_eq(chat(alice), 200);
    t0 = h_now();
    while (h_now() - t0 < 5.0) {
        cJSON *j, *sp;
        ck_assert_int_eq(adm(root, "GET", "/admin/v1/overview", NULL, &r), 200);
        j = cJSON_Parse(r.body);
        sp = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spend"), "today");
        if (cJSON_GetObjectItem(j, "requests")->valueint == 1) {
            snprintf(today, sizeof today, "%s", sp->valuestring);
            waited = h_now() - t0;
        }
        cJSON_Delete(j);
        h_resp_free(&r);
        if (waited >= 0)
            break;
        usleep(50 * 1000);
    }
    ck_assert_msg(waited >= 0 && waited < 2.0, "overview showed the request after %.2f s", waited);
    /* The figure is the ledger row's cost, and the time series has it too. */
    row = db("SELECT cost_pusd FROM requests");
    ck_assert_ptr_nonnull(row);
    ck_assert_msg(atof(row) > 0 && fabs(atof(today) - atof(row) * 1e-12) < 1e-15, "today %s, row %s pusd",
                  today, row);
    free(row);
    ck_assert_int_eq(adm(root, "GET", "/admin/v1/timeseries?bucket=hour&by=client&since=1h", NULL, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"alice\""));
    ck_assert_ptr_nonnull(strstr(r.body, today));
    h_resp_free(&r);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("admin");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_who_may_call);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_create_use_edit);
    tcase_add_test(tc, test_rotate_and_revoke);
    tcase_add_test(tc, test_expired_and_restart);
    tcase_add_test(tc, test_failure_limit);
    tcase_add_test(tc, test_data_routes);
    tcase_add_test(tc, test_cost_visible_within_2s);
    tcase_add_test(tc, test_open_without_auth);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(admin_suite)
