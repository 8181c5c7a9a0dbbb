/* End-to-end regression tests for the hostile review's findings on reload safety, the model
 * allow-list and curl's own re-sends (issue 11, items 1, 8 and 9):
 *  - a reload is checked against what will really run: the listener that stays (listen.address
 *    is restart-only) and a socket systemd passed, not the address written in the file;
 *  - every model a request may be served by ("model" and the "models" fallback list) passes the
 *    client's model rules, and the budget is reserved at the dearest of them;
 *  - a POST reaches upstream exactly as many times as the ledger's attempts say: curl's silent
 *    re-send on a fresh connection is refused and left to retry.max_attempts. */
#include <check.h>
#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define KEY H_CANARY_KEY

static const char *const env_key[] = {"OPENROUTER_API_KEY=" KEY, NULL};
static struct h_proc fake, orp;
static char cli_key[80], cli_hash[65];

static const char *bin(void)
{
    return getenv("ORP_BIN") ? getenv("ORP_BIN") : "build/orproxy";
}

static void setup(void)
{
    if (cli_key[0] == '\0')
        ck_assert_int_eq(h_key_new("app", cli_key, sizeof cli_key, cli_hash), 0);
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
}

static void wait_log(const char *needle, int timeout_ms)
{
    ck_assert_msg(h_log_wait(&orp, needle, timeout_ms), "no '%s' in the log", needle);
}

static long post(const char *key, const char *body, struct h_resp *r)
{
    char auth[128];
    const char *hdrs[] = {auth, NULL};
    if (key != NULL)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    h_request(r, orp.port, "POST", "/v1/chat/completions", body, key ? hdrs : NULL, NULL);
    return r->status;
}

/* Column col of the ledger row of request rid (text, malloc'd), waiting up to 3 s. */
static char *ledger_value(const char *rid, const char *col)
{
    char sql[256], path[512];
    snprintf(path, sizeof path, "%s/state/usage.db", orp.dir);
    snprintf(sql, sizeof sql, "SELECT %s FROM requests WHERE request_id = '%s'", col, rid);
    return h_db_value(path, sql, 3000);
}

/* --- item 1: a reload cannot open the key to the network ------------------------------------ */

static const char conf_public_keys[] =
    "listen = { address = \"0.0.0.0\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
    "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 1;\n"
    "auth = { mode = \"keys\"; };\n"
    "clients = ( { name = \"app\"; key_sha256 = \"%s\"; } );\n";

static const char conf_loopback_none[] =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
    "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 1;\n"
    "auth = { mode = \"none\"; };\n";

START_TEST(test_reload_cannot_turn_auth_off_on_public_listener)
{
    char conf[2048], *text, *metrics;

    struct h_resp r;

    snprintf(conf, sizeof conf, conf_public_keys, cli_hash);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
    ck_assert_int_eq(post(NULL, "{\"fake\":{\"tag\":\"before\"}}", &r), 401);
    h_resp_free(&r);

    /* The file now says loopback and no keys; the listener stays on 0.0.0.0. */
    text = h_subst(&orp, conf_loopback_none);
    h_write_file(orp.conf, text);
    free(text);
    kill(orp.pid, SIGHUP);
    for (int i = 0; i < 250; i++) { /* until the reload was handled, either way */
        char *log = h_read_file(orp.log);
        int done = log != NULL && (strstr(log, "reload refused") || strstr(log, "reloaded "));
        free(log);
        if (done)
            break;
        usleep(20000);
    }
    ck_assert_int_eq(post(NULL, "{\"fake\":{\"tag\":\"after\"}}", &r), 401);
    ck_assert_ptr_nonnull(strstr(r.body, "\"missing_api_key\""));
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "after"), 0);
    wait_log("reload refused, keeping the running configuration", 1000);
    /* The client key still works: the old configuration runs on. */
    ck_assert_int_eq(post(cli_key, "{\"fake\":{\"tag\":\"keyed\"}}", &r), 200);
    h_resp_free(&r);
    {
        char auth[128];
        const char *hdrs[] = {auth, NULL};
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", cli_key);
        h_request(&r, orp.port, "GET", "/v1/key", NULL, hdrs, NULL);
        ck_assert_int_eq(r.status, 200);
        metrics = strdup(r.body);
        h_resp_free(&r);
    }
    ck_assert_ptr_nonnull(strstr(metrics, "\"label\":\"app\""));
    free(metrics);
}
END_TEST

/* A socket systemd passes is checked the same way: listen.address is not what listens.  The
 * test passes the socket as systemd does (LISTEN_FDS=1, LISTEN_PID, descriptor 3), bound to every
 * address, loopback included, so the test reaches it on 127.0.0.1. */
START_TEST(test_auth_none_refused_on_public_activated_socket)
{
    char confpath[] = "/tmp/orp-sa-sec-XXXXXX", *text, errpath[1024] = "/dev/null";
    int port = h_free_port(), fd, status = 0, exited = 0;
    pid_t pid;
    struct h_resp r;

    fd = mkstemp(confpath);
    close(fd);
    text = h_subst(&orp, "listen = { address = \"127.0.0.1\"; port = 1; };\n"
                         "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
                         "auth = { mode = \"none\"; };\n"
                         "state_dir = \"/tmp/orp-sa-sec-state\";\n");
    h_write_file(confpath, text);
    free(text);
    if (h_capture_dir() != NULL)
        snprintf(errpath, sizeof errpath, "%s/socket-activation-public.log", h_capture_dir());
    pid = fork();
    if (pid == 0) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        int one = 1, s = socket(AF_INET, SOCK_STREAM, 0), errfd;
        char pidenv[32];
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0)
            _exit(126);
        dup2(s, 3);
        if (s != 3)
            close(s);
        errfd = open(errpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(errfd, 1);
        dup2(errfd, 2);
        snprintf(pidenv, sizeof pidenv, "%d", (int)getpid());
        setenv("LISTEN_PID", pidenv, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("OPENROUTER_API_KEY", KEY, 1);
        execl(bin(), bin(), "-c", confpath, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !(exited = waitpid(pid, &status, WNOHANG) == pid); i++)
        usleep(50000);
    if (!exited) {
        /* Still running: it serves keyless requests on a public socket. */
        h_request(&r, port, "POST", "/v1/chat/completions", "{\"fake\":{\"tag\":\"sa-public\"}}",
                  NULL, &(struct h_req_opts){.timeout_ms = 5000});
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("orproxy started with auth.mode none on a public socket (a keyless request "
                     "got %ld)", r.status);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "exit status %d", status);
    unlink(confpath);
    {
        const char *rm[] = {"rm", "-rf", "/tmp/orp-sa-sec-state", NULL};
        h_run(rm, NULL, NULL);
    }
}
END_TEST

/* --- item 8: the fallback list passes the model rules and is reserved at its dearest ---------- */

static const char conf_models[] =
    "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
    "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
    "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 1;\n"
    "auth = { mode = \"keys\"; };\n"
    "clients = ( { name = \"app\"; key_sha256 = \"%s\"; models = [\"openai/*\", \"test/*\"];\n"
    "              budget_usd_day = \"0.05\"; } );\n";

static void start_models(void)
{
    char conf[2048];
    snprintf(conf, sizeof conf, conf_models, cli_hash);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
    wait_log("model prices loaded from upstream", 5000);
}

START_TEST(test_fallback_models_pass_the_allow_list)
{
    struct h_resp r;

    start_models();
    ck_assert_int_eq(post(cli_key,
                          "{\"model\":\"openai/gpt-4o-mini\",\"models\":[\"anthropic/claude-3-opus\"],"
                          "\"fake\":{\"tag\":\"smuggled\"}}",
                          &r),
                     403);
    ck_assert_ptr_nonnull(strstr(r.body, "\"model_not_allowed\""));
    ck_assert_ptr_nonnull(strstr(r.body, "anthropic/claude-3-opus"));
    h_resp_free(&r);
    /* No "model", only a fallback list: the list alone decides. */
    ck_assert_int_eq(post(cli_key, "{\"models\":[\"openai/gpt-4o-mini\",\"x/y\"],\"fake\":{\"tag\":\"only\"}}",
                          &r),
                     403);
    h_resp_free(&r);
    /* A list the rules cannot read is refused, not forwarded. */
    ck_assert_int_eq(post(cli_key, "{\"model\":\"openai/gpt-4o-mini\",\"models\":[7],\"fake\":{\"tag\":\"num\"}}",
                          &r),
                     400);
    ck_assert_ptr_nonnull(strstr(r.body, "\"invalid_models\""));
    h_resp_free(&r);
    ck_assert_int_eq(post(cli_key, "{\"model\":\"openai/gpt-4o-mini\",\"models\":\"openai/x\","
                                   "\"models\":[\"anthropic/claude-3-opus\"],\"fake\":{\"tag\":\"dup\"}}",
                          &r),
                     400);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "smuggled") + h_fake_count(fake.port, "only") +
                         h_fake_count(fake.port, "num") + h_fake_count(fake.port, "dup"),
                     0);
    /* Every entry allowed: forwarded untouched. */
    ck_assert_int_eq(post(cli_key, "{\"model\":\"openai/gpt-4o-mini\",\"models\":[\"test/awkward\"],"
                                   "\"fake\":{\"tag\":\"fine\"}}",
                          &r),
                     200);
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "fine"), 1);
}
END_TEST

START_TEST(test_fallback_models_reserved_at_dearest_price)
{
    struct h_resp r;

    start_models();
    /* 100000 completion tokens: test/awkward alone reserves about $0.03 (fits the $0.05 day),
     * openai/gpt-4o-mini about $0.06 (does not). */
    ck_assert_int_eq(post(cli_key, "{\"model\":\"test/awkward\",\"max_tokens\":100000,"
                                   "\"fake\":{\"tag\":\"cheap\"}}",
                          &r),
                     200);
    h_resp_free(&r);
    ck_assert_int_eq(post(cli_key, "{\"model\":\"test/awkward\",\"models\":[\"openai/gpt-4o-mini\"],"
                                   "\"max_tokens\":100000,\"fake\":{\"tag\":\"dear\"}}",
                          &r),
                     402);
    ck_assert_ptr_nonnull(strstr(r.body, "\"budget_day_exceeded\""));
    h_resp_free(&r);
    ck_assert_int_eq(h_fake_count(fake.port, "dear"), 0);
}
END_TEST

/* --- item 9: curl does not re-send a POST on its own ----------------------------------------- */

static void start_retry(int max_attempts)
{
    char conf[2048];
    snprintf(conf, sizeof conf,
             "listen = { address = \"127.0.0.1\"; port = @PORT@; };\n"
             "upstream = { base_url = \"http://127.0.0.1:@FAKE@/api/v1\"; };\n"
             "state_dir = \"@DIR@/state\";\nledger = { flush_ms = 50; };\nworkers = 1;\n"
             "retry = { max_attempts = %d; base_delay_ms = 10; max_delay_ms = 50; };\n",
             max_attempts);
    ck_assert_int_eq(h_orproxy_start(&orp, conf, env_key), 0);
}

/* Sends a warm-up request so the worker has a kept-alive upstream connection, then one that
 * upstream reads and answers by closing: the reused connection dies after the request was
 * read, which is when curl 7.88 sends it again on a fresh one. */
static void post_on_dying_reused_connection(const char *rid, struct h_resp *r)
{
    char hdr[96];
    const char *hdrs[] = {hdr, NULL};
    struct h_resp w;

    h_request(&w, orp.port, "POST", "/v1/chat/completions", "{\"fake\":{\"tag\":\"warm\"}}", NULL, NULL);
    ck_assert_int_eq(w.status, 200);
    h_resp_free(&w);
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", rid);
    h_request(r, orp.port, "POST", "/v1/chat/completions",
              "{\"fake\":{\"tag\":\"dies\",\"close_before_headers\":true}}", hdrs, NULL);
}

START_TEST(test_post_sent_once_with_one_attempt)
{
    struct h_resp r;
    char *attempts;

    start_retry(1);
    post_on_dying_reused_connection("resend-1", &r);
    ck_assert_int_eq(r.status, 502);
    ck_assert_ptr_nonnull(strstr(r.body, "\"upstream_unreachable\""));
    h_resp_free(&r);
    attempts = ledger_value("resend-1", "attempts");
    ck_assert_ptr_nonnull(attempts);
    ck_assert_str_eq(attempts, "1");
    free(attempts);
    ck_assert_int_eq(h_fake_count(fake.port, "dies"), 1);
}
END_TEST

START_TEST(test_post_attempts_in_ledger_match_upstream)
{
    struct h_resp r;
    char *attempts;

    start_retry(3);
    post_on_dying_reused_connection("resend-3", &r);
    ck_assert_int_eq(r.status, 502);
    h_resp_free(&r);
    attempts = ledger_value("resend-3", "attempts");
    ck_assert_ptr_nonnull(attempts);
    ck_assert_str_eq(attempts, "3");
    free(attempts);
    ck_assert_int_eq(h_fake_count(fake.port, "dies"), 3);
}
END_TEST

static Suite *core_security_suite(void)
{
    Suite *s = suite_create("core_security");
    TCase *tc = tcase_create("core_security");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_reload_cannot_turn_auth_off_on_public_listener);
    tcase_add_test(tc, test_auth_none_refused_on_public_activated_socket);
    tcase_add_test(tc, test_fallback_models_pass_the_allow_list);
    tcase_add_test(tc, test_fallback_models_reserved_at_dearest_price);
    tcase_add_test(tc, test_post_sent_once_with_one_attempt);
    tcase_add_test(tc, test_post_attempts_in_ledger_match_upstream);
    suite_add_tcase(s, tc);
    return s;
}

H_MAIN(core_security_suite)
