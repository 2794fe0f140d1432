/* SPDX-License-Identifier: MIT */
/* The daemon's database: one writer thread, group commit, requests completed on the libuv loop. */

/*
 * Flow of a request (see db.h for the glossary):
 *
 *   loop thread                      writer thread
 *   db_submit() --lock--> queue ---> wakes on cond, takes <= max_batch
 *                                    BEGIN IMMEDIATE
 *                                    audit chain head (one indexed read)
 *                                    per request: SAVEPOINT req / handler /
 *                                                 RELEASE or ROLLBACK TO
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
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "audit.h"
#include "certs-hsm/digest.h"
#include "db.h"
#include "json-writer.h"
#include "schema/schema.h"
#include "util.h"

#define DEFAULT_MAX_BATCH 256
#define MAX_MAX_BATCH 65536
#define MAX_DER_LEN 16384
/* Audit details and outbox payloads built per board: every field is bounded
 * (db.h) and fits several times over even escaped. */
#define JSON_RECORD_MAX 4096
/*
 * WAL frames after a commit that wake the checkpointer: 16 MiB of 4 KiB pages,
 * four times SQLite's default. A page that many commits rewrite (index and
 * table pages shared by many boards) is copied back once per checkpoint, so a
 * longer interval writes less per board (bench: 42 -> 35 KB per board).
 */
#define DEFAULT_CHECKPOINT_PAGES 4000
/* A WAL file larger than this is truncated when it restarts. */
#define CHECKPOINT_RETRY_NS (50 * 1000 * 1000)
#define WAL_SIZE_LIMIT 67108864 /* 64 MiB */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);
DEFINE_TRIVIAL_CLEANUP_FUNC(X509 *, X509_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free);

static void stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}
#define _cleanup_reset_ _cleanup_(stmt_resetp)

/* --- prepared statements -------------------------------------------------- */

enum stmt {
        STMT_BEGIN,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_SAVEPOINT,
        STMT_RELEASE,
        STMT_ROLLBACK_TO,
        STMT_AUDIT_HEAD,
        STMT_AUDIT_INSERT,
        STMT_LOOKUP,
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
        STMT_SIGNER_FIND,
        STMT_SIGNER_INSERT,
        STMT_SIGNER_STATE,
        STMT_SIGNER_RETIRE,
        STMT_SIGNER_DER,
        STMT_QUERY_DEVICES,
        STMT_STATS,
        _STMT_MAX,
};

static const char *const stmt_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_SAVEPOINT] = "SAVEPOINT req",
        [STMT_RELEASE] = "RELEASE req",
        [STMT_ROLLBACK_TO] = "ROLLBACK TO req",
        [STMT_AUDIT_HEAD] = AUDIT_SQL_HEAD,
        [STMT_AUDIT_INSERT] = AUDIT_SQL_INSERT,
        [STMT_LOOKUP] =
                "SELECT d.state, d.pubkey, d.reissue_requested, d.current_cert_id, "
                "c.status, c.sha256, c.thing_name, c.not_after, c.der "
                "FROM devices d LEFT JOIN certificates c ON c.id = d.current_cert_id "
                "WHERE d.serial = ?1",
        [STMT_DEVICE_GET] =
                "SELECT state, pubkey, reissue_requested, current_cert_id FROM devices WHERE serial = ?1",
        [STMT_DEVICE_INSERT] =
                "INSERT INTO devices (serial, model, fw_version, pubkey, state, first_seen, updated_at) "
                "VALUES (?1, ?2, ?3, ?4, 'issued', ?5, ?5)",
        [STMT_DEVICE_SET_CERT] =
                "UPDATE devices SET model = ?2, fw_version = ?3, state = 'issued', current_cert_id = ?4, "
                "updated_at = ?5 WHERE serial = ?1",
        [STMT_DEVICE_PROVISIONED] =
                "UPDATE devices SET state = 'provisioned', provisioned_at = ?2, reissue_requested = 0, "
                "updated_at = ?3 WHERE serial = ?1",
        [STMT_DEVICE_CLONE] =
                "UPDATE devices SET state = 'clone_suspected', updated_at = ?2 WHERE serial = ?1",
        [STMT_DEVICE_REISSUE] =
                "UPDATE devices SET reissue_requested = 1, updated_at = ?2 WHERE serial = ?1",
        [STMT_CERT_INSERT] =
                "INSERT INTO certificates (device_serial, signer_id, serial_hex, sha256, der, thing_name, "
                "not_before, not_after, issued_at, status, status_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'issued', ?9)",
        [STMT_CERT_SUPERSEDE] =
                "UPDATE certificates SET status = 'superseded', status_at = ?2 "
                "WHERE id = ?1 AND status IN ('issued', 'active')",
        [STMT_CERT_GET] =
                "SELECT device_serial, status, thing_name, sha256, signer_id FROM certificates WHERE id = ?1",
        [STMT_CERT_ACTIVATE] =
                "UPDATE certificates SET status = 'active', proven_at = ?2, status_at = ?3 "
                "WHERE id = ?1 AND status = 'issued'",
        [STMT_CERT_DER] = "SELECT der FROM certificates WHERE id = ?1",
        [STMT_ATTEMPT_INSERT] =
                "INSERT INTO attempts (port, slot, serial, started_at, finished_at, outcome, step, error, "
                "cert_id, timings) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [STMT_OUTBOX_ENQUEUE] =
                "INSERT INTO aws_outbox (kind, cert_id, signer_id, payload, next_attempt_at, created_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
        [STMT_OUTBOX_FIND_CERT] = "SELECT id FROM aws_outbox WHERE kind = ?1 AND cert_id = ?2",
        [STMT_OUTBOX_FIND_SIGNER] = "SELECT id FROM aws_outbox WHERE kind = ?1 AND signer_id = ?2",
        [STMT_OUTBOX_CLAIM] =
                "UPDATE aws_outbox SET state = 'in_flight', attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM aws_outbox WHERE state = 'pending' AND next_attempt_at <= ?1 "
                "ORDER BY next_attempt_at, id LIMIT ?2) "
                "RETURNING id, kind, cert_id, signer_id, payload, attempts, next_attempt_at",
        [STMT_OUTBOX_STATE] = "SELECT state FROM aws_outbox WHERE id = ?1",
        [STMT_OUTBOX_DONE] =
                "UPDATE aws_outbox SET state = 'done', done_at = ?2, last_error = NULL "
                "WHERE id = ?1 AND state = 'in_flight'",
        [STMT_OUTBOX_RETRY] =
                "UPDATE aws_outbox SET state = 'pending', next_attempt_at = ?2, last_error = ?3 "
                "WHERE id = ?1 AND state = 'in_flight'",
        [STMT_OUTBOX_FAIL] =
                "UPDATE aws_outbox SET state = 'failed', last_error = ?2 WHERE id = ?1 AND state = 'in_flight'",
        [STMT_SIGNER_FIND] = "SELECT id, state FROM signers WHERE cert_sha256 = ?1",
        [STMT_SIGNER_INSERT] =
                "INSERT INTO signers (name, key_uri, cert_der, cert_sha256, subject, not_before, not_after, "
                "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        [STMT_SIGNER_STATE] = "SELECT state FROM signers WHERE id = ?1",
        [STMT_SIGNER_RETIRE] =
                "UPDATE signers SET state = 'retired', retired_at = ?2 WHERE id = ?1 AND state = 'active'",
        [STMT_SIGNER_DER] = "SELECT cert_der FROM signers WHERE id = ?1",
        [STMT_QUERY_DEVICES] =
                "SELECT d.serial, d.model, d.fw_version, d.state, d.first_seen, d.provisioned_at, "
                "d.updated_at, d.reissue_requested, d.current_cert_id, c.thing_name, c.sha256, "
                "c.serial_hex, c.not_after, c.status, c.der "
                "FROM devices d LEFT JOIN certificates c ON c.id = d.current_cert_id "
                "WHERE (d.updated_at, d.serial) > (?1, ?3) ORDER BY d.updated_at, d.serial LIMIT ?2",
        /* Counted on demand: an operator query, kept off the per-board write path. */
        [STMT_STATS] = "SELECT 'devices.' || state, count(*) FROM devices GROUP BY state "
                       "UNION ALL SELECT 'certificates.total', count(*) FROM certificates "
                       "UNION ALL SELECT 'certificates.' || status, count(*) FROM certificates GROUP BY status "
                       "UNION ALL SELECT 'attempts.' || outcome, count(*) FROM attempts GROUP BY outcome "
                       "UNION ALL SELECT 'aws_outbox.' || state, count(*) FROM aws_outbox GROUP BY state",
};

/* --- the object ----------------------------------------------------------- */

struct db {
        uv_loop_t *loop;
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
        struct db_metrics metrics;

        /* Loop thread only. */
        void (*close_cb)(struct db *db, void *userdata);
        void *close_userdata;
        bool closing_handle;
        bool in_completions;            /* on_async() is running done() callbacks */
        bool wake_pending;              /* ... and one of them queued work */

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

        /* Writer thread only (and db_open() before the thread starts). */
        sqlite3 *conn;
        sqlite3_stmt *stmts[_STMT_MAX];
        unsigned max_batch;
        uint64_t batch_delay_ns;
        unsigned checkpoint_pages;
        uint64_t batch_seq;
        int64_t audit_id;               /* chain head within the current batch */
        uint8_t audit_hash[AUDIT_HASH_LEN];
};

/* --- string tables -------------------------------------------------------- */

static const char *const device_state_names[_DB_DEVICE_STATE_MAX] = {
        [DB_DEVICE_ISSUED] = "issued",
        [DB_DEVICE_PROVISIONED] = "provisioned",
        [DB_DEVICE_CLONE_SUSPECTED] = "clone_suspected",
};

static const char *const cert_status_names[_DB_CERT_STATUS_MAX] = {
        [DB_CERT_ISSUED] = "issued",
        [DB_CERT_ACTIVE] = "active",
        [DB_CERT_SUPERSEDED] = "superseded",
        [DB_CERT_REVOKED] = "revoked",
};

static const char *const outcome_names[_DB_OUTCOME_MAX] = {
        [DB_OUTCOME_PROVISIONED] = "provisioned",
        [DB_OUTCOME_ALREADY_PROVISIONED] = "already_provisioned",
        [DB_OUTCOME_FAILED] = "failed",
        [DB_OUTCOME_REJECTED] = "rejected",
        [DB_OUTCOME_CLONE_SUSPECTED] = "clone_suspected",
        [DB_OUTCOME_ABORTED] = "aborted",
};

static const char *const outbox_state_names[_DB_OUTBOX_STATE_MAX] = {
        [DB_OUTBOX_PENDING] = "pending",
        [DB_OUTBOX_IN_FLIGHT] = "in_flight",
        [DB_OUTBOX_DONE] = "done",
        [DB_OUTBOX_FAILED] = "failed",
};

static const char *const outbox_kind_names[_DB_OUTBOX_KIND_MAX] = {
        [DB_OUTBOX_REGISTER_CERT] = "register_cert",
        [DB_OUTBOX_REGISTER_CA] = "register_ca",
        [DB_OUTBOX_REVOKE_CERT] = "revoke_cert",
};

#define TO_STRING(table, v) ((unsigned)(v) < ELEMENTSOF(table) ? table[v] : "?")

const char *db_device_state_to_string(enum db_device_state s) {
        return TO_STRING(device_state_names, s);
}
const char *db_cert_status_to_string(enum db_cert_status s) {
        return TO_STRING(cert_status_names, s);
}
const char *db_outcome_to_string(enum db_outcome o) {
        return TO_STRING(outcome_names, o);
}
const char *db_outbox_state_to_string(enum db_outbox_state s) {
        return TO_STRING(outbox_state_names, s);
}
const char *db_outbox_kind_to_string(enum db_outbox_kind k) {
        return TO_STRING(outbox_kind_names, k);
}

static int from_string(const char *const *table, size_t n, const char *s) {
        for (size_t i = 0; s && i < n; i++)
                if (streq(table[i], s))
                        return (int)i;
        return -EBADMSG;
}
#define FROM_STRING(table, s) from_string(table, ELEMENTSOF(table), (const char *)(s))

/*
 * A TEXT column as a C string, "" for NULL. The schema makes these columns NOT
 * NULL, but a file edited by hand (the CHECKs and NOT NULLs dropped) must give
 * a refused request, not a NULL dereference on the writer thread.
 */
static const char *col_text(sqlite3_stmt *st, int i) {
        const char *t = (const char *)sqlite3_column_text(st, i);
        return t ? t : "";
}

/* --- small helpers -------------------------------------------------------- */

int db_errno(int sqlite_rc) {
        return schema_errno(sqlite_rc);
}

void db_sha256_hex(const void *data, size_t len, char ret[DB_SHA256_HEX_MAX]) {
        uint8_t md[32];

        if (certs_sha256(data, len, md) < 0) {
                ret[0] = 0;
                return;
        }
        hex_encode(md, sizeof(md), ret, false);
}

char *db_der_to_pem(const uint8_t *der, size_t len) {
        static const char head[] = "-----BEGIN CERTIFICATE-----\n", tail[] = "-----END CERTIFICATE-----\n";
        size_t lines = (len + 47) / 48, cap = sizeof(head) + sizeof(tail) + lines * 66 + 1;
        char *pem = malloc(cap), *p;

        if (!pem)
                return NULL;
        p = stpcpy(pem, head);
        for (size_t off = 0; off < len; off += 48) {
                size_t n = MIN((size_t)48, len - off);

                p += EVP_EncodeBlock((unsigned char *)p, der + off, (int)n);
                *p++ = '\n';
        }
        strcpy(p, tail);
        return pem;
}

static int64_t now_ms(void) {
        return wallclock_msec();
}

_printf_(3, 4)
static int fail(struct db_req *req, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(req->errmsg, sizeof(req->errmsg), fmt, ap);
        va_end(ap);
        return r;
}

/* An SQLite failure: the mapped errno and "what: sqlite message". */
static int fail_sql(struct db *db, struct db_req *req, int rc, const char *what) {
        int r = schema_errno(rc);

        snprintf(req->errmsg, sizeof(req->errmsg), "%s: %s", what, sqlite3_errmsg(db->conn));
        return r < 0 ? r : -EIO;
}

static sqlite3_stmt *use(struct db *db, enum stmt id) {
        return db->stmts[id];
}

static int step_done(struct db *db, struct db_req *req, sqlite3_stmt *st, const char *what) {
        int rc = sqlite3_step(st);

        return rc == SQLITE_DONE ? 0 : fail_sql(db, req, rc, what);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
        if (isempty(s))
                sqlite3_bind_null(st, i);
        else
                sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

#define FIELD_OK(a) (memchr((a), 0, sizeof(a)) != NULL)

/* A fixed array that must be NUL-terminated and, unless @may_be_empty, not empty. */
static int check_str(struct db_req *req, const char *s, size_t size, bool may_be_empty, const char *name) {
        if (!memchr(s, 0, size))
                return fail(req, -EINVAL, "%s is not NUL-terminated", name);
        if (!may_be_empty && !*s)
                return fail(req, -EINVAL, "%s is empty", name);
        return 0;
}
#define CHECK_STR(req, field, may_be_empty, name) check_str(req, field, sizeof(field), may_be_empty, name)

/* Lowercase copy of a hex field: even length within [min, max] digits. */
static int canon_hex(struct db_req *req, const char *in, size_t in_size, char *out, size_t min, size_t max,
                     const char *name) {
        size_t n;

        if (!memchr(in, 0, in_size))
                return fail(req, -EINVAL, "%s is not NUL-terminated", name);
        n = strlen(in);
        if (n < min || n > max || n % 2 != 0)
                return fail(req, -EINVAL, "%s '%s': expected an even number of hex digits, %zu..%zu",
                            name, in, min, max);
        for (size_t i = 0; i < n; i++) {
                char c = in[i];

                if (c >= 'A' && c <= 'F')
                        c = (char)(c - 'A' + 'a');
                else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return fail(req, -EINVAL, "%s '%s' is not hex", name, in);
                out[i] = c;
        }
        out[n] = 0;
        return 0;
}
#define CANON_SERIAL(req, field, out) canon_hex(req, field, sizeof(field), out, 2, 64, "serial")

static char *json_print(cJSON *o) {
        return o ? cJSON_PrintUnformatted(o) : NULL;
}

static void json_add_int(cJSON *o, const char *name, int64_t v) {
        cJSON_AddNumberToObject(o, name, (double)v);
}

static void json_add_col_int_or_null(cJSON *o, const char *name, sqlite3_stmt *st, int i) {
        if (sqlite3_column_type(st, i) == SQLITE_NULL)
                cJSON_AddNullToObject(o, name);
        else
                json_add_int(o, name, sqlite3_column_int64(st, i));
}

static void json_add_col_str_or_null(cJSON *o, const char *name, sqlite3_stmt *st, int i) {
        const char *s = (const char *)sqlite3_column_text(st, i);

        if (s)
                cJSON_AddStringToObject(o, name, s);
        else
                cJSON_AddNullToObject(o, name);
}

/* --- audit ---------------------------------------------------------------- */

static int append_audit(struct db *db, struct db_req *req, int64_t now, const char *actor, const char *action,
                        const char *serial, const char *details, int64_t *ret_id) {
        struct audit_entry e = {
                .id = db->audit_id + 1,
                .ts = now,
                .actor = isempty(actor) ? "provd" : actor,
                .action = action,
                .serial = isempty(serial) ? NULL : serial,
                .details = details ? details : "{}",
        };
        uint8_t h[AUDIT_HASH_LEN];
        int r;

        r = audit_insert(use(db, STMT_AUDIT_INSERT), &e, db->audit_hash, h);
        if (r < 0)
                return fail(req, r, "audit %s: %s", action, sqlite3_errmsg(db->conn));
        db->audit_id = e.id;
        memcpy(db->audit_hash, h, AUDIT_HASH_LEN);
        if (ret_id)
                *ret_id = e.id;
        return 0;
}

static int do_audit(struct db *db, struct db_req *req, int64_t now) {
        struct db_audit *q = &req->audit;
        char serial[DB_SERIAL_MAX] = "";
        int r;

        r = CHECK_STR(req, q->actor, false, "actor");
        if (r >= 0)
                r = CHECK_STR(req, q->action, false, "action");
        if (r >= 0 && !FIELD_OK(q->serial))
                r = fail(req, -EINVAL, "serial is not NUL-terminated");
        if (r >= 0 && q->serial[0])
                r = CANON_SERIAL(req, q->serial, serial);
        if (r < 0)
                return r;
        return append_audit(db, req, now, q->actor, q->action, serial, q->details_json, &q->id);
}

/* --- AWS outbox ----------------------------------------------------------- */

/* Queues @kind for the certificate or the signer once; *ret_id is the row, new or old. */
static int outbox_enqueue(struct db *db, struct db_req *req, int64_t now, enum db_outbox_kind kind,
                          int64_t cert_id, int64_t signer_id, const char *payload, int64_t *ret_id) {
        const char *k = db_outbox_kind_to_string(kind);
        int r, rc;

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_ENQUEUE);

                sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
                if (cert_id)
                        sqlite3_bind_int64(st, 2, cert_id);
                if (signer_id)
                        sqlite3_bind_int64(st, 3, signer_id);
                sqlite3_bind_text(st, 4, payload ? payload : "{}", -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 5, now);
                r = step_done(db, req, st, "aws_outbox insert");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 1) {
                        *ret_id = sqlite3_last_insert_rowid(db->conn);
                        return 0;
                }
        }

        /* Already queued (possibly done long ago): enqueue is idempotent. */
        _cleanup_reset_ sqlite3_stmt *st = use(db, cert_id ? STMT_OUTBOX_FIND_CERT : STMT_OUTBOX_FIND_SIGNER);
        sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, cert_id ? cert_id : signer_id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? fail(req, -EIO, "aws_outbox: queued row vanished")
                                         : fail_sql(db, req, rc, "aws_outbox lookup");
        *ret_id = sqlite3_column_int64(st, 0);
        return 0;
}

/* --- DB_LOOKUP_DEVICE ----------------------------------------------------- */

static int do_lookup(struct db *db, struct db_req *req, int64_t now) {
        struct db_lookup_device *q = &req->lookup;
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        char serial[DB_SERIAL_MAX];
        int r, rc;

        r = CANON_SERIAL(req, q->serial, serial);
        if (r < 0)
                return r;

        st = use(db, STMT_LOOKUP);
        sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                q->found = false;
                return 0;
        }
        if (rc != SQLITE_ROW)
                return fail_sql(db, req, rc, "device lookup");

        r = FROM_STRING(device_state_names, sqlite3_column_text(st, 0));
        if (r < 0 || sqlite3_column_bytes(st, 1) != DB_PUBKEY_LEN)
                return fail(req, -EBADMSG, "device %s: unreadable row", serial);
        q->state = (enum db_device_state)r;
        memcpy(q->pubkey, sqlite3_column_blob(st, 1), DB_PUBKEY_LEN);
        q->reissue_requested = sqlite3_column_int(st, 2) != 0;
        q->cert_id = sqlite3_column_int64(st, 3);
        if (q->cert_id && sqlite3_column_type(st, 4) != SQLITE_NULL) {
                r = FROM_STRING(cert_status_names, sqlite3_column_text(st, 4));
                if (r < 0)
                        return fail(req, -EBADMSG, "certificate %" PRId64 ": unreadable status", q->cert_id);
                q->cert_status = (enum db_cert_status)r;
                snprintf(q->cert_sha256, sizeof(q->cert_sha256), "%s", col_text(st, 5));
                snprintf(q->thing_name, sizeof(q->thing_name), "%s", col_text(st, 6));
                q->cert_not_after_ms = sqlite3_column_int64(st, 7);
                if (q->want_der) {
                        const void *der = sqlite3_column_blob(st, 8);
                        int n = sqlite3_column_bytes(st, 8);

                        q->cert_der = malloc(n > 0 ? (size_t)n : 1);
                        if (!q->cert_der)
                                return fail(req, -ENOMEM, "out of memory");
                        memcpy(q->cert_der, der, (size_t)n);
                        q->cert_der_len = (size_t)n;
                }
        } else
                q->cert_id = 0;
        q->found = true;
        return 0;
}

/* --- DB_RECORD_ISSUANCE --------------------------------------------------- */

static int do_issuance(struct db *db, struct db_req *req, int64_t now) {
        struct db_record_issuance *q = &req->issuance;
        char serial[DB_SERIAL_MAX], cert_serial[DB_CERT_SERIAL_MAX], sha[DB_SHA256_HEX_MAX];
        char details_buf[JSON_RECORD_MAX];
        const char *details;
        int64_t old_cert = 0, superseded = 0, cert_id;
        bool exists = false;
        int r, rc;

        r = CANON_SERIAL(req, q->serial, serial);
        if (r >= 0)
                r = canon_hex(req, q->cert_serial, sizeof(q->cert_serial), cert_serial, 2, 42, "cert_serial");
        if (r >= 0)
                r = CHECK_STR(req, q->model, true, "model");
        if (r >= 0)
                r = CHECK_STR(req, q->fw_version, true, "fw_version");
        if (r >= 0)
                r = CHECK_STR(req, q->thing_name, false, "thing_name");
        if (r >= 0)
                r = CHECK_STR(req, q->port, true, "port");
        if (r >= 0)
                r = CHECK_STR(req, q->slot, true, "slot");
        if (r < 0)
                return r;
        if (!q->cert_der || q->cert_der_len == 0 || q->cert_der_len > MAX_DER_LEN)
                return fail(req, -EINVAL, "certificate DER missing or over %d bytes", MAX_DER_LEN);
        if (q->pubkey[0] != 0x04)
                return fail(req, -EINVAL, "public key is not an uncompressed point");
        if (q->signer_id <= 0)
                return fail(req, -EINVAL, "signer_id missing");
        /*
         * What the schema's CHECKs would refuse, refused before the first write:
         * a request that fails after writing makes its whole batch run again.
         */
        if (strspn(q->thing_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-") !=
            strlen(q->thing_name) || strlen(q->thing_name) > 128)
                return fail(req, -EINVAL, "thing_name '%s' is not [a-zA-Z0-9:_-]{1,128}", q->thing_name);
        if (q->not_after_ms < q->not_before_ms)
                return fail(req, -EINVAL, "certificate validity ends before it begins");

        db_sha256_hex(q->cert_der, q->cert_der_len, sha);
        if (q->cert_sha256[0]) {
                char given[DB_SHA256_HEX_MAX];

                r = canon_hex(req, q->cert_sha256, sizeof(q->cert_sha256), given, 64, 64, "cert_sha256");
                if (r < 0)
                        return r;
                if (!streq(given, sha))
                        return fail(req, -EINVAL, "cert_sha256 %s is not the SHA-256 of the DER (%s)", given, sha);
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_GET);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        exists = true;
                        if (sqlite3_column_bytes(st, 1) != DB_PUBKEY_LEN ||
                            memcmp(sqlite3_column_blob(st, 1), q->pubkey, DB_PUBKEY_LEN) != 0)
                                return fail(req, -EKEYREJECTED,
                                            "serial %s is recorded with another public key: clone suspected",
                                            serial);
                        if (FROM_STRING(device_state_names, sqlite3_column_text(st, 0)) ==
                                    DB_DEVICE_CLONE_SUSPECTED &&
                            sqlite3_column_int(st, 2) == 0)
                                return fail(req, -EPERM,
                                            "serial %s is marked clone_suspected; an operator must request "
                                            "a reissue first", serial);
                        old_cert = sqlite3_column_int64(st, 3);
                } else if (rc != SQLITE_DONE)
                        return fail_sql(db, req, rc, "device lookup");
        }

        if (!exists) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_INSERT);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, q->model, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, q->fw_version, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 4, q->pubkey, DB_PUBKEY_LEN, SQLITE_STATIC);
                sqlite3_bind_int64(st, 5, now);
                r = step_done(db, req, st, "device insert");
                if (r < 0)
                        return r;
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_INSERT);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, q->signer_id);
                sqlite3_bind_text(st, 3, cert_serial, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4, sha, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 5, q->cert_der, (int)q->cert_der_len, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, q->thing_name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 7, q->not_before_ms);
                sqlite3_bind_int64(st, 8, q->not_after_ms);
                sqlite3_bind_int64(st, 9, now);
                rc = sqlite3_step(st);
                if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                        return fail(req, -ENOENT, "unknown signer_id %" PRId64, q->signer_id);
                if (rc == SQLITE_CONSTRAINT_UNIQUE)
                        return fail(req, -EEXIST, "certificate serial %s already recorded (certificate %s)",
                                    cert_serial, sha);
                if (rc != SQLITE_DONE)
                        return fail_sql(db, req, rc, "certificate insert");
                cert_id = sqlite3_last_insert_rowid(db->conn);
        }

        if (old_cert) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_SUPERSEDE);

                sqlite3_bind_int64(st, 1, old_cert);
                sqlite3_bind_int64(st, 2, now);
                r = step_done(db, req, st, "supersede certificate");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 1)
                        superseded = old_cert;
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_SET_CERT);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, q->model, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, q->fw_version, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, cert_id);
                sqlite3_bind_int64(st, 5, now);
                r = step_done(db, req, st, "device update");
                if (r < 0)
                        return r;
        }

        {
                struct json_writer w;

                json_writer_init(&w, details_buf, sizeof(details_buf));
                json_writer_int(&w, "cert_id", cert_id);
                json_writer_str(&w, "cert_serial", cert_serial);
                json_writer_str(&w, "cert_sha256", sha);
                json_writer_int(&w, "signer_id", q->signer_id);
                json_writer_str(&w, "thing_name", q->thing_name);
                json_writer_int(&w, "not_before", q->not_before_ms);
                json_writer_int(&w, "not_after", q->not_after_ms);
                if (q->port[0])
                        json_writer_str(&w, "port", q->port);
                if (q->slot[0])
                        json_writer_str(&w, "slot", q->slot);
                if (superseded)
                        json_writer_int(&w, "superseded_cert_id", superseded);
                details = json_writer_finish(&w);
                if (!details)
                        return fail(req, -E2BIG, "audit details do not fit in %zu bytes", sizeof(details_buf));
        }
        r = append_audit(db, req, now, "provd", "cert.issue", serial, details, NULL);
        if (r < 0)
                return r;

        q->cert_id = cert_id;
        q->superseded_cert_id = superseded;
        memcpy(q->cert_sha256, sha, sizeof(sha));
        return 0;
}

/* --- DB_RECORD_OUTCOME ---------------------------------------------------- */

static int outcome_provisioned(struct db *db, struct db_req *req, int64_t now, const char *serial,
                               int64_t finished) {
        struct db_record_outcome *q = &req->outcome;
        char payload_buf[JSON_RECORD_MAX];
        const char *payload;
        enum db_cert_status status;
        int64_t signer_id;
        int r, rc;

        if (!serial[0] || q->cert_id <= 0)
                return fail(req, -EINVAL, "a provisioned outcome needs the serial and the cert_id");

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_GET);
                struct json_writer w;

                sqlite3_bind_int64(st, 1, q->cert_id);
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return fail(req, -ENOENT, "unknown certificate %" PRId64, q->cert_id);
                if (rc != SQLITE_ROW)
                        return fail_sql(db, req, rc, "certificate lookup");
                if (!streq(col_text(st, 0), serial))
                        return fail(req, -EINVAL, "certificate %" PRId64 " belongs to device %s, not %s",
                                    q->cert_id, col_text(st, 0), serial);
                r = FROM_STRING(cert_status_names, sqlite3_column_text(st, 1));
                if (r < 0)
                        return fail(req, -EBADMSG, "certificate %" PRId64 ": unreadable status", q->cert_id);
                status = (enum db_cert_status)r;
                if (status == DB_CERT_SUPERSEDED || status == DB_CERT_REVOKED)
                        return fail(req, -ESTALE, "certificate %" PRId64 " is %s", q->cert_id,
                                    cert_status_names[status]);
                signer_id = sqlite3_column_int64(st, 4);

                json_writer_init(&w, payload_buf, sizeof(payload_buf));
                json_writer_str(&w, "serial", serial);
                json_writer_str(&w, "thing_name", col_text(st, 2));
                json_writer_str(&w, "certificate_id", col_text(st, 3));
                json_writer_int(&w, "signer_id", signer_id);
                payload = json_writer_finish(&w);
                if (!payload)
                        return fail(req, -E2BIG, "outbox payload does not fit in %zu bytes", sizeof(payload_buf));
        }

        if (status == DB_CERT_ISSUED) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_ACTIVATE);

                sqlite3_bind_int64(st, 1, q->cert_id);
                sqlite3_bind_int64(st, 2, finished);
                sqlite3_bind_int64(st, 3, now);
                r = step_done(db, req, st, "certificate activate");
                if (r < 0)
                        return r;
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_PROVISIONED);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, finished);
                sqlite3_bind_int64(st, 3, now);
                r = step_done(db, req, st, "device provisioned");
                if (r < 0)
                        return r;
        }

        return outbox_enqueue(db, req, now, DB_OUTBOX_REGISTER_CERT, q->cert_id, 0, payload, &q->outbox_id);
}

static int outcome_clone(struct db *db, struct db_req *req, int64_t now, const char *serial) {
        struct db_record_outcome *q = &req->outcome;
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *details = NULL;
        char stored[DB_SHA256_HEX_MAX] = "", presented[DB_SHA256_HEX_MAX] = "";
        bool known = false;
        int r, rc;

        if (!o)
                return fail(req, -ENOMEM, "out of memory");

        if (serial[0]) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_GET);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        known = true;
                        db_sha256_hex(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), stored);
                } else if (rc != SQLITE_DONE)
                        return fail_sql(db, req, rc, "device lookup");
        }
        if (known) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_CLONE);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, now);
                r = step_done(db, req, st, "device clone_suspected");
                if (r < 0)
                        return r;
        }
        if (q->have_presented_pubkey)
                db_sha256_hex(q->presented_pubkey, DB_PUBKEY_LEN, presented);

        if (stored[0])
                cJSON_AddStringToObject(o, "stored_key_sha256", stored);
        else
                cJSON_AddNullToObject(o, "stored_key_sha256");
        if (presented[0])
                cJSON_AddStringToObject(o, "presented_key_sha256", presented);
        else
                cJSON_AddNullToObject(o, "presented_key_sha256");
        cJSON_AddStringToObject(o, "port", q->port);
        cJSON_AddStringToObject(o, "slot", q->slot);
        cJSON_AddStringToObject(o, "step", q->step);
        details = json_print(o);
        if (!details)
                return fail(req, -ENOMEM, "out of memory");
        return append_audit(db, req, now, "provd", "device.clone_suspected", serial, details, NULL);
}

static int do_outcome(struct db *db, struct db_req *req, int64_t now) {
        struct db_record_outcome *q = &req->outcome;
        char serial[DB_SERIAL_MAX] = "";
        int64_t finished, started;
        int r, rc;

        r = CHECK_STR(req, q->port, false, "port");
        if (r >= 0)
                r = CHECK_STR(req, q->slot, false, "slot");
        if (r >= 0)
                r = CHECK_STR(req, q->step, false, "step");
        if (r >= 0)
                r = CHECK_STR(req, q->error, true, "error");
        if (r >= 0 && !FIELD_OK(q->serial))
                r = fail(req, -EINVAL, "serial is not NUL-terminated");
        if (r >= 0 && q->serial[0])
                r = CANON_SERIAL(req, q->serial, serial);
        if (r < 0)
                return r;
        if ((unsigned)q->outcome >= _DB_OUTCOME_MAX)
                return fail(req, -EINVAL, "unknown outcome %d", (int)q->outcome);
        if (q->cert_id < 0)
                return fail(req, -EINVAL, "negative cert_id");

        finished = q->finished_ms ? q->finished_ms : now;
        started = q->started_ms ? q->started_ms : finished;

        if (q->outcome == DB_OUTCOME_PROVISIONED) {
                r = outcome_provisioned(db, req, now, serial, finished);
                if (r < 0)
                        return r;
        } else if (q->outcome == DB_OUTCOME_CLONE_SUSPECTED) {
                r = outcome_clone(db, req, now, serial);
                if (r < 0)
                        return r;
        }

        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_ATTEMPT_INSERT);
        sqlite3_bind_text(st, 1, q->port, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, q->slot, -1, SQLITE_STATIC);
        bind_text_or_null(st, 3, serial);
        sqlite3_bind_int64(st, 4, started);
        sqlite3_bind_int64(st, 5, finished);
        sqlite3_bind_text(st, 6, outcome_names[q->outcome], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, q->step, -1, SQLITE_STATIC);
        bind_text_or_null(st, 8, q->error);
        if (q->cert_id)
                sqlite3_bind_int64(st, 9, q->cert_id);
        bind_text_or_null(st, 10, q->timings_json);
        rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_CHECK)
                return fail(req, -EINVAL, "attempt refused by the schema (timings not a JSON object, "
                                          "or a field too long): %s", sqlite3_errmsg(db->conn));
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return fail(req, -ENOENT, "unknown certificate %" PRId64, q->cert_id);
        if (rc != SQLITE_DONE)
                return fail_sql(db, req, rc, "attempt insert");
        q->attempt_id = sqlite3_last_insert_rowid(db->conn);
        return 0;
}

/* --- DB_REISSUE_REQUEST --------------------------------------------------- */

static int do_reissue(struct db *db, struct db_req *req, int64_t now) {
        struct db_reissue_request *q = &req->reissue;
        char serial[DB_SERIAL_MAX];
        int r;

        r = CANON_SERIAL(req, q->serial, serial);
        if (r >= 0)
                r = CHECK_STR(req, q->actor, true, "actor");
        if (r < 0)
                return r;

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_REISSUE);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, now);
                r = step_done(db, req, st, "device reissue");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 0)
                        return fail(req, -ENOENT, "unknown serial %s", serial);
        }
        return append_audit(db, req, now, q->actor, "device.reissue_request", serial, NULL, NULL);
}

/* --- signers -------------------------------------------------------------- */

static int asn1_time_ms(const ASN1_TIME *t, int64_t *ret) {
        struct tm tm = {};

        if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
                return -EBADMSG;
        *ret = (int64_t)timegm(&tm) * 1000;
        return 0;
}

static int do_signer_ensure(struct db *db, struct db_req *req, int64_t now) {
        struct db_signer_ensure *q = &req->signer;
        _cleanup_(X509_freep) X509 *cert = NULL;
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_free_ char *details = NULL, *payload = NULL;
        const unsigned char *p;
        char sha[DB_SHA256_HEX_MAX], *subject;
        int64_t not_before, not_after, signer_id = 0, outbox_id;
        bool created = false, retired = false;
        long subject_len;
        int r, rc;

        r = CHECK_STR(req, q->name, false, "name");
        if (r >= 0)
                r = CHECK_STR(req, q->actor, true, "actor");
        if (r < 0)
                return r;
        if (isempty(q->key_uri) || strlen(q->key_uri) > 1024)
                return fail(req, -EINVAL, "key URI missing or too long");
        if (strcasestr(q->key_uri, "pin-value="))
                return fail(req, -EINVAL, "key URI carries a PIN (pin-value=); give the PIN another way");
        if (!q->cert_der || q->cert_der_len == 0 || q->cert_der_len > MAX_DER_LEN)
                return fail(req, -EINVAL, "signer certificate missing or over %d bytes", MAX_DER_LEN);

        p = q->cert_der;
        cert = d2i_X509(NULL, &p, (long)q->cert_der_len);
        if (!cert || p != q->cert_der + q->cert_der_len)
                return fail(req, -EBADMSG, "signer certificate is not one DER certificate");
        if (asn1_time_ms(X509_get0_notBefore(cert), &not_before) < 0 ||
            asn1_time_ms(X509_get0_notAfter(cert), &not_after) < 0)
                return fail(req, -EBADMSG, "signer certificate has unreadable validity");
        bio = BIO_new(BIO_s_mem());
        if (!bio || X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0 ||
            BIO_write(bio, "", 1) != 1)
                return fail(req, -ENOMEM, "out of memory");
        subject_len = BIO_get_mem_data(bio, &subject);
        if (subject_len <= 0)
                return fail(req, -ENOMEM, "out of memory");
        db_sha256_hex(q->cert_der, q->cert_der_len, sha);

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_SIGNER_FIND);

                sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        signer_id = sqlite3_column_int64(st, 0);
                        retired = streq(col_text(st, 1), "retired");
                } else if (rc != SQLITE_DONE)
                        return fail_sql(db, req, rc, "signer lookup");
        }

        if (!signer_id) {
                _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

                {
                        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_SIGNER_INSERT);

                        sqlite3_bind_text(st, 1, q->name, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st, 2, q->key_uri, -1, SQLITE_STATIC);
                        sqlite3_bind_blob(st, 3, q->cert_der, (int)q->cert_der_len, SQLITE_STATIC);
                        sqlite3_bind_text(st, 4, sha, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st, 5, subject, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(st, 6, not_before);
                        sqlite3_bind_int64(st, 7, not_after);
                        sqlite3_bind_int64(st, 8, now);
                        r = step_done(db, req, st, "signer insert");
                        if (r < 0)
                                return r;
                        signer_id = sqlite3_last_insert_rowid(db->conn);
                        created = true;
                }

                if (!o)
                        return fail(req, -ENOMEM, "out of memory");
                json_add_int(o, "signer_id", signer_id);
                cJSON_AddStringToObject(o, "name", q->name);
                cJSON_AddStringToObject(o, "subject", subject);
                cJSON_AddStringToObject(o, "cert_sha256", sha);
                cJSON_AddStringToObject(o, "key_uri", q->key_uri);
                json_add_int(o, "not_before", not_before);
                json_add_int(o, "not_after", not_after);
                details = json_print(o);
                if (!details)
                        return fail(req, -ENOMEM, "out of memory");
                r = append_audit(db, req, now, q->actor, "signer.add", NULL, details, NULL);
                if (r < 0)
                        return r;
        }

        if (q->enqueue_register_ca) {
                _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

                if (!o)
                        return fail(req, -ENOMEM, "out of memory");
                json_add_int(o, "signer_id", signer_id);
                cJSON_AddStringToObject(o, "name", q->name);
                cJSON_AddStringToObject(o, "cert_sha256", sha);
                payload = json_print(o);
                if (!payload)
                        return fail(req, -ENOMEM, "out of memory");
                r = outbox_enqueue(db, req, now, DB_OUTBOX_REGISTER_CA, 0, signer_id, payload, &outbox_id);
                if (r < 0)
                        return r;
        }

        q->signer_id = signer_id;
        q->created = created;
        q->retired = retired;
        memcpy(q->cert_sha256, sha, sizeof(sha));
        return 0;
}

static int do_signer_retire(struct db *db, struct db_req *req, int64_t now) {
        struct db_signer_retire *q = &req->retire;
        char buf[64];
        int r, rc;

        r = CHECK_STR(req, q->actor, true, "actor");
        if (r < 0)
                return r;

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_SIGNER_RETIRE);

                sqlite3_bind_int64(st, 1, q->signer_id);
                sqlite3_bind_int64(st, 2, now);
                r = step_done(db, req, st, "signer retire");
                if (r < 0)
                        return r;
        }
        if (sqlite3_changes(db->conn) == 0) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_SIGNER_STATE);

                sqlite3_bind_int64(st, 1, q->signer_id);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        return 0;       /* already retired */
                if (rc == SQLITE_DONE)
                        return fail(req, -ENOENT, "unknown signer %" PRId64, q->signer_id);
                return fail_sql(db, req, rc, "signer lookup");
        }

        snprintf(buf, sizeof(buf), "{\"signer_id\":%" PRId64 "}", q->signer_id);
        return append_audit(db, req, now, q->actor, "signer.retire", NULL, buf, NULL);
}

/* --- queries -------------------------------------------------------------- */

static int do_query_devices(struct db *db, struct db_req *req, int64_t now) {
        struct db_query_devices *q = &req->devices;
        _cleanup_(cJSON_Deletep) cJSON *array = cJSON_CreateArray();
        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_QUERY_DEVICES);
        unsigned limit = q->limit ? MIN(q->limit, (unsigned)DB_QUERY_LIMIT_MAX) : DB_QUERY_LIMIT_MAX;
        char after[DB_SERIAL_MAX] = "";
        int r, rc;

        if (!array)
                return fail(req, -ENOMEM, "out of memory");
        if (!FIELD_OK(q->after_serial))
                return fail(req, -EINVAL, "after_serial is not NUL-terminated");
        if (q->after_serial[0]) {
                r = CANON_SERIAL(req, q->after_serial, after);
                if (r < 0)
                        return r;
        }
        sqlite3_bind_int64(st, 1, q->since_ms);
        sqlite3_bind_int64(st, 2, limit);
        sqlite3_bind_text(st, 3, after, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                cJSON *o = cJSON_CreateObject();

                if (!o || !cJSON_AddItemToArray(array, o)) {
                        cJSON_Delete(o);
                        return fail(req, -ENOMEM, "out of memory");
                }
                json_add_col_str_or_null(o, "serial", st, 0);
                json_add_col_str_or_null(o, "model", st, 1);
                json_add_col_str_or_null(o, "fw_version", st, 2);
                json_add_col_str_or_null(o, "state", st, 3);
                json_add_col_int_or_null(o, "first_seen", st, 4);
                json_add_col_int_or_null(o, "provisioned_at", st, 5);
                json_add_col_int_or_null(o, "updated_at", st, 6);
                cJSON_AddBoolToObject(o, "reissue_requested", sqlite3_column_int(st, 7) != 0);
                json_add_col_int_or_null(o, "cert_id", st, 8);
                json_add_col_str_or_null(o, "thing_name", st, 9);
                json_add_col_str_or_null(o, "cert_sha256", st, 10);
                json_add_col_str_or_null(o, "cert_serial", st, 11);
                json_add_col_int_or_null(o, "not_after", st, 12);
                json_add_col_str_or_null(o, "cert_status", st, 13);
                if (q->include_pem && sqlite3_column_type(st, 14) == SQLITE_BLOB) {
                        _cleanup_free_ char *pem = db_der_to_pem(sqlite3_column_blob(st, 14),
                                                                 (size_t)sqlite3_column_bytes(st, 14));

                        if (!pem || !cJSON_AddStringToObject(o, "certificate_pem", pem))
                                return fail(req, -ENOMEM, "out of memory");
                }
        }
        if (rc != SQLITE_DONE)
                return fail_sql(db, req, rc, "device query");
        q->more = cJSON_GetArraySize(array) >= (int)limit;
        q->devices = TAKE_PTR(array);
        return 0;
}

static int do_stats(struct db *db, struct db_req *req, int64_t now) {
        struct db_stats *s = &req->stats;
        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_STATS);
        int rc;

        memset(s, 0, sizeof(*s));
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *)sqlite3_column_text(st, 0);
                int64_t n = sqlite3_column_int64(st, 1);
                uint64_t v = n > 0 ? (uint64_t)n : 0;
                const char *dot = name ? strchr(name, '.') : NULL;
                int i;

                if (!dot)
                        continue;
                if (strncmp(name, "devices.", 8) == 0 && (i = FROM_STRING(device_state_names, dot + 1)) >= 0)
                        s->devices[i] = v;
                else if (streq(name, "certificates.total"))
                        s->certificates = v;
                else if (strncmp(name, "certificates.", 13) == 0 &&
                         (i = FROM_STRING(cert_status_names, dot + 1)) >= 0)
                        s->certificates_by_status[i] = v;
                else if (strncmp(name, "attempts.", 9) == 0 && (i = FROM_STRING(outcome_names, dot + 1)) >= 0)
                        s->attempts[i] = v;
                else if (strncmp(name, "aws_outbox.", 11) == 0 &&
                         (i = FROM_STRING(outbox_state_names, dot + 1)) >= 0)
                        s->outbox[i] = v;
        }
        if (rc != SQLITE_DONE)
                return fail_sql(db, req, rc, "stats");
        return 0;
}

/* --- AWS outbox worker side ----------------------------------------------- */

static int add_pem(struct db *db, struct db_req *req, cJSON *o, enum stmt id, int64_t key) {
        _cleanup_reset_ sqlite3_stmt *st = use(db, id);
        _cleanup_free_ char *pem = NULL;
        int rc;

        sqlite3_bind_int64(st, 1, key);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? fail(req, -ENOENT, "outbox row refers to a missing row")
                                         : fail_sql(db, req, rc, "certificate read");
        pem = db_der_to_pem(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
        if (!pem || !cJSON_AddStringToObject(o, "certificate_pem", pem))
                return fail(req, -ENOMEM, "out of memory");
        return 0;
}

static int do_outbox_claim(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_claim *q = &req->claim;
        _cleanup_(cJSON_Deletep) cJSON *array = cJSON_CreateArray();
        cJSON *o;
        int r, rc;

        if (q->limit == 0 || q->limit > DB_OUTBOX_CLAIM_MAX)
                return fail(req, -EINVAL, "claim limit must be 1..%d", DB_OUTBOX_CLAIM_MAX);
        if (!array)
                return fail(req, -ENOMEM, "out of memory");

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_CLAIM);

                sqlite3_bind_int64(st, 1, q->now_ms ? q->now_ms : now);
                sqlite3_bind_int64(st, 2, q->limit);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        const char *payload = (const char *)sqlite3_column_text(st, 4);
                        cJSON *p = payload ? cJSON_Parse(payload) : NULL;

                        o = cJSON_CreateObject();
                        if (!o || !cJSON_AddItemToArray(array, o)) {
                                cJSON_Delete(o);
                                cJSON_Delete(p);
                                return fail(req, -ENOMEM, "out of memory");
                        }
                        json_add_int(o, "id", sqlite3_column_int64(st, 0));
                        json_add_col_str_or_null(o, "kind", st, 1);
                        json_add_int(o, "attempts", sqlite3_column_int64(st, 5));
                        json_add_int(o, "due", sqlite3_column_int64(st, 6));
                        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
                                json_add_int(o, "cert_id", sqlite3_column_int64(st, 2));
                        if (sqlite3_column_type(st, 3) != SQLITE_NULL)
                                json_add_int(o, "signer_id", sqlite3_column_int64(st, 3));
                        cJSON_AddItemToObject(o, "payload", p ? p : cJSON_CreateObject());
                }
                if (rc != SQLITE_DONE)
                        return fail_sql(db, req, rc, "outbox claim");
        }

        /* RETURNING order is unspecified: oldest due first for the worker. */
        cJSON_ArrayForEach(o, array) {
                cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "cert_id");
                cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "signer_id");

                if (c)
                        r = add_pem(db, req, o, STMT_CERT_DER, (int64_t)c->valuedouble);
                else if (s)
                        r = add_pem(db, req, o, STMT_SIGNER_DER, (int64_t)s->valuedouble);
                else
                        r = 0;
                if (r < 0)
                        return r;
        }
        q->items = TAKE_PTR(array);
        return 0;
}

static int do_outbox_complete(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_complete *q = &req->complete;
        int r, rc;

        r = CHECK_STR(req, q->error, true, "error");
        if (r < 0)
                return r;

        {
                _cleanup_reset_ sqlite3_stmt *st = NULL;

                switch (q->result) {
                case DB_OUTBOX_RESULT_DONE:
                        st = use(db, STMT_OUTBOX_DONE);
                        sqlite3_bind_int64(st, 2, now);
                        break;
                case DB_OUTBOX_RESULT_RETRY:
                        st = use(db, STMT_OUTBOX_RETRY);
                        sqlite3_bind_int64(st, 2, q->retry_at_ms ? q->retry_at_ms : now);
                        bind_text_or_null(st, 3, q->error);
                        break;
                case DB_OUTBOX_RESULT_FAILED:
                        st = use(db, STMT_OUTBOX_FAIL);
                        sqlite3_bind_text(st, 2, q->error[0] ? q->error : "failed", -1, SQLITE_STATIC);
                        break;
                default:
                        return fail(req, -EINVAL, "unknown outbox result %d", (int)q->result);
                }
                sqlite3_bind_int64(st, 1, q->id);
                r = step_done(db, req, st, "outbox update");
                if (r < 0)
                        return r;
        }
        if (sqlite3_changes(db->conn) == 1)
                return 0;

        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_STATE);
        sqlite3_bind_int64(st, 1, q->id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return fail(req, -ENOENT, "unknown outbox row %" PRId64, q->id);
        if (rc != SQLITE_ROW)
                return fail_sql(db, req, rc, "outbox lookup");
        return fail(req, -ESTALE, "outbox row %" PRId64 " is %s, not in_flight", q->id, col_text(st, 0));
}

/* --- the writer thread ---------------------------------------------------- */

typedef int (*handler_fn)(struct db *db, struct db_req *req, int64_t now);

static const handler_fn handlers[_DB_REQ_TYPE_MAX] = {
        [DB_LOOKUP_DEVICE] = do_lookup,
        [DB_RECORD_ISSUANCE] = do_issuance,
        [DB_RECORD_OUTCOME] = do_outcome,
        [DB_AUDIT] = do_audit,
        [DB_REISSUE_REQUEST] = do_reissue,
        [DB_SIGNER_ENSURE] = do_signer_ensure,
        [DB_SIGNER_RETIRE] = do_signer_retire,
        [DB_QUERY_DEVICES] = do_query_devices,
        [DB_QUERY_STATS] = do_stats,
        [DB_OUTBOX_CLAIM] = do_outbox_claim,
        [DB_OUTBOX_COMPLETE] = do_outbox_complete,
};

/* Outputs the caller must free exist only on success; never free what the caller left there. */
static void reset_outputs(struct db_req *req) {
        switch (req->type) {
        case DB_LOOKUP_DEVICE:
                req->lookup.found = false;
                req->lookup.cert_id = 0;
                req->lookup.cert_sha256[0] = 0;
                req->lookup.thing_name[0] = 0;
                req->lookup.cert_der = NULL;
                req->lookup.cert_der_len = 0;
                break;
        case DB_QUERY_DEVICES:
                req->devices.devices = NULL;
                break;
        case DB_OUTBOX_CLAIM:
                req->claim.items = NULL;
                break;
        /* Outputs a first pass set before the batch was run again (run_fast()). */
        case DB_RECORD_ISSUANCE:
                req->issuance.cert_id = 0;
                req->issuance.superseded_cert_id = 0;
                break;
        case DB_RECORD_OUTCOME:
                req->outcome.attempt_id = 0;
                req->outcome.outbox_id = 0;
                break;
        case DB_AUDIT:
                req->audit.id = 0;
                break;
        case DB_SIGNER_ENSURE:
                req->signer.signer_id = 0;
                req->signer.created = false;
                req->signer.retired = false;
                req->signer.cert_sha256[0] = 0;
                break;
        default:
                break;
        }
}

static void free_outputs(struct db_req *req) {
        switch (req->type) {
        case DB_LOOKUP_DEVICE:
                free(req->lookup.cert_der);
                req->lookup.cert_der = NULL;
                req->lookup.cert_der_len = 0;
                break;
        case DB_QUERY_DEVICES:
                cJSON_Delete(req->devices.devices);
                req->devices.devices = NULL;
                break;
        case DB_OUTBOX_CLAIM:
                cJSON_Delete(req->claim.items);
                req->claim.items = NULL;
                break;
        default:
                break;
        }
}

static int exec_stmt(struct db *db, enum stmt id) {
        _cleanup_reset_ sqlite3_stmt *st = use(db, id);

        return schema_errno(sqlite3_step(st));
}

/* The whole batch failed (or its transaction is gone): tell every request. */
static void fail_batch(struct db_req *list, int r, const char *why) {
        for (struct db_req *req = list; req; req = req->queue_next) {
                free_outputs(req);
                req->result = r;
                snprintf(req->errmsg, sizeof(req->errmsg), "%s", why);
        }
}

static bool is_read_only(const struct db_req *req) {
        return req->type == DB_LOOKUP_DEVICE || req->type == DB_QUERY_DEVICES || req->type == DB_QUERY_STATS;
}

static int run_handler(struct db *db, struct db_req *req) {
        if ((unsigned)req->type < _DB_REQ_TYPE_MAX && handlers[req->type])
                return handlers[req->type](db, req, now_ms());
        return fail(req, -EINVAL, "unknown request type %d", (int)req->type);
}

static void begin_pass(struct db *db, struct db_req *list) {
        for (struct db_req *req = list; req; req = req->queue_next) {
                req->batch = db->batch_seq;
                req->result = 0;
                req->errmsg[0] = 0;
                reset_outputs(req);
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

static void commit(struct db *db, struct db_req *list, bool *ret_commit_failed) {
        char why[DB_ERRMSG_MAX];
        int r;

        r = exec_stmt(db, STMT_COMMIT);
        if (r < 0) {
                snprintf(why, sizeof(why), "commit: %s", sqlite3_errmsg(db->conn));
                if (!sqlite3_get_autocommit(db->conn))
                        (void)exec_stmt(db, STMT_ROLLBACK);
                fail_batch(list, r, why);
                *ret_commit_failed = true;
        }
}

/*
 * The common case: every request of the batch succeeds. No savepoints: one
 * BEGIN, the handlers, one COMMIT. A request that fails before any of its
 * statements changed a row (a read, a refused field, a clone found by the
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
                        free_outputs(req);
                        continue;
                }
                if (!sqlite3_get_autocommit(db->conn))
                        (void)exec_stmt(db, STMT_ROLLBACK);
                for (struct db_req *q = list; q; q = q->queue_next)
                        free_outputs(q);
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
                bool read_only = is_read_only(req);

                memcpy(saved_hash, db->audit_hash, AUDIT_HASH_LEN);
                r = read_only ? 0 : exec_stmt(db, STMT_SAVEPOINT);
                if (r >= 0)
                        r = run_handler(db, req);
                if (r >= 0 && !read_only) {
                        r = exec_stmt(db, STMT_RELEASE);
                        if (r < 0)
                                (void)fail_sql(db, req, sqlite3_errcode(db->conn), "release");
                }
                if (r >= 0)
                        continue;

                req->result = r;
                if (!req->errmsg[0])
                        snprintf(req->errmsg, sizeof(req->errmsg), "%s", sqlite3_errmsg(db->conn));
                free_outputs(req);
                db->audit_id = saved_id;
                memcpy(db->audit_hash, saved_hash, AUDIT_HASH_LEN);

                if (read_only && !sqlite3_get_autocommit(db->conn))
                        continue;       /* a failed read: only this request fails */
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

_printf_(3, 4)
static int open_error(const struct db_options *opt, int r, const char *fmt, ...) {
        va_list ap;

        if (opt && opt->errbuf && opt->errbuf_size > 0) {
                va_start(ap, fmt);
                vsnprintf(opt->errbuf, opt->errbuf_size, fmt, ap);
                va_end(ap);
        }
        return r;
}

/* --- the checkpointer ------------------------------------------------------ */

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

static void stop_checkpointer(struct db *db) {
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

static int start_checkpointer(struct db *db, const char *path, const struct db_options *opt) {
        int rc, r;

        rc = sqlite3_open_v2(path, &db->ckpt_conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return open_error(opt, schema_errno(rc), "%s: checkpoint connection: %s", path,
                                  db->ckpt_conn ? sqlite3_errmsg(db->ckpt_conn) : sqlite3_errstr(rc));
        /* FULL: the database file is fsync'd before the WAL it came from may be reused. */
        rc = sqlite3_exec(db->ckpt_conn, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return open_error(opt, schema_errno(rc), "%s: checkpoint connection: %s", path,
                                  sqlite3_errmsg(db->ckpt_conn));
        r = uv_thread_create(&db->ckpt_thread, checkpointer_main, db);
        if (r < 0)
                return open_error(opt, r, "cannot start the checkpoint thread: %s", uv_strerror(r));
        db->ckpt_started = true;

        /* From now on the checkpointer, not COMMIT, copies the WAL back. */
        sqlite3_wal_hook(db->conn, on_wal_commit, db);
        return 0;
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
                uv_mutex_unlock(&db->lock);
                uv_async_send(&db->async);
        }

        for (size_t i = 0; i < _STMT_MAX; i++) {
                sqlite3_finalize(db->stmts[i]);
                db->stmts[i] = NULL;
        }
        stop_checkpointer(db);
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
        stop_checkpointer(db);
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(db->stmts[i]);
        sqlite3_close(db->conn);
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
                exited = db->thread_exited;
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
                uv_close((uv_handle_t *)&db->async, on_async_closed);
        }
}

void db_submit(struct db *db, struct db_req *req) {
        assert(db);
        assert(req);
        assert(!db->closing_handle);

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
        if (db->queue_tail)
                db->queue_tail->queue_next = req;
        else
                db->queue_head = req;
        db->queue_tail = req;
        db->n_queued++;
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
        uv_mutex_unlock(&db->lock);
}

void db_get_metrics(struct db *db, struct db_metrics *ret) {
        uv_mutex_lock(&db->lock);
        *ret = db->metrics;
        ret->queued = db->n_queued;
        uv_mutex_unlock(&db->lock);
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

        r = schema_open(&db->conn, path,
                        &(struct schema_open_options){ .busy_timeout_ms = opt ? opt->busy_timeout_ms : 0 },
                        err, sizeof(err));
        if (r < 0) {
                open_error(opt, r, "%s", err);
                goto fail;
        }
        /*
         * temp_store=MEMORY: the per-request SAVEPOINTs keep their undo pages
         * (the statement sub-journal) in memory instead of a temporary file,
         * which otherwise costs a pwrite() per page touched. A larger page
         * cache than the 2 MB default keeps the indexes hot under load.
         */
        (void)sqlite3_exec(db->conn, "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384; "
                                     "PRAGMA journal_size_limit = " STRINGIFY(WAL_SIZE_LIMIT),
                           NULL, NULL, NULL);

        r = start_checkpointer(db, path, opt);
        if (r < 0)
                goto fail;

        for (size_t i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(db->conn, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->stmts[i], NULL);
                if (rc != SQLITE_OK) {
                        r = open_error(opt, schema_errno(rc), "%s: preparing statement %zu: %s", path, i,
                                       sqlite3_errmsg(db->conn));
                        goto fail;
                }
        }

        /* A crash left these claimed; the AWS calls are idempotent, so run them again. */
        rc = sqlite3_exec(db->conn, "UPDATE aws_outbox SET state = 'pending' WHERE state = 'in_flight'",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                r = open_error(opt, schema_errno(rc), "%s: resetting the AWS outbox: %s", path,
                               sqlite3_errmsg(db->conn));
                goto fail;
        }

        r = uv_async_init(loop, &db->async, on_async);
        if (r < 0) {
                open_error(opt, r, "uv_async_init: %s", uv_strerror(r));
                goto fail;
        }
        db->async.data = db;
        db->async_init = true;

        r = uv_thread_create(&db->thread, writer_main, db);
        if (r < 0) {
                open_error(opt, r, "cannot start the database thread: %s", uv_strerror(r));
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
