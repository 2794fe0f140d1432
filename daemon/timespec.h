/* SPDX-License-Identifier: MIT */
/* Parsing of the operator's time arguments (provctl --since/--until). */
#ifndef PROVD_TIMESPEC_H
#define PROVD_TIMESPEC_H

#include <stdint.h>

/* Seconds of 9999-12-31T23:59:59Z: the latest absolute time accepted. */
#define TIMESPEC_MAX_EPOCH 253402300799LL
/* The longest age accepted ("30m", "8h", "7d" ago): 100 years of 365.25 days. */
#define TIMESPEC_MAX_AGE_S 3155760000LL
/* Longest argument accepted (the longest valid form is 20 characters). */
#define TIMESPEC_MAX_LEN 64

/**
 * Parses @s as one of
 *   SECONDS                       since the epoch, 0 .. TIMESPEC_MAX_EPOCH
 *   YYYY-MM-DD                    midnight UTC
 *   YYYY-MM-DDTHH:MM:SS[Z]        UTC (years 1970..9999, a date that exists)
 *   N{s,m,h,d}                    that long before @now_s (at most 100 years)
 * and writes milliseconds since the epoch to @ret_ms. Returns 0, -EINVAL for
 * anything else (signs, spaces, 2026-02-30, 24:00:00, a leap second), or
 * -ERANGE when the value is outside the bounds above or before the epoch.
 */
int timespec_parse(const char *s, int64_t now_s, int64_t *ret_ms);

#endif
