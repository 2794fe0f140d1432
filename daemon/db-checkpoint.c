/* SPDX-License-Identifier: MIT */
/* The checkpoint thread: copies the WAL back into the database file with its own connection. */

#include <errno.h>

#include "db-internal.h"
#include "schema/schema.h"

#define CHECKPOINT_RETRY_NS (50 * 1000 * 1000)

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

static void checkpointer_main(void *arg) {
        struct db *db = arg;
        int rc;

        uv_mutex_lock(&db->lock);
        for (;;) {
                while (!db->ckpt_wanted && !db->ckpt_stop)
                        uv_cond_wait(&db->ckpt_cond, &db->lock);
                if (db->ckpt_stop)
                        break;
                db->ckpt_wanted = false;
                uv_mutex_unlock(&db->lock);

                /* PASSIVE: never waits for, nor blocks, the writer or readers. */
                rc = sqlite3_wal_checkpoint_v2(db->ckpt_conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);

                uv_mutex_lock(&db->lock);
                if (rc == SQLITE_OK)
                        db->metrics.checkpoints++;
                else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
                        /*
                         * A lock held for a moment by another connection (seen
                         * while the writer commits): not an error. Try again
                         * shortly even if no further commit asks for it.
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

