/* SPDX-License-Identifier: MIT */
/* Proof-of-possession verification: accept the right signature, reject everything else. */

#include "test-util.h"
#include "test-alloc.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>

#include "certs-hsm/csr.h"
#include "certs-hsm/proof.h"

/* P-256 group order n. */
static const uint8_t order[32] = {
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

struct fixture {
        EVP_PKEY *key;
        uint8_t pub[65], nonce[32], hash[32], sig[64];
        struct csr_info csr;
};

static void sign_raw(EVP_PKEY *key, const uint8_t nonce[32], const uint8_t hash[32], uint8_t out[64]) {
        uint8_t msg[64], der[80];
        size_t len = sizeof(der);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        const uint8_t *p = der;

        memcpy(msg, nonce, 32);
        memcpy(msg + 32, hash, 32);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
        assert_int_equal(EVP_DigestSign(md, der, &len, msg, sizeof(msg)), 1);
        EVP_MD_CTX_free(md);
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
        assert_non_null(es);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32), 32);
        ECDSA_SIG_free(es);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        size_t len = 0;
        uint8_t *der;

        f->key = t_key_ec("P-256");
        assert_int_equal(EVP_PKEY_get_octet_string_param(f->key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, f->pub, 65, &len), 1);
        for (int i = 0; i < 32; i++) {
                f->nonce[i] = (uint8_t)(i * 7 + 1);
                f->hash[i] = (uint8_t)(0xa5 ^ i);
        }
        sign_raw(f->key, f->nonce, f->hash, f->sig);
        der = t_csr(f->key, "board", &len);
        assert_int_equal(csr_parse_validate(der, len, "board", &f->csr), 0);
        free(der);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        EVP_PKEY_free(f->key);
        csr_info_done(&f->csr);
        free(f);
        return 0;
}

static void test_accept(void **state) {
        struct fixture *f = *state;
        assert_int_equal(proof_verify(f->pub, f->nonce, f->hash, f->sig), 0);
        assert_int_equal(proof_verify_csr(&f->csr, f->nonce, f->hash, f->sig), 0);
        /* A csr_info without the decoded key falls back to the point. */
        struct csr_info copy = f->csr;
        copy.key = NULL;
        assert_int_equal(proof_verify_csr(&copy, f->nonce, f->hash, f->sig), 0);
}

static void test_reject(void **state) {
        struct fixture *f = *state;
        uint8_t x[64], other_pub[65];
        size_t len = 0;

        for (int i = 0; i < 64; i++) {
                memcpy(x, f->sig, 64);
                x[i] ^= 0x10;
                assert_int_equal(proof_verify(f->pub, f->nonce, f->hash, x), -EBADMSG);
                assert_int_equal(proof_verify_csr(&f->csr, f->nonce, f->hash, x), -EBADMSG);
        }
        memcpy(x, f->nonce, 32);
        x[31] ^= 1;
        assert_int_equal(proof_verify(f->pub, x, f->hash, f->sig), -EBADMSG);
        memcpy(x, f->hash, 32);
        x[0] ^= 0x80;
        assert_int_equal(proof_verify(f->pub, f->nonce, x, f->sig), -EBADMSG);
        /* nonce and hash swapped */
        assert_int_equal(proof_verify(f->pub, f->hash, f->nonce, f->sig), -EBADMSG);

        /* r = 0, s = 0, r = n, s = n */
        memcpy(x, f->sig, 64);
        memset(x, 0, 32);
        assert_int_equal(proof_verify(f->pub, f->nonce, f->hash, x), -EBADMSG);
        memcpy(x, f->sig, 64);
        memset(x + 32, 0, 32);
        assert_int_equal(proof_verify(f->pub, f->nonce, f->hash, x), -EBADMSG);
        memcpy(x, f->sig, 64);
        memcpy(x, order, 32);
        assert_int_equal(proof_verify(f->pub, f->nonce, f->hash, x), -EBADMSG);
        memcpy(x, f->sig, 64);
        memcpy(x + 32, order, 32);
        assert_int_equal(proof_verify(f->pub, f->nonce, f->hash, x), -EBADMSG);

        /* Another key. */
        EVP_PKEY *k2 = t_key_ec("P-256");
        assert_int_equal(EVP_PKEY_get_octet_string_param(k2, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, other_pub, 65, &len), 1);
        assert_int_equal(proof_verify(other_pub, f->nonce, f->hash, f->sig), -EBADMSG);
        EVP_PKEY_free(k2);

        /* Invalid points. */
        memcpy(other_pub, f->pub, 65);
        other_pub[64] ^= 1;
        assert_int_equal(proof_verify(other_pub, f->nonce, f->hash, f->sig), -EKEYREJECTED);
        other_pub[64] ^= 1;
        other_pub[0] = 0x02;
        assert_int_equal(proof_verify(other_pub, f->nonce, f->hash, f->sig), -EKEYREJECTED);
        memset(other_pub + 1, 0, 64);
        other_pub[0] = 0x04;
        assert_int_equal(proof_verify(other_pub, f->nonce, f->hash, f->sig), -EKEYREJECTED);

        assert_int_equal(proof_verify(NULL, f->nonce, f->hash, f->sig), -EINVAL);
        assert_int_equal(proof_verify_csr(NULL, f->nonce, f->hash, f->sig), -EINVAL);
}

/* OpenSSL failing inside the verification (allocations failing from the n-th
 * on) is -EIO/-ENOMEM, never -EBADMSG: a good proof must not be called forged. */
static void test_internal_error_not_bad_signature(void **state) {
        struct fixture *f = *state;
        bool saw_eio = false;
        int r = -1;

        for (int which = 0; which < 2; which++) {
                r = -1;
                for (long n = 0; n < 10000 && r != 0; n++) {
                        t_alloc_left = n;
                        r = which == 0 ? proof_verify(f->pub, f->nonce, f->hash, f->sig)
                                       : proof_verify_csr(&f->csr, f->nonce, f->hash, f->sig);
                        t_alloc_left = -1;
                        if (r == -EBADMSG)
                                fail_msg("allocation %ld failing was reported as a bad proof", n);
                        saw_eio |= r == -EIO;
                }
                assert_int_equal(r, 0);
        }
        assert_true(saw_eio);
}

int main(void) {
        if (t_alloc_install() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_accept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reject, setup, teardown),
                cmocka_unit_test_setup_teardown(test_internal_error_not_bad_signature, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
