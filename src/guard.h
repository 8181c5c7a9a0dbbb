/* guard.h - the slow-loris guard.
 *
 * MHD's connection timeout is an inactivity timeout:
 * a client trickling one byte a second keeps a connection forever.  So each
 * connection is watched from its first byte (or from the end of its
 * previous request) until its request is complete, and one that has not
 * sent a whole request within limits.client_timeout_s is shut down; MHD
 * then sees the end of the stream and closes it as it would any other. */
#ifndef ORP_GUARD_H
#define ORP_GUARD_H

#include <microhttpd.h>
#include <stdint.h>
#include <sys/queue.h>

struct conn_watch;

struct guard {
    LIST_HEAD(, conn_watch) watches; /* every client connection of one daemon */
};

/* MHD_OPTION_NOTIFY_CONNECTION (cls: the guard). */
void guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode toe);
/* The connection's request is being read (1), or is all in (0). */
void guard_receiving(struct MHD_Connection *conn, int receiving);
/* Once a second: shut connections that have not sent a whole request
 * within timeout_s, however steadily they trickle. */
void guard_check(struct guard *g, int64_t now_ms, int timeout_s);

#endif
