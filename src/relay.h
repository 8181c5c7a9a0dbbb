/* relay.h - a request's response buffer and its one invariant.
 *
 * r->out = [ready][a partial event held back].  Only the first r->ready
 * bytes may go to the client, so an error event or a keep-alive comment
 * is never written inside a half event.  Only relay.c moves out's offsets.
 * The upstream side writes (relay_stream_write, relay_body_write) and
 * ends (relay_ready, relay_fail, relay_end_stream); the client side reads
 * (relay_read, relay_take_body).  Writers wake the reader through the
 * request's ops->wake hook; a reader that drains a paused stream asks the
 * loop to unpause it.  Backpressure is described in doc/DESIGN.md. */
#ifndef ORP_RELAY_H
#define ORP_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* The answer orproxy gives itself (before commit); no wake-up. */
void relay_set_error(struct request *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, and the answer is ready: wake the client side. */
void relay_fail(struct request *r, unsigned status, const char *code, const char *msg);
/* A response (upstream status, headers, body or stream) is ready to queue. */
void relay_ready(struct request *r);

/* The response is a stream of events from now on. */
void relay_start_stream(struct request *r, int64_t now_ms);
enum relay_write { RELAY_OK, RELAY_PAUSE, RELAY_TOO_LARGE, RELAY_NO_MEMORY };
/* Upstream stream bytes: buffered and fed to the SSE parser; complete
 * events become ready.  RELAY_PAUSE: the client is behind, nothing taken. */
enum relay_write relay_stream_write(struct request *r, const char *p, size_t n, int64_t now_ms);
/* A buffered (non-stream) answer's bytes, bounded by max bytes in all. */
enum relay_write relay_body_write(struct request *r, const char *p, size_t n, size_t max);
/* Ends the stream: drops a half-received event, appends the error event
 * (none when code is NULL: a clean end), no more bytes will come. */
void relay_end_stream(struct request *r, unsigned status, const char *code, const char *msg);
/* A keep-alive comment if the stream has been silent for every_ms and sits
 * at an event boundary. */
void relay_keepalive(struct request *r, int64_t now_ms, int64_t every_ms);
/* Before an upstream attempt: nothing of a previous one is kept. */
void relay_reset(struct request *r);

/* The client side: copies up to max ready bytes; 0 when none is ready. */
size_t relay_read(struct request *r, char *out, size_t max);
/* Hands the whole buffered body over (free base with free()). */
void relay_take_body(struct request *r, char **base, const char **head, size_t *len);

#endif
