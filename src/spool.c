/* spool.c - the append-only file of ledger rows waiting for PostgreSQL
 * (see spool.h for the format and the durability rules).
 *
 * Records are read with pread(2) at explicit offsets, so reading (the scan
 * at open, a replay) never disturbs the O_APPEND writes.  A record whose
 * header or checksum is wrong is either the torn end of the file (nothing
 * good follows it: cut off) or damage in the middle (a later record starts
 * with the magic and checks out: skipped).  Integers are stored as decimal
 * strings in the JSON payload, since a JSON number is a double and costs
 * in picodollars may need all 64 bits. */
#include "spool.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define MAGIC "ORPS"
#define HDR 12
#define MAX_PAYLOAD (1u << 20)

struct spool {
    int fd;
    _Atomic uint64_t size;
    uint64_t done_off; /* records before this offset were committed by a replay */
};

/* --- checksum --------------------------------------------------------------- */

/* CRC-32 (IEEE 802.3, as zlib's crc32), bitwise: records are small. */
static uint32_t crc32_of(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* --- rows as JSON ------------------------------------------------------------ */

enum ftype { F_STR, F_I64, F_INT, F_DBL, F_SRC };
struct field {
    const char *name;
    enum ftype type;
    size_t off, size;
};
#define FLD(f, t) {#f, t, offsetof(struct ledger_record, f), sizeof(((struct ledger_record *)0)->f)}
static const struct field fields[] = {
    FLD(request_id, F_STR),       FLD(started_ms, F_I64),        FLD(client, F_STR),
    FLD(user, F_STR),             FLD(route, F_STR),             FLD(model, F_STR),
    FLD(served_model, F_STR),     FLD(provider, F_STR),          FLD(stream, F_INT),
    FLD(status, F_INT),           FLD(attempts, F_INT),          FLD(prompt_tokens, F_I64),
    FLD(completion_tokens, F_I64), FLD(total_tokens, F_I64),     FLD(cached_tokens, F_I64),
    FLD(reasoning_tokens, F_I64), FLD(cost_pusd, F_I64),         FLD(cost_source, F_SRC),
    FLD(generation_id, F_STR),    FLD(finish_reason, F_STR),     FLD(latency_ms, F_DBL),
    FLD(ttfb_ms, F_DBL),          FLD(error_class, F_STR),       FLD(outcome, F_STR),
};
#undef FLD

/* A malloc'd JSON text of row, or NULL when out of memory. */
static char *row_json(const struct pgl_row *row)
{
    cJSON *o = cJSON_CreateObject();
    char num[32], *text;
    const char *r = (const char *)&row->rec;

    cJSON_AddStringToObject(o, "key", row->key);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const struct field *f = &fields[i];
        const void *v = r + f->off;
        switch (f->type) {
        case F_STR:
            cJSON_AddStringToObject(o, f->name, v);
            break;
        case F_I64:
            snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)v);
            cJSON_AddStringToObject(o, f->name, num);
            break;
        case F_INT:
            cJSON_AddNumberToObject(o, f->name, *(const int *)v);
            break;
        case F_DBL:
            cJSON_AddNumberToObject(o, f->name, *(const double *)v);
            break;
        case F_SRC:
            cJSON_AddStringToObject(o, f->name,
                                    ledger_cost_source_name(*(const enum cost_source *)v));
            break;
        }
    }
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

static enum cost_source source_named(const char *s)
{
    for (int k = COST_NONE; k <= COST_ESTIMATE; k++)
        if (strcmp(s, ledger_cost_source_name((enum cost_source)k)) == 0)
            return (enum cost_source)k;
    return COST_NONE;
}

/* Fills row from a payload; fields it lacks stay zero.  A number too
 * large for a double (2e308 parses as inf) counts as absent: row_json
 * would write it as null, so the row would not read back the same. */
static int row_parse(const char *text, size_t len, struct pgl_row *row)
{
    cJSON *o = cJSON_ParseWithLength(text, len), *v;
    char *r = (char *)&row->rec;

    memset(row, 0, sizeof *row);
    row->rec.ttfb_ms = -1;
    if (!cJSON_IsObject(o) || !cJSON_IsString(v = cJSON_GetObjectItem(o, "key"))) {
        cJSON_Delete(o);
        return -1;
    }
    snprintf(row->key, sizeof row->key, "%s", v->valuestring);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const struct field *f = &fields[i];
        v = cJSON_GetObjectItem(o, f->name);
        if (v == NULL)
            continue;
        if (f->type == F_STR && cJSON_IsString(v))
            snprintf(r + f->off, f->size, "%s", v->valuestring);
        else if (f->type == F_I64 && cJSON_IsString(v))
            *(int64_t *)(void *)(r + f->off) = strtoll(v->valuestring, NULL, 10);
        else if (f->type == F_INT && cJSON_IsNumber(v))
            *(int *)(void *)(r + f->off) = v->valueint;
        else if (f->type == F_DBL && cJSON_IsNumber(v) && isfinite(v->valuedouble))
            *(double *)(void *)(r + f->off) = v->valuedouble;
        else if (f->type == F_SRC && cJSON_IsString(v))
            *(enum cost_source *)(void *)(r + f->off) = source_named(v->valuestring);
    }
    cJSON_Delete(o);
    return 0;
}

/* --- reading records ------------------------------------------------------------ */

enum { REC_END = 0, REC_OK = 1, REC_TORN = -2, REC_BAD = -3, REC_IOERR = -1 };

/* The offset of the next magic at or after from, or end when none. */
static uint64_t next_magic(int fd, uint64_t from, uint64_t end)
{
    char buf[65536];
    while (from + 4 <= end) {
        size_t want = end - from < sizeof buf ? (size_t)(end - from) : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)from);
        char *hit;
        if (n < 4)
            break;
        hit = memmem(buf, (size_t)n, MAGIC, 4);
        if (hit != NULL)
            return from + (uint64_t)(hit - buf);
        from += (uint64_t)n - 3;
    }
    return end;
}

/* Reads the record at off: REC_OK with *payload (malloc'd, *len bytes),
 * REC_BAD when its header, length or checksum is wrong, REC_IOERR. */
static int read_at(int fd, uint64_t off, uint64_t end, char **payload, uint32_t *len)
{
    unsigned char h[HDR];
    char *p;

    *payload = NULL;
    if (end - off < HDR)
        return REC_BAD;
    if (pread(fd, h, HDR, (off_t)off) != HDR)
        return REC_IOERR;
    *len = get_u32(h + 4);
    if (memcmp(h, MAGIC, 4) != 0 || *len > MAX_PAYLOAD || off + HDR + *len > end)
        return REC_BAD;
    p = malloc(*len ? *len : 1);
    if (p == NULL)
        return REC_IOERR;
    if (pread(fd, p, *len, (off_t)(off + HDR)) != (ssize_t)*len) {
        free(p);
        return REC_IOERR;
    }
    if (crc32_of(p, *len) != get_u32(h + 8)) {
        free(p);
        return REC_BAD;
    }
    *payload = p;
    return REC_OK;
}

/* Reads the record at *off (the file ends at end).  REC_OK: *payload
 * (malloc'd, *len bytes) and *off moved past it.  REC_BAD: a damaged record
 * with a good one after it; *off moved to that one.  REC_TORN: no good
 * record from *off to the end (a magic inside a torn payload does not
 * count: the record there must check out).  REC_END at the end. */
static int read_record(int fd, uint64_t *off, uint64_t end, char **payload, uint32_t *len)
{
    uint64_t next;
    int r;

    *payload = NULL;
    if (*off >= end)
        return REC_END;
    r = read_at(fd, *off, end, payload, len);
    if (r == REC_OK)
        *off += HDR + *len;
    if (r != REC_BAD)
        return r;
    for (next = next_magic(fd, *off + 1, end); next < end; next = next_magic(fd, next + 1, end)) {
        char *p;
        uint32_t n;
        r = read_at(fd, next, end, &p, &n);
        free(p);
        if (r == REC_IOERR)
            return r;
        if (r == REC_OK) {
            *off = next;
            return REC_BAD;
        }
    }
    return REC_TORN;
}

/* --- the file ----------------------------------------------------------------------- */

/* Scans the whole file; cuts a torn tail. */
static int scan(struct spool *sp, uint64_t end, struct spool_scan *out, char *err, size_t errlen)
{
    uint64_t off = 0;
    char *payload;
    uint32_t len;
    int r;

    memset(out, 0, sizeof *out);
    while ((r = read_record(sp->fd, &off, end, &payload, &len)) == REC_OK || r == REC_BAD) {
        free(payload);
        if (r == REC_OK)
            out->records++;
        else
            out->corrupt++;
    }
    if (r == REC_IOERR) {
        util_set_err(err, errlen, "spool: read failed: %s", strerror(errno));
        return -1;
    }
    if (r == REC_TORN) {
        out->torn_bytes = end - off;
        if (ftruncate(sp->fd, (off_t)off) != 0 || fdatasync(sp->fd) != 0) {
            util_set_err(err, errlen, "spool: cannot cut the torn end: %s", strerror(errno));
            return -1;
        }
        end = off;
    }
    atomic_store(&sp->size, end);
    return 0;
}

struct spool *spool_open(const char *path, struct spool_scan *scan_out, char *err, size_t errlen)
{
    struct spool *sp = calloc(1, sizeof *sp);
    struct spool_scan dummy;
    off_t end;

    if (sp == NULL) {
        util_set_err(err, errlen, "spool: out of memory");
        return NULL;
    }
    sp->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (sp->fd < 0) {
        util_set_err(err, errlen, "spool: cannot open %s: %s", path, strerror(errno));
        free(sp);
        return NULL;
    }
    end = lseek(sp->fd, 0, SEEK_END);
    if (end < 0 || scan(sp, (uint64_t)end, scan_out ? scan_out : &dummy, err, errlen) != 0) {
        if (end < 0)
            util_set_err(err, errlen, "spool: %s: %s", path, strerror(errno));
        spool_close(sp);
        return NULL;
    }
    return sp;
}

void spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp);
}

uint64_t spool_bytes(const struct spool *sp)
{
    return atomic_load(&sp->size);
}

/* The records of rows[0..n) in one malloc'd buffer of *len bytes. */
static unsigned char *encode(const struct pgl_row *rows, size_t n, size_t *len)
{
    size_t cap = 0, used = 0;
    unsigned char *buf = NULL;

    for (size_t i = 0; i < n; i++) {
        char *text = row_json(&rows[i]);
        size_t tl = text ? strlen(text) : 0;
        if (text == NULL || used + HDR + tl > cap) {
            unsigned char *nb = text ? realloc(buf, cap = (used + HDR + tl) * 2) : NULL;
            if (nb == NULL) {
                free(text);
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + used, MAGIC, 4);
        put_u32(buf + used + 4, (uint32_t)tl);
        put_u32(buf + used + 8, crc32_of(text, tl));
        memcpy(buf + used + HDR, text, tl);
        used += HDR + tl;
        free(text);
    }
    *len = used;
    return buf;
}

int spool_append(struct spool *sp, const struct pgl_row *rows, size_t n, char *err, size_t errlen)
{
    uint64_t start = atomic_load(&sp->size);
    size_t len = 0, done = 0;
    unsigned char *buf;

    if (n == 0)
        return 0;
    buf = encode(rows, n, &len);
    if (buf == NULL) {
        util_set_err(err, errlen, "spool: out of memory");
        return -1;
    }
    while (done < len) {
        ssize_t w = write(sp->fd, buf + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    free(buf);
    if (done < len || fdatasync(sp->fd) != 0) {
        off_t now;
        util_set_err(err, errlen, "spool: write failed: %s", strerror(errno ? errno : EIO));
        /* Cut the partial batch.  Should that fail too, the size stays what
         * the file holds: readers skip the partial records (damaged). */
        if (ftruncate(sp->fd, (off_t)start) != 0 && (now = lseek(sp->fd, 0, SEEK_END)) >= 0)
            atomic_store(&sp->size, (uint64_t)now);
        return -1;
    }
    atomic_store(&sp->size, start + len);
    return 0;
}

int spool_replay(struct spool *sp, spool_sink_fn sink, void *arg, size_t batch, char *err,
                 size_t errlen)
{
    uint64_t end = atomic_load(&sp->size), off = sp->done_off;
    struct pgl_row *rows;
    size_t k = 0;
    int r = REC_OK;

    if (batch == 0)
        batch = PGLEDGER_CHUNK;
    rows = calloc(batch, sizeof *rows);
    if (rows == NULL) {
        util_set_err(err, errlen, "spool: out of memory");
        return -1;
    }
    while (r != REC_END && r != REC_TORN) {
        char *payload = NULL;
        uint32_t len = 0;
        r = read_record(sp->fd, &off, end, &payload, &len);
        if (r == REC_IOERR) {
            util_set_err(err, errlen, "spool: read failed: %s", strerror(errno));
            free(rows);
            return -1;
        }
        if (r == REC_OK && row_parse(payload, len, &rows[k]) == 0)
            k++;
        free(payload);
        if (k == batch || (k > 0 && (r == REC_END || r == REC_TORN))) {
            if (sink(rows, k, arg) != 0) {
                free(rows);
                return 1;
            }
            k = 0;
            sp->done_off = off;
        }
    }
    free(rows);
    if (ftruncate(sp->fd, 0) != 0 || fdatasync(sp->fd) != 0) {
        util_set_err(err, errlen, "spool: cannot empty the file: %s", strerror(errno));
        return -1;
    }
    sp->done_off = 0;
    atomic_store(&sp->size, 0);
    return 0;
}
