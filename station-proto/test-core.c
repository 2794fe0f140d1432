/* SPDX-License-Identifier: MIT */
/* Unit tests of the shared core: CRC, COBS, SHA-256, TLV reader/writer (and their host wrappers). */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sp-core.h"
#include "station-proto/sp.h"

static uint32_t prng_state = 0x12345678u;

static uint32_t prng(void) {
        /* xorshift32: fixed seed, so every run tests the same inputs */
        prng_state ^= prng_state << 13;
        prng_state ^= prng_state >> 17;
        prng_state ^= prng_state << 5;
        return prng_state;
}

/* --- CRC ------------------------------------------------------------------ */

static uint32_t crc_bitwise(const uint8_t *p, size_t n) {
        uint32_t c = 0xffffffffu;

        while (n--) {
                c ^= *p++;
                for (int k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
        }
        return ~c;
}

static void test_crc_check_value(void **state) {
        (void)state;
        assert_int_equal(sp_crc32(0, "123456789", 9), 0xcbf43926u);
        assert_int_equal(spc_crc32(0, "123456789", 9), 0xcbf43926u);
        assert_int_equal(sp_crc32(0, "", 0), 0);
        /* chaining as zlib */
        assert_int_equal(sp_crc32(sp_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
        assert_int_equal(sp_crc32(7, NULL, 3), 7);
}

static void test_crc_matches_bitwise(void **state) {
        uint8_t buf[300];

        (void)state;
        for (int round = 0; round < 200; round++) {
                size_t n = prng() % sizeof buf;

                for (size_t i = 0; i < n; i++)
                        buf[i] = (uint8_t)prng();
                assert_int_equal(spc_crc32(0, buf, n), crc_bitwise(buf, n));
        }
        /* every single byte value, which covers each table entry */
        for (unsigned b = 0; b < 256; b++) {
                uint8_t x = (uint8_t)b;
                assert_int_equal(spc_crc32(0, &x, 1), crc_bitwise(&x, 1));
        }
        /* every byte value at each position of a 4-byte step (each entry of the
         * slicing tables), at every alignment, followed by 0..3 bytes of tail */
        for (unsigned b = 0; b < 256; b++)
                for (size_t pos = 0; pos < 4; pos++)
                        for (size_t off = 0; off < 4; off++) {
                                size_t n = 4 + (b + pos) % 4;

                                for (size_t i = 0; i < n; i++)
                                        buf[off + i] = (uint8_t)prng();
                                buf[off + pos] = (uint8_t)b;
                                assert_int_equal(spc_crc32(0, buf + off, n), crc_bitwise(buf + off, n));
                        }
        /* chaining at every split point */
        for (size_t i = 0; i < 64; i++)
                buf[i] = (uint8_t)prng();
        for (size_t k = 0; k <= 64; k++)
                assert_int_equal(spc_crc32(spc_crc32(0, buf, k), buf + k, 64 - k), crc_bitwise(buf, 64));
}

/* --- COBS ----------------------------------------------------------------- */

static size_t cobs_enc(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
        struct spc_cobs_enc e;
        size_t len = 0;

        spc_cobs_enc_init(&e, out, cap);
        spc_cobs_enc_put(&e, in, n);
        assert_int_equal(spc_cobs_enc_finish(&e, &len), SPC_OK);
        return len;
}

static void check_cobs(const uint8_t *in, size_t n, const uint8_t *want, size_t want_len) {
        uint8_t out[1024], dec[1024];
        size_t len, dlen;

        len = cobs_enc(in, n, out, sizeof out);
        assert_int_equal(len, want_len);
        assert_memory_equal(out, want, want_len);
        assert_int_equal(spc_cobs_decode(out, len, dec, sizeof dec, &dlen), SPC_OK);
        assert_int_equal(dlen, n);
        if (n)
                assert_memory_equal(dec, in, n);
}

static void test_cobs_examples(void **state) {
        uint8_t in[300], want[310];

        (void)state;
        check_cobs(NULL, 0, (const uint8_t[]) { 0x01 }, 1);
        check_cobs((const uint8_t[]) { 0x00 }, 1, (const uint8_t[]) { 0x01, 0x01 }, 2);
        check_cobs((const uint8_t[]) { 0x00, 0x00 }, 2, (const uint8_t[]) { 0x01, 0x01, 0x01 }, 3);
        check_cobs((const uint8_t[]) { 0x11, 0x22, 0x00, 0x33 }, 4,
                   (const uint8_t[]) { 0x03, 0x11, 0x22, 0x02, 0x33 }, 5);
        check_cobs((const uint8_t[]) { 0x11, 0x00, 0x00, 0x00 }, 4,
                   (const uint8_t[]) { 0x02, 0x11, 0x01, 0x01, 0x01 }, 5);

        /* 254 non-zero bytes: one full block, canonical = no trailing 0x01 */
        for (int i = 0; i < 254; i++)
                in[i] = (uint8_t)(i + 1);
        want[0] = 0xff;
        memcpy(want + 1, in, 254);
        check_cobs(in, 254, want, 255);

        /* 255 bytes 01..ff: a full block, then a block of one */
        in[254] = 0xff;
        want[255] = 0x02;
        want[256] = 0xff;
        check_cobs(in, 255, want, 257);

        /* 254 non-zero then a zero: FF block, then 01 (the zero), then 01 (end) */
        in[254] = 0x00;
        want[255] = 0x01;
        want[256] = 0x01;
        check_cobs(in, 255, want, 257);

        /* the non-canonical trailing 0x01 after a full block decodes the same */
        {
                uint8_t enc[256], dec[300];
                size_t dlen;

                enc[0] = 0xff;
                memcpy(enc + 1, in, 254);
                enc[255] = 0x01;
                assert_int_equal(spc_cobs_decode(enc, 256, dec, sizeof dec, &dlen), SPC_OK);
                assert_int_equal(dlen, 254);
                assert_memory_equal(dec, in, 254);
        }
}

static void test_cobs_decode_errors(void **state) {
        uint8_t out[16];
        size_t n;

        (void)state;
        /* block runs past the end */
        assert_int_equal(spc_cobs_decode((const uint8_t[]) { 0x05, 0x11, 0x22 }, 3, out, sizeof out, &n),
                         SPC_E_BADMSG);
        /* a zero inside */
        assert_int_equal(spc_cobs_decode((const uint8_t[]) { 0x03, 0x11, 0x00 }, 3, out, sizeof out, &n),
                         SPC_E_BADMSG);
        assert_int_equal(spc_cobs_decode((const uint8_t[]) { 0x00 }, 1, out, sizeof out, &n), SPC_E_BADMSG);
        /* output too small */
        assert_int_equal(spc_cobs_decode((const uint8_t[]) { 0x03, 0x11, 0x22 }, 3, out, 1, &n), SPC_E_NOBUFS);
        assert_int_equal(spc_cobs_decode((const uint8_t[]) { 0x02, 0x11, 0x02, 0x22 }, 4, out, 1, &n),
                         SPC_E_NOBUFS);
}

static void test_cobs_random_roundtrip(void **state) {
        static uint8_t in[2000], enc[2100], dec[2000];

        (void)state;
        for (int round = 0; round < 500; round++) {
                size_t n = prng() % sizeof in, len, dlen;
                unsigned zero_rate = prng() % 4;        /* 0: no zeros at all */

                for (size_t i = 0; i < n; i++) {
                        in[i] = (uint8_t)(prng() % 255 + 1);
                        if (zero_rate && prng() % (zero_rate * 64) == 0)
                                in[i] = 0;
                }
                len = cobs_enc(in, n, enc, sizeof enc);
                assert_true(len <= spc_cobs_max(n));
                assert_null(memchr(enc, 0, len));
                /* decoding in place works too */
                assert_int_equal(spc_cobs_decode(enc, len, dec, sizeof dec, &dlen), SPC_OK);
                assert_int_equal(dlen, n);
                assert_memory_equal(dec, in, n);
                assert_int_equal(spc_cobs_decode(enc, len, enc, sizeof enc, &dlen), SPC_OK);
                assert_int_equal(dlen, n);
                assert_memory_equal(enc, in, n);
        }
}

static void test_cobs_encoder_nobufs(void **state) {
        struct spc_cobs_enc e;
        uint8_t in[300], out[310];
        size_t len;

        (void)state;
        memset(in, 0x55, sizeof in);
        for (size_t cap = 0; cap < 303; cap++) {
                size_t n = 300;
                int r;

                memset(out, 0xee, sizeof out);
                spc_cobs_enc_init(&e, out, cap > sizeof out ? sizeof out : cap);
                spc_cobs_enc_put(&e, in, n);
                r = spc_cobs_enc_finish(&e, &len);
                if (cap >= 302) {
                        assert_int_equal(r, SPC_OK);
                        assert_int_equal(len, 302);
                } else {
                        assert_int_equal(r, SPC_E_NOBUFS);
                        /* nothing written past cap */
                        for (size_t i = cap; i < sizeof out; i++)
                                assert_int_equal(out[i], 0xee);
                }
        }
}

/* --- deframer ------------------------------------------------------------- */

static void test_rx_states(void **state) {
        uint8_t buf[8];
        struct spc_rx rx;
        int ev;
        size_t n;

        (void)state;
        spc_rx_init(&rx, buf, sizeof buf);
        /* empty frames are skipped without an event */
        n = spc_rx_feed(&rx, (const uint8_t[]) { 0, 0, 0 }, 3, &ev);
        assert_int_equal(n, 3);
        assert_int_equal(ev, SPC_RX_NONE);
        /* a good frame: 03 11 22 02 33 → 11 22 00 33 */
        n = spc_rx_feed(&rx, (const uint8_t[]) { 0x03, 0x11, 0x22, 0x02, 0x33, 0x00, 0x07 }, 7, &ev);
        assert_int_equal(n, 6);
        assert_int_equal(ev, SPC_RX_FRAME);
        assert_int_equal(rx.len, 4);
        assert_int_equal(rx.wire, 5);
        assert_memory_equal(buf, ((const uint8_t[]) { 0x11, 0x22, 0x00, 0x33 }), 4);
        /* a block cut short by the delimiter */
        n = spc_rx_feed(&rx, (const uint8_t[]) { 0x05, 0x11, 0x00 }, 3, &ev);
        assert_int_equal(ev, SPC_RX_BAD);
        /* oversize: reported once, at the delimiter */
        n = spc_rx_feed(&rx, (const uint8_t[]) { 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, 13, &ev);
        assert_int_equal(n, 13);
        assert_int_equal(ev, SPC_RX_NONE);
        assert_int_equal(rx.state, SPC_RX_DISCARD);
        n = spc_rx_feed(&rx, (const uint8_t[]) { 13, 0 }, 2, &ev);
        assert_int_equal(ev, SPC_RX_OVERSIZE);
        assert_int_equal(rx.wire, 14);
        assert_int_equal(rx.state, SPC_RX_IDLE);
        /* an implied zero that would overflow is oversize too (8 data + zero) */
        n = spc_rx_feed(&rx, (const uint8_t[]) { 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x02, 9, 0 }, 12, &ev);
        assert_int_equal(ev, SPC_RX_OVERSIZE);
        /* exactly cap bytes is fine */
        n = spc_rx_feed(&rx, (const uint8_t[]) { 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0 }, 10, &ev);
        assert_int_equal(ev, SPC_RX_FRAME);
        assert_int_equal(rx.len, 8);
}

/* --- SHA-256 -------------------------------------------------------------- */

static void test_sha256(void **state) {
        static const uint8_t empty[32] = {
                0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
        };
        static const uint8_t abc[32] = {
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
        };
        /* "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" (two blocks after padding) */
        static const uint8_t two[32] = {
                0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8, 0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60, 0x39,
                0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67, 0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb, 0x06, 0xc1,
        };
        const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        uint8_t out[32];
        struct spc_sha256 s;

        (void)state;
        spc_sha256("", 0, out);
        assert_memory_equal(out, empty, 32);
        spc_sha256("abc", 3, out);
        assert_memory_equal(out, abc, 32);
        spc_sha256(m2, strlen(m2), out);
        assert_memory_equal(out, two, 32);
        /* byte-at-a-time updates give the same result */
        spc_sha256_init(&s);
        for (size_t i = 0; i < strlen(m2); i++)
                spc_sha256_update(&s, m2 + i, 1);
        spc_sha256_final(&s, out);
        assert_memory_equal(out, two, 32);

        /* One million 'a' (FIPS 180-2 B.3): 15625 blocks through the 16-word schedule
         * and a bit count above 2^23, fed in uneven pieces. */
        {
                static const uint8_t million[32] = {
                0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7, 0xe2, 0x84, 0xd7, 0x3e, 0x67,
                0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97, 0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0,
                };
                static uint8_t a[1000];

                memset(a, 'a', sizeof a);
                spc_sha256_init(&s);
                for (size_t done = 0, k = 1; done < 1000000; k = k * 7 % 997 + 1) {
                        size_t n = 1000000 - done < k ? 1000000 - done : k;

                        spc_sha256_update(&s, a, n);
                        done += n;
                }
                spc_sha256_final(&s, out);
                assert_memory_equal(out, million, 32);
        }
}

/* --- TLV ------------------------------------------------------------------ */

static void test_tlv_reader_bounds(void **state) {
        struct sp_tlv_reader r;
        struct sp_tlv t;
        const uint8_t good[] = { 0x01, 0x00, 0x02, 0xaa, 0xbb, 0x02, 0x00, 0x00 };

        (void)state;
        sp_tlv_reader_init(&r, good, sizeof good);
        assert_int_equal(sp_tlv_next(&r, &t), 1);
        assert_int_equal(t.tag, 0x01);
        assert_int_equal(t.len, 2);
        assert_ptr_equal(t.value, good + 3);
        assert_int_equal(sp_tlv_next(&r, &t), 1);
        assert_int_equal(t.tag, 0x02);
        assert_int_equal(t.len, 0);
        assert_int_equal(sp_tlv_next(&r, &t), 0);
        assert_int_equal(sp_tlv_next(&r, &t), 0);
        assert_int_equal(sp_tlv_validate(good, sizeof good), 0);
        assert_int_equal(sp_tlv_validate(NULL, 0), 0);

        /* truncated header: 1 and 2 bytes left */
        for (size_t cut = 1; cut < 3; cut++) {
                sp_tlv_reader_init(&r, good, cut);
                assert_int_equal(sp_tlv_next(&r, &t), -EBADMSG);
                assert_int_equal(sp_tlv_validate(good, cut), -EBADMSG);
        }
        /* truncated value */
        sp_tlv_reader_init(&r, good, 4);
        assert_int_equal(sp_tlv_next(&r, &t), -EBADMSG);
        /* and the error is sticky */
        assert_int_equal(sp_tlv_next(&r, &t), -EBADMSG);
        /* a good TLV followed by a truncated header */
        sp_tlv_reader_init(&r, good, 6);
        assert_int_equal(sp_tlv_next(&r, &t), 1);
        assert_int_equal(sp_tlv_next(&r, &t), -EBADMSG);
        /* length far past the end */
        const uint8_t huge[] = { 0x05, 0xff, 0xff, 0x00 };
        sp_tlv_reader_init(&r, huge, sizeof huge);
        assert_int_equal(sp_tlv_next(&r, &t), -EBADMSG);
        assert_int_equal(sp_tlv_find(huge, sizeof huge, 0x05, &t), -EBADMSG);
        /* argument checks */
        assert_int_equal(sp_tlv_next(NULL, &t), -EINVAL);
        assert_int_equal(sp_tlv_find(NULL, 3, 1, &t), -EINVAL);
}

static void test_tlv_find(void **state) {
        const uint8_t p[] = { 0x07, 0x00, 0x01, 0x11, 0x07, 0x00, 0x01, 0x22, 0x09, 0x00, 0x00 };
        struct sp_tlv t;

        (void)state;
        assert_int_equal(sp_tlv_find(p, sizeof p, 0x07, &t), 0);
        assert_int_equal(t.value[0], 0x11);     /* first wins */
        assert_int_equal(sp_tlv_find(p, sizeof p, 0x09, &t), 0);
        assert_int_equal(t.len, 0);
        assert_int_equal(sp_tlv_find(p, sizeof p, 0x08, &t), -ENOENT);
        /* found before a malformed tail: still malformed */
        assert_int_equal(sp_tlv_find(p, sizeof p - 1, 0x07, &t), -EBADMSG);
}

static void test_tlv_writer(void **state) {
        uint8_t buf[16];
        struct sp_tlv_writer w;
        struct sp_tlv t;

        (void)state;
        sp_tlv_writer_init(&w, buf, sizeof buf);
        assert_int_equal(sp_tlv_put_u8(&w, 1, 0xab), 0);
        assert_int_equal(sp_tlv_put_u16(&w, 2, 0x1234), 0);
        assert_int_equal(sp_tlv_put_str(&w, 3, "hi"), 0);
        assert_int_equal(w.len, 4 + 5 + 5);
        assert_memory_equal(buf, ((const uint8_t[]) { 1, 0, 1, 0xab, 2, 0, 2, 0x12, 0x34, 3, 0, 2, 'h', 'i' }), 14);
        /* does not fit: -ENOBUFS, nothing written, sticky */
        assert_int_equal(sp_tlv_put_u32(&w, 4, 1), -ENOBUFS);
        assert_int_equal(w.len, 14);
        assert_int_equal(sp_tlv_put(&w, 5, NULL, 0), -ENOBUFS);
        assert_int_equal(w.error, -ENOBUFS);
        assert_int_equal(sp_tlv_validate(buf, w.len), 0);
        assert_int_equal(sp_tlv_find(buf, w.len, 2, &t), 0);
        assert_int_equal(t.len, 2);

        /* exactly fitting */
        sp_tlv_writer_init(&w, buf, 7);
        assert_int_equal(sp_tlv_put_u32(&w, 4, 0xdeadbeef), 0);
        assert_int_equal(w.len, 7);

        /* too long a value */
        {
                static uint8_t big[70000];

                sp_tlv_writer_init(&w, big, sizeof big);
                assert_int_equal(sp_tlv_put(&w, 1, big, 65536), -EMSGSIZE);
                sp_tlv_writer_init(&w, big, sizeof big);
                assert_int_equal(sp_tlv_put(&w, 1, big + 3, 65535), 0);
                assert_int_equal(w.len, 65538);
        }
}

static void test_field_checks(void **state) {
        (void)state;
        assert_true(spc_is_cfg_key((const uint8_t *)"wifi_psk", 8));
        assert_true(spc_is_cfg_key((const uint8_t *)"a.b-C_9", 7));
        assert_false(spc_is_cfg_key((const uint8_t *)"", 0));
        assert_false(spc_is_cfg_key((const uint8_t *)"a b", 3));
        assert_false(spc_is_cfg_key((const uint8_t *)"abcdefghijklmnopqrstuvwxyz0123456", 33));
        assert_true(spc_is_cfg_key((const uint8_t *)"abcdefghijklmnopqrstuvwxyz012345", 32));
        assert_true(spc_is_printable((const uint8_t *)"Hello ~", 7));
        assert_false(spc_is_printable((const uint8_t *)"a\nb", 3));
        assert_false(spc_is_printable((const uint8_t *)"\x7f", 1));
        assert_int_equal(spc_strnlen("abc", 2), 2);
        assert_int_equal(spc_strnlen("abc", 10), 3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_crc_check_value),
                cmocka_unit_test(test_crc_matches_bitwise),
                cmocka_unit_test(test_cobs_examples),
                cmocka_unit_test(test_cobs_decode_errors),
                cmocka_unit_test(test_cobs_random_roundtrip),
                cmocka_unit_test(test_cobs_encoder_nobufs),
                cmocka_unit_test(test_rx_states),
                cmocka_unit_test(test_sha256),
                cmocka_unit_test(test_tlv_reader_bounds),
                cmocka_unit_test(test_tlv_find),
                cmocka_unit_test(test_tlv_writer),
                cmocka_unit_test(test_field_checks),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
