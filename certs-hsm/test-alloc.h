/* SPDX-License-Identifier: MIT */
/* OpenSSL allocation failures on demand, for tests of how internal errors are reported. */
#pragma once

#include <stdlib.h>

#include <openssl/crypto.h>

/* OpenSSL allocations still allowed before every further one fails; -1: no limit. */
static long t_alloc_left = -1;

static void *t_alloc_malloc(size_t n, const char *file, int line) {
        (void)file;
        (void)line;
        if (t_alloc_left == 0)
                return NULL;
        if (t_alloc_left > 0)
                t_alloc_left--;
        return malloc(n);
}

static void *t_alloc_realloc(void *p, size_t n, const char *file, int line) {
        (void)file;
        (void)line;
        if (t_alloc_left == 0)
                return NULL;
        if (t_alloc_left > 0)
                t_alloc_left--;
        return realloc(p, n);
}

static void t_alloc_free(void *p, const char *file, int line) {
        (void)file;
        (void)line;
        free(p);
}

/* First thing in main(): OpenSSL refuses once it has allocated anything. */
static inline int t_alloc_install(void) {
        return CRYPTO_set_mem_functions(t_alloc_malloc, t_alloc_realloc, t_alloc_free) == 1 ? 0 : -1;
}
