/* SPDX-License-Identifier: MIT */
/* Internals shared by the signer backends. */
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "certs-internal.h"

#define SIGNER_MAX_CHAIN 8
#define SIGNER_MAX_CERT_FILE (1024 * 1024)
#define SIGNER_MAX_KEY_FILE (64 * 1024)
#define SIGNER_PIN_MAX 256
#define SIGNER_URI_MAX 4096
#define SIGNER_MAX_URI 4096 /* the PKCS#11 parser's bound too (signer-pkcs11.c URI_MAX) */
#define SIGNER_MAX_NAME 2048 /* issuer Name DER we copy into every certificate */

DEFINE_TRIVIAL_CLEANUP_FUNC(X509 *, X509_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY_CTX *, EVP_PKEY_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free);

struct signer {
        const struct signer_ops *ops;
        void *userdata;
        const char *backend;

        uint8_t *cert_der;
        size_t cert_len;
        uint8_t *root_der; /* NULL if unknown */
        size_t root_len;
        uint8_t *subject_der; /* the signer's subject Name TLV = issuer of what it signs */
        size_t subject_len;
        uint8_t ski[64];
        size_t ski_len;
        uint8_t pubkey[65];
        time_t not_before, not_after; /* the signer certificate's validity */
};

/* An ASN1_TIME as seconds since 1970 (-EBADMSG if it does not convert). */
int certs_asn1_time(const ASN1_TIME *t, time_t *ret);

/* Wraps @userdata into a signer for @cert (borrowed) and, if given, @root
 * (borrowed). Takes @userdata: ops->free() is called on failure. Checks that the
 * certificate key is P-256 and proves with one signature that the backend's key
 * matches it (-EKEYREJECTED otherwise). */
int signer_new_internal(struct signer **ret, const struct signer_ops *ops, void *userdata, const char *backend,
                        X509 *cert, X509 *root);

/* Reads a PEM file holding the signer certificate, then optional issuers.
 * Every certificate block must parse (-EBADMSG) and the chain must verify up
 * to the last certificate (-EKEYREJECTED); *ret_root is that one if it is
 * self-signed, else NULL. */
int signer_load_chain(const char *path, X509 **ret_cert, X509 **ret_root);

/* Reads at most @max bytes of a regular file (or -EFBIG). */
int certs_read_file_bounded(int fd, size_t max, uint8_t **ret, size_t *ret_len);

/* EC public key (P-256 only) as an uncompressed point. */
int certs_pkey_p256_point(EVP_PKEY *pk, uint8_t ret[65]);

/* Opens only the key of a signer URI (no certificate): for CSRs and checks. */
int signer_open_key(const char *uri, const char *pin, const char *module_path, void **ret_userdata,
                    const struct signer_ops **ret_ops, const char **ret_backend);

int signer_file_open(const char *path, const char *passphrase, void **ret_userdata,
                     const struct signer_ops **ret_ops);
#if HAVE_PKCS11
/* What a pkcs11: URI names, for code that talks to the module itself (key generation). */
struct p11_target {
        char *token, *serial, *object, *module_path, *pin_source;
        uint8_t id[128];
        size_t id_len;
        bool has_id;
};
int signer_pkcs11_target(const char *uri, struct p11_target *ret);
void p11_target_done(struct p11_target *t);

/* The module that signer_pkcs11_open() would load for @uri's target. */
static inline const char *signer_pkcs11_module(const struct p11_target *t, const char *module_path) {
        return t->module_path ? t->module_path
               : module_path  ? module_path
               : secure_getenv("PROVD_PKCS11_MODULE") ? secure_getenv("PROVD_PKCS11_MODULE")
                                                       : "p11-kit-proxy.so";
}

int signer_pkcs11_open(const char *uri, const char *pin, const char *module_path, void **ret_userdata,
                       const struct signer_ops **ret_ops);
/* Parses a pkcs11: URI as signer_pkcs11_open() does, without loading anything (fuzzing): 0 or -EINVAL. */
int signer_pkcs11_uri_check(const char *uri);
#endif

/* A DER ECDSA-Sig-Value into r || s (32 bytes each). 0 or -EBADMSG. */
int certs_sig_der_to_raw(const uint8_t *der, size_t len, uint8_t out[64]);
