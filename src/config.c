/* config.c - the settings table and the libconfig loader.  See config.h.
 *
 * Every scalar setting is one row of settings[]: dotted name, type, where
 * it lives in struct orp_config, default, range or allowed values, a
 * one-line help text, and optionally a check of its value and whether a
 * reload may change it.  The rows drive the defaults, the parser, the
 * validation messages, `orproxy --settings` (the README table),
 * config_keep_restart_only(), and the test that conf/orproxy.conf shows
 * every setting with its help and default; adding a setting is one row plus
 * its struct field.  The loader walks the whole parsed tree instead of
 * looking names up, so a misspelt name is an error, not a line silently
 * ignored.  Rules about more than one setting or about the environment
 * (retry delays, auth, the state directory, the upstream key) run after the
 * walk and report the line where the setting concerned was written.  The
 * lists (clients, aliases) have their own parsers below.  No message ever
 * contains an upstream key. */
#include "config.h"

#include "keys.h"
#include "pricing.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum stype { T_STR, T_INT, T_INT64, T_ENUM, T_USD };

#define F_RESTART 1u /* a reload keeps the running value (config_keep_restart_only) */

/* Extra check of a string value.  May shorten v in place.  Returns NULL
 * when v is fine, else the reason, which follows the setting's name in the
 * message ("must be ..."); buf is there for reasons that quote v. */
typedef const char *check_fn(char *v, char *buf, size_t len);

struct setting {
    const char *name;
    enum stype type;
    size_t off;
    const char *def_str;         /* T_STR, T_ENUM */
    long long def_num, min, max; /* T_INT, T_INT64 */
    const char *values;          /* T_ENUM: "a|b|c" */
    const char *help;
    check_fn *check;             /* T_STR: NULL = any string without control characters */
    unsigned flags;
};

static check_fn check_address, check_url, check_env_name, check_key_path, check_nonempty;

/* Rows; a trailing `.check = f` and/or `.flags = F_RESTART` is optional. */
#define FIELD(f) .off = offsetof(struct orp_config, f)
#define S(n, f, def, h, ...) {.name = n, .type = T_STR, FIELD(f), .def_str = def, .help = h, __VA_ARGS__}
#define I(n, f, def, lo, hi, h, ...)                                                               \
    {.name = n, .type = T_INT, FIELD(f), .def_num = def, .min = lo, .max = hi, .help = h, __VA_ARGS__}
#define L(n, f, def, lo, hi, h, ...)                                                               \
    {.name = n, .type = T_INT64, FIELD(f), .def_num = def, .min = lo, .max = hi, .help = h,        \
     __VA_ARGS__}
#define E(n, f, def, vals, h, ...)                                                                 \
    {.name = n, .type = T_ENUM, FIELD(f), .def_str = def, .values = vals, .help = h, __VA_ARGS__}
#define U(n, f, h, ...) {.name = n, .type = T_USD, FIELD(f), .help = h, __VA_ARGS__}

static const struct setting settings[] = {
    S("listen.address", listen_address, "127.0.0.1", "IP address to listen on (IPv4 or IPv6 literal)",
      .check = check_address, .flags = F_RESTART),
    I("listen.port", listen_port, 8080, 0, 65535, "TCP port to listen on (0 = any free port)",
      .flags = F_RESTART),
    S("upstream.base_url", upstream_base_url, "https://openrouter.ai/api/v1",
      "OpenRouter API base URL; request paths are appended to it", .check = check_url),
    S("upstream.api_key_env", upstream_api_key_env, "OPENROUTER_API_KEY",
      "environment variable holding the upstream key", .check = check_env_name),
    S("upstream.api_key_file", upstream_api_key_file, "",
      "file holding the upstream key (first line); wins over the environment",
      .check = check_key_path),
    S("upstream.referer", upstream_referer, "", "sent upstream as HTTP-Referer when set (app attribution)"),
    S("upstream.title", upstream_title, "", "sent upstream as X-Title when set (app attribution)"),
    I("upstream.connect_timeout_s", upstream_connect_timeout_s, 10, 1, 300,
      "seconds to establish the upstream connection"),
    I("upstream.idle_timeout_s", upstream_idle_timeout_s, 120, 1, 86400,
      "no byte from upstream for this many seconds = failure (504, or an error event mid-stream)"),
    L("upstream.max_response_bytes", upstream_max_response_bytes, 67108864LL, 1024, 1LL << 40,
      "largest non-streamed upstream answer accepted (502 beyond)"),
    I("retry.max_attempts", retry_max_attempts, 3, 1, 10, "attempts in all, first one included"),
    I("retry.base_delay_ms", retry_base_delay_ms, 1000, 0, 60000,
      "first backoff delay; doubles each retry, with jitter"),
    I("retry.max_delay_ms", retry_max_delay_ms, 10000, 0, 600000,
      "cap on one backoff delay, at least base_delay_ms; a longer Retry-After is relayed instead "
      "of retried"),
    L("limits.max_body_bytes", limits_max_body_bytes, 16777216LL, 1, 1073741824LL,
      "largest request body accepted (413 beyond)"),
    L("limits.max_buffered_body_bytes", limits_max_buffered_body_bytes, 268435456LL, 65536,
      1LL << 40,
      "request body bytes held in memory at once, all connections together (503 beyond; one "
      "body of limits.max_body_bytes always fits)"),
    I("limits.max_connections", limits_max_connections, 4096, 1, 1000000,
      "client connections open at once, all workers together", .flags = F_RESTART),
    I("limits.max_header_bytes", limits_max_header_bytes, 8192, 1024, 1048576,
      "room for a request's line and headers (much larger ones get 431); each connection "
      "holds this plus 4 KiB",
      .flags = F_RESTART),
    L("limits.rpm", limits.rpm, 0, 0, 1000000000LL, "requests per minute for all traffic together (0 = no limit)"),
    L("limits.tpm", limits.tpm, 0, 0, 1000000000000LL, "tokens per minute for all traffic together (0 = no limit)"),
    I("limits.max_concurrent", limits.max_concurrent, 0, 0, 1000000,
      "API requests in progress at once, all clients together (0 = no limit)"),
    U("limits.budget_usd_day", limits.budget_day_pusd,
      "spend limit per UTC day for all traffic, USD (0 = none, at most 1000000)"),
    U("limits.budget_usd_month", limits.budget_month_pusd,
      "spend limit per UTC month for all traffic, USD (0 = none, at most 1000000)"),
    E("auth.mode", auth_mode, "none", "none|keys",
      "none: no client keys (loopback only); keys: every API request needs a client key"),
    I("limits.client_timeout_s", limits_client_timeout_s, 60, 1, 86400,
      "seconds a client may stay silent, and the most a whole request (headers and body) may "
      "take to arrive; slower clients are closed",
      .flags = F_RESTART),
    I("stream.keepalive_s", stream_keepalive_s, 15, 1, 3600,
      "send a ': ping' comment after this many seconds of upstream silence in a stream"),
    I("workers", workers, 0, 0, 256, "event-loop threads (0 = one per CPU)", .flags = F_RESTART),
    E("log.level", log_level, "info", "error|warn|info|debug",
      "least severe level logged: error, warn, info or debug"),
    E("log.format", log_format, "text", "text|json", "log line format: text or json"),
    I("shutdown_timeout_s", shutdown_timeout_s, 30, 0, 3600,
      "on SIGTERM, how long in-flight requests may finish"),
    S("state_dir", state_dir, "/var/lib/orproxy",
      "directory for the ledger and the price cache ($STATE_DIRECTORY wins when set)",
      .check = check_nonempty, .flags = F_RESTART),
    S("ledger.path", ledger_path, "", "SQLite usage ledger (\"\" = state_dir/usage.db)",
      .flags = F_RESTART),
    S("ledger.jsonl_path", ledger_jsonl_path, "", "also append each record as a JSON line here (\"\" = off)",
      .flags = F_RESTART),
    I("ledger.queue_max", ledger_queue_max, 100000, 16, 10000000,
      "records waiting for the writer before new ones are dropped (and counted)", .flags = F_RESTART),
    I("ledger.flush_ms", ledger_flush_ms, 1000, 10, 60000,
      "longest time a record waits before it is committed (the crash-loss window)",
      .flags = F_RESTART),
    I("pricing.refresh_s", pricing_refresh_s, 21600, 60, 604800,
      "how often the price table is fetched from GET {base_url}/models"),
};

#define NSETTINGS ((int)(sizeof settings / sizeof settings[0]))

int config_table_count(void)
{
    return NSETTINGS;
}

const char *config_table_name(int i)
{
    return i >= 0 && i < NSETTINGS ? settings[i].name : NULL;
}

static int is_string(const struct setting *s)
{
    return s->type == T_STR || s->type == T_ENUM;
}

static char **str_at(struct orp_config *cfg, const struct setting *s)
{
    return (char **)(void *)((char *)cfg + s->off);
}

static int *int_at(struct orp_config *cfg, const struct setting *s)
{
    return (int *)(void *)((char *)cfg + s->off);
}

/* T_INT64 and T_USD (picodollars) */
static long long *int64_at(struct orp_config *cfg, const struct setting *s)
{
    return (long long *)(void *)((char *)cfg + s->off);
}

static const void *field_of(const struct orp_config *cfg, const struct setting *s)
{
    return (const char *)cfg + s->off;
}

void config_defaults(struct orp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        switch (s->type) {
        case T_STR:
        case T_ENUM:
            *str_at(cfg, s) = strdup(s->def_str);
            break;
        case T_INT:
            *int_at(cfg, s) = (int)s->def_num;
            break;
        case T_INT64:
        case T_USD:
            *int64_at(cfg, s) = s->def_num;
            break;
        }
    }
}

static void free_secret(char **p)
{
    if (*p != NULL) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

void config_free(struct orp_config *cfg)
{
    for (int i = 0; i < NSETTINGS; i++) {
        if (is_string(&settings[i])) {
            char **p = str_at(cfg, &settings[i]);
            free(*p);
            *p = NULL;
        }
    }
    free_secret(&cfg->upstream_key);
    free(cfg->source_path);
    cfg->source_path = NULL;
    for (int i = 0; i < cfg->n_aliases; i++) {
        free(cfg->aliases[i].from);
        free(cfg->aliases[i].to);
    }
    free(cfg->aliases);
    cfg->aliases = NULL;
    cfg->n_aliases = 0;
    for (int i = 0; i < cfg->n_clients; i++) {
        struct orp_client *c = &cfg->clients[i];
        free(c->name);
        free_secret(&c->upstream_key);
        for (int k = 0; k < c->n_models; k++)
            free(c->models[k]);
        free(c->models);
        for (int k = 0; k < c->n_aliases; k++) {
            free(c->aliases[k].from);
            free(c->aliases[k].to);
        }
        free(c->aliases);
        free(c->defaults.model);
        free(c->defaults.system_prompt);
    }
    free(cfg->clients);
    cfg->clients = NULL;
    cfg->n_clients = 0;
}

/* ---- checks of single string values ---- */

static const char *check_address(char *v, char *buf, size_t len)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, v, addr) == 1 || inet_pton(AF_INET6, v, addr) == 1)
        return NULL;
    snprintf(buf, len, "must be an IPv4 or IPv6 address, not '%s'", v);
    return buf;
}

static const char *check_url(char *v, char *buf, size_t len)
{
    size_t n = strlen(v);
    const char *host;
    (void)buf;
    (void)len;
    if (strncmp(v, "http://", 7) == 0)
        host = v + 7;
    else if (strncmp(v, "https://", 8) == 0)
        host = v + 8;
    else
        return "must start with http:// or https://";
    if (*host == '\0' || *host == '/')
        return "must name a host after http:// or https://";
    if (strpbrk(v, " \t") != NULL)
        return "must not contain spaces";
    /* Request paths ("/chat/completions") are appended to it. */
    while (n > 0 && v[n - 1] == '/')
        v[--n] = '\0';
    return NULL;
}

/* Never quotes v: a key pasted here by mistake must not reach a log. */
static const char *check_env_name(char *v, char *buf, size_t len)
{
    (void)buf;
    (void)len;
    if (v[0] == '\0')
        return NULL; /* "" = do not read the environment */
    if (!(isalpha((unsigned char)v[0]) || v[0] == '_') ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(v))
        return "must be the name of an environment variable (letters, digits, _), not the key itself";
    return NULL;
}

static const char *check_key_path(char *v, char *buf, size_t len)
{
    (void)buf;
    (void)len;
    if (strncmp(v, "sk-", 3) == 0)
        return "must name a file holding the key, not be the key itself";
    return NULL;
}

static const char *check_nonempty(char *v, char *buf, size_t len)
{
    (void)buf;
    (void)len;
    return v[0] == '\0' ? "must not be empty" : NULL;
}

/* ---- the loader ---- */

struct where {
    const char *file; /* libconfig's copy; valid until config_destroy() */
    int line;         /* 0 = not in the file (the default) */
};

struct loader {
    const char *file;     /* the file config_load() was given */
    const char *cur_file; /* the file the next message names (an @include), NULL = file */
    char *err;
    size_t errlen;
    struct where set_at[sizeof settings / sizeof settings[0]];
};

/* "FILE:LINE: message", or "FILE: message" when there is no line. */
static int fail_at(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct loader *ld, int line, const char *fmt, ...)
{
    const char *file = ld->cur_file != NULL ? ld->cur_file : ld->file;
    va_list ap;
    int n;

    if (ld->errlen == 0)
        return -1;
    if (line > 0)
        n = snprintf(ld->err, ld->errlen, "%s:%d: ", file, line);
    else
        n = snprintf(ld->err, ld->errlen, "%s: ", file);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < ld->errlen)
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static const struct setting *find_setting(const char *name)
{
    for (int i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

/* The line where setting `name` was written (0 = not written), and its
 * file becomes the one the next message names: fail_at(ld, line_of(...)). */
static int line_of(struct loader *ld, const char *name)
{
    const struct setting *s = find_setting(name);
    if (s == NULL)
        abort(); /* a name in this file that is not in the table: a programming error */
    ld->cur_file = ld->set_at[s - settings].file;
    return ld->set_at[s - settings].line;
}

/* A group is a prefix "name." of some setting's name. */
static int is_group(const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < NSETTINGS; i++)
        if (strncmp(settings[i].name, name, n) == 0 && settings[i].name[n] == '.')
            return 1;
    return 0;
}

static int enum_ok(const char *values, const char *v)
{
    size_t n = strlen(v);
    const char *p = values;
    while (*p) {
        size_t tok = strcspn(p, "|");
        if (tok == n && strncmp(p, v, n) == 0)
            return 1;
        p += tok + (p[tok] == '|');
    }
    return 0;
}

static int has_control(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return 1;
    return 0;
}

/* Money: a number (5, 2.5) or a decimal string ("0.25"), kept exact in
 * picodollars, at most PRICING_MAX_COST_USD: int64 picodollars end at
 * $9,223,372.036854775807, and a budget needs room above it for the
 * spend it is compared with. */
static int parse_usd(struct loader *ld, config_setting_t *cs, const char *name, long long *out)
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
    return fail_at(ld, line, "%s must be an amount in USD such as 5 or \"2.50\"", name);
range:
    return fail_at(ld, line, "%s must be between 0 and %d USD", name, PRICING_MAX_COST_USD);
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
static long long int_as_written(const char *file, int line, const char *leaf, int libval)
{
    char *text = NULL;
    size_t cap = 0;
    long long v = libval;
    int n = 0;
    FILE *f;

    if (file == NULL || line <= 0 || (f = fopen(file, "r")) == NULL)
        return libval;
    while (n < line && getline(&text, &cap, f) >= 0)
        n++;
    if (n == line)
        v = literal_on_line(text, leaf, libval);
    free(text);
    fclose(f);
    return v;
}

static int apply(struct loader *ld, struct orp_config *cfg, const struct setting *s,
                 config_setting_t *cs)
{
    const char *file = config_setting_source_file(cs);
    int line = (int)config_setting_source_line(cs);
    int type = config_setting_type(cs);

    ld->set_at[s - settings].file = file;
    ld->set_at[s - settings].line = line;
    switch (s->type) {
    case T_STR:
    case T_ENUM: {
        char buf[512];
        const char *why = NULL;
        char *v;

        if (type != CONFIG_TYPE_STRING)
            return fail_at(ld, line, "%s must be a string", s->name);
        if (has_control(config_setting_get_string(cs)))
            return fail_at(ld, line, "%s must not contain control characters", s->name);
        if (s->type == T_ENUM && !enum_ok(s->values, config_setting_get_string(cs)))
            return fail_at(ld, line, "%s must be one of %s, not '%s'", s->name, s->values,
                           config_setting_get_string(cs));
        v = strdup(config_setting_get_string(cs));
        if (v == NULL)
            return fail_at(ld, line, "%s: out of memory", s->name);
        if (s->check != NULL)
            why = s->check(v, buf, sizeof buf);
        if (why != NULL) {
            fail_at(ld, line, "%s %s", s->name, why);
            free(v);
            return -1;
        }
        free(*str_at(cfg, s));
        *str_at(cfg, s) = v;
        return 0;
    }
    case T_INT:
    case T_INT64: {
        long long v;

        if (type == CONFIG_TYPE_INT)
            v = int_as_written(file, line, config_setting_name(cs), config_setting_get_int(cs));
        else if (type == CONFIG_TYPE_INT64)
            v = config_setting_get_int64(cs);
        else
            return fail_at(ld, line, "%s must be an integer", s->name);
        if (v < s->min || v > s->max)
            return fail_at(ld, line, "%s must be between %lld and %lld", s->name, s->min, s->max);
        if (s->type == T_INT)
            *int_at(cfg, s) = (int)v;
        else
            *int64_at(cfg, s) = v;
        return 0;
    }
    case T_USD:
        return parse_usd(ld, cs, s->name, int64_at(cfg, s));
    }
    return 0;
}

static char *trimmed_dup(const char *s);
static int read_key_file(const char *path, char **key);

static int get_str(struct loader *ld, config_setting_t *cs, const char *name, char **out)
{
    if (config_setting_type(cs) != CONFIG_TYPE_STRING)
        return fail_at(ld, (int)config_setting_source_line(cs), "%s must be a string", name);
    free(*out);
    *out = strdup(config_setting_get_string(cs));
    return 0;
}

static int get_num(struct loader *ld, config_setting_t *cs, const char *name, double lo, double hi,
                   double *out)
{
    int t = config_setting_type(cs);
    double v;
    if (t == CONFIG_TYPE_FLOAT)
        v = config_setting_get_float(cs);
    else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
        v = (double)config_setting_get_int64(cs);
    else
        return fail_at(ld, (int)config_setting_source_line(cs), "%s must be a number", name);
    if (v < lo || v > hi)
        return fail_at(ld, (int)config_setting_source_line(cs), "%s must be between %g and %g",
                       name, lo, hi);
    *out = v;
    return 0;
}

static int get_int(struct loader *ld, config_setting_t *cs, const char *name, long long hi,
                   long long *out)
{
    int t = config_setting_type(cs);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return fail_at(ld, (int)config_setting_source_line(cs), "%s must be an integer", name);
    *out = config_setting_get_int64(cs);
    if (*out < 0 || *out > hi)
        return fail_at(ld, (int)config_setting_source_line(cs), "%s must be between 0 and %lld",
                       name, hi);
    return 0;
}

static int get_bool(struct loader *ld, config_setting_t *cs, const char *name, int *out)
{
    if (config_setting_type(cs) != CONFIG_TYPE_BOOL)
        return fail_at(ld, (int)config_setting_source_line(cs), "%s must be true or false", name);
    *out = config_setting_get_bool(cs);
    return 0;
}

/* aliases = ( ["app-name", "vendor/model"], ... ); */
static int parse_aliases(struct loader *ld, config_setting_t *list, const char *name,
                         struct orp_alias **out, int *n_out)
{
    int n = config_setting_length(list);
    if (!config_setting_is_list(list) && !config_setting_is_array(list))
        return fail_at(ld, (int)config_setting_source_line(list),
                       "%s must be a list of [\"name\", \"vendor/model\"] pairs", name);
    *out = calloc((size_t)n + 1, sizeof **out);
    *n_out = 0;
    for (int i = 0; i < n; i++) {
        config_setting_t *pair = config_setting_get_elem(list, (unsigned)i);
        const char *a, *b;
        if (config_setting_length(pair) != 2 ||
            (a = config_setting_get_string_elem(pair, 0)) == NULL ||
            (b = config_setting_get_string_elem(pair, 1)) == NULL)
            return fail_at(ld, (int)config_setting_source_line(pair),
                           "%s entries must be [\"name\", \"vendor/model\"]", name);
        (*out)[i].from = strdup(a);
        (*out)[i].to = strdup(b);
        (*n_out)++;
    }
    return 0;
}

static int parse_defaults(struct loader *ld, config_setting_t *g, struct orp_defaults *d)
{
    int n = config_setting_length(g);
    if (!config_setting_is_group(g))
        return fail_at(ld, (int)config_setting_source_line(g), "defaults must be a group { ... }");
    for (int i = 0; i < n; i++) {
        config_setting_t *cs = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(cs);
        long long v;
        int rc;
        if (strcmp(nm, "model") == 0)
            rc = get_str(ld, cs, "defaults.model", &d->model);
        else if (strcmp(nm, "system_prompt") == 0)
            rc = get_str(ld, cs, "defaults.system_prompt", &d->system_prompt);
        else if (strcmp(nm, "temperature") == 0)
            rc = get_num(ld, cs, "defaults.temperature", 0, 2, &d->temperature), d->has_temperature = 1;
        else if (strcmp(nm, "top_p") == 0)
            rc = get_num(ld, cs, "defaults.top_p", 0, 1, &d->top_p), d->has_top_p = 1;
        else if (strcmp(nm, "frequency_penalty") == 0)
            rc = get_num(ld, cs, "defaults.frequency_penalty", -2, 2, &d->frequency_penalty),
            d->has_frequency_penalty = 1;
        else if (strcmp(nm, "presence_penalty") == 0)
            rc = get_num(ld, cs, "defaults.presence_penalty", -2, 2, &d->presence_penalty),
            d->has_presence_penalty = 1;
        else if (strcmp(nm, "max_tokens") == 0)
            rc = get_int(ld, cs, "defaults.max_tokens", 10000000, &v), d->max_tokens = (long)v,
            d->has_max_tokens = 1;
        else
            return fail_at(ld, (int)config_setting_source_line(cs), "unknown setting 'defaults.%s'", nm);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int valid_client_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 64 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int parse_client(struct loader *ld, config_setting_t *g, struct orp_client *c)
{
    int n = config_setting_length(g), line = (int)config_setting_source_line(g), have_key = 0;
    char *key_env = NULL, *key_file = NULL, *hex = NULL;
    int rc = -1;

    c->line = line;
    if (!config_setting_is_group(g))
        return fail_at(ld, line, "each client must be a group { name = ...; key_sha256 = ...; }");
    for (int i = 0; i < n; i++) {
        config_setting_t *cs = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(cs);
        long long v = 0;
        int r;
        if (strcmp(nm, "name") == 0)
            r = get_str(ld, cs, "name", &c->name);
        else if (strcmp(nm, "key_sha256") == 0)
            r = get_str(ld, cs, "key_sha256", &hex), have_key = 1;
        else if (strcmp(nm, "admin") == 0)
            r = get_bool(ld, cs, "admin", &c->admin);
        else if (strcmp(nm, "pass_through_keys") == 0)
            r = get_bool(ld, cs, "pass_through_keys", &c->pass_through_keys);
        else if (strcmp(nm, "upstream_key_env") == 0)
            r = get_str(ld, cs, "upstream_key_env", &key_env);
        else if (strcmp(nm, "upstream_key_file") == 0)
            r = get_str(ld, cs, "upstream_key_file", &key_file);
        else if (strcmp(nm, "models") == 0) {
            int m = config_setting_length(cs);
            r = 0;
            if (!config_setting_is_array(cs) && !config_setting_is_list(cs)) {
                r = fail_at(ld, (int)config_setting_source_line(cs), "models must be [\"pattern\", ...]");
            } else {
                c->models = calloc((size_t)m + 1, sizeof *c->models);
                for (int k = 0; k < m && r == 0; k++) {
                    const char *pat = config_setting_get_string_elem(cs, (unsigned)k);
                    if (pat == NULL)
                        r = fail_at(ld, (int)config_setting_source_line(cs), "models must be strings");
                    else
                        c->models[c->n_models++] = strdup(pat);
                }
            }
        } else if (strcmp(nm, "aliases") == 0)
            r = parse_aliases(ld, cs, "aliases", &c->aliases, &c->n_aliases);
        else if (strcmp(nm, "defaults") == 0)
            r = parse_defaults(ld, cs, &c->defaults);
        else if (strcmp(nm, "rpm") == 0)
            r = get_int(ld, cs, "rpm", 1000000000LL, &c->limits.rpm);
        else if (strcmp(nm, "tpm") == 0)
            r = get_int(ld, cs, "tpm", 1000000000000LL, &c->limits.tpm);
        else if (strcmp(nm, "max_concurrent") == 0)
            r = get_int(ld, cs, "max_concurrent", 1000000, &v), c->limits.max_concurrent = (int)v;
        else if (strcmp(nm, "budget_usd_day") == 0)
            r = parse_usd(ld, cs, "budget_usd_day", &c->limits.budget_day_pusd);
        else if (strcmp(nm, "budget_usd_month") == 0)
            r = parse_usd(ld, cs, "budget_usd_month", &c->limits.budget_month_pusd);
        else
            r = fail_at(ld, (int)config_setting_source_line(cs), "unknown client setting '%s'", nm);
        if (r < 0)
            goto done;
    }
    if (c->name == NULL || !valid_client_name(c->name)) {
        fail_at(ld, line, "each client needs a name of 1-63 letters, digits, '.', '_' or '-'");
        goto done;
    }
    if (!have_key || keys_unhex(hex, c->key_sha256, 32) < 0) {
        fail_at(ld, line, "client '%s' needs key_sha256: 64 hex digits (orproxy key new %s)",
                c->name, c->name);
        goto done;
    }
    if (key_file != NULL && key_file[0] != '\0') {
        if (read_key_file(key_file, &c->upstream_key) < 0 || c->upstream_key == NULL) {
            fail_at(ld, line, "client '%s': upstream_key_file: cannot read '%s': %s", c->name,
                    key_file, c->upstream_key == NULL && errno == 0 ? "empty" : strerror(errno));
            goto done;
        }
    } else if (key_env != NULL && key_env[0] != '\0') {
        const char *v = getenv(key_env);
        if (v == NULL || (c->upstream_key = trimmed_dup(v)) == NULL) {
            fail_at(ld, line, "client '%s': environment variable %s (upstream_key_env) is not set",
                    c->name, key_env);
            goto done;
        }
    }
    rc = 0;
done:
    free(key_env);
    free(key_file);
    free(hex);
    return rc;
}

static int parse_clients(struct loader *ld, struct orp_config *cfg, config_setting_t *list)
{
    int n = config_setting_length(list);
    if (!config_setting_is_list(list))
        return fail_at(ld, (int)config_setting_source_line(list),
                       "clients must be a list: clients = ( { name = ...; }, ... );");
    cfg->clients = calloc((size_t)n + 1, sizeof *cfg->clients);
    for (int i = 0; i < n; i++) {
        struct orp_client *c = &cfg->clients[i];
        cfg->n_clients++;
        if (parse_client(ld, config_setting_get_elem(list, (unsigned)i), c) < 0)
            return -1;
        for (int k = 0; k < i; k++) {
            if (strcmp(cfg->clients[k].name, c->name) == 0)
                return fail_at(ld, c->line, "client name '%s' is used twice", c->name);
            if (memcmp(cfg->clients[k].key_sha256, c->key_sha256, 32) == 0)
                return fail_at(ld, c->line, "clients '%s' and '%s' have the same key",
                               cfg->clients[k].name, c->name);
        }
    }
    return 0;
}


/* Applies every member of group, whose dotted name is prefix ("" = root). */
static int walk(struct loader *ld, struct orp_config *cfg, config_setting_t *group,
                const char *prefix)
{
    int n = config_setting_length(group);

    for (int i = 0; i < n; i++) {
        config_setting_t *cs = config_setting_get_elem(group, (unsigned)i);
        const char *nm = config_setting_name(cs), *dot = prefix[0] ? "." : "";
        int line = (int)config_setting_source_line(cs);
        const struct setting *s;
        char full[128];

        ld->cur_file = config_setting_source_file(cs);
        if (nm == NULL)
            nm = "?";
        if ((size_t)snprintf(full, sizeof full, "%s%s%s", prefix, dot, nm) >= sizeof full)
            return fail_at(ld, line, "unknown setting '%s%s%s'", prefix, dot, nm);
        if (strcmp(full, "clients") == 0) {
            if (parse_clients(ld, cfg, cs) < 0)
                return -1;
            continue;
        }
        if (strcmp(full, "aliases") == 0) {
            if (parse_aliases(ld, cs, "aliases", &cfg->aliases, &cfg->n_aliases) < 0)
                return -1;
            continue;
        }
        if ((s = find_setting(full)) != NULL) {
            if (config_setting_is_group(cs))
                return fail_at(ld, line, "%s is a setting, not a group", full);
            if (apply(ld, cfg, s, cs) < 0)
                return -1;
        } else if (is_group(full)) {
            if (!config_setting_is_group(cs))
                return fail_at(ld, line, "%s is a group: write %s = { ... };", full, full);
            if (walk(ld, cfg, cs, full) < 0)
                return -1;
        } else {
            return fail_at(ld, line, "unknown setting '%s'", full);
        }
    }
    return 0;
}

/* A copy of the first non-blank line of s without its surrounding
 * whitespace, or NULL when there is none (or no memory). */
static char *trimmed_dup(const char *s)
{
    size_t n;
    while (isspace((unsigned char)*s))
        s++;
    n = strcspn(s, "\r\n");
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return n ? strndup(s, n) : NULL;
}

/* Reads a key: the first line of path.  0 with *key set (NULL for a blank
 * file) and errno 0, or -1 with errno (EISDIR for a directory). */
static int read_key_file(const char *path, char **key)
{
    char buf[4096];
    size_t n;
    int e;
    FILE *f = fopen(path, "r");

    *key = NULL;
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    e = ferror(f) ? errno : 0;
    fclose(f);
    buf[n] = '\0';
    if (e == 0)
        *key = trimmed_dup(buf);
    explicit_bzero(buf, sizeof buf);
    errno = e;
    return e ? -1 : 0;
}

static int is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* The upstream key: api_key_file, then systemd credentials, then the
 * environment.  Only a configured key file that cannot be read, or is
 * blank, is an error: without a key orproxy still starts (and says so). */
static int resolve_key(struct loader *ld, struct orp_config *cfg)
{
    const char *cred = getenv("CREDENTIALS_DIRECTORY");

    free_secret(&cfg->upstream_key);
    if (cfg->upstream_api_key_file[0] != '\0') {
        if (read_key_file(cfg->upstream_api_key_file, &cfg->upstream_key) < 0)
            return fail_at(ld, line_of(ld, "upstream.api_key_file"),
                           "upstream.api_key_file: cannot read '%s': %s",
                           cfg->upstream_api_key_file, strerror(errno));
        if (cfg->upstream_key == NULL)
            return fail_at(ld, line_of(ld, "upstream.api_key_file"),
                           "upstream.api_key_file: '%s' is empty", cfg->upstream_api_key_file);
        return 0;
    }
    if (cred != NULL && cred[0] != '\0') {
        char *path;
        int rc;
        if (asprintf(&path, "%s/openrouter-api-key", cred) < 0)
            return fail_at(ld, 0, "out of memory");
        rc = read_key_file(path, &cfg->upstream_key);
        if (rc < 0 && errno != ENOENT) {
            ld->cur_file = NULL;
            fail_at(ld, 0, "cannot read credential '%s': %s", path, strerror(errno));
            free(path);
            return -1;
        }
        free(path);
        if (cfg->upstream_key != NULL)
            return 0;
    }
    if (cfg->upstream_api_key_env[0] != '\0') {
        const char *v = getenv(cfg->upstream_api_key_env);
        if (v != NULL)
            cfg->upstream_key = trimmed_dup(v);
    }
    return 0;
}

/* The rules that involve more than one setting or the environment. */
static int validate_and_resolve(struct loader *ld, struct orp_config *cfg)
{
    const char *sd = getenv("STATE_DIRECTORY");

    if (cfg->retry_max_delay_ms < cfg->retry_base_delay_ms) {
        int line = line_of(ld, "retry.max_delay_ms");
        return fail_at(ld, line ? line : line_of(ld, "retry.base_delay_ms"),
                       "retry.max_delay_ms (%d) must be at least retry.base_delay_ms (%d)",
                       cfg->retry_max_delay_ms, cfg->retry_base_delay_ms);
    }
    if (strcmp(cfg->auth_mode, "none") == 0 && !is_loopback(cfg->listen_address))
        return fail_at(ld, line_of(ld, "listen.address") ? line_of(ld, "listen.address") : line_of(ld, "auth.mode"),
                       "listen.address %s is not loopback: anyone who can reach it could spend "
                       "your credits; set auth.mode = \"keys\" and define clients",
                       cfg->listen_address);
    if (strcmp(cfg->auth_mode, "keys") == 0 && cfg->n_clients == 0)
        return fail_at(ld, line_of(ld, "auth.mode"),
                       "auth.mode = \"keys\" needs at least one client (orproxy key new NAME)");

    /* systemd's StateDirectory= wins over the file: it is where the unit
     * may write.  With several directories it lists them ':'-separated. */
    ld->cur_file = NULL;
    if (sd != NULL && sd[0] != '\0') {
        char *d = strndup(sd, strcspn(sd, ":"));
        if (d == NULL)
            return fail_at(ld, 0, "out of memory");
        free(cfg->state_dir);
        cfg->state_dir = d;
    }
    if (cfg->ledger_path[0] == '\0') {
        char *p;
        if (asprintf(&p, "%s/usage.db", cfg->state_dir) < 0)
            return fail_at(ld, 0, "out of memory");
        free(cfg->ledger_path);
        cfg->ledger_path = p;
    }
    return resolve_key(ld, cfg);
}

/* libconfig 1.5 reads an @include'd file through flex, which calls exit()
 * when the read fails ("input in flex scanner failed" for a directory) and
 * blocks on a FIFO or a terminal: a reload (SIGHUP) would take the daemon
 * down instead of keeping the running configuration.  So every @include
 * line, matched as libconfig's scanner matches it (line start, blanks,
 * "@include", blanks, a quoted path whose only escapes are \\ and \"), in
 * the file and in what it includes, must name a regular file before
 * libconfig runs.  A path that does not exist is left to libconfig, which
 * reports it as before.  An @include inside a block comment is checked too. */
static int check_includes(struct loader *ld, const char *file, int depth)
{
    char *line = NULL, path[PATH_MAX];
    size_t cap = 0;
    int lineno = 0, rc = 0;
    struct stat st;
    FILE *f;

    if (depth > 10 || (f = fopen(file, "r")) == NULL) /* libconfig reports both */
        return 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        const char *p = line + strspn(line, " \t");
        size_t n = 0;

        lineno++;
        if (strncmp(p, "@include", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
            continue;
        p += 8 + strspn(p + 8, " \t");
        if (*p++ != '"')
            continue;
        for (; *p != '\0' && *p != '"' && n < sizeof path - 1; p++) {
            if (*p == '\\' && (p[1] == '\\' || p[1] == '"'))
                p++;
            path[n++] = *p;
        }
        path[n] = '\0';
        if (*p != '"' || stat(path, &st) < 0)
            continue;
        if (!S_ISREG(st.st_mode)) {
            ld->cur_file = file;
            rc = fail_at(ld, lineno, "@include \"%s\" is not a regular file", path);
        } else {
            rc = check_includes(ld, path, depth + 1);
        }
    }
    free(line);
    fclose(f);
    return rc;
}

int config_load(const char *path, struct orp_config *cfg, char *err, size_t errlen)
{
    struct loader ld;
    struct stat st;
    config_t lc;
    FILE *f;
    int rc = -1;

    memset(&ld, 0, sizeof ld);
    ld.file = path;
    ld.err = err;
    ld.errlen = errlen;
    if (errlen > 0)
        err[0] = '\0';
    config_defaults(cfg);
    cfg->source_path = strdup(path);
    for (int i = 0; i < NSETTINGS; i++)
        if (is_string(&settings[i]) && *str_at(cfg, &settings[i]) == NULL)
            return fail_at(&ld, 0, "out of memory");
    if (cfg->source_path == NULL)
        return fail_at(&ld, 0, "out of memory");

    /* Opened here only for a precise reason: libconfig says just "file I/O
     * error". */
    f = fopen(path, "r");
    if (f != NULL && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        f = NULL;
        errno = EISDIR;
    }
    if (f == NULL)
        return fail_at(&ld, 0, "cannot open: %s", strerror(errno));
    fclose(f);

    if (check_includes(&ld, path, 0) < 0)
        return -1;
    config_init(&lc);
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        ld.cur_file = config_error_file(&lc);
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            fail_at(&ld, 0, "cannot open: %s", config_error_text(&lc));
        else
            fail_at(&ld, config_error_line(&lc), "%s", config_error_text(&lc));
        goto done;
    }
    if (walk(&ld, cfg, config_root_setting(&lc), "") < 0)
        goto done;
    rc = validate_and_resolve(&ld, cfg);
done:
    config_destroy(&lc);
    return rc;
}

/* ---- heap configs shared by reference (reload) ---- */

struct orp_config *config_load_new(const char *path, char *err, size_t errlen)
{
    struct orp_config *cfg = malloc(sizeof *cfg);

    if (cfg == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (config_load(path, cfg, err, errlen) < 0) {
        config_free(cfg);
        free(cfg);
        return NULL;
    }
    atomic_init(&cfg->refs, 1);
    return cfg;
}

struct orp_config *config_hold(struct orp_config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_release(struct orp_config *cfg)
{
    if (cfg != NULL && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1) {
        config_free(cfg);
        free(cfg);
    }
}

/* The settings flagged F_RESTART in the table. */
const char *config_keep_restart_only(struct orp_config *new_cfg, const struct orp_config *old)
{
    static char list[512];
    size_t used = 0;

    list[0] = '\0';
    for (int i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        const void *was = field_of(old, s);
        int differs = 0;

        if (!(s->flags & F_RESTART))
            continue;
        switch (s->type) {
        case T_STR:
        case T_ENUM:
            if (strcmp(*str_at(new_cfg, s), *(char *const *)was) != 0) {
                char *copy = strdup(*(char *const *)was);
                differs = 1;
                if (copy != NULL) {
                    free(*str_at(new_cfg, s));
                    *str_at(new_cfg, s) = copy;
                }
            }
            break;
        case T_INT:
            differs = *int_at(new_cfg, s) != *(const int *)was;
            *int_at(new_cfg, s) = *(const int *)was;
            break;
        case T_INT64:
        case T_USD:
            differs = *int64_at(new_cfg, s) != *(const long long *)was;
            *int64_at(new_cfg, s) = *(const long long *)was;
            break;
        }
        if (differs && used < sizeof list) {
            int n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", s->name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    return list;
}

int config_check_running(const struct orp_config *cfg, int listener_loopback, char *err,
                         size_t errlen)
{
    if (strcmp(cfg->auth_mode, "none") == 0 && !listener_loopback) {
        snprintf(err, errlen,
                 "auth.mode = \"none\" but the running listener is not on a loopback address "
                 "(listen.address changes only on restart): anyone who can reach it could spend "
                 "your credits; keep auth.mode = \"keys\" or restart on a loopback address");
        return -1;
    }
    if (strcmp(cfg->auth_mode, "keys") == 0 && cfg->n_clients == 0) {
        snprintf(err, errlen, "auth.mode = \"keys\" needs at least one client");
        return -1;
    }
    if (cfg->retry_max_delay_ms < cfg->retry_base_delay_ms) {
        snprintf(err, errlen, "retry.max_delay_ms (%d) must be at least retry.base_delay_ms (%d)",
                 cfg->retry_max_delay_ms, cfg->retry_base_delay_ms);
        return -1;
    }
    return 0;
}

void config_url_for_log(const char *url, char *out, size_t outlen)
{
    const char *scheme = strstr(url, "://");
    const char *host = scheme != NULL ? scheme + 3 : url;
    size_t authority = strcspn(host, "/?#");
    const char *at = memrchr(host, '@', authority);

    if (at == NULL)
        snprintf(out, outlen, "%s", url);
    else
        snprintf(out, outlen, "%.*s***%s", (int)(host - url), url, at);
}

/* ---- the read-only view of the table (config_table.h) ---- */

#include "config_table.h"

int config_table_row(int i, struct config_row *row)
{
    static const enum config_row_type as_row[] = {
        [T_STR] = CONFIG_ROW_STRING, [T_INT] = CONFIG_ROW_INTEGER, [T_INT64] = CONFIG_ROW_INTEGER,
        [T_ENUM] = CONFIG_ROW_ENUM,  [T_USD] = CONFIG_ROW_USD};
    const struct setting *s;

    if (i < 0 || i >= NSETTINGS)
        return -1;
    s = &settings[i];
    *row = (struct config_row){.name = s->name,
                               .type = as_row[s->type],
                               .def_str = s->def_str,
                               .def_num = s->def_num,
                               .min = s->min,
                               .max = s->max,
                               .values = s->values,
                               .help = s->help,
                               .restart_only = (s->flags & F_RESTART) != 0};
    return 0;
}
