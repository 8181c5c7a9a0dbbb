/* config_clients.c - the blocks that are lists, not table rows: clients,
 * aliases and a client's request defaults.  See config_int.h.  Each
 * parser rejects a name it does not know, like the table walk does. */
#include "config_int.h"

#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int get_str(struct loader *ld, config_setting_t *cs, const char *name, char **out)
{
    if (config_setting_type(cs) != CONFIG_TYPE_STRING)
        return config_fail_at(ld, (int)config_setting_source_line(cs), "%s must be a string", name);
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
        return config_fail_at(ld, (int)config_setting_source_line(cs), "%s must be a number", name);
    if (v < lo || v > hi)
        return config_fail_at(ld, (int)config_setting_source_line(cs), "%s must be between %g and %g",
                       name, lo, hi);
    *out = v;
    return 0;
}

static int get_int(struct loader *ld, config_setting_t *cs, const char *name, long long hi,
                   long long *out)
{
    int t = config_setting_type(cs);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return config_fail_at(ld, (int)config_setting_source_line(cs), "%s must be an integer", name);
    *out = config_setting_get_int64(cs);
    if (*out < 0 || *out > hi)
        return config_fail_at(ld, (int)config_setting_source_line(cs), "%s must be between 0 and %lld",
                       name, hi);
    return 0;
}

static int get_bool(struct loader *ld, config_setting_t *cs, const char *name, int *out)
{
    if (config_setting_type(cs) != CONFIG_TYPE_BOOL)
        return config_fail_at(ld, (int)config_setting_source_line(cs), "%s must be true or false", name);
    *out = config_setting_get_bool(cs);
    return 0;
}

/* aliases = ( ["app-name", "vendor/model"], ... ); */
int config_parse_aliases(struct loader *ld, config_setting_t *list, const char *name,
                         struct bodyedit_alias **out, int *n_out)
{
    int n = config_setting_length(list);
    if (!config_setting_is_list(list) && !config_setting_is_array(list))
        return config_fail_at(ld, (int)config_setting_source_line(list),
                       "%s must be a list of [\"name\", \"vendor/model\"] pairs", name);
    *out = calloc((size_t)n + 1, sizeof **out);
    *n_out = 0;
    for (int i = 0; i < n; i++) {
        config_setting_t *pair = config_setting_get_elem(list, (unsigned)i);
        const char *a, *b;
        if (config_setting_length(pair) != 2 ||
            (a = config_setting_get_string_elem(pair, 0)) == NULL ||
            (b = config_setting_get_string_elem(pair, 1)) == NULL)
            return config_fail_at(ld, (int)config_setting_source_line(pair),
                           "%s entries must be [\"name\", \"vendor/model\"]", name);
        (*out)[i].from = strdup(a);
        (*out)[i].to = strdup(b);
        (*n_out)++;
    }
    return 0;
}

static int parse_defaults(struct loader *ld, config_setting_t *g, struct bodyedit_defaults *d)
{
    int n = config_setting_length(g);
    if (!config_setting_is_group(g))
        return config_fail_at(ld, (int)config_setting_source_line(g), "defaults must be a group { ... }");
    for (int i = 0; i < n; i++) {
        config_setting_t *cs = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(cs);
        long long v;
        int rc;
        if (strcmp(nm, "model") == 0)
            rc = get_str(ld, cs, "defaults.model", &d->model);
        else if (strcmp(nm, "system_prompt") == 0)
            rc = get_str(ld, cs, "defaults.system_prompt", &d->system_prompt);
        else if (strcmp(nm, "context") == 0)
            rc = get_str(ld, cs, "defaults.context", &d->context);
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
            return config_fail_at(ld, (int)config_setting_source_line(cs), "unknown setting 'defaults.%s'", nm);
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

/* models = ["pattern", ...]; */
static int parse_models(struct loader *ld, config_setting_t *cs, struct orp_client *c)
{
    int m = config_setting_length(cs), r = 0;

    if (!config_setting_is_array(cs) && !config_setting_is_list(cs))
        return config_fail_at(ld, (int)config_setting_source_line(cs),
                              "models must be [\"pattern\", ...]");
    c->models = calloc((size_t)m + 1, sizeof *c->models);
    for (int k = 0; k < m && r == 0; k++) {
        const char *pat = config_setting_get_string_elem(cs, (unsigned)k);
        if (pat == NULL)
            r = config_fail_at(ld, (int)config_setting_source_line(cs), "models must be strings");
        else
            c->models[c->n_models++] = strdup(pat);
    }
    return r;
}

static int parse_client(struct loader *ld, config_setting_t *g, struct orp_client *c)
{
    int n = config_setting_length(g), line = (int)config_setting_source_line(g), have_key = 0;
    char *key_env = NULL, *key_file = NULL, *hex = NULL;
    int rc = -1;

    c->line = line;
    if (!config_setting_is_group(g))
        return config_fail_at(ld, line, "each client must be a group { name = ...; key_sha256 = ...; }");
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
        else if (strcmp(nm, "models") == 0)
            r = parse_models(ld, cs, c);
        else if (strcmp(nm, "aliases") == 0)
            r = config_parse_aliases(ld, cs, "aliases", &c->aliases, &c->n_aliases);
        else if (strcmp(nm, "defaults") == 0)
            r = parse_defaults(ld, cs, &c->defaults);
        else if (strcmp(nm, "rpm") == 0)
            r = get_int(ld, cs, "rpm", 1000000000LL, &c->limits.rpm);
        else if (strcmp(nm, "tpm") == 0)
            r = get_int(ld, cs, "tpm", 1000000000000LL, &c->limits.tpm);
        else if (strcmp(nm, "max_concurrent") == 0)
            r = get_int(ld, cs, "max_concurrent", 1000000, &v), c->limits.max_concurrent = (int)v;
        else if (strcmp(nm, "budget_usd_day") == 0)
            r = config_parse_usd(ld, cs, "budget_usd_day", &c->limits.budget_day_pusd);
        else if (strcmp(nm, "budget_usd_month") == 0)
            r = config_parse_usd(ld, cs, "budget_usd_month", &c->limits.budget_month_pusd);
        else
            r = config_fail_at(ld, (int)config_setting_source_line(cs), "unknown client setting '%s'", nm);
        if (r < 0)
            goto done;
    }
    if (c->name == NULL || !valid_client_name(c->name)) {
        config_fail_at(ld, line, "each client needs a name of 1-63 letters, digits, '.', '_' or '-'");
        goto done;
    }
    if (!have_key || keys_unhex(hex, c->key_sha256, 32) < 0) {
        config_fail_at(ld, line, "client '%s' needs key_sha256: 64 hex digits (orproxy key new %s)",
                c->name, c->name);
        goto done;
    }
    if (key_file != NULL && key_file[0] != '\0') {
        if (config_read_key_file(ld, key_file, &c->upstream_key) < 0 || c->upstream_key == NULL) {
            config_fail_at(ld, line, "client '%s': upstream_key_file: cannot read '%s': %s", c->name,
                    key_file, c->upstream_key == NULL && errno == 0 ? "empty" : strerror(errno));
            goto done;
        }
    } else if (key_env != NULL && key_env[0] != '\0') {
        const char *v = getenv(key_env);
        if (v == NULL || (c->upstream_key = config_trimmed_dup(v)) == NULL) {
            config_fail_at(ld, line, "client '%s': environment variable %s (upstream_key_env) is not set",
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

int config_parse_clients(struct loader *ld, struct orp_config *cfg, config_setting_t *list)
{
    int n = config_setting_length(list);
    if (!config_setting_is_list(list))
        return config_fail_at(ld, (int)config_setting_source_line(list),
                       "clients must be a list: clients = ( { name = ...; }, ... );");
    cfg->clients = calloc((size_t)n + 1, sizeof *cfg->clients);
    for (int i = 0; i < n; i++) {
        struct orp_client *c = &cfg->clients[i];
        cfg->n_clients++;
        if (parse_client(ld, config_setting_get_elem(list, (unsigned)i), c) < 0)
            return -1;
        for (int k = 0; k < i; k++) {
            if (strcmp(cfg->clients[k].name, c->name) == 0)
                return config_fail_at(ld, c->line, "client name '%s' is used twice", c->name);
            if (memcmp(cfg->clients[k].key_sha256, c->key_sha256, 32) == 0)
                return config_fail_at(ld, c->line, "clients '%s' and '%s' have the same key",
                               cfg->clients[k].name, c->name);
        }
    }
    return 0;
}

void config_client_free(struct orp_client *c)
{
    free(c->name);
    config_free_secret(&c->upstream_key);
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
    free(c->defaults.context);
    memset(c, 0, sizeof *c);
}
