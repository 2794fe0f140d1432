/* SPDX-License-Identifier: MIT */
/* The AWS outbox requests on a real SQLite file: claim order, a bad row alone, progress, requeue, status. */

#include "test-db-util.h"

static int64_t provisioned(struct ctx *c, const char *serial, const char *cert_serial) {
        int64_t cert = 0;

        assert_int_equal(issue(c, serial, (uint8_t)serial[3], cert_serial, &cert), 0);
        assert_int_equal(outcome(c, serial, DB_OUTCOME_PROVISIONED, cert), 0);
        return cert;
}

static cJSON *claim(struct ctx *c, unsigned limit, int64_t now) {
        struct db_req req = { .type = DB_OUTBOX_CLAIM };

        req.claim.limit = limit;
        req.claim.now_ms = now;
        assert_int_equal(run(c, &req), 0);
        assert_non_null(req.claim.items);
        return req.claim.items;
}

static int64_t item_id(const cJSON *items, int i) {
        return (int64_t)cJSON_GetObjectItem(cJSON_GetArrayItem(items, i), "id")->valuedouble;
}

static int complete(struct ctx *c, int64_t id, enum db_outbox_result res, int64_t retry_at, const char *error) {
        struct db_req req = { .type = DB_OUTBOX_COMPLETE };

        req.complete.id = id;
        req.complete.result = res;
        req.complete.retry_at_ms = retry_at;
        snprintf(req.complete.error, sizeof(req.complete.error), "%s", error ? error : "");
        return run(c, &req);
}

static void raw_exec(struct ctx *c, const char *sql) {
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(c->path, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

/* Oldest due first whatever order RETURNING gives; ids, the DER and the device come along. */
static void test_claim_sorted(void **state) {
        struct ctx *c = *state;
        int64_t id[3];
        cJSON *items, *it;

        provisioned(c, "0a01", "0c01");
        provisioned(c, "0a02", "0c02");
        provisioned(c, "0a03", "0c03");
        items = claim(c, 10, 0);
        assert_int_equal(cJSON_GetArraySize(items), 3);
        for (int i = 0; i < 3; i++)
                id[i] = item_id(items, i);
        assert_true(id[0] < id[1] && id[1] < id[2]);
        it = cJSON_GetArrayItem(items, 0);
        assert_string_equal(cJSON_GetObjectItem(it, "model")->valuestring, "ATECC608B-TNGTLS");
        assert_true(cJSON_IsString(cJSON_GetObjectItem(it, "certificate_der")));
        assert_int_equal(strlen(cJSON_GetObjectItem(it, "certificate_der")->valuestring), 128);
        assert_int_equal(strlen(cJSON_GetObjectItem(it, "signer_sha256")->valuestring), 64);
        cJSON_Delete(items);

        /* Due in the order 2, 3, 1. */
        assert_int_equal(complete(c, id[0], DB_OUTBOX_RESULT_RETRY, 3000, "x"), 0);
        assert_int_equal(complete(c, id[1], DB_OUTBOX_RESULT_RETRY, 1000, "x"), 0);
        assert_int_equal(complete(c, id[2], DB_OUTBOX_RESULT_RETRY, 2000, "x"), 0);
        items = claim(c, 10, 5000);
        assert_int_equal(cJSON_GetArraySize(items), 3);
        assert_int_equal(item_id(items, 0), id[1]);
        assert_int_equal(item_id(items, 1), id[2]);
        assert_int_equal(item_id(items, 2), id[0]);
        cJSON_Delete(items);
        /* Only what is due, and at most limit. */
        for (int i = 0; i < 3; i++)
                assert_int_equal(complete(c, id[i], DB_OUTBOX_RESULT_RETRY, 1000 * (i + 1), "x"), 0);
        items = claim(c, 1, 2500);
        assert_int_equal(cJSON_GetArraySize(items), 1);
        assert_int_equal(item_id(items, 0), id[0]);
        cJSON_Delete(items);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_IN_FLIGHT], 1);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_PENDING], 2);
}

/* A row whose certificate is gone is failed with the reason; the other rows are claimed. */
static void test_claim_bad_row_alone(void **state) {
        struct ctx *c = *state;
        cJSON *items;

        provisioned(c, "0b01", "0d01");
        raw_exec(c, "PRAGMA foreign_keys = OFF; INSERT INTO aws_outbox (kind, cert_id, payload, next_attempt_at, "
                    "created_at) VALUES ('register_cert', 9999, '{}', 0, 0); "
                    "UPDATE totals SET n = n + 1 WHERE name = 'aws_outbox.pending'");
        provisioned(c, "0b02", "0d02");
        items = claim(c, 10, 0);
        assert_int_equal(cJSON_GetArraySize(items), 2);
        cJSON_Delete(items);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE cert_id = 9999 AND state = 'failed' "
                                    "AND last_error LIKE '%missing%'"), 1);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_FAILED], 1);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_IN_FLIGHT], 2);
        /* Later claims are not stopped by it. */
        provisioned(c, "0b03", "0d03");
        items = claim(c, 10, 0);
        assert_int_equal(cJSON_GetArraySize(items), 1);
        cJSON_Delete(items);
}

/* Progress is kept in the payload, survives a retry and a restart; done and failed are audited. */
static void test_progress_and_audit(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_OUTBOX_COMPLETE };
        cJSON *items, *p;
        int64_t id, id2;

        provisioned(c, "0e01", "0f01");
        provisioned(c, "0e02", "0f02");
        items = claim(c, 10, 0);
        id = item_id(items, 0);
        id2 = item_id(items, 1);
        cJSON_Delete(items);

        req.complete.id = id;
        req.complete.result = DB_OUTBOX_RESULT_PROGRESS;
        req.complete.step = "create-thing";
        req.complete.cert_arn = "arn:aws:iot:eu-west-1:123456789012:cert/abc";
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM aws_outbox WHERE state = 'in_flight'"), 2);

        req = (struct db_req) { .type = DB_OUTBOX_COMPLETE };
        req.complete.id = id;
        req.complete.result = DB_OUTBOX_RESULT_RETRY;
        req.complete.code = "ThrottlingException";
        req.complete.set_step_attempts = true;
        req.complete.step_attempts = 2;
        snprintf(req.complete.error, sizeof(req.complete.error), "ThrottlingException: Rate exceeded");
        assert_int_equal(run(c, &req), 0);

        /* Progress of a row not in flight is refused. */
        req = (struct db_req) { .type = DB_OUTBOX_COMPLETE };
        req.complete.id = id;
        req.complete.result = DB_OUTBOX_RESULT_PROGRESS;
        req.complete.step = "attach-policy";
        assert_int_equal(run(c, &req), -ESTALE);

        close_db(c);
        open_db(c, NULL);
        items = claim(c, 10, 0);
        assert_int_equal(cJSON_GetArraySize(items), 2);   /* the in_flight one came back too */
        for (int i = 0; i < 2; i++) {
                if (item_id(items, i) != id)
                        continue;
                p = cJSON_GetObjectItem(cJSON_GetArrayItem(items, i), "payload");
                assert_string_equal(cJSON_GetObjectItem(p, "step")->valuestring, "create-thing");
                assert_string_equal(cJSON_GetObjectItem(p, "cert_arn")->valuestring,
                                    "arn:aws:iot:eu-west-1:123456789012:cert/abc");
                assert_string_equal(cJSON_GetObjectItem(p, "code")->valuestring, "ThrottlingException");
                assert_int_equal((int)cJSON_GetObjectItem(p, "step_attempts")->valuedouble, 2);
                assert_string_equal(cJSON_GetObjectItem(p, "serial")->valuestring, "0e01");
        }
        cJSON_Delete(items);

        assert_int_equal(complete(c, id, DB_OUTBOX_RESULT_DONE, 0, NULL), 0);
        assert_int_equal(complete(c, id2, DB_OUTBOX_RESULT_FAILED, 0, "InvalidRequestException: no"), 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'aws.registered' AND serial = '0e01' "
                                    "AND json_extract(details, '$.cert_arn') LIKE 'arn:aws:iot:%'"), 1);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'aws.failed' AND serial = '0e02' "
                                    "AND json_extract(details, '$.error') = 'InvalidRequestException: no'"), 1);
        verify_chain(c, sql_int(c, "SELECT count(*) FROM audit_log"));

        /* Too long a field is refused, not cut. */
        char big[2048];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        req = (struct db_req) { .type = DB_OUTBOX_COMPLETE };
        req.complete.id = id2;
        req.complete.result = DB_OUTBOX_RESULT_PROGRESS;
        req.complete.cert_arn = big;
        assert_int_equal(run(c, &req), -EINVAL);
}

static void test_requeue(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_OUTBOX_REQUEUE };
        cJSON *items;
        int64_t id[3];

        provisioned(c, "1a01", "1b01");
        provisioned(c, "1a02", "1b02");
        provisioned(c, "1a03", "1b03");
        items = claim(c, 10, 0);
        for (int i = 0; i < 3; i++)
                id[i] = item_id(items, i);
        cJSON_Delete(items);
        assert_int_equal(complete(c, id[0], DB_OUTBOX_RESULT_FAILED, 0, "A: a"), 0);
        assert_int_equal(complete(c, id[1], DB_OUTBOX_RESULT_FAILED, 0, "B: b"), 0);
        assert_int_equal(complete(c, id[2], DB_OUTBOX_RESULT_DONE, 0, NULL), 0);

        req.requeue.id = id[2];
        assert_int_equal(run(c, &req), -ESTALE);
        req.requeue.id = 12345;
        assert_int_equal(run(c, &req), -ENOENT);
        req.requeue.id = id[0];
        snprintf(req.requeue.actor, sizeof(req.requeue.actor), "uid:0");
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.requeue.count, 1);
        req.requeue.id = 0;
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.requeue.count, 1);
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.requeue.count, 0);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_PENDING], 2);
        assert_int_equal(stats(c).outbox[DB_OUTBOX_FAILED], 0);
        assert_int_equal(sql_int(c, "SELECT count(*) FROM audit_log WHERE action = 'aws.retry' AND actor = 'uid:0'"), 3);
        items = claim(c, 10, 0);
        assert_int_equal(cJSON_GetArraySize(items), 2);
        cJSON_Delete(items);
}

static void test_query_and_enqueue(void **state) {
        struct ctx *c = *state;
        struct db_req req = { .type = DB_QUERY_OUTBOX };
        cJSON *items, *rep, *errs;
        int64_t id;

        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.outbox.pending, 0);
        assert_true(req.outbox.next_due_ms == INT64_MAX);
        cJSON_Delete(req.outbox.report);

        provisioned(c, "2a01", "2b01");
        provisioned(c, "2a02", "2b02");
        items = claim(c, 1, 0);
        id = item_id(items, 0);
        cJSON_Delete(items);
        {
                struct db_req r = { .type = DB_OUTBOX_COMPLETE };
                r.complete.id = id;
                r.complete.result = DB_OUTBOX_RESULT_FAILED;
                r.complete.step = "create-thing";
                r.complete.code = "ResourceNotFoundException";
                snprintf(r.complete.error, sizeof(r.complete.error), "ResourceNotFoundException: no type");
                assert_int_equal(run(c, &r), 0);
        }

        req = (struct db_req) { .type = DB_QUERY_OUTBOX };
        assert_int_equal(run(c, &req), 0);
        assert_int_equal(req.outbox.pending, 1);
        assert_int_equal(req.outbox.pending_due, 1);
        rep = req.outbox.report;
        assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "failed"), "register_cert/create-thing")
                                 ->valuedouble, 1);
        assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "pending"), "register_cert/start")
                                 ->valuedouble, 1);
        assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "states"), "failed")->valuedouble, 1);
        assert_true(cJSON_IsObject(cJSON_GetObjectItem(rep, "oldest_pending")));
        errs = cJSON_GetObjectItem(rep, "errors");
        assert_int_equal(cJSON_GetArraySize(errs), 1);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(errs, 0), "code")->valuestring,
                            "ResourceNotFoundException");
        cJSON_Delete(rep);
        req = (struct db_req) { .type = DB_QUERY_OUTBOX };
        req.outbox.summary_only = true;
        assert_int_equal(run(c, &req), 0);
        assert_null(req.outbox.report);

        /* register_ca once per signer. */
        req = (struct db_req) { .type = DB_OUTBOX_ENQUEUE };
        req.enqueue.kind = DB_OUTBOX_REGISTER_CA;
        req.enqueue.signer_id = c->signer_id;
        req.enqueue.payload_json = "{\"mode\":\"jitr\"}";
        assert_int_equal(run(c, &req), 0);
        assert_true(req.enqueue.created);
        id = req.enqueue.id;
        assert_int_equal(run(c, &req), 0);
        assert_false(req.enqueue.created);
        assert_int_equal(req.enqueue.id, id);
        req.enqueue.cert_id = 1;
        assert_int_equal(run(c, &req), -EINVAL);
        req.enqueue.cert_id = 0;
        req.enqueue.payload_json = "[1]";
        assert_int_equal(run(c, &req), -EINVAL);
        items = claim(c, 10, 0);
        assert_int_equal(cJSON_GetArraySize(items), 2);
        cJSON_Delete(items);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_claim_sorted, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_claim_bad_row_alone, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_progress_and_audit, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_requeue, setup_open, teardown),
                cmocka_unit_test_setup_teardown(test_query_and_enqueue, setup_open, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
