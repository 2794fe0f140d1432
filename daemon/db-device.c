/* SPDX-License-Identifier: MIT */
/* The device records: DB_RECORD_ISSUANCE, DB_RECORD_OUTCOME, DB_REISSUE_REQUEST (writer thread). */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "db-internal.h"
#include "json-writer.h"

/* --- DB_RECORD_ISSUANCE --------------------------------------------------- */

int db_do_issuance(struct db *db, struct db_req *req, int64_t now) {
        struct db_record_issuance *q = &req->issuance;
        char serial[DB_SERIAL_MAX], cert_serial[DB_CERT_SERIAL_MAX], sha[DB_SHA256_HEX_MAX];
        char details_buf[JSON_RECORD_MAX];
        const char *details;
        int64_t old_cert = 0, superseded = 0, cert_id;
        int old_state = -1, old_status = -1;
        bool exists = false;
        int r, rc;

        r = CANON_SERIAL(req, q->serial, serial);
        if (r >= 0)
                r = db_canon_hex(req, q->cert_serial, sizeof(q->cert_serial), cert_serial, 2, 42, "cert_serial");
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
                return db_fail(req, -EINVAL, "certificate DER missing or over %d bytes", MAX_DER_LEN);
        if (q->pubkey[0] != 0x04)
                return db_fail(req, -EINVAL, "public key is not an uncompressed point");
        if (q->signer_id <= 0)
                return db_fail(req, -EINVAL, "signer_id missing");
        /*
         * What the schema's CHECKs would refuse, refused before the first write:
         * a request that fails after writing makes its whole batch run again.
         */
        if (strspn(q->thing_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-") !=
            strlen(q->thing_name) || strlen(q->thing_name) > 128)
                return db_fail(req, -EINVAL, "thing_name '%s' is not [a-zA-Z0-9:_-]{1,128}", q->thing_name);
        if (q->not_after_ms < q->not_before_ms)
                return db_fail(req, -EINVAL, "certificate validity ends before it begins");

        db_sha256_hex(q->cert_der, q->cert_der_len, sha);
        if (q->cert_sha256[0]) {
                char given[DB_SHA256_HEX_MAX];

                r = db_canon_hex(req, q->cert_sha256, sizeof(q->cert_sha256), given, 64, 64, "cert_sha256");
                if (r < 0)
                        return r;
                if (!streq(given, sha))
                        return db_fail(req, -EINVAL, "cert_sha256 %s is not the SHA-256 of the DER (%s)", given, sha);
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_GET);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        exists = true;
                        if (sqlite3_column_bytes(st, 1) != DB_PUBKEY_LEN ||
                            memcmp(sqlite3_column_blob(st, 1), q->pubkey, DB_PUBKEY_LEN) != 0)
                                return db_fail(req, -EKEYREJECTED,
                                            "serial %s is recorded with another public key: clone suspected",
                                            serial);
                        if (FROM_STRING(db_device_state_names, sqlite3_column_text(st, 0)) ==
                                    DB_DEVICE_CLONE_SUSPECTED &&
                            sqlite3_column_int(st, 2) == 0)
                                return db_fail(req, -EPERM,
                                            "serial %s is marked clone_suspected; an operator must request "
                                            "a reissue first", serial);
                        old_cert = sqlite3_column_int64(st, 3);
                        old_state = FROM_STRING(db_device_state_names, sqlite3_column_text(st, 0));
                        old_status = FROM_STRING(db_cert_status_names, sqlite3_column_text(st, 4));
                } else if (rc != SQLITE_DONE)
                        return db_fail_sql(db->conn, req, rc, "device lookup");
        }

        if (!exists) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_INSERT);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, q->model, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, q->fw_version, -1, SQLITE_STATIC);
                sqlite3_bind_blob(st, 4, q->pubkey, DB_PUBKEY_LEN, SQLITE_STATIC);
                sqlite3_bind_int64(st, 5, now);
                r = db_step_done(db->conn, req, st, "device insert");
                if (r < 0)
                        return r;
                total_add(db, TOTAL_DEVICES + DB_DEVICE_ISSUED, 1);
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
                        return db_fail(req, -ENOENT, "unknown signer_id %" PRId64, q->signer_id);
                if (rc == SQLITE_CONSTRAINT_UNIQUE)
                        return db_fail(req, -EEXIST, "certificate serial %s already recorded (certificate %s)",
                                    cert_serial, sha);
                if (rc != SQLITE_DONE)
                        return db_fail_sql(db->conn, req, rc, "certificate insert");
                cert_id = sqlite3_last_insert_rowid(db->conn);
                total_add(db, TOTAL_CERTIFICATES, 1);
                total_add(db, TOTAL_CERT_STATUS + DB_CERT_ISSUED, 1);
        }

        if (old_cert) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_SUPERSEDE);

                sqlite3_bind_int64(st, 1, old_cert);
                sqlite3_bind_int64(st, 2, now);
                r = db_step_done(db->conn, req, st, "supersede certificate");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 1) {
                        superseded = old_cert;
                        /* The statement only supersedes an issued or active certificate. */
                        if (old_status >= 0)
                                total_add(db, TOTAL_CERT_STATUS + (unsigned)old_status, -1);
                        total_add(db, TOTAL_CERT_STATUS + DB_CERT_SUPERSEDED, 1);
                }
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_SET_CERT);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, q->model, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, q->fw_version, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, cert_id);
                sqlite3_bind_int64(st, 5, now);
                r = db_step_done(db->conn, req, st, "device update");
                if (r < 0)
                        return r;
                if (exists && old_state >= 0 && sqlite3_changes(db->conn) == 1) {
                        total_add(db, TOTAL_DEVICES + (unsigned)old_state, -1);
                        total_add(db, TOTAL_DEVICES + DB_DEVICE_ISSUED, 1);
                }
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
                        return db_fail(req, -E2BIG, "audit details do not fit in %zu bytes", sizeof(details_buf));
        }
        r = db_append_audit(db, req, now, "provd", "cert.issue", serial, details, NULL);
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
        int r, rc, device_state;

        if (!serial[0] || q->cert_id <= 0)
                return db_fail(req, -EINVAL, "a provisioned outcome needs the serial and the cert_id");

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_GET);
                struct json_writer w;

                sqlite3_bind_int64(st, 1, q->cert_id);
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return db_fail(req, -ENOENT, "unknown certificate %" PRId64, q->cert_id);
                if (rc != SQLITE_ROW)
                        return db_fail_sql(db->conn, req, rc, "certificate lookup");
                if (!streq(db_col_text(st, 0), serial))
                        return db_fail(req, -EINVAL, "certificate %" PRId64 " belongs to device %s, not %s",
                                    q->cert_id, db_col_text(st, 0), serial);
                r = FROM_STRING(db_cert_status_names, sqlite3_column_text(st, 1));
                if (r < 0)
                        return db_fail(req, -EBADMSG, "certificate %" PRId64 ": unreadable status", q->cert_id);
                status = (enum db_cert_status)r;
                if (status == DB_CERT_SUPERSEDED || status == DB_CERT_REVOKED)
                        return db_fail(req, -ESTALE, "certificate %" PRId64 " is %s", q->cert_id,
                                    db_cert_status_names[status]);
                signer_id = sqlite3_column_int64(st, 4);
                device_state = FROM_STRING(db_device_state_names, sqlite3_column_text(st, 5));

                json_writer_init(&w, payload_buf, sizeof(payload_buf));
                json_writer_str(&w, "serial", serial);
                json_writer_str(&w, "thing_name", db_col_text(st, 2));
                json_writer_str(&w, "certificate_id", db_col_text(st, 3));
                json_writer_int(&w, "signer_id", signer_id);
                payload = json_writer_finish(&w);
                if (!payload)
                        return db_fail(req, -E2BIG, "outbox payload does not fit in %zu bytes", sizeof(payload_buf));
        }

        if (status == DB_CERT_ISSUED) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_CERT_ACTIVATE);

                sqlite3_bind_int64(st, 1, q->cert_id);
                sqlite3_bind_int64(st, 2, finished);
                sqlite3_bind_int64(st, 3, now);
                r = db_step_done(db->conn, req, st, "certificate activate");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 1) {
                        total_add(db, TOTAL_CERT_STATUS + DB_CERT_ISSUED, -1);
                        total_add(db, TOTAL_CERT_STATUS + DB_CERT_ACTIVE, 1);
                }
        }

        {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_PROVISIONED);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, finished);
                sqlite3_bind_int64(st, 3, now);
                r = db_step_done(db->conn, req, st, "device provisioned");
                if (r < 0)
                        return r;
                if (device_state >= 0 && sqlite3_changes(db->conn) == 1) {
                        total_add(db, TOTAL_DEVICES + (unsigned)device_state, -1);
                        total_add(db, TOTAL_DEVICES + DB_DEVICE_PROVISIONED, 1);
                }
        }

        return db_outbox_enqueue(db, req, now, DB_OUTBOX_REGISTER_CERT, q->cert_id, 0, payload, &q->outbox_id);
}

static int outcome_clone(struct db *db, struct db_req *req, int64_t now, const char *serial) {
        struct db_record_outcome *q = &req->outcome;
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *details = NULL;
        char stored[DB_SHA256_HEX_MAX] = "", presented[DB_SHA256_HEX_MAX] = "";
        bool known = false;
        int r, rc, old_state = -1;

        if (!o)
                return db_fail(req, -ENOMEM, "out of memory");

        if (serial[0]) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_GET);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        known = true;
                        old_state = FROM_STRING(db_device_state_names, sqlite3_column_text(st, 0));
                        db_sha256_hex(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), stored);
                } else if (rc != SQLITE_DONE)
                        return db_fail_sql(db->conn, req, rc, "device lookup");
        }
        if (known) {
                _cleanup_reset_ sqlite3_stmt *st = use(db, STMT_DEVICE_CLONE);

                sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, now);
                r = db_step_done(db->conn, req, st, "device clone_suspected");
                if (r < 0)
                        return r;
                if (old_state >= 0 && sqlite3_changes(db->conn) == 1) {
                        total_add(db, TOTAL_DEVICES + (unsigned)old_state, -1);
                        total_add(db, TOTAL_DEVICES + DB_DEVICE_CLONE_SUSPECTED, 1);
                }
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
        details = db_json_print(o);
        if (!details)
                return db_fail(req, -ENOMEM, "out of memory");
        return db_append_audit(db, req, now, "provd", "device.clone_suspected", serial, details, NULL);
}

int db_do_outcome(struct db *db, struct db_req *req, int64_t now) {
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
                r = db_fail(req, -EINVAL, "serial is not NUL-terminated");
        if (r >= 0 && q->serial[0])
                r = CANON_SERIAL(req, q->serial, serial);
        if (r < 0)
                return r;
        if ((unsigned)q->outcome >= _DB_OUTCOME_MAX)
                return db_fail(req, -EINVAL, "unknown outcome %d", (int)q->outcome);
        if (q->cert_id < 0)
                return db_fail(req, -EINVAL, "negative cert_id");

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
        db_bind_text_or_null(st, 3, serial);
        sqlite3_bind_int64(st, 4, started);
        sqlite3_bind_int64(st, 5, finished);
        sqlite3_bind_text(st, 6, db_outcome_names[q->outcome], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, q->step, -1, SQLITE_STATIC);
        db_bind_text_or_null(st, 8, q->error);
        if (q->cert_id)
                sqlite3_bind_int64(st, 9, q->cert_id);
        db_bind_text_or_null(st, 10, q->timings_json);
        rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_CHECK)
                return db_fail(req, -EINVAL, "attempt refused by the schema (timings not a JSON object, "
                                          "or a field too long): %s", sqlite3_errmsg(db->conn));
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return db_fail(req, -ENOENT, "unknown certificate %" PRId64, q->cert_id);
        if (rc != SQLITE_DONE)
                return db_fail_sql(db->conn, req, rc, "attempt insert");
        q->attempt_id = sqlite3_last_insert_rowid(db->conn);
        total_add(db, TOTAL_ATTEMPTS + (unsigned)q->outcome, 1);
        return 0;
}

/* --- DB_REISSUE_REQUEST --------------------------------------------------- */

int db_do_reissue(struct db *db, struct db_req *req, int64_t now) {
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
                r = db_step_done(db->conn, req, st, "device reissue");
                if (r < 0)
                        return r;
                if (sqlite3_changes(db->conn) == 0)
                        return db_fail(req, -ENOENT, "unknown serial %s", serial);
        }
        return db_append_audit(db, req, now, q->actor, "device.reissue_request", serial, NULL, NULL);
}

