/* managed_int.h - what managed.c (the merged config) and managed_edit.c
 * (the writes) share; not for other modules. */
#ifndef ORP_MANAGED_INT_H
#define ORP_MANAGED_INT_H

#include <pthread.h>

#include "managed.h"

struct managed_state {
    pthread_mutex_t mu;            /* orders writes, reloads and publishes */
    struct orp_config *base;       /* the file config (held) */
    struct orp_config *current;    /* the merged config last published (held) */
    managed_publish_fn publish;
    void *publish_arg;
};
extern struct managed_state managed_g;

/* Caller holds managed_g.mu: read the table through db, publish the merged
 * config.  0, or -1 (err set; nothing changed). */
int managed_republish(sqlite3 *db, char *err, size_t errlen);

#endif
