/* console_query.c - the console's aggregate queries over the rollups.
 * See console_query.h for the contract; the requests list is in
 * console_rows.c.
 *
 * Every aggregate is a range scan of rollup_day or rollup_hour along its
 * primary key (time first), summed here rather than by SQL GROUP BY: a
 * GROUP BY on client or model would sort every rollup row of the range,
 * while a scan in key order with the sums in a small hash table of names
 * costs one step per row.  Rows of one hour or day come ordered by client,
 * so the name table first compares with the name it saw last and seldom
 * hashes.  Whole days are read from rollup_day (the overview, the spend,
 * daily series, the models' whole days): over 10 million requests, about
 * 6 times fewer rows than their hours.
 *
 * The time series keeps one cell per (bucket, name) seen: rows arrive in
 * time order, so a name's current cell is always its last one, and memory
 * follows the rows read, not names x buckets. */
#include "console_int.h"

#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "pricing.h"
#include "util.h"

#define HOUR_MS INT64_C(3600000)
#define DAY_MS INT64_C(86400000)
#define TOP_LIST 10

/* ---- a table of names (clients, models, sources) with their sums ---- */

struct names {
    char **name;
    struct cq_sums *sums;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1, 0 = empty; nslot a power of 2 */
    size_t nslot;
    size_t last;  /* the index found last, tried first */
};

static size_t name_hash(const char *s)
{
    size_t h = 14695981039346656037u;

    while (*s != '\0')
        h = (h ^ (unsigned char)*s++) * 1099511628211u;
    return h;
}

static int names_grow(struct names *t)
{
    size_t cap = t->cap ? t->cap * 2 : 32, nslot = cap * 2;
    char **name = realloc(t->name, cap * sizeof *name);
    struct cq_sums *sums;
    size_t *slot;

    if (name == NULL)
        return -1;
    t->name = name;
    if ((sums = realloc(t->sums, cap * sizeof *sums)) == NULL)
        return -1;
    t->sums = sums;
    if ((slot = calloc(nslot, sizeof *slot)) == NULL)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = name_hash(t->name[i]) & (nslot - 1);
        while (slot[h] != 0)
            h = (h + 1) & (nslot - 1);
        slot[h] = i + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = nslot;
    t->cap = cap;
    return 0;
}

/* The sums of s, added (zeroed) if new; NULL when out of memory. */
static struct cq_sums *names_get(struct names *t, const char *s)
{
    size_t h;
    char *copy;

    if (t->n > 0 && strcmp(t->name[t->last], s) == 0)
        return &t->sums[t->last];
    if (t->n == t->cap && names_grow(t) < 0)
        return NULL;
    for (h = name_hash(s) & (t->nslot - 1); t->slot[h] != 0; h = (h + 1) & (t->nslot - 1))
        if (strcmp(t->name[t->slot[h] - 1], s) == 0) {
            t->last = t->slot[h] - 1;
            return &t->sums[t->last];
        }
    if ((copy = strdup(s)) == NULL)
        return NULL;
    t->name[t->n] = copy;
    t->sums[t->n] = (struct cq_sums){0};
    t->slot[h] = t->n + 1;
    t->last = t->n++;
    return &t->sums[t->last];
}

static void names_free(struct names *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->name[i]);
    free(t->name);
    free(t->sums);
    free(t->slot);
    *t = (struct names){0};
}

static void sums_add(struct cq_sums *a, const struct cq_sums *b)
{
    a->requests += b->requests;
    a->errors += b->errors;
    a->prompt += b->prompt;
    a->completion += b->completion;
    a->cached += b->cached;
    a->reasoning += b->reasoning;
    a->cost = pricing_add_pusd(a->cost, b->cost);
}

/* ---- sorted name lists ---- */

/* One entry of a sorted view of a name table. */
struct named {
    const char *name;
    const struct cq_sums *s;
};

/* By cost, then requests (both descending), then name. */
static int by_cost(const void *a, const void *b)
{
    const struct named *x = a, *y = b;

    if (x->s->cost != y->s->cost)
        return x->s->cost > y->s->cost ? -1 : 1;
    if (x->s->requests != y->s->requests)
        return x->s->requests > y->s->requests ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* t's names in order.  Caller frees. */
static struct named *names_order(const struct names *t, int (*cmp)(const void *, const void *))
{
    struct named *v = malloc((t->n + 1) * sizeof *v);

    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        v[i] = (struct named){t->name[i], &t->sums[i]};
    qsort(v, t->n, sizeof *v, cmp);
    return v;
}

static void add_usd(cJSON *o, const char *key, int64_t pusd)
{
    char buf[PRICING_USD_BUFSZ];

    cJSON_AddStringToObject(o, key, pricing_format_usd(pusd, buf, sizeof buf));
}

/* A model name for a list: '' (no model) is null. */
static void add_model(cJSON *o, const char *key, const char *name)
{
    if (name[0] == '\0')
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddStringToObject(o, key, name);
}

/* [{key: name, "requests", ["errors",] "tokens", "cost_usd"}], the first
 * max names of t by cost. */
static cJSON *top_list(const struct names *t, const char *key, size_t max, int errors)
{
    struct named *v = names_order(t, by_cost);
    cJSON *arr = cJSON_CreateArray();

    if (v == NULL) {
        cJSON_Delete(arr);
        return NULL;
    }
    for (size_t i = 0; arr != NULL && i < t->n && i < max; i++) {
        const struct cq_sums *s = v[i].s;
        cJSON *o = cJSON_CreateObject();
        add_model(o, key, v[i].name);
        cJSON_AddNumberToObject(o, "requests", (double)s->requests);
        if (errors)
            cJSON_AddNumberToObject(o, "errors", (double)s->errors);
        cJSON_AddNumberToObject(o, "tokens", (double)(s->prompt + s->completion));
        add_usd(o, "cost_usd", s->cost);
        cJSON_AddItemToArray(arr, o);
    }
    free(v);
    return arr;
}

/* ---- overview ---- */

struct overview {
    int64_t day0, month0, last30;
    int64_t today, month, spend30;
    struct cq_sums all;
    struct names clients, models, sources, instances;
    int by_instance;
};

static int overview_row(const struct cq_row *r, void *arg)
{
    struct overview *o = arg;
    struct cq_sums *c, *m, *s;

    if (r->t_ms >= o->day0)
        o->today = pricing_add_pusd(o->today, r->s.cost);
    if (r->t_ms >= o->month0)
        o->month = pricing_add_pusd(o->month, r->s.cost);
    if (r->t_ms < o->last30)
        return 0;
    o->spend30 = pricing_add_pusd(o->spend30, r->s.cost);
    if ((c = names_get(&o->clients, r->client)) == NULL ||
        (m = names_get(&o->models, r->model)) == NULL ||
        (s = names_get(&o->sources, r->source)) == NULL)
        return -1;
    if (r->instance != NULL) {
        struct cq_sums *i = names_get(&o->instances, r->instance);
        if (i == NULL)
            return -1;
        sums_add(i, &r->s);
    }
    sums_add(&o->all, &r->s);
    sums_add(c, &r->s);
    sums_add(m, &r->s);
    sums_add(s, &r->s);
    return 0;
}

static cJSON *overview_json(const struct overview *o)
{
    cJSON *j = cJSON_CreateObject(), *spend, *tok, *src;
    struct named *v;

    spend = cJSON_AddObjectToObject(j, "spend");
    add_usd(spend, "today", o->today);
    add_usd(spend, "month", o->month);
    add_usd(spend, "last_30_days", o->spend30);
    cJSON_AddNumberToObject(j, "requests", (double)o->all.requests);
    cJSON_AddNumberToObject(j, "errors", (double)o->all.errors);
    tok = cJSON_AddObjectToObject(j, "tokens");
    cJSON_AddNumberToObject(tok, "prompt", (double)o->all.prompt);
    cJSON_AddNumberToObject(tok, "completion", (double)o->all.completion);
    cJSON_AddNumberToObject(tok, "cached", (double)o->all.cached);
    cJSON_AddNumberToObject(tok, "reasoning", (double)o->all.reasoning);
    src = cJSON_AddArrayToObject(j, "cost_by_source");
    v = names_order(&o->sources, by_cost);
    for (size_t i = 0; v != NULL && i < o->sources.n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "cost_source", v[i].name);
        add_usd(e, "cost_usd", v[i].s->cost);
        cJSON_AddNumberToObject(e, "requests", (double)v[i].s->requests);
        cJSON_AddItemToArray(src, e);
    }
    free(v);
    cJSON_AddItemToObject(j, "top_clients", top_list(&o->clients, "client", TOP_LIST, 1));
    cJSON_AddItemToObject(j, "top_models", top_list(&o->models, "model", TOP_LIST, 1));
    if (o->by_instance)
        cJSON_AddItemToObject(j, "top_instances",
                              top_list(&o->instances, "instance", TOP_LIST, 1));
    return j;
}

cJSON *cq_overview_from(const struct cq_source *src, int64_t now_ms, char *err, size_t errlen)
{
    struct overview o = {0};
    int64_t from;
    cJSON *j = NULL;

    if (now_ms <= 0) {
        util_set_err(err, errlen, "now must be a positive unix time in ms");
        return NULL;
    }
    o.by_instance = src->instances;
    o.day0 = limits_period_start(now_ms, LIMITS_DAY);
    o.month0 = limits_period_start(now_ms, LIMITS_MONTH);
    o.last30 = o.day0 - 29 * DAY_MS;
    from = o.month0 < o.last30 ? o.month0 : o.last30;
    if (src->scan(src->db, 1, from, INT64_MAX, overview_row, &o, err, errlen) == 0 &&
        (j = overview_json(&o)) == NULL)
        util_set_err(err, errlen, "ledger: out of memory");
    names_free(&o.clients);
    names_free(&o.models);
    names_free(&o.sources);
    names_free(&o.instances);
    return j;
}

/* ---- time series ---- */

struct cell {
    size_t bucket, name;
    struct cq_sums s;
};

struct series {
    int64_t t0, width;
    int by; /* enum cq_by */
    struct names names; /* totals over the range, to rank the names */
    size_t *last;          /* per name: its newest cell + 1 (0 = none) */
    size_t last_cap;
    struct cell *cells;
    size_t ncells, cap;
};

static int series_row(const struct cq_row *r, void *arg)
{
    struct series *ts = arg;
    size_t b = (size_t)((r->t_ms - ts->t0) / ts->width), id;
    struct cq_sums *tot = names_get(&ts->names, ts->by == CQ_BY_MODEL      ? r->model
                                                : ts->by == CQ_BY_INSTANCE ? r->instance
                                                                           : r->client);

    if (tot == NULL)
        return -1;
    sums_add(tot, &r->s);
    id = (size_t)(tot - ts->names.sums);
    if (id >= ts->last_cap) {
        size_t cap = ts->last_cap ? ts->last_cap * 2 : 64, *p = realloc(ts->last, cap * sizeof *p);
        if (p == NULL)
            return -1;
        memset(p + ts->last_cap, 0, (cap - ts->last_cap) * sizeof *p);
        ts->last = p;
        ts->last_cap = cap;
    }
    if (ts->last[id] == 0 || ts->cells[ts->last[id] - 1].bucket != b) {
        if (ts->ncells == ts->cap) {
            size_t cap = ts->cap ? ts->cap * 2 : 256;
            struct cell *p = realloc(ts->cells, cap * sizeof *p);
            if (p == NULL)
                return -1;
            ts->cells = p;
            ts->cap = cap;
        }
        ts->cells[ts->ncells] = (struct cell){.bucket = b, .name = id};
        ts->last[id] = ++ts->ncells;
    }
    sums_add(&ts->cells[ts->last[id] - 1].s, &r->s);
    return 0;
}

/* One series: the cells whose name maps to slot (slot[name] == want). */
static cJSON *series_json(const struct series *ts, const size_t *slot, size_t want,
                          const char *name, size_t nb)
{
    struct cq_sums *v = calloc(nb ? nb : 1, sizeof *v);
    cJSON *o = cJSON_CreateObject(), *cost, *req, *tok;

    if (v == NULL || o == NULL) {
        free(v);
        cJSON_Delete(o);
        return NULL;
    }
    for (size_t i = 0; i < ts->ncells; i++)
        if (slot[ts->cells[i].name] == want)
            sums_add(&v[ts->cells[i].bucket], &ts->cells[i].s);
    cJSON_AddStringToObject(o, "name", name[0] != '\0' ? name : "(none)");
    cost = cJSON_AddArrayToObject(o, "cost_usd");
    req = cJSON_AddArrayToObject(o, "requests");
    tok = cJSON_AddArrayToObject(o, "tokens");
    for (size_t b = 0; b < nb; b++) {
        char buf[PRICING_USD_BUFSZ];
        cJSON_AddItemToArray(cost, cJSON_CreateString(pricing_format_usd(v[b].cost, buf, sizeof buf)));
        cJSON_AddItemToArray(req, cJSON_CreateNumber((double)v[b].requests));
        cJSON_AddItemToArray(tok, cJSON_CreateNumber((double)(v[b].prompt + v[b].completion)));
    }
    free(v);
    return o;
}

/* The "series" array: the top_n names, then "(other)" if any remain. */
static cJSON *series_list(const struct series *ts, size_t top_n, size_t nb)
{
    struct named *v = names_order(&ts->names, by_cost);
    size_t *slot = malloc((ts->names.n + 1) * sizeof *slot);
    size_t shown = ts->names.n < top_n ? ts->names.n : top_n;
    cJSON *arr = cJSON_CreateArray(), *s = NULL;

    if (v == NULL || slot == NULL || arr == NULL)
        goto fail;
    for (size_t i = 0; i < ts->names.n; i++)
        slot[v[i].s - ts->names.sums] = i < shown ? i : shown;
    for (size_t i = 0; i <= shown; i++) {
        if (i == shown && shown == ts->names.n)
            break;
        s = series_json(ts, slot, i, i < shown ? v[i].name : "(other)", nb);
        if (s == NULL)
            goto fail;
        cJSON_AddItemToArray(arr, s);
    }
    free(v);
    free(slot);
    return arr;
fail:
    free(v);
    free(slot);
    cJSON_Delete(arr);
    return NULL;
}

static int series_check(const struct cq_source *src, int64_t since_ms, int64_t until_ms,
                        int bucket_day, int by, int top_n, char *err, size_t errlen)
{
    if (since_ms < 0 || until_ms < 0)
        util_set_err(err, errlen, "since and until must be unix times in ms (>= 0)");
    else if (since_ms > until_ms)
        util_set_err(err, errlen, "since must not be after until");
    else if ((bucket_day != 0 && bucket_day != 1) || by < CQ_BY_CLIENT || by > CQ_BY_INSTANCE)
        util_set_err(err, errlen, "bucket must be hour or day and by client, model or instance");
    else if (by == CQ_BY_INSTANCE && !src->instances)
        util_set_err(err, errlen, "by=instance needs ledger.backend = \"postgresql\"");
    else if (!bucket_day && until_ms - since_ms > CQ_MAX_HOURLY_MS)
        util_set_err(err, errlen, "a range of hourly buckets may span at most 400 days");
    else if (bucket_day && until_ms - since_ms > CQ_MAX_DAILY_MS)
        util_set_err(err, errlen, "a range of daily buckets may span at most 1830 days");
    else if (top_n < 1 || top_n > CQ_MAX_TOP_N)
        util_set_err(err, errlen, "top must be between 1 and %d", CQ_MAX_TOP_N);
    else
        return 0;
    return -1;
}

cJSON *cq_timeseries_from(const struct cq_source *src, int64_t since_ms, int64_t until_ms,
                          int bucket_day, int by, int top_n, char *err, size_t errlen)
{
    static const char *const by_label[] = {"client", "model", "instance"};
    struct series ts = {.width = bucket_day ? DAY_MS : HOUR_MS, .by = by};
    cJSON *j = NULL, *t, *list = NULL;
    size_t nb;

    if (series_check(src, since_ms, until_ms, bucket_day, by, top_n, err, errlen) < 0)
        return NULL;
    ts.t0 = since_ms - since_ms % ts.width;
    nb = until_ms > ts.t0 ? (size_t)((until_ms - ts.t0 + ts.width - 1) / ts.width) : 0;
    if (src->scan(src->db, bucket_day, ts.t0, ts.t0 + (int64_t)nb * ts.width, series_row, &ts, err, errlen) < 0)
        goto done;
    if ((list = series_list(&ts, (size_t)top_n, nb)) == NULL || (j = cJSON_CreateObject()) == NULL)
        goto oom;
    cJSON_AddStringToObject(j, "bucket", bucket_day ? "day" : "hour");
    cJSON_AddStringToObject(j, "by", by_label[by]);
    cJSON_AddNumberToObject(j, "since", (double)since_ms);
    cJSON_AddNumberToObject(j, "until", (double)until_ms);
    t = cJSON_AddArrayToObject(j, "t");
    for (size_t b = 0; b < nb; b++)
        cJSON_AddItemToArray(t, cJSON_CreateNumber((double)(ts.t0 + (int64_t)b * ts.width)));
    cJSON_AddItemToObject(j, "series", list);
    list = NULL;
    goto done;
oom:
    util_set_err(err, errlen, "ledger: out of memory");
done:
    cJSON_Delete(list);
    names_free(&ts.names);
    free(ts.last);
    free(ts.cells);
    return j;
}

/* ---- models and spend ---- */

static int model_row(const struct cq_row *r, void *arg)
{
    struct cq_sums *s = names_get(arg, r->model);

    if (s == NULL)
        return -1;
    sums_add(s, &r->s);
    return 0;
}

cJSON *cq_models_from(const struct cq_source *src, int64_t since_ms, char *err, size_t errlen)
{
    struct names t = {0};
    cJSON *j = NULL, *list;
    int64_t day1;

    if (since_ms < 0) {
        util_set_err(err, errlen, "since must be a unix time in ms (>= 0)");
        return NULL;
    }
    /* The hours before the first whole day, then whole days. */
    day1 = since_ms % DAY_MS != 0 ? since_ms - since_ms % DAY_MS + DAY_MS : since_ms;
    if (src->scan(src->db, 0, since_ms - since_ms % HOUR_MS, day1, model_row, &t, err, errlen) == 0 &&
        src->scan(src->db, 1, day1, INT64_MAX, model_row, &t, err, errlen) == 0) {
        list = top_list(&t, "model", t.n, 0);
        if (list == NULL || (j = cJSON_CreateObject()) == NULL) {
            cJSON_Delete(list);
            util_set_err(err, errlen, "ledger: out of memory");
        } else {
            cJSON_AddItemToObject(j, "models", list);
        }
    }
    names_free(&t);
    return j;
}

struct spend {
    int64_t day0;
    struct names clients; /* sums.cost = the month's, cost_day the day's */
    int64_t day, month;
};

static int spend_row(const struct cq_row *r, void *arg)
{
    struct spend *sp = arg;
    struct cq_sums *s = names_get(&sp->clients, r->client);

    if (s == NULL)
        return -1;
    s->cost = pricing_add_pusd(s->cost, r->s.cost);
    sp->month = pricing_add_pusd(sp->month, r->s.cost);
    if (r->t_ms >= sp->day0) {
        s->cost_day = pricing_add_pusd(s->cost_day, r->s.cost);
        sp->day = pricing_add_pusd(sp->day, r->s.cost);
    }
    return 0;
}

static cJSON *spend_json(const struct spend *sp)
{
    struct named *v = names_order(&sp->clients, by_name);
    cJSON *j = cJSON_CreateObject(), *arr, *all;

    if (v == NULL || j == NULL) {
        free(v);
        cJSON_Delete(j);
        return NULL;
    }
    arr = cJSON_AddArrayToObject(j, "clients");
    for (size_t i = 0; i < sp->clients.n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "client", v[i].name);
        add_usd(o, "spent_usd_day", v[i].s->cost_day);
        add_usd(o, "spent_usd_month", v[i].s->cost);
        cJSON_AddItemToArray(arr, o);
    }
    all = cJSON_AddObjectToObject(j, "all");
    add_usd(all, "spent_usd_day", sp->day);
    add_usd(all, "spent_usd_month", sp->month);
    free(v);
    return j;
}

cJSON *cq_spend_from(const struct cq_source *src, int64_t now_ms, char *err, size_t errlen)
{
    struct spend sp = {0};
    cJSON *j = NULL;

    if (now_ms <= 0) {
        util_set_err(err, errlen, "now must be a positive unix time in ms");
        return NULL;
    }
    sp.day0 = limits_period_start(now_ms, LIMITS_DAY);
    if (src->scan(src->db, 1, limits_period_start(now_ms, LIMITS_MONTH), INT64_MAX, spend_row, &sp, err,
                    errlen) == 0 &&
        (j = spend_json(&sp)) == NULL)
        util_set_err(err, errlen, "ledger: out of memory");
    names_free(&sp.clients);
    return j;
}
