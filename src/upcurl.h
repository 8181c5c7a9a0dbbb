/* upcurl.h - what every curl request to upstream has in common, whichever
 * thread sends it (a worker's transfer, the housekeeping thread's GETs):
 * the Authorization line that carries the upstream key, wiped before it is
 * freed, and the options that keep curl from signals, foreign protocols
 * and environment proxies. */
#ifndef ORP_UPCURL_H
#define ORP_UPCURL_H

#include <curl/curl.h>

struct orp_config;

/* Appends "Authorization: Bearer <key>" to list.  The new list, or NULL
 * when memory ran out (list is then unchanged).  No copy of the key is
 * left behind but the list's own. */
struct curl_slist *upcurl_add_auth(struct curl_slist *list, const char *key);

/* Frees a header list, wiping its Authorization line first. */
void upcurl_free_headers(struct curl_slist *list);

/* The options every upstream request sets: no signals, http and https
 * only, no proxy from the environment, cfg's connect timeout. */
void upcurl_common(CURL *e, const struct orp_config *cfg);

#endif
