/* SPDX-License-Identifier: MIT */
/* The checkpoint thread: copies the WAL back into the database file with its own connection. */

#include <errno.h>
#include <sys/stat.h>

#include "db-internal.h"
#include "schema/schema.h"

#define CHECKPOINT_RETRY_NS (50 * 1000 * 1000)
/* How long a truncating checkpoint waits for the write lock and the readers (holding the writer meanwhile). */
#define TRUNCATE_BUSY_MS 20
#define TRUNCATE_INTERVAL_NS (1000ull * 1000 * 1000)

/* Writer thread, after each COMMIT: @pages frames are in the WAL now. */
static int on_wal_commit(void *userdata, sqlite3 *conn, const char *name, int pages) {
        struct db *db = userdata;

        if (pages >= (int)db->checkpoint_pages) {
                uv_mutex_lock(&db->lock);
                if (!db->ckpt_wanted) {
                        db->ckpt_wanted = true;
                        uv_cond_signal(&db->ckpt_cond);
                }
                uv_mutex_unlock(&db->lock);
        }
        return SQLITE_OK;
}

/* Size of the WAL file; 0 when there is none. */
static uint64_t wal_size(struct db *db) {
        struct stat st;

        return stat(db->wal_path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/*
 * A WAL over the limit: PASSIVE checkpoints could not keep up, or another
 * connection's read transaction held them back (a WAL never shrinks by
 * itself). TRUNCATE copies every frame and cuts the file to zero; it needs
 * the write lock and every reader on the last snapshot, so it waits for them
 * a little (and holds our writer that long), then gives up until later.
 */
static int truncate_wal(struct db *db) {
        int rc;

        sqlite3_busy_timeout(db->ckpt_conn, TRUNCATE_BUSY_MS);
        rc = sqlite3_wal_checkpoint_v2(db->ckpt_conn, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_busy_timeout(db->ckpt_conn, 0);
        return rc;
}

static void checkpointer_main(void *arg) {
        struct db *db = arg;
        uint64_t last_truncate = 0;
        int rc;

        uv_mutex_lock(&db->lock);
        for (;;) {
                bool truncated = false, over = false;

                while (!db->ckpt_wanted && !db->ckpt_stop)
                        uv_cond_wait(&db->ckpt_cond, &db->lock);
                if (db->ckpt_stop)
                        break;
                db->ckpt_wanted = false;
                uv_mutex_unlock(&db->lock);

                /* PASSIVE: never waits for, nor blocks, the writer or readers. */
                rc = sqlite3_wal_checkpoint_v2(db->ckpt_conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
                /* At most one try a second: each holds the writer up to TRUNCATE_BUSY_MS. */
                over = rc == SQLITE_OK && wal_size(db) > db->wal_limit;
                if (over && uv_hrtime() - last_truncate >= TRUNCATE_INTERVAL_NS) {
                        last_truncate = uv_hrtime();
                        rc = truncate_wal(db);
                        truncated = rc == SQLITE_OK;
                }

                uv_mutex_lock(&db->lock);
                if (rc == SQLITE_OK) {
                        db->metrics.checkpoints++;
                        db->metrics.checkpoint_truncates += truncated;
                        /* Still too large: try again in a second, whether or not the writer commits meanwhile. */
                        if (over && !truncated && !db->ckpt_stop) {
                                db->ckpt_wanted = true;
                                (void)uv_cond_timedwait(&db->ckpt_cond, &db->lock, TRUNCATE_INTERVAL_NS);
                        }
                } else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
                        /*
                         * A lock held for a moment by another connection (seen
                         * while the writer commits), or a reader on an old
                         * snapshot: not an error. Try again shortly even if no
                         * further commit asks for it.
                         */
                        db->metrics.checkpoint_retries++;
                        db->ckpt_wanted = true;
                        if (!db->ckpt_stop)
                                (void)uv_cond_timedwait(&db->ckpt_cond, &db->lock, CHECKPOINT_RETRY_NS);
                } else
                        db->metrics.checkpoint_failures++;
        }
        uv_mutex_unlock(&db->lock);
}

void db_checkpointer_stop(struct db *db) {
        if (db->ckpt_started) {
                uv_mutex_lock(&db->lock);
                db->ckpt_stop = true;
                uv_cond_signal(&db->ckpt_cond);
                uv_mutex_unlock(&db->lock);
                uv_thread_join(&db->ckpt_thread);
                db->ckpt_started = false;
        }
        sqlite3_close(db->ckpt_conn);
        db->ckpt_conn = NULL;
}

int db_checkpointer_start(struct db *db, const char *path, char *errbuf, size_t errlen) {
        int rc, r;

        rc = sqlite3_open_v2(path, &db->ckpt_conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return db_open_error(errbuf, errlen, schema_errno(rc), "%s: checkpoint connection: %s", path,
                                  db->ckpt_conn ? sqlite3_errmsg(db->ckpt_conn) : sqlite3_errstr(rc));
        /* FULL: the database file is fsync'd before the WAL it came from may be reused. */
        rc = sqlite3_exec(db->ckpt_conn, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return db_open_error(errbuf, errlen, schema_errno(rc), "%s: checkpoint connection: %s", path,
                                  sqlite3_errmsg(db->ckpt_conn));
        r = uv_thread_create(&db->ckpt_thread, checkpointer_main, db);
        if (r < 0)
                return db_open_error(errbuf, errlen, r, "cannot start the checkpoint thread: %s", uv_strerror(r));
        db->ckpt_started = true;

        /* From now on the checkpointer, not COMMIT, copies the WAL back. */
        sqlite3_wal_hook(db->conn, on_wal_commit, db);
        return 0;
}

