/* SPDX-License-Identifier: MIT */
/* provctl: the commands on the database file, without provd (audit verify/export, db check, aws export-bulk). */

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "audit.h"
#include "db.h"
#include "schema/schema.h"
#include "util.h"
#include "provctl.h"

int cmd_audit(int argc, char **argv) {
        sqlite3 *db = NULL;
        char err[256] = "";
        int64_t rows = 0, bad = 0, from = 0, to = 0;
        int r;

        if (argc < 1 || (!streq(argv[0], "verify") && !streq(argv[0], "export"))) {
                fprintf(stderr, "provctl: usage: provctl audit verify|export [--db PATH]\n");
                return -EINVAL;
        }
        if ((arg_since && parse_time(arg_since, &from) < 0) || (arg_until && parse_time(arg_until, &to) < 0)) {
                fprintf(stderr, "provctl: cannot parse --since/--until\n");
                return -EINVAL;
        }
        if (!streq(arg_format, "jsonl") && !streq(arg_format, "csv")) {
                fprintf(stderr, "provctl: --format must be jsonl or csv\n");
                return -EINVAL;
        }
        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err[0] ? err : strerror(-r));
                return r;
        }
        if (streq(argv[0], "verify")) {
                r = audit_verify(db, &rows, &bad);
                /* -EBADMSG is also what SQLite's "corrupt" maps to: a broken chain names its row. */
                if (r == -EBADMSG && bad > 0)
                        printf("audit log BROKEN: %" PRId64 " rows read, first bad row id %" PRId64
                               " (edited, inserted or deleted rows)\n", rows, bad);
                else if (r == -EBADMSG)
                        fprintf(stderr, "provctl: cannot read the audit log: the database file is corrupt "
                                "(sqlite3 %s 'PRAGMA integrity_check' shows where)\n", arg_db);
                else if (r < 0)
                        fprintf(stderr, "provctl: cannot read the audit log: %s\n", strerror(-r));
                else
                        printf("audit log intact: %" PRId64 " rows, hash chain verified\n", rows);
        } else {
                r = audit_export(db, stdout, streq(arg_format, "csv") ? AUDIT_FORMAT_CSV : AUDIT_FORMAT_JSONL,
                                 from, to);
                if (r < 0)
                        fprintf(stderr, "provctl: export failed: %s\n", strerror(-r));
        }
        sqlite3_close(db);
        return r < 0 ? r : 0;
}

/*
 * provctl db check: the whole integrity check (every page, every index entry
 * against its row), then the totals behind `stats` against the rows. Read
 * only, on a snapshot: safe while provd runs. Exit status 1 on any problem.
 */
int cmd_db(int argc, char **argv) {
        sqlite3 *db = NULL;
        char err[2048] = "";
        unsigned version = 3;
        int r, rt;

        if (argc < 1 || !streq(argv[0], "check")) {
                fprintf(stderr, "provctl: usage: provctl db check [--db PATH]\n");
                return -EINVAL;
        }
        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err[0] ? err : strerror(-r));
                return r;
        }
        /* One read transaction: both checks see the same snapshot. */
        (void)sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        r = db_check_integrity(db, true, err, sizeof err);
        if (r < 0)
                printf("%s: %s\n", arg_db, err);
        else
                printf("%s: integrity ok (every page and index checked)\n", arg_db);
        rt = 0;
        if (r >= 0 && schema_version(db, &version) >= 0 && version < 3)
                printf("%s: no totals before schema 3 (this file is at %u; provd migrates it when it opens it)\n",
                       arg_db, version);
        else if (r >= 0)
                rt = db_check_totals(db, err, sizeof err);
        if (rt < 0)
                printf("%s: %s\n", arg_db, err);
        else if (r >= 0 && version >= 3)
                printf("%s: totals ok (stats match the rows)\n", arg_db);
        (void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(db);
        return r < 0 ? r : rt;
}

/* JSON lines of the template parameters for StartThingRegistrationTask, from the database (no daemon). */
int aws_export_bulk(const char *path) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        char err[512] = "";
        FILE *f;
        unsigned long n = 0;
        int r, rc;

        r = db_open_readonly_err(&db, arg_db, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, err[0] ? err : strerror(-r));
                return r;
        }
        rc = sqlite3_prepare_v2(db,
                                "SELECT c.thing_name, c.device_serial, c.der, c.sha256 FROM aws_outbox o "
                                "JOIN certificates c ON c.id = o.cert_id "
                                "WHERE o.kind = 'register_cert' AND (?1 OR o.state <> 'done') ORDER BY o.id",
                                -1, &st, NULL);
        if (rc != SQLITE_OK) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, sqlite3_errmsg(db));
                sqlite3_close(db);
                return -EIO;
        }
        sqlite3_bind_int(st, 1, arg_all);
        f = streq(path, "-") ? stdout : fopen(path, "wxe");
        if (!f) {
                r = -errno;
                fprintf(stderr, "provctl: %s: %m (an existing file is not overwritten)\n", path);
                sqlite3_finalize(st);
                sqlite3_close(db);
                return r;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                char *pem = db_der_to_pem(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2));
                cJSON *o = cJSON_CreateObject();
                char *line;

                /* The parameter names of the template in docs/AWS.md ("Bulk registration"). */
                cJSON_AddStringToObject(o, "ThingName", (const char *)sqlite3_column_text(st, 0));
                cJSON_AddStringToObject(o, "SerialNumber", (const char *)sqlite3_column_text(st, 1));
                cJSON_AddStringToObject(o, "CertificatePem", pem ? pem : "");
                cJSON_AddStringToObject(o, "CertificateId", (const char *)sqlite3_column_text(st, 3));
                line = cJSON_PrintUnformatted(o);
                if (!pem || !line || fprintf(f, "%s\n", line) < 0)
                        r = -EIO;
                free(line);
                free(pem);
                cJSON_Delete(o);
                if (r < 0)
                        break;
                n++;
        }
        if (r >= 0 && rc != SQLITE_DONE) {
                fprintf(stderr, "provctl: %s: %s\n", arg_db, sqlite3_errmsg(db));
                r = -EIO;
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (f != stdout && fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return r;
        fprintf(stderr, "%lu device(s) written to %s\n", n, path);
        return 0;
}
