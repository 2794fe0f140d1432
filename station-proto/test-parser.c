/* SPDX-License-Identifier: MIT */
/* Unit tests of the host library: parser, encoder, typed messages, client request tracking. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "station-proto/sp.h"

static uint32_t prng_state = 0xc0ffee01u;

static uint32_t prng(void) {
        prng_state ^= prng_state << 13;
        prng_state ^= prng_state >> 17;
        prng_state ^= prng_state << 5;
        return prng_state;
}

/* --- a recorder callback -------------------------------------------------- */

#define MAX_REC 64

struct rec {
        size_t n;
        int error[MAX_REC];
        struct sp_frame f[MAX_REC];
        uint8_t payload[MAX_REC][4096];
        int stop_after;                 /* return -ECANCELED after this many (0 = never) */
};

static int record(const struct sp_frame *f, int error, void *userdata) {
        struct rec *r = userdata;

        assert_true(r->n < MAX_REC);
        r->error[r->n] = error;
        if (f) {
                assert_int_equal(error, 0);
                r->f[r->n] = *f;
                memcpy(r->payload[r->n], f->payload, f->len);
                r->f[r->n].payload = r->payload[r->n];
        } else {
                assert_true(error < 0);
                memset(&r->f[r->n], 0, sizeof r->f[r->n]);
        }
        r->n++;
        if (r->stop_after && (int)r->n == r->stop_after)
                return -ECANCELED;
        return 0;
}

static void assert_same(const struct rec *a, const struct rec *b) {
        assert_int_equal(a->n, b->n);
        for (size_t i = 0; i < a->n; i++) {
                assert_int_equal(a->error[i], b->error[i]);
                assert_int_equal(a->f[i].version, b->f[i].version);
                assert_int_equal(a->f[i].type, b->f[i].type);
                assert_int_equal(a->f[i].flags, b->f[i].flags);
                assert_int_equal(a->f[i].seq, b->f[i].seq);
                assert_int_equal(a->f[i].len, b->f[i].len);
                assert_memory_equal(a->payload[i], b->payload[i], a->f[i].len);
        }
}

static size_t encode(uint8_t type, uint16_t seq, const void *payload, size_t len, uint8_t *out, size_t cap) {
        struct sp_frame f = { .version = 1, .type = type, .seq = seq, .len = (uint16_t)len, .payload = payload };
        ssize_t n = sp_frame_encode(&f, out, cap);

        assert_true(n > 0);
        return (size_t)n;
}

/* --- every message round-trips ------------------------------------------- */

struct msg {
        uint8_t type;
        uint8_t payload[1200];
        size_t len;
};

static void build_all(struct msg *m, size_t *ret_n) {
        struct sp_tlv_writer w;
        uint8_t key[SP_PUBKEY_LEN], big[900], nonce[32], sig[64], hash[32], comp[72];
        size_t n = 0;

        key[0] = 0x04;
        for (size_t i = 1; i < sizeof key; i++)
                key[i] = (uint8_t)i;
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t)(i * 7);
        big[0] = 0x30;
        memset(nonce, 0x4e, sizeof nonce);
        memset(sig, 0x51, sizeof sig);
        memset(hash, 0x48, sizeof hash);
        memset(comp, 0x43, sizeof comp);

#define MSG(t) for (m[n].type = (t), sp_tlv_writer_init(&w, m[n].payload, sizeof m[n].payload); w.buf; \
                    m[n].len = w.len, assert_int_equal(w.error, 0), n++, w.buf = NULL)
        MSG(SP_MSG_HELLO) {
                sp_tlv_put(&w, SP_TAG_PROTO_VERSION, "\x01\x02", 2);
                sp_tlv_put_u16(&w, SP_TAG_MAX_FRAME, 4096);
        }
        MSG(SP_MSG_IDENT) {
                sp_tlv_put(&w, SP_TAG_SERIAL, "\x01\x23\x45\x67\x89\xab\xcd\xef\xee", 9);
                sp_tlv_put_str(&w, SP_TAG_MODEL, "devkit");
                sp_tlv_put_str(&w, SP_TAG_FW_VERSION, "2.0");
                sp_tlv_put_u32(&w, SP_TAG_CAPS, SP_CAP_KEYGEN | SP_CAP_LOCK);
                sp_tlv_put_u8(&w, SP_TAG_PROTO_VERSION, 1);
                sp_tlv_put_u16(&w, SP_TAG_MAX_FRAME, 2048);
                sp_tlv_put(&w, SP_TAG_PUBKEY, key, sizeof key);
                sp_tlv_put_u8(&w, SP_TAG_LOCKED, 1);
        }
        MSG(SP_MSG_GET_CSR) {
                sp_tlv_put_u8(&w, SP_TAG_NEW_KEY, 1);
                sp_tlv_put_str(&w, SP_TAG_SUBJECT_CN, "0123456789ABCDEFEE");
        }
        MSG(SP_MSG_CSR) {
                sp_tlv_put(&w, SP_TAG_CSR, big, 300);
                sp_tlv_put(&w, SP_TAG_PUBKEY, key, sizeof key);
        }
        MSG(SP_MSG_PUT_CERT) {
                sp_tlv_put(&w, SP_TAG_DEVICE_CERT, big, 450);
                sp_tlv_put(&w, SP_TAG_SIGNER_CERT, big, 440);
                sp_tlv_put(&w, SP_TAG_ROOT_PUBKEY, key, sizeof key);
                sp_tlv_put(&w, SP_TAG_COMPRESSED_CERT, comp, sizeof comp);
        }
        MSG(SP_MSG_CERT_OK) {
                sp_tlv_put(&w, SP_TAG_CERT_HASH, hash, sizeof hash);
        }
        MSG(SP_MSG_PUT_CONFIG) {
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_ssid");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "line-3");
                sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_psk");
                sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "hunter22");
        }
        MSG(SP_MSG_CONFIG_OK) {
        }
        MSG(SP_MSG_PROVE) {
                sp_tlv_put(&w, SP_TAG_NONCE, nonce, sizeof nonce);
        }
        MSG(SP_MSG_PROOF) {
                sp_tlv_put(&w, SP_TAG_SIGNATURE, sig, sizeof sig);
                sp_tlv_put(&w, SP_TAG_CERT_HASH, hash, sizeof hash);
        }
        MSG(SP_MSG_LOCK) {
        }
        MSG(SP_MSG_LOCKED) {
        }
        MSG(SP_MSG_PING) {
                sp_tlv_put_str(&w, SP_TAG_ECHO, "echo me");
        }
        MSG(SP_MSG_PONG) {
                sp_tlv_put_str(&w, SP_TAG_ECHO, "echo me");
        }
        MSG(SP_MSG_RESULT) {
                sp_tlv_put_u8(&w, SP_TAG_RESULT, SP_RESULT_FAILED);
                sp_tlv_put_str(&w, SP_TAG_ERROR_TEXT, "proof did not verify");
        }
        MSG(SP_MSG_RESULT_OK) {
        }
        MSG(SP_MSG_ERROR) {
                sp_tlv_put_u16(&w, SP_TAG_ERROR_CODE, SP_ERR_SE_FAILURE);
                sp_tlv_put_str(&w, SP_TAG_ERROR_TEXT, "GenKey failed\n");
        }
#undef MSG
        *ret_n = n;
}

static void check_typed(const struct sp_frame *f) {
        switch (f->type) {
        case SP_MSG_IDENT: {
                struct sp_ident id;

                assert_int_equal(sp_ident_parse(f, &id), 0);
                assert_int_equal(id.serial_len, 9);
                assert_int_equal(id.serial[8], 0xee);
                assert_string_equal(id.model, "devkit");
                assert_string_equal(id.fw_version, "2.0");
                assert_int_equal(id.caps, SP_CAP_KEYGEN | SP_CAP_LOCK);
                assert_int_equal(id.proto_version, 1);
                assert_int_equal(id.max_frame, 2048);
                assert_true(id.has_pubkey);
                assert_int_equal(id.pubkey[64], 64);
                assert_true(id.locked);
                break;
        }
        case SP_MSG_CSR: {
                const uint8_t *der;
                size_t len;
                uint8_t pub[SP_PUBKEY_LEN];

                assert_int_equal(sp_csr_parse(f, &der, &len), 0);
                assert_int_equal(len, 300);
                assert_int_equal(der[0], 0x30);
                assert_int_equal(sp_csr_pubkey(f, pub), 0);
                assert_int_equal(pub[0], 0x04);
                break;
        }
        case SP_MSG_CERT_OK: {
                uint8_t h[32];

                assert_int_equal(sp_cert_ok_parse(f, h), 0);
                assert_int_equal(h[31], 0x48);
                break;
        }
        case SP_MSG_PROOF: {
                struct sp_proof p;

                assert_int_equal(sp_proof_parse(f, &p), 0);
                assert_int_equal(p.signature[63], 0x51);
                assert_int_equal(p.cert_hash[0], 0x48);
                break;
        }
        case SP_MSG_ERROR: {
                struct sp_board_error e;

                assert_int_equal(sp_error_parse(f, &e), 0);
                assert_int_equal(e.code, SP_ERR_SE_FAILURE);
                assert_string_equal(e.text, "GenKey failed?");     /* sanitised */
                break;
        }
        default: {
                /* requests and empty responses: the TLVs are intact */
                assert_int_equal(sp_tlv_validate(f->payload, f->len), 0);
                break;
        }
        }
        assert_non_null(sp_msg_type_to_string(f->type));
}

static void test_roundtrip_all_messages(void **state) {
        static struct msg m[32];
        static uint8_t wire[8192];
        static struct rec rec;
        struct sp_parser *p;
        size_t n, off = 0;

        (void)state;
        build_all(m, &n);
        assert_int_equal(n, 17);
        for (size_t i = 0; i < n; i++)
                off += encode(m[i].type, (uint16_t)(0xfff0 + i), m[i].payload, m[i].len, wire + off,
                              sizeof wire - off);

        assert_int_equal(sp_parser_new(&p, NULL), 0);
        memset(&rec, 0, sizeof rec);
        assert_int_equal(sp_parser_feed(p, wire, off, record, &rec), (ssize_t)off);
        assert_int_equal(rec.n, n);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(rec.error[i], 0);
                assert_int_equal(rec.f[i].version, 1);
                assert_int_equal(rec.f[i].type, m[i].type);
                assert_int_equal(rec.f[i].seq, (uint16_t)(0xfff0 + i));      /* wraps */
                assert_int_equal(rec.f[i].len, m[i].len);
                assert_memory_equal(rec.payload[i], m[i].payload, m[i].len);
                check_typed(&rec.f[i]);
        }
        assert_int_equal(sp_parser_stats(p)->frames, n);
        assert_int_equal(sp_parser_stats(p)->discarded_bytes, 0);
        sp_parser_free(p);
}

/* --- chunking ------------------------------------------------------------- */

static void test_chunking_identical(void **state) {
        static struct msg m[32];
        static uint8_t wire[8192];
        static struct rec whole, bytes, chunks;
        struct sp_parser *p1, *p2, *p3;
        size_t n, off = 0;

        (void)state;
        build_all(m, &n);
        for (size_t i = 0; i < n; i++) {
                off += encode(m[i].type, (uint16_t)i, m[i].payload, m[i].len, wire + off, sizeof wire - off);
                /* some noise between frames */
                if (i % 3 == 0) {
                        memcpy(wire + off, "\x05\x11\x00", 3);
                        off += 3;
                }
        }
        assert_int_equal(sp_parser_new(&p1, NULL), 0);
        assert_int_equal(sp_parser_new(&p2, NULL), 0);
        assert_int_equal(sp_parser_new(&p3, NULL), 0);
        memset(&whole, 0, sizeof whole);
        memset(&bytes, 0, sizeof bytes);
        memset(&chunks, 0, sizeof chunks);

        assert_int_equal(sp_parser_feed(p1, wire, off, record, &whole), (ssize_t)off);
        for (size_t i = 0; i < off; i++)
                assert_int_equal(sp_parser_feed(p2, wire + i, 1, record, &bytes), 1);
        for (size_t i = 0; i < off;) {
                size_t k = 1 + prng() % 97;

                if (k > off - i)
                        k = off - i;
                assert_int_equal(sp_parser_feed(p3, wire + i, k, record, &chunks), (ssize_t)k);
                i += k;
        }
        assert_int_equal(whole.n, n + (n + 2) / 3);
        assert_same(&whole, &bytes);
        assert_same(&whole, &chunks);
        assert_memory_equal(sp_parser_stats(p1), sp_parser_stats(p2), sizeof(struct sp_parser_stats));
        assert_memory_equal(sp_parser_stats(p1), sp_parser_stats(p3), sizeof(struct sp_parser_stats));
        /* zero-length feeds are harmless */
        assert_int_equal(sp_parser_feed(p1, NULL, 0, record, &whole), 0);
        sp_parser_free(p1);
        sp_parser_free(p2);
        sp_parser_free(p3);
}

/* --- errors and recovery -------------------------------------------------- */

static uint8_t good[64];
static size_t good_len;

static void setup_good(void) {
        good_len = encode(SP_MSG_PONG, 0x1234, "\x60\x00\x02hi", 5, good, sizeof good);
}

/* Feeds @bad then a good frame: expects @want_err (0 = no report) for @bad, then the good frame. */
static void expect_then_recover(struct sp_parser *p, const uint8_t *bad, size_t bad_len, int want_err) {
        static struct rec rec;

        memset(&rec, 0, sizeof rec);
        assert_int_equal(sp_parser_feed(p, bad, bad_len, record, &rec), (ssize_t)bad_len);
        assert_int_equal(sp_parser_feed(p, good, good_len, record, &rec), (ssize_t)good_len);
        if (want_err) {
                assert_int_equal(rec.n, 2);
                assert_int_equal(rec.error[0], want_err);
        } else
                assert_int_equal(rec.n, 1);
        assert_int_equal(rec.error[rec.n - 1], 0);
        assert_int_equal(rec.f[rec.n - 1].seq, 0x1234);
        assert_int_equal(rec.f[rec.n - 1].type, SP_MSG_PONG);
}

static void test_errors_recover(void **state) {
        struct sp_parser *p;
        uint8_t buf[6000];

        (void)state;
        setup_good();
        assert_int_equal(sp_parser_new(&p, &(struct sp_limits) { .max_frame = 256 }), 0);

        /* corrupted byte (every position of the encoded frame except delimiters) */
        for (size_t i = 1; i + 1 < good_len; i++) {
                memcpy(buf, good, good_len);
                buf[i] ^= 0x40;
                if (buf[i] == 0)
                        continue;
                expect_then_recover(p, buf, good_len, -EBADMSG);
        }
        /* a corrupted byte that becomes 0x00 splits the frame: two bad frames */
        {
                static struct rec rec;

                memcpy(buf, good, good_len);
                buf[6] = 0;
                memset(&rec, 0, sizeof rec);
                sp_parser_feed(p, buf, good_len, record, &rec);
                assert_int_equal(rec.n, 2);
                assert_int_equal(rec.error[0], -EBADMSG);
                assert_int_equal(rec.error[1], -EBADMSG);
        }
        /* truncated: the frame stops early and the next delimiter ends it */
        for (size_t cut = 2; cut + 1 < good_len; cut++) {
                memcpy(buf, good, cut);
                buf[cut] = 0;
                expect_then_recover(p, buf, cut + 1, -EBADMSG);
        }
        /* oversize: reported once, whatever its length */
        buf[0] = 0;
        memset(buf + 1, 0x41, 5000);
        buf[5001] = 0;
        {
                uint64_t before = sp_parser_stats(p)->oversize;

                expect_then_recover(p, buf, 5002, -EMSGSIZE);
                assert_int_equal(sp_parser_stats(p)->oversize, before + 1);
        }
        /* zero-length frames: silently ignored */
        memset(buf, 0, 10);
        expect_then_recover(p, buf, 10, 0);
        /* a frame of only a code byte decodes to 0 bytes: too short */
        expect_then_recover(p, (const uint8_t[]) { 0x00, 0x01, 0x00 }, 3, -EBADMSG);
        /* garbage before the first delimiter: one -EBADMSG */
        sp_parser_reset(p);
        {
                const char *junk = "U-Boot 2024.01\r\nboot: ok\r\n";

                /* no 0x00 in it: reported when the good frame's leading 0x00 arrives */
                expect_then_recover(p, (const uint8_t *)junk, strlen(junk), -EBADMSG);
        }
        /* the same, byte by byte: nothing is reported before the delimiter */
        sp_parser_reset(p);
        {
                static struct rec rec;
                const char *junk = "noise";

                memset(&rec, 0, sizeof rec);
                sp_parser_feed(p, junk, 5, record, &rec);
                assert_int_equal(rec.n, 0);
                sp_parser_feed(p, good, good_len, record, &rec);
                assert_int_equal(rec.n, 2);
                assert_int_equal(rec.error[0], -EBADMSG);
                assert_int_equal(rec.error[1], 0);
        }
        assert_true(sp_parser_stats(p)->bad_crc > 0);
        assert_true(sp_parser_stats(p)->bad_format > 0);
        assert_true(sp_parser_stats(p)->discarded_bytes > 5000);
        sp_parser_free(p);
}

static void test_length_field_mismatch(void **state) {
        /* A frame whose CRC is right but whose length field says 2 for a
         * 3-byte payload: hand-built COBS of 01 87 00 12 34 00 02 60 00 00 crc */
        uint8_t frame[14] = { 1, SP_MSG_PONG, 0, 0x12, 0x34, 0x00, 0x02, 0x60, 0x00, 0x00 };
        uint8_t wire[32];
        size_t w = 0, code_at;
        uint32_t crc = sp_crc32(0, frame, 10);
        struct sp_parser *p;
        static struct rec rec;

        (void)state;
        frame[10] = (uint8_t)(crc >> 24);
        frame[11] = (uint8_t)(crc >> 16);
        frame[12] = (uint8_t)(crc >> 8);
        frame[13] = (uint8_t)crc;
        /* tiny COBS encoder for the test (frames < 254 bytes) */
        wire[w++] = 0;
        code_at = w++;
        for (size_t i = 0; i < sizeof frame; i++) {
                if (frame[i] == 0) {
                        wire[code_at] = (uint8_t)(w - code_at);
                        code_at = w++;
                } else
                        wire[w++] = frame[i];
        }
        wire[code_at] = (uint8_t)(w - code_at);
        wire[w++] = 0;

        assert_int_equal(sp_parser_new(&p, NULL), 0);
        memset(&rec, 0, sizeof rec);
        sp_parser_feed(p, wire, w, record, &rec);
        assert_int_equal(rec.n, 1);
        assert_int_equal(rec.error[0], -EBADMSG);
        assert_int_equal(sp_parser_stats(p)->bad_format, 1);
        assert_int_equal(sp_parser_stats(p)->bad_crc, 0);
        sp_parser_free(p);
}

static void test_unknown_version_delivered(void **state) {
        static struct rec rec;
        uint8_t wire[64];
        struct sp_frame f = { .version = 7, .type = SP_MSG_IDENT, .seq = 3 };
        ssize_t n = sp_frame_encode(&f, wire, sizeof wire);
        struct sp_parser *p;
        struct sp_client c;
        uint8_t buf[64];

        (void)state;
        /* The parser delivers it; deciding about the version is the station's job. */
        assert_int_equal(sp_parser_new(&p, NULL), 0);
        memset(&rec, 0, sizeof rec);
        assert_int_equal(sp_parser_feed(p, wire, (size_t)n, record, &rec), n);
        assert_int_equal(rec.n, 1);
        assert_int_equal(rec.error[0], 0);
        assert_int_equal(rec.f[0].version, 7);
        /* and sp_client_match() calls it a protocol error */
        sp_client_init(&c, buf, sizeof buf, 3);
        assert_true(sp_client_request(&c, SP_MSG_HELLO, NULL, 0) > 0);
        assert_int_equal(sp_client_match(&c, &rec.f[0]), -EPROTO);
        sp_parser_free(p);
}

static void test_callback_stops_feed(void **state) {
        static struct rec rec;
        uint8_t wire[128];
        size_t n;
        struct sp_parser *p;

        (void)state;
        n = encode(SP_MSG_PONG, 1, NULL, 0, wire, sizeof wire);
        n += encode(SP_MSG_PONG, 2, NULL, 0, wire + n, sizeof wire - n);
        assert_int_equal(sp_parser_new(&p, NULL), 0);
        memset(&rec, 0, sizeof rec);
        rec.stop_after = 1;
        assert_int_equal(sp_parser_feed(p, wire, n, record, &rec), -ECANCELED);
        assert_int_equal(rec.n, 1);
        sp_parser_free(p);
}

static void test_parser_args(void **state) {
        struct sp_parser *p = NULL;

        (void)state;
        assert_int_equal(sp_parser_new(NULL, NULL), -EINVAL);
        assert_int_equal(sp_parser_new(&p, &(struct sp_limits) { .max_frame = 63 }), -EINVAL);
        assert_int_equal(sp_parser_new(&p, &(struct sp_limits) { .max_frame = SP_MAX_FRAME_LIMIT + 1 }), -EINVAL);
        assert_int_equal(sp_parser_new(&p, &(struct sp_limits) { .max_frame = 64 }), 0);
        assert_int_equal(sp_parser_feed(p, NULL, 1, record, NULL), -EINVAL);
        assert_null(sp_parser_free(p));
        assert_null(sp_parser_free(NULL));
        sp_parser_reset(NULL);
        assert_null(sp_parser_stats(NULL));
}

/* --- encoder -------------------------------------------------------------- */

static void test_encoder_limits(void **state) {
        static uint8_t payload[65535], out[SP_ENCODED_MAX(65535 + SP_FRAME_OVERHEAD)];
        struct sp_frame f = { .version = 1, .type = SP_MSG_PING };
        ssize_t n;

        (void)state;
        memset(payload, 0xab, sizeof payload);
        assert_int_equal(sp_frame_encoded_max(0), SP_ENCODED_MAX(11));
        /* worst case (no zeros at all) exactly fits the bound */
        f.payload = payload;
        f.len = 65535;
        n = sp_frame_encode(&f, out, sizeof out);
        assert_true(n > 0);
        assert_true((size_t)n <= sp_frame_encoded_max(65535));
        assert_int_equal(sp_frame_encode(&f, out, (size_t)n - 1), -ENOBUFS);
        assert_int_equal(sp_frame_encode(&f, out, (size_t)n), n);
        /* for every payload size up to 600 with no zeros, the bound holds */
        for (size_t len = 0; len < 600; len++) {
                f.len = (uint16_t)len;
                n = sp_frame_encode(&f, out, sizeof out);
                assert_true(n > 0 && (size_t)n <= sp_frame_encoded_max(len));
                assert_int_equal(sp_frame_encode(&f, out, sp_frame_encoded_max(len)), n);
        }
        f.payload = NULL;
        f.len = 1;
        assert_int_equal(sp_frame_encode(&f, out, sizeof out), -EINVAL);
        assert_int_equal(sp_frame_encode(NULL, out, sizeof out), -EINVAL);
}

/* --- typed parsing: rejects --------------------------------------------- */

static void test_typed_rejects(void **state) {
        uint8_t buf[256];
        struct sp_tlv_writer w;
        struct sp_frame f = { .version = 1, .type = SP_MSG_IDENT, .payload = buf };
        struct sp_ident id;
        struct sp_proof pr;
        struct sp_board_error e;
        uint8_t pub[65] = { 0x04 };

        (void)state;
        /* wrong type */
        assert_int_equal(sp_proof_parse(&f, &pr), -EINVAL);
        /* missing everything */
        assert_int_equal(sp_ident_parse(&f, &id), -EBADMSG);

        /* serial too long */
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put(&w, SP_TAG_SERIAL, buf, 33);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_ident_parse(&f, &id), -EBADMSG);

        /* model with a control character */
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put(&w, SP_TAG_SERIAL, "\x01", 1);
        sp_tlv_put_str(&w, SP_TAG_MODEL, "a\tb");
        sp_tlv_put_str(&w, SP_TAG_FW_VERSION, "1");
        sp_tlv_put_u32(&w, SP_TAG_CAPS, 0);
        sp_tlv_put_u8(&w, SP_TAG_PROTO_VERSION, 1);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_ident_parse(&f, &id), -EBADMSG);

        /* minimal good IDENT: MAX_FRAME, PUBKEY, LOCKED optional */
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put(&w, SP_TAG_SERIAL, "\x01", 1);
        sp_tlv_put_str(&w, SP_TAG_MODEL, "m");
        sp_tlv_put_str(&w, SP_TAG_FW_VERSION, "1");
        sp_tlv_put_u32(&w, SP_TAG_CAPS, 0);
        sp_tlv_put_u8(&w, SP_TAG_PROTO_VERSION, 1);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_ident_parse(&f, &id), 0);
        assert_int_equal(id.max_frame, 0);
        assert_false(id.has_pubkey);
        assert_false(id.locked);
        /* + a compressed point is not accepted as PUBKEY */
        pub[0] = 0x02;
        sp_tlv_put(&w, SP_TAG_PUBKEY, pub, 65);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_ident_parse(&f, &id), -EBADMSG);
        /* + a malformed tail */
        f.len = (uint16_t)(w.len - 1);
        assert_int_equal(sp_ident_parse(&f, &id), -EBADMSG);

        /* PROOF with a 63-byte signature */
        f.type = SP_MSG_PROOF;
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put(&w, SP_TAG_SIGNATURE, buf + 100, 63);
        sp_tlv_put(&w, SP_TAG_CERT_HASH, buf + 100, 32);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_proof_parse(&f, &pr), -EBADMSG);

        /* ERROR without a code; with a text over 128 */
        f.type = SP_MSG_ERROR;
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put_str(&w, SP_TAG_ERROR_TEXT, "x");
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_error_parse(&f, &e), -EBADMSG);
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put_u16(&w, SP_TAG_ERROR_CODE, 0x8001);
        sp_tlv_put(&w, SP_TAG_ERROR_TEXT, buf + 100, 129);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_error_parse(&f, &e), -EBADMSG);
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put_u16(&w, SP_TAG_ERROR_CODE, 0x8001);
        f.len = (uint16_t)w.len;
        assert_int_equal(sp_error_parse(&f, &e), 0);
        assert_int_equal(e.code, 0x8001);
        assert_string_equal(e.text, "");
        assert_null(sp_error_to_string(e.code));
        assert_string_equal(sp_error_to_string(SP_ERR_SE_FAILURE), "secure element failure");

        /* CERT_OK without a hash */
        f.type = SP_MSG_CERT_OK;
        f.len = 0;
        assert_int_equal(sp_cert_ok_parse(&f, pub), -ENOENT);
        assert_null(sp_msg_type_to_string(0x42));
}

/* --- describe: secrets never printed ------------------------------------- */

static void test_describe_redacts(void **state) {
        uint8_t buf[256];
        struct sp_tlv_writer w;
        struct sp_frame f = { .version = 1, .type = SP_MSG_PUT_CONFIG, .seq = 7, .payload = buf };
        char text[512], small[16];
        ssize_t n;

        (void)state;
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_ssid");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "factory-net");
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "wifi_psk");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "SuperSecret1");
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "mqtt_password");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "AlsoSecret2");
        f.len = (uint16_t)w.len;
        n = sp_frame_describe(&f, text, sizeof text);
        assert_true(n > 0 && (size_t)n < sizeof text);
        assert_non_null(strstr(text, "PUT_CONFIG"));
        assert_non_null(strstr(text, "factory-net"));
        assert_non_null(strstr(text, "<redacted>"));
        assert_null(strstr(text, "SuperSecret1"));
        assert_null(strstr(text, "AlsoSecret2"));
        /* snprintf-style truncation */
        assert_int_equal(sp_frame_describe(&f, small, sizeof small), n);
        assert_int_equal(strlen(small), sizeof small - 1);
        assert_true(sp_cfg_key_is_secret("wifi_psk", 8));
        assert_true(sp_cfg_key_is_secret("api_token", 9));
        assert_false(sp_cfg_key_is_secret("wifi_ssid", 9));
        assert_false(sp_cfg_key_is_secret("monkey", 6));

        /* CFG_KEY allows upper case (spec §6.4): the key is secret in any ASCII case. */
        sp_tlv_writer_init(&w, buf, sizeof buf);
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "WIFI_SSID");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "Factory-Net");
        sp_tlv_put_str(&w, SP_TAG_CFG_KEY, "WIFI_PSK");
        sp_tlv_put_str(&w, SP_TAG_CFG_VALUE, "UpperSecret3");
        f.len = (uint16_t)w.len;
        n = sp_frame_describe(&f, text, sizeof text);
        assert_true(n > 0 && (size_t)n < sizeof text);
        assert_non_null(strstr(text, "\"WIFI_PSK\""));
        assert_non_null(strstr(text, "Factory-Net"));
        assert_non_null(strstr(text, "<redacted>"));
        assert_null(strstr(text, "UpperSecret3"));
        assert_true(sp_cfg_key_is_secret("WIFI_PSK", 8));
        assert_true(sp_cfg_key_is_secret("Wifi_Psk", 8));
        assert_true(sp_cfg_key_is_secret("PSK", 3));
        assert_true(sp_cfg_key_is_secret("MQTT_PASSWORD", 13));
        assert_false(sp_cfg_key_is_secret("WIFI_SSID", 9));
        assert_false(sp_cfg_key_is_secret("MONKEY", 6));
        assert_false(sp_cfg_key_is_secret("WIFIPSK", 7));
}

/* --- client --------------------------------------------------------------- */

struct grab {
        struct sp_frame f;
        uint8_t payload[4096];
        int n;
};

static int grab_cb(const struct sp_frame *f, int error, void *userdata) {
        struct grab *g = userdata;

        assert_int_equal(error, 0);
        g->f = *f;
        memcpy(g->payload, f->payload, f->len);
        g->f.payload = g->payload;
        g->n++;
        return 0;
}

static void decode_one(const uint8_t *wire, size_t len, struct grab *g) {
        struct sp_parser *p;

        assert_int_equal(sp_parser_new(&p, &(struct sp_limits) { .max_frame = SP_MAX_FRAME_LIMIT }), 0);
        g->n = 0;
        assert_int_equal(sp_parser_feed(p, wire, len, grab_cb, g), (ssize_t)len);
        assert_int_equal(g->n, 1);
        sp_parser_free(p);
}

static void test_client_seq_and_match(void **state) {
        uint8_t buf[256];
        struct sp_client c;
        struct grab g;
        struct sp_frame resp = { .version = 1 };
        ssize_t n;

        (void)state;
        sp_client_init(&c, buf, sizeof buf, 0xfffe);
        n = sp_client_request(&c, SP_MSG_PING, NULL, 0);
        assert_true(n > 0);
        assert_true(c.pending);
        decode_one(c.buf, (size_t)n, &g);
        assert_int_equal(g.f.seq, 0xfffe);
        assert_int_equal(g.f.flags, 0);

        /* stale: another seq */
        resp.type = SP_MSG_PONG;
        resp.seq = 0xfffd;
        assert_int_equal(sp_client_match(&c, &resp), 0);
        /* a request type echoed back is ignored */
        resp.type = SP_MSG_PING;
        resp.seq = 0xfffe;
        assert_int_equal(sp_client_match(&c, &resp), 0);
        /* right seq, wrong response type */
        resp.type = SP_MSG_IDENT;
        assert_int_equal(sp_client_match(&c, &resp), -EPROTO);
        /* right seq, wrong version */
        resp.type = SP_MSG_PONG;
        resp.version = 2;
        assert_int_equal(sp_client_match(&c, &resp), -EPROTO);
        resp.version = 1;
        assert_true(c.pending);
        /* the answer */
        assert_int_equal(sp_client_match(&c, &resp), 1);
        assert_false(c.pending);
        /* the same answer again (replay): now stale */
        assert_int_equal(sp_client_match(&c, &resp), 0);
        assert_int_equal(sp_client_retransmit(&c), -EPROTO);

        /* next request wraps the seq; ERROR answers anything */
        assert_true(sp_client_request(&c, SP_MSG_HELLO, "\x05\x00\x01\x01", 4) > 0);
        assert_int_equal(c.seq, 0xffff);
        assert_true(sp_client_request(&c, SP_MSG_HELLO, "\x05\x00\x01\x01", 4) > 0);
        assert_int_equal(c.seq, 0x0000);
        resp.seq = 0xffff;              /* the superseded request's answer: stale */
        resp.type = SP_MSG_IDENT;
        assert_int_equal(sp_client_match(&c, &resp), 0);
        resp.seq = 0;
        resp.type = SP_MSG_ERROR;
        assert_int_equal(sp_client_match(&c, &resp), 1);

        /* cancel */
        assert_true(sp_client_request(&c, SP_MSG_PING, NULL, 0) > 0);
        sp_client_cancel(&c);
        resp.seq = c.seq;
        resp.type = SP_MSG_PONG;
        assert_int_equal(sp_client_match(&c, &resp), 0);

        /* arguments */
        assert_int_equal(sp_client_request(&c, SP_MSG_PONG, NULL, 0), -EINVAL);
        assert_int_equal(sp_client_request(&c, 0, NULL, 0), -EINVAL);
        assert_int_equal(sp_client_request(&c, SP_MSG_PING, NULL, 5), -EINVAL);
        {
                static const uint8_t big[300];

                assert_int_equal(sp_client_request(&c, SP_MSG_PING, big, sizeof big), -ENOBUFS);
        }
        assert_false(c.pending);
}

static void test_client_retransmit_in_place(void **state) {
        static uint8_t payload[1500], buf[SP_ENCODED_MAX(1500 + SP_FRAME_OVERHEAD)], orig[sizeof buf];
        struct sp_client c;
        struct grab g1, g2;

        (void)state;
        /* Sizes around the 254-byte COBS block boundary, payloads with and
         * without zeros, and a buffer exactly as large as required. */
        for (size_t len = 0; len <= 1500; len += (len < 600 ? 1 : 37)) {
                for (int zeros = 0; zeros < 2; zeros++) {
                        size_t cap = sp_frame_encoded_max(len);
                        ssize_t n, m;

                        for (size_t i = 0; i < len; i++)
                                payload[i] = zeros && i % 50 == 7 ? 0 : (uint8_t)(i % 251 + 1);
                        sp_client_init(&c, buf, cap, (uint16_t)(len * 31));
                        n = sp_client_request(&c, SP_MSG_PUT_CERT, payload, len);
                        assert_true(n > 0);
                        /* a buffer below the worst case is refused up front, even when this
                         * payload's encoding would fit: the retransmission might not */
                        if (len % 3 == 0) {
                                struct sp_client c2;

                                sp_client_init(&c2, orig, cap - 1, 0);
                                assert_int_equal(sp_client_request(&c2, SP_MSG_PUT_CERT, payload, len), -ENOBUFS);
                        }
                        memcpy(orig, buf, (size_t)n);
                        m = sp_client_retransmit(&c);
                        assert_true(m > 0 && (size_t)m <= cap);
                        decode_one(orig, (size_t)n, &g1);
                        decode_one(c.buf, (size_t)m, &g2);
                        assert_int_equal(g1.f.flags, 0);
                        assert_int_equal(g2.f.flags, SP_FLAG_RETRANSMIT);
                        assert_int_equal(g1.f.seq, g2.f.seq);
                        assert_int_equal(g1.f.type, g2.f.type);
                        assert_int_equal(g2.f.len, len);
                        assert_memory_equal(g2.payload, payload, len);
                        /* twice is the same as once */
                        memcpy(orig, c.buf, (size_t)m);
                        assert_int_equal(sp_client_retransmit(&c), m);
                        assert_memory_equal(orig, c.buf, (size_t)m);
                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_all_messages),
                cmocka_unit_test(test_chunking_identical),
                cmocka_unit_test(test_errors_recover),
                cmocka_unit_test(test_length_field_mismatch),
                cmocka_unit_test(test_unknown_version_delivered),
                cmocka_unit_test(test_callback_stops_feed),
                cmocka_unit_test(test_parser_args),
                cmocka_unit_test(test_encoder_limits),
                cmocka_unit_test(test_typed_rejects),
                cmocka_unit_test(test_describe_redacts),
                cmocka_unit_test(test_client_seq_and_match),
                cmocka_unit_test(test_client_retransmit_in_place),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
