/* fuzz_spool.c - the spool reader (spool.c) on arbitrary files.
 *
 * The input is the whole spool file.  It is written to the scratch
 * directory, opened (the scan) and replayed; then:
 *  - the scan agrees with a reference reading of the same bytes done here
 *    in memory (records kept, damaged records skipped, torn bytes cut; a
 *    damaged record counts as skipped only when a good one follows it), and
 *    the replay hands over exactly the kept records whose payload is a JSON
 *    object with a string "key";
 *  - a sink failure in the middle loses and repeats nothing: the next
 *    replay goes on after the last committed batch;
 *  - every returned row round-trips: appended to a fresh spool and read
 *    back, it comes out the same;
 *  - those rows written to a fresh spool with the input appended as garbage
 *    still come out first, unchanged.
 * The batch size and the failing sink call come from the input's length,
 * so the corpus files stay plain spool files.  Each input is checked as
 * it is and again with its checksums made right (see fix_checksums). */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "spool.h"

static char path_in[512], path_rt[512];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path_in, sizeof path_in, "%s/in.spool", fuzz_scratch_dir());
    snprintf(path_rt, sizeof path_rt, "%s/rt.spool", fuzz_scratch_dir());
    return 0;
}

/* ---- the reference reading -------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* CRC-32 (IEEE), table-driven: independent of spool.c's bitwise one. */
static uint32_t ref_crc(const uint8_t *p, size_t n)
{
    static uint32_t t[256];
    uint32_t c = 0xffffffffu;
    if (t[1] == 0)
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
            t[i] = v;
        }
    while (n--)
        c = t[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* The payload length of a good record at off, or -1. */
static long ref_record(const uint8_t *d, size_t n, size_t off)
{
    uint32_t len;
    if (n - off < 12 || memcmp(d + off, "ORPS", 4) != 0)
        return -1;
    len = le32(d + off + 4);
    if (len > (1u << 20) || len > n - off - 12 || ref_crc(d + off + 12, len) != le32(d + off + 8))
        return -1;
    return (long)len;
}

struct ref {
    uint64_t records, corrupt, torn, rows;
};

static int ref_row(const uint8_t *p, size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len);
    int ok = cJSON_IsObject(o) && cJSON_IsString(cJSON_GetObjectItem(o, "key"));
    cJSON_Delete(o);
    return ok;
}

static void ref_read(const uint8_t *d, size_t n, struct ref *r)
{
    size_t off = 0;
    memset(r, 0, sizeof *r);
    while (off < n) {
        long len = ref_record(d, n, off);
        size_t p;
        if (len >= 0) {
            r->records++;
            r->rows += (uint64_t)ref_row(d + off + 12, (size_t)len);
            off += 12 + (size_t)len;
            continue;
        }
        for (p = off + 1; p < n && ref_record(d, n, p) < 0; p++)
            ;
        if (p >= n) {
            r->torn = n - off;
            break;
        }
        r->corrupt++;
        off = p;
    }
}

/* ---- replaying into memory -------------------------------------------------- */

struct rows {
    struct pgl_row *v;
    size_t n, cap;
    int calls, fail_at; /* the sink call that fails (once), -1 none */
    size_t batch;
};

static int sink(const struct pgl_row *rows, size_t n, void *arg)
{
    struct rows *r = arg;
    FUZZ_CHECK(n > 0 && n <= r->batch);
    if (r->calls++ == r->fail_at) {
        r->fail_at = -1;
        return 1;
    }
    if (r->n + n > r->cap) {
        r->cap = (r->n + n) * 2;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        FUZZ_CHECK(r->v != NULL);
    }
    memcpy(r->v + r->n, rows, n * sizeof *rows);
    for (size_t i = r->n; i < r->n + n; i++) /* -0.0 is written as 0 */
        r->v[i].rec.latency_ms += 0.0, r->v[i].rec.ttfb_ms += 0.0;
    r->n += n;
    return 0;
}

static void write_file(const char *path, const uint8_t *d, size_t n, int append)
{
    int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(n == 0 || write(fd, d, n) == (ssize_t)n);
    FUZZ_CHECK(close(fd) == 0);
}

/* Opens path, replays it into out (a fresh struct rows), checks the file
 * is empty afterwards; the scan into *sc. */
static void replay(const char *path, size_t batch, int fail_at, struct rows *out,
                   struct spool_scan *sc)
{
    char err[256];
    struct spool *sp = spool_open(path, sc, err, sizeof err);
    int rc;

    memset(out, 0, sizeof *out);
    out->batch = batch;
    out->fail_at = fail_at;
    FUZZ_CHECK(sp != NULL);
    rc = spool_replay(sp, sink, out, batch, err, sizeof err);
    FUZZ_CHECK(rc == (fail_at >= 0 && out->fail_at < 0 ? 1 : 0));
    if (rc == 1) {
        FUZZ_CHECK(spool_bytes(sp) > 0);
        rc = spool_replay(sp, sink, out, batch, err, sizeof err);
        FUZZ_CHECK(rc == 0);
    }
    FUZZ_CHECK(spool_bytes(sp) == 0);
    spool_close(sp);
}

static int same_rows(const struct pgl_row *a, const struct pgl_row *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof *a) == 0;
}

static void write_rows(const struct rows *r)
{
    char err[256];
    struct spool *sp;

    unlink(path_rt);
    sp = spool_open(path_rt, NULL, err, sizeof err);
    FUZZ_CHECK(sp != NULL);
    FUZZ_CHECK(spool_append(sp, r->v, r->n, err, sizeof err) == 0);
    spool_close(sp);
}

/* Every checksum recomputed: each "ORPS" whose length fits is made a good
 * record, so mutated payloads reach the row parser (a random checksum
 * almost never matches). */
static void fix_checksums(uint8_t *d, size_t n)
{
    size_t off = 0;
    while (n - off >= 12) {
        uint32_t len = le32(d + off + 4);
        if (memcmp(d + off, "ORPS", 4) != 0 || len > n - off - 12) {
            off++;
            continue;
        }
        uint32_t c = ref_crc(d + off + 12, len);
        for (int i = 0; i < 4; i++)
            d[off + 8 + i] = (uint8_t)(c >> (8 * i));
        off += 12 + len;
    }
}

static void check_file(const uint8_t *data, size_t size)
{
    struct ref ref;
    struct rows got, back, tail;
    struct spool_scan sc;
    size_t batch = 1 + size % 4;

    ref_read(data, size, &ref);
    write_file(path_in, data, size, 0);
    replay(path_in, batch, (int)(size / 4 % 3) - 1, &got, &sc);
    FUZZ_CHECK(sc.records == ref.records && sc.corrupt == ref.corrupt);
    FUZZ_CHECK(sc.torn_bytes == ref.torn);
    FUZZ_CHECK(got.n == ref.rows);

    /* The rows round-trip through a fresh spool. */
    write_rows(&got);
    replay(path_rt, 2, -1, &back, &sc);
    FUZZ_CHECK(sc.records == got.n && sc.corrupt == 0 && sc.torn_bytes == 0);
    FUZZ_CHECK(back.n == got.n && same_rows(got.v, back.v, got.n));

    /* ... and survive garbage appended after them. */
    write_rows(&got);
    write_file(path_rt, data, size, 1);
    replay(path_rt, 3, -1, &tail, &sc);
    FUZZ_CHECK(sc.records >= got.n && tail.n >= got.n && same_rows(got.v, tail.v, got.n));

    free(got.v);
    free(back.v);
    free(tail.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed = malloc(size ? size : 1);

    FUZZ_CHECK(fixed != NULL);
    check_file(data, size);
    memcpy(fixed, data, size);
    fix_checksums(fixed, size);
    if (memcmp(fixed, data, size) != 0)
        check_file(fixed, size);
    free(fixed);
    return 0;
}
