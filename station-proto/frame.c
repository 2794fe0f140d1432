/* SPDX-License-Identifier: MIT */
/* Frame header, CRC check and wire encoding; freestanding core. */

#include <string.h>

#include "sp-core.h"

int spc_frame_check(const uint8_t *frame, size_t len, struct spc_hdr *ret) {
        uint32_t crc;
        struct spc_hdr h;

        /* Spec §3: at least header + CRC; the CRC covers header and payload. */
        if (len < SP_FRAME_OVERHEAD)
                return SPC_E_BADMSG;
        crc = spc_crc32(0, frame, len - SP_CRC_LEN);
        if (crc != spc_get_be32(frame + len - SP_CRC_LEN))
                return SPC_E_CRC;

        h.version = frame[0];
        h.type = frame[1];
        h.flags = frame[2];
        h.seq = spc_get_be16(frame + 3);
        h.len = spc_get_be16(frame + 5);
        *ret = h;
        if ((size_t)h.len != len - SP_FRAME_OVERHEAD)
                return SPC_E_BADMSG;
        return SPC_OK;
}

int spc_frame_encode(const struct spc_hdr *hdr, const uint8_t *payload,
                     uint8_t *out, size_t cap, size_t *ret_len) {
        struct spc_cobs_enc e;
        uint8_t head[SP_HEADER_LEN], tail[SP_CRC_LEN];
        uint32_t crc;
        size_t n;
        int r;

        if (cap < 2)
                return SPC_E_NOBUFS;

        head[0] = hdr->version;
        head[1] = hdr->type;
        head[2] = hdr->flags;
        spc_put_be16(head + 3, hdr->seq);
        spc_put_be16(head + 5, hdr->len);
        crc = spc_crc32(0, head, sizeof head);
        if (hdr->len > 0)
                crc = spc_crc32(crc, payload, hdr->len);
        spc_put_be32(tail, crc);

        /* The payload may live in @out's tail (client.c re-encodes in place):
         * header and CRC are in locals, and the encoder reads before it writes. */
        out[0] = 0;
        spc_cobs_enc_init(&e, out + 1, cap - 2);
        spc_cobs_enc_put(&e, head, sizeof head);
        if (hdr->len > 0)
                spc_cobs_enc_put(&e, payload, hdr->len);
        spc_cobs_enc_put(&e, tail, sizeof tail);
        r = spc_cobs_enc_finish(&e, &n);
        if (r < 0)
                return r;
        out[1 + n] = 0;
        *ret_len = n + 2;
        return SPC_OK;
}
