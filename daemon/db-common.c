/* SPDX-License-Identifier: MIT */
/* What the database module's files share: statement texts, string tables, validation, audit and totals helpers. */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "certs-hsm/cert-info.h"
#include "certs-hsm/digest.h"
#include "db-internal.h"
#include "basic/hex.h"
#include "schema/schema.h"

void db_stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}

/* --- statements --------------------------------------------------------------- */

const char *const db_stmt_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_SAVEPOINT] = "SAVEPOINT req",
        [STMT_RELEASE] = "RELEASE req",
        [STMT_ROLLBACK_TO] = "ROLLBACK TO req",
        [STMT_AUDIT_HEAD] = AUDIT_SQL_HEAD,
        [STMT_AUDIT_INSERT] = AUDIT_SQL_INSERT,
        /* With the current certificate's status: a supersede changes its count. */
        [STMT_DEVICE_GET] =
                "SELECT d.state, d.pubkey, d.reissue_requested, d.current_cert_id, c.status "
                "FROM devices d LEFT JOIN certificates c ON c.id = d.current_cert_id WHERE d.serial = ?1",
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
        /* With the device's state: provisioning it changes its count. */
        [STMT_CERT_GET] =
                "SELECT c.device_serial, c.status, c.thing_name, c.sha256, c.signer_id, d.state "
                "FROM certificates c LEFT JOIN devices d ON d.serial = c.device_serial WHERE c.id = ?1",
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
        /* What a claimed device row needs to be registered. */
        [STMT_OUTBOX_CLAIM_CERT] =
                "SELECT c.der, d.model, d.fw_version, s.cert_sha256 FROM certificates c "
                "JOIN devices d ON d.serial = c.device_serial JOIN signers s ON s.id = c.signer_id "
                "WHERE c.id = ?1",
        [STMT_OUTBOX_GET] = "SELECT kind, payload, attempts FROM aws_outbox WHERE id = ?1",
        [STMT_OUTBOX_PATCH] =
                "UPDATE aws_outbox SET payload = json_patch(payload, ?2) WHERE id = ?1 AND state = 'in_flight'",
        [STMT_SIGNER_FIND] = "SELECT id, state FROM signers WHERE cert_sha256 = ?1",
        [STMT_SIGNER_INSERT] =
                "INSERT INTO signers (name, key_uri, cert_der, cert_sha256, subject, not_before, not_after, "
                "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        [STMT_SIGNER_STATE] = "SELECT state FROM signers WHERE id = ?1",
        [STMT_SIGNER_RETIRE] =
                "UPDATE signers SET state = 'retired', retired_at = ?2 WHERE id = ?1 AND state = 'active'",
        [STMT_SIGNER_DER] = "SELECT cert_der FROM signers WHERE id = ?1",
        [STMT_TOTALS_ADD] =
                "INSERT INTO totals (name, n) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
};


const char *const db_rstmt_sql[_RSTMT_MAX] = {
        /* The known-serials filter's scan (db-known.c), along the primary key. */
        [RSTMT_KNOWN_SCAN] = "SELECT serial FROM devices WHERE serial > ?1 ORDER BY serial LIMIT ?2",
        [RSTMT_LOOKUP] =
                "SELECT d.state, d.pubkey, d.reissue_requested, d.current_cert_id, "
                "c.status, c.sha256, c.thing_name, c.not_after, c.der "
                "FROM devices d LEFT JOIN certificates c ON c.id = d.current_cert_id "
                "WHERE d.serial = ?1",
        [RSTMT_QUERY_DEVICES] =
                "SELECT d.serial, d.model, d.fw_version, d.state, d.first_seen, d.provisioned_at, "
                "d.updated_at, d.reissue_requested, d.current_cert_id, c.thing_name, c.sha256, "
                "c.serial_hex, c.not_after, c.status, c.der "
                "FROM devices d LEFT JOIN certificates c ON c.id = d.current_cert_id "
                "WHERE (d.updated_at, d.serial) > (?1, ?3) ORDER BY d.updated_at, d.serial LIMIT ?2",
        /* Kept by the writer (db_totals_flush()): as fast on a million devices as on ten. */
        [RSTMT_TOTALS] = "SELECT name, n FROM totals",
        /* Newest first by the primary key: stops at the hour's edge without an index on issued_at. */
        [RSTMT_ISSUED] = "SELECT issued_at FROM certificates ORDER BY id DESC LIMIT ?1",
};

/* --- string tables -------------------------------------------------------- */

const char *const db_device_state_names[_DB_DEVICE_STATE_MAX] = {
        [DB_DEVICE_ISSUED] = "issued",
        [DB_DEVICE_PROVISIONED] = "provisioned",
        [DB_DEVICE_CLONE_SUSPECTED] = "clone_suspected",
};

const char *const db_cert_status_names[_DB_CERT_STATUS_MAX] = {
        [DB_CERT_ISSUED] = "issued",
        [DB_CERT_ACTIVE] = "active",
        [DB_CERT_SUPERSEDED] = "superseded",
        [DB_CERT_REVOKED] = "revoked",
};

const char *const db_outcome_names[_DB_OUTCOME_MAX] = {
        [DB_OUTCOME_PROVISIONED] = "provisioned",
        [DB_OUTCOME_ALREADY_PROVISIONED] = "already_provisioned",
        [DB_OUTCOME_FAILED] = "failed",
        [DB_OUTCOME_REJECTED] = "rejected",
        [DB_OUTCOME_CLONE_SUSPECTED] = "clone_suspected",
        [DB_OUTCOME_ABORTED] = "aborted",
};

const char *const db_outbox_state_names[_DB_OUTBOX_STATE_MAX] = {
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
        return TO_STRING(db_device_state_names, s);
}
const char *db_cert_status_to_string(enum db_cert_status s) {
        return TO_STRING(db_cert_status_names, s);
}
const char *db_outcome_to_string(enum db_outcome o) {
        return TO_STRING(db_outcome_names, o);
}
const char *db_outbox_state_to_string(enum db_outbox_state s) {
        return TO_STRING(db_outbox_state_names, s);
}
const char *db_outbox_kind_to_string(enum db_outbox_kind k) {
        return TO_STRING(outbox_kind_names, k);
}

int db_from_string(const char *const *table, size_t n, const char *s) {
        for (size_t i = 0; s && i < n; i++)
                if (streq(table[i], s))
                        return (int)i;
        return -EBADMSG;
}

/*
 * A TEXT column as a C string, "" for NULL. The schema makes these columns NOT
 * NULL, but a file edited by hand (the CHECKs and NOT NULLs dropped) must give
 * a refused request, not a NULL dereference on the writer thread.
 */
const char *db_col_text(sqlite3_stmt *st, int i) {
        const char *t = (const char *)sqlite3_column_text(st, i);
        return t ? t : "";
}
/* --- small helpers ---------------------------------------------------------- */

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

/* Kept for the callers of db.h; the encoder lives with the other certificate code. */
char *db_der_to_pem(const uint8_t *der, size_t len) {
        return certs_der_to_pem(der, len);
}

int db_fail(struct db_req *req, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(req->errmsg, sizeof(req->errmsg), fmt, ap);
        va_end(ap);
        return r;
}

int db_open_error(char *errbuf, size_t errlen, int r, const char *fmt, ...) {
        va_list ap;

        if (errbuf && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(errbuf, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

int db_fail_sql(sqlite3 *conn, struct db_req *req, int rc, const char *what) {
        int r = schema_errno(rc);

        snprintf(req->errmsg, sizeof(req->errmsg), "%s: %s", what, sqlite3_errmsg(conn));
        return r < 0 ? r : -EIO;
}

int db_step_done(sqlite3 *conn, struct db_req *req, sqlite3_stmt *st, const char *what) {
        int rc = sqlite3_step(st);

        return rc == SQLITE_DONE ? 0 : db_fail_sql(conn, req, rc, what);
}

void db_bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
        if (isempty(s))
                sqlite3_bind_null(st, i);
        else
                sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

int db_check_str(struct db_req *req, const char *s, size_t size, bool may_be_empty, const char *name) {
        if (!memchr(s, 0, size))
                return db_fail(req, -EINVAL, "%s is not NUL-terminated", name);
        if (!may_be_empty && !*s)
                return db_fail(req, -EINVAL, "%s is empty", name);
        return 0;
}
int db_hex_canon(const char *in, size_t in_size, char *out, size_t min, size_t max) {
        const char *end = memchr(in, 0, in_size);
        size_t n;

        if (!end)
                return -EBADMSG;
        n = (size_t)(end - in);
        if (n < min || n > max || n % 2 != 0)
                return -ERANGE;
        if (!hex_valid(in, n, n / 2, n / 2))
                return -EINVAL;
        hex_lower(in, n, out);
        return 0;
}

int db_canon_hex(struct db_req *req, const char *in, size_t in_size, char *out, size_t min, size_t max,
                 const char *name) {
        switch (db_hex_canon(in, in_size, out, min, max)) {
        case 0:
                return 0;
        case -EBADMSG:
                return db_fail(req, -EINVAL, "%s is not NUL-terminated", name);
        case -ERANGE:
                return db_fail(req, -EINVAL, "%s '%s': expected an even number of hex digits, %zu..%zu",
                               name, in, min, max);
        default:
                return db_fail(req, -EINVAL, "%s '%s' is not hex", name, in);
        }
}

char *db_json_print(cJSON *o) {
        return o ? cJSON_PrintUnformatted(o) : NULL;
}

void db_json_add_int(cJSON *o, const char *name, int64_t v) {
        cJSON_AddNumberToObject(o, name, (double)v);
}

void db_json_add_col_int_or_null(cJSON *o, const char *name, sqlite3_stmt *st, int i) {
        if (sqlite3_column_type(st, i) == SQLITE_NULL)
                cJSON_AddNullToObject(o, name);
        else
                db_json_add_int(o, name, sqlite3_column_int64(st, i));
}

void db_json_add_col_str_or_null(cJSON *o, const char *name, sqlite3_stmt *st, int i) {
        const char *s = (const char *)sqlite3_column_text(st, i);

        if (s)
                cJSON_AddStringToObject(o, name, s);
        else
                cJSON_AddNullToObject(o, name);
}

/* --- audit ---------------------------------------------------------------- */

int db_append_audit(struct db *db, struct db_req *req, int64_t now, const char *actor, const char *action,
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
                return db_fail(req, r, "audit %s: %s", action, sqlite3_errmsg(db->conn));
        db->audit_id = e.id;
        memcpy(db->audit_hash, h, AUDIT_HASH_LEN);
        if (ret_id)
                *ret_id = e.id;
        return 0;
}

int db_do_audit(struct db *db, struct db_req *req, int64_t now) {
        struct db_audit *q = &req->audit;
        char serial[DB_SERIAL_MAX] = "";
        int r;

        r = CHECK_STR(req, q->actor, false, "actor");
        if (r >= 0)
                r = CHECK_STR(req, q->action, false, "action");
        if (r >= 0 && !FIELD_OK(q->serial))
                r = db_fail(req, -EINVAL, "serial is not NUL-terminated");
        if (r >= 0 && q->serial[0])
                r = CANON_SERIAL(req, q->serial, serial);
        if (r < 0)
                return r;
        return db_append_audit(db, req, now, q->actor, q->action, serial, q->details_json, &q->id);
}


/* --- totals ------------------------------------------------------------------- */

const char *db_total_name(unsigned i, char buf[TOTAL_NAME_MAX]) {
        if (i < TOTAL_CERTIFICATES)
                snprintf(buf, TOTAL_NAME_MAX, "devices.%s", db_device_state_names[i - TOTAL_DEVICES]);
        else if (i == TOTAL_CERTIFICATES)
                snprintf(buf, TOTAL_NAME_MAX, "certificates.total");
        else if (i < TOTAL_ATTEMPTS)
                snprintf(buf, TOTAL_NAME_MAX, "certificates.%s", db_cert_status_names[i - TOTAL_CERT_STATUS]);
        else if (i < TOTAL_OUTBOX)
                snprintf(buf, TOTAL_NAME_MAX, "attempts.%s", db_outcome_names[i - TOTAL_ATTEMPTS]);
        else if (i < _TOTAL_MAX)
                snprintf(buf, TOTAL_NAME_MAX, "aws_outbox.%s", db_outbox_state_names[i - TOTAL_OUTBOX]);
        else
                snprintf(buf, TOTAL_NAME_MAX, "?");
        return buf;
}

int db_total_from_name(const char *name) {
        char buf[TOTAL_NAME_MAX];

        /* 18 names: a linear search is cheaper than anything cleverer. */
        for (unsigned i = 0; name && i < _TOTAL_MAX; i++)
                if (streq(db_total_name(i, buf), name))
                        return (int)i;
        return -EBADMSG;
}

int db_totals_flush(struct db *db, char *why, size_t why_len) {
        char name[TOTAL_NAME_MAX];

        for (unsigned i = 0; i < _TOTAL_MAX; i++) {
                _cleanup_reset_ sqlite3_stmt *st = NULL;
                int rc;

                if (db->batch_delta[i] == 0)
                        continue;
                st = use(db, STMT_TOTALS_ADD);
                sqlite3_bind_text(st, 1, db_total_name(i, name), -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(st, 2, db->batch_delta[i]);
                rc = sqlite3_step(st);
                if (rc != SQLITE_DONE) {
                        snprintf(why, why_len, "totals %s: %s", name, sqlite3_errmsg(db->conn));
                        return schema_errno(rc) < 0 ? schema_errno(rc) : -EIO;
                }
        }
        memset(db->batch_delta, 0, sizeof(db->batch_delta));
        return 0;
}

/* --- request outputs ---------------------------------------------------------- */

void db_reset_outputs(struct db_req *req) {
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
                req->devices.more = false;
                break;
        case DB_OUTBOX_CLAIM:
                req->claim.items = NULL;
                break;
        case DB_QUERY_ISSUED:
                req->issued.count = 0;
                memset(req->issued.per_minute, 0, sizeof(req->issued.per_minute));
                break;
        case DB_QUERY_OUTBOX:
                req->outbox.report = NULL;
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

void db_free_outputs(struct db_req *req) {
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
        case DB_QUERY_OUTBOX:
                cJSON_Delete(req->outbox.report);
                req->outbox.report = NULL;
                break;
        default:
                break;
        }
}
