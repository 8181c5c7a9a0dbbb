/* apierr.h - the one place that builds errors in the OpenAI error shape:
 *     {"error":{"message":"...","type":"...","code":"..."}}
 * Every error orproxy itself produces goes through here, as a JSON body or
 * as a final SSE event. */
#ifndef ORP_APIERR_H
#define ORP_APIERR_H

/* The "type" for an HTTP status: 400-499 invalid_request_error (401
 * authentication_error, 403 permission_error, 429 rate_limit_error), 500
 * server_error, 502/503 upstream_error, 504 timeout_error. */
const char *apierr_type(unsigned status);

/* Returns a malloc'd JSON text; NULL only on allocation failure. */
char *apierr_json(unsigned status, const char *code, const char *message);

/* Returns a malloc'd SSE event "data: {...}\n\n" carrying the error. */
char *apierr_sse_event(unsigned status, const char *code, const char *message);

#endif
