/* SPDX-License-Identifier: MIT */
/* CA tooling: create a root + signer pair, or a signer key + CSR for an offline root. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct ca_init_opts {
        const char *root_cn;            /* default "provd root CA" */
        const char *signer_cn;          /* default "provd signer CA" */
        const char *org;                /* optional O in both subjects */
        uint32_t root_validity_days;    /* default 36500 (~100 years) */
        uint32_t signer_validity_days;  /* default 18250 (~50 years) */
        bool no_expiry;                 /* root and signer notAfter 99991231235959Z (the day counts are ignored) */
        /* The signer within atcacert's compressed-signer limits: notBefore on
         * the hour, notAfter whole years later (signer days / 365, 1..31) or
         * 9999 with no_expiry, issue year 2000..2031, serial SNSRC_PUB_KEY_HASH
         * (atecc.h), CN "<signer_cn> XXXX" with the signer id in hex. */
        bool compressed;
        uint16_t signer_id;
};

/**
 * Creates in @dir (must exist): root.key + root.pem (self-signed EC P-256,
 * basicConstraints CA:TRUE critical, keyUsage keyCertSign+cRLSign critical,
 * SKI) and signer.key + signer.pem (signed by the root, CA:TRUE pathlen:0
 * critical, keyUsage keyCertSign+cRLSign critical, SKI, AKI). Both serials are
 * 16 random bytes with the first byte in 0x01..0x7f (unlike device
 * certificates, see cert.h). Keys are written mode 0600 with
 * O_EXCL|O_CLOEXEC; .pem files 0644.
 * @opts may be NULL. Returns 0, -EEXIST if any of the four files exists
 * (nothing is written then), -ENOENT/-EACCES/-ENOTDIR for @dir, -EINVAL
 * (bad opts), -EIO (OpenSSL failure). On failure after files were created,
 * those files are removed.
 */
int ca_init(const char *dir, const struct ca_init_opts *opts);

/**
 * Creates in @dir signer.key (0600, O_EXCL) and signer.csr (PEM PKCS#10,
 * CN = opts->signer_cn, requesting CA:TRUE pathlen:0 and keyCertSign) for
 * signing by an offline root. Same errors as ca_init().
 */
int ca_signer_csr(const char *dir, const struct ca_init_opts *opts);

/* A signer key in a PKCS#11 token, as the token reports it. */
struct ca_hsm_key {
        uint8_t pubkey[65];     /* 04 || X || Y */
        bool sensitive;         /* CKA_SENSITIVE */
        bool extractable;       /* CKA_EXTRACTABLE */
        bool always_sensitive;  /* CKA_ALWAYS_SENSITIVE */
        bool never_extractable; /* CKA_NEVER_EXTRACTABLE */
        bool token;             /* CKA_TOKEN */
        bool private_object;    /* CKA_PRIVATE */
        bool value_readable;    /* C_GetAttributeValue(CKA_VALUE) of the private key succeeded */
};

/**
 * Generates an EC P-256 key pair inside the token @uri names (token= required,
 * object= and/or id= name the key; pin-source= or @pin logs in; the module as
 * for signer_open_pkcs11()): CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true,
 * CKA_EXTRACTABLE false, sign only. The attributes are read back and must
 * say so. Returns 0 and the key's attributes, -EEXIST (a key or public key
 * under that name exists), -ENOENT (token), -ENOTUNIQ, -EACCES (PIN),
 * -EMEDIUMTYPE (the token cannot make such a key), -EKEYREJECTED (it made one
 * that is extractable or not sensitive; the key stays, delete it), -EIO,
 * -EPROTONOSUPPORT (built without PKCS#11), -EINVAL.
 */
int ca_hsm_keygen(const char *uri, const char *pin, const char *module_path, struct ca_hsm_key *ret);

/** Reads back the attributes of the existing key @uri names. Errors as ca_hsm_keygen(). */
int ca_hsm_key_info(const char *uri, const char *pin, const char *module_path, struct ca_hsm_key *ret);

/**
 * ca_signer_csr() for a key in a PKCS#11 token (made by ca_hsm_keygen()):
 * writes dir/signer.csr (0644, O_EXCL) with the token's public key, signed in
 * the token. Returns 0, -EEXIST, ca_hsm_key_info()'s and signer_open()'s
 * errors, -EIO.
 */
int ca_signer_csr_hsm(const char *dir, const struct ca_init_opts *opts, const char *key_uri, const char *pin,
                      const char *module_path);

/**
 * Installs an externally signed signer certificate: @cert_path (PEM, the signer
 * certificate) must be CA:TRUE with pathLenConstraint 0 and keyUsage
 * keyCertSign, be valid now, be signed by the root in @root_path, and hold
 * the public key of @key_uri (checked with one signature by that key). Then
 * it is written to @out_path (0644, O_EXCL). Returns 0, -EDOM (not a signer CA
 * certificate: basicConstraints/pathlen/keyUsage), -ERANGE (expired or not yet
 * valid), -EKEYREJECTED (key mismatch, or not signed by the root), -EEXIST,
 * the signer backend's errors.
 */
int ca_signer_import(const char *cert_path, const char *root_path, const char *key_uri, const char *pin,
                     const char *module_path, const char *out_path);

/**
 * A new signer for a rotation, certified at once by a root whose key is at
 * hand: creates @dir/@name.key (P-256, 0600, O_EXCL) and @dir/@name.pem (the
 * signer certificate as ca_init() makes it: CA:TRUE pathlen:0, keyCertSign,
 * signed by the root). @root_key_path must be the private key of the
 * certificate in @root_cert_path (-EKEYREJECTED otherwise). Returns 0,
 * -EEXIST (nothing written), -ENOENT/-EBADMSG for the root files, -EINVAL,
 * -EIO. @name: no '/', at most 100 characters.
 */
int ca_signer_issue(const char *dir, const char *name, const char *root_key_path, const char *root_cert_path,
                    const struct ca_init_opts *opts);

/**
 * Certifies a signer CSR (e.g. from ca_signer_csr_hsm(): the key stays in the
 * HSM) with the root at hand, writing the certificate to @out_path (0644,
 * O_EXCL). The CSR's signature must verify and its key be P-256; its subject
 * and extensions are not copied (the certificate is a signer's: @opts'
 * signer CN and O, CA:TRUE pathlen:0). Errors as ca_signer_issue().
 */
int ca_sign_signer_csr(const char *csr_path, const char *root_key_path, const char *root_cert_path,
                       const struct ca_init_opts *opts, const char *out_path);
