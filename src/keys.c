/* keys.c - client keys.  See keys.h.
 *
 * The hash and the comparison come from libcrypto, which libcurl's OpenSSL
 * build already loads: EVP_Digest with SHA-256, and CRYPTO_memcmp, which
 * looks at every byte whatever it finds.  The configuration keeps only key
 * hashes; a presented key is hashed and compared against every stored hash
 * in constant time, so the time taken tells an attacker nothing about how
 * many leading bytes they guessed right (comparing hashes rather than keys
 * already blurs that; the constant time removes it).
 * Keys are drawn from getrandom(2) and mapped to base62 by rejection
 * sampling: a byte is used only when it is below 248 = 4 * 62, so every
 * character is equally likely and 43 of them carry 43 * log2(62) = 256.03
 * bits.  Buffers that held key material are wiped with explicit_bzero. */
#include "keys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static const char BASE62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void keys_sha256(const void *data, size_t len, uint8_t out[32])
{
    static const uint8_t nothing[1];
    unsigned int n = 0;

    /* EVP_Digest fails only when it cannot allocate its context; a key
     * check that carried on with an unset hash could match anything. */
    if (EVP_Digest(len > 0 ? data : nothing, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        abort();
}

void keys_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int keys_unhex(const char *hex, uint8_t *out, size_t n)
{
    if (hex == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        /* A NUL fails hex_digit, so a short string is never read past. */
        if ((hi = hex_digit(hex[2 * i])) < 0 || (lo = hex_digit(hex[2 * i + 1])) < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * n] == '\0' ? 0 : -1;
}

int keys_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* Fills buf completely from getrandom, retrying interrupted calls. */
static int fill_random(uint8_t *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int keys_generate(char *out, size_t cap)
{
    uint8_t r[64];
    size_t n = 0;
    int rc = -1;

    if (out == NULL || cap < KEYS_GENERATED_LEN + 1)
        goto done;
    memcpy(out, "orp-", 4);
    while (n < 43) {
        if (fill_random(r, sizeof r) < 0)
            goto done;
        for (size_t i = 0; i < sizeof r && n < 43; i++)
            if (r[i] < 248) /* 248 = 4 * 62: below it, r % 62 is uniform */
                out[4 + n++] = BASE62[r[i] % 62];
    }
    out[KEYS_GENERATED_LEN] = '\0';
    rc = 0;
done:
    explicit_bzero(r, sizeof r);
    if (rc < 0 && out != NULL && cap > 0)
        explicit_bzero(out, cap < KEYS_GENERATED_LEN + 1 ? cap : KEYS_GENERATED_LEN + 1);
    return rc;
}

int keys_bearer(const char *authorization_header, const char **token, size_t *len)
{
    static const char scheme[] = "bearer";
    const char *p = authorization_header;
    size_t n = 0, end;

    if (p == NULL)
        return -1;
    for (size_t i = 0; i < sizeof scheme - 1; i++, p++)
        if (*p == '\0' || (*p | 0x20) != scheme[i]) /* | 0x20 folds ASCII letters to lower case */
            return -1;
    if (*p != ' ')
        return -1;
    while (*p == ' ')
        p++;
    while (p[n] > 0x20 && p[n] < 0x7f) /* visible ASCII */
        n++;
    end = n;
    while (p[end] == ' ' || p[end] == '\t')
        end++;
    if (n == 0 || p[end] != '\0')
        return -1;
    *token = p;
    *len = n;
    return 0;
}
