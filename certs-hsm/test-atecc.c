/* SPDX-License-Identifier: MIT */
/* The ATECC compressed profile: certificates rebuilt byte for byte from their 72-byte form, and its date rules. */

#include "test-util.h"

#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "certs-hsm/atecc.h"
#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/signer.h"

struct fixture {
        char *dir;
        X509 *signer_cert, *root;
};

/* The chain as a TLS server checks it, strict, at @at. */
static void verify_chain(struct fixture *f, X509 *x, time_t at) {
        X509_STORE *store = X509_STORE_new();
        X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        STACK_OF(X509) *untrusted = sk_X509_new_null();

        sk_X509_push(untrusted, f->signer_cert);
        X509_STORE_add_cert(store, f->root);
        assert_int_equal(X509_STORE_CTX_init(ctx, store, x, untrusted), 1);
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
        X509_STORE_CTX_set_time(ctx, 0, at);
        if (X509_verify_cert(ctx) != 1)
                fail_msg("chain: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(store);
        sk_X509_free(untrusted);
}

static struct issuer *make_issuer(const char *dir, const struct cert_profile *p) {
        char *key = t_path(dir, "signer.key"), *pem = t_path(dir, "signer.pem"), *uri = NULL;
        struct signer *s = NULL;
        struct issuer *is = NULL;

        assert_true(asprintf(&uri, "file:%s", key) > 0);
        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        assert_int_equal(issuer_new(&is, s, p), 0);
        free(key);
        free(pem);
        free(uri);
        return is;
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        char *p;

        f->dir = t_tmpdir();
        assert_int_equal(ca_init(f->dir, &(struct ca_init_opts){ .no_expiry = true }), 0);
        p = t_path(f->dir, "signer.pem");
        f->signer_cert = t_load_cert(p);
        free(p);
        p = t_path(f->dir, "root.pem");
        f->root = t_load_cert(p);
        free(p);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        X509_free(f->signer_cert);
        X509_free(f->root);
        t_rmdir(f->dir);
        free(f);
        return 0;
}

static void device_csr(struct csr_info *csr) {
        EVP_PKEY *k = t_key_ec("P-256");
        size_t len = 0;

        memset(csr, 0, sizeof(*csr));
        assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, csr->pubkey,
                                                         sizeof(csr->pubkey), &len),
                         1);
        assert_int_equal(len, 65);
        EVP_PKEY_free(k);
}

static void profile_atecc(struct cert_profile *p) {
        cert_profile_init(p);
        p->format = CERT_FORMAT_ATECC;
        p->atecc_signer_id = 0xc4f1;
        p->atecc_template_id = 2;
        p->atecc_chain_id = 1;
        p->atecc_cn_len = 18; /* 9-byte ATECC serial in hex */
}

static time_t utc(int y, int mon, int d, int h, int mi, int s) {
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s };
        return timegm(&tm);
}

/* 1,000 certificates at random times, keys and profiles: each rebuilds
 * byte-identically from (definition, 72 bytes, key, CN) and verifies. */
static void test_roundtrip_1000(void **state) {
        struct fixture *f = *state;
        struct cert_profile p;
        struct issuer *is[2];
        struct cert_atecc_def def[2];
        time_t from = time(NULL), to = utc(2031, 12, 31, 0, 0, 0); /* the CA starts now */

        profile_atecc(&p);
        p.validity_days = 3650;
        is[0] = make_issuer(f->dir, &p);
        p.no_expiry = true;
        is[1] = make_issuer(f->dir, &p);
        for (int k = 0; k < 2; k++)
                assert_int_equal(issuer_atecc_def(is[k], 18, &def[k]), 0);

        for (int i = 0; i < 1000; i++) {
                struct csr_info csr;
                struct issued_cert c = {};
                uint8_t comp[CERT_COMPRESSED_LEN], *der = NULL, rnd[4];
                size_t len = 0;
                char cn[19];
                int k = i & 1;

                device_csr(&csr);
                assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
                time_t now = from + (time_t)(((uint32_t)rnd[0] << 24 | (uint32_t)rnd[1] << 16 | rnd[2] << 8 | rnd[3]) %
                                             (uint32_t)(to - from));
                snprintf(cn, sizeof(cn), "0123%014d", i);
                assert_int_equal(issuer_issue_at(is[k], &csr, cn, now, &c), 0);
                assert_int_equal(issuer_compress(is[k], &c, comp), 0);

                /* The form itself. */
                assert_int_equal(comp[67], 0xc4);
                assert_int_equal(comp[68], 0xf1);
                assert_int_equal(comp[69], 0x21);
                assert_int_equal(comp[70], 0xa0);
                assert_int_equal(comp[71], 0x00);
                assert_int_equal(comp[66] & 0x1f, k ? 0 : 10);

                assert_int_equal(cert_atecc_rebuild(&def[k], comp, csr.pubkey, cn, &der, &len), 0);
                assert_int_equal(len, c.der_len);
                assert_memory_equal(der, c.der, len);

                /* The dates and serial follow the rules, and OpenSSL agrees. */
                const uint8_t *q = der;
                X509 *x = d2i_X509(NULL, &q, (long)len);
                assert_non_null(x);
                assert_int_equal(X509_verify(x, X509_get0_pubkey(f->signer_cert)), 1);
                if (i % 50 == 0)
                        verify_chain(f, x, now);
                assert_int_equal(c.not_before % 3600, 0);
                assert_true(c.not_before <= now && now - c.not_before < 2 * 3600 + 86400);
                if (k)
                        assert_int_equal(c.not_after, CERT_NO_EXPIRY);
                else {
                        struct tm a, b;
                        gmtime_r(&c.not_before, &a);
                        gmtime_r(&c.not_after, &b);
                        assert_int_equal(b.tm_year - a.tm_year, 10);
                        assert_int_equal(b.tm_mon, a.tm_mon);
                        assert_int_equal(b.tm_mday, a.tm_mday);
                        assert_int_equal(b.tm_hour, a.tm_hour);
                }
                uint8_t msg[67], h[32];
                memcpy(msg, csr.pubkey + 1, 64);
                memcpy(msg + 64, comp + 64, 3);
                SHA256(msg, sizeof(msg), h);
                h[0] = (h[0] & 0x7f) | 0x40;
                assert_memory_equal(c.serial, h, 16);
                const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
                assert_int_equal(ASN1_STRING_length(sn), 16);
                assert_memory_equal(ASN1_STRING_get0_data(sn), h, 16);
                X509_free(x);

                /* A flipped signature byte rebuilds a certificate that does not verify. */
                comp[5] ^= 1;
                free(der);
                assert_int_equal(cert_atecc_rebuild(&def[k], comp, csr.pubkey, cn, &der, &len), 0);
                q = der;
                x = d2i_X509(NULL, &q, (long)len);
                assert_non_null(x);
                assert_int_not_equal(X509_verify(x, X509_get0_pubkey(f->signer_cert)), 1);
                X509_free(x);
                free(der);
                issued_cert_done(&c);
        }
        for (int k = 0; k < 2; k++) {
                cert_atecc_def_done(&def[k]);
                issuer_free(is[k]);
        }
}

static void test_rules(void **state) {
        struct fixture *f = *state;
        struct cert_profile p;
        struct issuer *is;
        struct csr_info csr;
        struct issued_cert c = {};
        struct cert_atecc_def def;
        uint8_t comp[CERT_COMPRESSED_LEN], *der;
        size_t len;
        const char *cn = "0123456789abcdef01";

        profile_atecc(&p);
        p.validity_days = 400; /* one whole year */
        p.backdate_seconds = 0;
        is = make_issuer(f->dir, &p);
        device_csr(&csr);

        assert_int_equal(issuer_issue_at(is, &csr, cn, utc(2027, 6, 15, 13, 47, 12), &c), 0);
        assert_int_equal(c.not_before, utc(2027, 6, 15, 13, 0, 0));
        assert_int_equal(c.not_after, utc(2028, 6, 15, 13, 0, 0));
        assert_non_null(memmem(c.der, c.der_len, "\x17\x0d" "270615130000Z\x18\x0f" "20280615130000Z", 32));
        assert_int_equal(issuer_compress(is, &c, comp), 0);
        /* 2027-06-15 13h, 1 year: 11011 0110 01111 01101 00001 */
        assert_int_equal(comp[64], 0xdb);
        assert_int_equal(comp[65], 0x3d);
        assert_int_equal(comp[66], 0xa1);
        issued_cert_done(&c);

        /* Feb 29 + 1 year does not exist: issued from Feb 28 23:00. */
        assert_int_equal(issuer_issue_at(is, &csr, cn, utc(2028, 2, 29, 10, 5, 0), &c), 0);
        assert_int_equal(c.not_before, utc(2028, 2, 28, 23, 0, 0));
        assert_int_equal(c.not_after, utc(2029, 2, 28, 23, 0, 0));
        issued_cert_done(&c);

        /* Format v0 ends with 2031; the CN length is the template's. */
        assert_int_equal(issuer_issue_at(is, &csr, cn, utc(2032, 1, 1, 5, 0, 0), &c), -ERANGE);
        assert_int_equal(issuer_issue_at(is, &csr, "short", utc(2027, 1, 1, 5, 0, 0), &c), -EINVAL);
        assert_int_equal(issuer_atecc_def(is, 5, &def), -EINVAL);

        /* The rebuild refuses a form that is not for its definition. */
        assert_int_equal(issuer_atecc_def(is, 18, &def), 0);
        assert_int_equal(issuer_issue_at(is, &csr, cn, utc(2027, 6, 15, 13, 47, 12), &c), 0);
        assert_int_equal(issuer_compress(is, &c, comp), 0);
        static const struct {
                int off;
                uint8_t v;
        } bad[] = { { 69, 0x31 }, { 69, 0x22 }, { 70, 0xa1 }, { 70, 0xb0 }, { 71, 0x40 },
                    { 64, 0xdf }, /* month 15 */ { 65, 0x7d }, /* day 31 of June */ { 65, 0x03 } /* day 0 */ };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                uint8_t m[CERT_COMPRESSED_LEN];
                memcpy(m, comp, sizeof(m));
                m[bad[i].off] = bad[i].v;
                assert_int_equal(cert_atecc_rebuild(&def, m, csr.pubkey, cn, &der, &len), -EBADMSG);
        }
        assert_int_equal(cert_atecc_rebuild(&def, comp, csr.pubkey, "0123456789abcdef0", &der, &len), -EINVAL);
        /* Another key gives another serial and SKI: the signature no longer verifies. */
        struct csr_info other;
        device_csr(&other);
        assert_int_equal(cert_atecc_rebuild(&def, comp, other.pubkey, cn, &der, &len), 0);
        assert_memory_not_equal(der, c.der, len < c.der_len ? len : c.der_len);
        free(der);
        cert_atecc_def_done(&def);
        issued_cert_done(&c);

        /* A normal-profile issuer has no compressed form. */
        struct cert_profile x509;
        cert_profile_init(&x509);
        struct issuer *plain = make_issuer(f->dir, &x509);
        assert_int_equal(issuer_issue_at(plain, &csr, cn, utc(2027, 6, 15, 13, 47, 12), &c), 0);
        assert_int_equal(issuer_compress(plain, &c, comp), -EINVAL);
        assert_int_equal(issuer_atecc_def(plain, 18, &def), -EINVAL);
        issued_cert_done(&c);
        issuer_free(plain);
        issuer_free(is);
}

/* Under a signer that expires, whole years are dropped until the certificate
 * fits (or it is refused). */
static void test_clamp(void **state) {
        (void)state;
        char *dir = t_tmpdir();
        struct cert_profile p;
        struct issuer *is;
        struct csr_info csr;
        struct issued_cert c = {};
        time_t now = time(NULL);

        assert_int_equal(ca_init(dir, &(struct ca_init_opts){ .signer_validity_days = 800 }), 0);
        profile_atecc(&p);
        p.no_expiry = true;
        is = make_issuer(dir, &p);
        device_csr(&csr);
        assert_int_equal(issuer_issue_at(is, &csr, "0123456789abcdef01", now, &c), 0);
        struct tm a, b;
        gmtime_r(&c.not_before, &a);
        gmtime_r(&c.not_after, &b);
        assert_int_equal(b.tm_year - a.tm_year, 2);
        issued_cert_done(&c);
        issuer_free(is);

        p.no_expiry = false;
        p.validity_days = 3650;
        p.expiry = CERT_EXPIRY_REFUSE;
        is = make_issuer(dir, &p);
        assert_int_equal(issuer_issue_at(is, &csr, "0123456789abcdef01", now, &c), -ERANGE);
        issuer_free(is);
        t_rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_roundtrip_1000, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_clamp, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
