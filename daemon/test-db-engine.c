/* SPDX-License-Identifier: MIT */
/* Unit tests for the database engine: batches, savepoint isolation, close, the checkpointer, crash durability. */

#include "test-db-util.h"

static void test_savepoint_isolation(void **state) {
        struct ctx *c = *state;
        struct db_req req[3];
        uint8_t der[3][64];
        unsigned target;

        close_db(c);
        /* Hold the batch open until all three are queued (no timing assumption: 60 s cap). */
        open_db(c, &(struct db_options){ .max_batch = 3, .batch_delay_us = 60 * 1000 * 1000 });

        make_issuance(&req[0], c, "1111", 1, "aa01", der[0]);
        make_issuance(&req[1], c, "2222", 2, "aa01", der[1]);   /* duplicate certificate serial */
        make_issuance(&req[2], c, "3333", 3, "aa03", der[2]);
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);

        assert_int_equal(req[0].batch, req[1].batch);
        assert_int_equal(req[1].batch, req[2].batch);
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -EEXIST);
        assert_non_null(strstr(req[1].errmsg, "already recorded"));
        assert_int_equal(req[2].result, 0);

        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial IN ('1111', '3333')"), 2);
        /* Rolled back whole: not even the device row the failed request inserted first. */
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial = '2222'"), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE state = 'issued'"), 2);
        /* And the audit chain skipped it without a gap. */
        verify_chain(c, 3);

        /* The ids handed back are those of the pass that committed. */
        char q[160];
        snprintf(q, sizeof(q), "SELECT count(*) FROM certificates WHERE id = %" PRId64 " AND device_serial = '1111'",
                 req[0].issuance.cert_id);
        assert_int_equal(sql_int(c, q), 1);
        snprintf(q, sizeof(q), "SELECT count(*) FROM certificates WHERE id = %" PRId64 " AND device_serial = '3333'",
                 req[2].issuance.cert_id);
        assert_int_equal(sql_int(c, q), 1);
        assert_int_equal(req[1].issuance.cert_id, 0);

        struct db_metrics m;
        db_get_metrics(c->db, &m);
        assert_int_equal(m.max_batch_seen, 3);
        assert_int_equal(m.requests_failed, 1);
        /* The batch ran without savepoints first, then again with one per request. */
        assert_int_equal(m.isolated_batches, 1);
}

/* A batch where nothing fails commits in one pass; a failing read does not make it run again. */
static void test_batch_fast_path(void **state) {
        struct ctx *c = *state;
        struct db_req req[3];
        uint8_t der[2][64];
        unsigned target;
        struct db_metrics m;

        close_db(c);
        open_db(c, &(struct db_options){ .max_batch = 3, .batch_delay_us = 60 * 1000 * 1000 });

        make_issuance(&req[0], c, "4444", 1, "bb01", der[0]);
        /* Refused before it writes anything. */
        req[1] = (struct db_req){ .type = DB_AUDIT };
        snprintf(req[1].audit.actor, sizeof(req[1].audit.actor), "uid:0");
        snprintf(req[1].audit.action, sizeof(req[1].audit.action), "test.refused");
        snprintf(req[1].audit.serial, sizeof(req[1].audit.serial), "not hex");
        make_issuance(&req[2], c, "5555", 2, "bb02", der[1]);
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);

        assert_int_equal(req[0].batch, req[2].batch);
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -EINVAL);
        assert_int_equal(req[2].result, 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial IN ('4444', '5555')"), 2);
        verify_chain(c, 3);     /* signer.add, two cert.issue */
        /* The new device points at its certificate. */
        char q[160];
        snprintf(q, sizeof(q), "SELECT count(*) FROM devices WHERE serial = '4444' AND state = 'issued' "
                               "AND current_cert_id = %" PRId64, req[0].issuance.cert_id);
        assert_int_equal(sql_int(c, q), 1);
        db_get_metrics(c->db, &m);
        assert_int_equal(m.requests_failed, 1);
        assert_int_equal(m.isolated_batches, 0);
}

/* A request refused before it changed a row (a clone found by the device lookup) fails alone, in one pass. */
static void test_batch_refusal_without_writes(void **state) {
        struct ctx *c = *state;
        struct db_req req[3];
        uint8_t der[3][64];
        unsigned target;
        struct db_metrics m;

        close_db(c);
        open_db(c, &(struct db_options){ .max_batch = 3, .batch_delay_us = 60 * 1000 * 1000 });
        /* Alone first (max_batch 3 would wait for two more: fill the batch with audit rows). */
        make_issuance(&req[0], c, "9999", 1, "dd00", der[0]);
        req[1] = (struct db_req){ .type = DB_AUDIT };
        snprintf(req[1].audit.actor, sizeof(req[1].audit.actor), "uid:0");
        snprintf(req[1].audit.action, sizeof(req[1].audit.action), "test.fill");
        req[2] = req[1];
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);
        assert_int_equal(req[0].result, 0);

        make_issuance(&req[0], c, "aaaa", 2, "dd01", der[0]);
        make_issuance(&req[1], c, "9999", 3, "dd02", der[1]);   /* same serial, another key */
        make_issuance(&req[2], c, "bbbb", 4, "dd03", der[2]);
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);

        assert_int_equal(req[0].batch, req[2].batch);
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -EKEYREJECTED);
        assert_non_null(strstr(req[1].errmsg, "clone suspected"));
        assert_int_equal(req[2].result, 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial IN ('9999', 'aaaa', 'bbbb')"), 3);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM certificates WHERE serial_hex = 'dd02'"), 0);
        verify_chain(c, 6);     /* signer.add, two test.fill, three cert.issue */
        db_get_metrics(c->db, &m);
        assert_int_equal(m.requests_failed, 1);
        assert_int_equal(m.isolated_batches, 0);
}

static void test_submit_after_close(void **state) {
        struct ctx *c = *state;
        struct db_req req[2] = { { .type = DB_QUERY_STATS }, { .type = DB_QUERY_STATS } };
        bool closed = false;

        /* Queued before close: still served. After: -ESHUTDOWN. */
        submit(c, &req[0]);
        db_close(c->db, on_closed, &closed);
        submit(c, &req[1]);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
        assert_int_equal(c->done_count, 1 + 2);       /* + signer_ensure in setup */
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -ESHUTDOWN);
}

static void test_checkpoint_thread(void **state) {
        struct ctx *c = *state;
        struct db_metrics m;
        char serial[16], wal[160];
        struct stat st;

        /* One issuance per commit, each a few WAL frames: well past a 500-frame threshold. */
        close_db(c);
        open_db(c, &(struct db_options){ .checkpoint_pages = 500 });
        for (unsigned i = 0; i < 400; i++) {
                snprintf(serial, sizeof(serial), "%08x", i);
                assert_int_equal(issue(c, serial, (uint8_t)(i | 1), serial, NULL), 0);
        }
        /* The checkpointer runs on its own: wait for it (the cap only turns a hang into a failure). */
        for (unsigned waited_ms = 0;; waited_ms += 10) {
                db_get_metrics(c->db, &m);
                if (m.checkpoints > 0)
                        break;
                if (waited_ms > 60000)
                        fail_msg("no checkpoint after 400 commits");
                uv_sleep(10);
        }
        assert_int_equal(m.checkpoint_failures, 0);

        /* Everything still there for a reader; close checkpoints the rest and removes the WAL. */
        assert_int_equal(sql_int(c, "SELECT count(*) FROM certificates"), 400);
        close_db(c);
        snprintf(wal, sizeof(wal), "%s-wal", c->path);
        assert_int_equal(stat(wal, &st), -1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices"), 400);
        verify_chain(c, 401);
}

/* --- crash durability ------------------------------------------------------ */

#define CRASH_SLOTS 64

struct crash_slot {
        struct db_req req;
        uint8_t der[64];
        struct crash_ctx *cc;
};

struct crash_ctx {
        struct ctx *c;
        int fd;
        unsigned next;
        unsigned acked;
        unsigned die_after;
        bool use_sigkill;
        struct crash_slot slots[CRASH_SLOTS];
};

static void crash_done(struct db_req *req);

static void crash_submit(struct crash_ctx *cc, struct crash_slot *s) {
        char serial[32], cert_serial[32];

        snprintf(serial, sizeof(serial), "%08x", cc->next);
        snprintf(cert_serial, sizeof(cert_serial), "%08x", cc->next);
        cc->next++;
        make_issuance(&s->req, cc->c, serial, (uint8_t)(cc->next | 1), cert_serial, s->der);
        s->req.done = crash_done;
        s->req.userdata = s;
}

static void crash_done(struct db_req *req) {
        struct crash_slot *s = req->userdata;
        struct crash_ctx *cc = s->cc;
        char line[80];
        int n;

        if (req->result == 0) {
                /* Acknowledged: it must survive whatever happens next. */
                n = snprintf(line, sizeof(line), "%s %lld\n", req->issuance.serial,
                             (long long)req->issuance.cert_id);
                if (write(cc->fd, line, (size_t)n) != n)
                        _exit(3);
                cc->acked++;
        }
        if (cc->acked >= cc->die_after) {
                if (cc->use_sigkill)
                        raise(SIGKILL);
                _exit(0);
        }
        crash_submit(cc, s);
        db_submit(cc->c->db, &s->req);
}

static void crash_child(struct ctx *c, int fd, bool use_sigkill) {
        static struct crash_ctx cc;
        static uv_loop_t loop;   /* not the parent's: its epoll fd is shared across fork() */

        cc = (struct crash_ctx){ .c = c, .fd = fd, .die_after = 700, .use_sigkill = use_sigkill };
        if (uv_loop_init(&loop) < 0 ||
            db_open(&c->db, &loop, c->path, &(struct db_options){ .max_batch = 32 }) < 0)
                _exit(2);
        for (unsigned i = 0; i < CRASH_SLOTS; i++) {
                cc.slots[i].cc = &cc;
                crash_submit(&cc, &cc.slots[i]);
                db_submit(c->db, &cc.slots[i].req);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        _exit(4);
}

static void check_crash(struct ctx *c, bool use_sigkill) {
        char line[80], serial[40];
        long long cert_id;
        unsigned acked = 0;
        int pipefd[2], status;
        FILE *in;
        pid_t pid;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t rows = 0, bad = -1;

        /* The parent holds no database connection across fork(). */
        close_db(c);
        assert_int_equal(pipe(pipefd), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(pipefd[0]);
                crash_child(c, pipefd[1], use_sigkill);
        }
        close(pipefd[1]);

        assert_int_equal(db_open_readonly(&db, c->path), 0);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM devices d JOIN certificates c "
                                                "ON c.id = d.current_cert_id WHERE d.serial = ?1 AND c.id = ?2 "
                                                "AND c.status = 'issued'", -1, &st, NULL), SQLITE_OK);
        in = fdopen(pipefd[0], "r");
        assert_non_null(in);
        /* Read everything first: the child dies mid-stream. */
        {
                char *all = NULL;
                size_t len = 0;
                FILE *mem = open_memstream(&all, &len);
                int ch;

                while ((ch = fgetc(in)) != EOF)
                        fputc(ch, mem);
                fclose(mem);
                fclose(in);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (use_sigkill) {
                        assert_true(WIFSIGNALED(status));
                        assert_int_equal(WTERMSIG(status), SIGKILL);
                } else {
                        assert_true(WIFEXITED(status));
                        assert_int_equal(WEXITSTATUS(status), 0);
                }
                in = fmemopen(all, len, "r");
                assert_non_null(in);
                while (fgets(line, sizeof(line), in)) {
                        assert_int_equal(sscanf(line, "%39s %lld", serial, &cert_id), 2);
                        sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
                        sqlite3_bind_int64(st, 2, cert_id);
                        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
                        if (sqlite3_column_int(st, 0) != 1)
                                fail_msg("acknowledged issuance %s (cert %lld) lost", serial, cert_id);
                        sqlite3_reset(st);
                        acked++;
                }
                fclose(in);
                free(all);
        }
        assert_true(acked >= 700);
        sqlite3_finalize(st);

        /* The file is consistent and the chain intact after the crash. */
        assert_int_equal(audit_verify(db, &rows, &bad), 0);
        assert_true(rows >= (int64_t)acked);
        sqlite3_close(db);

        /* And the daemon opens it again and keeps going. */
        open_db(c, NULL);
        assert_int_equal(issue(c, "fffffffe", 1, "fffffffe", NULL), 0);
}

static void test_crash_sigkill(void **state) {
        check_crash(*state, true);
}

static void test_crash_exit(void **state) {
        check_crash(*state, false);
}


int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_savepoint_isolation, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_batch_fast_path, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_batch_refusal_without_writes, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_submit_after_close, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_checkpoint_thread, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_crash_sigkill, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_crash_exit, setup_open, teardown),
        };

        /* TEST_FILTER=test_crash* runs a subset. */
        if (getenv("TEST_FILTER"))
                cmocka_set_test_filter(getenv("TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
