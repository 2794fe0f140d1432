/* SPDX-License-Identifier: MIT */
/* Unit tests: provd-boardsim seed derivation (same seed, same boards). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "seed.h"

/*
 * Known answers, computed independently with Python's hashlib/hmac:
 *   key = sha256(b"provd-boardsim seed v1" + b"test")
 *   hmac(key, b"serial" + pack(">II", idx, gen))[:6]
 * They pin the derivation: a change here changes every simulated fleet.
 */
static const uint8_t serial_test_0_0[SEED_SERIAL_LEN] = { 0x01, 0x23, 0x3f, 0x85, 0xd8, 0x2a, 0xac, 0x11, 0xee };
static const uint8_t serial_test_5_2[SEED_SERIAL_LEN] = { 0x01, 0x23, 0x66, 0x7f, 0xa9, 0xe2, 0x55, 0x20, 0xee };
static const uint8_t scalar_test_0_0_0[32] = {
        0x80, 0x7a, 0xb6, 0x6d, 0x9e, 0x22, 0x50, 0xaa, 0x6a, 0xcf, 0x0e, 0x75, 0xe8, 0xc4, 0x89, 0x60,
        0x80, 0xac, 0x1f, 0x50, 0xcf, 0x66, 0xbc, 0x23, 0x52, 0x0e, 0x4b, 0x7c, 0xe4, 0xd6, 0x0c, 0x8d,
};

static const uint8_t p256_order[32] = {
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

static void test_known_answers(void **state) {
        struct seed s;
        uint8_t serial[SEED_SERIAL_LEN], k[32];

        seed_from_string(&s, "test");
        seed_serial(&s, 0, 0, serial);
        assert_memory_equal(serial, serial_test_0_0, sizeof(serial));
        seed_serial(&s, 5, 2, serial);
        assert_memory_equal(serial, serial_test_5_2, sizeof(serial));
        seed_scalar(&s, 0, 0, 0, k);
        assert_memory_equal(k, scalar_test_0_0_0, sizeof(k));
}

static void test_deterministic(void **state) {
        struct seed a, b, c;
        uint8_t s1[SEED_SERIAL_LEN], s2[SEED_SERIAL_LEN], k1[32], k2[32];

        seed_from_string(&a, "line-7");
        seed_from_string(&b, "line-7");
        seed_from_string(&c, "line-8");
        assert_memory_equal(a.key, b.key, sizeof(a.key));
        assert_memory_not_equal(a.key, c.key, sizeof(a.key));

        for (uint32_t idx = 0; idx < 64; idx++) {
                seed_serial(&a, idx, 0, s1);
                seed_serial(&b, idx, 0, s2);
                assert_memory_equal(s1, s2, sizeof(s1));
                assert_int_equal(s1[0], 0x01);
                assert_int_equal(s1[1], 0x23);
                assert_int_equal(s1[8], 0xee);
                seed_serial(&c, idx, 0, s2);
                assert_memory_not_equal(s1, s2, sizeof(s1));
                seed_serial(&a, idx, 1, s2);            /* a swapped board is another board */
                assert_memory_not_equal(s1, s2, sizeof(s1));

                seed_scalar(&a, idx, 0, 0, k1);
                seed_scalar(&b, idx, 0, 0, k2);
                assert_memory_equal(k1, k2, sizeof(k1));
                seed_scalar(&a, idx, 0, 1, k2);         /* NEW_KEY gives a new key */
                assert_memory_not_equal(k1, k2, sizeof(k1));
        }
        assert_int_equal(seed_rng(&a, 3, 0), seed_rng(&b, 3, 0));
        assert_int_not_equal(seed_rng(&a, 3, 0), seed_rng(&a, 3, 1));
}

static void test_scalar_range(void **state) {
        struct seed s;
        uint8_t k[32], zero[32] = { 0 };

        seed_from_string(&s, "range");
        for (uint32_t i = 0; i < 1000; i++) {
                seed_scalar(&s, i, i % 3, i % 5, k);
                assert_memory_not_equal(k, zero, sizeof(k));
                assert_true(memcmp(k, p256_order, sizeof(k)) < 0);
        }
}

static void test_pick(void **state) {
        struct seed a, b;
        unsigned picked = 0;

        seed_from_string(&a, "pick");
        seed_from_string(&b, "pick");
        for (uint32_t i = 0; i < 4000; i++) {
                bool p = seed_pick(&a, 0, i, 0, 0.25);
                assert_int_equal(p, seed_pick(&b, 0, i, 0, 0.25));
                picked += p;
                assert_false(seed_pick(&a, 0, i, 0, 0.0));
                assert_true(seed_pick(&a, 0, i, 0, 1.0));
        }
        /* 1000 expected; a binomial(4000, 0.25) is within ±150 with overwhelming probability. */
        assert_in_range(picked, 850, 1150);
}

static void test_rng(void **state) {
        uint64_t x = 42, y = 42;
        unsigned low = 0;

        for (int i = 0; i < 1000; i++) {
                assert_int_equal(rng_next(&x), rng_next(&y));
                double u = rng_unit(&x);
                (void)rng_unit(&y);
                assert_true(u >= 0.0 && u < 1.0);
                low += u < 0.5;
        }
        assert_in_range(low, 400, 600);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_answers),
                cmocka_unit_test(test_deterministic),
                cmocka_unit_test(test_scalar_range),
                cmocka_unit_test(test_pick),
                cmocka_unit_test(test_rng),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
