/* SPDX-License-Identifier: MIT */
/* Station request tracking: one outstanding request, seq numbering, retransmission, matching. */

#include <errno.h>
#include <string.h>

#include "host-internal.h"

void sp_client_init(struct sp_client *c, void *buf, size_t cap, uint16_t first_seq) {
        if (!c)
                return;
        *c = (struct sp_client) {
                .next_seq = first_seq,
                .buf = buf,
                .cap = buf ? cap : 0,
        };
}

ssize_t sp_client_request(struct sp_client *c, uint8_t type, const void *payload, size_t len) {
        struct spc_hdr h;
        size_t n;
        int r;

        if (!c || !c->buf || (len && !payload))
                return -EINVAL;
        if (type == 0 || (type & SP_MSG_RESPONSE))
                return -EINVAL;
        if (len > 0xffffu)
                return -EMSGSIZE;
        if (c->cap > SSIZE_MAX)
                return -EINVAL;
        /* The worst case, not this payload's size: setting RETRANSMIT changes
         * the flags byte and the CRC, which can lengthen the encoding, and
         * sp_client_retransmit() re-encodes in place. */
        if (c->cap < sp_frame_encoded_max(len))
                return -ENOBUFS;

        /* A new request supersedes an outstanding one: its response will
         * carry the old seq and be ignored as stale (PROTOCOL.md §8). */
        c->pending = false;
        h = (struct spc_hdr) {
                .version = SP_PROTO_VERSION,
                .type = type,
                .flags = 0,
                .seq = c->next_seq,
                .len = (uint16_t)len,
        };
        r = spc_frame_encode(&h, payload, c->buf, c->cap, &n);
        if (r < 0)
                return sp_errno(r);
        c->seq = c->next_seq;
        c->next_seq = (uint16_t)(c->next_seq + 1);
        c->type = type;
        c->len = n;
        c->pending = true;
        return (ssize_t)n;
}

ssize_t sp_client_retransmit(struct sp_client *c) {
        struct spc_hdr h;
        size_t flen, n;
        uint8_t *frame;
        int r;

        if (!c || !c->buf)
                return -EINVAL;
        if (!c->pending || c->len < 2)
                return -EPROTO;

        /* Decode the stored wire bytes in place, set the flag, and encode
         * again from the tail of the buffer into its head: the encoder never
         * writes ahead of what it reads while cap >= SP_ENCODED_MAX(frame),
         * which sp_client_request() guaranteed. */
        r = spc_cobs_decode(c->buf + 1, c->len - 2, c->buf, c->cap, &flen);
        if (r < 0)
                return -EIO;
        r = spc_frame_check(c->buf, flen, &h);
        if (r < 0)
                return -EIO;
        h.flags |= SP_FLAG_RETRANSMIT;
        frame = c->buf + c->cap - flen;
        memmove(frame, c->buf, flen);
        r = spc_frame_encode(&h, frame + SP_HEADER_LEN, c->buf, c->cap, &n);
        if (r < 0)
                return -EIO;
        c->len = n;
        return (ssize_t)n;
}

int sp_client_match(struct sp_client *c, const struct sp_frame *f) {
        if (!c || !f)
                return -EINVAL;
        if (!(f->type & SP_MSG_RESPONSE) || !c->pending || f->seq != c->seq)
                return 0;
        if (f->version != SP_PROTO_VERSION)
                return -EPROTO;
        if (f->type != SP_MSG_ERROR && f->type != (c->type | SP_MSG_RESPONSE))
                return -EPROTO;
        c->pending = false;
        return 1;
}

void sp_client_cancel(struct sp_client *c) {
        if (c)
                c->pending = false;
}
