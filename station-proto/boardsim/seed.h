/* SPDX-License-Identifier: MIT */
/* provd-boardsim: deterministic derivation of board identities and fault choices from a seed. */
#ifndef BOARDSIM_SEED_H
#define BOARDSIM_SEED_H

#include <stdbool.h>
#include <stdint.h>

#define SEED_SERIAL_LEN 9u

/*
 * Everything a board is made of comes from HMAC-SHA256(seed key, label ‖ numbers):
 *   key     = SHA-256("provd-boardsim seed v1" ‖ --seed string), or 32 random bytes
 *   serial  = 01 23 ‖ HMAC(key, "serial" ‖ idx ‖ gen)[0..5] ‖ EE           (ATECC layout)
 *   scalar  = HMAC(key, "p256-key" ‖ idx ‖ gen ‖ keyno ‖ counter), first counter
 *             giving 0 < scalar < n (the P-256 order)
 *   pick    = HMAC(key, "fault" ‖ fault# ‖ idx ‖ gen)[0..7] / 2^64 < fraction
 *   rng     = HMAC(key, "rng" ‖ idx ‖ gen)[0..7], a splitmix64 state for noise
 * All numbers are big-endian u32. idx is the slot index, gen counts the board
 * identities that slot has had (swaps), keyno the keys that identity generated.
 */
struct seed {
        uint8_t key[32];
};

void seed_from_string(struct seed *s, const char *str);
/** 0 or -EIO when the OpenSSL RNG fails. */
int seed_random(struct seed *s);
void seed_serial(const struct seed *s, uint32_t idx, uint32_t gen, uint8_t ret[SEED_SERIAL_LEN]);
void seed_scalar(const struct seed *s, uint32_t idx, uint32_t gen, uint32_t keyno, uint8_t ret[32]);
bool seed_pick(const struct seed *s, uint32_t fault_no, uint32_t idx, uint32_t gen, double fraction);
uint64_t seed_rng(const struct seed *s, uint32_t idx, uint32_t gen);

/** splitmix64: cheap non-cryptographic noise for corrupt/garbage faults. */
uint64_t rng_next(uint64_t *state);
/** Uniform double in [0, 1). */
double rng_unit(uint64_t *state);

#endif
