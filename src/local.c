/* local.c - see local.h.  The usage thread exists so that a slow ledger
 * (busy for up to 2 s behind the writer, or a large aggregation) stalls only
 * the operator's query, never the streams of a worker. */
#include "local.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "access.h"
#include "config.h"
#include "ledger.h"
#include "metrics.h"
#include "pricing.h"
#include "relay.h"
#include "report.h"
#include "util.h"

/* One /v1/usage query: a copy of everything it needs, so the background
 * thread never touches the request. */
struct usage_job {
    struct request *r;          /* read and written on r's loop only */
    struct loop *loop;          /* r's loop */
    struct loop_task done;      /* posted back to r's loop */
    char *ledger_path;
    char *client;
    struct report_query q;
    char *text;                 /* the answer, or NULL and err */
    char err[256];
    STAILQ_ENTRY(usage_job) link;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    STAILQ_HEAD(, usage_job) jobs;
    pthread_t thread;
    int started, stopping;
} uq = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, STAILQ_HEAD_INITIALIZER(uq.jobs), 0, 0, 0};

static void job_free(struct usage_job *j)
{
    free(j->ledger_path);
    free(j->client);
    free(j->text);
    free(j);
}

static void run_query(struct usage_job *j)
{
    sqlite3 *db = NULL;
    cJSON *json = NULL;

    if (sqlite3_open_v2(j->ledger_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        json = report_query_json(db, &j->q, j->err, sizeof j->err);
    } else {
        snprintf(j->err, sizeof j->err, "cannot open the ledger");
    }
    sqlite3_close(db);
    if (json != NULL)
        j->text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
}

static void *usage_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&uq.lock);
    for (;;) {
        struct usage_job *j;
        while (STAILQ_EMPTY(&uq.jobs) && !uq.stopping)
            pthread_cond_wait(&uq.cond, &uq.lock);
        if (uq.stopping)
            break;
        j = STAILQ_FIRST(&uq.jobs);
        STAILQ_REMOVE_HEAD(&uq.jobs, link);
        pthread_mutex_unlock(&uq.lock);
        run_query(j);
        loop_post(j->loop, &j->done);
        pthread_mutex_lock(&uq.lock);
    }
    pthread_mutex_unlock(&uq.lock);
    return NULL;
}

/* On the request's loop: the answer is in. */
static void usage_done(void *arg)
{
    struct usage_job *j = arg;
    struct request *r = j->r;

    r->usage_pending = 0;
    if (j->text != NULL) {
        r->reply = j->text;
        j->text = NULL;
        r->reply_status = 200;
        r->reply_ctype = "application/json";
    } else {
        relay_set_error(r, 500, "ledger_unavailable", "%s", j->err[0] ? j->err : "out of memory");
    }
    job_free(j);
    relay_ready(r);
}

static int submit(struct usage_job *j)
{
    int ok = 1;

    pthread_mutex_lock(&uq.lock);
    if (!uq.started && !uq.stopping) {
        uq.started = pthread_create(&uq.thread, NULL, usage_thread, NULL) == 0;
    }
    if (uq.started && !uq.stopping)
        STAILQ_INSERT_TAIL(&uq.jobs, j, link);
    else
        ok = 0;
    pthread_cond_signal(&uq.cond);
    pthread_mutex_unlock(&uq.lock);
    return ok ? 0 : -1;
}

void local_shutdown(void)
{
    struct usage_job *j;

    pthread_mutex_lock(&uq.lock);
    uq.stopping = 1;
    pthread_cond_signal(&uq.cond);
    pthread_mutex_unlock(&uq.lock);
    if (uq.started)
        pthread_join(uq.thread, NULL);
    uq.started = 0;
    while ((j = STAILQ_FIRST(&uq.jobs)) != NULL) {
        STAILQ_REMOVE_HEAD(&uq.jobs, link);
        job_free(j);
    }
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
    struct usage_job *j = calloc(1, sizeof *j);
    const char *v;

    if (j == NULL) {
        relay_set_error(r, 500, "out_of_memory", "orproxy is out of memory");
        return 0;
    }
    if (report_parse_time(query_arg(r, "since") ? query_arg(r, "since") : "30d", now, &j->q.since_ms) < 0 ||
        ((v = query_arg(r, "until")) != NULL && report_parse_time(v, now, &j->q.until_ms) < 0)) {
        relay_set_error(r, 400, "invalid_time", "since/until must look like 24h, 7d or 2026-11-01");
        job_free(j);
        return 0;
    }
    if ((v = query_arg(r, "by")) != NULL && report_parse_by(v, &j->q.by) < 0) {
        relay_set_error(r, 400, "invalid_group", "by must be one of key, model, day, user, none");
        job_free(j);
        return 0;
    }
    j->r = r;
    j->loop = r->loop;
    j->done.fn = usage_done;
    j->done.arg = j;
    j->ledger_path = strdup(cfg->ledger_path);
    if (!admin) {
        j->client = strdup(cfg->clients[r->client].name);
        j->q.client = j->client;
    }
    if (j->ledger_path == NULL || (!admin && j->client == NULL) || submit(j) < 0) {
        relay_set_error(r, 500, "ledger_unavailable", "the usage query could not be started");
        job_free(j);
        return 0;
    }
    r->usage_pending = 1;
    return 1;
}

static void reply(struct request *r, unsigned status, char *text, const char *ctype)
{
    r->reply = text;
    r->reply_status = status;
    r->reply_ctype = ctype;
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
    case ROUTE_KEY:
        reply(r, 200, access_key_json(r->cfg, r->client), "application/json");
        return 0;
    default:
        return 0;
    }
}
