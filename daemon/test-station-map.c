/* SPDX-License-Identifier: MIT */
/* Unit tests: the station map (open addressing with backward-shift deletion) against a plain list. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "station-map.h"

/* The map never dereferences a station: any distinct pointers will do. */
static char stations[4096];
#define ST(i) ((struct station *)&stations[(i)])

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t next(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static bool is(const struct station *st, const void *arg) {
        return st == arg;
}

struct ref {
        uint64_t key;
        struct station *st;
};

/* Every entry of the reference list is found under its key, and the map holds nothing else. */
static void check_same(const struct station_map *map, const struct ref *ref, size_t n) {
        size_t in_map = 0;

        assert_int_equal(map->n, n);
        for (size_t i = 0; i < n; i++)
                assert_ptr_equal(station_map_find(map, ref[i].key, is, ref[i].st), ref[i].st);
        for (size_t i = 0; map->slots && i <= map->mask; i++)
                in_map += map->slots[i].st != NULL;
        assert_int_equal(in_map, n);
        /* At most half full. */
        if (map->slots)
                assert_true(map->n * 2 <= map->mask + 1);
}

static void test_against_list(void **state) {
        struct station_map map = {};
        struct ref ref[4096];
        size_t n = 0, used = 0;

        (void)state;
        for (int op = 0; op < 200000; op++) {
                unsigned what = (unsigned)(next() % 10);

                if ((what < 5 || n == 0) && used < 4096 && n < 600) {
                        /* Few distinct keys: many entries share one, runs wrap around the table. */
                        uint64_t key = next() % 97;

                        assert_int_equal(station_map_put(&map, key, ST(used)), 0);
                        ref[n++] = (struct ref){ key, ST(used) };
                        used++;
                } else if (what < 9 && n > 0) {
                        size_t i = (size_t)(next() % n);

                        assert_true(station_map_del(&map, ref[i].key, ref[i].st));
                        assert_false(station_map_del(&map, ref[i].key, ref[i].st));
                        assert_null(station_map_find(&map, ref[i].key, is, ref[i].st));
                        ref[i] = ref[--n];
                } else {
                        /* A key with no entry, and a wrong (key, station) pair. */
                        assert_null(station_map_find(&map, 1000 + next() % 1000, NULL, NULL));
                        if (n > 0)
                                assert_false(station_map_del(&map, ref[0].key + 1000, ref[0].st));
                }
                if (op % 997 == 0)
                        check_same(&map, ref, n);
                if (used == 4096 && n == 0)
                        used = 0;
        }
        check_same(&map, ref, n);
        station_map_done(&map);
        assert_null(map.slots);
        assert_null(station_map_find(&map, 1, NULL, NULL));
        assert_false(station_map_del(&map, 1, ST(0)));
}

static void test_predicate_picks_among_equal_keys(void **state) {
        struct station_map map = {};

        (void)state;
        for (int i = 0; i < 10; i++)
                assert_int_equal(station_map_put(&map, 42, ST(i)), 0);
        assert_ptr_equal(station_map_find(&map, 42, is, ST(7)), ST(7));
        assert_true(station_map_del(&map, 42, ST(3)));
        assert_null(station_map_find(&map, 42, is, ST(3)));
        for (int i = 0; i < 10; i++)
                if (i != 3)
                        assert_ptr_equal(station_map_find(&map, 42, is, ST(i)), ST(i));
        assert_non_null(station_map_find(&map, 42, NULL, NULL));
        station_map_done(&map);
}

static void test_hash(void **state) {
        (void)state;
        /* FNV-1a 64 test vectors. */
        assert_true(station_map_hash_str("") == 0xcbf29ce484222325ULL);
        assert_true(station_map_hash_str("a") == 0xaf63dc4c8601ec8cULL);
        assert_true(station_map_hash_str("foobar") == 0x85944171f73967e8ULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_against_list),
                cmocka_unit_test(test_predicate_picks_among_equal_keys),
                cmocka_unit_test(test_hash),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
