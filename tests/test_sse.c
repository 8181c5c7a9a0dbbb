/* Unit tests for sse.c: framing across arbitrary slices, all three line
 * endings, comments, multi-line data, the event boundary. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "sse.h"

struct seen {
    char events[64][512];
    int truncated[64];
    int n;
};

static void on_event(void *ud, const char *data, size_t len, int truncated)
{
    struct seen *s = ud;
    ck_assert_uint_eq(strlen(data), len); /* NUL-terminated, no embedded NUL here */
    if (s->n < 64) {
        snprintf(s->events[s->n], sizeof s->events[0], "%s", data);
        s->truncated[s->n] = truncated;
    }
    s->n++;
}

/* Feeds text in slices cut at the given points; returns the boundary. */
static uint64_t feed_split(const char *text, const size_t *cuts, int ncuts, struct seen *s)
{
    sse_parser p;
    size_t len = strlen(text), at = 0;
    uint64_t b;
    sse_init(&p, on_event, s);
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        ck_assert_int_eq(sse_feed(&p, text + at, end - at), 0);
        at = end;
    }
    ck_assert_uint_eq(p.total, len);
    b = p.boundary;
    sse_free(&p);
    return b;
}

static uint64_t feed_all(const char *text, struct seen *s)
{
    return feed_split(text, NULL, 0, s);
}

static const char *stream_lf =
    ": OPENROUTER PROCESSING\n\n"
    "data: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
    "data: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
    "data: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"gen-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
    "data: [DONE]\n\n";

static char *convert(const char *lf, const char *eol)
{
    size_t n = 0;
    char *out = malloc(strlen(lf) * 2 + 1);
    for (const char *p = lf; *p; p++) {
        if (*p == '\n') {
            memcpy(out + n, eol, strlen(eol));
            n += strlen(eol);
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return out;
}

START_TEST(test_sse_lf_events)
{
    struct seen s = {0};
    uint64_t b = feed_all(stream_lf, &s);
    ck_assert_int_eq(s.n, 5); /* the comment event has no data */
    ck_assert_str_eq(s.events[1], "{\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}");
    ck_assert_str_eq(s.events[4], "[DONE]");
    ck_assert_uint_eq(b, strlen(stream_lf));
}
END_TEST

START_TEST(test_sse_crlf_and_cr_events)
{
    static const char *eols[] = {"\r\n", "\r"};
    struct seen ref = {0};
    feed_all(stream_lf, &ref);
    for (int e = 0; e < 2; e++) {
        char *text = convert(stream_lf, eols[e]);
        struct seen s = {0};
        uint64_t b = feed_all(text, &s);
        ck_assert_int_eq(s.n, ref.n);
        for (int i = 0; i < s.n; i++)
            ck_assert_str_eq(s.events[i], ref.events[i]);
        ck_assert_uint_eq(b, strlen(text));
        free(text);
    }
}
END_TEST

START_TEST(test_sse_crlf_split_across_feeds)
{
    /* "a\r" + "\n\r\n": one line, then one blank line, not two. */
    struct seen s = {0};
    const char *text = "data: a\r\n\r\ndata: b\r\n\r\n";
    size_t cut[] = {8};
    uint64_t b = feed_split(text, cut, 1, &s);
    ck_assert_int_eq(s.n, 2);
    ck_assert_str_eq(s.events[0], "a");
    ck_assert_str_eq(s.events[1], "b");
    ck_assert_uint_eq(b, strlen(text));
}
END_TEST

START_TEST(test_sse_boundary_takes_trailing_lf_of_crlf)
{
    /* The blank line's CR arrives in one slice and its LF in the next:
     * the boundary must end after the LF, never between the two. */
    struct seen s = {0};
    sse_parser p;
    sse_init(&p, on_event, &s);
    ck_assert_int_eq(sse_feed(&p, "data: x\r\n\r", 10), 0);
    ck_assert_uint_eq(p.boundary, 10);
    ck_assert_int_eq(sse_feed(&p, "\n", 1), 0);
    ck_assert_uint_eq(p.boundary, 11);
    ck_assert_int_eq(s.n, 1);
    sse_free(&p);
}
END_TEST

START_TEST(test_sse_every_byte_boundary)
{
    static const char *eols[] = {"\n", "\r\n", "\r"};
    for (int e = 0; e < 3; e++) {
        char *text = convert(stream_lf, eols[e]);
        size_t len = strlen(text);
        struct seen ref = {0};
        uint64_t rb = feed_all(text, &ref);
        /* every single split point */
        for (size_t cut = 1; cut < len; cut++) {
            struct seen s = {0};
            uint64_t b = feed_split(text, &cut, 1, &s);
            ck_assert_int_eq(s.n, ref.n);
            for (int i = 0; i < s.n; i++)
                ck_assert_str_eq(s.events[i], ref.events[i]);
            ck_assert_uint_eq(b, rb);
        }
        /* one byte at a time */
        {
            size_t *cuts = malloc(len * sizeof *cuts);
            struct seen s = {0};
            for (size_t i = 0; i + 1 < len; i++)
                cuts[i] = i + 1;
            ck_assert_uint_eq(feed_split(text, cuts, (int)len - 1, &s), rb);
            ck_assert_int_eq(s.n, ref.n);
            for (int i = 0; i < s.n; i++)
                ck_assert_str_eq(s.events[i], ref.events[i]);
            free(cuts);
        }
        free(text);
    }
}
END_TEST

START_TEST(test_sse_comment_only_event_advances_boundary)
{
    struct seen s = {0};
    ck_assert_uint_eq(feed_all(": OPENROUTER PROCESSING\n\n", &s), 25);
    ck_assert_int_eq(s.n, 0);
}
END_TEST

START_TEST(test_sse_comment_not_data)
{
    struct seen s = {0};
    feed_all(": data: not this\ndata: yes\n\n", &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.events[0], "yes");
}
END_TEST

START_TEST(test_sse_multiline_data_joined)
{
    struct seen s = {0};
    feed_all("data: one\ndata:two\ndata\ndata: four\n\n", &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.events[0], "one\ntwo\n\nfour");
}
END_TEST

START_TEST(test_sse_only_one_space_stripped)
{
    struct seen s = {0};
    feed_all("data:  two spaces\n\ndata:x\n\n", &s);
    ck_assert_str_eq(s.events[0], " two spaces");
    ck_assert_str_eq(s.events[1], "x");
}
END_TEST

START_TEST(test_sse_other_fields_ignored)
{
    struct seen s = {0};
    feed_all("event: message\nid: 7\nretry: 100\ndatum: no\ndata: d\n\nevent: x\n\n", &s);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.events[0], "d");
}
END_TEST

START_TEST(test_sse_partial_event_not_past_boundary)
{
    struct seen s = {0};
    const char *text = "data: a\n\ndata: {\"half\":";
    ck_assert_uint_eq(feed_all(text, &s), 9);
    ck_assert_int_eq(s.n, 1);
}
END_TEST

START_TEST(test_sse_truncated_over_max_data)
{
    struct seen s = {0};
    sse_parser p;
    char big[3000];
    memset(big, 'x', sizeof big);
    sse_init(&p, on_event, &s);
    p.max_data = 100;
    sse_feed(&p, "data: ", 6);
    sse_feed(&p, big, sizeof big);
    sse_feed(&p, "\n\ndata: small\n\n", 15);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.truncated[0], 1);
    ck_assert_uint_eq(strlen(s.events[0]), 100);
    ck_assert_int_eq(s.truncated[1], 0); /* framing recovered */
    ck_assert_str_eq(s.events[1], "small");
    ck_assert_uint_eq(p.boundary, p.total);
    sse_free(&p);
}
END_TEST

static Suite *sse_suite(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("framing");
    tcase_add_test(tc, test_sse_lf_events);
    tcase_add_test(tc, test_sse_crlf_and_cr_events);
    tcase_add_test(tc, test_sse_crlf_split_across_feeds);
    tcase_add_test(tc, test_sse_boundary_takes_trailing_lf_of_crlf);
    tcase_add_test(tc, test_sse_every_byte_boundary);
    tcase_add_test(tc, test_sse_comment_only_event_advances_boundary);
    tcase_add_test(tc, test_sse_comment_not_data);
    tcase_add_test(tc, test_sse_multiline_data_joined);
    tcase_add_test(tc, test_sse_only_one_space_stripped);
    tcase_add_test(tc, test_sse_other_fields_ignored);
    tcase_add_test(tc, test_sse_partial_event_not_past_boundary);
    tcase_add_test(tc, test_sse_truncated_over_max_data);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(sse_suite)
