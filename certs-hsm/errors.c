/* SPDX-License-Identifier: MIT */
/* Operator messages for the certs-hsm error codes. */

#include <errno.h>

#include "certs-hsm/csr.h"
#include "certs-hsm/signer.h"

const char *csr_strerror(int r) {
        switch (r) {
        case 0:
                return "CSR accepted";
        case -EINVAL:
                return "internal error: invalid arguments to CSR validation";
        case -EMSGSIZE:
                return "CSR is empty or larger than 4096 bytes";
        case -EBADMSG:
                return "CSR is not a well-formed PKCS#10 request (bad or truncated DER, or trailing bytes)";
        case -EKEYREJECTED:
                return "CSR key is not an EC P-256 public key with a valid point";
        case -EPROTONOSUPPORT:
                return "CSR is not signed with ecdsa-with-SHA256";
        case -EBADE:
                return "CSR signature does not verify (corrupted CSR or wrong key)";
        case -EPERM:
                return "CSR subject CN is missing, repeated, or does not match the board identity";
        case -ENOMEM:
                return "out of memory while checking the CSR";
        case -EIO:
                return "internal error while checking the CSR signature (OpenSSL failed; not the board's fault)";
        default:
                return "CSR rejected (unexpected error)";
        }
}

const char *signer_strerror(int r) {
        switch (r) {
        case 0:
                return "signer ready";
        case -EPERM:
                return "signer key or PIN file is accessible by group or others, or not owned by the provd user "
                       "(chown it to that user, chmod 600 it)";
        case -EBADFD:
                return "signer key path is not a regular file";
        case -ENOENT:
                return "signer key, certificate, PKCS#11 token or key object not found";
        case -EACCES:
                return "permission denied, or PKCS#11 login failed (wrong PIN?)";
        case -EBADMSG:
                return "signer key or certificate file could not be parsed (bad PEM, or wrong passphrase)";
        case -EKEYREJECTED:
                return "signer key is not EC P-256, does not match the signer certificate, or the chain does not verify";
        case -EPROTONOSUPPORT:
                return "unsupported signer URI (use file:/path or pkcs11:...; pkcs11 needs libp11 at build time)";
        case -EINVAL:
                return "invalid signer URI or arguments";
        case -EFBIG:
                return "signer key or certificate file is too large";
        case -EIO:
                return "signer backend failed (PKCS#11 module could not be loaded or the HSM failed)";
        case -ENOTUNIQ:
                return "the PKCS#11 URI matches more than one token or key";
        case -ENOTSUP:
                return "a PIN in the signer URI (pin-value=) is refused: put it in [signer] pin_file, a systemd "
                       "credential, or pin-source=";
        case -ENOMEM:
                return "out of memory";
        default:
                return "signer error";
        }
}
