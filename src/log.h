/* log.h - the only way orproxy writes diagnostics.
 *
 * Lines go to stderr, one per call.  Under systemd (JOURNAL_STREAM set) each
 * line carries a "<N>" syslog priority prefix so journald files it at the
 * right level.  Format "json" writes one JSON object per line.  Never pass
 * a key or message content to these functions. */
#ifndef ORP_LOG_H
#define ORP_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* level: "error"|"warn"|"info"|"debug"; format: "text"|"json". */
void log_setup(const char *level, const char *format);
int log_enabled(enum log_level lvl);
/* From now on this thread's lines are batched until log_flush (or until
 * PIPE_BUF bytes collected): an event loop calls log_flush before it sleeps. */
void log_batch_begin(void);
void log_flush(void);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
