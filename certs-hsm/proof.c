/* SPDX-License-Identifier: MIT */
/* Proof of possession: ECDSA P-256 over SHA-256(nonce || cert_hash), raw r||s. */

#include <openssl/sha.h>

#include "certs-hsm/csr.h"
#include "certs-hsm/digest.h"
#include "certs-hsm/proof.h"
#include "certs-internal.h"

static int verify_with(const struct csr_key *key, const uint8_t nonce[PROOF_NONCE_LEN],
                       const uint8_t cert_hash[PROOF_HASH_LEN], const uint8_t sig[PROOF_SIG_LEN]) {
        uint8_t msg[PROOF_NONCE_LEN + PROOF_HASH_LEN], digest[SHA256_DIGEST_LENGTH];
        int r;

        memcpy(msg, nonce, PROOF_NONCE_LEN);
        memcpy(msg + PROOF_NONCE_LEN, cert_hash, PROOF_HASH_LEN);
        r = certs_sha256(msg, sizeof(msg), digest);
        if (r < 0)
                return r;
        r = certs_ec_key_verify(key, digest, sig, 32, sig + 32, 32);
        if (r < 0)
                return r;
        return r == 1 ? 0 : -EBADMSG;
}

int proof_verify(const uint8_t pubkey[65], const uint8_t nonce[PROOF_NONCE_LEN],
                 const uint8_t cert_hash[PROOF_HASH_LEN], const uint8_t sig[PROOF_SIG_LEN]) {
        struct csr_key *key = NULL;
        int r;

        if (!pubkey || !nonce || !cert_hash || !sig)
                return -EINVAL;
        r = certs_ec_key_from_point(pubkey, &key);
        if (r < 0)
                return r;
        r = verify_with(key, nonce, cert_hash, sig);
        certs_ec_key_free(key);
        return r;
}

int proof_verify_csr(const struct csr_info *csr, const uint8_t nonce[PROOF_NONCE_LEN],
                     const uint8_t cert_hash[PROOF_HASH_LEN], const uint8_t sig[PROOF_SIG_LEN]) {
        if (!csr || !nonce || !cert_hash || !sig)
                return -EINVAL;
        if (!csr->key)
                return proof_verify(csr->pubkey, nonce, cert_hash, sig);
        return verify_with(csr->key, nonce, cert_hash, sig);
}
