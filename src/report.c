/* report.c - usage reports over the ledger.  See report.h.
 *
 * The SQL differs between groupings only in the group expression, so each
 * grouping has its own complete statement, assembled at compile time from
 * one template: no SQL is ever built at run time, and the user's values
 * (time bounds, client) only ever reach SQLite as bound parameters.  The
 * rows land in a plain array (struct report_acc) that each output format
 * renders; the grand total is summed in C from the group rows, so it is
 * exactly the sum of what is shown and comes from the same snapshot.
 *
 * Group values come from clients (the request's "user" field is whatever a
 * caller sent), so the table replaces control characters before they reach
 * a terminal; CSV and JSON carry them quoted. */
#include "report.h"

#include "pricing.h"
#include "utf8.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


struct row {
    char *group; /* malloc'd, NULL when the rows have no value for it */
    struct report_sums s;
};

/* One report's result; owned by whoever ran the query, released with
 * result_free(). */
struct report_acc {
    struct row *rows;
    size_t n, cap;
    struct report_sums total;
};

#define REPORT_SQL(group_expr)                                                                 \
    "SELECT " group_expr " AS grp, COUNT(*),"                                                  \
    " SUM(CASE WHEN status >= 400 OR outcome <> 'ok' THEN 1 ELSE 0 END),"                      \
    " SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(cost_pusd),"          \
    " SUM(CASE WHEN cost_source = 'estimate' THEN cost_pusd ELSE 0 END),"                      \
    " SUM(CASE WHEN cost_source = 'pricing' THEN cost_pusd ELSE 0 END)"                        \
    " FROM requests"                                                                           \
    " WHERE started_ms >= ?1 AND started_ms < ?2 AND (?3 IS NULL OR client = ?3)"              \
    " GROUP BY grp ORDER BY 7 DESC, grp IS NULL, grp"

/* Indexed by enum report_by. */
static const struct {
    const char *name;  /* for --by and "by" */
    const char *title; /* table column header */
    const char *sql;
} groupings[] = {
    {"none", "", REPORT_SQL("NULL")},
    {"key", "KEY", REPORT_SQL("client")},
    {"model", "MODEL", REPORT_SQL("COALESCE(NULLIF(served_model, ''), NULLIF(model, ''))")},
    {"day", "DAY", REPORT_SQL("strftime('%Y-%m-%d', started_ms / 1000, 'unixepoch')")},
    {"user", "USER", REPORT_SQL("NULLIF(\"user\", '')")},
    {"instance", "INSTANCE", NULL}, /* no such column in SQLite (report_pg.c) */
};

/* ---- parsing (report_parse.c has the times and formats) ------------- */

int report_parse_by(const char *s, enum report_by *out)
{
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof groupings / sizeof groupings[0]; i++) {
        if (strcmp(s, groupings[i].name) == 0) {
            *out = (enum report_by)i;
            return 0;
        }
    }
    return -1;
}

/* ---- formatting helpers ----------------------------------------------- */

/* ISO-8601 UTC, with milliseconds only when there are some. */
static void iso_time(int64_t ms, char *buf, size_t n)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    int frac = (int)(ms % 1000);

    char date[24];

    gmtime_r(&secs, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac != 0)
        snprintf(buf, n, "%s.%03dZ", date, frac);
    else
        snprintf(buf, n, "%sZ", date);
}

/* ---- the query -------------------------------------------------------- */

static void result_free(struct report_acc *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->rows[i].group);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static int sums_add(struct report_sums *acc, const struct report_sums *s)
{
#define ADD(f) __builtin_add_overflow(acc->f, s->f, &acc->f)
    if (ADD(requests) || ADD(errors) || ADD(prompt) || ADD(completion) || ADD(total) ||
        ADD(cost) || ADD(est) || ADD(priced))
        return -1;
#undef ADD
    return 0;
}

static int check_ledger(sqlite3 *db, char *err, size_t errlen)
{
    static const char sql[] = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'";
    sqlite3_stmt *st = NULL;
    int rc, ret = -1;

    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ret = 0;
    else if (rc == SQLITE_DONE)
        util_set_err(err, errlen, "not an orproxy ledger (no requests table)");
    else if (rc == SQLITE_NOTADB)
        util_set_err(err, errlen, "not an orproxy ledger (not an SQLite database)");
    else
        util_set_err(err, errlen, "cannot read ledger: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ret;
}

int report_acc_add(struct report_acc *r, const char *group, const struct report_sums *s,
                   enum report_by by, char *err, size_t errlen)
{
    struct row row = {0};

    row.s = *s;
    if (sums_add(&r->total, &row.s) < 0) {
        util_set_err(err, errlen, "cannot query ledger: totals overflow 64 bits");
        return -1;
    }
    if (by == REPORT_BY_NONE)
        return 0;
    if (group != NULL && (row.group = strdup(group)) == NULL)
        goto nomem;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        struct row *rows = realloc(r->rows, cap * sizeof *rows);
        if (rows == NULL) {
            free(row.group);
            goto nomem;
        }
        r->rows = rows;
        r->cap = cap;
    }
    r->rows[r->n++] = row;
    return 0;
nomem:
    util_set_err(err, errlen, "out of memory");
    return -1;
}

/* The SQLite ledger as a report_fill_fn; src is the sqlite3 handle. */
static int sqlite_fill(void *src, const struct report_query *q, struct report_acc *r, char *err,
                       size_t errlen)
{
    sqlite3 *db = src;
    sqlite3_stmt *st = NULL;
    int rc, ret = -1;

    if (groupings[q->by].sql == NULL) {
        util_set_err(err, errlen, "by %s needs ledger.backend = \"postgresql\"",
                     groupings[q->by].name);
        return -1;
    }
    if (check_ledger(db, err, errlen) < 0)
        return -1;
    if (sqlite3_prepare_v2(db, groupings[q->by].sql, -1, &st, NULL) != SQLITE_OK) {
        util_set_err(err, errlen, "cannot query ledger: %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_bind_int64(st, 1, q->since_ms != 0 ? q->since_ms : INT64_MIN);
    sqlite3_bind_int64(st, 2, q->until_ms != 0 ? q->until_ms : INT64_MAX);
    if (q->client != NULL)
        sqlite3_bind_text(st, 3, q->client, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct report_sums s;
        s.requests = sqlite3_column_int64(st, 1);
        s.errors = sqlite3_column_int64(st, 2);
        s.prompt = sqlite3_column_int64(st, 3);
        s.completion = sqlite3_column_int64(st, 4);
        s.total = sqlite3_column_int64(st, 5);
        s.cost = sqlite3_column_int64(st, 6);
        s.est = sqlite3_column_int64(st, 7);
        s.priced = sqlite3_column_int64(st, 8);
        if (report_acc_add(r, (const char *)sqlite3_column_text(st, 0), &s, q->by, err, errlen) < 0)
            goto done;
    }
    if (rc != SQLITE_DONE) {
        util_set_err(err, errlen, "cannot query ledger: %s", sqlite3_errmsg(db));
        goto done;
    }
    ret = 0;
done:
    sqlite3_finalize(st);
    return ret;
}

static int run_query(report_fill_fn fill, void *src, const struct report_query *q,
                     struct report_acc *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if ((unsigned)q->by >= sizeof groupings / sizeof groupings[0]) {
        util_set_err(err, errlen, "invalid grouping %d", (int)q->by);
        return -1;
    }
    if (fill(src, q, r, err, errlen) < 0) {
        result_free(r);
        return -1;
    }
    return 0;
}

/* ---- JSON ------------------------------------------------------------- */

static double estimated_share(const struct report_sums *s)
{
    return s->cost > 0 && s->est > 0 ? (double)s->est / (double)s->cost : 0.0;
}

static int add_usd(cJSON *o, const char *name, int64_t pusd)
{
    char usd[32];

    pricing_format_usd(pusd, usd, sizeof usd);
    return cJSON_AddStringToObject(o, name, usd) != NULL ? 0 : -1;
}

static int add_sums(cJSON *o, const struct report_sums *s)
{
    const struct {
        const char *name;
        int64_t v;
    } counts[] = {{"requests", s->requests},
                  {"errors", s->errors},
                  {"prompt_tokens", s->prompt},
                  {"completion_tokens", s->completion},
                  {"total_tokens", s->total}};

    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        if (cJSON_AddNumberToObject(o, counts[i].name, (double)counts[i].v) == NULL)
            return -1;
    if (add_usd(o, "cost_usd", s->cost) < 0 || add_usd(o, "estimated_cost_usd", s->est) < 0 ||
        add_usd(o, "priced_cost_usd", s->priced) < 0 ||
        cJSON_AddNumberToObject(o, "cost_pusd", (double)s->cost) == NULL ||
        cJSON_AddNumberToObject(o, "estimated_cost_pusd", (double)s->est) == NULL ||
        cJSON_AddNumberToObject(o, "priced_cost_pusd", (double)s->priced) == NULL)
        return -1;
    return 0;
}

static int add_time(cJSON *o, const char *name, int64_t ms)
{
    char iso[40];

    if (ms == 0)
        return cJSON_AddNullToObject(o, name) != NULL ? 0 : -1;
    iso_time(ms, iso, sizeof iso);
    return cJSON_AddStringToObject(o, name, iso) != NULL ? 0 : -1;
}

static cJSON *result_json(const struct report_query *q, const struct report_acc *r)
{
    cJSON *root = cJSON_CreateObject(), *rows, *total;

    if (root == NULL || add_time(root, "since", q->since_ms) < 0 ||
        add_time(root, "until", q->until_ms) < 0 ||
        cJSON_AddStringToObject(root, "by", groupings[q->by].name) == NULL ||
        (rows = cJSON_AddArrayToObject(root, "rows")) == NULL)
        goto fail;
    for (size_t i = 0; i < r->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
            goto fail;
        cJSON_AddItemToArray(rows, o);
        /* Rows written before names were checked may hold invalid UTF-8,
         * which cJSON would print as it is: the answer must stay JSON. */
        char *group = r->rows[i].group != NULL ? utf8_sanitize_dup(r->rows[i].group) : NULL;
        cJSON *g = group != NULL ? cJSON_AddStringToObject(o, "group", group)
                                 : cJSON_AddNullToObject(o, "group");
        free(group);
        if (g == NULL || add_sums(o, &r->rows[i].s) < 0)
            goto fail;
    }
    if ((total = cJSON_AddObjectToObject(root, "total")) == NULL || add_sums(total, &r->total) < 0 ||
        cJSON_AddNumberToObject(root, "estimated_share", estimated_share(&r->total)) == NULL)
        goto fail;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

cJSON *report_query_json(sqlite3 *db, const struct report_query *q, char *err, size_t errlen)
{
    return report_json_with(sqlite_fill, db, q, err, errlen);
}

cJSON *report_json_with(report_fill_fn fill, void *src, const struct report_query *q, char *err,
                        size_t errlen)
{
    struct report_acc r;
    cJSON *root;

    if (run_query(fill, src, q, &r, err, errlen) < 0)
        return NULL;
    root = result_json(q, &r);
    if (root == NULL)
        util_set_err(err, errlen, "out of memory");
    result_free(&r);
    return root;
}

/* ---- table ------------------------------------------------------------ */

#define NCOLS 7

static const char *const table_headers[NCOLS] = {"",       "REQUESTS",   "ERRORS",  "PROMPT",
                                                 "COMPLETION", "TOTAL_TOKENS", "COST_USD"};

/* The numeric cells of one table line. */
struct cells {
    char v[NCOLS - 1][32];
};

static void sums_cells(const struct report_sums *s, struct cells *c)
{
    snprintf(c->v[0], sizeof c->v[0], "%" PRId64, s->requests);
    snprintf(c->v[1], sizeof c->v[1], "%" PRId64, s->errors);
    snprintf(c->v[2], sizeof c->v[2], "%" PRId64, s->prompt);
    snprintf(c->v[3], sizeof c->v[3], "%" PRId64, s->completion);
    snprintf(c->v[4], sizeof c->v[4], "%" PRId64, s->total);
    pricing_format_usd(s->cost, c->v[5], sizeof c->v[5]);
}

/* Columns a UTF-8 string takes, near enough: its code points. */
static size_t display_width(const char *s)
{
    size_t w = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* A copy of a group value safe to print on a terminal. */
static char *table_label(const char *group)
{
    char *l = strdup(group != NULL ? group : "(none)");

    if (l != NULL)
        for (char *p = l; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return l;
}

static void put_line(FILE *out, const size_t *width, const char *label, const struct cells *c,
                     const char *const *hdr)
{
    size_t pad = width[0] - display_width(label);

    fprintf(out, "%s%*s", label, (int)pad, "");
    for (int i = 1; i < NCOLS; i++)
        fprintf(out, "  %*s", (int)width[i], hdr != NULL ? hdr[i] : c->v[i - 1]);
    fputc('\n', out);
}

static int write_table(const struct report_query *q, const struct report_acc *r, FILE *out)
{
    size_t width[NCOLS];
    struct cells total, *cells = NULL;
    char **labels = NULL;
    char from[40], to[40], est[32], all[32];
    int ret = -1;

    if (r->n > 0 && ((cells = calloc(r->n, sizeof *cells)) == NULL ||
                     (labels = calloc(r->n, sizeof *labels)) == NULL))
        goto done;
    for (int i = 0; i < NCOLS; i++)
        width[i] = strlen(i == 0 ? groupings[q->by].title : table_headers[i]);
    sums_cells(&r->total, &total);
    if (width[0] < strlen("TOTAL"))
        width[0] = strlen("TOTAL");
    for (int i = 1; i < NCOLS; i++)
        if (width[i] < strlen(total.v[i - 1]))
            width[i] = strlen(total.v[i - 1]);
    for (size_t k = 0; k < r->n; k++) {
        if ((labels[k] = table_label(r->rows[k].group)) == NULL)
            goto done;
        sums_cells(&r->rows[k].s, &cells[k]);
        if (width[0] < display_width(labels[k]))
            width[0] = display_width(labels[k]);
        for (int i = 1; i < NCOLS; i++)
            if (width[i] < strlen(cells[k].v[i - 1]))
                width[i] = strlen(cells[k].v[i - 1]);
    }

    if (q->since_ms != 0)
        iso_time(q->since_ms, from, sizeof from);
    else
        snprintf(from, sizeof from, "the beginning");
    if (q->until_ms != 0)
        iso_time(q->until_ms, to, sizeof to);
    else
        snprintf(to, sizeof to, "now");
    fprintf(out, "orproxy usage from %s to %s\n", from, to);
    put_line(out, width, groupings[q->by].title, NULL, table_headers);
    for (size_t k = 0; k < r->n; k++)
        put_line(out, width, labels[k], &cells[k], NULL);
    put_line(out, width, "TOTAL", &total, NULL);

    if (r->total.est == 0) {
        fputs("estimated: none (all costs as reported by OpenRouter or computed from its price "
              "table)\n",
              out);
    } else {
        pricing_format_usd(r->total.est, est, sizeof est);
        pricing_format_usd(r->total.cost, all, sizeof all);
        fprintf(out,
                "estimated: $%s of $%s (%.1f%%) is a local estimate (cost_source=estimate); the "
                "rest is as reported by OpenRouter or computed from its price table\n",
                est, all, 100.0 * estimated_share(&r->total));
    }
    ret = 0;
done:
    for (size_t k = 0; labels != NULL && k < r->n; k++)
        free(labels[k]);
    free(labels);
    free(cells);
    return ret;
}

/* ---- CSV -------------------------------------------------------------- */

/* One field, quoted per RFC 4180 when it needs to be. */
static void csv_field(FILE *out, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void csv_line(FILE *out, const char *group, const struct report_sums *s)
{
    char cost[32], est[32];

    pricing_format_usd(s->cost, cost, sizeof cost);
    pricing_format_usd(s->est, est, sizeof est);
    csv_field(out, group);
    fprintf(out, ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%s,%s\n",
            s->requests, s->errors, s->prompt, s->completion, s->total, cost, est);
}

static void write_csv(const struct report_acc *r, FILE *out)
{
    fputs("group,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost_usd,"
          "estimated_cost_usd\n",
          out);
    for (size_t k = 0; k < r->n; k++)
        csv_line(out, r->rows[k].group != NULL ? r->rows[k].group : "", &r->rows[k].s);
    csv_line(out, "TOTAL", &r->total);
}

/* ---- the command ------------------------------------------------------ */

static int write_json(const struct report_query *q, const struct report_acc *r, FILE *out)
{
    cJSON *root = result_json(q, r);
    char *text = root != NULL ? cJSON_Print(root) : NULL;
    int ret = -1;

    if (text != NULL) {
        fputs(text, out);
        fputc('\n', out);
        ret = 0;
    }
    cJSON_free(text);
    cJSON_Delete(root);
    return ret;
}

int report_write(const char *db_path, const struct report_query *q, enum report_format fmt,
                 FILE *out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    char why[256];
    int rc, ret = -1;

    rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        util_set_err(err, errlen, "cannot open %s: %s", db_path,
                db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto done;
    }
    sqlite3_busy_timeout(db, 2000);
    if (report_write_with(sqlite_fill, db, q, fmt, out, why, sizeof why) < 0) {
        util_set_err(err, errlen, "%s: %s", db_path, why);
        goto done;
    }
    ret = 0;
done:
    sqlite3_close(db);
    return ret;
}

int report_write_with(report_fill_fn fill, void *src, const struct report_query *q,
                      enum report_format fmt, FILE *out, char *err, size_t errlen)
{
    struct report_acc r = {0};
    int rc, ret = -1;

    if (run_query(fill, src, q, &r, err, errlen) < 0)
        return -1;
    switch (fmt) {
    case REPORT_TABLE: rc = write_table(q, &r, out); break;
    case REPORT_JSON: rc = write_json(q, &r, out); break;
    case REPORT_CSV: write_csv(&r, out); rc = 0; break;
    default:
        util_set_err(err, errlen, "invalid report format %d", (int)fmt);
        goto done;
    }
    if (rc < 0) {
        util_set_err(err, errlen, "out of memory");
        goto done;
    }
    if (fflush(out) != 0 || ferror(out)) {
        util_set_err(err, errlen, "cannot write report: %s", strerror(errno));
        goto done;
    }
    ret = 0;
done:
    result_free(&r);
    return ret;
}
