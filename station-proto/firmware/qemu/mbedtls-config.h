/* SPDX-License-Identifier: MIT */
/* mbedTLS 2.28 configuration of the QEMU reference port: P-256 ECDSA, SHA-256, HMAC_DRBG, CSR writing, a static heap. */
#ifndef PROVD_QEMU_MBEDTLS_CONFIG_H
#define PROVD_QEMU_MBEDTLS_CONFIG_H

/* bare metal: no OS entropy, no file system, no time; the heap is a static pool */
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C

#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_SECP256R1_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_WINDOW_SIZE 2               /* less RAM, a little slower */
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0
#define MBEDTLS_ECDSA_C
#define MBEDTLS_ECDSA_DETERMINISTIC             /* RFC 6979: signatures do not depend on the RNG */
#define MBEDTLS_HMAC_DRBG_C
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C
#define MBEDTLS_OID_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CSR_WRITE_C

#include "mbedtls/check_config.h"

#endif
