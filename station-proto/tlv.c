/* SPDX-License-Identifier: MIT */
/* TLV reader and writer, field character checks; freestanding core. */

#include <string.h>

#include "sp-core.h"

void spc_tlv_reader_init(struct spc_tlv_reader *r, const uint8_t *buf, size_t len) {
        r->buf = buf;
        r->len = buf ? len : 0;
        r->off = 0;
}

int spc_tlv_next(struct spc_tlv_reader *r, struct spc_tlv *ret) {
        size_t left, vlen;

        if (r->off >= r->len)
                return 0;
        left = r->len - r->off;
        /* Spec §4: tag(1) length(2, BE) value; both header and value must fit. */
        if (left < SP_TLV_HEADER_LEN)
                return SPC_E_BADMSG;
        vlen = spc_get_be16(r->buf + r->off + 1);
        if (vlen > left - SP_TLV_HEADER_LEN)
                return SPC_E_BADMSG;
        ret->tag = r->buf[r->off];
        ret->len = (uint16_t)vlen;
        ret->value = r->buf + r->off + SP_TLV_HEADER_LEN;
        r->off += SP_TLV_HEADER_LEN + vlen;
        return 1;
}

int spc_tlv_validate(const uint8_t *buf, size_t len) {
        struct spc_tlv_reader r;
        struct spc_tlv t;
        int k;

        spc_tlv_reader_init(&r, buf, len);
        while ((k = spc_tlv_next(&r, &t)) > 0)
                ;
        return k < 0 ? k : SPC_OK;
}

int spc_tlv_find(const uint8_t *buf, size_t len, uint8_t tag, struct spc_tlv *ret) {
        struct spc_tlv_reader r;
        struct spc_tlv t, found = { 0, 0, NULL };
        bool have = false;
        int k;

        /* Walk the whole payload: a malformed tail makes the payload
         * malformed even when the tag was found before it. */
        spc_tlv_reader_init(&r, buf, len);
        while ((k = spc_tlv_next(&r, &t)) > 0)
                if (!have && t.tag == tag) {
                        found = t;
                        have = true;    /* spec §4.2: the first one wins */
                }
        if (k < 0)
                return k;
        if (!have)
                return SPC_E_NOENT;
        *ret = found;
        return SPC_OK;
}

void spc_tlv_writer_init(struct spc_tlv_writer *w, uint8_t *buf, size_t cap) {
        w->buf = buf;
        w->cap = buf ? cap : 0;
        w->len = 0;
        w->error = SPC_OK;
}

int spc_tlv_put(struct spc_tlv_writer *w, uint8_t tag, const void *value, size_t len) {
        if (w->error != SPC_OK)
                return w->error;
#if SIZE_MAX > 0xffffu   /* with a 16-bit size_t no length can exceed it (and sdcc warns) */
        if (len > 0xffffu)
                return (w->error = SPC_E_MSGSIZE);
#endif
        if (len > 0 && !value)
                return (w->error = SPC_E_INVAL);
        if (w->cap - w->len < SP_TLV_HEADER_LEN || w->cap - w->len - SP_TLV_HEADER_LEN < len)
                return (w->error = SPC_E_NOBUFS);
        w->buf[w->len] = tag;
        spc_put_be16(w->buf + w->len + 1, (uint16_t)len);
        if (len > 0)
                memmove(w->buf + w->len + SP_TLV_HEADER_LEN, value, len);
        w->len += SP_TLV_HEADER_LEN + len;
        return SPC_OK;
}

int spc_tlv_put_u8(struct spc_tlv_writer *w, uint8_t tag, uint8_t v) {
        return spc_tlv_put(w, tag, &v, 1);
}

int spc_tlv_put_u16(struct spc_tlv_writer *w, uint8_t tag, uint16_t v) {
        uint8_t b[2];

        spc_put_be16(b, v);
        return spc_tlv_put(w, tag, b, sizeof b);
}

int spc_tlv_put_u32(struct spc_tlv_writer *w, uint8_t tag, uint32_t v) {
        uint8_t b[4];

        spc_put_be32(b, v);
        return spc_tlv_put(w, tag, b, sizeof b);
}

bool spc_is_printable(const uint8_t *s, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (s[i] < 0x20 || s[i] > 0x7e)
                        return false;
        return true;
}

bool spc_is_cfg_key(const uint8_t *s, size_t len) {
        if (len < 1 || len > 32)
                return false;
        for (size_t i = 0; i < len; i++) {
                uint8_t c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

size_t spc_strnlen(const char *s, size_t max) {
        size_t n = 0;

        while (n < max && s[n])
                n++;
        return n;
}
