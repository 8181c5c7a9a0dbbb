/* test_pgconfig.c - the PostgreSQL ledger's settings (ledger.backend,
 * ledger.postgresql_url, ledger.postgresql_password_file, instance.name):
 * defaults, the errors a user sees, and systemd's credential. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "config.h"

static char err[1024];
static char conf_path[64];

static void clean_env(void)
{
    unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("STATE_DIRECTORY");
}

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

/* config_load of "state_dir = ...;" + text; err holds the message. */
static int load(const char *text, struct orp_config *cfg)
{
    char full[2048];
    int rc;
    snprintf(full, sizeof full, "state_dir = \"/tmp\";\n%s", text);
    write_file(conf_path, sizeof conf_path, full);
    rc = config_load(conf_path, cfg, err, sizeof err);
    unlink(conf_path);
    return rc;
}

static void assert_error(const char *text, int line, const char *msg)
{
    struct orp_config cfg;
    char expect[1200];
    ck_assert_int_eq(load(text, &cfg), -1);
    snprintf(expect, sizeof expect, "%s:%d: %s", conf_path, line, msg);
    ck_assert_str_eq(err, expect);
    config_free(&cfg);
}

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
    assert_error("ledger = { postgresql_url = \"postgresql://u:hunter2@h/db\"; };\n", 2,
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
    assert_error("ledger = { backend = \"postgresql\"; };\n", 2,
                 "ledger.backend = \"postgresql\" needs ledger.postgresql_url");
    assert_error("ledger = { backend = \"postgresql\"; postgresql_url = \"postgresql://u@h/d\";\n"
                 " postgresql_password_file = \"/nonexistent/pw\"; };\n",
                 3,
                 "ledger.postgresql_password_file: cannot read '/nonexistent/pw': No such file "
                 "or directory");
    assert_error("ledger = { backend = \"mysql\"; };\n", 2,
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

static Suite *pgconfig_suite(void)
{
    Suite *s = suite_create("pgconfig");
    TCase *tc = tcase_create("settings");

    tcase_add_checked_fixture(tc, clean_env, clean_env);
    tcase_add_test(tc, test_pgconfig_defaults_keep_sqlite);
    tcase_add_test(tc, test_pgconfig_values);
    tcase_add_test(tc, test_pgconfig_password_in_url_is_an_error);
    tcase_add_test(tc, test_pgconfig_backend_needs_url_and_readable_password);
    tcase_add_test(tc, test_pgconfig_systemd_credential);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(pgconfig_suite)
