/* test_managed_parse.c - the pure body checks of the admin API's client
 * writes (managed_parse_change, managed_parse_grace): what a body sets,
 * and the 400 a bad one gets (fuzz_managed covers arbitrary bodies). */
#include <check.h>
#include <cjson/cJSON.h>
#include <string.h>

#include "check_main.h"
#include "managed_int.h"

static int grace(const char *text, int64_t *g, struct managed_result *res)
{
    cJSON *body = text ? cJSON_Parse(text) : NULL;
    int rc;
    memset(res, 0, sizeof *res);
    *g = -1;
    rc = managed_parse_grace(body, g, res);
    cJSON_Delete(body);
    return rc;
}

/* The second row was found by fuzz_managed: the last of two grace_s won,
 * where a create or a patch refuses a field given twice. */
START_TEST(grace_bodies)
{
    static const struct {
        const char *body;
        int64_t grace;     /* -1: refused */
        const char *code, *msg;
    } cases[] = {
        {"{\"grace_s\":3600}", 3600, NULL, NULL},
        {"{\"grace_s\":1,\"grace_s\":2592000}", -1, "duplicate_field", "field 'grace_s' is given twice"},
        {"{\"grace_s\":2592001}", -1, "invalid_field", "grace_s must be an integer between 0 and 2592000"},
        {"{\"grace\":1}", -1, "unknown_field", "unknown field 'grace'"},
        {NULL, 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct managed_result res;
        int64_t g;
        int rc = grace(cases[i].body, &g, &res);
        ck_assert_int_eq(rc, cases[i].grace < 0 ? -1 : 0);
        if (rc == 0) {
            ck_assert_int_eq(g, cases[i].grace);
            ck_assert_uint_eq(res.status, 0);
        } else {
            ck_assert_uint_eq(res.status, 400);
            ck_assert_str_eq(res.code, cases[i].code);
            ck_assert_str_eq(res.msg, cases[i].msg);
        }
    }
}
END_TEST

START_TEST(create_sets_columns)
{
    cJSON *body = cJSON_Parse("{\"name\":\"al.ice_1-x\",\"rpm\":60,\"budget_usd_day\":\"12.5\","
                              "\"expires_at\":null,\"admin\":true}");
    struct managed_change e;
    struct managed_result res;

    memset(&e, 0, sizeof e);
    memset(&res, 0, sizeof res);
    ck_assert_int_eq(managed_parse_change(body, 1, &e, &res), 0);
    ck_assert_str_eq(e.name, "al.ice_1-x");
    ck_assert_int_eq(e.n, 4);
    ck_assert_str_eq(e.v[0].name, "rpm");
    ck_assert_int_eq(e.v[0].i, 60);
    ck_assert_str_eq(e.v[1].name, "budget_day_pusd");
    ck_assert_int_eq(e.v[1].i, 12500000000000LL);
    ck_assert_str_eq(e.v[2].name, "expires_ms");
    ck_assert_int_eq(e.v[2].kind, 'n');
    ck_assert_str_eq(e.v[3].name, "admin");
    ck_assert_int_eq(e.v[3].i, 1);
    managed_change_free(&e);
    cJSON_Delete(body);
}
END_TEST

START_TEST(patch_refusals)
{
    static const char *const bad[][2] = {
        {"{\"name\":\"x\"}", "unknown_field"},      {"{\"rpm\":-1}", "invalid_field"},
        {"{\"budget_usd_day\":0}", "invalid_field"}, {"{\"admin\":1,\"admin\":0}", "invalid_field"},
        {"{\"tpm\":1,\"tpm\":2}", "duplicate_field"}, {"[]", "invalid_body"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *body = cJSON_Parse(bad[i][0]);
        struct managed_change e;
        struct managed_result res;
        memset(&e, 0, sizeof e);
        memset(&res, 0, sizeof res);
        ck_assert_int_eq(managed_parse_change(body, 0, &e, &res), -1);
        ck_assert_uint_eq(res.status, 400);
        ck_assert_msg(strcmp(res.code, bad[i][1]) == 0, "%s: %s", bad[i][0], res.code);
        ck_assert(res.msg[0] != '\0');
        managed_change_free(&e);
        cJSON_Delete(body);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("managed_parse");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, grace_bodies);
    tcase_add_test(tc, create_sets_columns);
    tcase_add_test(tc, patch_refusals);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
