/* SPDX-License-Identifier: MIT */
/* Fuzz target: the station-side parser fed in input-derived chunks; every frame typed-parsed and re-encoded. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station-proto/sp.h"

#define MAX_EVENTS 4096

struct log {
        size_t n;
        uint32_t ev[MAX_EVENTS];        /* error, or a CRC of the frame's fields for a good one */
};

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-decoder: %s\n", what);
                abort();
        }
}

static void typed_parse(const struct sp_frame *f) {
        struct sp_ident id;
        struct sp_proof pr;
        struct sp_board_error e;
        const uint8_t *der;
        size_t der_len;
        uint8_t pub[SP_PUBKEY_LEN], hash[SP_SHA256_LEN];
        char text[96];
        ssize_t n;
        int r;

        r = sp_ident_parse(f, &id);
        check(r == 0 || r == -EBADMSG || r == -EINVAL, "ident");
        if (r == 0) {
                check(id.serial_len >= 1 && id.serial_len <= 32, "serial len");
                check(strlen(id.model) >= 1 && strlen(id.model) <= 64, "model len");
                check(strlen(id.fw_version) >= 1 && strlen(id.fw_version) <= 32, "fw len");
        }
        r = sp_csr_parse(f, &der, &der_len);
        if (r == 0)
                check(der >= f->payload && der + der_len <= f->payload + f->len, "csr bounds");
        (void)sp_csr_pubkey(f, pub);
        (void)sp_proof_parse(f, &pr);
        (void)sp_cert_ok_parse(f, hash);
        r = sp_error_parse(f, &e);
        if (r == 0)
                check(strlen(e.text) <= 128, "error text");
        n = sp_frame_describe(f, text, sizeof text);
        check(n >= 0, "describe");
        check(strlen(text) < sizeof text, "describe NUL");
}

static int on_frame(const struct sp_frame *f, int error, void *userdata) {
        struct log *log = userdata;
        uint32_t v;

        if (!f) {
                check(error == -EBADMSG || error == -EMSGSIZE, "error code");
                v = (uint32_t)-error;
        } else {
                uint8_t wire[SP_ENCODED_MAX(SP_MAX_FRAME_DEFAULT)];
                uint8_t hdr[7] = { f->version, f->type, f->flags, (uint8_t)(f->seq >> 8), (uint8_t)f->seq,
                                   (uint8_t)(f->len >> 8), (uint8_t)f->len };
                ssize_t n;

                check(error == 0, "error with frame");
                check(f->len + SP_FRAME_OVERHEAD <= SP_MAX_FRAME_DEFAULT, "frame over limit");
                typed_parse(f);
                /* Re-encoding a decoded frame must give a frame that decodes the same. */
                n = sp_frame_encode(f, wire, sizeof wire);
                check(n > 0 && (size_t)n <= sp_frame_encoded_max(f->len), "re-encode");
                check(wire[0] == 0 && wire[n - 1] == 0 && !memchr(wire + 1, 0, (size_t)n - 2), "encoding");
                v = 0x80000000u | (sp_crc32(sp_crc32(0, hdr, sizeof hdr), f->payload, f->len) & 0x7fffffffu);
        }
        if (log->n < MAX_EVENTS)
                log->ev[log->n++] = v;
        return 0;
}

/*
 * Input: two seed bytes for the chunk sizes, then the stream. When the first
 * seed byte has bit 7 set the rest is not wire bytes but records
 * version(1) type(1) flags(1) seq(2) len(2) payload(len) that are framed
 * correctly here (CRC, COBS) with a little garbage between them, so that the
 * typed parsers run on frames that passed the parser, not only on noise.
 */
static size_t synthesise(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
        size_t off = 0, o = 0;

        while (n - off >= 7) {
                struct sp_frame f = {
                        .version = in[off], .type = in[off + 1], .flags = in[off + 2],
                        .seq = (uint16_t)(in[off + 3] << 8 | in[off + 4]),
                };
                size_t len = (size_t)in[off + 5] << 8 | in[off + 6];
                ssize_t k;

                off += 7;
                if (len > n - off)
                        len = n - off;
                f.len = (uint16_t)len;
                f.payload = in + off;
                off += len;
                k = sp_frame_encode(&f, out + o, cap - o);
                if (k < 0)
                        break;
                o += (size_t)k;
                if (f.flags & 0x80 && o < cap)
                        out[o++] = f.seq & 0xff;        /* garbage between frames */
        }
        return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static uint8_t synth[(1 << 16) + (1 << 16) / 4];
        static struct log a, b;
        struct sp_parser *p1 = NULL, *p2 = NULL;
        uint32_t seed = 1;
        size_t off = 0;

        if (size > 1 << 16)
                return 0;
        /* The first two bytes drive the chunk sizes; the whole input is the stream. */
        if (size >= 2)
                seed = (uint32_t)data[0] << 8 | data[1] | 1u;
        if (size >= 2 && (data[0] & 0x80)) {
                size = synthesise(data + 2, size - 2, synth, sizeof synth);
                data = synth;
        }

        check(sp_parser_new(&p1, NULL) == 0 && sp_parser_new(&p2, NULL) == 0, "new");
        a.n = b.n = 0;

        check(sp_parser_feed(p1, data, size, on_frame, &a) == (ssize_t)size, "feed all");
        while (off < size) {
                size_t n;

                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                n = 1 + seed % ((seed & 0x100) ? 3 : 64);
                if (n > size - off)
                        n = size - off;
                check(sp_parser_feed(p2, data + off, n, on_frame, &b) == (ssize_t)n, "feed chunk");
                off += n;
        }
        /* Chunking must not change what is decoded. */
        check(a.n == b.n && memcmp(a.ev, b.ev, a.n * sizeof a.ev[0]) == 0, "chunked result differs");
        check(memcmp(sp_parser_stats(p1), sp_parser_stats(p2), sizeof(struct sp_parser_stats)) == 0,
              "stats differ");
        {
                const struct sp_parser_stats *st = sp_parser_stats(p1);

                if (a.n < MAX_EVENTS)
                        check(st->frames + st->bad_crc + st->bad_format + st->oversize == a.n, "stats count");
        }
        sp_parser_free(p1);
        sp_parser_free(p2);
        return 0;
}
