/* sse.c - incremental SSE framing.  See sse.h.
 *
 * A small state machine over bytes, resumable at any byte: where a line
 * stands (start, field name, value start, data value, ignored rest) and
 * whether the last byte was a CR (so a CRLF split across two slices counts
 * once).  Data values and ignored lines are scanned in bulk up to the next
 * line terminator, so the per-byte work is a comparison, and the only
 * allocation is the event's data buffer, which grows geometrically and is
 * reused for every event of the stream. */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

enum { LS_START, LS_FIELD, LS_VALUE_START, LS_DATA, LS_IGNORE };

#define DEFAULT_MAX_DATA (1024 * 1024)

void sse_init(sse_parser *p, sse_event_fn fn, void *ud)
{
    memset(p, 0, sizeof *p);
    p->on_event = fn;
    p->ud = ud;
    p->max_data = DEFAULT_MAX_DATA;
}

void sse_free(sse_parser *p)
{
    free(p->data);
    p->data = NULL;
    p->data_len = p->data_cap = 0;
}

static int append(sse_parser *p, const char *s, size_t n)
{
    if (p->truncated)
        return 0;
    if (p->data_len + n > p->max_data) {
        n = p->max_data - p->data_len;
        p->truncated = 1;
    }
    if (p->data_len + n + 1 > p->data_cap) {
        size_t cap = p->data_cap ? p->data_cap : 256;
        char *d;
        while (cap < p->data_len + n + 1)
            cap *= 2;
        d = realloc(p->data, cap);
        if (d == NULL)
            return -1;
        p->data = d;
        p->data_cap = cap;
    }
    memcpy(p->data + p->data_len, s, n);
    p->data_len += n;
    return 0;
}

/* A new data field begins: values of one event are joined with '\n'. */
static int start_data_line(sse_parser *p)
{
    int rc = 0;
    if (p->line_is_data)
        rc = append(p, "\n", 1);
    p->line_is_data = 1; /* here: "the event has data" */
    return rc;
}

static int field_is_data(const sse_parser *p)
{
    return p->field_len == 4 && memcmp(p->field, "data", 4) == 0;
}

static int end_of_line(sse_parser *p)
{
    switch (p->line_state) {
    case LS_START: /* blank line: dispatch */
        if (p->line_is_data) {
            if (append(p, "", 0) < 0)
                return -1;
            p->data[p->data_len] = '\0';
            p->events++;
            if (p->on_event != NULL)
                p->on_event(p->ud, p->data, p->data_len, p->truncated);
        }
        p->data_len = 0;
        p->truncated = 0;
        p->line_is_data = 0;
        p->event_nonempty = 0;
        p->boundary = p->total;
        break;
    case LS_FIELD: /* "data" alone is a data field with an empty value */
        if (field_is_data(p) && start_data_line(p) < 0)
            return -1;
        p->event_nonempty = 1;
        break;
    default:
        p->event_nonempty = 1;
        break;
    }
    p->line_state = LS_START;
    p->field_len = 0;
    return 0;
}

static size_t scan_to_eol(const char *buf, size_t i, size_t len)
{
    while (i < len && buf[i] != '\n' && buf[i] != '\r')
        i++;
    return i;
}

int sse_feed(sse_parser *p, const char *buf, size_t len)
{
    size_t i = 0;

    while (i < len) {
        char c = buf[i];

        if (p->cr_pending) {
            p->cr_pending = 0;
            if (c == '\n') { /* second half of a CRLF */
                i++;
                p->total++;
                if (p->boundary == p->total - 1)
                    p->boundary = p->total;
                continue;
            }
        }
        if (p->line_state == LS_DATA || p->line_state == LS_IGNORE) {
            size_t j = scan_to_eol(buf, i, len);
            if (p->line_state == LS_DATA && j > i && append(p, buf + i, j - i) < 0)
                return -1;
            p->total += j - i;
            i = j;
            if (i == len)
                break;
            c = buf[i];
        }
        i++;
        p->total++;
        if (c == '\n' || c == '\r') {
            p->cr_pending = c == '\r';
            if (end_of_line(p) < 0)
                return -1;
            continue;
        }
        switch (p->line_state) {
        case LS_START:
            if (c == ':') { /* comment */
                p->line_state = LS_IGNORE;
                break;
            }
            p->line_state = LS_FIELD;
            p->field_len = 0;
            /* fall through */
        case LS_FIELD:
            if (c == ':') {
                if (field_is_data(p)) {
                    if (start_data_line(p) < 0)
                        return -1;
                    p->line_state = LS_VALUE_START;
                } else {
                    p->line_state = LS_IGNORE;
                }
            } else {
                if (p->field_len < sizeof p->field)
                    p->field[p->field_len] = c;
                p->field_len++;
            }
            break;
        case LS_VALUE_START: /* one leading space is not part of the value */
            p->line_state = LS_DATA;
            if (c != ' ' && append(p, &c, 1) < 0)
                return -1;
            break;
        default:
            break;
        }
    }
    return 0;
}
