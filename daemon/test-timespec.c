/* SPDX-License-Identifier: MIT */
/* Unit tests: the operator's time arguments (timespec_parse()). */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "timespec.h"

#define NOW 1790000000LL        /* 2026-09-21T14:13:20Z */

static int64_t ok(const char *s) {
        int64_t ms = -1;

        assert_int_equal(timespec_parse(s, NOW, &ms), 0);
        return ms;
}

static int err(const char *s) {
        int64_t ms = 42;
        int r = timespec_parse(s, NOW, &ms);

        assert_int_equal(ms, 42);       /* untouched on failure */
        return r;
}

static void test_epoch(void **state) {
        assert_int_equal(ok("0"), 0);
        assert_int_equal(ok("1700000000"), 1700000000000LL);
        assert_int_equal(ok("253402300799"), 253402300799000LL);
        assert_int_equal(err("253402300800"), -ERANGE);
        assert_int_equal(err("99999999999999999999999999"), -ERANGE);
        assert_int_equal(err("-1"), -EINVAL);
        assert_int_equal(err("+5"), -EINVAL);
        assert_int_equal(err(" 5"), -EINVAL);
        assert_int_equal(err("5 "), -EINVAL);
        assert_int_equal(err("0x10"), -EINVAL);
        assert_int_equal(err(""), -EINVAL);
}

static void test_ago(void **state) {
        assert_int_equal(ok("30m"), (NOW - 1800) * 1000);
        assert_int_equal(ok("8h"), (NOW - 8 * 3600) * 1000);
        assert_int_equal(ok("7d"), (NOW - 7 * 86400) * 1000);
        assert_int_equal(ok("90s"), (NOW - 90) * 1000);
        assert_int_equal(ok("0d"), NOW * 1000);
        assert_int_equal(err("d"), -EINVAL);
        assert_int_equal(err("7w"), -EINVAL);
        assert_int_equal(err("7dd"), -EINVAL);
        assert_int_equal(err("-7d"), -EINVAL);
        /* More than 100 years, or before the epoch. */
        assert_int_equal(err("36525d"), -ERANGE);
        assert_int_equal(err("30000d"), -ERANGE);      /* before the epoch */
        assert_int_equal(err("99999999999999999999h"), -ERANGE);
}

static void test_dates(void **state) {
        assert_int_equal(ok("1970-01-01"), 0);
        assert_int_equal(ok("2026-02-28"), 1772236800000LL);
        assert_int_equal(ok("2024-02-29"), 1709164800000LL);
        assert_int_equal(ok("2026-02-28T12:34:56"), 1772282096000LL);
        assert_int_equal(ok("2026-02-28T12:34:56Z"), 1772282096000LL);
        assert_int_equal(ok("9999-12-31T23:59:59Z"), 253402300799000LL);
}

static void test_impossible_dates(void **state) {
        assert_int_equal(err("2026-02-30"), -EINVAL);
        assert_int_equal(err("2026-02-29"), -EINVAL);   /* not a leap year */
        assert_int_equal(err("2100-02-29"), -EINVAL);
        assert_int_equal(err("2026-04-31"), -EINVAL);
        assert_int_equal(err("2026-13-01"), -EINVAL);
        assert_int_equal(err("2026-00-10"), -EINVAL);
        assert_int_equal(err("2026-01-00"), -EINVAL);
        assert_int_equal(err("2026-01-01T24:00:00"), -EINVAL);
        assert_int_equal(err("2026-01-01T23:60:00"), -EINVAL);
        assert_int_equal(err("2026-06-30T23:59:60Z"), -EINVAL);
        assert_int_equal(err("1969-12-31"), -ERANGE);
        assert_int_equal(err("0000-01-01"), -ERANGE);
}

static void test_malformed_dates(void **state) {
        assert_int_equal(err("2026-2-3"), -EINVAL);
        assert_int_equal(err("2026-02-03T1:02:03"), -EINVAL);
        assert_int_equal(err("2026-02-03 01:02:03"), -EINVAL);
        assert_int_equal(err("2026-02-03T01:02:03+01"), -EINVAL);
        assert_int_equal(err("2026-02-03T01:02:03ZZ"), -EINVAL);
        assert_int_equal(err("2026-02-03X"), -EINVAL);
        assert_int_equal(err("+026-02-03"), -EINVAL);
        assert_int_equal(err(" 2026-02-03"), -EINVAL);
        assert_int_equal(err("2026-02-03T"), -EINVAL);
        assert_int_equal(err("2026-02-03T01-02-03"), -EINVAL);
        /* Longer than any valid form: refused before it is looked at. */
        assert_int_equal(err("11111111111111111111111111111111111111111111111111111111111111111"), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_epoch),
                cmocka_unit_test(test_ago),
                cmocka_unit_test(test_dates),
                cmocka_unit_test(test_impossible_dates),
                cmocka_unit_test(test_malformed_dates),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
