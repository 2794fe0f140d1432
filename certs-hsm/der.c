/* SPDX-License-Identifier: MIT */
/* Strict, bounded DER reader (X.690 DER subset: single-byte tags, definite minimal lengths). */

#include "certs-internal.h"

const uint8_t certs_oid_ec_public_key[7] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
const uint8_t certs_oid_prime256v1[8] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
const uint8_t certs_oid_ecdsa_sha256[8] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
const uint8_t certs_oid_common_name[3] = { 0x55, 0x04, 0x03 };
const uint8_t certs_oid_ext_request[9] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e };
const uint8_t certs_oid_basic_constraints[3] = { 0x55, 0x1d, 0x13 };

const uint8_t certs_p256_spki_prefix[26] = {
        0x30, 0x59,                                                 /* SEQUENCE, 89 */
        0x30, 0x13,                                                 /*  SEQUENCE, 19 */
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,       /*   id-ecPublicKey */
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, /*   prime256v1 */
        0x03, 0x42, 0x00,                                           /*  BIT STRING, 66, 0 unused */
};

int certs_der_next_any(struct der *in, uint8_t *ret_tag, struct der *ret_val, struct der *ret_tlv) {
        const uint8_t *p = in->p;
        size_t left = in->len, len, hdr;

        if (left == 0)
                return -ENODATA;
        if (left < 2)
                return -EBADMSG;
        /* X.690 8.1.2.4: 0x1f in the low bits starts a multi-byte tag; we never need one. */
        if ((p[0] & 0x1f) == 0x1f)
                return -EBADMSG;
        if (p[1] < 0x80) {
                len = p[1];
                hdr = 2;
        } else if (p[1] == 0x81) {
                if (left < 3 || p[2] < 0x80) /* DER: minimal length encoding */
                        return -EBADMSG;
                len = p[2];
                hdr = 3;
        } else if (p[1] == 0x82) {
                if (left < 4 || p[2] == 0)
                        return -EBADMSG;
                len = (size_t)p[2] << 8 | p[3];
                hdr = 4;
        } else /* 0x80 = indefinite (BER only); longer forms exceed any input we accept */
                return -EBADMSG;
        if (len > left - hdr)
                return -EBADMSG;

        if (ret_tag)
                *ret_tag = p[0];
        if (ret_val)
                *ret_val = (struct der){ p + hdr, len };
        if (ret_tlv)
                *ret_tlv = (struct der){ p, hdr + len };
        in->p += hdr + len;
        in->len -= hdr + len;
        return 0;
}

int certs_der_next(struct der *in, uint8_t tag, struct der *ret_val, struct der *ret_tlv) {
        struct der saved = *in;
        uint8_t t;
        int r = certs_der_next_any(in, &t, ret_val, ret_tlv);
        if (r == -ENODATA)
                return -EBADMSG;
        if (r < 0)
                return r;
        if (t != tag) {
                *in = saved;
                return -EBADMSG;
        }
        return 0;
}

bool certs_der_peek(const struct der *in, uint8_t tag) {
        return in->len > 0 && in->p[0] == tag;
}

int certs_der_check_tree(struct der in, unsigned depth) {
        for (;;) {
                uint8_t tag;
                struct der val;
                int r = certs_der_next_any(&in, &tag, &val, NULL);
                if (r == -ENODATA)
                        return 0;
                if (r < 0)
                        return r;
                if (tag & 0x20) {
                        if (depth == 0)
                                return -EBADMSG;
                        r = certs_der_check_tree(val, depth - 1);
                        if (r < 0)
                                return r;
                } else if (tag == DER_BOOLEAN) {
                        /* X.690 11.1: TRUE is 0xff in DER. */
                        if (val.len != 1 || (val.p[0] != 0x00 && val.p[0] != 0xff))
                                return -EBADMSG;
                } else if (tag == DER_INTEGER) {
                        if (val.len == 0)
                                return -EBADMSG;
                        if (val.len > 1 && ((val.p[0] == 0x00 && !(val.p[1] & 0x80)) ||
                                            (val.p[0] == 0xff && (val.p[1] & 0x80))))
                                return -EBADMSG;
                } else if (tag == DER_NULL) {
                        if (val.len != 0)
                                return -EBADMSG;
                } else if (tag == DER_OID) {
                        /* Non-empty, last octet ends a subidentifier, no 0x80 padding. */
                        if (val.len == 0 || (val.p[val.len - 1] & 0x80))
                                return -EBADMSG;
                        for (size_t i = 0; i < val.len; i++)
                                if (val.p[i] == 0x80 && (i == 0 || !(val.p[i - 1] & 0x80)))
                                        return -EBADMSG;
                }
        }
}

int certs_der_uint(struct der val, size_t max, struct der *ret) {
        if (val.len == 0)
                return -EBADMSG;
        if (val.p[0] & 0x80) /* negative */
                return -EBADMSG;
        if (val.p[0] == 0x00 && val.len > 1) {
                if (!(val.p[1] & 0x80)) /* non-minimal */
                        return -EBADMSG;
                val.p++;
                val.len--;
        }
        if (val.len > max)
                return -EBADMSG;
        *ret = val;
        return 0;
}

