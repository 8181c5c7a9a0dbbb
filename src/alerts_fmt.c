/* alerts_fmt.c - see alerts_fmt.h. */
#include "alerts_fmt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pricing.h"

void alertsfmt_utc(int64_t ms, const char *fmt, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, fmt, &tm);
}

/* The webhook's host, for log lines: never its path or credentials. */
void alertsfmt_url_host(const char *url, char *out, size_t n)
{
    const char *h = strstr(url, "://");
    size_t len;
    const char *at;

    h = h != NULL ? h + 3 : url;
    len = strcspn(h, "/?#");
    at = memrchr(h, '@', len);
    if (at != NULL) {
        len -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    snprintf(out, n, "%.*s", (int)len, h);
}

/* "client 'alice' day budget for 2026-12-01 reached 50% ($0.60 of $1.00)" */
void alertsfmt_describe(const struct alert_row *a, char *buf, size_t n)
{
    char spent[PRICING_USD_BUFSZ], limit[PRICING_USD_BUFSZ], who[160];

    if (a->client[0] != '\0')
        snprintf(who, sizeof who, "client '%s'", a->client);
    else
        snprintf(who, sizeof who, "all traffic");
    if (strcmp(a->budget, "expiry") == 0) {
        snprintf(buf, n, "%s: its key expires on %s", who, a->period);
        return;
    }
    if (strcmp(a->budget, "spool") == 0) {
        snprintf(buf, n,
                 "the PostgreSQL ledger is unreachable: %lld bytes of rows wait in the local spool "
                 "(past %d KiB on %s); they replay when it is back",
                 (long long)a->spent_pusd, a->threshold, a->period);
        return;
    }
    pricing_format_usd(a->spent_pusd, spent, sizeof spent);
    pricing_format_usd(a->limit_pusd, limit, sizeof limit);
    snprintf(buf, n, "%s %s budget for %s reached %d%% ($%s of $%s)", who, a->budget, a->period,
             a->threshold, spent, limit);
}

/* Slack's incoming webhooks read &, < and > as markup. */
static void slack_escape(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 6 < n; s++) {
        const char *rep = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (rep != NULL) {
            memcpy(out + k, rep, strlen(rep));
            k += strlen(rep);
        } else {
            out[k++] = *s;
        }
    }
    out[k] = '\0';
}

/* The POST body (malloc'd), or NULL when out of memory. */
char *alertsfmt_body(const struct alert_row *a, int slack, const char *instance)
{
    cJSON *o = cJSON_CreateObject();
    char at[32], usd[PRICING_USD_BUFSZ], *out;
    int expiry = strcmp(a->budget, "expiry") == 0, spool = strcmp(a->budget, "spool") == 0;

    if (o == NULL)
        return NULL;
    alertsfmt_utc(a->crossed_ms, "%Y-%m-%dT%H:%M:%SZ", at, sizeof at);
    if (slack) {
        char what[512], text[1024], esc[1100];
        alertsfmt_describe(a, what, sizeof what);
        snprintf(text, sizeof text, "orproxy on %s: %s%s", instance, what,
                 expiry ? "; rotate it before then" : "");
        slack_escape(text, esc, sizeof esc);
        cJSON_AddStringToObject(o, "text", esc);
    } else if (spool) {
        cJSON_AddStringToObject(o, "type", "spool");
        cJSON_AddStringToObject(o, "period", a->period);
        cJSON_AddNumberToObject(o, "threshold_kib", a->threshold);
        cJSON_AddNumberToObject(o, "spool_bytes", (double)a->spent_pusd);
        cJSON_AddStringToObject(o, "instance", instance);
        cJSON_AddStringToObject(o, "at", at);
    } else {
        cJSON_AddStringToObject(o, "type", expiry ? "expiry" : "budget");
        if (a->client[0] != '\0')
            cJSON_AddStringToObject(o, "client", a->client);
        else
            cJSON_AddNullToObject(o, "client");
        cJSON_AddStringToObject(o, "budget", a->budget);
        cJSON_AddStringToObject(o, "period", a->period);
        if (!expiry) {
            cJSON_AddNumberToObject(o, "threshold_pct", a->threshold);
            cJSON_AddStringToObject(o, "spent_usd",
                                    pricing_format_usd(a->spent_pusd, usd, sizeof usd));
            cJSON_AddStringToObject(o, "limit_usd",
                                    pricing_format_usd(a->limit_pusd, usd, sizeof usd));
        }
        cJSON_AddStringToObject(o, "instance", instance);
        cJSON_AddStringToObject(o, "at", at);
    }
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}
