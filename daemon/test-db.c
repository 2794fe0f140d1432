/* SPDX-License-Identifier: MIT */
/* Unit tests for db.c: every request type on a temporary file, savepoint isolation, crash durability. */

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "audit.h"
#include "db.h"
#include "schema/schema.h"


struct ctx {
        char dir[64];
        char path[128];
        uv_loop_t loop;
        struct db *db;
        unsigned done_count;
        uint8_t *signer_der;
        size_t signer_der_len;
        int64_t signer_id;
};

/* --- plumbing --------------------------------------------------------------- */

static void on_done(struct db_req *req) {
        struct ctx *c = req->userdata;

        c->done_count++;
}

static void wait_done(struct ctx *c, unsigned target) {
        while (c->done_count < target)
                uv_run(&c->loop, UV_RUN_ONCE);
}

static void submit(struct ctx *c, struct db_req *req) {
        req->done = on_done;
        req->userdata = c;
        db_submit(c->db, req);
}

static int run(struct ctx *c, struct db_req *req) {
        unsigned target = c->done_count + 1;

        submit(c, req);
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

/* A self-signed P-256 signer certificate, DER. */
static void make_signer_cert(const char *cn, uint8_t **ret, size_t *ret_len) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        X509_NAME *name = X509_NAME_new();
        unsigned char *der = NULL;
        int len;

        assert_non_null(key);
        assert_non_null(x);
        assert_int_equal(X509_set_version(x, 2), 1);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"provd test", -1, -1, 0);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
        X509_set_subject_name(x, name);
        X509_set_issuer_name(x, name);
        ASN1_TIME_set(X509_getm_notBefore(x), 1700000000);
        ASN1_TIME_set(X509_getm_notAfter(x), 1700000000 + 86400 * 365);
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

static void signer_ensure(struct ctx *c) {
        struct db_req req = { .type = DB_SIGNER_ENSURE };

        snprintf(req.signer.name, sizeof(req.signer.name), "line1");
        req.signer.key_uri = "pkcs11:token=provd;object=signer";
        req.signer.cert_der = c->signer_der;
        req.signer.cert_der_len = c->signer_der_len;
        assert_int_equal(run(c, &req), 0);
        c->signer_id = req.signer.signer_id;
        assert_true(c->signer_id > 0);
}

static int setup(void **state) {
        struct ctx *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        snprintf(c->dir, sizeof(c->dir), "/tmp/test-db-XXXXXX");
        assert_non_null(mkdtemp(c->dir));
        snprintf(c->path, sizeof(c->path), "%s/provd.db", c->dir);
        assert_int_equal(uv_loop_init(&c->loop), 0);
        make_signer_cert("provd test signer", &c->signer_der, &c->signer_der_len);
        *state = c;
        return 0;
}

static int setup_open(void **state) {
        struct ctx *c;

        setup(state);
        c = *state;
        open_db(c, NULL);
        signer_ensure(c);
        return 0;
}

static int teardown(void **state) {
        struct ctx *c = *state;
        char cmd[160];

        if (c->db)
                close_db(c);
        /* Every handle closed: nothing leaks into the loop. */
        assert_int_equal(uv_loop_close(&c->loop), 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        assert_int_equal(system(cmd), 0);
        OPENSSL_free(c->signer_der);
        free(c);
        return 0;
}

/* An issuance request with everything borrowed living in @der (64 bytes). */
static void make_issuance(struct db_req *req, const struct ctx *c, const char *serial, uint8_t key_seed,
                          const char *cert_serial, uint8_t der[64]) {
        memset(req, 0, sizeof(*req));
        req->type = DB_RECORD_ISSUANCE;
        snprintf(req->issuance.serial, sizeof(req->issuance.serial), "%s", serial);
        snprintf(req->issuance.model, sizeof(req->issuance.model), "ATECC608B-TNGTLS");
        snprintf(req->issuance.fw_version, sizeof(req->issuance.fw_version), "1.2.3");
        req->issuance.pubkey[0] = 0x04;
        memset(req->issuance.pubkey + 1, key_seed, DB_PUBKEY_LEN - 1);
        /* Unique bytes per certificate serial: the DB only hashes them. */
        memset(der, 0x30, 64);
        snprintf((char *)der + 2, 60, "%s", cert_serial);
        req->issuance.cert_der = der;
        req->issuance.cert_der_len = 64;
        snprintf(req->issuance.cert_serial, sizeof(req->issuance.cert_serial), "%s", cert_serial);
        req->issuance.not_before_ms = 1700000000000;
        req->issuance.not_after_ms = 253402300799000;
        req->issuance.signer_id = c->signer_id;
        snprintf(req->issuance.thing_name, sizeof(req->issuance.thing_name), "thing-%s", serial);
        snprintf(req->issuance.port, sizeof(req->issuance.port), "/dev/ttyACM0");
        snprintf(req->issuance.slot, sizeof(req->issuance.slot), "hub1-3");
}

static int issue(struct ctx *c, const char *serial, uint8_t key_seed, const char *cert_serial, int64_t *ret_cert) {
        struct db_req req;
        uint8_t der[64];

        make_issuance(&req, c, serial, key_seed, cert_serial, der);
        if (run(c, &req) < 0)
                return req.result;
        if (ret_cert)
                *ret_cert = req.issuance.cert_id;
        return 0;
}

static void make_outcome(struct db_req *req, const char *serial, enum db_outcome o, int64_t cert_id) {
        memset(req, 0, sizeof(*req));
        req->type = DB_RECORD_OUTCOME;
        snprintf(req->outcome.port, sizeof(req->outcome.port), "/dev/ttyACM0");
        snprintf(req->outcome.slot, sizeof(req->outcome.slot), "hub1-3");
        snprintf(req->outcome.serial, sizeof(req->outcome.serial), "%s", serial);
        req->outcome.started_ms = 1700000000000;
        req->outcome.finished_ms = 1700000000300;
        req->outcome.outcome = o;
        snprintf(req->outcome.step, sizeof(req->outcome.step), o == DB_OUTCOME_PROVISIONED ? "done" : "csr");
        req->outcome.timings_json = "{\"hello_ms\":12,\"csr_ms\":140}";
        req->outcome.cert_id = cert_id;
}

static int outcome(struct ctx *c, const char *serial, enum db_outcome o, int64_t cert_id) {
        struct db_req req;

        make_outcome(&req, serial, o, cert_id);
        return run(c, &req);
}

static struct db_lookup_device lookup(struct ctx *c, const char *serial, bool want_der) {
        struct db_req req = { .type = DB_LOOKUP_DEVICE };

        snprintf(req.lookup.serial, sizeof(req.lookup.serial), "%s", serial);
        req.lookup.want_der = want_der;
        assert_int_equal(run(c, &req), 0);
        return req.lookup;
}

static struct db_stats stats(struct ctx *c) {
        struct db_req req = { .type = DB_QUERY_STATS };

        assert_int_equal(run(c, &req), 0);
        return req.stats;
}

/* A second, independent connection to the same file (what provctl does). */
static int64_t sql_int(struct ctx *c, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t v = -1;

        assert_int_equal(sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void verify_chain(struct ctx *c, int64_t expected_rows) {
        sqlite3 *db = NULL;
        int64_t rows = -1, bad = -1;

        assert_int_equal(db_open_readonly(&db, c->path), 0);
        assert_int_equal(audit_verify(db, &rows, &bad), 0);
        assert_int_equal(bad, 0);
        if (expected_rows >= 0)
                assert_int_equal(rows, expected_rows);
        sqlite3_close(db);
}

/* --- tests ---------------------------------------------------------------------- */

static void test_open_reopen(void **state) {
        struct ctx *c = *state;
        struct db_metrics m;

        open_db(c, NULL);
        signer_ensure(c);
        db_get_metrics(c->db, &m);
        assert_int_equal(m.requests, 1);
        assert_int_equal(m.batches, 1);
        assert_int_equal(m.queued, 0);
        close_db(c);

        /* Idempotent: the second open migrates nothing and finds the signer. */
        open_db(c, NULL);
        signer_ensure(c);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM signers"), 1);
        assert_int_equal(sql_int(c, "PRAGMA user_version"), schema_version_latest());
        close_db(c);
}

/*
 * The schema tests use the fixtures in tests/data/; here the same two kinds
 * of damage are made on the spot, so this test needs no data directory.
 */
static void write_text_file(const char *path) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        for (int i = 0; i < 16; i++)
                fputs("provd test: this file is plain text, not an SQLite database.\n", f);
        assert_int_equal(fclose(f), 0);
}

static void make_corrupt_db(struct ctx *c) {
        sqlite3 *raw = NULL;
        uint8_t garbage[1024];
        int fd;

        /* A real provd database, rollback journal so the file is self-contained... */
        assert_int_equal(schema_open(&raw, c->path, NULL, NULL, 0), 0);
        assert_int_equal(sqlite3_exec(raw, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(raw);
        /* ...whose first page (the schema b-tree) is overwritten after the 100-byte header. */
        for (size_t i = 0; i < sizeof(garbage); i++)
                garbage[i] = (uint8_t)(i * 37 + 11);
        fd = open(c->path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, garbage, sizeof(garbage), 100), (ssize_t)sizeof(garbage));
        close(fd);
}

static void test_open_refused(void **state) {
        struct ctx *c = *state;
        char err[256] = "", sql[64];
        struct db *db = NULL;
        sqlite3 *raw;

        write_text_file(c->path);
        assert_int_equal(db_open(&db, &c->loop, c->path, &(struct db_options){ .errbuf = err, .errbuf_size = sizeof(err) }),
                         -EBADMSG);
        assert_null(db);
        assert_non_null(strstr(err, "not an SQLite database"));

        unlink(c->path);
        make_corrupt_db(c);
        assert_int_equal(db_open(&db, &c->loop, c->path, NULL), -EBADMSG);
        assert_int_equal(db_open_readonly(&raw, c->path), -EBADMSG);

        unlink(c->path);
        open_db(c, NULL);
        close_db(c);
        assert_int_equal(sqlite3_open(c->path, &raw), SQLITE_OK);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %u", schema_version_latest() + 1);
        assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(raw);
        err[0] = 0;
        assert_int_equal(db_open(&db, &c->loop, c->path, &(struct db_options){ .errbuf = err, .errbuf_size = sizeof(err) }),
                         -EPROTONOSUPPORT);
        assert_non_null(strstr(err, "newer"));
        assert_int_equal(db_open_readonly_err(&raw, c->path, err, sizeof(err)), -EPROTONOSUPPORT);
}

static void test_signer(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_SIGNER_ENSURE };
        uint8_t *der2;
        size_t der2_len;
        uint8_t junk[32] = { 0x30, 0x03, 0x02, 0x01 };

        /* Same certificate: found, not created. */
        snprintf(req.signer.name, sizeof(req.signer.name), "other name");
        req.signer.key_uri = "file:/etc/provd/signer.key";
        req.signer.cert_der = c->signer_der;
        req.signer.cert_der_len = c->signer_der_len;
        req.signer.enqueue_register_ca = true;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.signer.signer_id, c->signer_id);
        assert_false(req.signer.created);
        assert_int_equal(strlen(req.signer.cert_sha256), 64);

        /* register_ca queued once however often it is asked for. */
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE kind = 'register_ca'"), 1);

        /* A new certificate: a new signer, audited, subject and validity from the certificate. */
        make_signer_cert("second signer", &der2, &der2_len);
        req.signer.cert_der = der2;
        req.signer.cert_der_len = der2_len;
        req.signer.enqueue_register_ca = false;
        snprintf(req.signer.actor, sizeof(req.signer.actor), "uid:1000");
        assert_int_equal(run(c, &req), 0);
        assert_true(req.signer.created);
        assert_true(req.signer.signer_id != c->signer_id);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM signers WHERE subject = 'CN=second signer,O=provd test' "
                                    "AND not_before = 1700000000000"), 1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'signer.add' AND actor = 'uid:1000'"), 1);

        /* Retire: idempotent, audited once. */
        {
                struct db_req r2 = { .type = DB_SIGNER_RETIRE };

                r2.retire.signer_id = req.signer.signer_id;
                assert_int_equal(run(c, &r2), 0);
                assert_int_equal(run(c, &r2), 0);
                assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'signer.retire'"), 1);
                r2.retire.signer_id = 999;
                assert_int_equal(run(c, &r2), -ENOENT);
        }
        assert_int_equal(run(c, &req), 0);
        assert_true(req.signer.retired);
        OPENSSL_free(der2);

        /* No secrets in the database; garbage is no certificate. */
        req.signer.key_uri = "pkcs11:token=provd;object=signer?pin-value=1234";
        assert_int_equal(run(c, &req), -EINVAL);
        assert_non_null(strstr(req.errmsg, "PIN"));
        req.signer.key_uri = "file:/k.pem";
        req.signer.cert_der = junk;
        req.signer.cert_der_len = sizeof(junk);
        assert_int_equal(run(c, &req), -EBADMSG);
        verify_chain(c, 3);
}

static void test_issuance_and_lookup(void **state) {
        struct ctx *c = *state;
        struct db_lookup_device l;
        struct db_req req;
        uint8_t der[64];
        char sha[DB_SHA256_HEX_MAX];

        l = lookup(c, "0123ab", false);
        assert_false(l.found);

        /* Upper-case input is stored lower-case; sha256 computed and returned. */
        make_issuance(&req, c, "0123AB", 7, "7F01", der);
        assert_int_equal(run(c, &req), 0);
        assert_true(req.issuance.cert_id > 0);
        db_sha256_hex(der, sizeof(der), sha);
        assert_string_equal(req.issuance.cert_sha256, sha);
        assert_int_equal(req.issuance.superseded_cert_id, 0);

        l = lookup(c, "0123AB", true);
        assert_true(l.found);
        assert_int_equal(l.state, DB_DEVICE_ISSUED);
        assert_int_equal(l.pubkey[0], 0x04);
        assert_int_equal(l.pubkey[64], 7);
        assert_false(l.reissue_requested);
        assert_int_equal(l.cert_id, req.issuance.cert_id);
        assert_int_equal(l.cert_status, DB_CERT_ISSUED);
        assert_string_equal(l.cert_sha256, sha);
        assert_string_equal(l.thing_name, "thing-0123AB");
        assert_true(l.cert_not_after_ms == 253402300799000);
        assert_int_equal(l.cert_der_len, sizeof(der));
        assert_memory_equal(l.cert_der, der, sizeof(der));
        free(l.cert_der);

        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial = '0123ab'"), 1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'cert.issue' AND serial = '0123ab'"), 1);

        /* A checked sha256 that does not match is refused. */
        make_issuance(&req, c, "0123ab", 7, "7f02", der);
        snprintf(req.issuance.cert_sha256, sizeof(req.issuance.cert_sha256), "%064d", 0);
        assert_int_equal(run(c, &req), -EINVAL);
        assert_non_null(strstr(req.errmsg, "not the SHA-256"));

        /* Same serial, another key: clone, nothing written. */
        make_issuance(&req, c, "0123ab", 8, "7f03", der);
        assert_int_equal(run(c, &req), -EKEYREJECTED);
        assert_non_null(strstr(req.errmsg, "clone"));

        /* Duplicate certificate serial. */
        make_issuance(&req, c, "4455", 9, "7f01", der);
        assert_int_equal(run(c, &req), -EEXIST);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial = '4455'"), 0);

        /* Unknown signer. */
        make_issuance(&req, c, "4455", 9, "7f04", der);
        req.issuance.signer_id = 4242;
        assert_int_equal(run(c, &req), -ENOENT);

        /* Bad input never reaches SQLite. */
        make_issuance(&req, c, "xyz1", 9, "7f05", der);
        assert_int_equal(run(c, &req), -EINVAL);
        make_issuance(&req, c, "4455", 9, "7f05", der);
        memset(req.issuance.model, 'a', sizeof(req.issuance.model));
        assert_int_equal(run(c, &req), -EINVAL);
        assert_non_null(strstr(req.errmsg, "NUL"));
        make_issuance(&req, c, "4455", 9, "7f05", der);
        snprintf(req.issuance.thing_name, sizeof(req.issuance.thing_name), "has space");
        {
                struct db_metrics m0, m1;
                db_get_metrics(c->db, &m0);
                assert_int_equal(run(c, &req), -EINVAL);
                assert_non_null(strstr(req.errmsg, "[a-zA-Z0-9:_-]"));
                /* Refused before the device row was written: no second pass with savepoints. */
                db_get_metrics(c->db, &m1);
                assert_int_equal(m1.isolated_batches, m0.isolated_batches);
        }

        assert_int_equal(sql_int(c, "SELECT count(*) FROM certificates"), 1);
        verify_chain(c, 2);
}

static void test_outcome_provisioned(void **state) {
        struct ctx *c = *state;
        struct db_req req;
        struct db_lookup_device l;
        struct db_stats s;
        int64_t cert = 0, outbox;

        assert_int_equal(issue(c, "a1b2c3", 1, "01", &cert), 0);
        make_outcome(&req, "A1B2C3", DB_OUTCOME_PROVISIONED, cert);
        assert_int_equal(run(c, &req), 0);
        assert_true(req.outcome.attempt_id > 0);
        assert_true(req.outcome.outbox_id > 0);
        outbox = req.outcome.outbox_id;

        l = lookup(c, "a1b2c3", false);
        assert_int_equal(l.state, DB_DEVICE_PROVISIONED);
        assert_int_equal(l.cert_status, DB_CERT_ACTIVE);
        assert_int_equal(sql_int(c, "SELECT proven_at FROM certificates WHERE id = 1"), 1700000000300);
        assert_int_equal(sql_int(c, "SELECT provisioned_at FROM devices WHERE serial = 'a1b2c3'"), 1700000000300);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE kind = 'register_cert' AND cert_id = 1 "
                                    "AND state = 'pending' AND json_extract(payload, '$.thing_name') = 'thing-a1b2c3' "
                                    "AND json_extract(payload, '$.certificate_id') = "
                                    "(SELECT sha256 FROM certificates WHERE id = 1)"), 1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM attempts WHERE outcome = 'provisioned' AND serial = 'a1b2c3' "
                                    "AND json_extract(timings, '$.csr_ms') = 140"), 1);

        /* The same outcome again (a retried report): registration is still queued once. */
        make_outcome(&req, "a1b2c3", DB_OUTCOME_PROVISIONED, cert);
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.outcome.outbox_id, outbox);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox"), 1);
        assert_int_equal(sql_int(c, "SELECT proven_at FROM certificates WHERE id = 1"), 1700000000300);

        /* Other outcomes: an attempts row, nothing else. */
        assert_int_equal(outcome(c, "", DB_OUTCOME_FAILED, 0), 0);
        assert_int_equal(outcome(c, "a1b2c3", DB_OUTCOME_ALREADY_PROVISIONED, cert), 0);
        assert_int_equal(outcome(c, "", DB_OUTCOME_ABORTED, 0), 0);

        /* Refusals. */
        assert_int_equal(outcome(c, "a1b2c3", DB_OUTCOME_PROVISIONED, 0), -EINVAL);
        assert_int_equal(outcome(c, "a1b2c3", DB_OUTCOME_PROVISIONED, 77), -ENOENT);
        assert_int_equal(outcome(c, "ffff", DB_OUTCOME_PROVISIONED, cert), -EINVAL);
        assert_int_equal(outcome(c, "", DB_OUTCOME_FAILED, 77), -ENOENT);
        make_outcome(&req, "", DB_OUTCOME_FAILED, 0);
        req.outcome.timings_json = "[1,2]";
        assert_int_equal(run(c, &req), -EINVAL);
        req.outcome.timings_json = "{not json";
        assert_int_equal(run(c, &req), -EINVAL);
        req.outcome.timings_json = NULL;
        req.outcome.outcome = _DB_OUTCOME_MAX;
        assert_int_equal(run(c, &req), -EINVAL);

        s = stats(c);
        assert_int_equal(s.devices[DB_DEVICE_PROVISIONED], 1);
        assert_int_equal(s.devices[DB_DEVICE_ISSUED], 0);
        assert_int_equal(s.certificates, 1);
        assert_int_equal(s.certificates_by_status[DB_CERT_ACTIVE], 1);
        assert_int_equal(s.attempts[DB_OUTCOME_PROVISIONED], 2);
        assert_int_equal(s.attempts[DB_OUTCOME_FAILED], 1);
        assert_int_equal(s.attempts[DB_OUTCOME_ALREADY_PROVISIONED], 1);
        assert_int_equal(s.attempts[DB_OUTCOME_ABORTED], 1);
        assert_int_equal(s.outbox[DB_OUTBOX_PENDING], 1);
}

static void test_reissue(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_REISSUE_REQUEST };
        struct db_lookup_device l;
        uint8_t der[64];
        int64_t cert1 = 0, cert2;

        snprintf(req.reissue.serial, sizeof(req.reissue.serial), "beef");
        snprintf(req.reissue.actor, sizeof(req.reissue.actor), "uid:0");
        assert_int_equal(run(c, &req), -ENOENT);

        assert_int_equal(issue(c, "beef", 3, "0a01", &cert1), 0);
        assert_int_equal(outcome(c, "beef", DB_OUTCOME_PROVISIONED, cert1), 0);
        assert_int_equal(run(c, &req), 0);
        l = lookup(c, "beef", false);
        assert_true(l.reissue_requested);
        assert_int_equal(l.state, DB_DEVICE_PROVISIONED);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'device.reissue_request' "
                                    "AND actor = 'uid:0' AND serial = 'beef'"), 1);

        /* The new certificate supersedes the old one. */
        make_issuance(&req, c, "beef", 3, "0a02", der);
        assert_int_equal(run(c, &req), 0);
        cert2 = req.issuance.cert_id;
        assert_int_equal(req.issuance.superseded_cert_id, cert1);
        l = lookup(c, "beef", false);
        assert_int_equal(l.cert_id, cert2);
        assert_int_equal(l.state, DB_DEVICE_ISSUED);
        assert_true(l.reissue_requested);

        /* A late proof of the old certificate is stale; the new one clears the flag. */
        assert_int_equal(outcome(c, "beef", DB_OUTCOME_PROVISIONED, cert1), -ESTALE);
        assert_int_equal(outcome(c, "beef", DB_OUTCOME_PROVISIONED, cert2), 0);
        l = lookup(c, "beef", false);
        assert_false(l.reissue_requested);
        assert_int_equal(l.state, DB_DEVICE_PROVISIONED);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM certificates WHERE status = 'superseded'"), 1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE kind = 'register_cert'"), 2);
}

static void test_clone(void **state) {
        struct ctx *c = *state;
        struct db_req req;
        int64_t cert = 0;
        char stored[DB_SHA256_HEX_MAX], presented[DB_SHA256_HEX_MAX], sql[512];
        uint8_t key[DB_PUBKEY_LEN];

        assert_int_equal(issue(c, "c10e", 5, "0b01", &cert), 0);
        assert_int_equal(outcome(c, "c10e", DB_OUTCOME_PROVISIONED, cert), 0);

        make_outcome(&req, "c10e", DB_OUTCOME_CLONE_SUSPECTED, 0);
        req.outcome.have_presented_pubkey = true;
        req.outcome.presented_pubkey[0] = 0x04;
        memset(req.outcome.presented_pubkey + 1, 6, DB_PUBKEY_LEN - 1);
        snprintf(req.outcome.error, sizeof(req.outcome.error), "serial known with another key");
        assert_int_equal(run(c, &req), 0);

        key[0] = 0x04;
        memset(key + 1, 5, DB_PUBKEY_LEN - 1);
        db_sha256_hex(key, sizeof(key), stored);
        db_sha256_hex(req.outcome.presented_pubkey, DB_PUBKEY_LEN, presented);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_log WHERE action = 'device.clone_suspected' "
                                   "AND serial = 'c10e' AND json_extract(details, '$.stored_key_sha256') = '%s' "
                                   "AND json_extract(details, '$.presented_key_sha256') = '%s'", stored, presented);
        assert_int_equal(sql_int(c, sql), 1);
        assert_int_equal(lookup(c, "c10e", false).state, DB_DEVICE_CLONE_SUSPECTED);

        /* No certificate for a quarantined serial until an operator asks for one. */
        assert_int_equal(issue(c, "c10e", 5, "0b02", NULL), -EPERM);
        {
                struct db_req r2 = { .type = DB_REISSUE_REQUEST };

                snprintf(r2.reissue.serial, sizeof(r2.reissue.serial), "c10e");
                snprintf(r2.reissue.actor, sizeof(r2.reissue.actor), "uid:0");
                assert_int_equal(run(c, &r2), 0);
        }
        assert_int_equal(issue(c, "c10e", 5, "0b02", NULL), 0);

        /* An unknown serial showing up as a clone is audited all the same. */
        make_outcome(&req, "dddd", DB_OUTCOME_CLONE_SUSPECTED, 0);
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'device.clone_suspected' "
                                    "AND serial = 'dddd' AND json_type(details, '$.stored_key_sha256') = 'null'"), 1);
        verify_chain(c, -1);
}

static void test_audit_request(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_AUDIT };

        snprintf(req.audit.actor, sizeof(req.audit.actor), "uid:1000");
        snprintf(req.audit.action, sizeof(req.audit.action), "aws.drain");
        req.audit.details_json = "{\"queued\":12}";
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.audit.id, 2);      /* 1 is signer.add */

        snprintf(req.audit.serial, sizeof(req.audit.serial), "ABCD");
        req.audit.details_json = NULL;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE id = 3 AND serial = 'abcd' AND details = '{}'"), 1);

        /* Refused by the schema: the chain head must not move. */
        req.audit.details_json = "[]";
        assert_int_equal(run(c, &req), -EINVAL);
        snprintf(req.audit.action, sizeof(req.audit.action), "Not An Action");
        req.audit.details_json = NULL;
        assert_int_equal(run(c, &req), -EINVAL);
        snprintf(req.audit.action, sizeof(req.audit.action), "aws.drain");
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.audit.id, 4);
        verify_chain(c, 4);
}

/* One batch of three: the middle one violates a constraint, the others commit. */
static void test_savepoint_isolation(void **state) {
        struct ctx *c = *state;
        struct db_req req[3];
        uint8_t der[3][64];
        unsigned target;

        close_db(c);
        /* Hold the batch open until all three are queued (no timing assumption: 60 s cap). */
        open_db(c, &(struct db_options){ .max_batch = 3, .batch_delay_us = 60 * 1000 * 1000 });

        make_issuance(&req[0], c, "1111", 1, "aa01", der[0]);
        make_issuance(&req[1], c, "2222", 2, "aa01", der[1]);   /* duplicate certificate serial */
        make_issuance(&req[2], c, "3333", 3, "aa03", der[2]);
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);

        assert_int_equal(req[0].batch, req[1].batch);
        assert_int_equal(req[1].batch, req[2].batch);
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -EEXIST);
        assert_non_null(strstr(req[1].errmsg, "already recorded"));
        assert_int_equal(req[2].result, 0);

        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial IN ('1111', '3333')"), 2);
        /* Rolled back whole: not even the device row the failed request inserted first. */
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial = '2222'"), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE state = 'issued'"), 2);
        /* And the audit chain skipped it without a gap. */
        verify_chain(c, 3);

        /* The ids handed back are those of the pass that committed. */
        char q[160];
        snprintf(q, sizeof(q), "SELECT count(*) FROM certificates WHERE id = %" PRId64 " AND device_serial = '1111'",
                 req[0].issuance.cert_id);
        assert_int_equal(sql_int(c, q), 1);
        snprintf(q, sizeof(q), "SELECT count(*) FROM certificates WHERE id = %" PRId64 " AND device_serial = '3333'",
                 req[2].issuance.cert_id);
        assert_int_equal(sql_int(c, q), 1);
        assert_int_equal(req[1].issuance.cert_id, 0);

        struct db_metrics m;
        db_get_metrics(c->db, &m);
        assert_int_equal(m.max_batch_seen, 3);
        assert_int_equal(m.requests_failed, 1);
        /* The batch ran without savepoints first, then again with one per request. */
        assert_int_equal(m.isolated_batches, 1);
}

/* A batch where nothing fails commits in one pass; a failing read does not make it run again. */
static void test_batch_fast_path(void **state) {
        struct ctx *c = *state;
        struct db_req req[3];
        uint8_t der[2][64];
        unsigned target;
        struct db_metrics m;

        close_db(c);
        open_db(c, &(struct db_options){ .max_batch = 3, .batch_delay_us = 60 * 1000 * 1000 });

        make_issuance(&req[0], c, "4444", 1, "bb01", der[0]);
        /* Refused before it writes anything. */
        req[1] = (struct db_req){ .type = DB_AUDIT };
        snprintf(req[1].audit.actor, sizeof(req[1].audit.actor), "uid:0");
        snprintf(req[1].audit.action, sizeof(req[1].audit.action), "test.refused");
        snprintf(req[1].audit.serial, sizeof(req[1].audit.serial), "not hex");
        make_issuance(&req[2], c, "5555", 2, "bb02", der[1]);
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);

        assert_int_equal(req[0].batch, req[2].batch);
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -EINVAL);
        assert_int_equal(req[2].result, 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial IN ('4444', '5555')"), 2);
        verify_chain(c, 3);     /* signer.add, two cert.issue */
        /* The new device points at its certificate. */
        char q[160];
        snprintf(q, sizeof(q), "SELECT count(*) FROM devices WHERE serial = '4444' AND state = 'issued' "
                               "AND current_cert_id = %" PRId64, req[0].issuance.cert_id);
        assert_int_equal(sql_int(c, q), 1);
        db_get_metrics(c->db, &m);
        assert_int_equal(m.requests_failed, 1);
        assert_int_equal(m.isolated_batches, 0);
}

/* A request refused before it changed a row (a clone found by the device lookup) fails alone, in one pass. */
static void test_batch_refusal_without_writes(void **state) {
        struct ctx *c = *state;
        struct db_req req[3];
        uint8_t der[3][64];
        unsigned target;
        struct db_metrics m;

        close_db(c);
        open_db(c, &(struct db_options){ .max_batch = 3, .batch_delay_us = 60 * 1000 * 1000 });
        /* Alone first (max_batch 3 would wait for two more: fill the batch with audit rows). */
        make_issuance(&req[0], c, "9999", 1, "dd00", der[0]);
        req[1] = (struct db_req){ .type = DB_AUDIT };
        snprintf(req[1].audit.actor, sizeof(req[1].audit.actor), "uid:0");
        snprintf(req[1].audit.action, sizeof(req[1].audit.action), "test.fill");
        req[2] = req[1];
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);
        assert_int_equal(req[0].result, 0);

        make_issuance(&req[0], c, "aaaa", 2, "dd01", der[0]);
        make_issuance(&req[1], c, "9999", 3, "dd02", der[1]);   /* same serial, another key */
        make_issuance(&req[2], c, "bbbb", 4, "dd03", der[2]);
        target = c->done_count + 3;
        for (int i = 0; i < 3; i++)
                submit(c, &req[i]);
        wait_done(c, target);

        assert_int_equal(req[0].batch, req[2].batch);
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -EKEYREJECTED);
        assert_non_null(strstr(req[1].errmsg, "clone suspected"));
        assert_int_equal(req[2].result, 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices WHERE serial IN ('9999', 'aaaa', 'bbbb')"), 3);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM certificates WHERE serial_hex = 'dd02'"), 0);
        verify_chain(c, 6);     /* signer.add, two test.fill, three cert.issue */
        db_get_metrics(c->db, &m);
        assert_int_equal(m.requests_failed, 1);
        assert_int_equal(m.isolated_batches, 0);
}

static void test_query_devices(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_QUERY_DEVICES };
        cJSON *d, *pem;
        int64_t cert = 0;
        char buf[16];

        for (int i = 0; i < 5; i++) {
                snprintf(buf, sizeof(buf), "00%02x", i);
                assert_int_equal(issue(c, buf, (uint8_t)(i + 1), buf, &cert), 0);
                if (i % 2 == 0)
                        assert_int_equal(outcome(c, buf, DB_OUTCOME_PROVISIONED, cert), 0);
        }

        req.devices.include_pem = true;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.devices.devices), 5);
        d = cJSON_GetArrayItem(req.devices.devices, 0);
        assert_non_null(cJSON_GetObjectItem(d, "serial"));
        assert_non_null(cJSON_GetObjectItem(d, "cert_sha256"));
        assert_non_null(cJSON_GetObjectItem(d, "thing_name"));
        assert_non_null(cJSON_GetObjectItem(d, "provisioned_at"));
        pem = cJSON_GetObjectItem(d, "certificate_pem");
        assert_true(cJSON_IsString(pem));
        assert_non_null(strstr(pem->valuestring, "-----BEGIN CERTIFICATE-----\n"));
        cJSON_Delete(req.devices.devices);

        req.devices.include_pem = false;
        req.devices.limit = 2;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.devices.devices), 2);
        assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(req.devices.devices, 0), "certificate_pem"));
        cJSON_Delete(req.devices.devices);

        req.devices.limit = 0;
        req.devices.since_ms = INT64_MAX;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.devices.devices), 0);
        assert_false(req.devices.more);
        cJSON_Delete(req.devices.devices);

        /*
         * Paging on (updated_at, serial): five devices changed in the same
         * millisecond, pages of two, each page starting after the last row of
         * the one before, give every device once, in order.
         */
        {
                sqlite3 *raw = NULL;
                assert_int_equal(sqlite3_open(c->path, &raw), SQLITE_OK);
                sqlite3_busy_timeout(raw, 5000);
                assert_int_equal(sqlite3_exec(raw, "UPDATE devices SET updated_at = 1700000000000", NULL, NULL, NULL),
                                 SQLITE_OK);
                sqlite3_close(raw);
        }
        static const unsigned page_sizes[] = { 2, 2, 1 };
        unsigned seen = 0;
        req.devices = (struct db_query_devices){ .since_ms = 1, .limit = 2 };
        for (unsigned page = 0; page < 3; page++) {
                assert_int_equal(run(c, &req), 0);
                assert_int_equal(cJSON_GetArraySize(req.devices.devices), page_sizes[page]);
                assert_int_equal(req.devices.more, page < 2);
                cJSON_ArrayForEach(d, req.devices.devices) {
                        snprintf(buf, sizeof(buf), "00%02x", seen++);
                        assert_string_equal(cJSON_GetObjectItem(d, "serial")->valuestring, buf);
                        assert_int_equal((int64_t)cJSON_GetObjectItem(d, "updated_at")->valuedouble, 1700000000000);
                }
                d = cJSON_GetArrayItem(req.devices.devices, cJSON_GetArraySize(req.devices.devices) - 1);
                req.devices.since_ms = (int64_t)cJSON_GetObjectItem(d, "updated_at")->valuedouble;
                snprintf(req.devices.after_serial, sizeof(req.devices.after_serial), "%s",
                         cJSON_GetObjectItem(d, "serial")->valuestring);
                cJSON_Delete(req.devices.devices);
                req.devices.devices = NULL;
        }
        assert_int_equal(seen, 5);
        /* Past the last one: nothing, and no further page. */
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.devices.devices), 0);
        assert_false(req.devices.more);
        cJSON_Delete(req.devices.devices);

        snprintf(req.devices.after_serial, sizeof(req.devices.after_serial), "zz");
        assert_int_equal(run(c, &req), -EINVAL);
}

static void test_outbox(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_OUTBOX_CLAIM };
        int64_t cert = 0, id;
        cJSON *item, *pem;

        assert_int_equal(issue(c, "0b0b", 1, "0c01", &cert), 0);
        assert_int_equal(outcome(c, "0b0b", DB_OUTCOME_PROVISIONED, cert), 0);

        req.claim.limit = 10;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.claim.items), 1);
        item = cJSON_GetArrayItem(req.claim.items, 0);
        assert_string_equal(cJSON_GetObjectItem(item, "kind")->valuestring, "register_cert");
        assert_int_equal((int)cJSON_GetObjectItem(item, "attempts")->valuedouble, 1);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(item, "payload"), "thing_name")->valuestring,
                            "thing-0b0b");
        pem = cJSON_GetObjectItem(item, "certificate_pem");
        assert_true(cJSON_IsString(pem));
        id = (int64_t)cJSON_GetObjectItem(item, "id")->valuedouble;
        cJSON_Delete(req.claim.items);

        /* Claimed rows are not handed out twice. */
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.claim.items), 0);
        cJSON_Delete(req.claim.items);

        /* A crash while in flight: back to pending at the next open. */
        close_db(c);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE state = 'in_flight'"), 1);
        open_db(c, NULL);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_PENDING], 1);

        /* Retry later: not due now, due at its time. */
        assert_int_equal(run(c, &req), 0);
        cJSON_Delete(req.claim.items);
        {
                struct db_req r2 = { .type = DB_OUTBOX_COMPLETE };

                r2.complete.id = id;
                r2.complete.result = DB_OUTBOX_RESULT_RETRY;
                r2.complete.retry_at_ms = INT64_MAX / 2;
                snprintf(r2.complete.error, sizeof(r2.complete.error), "ThrottlingException");
                assert_int_equal(run(c, &r2), 0);
                assert_int_equal(run(c, &r2), -ESTALE);

                assert_int_equal(run(c, &req), 0);
                assert_int_equal(cJSON_GetArraySize(req.claim.items), 0);
                cJSON_Delete(req.claim.items);
                req.claim.now_ms = INT64_MAX / 2;
                assert_int_equal(run(c, &req), 0);
                assert_int_equal(cJSON_GetArraySize(req.claim.items), 1);
                cJSON_Delete(req.claim.items);

                r2.complete.result = DB_OUTBOX_RESULT_DONE;
                assert_int_equal(run(c, &r2), 0);
                assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE state = 'done' AND "
                                            "done_at IS NOT NULL AND attempts = 3 AND last_error IS NULL"), 1);
                r2.complete.id = 999;
                assert_int_equal(run(c, &r2), -ENOENT);
        }

        /* A second provisioned report after done does not queue it again. */
        assert_int_equal(outcome(c, "0b0b", DB_OUTCOME_PROVISIONED, cert), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox"), 1);

        /* register_ca rows carry the signer certificate. */
        {
                struct db_req r3 = { .type = DB_SIGNER_ENSURE };

                snprintf(r3.signer.name, sizeof(r3.signer.name), "line1");
                r3.signer.key_uri = "file:/k.pem";
                r3.signer.cert_der = c->signer_der;
                r3.signer.cert_der_len = c->signer_der_len;
                r3.signer.enqueue_register_ca = true;
                assert_int_equal(run(c, &r3), 0);
        }
        req.claim.now_ms = 0;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(cJSON_GetArraySize(req.claim.items), 1);
        item = cJSON_GetArrayItem(req.claim.items, 0);
        assert_string_equal(cJSON_GetObjectItem(item, "kind")->valuestring, "register_ca");
        assert_true(cJSON_IsString(cJSON_GetObjectItem(item, "certificate_pem")));
        cJSON_Delete(req.claim.items);

        req.claim.limit = 0;
        assert_int_equal(run(c, &req), -EINVAL);
}

static void test_submit_after_close(void **state) {
        struct ctx *c = *state;
        struct db_req req[2] = { { .type = DB_QUERY_STATS }, { .type = DB_QUERY_STATS } };
        bool closed = false;

        /* Queued before close: still served. After: -ESHUTDOWN. */
        submit(c, &req[0]);
        db_close(c->db, on_closed, &closed);
        submit(c, &req[1]);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
        assert_int_equal(c->done_count, 1 + 2);       /* + signer_ensure in setup */
        assert_int_equal(req[0].result, 0);
        assert_int_equal(req[1].result, -ESHUTDOWN);
}

static void test_checkpoint_thread(void **state) {
        struct ctx *c = *state;
        struct db_metrics m;
        char serial[16], wal[160];
        struct stat st;

        /* One issuance per commit, each a few WAL frames: well past a 500-frame threshold. */
        close_db(c);
        open_db(c, &(struct db_options){ .checkpoint_pages = 500 });
        for (unsigned i = 0; i < 400; i++) {
                snprintf(serial, sizeof(serial), "%08x", i);
                assert_int_equal(issue(c, serial, (uint8_t)(i | 1), serial, NULL), 0);
        }
        /* The checkpointer runs on its own: wait for it (the cap only turns a hang into a failure). */
        for (unsigned waited_ms = 0;; waited_ms += 10) {
                db_get_metrics(c->db, &m);
                if (m.checkpoints > 0)
                        break;
                if (waited_ms > 60000)
                        fail_msg("no checkpoint after 400 commits");
                uv_sleep(10);
        }
        assert_int_equal(m.checkpoint_failures, 0);

        /* Everything still there for a reader; close checkpoints the rest and removes the WAL. */
        assert_int_equal(sql_int(c, "SELECT count(*) FROM certificates"), 400);
        close_db(c);
        snprintf(wal, sizeof(wal), "%s-wal", c->path);
        assert_int_equal(stat(wal, &st), -1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM devices"), 400);
        verify_chain(c, 401);
}

/* --- crash durability ------------------------------------------------------ */

#define CRASH_SLOTS 64

struct crash_slot {
        struct db_req req;
        uint8_t der[64];
        struct crash_ctx *cc;
};

struct crash_ctx {
        struct ctx *c;
        int fd;
        unsigned next;
        unsigned acked;
        unsigned die_after;
        bool use_sigkill;
        struct crash_slot slots[CRASH_SLOTS];
};

static void crash_done(struct db_req *req);

static void crash_submit(struct crash_ctx *cc, struct crash_slot *s) {
        char serial[32], cert_serial[32];

        snprintf(serial, sizeof(serial), "%08x", cc->next);
        snprintf(cert_serial, sizeof(cert_serial), "%08x", cc->next);
        cc->next++;
        make_issuance(&s->req, cc->c, serial, (uint8_t)(cc->next | 1), cert_serial, s->der);
        s->req.done = crash_done;
        s->req.userdata = s;
}

static void crash_done(struct db_req *req) {
        struct crash_slot *s = req->userdata;
        struct crash_ctx *cc = s->cc;
        char line[80];
        int n;

        if (req->result == 0) {
                /* Acknowledged: it must survive whatever happens next. */
                n = snprintf(line, sizeof(line), "%s %lld\n", req->issuance.serial,
                             (long long)req->issuance.cert_id);
                if (write(cc->fd, line, (size_t)n) != n)
                        _exit(3);
                cc->acked++;
        }
        if (cc->acked >= cc->die_after) {
                if (cc->use_sigkill)
                        raise(SIGKILL);
                _exit(0);
        }
        crash_submit(cc, s);
        db_submit(cc->c->db, &s->req);
}

static void crash_child(struct ctx *c, int fd, bool use_sigkill) {
        static struct crash_ctx cc;
        static uv_loop_t loop;   /* not the parent's: its epoll fd is shared across fork() */

        cc = (struct crash_ctx){ .c = c, .fd = fd, .die_after = 700, .use_sigkill = use_sigkill };
        if (uv_loop_init(&loop) < 0 ||
            db_open(&c->db, &loop, c->path, &(struct db_options){ .max_batch = 32 }) < 0)
                _exit(2);
        for (unsigned i = 0; i < CRASH_SLOTS; i++) {
                cc.slots[i].cc = &cc;
                crash_submit(&cc, &cc.slots[i]);
                db_submit(c->db, &cc.slots[i].req);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        _exit(4);
}

static void check_crash(struct ctx *c, bool use_sigkill) {
        char line[80], serial[40];
        long long cert_id;
        unsigned acked = 0;
        int pipefd[2], status;
        FILE *in;
        pid_t pid;
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t rows = 0, bad = -1;

        /* The parent holds no database connection across fork(). */
        close_db(c);
        assert_int_equal(pipe(pipefd), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(pipefd[0]);
                crash_child(c, pipefd[1], use_sigkill);
        }
        close(pipefd[1]);

        assert_int_equal(db_open_readonly(&db, c->path), 0);
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM devices d JOIN certificates c "
                                                "ON c.id = d.current_cert_id WHERE d.serial = ?1 AND c.id = ?2 "
                                                "AND c.status = 'issued'", -1, &st, NULL), SQLITE_OK);
        in = fdopen(pipefd[0], "r");
        assert_non_null(in);
        /* Read everything first: the child dies mid-stream. */
        {
                char *all = NULL;
                size_t len = 0;
                FILE *mem = open_memstream(&all, &len);
                int ch;

                while ((ch = fgetc(in)) != EOF)
                        fputc(ch, mem);
                fclose(mem);
                fclose(in);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                if (use_sigkill) {
                        assert_true(WIFSIGNALED(status));
                        assert_int_equal(WTERMSIG(status), SIGKILL);
                } else {
                        assert_true(WIFEXITED(status));
                        assert_int_equal(WEXITSTATUS(status), 0);
                }
                in = fmemopen(all, len, "r");
                assert_non_null(in);
                while (fgets(line, sizeof(line), in)) {
                        assert_int_equal(sscanf(line, "%39s %lld", serial, &cert_id), 2);
                        sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
                        sqlite3_bind_int64(st, 2, cert_id);
                        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
                        if (sqlite3_column_int(st, 0) != 1)
                                fail_msg("acknowledged issuance %s (cert %lld) lost", serial, cert_id);
                        sqlite3_reset(st);
                        acked++;
                }
                fclose(in);
                free(all);
        }
        assert_true(acked >= 700);
        sqlite3_finalize(st);

        /* The file is consistent and the chain intact after the crash. */
        assert_int_equal(audit_verify(db, &rows, &bad), 0);
        assert_true(rows >= (int64_t)acked);
        sqlite3_close(db);

        /* And the daemon opens it again and keeps going. */
        open_db(c, NULL);
        assert_int_equal(issue(c, "fffffffe", 1, "fffffffe", NULL), 0);
}

static void test_crash_sigkill(void **state) {
        check_crash(*state, true);
}

static void test_crash_exit(void **state) {
        check_crash(*state, false);
}

static void test_strings(void **state) {
        assert_string_equal(db_device_state_to_string(DB_DEVICE_CLONE_SUSPECTED), "clone_suspected");
        assert_string_equal(db_cert_status_to_string(DB_CERT_SUPERSEDED), "superseded");
        assert_string_equal(db_outcome_to_string(DB_OUTCOME_ALREADY_PROVISIONED), "already_provisioned");
        assert_string_equal(db_outbox_state_to_string(DB_OUTBOX_IN_FLIGHT), "in_flight");
        assert_string_equal(db_outbox_kind_to_string(DB_OUTBOX_REGISTER_CA), "register_ca");
        assert_string_equal(db_outcome_to_string(_DB_OUTCOME_MAX), "?");
        assert_int_equal(db_errno(SQLITE_FULL), -ENOSPC);
}

static void test_pem(void **state) {
        uint8_t der[100];
        char *pem;

        for (size_t i = 0; i < sizeof(der); i++)
                der[i] = (uint8_t)i;
        pem = db_der_to_pem(der, sizeof(der));
        assert_non_null(pem);
        /* 100 bytes: lines of 64 base64 characters (48 bytes), then the rest. */
        assert_string_equal(pem, "-----BEGIN CERTIFICATE-----\n"
                                 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\n"
                                 "MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f\n"
                                 "YGFiYw==\n"
                                 "-----END CERTIFICATE-----\n");
        free(pem);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_pem),
                cmocka_unit_test_setup_teardown(test_open_reopen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_signer, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_issuance_and_lookup, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_outcome_provisioned, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_reissue, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_clone, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_audit_request, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_savepoint_isolation, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_batch_fast_path, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_batch_refusal_without_writes, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_query_devices, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_outbox, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_submit_after_close, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_checkpoint_thread, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_crash_sigkill, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_crash_exit, setup_open, teardown),
        };

        /* TEST_FILTER=test_crash* runs a subset. */
        if (getenv("TEST_FILTER"))
                cmocka_set_test_filter(getenv("TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
