/* SPDX-License-Identifier: MIT */
/* Board library end to end with stub callbacks, and sp_client against spb_board in memory. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "station-proto/sp-board.h"
#include "station-proto/sp.h"
#include "test-board-stub.h"

#define FRAME 4096

struct rig {
        struct stub s;
        struct spb_ops ops;
        struct spb_board b;
        uint8_t rx[FRAME], tx[SPB_TX_BUF(FRAME)], work[FRAME];
        uint16_t seq;
        /* asynchronous mode: what the pending callback was given */
        unsigned n_pending;
        uint8_t *pend_der;
        size_t pend_cap;
        uint8_t *pend_hash, *pend_sig;
        const uint8_t *pend_cert;
        size_t pend_cert_len;
        const uint8_t *pend_value;
        size_t pend_value_len;
};

struct resp {
        int n;                          /* frames the board wrote */
        struct sp_frame f;
        uint8_t payload[FRAME];
        int bad;                        /* undecodable bytes in the board's output */
};

static int resp_cb(const struct sp_frame *f, int error, void *userdata) {
        struct resp *r = userdata;

        if (error) {
                r->bad++;
                return 0;
        }
        r->n++;
        r->f = *f;
        memcpy(r->payload, f->payload, f->len);
        r->f.payload = r->payload;
        return 0;
}

static void decode_output(struct rig *g, struct resp *r) {
        struct sp_parser *p;

        memset(r, 0, sizeof *r);
        assert_int_equal(sp_parser_new(&p, NULL), 0);
        assert_int_equal(sp_parser_feed(p, g->s.out, g->s.out_len, resp_cb, r), (ssize_t)g->s.out_len);
        sp_parser_free(p);
        g->s.out_len = 0;
        assert_int_equal(r->bad, 0);
}

static void rig_init(struct rig *g) {
        memset(g, 0, sizeof *g);
        stub_init(&g->s);
        g->ops = stub_ops;
        assert_int_equal(spb_init(&g->b, &g->ops, &g->s, g->rx, sizeof g->rx, g->tx, sizeof g->tx,
                                  g->work, sizeof g->work), SPB_OK);
        g->seq = 0x4a21;
}

/* Sends one request frame with @seq and @flags; returns the number of answers (0 or 1). */
static int xfer_seq(struct rig *g, uint8_t type, uint8_t flags, uint16_t seq, const void *payload, size_t len,
                    struct resp *r) {
        static uint8_t wire[SP_ENCODED_MAX(FRAME + 100)];
        struct sp_frame f = { .version = 1, .type = type, .flags = flags, .seq = seq, .len = (uint16_t)len,
                              .payload = payload };
        ssize_t n = sp_frame_encode(&f, wire, sizeof wire);

        assert_true(n > 0);
        spb_feed(&g->b, wire, (size_t)n);
        decode_output(g, r);
        assert_true(r->n <= 1);
        if (r->n == 1)
                assert_int_equal(r->f.seq, seq);
        return r->n;
}

/* A new request (next seq); asserts one answer and returns its type. */
static uint8_t xfer(struct rig *g, uint8_t type, const void *payload, size_t len, struct resp *r) {
        assert_int_equal(xfer_seq(g, type, 0, g->seq++, payload, len, r), 1);
        return r->f.type;
}

static uint16_t error_code(const struct resp *r) {
        struct sp_board_error e;

        assert_int_equal(r->f.type, SP_MSG_ERROR);
        assert_int_equal(sp_error_parse(&r->f, &e), 0);
        return e.code;
}

static size_t hello_payload(uint8_t *buf, uint16_t max_frame) {
        struct sp_tlv_writer w;

        sp_tlv_writer_init(&w, buf, 64);
        sp_tlv_put_u8(&w, SP_TAG_PROTO_VERSION, 1);
        sp_tlv_put_u16(&w, SP_TAG_MAX_FRAME, max_frame);
        return w.len;
}

static void hello(struct rig *g) {
        uint8_t p[64];
        struct resp r;

        assert_int_equal(xfer(g, SP_MSG_HELLO, p, hello_payload(p, FRAME), &r), SP_MSG_IDENT);
}

static const uint8_t cert_der[] = { 0x30, 0x82, 0x00, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05 };

static size_t put_cert_payload(uint8_t *buf, size_t cap) {
        struct sp_tlv_writer w;

        sp_tlv_writer_init(&w, buf, cap);
        sp_tlv_put(&w, SP_TAG_DEVICE_CERT, cert_der, sizeof cert_der);
        sp_tlv_put(&w, SP_TAG_SIGNER_CERT, cert_der, sizeof cert_der);
        assert_int_equal(w.error, 0);
        return w.len;
}

static size_t nonce_payload(uint8_t *buf, uint8_t fill) {
        struct sp_tlv_writer w;
        uint8_t nonce[SP_NONCE_LEN];

        memset(nonce, fill, sizeof nonce);
        sp_tlv_writer_init(&w, buf, 64);
        sp_tlv_put(&w, SP_TAG_NONCE, nonce, sizeof nonce);
        return w.len;
}

/* --- tests ---------------------------------------------------------------- */

static void test_init_args(void **state) {
        static struct rig g;
        struct spb_ops ops;

        (void)state;
        rig_init(&g);
        assert_int_equal(spb_init(NULL, &stub_ops, NULL, g.rx, FRAME, g.tx, sizeof g.tx, g.work, FRAME), SPB_E_INVAL);
        assert_int_equal(spb_init(&g.b, NULL, NULL, g.rx, FRAME, g.tx, sizeof g.tx, g.work, FRAME), SPB_E_INVAL);
        ops = stub_ops;
        ops.prove = NULL;
        assert_int_equal(spb_init(&g.b, &ops, NULL, g.rx, FRAME, g.tx, sizeof g.tx, g.work, FRAME), SPB_E_INVAL);
        ops = stub_ops;
        ops.lock = NULL;
        ops.result = NULL;
        assert_int_equal(spb_init(&g.b, &ops, NULL, g.rx, FRAME, g.tx, sizeof g.tx, g.work, FRAME), SPB_OK);
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, 63, g.tx, sizeof g.tx, g.work, FRAME), SPB_E_NOSPC);
        /* @tx is an output chunk: anything from SPB_TX_MIN up */
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, FRAME, g.tx, SPB_TX_MIN - 1, g.work, FRAME),
                         SPB_E_NOSPC);
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, FRAME, g.tx, SPB_TX_MIN, g.work, FRAME), SPB_OK);
        /* @work holds the largest response, not a frame */
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, FRAME, g.tx, sizeof g.tx, g.work, SPB_WORK_MIN - 1),
                         SPB_E_NOSPC);
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, FRAME, g.tx, sizeof g.tx, g.work, SPB_WORK_MIN),
                         SPB_OK);
        /* ... or the largest payload a frame carries, when that is less */
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, 64, g.tx, SPB_TX_BUF(64), g.work, 64 - 12),
                         SPB_E_NOSPC);
        assert_int_equal(spb_init(&g.b, &stub_ops, NULL, g.rx, 64, g.tx, SPB_TX_BUF(64), g.work, 64 - 11), SPB_OK);
        /* NULL-safe */
        spb_feed(NULL, (const uint8_t *)"x", 1);
        spb_reset(NULL);
        assert_null(spb_get_stats(NULL));
}

static void test_full_session(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512], hash[32], want[32];
        struct sp_ident id;
        struct sp_proof proof;
        const uint8_t *der;
        size_t der_len, n;
        struct sp_tlv_writer w;

        (void)state;
        rig_init(&g);

        /* HELLO → IDENT */
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, 1024), &r), SP_MSG_IDENT);
        assert_int_equal(r.f.flags, 0);
        assert_int_equal(sp_ident_parse(&r.f, &id), 0);
        assert_int_equal(id.serial_len, 9);
        assert_memory_equal(id.serial, g.s.serial, 9);
        assert_string_equal(id.model, "provd-devkit-1");
        assert_string_equal(id.fw_version, "1.4.2");
        assert_int_equal(id.caps, SP_CAP_KEYGEN | SP_CAP_LOCK | SP_CAP_WIFI);
        assert_int_equal(id.proto_version, 1);
        assert_int_equal(id.max_frame, FRAME);
        assert_false(id.has_pubkey);
        assert_false(id.locked);

        /* GET_CSR → CSR */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        sp_tlv_put_str(&w, SP_TAG_SUBJECT_CN, "0123A5C79E4B102FEE");
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, p, w.len, &r), SP_MSG_CSR);
        assert_int_equal(g.s.n_get_csr, 1);
        assert_true(g.s.last_new_key);
        assert_string_equal(g.s.last_cn, "0123A5C79E4B102FEE");
        assert_int_equal(sp_csr_parse(&r.f, &der, &der_len), 0);
        assert_int_equal(der_len, 100);
        assert_int_equal(der[0], 0x30);
        {
                uint8_t pub[SP_PUBKEY_LEN];

                assert_int_equal(sp_csr_pubkey(&r.f, pub), 0);
                assert_memory_equal(pub, g.s.pubkey, SP_PUBKEY_LEN);
        }

        /* PUT_CERT → CERT_OK with the SHA-256 of the DER */
        n = put_cert_payload(p, sizeof p);
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, n, &r), SP_MSG_CERT_OK);
        assert_int_equal(sp_cert_ok_parse(&r.f, hash), 0);
        spb_sha256(cert_der, sizeof cert_der, want);
        assert_memory_equal(hash, want, 32);
        assert_int_equal(g.s.stored_cert_len, sizeof cert_der);

        /* PUT_CONFIG → CONFIG_OK, pairs in order */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "aws_endpoint");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "example-ats.iot.eu-west-1.amazonaws.com");
        sp_tlv_put_u8(&w, 0x9e, 1);     /* unknown tag between pairs: ignored */
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_psk");
        sp_tlv_put(&w, SP_TAG_CFG_VALUE, NULL, 0);
        assert_int_equal(xfer(&g, SP_MSG_PUT_CONFIG, p, w.len, &r), SP_MSG_CONFIG_OK);
        assert_int_equal(r.f.len, 0);
        assert_int_equal(g.s.n_store_config, 2);
        assert_string_equal(g.s.cfg_keys[0], "aws_endpoint");
        assert_int_equal(g.s.cfg_val_len[0], 39);
        assert_string_equal(g.s.cfg_keys[1], "wifi_psk");
        assert_int_equal(g.s.cfg_val_len[1], 0);

        /* PROVE → PROOF */
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 0x6e), &r), SP_MSG_PROOF);
        assert_int_equal(sp_proof_parse(&r.f, &proof), 0);
        assert_memory_equal(proof.cert_hash, want, 32);
        assert_memory_equal(proof.signature, g.s.sig, 64);
        assert_int_equal(g.s.last_nonce[31], 0x6e);

        /* LOCK → LOCKED, RESULT → RESULT_OK, PING → PONG */
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_LOCKED);
        assert_int_equal(g.s.n_lock, 1);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_RESULT, SP_RESULT_PROVISIONED);
        assert_int_equal(xfer(&g, SP_MSG_RESULT, p, w.len, &r), SP_MSG_RESULT_OK);
        assert_int_equal(g.s.n_result, 1);
        assert_int_equal(g.s.last_result, SP_RESULT_PROVISIONED);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_str(&w, SP_TAG_ECHO, "are you there");
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_PONG);
        assert_int_equal(r.f.len, w.len);
        assert_memory_equal(r.payload, p, w.len);
        assert_int_equal(spb_get_stats(&g.b)->frames, 8);
        assert_int_equal(spb_get_stats(&g.b)->replays, 0);
}

static void test_replay(void **state) {
        static struct rig g;
        struct resp r1, r2;
        uint8_t p[64];
        struct sp_tlv_writer w;
        unsigned ident_before;
        uint16_t seq;

        (void)state;
        rig_init(&g);
        hello(&g);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);

        seq = g.seq++;
        assert_int_equal(xfer_seq(&g, SP_MSG_GET_CSR, 0, seq, p, w.len, &r1), 1);
        assert_int_equal(r1.f.type, SP_MSG_CSR);
        assert_int_equal(r1.f.flags, 0);
        ident_before = g.s.n_identify;

        /* the same seq again (a retransmission): cached answer, REPLAY set, no callback */
        for (int i = 0; i < 3; i++) {
                assert_int_equal(xfer_seq(&g, SP_MSG_GET_CSR, SP_FLAG_RETRANSMIT, seq, p, w.len, &r2), 1);
                assert_int_equal(r2.f.type, SP_MSG_CSR);
                assert_int_equal(r2.f.flags, SP_FLAG_REPLAY);
                assert_int_equal(r2.f.len, r1.f.len);
                assert_memory_equal(r2.payload, r1.payload, r1.f.len);
        }
        /* without the RETRANSMIT flag it is the same */
        assert_int_equal(xfer_seq(&g, SP_MSG_GET_CSR, 0, seq, p, w.len, &r2), 1);
        assert_int_equal(r2.f.flags, SP_FLAG_REPLAY);
        assert_int_equal(g.s.n_get_csr, 1);
        assert_int_equal(g.s.n_identify, ident_before);
        assert_int_equal(spb_get_stats(&g.b)->replays, 4);

        /* errors are cached too: PROVE with no certificate stored, then again */
        seq = g.seq++;
        assert_int_equal(xfer_seq(&g, SP_MSG_PROVE, 0, seq, p, nonce_payload(p, 1), &r1), 1);
        assert_int_equal(error_code(&r1), SP_ERR_NO_CERT);
        assert_int_equal(xfer_seq(&g, SP_MSG_PROVE, SP_FLAG_RETRANSMIT, seq, p, nonce_payload(p, 1), &r2), 1);
        assert_int_equal(r2.f.flags, SP_FLAG_REPLAY);
        assert_int_equal(error_code(&r2), SP_ERR_NO_CERT);
        assert_int_equal(g.s.n_prove, 1);       /* the replay did not ask the secure element again */

        /* same seq but another type: a new request, executed */
        assert_int_equal(xfer_seq(&g, SP_MSG_PING, 0, seq, NULL, 0, &r2), 1);
        assert_int_equal(r2.f.type, SP_MSG_PONG);
        assert_int_equal(r2.f.flags, 0);

        /* an older seq after a newer request: executed anew (the cache holds one answer) */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 0);
        assert_int_equal(xfer_seq(&g, SP_MSG_GET_CSR, 0, (uint16_t)(seq - 1), p, w.len, &r2), 1);
        assert_int_equal(r2.f.flags, 0);
        assert_int_equal(g.s.n_get_csr, 2);
}

static void test_hello_resets(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512];
        size_t n;
        unsigned before;
        uint16_t seq;

        (void)state;
        rig_init(&g);
        hello(&g);
        n = put_cert_payload(p, sizeof p);
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, n, &r), SP_MSG_CERT_OK);

        /* HELLO with a repeated seq is executed every time (never replayed) */
        seq = g.seq++;
        before = g.s.n_identify;
        assert_int_equal(xfer_seq(&g, SP_MSG_HELLO, 0, seq, p, hello_payload(p, FRAME), &r), 1);
        assert_int_equal(xfer_seq(&g, SP_MSG_HELLO, SP_FLAG_RETRANSMIT, seq, p, hello_payload(p, FRAME), &r), 1);
        assert_int_equal(r.f.type, SP_MSG_IDENT);
        assert_int_equal(r.f.flags, 0);
        assert_int_equal(g.s.n_identify, before + 2);

        /* a new session still proves the certificate stored before it (a replugged board) */
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 2), &r), SP_MSG_PROOF);

        /* HELLO drops the cache: the same (seq, type) after a HELLO is executed again */
        seq = g.seq++;
        assert_int_equal(xfer_seq(&g, SP_MSG_PING, 0, seq, NULL, 0, &r), 1);
        hello(&g);
        assert_int_equal(xfer_seq(&g, SP_MSG_PING, 0, seq, NULL, 0, &r), 1);
        assert_int_equal(r.f.flags, 0);

        /* a failed HELLO ends the session too */
        assert_int_equal(xfer(&g, SP_MSG_HELLO, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_PAYLOAD);
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_STATE);

        /* spb_reset() ends it as well */
        hello(&g);
        spb_reset(&g.b);
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_STATE);
}

static void test_state_machine(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512];
        struct sp_tlv_writer w;
        static const uint8_t types[] = { SP_MSG_GET_CSR, SP_MSG_PUT_CERT, SP_MSG_PUT_CONFIG, SP_MSG_PROVE,
                                         SP_MSG_LOCK, SP_MSG_RESULT };

        (void)state;
        rig_init(&g);
        /* before HELLO: everything but PING is BAD_STATE (even with good payloads) */
        for (size_t i = 0; i < sizeof types; i++) {
                size_t n = 0;

                if (types[i] == SP_MSG_PUT_CERT)
                        n = put_cert_payload(p, sizeof p);
                else if (types[i] == SP_MSG_PROVE)
                        n = nonce_payload(p, 3);
                assert_int_equal(xfer(&g, types[i], p, n, &r), SP_MSG_ERROR);
                assert_int_equal(error_code(&r), SP_ERR_BAD_STATE);
        }
        assert_int_equal(xfer(&g, SP_MSG_PING, NULL, 0, &r), SP_MSG_PONG);
        assert_int_equal(g.s.n_identify + g.s.n_get_csr + g.s.n_store_certs + g.s.n_store_config + g.s.n_prove +
                         g.s.n_lock + g.s.n_result, 0);

        hello(&g);
        /* LOCK before PROVE; PROVE without any stored certificate */
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_STATE);
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 4), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_NO_CERT);
        assert_int_equal(g.s.n_lock, 0);

        /* PUT_CERT, PROVE, then a new PUT_CERT cancels the proof: LOCK refused */
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_CERT_OK);
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 5), &r), SP_MSG_PROOF);
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_CERT_OK);
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_STATE);
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 6), &r), SP_MSG_PROOF);
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_LOCKED);
        assert_int_equal(g.s.n_lock, 1);

        /* locked: PUT_CERT and GET_CSR NEW_KEY=1 refused, LOCK again is a no-op success */
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_LOCKED);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_LOCKED);
        assert_int_equal(g.s.n_get_csr, 0);
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_LOCKED);
        assert_int_equal(g.s.n_lock, 1);
        /* still allowed: GET_CSR with the existing key, PUT_CONFIG, PROVE */
        g.s.have_key = true;
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_CSR);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "thing_name");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "t1");
        assert_int_equal(xfer(&g, SP_MSG_PUT_CONFIG, p, w.len, &r), SP_MSG_CONFIG_OK);

        /* a new session on a board that says it is locked: PROVE works without PUT_CERT */
        hello(&g);
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 7), &r), SP_MSG_PROOF);
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_LOCKED);

        /* a board without LOCK support */
        rig_init(&g);
        g.ops.lock = NULL;
        hello(&g);
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_UNKNOWN_TYPE);
}

struct bad_case {
        const char *what;
        uint8_t type;
        const uint8_t *payload;
        size_t len;
        uint16_t want;
};

static void test_validation(void **state) {
        static struct rig g;
        static uint8_t big[2000];
        struct resp r;
        uint8_t cn65[3 + 65], key33[3 + 33], val1025[3 + 1 + 3 + 1025], nonce31[3 + 31], nonce33[3 + 33];
        uint8_t pairs33[33 * 8], root_bad[3 + 65], comp71[3 + 71];
        size_t k = 0;

        (void)state;
        memset(big, 'a', sizeof big);
        cn65[0] = SP_TAG_SUBJECT_CN, cn65[1] = 0, cn65[2] = 65;
        memset(cn65 + 3, 'A', 65);
        key33[0] = SP_TAG_CFG_KEY, key33[1] = 0, key33[2] = 33;
        memset(key33 + 3, 'k', 33);
        val1025[0] = SP_TAG_CFG_KEY, val1025[1] = 0, val1025[2] = 1, val1025[3] = 'k';
        val1025[4] = SP_TAG_CFG_VALUE, val1025[5] = 0x04, val1025[6] = 0x01;
        memset(val1025 + 7, 'v', 1025);
        nonce31[0] = SP_TAG_NONCE, nonce31[1] = 0, nonce31[2] = 31;
        memset(nonce31 + 3, 1, 31);
        nonce33[0] = SP_TAG_NONCE, nonce33[1] = 0, nonce33[2] = 33;
        memset(nonce33 + 3, 1, 33);
        for (int i = 0; i < 33; i++) {
                uint8_t *q = pairs33 + 8 * i;

                q[0] = SP_TAG_CFG_KEY, q[1] = 0, q[2] = 2, q[3] = (uint8_t)('a' + i / 26), q[4] = (uint8_t)('a' + i % 26);
                q[5] = SP_TAG_CFG_VALUE, q[6] = 0, q[7] = 0;
        }
        root_bad[0] = SP_TAG_ROOT_PUBKEY, root_bad[1] = 0, root_bad[2] = 65;
        memset(root_bad + 3, 0x02, 65);
        comp71[0] = SP_TAG_COMPRESSED_CERT, comp71[1] = 0, comp71[2] = 71;
        memset(comp71 + 3, 0x11, 71);

#define B(...) (const uint8_t[]) { __VA_ARGS__ }, sizeof((const uint8_t[]) { __VA_ARGS__ })
        const struct bad_case cases[] = {
                { "HELLO without MAX_FRAME", SP_MSG_HELLO, B(0x05, 0, 1, 1), SP_ERR_BAD_PAYLOAD },
                { "HELLO MAX_FRAME 63", SP_MSG_HELLO, B(0x05, 0, 1, 1, 0x07, 0, 2, 0, 63), SP_ERR_BAD_PAYLOAD },
                { "HELLO MAX_FRAME 3 bytes", SP_MSG_HELLO, B(0x05, 0, 1, 1, 0x07, 0, 3, 0, 1, 0), SP_ERR_BAD_PAYLOAD },
                { "HELLO no version list", SP_MSG_HELLO, B(0x05, 0, 0, 0x07, 0, 2, 16, 0), SP_ERR_BAD_PAYLOAD },
                { "HELLO only v2", SP_MSG_HELLO, B(0x05, 0, 1, 2, 0x07, 0, 2, 16, 0), SP_ERR_VERSION },
                { "HELLO truncated TLV", SP_MSG_HELLO, B(0x05, 0, 1, 1, 0x07, 0, 2, 16), SP_ERR_BAD_PAYLOAD },
                { "GET_CSR NEW_KEY=2", SP_MSG_GET_CSR, B(0x10, 0, 1, 2), SP_ERR_BAD_PAYLOAD },
                { "GET_CSR NEW_KEY 2 bytes", SP_MSG_GET_CSR, B(0x10, 0, 2, 0, 1), SP_ERR_BAD_PAYLOAD },
                { "GET_CSR empty CN", SP_MSG_GET_CSR, B(0x12, 0, 0), SP_ERR_BAD_PAYLOAD },
                { "GET_CSR CN with LF", SP_MSG_GET_CSR, B(0x12, 0, 2, 'a', '\n'), SP_ERR_BAD_PAYLOAD },
                { "GET_CSR CN 65", SP_MSG_GET_CSR, cn65, sizeof cn65, SP_ERR_BAD_PAYLOAD },
                { "PUT_CERT nothing", SP_MSG_PUT_CERT, B(0x21, 0, 1, 0x30), SP_ERR_BAD_PAYLOAD },
                { "PUT_CERT empty DER", SP_MSG_PUT_CERT, B(0x20, 0, 0), SP_ERR_BAD_PAYLOAD },
                { "PUT_CERT compressed 71", SP_MSG_PUT_CERT, comp71, sizeof comp71, SP_ERR_BAD_PAYLOAD },
                { "PUT_CERT root key not 04", SP_MSG_PUT_CERT, root_bad, sizeof root_bad, SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG nothing", SP_MSG_PUT_CONFIG, NULL, 0, SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG value first", SP_MSG_PUT_CONFIG, B(0x31, 0, 1, 'v', 0x30, 0, 1, 'k'), SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG key alone", SP_MSG_PUT_CONFIG, B(0x30, 0, 1, 'k'), SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG two keys", SP_MSG_PUT_CONFIG, B(0x30, 0, 1, 'k', 0x30, 0, 1, 'j', 0x31, 0, 0),
                  SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG two values", SP_MSG_PUT_CONFIG, B(0x30, 0, 1, 'k', 0x31, 0, 0, 0x31, 0, 0),
                  SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG duplicate key", SP_MSG_PUT_CONFIG,
                  B(0x30, 0, 1, 'k', 0x31, 0, 0, 0x30, 0, 1, 'k', 0x31, 0, 0), SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG key with space", SP_MSG_PUT_CONFIG, B(0x30, 0, 2, 'k', ' ', 0x31, 0, 0),
                  SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG empty key", SP_MSG_PUT_CONFIG, B(0x30, 0, 0, 0x31, 0, 0), SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG key 33", SP_MSG_PUT_CONFIG, key33, sizeof key33, SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG value 1025", SP_MSG_PUT_CONFIG, val1025, sizeof val1025, SP_ERR_BAD_PAYLOAD },
                { "PUT_CONFIG 33 pairs", SP_MSG_PUT_CONFIG, pairs33, sizeof pairs33, SP_ERR_TOO_LARGE },
                { "PROVE no nonce", SP_MSG_PROVE, NULL, 0, SP_ERR_BAD_PAYLOAD },
                { "PROVE nonce 31", SP_MSG_PROVE, nonce31, sizeof nonce31, SP_ERR_BAD_PAYLOAD },
                { "PROVE nonce 33", SP_MSG_PROVE, nonce33, sizeof nonce33, SP_ERR_BAD_PAYLOAD },
                { "RESULT missing", SP_MSG_RESULT, NULL, 0, SP_ERR_BAD_PAYLOAD },
                { "RESULT 3", SP_MSG_RESULT, B(0x52, 0, 1, 3), SP_ERR_BAD_PAYLOAD },
                { "RESULT text 129", SP_MSG_RESULT, NULL, 0, SP_ERR_BAD_PAYLOAD },     /* filled below */
                { "PING truncated", SP_MSG_PING, B(0x60, 0, 5, 1), SP_ERR_BAD_PAYLOAD },
                { "unknown type 0x09", 0x09, NULL, 0, SP_ERR_UNKNOWN_TYPE },
                { "unknown type 0x00", 0x00, NULL, 0, SP_ERR_UNKNOWN_TYPE },
                { "unknown type 0x7f", 0x7f, NULL, 0, SP_ERR_UNKNOWN_TYPE },
        };
#undef B
        uint8_t text129[4 + 3 + 129] = { SP_TAG_RESULT, 0, 1, 0, SP_TAG_ERROR_TEXT, 0, 129 };

        memset(text129 + 7, 't', 129);
        rig_init(&g);
        hello(&g);
        /* a fresh board for the PROVE cases needs a certificate first */
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, big, put_cert_payload(big, sizeof big), &r), SP_MSG_CERT_OK);
        g.s.n_store_certs = 0;
        g.s.n_identify = 0;

        for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
                const struct bad_case *c = &cases[k];
                const uint8_t *pl = c->payload;
                size_t len = c->len;

                if (strcmp(c->what, "RESULT text 129") == 0) {
                        pl = text129;
                        len = sizeof text129;
                }
                print_message("# case: %s\n", c->what);
                assert_int_equal(xfer(&g, c->type, pl, len, &r), SP_MSG_ERROR);
                assert_int_equal(error_code(&r), c->want);
                /* no callback ran for a rejected request */
                assert_int_equal(g.s.n_identify + g.s.n_get_csr + g.s.n_store_certs + g.s.n_store_config +
                                 g.s.n_prove + g.s.n_lock + g.s.n_result, 0);
                /* a rejected HELLO ends the session: start a new one */
                if (c->type == SP_MSG_HELLO) {
                        hello(&g);
                        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, big, put_cert_payload(big, sizeof big), &r),
                                         SP_MSG_CERT_OK);
                        g.s.n_store_certs = 0;
                        g.s.n_identify = 0;
                }
        }

        /* wrong version byte on a request: SP_ERR_VERSION, header version 1 */
        {
                static uint8_t wire[64];
                struct sp_frame f = { .version = 2, .type = SP_MSG_PING, .seq = 0x77 };
                ssize_t n = sp_frame_encode(&f, wire, sizeof wire);

                spb_feed(&g.b, wire, (size_t)n);
                decode_output(&g, &r);
                assert_int_equal(r.n, 1);
                assert_int_equal(r.f.version, 1);
                assert_int_equal(r.f.seq, 0x77);
                assert_int_equal(error_code(&r), SP_ERR_VERSION);
        }
        /* unknown tags are ignored; duplicates: the first wins */
        {
                const uint8_t pl[] = { 0x99, 0, 2, 1, 2, 0x52, 0, 1, 2, 0x52, 0, 1, 7 };

                assert_int_equal(xfer(&g, SP_MSG_RESULT, pl, sizeof pl, &r), SP_MSG_RESULT_OK);
                assert_int_equal(g.s.last_result, SP_RESULT_FAILED);
        }
        /* a response type is never answered */
        assert_int_equal(xfer_seq(&g, SP_MSG_IDENT, 0, 0x99, NULL, 0, &r), 0);
        assert_int_equal(xfer_seq(&g, SP_MSG_ERROR, 0, 0x99, NULL, 0, &r), 0);
}

static const uint8_t big_csr[FRAME];

/* get_csr() callbacks that succeed but report a length the board must not send. */
static int get_csr_over_cap(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                            size_t *ret_len) {
        int r = stub_get_csr(ctx, new_key, cn, cn_len, der, cap, ret_len);

        if (r == 0)
                *ret_len = cap + 1;
        return r;
}

static int get_csr_empty(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                         size_t *ret_len) {
        int r = stub_get_csr(ctx, new_key, cn, cn_len, der, cap, ret_len);

        if (r == 0)
                *ret_len = 0;
        return r;
}

static void test_callback_errors(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512];
        unsigned n;

        (void)state;
        rig_init(&g);
        g.s.fail_identify = SP_ERR_SE_FAILURE;
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, FRAME), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_SE_FAILURE);
        g.s.fail_identify = 0;
        /* an invalid identity (model too long) is the firmware's bug: INTERNAL */
        g.s.model = "0123456789012345678901234567890123456789012345678901234567890123456789";
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, FRAME), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        g.s.model = "m";
        g.s.serial_len = 0;
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, FRAME), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        g.s.serial_len = 9;
        hello(&g);

        /* GET_CSR without a key and without NEW_KEY: the callback's NO_KEY */
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_NO_KEY);
        /* negative or huge callback results are INTERNAL */
        g.s.fail_get_csr = -5;
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        g.s.fail_get_csr = 0x10000;
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        g.s.fail_get_csr = 0x8001;      /* vendor code passes through */
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), 0x8001);
        g.s.fail_get_csr = 0;
        /* a CSR that claims more bytes than it may write */
        g.s.have_key = true;
        g.s.csr = big_csr;
        g.s.csr_len = FRAME;    /* larger than cap: the stub refuses, TOO_LARGE */
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_TOO_LARGE);
        g.s.csr = NULL;
        /* the callback succeeds but claims cap + 1 bytes, or none: the board's own guard, INTERNAL */
        g.ops.get_csr = get_csr_over_cap;
        n = g.s.n_get_csr;
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        assert_int_equal(g.s.n_get_csr, n + 1);
        g.ops.get_csr = get_csr_empty;
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        assert_int_equal(g.s.n_get_csr, n + 2);
        g.ops.get_csr = stub_get_csr;
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, NULL, 0, &r), SP_MSG_CSR);

        g.s.fail_store_certs = SP_ERR_STORAGE;
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_STORAGE);
        /* the failed PUT_CERT leaves no certificate: PROVE says so */
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 1), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_NO_CERT);
        g.s.fail_store_certs = 0;
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, put_cert_payload(p, sizeof p), &r), SP_MSG_CERT_OK);
        g.s.fail_prove = SP_ERR_NO_CERT;
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 1), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_NO_CERT);
        /* failed PROVE does not allow LOCK */
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_STATE);
        g.s.fail_prove = 0;
        assert_int_equal(xfer(&g, SP_MSG_PROVE, p, nonce_payload(p, 1), &r), SP_MSG_PROOF);
        g.s.fail_lock = SP_ERR_SE_FAILURE;
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_SE_FAILURE);
        g.s.fail_store_config = SP_ERR_STORAGE;
        {
                const uint8_t pl[] = { 0x30, 0, 1, 'a', 0x31, 0, 0, 0x30, 0, 1, 'b', 0x31, 0, 0 };

                assert_int_equal(xfer(&g, SP_MSG_PUT_CONFIG, pl, sizeof pl, &r), SP_MSG_ERROR);
                assert_int_equal(error_code(&r), SP_ERR_STORAGE);
                assert_int_equal(g.s.n_store_config, 1);        /* stopped at the first failure */
        }
}

static int identify_no_key(void *ctx, struct spb_identity *ret) {
        int r = stub_identify(ctx, ret);

        ret->pubkey = NULL;
        return r;
}

static int cert_hash_cb(void *ctx, uint8_t ret[SP_SHA256_LEN]) {
        (void)ctx;
        memset(ret, 0xcc, SP_SHA256_LEN);
        return 0;
}

static void test_csr_needs_pubkey_and_cert_hash_cb(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512], h[32];
        struct sp_tlv_writer w;

        (void)state;
        rig_init(&g);
        g.ops.identify = identify_no_key;
        hello(&g);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_NO_KEY);

        /* compressed-only PUT_CERT: CERT_HASH from ops->cert_hash, or none without it */
        sp_tlv_writer_init(&w, p, sizeof p);
        memset(h, 0x11, sizeof h);
        {
                uint8_t comp[72];

                memset(comp, 0x22, sizeof comp);
                sp_tlv_put(&w, SP_TAG_COMPRESSED_CERT, comp, sizeof comp);
        }
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, w.len, &r), SP_MSG_CERT_OK);
        assert_int_equal(sp_cert_ok_parse(&r.f, h), -ENOENT);
        assert_true(g.s.stored_compressed);
        g.ops.cert_hash = cert_hash_cb;
        assert_int_equal(xfer(&g, SP_MSG_PUT_CERT, p, w.len, &r), SP_MSG_CERT_OK);
        assert_int_equal(sp_cert_ok_parse(&r.f, h), 0);
        assert_int_equal(h[0], 0xcc);
}

static void test_frame_errors(void **state) {
        static struct rig g;
        static uint8_t wire[SP_ENCODED_MAX(FRAME + 200)];
        struct resp r;
        struct sp_frame f = { .version = 1, .type = SP_MSG_PING, .seq = 5 };
        ssize_t n;

        (void)state;
        rig_init(&g);
        n = sp_frame_encode(&f, wire, sizeof wire);
        /* bad CRC: silence */
        wire[3] ^= 0x10;
        spb_feed(&g.b, wire, (size_t)n);
        decode_output(&g, &r);
        assert_int_equal(r.n, 0);
        assert_int_equal(spb_get_stats(&g.b)->bad_crc, 1);
        /* garbage and a truncated block: silence */
        spb_feed(&g.b, (const uint8_t *)"\x00garbage\x00\x05\x01\x00", 12);
        decode_output(&g, &r);
        assert_int_equal(r.n, 0);
        assert_int_equal(spb_get_stats(&g.b)->bad_format, 2);
        /* oversize: silence, counted once */
        {
                static uint8_t payload[FRAME];

                memset(payload, 0x41, sizeof payload);
                f.payload = payload;
                f.len = FRAME - SP_FRAME_OVERHEAD + 1;
                n = sp_frame_encode(&f, wire, sizeof wire);
                spb_feed(&g.b, wire, (size_t)n);
                decode_output(&g, &r);
                assert_int_equal(r.n, 0);
                assert_int_equal(spb_get_stats(&g.b)->oversize, 1);
                /* exactly the max frame is fine (PONG with the echo does not fit 64 → TOO_LARGE) */
                f.len = FRAME - SP_FRAME_OVERHEAD;
                n = sp_frame_encode(&f, wire, sizeof wire);
                spb_feed(&g.b, wire, (size_t)n);
                decode_output(&g, &r);
                assert_int_equal(r.n, 1);
                assert_int_equal(error_code(&r), SP_ERR_BAD_PAYLOAD);   /* 0x41 0x41 0x41… is not TLV */
        }
        /* right CRC, wrong length field: ERROR BAD_FRAME with the seq */
        {
                uint8_t frame[16] = { 1, SP_MSG_PING, 0, 0x01, 0x02, 0x00, 0x09, 0x60, 0x00, 0x00 };
                uint32_t crc = sp_crc32(0, frame, 10);
                uint8_t raw[40];
                size_t w = 0, code_at;

                frame[10] = (uint8_t)(crc >> 24), frame[11] = (uint8_t)(crc >> 16);
                frame[12] = (uint8_t)(crc >> 8), frame[13] = (uint8_t)crc;
                raw[w++] = 0;
                code_at = w++;
                for (size_t i = 0; i < 14; i++) {
                        if (frame[i] == 0) {
                                raw[code_at] = (uint8_t)(w - code_at);
                                code_at = w++;
                        } else
                                raw[w++] = frame[i];
                }
                raw[code_at] = (uint8_t)(w - code_at);
                raw[w++] = 0;
                spb_feed(&g.b, raw, w);
                decode_output(&g, &r);
                assert_int_equal(r.n, 1);
                assert_int_equal(r.f.seq, 0x0102);
                assert_int_equal(error_code(&r), SP_ERR_BAD_FRAME);
        }
        /* after all that, a good request works; byte by byte too */
        f.payload = NULL;
        f.len = 0;
        f.seq = 6;
        n = sp_frame_encode(&f, wire, sizeof wire);
        for (ssize_t i = 0; i < n; i++)
                spb_feed(&g.b, wire + i, 1);
        decode_output(&g, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.f.type, SP_MSG_PONG);
}

static void test_response_limits(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512], echo[200];
        struct sp_tlv_writer w;

        (void)state;
        rig_init(&g);
        memset(echo, 0x65, sizeof echo);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, sizeof echo);
        /* before HELLO responses are limited to 64 bytes */
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_TOO_LARGE);
        assert_int_equal(xfer(&g, SP_MSG_PING, p, 3 + 50, &r), SP_MSG_ERROR);  /* 11 + 53 + … > 64 */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, 50);
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_PONG);      /* 11 + 53 = 64 */
        /* a station announcing 200: a 200-byte echo does not fit, 150 does */
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, 200), &r), SP_MSG_IDENT);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, 200);
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_TOO_LARGE);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, 150);
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_PONG);
        /* the CSR (plus PUBKEY) must fit the station's limit as well */
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, 80), &r), SP_MSG_IDENT);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_TOO_LARGE);
}

/* PROTOCOL.md §5.3, §6.2, §6.6 as clarified: a failed HELLO drops the old frame limit,
 * NEW_KEY=1 without KEYGEN and LOCK without LOCK are operations the board does not support. */
static void test_spec_clarifications(void **state) {
        static struct rig g;
        struct resp r;
        uint8_t p[512], echo[100];
        struct sp_tlv_writer w;

        (void)state;
        rig_init(&g);
        memset(echo, 0x65, sizeof echo);
        hello(&g);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, sizeof echo);
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_PONG);     /* 4096 in force */
        /* a HELLO without MAX_FRAME fails: the session and its 4096 are gone, 64 again */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_PROTO_VERSION, 1);
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_BAD_PAYLOAD);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, sizeof echo);
        assert_int_equal(xfer(&g, SP_MSG_PING, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_TOO_LARGE);

        /* no KEYGEN: NEW_KEY=1 is refused before the secure element is touched */
        g.s.caps = SP_CAP_LOCK;
        hello(&g);
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, p, w.len, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_UNKNOWN_TYPE);
        assert_int_equal(g.s.n_get_csr, 0);
        /* with KEYGEN the same request makes a key */
        g.s.caps = SP_CAP_KEYGEN | SP_CAP_LOCK;
        hello(&g);
        assert_int_equal(xfer(&g, SP_MSG_GET_CSR, p, w.len, &r), SP_MSG_CSR);
        assert_int_equal(g.s.n_get_csr, 1);
        assert_true(g.s.last_new_key);

        /* no LOCK support: UNKNOWN_TYPE in a session and out of one (not BAD_STATE) */
        g.ops.lock = NULL;
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_UNKNOWN_TYPE);
        spb_reset(&g.b);
        assert_int_equal(xfer(&g, SP_MSG_LOCK, NULL, 0, &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_UNKNOWN_TYPE);
}

/* A board with exactly sized buffers and guard bytes after each, fed a flood. */
static void test_buffers_never_overrun(void **state) {
        static uint8_t mem[3][SPB_TX_BUF(128) + 64];
        static struct stub s;
        static uint8_t wire[SP_ENCODED_MAX(600)], payload[600];
        struct spb_board b;
        uint32_t x = 99;

        (void)state;
        memset(mem, 0xa5, sizeof mem);
        stub_init(&s);
        assert_int_equal(spb_init(&b, &stub_ops, &s, mem[0], 128, mem[1], SPB_TX_BUF(128), mem[2], 128), SPB_OK);
        for (int round = 0; round < 3000; round++) {
                struct sp_frame f = { .version = 1, .seq = (uint16_t)(round / 2), .payload = payload };
                ssize_t n;

                x = x * 1103515245u + 12345u;
                f.type = (uint8_t)(1 + (x >> 8) % 9);
                f.len = (uint16_t)((x >> 16) % 200);
                for (size_t i = 0; i < f.len; i++) {
                        x = x * 1103515245u + 12345u;
                        payload[i] = (uint8_t)(x >> 24);
                }
                if (round % 7 == 0)
                        f.len = (uint16_t)(hello_payload(payload, (uint16_t)(64 + (x >> 20) % 600)));
                n = sp_frame_encode(&f, wire, sizeof wire);
                assert_true(n > 0);
                if (round % 5 == 0)
                        wire[1 + (x >> 4) % (size_t)(n - 2)] ^= (uint8_t)(1 + (x & 0x7f));
                spb_feed(&b, wire, (size_t)n);
                s.out_len = 0;
                assert_false(s.out_overflow);
        }
        for (size_t i = 128; i < sizeof mem[0]; i++)
                assert_int_equal(mem[0][i], 0xa5);
        for (size_t i = SPB_TX_BUF(128); i < sizeof mem[1]; i++)
                assert_int_equal(mem[1][i], 0xa5);
        for (size_t i = 128; i < sizeof mem[2]; i++)
                assert_int_equal(mem[2][i], 0xa5);
        assert_true(spb_get_stats(&b)->frames > 1000);
}

/* --- sp_client against spb_board ------------------------------------------ */

struct link {
        struct rig g;
        struct sp_client c;
        uint8_t cbuf[SP_ENCODED_MAX(FRAME)];
        struct sp_parser *p;
        int matched;
        int stale;
        struct sp_frame last;
        uint8_t last_payload[FRAME];
};

static int link_cb(const struct sp_frame *f, int error, void *userdata) {
        struct link *l = userdata;
        int m;

        assert_int_equal(error, 0);
        m = sp_client_match(&l->c, f);
        assert_true(m >= 0);
        if (m == 0) {
                l->stale++;
                return 0;
        }
        l->matched++;
        l->last = *f;
        memcpy(l->last_payload, f->payload, f->len);
        l->last.payload = l->last_payload;
        return 0;
}

/* Station → board; the board's answer is delivered unless @drop. */
static void link_send(struct link *l, const uint8_t *bytes, size_t len, bool drop) {
        spb_feed(&l->g.b, bytes, len);
        if (!drop)
                assert_int_equal(sp_parser_feed(l->p, l->g.s.out, l->g.s.out_len, link_cb, l),
                                 (ssize_t)l->g.s.out_len);
        l->g.s.out_len = 0;
}

static void test_client_board_retransmit(void **state) {
        static struct link l;
        static uint8_t late[1024];
        size_t late_len;
        uint8_t p[64];
        ssize_t n;
        struct sp_tlv_writer w;
        struct sp_ident id;

        (void)state;
        memset(&l, 0, sizeof l);
        rig_init(&l.g);
        assert_int_equal(sp_parser_new(&l.p, NULL), 0);
        sp_client_init(&l.c, l.cbuf, sizeof l.cbuf, 0xfffe);

        /* HELLO, answered */
        n = sp_client_request(&l.c, SP_MSG_HELLO, p, hello_payload(p, FRAME));
        link_send(&l, l.c.buf, (size_t)n, false);
        assert_int_equal(l.matched, 1);
        assert_int_equal(sp_ident_parse(&l.last, &id), 0);

        /* GET_CSR NEW_KEY=1: the answer is lost on the way */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        n = sp_client_request(&l.c, SP_MSG_GET_CSR, p, w.len);
        assert_int_equal(l.c.seq, 0xffff);
        spb_feed(&l.g.b, l.c.buf, (size_t)n);
        memcpy(late, l.g.s.out, l.g.s.out_len);         /* keep it: it arrives late below */
        late_len = l.g.s.out_len;
        l.g.s.out_len = 0;
        assert_int_equal(l.matched, 1);
        assert_true(l.c.pending);

        /* timeout: retransmit; the board replays, the key is generated once */
        n = sp_client_retransmit(&l.c);
        assert_true(n > 0);
        link_send(&l, l.c.buf, (size_t)n, false);
        assert_int_equal(l.matched, 2);
        assert_false(l.c.pending);
        assert_int_equal(l.last.type, SP_MSG_CSR);
        assert_int_equal(l.last.flags, SP_FLAG_REPLAY);
        assert_int_equal(l.g.s.n_get_csr, 1);

        /* the late original arrives after the station moved on: stale, ignored */
        n = sp_client_request(&l.c, SP_MSG_PING, NULL, 0);
        assert_int_equal(l.c.seq, 0x0000);              /* wrapped */
        assert_int_equal(sp_parser_feed(l.p, late, late_len, link_cb, &l), (ssize_t)late_len);
        assert_int_equal(l.stale, 1);
        assert_int_equal(l.matched, 2);
        assert_true(l.c.pending);
        link_send(&l, l.c.buf, (size_t)n, false);
        assert_int_equal(l.matched, 3);
        assert_int_equal(l.last.type, SP_MSG_PONG);

        /* the request itself is lost on a noisy line (corrupted): no answer, retransmit works */
        n = sp_client_request(&l.c, SP_MSG_PUT_CERT, late /* any bytes */, 0);
        {
                uint8_t corrupt[64];

                memcpy(corrupt, l.c.buf, (size_t)n);
                corrupt[4] ^= 0x21;
                link_send(&l, corrupt, (size_t)n, false);
                assert_int_equal(l.matched, 3);
        }
        n = sp_client_retransmit(&l.c);
        link_send(&l, l.c.buf, (size_t)n, false);
        assert_int_equal(l.matched, 4);
        assert_int_equal(l.last.type, SP_MSG_ERROR);    /* no certificate in the payload */
        assert_int_equal(l.last.flags, 0);              /* first execution, not a replay */
        sp_parser_free(l.p);
}

/* --- output in chunks, asynchronous mode ---------------------------------- */

/* The same requests through a board with a whole-frame @tx and one with SPB_TX_MIN bytes. */
static void test_small_tx(void **state) {
        static struct rig big, small;
        static uint8_t p[1200];
        struct sp_tlv_writer w;
        uint8_t echo[1100];
        struct resp r;
        size_t n;

        (void)state;
        rig_init(&big);
        rig_init(&small);
        assert_int_equal(spb_init(&small.b, &small.ops, &small.s, small.rx, sizeof small.rx, small.tx, SPB_TX_MIN,
                                  small.work, sizeof small.work), SPB_OK);
        /* Runs of 254 non-zero bytes and more, zeros at block ends, a trailing zero. */
        for (size_t i = 0; i < sizeof echo; i++)
                echo[i] = (uint8_t)(i < 600 ? 1 + i % 255 : (i % 254 == 0 ? 0 : i));
        echo[sizeof echo - 1] = 0;
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_ECHO, echo, sizeof echo);
        for (int k = 0; k < 2; k++) {
                struct rig *g = k ? &small : &big;

                hello(g);
                g->s.n_write = 0;
                n = w.len;
                spb_feed(&g->b, NULL, 0);
                assert_int_equal(xfer(g, SP_MSG_PING, p, n, &r), SP_MSG_PONG);
                assert_int_equal(r.f.len, n);
                assert_memory_equal(r.payload, p, n);
        }
        /* the small board wrote the frame in chunks of at most 8 bytes, the big one in one piece */
        assert_int_equal(big.s.n_write, 1);
        assert_true(small.s.n_write > 1000 / SPB_TX_MIN);
        /* byte for byte the same encoding */
        hello(&big);
        hello(&small);
        big.s.out_len = small.s.out_len = 0;
        {
                static uint8_t wire[SP_ENCODED_MAX(FRAME)];
                struct sp_frame f = { .version = 1, .type = SP_MSG_PING, .seq = 7, .len = (uint16_t)n, .payload = p };
                ssize_t m = sp_frame_encode(&f, wire, sizeof wire);

                assert_true(m > 0);
                spb_feed(&big.b, wire, (size_t)m);
                spb_feed(&small.b, wire, (size_t)m);
        }
        assert_true(big.s.out_len > n);
        assert_int_equal(big.s.out_len, small.s.out_len);
        assert_memory_equal(big.s.out, small.s.out, big.s.out_len);
}

static int async_get_csr(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                         size_t *ret_len) {
        struct rig *g = ctx;

        (void)new_key;
        (void)cn;
        (void)cn_len;
        (void)ret_len;
        g->s.n_get_csr++;
        g->s.have_key = true;
        g->n_pending++;
        g->pend_der = der;
        g->pend_cap = cap;
        return SPB_PENDING;
}

static int async_store_certs(void *ctx, const struct spb_certs *c) {
        struct rig *g = ctx;

        g->s.n_store_certs++;
        g->n_pending++;
        g->pend_cert = c->device;
        g->pend_cert_len = c->device_len;
        return SPB_PENDING;
}

static int async_store_config(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        struct rig *g = ctx;

        (void)key;
        (void)key_len;
        g->s.n_store_config++;
        g->n_pending++;
        g->pend_value = value;
        g->pend_value_len = value_len;
        return SPB_PENDING;
}

static int async_prove(void *ctx, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                       uint8_t ret_sig[SP_SIG_LEN]) {
        struct rig *g = ctx;

        (void)nonce;
        g->s.n_prove++;
        g->n_pending++;
        g->pend_hash = ret_hash;
        g->pend_sig = ret_sig;
        return SPB_PENDING;
}

static int async_lock(void *ctx) {
        struct rig *g = ctx;

        g->s.n_lock++;
        g->n_pending++;
        return SPB_PENDING;
}

static void async_rig(struct rig *g) {
        rig_init(g);
        g->ops.get_csr = async_get_csr;
        g->ops.store_certs = async_store_certs;
        g->ops.store_config = async_store_config;
        g->ops.prove = async_prove;
        g->ops.lock = async_lock;
        g->ops.cert_hash = NULL;
        hello(g);
}

/* A request whose callback went pending: nothing is sent until spb_complete(). */
static void send_pending(struct rig *g, uint8_t type, const void *payload, size_t len) {
        struct resp r;
        unsigned before = g->n_pending;

        assert_int_equal(xfer_seq(g, type, 0, g->seq++, payload, len, &r), 0);
        assert_int_equal(g->n_pending, before + 1);
        assert_true(spb_pending(&g->b));
}

static void complete(struct rig *g, int result, size_t csr_len, struct resp *r) {
        assert_int_equal(spb_complete(&g->b, result, csr_len), SPB_OK);
        decode_output(g, r);
}

static void test_async_session(void **state) {
        static struct rig g;
        static const uint8_t csr[] = { 0x30, 0x03, 0x02, 0x01, 0x07 };
        static uint8_t wire[SP_ENCODED_MAX(FRAME)];
        uint8_t p[512], ping[64], want[32];
        struct sp_tlv_writer w;
        struct sp_proof proof;
        struct sp_frame f;
        struct resp r;
        const uint8_t *der;
        size_t der_len, n;
        ssize_t m;

        (void)state;
        async_rig(&g);
        assert_int_equal(spb_complete(&g.b, 0, 0), SPB_E_INVAL);       /* nothing pending */

        /* GET_CSR with a new key: the "key generation" finishes later */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
        send_pending(&g, SP_MSG_GET_CSR, p, w.len);
        assert_true(g.pend_cap >= sizeof csr);

        /* Meanwhile the UART keeps delivering: a PING is dropped, not answered, not decoded into @rx. */
        sp_tlv_writer_init(&w, ping, sizeof ping);
        sp_tlv_put(&w, SP_TAG_ECHO, "x", 1);
        f = (struct sp_frame){ .version = 1, .type = SP_MSG_PING, .seq = 0x0100, .len = (uint16_t)w.len,
                               .payload = ping };
        m = sp_frame_encode(&f, wire, sizeof wire);
        assert_true(m > 0);
        spb_feed(&g.b, wire, (size_t)m);
        assert_int_equal(g.s.out_len, 0);
        assert_int_equal(spb_get_stats(&g.b)->dropped_busy, (uint32_t)m);
        assert_true(spb_pending(&g.b));

        /* The firmware writes the DER where get_csr() was told to, then completes. */
        memcpy(g.pend_der, csr, sizeof csr);
        complete(&g, 0, sizeof csr, &r);
        assert_false(spb_pending(&g.b));
        assert_int_equal(r.n, 1);
        assert_int_equal(r.f.type, SP_MSG_CSR);
        assert_int_equal(sp_csr_parse(&r.f, &der, &der_len), 0);
        assert_int_equal(der_len, sizeof csr);
        assert_memory_equal(der, csr, sizeof csr);
        assert_int_equal(spb_complete(&g.b, 0, 0), SPB_E_INVAL);
        /* the station's retransmission is answered from the cache, no callback */
        assert_int_equal(xfer_seq(&g, SP_MSG_GET_CSR, SP_FLAG_RETRANSMIT, (uint16_t)(g.seq - 1), p, 4, &r), 1);
        assert_int_equal(r.f.type, SP_MSG_CSR);
        assert_true(r.f.flags & SP_FLAG_REPLAY);
        assert_int_equal(g.s.n_get_csr, 1);
        /* and the line works again */
        assert_int_equal(xfer(&g, SP_MSG_PING, ping, w.len, &r), SP_MSG_PONG);

        /* PUT_CERT: the certificate stays readable in @rx while the flash write runs */
        n = put_cert_payload(p, sizeof p);
        send_pending(&g, SP_MSG_PUT_CERT, p, n);
        spb_feed(&g.b, wire, (size_t)m);        /* would overwrite @rx if it were decoded */
        assert_int_equal(g.pend_cert_len, sizeof cert_der);
        assert_memory_equal(g.pend_cert, cert_der, sizeof cert_der);
        complete(&g, 0, 0, &r);
        assert_int_equal(r.f.type, SP_MSG_CERT_OK);
        spb_sha256(cert_der, sizeof cert_der, want);
        assert_int_equal(r.f.len, 35);
        assert_memory_equal(r.payload + 3, want, 32);

        /* PUT_CONFIG: each pair goes pending in turn */
        sp_tlv_writer_init(&w, p, sizeof p);
        sp_tlv_put(&w, SP_TAG_CFG_KEY, "wifi.ssid", 9);
        sp_tlv_put(&w, SP_TAG_CFG_VALUE, "line-3", 6);
        sp_tlv_put(&w, SP_TAG_CFG_KEY, "mqtt.host", 9);
        sp_tlv_put(&w, SP_TAG_CFG_VALUE, "broker.local", 12);
        send_pending(&g, SP_MSG_PUT_CONFIG, p, w.len);
        assert_int_equal(g.pend_value_len, 6);
        assert_memory_equal(g.pend_value, "line-3", 6);
        complete(&g, 0, 0, &r);
        assert_int_equal(r.n, 0);               /* the second pair is pending now */
        assert_true(spb_pending(&g.b));
        assert_int_equal(g.s.n_store_config, 2);
        assert_int_equal(g.pend_value_len, 12);
        assert_memory_equal(g.pend_value, "broker.local", 12);
        complete(&g, 0, 0, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.f.type, SP_MSG_CONFIG_OK);

        /* PROVE: hash and signature written in place after the callback returned */
        send_pending(&g, SP_MSG_PROVE, p, nonce_payload(p, 0x5a));
        memcpy(g.pend_hash, want, 32);
        memcpy(g.pend_sig, g.s.sig, SP_SIG_LEN);
        complete(&g, 0, 0, &r);
        assert_int_equal(r.f.type, SP_MSG_PROOF);
        assert_int_equal(sp_proof_parse(&r.f, &proof), 0);
        assert_memory_equal(proof.signature, g.s.sig, SP_SIG_LEN);
        assert_memory_equal(proof.cert_hash, want, 32);

        /* LOCK fails in the secure element */
        send_pending(&g, SP_MSG_LOCK, NULL, 0);
        complete(&g, SP_ERR_SE_FAILURE, 0, &r);
        assert_int_equal(error_code(&r), SP_ERR_SE_FAILURE);
        /* ... then works; a completion that answers SPB_PENDING again is the firmware's bug */
        send_pending(&g, SP_MSG_LOCK, NULL, 0);
        complete(&g, SPB_PENDING, 0, &r);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        send_pending(&g, SP_MSG_LOCK, NULL, 0);
        complete(&g, 0, 0, &r);
        assert_int_equal(r.f.type, SP_MSG_LOCKED);
        assert_int_equal(g.s.n_lock, 3);
}

static void test_async_edges(void **state) {
        static struct rig g;
        static uint8_t wire[SP_ENCODED_MAX(FRAME)];
        uint8_t p[64], ping[64];
        struct sp_tlv_writer w;
        struct sp_frame f;
        struct resp r;
        ssize_t m;

        (void)state;
        async_rig(&g);

        /* A completed CSR whose length is outside 1..cap is the firmware's bug. */
        send_pending(&g, SP_MSG_GET_CSR, p, 0);
        complete(&g, 0, g.pend_cap + 1, &r);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        send_pending(&g, SP_MSG_GET_CSR, p, 0);
        complete(&g, 0, 0, &r);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);

        /* Input that stopped inside a frame while pending: the rest of it is skipped, the next frame answered. */
        sp_tlv_writer_init(&w, ping, sizeof ping);
        sp_tlv_put(&w, SP_TAG_ECHO, "abc", 3);
        f = (struct sp_frame){ .version = 1, .type = SP_MSG_PING, .seq = 0x0200, .len = (uint16_t)w.len,
                               .payload = ping };
        m = sp_frame_encode(&f, wire, sizeof wire);
        assert_true(m > 4);
        send_pending(&g, SP_MSG_GET_CSR, p, 0);
        spb_feed(&g.b, wire, 4);                /* delimiter and the start of a PING */
        memset(g.pend_der, 0x30, 1);
        complete(&g, 0, 1, &r);
        assert_int_equal(r.f.type, SP_MSG_CSR);
        spb_feed(&g.b, wire + 4, (size_t)m - 4);        /* its rest: no answer, no bad frame */
        decode_output(&g, &r);
        assert_int_equal(r.n, 0);
        assert_int_equal(spb_get_stats(&g.b)->bad_crc, 0);
        assert_int_equal(spb_get_stats(&g.b)->bad_format, 0);
        /* all but the final delimiter, which ended the skipped frame */
        assert_int_equal(spb_get_stats(&g.b)->dropped_busy, (uint32_t)m - 1);
        assert_int_equal(xfer(&g, SP_MSG_PING, ping, w.len, &r), SP_MSG_PONG);

        /* spb_reset() cancels a pending request: its completion is refused and sends nothing. */
        send_pending(&g, SP_MSG_PROVE, p, nonce_payload(p, 1));
        spb_reset(&g.b);
        assert_false(spb_pending(&g.b));
        assert_int_equal(spb_complete(&g.b, 0, 0), SPB_E_INVAL);
        decode_output(&g, &r);
        assert_int_equal(r.n, 0);

        /* A HELLO while a request is pending is dropped too (the board is busy). */
        hello(&g);
        send_pending(&g, SP_MSG_PROVE, p, nonce_payload(p, 2));
        assert_int_equal(xfer_seq(&g, SP_MSG_HELLO, 0, 0x0300, p, hello_payload(p, FRAME), &r), 0);
        complete(&g, SP_ERR_NO_CERT, 0, &r);
        assert_int_equal(error_code(&r), SP_ERR_NO_CERT);

        /* identify() cannot go pending: SPB_PENDING from it is a bug, answered SP_ERR_INTERNAL. */
        g.s.fail_identify = SPB_PENDING;
        assert_int_equal(xfer(&g, SP_MSG_HELLO, p, hello_payload(p, FRAME), &r), SP_MSG_ERROR);
        assert_int_equal(error_code(&r), SP_ERR_INTERNAL);
        assert_false(spb_pending(&g.b));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_init_args),
                cmocka_unit_test(test_full_session),
                cmocka_unit_test(test_replay),
                cmocka_unit_test(test_hello_resets),
                cmocka_unit_test(test_state_machine),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_callback_errors),
                cmocka_unit_test(test_csr_needs_pubkey_and_cert_hash_cb),
                cmocka_unit_test(test_frame_errors),
                cmocka_unit_test(test_response_limits),
                cmocka_unit_test(test_spec_clarifications),
                cmocka_unit_test(test_buffers_never_overrun),
                cmocka_unit_test(test_client_board_retransmit),
                cmocka_unit_test(test_small_tx),
                cmocka_unit_test(test_async_session),
                cmocka_unit_test(test_async_edges),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
