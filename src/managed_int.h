/* managed_int.h - what the files of managed.h share; not for other
 * modules.  Layers, each calling only those below it: managed_edit.c (the
 * writes; hands PostgreSQL's to managed_pgedit.c), managed_pgedit.c,
 * managed.c (the merged config), managed_pg.c (PostgreSQL's connections,
 * read and LISTEN thread, which reports upward by a callback). */
#ifndef ORP_MANAGED_INT_H
#define ORP_MANAGED_INT_H

#include <pthread.h>

#include "managed.h"
#include "pgconn.h"

struct managed_state {
    pthread_mutex_t mu;            /* orders writes, reloads and publishes */
    struct orp_config *base;       /* the file config (held) */
    struct orp_config *current;    /* the merged config last published (held) */
    managed_publish_fn publish;
    void *publish_arg;
    int pg;                        /* ledger.backend = "postgresql": the store is managed_pg.c */
};
extern struct managed_state managed_g;

/* Caller holds managed_g.mu: read the table through db (unused with
 * PostgreSQL), publish the merged config.  0, or -1 (err set; nothing
 * changed). */
int managed_republish(sqlite3 *db, char *err, size_t errlen);
/* Caller holds managed_g.mu: m (its reference taken over) becomes the
 * current merged config and goes to the publisher. */
void managed_install(struct orp_config *m);

/* Building a merged config: base's clients first (*cap set), then a zeroed
 * slot (managed = 1) per managed client, NULL when base has the name (a
 * warning is logged) or memory ran out.  The strings put in a slot belong
 * to the merged config. */
struct orp_config *managed_merge_begin(struct orp_config *base, int *cap);
struct orp_client *managed_merge_slot(struct orp_config *m, int *cap, const char *name);
/* The models and defaults columns (JSON text) into c. */
void managed_load_models(const char *text, struct orp_client *c);
void managed_load_defaults(const char *text, struct bodyedit_defaults *d);

/* ---- the writes (managed_edit.c) ---- */
#define MANAGED_MAX_COLS 12

/* One column to set: an integer ('i'), a text ('t') or NULL ('n'). */
struct managed_col {
    const char *name;
    int kind;
    int64_t i;
    char *text;
};

/* A checked request body: the columns it sets. */
struct managed_change {
    struct managed_col v[MANAGED_MAX_COLS];
    int n;
    const char *name;           /* "name" of a create */
};

/* The pure checks of a body (no database, no lock; fuzz_managed calls
 * them).  A create (creating != 0) or patch body into e, which starts
 * zeroed and is freed with managed_change_free whatever the result (e->name
 * points into body).  0, or -1 with res filled (400). */
int managed_parse_change(const cJSON *body, int creating, struct managed_change *e,
                         struct managed_result *res);
void managed_change_free(struct managed_change *e);
/* A rotate body (NULL: none) into *grace_s.  0, or -1 with res filled (400). */
int managed_parse_grace(const cJSON *body, int64_t *grace_s, struct managed_result *res);

/* Fills res with an error; returns -1. */
int managed_fail(struct managed_result *res, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Caller holds managed_g.mu: the name checks every write shares (valid;
 * not a config client's).  0, or -1 (res filled). */
int managed_check_name(const char *name, int must_exist, struct managed_result *res);
/* A fresh key into res->key; its hash into h.  0, or -1 (res filled). */
int managed_new_key(struct managed_result *res, uint8_t h[32]);

/* ---- PostgreSQL (managed_pg.c: connections, read, LISTEN thread) ---- */
/* Called on managed_pg.c's thread after a notification, a reconnect and
 * every 30 s: re-read the table through c and publish; 0, or -1 to be
 * called again soon. */
typedef int (*managed_pg_changed_fn)(struct pgconn *c, void *arg);
/* Opens the store's two connections (no thread yet). */
int managed_pg_open(const struct orp_config *cfg, managed_pg_changed_fn changed, void *arg,
                    char *err, size_t errlen);
/* Starts the thread that LISTENs (once; after the publisher is set). */
void managed_pg_start(void);
/* Stops the thread, closes; caller does not hold managed_g.mu. */
void managed_pg_close(void);
/* The connection of the writes and reads under managed_g.mu. */
struct pgconn *managed_pg_writer(void);
/* The live rows (name, key hashes in hex, ..., the columns of managed.c's
 * SQLite read) into *out (the caller PQclears it).  0, or -1 (err set). */
int managed_pg_read(struct pgconn *c, PGresult **out, char *err, size_t errlen);

/* ---- the writes in PostgreSQL (managed_pgedit.c) ---- */
/* Each takes managed_g.mu, commits with NOTIFY, publishes. */
void managed_pg_create(const struct managed_change *e, struct managed_result *res);
void managed_pg_update(const char *name, const struct managed_change *e, struct managed_result *res);
/* The caller logs, sets until_ms and wipes the key of a failure. */
void managed_pg_rotate(const char *name, int64_t grace_s, int64_t now, struct managed_result *res);
void managed_pg_revoke(const char *name, struct managed_result *res);

#endif
