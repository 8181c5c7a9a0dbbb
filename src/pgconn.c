/* pgconn.c - a libpq connection that never blocks past its deadline (see
 * pgconn.h).  Waits are poll(2) calls on PQsocket, level-triggered, asking
 * for what libpq asked for; the socket is read from libpq before every
 * wait because it may change while connecting.  A timeout or a lost
 * connection closes the PGconn: its state is unknown, and the next
 * statement starts from a fresh connection. */
#include "pgconn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct pgconn {
    PGconn *pg;
    char *url;
    char *password; /* from password_file, or NULL */
    char *app_name;
    int timeout_ms;
    char sqlstate[6];
};

/* Copies libpq's message (which ends in a newline) without the newline. */
static void set_pg_err(char *err, size_t errlen, const char *what, const char *msg)
{
    size_t n = msg ? strlen(msg) : 0;
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    util_set_err(err, errlen, "%s: %.*s", what, (int)n, msg ? msg : "");
}

/* The URL parses and names no password. */
int pgconn_check_url(const char *url, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr), *o;
    int rc = 0;

    if (opts == NULL) {
        set_pg_err(err, errlen, "ledger.postgresql_url", perr ? perr : "out of memory");
        PQfreemem(perr);
        return -1;
    }
    for (o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0') {
            util_set_err(err, errlen,
                         "ledger.postgresql_url must not contain a password "
                         "(use ledger.postgresql_password_file or .pgpass)");
            rc = -1;
        }
    PQconninfoFree(opts);
    return rc;
}

/* The first line of path, or NULL with err. */
static char *read_password(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        util_set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        util_set_err(err, errlen, "%s holds no password", path);
        return NULL;
    }
    return strdup(buf);
}

struct pgconn *pgconn_new(const struct pgconn_opts *o, char *err, size_t errlen)
{
    struct pgconn *c;

    if (o->url == NULL || pgconn_check_url(o->url, err, errlen) != 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        goto oom;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    c->url = strdup(o->url);
    c->app_name = strdup(o->app_name ? o->app_name : "orproxy");
    if (c->url == NULL || c->app_name == NULL)
        goto oom;
    if (o->password_file != NULL && o->password_file[0] != '\0') {
        c->password = read_password(o->password_file, err, errlen);
        if (c->password == NULL) {
            pgconn_free(c);
            return NULL;
        }
    }
    return c;
oom:
    pgconn_free(c);
    util_set_err(err, errlen, "out of memory");
    return NULL;
}

void pgconn_free(struct pgconn *c)
{
    if (c == NULL)
        return;
    pgconn_disconnect(c);
    if (c->password != NULL)
        explicit_bzero(c->password, strlen(c->password));
    free(c->password);
    free(c->url);
    free(c->app_name);
    free(c);
}

void pgconn_disconnect(struct pgconn *c)
{
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
}

int pgconn_connected(const struct pgconn *c)
{
    return c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK;
}

const char *pgconn_sqlstate(const struct pgconn *c)
{
    return c->sqlstate;
}

/* Notices ("relation already exists, skipping") are not errors: dropped,
 * instead of libpq's default of printing them to stderr. */
static void ignore_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Waits until the socket is ready for events or the deadline (monotonic
 * ms) passes.  Returns the revents, 0 on timeout, -1 on error. */
static int wait_sock(PGconn *pg, short events, int64_t deadline)
{
    struct pollfd p = {.fd = PQsocket(pg), .events = events};
    for (;;) {
        int64_t left = deadline - util_mono_ms();
        int n;
        if (p.fd < 0)
            return -1;
        if (left <= 0)
            return 0;
        n = poll(&p, 1, (int)left);
        if (n > 0)
            return p.revents;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

int pgconn_connect(struct pgconn *c, char *err, size_t errlen)
{
    /* Defaults first, then the URL's own settings, then the password: with
     * expand_dbname, a later keyword overrides an earlier one. */
    const char *kw[] = {"keepalives",       "keepalives_idle",  "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "application_name",
                        "dbname",           "password",         NULL};
    const char *val[] = {"1", "30", "10", "3", "30000", c->app_name, c->url, c->password, NULL};
    int64_t deadline = util_mono_ms() + c->timeout_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    if (pgconn_connected(c))
        return PGC_OK;
    pgconn_disconnect(c);
    c->pg = PQconnectStartParams(kw, val, 1);
    if (c->pg == NULL) {
        util_set_err(err, errlen, "postgresql: out of memory");
        return PGC_DOWN;
    }
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    while (PQstatus(c->pg) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int w = wait_sock(c->pg, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (w == 0) {
            util_set_err(err, errlen, "postgresql: connect timed out after %d ms", c->timeout_ms);
            pgconn_disconnect(c);
            return PGC_DOWN;
        }
        st = PQconnectPoll(c->pg);
    }
    if (PQstatus(c->pg) != CONNECTION_OK || PQsetnonblocking(c->pg, 1) != 0) {
        set_pg_err(err, errlen, "postgresql: connect", PQerrorMessage(c->pg));
        pgconn_disconnect(c);
        return PGC_DOWN;
    }
    return PGC_OK;
}

/* Flushes what PQsend* queued.  0, or -1 (lost or timed out). */
static int flush_out(PGconn *pg, int64_t deadline)
{
    int f;
    while ((f = PQflush(pg)) == 1) {
        int w = wait_sock(pg, POLLIN | POLLOUT, deadline);
        if (w <= 0)
            return -1;
        if ((w & POLLIN) && !PQconsumeInput(pg))
            return -1;
    }
    return f;
}

/* Collects every result.  The last good one goes to *last; the first error
 * is kept (message in err, SQLSTATE in c->sqlstate).  0, or -1 when the
 * connection failed or timed out before the end. */
static int collect(struct pgconn *c, int64_t deadline, PGresult **last, int *sql_failed, char *err,
                   size_t errlen)
{
    PGresult *r;
    for (;;) {
        while (PQisBusy(c->pg)) {
            int w = wait_sock(c->pg, POLLIN, deadline);
            if (w <= 0 || !PQconsumeInput(c->pg))
                return -1;
        }
        r = PQgetResult(c->pg);
        if (r == NULL)
            return 0;
        ExecStatusType st = PQresultStatus(r);
        switch (st) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_EMPTY_QUERY:
            PQclear(*last);
            *last = r;
            break;
        default:
            if (!*sql_failed) {
                const char *ss = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                snprintf(c->sqlstate, sizeof c->sqlstate, "%s", ss ? ss : "");
                set_pg_err(err, errlen, "postgresql", PQresultErrorMessage(r));
            }
            *sql_failed = 1;
            PQclear(r);
            /* COPY was not asked for: give up on this connection. */
            if (PQstatus(c->pg) == CONNECTION_BAD || st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
                st == PGRES_COPY_BOTH)
                return -1;
        }
    }
}

int pgconn_exec(struct pgconn *c, const char *sql, int nparams, const char *const *params,
                PGresult **res, char *err, size_t errlen)
{
    int64_t deadline;
    PGresult *last = NULL;
    int sql_failed = 0, sent;

    c->sqlstate[0] = '\0';
    if (res != NULL)
        *res = NULL;
    if (pgconn_connect(c, err, errlen) != PGC_OK)
        return PGC_DOWN;
    deadline = util_mono_ms() + c->timeout_ms;
    sent = nparams > 0 ? PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0)
                       : PQsendQuery(c->pg, sql);
    if (!sent || flush_out(c->pg, deadline) != 0 ||
        collect(c, deadline, &last, &sql_failed, err, errlen) != 0 ||
        PQstatus(c->pg) != CONNECTION_OK) {
        if (!sql_failed || c->sqlstate[0] == '\0') {
            if (util_mono_ms() >= deadline)
                util_set_err(err, errlen, "postgresql: no answer within %d ms", c->timeout_ms);
            else
                set_pg_err(err, errlen, "postgresql: connection lost", PQerrorMessage(c->pg));
        }
        PQclear(last);
        pgconn_disconnect(c);
        return PGC_DOWN;
    }
    if (sql_failed) {
        PQclear(last);
        /* Class 08 (connection exception) and 57P (operator intervention:
         * shutdown, terminated backend) are outages, not bad statements. */
        if (strncmp(c->sqlstate, "08", 2) == 0 || strncmp(c->sqlstate, "57P", 3) == 0) {
            pgconn_disconnect(c);
            return PGC_DOWN;
        }
        return PGC_SQL;
    }
    if (res != NULL)
        *res = last;
    else
        PQclear(last);
    return PGC_OK;
}

/* Hands over the notifications libpq holds; counts those on channel. */
static int drain_notifies(PGconn *pg, const char *channel)
{
    PGnotify *n;
    int got = 0;
    while ((n = PQnotifies(pg)) != NULL) {
        got += strcmp(n->relname, channel) == 0;
        PQfreemem(n);
    }
    return got;
}

int pgconn_wait_notify(struct pgconn *c, const char *channel, int timeout_ms, int *got, char *err,
                       size_t errlen)
{
    int w;

    *got = 0;
    if (!pgconn_connected(c)) {
        util_set_err(err, errlen, "postgresql: not connected");
        return PGC_DOWN;
    }
    /* Some may have come in with the answer to an earlier statement. */
    if ((*got = drain_notifies(c->pg, channel)) > 0)
        return PGC_OK;
    w = wait_sock(c->pg, POLLIN, util_mono_ms() + timeout_ms);
    if (w == 0)
        return PGC_OK;
    if (w < 0 || !PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK) {
        set_pg_err(err, errlen, "postgresql: connection lost", PQerrorMessage(c->pg));
        pgconn_disconnect(c);
        return PGC_DOWN;
    }
    *got = drain_notifies(c->pg, channel);
    return PGC_OK;
}
