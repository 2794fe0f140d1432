/* SPDX-License-Identifier: MIT */
/* COBS encoder, one-shot decoder and the incremental deframer; freestanding core. */

/*
 * Deframer states (enum spc_rx_state), PROTOCOL.md §2:
 *
 *   IDLE     Between frames: the last byte seen was a delimiter 0x00 (or the
 *            deframer was just created/reset). 0x00 here is an empty frame and
 *            is ignored silently. Any other byte is the first code byte of a
 *            new frame: len = 0 and we go on as in CODE.
 *   CODE     Expecting a code byte c (1..255). If the previous block had a
 *            code < 0xFF, it ended with an implied 0x00 which is stored now
 *            (not earlier: the implied zero of the *last* block is not data).
 *            c == 1 → stay in CODE; otherwise left = c - 1 → DATA.
 *            0x00 here ends the frame cleanly → event FRAME, state IDLE.
 *   DATA     Copying data bytes; left counts down to 0 → CODE.
 *            0x00 here ends the frame mid-block → event BAD, state IDLE.
 *   DISCARD  Storing the next byte would exceed cap: store nothing more and
 *            wait for the delimiter → event OVERSIZE (once), state IDLE.
 *
 * Bytes received before the first delimiter are treated like any frame: if
 * they do not form a valid frame they are reported as one bad frame when the
 * delimiter arrives (see PROTOCOL.md §2.3).
 */

#include <string.h>

#include "sp-core.h"

/* --- encoder -------------------------------------------------------------- */

void spc_cobs_enc_init(struct spc_cobs_enc *e, uint8_t *out, size_t cap) {
        e->out = out;
        e->cap = cap;
        e->pos = 0;
        e->code_pos = 0;
        e->code = 1;
        e->open = false;
        e->error = SPC_OK;
}

static bool enc_reserve(struct spc_cobs_enc *e) {
        if (e->pos >= e->cap) {
                e->error = SPC_E_NOBUFS;
                return false;
        }
        e->code_pos = e->pos++;
        e->code = 1;
        e->open = true;
        return true;
}

void spc_cobs_enc_put(struct spc_cobs_enc *e, const uint8_t *in, size_t len) {
        size_t i = 0;

        while (i < len && e->error == SPC_OK) {
                size_t n = 0, max;

                if (!e->open && !enc_reserve(e))
                        return;
                if (in[i] == 0) {
                        e->out[e->code_pos] = e->code;
                        e->open = false;
                        i++;
                        /* A zero always starts a new block, even at the end:
                         * that block carries the zero as its implied byte. */
                        if (!enc_reserve(e))
                                return;
                        continue;
                }
                /* A run of non-zero bytes, as many as the open block still takes. */
                max = (size_t)(0xff - e->code);
                if (max > len - i)
                        max = len - i;
                {
                        const uint8_t *z = memchr(in + i, 0, max);
                        n = z ? (size_t)(z - (in + i)) : max;
                }
                if (n > e->cap - e->pos) {
                        e->error = SPC_E_NOBUFS;
                        return;
                }
                /* memmove: the input may sit behind the output in the same
                 * buffer (client.c re-encodes in place); the output never
                 * overtakes the input it has not read yet. */
                memmove(e->out + e->pos, in + i, n);
                e->pos += n;
                i += n;
                e->code = (uint8_t)(e->code + n);
                if (e->code == 0xff) {
                        /* Full block: no implied zero. The next block is
                         * opened lazily so a final full block gets no
                         * trailing 0x01 (canonical form). */
                        e->out[e->code_pos] = 0xff;
                        e->open = false;
                }
        }
}

int spc_cobs_enc_finish(struct spc_cobs_enc *e, size_t *ret_len) {
        if (e->error != SPC_OK)
                return e->error;
        if (e->open)
                e->out[e->code_pos] = e->code;
        else if (e->pos == 0) {
                /* Empty input encodes as one empty block. */
                if (!enc_reserve(e))
                        return e->error;
                e->out[e->code_pos] = 1;
        }
        e->open = false;
        *ret_len = e->pos;
        return SPC_OK;
}

/* --- one-shot decoder ----------------------------------------------------- */

int spc_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *ret_len) {
        size_t i = 0, o = 0;

        while (i < len) {
                uint8_t code = in[i++];

                if (code == 0)
                        return SPC_E_BADMSG;
                for (uint8_t k = 1; k < code; k++) {
                        if (i >= len || in[i] == 0)
                                return SPC_E_BADMSG;
                        if (o >= cap)
                                return SPC_E_NOBUFS;
                        out[o++] = in[i++];
                }
                if (code != 0xff && i < len) {
                        if (o >= cap)
                                return SPC_E_NOBUFS;
                        out[o++] = 0;
                }
        }
        *ret_len = o;
        return SPC_OK;
}

/* --- deframer ------------------------------------------------------------- */

void spc_rx_init(struct spc_rx *rx, uint8_t *buf, size_t cap) {
        rx->buf = buf;
        rx->cap = cap;
        spc_rx_reset(rx);
}

void spc_rx_reset(struct spc_rx *rx) {
        rx->len = 0;
        rx->wire = 0;
        rx->state = SPC_RX_IDLE;
        rx->code = 0;
        rx->left = 0;
}

static void rx_store(struct spc_rx *rx, uint8_t b) {
        if (rx->len >= rx->cap) {
                rx->state = SPC_RX_DISCARD;
                return;
        }
        rx->buf[rx->len++] = b;
}

size_t spc_rx_feed(struct spc_rx *rx, const uint8_t *in, size_t len, int *ret_event) {
        for (size_t i = 0; i < len; i++) {
                uint8_t b = in[i];

                if (b == 0) {
                        int ev;

                        switch (rx->state) {
                        case SPC_RX_IDLE:
                                continue;       /* empty frame: ignored */
                        case SPC_RX_CODE:
                                ev = SPC_RX_FRAME;
                                break;
                        case SPC_RX_DATA:
                                ev = SPC_RX_BAD;
                                break;
                        default:
                                ev = SPC_RX_OVERSIZE;
                                break;
                        }
                        rx->state = SPC_RX_IDLE;
                        *ret_event = ev;
                        return i + 1;
                }

                switch (rx->state) {
                case SPC_RX_IDLE:
                        rx->len = 0;
                        rx->wire = 0;
                        rx->code = 0xff;        /* no implied zero before the first block */
                        rx->state = SPC_RX_CODE;
                        /* fall through */
                case SPC_RX_CODE:
                        rx->wire++;
                        if (rx->code != 0xff) {
                                rx_store(rx, 0);
                                if (rx->state == SPC_RX_DISCARD)
                                        break;
                        }
                        rx->code = b;
                        rx->left = (uint8_t)(b - 1);
                        rx->state = rx->left ? SPC_RX_DATA : SPC_RX_CODE;
                        break;
                case SPC_RX_DATA: {
                        /* The rest of the block at once, up to a delimiter or
                         * the end of the input; byte by byte only when the
                         * buffer is about to overflow. */
                        size_t n = 1, max = len - i;

                        if (max > rx->left)
                                max = rx->left;
                        while (n < max && in[i + n] != 0)
                                n++;
                        if (n > rx->cap - rx->len) {
                                rx->wire++;
                                rx_store(rx, b);
                                if (rx->state == SPC_RX_DISCARD)
                                        break;
                                if (--rx->left == 0)
                                        rx->state = SPC_RX_CODE;
                                break;
                        }
                        memcpy(rx->buf + rx->len, in + i, n);
                        rx->len += n;
                        rx->wire += n;
                        rx->left = (uint8_t)(rx->left - n);
                        i += n - 1;
                        if (rx->left == 0)
                                rx->state = SPC_RX_CODE;
                        break;
                }
                default:
                        rx->wire++;
                        break;
                }
        }
        *ret_event = SPC_RX_NONE;
        return len;
}
