/* SPDX-License-Identifier: MIT */
/* Unit tests for the database's storage faults: emptied, lost, replaced, newer or damaged files; WAL bound; free space. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "db.h"
#include "schema/schema.h"

#ifndef PROVCTL_PATH
#error "PROVCTL_PATH must name the provctl binary"
#endif

struct ctx {
        char dir[64];
        char path[128];
        char marker[160];
        uv_loop_t loop;
        struct db *db;
        unsigned done_count;
};

/* --- plumbing --------------------------------------------------------------- */

static void on_done(struct db_req *req) {
        ((struct ctx *)req->userdata)->done_count++;
}

static int run(struct ctx *c, struct db_req *req) {
        unsigned target = c->done_count + 1;

        req->done = on_done;
        req->userdata = c;
        db_submit(c->db, req);
        while (c->done_count < target)
                uv_run(&c->loop, UV_RUN_ONCE);
        return req->result;
}

static int try_open(struct ctx *c, const struct db_options *opt, char *err, size_t errlen) {
        struct db_options o = opt ? *opt : (struct db_options){};

        err[0] = 0;
        o.errbuf = err;
        o.errbuf_size = errlen;
        return db_open(&c->db, &c->loop, c->path, &o);
}

static void open_db(struct ctx *c, const struct db_options *opt) {
        char err[512];

        if (try_open(c, opt, err, sizeof(err)) < 0)
                fail_msg("db_open: %s", err);
}

static void on_closed(struct db *db, void *userdata) {
        *(bool *)userdata = true;
}

static void close_db(struct ctx *c) {
        bool closed = false;

        db_close(c->db, on_closed, &closed);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
}

static int setup(void **state) {
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        snprintf(c->dir, sizeof(c->dir), "/tmp/test-db-faults-XXXXXX");
        assert_non_null(mkdtemp(c->dir));
        snprintf(c->path, sizeof(c->path), "%s/provd.db", c->dir);
        snprintf(c->marker, sizeof(c->marker), "%s.id", c->path);
        assert_int_equal(uv_loop_init(&c->loop), 0);
        *state = c;
        return 0;
}

static int teardown(void **state) {
        struct ctx *c = *state;
        char cmd[160];

        if (c->db)
                close_db(c);
        assert_int_equal(uv_loop_close(&c->loop), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        assert_int_equal(system(cmd), 0);
        free(c);
        return 0;
}

static void sh(const char *fmt, ...) {
        char cmd[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        assert_int_equal(system(cmd), 0);
}

static uint64_t file_size(const char *path) {
        struct stat st;

        return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void file_digest(const char *path, uint64_t *ret_size, uint64_t *ret_sum) {
        FILE *in = fopen(path, "rbe");
        uint64_t sum = 1469598103934665603ull, size = 0;
        int ch;

        assert_non_null(in);
        while ((ch = fgetc(in)) != EOF) {
                sum = (sum ^ (uint64_t)ch) * 1099511628211ull;
                size++;
        }
        fclose(in);
        *ret_size = size;
        *ret_sum = sum;
}

static void raw_exec(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        char *err = NULL;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("%s: %s", sql, err ? err : "?");
        sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v = -1;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

/* provctl db check --db PATH: its exit status, its output in @out. */
static int provctl_db_check(struct ctx *c, char *out, size_t len) {
        char cmd[512];
        size_t n = 0;
        FILE *p;
        int st;

        snprintf(cmd, sizeof(cmd), "'%s' db check --db '%s' 2>&1", PROVCTL_PATH, c->path);
        p = popen(cmd, "r");
        assert_non_null(p);
        while (n + 1 < len && fgets(out + n, (int)(len - n), p))
                n += strlen(out + n);
        out[n] = 0;
        st = pclose(p);
        assert_true(WIFEXITED(st));
        return WEXITSTATUS(st);
}

static void audit(struct ctx *c, const char *action) {
        struct db_req req = { .type = DB_AUDIT };

        snprintf(req.audit.actor, sizeof(req.audit.actor), "uid:0");
        snprintf(req.audit.action, sizeof(req.audit.action), "%s", action);
        assert_int_equal(run(c, &req), 0);
}

/* --- identity: first start, emptied, lost, replaced ------------------------ */

static void test_first_start_writes_marker(void **state) {
        struct ctx *c = *state;
        char id[64] = "";
        FILE *f;

        open_db(c, NULL);
        close_db(c);
        f = fopen(c->marker, "re");
        assert_non_null(f);
        assert_non_null(fgets(id, sizeof(id), f));
        fclose(f);
        assert_int_equal(strlen(id), 33);
        assert_int_equal(strspn(id, "0123456789abcdef"), 32);
        /* The marker names this database: a restart is not refused. */
        open_db(c, NULL);
        close_db(c);
}

/* A 0-byte file is never taken for a new database, marker or not, and stays as it is. */
static void test_empty_file_refused(void **state) {
        struct ctx *c = *state;
        char err[512];
        int fd;

        fd = open(c->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(try_open(c, NULL, err, sizeof(err)), -ENODATA);
        assert_non_null(strstr(err, "empty"));
        assert_int_equal(file_size(c->path), 0);

        /* A database that was there, emptied (a failed copy, a truncation). */
        unlink(c->path);
        open_db(c, NULL);
        audit(c, "test.row");
        close_db(c);
        assert_int_equal(truncate(c->path, 0), 0);
        assert_int_equal(try_open(c, NULL, err, sizeof(err)), -ENODATA);
        assert_int_equal(file_size(c->path), 0);
}

/* The database file is gone but its marker is there: not a first start. */
static void test_missing_with_marker_refused(void **state) {
        struct ctx *c = *state;
        char err[512];

        open_db(c, NULL);
        close_db(c);
        sh("rm -f '%s' '%s-wal' '%s-shm'", c->path, c->path, c->path);
        assert_int_equal(try_open(c, NULL, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "missing"));
        assert_int_equal(access(c->path, F_OK), -1);     /* nothing created */

        /* The operator's way out: remove the marker to start afresh. */
        unlink(c->marker);
        open_db(c, NULL);
        close_db(c);
}

/* Another provd database put in its place is refused, named; removing the marker adopts it. */
static void test_replaced_refused(void **state) {
        struct ctx *c = *state;
        char err[512], other[160], saved[160];
        uint64_t size0, sum0, size1, sum1;

        snprintf(other, sizeof(other), "%s/other.db", c->dir);
        snprintf(saved, sizeof(saved), "%s/saved.id", c->dir);
        /* Another database, made at the same path and moved away with its marker. */
        open_db(c, NULL);
        close_db(c);
        sh("mv '%s' '%s' && mv '%s' '%s'", c->path, other, c->marker, saved);
        open_db(c, NULL);
        audit(c, "test.mine");
        close_db(c);

        sh("cp '%s' '%s'", other, c->path);
        file_digest(c->path, &size0, &sum0);
        assert_int_equal(try_open(c, NULL, err, sizeof(err)), -ESTALE);
        assert_non_null(strstr(err, "not the database that was here"));
        /* Refused untouched: the same bytes, and it still lacks our row. */
        file_digest(c->path, &size1, &sum1);
        assert_int_equal(size0, size1);
        assert_true(sum0 == sum1);
        assert_int_equal(raw_int(c->path, "SELECT count(*) FROM audit_log WHERE action = 'test.mine'"), 0);

        unlink(c->marker);
        open_db(c, NULL);
        close_db(c);
}

/* --- a newer schema is refused untouched ------------------------------------ */

static void test_newer_untouched(void **state) {
        struct ctx *c = *state;
        char sql[256], err[512];
        uint64_t size0, sum0, size1, sum1;

        snprintf(sql, sizeof(sql), "PRAGMA journal_mode = DELETE; PRAGMA application_id = %d; "
                                   "PRAGMA user_version = %u; CREATE TABLE future (x INTEGER)",
                 SCHEMA_APPLICATION_ID, schema_version_latest() + 1);
        raw_exec(c->path, sql);
        file_digest(c->path, &size0, &sum0);

        assert_int_equal(try_open(c, NULL, err, sizeof(err)), -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "newer"));
        file_digest(c->path, &size1, &sum1);
        assert_int_equal(size0, size1);
        assert_true(sum0 == sum1);
        assert_int_equal(access(c->marker, F_OK), -1);
}

/* --- a damaged table page is found at open, and named ----------------------- */

static void test_damaged_page_refused(void **state) {
        struct ctx *c = *state;
        char err[1024];
        int64_t root, page_size;
        uint8_t junk[64];
        sqlite3 *ro = NULL;
        int fd;

        open_db(c, NULL);
        close_db(c);
        /* Enough attempts rows for a b-tree of several pages: its root is an interior page. */
        raw_exec(c->path, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
                          "INSERT INTO attempts (port, slot, started_at, finished_at, outcome, step, error) "
                          "SELECT '/dev/ttyACM0', 'A1', i, i, 'failed', 'hello', printf('%0100d', i) FROM n; "
                          "UPDATE totals SET n = n + 3000 WHERE name = 'attempts.failed'; "
                          "PRAGMA wal_checkpoint(TRUNCATE)");
        root = raw_int(c->path, "SELECT rootpage FROM sqlite_schema WHERE name = 'attempts'");
        page_size = raw_int(c->path, "PRAGMA page_size");
        assert_true(root > 1);
        open_db(c, NULL);       /* clean: opens */
        close_db(c);

        memset(junk, 0xa5, sizeof(junk));
        fd = open(c->path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)((root - 1) * page_size)), (ssize_t)sizeof(junk));
        close(fd);

        assert_int_equal(try_open(c, NULL, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "damaged"));
        assert_non_null(strstr(err, "attempts"));

        /* provctl db check says the same, and fails. */
        assert_int_equal(db_open_readonly(&ro, c->path), 0);
        assert_int_equal(db_check_integrity(ro, true, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "attempts"));
        sqlite3_close(ro);
        assert_int_equal(provctl_db_check(c, err, sizeof(err)), 1);
        assert_non_null(strstr(err, "damaged"));
        assert_non_null(strstr(err, "table attempts"));
}

static void test_check_totals(void **state) {
        struct ctx *c = *state;
        char err[512] = "";
        sqlite3 *ro = NULL;

        open_db(c, NULL);
        audit(c, "test.row");
        close_db(c);
        assert_int_equal(db_open_readonly(&ro, c->path), 0);
        assert_int_equal(db_check_integrity(ro, false, err, sizeof(err)), 0);
        assert_int_equal(db_check_totals(ro, err, sizeof(err)), 0);
        sqlite3_close(ro);

        assert_int_equal(provctl_db_check(c, err, sizeof(err)), 0);
        assert_non_null(strstr(err, "integrity ok"));
        assert_non_null(strstr(err, "totals ok"));

        raw_exec(c->path, "UPDATE totals SET n = n + 2 WHERE name = 'devices.issued'");
        assert_int_equal(provctl_db_check(c, err, sizeof(err)), 1);
        assert_non_null(strstr(err, "devices.issued is 2"));
        assert_int_equal(db_open_readonly(&ro, c->path), 0);
        assert_int_equal(db_check_totals(ro, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "devices.issued is 2"));
        sqlite3_close(ro);
}

/* --- the WAL stays bounded --------------------------------------------------- */

/*
 * Another process's read transaction holds the checkpointer back and the WAL
 * grows past its limit; once the reader is gone the WAL is truncated, not left
 * at its largest.
 */
static void test_wal_bounded(void **state) {
        enum { LIMIT = 256 * 1024 };
        struct ctx *c = *state;
        struct db_metrics m;
        sqlite3 *reader = NULL;
        char wal[160];
        int i;

        snprintf(wal, sizeof(wal), "%s-wal", c->path);
        open_db(c, &(struct db_options){ .checkpoint_pages = 8, .wal_limit_bytes = LIMIT });
        assert_int_equal(sqlite3_open_v2(c->path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM audit_log", NULL, NULL, NULL),
                         SQLITE_OK);

        for (i = 0; i < 400 && file_size(wal) <= 2 * LIMIT; i++)
                audit(c, "test.grow");
        assert_true(file_size(wal) > 2 * LIMIT);        /* held back by the reader */

        assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(reader);
        /*
         * With no further commit (a line gone quiet): the WAL does not stay at
         * its largest. A hang guard, not a timing assertion: a truncation is
         * tried at most once a second.
         */
        for (i = 0; i < 3000; i++) {
                db_get_metrics(c->db, &m);
                if (m.checkpoint_truncates > 0)
                        break;
                uv_sleep(10);
        }
        assert_true(m.checkpoint_truncates > 0);
        assert_true(file_size(wal) <= LIMIT);
}

/* --- free space ---------------------------------------------------------------- */

static void test_free_space(void **state) {
        struct ctx *c = *state;
        struct statvfs sv;
        uint64_t bytes = 0, fs;

        open_db(c, NULL);
        assert_int_equal(db_free_space(c->db, &bytes), 0);
        assert_int_equal(statvfs(c->dir, &sv), 0);
        fs = (uint64_t)sv.f_bavail * sv.f_frsize;
        /* Other processes write meanwhile: the same filesystem within 1 %. */
        assert_true(bytes > 0);
        assert_true(bytes <= fs + fs / 100 && bytes + fs / 100 >= fs);
        assert_int_equal(db_free_space(NULL, &bytes), -EINVAL);
        assert_int_equal(db_free_space(c->db, NULL), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_first_start_writes_marker, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_file_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_with_marker_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replaced_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_untouched, setup, teardown),
                cmocka_unit_test_setup_teardown(test_damaged_page_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_totals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wal_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_space, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
