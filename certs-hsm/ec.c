/* SPDX-License-Identifier: MIT */
/* P-256 public keys for verification through the low-level EC_KEY/ECDSA API.
 *
 * Why the deprecated API: decoding a 65-byte point into an EVP_PKEY with
 * EVP_PKEY_fromdata() costs ~35–40 µs on OpenSSL 3.0 (provider key management,
 * parameter copies, a key check), a third of an ECDSA verification. EC_KEY_oct2key()
 * on a cached EC_GROUP costs ~3 µs, and ECDSA_do_verify() on a raw digest avoids
 * the EVP_MD_CTX fetches (see bench-crypto). The API is still present in 3.x;
 * the deprecation warnings are silenced for this file only. */

#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <pthread.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>

#include "certs-internal.h"

struct csr_key {
        EC_KEY *ec;
};

static EC_GROUP *p256;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void p256_init(void) {
        p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
}

int certs_ec_key_from_point(const uint8_t point[65], struct csr_key **ret) {
        struct csr_key *k;

        if (point[0] != 0x04) /* uncompressed form only */
                return -EKEYREJECTED;
        pthread_once(&p256_once, p256_init);
        if (!p256)
                return -ENOMEM;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->ec = EC_KEY_new();
        if (!k->ec || EC_KEY_set_group(k->ec, p256) != 1) {
                certs_ec_key_free(k);
                return -ENOMEM;
        }
        /* EC_POINT_oct2point() rejects points that are not on the curve. P-256 has
         * cofactor 1, so every point on the curve (≠ infinity, which has no
         * uncompressed form) is in the prime-order group. */
        if (EC_KEY_oct2key(k->ec, point, 65, NULL) != 1) {
                ERR_clear_error();
                certs_ec_key_free(k);
                return -EKEYREJECTED;
        }
        *ret = k;
        return 0;
}

void certs_ec_key_free(struct csr_key *k) {
        if (!k)
                return;
        EC_KEY_free(k->ec);
        free(k);
}

int certs_ec_key_verify(const struct csr_key *k, const uint8_t digest[32], const uint8_t *r, size_t rlen,
                  const uint8_t *s, size_t slen) {
        ECDSA_SIG *sig = ECDSA_SIG_new();
        BIGNUM *br = BN_bin2bn(r, (int)rlen, NULL), *bs = BN_bin2bn(s, (int)slen, NULL);
        int v;

        if (!sig || !br || !bs || ECDSA_SIG_set0(sig, br, bs) != 1) {
                ECDSA_SIG_free(sig);
                BN_free(br);
                BN_free(bs);
                return -ENOMEM;
        }
        /* Checks 0 < r, s < n itself; returns -1 on errors, 0 on a bad signature.
         * An error (allocation, missing key) says nothing about the signature:
         * reported as a bad one, a good board would be rejected for our fault. */
        v = ECDSA_do_verify(digest, 32, sig, k->ec);
        ECDSA_SIG_free(sig);
        if (v != 1)
                ERR_clear_error();
        if (v < 0)
                return -EIO;
        return v == 1;
}
