/* SPDX-License-Identifier: MIT */
/* Checks of a database file: SQLite's integrity check with the damaged table named, totals against the rows. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"
#include "schema/schema.h"

/* The table or index whose b-tree has root page @page, or holds it (dbstat, when SQLite has it); "" when unknown. */
static void page_owner(sqlite3 *conn, long page, bool root, char *buf, size_t len) {
        static const char *const sql[] = {
                "SELECT type || ' ' || name FROM sqlite_schema WHERE rootpage = ?1",
                "SELECT 'b-tree ' || name FROM dbstat WHERE pageno = ?1",
        };

        buf[0] = 0;
        for (size_t i = 0; i < 2 && !buf[0]; i++) {
                sqlite3_stmt *st = NULL;

                if (i == 1 && root)
                        break;
                if (sqlite3_prepare_v2(conn, sql[i], -1, &st, NULL) != SQLITE_OK)
                        continue;
                sqlite3_bind_int64(st, 1, page);
                if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
                        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
                sqlite3_finalize(st);
        }
}

/*
 * One line of SQLite's report, with the table or index it concerns when the
 * line names a b-tree ("Tree N page M cell K: ...", N its root page) or a
 * page ("Page N: ..."). Empty for the banner "*** in database main ***".
 */
static void describe(sqlite3 *conn, const char *line, char *buf, size_t len) {
        const char *t;
        char name[160] = "";
        bool root = false;
        long page = 0;

        buf[0] = 0;
        if (strncmp(line, "***", 3) == 0)
                return;
        if ((t = strstr(line, "Tree ")))
                page = strtol(t + 5, NULL, 10), root = true;
        else if (strncmp(line, "Page ", 5) == 0)
                page = strtol(line + 5, NULL, 10);
        if (page > 0) {
                page_owner(conn, page, root, name, sizeof(name));
                /* A damaged page that is a table's root: its table. */
                if (!name[0] && !root)
                        page_owner(conn, page, true, name, sizeof(name));
        }
        if (name[0])
                snprintf(buf, len, "%s (%s)", line, name);
        else
                snprintf(buf, len, "%s", line);
}

int db_check_integrity(sqlite3 *conn, bool full, char *errbuf, size_t errlen) {
        sqlite3_stmt *st = NULL;
        unsigned problems = 0;
        size_t used = 0;
        int rc, r = 0;

        if (!conn)
                return -EINVAL;
        /* At most 10 problems: enough to name the damage, bounded whatever the file holds. */
        rc = sqlite3_prepare_v2(conn, full ? "PRAGMA integrity_check(10)" : "PRAGMA quick_check(10)", -1, &st,
                                NULL);
        if (rc != SQLITE_OK)
                return db_open_error(errbuf, errlen, schema_errno(rc) < 0 ? schema_errno(rc) : -EIO,
                                     "cannot check the database: %s", sqlite3_errmsg(conn));
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *msg = (const char *)sqlite3_column_text(st, 0);
                char copy[1024], *save = NULL;

                if (!msg || streq(msg, "ok"))
                        continue;
                /* A row can hold several lines (the first starts with a banner). */
                snprintf(copy, sizeof(copy), "%s", msg);
                for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                        char line[1200];

                        describe(conn, l, line, sizeof(line));
                        if (!line[0])
                                continue;
                        if (errbuf && errlen > used + 1) {
                                int n = snprintf(errbuf + used, errlen - used, "%s%s",
                                                 problems ? "; " : "database damaged: ", line);

                                used = MIN(errlen - 1, used + (n > 0 ? (size_t)n : 0));
                        }
                        problems++;
                }
        }
        if (rc != SQLITE_DONE) {
                /* The check itself could not read the file: that is damage too. */
                r = schema_errno(rc);
                if (errbuf && errlen > used)
                        snprintf(errbuf + used, errlen - used, "%sthe check stopped: %s",
                                 problems ? "; " : "database damaged: ", sqlite3_errmsg(conn));
                problems++;
        }
        sqlite3_finalize(st);
        if (problems)
                return r == -EBADMSG || r == 0 ? -EBADMSG : r;
        return 0;
}

int db_check_totals(sqlite3 *conn, char *errbuf, size_t errlen) {
        static const char sql[] =
                "SELECT t.name, t.n, c.n FROM totals t JOIN ("
                "SELECT 'devices.' || state AS name, count(*) AS n FROM devices GROUP BY state "
                "UNION ALL SELECT 'certificates.total', count(*) FROM certificates "
                "UNION ALL SELECT 'certificates.' || status, count(*) FROM certificates GROUP BY status "
                "UNION ALL SELECT 'attempts.' || outcome, count(*) FROM attempts GROUP BY outcome "
                "UNION ALL SELECT 'aws_outbox.' || state, count(*) FROM aws_outbox GROUP BY state) c "
                "ON c.name = t.name WHERE t.n <> c.n "
                "UNION ALL SELECT t.name, t.n, 0 FROM totals t WHERE t.n <> 0 AND t.name NOT IN ("
                "SELECT 'devices.' || state FROM devices UNION SELECT 'certificates.' || status FROM certificates "
                "UNION SELECT 'certificates.total' FROM certificates "
                "UNION SELECT 'attempts.' || outcome FROM attempts UNION SELECT 'aws_outbox.' || state FROM aws_outbox)";
        sqlite3_stmt *st = NULL;
        int rc, r = 0;

        rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return db_open_error(errbuf, errlen, schema_errno(rc) < 0 ? schema_errno(rc) : -EIO,
                                     "cannot count the rows: %s", sqlite3_errmsg(conn));
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = db_open_error(errbuf, errlen, -EBADMSG, "totals differ from the rows: %s is %" PRId64
                                  ", the rows count %" PRId64, (const char *)sqlite3_column_text(st, 0),
                                  (int64_t)sqlite3_column_int64(st, 1), (int64_t)sqlite3_column_int64(st, 2));
        else if (rc != SQLITE_DONE)
                r = db_open_error(errbuf, errlen, schema_errno(rc) < 0 ? schema_errno(rc) : -EIO,
                                  "cannot count the rows: %s", sqlite3_errmsg(conn));
        sqlite3_finalize(st);
        return r;
}
