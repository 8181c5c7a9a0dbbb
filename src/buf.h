/* buf.h - a growable byte buffer with a read offset.
 *
 * Appends at the end, consumes from the front without memmove on every
 * call (the front gap is reclaimed when it outweighs the data).  The owner
 * of the struct calls buf_free(). */
#ifndef ORP_BUF_H
#define ORP_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data;
    size_t off;  /* first unread byte */
    size_t len;  /* end of data (absolute, >= off) */
    size_t cap;
} buf_t;

static inline size_t buf_used(const buf_t *b) { return b->len - b->off; }
/* NULL for a buffer that never held anything: NULL + 0 is undefined in C. */
static inline const char *buf_head(const buf_t *b) { return b->data != NULL ? b->data + b->off : NULL; }

int buf_append(buf_t *b, const void *p, size_t n);   /* 0, -1 on ENOMEM */
int buf_appendz(buf_t *b, const char *s);
void buf_consume(buf_t *b, size_t n);
void buf_reset(buf_t *b);
void buf_free(buf_t *b);
/* Returns data as a NUL-terminated string (appends a NUL not counted in len). */
const char *buf_cstr(buf_t *b);

#endif
