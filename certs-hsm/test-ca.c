/* SPDX-License-Identifier: MIT */
/* CA tooling: ca_init() output, file modes, refusal to overwrite, signer CSR. */

#include "test-util.h"

#include <sys/stat.h>

#include <openssl/sha.h>

#include "certs-hsm/atecc.h"
#include "certs-hsm/ca.h"
#include "certs-hsm/csr.h"

static void check_ca_ext(X509 *x, bool root) {
        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);

        assert_non_null(bc);
        assert_int_equal(crit, 1);
        assert_true(bc->ca);
        if (root)
                assert_null(bc->pathlen);
        else {
                assert_non_null(bc->pathlen);
                assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
        }
        BASIC_CONSTRAINTS_free(bc);
        ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
        assert_non_null(ku);
        assert_int_equal(crit, 1);
        ASN1_BIT_STRING_free(ku);
        assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
        assert_non_null(X509_get0_subject_key_id(x));
        if (!root)
                assert_non_null(X509_get0_authority_key_id(x));
        assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
        assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(x)), 256);
        assert_int_equal(ASN1_STRING_length(X509_get0_serialNumber(x)), 16);
}

static void test_init(void **state) {
        char *dir = t_tmpdir(), *cmd = NULL;
        static const char *const names[] = { "root.key", "root.pem", "signer.key", "signer.pem" };
        static const mode_t modes[] = { 0600, 0644, 0600, 0644 };
        mode_t old = umask(0); /* must not matter */

        assert_int_equal(ca_init(dir, &(struct ca_init_opts){ .root_cn = "Test Root", .org = "Acme" }), 0);
        umask(old);
        for (size_t i = 0; i < 4; i++) {
                struct stat st;
                char *p = t_path(dir, names[i]);
                assert_int_equal(stat(p, &st), 0);
                assert_int_equal(st.st_mode & 07777, modes[i]);
                free(p);
        }
        char *rp = t_path(dir, "root.pem"), *sp = t_path(dir, "signer.pem");
        X509 *root = t_load_cert(rp), *signer = t_load_cert(sp);
        check_ca_ext(root, true);
        check_ca_ext(signer, false);
        assert_int_equal(X509_check_issued(root, root), X509_V_OK);
        assert_int_equal(X509_check_issued(root, signer), X509_V_OK);
        assert_int_equal(ASN1_STRING_cmp(X509_get0_authority_key_id(signer), X509_get0_subject_key_id(root)), 0);
        char buf[64];
        X509_NAME_get_text_by_NID(X509_get_subject_name(root), NID_commonName, buf, sizeof(buf));
        assert_string_equal(buf, "Test Root");

        /* openssl verify: root verifies itself, signer chains to root. */
        assert_true(asprintf(&cmd, "openssl verify -x509_strict -CAfile %s %s %s >/dev/null", rp, rp, sp) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        X509_free(root);
        X509_free(signer);
        free(rp);
        free(sp);
        t_rmdir(dir);
}

static void test_no_overwrite(void **state) {
        char *dir = t_tmpdir(), *cmd = NULL, *sum = t_path(dir, "sums");

        assert_int_equal(ca_init(dir, NULL), 0);
        assert_true(asprintf(&cmd, "cd %s && sha256sum root.key root.pem signer.key signer.pem > sums", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        assert_int_equal(ca_init(dir, NULL), -EEXIST);
        assert_true(asprintf(&cmd, "cd %s && sha256sum --quiet -c sums", dir) > 0);
        assert_int_equal(system(cmd), 0);
        free(cmd);

        /* Only one of the four present: nothing is written. */
        char *d2 = t_tmpdir(), *p = t_path(d2, "signer.pem");
        FILE *fp = fopen(p, "we");
        fclose(fp);
        assert_int_equal(ca_init(d2, NULL), -EEXIST);
        char *rk = t_path(d2, "root.key");
        assert_int_equal(access(rk, F_OK), -1);
        free(rk);
        free(p);
        t_rmdir(d2);

        assert_int_equal(ca_init("/nonexistent/dir", NULL), -ENOENT);
        assert_int_equal(ca_init(NULL, NULL), -EINVAL);
        assert_int_equal(ca_init(dir, &(struct ca_init_opts){ .root_cn = "" }), -EINVAL);
        free(sum);
        t_rmdir(dir);
}

static void test_signer_csr(void **state) {
        char *dir = t_tmpdir(), *p = NULL;
        struct stat st;
        FILE *fp;
        X509_REQ *req;

        assert_int_equal(ca_signer_csr(dir, &(struct ca_init_opts){ .signer_cn = "Line 3 signer" }), 0);
        assert_int_equal(ca_signer_csr(dir, NULL), -EEXIST);
        p = t_path(dir, "signer.key");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        free(p);
        p = t_path(dir, "signer.csr");
        fp = fopen(p, "re");
        assert_non_null(fp);
        req = PEM_read_X509_REQ(fp, NULL, NULL, NULL);
        fclose(fp);
        assert_non_null(req);
        assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);

        /* Our own validator sees the CA request too. */
        uint8_t *der = NULL;
        int n = i2d_X509_REQ(req, &der);
        struct csr_info info = {};
        assert_int_equal(csr_parse_validate(der, (size_t)n, "Line 3 signer", &info), 0);
        assert_true(info.requested_ca);
        csr_info_done(&info);
        OPENSSL_free(der);
        X509_REQ_free(req);
        free(p);
        t_rmdir(dir);
}

/* --compressed: the signer fits atcacert's compressed-signer limits. */
static void test_compressed_signer(void **state) {
        (void)state;
        char *dir = t_tmpdir(), *pem = t_path(dir, "signer.pem");
        X509 *x;
        struct tm nb, na;
        uint8_t point[65], enc[3], msg[67], h[32];
        size_t len = 0;
        char cn[80];

        assert_int_equal(ca_init(dir, &(struct ca_init_opts){ .compressed = true, .signer_id = 0x3b1f }), 0);
        x = t_load_cert(pem);
        assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &nb), 1);
        assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &na), 1);
        assert_int_equal(nb.tm_min, 0);
        assert_int_equal(nb.tm_sec, 0);
        assert_int_equal(na.tm_year - nb.tm_year, 31); /* 18250 days, capped at 31 whole years */
        assert_int_equal(na.tm_mon, nb.tm_mon);
        assert_int_equal(na.tm_mday, nb.tm_mday);
        assert_int_equal(na.tm_hour, nb.tm_hour);
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        assert_string_equal(cn, "provd signer CA 3B1F");

        /* Serial = SHA-256(X || Y || encoded dates), top bits 01. */
        assert_int_equal(EVP_PKEY_get_octet_string_param(X509_get0_pubkey(x), "encoded-pub-key", point,
                                                         sizeof(point), &len),
                         1);
        time_t a, b;
        assert_int_equal(cert_atecc_encode_dates(&nb, 31, enc, &a, &b), 0);
        memcpy(msg, point + 1, 64);
        memcpy(msg + 64, enc, 3);
        SHA256(msg, sizeof(msg), h);
        h[0] = (h[0] & 0x7f) | 0x40;
        const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
        assert_int_equal(ASN1_STRING_length(sn), 16);
        assert_memory_equal(ASN1_STRING_get0_data(sn), h, 16);
        X509_free(x);
        free(pem);
        t_rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_init),
                cmocka_unit_test(test_no_overwrite),
                cmocka_unit_test(test_signer_csr),
                cmocka_unit_test(test_compressed_signer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
