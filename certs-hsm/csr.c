/* SPDX-License-Identifier: MIT */
/* PKCS#10 CSR validation with a strict DER walker (RFC 2986, RFC 5480, RFC 5758).
 *
 *   CertificationRequest ::= SEQUENCE {
 *     certificationRequestInfo SEQUENCE {
 *       version       INTEGER { v1(0) },
 *       subject       Name,                         -- SEQUENCE OF SET OF {OID, ANY}
 *       subjectPKInfo SEQUENCE { AlgorithmIdentifier, BIT STRING },
 *       attributes    [0] IMPLICIT SET OF Attribute -- tolerated when absent (old encoders)
 *     },
 *     signatureAlgorithm AlgorithmIdentifier,       -- ecdsa-with-SHA256, no parameters
 *     signature          BIT STRING                 -- ECDSA-Sig-Value ::= SEQUENCE { r, s }
 *   }
 *
 * We never call d2i_X509_REQ(): OpenSSL 3.0 decodes the key through its provider
 * decoders (hundreds of µs) and is lenient where a factory gate should not be.
 * Everything is parsed as views into @der; nothing is allocated except the key.
 */

#include <openssl/sha.h>

#include "certs-hsm/csr.h"
#include "certs-hsm/digest.h"
#include "certs-internal.h"

/* How deep opaque values (attribute values, extension contents) may nest. */
#define MAX_OPAQUE_DEPTH 8

struct parsed {
        struct der info_tlv;  /* signed bytes */
        struct der cn;        /* CN value contents */
        uint8_t cn_tag;
        unsigned n_cn;
        struct der spki_alg_oid;
        struct der spki_params; /* TLV of the parameters (may be empty) */
        struct der spki_bits;   /* BIT STRING contents, including the unused-bits octet */
        struct der sig_alg;     /* AlgorithmIdentifier contents */
        struct der sig_bits;
        bool ext_request;
        bool requested_ca;
};

/* Name ::= SEQUENCE OF RelativeDistinguishedName; RDN ::= SET SIZE (1..MAX) OF ATV. */
static int parse_name(struct der name, struct parsed *ps) {
        while (name.len > 0) {
                struct der rdn;
                int r = certs_der_next(&name, DER_SET, &rdn, NULL);
                if (r < 0)
                        return r;
                if (rdn.len == 0)
                        return -EBADMSG;
                while (rdn.len > 0) {
                        struct der atv, oid, val;
                        uint8_t tag;
                        r = certs_der_next(&rdn, DER_SEQUENCE, &atv, NULL);
                        if (r < 0)
                                return r;
                        r = certs_der_next(&atv, DER_OID, &oid, NULL);
                        if (r < 0)
                                return r;
                        r = certs_der_next_any(&atv, &tag, &val, NULL);
                        if (r < 0)
                                return -EBADMSG;
                        if (atv.len != 0)
                                return -EBADMSG;
                        if (tag & 0x20) {
                                r = certs_der_check_tree(val, MAX_OPAQUE_DEPTH);
                                if (r < 0)
                                        return r;
                        }
                        if (der_eq(oid, certs_oid_common_name, sizeof(certs_oid_common_name))) {
                                ps->n_cn++;
                                ps->cn = val;
                                ps->cn_tag = tag;
                        }
                }
        }
        return 0;
}

/* BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL } */
static int parse_basic_constraints(struct der value, bool *ret_ca) {
        struct der seq, b;
        int r = certs_der_next(&value, DER_SEQUENCE, &seq, NULL);
        if (r < 0)
                return r;
        if (value.len != 0)
                return -EBADMSG;
        r = certs_der_check_tree(seq, 1);
        if (r < 0)
                return r;
        *ret_ca = false;
        if (certs_der_peek(&seq, DER_BOOLEAN)) {
                r = certs_der_next(&seq, DER_BOOLEAN, &b, NULL);
                if (r < 0)
                        return r;
                /* certs_der_check_tree() allowed only 0x00/0xff. 0x00 is not DER (DEFAULT
                 * FALSE must be omitted) but asks for nothing, so it is tolerated. */
                *ret_ca = b.p[0] == 0xff;
        }
        return 0;
}

/* Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension
 * Extension  ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
static int parse_extensions(struct der exts, struct parsed *ps) {
        struct der seq;
        int r = certs_der_next(&exts, DER_SEQUENCE, &seq, NULL);
        if (r < 0)
                return r;
        if (exts.len != 0)
                return -EBADMSG;
        while (seq.len > 0) {
                struct der ext, oid, crit, value;
                r = certs_der_next(&seq, DER_SEQUENCE, &ext, NULL);
                if (r < 0)
                        return r;
                r = certs_der_next(&ext, DER_OID, &oid, NULL);
                if (r < 0)
                        return r;
                if (certs_der_peek(&ext, DER_BOOLEAN)) {
                        r = certs_der_next(&ext, DER_BOOLEAN, &crit, NULL);
                        if (r < 0)
                                return r;
                        if (crit.len != 1 || (crit.p[0] != 0x00 && crit.p[0] != 0xff))
                                return -EBADMSG;
                }
                r = certs_der_next(&ext, DER_OCTET_STRING, &value, NULL);
                if (r < 0)
                        return r;
                if (ext.len != 0)
                        return -EBADMSG;
                if (der_eq(oid, certs_oid_basic_constraints, sizeof(certs_oid_basic_constraints))) {
                        bool ca;
                        r = parse_basic_constraints(value, &ca);
                        if (r < 0)
                                return r;
                        if (ca)
                                ps->requested_ca = true;
                }
                /* Every other requested extension is ignored: the profile decides. */
        }
        return 0;
}

/* Attribute ::= SEQUENCE { type OID, values SET SIZE(1..MAX) OF ANY } */
static int parse_attributes(struct der attrs, struct parsed *ps) {
        while (attrs.len > 0) {
                struct der attr, oid, values;
                int r = certs_der_next(&attrs, DER_SEQUENCE, &attr, NULL);
                if (r < 0)
                        return r;
                r = certs_der_next(&attr, DER_OID, &oid, NULL);
                if (r < 0)
                        return r;
                r = certs_der_next(&attr, DER_SET, &values, NULL);
                if (r < 0)
                        return r;
                if (attr.len != 0 || values.len == 0)
                        return -EBADMSG;
                r = certs_der_check_tree(values, MAX_OPAQUE_DEPTH);
                if (r < 0)
                        return r;
                if (der_eq(oid, certs_oid_ext_request, sizeof(certs_oid_ext_request))) {
                        if (ps->ext_request) /* twice: ambiguous, refuse */
                                return -EBADMSG;
                        ps->ext_request = true;
                        r = parse_extensions(values, ps); /* exactly one value */
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int parse_csr(const uint8_t *der, size_t len, struct parsed *ps) {
        struct der in = { der, len }, csr, info, version, name, spki, alg, attrs;
        int r;

        r = certs_der_next(&in, DER_SEQUENCE, &csr, NULL);
        if (r < 0)
                return r;
        if (in.len != 0) /* trailing bytes */
                return -EBADMSG;

        r = certs_der_next(&csr, DER_SEQUENCE, &info, &ps->info_tlv);
        if (r < 0)
                return r;

        r = certs_der_next(&info, DER_INTEGER, &version, NULL);
        if (r < 0)
                return r;
        if (!der_eq(version, (const uint8_t[]){ 0x00 }, 1))
                return -EBADMSG;

        r = certs_der_next(&info, DER_SEQUENCE, &name, NULL);
        if (r < 0)
                return r;
        r = parse_name(name, ps);
        if (r < 0)
                return r;

        r = certs_der_next(&info, DER_SEQUENCE, &spki, NULL);
        if (r < 0)
                return r;
        r = certs_der_next(&spki, DER_SEQUENCE, &alg, NULL);
        if (r < 0)
                return r;
        r = certs_der_next(&alg, DER_OID, &ps->spki_alg_oid, NULL);
        if (r < 0)
                return r;
        ps->spki_params = alg; /* whatever follows the OID, checked in validate_key() */
        r = certs_der_check_tree(alg, MAX_OPAQUE_DEPTH);
        if (r < 0)
                return r;
        r = certs_der_next(&spki, DER_BIT_STRING, &ps->spki_bits, NULL);
        if (r < 0)
                return r;
        if (spki.len != 0 || ps->spki_bits.len == 0)
                return -EBADMSG;

        if (info.len > 0) {
                r = certs_der_next(&info, DER_CTX0_C, &attrs, NULL);
                if (r < 0)
                        return r;
                r = parse_attributes(attrs, ps);
                if (r < 0)
                        return r;
        }
        if (info.len != 0)
                return -EBADMSG;

        r = certs_der_next(&csr, DER_SEQUENCE, &ps->sig_alg, NULL);
        if (r < 0)
                return r;
        r = certs_der_check_tree(ps->sig_alg, 2);
        if (r < 0)
                return r;
        r = certs_der_next(&csr, DER_BIT_STRING, &ps->sig_bits, NULL);
        if (r < 0)
                return r;
        if (csr.len != 0 || ps->sig_bits.len == 0)
                return -EBADMSG;
        return 0;
}

/* RFC 5480: id-ecPublicKey with namedCurve prime256v1, uncompressed point. */
static int validate_key_encoding(const struct parsed *ps) {
        struct der params = ps->spki_params, curve;

        if (!der_eq(ps->spki_alg_oid, certs_oid_ec_public_key, sizeof(certs_oid_ec_public_key)))
                return -EKEYREJECTED;
        if (certs_der_next(&params, DER_OID, &curve, NULL) < 0 || params.len != 0)
                return -EKEYREJECTED; /* explicit or implicit curve parameters */
        if (!der_eq(curve, certs_oid_prime256v1, sizeof(certs_oid_prime256v1)))
                return -EKEYREJECTED;
        /* 0 unused bits, then 0x04 || X || Y. */
        if (ps->spki_bits.len != 1 + CSR_PUBKEY_LEN || ps->spki_bits.p[0] != 0x00 || ps->spki_bits.p[1] != 0x04)
                return -EKEYREJECTED;
        return 0;
}

/* Decodes the ECDSA-Sig-Value in the signature BIT STRING. Any deviation is a
 * signature that does not verify. */
static int split_signature(struct der bits, struct der *ret_r, struct der *ret_s) {
        struct der in, seq, r_val, s_val;

        if (bits.len < 1 || bits.p[0] != 0x00)
                return -EBADE;
        in = (struct der){ bits.p + 1, bits.len - 1 };
        if (certs_der_next(&in, DER_SEQUENCE, &seq, NULL) < 0 || in.len != 0)
                return -EBADE;
        if (certs_der_next(&seq, DER_INTEGER, &r_val, NULL) < 0 || certs_der_next(&seq, DER_INTEGER, &s_val, NULL) < 0 ||
            seq.len != 0)
                return -EBADE;
        if (certs_der_uint(r_val, 32, ret_r) < 0 || certs_der_uint(s_val, 32, ret_s) < 0)
                return -EBADE;
        return 0;
}

int csr_parse_validate(const uint8_t *der, size_t len, const char *expected_cn, struct csr_info *ret) {
        struct parsed ps = {};
        struct der sig_alg, sig_oid, sig_r, sig_s;
        struct csr_key *key = NULL;
        uint8_t digest[SHA256_DIGEST_LENGTH];
        int r;

        if (!der || !ret)
                return -EINVAL;
        if (len == 0 || len > CSR_MAX_DER)
                return -EMSGSIZE;

        r = parse_csr(der, len, &ps);
        if (r < 0)
                return r;

        r = validate_key_encoding(&ps);
        if (r < 0)
                return r;

        /* RFC 5758 3.2: ecdsa-with-SHA256 has its parameters field absent. */
        sig_alg = ps.sig_alg;
        if (certs_der_next(&sig_alg, DER_OID, &sig_oid, NULL) < 0)
                return -EBADMSG;
        if (!der_eq(sig_oid, certs_oid_ecdsa_sha256, sizeof(certs_oid_ecdsa_sha256)) || sig_alg.len != 0)
                return -EPROTONOSUPPORT;

        r = split_signature(ps.sig_bits, &sig_r, &sig_s);
        if (r < 0)
                return r;

        r = certs_ec_key_from_point(ps.spki_bits.p + 1, &key);
        if (r < 0)
                return r;

        r = certs_sha256(ps.info_tlv.p, ps.info_tlv.len, digest);
        if (r < 0) {
                certs_ec_key_free(key);
                return r;
        }
        r = certs_ec_key_verify(key, digest, sig_r.p, sig_r.len, sig_s.p, sig_s.len);
        if (r <= 0) {
                certs_ec_key_free(key);
                return r < 0 ? r : -EBADE;
        }

        /* Exactly one CN, a string type, no NUL, and (if asked) byte-equal. */
        if (ps.n_cn != 1 || ps.cn.len == 0 || ps.cn.len > CSR_CN_MAX ||
            (ps.cn_tag != DER_UTF8STRING && ps.cn_tag != DER_PRINTABLESTRING && ps.cn_tag != DER_IA5STRING) ||
            memchr(ps.cn.p, '\0', ps.cn.len) ||
            (expected_cn && (strlen(expected_cn) != ps.cn.len || memcmp(expected_cn, ps.cn.p, ps.cn.len) != 0))) {
                certs_ec_key_free(key);
                return -EPERM;
        }

        *ret = (struct csr_info){
                .requested_ca = ps.requested_ca,
                .has_extension_request = ps.ext_request,
                .key = key,
        };
        memcpy(ret->pubkey, ps.spki_bits.p + 1, CSR_PUBKEY_LEN);
        memcpy(ret->cn, ps.cn.p, ps.cn.len);
        ret->cn[ps.cn.len] = '\0';
        return 0;
}

void csr_info_done(struct csr_info *info) {
        if (!info)
                return;
        certs_ec_key_free(info->key);
        info->key = NULL;
}
