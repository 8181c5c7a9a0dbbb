/* utf8.c - see utf8.h.  A byte-by-byte decoder of the RFC 3629 table
 * (the ranges of the second byte rule out overlong forms and surrogates),
 * used to validate names and to copy text into fixed-size fields without
 * leaving half a character at the end. */
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

size_t utf8_char_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (n == 0)
        return 0;
    if (p[0] < 0x80)
        return 1;
    if (p[0] < 0xC2 || p[0] > 0xF4)
        return 0; /* continuation byte, overlong 2-byte lead, or beyond U+10FFFF */
    len = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
    if (p[0] == 0xE0)
        lo = 0xA0; /* overlong */
    else if (p[0] == 0xED)
        hi = 0x9F; /* surrogates */
    else if (p[0] == 0xF0)
        lo = 0x90; /* overlong */
    else if (p[0] == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

int utf8_valid(const char *s, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        if ((n = utf8_char_len(s + i, len - i)) == 0)
            return 0;
        i += n;
    }
    return 1;
}

int utf8_is_clean_name(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;

    while (i < len) {
        if ((n = utf8_char_len(s + i, len - i)) == 0)
            return 0;
        if (p[i] < 0x20 || p[i] == 0x7F)
            return 0;
        if (n == 2 && p[i] == 0xC2 && p[i + 1] < 0xA0) /* C1 controls U+0080..U+009F */
            return 0;
        i += n;
    }
    return 1;
}

void utf8_copy(char *dst, size_t cap, const char *src)
{
    size_t i = 0, o = 0, len, n;

    if (src == NULL)
        src = "";
    len = strlen(src);
    while (i < len) {
        n = utf8_char_len(src + i, len - i);
        if (n == 0) {
            if (o + 1 >= cap)
                break;
            dst[o++] = '?';
            i++;
            continue;
        }
        if (o + n >= cap)
            break; /* the whole character, or none of it */
        memcpy(dst + o, src + i, n);
        o += n;
        i += n;
    }
    dst[o] = '\0';
}

char *utf8_sanitize_dup(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len + 1);

    if (out != NULL)
        utf8_copy(out, len + 1, s);
    return out;
}
