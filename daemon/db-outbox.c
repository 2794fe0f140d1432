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

static int add_pem(struct db *db, struct db_req *req, cJSON *o, enum stmt id, int64_t key) {
        _cleanup_reset_ sqlite3_stmt *st = use(db, id);
        _cleanup_free_ char *pem = NULL;
        int rc;

        sqlite3_bind_int64(st, 1, key);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? db_fail(req, -ENOENT, "outbox row refers to a missing row")
                                         : db_fail_sql(db->conn, req, rc, "certificate read");
        pem = certs_der_to_pem(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
        if (!pem || !cJSON_AddStringToObject(o, "certificate_pem", pem))
                return db_fail(req, -ENOMEM, "out of memory");
        return 0;
}

int db_do_outbox_claim(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_claim *q = &req->claim;
        _cleanup_(cJSON_Deletep) cJSON *array = cJSON_CreateArray();
        cJSON *o;
        int r, rc;

        if (q->limit == 0 || q->limit > DB_OUTBOX_CLAIM_MAX)
                return db_fail(req, -EINVAL, "claim limit must be 1..%d", DB_OUTBOX_CLAIM_MAX);
        if (!array)
                return db_fail(req, -ENOMEM, "out of memory");

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
                                return db_fail(req, -ENOMEM, "out of memory");
                        }
                        db_json_add_int(o, "id", sqlite3_column_int64(st, 0));
                        db_json_add_col_str_or_null(o, "kind", st, 1);
                        db_json_add_int(o, "attempts", sqlite3_column_int64(st, 5));
                        db_json_add_int(o, "due", sqlite3_column_int64(st, 6));
                        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
                                db_json_add_int(o, "cert_id", sqlite3_column_int64(st, 2));
                        if (sqlite3_column_type(st, 3) != SQLITE_NULL)
                                db_json_add_int(o, "signer_id", sqlite3_column_int64(st, 3));
                        cJSON_AddItemToObject(o, "payload", p ? p : cJSON_CreateObject());
                        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_PENDING, -1);
                        total_add(db, TOTAL_OUTBOX + DB_OUTBOX_IN_FLIGHT, 1);
                }
                if (rc != SQLITE_DONE)
                        return db_fail_sql(db->conn, req, rc, "outbox claim");
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

int db_do_outbox_complete(struct db *db, struct db_req *req, int64_t now) {
        struct db_outbox_complete *q = &req->complete;
        int r, rc;

        r = CHECK_STR(req, q->error, true, "error");
        if (r < 0)
                return r;

        {
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
        if (sqlite3_changes(db->conn) == 1) {
                static const enum db_outbox_state to[] = {
                        [DB_OUTBOX_RESULT_DONE] = DB_OUTBOX_DONE,
                        [DB_OUTBOX_RESULT_RETRY] = DB_OUTBOX_PENDING,
                        [DB_OUTBOX_RESULT_FAILED] = DB_OUTBOX_FAILED,
                };

                total_add(db, TOTAL_OUTBOX + DB_OUTBOX_IN_FLIGHT, -1);
                total_add(db, TOTAL_OUTBOX + to[q->result], 1);
                return 0;
        }

        _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_OUTBOX_STATE);
        sqlite3_bind_int64(st, 1, q->id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return db_fail(req, -ENOENT, "unknown outbox row %" PRId64, q->id);
        if (rc != SQLITE_ROW)
                return db_fail_sql(db->conn, req, rc, "outbox lookup");
        return db_fail(req, -ESTALE, "outbox row %" PRId64 " is %s, not in_flight", q->id, db_col_text(st, 0));
}

