/* headcheck.c - see headcheck.h. */
#include "headcheck.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2: a header name is a token. */
static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

struct head_check {
    const char *bad;            /* why the request is refused, NULL while fine */
    int n_length, n_host, has_te;
    size_t max_gap;             /* most blanks between a colon and its value */
};

/* libmicrohttpd 0.9.75 glues an obsolete folded line ("Foo: a" CRLF " b")
 * onto the header's name ("Foob: a"), which no look at the name or value can
 * tell from a real "Foob" header.  But a header parsed from one line lies in
 * the read buffer as it came: the name, the NUL that replaced the colon,
 * blanks, the value.  A glued name was copied elsewhere in the connection's
 * memory pool, so its value is not right behind it. */
static int parsed_from_one_line(const char *key, const char *value, size_t max_gap)
{
    size_t klen = strlen(key);
    uintptr_t end = (uintptr_t)key + klen + 1, v = (uintptr_t)value;

    if (v < end || v - end > max_gap)
        return 0;
    for (const char *p = key + klen + 1; p < value; p++)
        if (*p != ' ' && *p != '\t')
            return 0;
    return 1;
}

static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct head_check *hc = cls;
    (void)kind;

    if (key[0] == '\0')
        hc->bad = "a request header has an empty name";
    if (hc->bad == NULL && value != NULL && !parsed_from_one_line(key, value, hc->max_gap))
        hc->bad = "a request header is folded over several lines (obsolete, RFC 9112 5.2)";
    for (const char *p = key; hc->bad == NULL && *p != '\0'; p++)
        if (!is_tchar((unsigned char)*p))
            hc->bad = "a request header name is not a token (RFC 9110): no spaces, no control bytes";
    for (const char *p = value ? value : ""; hc->bad == NULL && *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            hc->bad = "a request header value holds a control byte (CR, LF, NUL, ...)";
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        hc->n_length++;
        if (value == NULL || value[0] == '\0' || strspn(value, "0123456789") != strlen(value))
            hc->bad = "Content-Length must be a decimal number";
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        hc->n_host++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        hc->has_te = 1;
    }
    return hc->bad == NULL ? MHD_YES : MHD_NO;
}

/* libmicrohttpd passes on what it cannot frame safely: header names with
 * blanks or folded lines glued on, bare CR inside values, several
 * Content-Lengths (the first wins and the rest of the body would be read as
 * the next request), Content-Length beside chunked.  Anything upstream or a
 * later hop could read differently is refused here, before the body, and
 * never forwarded. */
const char *headcheck(struct MHD_Connection *conn, const char *version, size_t max_gap)
{
    struct head_check hc;

    memset(&hc, 0, sizeof hc);
    hc.max_gap = max_gap;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, check_header, &hc);
    if (hc.bad == NULL && hc.n_length > 1)
        hc.bad = "Content-Length appears more than once";
    if (hc.bad == NULL && hc.n_length > 0 && hc.has_te)
        hc.bad = "Content-Length and Transfer-Encoding together";
    if (hc.bad == NULL && hc.n_host > 1)
        hc.bad = "Host appears more than once";
    if (hc.bad == NULL && hc.n_host == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
        hc.bad = "an HTTP/1.1 request needs a Host header";
    return hc.bad;
}

int headcheck_request_id(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= 64 || !(isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return n > 0;
}
