/* SPDX-License-Identifier: MIT */
/* The file: signer: key file permissions, key/certificate matching, URI forms. */

#include "test-util.h"

#include <sys/stat.h>

#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/signer.h"

struct fixture {
        char *dir, *key, *pem, *root, *chain;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        char *cmd = NULL;

        f->dir = t_tmpdir();
        assert_int_equal(ca_init(f->dir, NULL), 0);
        f->key = t_path(f->dir, "signer.key");
        f->pem = t_path(f->dir, "signer.pem");
        f->root = t_path(f->dir, "root.pem");
        f->chain = t_path(f->dir, "chain.pem");
        assert_true(asprintf(&cmd, "cat %s %s > %s", f->pem, f->root, f->chain) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        t_rmdir(f->dir);
        free(f->key);
        free(f->pem);
        free(f->root);
        free(f->chain);
        free(f);
        return 0;
}

static void test_key_mode(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        struct stat st;

        assert_int_equal(stat(f->key, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600); /* as ca_init() wrote it */

        static const mode_t bad[] = { 0640, 0604, 0620, 0602, 0610, 0601, 0644, 0660, 0666 };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(chmod(f->key, bad[i]), 0);
                assert_int_equal(signer_open(&s, f->key, f->pem, NULL), -EPERM);
                assert_null(s);
        }
        assert_non_null(strstr(signer_strerror(-EPERM), "group or others"));

        assert_int_equal(chmod(f->key, 0400), 0);
        assert_int_equal(signer_open(&s, f->key, f->pem, NULL), 0);
        s = signer_free(s);
        assert_int_equal(chmod(f->key, 0600), 0);

        /* Mode 0600 but another owner: that user has the key. Only root can
         * make such a file (and, with CAP_DAC_OVERRIDE, still open it). */
        if (geteuid() == 0) {
                assert_int_equal(chown(f->key, 65534, 65534), 0);
                assert_int_equal(signer_open(&s, f->key, f->pem, NULL), -EPERM);
                assert_null(s);
                assert_int_equal(chown(f->key, 0, 0), 0);
                assert_int_equal(signer_open(&s, f->key, f->pem, NULL), 0);
                s = signer_free(s);
        } else
                print_message("# not root: key owner check not exercised\n");
        assert_non_null(strstr(signer_strerror(-EPERM), "owned by"));
}

static void test_not_regular(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        char *fifo = t_path(f->dir, "fifo.key"), *sub = t_path(f->dir, "dir.key"), *missing = t_path(f->dir, "nope.key");

        assert_int_equal(mkfifo(fifo, 0600), 0);
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(signer_open(&s, fifo, f->pem, NULL), -EBADFD);
        assert_int_equal(signer_open(&s, sub, f->pem, NULL), -EBADFD);
        assert_int_equal(signer_open(&s, missing, f->pem, NULL), -ENOENT);
        assert_int_equal(signer_open(&s, f->key, missing, NULL), -ENOENT);
        assert_null(s);
        free(fifo);
        free(sub);
        free(missing);
}

static void test_uri_forms(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        char *uri = NULL;

        assert_true(asprintf(&uri, "file:%s", f->key) > 0);
        assert_int_equal(signer_open(&s, uri, f->pem, NULL), 0);
        s = signer_free(s);
        free(uri);
        assert_true(asprintf(&uri, "file://%s", f->key) > 0);
        assert_int_equal(signer_open(&s, uri, f->pem, NULL), 0);
        s = signer_free(s);
        free(uri);
        assert_int_equal(signer_open(&s, "file:relative.key", f->pem, NULL), -EINVAL);
        assert_int_equal(signer_open(&s, "relative.key", f->pem, NULL), -EINVAL);
        assert_int_equal(signer_open(&s, "tpm2:key", f->pem, NULL), -EPROTONOSUPPORT);
        assert_int_equal(signer_open(NULL, f->key, f->pem, NULL), -EINVAL);
        assert_null(s);
}

static void test_mismatch(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        char *other = t_path(f->dir, "other.key"), *rsa = t_path(f->dir, "rsa.key"), *junk = t_path(f->dir, "junk.key");
        EVP_PKEY *k = t_key_ec("P-256"), *r = t_key_rsa();
        FILE *fp;

        t_write_key(other, k, 0600);
        t_write_key(rsa, r, 0600);
        assert_int_equal(signer_open(&s, other, f->pem, NULL), -EKEYREJECTED);
        assert_int_equal(signer_open(&s, rsa, f->pem, NULL), -EKEYREJECTED);
        /* The root key with the signer certificate. */
        char *root_key = t_path(f->dir, "root.key");
        assert_int_equal(signer_open(&s, root_key, f->pem, NULL), -EKEYREJECTED);
        fp = fopen(junk, "we");
        fputs("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", fp);
        fclose(fp);
        chmod(junk, 0600);
        assert_int_equal(signer_open(&s, junk, f->pem, NULL), -EBADMSG);
        /* A key file as the certificate. */
        assert_int_equal(signer_open(&s, f->key, f->key, NULL), -EBADMSG);
        assert_null(s);
        EVP_PKEY_free(k);
        EVP_PKEY_free(r);
        free(other);
        free(rsa);
        free(junk);
        free(root_key);
}

static void test_encrypted_key(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        char *enc = t_path(f->dir, "enc.key"), *cmd = NULL;

        assert_true(asprintf(&cmd, "openssl pkey -in %s -aes256 -passout pass:s3cret -out %s && chmod 600 %s",
                             f->key, enc, enc) > 0);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(signer_open(&s, enc, f->pem, NULL), -EBADMSG);
        assert_int_equal(signer_open(&s, enc, f->pem, "wrong"), -EBADMSG);
        assert_int_equal(signer_open(&s, enc, f->pem, "s3cret"), 0);
        signer_free(s);
        free(cmd);
        free(enc);
}

static void test_chain_and_root(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        size_t len;

        /* signer.pem alone: no root known. */
        assert_int_equal(signer_open(&s, f->key, f->pem, NULL), 0);
        assert_null(signer_root_cert_der(s, &len));
        assert_int_equal(len, 0);
        assert_non_null(signer_cert_der(s, &len));
        assert_true(len > 100);
        assert_non_null(signer_ski(s, &len));
        assert_int_equal(len, 20);
        /* The signer is not a root; a foreign root did not sign it. */
        assert_int_equal(signer_set_root(s, f->pem), -EKEYREJECTED);
        char *dir2 = t_tmpdir(), *root2 = t_path(dir2, "root.pem");
        assert_int_equal(ca_init(dir2, NULL), 0);
        assert_int_equal(signer_set_root(s, root2), -EKEYREJECTED);
        assert_int_equal(signer_set_root(s, f->root), 0);
        assert_non_null(signer_root_cert_der(s, &len));
        s = signer_free(s);

        /* chain.pem = signer + root. */
        assert_int_equal(signer_open(&s, f->key, f->chain, NULL), 0);
        assert_non_null(signer_root_cert_der(s, &len));
        s = signer_free(s);

        /* signer + a root that did not sign it. */
        char *bad = t_path(f->dir, "badchain.pem"), *cmd = NULL;
        assert_true(asprintf(&cmd, "cat %s %s > %s", f->pem, root2, bad) > 0);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(signer_open(&s, f->key, bad, NULL), -EKEYREJECTED);
        free(cmd);
        free(bad);
        free(root2);
        t_rmdir(dir2);
}

/* Writes the files and literal texts in @parts (a NULL-terminated list; an
 * entry starting with '/' is a file) one after the other to @path. */
static void write_concat(const char *path, const char *const *parts) {
        FILE *out = fopen(path, "we");
        assert_non_null(out);
        for (const char *const *p = parts; *p; p++) {
                if ((*p)[0] != '/') {
                        fputs(*p, out);
                        continue;
                }
                FILE *in = fopen(*p, "re");
                char buf[4096];
                size_t n;
                assert_non_null(in);
                while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                        assert_int_equal(fwrite(buf, 1, n, out), n);
                fclose(in);
        }
        assert_int_equal(fclose(out), 0);
}

/* A device certificate and key signed by the fixture's signer, as PEM files. */
static void make_device(struct fixture *f, const char *cert_path, const char *key_path) {
        struct signer *s = NULL;
        struct issuer *is = NULL;
        struct csr_info csr = {};
        struct issued_cert c = {};
        EVP_PKEY *k = t_key_ec("P-256");
        size_t len;
        uint8_t *der = t_csr(k, "dev-1", &len);

        assert_int_equal(signer_open(&s, f->key, f->pem, NULL), 0);
        assert_int_equal(issuer_new(&is, s, NULL), 0);
        assert_int_equal(csr_parse_validate(der, len, "dev-1", &csr), 0);
        assert_int_equal(issuer_issue(is, &csr, "dev-1", &c), 0);
        t_write_der_as_pem(cert_path, c.der, c.der_len);
        t_write_key(key_path, k, 0600);
        issued_cert_done(&c);
        csr_info_done(&csr);
        issuer_free(is);
        EVP_PKEY_free(k);
        free(der);
}

/* Every certificate block in the chain file is parsed, and the chain is
 * verified up to its last certificate whether or not that one is a root. */
static void test_chain_file(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        size_t len;
        char *dir2 = t_tmpdir(), *signer2 = t_path(dir2, "signer.pem"), *chain = t_path(f->dir, "test-chain.pem"),
             *dev = t_path(f->dir, "dev.pem"), *dev_key = t_path(f->dir, "dev.key");
        static const char bad_base64[] = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        static const char not_a_cert[] = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";

        assert_int_equal(ca_init(dir2, NULL), 0);

        /* Text around the blocks is fine. */
        write_concat(chain, (const char *const[]){ "signer:\n", f->pem, "\nroot:\n", f->root, "end\n", NULL });
        assert_int_equal(signer_open(&s, f->key, chain, NULL), 0);
        assert_non_null(signer_root_cert_der(s, &len));
        s = signer_free(s);

        /* A corrupt block anywhere after the signer certificate is an error, not
         * the end of the chain. */
        write_concat(chain, (const char *const[]){ f->pem, bad_base64, f->root, NULL });
        assert_int_equal(signer_open(&s, f->key, chain, NULL), -EBADMSG);
        write_concat(chain, (const char *const[]){ f->pem, f->root, bad_base64, NULL });
        assert_int_equal(signer_open(&s, f->key, chain, NULL), -EBADMSG);
        write_concat(chain, (const char *const[]){ f->pem, not_a_cert, NULL });
        assert_int_equal(signer_open(&s, f->key, chain, NULL), -EBADMSG);
        write_concat(chain, (const char *const[]){ f->pem, "-----BEGIN CERTIFICATE-----\nMAA=\n", NULL });
        assert_int_equal(signer_open(&s, f->key, chain, NULL), -EBADMSG);
        assert_null(s);

        /* Last certificate not self-signed: verified up to it, no root known. */
        write_concat(chain, (const char *const[]){ f->pem, signer2, NULL });
        assert_int_equal(signer_open(&s, f->key, chain, NULL), -EKEYREJECTED);
        assert_null(s);
        make_device(f, dev, dev_key);
        write_concat(chain, (const char *const[]){ dev, f->pem, NULL });
        assert_int_equal(signer_open(&s, dev_key, chain, NULL), 0);
        assert_null(signer_root_cert_der(s, &len));
        s = signer_free(s);
        write_concat(chain, (const char *const[]){ dev, f->pem, f->root, NULL });
        assert_int_equal(signer_open(&s, dev_key, chain, NULL), 0);
        assert_non_null(signer_root_cert_der(s, &len));
        s = signer_free(s);
        write_concat(chain, (const char *const[]){ dev, signer2, NULL });
        assert_int_equal(signer_open(&s, dev_key, chain, NULL), -EKEYREJECTED);
        assert_null(s);

        free(signer2);
        free(chain);
        free(dev);
        free(dev_key);
        t_rmdir(dir2);
}

static void test_sign(void **state) {
        struct fixture *f = *state;
        struct signer *s = NULL;
        uint8_t digest[32] = { 1, 2, 3 }, sig[SIGNER_SIG_MAX];
        size_t len = 0;
        X509 *cert = t_load_cert(f->pem);
        EVP_PKEY_CTX *ctx;

        assert_int_equal(signer_open(&s, f->key, f->pem, NULL), 0);
        assert_int_equal(signer_sign(s, digest, sig, &len), 0);
        ctx = EVP_PKEY_CTX_new(X509_get0_pubkey(cert), NULL);
        assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
        assert_int_equal(EVP_PKEY_verify(ctx, sig, len, digest, 32), 1);
        digest[0] ^= 1;
        assert_int_not_equal(EVP_PKEY_verify(ctx, sig, len, digest, 32), 1);
        EVP_PKEY_CTX_free(ctx);
        X509_free(cert);
        assert_null(signer_free(s));
        assert_null(signer_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_key_mode, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_regular, setup, teardown),
                cmocka_unit_test_setup_teardown(test_uri_forms, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mismatch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_encrypted_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chain_and_root, setup, teardown),
                cmocka_unit_test_setup_teardown(test_chain_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sign, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
