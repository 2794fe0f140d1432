/* SPDX-License-Identifier: MIT */
/* Verification of the board's proof of possession after the certificate was written. */
#pragma once

#include <stdint.h>

struct csr_info;

#define PROOF_NONCE_LEN 32
#define PROOF_HASH_LEN 32
#define PROOF_SIG_LEN 64

/**
 * Verifies @sig (raw r||s, 32+32 bytes big-endian) as ECDSA P-256 over
 * SHA-256(@nonce || @cert_hash) with the device public key @pubkey
 * (uncompressed point, 65 bytes). The caller separately checks that
 * @cert_hash equals SHA-256 of the issued DER.
 * Returns 0 if valid, -EBADMSG if the signature does not verify or r/s are
 * out of range, -EKEYREJECTED if @pubkey is not a valid P-256 point,
 * -EINVAL on NULL arguments, -ENOMEM, -EIO if OpenSSL failed while hashing or
 * verifying (the proof was not judged). Thread-safe.
 */
int proof_verify(const uint8_t pubkey[65], const uint8_t nonce[PROOF_NONCE_LEN],
                 const uint8_t cert_hash[PROOF_HASH_LEN], const uint8_t sig[PROOF_SIG_LEN]);

/**
 * Same as proof_verify(), but reuses the key already decoded by
 * csr_parse_validate() (saves the point decoding). @csr is only read, but one
 * csr_info must not be used by two threads at once.
 */
int proof_verify_csr(const struct csr_info *csr, const uint8_t nonce[PROOF_NONCE_LEN],
                     const uint8_t cert_hash[PROOF_HASH_LEN], const uint8_t sig[PROOF_SIG_LEN]);
