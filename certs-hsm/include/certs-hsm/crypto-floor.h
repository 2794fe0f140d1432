/* SPDX-License-Identifier: MIT */
/* The per-board crypto floor with plain OpenSSL, for the performance benchmark. */
#pragma once

struct crypto_floor {
        double csr_verify_us;   /* EVP_DigestVerify, ECDSA P-256 / SHA-256, pre-decoded key */
        double cert_sign_us;    /* EVP_DigestSign of a ~300-byte TBS with a P-256 key */
        double proof_verify_us; /* EVP_DigestVerify of the 64-byte proof message */
        double total_us;        /* the sum: the per-board floor */
        unsigned iterations;
};

/**
 * Measures the unavoidable crypto of one board with OpenSSL's standard
 * high-level API (keys decoded once, outside the timed loops), each
 * operation @iterations times (0 = 2000), single thread, CLOCK_THREAD_CPUTIME_ID.
 * Returns 0 or -EIO/-ENOMEM.
 */
int crypto_floor_measure(unsigned iterations, struct crypto_floor *ret);
