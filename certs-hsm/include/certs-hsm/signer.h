/* SPDX-License-Identifier: MIT */
/* Signer backends (PEM key file, PKCS#11 HSM) behind one interface. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * Glossary
 *   signer      the CA key that signs device certificates, plus its certificate
 *               ("signer cert"), and optionally the root cert above it.
 *   backend     how the private key is reached: a PEM file ("file:/path") or a
 *               PKCS#11 token (RFC 7512 "pkcs11:" URI, through libp11).
 *
 * The signer key must be EC P-256; certificates are signed ecdsa-with-SHA256.
 * Every signer is safe to use from several threads at once: the file backend
 * keeps no per-call state in the key, the PKCS#11 backend signs through
 * libp11's per-slot session pool, one session per signature, without a lock
 * of ours (the key never leaves the HSM).
 */

struct signer;

/* Largest DER ECDSA-Sig-Value for P-256: 2 + 2 * (2 + 33). */
#define SIGNER_SIG_MAX 72

struct signer_ops {
        /** Signs the 32-byte SHA-256 @digest; writes a DER ECDSA-Sig-Value to
         *  @sig (SIGNER_SIG_MAX bytes) and its length to @ret_len. Must be
         *  thread-safe. Returns 0 or -errno. */
        int (*sign)(void *userdata, const uint8_t digest[32], uint8_t sig[SIGNER_SIG_MAX], size_t *ret_len);
        /** Frees @userdata. */
        void (*free)(void *userdata);
};

/**
 * Opens a signer.
 *   @uri        "file:/path/key.pem" (or a plain absolute path) or an RFC 7512
 *               "pkcs11:token=...;object=...;id=%01?module-path=...&pin-source=..."
 *               URI. The module comes from module-path, else the
 *               PROVD_PKCS11_MODULE environment variable, else p11-kit-proxy.
 *               pin-value= is refused (-ENOTSUP): a URI is configuration, is
 *               logged and stored; the PIN goes in @pin (provd: [signer]
 *               pin_file) or pin-source= (see signer_pin_read()).
 *   @cert_path  PEM file with the signer certificate first, optionally followed
 *               by its issuers in order, each signing the one before it. The
 *               chain is verified up to the last certificate, which becomes
 *               the root (signer_root_cert_der()) if it is self-signed. The
 *               certificate's key must match the private key.
 *   @pin        PKCS#11 user PIN, or NULL to take pin-source from the URI (or
 *               to not log in). For the file backend: the passphrase of
 *               an encrypted PEM key (NULL: the key must not be encrypted).
 * Returns 0, or:
 *   -EPERM           the key file, or a pin-source file, has a group/other mode
 *                    bit (mode & 077) or is not owned by the effective user
 *   -EBADFD          the key path is not a regular file
 *   -ENOENT          key/cert file or the PKCS#11 token/key not found
 *   -EBADMSG         the PEM or a certificate block in @cert_path could not be parsed
 *   -EKEYREJECTED    the key is not EC P-256, does not match the certificate,
 *                    or the certificate chain does not verify
 *   -EACCES          PKCS#11 login failed (wrong PIN)
 *   -EPROTONOSUPPORT unknown URI scheme, or pkcs11: without PKCS#11 support built in
 *   -EINVAL          bad URI or arguments
 *   -ENOTSUP         the URI carries pin-value=
 *   -EIO             the PKCS#11 module failed to load or initialise
 * Call from one thread; the result may then be shared.
 *
 * PKCS#11: every signer on the same module library (any path to it) shares one
 * loaded module (a module cannot be initialised twice in a process), so an old
 * and a new signer can live side by side during rotation or reload. Slots are
 * enumerated when the module is first loaded. Once a token is logged in, a
 * later open must give the same PIN (-EACCES otherwise); no PIN on a token that
 * needs one is -EACCES.
 */
int signer_open(struct signer **ret, const char *uri, const char *cert_path, const char *pin);

/** Like signer_open() for a pkcs11: URI with the module given explicitly (config
 *  parameter); @module_path NULL behaves like signer_open(). */
int signer_open_pkcs11(struct signer **ret, const char *uri, const char *cert_path, const char *pin,
                       const char *module_path);

/**
 * Wraps a custom backend (tests, fakes). @cert_der is copied; its key must be
 * EC P-256 (the private key is not checked). Takes @userdata: on failure
 * ops->free(userdata) has been called.
 */
int signer_new_ops(struct signer **ret, const struct signer_ops *ops, void *userdata,
                   const uint8_t *cert_der, size_t cert_len);

/** Frees @s (NULL accepted); returns NULL. Not while another thread signs. */
struct signer *signer_free(struct signer *s);

/** Signs a SHA-256 digest with the signer key (DER ECDSA-Sig-Value). Thread-safe. */
int signer_sign(struct signer *s, const uint8_t digest[32], uint8_t sig[SIGNER_SIG_MAX], size_t *ret_len);

/** The signer certificate DER; borrowed, valid until signer_free(). */
const uint8_t *signer_cert_der(const struct signer *s, size_t *ret_len);

/** The root certificate DER (last cert of the chain file, if it is
 *  self-signed); NULL with *ret_len = 0 if none was given. Borrowed. */
const uint8_t *signer_root_cert_der(const struct signer *s, size_t *ret_len);

/** Loads the root certificate from a PEM file and checks that it signed the
 *  signer certificate (-EKEYREJECTED if not). Call before sharing @s. */
int signer_set_root(struct signer *s, const char *root_pem_path);

/** The signer certificate's SubjectKeyIdentifier extension value (or, if the
 *  certificate has none, SHA-1 of its public key); borrowed. */
const uint8_t *signer_ski(const struct signer *s, size_t *ret_len);

/** Operator message for a signer_open() error; never NULL. */
const char *signer_strerror(int r);

/** Short backend name: "file" or "pkcs11" or "custom". */
const char *signer_backend(const struct signer *s);

/**
 * The rule for a signer key file and a PIN file, for callers that read such a
 * file themselves (provd's [signer] pin_file): @fd is a regular file (else
 * -EBADFD), owned by the effective user, without any group/other permission
 * bit (else -EPERM). -errno when fstat() fails.
 */
int signer_check_secret_fd(int fd);

/**
 * Reads a PIN: @source is "/abs/path" or "file:/abs/path" (a file with the key
 * file's rule, signer_check_secret_fd()), or "credential:NAME" (the systemd
 * credential NAME in $CREDENTIALS_DIRECTORY, same rule). The first line is the
 * PIN (1..255 bytes, trailing CR/LF dropped, no NUL). Returns 0 and a string to
 * release with signer_pin_free(), -EINVAL (bad source or empty PIN), -ENOENT
 * (no such file, or no $CREDENTIALS_DIRECTORY), -EPERM, -EBADFD, -EFBIG, -errno.
 */
int signer_pin_read(const char *source, char **ret);

/** Wipes and frees a PIN from signer_pin_read(); NULL accepted; returns NULL. */
char *signer_pin_free(char *pin);

/**
 * The form of a signer URI that may be logged, stored or shown. A pkcs11: URI
 * keeps the path attributes RFC 7512 defines and the query attributes
 * module-path and module-name; every other attribute (pin-value, pin-source,
 * one we do not know or a misspelt key: any of them may hold the PIN) is
 * dropped, so no PIN or PIN location is ever shown or stored. A URI the parser
 * accepts stays acceptable. Other URIs (file:) are returned as they are.
 * malloc()ed; NULL on allocation failure or @uri NULL.
 */
char *signer_uri_redact(const char *uri);

struct signer_validity {
        time_t not_before, not_after;
        int64_t days_left;  /* whole days until notAfter at @now; negative once expired */
        bool expired;       /* now > notAfter */
        bool not_yet_valid; /* now < notBefore */
};

/** The signer certificate's validity as seen at @now. 0 or -EINVAL. */
int signer_validity(const struct signer *s, time_t now, struct signer_validity *ret);

struct signer_file_status {
        struct signer_validity validity;      /* of the signer certificate */
        char subject_cn[65];                  /* "" if none */
        char ski_hex[129];                    /* "" if the certificate has no SKI */
        bool has_root;                        /* the file ends with a self-signed root */
        struct signer_validity root_validity; /* if has_root */
};

/**
 * Reads a signer certificate file (as signer_open() would: the chain must
 * verify) without the key, for `provctl signer status`. Returns 0, or the
 * errors of signer_open() for the certificate file (-ENOENT, -EBADMSG,
 * -EKEYREJECTED, -EFBIG, ...).
 */
int signer_cert_file_status(const char *cert_path, time_t now, struct signer_file_status *ret);
