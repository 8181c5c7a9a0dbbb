/* keys.c - client keys.  See keys.h.
 *
 * orproxy needs exactly one hash, so SHA-256 is written out here from FIPS
 * 180-4 rather than pulling in a crypto library: one compression function
 * over 64-byte blocks, and a final one or two blocks holding the tail, the
 * 0x80 terminator and the bit length.  The configuration keeps only key
 * hashes; a presented key is hashed and compared against every stored hash
 * with keys_ct_equal, which ORs together the XOR of every byte pair instead
 * of stopping at the first difference, so the time taken tells an attacker
 * nothing about how many leading bytes they guessed right (comparing hashes
 * rather than keys already blurs that; the constant time removes it).
 * Keys are drawn from getrandom(2) and mapped to base62 by rejection
 * sampling: a byte is used only when it is below 248 = 4 * 62, so every
 * character is equally likely and 43 of them carry 43 * log2(62) = 256.03
 * bits.  Buffers that held key material are wiped with explicit_bzero. */
#include "keys.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const char BASE62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* One application of the compression function (FIPS 180-4 6.2.2). */
static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
    explicit_bzero(w, sizeof w);
}

void keys_sha256(const void *data, size_t len, uint8_t out[32])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    uint8_t tail[128];
    size_t full = len / 64 * 64, rest = len - full, tail_len;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t i = 0; i < full; i += 64)
        sha256_block(h, p + i);
    /* Padding: 0x80, zeros, then the 64-bit big-endian bit length, in one
     * block when the tail leaves room for 9 more bytes, else in two. */
    memset(tail, 0, sizeof tail);
    if (rest > 0)
        memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    tail_len = rest + 9 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; i++)
        tail[tail_len - 1 - (size_t)i] = (uint8_t)(bits >> (8 * i));
    sha256_block(h, tail);
    if (tail_len == 128)
        sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
    explicit_bzero(tail, sizeof tail);
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
    /* volatile keeps the compiler from turning the loop back into an early
     * exit (or a memcmp call); the result is derived without a branch on
     * the data: d - 1 underflows into bit 8 only when d == 0. */
    const volatile uint8_t *x = a, *y = b;
    unsigned d = 0;

    for (size_t i = 0; i < n; i++)
        d |= (unsigned)(x[i] ^ y[i]);
    return (int)(((d - 1u) >> 8) & 1u);
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

int keys_find(const struct keys_entry *e, size_t n, const char *token, size_t len)
{
    uint8_t h[32];
    unsigned matched = 0, result = 0;

    keys_sha256(token, len, h);
    /* No branch depends on a comparison: masks keep the first match. */
    for (size_t i = 0; i < n; i++) {
        unsigned eq = 0u - (unsigned)keys_ct_equal(h, e[i].sha256, sizeof h);
        unsigned take = eq & ~matched;
        result = (result & ~take) | ((unsigned)e[i].client & take);
        matched |= eq;
    }
    explicit_bzero(h, sizeof h);
    return matched ? (int)result : -1;
}
