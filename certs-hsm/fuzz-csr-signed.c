/* SPDX-License-Identifier: MIT */
/* Fuzz target: the input is a certificationRequestInfo; the harness signs it with
 * a fixed test key and wraps it into a CSR. When the info carries that key, the
 * signature verifies and the fuzzer reaches what a random CSR never does: the
 * CN rules, requested_ca, and everything after a good signature. Seeds in
 * tests/fuzz/csr-signed/ are infos that hold the key below (test-only key). */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "certs-hsm/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char test_key_pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmh8biZUlSFmpoT6G\n"
        "p0g8U8Kx+GqL2hmy5pWlsDn1QYWhRANCAAQZ963jRuAHoqWF8mYtPkOEpW/4Lr2N\n"
        "KJvexe7ixRvrK1demrPHrU9WXa+w7Bfy2iFpfnppxP1GiCbq8qiTkRZT\n"
        "-----END PRIVATE KEY-----\n";

static EVP_PKEY *test_key(void) {
        static EVP_PKEY *key;
        if (!key) {
                BIO *bio = BIO_new_mem_buf(test_key_pem, -1);
                key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
                BIO_free(bio);
                if (!key)
                        abort();
        }
        return key;
}

static uint8_t *put_hdr(uint8_t *p, uint8_t tag, size_t len) {
        *p++ = tag;
        if (len < 0x80)
                *p++ = (uint8_t)len;
        else if (len < 0x100) {
                *p++ = 0x81;
                *p++ = (uint8_t)len;
        } else {
                *p++ = 0x82;
                *p++ = (uint8_t)(len >> 8);
                *p++ = (uint8_t)len;
        }
        return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t alg[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
        uint8_t sig[80], *csr, *p;
        size_t siglen = sizeof(sig), content, total;
        struct csr_info info = {};
        EVP_MD_CTX *md;
        int r;

        if (size > CSR_MAX_DER)
                return 0;
        md = EVP_MD_CTX_new();
        if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, test_key()) != 1 ||
            EVP_DigestSign(md, sig, &siglen, data, size) != 1)
                abort();
        EVP_MD_CTX_free(md);

        content = size + sizeof(alg) + 2 + 1 + siglen; /* BIT STRING: 0x03, len (< 0x80), unused bits, sig */
        total = 4 + content;
        csr = malloc(total);
        if (!csr)
                return 0;
        p = put_hdr(csr, 0x30, content);
        memcpy(p, data, size);
        p += size;
        memcpy(p, alg, sizeof(alg));
        p += sizeof(alg);
        p = put_hdr(p, 0x03, 1 + siglen);
        *p++ = 0x00;
        memcpy(p, sig, siglen);
        p += siglen;

        r = csr_parse_validate(csr, (size_t)(p - csr), NULL, &info);
        if (r == 0) {
                char cn[CSR_CN_MAX + 1];
                struct csr_info again = {};
                if (!info.key || info.cn[0] == '\0' || strlen(info.cn) > CSR_CN_MAX)
                        abort();
                memcpy(cn, info.cn, sizeof(cn));
                if (csr_parse_validate(csr, (size_t)(p - csr), cn, &again) != 0)
                        abort();
                csr_info_done(&again);
                /* One byte more or less in the expectation is a mismatch. */
                cn[strlen(cn) - 1] ^= 0x01;
                if (csr_parse_validate(csr, (size_t)(p - csr), cn, &again) != -EPERM)
                        abort();
                csr_info_done(&info);
        } else if (r != -EMSGSIZE && r != -EBADMSG && r != -EKEYREJECTED && r != -EPROTONOSUPPORT && r != -EBADE &&
                   r != -EPERM)
                abort();
        free(csr);
        return 0;
}
