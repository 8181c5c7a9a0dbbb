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
 * lists (clients, aliases) have their own parsers (config_clients.c); the
 * other pieces of the loader are listed in config_int.h.  No message ever
 * contains an upstream key. */
#include "config_int.h"
#include "config_table.h"

#include "pgconn.h"
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


static check_fn check_address, check_url, check_env_name, check_key_path, check_nonempty,
    check_ca_file, check_pg_url;

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
#define IL(n, f, def, lo, hi, h)                                                                   \
    {.name = n, .type = T_INTLIST, FIELD(f), .def_str = def, .min = lo, .max = hi, .help = h}

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
    S("upstream.ca_file", upstream_ca_file, "",
      "PEM CA bundle the upstream's certificate is verified with, in place of the system's "
      "(\"\" = system CAs; verification is always on)",
      .check = check_ca_file),
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
    U("limits.unpriced_reserve_usd", limits_unpriced_reserve_pusd,
      "what a request for a model missing from the price table reserves against budgets until "
      "it settles, USD (0 = nothing: such requests are not held back by a budget)",
      .def_num = 1000000000000LL),
    E("limits.budget_fail", limits_budget_fail, "closed", "closed|open",
      "a budget that cannot be checked (ledger.backend postgresql: database down, lease spent): "
      "closed = 503 budget_unavailable, open = admit"),
    I("limits.lease_timeout_s", limits_lease_timeout_s, 30, 2, 3600,
      "ledger.backend postgresql: a budget lease not renewed for this long returns to the pool "
      "(a crashed instance's headroom comes back after it)"),
    I("limits.shared", limits_shared, 0, 0, 1,
      "ledger.backend postgresql: true (or 1) counts rpm, tpm and max_concurrent across every "
      "instance on the database, leased like the budgets; false (0): each instance counts its "
      "own (ignored with the sqlite backend)"),
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
    /* The PostgreSQL ledger (issue 14): these rows stay together. */
    E("ledger.backend", ledger_backend, "sqlite", "sqlite|postgresql",
      "sqlite: this instance's own ledger only; postgresql: also every row to the shared "
      "database of ledger.postgresql_url (the local SQLite ledger is kept), and the budgets and "
      "managed clients shared there by every instance",
      .flags = F_RESTART),
    S("ledger.postgresql_url", ledger_postgresql_url, "",
      "libpq URI or key=value string of the shared ledger, without a password",
      .check = check_pg_url, .flags = F_RESTART),
    S("ledger.postgresql_password_file", ledger_postgresql_password_file, "",
      "file holding the PostgreSQL password (first line; \"\" = "
      "$CREDENTIALS_DIRECTORY/postgresql-password when set, else libpq's PGPASSFILE or ~/.pgpass)",
      .flags = F_RESTART),
    S("instance.name", instance_name, "",
      "this instance's name in every shared ledger row (\"\" = hostname:listen.port)",
      .flags = F_RESTART),
    I("pricing.refresh_s", pricing_refresh_s, 21600, 60, 604800,
      "how often the price table is fetched from GET {base_url}/models"),
    S("alerts.webhook_url", alerts_webhook_url, "",
      "budget and key-expiry alerts are POSTed here (\"\" = off; http:// or https://)",
      .check = config_check_webhook_url),
    IL("alerts.thresholds_pct", alerts_thresholds_pct, "[50, 80, 100]", 1, 1000,
       "percentages of a budget that each fire one alert when its spend first reaches them in "
       "a day or month (ascending, no repeats)"),
    E("alerts.format", alerts_format, "json", "json|slack",
      "alert body: json (orproxy's own fields) or slack (an incoming webhook's {\"text\"})"),
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

const struct setting *config_setting_at(int i)
{
    return &settings[i];
}

/* How the loader opens every file it reads (struct loader's open).  The
 * fuzz target links a copy of config.o whose fopen is renamed (see the
 * Makefile), so keeping the one fopen call here covers them all. */
static FILE *open_read(const char *path)
{
    return fopen(path, "r");
}

static int is_string(const struct setting *s)
{
    return s->type == T_STR || s->type == T_ENUM;
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
        case T_INTLIST:
            config_int_list_default(s->def_str, list_at(cfg, s));
            break;
        }
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
    config_free_secret(&cfg->upstream_key);
    free(cfg->source_path);
    cfg->source_path = NULL;
    for (int i = 0; i < cfg->n_aliases; i++) {
        free(cfg->aliases[i].from);
        free(cfg->aliases[i].to);
    }
    free(cfg->aliases);
    cfg->aliases = NULL;
    cfg->n_aliases = 0;
    for (int i = 0; i < cfg->n_clients; i++)
        config_client_free(&cfg->clients[i]);
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

/* Readable now: a missing bundle is a config error, not a 502 on every request. */
static const char *check_ca_file(char *v, char *buf, size_t len)
{
    FILE *f;
    int c, err;
    struct stat st;

    if (v[0] == '\0')
        return NULL;
    if (stat(v, &st) == 0 && !S_ISREG(st.st_mode)) {
        snprintf(buf, len, "'%s' is not a regular file (a PEM CA bundle)", v);
        return buf;
    }
    f = fopen(v, "r");
    if (f == NULL) {
        snprintf(buf, len, "cannot read '%s': %s", v, strerror(errno));
        return buf;
    }
    c = fgetc(f);
    err = ferror(f) ? errno : 0;
    fclose(f);
    if (err != 0) {
        snprintf(buf, len, "cannot read '%s': %s", v, strerror(err));
        return buf;
    }
    if (c == EOF) {
        snprintf(buf, len, "'%s' is empty (a PEM CA bundle)", v);
        return buf;
    }
    return NULL;
}

/* Parses, and names no password: a password belongs in a file (pgconn.h). */
static const char *check_pg_url(char *v, char *buf, size_t len)
{
    static const char name[] = "ledger.postgresql_url";
    size_t skip = 0;

    if (v[0] == '\0' || pgconn_check_url(v, buf, len) == 0)
        return NULL;
    /* The loader names the setting already. */
    if (strncmp(buf, name, sizeof name - 1) == 0)
        skip = sizeof name - 1 + strspn(buf + sizeof name - 1, ": ");
    return buf + skip;
}

static const char *check_nonempty(char *v, char *buf, size_t len)
{
    (void)buf;
    (void)len;
    return v[0] == '\0' ? "must not be empty" : NULL;
}

/* ---- the loader ---- */

static const struct setting *find_setting(const char *name)
{
    for (int i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
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
            return config_fail_at(ld, line, "%s must be a string", s->name);
        if (has_control(config_setting_get_string(cs)))
            return config_fail_at(ld, line, "%s must not contain control characters", s->name);
        if (s->type == T_ENUM && !enum_ok(s->values, config_setting_get_string(cs)))
            return config_fail_at(ld, line, "%s must be one of %s, not '%s'", s->name, s->values,
                           config_setting_get_string(cs));
        v = strdup(config_setting_get_string(cs));
        if (v == NULL)
            return config_fail_at(ld, line, "%s: out of memory", s->name);
        if (s->check != NULL)
            why = s->check(v, buf, sizeof buf);
        if (why != NULL) {
            config_fail_at(ld, line, "%s %s", s->name, why);
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
            v = config_int_as_written(ld, file, line, config_setting_name(cs),
                                      config_setting_get_int(cs));
        else if (type == CONFIG_TYPE_INT64)
            v = config_setting_get_int64(cs);
        else if (type == CONFIG_TYPE_BOOL && s->min == 0 && s->max == 1) /* a switch */
            v = config_setting_get_bool(cs);
        else
            return config_fail_at(ld, line, "%s must be an integer", s->name);
        if (v < s->min || v > s->max)
            return config_fail_at(ld, line, "%s must be between %lld and %lld", s->name, s->min, s->max);
        if (s->type == T_INT)
            *int_at(cfg, s) = (int)v;
        else
            *int64_at(cfg, s) = v;
        return 0;
    }
    case T_USD:
        return config_parse_usd(ld, cs, s->name, int64_at(cfg, s));
    case T_INTLIST:
        return config_parse_int_list(ld, cs, s, list_at(cfg, s));
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
            return config_fail_at(ld, line, "unknown setting '%s%s%s'", prefix, dot, nm);
        if (strcmp(full, "clients") == 0) {
            if (config_parse_clients(ld, cfg, cs) < 0)
                return -1;
            continue;
        }
        if (strcmp(full, "aliases") == 0) {
            if (config_parse_aliases(ld, cs, "aliases", &cfg->aliases, &cfg->n_aliases) < 0)
                return -1;
            continue;
        }
        if ((s = find_setting(full)) != NULL) {
            if (config_setting_is_group(cs))
                return config_fail_at(ld, line, "%s is a setting, not a group", full);
            if (apply(ld, cfg, s, cs) < 0)
                return -1;
        } else if (is_group(full)) {
            if (!config_setting_is_group(cs))
                return config_fail_at(ld, line, "%s is a group: write %s = { ... };", full, full);
            if (walk(ld, cfg, cs, full) < 0)
                return -1;
        } else {
            return config_fail_at(ld, line, "unknown setting '%s'", full);
        }
    }
    return 0;
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

/* The rules that involve more than one setting or the environment. */
static int validate_and_resolve(struct loader *ld, struct orp_config *cfg)
{
    const char *sd = getenv("STATE_DIRECTORY");

    if (cfg->retry_max_delay_ms < cfg->retry_base_delay_ms) {
        int line = config_line_of(ld, "retry.max_delay_ms");
        return config_fail_at(ld, line ? line : config_line_of(ld, "retry.base_delay_ms"),
                       "retry.max_delay_ms (%d) must be at least retry.base_delay_ms (%d)",
                       cfg->retry_max_delay_ms, cfg->retry_base_delay_ms);
    }
    if (strcmp(cfg->auth_mode, "none") == 0 && !is_loopback(cfg->listen_address))
        return config_fail_at(ld, config_line_of(ld, "listen.address") ? config_line_of(ld, "listen.address") : config_line_of(ld, "auth.mode"),
                       "listen.address %s is not loopback: anyone who can reach it could spend "
                       "your credits; set auth.mode = \"keys\" and define clients",
                       cfg->listen_address);
    if (strcmp(cfg->auth_mode, "keys") == 0 && cfg->n_clients == 0)
        return config_fail_at(ld, config_line_of(ld, "auth.mode"),
                       "auth.mode = \"keys\" needs at least one client (orproxy key new NAME)");

    /* systemd's StateDirectory= wins over the file: it is where the unit
     * may write.  With several directories it lists them ':'-separated. */
    ld->cur_file = NULL;
    if (sd != NULL && sd[0] != '\0') {
        char *d = strndup(sd, strcspn(sd, ":"));
        if (d == NULL)
            return config_fail_at(ld, 0, "out of memory");
        free(cfg->state_dir);
        cfg->state_dir = d;
    }
    if (cfg->ledger_path[0] == '\0') {
        char *p;
        if (asprintf(&p, "%s/usage.db", cfg->state_dir) < 0)
            return config_fail_at(ld, 0, "out of memory");
        free(cfg->ledger_path);
        cfg->ledger_path = p;
    }
    if (config_resolve_postgresql(ld, cfg) < 0)
        return -1;
    return config_resolve_key(ld, cfg);
}

int config_load(const char *path, struct orp_config *cfg, char *err, size_t errlen)
{
    struct where set_at[sizeof settings / sizeof settings[0]];
    struct loader ld;
    struct stat st;
    config_t lc;
    FILE *f;
    int rc = -1;

    memset(&ld, 0, sizeof ld);
    memset(set_at, 0, sizeof set_at);
    for (int i = 0; i < NSETTINGS; i++)
        set_at[i].name = settings[i].name;
    ld.set_at = set_at;
    ld.n_set_at = NSETTINGS;
    ld.open = open_read;
    ld.file = path;
    ld.err = err;
    ld.errlen = errlen;
    if (errlen > 0)
        err[0] = '\0';
    config_defaults(cfg);
    cfg->source_path = strdup(path);
    for (int i = 0; i < NSETTINGS; i++)
        if (is_string(&settings[i]) && *str_at(cfg, &settings[i]) == NULL)
            return config_fail_at(&ld, 0, "out of memory");
    if (cfg->source_path == NULL)
        return config_fail_at(&ld, 0, "out of memory");

    /* Opened here only for a precise reason: libconfig says just "file I/O
     * error". */
    f = open_read(path);
    if (f != NULL && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        f = NULL;
        errno = EISDIR;
    }
    if (f == NULL)
        return config_fail_at(&ld, 0, "cannot open: %s", strerror(errno));
    fclose(f);

    if (config_check_includes(&ld, path, 0) < 0)
        return -1;
    config_init(&lc);
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        ld.cur_file = config_error_file(&lc);
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            config_fail_at(&ld, 0, "cannot open: %s", config_error_text(&lc));
        else
            config_fail_at(&ld, config_error_line(&lc), "%s", config_error_text(&lc));
        goto done;
    }
    if (walk(&ld, cfg, config_root_setting(&lc), "") < 0)
        goto done;
    rc = validate_and_resolve(&ld, cfg);
done:
    config_destroy(&lc);
    return rc;
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

int config_table_row(int i, struct config_row *row)
{
    static const enum config_row_type as_row[] = {
        [T_STR] = CONFIG_ROW_STRING, [T_INT] = CONFIG_ROW_INTEGER, [T_INT64] = CONFIG_ROW_INTEGER,
        [T_ENUM] = CONFIG_ROW_ENUM,  [T_USD] = CONFIG_ROW_USD, [T_INTLIST] = CONFIG_ROW_INT_LIST};
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
