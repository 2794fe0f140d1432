/* SPDX-License-Identifier: MIT */
/* Unit tests of basic/cleanup.h and basic/macro.h: cleanups run at scope exit, TAKE_* hand over. */

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "basic/cleanup.h"

static int freed;

static void count_free(int *p) {
        freed++;
        free(p);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(int *, count_free)
/* The semicolon form compiles too (certs-hsm and daemon use it). */
static void count_free2(char *p) {
        freed += 10;
        free(p);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, count_free2);

static bool fd_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

static void test_trivial_cleanup(void **state) {
        freed = 0;
        {
                _cleanup_(count_freep) int *p = malloc(sizeof(int));
                assert_non_null(p);
        }
        assert_int_equal(freed, 1);
        {
                /* NULL: the cleanup does not call the function. */
                _cleanup_(count_freep) int *p = NULL;
                (void)p;
        }
        assert_int_equal(freed, 1);
        {
                _cleanup_(count_free2p) char *p = strdup("x");
                assert_non_null(p);
        }
        assert_int_equal(freed, 11);
}

static int *give(void) {
        _cleanup_(count_freep) int *p = malloc(sizeof(int));
        if (!p)
                return NULL;
        *p = 42;
        return TAKE_PTR(p);
}

static void test_take_ptr(void **state) {
        freed = 0;
        int *p = give();
        assert_non_null(p);
        assert_int_equal(*p, 42);
        assert_int_equal(freed, 0);     /* handed over, not freed */
        count_free(p);
        assert_int_equal(freed, 1);
}

static void test_close(void **state) {
        int kept, fd2;
        {
                _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                kept = fd;
                assert_true(fd_open(kept));
        }
        assert_false(fd_open(kept));
        {
                _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                fd2 = TAKE_FD(fd);
                assert_int_equal(fd, -EBADF);
        }
        assert_true(fd_open(fd2));
        /* safe_close() returns -EBADF and keeps errno, negative fds are no-ops. */
        errno = EILSEQ;
        assert_int_equal(safe_close(fd2), -EBADF);
        assert_int_equal(errno, EILSEQ);
        assert_false(fd_open(fd2));
        assert_int_equal(safe_close(-EBADF), -EBADF);
        assert_int_equal(safe_close(-1), -EBADF);
        {
                _cleanup_close_ int fd = -EBADF;
                (void)fd;
        }
}

static void test_fclose_free(void **state) {
        int fd;
        {
                _cleanup_fclose_ FILE *f = fopen("/dev/null", "re");
                assert_non_null(f);
                fd = fileno(f);
                assert_true(fd_open(fd));
        }
        assert_false(fd_open(fd));
        {
                _cleanup_fclose_ FILE *f = NULL;
                _cleanup_free_ char *s = NULL;
                (void)f;
                (void)s;
        }
        {
                _cleanup_free_ char *s = strdup("freed at scope exit (LeakSanitizer checks)");
                assert_non_null(s);
        }
}

static void test_erase(void **state) {
        assert_null(erase_and_free(NULL, 10));
        char *p = strdup("secret");
        assert_non_null(p);
        assert_null(erase_and_free(p, strlen(p)));
        {
                _cleanup_erase_free_ char *pin = strdup("1234");
                assert_non_null(pin);
        }
        {
                _cleanup_erase_free_ char *pin = NULL;
                (void)pin;
        }
}

static void test_macros(void **state) {
        struct outer {
                int a;
                long b;
        } o;
        int arr[7];

        assert_ptr_equal(container_of(&o.b, struct outer, b), &o);
        assert_int_equal(ELEMENTSOF(arr), 7);
        assert_int_equal(MIN(-1, 2), -1);
        assert_int_equal(MAX(-1, 2), 2);
        assert_true(_likely_(1));
        assert_false(_unlikely_(0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_trivial_cleanup),
                cmocka_unit_test(test_take_ptr),
                cmocka_unit_test(test_close),
                cmocka_unit_test(test_fclose_free),
                cmocka_unit_test(test_erase),
                cmocka_unit_test(test_macros),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
