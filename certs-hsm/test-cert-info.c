/* SPDX-License-Identifier: MIT */
/* Unit tests for cert-info.c: subject and validity of a real certificate, refusals, PEM round trip. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "certs-hsm/cert-info.h"

/* A self-signed P-256 certificate valid from @nb for @days, DER (OPENSSL_free). */
static unsigned char *make_cert(time_t nb, long days, int *ret_len) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        X509_NAME *name = X509_NAME_new();
        unsigned char *der = NULL;

        assert_non_null(key);
        assert_non_null(x);
        assert_int_equal(X509_set_version(x, 2), 1);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"line 1", -1, -1, 0);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"signer", -1, -1, 0);
        X509_set_subject_name(x, name);
        X509_set_issuer_name(x, name);
        ASN1_TIME_set(X509_getm_notBefore(x), nb);
        ASN1_TIME_set(X509_getm_notAfter(x), nb + days * 86400);
        X509_set_pubkey(x, key);
        assert_true(X509_sign(x, key, EVP_sha256()) > 0);
        *ret_len = i2d_X509(x, &der);
        assert_true(*ret_len > 0);
        X509_NAME_free(name);
        X509_free(x);
        EVP_PKEY_free(key);
        return der;
}

static void test_info(void **state) {
        struct certs_cert_info *info = NULL;
        int len;
        unsigned char *der = make_cert(1700000000, 365, &len);

        assert_int_equal(certs_cert_info_new(&info, der, (size_t)len), 0);
        assert_string_equal(info->subject, "CN=signer,O=line 1");
        assert_int_equal(info->not_before_ms, 1700000000000LL);
        assert_int_equal(info->not_after_ms, (1700000000LL + 365 * 86400) * 1000);
        assert_null(certs_cert_info_free(info));
        assert_null(certs_cert_info_free(NULL));

        /* Beyond 2050: GeneralizedTime. */
        OPENSSL_free(der);
        der = make_cert(2600000000, 1, &len);
        info = NULL;
        assert_int_equal(certs_cert_info_new(&info, der, (size_t)len), 0);
        assert_int_equal(info->not_before_ms, 2600000000000LL);
        certs_cert_info_free(info);
        OPENSSL_free(der);
}

static void test_refused(void **state) {
        struct certs_cert_info *info = (void *)1;      /* untouched on failure */
        uint8_t junk[8] = { 0x30, 0x03, 0x02, 0x01, 0x01, 0, 0, 0 };
        int len;
        unsigned char *der = make_cert(1700000000, 1, &len), *longer;

        assert_int_equal(certs_cert_info_new(&info, junk, sizeof(junk)), -EBADMSG);
        assert_int_equal(certs_cert_info_new(&info, der, 0), -EBADMSG);
        assert_int_equal(certs_cert_info_new(&info, der, (size_t)len - 1), -EBADMSG);
        /* One certificate and a trailing byte is not one certificate. */
        longer = malloc((size_t)len + 1);
        assert_non_null(longer);
        memcpy(longer, der, (size_t)len);
        longer[len] = 0;
        assert_int_equal(certs_cert_info_new(&info, longer, (size_t)len + 1), -EBADMSG);
        assert_int_equal(certs_cert_info_new(&info, der, CERTS_CERT_INFO_MAX_DER + 1), -E2BIG);
        assert_ptr_equal(info, (void *)1);
        free(longer);
        OPENSSL_free(der);
}

/* OpenSSL reads back what we wrote. */
static void test_pem(void **state) {
        int len;
        unsigned char *der = make_cert(1700000000, 1, &len), *der2 = NULL;
        char *pem = certs_der_to_pem(der, (size_t)len);
        BIO *bio;
        X509 *x;

        assert_non_null(pem);
        bio = BIO_new_mem_buf(pem, -1);
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        assert_non_null(x);
        assert_int_equal(i2d_X509(x, &der2), len);
        assert_memory_equal(der, der2, (size_t)len);
        for (char *line = pem; (line = strchr(line, '\n')); line++)
                assert_true(strcspn(line + 1, "\n") <= 64);
        X509_free(x);
        BIO_free(bio);
        OPENSSL_free(der2);
        free(pem);

        pem = certs_der_to_pem(NULL, 0);
        assert_string_equal(pem, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
        free(pem);
        assert_null(certs_der_to_pem(der, CERTS_CERT_INFO_MAX_DER + 1));
        OPENSSL_free(der);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_info),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_pem),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
