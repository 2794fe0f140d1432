/* SPDX-License-Identifier: MIT */
/* certs-hsm internals: the strict DER reader/writer, shared EC state (cleanup helpers: basic/cleanup.h). */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/cleanup.h"
#include "basic/macro.h"
#include "certs-hsm/signer.h"

/* ---- strict DER reader ---------------------------------------------------------------- */

/* Tags we use (universal class, single byte). */
enum {
        DER_BOOLEAN = 0x01,
        DER_INTEGER = 0x02,
        DER_BIT_STRING = 0x03,
        DER_OCTET_STRING = 0x04,
        DER_NULL = 0x05,
        DER_OID = 0x06,
        DER_UTF8STRING = 0x0c,
        DER_PRINTABLESTRING = 0x13,
        DER_IA5STRING = 0x16,
        DER_UTCTIME = 0x17,
        DER_GENERALIZEDTIME = 0x18,
        DER_SEQUENCE = 0x30,
        DER_SET = 0x31,
        DER_CTX0_C = 0xa0, /* [0] constructed */
        DER_CTX3_C = 0xa3, /* [3] constructed */
};

/* A view on bytes: a TLV's contents, or the rest of a container. Never owns. */
struct der {
        const uint8_t *p;
        size_t len;
};

/* Reads the next TLV from @in. On success advances @in, sets *ret_tag, @ret_val
 * to the contents and (optional) @ret_tlv to the whole element. Rejects
 * high-tag-number form, indefinite and non-minimal lengths, lengths past the
 * end. Returns 0 or -EBADMSG (or -ENODATA at the end of @in). */
int certs_der_next_any(struct der *in, uint8_t *ret_tag, struct der *ret_val, struct der *ret_tlv);

/* Like certs_der_next_any() but requires @tag (-EBADMSG otherwise). */
int certs_der_next(struct der *in, uint8_t tag, struct der *ret_val, struct der *ret_tlv);

/* True if the next element of @in has @tag. */
bool certs_der_peek(const struct der *in, uint8_t tag);

/* Checks that @in is a sequence of well-formed TLVs, recursing into
 * constructed ones up to @depth levels. Returns 0 or -EBADMSG. */
int certs_der_check_tree(struct der in, unsigned depth);

/* Positive INTEGER contents in minimal DER: returns the magnitude without the
 * sign octet (@ret, at most @max bytes) or -EBADMSG. */
int certs_der_uint(struct der val, size_t max, struct der *ret);

static inline bool der_eq(struct der a, const uint8_t *b, size_t blen) {
        return a.len == blen && memcmp(a.p, b, blen) == 0;
}

/* ---- DER writer ------------------------------------------------------------------------ */

/* Bytes needed for the header (tag + length) of contents of @len bytes. */
static inline size_t der_hdr_size(size_t len) {
        return len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
}

/* Writes tag + length at @p; returns the pointer past them. @len < 2^24. */
static inline uint8_t *der_put_hdr(uint8_t *p, uint8_t tag, size_t len) {
        *p++ = tag;
        if (len < 0x80)
                *p++ = (uint8_t)len;
        else if (len < 0x100) {
                *p++ = 0x81;
                *p++ = (uint8_t)len;
        } else if (len < 0x10000) {
                *p++ = 0x82;
                *p++ = (uint8_t)(len >> 8);
                *p++ = (uint8_t)len;
        } else {
                *p++ = 0x83;
                *p++ = (uint8_t)(len >> 16);
                *p++ = (uint8_t)(len >> 8);
                *p++ = (uint8_t)len;
        }
        return p;
}

static inline uint8_t *put_bytes(uint8_t *p, const void *b, size_t n) {
        memcpy(p, b, n);
        return p + n;
}

/* ---- shared constants ------------------------------------------------------------------- */

/* OID contents (no tag/length). */
extern const uint8_t certs_oid_ec_public_key[7];  /* 1.2.840.10045.2.1 */
extern const uint8_t certs_oid_prime256v1[8];     /* 1.2.840.10045.3.1.7 */
extern const uint8_t certs_oid_ecdsa_sha256[8];   /* 1.2.840.10045.4.3.2 */
extern const uint8_t certs_oid_common_name[3];    /* 2.5.4.3 */
extern const uint8_t certs_oid_ext_request[9];    /* 1.2.840.113549.1.9.14 */
extern const uint8_t certs_oid_basic_constraints[3]; /* 2.5.29.19 */

/* SEQUENCE { OID id-ecPublicKey, OID prime256v1 } BIT STRING header, i.e. the
 * 26 bytes that precede the 65-byte point in a P-256 SubjectPublicKeyInfo. */
extern const uint8_t certs_p256_spki_prefix[26];

/* ---- EC helpers (ec.c) --------------------------------------------------------------- */

/* Opaque handles so users of this header need no deprecated OpenSSL types. */
struct csr_key;

/* Decodes an uncompressed P-256 point. Returns 0, -EKEYREJECTED (not on the curve,
 * wrong form) or -ENOMEM. */
int certs_ec_key_from_point(const uint8_t point[65], struct csr_key **ret);
void certs_ec_key_free(struct csr_key *k);

/* Verifies (r, s) (big-endian magnitudes, each ≤ 32 bytes, not checked for range)
 * over a SHA-256 @digest. Returns 1 valid, 0 invalid, -ENOMEM, or -EIO when
 * OpenSSL failed to verify at all (never reported as invalid). */
int certs_ec_key_verify(const struct csr_key *k, const uint8_t digest[32], const uint8_t *r, size_t rlen,
                  const uint8_t *s, size_t slen);

/* ---- signer internals --------------------------------------------------------------- */

