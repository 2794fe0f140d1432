/* SPDX-License-Identifier: MIT */
/* provd's SQLite schema: embedded numbered migrations, connection setup and the one SQLite→errno map. */
#ifndef SCHEMA_SCHEMA_H
#define SCHEMA_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>

/*
 * Glossary
 *   migration   schema/NNNN-name.sql, embedded at build time by embed.py.
 *               Version N is applied in one IMMEDIATE transaction together
 *               with PRAGMA user_version = N and a schema_history row.
 *   version     PRAGMA user_version: the last migration applied. 0 = empty.
 *   application PRAGMA application_id = 0x70726f76 ('prov'), set by 0001:
 *               how a provd database is told from any other SQLite file.
 *
 * All functions return 0 (or a count) on success and -errno on failure.
 * When @errbuf is not NULL it receives a one-line, operator-readable reason
 * on failure (and is left alone on success).
 */

#define SCHEMA_APPLICATION_ID 0x70726f76

struct schema_migration {
        unsigned version;               /* 1, 2, 3, ... */
        const char *name;               /* "0001-init" */
        const char *sha256;             /* hex SHA-256 of the SQL file, recorded in schema_history */
        const char *sql;
};

/** The embedded migrations in version order; *ret_n is their count. Static data. */
const struct schema_migration *schema_migrations(size_t *ret_n);

/** The highest version this binary knows. */
unsigned schema_version_latest(void);

/**
 * Maps an SQLite result code (primary or extended) to -errno. 0 for
 * SQLITE_OK/ROW/DONE. The one place the daemon translates SQLite errors:
 *   BUSY, LOCKED                      -EBUSY
 *   CONSTRAINT_UNIQUE/PRIMARYKEY      -EEXIST   (also any other CONSTRAINT_*
 *                                               not listed below)
 *   CONSTRAINT_FOREIGNKEY             -ENOENT   (refers to a row that is not there)
 *   CONSTRAINT_CHECK/NOTNULL/DATATYPE -EINVAL   (a value out of its domain)
 *   CONSTRAINT_TRIGGER                -EPERM    (RAISE(ABORT): append-only audit log)
 *   FULL                              -ENOSPC
 *   CORRUPT, NOTADB                   -EBADMSG
 *   NOMEM                             -ENOMEM
 *   READONLY                          -EROFS
 *   PERM, AUTH                        -EACCES
 *   TOOBIG                            -E2BIG
 *   MISUSE, RANGE, MISMATCH           -EINVAL
 *   IOERR, CANTOPEN, everything else  -EIO
 */
int schema_errno(int sqlite_rc);

struct schema_open_options {
        bool readonly;                  /* no migration; for offline tools */
        unsigned busy_timeout_ms;       /* 0 = 5000 */
};

/**
 * Opens (read-write: creating) the database at @path and prepares the
 * connection: extended result codes, SQLITE_DBCONFIG_DEFENSIVE,
 * foreign_keys=ON, busy_timeout. Read-write also sets journal_mode=WAL and
 * synchronous=FULL (every COMMIT is durable; never weakened) and migrates
 * to schema_version_latest(). Read-only accepts versions 1..latest.
 *
 * Fails with -EBADMSG for a file that is not an SQLite database or is
 * corrupt, -EMEDIUMTYPE for an SQLite database that is not provd's,
 * -EPROTONOSUPPORT for a database written by a newer provd, -ENODATA for an
 * empty database opened read-only, -ENOENT/-EACCES when it cannot be opened.
 * The connection is opened SQLITE_OPEN_NOMUTEX: use it from one thread at a
 * time. Caller closes *ret with sqlite3_close().
 */
int schema_open(sqlite3 **ret, const char *path, const struct schema_open_options *opt,
                char *errbuf, size_t errlen);

/** Reads PRAGMA user_version into *ret. */
int schema_version(sqlite3 *db, unsigned *ret);

/**
 * Applies every migration newer than the database's version, each in its own
 * BEGIN IMMEDIATE ... COMMIT together with its user_version bump, so a crash
 * leaves the database at a whole version. Returns the number applied (0 when
 * current). -EPROTONOSUPPORT when the database is newer than this binary,
 * -EMEDIUMTYPE when it is not a provd database, -EBADMSG when it is corrupt.
 * Must be called outside a transaction.
 */
int schema_migrate(sqlite3 *db, char *errbuf, size_t errlen);

#endif
