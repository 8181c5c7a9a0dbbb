/* utf8.h - UTF-8 checks and copies for text that reaches places which
 * require valid UTF-8: JSON answers (/v1/usage), Prometheus label values,
 * the ledger's fixed-size text fields.
 *
 * Pure, no allocation except utf8_sanitize_dup.  "Valid" is RFC 3629:
 * shortest form, no surrogates, nothing above U+10FFFF. */
#ifndef ORP_UTF8_H
#define ORP_UTF8_H

#include <stddef.h>

/* Length (1-4) of the valid UTF-8 character at s (n bytes available), or 0
 * when the bytes there are not one. */
size_t utf8_char_len(const char *s, size_t n);

/* The len bytes at s are valid UTF-8. */
int utf8_valid(const char *s, size_t len);

/* s is valid UTF-8 with no control characters (C0, DEL, C1): fit for a
 * name such as a model id. */
int utf8_is_clean_name(const char *s, size_t len);

/* Copies src (NULL: "") into dst of cap bytes (cap > 0), always
 * NUL-terminated, cutting only between characters, and with each byte that
 * does not start a valid character replaced by '?'.  The copy is never
 * longer than src, so it fits whatever src fits. */
void utf8_copy(char *dst, size_t cap, const char *src);

/* A malloc'd copy of s made valid as utf8_copy does (no cut), or NULL when
 * out of memory. */
char *utf8_sanitize_dup(const char *s);

#endif
