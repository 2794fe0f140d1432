/* SPDX-License-Identifier: MIT */
/* Unit tests for the database's requests: every request type on a temporary file, opening and refusals. */

#include "test-db-util.h"

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
                cmocka_unit_test_setup_teardown(test_query_devices, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_outbox, setup_open, teardown),
        };

        /* TEST_FILTER=test_crash* runs a subset. */
        if (getenv("TEST_FILTER"))
                cmocka_set_test_filter(getenv("TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
