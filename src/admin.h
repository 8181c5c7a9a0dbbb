/* admin.h - the admin API under /admin/v1/ (doc/admin-api.md): managed
 * clients (managed.h) and the console's data (console_query.h).
 *
 * Who may call it: with auth.mode = "keys" an admin client's key in
 * Authorization: Bearer (no key 401, a non-admin key 403); with "none"
 * (loopback only) anyone on this host, but only with a loopback Host and
 * no foreign Origin (403), so a web page cannot use it.  After 10 failed attempts from one address
 * within a minute, every attempt from it gets 429 until that minute is
 * over.  Every answer is JSON; the work (SQLite reads and writes) runs on
 * the jobs thread (jobs.h), never on a worker. */
#ifndef ORP_ADMIN_H
#define ORP_ADMIN_H

#include "request.h"

/* The largest request body the admin API takes. */
#define ADMIN_MAX_BODY (64 * 1024)

/* From the headers (admit_identify): may this request use the admin API?
 * 0 yes (r->client set), -1 refused (the answer is set: 401, 403, 413, 429).
 * Also makes r->path visible ASCII ('?' for other bytes): it is echoed. */
int admin_gate(struct request *r);

/* The body is in: answer r.  0 the answer is set; 1 it is being prepared
 * on the jobs thread (as local_answer). */
int admin_answer(struct request *r);

/* Start-up, main thread: the workers /admin/v1/health reports on (their
 * heartbeats), and the start time. */
struct worker;
void admin_set_workers(const struct worker *w, int n);

#endif
