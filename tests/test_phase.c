/* Unit tests for request.c: the lives a request really has are allowed by
 * the phase table (a move it does not allow asserts, so a run of these
 * lives that ends is the test). */
#include <check.h>
#include <string.h>

#include "check_main.h"
#include "request.h"

static void live(const enum phase *moves, size_t n)
{
    struct request r;

    memset(&r, 0, sizeof r); /* calloc'ed in front.c: RECEIVING */
    ck_assert_int_eq(r.phase, PHASE_RECEIVING);
    for (size_t i = 0; i < n; i++) {
        request_phase(&r, moves[i]);
        ck_assert_int_eq(r.phase, moves[i]);
    }
    ck_assert_int_eq(r.phase, PHASE_FINISHED);
}

#define LIVE(...)                                                   \
    do {                                                            \
        static const enum phase m[] = {__VA_ARGS__};                \
        live(m, sizeof m / sizeof m[0]);                            \
    } while (0)

START_TEST(test_phase_lives)
{
    LIVE(PHASE_WAITING, PHASE_READY, PHASE_RESPONDING, PHASE_FINISHED); /* answered */
    LIVE(PHASE_RESPONDING, PHASE_FINISHED);                  /* refused from the head */
    LIVE(PHASE_FINISHED);                                    /* hung up during the upload */
    LIVE(PHASE_READY, PHASE_RESPONDING, PHASE_FINISHED);     /* upstream_start failed */
    LIVE(PHASE_WAITING, PHASE_AWAITED, PHASE_FINISHED);      /* hung up, kept for the bill */
    LIVE(PHASE_WAITING, PHASE_GONE, PHASE_FINISHED);         /* hung up, transfer dropped */
    LIVE(PHASE_WAITING, PHASE_READY, PHASE_GONE, PHASE_FINISHED);
    LIVE(PHASE_WAITING, PHASE_FINISHED);                     /* MHD saw the hang-up first */
}
END_TEST

START_TEST(test_phase_names)
{
    ck_assert_str_eq(request_phase_name(PHASE_RECEIVING), "receiving");
    ck_assert_str_eq(request_phase_name(PHASE_AWAITED), "awaited");
    ck_assert_str_eq(request_phase_name(PHASE_FINISHED), "finished");
    ck_assert_str_eq(request_phase_name((enum phase)99), "?");
}
END_TEST

static Suite *phase_suite(void)
{
    Suite *s = suite_create("phase");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_phase_lives);
    tcase_add_test(tc, test_phase_names);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(phase_suite)
