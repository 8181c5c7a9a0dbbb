/* Unit tests for ui.c and its route: the console's files as compiled in
 * (tools/embed.c over ui/), looked up by exact path only. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "route.h"
#include "ui.h"

/* The bytes compiled in are the bytes of the file in the tree. */
static void same_as_tree(const struct ui_file *f)
{
    char path[256], buf[4096];
    FILE *fp;
    size_t n, off = 0;

    snprintf(path, sizeof path, "ui/%s", f->path);
    fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "%s not found (run from the checkout)", path);
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) {
        ck_assert_uint_le(off + n, f->len);
        ck_assert_int_eq(memcmp(f->data + off, buf, n), 0);
        off += n;
    }
    fclose(fp);
    ck_assert_uint_eq(off, f->len);
}

START_TEST(test_ui_files_and_types)
{
    const struct ui_file *f;

    ck_assert_ptr_nonnull(f = ui_find(""));
    ck_assert_str_eq(f->path, "index.html");
    ck_assert_str_eq(f->ctype, "text/html; charset=utf-8");
    same_as_tree(f);
    ck_assert_ptr_nonnull(f = ui_find("app.js"));
    ck_assert_str_eq(f->ctype, "text/javascript; charset=utf-8");
    same_as_tree(f);
    ck_assert_ptr_nonnull(f = ui_find("style.css"));
    ck_assert_str_eq(f->ctype, "text/css; charset=utf-8");
    ck_assert_ptr_nonnull(f = ui_find("vendor/uplot/uPlot.esm.js"));
    same_as_tree(f);
    ck_assert_ptr_nonnull(f = ui_find("vendor/uplot/LICENSE"));
    ck_assert_str_eq(f->ctype, "text/plain; charset=utf-8");
    /* ETags are quoted and differ between files. */
    ck_assert_int_eq(ui_find("app.js")->etag[0], '"');
    ck_assert_str_ne(ui_find("app.js")->etag, ui_find("style.css")->etag);
}
END_TEST

START_TEST(test_ui_exact_paths_only)
{
    ck_assert_ptr_null(ui_find("nope.js"));
    ck_assert_ptr_null(ui_find("../ui/app.js"));
    ck_assert_ptr_null(ui_find("./app.js"));
    ck_assert_ptr_null(ui_find("/app.js"));
    ck_assert_ptr_null(ui_find("APP.JS"));
    ck_assert_ptr_null(ui_find("vendor/uplot/"));
}
END_TEST

START_TEST(test_ui_route_prefix_get_only)
{
    const struct route *r;

    ck_assert_int_eq(route_match("/ui", "GET", &r), ROUTE_OK);
    ck_assert_int_eq(r->kind, ROUTE_UI);
    ck_assert_int_eq(route_match("/ui/", "HEAD", &r), ROUTE_OK);
    ck_assert_int_eq(r->kind, ROUTE_UI);
    ck_assert_int_eq(route_match("/ui/vendor/uplot/uPlot.esm.js", "GET", &r), ROUTE_OK);
    ck_assert_int_eq(r->json_body, 0);
    ck_assert_int_eq(route_match("/ui/", "POST", &r), ROUTE_BAD_METHOD);
    ck_assert_str_eq(r->method, "GET");
    ck_assert_int_eq(route_match("/uix", "GET", &r), ROUTE_NOT_FOUND);
    ck_assert_int_eq(route_match("/v1/ui/", "GET", &r), ROUTE_NOT_FOUND);
}
END_TEST

static Suite *ui_suite(void)
{
    Suite *s = suite_create("ui");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ui_files_and_types);
    tcase_add_test(tc, test_ui_exact_paths_only);
    tcase_add_test(tc, test_ui_route_prefix_get_only);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(ui_suite)
