/* admin.c - see admin.h.  This file: who may call the admin API (the gate
 * and the failure limit), the dispatch on path and method, and the client
 * routes.  The console's data routes are in admin_data.c. */
#include "admin_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "access.h"
#include "log.h"
#include "managed.h"
#include "pricing.h"
#include "relay.h"
#include "util.h"

/* ---- the failure limit: 10 failures from one address in a minute ---- */

#define FAIL_MAX 10
#define FAIL_WINDOW_MS 60000
#define FAIL_SLOTS 256

static struct {
    pthread_mutex_t mu;
    struct fail_slot {
        char addr[INET6_ADDRSTRLEN];
        int64_t start_ms;        /* the window began with the first failure */
        int n;
    } v[FAIL_SLOTS];
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Caller holds F.mu.  The address's slot, or NULL (create: a free, an
 * expired or else the oldest slot). */
static struct fail_slot *slot_for(const char *addr, int64_t now, int create)
{
    struct fail_slot *pick = NULL;
    for (int i = 0; i < FAIL_SLOTS; i++) {
        struct fail_slot *s = &F.v[i];
        if (strcmp(s->addr, addr) == 0)
            return s;
        if (pick == NULL || s->addr[0] == '\0' || now - s->start_ms >= FAIL_WINDOW_MS ||
            (pick->addr[0] != '\0' && s->start_ms < pick->start_ms))
            if (pick == NULL || pick->addr[0] != '\0')
                pick = s;
    }
    if (!create)
        return NULL;
    snprintf(pick->addr, sizeof pick->addr, "%s", addr);
    pick->start_ms = now;
    pick->n = 0;
    return pick;
}

/* Seconds until addr may try again, or 0. */
static long locked_out(const char *addr, int64_t now)
{
    long wait = 0;
    struct fail_slot *s;
    pthread_mutex_lock(&F.mu);
    s = slot_for(addr, now, 0);
    if (s != NULL && s->n >= FAIL_MAX && now - s->start_ms < FAIL_WINDOW_MS)
        wait = (long)((s->start_ms + FAIL_WINDOW_MS - now + 999) / 1000);
    pthread_mutex_unlock(&F.mu);
    return wait;
}

static void count_failure(const char *addr, int64_t now)
{
    struct fail_slot *s;
    pthread_mutex_lock(&F.mu);
    s = slot_for(addr, now, 1);
    if (now - s->start_ms >= FAIL_WINDOW_MS) {
        s->start_ms = now;
        s->n = 0;
    }
    s->n++;
    pthread_mutex_unlock(&F.mu);
}

static void peer_address(struct request *r, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(out, n, "unknown");
    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)n);
}

int admin_gate(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char addr[INET6_ADDRSTRLEN];
    int64_t now = util_wall_ms();
    struct access_denial d;
    long wait;

    if (strcmp(cfg->auth_mode, "keys") != 0)
        return 0; /* "none": loopback only (config_check_running), open like the API */
    peer_address(r, addr, sizeof addr);
    if ((wait = locked_out(addr, now)) > 0) {
        relay_set_error(r, 429, "too_many_failures",
                        "too many failed admin attempts from this address; try again in %ld s", wait);
        r->local_retry_after = wait;
        log_warn("admin: %s %s from %s refused: locked out for %ld s after %d failures", r->method,
                 r->path ? r->path : "?", addr, wait, FAIL_MAX);
        return -1;
    }
    memset(&d, 0, sizeof d);
    r->client = access_identify(cfg, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization"), &d);
    if (r->client == -2) {
        r->client = -1;
        relay_set_error(r, d.status, d.code, "%s", d.message);
    } else if (r->client < 0 || !cfg->clients[r->client].admin) {
        relay_set_error(r, 403, "admin_only", "the admin API needs an admin client's key");
        d.code = "admin_only";
    } else if (cl != NULL && strtoull(cl, NULL, 10) > ADMIN_MAX_BODY) {
        relay_set_error(r, 413, "body_too_large", "an admin request body is at most %d bytes",
                        ADMIN_MAX_BODY);
        return -1;
    } else {
        return 0;
    }
    count_failure(addr, now);
    log_warn("admin: %s %s from %s refused: %s%s%s", r->method, r->path ? r->path : "?", addr,
             d.code, r->client >= 0 ? " by client " : "", r->client >= 0 ? cfg->clients[r->client].name : "");
    return -1;
}

/* ---- the client routes ---- */

static cJSON *defaults_json(const struct bodyedit_defaults *d)
{
    cJSON *o = cJSON_CreateObject();
    if (d->model)
        cJSON_AddStringToObject(o, "model", d->model);
    if (d->system_prompt)
        cJSON_AddStringToObject(o, "system_prompt", d->system_prompt);
    if (d->context)
        cJSON_AddStringToObject(o, "context", d->context);
    if (d->has_temperature)
        cJSON_AddNumberToObject(o, "temperature", d->temperature);
    if (d->has_top_p)
        cJSON_AddNumberToObject(o, "top_p", d->top_p);
    if (d->has_frequency_penalty)
        cJSON_AddNumberToObject(o, "frequency_penalty", d->frequency_penalty);
    if (d->has_presence_penalty)
        cJSON_AddNumberToObject(o, "presence_penalty", d->presence_penalty);
    if (d->has_max_tokens)
        cJSON_AddNumberToObject(o, "max_tokens", (double)d->max_tokens);
    return o;
}

static cJSON *client_json(const struct orp_client *c)
{
    cJSON *o = cJSON_CreateObject(), *m = cJSON_CreateArray();
    int64_t day, month;

    access_spent(c->name, &day, &month);
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddStringToObject(o, "source", c->managed ? "managed" : "config");
    cJSON_AddBoolToObject(o, "admin", c->admin);
    for (int i = 0; i < c->n_models; i++)
        cJSON_AddItemToArray(m, cJSON_CreateString(c->models[i]));
    cJSON_AddItemToObject(o, "models", m);
    cJSON_AddNumberToObject(o, "rpm", (double)c->limits.rpm);
    cJSON_AddNumberToObject(o, "tpm", (double)c->limits.tpm);
    cJSON_AddNumberToObject(o, "max_concurrent", c->limits.max_concurrent);
    admin_add_usd(o, "budget_usd_day", c->limits.budget_day_pusd, 1);
    admin_add_usd(o, "budget_usd_month", c->limits.budget_month_pusd, 1);
    admin_add_usd(o, "spent_usd_day", day, 0);
    admin_add_usd(o, "spent_usd_month", month, 0);
    admin_add_time(o, "expires_at", c->expires_ms);
    cJSON_AddItemToObject(o, "defaults", defaults_json(&c->defaults));
    admin_add_time(o, "old_key_until", c->old_key_until_ms > util_wall_ms() ? c->old_key_until_ms : 0);
    admin_add_time(o, "created_at", c->created_ms);
    admin_add_time(o, "updated_at", c->updated_ms);
    return o;
}

/* name's client in the config now in effect, as JSON; NULL if none. */
static cJSON *find_client_json(const char *name)
{
    struct orp_config *cfg = managed_current();
    cJSON *o = NULL;
    for (int i = 0; cfg != NULL && i < cfg->n_clients && o == NULL; i++)
        if (strcmp(cfg->clients[i].name, name) == 0)
            o = client_json(&cfg->clients[i]);
    config_release(cfg);
    return o;
}

static void run_list(struct job *j)
{
    struct orp_config *cfg = managed_current();
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "clients");
    for (int i = 0; cfg != NULL && i < cfg->n_clients; i++)
        cJSON_AddItemToArray(list, client_json(&cfg->clients[i]));
    config_release(cfg);
    admin_set_json(j, 200, root);
}

static void run_get(struct job *j)
{
    struct admin_ctx *c = j->ctx;
    cJSON *o = find_client_json(c->name);
    if (o == NULL) {
        j->status = 404;
        j->code = "unknown_client";
        snprintf(j->err, sizeof j->err, "no client named '%.63s'", c->name);
        return;
    }
    admin_set_json(j, 200, o);
}

/* The writes: a read-write connection, the body parsed strictly. */
static void run_write(struct job *j)
{
    struct admin_ctx *c = j->ctx;
    struct managed_result res;
    sqlite3 *db = NULL;
    cJSON *body = NULL, *o;

    memset(&res, 0, sizeof res);
    if (c->body != NULL && c->body_len > 0 &&
        (body = cJSON_ParseWithLength(c->body, c->body_len)) == NULL) {
        j->status = 400;
        j->code = "invalid_json";
        snprintf(j->err, sizeof j->err, "the request body is not valid JSON");
        return;
    }
    if (sqlite3_open_v2(j->ledger_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        res.status = 500;
        res.code = "ledger_unavailable";
        snprintf(res.msg, sizeof res.msg, "cannot open the ledger");
    } else {
        sqlite3_busy_timeout(db, 2000);
        if (c->op == OP_CREATE)
            managed_create(db, body, &res);
        else if (c->op == OP_EDIT)
            managed_edit(db, c->name, body, &res);
        else if (c->op == OP_ROTATE)
            managed_rotate(db, c->name, body, &res);
        else
            managed_revoke(db, c->name, &res);
    }
    sqlite3_close(db);
    if (res.status >= 400) {
        j->status = res.status;
        j->code = res.code;
        snprintf(j->err, sizeof j->err, "%s", res.msg);
    } else if (res.status == 204) {
        j->status = 204;
        j->text = strdup("");
    } else if (c->op == OP_EDIT) {
        admin_set_json(j, 200, find_client_json(c->name));
    } else {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(body, "name");
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", c->op == OP_CREATE ? nm->valuestring : c->name);
        cJSON_AddStringToObject(o, "key", res.key);
        if (c->op == OP_ROTATE)
            admin_add_time(o, "old_key_until", res.until_ms);
        admin_set_json(j, res.status, o);
    }
    cJSON_Delete(body);
    explicit_bzero(res.key, sizeof res.key);
}

/* ---- dispatch ---- */

static int method_is(struct request *r, const char *m)
{
    return strcmp(r->method, m) == 0 || (strcmp(m, "GET") == 0 && strcmp(r->method, "HEAD") == 0);
}

static int bad_method(struct request *r, const char *allowed)
{
    relay_set_error(r, 405, "method_not_allowed", "method %s is not allowed on %s; use %s", r->method,
                    r->path, allowed);
    return 0;
}

static int submit(struct request *r, void (*run)(struct job *), struct admin_ctx *c)
{
    struct job *j;
    if (c == NULL) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return 0;
    }
    if (buf_used(&r->body) > ADMIN_MAX_BODY) { /* a chunked body over the limit */
        admin_ctx_free(c);
        relay_set_error(r, 413, "body_too_large", "an admin request body is at most %d bytes",
                        ADMIN_MAX_BODY);
        return 0;
    }
    if (buf_used(&r->body) > 0) {
        c->body_len = buf_used(&r->body);
        if ((c->body = malloc(c->body_len + 1)) == NULL) {
            admin_ctx_free(c);
            relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
            return 0;
        }
        memcpy(c->body, buf_head(&r->body), c->body_len);
        c->body[c->body_len] = '\0';
    }
    if ((j = jobs_new(r, run, c, admin_ctx_free)) == NULL) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return 0;
    }
    return jobs_submit(j);
}

static struct admin_ctx *ctx_new(int op, const char *name, size_t name_len)
{
    struct admin_ctx *c = calloc(1, sizeof *c);
    if (c != NULL && name != NULL && (c->name = strndup(name, name_len)) == NULL) {
        free(c);
        return NULL;
    }
    if (c != NULL)
        c->op = op;
    return c;
}

/* /admin/v1/clients[/{name}[/rotate]] */
static int clients_route(struct request *r, const char *rest)
{
    const char *slash;
    size_t n;

    if (*rest == '\0') {
        if (method_is(r, "GET"))
            return submit(r, run_list, ctx_new(OP_LIST, NULL, 0));
        if (method_is(r, "POST"))
            return submit(r, run_write, ctx_new(OP_CREATE, NULL, 0));
        return bad_method(r, "GET, POST");
    }
    if (*rest != '/' || rest[1] == '\0')
        goto unknown;
    rest++;
    slash = strchr(rest, '/');
    n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (slash != NULL) {
        if (strcmp(slash, "/rotate") != 0)
            goto unknown;
        if (!method_is(r, "POST"))
            return bad_method(r, "POST");
        return submit(r, run_write, ctx_new(OP_ROTATE, rest, n));
    }
    if (method_is(r, "GET"))
        return submit(r, run_get, ctx_new(OP_GET, rest, n));
    if (method_is(r, "PATCH"))
        return submit(r, run_write, ctx_new(OP_EDIT, rest, n));
    if (method_is(r, "DELETE"))
        return submit(r, run_write, ctx_new(OP_REVOKE, rest, n));
    return bad_method(r, "GET, PATCH, DELETE");
unknown:
    relay_set_error(r, 404, "not_found", "no such admin endpoint: %s", r->path);
    return 0;
}

int admin_answer(struct request *r)
{
    const char *rest = r->path + strlen("/admin/v1/");

    if (strncmp(rest, "clients", 7) == 0 && (rest[7] == '\0' || rest[7] == '/'))
        return clients_route(r, rest + 7);
    return admin_data_route(r, rest);
}
