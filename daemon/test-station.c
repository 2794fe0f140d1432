/* SPDX-License-Identifier: MIT */
/* The session state machine against a simulated board on a socketpair, with a stub environment and database. */

#include "test-station-harness.h"

/* --- tests ----------------------------------------------------------------------- */

/* Every step, in order: HELLO, lookup, GET_CSR, issue, record, PUT_CERT, PUT_CONFIG, PROVE, verify, commit, RESULT. */
static void test_provisioned(void **state) {
        struct fx *f = *state;

        plug(f);
        assert_true(run_until(f, is_over));
        assert_string_equal(station_step(f), "done");
        assert_true(f->have_recorded);
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_string_equal(f->recorded_error, "");
        assert_seen(f, 3, DB_LOOKUP_DEVICE, DB_RECORD_ISSUANCE, DB_RECORD_OUTCOME);
        assert_int_equal(f->outcomes[OUTCOME_PROVISIONED], 1);
        assert_int_equal(f->sessions, 1);
        assert_int_equal(f->certs_issued, 1);
        assert_int_equal(f->jobs, 0);
        assert_true(f->jobs_max >= 1);
        assert_true(f->latency_samples > 0);
        assert_true(f->have_result);
        assert_int_equal(f->result, SP_RESULT_PROVISIONED);
        /* The board holds a certificate and the signer chain of the context in use. */
        assert_true(f->board.device_len > 0);
        assert_int_equal(f->board.signer_len, ctx_a->chain_len);
        assert_memory_equal(f->board.signer, ctx_a->chain_der, ctx_a->chain_len);
        assert_int_equal(f->issuance_signer_id, ctx_a->signer_id);
        assert_false(f->board.locked);
        assert_string_equal(station_serial(f->st), f->board.serial_hex);
}

static void test_provisioned_with_lock(void **state) {
        struct fx *f = *state;

        f->conf.lock = true;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_true(f->board.locked);
}

/*
 * Rotation: the session took context A when its issuance started; the
 * manager switches to B while the issuance record is being committed. The
 * board still gets A's chain and the record names A's signer; the next
 * session uses B.
 */
static void test_rotation_keeps_context(void **state) {
        struct fx *f = *state;

        f->db_manual = true;
        plug(f);
        assert_true(run_until(f, has_queued));
        assert_int_equal(f->queue[0]->type, DB_LOOKUP_DEVICE);
        db_answer(f, 0);
        assert_true(run_until(f, has_queued));
        assert_int_equal(f->queue[0]->type, DB_RECORD_ISSUANCE);
        f->current = ctx_b;             /* the rotation */
        db_answer(f, 0);
        assert_int_equal(f->issuance_signer_id, ctx_a->signer_id);
        f->db_manual = false;
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_int_equal(f->board.signer_len, ctx_a->chain_len);
        assert_memory_equal(f->board.signer, ctx_a->chain_der, ctx_a->chain_len);

        /* A new board on the same port: this session issues under B. */
        replug(f, 2);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_int_equal(f->issuance_signer_id, ctx_b->signer_id);
        assert_int_equal(f->board.signer_len, ctx_b->chain_len);
        assert_memory_equal(f->board.signer, ctx_b->chain_der, ctx_b->chain_len);
}

/* One lost request at every board step: retransmitted, the session still provisions. */
static void test_retry_each_step(void **state) {
        struct fx *f = *state;

        /* Requests: 1 HELLO, 2 GET_CSR, 3 PUT_CERT, 4 PUT_CONFIG, 5 PROVE, 6 RESULT. */
        for (unsigned k = 1; k <= 5; k++) {
                f->drop_request = k;
                if (k == 1)
                        plug(f);
                else
                        replug(f, 10 + k);
                assert_true(run_until(f, is_over));
                assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
                assert_true(f->requests >= 7);  /* six requests and the retransmission */
        }
}

/* The board stops answering at each step: failed after retries + 1 tries, recorded with the step's request. */
static void test_no_answer_each_step(void **state) {
        struct fx *f = *state;
        static const char *const what[] = { NULL, "HELLO", "GET_CSR", "PUT_CERT", "PUT_CONFIG", "PROVE" };

        for (unsigned k = 1; k <= 5; k++) {
                char want[128];

                f->mute_from = k;
                if (k == 1)
                        plug(f);
                else
                        replug(f, 20 + k);
                assert_true(run_until(f, is_recorded));
                assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
                snprintf(want, sizeof want, "board did not answer %s after 3 tries", what[k]);
                assert_non_null(strstr(f->recorded_error, want));
                assert_true(run_until(f, is_over));
                assert_string_equal(station_step(f), "failed");
        }
}

/* RESULT is best effort: a board that does not acknowledge it leaves the recorded verdict as is. */
static void test_result_unanswered(void **state) {
        struct fx *f = *state;

        f->mute_from = 6;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_string_equal(station_step(f), "done");
        assert_int_equal(f->requests, 6);       /* RESULT is not retransmitted */
}

/* The whole-session limit wins over the per-request retries. */
static void test_session_timeout(void **state) {
        struct fx *f = *state;

        f->conf.session_ms = 100;
        f->conf.response_ms = 60;
        f->conf.retries = 50;
        f->mute_from = 2;               /* answers HELLO, then nothing */
        plug(f);
        assert_true(run_until(f, is_recorded));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "session exceeded 100 ms at step csr"));
}

/* Unplugged while the lookup is in the database: aborted once it returns, then freed. */
static void test_close_during_db_request(void **state) {
        struct fx *f = *state;

        f->db_manual = true;
        plug(f);
        assert_true(run_until(f, has_queued));
        station_close(f->st, "unplugged");
        assert_false(f->gone);          /* the request still refers to the station */
        assert_int_equal(f->jobs, 1);
        db_answer(f, 0);
        assert_true(run_until(f, has_queued));
        assert_int_equal(f->queue[0]->type, DB_RECORD_OUTCOME);
        db_answer(f, 0);
        assert_true(run_until(f, is_gone));
        assert_int_equal(f->recorded, DB_OUTCOME_ABORTED);
        assert_non_null(strstr(f->recorded_error, "session aborted at step lookup: unplugged"));
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->board.device_len, 0);
}

/* Unplugged while the issuance runs on a worker: nothing recorded as issued, aborted, freed. */
static void test_close_during_worker_job(void **state) {
        struct fx *f = *state;

        f->close_at_step = "issue";
        plug(f);
        assert_true(run_until(f, is_gone));
        assert_true(f->closed_at_step);
        assert_int_equal(f->recorded, DB_OUTCOME_ABORTED);
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->board.device_len, 0);
        assert_int_equal(f->outcomes[OUTCOME_ABORTED], 1);
}

/* Unplugged while the proof is verified on a worker. */
static void test_close_during_verify(void **state) {
        struct fx *f = *state;

        f->close_at_step = "verify";
        plug(f);
        assert_true(run_until(f, is_gone));
        assert_true(f->closed_at_step);
        assert_int_equal(f->recorded, DB_OUTCOME_ABORTED);
        assert_seen(f, 3, DB_LOOKUP_DEVICE, DB_RECORD_ISSUANCE, DB_RECORD_OUTCOME);
}

/* What the database answers for this board once its first session was recorded. */
static void lookup_as_recorded(struct fx *f) {
        f->lookup = (struct db_lookup_device) {
                .found = true,
                .state = DB_DEVICE_PROVISIONED,
                .cert_id = 7,
                .cert_status = DB_CERT_ACTIVE,
                .cert_der_len = f->issued_len,
        };
        memcpy(f->lookup.pubkey, f->board.pubkey, sizeof f->lookup.pubkey);
        snprintf(f->lookup.cert_sha256, sizeof f->lookup.cert_sha256, "%s", f->issued_sha256);
        snprintf(f->lookup.thing_name, sizeof f->lookup.thing_name, "%s", f->issued_thing);
}

/* A provisioned board plugged in again proves its recorded certificate: nothing issued, nothing written. */
static void test_already_provisioned(void **state) {
        struct fx *f = *state;

        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        lookup_as_recorded(f);
        replug_board(f, 0, true);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_ALREADY_PROVISIONED);
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->certs_issued, 1);
        assert_int_equal(f->result, SP_RESULT_ALREADY_PROVISIONED);
}

/*
 * The same board lost its certificate (PROVE answered NO_CERT): the recorded
 * one is written again, with the chain of the signing context current then.
 */
static void test_recorded_certificate_rewritten(void **state) {
        struct fx *f = *state;

        plug(f);
        assert_true(run_until(f, is_over));
        lookup_as_recorded(f);
        f->board.device_len = 0;
        f->board.signer_len = 0;
        f->current = ctx_b;
        replug_board(f, 0, true);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->certs_issued, 1);
        assert_int_equal(f->board.device_len, f->issued_len);
        assert_memory_equal(f->board.device, f->issued_der, f->issued_len);
        assert_memory_equal(f->board.signer, ctx_b->chain_der, ctx_b->chain_len);
}

/* Unplugged while the issuance record is being committed: the certificate never leaves provd. */
static void test_close_during_issuance_record(void **state) {
        struct fx *f = *state;

        f->db_manual = true;
        plug(f);
        assert_true(run_until(f, has_queued));
        db_answer(f, 0);
        assert_true(run_until(f, has_queued));
        assert_int_equal(f->queue[0]->type, DB_RECORD_ISSUANCE);
        station_close(f->st, "unplugged");
        db_answer(f, 0);
        assert_true(run_until(f, has_queued));
        db_answer(f, 0);
        assert_true(run_until(f, is_gone));
        assert_int_equal(f->recorded, DB_OUTCOME_ABORTED);
        assert_non_null(strstr(f->recorded_error, "at step record"));
        assert_int_equal(f->board.device_len, 0);
}

/* The board never acknowledges LOCK: failed after the retries, at step lock. */
static void test_lock_unanswered(void **state) {
        struct fx *f = *state;

        f->conf.lock = true;
        f->mute_from = 6;               /* HELLO, GET_CSR, PUT_CERT, PUT_CONFIG, PROVE, then LOCK */
        plug(f);
        assert_true(run_until(f, is_recorded));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "board did not answer LOCK after 3 tries"));
        assert_string_equal(f->recorded_step, "lock");
}

/* The issuance record is refused: the certificate is withheld from the board. */
static void test_issuance_not_recorded(void **state) {
        struct fx *f = *state;

        f->fail_issuance = -ENOENT;     /* unknown signer: not retried */
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "cannot record the issuance, certificate withheld"));
        assert_int_equal(f->board.device_len, 0);
        assert_int_equal(f->certs_issued, 0);  /* signed, never recorded: not counted as issued */
        assert_true(f->have_result);
        assert_int_equal(f->result, SP_RESULT_FAILED);
}

/*
 * The "provisioned" outcome cannot be committed for a while (disk full): it is
 * submitted again until it commits, and the board is told "provisioned", never
 * "failed" while it holds its certificate.
 */
static void test_outcome_retried_until_committed(void **state) {
        struct fx *f = *state;

        f->fail_outcome = -ENOSPC;
        f->fail_outcome_times = 5;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_string_equal(station_step(f), "done");
        assert_int_equal(f->outcome_runs, 6);
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_int_equal(f->outcomes[OUTCOME_PROVISIONED], 1);
        assert_int_equal(f->outcomes[OUTCOME_FAILED], 0);
        assert_true(f->have_result);
        assert_int_equal(f->result, SP_RESULT_PROVISIONED);
        assert_int_equal(f->certs_issued, 1);
        assert_int_equal(f->jobs, 0);
}

static bool has_result(struct fx *f) {
        return f->have_result;
}

/* RESULT goes to the board only after the commit; meanwhile the slot says it is recording. */
static void test_result_waits_for_outcome_commit(void **state) {
        struct fx *f = *state;
        cJSON *a;

        f->db_manual = true;
        plug(f);
        for (int i = 0; i < 2; i++) {           /* lookup, issuance */
                assert_true(run_until(f, has_queued));
                db_answer(f, 0);
        }
        assert_true(run_until(f, has_queued));
        assert_int_equal(f->queue[0]->type, DB_RECORD_OUTCOME);
        db_answer(f, -EBUSY);                   /* another process holds the write lock */
        assert_true(run_until(f, has_queued));  /* submitted again */
        assert_false(f->have_result);
        assert_string_equal(station_step(f), "commit");
        a = cJSON_CreateArray();
        station_status(f->st, a);
        assert_non_null(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "last_error")),
                               "recording the provisioned outcome"));
        cJSON_Delete(a);
        assert_int_equal(f->outcomes[OUTCOME_FAILED] + f->outcomes[OUTCOME_PROVISIONED], 0);
        db_answer(f, -ENOSPC);
        assert_true(run_until(f, has_queued));
        assert_false(f->have_result);
        db_answer(f, 0);
        assert_true(run_until(f, has_result));
        assert_int_equal(f->result, SP_RESULT_PROVISIONED);
        assert_int_equal(f->outcome_runs, 3);
        assert_true(run_until(f, is_over));
        assert_string_equal(station_step(f), "done");
}

/* The issuance record meets a locked database: retried, then PUT_CERT; nothing signed twice. */
static void test_issuance_retried(void **state) {
        struct fx *f = *state;

        f->fail_issuance = -EBUSY;
        f->fail_issuance_times = 3;
        f->fail_outcome = -ENOSPC;      /* and then a full disk for the outcome */
        f->fail_outcome_times = 2;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_string_equal(station_step(f), "done");
        assert_int_equal(f->issuance_runs, 4);
        assert_int_equal(f->outcome_runs, 3);
        assert_int_equal(f->certs_issued, 1);
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_int_equal(f->result, SP_RESULT_PROVISIONED);
        assert_true(f->board.device_len > 0);
        assert_int_equal(f->jobs, 0);
}

/* A failed session's attempt row is not dropped either. */
static void test_failed_attempt_retried(void **state) {
        struct fx *f = *state;

        f->budget_empty = true;
        f->fail_outcome = -EIO;
        f->fail_outcome_times = 3;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->outcome_runs, 4);
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "issuance budget"));
        assert_int_equal(f->outcomes[OUTCOME_FAILED], 1);
        assert_int_equal(f->result, SP_RESULT_FAILED);
}

/* Unplugged while the outcome is being retried: it is still recorded, then the station goes. */
static void test_close_while_outcome_retried(void **state) {
        struct fx *f = *state;

        f->db_manual = true;
        plug(f);
        for (int i = 0; i < 2; i++) {
                assert_true(run_until(f, has_queued));
                db_answer(f, 0);
        }
        assert_true(run_until(f, has_queued));
        db_answer(f, -ENOSPC);
        station_close(f->st, "unplugged");
        assert_true(run_until(f, has_queued));
        assert_false(f->gone);
        assert_int_equal(f->queue[0]->type, DB_RECORD_OUTCOME);
        db_answer(f, 0);
        assert_true(run_until(f, is_gone));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_int_equal(f->outcomes[OUTCOME_PROVISIONED], 1);
        assert_int_equal(f->outcome_runs, 2);
        assert_int_equal(f->jobs, 0);
}

/*
 * The shutdown deadline closes a port whose outcome is still being retried:
 * the next retry gives up, the board is told nothing (the next start proves
 * it again), and the station goes, so the daemon can exit.
 */
static void test_shutdown_deadline_gives_up_retry(void **state) {
        struct fx *f = *state;

        f->db_manual = true;
        plug(f);
        for (int i = 0; i < 2; i++) {
                assert_true(run_until(f, has_queued));
                db_answer(f, 0);
        }
        assert_true(run_until(f, has_queued));
        db_answer(f, -ENOSPC);
        station_shutdown(f->st);
        station_close(f->st, "shutdown deadline");
        assert_true(run_until(f, is_gone));
        assert_int_equal(f->n_queue, 0);
        assert_int_equal(f->outcome_runs, 1);
        assert_false(f->have_result);
        assert_int_equal(f->outcomes[OUTCOME_PROVISIONED] + f->outcomes[OUTCOME_FAILED], 0);
        assert_int_equal(f->jobs, 0);
}

/* A refused outcome (the database says it is wrong, not busy) is not retried. */
static void test_outcome_refused_not_retried(void **state) {
        struct fx *f = *state;

        f->fail_outcome = -ESTALE;
        f->fail_outcome_times = 1;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->outcome_runs, 1);
        assert_int_equal(f->outcomes[OUTCOME_FAILED], 1);
        assert_int_equal(f->result, SP_RESULT_FAILED);
}

static void test_budget_spent(void **state) {
        struct fx *f = *state;

        f->budget_empty = true;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "issuance budget"));
        assert_int_equal(f->certs_issued, 0);
}

static void test_serial_in_session_elsewhere(void **state) {
        struct fx *f = *state;

        f->serial_busy = true;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_CLONE_SUSPECTED);
        assert_seen(f, 1, DB_RECORD_OUTCOME);
}

/* The database knows the serial with another key: a clone, nothing signed. */
static void test_known_serial_other_key(void **state) {
        struct fx *f = *state;

        f->lookup.found = true;
        f->lookup.state = DB_DEVICE_PROVISIONED;
        memset(f->lookup.pubkey, 0x04, sizeof f->lookup.pubkey);
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_CLONE_SUSPECTED);
        assert_int_equal(f->certs_issued, 0);
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_provisioned, setup, teardown),
                cmocka_unit_test_setup_teardown(test_provisioned_with_lock, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rotation_keeps_context, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retry_each_step, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_answer_each_step, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_unanswered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_session_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_during_db_request, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_during_worker_job, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_during_verify, setup, teardown),
                cmocka_unit_test_setup_teardown(test_issuance_not_recorded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_already_provisioned, setup, teardown),
                cmocka_unit_test_setup_teardown(test_recorded_certificate_rewritten, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_during_issuance_record, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lock_unanswered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outcome_retried_until_committed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_waits_for_outcome_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_attempt_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(test_issuance_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_while_outcome_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outcome_refused_not_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shutdown_deadline_gives_up_retry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_budget_spent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_serial_in_session_elsewhere, setup, teardown),
                cmocka_unit_test_setup_teardown(test_known_serial_other_key, setup, teardown),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
