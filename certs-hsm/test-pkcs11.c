/* SPDX-License-Identifier: MIT */
/* The pkcs11: signer against SoftHSM2: a key generated in a fresh token signs
 * device certificates that OpenSSL verifies. Skipped when SoftHSM2/OpenSC or
 * libp11 support is missing. */

#include "config.h"

#include "test-util.h"

#include <pthread.h>

#include "certs-hsm/ca.h"
#include "certs-hsm/cert.h"
#include "certs-hsm/csr.h"
#include "certs-hsm/signer.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"

struct fixture {
        char *dir, *signer_pem, *uri_base;
        X509 *signer_cert;
};

static bool have_tools(void) {
        return HAVE_PKCS11 && access(MODULE, R_OK) == 0 && system("command -v softhsm2-util >/dev/null 2>&1") == 0 &&
               system("command -v pkcs11-tool >/dev/null 2>&1") == 0;
}

static void run(const char *fmt, ...) {
        char *cmd = NULL;
        va_list ap;
        va_start(ap, fmt);
        assert_true(vasprintf(&cmd, fmt, ap) > 0);
        va_end(ap);
        if (system(cmd) != 0)
                fail_msg("command failed: %s", cmd);
        free(cmd);
}

/* A certificate for @pub signed by the ca_init() root in @dir, with the given
 * basicConstraints and keyUsage. */
static X509 *make_ca_cert_for(const char *dir, EVP_PKEY *pub, const char *bc, const char *ku) {
        char *rk = t_path(dir, "root.key"), *rp = t_path(dir, "root.pem");
        X509 *root = t_load_cert(rp), *x = X509_new();
        FILE *fp = fopen(rk, "re");
        EVP_PKEY *root_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
        X509_NAME *name = X509_NAME_new();
        X509V3_CTX ctx;

        fclose(fp);
        assert_non_null(root_key);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"HSM signer", -1, -1, 0);
        assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
        X509_set_subject_name(x, name);
        X509_set_issuer_name(x, X509_get_subject_name(root));
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
        assert_int_equal(X509_set_pubkey(x, pub), 1);
        X509V3_set_ctx(&ctx, root, x, NULL, NULL, 0);
        const struct {
                int nid;
                const char *v;
        } exts[] = {
                { NID_basic_constraints, bc },
                { NID_key_usage, ku },
                { NID_subject_key_identifier, "hash" },
                { NID_authority_key_identifier, "keyid:always" },
        };
        for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
                X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].v);
                assert_non_null(e);
                X509_add_ext(x, e, -1);
                X509_EXTENSION_free(e);
        }
        assert_true(X509_sign(x, root_key, EVP_sha256()) > 0);
        X509_NAME_free(name);
        X509_free(root);
        EVP_PKEY_free(root_key);
        free(rk);
        free(rp);
        return x;
}

/* The signer certificate for the HSM's public key, signed by the ca_init() root. */
static X509 *make_signer_cert(const char *dir, EVP_PKEY *pub) {
        return make_ca_cert_for(dir, pub, "critical,CA:TRUE,pathlen:0", "critical,keyCertSign,cRLSign");
}

static int setup(void **state) {
        struct fixture *f;
        char *conf, *pubder;
        FILE *fp;

        if (!have_tools())
                return 0; /* each test skips */
        f = calloc(1, sizeof(*f));
        f->dir = t_tmpdir();
        conf = t_path(f->dir, "softhsm2.conf");
        fp = fopen(conf, "we");
        fprintf(fp, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", f->dir);
        fclose(fp);
        run("mkdir -p %s/tokens", f->dir);
        setenv("SOFTHSM2_CONF", conf, 1);
        run("softhsm2-util --init-token --free --label provd --pin 1234 --so-pin 5678 >/dev/null");
        run("pkcs11-tool --module " MODULE " --token-label provd --login --pin 1234 --keypairgen "
            "--key-type EC:prime256v1 --label signer --id 01 >/dev/null 2>&1");
        pubder = t_path(f->dir, "pub.der");
        run("pkcs11-tool --module " MODULE " --token-label provd --read-object --type pubkey --id 01 -o %s "
            ">/dev/null 2>&1",
            pubder);

        /* The public key, and a signer certificate for it under a file-based root. */
        fp = fopen(pubder, "rb");
        assert_non_null(fp);
        EVP_PKEY *pub = d2i_PUBKEY_fp(fp, NULL);
        fclose(fp);
        assert_non_null(pub);
        assert_int_equal(ca_init(f->dir, NULL), 0);
        f->signer_cert = make_signer_cert(f->dir, pub);
        EVP_PKEY_free(pub);
        f->signer_pem = t_path(f->dir, "hsm-signer.pem");
        fp = fopen(f->signer_pem, "we");
        PEM_write_X509(fp, f->signer_cert);
        fclose(fp);
        f->uri_base = strdup("pkcs11:token=provd;object=signer;id=%01;type=private?module-path=" MODULE);
        free(conf);
        free(pubder);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        if (!f)
                return 0;
        X509_free(f->signer_cert);
        free(f->signer_pem);
        free(f->uri_base);
        t_rmdir(f->dir);
        free(f);
        return 0;
}

#define NEED_HSM(state)                                                                 \
        do {                                                                            \
                if (!*(state)) {                                                        \
                        print_message("# SoftHSM2/OpenSC/libp11 not available: skipped\n"); \
                        skip();                                                         \
                }                                                                       \
        } while (0)

static void issue_and_verify(struct fixture *f, struct issuer *is, const char *cn) {
        EVP_PKEY *dev = t_key_ec("P-256");
        struct csr_info csr = {};
        struct issued_cert c = {};
        size_t len;
        uint8_t *der = t_csr(dev, cn, &len);
        char *pem = t_path(f->dir, "dev.pem");

        assert_int_equal(csr_parse_validate(der, len, cn, &csr), 0);
        assert_int_equal(issuer_issue(is, &csr, cn, &c), 0);
        const uint8_t *p = c.der;
        X509 *x = d2i_X509(NULL, &p, (long)c.der_len);
        assert_non_null(x);
        assert_int_equal(X509_verify(x, X509_get0_pubkey(f->signer_cert)), 1);
        X509_free(x);
        t_write_der_as_pem(pem, c.der, c.der_len);
        run("openssl verify -x509_strict -purpose sslclient -CAfile %s/root.pem -untrusted %s %s >/dev/null", f->dir,
            f->signer_pem, pem);
        issued_cert_done(&c);
        csr_info_done(&csr);
        EVP_PKEY_free(dev);
        free(der);
        free(pem);
}

static void test_issue(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        struct signer *s = NULL;
        struct issuer *is = NULL;

        assert_int_equal(signer_open(&s, f->uri_base, f->signer_pem, "1234"), 0);
        assert_string_equal(signer_backend(s), "pkcs11");
        assert_int_equal(issuer_new(&is, s, NULL), 0);
        issue_and_verify(f, is, "sn-hsm-0001");
        issue_and_verify(f, is, "sn-hsm-0002");
        issuer_free(is);
}

static void test_pin_sources(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        struct signer *s = NULL;
        char *uri = NULL, *pinfile = t_path(f->dir, "pin");
        FILE *fp;

        /* A PIN in the URI is refused, even a right one, and with a PIN given too. */
        assert_true(asprintf(&uri, "%s&pin-value=1234", f->uri_base) > 0);
        assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), -ENOTSUP);
        assert_int_equal(signer_open(&s, uri, f->signer_pem, "1234"), -ENOTSUP);
        assert_null(s);
        assert_non_null(strstr(signer_strerror(-ENOTSUP), "pin_file"));
        free(uri);

        fp = fopen(pinfile, "we");
        fputs("1234\n", fp);
        fclose(fp);
        assert_true(asprintf(&uri, "%s&pin-source=file:%s", f->uri_base, pinfile) > 0);
        /* The PIN file gets the key file's rule: no group/other bits, our own. */
        static const mode_t bad[] = { 0644, 0640, 0604, 0620, 0602, 0610, 0601 };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(chmod(pinfile, bad[i]), 0);
                assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), -EPERM);
                assert_null(s);
        }
        assert_int_equal(chmod(pinfile, 0600), 0);
        if (geteuid() == 0) {
                assert_int_equal(chown(pinfile, 65534, 65534), 0);
                assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), -EPERM);
                assert_int_equal(chown(pinfile, 0, 0), 0);
        }
        assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), 0);
        s = signer_free(s);
        free(uri);

        /* A systemd credential: $CREDENTIALS_DIRECTORY/NAME, same file rule. */
        char *creddir = t_path(f->dir, "creds"), *cred = t_path(f->dir, "creds/hsm-pin");
        assert_int_equal(mkdir(creddir, 0700), 0);
        fp = fopen(cred, "we");
        fputs("1234", fp);
        fclose(fp);
        assert_int_equal(chmod(cred, 0400), 0);
        assert_true(asprintf(&uri, "%s&pin-source=credential:hsm-pin", f->uri_base) > 0);
        unsetenv("CREDENTIALS_DIRECTORY");
        assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), -ENOENT);
        setenv("CREDENTIALS_DIRECTORY", creddir, 1);
        assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), 0);
        s = signer_free(s);
        free(uri);
        assert_true(asprintf(&uri, "%s&pin-source=credential:../pin", f->uri_base) > 0);
        assert_int_equal(signer_open(&s, uri, f->signer_pem, NULL), -EINVAL);
        free(uri);
        unsetenv("CREDENTIALS_DIRECTORY");
        free(creddir);
        free(cred);

        /* Module from the configuration parameter instead of the URI. */
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd;object=signer", f->signer_pem, "1234", MODULE), 0);
        s = signer_free(s);
        free(pinfile);
}

static void test_errors(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        struct signer *s = NULL;
        char *other = t_path(f->dir, "signer.pem");

        assert_int_equal(signer_open(&s, f->uri_base, f->signer_pem, "0000"), -EACCES);
        assert_int_equal(signer_open(&s, f->uri_base, f->signer_pem, NULL), -EACCES);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd;object=nokey", f->signer_pem, "1234", MODULE),
                         -ENOENT);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=other;object=signer", f->signer_pem, "1234", MODULE),
                         -ENOENT);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd;id=%02", f->signer_pem, "1234", MODULE), -ENOENT);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd;object=signer", f->signer_pem, "1234",
                                            "/nonexistent/module.so"),
                         -EIO);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd;frobnicate=1", f->signer_pem, "1234", MODULE),
                         -EINVAL);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd", f->signer_pem, "1234", MODULE), -EINVAL);
        assert_int_equal(signer_open_pkcs11(&s, "pkcs11:token=provd;id=%0", f->signer_pem, "1234", MODULE), -EINVAL);
        /* The file CA's signer certificate does not belong to the HSM key. */
        assert_int_equal(signer_open(&s, f->uri_base, other, "1234"), -EKEYREJECTED);
        assert_null(s);
        free(other);
}

/* Signer rotation / config reload: a second signer on the same module is opened
 * while the first is alive, then the first is freed; the second must keep working. */
static void test_two_signers(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        struct signer *a = NULL, *b = NULL;
        struct issuer *is = NULL;

        assert_int_equal(signer_open(&a, f->uri_base, f->signer_pem, "1234"), 0);
        assert_int_equal(signer_open(&b, f->uri_base, f->signer_pem, "1234"), 0);
        /* The token is logged in by now; a wrong or missing PIN must still fail. */
        struct signer *c = NULL;
        assert_int_equal(signer_open(&c, f->uri_base, f->signer_pem, "0000"), -EACCES);
        assert_int_equal(signer_open(&c, f->uri_base, f->signer_pem, NULL), -EACCES);
        assert_null(c);
        a = signer_free(a);
        assert_int_equal(issuer_new(&is, b, NULL), 0);
        issue_and_verify(f, is, "sn-after-rotation");
        /* And once more from scratch after everything was closed. */
        issuer_free(is);
        assert_int_equal(signer_open(&a, f->uri_base, f->signer_pem, "1234"), 0);
        assert_int_equal(issuer_new(&is, a, NULL), 0);
        issue_and_verify(f, is, "sn-reopened");
        issuer_free(is);
}

/* The same library under two module paths is one loaded module: the token is
 * logged in through the first, so only the login record can tell a wrong PIN
 * given through the second; and freeing the first must not finalise the
 * library under the second. */
static void test_module_alias(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        struct signer *a = NULL, *b = NULL, *c = NULL;
        struct issuer *is = NULL;
        char *alias = t_path(f->dir, "alias-softhsm2.so");
        const char *uri = "pkcs11:token=provd;object=signer";

        assert_int_equal(symlink(MODULE, alias), 0);
        assert_int_equal(signer_open_pkcs11(&a, uri, f->signer_pem, "1234", MODULE), 0);
        assert_int_equal(signer_open_pkcs11(&c, uri, f->signer_pem, "0000", alias), -EACCES);
        assert_int_equal(signer_open_pkcs11(&c, uri, f->signer_pem, NULL, alias), -EACCES);
        assert_null(c);
        assert_int_equal(signer_open_pkcs11(&b, uri, f->signer_pem, "1234", alias), 0);
        a = signer_free(a);
        assert_int_equal(issuer_new(&is, b, NULL), 0);
        issue_and_verify(f, is, "sn-alias");
        issuer_free(is);
        free(alias);
}

/* Every logged or stored form of a URI: no PIN, whatever its spelling. */
static int run_status(const char *fmt, ...) {
        char *cmd = NULL;
        va_list ap;
        va_start(ap, fmt);
        assert_true(vasprintf(&cmd, fmt, ap) > 0);
        va_end(ap);
        int r = system(cmd);
        free(cmd);
        return r;
}

static char *write_cert(const char *dir, const char *name, X509 *x) {
        char *path = t_path(dir, name);
        FILE *fp = fopen(path, "we");
        assert_non_null(fp);
        assert_int_equal(PEM_write_X509(fp, x), 1);
        fclose(fp);
        return path;
}

/* ca init --signer-uri: the key is made in the token, cannot leave it, signs
 * the CSR there; the offline root's certificate is checked on import. */
static void test_keygen_import(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        const char *uri = "pkcs11:token=provd;object=hsmsigner;id=%02?module-path=" MODULE;
        struct ca_hsm_key k, k2;
        char *csr_path = t_path(f->dir, "signer.csr"), *out = t_path(f->dir, "imported.pem");

        assert_int_equal(ca_hsm_keygen(uri, "1234", NULL, &k), 0);
        assert_true(k.sensitive);
        assert_false(k.extractable);
        assert_true(k.never_extractable);
        assert_true(k.always_sensitive);
        assert_true(k.token);
        assert_true(k.private_object);
        assert_false(k.value_readable);
        assert_int_equal(k.pubkey[0], 0x04);
        assert_int_equal(ca_hsm_keygen(uri, "1234", NULL, &k2), -EEXIST);
        assert_int_equal(ca_hsm_keygen(uri, "0000", NULL, &k2), -EACCES);
        assert_int_equal(ca_hsm_keygen("pkcs11:token=nosuch;object=x?module-path=" MODULE, "1234", NULL, &k2), -ENOENT);
        assert_int_equal(ca_hsm_keygen("pkcs11:object=x?module-path=" MODULE, "1234", NULL, &k2), -EINVAL);
        assert_int_equal(ca_hsm_keygen("pkcs11:token=provd;object=y?module-path=" MODULE "&pin-value=1234", NULL, NULL,
                                       &k2),
                         -ENOTSUP);
        assert_int_equal(ca_hsm_key_info(uri, "1234", NULL, &k2), 0);
        assert_memory_equal(k.pubkey, k2.pubkey, 65);

        /* The token says the same to another client: the private key cannot be
         * read out (OpenSC 0.23's pkcs11-tool says so and exits 0, writing
         * nothing; our CKA_VALUE read above is refused by the token), and its
         * attributes are sensitive / never extractable. */
        char *priv_out = t_path(f->dir, "priv.out");
        run_status("pkcs11-tool --module " MODULE " --token-label provd --login --pin 1234 --read-object --type privkey "
                   "--label hsmsigner -o %s >/dev/null 2>&1",
                   priv_out);
        assert_int_equal(access(priv_out, F_OK), -1);
        free(priv_out);
        assert_int_equal(run_status("pkcs11-tool --module " MODULE " --token-label provd --login --pin 1234 "
                                    "--list-objects --type privkey 2>/dev/null | grep -A8 hsmsigner | "
                                    "grep -q 'Access:.*sensitive.*never extractable'"),
                         0);

        /* The CSR is signed in the token, for the token's key. */
        assert_int_equal(ca_signer_csr_hsm(f->dir, &(struct ca_init_opts){ .signer_cn = "HSM signer 2" }, uri, "1234",
                                           NULL),
                         0);
        assert_int_equal(ca_signer_csr_hsm(f->dir, NULL, uri, "1234", NULL), -EEXIST);
        FILE *fp = fopen(csr_path, "re");
        X509_REQ *req = PEM_read_X509_REQ(fp, NULL, NULL, NULL);
        fclose(fp);
        assert_non_null(req);
        EVP_PKEY *pub = X509_REQ_get_pubkey(req);
        assert_int_equal(X509_REQ_verify(req, pub), 1);
        X509_REQ_free(req);

        /* The offline root signs; import checks everything before installing. */
        char *root_pem = t_path(f->dir, "root.pem");
        X509 *good = make_signer_cert(f->dir, pub);
        X509 *not_ca = make_ca_cert_for(f->dir, pub, "critical,CA:FALSE", "critical,digitalSignature");
        X509 *deep = make_ca_cert_for(f->dir, pub, "critical,CA:TRUE,pathlen:1", "critical,keyCertSign");
        X509 *no_ku = make_ca_cert_for(f->dir, pub, "critical,CA:TRUE,pathlen:0", "critical,digitalSignature");
        char *good_p = write_cert(f->dir, "good.pem", good), *not_ca_p = write_cert(f->dir, "notca.pem", not_ca),
             *deep_p = write_cert(f->dir, "deep.pem", deep), *no_ku_p = write_cert(f->dir, "noku.pem", no_ku);
        assert_int_equal(ca_signer_import(not_ca_p, root_pem, uri, "1234", NULL, out), -EDOM);
        assert_int_equal(ca_signer_import(deep_p, root_pem, uri, "1234", NULL, out), -EDOM);
        assert_int_equal(ca_signer_import(no_ku_p, root_pem, uri, "1234", NULL, out), -EDOM);
        /* The fixture's certificate is for the other key (id 01). */
        assert_int_equal(ca_signer_import(f->signer_pem, root_pem, uri, "1234", NULL, out), -EKEYREJECTED);
        /* A root that did not sign it. */
        char *other = t_tmpdir(), *other_root = t_path(other, "root.pem");
        assert_int_equal(ca_init(other, NULL), 0);
        assert_int_equal(ca_signer_import(good_p, other_root, uri, "1234", NULL, out), -EKEYREJECTED);
        assert_int_equal(access(out, F_OK), -1);
        assert_int_equal(ca_signer_import(good_p, root_pem, uri, "1234", NULL, out), 0);
        assert_int_equal(ca_signer_import(good_p, root_pem, uri, "1234", NULL, out), -EEXIST);

        /* And it signs device certificates that chain to the root. */
        struct signer *s = NULL;
        struct issuer *is = NULL;
        assert_int_equal(signer_open(&s, uri, out, "1234"), 0);
        assert_int_equal(signer_set_root(s, root_pem), 0);
        assert_int_equal(issuer_new(&is, s, NULL), 0);
        X509 *keep = f->signer_cert;
        char *keep_pem = f->signer_pem;
        f->signer_cert = good;
        f->signer_pem = out;
        issue_and_verify(f, is, "sn-imported");
        f->signer_cert = keep;
        f->signer_pem = keep_pem;
        issuer_free(is);

        t_rmdir(other);
        free(other_root);
        X509_free(good);
        X509_free(not_ca);
        X509_free(deep);
        X509_free(no_ku);
        free(good_p);
        free(not_ca_p);
        free(deep_p);
        free(no_ku_p);
        free(root_pem);
        EVP_PKEY_free(pub);
        free(csr_path);
        free(out);
}

static void test_redact(void **state) {
        (void)state;
        /* Every attribute that is not a known path attribute or module-path/module-name is
         * dropped: pin-value, pin-source (a PIN's location), unknown or misspelt keys. */
        static const struct {
                const char *in, *out;
        } v[] = {
                { "pkcs11:token=a;object=b?module-path=/m.so&pin-value=1234",
                  "pkcs11:token=a;object=b?module-path=/m.so" },
                { "pkcs11:token=a?pin-value=1234", "pkcs11:token=a" },
                { "pkcs11:token=a?pin%2Dvalue=1234&pin-source=/p", "pkcs11:token=a" },
                { "pkcs11:token=a?1234", "pkcs11:token=a" },
                { "pkcs11:token=a?&&x=1&", "pkcs11:token=a" },
                { "pkcs11:pin-value=1234;object=b", "pkcs11:object=b" },
                { "pkcs11:token=a;object=b", "pkcs11:token=a;object=b" },
                { "file:/etc/provd/signer.key", "file:/etc/provd/signer.key" },
        };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                char *r = signer_uri_redact(v[i].in);
                assert_non_null(r);
                assert_string_equal(r, v[i].out);
                assert_null(strstr(r, "1234"));
                free(r);
        }
        assert_null(signer_uri_redact(NULL));

        /* Never longer than the input, also for nothing but empty attributes. */
        char big[4000] = "pkcs11:a?";
        memset(big + 9, '&', sizeof(big) - 10);
        big[sizeof(big) - 1] = '\0';
        char *r = signer_uri_redact(big);
        assert_non_null(r);
        assert_true(strlen(r) <= strlen(big));
        free(r);
}

struct worker {
        struct issuer *is;
        X509 *signer_cert;
        struct csr_info *csr;
        int failures;
};

static void *worker(void *arg) {
        struct worker *w = arg;
        for (int i = 0; i < 20; i++) {
                struct issued_cert c = {};
                if (issuer_issue(w->is, w->csr, "sn-hsm-mt", &c) < 0) {
                        w->failures++;
                        continue;
                }
                const uint8_t *p = c.der;
                X509 *x = d2i_X509(NULL, &p, (long)c.der_len);
                if (!x || X509_verify(x, X509_get0_pubkey(w->signer_cert)) != 1)
                        w->failures++;
                X509_free(x);
                issued_cert_done(&c);
        }
        return NULL;
}

static void test_concurrent(void **state) {
        NEED_HSM(state);
        struct fixture *f = *state;
        struct signer *s = NULL;
        struct issuer *is = NULL;
        struct worker w[4] = {};
        pthread_t t[4];
        EVP_PKEY *dev = t_key_ec("P-256");
        struct csr_info csr = {};
        size_t len;
        uint8_t *der = t_csr(dev, "sn-hsm-mt", &len);

        assert_int_equal(csr_parse_validate(der, len, "sn-hsm-mt", &csr), 0);
        assert_int_equal(signer_open(&s, f->uri_base, f->signer_pem, "1234"), 0);
        assert_int_equal(issuer_new(&is, s, NULL), 0);
        for (int i = 0; i < 4; i++) {
                w[i] = (struct worker){ .is = is, .signer_cert = f->signer_cert, .csr = &csr };
                assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(w[i].failures, 0);
        }
        issuer_free(is);
        csr_info_done(&csr);
        EVP_PKEY_free(dev);
        free(der);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_issue, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pin_sources, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_two_signers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_module_alias, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_keygen_import, setup, teardown),
                cmocka_unit_test(test_redact),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
