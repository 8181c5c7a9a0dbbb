/* usage.h - reading OpenRouter's usage accounting out of a response.
 *
 * Pure: given the JSON text of a non-streamed response or of one stream
 * chunk, fills what it carries.  The stream's usage arrives once, in the
 * last chunk before [DONE] (choices: []), after the finish_reason chunk. */
#ifndef ORP_USAGE_H
#define ORP_USAGE_H

#include <stddef.h>

/* Token counts are read clamped to [0, USAGE_MAX_TOKENS]. */
#define USAGE_MAX_TOKENS 1000000000000LL

struct usage {
    long long prompt_tokens, completion_tokens, total_tokens;
    long long cached_tokens, reasoning_tokens;
    double cost;                /* USD as OpenRouter reported it */
    int has_usage, has_cost;
};

struct usage_info {
    struct usage usage;         /* filled when the JSON has a usage object */
    char *model;                /* "model", malloc'd, or NULL */
    char *finish_reason;        /* choices[0].finish_reason (non-null), or NULL */
    char *gen_id;               /* "id", malloc'd, or NULL */
    char *provider;             /* "provider", malloc'd, or NULL */
    int is_error;               /* top-level "error" object present */
};

/* Parses json (need not be NUL-terminated).  Returns 0, or -1 when the text
 * is not a JSON object.  Fields absent from the text are left untouched, so
 * successive stream chunks can be folded into one usage_info. */
int usage_parse(const char *json, size_t len, struct usage_info *ui);

/* usage_parse, plus *chars (if not NULL): the characters of generated text
 * in the chunk ("content", "text" and "reasoning" string values at any
 * depth, decoded, counted in code points), for a local token estimate when
 * no usage arrives.  One parse serves both; any JSON spacing reads the
 * same.  *chars is 0 when the text is not a JSON object. */
int usage_parse_chunk(const char *json, size_t len, struct usage_info *ui, size_t *chars);
/* The *chars of usage_parse_chunk alone. */
size_t usage_text_chars(const char *data, size_t len);
void usage_info_free(struct usage_info *ui);

#endif
