/* SPDX-License-Identifier: MIT */
/* Stations by a 64-bit key (a device number, a serial's hash): O(1) lookups for
 * the manager's "is this device / this serial already in use" checks, which
 * otherwise scan every port for every board. */
#ifndef PROVD_STATION_MAP_H
#define PROVD_STATION_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct station;

/*
 * Open addressing, linear probing, deletion by backward shift (no
 * tombstones), grown at half full. Several entries may share a key (two
 * serials with the same hash); find() takes a predicate to tell them apart.
 * Entries are borrowed station pointers: whoever frees a station deletes its
 * entries first. Zero-initialised is an empty map.
 */
struct station_map_slot {
        uint64_t key;
        struct station *st;             /* NULL: free slot */
};

struct station_map {
        struct station_map_slot *slots;
        size_t mask;                    /* capacity - 1; capacity is a power of two */
        size_t n;
};

typedef bool (*station_map_match_fn)(const struct station *st, const void *arg);

/* 0 or -ENOMEM. Adds (key, st) even if the key is present. */
int station_map_put(struct station_map *map, uint64_t key, struct station *st);
/* The first entry with @key that @match (NULL: any) accepts, or NULL. */
struct station *station_map_find(const struct station_map *map, uint64_t key, station_map_match_fn match,
                                 const void *arg);
/* Removes the entry (key, st); false if there is none. */
bool station_map_del(struct station_map *map, uint64_t key, const struct station *st);
void station_map_done(struct station_map *map);

/* FNV-1a 64 of a NUL-terminated string. */
uint64_t station_map_hash_str(const char *s);

#endif
