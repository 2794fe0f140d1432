/* SPDX-License-Identifier: MIT */
/* Operator messages for the certs-hsm error codes. */

#include <errno.h>

#include "certs-hsm/csr.h"

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
                return "CSR subject CN does not match the board identity";
        case -ENOMEM:
                return "out of memory while checking the CSR";
        default:
                return "CSR rejected (unexpected error)";
        }
}
