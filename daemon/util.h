/* SPDX-License-Identifier: MIT */
/* The daemon's own small helpers (strings, clocks, CHECK_FAILED); cleanup and hex come from basic/. */
#ifndef PROVD_UTIL_H
#define PROVD_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/cleanup.h"
#include "basic/hex.h"
#include "basic/macro.h"

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static inline bool isempty(const char *s) {
        return !s || !*s;
}

/* CLOCK_MONOTONIC in microseconds / milliseconds; CLOCK_REALTIME in milliseconds. */
static inline uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline int64_t wallclock_msec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "Cannot happen" runtime states: log once with the location and recover the one object. */
#define CHECK_FAILED(cond) _unlikely_(check_failed(!(cond), #cond, __FILE__, __LINE__))
bool check_failed(bool failed, const char *expr, const char *file, int line);

#endif
