/* config_int.h - private to the config_*.c files: the settings table's row
 * type, the loader's state, and the pieces of config_load() that live in
 * their own files.  Nothing outside src/config*.c includes it.
 *
 *   config.c          the settings table, single-value checks, the walk
 *                     over libconfig's tree, cross-setting rules, load/free
 *   config_value.c    values libconfig gets wrong or cannot express:
 *                     integers past 32 bits, exact USD amounts
 *   config_include.c  the @include pre-scan (libconfig exits on a bad one)
 *   config_clients.c  the clients, aliases and defaults blocks
 *   config_keys.c     the upstream keys: key files, credentials, environment
 *   config_reload.c   heap configs by reference, and what a reload may change
 *
 *   config_err.c      the loader's messages ("FILE:LINE: message")
 *
 * config.c calls down into the others and none calls back: what they
 * need of the loader (where each setting was written, how to open a file)
 * travels in struct loader.  Every file the loader reads is opened through
 * loader->open, which config.c sets to its one fopen call, so the fuzz
 * target's copy of config.o (fopen renamed, see the Makefile) covers them
 * all. */
#ifndef ORP_CONFIG_INT_H
#define ORP_CONFIG_INT_H

#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

enum stype { T_STR, T_INT, T_INT64, T_ENUM, T_USD, T_INTLIST };

#define F_RESTART 1u /* a reload keeps the running value (config_keep_restart_only) */

/* Extra check of a string value.  May shorten v in place.  Returns NULL
 * when v is fine, else the reason, which follows the setting's name in the
 * message ("must be ..."); buf is there for reasons that quote v. */
typedef const char *check_fn(char *v, char *buf, size_t len);

struct setting {
    const char *name;
    enum stype type;
    size_t off;
    const char *def_str;         /* T_STR, T_ENUM, T_INTLIST ("[50, 80, 100]") */
    long long def_num, min, max; /* T_INT, T_INT64; T_INTLIST: each element */
    const char *values;          /* T_ENUM: "a|b|c" */
    const char *help;
    check_fn *check;             /* T_STR: NULL = any string without control characters */
    unsigned flags;
};

/* Row i of the settings table (0 <= i < config_table_count()). */
const struct setting *config_setting_at(int i);

static inline char **str_at(struct orp_config *cfg, const struct setting *s)
{
    return (char **)(void *)((char *)cfg + s->off);
}

static inline int *int_at(struct orp_config *cfg, const struct setting *s)
{
    return (int *)(void *)((char *)cfg + s->off);
}

/* T_INT64 and T_USD (picodollars) */
static inline long long *int64_at(struct orp_config *cfg, const struct setting *s)
{
    return (long long *)(void *)((char *)cfg + s->off);
}

static inline struct orp_int_list *list_at(struct orp_config *cfg, const struct setting *s)
{
    return (struct orp_int_list *)(void *)((char *)cfg + s->off);
}

static inline const void *field_of(const struct orp_config *cfg, const struct setting *s)
{
    return (const char *)cfg + s->off;
}

/* ---- the loader's state (config_load) ---- */

struct where {
    const char *name; /* the setting's dotted name */
    const char *file; /* libconfig's copy; valid until config_destroy() */
    int line;         /* 0 = not in the file (the default) */
};

struct loader {
    const char *file;     /* the file config_load() was given */
    const char *cur_file; /* the file the next message names (an @include), NULL = file */
    char *err;
    size_t errlen;
    struct where *set_at; /* where each row of the settings table was written */
    int n_set_at;
    FILE *(*open)(const char *path); /* fopen(path, "r"), see config.c */
};

/* config_err.c */

/* "FILE:LINE: message", or "FILE: message" when there is no line.  -1. */
int config_fail_at(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The line where setting `name` was written (0 = not written), and its
 * file becomes the one the next message names. */
int config_line_of(struct loader *ld, const char *name);

/* config_value.c */
int config_parse_usd(struct loader *ld, config_setting_t *cs, const char *name, long long *out);
long long config_int_as_written(struct loader *ld, const char *file, int line, const char *leaf,
                                int libval);
/* T_INTLIST: an array or list of integers, each within s->min ... s->max,
 * strictly ascending (no repeats), at least one, at most ORP_INT_LIST_MAX. */
int config_parse_int_list(struct loader *ld, config_setting_t *cs, const struct setting *s,
                          struct orp_int_list *out);
/* The default text "[50, 80, 100]" as a list (the table's own, so always good). */
void config_int_list_default(const char *text, struct orp_int_list *out);
/* alerts.webhook_url: "" (off), or an http:// or https:// URL with a host and no blanks. */
check_fn config_check_webhook_url;

/* config_include.c */
int config_check_includes(struct loader *ld, const char *file, int depth);

/* config_clients.c */
int config_parse_aliases(struct loader *ld, config_setting_t *list, const char *name,
                         struct bodyedit_alias **out, int *n_out);
int config_parse_clients(struct loader *ld, struct orp_config *cfg, config_setting_t *list);

/* config_keys.c */
char *config_trimmed_dup(const char *s);
int config_read_key_file(struct loader *ld, const char *path, char **key);
/* Frees a string after overwriting it (keys). */
void config_free_secret(char **p);
int config_resolve_key(struct loader *ld, struct orp_config *cfg);
/* ledger.backend = "postgresql": the URL it needs, the password file (a readable file,
 * or systemd's credential postgresql-password).  0, or -1 (reported). */
int config_resolve_postgresql(struct loader *ld, struct orp_config *cfg);

#endif
