/* End-to-end tests of the admin API under attack (the hostile review of
 * issue 13's admin API): path tricks and stray credentials never pass the
 * gate; with auth.mode = "none" a browser page from elsewhere (a
 * cross-site POST, a rebound DNS name) is refused; the failure limit is per
 * address, cannot lock out another address and stays bounded under a flood
 * of addresses; bodies that are not UTF-8 or hide a NUL, a duplicate name,
 * budgets of 0, an expiry at the epoch and out-of-range numbers are 400s
 * that write nothing; concurrent creates of one name give one 201; a
 * second rotation ends the first old key; creates and chats while the
 * config is reloaded again and again (run it under the sanitizer build);
 * every error in the error shape with nosniff and no-store; no key in the
 * log or the database file. */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY

static const char *const env_keys[] = {"OPENROUTER_API_KEY=" KEY, NULL};

static struct h_proc fake, orp;
static char alice[80], root[80], alice_h[65], root_h[65];
static char conf_text[4096], db_path[400];
static char made[64][64]; /* every key the API handed out in this test */
static int n_made;

static void start(const char *mode)
{
    snprintf(conf_text, sizeof conf_text,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 2;\n"
             "auth = { mode = \"%s\"; };\n"
             "clients = (\n"
             "  { name = \"alice\"; key_sha256 = \"%s\"; },\n"
             "  { name = \"root\"; key_sha256 = \"%s\"; admin = true; }\n"
             ");\n",
             mode, alice_h, root_h);
    ck_assert_int_eq(h_orproxy_start(&orp, conf_text, env_keys), 0);
    snprintf(db_path, sizeof db_path, "%s/state/usage.db", orp.dir);
}

static void setup(void)
{
    static int keys_made;
    if (!keys_made) {
        ck_assert_int_eq(h_key_new("alice", alice, sizeof alice, alice_h), 0);
        ck_assert_int_eq(h_key_new("root", root, sizeof root, root_h), 0);
        keys_made = 1;
    }
    n_made = 0;
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
    start("keys");
}

/* The bytes of a file (the database, its WAL), or NULL; *n its length. */
static char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long len;
    *n = 0;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)len + 1)) != NULL)
        *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void teardown(void)
{
    char *log = h_read_file(orp.log);
    if (log != NULL) {
        ck_assert_ptr_null(strstr(log, root));
        ck_assert_ptr_null(strstr(log, alice));
        for (int i = 0; i < n_made; i++)
            ck_assert_ptr_null(strstr(log, made[i]));
    }
    free(log);
    h_proc_stop(&orp, SIGTERM, 10000);
    /* no key the API made is anywhere in the database files, only hashes */
    for (int f = 0; f < 2; f++) {
        char path[440];
        size_t n;
        char *b;
        snprintf(path, sizeof path, "%s%s", db_path, f ? "-wal" : "");
        if ((b = read_bytes(path, &n)) == NULL)
            continue;
        for (int i = 0; i < n_made; i++)
            ck_assert_ptr_null(memmem(b, n, made[i] + 4, 20));
        free(b);
    }
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
}

static long adm_h(const char *key, const char *method, const char *path, const char *body,
                  const char *extra, struct h_resp *r)
{
    char auth[128];
    const char *hdrs[3] = {NULL, NULL, NULL};
    int k = 0;
    if (key != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        hdrs[k++] = auth;
    }
    if (extra != NULL)
        hdrs[k++] = extra;
    h_request(r, orp.port, method, path, body, hdrs, NULL);
    return r->status;
}

/* The error code of an answer in the API's error shape with the admin
 * API's headers ("" when none); the body must be strict JSON. */
static const char *err_code(const struct h_resp *r)
{
    static char code[64];
    cJSON *j = cJSON_ParseWithLength(r->body, r->len), *c;
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(h_header(r, "X-Content-Type-Options"), "nosniff");
    ck_assert_str_eq(h_header(r, "Cache-Control"), "no-store");
    ck_assert_str_eq(h_header(r, "Content-Type"), "application/json");
    c = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code");
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message")));
    snprintf(code, sizeof code, "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(j);
    return code;
}

static const char *adm_err(const char *key, const char *method, const char *path, const char *body,
                           long want)
{
    static char code[64];
    struct h_resp r;
    ck_assert_int_eq(adm_h(key, method, path, body, NULL, &r), want);
    snprintf(code, sizeof code, "%s", err_code(&r));
    h_resp_free(&r);
    return code;
}

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

static void keep(const struct h_resp *r, char *key, size_t n)
{
    cJSON *j = cJSON_Parse(r->body);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "key")));
    snprintf(key, n, "%s", cJSON_GetObjectItem(j, "key")->valuestring);
    if (n_made < 64)
        snprintf(made[n_made++], sizeof made[0], "%s", key);
    cJSON_Delete(j);
}

static void create(const char *body, char *key, size_t n)
{
    struct h_resp r;
    ck_assert_int_eq(adm_h(root, "POST", "/admin/v1/clients", body, NULL, &r), 201);
    keep(&r, key, n);
    h_resp_free(&r);
}

static char *db(const char *sql)
{
    return h_db_value(db_path, sql, 2000);
}

static void assert_rows(const char *want)
{
    char *v = db("SELECT COUNT(*) FROM clients");
    ck_assert_str_eq(v, want);
    free(v);
}

/* A raw request from source address src (127.0.0.x) with the path sent
 * exactly as given: the status, and the answer into *out (may be NULL). */
static int raw(const char *src, const char *method, const char *path, const char *extra, char **out)
{
    struct sockaddr_in me = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    char req[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0), closed, st = 0;
    char *resp;

    ck_assert_int_ge(fd, 0);
    inet_pton(AF_INET, src, &me.sin_addr);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    to.sin_port = htons((uint16_t)orp.port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s\r\n",
             method, path, extra ? extra : "", extra ? "\r\n" : "");
    ck_assert_int_eq(h_raw_send(fd, req, strlen(req)), 0);
    resp = h_raw_read(fd, 5000, 1 << 16, &closed);
    close(fd);
    ck_assert_ptr_nonnull(resp);
    sscanf(resp, "HTTP/1.1 %d", &st);
    if (out != NULL)
        *out = resp;
    else
        free(resp);
    return st;
}

START_TEST(test_path_tricks_and_stray_credentials_never_pass)
{
    static const char *const paths[] = {
        "/admin/v1//clients", "/admin/v1/../v1/key", "/admin/v1/%2e%2e/clients",
        "/admin/v1/%2E%2E/%2E%2E/v1/key", "/admin/v1/clients/", "/admin/v1/CLIENTS",
        "/admin/v1/clients?x=1", "/admin/v1/clients/root/rotate?grace_s=5", "/admin/v1/clients%00",
        "/admin/v1/clients/%FF%00x", "/admin/v1/clients/a%0d%0aX-Injected:%201",
    };
    static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "POST", "DELETE", "PATCH"};
    char auth[400], *resp;

    /* without a key, every path and method under the prefix is a 401 */
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++)
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            char src[32];
            int st;
            snprintf(src, sizeof src, "127.0.0.%zu", 10 + p); /* 6 tries each: under the limit */
            st = raw(src, methods[m], paths[p], NULL, &resp);
            ck_assert_msg(st == 401, "%s %s: %d", methods[m], paths[p], st);
            ck_assert_ptr_nonnull(strstr(resp, "\r\nCache-Control: no-store"));
            ck_assert_ptr_nonnull(strstr(resp, "\r\nX-Content-Type-Options: nosniff"));
            ck_assert_ptr_null(strstr(resp, "X-Injected"));
            free(resp);
        }
    /* the admin key in a query string or a cookie is not a key */
    snprintf(auth, sizeof auth, "/admin/v1/clients?key=%s&api_key=%s&admin_key=%s", root, root, root);
    ck_assert_int_eq(raw("127.0.0.4", "GET", auth, NULL, NULL), 401);
    snprintf(auth, sizeof auth, "Cookie: admin_key=%s; key=%s", root, root);
    ck_assert_int_eq(raw("127.0.0.4", "GET", "/admin/v1/clients", auth, NULL), 401);
    snprintf(auth, sizeof auth, "Authorization: Basic %s", root);
    ck_assert_int_eq(raw("127.0.0.4", "GET", "/admin/v1/clients", auth, NULL), 401);
    /* a non-admin's key: 403; other spellings of the prefix are not admin routes at all */
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", alice);
    ck_assert_int_eq(raw("127.0.0.5", "GET", "/admin/v1/../admin/v1/clients", auth, NULL), 403);
    ck_assert_int_eq(raw("127.0.0.5", "GET", "/Admin/v1/clients", auth, NULL), 404);
    ck_assert_int_eq(raw("127.0.0.5", "GET", "//admin/v1/clients", auth, NULL), 404);
    /* with the admin key: 404 or 405 in the error shape, a byte that is not
     * visible ASCII never echoed (the body stays valid UTF-8, one line) */
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", root);
    ck_assert_int_eq(raw("127.0.0.6", "GET", "/admin/v1/clients/%FF%00x", auth, &resp), 404);
    ck_assert_ptr_null(strchr(resp, '\xff'));
    ck_assert_ptr_nonnull(strstr(resp, "\"unknown_client\""));
    free(resp);
    ck_assert_int_eq(raw("127.0.0.6", "GET", "/admin/v1/%FFnothing", auth, &resp), 404);
    ck_assert_ptr_null(strchr(resp, '\xff'));
    ck_assert_ptr_nonnull(strstr(resp, "\"not_found\""));
    free(resp);
    ck_assert_int_eq(raw("127.0.0.6", "OPTIONS", "/admin/v1/clients", auth, NULL), 405);
    ck_assert_int_eq(raw("127.0.0.6", "HEAD", "/admin/v1/clients", auth, NULL), 200);
    assert_rows("0");
}
END_TEST

START_TEST(test_no_auth_refuses_other_origins_and_hosts)
{
    struct h_resp r;
    char key[64];

    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    start("none");
    /* a cross-site form POST (no preflight) from a page elsewhere */
    ck_assert_int_eq(adm_h(NULL, "POST", "/admin/v1/clients", "{\"name\":\"csrf\",\"admin\":true}",
                           "Origin: http://evil.example", &r), 403);
    ck_assert_str_eq(err_code(&r), "cross_origin");
    h_resp_free(&r);
    ck_assert_int_eq(adm_h(NULL, "POST", "/admin/v1/clients", "{\"name\":\"csrf\"}", "Origin: null", &r), 403);
    h_resp_free(&r);
    /* a rebound DNS name: same origin, but a Host that is not loopback */
    ck_assert_int_eq(adm_h(NULL, "GET", "/admin/v1/clients", NULL, "Host: evil.example", &r), 403);
    ck_assert_str_eq(err_code(&r), "forbidden_host");
    h_resp_free(&r);
    ck_assert_int_eq(adm_h(NULL, "GET", "/admin/v1/clients", NULL, "Host: 127.0.0.1.evil.example", &r), 403);
    h_resp_free(&r);
    assert_rows("0");
    /* the console itself (same origin), curl (no Origin) and localhost work */
    {
        char origin[64];
        snprintf(origin, sizeof origin, "Origin: http://127.0.0.1:%d", orp.port);
        ck_assert_int_eq(adm_h(NULL, "POST", "/admin/v1/clients", "{\"name\":\"ui\"}", origin, &r), 201);
        keep(&r, key, sizeof key);
        h_resp_free(&r);
        snprintf(origin, sizeof origin, "Host: localhost:%d", orp.port);
        ck_assert_int_eq(adm_h(NULL, "GET", "/admin/v1/clients", NULL, origin, &r), 200);
        h_resp_free(&r);
    }
    ck_assert_int_eq(adm_h(NULL, "GET", "/admin/v1/clients/ui", NULL, NULL, &r), 200);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_failure_limit_is_per_address_and_bounded)
{
    char auth[128], bad[] = "Authorization: Bearer orp-wrong", *resp;
    long rss0, rss1;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s", root);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(raw("127.0.0.2", "GET", "/admin/v1/health", bad, NULL), 401);
    ck_assert_int_eq(raw("127.0.0.2", "GET", "/admin/v1/health", auth, &resp), 429);
    ck_assert_ptr_nonnull(strstr(resp, "\r\nRetry-After: "));
    ck_assert_ptr_nonnull(strstr(resp, "\r\nCache-Control: no-store"));
    ck_assert_ptr_nonnull(strstr(resp, "\"too_many_failures\""));
    free(resp);
    /* the real admin from another address is not locked out */
    ck_assert_int_eq(raw("127.0.0.1", "GET", "/admin/v1/health", auth, NULL), 200);
    /* a flood of failures from 1,500 addresses: memory stays flat, and the
     * admin's address is still served */
    rss0 = h_proc_kb(orp.pid, "VmRSS");
    for (int i = 0; i < 1500; i++) {
        char src[32];
        snprintf(src, sizeof src, "127.1.%d.%d", i / 250, 1 + i % 250);
        ck_assert_int_eq(raw(src, "GET", "/admin/v1/clients", bad, NULL), 401);
    }
    rss1 = h_proc_kb(orp.pid, "VmRSS");
    ck_assert_int_lt(rss1 - rss0, 4096);
    ck_assert_int_eq(raw("127.0.0.1", "GET", "/admin/v1/health", auth, NULL), 200);
    ck_assert(h_log_wait(&orp, "admin: GET /admin/v1/clients from 127.1.5.250 refused: invalid_api_key", 2000));
}
END_TEST

START_TEST(test_bodies_checked_strictly_and_nothing_written)
{
    static const struct { const char *body; long status; const char *code; } bad[] = {
        {"{\"name\":\"a\\u0000b\"}", 400, "invalid_json"},
        {"{\"name\":\"nul\",\"defaults\":{\"system_prompt\":\"x\\u0000y\"}}", 400, "invalid_json"},
        {"{\"name\":\"utf\",\"defaults\":{\"system_prompt\":\"\xff\xfe\"}}", 400, "invalid_json"},
        {"{\"name\":\"a\",\"name\":\"b\"}", 400, "duplicate_field"},
        {"{\"name\":\"m\",\"models\":[\"openai/\\u0001*\"]}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"defaults\":{\"model\":\"x\\ny\"}}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":\"0\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":0}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":1e-13}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":\"1e3\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":\"NaN\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":\"Infinity\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_day\":NaN}", 400, "invalid_json"},
        {"{\"name\":\"m\",\"budget_usd_month\":1e400}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"budget_usd_month\":\"1000000.000000000001\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"rpm\":9223372036854775808}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"tpm\":1.5}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":\"10000-01-01\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":\"-2026-01-01\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":\"2026-12-31T23:59:60Z\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":\"2027-02-29\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":\"1969-12-31\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":\"7d\"}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"expires_at\":1767225600000}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"defaults\":{\"max_tokens\":1e300}}", 400, "invalid_field"},
        {"{\"name\":\"m\",\"admin\":1}", 400, "invalid_field"},
    };
    char deep[3000], key[64], field[200];
    struct h_resp r;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(adm_h(root, "POST", "/admin/v1/clients", bad[i].body, NULL, &r), bad[i].status);
        ck_assert_msg(strcmp(err_code(&r), bad[i].code) == 0, "%s: %s", bad[i].body, r.body);
        h_resp_free(&r);
    }
    /* deep nesting: a 400, the daemon keeps serving */
    memset(deep, '[', 1500);
    memset(deep + 1500, ']', 1500);
    deep[2999] = '\0';
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", deep, 400), "invalid_json");
    /* an unknown member with a long multibyte name: echoed cut between characters */
    snprintf(field, sizeof field, "{\"%s\":1}",
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "x\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    ck_assert_int_eq(adm_h(root, "POST", "/admin/v1/clients", field, NULL, &r), 400);
    ck_assert_str_eq(err_code(&r), "unknown_field"); /* err_code parses it strictly */
    {
        cJSON *j = cJSON_Parse(r.body);
        const char *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message")->valuestring;
        for (const unsigned char *p = (const unsigned char *)m; *p; p++)
            ck_assert(*p < 0x80 || (*p == 0xc3 && p[1] == 0xa9 && p++) || *p == '?');
        cJSON_Delete(j);
    }
    h_resp_free(&r);
    /* a body over 64 KiB: 413 in the error shape */
    {
        char *big = malloc(70000);
        memset(big, ' ', 69999);
        big[0] = '{';
        big[69998] = '}';
        big[69999] = '\0';
        ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients", big, 413), "body_too_large");
        free(big);
    }
    assert_rows("0");
    /* the edges that are fine */
    create("{\"name\":\"tiny\",\"budget_usd_day\":\"0.000000000001\",\"budget_usd_month\":1000000,"
           "\"expires_at\":\"2028-02-29T23:59:59.999Z\",\"rpm\":1000000000}", key, sizeof key);
    /* the epoch is a time in the past, not "never" */
    create("{\"name\":\"epoch\",\"expires_at\":\"1970-01-01T00:00:00Z\"}", key, sizeof key);
    ck_assert_int_eq(chat(key), 401);
    {
        char *v = db("SELECT expires_ms FROM clients WHERE name = 'epoch'");
        ck_assert_str_eq(v, "1");
        free(v);
    }
    /* grace_s bounds */
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients/tiny/rotate", "{\"grace_s\":-1}", 400), "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients/tiny/rotate", "{\"grace_s\":2592001}", 400), "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients/tiny/rotate", "{\"grace_s\":\"5\"}", 400), "invalid_field");
    ck_assert_str_eq(adm_err(root, "POST", "/admin/v1/clients/tiny/rotate", "{\"grace_s\":1.5}", 400), "invalid_field");
    ck_assert_int_eq(adm_h(root, "POST", "/admin/v1/clients/tiny/rotate", "{\"grace_s\":2592000}", NULL, &r), 200);
    keep(&r, key, sizeof key);
    h_resp_free(&r);
}
END_TEST

START_TEST(test_races_one_name_and_double_rotation)
{
    struct h_async *a[8];
    char auth[128], k1[64], k2[64], k3[64];
    const char *hdrs[] = {auth, NULL};
    int created = 0, taken = 0;
    struct h_resp r;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s", root);
    for (int i = 0; i < 8; i++)
        a[i] = h_request_async(orp.port, "POST", "/admin/v1/clients", "{\"name\":\"same\"}", hdrs, NULL);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(h_async_wait(a[i], &r), 0);
        if (r.status == 201) {
            created++;
            keep(&r, k1, sizeof k1);
        } else {
            ck_assert_int_eq(r.status, 409);
            ck_assert_str_eq(err_code(&r), "name_taken");
            taken++;
        }
        h_resp_free(&r);
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(taken, 7);
    assert_rows("1");
    ck_assert_int_eq(chat(k1), 200);
    /* two rotations in a row: the grace goes to the key just replaced; the
     * first key ends with the second rotation */
    ck_assert_int_eq(adm_h(root, "POST", "/admin/v1/clients/same/rotate", "{\"grace_s\":3600}", NULL, &r), 200);
    keep(&r, k2, sizeof k2);
    h_resp_free(&r);
    ck_assert_int_eq(adm_h(root, "POST", "/admin/v1/clients/same/rotate", "{\"grace_s\":3600}", NULL, &r), 200);
    keep(&r, k3, sizeof k3);
    h_resp_free(&r);
    ck_assert_int_eq(chat(k1), 401);
    ck_assert_int_eq(chat(k2), 200);
    ck_assert_int_eq(chat(k3), 200);
    /* a managed admin may create admins, and revoking it ends its admin access at once */
    {
        char adm_key[64];
        create("{\"name\":\"ops\",\"admin\":true}", adm_key, sizeof adm_key);
        ck_assert_int_eq(adm_h(adm_key, "GET", "/admin/v1/clients", NULL, NULL, &r), 200);
        h_resp_free(&r);
        ck_assert_int_eq(adm_h(adm_key, "DELETE", "/admin/v1/clients/ops", NULL, NULL, &r), 204);
        h_resp_free(&r);
        ck_assert_str_eq(adm_err(adm_key, "GET", "/admin/v1/clients", NULL, 401), "invalid_api_key");
        ck_assert(h_log_wait(&orp, "admin: revoke client 'ops' by client 'ops'", 2000));
        ck_assert(h_log_wait(&orp, "admin: create client 'ops' by client 'root'", 2000));
    }
}
END_TEST

/* Creates, rotations and chats while the config is reloaded over and over:
 * merged configs and their bases are released under load (the sanitizer
 * build turns a use after free into a failed exit). */
START_TEST(test_writes_and_requests_during_reloads)
{
    char keys[12][64], body[64], auth[128];
    const char *hdrs[] = {auth, NULL};
    struct h_async *c[4];
    struct h_resp r;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s", alice);
    for (int i = 0; i < 12; i++) {
        for (int k = 0; k < 4; k++)
            c[k] = h_request_async(orp.port, "POST", "/v1/chat/completions",
                                   "{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
                                   "\"content\":\"hi\"}]}", hdrs, NULL);
        ck_assert_int_eq(kill(orp.pid, SIGHUP), 0);
        snprintf(body, sizeof body, "{\"name\":\"r%d\",\"rpm\":%d}", i, i + 1);
        create(body, keys[i], sizeof keys[i]);
        ck_assert_int_eq(kill(orp.pid, SIGHUP), 0);
        if (i % 3 == 0) {
            snprintf(body, sizeof body, "/admin/v1/clients/r%d/rotate", i);
            ck_assert_int_eq(adm_h(root, "POST", body, "{\"grace_s\":60}", NULL, &r), 200);
            h_resp_free(&r);
        }
        for (int k = 0; k < 4; k++) {
            ck_assert_int_eq(h_async_wait(c[k], &r), 0);
            ck_assert_int_eq(r.status, 200);
            h_resp_free(&r);
        }
    }
    usleep(300 * 1000);
    for (int i = 0; i < 12; i++)
        ck_assert_int_eq(chat(keys[i]), 200);
    ck_assert_int_eq(adm_h(root, "GET", "/admin/v1/clients", NULL, NULL, &r), 200);
    {
        cJSON *j = cJSON_Parse(r.body);
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "clients")), 14);
        cJSON_Delete(j);
    }
    h_resp_free(&r);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 15000), 0); /* a clean exit, also under ASan */
    ck_assert_int_eq(h_orproxy_start(&orp, conf_text, env_keys), 0);
    ck_assert_int_eq(chat(keys[11]), 200);
}
END_TEST

static Suite *admin_security_suite(void)
{
    Suite *s = suite_create("admin_security");
    TCase *tc = tcase_create("admin_security");
    tcase_set_timeout(tc, 180);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_path_tricks_and_stray_credentials_never_pass);
    tcase_add_test(tc, test_no_auth_refuses_other_origins_and_hosts);
    tcase_add_test(tc, test_failure_limit_is_per_address_and_bounded);
    tcase_add_test(tc, test_bodies_checked_strictly_and_nothing_written);
    tcase_add_test(tc, test_races_one_name_and_double_rotation);
    tcase_add_test(tc, test_writes_and_requests_during_reloads);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(admin_security_suite)
