/* SPDX-License-Identifier: MIT */
/* CSR validation: accepted and rejected CSRs made with OpenSSL, and byte-level corruptions. */

#include "test-util.h"
#include "test-alloc.h"

#include <openssl/core_names.h>

#include "certs-hsm/csr.h"

static EVP_PKEY *p256;

static int setup(void **state) {
        p256 = t_key_ec("P-256");
        return 0;
}

static int teardown(void **state) {
        EVP_PKEY_free(p256);
        return 0;
}

/* OpenSSL's own opinion of a CSR, as a cross-check for what we accept. */
static bool openssl_accepts(const uint8_t *der, size_t len) {
        const uint8_t *p = der;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
        bool ok = req && p == der + len && X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) == 1;
        X509_REQ_free(req);
        return ok;
}

static void test_valid(void **state) {
        struct csr_info info = {};
        uint8_t pub[65];
        size_t len, publen = 0;
        uint8_t *der = t_csr(p256, "sn-0123ABCD", &len);

        assert_int_equal(csr_parse_validate(der, len, "sn-0123ABCD", &info), 0);
        assert_string_equal(info.cn, "sn-0123ABCD");
        assert_false(info.requested_ca);
        assert_false(info.has_extension_request);
        assert_non_null(info.key);
        assert_int_equal(EVP_PKEY_get_octet_string_param(p256, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, sizeof(pub), &publen), 1);
        assert_int_equal(publen, 65);
        assert_memory_equal(info.pubkey, pub, 65);
        assert_true(openssl_accepts(der, len));
        csr_info_done(&info);
        assert_null(info.key);
        csr_info_done(&info); /* idempotent */

        /* NULL expected CN: still validated, CN reported. */
        assert_int_equal(csr_parse_validate(der, len, NULL, &info), 0);
        assert_string_equal(info.cn, "sn-0123ABCD");
        csr_info_done(&info);
        free(der);
}

static void test_other_rdns_ignored(void **state) {
        static const char *const extra[] = { "C=DE", "O=Acme", "OU=Line 3", NULL };
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr_ex(p256, "board-7", NULL, NULL, extra, &len);

        assert_int_equal(csr_parse_validate(der, len, "board-7", &info), 0);
        assert_string_equal(info.cn, "board-7");
        csr_info_done(&info);
        free(der);
}

static void test_cn_mismatch(void **state) {
        static const char *const two_cn[] = { "CN=board-7", NULL };
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr(p256, "board-7", &len);

        assert_int_equal(csr_parse_validate(der, len, "board-8", &info), -EPERM);
        assert_int_equal(csr_parse_validate(der, len, "board-", &info), -EPERM);
        assert_int_equal(csr_parse_validate(der, len, "board-77", &info), -EPERM);
        assert_int_equal(csr_parse_validate(der, len, "", &info), -EPERM);
        assert_null(info.key); /* not written on failure */
        free(der);

        /* No CN at all. */
        static const char *const only_o[] = { "O=Acme", NULL };
        der = t_csr_ex(p256, NULL, NULL, NULL, only_o, &len);
        assert_int_equal(csr_parse_validate(der, len, NULL, &info), -EPERM);
        free(der);

        /* Two CNs, even if one matches. */
        der = t_csr_ex(p256, "board-7", NULL, NULL, two_cn, &len);
        assert_int_equal(csr_parse_validate(der, len, "board-7", &info), -EPERM);
        assert_int_equal(csr_parse_validate(der, len, NULL, &info), -EPERM);
        free(der);
}

static void test_wrong_keys(void **state) {
        struct csr_info info = {};
        size_t len;
        EVP_PKEY *rsa = t_key_rsa(), *p384 = t_key_ec("P-384"), *k1 = t_key_ec("secp256k1");
        uint8_t *der;

        der = t_csr(rsa, "board-1", &len);
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EKEYREJECTED);
        free(der);
        der = t_csr(p384, "board-1", &len);
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EKEYREJECTED);
        free(der);
        der = t_csr(k1, "board-1", &len);
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EKEYREJECTED);
        free(der);
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(p384);
        EVP_PKEY_free(k1);
}

/* Finds the 65-byte point in the DER of a CSR. */
static size_t find_point(const uint8_t *der, size_t len) {
        static const uint8_t prefix[] = { 0x03, 0x42, 0x00, 0x04 };
        for (size_t i = 0; i + sizeof(prefix) + 64 <= len; i++)
                if (memcmp(der + i, prefix, sizeof(prefix)) == 0)
                        return i + 3;
        fail_msg("no point in CSR");
        return 0;
}

static void test_bad_point(void **state) {
        struct csr_info info = {};
        size_t len, off;
        uint8_t *der = t_csr(p256, "board-1", &len);

        off = find_point(der, len);
        der[off + 64] ^= 0x01; /* Y changed: off the curve */
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EKEYREJECTED);
        der[off + 64] ^= 0x01;
        der[off] = 0x02; /* compressed form tag with an uncompressed length */
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EKEYREJECTED);
        free(der);
}

static void test_bad_signature(void **state) {
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr(p256, "board-1", &len);

        /* Last byte is in s. */
        der[len - 1] ^= 0x01;
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EBADE);
        assert_false(openssl_accepts(der, len));
        der[len - 1] ^= 0x01;
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), 0);
        csr_info_done(&info);

        /* A bit of the signed CN: the signature no longer covers it. */
        uint8_t *cn = memmem(der, len, "board-1", 7);
        assert_non_null(cn);
        cn[6] ^= 0x02; /* '1' -> '3' */
        assert_int_equal(csr_parse_validate(der, len, "board-3", &info), -EBADE);
        free(der);

        /* Signed with SHA-384: right key, unsupported algorithm. */
        der = t_csr_ex(p256, "board-1", NULL, EVP_sha384(), NULL, &len);
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EPROTONOSUPPORT);
        free(der);
}

static void test_requested_ca(void **state) {
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr_ex(p256, "board-1", "critical,CA:TRUE", NULL, NULL, &len);

        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), 0);
        assert_true(info.requested_ca);
        assert_true(info.has_extension_request);
        csr_info_done(&info);
        free(der);

        der = t_csr_ex(p256, "board-1", "CA:TRUE,pathlen:3", NULL, NULL, &len);
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), 0);
        assert_true(info.requested_ca);
        csr_info_done(&info);
        free(der);

        der = t_csr_ex(p256, "board-1", "critical,CA:FALSE", NULL, NULL, &len);
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), 0);
        assert_false(info.requested_ca);
        assert_true(info.has_extension_request);
        csr_info_done(&info);
        free(der);
}

static void test_truncated_and_trailing(void **state) {
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr(p256, "board-1", &len), *big;

        /* Every proper prefix is malformed. */
        for (size_t n = 1; n < len; n++) {
                int r = csr_parse_validate(der, n, "board-1", &info);
                if (r != -EBADMSG)
                        fail_msg("prefix of %zu/%zu bytes: %d", n, len, r);
        }
        big = malloc(len + 1);
        memcpy(big, der, len);
        big[len] = 0x00;
        assert_int_equal(csr_parse_validate(big, len + 1, "board-1", &info), -EBADMSG);
        free(big);

        /* Non-minimal length on the outer SEQUENCE (BER, not DER). */
        assert_true(der[1] == 0x81 || der[1] < 0x80);
        if (der[1] < 0x80) {
                big = malloc(len + 1);
                big[0] = 0x30;
                big[1] = 0x81;
                memcpy(big + 2, der + 1, len - 1);
                assert_int_equal(csr_parse_validate(big, len + 1, "board-1", &info), -EBADMSG);
                free(big);
        } else {
                big = malloc(len + 1);
                big[0] = 0x30;
                big[1] = 0x82;
                big[2] = 0x00;
                memcpy(big + 3, der + 2, len - 2);
                assert_int_equal(csr_parse_validate(big, len + 1, "board-1", &info), -EBADMSG);
                free(big);
        }

        /* Version 1 instead of 0. */
        uint8_t *v = memmem(der, len, "\x02\x01\x00", 3);
        assert_non_null(v);
        v[2] = 0x01;
        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), -EBADMSG);
        free(der);
}

static void test_oversize(void **state) {
        struct csr_info info = {};
        uint8_t *big = calloc(1, CSR_MAX_DER + 1);
        size_t len;
        uint8_t *der = t_csr(p256, "board-1", &len);

        assert_int_equal(csr_parse_validate(big, CSR_MAX_DER + 1, "board-1", &info), -EMSGSIZE);
        assert_int_equal(csr_parse_validate(big, SIZE_MAX, "board-1", &info), -EMSGSIZE);
        assert_int_equal(csr_parse_validate(big, 0, "board-1", &info), -EMSGSIZE);
        memcpy(big, der, len); /* a valid CSR followed by zeros, still too big */
        assert_int_equal(csr_parse_validate(big, CSR_MAX_DER + 1, "board-1", &info), -EMSGSIZE);
        assert_int_equal(csr_parse_validate(NULL, 10, "board-1", &info), -EINVAL);
        assert_int_equal(csr_parse_validate(der, len, "board-1", NULL), -EINVAL);
        free(big);
        free(der);
}

/* Every single-bit flip is either rejected or, if accepted, accepted by OpenSSL too. */
static void test_bit_flips(void **state) {
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr(p256, "board-1", &len);

        for (size_t i = 0; i < len; i++)
                for (int b = 0; b < 8; b++) {
                        der[i] ^= (uint8_t)(1u << b);
                        int r = csr_parse_validate(der, len, "board-1", &info);
                        if (r == 0) {
                                if (!openssl_accepts(der, len))
                                        fail_msg("byte %zu bit %d: accepted by us, not by OpenSSL", i, b);
                                csr_info_done(&info);
                        } else if (r != -EBADMSG && r != -EKEYREJECTED && r != -EPROTONOSUPPORT && r != -EBADE &&
                                   r != -EPERM)
                                fail_msg("byte %zu bit %d: unexpected %d", i, b, r);
                        der[i] ^= (uint8_t)(1u << b);
                }
        free(der);
}

/* An OpenSSL failure while checking a good signature (here: allocations failing
 * from the n-th on, for every n) is an internal error, never "the signature
 * does not verify": the board did nothing wrong. */
static void test_internal_error_not_bad_signature(void **state) {
        struct csr_info info = {};
        size_t len;
        uint8_t *der = t_csr(p256, "board-1", &len);
        bool saw_eio = false;
        int r = -1;

        assert_int_equal(csr_parse_validate(der, len, "board-1", &info), 0); /* warm the caches */
        csr_info_done(&info);
        for (long n = 0; n < 10000 && r != 0; n++) {
                t_alloc_left = n;
                r = csr_parse_validate(der, len, "board-1", &info);
                t_alloc_left = -1;
                if (r == -EBADE)
                        fail_msg("allocation %ld failing was reported as a bad signature", n);
                saw_eio |= r == -EIO;
        }
        assert_int_equal(r, 0);
        assert_true(saw_eio); /* ECDSA_do_verify() itself failed at least once */
        assert_string_not_equal(csr_strerror(-EIO), csr_strerror(-EBADE));
        csr_info_done(&info);
        free(der);
}

static void test_strerror(void **state) {
        static const int codes[] = { -EMSGSIZE, -EBADMSG, -EKEYREJECTED, -EPROTONOSUPPORT, -EBADE, -EPERM };
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
                assert_non_null(csr_strerror(codes[i]));
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(csr_strerror(codes[i]), csr_strerror(codes[j]));
        }
        assert_non_null(csr_strerror(-12345));
}

int main(void) {
        if (t_alloc_install() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_other_rdns_ignored),
                cmocka_unit_test(test_cn_mismatch),
                cmocka_unit_test(test_wrong_keys),
                cmocka_unit_test(test_bad_point),
                cmocka_unit_test(test_bad_signature),
                cmocka_unit_test(test_requested_ca),
                cmocka_unit_test(test_truncated_and_trailing),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_bit_flips),
                cmocka_unit_test(test_strerror),
                cmocka_unit_test(test_internal_error_not_bad_signature),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
