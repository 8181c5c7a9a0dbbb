/* ui.h - the operator console's files (ui/), compiled into the binary and
 * served under /ui/.
 *
 * The table ui_files[] is generated at build time by tools/embed.c into
 * build/gen/ui_assets.c: no CDN, no Node at run time, works offline.  The
 * files hold no data (the console reads everything from /admin/v1/ with the
 * operator's key), so /ui/ is answered without authentication, before the
 * client is identified. */
#ifndef ORP_UI_H
#define ORP_UI_H

#include <microhttpd.h>
#include <stddef.h>

#include "request.h"

struct ui_file {
    const char *path;           /* below ui/: "index.html", "vendor/uplot/uPlot.iife.min.js" */
    const unsigned char *data;
    size_t len;
    const char *ctype;          /* Content-Type */
    const char *etag;           /* quoted, a hash of the bytes */
};

/* Defined by the generated build/gen/ui_assets.c. */
extern const struct ui_file ui_files[];
extern const size_t ui_files_n;

/* The file at path (below ui/, no leading slash; "" is index.html), or NULL. */
const struct ui_file *ui_find(const char *path);

/* Answers a request for url ("/ui" or "/ui/..."; route kind ROUTE_UI) with
 * the file, a 304, a redirect /ui -> /ui/, the auth mode (/ui/auth.json:
 * {"mode":"keys"|"none"}), or a 404 in the API's error
 * shape; every answer carries the console's security headers.  Called
 * from MHD's request callback on the head (front.c). */
enum MHD_Result ui_respond(struct request *r, const char *url);

#endif
