/* body.c - see body.h.
 *
 * Two "model" members are refused rather than resolved: the model rules
 * would check the first while the upstream may use the last, which walks
 * around them.  cJSON keeps every duplicate member in the tree, so one
 * pass over the root's members counts them.  For the same reason bytes
 * after the object are refused: `{"model":"a"} {"model":"b"}` would be
 * checked as "a", while an upstream parser that reads values one by one
 * might take "b" (bodyedit_apply refuses such a body as well).  The same
 * holds for "models", the fallback list: OpenRouter may serve any entry,
 * so a list the rules cannot read (not an array of strings) is refused.  A
 * "model" (or a fallback) that is not valid UTF-8, or holds control
 * characters, is refused too: it would break every place that shows it. */
#include "body.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* "models": absent or null is no list; anything but an array of strings
 * is refused.  0 or -1. */
static int read_models(const cJSON *list, struct body_fields *out)
{
    const cJSON *item;
    int n;

    if (list == NULL || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list))
        return -1;
    n = cJSON_GetArraySize(list);
    if (n == 0)
        return 0;
    out->models = calloc((size_t)n, sizeof *out->models);
    if (out->models == NULL)
        return -1;
    cJSON_ArrayForEach(item, list)
    {
        if (!cJSON_IsString(item) ||
            !utf8_is_clean_name(item->valuestring, strlen(item->valuestring)) ||
            (out->models[out->n_models] = strdup(item->valuestring)) == NULL)
            return -1;
        out->n_models++;
    }
    return 0;
}

enum body_result body_parse(const char *text, size_t len, struct body_fields *out)
{
    const char *end = NULL;
    cJSON *root, *item;
    int n = 0, nm = 0;

    memset(out, 0, sizeof *out);
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root == NULL)
        return BODY_INVALID_JSON;
    for (; end < text + len; end++) { /* JSON's blanks may follow, nothing else */
        if (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
            continue;
        cJSON_Delete(root);
        return BODY_INVALID_JSON;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return BODY_NOT_OBJECT;
    }
    cJSON_ArrayForEach(item, root)
    {
        n += item->string != NULL && strcmp(item->string, "model") == 0;
        nm += item->string != NULL && strcmp(item->string, "models") == 0;
    }
    if (n > 1 || nm > 1) {
        cJSON_Delete(root);
        return BODY_DUPLICATE_MODEL;
    }
    if (read_models(cJSON_GetObjectItemCaseSensitive(root, "models"), out) < 0) {
        cJSON_Delete(root);
        body_fields_free(out);
        return BODY_BAD_MODELS;
    }
    item = cJSON_GetObjectItemCaseSensitive(root, "model");
    /* cJSON takes any bytes inside a string.  A model name becomes a
     * metrics label, a ledger field and a /v1/usage group, all of which
     * need valid UTF-8, so a bad one is refused here, once. */
    if (cJSON_IsString(item) && !utf8_is_clean_name(item->valuestring, strlen(item->valuestring))) {
        cJSON_Delete(root);
        body_fields_free(out); /* the "models" list read above */
        return BODY_INVALID_MODEL;
    }
    if (cJSON_IsString(item))
        out->model = strdup(item->valuestring);
    /* OpenAI's newer name for the same cap: the larger one bounds the answer. */
    for (int k = 0; k < 2; k++) {
        item = cJSON_GetObjectItemCaseSensitive(root, k ? "max_completion_tokens" : "max_tokens");
        if (cJSON_IsNumber(item) && item->valuedouble > 0) {
            long v = item->valuedouble > 1e9 ? 1000000000L : (long)item->valuedouble;
            if (v > out->max_tokens)
                out->max_tokens = v;
        }
    }
    item = cJSON_GetObjectItemCaseSensitive(root, "user");
    if (cJSON_IsString(item))
        out->user = strdup(item->valuestring);
    item = cJSON_GetObjectItemCaseSensitive(root, "stream");
    out->stream = cJSON_IsTrue(item);
    cJSON_Delete(root);
    return BODY_OK;
}

void body_fields_free(struct body_fields *f)
{
    free(f->model);
    free(f->user);
    for (size_t i = 0; i < f->n_models; i++)
        free(f->models[i]);
    free(f->models);
    memset(f, 0, sizeof *f);
}
