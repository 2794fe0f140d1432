/* SPDX-License-Identifier: MIT */
/* Scope-bound cleanup (systemd style): _cleanup_free_, _cleanup_close_, ..., and TAKE_PTR/TAKE_FD to hand ownership over. */
#ifndef BASIC_CLEANUP_H
#define BASIC_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/macro.h"

/* Hand ownership over: returns the value and clears the variable, so that its
 * cleanup does nothing. */
#define TAKE_PTR(p) ({ typeof(p) _take_p_ = (p); (p) = NULL; _take_p_; })
#define TAKE_FD(fd) ({ int _take_fd_ = (fd); (fd) = -EBADF; _take_fd_; })

/* funcp(type *p) calls func(*p) unless *p is NULL. Written with or without a
 * trailing semicolon (at file scope an extra ';' is accepted by gcc and clang). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)         \
        static inline void func##p(type *p) {           \
                if (*p)                                 \
                        func(*p);                       \
        }

static inline void freep(void *p) {
        free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes @fd if it is one (>= 0) and returns -EBADF, for `fd = safe_close(fd);`.
 * errno is kept: close() failing must not change the error being reported. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void)close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                (void)fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Wipes @len bytes of @p, then frees it (NULL is fine): for secrets. */
static inline void *erase_and_free(void *p, size_t len) {
        if (p) {
                explicit_bzero(p, len);
                free(p);
        }
        return NULL;
}

/* A NUL-terminated secret string: wiped up to its terminator, then freed. */
static inline void erase_and_freep(char **p) {
        if (*p)
                erase_and_free(*p, strlen(*p));
}
#define _cleanup_erase_free_ _cleanup_(erase_and_freep)

#endif
