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
 * until that scan has finished every serial is "maybe known". The devices
 * table has no other writer: devices are created by DB_RECORD_ISSUANCE only
 * and never deleted.
 *
 * Growing: a set is sized for 4x the serials it starts with. When one is over
 * its capacity (its false positives would climb), a set 4x larger is made and
 * filled the same way: the loop adds every serial submitted from then on to
 * both, and the reader scans the table into the new one once every write
 * submitted before it was made has completed (so the scan sees them). Until
 * that scan has finished the full set answers "maybe" for everything; then
 * the new set replaces it.
 *
 * Threads: the loop adds and tests, the reader adds during its scan; bits are
 * set with atomic ORs and read with relaxed loads (a bit seen late only makes
 * a test answer "maybe"; an add on the loop precedes that loop's own test).
 * known.scanning is handed over under db->lock; a set's ready flag is the
 * reader's last touch of it (release), after which the loop may free the set
 * it replaces.
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

static struct known_set *set_new(const struct db_known *k, uint64_t expected, uint64_t after_writes) {
        uint64_t capacity = expected > UINT64_MAX / 64 ? UINT64_MAX / 64 : expected * 4;
        uint64_t least = k->min_capacity ? k->min_capacity : KNOWN_MIN_CAPACITY;
        uint64_t nbits = 64;
        struct known_set *ks;

        if (capacity < least)
                capacity = least;
        while (nbits < capacity * KNOWN_BITS_PER_SERIAL && nbits < (UINT64_C(1) << 40))
                nbits <<= 1;
        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return NULL;
        ks->words = calloc(nbits / 64, sizeof(uint64_t));
        if (!ks->words) {
                free(ks);
                return NULL;
        }
        ks->mask = nbits - 1;
        ks->capacity = capacity;
        ks->after_writes = after_writes;
        return ks;
}

static void set_free(struct known_set *ks) {
        if (ks) {
                free(ks->words);
                free(ks);
        }
}

int db_known_init(struct db *db, uint64_t expected) {
        struct known_set *ks = set_new(&db->known, expected, 0);

        if (!ks)
                return -ENOMEM;
        db->known.cur = db->known.scanning = ks;
        return 0;
}

void db_known_free(struct db *db) {
        set_free(db->known.cur);
        set_free(db->known.next);
        db->known = (struct db_known) { 0 };
}

/* @canon: a canonical serial (db_canon_hex()); any thread. */
static void set_add(struct known_set *ks, const char *canon) {
        uint64_t h1, h2;

        hash2(canon, &h1, &h2);
        for (unsigned i = 0; i < KNOWN_PROBES; i++) {
                uint64_t bit = (h1 + i * h2) & ks->mask;
                __atomic_fetch_or(&ks->words[bit >> 6], UINT64_C(1) << (bit & 63), __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&ks->added, 1, __ATOMIC_RELAXED);
}

static bool set_full(struct known_set *ks) {
        return __atomic_load_n(&ks->added, __ATOMIC_RELAXED) > ks->capacity;
}

static bool set_test(const struct known_set *ks, const char *canon) {
        uint64_t h1, h2;

        hash2(canon, &h1, &h2);
        for (unsigned i = 0; i < KNOWN_PROBES; i++) {
                uint64_t bit = (h1 + i * h2) & ks->mask;
                if (!(__atomic_load_n(&ks->words[bit >> 6], __ATOMIC_RELAXED) & (UINT64_C(1) << (bit & 63))))
                        return false;
        }
        return true;
}

/* The serial in its stored form (CANON_SERIAL's rule), or false when it has none (its request fails on its own). */
static bool canon_serial(const char *in, char out[DB_SERIAL_MAX]) {
        return db_hex_canon(in, DB_SERIAL_MAX, out, SERIAL_HEX_MIN, SERIAL_HEX_MAX) == 0;
}

/* Loop thread: the set being filled replaces the full one once its scan is done. */
static void maybe_swap(struct db_known *k) {
        if (k->next && __atomic_load_n(&k->next->ready, __ATOMIC_ACQUIRE)) {
                set_free(k->cur);
                k->cur = k->next;
                k->next = NULL;
                k->grown++;
        }
}

/* Loop thread: @k->cur is full; a set for 4x what it holds, scanned once the writes before it completed. */
static void grow(struct db *db) {
        struct db_known *k = &db->known;
        struct known_set *ks;

        ks = set_new(k, __atomic_load_n(&k->cur->added, __ATOMIC_RELAXED), 0);
        if (!ks)
                return;         /* tried again at the next add; meanwhile everything is "maybe" */
        uv_mutex_lock(&db->lock);
        ks->after_writes = db->writes_submitted;
        k->scanning = ks;       /* the reader drops a full set's scan for this one */
        db_reader_wake(db);
        uv_mutex_unlock(&db->lock);
        k->next = ks;
}

/* Loop thread, at every use: a filled set replaces the full one; a full one gets a larger successor. */
static void tend(struct db *db) {
        struct db_known *k = &db->known;

        maybe_swap(k);
        if (!k->next && set_full(k->cur))
                grow(db);
}

/*
 * Loop thread, before the issuance of @serial is queued. tend() first: a set
 * swapped in or made now must get @serial too (a set grow() makes is scanned
 * after the writes queued so far, which do not include this one).
 */
void db_known_add_serial(struct db *db, const char *serial) {
        struct db_known *k = &db->known;
        char canon[DB_SERIAL_MAX];

        if (!k->cur || !canon_serial(serial, canon))
                return;
        tend(db);
        set_add(k->cur, canon);
        if (k->next)
                set_add(k->next, canon);
}

bool db_device_maybe_known(struct db *db, const char *serial) {
        struct db_known *k = &db->known;
        char canon[DB_SERIAL_MAX];

        if (!k->cur)
                return true;
        tend(db);
        if (!__atomic_load_n(&k->cur->ready, __ATOMIC_ACQUIRE) || set_full(k->cur))
                return true;
        if (!canon_serial(serial, canon))
                return true;    /* the lookup reports what is wrong with it */
        if (set_test(k->cur, canon))
                return true;
        k->unread++;
        return false;
}

bool db_known_ready(struct db *db) {
        struct db_known *k = &db->known;

        if (k->cur)
                tend(db);
        return k->cur && __atomic_load_n(&k->cur->ready, __ATOMIC_ACQUIRE) && !set_full(k->cur);
}

int db_known_scan_step(struct db_reader *rd, struct known_set *ks) {
        sqlite3_stmt *st = rd->stmts[RSTMT_KNOWN_SCAN];
        unsigned n = 0;
        int rc;

        sqlite3_bind_text(st, 1, ks->scan_after, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, KNOWN_SCAN_CHUNK);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *s = (const char *)sqlite3_column_text(st, 0);
                size_t len = (size_t)sqlite3_column_bytes(st, 0);

                if (!s || len == 0 || len >= DB_SERIAL_MAX)
                        continue;       /* the schema's CHECK allows none of these */
                set_add(ks, s);
                memcpy(ks->scan_after, s, len + 1);
                n++;
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE)
                return -EIO;    /* never ready: every lookup goes to the reader, as without the filter */
        if (n < KNOWN_SCAN_CHUNK) {
                __atomic_store_n(&ks->ready, true, __ATOMIC_RELEASE);  /* the last touch of @ks */
                return 0;
        }
        return 1;
}
