/* guard.c - see guard.h. */
#include "guard.h"

#include <stdlib.h>
#include <sys/socket.h>

#include "log.h"
#include "util.h"

struct conn_watch {
    struct MHD_Connection *conn;
    int fd;
    int receiving;              /* a request is being read */
    int64_t since_ms;           /* monotonic: when reading it began */
    LIST_ENTRY(conn_watch) link;
};

void guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode toe)
{
    struct guard *g = cls;
    struct conn_watch *cw = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (cw = calloc(1, sizeof *cw)) == NULL)
            return; /* unwatched: MHD's inactivity timeout still applies */
        cw->conn = conn;
        cw->fd = ci->connect_fd;
        cw->receiving = 1;
        cw->since_ms = util_mono_ms();
        LIST_INSERT_HEAD(&g->watches, cw, link);
        *socket_context = cw;
    } else if (cw != NULL) {
        LIST_REMOVE(cw, link);
        free(cw);
        *socket_context = NULL;
    }
}

void guard_receiving(struct MHD_Connection *conn, int receiving)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_watch *cw = ci != NULL ? ci->socket_context : NULL;
    if (cw != NULL) {
        cw->receiving = receiving;
        cw->since_ms = util_mono_ms();
    }
}

void guard_check(struct guard *g, int64_t now, int timeout_s)
{
    int64_t limit = (int64_t)timeout_s * 1000;
    struct conn_watch *cw;

    LIST_FOREACH(cw, &g->watches, link) {
        if (!cw->receiving || now - cw->since_ms <= limit)
            continue;
        cw->receiving = 0;
        log_info("client sent no complete request within %d s: closing its connection",
                 timeout_s);
        shutdown(cw->fd, SHUT_RDWR);
    }
}

