/* SPDX-License-Identifier: MIT */
/* Unit tests for schema/: embedded migrations, version checks, refusal of corrupt and foreign files. */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "schema/schema.h"

#ifndef TEST_DATA_DIR
#error "TEST_DATA_DIR must point at tests/data"
#endif

struct fixture {
        char dir[64];
        char path[128];
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-schema-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/provd.db", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static int64_t query_int(sqlite3 *db, const char *sql) {
        sqlite3_stmt *st = NULL;
        int64_t v;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static void query_text(sqlite3 *db, const char *sql, char *buf, size_t len) {
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
}

static int raw_exec(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        int rc;

        rc = sqlite3_open(path, &db);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_close(db);
        return rc;
}

static void copy_fixture(const char *name, const char *dst) {
        char src[512], buf[4096];
        FILE *in, *out;
        size_t n;

        snprintf(src, sizeof(src), "%s/%s", TEST_DATA_DIR, name);
        in = fopen(src, "rbe");
        assert_non_null(in);
        out = fopen(dst, "wbe");
        assert_non_null(out);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        assert_int_equal(fclose(out), 0);
}

static void file_digest(const char *path, uint64_t *ret_size, uint64_t *ret_sum) {
        FILE *in = fopen(path, "rbe");
        uint64_t sum = 1469598103934665603ull, size = 0;
        int c;

        assert_non_null(in);
        while ((c = fgetc(in)) != EOF) {
                sum = (sum ^ (uint64_t)c) * 1099511628211ull;
                size++;
        }
        fclose(in);
        *ret_size = size;
        *ret_sum = sum;
}

static void test_embedded_list(void **state) {
        const struct schema_migration *m;
        size_t n;

        m = schema_migrations(&n);
        assert_true(n >= 1);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(m[i].version, i + 1);
                assert_int_equal(strlen(m[i].sha256), 64);
                assert_true(strlen(m[i].sql) > 0);
                assert_int_equal(strncmp(m[i].name, "000", 3), 0);
        }
        assert_int_equal(schema_version_latest(), n);
        assert_string_equal(m[0].name, "0001-init");
}

static void test_from_empty(void **state) {
        struct fixture *f = *state;
        char buf[64], err[256] = "";
        sqlite3 *db = NULL;
        unsigned v = 0;

        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), 0);
        assert_string_equal(err, "");
        assert_int_equal(schema_version(db, &v), 0);
        assert_int_equal(v, schema_version_latest());

        /* Connection settings the durability rules depend on. */
        query_text(db, "PRAGMA journal_mode", buf, sizeof(buf));
        assert_string_equal(buf, "wal");
        assert_int_equal(query_int(db, "PRAGMA synchronous"), 2 /* FULL */);
        assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
        assert_int_equal(query_int(db, "PRAGMA application_id"), SCHEMA_APPLICATION_ID);

        /* Every table there, one history row per migration. */
        assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                                       "('signers','devices','certificates','attempts','aws_outbox',"
                                       "'audit_log','schema_history')"), 7);
        assert_int_equal(query_int(db, "SELECT count(*) FROM schema_history"), schema_version_latest());
        assert_int_equal(query_int(db, "SELECT count(*) FROM schema_history WHERE length(sha256) = 64 "
                                       "AND applied_at > 1600000000000"), schema_version_latest());
        query_text(db, "PRAGMA integrity_check", buf, sizeof(buf));
        assert_string_equal(buf, "ok");
        sqlite3_close(db);
}

static void test_reopen_idempotent(void **state) {
        struct fixture *f = *state;
        sqlite3 *db = NULL;

        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO signers (name, key_uri, cert_der, cert_sha256, subject, "
                                          "not_before, not_after, created_at) VALUES ('s', 'file:/k.pem', x'30', "
                                          "'00000000000000000000000000000000000000000000000000000000000000aa', "
                                          "'CN=s', 0, 1, 0)", NULL, NULL, NULL), SQLITE_OK);
        /* Already current: nothing applied. */
        assert_int_equal(schema_migrate(db, NULL, 0), 0);
        sqlite3_close(db);

        db = NULL;
        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);
        assert_int_equal(query_int(db, "SELECT count(*) FROM schema_history"), schema_version_latest());
        assert_int_equal(query_int(db, "SELECT count(*) FROM signers"), 1);
        sqlite3_close(db);
}

/*
 * A newer provd's database in rollback-journal mode (as a newer provd might
 * leave it, or a restored backup): refused before journal_mode = WAL could
 * rewrite its header. Byte for byte the same file, and no -wal beside it.
 */
static void test_newer_refused_untouched(void **state) {
        struct fixture *f = *state;
        char sql[256], err[256] = "", wal[160];
        uint64_t size0, sum0, size1, sum1;
        sqlite3 *db = NULL;

        snprintf(sql, sizeof(sql), "PRAGMA journal_mode = DELETE; PRAGMA application_id = %d; "
                                   "PRAGMA user_version = %u; CREATE TABLE future (x INTEGER)",
                 SCHEMA_APPLICATION_ID, schema_version_latest() + 1);
        assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
        file_digest(f->path, &size0, &sum0);

        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), -EPROTONOSUPPORT);
        assert_null(db);
        assert_non_null(strstr(err, "newer"));

        file_digest(f->path, &size1, &sum1);
        assert_int_equal(size0, size1);
        assert_true(sum0 == sum1);
        snprintf(wal, sizeof(wal), "%s-wal", f->path);
        assert_int_equal(access(wal, F_OK), -1);
}

static void test_newer_refused(void **state) {
        struct fixture *f = *state;
        char sql[64], err[256] = "";
        uint64_t size0, sum0, size1, sum1;
        sqlite3 *db = NULL;

        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);
        sqlite3_close(db);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %u", schema_version_latest() + 1);
        assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
        file_digest(f->path, &size0, &sum0);

        db = NULL;
        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), -EPROTONOSUPPORT);
        assert_null(db);
        assert_non_null(strstr(err, "newer"));

        err[0] = 0;
        assert_int_equal(schema_open(&db, f->path, &(struct schema_open_options){ .readonly = true },
                                     err, sizeof(err)), -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "newer"));

        /* Refused without writing anything. */
        file_digest(f->path, &size1, &sum1);
        assert_int_equal(size0, size1);
        assert_true(sum0 == sum1);
}

static void check_refused(struct fixture *f, const char *fixture, int expected, const char *needle) {
        char err[256] = "";
        uint64_t size0, sum0, size1, sum1;
        sqlite3 *db = NULL;

        copy_fixture(fixture, f->path);
        file_digest(f->path, &size0, &sum0);

        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), expected);
        assert_null(db);
        assert_non_null(strstr(err, needle));

        err[0] = 0;
        assert_int_equal(schema_open(&db, f->path, &(struct schema_open_options){ .readonly = true },
                                     err, sizeof(err)), expected);
        assert_non_null(strstr(err, needle));

        file_digest(f->path, &size1, &sum1);
        assert_int_equal(size0, size1);
        assert_true(sum0 == sum1);
}

static void test_notadb_refused(void **state) {
        check_refused(*state, "db-notadb.sqlite", -EBADMSG, "not an SQLite database");
}

static void test_corrupt_refused(void **state) {
        check_refused(*state, "db-corrupt.sqlite", -EBADMSG, "corrupt");
}

static void test_truncated_refused(void **state) {
        check_refused(*state, "db-truncated.sqlite", -EBADMSG, "corrupt");
}

static void test_foreign_refused(void **state) {
        struct fixture *f = *state;
        char err[256] = "";
        sqlite3 *db = NULL;

        /* Somebody else's database: never migrate into it. */
        assert_int_equal(raw_exec(f->path, "CREATE TABLE photos (id INTEGER PRIMARY KEY, data BLOB)"), SQLITE_OK);
        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), -EMEDIUMTYPE);
        assert_non_null(strstr(err, "not a provd database"));

        assert_int_equal(raw_exec(f->path, "PRAGMA application_id = 42"), SQLITE_OK);
        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), -EMEDIUMTYPE);
        assert_null(db);
}

static void test_readonly(void **state) {
        struct fixture *f = *state;
        const struct schema_open_options ro = { .readonly = true };
        char err[256] = "";
        sqlite3 *db = NULL;

        assert_int_equal(schema_open(&db, f->path, &ro, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "cannot open"));

        assert_int_equal(raw_exec(f->path, "PRAGMA user_version = 0"), SQLITE_OK);
        assert_int_equal(schema_open(&db, f->path, &ro, err, sizeof(err)), -ENODATA);

        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);
        sqlite3_close(db);

        db = NULL;
        assert_int_equal(schema_open(&db, f->path, &ro, NULL, 0), 0);
        assert_int_equal(query_int(db, "SELECT count(*) FROM devices"), 0);
        assert_int_equal(sqlite3_exec(db, "DELETE FROM devices", NULL, NULL, NULL) & 0xff, SQLITE_READONLY);
        sqlite3_close(db);
}

static void test_old_file_migrates(void **state) {
        struct fixture *f = *state;
        sqlite3 *db = NULL;
        unsigned v;

        copy_fixture("db-v1.sqlite", f->path);
        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);
        assert_int_equal(schema_version(db, &v), 0);
        assert_int_equal(v, schema_version_latest());
        assert_int_equal(query_int(db, "SELECT count(*) FROM attempts"), 40);
        assert_int_equal(query_int(db, "SELECT count(*) FROM attempts WHERE outcome = 'failed'"), 40);
        sqlite3_close(db);
}

#define Z32 "0000000000000000000000000000000000000000000000000000000000000000"
#define PK04 "x'04" Z32 Z32 "'"
#define PK02 "x'02" Z32 "'"

static int count_rows(sqlite3 *db, const char *sql) {
        return (int)query_int(db, sql);
}

/*
 * A schema-1 database with one board's full history (signer, device,
 * certificate, attempt, outbox row): migration 2 rebuilds certificates and
 * drops two indexes; every row, id and reference survives, and the rebuilt
 * table enforces what the old one did except the dropped UNIQUE(sha256).
 */
static void test_v1_data_migrates(void **state) {
        struct fixture *f = *state;
        const struct schema_migration *m;
        char sql[512], buf[64];
        sqlite3 *db = NULL;
        unsigned v;
        size_t n;

        m = schema_migrations(&n);
        if (n < 2)
                skip();
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, m[0].sql, NULL, NULL, NULL), SQLITE_OK);
        snprintf(sql, sizeof(sql), "INSERT INTO schema_history VALUES (1, '%s', '%s', 1700000000000); "
                                   "PRAGMA user_version = 1", m[0].name, m[0].sha256);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db,
                "INSERT INTO signers (id, name, key_uri, cert_der, cert_sha256, subject, not_before, not_after, "
                "  created_at) VALUES (7, 's', 'file:/k.pem', x'30', '" Z32 "', 'CN=s', 0, 1, 0);"
                "INSERT INTO devices (serial, model, fw_version, pubkey, state, first_seen, provisioned_at, "
                "  updated_at) VALUES ('0123ab', 'm', '1', " PK04 ", 'provisioned', 5, 6, 6);"
                "INSERT INTO certificates (id, device_serial, signer_id, serial_hex, sha256, der, thing_name, "
                "  not_before, not_after, issued_at, proven_at, status, status_at) VALUES (42, '0123ab', 7, "
                "  '4001', '" Z32 "', x'3082', 'thing-0123ab', 1, 2, 5, 6, 'active', 6);"
                "UPDATE devices SET current_cert_id = 42;"
                "INSERT INTO attempts (port, slot, serial, started_at, finished_at, outcome, step, cert_id) "
                "  VALUES ('/dev/ttyACM0', 'a', '0123ab', 4, 6, 'provisioned', 'done', 42);"
                "INSERT INTO aws_outbox (kind, cert_id, next_attempt_at, created_at) "
                "  VALUES ('register_cert', 42, 5, 5);"
                "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        db = NULL;
        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);
        assert_int_equal(schema_version(db, &v), 0);
        assert_int_equal(v, schema_version_latest());
        assert_int_equal(count_rows(db, "SELECT count(*) FROM schema_history"), schema_version_latest());

        /* Every row and reference kept. */
        assert_int_equal(count_rows(db, "SELECT count(*) FROM certificates WHERE id = 42 AND device_serial = "
                                        "'0123ab' AND signer_id = 7 AND serial_hex = '4001' AND sha256 = '" Z32 "' "
                                        "AND der = x'3082' AND thing_name = 'thing-0123ab' AND not_before = 1 "
                                        "AND not_after = 2 AND issued_at = 5 AND proven_at = 6 AND status = "
                                        "'active' AND status_at = 6"), 1);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM devices d JOIN certificates c "
                                        "ON c.id = d.current_cert_id"), 1);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM attempts WHERE cert_id = 42"), 1);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM aws_outbox WHERE cert_id = 42"), 1);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
        query_text(db, "PRAGMA integrity_check", buf, sizeof(buf));
        assert_string_equal(buf, "ok");

        /* The indexes: serial_hex is the only unique one left on certificates. */
        assert_int_equal(count_rows(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN "
                                        "('attempts_serial', 'certificates_device')"), 0);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM pragma_index_list('certificates') WHERE \"unique\""),
                         1);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM pragma_index_list('certificates') "
                                        "WHERE name = 'certificates_signer'"), 1);
        assert_int_equal(count_rows(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'certificates_v2'"), 0);

#define CERT_ROW(id, serial_hex, sha, dev) \
        "INSERT INTO certificates (id, device_serial, signer_id, serial_hex, sha256, der, thing_name, not_before, " \
        "not_after, issued_at, status_at) VALUES (" id ", " dev ", 7, '" serial_hex "', '" sha "', x'30', 't', 1, " \
        "2, 5, 5)"
        /* Same fingerprint, another serial: allowed now (a real certificate cannot do that). */
        assert_int_equal(sqlite3_exec(db, CERT_ROW("43", "4002", Z32, "'0123ab'"), NULL, NULL, NULL), SQLITE_OK);
        /* Still refused: a duplicate serial, upper-case hex, an unknown device. */
        assert_int_equal(sqlite3_exec(db, CERT_ROW("44", "4002", Z32, "'0123ab'"), NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_UNIQUE);
        assert_int_equal(sqlite3_exec(db, CERT_ROW("44", "4003", "A" Z32, "'0123ab'"), NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(db, CERT_ROW("44", "4003", Z32, "'ffff'"), NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_FOREIGNKEY);
        assert_int_equal(sqlite3_exec(db, "UPDATE certificates SET status = 'lost' WHERE id = 42", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
#undef CERT_ROW
        sqlite3_close(db);
}

static void test_failed_migration_is_atomic(void **state) {
        struct fixture *f = *state;
        char err[256] = "";
        sqlite3 *db = NULL;

        /*
         * A provd-stamped but empty file with a table 0001 also creates: the
         * migration fails halfway through its SQL, and none of it may stay.
         */
        assert_int_equal(raw_exec(f->path, "PRAGMA application_id = 1886547830; "
                                           "CREATE TABLE attempts (x INTEGER)"), SQLITE_OK);
        assert_int_equal(schema_open(&db, f->path, NULL, err, sizeof(err)), -EIO);
        assert_non_null(strstr(err, "0001-init"));
        assert_non_null(strstr(err, "attempts"));

        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(query_int(db, "PRAGMA user_version"), 0);
        assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_schema"), 1);
        sqlite3_close(db);
}

static void test_constraints(void **state) {
        struct fixture *f = *state;
        sqlite3 *db = NULL;

        assert_int_equal(schema_open(&db, f->path, NULL, NULL, 0), 0);

        /* Hex is lowercase; the public key is an uncompressed point. */
        assert_int_equal(sqlite3_exec(db, "INSERT INTO devices (serial, model, fw_version, pubkey, state, "
                                          "first_seen, updated_at) VALUES ('0123AB', 'm', '1', "
                                          PK04 ", 'issued', 0, 0)", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO devices (serial, model, fw_version, pubkey, state, "
                                          "first_seen, updated_at) VALUES ('0123ab', 'm', '1', "
                                          PK02 ", 'issued', 0, 0)", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO devices (serial, model, fw_version, pubkey, state, "
                                          "first_seen, updated_at) VALUES ('0123ab', 'm', '1', "
                                          PK04 ", 'issued', 0, 0)", NULL, NULL, NULL),
                         SQLITE_OK);
        /* STRICT: no silent conversion. */
        assert_int_equal(sqlite3_exec(db, "UPDATE devices SET first_seen = 'yesterday'", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_DATATYPE);
        /* A PIN never goes into the database. */
        assert_int_equal(sqlite3_exec(db, "INSERT INTO signers (name, key_uri, cert_der, cert_sha256, subject, "
                                          "not_before, not_after, created_at) VALUES ('s', "
                                          "'pkcs11:token=a;object=b?PIN-VALUE=1234', x'30', "
                                          "'00000000000000000000000000000000000000000000000000000000000000aa', "
                                          "'CN=s', 0, 1, 0)", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_CHECK);
        /* A state outside the set is refused on update too. */
        assert_int_equal(sqlite3_exec(db, "UPDATE devices SET state = 'clone_suspected'", NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "UPDATE devices SET state = 'stolen'", NULL, NULL, NULL) & 0xff,
                         SQLITE_CONSTRAINT);

        /* The audit log refuses edits and rows that do not extend the chain. */
        assert_int_equal(sqlite3_exec(db, "INSERT INTO audit_log (id, ts, actor, action, details, prev_hash, hash) "
                                          "VALUES (1, 0, 'provd', 'test.one', '{}', zeroblob(32), randomblob(32))",
                                      NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO audit_log (id, ts, actor, action, details, prev_hash, hash) "
                                          "VALUES (2, 0, 'provd', 'test.two', '{}', zeroblob(32), randomblob(32))",
                                      NULL, NULL, NULL), SQLITE_CONSTRAINT_TRIGGER);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO audit_log (id, ts, actor, action, details, prev_hash, hash) "
                                          "VALUES (3, 0, 'provd', 'test.two', '{}', "
                                          "(SELECT hash FROM audit_log WHERE id = 1), randomblob(32))",
                                      NULL, NULL, NULL), SQLITE_CONSTRAINT_TRIGGER);
        assert_int_equal(sqlite3_exec(db, "UPDATE audit_log SET actor = 'uid:0'", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_TRIGGER);
        assert_int_equal(sqlite3_exec(db, "DELETE FROM audit_log", NULL, NULL, NULL), SQLITE_CONSTRAINT_TRIGGER);
        assert_int_equal(schema_errno(SQLITE_CONSTRAINT_TRIGGER), -EPERM);
        assert_int_equal(query_int(db, "SELECT count(*) FROM audit_log"), 1);
        sqlite3_close(db);
}

static void test_errno_map(void **state) {
        assert_int_equal(schema_errno(SQLITE_OK), 0);
        assert_int_equal(schema_errno(SQLITE_DONE), 0);
        assert_int_equal(schema_errno(SQLITE_BUSY), -EBUSY);
        assert_int_equal(schema_errno(SQLITE_BUSY_SNAPSHOT), -EBUSY);
        assert_int_equal(schema_errno(SQLITE_CONSTRAINT), -EEXIST);
        assert_int_equal(schema_errno(SQLITE_CONSTRAINT_UNIQUE), -EEXIST);
        assert_int_equal(schema_errno(SQLITE_CONSTRAINT_PRIMARYKEY), -EEXIST);
        assert_int_equal(schema_errno(SQLITE_CONSTRAINT_FOREIGNKEY), -ENOENT);
        assert_int_equal(schema_errno(SQLITE_CONSTRAINT_CHECK), -EINVAL);
        assert_int_equal(schema_errno(SQLITE_FULL), -ENOSPC);
        assert_int_equal(schema_errno(SQLITE_CORRUPT), -EBADMSG);
        assert_int_equal(schema_errno(SQLITE_NOTADB), -EBADMSG);
        assert_int_equal(schema_errno(SQLITE_IOERR_FSYNC), -EIO);
        assert_int_equal(schema_errno(SQLITE_ERROR), -EIO);
        assert_int_equal(schema_errno(SQLITE_READONLY), -EROFS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_embedded_list),
                cmocka_unit_test_setup_teardown(test_from_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen_idempotent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_refused_untouched, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notadb_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupt_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
                cmocka_unit_test_setup_teardown(test_old_file_migrates, setup, teardown),
                cmocka_unit_test_setup_teardown(test_v1_data_migrates, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_migration_is_atomic, setup, teardown),
                cmocka_unit_test_setup_teardown(test_constraints, setup, teardown),
                cmocka_unit_test(test_errno_map),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
