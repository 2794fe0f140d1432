/* SPDX-License-Identifier: MIT */
/* The audit log's hash chain: canonical row hash, append, verify, export (JSONL/CSV). */
#ifndef PROVD_AUDIT_H
#define PROVD_AUDIT_H

#include <stdint.h>
#include <stdio.h>
#include <sqlite3.h>

/*
 * Chain (also documented in schema/0001-init.sql):
 *
 *   hash(row) = SHA-256( "provd-audit-v1" 0x00
 *                        || prev_hash                       32 bytes
 *                        || be64(id) || be64(ts)            ts: ms since epoch, UTC
 *                        || str(actor) || str(action) || str(serial) || str(details) )
 *   str(x)    = be32(byte length of x) || x                (bytes as stored, no NUL)
 *   str(NULL) = be32(0xffffffff)                            (serial only)
 *
 * Row 1 has prev_hash = 32 zero bytes; row n has id n and prev_hash =
 * hash(row n-1). The length prefixes make the encoding injective, so no two
 * different rows hash the same input. sqlite_sequence keeps the highest id
 * ever used (AUTOINCREMENT), so a deleted last row is noticed too.
 *
 * What the chain cannot do alone: someone who can write the file and knows
 * this algorithm can rebuild the whole chain after an edit. Comparing the
 * head hash (audit_head()) with a copy kept elsewhere — the journal line
 * provd logs, an earlier export — closes that gap.
 */

#define AUDIT_HASH_LEN 32

struct audit_entry {
        int64_t id;
        int64_t ts;                     /* ms since the epoch, UTC */
        const char *actor;              /* "provd" or "uid:<n>" */
        const char *action;             /* "noun.verb" */
        const char *serial;             /* NULL = none */
        const char *details;            /* JSON object text, NULL = "{}" */
};

enum audit_format {
        AUDIT_FORMAT_JSONL,
        AUDIT_FORMAT_CSV,
};

/* The statements every appender uses (audit_insert() binds the first). */
#define AUDIT_SQL_INSERT                                                        \
        "INSERT INTO audit_log (id, ts, actor, action, serial, details, prev_hash, hash) " \
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
#define AUDIT_SQL_HEAD                                                          \
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0), " \
        "(SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1)"

/** Computes the chain hash of @e following @prev_hash. */
void audit_hash(const uint8_t prev_hash[AUDIT_HASH_LEN], const struct audit_entry *e,
                uint8_t ret[AUDIT_HASH_LEN]);

/**
 * The chain head: the highest id ever handed out (0 for an empty log) and
 * the hash of the last row present (zeros when empty). Call inside the
 * transaction that appends, so the head cannot move. @head, when not NULL,
 * is a statement prepared from AUDIT_SQL_HEAD (reset after use).
 */
int audit_head(sqlite3 *db, sqlite3_stmt *head, int64_t *ret_id, uint8_t ret_hash[AUDIT_HASH_LEN]);

/**
 * Binds @e (id and ts must be set), @prev_hash and its hash to @insert (a
 * statement prepared from AUDIT_SQL_INSERT), runs and resets it. Writes the
 * new row's hash to @ret_hash. Returns 0 or -errno (schema_errno()).
 */
int audit_insert(sqlite3_stmt *insert, const struct audit_entry *e,
                 const uint8_t prev_hash[AUDIT_HASH_LEN], uint8_t ret_hash[AUDIT_HASH_LEN]);

/**
 * Appends @e (its id is ignored; ts 0 = now) in its own IMMEDIATE
 * transaction, or in a savepoint of the caller's one. For offline tools:
 * the daemon's writer thread appends through DB_AUDIT. Returns the new id
 * in *ret_id (may be NULL). -EINVAL for a field the schema refuses.
 */
int audit_append(sqlite3 *db, const struct audit_entry *e, int64_t *ret_id);

/**
 * Recomputes the whole chain in one read transaction. Returns 0 when it is
 * intact, -EBADMSG when it is not; in both cases *ret_rows is the number of
 * rows read and *ret_first_bad_id the first row that fails (0 when intact):
 * an edited row (its hash), a row after a deleted one (id gap or prev_hash),
 * an inserted row (id, prev_hash or hash), or the id after a deleted last
 * row. Other -errno when the database cannot be read. Either pointer may be
 * NULL.
 */
int audit_verify(sqlite3 *db, int64_t *ret_rows, int64_t *ret_first_bad_id);

/**
 * Writes the rows with @from <= ts < @to (ms; @to 0 = no upper bound) in id
 * order: JSONL, one object per line {"id","ts","time" (RFC 3339 UTC),
 * "actor","action","serial","details" (the JSON object),"prev_hash","hash"
 * (hex)}; or CSV (RFC 4180: header line, CRLF, every field quoted) with the
 * same columns, details as JSON text. Returns the number of rows written
 * (capped at INT_MAX), -EIO when writing @out fails.
 */
int audit_export(sqlite3 *db, FILE *out, enum audit_format format, int64_t from, int64_t to);

#endif
