/* bodyedit.c - the request body edits: aliases, defaults, system prompt.
 * See bodyedit.h.
 *
 * Body edits parse with cJSON and print compactly; cJSON keeps numbers as
 * doubles, which would turn a 19-digit "seed" into 1.2345678901234568e+18,
 * so before printing every number is replaced by its literal text from the
 * original body (the body's number tokens and the tree's number nodes come
 * in the same document order, and the edits add numbers only as raw
 * text). */
#include "bodyedit.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The next number token of a JSON text cJSON has accepted: outside
 * strings a '-' or a digit can only start a number, and the number runs
 * over the characters cJSON's parse_number takes. */
static int next_number(const char **pp, const char *end, const char **lit, size_t *n)
{
    const char *p = *pp;

    while (p < end) {
        if (*p == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            p++;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            *lit = p;
            while (p < end && *p != '\0' && strchr("0123456789+-.eE", *p) != NULL)
                p++;
            *n = (size_t)(p - *lit);
            *pp = p;
            return 0;
        } else {
            p++;
        }
    }
    return -1;
}

/* Replaces every number under node, in document order, by a raw node with
 * its literal text.  0, or -1 (out of memory, or the texts disagree). */
static int keep_number_literals(cJSON *node, const char **pp, const char *end)
{
    cJSON *c, *next;

    for (c = node->child; c != NULL; c = next) {
        next = c->next;
        if (cJSON_IsNumber(c)) {
            const char *lit;
            size_t n;
            char *text;
            cJSON *raw;
            if (next_number(pp, end, &lit, &n) < 0 || (text = malloc(n + 1)) == NULL)
                return -1;
            memcpy(text, lit, n);
            text[n] = '\0';
            raw = cJSON_CreateRaw(text);
            free(text);
            if (raw == NULL)
                return -1;
            raw->string = c->string; /* the member name moves to the raw node */
            c->string = NULL;
            cJSON_ReplaceItemViaPointer(node, c, raw);
        } else if (c->child != NULL && keep_number_literals(c, pp, end) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The shortest %g text that reads back as v. */
static void format_double(double v, char *out, size_t cap)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* An edit in progress: the changes made so far, and whether one could not
 * be made (out of memory). */
struct edit_run {
    int n, failed;
};

static void count(struct edit_run *run, int ok)
{
    if (ok)
        run->n++;
    else
        run->failed = 1;
}

/* Adds name = text (a JSON number) unless the member is present. */
static void add_default(struct edit_run *run, cJSON *root, const char *name, const char *text)
{
    if (cJSON_GetObjectItemCaseSensitive(root, name) == NULL)
        count(run, cJSON_AddRawToObject(root, name, text) != NULL);
}

static void add_default_double(struct edit_run *run, cJSON *root, const char *name, int has,
                               double v)
{
    char text[40];

    if (!has || !isfinite(v))
        return;
    format_double(v, text, sizeof text);
    add_default(run, root, name, text);
}

/* The alias list's entry for name, or NULL. */
static const struct bodyedit_alias *find_alias(const struct bodyedit_alias *v, size_t n,
                                               const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].from != NULL && v[i].to != NULL && strcmp(name, v[i].from) == 0)
            return &v[i];
    return NULL;
}

/* Renames item when it is a string naming an alias. */
static void apply_alias(struct edit_run *run, const struct bodyedit *e, cJSON *item)
{
    const struct bodyedit_alias *a;

    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return;
    a = find_alias(e->aliases, e->n_aliases, item->valuestring);
    if (a == NULL)
        a = find_alias(e->more_aliases, e->n_more_aliases, item->valuestring);
    if (a != NULL)
        count(run, cJSON_SetValuestring(item, a->to) != NULL);
}

static int has_system_message(const cJSON *messages)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "system") == 0)
            return 1;
    }
    return 0;
}

/* 1 when a system message's content starts with "Context:\n". */
static int has_context_message(const cJSON *messages)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "system") == 0 &&
            cJSON_IsString(content) && strncmp(content->valuestring, "Context:\n", 9) == 0)
            return 1;
    }
    return 0;
}

/* cJSON 1.7.15 refuses an insert at 1 after one at 0 (its prev links), so
 * only ever insert at the head: the first item is taken off and put back. */
static int insert_at(cJSON *array, int at, cJSON *item)
{
    cJSON *first = at > 0 ? cJSON_DetachItemFromArray(array, 0) : NULL;

    if (!cJSON_InsertItemInArray(array, 0, item)) {
        if (first != NULL)
            cJSON_InsertItemInArray(array, 0, first);
        return 0;
    }
    return first == NULL || cJSON_InsertItemInArray(array, 0, first);
}

/* Puts {"role":"system","content":prefix prompt} at index at (0 or 1). */
static void insert_system(struct edit_run *run, cJSON *messages, int at, const char *prefix,
                          const char *prompt)
{
    cJSON *sys = cJSON_CreateObject();
    size_t n = strlen(prefix) + strlen(prompt) + 1;
    char *text = malloc(n);

    if (text != NULL)
        snprintf(text, n, "%s%s", prefix, prompt);
    if (sys == NULL || text == NULL || cJSON_AddStringToObject(sys, "role", "system") == NULL ||
        cJSON_AddStringToObject(sys, "content", text) == NULL || !insert_at(messages, at, sys)) {
        free(text);
        cJSON_Delete(sys);
        count(run, 0);
        return;
    }
    free(text);
    count(run, 1);
}

/* Applies every edit to root: the number of changes made, or -1. */
static int edit(cJSON *root, const struct bodyedit *e)
{
    static const struct bodyedit_defaults none;
    const struct bodyedit_defaults *d = e->defaults != NULL ? e->defaults : &none;
    struct edit_run run = {0, 0};
    cJSON *model, *models, *m, *messages;

    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model == NULL && d->model != NULL) {
        model = cJSON_AddStringToObject(root, "model", d->model);
        count(&run, model != NULL);
    }
    apply_alias(&run, e, model);
    models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (cJSON_IsArray(models))
        cJSON_ArrayForEach(m, models)
            apply_alias(&run, e, m);
    add_default_double(&run, root, "temperature", d->has_temperature, d->temperature);
    add_default_double(&run, root, "top_p", d->has_top_p, d->top_p);
    /* max_completion_tokens is the newer name of the same limit */
    if (d->has_max_tokens &&
        cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens") == NULL) {
        char text[24];
        snprintf(text, sizeof text, "%ld", d->max_tokens);
        add_default(&run, root, "max_tokens", text);
    }
    add_default_double(&run, root, "frequency_penalty", d->has_frequency_penalty,
                       d->frequency_penalty);
    add_default_double(&run, root, "presence_penalty", d->has_presence_penalty,
                       d->presence_penalty);
    messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (d->system_prompt != NULL && cJSON_IsArray(messages) && !has_system_message(messages))
        insert_system(&run, messages, 0, "", d->system_prompt);
    /* The client's RAG context: a second system message, after the system
     * prompt, unless the request brings its own "Context:" message. */
    if (d->context != NULL && cJSON_IsArray(messages) && !has_context_message(messages)) {
        const cJSON *first = cJSON_GetArrayItem(messages, 0), *role;
        int after = first != NULL && cJSON_IsString(role = cJSON_GetObjectItemCaseSensitive(first, "role")) &&
                    strcmp(role->valuestring, "system") == 0;
        insert_system(&run, messages, after, "Context:\n", d->context);
    }
    return run.failed ? -1 : run.n;
}

int bodyedit_needed(const struct bodyedit *e)
{
    const struct bodyedit_defaults *d = e->defaults;

    return e->n_aliases > 0 || e->n_more_aliases > 0 ||
           (d != NULL && (d->model != NULL || d->system_prompt != NULL || d->context != NULL || d->has_temperature ||
                          d->has_top_p || d->has_max_tokens || d->has_frequency_penalty ||
                          d->has_presence_penalty));
}

static int only_whitespace(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

char *bodyedit_apply(const char *body, size_t len, const struct bodyedit *e, char *err,
                        size_t errlen, int *changed)
{
    const char *parse_end = NULL, *numbers = body;
    cJSON *root = NULL;
    char *out = NULL;
    int n;

    *changed = 0;
    if (body != NULL)
        root = cJSON_ParseWithLengthOpts(body, len, &parse_end, 0);
    if (!cJSON_IsObject(root) || !only_whitespace(parse_end, body + len)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "request body must be a JSON object");
        goto done;
    }
    if ((n = edit(root, e)) < 0 || (n > 0 && keep_number_literals(root, &numbers, body + len) < 0))
        goto fail;
    if (n == 0)
        goto done;
    if ((out = cJSON_PrintUnformatted(root)) == NULL)
        goto fail;
    *changed = 1;
    goto done;
fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "could not edit the request body (out of memory)");
done:
    cJSON_Delete(root);
    return out;
}
