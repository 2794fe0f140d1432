/* SPDX-License-Identifier: MIT */
/* Device certificate issuance: the TBSCertificate is assembled from pre-encoded
 * DER pieces, so only serial, validity, subject CN, key and SKI are written per
 * certificate, and only the ECDSA signature costs real CPU.
 *
 *   Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }
 *   tbs ::= SEQUENCE {
 *     [0] EXPLICIT INTEGER 2                      head   (constant)
 *     serialNumber INTEGER (16 bytes)             per cert
 *     signature AlgorithmIdentifier               mid    (constant)
 *     issuer Name  (signer subject, byte-exact)   mid    (constant)
 *     validity SEQUENCE { notBefore, notAfter }   per cert
 *     subject Name [O] [OU] CN                    prefix constant, CN per cert
 *     subjectPublicKeyInfo                        26-byte constant prefix + point
 *     [3] EXPLICIT Extensions                     ext template, SKI patched in
 *   }
 */

#include <stdatomic.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "certs-hsm/atecc.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/digest.h"
#include "signer-internal.h"
#include "basic/hex.h"

struct issuer {
        atomic_uint refs;
        struct signer *signer;
        struct cert_profile profile; /* strings point into org/org_unit below */
        char *org, *org_unit;

        uint8_t *mid; /* signature AlgorithmIdentifier + issuer Name */
        size_t mid_len;
        uint8_t *subj_prefix; /* RDNs before the CN */
        size_t subj_prefix_len;
        uint8_t *ext; /* the whole [3] element */
        size_t ext_len;
        size_t ext_ski_off; /* where the 20 SKI bytes go in ext */
};

static const uint8_t version_v3[] = { 0xa0, 0x03, 0x02, 0x01, 0x02 };
static const uint8_t sigalg_ecdsa_sha256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
static const uint8_t oid_org[] = { 0x55, 0x04, 0x0a };
static const uint8_t oid_org_unit[] = { 0x55, 0x04, 0x0b };

/* Extensions after SKI/AKI, all constant. */
static const uint8_t ext_basic_constraints[] = { /* critical, CA:FALSE (DEFAULT, so an empty SEQUENCE) */
        0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00,
};
static const uint8_t ext_key_usage[] = { /* critical, digitalSignature (bit 0; 7 unused bits) */
        0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80,
};
static const uint8_t ext_ext_key_usage[] = { /* id-kp-clientAuth */
        0x30, 0x13, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x0c, 0x30, 0x0a,
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
};

void cert_profile_init(struct cert_profile *p) {
        *p = (struct cert_profile){
                .validity_days = CERT_DEFAULT_VALIDITY_DAYS,
                .backdate_seconds = CERT_DEFAULT_BACKDATE_SECONDS,
        };
}

void issued_cert_done(struct issued_cert *c) {
        if (!c)
                return;
        free(c->der);
        *c = (struct issued_cert){};
}

/* UTF-8 (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF), no control characters. */
static bool valid_attr(const char *s) {
        const uint8_t *p = (const uint8_t *)s;
        size_t n = strlen(s);

        if (n == 0 || n > CERT_ATTR_MAX)
                return false;
        for (size_t i = 0; i < n;) {
                uint8_t c = p[i];
                size_t k;
                uint32_t cp;
                if (c < 0x20 || c == 0x7f)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        k = 1, cp = c & 0x1f;
                else if (c >= 0xe0 && c <= 0xef)
                        k = 2, cp = c & 0x0f;
                else if (c >= 0xf0 && c <= 0xf4)
                        k = 3, cp = c & 0x07;
                else
                        return false;
                if (i + k >= n) /* truncated sequence */
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((p[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + j] & 0x3f);
                }
                if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
                        return false;
                i += k + 1;
        }
        return true;
}

static bool valid_cn(const char *cn) {
        size_t n = strlen(cn);
        if (n == 0 || n > CSR_CN_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((uint8_t)cn[i] < 0x20 || (uint8_t)cn[i] > 0x7e)
                        return false;
        return true;
}

/* SET { SEQUENCE { OID, UTF8String } } */
static size_t rdn_size(size_t oid_len, size_t val_len) {
        size_t atv = 2 + oid_len + der_hdr_size(val_len) + val_len;
        size_t set = der_hdr_size(atv) + atv;
        return der_hdr_size(set) + set;
}

static uint8_t *put_rdn(uint8_t *p, const uint8_t *oid, size_t oid_len, const void *val, size_t val_len) {
        size_t atv = 2 + oid_len + der_hdr_size(val_len) + val_len;
        p = der_put_hdr(p, DER_SET, der_hdr_size(atv) + atv);
        p = der_put_hdr(p, DER_SEQUENCE, atv);
        p = der_put_hdr(p, DER_OID, oid_len);
        p = put_bytes(p, oid, oid_len);
        p = der_put_hdr(p, DER_UTF8STRING, val_len);
        return put_bytes(p, val, val_len);
}

static int build_templates(struct issuer *is) {
        size_t ski_len, n;
        const uint8_t *ski = signer_ski(is->signer, &ski_len);
        uint8_t *p;

        /* signature AlgorithmIdentifier + issuer Name. */
        is->mid_len = sizeof(sigalg_ecdsa_sha256) + is->signer->subject_len;
        is->mid = malloc(is->mid_len);
        if (!is->mid)
                return -ENOMEM;
        p = put_bytes(is->mid, sigalg_ecdsa_sha256, sizeof(sigalg_ecdsa_sha256));
        put_bytes(p, is->signer->subject_der, is->signer->subject_len);

        /* Subject RDNs before the CN (X.520 order: O, OU, CN). */
        n = 0;
        if (is->org)
                n += rdn_size(sizeof(oid_org), strlen(is->org));
        if (is->org_unit)
                n += rdn_size(sizeof(oid_org_unit), strlen(is->org_unit));
        is->subj_prefix_len = n;
        is->subj_prefix = malloc(n ? n : 1);
        if (!is->subj_prefix)
                return -ENOMEM;
        p = is->subj_prefix;
        if (is->org)
                p = put_rdn(p, oid_org, sizeof(oid_org), is->org, strlen(is->org));
        if (is->org_unit)
                p = put_rdn(p, oid_org_unit, sizeof(oid_org_unit), is->org_unit, strlen(is->org_unit));

        /* Extensions: SKI (31 bytes), AKI, then the constant three. */
        size_t aki_kid = 2 + ski_len;            /* [0] keyIdentifier */
        size_t aki_seq = 2 + aki_kid;            /* AuthorityKeyIdentifier SEQUENCE */
        size_t aki_oct = 2 + aki_seq;            /* extnValue OCTET STRING */
        size_t aki_ext = 5 + aki_oct;            /* OID 2.5.29.35 + value */
        size_t exts = 31 + 2 + aki_ext + sizeof(ext_basic_constraints) + sizeof(ext_key_usage) +
                      sizeof(ext_ext_key_usage);
        is->ext_len = der_hdr_size(der_hdr_size(exts) + exts) + der_hdr_size(exts) + exts;
        is->ext = malloc(is->ext_len);
        if (!is->ext)
                return -ENOMEM;
        p = der_put_hdr(is->ext, DER_CTX3_C, der_hdr_size(exts) + exts);
        p = der_put_hdr(p, DER_SEQUENCE, exts);
        p = put_bytes(p, (const uint8_t[]){ 0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e, 0x04, 0x16, 0x04, 0x14 }, 11);
        is->ext_ski_off = (size_t)(p - is->ext);
        memset(p, 0, 20);
        p += 20;
        p = der_put_hdr(p, DER_SEQUENCE, aki_ext);
        p = put_bytes(p, (const uint8_t[]){ 0x06, 0x03, 0x55, 0x1d, 0x23 }, 5);
        p = der_put_hdr(p, DER_OCTET_STRING, aki_seq);
        p = der_put_hdr(p, DER_SEQUENCE, aki_kid);
        p = der_put_hdr(p, 0x80, ski_len);
        p = put_bytes(p, ski, ski_len);
        p = put_bytes(p, ext_basic_constraints, sizeof(ext_basic_constraints));
        p = put_bytes(p, ext_key_usage, sizeof(ext_key_usage));
        p = put_bytes(p, ext_ext_key_usage, sizeof(ext_ext_key_usage));
        if ((size_t)(p - is->ext) != is->ext_len)
                return -EINVAL; /* cannot happen: sizes above are exact */
        return 0;
}

static void issuer_destroy(struct issuer *is) {
        signer_free(is->signer);
        free(is->org);
        free(is->org_unit);
        free(is->mid);
        free(is->subj_prefix);
        free(is->ext);
        free(is);
}

int issuer_new(struct issuer **ret, struct signer *signer, const struct cert_profile *profile) {
        struct cert_profile defaults;
        struct issuer *is;
        size_t ski_len;
        int r;

        if (!ret || !signer) {
                signer_free(signer);
                return -EINVAL;
        }
        if (!profile) {
                cert_profile_init(&defaults);
                profile = &defaults;
        }
        if ((!profile->no_expiry && (profile->validity_days == 0 || profile->validity_days > CERT_MAX_VALIDITY_DAYS)) ||
            profile->backdate_seconds > CERT_MAX_BACKDATE_SECONDS ||
            (profile->org && profile->org[0] && !valid_attr(profile->org)) ||
            (profile->org_unit && profile->org_unit[0] && !valid_attr(profile->org_unit)) ||
            (profile->expiry != CERT_EXPIRY_CLAMP && profile->expiry != CERT_EXPIRY_REFUSE) ||
            (profile->format != CERT_FORMAT_X509 && profile->format != CERT_FORMAT_ATECC) ||
            profile->atecc_template_id > 15 || profile->atecc_chain_id > 15 || profile->atecc_cn_len > CSR_CN_MAX) {
                signer_free(signer);
                return -EINVAL;
        }
        /* "Never expires" under a signer that does cannot be kept: a
         * configuration error, better reported at start than per board. */
        if (profile->expiry == CERT_EXPIRY_REFUSE && profile->no_expiry && signer->not_after < CERT_NO_EXPIRY) {
                signer_free(signer);
                return -ERANGE;
        }
        signer_ski(signer, &ski_len);
        if (ski_len == 0 || ski_len > 64 || signer->subject_len == 0) {
                signer_free(signer);
                return -EKEYREJECTED;
        }

        is = calloc(1, sizeof(*is));
        if (!is) {
                signer_free(signer);
                return -ENOMEM;
        }
        atomic_init(&is->refs, 1);
        is->signer = signer;
        is->profile = *profile;
        if (profile->org && profile->org[0] && !(is->org = strdup(profile->org)))
                goto nomem;
        if (profile->org_unit && profile->org_unit[0] && !(is->org_unit = strdup(profile->org_unit)))
                goto nomem;
        is->profile.org = is->org;
        is->profile.org_unit = is->org_unit;
        r = build_templates(is);
        if (r < 0)
                goto fail;
        *ret = is;
        return 0;
nomem:
        r = -ENOMEM;
fail:
        issuer_destroy(is);
        return r;
}

struct issuer *issuer_ref(struct issuer *is) {
        if (is)
                atomic_fetch_add_explicit(&is->refs, 1, memory_order_relaxed);
        return is;
}

struct issuer *issuer_free(struct issuer *is) {
        if (is && atomic_fetch_sub_explicit(&is->refs, 1, memory_order_acq_rel) == 1)
                issuer_destroy(is);
        return NULL;
}

/* RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; always Z, seconds. */
static int encode_time(uint8_t *p, time_t t, size_t *ret_len) {
        struct tm tm;
        char buf[20];
        int n;

        if (t == CERT_NO_EXPIRY) {
                memcpy(p, "\x18\x0f" "99991231235959Z", 17);
                *ret_len = 17;
                return 0;
        }
        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        int year = tm.tm_year + 1900;
        if (year < 1950 || year > 9999)
                return -EINVAL;
        if (year < 2050) {
                n = snprintf(buf, sizeof(buf), "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1, tm.tm_mday,
                             tm.tm_hour, tm.tm_min, tm.tm_sec);
                p[0] = DER_UTCTIME;
        } else {
                n = snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                             tm.tm_min, tm.tm_sec);
                p[0] = DER_GENERALIZEDTIME;
        }
        if (n != 13 && n != 15)
                return -EINVAL;
        p[1] = (uint8_t)n;
        memcpy(p + 2, buf, (size_t)n);
        *ret_len = 2 + (size_t)n;
        return 0;
}

static int make_serial(uint8_t serial[CERT_SERIAL_LEN]) {
        struct timespec ts;
        uint64_t ms = 0;

        if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec >= 0)
                ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        serial[0] = CERT_SERIAL_TAG;
        for (size_t i = 0; i < CERT_SERIAL_TIME_LEN; i++)
                serial[1 + i] = (uint8_t)(ms >> (8 * (CERT_SERIAL_TIME_LEN - 1 - i)));
        if (RAND_bytes(serial + 1 + CERT_SERIAL_TIME_LEN, CERT_SERIAL_RANDOM_LEN) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        return 0;
}

/* Where the per-certificate fields sit in a TBSCertificate (offsets from its
 * first byte): what an ATECC certificate definition calls the elements. */
struct tbs_layout {
        size_t len;
        size_t serial_off, validity_off, cn_off, pubkey_off, ski_off;
};

static size_t tbs_content_size(const struct issuer *is, size_t validity_len, size_t cn_len, size_t *ret_subj) {
        size_t subj_content = is->subj_prefix_len + rdn_size(sizeof(certs_oid_common_name), cn_len);
        *ret_subj = subj_content;
        return sizeof(version_v3) + 2 + CERT_SERIAL_LEN + is->mid_len + validity_len + der_hdr_size(subj_content) +
               subj_content + sizeof(certs_p256_spki_prefix) + 65 + is->ext_len;
}

/* Writes the TBSCertificate at @tbs (room: der_hdr_size(content) + content). */
static void write_tbs(const struct issuer *is, uint8_t *tbs, const uint8_t serial[CERT_SERIAL_LEN],
                      const uint8_t *validity, size_t validity_len, const char *cn, size_t cn_len,
                      const uint8_t pubkey[65], const uint8_t ski[CERT_SKI_LEN], struct tbs_layout *lay) {
        size_t subj_content, content = tbs_content_size(is, validity_len, cn_len, &subj_content);
        uint8_t *p = tbs;

        p = der_put_hdr(p, DER_SEQUENCE, content);
        p = put_bytes(p, version_v3, sizeof(version_v3));
        p = der_put_hdr(p, DER_INTEGER, CERT_SERIAL_LEN);
        lay->serial_off = (size_t)(p - tbs);
        p = put_bytes(p, serial, CERT_SERIAL_LEN);
        p = put_bytes(p, is->mid, is->mid_len);
        lay->validity_off = (size_t)(p - tbs);
        p = put_bytes(p, validity, validity_len);
        p = der_put_hdr(p, DER_SEQUENCE, subj_content);
        p = put_bytes(p, is->subj_prefix, is->subj_prefix_len);
        p = put_rdn(p, certs_oid_common_name, sizeof(certs_oid_common_name), cn, cn_len);
        lay->cn_off = (size_t)(p - tbs) - cn_len;
        p = put_bytes(p, certs_p256_spki_prefix, sizeof(certs_p256_spki_prefix));
        lay->pubkey_off = (size_t)(p - tbs);
        p = put_bytes(p, pubkey, 65);
        memcpy(p, is->ext, is->ext_len);
        lay->ski_off = (size_t)(p - tbs) + is->ext_ski_off;
        memcpy(p + is->ext_ski_off, ski, CERT_SKI_LEN);
        p += is->ext_len;
        lay->len = (size_t)(p - tbs);
}

/* Appends signatureAlgorithm and the signature BIT STRING after the TBS at
 * buf + 4 and puts the Certificate header in front. @buf has room for
 * 4 + tbs_len + 12 + 3 + SIGNER_SIG_MAX bytes. Returns the total length. */
static size_t wrap_certificate(uint8_t *buf, size_t tbs_len, const uint8_t *sig, size_t sig_len) {
        uint8_t *p = buf + 4 + tbs_len;
        size_t content, hdr;

        p = put_bytes(p, sigalg_ecdsa_sha256, sizeof(sigalg_ecdsa_sha256));
        p = der_put_hdr(p, DER_BIT_STRING, 1 + sig_len);
        *p++ = 0x00; /* unused bits */
        p = put_bytes(p, sig, sig_len);
        content = (size_t)(p - (buf + 4));
        hdr = der_hdr_size(content);
        if (hdr > 4) /* cannot happen: the certificate is < 64 KiB */
                return 0;
        der_put_hdr(buf + (4 - hdr), DER_SEQUENCE, content);
        memmove(buf, buf + (4 - hdr), hdr + content);
        return hdr + content;
}

/* The ATECC compressed profile's validity (see cert.h): notBefore on the hour,
 * notAfter whole years later or 9999, never beyond the signer. Fills the
 * dates into @c and the 3 encoded bytes into @enc. */
static int atecc_dates(const struct issuer *is, time_t now, struct issued_cert *c, uint8_t enc[3]) {
        struct tm base, nb;
        unsigned years;
        time_t t = now - (time_t)is->profile.backdate_seconds;
        int r;

        if (!gmtime_r(&t, &base))
                return -ERANGE;
        base.tm_min = base.tm_sec = 0;
        if (is->profile.no_expiry)
                years = 0;
        else {
                years = is->profile.validity_days / 365;
                if (years == 0)
                        years = 1;
                if (years > CERT_ATECC_MAX_YEARS)
                        years = CERT_ATECC_MAX_YEARS;
        }
        for (;;) {
                nb = base;
                /* Feb 29 plus whole years can be a day that does not exist:
                 * issue from Feb 28 23:00 instead (a little more backdating). */
                if (years && nb.tm_mon == 1 && nb.tm_mday == 29 && !cert_atecc_leap(nb.tm_year + 1900 + (int)years)) {
                        nb.tm_mday = 28;
                        nb.tm_hour = 23;
                }
                r = cert_atecc_encode_dates(&nb, years, enc, &c->not_before, &c->not_after);
                if (r < 0)
                        return r;
                if (c->not_after <= is->signer->not_after)
                        return 0;
                if (is->profile.expiry == CERT_EXPIRY_REFUSE)
                        return -ERANGE;
                /* Clamp in whole years: the compressed form has no other way to say it. */
                if (years == 0)
                        years = CERT_ATECC_MAX_YEARS + 1;
                if (--years == 0)
                        return -ERANGE;
        }
}

static void put_atecc_validity(uint8_t validity[34], const uint8_t enc[3]) {
        /* Fixed layout: notBefore UTCTime (13), notAfter GeneralizedTime (15),
         * as atcacert's DATEFMT_RFC5280_UTC / DATEFMT_RFC5280_GEN. */
        validity[0] = DER_SEQUENCE;
        validity[1] = 32;
        validity[2] = DER_UTCTIME;
        validity[3] = 13;
        validity[17] = DER_GENERALIZEDTIME;
        validity[18] = 15;
        cert_atecc_format_dates(enc, (char *)validity + 4, (char *)validity + 19);
}

int issuer_issue_at(struct issuer *is, const struct csr_info *csr, const char *cn, time_t now,
                    struct issued_cert *ret) {
        struct issued_cert c = {};
        uint8_t validity[2 + 17 + 17], digest[SHA256_DIGEST_LENGTH], sig[SIGNER_SIG_MAX], enc[3];
        size_t nb_len, na_len, validity_len, cn_len, subj_content, tbs_content, tbs_len, sig_len = 0;
        struct tbs_layout lay;
        uint8_t *buf;
        int r;

        if (!is || !csr || !cn || !ret || !valid_cn(cn))
                return -EINVAL;
        if (csr->requested_ca)
                return -EPERM;
        if (!csr->key) {
                /* Not from csr_parse_validate(): check the point before certifying it. */
                struct csr_key *k = NULL;
                r = certs_ec_key_from_point(csr->pubkey, &k);
                if (r < 0)
                        return r;
                certs_ec_key_free(k);
        }
        if (now > is->signer->not_after || now < is->signer->not_before)
                return -ERANGE;
        memcpy(c.pubkey, csr->pubkey, sizeof(c.pubkey));

        if (is->profile.format == CERT_FORMAT_ATECC) {
                r = atecc_dates(is, now, &c, enc);
                if (r < 0)
                        return r;
                put_atecc_validity(validity, enc);
                validity_len = 34;
                r = cert_atecc_serial(c.pubkey, enc, c.serial);
                if (r < 0)
                        return r;
        } else {
                c.not_before = now - (time_t)is->profile.backdate_seconds;
                if (is->profile.no_expiry || now > CERT_NO_EXPIRY - (time_t)is->profile.validity_days * 86400)
                        c.not_after = CERT_NO_EXPIRY;
                else
                        c.not_after = now + (time_t)is->profile.validity_days * 86400;
                if (c.not_after > is->signer->not_after) {
                        if (is->profile.expiry == CERT_EXPIRY_REFUSE)
                                return -ERANGE;
                        c.not_after = is->signer->not_after;
                }
                r = encode_time(validity + 2, c.not_before, &nb_len);
                if (r < 0)
                        return r;
                r = encode_time(validity + 2 + nb_len, c.not_after, &na_len);
                if (r < 0)
                        return r;
                validity[0] = DER_SEQUENCE;
                validity[1] = (uint8_t)(nb_len + na_len);
                validity_len = 2 + nb_len + na_len;
                r = make_serial(c.serial);
                if (r < 0)
                        return r;
        }
        /* RFC 5280 4.2.1.2 (1): SHA-1 of the subjectPublicKey BIT STRING value. */
        r = certs_sha1(c.pubkey, sizeof(c.pubkey), c.ski);
        if (r < 0)
                return r;

        cn_len = strlen(cn);
        if (is->profile.format == CERT_FORMAT_ATECC && is->profile.atecc_cn_len && cn_len != is->profile.atecc_cn_len)
                return -EINVAL; /* the template has a fixed-size CN */
        tbs_content = tbs_content_size(is, validity_len, cn_len, &subj_content);
        tbs_len = der_hdr_size(tbs_content) + tbs_content;

        /* Room for the certificate header (≤ 4 bytes), TBS, algorithm, BIT STRING. */
        buf = malloc(4 + tbs_len + sizeof(sigalg_ecdsa_sha256) + 3 + SIGNER_SIG_MAX);
        if (!buf)
                return -ENOMEM;
        write_tbs(is, buf + 4, c.serial, validity, validity_len, cn, cn_len, c.pubkey, c.ski, &lay);
        if (lay.len != tbs_len) {
                free(buf);
                return -EINVAL; /* cannot happen: sizes above are exact */
        }

        r = certs_sha256(buf + 4, tbs_len, digest);
        if (r >= 0)
                r = signer_sign(is->signer, digest, sig, &sig_len);
        if (r < 0 || sig_len == 0 || sig_len > SIGNER_SIG_MAX) {
                free(buf);
                return r < 0 ? r : -EIO;
        }
        c.der = buf;
        c.der_len = wrap_certificate(buf, tbs_len, sig, sig_len);
        r = c.der_len ? certs_sha256(c.der, c.der_len, c.sha256) : -EINVAL;
        if (r < 0) {
                free(buf);
                return r;
        }
        hex_encode(c.sha256, sizeof(c.sha256), c.sha256_hex, false);
        hex_encode(c.ski, sizeof(c.ski), c.ski_hex, false);
        *ret = c;
        return 0;
}

int issuer_atecc_def(const struct issuer *is, size_t cn_len, struct cert_atecc_def *ret) {
        static const uint8_t zero[65];
        uint8_t validity[34], enc[3] = { 0x00, 0x84, 0x00 }; /* 2000-01-01 00:00, no expiry: placeholders */
        char cn[CSR_CN_MAX + 1];
        size_t subj_content, tbs_len;
        struct tbs_layout lay;
        struct cert_atecc_def d = {};

        if (!is || !ret || cn_len == 0 || cn_len > CSR_CN_MAX || is->profile.format != CERT_FORMAT_ATECC ||
            (is->profile.atecc_cn_len && cn_len != is->profile.atecc_cn_len))
                return -EINVAL;
        memset(cn, 0, sizeof(cn));
        put_atecc_validity(validity, enc);
        tbs_len = tbs_content_size(is, sizeof(validity), cn_len, &subj_content);
        tbs_len += der_hdr_size(tbs_len);
        d.tbs = calloc(1, tbs_len);
        if (!d.tbs)
                return -ENOMEM;
        write_tbs(is, d.tbs, zero, validity, sizeof(validity), cn, cn_len, zero, zero, &lay);
        d.tbs_len = lay.len;
        d.serial_off = lay.serial_off;
        d.not_before_off = lay.validity_off + 4;
        d.not_after_off = lay.validity_off + 19;
        d.cn_off = lay.cn_off;
        d.cn_len = cn_len;
        d.pubkey_off = lay.pubkey_off;
        d.ski_off = lay.ski_off;
        d.template_id = is->profile.atecc_template_id;
        d.chain_id = is->profile.atecc_chain_id;
        /* The placeholders are not part of the template. */
        memset(d.tbs + d.not_before_off, 0, 13);
        memset(d.tbs + d.not_after_off, 0, 15);
        *ret = d;
        return 0;
}

int issuer_compress(const struct issuer *is, const struct issued_cert *c, uint8_t ret[CERT_COMPRESSED_LEN]) {
        uint8_t out[CERT_COMPRESSED_LEN] = {}, enc[3];
        struct tm nb;
        unsigned years = 0;

        if (!is || !c || !c->der || !ret || is->profile.format != CERT_FORMAT_ATECC)
                return -EINVAL;
        /* Certificate ::= SEQUENCE { tbs, signatureAlgorithm, BIT STRING { 00, ECDSA-Sig-Value } } */
        struct der in = { c->der, c->der_len }, cert, sig;
        if (certs_der_next(&in, DER_SEQUENCE, &cert, NULL) < 0 || in.len != 0 ||
            certs_der_next(&cert, DER_SEQUENCE, NULL, NULL) < 0 || certs_der_next(&cert, DER_SEQUENCE, NULL, NULL) < 0 ||
            certs_der_next(&cert, DER_BIT_STRING, &sig, NULL) < 0 || cert.len != 0 || sig.len < 2 || sig.p[0] != 0x00 ||
            certs_sig_der_to_raw(sig.p + 1, sig.len - 1, out) < 0)
                return -EBADMSG;
        if (!gmtime_r(&c->not_before, &nb) || nb.tm_min || nb.tm_sec)
                return -EINVAL;
        if (c->not_after != CERT_NO_EXPIRY) {
                struct tm na;
                if (!gmtime_r(&c->not_after, &na) || na.tm_year <= nb.tm_year)
                        return -EINVAL;
                years = (unsigned)(na.tm_year - nb.tm_year);
        }
        time_t a, b;
        if (cert_atecc_encode_dates(&nb, years, enc, &a, &b) < 0 || a != c->not_before || b != c->not_after)
                return -EINVAL; /* not a certificate of this profile */
        memcpy(out + 64, enc, 3);
        out[67] = (uint8_t)(is->profile.atecc_signer_id >> 8);
        out[68] = (uint8_t)is->profile.atecc_signer_id;
        out[69] = (uint8_t)(is->profile.atecc_template_id << 4 | is->profile.atecc_chain_id);
        out[70] = (uint8_t)(CERT_ATECC_SNSRC_PUB_KEY_HASH << 4 | CERT_ATECC_FORMAT_VERSION);
        out[71] = 0;
        memcpy(ret, out, sizeof(out));
        return 0;
}

int issuer_issue(struct issuer *is, const struct csr_info *csr, const char *cn, struct issued_cert *ret) {
        return issuer_issue_at(is, csr, cn, time(NULL), ret);
}

int issuer_verification_cert(struct issuer *is, const char *registration_code, struct issued_cert *ret) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        struct csr_info info = {};
        size_t n;
        int r;

        if (!is || !registration_code || !ret)
                return -EINVAL;
        n = strlen(registration_code);
        if (n == 0 || n > CSR_CN_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char ch = registration_code[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
                        return -EINVAL;
        }
        key = EVP_EC_gen("P-256");
        if (!key) {
                ERR_clear_error();
                return -EIO;
        }
        r = certs_pkey_p256_point(key, info.pubkey);
        if (r < 0)
                return -EIO;
        return issuer_issue(is, &info, registration_code, ret);
}

bool issuer_is_atecc(const struct issuer *is) {
        return is && is->profile.format == CERT_FORMAT_ATECC;
}

struct signer *issuer_signer(const struct issuer *is) {
        return is ? is->signer : NULL;
}

const uint8_t *issuer_signer_cert_der(const struct issuer *is, size_t *ret_len) {
        return signer_cert_der(is ? is->signer : NULL, ret_len);
}

const uint8_t *issuer_root_cert_der(const struct issuer *is, size_t *ret_len) {
        return signer_root_cert_der(is ? is->signer : NULL, ret_len);
}

int issuer_root_pubkey(const struct issuer *is, uint8_t ret[65]) {
        _cleanup_(X509_freep) X509 *root = NULL;
        const uint8_t *der, *p;
        size_t len;

        if (!is || !ret)
                return -EINVAL;
        der = signer_root_cert_der(is->signer, &len);
        if (!der)
                return -ENOENT;
        p = der;
        root = d2i_X509(NULL, &p, (long)len);
        if (!root) {
                ERR_clear_error();
                return -EBADMSG;
        }
        return certs_pkey_p256_point(X509_get0_pubkey(root), ret);
}

int cert_thing_name(enum cert_thing_mode mode, const struct issued_cert *c, const char *cn, char *buf,
                    size_t size) {
        const char *name;
        size_t n;

        if (!buf)
                return -EINVAL;
        switch (mode) {
        case CERT_THING_CN:
                if (!cn)
                        return -EINVAL;
                name = cn;
                n = strlen(cn);
                if (n == 0 || n > CERT_THING_NAME_MAX)
                        return -EINVAL;
                /* AWS IoT thing names: [a-zA-Z0-9:_-]+ */
                for (size_t i = 0; i < n; i++) {
                        char ch = cn[i];
                        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                              ch == ':' || ch == '_' || ch == '-'))
                                return -EINVAL;
                }
                break;
        case CERT_THING_SKI:
                if (!c || c->ski_hex[0] == '\0')
                        return -EINVAL;
                name = c->ski_hex;
                n = strlen(name);
                break;
        default:
                return -EINVAL;
        }
        if (n + 1 > size)
                return -ENOBUFS;
        memcpy(buf, name, n + 1);
        return (int)n;
}
