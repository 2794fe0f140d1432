/* SPDX-License-Identifier: MIT */
/* The reader thread: lookups and operator queries on a read-only connection, off the writer's path. */

/*
 * WAL mode lets a reader see the last committed state while the writer
 * appends, so reads need neither the writer thread nor the write lock: a
 * `provctl devices` page or a board's lookup never waits for a batch's fsync,
 * and another process holding the write lock does not stop them.
 *
 * Order: a read runs once every write submitted before it has completed, so
 * a caller that queued a write and then a read (without waiting for the
 * write's done()) still reads its write, as when one thread ran both.
 */

#include <errno.h>
#include <stdio.h>

#include "db-internal.h"
#include "schema/schema.h"

/* Reads run in one read transaction; the bound keeps a burst from holding a snapshot long. */
#define READ_BATCH_MAX 64

typedef int (*read_fn)(struct db_reader *rd, struct db_req *req);

static const read_fn readers[_DB_REQ_TYPE_MAX] = {
        [DB_LOOKUP_DEVICE] = db_do_lookup,
        [DB_QUERY_DEVICES] = db_do_query_devices,
        [DB_QUERY_STATS] = db_do_stats,
        [DB_QUERY_ISSUED] = db_do_query_issued,
        [DB_QUERY_OUTBOX] = db_do_query_outbox,
};

static void run_read(struct db *db, struct db_req *req) {
        struct db_reader *rd = &db->reader;
        int r;

        req->result = 0;
        req->errmsg[0] = 0;
        req->batch = 0;
        db_reset_outputs(req);
        r = readers[req->type](rd, req);
        if (r < 0) {
                req->result = r;
                if (!req->errmsg[0])
                        snprintf(req->errmsg, sizeof(req->errmsg), "%s", sqlite3_errmsg(rd->conn));
                db_free_outputs(req);
        }
}

static void reader_main(void *arg) {
        struct db *db = arg;
        struct db_reader *rd = &db->reader;

        uv_mutex_lock(&db->lock);
        for (;;) {
                struct db_req *head = rd->queue_head, *tail = NULL, *req;
                unsigned n = 0, failed = 0;
                bool txn;

                if (!head) {
                        /* Reads submitted after db_close() are refused: none can come. */
                        if (db->stopping)
                                break;
                        struct known_set *ks = db->known.scanning;
                        if (ks && db->writes_completed >= ks->after_writes) {
                                /* Between requests: one chunk of the known-serials scan. */
                                uv_mutex_unlock(&db->lock);
                                int r = db_known_scan_step(rd, ks);
                                uv_mutex_lock(&db->lock);
                                if (r <= 0 && db->known.scanning == ks)
                                        db->known.scanning = NULL;
                                continue;
                        }
                        uv_cond_wait(&rd->cond, &db->lock);
                        continue;
                }
                /* The reads whose writes have completed (see above), in order. */
                for (req = head; req && n < READ_BATCH_MAX && req->read_after <= db->writes_completed;
                     req = req->queue_next) {
                        tail = req;
                        n++;
                }
                if (!tail) {
                        uv_cond_wait(&rd->cond, &db->lock);
                        continue;
                }
                rd->queue_head = tail->queue_next;
                if (!rd->queue_head)
                        rd->queue_tail = NULL;
                tail->queue_next = NULL;
                uv_mutex_unlock(&db->lock);

                /*
                 * Under load lookups come in bursts: one read transaction (one
                 * WAL read lock) and one wake-up of the loop for all of them.
                 */
                txn = n > 1 && sqlite3_exec(rd->conn, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
                for (req = head; req; req = req->queue_next) {
                        run_read(db, req);
                        failed += req->result < 0;
                }
                if (txn)
                        (void)sqlite3_exec(rd->conn, "COMMIT", NULL, NULL, NULL);

                uv_mutex_lock(&db->lock);
                if (db->done_tail)
                        db->done_tail->queue_next = head;
                else
                        db->done_head = head;
                db->done_tail = tail;
                db->metrics.reads += n;
                db->metrics.requests += n;
                db->metrics.requests_failed += failed;
                uv_mutex_unlock(&db->lock);
                uv_async_send(&db->async);
                uv_mutex_lock(&db->lock);
        }
        uv_mutex_unlock(&db->lock);

        for (size_t i = 0; i < _RSTMT_MAX; i++) {
                sqlite3_finalize(rd->stmts[i]);
                rd->stmts[i] = NULL;
        }
        sqlite3_close(rd->conn);
        rd->conn = NULL;

        uv_mutex_lock(&db->lock);
        rd->exited = true;
        uv_cond_signal(&db->cond);      /* the writer waits for this before closing its connection */
        uv_mutex_unlock(&db->lock);
        /* Last touch of @db by this thread: the loop may free it once joined. */
        uv_async_send(&db->async);
}

/* How many devices the table holds, from the totals (0 if unreadable: the filter is sized at its least). */
static uint64_t count_devices(sqlite3 *conn) {
        sqlite3_stmt *st = NULL;
        int64_t n = 0;

        if (sqlite3_prepare_v2(conn, "SELECT coalesce(sum(n), 0) FROM totals WHERE name LIKE 'devices.%'", -1, &st,
                               NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return n > 0 ? (uint64_t)n : 0;
}

int db_reader_start(struct db *db, const char *path, char *errbuf, size_t errlen) {
        struct db_reader *rd = &db->reader;
        char err[256] = "";
        int r, rc;

        r = uv_cond_init(&rd->cond);
        if (r < 0)
                return db_open_error(errbuf, errlen, r, "uv_cond_init: %s", uv_strerror(r));
        rd->cond_init = true;

        /* After the writer's connection migrated the file: this one only checks it. */
        r = schema_open(&rd->conn, path, &(struct schema_open_options){ .readonly = true }, err, sizeof(err));
        if (r < 0)
                return db_open_error(errbuf, errlen, r, "reader connection: %s", err);
        /* A larger page cache than the 2 MB default: a listing page touches the certificates too. */
        (void)sqlite3_exec(rd->conn, "PRAGMA cache_size = -8192", NULL, NULL, NULL);
        r = db_known_init(db, count_devices(rd->conn));
        if (r < 0)
                return db_open_error(errbuf, errlen, r, "known-serials filter: out of memory");
        for (size_t i = 0; i < _RSTMT_MAX; i++) {
                rc = sqlite3_prepare_v3(rd->conn, db_rstmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &rd->stmts[i],
                                        NULL);
                if (rc != SQLITE_OK)
                        return db_open_error(errbuf, errlen, schema_errno(rc) < 0 ? schema_errno(rc) : -EIO,
                                             "%s: preparing read statement %zu: %s", path, i,
                                             sqlite3_errmsg(rd->conn));
        }

        r = uv_thread_create(&rd->thread, reader_main, db);
        if (r < 0)
                return db_open_error(errbuf, errlen, r, "cannot start the reader thread: %s", uv_strerror(r));
        rd->started = true;
        return 0;
}

void db_reader_queue(struct db *db, struct db_req *req) {
        struct db_reader *rd = &db->reader;

        req->read_after = db->writes_submitted;
        if (rd->queue_tail)
                rd->queue_tail->queue_next = req;
        else
                rd->queue_head = req;
        rd->queue_tail = req;
        uv_cond_signal(&rd->cond);
}

void db_reader_wake(struct db *db) {
        if (db->reader.cond_init)
                uv_cond_signal(&db->reader.cond);
}

void db_reader_free(struct db *db) {
        struct db_reader *rd = &db->reader;

        if (rd->started) {
                uv_mutex_lock(&db->lock);
                db->stopping = true;
                uv_cond_signal(&rd->cond);
                uv_mutex_unlock(&db->lock);
                uv_thread_join(&rd->thread);
                rd->started = false;
        }
        for (size_t i = 0; i < _RSTMT_MAX; i++) {
                sqlite3_finalize(rd->stmts[i]);
                rd->stmts[i] = NULL;
        }
        sqlite3_close(rd->conn);
        rd->conn = NULL;
        if (rd->cond_init) {
                uv_cond_destroy(&rd->cond);
                rd->cond_init = false;
        }
        db_known_free(db);
}
