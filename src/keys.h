/* keys.h - client keys: SHA-256, hex, constant-time comparison, key
 * generation and the Authorization header.
 *
 * Functions over caller-owned memory (keys_generate also reads getrandom(2);
 * the hash and the comparison are libcrypto's); no globals of their own, so
 * every function is safe to call from any thread.  orproxy stores only the
 * SHA-256 of each client key, and matches a presented key by hashing it and
 * comparing in constant time. */
#ifndef ORP_KEYS_H
#define ORP_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* Length of a generated key: "orp-" + 43 base62 characters. */
#define KEYS_GENERATED_LEN 47

/* SHA-256 (FIPS 180-4, libcrypto's) of len bytes at data (data may be NULL
 * when len is 0).  Aborts if libcrypto cannot allocate its digest context. */
void keys_sha256(const void *data, size_t len, uint8_t out[32]);

/* Lower-case hex of n bytes into out, which holds 2n + 1 bytes. */
void keys_hex(const uint8_t *in, size_t n, char *out);

/* Exactly 2n hex digits (either case) into n bytes: 0, or -1 (out is then
 * unspecified). */
int keys_unhex(const char *hex, uint8_t *out, size_t n);

/* 1 when the n bytes at a and b are equal, else 0, in time that depends
 * only on n. */
int keys_ct_equal(const void *a, const void *b, size_t n);

/* Writes a fresh client key ("orp-" + 43 base62 characters, 256 bits from
 * getrandom) and its NUL into out.  0, or -1 when cap is below
 * KEYS_GENERATED_LEN + 1 or the kernel gives no randomness (out is then ""
 * when cap > 0). */
int keys_generate(char *out, size_t cap);

/* Parses "Bearer <token>": the scheme in any case, then one or more spaces,
 * then a token of visible ASCII characters (trailing spaces and tabs are
 * ignored).  0 with *token pointing into the header and *len its length,
 * or -1 (no header, another scheme, no token, a space inside it). */
int keys_bearer(const char *authorization_header, const char **token, size_t *len);

#endif
