/* SPDX-License-Identifier: MIT */
/* Unit tests: token buckets and backoff with jitter, on a fake clock. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aws-limit.h"
#include "aws-register.h"

static void test_bucket_burst_then_rate(void **state) {
        struct aws_bucket b;
        uint64_t t = 1000000;

        aws_bucket_init(&b, 10000, 10);         /* 10/s, burst 10 */
        for (int i = 0; i < 10; i++)
                assert_int_equal(aws_bucket_take(&b, t), 0);
        /* Empty: the next token is 100 ms away. */
        assert_int_equal(aws_bucket_take(&b, t), 100);
        assert_int_equal(aws_bucket_take(&b, t + 40), 60);
        assert_int_equal(aws_bucket_take(&b, t + 100), 0);
        assert_int_equal(aws_bucket_take(&b, t + 100), 100);
}

static void test_bucket_sustained_rate(void **state) {
        struct aws_bucket b;
        uint64_t t = 0;
        unsigned taken = 0;

        /* Asking every millisecond for 10 s of fake time takes burst + rate * 10 s tokens. */
        aws_bucket_init(&b, 15000, 15);
        for (t = 0; t < 10000; t++)
                taken += aws_bucket_take(&b, t) == 0;
        assert_int_equal(taken, 15 + 15 * 10 - 1);     /* the last 1/15 s is not complete */
}

static void test_bucket_fractional_and_idle(void **state) {
        struct aws_bucket b;

        aws_bucket_init(&b, 500, 1);            /* one every two seconds */
        assert_int_equal(aws_bucket_take(&b, 5), 0);
        assert_int_equal(aws_bucket_take(&b, 5), 2000);
        /* Thirds of a token added in small steps are not lost. */
        for (uint64_t t = 6; t < 2005; t += 7)
                assert_true(aws_bucket_take(&b, t) > 0);
        assert_int_equal(aws_bucket_take(&b, 2005), 0);
        /* A long idle refills to the burst only; a huge gap does not overflow. */
        aws_bucket_init(&b, 1000000000, 3);
        for (int i = 0; i < 3; i++)
                assert_int_equal(aws_bucket_take(&b, 0), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(aws_bucket_take(&b, UINT64_MAX / 2), 0);
        assert_true(aws_bucket_take(&b, UINT64_MAX / 2) > 0);
        /* A clock going backwards refills nothing and does not underflow. */
        assert_true(aws_bucket_take(&b, 10) > 0);
}

static void test_bucket_refund(void **state) {
        struct aws_bucket b;

        aws_bucket_init(&b, 1000, 1);
        assert_int_equal(aws_bucket_take(&b, 0), 0);
        aws_bucket_refund(&b);
        assert_int_equal(aws_bucket_take(&b, 0), 0);
        aws_bucket_refund(&b);
        aws_bucket_refund(&b);                  /* not above the burst */
        assert_int_equal(aws_bucket_take(&b, 0), 0);
        assert_true(aws_bucket_take(&b, 0) > 0);
}

static void test_backoff(void **state) {
        struct aws_backoff bo = { .base_ms = 100, .max_ms = 5000 };

        /* Full jitter: [0, min(max, base * 2^n)], never 0. */
        assert_int_equal(aws_backoff_delay(&bo, 0, 0), 1);
        assert_int_equal(aws_backoff_delay(&bo, 0, 100), 100);
        assert_int_equal(aws_backoff_delay(&bo, 0, 101), 1);   /* 101 % 101 == 0 -> 1 */
        assert_int_equal(aws_backoff_delay(&bo, 3, 800), 800);
        assert_int_equal(aws_backoff_delay(&bo, 3, 801), 1);
        assert_int_equal(aws_backoff_delay(&bo, 10, 5000), 5000);
        assert_int_equal(aws_backoff_delay(&bo, 10, 5001), 1);
        assert_int_equal(aws_backoff_delay(&bo, 1000, UINT32_MAX), UINT32_MAX % 5001);
        for (uint32_t r = 0; r < 100000; r += 7)
                assert_in_range(aws_backoff_delay(&bo, 2, r * 2654435761u), 1, 400);
}

static void test_registrar_defaults(void **state) {
        /* AWS's published rates: certificate calls 10/s, thing and attach calls 15/s. */
        assert_int_equal(aws_default_rate_milli(AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA), 10000);
        assert_int_equal(aws_default_rate_milli(AWS_OP_REGISTER_CA_CERTIFICATE), 10000);
        assert_int_equal(aws_default_rate_milli(AWS_OP_CREATE_THING), 15000);
        assert_int_equal(aws_default_rate_milli(AWS_OP_ATTACH_THING_PRINCIPAL), 15000);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bucket_burst_then_rate),
                cmocka_unit_test(test_bucket_sustained_rate),
                cmocka_unit_test(test_bucket_fractional_and_idle),
                cmocka_unit_test(test_bucket_refund),
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_registrar_defaults),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
