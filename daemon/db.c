/* SPDX-License-Identifier: MIT */
/* The database engine: the request queue, the writer thread and its group commit, open and close. */

/*
 * Flow of a request (see db.h for the glossary):
 *
 *   loop thread                      writer thread
 *   db_submit() --lock--> queue ---> wakes on cond, takes <= max_batch
 *        (reads: to the reader thread's queue instead, db-reader.c)
 *                                    BEGIN IMMEDIATE
 *                                    audit chain head (one indexed read)
 *                                    per request: SAVEPOINT req / handler /
 *                                                 RELEASE or ROLLBACK TO
 *                                    totals: one upsert per counter the batch changed
 *                                    COMMIT (fsync of the WAL: synchronous=FULL)
 *   on_async() <--lock-- done list <-+ uv_async_send()
 *   req->done() for each
 *
 * Group commit: while one batch's fsync runs, new requests pile up in the
 * queue and go into the next batch, so the fsync cost is shared by as many
 * requests as arrive in one fsync time, with no added latency when idle.
 *
 * Failure containment: a request whose handler fails is rolled back to its
 * savepoint and completes with its -errno; the others commit. If SQLite
 * rolled the whole transaction back (I/O error, disk full) or COMMIT fails,
 * every request of the batch completes with that error and nothing of the
 * batch is durable, which is exactly what the callers are told.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "db-internal.h"
#include "schema/schema.h"

#define DEFAULT_MAX_BATCH 256
#define MAX_MAX_BATCH 65536
/*
 * WAL frames after a commit that wake the checkpointer: 16 MiB of 4 KiB pages,
 * four times SQLite's default. A page that many commits rewrite (index and
 * table pages shared by many boards) is copied back once per checkpoint, so a
 * longer interval writes less per board (bench: 42 -> 35 KB per board).
 */
#define DEFAULT_CHECKPOINT_PAGES 4000
/* A WAL file larger than this is checkpointed whole and truncated (db-checkpoint.c). */
#define WAL_SIZE_LIMIT 67108864 /* 64 MiB */
#define ERRBUF(opt) ((opt) ? (opt)->errbuf : NULL), ((opt) ? (opt)->errbuf_size : 0)

/* --- the writer thread ---------------------------------------------------- */

typedef int (*handler_fn)(struct db *db, struct db_req *req, int64_t now);

static const handler_fn handlers[_DB_REQ_TYPE_MAX] = {
        [DB_RECORD_ISSUANCE] = db_do_issuance,
        [DB_RECORD_OUTCOME] = db_do_outcome,
        [DB_AUDIT] = db_do_audit,
        [DB_REISSUE_REQUEST] = db_do_reissue,
        [DB_SIGNER_ENSURE] = db_do_signer_ensure,
        [DB_SIGNER_RETIRE] = db_do_signer_retire,
        [DB_OUTBOX_CLAIM] = db_do_outbox_claim,
        [DB_OUTBOX_COMPLETE] = db_do_outbox_complete,
        [DB_OUTBOX_ENQUEUE] = db_do_outbox_enqueue_req,
        [DB_OUTBOX_REQUEUE] = db_do_outbox_requeue,
};

static int exec_stmt(struct db *db, enum stmt id) {
        _cleanup_reset_ sqlite3_stmt *st = use(db, id);

        return schema_errno(sqlite3_step(st));
}

/* The whole batch failed (or its transaction is gone): tell every request. */
static void fail_batch(struct db_req *list, int r, const char *why) {
        for (struct db_req *req = list; req; req = req->queue_next) {
                db_free_outputs(req);
                req->result = r;
                snprintf(req->errmsg, sizeof(req->errmsg), "%s", why);
        }
}

/* Runs one request; its changes to the totals join the batch's only if it succeeded. */
static int run_handler(struct db *db, struct db_req *req) {
        int r;

        memset(db->req_delta, 0, sizeof(db->req_delta));
        if ((unsigned)req->type < _DB_REQ_TYPE_MAX && handlers[req->type])
                r = handlers[req->type](db, req, now_ms());
        else
                r = db_fail(req, -EINVAL, "unknown request type %d", (int)req->type);
        if (r >= 0)
                for (size_t i = 0; i < _TOTAL_MAX; i++)
                        db->batch_delta[i] += db->req_delta[i];
        return r;
}

static void begin_pass(struct db *db, struct db_req *list) {
        memset(db->batch_delta, 0, sizeof(db->batch_delta));
        for (struct db_req *req = list; req; req = req->queue_next) {
                req->batch = db->batch_seq;
                req->result = 0;
                req->errmsg[0] = 0;
                db_reset_outputs(req);
        }
}

/* BEGIN and the audit chain head; on failure the whole batch fails. */
static int begin(struct db *db, struct db_req *list) {
        char why[DB_ERRMSG_MAX];
        int r;

        r = exec_stmt(db, STMT_BEGIN);
        if (r < 0)
                snprintf(why, sizeof(why), "begin: %s", sqlite3_errmsg(db->conn));
        else {
                r = audit_head(db->conn, use(db, STMT_AUDIT_HEAD), &db->audit_id, db->audit_hash);
                if (r < 0)
                        snprintf(why, sizeof(why), "audit log head unreadable (%s); check the database with "
                                 "provctl audit verify", r == -EBADMSG ? "malformed last row" : strerror(-r));
        }
        if (r < 0) {
                if (!sqlite3_get_autocommit(db->conn))
                        (void)exec_stmt(db, STMT_ROLLBACK);
                fail_batch(list, r, why);
        }
        return r;
}

/* The batch's totals, then COMMIT; on failure nothing of the batch is written. */
static void commit(struct db *db, struct db_req *list, bool *ret_commit_failed) {
        char why[DB_ERRMSG_MAX];
        int r;

        r = db_totals_flush(db, why, sizeof(why));
        if (r >= 0) {
                r = exec_stmt(db, STMT_COMMIT);
                if (r < 0)
                        snprintf(why, sizeof(why), "commit: %s", sqlite3_errmsg(db->conn));
        }
        if (r < 0) {
                if (!sqlite3_get_autocommit(db->conn))
                        (void)exec_stmt(db, STMT_ROLLBACK);
                fail_batch(list, r, why);
                *ret_commit_failed = true;
        }
}

/*
 * The common case: every request of the batch succeeds. No savepoints: one
 * BEGIN, the handlers, one COMMIT. A request that fails before any of its
 * statements changed a row (a refused field, a clone found by the
 * device lookup) fails alone: a statement that fails is undone by SQLite
 * itself, and the count of changed rows shows whether an earlier one of the
 * request's statements completed. Otherwise its rows are half written:
 * -EAGAIN, with the transaction rolled back, and run_isolated() runs the
 * batch again.
 */
static int run_fast(struct db *db, struct db_req *list, bool *ret_commit_failed) {
        int r;

        begin_pass(db, list);
        r = begin(db, list);
        if (r < 0)
                return 0;
        for (struct db_req *req = list; req; req = req->queue_next) {
                int64_t changes = sqlite3_total_changes64(db->conn);

                r = run_handler(db, req);
                if (r >= 0)
                        continue;
                if (sqlite3_total_changes64(db->conn) == changes && !sqlite3_get_autocommit(db->conn)) {
                        req->result = r;
                        if (!req->errmsg[0])
                                snprintf(req->errmsg, sizeof(req->errmsg), "%s", sqlite3_errmsg(db->conn));
                        db_free_outputs(req);
                        continue;
                }
                if (!sqlite3_get_autocommit(db->conn))
                        (void)exec_stmt(db, STMT_ROLLBACK);
                for (struct db_req *q = list; q; q = q->queue_next)
                        db_free_outputs(q);
                return -EAGAIN;
        }
        commit(db, list, ret_commit_failed);
        return 0;
}

/* One SAVEPOINT per request that writes: a request that fails is rolled back alone. */
static void run_isolated(struct db *db, struct db_req *list, bool *ret_commit_failed) {
        char why[DB_ERRMSG_MAX];
        int r;

        begin_pass(db, list);
        r = begin(db, list);
        if (r < 0)
                return;
        for (struct db_req *req = list; req; req = req->queue_next) {
                int64_t saved_id = db->audit_id;
                uint8_t saved_hash[AUDIT_HASH_LEN];

                memcpy(saved_hash, db->audit_hash, AUDIT_HASH_LEN);
                r = exec_stmt(db, STMT_SAVEPOINT);
                if (r >= 0)
                        r = run_handler(db, req);
                if (r >= 0) {
                        r = exec_stmt(db, STMT_RELEASE);
                        if (r < 0)
                                (void)db_fail_sql(db->conn, req, sqlite3_errcode(db->conn), "release");
                }
                if (r >= 0)
                        continue;

                req->result = r;
                if (!req->errmsg[0])
                        snprintf(req->errmsg, sizeof(req->errmsg), "%s", sqlite3_errmsg(db->conn));
                db_free_outputs(req);
                db->audit_id = saved_id;
                memcpy(db->audit_hash, saved_hash, AUDIT_HASH_LEN);

                if (sqlite3_get_autocommit(db->conn) ||
                    exec_stmt(db, STMT_ROLLBACK_TO) < 0 || exec_stmt(db, STMT_RELEASE) < 0) {
                        /* SQLite rolled back the whole transaction (I/O error, disk full). */
                        snprintf(why, sizeof(why), "transaction rolled back: %.200s", req->errmsg);
                        if (!sqlite3_get_autocommit(db->conn))
                                (void)exec_stmt(db, STMT_ROLLBACK);
                        fail_batch(list, r, why);
                        return;
                }
        }
        commit(db, list, ret_commit_failed);
}

/*
 * Runs one batch; returns the number of requests that failed, *ret_commit_failed
 * if COMMIT did, *ret_isolated if a failing request made it run the batch a
 * second time with savepoints.
 */
static unsigned run_batch(struct db *db, struct db_req *list, bool *ret_commit_failed, bool *ret_isolated) {
        unsigned failed = 0;

        *ret_commit_failed = false;
        *ret_isolated = false;
        db->batch_seq++;
        if (run_fast(db, list, ret_commit_failed) == -EAGAIN) {
                *ret_isolated = true;
                run_isolated(db, list, ret_commit_failed);
        }
        for (struct db_req *req = list; req; req = req->queue_next)
                if (req->result < 0)
                        failed++;
        return failed;
}

static void writer_main(void *arg) {
        struct db *db = arg;
        unsigned last_n = 0;            /* requests in the previous batch */

        for (;;) {
                struct db_req *head, *tail, *req;
                unsigned n = 0, failed;
                bool commit_failed, isolated;

                uv_mutex_lock(&db->lock);
                db->writer_wait = WRITER_IDLE;
                while (!db->queue_head && !db->stopping)
                        uv_cond_wait(&db->cond, &db->lock);
                if (!db->queue_head) {
                        db->writer_wait = WRITER_BUSY;
                        uv_mutex_unlock(&db->lock);
                        break;          /* stopping and drained */
                }
                /*
                 * Group commit under load: wait up to batch_delay_us for more
                 * requests, so that one commit (its WAL frames for the shared
                 * index and table pages, its fdatasync) serves more boards.
                 * Not when one request follows another alone (one board on the
                 * line): nothing else is coming, the wait would only add latency.
                 */
                if (db->batch_delay_ns > 0 && db->n_queued < db->max_batch && !db->stopping &&
                    (last_n != 1 || db->n_queued > 1)) {
                        uint64_t deadline = uv_hrtime() + db->batch_delay_ns;

                        db->writer_wait = WRITER_COLLECTING;
                        for (;;) {
                                uint64_t t = uv_hrtime();

                                if (t >= deadline || db->n_queued >= db->max_batch || db->stopping)
                                        break;
                                (void)uv_cond_timedwait(&db->cond, &db->lock, deadline - t);
                        }
                }
                db->writer_wait = WRITER_BUSY;
                head = tail = db->queue_head;
                for (req = head; req && n < db->max_batch; req = req->queue_next) {
                        tail = req;
                        n++;
                }
                db->queue_head = tail->queue_next;
                if (!db->queue_head)
                        db->queue_tail = NULL;
                db->n_queued -= n;
                tail->queue_next = NULL;
                uv_mutex_unlock(&db->lock);

                failed = run_batch(db, head, &commit_failed, &isolated);
                last_n = n;

                uv_mutex_lock(&db->lock);
                if (db->done_tail)
                        db->done_tail->queue_next = head;
                else
                        db->done_head = head;
                db->done_tail = tail;
                db->metrics.batches++;
                db->metrics.requests += n;
                db->metrics.requests_failed += failed;
                db->metrics.commit_failures += commit_failed;
                db->metrics.isolated_batches += isolated;
                db->metrics.max_batch_seen = MAX(db->metrics.max_batch_seen, n);
                db->writes_completed += n;
                db_reader_wake(db);
                uv_mutex_unlock(&db->lock);
                uv_async_send(&db->async);
        }

        for (size_t i = 0; i < _STMT_MAX; i++) {
                sqlite3_finalize(db->stmts[i]);
                db->stmts[i] = NULL;
        }
        db_checkpointer_stop(db);

        /* The reader's connection closes first, so that this one is the last. */
        uv_mutex_lock(&db->lock);
        db_reader_wake(db);
        while (db->reader.started && !db->reader.exited)
                uv_cond_wait(&db->cond, &db->lock);
        uv_mutex_unlock(&db->lock);
        /* The last connection: checkpoints the WAL and removes it. May take a moment, hence here. */
        sqlite3_close(db->conn);
        db->conn = NULL;

        uv_mutex_lock(&db->lock);
        db->thread_exited = true;
        uv_mutex_unlock(&db->lock);
        /* Last touch of @db by this thread: the loop may free it once joined. */
        uv_async_send(&db->async);
}

/* --- loop thread ---------------------------------------------------------- */

static void db_free(struct db *db) {
        if (!db)
                return;
        db_reader_free(db);
        db_checkpointer_stop(db);
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(db->stmts[i]);
        sqlite3_close(db->conn);
        free(db->wal_path);
        free(db->path);
        if (db->ckpt_cond_init)
                uv_cond_destroy(&db->ckpt_cond);
        if (db->cond_init)
                uv_cond_destroy(&db->cond);
        if (db->lock_init)
                uv_mutex_destroy(&db->lock);
        free(db);
}

static void on_async_closed(uv_handle_t *h) {
        struct db *db = h->data;

        if (db->close_cb)
                db->close_cb(db, db->close_userdata);
        db_free(db);
}

static void on_async(uv_async_t *a) {
        struct db *db = a->data;
        bool exited;

        /*
         * done() callbacks often submit the next request at once. Wake the
         * writer once after all of them instead of at the first, so the burst
         * becomes one batch (one fsync) rather than a batch of one followed
         * by the rest.
         */
        db->in_completions = true;
        for (;;) {
                struct db_req *list, *next;

                uv_mutex_lock(&db->lock);
                list = db->done_head;
                db->done_head = db->done_tail = NULL;
                exited = db->thread_exited && (!db->reader.started || db->reader.exited);
                uv_mutex_unlock(&db->lock);
                if (!list)
                        break;
                for (struct db_req *req = list; req; req = next) {
                        next = req->queue_next;
                        req->queue_next = NULL;
                        if (req->done)
                                req->done(req);
                }
        }
        db->in_completions = false;
        if (db->wake_pending) {
                db->wake_pending = false;
                uv_mutex_lock(&db->lock);
                if (db->writer_wait == WRITER_IDLE ||
                    (db->writer_wait == WRITER_COLLECTING && db->n_queued >= db->max_batch))
                        uv_cond_signal(&db->cond);
                uv_mutex_unlock(&db->lock);
        }

        if (exited && !db->closing_handle) {
                db->closing_handle = true;
                uv_thread_join(&db->thread);
                db->thread_started = false;
                db_reader_free(db);
                uv_close((uv_handle_t *)&db->async, on_async_closed);
        }
}

void db_submit(struct db *db, struct db_req *req) {
        assert(db);
        assert(req);
        assert(!db->closing_handle);

        /* Before it is queued: from now on a lookup of this serial goes to the reader (db-known.c). */
        if (req->type == DB_RECORD_ISSUANCE)
                db_known_add_serial(db, req->issuance.serial);
        req->queue_next = NULL;
        uv_mutex_lock(&db->lock);
        if (db->stopping) {
                req->result = -ESHUTDOWN;
                snprintf(req->errmsg, sizeof(req->errmsg), "database is closing");
                if (db->done_tail)
                        db->done_tail->queue_next = req;
                else
                        db->done_head = req;
                db->done_tail = req;
                uv_mutex_unlock(&db->lock);
                uv_async_send(&db->async);
                return;
        }
        if ((unsigned)req->type < _DB_REQ_TYPE_MAX && db_is_read(req)) {
                db_reader_queue(db, req);
                uv_mutex_unlock(&db->lock);
                return;
        }
        if (db->queue_tail)
                db->queue_tail->queue_next = req;
        else
                db->queue_head = req;
        db->queue_tail = req;
        db->n_queued++;
        db->writes_submitted++;
        /* A writer collecting a batch wakes only when it is full: no wake-up per request. */
        if (db->in_completions)
                db->wake_pending = true;
        else if (db->writer_wait == WRITER_IDLE ||
                 (db->writer_wait == WRITER_COLLECTING && db->n_queued >= db->max_batch))
                uv_cond_signal(&db->cond);
        uv_mutex_unlock(&db->lock);
}

void db_close(struct db *db, void (*done)(struct db *db, void *userdata), void *userdata) {
        if (!db) {
                if (done)
                        done(NULL, userdata);
                return;
        }
        assert(!db->stopping);
        db->close_cb = done;
        db->close_userdata = userdata;
        uv_mutex_lock(&db->lock);
        db->stopping = true;
        uv_cond_signal(&db->cond);
        db_reader_wake(db);
        uv_mutex_unlock(&db->lock);
}

/*
 * Asked twice per board: the answer is kept for 10 ms, in which a 256-port
 * line writes well under 2 MB (about 25 KB a board), far below any
 * sensible min_free_mb.
 */
#define DB_FREE_CACHE_US 10000

int db_free_space(struct db *db, uint64_t *ret_bytes) {
        _cleanup_free_ char *dir = NULL;
        struct statvfs sv;
        uint64_t now;

        if (!db || !ret_bytes)
                return -EINVAL;
        now = now_usec();
        if (db->free_at_us && now - db->free_at_us < DB_FREE_CACHE_US) {
                *ret_bytes = db->free_bytes;
                return 0;
        }
        dir = strdup(db->path);
        if (!dir)
                return -ENOMEM;
        if (statvfs(dirname(dir), &sv) < 0)
                return -errno;
        db->free_bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
        db->free_at_us = now;
        *ret_bytes = db->free_bytes;
        return 0;
}

void db_get_metrics(struct db *db, struct db_metrics *ret) {
        uv_mutex_lock(&db->lock);
        *ret = db->metrics;
        ret->queued = db->n_queued;
        uv_mutex_unlock(&db->lock);
        /* Loop-thread state; db_known_ready() may take the lock itself (growing the filter). */
        ret->known_filter_ready = db_known_ready(db);
        ret->lookups_unread = db->known.unread;
        ret->known_filter_grown = db->known.grown;
}


/*
 * A crash left these claimed; the AWS calls are idempotent, so run them
 * again. With the totals, in one transaction.
 */
static int reset_in_flight(struct db *db) {
        char why[DB_ERRMSG_MAX];
        int64_t n;
        int r;

        r = exec_stmt(db, STMT_BEGIN);
        if (r < 0)
                return r;
        r = schema_errno(sqlite3_exec(db->conn, "UPDATE aws_outbox SET state = 'pending' WHERE state = 'in_flight'",
                                      NULL, NULL, NULL));
        if (r >= 0) {
                n = sqlite3_changes64(db->conn);
                memset(db->batch_delta, 0, sizeof(db->batch_delta));
                db->batch_delta[TOTAL_OUTBOX + DB_OUTBOX_IN_FLIGHT] = -n;
                db->batch_delta[TOTAL_OUTBOX + DB_OUTBOX_PENDING] = n;
                r = db_totals_flush(db, why, sizeof(why));
        }
        if (r >= 0)
                r = exec_stmt(db, STMT_COMMIT);
        if (r < 0 && !sqlite3_get_autocommit(db->conn))
                (void)exec_stmt(db, STMT_ROLLBACK);
        return r;
}

int db_open(struct db **ret, uv_loop_t *loop, const char *path, const struct db_options *opt) {
        struct db *db;
        char err[256] = "";
        int r, rc;

        if (!ret || !loop || !path)
                return -EINVAL;

        db = calloc(1, sizeof(*db));
        if (!db)
                return -ENOMEM;
        db->loop = loop;
        db->max_batch = opt && opt->max_batch ? MIN(opt->max_batch, (unsigned)MAX_MAX_BATCH) : DEFAULT_MAX_BATCH;
        db->batch_delay_ns = opt ? (uint64_t)opt->batch_delay_us * 1000u : 0;
        db->checkpoint_pages = opt && opt->checkpoint_pages ? opt->checkpoint_pages : DEFAULT_CHECKPOINT_PAGES;

        r = uv_mutex_init(&db->lock);
        if (r < 0)
                goto fail;
        db->lock_init = true;
        r = uv_cond_init(&db->cond);
        if (r < 0)
                goto fail;
        db->cond_init = true;
        r = uv_cond_init(&db->ckpt_cond);
        if (r < 0)
                goto fail;
        db->ckpt_cond_init = true;

        db->path = strdup(path);
        if (!db->path || asprintf(&db->wal_path, "%s-wal", path) < 0) {
                db->wal_path = NULL;
                r = -ENOMEM;
                goto fail;
        }
        db->wal_limit = opt && opt->wal_limit_bytes ? opt->wal_limit_bytes : WAL_SIZE_LIMIT;

        /* An emptied or lost database is not a first start (db-identity.c). */
        r = db_identity_precheck(path, ERRBUF(opt));
        if (r < 0)
                goto fail;
        r = schema_open(&db->conn, path,
                        &(struct schema_open_options){ .busy_timeout_ms = opt ? opt->busy_timeout_ms : 0 },
                        err, sizeof(err));
        if (r < 0) {
                db_open_error(ERRBUF(opt), r, "%s", err);
                goto fail;
        }
        /*
         * Every page of every table and index read once: a damaged page found
         * now, before provd says it is ready, not when a board's row lands
         * on it. About 6 s per GB of database (docs/PERFORMANCE.md, fifth round).
         */
        if (!(opt && opt->no_integrity_check)) {
                r = db_check_integrity(db->conn, false, err, sizeof(err));
                if (r < 0) {
                        db_open_error(ERRBUF(opt), r, "%s: %s", path, err);
                        goto fail;
                }
        }
        r = db_identity_check(db->conn, path, ERRBUF(opt));
        if (r < 0)
                goto fail;

        /*
         * temp_store=MEMORY: the per-request SAVEPOINTs keep their undo pages
         * (the statement sub-journal) in memory instead of a temporary file,
         * which otherwise costs a pwrite() per page touched. A larger page
         * cache than the 2 MB default keeps the indexes hot under load.
         */
        {
                char pragmas[160];

                snprintf(pragmas, sizeof(pragmas), "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384; "
                         "PRAGMA journal_size_limit = %" PRIu64, db->wal_limit);
                (void)sqlite3_exec(db->conn, pragmas, NULL, NULL, NULL);
        }

        r = db_checkpointer_start(db, path, ERRBUF(opt));
        if (r < 0)
                goto fail;

        for (size_t i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(db->conn, db_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->stmts[i], NULL);
                if (rc != SQLITE_OK) {
                        r = db_open_error(ERRBUF(opt), schema_errno(rc), "%s: preparing statement %zu: %s", path, i,
                                       sqlite3_errmsg(db->conn));
                        goto fail;
                }
        }

        r = reset_in_flight(db);
        if (r < 0) {
                db_open_error(ERRBUF(opt), r, "%s: resetting the AWS outbox: %s", path, sqlite3_errmsg(db->conn));
                goto fail;
        }

        /* After the migration: the reader's connection only checks the file. */
        db->known.min_capacity = opt ? opt->known_filter_min : 0;
        r = db_reader_start(db, path, ERRBUF(opt));
        if (r < 0)
                goto fail;

        r = uv_async_init(loop, &db->async, on_async);
        if (r < 0) {
                db_open_error(ERRBUF(opt), r, "uv_async_init: %s", uv_strerror(r));
                goto fail;
        }
        db->async.data = db;
        db->async_init = true;

        r = uv_thread_create(&db->thread, writer_main, db);
        if (r < 0) {
                db_open_error(ERRBUF(opt), r, "cannot start the database thread: %s", uv_strerror(r));
                db_reader_free(db);
                /* The handle is initialised: free from its close callback. */
                db->closing_handle = true;
                uv_close((uv_handle_t *)&db->async, on_async_closed);
                return r;
        }
        db->thread_started = true;

        *ret = db;
        return 0;

fail:
        db_free(db);
        return r;
}

int db_open_readonly_err(sqlite3 **ret, const char *path, char *errbuf, size_t errlen) {
        return schema_open(ret, path, &(struct schema_open_options){ .readonly = true }, errbuf, errlen);
}

int db_open_readonly(sqlite3 **ret, const char *path) {
        return db_open_readonly_err(ret, path, NULL, 0);
}
