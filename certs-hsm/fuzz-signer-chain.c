/* SPDX-License-Identifier: MIT */
/* Fuzz target: the signer certificate file reader (signer_load_chain()) and what signer setup does with its result. */

/*
 * Input: the content of the certificate file (PEM, the signer certificate
 * then its issuers), given to the reader as a memfd through /proc/self/fd.
 * Checks: an accepted chain has a certificate; a root it reports is
 * self-signed and the first certificate verifies up to it; loading the same
 * file twice gives the same certificate; a custom signer can be built on any
 * accepted P-256 certificate and, given the same file as its root, accepts
 * it only if the certificate is self-signed.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certs-hsm/signer.h"
#include "signer-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what) {
        if (!ok) {
                fprintf(stderr, "fuzz-signer-chain: %s\n", what);
                abort();
        }
}

/* The keys of the seed corpus's signer and root (tests/fuzz/signer-chain/, test keys only): a
 * certificate with one of them passes the self-test, so signer_set_root() is reached too. */
static const char *const seed_keys[] = {
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIIQLfTZIAMAYesdOfQG+ymAW8Gjh1V+AGJ2FMEuFELF0oAoGCCqGSM49\n"
        "AwEHoUQDQgAEWydnEqUaU2sQGomi5d6ipOkQxlN92Tp+ZyXH9rE/w/+DvkF6/AR7\n"
        "Ewj/svLBYfb0y4aegoTHBkJ7IJW8uuI8RA==\n"
        "-----END EC PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIOc6au+cwGejRHFDTOoQNm4eApfKV/dYROYsYYWR6mqDoAoGCCqGSM49\n"
        "AwEHoUQDQgAELAC1d2caYPGa9v5OaYu0daOV3rFUisWFLyu52V+h94Bom510sVT5\n"
        "LJQKArajn+2YXGJlt49i5fi0HsX2RAcWVA==\n"
        "-----END EC PRIVATE KEY-----\n",
};

static int seed_sign(void *userdata, const uint8_t digest[32], uint8_t sig[SIGNER_SIG_MAX], size_t *ret_len) {
        EVP_PKEY_CTX *ctx;
        size_t len = SIGNER_SIG_MAX;
        int r = -ENOTSUP;

        if (!userdata)
                return -ENOTSUP;
        ctx = EVP_PKEY_CTX_new(userdata, NULL);
        if (ctx && EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_sign(ctx, sig, &len, digest, 32) == 1) {
                *ret_len = len;
                r = 0;
        }
        EVP_PKEY_CTX_free(ctx);
        return r;
}

/* The seed key that matches @cert, or NULL. */
static EVP_PKEY *seed_key(X509 *cert) {
        static EVP_PKEY *k[ELEMENTSOF(seed_keys)];

        for (size_t i = 0; i < ELEMENTSOF(seed_keys); i++) {
                if (!k[i]) {
                        BIO *b = BIO_new_mem_buf(seed_keys[i], -1);
                        k[i] = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
                        BIO_free(b);
                        check(k[i] != NULL, "seed key");
                }
                if (X509_get0_pubkey(cert) && EVP_PKEY_eq(k[i], X509_get0_pubkey(cert)) == 1)
                        return k[i];
        }
        ERR_clear_error();
        return NULL;
}

static void no_free(void *userdata) {
}

static const struct signer_ops ops = { .sign = seed_sign, .free = no_free };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        X509 *cert = NULL, *root = NULL, *again = NULL;
        char path[64];
        int fd, r;

        if (size > SIGNER_MAX_CERT_FILE + 16)
                return 0;
        fd = memfd_create("fuzz-chain", MFD_CLOEXEC);
        check(fd >= 0, "memfd_create");
        check(size == 0 || write(fd, data, size) == (ssize_t)size, "write");
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        r = signer_load_chain(path, &cert, &root);
        if (r < 0) {
                check(r == -EBADMSG || r == -EKEYREJECTED || r == -EFBIG || r == -ENOMEM, "unexpected error");
                check(!cert && !root, "output written on failure");
                goto out;
        }
        check(cert != NULL, "no certificate");
        if (root)
                check(X509_check_issued(root, root) == X509_V_OK, "root is not self-signed");
        check(signer_load_chain(path, &again, NULL) == 0 && X509_cmp(cert, again) == 0, "not deterministic");

        {
                struct signer *s = NULL;
                unsigned char *der = NULL;
                int n = i2d_X509(cert, &der);

                check(n > 0, "i2d_X509");
                r = signer_new_ops(&s, &ops, seed_key(cert), der, (size_t)n);
                OPENSSL_free(der);
                if (r == 0) {
                        size_t len;
                        check(signer_cert_der(s, &len) && len == (size_t)n, "certificate not kept");
                        check(signer_ski(s, &len) && len > 0, "no SKI");
                        r = signer_set_root(s, path);
                        /* The file's first certificate is the root candidate: only a self-signed one is. */
                        if (r == 0)
                                check(X509_check_issued(cert, cert) == X509_V_OK,
                                      "accepted a root that is not self-signed");
                        signer_free(s);
                } else
                        check(r == -EKEYREJECTED || r == -EBADMSG || r == -ENOTSUP || r == -ENOMEM,
                              "unexpected signer_new_ops() error"), (void)0;
        }
out:
        X509_free(cert);
        X509_free(root);
        X509_free(again);
        ERR_clear_error();
        close(fd);
        return 0;
}
