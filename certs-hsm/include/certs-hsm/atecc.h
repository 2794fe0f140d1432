/* SPDX-License-Identifier: MIT */
/* Microchip atcacert compressed device certificates: the 72-byte form, its dates and serial, and the rebuild. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "certs-hsm/cert.h"

/*
 * Compressed certificate (atcacert format version 0), 72 bytes:
 *   0..31   signature r, big endian, left-padded to 32 bytes
 *   32..63  signature s
 *   64..66  encoded dates: bits 23..19 issue year - 2000, 18..15 month (1..12),
 *           14..10 day, 9..5 hour, 4..0 expire years (0 = no expiry,
 *           notAfter 9999-12-31 23:59:59); minutes and seconds are zero
 *   67..68  signer id, big endian
 *   69      template id << 4 | chain id
 *   70      serial-number source << 4 | format version (0xA0: SNSRC_PUB_KEY_HASH, v0)
 *   71      0 (reserved; format v0 has no extended dates)
 * Serial (16 bytes) = the first 16 bytes of SHA-256(X || Y || bytes 64..66)
 * with the top bit cleared and the next set (positive, never trimmable), as
 * atcacert's SNSRC_PUB_KEY_HASH. notBefore is a UTCTime and notAfter a
 * GeneralizedTime (atcacert's RFC5280_UTC / RFC5280_GEN), so every field of
 * the TBSCertificate has a fixed offset for a given CN length.
 */
#define CERT_COMPRESSED_LEN 72
#define CERT_ATECC_MAX_YEARS 31
#define CERT_ATECC_SNSRC_PUB_KEY_HASH 0xA
#define CERT_ATECC_FORMAT_VERSION 0

/* A certificate definition: what a board stores to rebuild its certificate. */
struct cert_atecc_def {
        uint8_t *tbs; /* TBSCertificate with the per-board fields zeroed */
        size_t tbs_len;
        size_t serial_off;     /* 16 bytes */
        size_t not_before_off; /* 13 ASCII bytes YYMMDDhhmmssZ */
        size_t not_after_off;  /* 15 ASCII bytes YYYYMMDDhhmmssZ */
        size_t cn_off, cn_len; /* the board identity */
        size_t pubkey_off;     /* 65 bytes 04 || X || Y */
        size_t ski_off;        /* 20 bytes SHA-1 of the point */
        uint8_t template_id, chain_id;
};

/** The definition for CNs of @cn_len bytes under @is (format CERT_FORMAT_ATECC).
 *  0, -EINVAL (other format, bad length), -ENOMEM. Free with cert_atecc_def_done(). */
int issuer_atecc_def(const struct issuer *is, size_t cn_len, struct cert_atecc_def *ret);

void cert_atecc_def_done(struct cert_atecc_def *d);

/** The 72-byte compressed form of @c, issued by @is with CERT_FORMAT_ATECC.
 *  0, -EINVAL (not that profile, or dates that do not fit it), -EBADMSG. */
int issuer_compress(const struct issuer *is, const struct issued_cert *c, uint8_t ret[CERT_COMPRESSED_LEN]);

/**
 * What a board does: the DER certificate from its definition, the compressed
 * form, its own public key and its identity (@cn, def->cn_len bytes). The
 * issuer name and AKI are in the definition (the signer's). Returns 0 and a
 * malloc'ed DER, -EINVAL (arguments, CN length), -EBADMSG (not a v0
 * SNSRC_PUB_KEY_HASH form, ids not the definition's, impossible dates), -ENOMEM.
 */
int cert_atecc_rebuild(const struct cert_atecc_def *def, const uint8_t comp[CERT_COMPRESSED_LEN],
                       const uint8_t pubkey[65], const char *cn, uint8_t **ret_der, size_t *ret_len);

/** Encodes the dates: @nb (UTC, minutes/seconds ignored, year 2000..2031) and
 *  @years (0..31, 0 = no expiry). Writes the 3 bytes and the resulting times.
 *  0 or -ERANGE. */
int cert_atecc_encode_dates(const struct tm *nb, unsigned years, uint8_t enc[3], time_t *ret_not_before,
                            time_t *ret_not_after);

/** The two date strings of the template (13 and 15 bytes, not NUL-terminated)
 *  from the encoded dates; no validation (see cert_atecc_rebuild()). */
void cert_atecc_format_dates(const uint8_t enc[3], char nb[13], char na[15]);

/** The SNSRC_PUB_KEY_HASH serial. 0 or -EIO. */
int cert_atecc_serial(const uint8_t pubkey[65], const uint8_t enc[3], uint8_t serial[CERT_SERIAL_LEN]);

bool cert_atecc_leap(int year);
