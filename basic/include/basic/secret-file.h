/* SPDX-License-Identifier: MIT */
/* Reading a secret (key, PIN) file: bounded, and only if it is ours and 0600 or stricter. */
#ifndef BASIC_SECRET_FILE_H
#define BASIC_SECRET_FILE_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/cleanup.h"

/* The rule for a secret file: @fd is a regular file (else -EBADFD), owned by
 * the effective user, without any group/other permission bit (else -EPERM).
 * -errno when fstat() fails. A signer key is the factory's crown jewel and its
 * PIN as good as the key: group/other access of any kind (read, write,
 * execute), or another owner, means someone else may have it. */
static inline int secret_fd_check(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((st.st_mode & 077) || st.st_uid != geteuid())
                return -EPERM;
        return 0;
}

/* Reads the regular file at @fd (from its current offset): at most @max bytes
 * (-EFBIG past them), -EBADFD for anything but a regular file. *@ret is a
 * NUL-terminated copy (free it with erase_and_free(*ret, *ret_len): it may be
 * a secret), *@ret_len its length; both written only on success. Whatever was
 * read is wiped on failure. */
static inline int file_fd_read_bounded(int fd, size_t max, char **ret, size_t *ret_len) {
        struct stat st;
        char *buf;
        size_t len = 0;
        int r;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (max >= SIZE_MAX || (uint64_t)st.st_size > max)
                return -EFBIG;
        /* One byte more than allowed, to tell "exactly max" from "longer"
         * (st_size may be stale), and room for the NUL. */
        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, max + 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        erase_and_free(buf, len);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > max) {
                        erase_and_free(buf, len);
                        return -EFBIG;
                }
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* file_fd_read_bounded() of the file at @path. O_NONBLOCK: a FIFO planted at
 * the path must not hang us before fstat() refuses it. */
static inline int file_read_bounded(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        return file_fd_read_bounded(fd, max, ret, ret_len);
}

/* file_fd_read_bounded() of a secret file, after checking the rule. */
static inline int secret_fd_read(int fd, size_t max, char **ret, size_t *ret_len) {
        int r = secret_fd_check(fd);

        if (r < 0)
                return r;
        return file_fd_read_bounded(fd, max, ret, ret_len);
}

/* secret_fd_read() of the file at @path. O_NONBLOCK: a FIFO planted at the
 * path must not hang us before fstat() refuses it. */
static inline int secret_file_read(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        return secret_fd_read(fd, max, ret, ret_len);
}

#endif
