/* Unit tests for config.c: defaults, every setting, every error class with
 * its exact "FILE:LINE: message", key resolution, reload support, and the
 * documents the table drives (conf/orproxy.conf, doc/orproxy.conf.5).  Run
 * from the repository root. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "config.h"
#include "config_doc.h"
#include "config_table.h"

#define SECRET "sk-or-v1-CONFIG-TEST-SECRET-0123456789"

static char conf_path[64];
static char err[1024];

static void clean_env(void)
{
    unsetenv("OPENROUTER_API_KEY");
    unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("STATE_DIRECTORY");
    unsetenv("ORP_TEST_KEY");
}

/* A new file under /tmp holding text; its name is returned in path. */
static void write_file(char *path, size_t len, const char *text)
{
    int fd;
    FILE *f;
    snprintf(path, len, "/tmp/orp-test-XXXXXX");
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Loads text as a config file (removed again); returns config_load()'s
 * result, with the message in err. */
static int load(const char *text, struct orp_config *cfg)
{
    int rc;
    err[0] = '\0';
    write_file(conf_path, sizeof conf_path, text);
    rc = config_load(conf_path, cfg, err, sizeof err);
    unlink(conf_path);
    if (rc == 0)
        ck_assert_str_eq(err, "");
    return rc;
}

static void load_ok(const char *text, struct orp_config *cfg)
{
    int rc = load(text, cfg);
    ck_assert_msg(rc == 0, "load failed: %s", err);
}

/* text must fail with exactly "FILE:line: msg". */
static void assert_error(const char *text, int line, const char *msg)
{
    struct orp_config cfg;
    char expect[1200];
    ck_assert_int_eq(load(text, &cfg), -1);
    snprintf(expect, sizeof expect, "%s:%d: %s", conf_path, line, msg);
    ck_assert_str_eq(err, expect);
    config_free(&cfg);
}

/* ---- defaults and values ---- */

START_TEST(test_config_empty_file_gives_every_default)
{
    struct orp_config cfg;
    load_ok("", &cfg);
    ck_assert_str_eq(cfg.listen_address, "127.0.0.1");
    ck_assert_int_eq(cfg.listen_port, 8080);
    ck_assert_str_eq(cfg.upstream_base_url, "https://openrouter.ai/api/v1");
    ck_assert_str_eq(cfg.upstream_api_key_env, "OPENROUTER_API_KEY");
    ck_assert_str_eq(cfg.upstream_api_key_file, "");
    ck_assert_str_eq(cfg.upstream_referer, "");
    ck_assert_str_eq(cfg.upstream_title, "");
    ck_assert_int_eq(cfg.upstream_connect_timeout_s, 10);
    ck_assert_int_eq(cfg.upstream_idle_timeout_s, 120);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 67108864LL);
    ck_assert_int_eq(cfg.retry_max_attempts, 3);
    ck_assert_int_eq(cfg.retry_base_delay_ms, 1000);
    ck_assert_int_eq(cfg.retry_max_delay_ms, 10000);
    ck_assert_int_eq(cfg.limits_max_body_bytes, 16777216LL);
    ck_assert_int_eq(cfg.limits_max_connections, 4096);
    ck_assert_int_eq(cfg.limits_client_timeout_s, 60);
    ck_assert_int_eq(cfg.stream_keepalive_s, 15);
    ck_assert_int_eq(cfg.workers, 0);
    ck_assert_str_eq(cfg.log_level, "info");
    ck_assert_str_eq(cfg.log_format, "text");
    ck_assert_int_eq(cfg.shutdown_timeout_s, 30);
    ck_assert_str_eq(cfg.state_dir, "/var/lib/orproxy");
    ck_assert_str_eq(cfg.ledger_path, "/var/lib/orproxy/usage.db");
    ck_assert_str_eq(cfg.ledger_jsonl_path, "");
    ck_assert_int_eq(cfg.ledger_queue_max, 100000);
    ck_assert_int_eq(cfg.ledger_flush_ms, 1000);
    ck_assert_int_eq(cfg.pricing_refresh_s, 21600);
    ck_assert_ptr_null(cfg.upstream_key);
    ck_assert_str_eq(cfg.source_path, conf_path);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_every_setting_parses)
{
    struct orp_config cfg;
    load_ok("listen = { address = \"::1\"; port = 9000; };\n"
            "upstream = {\n"
            "  base_url = \"http://127.0.0.1:1/api/v1\";\n"
            "  api_key_env = \"ORP_TEST_KEY\";\n"
            "  api_key_file = \"\";\n"
            "  referer = \"https://example.com/\";\n"
            "  title = \"My App\";\n"
            "  connect_timeout_s = 5;\n"
            "  idle_timeout_s = 7;\n"
            "  max_response_bytes = 2048L;\n"
            "};\n"
            "retry = { max_attempts = 5; base_delay_ms = 10; max_delay_ms = 20; };\n"
            "limits = { max_body_bytes = 1000000; max_connections = 10; client_timeout_s = 9; };\n"
            "stream = { keepalive_s = 2; };\n"
            "workers = 3;\n"
            "log = { level = \"debug\"; format = \"json\"; };\n"
            "shutdown_timeout_s = 0;\n"
            "state_dir = \"/tmp/st\";\n"
            "ledger = { path = \"/tmp/l.db\"; jsonl_path = \"/tmp/l.jsonl\"; queue_max = 16;"
            " flush_ms = 20; };\n"
            "pricing = { refresh_s = 60; };\n",
            &cfg);
    ck_assert_str_eq(cfg.listen_address, "::1");
    ck_assert_int_eq(cfg.listen_port, 9000);
    ck_assert_str_eq(cfg.upstream_base_url, "http://127.0.0.1:1/api/v1");
    ck_assert_str_eq(cfg.upstream_api_key_env, "ORP_TEST_KEY");
    ck_assert_str_eq(cfg.upstream_referer, "https://example.com/");
    ck_assert_str_eq(cfg.upstream_title, "My App");
    ck_assert_int_eq(cfg.upstream_connect_timeout_s, 5);
    ck_assert_int_eq(cfg.upstream_idle_timeout_s, 7);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 2048);
    ck_assert_int_eq(cfg.retry_max_attempts, 5);
    ck_assert_int_eq(cfg.retry_base_delay_ms, 10);
    ck_assert_int_eq(cfg.retry_max_delay_ms, 20);
    ck_assert_int_eq(cfg.limits_max_body_bytes, 1000000);
    ck_assert_int_eq(cfg.limits_max_connections, 10);
    ck_assert_int_eq(cfg.limits_client_timeout_s, 9);
    ck_assert_int_eq(cfg.stream_keepalive_s, 2);
    ck_assert_int_eq(cfg.workers, 3);
    ck_assert_str_eq(cfg.log_level, "debug");
    ck_assert_str_eq(cfg.log_format, "json");
    ck_assert_int_eq(cfg.shutdown_timeout_s, 0);
    ck_assert_str_eq(cfg.state_dir, "/tmp/st");
    ck_assert_str_eq(cfg.ledger_path, "/tmp/l.db");
    ck_assert_str_eq(cfg.ledger_jsonl_path, "/tmp/l.jsonl");
    ck_assert_int_eq(cfg.ledger_queue_max, 16);
    ck_assert_int_eq(cfg.ledger_flush_ms, 20);
    ck_assert_int_eq(cfg.pricing_refresh_s, 60);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_range_limits_are_inclusive)
{
    struct orp_config cfg;
    load_ok("listen = { port = 0; };\nretry = { max_attempts = 10; base_delay_ms = 0;"
            " max_delay_ms = 0; };\nupstream = { max_response_bytes = 1024; };\n",
            &cfg);
    ck_assert_int_eq(cfg.listen_port, 0);
    ck_assert_int_eq(cfg.retry_max_attempts, 10);
    ck_assert_int_eq(cfg.retry_max_delay_ms, 0);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 1024);
    config_free(&cfg);
    load_ok("listen = { port = 65535; };\n", &cfg);
    ck_assert_int_eq(cfg.listen_port, 65535);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_base_url_trailing_slashes_stripped)
{
    struct orp_config cfg;
    load_ok("upstream = { base_url = \"https://example.com/api/v1///\"; };\n", &cfg);
    ck_assert_str_eq(cfg.upstream_base_url, "https://example.com/api/v1");
    config_free(&cfg);
    load_ok("upstream = { base_url = \"http://example.com/\"; };\n", &cfg);
    ck_assert_str_eq(cfg.upstream_base_url, "http://example.com");
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_int64_with_and_without_L_suffix)
{
    struct orp_config cfg;
    load_ok("upstream = { max_response_bytes = 1099511627776L; };\n"
            "limits = { max_body_bytes = 1073741824L; };\n",
            &cfg);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 1LL << 40);
    ck_assert_int_eq(cfg.limits_max_body_bytes, 1LL << 30);
    config_free(&cfg);
    /* Above 2^32 without L: libconfig 1.5 alone would read 0 here. */
    load_ok("upstream = { max_response_bytes = 1099511627776; };\n"
            "limits = { max_body_bytes = 1073741824; };\n",
            &cfg);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 1LL << 40);
    ck_assert_int_eq(cfg.limits_max_body_bytes, 1LL << 30);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_int_accepts_L_suffix_and_hex)
{
    struct orp_config cfg;
    load_ok("listen = { port = 9000L; };\nworkers = 0x10;\n", &cfg);
    ck_assert_int_eq(cfg.listen_port, 9000);
    ck_assert_int_eq(cfg.workers, 16);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_int_beyond_32_bits_is_out_of_range_not_wrapped)
{
    /* 4294975376 = 2^32 + 8080: libconfig 1.5 alone reads 8080. */
    assert_error("listen = {\n  port = 4294975376;\n};\n", 2,
                 "listen.port must be between 0 and 65535");
    assert_error("limits = { max_body_bytes = 4294967297; };\n", 1,
                 "limits.max_body_bytes must be between 1 and 1073741824");
    assert_error("workers = 99999999999999999999999;\n", 1, "workers must be between 0 and 256");
    assert_error("workers = -4294967295;\n", 1, "workers must be between 0 and 256");
}
END_TEST

/* Issue 11 item 14: budgets above $9,223,372 overflowed int64 picodollars
 * at parse time although the range said 1e9.  The range is now what fits
 * with room for the spend: $1,000,000. */
START_TEST(test_config_budget_above_one_million_usd_refused)
{
    struct orp_config cfg;
    assert_error("limits = { budget_usd_day = 9999999; };\n", 1,
                 "limits.budget_usd_day must be between 0 and 1000000 USD");
    assert_error("\nlimits = { budget_usd_month = 1e9; };\n", 2,
                 "limits.budget_usd_month must be between 0 and 1000000 USD");
    assert_error("limits = { budget_usd_month = \"9999999.5\"; };\n", 1,
                 "limits.budget_usd_month must be between 0 and 1000000 USD");
    assert_error("limits = { budget_usd_month = \"1000000.000000000001\"; };\n", 1,
                 "limits.budget_usd_month must be between 0 and 1000000 USD");
    assert_error("limits = { budget_usd_day = 1000001; };\n", 1,
                 "limits.budget_usd_day must be between 0 and 1000000 USD");
    /* the edge itself is exact, in every form */
    load_ok("limits = { budget_usd_day = 1000000; budget_usd_month = \"1000000.00\"; };\n", &cfg);
    ck_assert_int_eq(cfg.limits.budget_day_pusd, 1000000LL * 1000000000000LL);
    ck_assert_int_eq(cfg.limits.budget_month_pusd, 1000000LL * 1000000000000LL);
    config_free(&cfg);
    load_ok("limits = { budget_usd_day = 999999.5; budget_usd_month = \"999999.999999999999\"; };\n",
            &cfg);
    ck_assert_int_eq(cfg.limits.budget_day_pusd, 999999500000000000LL);
    ck_assert_int_eq(cfg.limits.budget_month_pusd, 999999999999999999LL);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_int_lookalike_in_string_on_same_line_ignored)
{
    struct orp_config cfg;
    /* 4294969344 = 2^32 + 2048, inside a string: not the literal. */
    load_ok("upstream = { title = \"max_response_bytes = 4294969344\"; max_response_bytes = 2048; };\n",
            &cfg);
    ck_assert_int_eq(cfg.upstream_max_response_bytes, 2048);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_state_directory_env_wins)
{
    struct orp_config cfg;
    setenv("STATE_DIRECTORY", "/var/lib/private/orproxy", 1);
    load_ok("state_dir = \"state\";", &cfg);
    ck_assert_str_eq(cfg.state_dir, "/var/lib/private/orproxy");
    ck_assert_str_eq(cfg.ledger_path, "/var/lib/private/orproxy/usage.db");
    config_free(&cfg);
}
END_TEST

/* ---- errors: each class, exact text, right line ---- */

START_TEST(test_config_error_unknown_top_level_name)
{
    assert_error("workers = 1;\n\nfoo = 1;\n", 3, "unknown setting 'foo'");
}
END_TEST

START_TEST(test_config_error_unknown_name_in_group)
{
    assert_error("listen = {\n  address = \"127.0.0.1\";\n  prot = 1;\n};\n", 3,
                 "unknown setting 'listen.prot'");
    assert_error("upstream = {\n\n  foo = \"x\";\n};\n", 3, "unknown setting 'upstream.foo'");
}
END_TEST

START_TEST(test_config_error_unknown_name_in_unknown_group)
{
    assert_error("\nbogus = { port = 1; };\n", 2, "unknown setting 'bogus'");
}
END_TEST

START_TEST(test_config_error_group_used_as_scalar)
{
    assert_error("\nlisten = 5;\n", 2, "listen is a group: write listen = { ... };");
}
END_TEST

START_TEST(test_config_error_scalar_used_as_group)
{
    assert_error("workers = { a = 1; };\n", 1, "workers is a setting, not a group");
    assert_error("listen = {\n  port = { a = 1; };\n};\n", 2, "listen.port is a setting, not a group");
}
END_TEST

START_TEST(test_config_error_string_for_integer)
{
    assert_error("listen = { port = \"80\"; };\n", 1, "listen.port must be an integer");
}
END_TEST

START_TEST(test_config_error_float_or_bool_for_integer)
{
    assert_error("limits = { max_body_bytes = 1.5; };\n", 1, "limits.max_body_bytes must be an integer");
    assert_error("workers = true;\n", 1, "workers must be an integer");
}
END_TEST

START_TEST(test_config_error_integer_for_string)
{
    assert_error("upstream = {\n  title = 5;\n};\n", 2, "upstream.title must be a string");
    assert_error("log = { level = 1; };\n", 1, "log.level must be a string");
}
END_TEST

START_TEST(test_config_error_out_of_range_low)
{
    assert_error("\n\nretry = { max_attempts = 0; };\n", 3, "retry.max_attempts must be between 1 and 10");
}
END_TEST

START_TEST(test_config_error_out_of_range_high)
{
    assert_error("retry = { max_attempts = 11; };\n", 1, "retry.max_attempts must be between 1 and 10");
    assert_error("upstream = { max_response_bytes = 1099511627777L; };\n", 1,
                 "upstream.max_response_bytes must be between 1024 and 1099511627776");
}
END_TEST

START_TEST(test_config_error_bad_enum_lists_values)
{
    assert_error("log = {\n  level = \"loud\";\n};\n", 2,
                 "log.level must be one of error|warn|info|debug, not 'loud'");
    assert_error("log = { format = \"xml\"; };\n", 1, "log.format must be one of text|json, not 'xml'");
}
END_TEST

START_TEST(test_config_error_bad_address)
{
    assert_error("listen = {\n  address = \"localhost\";\n};\n", 2,
                 "listen.address must be an IPv4 or IPv6 address, not 'localhost'");
}
END_TEST

START_TEST(test_config_error_bad_base_url)
{
    assert_error("upstream = { base_url = \"ftp://x\"; };\n", 1,
                 "upstream.base_url must start with http:// or https://");
    assert_error("upstream = { base_url = \"https://\"; };\n", 1,
                 "upstream.base_url must name a host after http:// or https://");
}
END_TEST

START_TEST(test_config_error_control_characters_in_string)
{
    assert_error("upstream = { title = \"a\\nX-Evil: 1\"; };\n", 1,
                 "upstream.title must not contain control characters");
}
END_TEST

START_TEST(test_config_error_max_delay_below_base_at_max_line)
{
    assert_error("retry = {\n  max_delay_ms = 100;\n  base_delay_ms = 500;\n};\n", 2,
                 "retry.max_delay_ms (100) must be at least retry.base_delay_ms (500)");
}
END_TEST

START_TEST(test_config_error_base_delay_above_default_max_at_base_line)
{
    assert_error("\nretry = {\n  base_delay_ms = 20000;\n};\n", 3,
                 "retry.max_delay_ms (10000) must be at least retry.base_delay_ms (20000)");
}
END_TEST

START_TEST(test_config_error_syntax)
{
    assert_error("listen = {\n  port = = 80;\n};\n", 2, "syntax error");
}
END_TEST

START_TEST(test_config_error_duplicate_name)
{
    assert_error("workers = 1;\nworkers = 2;\n", 2, "duplicate setting name");
}
END_TEST

START_TEST(test_config_error_in_included_file_names_that_file)
{
    struct orp_config cfg;
    char inc[64], text[128], expect[256];

    write_file(inc, sizeof inc, "workers = 1;\nretry = {\n  max_attempts = 0;\n};\n");
    snprintf(text, sizeof text, "listen = { port = 1; };\n@include \"%s\"\n", inc);
    ck_assert_int_eq(load(text, &cfg), -1);
    snprintf(expect, sizeof expect, "%s:3: retry.max_attempts must be between 1 and 10", inc);
    ck_assert_str_eq(err, expect);
    config_free(&cfg);
    unlink(inc);
}
END_TEST

/* libconfig 1.5 exit()s the whole process ("input in flex scanner failed")
 * when an @include names a directory; a reload must fail instead. */
START_TEST(test_config_include_of_a_directory_is_an_error_not_an_exit)
{
    struct orp_config cfg;
    char inc[64], text[160], expect[256], dir[] = "/tmp/orp-incdir-XXXXXX";

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(text, sizeof text, "listen = { port = 1; };\n  @include \"%s\"\n", dir);
    ck_assert_int_eq(load(text, &cfg), -1);
    snprintf(expect, sizeof expect, "%s:2: @include \"%s\" is not a regular file", conf_path, dir);
    ck_assert_str_eq(err, expect);
    config_free(&cfg);

    /* one level down, named by the file that has the line */
    snprintf(text, sizeof text, "workers = 1;\n\n@include\t\"%s\"\n", dir);
    write_file(inc, sizeof inc, text);
    snprintf(text, sizeof text, "@include \"%s\"\n", inc);
    ck_assert_int_eq(load(text, &cfg), -1);
    snprintf(expect, sizeof expect, "%s:3: @include \"%s\" is not a regular file", inc, dir);
    ck_assert_str_eq(err, expect);
    config_free(&cfg);
    unlink(inc);
    rmdir(dir);
}
END_TEST

START_TEST(test_config_error_missing_file)
{
    struct orp_config cfg;
    ck_assert_int_eq(config_load("/nonexistent/orproxy.conf", &cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "/nonexistent/orproxy.conf: cannot open: No such file or directory");
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_error_directory_as_file)
{
    struct orp_config cfg;
    ck_assert_int_eq(config_load("/tmp", &cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "/tmp: cannot open: Is a directory");
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_error_unreadable_key_file)
{
    assert_error("\nupstream = {\n  api_key_file = \"/nonexistent/key\";\n};\n", 3,
                 "upstream.api_key_file: cannot read '/nonexistent/key': No such file or directory");
    assert_error("upstream = { api_key_file = \"/tmp\"; };\n", 1,
                 "upstream.api_key_file: cannot read '/tmp': Is a directory");
}
END_TEST

START_TEST(test_config_error_empty_key_file)
{
    char kp[64], text[256], expect[256];
    write_file(kp, sizeof kp, " \n\t\n");
    snprintf(text, sizeof text, "upstream = { api_key_file = \"%s\"; };\n", kp);
    snprintf(expect, sizeof expect, "upstream.api_key_file: '%s' is empty", kp);
    assert_error(text, 1, expect);
    unlink(kp);
}
END_TEST

START_TEST(test_config_error_key_pasted_into_key_settings)
{
    assert_error("upstream = { api_key_file = \"" SECRET "\"; };\n", 1,
                 "upstream.api_key_file must name a file holding the key, not be the key itself");
    assert_error("upstream = { api_key_env = \"" SECRET "\"; };\n", 1,
                 "upstream.api_key_env must be the name of an environment variable (letters, "
                 "digits, _), not the key itself");
}
END_TEST

START_TEST(test_config_error_does_not_overflow_small_buffer)
{
    struct orp_config cfg;
    char small[12];
    write_file(conf_path, sizeof conf_path, "foo = 1;\n");
    ck_assert_int_eq(config_load(conf_path, &cfg, small, sizeof small), -1);
    ck_assert_int_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(strncmp(small, conf_path, sizeof small - 1), 0);
    unlink(conf_path);
    config_free(&cfg);
}
END_TEST

/* ---- the upstream key ---- */

START_TEST(test_config_key_from_env_trimmed)
{
    struct orp_config cfg;
    setenv("OPENROUTER_API_KEY", "  " SECRET "\n", 1);
    load_ok("", &cfg);
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_key_from_named_env)
{
    struct orp_config cfg;
    setenv("ORP_TEST_KEY", SECRET, 1);
    setenv("OPENROUTER_API_KEY", "not-this-one", 1);
    load_ok("upstream = { api_key_env = \"ORP_TEST_KEY\"; };", &cfg);
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_key_env_unset_or_empty_is_null)
{
    struct orp_config cfg;
    load_ok("", &cfg);
    ck_assert_ptr_null(cfg.upstream_key);
    config_free(&cfg);
    setenv("OPENROUTER_API_KEY", " \n", 1);
    load_ok("", &cfg);
    ck_assert_ptr_null(cfg.upstream_key);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_key_file_wins_over_env_and_credentials)
{
    struct orp_config cfg;
    char kp[64], dir[] = "/tmp/orp-cred-XXXXXX", cred[128], text[256];
    FILE *f;

    write_file(kp, sizeof kp, "  " SECRET "  \nsecond line\n");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cred, sizeof cred, "%s/openrouter-api-key", dir);
    f = fopen(cred, "w");
    ck_assert_ptr_nonnull(f);
    fputs("from-credentials\n", f);
    fclose(f);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    setenv("OPENROUTER_API_KEY", "from-env", 1);
    snprintf(text, sizeof text, "upstream = { api_key_file = \"%s\"; };\n", kp);
    load_ok(text, &cfg);
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
    unlink(cred);
    rmdir(dir);
    unlink(kp);
}
END_TEST

START_TEST(test_config_key_from_credentials_directory_wins_over_env)
{
    struct orp_config cfg;
    char dir[] = "/tmp/orp-cred-XXXXXX", file[128];
    FILE *f;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/openrouter-api-key", dir);
    f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(SECRET "\n", f);
    fclose(f);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    setenv("OPENROUTER_API_KEY", "from-env", 1);
    load_ok("", &cfg);
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
    unlink(file);
    rmdir(dir);
}
END_TEST

START_TEST(test_config_key_credentials_directory_without_file_falls_back_to_env)
{
    struct orp_config cfg;
    char dir[] = "/tmp/orp-cred-XXXXXX";

    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    setenv("OPENROUTER_API_KEY", SECRET, 1);
    load_ok("", &cfg);
    ck_assert_str_eq(cfg.upstream_key, SECRET);
    config_free(&cfg);
    rmdir(dir);
}
END_TEST

START_TEST(test_config_key_never_in_error_messages)
{
    static const char *const bad[] = {
        "retry = { max_attempts = 99; };",
        "foo = 1;",
        "listen = { address = \"nowhere\"; };",
        "log = { level = \"loud\"; };",
        "retry = { base_delay_ms = 50000; };",
        "listen = { port = = 1; };",
        "upstream = { api_key_file = \"/nonexistent/key\"; };",
        "upstream = { api_key_file = \"" SECRET "\"; };",
        "upstream = { api_key_env = \"" SECRET "\"; };",
    };
    char kp[64], dir[] = "/tmp/orp-cred-XXXXXX", cred[128];
    FILE *f;

    /* The key is available by every route at once. */
    write_file(kp, sizeof kp, SECRET "\n");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cred, sizeof cred, "%s/openrouter-api-key", dir);
    f = fopen(cred, "w");
    ck_assert_ptr_nonnull(f);
    fputs(SECRET "\n", f);
    fclose(f);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    setenv("OPENROUTER_API_KEY", SECRET, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct orp_config cfg;
        ck_assert_int_eq(load(bad[i], &cfg), -1);
        ck_assert_msg(strstr(err, SECRET) == NULL && strstr(err, "CONFIG-TEST-SECRET") == NULL,
                      "key in: %s", err);
        config_free(&cfg);
    }
    unlink(cred);
    rmdir(dir);
    unlink(kp);
}
END_TEST

/* ---- freeing ---- */

START_TEST(test_config_free_twice_is_safe)
{
    struct orp_config cfg;
    config_defaults(&cfg);
    config_free(&cfg);
    config_free(&cfg);
    setenv("OPENROUTER_API_KEY", SECRET, 1);
    load_ok("", &cfg);
    config_free(&cfg);
    ck_assert_ptr_null(cfg.upstream_key);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_free_after_failed_load_is_safe)
{
    struct orp_config cfg;
    ck_assert_int_eq(load("upstream = { title = \"t\"; };\nretry = { max_attempts = 0; };\n", &cfg), -1);
    config_free(&cfg);
    config_free(&cfg);
}
END_TEST

/* ---- reload support ---- */

START_TEST(test_config_reload_keeps_restart_only_settings)
{
    char p1[64], p2[64];
    struct orp_config *old, *cur;

    write_file(p1, sizeof p1, "listen = { port = 9000; };\nretry = { max_attempts = 2; };\n");
    write_file(p2, sizeof p2,
               "listen = { port = 9001; address = \"::1\"; };\nretry = { max_attempts = 4; };\n");
    old = config_load_new(p1, err, sizeof err);
    cur = config_load_new(p2, err, sizeof err);
    ck_assert_ptr_nonnull(old);
    ck_assert_ptr_nonnull(cur);
    ck_assert_str_eq(config_keep_restart_only(cur, old), "listen.address, listen.port");
    ck_assert_str_eq(cur->listen_address, "127.0.0.1");
    ck_assert_int_eq(cur->listen_port, 9000);
    ck_assert_int_eq(cur->retry_max_attempts, 4); /* reloadable: the new value */
    ck_assert_str_eq(config_keep_restart_only(cur, old), "");
    ck_assert_ptr_eq(config_hold(cur), cur);
    config_release(cur);
    config_release(cur);
    config_release(old);
    unlink(p1);
    unlink(p2);
}
END_TEST

START_TEST(test_config_load_new_reports_error)
{
    ck_assert_ptr_null(config_load_new("/nonexistent/orproxy.conf", err, sizeof err));
    ck_assert_str_eq(err, "/nonexistent/orproxy.conf: cannot open: No such file or directory");
}
END_TEST

/* ---- alerts.thresholds_pct: the list-of-integers row ---- */

START_TEST(test_config_alert_thresholds_default_and_list)
{
    struct orp_config cfg;
    load_ok("", &cfg);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.n, 3);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.v[0], 50);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.v[1], 80);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.v[2], 100);
    ck_assert_str_eq(cfg.alerts_webhook_url, "");
    ck_assert_str_eq(cfg.alerts_format, "json");
    config_free(&cfg);
    load_ok("alerts = {\n thresholds_pct = [1, 90, 1000];\n"
            " webhook_url = \"https://hooks.example.com/a/b/\"; format = \"slack\"; };\n",
            &cfg);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.n, 3);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.v[0], 1);
    ck_assert_int_eq(cfg.alerts_thresholds_pct.v[2], 1000);
    ck_assert_str_eq(cfg.alerts_webhook_url, "https://hooks.example.com/a/b/"); /* kept as written */
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_alert_thresholds_errors)
{
    assert_error("\nalerts = { thresholds_pct = [100, 80]; };\n", 2,
                 "alerts.thresholds_pct must be ascending with no repeats (80 after 100)");
    assert_error("alerts = {\n\n thresholds_pct = [5, 5]; };\n", 3,
                 "alerts.thresholds_pct must be ascending with no repeats (5 after 5)");
    assert_error("alerts = { thresholds_pct = [0]; };\n", 1,
                 "alerts.thresholds_pct: 0 is not between 1 and 1000");
    assert_error("alerts = { thresholds_pct = [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]; };\n", 1,
                 "alerts.thresholds_pct must list 1 to 16 values, not 17");
    assert_error("alerts = { thresholds_pct = [5.5]; };\n", 1,
                 "alerts.thresholds_pct must be a list of integers such as [50, 80, 100]");
    assert_error("alerts = { webhook_url = \"http://\"; };\n", 1,
                 "alerts.webhook_url must name a host after http:// or https://");
    assert_error("alerts = { webhook_url = \"https://a b\"; };\n", 1,
                 "alerts.webhook_url must not contain spaces");
    assert_error("alerts = { webhook_url = \"httpx://a\"; };\n", 1,
                 "alerts.webhook_url must be \"\" (off) or start with http:// or https://");
}
END_TEST

/* ---- the documents the table drives ---- */

/* The Markdown table, one row per setting: name, default, help. */
struct row {
    char name[128], def[256], help[512];
};

/* What write (a config_doc.h writer) writes, as one string to free. */
static char *written_by(void (*write)(FILE *))
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(mem);
    write(mem);
    fclose(mem);
    return text;
}

static char *table_markdown(void)
{
    return written_by(config_doc_markdown);
}

/* Splits a Markdown table row into its cells, unescaping "\|". */
static int md_cells(const char *line, char cells[][512], int max)
{
    int n = -1;
    size_t k = 0;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (*p == '|') {
            if (n >= 0 && n < max) {
                while (k > 0 && cells[n][k - 1] == ' ')
                    k--;
                cells[n][k] = '\0';
            }
            n++;
            k = 0;
            while (p[1] == ' ')
                p++;
            continue;
        }
        if (*p == '\\' && p[1] == '|')
            p++;
        if (n >= 0 && n < max && k < 511)
            cells[n][k++] = *p;
    }
    return n;
}

static int table_rows(struct row *rows, int max)
{
    char *md = table_markdown(), *line, *save = NULL;
    int n = 0;
    for (line = strtok_r(md, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char cells[8][512];
        if (strncmp(line, "| `", 3) != 0)
            continue;
        ck_assert_int_eq(md_cells(line, cells, 8), 5);
        ck_assert_int_lt(n, max);
        /* `name`, `default` */
        snprintf(rows[n].name, sizeof rows[n].name, "%.*s", (int)strlen(cells[0]) - 2, cells[0] + 1);
        snprintf(rows[n].def, sizeof rows[n].def, "%.*s", (int)strlen(cells[2]) - 2, cells[2] + 1);
        snprintf(rows[n].help, sizeof rows[n].help, "%s", cells[4]);
        n++;
    }
    free(md);
    return n;
}

START_TEST(test_config_markdown_has_one_row_per_setting)
{
    static const char head[] = "| Setting | Type | Default | Range / values | Meaning |\n"
                               "|---|---|---|---|---|\n";
    struct row rows[128];
    char *md = table_markdown();
    int n;

    ck_assert_int_eq(strncmp(md, head, strlen(head)), 0);
    free(md);
    n = table_rows(rows, 128);
    ck_assert_int_eq(n, config_table_count());
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(rows[i].name, config_table_name(i));
        ck_assert_msg(rows[i].help[0] != '\0', "%s has no help", rows[i].name);
    }
    ck_assert_ptr_null(config_table_name(n));
    ck_assert_ptr_null(config_table_name(-1));
}
END_TEST

START_TEST(test_config_markdown_row_shows_type_default_range_help)
{
    char *md = table_markdown();
    ck_assert_ptr_nonnull(strstr(md, "| `listen.port` | integer | `8080` | 0 … 65535 | TCP port to "
                                     "listen on (0 = any free port) |\n"));
    ck_assert_ptr_nonnull(strstr(md, "| `log.format` | string | `\"text\"` | `text`, `json` | "));
    ck_assert_ptr_nonnull(strstr(md, "| `upstream.title` | string | `\"\"` |  | "));
    free(md);
}
END_TEST

/* What conf/orproxy.conf sets, as written: dotted name, value, and the
 * first line of the comment block right above it. */
struct conf_line {
    char name[128], value[256], comment[512];
};

static int read_example(struct conf_line *out, int max)
{
    FILE *f = fopen("conf/orproxy.conf", "r");
    char line[1024], group[64] = "", first_comment[512] = "";
    int n = 0, in_comment = 0;

    ck_assert_msg(f != NULL, "conf/orproxy.conf: run the test from the repository root");
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = line + strspn(line, " \t"), name[64], value[256];
        p[strcspn(p, "\r\n")] = '\0';
        if (*p == '#') {
            if (!in_comment)
                snprintf(first_comment, sizeof first_comment, "%s", p);
            in_comment = 1;
            continue;
        }
        in_comment = 0;
        if (strcmp(p, "};") == 0) {
            group[0] = '\0';
        } else if (sscanf(p, "%63[A-Za-z0-9_] = %255[^;];", name, value) == 2) {
            if (strcmp(value, "{") == 0 || strncmp(value, "{ ", 2) == 0) {
                snprintf(group, sizeof group, "%s", name);
            } else {
                ck_assert_int_lt(n, max);
                snprintf(out[n].name, sizeof out[n].name, "%s%s%s", group, group[0] ? "." : "", name);
                snprintf(out[n].value, sizeof out[n].value, "%s", value);
                snprintf(out[n].comment, sizeof out[n].comment, "%s", first_comment);
                n++;
            }
        }
        first_comment[0] = '\0';
    }
    fclose(f);
    return n;
}

START_TEST(test_config_url_for_log_hides_userinfo)
{
    char out[256];
    config_url_for_log("http://user:pass@127.0.0.1:9/api/v1", out, sizeof out);
    ck_assert_str_eq(out, "http://***@127.0.0.1:9/api/v1");
    config_url_for_log("https://a@b:c@openrouter.ai/api/v1?x=@", out, sizeof out);
    ck_assert_str_eq(out, "https://***@openrouter.ai/api/v1?x=@");
    config_url_for_log("https://openrouter.ai/api/v1/p@th", out, sizeof out);
    ck_assert_str_eq(out, "https://openrouter.ai/api/v1/p@th");
    config_url_for_log("user:pw@host/x", out, sizeof out);
    ck_assert_str_eq(out, "***@host/x");
}
END_TEST

START_TEST(test_config_example_file_loads)
{
    struct orp_config cfg;
    ck_assert_msg(config_load("conf/orproxy.conf", &cfg, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_null(cfg.upstream_key);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_example_file_shows_every_setting_with_help_and_default)
{
    /* Values that differ from the default so that `make run` works from
     * the checkout; the file says why next to each. */
    static const char *const run_values[][2] = {{"state_dir", "\"state\""}};
    struct row rows[128];
    struct conf_line lines[128];
    int nrows = table_rows(rows, 128), nlines = read_example(lines, 128);

    /* (A name the table lacks is caught by test_config_example_file_loads.) */
    for (int i = 0; i < nrows; i++) {
        const struct conf_line *l = NULL;
        const char *want = rows[i].def;
        char comment[600], with_l[300];

        for (int j = 0; j < nlines; j++)
            if (strcmp(lines[j].name, rows[i].name) == 0)
                l = &lines[j];
        ck_assert_msg(l != NULL, "conf/orproxy.conf does not set %s", rows[i].name);
        for (size_t k = 0; k < sizeof run_values / sizeof run_values[0]; k++)
            if (strcmp(run_values[k][0], rows[i].name) == 0)
                want = run_values[k][1];
        snprintf(with_l, sizeof with_l, "%sL", want);
        ck_assert_msg(strcmp(l->value, want) == 0 || strcmp(l->value, with_l) == 0,
                      "conf/orproxy.conf: %s = %s, the default is %s", rows[i].name, l->value, want);
        snprintf(comment, sizeof comment, "# %s", rows[i].help);
        ck_assert_msg(strcmp(l->comment, comment) == 0,
                      "conf/orproxy.conf: %s should follow the comment \"%s\", not \"%s\"",
                      rows[i].name, comment, l->comment);
    }
}
END_TEST

static char *man_page(void)
{
    return written_by(config_doc_man);
}

/* name as roff text: every '-' written "\-". */
static void roff_name(const char *name, char *out, size_t len)
{
    size_t k = 0;
    for (; *name && k + 3 < len; name++) {
        if (*name == '-')
            out[k++] = '\\';
        out[k++] = *name;
    }
    out[k] = '\0';
}

START_TEST(test_config_man_page_is_current)
{
    /* doc/orproxy.conf.5 is `orproxy --settings-man` output, byte for byte. */
    FILE *f = fopen("doc/orproxy.conf.5", "r");
    static char page[262144];
    char *want = man_page();
    size_t n, line = 1, i;

    ck_assert_msg(f != NULL, "doc/orproxy.conf.5: run the test from the repository root");
    n = fread(page, 1, sizeof page - 1, f);
    fclose(f);
    page[n] = '\0';
    for (i = 0; page[i] != '\0' && page[i] == want[i]; i++)
        line += page[i] == '\n';
    ck_assert_msg(page[i] == want[i],
                  "doc/orproxy.conf.5 is stale from line %zu: regenerate with "
                  "build/orproxy --settings-man >doc/orproxy.conf.5",
                  line);
    free(want);
}
END_TEST

START_TEST(test_config_man_page_has_an_entry_per_setting)
{
    char *man = man_page(), entry[256], name[200];
    struct config_row r;
    int n = 0;

    for (int i = 0; config_table_row(i, &r) == 0; i++, n++) {
        roff_name(r.name, name, sizeof name);
        snprintf(entry, sizeof entry, ".TP\n.B %s\n", name);
        ck_assert_msg(strstr(man, entry) != NULL, "orproxy.conf(5) has no entry for %s", r.name);
        ck_assert_str_eq(r.name, config_table_name(i));
    }
    ck_assert_int_eq(n, config_table_count());
    ck_assert_int_eq(config_table_row(-1, &r), -1);
    ck_assert_ptr_nonnull(strstr(man, ".TP\n.B listen.port\nTCP port to listen on (0 = any free "
                                      "port).\n.br\nInteger from 0 to 65535; default \\fB8080\\fR.\n"
                                      ".br\nNeeds a restart: a reload keeps the running value.\n"));
    ck_assert_ptr_nonnull(strstr(man, "One of \\fBnone\\fR, \\fBkeys\\fR; default \\fBnone\\fR.\n"));
    free(man);
}
END_TEST

START_TEST(test_config_man_page_reload_lists_the_restart_only_settings)
{
    char *man = man_page(), *reload = strstr(man, "\n.SH RELOAD\n"), *end, name[200], item[256];
    struct config_row r;

    ck_assert_ptr_nonnull(reload);
    end = strstr(reload + 1, "\n.SH ");
    ck_assert_ptr_nonnull(end);
    *end = '\0';
    for (int i = 0; config_table_row(i, &r) == 0; i++) {
        roff_name(r.name, name, sizeof name);
        snprintf(item, sizeof item, "\n.BR %s ", name);
        ck_assert_msg((strstr(reload, item) != NULL) == r.restart_only,
                      "RELOAD %s %s, which %s", r.restart_only ? "omits" : "lists", r.name,
                      r.restart_only ? "needs a restart" : "a reload changes");
    }
    free(man);
}
END_TEST

START_TEST(test_config_man_page_is_ascii_roff_with_escaped_hyphens)
{
    /* Requests the page may use; a line of text starting with '.' or '\''
     * would be taken for an unknown one. */
    static const char *const requests[] = {
        ".\\\" ", ".TH ", ".SH ", ".SS ", ".TP\n", ".B ", ".BR ", ".BI ", ".I ", ".IR ", ".IB ",
        ".RI ", ".RB ", ".PP\n", ".IP ", ".RS\n", ".RE\n", ".EX\n", ".EE\n", ".br\n", ".nh\n",
        ".UR ", ".UE\n"};
    char *man = man_page();

    for (const char *p = man; *p; p++) {
        ck_assert_msg((unsigned char)*p < 0x80 && (*p >= ' ' || *p == '\n'),
                      "byte 0x%02x at offset %td", (unsigned char)*p, p - man);
        if (p == man || p[-1] == '\n') {
            size_t k = 0, n = sizeof requests / sizeof requests[0];
            if (*p == '.')
                while (k < n && strncmp(p, requests[k], strlen(requests[k])) != 0)
                    k++;
            ck_assert_msg(*p != '\'' && k < n, "line at offset %td starts a request: %.20s",
                          p - man, p);
            if (strncmp(p, ".\\\"", 3) == 0 || strncmp(p, ".TH ", 4) == 0)
                p += strcspn(p, "\n"); /* comments and the title may say '-' */
        }
        if (*p == '-')
            ck_assert_msg(p > man && p[-1] == '\\', "unescaped '-' at offset %td: %.30s",
                          p - man, p - man >= 10 ? p - 10 : man);
    }
    free(man);
}
END_TEST

/* ---- the PostgreSQL ledger's settings (issue 14) ---- */

START_TEST(test_pgconfig_defaults_keep_sqlite)
{
    struct orp_config cfg;
    ck_assert_int_eq(load("", &cfg), 0);
    ck_assert_str_eq(cfg.ledger_backend, "sqlite");
    ck_assert_str_eq(cfg.ledger_postgresql_url, "");
    ck_assert_str_eq(cfg.ledger_postgresql_password_file, "");
    ck_assert_str_eq(cfg.instance_name, "");
    config_free(&cfg);
}
END_TEST

START_TEST(test_pgconfig_values)
{
    struct orp_config cfg;
    char pw[64];
    char text[512];

    write_file(pw, sizeof pw, "secret\n");
    snprintf(text, sizeof text,
             "ledger = { backend = \"postgresql\"; postgresql_url = \"postgresql://u@10.0.0.1/db\";"
             " postgresql_password_file = \"%s\"; };\ninstance = { name = \"a:1\"; };\n",
             pw);
    ck_assert_msg(load(text, &cfg) == 0, "%s", err);
    ck_assert_str_eq(cfg.ledger_backend, "postgresql");
    ck_assert_str_eq(cfg.ledger_postgresql_url, "postgresql://u@10.0.0.1/db");
    ck_assert_str_eq(cfg.ledger_postgresql_password_file, pw);
    ck_assert_str_eq(cfg.instance_name, "a:1");
    config_free(&cfg);
    unlink(pw);
}
END_TEST

START_TEST(test_pgconfig_password_in_url_is_an_error)
{
    struct orp_config cfg;
    assert_error("ledger = { postgresql_url = \"postgresql://u:hunter2@h/db\"; };\n", 1,
                 "ledger.postgresql_url must not contain a password (use "
                 "ledger.postgresql_password_file or .pgpass)");
    /* key=value form too, and the password is never repeated */
    ck_assert_int_eq(load("ledger = { postgresql_url = \"host=h password=hunter2\"; };\n", &cfg),
                     -1);
    ck_assert_ptr_null(strstr(err, "hunter2"));
    ck_assert_ptr_nonnull(strstr(err, "must not contain a password"));
    config_free(&cfg);
}
END_TEST

START_TEST(test_pgconfig_backend_needs_url_and_readable_password)
{
    assert_error("ledger = { backend = \"postgresql\"; };\n", 1,
                 "ledger.backend = \"postgresql\" needs ledger.postgresql_url");
    assert_error("ledger = { backend = \"postgresql\"; postgresql_url = \"postgresql://u@h/d\";\n"
                 " postgresql_password_file = \"/nonexistent/pw\"; };\n",
                 2,
                 "ledger.postgresql_password_file: cannot read '/nonexistent/pw': No such file "
                 "or directory");
    assert_error("ledger = { backend = \"mysql\"; };\n", 1,
                 "ledger.backend must be one of sqlite|postgresql, not 'mysql'");
}
END_TEST

START_TEST(test_pgconfig_systemd_credential)
{
    struct orp_config cfg;
    char dir[] = "/tmp/orp-cred-XXXXXX", path[128];
    FILE *f;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    /* no credential file: libpq's own (.pgpass) */
    ck_assert_msg(load("ledger = { backend = \"postgresql\"; postgresql_url = \"postgresql://u@h/d\"; };\n",
                       &cfg) == 0,
                  "%s", err);
    ck_assert_str_eq(cfg.ledger_postgresql_password_file, "");
    config_free(&cfg);
    snprintf(path, sizeof path, "%s/postgresql-password", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("pw\n", f);
    fclose(f);
    ck_assert_msg(load("ledger = { backend = \"postgresql\"; postgresql_url = \"postgresql://u@h/d\"; };\n",
                       &cfg) == 0,
                  "%s", err);
    ck_assert_str_eq(cfg.ledger_postgresql_password_file, path);
    config_free(&cfg);
    unlink(path);
    rmdir(dir);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *load_tc = tcase_create("load");
    TCase *errors = tcase_create("errors");
    TCase *alerts = tcase_create("alerts");
    TCase *key = tcase_create("key");
    TCase *life = tcase_create("lifetime");
    TCase *docs = tcase_create("docs");
    TCase *pg = tcase_create("postgresql");

    tcase_add_checked_fixture(load_tc, clean_env, clean_env);
    tcase_add_test(load_tc, test_config_empty_file_gives_every_default);
    tcase_add_test(load_tc, test_config_every_setting_parses);
    tcase_add_test(load_tc, test_config_range_limits_are_inclusive);
    tcase_add_test(load_tc, test_config_base_url_trailing_slashes_stripped);
    tcase_add_test(load_tc, test_config_int64_with_and_without_L_suffix);
    tcase_add_test(load_tc, test_config_int_accepts_L_suffix_and_hex);
    tcase_add_test(load_tc, test_config_int_beyond_32_bits_is_out_of_range_not_wrapped);
    tcase_add_test(load_tc, test_config_budget_above_one_million_usd_refused);
    tcase_add_test(load_tc, test_config_int_lookalike_in_string_on_same_line_ignored);
    tcase_add_test(load_tc, test_config_state_directory_env_wins);
    suite_add_tcase(s, load_tc);

    tcase_add_checked_fixture(errors, clean_env, clean_env);
    tcase_add_test(errors, test_config_error_unknown_top_level_name);
    tcase_add_test(errors, test_config_error_unknown_name_in_group);
    tcase_add_test(errors, test_config_error_unknown_name_in_unknown_group);
    tcase_add_test(errors, test_config_error_group_used_as_scalar);
    tcase_add_test(errors, test_config_error_scalar_used_as_group);
    tcase_add_test(errors, test_config_error_string_for_integer);
    tcase_add_test(errors, test_config_error_float_or_bool_for_integer);
    tcase_add_test(errors, test_config_error_integer_for_string);
    tcase_add_test(errors, test_config_error_out_of_range_low);
    tcase_add_test(errors, test_config_error_out_of_range_high);
    tcase_add_test(errors, test_config_error_bad_enum_lists_values);
    tcase_add_test(errors, test_config_error_bad_address);
    tcase_add_test(errors, test_config_error_bad_base_url);
    tcase_add_test(errors, test_config_error_control_characters_in_string);
    tcase_add_test(errors, test_config_error_max_delay_below_base_at_max_line);
    tcase_add_test(errors, test_config_error_base_delay_above_default_max_at_base_line);
    tcase_add_test(errors, test_config_error_syntax);
    tcase_add_test(errors, test_config_error_duplicate_name);
    tcase_add_test(errors, test_config_error_in_included_file_names_that_file);
    tcase_add_test(errors, test_config_include_of_a_directory_is_an_error_not_an_exit);
    tcase_add_test(errors, test_config_error_missing_file);
    tcase_add_test(errors, test_config_error_directory_as_file);
    tcase_add_test(errors, test_config_error_unreadable_key_file);
    tcase_add_test(errors, test_config_error_empty_key_file);
    tcase_add_test(errors, test_config_error_key_pasted_into_key_settings);
    tcase_add_test(errors, test_config_error_does_not_overflow_small_buffer);
    suite_add_tcase(s, errors);

    tcase_add_checked_fixture(key, clean_env, clean_env);
    tcase_add_test(key, test_config_key_from_env_trimmed);
    tcase_add_test(key, test_config_key_from_named_env);
    tcase_add_test(key, test_config_key_env_unset_or_empty_is_null);
    tcase_add_test(key, test_config_key_file_wins_over_env_and_credentials);
    tcase_add_test(key, test_config_key_from_credentials_directory_wins_over_env);
    tcase_add_test(key, test_config_key_credentials_directory_without_file_falls_back_to_env);
    tcase_add_test(key, test_config_key_never_in_error_messages);
    tcase_add_test(key, test_config_url_for_log_hides_userinfo);
    suite_add_tcase(s, key);

    tcase_add_checked_fixture(life, clean_env, clean_env);
    tcase_add_test(life, test_config_free_twice_is_safe);
    tcase_add_test(life, test_config_free_after_failed_load_is_safe);
    tcase_add_test(life, test_config_reload_keeps_restart_only_settings);
    tcase_add_test(life, test_config_load_new_reports_error);
    suite_add_tcase(s, life);

    tcase_add_checked_fixture(docs, clean_env, clean_env);
    tcase_add_test(docs, test_config_markdown_has_one_row_per_setting);
    tcase_add_test(docs, test_config_markdown_row_shows_type_default_range_help);
    tcase_add_test(docs, test_config_example_file_loads);
    tcase_add_test(docs, test_config_example_file_shows_every_setting_with_help_and_default);
    tcase_add_test(docs, test_config_man_page_is_current);
    tcase_add_test(docs, test_config_man_page_has_an_entry_per_setting);
    tcase_add_test(docs, test_config_man_page_reload_lists_the_restart_only_settings);
    tcase_add_test(docs, test_config_man_page_is_ascii_roff_with_escaped_hyphens);
    suite_add_tcase(s, docs);
    tcase_add_checked_fixture(pg, clean_env, clean_env);
    tcase_add_test(pg, test_pgconfig_defaults_keep_sqlite);
    tcase_add_test(pg, test_pgconfig_values);
    tcase_add_test(pg, test_pgconfig_password_in_url_is_an_error);
    tcase_add_test(pg, test_pgconfig_backend_needs_url_and_readable_password);
    tcase_add_test(pg, test_pgconfig_systemd_credential);
    suite_add_tcase(s, pg);
    tcase_add_checked_fixture(alerts, clean_env, clean_env);
    tcase_add_test(alerts, test_config_alert_thresholds_default_and_list);
    tcase_add_test(alerts, test_config_alert_thresholds_errors);
    suite_add_tcase(s, alerts);
    return s;
}

CHECK_MAIN(config_suite)
