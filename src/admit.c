/* admit.c - see admit.h. */
#include "admit.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "body.h"
#include "config.h"
#include "bodyedit.h"
#include "pricing.h"
#include "relay.h"

/* Request body bytes held by all workers together (see admit_body_charge). */
static _Atomic long long body_buffered;

static void free_models(struct request *r)
{
    for (size_t i = 0; i < r->n_models; i++)
        free(r->models[i]);
    free(r->models);
    r->models = NULL;
    r->n_models = 0;
}

/* The total body memory is bounded: limits.max_body_bytes per request is not
 * enough when every connection may send one.  A request reserves what it
 * will buffer (its Content-Length up front, a chunked body as it arrives)
 * and gives it back when it is freed.  The cap is never below
 * limits.max_body_bytes, so a maximal body fits when nothing else is held.
 * 0 reserved, -1 it would not fit (nothing reserved). */
int admit_body_charge(struct request *r, uint64_t n)
{
    long long cap = r->cfg->limits_max_buffered_body_bytes;
    long long held = atomic_load(&body_buffered);

    if (cap < r->cfg->limits_max_body_bytes)
        cap = r->cfg->limits_max_body_bytes;
    do {
        if (n > (uint64_t)cap || held > cap - (long long)n)
            return -1;
    } while (!atomic_compare_exchange_weak(&body_buffered, &held, held + (long long)n));
    r->body_charged += n;
    return 0;
}

void admit_body_uncharge(struct request *r)
{
    if (r->body_charged > 0)
        atomic_fetch_sub(&body_buffered, (long long)r->body_charged);
    r->body_charged = 0;
}

static void parse_body(struct request *r)
{
    struct body_fields f;

    switch (body_parse(buf_head(&r->body), buf_used(&r->body), &f)) {
    case BODY_INVALID_JSON:
        relay_set_error(r, 400, "invalid_json", "request body is not valid JSON");
        return;
    case BODY_NOT_OBJECT:
        relay_set_error(r, 400, "invalid_body", "request body must be a JSON object");
        return;
    case BODY_DUPLICATE_MODEL:
        relay_set_error(r, 400, "duplicate_field",
                  "request body has more than one \"model\" or \"models\" member");
        return;
    case BODY_BAD_MODELS:
        relay_set_error(r, 400, "invalid_models", "\"models\" must be an array of model names (valid UTF-8, "
                                            "no control characters)");
        return;
    case BODY_INVALID_MODEL:
        relay_set_error(r, 400, "invalid_model",
                  "\"model\" must be valid UTF-8 without control characters");
        return;
    case BODY_OK:
        break;
    }
    if (f.model != NULL)
        r->model = f.model;
    if (f.max_tokens > 0)
        r->max_tokens = f.max_tokens;
    if (f.user != NULL)
        r->user = f.user;
    free_models(r);
    r->models = f.models;
    r->n_models = f.n_models;
    r->stream_req = f.stream;
}

/* The key this request goes upstream with: the client's own OpenRouter
 * key, one it passes in X-OpenRouter-Key (if allowed), or the shared one. */
static const char *pick_upstream_key(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    if (r->client >= 0) {
        const struct orp_client *c = &cfg->clients[r->client];
        const char *own = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-OpenRouter-Key");
        if (c->pass_through_keys && own != NULL && strncmp(own, "sk-or-", 6) == 0)
            return own;
        if (c->upstream_key != NULL)
            return c->upstream_key;
    }
    return cfg->upstream_key;
}

/* Who is asking, from the headers alone, before a body byte is read: a
 * stranger is answered 401 at once (no "100 Continue"), so it cannot make
 * orproxy buffer anything.  The client and its upstream key are kept for
 * dispatch().  0 fine, -1 refused (the answer is set). */
int admit_identify(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    enum route_kind kind = r->route->kind;
    struct access_denial d;
    const char *key;

    if (kind == ROUTE_HEALTHZ || kind == ROUTE_READYZ)
        return 0;
    if (kind == ROUTE_ADMIN)
        return admin_gate(r);
    memset(&d, 0, sizeof d);
    r->client = access_identify(cfg, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                                  "Authorization"), &d);
    if (r->client == -2) {
        r->client = -1;
        relay_set_error(r, d.status, d.code, "%s", d.message);
        r->local_retry_after = d.retry_after_s;
        return -1;
    }
    if (kind == ROUTE_METRICS && r->client >= 0 && !cfg->clients[r->client].admin) {
        relay_set_error(r, 403, "admin_only", "metrics need an admin client key");
        return -1;
    }
    if (kind != ROUTE_UPSTREAM)
        return 0;
    key = pick_upstream_key(r);
    if (key == NULL) {
        relay_set_error(r, 500, "no_upstream_key",
                  "orproxy has no upstream API key configured: set the %s environment variable "
                  "or upstream.api_key_file",
                  cfg->upstream_api_key_env);
        return -1;
    }
    r->up_key = strdup(key);
    if (r->up_key == NULL) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return -1;
    }
    return 0;
}

/* Aliases (the client's, then the global ones) and the client's defaults,
 * applied to the body.  The body stays byte for byte when nothing applies. */
static void edit_body(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    const struct orp_client *c = r->client >= 0 ? &cfg->clients[r->client] : NULL;
    const struct bodyedit e = {
        .aliases = c != NULL ? c->aliases : NULL,
        .n_aliases = c != NULL ? (size_t)c->n_aliases : 0,
        .more_aliases = cfg->aliases,
        .n_more_aliases = (size_t)cfg->n_aliases,
        .defaults = c != NULL ? &c->defaults : NULL,
    };
    char err[128], *nb;
    int changed = 0;

    /* Nothing to apply: skip the second parse (the common case). */
    if (!bodyedit_needed(&e))
        return;
    nb = bodyedit_apply(buf_head(&r->body), buf_used(&r->body), &e, err, sizeof err, &changed);
    if (nb != NULL && changed) {
        buf_reset(&r->body);
        buf_appendz(&r->body, nb);
        free(r->model);
        free(r->user);
        r->model = r->user = NULL;
        parse_body(r); /* the model (and max_tokens) the upstream will see */
    }
    free(nb);
}

/* Tokens and dollars this request may use at most, for limits and budget
 * reservations: the prompt (about 4 bytes a token) plus max_tokens, or
 * 4096 completion tokens when the request sets no max_tokens.  A model
 * missing from the price table could cost anything: it reserves
 * limits.unpriced_reserve_usd, so it is not waved past a budget. */
static void estimate(const struct request *r, long long *tokens, int64_t *pusd)
{
    long long prompt = (long long)(buf_used(&r->body) + 3) / 4;
    long long completion = r->max_tokens > 0 ? r->max_tokens : 4096;
    struct price pr;

    *tokens = prompt + completion;
    *pusd = 0;
    /* Any model of the fallback list may serve it: reserve at the dearest. */
    for (size_t i = 0; i <= r->n_models; i++) {
        const char *m = i == 0 ? r->model : r->models[i - 1];
        int64_t c;
        if (m == NULL)
            continue;
        if (pricing_current_lookup(m, &pr) < 0)
            c = r->cfg->limits_unpriced_reserve_pusd;
        else
            c = pricing_cost_pusd(&pr, prompt, completion, 0, 0);
        if (c > *pusd)
            *pusd = c;
    }
}

/* The model rules hold for every model the request may be served by:
 * "model" and each fallback in "models".  A request that names only a
 * fallback list is checked on the list alone. */
static int check_models(struct request *r, struct access_denial *d)
{
    if ((r->model != NULL || r->n_models == 0) &&
        access_check_model(r->cfg, r->client, r->model, d) < 0)
        return -1;
    for (size_t i = 0; i < r->n_models; i++)
        if (access_check_model(r->cfg, r->client, r->models[i], d) < 0)
            return -1;
    return 0;
}

void admit_set_busy(struct request *r)
{
    relay_set_error(r, 503, "server_busy",
              "orproxy already holds its limit of %lld bytes of request bodies "
              "(limits.max_buffered_body_bytes); retry shortly",
              r->cfg->limits_max_buffered_body_bytes);
    r->local_retry_after = 1;
}

/* The body is complete: parse and edit it, check the models, then reserve. */
int admit_body(struct request *r)
{
    struct access_denial d;
    long long est_tokens;
    int64_t est_pusd;

    memset(&d, 0, sizeof d);
    if (r->route->json_body) {
        parse_body(r);
        if (r->local_status == 0)
            edit_body(r);
    }
    if (r->local_status != 0)
        return -1;
    if (r->route->json_body && check_models(r, &d) < 0)
        goto denied;
    estimate(r, &est_tokens, &est_pusd);
    if (access_admit(r->cfg, r->client, est_tokens, est_pusd, &r->grant, &d) < 0)
        goto denied;
    return 0;
denied:
    relay_set_error(r, d.status, d.code, "%s", d.message);
    r->local_retry_after = d.retry_after_s;
    return -1;
}

void admit_release(struct request *r)
{
    admit_body_uncharge(r);
    free_models(r);
    free(r->model);
    free(r->user);
    r->model = r->user = NULL;
    if (r->up_key != NULL) {
        explicit_bzero(r->up_key, strlen(r->up_key));
        free(r->up_key);
        r->up_key = NULL;
    }
}

/* MHD hands us the path and the parsed arguments: rebuild the query string
 * for GET routes (e.g. /generation?id=...). */
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    buf_t *b = cls;
    char *k, *v = NULL;
    (void)kind;

    k = curl_easy_escape(NULL, key, 0);
    if (value != NULL)
        v = curl_easy_escape(NULL, value, 0);
    if (k != NULL) {
        buf_append(b, b->len == b->off ? "?" : "&", 1);
        buf_appendz(b, k);
        if (v != NULL) {
            buf_append(b, "=", 1);
            buf_appendz(b, v);
        }
    }
    curl_free(k);
    curl_free(v);
    return MHD_YES;
}

void admit_query(struct request *r)
{
    buf_t q;

    memset(&q, 0, sizeof q);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &q);
    if (buf_used(&q) > 0)
        r->url_query = strdup(buf_cstr(&q));
    buf_free(&q);
}
