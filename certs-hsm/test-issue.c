/* SPDX-License-Identifier: MIT */
/* Issuance: certificates from a CA made by ca_init(), checked with OpenSSL. */

#include "test-util.h"

#include <pthread.h>

#include <openssl/core_names.h>
#include <openssl/sha.h>

#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/proof.h"
#include "certs-hsm/signer.h"

struct fixture {
        char *dir;
        X509 *root, *signer_cert;
        struct issuer *issuer;
        EVP_PKEY *dev;
        struct csr_info csr;
};

static struct issuer *make_issuer(struct fixture *f, const struct cert_profile *profile) {
        struct signer *s = NULL;
        struct issuer *is = NULL;
        char *key = t_path(f->dir, "signer.key"), *pem = t_path(f->dir, "signer.pem"),
             *root = t_path(f->dir, "root.pem"), *uri = NULL;

        assert_true(asprintf(&uri, "file:%s", key) > 0);
        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        assert_string_equal(signer_backend(s), "file");
        assert_int_equal(signer_set_root(s, root), 0);
        assert_int_equal(issuer_new(&is, s, profile), 0);
        free(key);
        free(pem);
        free(root);
        free(uri);
        return is;
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        size_t len;
        uint8_t *der;
        char *p;

        f->dir = t_tmpdir();
        /* A CA that never expires, so profiles up to 9999 are kept as asked
         * (test_expiry covers a signer that ends first). */
        assert_int_equal(ca_init(f->dir, &(struct ca_init_opts){ .org = "Acme Devices", .no_expiry = true }), 0);
        p = t_path(f->dir, "root.pem");
        f->root = t_load_cert(p);
        free(p);
        p = t_path(f->dir, "signer.pem");
        f->signer_cert = t_load_cert(p);
        free(p);
        f->issuer = make_issuer(f, NULL);
        f->dev = t_key_ec("P-256");
        der = t_csr(f->dev, "sn-01234567", &len);
        assert_int_equal(csr_parse_validate(der, len, "sn-01234567", &f->csr), 0);
        free(der);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        issuer_free(f->issuer);
        csr_info_done(&f->csr);
        X509_free(f->root);
        X509_free(f->signer_cert);
        EVP_PKEY_free(f->dev);
        t_rmdir(f->dir);
        free(f);
        return 0;
}

static X509 *decode(const struct issued_cert *c) {
        const uint8_t *p = c->der;
        X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
        uint8_t *re = NULL;
        int n;

        assert_non_null(x);
        assert_ptr_equal(p, c->der + c->der_len);
        /* Re-encoding a freshly parsed certificate gives back our bytes: the DER is canonical. */
        n = i2d_X509(x, &re);
        assert_int_equal(n, (int)c->der_len);
        assert_memory_equal(re, c->der, c->der_len);
        OPENSSL_free(re);
        return x;
}

/* Chain verification the way a TLS server would do it. */
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

/* The same with the openssl command line. */
static void openssl_verify(struct fixture *f, const struct issued_cert *c) {
        char *dev = t_path(f->dir, "dev.pem"), *cmd = NULL;
        t_write_der_as_pem(dev, c->der, c->der_len);
        assert_true(asprintf(&cmd, "openssl verify -x509_strict -purpose sslclient -CAfile %s/root.pem "
                                   "-untrusted %s/signer.pem %s >/dev/null",
                             f->dir, f->dir, dev) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        free(dev);
}

static void check_extensions(struct fixture *f, X509 *x, const struct issued_cert *c) {
        int crit = -1;
        uint8_t ski[20];

        assert_int_equal(X509_get_ext_count(x), 5);
        assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(x, 0))), NID_subject_key_identifier);
        assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(x, 1))), NID_authority_key_identifier);
        assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(x, 2))), NID_basic_constraints);
        assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(x, 3))), NID_key_usage);
        assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(x, 4))), NID_ext_key_usage);
        assert_false(X509_EXTENSION_get_critical(X509_get_ext(x, 0)));
        assert_false(X509_EXTENSION_get_critical(X509_get_ext(x, 1)));
        assert_true(X509_EXTENSION_get_critical(X509_get_ext(x, 2)));
        assert_true(X509_EXTENSION_get_critical(X509_get_ext(x, 3)));
        assert_false(X509_EXTENSION_get_critical(X509_get_ext(x, 4)));

        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
        assert_non_null(bc);
        assert_int_equal(crit, 1);
        assert_false(bc->ca);
        assert_null(bc->pathlen);
        BASIC_CONSTRAINTS_free(bc);

        assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
        assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
        EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
        assert_int_equal(sk_ASN1_OBJECT_num(eku), 1);
        assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_client_auth);
        EXTENDED_KEY_USAGE_free(eku);

        SHA1(c->pubkey, 65, ski);
        const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
        assert_int_equal(ASN1_STRING_length(skid), 20);
        assert_memory_equal(ASN1_STRING_get0_data(skid), ski, 20);
        assert_memory_equal(c->ski, ski, 20);
        const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
        const ASN1_OCTET_STRING *signer_skid = X509_get0_subject_key_id(f->signer_cert);
        assert_non_null(akid);
        assert_int_equal(ASN1_STRING_cmp(akid, signer_skid), 0);
        assert_null(X509_get0_authority_issuer(x));
        assert_null(X509_get0_authority_serial(x));
}

static int64_t serial_ms(const struct issued_cert *c) {
        int64_t ms = 0;

        for (size_t i = 0; i < CERT_SERIAL_TIME_LEN; i++)
                ms = ms << 8 | c->serial[1 + i];
        return ms;
}

static void check_cert(struct fixture *f, const struct issued_cert *c, const char *cn) {
        X509 *x = decode(c);
        const ASN1_INTEGER *serial;
        uint8_t sha[32], pub[65];
        char hex[65], buf[128];
        size_t publen = 0;

        assert_int_equal(X509_get_version(x), X509_VERSION_3);
        assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
        assert_int_equal(X509_verify(x, X509_get0_pubkey(f->signer_cert)), 1);
        assert_int_equal(X509_check_issued(f->signer_cert, x), X509_V_OK);
        verify_chain(f, x, c->not_before + 60);

        serial = X509_get0_serialNumber(x);
        assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER); /* positive */
        assert_int_equal(ASN1_STRING_length(serial), 16);
        assert_memory_equal(ASN1_STRING_get0_data(serial), c->serial, 16);
        assert_int_equal(c->serial[0], CERT_SERIAL_TAG);

        assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)),
                         (int)strlen(cn));
        assert_string_equal(buf, cn);
        assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(f->signer_cert)), 0);

        assert_int_equal(EVP_PKEY_get_octet_string_param(X509_get0_pubkey(x), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
                                                         sizeof(pub), &publen),
                         1);
        assert_memory_equal(pub, c->pubkey, 65);

        assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), c->not_before), 0);
        assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), c->not_after), 0);

        SHA256(c->der, c->der_len, sha);
        assert_memory_equal(sha, c->sha256, 32);
        for (int i = 0; i < 32; i++)
                sprintf(hex + 2 * i, "%02x", sha[i]);
        assert_string_equal(hex, c->sha256_hex);

        check_extensions(f, x, c);
        X509_free(x);
}

static void test_issue_default(void **state) {
        struct fixture *f = *state;
        struct issued_cert c = {}, c2 = {};
        time_t now = time(NULL);

        assert_int_equal(issuer_issue(f->issuer, &f->csr, "sn-01234567", &c), 0);
        check_cert(f, &c, "sn-01234567");
        openssl_verify(f, &c);
        assert_true(c.not_before >= now - CERT_DEFAULT_BACKDATE_SECONDS - 5 &&
                    c.not_before <= now - CERT_DEFAULT_BACKDATE_SECONDS + 5);
        assert_true(c.not_after - c.not_before ==
                    (time_t)CERT_DEFAULT_VALIDITY_DAYS * 86400 + CERT_DEFAULT_BACKDATE_SECONDS);

        /* The serial starts with the issuance time in ms (the clock's). */
        int64_t ms = serial_ms(&c);
        assert_true(ms >= (int64_t)now * 1000 - 5000 && ms <= (int64_t)time(NULL) * 1000 + 5000);

        /* Same CSR again: a different certificate with a different serial, in time order. */
        assert_int_equal(issuer_issue(f->issuer, &f->csr, "sn-01234567", &c2), 0);
        assert_memory_not_equal(c.serial, c2.serial, 16);
        assert_true(serial_ms(&c2) >= ms);
        assert_memory_not_equal(c.serial + 1 + CERT_SERIAL_TIME_LEN, c2.serial + 1 + CERT_SERIAL_TIME_LEN,
                                CERT_SERIAL_RANDOM_LEN);
        assert_memory_not_equal(c.sha256, c2.sha256, 32);
        issued_cert_done(&c);
        issued_cert_done(&c2);
        assert_null(c.der);
        issued_cert_done(&c); /* idempotent */
}

static void test_issue_profile(void **state) {
        struct fixture *f = *state;
        struct issued_cert c = {};
        struct cert_profile p;
        char buf[16];
        X509 *x;

        cert_profile_init(&p);
        p.no_expiry = true;
        p.backdate_seconds = 0;
        p.org = "Acme Devices";
        p.org_unit = "Line 3 \xc3\xa9"; /* UTF-8 */
        struct issuer *is = make_issuer(f, &p);

        /* 2060: GeneralizedTime for notBefore too. */
        assert_int_equal(issuer_issue_at(is, &f->csr, "board 9", 2845000000, &c), 0);
        check_cert(f, &c, "board 9");
        assert_int_equal(c.not_before, 2845000000);
        assert_int_equal(c.not_after, CERT_NO_EXPIRY);
        assert_non_null(memmem(c.der, c.der_len, "\x18\x0f" "99991231235959Z", 17));
        x = decode(&c);
        assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_GENERALIZEDTIME);
        assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
        X509_NAME *n = X509_get_subject_name(x);
        assert_int_equal(X509_NAME_entry_count(n), 3);
        assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 0))), NID_organizationName);
        assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 1))), NID_organizationalUnitName);
        assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(n, 2))), NID_commonName);
        assert_int_equal(X509_NAME_get_text_by_NID(n, NID_organizationName, buf, sizeof(buf)), 12);
        X509_free(x);
        issued_cert_done(&c);

        /* RFC 5280 4.1.2.5: up to 2049-12-31 23:59:59 (2524607999) UTCTime, from 2050 GeneralizedTime. */
        assert_int_equal(issuer_issue_at(is, &f->csr, "board 9", 2524607999, &c), 0);
        check_cert(f, &c, "board 9");
        x = decode(&c);
        assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
        X509_free(x);
        issued_cert_done(&c);
        assert_int_equal(issuer_issue_at(is, &f->csr, "board 9", 2524607999 + 1, &c), 0);
        check_cert(f, &c, "board 9");
        x = decode(&c);
        assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_GENERALIZEDTIME);
        X509_free(x);
        issued_cert_done(&c);

        /* 2049-12-30 is still UTCTime for notBefore; validity runs from issuance time, so notAfter
         * (ten years on) is GeneralizedTime. */
        assert_int_equal(issuer_issue_at(f->issuer, &f->csr, "sn-01234567", 2524607999 - 86400, &c), 0);
        check_cert(f, &c, "sn-01234567");
        assert_int_equal(c.not_before, 2524607999 - 86400 - CERT_DEFAULT_BACKDATE_SECONDS);
        x = decode(&c);
        assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
        assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
        X509_free(x);
        issued_cert_done(&c);
        issuer_free(is);

        /* Bad profiles. */
        struct signer *s = NULL;
        char *key = t_path(f->dir, "signer.key"), *pem = t_path(f->dir, "signer.pem");
        cert_profile_init(&p);
        p.validity_days = 0;
        assert_int_equal(signer_open(&s, key, pem, NULL), 0);
        assert_int_equal(issuer_new(&is, s, &p), -EINVAL); /* takes s even on failure */
        cert_profile_init(&p);
        p.org = "bad\nname";
        assert_int_equal(signer_open(&s, key, pem, NULL), 0);
        assert_int_equal(issuer_new(&is, s, &p), -EINVAL);
        cert_profile_init(&p);
        p.org = "\xc3\x28"; /* invalid UTF-8 */
        assert_int_equal(signer_open(&s, key, pem, NULL), 0);
        assert_int_equal(issuer_new(&is, s, &p), -EINVAL);
        cert_profile_init(&p);
        p.backdate_seconds = CERT_MAX_BACKDATE_SECONDS + 1;
        assert_int_equal(signer_open(&s, key, pem, NULL), 0);
        assert_int_equal(issuer_new(&is, s, &p), -EINVAL);
        free(key);
        free(pem);
}

static void test_issue_refused(void **state) {
        struct fixture *f = *state;
        struct issued_cert c = {};
        struct csr_info ca = {};
        size_t len;
        uint8_t *der = t_csr_ex(f->dev, "sn-1", "critical,CA:TRUE", NULL, NULL, &len);

        assert_int_equal(csr_parse_validate(der, len, "sn-1", &ca), 0);
        assert_true(ca.requested_ca);
        assert_int_equal(issuer_issue(f->issuer, &ca, "sn-1", &c), -EPERM);
        assert_null(c.der);
        csr_info_done(&ca);
        free(der);

        assert_int_equal(issuer_issue(f->issuer, &f->csr, "", &c), -EINVAL);
        assert_int_equal(issuer_issue(f->issuer, &f->csr, "tab\there", &c), -EINVAL);
        assert_int_equal(issuer_issue(f->issuer, &f->csr, "\xc3\xa9", &c), -EINVAL);
        assert_int_equal(issuer_issue(f->issuer, &f->csr,
                                      "01234567890123456789012345678901234567890123456789012345678901234", &c),
                         -EINVAL);
        assert_int_equal(issuer_issue(NULL, &f->csr, "x", &c), -EINVAL);
        /* A hand-made csr_info with a point off the curve. */
        struct csr_info fake = { .pubkey = { 0x04, 1, 2, 3 } };
        assert_int_equal(issuer_issue(f->issuer, &fake, "x", &c), -EKEYREJECTED);
        memcpy(fake.pubkey, f->csr.pubkey, 65);
        assert_int_equal(issuer_issue(f->issuer, &fake, "x", &c), 0);
        issued_cert_done(&c);
        assert_null(c.der);
}

/* A device certificate never outlives its signer: clamped by default, refused
 * under CERT_EXPIRY_REFUSE; and nothing is issued outside the signer's validity. */
static void test_expiry(void **state) {
        struct fixture *f = *state;
        char *dir = t_tmpdir(), *key = t_path(dir, "signer.key"), *pem = t_path(dir, "signer.pem"), *uri = NULL;
        struct cert_profile p;
        struct signer *s = NULL;
        struct signer_validity v;
        struct issuer *is = NULL;
        struct issued_cert c = {};
        time_t now = time(NULL);

        assert_int_equal(ca_init(dir, &(struct ca_init_opts){ .signer_validity_days = 30 }), 0);
        assert_true(asprintf(&uri, "file:%s", key) > 0);

        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        assert_int_equal(signer_validity(s, now, &v), 0);
        assert_false(v.expired);
        assert_false(v.not_yet_valid);
        assert_true(v.days_left == 29 || v.days_left == 30);
        assert_int_equal(signer_validity(s, v.not_after + 1, &v), 0);
        assert_true(v.expired);
        assert_int_equal(v.days_left, -1);
        time_t signer_end = v.not_after;

        /* Default profile (3650 days) and no_expiry: both clamped to the signer. */
        cert_profile_init(&p);
        assert_int_equal(issuer_new(&is, s, &p), 0);
        assert_int_equal(issuer_issue_at(is, &f->csr, "sn-clamp", now, &c), 0);
        assert_int_equal(c.not_after, signer_end);
        X509 *x = decode(&c);
        struct tm tm;
        assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
        assert_int_equal(timegm(&tm), signer_end);
        X509_free(x);
        issued_cert_done(&c);
        /* After the signer expired, or before it was valid: nothing. */
        assert_int_equal(issuer_issue_at(is, &f->csr, "sn-late", signer_end + 1, &c), -ERANGE);
        assert_int_equal(issuer_issue_at(is, &f->csr, "sn-early", now - 86400, &c), -ERANGE);
        is = issuer_free(is);

        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        p.no_expiry = true;
        assert_int_equal(issuer_new(&is, s, &p), 0);
        assert_int_equal(issuer_issue_at(is, &f->csr, "sn-clamp", now, &c), 0);
        assert_int_equal(c.not_after, signer_end);
        issued_cert_done(&c);
        is = issuer_free(is);

        /* Refuse: no_expiry is a configuration error; a period that fits is kept,
         * one that does not is refused. */
        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        p.expiry = CERT_EXPIRY_REFUSE;
        assert_int_equal(issuer_new(&is, s, &p), -ERANGE);
        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        p.no_expiry = false;
        p.validity_days = 10;
        assert_int_equal(issuer_new(&is, s, &p), 0);
        assert_int_equal(issuer_issue_at(is, &f->csr, "sn-fits", now, &c), 0);
        assert_int_equal(c.not_after, now + 10 * 86400);
        issued_cert_done(&c);
        assert_int_equal(issuer_issue_at(is, &f->csr, "sn-late", signer_end - 5 * 86400, &c), -ERANGE);
        is = issuer_free(is);

        /* The status of the certificate file alone (provctl signer status). */
        struct signer_file_status st;
        assert_int_equal(signer_cert_file_status(pem, now, &st), 0);
        assert_string_equal(st.subject_cn, "provd signer CA");
        assert_int_equal(st.validity.not_after, signer_end);
        assert_false(st.has_root);
        assert_int_equal(strlen(st.ski_hex), 40);
        assert_int_equal(signer_cert_file_status("/nonexistent.pem", now, &st), -ENOENT);

        assert_int_equal(signer_open(&s, uri, pem, NULL), 0);
        p.expiry = 7;
        assert_int_equal(issuer_new(&is, s, &p), -EINVAL);
        t_rmdir(dir);
        free(key);
        free(pem);
        free(uri);
}

static void test_exports(void **state) {
        struct fixture *f = *state;
        const uint8_t *der, *p;
        size_t len, publen = 0;
        uint8_t pub[65], want[65];
        X509 *x;

        der = issuer_signer_cert_der(f->issuer, &len);
        assert_non_null(der);
        p = der;
        x = d2i_X509(NULL, &p, (long)len);
        assert_int_equal(X509_cmp(x, f->signer_cert), 0);
        X509_free(x);

        der = issuer_root_cert_der(f->issuer, &len);
        assert_non_null(der);
        p = der;
        x = d2i_X509(NULL, &p, (long)len);
        assert_int_equal(X509_cmp(x, f->root), 0);
        X509_free(x);

        assert_int_equal(issuer_root_pubkey(f->issuer, pub), 0);
        assert_int_equal(EVP_PKEY_get_octet_string_param(X509_get0_pubkey(f->root), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                         want, sizeof(want), &publen),
                         1);
        assert_memory_equal(pub, want, 65);
}

static void test_thing_name(void **state) {
        struct fixture *f = *state;
        struct issued_cert c = {};
        char buf[CERT_THING_NAME_MAX + 1];

        assert_int_equal(issuer_issue(f->issuer, &f->csr, "sn-01234567", &c), 0);
        assert_int_equal(cert_thing_name(CERT_THING_CN, &c, "sn-01234567", buf, sizeof(buf)), 11);
        assert_string_equal(buf, "sn-01234567");
        assert_int_equal(cert_thing_name(CERT_THING_SKI, &c, "sn-01234567", buf, sizeof(buf)), 40);
        assert_string_equal(buf, c.ski_hex);
        for (int i = 0; i < 40; i++)
                assert_non_null(strchr("0123456789abcdef", buf[i]));
        assert_int_equal(cert_thing_name(CERT_THING_CN, &c, "has space", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(cert_thing_name(CERT_THING_CN, &c, "a/b", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(cert_thing_name(CERT_THING_SKI, &c, NULL, buf, 40), -ENOBUFS);
        assert_int_equal(cert_thing_name((enum cert_thing_mode)7, &c, "x", buf, sizeof(buf)), -EINVAL);
        issued_cert_done(&c);
}

static void test_proof_roundtrip(void **state) {
        struct fixture *f = *state;
        struct issued_cert c = {};
        uint8_t nonce[32], msg[64], der_sig[80], raw[64];
        size_t siglen = sizeof(der_sig);
        EVP_MD_CTX *md = EVP_MD_CTX_new();

        assert_int_equal(issuer_issue(f->issuer, &f->csr, "sn-01234567", &c), 0);
        memset(nonce, 0x5a, sizeof(nonce));
        memcpy(msg, nonce, 32);
        memcpy(msg + 32, c.sha256, 32);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, f->dev), 1);
        assert_int_equal(EVP_DigestSign(md, der_sig, &siglen, msg, sizeof(msg)), 1);
        EVP_MD_CTX_free(md);
        const uint8_t *p = der_sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        assert_non_null(es);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);

        assert_int_equal(proof_verify_csr(&f->csr, nonce, c.sha256, raw), 0);
        assert_int_equal(proof_verify(c.pubkey, nonce, c.sha256, raw), 0);
        issued_cert_done(&c);
}

static void test_verification_cert(void **state) {
        struct fixture *f = *state;
        struct issued_cert c = {};
        const char *code = "5f2a3c9e0b1d4e6f8a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";
        char buf[80];

        assert_int_equal(issuer_verification_cert(f->issuer, code, &c), 0);
        X509 *x = decode(&c);
        assert_int_equal(X509_verify(x, X509_get0_pubkey(f->signer_cert)), 1);
        assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)), 64);
        assert_string_equal(buf, code);
        assert_memory_not_equal(c.pubkey, f->csr.pubkey, 65);
        X509_free(x);
        issued_cert_done(&c);
        assert_int_equal(issuer_verification_cert(f->issuer, "", &c), -EINVAL);
        assert_int_equal(issuer_verification_cert(f->issuer, "abc-def", &c), -EINVAL);
}

struct worker {
        struct fixture *f;
        int failures;
        uint8_t serials[50][16];
};

static void *issue_worker(void *arg) {
        struct worker *w = arg;
        for (int i = 0; i < 50; i++) {
                struct issued_cert c = {};
                const uint8_t *p;
                X509 *x;
                if (issuer_issue(w->f->issuer, &w->f->csr, "sn-01234567", &c) < 0) {
                        w->failures++;
                        continue;
                }
                p = c.der;
                x = d2i_X509(NULL, &p, (long)c.der_len);
                if (!x || X509_verify(x, X509_get0_pubkey(w->f->signer_cert)) != 1)
                        w->failures++;
                memcpy(w->serials[i], c.serial, 16);
                X509_free(x);
                issued_cert_done(&c);
        }
        return NULL;
}

static void test_concurrent(void **state) {
        struct fixture *f = *state;
        struct worker w[4] = {};
        pthread_t t[4];

        /* Several workers share one issuer, as the daemon's uv_queue_work pool does. */
        issuer_ref(f->issuer);
        for (int i = 0; i < 4; i++) {
                w[i].f = f;
                assert_int_equal(pthread_create(&t[i], NULL, issue_worker, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].failures, 0);
        }
        for (int a = 0; a < 200; a++)
                for (int b = a + 1; b < 200; b++)
                        assert_memory_not_equal(w[a / 50].serials[a % 50], w[b / 50].serials[b % 50], 16);
        issuer_free(f->issuer); /* drops the extra reference only */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_issue_default, setup, teardown),
                cmocka_unit_test_setup_teardown(test_issue_profile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_issue_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exports, setup, teardown),
                cmocka_unit_test_setup_teardown(test_thing_name, setup, teardown),
                cmocka_unit_test_setup_teardown(test_proof_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verification_cert, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
