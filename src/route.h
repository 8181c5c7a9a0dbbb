/* route.h - which request paths orproxy serves and how.
 *
 * A pure table lookup: the HTTP front asks route_match() for every request.
 * API paths are accepted under "/v1/" and under OpenRouter's own "/api/v1/"
 * prefix and are forwarded to upstream.base_url + the tail ("/chat/...").
 * Local paths (health) are answered by orproxy itself.  Every path under
 * "/admin/v1/" is one route (ROUTE_ADMIN): admin.c dispatches on the rest
 * of the path and the method.  /ui and everything under /ui/ is the
 * operator console's files (ui.c). */
#ifndef ORP_ROUTE_H
#define ORP_ROUTE_H

enum route_kind { ROUTE_UPSTREAM, ROUTE_HEALTHZ, ROUTE_READYZ, ROUTE_METRICS, ROUTE_USAGE, ROUTE_KEY,
                  ROUTE_ADMIN, ROUTE_UI };

struct route {
    const char *tail;        /* "/chat/completions"; for local routes the full path */
    const char *method;      /* "POST" or "GET"; "*" any (the route checks it) */
    enum route_kind kind;
    int json_body;           /* the body must be a JSON object */
};

enum route_result { ROUTE_OK = 0, ROUTE_NOT_FOUND = -1, ROUTE_BAD_METHOD = -2 };

/* Matches url (path only, no query) and method.  On ROUTE_OK *out is the
 * route; on ROUTE_BAD_METHOD *out is the route whose method is allowed
 * (for the Allow header).  *out is NULL on ROUTE_NOT_FOUND. */
enum route_result route_match(const char *url, const char *method, const struct route **out);

#endif
