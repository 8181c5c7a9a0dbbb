/* sse.h - incremental Server-Sent Events framing (pure, no I/O).
 *
 * The relay hands every slice curl gives it (any size, even one byte) to
 * sse_feed().  The parser keeps line state across calls, accepts "\n",
 * "\r\n" and "\r" as line terminators (a "\r\n" split across two slices is
 * one terminator), treats lines starting with ':' as comments, and reports
 * each complete event that carried at least one "data" field.
 *
 * It also tracks the event boundary: p->boundary is the count of bytes fed
 * so far that end at a complete event (just past the blank line that
 * dispatched it).  The relay only releases bytes up to the boundary to the
 * client, so it can always inject its own events (keep-alive, error) at a
 * clean place.  Ownership: the caller owns the struct; sse_free() releases
 * the internal buffer. */
#ifndef ORP_SSE_H
#define ORP_SSE_H

#include <stddef.h>
#include <stdint.h>

/* Called once per dispatched event with >= 1 data line.  data is the
 * concatenation of its data field values joined by '\n' (per the SSE spec:
 * "data:x" and "data: x" both give "x"), NUL-terminated, valid only during
 * the call.  truncated != 0 when the data exceeded max_data bytes; data then
 * holds the first max_data bytes only. */
typedef void (*sse_event_fn)(void *ud, const char *data, size_t len, int truncated);

typedef struct sse_parser {
    sse_event_fn on_event;
    void *ud;
    size_t max_data;    /* cap on retained data per event (default 1 MiB) */
    uint64_t total;     /* bytes fed so far */
    uint64_t boundary;  /* bytes fed so far that end at an event boundary */
    uint64_t events;    /* events dispatched (with data) */
    /* private */
    char *data;         /* current event's data */
    size_t data_len, data_cap;
    int truncated;
    int cr_pending;     /* last byte was '\r' */
    int line_state;     /* see sse.c */
    int line_is_data;   /* current line is a data field */
    int event_nonempty; /* current event has had any line */
    size_t field_len;   /* bytes of the field name seen on this line */
    char field[8];
} sse_parser;

void sse_init(sse_parser *p, sse_event_fn fn, void *ud);
/* Returns 0, or -1 on allocation failure (parser state is then undefined). */
int sse_feed(sse_parser *p, const char *buf, size_t len);
void sse_free(sse_parser *p);

#endif
