/* SPDX-License-Identifier: MIT */
/* Reads on the reader thread's read-only connection: DB_LOOKUP_DEVICE, DB_QUERY_DEVICES, DB_QUERY_STATS, DB_QUERY_ISSUED. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "certs-hsm/cert-info.h"
#include "db-internal.h"

/* --- DB_LOOKUP_DEVICE ----------------------------------------------------- */

int db_do_lookup(struct db_reader *rd, struct db_req *req) {
        struct db_lookup_device *q = &req->lookup;
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        char serial[DB_SERIAL_MAX];
        int r, rc;

        r = CANON_SERIAL(req, q->serial, serial);
        if (r < 0)
                return r;

        st = rd->stmts[RSTMT_LOOKUP];
        sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                q->found = false;
                return 0;
        }
        if (rc != SQLITE_ROW)
                return db_fail_sql(rd->conn, req, rc, "device lookup");

        r = FROM_STRING(db_device_state_names, sqlite3_column_text(st, 0));
        if (r < 0 || sqlite3_column_bytes(st, 1) != DB_PUBKEY_LEN)
                return db_fail(req, -EBADMSG, "device %s: unreadable row", serial);
        q->state = (enum db_device_state)r;
        memcpy(q->pubkey, sqlite3_column_blob(st, 1), DB_PUBKEY_LEN);
        q->reissue_requested = sqlite3_column_int(st, 2) != 0;
        q->cert_id = sqlite3_column_int64(st, 3);
        if (q->cert_id && sqlite3_column_type(st, 4) != SQLITE_NULL) {
                r = FROM_STRING(db_cert_status_names, sqlite3_column_text(st, 4));
                if (r < 0)
                        return db_fail(req, -EBADMSG, "certificate %" PRId64 ": unreadable status", q->cert_id);
                q->cert_status = (enum db_cert_status)r;
                snprintf(q->cert_sha256, sizeof(q->cert_sha256), "%s", db_col_text(st, 5));
                snprintf(q->thing_name, sizeof(q->thing_name), "%s", db_col_text(st, 6));
                q->cert_not_after_ms = sqlite3_column_int64(st, 7);
                if (q->want_der) {
                        const void *der = sqlite3_column_blob(st, 8);
                        int n = sqlite3_column_bytes(st, 8);

                        q->cert_der = malloc(n > 0 ? (size_t)n : 1);
                        if (!q->cert_der)
                                return db_fail(req, -ENOMEM, "out of memory");
                        memcpy(q->cert_der, der, (size_t)n);
                        q->cert_der_len = (size_t)n;
                }
        } else
                q->cert_id = 0;
        q->found = true;
        return 0;
}

/* --- queries -------------------------------------------------------------- */

int db_do_query_devices(struct db_reader *rd, struct db_req *req) {
        struct db_query_devices *q = &req->devices;
        _cleanup_(cJSON_Deletep) cJSON *array = cJSON_CreateArray();
        _cleanup_reset_ sqlite3_stmt *st = rd->stmts[RSTMT_QUERY_DEVICES];
        unsigned limit = q->limit ? MIN(q->limit, (unsigned)DB_QUERY_LIMIT_MAX) : DB_QUERY_LIMIT_MAX;
        char after[DB_SERIAL_MAX] = "";
        int r, rc;

        if (!array)
                return db_fail(req, -ENOMEM, "out of memory");
        if (!FIELD_OK(q->after_serial))
                return db_fail(req, -EINVAL, "after_serial is not NUL-terminated");
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
                        return db_fail(req, -ENOMEM, "out of memory");
                }
                db_json_add_col_str_or_null(o, "serial", st, 0);
                db_json_add_col_str_or_null(o, "model", st, 1);
                db_json_add_col_str_or_null(o, "fw_version", st, 2);
                db_json_add_col_str_or_null(o, "state", st, 3);
                db_json_add_col_int_or_null(o, "first_seen", st, 4);
                db_json_add_col_int_or_null(o, "provisioned_at", st, 5);
                db_json_add_col_int_or_null(o, "updated_at", st, 6);
                cJSON_AddBoolToObject(o, "reissue_requested", sqlite3_column_int(st, 7) != 0);
                db_json_add_col_int_or_null(o, "cert_id", st, 8);
                db_json_add_col_str_or_null(o, "thing_name", st, 9);
                db_json_add_col_str_or_null(o, "cert_sha256", st, 10);
                db_json_add_col_str_or_null(o, "cert_serial", st, 11);
                db_json_add_col_int_or_null(o, "not_after", st, 12);
                db_json_add_col_str_or_null(o, "cert_status", st, 13);
                if (q->include_pem && sqlite3_column_type(st, 14) == SQLITE_BLOB) {
                        _cleanup_free_ char *pem = certs_der_to_pem(sqlite3_column_blob(st, 14),
                                                                 (size_t)sqlite3_column_bytes(st, 14));

                        if (!pem || !cJSON_AddStringToObject(o, "certificate_pem", pem))
                                return db_fail(req, -ENOMEM, "out of memory");
                }
        }
        if (rc != SQLITE_DONE)
                return db_fail_sql(rd->conn, req, rc, "device query");
        q->more = cJSON_GetArraySize(array) >= (int)limit;
        q->devices = TAKE_PTR(array);
        return 0;
}

int db_do_stats(struct db_reader *rd, struct db_req *req) {
        struct db_stats *s = &req->stats;
        _cleanup_reset_ sqlite3_stmt *st = rd->stmts[RSTMT_TOTALS];
        int rc;

        memset(s, 0, sizeof(*s));
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t n = sqlite3_column_int64(st, 1);
                uint64_t v = n > 0 ? (uint64_t)n : 0;
                int i = db_total_from_name((const char *)sqlite3_column_text(st, 0));

                /* Rows of a later provd's counters are not ours to show. */
                if (i < 0)
                        continue;
                if (i < TOTAL_CERTIFICATES)
                        s->devices[i - TOTAL_DEVICES] = v;
                else if (i == TOTAL_CERTIFICATES)
                        s->certificates = v;
                else if (i < TOTAL_ATTEMPTS)
                        s->certificates_by_status[i - TOTAL_CERT_STATUS] = v;
                else if (i < TOTAL_OUTBOX)
                        s->attempts[i - TOTAL_ATTEMPTS] = v;
                else
                        s->outbox[i - TOTAL_OUTBOX] = v;
        }
        if (rc != SQLITE_DONE)
                return db_fail_sql(rd->conn, req, rc, "stats");
        return 0;
}

int db_do_query_issued(struct db_reader *rd, struct db_req *req) {
        struct db_query_issued *q = &req->issued;
        _cleanup_reset_ sqlite3_stmt *st = rd->stmts[RSTMT_ISSUED];
        int rc;

        if (q->max_rows == 0 || q->since_ms < 0)
                return db_fail(req, -EINVAL, "issued: max_rows must be at least 1 and since_ms a time");
        sqlite3_bind_int64(st, 1, q->max_rows);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t at = sqlite3_column_int64(st, 0);

                if (at < q->since_ms)
                        break;
                q->per_minute[(at / 60000) % DB_ISSUED_MINUTES]++;
                q->count++;
        }
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                return db_fail_sql(rd->conn, req, rc, "issued certificates");
        return 0;
}

bool db_is_read(const struct db_req *req) {
        return req->type == DB_LOOKUP_DEVICE || req->type == DB_QUERY_DEVICES || req->type == DB_QUERY_STATS ||
               req->type == DB_QUERY_ISSUED || req->type == DB_QUERY_OUTBOX;
}
