/* fuzz_time.c - report_parse_time on arbitrary text: the time words of the
 * admin data routes (since/until), a managed client's expires_at and the
 * report CLI.  (admin_data.c's limit/bucket/by checks are strtoll and
 * strcmp inside functions that read the request; this is their one
 * parser.)
 *
 * Input: 8 bytes of "now" (unix ms, made non-negative), then the text.
 * An accepted time is never before 1970.  A span ("<digits><s|m|h|d|w>")
 * is now minus a whole number of seconds.  A date agrees with gmtime(3):
 * the accepted value, formatted back as YYYY-MM-DDTHH:MM:SS.mmmZ, starts
 * with the input's date (and hour and minute when given) and parses back
 * to the same value. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "report.h"

static void format(int64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    FUZZ_CHECK(gmtime_r(&s, &tm) != NULL);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    int64_t now = (int64_t)(fuzz_u64(&in) >> 1), out = -1, back = -1;
    size_t len;
    char *s = fuzz_rest(&in, &len, 1);
    char buf[64];

    len = strlen(s); /* the text ends at a NUL, as a query argument does */
    if (report_parse_time(s, now, &out) == 0) {
        FUZZ_CHECK(out >= 0);
        if (s[0] >= '0' && s[0] <= '9' && s[len - 1] >= 'a') { /* a span */
            FUZZ_CHECK(out <= now && (now - out) % 1000 == 0);
        } else {
            FUZZ_CHECK(len >= 10 && out < INT64_C(253402300800000)); /* before year 10000 */
            format(out, buf, sizeof buf);
            FUZZ_CHECK(memcmp(buf, s, 10) == 0);
            if (len >= 16)
                FUZZ_CHECK(memcmp(buf + 11, s + 11, 5) == 0);
            FUZZ_CHECK(report_parse_time(buf, now, &back) == 0 && back == out);
        }
    } else {
        FUZZ_CHECK(out == -1); /* untouched */
    }
    free(s);
    return 0;
}
