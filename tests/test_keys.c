/* Unit tests for keys.c: SHA-256 (libcrypto's, through keys_sha256) against
 * the FIPS 180-2 / NIST vectors and the padding edges, hex, constant-time
 * comparison, key generation and the Authorization header. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "keys.h"

static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void sha_hex(const void *d, size_t n, char out[65])
{
    uint8_t h[32];
    keys_sha256(d, n, h);
    keys_hex(h, 32, out);
}

START_TEST(test_keys_sha256_of_empty_message)
{
    char out[65];
    sha_hex(NULL, 0, out);
    ck_assert_str_eq(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("", 0, out);
    ck_assert_str_eq(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(test_keys_sha256_of_abc)
{
    char out[65];
    sha_hex("abc", 3, out);
    ck_assert_str_eq(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(test_keys_sha256_of_448_bit_message_pads_into_a_second_block)
{
    static const char m[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char out[65];
    ck_assert_uint_eq(strlen(m), 56);
    sha_hex(m, 56, out);
    ck_assert_str_eq(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

START_TEST(test_keys_sha256_of_896_bit_message)
{
    static const char m[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                            "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    char out[65];
    ck_assert_uint_eq(strlen(m), 112);
    sha_hex(m, 112, out);
    ck_assert_str_eq(out, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

START_TEST(test_keys_sha256_of_one_million_a)
{
    char out[65], *m = malloc(1000000);
    ck_assert_ptr_nonnull(m);
    memset(m, 'a', 1000000);
    sha_hex(m, 1000000, out);
    free(m);
    ck_assert_str_eq(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_keys_sha256_of_exactly_one_block)
{
    /* 64 bytes: the padding needs a whole block of its own */
    static const char m[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char out[65];
    sha_hex(m, 64, out);
    /* reference: printf '0123456789abcdef%.0s' 1 2 3 4 | sha256sum */
    ck_assert_str_eq(out, "a8ae6e6ee929abea3afcfc5258c8ccd6f85273e0d4626d26c7279f3250f77c8e");
}
END_TEST

START_TEST(test_keys_sha256_at_every_padding_edge)
{
    /* bytes (7i + 3) mod 256 of lengths either side of the one/two block
     * padding edge (55/56) and the block edges; reference: Python hashlib */
    static const struct {
        size_t len;
        const char *hex;
    } v[] = {
        {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
        {127, "a8d23e75d936f303d248888d9b165ee543f4cbafcad3c9dd2a79bd84faa11d07"},
        {128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"},
        {129, "307f8fc2c1622b92762e818d39a185d4d667ad49a4b07ceae1f4afa008a93ec4"},
    };
    uint8_t m[129];
    char out[65];
    for (size_t i = 0; i < sizeof m; i++)
        m[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha_hex(m, v[i].len, out);
        ck_assert_msg(strcmp(out, v[i].hex) == 0, "length %zu: %s", v[i].len, out);
    }
}
END_TEST

START_TEST(test_keys_hex_is_lower_case)
{
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff};
    char hex[9];
    keys_hex(in, 4, hex);
    ck_assert_str_eq(hex, "00ab7fff");
}
END_TEST

START_TEST(test_keys_unhex_round_trips_either_case)
{
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    ck_assert_int_eq(keys_unhex("00AB7fff", out, 4), 0);
    ck_assert_mem_eq(in, out, 4);
    ck_assert_int_eq(keys_unhex("", out, 0), 0);
}
END_TEST

START_TEST(test_keys_unhex_rejects_wrong_length_and_non_hex)
{
    uint8_t out[4];
    ck_assert_int_eq(keys_unhex("00ab7ff", out, 4), -1);   /* short */
    ck_assert_int_eq(keys_unhex("00ab7fffa", out, 4), -1); /* long */
    ck_assert_int_eq(keys_unhex("00ab7ffg", out, 4), -1);
    ck_assert_int_eq(keys_unhex("00ab 7ff", out, 4), -1);
    ck_assert_int_eq(keys_unhex("0x00ab7f", out, 4), -1);
    ck_assert_int_eq(keys_unhex("", out, 4), -1);
    ck_assert_int_eq(keys_unhex(NULL, out, 4), -1);
}
END_TEST

START_TEST(test_keys_ct_equal_reports_equal_and_different_bytes)
{
    ck_assert_int_eq(keys_ct_equal("abcd", "abcd", 4), 1);
    ck_assert_int_eq(keys_ct_equal("abcd", "abce", 4), 0); /* last byte */
    ck_assert_int_eq(keys_ct_equal("xbcd", "abcd", 4), 0); /* first byte */
    ck_assert_int_eq(keys_ct_equal("\x80", "\x00", 1), 0); /* high bit only */
    ck_assert_int_eq(keys_ct_equal("\xff", "\xfe", 1), 0); /* low bit only */
    ck_assert_int_eq(keys_ct_equal("a", "b", 0), 1);       /* nothing to compare */
}
END_TEST

START_TEST(test_keys_generate_has_prefix_length_and_base62_charset)
{
    char k[64];
    ck_assert_int_eq(keys_generate(k, sizeof k), 0);
    ck_assert_uint_eq(strlen(k), KEYS_GENERATED_LEN);
    ck_assert_int_eq(strncmp(k, "orp-", 4), 0);
    ck_assert_uint_eq(strspn(k + 4, B62), 43);
}
END_TEST

START_TEST(test_keys_generate_fits_exactly_and_refuses_a_small_buffer)
{
    char k[KEYS_GENERATED_LEN + 1], small[KEYS_GENERATED_LEN] = "junk";
    ck_assert_int_eq(keys_generate(k, sizeof k), 0);
    ck_assert_int_eq(keys_generate(small, sizeof small), -1);
    ck_assert_str_eq(small, "");
    ck_assert_int_eq(keys_generate(NULL, 0), -1);
}
END_TEST

START_TEST(test_keys_generate_two_calls_differ)
{
    char a[48], b[48];
    ck_assert_int_eq(keys_generate(a, sizeof a), 0);
    ck_assert_int_eq(keys_generate(b, sizeof b), 0);
    ck_assert_str_ne(a, b);
}
END_TEST

static int cmp_key(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(test_keys_generate_1000_keys_all_distinct)
{
    enum { N = 1000 };
    static char keys[N][48];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(keys_generate(keys[i], sizeof keys[i]), 0);
    qsort(keys, N, sizeof keys[0], cmp_key);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(keys[i - 1], keys[i]);
}
END_TEST

START_TEST(test_keys_generate_base62_characters_are_uniform)
{
    /* 2000 keys = 86000 characters: each of the 62 is expected 1387 times,
     * sigma ~37.  Every count must be within 6 sigma (a false failure is
     * about 1 in 10^7 runs); a modulo bias such as accepting bytes below
     * 255 instead of 248 puts 7 characters at ~1686 and fails. */
    enum { KEYS = 2000 };
    const double expect = KEYS * 43 / 62.0, tol = 6 * 37.2;
    int seen[256] = {0};
    for (int i = 0; i < KEYS; i++) {
        char k[48];
        ck_assert_int_eq(keys_generate(k, sizeof k), 0);
        for (int j = 4; j < KEYS_GENERATED_LEN; j++)
            seen[(unsigned char)k[j]]++;
    }
    for (const char *c = B62; *c; c++) {
        int got = seen[(unsigned char)*c];
        ck_assert_msg(got > expect - tol && got < expect + tol, "'%c' seen %d times", *c, got);
    }
}
END_TEST

START_TEST(test_keys_bearer_returns_the_token)
{
    const char *t = NULL;
    size_t n = 0;
    static const char h[] = "Bearer orp-abc";
    ck_assert_int_eq(keys_bearer(h, &t, &n), 0);
    ck_assert_ptr_eq(t, h + 7);
    ck_assert_uint_eq(n, 7);
}
END_TEST

START_TEST(test_keys_bearer_scheme_is_case_insensitive_with_several_spaces)
{
    const char *t;
    size_t n;
    ck_assert_int_eq(keys_bearer("bearer  tok", &t, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(strncmp(t, "tok", 3), 0);
    ck_assert_int_eq(keys_bearer("BEARER tok", &t, &n), 0);
    ck_assert_int_eq(keys_bearer("bEaReR     tok \t", &t, &n), 0); /* trailing OWS */
    ck_assert_uint_eq(n, 3);
}
END_TEST

START_TEST(test_keys_bearer_rejects_missing_header)
{
    const char *t;
    size_t n;
    ck_assert_int_eq(keys_bearer(NULL, &t, &n), -1);
    ck_assert_int_eq(keys_bearer("", &t, &n), -1);
}
END_TEST

START_TEST(test_keys_bearer_rejects_other_schemes)
{
    const char *t;
    size_t n;
    ck_assert_int_eq(keys_bearer("Basic x", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearerx tok", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearertok", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Beare tok", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer\ttok", &t, &n), -1);
}
END_TEST

START_TEST(test_keys_bearer_rejects_empty_token)
{
    const char *t;
    size_t n;
    ck_assert_int_eq(keys_bearer("Bearer", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer ", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer    ", &t, &n), -1);
}
END_TEST

START_TEST(test_keys_bearer_rejects_tokens_with_spaces_or_controls)
{
    const char *t;
    size_t n;
    ck_assert_int_eq(keys_bearer("Bearer a b", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer a\tb", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer a\x01", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer a\xc3\xa9", &t, &n), -1);
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *sha = tcase_create("sha256"), *hex = tcase_create("hex"),
          *gen = tcase_create("generate"), *auth = tcase_create("bearer");

    tcase_add_test(sha, test_keys_sha256_of_empty_message);
    tcase_add_test(sha, test_keys_sha256_of_abc);
    tcase_add_test(sha, test_keys_sha256_of_448_bit_message_pads_into_a_second_block);
    tcase_add_test(sha, test_keys_sha256_of_896_bit_message);
    tcase_add_test(sha, test_keys_sha256_of_one_million_a);
    tcase_add_test(sha, test_keys_sha256_of_exactly_one_block);
    tcase_add_test(sha, test_keys_sha256_at_every_padding_edge);
    tcase_add_test(hex, test_keys_hex_is_lower_case);
    tcase_add_test(hex, test_keys_unhex_round_trips_either_case);
    tcase_add_test(hex, test_keys_unhex_rejects_wrong_length_and_non_hex);
    tcase_add_test(hex, test_keys_ct_equal_reports_equal_and_different_bytes);
    tcase_add_test(gen, test_keys_generate_has_prefix_length_and_base62_charset);
    tcase_add_test(gen, test_keys_generate_fits_exactly_and_refuses_a_small_buffer);
    tcase_add_test(gen, test_keys_generate_two_calls_differ);
    tcase_add_test(gen, test_keys_generate_1000_keys_all_distinct);
    tcase_add_test(gen, test_keys_generate_base62_characters_are_uniform);
    tcase_add_test(auth, test_keys_bearer_returns_the_token);
    tcase_add_test(auth, test_keys_bearer_scheme_is_case_insensitive_with_several_spaces);
    tcase_add_test(auth, test_keys_bearer_rejects_missing_header);
    tcase_add_test(auth, test_keys_bearer_rejects_other_schemes);
    tcase_add_test(auth, test_keys_bearer_rejects_empty_token);
    tcase_add_test(auth, test_keys_bearer_rejects_tokens_with_spaces_or_controls);
    suite_add_tcase(s, sha);
    suite_add_tcase(s, hex);
    suite_add_tcase(s, gen);
    suite_add_tcase(s, auth);
    return s;
}

CHECK_MAIN(keys_suite)
