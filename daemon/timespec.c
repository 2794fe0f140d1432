/* SPDX-License-Identifier: MIT */
/* Parsing of the operator's time arguments (timespec.h). */

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "timespec.h"

/* Exactly @n ASCII digits at @s (no sign, no space: strtol() would take both). */
static bool digits(const char *s, size_t n, int *ret) {
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

static int parse_number(const char *s, size_t len, int64_t now_s, int64_t *ret_ms) {
        long long v = 0, mult = 0;
        size_t n = len;

        switch (s[len - 1]) {
        case 's': mult = 1; break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        }
        if (mult)
                n--;
        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                /* Stop before overflow: anything this long is out of range anyway. */
                if (v > TIMESPEC_MAX_EPOCH)
                        return -ERANGE;
                v = v * 10 + (s[i] - '0');
        }
        if (!mult) {
                if (v > TIMESPEC_MAX_EPOCH)
                        return -ERANGE;
                *ret_ms = (int64_t)v * 1000;
                return 0;
        }
        if (v > TIMESPEC_MAX_AGE_S / mult || now_s < 0 || now_s > TIMESPEC_MAX_EPOCH || v * mult > now_s)
                return -ERANGE;
        *ret_ms = (now_s - v * mult) * 1000;
        return 0;
}

static int parse_date(const char *s, size_t len, int64_t *ret_ms) {
        struct tm tm = {}, back;
        int y, mo, d, h = 0, mi = 0, sec = 0;
        time_t t;

        if (len != 10 && len != 19 && len != 20)
                return -EINVAL;
        if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d))
                return -EINVAL;
        if (len > 10 && (s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
                         s[16] != ':' || !digits(s + 17, 2, &sec) || (len == 20 && s[19] != 'Z')))
                return -EINVAL;
        if (y < 1970)
                return -ERANGE;
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        t = timegm(&tm);
        /* timegm() normalises 2026-02-30 to March 2nd: a date that does not round-trip does not exist. */
        if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_year != y - 1900 || back.tm_mon != mo - 1 ||
            back.tm_mday != d || back.tm_hour != h || back.tm_min != mi || back.tm_sec != sec)
                return -EINVAL;
        if (t < 0 || t > TIMESPEC_MAX_EPOCH)
                return -ERANGE;
        *ret_ms = (int64_t)t * 1000;
        return 0;
}

int timespec_parse(const char *s, int64_t now_s, int64_t *ret_ms) {
        size_t len;

        if (!s || !ret_ms)
                return -EINVAL;
        len = strnlen(s, TIMESPEC_MAX_LEN + 1);
        if (len == 0 || len > TIMESPEC_MAX_LEN)
                return -EINVAL;
        if (len >= 10 && s[4] == '-')
                return parse_date(s, len, ret_ms);
        return parse_number(s, len, now_s, ret_ms);
}
