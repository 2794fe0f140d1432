/* SPDX-License-Identifier: MIT */
/* Decoding a stored certificate's subject and validity, and writing certificates as PEM. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certs-hsm/cert-info.h"

static int asn1_time_ms(const ASN1_TIME *t, int64_t *ret) {
        struct tm tm = {};

        if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
                return -EBADMSG;
        *ret = (int64_t)timegm(&tm) * 1000;
        return 0;
}

struct certs_cert_info *certs_cert_info_free(struct certs_cert_info *info) {
        if (info) {
                free(info->subject);
                free(info);
        }
        return NULL;
}

int certs_cert_info_new(struct certs_cert_info **ret, const uint8_t *der, size_t len) {
        struct certs_cert_info *info = NULL;
        const unsigned char *p = der;
        X509 *cert = NULL;
        BIO *bio = NULL;
        char *text;
        long n;
        int r;

        if (!ret || (!der && len))
                return -EINVAL;
        if (len > CERTS_CERT_INFO_MAX_DER)
                return -E2BIG;
        if (len == 0)
                return -EBADMSG;

        cert = d2i_X509(NULL, &p, (long)len);
        /* Exactly one certificate: trailing bytes would be stored but never read. */
        if (!cert || p != der + len) {
                r = -EBADMSG;
                goto out;
        }
        info = calloc(1, sizeof(*info));
        if (!info) {
                r = -ENOMEM;
                goto out;
        }
        if (asn1_time_ms(X509_get0_notBefore(cert), &info->not_before_ms) < 0 ||
            asn1_time_ms(X509_get0_notAfter(cert), &info->not_after_ms) < 0) {
                r = -EBADMSG;
                goto out;
        }
        bio = BIO_new(BIO_s_mem());
        if (!bio || X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) {
                r = -ENOMEM;
                goto out;
        }
        n = BIO_get_mem_data(bio, &text);
        if (n < 0) {
                r = -ENOMEM;
                goto out;
        }
        info->subject = strndup(n > 0 ? text : "", (size_t)n);
        if (!info->subject) {
                r = -ENOMEM;
                goto out;
        }
        *ret = info;
        info = NULL;
        r = 0;
out:
        certs_cert_info_free(info);
        BIO_free(bio);
        X509_free(cert);
        return r;
}

char *certs_der_to_pem(const uint8_t *der, size_t len) {
        static const char head[] = "-----BEGIN CERTIFICATE-----\n", tail[] = "-----END CERTIFICATE-----\n";
        size_t lines, cap;
        char *pem, *p;

        if ((!der && len) || len > CERTS_CERT_INFO_MAX_DER)
                return NULL;
        /* 48 bytes -> 64 base64 characters and a newline per line. */
        lines = (len + 47) / 48;
        cap = sizeof(head) + sizeof(tail) + lines * 66 + 1;
        pem = malloc(cap);
        if (!pem)
                return NULL;
        p = stpcpy(pem, head);
        for (size_t off = 0; off < len; off += 48) {
                size_t k = len - off < 48 ? len - off : 48;

                p += EVP_EncodeBlock((unsigned char *)p, der + off, (int)k);
                *p++ = '\n';
        }
        strcpy(p, tail);
        return pem;
}
