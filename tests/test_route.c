/* Unit tests for route.c: which paths are served, under which prefixes. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "route.h"

START_TEST(test_route_chat_under_v1_and_api_v1)
{
    const struct route *r;
    ck_assert_int_eq(route_match("/v1/chat/completions", "POST", &r), ROUTE_OK);
    ck_assert_str_eq(r->tail, "/chat/completions");
    ck_assert_int_eq(r->json_body, 1);
    ck_assert_int_eq(route_match("/api/v1/chat/completions", "POST", &r), ROUTE_OK);
    ck_assert_str_eq(r->tail, "/chat/completions");
}
END_TEST

START_TEST(test_route_every_api_path)
{
    static const char *post[] = {"/completions", "/embeddings", "/responses", "/messages", "/rerank"};
    static const char *get[] = {"/models", "/providers", "/generation"};
    const struct route *r;
    char url[64];
    for (size_t i = 0; i < sizeof post / sizeof post[0]; i++) {
        snprintf(url, sizeof url, "/v1%s", post[i]);
        ck_assert_int_eq(route_match(url, "POST", &r), ROUTE_OK);
        ck_assert_str_eq(r->tail, post[i]);
    }
    for (size_t i = 0; i < sizeof get / sizeof get[0]; i++) {
        snprintf(url, sizeof url, "/api/v1%s", get[i]);
        ck_assert_int_eq(route_match(url, "GET", &r), ROUTE_OK);
        ck_assert_str_eq(r->tail, get[i]);
        ck_assert_int_eq(r->json_body, 0);
    }
}
END_TEST

START_TEST(test_route_wrong_method_names_allowed_one)
{
    const struct route *r;
    ck_assert_int_eq(route_match("/v1/chat/completions", "GET", &r), ROUTE_BAD_METHOD);
    ck_assert_str_eq(r->method, "POST");
    ck_assert_int_eq(route_match("/v1/models", "POST", &r), ROUTE_BAD_METHOD);
    ck_assert_str_eq(r->method, "GET");
}
END_TEST

START_TEST(test_route_head_is_get)
{
    const struct route *r;
    ck_assert_int_eq(route_match("/v1/models", "HEAD", &r), ROUTE_OK);
    ck_assert_int_eq(route_match("/healthz", "HEAD", &r), ROUTE_OK);
}
END_TEST

START_TEST(test_route_unknown_paths_not_found)
{
    static const char *bad[] = {"/", "/v1", "/v1/", "/v2/chat/completions", "/v1/chat/completions/",
                                "/v1/chat", "/v1/../v1/models", "/api/v1/nope", "/chat/completions",
                                "/v1/models/extra", "/healthz/"};
    const struct route *r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(route_match(bad[i], "POST", &r) == ROUTE_NOT_FOUND, "%s", bad[i]);
        ck_assert_ptr_null(r);
    }
}
END_TEST

START_TEST(test_route_healthz_is_local)
{
    const struct route *r;
    ck_assert_int_eq(route_match("/healthz", "GET", &r), ROUTE_OK);
    ck_assert_int_eq(r->kind, ROUTE_HEALTHZ);
    ck_assert_int_eq(route_match("/v1/healthz", "GET", &r), ROUTE_NOT_FOUND);
}
END_TEST

START_TEST(test_route_admin_prefix_takes_any_method)
{
    const struct route *r;
    ck_assert_int_eq(route_match("/admin/v1/clients", "GET", &r), ROUTE_OK);
    ck_assert_int_eq(r->kind, ROUTE_ADMIN);
    ck_assert_int_eq(route_match("/admin/v1/clients/bob", "DELETE", &r), ROUTE_OK);
    ck_assert_int_eq(r->kind, ROUTE_ADMIN);
    ck_assert_int_eq(route_match("/admin/v1/clients/bob", "PATCH", &r), ROUTE_OK);
    ck_assert_int_eq(route_match("/admin/v2/clients", "GET", &r), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/admin/v1", "GET", &r), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/admin/v1/clients", "GET", &r), ROUTE_NOT_FOUND);
}
END_TEST

static Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_route_chat_under_v1_and_api_v1);
    tcase_add_test(tc, test_route_every_api_path);
    tcase_add_test(tc, test_route_wrong_method_names_allowed_one);
    tcase_add_test(tc, test_route_head_is_get);
    tcase_add_test(tc, test_route_unknown_paths_not_found);
    tcase_add_test(tc, test_route_healthz_is_local);
    tcase_add_test(tc, test_route_admin_prefix_takes_any_method);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(route_suite)
