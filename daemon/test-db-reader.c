/* SPDX-License-Identifier: MIT */
/* Unit tests for the database's reader thread and its totals: reads beside an open write, order, counts. */

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "db.h"
#include "schema/schema.h"

struct ctx {
        char dir[64];
        char path[128];
        uv_loop_t loop;
        struct db *db;
        unsigned done_count;
        unsigned order;                 /* completion order stamp */
        uint8_t *signer_der;
        size_t signer_der_len;
        int64_t signer_id;
};

/* Each request's completion stamp, by its userdata slot. */
struct slot {
        struct ctx *c;
        unsigned done_at;               /* 0 = not done */
};

/* --- plumbing --------------------------------------------------------------- */

static void on_done(struct db_req *req) {
        struct slot *s = req->userdata;

        s->c->done_count++;
        s->done_at = ++s->c->order;
}

static void submit(struct ctx *c, struct db_req *req, struct slot *s) {
        s->c = c;
        s->done_at = 0;
        req->done = on_done;
        req->userdata = s;
        db_submit(c->db, req);
}

static void wait_done(struct ctx *c, unsigned target) {
        while (c->done_count < target)
                uv_run(&c->loop, UV_RUN_ONCE);
}

static int run(struct ctx *c, struct db_req *req) {
        struct slot s;
        unsigned target = c->done_count + 1;

        submit(c, req, &s);
        wait_done(c, target);
        return req->result;
}

static void open_db(struct ctx *c, const struct db_options *opt) {
        char err[256] = "";
        struct db_options o = opt ? *opt : (struct db_options){};

        o.errbuf = err;
        o.errbuf_size = sizeof(err);
        if (db_open(&c->db, &c->loop, c->path, &o) < 0)
                fail_msg("db_open: %s", err);
}

static void on_closed(struct db *db, void *userdata) {
        *(bool *)userdata = true;
}

static void close_db(struct ctx *c) {
        bool closed = false;

        db_close(c->db, on_closed, &closed);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
}

static void make_signer_cert(uint8_t **ret, size_t *ret_len) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        X509_NAME *name = X509_NAME_new();
        unsigned char *der = NULL;
        int len;

        assert_non_null(key);
        assert_non_null(x);
        assert_int_equal(X509_set_version(x, 2), 1);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"reader test", -1, -1, 0);
        X509_set_subject_name(x, name);
        X509_set_issuer_name(x, name);
        ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
        ASN1_TIME_set(X509_getm_notAfter(x), 1700000000 + 86400);
        X509_set_pubkey(x, key);
        assert_true(X509_sign(x, key, EVP_sha256()) > 0);
        len = i2d_X509(x, &der);
        assert_true(len > 0);
        *ret = der;
        *ret_len = (size_t)len;
        X509_NAME_free(name);
        X509_free(x);
        EVP_PKEY_free(key);
}

static int setup(void **state) {
        struct ctx *c = calloc(1, sizeof(*c));
        struct db_req req = { .type = DB_SIGNER_ENSURE };

        assert_non_null(c);
        snprintf(c->dir, sizeof(c->dir), "/tmp/test-db-reader-XXXXXX");
        assert_non_null(mkdtemp(c->dir));
        snprintf(c->path, sizeof(c->path), "%s/provd.db", c->dir);
        assert_int_equal(uv_loop_init(&c->loop), 0);
        make_signer_cert(&c->signer_der, &c->signer_der_len);
        open_db(c, NULL);

        snprintf(req.signer.name, sizeof(req.signer.name), "line1");
        req.signer.key_uri = "file:/etc/provd/signer.key";
        req.signer.cert_der = c->signer_der;
        req.signer.cert_der_len = c->signer_der_len;
        assert_int_equal(run(c, &req), 0);
        c->signer_id = req.signer.signer_id;
        *state = c;
        return 0;
}

static int teardown(void **state) {
        struct ctx *c = *state;
        char cmd[160];

        if (c->db)
                close_db(c);
        assert_int_equal(uv_loop_close(&c->loop), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        assert_int_equal(system(cmd), 0);
        OPENSSL_free(c->signer_der);
        free(c);
        return 0;
}

/* An issuance whose borrowed DER lives in @der (64 bytes). */
static void make_issuance(struct db_req *req, const struct ctx *c, const char *serial, uint8_t key_seed,
                          const char *cert_serial, uint8_t der[64]) {
        memset(req, 0, sizeof(*req));
        req->type = DB_RECORD_ISSUANCE;
        snprintf(req->issuance.serial, sizeof(req->issuance.serial), "%s", serial);
        req->issuance.pubkey[0] = 0x04;
        memset(req->issuance.pubkey + 1, key_seed, DB_PUBKEY_LEN - 1);
        memset(der, 0x30, 64);
        snprintf((char *)der + 2, 60, "%s", cert_serial);
        req->issuance.cert_der = der;
        req->issuance.cert_der_len = 64;
        snprintf(req->issuance.cert_serial, sizeof(req->issuance.cert_serial), "%s", cert_serial);
        req->issuance.not_before_ms = 1700000000000;
        req->issuance.not_after_ms = 1800000000000;
        req->issuance.signer_id = c->signer_id;
        snprintf(req->issuance.thing_name, sizeof(req->issuance.thing_name), "thing-%s", serial);
}

static void make_outcome(struct db_req *req, const char *serial, enum db_outcome o, int64_t cert_id) {
        memset(req, 0, sizeof(*req));
        req->type = DB_RECORD_OUTCOME;
        snprintf(req->outcome.port, sizeof(req->outcome.port), "/dev/ttyACM0");
        snprintf(req->outcome.slot, sizeof(req->outcome.slot), "A1");
        snprintf(req->outcome.serial, sizeof(req->outcome.serial), "%s", serial);
        req->outcome.outcome = o;
        snprintf(req->outcome.step, sizeof(req->outcome.step), "done");
        req->outcome.cert_id = cert_id;
}

static void make_lookup(struct db_req *req, const char *serial) {
        memset(req, 0, sizeof(*req));
        req->type = DB_LOOKUP_DEVICE;
        snprintf(req->lookup.serial, sizeof(req->lookup.serial), "%s", serial);
}

static struct db_stats stats(struct ctx *c) {
        struct db_req req = { .type = DB_QUERY_STATS };

        assert_int_equal(run(c, &req), 0);
        return req.stats;
}

/* A second connection, read-write, as another process would open it. */
static sqlite3 *other_conn(struct ctx *c) {
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 10000);
        return db;
}

static void exec_sql(sqlite3 *db, const char *sql) {
        char *err = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("%s: %s", sql, err ? err : "?");
}

/* What the totals must equal: the GROUP BY over the rows, on another connection. */
static struct db_stats counted(struct ctx *c) {
        static const char *const tables[] = {
                "SELECT 'devices', state, count(*) FROM devices GROUP BY state",
                "SELECT 'certificates', status, count(*) FROM certificates GROUP BY status",
                "SELECT 'attempts', outcome, count(*) FROM attempts GROUP BY outcome",
                "SELECT 'aws_outbox', state, count(*) FROM aws_outbox GROUP BY state",
        };
        struct db_stats s = {};
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
                sqlite3_stmt *st = NULL;

                assert_int_equal(sqlite3_prepare_v2(db, tables[t], -1, &st, NULL), SQLITE_OK);
                while (sqlite3_step(st) == SQLITE_ROW) {
                        const char *v = (const char *)sqlite3_column_text(st, 1);
                        uint64_t n = (uint64_t)sqlite3_column_int64(st, 2);
                        bool found = false;

                        for (int i = 0; i < 8 && !found; i++) {
                                if (t == 0 && i < _DB_DEVICE_STATE_MAX &&
                                    strcmp(v, db_device_state_to_string(i)) == 0)
                                        s.devices[i] = n, found = true;
                                if (t == 1 && i < _DB_CERT_STATUS_MAX && strcmp(v, db_cert_status_to_string(i)) == 0)
                                        s.certificates_by_status[i] = n, s.certificates += n, found = true;
                                if (t == 2 && i < _DB_OUTCOME_MAX && strcmp(v, db_outcome_to_string(i)) == 0)
                                        s.attempts[i] = n, found = true;
                                if (t == 3 && i < _DB_OUTBOX_STATE_MAX && strcmp(v, db_outbox_state_to_string(i)) == 0)
                                        s.outbox[i] = n, found = true;
                        }
                        assert_true(found);
                }
                sqlite3_finalize(st);
        }
        sqlite3_close(db);
        return s;
}

static void assert_stats_equal(const struct db_stats *a, const struct db_stats *b) {
        for (int i = 0; i < _DB_DEVICE_STATE_MAX; i++)
                assert_int_equal(a->devices[i], b->devices[i]);
        assert_int_equal(a->certificates, b->certificates);
        for (int i = 0; i < _DB_CERT_STATUS_MAX; i++)
                assert_int_equal(a->certificates_by_status[i], b->certificates_by_status[i]);
        for (int i = 0; i < _DB_OUTCOME_MAX; i++)
                assert_int_equal(a->attempts[i], b->attempts[i]);
        for (int i = 0; i < _DB_OUTBOX_STATE_MAX; i++)
                assert_int_equal(a->outbox[i], b->outbox[i]);
}

/* --- tests ------------------------------------------------------------------ */

/*
 * Another process holds the write lock (BEGIN IMMEDIATE) with a row it has not
 * committed: lookups and stats still complete, and see only committed rows. If
 * a read needed the write lock this test would hang, not pass.
 */
static void test_reads_beside_open_write(void **state) {
        struct ctx *c = *state;
        struct db_req req;
        uint8_t der[64];
        sqlite3 *other;

        make_issuance(&req, c, "a1", 1, "01a1", der);
        assert_int_equal(run(c, &req), 0);

        other = other_conn(c);
        exec_sql(other, "BEGIN IMMEDIATE");
        exec_sql(other, "INSERT INTO devices (serial, model, fw_version, pubkey, state, first_seen, updated_at) "
                        "VALUES ('b2', '', '', CAST(x'04' || zeroblob(64) AS BLOB), 'issued', 1, 1)");

        make_lookup(&req, "a1");
        assert_int_equal(run(c, &req), 0);
        assert_true(req.lookup.found);
        assert_int_equal(req.lookup.state, DB_DEVICE_ISSUED);
        make_lookup(&req, "b2");
        assert_int_equal(run(c, &req), 0);
        assert_false(req.lookup.found);         /* not committed */
        assert_int_equal(stats(c).devices[DB_DEVICE_ISSUED], 1);
        {
                struct db_req q = { .type = DB_QUERY_DEVICES };

                assert_int_equal(run(c, &q), 0);
                assert_int_equal(cJSON_GetArraySize(q.devices.devices), 1);
                cJSON_Delete(q.devices.devices);
        }

        exec_sql(other, "ROLLBACK");
        sqlite3_close(other);
}

/*
 * A read queued behind a write runs after it even while the write waits for
 * the lock: it sees the write (or its failure), as when one thread ran both.
 * A read with no write before it does not wait.
 */
static void test_read_after_queued_write(void **state) {
        struct ctx *c = *state;
        struct db_req w, r1, r2;
        struct slot sw, s1, s2;
        uint8_t der[64];
        sqlite3 *other;
        unsigned target;

        close_db(c);
        open_db(c, &(struct db_options){ .busy_timeout_ms = 60 * 1000 });

        other = other_conn(c);
        exec_sql(other, "BEGIN IMMEDIATE");

        /* No write queued: the read completes while the lock is held. */
        make_lookup(&r1, "c3");
        target = c->done_count + 1;
        submit(c, &r1, &s1);
        wait_done(c, target);
        assert_int_equal(r1.result, 0);
        assert_false(r1.lookup.found);

        /* The write waits for the lock; the read queued after it waits for the write. */
        make_issuance(&w, c, "c3", 3, "01c3", der);
        make_lookup(&r2, "c3");
        target = c->done_count + 2;
        submit(c, &w, &sw);
        submit(c, &r2, &s2);
        /* Both still queued: the writer sits in BEGIN IMMEDIATE's busy wait. */
        for (int i = 0; i < 20; i++)
                uv_run(&c->loop, UV_RUN_NOWAIT);
        assert_int_equal(sw.done_at, 0);
        assert_int_equal(s2.done_at, 0);

        exec_sql(other, "COMMIT");
        sqlite3_close(other);
        wait_done(c, target);
        assert_int_equal(w.result, 0);
        assert_int_equal(r2.result, 0);
        assert_true(r2.lookup.found);
        assert_true(sw.done_at < s2.done_at);
}

/*
 * The issuance budget's count: certificates of the last hour by minute, from
 * the newest row back to the first older one, at most max_rows rows.
 */
static void test_query_issued(void **state) {
        struct ctx *c = *state;
        struct db_req req;
        sqlite3 *other;
        uint8_t der[64];
        char sql[160], serial[8], cs[8];
        int64_t now = (int64_t)time(NULL) * 1000, since = (now / 60000 - 59) * 60000;

        for (int i = 0; i < 6; i++) {
                snprintf(serial, sizeof serial, "e%d", i);
                snprintf(cs, sizeof cs, "0e0%d", i);
                make_issuance(&req, c, serial, (uint8_t)(40 + i), cs, der);
                assert_int_equal(run(c, &req), 0);
        }
        /* Two issued before the window (ids 1, 2), four inside it, two of them in the same minute. */
        other = other_conn(c);
        for (int id = 1; id <= 6; id++) {
                int64_t at = id <= 2 ? since - 1000 * id : id <= 4 ? since + 5000 : now;
                snprintf(sql, sizeof sql, "UPDATE certificates SET issued_at = %" PRId64 " WHERE id = %d", at, id);
                exec_sql(other, sql);
        }
        sqlite3_close(other);

        memset(&req, 0, sizeof req);
        req.type = DB_QUERY_ISSUED;
        req.issued.since_ms = since;
        req.issued.max_rows = 1000;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.issued.count, 4);
        assert_int_equal(req.issued.per_minute[(since / 60000) % DB_ISSUED_MINUTES], 2);
        assert_int_equal(req.issued.per_minute[(now / 60000) % DB_ISSUED_MINUTES], 2);

        req.issued.max_rows = 3;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.issued.count, 3);

        req.issued.max_rows = 0;
        assert_int_equal(run(c, &req), -EINVAL);
}

/* Random operations of every kind, in batches with failures: the totals stay the GROUP BY counts. */
static void test_totals_match_group_by(void **state) {
        enum { N_DEV = 24, ROUNDS = 60, PER_ROUND = 8 };
        struct ctx *c = *state;
        struct db_req req[PER_ROUND];
        struct slot slots[PER_ROUND];
        uint8_t der[PER_ROUND][64];
        int64_t cert[N_DEV] = {}, claimed[64];
        uint8_t key[N_DEV] = {};
        unsigned n_claimed = 0, cert_seq = 0;
        struct db_stats a, b;

        srand(20261203);
        close_db(c);
        /* Batches as large as a round, so failures share them with successes. */
        open_db(c, &(struct db_options){ .max_batch = PER_ROUND, .batch_delay_us = 100 * 1000 });

        for (int round = 0; round < ROUNDS; round++) {
                unsigned target = c->done_count + PER_ROUND;

                for (int k = 0; k < PER_ROUND; k++) {
                        int d = rand() % N_DEV, op = rand() % 10;
                        char serial[8], cs[16];

                        snprintf(serial, sizeof(serial), "%04x", d);
                        switch (op) {
                        case 0: case 1: case 2:         /* issue or reissue (same key), sometimes a clone's key */
                                if (!key[d])
                                        key[d] = (uint8_t)(d + 1);
                                snprintf(cs, sizeof(cs), "%06x", ++cert_seq);
                                make_issuance(&req[k], c, serial, rand() % 8 == 0 ? 0xee : key[d], cs, der[k]);
                                break;
                        case 3:                         /* a duplicate certificate serial: fails after writing */
                                make_issuance(&req[k], c, serial, key[d] ? key[d] : (uint8_t)(d + 1), "000001",
                                              der[k]);
                                break;
                        case 4: case 5:
                                make_outcome(&req[k], serial, DB_OUTCOME_PROVISIONED, cert[d]);
                                break;
                        case 6:
                                make_outcome(&req[k], serial, (enum db_outcome)(1 + rand() % (_DB_OUTCOME_MAX - 1)),
                                             0);
                                if (req[k].outcome.outcome == DB_OUTCOME_CLONE_SUSPECTED) {
                                        req[k].outcome.have_presented_pubkey = true;
                                        req[k].outcome.presented_pubkey[0] = 0x04;
                                }
                                break;
                        case 7:
                                memset(&req[k], 0, sizeof(req[k]));
                                req[k].type = DB_REISSUE_REQUEST;
                                snprintf(req[k].reissue.serial, sizeof(req[k].reissue.serial), "%s", serial);
                                break;
                        case 8:
                                memset(&req[k], 0, sizeof(req[k]));
                                req[k].type = DB_OUTBOX_CLAIM;
                                req[k].claim.limit = 1 + (unsigned)(rand() % 3);
                                break;
                        default:
                                memset(&req[k], 0, sizeof(req[k]));
                                req[k].type = DB_OUTBOX_COMPLETE;
                                req[k].complete.id = n_claimed ? claimed[rand() % n_claimed] : 1;
                                req[k].complete.result = (enum db_outbox_result)(rand() % 3);
                                break;
                        }
                        submit(c, &req[k], &slots[k]);
                }
                wait_done(c, target);
                for (int k = 0; k < PER_ROUND; k++) {
                        if (req[k].type == DB_RECORD_ISSUANCE && req[k].result == 0) {
                                int d = (int)strtol(req[k].issuance.serial, NULL, 16);

                                cert[d] = req[k].issuance.cert_id;
                        }
                        if (req[k].type == DB_OUTBOX_CLAIM && req[k].result == 0) {
                                cJSON *it;

                                cJSON_ArrayForEach(it, req[k].claim.items)
                                        if (n_claimed < 64)
                                                claimed[n_claimed++] =
                                                        (int64_t)cJSON_GetObjectItem(it, "id")->valuedouble;
                                cJSON_Delete(req[k].claim.items);
                        }
                }
                if (round % 20 == 19) {
                        a = stats(c);
                        b = counted(c);
                        assert_stats_equal(&a, &b);
                }
        }

        /* Rows left in flight go back to pending at the next open, counted. */
        close_db(c);
        open_db(c, NULL);
        a = stats(c);
        b = counted(c);
        assert_stats_equal(&a, &b);
        assert_int_equal(a.outbox[DB_OUTBOX_IN_FLIGHT], 0);
        assert_true(a.certificates > 0);
        assert_true(a.devices[DB_DEVICE_PROVISIONED] > 0);
        assert_true(a.certificates_by_status[DB_CERT_SUPERSEDED] > 0);
}

/* Schema 3 starts its totals from the rows already there (an older database, migrated). */
static void test_totals_from_migration(void **state) {
        struct ctx *c = *state;
        char cmd[1024];
        struct db_stats a, b;

        close_db(c);
        /* Another database in its place: its marker goes too (else refused as replaced, db-identity.c). */
        snprintf(cmd, sizeof(cmd), "cp '%s/db-v1.sqlite' '%s' && rm -f '%s-wal' '%s-shm' '%s.id'", TEST_DATA_DIR,
                 c->path, c->path, c->path, c->path);
        assert_int_equal(system(cmd), 0);
        open_db(c, NULL);
        a = stats(c);
        b = counted(c);
        assert_stats_equal(&a, &b);
        assert_int_equal(a.attempts[DB_OUTCOME_FAILED], 40);   /* tests/data/db-fixtures.txt */
}

/* Reads queued before db_close() are served; after it, refused. The reader's thread is gone after. */
static void test_close_with_reads(void **state) {
        struct ctx *c = *state;
        struct db_req r[4];
        struct slot s[4];
        bool closed = false;

        for (int i = 0; i < 3; i++) {
                r[i] = (struct db_req){ .type = DB_QUERY_STATS };
                submit(c, &r[i], &s[i]);
        }
        db_close(c->db, on_closed, &closed);
        make_lookup(&r[3], "aa");
        submit(c, &r[3], &s[3]);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
        for (int i = 0; i < 3; i++)
                assert_int_equal(r[i].result, 0);
        assert_int_equal(r[3].result, -ESHUTDOWN);
        /* The writer's connection closed last: the WAL was checkpointed and removed. */
        {
                char wal[160];

                snprintf(wal, sizeof(wal), "%s-wal", c->path);
                assert_int_equal(access(wal, F_OK), -1);
        }
}

/* --- the known-serials filter (db-known.c) ------------------------------------- */

static bool filter_ready(struct ctx *c) {
        struct db_metrics m;

        for (int i = 0; i < 5000; i++) {
                db_get_metrics(c->db, &m);
                if (m.known_filter_ready)
                        return true;
                uv_run(&c->loop, UV_RUN_NOWAIT);
                usleep(1000);
        }
        return false;
}

/* Serial @i of a series (@base), in either case of hex. */
static const char *series(char buf[32], uint32_t base, int i, bool upper) {
        snprintf(buf, 32, upper ? "%08X" : "%08x", base + (uint32_t)i * 104729u);
        return buf;
}

/* Issuances of a series, their requests alive until issuances_free(). */
struct issuances {
        int n;
        struct db_req *req;
        struct slot *slot;
        uint8_t (*der)[64];
};

static void issuances_new(struct issuances *b, int n) {
        b->n = n;
        b->req = calloc((size_t)n, sizeof(*b->req));
        b->slot = calloc((size_t)n, sizeof(*b->slot));
        b->der = calloc((size_t)n, sizeof(*b->der));
        assert_non_null(b->req);
        assert_non_null(b->slot);
        assert_non_null(b->der);
}

/* Submits issuance @i of @b for serial @serial (certificate serial from @tag and @i). */
static void issuances_submit(struct ctx *c, struct issuances *b, int i, const char *serial, uint8_t tag) {
        char cs[32];

        snprintf(cs, sizeof(cs), "%02x%06x", tag, i);
        make_issuance(&b->req[i], c, serial, (uint8_t)(i % 250 + 1), cs, b->der[i]);
        submit(c, &b->req[i], &b->slot[i]);
}

static void issuances_wait(struct ctx *c, struct issuances *b, unsigned target) {
        while (c->done_count < target)
                uv_run(&c->loop, UV_RUN_ONCE);
        for (int i = 0; i < b->n; i++)
                assert_int_equal(b->req[i].result, 0);
}

static void issuances_free(struct issuances *b) {
        free(b->req);
        free(b->slot);
        free(b->der);
}

/* How many of @n fresh serials the filter calls unknown. */
static unsigned fresh_unknown(struct ctx *c, uint32_t base, int n) {
        char serial[32];
        unsigned unknown = 0;

        for (int i = 0; i < n; i++) {
                snprintf(serial, sizeof(serial), "%016x", base + (unsigned)i);
                unknown += !db_device_maybe_known(c->db, serial);
        }
        return unknown;
}

/*
 * A serial is known from the moment its issuance is submitted, every serial
 * in the table is known after a restart (the reader's scan), whatever the
 * case of its hex; fresh serials are almost all unknown; a malformed one is
 * left to the lookup.
 */
static void test_known_filter(void **state) {
        struct ctx *c = *state;
        enum { N = 300, FRESH = 10000 };
        struct issuances b;
        char serial[32];
        unsigned unknown;
        struct db_metrics m;

        issuances_new(&b, N);
        assert_true(filter_ready(c));           /* an empty table: ready at once */
        for (int i = 0; i < N; i++) {
                issuances_submit(c, &b, i, series(serial, 0xabc00000u, i, i % 2), 0x02);
                /* Known from its submission on, before it is written. */
                assert_true(db_device_maybe_known(c->db, serial));
        }
        issuances_wait(c, &b, N);

        close_db(c);
        open_db(c, NULL);
        assert_true(filter_ready(c));
        for (int i = 0; i < N; i++)
                /* Stored lower case: found either way. */
                assert_true(db_device_maybe_known(c->db, series(serial, 0xabc00000u, i, !(i % 2))));
        unknown = fresh_unknown(c, 0x5ee00000u, FRESH);
        assert_true(unknown >= FRESH * 99 / 100);
        db_get_metrics(c->db, &m);
        assert_int_equal(m.lookups_unread, unknown);
        /* Not a serial the table could hold: the lookup says what is wrong with it. */
        assert_true(db_device_maybe_known(c->db, "abc"));
        assert_true(db_device_maybe_known(c->db, "zz"));
        assert_true(db_device_maybe_known(c->db, ""));
        /* A lookup of a known one still finds it. */
        {
                struct db_req q;

                make_lookup(&q, series(serial, 0xabc00000u, 0, false));
                assert_int_equal(run(c, &q), 0);
                assert_true(q.lookup.found);
        }
        issuances_free(&b);
}

/*
 * The filter past its capacity (64 serials here): a set 4x larger is filled
 * beside it (the reader's scan once the writes before it completed, the loop's
 * submissions into both) and replaces it. A serial submitted is known at every
 * moment in between, whether the replacement happens at a test (the first
 * 1,000: the serials so far tested after each submission) or at a submission
 * itself (the other 7,000: no test until the end, the loop and the reader
 * left to run);
 * afterwards fresh serials are unknown again.
 */
static void test_known_filter_grows(void **state) {
        struct ctx *c = *state;
        enum { PROBED = 1000, N = 8000, FRESH = 2000 };
        struct db_options o = { .known_filter_min = 64 };
        struct issuances b;
        char serial[32];
        struct db_metrics m;

        issuances_new(&b, N);
        close_db(c);
        open_db(c, &o);
        assert_true(filter_ready(c));
        for (int i = 0; i < PROBED; i++) {
                issuances_submit(c, &b, i, series(serial, 0xc0de0000u, i, false), 0x03);
                /* Every serial submitted so far, at this moment (a sample: all of them is O(N^2)). */
                for (int j = i; j >= 0; j -= 1 + i / 16)
                        assert_true(db_device_maybe_known(c->db, series(serial, 0xc0de0000u, j, false)));
                if (i % 50 == 0)
                        uv_run(&c->loop, UV_RUN_NOWAIT);
        }
        for (int i = PROBED; i < N; i++) {
                issuances_submit(c, &b, i, series(serial, 0xc0de0000u, i, false), 0x03);
                if (i % 25 == 0) {
                        /* The writes done and time for the reader's scan: a successor the last
                         * submissions made is then ready, and the next submission swaps it in. */
                        while (c->done_count < (unsigned)i + 1)
                                uv_run(&c->loop, UV_RUN_ONCE);
                        usleep(3000);
                }
        }
        issuances_wait(c, &b, N);
        assert_true(filter_ready(c));
        db_get_metrics(c->db, &m);
        assert_true(m.known_filter_grown >= 3);  /* 64 -> 260 -> 1044 -> 4176 serials at least */
        for (int i = 0; i < N; i++)
                assert_true(db_device_maybe_known(c->db, series(serial, 0xc0de0000u, i, true)));
        assert_true(fresh_unknown(c, 0xf00d0000u, FRESH) >= FRESH * 95 / 100);
        issuances_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_reads_beside_open_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_after_queued_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_totals_match_group_by, setup, teardown),
                cmocka_unit_test_setup_teardown(test_totals_from_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_with_reads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query_issued, setup, teardown),
                cmocka_unit_test_setup_teardown(test_known_filter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_known_filter_grows, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
