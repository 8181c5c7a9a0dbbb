/* config.c - the settings table and the libconfig loader.  See config.h.
 *
 * Every setting is one row of `settings[]`: dotted name, type, where it
 * lives in struct orp_config, default, range or allowed values, and a
 * one-line help text.  The same rows drive the defaults, the parser, the
 * validation messages, `orproxy --settings` (the README table) and the
 * test that conf/orproxy.conf documents every setting.  The loader walks
 * the whole parsed tree, so a misspelt name is an error, not a silent
 * default. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum stype { T_STR, T_INT, T_INT64, T_ENUM };

struct setting {
    const char *name;
    enum stype type;
    size_t off;
    const char *def_str;
    long long def_num, min, max;
    const char *values; /* T_ENUM: "a|b|c" */
    const char *help;
};

#define S(name, field, def, help) {name, T_STR, offsetof(struct orp_config, field), def, 0, 0, 0, NULL, help}
#define I(name, field, def, lo, hi, help) {name, T_INT, offsetof(struct orp_config, field), NULL, def, lo, hi, NULL, help}
#define L(name, field, def, lo, hi, help) {name, T_INT64, offsetof(struct orp_config, field), NULL, def, lo, hi, NULL, help}
#define E(name, field, def, vals, help) {name, T_ENUM, offsetof(struct orp_config, field), def, 0, 0, 0, vals, help}

static const struct setting settings[] = {
    S("listen.address", listen_address, "127.0.0.1", "IP address to listen on (IPv4 or IPv6 literal)"),
    I("listen.port", listen_port, 8080, 0, 65535, "TCP port to listen on (0 = any free port)"),
    S("upstream.base_url", upstream_base_url, "https://openrouter.ai/api/v1",
      "OpenRouter API base URL; request paths are appended to it"),
    S("upstream.api_key_env", upstream_api_key_env, "OPENROUTER_API_KEY",
      "environment variable holding the upstream key"),
    S("upstream.api_key_file", upstream_api_key_file, "",
      "file holding the upstream key (first line); wins over the environment"),
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
      "cap on one backoff delay; a longer Retry-After is relayed instead of retried"),
    L("limits.max_body_bytes", limits_max_body_bytes, 16777216LL, 1, 1073741824LL,
      "largest request body accepted (413 beyond)"),
    I("limits.max_connections", limits_max_connections, 4096, 1, 1000000,
      "client connections open at once, all workers together"),
    I("limits.client_timeout_s", limits_client_timeout_s, 60, 1, 86400,
      "idle client connection timeout (slow or silent clients are closed)"),
    I("stream.keepalive_s", stream_keepalive_s, 15, 1, 3600,
      "send a ': ping' comment after this many seconds of upstream silence in a stream"),
    I("workers", workers, 0, 0, 256, "event-loop threads (0 = one per CPU)"),
    E("log.level", log_level, "info", "error|warn|info|debug", "least severe level logged"),
    E("log.format", log_format, "text", "text|json", "log line format"),
    I("shutdown_timeout_s", shutdown_timeout_s, 30, 0, 3600,
      "on SIGTERM, how long in-flight requests may finish"),
    S("state_dir", state_dir, "/var/lib/orproxy",
      "directory for the ledger and the price cache ($STATE_DIRECTORY wins when set)"),
    S("ledger.path", ledger_path, "", "SQLite usage ledger (\"\" = state_dir/usage.db)"),
    S("ledger.jsonl_path", ledger_jsonl_path, "", "also append each record as a JSON line here (\"\" = off)"),
    I("ledger.queue_max", ledger_queue_max, 100000, 16, 10000000,
      "records waiting for the writer before new ones are dropped (and counted)"),
    I("ledger.flush_ms", ledger_flush_ms, 1000, 10, 60000,
      "longest time a record waits before it is committed (the crash-loss window)"),
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

static char **str_at(struct orp_config *cfg, const struct setting *s)
{
    return (char **)((char *)cfg + s->off);
}

void config_defaults(struct orp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        void *p = (char *)cfg + s->off;
        switch (s->type) {
        case T_STR:
        case T_ENUM:
            *(char **)p = strdup(s->def_str);
            break;
        case T_INT:
            *(int *)p = (int)s->def_num;
            break;
        case T_INT64:
            *(long long *)p = s->def_num;
            break;
        }
    }
}

void config_free(struct orp_config *cfg)
{
    for (int i = 0; i < NSETTINGS; i++) {
        if (settings[i].type == T_STR || settings[i].type == T_ENUM) {
            char **p = str_at(cfg, &settings[i]);
            free(*p);
            *p = NULL;
        }
    }
    if (cfg->upstream_key != NULL) {
        explicit_bzero(cfg->upstream_key, strlen(cfg->upstream_key));
        free(cfg->upstream_key);
        cfg->upstream_key = NULL;
    }
    free(cfg->source_path);
    cfg->source_path = NULL;
}

static const struct setting *find_setting(const char *name)
{
    for (int i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

/* A group name is a prefix "name." of some setting. */
static int is_group(const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < NSETTINGS; i++)
        if (strncmp(settings[i].name, name, n) == 0 && settings[i].name[n] == '.')
            return 1;
    return 0;
}

struct loader {
    const char *file;
    char *err;
    size_t errlen;
    int line_of[sizeof settings / sizeof settings[0]]; /* where each was set; 0 = default */
};

static int fail_at(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct loader *ld, int line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->file, line);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < ld->errlen)
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
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

static int apply(struct loader *ld, struct orp_config *cfg, const struct setting *s, config_setting_t *cs)
{
    int line = (int)config_setting_source_line(cs);
    int type = config_setting_type(cs);
    void *p = (char *)cfg + s->off;

    ld->line_of[s - settings] = line;
    switch (s->type) {
    case T_STR:
    case T_ENUM: {
        const char *v;
        if (type != CONFIG_TYPE_STRING)
            return fail_at(ld, line, "%s must be a string", s->name);
        v = config_setting_get_string(cs);
        if (s->type == T_ENUM && !enum_ok(s->values, v))
            return fail_at(ld, line, "%s must be one of %s, not '%s'", s->name, s->values, v);
        free(*(char **)p);
        *(char **)p = strdup(v);
        return 0;
    }
    case T_INT:
    case T_INT64: {
        long long v;
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
            return fail_at(ld, line, "%s must be an integer", s->name);
        v = config_setting_get_int64(cs);
        if (v < s->min || v > s->max)
            return fail_at(ld, line, "%s must be between %lld and %lld", s->name, s->min, s->max);
        if (s->type == T_INT)
            *(int *)p = (int)v;
        else
            *(long long *)p = v;
        return 0;
    }
    }
    return 0;
}

static int walk(struct loader *ld, struct orp_config *cfg, config_setting_t *group, const char *prefix)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        config_setting_t *cs = config_setting_get_elem(group, (unsigned)i);
        const char *nm = config_setting_name(cs);
        char full[256];
        const struct setting *s;
        int line = (int)config_setting_source_line(cs);

        snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", nm ? nm : "?");
        s = find_setting(full);
        if (s != NULL) {
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

static int line_of(const struct loader *ld, const char *name)
{
    const struct setting *s = find_setting(name);
    return s ? ld->line_of[s - settings] : 0;
}

static char *trimmed_dup(const char *s)
{
    size_t n;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    n = strcspn(s, "\r\n");
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n ? strndup(s, n) : NULL;
}

/* Reads the first line of path.  0 (key set, or NULL for an empty file), -1 with errno. */
static int read_key_file(const char *path, char **key)
{
    char buf[4096];
    size_t n;
    FILE *f = fopen(path, "r");

    *key = NULL;
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        errno = e;
        return -1;
    }
    fclose(f);
    buf[n] = '\0';
    *key = trimmed_dup(buf);
    explicit_bzero(buf, sizeof buf);
    return 0;
}

static int validate_and_resolve(struct loader *ld, struct orp_config *cfg)
{
    unsigned char addr[16];
    const char *sd = getenv("STATE_DIRECTORY"), *cred = getenv("CREDENTIALS_DIRECTORY");
    size_t n;

    if (inet_pton(AF_INET, cfg->listen_address, addr) != 1 &&
        inet_pton(AF_INET6, cfg->listen_address, addr) != 1)
        return fail_at(ld, line_of(ld, "listen.address"),
                       "listen.address must be an IPv4 or IPv6 address, not '%s'",
                       cfg->listen_address);
    if (strncmp(cfg->upstream_base_url, "http://", 7) != 0 &&
        strncmp(cfg->upstream_base_url, "https://", 8) != 0)
        return fail_at(ld, line_of(ld, "upstream.base_url"),
                       "upstream.base_url must start with http:// or https://");
    n = strlen(cfg->upstream_base_url);
    while (n > 0 && cfg->upstream_base_url[n - 1] == '/')
        cfg->upstream_base_url[--n] = '\0';
    if (cfg->retry_max_delay_ms < cfg->retry_base_delay_ms) {
        int line = line_of(ld, "retry.max_delay_ms");
        return fail_at(ld, line ? line : line_of(ld, "retry.base_delay_ms"),
                       "retry.max_delay_ms (%d) must be at least retry.base_delay_ms (%d)",
                       cfg->retry_max_delay_ms, cfg->retry_base_delay_ms);
    }

    /* systemd's StateDirectory= wins over the file: it is where the unit
     * is allowed to write. */
    if (sd != NULL && sd[0] != '\0') {
        free(cfg->state_dir);
        cfg->state_dir = strndup(sd, strcspn(sd, ":"));
    }
    if (cfg->state_dir[0] == '\0')
        return fail_at(ld, line_of(ld, "state_dir"), "state_dir must not be empty");
    if (cfg->ledger_path[0] == '\0') {
        size_t len = strlen(cfg->state_dir) + sizeof "/usage.db";
        char *p = malloc(len);
        if (p == NULL)
            return fail_at(ld, 0, "out of memory");
        snprintf(p, len, "%s/usage.db", cfg->state_dir);
        free(cfg->ledger_path);
        cfg->ledger_path = p;
    }

    /* The key: api_key_file, then systemd credentials, then the environment. */
    if (cfg->upstream_api_key_file[0] != '\0') {
        if (read_key_file(cfg->upstream_api_key_file, &cfg->upstream_key) < 0)
            return fail_at(ld, line_of(ld, "upstream.api_key_file"),
                           "upstream.api_key_file: cannot read '%s': %s",
                           cfg->upstream_api_key_file, strerror(errno));
        if (cfg->upstream_key == NULL)
            return fail_at(ld, line_of(ld, "upstream.api_key_file"),
                           "upstream.api_key_file: '%s' is empty", cfg->upstream_api_key_file);
    } else if (cred != NULL && cred[0] != '\0') {
        char path[4096];
        snprintf(path, sizeof path, "%s/openrouter-api-key", cred);
        if (read_key_file(path, &cfg->upstream_key) < 0 && errno != ENOENT)
            return fail_at(ld, 0, "cannot read credential '%s': %s", path, strerror(errno));
    }
    if (cfg->upstream_key == NULL && cfg->upstream_api_key_env[0] != '\0') {
        const char *v = getenv(cfg->upstream_api_key_env);
        if (v != NULL)
            cfg->upstream_key = trimmed_dup(v);
    }
    return 0;
}

int config_load(const char *path, struct orp_config *cfg, char *err, size_t errlen)
{
    struct loader ld;
    config_t lc;
    FILE *f;
    int rc = -1;

    memset(&ld, 0, sizeof ld);
    ld.file = path;
    ld.err = err;
    ld.errlen = errlen;
    config_defaults(cfg);
    cfg->source_path = strdup(path);

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    config_init(&lc);
    if (config_read(&lc, f) != CONFIG_TRUE) {
        fail_at(&ld, config_error_line(&lc), "%s", config_error_text(&lc));
        goto done;
    }
    if (walk(&ld, cfg, config_root_setting(&lc), "") < 0)
        goto done;
    rc = validate_and_resolve(&ld, cfg);
done:
    config_destroy(&lc);
    fclose(f);
    return rc;
}

void config_write_markdown(FILE *out)
{
    fprintf(out, "| setting | type | default | range / values | meaning |\n"
                 "|---|---|---|---|---|\n");
    for (int i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        switch (s->type) {
        case T_STR:
            fprintf(out, "| `%s` | string | `\"%s\"` | | %s |\n", s->name, s->def_str, s->help);
            break;
        case T_ENUM:
            fprintf(out, "| `%s` | string | `\"%s\"` | `%s` | %s |\n", s->name, s->def_str,
                    s->values, s->help);
            break;
        case T_INT:
        case T_INT64:
            fprintf(out, "| `%s` | integer | `%lld` | %lld … %lld | %s |\n", s->name, s->def_num,
                    s->min, s->max, s->help);
            break;
        }
    }
}

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

static void keep_str(char **newv, char *const *oldv, const char *name, char *list, size_t cap)
{
    if (strcmp(*newv, *oldv) != 0) {
        size_t n = strlen(list);
        snprintf(list + n, cap - n, "%s%s", n ? ", " : "", name);
        free(*newv);
        *newv = strdup(*oldv);
    }
}

static void keep_int(int *newv, const int *oldv, const char *name, char *list, size_t cap)
{
    if (*newv != *oldv) {
        size_t n = strlen(list);
        snprintf(list + n, cap - n, "%s%s", n ? ", " : "", name);
        *newv = *oldv;
    }
}

const char *config_keep_restart_only(struct orp_config *n, const struct orp_config *o)
{
    static char list[256];

    list[0] = '\0';
    keep_str(&n->listen_address, &o->listen_address, "listen.address", list, sizeof list);
    keep_int(&n->listen_port, &o->listen_port, "listen.port", list, sizeof list);
    keep_int(&n->workers, &o->workers, "workers", list, sizeof list);
    keep_int(&n->limits_max_connections, &o->limits_max_connections, "limits.max_connections",
             list, sizeof list);
    keep_int(&n->limits_client_timeout_s, &o->limits_client_timeout_s, "limits.client_timeout_s",
             list, sizeof list);
    keep_str(&n->state_dir, &o->state_dir, "state_dir", list, sizeof list);
    keep_str(&n->ledger_path, &o->ledger_path, "ledger.path", list, sizeof list);
    keep_str(&n->ledger_jsonl_path, &o->ledger_jsonl_path, "ledger.jsonl_path", list, sizeof list);
    keep_int(&n->ledger_queue_max, &o->ledger_queue_max, "ledger.queue_max", list, sizeof list);
    keep_int(&n->ledger_flush_ms, &o->ledger_flush_ms, "ledger.flush_ms", list, sizeof list);
    return list;
}
