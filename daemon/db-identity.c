/* SPDX-License-Identifier: MIT */
/* The database's identity and its marker file: a first start told from an emptied, lost or replaced database. */

/*
 * SQLite creates a database in any file it opens read-write: a database
 * file emptied by a failed copy, deleted by mistake or replaced by another
 * would be taken for a first start and provd would carry on with an empty
 * record of the line, issuing certificates for serials it had already
 * signed. So:
 *   - schema 4 stores a random id in the database (table instance);
 *   - provd keeps the same id in PATH.id beside it (written once, atomically);
 *   - at every start: no database and no marker is a first start; an empty
 *     (0-byte) file, a missing database whose marker remains, or a database
 *     whose id is not the marker's, is refused with what to do about it.
 * A database with no marker beside it (provd before schema 4, or a database
 * moved here on purpose) is adopted: its marker is written.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db-internal.h"
#include "schema/schema.h"

#define ID_LEN 32

static void marker_path(const char *path, char *buf, size_t len) {
        snprintf(buf, len, "%s.id", path);
}

/* 0 and the id, -ENOENT when there is no marker, other -errno. */
static int read_marker(const char *marker, char id[ID_LEN + 1]) {
        char buf[ID_LEN + 2];
        ssize_t n;
        int fd, r = 0;

        fd = open(marker, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf));
        if (n < 0)
                r = -errno;
        else if (n != ID_LEN + 1 || buf[ID_LEN] != '\n' || strspn(buf, "0123456789abcdef") != ID_LEN)
                r = -EBADMSG;
        else {
                memcpy(id, buf, ID_LEN);
                id[ID_LEN] = 0;
        }
        close(fd);
        return r;
}

/* Written beside the database, atomically (temporary file, fsync, rename, fsync of the directory). */
static int write_marker(const char *marker, const char *id) {
        char tmp[PATH_MAX + 8], dir[PATH_MAX], line[ID_LEN + 2];
        int fd, r = 0;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", marker) >= (int)sizeof(tmp) ||
            snprintf(dir, sizeof(dir), "%s", marker) >= (int)sizeof(dir))
                return -ENAMETOOLONG;
        snprintf(line, sizeof(line), "%s\n", id);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return -errno;
        if (write(fd, line, ID_LEN + 1) != ID_LEN + 1)
                r = errno ? -errno : -EIO;
        else if (fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r >= 0 && rename(tmp, marker) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlink(tmp);
                return r;
        }
        fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                (void)fsync(fd);
                close(fd);
        }
        return 0;
}

static int replaced(const char *path, const char *db_id, const char *marker, const char *id, char *errbuf,
                    size_t errlen) {
        return db_open_error(errbuf, errlen, -ESTALE,
                             "%s is not the database that was here: it is database %s, %s names %s; put the "
                             "right file back, or remove %s to adopt this one", path, db_id, marker, id, marker);
}

/* The id stored in the database file, read without writing to it; -ENOENT when it has none (schema < 4). */
static int stored_id(const char *path, char id[ID_LEN + 1]) {
        sqlite3 *conn = NULL;
        sqlite3_stmt *st = NULL;
        int r = -ENOENT;

        if (sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(conn, "SELECT id FROM instance WHERE one = 1", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == ID_LEN) {
                snprintf(id, ID_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
                r = 0;
        }
        sqlite3_finalize(st);
        sqlite3_close(conn);
        return r;
}

int db_identity_precheck(const char *path, char *errbuf, size_t errlen) {
        char marker[PATH_MAX + 8], id[ID_LEN + 1], db_id[ID_LEN + 1];
        struct stat st;
        int r;

        marker_path(path, marker, sizeof(marker));
        if (stat(path, &st) < 0) {
                if (errno != ENOENT)
                        return db_open_error(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
                r = read_marker(marker, id);
                if (r == -ENOENT)
                        return 0;       /* a first start */
                return db_open_error(errbuf, errlen, -ENOENT,
                                     "%s is missing, but %s shows a database was there (%s): refusing to "
                                     "start a new, empty one; restore the database file, or remove %s to "
                                     "start afresh", path, marker, r >= 0 ? id : "unreadable marker", marker);
        }
        if (S_ISREG(st.st_mode) && st.st_size == 0)
                return db_open_error(errbuf, errlen, -ENODATA,
                                     "%s is empty (0 bytes): refusing to take it for a new database; restore "
                                     "it from a backup, or remove the empty file if this is a first start", path);

        /*
         * A database of schema 4 or later that is not the one the marker
         * names: refused here, before opening it read-write could migrate it
         * or switch its journal. (An older one has no id yet: it is compared
         * once migrated, by db_identity_check().)
         */
        r = read_marker(marker, id);
        if (r < 0)
                return 0;       /* no marker (adopted later) or a bad one (db_identity_check() says so) */
        r = stored_id(path, db_id);
        if (r >= 0 && !streq(db_id, id))
                return replaced(path, db_id, marker, id, errbuf, errlen);
        return 0;
}

int db_identity_check(sqlite3 *conn, const char *path, char *errbuf, size_t errlen) {
        char marker[PATH_MAX + 8], id[ID_LEN + 1], db_id[ID_LEN + 1];
        sqlite3_stmt *st = NULL;
        int r, rc;

        marker_path(path, marker, sizeof(marker));
        rc = sqlite3_prepare_v2(conn, "SELECT id FROM instance WHERE one = 1", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW || sqlite3_column_bytes(st, 0) != ID_LEN) {
                r = rc == SQLITE_ROW || rc == SQLITE_DONE ? -EBADMSG : schema_errno(rc);
                db_open_error(errbuf, errlen, r < 0 ? r : -EIO, "%s: the database's identity is unreadable: %s",
                              path, rc == SQLITE_DONE ? "no row in table instance" : sqlite3_errmsg(conn));
                sqlite3_finalize(st);
                return r < 0 ? r : -EIO;
        }
        snprintf(db_id, sizeof(db_id), "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);

        r = read_marker(marker, id);
        if (r == -ENOENT) {
                r = write_marker(marker, db_id);
                if (r < 0)
                        return db_open_error(errbuf, errlen, r, "%s: cannot write %s: %s", path, marker,
                                             strerror(-r));
                return 0;
        }
        if (r < 0)
                return db_open_error(errbuf, errlen, r, "%s: %s", marker,
                                     r == -EBADMSG ? "not a provd database marker" : strerror(-r));
        if (!streq(id, db_id))
                return replaced(path, db_id, marker, id, errbuf, errlen);
        return 0;
}
