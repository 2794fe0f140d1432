/* SPDX-License-Identifier: MIT */
/* provd-boardsim: deterministic derivation of board identities and fault choices from a seed. */

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "seed.h"

/* P-256 group order n (SEC 2, secp256r1). */
static const uint8_t p256_order[32] = {
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* HMAC(key, label ‖ be32(n[0]) ‖ … ‖ be32(n[count-1])). */
static void derive(const struct seed *s, const char *label, const uint32_t *n, size_t count, uint8_t ret[32]) {
        uint8_t msg[32 + 4 * 5];
        size_t len = strlen(label);
        unsigned out_len = 32;

        memcpy(msg, label, len);
        for (size_t i = 0; i < count; i++, len += 4)
                put_be32(msg + len, n[i]);
        /* HMAC() only fails on allocation failure; a zero MAC then is still deterministic. */
        if (!HMAC(EVP_sha256(), s->key, sizeof(s->key), msg, len, ret, &out_len))
                memset(ret, 0, 32);
}

void seed_from_string(struct seed *s, const char *str) {
        static const char prefix[] = "provd-boardsim seed v1";
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned len = 32;

        memset(s->key, 0, sizeof(s->key));
        if (!ctx)
                return;
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(ctx, prefix, sizeof(prefix) - 1) != 1 ||
            EVP_DigestUpdate(ctx, str, strlen(str)) != 1 ||
            EVP_DigestFinal_ex(ctx, s->key, &len) != 1)
                memset(s->key, 0, sizeof(s->key));
        EVP_MD_CTX_free(ctx);
}

int seed_random(struct seed *s) {
        return RAND_bytes(s->key, sizeof(s->key)) == 1 ? 0 : -EIO;
}

void seed_serial(const struct seed *s, uint32_t idx, uint32_t gen, uint8_t ret[SEED_SERIAL_LEN]) {
        uint8_t mac[32];

        derive(s, "serial", (uint32_t[]){ idx, gen }, 2, mac);
        ret[0] = 0x01;
        ret[1] = 0x23;
        memcpy(ret + 2, mac, 6);
        ret[8] = 0xee;
}

static bool scalar_ok(const uint8_t k[32]) {
        bool zero = true;

        for (size_t i = 0; i < 32; i++)
                if (k[i] != 0)
                        zero = false;
        if (zero)
                return false;
        return memcmp(k, p256_order, 32) < 0;
}

void seed_scalar(const struct seed *s, uint32_t idx, uint32_t gen, uint32_t keyno, uint8_t ret[32]) {
        for (uint32_t counter = 0;; counter++) {
                derive(s, "p256-key", (uint32_t[]){ idx, gen, keyno, counter }, 4, ret);
                if (scalar_ok(ret))
                        return;
        }
}

static uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;

        for (size_t i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

bool seed_pick(const struct seed *s, uint32_t fault_no, uint32_t idx, uint32_t gen, double fraction) {
        uint8_t mac[32];

        if (fraction <= 0)
                return false;
        if (fraction >= 1)
                return true;
        derive(s, "fault", (uint32_t[]){ fault_no, idx, gen }, 3, mac);
        /* Top 53 bits as a double in [0, 1). */
        return (double)(be64(mac) >> 11) * 0x1.0p-53 < fraction;
}

uint64_t seed_rng(const struct seed *s, uint32_t idx, uint32_t gen) {
        uint8_t mac[32];

        derive(s, "rng", (uint32_t[]){ idx, gen }, 2, mac);
        return be64(mac);
}

uint64_t rng_next(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

double rng_unit(uint64_t *state) {
        return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}
