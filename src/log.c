/* log.c - stderr logging, journald-aware.  See log.h.
 *
 * Each line is built in a local buffer and written with one write(2), so
 * lines from different worker threads never interleave.  A worker thread
 * batches instead (log_batch_begin): its lines collect in a thread-local
 * buffer of at most PIPE_BUF bytes, written at once when the loop is about
 * to sleep (log_flush) or when full.  Under load that is one write for many
 * request lines instead of one each; a line is never held longer than one
 * pass of the loop, and a write of at most PIPE_BUF bytes to a pipe is
 * atomic, so batches from different threads do not interleave either. */
#include "log.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Atomics: a reload (main thread) changes these while workers log. */
static _Atomic int cur_level = LOG_LVL_INFO;
static _Atomic int use_json;
static _Atomic int use_prefix = -1;

static _Thread_local int batching;
static _Thread_local size_t batch_len;
static _Thread_local char batch[PIPE_BUF];

void log_batch_begin(void)
{
    batching = 1;
}

void log_flush(void)
{
    if (batch_len > 0) {
        ssize_t w = write(STDERR_FILENO, batch, batch_len);
        (void)w;
        batch_len = 0;
    }
}

static void put_line(const char *line, size_t len)
{
    if (!batching) {
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
        return;
    }
    if (batch_len + len > sizeof batch)
        log_flush();
    if (len > sizeof batch) {
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
        return;
    }
    memcpy(batch + batch_len, line, len);
    batch_len += len;
}

void log_setup(const char *level, const char *format)
{
    if (level != NULL) {
        if (strcmp(level, "error") == 0)
            cur_level = LOG_LVL_ERROR;
        else if (strcmp(level, "warn") == 0)
            cur_level = LOG_LVL_WARN;
        else if (strcmp(level, "debug") == 0)
            cur_level = LOG_LVL_DEBUG;
        else
            cur_level = LOG_LVL_INFO;
    }
    if (format != NULL)
        use_json = strcmp(format, "json") == 0;
}

int log_enabled(enum log_level lvl)
{
    return (int)lvl <= cur_level;
}

/* Length (1 to 4) of the well-formed UTF-8 character at s, 0 if s does not
 * start one.  Messages may quote what a client sent, and neither a JSON log
 * nor a terminal should get invalid UTF-8 from it.  Stops at the NUL: it is
 * never a continuation byte. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

static void json_escape_into(char *out, size_t cap, size_t *pos, const char *s)
{
    while (*s != '\0' && *pos + 7 < cap) {
        unsigned char c = (unsigned char)*s;
        size_t n = utf8_len((const unsigned char *)s);
        if (c == '"' || c == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            *pos += (size_t)snprintf(out + *pos, cap - *pos, "\\u%04x", c);
        } else if (n == 0) {
            memcpy(out + *pos, "\\ufffd", 6); /* U+FFFD for a byte that is not UTF-8 */
            *pos += 6;
        } else {
            memcpy(out + *pos, s, n);
            *pos += n;
            s += n;
            continue;
        }
        s++;
    }
}

/* The text format: control bytes and bytes that are not UTF-8 become '?', so
 * a line can neither fake another line nor send escape sequences to a
 * terminal. */
static void text_sanitize(char *s)
{
    while (*s != '\0') {
        unsigned char c = (unsigned char)*s;
        size_t n = utf8_len((const unsigned char *)s);
        if (c < 0x20 || c == 0x7f || n == 0) {
            *s++ = '?';
            continue;
        }
        s += n;
    }
}

static void log_emit(enum log_level lvl, const char *fmt, va_list ap)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {3, 4, 6, 7};
    char msg[4096];
    char line[8192];
    size_t pos = 0;

    if ((int)lvl > cur_level)
        return;
    if (use_prefix < 0)
        use_prefix = getenv("JOURNAL_STREAM") != NULL;
    vsnprintf(msg, sizeof msg, fmt, ap);

    if (use_prefix)
        pos += (size_t)snprintf(line, sizeof line, "<%d>", prio[lvl]);
    if (use_json) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        pos += (size_t)snprintf(line + pos, sizeof line - pos,
                                "{\"ts\":%lld.%03ld,\"level\":\"%s\",\"msg\":\"",
                                (long long)ts.tv_sec, ts.tv_nsec / 1000000, names[lvl]);
        json_escape_into(line, sizeof line - 3, &pos, msg);
        line[pos++] = '"';
        line[pos++] = '}';
    } else {
        text_sanitize(msg);
        if (!use_prefix) {
            /* The stamp changes once a second: format it once a second. */
            static _Thread_local time_t stamp_at = -1;
            static _Thread_local char stamp[32];
            time_t now = time(NULL);
            if (now != stamp_at) {
                struct tm tm;
                gmtime_r(&now, &tm);
                strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &tm);
                stamp_at = now;
            }
            size_t sl = strlen(stamp);
            memcpy(line + pos, stamp, sl);
            pos += sl;
        }
        pos += (size_t)snprintf(line + pos, sizeof line - pos, "%s: %s", names[lvl], msg);
        if (pos > sizeof line - 2)
            pos = sizeof line - 2;
    }
    line[pos++] = '\n';
    put_line(line, pos);
}

#define LOG_FN(name, lvl)                      \
    void name(const char *fmt, ...)            \
    {                                          \
        va_list ap;                            \
        va_start(ap, fmt);                     \
        log_emit(lvl, fmt, ap);                \
        va_end(ap);                            \
    }

LOG_FN(log_error, LOG_LVL_ERROR)
LOG_FN(log_warn, LOG_LVL_WARN)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_debug, LOG_LVL_DEBUG)
