/* SPDX-License-Identifier: MIT */
/* Unit tests: the JSON object writer (escaping, numbers, overflow), checked by parsing its output with cJSON. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "json-writer.h"

static void test_round_trip(void **state) {
        /* Every byte 0x01..0x7f and some UTF-8: each must come back as it went in. */
        char all[128], buf[2048];
        struct json_writer w;
        const char *text;
        cJSON *o;

        for (int i = 1; i < 128; i++)
                all[i - 1] = (char)i;
        all[127] = 0;
        json_writer_init(&w, buf, sizeof(buf));
        json_writer_str(&w, "all", all);
        json_writer_str(&w, "utf8", "Gr\xc3\xbc\xc3\x9f \xe2\x9c\x93");
        json_writer_str(&w, "empty", "");
        json_writer_str_or_null(&w, "none", NULL);
        json_writer_int(&w, "min", INT64_MIN);
        json_writer_int(&w, "big", 253402300799000);
        json_writer_int(&w, "zero", 0);
        text = json_writer_finish(&w);
        assert_non_null(text);

        o = cJSON_Parse(text);
        assert_non_null(o);
        assert_string_equal(cJSON_GetObjectItem(o, "all")->valuestring, all);
        assert_string_equal(cJSON_GetObjectItem(o, "utf8")->valuestring, "Gr\xc3\xbc\xc3\x9f \xe2\x9c\x93");
        assert_string_equal(cJSON_GetObjectItem(o, "empty")->valuestring, "");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "none")));
        assert_true(cJSON_GetObjectItem(o, "big")->valuedouble == 253402300799000.0);
        assert_true(cJSON_GetObjectItem(o, "zero")->valuedouble == 0.0);
        cJSON_Delete(o);
        /* Integers are written exactly, not through a double. */
        assert_non_null(strstr(text, "\"min\":-9223372036854775808,"));
        assert_non_null(strstr(text, "\"\\u0001\\u0002"));
        assert_non_null(strstr(text, "\\n"));
        assert_non_null(strstr(text, "\\\"#"));
}

/* Every integer is written as printf("%" PRId64) would: boundaries, powers of ten, random values. */
static void test_integers(void **state) {
        uint64_t rng = 0x9e3779b97f4a7c15u;
        int64_t values[2000];
        size_t n = 0;

        values[n++] = INT64_MIN;
        values[n++] = INT64_MIN + 1;
        values[n++] = INT64_MAX;
        values[n++] = 0;
        for (int64_t p = 1, i = 0; i < 19; i++, p = i < 19 ? p * 10 : p) {
                values[n++] = p;
                values[n++] = p - 1;
                values[n++] = -p;
                values[n++] = -p + 1;
        }
        while (n < sizeof(values) / sizeof(values[0])) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                values[n++] = (int64_t)(rng >> (rng & 63));    /* all magnitudes */
        }
        for (size_t i = 0; i < n; i++) {
                char buf[64], want[64];
                struct json_writer w;

                json_writer_init(&w, buf, sizeof(buf));
                json_writer_int(&w, "v", values[i]);
                snprintf(want, sizeof(want), "{\"v\":%" PRId64 "}", values[i]);
                assert_string_equal(json_writer_finish(&w), want);
        }
}

static void test_empty_object(void **state) {
        char buf[8];
        struct json_writer w;

        json_writer_init(&w, buf, sizeof(buf));
        assert_string_equal(json_writer_finish(&w), "{}");
}

static void test_overflow(void **state) {
        char buf[32];
        struct json_writer w;

        /* Exactly full: {"k":"<23 digits>"} is 31 bytes + NUL. */
        json_writer_init(&w, buf, sizeof(buf));
        json_writer_str(&w, "k", "01234567890123456789012");
        assert_string_equal(json_writer_finish(&w), "{\"k\":\"01234567890123456789012\"}");
        assert_int_equal(strlen(buf), 31);

        /* One byte more does not fit. */
        json_writer_init(&w, buf, sizeof(buf));
        json_writer_str(&w, "k", "012345678901234567890123");
        assert_null(json_writer_finish(&w));

        /* Once over, nothing written later makes it fit. */
        json_writer_init(&w, buf, sizeof(buf));
        json_writer_str(&w, "k", "012345678901234567890123456789");
        json_writer_int(&w, "n", 1);
        assert_null(json_writer_finish(&w));

        /* An escape that would cross the end. */
        json_writer_init(&w, buf, sizeof(buf));
        json_writer_str(&w, "k", "0123456789012345678\x01");
        assert_null(json_writer_finish(&w));

        /* A buffer too small for "{}". */
        json_writer_init(&w, buf, 2);
        assert_null(json_writer_finish(&w));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_empty_object),
                cmocka_unit_test(test_overflow),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
