/* SPDX-License-Identifier: MIT */
/* Unit tests of basic/hex.h: both cases, boundaries, odd lengths, non-digits, small buffers. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "basic/hex.h"

static void test_unhexchar(void **state) {
        for (int c = 0; c < 256; c++) {
                int v = unhexchar((char)c);
                if (c >= '0' && c <= '9')
                        assert_int_equal(v, c - '0');
                else if (c >= 'a' && c <= 'f')
                        assert_int_equal(v, c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        assert_int_equal(v, c - 'A' + 10);
                else
                        assert_int_equal(v, -EINVAL);
        }
}

static void test_encode(void **state) {
        const uint8_t b[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
        char out[2 * sizeof(b) + 1];

        memset(out, 'x', sizeof(out));
        assert_ptr_equal(hex_encode(b, sizeof(b), out, false), out);
        assert_string_equal(out, "00017f80abff");
        assert_string_equal(hex_encode(b, sizeof(b), out, true), "00017F80ABFF");
        /* Zero bytes: just the terminator. */
        assert_string_equal(hex_encode(b, 0, out, false), "");
}

static void test_valid(void **state) {
        assert_true(hex_valid("", 0, 0, 4));
        assert_false(hex_valid("", 0, 1, 4));            /* below the minimum */
        assert_true(hex_valid("aB09", 4, 2, 2));         /* either case */
        assert_false(hex_valid("aB0", 3, 0, 4));         /* odd */
        assert_false(hex_valid("aB0g", 4, 0, 4));        /* not a digit */
        assert_false(hex_valid("0x12", 4, 0, 4));
        assert_false(hex_valid("12 4", 4, 0, 4));
        assert_false(hex_valid("12\0" "4", 4, 0, 4));    /* NUL inside @len */
        assert_true(hex_valid("00112233", 8, 4, 4));     /* exactly the maximum */
        assert_false(hex_valid("0011223344", 10, 0, 4)); /* one byte past it */
        assert_true(hex_valid("0011zz", 4, 2, 2));       /* only @len characters count */
        assert_false(hex_valid(NULL, 0, 0, 4));
}

static void test_decode(void **state) {
        uint8_t out[4];
        size_t n = 99;

        assert_int_equal(hex_decode("00fF7a80", 8, out, sizeof(out), &n), 0);
        assert_int_equal(n, 4);
        assert_memory_equal(out, "\x00\xff\x7a\x80", 4);

        assert_int_equal(hex_decode("", 0, out, sizeof(out), &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(hex_decode("ab", 2, out, sizeof(out), NULL), 0);
        assert_int_equal(out[0], 0xab);

        /* Failures write nothing. */
        memset(out, 0x55, sizeof(out));
        n = 99;
        assert_int_equal(hex_decode("abc", 3, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hex_decode("abcg", 4, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hex_decode("g0", 2, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hex_decode("0011223344", 10, out, sizeof(out), &n), -ENOBUFS);
        assert_int_equal(hex_decode(NULL, 0, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(n, 99);
        for (size_t i = 0; i < sizeof(out); i++)
                assert_int_equal(out[i], 0x55);
}

static void test_lower(void **state) {
        char out[16];

        memset(out, 'x', sizeof(out));
        assert_string_equal(hex_lower("0aBcDeF9", 8, out), "0abcdef9");
        /* Only its first @len characters, and only A-F changed. */
        assert_string_equal(hex_lower("ABGZab", 4, out), "abGZ");
        assert_string_equal(hex_lower("", 0, out), "");
}

static void test_round_trip(void **state) {
        uint8_t b[256], back[256];
        char hex[2 * sizeof(b) + 1];
        size_t n;

        for (size_t i = 0; i < sizeof(b); i++)
                b[i] = (uint8_t)i;
        for (int upper = 0; upper <= 1; upper++) {
                hex_encode(b, sizeof(b), hex, upper);
                assert_true(hex_valid(hex, strlen(hex), sizeof(b), sizeof(b)));
                assert_int_equal(hex_decode(hex, strlen(hex), back, sizeof(back), &n), 0);
                assert_int_equal(n, sizeof(b));
                assert_memory_equal(back, b, sizeof(b));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unhexchar),
                cmocka_unit_test(test_encode),
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_decode),
                cmocka_unit_test(test_lower),
                cmocka_unit_test(test_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
