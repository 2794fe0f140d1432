/* SPDX-License-Identifier: MIT */
/* Unit tests: a simulated board's secure element (CSR, proof, lock, faults) and its state files. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "board.h"

static struct seed test_seed;

static int setup(void **state) {
        seed_from_string(&test_seed, "test-board");
        return board_crypto_init();
}

static int teardown(void **state) {
        board_crypto_deinit();
        return 0;
}

static X509_REQ *csr_of(struct board *b, bool new_key) {
        static uint8_t der[4096];
        size_t len = 0;
        const unsigned char *p = der;
        X509_REQ *req;

        assert_int_equal(board_get_csr(b, new_key, NULL, 0, der, sizeof(der), &len), 0);
        assert_in_range(len, 100, sizeof(der));
        req = d2i_X509_REQ(NULL, &p, (long)len);
        assert_non_null(req);
        assert_ptr_equal(p, der + len);         /* nothing after the CSR */
        return req;
}

static void req_pubkey(X509_REQ *req, uint8_t out[SP_PUBKEY_LEN]) {
        size_t len = 0;

        assert_int_equal(EVP_PKEY_get_octet_string_param(X509_REQ_get0_pubkey(req), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                         out, SP_PUBKEY_LEN, &len),
                         1);
        assert_int_equal(len, SP_PUBKEY_LEN);
}

static void req_cn(X509_REQ *req, char *cn, size_t cap) {
        assert_true(X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, (int)cap) > 0);
}

static bool req_asks_ca(X509_REQ *req) {
        STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
        bool ca = false;

        for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts); i++) {
                X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
                if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_basic_constraints) {
                        BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
                        assert_non_null(bc);
                        ca = bc->ca;
                        assert_true(X509_EXTENSION_get_critical(e));
                        BASIC_CONSTRAINTS_free(bc);
                }
        }
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        return ca;
}

static void test_identity(void **state) {
        struct board b;
        struct spb_identity id;

        assert_int_equal(board_init(&b, &test_seed, 3, 0, NULL, NULL), 0);
        assert_int_equal(board_identify(&b, &id), 0);
        assert_int_equal(id.serial_len, 9);
        assert_int_equal(id.serial[0], 0x01);
        assert_int_equal(id.serial[1], 0x23);
        assert_int_equal(id.serial[8], 0xee);
        assert_string_equal(id.model, "boardsim");
        assert_int_equal(id.caps, SP_CAP_KEYGEN | SP_CAP_LOCK | SP_CAP_WIFI);
        assert_null(id.pubkey);                 /* no key before the first GET_CSR */
        assert_false(id.locked);
        assert_int_equal(strlen(b.serial_hex), 18);
        for (size_t i = 0; i < 18; i++)
                assert_non_null(strchr("0123456789ABCDEF", b.serial_hex[i]));
        board_deinit(&b);
}

static void test_csr(void **state) {
        struct board b, again;
        struct spb_identity id;
        uint8_t pub[SP_PUBKEY_LEN], pub2[SP_PUBKEY_LEN];
        char cn[64];
        X509_REQ *req;

        assert_int_equal(board_init(&b, &test_seed, 1, 0, NULL, NULL), 0);
        {
                uint8_t der[1024];
                size_t len = 0;
                /* Spec 6.2: no key yet and no NEW_KEY: NO_KEY, and still no key afterwards. */
                assert_int_equal(board_get_csr(&b, false, NULL, 0, der, sizeof(der), &len), SP_ERR_NO_KEY);
                assert_int_equal(board_identify(&b, &id), 0);
                assert_null(id.pubkey);
        }
        req = csr_of(&b, true);                 /* NEW_KEY: one is made */
        assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
        assert_int_equal(X509_REQ_get_version(req), 0);
        req_pubkey(req, pub);
        assert_memory_equal(pub, b.pubkey, sizeof(pub));
        req_cn(req, cn, sizeof(cn));
        assert_string_equal(cn, b.serial_hex);
        assert_false(req_asks_ca(req));
        assert_true(b.key_slow);
        assert_int_equal(board_identify(&b, &id), 0);
        assert_non_null(id.pubkey);
        assert_memory_equal(id.pubkey, pub, sizeof(pub));
        X509_REQ_free(req);

        /* Without NEW_KEY: same key. */
        req = csr_of(&b, false);
        assert_false(b.key_slow);
        req_pubkey(req, pub2);
        assert_memory_equal(pub, pub2, sizeof(pub));
        assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
        X509_REQ_free(req);

        /* NEW_KEY: another key, still a valid CSR. */
        req = csr_of(&b, true);
        req_pubkey(req, pub2);
        assert_memory_not_equal(pub, pub2, sizeof(pub));
        assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
        X509_REQ_free(req);

        /* The same seed and slot give the same first key. */
        assert_int_equal(board_init(&again, &test_seed, 1, 0, NULL, NULL), 0);
        req = csr_of(&again, true);
        req_pubkey(req, pub2);
        assert_memory_equal(pub, pub2, sizeof(pub));
        X509_REQ_free(req);

        board_deinit(&again);
        board_deinit(&b);
}

static void test_csr_too_small(void **state) {
        struct board b;
        uint8_t der[64];
        size_t len = 0;

        assert_int_equal(board_init(&b, &test_seed, 1, 0, NULL, NULL), 0);
        assert_int_equal(board_get_csr(&b, true, NULL, 0, der, sizeof(der), &len), SP_ERR_TOO_LARGE);
        assert_int_equal(len, 0);
        board_deinit(&b);
}

static void test_csr_faults(void **state) {
        struct board b;
        char cn[64];
        X509_REQ *req;

        assert_int_equal(board_init(&b, &test_seed, 2, 0, NULL, NULL), 0);
        b.fault_badsig = true;
        req = csr_of(&b, true);
        assert_int_not_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
        X509_REQ_free(req);

        b.fault_badsig = false;
        b.fault_cn = true;
        req = csr_of(&b, false);
        assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
        req_cn(req, cn, sizeof(cn));
        assert_int_equal(strlen(cn), 18);
        assert_string_not_equal(cn, b.serial_hex);
        X509_REQ_free(req);

        b.fault_cn = false;
        b.fault_ca = true;
        req = csr_of(&b, false);
        assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
        assert_true(req_asks_ca(req));
        X509_REQ_free(req);
        board_deinit(&b);
}

static bool verify_proof(const uint8_t pub[SP_PUBKEY_LEN], const uint8_t nonce[32], const uint8_t hash[32],
                         const uint8_t sig[64]) {
        EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        OSSL_PARAM params[] = {
                OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)SN_X9_62_prime256v1, 0),
                OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, SP_PUBKEY_LEN),
                OSSL_PARAM_END,
        };
        EVP_PKEY *k = NULL;
        ECDSA_SIG *es = ECDSA_SIG_new();
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint8_t msg[64], der[80];
        unsigned char *p = der;
        int len;
        bool ok;

        assert_int_equal(EVP_PKEY_fromdata_init(kctx), 1);
        assert_int_equal(EVP_PKEY_fromdata(kctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
        assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)), 1);
        len = i2d_ECDSA_SIG(es, &p);
        memcpy(msg, nonce, 32);
        memcpy(msg + 32, hash, 32);
        ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestVerify(md, der, (size_t)len, msg, sizeof(msg)) == 1;
        EVP_MD_CTX_free(md);
        ECDSA_SIG_free(es);
        EVP_PKEY_free(k);
        EVP_PKEY_CTX_free(kctx);
        return ok;
}

static void test_prove_and_lock(void **state) {
        static const uint8_t cert[] = "not really a certificate, the board does not parse it";
        struct board b;
        struct spb_certs certs = { .device = cert, .device_len = sizeof(cert) };
        uint8_t nonce[32], hash[32], sig[64], want[32], der[1024];
        unsigned hlen = sizeof(want);
        size_t len;

        memset(nonce, 0xa5, sizeof(nonce));
        assert_int_equal(board_init(&b, &test_seed, 4, 0, NULL, NULL), 0);
        assert_int_equal(board_prove(&b, nonce, hash, sig), SP_ERR_NO_KEY);
        assert_int_equal(board_lock(&b), SP_ERR_NO_KEY);
        assert_int_equal(board_get_csr(&b, true, NULL, 0, der, sizeof(der), &len), 0);
        assert_int_equal(board_prove(&b, nonce, hash, sig), SP_ERR_NO_CERT);

        assert_int_equal(board_store_certs(&b, &certs), 0);
        assert_int_equal(board_prove(&b, nonce, hash, sig), 0);
        assert_int_equal(EVP_Digest(cert, sizeof(cert), want, &hlen, EVP_sha256(), NULL), 1);
        assert_memory_equal(hash, want, sizeof(want));
        assert_true(verify_proof(b.pubkey, nonce, hash, sig));
        nonce[0] ^= 1;
        assert_false(verify_proof(b.pubkey, nonce, hash, sig));

        assert_int_equal(board_store_config(&b, "wifi_psk", 8, (const uint8_t *)"pw", 2), 0);
        assert_int_equal(board_lock(&b), 0);
        assert_int_equal(board_lock(&b), 0);
        assert_true(b.locked);
        assert_int_equal(board_get_csr(&b, true, NULL, 0, der, sizeof(der), &len), SP_ERR_LOCKED);
        assert_int_equal(board_get_csr(&b, false, NULL, 0, der, sizeof(der), &len), 0);
        assert_int_equal(board_store_certs(&b, &certs), SP_ERR_LOCKED);
        assert_int_equal(board_store_config(&b, "wifi_psk", 8, (const uint8_t *)"x", 1), 0);   /* PROTOCOL.md: PUT_CONFIG still works after LOCK */
        assert_int_equal(board_prove(&b, nonce, hash, sig), 0);         /* proving still works */
        board_deinit(&b);
}

static void test_config(void **state) {
        struct board b;
        char big[BOARD_CFG_VALUE_MAX + 1];
        char key[8];

        assert_int_equal(board_init(&b, &test_seed, 5, 0, NULL, NULL), 0);
        assert_int_equal(board_store_config(&b, "thing_name", 10, (const uint8_t *)"t1", 2), 0);
        assert_int_equal(board_store_config(&b, "thing_name", 10, (const uint8_t *)"t2", 2), 0);  /* replaces */
        assert_int_equal(b.n_cfg, 1);
        assert_memory_equal(b.cfg[0].value, "t2", 2);
        assert_int_equal(board_store_config(&b, "empty", 5, NULL, 0), 0);
        assert_int_equal(board_store_config(&b, "bad key", 7, (const uint8_t *)"v", 1), SP_ERR_BAD_PAYLOAD);
        assert_int_equal(board_store_config(&b, "a=b", 3, (const uint8_t *)"v", 1), SP_ERR_BAD_PAYLOAD);
        assert_int_equal(board_store_config(&b, "", 0, (const uint8_t *)"v", 1), SP_ERR_BAD_PAYLOAD);
        memset(big, 'x', sizeof(big));
        assert_int_equal(board_store_config(&b, "big", 3, (const uint8_t *)big, sizeof(big)), SP_ERR_TOO_LARGE);
        for (unsigned i = 0; b.n_cfg < BOARD_CFG_MAX; i++) {
                snprintf(key, sizeof(key), "k%u", i);
                assert_int_equal(board_store_config(&b, key, strlen(key), (const uint8_t *)"v", 1), 0);
        }
        assert_int_equal(board_store_config(&b, "onemore", 7, (const uint8_t *)"v", 1), SP_ERR_STORAGE);
        board_deinit(&b);
}

static void test_escape(void **state) {
        static const uint8_t value[] = { 'a', '=', '\\', '\n', 0x00, 0xff, ' ', '~' };
        char text[64];
        uint8_t back[16];
        size_t n;

        n = board_cfg_escape(value, sizeof(value), text, sizeof(text));
        assert_int_equal(n, strlen(text));
        assert_string_equal(text, "a=\\x5c\\x0a\\x00\\xff ~");
        assert_int_equal(board_cfg_unescape(text, n, back, sizeof(back)), (int)sizeof(value));
        assert_memory_equal(back, value, sizeof(value));

        assert_int_equal(board_cfg_unescape("\\x4", 3, back, sizeof(back)), -EBADMSG);
        assert_int_equal(board_cfg_unescape("\\y41", 4, back, sizeof(back)), -EBADMSG);
        assert_int_equal(board_cfg_unescape("\\xzz", 4, back, sizeof(back)), -EBADMSG);
        assert_int_equal(board_cfg_unescape("\\", 1, back, sizeof(back)), -EBADMSG);
        assert_int_equal(board_cfg_unescape("abc", 3, back, 2), -ENOBUFS);
        /* Escaping into a small buffer cuts at a character boundary. */
        n = board_cfg_escape(value, sizeof(value), text, 5);
        assert_string_equal(text, "a=");
}

static bool file_exists(const char *dir, const char *name) {
        char path[1024];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return stat(path, &st) == 0;
}

static void test_state_roundtrip(void **state) {
        static const uint8_t cert[300] = { 0x30, 0x82, 0x01, 0x28 };
        static const uint8_t signer[200] = { 0x30, 0x81, 0xc5 };
        static const uint8_t psk[] = { 's', '3', 'c', '\n', 0 };
        char tmpl[] = "/tmp/boardsim-test-XXXXXX", dir[64];
        uint8_t root[SP_PUBKEY_LEN] = { 0x04, 1, 2, 3 }, der[1024], nonce[32] = { 1 }, h1[32], h2[32], s1[64], s2[64];
        struct spb_certs certs = { .device = cert, .device_len = sizeof(cert), .signer = signer,
                                   .signer_len = sizeof(signer), .root_pubkey = root };
        struct board b, l;
        size_t len;

        assert_non_null(mkdtemp(tmpl));
        snprintf(dir, sizeof(dir), "%s/board-007", tmpl);

        assert_int_equal(board_init(&b, &test_seed, 7, 2, NULL, dir), 0);
        assert_int_equal(board_save(&b), 0);
        assert_true(file_exists(dir, "serial"));
        assert_false(file_exists(dir, "key.pem"));
        assert_int_equal(board_get_csr(&b, true, NULL, 0, der, sizeof(der), &len), 0);
        assert_int_equal(board_store_certs(&b, &certs), 0);
        assert_int_equal(board_store_config(&b, "wifi_psk", 8, psk, sizeof(psk)), 0);
        assert_int_equal(board_store_config(&b, "thing_name", 10, (const uint8_t *)b.serial_hex, 18), 0);
        assert_int_equal(board_lock(&b), 0);
        assert_int_not_equal(b.dirty, 0);
        assert_int_equal(board_save(&b), 0);
        assert_int_equal(b.dirty, 0);
        assert_true(file_exists(dir, "key.pem"));
        assert_true(file_exists(dir, "device.der"));
        assert_true(file_exists(dir, "signer.der"));
        assert_true(file_exists(dir, "root_pubkey"));
        assert_true(file_exists(dir, "config"));
        assert_true(file_exists(dir, "locked"));
        assert_false(file_exists(dir, ".config.tmp"));

        /* A restarted simulator finds the same board. */
        assert_int_equal(board_init(&l, &test_seed, 7, 0, NULL, dir), 0);
        assert_int_equal(board_load(&l), 0);
        assert_string_equal(l.serial_hex, b.serial_hex);
        assert_int_equal(l.gen, 2);
        assert_int_equal(l.keyno, 1);
        assert_true(l.locked);
        assert_non_null(l.key);
        assert_memory_equal(l.pubkey, b.pubkey, SP_PUBKEY_LEN);
        assert_int_equal(l.device_len, sizeof(cert));
        assert_memory_equal(l.device, cert, sizeof(cert));
        assert_int_equal(l.signer_len, sizeof(signer));
        assert_true(l.has_root);
        assert_memory_equal(l.root_pubkey, root, sizeof(root));
        assert_int_equal(l.n_cfg, 2);
        assert_string_equal(l.cfg[0].key, "wifi_psk");
        assert_int_equal(l.cfg[0].value_len, sizeof(psk));
        assert_memory_equal(l.cfg[0].value, psk, sizeof(psk));
        assert_memory_equal(l.cert_hash, b.cert_hash, 32);

        /* Same key: the loaded board proves for the stored certificate. */
        assert_int_equal(board_prove(&b, nonce, h1, s1), 0);
        assert_int_equal(board_prove(&l, nonce, h2, s2), 0);
        assert_memory_equal(h1, h2, sizeof(h1));
        assert_true(verify_proof(b.pubkey, nonce, h2, s2));
        board_deinit(&l);

        /* A swap wipes the slot. */
        board_wipe_state(dir);
        assert_int_equal(board_init(&l, &test_seed, 7, 0, NULL, dir), 0);
        assert_int_equal(board_load(&l), -ENOENT);
        board_deinit(&l);

        /* A broken state file is reported, not trusted. */
        assert_int_equal(board_save(&b), 0);                    /* nothing dirty: nothing written */
        {
                static const char *const names[] = { "serial", "meta", "locked", "key.pem", "device.der",
                                                     "signer.der", "root_pubkey", "compressed.bin", "config" };

                for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                        if (file_exists(dir, names[i]))
                                fail_msg("board_save() with nothing dirty wrote %s", names[i]);
        }
        b.dirty = DIRTY_META | DIRTY_KEY | DIRTY_CERTS | DIRTY_CONFIG;
        assert_int_equal(board_save(&b), 0);
        {
                char path[128];
                FILE *f;
                snprintf(path, sizeof(path), "%s/key.pem", dir);
                f = fopen(path, "we");
                assert_non_null(f);
                fputs("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", f);
                fclose(f);
        }
        assert_int_equal(board_init(&l, &test_seed, 7, 0, NULL, dir), 0);
        assert_int_equal(board_load(&l), -EBADMSG);
        board_deinit(&l);
        board_deinit(&b);

        board_wipe_state(dir);
        assert_int_equal(rmdir(dir), 0);
        assert_int_equal(rmdir(tmpl), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_identity),
                cmocka_unit_test(test_csr),
                cmocka_unit_test(test_csr_too_small),
                cmocka_unit_test(test_csr_faults),
                cmocka_unit_test(test_prove_and_lock),
                cmocka_unit_test(test_config),
                cmocka_unit_test(test_escape),
                cmocka_unit_test(test_state_roundtrip),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
