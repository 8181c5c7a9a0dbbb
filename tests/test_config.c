/* Unit tests for config.c: defaults, every setting, every error class with
 * its FILE:LINE, key resolution, and the docs that the table drives. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "config.h"

#define SECRET "sk-or-v1-CONFIG-TEST-SECRET"

static char path[64];

static const char *write_conf(const char *text)
{
    int fd;
    FILE *f;
    snprintf(path, sizeof path, "/tmp/orp-conf-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void clean_env(void)
{
    unsetenv("OPENROUTER_API_KEY");
    unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("STATE_DIRECTORY");
}

/* Loads text; returns the error message ("" when it loaded). */
static const char *load(const char *text, struct orp_config *cfg)
{
    static char err[1024];
    err[0] = '\0';
    write_conf(text);
    if (config_load(path, cfg, err, sizeof err) == 0)
        err[0] = '\0';
    unlink(path);
    return err;
}

static void assert_error(const char *text, int line, const char *msg)
{
    struct orp_config cfg;
    char expect[1024];
    const char *err = load(text, &cfg);
    snprintf(expect, sizeof expect, "%s:%d: %s", path, line, msg);
    ck_assert_str_eq(err, expect);
    config_free(&cfg);
}

START_TEST(test_config_defaults_from_empty_file)
{
    struct orp_config cfg;
    clean_env();
    ck_assert_str_eq(load("", &cfg), "");
    ck_assert_str_eq(cfg.listen_address, "127.0.0.1");
    ck_assert_int_eq(cfg.listen_port, 8080);
    ck_assert_str_eq(cfg.upstream_base_url, "https://openrouter.ai/api/v1");
    ck_assert_str_eq(cfg.upstream_api_key_env, "OPENROUTER_API_KEY");
    ck_assert_int_eq(cfg.retry_max_attempts, 3);
    ck_assert_int_eq(cfg.retry_base_delay_ms, 1000);
    ck_assert_int_eq(cfg.workers, 0);
    ck_assert_str_eq(cfg.state_dir, "/var/lib/orproxy");
    ck_assert_str_eq(cfg.ledger_path, "/var/lib/orproxy/usage.db");
    ck_assert_int_eq(cfg.pricing_refresh_s, 21600);
    ck_assert_ptr_null(cfg.upstream_key);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_values_applied)
{
    struct orp_config cfg;
    clean_env();
    ck_assert_str_eq(load("listen = { address = \"::1\"; port = 9000; };\n"
                          "upstream = { base_url = \"http://127.0.0.1:1/api/v1///\"; title = \"T\";"
                          " idle_timeout_s = 7; max_response_bytes = 2048; };\n"
                          "retry = { max_attempts = 5; base_delay_ms = 10; max_delay_ms = 20; };\n"
                          "limits = { max_body_bytes = 1000000L; };\n"
                          "workers = 3;\nlog = { level = \"debug\"; format = \"json\"; };\n"
                          "state_dir = \"/tmp/st\";\nledger = { flush_ms = 20; };\n",
                          &cfg),
                     "");
    ck_assert_str_eq(cfg.listen_address, "::1");
    ck_assert_int_eq(cfg.listen_port, 9000);
    ck_assert_str_eq(cfg.upstream_base_url, "http://127.0.0.1:1/api/v1"); /* slashes stripped */
    ck_assert_str_eq(cfg.upstream_title, "T");
    ck_assert_int_eq(cfg.upstream_idle_timeout_s, 7);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 2048);
    ck_assert_int_eq(cfg.retry_max_attempts, 5);
    ck_assert_int_eq(cfg.limits_max_body_bytes, 1000000);
    ck_assert_int_eq(cfg.workers, 3);
    ck_assert_str_eq(cfg.log_level, "debug");
    ck_assert_str_eq(cfg.log_format, "json");
    ck_assert_str_eq(cfg.ledger_path, "/tmp/st/usage.db");
    ck_assert_int_eq(cfg.ledger_flush_ms, 20);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_error_lines)
{
    clean_env();
    assert_error("\nfoo = 1;\n", 2, "unknown setting 'foo'");
    assert_error("listen = {\n  address = \"127.0.0.1\";\n  prot = 1;\n};\n", 3,
                 "unknown setting 'listen.prot'");
    assert_error("listen = { port = \"80\"; };\n", 1, "listen.port must be an integer");
    assert_error("\n\nretry = { max_attempts = 0; };\n", 3, "retry.max_attempts must be between 1 and 10");
    assert_error("retry = { max_attempts = 11; };\n", 1, "retry.max_attempts must be between 1 and 10");
    assert_error("log = { level = \"loud\"; };\n", 1,
                 "log.level must be one of error|warn|info|debug, not 'loud'");
    assert_error("listen = { address = \"localhost\"; };\n", 1,
                 "listen.address must be an IPv4 or IPv6 address, not 'localhost'");
    assert_error("upstream = { base_url = \"ftp://x\"; };\n", 1,
                 "upstream.base_url must start with http:// or https://");
    assert_error("retry = {\n base_delay_ms = 500;\n max_delay_ms = 100; };\n", 3,
                 "retry.max_delay_ms (100) must be at least retry.base_delay_ms (500)");
    assert_error("listen = 5;\n", 1, "listen is a group: write listen = { ... };");
    assert_error("workers = { a = 1; };\n", 1, "workers is a setting, not a group");
    assert_error("limits = { max_body_bytes = 1.5; };\n", 1, "limits.max_body_bytes must be an integer");
}
END_TEST

START_TEST(test_config_syntax_error_has_line)
{
    struct orp_config cfg;
    char expect[128];
    const char *err = load("listen = {\n port = = 80;\n};\n", &cfg);
    snprintf(expect, sizeof expect, "%s:2: ", path);
    ck_assert_msg(strncmp(err, expect, strlen(expect)) == 0, "got: %s", err);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_missing_file)
{
    struct orp_config cfg;
    char err[256];
    ck_assert_int_eq(config_load("/nonexistent/orproxy.conf", &cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "/nonexistent/orproxy.conf: cannot open: No such file or directory");
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_key_file_wins_over_env)
{
    struct orp_config cfg;
    char kp[] = "/tmp/orp-key-XXXXXX", text[256];
    int fd = mkstemp(kp);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "  " SECRET "  \nsecond line\n", 37), 37);
    close(fd);
    clean_env();
    setenv("OPENROUTER_API_KEY", "from-env", 1);
    snprintf(text, sizeof text, "upstream = { api_key_file = \"%s\"; };\n", kp);
    ck_assert_str_eq(load(text, &cfg), "");
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
    unlink(kp);
    clean_env();
}
END_TEST

START_TEST(test_config_key_from_env_or_none)
{
    struct orp_config cfg;
    clean_env();
    setenv("MY_KEY", " " SECRET "\n", 1);
    ck_assert_str_eq(load("upstream = { api_key_env = \"MY_KEY\"; };", &cfg), "");
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
    unsetenv("MY_KEY");
    ck_assert_str_eq(load("upstream = { api_key_env = \"MY_KEY\"; };", &cfg), "");
    ck_assert_ptr_null(cfg.upstream_key);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_credentials_directory)
{
    struct orp_config cfg;
    char dir[] = "/tmp/orp-cred-XXXXXX", file[128];
    FILE *f;
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/openrouter-api-key", dir);
    f = fopen(file, "w");
    fputs(SECRET "\n", f);
    fclose(f);
    clean_env();
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    setenv("OPENROUTER_API_KEY", "from-env", 1);
    ck_assert_str_eq(load("", &cfg), "");
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
    unlink(file);
    rmdir(dir);
    clean_env();
}
END_TEST

START_TEST(test_config_unreadable_and_empty_key_file)
{
    char kp[] = "/tmp/orp-key-XXXXXX", text[256], expect[512];
    int fd = mkstemp(kp);
    close(fd);
    clean_env();
    assert_error("\nupstream = { api_key_file = \"/nonexistent/key\"; };\n", 2,
                 "upstream.api_key_file: cannot read '/nonexistent/key': No such file or directory");
    snprintf(text, sizeof text, "upstream = { api_key_file = \"%s\"; };\n", kp);
    snprintf(expect, sizeof expect, "upstream.api_key_file: '%s' is empty", kp);
    assert_error(text, 1, expect);
    unlink(kp);
}
END_TEST

START_TEST(test_config_key_never_in_errors)
{
    struct orp_config cfg;
    const char *err;
    clean_env();
    setenv("OPENROUTER_API_KEY", SECRET, 1);
    err = load("retry = { max_attempts = 99; };", &cfg);
    ck_assert_ptr_null(strstr(err, SECRET));
    config_free(&cfg);
    clean_env();
}
END_TEST

START_TEST(test_config_state_directory_env_wins)
{
    struct orp_config cfg;
    clean_env();
    setenv("STATE_DIRECTORY", "/var/lib/private/orproxy", 1);
    ck_assert_str_eq(load("state_dir = \"state\";", &cfg), "");
    ck_assert_str_eq(cfg.state_dir, "/var/lib/private/orproxy");
    ck_assert_str_eq(cfg.ledger_path, "/var/lib/private/orproxy/usage.db");
    config_free(&cfg);
    clean_env();
}
END_TEST

START_TEST(test_config_free_twice_is_safe)
{
    struct orp_config cfg;
    config_defaults(&cfg);
    config_free(&cfg);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_example_file_documents_every_setting)
{
    struct orp_config cfg;
    char err[512];
    FILE *f = fopen("conf/orproxy.conf", "r");
    static char text[65536];
    size_t n;
    ck_assert_ptr_nonnull(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    clean_env();
    ck_assert_int_eq(config_load("conf/orproxy.conf", &cfg, err, sizeof err), 0);
    config_free(&cfg);
    for (int i = 0; i < config_table_count(); i++) {
        const char *name = config_table_name(i), *dot = strrchr(name, '.');
        char needle[96];
        snprintf(needle, sizeof needle, "\n  %s = ", dot ? dot + 1 : name);
        if (dot == NULL)
            snprintf(needle, sizeof needle, "\n%s = ", name);
        ck_assert_msg(strstr(text, needle) != NULL, "conf/orproxy.conf lacks %s", name);
    }
}
END_TEST

START_TEST(test_config_readme_table_is_current)
{
    /* The README's settings table is `orproxy --settings` output. */
    FILE *f = fopen("README.md", "r"), *mem;
    static char readme[262144];
    char *table = NULL;
    size_t n, tlen = 0;
    ck_assert_ptr_nonnull(f);
    n = fread(readme, 1, sizeof readme - 1, f);
    fclose(f);
    readme[n] = '\0';
    mem = open_memstream(&table, &tlen);
    config_write_markdown(mem);
    fclose(mem);
    ck_assert_msg(strstr(readme, table) != NULL,
                  "README settings table is stale: regenerate with build/orproxy --settings");
    free(table);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_config_defaults_from_empty_file);
    tcase_add_test(tc, test_config_values_applied);
    tcase_add_test(tc, test_config_error_lines);
    tcase_add_test(tc, test_config_syntax_error_has_line);
    tcase_add_test(tc, test_config_missing_file);
    tcase_add_test(tc, test_config_key_file_wins_over_env);
    tcase_add_test(tc, test_config_key_from_env_or_none);
    tcase_add_test(tc, test_config_credentials_directory);
    tcase_add_test(tc, test_config_unreadable_and_empty_key_file);
    tcase_add_test(tc, test_config_key_never_in_errors);
    tcase_add_test(tc, test_config_state_directory_env_wins);
    tcase_add_test(tc, test_config_free_twice_is_safe);
    tcase_add_test(tc, test_config_example_file_documents_every_setting);
    tcase_add_test(tc, test_config_readme_table_is_current);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(config_suite)
