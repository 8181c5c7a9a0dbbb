/* admit.h - whether and how a request may go upstream: who asks and with
 * which upstream key (from the headers, before a body byte is read), then
 * the body checks and edits, the model rule, the estimate and the
 * reservation against limits and budgets (once the body is in).  Every
 * check comes first; the reservation is the one commit, and the last step,
 * so a refusal has nothing to undo.  Refusals are left in the request's
 * local error fields (relay_set_error). */
#ifndef ORP_ADMIT_H
#define ORP_ADMIT_H

#include <stdint.h>

#include "request.h"

/* From the headers alone: a stranger is refused before any "100 Continue",
 * so it cannot make orproxy buffer anything.  0 fine, -1 refused. */
int admit_identify(struct request *r);
/* The body is complete (route with a JSON body, or any upstream route):
 * 0 admitted (the grant is held in r->grant), -1 refused. */
int admit_body(struct request *r);

/* The total body memory of all workers is bounded: a request reserves what
 * it will buffer (its Content-Length up front, a chunked body as it
 * arrives).  0 reserved, -1 it would not fit (nothing reserved). */
int admit_body_charge(struct request *r, uint64_t n);
void admit_body_uncharge(struct request *r);
/* The 503 answer for a body over that total. */
void admit_set_busy(struct request *r);

/* Frees what admission stored in r (names, key, body reservation). */
void admit_release(struct request *r);

/* A GET route's query string, rebuilt from MHD's parsed arguments and
 * escaped again, into r->url_query ("?a=b", or NULL when there is none). */
void admit_query(struct request *r);

#endif
