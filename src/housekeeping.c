/* housekeeping.c - the background thread for work that may block.
 *
 * Two jobs, both off the request path and both allowed to take seconds:
 *  - the price table: loaded from the state directory's cache at start
 *    (so a restart without network still has prices), then fetched from
 *    GET {base_url}/models at start and every pricing.refresh_s, and saved
 *    back to the cache;
 *  - reconciliation: a stream the client aborted gets no usage chunk, so
 *    its ledger row starts as a local estimate; this thread asks
 *    GET {base_url}/generation?id=... a few times over about a minute
 *    (OpenRouter lags a few seconds) and, when it answers, turns the row's
 *    cost into OpenRouter's own figure (cost_source 'upstream') and settles
 *    the difference from the estimate into the live budgets (access.c), so
 *    an expensive aborted stream stops the next request, not the next
 *    restart.  It asks with the key the request went upstream with (the
 *    client's own or a pass-through key): another account's generation is
 *    not found with the shared key.  The item holds that key until it is
 *    done and wipes it then; it is never logged.
 * It uses blocking curl_easy_perform: one request at a time is plenty. */
#include "housekeeping.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "access.h"
#include "buf.h"
#include "ledger.h"
#include "log.h"
#include "pricing.h"
#include "util.h"
#include "upcurl.h"

#define RECONCILE_MAX 4096
static const int reconcile_delays_s[] = {2, 5, 10, 20, 30}; /* ~67 s in all */
#define RECONCILE_TRIES ((int)(sizeof reconcile_delays_s / sizeof reconcile_delays_s[0]))

struct rec_item {
    char gen_id[96];
    char *client;           /* whose budget it was settled against; NULL: anonymous */
    int64_t booked_ms;      /* wall ms it was settled at (its budget period) */
    int64_t settled_pusd;   /* the estimate it was settled at */
    char *key;              /* the upstream key it went with (secret, owned) */
    int tries;
    int64_t due_ms;
    TAILQ_ENTRY(rec_item) link;
};
TAILQ_HEAD(rec_list, rec_item);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running, stopping;
    struct orp_config *cfg;       /* held; replaced on reload */
    char cache_path[4096];
    struct rec_list items;        /* waiting; newest and retried first */
    size_t n_items;
    int busy;                     /* an item is being asked about (off the list) */
    struct housekeeping_stats st; /* under mu */
    CURL *easy;                   /* the thread's own; reused, so is its connection */
    int64_t next_refresh_ms;      /* under mu */
    int refreshing, refresh_asked; /* a fetch runs; a reload asked for another */
} H = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER,
       .items = TAILQ_HEAD_INITIALIZER(H.items)};

static void rec_item_free(struct rec_item *it)
{
    if (it == NULL)
        return;
    if (it->key != NULL) {
        explicit_bzero(it->key, strlen(it->key));
        free(it->key);
    }
    free(it->client);
    free(it);
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    buf_t *b = ud;
    if (buf_used(b) + size * n > 64u * 1024 * 1024)
        return 0;
    return buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* GET base_url + tail with key (NULL: the shared one); returns the HTTP
 * status (0 on transport failure). */
static long http_get(const struct orp_config *cfg, const char *tail, const char *key, buf_t *out)
{
    char url[4096];
    struct curl_slist *hdrs = NULL;
    long status = 0;
    CURL *e = H.easy;

    /* One handle for the thread's life: its connection to upstream stays open between
     * jobs (a TLS handshake per reconcile would cost more than the request). */
    if (e == NULL && (e = H.easy = curl_easy_init()) == NULL)
        return 0;
    curl_easy_reset(e);
    snprintf(url, sizeof url, "%s%s", cfg->upstream_base_url, tail);
    if (key == NULL)
        key = cfg->upstream_key;
    if (key != NULL && (hdrs = upcurl_add_auth(NULL, key)) == NULL)
        return 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    upcurl_common(e, cfg);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL); /* hdrs is freed; the handle lives on */
    upcurl_free_headers(hdrs); /* it holds the key */
    return status;
}

/* Returns when to refresh next (wall ms).  Runs without H.mu: the caller
 * stores the answer under it. */
static int64_t refresh_prices(const struct orp_config *cfg)
{
    buf_t b;
    char err[256];
    long st;
    struct price_table *t;

    memset(&b, 0, sizeof b);
    st = http_get(cfg, "/models", NULL, &b);
    if (st != 200) {
        log_warn("pricing: GET /models failed (status %ld); keeping %zu cached prices", st,
                 pricing_current_size());
        buf_free(&b);
        return util_wall_ms() + 60000;
    }
    t = pricing_table_from_models_json(buf_head(&b), buf_used(&b), err, sizeof err);
    buf_free(&b);
    if (t == NULL) {
        log_warn("pricing: bad /models answer: %s", err);
        return util_wall_ms() + 60000;
    }
    if (pricing_table_save(t, H.cache_path) < 0)
        log_warn("pricing: cannot save the price cache %s", H.cache_path);
    log_info("pricing: %zu model prices loaded from upstream", pricing_table_size(t));
    pricing_set_current(t);
    return util_wall_ms() + (int64_t)cfg->pricing_refresh_s * 1000;
}

/* 1: answered, 2: given up, 0: try again later. */
static int reconcile_one(const struct orp_config *cfg, struct rec_item *it)
{
    char tail[160];
    buf_t b;
    long st;
    int done = 0;

    memset(&b, 0, sizeof b);
    snprintf(tail, sizeof tail, "/generation?id=%s", it->gen_id);
    st = http_get(cfg, tail, it->key, &b);
    if (st == 200) {
        cJSON *root = cJSON_ParseWithLength(buf_head(&b), buf_used(&b));
        cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
        cJSON *cost = cJSON_GetObjectItemCaseSensitive(data, "total_cost");
        if (cJSON_IsNumber(cost)) {
            int64_t pusd = pricing_usd_to_pusd(cost->valuedouble), delta;
            ledger_update_cost(it->gen_id, pusd, COST_UPSTREAM);
            /* Both are >= 0, so the difference fits; checked all the same. */
            if (__builtin_sub_overflow(pusd, it->settled_pusd, &delta))
                delta = pusd > it->settled_pusd ? INT64_MAX : INT64_MIN;
            access_adjust_spend(it->client, it->booked_ms, delta);
            log_info("reconcile: %s cost %.8f USD from upstream", it->gen_id, cost->valuedouble);
            done = 1;
        }
        cJSON_Delete(root);
    }
    buf_free(&b);
    if (!done && it->tries >= RECONCILE_TRIES) {
        log_warn("reconcile: %s: no answer from /generation after %d tries; the ledger keeps "
                 "the local estimate",
                 it->gen_id, it->tries);
        done = 2;
    }
    return done;
}

/* Caller holds H.mu, which is dropped while upstream is asked.  Asks about
 * it (already off the list); puts it back for a later try unless it is
 * done or the thread is stopping. */
static void run_item(struct rec_item *it)
{
    struct orp_config *cfg = config_hold(H.cfg);
    int done;

    H.busy = 1;
    it->tries++;
    pthread_mutex_unlock(&H.mu);
    done = reconcile_one(cfg, it);
    config_release(cfg);
    pthread_mutex_lock(&H.mu);
    H.busy = 0;
    if (done == 1)
        H.st.answered++;
    else if (done == 2)
        H.st.given_up++;
    if (done || H.stopping) {
        rec_item_free(it);
        return;
    }
    it->due_ms = util_wall_ms() + reconcile_delays_s[it->tries] * 1000;
    TAILQ_INSERT_HEAD(&H.items, it, link);
    H.n_items++;
}

/* Caller holds H.mu.  Runs every item that is due; returns when the
 * earliest of the others is due (or `next` if that is sooner). */
static int64_t run_due_items(int64_t next)
{
    int64_t now = util_wall_ms();
    struct rec_item *it = TAILQ_FIRST(&H.items);

    while (it != NULL) {
        if (it->due_ms <= now) {
            TAILQ_REMOVE(&H.items, it, link);
            H.n_items--;
            run_item(it);
            it = TAILQ_FIRST(&H.items); /* the list changed while unlocked */
            now = util_wall_ms();
            continue;
        }
        if (it->due_ms < next)
            next = it->due_ms;
        it = TAILQ_NEXT(it, link);
    }
    return next;
}

static void *hk_main(void *arg)
{
    struct rec_item *it;

    (void)arg;
    pthread_mutex_lock(&H.mu);
    while (!H.stopping) {
        int64_t next, wait;
        struct timespec ts;

        if (H.cfg->upstream_key != NULL && util_wall_ms() >= H.next_refresh_ms) {
            struct orp_config *cfg = config_hold(H.cfg);
            int64_t due;
            H.refreshing = 1;
            pthread_mutex_unlock(&H.mu);
            due = refresh_prices(cfg);
            config_release(cfg);
            pthread_mutex_lock(&H.mu);
            /* A reload during the fetch asked for a refresh now: keep that. */
            if (!H.refresh_asked)
                H.next_refresh_ms = due;
            H.refreshing = H.refresh_asked = 0;
            continue;
        }
        next = run_due_items(H.next_refresh_ms);
        wait = next - util_wall_ms();
        if (wait < 10)
            wait = 10;
        if (wait > 1000)
            wait = 1000;
        ts = util_wall_after_ms(wait);
        pthread_cond_timedwait(&H.cv, &H.mu, &ts);
    }
    while ((it = TAILQ_FIRST(&H.items)) != NULL) {
        TAILQ_REMOVE(&H.items, it, link);
        rec_item_free(it);
    }
    H.n_items = 0;
    pthread_mutex_unlock(&H.mu);
    if (H.easy != NULL) {
        curl_easy_cleanup(H.easy);
        H.easy = NULL;
    }
    return NULL;
}

int housekeeping_start(struct orp_config *cfg)
{
    char err[256];
    struct price_table *t;

    H.cfg = config_hold(cfg);
    snprintf(H.cache_path, sizeof H.cache_path, "%s/prices.json", cfg->state_dir);
    t = pricing_table_load(H.cache_path, err, sizeof err);
    if (t != NULL) {
        log_info("pricing: %zu model prices from the cache %s", pricing_table_size(t),
                 H.cache_path);
        pricing_set_current(t);
    }
    H.next_refresh_ms = 0;
    H.stopping = 0;
    if (pthread_create(&H.thread, NULL, hk_main, NULL) != 0)
        return -1;
    H.running = 1;
    return 0;
}

void housekeeping_reconcile(const char *gen_id, const char *client, int64_t booked_ms,
                            int64_t settled_pusd, const char *key)
{
    struct rec_item *it;

    if (gen_id == NULL || gen_id[0] == '\0' || strlen(gen_id) >= sizeof it->gen_id)
        return;
    for (const char *p = gen_id; *p; p++) /* ids go into a URL: keep them plain */
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return;
    it = calloc(1, sizeof *it);
    if (it == NULL)
        return;
    snprintf(it->gen_id, sizeof it->gen_id, "%s", gen_id);
    it->booked_ms = booked_ms;
    it->settled_pusd = settled_pusd;
    if ((client != NULL && (it->client = strdup(client)) == NULL) ||
        (key != NULL && (it->key = strdup(key)) == NULL)) {
        rec_item_free(it);
        return;
    }
    it->due_ms = util_wall_ms() + reconcile_delays_s[0] * 1000;
    pthread_mutex_lock(&H.mu);
    if (!H.running || H.n_items >= RECONCILE_MAX) {
        H.st.dropped++;
        pthread_mutex_unlock(&H.mu);
        rec_item_free(it);
        log_warn("reconcile: queue full; %s keeps its local estimate", gen_id);
        return;
    }
    TAILQ_INSERT_HEAD(&H.items, it, link);
    H.n_items++;
    pthread_mutex_unlock(&H.mu);
    pthread_cond_signal(&H.cv);
}

void housekeeping_get_stats(struct housekeeping_stats *out)
{
    pthread_mutex_lock(&H.mu);
    *out = H.st;
    out->pending = H.n_items + (size_t)H.busy;
    pthread_mutex_unlock(&H.mu);
}

void housekeeping_stop(void)
{
    pthread_mutex_lock(&H.mu);
    if (!H.running) {
        pthread_mutex_unlock(&H.mu);
        return;
    }
    H.stopping = 1;
    pthread_mutex_unlock(&H.mu);
    pthread_cond_broadcast(&H.cv);
    pthread_join(H.thread, NULL);
    H.running = 0;
    config_release(H.cfg);
    H.cfg = NULL;
}

static int differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* Whether what the price table is fetched with differs between a and b. */
static int upstream_changed(const struct orp_config *a, const struct orp_config *b)
{
    return differ(a->upstream_base_url, b->upstream_base_url) || differ(a->upstream_key, b->upstream_key) ||
           differ(a->upstream_ca_file, b->upstream_ca_file) || differ(a->upstream_referer, b->upstream_referer) ||
           differ(a->upstream_title, b->upstream_title) ||
           a->upstream_connect_timeout_s != b->upstream_connect_timeout_s ||
           a->pricing_refresh_s != b->pricing_refresh_s;
}

void housekeeping_set_config(struct orp_config *cfg)
{
    struct orp_config *old;
    pthread_mutex_lock(&H.mu);
    old = H.cfg;
    H.cfg = config_hold(cfg);
    /* The upstream may have changed: refresh now.  Not when only clients
     * did (a managed client's create, edit or revoke republishes the
     * config): that would ask upstream for its price table on each. */
    if (old == NULL || upstream_changed(old, cfg)) {
        H.next_refresh_ms = 0;
        H.refresh_asked = H.refreshing;
    }
    pthread_mutex_unlock(&H.mu);
    pthread_cond_signal(&H.cv);
    config_release(old);
}
