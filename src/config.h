/* config.h - orproxy's settings: one table drives parsing, validation,
 * defaults and documentation (conf/orproxy.conf, config_doc.h).
 *
 * The file is libconfig syntax with groups, e.g.
 *     listen = { address = "127.0.0.1"; port = 8080; };
 * and a setting's name is its dotted path ("listen.port").  Every error is
 * reported as "FILE:LINE: message".  Ownership: config_load() fills a
 * caller-owned struct; config_free() releases its strings. */
#ifndef ORP_CONFIG_H
#define ORP_CONFIG_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "bodyedit.h" /* struct bodyedit_alias, struct bodyedit_defaults */

/* Limits and budgets; 0 = none.  Budgets in picodollars. */
struct orp_limits {
    long long rpm, tpm;
    int max_concurrent;
    long long budget_day_pusd, budget_month_pusd;
};

/* A short list of integers (alerts.thresholds_pct): held inline, nothing to free. */
#define ORP_INT_LIST_MAX 16
struct orp_int_list {
    int n;
    int v[ORP_INT_LIST_MAX];
};

/* One local client (auth.mode = "keys"). */
struct orp_client {
    char *name;
    unsigned char key_sha256[32];
    int admin;
    char *upstream_key;            /* its own OpenRouter key (a secret), or NULL */
    int pass_through_keys;
    char **models;                 /* allowed model patterns; none = all */
    int n_models;
    struct bodyedit_alias *aliases;
    int n_aliases;
    struct bodyedit_defaults defaults;
    struct orp_limits limits;
    int line;                      /* where it is defined, for messages */

    /* Managed clients (managed.c: the ledger's clients table, edited through
     * /admin/v1/clients) and what only they use; a config client has all 0. */
    int managed;
    int64_t expires_ms;            /* 0 = never; from then on its keys get 401 key_expired */
    unsigned char old_key_sha256[32]; /* a rotation's previous key ... */
    int64_t old_key_until_ms;      /* ... works until then (0 = none); checked at identify */
    int64_t created_ms, updated_ms;
};

struct orp_config {
    char *listen_address;          /* listen.address */
    int listen_port;               /* listen.port */
    char *upstream_base_url;       /* upstream.base_url, no trailing '/' */
    char *upstream_api_key_env;    /* upstream.api_key_env */
    char *upstream_api_key_file;   /* upstream.api_key_file ("" = unset) */
    char *upstream_referer;        /* upstream.referer ("" = unset) */
    char *upstream_title;          /* upstream.title ("" = unset) */
    char *upstream_ca_file;        /* upstream.ca_file ("" = curl's system CAs) */
    int upstream_connect_timeout_s;
    int upstream_idle_timeout_s;
    long long upstream_max_response_bytes;
    int retry_max_attempts;
    int retry_base_delay_ms;
    int retry_max_delay_ms;
    long long limits_max_body_bytes;
    long long limits_max_buffered_body_bytes; /* limits.max_buffered_body_bytes */
    int limits_max_connections;
    int limits_max_header_bytes;   /* limits.max_header_bytes */
    int limits_client_timeout_s;
    long long limits_unpriced_reserve_pusd; /* limits.unpriced_reserve_usd */
    char *limits_budget_fail;      /* limits.budget_fail: closed|open */
    int limits_lease_timeout_s;    /* limits.lease_timeout_s */
    int limits_shared;             /* limits.shared: 1 = rpm, tpm, max_concurrent across instances */
    int workers;                   /* 0 = number of online CPUs */
    char *log_level;               /* error|warn|info|debug */
    char *log_format;              /* text|json */
    int shutdown_timeout_s;
    int stream_keepalive_s;        /* stream.keepalive_s */
    char *state_dir;               /* state_dir ($STATE_DIRECTORY wins when set) */
    char *ledger_path;             /* ledger.path ("" = state_dir/usage.db; resolved at load) */
    char *ledger_jsonl_path;       /* ledger.jsonl_path ("" = off) */
    int ledger_queue_max;          /* ledger.queue_max */
    int ledger_flush_ms;           /* ledger.flush_ms */
    char *ledger_backend;          /* ledger.backend: sqlite|postgresql */
    char *ledger_postgresql_url;   /* ledger.postgresql_url ("" = none; never a password) */
    char *ledger_postgresql_password_file; /* resolved: the credential when unset and present */
    char *instance_name;           /* instance.name ("" = hostname:listen.port, made in ledger_pg.c) */
    int pricing_refresh_s;         /* pricing.refresh_s */
    char *auth_mode;               /* auth.mode: none|keys */
    char *alerts_webhook_url;      /* alerts.webhook_url ("" = off) */
    struct orp_int_list alerts_thresholds_pct; /* alerts.thresholds_pct, ascending */
    char *alerts_format;           /* alerts.format: json|slack */

    /* Not in the scalar table: parsed from their own blocks. */
    struct orp_limits limits;      /* limits.rpm/tpm/max_concurrent/budget_usd_* (global) */
    struct bodyedit_alias *aliases;     /* aliases = ( ["app-name", "vendor/model"], ... ); */
    int n_aliases;
    struct orp_client *clients;    /* clients = ( { name = ...; ... }, ... ); */
    int n_clients;

    /* Resolved at load time, not a setting: the upstream key from
     * api_key_file (wins) or the api_key_env variable.  NULL when neither
     * gives one.  A secret: never log it. */
    char *upstream_key;
    char *source_path;             /* the file this came from */

    /* A merged config (managed.c): a copy of base's settings whose clients
     * are base's (the first n_base_clients, borrowed: struct copies whose
     * strings base owns) followed by the managed ones (owned).  base is
     * held; config_release frees only what the merged config owns.  NULL
     * for a config loaded from a file. */
    struct orp_config *base;
    int n_base_clients;

    /* Shared, read-only once loaded: a reload makes a new one.  Workers and
     * each in-flight request hold a reference, so a request finishes with
     * the config it started with.  Heap configs only (config_load_new). */
    atomic_int refs;
};

/* Fills cfg with every default (strings allocated). */
void config_defaults(struct orp_config *cfg);

/* Loads path over the defaults.  Returns 0, or -1 with err set to
 * "FILE:LINE: message" (parse error, unknown setting, wrong type, out of
 * range, bad enum value, unreadable key file).  On error cfg holds nothing
 * that needs freeing beyond what config_free() handles. */
int config_load(const char *path, struct orp_config *cfg, char *err, size_t errlen);

void config_free(struct orp_config *cfg);
/* Frees what one client owns (its strings, models, aliases, defaults). */
void config_client_free(struct orp_client *c);

/* config_load into a new heap config holding one reference; NULL on error. */
struct orp_config *config_load_new(const char *path, char *err, size_t errlen);
struct orp_config *config_hold(struct orp_config *cfg);
/* Drops a reference; the last one frees the config. */
void config_release(struct orp_config *cfg);
/* Settings a reload cannot change (listening socket, threads, files):
 * copies them from old into new and returns a comma-separated list of the
 * names that differed ("" if none), in a static buffer. */
const char *config_keep_restart_only(struct orp_config *new_cfg, const struct orp_config *old);
/* The rules that join settings, checked against what will really run:
 * cfg after config_keep_restart_only(), and listener_loopback = whether the
 * socket actually listening (ours, or the one systemd passed) is bound to
 * a loopback address.  A reload or a start that fails them must not take
 * effect.  0, or -1 with the reason in err. */
int config_check_running(const struct orp_config *cfg, int listener_loopback, char *err,
                         size_t errlen);

/* url for a log line: any "user:password@" before the host becomes "***@",
 * so credentials in upstream.base_url never reach a log.  Truncates to out. */
void config_url_for_log(const char *url, char *out, size_t outlen);

/* Number of settings and the dotted name of setting i (for doc checks). */
int config_table_count(void);
const char *config_table_name(int i);

#endif
