/* SPDX-License-Identifier: MIT */
/* Strict, bounded PKCS#10 CSR validation for device keys (EC P-256, ecdsa-with-SHA256). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest CSR accepted, in bytes of DER. A P-256 CSR is ~200–400 bytes. */
#define CSR_MAX_DER 4096
/* RFC 5280 ub-common-name. */
#define CSR_CN_MAX 64
/* Uncompressed SEC1 point: 0x04 || X(32) || Y(32). */
#define CSR_PUBKEY_LEN 65

struct csr_key; /* opaque: the decoded public key, ready for ECDSA verification */

struct csr_info {
        uint8_t pubkey[CSR_PUBKEY_LEN]; /* uncompressed point, validated on the curve */
        char cn[CSR_CN_MAX + 1];        /* the subject CN, NUL-terminated */
        bool requested_ca;              /* extensionRequest asks for basicConstraints cA=TRUE */
        bool has_extension_request;     /* the CSR carried an extensionRequest (all ignored) */
        struct csr_key *key;            /* owned; freed by csr_info_done() */
};

/**
 * Parses and validates a DER CSR from a board. Thread-safe (no shared state).
 *
 * Checks, in this order: size (1..CSR_MAX_DER), strict DER with the whole
 * input consumed, version v1 (0), subjectPublicKeyInfo = id-ecPublicKey +
 * prime256v1 with an uncompressed point on the curve, signatureAlgorithm =
 * ecdsa-with-SHA256 (parameters absent, RFC 5758), the signature verifies,
 * and the subject has exactly one CN equal to @expected_cn (byte-exact).
 * Other subject attributes (C, O, OU, serialNumber, ...) are allowed and
 * ignored: the certificate's subject comes from the profile, never from the
 * CSR. @expected_cn may be NULL to skip the comparison (the CN must still be
 * present exactly once and is reported in ret->cn).
 *
 * Requested extensions are never used. They are parsed only to report
 * ret->requested_ca: a CSR asking for CA:TRUE still returns 0 with
 * requested_ca = true, and the caller must refuse it.
 *
 * Returns 0 and fills @ret (call csr_info_done() on it later), or:
 *   -EINVAL          bad arguments (NULL der or ret)
 *   -EMSGSIZE        len == 0 or len > CSR_MAX_DER
 *   -EBADMSG         malformed DER / not a PKCS#10 v1 request / trailing bytes
 *   -EKEYREJECTED    key is not EC P-256, or the point is not on the curve
 *   -EPROTONOSUPPORT signature algorithm is not ecdsa-with-SHA256
 *   -EBADE           the CSR's self-signature does not verify
 *   -EPERM           the subject has no CN, several CNs, or a CN != expected_cn
 *   -ENOMEM          out of memory
 *   -EIO             OpenSSL failed while hashing or verifying (not a bad signature)
 * @ret is written only on success. Does not keep @der or @expected_cn.
 */
int csr_parse_validate(const uint8_t *der, size_t len, const char *expected_cn, struct csr_info *ret);

/** Frees what csr_parse_validate() allocated; @info may be zeroed or NULL. Idempotent. */
void csr_info_done(struct csr_info *info);

/** Operator-facing message for a csr_parse_validate() error; never NULL. */
const char *csr_strerror(int r);
