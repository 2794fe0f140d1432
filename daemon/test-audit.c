/* SPDX-License-Identifier: MIT */
/* Unit tests for audit.c: canonical hash, chain verification against tampering, JSONL/CSV export. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "audit.h"
#include "db.h"
#include "schema/schema.h"

struct ctx {
        char dir[64];
        char path[128];
        uv_loop_t loop;
        struct db *db;
        unsigned done;
};

static void on_done(struct db_req *req) {
        ((struct ctx *)req->userdata)->done++;
}

static int daemon_audit(struct ctx *c, const char *actor, const char *action, const char *serial,
                        const char *details) {
        struct db_req req = { .type = DB_AUDIT, .done = on_done, .userdata = c };
        unsigned target = c->done + 1;

        snprintf(req.audit.actor, sizeof(req.audit.actor), "%s", actor);
        snprintf(req.audit.action, sizeof(req.audit.action), "%s", action);
        snprintf(req.audit.serial, sizeof(req.audit.serial), "%s", serial ? serial : "");
        req.audit.details_json = details;
        db_submit(c->db, &req);
        while (c->done < target)
                uv_run(&c->loop, UV_RUN_ONCE);
        return req.result;
}

static void on_closed(struct db *db, void *userdata) {
        *(bool *)userdata = true;
}

static void close_daemon(struct ctx *c) {
        bool closed = false;

        db_close(c->db, on_closed, &closed);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
}

/* Ten rows written by the daemon's writer thread, then the daemon stops. */
static int setup(void **state) {
        struct ctx *c = calloc(1, sizeof(*c));
        char details[64];

        assert_non_null(c);
        snprintf(c->dir, sizeof(c->dir), "/tmp/test-audit-XXXXXX");
        assert_non_null(mkdtemp(c->dir));
        snprintf(c->path, sizeof(c->path), "%s/provd.db", c->dir);
        assert_int_equal(uv_loop_init(&c->loop), 0);
        assert_int_equal(db_open(&c->db, &c->loop, c->path, NULL), 0);
        for (int i = 1; i <= 10; i++) {
                snprintf(details, sizeof(details), "{\"n\":%d,\"note\":\"row, \\\"%d\\\"\"}", i, i);
                assert_int_equal(daemon_audit(c, i % 2 ? "provd" : "uid:1000", "test.row",
                                              i % 3 ? "0123ab" : NULL, details), 0);
        }
        close_daemon(c);
        *state = c;
        return 0;
}

static int teardown(void **state) {
        struct ctx *c = *state;
        char cmd[160];

        if (c->db)
                close_daemon(c);
        assert_int_equal(uv_loop_close(&c->loop), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        assert_int_equal(system(cmd), 0);
        free(c);
        return 0;
}

/* The second connection of someone with file access: plain sqlite3, no provd code. */
static void tamper(struct ctx *c, const char *sql) {
        sqlite3 *db = NULL;
        char *err = NULL;

        assert_int_equal(sqlite3_open(c->path, &db), SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("tamper: %s", err);
        sqlite3_close(db);
}

static int verify(struct ctx *c, int64_t *ret_rows, int64_t *ret_bad) {
        sqlite3 *db = NULL;
        int r;

        assert_int_equal(db_open_readonly(&db, c->path), 0);
        r = audit_verify(db, ret_rows, ret_bad);
        sqlite3_close(db);
        return r;
}

static void test_hash_vector(void **state) {
        /* Pinned: computed independently (Python hashlib) from the documented encoding. */
        static const char *expected1 = "92f1be481aba23192bbbfbd3d989bda105e2e63bc99a90e1fc2cd065766878e9";
        static const char *expected2 = "e08d40934d4d239509beec0b5891681519b586cccfafe0a09656ba5a1e465f6b";
        const uint8_t zero[AUDIT_HASH_LEN] = {};
        uint8_t h1[AUDIT_HASH_LEN], h2[AUDIT_HASH_LEN];
        char hex[2 * AUDIT_HASH_LEN + 1];

        audit_hash(zero, &(struct audit_entry){ .id = 1, .ts = 1700000000000, .actor = "provd",
                                                .action = "cert.issue", .serial = "0123ab", .details = "{\"a\":1}" },
                   h1);
        for (int i = 0; i < AUDIT_HASH_LEN; i++)
                sprintf(hex + 2 * i, "%02x", h1[i]);
        assert_string_equal(hex, expected1);

        audit_hash(h1, &(struct audit_entry){ .id = 2, .ts = -5, .actor = "uid:1000",
                                              .action = "device.reissue_request", .serial = NULL, .details = "{}" },
                   h2);
        for (int i = 0; i < AUDIT_HASH_LEN; i++)
                sprintf(hex + 2 * i, "%02x", h2[i]);
        assert_string_equal(hex, expected2);

        /* NULL serial and empty serial are different rows. */
        audit_hash(h1, &(struct audit_entry){ .id = 2, .ts = -5, .actor = "uid:1000",
                                              .action = "device.reissue_request", .serial = "", .details = "{}" },
                   h1);
        assert_memory_not_equal(h1, h2, AUDIT_HASH_LEN);
}

static void test_intact(void **state) {
        struct ctx *c = *state;
        int64_t rows = -1, bad = -1;

        assert_int_equal(verify(c, &rows, &bad), 0);
        assert_int_equal(rows, 10);
        assert_int_equal(bad, 0);
}

static void test_offline_append_interleaves(void **state) {
        struct ctx *c = *state;
        sqlite3 *db = NULL;
        int64_t id = 0, rows, bad;

        /* provctl appends while the daemon runs; the daemon's next row still extends the chain. */
        assert_int_equal(db_open(&c->db, &c->loop, c->path, NULL), 0);
        assert_int_equal(schema_open(&db, c->path, NULL, NULL, 0), 0);
        assert_int_equal(audit_append(db, &(struct audit_entry){ .actor = "uid:0", .action = "ca.create",
                                                                 .details = "{\"offline\":true}" }, &id),
                         0);
        assert_int_equal(id, 11);
        assert_int_equal(daemon_audit(c, "provd", "test.after", NULL, NULL), 0);
        assert_int_equal(audit_append(db, &(struct audit_entry){ .actor = "uid:0", .action = "ca.create" }, &id), 0);
        assert_int_equal(id, 13);
        /* Refused by the schema: nothing appended. */
        assert_int_equal(audit_append(db, &(struct audit_entry){ .actor = "uid:0", .action = "BAD" }, &id), -EINVAL);
        sqlite3_close(db);
        close_daemon(c);

        assert_int_equal(verify(c, &rows, &bad), 0);
        assert_int_equal(rows, 13);
}

static void test_edited_field(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        tamper(c, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET details = '{\"n\":99}' WHERE id = 4");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 4);
        assert_int_equal(rows, 10);
}

/* Sets row @id's hash to the correct chain hash of what the row now holds (the forger knows the algorithm). */
static void rehash_row(struct ctx *c, int64_t id) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        uint8_t h[AUDIT_HASH_LEN];

        assert_int_equal(sqlite3_open(c->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT ts, actor, action, serial, details, prev_hash "
                                                "FROM audit_log WHERE id = ?1", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_bind_int64(st, 1, id), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_bytes(st, 5), AUDIT_HASH_LEN);
        audit_hash(sqlite3_column_blob(st, 5),
                   &(struct audit_entry){ .id = id, .ts = sqlite3_column_int64(st, 0),
                                          .actor = (const char *)sqlite3_column_text(st, 1),
                                          .action = (const char *)sqlite3_column_text(st, 2),
                                          .serial = (const char *)sqlite3_column_text(st, 3),
                                          .details = (const char *)sqlite3_column_text(st, 4) },
                   h);
        sqlite3_finalize(st);
        assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit_log SET hash = ?1 WHERE id = ?2", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_bind_blob(st, 1, h, sizeof(h), SQLITE_STATIC), SQLITE_OK);
        assert_int_equal(sqlite3_bind_int64(st, 2, id), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        assert_int_equal(sqlite3_changes(db), 1);
        sqlite3_finalize(st);
        sqlite3_close(db);
}

static void test_edited_actor_and_random_hash(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        /* A replaced stored hash that is not the row's hash: the row itself fails. */
        tamper(c, "DROP TRIGGER audit_log_no_update; "
                  "UPDATE audit_log SET actor = 'uid:0', hash = randomblob(32) WHERE id = 7");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 7);
}

static void test_edited_actor_and_recomputed_hash(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        /* Row 7 edited and its hash correctly recomputed: row 7 checks out, but row 8's prev_hash
         * still holds the old hash, so the break shows at row 8. */
        tamper(c, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'uid:0' WHERE id = 7");
        rehash_row(c, 7);
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 8);
        assert_int_equal(rows, 10);
}

static void test_edited_ts(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        tamper(c, "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET ts = ts + 1 WHERE id = 1");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 1);
}

static void test_deleted_row(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        tamper(c, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE id = 5");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 6);
        assert_int_equal(rows, 9);
}

static void test_deleted_first_row(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        tamper(c, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE id = 1");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 2);
}

static void test_deleted_last_row(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        tamper(c, "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE id = 10");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 10);
        assert_int_equal(rows, 9);

        /* The daemon carries on after it (next id 11): the gap stays visible. */
        assert_int_equal(db_open(&c->db, &c->loop, c->path, NULL), 0);
        assert_int_equal(daemon_audit(c, "provd", "test.after", NULL, NULL), 0);
        close_daemon(c);
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 11);
}

static void test_inserted_row(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        /* A forged row at the end, chained to the real head but with a made-up hash. */
        tamper(c, "DROP TRIGGER audit_log_chain; "
                  "INSERT INTO audit_log (id, ts, actor, action, details, prev_hash, hash) "
                  "SELECT 11, ts, 'provd', 'cert.issue', '{}', hash, randomblob(32) FROM audit_log WHERE id = 10");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 11);
        assert_int_equal(rows, 11);
}

static void test_inserted_row_with_gap(void **state) {
        struct ctx *c = *state;
        int64_t rows, bad;

        tamper(c, "DROP TRIGGER audit_log_chain; "
                  "INSERT INTO audit_log (id, ts, actor, action, details, prev_hash, hash) "
                  "VALUES (20, 0, 'provd', 'cert.issue', '{}', zeroblob(32), zeroblob(32))");
        assert_int_equal(verify(c, &rows, &bad), -EBADMSG);
        assert_int_equal(bad, 20);
}

static void test_triggers_stop_plain_edits(void **state) {
        struct ctx *c = *state;
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(c->path, &db), SQLITE_OK);
        sqlite3_extended_result_codes(db, 1);
        assert_int_equal(sqlite3_exec(db, "UPDATE audit_log SET actor = 'x' WHERE id = 1", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_TRIGGER);
        assert_int_equal(sqlite3_exec(db, "DELETE FROM audit_log WHERE id = 10", NULL, NULL, NULL),
                         SQLITE_CONSTRAINT_TRIGGER);
        sqlite3_close(db);
        assert_int_equal(verify(c, NULL, NULL), 0);
}

static char *export(struct ctx *c, enum audit_format f, int64_t from, int64_t to, int *ret_rows) {
        sqlite3 *db = NULL;
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);

        assert_non_null(out);
        assert_int_equal(db_open_readonly(&db, c->path), 0);
        *ret_rows = audit_export(db, out, f, from, to);
        sqlite3_close(db);
        fclose(out);
        return buf;
}

static void test_export_jsonl(void **state) {
        struct ctx *c = *state;
        char *buf, *line, *save = NULL;
        int rows, n = 0;
        int64_t ts5;

        buf = export(c, AUDIT_FORMAT_JSONL, 0, 0, &rows);
        assert_int_equal(rows, 10);
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                cJSON *o = cJSON_Parse(line);

                assert_non_null(o);
                n++;
                assert_int_equal((int)cJSON_GetObjectItem(o, "id")->valuedouble, n);
                assert_true(cJSON_IsObject(cJSON_GetObjectItem(o, "details")));
                assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetObjectItem(o, "details"), "n")->valuedouble, n);
                assert_int_equal(strlen(cJSON_GetObjectItem(o, "hash")->valuestring), 64);
                assert_int_equal(strlen(cJSON_GetObjectItem(o, "time")->valuestring), 24);
                if (n % 3 == 0)
                        assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "serial")));
                else
                        assert_string_equal(cJSON_GetObjectItem(o, "serial")->valuestring, "0123ab");
                if (n == 1)
                        assert_string_equal(cJSON_GetObjectItem(o, "prev_hash")->valuestring,
                                            "0000000000000000000000000000000000000000000000000000000000000000");
                cJSON_Delete(o);
        }
        assert_int_equal(n, 10);
        free(buf);

        /* A time range: [ts of row 5, ts of row 5 + 1). Rows may share a millisecond. */
        {
                sqlite3 *db = NULL;
                sqlite3_stmt *st = NULL;

                assert_int_equal(db_open_readonly(&db, c->path), 0);
                assert_int_equal(sqlite3_prepare_v2(db, "SELECT ts FROM audit_log WHERE id = 5", -1, &st, NULL),
                                 SQLITE_OK);
                assert_int_equal(sqlite3_step(st), SQLITE_ROW);
                ts5 = sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
                sqlite3_close(db);
        }
        buf = export(c, AUDIT_FORMAT_JSONL, ts5, ts5 + 1, &rows);
        assert_true(rows >= 1);
        assert_non_null(strstr(buf, "\"id\":5,"));
        free(buf);
        buf = export(c, AUDIT_FORMAT_JSONL, ts5 + 1000000, 0, &rows);
        assert_int_equal(rows, 0);
        assert_string_equal(buf, "");
        free(buf);
}

static void test_export_csv(void **state) {
        struct ctx *c = *state;
        char *buf, *row2, *end;
        int rows;

        buf = export(c, AUDIT_FORMAT_CSV, 0, 0, &rows);
        assert_int_equal(rows, 10);
        static const char header[] = "\"id\",\"ts\",\"time\",\"actor\",\"action\",\"serial\",\"details\","
                                     "\"prev_hash\",\"hash\"\r\n";

        assert_int_equal(strncmp(buf, header, strlen(header)), 0);
        /* Row 2: embedded quotes doubled, comma kept inside the quotes, CRLF ends it. */
        row2 = strstr(buf, "\r\n\"2\",");
        assert_non_null(row2);
        row2 += 2;
        end = strstr(row2, "\r\n");
        assert_non_null(end);
        *end = 0;
        assert_non_null(strstr(row2, ",\"uid:1000\",\"test.row\",\"0123ab\","
                                     "\"{\"\"n\"\":2,\"\"note\"\":\"\"row, \\\"\"2\\\"\"\"\"}\","));
        free(buf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hash_vector),
                cmocka_unit_test_setup_teardown(test_intact, setup, teardown),
                cmocka_unit_test_setup_teardown(test_offline_append_interleaves, setup, teardown),
                cmocka_unit_test_setup_teardown(test_edited_field, setup, teardown),
                cmocka_unit_test_setup_teardown(test_edited_actor_and_random_hash, setup, teardown),
                cmocka_unit_test_setup_teardown(test_edited_actor_and_recomputed_hash, setup, teardown),
                cmocka_unit_test_setup_teardown(test_edited_ts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deleted_row, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deleted_first_row, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deleted_last_row, setup, teardown),
                cmocka_unit_test_setup_teardown(test_inserted_row, setup, teardown),
                cmocka_unit_test_setup_teardown(test_inserted_row_with_gap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_triggers_stop_plain_edits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_export_jsonl, setup, teardown),
                cmocka_unit_test_setup_teardown(test_export_csv, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
