/* usage.c - see usage.h.  cJSON parses what is accounted for; stream chunks
 * are first walked by a small allocation-free scanner of the JSON grammar
 * (see "the scan" below), which counts the text estimate and says whether
 * the chunk needs the cJSON parse at all. */
#include "usage.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void take_string(char **dst, const cJSON *item)
{
    if (cJSON_IsString(item) && item->valuestring != NULL) {
        char *s = strdup(item->valuestring);
        if (s != NULL) {
            free(*dst);
            *dst = s;
        }
    }
}

/* A token count.  cJSON holds numbers as doubles, and converting one
 * outside long long's range (1e300, inf from 1e999) is undefined, so the
 * value is clamped first: to 0 below (a negative count would credit the
 * client's token window) and to USAGE_MAX_TOKENS above, which keeps sums
 * of counts (total_tokens, window and ledger totals) far from overflow. */
static int get_ll(const cJSON *obj, const char *name, long long *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    double v;

    if (!cJSON_IsNumber(it) || isnan(it->valuedouble))
        return 0;
    v = it->valuedouble;
    *out = v <= 0 ? 0 : v >= (double)USAGE_MAX_TOKENS ? USAGE_MAX_TOKENS : (long long)v;
    return 1;
}

/* Folds what root carries into ui; see usage_parse. */
static void fold(const cJSON *root, struct usage_info *ui)
{
    const cJSON *u, *choices, *c0;

    take_string(&ui->model, cJSON_GetObjectItemCaseSensitive(root, "model"));
    take_string(&ui->gen_id, cJSON_GetObjectItemCaseSensitive(root, "id"));
    take_string(&ui->provider, cJSON_GetObjectItemCaseSensitive(root, "provider"));
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "error")))
        ui->is_error = 1;
    choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    if (c0 != NULL) {
        take_string(&ui->finish_reason, cJSON_GetObjectItemCaseSensitive(c0, "finish_reason"));
        if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c0, "error")))
            ui->is_error = 1;
    }
    u = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (cJSON_IsObject(u)) {
        struct usage *us = &ui->usage;
        const cJSON *cost = cJSON_GetObjectItemCaseSensitive(u, "cost");
        us->has_usage = 1;
        get_ll(u, "prompt_tokens", &us->prompt_tokens);
        get_ll(u, "completion_tokens", &us->completion_tokens);
        if (!get_ll(u, "total_tokens", &us->total_tokens))
            us->total_tokens = us->prompt_tokens + us->completion_tokens;
        get_ll(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens",
               &us->cached_tokens);
        get_ll(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens_details"), "reasoning_tokens",
               &us->reasoning_tokens);
        if (cJSON_IsNumber(cost)) {
            us->cost = cost->valuedouble;
            us->has_cost = 1;
        }
    }
}

/* --- the scan: one pass over a chunk, no allocation ------------------------
 *
 * Most stream chunks carry a few characters of text and nothing to account
 * for, so building a cJSON tree for each (three allocations a member) would
 * cost more than relaying it.  The scan walks the JSON grammar itself, so
 * whitespace and escapes read as they mean (matching raw bytes such as
 * "finish_reason":" missed chunks spaced otherwise): it counts the decoded
 * characters of "content", "text" and "reasoning" string values at any
 * depth, and notes whether the chunk holds anything fold() reads ("usage",
 * "error", a non-null "finish_reason"), which is then parsed with cJSON. */

#define SCAN_MAX_DEPTH 64

struct scan {
    const char *p, *end;
    size_t chars;   /* decoded characters of text values */
    int interesting; /* usage, error or a non-null finish_reason seen */
    int depth;
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The escape at s->p (its backslash), checked and stepped over: s->p is left
 * on its last byte.  Returns the decoded characters it stands for (0 for a
 * high surrogate, whose low half counts the pair), or -1 when malformed. */
static int scan_escape(struct scan *s)
{
    if (++s->p >= s->end)
        return -1;
    if (*s->p == 'u') {
        if (s->end - s->p < 5)
            return -1;
        for (int i = 1; i <= 4; i++)
            if (hexval(s->p[i]) < 0)
                return -1;
        /* A high surrogate's low half is a second \u: count the pair once. */
        int high = hexval(s->p[1]) == 0xd && hexval(s->p[2]) >= 0xc;
        s->p += 4;
        return high ? 0 : 1;
    }
    return strchr("\"\\/bfnrt", *s->p) == NULL ? -1 : 1;
}

/* Appends len raw bytes of a member name to key (k bytes so far): up to
 * cap-1 bytes fit; a longer name leaves k at cap, so it matches no name. */
static size_t key_append(char *key, size_t cap, size_t k, const char *run, size_t len)
{
    if (k < cap && k + len < cap) {
        memcpy(key + k, run, len);
        return k + len;
    }
    if (k < cap - 1)
        memcpy(key + k, run, cap - 1 - k);
    return cap;
}

/* A string at s->p (its opening quote).  Counts its decoded characters into
 * *chars when chars != NULL; copies up to cap-1 raw bytes of it into key
 * (for member names; longer names are marked by a non-matching copy).
 * 0, or -1 when it is not a well-formed JSON string.  A string whose
 * characters are not counted (names, ids, model names: most of a chunk) is
 * skipped to its next quote or backslash in one tight loop. */
static int scan_string(struct scan *s, size_t *chars, char *key, size_t cap)
{
    size_t n = 0, k = 0;

    if (s->p >= s->end || *s->p != '"')
        return -1;
    for (s->p++; s->p < s->end; s->p++) {
        unsigned char c = (unsigned char)*s->p;
        if (chars == NULL) {
            const char *run = s->p;
            while (c != '"' && c != '\\' && ++s->p < s->end)
                c = (unsigned char)*s->p;
            if (s->p >= s->end)
                return -1;
            if (key != NULL && s->p > run)
                k = key_append(key, cap, k, run, (size_t)(s->p - run));
        }
        if (c == '"') {
            s->p++;
            if (key != NULL)
                key[k < cap ? k : cap - 1] = '\0';
            if (chars != NULL)
                *chars += n;
            return 0;
        }
        if (key != NULL)
            k = key_append(key, cap, k, s->p, 1);
        if (c == '\\') {
            int e = scan_escape(s);
            if (e < 0)
                return -1;
            n += (size_t)e;
        } else {
            n += (c & 0xC0) != 0x80; /* UTF-8 continuation bytes start no character */
        }
    }
    return -1;
}

/* What a member's name means to the scan, worked out once per member. */
enum member { M_OTHER, M_TEXT, M_MARK, M_FINISH };

static enum member member_kind(const char *key)
{
    const char *name; /* the one name of interest starting with key's first byte */
    enum member kind;

    switch (key[0]) {
    case 'c': name = "content", kind = M_TEXT; break;
    case 't': name = "text", kind = M_TEXT; break;
    case 'r': name = "reasoning", kind = M_TEXT; break;
    case 'u': name = "usage", kind = M_MARK; break;
    case 'e': name = "error", kind = M_MARK; break;
    case 'f': name = "finish_reason", kind = M_FINISH; break;
    default: return M_OTHER;
    }
    return strcmp(key, name) == 0 ? kind : M_OTHER;
}

static int scan_value(struct scan *s, enum member kind);

/* An object or array at s->p; for an object, each member's value is scanned
 * knowing its name. */
static int scan_container(struct scan *s, int object)
{
    char close = object ? '}' : ']', key[16];

    if (++s->depth > SCAN_MAX_DEPTH)
        return -1;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        key[0] = '\0';
        if (object) {
            skip_ws(s);
            if (scan_string(s, NULL, key, sizeof key) < 0)
                return -1;
            skip_ws(s);
            if (s->p >= s->end || *s->p++ != ':')
                return -1;
        }
        if (scan_value(s, object ? member_kind(key) : M_OTHER) < 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p++ != close)
            return -1;
        s->depth--;
        return 0;
    }
}

static int scan_literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int is_number_byte(char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

static int scan_value(struct scan *s, enum member kind)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    if (kind == M_MARK || (kind == M_FINISH && *s->p != 'n'))
        s->interesting = 1;
    switch (*s->p) {
    case '"':
        return scan_string(s, kind == M_TEXT ? &s->chars : NULL, NULL, 0);
    case '{':
        return scan_container(s, 1);
    case '[':
        return scan_container(s, 0);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        if (*s->p != '-' && (*s->p < '0' || *s->p > '9'))
            return -1;
        while (s->p < s->end && is_number_byte(*s->p))
            s->p++;
        return 0;
    }
}

int usage_parse(const char *json, size_t len, struct usage_info *ui)
{
    cJSON *root = cJSON_ParseWithLength(json, len);

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return -1;
    }
    fold(root, ui);
    cJSON_Delete(root);
    return 0;
}

/* Scans a whole chunk: 0 when it is one JSON object and nothing after. */
static int scan_chunk(struct scan *s)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{' || scan_value(s, M_OTHER) < 0)
        return -1;
    skip_ws(s);
    return s->p == s->end ? 0 : -1;
}

int usage_parse_chunk(const char *json, size_t len, struct usage_info *ui, size_t *chars)
{
    struct scan s = {.p = json, .end = json + len};

    if (chars != NULL)
        *chars = 0;
    if (scan_chunk(&s) < 0)
        return -1;
    if (chars != NULL)
        *chars = s.chars;
    /* The first chunk names the generation and the model; after that only
     * chunks with something to account for are worth a parse. */
    if (s.interesting || ui->gen_id == NULL || ui->model == NULL)
        return usage_parse(json, len, ui);
    return 0;
}

void usage_info_free(struct usage_info *ui)
{
    free(ui->model);
    free(ui->finish_reason);
    free(ui->gen_id);
    free(ui->provider);
    memset(ui, 0, sizeof *ui);
}

size_t usage_text_chars(const char *data, size_t len)
{
    struct scan s = {.p = data, .end = data + len};

    return scan_chunk(&s) == 0 ? s.chars : 0;
}
