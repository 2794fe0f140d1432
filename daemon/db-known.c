/* SPDX-License-Identifier: MIT */
/*
 * The known-serials filter: a Bloom filter over every serial in the devices
 * table and every serial of an issuance submitted since the start, so that a
 * fresh board's lookup (most boards on a line are fresh) is answered on the
 * loop without a hand-off to the reader thread and a read through a page
 * cache the writer's last commit just invalidated.
 *
 * It may only err one way. "Maybe known" (a false positive, about 1 % at its
 * capacity) costs the lookup the board would have had anyway; "unknown" must
 * be true, since a board told unknown goes to GET_CSR: a known board with its
 * key would be issued a second certificate instead of proving the recorded
 * one (the issuance record still refuses a known serial with another key, or
 * one marked a clone, before anything reaches the board). So: a serial is added before
 * its issuance is queued (db_submit(), on the loop), the reader thread adds
 * every serial already in the table (in chunks, between its requests), and
 * until that scan has finished or once the filter holds more serials than it
 * was sized for, every serial is "maybe known". The devices table has no other
 * writer: devices are created by DB_RECORD_ISSUANCE only and never deleted.
 *
 * Threads: the loop adds and tests, the reader adds during its scan; bits are
 * set with atomic ORs and read with relaxed loads (a bit seen late only makes
 * a test answer "maybe"; an add on the loop precedes that loop's own test).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"

#define KNOWN_PROBES 7                  /* k for ~1 % at 10 bits per serial */
#define KNOWN_BITS_PER_SERIAL 10
#define KNOWN_MIN_CAPACITY 65536        /* 128 KiB of bits at the least */
#define KNOWN_SCAN_CHUNK 4096           /* serials per read transaction of the scan */

static uint64_t mix64(uint64_t x) {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
}

static void hash2(const char *s, uint64_t *h1, uint64_t *h2) {
        uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a, then two mixes of it */

        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
        *h1 = mix64(h);
        *h2 = mix64(h ^ 0x9e3779b97f4a7c15ULL) | 1;
}

int db_known_init(struct db_known *k, uint64_t expected) {
        uint64_t capacity = expected > UINT64_MAX / 64 ? UINT64_MAX / 64 : expected * 4;
        uint64_t nbits = 64;

        if (capacity < KNOWN_MIN_CAPACITY)
                capacity = KNOWN_MIN_CAPACITY;
        while (nbits < capacity * KNOWN_BITS_PER_SERIAL && nbits < (UINT64_C(1) << 40))
                nbits <<= 1;
        *k = (struct db_known) { .mask = nbits - 1, .capacity = capacity };
        k->words = calloc(nbits / 64, sizeof(uint64_t));
        return k->words ? 0 : -ENOMEM;
}

void db_known_free(struct db_known *k) {
        free(k->words);
        *k = (struct db_known) { 0 };
}

/* @canon: a canonical serial (db_canon_hex()); any thread. */
static void known_add(struct db_known *k, const char *canon) {
        uint64_t h1, h2;

        if (!k->words)
                return;
        hash2(canon, &h1, &h2);
        for (unsigned i = 0; i < KNOWN_PROBES; i++) {
                uint64_t bit = (h1 + i * h2) & k->mask;
                __atomic_fetch_or(&k->words[bit >> 6], UINT64_C(1) << (bit & 63), __ATOMIC_RELAXED);
        }
        if (__atomic_add_fetch(&k->added, 1, __ATOMIC_RELAXED) > k->capacity)
                __atomic_store_n(&k->full, true, __ATOMIC_RELEASE);
}

/* The serial in its stored form, or false when it has none (its request fails on its own). */
static bool canon_serial(const char *in, char out[DB_SERIAL_MAX]) {
        size_t n = strnlen(in, DB_SERIAL_MAX);

        /* The rule of CANON_SERIAL (db-internal.h): 2-64 hex digits, an even number. */
        if (n < 2 || n > 64 || n >= DB_SERIAL_MAX || !hex_valid(in, n, n / 2, n / 2))
                return false;
        hex_lower(in, n, out);
        return true;
}

void db_known_add_serial(struct db_known *k, const char *serial) {
        char canon[DB_SERIAL_MAX];

        if (canon_serial(serial, canon))
                known_add(k, canon);
}

bool db_device_maybe_known(struct db *db, const char *serial) {
        struct db_known *k = &db->known;
        char canon[DB_SERIAL_MAX];
        uint64_t h1, h2;

        if (!k->words || !__atomic_load_n(&k->ready, __ATOMIC_ACQUIRE) || __atomic_load_n(&k->full, __ATOMIC_ACQUIRE))
                return true;
        if (!canon_serial(serial, canon))
                return true;    /* the lookup reports what is wrong with it */
        hash2(canon, &h1, &h2);
        for (unsigned i = 0; i < KNOWN_PROBES; i++) {
                uint64_t bit = (h1 + i * h2) & k->mask;
                if (!(__atomic_load_n(&k->words[bit >> 6], __ATOMIC_RELAXED) & (UINT64_C(1) << (bit & 63)))) {
                        k->unread++;
                        return false;
                }
        }
        return true;
}

int db_known_scan_step(struct db_reader *rd, struct db_known *k) {
        sqlite3_stmt *st = rd->stmts[RSTMT_KNOWN_SCAN];
        unsigned n = 0;
        int rc;

        if (!k->words || k->scan_done)
                return 0;
        sqlite3_bind_text(st, 1, k->scan_after, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, KNOWN_SCAN_CHUNK);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *s = (const char *)sqlite3_column_text(st, 0);
                size_t len = (size_t)sqlite3_column_bytes(st, 0);

                if (!s || len == 0 || len >= DB_SERIAL_MAX)
                        continue;       /* the schema's CHECK allows none of these */
                known_add(k, s);
                memcpy(k->scan_after, s, len + 1);
                n++;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) {
                /* Never ready: every lookup goes to the reader, as without the filter. */
                k->scan_done = true;
                return -EIO;
        }
        if (n < KNOWN_SCAN_CHUNK) {
                k->scan_done = true;
                __atomic_store_n(&k->ready, true, __ATOMIC_RELEASE);
                return 0;
        }
        return 1;
}
