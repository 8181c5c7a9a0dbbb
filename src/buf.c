/* buf.c - see buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

static int buf_reserve(buf_t *b, size_t extra)
{
    if (b->off > 0 && (b->off >= b->cap / 2 || b->len + extra > b->cap)) {
        size_t used = b->len - b->off;
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
    }
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra + 1) {
        if (ncap > ((size_t)-1) / 2)
            return -1;
        ncap *= 2;
    }
    char *n = realloc(b->data, ncap);
    if (n == NULL)
        return -1;
    b->data = n;
    b->cap = ncap;
    return 0;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_appendz(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len - b->off) {
        b->off = b->len = 0;
        return;
    }
    b->off += n;
}

void buf_reset(buf_t *b)
{
    b->off = b->len = 0;
}

void buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

const char *buf_cstr(buf_t *b)
{
    if (buf_reserve(b, 0) < 0)
        return NULL;
    b->data[b->len] = '\0';
    return b->data + b->off;
}
