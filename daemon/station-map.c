/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "station-map.h"

/* splitmix64's finaliser: device numbers and FNV hashes spread over the slots. */
static size_t slot_of(const struct station_map *map, uint64_t key) {
        key ^= key >> 30;
        key *= 0xbf58476d1ce4e5b9ULL;
        key ^= key >> 27;
        key *= 0x94d049bb133111ebULL;
        key ^= key >> 31;
        return (size_t)key & map->mask;
}

static void insert(struct station_map *map, uint64_t key, struct station *st) {
        size_t i = slot_of(map, key);

        while (map->slots[i].st)
                i = (i + 1) & map->mask;
        map->slots[i] = (struct station_map_slot){ .key = key, .st = st };
        map->n++;
}

static int grow(struct station_map *map) {
        size_t cap = map->slots ? (map->mask + 1) * 2 : 64;
        struct station_map_slot *old = map->slots;
        size_t old_cap = map->slots ? map->mask + 1 : 0;

        map->slots = calloc(cap, sizeof(*map->slots));
        if (!map->slots) {
                map->slots = old;
                return -ENOMEM;
        }
        map->mask = cap - 1;
        map->n = 0;
        for (size_t i = 0; i < old_cap; i++)
                if (old[i].st)
                        insert(map, old[i].key, old[i].st);
        free(old);
        return 0;
}

int station_map_put(struct station_map *map, uint64_t key, struct station *st) {
        if (!map->slots || (map->n + 1) * 2 > map->mask + 1) {
                int r = grow(map);
                if (r < 0)
                        return r;
        }
        insert(map, key, st);
        return 0;
}

struct station *station_map_find(const struct station_map *map, uint64_t key, station_map_match_fn match,
                                 const void *arg) {
        if (!map->slots)
                return NULL;
        for (size_t i = slot_of(map, key); map->slots[i].st; i = (i + 1) & map->mask)
                if (map->slots[i].key == key && (!match || match(map->slots[i].st, arg)))
                        return map->slots[i].st;
        return NULL;
}

bool station_map_del(struct station_map *map, uint64_t key, const struct station *st) {
        size_t i;

        if (!map->slots)
                return false;
        for (i = slot_of(map, key); map->slots[i].st; i = (i + 1) & map->mask)
                if (map->slots[i].key == key && map->slots[i].st == st)
                        break;
        if (!map->slots[i].st)
                return false;
        /* Backward shift: pull later entries of the run into the hole when
         * their home slot does not lie (cyclically) after the hole. */
        for (size_t j = (i + 1) & map->mask; map->slots[j].st; j = (j + 1) & map->mask) {
                size_t home = slot_of(map, map->slots[j].key);

                if (((j - home) & map->mask) >= ((j - i) & map->mask)) {
                        map->slots[i] = map->slots[j];
                        i = j;
                }
        }
        map->slots[i] = (struct station_map_slot){};
        map->n--;
        return true;
}

void station_map_done(struct station_map *map) {
        free(map->slots);
        *map = (struct station_map){};
}

uint64_t station_map_hash_str(const char *s) {
        uint64_t h = 0xcbf29ce484222325ULL;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 0x100000001b3ULL;
        }
        return h;
}
