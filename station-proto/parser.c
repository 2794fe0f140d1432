/* SPDX-License-Identifier: MIT */
/* Push-style frame decoder for the station side: bytes in, checked frames out. */

/*
 * State machine (enum spc_rx_state in sp-core.h; the byte-level transitions
 * are in cobs.c, shared with the board library):
 *
 *   IDLE ──0x00──▶ IDLE                     empty frame, ignored silently
 *   IDLE ──c≠0──▶ CODE/DATA                 first COBS code byte of a frame
 *   CODE ──c≠0──▶ DATA (c>1) or CODE (c=1)  next block; stores the implied 0x00
 *   DATA ──b≠0──▶ DATA … CODE               data bytes of the block
 *   any  ──store past max_frame──▶ DISCARD  nothing more is stored
 *   CODE ──0x00──▶ IDLE  → check the frame (length ≥ 11, CRC, length field):
 *                          good → cb(frame, 0); bad → cb(NULL, -EBADMSG)
 *   DATA ──0x00──▶ IDLE  → COBS error: cb(NULL, -EBADMSG)
 *   DISCARD ─0x00─▶ IDLE → cb(NULL, -EMSGSIZE), once per frame
 *
 * So every error is reported when its delimiter arrives, exactly once per
 * frame, and the byte after the delimiter starts afresh (resynchronisation).
 * Bytes before the first delimiter form a frame like any other: garbage there
 * is one -EBADMSG (PROTOCOL.md §2.3). The parser allocates its frame buffer in
 * sp_parser_new() and never again.
 */

#include <errno.h>
#include <stdlib.h>

#include "host-internal.h"

struct sp_parser {
        struct spc_rx rx;
        struct sp_parser_stats stats;
        uint8_t buf[];
};

int sp_parser_new(struct sp_parser **ret, const struct sp_limits *limits) {
        size_t max = limits && limits->max_frame ? limits->max_frame : SP_MAX_FRAME_DEFAULT;
        struct sp_parser *p;

        if (!ret)
                return -EINVAL;
        if (max < SP_MAX_FRAME_MIN || max > SP_MAX_FRAME_LIMIT)
                return -EINVAL;
        p = calloc(1, sizeof *p + max);
        if (!p)
                return -ENOMEM;
        spc_rx_init(&p->rx, p->buf, max);
        *ret = p;
        return 0;
}

struct sp_parser *sp_parser_free(struct sp_parser *p) {
        free(p);
        return NULL;
}

void sp_parser_reset(struct sp_parser *p) {
        if (p)
                spc_rx_reset(&p->rx);
}

static int deliver(struct sp_parser *p, int ev, sp_frame_cb cb, void *userdata) {
        struct spc_hdr h;
        struct sp_frame f;
        int r;

        switch (ev) {
        case SPC_RX_OVERSIZE:
                p->stats.oversize++;
                p->stats.discarded_bytes += p->rx.wire;
                return cb ? cb(NULL, -EMSGSIZE, userdata) : 0;
        case SPC_RX_BAD:
                p->stats.bad_format++;
                p->stats.discarded_bytes += p->rx.wire;
                return cb ? cb(NULL, -EBADMSG, userdata) : 0;
        default:
                break;
        }

        r = spc_frame_check(p->rx.buf, p->rx.len, &h);
        if (r < 0) {
                if (r == SPC_E_CRC)
                        p->stats.bad_crc++;
                else
                        p->stats.bad_format++;
                p->stats.discarded_bytes += p->rx.wire;
                return cb ? cb(NULL, -EBADMSG, userdata) : 0;
        }
        p->stats.frames++;
        f = (struct sp_frame) {
                .version = h.version,
                .type = h.type,
                .flags = h.flags,
                .seq = h.seq,
                .len = h.len,
                .payload = p->rx.buf + SP_HEADER_LEN,
        };
        return cb ? cb(&f, 0, userdata) : 0;
}

ssize_t sp_parser_feed(struct sp_parser *p, const void *buf, size_t len, sp_frame_cb cb, void *userdata) {
        const uint8_t *in = buf;
        size_t left = len;

        if (!p || (!buf && len))
                return -EINVAL;
        if (len > SSIZE_MAX)
                return -EINVAL;
        while (left > 0) {
                int ev, r;
                size_t n = spc_rx_feed(&p->rx, in, left, &ev);

                in += n;
                left -= n;
                if (ev == SPC_RX_NONE)
                        break;
                r = deliver(p, ev, cb, userdata);
                if (r < 0)
                        return r;
        }
        return (ssize_t)len;
}

const struct sp_parser_stats *sp_parser_stats(const struct sp_parser *p) {
        return p ? &p->stats : NULL;
}
