/* SPDX-License-Identifier: MIT */
/* The audit log's hash chain: canonical row hash, append, verify, export (JSONL/CSV). */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "audit.h"
#include "certs-hsm/digest.h"
#include "schema/schema.h"
#include "util.h"

static const char hash_domain[] = "provd-audit-v1";   /* hashed with its NUL */

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);
DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);

static void stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}

struct field {
        const void *p;
        size_t len;
        bool null;
};

static void put_be64(uint8_t *b, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                b[i] = (uint8_t)v;
}

static void put_be32(uint8_t *b, uint32_t v) {
        for (int i = 3; i >= 0; i--, v >>= 8)
                b[i] = (uint8_t)v;
}

/* The one canonical encoding (audit.h, 0001-init.sql). Fields: actor, action, serial, details. */
static void hash_fields(const uint8_t prev[AUDIT_HASH_LEN], int64_t id, int64_t ts,
                        const struct field f[4], uint8_t ret[AUDIT_HASH_LEN]) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t num[16], len[4];
        unsigned out_len = 0;
        bool ok;

        put_be64(num, (uint64_t)id);
        put_be64(num + 8, (uint64_t)ts);
        ok = ctx && EVP_DigestInit_ex(ctx, certs_md_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, hash_domain, sizeof(hash_domain)) &&
             EVP_DigestUpdate(ctx, prev, AUDIT_HASH_LEN) &&
             EVP_DigestUpdate(ctx, num, sizeof(num));
        for (size_t i = 0; ok && i < 4; i++) {
                assert(f[i].len < UINT32_MAX);
                put_be32(len, f[i].null ? UINT32_MAX : (uint32_t)f[i].len);
                ok = EVP_DigestUpdate(ctx, len, sizeof(len)) &&
                     (f[i].null || f[i].len == 0 || EVP_DigestUpdate(ctx, f[i].p, f[i].len));
        }
        ok = ok && EVP_DigestFinal_ex(ctx, ret, &out_len) && out_len == AUDIT_HASH_LEN;
        if (!ok) {
                /* Only on allocation failure inside OpenSSL: a hash nobody can match. */
                memset(ret, 0xff, AUDIT_HASH_LEN);
        }
}

static struct field str_field(const char *s) {
        return (struct field){ .p = s, .len = s ? strlen(s) : 0, .null = !s };
}

void audit_hash(const uint8_t prev_hash[AUDIT_HASH_LEN], const struct audit_entry *e,
                uint8_t ret[AUDIT_HASH_LEN]) {
        const struct field f[4] = {
                str_field(e->actor ? e->actor : ""),
                str_field(e->action ? e->action : ""),
                str_field(e->serial),
                str_field(e->details ? e->details : "{}"),
        };

        hash_fields(prev_hash, e->id, e->ts, f, ret);
}

int audit_head(sqlite3 *db, sqlite3_stmt *head, int64_t *ret_id, uint8_t ret_hash[AUDIT_HASH_LEN]) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *own = NULL;
        _cleanup_(stmt_resetp) sqlite3_stmt *st = NULL;
        int rc;

        if (!head) {
                rc = sqlite3_prepare_v2(db, AUDIT_SQL_HEAD, -1, &own, NULL);
                if (rc != SQLITE_OK)
                        return schema_errno(rc);
                head = own;
        }
        st = head;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -EIO : schema_errno(rc);

        if (sqlite3_column_type(st, 1) == SQLITE_NULL)
                memset(ret_hash, 0, AUDIT_HASH_LEN);
        else if (sqlite3_column_bytes(st, 1) == AUDIT_HASH_LEN)
                memcpy(ret_hash, sqlite3_column_blob(st, 1), AUDIT_HASH_LEN);
        else
                return -EBADMSG;
        *ret_id = sqlite3_column_int64(st, 0);
        return 0;
}

int audit_insert(sqlite3_stmt *insert, const struct audit_entry *e,
                 const uint8_t prev_hash[AUDIT_HASH_LEN], uint8_t ret_hash[AUDIT_HASH_LEN]) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = insert;
        const char *details = e->details ? e->details : "{}";
        uint8_t h[AUDIT_HASH_LEN];
        int rc;

        if (!e->actor || !e->action)
                return -EINVAL;
        audit_hash(prev_hash, e, h);
        sqlite3_bind_int64(st, 1, e->id);
        sqlite3_bind_int64(st, 2, e->ts);
        sqlite3_bind_text(st, 3, e->actor, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, e->action, -1, SQLITE_STATIC);
        if (e->serial)
                sqlite3_bind_text(st, 5, e->serial, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, 5);
        sqlite3_bind_text(st, 6, details, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 7, prev_hash, AUDIT_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 8, h, AUDIT_HASH_LEN, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return schema_errno(rc);
        memcpy(ret_hash, h, AUDIT_HASH_LEN);
        return 0;
}

static int exec(sqlite3 *db, const char *sql) {
        return schema_errno(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

int audit_append(sqlite3 *db, const struct audit_entry *e, int64_t *ret_id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *insert = NULL;
        bool own_txn;
        struct audit_entry row;
        uint8_t prev[AUDIT_HASH_LEN], h[AUDIT_HASH_LEN];
        int64_t last_id;
        int r, rc;

        if (!db || !e || !e->actor || !e->action)
                return -EINVAL;

        rc = sqlite3_prepare_v2(db, AUDIT_SQL_INSERT, -1, &insert, NULL);
        if (rc != SQLITE_OK)
                return schema_errno(rc);

        own_txn = sqlite3_get_autocommit(db);
        r = exec(db, own_txn ? "BEGIN IMMEDIATE" : "SAVEPOINT audit_append");
        if (r < 0)
                return r;

        r = audit_head(db, NULL, &last_id, prev);
        if (r < 0)
                goto rollback;

        row = *e;
        row.id = last_id + 1;
        if (row.ts == 0)
                row.ts = wallclock_msec();
        r = audit_insert(insert, &row, prev, h);
        if (r < 0)
                goto rollback;

        r = exec(db, own_txn ? "COMMIT" : "RELEASE audit_append");
        if (r < 0)
                goto rollback;
        if (ret_id)
                *ret_id = row.id;
        return 0;

rollback:
        if (own_txn) {
                if (!sqlite3_get_autocommit(db))
                        (void)exec(db, "ROLLBACK");
        } else {
                (void)exec(db, "ROLLBACK TO audit_append");
                (void)exec(db, "RELEASE audit_append");
        }
        return r;
}

static struct field col_field(sqlite3_stmt *st, int i) {
        if (sqlite3_column_type(st, i) == SQLITE_NULL)
                return (struct field){ .null = true };
        /* Text first, then its length: the order SQLite documents as safe. */
        const void *p = sqlite3_column_text(st, i);
        return (struct field){ .p = p, .len = (size_t)sqlite3_column_bytes(st, i) };
}

int audit_verify(sqlite3 *db, int64_t *ret_rows, int64_t *ret_first_bad_id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL, *seq_st = NULL;
        uint8_t prev[AUDIT_HASH_LEN] = {}, h[AUDIT_HASH_LEN];
        int64_t rows = 0, bad = 0, expected = 1, last_id = 0, seq = 0;
        bool own_txn;
        int r = 0, rc;

        if (!db)
                return -EINVAL;

        /* One snapshot: the daemon may append while we read. */
        own_txn = sqlite3_get_autocommit(db);
        if (own_txn) {
                r = exec(db, "BEGIN");
                if (r < 0)
                        return r;
        }

        rc = sqlite3_prepare_v2(db, "SELECT id, ts, actor, action, serial, details, prev_hash, hash "
                                    "FROM audit_log ORDER BY id", -1, &st, NULL);
        if (rc != SQLITE_OK) {
                r = schema_errno(rc);
                goto finish;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(st, 0);

                rows++;
                last_id = id;
                if (bad)
                        continue;       /* count the rest, report the first break */

                const struct field f[4] = {
                        col_field(st, 2), col_field(st, 3), col_field(st, 4), col_field(st, 5),
                };
                const void *stored_prev = sqlite3_column_blob(st, 6);
                int stored_prev_len = sqlite3_column_bytes(st, 6);
                const void *stored_hash = sqlite3_column_blob(st, 7);
                int stored_hash_len = sqlite3_column_bytes(st, 7);

                if (id != expected || f[0].null || f[1].null || f[3].null ||
                    sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
                    stored_prev_len != AUDIT_HASH_LEN || memcmp(stored_prev, prev, AUDIT_HASH_LEN) != 0 ||
                    stored_hash_len != AUDIT_HASH_LEN) {
                        bad = id;
                        continue;
                }
                hash_fields(prev, id, sqlite3_column_int64(st, 1), f, h);
                if (memcmp(h, stored_hash, AUDIT_HASH_LEN) != 0) {
                        bad = id;
                        continue;
                }
                memcpy(prev, h, AUDIT_HASH_LEN);
                expected = id + 1;
        }
        if (rc != SQLITE_DONE) {
                r = schema_errno(rc);
                goto finish;
        }

        /* A deleted last row leaves no gap among the rows, only in sqlite_sequence. */
        rc = sqlite3_prepare_v2(db, "SELECT coalesce((SELECT seq FROM sqlite_sequence "
                                    "WHERE name = 'audit_log'), 0)", -1, &seq_st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(seq_st);
        if (rc != SQLITE_ROW) {
                r = schema_errno(rc);
                goto finish;
        }
        seq = sqlite3_column_int64(seq_st, 0);
        if (!bad && seq != last_id)
                bad = MIN(seq, last_id) + 1;

        if (ret_rows)
                *ret_rows = rows;
        if (ret_first_bad_id)
                *ret_first_bad_id = bad;
        r = bad ? -EBADMSG : 0;

finish:
        if (own_txn)
                (void)exec(db, "COMMIT");
        return r;
}

static void col_hex(sqlite3_stmt *st, int i, char out[2 * AUDIT_HASH_LEN + 1]) {
        const uint8_t *p = sqlite3_column_blob(st, i);
        int n = sqlite3_column_bytes(st, i);

        if (!p || n != AUDIT_HASH_LEN)
                n = 0;
        hex_encode(p, (size_t)n, out, false);
}

#define RFC3339_MAX 48

static void rfc3339(int64_t ms, char out[RFC3339_MAX]) {
        time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        int frac = (int)(ms - (int64_t)s * 1000);
        struct tm tm;

        if (!gmtime_r(&s, &tm)) {
                snprintf(out, RFC3339_MAX, "?");
                return;
        }
        snprintf(out, RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static void csv_field(FILE *out, const char *s, bool last) {
        fputc('"', out);
        for (; s && *s; s++) {
                if (*s == '"')
                        fputc('"', out);
                fputc(*s, out);
        }
        fputc('"', out);
        fputs(last ? "\r\n" : ",", out);
}

static int export_jsonl_row(FILE *out, sqlite3_stmt *st, const char *time, const char *prev,
                            const char *h) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *line = NULL;
        const char *details = (const char *)sqlite3_column_text(st, 5);
        cJSON *d;

        if (!o)
                return -ENOMEM;
        cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(st, 0));
        cJSON_AddNumberToObject(o, "ts", (double)sqlite3_column_int64(st, 1));
        cJSON_AddStringToObject(o, "time", time);
        cJSON_AddStringToObject(o, "actor", (const char *)sqlite3_column_text(st, 2));
        cJSON_AddStringToObject(o, "action", (const char *)sqlite3_column_text(st, 3));
        if (sqlite3_column_type(st, 4) == SQLITE_NULL)
                cJSON_AddNullToObject(o, "serial");
        else
                cJSON_AddStringToObject(o, "serial", (const char *)sqlite3_column_text(st, 4));
        /* The object itself, so jq works; the schema guarantees it is JSON. */
        d = details ? cJSON_Parse(details) : NULL;
        if (!d)
                d = cJSON_CreateString(details ? details : "");
        cJSON_AddItemToObject(o, "details", d);
        cJSON_AddStringToObject(o, "prev_hash", prev);
        cJSON_AddStringToObject(o, "hash", h);

        line = cJSON_PrintUnformatted(o);
        if (!line)
                return -ENOMEM;
        fputs(line, out);
        fputc('\n', out);
        return 0;
}

int audit_export(sqlite3 *db, FILE *out, enum audit_format format, int64_t from, int64_t to) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int64_t rows = 0;
        bool own_txn;
        int r = 0, rc;

        if (!db || !out || (format != AUDIT_FORMAT_JSONL && format != AUDIT_FORMAT_CSV))
                return -EINVAL;
        if (to == 0)
                to = INT64_MAX;

        rc = sqlite3_prepare_v2(db, "SELECT id, ts, actor, action, serial, details, prev_hash, hash "
                                    "FROM audit_log WHERE ts >= ?1 AND ts < ?2 ORDER BY id", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return schema_errno(rc);
        sqlite3_bind_int64(st, 1, from);
        sqlite3_bind_int64(st, 2, to);

        own_txn = sqlite3_get_autocommit(db);
        if (own_txn) {
                r = exec(db, "BEGIN");
                if (r < 0)
                        return r;
        }

        if (format == AUDIT_FORMAT_CSV)
                fputs("\"id\",\"ts\",\"time\",\"actor\",\"action\",\"serial\",\"details\","
                      "\"prev_hash\",\"hash\"\r\n", out);

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                char time[RFC3339_MAX], prev[2 * AUDIT_HASH_LEN + 1], h[2 * AUDIT_HASH_LEN + 1];

                rfc3339(sqlite3_column_int64(st, 1), time);
                col_hex(st, 6, prev);
                col_hex(st, 7, h);
                if (format == AUDIT_FORMAT_JSONL) {
                        r = export_jsonl_row(out, st, time, prev, h);
                        if (r < 0)
                                goto finish;
                } else {
                        char num[2][24];

                        snprintf(num[0], sizeof(num[0]), "%" PRId64, (int64_t)sqlite3_column_int64(st, 0));
                        snprintf(num[1], sizeof(num[1]), "%" PRId64, (int64_t)sqlite3_column_int64(st, 1));
                        csv_field(out, num[0], false);
                        csv_field(out, num[1], false);
                        csv_field(out, time, false);
                        csv_field(out, (const char *)sqlite3_column_text(st, 2), false);
                        csv_field(out, (const char *)sqlite3_column_text(st, 3), false);
                        csv_field(out, (const char *)sqlite3_column_text(st, 4), false);
                        csv_field(out, (const char *)sqlite3_column_text(st, 5), false);
                        csv_field(out, prev, false);
                        csv_field(out, h, true);
                }
                if (ferror(out)) {
                        r = -EIO;
                        goto finish;
                }
                rows++;
        }
        if (rc != SQLITE_DONE) {
                r = schema_errno(rc);
                goto finish;
        }
        if (fflush(out) != 0 || ferror(out)) {
                r = -EIO;
                goto finish;
        }
        r = rows > INT_MAX ? INT_MAX : (int)rows;

finish:
        if (own_txn)
                (void)exec(db, "COMMIT");
        return r;
}
