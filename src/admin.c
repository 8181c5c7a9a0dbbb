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
#include <strings.h>
#include <sys/socket.h>

#include "access.h"
#include "log.h"
#include "managed.h"
#include "pricing.h"
#include "relay.h"
#include "utf8.h"
#include "util.h"

/* ---- the failure limit: 10 failures from one address in a minute ----
 *
 * Keyed by the peer's address as 16 bytes: an IPv4 address (also one
 * mapped into IPv6) whole, an IPv6 address by its /64, the smallest block
 * one host usually gets (keyed per /128, one host could make 2^64 fresh
 * "addresses").  A fixed table: a flood of addresses costs no memory; when
 * it is full the slot whose window started first is reused, so the table
 * never locks out an address that has not failed itself. */

#define FAIL_MAX 10
#define FAIL_WINDOW_MS 60000
#define FAIL_SLOTS 1024

struct peer {
    unsigned char key[16];       /* the limiter's key (see above) */
    char text[INET6_ADDRSTRLEN]; /* the whole address, for the log */
};

static struct {
    pthread_mutex_t mu;
    struct fail_slot {
        unsigned char key[16];
        int64_t start_ms;        /* the window began with the first failure */
        int n;                   /* 0: a free slot */
    } v[FAIL_SLOTS];
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int slot_free(const struct fail_slot *s, int64_t now)
{
    return s->n == 0 || now - s->start_ms >= FAIL_WINDOW_MS;
}

/* Caller holds F.mu.  The address's slot, or NULL (create: a free or
 * expired slot, else the one whose window started first). */
static struct fail_slot *slot_for(const unsigned char key[16], int64_t now, int create)
{
    struct fail_slot *pick = NULL;
    for (int i = 0; i < FAIL_SLOTS; i++) {
        struct fail_slot *s = &F.v[i];
        if (s->n > 0 && memcmp(s->key, key, 16) == 0)
            return s;
        if (pick == NULL || (!slot_free(pick, now) && (slot_free(s, now) || s->start_ms < pick->start_ms)))
            pick = s;
    }
    if (!create)
        return NULL;
    memcpy(pick->key, key, 16);
    pick->start_ms = now;
    pick->n = 0;
    return pick;
}

/* Seconds until addr may try again, or 0. */
static long locked_out(const struct peer *p, int64_t now)
{
    long wait = 0;
    struct fail_slot *s;
    pthread_mutex_lock(&F.mu);
    s = slot_for(p->key, now, 0);
    if (s != NULL && s->n >= FAIL_MAX && now - s->start_ms < FAIL_WINDOW_MS)
        wait = (long)((s->start_ms + FAIL_WINDOW_MS - now + 999) / 1000);
    pthread_mutex_unlock(&F.mu);
    return wait;
}

static void count_failure(const struct peer *p, int64_t now)
{
    struct fail_slot *s;
    pthread_mutex_lock(&F.mu);
    s = slot_for(p->key, now, 1);
    if (now - s->start_ms >= FAIL_WINDOW_MS) {
        s->start_ms = now;
        s->n = 0;
    }
    s->n++;
    pthread_mutex_unlock(&F.mu);
}

static void peer_address(struct request *r, struct peer *p)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(p, 0, sizeof *p);
    snprintf(p->text, sizeof p->text, "unknown");
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct in_addr *a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        memcpy(p->key, v4mapped, 12);
        memcpy(p->key + 12, a, 4);
        inet_ntop(AF_INET, a, p->text, sizeof p->text);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        memcpy(p->key, a, 16);
        if (memcmp(p->key, v4mapped, 12) != 0)
            memset(p->key + 8, 0, 8); /* the /64 */
        inet_ntop(AF_INET6, a, p->text, sizeof p->text);
    }
}

/* The host part of a Host header or an Origin's authority: "[::1]:8080"
 * -> "[::1]", "localhost:8080" -> "localhost". */
static size_t host_len(const char *h)
{
    const char *end = h[0] == '[' ? strchr(h, ']') : NULL;
    if (end != NULL)
        return (size_t)(end - h) + 1;
    return strcspn(h, ":/");
}

static int loopback_host(const char *h)
{
    size_t n = host_len(h);
    return (n == 9 && strncasecmp(h, "localhost", 9) == 0) || (n == 5 && strncmp(h, "[::1]", 5) == 0) ||
           (n >= 7 && n <= 15 && strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") == n);
}

/* With auth.mode = "none" nothing but the address keeps strangers out, and
 * a browser on this host is such a stranger's tool: a page from anywhere
 * may POST here (a cross-site form needs no preflight), or rebind its own
 * name to 127.0.0.1 and read the answers.  So the admin API takes only a
 * Host naming loopback and, when a browser says where a call comes from,
 * only the same origin.  0 fine, -1 refused (the answer is set). */
static int same_origin_only(struct request *r)
{
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    const char *o = origin;

    if (host == NULL || !loopback_host(host)) {
        relay_set_error(r, 403, "forbidden_host",
                        "with auth.mode = \"none\" the admin API answers only to a loopback Host");
        return -1;
    }
    if (o == NULL)
        return 0;
    if (strncmp(o, "http://", 7) == 0)
        o += 7;
    else if (strncmp(o, "https://", 8) == 0)
        o += 8;
    else
        o = NULL;
    if (o == NULL || strcasecmp(o, host) != 0) {
        relay_set_error(r, 403, "cross_origin", "the admin API takes no calls from another origin");
        return -1;
    }
    return 0;
}

/* The path as visible ASCII ('?' for any other byte): it is echoed in
 * error answers and the log, which must stay valid UTF-8 and one line. */
static void clean_path(char *p)
{
    for (; p != NULL && *p != '\0'; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            *p = '?';
}

int admin_gate(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    struct peer addr;
    int64_t now = util_wall_ms();
    struct access_denial d;
    long wait;

    clean_path(r->path);
    if (strcmp(cfg->auth_mode, "keys") != 0) /* "none": loopback only (config_check_running) */
        return same_origin_only(r);
    peer_address(r, &addr);
    if ((wait = locked_out(&addr, now)) > 0) {
        relay_set_error(r, 429, "too_many_failures",
                        "too many failed admin attempts from this address; try again in %ld s", wait);
        r->local_retry_after = wait;
        log_warn("admin: %s %s from %s refused: locked out for %ld s after %d failures", r->method,
                 r->path ? r->path : "?", addr.text, wait, FAIL_MAX);
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
    count_failure(&addr, now);
    log_warn("admin: %s %s from %s refused: %s%s%s", r->method, r->path ? r->path : "?", addr.text,
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

static const char *const op_names[] = {"list", "get", "create client", "edit client",
                                      "rotate the key of", "revoke client", "data"};

/* The body is UTF-8 and holds no NUL, raw or escaped: cJSON ends a string
 * at a NUL, so "a\u0000b" would be checked as "a", and bytes that are not
 * UTF-8 would make every later answer that shows them invalid JSON. */
static int clean_text(const char *s, size_t n)
{
    if (memchr(s, '\0', n) != NULL || !utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '\\') {
            if (s[i + 1] == 'u' && i + 5 < n && strncmp(s + i + 2, "0000", 4) == 0)
                return 0;
            i++; /* the escaped character */
        }
    return 1;
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
        (!clean_text(c->body, c->body_len) ||
         (body = cJSON_ParseWithLength(c->body, c->body_len)) == NULL)) {
        j->status = 400;
        j->code = "invalid_json";
        snprintf(j->err, sizeof j->err,
                 "the request body is not valid JSON in UTF-8 (with no NUL character)");
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
    } else {
        const char *name = c->op == OP_CREATE
                               ? cJSON_GetObjectItemCaseSensitive(body, "name")->valuestring : c->name;
        log_info("admin: %s '%s' by %s", op_names[c->op], name, c->by); /* who; never the key */
        if (res.status == 204) {
            j->status = 204;
            j->text = strdup("");
        } else if (c->op == OP_EDIT) {
            admin_set_json(j, 200, find_client_json(name));
        } else {
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "key", res.key);
            if (c->op == OP_ROTATE)
                admin_add_time(o, "old_key_until", res.until_ms);
            admin_set_json(j, res.status, o);
        }
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
    snprintf(c->by, sizeof c->by, "%s%s%s", r->client >= 0 ? "client '" : "anyone (auth.mode = none)",
             r->client >= 0 ? r->cfg->clients[r->client].name : "", r->client >= 0 ? "'" : "");
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
