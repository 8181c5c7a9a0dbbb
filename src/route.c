/* route.c - the route table.  See route.h.
 *
 * The table is small and fixed, so a linear scan over it beats any index;
 * the prefix is stripped once and the tail compared exactly (no pattern
 * matching: a path orproxy does not know is a 404, never forwarded). */
#include "route.h"

#include <stddef.h>
#include <string.h>

static const struct route upstream_routes[] = {
    {"/chat/completions", "POST", ROUTE_UPSTREAM, 1},
    {"/completions", "POST", ROUTE_UPSTREAM, 1},
    {"/embeddings", "POST", ROUTE_UPSTREAM, 1},
    {"/responses", "POST", ROUTE_UPSTREAM, 1},
    {"/messages", "POST", ROUTE_UPSTREAM, 1},
    {"/rerank", "POST", ROUTE_UPSTREAM, 1},
    {"/models", "GET", ROUTE_UPSTREAM, 0},
    {"/providers", "GET", ROUTE_UPSTREAM, 0},
    {"/generation", "GET", ROUTE_UPSTREAM, 0},
    {"/usage", "GET", ROUTE_USAGE, 0}, /* answered from the local ledger */
    {"/key", "GET", ROUTE_KEY, 0},     /* the calling client's own limits and spend */
};

static const struct route local_routes[] = {
    {"/healthz", "GET", ROUTE_HEALTHZ, 0},
    {"/readyz", "GET", ROUTE_READYZ, 0},
    {"/metrics", "GET", ROUTE_METRICS, 0},
};

/* Any method: admin.c answers 405 itself.  The body is kept (json_body). */
static const struct route admin_route = {"/admin/v1/", "*", ROUTE_ADMIN, 1};

/* "/ui" and every path under "/ui/": ui.c picks the file (or a 404). */
static const struct route ui_route = {"/ui/", "GET", ROUTE_UI, 0};

static enum route_result pick(const struct route *r, const char *method, const struct route **out)
{
    *out = r;
    if (strcmp(method, r->method) == 0 || strcmp(r->method, "*") == 0)
        return ROUTE_OK;
    /* HEAD is GET without a body; MHD drops the body for us. */
    if (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)
        return ROUTE_OK;
    return ROUTE_BAD_METHOD;
}

enum route_result route_match(const char *url, const char *method, const struct route **out)
{
    const char *tail = NULL;
    size_t i;

    *out = NULL;
    for (i = 0; i < sizeof local_routes / sizeof local_routes[0]; i++)
        if (strcmp(url, local_routes[i].tail) == 0)
            return pick(&local_routes[i], method, out);
    if (strcmp(url, "/ui") == 0 || strncmp(url, "/ui/", 4) == 0)
        return pick(&ui_route, method, out);

    if (strncmp(url, "/admin/v1/", 10) == 0)
        return pick(&admin_route, method, out);
    if (strncmp(url, "/v1/", 4) == 0)
        tail = url + 3;
    else if (strncmp(url, "/api/v1/", 8) == 0)
        tail = url + 7;
    if (tail == NULL)
        return ROUTE_NOT_FOUND;
    for (i = 0; i < sizeof upstream_routes / sizeof upstream_routes[0]; i++)
        if (strcmp(tail, upstream_routes[i].tail) == 0)
            return pick(&upstream_routes[i], method, out);
    return ROUTE_NOT_FOUND;
}
