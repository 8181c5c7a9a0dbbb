/* Unit tests for utf8.c: which bytes count as valid UTF-8 and clean names,
 * and copies into fixed-size fields that never end in half a character. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "utf8.h"

START_TEST(test_utf8_valid_follows_rfc3629)
{
    ck_assert_int_eq(utf8_valid("", 0), 1);
    ck_assert_int_eq(utf8_valid("abc", 3), 1);
    ck_assert_int_eq(utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9), 1);
    ck_assert_int_eq(utf8_valid("\xf4\x8f\xbf\xbf", 4), 1);    /* U+10FFFF */
    ck_assert_int_eq(utf8_valid("\xff", 1), 0);
    ck_assert_int_eq(utf8_valid("\x80", 1), 0);                /* lone continuation */
    ck_assert_int_eq(utf8_valid("\xc3", 1), 0);                /* cut short */
    ck_assert_int_eq(utf8_valid("\xc0\xaf", 2), 0);            /* overlong '/' */
    ck_assert_int_eq(utf8_valid("\xe0\x80\xaf", 3), 0);        /* overlong */
    ck_assert_int_eq(utf8_valid("\xed\xa0\x80", 3), 0);        /* surrogate */
    ck_assert_int_eq(utf8_valid("\xf4\x90\x80\x80", 4), 0);    /* above U+10FFFF */
    ck_assert_int_eq(utf8_valid("\xe2\x82\x41", 3), 0);        /* bad continuation */
}
END_TEST

START_TEST(test_utf8_clean_name_refuses_controls)
{
    ck_assert_int_eq(utf8_is_clean_name("openai/gpt-4o", 13), 1);
    ck_assert_int_eq(utf8_is_clean_name("caf\xc3\xa9 \xc2\xa0x", 9), 1); /* NBSP is not a control */
    ck_assert_int_eq(utf8_is_clean_name("a\nb", 3), 0);
    ck_assert_int_eq(utf8_is_clean_name("a\x1b[0m", 5), 0);
    ck_assert_int_eq(utf8_is_clean_name("a\x7f", 2), 0);
    ck_assert_int_eq(utf8_is_clean_name("a\xc2\x85", 3), 0); /* NEL, a C1 control */
    ck_assert_int_eq(utf8_is_clean_name("a\xff", 2), 0);
}
END_TEST

START_TEST(test_utf8_copy_cuts_on_character_boundary)
{
    char dst[8];
    /* "abcde" + 'é' (2 bytes) + '€' (3 bytes): 7 bytes of room. */
    utf8_copy(dst, sizeof dst, "abcde\xc3\xa9\xe2\x82\xac");
    ck_assert_str_eq(dst, "abcde\xc3\xa9");
    utf8_copy(dst, sizeof dst, "abcdef\xc3\xa9"); /* 'é' would need bytes 7 and 8 */
    ck_assert_str_eq(dst, "abcdef");
    utf8_copy(dst, sizeof dst, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80"); /* two 4-byte emoji */
    ck_assert_str_eq(dst, "\xf0\x9f\x98\x80");
    utf8_copy(dst, sizeof dst, "abcdefg");
    ck_assert_str_eq(dst, "abcdefg");
    utf8_copy(dst, 1, "abc");
    ck_assert_str_eq(dst, "");
    utf8_copy(dst, sizeof dst, NULL);
    ck_assert_str_eq(dst, "");
}
END_TEST

START_TEST(test_utf8_copy_replaces_invalid_bytes)
{
    char dst[16], *dup;
    utf8_copy(dst, sizeof dst, "m\xff/\xc3x\xed\xa0\x80");
    ck_assert_str_eq(dst, "m?/?x???");
    ck_assert_int_eq(utf8_valid(dst, strlen(dst)), 1);
    dup = utf8_sanitize_dup("bad\xc0\xaf\xc3\xa9");
    ck_assert_str_eq(dup, "bad??\xc3\xa9");
    free(dup);
}
END_TEST

static Suite *utf8_suite(void)
{
    Suite *s = suite_create("utf8");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_utf8_valid_follows_rfc3629);
    tcase_add_test(tc, test_utf8_clean_name_refuses_controls);
    tcase_add_test(tc, test_utf8_copy_cuts_on_character_boundary);
    tcase_add_test(tc, test_utf8_copy_replaces_invalid_bytes);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(utf8_suite)
