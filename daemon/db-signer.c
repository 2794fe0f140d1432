/* SPDX-License-Identifier: MIT */
/* The signer records: DB_SIGNER_ENSURE, DB_SIGNER_RETIRE (writer thread). */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "certs-hsm/cert-info.h"
#include "db-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct certs_cert_info *, certs_cert_info_free);

int db_do_signer_ensure(struct db *db, struct db_req *req, int64_t now) {
        struct db_signer_ensure *q = &req->signer;
        _cleanup_(certs_cert_info_freep) struct certs_cert_info *info = NULL;
        _cleanup_free_ char *details = NULL, *payload = NULL;
        char sha[DB_SHA256_HEX_MAX];
        const char *subject;
        int64_t not_before, not_after, signer_id = 0, outbox_id;
        bool created = false, retired = false;
        int r, rc;

        r = CHECK_STR(req, q->name, false, "name");
        if (r >= 0)
                r = CHECK_STR(req, q->actor, true, "actor");
        if (r < 0)
                return r;
        if (isempty(q->key_uri) || strlen(q->key_uri) > 1024)
                return db_fail(req, -EINVAL, "key URI missing or too long");
        if (strcasestr(q->key_uri, "pin-value="))
                return db_fail(req, -EINVAL, "key URI carries a PIN (pin-value=); give the PIN another way");
        if (!q->cert_der || q->cert_der_len == 0 || q->cert_der_len > MAX_DER_LEN)
                return db_fail(req, -EINVAL, "signer certificate missing or over %d bytes", MAX_DER_LEN);

        r = certs_cert_info_new(&info, q->cert_der, q->cert_der_len);
        if (r == -ENOMEM)
                return db_fail(req, r, "out of memory");
        if (r < 0)
                return db_fail(req, -EBADMSG, "signer certificate is not one DER certificate with a readable "
                               "validity");
        subject = info->subject;
        not_before = info->not_before_ms;
        not_after = info->not_after_ms;
        db_sha256_hex(q->cert_der, q->cert_der_len, sha);

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_SIGNER_FIND);

                sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        signer_id = sqlite3_column_int64(st, 0);
                        retired = streq(db_col_text(st, 1), "retired");
                } else if (rc != SQLITE_DONE)
                        return db_fail_sql(db->conn, req, rc, "signer lookup");
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
                        r = db_step_done(db->conn, req, st, "signer insert");
                        if (r < 0)
                                return r;
                        signer_id = sqlite3_last_insert_rowid(db->conn);
                        created = true;
                }

                if (!o)
                        return db_fail(req, -ENOMEM, "out of memory");
                db_json_add_int(o, "signer_id", signer_id);
                cJSON_AddStringToObject(o, "name", q->name);
                cJSON_AddStringToObject(o, "subject", subject);
                cJSON_AddStringToObject(o, "cert_sha256", sha);
                cJSON_AddStringToObject(o, "key_uri", q->key_uri);
                db_json_add_int(o, "not_before", not_before);
                db_json_add_int(o, "not_after", not_after);
                details = db_json_print(o);
                if (!details)
                        return db_fail(req, -ENOMEM, "out of memory");
                r = db_append_audit(db, req, now, q->actor, "signer.add", NULL, details, NULL);
                if (r < 0)
                        return r;
        }

        if (q->enqueue_register_ca) {
                _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

                if (!o)
                        return db_fail(req, -ENOMEM, "out of memory");
                db_json_add_int(o, "signer_id", signer_id);
                cJSON_AddStringToObject(o, "name", q->name);
                cJSON_AddStringToObject(o, "cert_sha256", sha);
                payload = db_json_print(o);
                if (!payload)
                        return db_fail(req, -ENOMEM, "out of memory");
                r = db_outbox_enqueue(db, req, now, DB_OUTBOX_REGISTER_CA, 0, signer_id, payload, &outbox_id);
                if (r < 0)
                        return r;
        }

        q->signer_id = signer_id;
        q->created = created;
        q->retired = retired;
        memcpy(q->cert_sha256, sha, sizeof(sha));
        return 0;
}

int db_do_signer_retire(struct db *db, struct db_req *req, int64_t now) {
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
                r = db_step_done(db->conn, req, st, "signer retire");
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
                        return db_fail(req, -ENOENT, "unknown signer %" PRId64, q->signer_id);
                return db_fail_sql(db->conn, req, rc, "signer lookup");
        }

        snprintf(buf, sizeof(buf), "{\"signer_id\":%" PRId64 "}", q->signer_id);
        return db_append_audit(db, req, now, q->actor, "signer.retire", NULL, buf, NULL);
}

