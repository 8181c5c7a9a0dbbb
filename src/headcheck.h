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

#endif
