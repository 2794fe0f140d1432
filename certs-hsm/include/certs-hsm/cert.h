/* SPDX-License-Identifier: MIT */
/* Device certificate issuance from a fixed profile (the CSR contributes only its key). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct signer;
struct csr_info;

#define CERT_SERIAL_LEN 16
#define CERT_SKI_LEN 20
#define CERT_DEFAULT_VALIDITY_DAYS 3650   /* 10 years: outlives the product, still finite */
#define CERT_DEFAULT_BACKDATE_SECONDS 3600 /* boards without an RTC/with skewed clocks */
#define CERT_MAX_BACKDATE_SECONDS (7 * 86400)
#define CERT_MAX_VALIDITY_DAYS (100 * 366)
#define CERT_NO_EXPIRY ((time_t)253402300799) /* 9999-12-31 23:59:59 UTC, RFC 5280 4.1.2.5 */
#define CERT_ATTR_MAX 64                       /* ub-organization-name / ub-organizational-unit-name */
#define CERT_THING_NAME_MAX 128                /* AWS IoT thing name limit */

/*
 * Serial numbers are 16 bytes, positive, and exactly 16 bytes in DER:
 *   byte 0       CERT_SERIAL_TAG (0x40: top bit clear, not zero)
 *   bytes 1..6   issuance time, milliseconds since 1970 (UTC), big endian
 *   bytes 7..15  72 bits from the CSPRNG (RAND_bytes)
 * The random part is more than the 64 bits the CA/Browser Forum asks for, so
 * serials stay unpredictable; the time in front makes them sort in issuance
 * order, so the database's unique index on them grows at its end instead of
 * taking a random page per certificate (schema/0002-append-only-indexes.sql).
 * The time is the clock's, not issuer_issue_at()'s @now.
 */
#define CERT_SERIAL_TAG 0x40
#define CERT_SERIAL_TIME_LEN 6
#define CERT_SERIAL_RANDOM_LEN (CERT_SERIAL_LEN - 1 - CERT_SERIAL_TIME_LEN)

/*
 * The profile is what a device certificate contains. Fixed by design (not
 * configurable): X.509 v3; a positive 16-byte serial (above); signature
 * ecdsa-with-SHA256; issuer = the signer certificate's subject (copied
 * byte-exact); subject = [O=org] [OU=org_unit] CN=<board identity>
 * (UTF8String); extensions, in this order:
 *   subjectKeyIdentifier     SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1)
 *   authorityKeyIdentifier   keyIdentifier = the signer's SKI
 *   basicConstraints         CA:FALSE, critical (encoded as an empty SEQUENCE)
 *   keyUsage                 digitalSignature, critical
 *   extendedKeyUsage         clientAuth
 */
/* What happens when a device certificate would outlive its signer certificate
 * (a validating client rejects the device once the signer has expired, so a
 * longer notAfter promises what the chain cannot keep). */
enum cert_expiry_policy {
        CERT_EXPIRY_CLAMP,  /* notAfter = the signer's notAfter (default) */
        CERT_EXPIRY_REFUSE, /* issuance fails with -ERANGE; issuer_new() already
                             * refuses no_expiry under a signer that expires */
};

enum cert_format {
        CERT_FORMAT_X509,  /* the profile above (default) */
        CERT_FORMAT_ATECC, /* Microchip atcacert compressed-certificate rules, see atecc.h */
};

struct cert_profile {
        uint32_t validity_days;    /* 1..CERT_MAX_VALIDITY_DAYS; ignored if no_expiry */
        bool no_expiry;            /* notAfter = 99991231235959Z (RFC 5280 "no well-defined expiration") */
        uint32_t backdate_seconds; /* notBefore = now - backdate, 0..CERT_MAX_BACKDATE_SECONDS */
        const char *org;           /* optional subject O (NULL/"" = none), 1..64 bytes UTF-8 */
        const char *org_unit;      /* optional subject OU */
        enum cert_expiry_policy expiry; /* device notAfter beyond the signer's */
        /* CERT_FORMAT_ATECC: the same fields and order, but notBefore on the hour
         * (after backdating), notAfter validity_days / 365 whole years later
         * (1..31) or 9999-12-31 23:59:59 with no_expiry, both years 2000..2031
         * for notBefore; serial from SHA-256 of the key and dates (atecc.h). */
        enum cert_format format;
        uint16_t atecc_signer_id;  /* bytes 67..68 of the compressed form */
        uint8_t atecc_template_id; /* 0..15 */
        uint8_t atecc_chain_id;    /* 0..15 */
        size_t atecc_cn_len;       /* CN length the template fixes (0: any, one template per length) */
};

/** Fills @p with the defaults: 3650 days, 1 h backdate, no O/OU. */
void cert_profile_init(struct cert_profile *p);

struct issued_cert {
        uint8_t *der;     /* malloc'ed DER certificate; freed by issued_cert_done() */
        size_t der_len;
        uint8_t serial[CERT_SERIAL_LEN];
        time_t not_before;
        time_t not_after; /* CERT_NO_EXPIRY for no expiry */
        uint8_t sha256[32];    /* SHA-256 of der */
        char sha256_hex[65];   /* lowercase hex: the AWS IoT certificate ID */
        uint8_t ski[CERT_SKI_LEN];
        char ski_hex[2 * CERT_SKI_LEN + 1]; /* lowercase hex (Microchip thing-name convention) */
        uint8_t pubkey[65];    /* the device key (uncompressed point) */
};

/** Frees @c->der and zeroes @c; NULL accepted; idempotent. */
void issued_cert_done(struct issued_cert *c);

struct issuer;

/**
 * Creates an issuer. Takes @signer (freed on failure too). @profile is copied
 * (strings included); NULL means the defaults. Returns 0, -EINVAL (bad
 * profile: validity 0 without no_expiry, oversize or invalid O/OU, backdate
 * too large), -EKEYREJECTED (signer certificate unusable: not P-256 or
 * malformed), -ENOMEM. The issuer is immutable: issuer_issue() may run
 * concurrently from any number of threads.
 */
int issuer_new(struct issuer **ret, struct signer *signer, const struct cert_profile *profile);

/** Takes one more reference (e.g. an in-flight board during signer rotation). Thread-safe. */
struct issuer *issuer_ref(struct issuer *is);

/** Drops one reference, freeing on the last (NULL accepted); returns NULL. Thread-safe. */
struct issuer *issuer_free(struct issuer *is);

/**
 * Issues a certificate for the key in @csr (validated by csr_parse_validate())
 * with subject CN = @cn (the board identity: 1..64 bytes, printable ASCII
 * 0x20..0x7e). Nothing from the CSR but its public key is used; a CSR with
 * requested_ca set is refused (-EPERM). Thread-safe.
 * A csr_info not made by csr_parse_validate() (key == NULL) has its point
 * checked first (-EKEYREJECTED).
 * Returns 0 and fills @ret (issued_cert_done() later), or -EINVAL (bad CN or
 * arguments), -EPERM (requested_ca), -EIO (signer failure or RNG failure),
 * -ERANGE (the certificate would outlive the signer under CERT_EXPIRY_REFUSE,
 * or @now is past the signer's notAfter or before its notBefore: a
 * certificate from an expired signer never verifies), or the signer's own
 * -errno; -ENOMEM.
 * The notAfter is never later than the signer certificate's (clamped under
 * CERT_EXPIRY_CLAMP).
 */
int issuer_issue(struct issuer *is, const struct csr_info *csr, const char *cn, struct issued_cert *ret);

/** issuer_issue() at a given time (tests, reproducible runs). */
int issuer_issue_at(struct issuer *is, const struct csr_info *csr, const char *cn, time_t now,
                    struct issued_cert *ret);

/**
 * AWS IoT JITR/JITP "verification certificate" for registering the signer as a
 * CA: subject CN = @registration_code (from GetRegistrationCode; 1..64 letters
 * and digits), a fresh throw-away P-256 key (the private half is discarded),
 * signed by the signer key with the normal profile. Returns 0, -EINVAL (bad
 * code), -EIO, -ENOMEM or the signer's error. Thread-safe.
 */
int issuer_verification_cert(struct issuer *is, const char *registration_code, struct issued_cert *ret);

/** The issuer's signer (borrowed). */
struct signer *issuer_signer(const struct issuer *is);

/** Does @is issue the ATECC compressed-certificate profile (CERT_FORMAT_ATECC)? */
bool issuer_is_atecc(const struct issuer *is);

/** Signer certificate DER, borrowed (valid while @is lives). */
const uint8_t *issuer_signer_cert_der(const struct issuer *is, size_t *ret_len);

/** Root certificate DER, borrowed; NULL if the signer was opened without one. */
const uint8_t *issuer_root_cert_der(const struct issuer *is, size_t *ret_len);

/** Root public key as an uncompressed P-256 point; -ENOENT without a root,
 *  -EKEYREJECTED if the root key is not P-256. */
int issuer_root_pubkey(const struct issuer *is, uint8_t ret[65]);

enum cert_thing_mode {
        CERT_THING_CN,  /* thing name = certificate CN */
        CERT_THING_SKI, /* thing name = lowercase hex SKI (Microchip convention) */
};

/**
 * Writes the AWS IoT thing name for a certificate into @buf (NUL-terminated).
 * CERT_THING_CN uses @cn, which must match [A-Za-z0-9:_-]{1,128};
 * CERT_THING_SKI uses @c->ski_hex. Returns the length, -EINVAL (CN not a valid
 * thing name, NULL arguments, unknown mode) or -ENOBUFS.
 */
int cert_thing_name(enum cert_thing_mode mode, const struct issued_cert *c, const char *cn, char *buf,
                    size_t size);
