/* pgtest.h - helpers of the tests against a real PostgreSQL (make test-pg;
 * tests/pg/run.sh starts the server and sets ORP_PG_*).  Each test gets its
 * own fresh database, made by the superuser, owned by the test role. */
#ifndef ORP_PGTEST_H
#define ORP_PGTEST_H

#include <stdint.h>

#include "pgconn.h"

/* getenv(name), or the test program exits with a message. */
const char *pgt_env(const char *name);
/* Drops and creates database db (owner orp_test); returns its URL for the
 * test role, without password (static buffer, valid until the next call). */
const char *pgt_fresh_db(const char *db);
/* pgt_fresh_db(db), migrated to the newest schema (pgledger_migrate), and a
 * pgconn to it; *url (may be NULL) is its URL. */
struct pgconn *pgt_migrated(const char *db, const char **url);
/* A pgconn to url with the test role's password file, timeout 5 s. */
struct pgconn *pgt_conn(const char *url);
/* Runs sql (no parameters) and returns the first column of the first row
 * as an integer; the test fails on an error or an empty result. */
int64_t pgt_int(struct pgconn *c, const char *sql);
/* Runs sql; the test fails on an error. */
void pgt_exec(struct pgconn *c, const char *sql);
/* "$ORP_PG_CTL stop|resume $ORP_PG_DIR": stops or restarts the server. */
void pgt_server(const char *what);

#endif
