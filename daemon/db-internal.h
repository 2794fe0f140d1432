/* SPDX-License-Identifier: MIT */
/* Private to the database module (db*.c): the object, its statements and the helpers the handlers share. */
#ifndef PROVD_DB_INTERNAL_H
#define PROVD_DB_INTERNAL_H

/*
 * The module's files:
 *   db.c             the engine: queue, writer thread, group commit, open/close
 *   db-reader.c      the reader thread and its read-only connection
 *   db-checkpoint.c  the checkpoint thread
 *   db-common.c      statement texts, string tables, validation and audit helpers, totals
 *   db-device.c      DB_RECORD_ISSUANCE, DB_RECORD_OUTCOME, DB_REISSUE_REQUEST, DB_AUDIT
 *   db-signer.c      DB_SIGNER_ENSURE, DB_SIGNER_RETIRE
 *   db-outbox.c      the AWS outbox: enqueue, DB_OUTBOX_CLAIM, DB_OUTBOX_COMPLETE
 *   db-query.c       reads on the reader connection: DB_LOOKUP_DEVICE, DB_QUERY_DEVICES, DB_QUERY_STATS
 *   db-identity.c    the database's identity and its marker file (first start, emptied, replaced)
 *   db-check.c       integrity check, totals against the rows (db_open(), provctl db check)
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <uv.h>

#include "audit.h"
#include "db.h"
#include "util.h"

#define MAX_DER_LEN 16384
/* Audit details and outbox payloads built per board: every field is bounded
 * (db.h) and fits several times over even escaped. */
#define JSON_RECORD_MAX 4096

/* --- prepared statements ---------------------------------------------------- */

/* The writer connection's statements (texts in db-common.c). */
enum stmt {
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_SAVEPOINT,
        STMT_RELEASE,
        STMT_ROLLBACK_TO,
        STMT_AUDIT_HEAD,
        STMT_AUDIT_INSERT,
        STMT_DEVICE_GET,
        STMT_DEVICE_INSERT,
        STMT_DEVICE_SET_CERT,
        STMT_DEVICE_PROVISIONED,
        STMT_DEVICE_CLONE,
        STMT_DEVICE_REISSUE,
        STMT_CERT_INSERT,
        STMT_CERT_SUPERSEDE,
        STMT_CERT_GET,
        STMT_CERT_ACTIVATE,
        STMT_CERT_DER,
        STMT_ATTEMPT_INSERT,
        STMT_OUTBOX_ENQUEUE,
        STMT_OUTBOX_FIND_CERT,
        STMT_OUTBOX_FIND_SIGNER,
        STMT_OUTBOX_CLAIM,
        STMT_OUTBOX_STATE,
        STMT_OUTBOX_DONE,
        STMT_OUTBOX_RETRY,
        STMT_OUTBOX_FAIL,
        STMT_OUTBOX_CLAIM_CERT,
        STMT_OUTBOX_GET,
        STMT_OUTBOX_PATCH,
        STMT_SIGNER_FIND,
        STMT_SIGNER_INSERT,
        STMT_SIGNER_STATE,
        STMT_SIGNER_RETIRE,
        STMT_SIGNER_DER,
        STMT_TOTALS_ADD,
        _STMT_MAX,
};
extern const char *const db_stmt_sql[_STMT_MAX];

/* The reader connection's statements. */
enum rstmt {
        RSTMT_LOOKUP,
        RSTMT_QUERY_DEVICES,
        RSTMT_TOTALS,
        RSTMT_ISSUED,
        RSTMT_KNOWN_SCAN,
        _RSTMT_MAX,
};
extern const char *const db_rstmt_sql[_RSTMT_MAX];

/* --- totals (schema 3: table totals, one row per counter) ------------------- */

/*
 * The counters behind DB_QUERY_STATS, kept by the writer: each handler adds
 * the change its statements made to the request's deltas, a request that
 * succeeds adds them to its batch's, and the batch writes the sums into the
 * totals table once, just before its COMMIT. So the counts change in the
 * same transaction as the rows they count, at a cost per batch, not per row.
 */
enum {
        TOTAL_DEVICES = 0,                                      /* + enum db_device_state */
        TOTAL_CERTIFICATES = TOTAL_DEVICES + _DB_DEVICE_STATE_MAX,
        TOTAL_CERT_STATUS,                                      /* + enum db_cert_status */
        TOTAL_ATTEMPTS = TOTAL_CERT_STATUS + _DB_CERT_STATUS_MAX, /* + enum db_outcome */
        TOTAL_OUTBOX = TOTAL_ATTEMPTS + _DB_OUTCOME_MAX,        /* + enum db_outbox_state */
        _TOTAL_MAX = TOTAL_OUTBOX + _DB_OUTBOX_STATE_MAX,
};
#define TOTAL_NAME_MAX 48

/* "devices.issued", "certificates.total", ...: the row names of the totals table. */
const char *db_total_name(unsigned i, char buf[TOTAL_NAME_MAX]);
/* The counter a totals row name stands for, or -EBADMSG. */
int db_total_from_name(const char *name);

/* --- the object ------------------------------------------------------------- */

struct db_reader {
        uv_thread_t thread;
        uv_cond_t cond;
        bool cond_init, started;
        /* Under db->lock. */
        struct db_req *queue_head, *queue_tail;
        bool exited;
        /* Reader thread only (and db_open() before it starts). */
        sqlite3 *conn;
        sqlite3_stmt *stmts[_RSTMT_MAX];
};

/* The known-serials filter (db-known.c): one set in use, and a larger one being filled when it is full. */
struct known_set {
        uint64_t *words;                /* the bits; atomic ORs and loads */
        uint64_t mask;                  /* number of bits - 1 (a power of two) */
        uint64_t capacity;              /* serials it holds at ~1 % false positives */
        uint64_t added;                 /* atomic */
        bool ready;                     /* atomic: the reader's scan of the table into it finished */
        uint64_t after_writes;          /* the scan starts once db->writes_completed reaches this */
        char scan_after[DB_SERIAL_MAX]; /* reader thread: the scan's position */
};

struct db_known {
        struct known_set *cur, *next;   /* loop thread */
        struct known_set *scanning;     /* under db->lock: the set the reader fills */
        uint64_t unread;                /* loop thread: serials answered unknown */
        uint64_t grown;                 /* loop thread: sets replaced by larger ones */
        uint64_t min_capacity;          /* db_options.known_filter_min */
};

struct db;
int db_known_init(struct db *db, uint64_t expected);
void db_known_free(struct db *db);
/* Loop thread, before an issuance is queued. */
void db_known_add_serial(struct db *db, const char *serial);
bool db_known_ready(struct db *db);
/* One chunk of the scan of the devices table into @ks: 1 more to do, 0 done, -errno (it never becomes ready). */
int db_known_scan_step(struct db_reader *rd, struct known_set *ks);

struct db {
        uv_loop_t *loop;
        /* db_free_space()'s last answer (loop thread only): at most one statvfs() per DB_FREE_CACHE_US. */
        uint64_t free_bytes, free_at_us;
        uv_async_t async;
        uv_thread_t thread;
        uv_mutex_t lock;
        uv_cond_t cond;
        bool lock_init, cond_init, async_init, thread_started;

        /* Under lock. */
        struct db_req *queue_head, *queue_tail;
        unsigned n_queued;
        struct db_req *done_head, *done_tail;
        bool stopping;                  /* db_close() called: no new work */
        enum {
                WRITER_BUSY,            /* running a batch: no need to wake it */
                WRITER_IDLE,            /* waiting for the first request */
                WRITER_COLLECTING,      /* waiting batch_delay_us for more */
        } writer_wait;
        bool thread_exited;             /* writer finished; join it */
        /*
         * Write requests submitted and completed (committed or failed), in
         * queue order: a read waits until every write submitted before it has
         * completed, so it sees what the writer queue held when it came.
         */
        uint64_t writes_submitted, writes_completed;
        struct db_metrics metrics;

        /* Loop thread only. */
        void (*close_cb)(struct db *db, void *userdata);
        void *close_userdata;
        bool closing_handle;
        bool in_completions;            /* on_async() is running done() callbacks */
        bool wake_pending;              /* ... and one of them queued work */

        struct db_reader reader;
        struct db_known known;

        /*
         * Checkpointer thread: copies the WAL back into the database file with
         * its own connection, so the writer never stalls a batch on that I/O
         * (WAL mode lets a checkpoint run while the writer appends).
         */
        uv_thread_t ckpt_thread;
        uv_cond_t ckpt_cond;
        bool ckpt_cond_init, ckpt_started;
        sqlite3 *ckpt_conn;
        bool ckpt_wanted, ckpt_stop;    /* under lock */
        char *wal_path;                 /* PATH-wal */
        uint64_t wal_limit;             /* bytes: over this the checkpointer truncates the WAL */

        char *path;                     /* the database file (db_free_space()) */

        /* Writer thread only (and db_open() before the thread starts). */
        sqlite3 *conn;
        sqlite3_stmt *stmts[_STMT_MAX];
        unsigned max_batch;
        uint64_t batch_delay_ns;
        unsigned checkpoint_pages;
        uint64_t batch_seq;
        int64_t audit_id;               /* chain head within the current batch */
        uint8_t audit_hash[AUDIT_HASH_LEN];
        int64_t req_delta[_TOTAL_MAX];  /* the running request's changes to the totals */
        int64_t batch_delta[_TOTAL_MAX];/* ... of the batch's requests that succeeded */
};

/* --- helpers (db-common.c) -------------------------------------------------- */

DEFINE_TRIVIAL_CLEANUP_FUNC(struct cJSON *, cJSON_Delete);

void db_stmt_resetp(sqlite3_stmt **st);
#define _cleanup_reset_ _cleanup_(db_stmt_resetp)

static inline sqlite3_stmt *use(struct db *db, enum stmt id) {
        return db->stmts[id];
}

static inline int64_t now_ms(void) {
        return wallclock_msec();
}

extern const char *const db_device_state_names[_DB_DEVICE_STATE_MAX];
extern const char *const db_cert_status_names[_DB_CERT_STATUS_MAX];
extern const char *const db_outcome_names[_DB_OUTCOME_MAX];
extern const char *const db_outbox_state_names[_DB_OUTBOX_STATE_MAX];

int db_from_string(const char *const *table, size_t n, const char *s);
#define FROM_STRING(table, s) db_from_string(table, ELEMENTSOF(table), (const char *)(s))

/* A TEXT column as a C string, "" for NULL. */
const char *db_col_text(sqlite3_stmt *st, int i);

/* Sets req->errmsg; returns @r. */
_printf_(3, 4) int db_fail(struct db_req *req, int r, const char *fmt, ...);
/* An SQLite failure on @conn: the mapped errno and "what: sqlite message". */
int db_fail_sql(sqlite3 *conn, struct db_req *req, int rc, const char *what);
/* Steps @st to SQLITE_DONE, or fails the request. */
int db_step_done(sqlite3 *conn, struct db_req *req, sqlite3_stmt *st, const char *what);
void db_bind_text_or_null(sqlite3_stmt *st, int i, const char *s);

#define FIELD_OK(a) (memchr((a), 0, sizeof(a)) != NULL)
/* A fixed array that must be NUL-terminated and, unless @may_be_empty, not empty. */
int db_check_str(struct db_req *req, const char *s, size_t size, bool may_be_empty, const char *name);
#define CHECK_STR(req, field, may_be_empty, name) db_check_str(req, field, sizeof(field), may_be_empty, name)
/* Lowercase copy of a hex field: even length within [min, max] digits. */
/*
 * @in (NUL-terminated within @in_size) as @min-@max hex digits, an even
 * number, lower-cased into @out (room for @in_size): 0, -EBADMSG (no NUL),
 * -ERANGE (its length), -EINVAL (not hex). No request, no message: the
 * rule itself, for db_canon_hex() and the known-serials filter.
 */
int db_hex_canon(const char *in, size_t in_size, char *out, size_t min, size_t max);
int db_canon_hex(struct db_req *req, const char *in, size_t in_size, char *out, size_t min, size_t max,
                 const char *name);
/* A device serial: 2-64 hex digits, an even number, stored lower case. */
#define SERIAL_HEX_MIN 2
#define SERIAL_HEX_MAX 64
#define CANON_SERIAL(req, field, out) \
        db_canon_hex(req, field, sizeof(field), out, SERIAL_HEX_MIN, SERIAL_HEX_MAX, "serial")

char *db_json_print(struct cJSON *o);
void db_json_add_int(struct cJSON *o, const char *name, int64_t v);
void db_json_add_col_int_or_null(struct cJSON *o, const char *name, sqlite3_stmt *st, int i);
void db_json_add_col_str_or_null(struct cJSON *o, const char *name, sqlite3_stmt *st, int i);

/* Writes the reason into @errbuf (may be NULL); returns @r. */
_printf_(4, 5) int db_open_error(char *errbuf, size_t errlen, int r, const char *fmt, ...);

/* Appends one row to the audit chain, advancing the batch's head. */
int db_append_audit(struct db *db, struct db_req *req, int64_t now, const char *actor, const char *action,
                    const char *serial, const char *details, int64_t *ret_id);

/* The running request's change to counter @i (see "totals"). */
static inline void total_add(struct db *db, unsigned i, int64_t n) {
        db->req_delta[i] += n;
}
/* Writes the batch's deltas into the totals table (in its transaction). */
int db_totals_flush(struct db *db, char *why, size_t why_len);

/* --- handlers --------------------------------------------------------------- */

/* Writer thread, inside the batch's transaction. */
int db_do_audit(struct db *db, struct db_req *req, int64_t now);
int db_do_issuance(struct db *db, struct db_req *req, int64_t now);
int db_do_outcome(struct db *db, struct db_req *req, int64_t now);
int db_do_reissue(struct db *db, struct db_req *req, int64_t now);
int db_do_signer_ensure(struct db *db, struct db_req *req, int64_t now);
int db_do_signer_retire(struct db *db, struct db_req *req, int64_t now);
int db_do_outbox_claim(struct db *db, struct db_req *req, int64_t now);
int db_do_outbox_complete(struct db *db, struct db_req *req, int64_t now);
int db_do_outbox_enqueue_req(struct db *db, struct db_req *req, int64_t now);
int db_do_outbox_requeue(struct db *db, struct db_req *req, int64_t now);
/* Queues @kind for the certificate or the signer once; *ret_id is the row, new or old. */
int db_outbox_enqueue(struct db *db, struct db_req *req, int64_t now, enum db_outbox_kind kind,
                      int64_t cert_id, int64_t signer_id, const char *payload, int64_t *ret_id);

/* Reader thread, on its read-only connection. */
bool db_is_read(const struct db_req *req);
int db_do_lookup(struct db_reader *rd, struct db_req *req);
int db_do_query_devices(struct db_reader *rd, struct db_req *req);
int db_do_stats(struct db_reader *rd, struct db_req *req);
int db_do_query_issued(struct db_reader *rd, struct db_req *req);
int db_do_query_outbox(struct db_reader *rd, struct db_req *req);

/* Outputs the caller must free, freed (a request that failed has none). */
void db_free_outputs(struct db_req *req);
/* Outputs reset before a request runs (never free what the caller left there). */
void db_reset_outputs(struct db_req *req);

/* --- threads ---------------------------------------------------------------- */

/* db-reader.c: opens the read-only connection, prepares its statements, starts the thread. */
int db_reader_start(struct db *db, const char *path, char *errbuf, size_t errlen);
/* Loop thread, db->lock held: queues a read. */
void db_reader_queue(struct db *db, struct db_req *req);
/* Loop thread, db->lock held: wakes the reader (stopping, or writes completed). */
void db_reader_wake(struct db *db);
/* Joins the thread (after db->stopping was set and it exited, or never started) and closes. */
void db_reader_free(struct db *db);

/* db-identity.c: before the database is opened (an emptied file, a lost one), and after it migrated. */
int db_identity_precheck(const char *path, char *errbuf, size_t errlen);
int db_identity_check(sqlite3 *conn, const char *path, char *errbuf, size_t errlen);

/* db-checkpoint.c */
int db_checkpointer_start(struct db *db, const char *path, char *errbuf, size_t errlen);
void db_checkpointer_stop(struct db *db);

#endif
