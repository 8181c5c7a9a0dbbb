/* check_main.h - the shared main() of every unit test program: runs one
 * suite without forking (so AddressSanitizer sees the whole run) and exits
 * non-zero when any test failed. */
#ifndef ORP_CHECK_MAIN_H
#define ORP_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

#define CHECK_MAIN(suite_fn)                                   \
    int main(void)                                             \
    {                                                          \
        SRunner *sr = srunner_create(suite_fn());              \
        int failed;                                            \
        srunner_set_fork_status(sr, CK_NOFORK);                \
        srunner_run_all(sr, CK_NORMAL);                        \
        failed = srunner_ntests_failed(sr);                    \
        srunner_free(sr);                                      \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;      \
    }

#endif
