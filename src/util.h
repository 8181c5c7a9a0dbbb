/* util.h - the small helpers every module needs once: clocks and the
 * error-message out-parameter.
 *
 * Two clocks, never mixed: wall time (CLOCK_REALTIME) for what is shown or
 * stored (ledger timestamps, budget periods, Retry-After dates), and
 * monotonic time for durations and deadlines, which must not jump when the
 * clock is set. */
#ifndef ORP_UTIL_H
#define ORP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch (wall clock). */
int64_t util_wall_ms(void);
/* Monotonic nanoseconds and milliseconds (an arbitrary origin). */
int64_t util_mono_ns(void);
int64_t util_mono_ms(void);
/* The wall-clock instant ms from now, for pthread_cond_timedwait (whose
 * condition variables use CLOCK_REALTIME by default). */
struct timespec util_wall_after_ms(int64_t ms);

/* Writes a printf-style message into err[errlen], if err is not NULL. */
void util_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* This instance's name for ledger rows, leases and alerts: configured (the
 * instance.name setting) when not "", else "hostname:port". */
void util_instance_name(const char *configured, int port, char *buf, size_t n);

#endif
