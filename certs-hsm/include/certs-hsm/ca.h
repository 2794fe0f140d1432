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
