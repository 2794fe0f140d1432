/* SPDX-License-Identifier: MIT */
/* The per-board crypto floor, measured with OpenSSL's standard high-level API:
 * one CSR signature verification, one certificate signature, one proof
 * verification, keys decoded once outside the timed loops. This is what any
 * implementation must spend; everything above it is overhead. */

#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "certs-hsm/crypto-floor.h"
#include "signer-internal.h"

#define BATCHES 5

/* Typical sizes: a P-256 certificationRequestInfo, a device TBSCertificate, a proof. */
#define CSR_INFO_LEN 150
#define TBS_LEN 330
#define PROOF_LEN 64

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int sign_once(EVP_PKEY *key, const uint8_t *msg, size_t len, uint8_t *sig, size_t *siglen) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
            EVP_DigestSign(md, sig, siglen, msg, len) != 1)
                return -EIO;
        return 0;
}

static int verify_once(EVP_PKEY *key, const uint8_t *msg, size_t len, const uint8_t *sig, size_t siglen) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
            EVP_DigestVerify(md, sig, siglen, msg, len) != 1)
                return -EIO;
        return 0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Median over BATCHES of the mean per-op time: robust against a busy machine. */
static double median(double v[BATCHES]) {
        qsort(v, BATCHES, sizeof(double), cmp_double);
        return v[BATCHES / 2];
}

int crypto_floor_measure(unsigned iterations, struct crypto_floor *ret) {
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *device = NULL, *signer = NULL;
        uint8_t csr_info[CSR_INFO_LEN], tbs[TBS_LEN], proof[PROOF_LEN];
        uint8_t csr_sig[SIGNER_SIG_MAX], proof_sig[SIGNER_SIG_MAX], sig[SIGNER_SIG_MAX];
        size_t csr_sig_len = sizeof(csr_sig), proof_sig_len = sizeof(proof_sig), sig_len;
        double t_verify[BATCHES], t_sign[BATCHES], t_proof[BATCHES];
        unsigned per_batch;
        int r = 0;

        if (!ret)
                return -EINVAL;
        if (iterations == 0)
                iterations = 2000;
        per_batch = iterations / BATCHES ? iterations / BATCHES : 1;

        device = EVP_EC_gen("P-256");
        signer = EVP_EC_gen("P-256");
        if (!device || !signer)
                return -EIO;
        memset(csr_info, 0x30, sizeof(csr_info));
        memset(tbs, 0x31, sizeof(tbs));
        memset(proof, 0x32, sizeof(proof));
        if (sign_once(device, csr_info, sizeof(csr_info), csr_sig, &csr_sig_len) < 0 ||
            sign_once(device, proof, sizeof(proof), proof_sig, &proof_sig_len) < 0)
                return -EIO;

        for (int b = 0; b < BATCHES; b++) {
                double t0 = now_us();
                for (unsigned i = 0; i < per_batch; i++)
                        r |= verify_once(device, csr_info, sizeof(csr_info), csr_sig, csr_sig_len);
                double t1 = now_us();
                for (unsigned i = 0; i < per_batch; i++) {
                        sig_len = sizeof(sig);
                        tbs[i % sizeof(tbs)]++; /* a different TBS each time, like different serials */
                        r |= sign_once(signer, tbs, sizeof(tbs), sig, &sig_len);
                }
                double t2 = now_us();
                for (unsigned i = 0; i < per_batch; i++)
                        r |= verify_once(device, proof, sizeof(proof), proof_sig, proof_sig_len);
                double t3 = now_us();
                t_verify[b] = (t1 - t0) / per_batch;
                t_sign[b] = (t2 - t1) / per_batch;
                t_proof[b] = (t3 - t2) / per_batch;
        }
        if (r != 0) {
                ERR_clear_error();
                return -EIO;
        }
        *ret = (struct crypto_floor){
                .csr_verify_us = median(t_verify),
                .cert_sign_us = median(t_sign),
                .proof_verify_us = median(t_proof),
                .iterations = per_batch * BATCHES,
        };
        ret->total_us = ret->csr_verify_us + ret->cert_sign_us + ret->proof_verify_us;
        return 0;
}
