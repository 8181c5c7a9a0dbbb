/* headcheck.h - the checks on a request's head made before its body is
 * read: what libmicrohttpd 0.9.75 passes on but cannot frame safely. */
#ifndef ORP_HEADCHECK_H
#define ORP_HEADCHECK_H

#include <microhttpd.h>
#include <stddef.h>

/* NULL when the head is fine, else why it is refused (a 400).  max_gap:
 * the most bytes a header's value may lie behind its name in MHD's read
 * buffer (the connection's memory limit). */
const char *headcheck(struct MHD_Connection *conn, const char *version, size_t max_gap);

/* 1 when a client's X-Request-Id may be used as the request's id (1 to 64
 * of [A-Za-z0-9._:-]), else 0: it is logged and stored. */
int headcheck_request_id(const char *s);

#endif
