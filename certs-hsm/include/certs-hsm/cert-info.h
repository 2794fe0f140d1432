/* SPDX-License-Identifier: MIT */
/* Reading stored certificates: PEM text of a DER certificate, and the subject and validity of one. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * What the daemon's database records of a certificate it is given (a signer
 * CA): the subject as RFC 2253 text and the validity in milliseconds since the
 * epoch, UTC. Free with certs_cert_info_free().
 */
struct certs_cert_info {
        char *subject;                  /* RFC 2253, e.g. "CN=signer,O=line 1" */
        int64_t not_before_ms;
        int64_t not_after_ms;
};

/* Certificates larger than this are refused (provd's schema stores at most 16 KiB). */
#define CERTS_CERT_INFO_MAX_DER 16384

/**
 * Decodes @der, which must be exactly one DER certificate (no trailing bytes).
 * -EBADMSG: not one certificate, or a validity time that cannot be read;
 * -E2BIG: over CERTS_CERT_INFO_MAX_DER; -ENOMEM.
 */
int certs_cert_info_new(struct certs_cert_info **ret, const uint8_t *der, size_t len);
struct certs_cert_info *certs_cert_info_free(struct certs_cert_info *info);

/**
 * "-----BEGIN CERTIFICATE-----" PEM of @der (64-column base64, RFC 7468),
 * malloc()ed and NUL-terminated; NULL when out of memory or @len is over
 * CERTS_CERT_INFO_MAX_DER. Does not decode @der.
 */
char *certs_der_to_pem(const uint8_t *der, size_t len);
