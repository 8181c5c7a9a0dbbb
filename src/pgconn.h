/* pgconn.h - one libpq connection driven without blocking: connect, run a
 * statement, reconnect after a loss, each bounded by a deadline.
 *
 * Every wait is a poll(2) on PQsocket with the time left: PQconnectStartParams
 * and PQconnectPoll to connect, PQsendQuery(Params), PQflush, PQconsumeInput,
 * PQisBusy and PQgetResult to run a statement.  So the thread that owns the
 * connection (the ledger writer, housekeeping) never waits longer than its
 * timeout on a dead server, and no worker ever touches it.  One pgconn is
 * used by one thread at a time (libpq's rule).
 *
 * The URL is a libpq URI or key=value string that must not carry a
 * password: pgconn_open refuses one that does.  The password comes from
 * password_file (its first line), or, with none, from libpq itself
 * (PGPASSFILE, ~/.pgpass).  TCP keepalives and tcp_user_timeout are on by
 * default so a silently dead peer is noticed; the URL may override them. */
#ifndef ORP_PGCONN_H
#define ORP_PGCONN_H

#include <stddef.h>
#include <libpq-fe.h>

struct pgconn_opts {
    const char *url;           /* libpq URI without password */
    const char *password_file; /* NULL or "": libpq's PGPASSFILE / .pgpass */
    const char *app_name;      /* application_name, e.g. "orproxy host:8080" */
    int timeout_ms;            /* bound of a connect and of each statement */
};

/* What a failed call means to the caller. */
enum pgconn_rc {
    PGC_OK = 0,
    PGC_DOWN = -1, /* no connection, lost, or timed out: retry later */
    PGC_SQL = -2,  /* the server refused the statement: retrying will not help */
};

struct pgconn;

/* Checks the options and reads the password file; connects at the first
 * statement (or pgconn_connect).  NULL with err on a bad URL (one with a
 * password among them) or an unreadable password file.  Freed by
 * pgconn_free. */
struct pgconn *pgconn_new(const struct pgconn_opts *o, char *err, size_t errlen);
void pgconn_free(struct pgconn *c);
/* 0 when url parses and names no password; -1 with err otherwise (err
 * never repeats a password).  For the config's check. */
int pgconn_check_url(const char *url, char *err, size_t errlen);

/* Connects now if not connected.  PGC_OK or PGC_DOWN with err. */
int pgconn_connect(struct pgconn *c, char *err, size_t errlen);
/* Closes the connection (the next statement reconnects). */
void pgconn_disconnect(struct pgconn *c);
int pgconn_connected(const struct pgconn *c);

/* Runs sql (several statements when nparams is 0; one with $1..$n text
 * parameters otherwise, NULL = SQL NULL), connecting first if needed.
 * On PGC_OK and res not NULL, *res is the last result (the caller PQclears
 * it).  A lost or timed-out connection is closed (PGC_DOWN); an error
 * result gives PGC_SQL with the server's message and SQLSTATE in err. */
int pgconn_exec(struct pgconn *c, const char *sql, int nparams, const char *const *params,
                PGresult **res, char *err, size_t errlen);

/* On a connection that ran LISTEN channel: waits up to timeout_ms for
 * input, and sets *got to the notifications on channel that arrived (0 on
 * a timeout).  PGC_OK, or PGC_DOWN (with err) when the connection is gone
 * (closed: the caller reconnects, LISTENs again and catches up, since
 * notifications sent meanwhile are lost). */
int pgconn_wait_notify(struct pgconn *c, const char *channel, int timeout_ms, int *got, char *err,
                       size_t errlen);

/* The SQLSTATE of the last PGC_SQL ("" if none): 40001, 23505, ... */
const char *pgconn_sqlstate(const struct pgconn *c);

#endif
