/* SPDX-License-Identifier: MIT */
/* Helpers shared by the certs-hsm unit tests: keys, CSRs and temp CAs made with OpenSSL. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline EVP_PKEY *t_key_ec(const char *curve) {
        EVP_PKEY *k = EVP_EC_gen(curve);
        assert_non_null(k);
        return k;
}

static inline EVP_PKEY *t_key_rsa(void) {
        EVP_PKEY *k = EVP_RSA_gen(2048);
        assert_non_null(k);
        return k;
}

/* Extra subject entries: NULL-terminated list of "TYPE=value". */
static inline uint8_t *t_csr_ex(EVP_PKEY *key, const char *cn, const char *bc, const EVP_MD *md,
                                const char *const *extra, size_t *ret_len) {
        X509_REQ *req = X509_REQ_new();
        X509_NAME *name = X509_NAME_new();
        uint8_t *der = NULL, *out;
        int n;

        assert_non_null(req);
        assert_non_null(name);
        for (const char *const *e = extra; e && *e; e++) {
                char buf[128];
                char *eq;
                snprintf(buf, sizeof(buf), "%s", *e);
                eq = strchr(buf, '=');
                assert_non_null(eq);
                *eq = '\0';
                assert_int_equal(X509_NAME_add_entry_by_txt(name, buf, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0), 1);
        }
        if (cn)
                assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
        assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
        assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
        if (bc) {
                STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
                X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, bc);
                assert_non_null(ext);
                sk_X509_EXTENSION_push(exts, ext);
                ext = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "critical,keyCertSign");
                assert_non_null(ext);
                sk_X509_EXTENSION_push(exts, ext);
                assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
                sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        }
        assert_true(X509_REQ_sign(req, key, md ? md : EVP_sha256()) > 0);
        n = i2d_X509_REQ(req, &der);
        assert_true(n > 0);
        out = malloc((size_t)n);
        assert_non_null(out);
        memcpy(out, der, (size_t)n);
        OPENSSL_free(der);
        X509_NAME_free(name);
        X509_REQ_free(req);
        *ret_len = (size_t)n;
        return out;
}

static inline uint8_t *t_csr(EVP_PKEY *key, const char *cn, size_t *ret_len) {
        return t_csr_ex(key, cn, NULL, NULL, NULL, ret_len);
}

/* A fresh temporary directory; remove with t_rmdir(). */
static inline char *t_tmpdir(void) {
        char *d = strdup("/tmp/certs-hsm-test-XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static inline void t_rmdir(char *d) {
        char cmd[512];
        if (!d)
                return;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
        assert_int_equal(system(cmd), 0);
        free(d);
}

static inline char *t_path(const char *dir, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static inline X509 *t_load_cert(const char *path) {
        FILE *f = fopen(path, "re");
        X509 *x;
        assert_non_null(f);
        x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
        assert_non_null(x);
        return x;
}

static inline void t_write_der_as_pem(const char *path, const uint8_t *der, size_t len) {
        const uint8_t *p = der;
        X509 *x = d2i_X509(NULL, &p, (long)len);
        FILE *f;
        assert_non_null(x);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(PEM_write_X509(f, x), 1);
        fclose(f);
        X509_free(x);
}

static inline void t_write_key(const char *path, EVP_PKEY *k, mode_t mode) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
        fclose(f);
        assert_int_equal(chmod(path, mode), 0);
}
