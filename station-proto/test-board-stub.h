/* SPDX-License-Identifier: MIT */
/* Stub secure element for tests and fuzzing of the board library: records every callback. */
#ifndef STATION_PROTO_TEST_BOARD_STUB_H
#define STATION_PROTO_TEST_BOARD_STUB_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "station-proto/sp-board.h"

struct stub {
        /* what the "secure element" answers */
        uint8_t serial[32];
        size_t serial_len;
        const char *model;
        const char *fw;
        uint32_t caps;
        bool have_key;
        uint8_t pubkey[SP_PUBKEY_LEN];
        bool se_locked;
        const uint8_t *csr;             /* DER to return, or NULL for a made-up one */
        size_t csr_len;
        uint8_t sig[SP_SIG_LEN];
        bool have_hash;                 /* prove(): cert_hash below, else SHA-256 of the stored cert */
        uint8_t cert_hash[SP_SHA256_LEN];
        int fail_identify, fail_get_csr, fail_store_certs, fail_store_config, fail_prove, fail_lock;

        /* what was asked */
        unsigned n_identify, n_get_csr, n_store_certs, n_store_config, n_prove, n_lock, n_result, n_write;
        bool last_new_key;
        char last_cn[65];
        size_t last_cn_len;
        uint8_t last_nonce[SP_NONCE_LEN];
        uint8_t last_result;
        uint8_t stored_cert[4096];
        size_t stored_cert_len;
        bool stored_compressed;
        char cfg_keys[8][33];
        size_t cfg_val_len[8];
        uint8_t cfg_vals[8][64];

        /* what the board wrote, appended */
        uint8_t out[65536];
        size_t out_len;
        bool out_overflow;
};

static inline int stub_identify(void *ctx, struct spb_identity *ret) {
        struct stub *s = ctx;

        s->n_identify++;
        if (s->fail_identify)
                return s->fail_identify;
        ret->serial = s->serial;
        ret->serial_len = s->serial_len;
        ret->model = s->model;
        ret->fw_version = s->fw;
        ret->caps = s->caps;
        ret->pubkey = s->have_key ? s->pubkey : NULL;
        ret->locked = s->se_locked;
        return 0;
}

static inline int stub_get_csr(void *ctx, bool new_key, const char *cn, size_t cn_len,
                               uint8_t *der, size_t cap, size_t *ret_len) {
        struct stub *s = ctx;
        size_t n;

        s->n_get_csr++;
        s->last_new_key = new_key;
        s->last_cn_len = cn_len;
        if (cn && cn_len < sizeof s->last_cn) {
                memcpy(s->last_cn, cn, cn_len);
                s->last_cn[cn_len] = 0;
        }
        if (s->fail_get_csr)
                return s->fail_get_csr;
        if (new_key)
                s->have_key = true;
        if (!s->have_key)
                return SP_ERR_NO_KEY;
        if (s->csr) {
                n = s->csr_len;
                if (n > cap)
                        return SP_ERR_TOO_LARGE;
                memcpy(der, s->csr, n);
        } else {
                n = cap < 100 ? cap : 100;
                for (size_t i = 0; i < n; i++)
                        der[i] = (uint8_t)(0x30 + i);
        }
        *ret_len = n;
        return 0;
}

static inline int stub_store_certs(void *ctx, const struct spb_certs *c) {
        struct stub *s = ctx;

        s->n_store_certs++;
        if (s->fail_store_certs)
                return s->fail_store_certs;
        s->stored_compressed = c->compressed != NULL;
        s->stored_cert_len = 0;
        if (c->device && c->device_len <= sizeof s->stored_cert) {
                memcpy(s->stored_cert, c->device, c->device_len);
                s->stored_cert_len = c->device_len;
        }
        return 0;
}

static inline int stub_store_config(void *ctx, const char *key, size_t key_len, const uint8_t *value,
                                    size_t value_len) {
        struct stub *s = ctx;
        unsigned i = s->n_store_config++;

        if (s->fail_store_config)
                return s->fail_store_config;
        if (i < 8 && key_len < 33) {
                memcpy(s->cfg_keys[i], key, key_len);
                s->cfg_keys[i][key_len] = 0;
                s->cfg_val_len[i] = value_len;
                memcpy(s->cfg_vals[i], value, value_len < 64 ? value_len : 64);
        }
        return 0;
}

static inline int stub_prove(void *ctx, const uint8_t nonce[SP_NONCE_LEN], uint8_t ret_hash[SP_SHA256_LEN],
                             uint8_t ret_sig[SP_SIG_LEN]) {
        struct stub *s = ctx;

        s->n_prove++;
        memcpy(s->last_nonce, nonce, SP_NONCE_LEN);
        if (s->fail_prove)
                return s->fail_prove;
        if (!s->have_hash && s->stored_cert_len == 0)
                return SP_ERR_NO_CERT;
        if (s->have_hash)
                memcpy(ret_hash, s->cert_hash, SP_SHA256_LEN);
        else
                spb_sha256(s->stored_cert, s->stored_cert_len, ret_hash);
        memcpy(ret_sig, s->sig, SP_SIG_LEN);
        return 0;
}

static inline int stub_lock(void *ctx) {
        struct stub *s = ctx;

        s->n_lock++;
        if (s->fail_lock)
                return s->fail_lock;
        s->se_locked = true;
        return 0;
}

static inline void stub_result(void *ctx, uint8_t result) {
        struct stub *s = ctx;

        s->n_result++;
        s->last_result = result;
}

static inline void stub_write(void *ctx, const uint8_t *buf, size_t len) {
        struct stub *s = ctx;

        s->n_write++;
        if (len > sizeof s->out - s->out_len) {
                s->out_overflow = true;
                return;
        }
        memcpy(s->out + s->out_len, buf, len);
        s->out_len += len;
}

static const struct spb_ops stub_ops = {
        .identify = stub_identify,
        .get_csr = stub_get_csr,
        .store_certs = stub_store_certs,
        .store_config = stub_store_config,
        .prove = stub_prove,
        .lock = stub_lock,
        .result = stub_result,
        .write = stub_write,
};

static inline void stub_init(struct stub *s) {
        static const uint8_t serial[9] = { 0x01, 0x23, 0xa5, 0xc7, 0x9e, 0x4b, 0x10, 0x2f, 0xee };

        memset(s, 0, sizeof *s);
        memcpy(s->serial, serial, sizeof serial);
        s->serial_len = sizeof serial;
        s->model = "provd-devkit-1";
        s->fw = "1.4.2";
        s->caps = SP_CAP_KEYGEN | SP_CAP_LOCK | SP_CAP_WIFI;
        s->pubkey[0] = 0x04;
        for (unsigned i = 1; i < SP_PUBKEY_LEN; i++)
                s->pubkey[i] = (uint8_t)i;
        for (unsigned i = 0; i < SP_SIG_LEN; i++)
                s->sig[i] = (uint8_t)(0xa0 + i);
}

#endif
