/* SPDX-License-Identifier: MIT */
/* Frame encoder and CRC for the station side (wrappers over the shared core). */

#include <errno.h>

#include "host-internal.h"

uint32_t sp_crc32(uint32_t crc, const void *buf, size_t len) {
        if (!buf)
                return crc;
        return spc_crc32(crc, buf, len);
}

size_t sp_frame_encoded_max(size_t payload_len) {
        return spc_frame_wire_max(payload_len);
}

ssize_t sp_frame_encode(const struct sp_frame *f, void *out, size_t cap) {
        struct spc_hdr h;
        size_t n;
        int r;

        if (!f || !out || (f->len && !f->payload))
                return -EINVAL;
        if (cap > SSIZE_MAX)
                cap = SSIZE_MAX;
        h = (struct spc_hdr) {
                .version = f->version,
                .type = f->type,
                .flags = f->flags,
                .seq = f->seq,
                .len = f->len,
        };
        r = spc_frame_encode(&h, f->payload, out, cap, &n);
        if (r < 0)
                return sp_errno(r);
        return (ssize_t)n;
}
