/* SPDX-License-Identifier: MIT */
/* Fuzz target: provctl's --since/--until time arguments (timespec_parse()). */

/*
 * Checks: whatever is accepted lies in [0, 9999-12-31T23:59:59Z] in whole
 * seconds; a date round-trips (printed back with gmtime_r() it is the input),
 * an epoch number is itself, an age is not in the future.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timespec.h"

#define NOW 1790000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char s[TIMESPEC_MAX_LEN + 8], back[32];
        int64_t ms = -1;
        struct tm tm;
        time_t t;

        if (size >= sizeof s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;
        if (timespec_parse(s, NOW, &ms) < 0) {
                if (ms != -1)
                        abort();        /* written on failure */
                return 0;
        }
        if (ms < 0 || ms > TIMESPEC_MAX_EPOCH * 1000 || ms % 1000 != 0)
                abort();
        size = strlen(s);
        if (size >= 10 && s[4] == '-') {
                t = (time_t)(ms / 1000);
                if (!gmtime_r(&t, &tm))
                        abort();
                strftime(back, sizeof back, size == 10 ? "%Y-%m-%d" : "%Y-%m-%dT%H:%M:%S", &tm);
                if (strncmp(back, s, size == 20 ? 19 : size) != 0 || strlen(back) != (size == 20 ? 19 : size))
                        abort();        /* not the date that was given */
        } else if (s[size - 1] >= '0' && s[size - 1] <= '9') {
                if (ms != strtoll(s, NULL, 10) * 1000)
                        abort();
        } else if (ms > NOW * 1000)
                abort();                /* an age in the future */
        return 0;
}
