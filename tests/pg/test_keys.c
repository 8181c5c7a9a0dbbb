/* test_keys.c - managed clients across instances (ledger.backend =
 * "postgresql"): three orproxy instances on one database of tests/pg/run.sh.
 *   a client created on A works on B and C within 2 s; two instances
 *     creating one name at once: one 201, one 409; a config client's name
 *     is refused;
 *   a rotation on B with a grace period: old and new key on C during the
 *     grace, only the new one after;
 *   a revocation on A: B and C refuse the key within 2 s;
 *   a restarted instance loads the clients from PostgreSQL;
 *   PostgreSQL stopped: the last set keeps working, a write is a 503 in the
 *     API's error shape; resumed: a change propagates again (the LISTEN
 *     connection came back).
 * Each step asserts what the clients see and the rows of the clients table;
 * the measured propagation times are printed. */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "keys.h"
#include "pgtest.h"

#define NINST 3
#define PROPAGATE_MS 2000
static const char *const env_key[] = {"OPENROUTER_API_KEY=" H_CANARY_KEY, NULL};

static struct h_proc fake, orp[NINST];
static char root[80], root_h[65], conf[2048];
static const char *db_url;
static int server_stopped;

static void setup(void)
{
    static int made;
    if (!made) {
        ck_assert_int_eq(h_key_new("root", root, sizeof root, root_h), 0);
        made = 1;
    }
    memset(&fake, 0, sizeof fake);
    memset(orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    for (int i = 0; i < NINST; i++) {
        char *log = h_read_file(orp[i].log);
        if (log != NULL) /* the admin key never reaches a log */
            ck_assert_ptr_null(strstr(log, root));
        free(log);
        h_proc_cleanup(&orp[i]);
    }
    h_proc_cleanup(&fake);
    if (server_stopped) {
        pgt_server("resume");
        server_stopped = 0;
    }
}

/* Three instances on a fresh database db, auth by keys, "root" an admin
 * client of the config file. */
static void start_all(const char *db)
{
    struct pgconn *c = pgt_migrated(db, &db_url);
    static char url[512];

    pgconn_free(c);
    snprintf(url, sizeof url, "%s", db_url);
    db_url = url;
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\n"
             "ledger = { flush_ms = 100; backend = \"postgresql\"; postgresql_url = \"%s\";"
             " postgresql_password_file = \"%s\"; };\n"
             "auth = { mode = \"keys\"; };\n"
             "clients = ( { name = \"root\"; key_sha256 = \"%s\"; admin = true; } );\n"
             "workers = 2;\n",
             db_url, pgt_env("ORP_PG_PASSWORD_FILE"), root_h);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(h_orproxy_spawn(&orp[i], conf, env_key), 0);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(h_orproxy_ready(&orp[i]), 0);
}

static int64_t db_int(const char *sql)
{
    struct pgconn *c = pgt_conn(db_url);
    int64_t v = pgt_int(c, sql);
    pgconn_free(c);
    return v;
}

/* An admin call on instance i; returns the status, the body in *out
 * (parsed; NULL for none; the caller deletes it). */
static long adm(int i, const char *method, const char *path, const char *body, cJSON **out)
{
    char auth[128];
    const char *hdrs[] = {auth, NULL};
    struct h_resp r;
    long st;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s", root);
    h_request(&r, orp[i].port, method, path, body, hdrs, NULL);
    st = r.status;
    if (out != NULL)
        *out = r.body != NULL && r.len > 0 ? cJSON_Parse(r.body) : NULL;
    h_resp_free(&r);
    return st;
}

/* The error code of an answer in the API's error shape ("" if none). */
static const char *err_code(const cJSON *o)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code");
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "message");
    return cJSON_IsString(c) && cJSON_IsString(m) && m->valuestring[0] ? c->valuestring : "";
}

/* Creates name on instance i: the new key into key (80 bytes). */
static void create(int i, const char *name, char *key)
{
    char body[128];
    cJSON *o;
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    ck_assert_int_eq(adm(i, "POST", "/admin/v1/clients", body, &o), 201);
    snprintf(key, 80, "%s", cJSON_GetObjectItem(o, "key")->valuestring);
    cJSON_Delete(o);
}

/* The status a chat request with key gets from instance i. */
static long use_key(int i, const char *key)
{
    char auth[128];
    const char *hdrs[] = {auth, NULL};
    struct h_resp r;
    long st;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    h_request(&r, orp[i].port, "POST", "/v1/chat/completions",
              "{\"model\":\"m/x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", hdrs,
              NULL);
    st = r.status;
    h_resp_free(&r);
    return st;
}

/* Polls instance i until key gets want; the milliseconds it took since t0
 * (h_now seconds), or -1 after PROPAGATE_MS. */
static int wait_key(int i, const char *key, long want, double t0)
{
    while (h_now() - t0 < PROPAGATE_MS / 1000.0) {
        if (use_key(i, key) == want)
            return (int)((h_now() - t0) * 1000);
        usleep(20 * 1000);
    }
    return -1;
}

/* Every instance in from..to-1 gives want to key within PROPAGATE_MS of t0. */
static void propagates(const char *what, const char *key, long want, double t0, int from, int to)
{
    for (int i = from; i < to; i++) {
        int ms = wait_key(i, key, want, t0);
        ck_assert_msg(ms >= 0, "%s: instance %d did not answer %ld within %d ms", what, i, want,
                      PROPAGATE_MS);
        printf("propagation: %s on instance %d: %d ms\n", what, i, ms);
    }
}

/* The row of name holds the hash of key as its key (old: as its old key). */
static void row_has_key(const char *name, const char *key, int old)
{
    uint8_t h[32];
    char hex[65], sql[400];
    keys_sha256(key, strlen(key), h);
    keys_hex(h, 32, hex);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM clients WHERE name = '%s' AND revoked_ms IS NULL AND "
             "encode(%s, 'hex') = '%s'",
             name, old ? "old_key_sha256" : "key_sha256", hex);
    ck_assert_int_eq(db_int(sql), 1);
}

START_TEST(test_create_rotate_revoke_restart)
{
    char k1[80], k2[80], k3[80], body[64];
    struct h_async *a[2];
    int created = 0, taken = 0;
    double t0;
    cJSON *o;

    start_all("orp_keys");
    /* created on A: works at once on A, within 2 s on B and C */
    t0 = h_now();
    create(0, "team", k1);
    ck_assert_int_eq(use_key(0, k1), 200);
    propagates("create", k1, 200, t0, 1, NINST);
    row_has_key("team", k1, 0);
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients"), 1);
    /* only hashes are stored */
    {
        char sql[300];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM clients WHERE position('%s' in name || models || defaults"
                 " || coalesce(encode(key_sha256, 'escape'), '')) > 0",
                 k1);
        ck_assert_int_eq(db_int(sql), 0);
    }
    /* the name is taken on every instance; a config client's too */
    ck_assert_int_eq(adm(1, "POST", "/admin/v1/clients", "{\"name\":\"team\"}", &o), 409);
    ck_assert_str_eq(err_code(o), "name_taken");
    cJSON_Delete(o);
    ck_assert_int_eq(adm(2, "POST", "/admin/v1/clients", "{\"name\":\"root\"}", &o), 409);
    ck_assert_str_eq(err_code(o), "name_taken");
    cJSON_Delete(o);
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients WHERE name = 'root'"), 0);

    /* two instances create one name at once: one 201, one 409 */
    for (int i = 0; i < 2; i++) {
        char auth[128];
        const char *hdrs[] = {auth, NULL};
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", root);
        a[i] = h_request_async(orp[i].port, "POST", "/admin/v1/clients", "{\"name\":\"race\"}",
                               hdrs, NULL);
    }
    for (int i = 0; i < 2; i++) {
        struct h_resp r;
        h_async_wait(a[i], &r);
        created += r.status == 201;
        taken += r.status == 409 && strstr(r.body, "\"name_taken\"") != NULL;
        h_resp_free(&r);
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(taken, 1);
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients WHERE name = 'race'"), 1);

    /* rotated on B with 3 s of grace: C takes both, then only the new one */
    snprintf(body, sizeof body, "{\"grace_s\":3}");
    t0 = h_now();
    ck_assert_int_eq(adm(1, "POST", "/admin/v1/clients/team/rotate", body, &o), 200);
    snprintf(k2, sizeof k2, "%s", cJSON_GetObjectItem(o, "key")->valuestring);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(o, "old_key_until")));
    cJSON_Delete(o);
    propagates("rotate (new key)", k2, 200, t0, 0, NINST);
    ck_assert_int_eq(use_key(2, k1), 200); /* the old one in its grace */
    row_has_key("team", k2, 0);
    row_has_key("team", k1, 1);
    while (h_now() - t0 < 3.3)
        usleep(50 * 1000);
    ck_assert_int_eq(use_key(2, k1), 401);
    ck_assert_int_eq(use_key(0, k1), 401);
    ck_assert_int_eq(use_key(2, k2), 200);

    /* revoked on A: B and C refuse within 2 s */
    t0 = h_now();
    ck_assert_int_eq(adm(0, "DELETE", "/admin/v1/clients/team", NULL, NULL), 204);
    ck_assert_int_eq(use_key(0, k2), 401);
    propagates("revoke", k2, 401, t0, 1, NINST);
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients WHERE name = 'team' AND revoked_ms IS "
                            "NOT NULL AND key_sha256 IS NULL AND old_key_sha256 IS NULL"),
                     1);
    ck_assert_int_eq(adm(2, "DELETE", "/admin/v1/clients/team", NULL, &o), 404);
    ck_assert_str_eq(err_code(o), "unknown_client");
    cJSON_Delete(o);

    /* a restart loads the clients from PostgreSQL */
    create(1, "after", k3);
    ck_assert_int_eq(h_proc_stop(&orp[2], SIGTERM, 10000), 0);
    ck_assert_int_eq(h_orproxy_start(&orp[2], conf, env_key), 0);
    ck_assert_int_eq(use_key(2, k3), 200);
    ck_assert_int_eq(use_key(2, k2), 401);
    ck_assert_int_eq(use_key(2, k1), 401);
    ck_assert(h_log_wait(&orp[2], "managed clients loaded from the PostgreSQL database", 1000));
}
END_TEST

START_TEST(test_outage_keeps_last_set)
{
    char k1[80], k2[80];
    double t0;
    cJSON *o;

    start_all("orp_keys_outage");
    create(0, "steady", k1);
    t0 = h_now();
    create(0, "doomed", k2);
    propagates("create", k2, 200, t0, 1, NINST);

    pgt_server("stop");
    server_stopped = 1;
    for (int i = 0; i < NINST; i++)
        ck_assert(h_log_wait(&orp[i], "clients: the LISTEN connection is lost", 5000) ||
                  h_log_wait(&orp[i], "clients: PostgreSQL unreachable", 5000));
    /* the last set stays in force */
    for (int i = 0; i < NINST; i++) {
        ck_assert_int_eq(use_key(i, k1), 200);
        ck_assert_int_eq(use_key(i, k2), 200);
    }
    /* a write is a clear 503 */
    ck_assert_int_eq(adm(0, "DELETE", "/admin/v1/clients/doomed", NULL, &o), 503);
    ck_assert_str_eq(err_code(o), "database_unavailable");
    cJSON_Delete(o);
    ck_assert_int_eq(adm(1, "POST", "/admin/v1/clients", "{\"name\":\"new\"}", &o), 503);
    ck_assert_str_eq(err_code(o), "database_unavailable");
    cJSON_Delete(o);
    ck_assert_int_eq(use_key(0, k2), 200); /* nothing changed */

    pgt_server("resume");
    server_stopped = 0;
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients WHERE revoked_ms IS NULL"), 2);
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients WHERE name = 'new'"), 0);
    /* long enough for the LISTEN connections to be back: what follows must
     * come by NOTIFY, the 30 s re-read is far */
    for (int i = 0; i < NINST; i++)
        ck_assert(h_log_wait(&orp[i], "clients: PostgreSQL answers again", 5000));
    sleep(1);
    t0 = h_now();
    ck_assert_int_eq(adm(0, "DELETE", "/admin/v1/clients/doomed", NULL, NULL), 204);
    propagates("revoke after resume", k2, 401, t0, 1, NINST);
    for (int i = 0; i < NINST; i++)
        ck_assert_int_eq(use_key(i, k1), 200);
    ck_assert_int_eq(db_int("SELECT count(*) FROM clients WHERE name = 'doomed' AND revoked_ms IS "
                            "NOT NULL"),
                     1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("postgresql");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_create_rotate_revoke_restart);
    tcase_add_test(tc, test_outage_keeps_last_set);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
