/* body.h - what the proxy reads from a JSON request body before it goes
 * upstream: whether it is a JSON object with at most one "model", and the
 * few members the limits and the ledger need.
 *
 * Pure: no I/O, no request state, so it is unit tested and fuzzed on its
 * own; the HTTP front turns a refusal into a 400. */
#ifndef ORP_BODY_H
#define ORP_BODY_H

#include <stddef.h>

enum body_result {
    BODY_OK = 0,
    BODY_INVALID_JSON = -1,     /* not JSON, or more than blanks after the value */
    BODY_NOT_OBJECT = -2,       /* JSON, but not an object */
    BODY_DUPLICATE_MODEL = -3,  /* more than one "model" or "models" member */
    BODY_INVALID_MODEL = -4,    /* "model" is not valid UTF-8 or has control characters */
    BODY_BAD_MODELS = -5,       /* "models" is not an array of clean model names */
};

/* Owned by the caller; body_fields_free() releases the strings. */
struct body_fields {
    char *model;     /* "model" when it is a string, malloc'd, else NULL */
    char **models;   /* the "models" fallback list, malloc'd strings, or NULL */
    size_t n_models; /* entries in models */
    char *user;      /* "user" when it is a string, malloc'd, else NULL */
    long max_tokens; /* the larger of "max_tokens" and "max_completion_tokens" when a
                        number > 0 (capped at 1e9), else 0 */
    int stream;      /* "stream" is true */
};

/* Every model the request may be served by is "model" plus each entry of
 * "models" (OpenRouter's fallback list): the model rules and the budget
 * reservation look at all of them.
 *
 * Parses len bytes of text.  On BODY_OK out is filled; on any other result
 * out is zeroed and holds nothing to free. */
enum body_result body_parse(const char *text, size_t len, struct body_fields *out);
void body_fields_free(struct body_fields *f);

#endif
