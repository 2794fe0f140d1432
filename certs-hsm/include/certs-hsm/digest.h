/* SPDX-License-Identifier: MIT */
/* SHA-256 and SHA-1 through algorithms fetched once per process.
 *
 * OpenSSL 3's one-shot SHA256() and EVP_sha256() look the algorithm up in the
 * provider store on every call, which costs as much as hashing a certificate
 * (1.1 µs against 0.7 µs for 560 bytes). Per board provd hashes the CSR, the
 * TBS, the certificate (twice: issuer and database), the proof message and
 * the audit row. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* The fetched SHA-256, for incremental hashing with EVP_DigestInit_ex(); never
 * NULL (falls back to EVP_sha256() if the fetch failed). Thread-safe. */
const EVP_MD *certs_md_sha256(void);

/* One-shot digests; 0 or -EIO (allocation failure inside OpenSSL). */
int certs_sha256(const void *data, size_t len, uint8_t ret[32]);
int certs_sha1(const void *data, size_t len, uint8_t ret[20]);
