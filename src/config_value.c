/* config_value.c - setting values libconfig gets wrong or cannot express.
 * See config_int.h.
 *
 * libconfig 1.5 keeps only the low 32 bits of an integer written without
 * the L suffix, so such a value is read again from its source line by a
 * small lexer of its own (parse_literal, literal_on_line).  Money is kept
 * exact in picodollars, which a double cannot carry, so a budget may also
 * be written as a decimal string. */
#include "config_int.h"

#include "pricing.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Money: a number (5, 2.5) or a decimal string ("0.25"), kept exact in
 * picodollars, at most PRICING_MAX_COST_USD: int64 picodollars end at
 * $9,223,372.036854775807, and a budget needs room above it for the
 * spend it is compared with. */
int config_parse_usd(struct loader *ld, config_setting_t *cs, const char *name, long long *out)
{
    int line = (int)config_setting_source_line(cs);
    int64_t atto;

    switch (config_setting_type(cs)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        if (config_setting_get_int64(cs) < 0 || config_setting_get_int64(cs) > PRICING_MAX_COST_USD)
            goto range;
        *out = config_setting_get_int64(cs) * 1000000000000LL;
        return 0;
    case CONFIG_TYPE_FLOAT:
        if (!(config_setting_get_float(cs) >= 0) ||
            config_setting_get_float(cs) > (double)PRICING_MAX_COST_USD)
            goto range;
        *out = pricing_usd_to_pusd(config_setting_get_float(cs));
        return 0;
    case CONFIG_TYPE_STRING:
        /* attodollars hold at most ~9 USD: parse as a decimal with 12 places */
        {
            const char *v = config_setting_get_string(cs);
            char whole[32] = "", frac[16] = "000000000000";
            size_t w = strspn(v, "0123456789");
            if (w == 0 || w > 9)
                goto bad;
            memcpy(whole, v, w);
            if (v[w] == '.') {
                size_t f = strspn(v + w + 1, "0123456789");
                if (f == 0 || f > 12 || v[w + 1 + f] != '\0')
                    goto bad;
                memcpy(frac, v + w + 1, f);
            } else if (v[w] != '\0') {
                goto bad;
            }
            if (atoll(whole) > PRICING_MAX_COST_USD ||
                atoll(whole) * 1000000000000LL + atoll(frac) > PRICING_MAX_COST_PUSD)
                goto range;
            *out = atoll(whole) * 1000000000000LL + atoll(frac);
            (void)atto;
            return 0;
        }
    default:
        break;
    }
bad:
    return config_fail_at(ld, line, "%s must be an amount in USD such as 5 or \"2.50\"", name);
range:
    return config_fail_at(ld, line, "%s must be between 0 and %d USD", name, PRICING_MAX_COST_USD);
}

/* Parses a libconfig integer literal at p (decimal, or 0x hex, optional
 * sign) as written, saturating on overflow.  Returns where it ends, or NULL
 * if p holds no plain integer (an int64 or a float is not ours to redo). */
static const char *parse_literal(const char *p, long long *v)
{
    unsigned long long u = 0, limit;
    unsigned base = 10;
    const char *digits;
    int neg = 0;

    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    digits = p;
    limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (;; p++) {
        unsigned d;
        if (isdigit((unsigned char)*p))
            d = (unsigned)(*p - '0');
        else if (base == 16 && isxdigit((unsigned char)*p))
            d = (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
        else
            break;
        u = u > (limit - d) / base ? limit : u * base + d; /* saturate: outside every range */
    }
    if (p == digits || *p == 'L' || *p == '.' || isalnum((unsigned char)*p))
        return NULL;
    if (!neg)
        *v = (long long)u;
    else
        *v = u > (unsigned long long)LLONG_MAX ? LLONG_MIN : -(long long)u;
    return p;
}

/* The value of `leaf = NUMBER` on this source line, outside strings and
 * comments, whose low 32 bits are libval; libval if there is none. */
static long long literal_on_line(const char *text, const char *leaf, int libval)
{
    size_t leaflen = strlen(leaf);
    int in_str = 0;

    for (const char *p = text; *p; p++) {
        const char *q;
        long long v;

        if (in_str) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            else if (*p == '"')
                in_str = 0;
            continue;
        }
        if (*p == '"') {
            in_str = 1;
            continue;
        }
        if (*p == '#' || (p[0] == '/' && (p[1] == '/' || p[1] == '*')))
            break;
        if (strncmp(p, leaf, leaflen) != 0 ||
            (p > text && (isalnum((unsigned char)p[-1]) || strchr("_-*", p[-1]) != NULL)))
            continue;
        q = p + leaflen + strspn(p + leaflen, " \t");
        if (*q != '=' && *q != ':')
            continue;
        q++;
        q += strspn(q, " \t");
        if (parse_literal(q, &v) != NULL && (int)(unsigned)(unsigned long long)v == libval)
            return v;
    }
    return libval;
}

/* libconfig 1.5 reads an integer without the L suffix with atoi() (hex
 * with strtoul()) and keeps the low 32 bits: `port = 4294975376;` loads as
 * 8080, and 2^40 as 0.  So such a value is read again from its source line.
 * A literal only counts if its low 32 bits are what libconfig read, so a
 * lookalike cannot be taken by mistake; when none is found, libconfig's
 * value stands (it is right for anything that fits in 32 bits). */
long long config_int_as_written(struct loader *ld, const char *file, int line, const char *leaf,
                                int libval)
{
    char *text = NULL;
    size_t cap = 0;
    long long v = libval;
    int n = 0;
    FILE *f;

    if (file == NULL || line <= 0 || (f = ld->open(file)) == NULL)
        return libval;
    while (n < line && getline(&text, &cap, f) >= 0)
        n++;
    if (n == line)
        v = literal_on_line(text, leaf, libval);
    free(text);
    fclose(f);
    return v;
}

/* ---- lists of integers (alerts.thresholds_pct) ---- */

int config_parse_int_list(struct loader *ld, config_setting_t *cs, const struct setting *s,
                          struct orp_int_list *out)
{
    int line = (int)config_setting_source_line(cs);
    int type = config_setting_type(cs), n = config_setting_length(cs);
    struct orp_int_list l = {0};

    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return config_fail_at(ld, line, "%s must be a list of integers such as %s", s->name,
                              s->def_str);
    if (n < 1 || n > ORP_INT_LIST_MAX)
        return config_fail_at(ld, line, "%s must list 1 to %d values, not %d", s->name,
                              ORP_INT_LIST_MAX, n);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(cs, (unsigned)i);
        int et = config_setting_type(e);
        long long v;

        if (et != CONFIG_TYPE_INT && et != CONFIG_TYPE_INT64)
            return config_fail_at(ld, line, "%s must be a list of integers such as %s", s->name,
                                  s->def_str);
        v = config_setting_get_int64(e);
        if (v < s->min || v > s->max)
            return config_fail_at(ld, line, "%s: %lld is not between %lld and %lld", s->name, v,
                                  s->min, s->max);
        if (i > 0 && v <= l.v[i - 1])
            return config_fail_at(ld, line, "%s must be ascending with no repeats (%lld after %d)",
                                  s->name, v, l.v[i - 1]);
        l.v[l.n++] = (int)v;
    }
    *out = l;
    return 0;
}

void config_int_list_default(const char *text, struct orp_int_list *out)
{
    const char *p = text;

    memset(out, 0, sizeof *out);
    while (*p && out->n < ORP_INT_LIST_MAX) {
        char *end;
        long v;
        p += strcspn(p, "0123456789");
        if (*p == '\0')
            break;
        v = strtol(p, &end, 10);
        out->v[out->n++] = (int)v;
        p = end;
    }
}

/* A webhook URL is used as written: no trailing '/' is taken off (it is
 * not a base URL), and it is never quoted back (it may hold a token). */
const char *config_check_webhook_url(char *v, char *buf, size_t len)
{
    const char *sep = strstr(v, "://");

    (void)buf;
    (void)len;
    if (v[0] == '\0')
        return NULL;
    if (sep == NULL || !((sep - v == 4 && strncmp(v, "http", 4) == 0) ||
                         (sep - v == 5 && strncmp(v, "https", 5) == 0)))
        return "must be \"\" (off) or start with http:// or https://";
    if (strchr("/?#", sep[3]) != NULL) /* also the end of v */
        return "must name a host after http:// or https://";
    return strpbrk(v, " \t") != NULL ? "must not contain spaces" : NULL;
}
