/* Unit tests for keys.c: SHA-256 vectors, hex, constant-time compare, key
 * generation and the Authorization header. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "keys.h"

static void hex_of(const void *d, size_t n, char out[65])
{
    uint8_t h[32];
    keys_sha256(d, n, h);
    keys_hex(h, 32, out);
}

START_TEST(test_keys_sha256_vectors)
{
    char out[65];
    static char million[1000000];
    hex_of("", 0, out);
    ck_assert_str_eq(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, out);
    ck_assert_str_eq(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out);
    ck_assert_str_eq(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    memset(million, 'a', sizeof million);
    hex_of(million, sizeof million, out);
    ck_assert_str_eq(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_keys_sha256_every_tail_length)
{
    /* lengths around the 55/56/64-byte padding edges agree with a
     * two-call reference: hash(x) for x of length 0..130 never crashes and
     * differs from its neighbours. */
    char buf[131], a[65], b[65];
    memset(buf, 'x', sizeof buf);
    for (size_t n = 1; n < sizeof buf; n++) {
        hex_of(buf, n - 1, a);
        hex_of(buf, n, b);
        ck_assert_str_ne(a, b);
    }
}
END_TEST

START_TEST(test_keys_hex_round_trip_and_rejects)
{
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    keys_hex(in, 4, hex);
    ck_assert_str_eq(hex, "00ab7fff");
    ck_assert_int_eq(keys_unhex("00AB7fff", out, 4), 0);
    ck_assert_mem_eq(in, out, 4);
    ck_assert_int_eq(keys_unhex("00ab7ff", out, 4), -1);
    ck_assert_int_eq(keys_unhex("00ab7fffa", out, 4), -1);
    ck_assert_int_eq(keys_unhex("00ab7ffg", out, 4), -1);
    ck_assert_int_eq(keys_unhex(NULL, out, 4), -1);
}
END_TEST

START_TEST(test_keys_ct_equal)
{
    ck_assert_int_eq(keys_ct_equal("abcd", "abcd", 4), 1);
    ck_assert_int_eq(keys_ct_equal("abcd", "abce", 4), 0);
    ck_assert_int_eq(keys_ct_equal("xbcd", "abcd", 4), 0);
    ck_assert_int_eq(keys_ct_equal("", "", 0), 1);
}
END_TEST

START_TEST(test_keys_generate_shape_and_uniqueness)
{
    enum { N = 1000 };
    static char keys[N][64];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(keys_generate(keys[i], sizeof keys[i]), 0);
        ck_assert_uint_eq(strlen(keys[i]), 47);
        ck_assert(strncmp(keys[i], "orp-", 4) == 0);
        ck_assert_uint_eq(strspn(keys[i] + 4, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), 43);
        for (int k = 0; k < i; k++)
            ck_assert_str_ne(keys[i], keys[k]);
    }
    ck_assert_int_eq(keys_generate(keys[0], 10), -1);
}
END_TEST

START_TEST(test_keys_bearer_parsing)
{
    const char *t;
    size_t n;
    ck_assert_int_eq(keys_bearer("Bearer abc", &t, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(strncmp(t, "abc", 3), 0);
    ck_assert_int_eq(keys_bearer("bearer   orp-x", &t, &n), 0);
    ck_assert_uint_eq(n, 5);
    ck_assert_int_eq(keys_bearer(NULL, &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Basic Zm9v", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer ", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearer a b", &t, &n), -1);
    ck_assert_int_eq(keys_bearer("Bearerabc", &t, &n), -1);
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_add_test(tc, test_keys_sha256_vectors);
    tcase_add_test(tc, test_keys_sha256_every_tail_length);
    tcase_add_test(tc, test_keys_hex_round_trip_and_rejects);
    tcase_add_test(tc, test_keys_ct_equal);
    tcase_add_test(tc, test_keys_generate_shape_and_uniqueness);
    tcase_add_test(tc, test_keys_bearer_parsing);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(keys_suite)
