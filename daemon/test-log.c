/* SPDX-License-Identifier: MIT */
/* Log lines cannot be forged or turned into terminal escapes by text from outside. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"

static void escape_controls(void **state) {
        char out[64];

        assert_int_equal(log_escape("plain A4 /dev/ttyACM0", out, sizeof out), 21);
        assert_string_equal(out, "plain A4 /dev/ttyACM0");
        log_escape("a\nb\r\x1b[2J\x7f\\", out, sizeof out);
        assert_string_equal(out, "a\\x0ab\\x0d\\x1b[2J\\x7f\\x5c");
        /* UTF-8 stays as it is. */
        log_escape("Platz \xc3\xa4", out, sizeof out);
        assert_string_equal(out, "Platz \xc3\xa4");
}

static void escape_truncates_whole(void **state) {
        char out[8];

        /* "ab" + an escape of 4 = 6 bytes, + another would be 10: stop before it. */
        assert_int_equal(log_escape("ab\n\n", out, sizeof out), 6);
        assert_string_equal(out, "ab\\x0a");
        assert_int_equal(log_escape("abcdefghij", out, sizeof out), 7);
        assert_string_equal(out, "abcdefg");
        assert_int_equal(log_escape("x", out, 1), 0);
        assert_string_equal(out, "");
}

/* What reaches stderr for one log call. */
static void capture(char *buf, size_t size, const char *slot, const char *fmt, const char *arg) {
        FILE *f = tmpfile();
        int saved = dup(STDERR_FILENO);
        size_t n;

        assert_non_null(f);
        assert_true(saved >= 0);
        fflush(stderr);
        assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
        log_internal(LOG_ERR, 0, slot, NULL, fmt, arg);
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        rewind(f);
        n = fread(buf, 1, size - 1, f);
        buf[n] = '\0';
        fclose(f);
}

static void one_line_per_call(void **state) {
        char buf[4096];
        const char *nl;

        capture(buf, sizeof buf, "A4\n00:00:00.000 err     slot B1: forged",
                "port '%s': open failed", "/dev/x\x1b]0;owned\x07\nsecond line");
        nl = strchr(buf, '\n');
        assert_non_null(nl);
        assert_int_equal(nl[1], '\0');          /* exactly one line */
        assert_null(strchr(buf, '\x1b'));
        assert_null(strchr(buf, '\x07'));
        assert_non_null(strstr(buf, "slot A4\\x0a00:00:00.000 err     slot B1: forged: "));
        assert_non_null(strstr(buf, "port '/dev/x\\x1b]0;owned\\x07\\x0asecond line': open failed"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(escape_controls),
                cmocka_unit_test(escape_truncates_whole),
                cmocka_unit_test(one_line_per_call),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
