/* apierr.c - see apierr.h.  cJSON does the escaping, so a message may
 * safely contain any text (it never contains a key: callers make sure). */
#include "apierr.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *apierr_type(unsigned status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "insufficient_quota";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_error";
    case 502:
    case 503:
        return "upstream_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
    }
}

char *apierr_json(unsigned status, const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    char *out = NULL;

    if (err != NULL && cJSON_AddStringToObject(err, "message", message) != NULL &&
        cJSON_AddStringToObject(err, "type", apierr_type(status)) != NULL &&
        cJSON_AddStringToObject(err, "code", code) != NULL)
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

char *apierr_sse_event(unsigned status, const char *code, const char *message)
{
    char *json = apierr_json(status, code, message);
    char *ev;
    size_t n;

    if (json == NULL)
        return NULL;
    n = strlen(json) + sizeof "data: \n\n";
    ev = malloc(n);
    if (ev != NULL)
        snprintf(ev, n, "data: %s\n\n", json);
    free(json);
    return ev;
}
