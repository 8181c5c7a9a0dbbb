/* fuzz_sse.c - upstream stream bytes through the SSE parser and the usage
 * reader, cut into arbitrary slices.
 *
 * Input: byte 0 picks max_data (high bit set: a tiny cap, so truncation is
 * exercised); bytes 1-8 are a cycle of slice lengths (0-63, a 0 feeds an
 * empty slice; not all 0) that also say how much the client reads after
 * each slice;
 * the rest is the stream.
 *
 * Oracles: the same bytes fed in one piece give the same events (count,
 * data, truncation flags), total and boundary as the sliced feed; the
 * boundary never moves back or past total; the relay arithmetic that
 * upstream.c's on_write and server.c's stream_reader do (release only up
 * to the boundary) hands the client exactly a prefix of the stream made of
 * complete events: a fresh parser fed that prefix ends at its own boundary
 * with the same number of events.  The relay itself is socket-bound glue
 * (struct request, curl, MHD), so its arithmetic is repeated here, not
 * called.  Each event goes where upstream.c's on_sse_event sends it:
 * usage_parse_chunk (text characters never more than the event's bytes),
 * folded into one usage_info as in a real request. */
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "pricing.h"
#include "sse.h"
#include "usage.h"

struct sink {
    uint64_t hash;      /* FNV-1a over every event's length, flag and data */
    uint64_t events;
    size_t max_data;
    size_t chars;
    int saw_done;
    struct usage_info ui;
};

static void mix(struct sink *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        s->hash ^= b[i];
        s->hash *= 1099511628211ull;
    }
}

static void on_event(void *ud, const char *data, size_t len, int truncated)
{
    struct sink *s = ud;

    FUZZ_CHECK(data[len] == '\0');
    FUZZ_CHECK(len <= s->max_data);
    FUZZ_CHECK(!truncated || len == s->max_data);
    s->events++;
    mix(s, &len, sizeof len);
    mix(s, &truncated, sizeof truncated);
    mix(s, data, len);
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->saw_done = 1;
        return;
    }
    if (truncated)
        return;
    {
        size_t chars = 0;
        usage_parse_chunk(data, len, &s->ui, &chars);
        FUZZ_CHECK(chars <= len);
        s->chars += chars;
    }
}

static void sink_init(struct sink *s, size_t max_data)
{
    memset(s, 0, sizeof *s);
    s->hash = 14695981039346656037ull;
    s->max_data = max_data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned b0 = fuzz_byte(&in), cuts[8];
    size_t max_data = b0 & 0x80 ? 1 + (b0 & 0x3f) : 1024 * 1024;
    size_t len, off = 0, released = 0, ready = 0;
    struct sink sliced, whole, prefix;
    sse_parser a, b, c;
    buf_t out;
    char *stream;
    int k = 0;

    for (int i = 0; i < 8; i++)
        cuts[i] = fuzz_byte(&in) & 63;
    if ((cuts[0] | cuts[1] | cuts[2] | cuts[3] | cuts[4] | cuts[5] | cuts[6] | cuts[7]) == 0)
        cuts[0] = 1; /* eight empty slices in a row would never get anywhere */
    stream = fuzz_rest(&in, &len, 0);
    memset(&out, 0, sizeof out);

    sink_init(&sliced, max_data);
    sse_init(&a, on_event, &sliced);
    a.max_data = max_data;
    while (off < len || k == 0) {
        size_t n = cuts[k++ % 8], take;
        uint64_t before = a.boundary;
        if (n > len - off)
            n = len - off;
        FUZZ_CHECK(buf_append(&out, stream + off, n) == 0);
        FUZZ_CHECK(sse_feed(&a, stream + off, n) == 0);
        off += n;
        FUZZ_CHECK(a.total == off);
        FUZZ_CHECK(a.boundary >= before && a.boundary <= a.total);
        ready += (size_t)(a.boundary - before);
        FUZZ_CHECK(ready == buf_used(&out) - (a.total - a.boundary));
        /* The client reads some of what is ready, as MHD would. */
        take = cuts[k % 8] * 3 + 1;
        if (take > ready)
            take = ready;
        FUZZ_CHECK(take == 0 || memcmp(buf_head(&out), stream + released, take) == 0);
        buf_consume(&out, take);
        ready -= take;
        released += take;
        if (off == len)
            break;
    }
    FUZZ_CHECK(released + ready == a.boundary);

    sink_init(&whole, max_data);
    sse_init(&b, on_event, &whole);
    b.max_data = max_data;
    FUZZ_CHECK(sse_feed(&b, stream, len) == 0);
    FUZZ_CHECK(b.total == a.total && b.boundary == a.boundary && b.events == a.events);
    FUZZ_CHECK(whole.events == sliced.events && whole.hash == sliced.hash);
    FUZZ_CHECK(whole.saw_done == sliced.saw_done && whole.chars == sliced.chars);

    sink_init(&prefix, max_data);
    sse_init(&c, on_event, &prefix);
    c.max_data = max_data;
    FUZZ_CHECK(sse_feed(&c, stream, (size_t)a.boundary) == 0);
    FUZZ_CHECK(c.boundary == c.total && c.events == a.events && prefix.hash == sliced.hash);

    /* What the ledger would book from the folded usage (server.c account). */
    if (sliced.ui.usage.has_cost)
        FUZZ_CHECK(pricing_usd_to_pusd(sliced.ui.usage.cost) >= 0);

    usage_info_free(&sliced.ui);
    usage_info_free(&whole.ui);
    usage_info_free(&prefix.ui);
    sse_free(&a);
    sse_free(&b);
    sse_free(&c);
    buf_free(&out);
    free(stream);
    return 0;
}
