/* SPDX-License-Identifier: MIT */
/* Unit tests of basic/text.h: strict UTF-8 at every boundary, printable checks. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "basic/text.h"

#define V(s) utf8_valid(s, sizeof(s) - 1)
#define P(s) utf8_printable(s, sizeof(s) - 1)
#define A(s) ascii_printable(s, sizeof(s) - 1)

static void test_utf8_valid(void **state) {
        assert_true(utf8_valid("", 0));
        assert_true(V("plain ascii"));
        assert_true(V("\x00"));                         /* NUL is a code point */
        assert_true(V("\x7f"));
        /* The first and last code point of each length. */
        assert_true(V("\xc2\x80"));                     /* U+0080 */
        assert_true(V("\xdf\xbf"));                     /* U+07FF */
        assert_true(V("\xe0\xa0\x80"));                 /* U+0800 */
        assert_true(V("\xef\xbf\xbf"));                 /* U+FFFF */
        assert_true(V("\xf0\x90\x80\x80"));             /* U+10000 */
        assert_true(V("\xf4\x8f\xbf\xbf"));             /* U+10FFFF */
        assert_true(V("\xed\x9f\xbf"));                 /* U+D7FF, below the surrogates */
        assert_true(V("\xee\x80\x80"));                 /* U+E000, above them */
        assert_true(V("gr\xc3\xbc\xc3\x9f dich \xe2\x82\xac \xf0\x9f\x98\x80"));

        assert_false(V("\x80"));                        /* stray continuation */
        assert_false(V("\xbf"));
        assert_false(V("\xc2"));                        /* truncated */
        assert_false(V("\xe0\xa0"));
        assert_false(V("\xf0\x90\x80"));
        assert_false(V("\xc2\x41"));                    /* not a continuation */
        assert_false(V("\xc0\x80"));                    /* overlong NUL */
        assert_false(V("\xc1\xbf"));                    /* overlong U+007F */
        assert_false(V("\xe0\x9f\xbf"));                /* overlong U+07FF */
        assert_false(V("\xf0\x8f\xbf\xbf"));            /* overlong U+FFFF */
        assert_false(V("\xed\xa0\x80"));                /* U+D800 */
        assert_false(V("\xed\xbf\xbf"));                /* U+DFFF */
        assert_false(V("\xf4\x90\x80\x80"));            /* U+110000 */
        assert_false(V("\xf5\x80\x80\x80"));
        assert_false(V("\xf8\x88\x80\x80\x80"));        /* 5-byte form */
        assert_false(V("\xfe"));
        assert_false(V("\xff"));
        assert_false(V("ok\xe2\x82"));                  /* truncated at the end */
        /* Only @len bytes are looked at: a sequence cut by @len is invalid. */
        assert_false(utf8_valid("\xe2\x82\xac", 2));
        assert_true(utf8_valid("ab\xff", 2));
}

static void test_utf8_printable(void **state) {
        assert_true(utf8_printable("", 0));
        assert_true(P("line-7 A4 \xc3\xa9t\xc3\xa9 \xe2\x82\xac ~"));
        assert_false(P("\x00"));
        assert_false(P("tab\there"));
        assert_false(P("new\nline"));
        assert_false(P("\x1f"));
        assert_false(P("\x7f"));                        /* DEL */
        assert_false(P("\xc2\x80"));                    /* U+0080, C1 */
        assert_false(P("\xc2\x9f"));                    /* U+009F, C1 */
        assert_true(P("\xc2\xa0"));                     /* U+00A0 */
        assert_true(P(" "));
        assert_false(P("\xc0\xa0"));                    /* invalid UTF-8 is not printable */
}

static void test_ascii_printable(void **state) {
        assert_true(ascii_printable("", 0));
        assert_true(A(" ~"));
        assert_true(A("0123456789ABCDEF-_:.@"));
        assert_false(A("\x1f"));
        assert_false(A("\x7f"));
        assert_false(A("\x80"));
        assert_false(A("\xc3\xa9"));                    /* printable UTF-8, not ASCII */
        assert_false(A("a\0b"));
        assert_true(ascii_printable("ab\n", 2));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_utf8_valid),
                cmocka_unit_test(test_utf8_printable),
                cmocka_unit_test(test_ascii_printable),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
