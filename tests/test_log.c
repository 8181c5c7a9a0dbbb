/* Unit tests for log.c: whatever bytes a message quotes, a log line carries
 * no raw control byte and no invalid UTF-8, in either format. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "log.h"

/* Runs log_info("%s", msg) with stderr redirected to a pipe; returns what
 * was written (malloc'd, NUL-terminated). */
static char *capture(const char *format, const char *msg)
{
    int p[2], saved = dup(STDERR_FILENO);
    static char out[8192];
    ssize_t n;

    ck_assert_int_eq(pipe(p), 0);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    log_setup("info", format);
    log_info("msg=%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = read(p[0], out, sizeof out - 1);
    close(p[0]);
    ck_assert_int_gt(n, 0);
    out[n] = '\0';
    return strdup(out);
}

/* Only printable ASCII, the final newline, and the one well-formed "é". */
static void assert_clean(const char *line)
{
    for (const unsigned char *s = (const unsigned char *)line; *s != '\0'; s++) {
        if (s[0] == 0xc3 && s[1] == 0xa9) {
            s++;
            continue;
        }
        ck_assert_msg(*s == '\n' || (*s >= 0x20 && *s < 0x7f), "raw byte 0x%02x in: %s", *s, line);
    }
}

static const char hostile[] = "a\x1b[2J\x7f\xff\xc3\x28\xe2\x82 \xc3\xa9 \xed\xa0\x80 \xf4\x90\x80\x80 z";

START_TEST(test_log_json_escapes_control_bytes_and_invalid_utf8)
{
    char *line = capture("json", hostile);
    assert_clean(line);
    ck_assert_ptr_nonnull(strstr(line, "\\u001b[2J\\u007f\\ufffd\\ufffd(\\ufffd\\ufffd \xc3\xa9 "));
    ck_assert_ptr_nonnull(strstr(line, " z\"}\n"));
    free(line);
}
END_TEST

START_TEST(test_log_text_replaces_control_bytes_and_invalid_utf8)
{
    char *line = capture("text", hostile);
    assert_clean(line);
    ck_assert_ptr_nonnull(strstr(line, "msg=a\?[2J\?\?\?(\?\? \xc3\xa9 \?\?\? \?\?\?\? z\n"));
    free(line);
}
END_TEST

START_TEST(test_log_keeps_valid_utf8)
{
    char *line = capture("json", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    ck_assert_ptr_nonnull(strstr(line, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}"));
    free(line);
    line = capture("text", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    ck_assert_ptr_nonnull(strstr(line, "msg=caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n"));
    free(line);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("escaping");
    tcase_add_test(tc, test_log_json_escapes_control_bytes_and_invalid_utf8);
    tcase_add_test(tc, test_log_text_replaces_control_bytes_and_invalid_utf8);
    tcase_add_test(tc, test_log_keeps_valid_utf8);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(log_suite)
