/* local.c - see local.h.  /v1/usage runs on the jobs thread (jobs.h), so
 * that a slow ledger (busy for up to 2 s behind the writer, or a large
 * aggregation) stalls only the operator's query, never a worker's streams. */
#include "local.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "admin.h"
#include "config.h"
#include "jobs.h"
#include "ledger.h"
#include "ledger_pg.h"
#include "metrics.h"
#include "pricing.h"
#include "relay.h"
#include "report.h"
#include "report_pg.h"
#include "util.h"

/* One /v1/usage query's parameters, copied off the request. */
struct usage_ctx {
    char *client;
    char *pg_url, *pg_password_file; /* ledger.backend = "postgresql": the shared ledger */
    struct report_query q;
};

static void usage_free(void *arg)
{
    struct usage_ctx *u = arg;
    if (u != NULL) {
        free(u->client);
        free(u->pg_url);
        free(u->pg_password_file);
    }
    free(u);
}

/* On the jobs thread. */
static void run_usage(struct job *j)
{
    struct usage_ctx *u = j->ctx;
    sqlite3 *db = NULL;
    cJSON *json = NULL;

    if (u->pg_url != NULL) {
        json = report_pg_json(u->pg_url, u->pg_password_file, &u->q, j->err, sizeof j->err);
    } else if (sqlite3_open_v2(j->ledger_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        json = report_query_json(db, &u->q, j->err, sizeof j->err);
    } else {
        snprintf(j->err, sizeof j->err, "cannot open the ledger");
    }
    sqlite3_close(db);
    if (json != NULL)
        j->text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
}

void local_shutdown(void)
{
    jobs_shutdown();
}

static const char *query_arg(struct request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* GET /v1/usage: the report's aggregation as JSON (an admin sees every
 * client, others only their own rows). */
static int answer_usage(struct request *r)
{
    const struct orp_config *cfg = r->cfg;
    int admin = r->client < 0 || cfg->clients[r->client].admin;
    int64_t now = util_wall_ms();
    struct usage_ctx *u = calloc(1, sizeof *u);
    struct job *j;
    const char *v;

    if (u == NULL) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return 0;
    }
    if (report_parse_time(query_arg(r, "since") ? query_arg(r, "since") : "30d", now, &u->q.since_ms) < 0 ||
        ((v = query_arg(r, "until")) != NULL && report_parse_time(v, now, &u->q.until_ms) < 0)) {
        relay_set_error(r, 400, "invalid_time", "since/until must look like 24h, 7d or 2026-11-01");
        usage_free(u);
        return 0;
    }
    if ((v = query_arg(r, "by")) != NULL && report_parse_by(v, &u->q.by) < 0) {
        relay_set_error(r, 400, "invalid_group",
                        "by must be one of key, model, day, user, instance, none");
        usage_free(u);
        return 0;
    }
    if (u->q.by == REPORT_BY_INSTANCE && strcmp(cfg->ledger_backend, "postgresql") != 0) {
        relay_set_error(r, 400, "invalid_group",
                        "by=instance needs ledger.backend = \"postgresql\" (one instance here)");
        usage_free(u);
        return 0;
    }
    if (strcmp(cfg->ledger_backend, "postgresql") == 0 &&
        ((u->pg_url = strdup(cfg->ledger_postgresql_url)) == NULL ||
         (u->pg_password_file = strdup(cfg->ledger_postgresql_password_file)) == NULL)) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        usage_free(u);
        return 0;
    }
    if (!admin) {
        if ((u->client = strdup(cfg->clients[r->client].name)) == NULL) {
            relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
            usage_free(u);
            return 0;
        }
        u->q.client = u->client;
    }
    if ((j = jobs_new(r, run_usage, u, usage_free)) == NULL) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return 0;
    }
    return jobs_submit(j);
}

static void reply(struct request *r, unsigned status, char *text, const char *ctype)
{
    r->reply = text;
    r->reply_status = status;
    r->reply_ctype = ctype;
}

/* ledger.backend = "postgresql": its state, for information.  An outage
 * does not make the instance unready: its rows spool (ledger_pg.h); a
 * spool that cannot be written does, through ledger_healthy. */
static void add_postgresql(cJSON *root)
{
    struct ledgerpg_stats pg;
    cJSON *o;

    ledgerpg_get_stats(&pg);
    if (!pg.enabled || (o = cJSON_AddObjectToObject(root, "postgresql")) == NULL)
        return;
    cJSON_AddBoolToObject(o, "up", pg.up);
    cJSON_AddNumberToObject(o, "spool_bytes", (double)pg.spool_bytes);
}

/* GET /readyz: 200 only when requests can be served and accounted for. */
static void answer_readyz(struct request *r)
{
    cJSON *root = cJSON_CreateObject(), *reasons = cJSON_AddArrayToObject(root, "reasons");
    int ready;

    if (r->cfg->upstream_key == NULL)
        cJSON_AddItemToArray(reasons, cJSON_CreateString("no upstream API key is configured"));
    if (!ledger_healthy())
        cJSON_AddItemToArray(reasons, cJSON_CreateString("the usage ledger is not writable"));
    if (pricing_current_size() == 0)
        cJSON_AddItemToArray(reasons, cJSON_CreateString("no price table is loaded yet"));
    ready = cJSON_GetArraySize(reasons) == 0;
    cJSON_AddBoolToObject(root, "ready", ready);
    add_postgresql(root);
    reply(r, ready ? 200 : 503, cJSON_PrintUnformatted(root), "application/json");
    cJSON_Delete(root);
}

static void answer_metrics(struct request *r)
{
    buf_t b;
    memset(&b, 0, sizeof b);
    metrics_render(&b);
    if (buf_cstr(&b) == NULL) {
        buf_free(&b);
        return;
    }
    /* The reply is freed with free(): hand over the base pointer (off is 0). */
    reply(r, 200, b.data, "text/plain; version=0.0.4; charset=utf-8");
}

int local_answer(struct request *r)
{
    switch (r->route->kind) {
    case ROUTE_HEALTHZ:
        relay_set_error(r, 200, "ok", "ok");
        return 0;
    case ROUTE_READYZ:
        answer_readyz(r);
        return 0;
    case ROUTE_METRICS:
        answer_metrics(r);
        return 0;
    case ROUTE_USAGE:
        return answer_usage(r);
    case ROUTE_ADMIN:
        return admin_answer(r);
    case ROUTE_KEY:
        reply(r, 200, access_key_json(r->cfg, r->client), "application/json");
        return 0;
    default:
        return 0;
    }
}
