/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>

#include <openssl/err.h>

#include "certs-hsm/digest.h"

static EVP_MD *sha256, *sha1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fetch(void) {
        /* Kept for the life of the process, like OpenSSL's own EVP_sha256(). */
        sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        ERR_clear_error();
}

const EVP_MD *certs_md_sha256(void) {
        pthread_once(&once, fetch);
        return sha256 ? sha256 : EVP_sha256();
}

static const EVP_MD *md_sha1(void) {
        pthread_once(&once, fetch);
        return sha1 ? sha1 : EVP_sha1();
}

static int digest(const EVP_MD *md, const void *data, size_t len, uint8_t *ret, unsigned want) {
        unsigned n = 0;

        if (EVP_Digest(data, len, ret, &n, md, NULL) != 1 || n != want) {
                ERR_clear_error();
                return -EIO;
        }
        return 0;
}

int certs_sha256(const void *data, size_t len, uint8_t ret[32]) {
        return digest(certs_md_sha256(), data, len, ret, 32);
}

int certs_sha1(const void *data, size_t len, uint8_t ret[20]) {
        return digest(md_sha1(), data, len, ret, 20);
}
