/* keys.h - client keys: SHA-256, constant-time comparison, generation,
 * and the Authorization header.  Pure functions (generation reads
 * getrandom); no OpenSSL: the one hash orproxy needs is implemented here
 * (FIPS 180-4) and checked against the standard test vectors. */
#ifndef ORP_KEYS_H
#define ORP_KEYS_H

#include <stddef.h>
#include <stdint.h>

void keys_sha256(const void *data, size_t len, uint8_t out[32]);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void keys_hex(const uint8_t *in, size_t n, char *out);
/* Exactly 2n hex digits (either case) into n bytes.  0 or -1. */
int keys_unhex(const char *hex, uint8_t *out, size_t n);
/* 1 when equal.  Reads all n bytes whatever they hold: no early exit. */
int keys_ct_equal(const void *a, const void *b, size_t n);
/* "orp-" + 43 base62 characters (256 bits) from getrandom.  0 or -1. */
int keys_generate(char *out, size_t cap);
/* "Bearer <token>" (scheme in any case): 0 and the token, or -1. */
int keys_bearer(const char *header, const char **token, size_t *len);

#endif
