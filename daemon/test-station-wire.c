/* SPDX-License-Identifier: MIT */
/* The session state machine against what a board may send that it should not: noise, odd answers, odd
 * limits (the harness of test-station.c, a board tampered with by the tests). */

#include "test-station-harness.h"

static bool at_csr(struct fx *f) {
        return f->st && streq(station_step(f), "csr");
}

/* Bytes that are no frame after the board's first good one, over the noise limit: the session fails. */
static void test_line_noise(void **state) {
        struct fx *f = *state;
        uint8_t junk[64];

        f->conf.max_errors = 2;
        f->mute_from = 2;               /* IDENT is a good frame: what follows is noise, not boot text */
        plug(f);
        assert_true(run_until(f, at_csr));
        memset(junk, 0x55, sizeof junk);
        for (unsigned i = 0; i < 8; i++) {
                junk[0] = 0;            /* frame delimiter: each chunk is one bad frame */
                junk[sizeof junk - 1] = 0;
                assert_int_equal(write(f->board_fd, junk, sizeof junk), (ssize_t)sizeof junk);
        }
        assert_true(run_until(f, is_recorded));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "line noise"));
}


/* --- what a board may send (issue 10, 14) --------------------------------------- */

static void put_error(struct tamper *t, uint16_t code, const char *text) {
        struct sp_tlv_writer w;

        sp_tlv_writer_init(&w, t->payload, sizeof t->payload);
        sp_tlv_put_u16(&w, SP_TAG_ERROR_CODE, code);
        if (text)
                sp_tlv_put_str(&w, SP_TAG_ERROR_TEXT, text);
        assert_int_equal(w.error, 0);
        t->type = SP_MSG_ERROR;
        t->len = w.len;
}

static void result_as_pong(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_RESULT_OK)
                t->type = SP_MSG_PONG;
}

static void result_as_version2(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_RESULT_OK)
                t->version = 2;
}

static void result_as_error(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_RESULT_OK)
                put_error(t, SP_ERR_BAD_STATE, NULL);
}

static void result_corrupted(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_RESULT_OK)
                t->bad_crc = true;
}

/* The session's verdict is recorded and the slot is no longer busy, however the board answered RESULT. */
static void assert_run_ended(struct fx *f) {
        assert_true(run_until(f, is_over));
        assert_true(f->have_recorded);
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_string_equal(station_step(f), "done");
        assert_int_equal(f->outcomes[OUTCOME_PROVISIONED], 1);
}

/* RESULT answered with the right seq but another type, another header version, an ERROR or a broken frame. */
static void test_result_odd_answers(void **state) {
        struct fx *f = *state;
        void (*const how[])(struct fx *, struct tamper *) = {
                result_as_pong, result_as_version2, result_as_error, result_corrupted,
        };

        for (unsigned i = 0; i < ELEMENTSOF(how); i++) {
                f->tamper = how[i];
                f->outcomes[OUTCOME_PROVISIONED] = 0;
                if (i == 0)
                        plug(f);
                else
                        replug(f, 30 + i);
                assert_run_ended(f);
                assert_true(f->have_result);    /* the board did see RESULT */
        }
}

/*
 * A HELLO that failed (answered with ERROR VERSION by a board that therefore
 * has no session): the failure is recorded and no RESULT is sent, which a
 * conforming board would answer with BAD_STATE.
 */
static void test_no_result_after_failed_hello(void **state) {
        struct fx *f = *state;

        f->drop_request = 1;            /* the board never sees that HELLO: no session */
        plug(f);
        board_send(f, &(struct tamper) { .version = 1, .type = SP_MSG_ERROR, .seq = 0x4000, .len = 5,
                                         .len_field = -1,
                                         .payload = { SP_TAG_ERROR_CODE, 0, 2, 0, SP_ERR_VERSION } });
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "board refused HELLO: unsupported protocol version"));
        assert_string_equal(station_step(f), "failed");
        for (unsigned i = 0; i < 10; i++)
                uv_run(&f->loop, UV_RUN_NOWAIT);
        assert_int_equal(f->requests, 1);
        assert_false(f->have_result);
}

/* A run never outlives session_ms, even when the session limit falls in RESULT's wait. */
static void test_result_within_session_limit(void **state) {
        struct fx *f = *state;

        f->conf.result_ms = 600000;     /* longer than the test's guard */
        f->conf.session_ms = 2000;
        f->mute_from = 6;               /* RESULT unanswered */
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_string_equal(station_step(f), "done");
}

static void cert_ok_without_hash(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_CERT_OK)
                t->len = 0;
}

/* CERT_HASH in CERT_OK is optional (PROTOCOL.md §6.3): PROVE checks the stored certificate anyway. */
static void test_cert_ok_without_hash(void **state) {
        struct fx *f = *state;

        f->tamper = cert_ok_without_hash;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_string_equal(f->recorded_error, "");
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
}

static void csr_vendor_error(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_CSR)
                put_error(t, 0x8001, "vendor says no");
}

static void csr_reserved_error(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_CSR)
                put_error(t, 13, NULL);
}

/* Unknown codes, reserved or vendor, are shown as numbers with the board's text (PROTOCOL.md §9). */
static void test_unknown_error_codes(void **state) {
        struct fx *f = *state;

        f->tamper = csr_vendor_error;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "board refused GET_CSR: board error 32769 (0x8001): vendor says no"));
        f->tamper = csr_reserved_error;
        replug(f, 40);
        assert_true(run_until(f, is_over));
        assert_non_null(strstr(f->recorded_error, "board refused GET_CSR: board error 13 (0x000d)"));
        assert_int_equal(f->certs_issued, 0);
}

static void csr_bogus_length(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_CSR)
                t->len_field = 60000;
}

/* A length field far beyond the frame, every time: the frames are reported, not "did not answer". */
static void test_bogus_length_field(void **state) {
        struct fx *f = *state;

        f->tamper = csr_bogus_length;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "3 corrupted answers to GET_CSR"));
        assert_null(strstr(f->recorded_error, "did not answer"));
        assert_string_equal(f->recorded_step, "csr");
}

static void csr_version2(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_CSR)
                t->version = 2;
}

static void test_wrong_version_answer(void **state) {
        struct fx *f = *state;

        f->tamper = csr_version2;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "board answered GET_CSR with header version 2"));
        assert_int_equal(f->certs_issued, 0);
}

/* A board without a key and without KEYGEN: never NEW_KEY=1 (PROTOCOL.md §6.2), nothing issued. */
static void test_no_key_no_keygen(void **state) {
        struct fx *f = *state;

        f->caps_clear = SP_CAP_KEYGEN;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "no device key and no key generation"));
        assert_null(f->board.key);      /* no GET_CSR made it generate one */
        assert_int_equal(f->requests, 2);       /* HELLO and RESULT */
        assert_int_equal(f->certs_issued, 0);
}

/* Boot text of 5 KB (one oversize "frame") and a stray frame before IDENT: tolerated, not noise. */
static void test_boot_text(void **state) {
        struct fx *f = *state;
        static uint8_t text[5000];
        static const uint8_t junk[] = { 0x00, 0x55, 0x55, 0x55, 0x00 };

        memset(text, 'U', sizeof text);
        f->conf.max_errors = 1;
        plug(f);
        board_raw(f, text, sizeof text);
        board_raw(f, junk, sizeof junk);
        assert_true(run_until(f, is_over));
        assert_string_equal(f->recorded_error, "");
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
}

/* 20 KB before the first frame: past SP_BOOT_TEXT_MAX it counts as line noise, with the stray frame after it. */
static void test_boot_text_too_long(void **state) {
        struct fx *f = *state;
        static uint8_t text[20000];
        static const uint8_t junk[] = { 0x00, 0x55, 0x55, 0x55, 0x00 };

        memset(text, 'U', sizeof text);
        f->conf.max_errors = 1;
        plug(f);
        board_raw(f, text, sizeof text);
        board_raw(f, junk, sizeof junk);
        assert_true(run_until(f, is_recorded));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "line noise: 2 bad frames"));
}

static void csr_lost_delimiter(struct fx *f, struct tamper *t) {
        static uint8_t merged[6000];

        if (t->type != SP_MSG_CSR || f->tampered > 2)
                return;
        /* The first CSR answer merged with line garbage into one frame over the limit. */
        memset(merged, 0x33, sizeof merged);
        merged[0] = merged[sizeof merged - 1] = 0;
        board_raw(f, merged, sizeof merged);
        t->drop = true;
}

/* An oversize frame is line noise under the limit (PROTOCOL.md §2.3): retransmitted, provisioned. */
static void test_oversize_frame_is_noise(void **state) {
        struct fx *f = *state;

        f->tamper = csr_lost_delimiter;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_string_equal(f->recorded_error, "");
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
}

static void csr_corrupted_once(struct fx *f, struct tamper *t) {
        if (t->type == SP_MSG_CSR && f->tampered == 2)
                t->bad_crc = true;
}

/*
 * A corrupted CSR answer is retransmitted at once, not after keygen_ms: with
 * a 10-minute key generation timeout the session still ends (before the
 * test's guard), from the board's cached answer.
 */
static void test_corrupted_answer_retransmitted_at_once(void **state) {
        struct fx *f = *state;

        f->conf.keygen_ms = 600000;
        f->conf.session_ms = 3600000;
        f->tamper = csr_corrupted_once;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_PROVISIONED);
        assert_int_equal(f->spb.stats.replays, 1);      /* the retransmission was answered from the cache */
        assert_int_equal(f->certs_issued, 1);
}

/* A board whose frames cannot take PUT_CERT: failed before anything is signed or recorded. */
static void test_tiny_max_frame(void **state) {
        struct fx *f = *state;

        board_frame(f, 512);
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "do not fit the board's frames (board max frame 512"));
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->certs_issued, 0);
        assert_int_equal(f->board.device_len, 0);
}

/* PUT_CERT fits the board's frames but the configuration does not: failed before anything is signed. */
static void test_config_too_large(void **state) {
        struct fx *f = *state;
        char ssid[1000];

        memset(ssid, 's', sizeof ssid - 1);
        ssid[sizeof ssid - 1] = 0;
        f->conf.wifi_ssid = strdup(ssid);       /* freed with the configuration */
        assert_non_null(f->conf.wifi_ssid);
        board_frame(f, 1024);
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "configuration ("));
        assert_non_null(strstr(f->recorded_error, "does not fit the board's frames (board max frame 1024"));
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->certs_issued, 0);
}

/*
 * A locked board with a key but no record here (provisioned elsewhere)
 * cannot store a certificate: nothing is signed (PROTOCOL.md §6.6).
 */
static void test_locked_board(void **state) {
        struct fx *f = *state;
        uint8_t der[1024];
        size_t len;

        assert_int_equal(board_get_csr(&f->board, true, NULL, 0, der, sizeof der, &len), 0);
        f->board.locked = true;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_FAILED);
        assert_non_null(strstr(f->recorded_error, "board is locked"));
        assert_seen(f, 2, DB_LOOKUP_DEVICE, DB_RECORD_OUTCOME);
        assert_int_equal(f->certs_issued, 0);
}

static void csr_other_pubkey(struct fx *f, struct tamper *t) {
        struct sp_tlv_reader r;
        struct sp_tlv tlv;

        if (t->type != SP_MSG_CSR)
                return;
        sp_tlv_reader_init(&r, t->payload, t->len);
        while (sp_tlv_next(&r, &tlv) == 1)
                if (tlv.tag == SP_TAG_PUBKEY) {
                        t->payload[tlv.value - t->payload + 10] ^= 0x01;
                        return;
                }
        fail_msg("the CSR answer has no PUBKEY");
}

/* The CSR answer's PUBKEY is not the CSR's key: a bad CSR, nothing signed (PROTOCOL.md §6.2). */
static void test_csr_pubkey_mismatch(void **state) {
        struct fx *f = *state;

        f->tamper = csr_other_pubkey;
        plug(f);
        assert_true(run_until(f, is_over));
        assert_int_equal(f->recorded, DB_OUTCOME_REJECTED);
        assert_non_null(strstr(f->recorded_error, "CSR key differs from the board's PUBKEY"));
        assert_int_equal(f->certs_issued, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_line_noise, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_odd_answers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_result_after_failed_hello, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_within_session_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cert_ok_without_hash, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_error_codes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bogus_length_field, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_version_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_key_no_keygen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_text, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_text_too_long, setup, teardown),
                cmocka_unit_test_setup_teardown(test_oversize_frame_is_noise, setup, teardown),
                cmocka_unit_test_setup_teardown(test_corrupted_answer_retransmitted_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tiny_max_frame, setup, teardown),
                cmocka_unit_test_setup_teardown(test_config_too_large, setup, teardown),
                cmocka_unit_test_setup_teardown(test_locked_board, setup, teardown),
                cmocka_unit_test_setup_teardown(test_csr_pubkey_mismatch, setup, teardown),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
