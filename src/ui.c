/* ui.c - see ui.h. */
#include "ui.h"

#include <stdlib.h>
#include <string.h>

#include "apierr.h"
#include "config.h"
#include "util.h"

const struct ui_file *ui_find(const char *path)
{
    if (path[0] == '\0')
        path = "index.html";
    for (size_t i = 0; i < ui_files_n; i++)
        if (strcmp(ui_files[i].path, path) == 0)
            return &ui_files[i];
    return NULL;
}

/* On every /ui answer, a 404 and a redirect included: the page may run only
 * its own files (no inline script, nothing from elsewhere), may not be
 * framed, and no type is guessed from the bytes. */
static void security_headers(struct request *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Security-Policy", "default-src 'self'");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Request-Id", r->id);
}

static enum MHD_Result queue(struct request *r, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    security_headers(r, resp);
    r->status = status;
    request_phase(r, PHASE_RESPONDING); /* the commit point */
    if (r->t_first == 0)
        r->t_first = util_mono_ns();
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* A JSON answer that no cache keeps (MHD takes json, which may be NULL). */
static enum MHD_Result json_answer(struct request *r, unsigned status, char *json)
{
    struct MHD_Response *resp;

    if (json == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(json), json, free);
    if (resp == NULL) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return queue(r, status, resp);
}

/* GET /ui/auth.json: {"mode":"keys"|"none"}, so the console asks for a key
 * only when one is needed, without first drawing a 401 (anyone learns the
 * mode by sending a request without a key anyway). */
static enum MHD_Result auth_mode(struct request *r)
{
    return json_answer(r, 200, strdup(strcmp(r->cfg->auth_mode, "keys") == 0 ? "{\"mode\":\"keys\"}"
                                                                             : "{\"mode\":\"none\"}"));
}

/* An empty answer with headers: the redirect and the 304. */
static struct MHD_Response *empty(void)
{
    return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
}

enum MHD_Result ui_respond(struct request *r, const char *url)
{
    const struct ui_file *f;
    const char *inm;
    struct MHD_Response *resp;

    if (strcmp(url, "/ui") == 0) {
        if ((resp = empty()) == NULL)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, "/ui/");
        return queue(r, 301, resp);
    }
    if (strcmp(url, "/ui/auth.json") == 0)
        return auth_mode(r);
    /* route.c only sends "/ui" and "/ui/...": the rest is the file's path.
     * Exact lookup in a fixed table, so "..", "%2e" and the like are 404s. */
    if ((f = ui_find(url + 4)) == NULL)
        return json_answer(r, 404, apierr_json(404, "not_found", "no such console file"));
    inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm != NULL && strstr(inm, f->etag) != NULL) {
        resp = empty();
        if (resp == NULL)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, f->etag);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        return queue(r, 304, resp);
    }
    resp = MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, f->ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, f->etag);
    /* The names carry no hash: revalidate every time (a cheap 304), so a new
     * binary's console is never mixed with an old cached script. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return queue(r, 200, resp);
}
