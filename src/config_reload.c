/* config_reload.c - configs shared by reference, and what a reload may
 * change.  See config.h.
 *
 * A reload loads a new heap config; workers and in-flight requests keep
 * the one they hold until they release it.  Settings flagged F_RESTART in
 * the table (sockets, threads, files) keep their running value, and the
 * rules that join settings are checked again against what really runs. */
#include "config_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        if (cfg->base != NULL) {
            /* A merged config (managed.c): only the managed clients, the
             * array and the reference to its base are its own. */
            for (int i = cfg->n_base_clients; i < cfg->n_clients; i++)
                config_client_free(&cfg->clients[i]);
            free(cfg->clients);
            config_release(cfg->base);
        } else {
            config_free(cfg);
        }
        free(cfg);
    }
}

/* The settings flagged F_RESTART in the table. */
const char *config_keep_restart_only(struct orp_config *new_cfg, const struct orp_config *old)
{
    static char list[512];
    size_t used = 0;

    list[0] = '\0';
    for (int i = 0; i < config_table_count(); i++) {
        const struct setting *s = config_setting_at(i);
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
