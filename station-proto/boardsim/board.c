/* SPDX-License-Identifier: MIT */
/* provd-boardsim: one simulated board's secure element and storage (identity, key, CSR, proof, state files). */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "config.h"
#include "board.h"
#include "util.h"
#include "basic/hex.h"

#define STATE_FILE_MAX  (16u * 1024u)   /* no state file we write is larger */

DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_clear_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(EC_POINT *, EC_POINT_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(OSSL_PARAM_BLD *, OSSL_PARAM_BLD_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(OSSL_PARAM *, OSSL_PARAM_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(ECDSA_SIG *, ECDSA_SIG_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free)

/*
 * Cached once per process: the P-256 group (its precomputed generator table
 * makes a key derivation one fixed-base multiplication), a BN_CTX, the
 * fetched SHA-256 and the EC key builder context.
 */
static struct {
        EC_GROUP *group;
        BN_CTX *bn;
        EVP_MD *sha256;
        EVP_PKEY_CTX *fromdata;
} crypto;

int board_crypto_init(void) {
        if (crypto.group)
                return 0;
        crypto.group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
        crypto.bn = BN_CTX_new();
        crypto.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        crypto.fromdata = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (!crypto.group || !crypto.bn || !crypto.sha256 || !crypto.fromdata) {
                board_crypto_deinit();
                return -EIO;
        }
        return 0;
}

void board_crypto_deinit(void) {
        EC_GROUP_free(crypto.group);
        BN_CTX_free(crypto.bn);
        EVP_MD_free(crypto.sha256);
        EVP_PKEY_CTX_free(crypto.fromdata);
        memset(&crypto, 0, sizeof(crypto));
}


static void set_serial(struct board *b, const uint8_t serial[SEED_SERIAL_LEN]) {
        memcpy(b->serial, serial, SEED_SERIAL_LEN);
        hex_upper(b->serial, SEED_SERIAL_LEN, b->serial_hex);
}

int board_init(struct board *b, const struct seed *seed, uint32_t idx, uint32_t gen,
               const uint8_t *serial_override, const char *state_path) {
        uint8_t serial[SEED_SERIAL_LEN];

        memset(b, 0, sizeof(*b));
        b->seed = seed;
        b->idx = idx;
        b->gen = gen;
        if (serial_override)
                memcpy(serial, serial_override, sizeof(serial));
        else
                seed_serial(seed, idx, gen, serial);
        set_serial(b, serial);
        if (state_path) {
                b->state_path = strdup(state_path);
                if (!b->state_path)
                        return -ENOMEM;
        }
        b->dirty = DIRTY_META | DIRTY_KEY | DIRTY_CERTS | DIRTY_CONFIG;
        return 0;
}

static void cfg_clear(struct board *b) {
        for (size_t i = 0; i < b->n_cfg; i++)
                free(b->cfg[i].value);
        b->n_cfg = 0;
}

void board_deinit(struct board *b) {
        EVP_PKEY_CTX_free(b->sign_ctx);
        b->sign_ctx = NULL;
        EVP_PKEY_free(b->key);
        b->key = NULL;
        cfg_clear(b);
        free(b->state_path);
        b->state_path = NULL;
}

/* --- keys ------------------------------------------------------------------ */

/* The public point is computed here because OpenSSL 3.0's EC fromdata does not derive it. */
static EVP_PKEY *key_from_scalar(const uint8_t scalar[32], uint8_t ret_pub[SP_PUBKEY_LEN]) {
        _cleanup_(BN_clear_freep) BIGNUM *priv = BN_bin2bn(scalar, 32, NULL);
        _cleanup_(EC_POINT_freep) EC_POINT *pt = EC_POINT_new(crypto.group);
        _cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        _cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = NULL;
        uint8_t pub[SP_PUBKEY_LEN];
        EVP_PKEY *pkey = NULL;

        if (!priv || !pt || !bld)
                return NULL;
        if (EC_POINT_mul(crypto.group, pt, priv, NULL, NULL, crypto.bn) != 1 ||
            EC_POINT_point2oct(crypto.group, pt, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof(pub), crypto.bn) !=
                    sizeof(pub))
                return NULL;
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, SN_X9_62_prime256v1, 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) != 1)
                return NULL;
        params = OSSL_PARAM_BLD_to_param(bld);
        if (!params)
                return NULL;
        if (EVP_PKEY_fromdata_init(crypto.fromdata) != 1 ||
            EVP_PKEY_fromdata(crypto.fromdata, &pkey, EVP_PKEY_KEYPAIR, params) != 1)
                return NULL;
        memcpy(ret_pub, pub, sizeof(pub));
        return pkey;
}

/* Takes @k; prepares the signing context once per key (sign_init costs as much as a hash). */
static int set_key(struct board *b, EVP_PKEY *k) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);

        if (!ctx || EVP_PKEY_sign_init(ctx) != 1) {
                EVP_PKEY_CTX_free(ctx);
                ERR_clear_error();
                return -EIO;
        }
        EVP_PKEY_CTX_free(b->sign_ctx);
        EVP_PKEY_free(b->key);
        b->sign_ctx = ctx;
        b->key = k;
        return 0;
}

static int new_key(struct board *b) {
        uint8_t scalar[32];
        EVP_PKEY *k;

        seed_scalar(b->seed, b->idx, b->gen, b->keyno, scalar);
        k = key_from_scalar(scalar, b->pubkey);
        OPENSSL_cleanse(scalar, sizeof(scalar));
        if (!k) {
                ERR_clear_error();
                return SP_ERR_SE_FAILURE;
        }
        if (set_key(b, k) < 0) {
                EVP_PKEY_free(k);
                return SP_ERR_SE_FAILURE;
        }
        b->keyno++;
        b->key_slow = true;
        b->dirty |= DIRTY_KEY | DIRTY_META;
        return 0;
}

/* --- secure-element operations ---------------------------------------------- */

int board_identify(struct board *b, struct spb_identity *ret) {
        *ret = (struct spb_identity){
                .serial = b->serial,
                .serial_len = SEED_SERIAL_LEN,
                .model = BOARD_MODEL,
                .fw_version = "sim-" PROVD_VERSION,
                .caps = BOARD_CAPS,
                .pubkey = b->key ? b->pubkey : NULL,
                .locked = b->locked,
        };
        return 0;
}

/*
 * The CSR is assembled here rather than with X509_REQ: its shape is fixed
 * (P-256 key, one CN, maybe one extension request), and OpenSSL 3.0's
 * X509_REQ_set_pubkey() goes through the provider encoders, which cost more
 * than the signature itself. The station and the tests parse and verify
 * these CSRs with OpenSSL, so a malformed one would not go unnoticed.
 */

struct der {
        uint8_t *buf;
        size_t cap, len;
        bool overflow;
};

static void der_raw(struct der *d, const void *p, size_t len) {
        if (d->overflow || d->cap - d->len < len) {
                d->overflow = true;
                return;
        }
        memcpy(d->buf + d->len, p, len);
        d->len += len;
}

/* Tag and definite length; the content follows with der_raw(). */
static void der_head(struct der *d, uint8_t tag, size_t len) {
        uint8_t h[4] = { tag };
        size_t n;

        if (len < 0x80) {
                h[1] = (uint8_t)len;
                n = 2;
        } else if (len < 0x100) {
                h[1] = 0x81;
                h[2] = (uint8_t)len;
                n = 3;
        } else {
                h[1] = 0x82;
                h[2] = (uint8_t)(len >> 8);
                h[3] = (uint8_t)len;
                n = 4;
        }
        der_raw(d, h, n);
}

static void der_tlv(struct der *d, uint8_t tag, const void *p, size_t len) {
        der_head(d, tag, len);
        der_raw(d, p, len);
}

/* DER of the pieces that never change. */
static const uint8_t der_version0[] = { 0x02, 0x01, 0x00 };
static const uint8_t der_oid_cn[] = { 0x06, 0x03, 0x55, 0x04, 0x03 };
static const uint8_t der_spki_prefix[] = {             /* SEQ { SEQ { id-ecPublicKey, prime256v1 }, BIT STRING */
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};
static const uint8_t der_ecdsa_sha256[] = {            /* AlgorithmIdentifier ecdsa-with-SHA256 */
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
};
/* [0] { SEQ { extensionRequest, SET { SEQ { SEQ { basicConstraints, critical, OCTET STRING { SEQ { TRUE } } } } } } } */
static const uint8_t der_attr_ca_true[] = {
        0xa0, 0x22, 0x30, 0x20, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e,
        0x31, 0x13, 0x30, 0x11, 0x30, 0x0f, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff,
        0x04, 0x05, 0x30, 0x03, 0x01, 0x01, 0xff,
};
static const uint8_t der_attr_none[] = { 0xa0, 0x00 };

/* Signs SHA-256(@msg) with the board key; DER ECDSA-Sig-Value into @sig (≥ 72 bytes). */
static int sign_der(struct board *b, const void *msg, size_t len, uint8_t *sig, size_t *sig_len) {
        uint8_t digest[SP_SHA256_LEN];
        unsigned dlen = sizeof(digest);

        if (EVP_Digest(msg, len, digest, &dlen, crypto.sha256, NULL) != 1 ||
            EVP_PKEY_sign(b->sign_ctx, sig, sig_len, digest, sizeof(digest)) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        return 0;
}

/* Bytes of a DER TLV with @len content bytes, header as der_head() writes it. */
static size_t der_tlv_len(size_t len) {
        return (len < 0x80 ? 2 : len < 0x100 ? 3 : 4) + len;
}

/* Bytes of what board_get_csr() builds, for a CN, attributes and DER signature of these lengths. */
static size_t csr_name_len(size_t cn_len) {
        return der_tlv_len(der_tlv_len(der_tlv_len(sizeof(der_oid_cn) + der_tlv_len(cn_len))));
}

static size_t csr_info_len(size_t cn_len, size_t attr_len) {
        return der_tlv_len(sizeof(der_version0) + csr_name_len(cn_len) + sizeof(der_spki_prefix) + SP_PUBKEY_LEN +
                           attr_len);
}

static size_t csr_len(size_t cn_len, size_t attr_len, size_t sig_len) {
        return der_tlv_len(csr_info_len(cn_len, attr_len) + sizeof(der_ecdsa_sha256) + der_tlv_len(1 + sig_len));
}

/*
 * The largest CSR this board builds, in bytes (content + DER header). The CN
 * is at most CSR_CN_MAX = 64 characters, the board library's SUBJECT_CN limit
 * (the serial and the cn fault give 18):
 *
 *   AttributeTypeAndValue     SEQ { OID 5, UTF8String 2 + 64 }       71 + 2 =  73
 *   Name                      SEQ { SET { AttributeTypeAndValue } }  75 + 2 =  77  CSR_NAME_MAX
 *   CertificationRequestInfo  SEQ { version 3, Name 77, SPKI 26 + 65,
 *                             attributes 36 (ca fault; else 2) }    207 + 3 = 210  CSR_INFO_MAX
 *   ECDSA-Sig-Value           SEQ { INTEGER r, INTEGER s },
 *                             each at most 2 + 33                    70 + 2 =  72  CSR_SIG_MAX
 *   CertificationRequest      SEQ { info 210, algorithm 12,
 *                             BIT STRING 2 + 1 + 72 }               297 + 4 = 301  CSR_MAX
 *
 * With the CSR and PUBKEY TLVs (3 + 3 + 65) and the frame overhead (11), a
 * station announcing a max frame of 383 or more gets every CSR this board
 * makes; PROTOCOL.md §5.3 asks stations for at least 512.
 */
#define CSR_CN_MAX      64u
#define CSR_NAME_MAX    77u
#define CSR_INFO_MAX    210u
#define CSR_SIG_MAX     72u
#define CSR_MAX         301u

int board_get_csr(struct board *b, bool want_new_key, const char *req_cn, size_t req_cn_len, uint8_t *der,
                  size_t cap, size_t *ret_len) {
        uint8_t name[CSR_NAME_MAX], info[CSR_INFO_MAX], sig[CSR_SIG_MAX];
        struct der n = { name, sizeof(name) }, i = { info, sizeof(info) }, out = { der, cap };
        const uint8_t *attr = b->fault_ca ? der_attr_ca_true : der_attr_none;
        size_t attr_len = b->fault_ca ? sizeof(der_attr_ca_true) : sizeof(der_attr_none);
        size_t sig_len = sizeof(sig), atv_len, body;
        char cn[CSR_CN_MAX + 1];
        int k;

        /* The sums above, checked against the builder's own arithmetic. */
        assert(csr_name_len(CSR_CN_MAX) == CSR_NAME_MAX);
        assert(csr_info_len(CSR_CN_MAX, sizeof(der_attr_ca_true)) == CSR_INFO_MAX);
        assert(csr_len(CSR_CN_MAX, sizeof(der_attr_ca_true), CSR_SIG_MAX) == CSR_MAX);

        b->key_slow = false;
        if (want_new_key && b->locked)
                return SP_ERR_LOCKED;
        /* Spec 6.2: without NEW_KEY a board with no key answers NO_KEY, it never makes one quietly. */
        if (!want_new_key && !b->key)
                return SP_ERR_NO_KEY;

        if (req_cn && req_cn_len > 0 && req_cn_len <= CSR_CN_MAX) {
                memcpy(cn, req_cn, req_cn_len);
                cn[req_cn_len] = 0;
        } else
                snprintf(cn, sizeof(cn), "%s", b->serial_hex);
        if (b->fault_cn) {
                /* Another board's serial, same shape: only a station that compares notices. */
                uint8_t other[SEED_SERIAL_LEN];

                memcpy(other, b->serial, sizeof(other));
                for (size_t j = 2; j < 8; j++)
                        other[j] ^= 0x5a;
                hex_upper(other, sizeof(other), cn);
        }

        /*
         * Spec 7.1: refuse before any side effect, so a new key is never made
         * for a CSR that cannot be sent. The signature's length (at most 72
         * bytes, usually 70..72) is known only once signed, so this counts the
         * longest. Without NEW_KEY nothing changes: only the CSR as built is
         * checked, below.
         */
        if (want_new_key) {
                if (csr_len(strlen(cn), attr_len, CSR_SIG_MAX) > cap)
                        return SP_ERR_TOO_LARGE;
                k = new_key(b);
                if (k != 0)
                        return k;
        }

        /* Name: SEQ { SET { SEQ { id-at-commonName, UTF8String } } } */
        atv_len = sizeof(der_oid_cn) + 2 + strlen(cn);
        der_head(&n, 0x30, atv_len + 2 + 2);
        der_head(&n, 0x31, atv_len + 2);
        der_head(&n, 0x30, atv_len);
        der_raw(&n, der_oid_cn, sizeof(der_oid_cn));
        der_tlv(&n, 0x0c, cn, strlen(cn));

        /* CertificationRequestInfo */
        body = sizeof(der_version0) + n.len + sizeof(der_spki_prefix) + SP_PUBKEY_LEN + attr_len;
        der_head(&i, 0x30, body);
        der_raw(&i, der_version0, sizeof(der_version0));
        der_raw(&i, name, n.len);
        der_raw(&i, der_spki_prefix, sizeof(der_spki_prefix));
        der_raw(&i, b->pubkey, SP_PUBKEY_LEN);
        der_raw(&i, attr, attr_len);
        if (n.overflow || i.overflow)
                return SP_ERR_INTERNAL;

        if (sign_der(b, info, i.len, sig, &sig_len) < 0)
                return SP_ERR_SE_FAILURE;

        /* CertificationRequest: SEQ { info, algorithm, BIT STRING { 0 unused bits, signature } } */
        der_head(&out, 0x30, i.len + sizeof(der_ecdsa_sha256) + 2 + 1 + sig_len);
        der_raw(&out, info, i.len);
        der_raw(&out, der_ecdsa_sha256, sizeof(der_ecdsa_sha256));
        der_head(&out, 0x03, 1 + sig_len);
        der_raw(&out, "", 1);
        der_raw(&out, sig, sig_len);
        /* The CSR as built does not fit what the station accepts (spec 5.3). */
        if (out.overflow)
                return SP_ERR_TOO_LARGE;
        /*
         * The last DER byte is the low byte of the signature's s INTEGER: flipping
         * it keeps the CSR well formed but makes the signature wrong.
         */
        if (b->fault_badsig)
                der[out.len - 1] ^= 0x01;
        *ret_len = out.len;
        return 0;
}

int board_store_certs(struct board *b, const struct spb_certs *certs) {
        unsigned hash_len = SP_SHA256_LEN;

        if (b->locked)
                return SP_ERR_LOCKED;
        /* This board has no compressed-certificate support (caps): it needs the DER. */
        if (!certs->device || certs->device_len == 0)
                return SP_ERR_BAD_PAYLOAD;
        if (certs->device_len > BOARD_CERT_MAX || certs->signer_len > BOARD_CERT_MAX)
                return SP_ERR_TOO_LARGE;
        if (EVP_Digest(certs->device, certs->device_len, b->cert_hash, &hash_len, crypto.sha256, NULL) != 1)
                return SP_ERR_INTERNAL;
        memcpy(b->device, certs->device, certs->device_len);
        b->device_len = certs->device_len;
        b->signer_len = 0;
        if (certs->signer && certs->signer_len > 0) {
                memcpy(b->signer, certs->signer, certs->signer_len);
                b->signer_len = certs->signer_len;
        }
        b->has_root = certs->root_pubkey != NULL;
        if (b->has_root)
                memcpy(b->root_pubkey, certs->root_pubkey, SP_PUBKEY_LEN);
        b->has_compressed = certs->compressed != NULL;
        if (b->has_compressed)
                memcpy(b->compressed, certs->compressed, SP_COMPRESSED_CERT_LEN);
        b->dirty |= DIRTY_CERTS;
        return 0;
}

static bool cfg_key_ok(const char *key, size_t len) {
        if (len == 0 || len > BOARD_CFG_KEY_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = key[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '-' || c == '.'))
                        return false;
        }
        return true;
}

int board_store_config(struct board *b, const char *key, size_t key_len, const uint8_t *value, size_t value_len) {
        struct board_cfg *c = NULL;
        uint8_t *copy = NULL;

        /* Spec 6.6: a locked board still takes PUT_CONFIG; only the key and certificates are permanent. */
        if (!cfg_key_ok(key, key_len))
                return SP_ERR_BAD_PAYLOAD;
        if (value_len > BOARD_CFG_VALUE_MAX)
                return SP_ERR_TOO_LARGE;
        for (size_t i = 0; i < b->n_cfg; i++)
                if (strlen(b->cfg[i].key) == key_len && memcmp(b->cfg[i].key, key, key_len) == 0)
                        c = &b->cfg[i];
        if (!c) {
                if (b->n_cfg >= BOARD_CFG_MAX)
                        return SP_ERR_STORAGE;
                c = &b->cfg[b->n_cfg++];
                memcpy(c->key, key, key_len);
                c->key[key_len] = '\0';
                c->value = NULL;
                c->value_len = 0;
        }
        if (value_len > 0) {
                copy = malloc(value_len);
                if (!copy)
                        return SP_ERR_STORAGE;
                memcpy(copy, value, value_len);
        }
        free(c->value);
        c->value = copy;
        c->value_len = value_len;
        b->dirty |= DIRTY_CONFIG;
        return 0;
}

int board_prove(struct board *b, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                uint8_t ret_sig[SP_SIG_LEN]) {
        _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *sig = NULL;
        uint8_t msg[SP_NONCE_LEN + SP_SHA256_LEN], der[80];
        const unsigned char *p = der;
        const BIGNUM *r, *s;
        size_t der_len = sizeof(der);

        if (!b->key)
                return SP_ERR_NO_KEY;
        if (b->device_len == 0)
                return SP_ERR_NO_CERT;
        memcpy(msg, nonce, SP_NONCE_LEN);
        memcpy(msg + SP_NONCE_LEN, b->cert_hash, SP_SHA256_LEN);
        if (sign_der(b, msg, sizeof(msg), der, &der_len) < 0)
                return SP_ERR_SE_FAILURE;
        sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
        if (!sig)
                goto fail;
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_bn2binpad(r, ret_sig, 32) != 32 || BN_bn2binpad(s, ret_sig + 32, 32) != 32)
                goto fail;
        memcpy(ret_hash, b->cert_hash, SP_SHA256_LEN);
        if (b->fault_badproof)
                ret_sig[SP_SIG_LEN - 1] ^= 0x01;        /* a well-formed signature that does not verify */
        return 0;
fail:
        ERR_clear_error();
        return SP_ERR_SE_FAILURE;
}

int board_lock(struct board *b) {
        if (!b->key)
                return SP_ERR_NO_KEY;
        if (!b->locked) {
                b->locked = true;
                b->dirty |= DIRTY_META;
        }
        return 0;
}

/* --- config escaping ------------------------------------------------------- */

size_t board_cfg_escape(const uint8_t *value, size_t len, char *out, size_t cap) {
        static const char digits[] = "0123456789abcdef";
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                uint8_t c = value[i];
                if (c >= 0x20 && c < 0x7f && c != '\\') {
                        if (o + 1 >= cap)
                                break;
                        out[o++] = (char)c;
                } else {
                        if (o + 4 >= cap)
                                break;
                        out[o++] = '\\';
                        out[o++] = 'x';
                        out[o++] = digits[c >> 4];
                        out[o++] = digits[c & 15];
                }
        }
        if (cap > 0)
                out[o] = '\0';
        return o;
}

int board_cfg_unescape(const char *s, size_t len, uint8_t *out, size_t cap) {
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t)s[i];
                if (c == '\\') {
                        int hi, lo;
                        if (len - i < 4 || s[i + 1] != 'x')
                                return -EBADMSG;
                        hi = unhexchar(s[i + 2]);
                        lo = unhexchar(s[i + 3]);
                        if (hi < 0 || lo < 0)
                                return -EBADMSG;
                        c = (uint8_t)(hi << 4 | lo);
                        i += 3;
                }
                if (o >= cap)
                        return -ENOBUFS;
                out[o++] = c;
        }
        return (int)o;
}

/* --- state files ----------------------------------------------------------- */

static const char *const state_files[] = {
        "serial", "meta", "locked", "key.pem", "device.der", "signer.der", "root_pubkey", "compressed.bin", "config",
};

static int write_atomic(const char *dir, const char *name, const void *data, size_t len, mode_t mode) {
        char path[4096], tmp[4096];
        _cleanup_close_ int fd = -EBADF;
        const uint8_t *p = data;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) ||
            (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = -errno;
                        unlink(tmp);
                        return r;
                }
                p += n;
                len -= (size_t)n;
        }
        if (close(TAKE_FD(fd)) < 0 || rename(tmp, path) < 0) {
                int r = -errno;
                unlink(tmp);
                return r;
        }
        return 0;
}

static void remove_file(const char *dir, const char *name) {
        char path[4096];

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) < sizeof(path))
                (void)unlink(path);
}

void board_wipe_state(const char *state_path) {
        for (size_t i = 0; i < ELEMENTSOF(state_files); i++)
                remove_file(state_path, state_files[i]);
}

static int save_key(struct board *b) {
        _cleanup_(BIO_freep) BIO *bio = NULL;
        char *data;
        long len;

        if (!b->key) {
                remove_file(b->state_path, "key.pem");
                return 0;
        }
        bio = BIO_new(BIO_s_mem());
        if (!bio || PEM_write_bio_PrivateKey(bio, b->key, NULL, NULL, 0, NULL, NULL) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        len = BIO_get_mem_data(bio, &data);
        if (len <= 0)
                return -EIO;
        return write_atomic(b->state_path, "key.pem", data, (size_t)len, 0600);
}

static int save_optional(struct board *b, const char *name, const void *data, size_t len) {
        if (len == 0) {
                remove_file(b->state_path, name);
                return 0;
        }
        return write_atomic(b->state_path, name, data, len, 0600);
}

static int save_config(struct board *b) {
        /* Worst case a value escapes to 4 chars per byte. */
        size_t cap = b->n_cfg * (BOARD_CFG_KEY_MAX + 2 + 4 * BOARD_CFG_VALUE_MAX + 1) + 1;
        _cleanup_free_ char *buf = malloc(cap);
        size_t len = 0;

        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_cfg; i++) {
                size_t kl = strlen(b->cfg[i].key);
                memcpy(buf + len, b->cfg[i].key, kl);
                len += kl;
                buf[len++] = '=';
                len += board_cfg_escape(b->cfg[i].value, b->cfg[i].value_len, buf + len, cap - len);
                buf[len++] = '\n';
        }
        return write_atomic(b->state_path, "config", buf, len, 0600);
}

int board_save(struct board *b) {
        char text[128];
        int r, k = 0;

        if (!b->state_path || b->dirty == 0)
                return 0;
        if (mkdir(b->state_path, 0700) < 0 && errno != EEXIST)
                return -errno;
        if (b->dirty & DIRTY_META) {
                snprintf(text, sizeof(text), "%s\n", b->serial_hex);
                r = write_atomic(b->state_path, "serial", text, strlen(text), 0644);
                if (r < 0)
                        k = r;
                snprintf(text, sizeof(text), "index=%u\ngeneration=%u\nkeyno=%u\n", b->idx, b->gen, b->keyno);
                r = write_atomic(b->state_path, "meta", text, strlen(text), 0644);
                if (r < 0)
                        k = r;
                r = write_atomic(b->state_path, "locked", b->locked ? "1\n" : "0\n", 2, 0644);
                if (r < 0)
                        k = r;
        }
        if (b->dirty & DIRTY_KEY) {
                r = save_key(b);
                if (r < 0)
                        k = r;
        }
        if (b->dirty & DIRTY_CERTS) {
                r = save_optional(b, "device.der", b->device, b->device_len);
                if (r < 0)
                        k = r;
                r = save_optional(b, "signer.der", b->signer, b->signer_len);
                if (r < 0)
                        k = r;
                r = save_optional(b, "root_pubkey", b->root_pubkey, b->has_root ? SP_PUBKEY_LEN : 0);
                if (r < 0)
                        k = r;
                r = save_optional(b, "compressed.bin", b->compressed, b->has_compressed ? SP_COMPRESSED_CERT_LEN : 0);
                if (r < 0)
                        k = r;
        }
        if (b->dirty & DIRTY_CONFIG) {
                r = save_config(b);
                if (r < 0)
                        k = r;
        }
        if (k == 0)
                b->dirty = 0;
        return k;
}

/* Reads a whole state file of at most @cap bytes. Returns its length, -ENOENT, -EFBIG or -errno. */
static ssize_t read_state(const char *dir, const char *name, void *buf, size_t cap) {
        char path[4096];
        _cleanup_close_ int fd = -EBADF;
        size_t len = 0;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
                return -ENAMETOOLONG;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t n;
                if (len == cap) {
                        uint8_t extra;
                        n = read(fd, &extra, 1);
                        if (n > 0)
                                return -EFBIG;
                        if (n < 0 && errno == EINTR)
                                continue;
                        return n < 0 ? -errno : (ssize_t)len;
                }
                n = read(fd, (uint8_t *)buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return (ssize_t)len;
                len += (size_t)n;
        }
}

static int load_key(struct board *b) {
        _cleanup_free_ char *pem = malloc(STATE_FILE_MAX);
        _cleanup_(BIO_freep) BIO *bio = NULL;
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
        char group[64];
        size_t len;
        ssize_t n;

        if (!pem)
                return -ENOMEM;
        n = read_state(b->state_path, "key.pem", pem, STATE_FILE_MAX);
        if (n == -ENOENT)
                return 0;
        if (n < 0)
                return (int)n;
        bio = BIO_new_mem_buf(pem, (int)n);
        if (!bio)
                return -ENOMEM;
        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        if (!k || !EVP_PKEY_is_a(k, "EC") ||
            EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) != 1 ||
            strcmp(group, SN_X9_62_prime256v1) != 0 ||
            EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, b->pubkey, sizeof(b->pubkey),
                                            &len) != 1 ||
            len != SP_PUBKEY_LEN || b->pubkey[0] != 0x04) {
                ERR_clear_error();
                return -EBADMSG;
        }
        if (set_key(b, k) < 0)
                return -EIO;
        k = NULL;       /* the board has it now */
        return 0;
}

static int load_config(struct board *b) {
        size_t cap = BOARD_CFG_MAX * (BOARD_CFG_KEY_MAX + 2 + 4 * BOARD_CFG_VALUE_MAX + 1);
        _cleanup_free_ char *buf = malloc(cap);
        _cleanup_free_ uint8_t *value = malloc(BOARD_CFG_VALUE_MAX);
        ssize_t n;
        size_t off = 0;

        if (!buf || !value)
                return -ENOMEM;
        n = read_state(b->state_path, "config", buf, cap);
        if (n == -ENOENT)
                return 0;
        if (n < 0)
                return (int)n;
        while (off < (size_t)n) {
                char *line = buf + off, *nl = memchr(line, '\n', (size_t)n - off), *eq;
                size_t line_len = nl ? (size_t)(nl - line) : (size_t)n - off;
                int vlen;

                off += line_len + 1;
                if (line_len == 0)
                        continue;
                eq = memchr(line, '=', line_len);
                if (!eq)
                        return -EBADMSG;
                vlen = board_cfg_unescape(eq + 1, line_len - (size_t)(eq + 1 - line), value, BOARD_CFG_VALUE_MAX);
                if (vlen < 0)
                        return -EBADMSG;
                if (board_store_config(b, line, (size_t)(eq - line), value, (size_t)vlen) != 0)
                        return -EBADMSG;
        }
        return 0;
}

int board_load(struct board *b) {
        char text[256];
        ssize_t n;
        int r;

        if (!b->state_path)
                return -ENOENT;
        n = read_state(b->state_path, "serial", text, sizeof(text) - 1);
        if (n < 0)
                return n == -ENOENT ? -ENOENT : (int)n;
        if (n < (ssize_t)(2 * SEED_SERIAL_LEN))
                return -EBADMSG;
        for (size_t i = 0; i < SEED_SERIAL_LEN; i++) {
                int hi = unhexchar(text[2 * i]), lo = unhexchar(text[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                b->serial[i] = (uint8_t)(hi << 4 | lo);
        }
        set_serial(b, b->serial);

        n = read_state(b->state_path, "meta", text, sizeof(text) - 1);
        if (n >= 0) {
                unsigned idx, gen, keyno;
                text[n] = '\0';
                if (sscanf(text, "index=%u\ngeneration=%u\nkeyno=%u", &idx, &gen, &keyno) == 3) {
                        b->gen = gen;
                        b->keyno = keyno;
                }
        }
        n = read_state(b->state_path, "locked", text, sizeof(text) - 1);
        b->locked = n > 0 && text[0] == '1';

        r = load_key(b);
        if (r < 0)
                return r;
        n = read_state(b->state_path, "device.der", b->device, sizeof(b->device));
        if (n > 0) {
                unsigned hash_len = SP_SHA256_LEN;
                b->device_len = (size_t)n;
                if (EVP_Digest(b->device, b->device_len, b->cert_hash, &hash_len, crypto.sha256, NULL) != 1)
                        return -EIO;
        } else if (n != -ENOENT && n != 0)
                return (int)n;
        n = read_state(b->state_path, "signer.der", b->signer, sizeof(b->signer));
        if (n > 0)
                b->signer_len = (size_t)n;
        n = read_state(b->state_path, "root_pubkey", b->root_pubkey, sizeof(b->root_pubkey));
        b->has_root = n == SP_PUBKEY_LEN;
        n = read_state(b->state_path, "compressed.bin", b->compressed, sizeof(b->compressed));
        b->has_compressed = n == SP_COMPRESSED_CERT_LEN;

        r = load_config(b);
        if (r < 0)
                return r;
        b->dirty = 0;
        return 0;
}
