/* SPDX-License-Identifier: MIT */
/* Fuzz target: the board library fed arbitrary bytes (raw, or as well-formed frames) with stub callbacks. */

/*
 * Input: cfg(1) mode(1) rest.
 *   cfg  picks the buffer sizes (exactly the minimum, or a little more) and
 *        which callbacks fail or are missing.
 *   mode bit 0 = raw: rest is fed as wire bytes in chunks derived from mode.
 *   mode bit 2 = asynchronous: the callbacks that may answer SPB_PENDING do,
 *        and the harness completes them with the stub's result after the feed.
 *        Otherwise rest is a list of records type(1) flags(1) seq(1) len(2)
 *        payload(len) that the harness frames correctly, so that the fuzzer
 *        reaches the request handlers without having to learn CRC-32.
 * Checks: the buffers are exactly sized heap blocks (ASan) with a canary
 * after them; every byte the board writes decodes as good response frames
 * no larger than its max frame, each answering a request seq.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station-proto/sp.h"
#include "test-board-stub.h"

#define CANARY 16

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-board: %s\n", what);
                abort();
        }
}

static uint8_t *alloc_guarded(size_t n) {
        uint8_t *p = malloc(n + CANARY);

        check(p != NULL, "malloc");
        memset(p + n, 0xc5, CANARY);
        return p;
}

static void check_guard(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < CANARY; i++)
                check(p[n + i] == 0xc5, "write past a board buffer");
}

struct out_check {
        size_t max_frame;
        uint16_t seqs[64];      /* seqs of the requests sent in this feed */
        size_t n_seqs;
        bool any_seq;           /* raw mode: seqs unknown */
        unsigned frames;
};

static int on_out(const struct sp_frame *f, int error, void *userdata) {
        struct out_check *oc = userdata;
        bool known = oc->any_seq;

        check(f && error == 0, "board wrote a bad frame");
        check(f->type & SP_MSG_RESPONSE, "board wrote a request type");
        check(f->version == SP_PROTO_VERSION, "board wrote another version");
        check(f->len + SP_FRAME_OVERHEAD <= oc->max_frame, "response larger than the board's max frame");
        check((f->flags & ~SP_FLAG_REPLAY) == 0, "unknown flag");
        for (size_t i = 0; i < oc->n_seqs; i++)
                if (oc->seqs[i] == f->seq)
                        known = true;
        check(known, "response to a seq never sent");
        check(sp_tlv_validate(f->payload, f->len) == 0, "malformed response payload");
        if (f->type == SP_MSG_ERROR) {
                struct sp_board_error e;
                check(sp_error_parse(f, &e) == 0, "bad ERROR");
        }
        oc->frames++;
        return 0;
}

static void drain(struct stub *s, struct out_check *oc) {
        struct sp_parser *p;

        check(sp_parser_new(&p, &(struct sp_limits) { .max_frame = SP_MAX_FRAME_LIMIT }) == 0, "parser");
        check(!s->out_overflow, "output overflow");
        check(sp_parser_feed(p, s->out, s->out_len, on_out, oc) == (ssize_t)s->out_len, "parse output");
        check(sp_parser_stats(p)->bad_crc + sp_parser_stats(p)->bad_format + sp_parser_stats(p)->oversize == 0,
              "bad output");
        sp_parser_free(p);
        s->out_len = 0;
}

/* --- asynchronous mode: the stub's answer, delivered through spb_complete() --- */

static int async_result;
static size_t async_len;

static int async_get_csr(void *ctx, bool new_key, const char *cn, size_t cn_len, uint8_t *der, size_t cap,
                         size_t *ret_len) {
        async_len = 0;
        async_result = stub_get_csr(ctx, new_key, cn, cn_len, der, cap, &async_len);
        (void)ret_len;
        return SPB_PENDING;
}

static int async_store_certs(void *ctx, const struct spb_certs *c) {
        async_result = stub_store_certs(ctx, c);
        return SPB_PENDING;
}

static int async_store_config(void *ctx, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        async_result = stub_store_config(ctx, key, key_len, value, value_len);
        return SPB_PENDING;
}

static int async_prove(void *ctx, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                       uint8_t ret_sig[SP_SIG_LEN]) {
        async_result = stub_prove(ctx, nonce, ret_hash, ret_sig);
        return SPB_PENDING;
}

static int async_lock(void *ctx) {
        async_result = stub_lock(ctx);
        return SPB_PENDING;
}

/* Completes whatever is pending (PUT_CONFIG may go pending once per pair). */
static void complete_all(struct spb_board *b) {
        for (unsigned i = 0; spb_pending(b); i++) {
                check(i <= 32, "PUT_CONFIG pending more often than it has pairs");
                check(spb_complete(b, async_result, async_len) == SPB_OK, "spb_complete");
        }
        check(spb_complete(b, 0, 0) == SPB_E_INVAL, "spb_complete with nothing pending");
}

static void feed(struct spb_board *b, const uint8_t *p, size_t n) {
        spb_feed(b, p, n);
        complete_all(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const size_t caps[] = { 64, 200, 1024, 4096 };
        static struct stub s;
        static uint8_t wire[SP_ENCODED_MAX(65535 + SP_FRAME_OVERHEAD)];
        struct spb_ops ops = stub_ops;
        struct spb_board b;
        struct out_check oc = { 0 };
        uint8_t cfg, mode, *rx, *tx, *work;
        size_t rx_cap, tx_cap, work_cap;
        uint16_t seq_base = 0x4a21;

        if (size < 2 || size > 1 << 17)
                return 0;
        cfg = data[0];
        mode = data[1];
        data += 2;
        size -= 2;

        rx_cap = caps[cfg & 3];
        work_cap = rx_cap + ((cfg & 4) ? 0 : 37);
        /* a whole-frame @tx, or an output chunk of 8..39 bytes (several writes per frame) */
        tx_cap = (cfg & 8) ? SPB_TX_MIN + (mode >> 3) % 32 : SP_ENCODED_MAX(rx_cap) + 5;
        rx = alloc_guarded(rx_cap);
        tx = alloc_guarded(tx_cap);
        work = alloc_guarded(work_cap);

        stub_init(&s);
        if (cfg & 0x10)
                s.fail_get_csr = SP_ERR_SE_FAILURE;
        if (cfg & 0x20)
                s.fail_store_certs = SP_ERR_STORAGE;
        if (cfg & 0x40)
                ops.lock = NULL;
        if (cfg & 0x80) {
                s.have_key = true;
                s.se_locked = true;
                ops.cert_hash = NULL;
        }
        if (mode & 4) {
                ops.get_csr = async_get_csr;
                ops.store_certs = async_store_certs;
                ops.store_config = async_store_config;
                ops.prove = async_prove;
                if (ops.lock)
                        ops.lock = async_lock;
        }
        check(spb_init(&b, &ops, &s, rx, rx_cap, tx, tx_cap, work, work_cap) == SPB_OK, "init");
        oc.max_frame = rx_cap;

        if (mode & 1) {
                uint32_t seed = mode | 0x100u;
                size_t off = 0;

                oc.any_seq = true;
                while (off < size) {
                        size_t n;

                        seed = seed * 1103515245u + 12345u;
                        n = 1 + (seed >> 16) % ((mode & 2) ? 7 : 300);
                        if (n > size - off)
                                n = size - off;
                        feed(&b, data + off, n);
                        off += n;
                        drain(&s, &oc);
                }
        } else {
                size_t off = 0;

                while (size - off >= 5) {
                        struct sp_frame f = {
                                .version = SP_PROTO_VERSION,
                                .type = data[off],
                                .flags = data[off + 1],
                                .seq = (uint16_t)(seq_base + data[off + 2]),
                        };
                        size_t len = (size_t)data[off + 3] << 8 | data[off + 4];
                        ssize_t n;

                        off += 5;
                        if (len > size - off)
                                len = size - off;
                        if (f.flags & 0x80) {
                                f.version = f.flags & 0x7f;     /* exercise the version check */
                                f.flags = 0;
                        }
                        f.len = (uint16_t)len;
                        f.payload = data + off;
                        off += len;
                        n = sp_frame_encode(&f, wire, sizeof wire);
                        check(n > 0, "encode");
                        oc.n_seqs = 0;
                        oc.seqs[oc.n_seqs++] = f.seq;
                        /* sometimes feed the frame in two pieces */
                        if ((f.flags & 0x40) && n > 3) {
                                feed(&b, wire, (size_t)n / 2);
                                feed(&b, wire + n / 2, (size_t)n - (size_t)n / 2);
                        } else
                                feed(&b, wire, (size_t)n);
                        /* A board answers at most once per frame. */
                        oc.frames = 0;
                        drain(&s, &oc);
                        check(oc.frames <= 1, "more than one answer to one request");
                        if (f.type == SP_MSG_PING && f.version == SP_PROTO_VERSION && (size_t)f.len + 32 < rx_cap &&
                            sp_tlv_validate(f.payload, f.len) == 0)
                                check(oc.frames == 1, "PING not answered");
                }
        }

        check_guard(rx, rx_cap);
        check_guard(tx, tx_cap);
        check_guard(work, work_cap);
        free(rx);
        free(tx);
        free(work);
        return 0;
}
