/* Unit tests for retry.c: what is retried, how long to wait, Retry-After. */
#include <check.h>
#include <curl/curl.h>

#include "check_main.h"
#include "retry.h"

START_TEST(test_retry_retryable_statuses)
{
    static const long yes[] = {408, 429, 500, 502, 503, 504, 524, 529};
    static const long no[] = {200, 201, 301, 400, 401, 402, 403, 404, 405, 409, 413, 422, 501, 505};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        ck_assert_msg(retry_status_retryable(yes[i]), "%ld", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!retry_status_retryable(no[i]), "%ld", no[i]);
}
END_TEST

START_TEST(test_retry_transport_before_any_byte_only)
{
    static const int yes[] = {CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST,
                              CURLE_OPERATION_TIMEDOUT, CURLE_SEND_ERROR, CURLE_RECV_ERROR,
                              CURLE_GOT_NOTHING, CURLE_SSL_CONNECT_ERROR};
    static const int no[] = {CURLE_OK, CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK,
                             CURLE_OUT_OF_MEMORY, CURLE_URL_MALFORMAT};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        ck_assert_msg(retry_transport_retryable(yes[i], 0), "%d", yes[i]);
        ck_assert_msg(!retry_transport_retryable(yes[i], 1), "%d after bytes", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        ck_assert_msg(!retry_transport_retryable(no[i], 0), "%d", no[i]);
}
END_TEST

START_TEST(test_retry_after_seconds)
{
    ck_assert_int_eq(retry_after_ms("120", 0), 120000);
    ck_assert_int_eq(retry_after_ms(" 3 ", 0), 3000);
    ck_assert_int_eq(retry_after_ms("0", 0), 0);
    ck_assert(retry_after_ms("99999999999999999999", 0) > 0); /* clamped, no overflow */
}
END_TEST

START_TEST(test_retry_after_http_dates)
{
    /* 784111777 = Sun, 06 Nov 1994 08:49:37 GMT */
    time_t now = 784111777 - 30;
    ck_assert_int_eq(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", now), 30000);
    ck_assert_int_eq(retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", now), 30000);
    ck_assert_int_eq(retry_after_ms("Sun Nov  6 08:49:37 1994", now), 30000);
    ck_assert_int_eq(retry_after_ms("Tue, 29 Feb 2028 00:00:00 GMT", 1835395200 - 1), 1000);
}
END_TEST

START_TEST(test_retry_after_past_date_is_zero)
{
    ck_assert_int_eq(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 1700000000), 0);
}
END_TEST

START_TEST(test_retry_after_invalid)
{
    static const char *bad[] = {"", "  ", "-5", "12abc", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37",
                                "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
                                "Sun, 06 Nov 1994 25:49:37 GMT"};
    ck_assert_int_eq(retry_after_ms(NULL, 0), -1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(retry_after_ms(bad[i], 0) == -1, "'%s'", bad[i]);
}
END_TEST

START_TEST(test_retry_backoff_grows_and_caps)
{
    /* rnd = 0 gives the lower bound d/2; a huge rnd stays within d. */
    ck_assert_int_eq(retry_delay_ms(1, 1000, 10000, -1, 0), 500);
    ck_assert_int_eq(retry_delay_ms(2, 1000, 10000, -1, 0), 1000);
    ck_assert_int_eq(retry_delay_ms(3, 1000, 10000, -1, 0), 2000);
    ck_assert_int_eq(retry_delay_ms(5, 1000, 10000, -1, 0), 5000); /* 16000 capped to 10000 */
    ck_assert_int_eq(retry_delay_ms(64, 1000, 10000, -1, 0), 5000); /* no overflow */
    ck_assert_int_eq(retry_delay_ms(1, 0, 10000, -1, 12345), 0);
}
END_TEST

START_TEST(test_retry_jitter_within_bounds)
{
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 100000; i++) {
        long d;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d = retry_delay_ms(3, 1000, 10000, -1, x);
        ck_assert(d >= 2000 && d <= 4000);
    }
}
END_TEST

START_TEST(test_retry_honours_retry_after_within_cap)
{
    ck_assert_int_eq(retry_delay_ms(1, 1000, 10000, 7000, 999), 7000);
    ck_assert_int_eq(retry_delay_ms(1, 1000, 10000, 0, 999), 0);
    ck_assert_int_eq(retry_delay_ms(1, 1000, 10000, 10000, 999), 10000);
}
END_TEST

START_TEST(test_retry_after_beyond_cap_means_no_retry)
{
    ck_assert_int_eq(retry_delay_ms(1, 1000, 10000, 10001, 0), -1);
    ck_assert_int_eq(retry_delay_ms(1, 1000, 10000, 3600000, 0), -1);
}
END_TEST

static Suite *retry_suite(void)
{
    Suite *s = suite_create("retry");
    TCase *tc = tcase_create("policy");
    tcase_add_test(tc, test_retry_retryable_statuses);
    tcase_add_test(tc, test_retry_transport_before_any_byte_only);
    tcase_add_test(tc, test_retry_after_seconds);
    tcase_add_test(tc, test_retry_after_http_dates);
    tcase_add_test(tc, test_retry_after_past_date_is_zero);
    tcase_add_test(tc, test_retry_after_invalid);
    tcase_add_test(tc, test_retry_backoff_grows_and_caps);
    tcase_add_test(tc, test_retry_jitter_within_bounds);
    tcase_add_test(tc, test_retry_honours_retry_after_within_cap);
    tcase_add_test(tc, test_retry_after_beyond_cap_means_no_retry);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(retry_suite)
