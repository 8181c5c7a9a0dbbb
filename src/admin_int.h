/* admin_int.h - what admin.c (gate, dispatch, clients) takes from
 * admin_data.c (the console's data routes and the helpers both use); not
 * for other modules. */
#ifndef ORP_ADMIN_INT_H
#define ORP_ADMIN_INT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "admin.h"
#include "console_query.h"
#include "jobs.h"

enum admin_op { OP_LIST, OP_GET, OP_CREATE, OP_EDIT, OP_ROTATE, OP_REVOKE, OP_DATA };

/* One admin job's parameters, copied off the request (jobs.h). */
struct admin_ctx {
    int op;
    char *name;                  /* the {name} of a client route */
    char by[64];                 /* who asked: an admin client's name, for the log */
    char *body;                  /* the request body, NUL-terminated, or NULL */
    size_t body_len;
    /* the data routes' query */
    int64_t since_ms, until_ms, now_ms;
    int bucket_day, group, top_n; /* group: enum cq_by */
    struct cq_filter filter;     /* its strings point at s1..s4 */
    char *s1, *s2, *s3, *s4;
    char *pg_url, *pg_password_file; /* ledger.backend = "postgresql": read there */
};

void admin_ctx_free(void *c);
/* The job's answer: o as JSON text with status (o is deleted). */
void admin_set_json(struct job *j, unsigned status, cJSON *o);
/* An amount as a decimal string (null when 0 and zero_is_null); a time as
 * ISO-8601 UTC text (null when <= 0). */
void admin_add_usd(cJSON *o, const char *name, int64_t pusd, int zero_is_null);
void admin_add_time(cJSON *o, const char *name, int64_t ms);

/* The routes of admin_data.c: rest is the path after "/admin/v1/". */
int admin_data_route(struct request *r, const char *rest);

#endif
