/* report_parse.c - the words a report is asked with: time bounds (an age
 * such as "7d" or "12h", or a UTC date "2025-11-01[T12:00[:30[.250]]][Z]")
 * and output formats.  See report.h.  Pure: times are UTC whatever TZ
 * says, computed from day numbers, with now passed in. */
#include "report.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so no timegm() and no TZ dependence. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* "<digits><unit>" before now_ms. */
static int parse_relative(const char *s, int64_t now_ms, int64_t *out_ms)
{
    int64_t n = 0, unit;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (INT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (*p - '0');
    }
    switch (*p) {
    case 's': unit = 1000; break;
    case 'm': unit = 60 * 1000; break;
    case 'h': unit = 3600 * 1000; break;
    case 'd': unit = INT64_C(86400) * 1000; break;
    case 'w': unit = INT64_C(7) * 86400 * 1000; break;
    default: return -1;
    }
    if (p[1] != '\0' || n > INT64_MAX / unit || n * unit > now_ms)
        return -1;
    *out_ms = now_ms - n * unit;
    return 0;
}

/* YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,3}]][Z]], always UTC. */
static int parse_absolute(const char *s, int64_t *out_ms)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;

    if (digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 || *p++ != '-' ||
        digits(&p, 2, &d) < 0)
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0)
            return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec) < 0)
                return -1;
            if (*p == '.') {
                int n = 0, scale = 100;
                for (p++; *p >= '0' && *p <= '9' && n < 3; p++, n++, scale /= 10)
                    ms += (*p - '0') * scale;
                if (n == 0)
                    return -1;
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return -1;
        if (*p == 'Z')
            p++;
    }
    if (*p != '\0')
        return -1;
    *out_ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * INT64_C(60000) +
              sec * INT64_C(1000) + ms;
    return 0;
}

int report_parse_time(const char *s, int64_t now_ms, int64_t *out_ms)
{
    if (s == NULL || *s == '\0' || out_ms == NULL)
        return -1;
    if (parse_relative(s, now_ms, out_ms) == 0)
        return 0;
    return parse_absolute(s, out_ms);
}

int report_parse_format(const char *s, enum report_format *out)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "table") == 0)
        *out = REPORT_TABLE;
    else if (strcmp(s, "json") == 0)
        *out = REPORT_JSON;
    else if (strcmp(s, "csv") == 0)
        *out = REPORT_CSV;
    else
        return -1;
    return 0;
}
