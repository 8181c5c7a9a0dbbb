/* retry.c - the retry policy.  See retry.h.
 *
 * Retry-After dates are parsed by hand: strptime depends on the locale and
 * an HTTP date is always English and GMT (RFC 9110 5.6.7 names three forms
 * a recipient must accept). */
#include "retry.h"

#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <string.h>

int retry_status_retryable(long status)
{
    switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
    case 524:
    case 529:
        return 1;
    default:
        return 0;
    }
}

int retry_transport_retryable(int curlcode, int got_bytes)
{
    if (got_bytes)
        return 0;
    switch (curlcode) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PARTIAL_FILE:
        return 1;
    default:
        return 0;
    }
}

static int month_index(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (strncmp(s, months + 3 * i, 3) == 0)
            return i;
    return -1;
}

/* Reads exactly n digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int hms(const char **p, int *h, int *m, int *s)
{
    if (digits(p, 2, h) < 0 || **p != ':')
        return -1;
    (*p)++;
    if (digits(p, 2, m) < 0 || **p != ':')
        return -1;
    (*p)++;
    if (digits(p, 2, s) < 0)
        return -1;
    return *h < 24 && *m < 60 && *s < 61 ? 0 : -1;
}

static int expect(const char **p, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0)
        return -1;
    *p += n;
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Parses the three HTTP-date forms into unix seconds; -1 if none fits. */
static long long parse_http_date(const char *s)
{
    const char *p = s, *comma = strchr(s, ',');
    int d, mon, y, h, mi, sec;

    if (comma != NULL) {
        p = comma + 1;
        if (*p++ != ' ')
            return -1;
        if (comma - s == 3) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            if (digits(&p, 2, &d) < 0 || *p++ != ' ' || (mon = month_index(p)) < 0)
                return -1;
            p += 3;
            if (*p++ != ' ' || digits(&p, 4, &y) < 0 || *p++ != ' ')
                return -1;
        } else { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
            if (digits(&p, 2, &d) < 0 || *p++ != '-' || (mon = month_index(p)) < 0)
                return -1;
            p += 3;
            if (*p++ != '-' || digits(&p, 2, &y) < 0 || *p++ != ' ')
                return -1;
            y += y < 70 ? 2000 : 1900;
        }
        if (hms(&p, &h, &mi, &sec) < 0 || expect(&p, " GMT") < 0)
            return -1;
    } else { /* asctime: Sun Nov  6 08:49:37 1994 */
        if (strlen(s) < 24 || s[3] != ' ')
            return -1;
        p = s + 4;
        if ((mon = month_index(p)) < 0)
            return -1;
        p += 3;
        if (*p++ != ' ')
            return -1;
        if (*p == ' ') {
            p++;
            if (digits(&p, 1, &d) < 0)
                return -1;
        } else if (digits(&p, 2, &d) < 0) {
            return -1;
        }
        if (*p++ != ' ' || hms(&p, &h, &mi, &sec) < 0 || *p++ != ' ' || digits(&p, 4, &y) < 0)
            return -1;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' || d < 1 || d > 31)
        return -1;
    return days_from_civil(y, mon + 1, d) * 86400 + h * 3600 + mi * 60 + sec;
}

long retry_after_ms(const char *value, time_t now)
{
    const char *p = value;
    long long when;

    if (value == NULL)
        return -1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (isdigit((unsigned char)*p)) {
        long long secs = 0;
        for (; isdigit((unsigned char)*p); p++)
            if (secs < 100000000) /* beyond ~3 years: clamp, never overflow */
                secs = secs * 10 + (*p - '0');
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0')
            return -1;
        return secs * 1000 > LONG_MAX ? LONG_MAX : (long)(secs * 1000);
    }
    when = parse_http_date(p);
    if (when < 0)
        return -1;
    if (when <= (long long)now)
        return 0;
    return (when - now) * 1000 > LONG_MAX ? LONG_MAX : (long)((when - now) * 1000);
}

long retry_delay_ms(int attempt, long base_ms, long max_ms, long retry_after, uint64_t rnd)
{
    long d;

    if (retry_after >= 0)
        return retry_after <= max_ms ? retry_after : -1;
    if (base_ms <= 0 || max_ms <= 0)
        return 0;
    d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    /* Equal jitter: at least half the backoff, spread over the rest, so a
     * crowd of clients does not retry in lock-step. */
    return d / 2 + (long)(rnd % (uint64_t)(d - d / 2 + 1));
}
