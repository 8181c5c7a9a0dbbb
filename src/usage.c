/* usage.c - see usage.h.  cJSON parses; only a few members are read, and
 * the text estimate is counted from the same parse, never by scanning the
 * raw bytes (which would depend on how upstream spaces its JSON). */
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

/* Characters (code points) of a decoded string: UTF-8 continuation bytes
 * do not start one. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Generated text anywhere in the chunk: the string values of "content",
 * "text" and "reasoning" members at any depth (delta.content,
 * choices[].text, content parts).  Walked from the parse, so whitespace and
 * escapes in the JSON do not matter.  The depth cap keeps the walk's stack
 * small whatever the nesting. */
static size_t text_chars(const cJSON *node, int depth)
{
    size_t total = 0;
    const cJSON *c;

    if (depth > 32)
        return 0;
    cJSON_ArrayForEach(c, node)
    {
        if (cJSON_IsString(c) && c->valuestring != NULL && c->string != NULL &&
            (strcmp(c->string, "content") == 0 || strcmp(c->string, "text") == 0 ||
             strcmp(c->string, "reasoning") == 0))
            total += utf8_chars(c->valuestring);
        else if (cJSON_IsObject(c) || cJSON_IsArray(c))
            total += text_chars(c, depth + 1);
    }
    return total;
}

int usage_parse(const char *json, size_t len, struct usage_info *ui)
{
    return usage_parse_chunk(json, len, ui, NULL);
}

int usage_parse_chunk(const char *json, size_t len, struct usage_info *ui, size_t *chars)
{
    cJSON *root = cJSON_ParseWithLength(json, len);

    if (chars != NULL)
        *chars = 0;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return -1;
    }
    fold(root, ui);
    if (chars != NULL)
        *chars = text_chars(root, 0);
    cJSON_Delete(root);
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
    struct usage_info scratch;
    size_t n;

    memset(&scratch, 0, sizeof scratch);
    usage_parse_chunk(data, len, &scratch, &n);
    usage_info_free(&scratch);
    return n;
}
