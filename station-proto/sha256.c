/* SPDX-License-Identifier: MIT */
/* SHA-256 (FIPS 180-4) for CERT_HASH on boards without a crypto library; freestanding core. */

#include <string.h>

#include "sp-core.h"

static const uint32_t K[64] = {
        0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
        0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
        0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
        0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
        0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
        0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
        0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
        0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

static uint32_t ror(uint32_t x, unsigned n) {
        return (x >> n) | (x << (32 - n));
}

/*
 * The message schedule is kept as a ring of 16 words (w[i & 15]) rather than
 * 64: 192 bytes less stack, which matters on a part with a 256-byte stack.
 */
static void compress(uint32_t h[8], const uint8_t blk[64]) {
        uint32_t w[16], a, b, c, d, e, f, g, hh;

        for (unsigned i = 0; i < 16; i++)
                w[i] = spc_get_be32(blk + 4 * i);
        a = h[0]; b = h[1]; c = h[2]; d = h[3];
        e = h[4]; f = h[5]; g = h[6]; hh = h[7];
        for (unsigned i = 0; i < 64; i++) {
                uint32_t t1, t2;

                if (i >= 16) {
                        uint32_t w15 = w[(i - 15) & 15], w2 = w[(i - 2) & 15];
                        uint32_t s0 = ror(w15, 7) ^ ror(w15, 18) ^ (w15 >> 3);
                        uint32_t s1 = ror(w2, 17) ^ ror(w2, 19) ^ (w2 >> 10);

                        w[i & 15] += s0 + w[(i - 7) & 15] + s1;
                }
                t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i & 15];
                t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
                hh = g; g = f; f = e; e = d + t1;
                d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d;
        h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void spc_sha256_init(struct spc_sha256 *s) {
        static const uint32_t iv[8] = {
                0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
        };

        memcpy(s->h, iv, sizeof iv);
        s->total = 0;
        s->fill = 0;
}

void spc_sha256_update(struct spc_sha256 *s, const void *data, size_t len) {
        const uint8_t *p = data;

        s->total += (uint32_t)len;
        while (len > 0) {
                size_t n = 64 - s->fill;

                if (n > len)
                        n = len;
                memcpy(s->block + s->fill, p, n);
                s->fill += n;
                p += n;
                len -= n;
                if (s->fill == 64) {
                        compress(s->h, s->block);
                        s->fill = 0;
                }
        }
}

void spc_sha256_final(struct spc_sha256 *s, uint8_t out[SP_SHA256_LEN]) {

        s->block[s->fill++] = 0x80;
        if (s->fill > 56) {
                memset(s->block + s->fill, 0, 64 - s->fill);
                compress(s->h, s->block);
                s->fill = 0;
        }
        memset(s->block + s->fill, 0, 56 - s->fill);
        /* The length in bits, 64-bit big-endian, from the 32-bit byte count
         * (no 64-bit arithmetic, which costs a library call on AVR). */
        spc_put_be32(s->block + 56, s->total >> 29);
        spc_put_be32(s->block + 60, s->total << 3);
        compress(s->h, s->block);
        for (unsigned i = 0; i < 8; i++)
                spc_put_be32(out + 4 * i, s->h[i]);
}

void spc_sha256(const void *data, size_t len, uint8_t out[SP_SHA256_LEN]) {
        struct spc_sha256 s;

        spc_sha256_init(&s);
        spc_sha256_update(&s, data, len);
        spc_sha256_final(&s, out);
}
