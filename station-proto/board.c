/* SPDX-License-Identifier: MIT */
/* Board side of the station protocol: request validation, session state, idempotent responses. */

/*
 * Portable C99: no heap, no OS calls, only the caller's buffers. Built also by
 * `cc -std=c99 -ffreestanding` in the test suite (test-freestanding.sh).
 *
 * Per received frame (PROTOCOL.md §7.1):
 *   1. CRC wrong or frame too short  → dropped silently (stats), no answer.
 *   2. CRC right, length field wrong → ERROR SP_ERR_BAD_FRAME (not cached).
 *   3. type >= 0x80 (a response)     → ignored, never answered.
 *   4. same (seq, type) as the cached response, type != HELLO
 *                                    → cached payload re-sent with SP_FLAG_REPLAY,
 *                                      no callback.
 *   5. version byte != 1             → ERROR SP_ERR_VERSION.
 *   6. unknown request type          → ERROR SP_ERR_UNKNOWN_TYPE.
 *   7. payload not well-formed TLV   → ERROR SP_ERR_BAD_PAYLOAD.
 *   8. per-type checks: session, fields, preconditions; then the callbacks.
 * Every answer except to HELLO and BAD_FRAME is cached for step 4.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sp-core.h"
#include "station-proto/sp-board.h"

#define MAX_CFG_PAIRS           32u     /* spec §6.4 */
#define MAX_CFG_VALUE           1024u
#define MAX_PROTO_VERSIONS      16u
#define MAX_CN                  64u
#define MAX_ERROR_TEXT          128u

/* Keeps a function out of its caller so that the caller's frame does not
 * carry its locals down every path (GCC and Clang; others ignore it). */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* Handler result: 0 = success (payload in the writer), else an enum sp_error,
 * or PENDING: a callback answered SPB_PENDING and spb_complete() finishes it. */
#define PENDING                 (-1)

static size_t min_size(size_t a, size_t b) {
        return a < b ? a : b;
}

/* Largest response payload: our own frame limit, the station's, and @work. */
static size_t payload_cap(const struct spb_board *b) {
        size_t frame = min_size(b->rx_cap, b->peer_max_frame);

        return min_size(frame - SP_FRAME_OVERHEAD, b->work_cap);
}

static int callback_code(int r) {
        /* Through an unsigned long so that a 16-bit int compiles without a
         * sign-compare or always-false warning (avr-gcc, sdcc). */
        unsigned long u = (unsigned long)r;

        if (r == 0)
                return 0;
        if (r < 0 || u > 0xffffUL)
                return SP_ERR_INTERNAL;
        return r;
}

/* For the callbacks that may answer SPB_PENDING. */
static int async_code(int r) {
        if (r == SPB_PENDING)
                return PENDING;
        return callback_code(r);
}

static int writer_code(const struct spc_tlv_writer *w) {
        return w->error == SPC_OK ? 0 : SP_ERR_TOO_LARGE;
}

/* Fetches an optional TLV and checks its length; returns 0, 1 if found, or SP_ERR_BAD_PAYLOAD. */
static int get_tlv(const uint8_t *p, size_t n, uint8_t tag, size_t min, size_t max, struct spc_tlv *ret) {
        int r = spc_tlv_find(p, n, tag, ret);

        if (r == SPC_E_NOENT)
                return 0;
        if (r < 0 || ret->len < min || ret->len > max)
                return -SP_ERR_BAD_PAYLOAD;
        return 1;
}

/* --- identity ------------------------------------------------------------- */

static bool identity_valid(const struct spb_identity *id) {
        size_t n;

        if (!id->serial || id->serial_len < 1 || id->serial_len > 32)
                return false;
        if (!id->model || !id->fw_version)
                return false;
        n = spc_strnlen(id->model, 65);
        if (n < 1 || n > 64 || !spc_is_printable((const uint8_t *)id->model, n))
                return false;
        n = spc_strnlen(id->fw_version, 33);
        if (n < 1 || n > 32 || !spc_is_printable((const uint8_t *)id->fw_version, n))
                return false;
        if (id->pubkey && id->pubkey[0] != 0x04)
                return false;
        return true;
}

static int get_identity(struct spb_board *b, struct spb_identity *id) {
        int r;

        memset(id, 0, sizeof *id);
        r = callback_code(b->ops->identify(b->ctx, id));
        if (r)
                return r;
        return identity_valid(id) ? 0 : SP_ERR_INTERNAL;
}

/* --- handlers ------------------------------------------------------------- */

static NOINLINE int do_hello(struct spb_board *b, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        struct spc_tlv versions, maxf;
        struct spb_identity id;
        bool have_v1 = false;
        uint16_t peer;
        int r;

        if (get_tlv(p, n, SP_TAG_PROTO_VERSION, 1, MAX_PROTO_VERSIONS, &versions) != 1 ||
            get_tlv(p, n, SP_TAG_MAX_FRAME, 2, 2, &maxf) != 1)
                return SP_ERR_BAD_PAYLOAD;
        peer = spc_get_be16(maxf.value);
        if (peer < SP_MAX_FRAME_MIN)
                return SP_ERR_BAD_PAYLOAD;
        for (size_t i = 0; i < versions.len; i++)
                if (versions.value[i] == SP_PROTO_VERSION)
                        have_v1 = true;
        if (!have_v1)
                return SP_ERR_VERSION;

        r = get_identity(b, &id);
        if (r)
                return r;

        b->peer_max_frame = peer;
        b->session = true;
        b->locked = id.locked;
        b->keygen = (id.caps & SP_CAP_KEYGEN) != 0;
        w->cap = payload_cap(b);        /* IDENT may use the station's new limit */

        spc_tlv_put(w, SP_TAG_SERIAL, id.serial, id.serial_len);
        spc_tlv_put(w, SP_TAG_MODEL, id.model, spc_strnlen(id.model, 64));
        spc_tlv_put(w, SP_TAG_FW_VERSION, id.fw_version, spc_strnlen(id.fw_version, 32));
        spc_tlv_put_u32(w, SP_TAG_CAPS, id.caps);
        spc_tlv_put_u8(w, SP_TAG_PROTO_VERSION, SP_PROTO_VERSION);
        spc_tlv_put_u16(w, SP_TAG_MAX_FRAME, (uint16_t)min_size(b->rx_cap, 0xffffu));
        if (id.pubkey)
                spc_tlv_put(w, SP_TAG_PUBKEY, id.pubkey, SP_PUBKEY_LEN);
        spc_tlv_put_u8(w, SP_TAG_LOCKED, id.locked ? 1 : 0);
        r = writer_code(w);
        if (r)
                b->session = false;     /* spec 7.2: an IDENT that cannot be sent opens no session */
        return r;
}

/* The CSR response after get_csr() wrote @der_len DER bytes at w->buf + 3. */
static int finish_get_csr(struct spb_board *b, struct spc_tlv_writer *w, size_t cap, size_t der_len) {
        struct spb_identity id;
        int r;

        if (der_len < 1 || der_len > cap)
                return SP_ERR_INTERNAL;
        w->buf[0] = SP_TAG_CSR;
        spc_put_be16(w->buf + 1, (uint16_t)der_len);
        w->len = SP_TLV_HEADER_LEN + der_len;

        r = get_identity(b, &id);
        if (r)
                return r;
        if (!id.pubkey)
                return SP_ERR_NO_KEY;
        spc_tlv_put(w, SP_TAG_PUBKEY, id.pubkey, SP_PUBKEY_LEN);
        return writer_code(w);
}

/* DER bytes get_csr() may write: the CSR TLV header, DER, then the PUBKEY TLV must fit. */
static size_t csr_cap(const struct spc_tlv_writer *w) {
        if (w->cap < 2 * SP_TLV_HEADER_LEN + SP_PUBKEY_LEN + 1)
                return 0;
        return min_size(w->cap - 2 * SP_TLV_HEADER_LEN - SP_PUBKEY_LEN, 0xffffu);
}

static NOINLINE int do_get_csr(struct spb_board *b, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        struct spc_tlv t, cn = { 0, 0, NULL };
        bool new_key = false;
        size_t cap, der_len = 0;
        int r;

        if (!b->session)
                return SP_ERR_BAD_STATE;
        r = get_tlv(p, n, SP_TAG_NEW_KEY, 1, 1, &t);
        if (r < 0 || (r == 1 && t.value[0] > 1))
                return SP_ERR_BAD_PAYLOAD;
        new_key = r == 1 && t.value[0] == 1;
        r = get_tlv(p, n, SP_TAG_SUBJECT_CN, 1, MAX_CN, &cn);
        if (r < 0 || (r == 1 && !spc_is_printable(cn.value, cn.len)))
                return SP_ERR_BAD_PAYLOAD;
        /* Spec §6.2: asking a board without KEYGEN for a new key is an operation it does not support. */
        if (new_key && !b->keygen)
                return SP_ERR_UNKNOWN_TYPE;
        if (new_key && b->locked)
                return SP_ERR_LOCKED;

        cap = csr_cap(w);
        if (cap == 0)
                return SP_ERR_TOO_LARGE;
        r = async_code(b->ops->get_csr(b->ctx, new_key, cn.len ? (const char *)cn.value : NULL, cn.len,
                                          w->buf + SP_TLV_HEADER_LEN, cap, &der_len));
        if (r)
                return r;
        return finish_get_csr(b, w, cap, der_len);
}

/* CERT_OK after store_certs() succeeded; @p/@n is the request payload (still in @rx).
 * The hash goes straight into @work: no 32-byte copy on the stack. */
static int finish_put_cert(struct spb_board *b, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        struct spc_tlv dev;
        uint8_t *hash = w->buf + SP_TLV_HEADER_LEN;
        int r;

        if (w->cap < SP_TLV_HEADER_LEN + SP_SHA256_LEN)
                return SP_ERR_TOO_LARGE;
        if (b->ops->cert_hash) {
                r = callback_code(b->ops->cert_hash(b->ctx, hash));
                if (r)
                        return r;
        } else if (get_tlv(p, n, SP_TAG_DEVICE_CERT, 1, 0xffff, &dev) == 1) {
                spc_sha256(dev.value, dev.len, hash);
        } else {
                return 0;       /* compressed only, no cert_hash(): CERT_OK without CERT_HASH */
        }
        w->buf[0] = SP_TAG_CERT_HASH;
        spc_put_be16(w->buf + 1, SP_SHA256_LEN);
        w->len = SP_TLV_HEADER_LEN + SP_SHA256_LEN;
        return 0;
}

/* Checks PUT_CERT and calls store_certs(); apart from do_put_cert() so that
 * its locals are gone before finish_put_cert() hashes the certificate. */
static NOINLINE int put_cert_store(struct spb_board *b, const uint8_t *p, size_t n) {
        struct spc_tlv dev, signer, root, comp;
        struct spb_certs c;
        int rd, rs, rr, rc;

        if (!b->session)
                return SP_ERR_BAD_STATE;
        rd = get_tlv(p, n, SP_TAG_DEVICE_CERT, 1, 0xffff, &dev);
        rc = get_tlv(p, n, SP_TAG_COMPRESSED_CERT, SP_COMPRESSED_CERT_LEN, SP_COMPRESSED_CERT_LEN, &comp);
        rs = get_tlv(p, n, SP_TAG_SIGNER_CERT, 1, 0xffff, &signer);
        rr = get_tlv(p, n, SP_TAG_ROOT_PUBKEY, SP_PUBKEY_LEN, SP_PUBKEY_LEN, &root);
        if (rd < 0 || rc < 0 || rs < 0 || rr < 0 || (rd == 0 && rc == 0))
                return SP_ERR_BAD_PAYLOAD;
        if (rr == 1 && root.value[0] != 0x04)
                return SP_ERR_BAD_PAYLOAD;
        if (b->locked)
                return SP_ERR_LOCKED;

        memset(&c, 0, sizeof c);
        if (rd == 1) {
                c.device = dev.value;
                c.device_len = dev.len;
        }
        if (rs == 1) {
                c.signer = signer.value;
                c.signer_len = signer.len;
        }
        c.root_pubkey = rr == 1 ? root.value : NULL;
        c.compressed = rc == 1 ? comp.value : NULL;

        /* A new certificate invalidates an earlier proof in this session. */
        b->proved = false;
        return async_code(b->ops->store_certs(b->ctx, &c));
}

static int do_put_cert(struct spb_board *b, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        int r = put_cert_store(b, p, n);

        if (r)
                return r;
        return finish_put_cert(b, p, n, w);
}

/*
 * PUT_CONFIG is validated by walking the payload, without a table of the
 * pairs (it cost 64 struct spc_tlv on the stack): a duplicate key is found
 * by walking the part before it again (at most 32 keys, so at most 496 key
 * comparisons), and the callbacks get the pairs from a second walk.
 */
static bool key_seen_before(const uint8_t *p, size_t end, const struct spc_tlv *key) {
        struct spc_tlv_reader rd;
        struct spc_tlv t;

        spc_tlv_reader_init(&rd, p, end);
        while (spc_tlv_next(&rd, &t) > 0)
                if (t.tag == SP_TAG_CFG_KEY && t.len == key->len && memcmp(t.value, key->value, t.len) == 0)
                        return true;
        return false;
}

/* Calls store_config() for the pairs from payload offset @off on; remembers where a pending one stopped. */
static int store_pairs(struct spb_board *b, const uint8_t *p, size_t n, size_t off) {
        struct spc_tlv_reader rd;
        struct spc_tlv t, key = { 0, 0, NULL };

        spc_tlv_reader_init(&rd, p, n);
        rd.off = off;
        while (spc_tlv_next(&rd, &t) > 0) {
                int r;

                if (t.tag == SP_TAG_CFG_KEY) {
                        key = t;
                        continue;
                }
                if (t.tag != SP_TAG_CFG_VALUE || !key.value)
                        continue;
                r = async_code(b->ops->store_config(b->ctx, (const char *)key.value, key.len, t.value, t.len));
                key.value = NULL;
                if (r == PENDING)
                        b->pend_off = rd.off;
                if (r)
                        return r;
        }
        return 0;
}

static NOINLINE int do_put_config(struct spb_board *b, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        struct spc_tlv_reader rd;
        struct spc_tlv t;
        size_t pairs = 0;
        bool want_value = false;
        int k;

        (void)w;
        if (!b->session)
                return SP_ERR_BAD_STATE;

        /* Spec §6.4: each CFG_KEY is followed by exactly one CFG_VALUE before
         * the next CFG_KEY; other tags in between are ignored. */
        spc_tlv_reader_init(&rd, p, n);
        for (;;) {
                size_t at = rd.off;

                k = spc_tlv_next(&rd, &t);
                if (k <= 0)
                        break;
                if (t.tag == SP_TAG_CFG_KEY) {
                        if (want_value || !spc_is_cfg_key(t.value, t.len))
                                return SP_ERR_BAD_PAYLOAD;
                        if (pairs == MAX_CFG_PAIRS)
                                return SP_ERR_TOO_LARGE;
                        if (key_seen_before(p, at, &t))
                                return SP_ERR_BAD_PAYLOAD;
                        want_value = true;
                } else if (t.tag == SP_TAG_CFG_VALUE) {
                        if (!want_value || t.len > MAX_CFG_VALUE)
                                return SP_ERR_BAD_PAYLOAD;
                        pairs++;
                        want_value = false;
                }
        }
        if (k < 0 || want_value || pairs == 0)
                return SP_ERR_BAD_PAYLOAD;
        return store_pairs(b, p, n, 0);
}

/* The PROVE response: prove() wrote the signature and hash in place, at
 * @work + 3 and @work + 70, so that a pending proof needs no buffer of its own. */
#define PROVE_SIG_OFF           SP_TLV_HEADER_LEN
#define PROVE_HASH_OFF          (2 * SP_TLV_HEADER_LEN + SP_SIG_LEN)
#define PROVE_LEN               (2 * SP_TLV_HEADER_LEN + SP_SIG_LEN + SP_SHA256_LEN)

static int finish_prove(struct spb_board *b, struct spc_tlv_writer *w) {
        b->proved = true;
        w->buf[0] = SP_TAG_SIGNATURE;
        spc_put_be16(w->buf + 1, SP_SIG_LEN);
        w->buf[PROVE_HASH_OFF - SP_TLV_HEADER_LEN] = SP_TAG_CERT_HASH;
        spc_put_be16(w->buf + PROVE_HASH_OFF - SP_TLV_HEADER_LEN + 1, SP_SHA256_LEN);
        w->len = PROVE_LEN;
        return 0;
}

static NOINLINE int do_prove(struct spb_board *b, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        struct spc_tlv nonce;
        int r;

        if (!b->session)
                return SP_ERR_BAD_STATE;
        if (get_tlv(p, n, SP_TAG_NONCE, SP_NONCE_LEN, SP_NONCE_LEN, &nonce) != 1)
                return SP_ERR_BAD_PAYLOAD;
        if (w->cap < PROVE_LEN)
                return SP_ERR_TOO_LARGE;
        /*
         * Spec 6.5: any identified board proves the certificate it holds, stored
         * in this session or before (a replugged, already provisioned board);
         * without one the callback answers SP_ERR_NO_CERT.
         */
        r = async_code(b->ops->prove(b->ctx, nonce.value, w->buf + PROVE_HASH_OFF, w->buf + PROVE_SIG_OFF));
        if (r)
                return r;
        return finish_prove(b, w);
}

static int do_lock(struct spb_board *b) {
        int r;

        if (!b->session)
                return SP_ERR_BAD_STATE;
        if (b->locked)
                return 0;               /* already locked: nothing to do, success */
        if (!b->proved)
                return SP_ERR_BAD_STATE;
        r = async_code(b->ops->lock(b->ctx));
        if (r)
                return r;
        b->locked = true;
        return 0;
}

static NOINLINE int do_ping(const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        struct spc_tlv echo;

        if (get_tlv(p, n, SP_TAG_ECHO, 0, 0xffff, &echo) == 1)
                spc_tlv_put(w, SP_TAG_ECHO, echo.value, echo.len);
        return writer_code(w);
}

static NOINLINE int do_result(struct spb_board *b, const uint8_t *p, size_t n) {
        struct spc_tlv res, text;

        if (!b->session)
                return SP_ERR_BAD_STATE;
        if (get_tlv(p, n, SP_TAG_RESULT, 1, 1, &res) != 1 || res.value[0] > SP_RESULT_FAILED)
                return SP_ERR_BAD_PAYLOAD;
        if (get_tlv(p, n, SP_TAG_ERROR_TEXT, 0, MAX_ERROR_TEXT, &text) < 0)
                return SP_ERR_BAD_PAYLOAD;
        if (b->ops->result)
                b->ops->result(b->ctx, res.value[0]);
        return 0;
}

static bool known_type(uint8_t type) {
        return type >= SP_MSG_HELLO && type <= SP_MSG_RESULT;
}

/* Direct calls in an if chain, neither a table of function pointers nor a
 * switch (a jump table needs a libgcc helper on Thumb-1 and AVR), so that the
 * call graph, and the worst stack depth test-cross.py prints, can be derived. */
static int dispatch(struct spb_board *b, uint8_t type, const uint8_t *p, size_t n, struct spc_tlv_writer *w) {
        if (type == SP_MSG_HELLO)
                return do_hello(b, p, n, w);
        if (type == SP_MSG_GET_CSR)
                return do_get_csr(b, p, n, w);
        if (type == SP_MSG_PUT_CERT)
                return do_put_cert(b, p, n, w);
        if (type == SP_MSG_PUT_CONFIG)
                return do_put_config(b, p, n, w);
        if (type == SP_MSG_PROVE)
                return do_prove(b, p, n, w);
        if (type == SP_MSG_LOCK)
                return do_lock(b);
        if (type == SP_MSG_PING)
                return do_ping(p, n, w);
        if (type == SP_MSG_RESULT)
                return do_result(b, p, n);
        return SP_ERR_UNKNOWN_TYPE;
}

/* --- responses ------------------------------------------------------------ */

/*
 * Output is COBS-encoded straight from the header (a local), @work and the
 * CRC (a local) into @tx, which ops->write() gets whenever it is full and at
 * the end of the frame: a @tx of SPB_TX_BUF(max_frame) bytes means one write
 * per frame, a smaller one (down to SPB_TX_MIN) several. The encoder looks
 * ahead in the input for the next zero (at most 254 bytes) instead of
 * keeping a block back, so it needs no buffer of its own.
 */
struct out {
        struct spb_board *b;
        size_t fill;                    /* bytes in b->tx */
        const uint8_t *seg[3];
        size_t seg_len[3];
        unsigned i;                     /* current segment */
        size_t off;                     /* offset in it */
};

static void out_put(struct out *o, const uint8_t *p, size_t n) {
        struct spb_board *b = o->b;

        while (n > 0) {
                size_t k = min_size(n, b->tx_cap - o->fill);

                memcpy(b->tx + o->fill, p, k);
                o->fill += k;
                p += k;
                n -= k;
                if (o->fill == b->tx_cap) {
                        b->ops->write(b->ctx, b->tx, o->fill);
                        o->fill = 0;
                }
        }
}

static void out_byte(struct out *o, uint8_t c) {
        out_put(o, &c, 1);
}

static bool in_end(struct out *o) {
        while (o->i < 3 && o->off == o->seg_len[o->i]) {
                o->i++;
                o->off = 0;
        }
        return o->i == 3;
}

/* Non-zero bytes from the cursor on, at most 254. */
static size_t in_run(const struct out *o) {
        size_t run = 0, off = o->off;

        for (unsigned i = o->i; i < 3 && run < 254; i++, off = 0) {
                size_t k = min_size(o->seg_len[i] - off, 254 - run);
                const uint8_t *z = memchr(o->seg[i] + off, 0, k);

                if (z)
                        return run + (size_t)(z - (o->seg[i] + off));
                run += k;
        }
        return run;
}

/* Copies @n input bytes to the output (they are all in the segments). */
static void in_copy(struct out *o, size_t n) {
        while (n > 0) {
                size_t k;

                (void)in_end(o);
                k = min_size(n, o->seg_len[o->i] - o->off);
                out_put(o, o->seg[o->i] + o->off, k);
                o->off += k;
                n -= k;
        }
}

static void send_frame(struct spb_board *b, uint8_t type, uint8_t flags, uint16_t seq,
                       const uint8_t *payload, size_t len) {
        uint8_t head[SP_HEADER_LEN], tail[SP_CRC_LEN];
        struct out o;
        uint32_t crc;

        head[0] = SP_PROTO_VERSION;
        head[1] = type;
        head[2] = flags;
        spc_put_be16(head + 3, seq);
        spc_put_be16(head + 5, (uint16_t)len);
        crc = spc_crc32(spc_crc32(0, head, sizeof head), payload, len);
        spc_put_be32(tail, crc);

        memset(&o, 0, sizeof o);
        o.b = b;
        o.seg[0] = head;
        o.seg_len[0] = sizeof head;
        o.seg[1] = payload;
        o.seg_len[1] = len;
        o.seg[2] = tail;
        o.seg_len[2] = sizeof tail;

        /* PROTOCOL.md §2: canonical COBS, no 0x01 block after a final 0xFF one. */
        out_byte(&o, 0);
        for (;;) {
                size_t run = in_run(&o);

                out_byte(&o, (uint8_t)(run + 1));
                in_copy(&o, run);
                if (in_end(&o))
                        break;
                if (run == 254)
                        continue;
                o.off++;                /* the zero the block stands for */
                if (in_end(&o)) {
                        out_byte(&o, 1);
                        break;
                }
        }
        out_byte(&o, 0);
        if (o.fill)
                b->ops->write(b->ctx, b->tx, o.fill);
}

/* Builds an ERROR payload in @work; returns its length. */
static size_t error_payload(struct spb_board *b, int code) {
        struct spc_tlv_writer w;

        spc_tlv_writer_init(&w, b->work, b->work_cap);
        spc_tlv_put_u16(&w, SP_TAG_ERROR_CODE, (uint16_t)code);
        return w.len;
}

static void answer(struct spb_board *b, uint8_t req_type, uint16_t seq, int code, size_t len, bool cache) {
        uint8_t type = (uint8_t)(req_type | SP_MSG_RESPONSE);

        if (code) {
                type = SP_MSG_ERROR;
                len = error_payload(b, code);
        }
        b->have_last = cache;
        if (cache) {
                b->last_seq = seq;
                b->last_type = req_type;
                b->resp_type = type;
                b->resp_len = len;
        }
        send_frame(b, type, 0, seq, b->work, len);
}

static void handle_frame(struct spb_board *b, const uint8_t *frame, size_t flen) {
        struct spc_hdr h;
        struct spc_tlv_writer w;
        const uint8_t *payload = frame + SP_HEADER_LEN;
        int r;

        r = spc_frame_check(frame, flen, &h);
        if (r == SPC_E_CRC) {
                b->stats.bad_crc++;
                return;
        }
        if (r != SPC_OK) {
                b->stats.bad_format++;
                /* Right CRC, wrong length field: the header is trustworthy, say so. */
                if (flen >= SP_FRAME_OVERHEAD && !(h.type & SP_MSG_RESPONSE))
                        answer(b, h.type, h.seq, SP_ERR_BAD_FRAME, 0, false);
                return;
        }
        b->stats.frames++;

        if (h.type & SP_MSG_RESPONSE)
                return;         /* never answer a response: no ping-pong between boards */

        if (h.type != SP_MSG_HELLO && b->have_last && h.seq == b->last_seq && h.type == b->last_type) {
                b->stats.replays++;
                send_frame(b, b->resp_type, SP_FLAG_REPLAY, h.seq, b->work, b->resp_len);
                return;
        }

        /* Anything else overwrites @work, so the old cache is gone from here on. */
        b->have_last = false;
        /* A HELLO always ends the current session; only a good one starts the next. */
        if (h.type == SP_MSG_HELLO) {
                b->session = b->proved = false;
                /* Spec §5.3: the old session's frame limit ends with it; 64 until a HELLO succeeds. */
                b->peer_max_frame = SP_MAX_FRAME_MIN;
        }
        if (h.version != SP_PROTO_VERSION) {
                answer(b, h.type, h.seq, SP_ERR_VERSION, 0, h.type != SP_MSG_HELLO);
                return;
        }
        /* Spec §6.6: a board without LOCK does not know the type, in or out of a session. */
        if (!known_type(h.type) || (h.type == SP_MSG_LOCK && !b->ops->lock)) {
                answer(b, h.type, h.seq, SP_ERR_UNKNOWN_TYPE, 0, true);
                return;
        }
        if (spc_tlv_validate(payload, h.len) != SPC_OK) {
                answer(b, h.type, h.seq, SP_ERR_BAD_PAYLOAD, 0, h.type != SP_MSG_HELLO);
                return;
        }
        spc_tlv_writer_init(&w, b->work, payload_cap(b));
        r = dispatch(b, h.type, payload, h.len, &w);
        if (r == PENDING) {
                /* The request stays in @rx until spb_complete(): spb_feed() drops input meanwhile. */
                b->pend_type = h.type;
                b->pend_seq = h.seq;
                b->pend_mid = false;
                return;
        }
        answer(b, h.type, h.seq, r, w.len, h.type != SP_MSG_HELLO);
}

/* --- public --------------------------------------------------------------- */

/* SP_MAX_FRAME_LIMIT does not fit a 16-bit size_t: no comparison there (it would always be false). */
static size_t clamp_frame(size_t n) {
#if SIZE_MAX > SP_MAX_FRAME_LIMIT
        if (n > SP_MAX_FRAME_LIMIT)
                return SP_MAX_FRAME_LIMIT;
#endif
        return n;
}

int spb_init(struct spb_board *b, const struct spb_ops *ops, void *ctx,
             uint8_t *rx, size_t rx_cap, uint8_t *tx, size_t tx_cap,
             uint8_t *work, size_t work_cap) {
        if (!b || !ops || !rx || !tx || !work)
                return SPB_E_INVAL;
        if (!ops->identify || !ops->get_csr || !ops->store_certs || !ops->store_config ||
            !ops->prove || !ops->write)
                return SPB_E_INVAL;
        rx_cap = clamp_frame(rx_cap);
        if (rx_cap < SP_MAX_FRAME_MIN || tx_cap < SPB_TX_MIN ||
            work_cap < min_size(rx_cap - SP_FRAME_OVERHEAD, SPB_WORK_MIN))
                return SPB_E_NOSPC;

        memset(b, 0, sizeof *b);
        b->ops = ops;
        b->ctx = ctx;
        b->rx = rx;
        b->rx_cap = rx_cap;
        b->tx = tx;
        b->tx_cap = tx_cap;
        b->work = work;
        b->work_cap = work_cap;
        spb_reset(b);
        return SPB_OK;
}

void spb_reset(struct spb_board *b) {
        if (!b)
                return;
        b->rx_len = 0;
        b->rx_wire = 0;
        b->rx_state = SPC_RX_IDLE;
        b->cobs_code = 0;
        b->cobs_left = 0;
        b->have_last = false;
        b->session = b->proved = b->locked = b->keygen = false;
        b->pend_type = 0;               /* a later spb_complete() is ignored */
        b->skip = false;
        /* Until a HELLO says otherwise, assume the smallest station (spec §5.1). */
        b->peer_max_frame = SP_MAX_FRAME_MIN;
}

void spb_feed(struct spb_board *b, const uint8_t *data, size_t len) {
        struct spc_rx rx;

        if (!b || !b->ops || (!data && len))
                return;
        if (b->pend_type) {
                /* @rx holds the request being completed: drop input, remember
                 * whether it stopped inside a frame (skipped after completion). */
                if (len > 0) {
                        b->stats.dropped_busy += (uint32_t)len;
                        b->pend_mid = data[len - 1] != 0;
                }
                return;
        }
        if (b->skip && len > 0) {
                const uint8_t *z = memchr(data, 0, len);

                if (!z) {
                        b->stats.dropped_busy += (uint32_t)len;
                        return;
                }
                b->stats.dropped_busy += (uint32_t)(z - data);
                len -= (size_t)(z - data);
                data = z;
                b->skip = false;
        }
        rx.buf = b->rx;
        rx.cap = b->rx_cap;
        rx.len = b->rx_len;
        rx.wire = b->rx_wire;
        rx.state = b->rx_state;
        rx.code = b->cobs_code;
        rx.left = b->cobs_left;

        while (len > 0 && !b->pend_type) {
                int ev;
                size_t n = spc_rx_feed(&rx, data, len, &ev);

                data += n;
                len -= n;
                if (ev == SPC_RX_FRAME)
                        handle_frame(b, rx.buf, rx.len);
                else if (ev == SPC_RX_BAD)
                        b->stats.bad_format++;
                else if (ev == SPC_RX_OVERSIZE)
                        b->stats.oversize++;
        }

        b->rx_len = rx.len;
        b->rx_wire = rx.wire;
        b->rx_state = rx.state;
        b->cobs_code = rx.code;
        b->cobs_left = rx.left;
        if (b->pend_type && len > 0) {
                /* Input after the request that went pending. */
                b->stats.dropped_busy += (uint32_t)len;
                b->pend_mid = data[len - 1] != 0;
        }
}

bool spb_pending(const struct spb_board *b) {
        return b && b->pend_type != 0;
}

int spb_complete(struct spb_board *b, int result, size_t csr_len) {
        struct spc_tlv_writer w;
        const uint8_t *p;
        size_t n;
        uint8_t type;
        int r;

        if (!b || !b->pend_type)
                return SPB_E_INVAL;
        type = b->pend_type;
        p = b->rx + SP_HEADER_LEN;
        n = spc_get_be16(b->rx + 5);
        spc_tlv_writer_init(&w, b->work, payload_cap(b));
        r = callback_code(result == SPB_PENDING ? -1 : result);
        if (r == 0 && type == SP_MSG_GET_CSR) {
                r = finish_get_csr(b, &w, csr_cap(&w), csr_len);
        } else if (r == 0 && type == SP_MSG_PUT_CERT) {
                r = finish_put_cert(b, p, n, &w);
        } else if (r == 0 && type == SP_MSG_PUT_CONFIG) {
                r = store_pairs(b, p, n, b->pend_off);
                if (r == PENDING)
                        return SPB_OK;  /* the next pair went pending: still the same request */
        } else if (r == 0 && type == SP_MSG_PROVE) {
                r = finish_prove(b, &w);
        } else if (r == 0) {
                b->locked = true;       /* LOCK, the only other type that can be pending */
        }
        b->pend_type = 0;
        /* Input dropped in the middle of a frame: skip the rest of it. */
        b->rx_len = 0;
        b->rx_state = SPC_RX_IDLE;
        b->skip = b->pend_mid;
        answer(b, type, b->pend_seq, r, w.len, true);
        return SPB_OK;
}

const struct spb_stats *spb_get_stats(const struct spb_board *b) {
        return b ? &b->stats : NULL;
}

void spb_sha256(const void *data, size_t len, uint8_t ret[SP_SHA256_LEN]) {
        spc_sha256(data, len, ret);
}
