/* relay.c - the response buffer: see relay.h for the invariant. */
#include "relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apierr.h"

#define PAUSE_ABOVE (256 * 1024)           /* client-side backlog that pauses upstream */
#define UNPAUSE_BELOW (64 * 1024)          /* ... and that resumes it */
#define MAX_EVENT_BYTES (16 * 1024 * 1024) /* one SSE event larger than this is refused */

void relay_set_error(struct request *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(r->local_msg);
    r->local_msg = strdup(msg);
    r->local_status = status;
    r->local_code = code;
}

/* An answer for a client still waiting for one; in GONE, AWAITED or
 * FINISHED nobody will read it, and the phase stays. */
void relay_ready(struct request *r)
{
    if (r->phase == PHASE_RECEIVING || r->phase == PHASE_WAITING)
        request_phase(r, PHASE_READY);
    r->ops->wake(r);
}

void relay_fail(struct request *r, unsigned status, const char *code, const char *msg)
{
    relay_set_error(r, status, code, "%s", msg);
    relay_ready(r);
}

void relay_start_stream(struct request *r, int64_t now_ms)
{
    r->streaming = 1;
    r->last_relay_ms = now_ms;
    relay_ready(r);
}

enum relay_write relay_stream_write(struct request *r, const char *p, size_t n, int64_t now_ms)
{
    uint64_t before = r->sse.boundary;

    if (r->ready > PAUSE_ABOVE) {
        r->paused = 1;
        return RELAY_PAUSE;
    }
    if (r->sse.total - r->sse.boundary + n > MAX_EVENT_BYTES)
        return RELAY_TOO_LARGE;
    if (buf_append(&r->out, p, n) < 0 || sse_feed(&r->sse, p, n) < 0)
        return RELAY_NO_MEMORY;
    r->ready += (size_t)(r->sse.boundary - before);
    if (r->ready > 0) {
        r->last_relay_ms = now_ms;
        r->ops->wake(r);
    }
    return RELAY_OK;
}

enum relay_write relay_body_write(struct request *r, const char *p, size_t n, size_t max)
{
    if (buf_used(&r->out) + n > max)
        return RELAY_TOO_LARGE;
    return buf_append(&r->out, p, n) < 0 ? RELAY_NO_MEMORY : RELAY_OK;
}

void relay_end_stream(struct request *r, unsigned status, const char *code, const char *msg)
{
    r->out.len = r->out.off + r->ready; /* drop a half-received event */
    if (code != NULL) {
        char *ev = apierr_sse_event(status, code, msg);
        if (ev != NULL && buf_appendz(&r->out, ev) == 0)
            r->ready += strlen(ev);
        free(ev);
    }
    r->upstream_done = 1;
    r->ops->wake(r);
}

void relay_keepalive(struct request *r, int64_t now_ms, int64_t every_ms)
{
    static const char ping[] = ": ping\n\n";

    if (!r->streaming || r->upstream_done ||
        (r->phase != PHASE_READY && r->phase != PHASE_RESPONDING) ||
        now_ms - r->last_relay_ms < every_ms || r->sse.total != r->sse.boundary)
        return;
    if (buf_append(&r->out, ping, sizeof ping - 1) == 0) {
        r->ready += sizeof ping - 1;
        r->last_relay_ms = now_ms;
        r->ops->wake(r);
    }
}

void relay_reset(struct request *r)
{
    buf_reset(&r->out);
    r->ready = 0;
}

size_t relay_read(struct request *r, char *out, size_t max)
{
    size_t n = r->ready < max ? r->ready : max;

    if (n == 0)
        return 0;
    memcpy(out, buf_head(&r->out), n);
    buf_consume(&r->out, n);
    r->ready -= n;
    if (r->paused && r->ready < UNPAUSE_BELOW) {
        r->want_unpause = 1;
        loop_defer(r->loop, &r->task);
    }
    return n;
}

void relay_take_body(struct request *r, char **base, const char **head, size_t *len)
{
    *base = r->out.data;
    *head = buf_head(&r->out);
    *len = buf_used(&r->out);
    memset(&r->out, 0, sizeof r->out);
}
