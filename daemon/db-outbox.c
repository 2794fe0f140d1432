/* SPDX-License-Identifier: MIT */
/* The AWS outbox: rows queued with the records they register, claimed and settled by the AWS worker (writer thread). */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "certs-hsm/cert-info.h"
#include "db-internal.h"

int db_outbox_enqueue(struct db *db, struct db_req *req, int64_t now, enum db_outbox_kind kind,
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
                r = db_step_done(db->conn, req, st, "aws_outbox insert");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 1) {
                        *ret_id = sqlite3_last_insert_rowid(db->conn);
                        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_PENDING, 1);
                        return 0;
                }
        }

        /* Already queued (possibly done long ago): enqueue is idempotent. */
        _cleanup_reset_ sqlite3_stmt *st = use(db, cert_id ? STMT_OUTBOX_FIND_CERT : STMT_OUTBOX_FIND_SIGNER);
        sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, cert_id ? cert_id : signer_id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? db_fail(req, -EIO, "aws_outbox: queued row vanished")
                                         : db_fail_sql(db->conn, req, rc, "aws_outbox lookup");
        *ret_id = sqlite3_column_int64(st, 0);
        return 0;
}

/* --- AWS outbox worker side ----------------------------------------------- */

/*
 * The operator's rare requests (requeue) prepare their statement per request;
 * the worker's, a few per registration, are in the engine's statement table.
 */
static int prep(struct db *db, struct db_req *req, sqlite3 *conn, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(conn, sql, -1, ret, NULL);

        if (rc != SQLITE_OK) {
                sqlite3_finalize(*ret);
                *ret = NULL;
                return db_fail_sql(conn, req, rc, "outbox statement");
        }
        return 0;
}

static void finalizep(sqlite3_stmt **st) {
        sqlite3_finalize(*st);
}
#define _cleanup_finalize_ _cleanup_(finalizep)

struct claimed {
        int64_t id, cert_id, signer_id, attempts, due;
        char kind[24];
        char *payload;
};

static int cmp_claimed(const void *a, const void *b) {
        const struct claimed *x = a, *y = b;

        if (x->due != y->due)
                return x->due < y->due ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

static void add_hex(cJSON *o, const char *name, const void *p, size_t n) {
        _cleanup_free_ char *hex = malloc(2 * n + 1);

        if (hex)
                cJSON_AddStringToObject(o, name, hex_encode(p, n, hex, false));
}

/* What one claimed row needs beyond its own columns; -ENOENT when that is gone. */
static int add_records(struct db *db, struct db_req *req, cJSON *o, const struct claimed *c) {
        _cleanup_free_ char *pem = NULL;
        const void *der;
        size_t len;
        int rc;

        if (c->cert_id) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_CLAIM_CERT);

                sqlite3_bind_int64(st, 1, c->cert_id);
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return -ENOENT;
                if (rc != SQLITE_ROW)
                        return db_fail_sql(db->conn, req, rc, "certificate read");
                der = sqlite3_column_blob(st, 0);
                len = (size_t)sqlite3_column_bytes(st, 0);
                cJSON_AddStringToObject(o, "model", db_col_text(st, 1));
                cJSON_AddStringToObject(o, "fw_version", db_col_text(st, 2));
                cJSON_AddStringToObject(o, "signer_sha256", db_col_text(st, 3));
                pem = certs_der_to_pem(der, len);
                if (!pem || !cJSON_AddStringToObject(o, "certificate_pem", pem))
                        return db_fail(req, -ENOMEM, "out of memory");
                add_hex(o, "certificate_der", der, len);
                return 0;
        }

        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_SIGNER_DER);
        sqlite3_bind_int64(st, 1, c->signer_id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        if (rc != SQLITE_ROW)
                return db_fail_sql(db->conn, req, rc, "signer read");
        der = sqlite3_column_blob(st, 0);
        len = (size_t)sqlite3_column_bytes(st, 0);
        pem = certs_der_to_pem(der, len);
        if (!pem || !cJSON_AddStringToObject(o, "certificate_pem", pem))
                return db_fail(req, -ENOMEM, "out of memory");
        add_hex(o, "certificate_der", der, len);
        return 0;
}

/* A row that cannot be worked on is failed with the reason, so it does not stop every later claim. */
static int fail_claimed(struct db *db, struct db_req *req, int64_t id, const char *why) {
        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_FAIL);
        int r;

        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, why, -1, SQLITE_STATIC);
        r = db_step_done(db->conn, req, st, "outbox fail");
        if (r < 0)
                return r;
        if (sqlite3_changes(db->conn) == 1) {
                total_add(db, TOTAL_OUTBOX + DB_OUTBOX_IN_FLIGHT, -1);
                total_add(db, TOTAL_OUTBOX + DB_OUTBOX_FAILED, 1);
        }
        return 0;
}

int db_do_outbox_claim(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_claim *q = &req->claim;
        _cleanup_(cJSON_Deletep) cJSON *array = cJSON_CreateArray();
        struct claimed *rows = NULL;
        size_t n = 0;
        int r = 0, rc;

        if (q->limit == 0 || q->limit > DB_OUTBOX_CLAIM_MAX)
                return db_fail(req, -EINVAL, "claim limit must be 1..%d", DB_OUTBOX_CLAIM_MAX);
        if (!array)
                return db_fail(req, -ENOMEM, "out of memory");
        rows = calloc(q->limit, sizeof(*rows));
        if (!rows)
                return db_fail(req, -ENOMEM, "out of memory");

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_CLAIM);

                sqlite3_bind_int64(st, 1, q->now_ms ? q->now_ms : now);
                sqlite3_bind_int64(st, 2, q->limit);
                while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < q->limit) {
                        struct claimed *c = &rows[n++];

                        c->id = sqlite3_column_int64(st, 0);
                        snprintf(c->kind, sizeof(c->kind), "%s", db_col_text(st, 1));
                        c->cert_id = sqlite3_column_int64(st, 2);
                        c->signer_id = sqlite3_column_int64(st, 3);
                        c->payload = strdup(db_col_text(st, 4));
                        c->attempts = sqlite3_column_int64(st, 5);
                        c->due = sqlite3_column_int64(st, 6);
                        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_PENDING, -1);
                        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_IN_FLIGHT, 1);
                        if (!c->payload) {
                                r = db_fail(req, -ENOMEM, "out of memory");
                                break;
                        }
                }
                if (r >= 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
                        r = db_fail_sql(db->conn, req, rc, "outbox claim");
        }

        /* RETURNING order is unspecified: oldest due first for the worker, sorted here. */
        if (r >= 0)
                qsort(rows, n, sizeof(*rows), cmp_claimed);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                struct claimed *c = &rows[i];
                cJSON *o = cJSON_CreateObject(), *p = cJSON_Parse(c->payload);

                if (!o || !cJSON_AddItemToArray(array, o)) {
                        cJSON_Delete(o);
                        cJSON_Delete(p);
                        r = db_fail(req, -ENOMEM, "out of memory");
                        break;
                }
                db_json_add_int(o, "id", c->id);
                cJSON_AddStringToObject(o, "kind", c->kind);
                db_json_add_int(o, "attempts", c->attempts);
                db_json_add_int(o, "due", c->due);
                if (c->cert_id)
                        db_json_add_int(o, "cert_id", c->cert_id);
                if (c->signer_id)
                        db_json_add_int(o, "signer_id", c->signer_id);
                cJSON_AddItemToObject(o, "payload", cJSON_IsObject(p) ? p : (cJSON_Delete(p), cJSON_CreateObject()));
                r = (c->cert_id || c->signer_id) ? add_records(db, req, o, c) : -ENOENT;
                if (r == -ENOENT) {
                        /* The records it names are gone: failed with the reason, the others go on. */
                        cJSON_DeleteItemFromArray(array, cJSON_GetArraySize(array) - 1);
                        r = fail_claimed(db, req, c->id, "the certificate or signer this row registers is missing");
                }
        }
        for (size_t i = 0; i < n; i++)
                free(rows[i].payload);
        free(rows);
        if (r < 0)
                return r;
        q->items = TAKE_PTR(array);
        return 0;
}

/* The payload fields a complete request sets (db.h), as a JSON merge patch; NULL when none. */
static char *progress_patch(const struct db_outbox_complete *q, bool *ret_any) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

        *ret_any = false;
        if (!o)
                return NULL;
        if (q->step)
                cJSON_AddStringToObject(o, "step", q->step);
        if (q->cert_arn)
                cJSON_AddStringToObject(o, "cert_arn", q->cert_arn);
        if (q->code)
                cJSON_AddStringToObject(o, "code", q->code);
        if (q->ca_cert_id)
                cJSON_AddStringToObject(o, "ca_certificate_id", q->ca_cert_id);
        if (q->ca_cert_arn)
                cJSON_AddStringToObject(o, "ca_certificate_arn", q->ca_cert_arn);
        if (q->set_step_attempts)
                db_json_add_int(o, "step_attempts", q->step_attempts);
        *ret_any = cJSON_GetArraySize(o) > 0;
        return db_json_print(o);
}

static bool bounded(const char *s, size_t max) {
        return !s || strnlen(s, max + 1) <= max;
}

/* 'aws.registered', 'aws.ca_registered' or 'aws.failed' for a row just settled. */
static int audit_settled(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_complete *q = &req->complete;
        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_GET);
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject(), *p = NULL;
        _cleanup_free_ char *details = NULL;
        const char *kind, *action, *serial = NULL;
        cJSON *v;
        int rc;

        if (!o)
                return db_fail(req, -ENOMEM, "out of memory");
        sqlite3_bind_int64(st, 1, q->id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return db_fail_sql(db->conn, req, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, "outbox read");
        kind = db_col_text(st, 0);
        p = cJSON_Parse(db_col_text(st, 1));
        db_json_add_int(o, "outbox_id", q->id);
        cJSON_AddStringToObject(o, "kind", kind);
        db_json_add_int(o, "attempts", sqlite3_column_int64(st, 2));
        static const char *const keep[] = { "thing_name", "certificate_id", "cert_arn", "signer_id",
                                             "ca_certificate_id", "ca_certificate_arn", "step", "code" };
        for (size_t i = 0; i < ELEMENTSOF(keep); i++)
                if ((v = cJSON_GetObjectItemCaseSensitive(p, keep[i])))
                        cJSON_AddItemToObject(o, keep[i], cJSON_Duplicate(v, false));
        v = cJSON_GetObjectItemCaseSensitive(p, "serial");
        if (cJSON_IsString(v) && strlen(v->valuestring) <= 64 && strlen(v->valuestring) >= 2)
                serial = v->valuestring;
        if (q->result == DB_OUTBOX_RESULT_FAILED) {
                action = "aws.failed";
                cJSON_AddStringToObject(o, "error", q->error[0] ? q->error : "failed");
        } else
                action = streq(kind, "register_ca") ? "aws.ca_registered" : "aws.registered";
        details = db_json_print(o);
        if (!details)
                return db_fail(req, -ENOMEM, "out of memory");
        return db_append_audit(db, req, now, "provd", action, serial, details, NULL);
}

int db_do_outbox_complete(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_complete *q = &req->complete;
        _cleanup_free_ char *patch = NULL;
        bool any;
        int r, rc;

        r = CHECK_STR(req, q->error, true, "error");
        if (r < 0)
                return r;
        if (!bounded(q->step, 64) || !bounded(q->cert_arn, 1011) || !bounded(q->code, 64) ||
            !bounded(q->ca_cert_id, 64) || !bounded(q->ca_cert_arn, 1011))
                return db_fail(req, -EINVAL, "outbox progress field too long");
        patch = progress_patch(q, &any);
        if (!patch)
                return db_fail(req, -ENOMEM, "out of memory");

        if (any) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_PATCH);

                sqlite3_bind_int64(st, 1, q->id);
                sqlite3_bind_text(st, 2, patch, -1, SQLITE_STATIC);
                r = db_step_done(db->conn, req, st, "outbox progress");
                if (r < 0)
                        return r;
                if (q->result == DB_OUTBOX_RESULT_PROGRESS && sqlite3_changes(db->conn) == 1)
                        return 0;
        }

        if (q->result != DB_OUTBOX_RESULT_PROGRESS) {
                _cleanup_reset_ sqlite3_stmt *st = NULL;

                switch (q->result) {
                /* Each statement moves one in_flight row to the state it names. */
                case DB_OUTBOX_RESULT_DONE:
                        st = use(db, STMT_OUTBOX_DONE);
                        sqlite3_bind_int64(st, 2, now);
                        break;
                case DB_OUTBOX_RESULT_RETRY:
                        st = use(db, STMT_OUTBOX_RETRY);
                        sqlite3_bind_int64(st, 2, q->retry_at_ms ? q->retry_at_ms : now);
                        db_bind_text_or_null(st, 3, q->error);
                        break;
                case DB_OUTBOX_RESULT_FAILED:
                        st = use(db, STMT_OUTBOX_FAIL);
                        sqlite3_bind_text(st, 2, q->error[0] ? q->error : "failed", -1, SQLITE_STATIC);
                        break;
                default:
                        return db_fail(req, -EINVAL, "unknown outbox result %d", (int)q->result);
                }
                sqlite3_bind_int64(st, 1, q->id);
                r = db_step_done(db->conn, req, st, "outbox update");
                if (r < 0)
                        return r;
        }
        if (q->result != DB_OUTBOX_RESULT_PROGRESS && sqlite3_changes(db->conn) == 1) {
                static const enum db_outbox_state to[] = {
                        [DB_OUTBOX_RESULT_DONE] = DB_OUTBOX_DONE,
                        [DB_OUTBOX_RESULT_RETRY] = DB_OUTBOX_PENDING,
                        [DB_OUTBOX_RESULT_FAILED] = DB_OUTBOX_FAILED,
                };

                total_add(db, TOTAL_OUTBOX + DB_OUTBOX_IN_FLIGHT, -1);
                total_add(db, TOTAL_OUTBOX + to[q->result], 1);
                if (q->result == DB_OUTBOX_RESULT_FAILED || (q->result == DB_OUTBOX_RESULT_DONE && !q->quiet))
                        return audit_settled(db, req, now);
                return 0;
        }

        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_STATE);
        sqlite3_bind_int64(st, 1, q->id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return db_fail(req, -ENOENT, "unknown outbox row %" PRId64, q->id);
        if (rc != SQLITE_ROW)
                return db_fail_sql(db->conn, req, rc, "outbox lookup");
        if (q->result == DB_OUTBOX_RESULT_PROGRESS && !any && streq(db_col_text(st, 0), "in_flight"))
                return 0;       /* nothing to record */
        return db_fail(req, -ESTALE, "outbox row %" PRId64 " is %s, not in_flight", q->id, db_col_text(st, 0));
}

int db_do_outbox_enqueue_req(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_enqueue *q = &req->enqueue;
        int64_t before = db->req_delta[TOTAL_OUTBOX + DB_OUTBOX_PENDING];
        int r;

        if ((unsigned)q->kind >= _DB_OUTBOX_KIND_MAX)
                return db_fail(req, -EINVAL, "unknown outbox kind %d", (int)q->kind);
        if ((q->kind == DB_OUTBOX_REGISTER_CA) != (q->signer_id > 0) ||
            (q->kind != DB_OUTBOX_REGISTER_CA) != (q->cert_id > 0))
                return db_fail(req, -EINVAL, "register_ca names a signer, the others a certificate");
        if (q->payload_json) {
                _cleanup_(cJSON_Deletep) cJSON *p = cJSON_Parse(q->payload_json);

                if (!cJSON_IsObject(p) || strlen(q->payload_json) > JSON_RECORD_MAX)
                        return db_fail(req, -EINVAL, "outbox payload must be a JSON object of at most %d bytes",
                                       JSON_RECORD_MAX);
        }
        r = db_outbox_enqueue(db, req, now, q->kind, q->cert_id, q->signer_id, q->payload_json, &q->id);
        if (r < 0)
                return r;
        q->created = db->req_delta[TOTAL_OUTBOX + DB_OUTBOX_PENDING] != before;
        return 0;
}

int db_do_outbox_requeue(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_requeue *q = &req->requeue;
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        char details[96];
        int64_t n;
        int r, rc;

        r = CHECK_STR(req, q->actor, true, "actor");
        if (r < 0)
                return r;
        if (q->id < 0)
                return db_fail(req, -EINVAL, "bad outbox id");
        r = prep(db, req, db->conn,
                 "UPDATE aws_outbox SET state = 'pending', next_attempt_at = ?2, "
                 "payload = json_set(payload, '$.step_attempts', 0) "
                 "WHERE state = 'failed' AND (?1 = 0 OR id = ?1)", &st);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, q->id);
        sqlite3_bind_int64(st, 2, now);
        r = db_step_done(db->conn, req, st, "outbox requeue");
        if (r < 0)
                return r;
        n = sqlite3_changes64(db->conn);
        if (n == 0 && q->id) {
                _cleanup_reset_ sqlite3_stmt *s2 = use(db, STMT_OUTBOX_STATE);

                sqlite3_bind_int64(s2, 1, q->id);
                rc = sqlite3_step(s2);
                if (rc == SQLITE_DONE)
                        return db_fail(req, -ENOENT, "unknown outbox row %" PRId64, q->id);
                if (rc != SQLITE_ROW)
                        return db_fail_sql(db->conn, req, rc, "outbox lookup");
                return db_fail(req, -ESTALE, "outbox row %" PRId64 " is %s, not failed", q->id, db_col_text(s2, 0));
        }
        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_FAILED, -n);
        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_PENDING, n);
        q->count = (uint64_t)n;
        if (q->id)
                snprintf(details, sizeof(details), "{\"outbox_id\":%" PRId64 ",\"count\":%" PRId64 "}", q->id, n);
        else
                snprintf(details, sizeof(details), "{\"all_failed\":true,\"count\":%" PRId64 "}", n);
        return db_append_audit(db, req, now, q->actor[0] ? q->actor : "provd", "aws.retry", NULL, details, NULL);
}

/* --- reads (reader thread) -------------------------------------------------- */

#define DUE_MAX_STR "1024"

static int rprep(struct db_reader *rd, struct db_req *req, const char *sql, sqlite3_stmt **ret) {
        int rc = sqlite3_prepare_v2(rd->conn, sql, -1, ret, NULL);

        if (rc != SQLITE_OK) {
                sqlite3_finalize(*ret);
                *ret = NULL;
                return db_fail_sql(rd->conn, req, rc, "outbox query");
        }
        return 0;
}

static int by_step(struct db_reader *rd, struct db_req *req, cJSON *report, const char *state) {
        _cleanup_finalize_ sqlite3_stmt *st = NULL;
        cJSON *o = cJSON_AddObjectToObject(report, state);
        char key[96];
        int r, rc;

        r = rprep(rd, req,
                  "SELECT kind, coalesce(json_extract(payload, '$.step'), 'start'), count(*) FROM aws_outbox "
                  "WHERE state = ?1 GROUP BY 1, 2 ORDER BY 1, 2", &st);
        if (r < 0)
                return r;
        sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                snprintf(key, sizeof(key), "%s/%.64s", db_col_text(st, 0), db_col_text(st, 1));
                db_json_add_int(o, key, sqlite3_column_int64(st, 2));
        }
        return rc == SQLITE_DONE ? 0 : db_fail_sql(rd->conn, req, rc, "outbox by step");
}

int db_do_query_outbox(struct db_reader *rd, struct db_req *req) {
        struct db_query_outbox *q = &req->outbox;
        _cleanup_(cJSON_Deletep) cJSON *report = NULL;
        int64_t now = q->now_ms ? q->now_ms : now_ms();
        int r, rc;

        {
                _cleanup_finalize_ sqlite3_stmt *st = NULL;

                /*
                 * Asked by the worker several times a second: every part is an index
                 * lookup (the partial index aws_outbox_due, the totals), never a count
                 * of a long queue.
                 */
                r = rprep(rd, req,
                          "SELECT coalesce((SELECT n FROM totals WHERE name = 'aws_outbox.pending'), 0), "
                          "(SELECT count(*) FROM (SELECT 1 FROM aws_outbox WHERE state = 'pending' AND "
                          "next_attempt_at <= ?1 LIMIT " DUE_MAX_STR ")), "
                          "(SELECT min(next_attempt_at) FROM aws_outbox WHERE state = 'pending')", &st);
                if (r < 0)
                        return r;
                sqlite3_bind_int64(st, 1, now);
                rc = sqlite3_step(st);
                if (rc != SQLITE_ROW)
                        return db_fail_sql(rd->conn, req, rc, "outbox due");
                q->pending = (uint64_t)sqlite3_column_int64(st, 0);
                q->pending_due = (uint64_t)sqlite3_column_int64(st, 1);
                q->next_due_ms = sqlite3_column_type(st, 2) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 2);
        }
        if (q->summary_only)
                return 0;

        report = cJSON_CreateObject();
        if (!report)
                return db_fail(req, -ENOMEM, "out of memory");
        {
                /* Counts by state from the totals (constant time; `done` is most of the table). */
                _cleanup_finalize_ sqlite3_stmt *st = NULL;
                cJSON *o = cJSON_AddObjectToObject(report, "states");

                r = rprep(rd, req, "SELECT substr(name, 12), n FROM totals WHERE name LIKE 'aws\\_outbox.%' ESCAPE '\\'",
                          &st);
                if (r < 0)
                        return r;
                while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                        db_json_add_int(o, db_col_text(st, 0), sqlite3_column_int64(st, 1));
                if (rc != SQLITE_DONE)
                        return db_fail_sql(rd->conn, req, rc, "outbox totals");
        }
        for (unsigned i = 0; i < _DB_OUTBOX_STATE_MAX; i++)
                if (i != DB_OUTBOX_DONE) {
                        r = by_step(rd, req, report, db_outbox_state_to_string(i));
                        if (r < 0)
                                return r;
                }
        {
                _cleanup_finalize_ sqlite3_stmt *st = NULL;

                r = rprep(rd, req,
                          "SELECT id, created_at, next_attempt_at, kind FROM aws_outbox WHERE state = 'pending' "
                          "ORDER BY created_at, id LIMIT 1", &st);
                if (r < 0)
                        return r;
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        cJSON *o = cJSON_AddObjectToObject(report, "oldest_pending");
                        db_json_add_int(o, "id", sqlite3_column_int64(st, 0));
                        db_json_add_int(o, "created_at", sqlite3_column_int64(st, 1));
                        db_json_add_int(o, "next_attempt_at", sqlite3_column_int64(st, 2));
                        cJSON_AddStringToObject(o, "kind", db_col_text(st, 3));
                } else if (rc == SQLITE_DONE)
                        cJSON_AddNullToObject(report, "oldest_pending");
                else
                        return db_fail_sql(rd->conn, req, rc, "outbox oldest");
        }
        {
                _cleanup_finalize_ sqlite3_stmt *st = NULL;
                cJSON *a = cJSON_AddArrayToObject(report, "errors");

                r = rprep(rd, req,
                          "SELECT id, kind, state, json_extract(payload, '$.step'), json_extract(payload, '$.code'), "
                          "last_error, attempts, json_extract(payload, '$.thing_name') FROM aws_outbox "
                          "WHERE last_error IS NOT NULL AND state <> 'done' ORDER BY id DESC LIMIT 10", &st);
                if (r < 0)
                        return r;
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                        cJSON *o = cJSON_CreateObject();
                        if (!o || !cJSON_AddItemToArray(a, o)) {
                                cJSON_Delete(o);
                                return db_fail(req, -ENOMEM, "out of memory");
                        }
                        db_json_add_int(o, "id", sqlite3_column_int64(st, 0));
                        cJSON_AddStringToObject(o, "kind", db_col_text(st, 1));
                        cJSON_AddStringToObject(o, "state", db_col_text(st, 2));
                        db_json_add_col_str_or_null(o, "step", st, 3);
                        db_json_add_col_str_or_null(o, "code", st, 4);
                        cJSON_AddStringToObject(o, "error", db_col_text(st, 5));
                        db_json_add_int(o, "attempts", sqlite3_column_int64(st, 6));
                        db_json_add_col_str_or_null(o, "thing_name", st, 7);
                }
                if (rc != SQLITE_DONE)
                        return db_fail_sql(rd->conn, req, rc, "outbox errors");
        }
        q->report = TAKE_PTR(report);
        return 0;
}
