/* usage.c - see usage.h.  cJSON parses; only a few members are read. */
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

int usage_parse(const char *json, size_t len, struct usage_info *ui)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *u, *choices, *c0;

    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return -1;
    }
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

static size_t string_value_chars(const char *data, size_t len, const char *key, size_t klen)
{
    size_t total = 0;
    const char *p = data, *end = data + len;

    while (p < end) {
        const char *k = memmem(p, (size_t)(end - p), key, klen);
        if (k == NULL)
            break;
        p = k + klen;
        /* Count characters up to the closing quote; an escape is one. */
        while (p < end && *p != '"') {
            if (*p == '\\') {
                p++;
                if (p < end && *p == 'u')
                    p += 4;
            }
            p++;
            total++;
        }
    }
    return total;
}

size_t usage_text_chars(const char *data, size_t len)
{
    return string_value_chars(data, len, "\"content\":\"", 11) +
           string_value_chars(data, len, "\"text\":\"", 8) +
           string_value_chars(data, len, "\"reasoning\":\"", 13);
}
