/* respond.c - see respond.h. */
#include "respond.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apierr.h"
#include "relay.h"
#include "util.h"

#define STREAM_BLOCK 1024        /* MHD's per-response buffer for streams */

static void add_common_headers(struct request *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (r->route != NULL && r->route->kind == ROUTE_ADMIN) { /* also on its errors */
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    }
}

enum MHD_Result respond_local(struct request *r)
{
    const char *msg = r->local_msg ? r->local_msg : "error";
    char *json;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (r->local_status == 200) {
        json = strdup("{\"status\":\"ok\"}");
    } else {
        json = apierr_json(r->local_status, r->local_code, msg);
    }
    if (json == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(json), json, free);
    if (resp == NULL) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (r->local_retry_after > 0) {
        char ra[24];
        snprintf(ra, sizeof ra, "%ld", r->local_retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (r->local_status == 405 && r->route != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                strcmp(r->route->method, "GET") == 0 ? "GET, HEAD" : r->route->method);
    add_common_headers(r, resp);
    r->status = r->local_status;
    request_phase(r, PHASE_RESPONDING); /* the commit point */
    if (r->t_first == 0)
        r->t_first = util_mono_ns();
    ret = MHD_queue_response(r->conn, r->local_status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct request *r = cls;
    size_t n;
    (void)pos;

    if ((n = relay_read(r, out, max)) > 0)
        return (ssize_t)n;
    if (r->upstream_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    return 0;
}

static void free_buffer_base(void *base)
{
    free(base);
}

enum MHD_Result respond_upstream(struct request *r)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (r->streaming) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, r,
                                                 NULL);
    } else {
        /* Hand the body buffer to MHD: no copy. */
        char *base;
        const char *head;
        size_t len;
        relay_take_body(r, &base, &head, &len);
        resp = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)head,
                                                                      free_buffer_base, base);
        if (resp == NULL)
            free(base);
    }
    if (resp == NULL)
        return MHD_NO;
    for (size_t i = 0; i < r->n_rhdrs; i++)
        MHD_add_response_header(resp, r->rhdrs[i].name, r->rhdrs[i].value);
    add_common_headers(r, resp);
    r->status = (unsigned)r->at.status;
    request_phase(r, PHASE_RESPONDING); /* the commit point */
    if (!r->streaming && r->t_first == 0)
        r->t_first = util_mono_ns();
    ret = MHD_queue_response(r->conn, (unsigned)r->at.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue_json(struct request *r, unsigned status, char *text, const char *ctype)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (text == NULL)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_common_headers(r, resp);
    r->status = status;
    request_phase(r, PHASE_RESPONDING); /* the commit point */
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* A local endpoint's answer (local.c): MHD takes the text. */
enum MHD_Result respond_reply(struct request *r)
{
    char *text = r->reply;
    r->reply = NULL;
    return queue_json(r, r->reply_status, text, r->reply_ctype);
}

