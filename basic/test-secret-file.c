/* SPDX-License-Identifier: MIT */
/* Unit tests of basic/secret-file.h: the ownership/mode rule, the size bound, what is not a regular file. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "basic/secret-file.h"

struct fixture {
        char dir[64];
        char path[128];
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/basic-secret-XXXXXX");
        if (!mkdtemp(f->dir)) {
                free(f);
                return -1;
        }
        snprintf(f->path, sizeof(f->path), "%s/secret", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char fifo[160];

        snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
        (void)unlink(fifo);
        (void)unlink(f->path);
        (void)rmdir(f->dir);
        free(f);
        return 0;
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static void test_rule(void **state) {
        struct fixture *f = *state;
        char *s = NULL;
        size_t n = 0;

        write_file(f->path, "1234\n", 5, 0600);
        assert_int_equal(secret_file_read(f->path, 64, &s, &n), 0);
        assert_int_equal(n, 5);
        assert_string_equal(s, "1234\n");
        erase_and_free(s, n);

        write_file(f->path, "1234\n", 5, 0400);         /* stricter is fine */
        assert_int_equal(secret_file_read(f->path, 64, &s, &n), 0);
        erase_and_free(s, n);

        /* Any group/other bit, read, write or execute, is refused. */
        static const mode_t bad[] = { 0640, 0620, 0610, 0604, 0602, 0601, 0644, 0666, 0700 | 0070 };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                s = (char *)0x1;
                n = 77;
                assert_int_equal(chmod(f->path, bad[i]), 0);
                assert_int_equal(secret_file_read(f->path, 64, &s, &n), -EPERM);
                assert_ptr_equal(s, (char *)0x1);       /* untouched on failure */
                assert_int_equal(n, 77);
        }
}

static void test_owner(void **state) {
        struct fixture *f = *state;
        char *s = NULL;
        size_t n;

        write_file(f->path, "k", 1, 0600);
        if (geteuid() != 0) {
                print_message("# not root: the owner check is not exercised\n");
                skip();
        }
        /* Root can give the file away: then it is not ours. */
        assert_int_equal(chown(f->path, 65534, 65534), 0);
        assert_int_equal(secret_file_read(f->path, 64, &s, &n), -EPERM);
        assert_int_equal(chown(f->path, 0, 0), 0);
        assert_int_equal(secret_file_read(f->path, 64, &s, &n), 0);
        erase_and_free(s, n);
}

static void test_bounds(void **state) {
        struct fixture *f = *state;
        char *s = NULL;
        size_t n = 0;

        write_file(f->path, "", 0, 0600);               /* empty: an empty string */
        assert_int_equal(secret_file_read(f->path, 8, &s, &n), 0);
        assert_int_equal(n, 0);
        assert_string_equal(s, "");
        erase_and_free(s, n);

        write_file(f->path, "12345678", 8, 0600);       /* exactly the maximum */
        assert_int_equal(secret_file_read(f->path, 8, &s, &n), 0);
        assert_int_equal(n, 8);
        assert_string_equal(s, "12345678");
        erase_and_free(s, n);

        write_file(f->path, "123456789", 9, 0600);      /* one byte past it */
        assert_int_equal(secret_file_read(f->path, 8, &s, &n), -EFBIG);
        assert_int_equal(secret_file_read(f->path, 0, &s, &n), -EFBIG);
        assert_int_equal(secret_file_read(f->path, SIZE_MAX, &s, &n), -EFBIG);

        /* An embedded NUL is kept: the length says where the data ends. */
        write_file(f->path, "a\0b", 3, 0600);
        assert_int_equal(secret_file_read(f->path, 8, &s, &n), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(s, "a\0b", 4);
        erase_and_free(s, n);
}

static void test_not_regular(void **state) {
        struct fixture *f = *state;
        char fifo[160], *s = NULL;
        size_t n;

        assert_int_equal(secret_file_read(f->dir, 8, &s, &n), -EBADFD);       /* a directory */
        snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        /* Opened without blocking, then refused. */
        assert_int_equal(secret_file_read(fifo, 8, &s, &n), -EBADFD);
        assert_int_equal(secret_file_read("/dev/null", 8, &s, &n), -EBADFD);
        assert_int_equal(secret_file_read("/nonexistent/secret", 8, &s, &n), -ENOENT);
        assert_int_equal(secret_fd_check(-1), -EBADF);
}

static void test_fd(void **state) {
        struct fixture *f = *state;
        _cleanup_close_ int fd = -EBADF;
        char *s = NULL;
        size_t n;

        write_file(f->path, "pin", 3, 0600);
        fd = open(f->path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(secret_fd_check(fd), 0);
        assert_int_equal(secret_fd_read(fd, 16, &s, &n), 0);
        assert_string_equal(s, "pin");
        erase_and_free(s, n);
        /* The mode is looked at on the open file, when reading. */
        assert_int_equal(fchmod(fd, 0644), 0);
        assert_int_equal(secret_fd_check(fd), -EPERM);
        assert_int_equal(secret_fd_read(fd, 16, &s, &n), -EPERM);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_rule, setup, teardown),
                cmocka_unit_test_setup_teardown(test_owner, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_regular, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fd, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
