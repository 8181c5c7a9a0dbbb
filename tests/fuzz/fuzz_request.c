/* fuzz_request.c - request intake: route matching, the body checks the
 * HTTP front makes (body_parse: invalid JSON, not an object, duplicate
 * "model" or "models", a "model" that is not clean UTF-8, a "models" list
 * that is not all clean strings), the model rules (access_model_allowed)
 * and the body edits (bodyedit_apply: aliases, defaults, system prompt).
 *
 * Input, one field a line: the URL path; the method; model patterns,
 * blank-separated; aliases "from=to", blank-separated; the default model
 * ("" = none); the system prompt ("" = none); default numbers as
 * "t p m f r" (a '-' leaves that one unset); then the body, the rest.
 *
 * Oracles: a route's tail is the URL without its prefix and its method
 * is the one asked for (or GET for HEAD); an edited body is a JSON object
 * without a duplicate "model", its model is the one the aliases and the
 * default make of the original, its numbers are the original's in the
 * same order, and the edits are idempotent (applying
 * them again, aliases aside, changes nothing); a body that is not an
 * object is refused by both body_parse and bodyedit_apply. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "fuzz.h"
#include "access.h"
#include "bodyedit.h"
#include "route.h"
#include "utf8.h"

#define MAXV 16

/* Splits s in place at blanks into at most MAXV words. */
static size_t words(char *s, char **v)
{
    size_t n = 0;

    for (char *t = strtok(s, " "); t != NULL && n < MAXV; t = strtok(NULL, " "))
        v[n++] = t;
    return n;
}

static void check_route(const char *url, const char *method)
{
    const struct route *r;
    enum route_result rr = route_match(url, method, &r);
    const char *tail;

    if (rr == ROUTE_NOT_FOUND) {
        FUZZ_CHECK(r == NULL);
        return;
    }
    FUZZ_CHECK(r != NULL);
    if (r->kind == ROUTE_HEALTHZ || r->kind == ROUTE_READYZ || r->kind == ROUTE_METRICS) {
        FUZZ_CHECK(strcmp(url, r->tail) == 0);
    } else if (r->kind == ROUTE_UI) {
        /* the console's prefix: ui.c picks the file or answers 404 */
        FUZZ_CHECK(strcmp(url, "/ui") == 0 || strncmp(url, "/ui/", 4) == 0);
        FUZZ_CHECK(strcmp(r->method, "GET") == 0);
    } else if (r->kind == ROUTE_ADMIN) {
        /* one route for the admin API: admin.c dispatches on the rest */
        FUZZ_CHECK(strncmp(url, "/admin/v1/", 10) == 0);
        FUZZ_CHECK(rr == ROUTE_OK); /* every method reaches admin.c, which answers 405 itself */
        return;
    } else {
        tail = strncmp(url, "/v1/", 4) == 0 ? url + 3 : url + 7;
        FUZZ_CHECK(strncmp(url, "/v1/", 4) == 0 || strncmp(url, "/api/v1/", 8) == 0);
        FUZZ_CHECK(strcmp(tail, r->tail) == 0);
    }
    if (rr == ROUTE_OK)
        FUZZ_CHECK(strcmp(method, r->method) == 0 ||
                   (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0));
    else
        FUZZ_CHECK(rr == ROUTE_BAD_METHOD && strcmp(method, r->method) != 0);
}

static void parse_defaults(char *s, struct bodyedit_defaults *e)
{
    char *v[MAXV];
    size_t n = words(s, v);

    if (n > 0 && strcmp(v[0], "-") != 0)
        e->has_temperature = 1, e->temperature = strtod(v[0], NULL);
    if (n > 1 && strcmp(v[1], "-") != 0)
        e->has_top_p = 1, e->top_p = strtod(v[1], NULL);
    if (n > 2 && strcmp(v[2], "-") != 0)
        e->has_max_tokens = 1, e->max_tokens = strtol(v[2], NULL, 10);
    if (n > 3 && strcmp(v[3], "-") != 0)
        e->has_frequency_penalty = 1, e->frequency_penalty = strtod(v[3], NULL);
    if (n > 4 && strcmp(v[4], "-") != 0)
        e->has_presence_penalty = 1, e->presence_penalty = strtod(v[4], NULL);
}

/* The numbers under node in document order, as doubles, into v (up to
 * max); returns how many there are. */
static size_t numbers(const cJSON *node, double *v, size_t n, size_t max)
{
    const cJSON *c;

    for (c = node->child; c != NULL; c = c->next) {
        if (cJSON_IsNumber(c)) {
            if (n < max)
                v[n] = c->valuedouble;
            n++;
        } else if (c->child != NULL) {
            n = numbers(c, v, n, max);
        }
    }
    return n;
}

/* The model the edits should give: the body's own, or the default when it
 * has none, then renamed by the first alias that matches. */
static const char *expected_model(const cJSON *root, const struct bodyedit *e)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *name;

    if (m == NULL)
        name = e->defaults != NULL ? e->defaults->model : NULL;
    else if (cJSON_IsString(m))
        name = m->valuestring;
    else
        return NULL;
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < e->n_aliases; i++)
        if (strcmp(name, e->aliases[i].from) == 0)
            return e->aliases[i].to;
    for (size_t i = 0; i < e->n_more_aliases; i++)
        if (strcmp(name, e->more_aliases[i].from) == 0)
            return e->more_aliases[i].to;
    return name;
}

static void check_body(const char *body, size_t len, const struct bodyedit *e,
                       const char *const *patterns, size_t npat)
{
    struct body_fields f, g;
    enum body_result br = body_parse(body, len, &f), gr;
    char err[128] = "", *out, *again;
    int changed = 0, changed2 = 0;
    cJSON *orig, *edited;
    struct bodyedit no_alias;

    (void)access_model_allowed(patterns, npat, f.model);
    /* The fallback list is read whole or refused: every entry a string. */
    FUZZ_CHECK(br == BODY_OK || (f.models == NULL && f.n_models == 0));
    for (size_t i = 0; i < f.n_models; i++)
        FUZZ_CHECK(f.models[i] != NULL);
    FUZZ_CHECK(access_model_allowed(patterns, 0, f.model) == 1);
    if (f.model != NULL)
        FUZZ_CHECK(access_model_allowed((const char *const[]){"*"}, 1, f.model) == 1);

    out = bodyedit_apply(body, len, e, err, sizeof err, &changed);
    if (br == BODY_INVALID_JSON || br == BODY_NOT_OBJECT) {
        /* bodyedit_apply is stricter (no trailing bytes), never laxer. */
        FUZZ_CHECK(out == NULL && changed == 0 && err[0] != '\0');
        return;
    }
    FUZZ_CHECK((out != NULL) == (changed == 1));
    /* What the front accepts, the editor must accept too, or it would
     * forward bytes it could not read (err says why it refused). */
    FUZZ_CHECK(out != NULL || err[0] == '\0');
    if (f.model != NULL)
        FUZZ_CHECK(utf8_is_clean_name(f.model, strlen(f.model)));
    if (out == NULL || br == BODY_DUPLICATE_MODEL || br == BODY_INVALID_MODEL ||
        br == BODY_BAD_MODELS) {
        free(out);
        body_fields_free(&f);
        return;
    }
    /* The edited body, as the front parses it again. */
    gr = body_parse(out, strlen(out), &g);
    orig = cJSON_ParseWithLength(body, len);
    edited = cJSON_Parse(out);
    FUZZ_CHECK(orig != NULL && cJSON_IsObject(edited));
    if (gr == BODY_INVALID_MODEL) {
        /* The original's model was clean, so the configured alias or
         * default model put the bad one in. */
        const char *want = expected_model(orig, e);
        FUZZ_CHECK(want != NULL && !utf8_is_clean_name(want, strlen(want)));
        cJSON_Delete(orig);
        cJSON_Delete(edited);
        body_fields_free(&f);
        free(out);
        return;
    }
    if (gr == BODY_BAD_MODELS) {
        /* The original's fallback list was clean, so an alias put a bad
         * name into it. */
        int unclean_alias = 0;
        for (size_t i = 0; i < e->n_aliases; i++)
            unclean_alias |= !utf8_is_clean_name(e->aliases[i].to, strlen(e->aliases[i].to));
        for (size_t i = 0; i < e->n_more_aliases; i++)
            unclean_alias |= !utf8_is_clean_name(e->more_aliases[i].to, strlen(e->more_aliases[i].to));
        FUZZ_CHECK(unclean_alias);
        cJSON_Delete(orig);
        cJSON_Delete(edited);
        body_fields_free(&f);
        free(out);
        return;
    }
    FUZZ_CHECK(gr == BODY_OK);
    {
        const char *want = expected_model(orig, e);
        if (want != NULL)
            FUZZ_CHECK(g.model != NULL && strcmp(g.model, want) == 0);
    }
    FUZZ_CHECK(g.stream == f.stream);
    {
        /* Every number of the original keeps its place and value (the
         * literals are copied; defaults are appended after them). */
        double a[64], b[64];
        size_t na = numbers(orig, a, 0, 64), nb = numbers(edited, b, 0, 64);
        FUZZ_CHECK(nb >= na);
        for (size_t i = 0; i < na && i < 64; i++)
            FUZZ_CHECK(memcmp(&a[i], &b[i], sizeof a[i]) == 0);
    }
    no_alias = *e;
    no_alias.n_aliases = no_alias.n_more_aliases = 0;
    again = bodyedit_apply(out, strlen(out), &no_alias, err, sizeof err, &changed2);
    FUZZ_CHECK(again == NULL && changed2 == 0);
    cJSON_Delete(orig);
    cJSON_Delete(edited);
    body_fields_free(&f);
    body_fields_free(&g);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    char *url = fuzz_line(&in), *method = fuzz_line(&in), *pats = fuzz_line(&in);
    char *als = fuzz_line(&in), *defm = fuzz_line(&in), *sys = fuzz_line(&in);
    char *nums = fuzz_line(&in), *body, *pv[MAXV], *av[MAXV];
    size_t len, npat = words(pats, pv), nal = words(als, av), k = 0;
    struct bodyedit_alias al[MAXV];
    struct bodyedit_defaults d;
    struct bodyedit e;

    body = fuzz_rest(&in, &len, 0);
    check_route(url, method);

    memset(&e, 0, sizeof e);
    memset(&d, 0, sizeof d);
    for (size_t i = 0; i < nal; i++) {
        char *eq = strchr(av[i], '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        al[k].from = av[i];
        al[k++].to = eq + 1;
    }
    /* The first half as a client's aliases, the rest as the global ones:
     * searched in that order, so the first match overall wins. */
    e.aliases = al;
    e.n_aliases = k / 2;
    e.more_aliases = al + k / 2;
    e.n_more_aliases = k - k / 2;
    e.defaults = &d;
    d.model = defm[0] != '\0' ? defm : NULL;
    d.system_prompt = sys[0] != '\0' ? sys : NULL;
    parse_defaults(nums, &d);
    check_body(body, len, &e, (const char *const *)pv, npat);

    free(url);
    free(method);
    free(pats);
    free(als);
    free(defm);
    free(sys);
    free(nums);
    free(body);
    return 0;
}
