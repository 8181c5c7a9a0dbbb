/* test_spool.c - the local spool of ledger rows: append, reopen, replay in
 * order, a failing sink, a torn tail, damage in the middle. */
#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "spool.h"

static char dir[] = "/tmp/orp-spool-test.XXXXXX";
static char path[256];

static void setup(void)
{
    strcpy(dir, "/tmp/orp-spool-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/pg-spool", dir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
}

static void make_row(struct pgl_row *r, int i)
{
    memset(r, 0, sizeof *r);
    snprintf(r->key, sizeof r->key, "0123456789abcdef-%d", i);
    snprintf(r->rec.request_id, sizeof r->rec.request_id, "req_%d", i);
    r->rec.started_ms = 1764547200000LL + i;
    snprintf(r->rec.client, sizeof r->rec.client, "alice");
    snprintf(r->rec.user, sizeof r->rec.user, "u\"ser\n%d \xc3\xa9", i);
    snprintf(r->rec.route, sizeof r->rec.route, "chat");
    snprintf(r->rec.model, sizeof r->rec.model, "m/%d", i);
    r->rec.stream = i & 1;
    r->rec.status = 200 + i;
    r->rec.attempts = 2;
    r->rec.prompt_tokens = i;
    r->rec.completion_tokens = 2 * i;
    r->rec.total_tokens = 3 * i;
    r->rec.cached_tokens = 4;
    r->rec.reasoning_tokens = 5;
    r->rec.cost_pusd = INT64_MAX - i; /* beyond a double's 53 bits */
    r->rec.cost_source = COST_PRICING;
    snprintf(r->rec.generation_id, sizeof r->rec.generation_id, "gen-%d", i);
    snprintf(r->rec.finish_reason, sizeof r->rec.finish_reason, "stop");
    r->rec.latency_ms = 0.1 + i;
    r->rec.ttfb_ms = i % 2 ? -1 : 1.0 / 3;
    snprintf(r->rec.error_class, sizeof r->rec.error_class, "%s", i % 2 ? "upstream_5xx" : "");
    snprintf(r->rec.outcome, sizeof r->rec.outcome, "ok");
}

static void append_rows(struct spool *sp, int from, int n)
{
    struct pgl_row *rows = calloc((size_t)n, sizeof *rows);
    char err[256] = "";
    for (int i = 0; i < n; i++)
        make_row(&rows[i], from + i);
    ck_assert_msg(spool_append(sp, rows, (size_t)n, err, sizeof err) == 0, "%s", err);
    free(rows);
}

/* The sink: keeps the ids of what it got; fails at call fail_at (1-based). */
struct got {
    int ids[1000], n, calls, fail_at;
};

static int sink(const struct pgl_row *rows, size_t n, void *arg)
{
    struct got *g = arg;
    if (++g->calls == g->fail_at)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct pgl_row want;
        int id = atoi(rows[i].rec.request_id + 4);
        make_row(&want, id);
        ck_assert_str_eq(rows[i].key, want.key);
        ck_assert_mem_eq(&rows[i].rec, &want.rec, sizeof want.rec);
        g->ids[g->n++] = id;
    }
    return 0;
}

/* The last row handed over, and how many were. */
struct last {
    struct pgl_row row;
    int n;
};

static int keep_one(const struct pgl_row *rows, size_t n, void *arg)
{
    struct last *g = arg;
    g->row = rows[n - 1];
    g->n += (int)n;
    return 0;
}

static off_t file_size(void)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

START_TEST(test_rows_replay_in_order_then_file_empties)
{
    struct spool_scan sc;
    struct spool *sp = spool_open(path, &sc, NULL, 0);
    struct got g = {0};
    char err[256] = "";

    ck_assert_uint_eq(spool_bytes(sp), 0);
    append_rows(sp, 0, 3);
    append_rows(sp, 3, 4);
    ck_assert_uint_eq(spool_bytes(sp), (uint64_t)file_size());
    ck_assert_uint_gt(spool_bytes(sp), 0);
    spool_close(sp);
    /* After a restart: everything is still there, in order. */
    sp = spool_open(path, &sc, err, sizeof err);
    ck_assert_ptr_nonnull(sp);
    ck_assert_uint_eq(sc.records, 7);
    ck_assert_uint_eq(sc.torn_bytes, 0);
    ck_assert_int_eq(spool_replay(sp, sink, &g, 3, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 7);
    ck_assert_int_eq(g.calls, 3); /* 3 + 3 + 1 */
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(g.ids[i], i);
    ck_assert_uint_eq(spool_bytes(sp), 0);
    ck_assert_int_eq(file_size(), 0);
    spool_close(sp);
}
END_TEST

START_TEST(test_failed_sink_keeps_the_rows)
{
    struct spool *sp = spool_open(path, NULL, NULL, 0);
    struct got g = {.fail_at = 2};
    char err[256] = "";
    uint64_t size;

    append_rows(sp, 0, 10);
    size = spool_bytes(sp);
    ck_assert_int_eq(spool_replay(sp, sink, &g, 4, err, sizeof err), 1);
    ck_assert_int_eq(g.n, 4);
    ck_assert_uint_eq(spool_bytes(sp), size); /* nothing cut before the end */
    ck_assert_int_eq(file_size(), (off_t)size);
    /* Back: goes on after the committed batch, then empties the file. */
    g.fail_at = 0;
    ck_assert_int_eq(spool_replay(sp, sink, &g, 4, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(g.ids[i], i);
    ck_assert_int_eq(file_size(), 0);
    spool_close(sp);
    /* A new process starts over: the whole file again (the sink dedupes). */
    sp = spool_open(path, NULL, NULL, 0);
    append_rows(sp, 20, 2);
    memset(&g, 0, sizeof g);
    ck_assert_int_eq(spool_replay(sp, sink, &g, 4, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 2);
    ck_assert_int_eq(g.ids[0], 20);
    spool_close(sp);
}
END_TEST

START_TEST(test_torn_tail_is_cut)
{
    struct spool *sp = spool_open(path, NULL, NULL, 0);
    struct spool_scan sc;
    struct got g = {0};
    char err[256] = "";
    off_t four;

    append_rows(sp, 0, 4);
    four = file_size();
    append_rows(sp, 4, 1);
    spool_close(sp);
    /* A crash in the middle of the fifth record's write. */
    ck_assert_int_eq(truncate(path, file_size() - 7), 0);
    sp = spool_open(path, &sc, err, sizeof err);
    ck_assert_ptr_nonnull(sp);
    ck_assert_uint_eq(sc.records, 4);
    ck_assert_uint_gt(sc.torn_bytes, 0);
    ck_assert_int_eq(file_size(), four);
    ck_assert_uint_eq(spool_bytes(sp), (uint64_t)four);
    /* Appending goes on after the last good record. */
    append_rows(sp, 7, 1);
    spool_close(sp);
    /* A torn header alone, then the same with a whole but garbled record. */
    {
        int fd = open(path, O_WRONLY | O_APPEND);
        ck_assert_int_eq(write(fd, "ORP", 3), 3);
        close(fd);
    }
    sp = spool_open(path, &sc, NULL, 0);
    ck_assert_uint_eq(sc.records, 5);
    ck_assert_uint_eq(sc.torn_bytes, 3);
    spool_close(sp);
    {
        int fd = open(path, O_WRONLY | O_APPEND);
        const char junk[] = "ORPS\x05\x00\x00\x00\x01\x02\x03\x04{\"k\":";
        ck_assert_int_eq(write(fd, junk, sizeof junk - 1), (ssize_t)sizeof junk - 1);
        close(fd);
    }
    sp = spool_open(path, &sc, NULL, 0);
    ck_assert_uint_eq(sc.records, 5);
    ck_assert_uint_eq(sc.torn_bytes, 17);
    ck_assert_int_eq(spool_replay(sp, sink, &g, 100, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 5);
    ck_assert_int_eq(g.ids[3], 3);
    ck_assert_int_eq(g.ids[4], 7);
    spool_close(sp);
}
END_TEST

START_TEST(test_magic_inside_a_torn_record_is_not_a_record)
{
    struct spool *sp = spool_open(path, NULL, NULL, 0);
    struct spool_scan sc;
    struct pgl_row row;
    char err[256] = "";
    off_t two;

    append_rows(sp, 0, 2);
    two = file_size();
    make_row(&row, 2);
    snprintf(row.rec.user, sizeof row.rec.user, "ORPS ORPS tail");
    ck_assert_int_eq(spool_append(sp, &row, 1, err, sizeof err), 0);
    spool_close(sp);
    ck_assert_int_eq(truncate(path, file_size() - 5), 0);
    sp = spool_open(path, &sc, NULL, 0);
    ck_assert_uint_eq(sc.records, 2);
    ck_assert_uint_eq(sc.corrupt, 0);
    ck_assert_int_eq(file_size(), two);
    spool_close(sp);
}
END_TEST

START_TEST(test_damaged_middle_record_is_skipped)
{
    struct spool *sp = spool_open(path, NULL, NULL, 0);
    struct spool_scan sc;
    struct got g = {0};
    char err[256] = "", c;
    off_t one;
    int fd;

    append_rows(sp, 0, 1);
    one = file_size();
    append_rows(sp, 1, 3);
    spool_close(sp);
    /* One byte of the second record's payload flipped. */
    fd = open(path, O_RDWR);
    ck_assert_int_eq(pread(fd, &c, 1, one + 20), 1);
    c ^= 0x20;
    ck_assert_int_eq(pwrite(fd, &c, 1, one + 20), 1);
    close(fd);
    sp = spool_open(path, &sc, NULL, 0);
    ck_assert_uint_eq(sc.records, 3);
    ck_assert_uint_eq(sc.corrupt, 1);
    ck_assert_uint_eq(sc.torn_bytes, 0);
    ck_assert_int_eq(spool_replay(sp, sink, &g, 100, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 3);
    ck_assert_int_eq(g.ids[0], 0);
    ck_assert_int_eq(g.ids[1], 2);
    ck_assert_int_eq(g.ids[2], 3);
    spool_close(sp);
}
END_TEST

static uint32_t crc32_ieee(const char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= (unsigned char)*p++;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

/* Found by fuzz_spool: a latency of 2e308 (inf once parsed) was returned
 * as inf, which the spool then wrote as null: the row did not round-trip. */
START_TEST(test_number_too_large_for_a_double_is_absent)
{
    static const char payload[] = "{\"key\":\"k1\",\"latency_ms\":2e308,\"ttfb_ms\":-1e400,"
                                  "\"status\":200}";
    unsigned char hdr[12] = {'O', 'R', 'P', 'S'};
    uint32_t len = sizeof payload - 1, crc = crc32_ieee(payload, len);
    struct spool *sp;
    struct last g = {0};
    char err[256] = "";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    for (int i = 0; i < 4; i++) {
        hdr[4 + i] = (unsigned char)(len >> (8 * i));
        hdr[8 + i] = (unsigned char)(crc >> (8 * i));
    }
    ck_assert_int_eq(write(fd, hdr, sizeof hdr), (ssize_t)sizeof hdr);
    ck_assert_int_eq(write(fd, payload, len), (ssize_t)len);
    close(fd);
    sp = spool_open(path, NULL, NULL, 0);
    ck_assert_ptr_nonnull(sp);
    ck_assert_int_eq(spool_replay(sp, keep_one, &g, 10, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 1);
    ck_assert_str_eq(g.row.key, "k1");
    ck_assert_int_eq(g.row.rec.status, 200);
    ck_assert(g.row.rec.latency_ms == 0);  /* absent */
    ck_assert(g.row.rec.ttfb_ms == -1);    /* absent: none */
    /* ... and the row reads back the same. */
    ck_assert_int_eq(spool_append(sp, &g.row, 1, err, sizeof err), 0);
    g.n = 0;
    ck_assert_int_eq(spool_replay(sp, keep_one, &g, 10, err, sizeof err), 0);
    ck_assert_int_eq(g.n, 1);
    ck_assert(g.row.rec.latency_ms == 0 && g.row.rec.ttfb_ms == -1);
    spool_close(sp);
}
END_TEST

START_TEST(test_unopenable_path_is_an_error)
{
    char err[256] = "";
    ck_assert_ptr_null(spool_open("/nonexistent/dir/pg-spool", NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "/nonexistent/dir/pg-spool") != NULL, "%s", err);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("spool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_rows_replay_in_order_then_file_empties);
    tcase_add_test(tc, test_failed_sink_keeps_the_rows);
    tcase_add_test(tc, test_torn_tail_is_cut);
    tcase_add_test(tc, test_magic_inside_a_torn_record_is_not_a_record);
    tcase_add_test(tc, test_damaged_middle_record_is_skipped);
    tcase_add_test(tc, test_number_too_large_for_a_double_is_absent);
    tcase_add_test(tc, test_unopenable_path_is_an_error);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
