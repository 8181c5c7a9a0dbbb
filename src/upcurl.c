/* upcurl.c - see upcurl.h. */
#include "upcurl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

struct curl_slist *upcurl_add_auth(struct curl_slist *list, const char *key)
{
    size_t cap = strlen(key) + sizeof "Authorization: Bearer ";
    char *line = malloc(cap);
    struct curl_slist *n = NULL;

    if (line == NULL)
        return NULL;
    snprintf(line, cap, "Authorization: Bearer %s", key);
    n = curl_slist_append(list, line);
    explicit_bzero(line, cap);
    free(line);
    return n;
}

void upcurl_free_headers(struct curl_slist *list)
{
    for (struct curl_slist *h = list; h != NULL; h = h->next)
        if (strncasecmp(h->data, "Authorization:", 14) == 0)
            explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(list);
}

void upcurl_common(CURL *e, const struct orp_config *cfg)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)cfg->upstream_connect_timeout_s);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    /* Verification is never turned off; upstream.ca_file only says whom to trust. Set on
     * every transfer (handles are reused, a reload may change or clear it): the file alone,
     * or curl's built-in defaults back. */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (cfg->upstream_ca_file != NULL && cfg->upstream_ca_file[0] != '\0') {
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg->upstream_ca_file);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    } else {
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        int known = v->age >= CURLVERSION_NINTH;
        curl_easy_setopt(e, CURLOPT_CAINFO, known ? v->cainfo : NULL);
        curl_easy_setopt(e, CURLOPT_CAPATH, known ? v->capath : NULL);
    }
}
