/* retry.h - the retry policy: what is safe to retry and how long to wait.
 *
 * Pure functions, no I/O; the relay asks them before the response is
 * committed to the client (nothing is retried after that). */
#ifndef ORP_RETRY_H
#define ORP_RETRY_H

#include <stdint.h>
#include <time.h>

/* 408, 429, 500, 502, 503, 504, 524, 529 -> 1; anything else -> 0. */
int retry_status_retryable(long status);

/* Transport failure (a CURLcode value) that happened before any response
 * byte arrived: connect / resolve / TLS-connect failures, timeouts, send and
 * receive errors, empty reply -> 1.  If got_bytes != 0 -> 0 always. */
int retry_transport_retryable(int curlcode, int got_bytes);

/* Parses a Retry-After value: delta-seconds ("120") or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT", also RFC 850 and asctime forms).
 * Returns milliseconds to wait from now (0 for a date in the past), or -1
 * when the value is absent (NULL) or invalid. */
long retry_after_ms(const char *value, time_t now);

/* Delay before the next attempt, after attempt number `attempt` (1-based)
 * failed.  Without Retry-After (retry_after < 0): exponential backoff
 * d = min(max_ms, base_ms * 2^(attempt-1)) with equal jitter, i.e. a value
 * in [d/2, d] chosen by rnd.  With Retry-After: that value when it is
 * <= max_ms; when it is larger, returns -1: do not retry, relay the
 * upstream answer (its Retry-After tells the client when to come back). */
long retry_delay_ms(int attempt, long base_ms, long max_ms, long retry_after, uint64_t rnd);

#endif
