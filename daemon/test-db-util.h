/* SPDX-License-Identifier: MIT */
/* Shared plumbing of the database's unit tests (test-db.c, test-db-engine.c): a loop, a file, requests. */
#ifndef PROVD_TEST_DB_UTIL_H
#define PROVD_TEST_DB_UTIL_H

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

/* Each test file uses a part of these. */
#define _test_unused_ __attribute__((unused))

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

static _test_unused_ void on_done(struct db_req *req) {
        struct ctx *c = req->userdata;

        c->done_count++;
}

static _test_unused_ void wait_done(struct ctx *c, unsigned target) {
        while (c->done_count < target)
                uv_run(&c->loop, UV_RUN_ONCE);
}

static _test_unused_ void submit(struct ctx *c, struct db_req *req) {
        req->done = on_done;
        req->userdata = c;
        db_submit(c->db, req);
}

static _test_unused_ int run(struct ctx *c, struct db_req *req) {
        unsigned target = c->done_count + 1;

        submit(c, req);
        wait_done(c, target);
        return req->result;
}

static _test_unused_ void open_db(struct ctx *c, const struct db_options *opt) {
        char err[256] = "";
        struct db_options o = opt ? *opt : (struct db_options){};

        o.errbuf = err;
        o.errbuf_size = sizeof(err);
        if (db_open(&c->db, &c->loop, c->path, &o) < 0)
                fail_msg("db_open: %s", err);
}

static _test_unused_ void on_closed(struct db *db, void *userdata) {
        *(bool *)userdata = true;
}

static _test_unused_ void close_db(struct ctx *c) {
        bool closed = false;

        db_close(c->db, on_closed, &closed);
        while (!closed)
                uv_run(&c->loop, UV_RUN_ONCE);
        c->db = NULL;
}

/* A self-signed P-256 signer certificate, DER. */
static _test_unused_ void make_signer_cert(const char *cn, uint8_t **ret, size_t *ret_len) {
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

static _test_unused_ void signer_ensure(struct ctx *c) {
        struct db_req req = { .type = DB_SIGNER_ENSURE };

        snprintf(req.signer.name, sizeof(req.signer.name), "line1");
        req.signer.key_uri = "pkcs11:token=provd;object=signer";
        req.signer.cert_der = c->signer_der;
        req.signer.cert_der_len = c->signer_der_len;
        assert_int_equal(run(c, &req), 0);
        c->signer_id = req.signer.signer_id;
        assert_true(c->signer_id > 0);
}

static _test_unused_ int setup(void **state) {
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

static _test_unused_ int setup_open(void **state) {
        struct ctx *c;

        setup(state);
        c = *state;
        open_db(c, NULL);
        signer_ensure(c);
        return 0;
}

static _test_unused_ int teardown(void **state) {
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
static _test_unused_ void make_issuance(struct db_req *req, const struct ctx *c, const char *serial, uint8_t key_seed,
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

static _test_unused_ int issue(struct ctx *c, const char *serial, uint8_t key_seed, const char *cert_serial, int64_t *ret_cert) {
        struct db_req req;
        uint8_t der[64];

        make_issuance(&req, c, serial, key_seed, cert_serial, der);
        if (run(c, &req) < 0)
                return req.result;
        if (ret_cert)
                *ret_cert = req.issuance.cert_id;
        return 0;
}

static _test_unused_ void make_outcome(struct db_req *req, const char *serial, enum db_outcome o, int64_t cert_id) {
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

static _test_unused_ int outcome(struct ctx *c, const char *serial, enum db_outcome o, int64_t cert_id) {
        struct db_req req;

        make_outcome(&req, serial, o, cert_id);
        return run(c, &req);
}

static _test_unused_ struct db_lookup_device lookup(struct ctx *c, const char *serial, bool want_der) {
        struct db_req req = { .type = DB_LOOKUP_DEVICE };

        snprintf(req.lookup.serial, sizeof(req.lookup.serial), "%s", serial);
        req.lookup.want_der = want_der;
        assert_int_equal(run(c, &req), 0);
        return req.lookup;
}

static _test_unused_ struct db_stats stats(struct ctx *c) {
        struct db_req req = { .type = DB_QUERY_STATS };

        assert_int_equal(run(c, &req), 0);
        return req.stats;
}

/* A second, independent connection to the same file (what provctl does). */
static _test_unused_ int64_t sql_int(struct ctx *c, const char *sql) {
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

static _test_unused_ void verify_chain(struct ctx *c, int64_t expected_rows) {
        sqlite3 *db = NULL;
        int64_t rows = -1, bad = -1;

        assert_int_equal(db_open_readonly(&db, c->path), 0);
        assert_int_equal(audit_verify(db, &rows, &bad), 0);
        assert_int_equal(bad, 0);
        if (expected_rows >= 0)
                assert_int_equal(rows, expected_rows);
        sqlite3_close(db);
}


#endif
