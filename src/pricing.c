/* pricing.c - see pricing.h.
 *
 * Decimal strings are parsed by hand, digit by digit, into an integer
 * scaled by 10^18 (prices) or 10^12 (usage.cost), so no value ever passes
 * through a binary fraction.  A table is one sorted array of entries
 * searched by binary search (a /models answer has a few hundred models).
 * The current table sits behind a writer-preferring rwlock: lookups hold
 * the read side for one binary search, a replacement holds the write side
 * only to swap the pointer and frees the old table after unlocking. */
#include "pricing.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ATTO_DIGITS 18
#define PUSD_DIGITS 12
#define ATTO_PER_PUSD 1000000 /* 1e18 / 1e12 */
#define LOAD_MAX (64u << 20)  /* a price cache larger than this is not ours */

/* One model: id is malloc'd, owned by the table. */
struct price_entry {
    char *id;
    struct price price;
    size_t order; /* position in the /models answer, to keep the first duplicate */
};

struct price_table {
    struct price_entry *v; /* sorted by id (strcmp), no duplicates */
    size_t n;
};

/* Field name in /models' "pricing" object, bit, and member of struct price. */
static const struct {
    const char *name;
    unsigned bit;
    size_t off;
} price_fields[] = {
    {"prompt", PRICE_PROMPT, offsetof(struct price, prompt)},
    {"completion", PRICE_COMPLETION, offsetof(struct price, completion)},
    {"request", PRICE_REQUEST, offsetof(struct price, request)},
    {"input_cache_read", PRICE_CACHE_READ, offsetof(struct price, cache_read)},
    {"input_cache_write", PRICE_CACHE_WRITE, offsetof(struct price, cache_write)},
    {"internal_reasoning", PRICE_REASONING, offsetof(struct price, reasoning)},
};
#define NFIELDS (sizeof price_fields / sizeof price_fields[0])

static int64_t *price_field(struct price *p, size_t i)
{
    return (int64_t *)(void *)((char *)p + price_fields[i].off);
}

/* ---- exact decimals ---------------------------------------------------- */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses s (grammar in pricing.h) into round_half_up(value * 10^scale).
 * The mantissa's digits are addressed in place: digit i is the i-th digit
 * of "int.frac" with the point skipped.  Returns 0 or -1. */
static int parse_scaled(const char *s, int scale, int64_t *out)
{
    const char *p = s, *ip, *fp = NULL;
    long long nint = 0, nfrac = 0, n, z, k, exp10 = 0, i;
    uint64_t v = 0;

    if (s == NULL)
        return -1;
    ip = p;
    while (is_digit(*p)) {
        p++;
        nint++;
    }
    if (nint == 0)
        return -1;
    if (*p == '.') {
        fp = ++p;
        while (is_digit(*p)) {
            p++;
            nfrac++;
        }
        if (nfrac == 0)
            return -1;
    }
    if (*p == 'e' || *p == 'E') {
        int neg = 0;
        p++;
        if (*p == '+' || *p == '-')
            neg = *p++ == '-';
        if (!is_digit(*p))
            return -1;
        for (; is_digit(*p); p++)
            if (exp10 < 1000000000) /* saturate: 1e9 is already far out of range */
                exp10 = exp10 * 10 + (*p - '0');
        if (neg)
            exp10 = -exp10;
    }
    if (*p != '\0')
        return -1;

#define DIGIT(j) ((j) < nint ? ip[(j)] - '0' : fp[(j) - nint] - '0')
    n = nint + nfrac;
    for (z = 0; z < n && DIGIT(z) == 0; z++)
        ;
    if (z == n) { /* zero, whatever the exponent */
        *out = 0;
        return 0;
    }
    /* Digits [z, k) make the integer part of value * 10^scale; digit k (if
     * any) decides the rounding.  DIGIT(z) != 0, so more than 19 integer
     * digits is at least 1e19: too large. */
    k = nint + exp10 + scale;
    if (k - z > 19)
        return -1;
    for (i = z; i < k; i++) {
        unsigned d = i < n ? (unsigned)DIGIT(i) : 0;
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (k >= z && k < n && DIGIT(k) >= 5) {
        if (v == (uint64_t)INT64_MAX)
            return -1;
        v++;
    }
#undef DIGIT
    *out = (int64_t)v;
    return 0;
}

int pricing_parse_decimal(const char *s, int64_t *atto_out)
{
    return parse_scaled(s, ATTO_DIGITS, atto_out);
}

/* A double as the shortest decimal that reads back as the same double (so
 * the digits a JSON text gave), in %e form, then parsed exactly. */
static int double_to_scaled(double x, int scale, int64_t *out)
{
    char b[64];

    if (!isfinite(x) || x < 0)
        return -1;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*e", prec - 1, x);
        if (strtod(b, NULL) == x)
            break;
    }
    for (char *c = b; *c != '\0'; c++) /* a locale may print ',' for '.' */
        if (!is_digit(*c) && *c != 'e' && *c != '+' && *c != '-')
            *c = '.';
    return parse_scaled(b, scale, out);
}

int64_t pricing_usd_to_pusd(double usd)
{
    int64_t v;

    if (!isfinite(usd) || usd <= 0)
        return 0;
    if (usd >= (double)PRICING_MAX_COST_USD || double_to_scaled(usd, PUSD_DIGITS, &v) < 0 ||
        v > PRICING_MAX_COST_PUSD)
        return PRICING_MAX_COST_PUSD; /* finite and positive: only too large can fail */
    return v;
}

int64_t pricing_add_pusd(int64_t a, int64_t b)
{
    int64_t s;

    if (__builtin_add_overflow(a, b, &s))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return s;
}

/* Writes v / 10^digits with the fraction's trailing zeros trimmed to at
 * least min_frac digits (no point at all when min_frac is 0 and the
 * fraction is zero). */
static char *format_scaled(int64_t v, int digits, int min_frac, char *buf, size_t n)
{
    uint64_t mag = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    uint64_t unit = 1;
    char frac[24];
    int len;

    for (int i = 0; i < digits; i++)
        unit *= 10;
    snprintf(frac, sizeof frac, "%0*" PRIu64, digits, mag % unit);
    for (len = digits; len > min_frac && frac[len - 1] == '0'; len--)
        ;
    frac[len] = '\0';
    if (n > 0)
        snprintf(buf, n, "%s%" PRIu64 "%s%s", v < 0 ? "-" : "", mag / unit, len > 0 ? "." : "",
                 frac);
    return buf;
}

char *pricing_format_usd(int64_t pusd, char *buf, size_t n)
{
    return format_scaled(pusd, PUSD_DIGITS, 2, buf, n);
}

/* ---- cost --------------------------------------------------------------- */

static unsigned __int128 nonneg(int64_t x)
{
    return x > 0 ? (unsigned __int128)x : 0;
}

int64_t pricing_cost_pusd(const struct price *p, int64_t prompt_tokens, int64_t completion_tokens,
                          int64_t cached_tokens, int64_t reasoning_tokens)
{
    unsigned __int128 pt = nonneg(prompt_tokens), ct = nonneg(completion_tokens);
    unsigned __int128 cached = nonneg(cached_tokens), atto, pusd;
    unsigned __int128 prompt = nonneg(p->prompt);
    unsigned __int128 cache_read = (p->has & PRICE_CACHE_READ) ? nonneg(p->cache_read) : prompt;

    (void)reasoning_tokens; /* inside completion_tokens already */
    if (cached > pt)
        cached = pt;
    /* Each product is < 2^126, so the sum (< 2^127 + 2^63) cannot wrap. */
    atto = (pt - cached) * prompt + cached * cache_read + ct * nonneg(p->completion)
           + nonneg(p->request);
    pusd = (atto + ATTO_PER_PUSD / 2) / ATTO_PER_PUSD;
    return pusd > (unsigned __int128)PRICING_MAX_COST_PUSD ? PRICING_MAX_COST_PUSD : (int64_t)pusd;
}

/* ---- tables ------------------------------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
    const struct price_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);

    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* A price given as a string (OpenRouter's form) or, leniently, a number. */
static int parse_price_item(const cJSON *it, int64_t *out)
{
    if (cJSON_IsString(it) && it->valuestring != NULL)
        return pricing_parse_decimal(it->valuestring, out);
    if (cJSON_IsNumber(it))
        return double_to_scaled(it->valuedouble, ATTO_DIGITS, out);
    return -1;
}

static void parse_pricing(const cJSON *pricing, struct price *pr)
{
    memset(pr, 0, sizeof *pr);
    if (!cJSON_IsObject(pricing))
        return;
    for (size_t i = 0; i < NFIELDS; i++) {
        int64_t v;
        if (parse_price_item(cJSON_GetObjectItemCaseSensitive(pricing, price_fields[i].name), &v)
            == 0) {
            *price_field(pr, i) = v;
            pr->has |= price_fields[i].bit;
        }
    }
}

struct price_table *pricing_table_from_models_json(const char *json, size_t len, char *err,
                                                   size_t errlen)
{
    cJSON *root = NULL;
    const cJSON *data, *m;
    struct price_table *t = NULL;
    size_t cap, w;

    if (json == NULL || (root = cJSON_ParseWithLength(json, len)) == NULL) {
        util_set_err(err, errlen, "not valid JSON");
        goto fail;
    }
    data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsArray(data)) {
        util_set_err(err, errlen, "no \"data\" array");
        goto fail;
    }
    cap = (size_t)cJSON_GetArraySize(data);
    if ((t = calloc(1, sizeof *t)) == NULL || (t->v = calloc(cap ? cap : 1, sizeof *t->v)) == NULL) {
        util_set_err(err, errlen, "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(m, data)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        struct price_entry *e;

        if (!cJSON_IsString(id) || id->valuestring == NULL || id->valuestring[0] == '\0')
            continue;
        e = &t->v[t->n];
        if ((e->id = strdup(id->valuestring)) == NULL) {
            util_set_err(err, errlen, "out of memory");
            goto fail;
        }
        e->order = t->n++;
        parse_pricing(cJSON_GetObjectItemCaseSensitive(m, "pricing"), &e->price);
    }
    cJSON_Delete(root);
    root = NULL;
    if (t->n > 1)
        qsort(t->v, t->n, sizeof *t->v, entry_cmp);
    for (size_t r = w = 0; r < t->n; r++) { /* keep each id's first entry */
        if (w > 0 && strcmp(t->v[w - 1].id, t->v[r].id) == 0)
            free(t->v[r].id);
        else
            t->v[w++] = t->v[r];
    }
    t->n = w;
    return t;

fail:
    cJSON_Delete(root);
    pricing_table_free(t);
    return NULL;
}

/* Binary search for the id equal to key[0..klen). */
static const struct price_entry *table_find(const struct price_table *t, const char *key,
                                            size_t klen)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *id = t->v[mid].id;
        int c = strncmp(key, id, klen);
        if (c == 0 && id[klen] != '\0')
            c = -1; /* key is a proper prefix of id: sorts before it */
        if (c == 0)
            return &t->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int pricing_lookup(const struct price_table *t, const char *model, struct price *out)
{
    const struct price_entry *e;
    const char *colon;

    if (t == NULL || model == NULL)
        return -1;
    e = table_find(t, model, strlen(model));
    if (e == NULL && (colon = strrchr(model, ':')) != NULL && colon != model)
        e = table_find(t, model, (size_t)(colon - model));
    if (e == NULL || (e->price.has & (PRICE_PROMPT | PRICE_COMPLETION))
                         != (PRICE_PROMPT | PRICE_COMPLETION))
        return -1;
    *out = e->price;
    return 0;
}

size_t pricing_table_size(const struct price_table *t)
{
    return t != NULL ? t->n : 0;
}

void pricing_table_free(struct price_table *t)
{
    if (t == NULL)
        return;
    if (t->v != NULL)
        for (size_t i = 0; i < t->n; i++)
            free(t->v[i].id);
    free(t->v);
    free(t);
}

/* ---- persistence -------------------------------------------------------- */

static char *table_to_json(const struct price_table *t)
{
    cJSON *root = cJSON_CreateObject(), *data = NULL;
    char *s = NULL;

    if (root == NULL || (data = cJSON_AddArrayToObject(root, "data")) == NULL)
        goto done;
    for (size_t i = 0; i < t->n; i++) {
        struct price pr = t->v[i].price;
        cJSON *m = cJSON_CreateObject(), *pj;

        if (m == NULL)
            goto done;
        cJSON_AddItemToArray(data, m);
        if (cJSON_AddStringToObject(m, "id", t->v[i].id) == NULL
            || (pj = cJSON_AddObjectToObject(m, "pricing")) == NULL)
            goto done;
        for (size_t f = 0; f < NFIELDS; f++) {
            char num[PRICING_USD_BUFSZ];
            if (!(pr.has & price_fields[f].bit))
                continue;
            format_scaled(*price_field(&pr, f), ATTO_DIGITS, 0, num, sizeof num);
            if (cJSON_AddStringToObject(pj, price_fields[f].name, num) == NULL)
                goto done;
        }
    }
    s = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return s;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes the rename durable; best effort (some filesystems refuse). */
static void fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    int fd;

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        return;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int pricing_table_save(const struct price_table *t, const char *path)
{
    char *json = NULL, *tmp = NULL;
    int fd = -1, rc = -1, saved;
    size_t plen;

    if (t == NULL || path == NULL) {
        errno = EINVAL;
        return -1;
    }
    plen = strlen(path);
    if ((json = table_to_json(t)) == NULL || (tmp = malloc(plen + 5)) == NULL) {
        errno = ENOMEM;
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto done;
    if (write_all(fd, json, strlen(json)) < 0 || fsync(fd) < 0)
        goto done;
    if (close(fd) < 0) {
        fd = -1;
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto done;
    fsync_parent(path);
    rc = 0;
done:
    saved = errno;
    if (fd >= 0)
        close(fd);
    if (rc < 0 && tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(json);
    errno = saved;
    return rc;
}

struct price_table *pricing_table_load(const char *path, char *err, size_t errlen)
{
    struct price_table *t = NULL;
    struct stat st;
    char *text = NULL;
    size_t got = 0;
    int fd;

    if (path == NULL || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        util_set_err(err, errlen, "%s: %s", path ? path : "(null)", strerror(path ? errno : EINVAL));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)LOAD_MAX) {
        util_set_err(err, errlen, "%s: not a readable price file", path);
        goto done;
    }
    if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
        util_set_err(err, errlen, "out of memory");
        goto done;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            util_set_err(err, errlen, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0)
            break; /* shrank meanwhile: parse what is there */
        got += (size_t)r;
    }
    t = pricing_table_from_models_json(text, got, err, errlen);
done:
    close(fd);
    free(text);
    return t;
}

/* ---- the current table -------------------------------------------------- */

static pthread_once_t cur_once = PTHREAD_ONCE_INIT;
static pthread_rwlock_t cur_lock;
static struct price_table *cur; /* owned here; guarded by cur_lock */
static int64_t cur_set_ms;      /* unix ms cur was set; guarded by cur_lock */

/* Writers first: with many readers, glibc's default would let a steady
 * stream of lookups starve the refresh thread. */
static void cur_init(void)
{
    pthread_rwlockattr_t a;

    if (pthread_rwlockattr_init(&a) == 0) {
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&cur_lock, &a);
        pthread_rwlockattr_destroy(&a);
    } else {
        pthread_rwlock_init(&cur_lock, NULL);
    }
}

void pricing_set_current(struct price_table *t)
{
    struct price_table *old;

    pthread_once(&cur_once, cur_init);
    pthread_rwlock_wrlock(&cur_lock);
    old = cur;
    cur = t;
    cur_set_ms = t != NULL ? (int64_t)time(NULL) * 1000 : 0;
    pthread_rwlock_unlock(&cur_lock);
    pricing_table_free(old); /* no reader can hold it: they all left before wrlock returned */
}

int pricing_current_lookup(const char *model, struct price *out)
{
    int rc;

    pthread_once(&cur_once, cur_init);
    if (pthread_rwlock_rdlock(&cur_lock) != 0)
        return -1;
    rc = pricing_lookup(cur, model, out);
    pthread_rwlock_unlock(&cur_lock);
    return rc;
}

size_t pricing_current_size(void)
{
    size_t n;

    pthread_once(&cur_once, cur_init);
    if (pthread_rwlock_rdlock(&cur_lock) != 0)
        return 0;
    n = pricing_table_size(cur);
    pthread_rwlock_unlock(&cur_lock);
    return n;
}

int64_t pricing_current_each(void (*fn)(const char *model, const struct price *p, void *arg),
                             void *arg)
{
    int64_t at;

    pthread_once(&cur_once, cur_init);
    if (pthread_rwlock_rdlock(&cur_lock) != 0)
        return 0;
    for (size_t i = 0; fn != NULL && cur != NULL && i < cur->n; i++)
        fn(cur->v[i].id, &cur->v[i].price, arg);
    at = cur_set_ms;
    pthread_rwlock_unlock(&cur_lock);
    return at;
}

void pricing_shutdown(void)
{
    pricing_set_current(NULL);
}
