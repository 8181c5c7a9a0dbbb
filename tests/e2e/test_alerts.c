/* End-to-end tests of budget alerts (alerts.*): a webhook receiver on
 * 127.0.0.1 inside this program gets exactly one POST per threshold a
 * budget crosses, with the right fields and amounts; a restart does not fire
 * them again; a receiver that fails at first gets the alert after retries
 * (also across a restart), and only once; the slack shape; key expiry; bad
 * settings refused with FILE:LINE and exit code 2; the alerts_sent rows. */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY
#define HOOK_MAX 64

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};

/* ---- the webhook receiver ---- */

/* Answers fail_first requests with 500, then 200; keeps every request. */
static struct hook {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    volatile int stop;
    int started;
    int fail_first;
    int n;                 /* requests received */
    int n_ok;              /* answered 200 */
    char *req[HOOK_MAX];   /* whole requests as received (head and body) */
    char *ok_body[HOOK_MAX];
    double t[HOOK_MAX];    /* h_now() at each */
} hook = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* One request: head, then Content-Length bytes of body.  NULL on a short read. */
static char *read_request(int fd, char **body)
{
    size_t cap = 65536, len = 0, want = 0;
    char *b = malloc(cap + 1), *end = NULL;

    while (b != NULL && len < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t k;
        if (poll(&p, 1, 3000) <= 0 || (k = read(fd, b + len, cap - len)) <= 0)
            break;
        len += (size_t)k;
        b[len] = '\0';
        if (end == NULL && (end = strstr(b, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(b, "\r\nContent-Length:");
            want = (size_t)(end + 4 - b) + (cl != NULL ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (end != NULL && len >= want) {
            *body = end + 4;
            return b;
        }
    }
    free(b);
    return NULL;
}

static void *hook_main(void *arg)
{
    (void)arg;
    while (!hook.stop) {
        struct pollfd p = {.fd = hook.fd, .events = POLLIN};
        char *req, *body = NULL, resp[128];
        int c, status = 200;

        if (poll(&p, 1, 50) <= 0 || (c = accept(hook.fd, NULL, NULL)) < 0)
            continue;
        req = read_request(c, &body);
        pthread_mutex_lock(&hook.mu);
        if (req != NULL && hook.n < HOOK_MAX) {
            hook.t[hook.n] = h_now();
            hook.req[hook.n++] = req;
            if (hook.n <= hook.fail_first)
                status = 500;
            else
                hook.ok_body[hook.n_ok++] = body;
        } else {
            free(req);
            status = 400;
        }
        pthread_mutex_unlock(&hook.mu);
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
        h_raw_send(c, resp, strlen(resp));
        close(c);
    }
    return NULL;
}

static void hook_start(int fail_first)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;

    hook.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(hook.fd, 0);
    ck_assert_int_eq(bind(hook.fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(hook.fd, 16), 0);
    ck_assert_int_eq(getsockname(hook.fd, (struct sockaddr *)&a, &al), 0);
    hook.port = ntohs(a.sin_port);
    hook.fail_first = fail_first;
    hook.stop = 0;
    ck_assert_int_eq(pthread_create(&hook.th, NULL, hook_main, NULL), 0);
    hook.started = 1;
}

static void hook_stop(void)
{
    if (!hook.started)
        return;
    hook.started = 0;
    hook.stop = 1;
    pthread_join(hook.th, NULL);
    close(hook.fd);
    for (int i = 0; i < hook.n; i++)
        free(hook.req[i]);
    memset(hook.req, 0, sizeof hook.req);
    memset(hook.ok_body, 0, sizeof hook.ok_body);
    hook.n = hook.n_ok = 0;
}

static int hook_count(int ok)
{
    int n;
    pthread_mutex_lock(&hook.mu);
    n = ok ? hook.n_ok : hook.n;
    pthread_mutex_unlock(&hook.mu);
    return n;
}

/* Waits up to timeout_ms for at least n delivered (or, ok = 0, received) requests. */
static int hook_wait(int ok, int n, int timeout_ms)
{
    double until = h_now() + timeout_ms / 1000.0;
    while (hook_count(ok) < n && h_now() < until)
        usleep(20000);
    return hook_count(ok);
}

/* The delivered body i, parsed (caller deletes). */
static cJSON *hook_body(int i)
{
    cJSON *j;
    pthread_mutex_lock(&hook.mu);
    j = i < hook.n_ok ? cJSON_Parse(hook.ok_body[i]) : NULL;
    pthread_mutex_unlock(&hook.mu);
    ck_assert_msg(j != NULL, "webhook body %d missing or not JSON", i);
    return j;
}

/* ---- orproxy ---- */

static struct h_proc fake, orp;
static char alice[80], alice_h[65];
static char conf[4096];

static const char *make_conf(const char *auth_and_clients, const char *alerts)
{
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 1;\n"
             "%s\nalerts = { webhook_url = \"http://127.0.0.1:%d/hooks/T0KEN-in-path\"; %s };\n",
             auth_and_clients, hook.port, alerts);
    return conf;
}

static void setup(void)
{
    static int keys_made;
    if (!keys_made) {
        ck_assert_int_eq(h_key_new("alice", alice, sizeof alice, alice_h), 0);
        keys_made = 1;
    }
    memset(&fake, 0, sizeof fake);
    memset(&orp, 0, sizeof orp);
    ck_assert_int_eq(h_fake_start(&fake, NULL), 0);
}

static void teardown(void)
{
    h_proc_stop(&orp, SIGTERM, 10000);
    h_proc_stop(&fake, SIGTERM, 5000);
    h_proc_cleanup(&orp);
    h_proc_cleanup(&fake);
    hook_stop();
}

/* One chat completion that costs cost_usd (the fake's usage.cost); a model
 * with no price and limits.unpriced_reserve_usd = 0, so the reservation is
 * 0 and only settled spend counts. */
static void spend(const char *key, const char *cost_usd)
{
    char body[256], auth[128];
    const char *hdrs[] = {auth, NULL};
    struct h_resp r;

    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key ? key : "none");
    snprintf(body, sizeof body,
             "{\"model\":\"test/unpriced\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"fake\":{\"usage\":{\"cost\":%s}}}",
             cost_usd);
    h_request(&r, orp.port, "POST", "/v1/chat/completions", body, key ? hdrs : NULL, NULL);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    h_resp_free(&r);
}

static char *db_path(void)
{
    static char p[400];
    snprintf(p, sizeof p, "%s/state/usage.db", orp.dir);
    return p;
}

static long long db_int(const char *sql)
{
    char *v = h_db_value(db_path(), sql, 2000);
    long long n;
    ck_assert_msg(v != NULL, "no answer to %s", sql);
    n = strcmp(v, "NULL") == 0 ? -1 : atoll(v);
    free(v);
    return n;
}

static void utc_now(const char *fmt, char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, fmt, &tm);
}

static const char *str_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The delivered json alert i is exactly this one. */
static void expect_json(int i, const char *client, const char *budget, const char *period, int pct,
                        const char *spent, const char *limit)
{
    cJSON *j = hook_body(i);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "client");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "threshold_pct");
    char host[256] = "";
    const char *at = str_of(j, "at");

    gethostname(host, sizeof host - 1);
    snprintf(host + strlen(host), sizeof host - strlen(host), ":%d", orp.port); /* instance.name's default */
    ck_assert_str_eq(str_of(j, "type"), "budget");
    if (client == NULL)
        ck_assert(cJSON_IsNull(c));
    else
        ck_assert_str_eq(cJSON_IsString(c) ? c->valuestring : "?", client);
    ck_assert_str_eq(str_of(j, "budget"), budget);
    ck_assert_str_eq(str_of(j, "period"), period);
    ck_assert(cJSON_IsNumber(t) && t->valueint == pct);
    ck_assert_str_eq(str_of(j, "spent_usd"), spent);
    ck_assert_str_eq(str_of(j, "limit_usd"), limit);
    ck_assert_str_eq(str_of(j, "instance"), host);
    ck_assert_msg(at != NULL && strlen(at) == 20 && strncmp(at, period, strlen(period)) == 0 &&
                      at[10] == 'T' && at[19] == 'Z',
                  "at: %s", at ? at : "(none)");
    ck_assert_int_eq(cJSON_GetArraySize(j), 9);
    cJSON_Delete(j);
}

/* What reached the webhook carried no key of any kind. */
static void expect_no_secrets(void)
{
    char *log = h_read_file(orp.log);
    pthread_mutex_lock(&hook.mu);
    for (int i = 0; i < hook.n; i++) {
        ck_assert_ptr_null(strstr(hook.req[i], KEY));
        ck_assert_ptr_null(strcasestr(hook.req[i], "\r\nAuthorization:"));
        ck_assert_ptr_nonnull(strstr(hook.req[i], "POST /hooks/T0KEN-in-path HTTP/1.1\r\n"));
        ck_assert_ptr_nonnull(strcasestr(hook.req[i], "\r\nContent-Type: application/json\r\n"));
    }
    pthread_mutex_unlock(&hook.mu);
    ck_assert_ptr_nonnull(log);
    ck_assert_ptr_null(strstr(log, KEY));
    ck_assert_ptr_null(strstr(log, alice));
    ck_assert_ptr_null(strstr(log, "T0KEN")); /* the webhook is logged by host only */
    free(log);
}

START_TEST(test_each_threshold_fires_once_also_across_a_restart)
{
    char clients[512], day[16], month[16];

    hook_start(0);
    snprintf(clients, sizeof clients,
             "auth = { mode = \"keys\"; };\nlimits = { budget_usd_month = \"2.00\"; unpriced_reserve_usd = 0; };\n"
             "clients = ( { name = \"alice\"; key_sha256 = \"%s\"; budget_usd_day = \"1.00\"; } );",
             alice_h);
    ck_assert_int_eq(h_orproxy_start(&orp, make_conf(clients, ""), env_key), 0);
    utc_now("%Y-%m-%d", day, sizeof day);
    utc_now("%Y-%m", month, sizeof month);

    spend(alice, "0.3"); /* 30%: below every threshold */
    usleep(1500000);
    ck_assert_int_eq(hook_count(0), 0);

    spend(alice, "0.3"); /* 60%: 50 */
    ck_assert_int_eq(hook_wait(1, 1, 5000), 1);
    expect_json(0, "alice", "day", day, 50, "0.60", "1.00");

    spend(alice, "0.3"); /* 90%: 80 */
    ck_assert_int_eq(hook_wait(1, 2, 5000), 2);
    expect_json(1, "alice", "day", day, 80, "0.90", "1.00");

    spend(alice, "0.3"); /* alice 120%: 100; all traffic $1.20 of $2.00 a month: 50 */
    ck_assert_int_eq(hook_wait(1, 4, 5000), 4);
    {
        cJSON *j = hook_body(2);
        int global_first = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "client"));
        cJSON_Delete(j);
        expect_json(global_first ? 3 : 2, "alice", "day", day, 100, "1.20", "1.00");
        expect_json(global_first ? 2 : 3, NULL, "month", month, 50, "1.20", "2.00");
    }
    usleep(2500000);
    ck_assert_int_eq(hook_count(0), 4); /* nothing twice */

    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent"), 4);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent WHERE sent_ms IS NULL"), 0);
    {
        char *v2 = h_db_value(db_path(),
                              "SELECT group_concat(threshold || ':' || spent_pusd || ':' || "
                              "limit_pusd || ':' || period, ' ') FROM (SELECT * FROM alerts_sent"
                              " WHERE client = 'alice' AND budget = 'day' ORDER BY threshold)",
                              2000);
        char want[256];
        snprintf(want, sizeof want,
                 "50:600000000000:1000000000000:%s 80:900000000000:1000000000000:%s "
                 "100:1200000000000:1000000000000:%s",
                 day, day, day);
        ck_assert_str_eq(v2, want);
        free(v2);
    }
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent WHERE client = '' AND budget ="
                            " 'month' AND threshold = 50 AND spent_pusd = 1200000000000"),
                     1);
    ck_assert(h_log_wait(&orp, "alert delivered to 127.0.0.1:", 0));
    expect_no_secrets();

    /* A restart: spend is seeded from the ledger, every budget is still
     * past its thresholds, and alerts_sent says they fired. */
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    ck_assert_int_eq(h_orproxy_start(&orp, make_conf(clients, ""), env_key), 0);
    usleep(3000000);
    ck_assert_int_eq(hook_count(0), 4);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent"), 4);
    ck_assert_ptr_null(h_orproxy_finish(&orp, KEY, 10000));
}
END_TEST

START_TEST(test_failing_receiver_gets_it_after_retries_and_a_restart)
{
    const char *global = "limits = { budget_usd_day = \"1.00\"; unpriced_reserve_usd = 0; };";
    const char *alerts = "thresholds_pct = [50, 100];";
    long long v;

    hook_start(2); /* 500, 500, then 200 */
    ck_assert_int_eq(h_orproxy_start(&orp, make_conf(global, alerts), env_key), 0);
    spend(NULL, "0.6");
    ck_assert_int_eq(hook_wait(1, 1, 10000), 1);
    ck_assert_int_eq(hook_count(0), 3);
    /* backoff: about 1 s, then about 2 s */
    ck_assert_msg(hook.t[1] - hook.t[0] > 0.8 && hook.t[2] - hook.t[1] > 1.8,
                  "gaps %.2f %.2f", hook.t[1] - hook.t[0], hook.t[2] - hook.t[1]);
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_nonnull(strstr(hook.req[i], "\"threshold_pct\":50"));
    ck_assert(h_log_wait(&orp, "alert to 127.0.0.1:", 0));
    ck_assert(h_log_wait(&orp, " failed (HTTP 500); retried in 1 s: all traffic day budget", 0));
    ck_assert_int_eq(h_metric(orp.port, NULL, "orproxy_alerts_total{result=\"failed\"}", &v), 200);
    ck_assert_int_eq(v, 2);
    ck_assert_int_eq(h_metric(orp.port, NULL, "orproxy_alerts_total{result=\"sent\"}", &v), 200);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent WHERE threshold = 50 AND client = ''"
                            " AND budget = 'day' AND sent_ms >= crossed_ms"),
                     1);
    usleep(2000000);
    ck_assert_int_eq(hook_count(0), 3); /* delivered: never again */

    /* Now the receiver is down for good: the 100% alert waits in the ledger... */
    pthread_mutex_lock(&hook.mu);
    hook.fail_first = HOOK_MAX;
    pthread_mutex_unlock(&hook.mu);
    spend(NULL, "0.5");
    ck_assert_int_eq(hook_wait(0, 4, 5000), 4);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent WHERE threshold = 100 AND"
                            " sent_ms IS NULL"),
                     1);
    ck_assert_int_eq(h_proc_stop(&orp, SIGTERM, 10000), 0);
    /* ...and goes out after a restart, once the receiver is back. */
    pthread_mutex_lock(&hook.mu);
    hook.fail_first = 0;
    pthread_mutex_unlock(&hook.mu);
    ck_assert_int_eq(h_orproxy_start(&orp, make_conf(global, alerts), env_key), 0);
    ck_assert_int_eq(hook_wait(1, 2, 5000), 2);
    {
        cJSON *j = hook_body(1);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "threshold_pct");
        ck_assert(cJSON_IsNumber(t) && t->valueint == 100);
        ck_assert_str_eq(str_of(j, "spent_usd"), "1.10");
        cJSON_Delete(j);
    }
    usleep(2000000);
    ck_assert_int_eq(hook_count(1), 2);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent WHERE sent_ms IS NULL"), 0);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent"), 2);
    expect_no_secrets();
    ck_assert_ptr_null(h_orproxy_finish(&orp, KEY, 10000));
}
END_TEST

/* A managed client made through the admin API (open: auth.mode none),
 * with its key expiring at expires_ms. */
static void add_managed_client(const char *name, long long expires_ms)
{
    char body[256], when[32];
    time_t e = (time_t)(expires_ms / 1000);
    struct tm tm;
    struct h_resp r;

    gmtime_r(&e, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"expires_at\":\"%s\"}", name, when);
    h_request(&r, orp.port, "POST", "/admin/v1/clients", body, NULL, NULL);
    ck_assert_int_eq(r.status, 201);
    h_resp_free(&r);
}

START_TEST(test_slack_shape_and_key_expiry)
{
    char day[16], expiry_day[16], want[512];
    long long now = (long long)time(NULL) * 1000, in3 = now + 3LL * 86400 * 1000;
    time_t e = (time_t)(in3 / 1000);
    struct tm tm;
    cJSON *j;

    gmtime_r(&e, &tm);
    strftime(expiry_day, sizeof expiry_day, "%Y-%m-%d", &tm);
    utc_now("%Y-%m-%d", day, sizeof day);
    hook_start(0);
    ck_assert_int_eq(h_orproxy_start(&orp,
                                     make_conf("limits = { budget_usd_day = \"1.00\"; unpriced_reserve_usd = 0; };",
                                               "thresholds_pct = [50]; format = \"slack\";"),
                                     env_key),
                     0);
    spend(NULL, "0.6");
    ck_assert_int_eq(hook_wait(1, 1, 5000), 1);
    j = hook_body(0);
    ck_assert_int_eq(cJSON_GetArraySize(j), 1);
    {
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        snprintf(want, sizeof want,
                 "orproxy on %s:%d: all traffic day budget for %s reached 50%% ($0.60 of $1.00)", host,
                 orp.port, day);
    }
    ck_assert_str_eq(str_of(j, "text"), want);
    cJSON_Delete(j);

    /* Keys: one expiring in 3 days alerts once; one in 10 days and one
     * already expired do not. */
    add_managed_client("soon", in3);
    add_managed_client("later", now + 10LL * 86400 * 1000);
    add_managed_client("gone", now - 1000);
    /* (A revoked client is not in the config the alerts read: nothing of
     * it can alert once it is revoked.) */
    ck_assert_int_eq(hook_wait(1, 2, 5000), 2);
    j = hook_body(1);
    ck_assert_ptr_nonnull(strstr(str_of(j, "text"), ": client 'soon': its key expires on "));
    ck_assert_ptr_nonnull(strstr(str_of(j, "text"), expiry_day));
    cJSON_Delete(j);
    usleep(2500000);
    ck_assert_int_eq(hook_count(0), 2);
    snprintf(want, sizeof want,
             "SELECT count(*) FROM alerts_sent WHERE client = 'soon' AND budget = 'expiry'"
             " AND period = '%s' AND threshold = 0 AND sent_ms IS NOT NULL",
             expiry_day);
    ck_assert_int_eq(db_int(want), 1);
    ck_assert_int_eq(db_int("SELECT count(*) FROM alerts_sent"), 2);
    expect_no_secrets();
    ck_assert_ptr_null(h_orproxy_finish(&orp, KEY, 10000));
}
END_TEST

/* orproxy -t on a file with these alerts settings: the exit code, and
 * stderr must hold "FILE:2: " + want (want NULL: accepted). */
static void check_conf(const char *alerts, const char *want)
{
    char text[512], expect[512];
    char *file, *out = NULL, *err = NULL;
    const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";

    snprintf(text, sizeof text, "listen = { port = 8099; };\nalerts = { %s };\n", alerts);
    file = h_temp_file(text);
    const char *argv[] = {bin, "-t", "-c", file, NULL};
    if (want == NULL) {
        ck_assert_msg(h_run(argv, &out, &err) == 0, "%s: %s", alerts, err);
    } else {
        ck_assert_int_eq(h_run(argv, &out, &err), 2);
        snprintf(expect, sizeof expect, "%s:2: %s", file, want);
        ck_assert_msg(strstr(err, expect) != NULL, "%s: want %s, stderr: %s", alerts, expect, err);
    }
    free(out);
    free(err);
    unlink(file);
    free(file);
}

START_TEST(test_bad_settings_are_refused)
{
    check_conf("thresholds_pct = [80, 50];",
               "alerts.thresholds_pct must be ascending with no repeats (50 after 80)");
    check_conf("thresholds_pct = [50, 50];",
               "alerts.thresholds_pct must be ascending with no repeats (50 after 50)");
    check_conf("thresholds_pct = [0, 50];", "alerts.thresholds_pct: 0 is not between 1 and 1000");
    check_conf("thresholds_pct = [1001];", "alerts.thresholds_pct: 1001 is not between 1 and 1000");
    check_conf("thresholds_pct = [];", "alerts.thresholds_pct must list 1 to 16 values, not 0");
    check_conf("thresholds_pct = 50;",
               "alerts.thresholds_pct must be a list of integers such as [50, 80, 100]");
    check_conf("thresholds_pct = [\"50\"];",
               "alerts.thresholds_pct must be a list of integers such as [50, 80, 100]");
    check_conf("webhook_url = \"ftp://example.com/x\";",
               "alerts.webhook_url must be \"\" (off) or start with http:// or https://");
    check_conf("webhook_url = \"https:///x\";",
               "alerts.webhook_url must name a host after http:// or https://");
    check_conf("format = \"xml\";", "alerts.format must be one of json|slack, not 'xml'");
    check_conf("webhook_url = \"https://hooks.example.com/T/B/x\"; thresholds_pct = [1, 1000];"
               " format = \"slack\";",
               NULL);
    check_conf("thresholds_pct = (25, 75);", NULL);

    /* The daemon itself refuses to start, with the same message. */
    {
        char *file = h_temp_file("listen = { port = 8099; };\nalerts = { thresholds_pct = [90, 10]; };\n");
        const char *bin = getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
        const char *argv[] = {bin, "-c", file, NULL};
        char *out = NULL, *err = NULL, expect[512];
        ck_assert_int_eq(h_run(argv, &out, &err), 2);
        snprintf(expect, sizeof expect,
                 "%s:2: alerts.thresholds_pct must be ascending with no repeats (10 after 90)", file);
        ck_assert_msg(strstr(err, expect) != NULL, "stderr: %s", err);
        free(out);
        free(err);
        unlink(file);
        free(file);
    }
}
END_TEST

static Suite *alerts_suite(void)
{
    Suite *s = suite_create("alerts");
    TCase *tc = tcase_create("webhook");
    TCase *cf = tcase_create("settings");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_each_threshold_fires_once_also_across_a_restart);
    tcase_add_test(tc, test_failing_receiver_gets_it_after_retries_and_a_restart);
    tcase_add_test(tc, test_slack_shape_and_key_expiry);
    suite_add_tcase(s, tc);
    tcase_add_test(cf, test_bad_settings_are_refused);
    suite_add_tcase(s, cf);
    return s;
}

H_MAIN(alerts_suite)
