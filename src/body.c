/* body.c - see body.h.
 *
 * Two "model" members are refused rather than resolved: the model rules
 * would check the first while the upstream may use the last, which walks
 * around them.  cJSON keeps every duplicate member in the tree, so one
 * pass over the root's members counts them.  For the same reason bytes
 * after the object are refused: `{"model":"a"} {"model":"b"}` would be
 * checked as "a", while an upstream parser that reads values one by one
 * might take "b" (policy_apply_body refuses such a body as well).  A
 * "model" that is not valid UTF-8, or holds control characters, is refused
 * too: it would break every place that shows it. */
#include "body.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

enum body_result body_parse(const char *text, size_t len, struct body_fields *out)
{
    const char *end = NULL;
    cJSON *root, *item;
    int n = 0;

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
    cJSON_ArrayForEach(item, root) n += item->string != NULL && strcmp(item->string, "model") == 0;
    if (n > 1) {
        cJSON_Delete(root);
        return BODY_DUPLICATE_MODEL;
    }
    item = cJSON_GetObjectItemCaseSensitive(root, "model");
    /* cJSON takes any bytes inside a string.  A model name becomes a
     * metrics label, a ledger field and a /v1/usage group, all of which
     * need valid UTF-8, so a bad one is refused here, once. */
    if (cJSON_IsString(item) && !utf8_is_clean_name(item->valuestring, strlen(item->valuestring))) {
        cJSON_Delete(root);
        return BODY_INVALID_MODEL;
    }
    if (cJSON_IsString(item))
        out->model = strdup(item->valuestring);
    item = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (cJSON_IsNumber(item) && item->valuedouble > 0)
        out->max_tokens = item->valuedouble > 1e9 ? 1000000000L : (long)item->valuedouble;
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
    memset(f, 0, sizeof *f);
}
