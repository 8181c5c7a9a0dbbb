/* bodyedit.h - the edits a client's rules make to a request body: model
 * aliases, request defaults, a system prompt.
 *
 * The alias and defaults structs are defined here, once: the
 * configuration (config.h) holds them as parsed, and the editor reads
 * them as they are, with no copy in between.  Pure functions, safe from
 * any thread; everything a struct bodyedit points to is borrowed from the
 * caller (the configuration) for the duration of the call. */
#ifndef ORP_BODYEDIT_H
#define ORP_BODYEDIT_H

#include <stddef.h>

/* A model name an app uses, mapped to an OpenRouter id. */
struct bodyedit_alias {
    char *from, *to;
};

/* Request defaults applied only where the request leaves a field out. */
struct bodyedit_defaults {
    char *model, *system_prompt; /* NULL: none */
    char *context;               /* RAG context: "Context:\n" + it, a second system message */
    int has_temperature, has_top_p, has_max_tokens, has_frequency_penalty, has_presence_penalty;
    double temperature, top_p, frequency_penalty, presence_penalty;
    long max_tokens;
};

/* What to change in a request body: a client's aliases, then the global
 * ones (the first match wins), and the client's defaults. */
struct bodyedit {
    const struct bodyedit_alias *aliases; /* searched first ... */
    size_t n_aliases;
    const struct bodyedit_alias *more_aliases; /* ... then these */
    size_t n_more_aliases;
    const struct bodyedit_defaults *defaults; /* NULL: none */
};

/* 1 when e could change some body (an alias or a default exists), else 0:
 * the caller skips the second parse of the body, the common case. */
int bodyedit_needed(const struct bodyedit *e);

/* Applies e to a JSON object body of len bytes:
 *  - "model" absent and defaults->model set: "model" becomes it;
 *  - "model" (now) and each string in a "models" array equal to an
 *    alias's from becomes its to (once, no chains);
 *  - each default is added only where its field is absent (a present null
 *    counts as present; max_tokens is also left out when the request has
 *    max_completion_tokens);
 *  - defaults->system_prompt: when "messages" is an array without a message whose
 *    role is "system", {"role":"system","content":...} goes first;
 *  - defaults->context: when "messages" is an array without a system message
 *    starting "Context:\n", {"role":"system","content":"Context:\n..."} goes
 *    after the first message if that is a system message, else first.
 * Returns a malloc'd compact JSON text (the caller frees it) with
 * *changed = 1; or NULL with *changed = 0 when nothing applies, and the
 * caller forwards the original bytes untouched; or NULL with *changed = 0
 * and a message in err when the body is not a JSON object (or memory ran
 * out).  Members the edits do not touch survive, number literals byte for
 * byte. */
char *bodyedit_apply(const char *body, size_t len, const struct bodyedit *e, char *err,
                     size_t errlen, int *changed);

#endif
