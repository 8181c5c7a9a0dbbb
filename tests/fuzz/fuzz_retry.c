/* fuzz_retry.c - Retry-After values and the retry decision.
 *
 * Input: 8 bytes of "now" (kept within 0..2^34 s: time(NULL) is never
 * negative, and year 2514 is far enough), 8 bytes of jitter, three small
 * numbers for attempt/base/max, then the header value (NUL-terminated as
 * curl hands it).  Oracles: a value that parses as an HTTP date gives the
 * same instant when printed back as an IMF-fixdate (gmtime_r in the C
 * locale) and parsed again; delta-seconds give exactly their value in ms
 * (capped); the backoff stays within [0, max_ms] and honours a
 * Retry-After up to max_ms exactly, refusing one above it. */
#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "fuzz.h"
#include "retry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    time_t now = (time_t)(fuzz_u64(&in) & ((1ull << 34) - 1));
    uint64_t rnd = fuzz_u64(&in);
    int attempt = (int)fuzz_byte(&in) - 8;
    long base_ms = (long)(fuzz_byte(&in) << 8 | fuzz_byte(&in)) - 100;
    long max_ms = (long)(fuzz_byte(&in) << 16 | fuzz_byte(&in) << 8 | fuzz_byte(&in)) - 100;
    size_t len;
    char *value = fuzz_rest(&in, &len, 1);
    long ms = retry_after_ms(value, now), at0 = retry_after_ms(value, 0), d;

    FUZZ_CHECK(ms >= -1 && at0 >= -1);
    FUZZ_CHECK((ms < 0) == (at0 < 0));
    if (at0 > 0 && at0 % 1000 == 0 && at0 / 1000 < 253402300800L /* 10000-01-01 */) {
        /* A date (or delta-seconds): print the instant back and reparse. */
        time_t when = (time_t)(at0 / 1000);
        struct tm tm;
        char again[64];
        if (gmtime_r(&when, &tm) != NULL && tm.tm_year + 1900 >= 1000 &&
            strftime(again, sizeof again, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0)
            FUZZ_CHECK(retry_after_ms(again, 0) == at0);
    }
    FUZZ_CHECK(retry_after_ms(NULL, now) == -1);

    d = retry_delay_ms(attempt, base_ms, max_ms, ms, rnd);
    if (ms >= 0)
        FUZZ_CHECK(d == (ms <= max_ms ? ms : -1));
    else if (base_ms <= 0 || max_ms <= 0)
        FUZZ_CHECK(d == 0);
    else
        FUZZ_CHECK(d >= 0 && d <= max_ms && d >= (base_ms < max_ms ? base_ms : max_ms) / 2);

    FUZZ_CHECK(retry_status_retryable((long)rnd) == 0 || (rnd >= 408 && rnd <= 529));
    (void)retry_transport_retryable((int)(rnd & 0xff), (int)(rnd >> 63));
    free(value);
    return 0;
}
