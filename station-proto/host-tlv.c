/* SPDX-License-Identifier: MIT */
/* Host TLV API: the public sp_tlv_* names and -errno over the shared core (tlv.c). */

#include <errno.h>
#include <string.h>

#include "host-internal.h"

/* The public structs mirror the core ones field for field; copy in and out
 * rather than cast so that the compiler checks every field. */

void sp_tlv_writer_init(struct sp_tlv_writer *w, void *buf, size_t cap) {
        if (!w)
                return;
        *w = (struct sp_tlv_writer) { .buf = buf, .cap = buf ? cap : 0 };
}

int sp_tlv_put(struct sp_tlv_writer *w, uint8_t tag, const void *value, size_t len) {
        struct spc_tlv_writer cw;
        int r;

        if (!w)
                return -EINVAL;
        if (w->error)
                return w->error;
        cw = (struct spc_tlv_writer) { .buf = w->buf, .cap = w->cap, .len = w->len, .error = SPC_OK };
        r = spc_tlv_put(&cw, tag, value, len);
        if (r < 0)
                return (w->error = sp_errno(r));
        w->len = cw.len;
        return 0;
}

int sp_tlv_put_u8(struct sp_tlv_writer *w, uint8_t tag, uint8_t v) {
        return sp_tlv_put(w, tag, &v, 1);
}

int sp_tlv_put_u16(struct sp_tlv_writer *w, uint8_t tag, uint16_t v) {
        uint8_t b[2];

        spc_put_be16(b, v);
        return sp_tlv_put(w, tag, b, sizeof b);
}

int sp_tlv_put_u32(struct sp_tlv_writer *w, uint8_t tag, uint32_t v) {
        uint8_t b[4];

        spc_put_be32(b, v);
        return sp_tlv_put(w, tag, b, sizeof b);
}

int sp_tlv_put_str(struct sp_tlv_writer *w, uint8_t tag, const char *s) {
        if (!s)
                return sp_tlv_put(w, tag, NULL, 0);
        return sp_tlv_put(w, tag, s, strlen(s));
}

void sp_tlv_reader_init(struct sp_tlv_reader *r, const void *buf, size_t len) {
        if (!r)
                return;
        *r = (struct sp_tlv_reader) { .buf = buf, .len = buf ? len : 0 };
}

int sp_tlv_next(struct sp_tlv_reader *r, struct sp_tlv *ret) {
        struct spc_tlv_reader cr;
        struct spc_tlv t;
        int k;

        if (!r || !ret)
                return -EINVAL;
        cr = (struct spc_tlv_reader) { .buf = r->buf, .len = r->len, .off = r->off };
        k = spc_tlv_next(&cr, &t);
        if (k < 0)
                return sp_errno(k);
        if (k == 0)
                return 0;
        r->off = cr.off;
        *ret = (struct sp_tlv) { .tag = t.tag, .len = t.len, .value = t.value };
        return 1;
}

int sp_tlv_find(const void *buf, size_t len, uint8_t tag, struct sp_tlv *ret) {
        struct spc_tlv t;
        int r;

        if (!ret || (!buf && len))
                return -EINVAL;
        r = spc_tlv_find(buf, len, tag, &t);
        if (r < 0)
                return sp_errno(r);
        *ret = (struct sp_tlv) { .tag = t.tag, .len = t.len, .value = t.value };
        return 0;
}

int sp_tlv_validate(const void *buf, size_t len) {
        if (!buf && len)
                return -EINVAL;
        return sp_errno(spc_tlv_validate(buf, len));
}
